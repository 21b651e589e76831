"""NumPyro's ``numpyro.infer.util`` path: log densities, the unconstrained space, Predictive.

The code lives in :mod:`jppl.model.density` and :mod:`jppl.infer.predictive`; this module
only keeps ``from jppl.infer.util import log_density`` (a NumPyro import) working.
"""

from jppl.infer.predictive import Predictive
from jppl.model.density import (
    ModelInfo,
    ParamInfo,
    compute_log_probs,
    constrain_fn,
    find_valid_initial_params,
    get_model_transforms,
    initialize_model,
    log_density,
    log_likelihood,
    potential_energy,
    site_log_prob,
    transform_fn,
    unconstrain_fn,
)

__all__ = [
    "ModelInfo",
    "ParamInfo",
    "Predictive",
    "compute_log_probs",
    "constrain_fn",
    "find_valid_initial_params",
    "get_model_transforms",
    "initialize_model",
    "log_density",
    "log_likelihood",
    "potential_energy",
    "site_log_prob",
    "transform_fn",
    "unconstrain_fn",
]
