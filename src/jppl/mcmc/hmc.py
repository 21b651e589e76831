"""Hamiltonian Monte Carlo with a fixed number of leapfrog steps and a Metropolis correction.

The kernel is a pure function ``step(key, state, params) -> (state, info)`` on a flat
``(d,)`` position; the step size, inverse mass matrix and trajectory length are passed on
every call (they may be traced values, which is what warm-up adaptation needs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jppl.mcmc.integrators import IntegratorState, hamiltonian, velocity_verlet
from jppl.mcmc.metrics import gaussian_euclidean

__all__ = ["HMCInfo", "HMCParams", "HMCState", "Kernel", "build_kernel", "init", "kernel"]

LogDensityFn = Callable[[jax.Array], jax.Array]


class HMCState(NamedTuple):
    """Position of the chain with the cached log density and gradient.

    Attributes:
        position: ``(d,)``.
        logdensity: ``()``.
        logdensity_grad: ``(d,)``.
    """

    position: jax.Array
    logdensity: jax.Array
    logdensity_grad: jax.Array


class HMCParams(NamedTuple):
    """Tuning parameters of one HMC transition.

    Attributes:
        step_size: ``()`` leapfrog step size.
        inverse_mass_matrix: ``(d,)`` diagonal or ``(d, d)`` dense ``M^{-1}``.
        num_integration_steps: ``()`` int, number of leapfrog steps.
    """

    step_size: ArrayLike
    inverse_mass_matrix: ArrayLike
    num_integration_steps: ArrayLike


class HMCInfo(NamedTuple):
    """Diagnostics of one HMC transition.

    Attributes:
        momentum: ``(d,)`` momentum drawn at the start of the transition.
        acceptance_rate: ``()`` Metropolis acceptance probability ``min(1, exp(-dH))``.
        is_accepted: ``()`` bool, whether the proposal was accepted.
        is_divergent: ``()`` bool, energy error ``dH`` above the divergence threshold (or NaN).
        energy: ``()`` Hamiltonian of the returned state (with its momentum).
        delta_energy: ``()`` energy error ``dH = H(proposal) - H(start)``.
        num_integration_steps: ``()`` int, leapfrog steps taken.
    """

    momentum: jax.Array
    acceptance_rate: jax.Array
    is_accepted: jax.Array
    is_divergent: jax.Array
    energy: jax.Array
    delta_energy: jax.Array
    num_integration_steps: jax.Array


class Kernel(NamedTuple):
    """A sampler bundled with its target: ``init(position) -> state`` and
    ``step(key, state, params) -> (state, info)``."""

    init: Callable
    step: Callable


def init(position: ArrayLike, logdensity_fn: LogDensityFn) -> HMCState:
    """Initial state at ``position`` (``(d,)``): evaluates the log density and its gradient."""
    position = jnp.asarray(position)
    logdensity, logdensity_grad = jax.value_and_grad(logdensity_fn)(position)
    return HMCState(position, logdensity, logdensity_grad)


def build_kernel(
    logdensity_fn: LogDensityFn, divergence_threshold: float = 1000.0
) -> Callable[[jax.Array, HMCState, HMCParams], tuple[HMCState, HMCInfo]]:
    """Build the HMC transition ``step(key, state, params) -> (HMCState, HMCInfo)``.

    Args:
        logdensity_fn: ``(d,) -> ()`` unnormalized log density.
        divergence_threshold: energy error above which the transition is flagged divergent.

    Each call draws a momentum ``p ~ N(0, M)``, takes ``params.num_integration_steps`` leapfrog
    steps of size ``params.step_size`` and accepts the end point with probability
    ``min(1, exp(H(start) - H(end)))``.
    """

    def step(key: jax.Array, state: HMCState, params: HMCParams) -> tuple[HMCState, HMCInfo]:
        state = HMCState(state.position, state.logdensity, state.logdensity_grad)
        dtype = state.position.dtype
        metric = gaussian_euclidean(jnp.asarray(params.inverse_mass_matrix, dtype=dtype))
        integrator = velocity_verlet(logdensity_fn, metric.velocity)
        key_momentum, key_accept = jax.random.split(key)
        step_size = jnp.asarray(params.step_size, dtype=dtype)
        num_steps = jnp.asarray(params.num_integration_steps, dtype=jnp.int32)

        momentum = metric.sample_momentum(key_momentum, state.position)
        start = IntegratorState(state.position, momentum, state.logdensity, state.logdensity_grad)
        proposal = jax.lax.fori_loop(0, num_steps, lambda _, s: integrator(s, step_size), start)
        initial_energy = hamiltonian(metric.kinetic_energy, start)
        proposal_energy = hamiltonian(metric.kinetic_energy, proposal)
        delta_energy = proposal_energy - initial_energy
        # A start with infinite energy (log density -inf or NaN) cannot be left by a valid
        # Metropolis step: the chain stays and the transition is flagged divergent.
        is_divergent = ~(delta_energy <= divergence_threshold) | ~jnp.isfinite(initial_energy)
        acceptance_rate = jnp.exp(jnp.minimum(-delta_energy, 0.0))
        acceptance_rate = jnp.where(
            jnp.isnan(acceptance_rate) | ~jnp.isfinite(initial_energy), 0.0, acceptance_rate
        )
        is_accepted = jax.random.uniform(key_accept, dtype=dtype) < acceptance_rate

        new_state = jax.tree.map(
            lambda a, b: jnp.where(is_accepted, a, b),
            HMCState(proposal.position, proposal.logdensity, proposal.logdensity_grad),
            state,
        )
        info = HMCInfo(
            momentum=momentum,
            acceptance_rate=acceptance_rate.astype(dtype),
            is_accepted=is_accepted,
            is_divergent=is_divergent,
            energy=jnp.where(is_accepted, proposal_energy, initial_energy),
            delta_energy=delta_energy,
            num_integration_steps=num_steps,
        )
        return new_state, info

    return step


def kernel(logdensity_fn: LogDensityFn, **options) -> Kernel:
    """Bundle :func:`init` and :func:`build_kernel` for ``logdensity_fn``.

    ``options`` are passed to :func:`build_kernel`.
    """
    return Kernel(
        init=lambda position: init(position, logdensity_fn),
        step=build_kernel(logdensity_fn, **options),
    )
