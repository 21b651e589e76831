"""Evaluating a model: log densities, the unconstrained space, initialization, log-likelihoods.

The layer under both inference front ends (:mod:`jppl.mcmc` and :mod:`jppl.vi`): it runs a
model under the core handlers and turns its trace into numbers. Users reach these names
through :mod:`jppl.infer` (NumPyro's layout); the code lives here.

* :mod:`jppl.model.density`: ``log_density``, ``potential_energy``, ``constrain_fn``,
  ``unconstrain_fn``, ``initialize_model``, ``log_likelihood``, ``site_log_prob``.
* :mod:`jppl.model.initialization`: the ``init_to_*`` strategies.
* :mod:`jppl.model.blocked`: the potential with the data-sharded likelihood cut into blocks
  (the mesh mechanics are :mod:`jppl.parallel.blocks`).
* :mod:`jppl.model.batch`: mapping a one-draw computation over a batch of draws.
"""

from jppl.model.density import (
    ModelInfo,
    ParamInfo,
    compute_log_probs,
    constrain_fn,
    explain_invalid_init,
    find_valid_initial_params,
    forward_mode_gradient,
    get_model_transforms,
    initialize_model,
    log_density,
    log_likelihood,
    potential_energy,
    require_values,
    site_log_prob,
    transform_fn,
    unconstrain_fn,
)
from jppl.model.initialization import (
    init_to_feasible,
    init_to_mean,
    init_to_median,
    init_to_sample,
    init_to_uniform,
    init_to_value,
)

__all__ = [
    "ModelInfo",
    "ParamInfo",
    "compute_log_probs",
    "constrain_fn",
    "explain_invalid_init",
    "find_valid_initial_params",
    "forward_mode_gradient",
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
    "require_values",
    "site_log_prob",
    "transform_fn",
    "unconstrain_fn",
]
