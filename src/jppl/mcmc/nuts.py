"""The No-U-Turn Sampler with multinomial sampling and the generalized U-turn criterion.

This is the variant used by Stan: the trajectory is doubled until it turns back on itself
(checked with momentum sums, including the checks across merged subtrees), diverges, or
reaches ``max_tree_depth``; the next state is drawn from the whole trajectory with weights
``exp(-H)`` (see :mod:`jppl.mcmc.trajectory` for the details). Tree building is iterative, so
the kernel compiles quickly under ``jit`` and ``vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jppl.mcmc.hmc import Kernel
from jppl.mcmc.integrators import IntegratorState, velocity_verlet
from jppl.mcmc.metrics import gaussian_euclidean
from jppl.mcmc.trajectory import build_trajectory

__all__ = ["NUTSInfo", "NUTSParams", "NUTSState", "build_kernel", "init", "kernel"]

LogDensityFn = Callable[[jax.Array], jax.Array]


class NUTSState(NamedTuple):
    """Position of the chain with the cached log density and gradient.

    Attributes:
        position: ``(d,)``.
        logdensity: ``()``.
        logdensity_grad: ``(d,)``.
    """

    position: jax.Array
    logdensity: jax.Array
    logdensity_grad: jax.Array


class NUTSParams(NamedTuple):
    """Tuning parameters of one NUTS transition.

    Attributes:
        step_size: ``()`` leapfrog step size.
        inverse_mass_matrix: ``(d,)`` diagonal or ``(d, d)`` dense ``M^{-1}``.
    """

    step_size: ArrayLike
    inverse_mass_matrix: ArrayLike


class NUTSInfo(NamedTuple):
    """Diagnostics of one NUTS transition.

    Attributes:
        momentum: ``(d,)`` momentum drawn at the start of the transition.
        acceptance_rate: ``()`` mean over all leapfrog steps of ``min(1, exp(H0 - H))``; the
            statistic that step-size adaptation targets.
        num_steps: ``()`` int32, leapfrog steps (gradient evaluations) taken, at most
            ``2^max_tree_depth - 1``.
        tree_depth: ``()`` int32, number of trajectory doublings kept, at most
            ``max_tree_depth``.
        is_divergent: ``()`` bool, the last subtree diverged.
        is_turning: ``()`` bool, the trajectory stopped because of a U-turn.
        energy: ``()`` Hamiltonian of the selected state (with its momentum).
    """

    momentum: jax.Array
    acceptance_rate: jax.Array
    num_steps: jax.Array
    tree_depth: jax.Array
    is_divergent: jax.Array
    is_turning: jax.Array
    energy: jax.Array


def init(position: ArrayLike, logdensity_fn: LogDensityFn) -> NUTSState:
    """Initial state at ``position`` (``(d,)``): evaluates the log density and its gradient."""
    position = jnp.asarray(position)
    logdensity, logdensity_grad = jax.value_and_grad(logdensity_fn)(position)
    return NUTSState(position, logdensity, logdensity_grad)


def build_kernel(
    logdensity_fn: LogDensityFn,
    max_tree_depth: int = 10,
    divergence_threshold: float = 1000.0,
) -> Callable[[jax.Array, NUTSState, NUTSParams], tuple[NUTSState, NUTSInfo]]:
    """Build the NUTS transition ``step(key, state, params) -> (NUTSState, NUTSInfo)``.

    Args:
        logdensity_fn: ``(d,) -> ()`` unnormalized log density.
        max_tree_depth: maximum number of trajectory doublings (static, ``1 .. 30``).
        divergence_threshold: energy error ``H - H0`` above which a step is divergent.
    """
    max_tree_depth = int(max_tree_depth)
    if not 1 <= max_tree_depth <= 30:
        raise ValueError(f"max_tree_depth must be between 1 and 30, got {max_tree_depth}")

    def step(
        key: jax.Array, state: NUTSState, params: NUTSParams, depth_limit: ArrayLike | None = None
    ) -> tuple[NUTSState, NUTSInfo]:
        """One transition; ``depth_limit`` (``()`` int, at most ``max_tree_depth``, may be
        traced) stops the doublings earlier (e.g. another depth during warm-up)."""
        metric = gaussian_euclidean(
            jnp.asarray(params.inverse_mass_matrix, dtype=state.position.dtype)
        )
        integrator = velocity_verlet(logdensity_fn, metric.velocity)
        key_momentum, key_trajectory = jax.random.split(key)
        momentum = metric.sample_momentum(key_momentum, state.position)
        initial = IntegratorState(state.position, momentum, state.logdensity, state.logdensity_grad)
        traj = build_trajectory(
            integrator,
            metric,
            initial,
            params.step_size,
            key_trajectory,
            max_tree_depth=max_tree_depth,
            divergence_threshold=divergence_threshold,
            depth_limit=depth_limit,
        )
        proposal = traj.proposal
        new_state = NUTSState(proposal.position, proposal.logdensity, proposal.logdensity_grad)
        info = NUTSInfo(
            momentum=momentum,
            acceptance_rate=traj.sum_accept_prob / jnp.maximum(traj.num_steps, 1),
            num_steps=traj.num_steps,
            tree_depth=traj.depth,
            is_divergent=traj.is_diverging,
            is_turning=traj.is_turning,
            energy=traj.proposal_energy,
        )
        return new_state, info

    return step


def kernel(logdensity_fn: LogDensityFn, **options) -> Kernel:
    """Bundle :func:`init` and :func:`build_kernel` for ``logdensity_fn``.

    ``options`` (``max_tree_depth``, ``divergence_threshold``) go to :func:`build_kernel`.
    ``Kernel.init(position)`` closes over ``logdensity_fn``.
    """
    return Kernel(
        init=lambda position: init(position, logdensity_fn),
        step=build_kernel(logdensity_fn, **options),
    )
