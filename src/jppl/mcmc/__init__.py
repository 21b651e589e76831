"""Markov chain Monte Carlo.

The front end mirrors NumPyro: :class:`NUTS` / :class:`HMC` bind a model (or a potential_fn)
to the kernels and a warm-up scheme, and :class:`MCMC` runs the chains (:mod:`.sampler`,
:mod:`.runner`, :mod:`.driver`, :mod:`.progress`, :mod:`.io`). ``MCMC`` drives any object that
satisfies the :class:`Sampler` protocol, and maps the per-chain program over chains, devices
and meshes with :func:`jppl.parallel.chain_program`, in chunks (live progress, Ctrl-C
that keeps the finished work, :meth:`MCMC.resume`).

Underneath, kernels are pure ``init``/``step`` pairs over NamedTuple states on flat ``(d,)``
positions; see :mod:`jppl.mcmc.hmc` and :mod:`jppl.mcmc.nuts`. The building blocks
(integrators, metrics, U-turn checks and trajectory construction) live in their own modules,
and warm-up adaptation in :mod:`jppl.mcmc.adaptation`.
"""

from jppl.mcmc import adaptation, hmc, integrators, metrics, nuts, termination, trajectory
from jppl.mcmc.adaptation import DEFAULT_ADAPTATION, nutpie_adaptation, window_adaptation
from jppl.mcmc.gibbs_blocks import (
    CustomGibbs,
    DiscreteGibbs,
    Gibbs,
    discrete_latent_sites,
    latent_sample_sites,
)
from jppl.mcmc.hmc import HMCInfo, HMCParams, HMCState, Kernel
from jppl.mcmc.integrators import IntegratorState, hamiltonian, velocity_verlet
from jppl.mcmc.metrics import Metric, gaussian_euclidean
from jppl.mcmc.nuts import NUTSInfo, NUTSParams, NUTSState
from jppl.mcmc.runner import MCMC
from jppl.mcmc.sampler import HMC, NUTS, Sampler
from jppl.mcmc.state import MCMCState

__all__ = [
    "CustomGibbs",
    "DEFAULT_ADAPTATION",
    "DiscreteGibbs",
    "Gibbs",
    "discrete_latent_sites",
    "latent_sample_sites",
    "HMC",
    "MCMC",
    "MCMCState",
    "NUTS",
    "Sampler",
    "adaptation",
    "nutpie_adaptation",
    "window_adaptation",
    "HMCInfo",
    "HMCParams",
    "HMCState",
    "IntegratorState",
    "Kernel",
    "Metric",
    "NUTSInfo",
    "NUTSParams",
    "NUTSState",
    "gaussian_euclidean",
    "hamiltonian",
    "hmc",
    "integrators",
    "metrics",
    "nuts",
    "termination",
    "trajectory",
    "velocity_verlet",
]
