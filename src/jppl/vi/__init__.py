"""Variational inference: ELBOs, the SVI driver, and minibatching.

Mirrors ``numpyro.infer`` (``SVI``, ``Trace_ELBO``, ...): ``from jppl.vi import SVI, Trace_ELBO``
(also exported from :mod:`jppl.infer`). ``SamplingParallelLoss``
(:mod:`jppl.vi.sampling_parallel`) wraps an ELBO for sampling-parallel training: per-group
augmented minibatches and the exact predictive loss (what ``jppl.nn.Trainer`` optimizes).
"""

from jppl.vi import autoguide as autoguide
from jppl.vi.data import epoch_batches, minibatches, num_batches
from jppl.vi.elbo import (
    ELBO,
    RenyiELBO,
    Trace_ELBO,
    TraceEnum_ELBO,
    TraceGraph_ELBO,
    TraceMeanField_ELBO,
    get_importance_traces,
    particle_keys,
    psis_diagnostic,
)
from jppl.vi.sampling_parallel import SamplingParallelLoss
from jppl.vi.svi import (
    SVI,
    NonFiniteError,
    NonFiniteReport,
    NonFiniteWarning,
    OnNonFinite,
    StepHealth,
    SVIRunResult,
    SVIState,
    copy_state,
    load_state,
    save_state,
)

__all__ = [
    "ELBO",
    "SVI",
    "NonFiniteError",
    "NonFiniteReport",
    "NonFiniteWarning",
    "OnNonFinite",
    "RenyiELBO",
    "SVIRunResult",
    "SVIState",
    "SamplingParallelLoss",
    "StepHealth",
    "TraceEnum_ELBO",
    "TraceGraph_ELBO",
    "TraceMeanField_ELBO",
    "Trace_ELBO",
    "copy_state",
    "epoch_batches",
    "get_importance_traces",
    "load_state",
    "minibatches",
    "num_batches",
    "particle_keys",
    "psis_diagnostic",
    "save_state",
]
