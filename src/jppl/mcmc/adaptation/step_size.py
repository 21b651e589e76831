"""Step-size adaptation: Nesterov dual averaging and Stan's initial step-size search.

Dual averaging is a kernel-free ``(init, update, final)`` triple over a
:class:`DualAveragingState`; :func:`find_reasonable_step_size` needs the log density (one
leapfrog step per trial) but not the kernel.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jppl.mcmc.hmc import LogDensityFn
from jppl.mcmc.integrators import IntegratorState, hamiltonian, velocity_verlet
from jppl.mcmc.metrics import gaussian_euclidean

__all__ = [
    "DualAveragingState",
    "dual_averaging_final",
    "dual_averaging_init",
    "dual_averaging_update",
    "find_reasonable_step_size",
]

# Bounds of the step-size search.
_STEP_SIZE_MIN = 1e-10
_STEP_SIZE_MAX = 1e7


class DualAveragingState(NamedTuple):
    """State of Nesterov dual averaging of ``log(step_size)`` (Hoffman & Gelman, 2014).

    Attributes:
        log_step_size: ``()`` current iterate ``x_t``; the step size used during warm-up is
            ``exp(x_t)``.
        log_step_size_avg: ``()`` weighted average ``x_bar_t``; its exponential is the final
            step size.
        gradient_avg: ``()`` running average ``H_bar_t`` of ``target - acceptance``.
        step: ``()`` int32, number of updates ``t`` since the last (re)start.
        mu: ``()`` shrinkage point, ``log(10 * step_size)`` at (re)start.
    """

    log_step_size: jax.Array
    log_step_size_avg: jax.Array
    gradient_avg: jax.Array
    step: jax.Array
    mu: jax.Array


def dual_averaging_init(step_size: ArrayLike) -> DualAveragingState:
    """Start (or restart) dual averaging from ``step_size`` (``()``), with
    ``mu = log(10 * step_size)``."""
    log_step_size = jnp.log(jnp.asarray(step_size))
    zero = jnp.zeros_like(log_step_size)
    return DualAveragingState(
        log_step_size=log_step_size,
        log_step_size_avg=zero,
        gradient_avg=zero,
        step=jnp.zeros((), jnp.int32),
        mu=jnp.log(10.0) + log_step_size,
    )


def dual_averaging_update(
    state: DualAveragingState,
    acceptance_rate: ArrayLike,
    *,
    target_accept_prob: float = 0.8,
    gamma: float = 0.05,
    t0: float = 10.0,
    kappa: float = 0.75,
) -> DualAveragingState:
    """One dual-averaging update with the acceptance statistic of the last transition.

    With ``t`` the update count, ``eta = 1 / (t + t0)``:
    ``H_bar = (1 - eta) H_bar + eta (target - min(acceptance, 1))``,
    ``x = mu - sqrt(t) / gamma * H_bar`` and ``x_bar = (1 - t^-kappa) x_bar + t^-kappa x``.
    A NaN acceptance statistic counts as 0.

    Args:
        state: current :class:`DualAveragingState`.
        acceptance_rate: ``()`` acceptance statistic in ``[0, 1]``.
        target_accept_prob: the acceptance statistic aimed at.
        gamma, t0, kappa: the dual-averaging constants (Stan's defaults).
    """
    dtype = state.log_step_size.dtype
    accept = jnp.asarray(acceptance_rate, dtype)
    accept = jnp.where(jnp.isnan(accept), 0.0, jnp.minimum(accept, 1.0))
    step = state.step + 1
    t = step.astype(dtype)
    eta = 1.0 / (t + t0)
    gradient_avg = (1.0 - eta) * state.gradient_avg + eta * (target_accept_prob - accept)
    log_step_size = state.mu - jnp.sqrt(t) / gamma * gradient_avg
    weight = t ** (-kappa)
    log_step_size_avg = (1.0 - weight) * state.log_step_size_avg + weight * log_step_size
    return DualAveragingState(
        log_step_size=log_step_size.astype(dtype),
        log_step_size_avg=log_step_size_avg.astype(dtype),
        gradient_avg=gradient_avg.astype(dtype),
        step=step,
        mu=state.mu,
    )


def dual_averaging_final(state: DualAveragingState) -> jax.Array:
    """The adapted step size ``exp(x_bar)`` (``()``); ``exp(x)`` if no update happened since
    the last restart (avoids Stan's step size of 1 after an empty terminal buffer)."""
    return jnp.exp(jnp.where(state.step > 0, state.log_step_size_avg, state.log_step_size))


def find_reasonable_step_size(
    key: jax.Array,
    state: Any,
    logdensity_fn: LogDensityFn,
    inverse_mass_matrix: ArrayLike,
    step_size: ArrayLike,
    *,
    target_accept_prob: float = 0.8,
    max_iterations: int = 100,
) -> jax.Array:
    """Stan's step-size initialization heuristic.

    From ``step_size``, take one leapfrog step with a fresh momentum; if its acceptance
    probability ``min(1, exp(H0 - H1))`` exceeds ``target_accept_prob`` keep doubling the step
    size (fresh momentum each time) until it no longer does, otherwise keep halving until it
    does. The first step size at which the crossing happens is returned (as in Stan's
    ``init_stepsize``). Runs in one ``lax.while_loop`` (the leapfrog step is traced once)
    bounded by ``max_iterations`` and by the range ``[1e-10, 1e7]``; a non-finite or
    non-positive ``step_size`` is returned unchanged.

    Args:
        key: PRNG key.
        state: anything with ``position (d,)``, ``logdensity ()`` and ``logdensity_grad (d,)``
            (a ``NUTSState`` or ``HMCState``).
        logdensity_fn: ``(d,) -> ()`` log density.
        inverse_mass_matrix: ``(d,)`` or ``(d, d)``.
        step_size: ``()`` starting value.
        target_accept_prob: acceptance probability of a single step to cross (Stan: 0.8).
        max_iterations: bound on the number of doublings/halvings.

    Returns:
        ``()`` step size.
    """
    position = state.position
    dtype = position.dtype
    step_size = jnp.asarray(step_size, dtype)
    metric = gaussian_euclidean(inverse_mass_matrix)
    integrator = velocity_verlet(logdensity_fn, metric.velocity)
    log_target = jnp.log(jnp.asarray(target_accept_prob, dtype))

    def log_accept(step_key: jax.Array, eps: jax.Array) -> jax.Array:
        momentum = metric.sample_momentum(step_key, position)
        start = IntegratorState(position, momentum, state.logdensity, state.logdensity_grad)
        end = integrator(start, eps)
        delta = hamiltonian(metric.kinetic_energy, start) - hamiltonian(metric.kinetic_energy, end)
        return jnp.where(jnp.isnan(delta), -jnp.inf, delta)

    valid = jnp.isfinite(step_size) & (step_size > 0)

    def cond(carry):
        i, _, _, _, done = carry
        return (i <= max_iterations) & ~done

    def body(carry):
        # Iteration 0 fixes the direction at the starting step size; each later iteration
        # tries the doubled/halved step size and stops at the first crossing.
        i, loop_key, eps, going_up, _ = carry
        loop_key, step_key = jax.random.split(loop_key)
        above = log_accept(step_key, eps) > log_target
        going_up = jnp.where(i == 0, above, going_up)
        crossed = (i > 0) & jnp.where(going_up, ~above, above)
        new_eps = jnp.where(crossed, eps, jnp.where(going_up, 2.0 * eps, 0.5 * eps))
        out_of_range = (new_eps > _STEP_SIZE_MAX) | (new_eps < _STEP_SIZE_MIN)
        new_eps = jnp.clip(new_eps, _STEP_SIZE_MIN, _STEP_SIZE_MAX).astype(dtype)
        return i + 1, loop_key, new_eps, going_up, crossed | out_of_range

    safe_eps = jnp.where(valid, step_size, 1.0)
    init = (jnp.zeros((), jnp.int32), key, safe_eps, jnp.zeros((), bool), ~valid)
    _, _, eps, _, _ = jax.lax.while_loop(cond, body, init)
    return jnp.where(valid, eps, step_size)
