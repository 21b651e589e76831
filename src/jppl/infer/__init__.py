"""Inference: log densities, initialization, and predictive distributions.

Mirrors ``numpyro.infer``: ``from jppl.infer import MCMC, NUTS, Predictive, init_to_median, ...``.
"""

from jppl.infer.initialization import (
    init_to_feasible,
    init_to_mean,
    init_to_median,
    init_to_sample,
    init_to_uniform,
    init_to_value,
)
from jppl.infer.predictive import Predictive, log_likelihood
from jppl.infer.util import (
    ModelInfo,
    ParamInfo,
    compute_log_probs,
    constrain_fn,
    find_valid_initial_params,
    get_model_transforms,
    initialize_model,
    log_density,
    potential_energy,
    site_log_prob,
    transform_fn,
    unconstrain_fn,
)
from jppl.mcmc import HMC, MCMC, NUTS  # after the modules it builds on (import order matters)

__all__ = [
    "HMC",
    "MCMC",
    "NUTS",
    "ModelInfo",
    "ParamInfo",
    "Predictive",
    "compute_log_probs",
    "constrain_fn",
    "find_valid_initial_params",
    "get_model_transforms",
    "init_to_feasible",
    "init_to_mean",
    "init_to_median",
    "init_to_sample",
    "init_to_uniform",
    "init_to_value",
    "initialize_model",
    "log_density",
    "log_likelihood",
    "potential_energy",
    "site_log_prob",
    "transform_fn",
    "unconstrain_fn",
]

from jppl.vi import SVI, RenyiELBO, SVIState, Trace_ELBO, TraceMeanField_ELBO  # noqa: E402

__all__ += ["SVI", "RenyiELBO", "SVIState", "TraceMeanField_ELBO", "Trace_ELBO"]
