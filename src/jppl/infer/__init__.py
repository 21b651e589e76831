"""Inference, in NumPyro's layout: ``from jppl.infer import MCMC, NUTS, SVI, Predictive, ...``.

This package is the one documented path to the inference front ends. The code lives in the
layers below (see ARCHITECTURE.md): :mod:`jppl.mcmc` (samplers and the ``MCMC`` driver),
:mod:`jppl.vi` (ELBOs, ``SVI``, autoguides), :mod:`jppl.model` (log densities, the
unconstrained space, ``init_to_*``). ``jppl.infer.autoguide``, ``jppl.infer.reparam``,
``jppl.infer.util`` and ``jppl.infer.initialization`` are NumPyro's module paths.
"""

from jppl.enumerate import config_enumerate
from jppl.infer.predictive import Predictive
from jppl.mcmc import HMC, MCMC, NUTS
from jppl.mcmc.gibbs import DiscreteHMCGibbs, HMCGibbs, MixedHMC
from jppl.mcmc.gibbs_blocks import (
    CustomGibbs,
    DiscreteGibbs,
    Gibbs,
    discrete_latent_sites,
    latent_sample_sites,
)
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
from jppl.model.discrete import infer_discrete
from jppl.model.initialization import (
    init_to_feasible,
    init_to_mean,
    init_to_median,
    init_to_sample,
    init_to_uniform,
    init_to_value,
)
from jppl.runloop import RunInterrupted
from jppl.vi import (
    ELBO,
    SVI,
    NonFiniteError,
    NonFiniteWarning,
    RenyiELBO,
    SVIState,
    Trace_ELBO,
    TraceEnum_ELBO,
    TraceGraph_ELBO,
    TraceMeanField_ELBO,
    psis_diagnostic,
)

__all__ = [
    "CustomGibbs",
    "DiscreteGibbs",
    "DiscreteHMCGibbs",
    "Gibbs",
    "discrete_latent_sites",
    "latent_sample_sites",
    "ELBO",
    "HMC",
    "HMCGibbs",
    "MCMC",
    "MixedHMC",
    "NUTS",
    "SVI",
    "ModelInfo",
    "NonFiniteError",
    "NonFiniteWarning",
    "ParamInfo",
    "Predictive",
    "RenyiELBO",
    "RunInterrupted",
    "SVIState",
    "TraceEnum_ELBO",
    "TraceGraph_ELBO",
    "TraceMeanField_ELBO",
    "Trace_ELBO",
    "compute_log_probs",
    "config_enumerate",
    "constrain_fn",
    "find_valid_initial_params",
    "get_model_transforms",
    "infer_discrete",
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
    "psis_diagnostic",
    "site_log_prob",
    "transform_fn",
    "unconstrain_fn",
]
