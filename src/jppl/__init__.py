"""jppl: probabilistic programming for JAX.

Models are plain Python functions built from the primitives re-exported here; effect handlers
live in :mod:`jppl.handlers`, distributions in :mod:`jppl.distributions` and inference in
:mod:`jppl.infer`.
"""

from jppl import distributions, handlers, infer
from jppl.distributions.distribution import enable_validation, validation_enabled
from jppl.primitives import (
    CondIndepStackFrame,
    Messenger,
    deterministic,
    factor,
    get_mask,
    param,
    plate,
    prng_key,
    sample,
    subsample,
)
from jppl.version import __version__

__all__ = [
    "CondIndepStackFrame",
    "Messenger",
    "__version__",
    "deterministic",
    "distributions",
    "enable_validation",
    "factor",
    "get_mask",
    "handlers",
    "infer",
    "param",
    "plate",
    "prng_key",
    "sample",
    "subsample",
    "validation_enabled",
]
