"""Numerical integrators for Hamiltonian dynamics on a flat parameter vector.

The phase space is ``(position, momentum)`` with both of shape ``(d,)``. The Hamiltonian is
``H(x, p) = -logdensity(x) + K(p)``; an integrator only needs ``dK/dp`` (the *velocity*),
which the metric provides (see :mod:`jppl.mcmc.metrics`).

An integrator state carries the log density and its gradient at ``position`` so that each
step needs exactly one new gradient evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jppl.mcmc.metrics import Metric

__all__ = [
    "Integrator",
    "IntegratorState",
    "hamiltonian",
    "new_integrator_state",
    "velocity_verlet",
]


class IntegratorState(NamedTuple):
    """A point of phase space with the cached log density and gradient at its position.

    Attributes:
        position: ``(d,)`` point in parameter space.
        momentum: ``(d,)`` conjugate momentum.
        logdensity: ``()`` value of the (unnormalized) log density at ``position``.
        logdensity_grad: ``(d,)`` gradient of the log density at ``position``.
    """

    position: jax.Array
    momentum: jax.Array
    logdensity: jax.Array
    logdensity_grad: jax.Array


#: ``one_step(state, step_size) -> state``; a negative step size integrates backwards in time.
Integrator = Callable[[IntegratorState, ArrayLike], IntegratorState]


def new_integrator_state(
    logdensity_fn: Callable[[jax.Array], jax.Array], position: ArrayLike, momentum: ArrayLike
) -> IntegratorState:
    """Evaluate ``logdensity_fn`` and its gradient at ``position`` (``(d,)``) and pack a state."""
    position = jnp.asarray(position)
    logdensity, grad = jax.value_and_grad(logdensity_fn)(position)
    return IntegratorState(position, jnp.asarray(momentum), logdensity, grad)


def hamiltonian(
    kinetic_energy_fn: Callable[[jax.Array], jax.Array], state: IntegratorState
) -> jax.Array:
    """Total energy ``-logdensity(x) + K(p)`` of ``state`` (shape ``()``).

    A NaN energy (e.g. the log density is NaN at the position) is reported as ``+inf`` so that
    callers treat such points as infinitely improbable (and as divergences).
    """
    energy = -state.logdensity + kinetic_energy_fn(state.momentum)
    return jnp.where(jnp.isnan(energy), jnp.inf, energy)


def velocity_verlet(
    logdensity_fn: Callable[[jax.Array], jax.Array],
    kinetic_energy_grad_fn: Callable[[jax.Array], jax.Array] | Metric,
) -> Integrator:
    """Build the leapfrog (velocity Verlet) integrator for ``H(x, p) = -log p(x) + K(p)``.

    Args:
        logdensity_fn: ``(d,) -> ()`` unnormalized log density of the target.
        kinetic_energy_grad_fn: ``(d,) -> (d,)`` gradient of the kinetic energy with respect to
            the momentum, i.e. the velocity ``M^{-1} p`` for a Gaussian kinetic energy; a
            :class:`~jppl.mcmc.metrics.Metric` may be passed instead (its ``velocity`` is used).

    Returns:
        ``one_step(state, step_size) -> IntegratorState``: a half momentum kick with the cached
        gradient, a full position drift, one evaluation of ``value_and_grad(logdensity_fn)`` at
        the new position and a second half kick. The map is symplectic and time reversible:
        stepping with ``-step_size`` undoes a step with ``step_size``.
    """
    if isinstance(kinetic_energy_grad_fn, Metric):
        kinetic_energy_grad_fn = kinetic_energy_grad_fn.velocity
    value_and_grad_fn = jax.value_and_grad(logdensity_fn)

    def one_step(state: IntegratorState, step_size: ArrayLike) -> IntegratorState:
        step_size = jnp.asarray(step_size, dtype=state.position.dtype)
        half_step = 0.5 * step_size
        momentum = state.momentum + half_step * state.logdensity_grad
        position = state.position + step_size * kinetic_energy_grad_fn(momentum)
        logdensity, logdensity_grad = value_and_grad_fn(position)
        momentum = momentum + half_step * logdensity_grad
        return IntegratorState(position, momentum, logdensity, logdensity_grad)

    return one_step
