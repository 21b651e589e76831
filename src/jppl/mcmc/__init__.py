"""Markov chain Monte Carlo: pure transition kernels on flat ``(d,)`` positions.

Kernels are ``init``/``step`` pairs over NamedTuple states; see :mod:`jppl.mcmc.hmc` and
:mod:`jppl.mcmc.nuts`. The building blocks (integrators, metrics, U-turn checks and trajectory
construction) live in their own modules, and warm-up adaptation in :mod:`jppl.mcmc.adaptation`.
"""

from jppl.mcmc import adaptation, hmc, integrators, metrics, nuts, termination, trajectory
from jppl.mcmc.adaptation import DEFAULT_ADAPTATION, nutpie_adaptation, window_adaptation
from jppl.mcmc.hmc import HMCInfo, HMCParams, HMCState, Kernel
from jppl.mcmc.integrators import IntegratorState, hamiltonian, velocity_verlet
from jppl.mcmc.metrics import Metric, gaussian_euclidean
from jppl.mcmc.nuts import NUTSInfo, NUTSParams, NUTSState

__all__ = [
    "DEFAULT_ADAPTATION",
    "HMCInfo",
    "HMCParams",
    "HMCState",
    "IntegratorState",
    "Kernel",
    "Metric",
    "NUTSInfo",
    "NUTSParams",
    "NUTSState",
    "adaptation",
    "gaussian_euclidean",
    "hamiltonian",
    "hmc",
    "integrators",
    "metrics",
    "nutpie_adaptation",
    "nuts",
    "termination",
    "trajectory",
    "velocity_verlet",
    "window_adaptation",
]
