"""jppl: probabilistic programming for JAX.

Models are plain Python functions built from the primitives re-exported here; effect handlers
live in :mod:`jppl.handlers`, distributions in :mod:`jppl.distributions` and inference in
:mod:`jppl.infer`.
"""

__version__ = "0.1.0.dev0"

from jppl import distributions, handlers, infer  # noqa: E402
from jppl.distributions.distribution import enable_validation, validation_enabled  # noqa: E402
from jppl.primitives import (  # noqa: E402
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
