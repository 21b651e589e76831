"""jppl: probabilistic programming for JAX.

Models are plain Python functions built from the primitives re-exported here; effect handlers
live in :mod:`jppl.handlers`, distributions in :mod:`jppl.distributions` and inference in
:mod:`jppl.infer`.
"""

from jppl import distributions, handlers, infer, ops, optim
from jppl.contrib.module import module
from jppl.distributions.distribution import enable_validation, validation_enabled
from jppl.infer.inspect import render_model
from jppl.primitives import (
    CondIndepStackFrame,
    Messenger,
    deterministic,
    factor,
    get_mask,
    param,
    plate,
    plate_stack,
    prng_key,
    sample,
    subsample,
)
from jppl.util import enable_x64, set_host_device_count, set_platform
from jppl.version import __version__

__all__ = [
    "CondIndepStackFrame",
    "Messenger",
    "__version__",
    "deterministic",
    "distributions",
    "enable_validation",
    "enable_x64",
    "factor",
    "get_mask",
    "handlers",
    "infer",
    "module",
    "ops",
    "optim",
    "param",
    "plate",
    "plate_stack",
    "prng_key",
    "render_model",
    "sample",
    "set_host_device_count",
    "set_platform",
    "subsample",
    "validation_enabled",
]
