"""Variational inference: ELBOs, the SVI driver, and minibatching.

Mirrors ``numpyro.infer`` (``SVI``, ``Trace_ELBO``, ...): ``from jppl.vi import SVI, Trace_ELBO``
(also exported from :mod:`jppl.infer`).
"""

from jppl.vi import autoguide as autoguide
from jppl.vi.data import epoch_batches, minibatches, num_batches
from jppl.vi.elbo import (
    ELBO,
    RenyiELBO,
    Trace_ELBO,
    TraceMeanField_ELBO,
    get_importance_traces,
    particle_keys,
)
from jppl.vi.svi import SVI, SVIRunResult, SVIState, copy_state, load_state, save_state

__all__ = [
    "ELBO",
    "SVI",
    "RenyiELBO",
    "SVIRunResult",
    "SVIState",
    "TraceMeanField_ELBO",
    "Trace_ELBO",
    "copy_state",
    "epoch_batches",
    "get_importance_traces",
    "load_state",
    "minibatches",
    "num_batches",
    "particle_keys",
    "save_state",
]
