"""Iterative construction of NUTS trajectories with multinomial sampling.

A trajectory is grown from the initial phase-space point by repeated doubling: at depth
``j`` a fresh subtree of ``2^j`` leapfrog steps is integrated from the left or right end of the
current trajectory (direction chosen by a fair coin), then merged into it. Growth stops when

* the subtree contains a divergence (energy error above the threshold) or an internal U-turn;
  the subtree is then discarded and the sample is kept from the trajectory built so far;
* the merged trajectory makes a U-turn (the new subtree still took part in the sampling);
* the trajectory reached ``max_tree_depth`` doublings (``2^max_tree_depth - 1`` steps).

Each state ``z`` carries the weight ``exp(H0 - H(z))``. Inside a subtree a candidate is kept
with probability proportional to its weight (progressive uniform sampling, step by step). When
a subtree is merged, its candidate replaces the current one with probability
``min(1, W_subtree / W_trajectory)`` (biased progressive sampling), which favours states far
from the start while leaving the target invariant.

Both loops are ``lax.while_loop``\\ s: the leapfrog step and the U-turn bookkeeping are traced
once, whatever the depth.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jppl.mcmc.integrators import Integrator, IntegratorState, hamiltonian
from jppl.mcmc.metrics import Metric
from jppl.mcmc.termination import (
    TurningCheckpoints,
    init_turning_checkpoints,
    is_turning_after_merge,
    iterative_turning_update,
)

__all__ = ["Subtree", "Trajectory", "build_subtree", "build_trajectory"]


def _select(pred: jax.Array, on_true, on_false):
    """``where(pred, a, b)`` leaf-wise over two pytrees of the same structure."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class Subtree(NamedTuple):
    """Result of integrating one subtree (see :func:`build_subtree`).

    Attributes:
        last_state: ``IntegratorState`` of the last step taken (the new end of the trajectory).
        last_velocity: ``(d,)`` velocity of ``last_state``.
        first_momentum: ``(d,)`` momentum of the first step (next to the old trajectory).
        first_velocity: ``(d,)`` velocity of the first step.
        momentum_sum: ``(d,)`` sum of the momenta of all steps taken.
        proposal: ``IntegratorState`` sampled within the subtree in proportion to the weights.
        proposal_energy: ``()`` Hamiltonian of ``proposal``.
        log_weight: ``()`` ``log sum exp(H0 - H)`` over the steps taken.
        sum_accept_prob: ``()`` sum over steps of ``min(1, exp(H0 - H))``.
        num_steps: ``()`` int32, leapfrog steps taken (``2^depth`` unless stopped early).
        is_diverging: ``()`` bool, a step had an energy error above the threshold.
        is_turning: ``()`` bool, a node inside the subtree failed the U-turn checks.
    """

    last_state: IntegratorState
    last_velocity: jax.Array
    first_momentum: jax.Array
    first_velocity: jax.Array
    momentum_sum: jax.Array
    proposal: IntegratorState
    proposal_energy: jax.Array
    log_weight: jax.Array
    sum_accept_prob: jax.Array
    num_steps: jax.Array
    is_diverging: jax.Array
    is_turning: jax.Array


class _SubtreeCarry(NamedTuple):
    subtree: Subtree
    checkpoints: TurningCheckpoints


def build_subtree(
    integrator: Integrator,
    metric: Metric,
    start: IntegratorState,
    step_size: ArrayLike,
    depth: ArrayLike,
    initial_energy: ArrayLike,
    key: jax.Array,
    max_tree_depth: int,
    divergence_threshold: float,
) -> Subtree:
    """Integrate up to ``2^depth`` steps from ``start`` and sample a state among them.

    Args:
        integrator: leapfrog ``one_step(state, step_size)``.
        metric: the kinetic energy / U-turn criterion.
        start: the end of the current trajectory the subtree grows from (not itself a step of
            the subtree).
        step_size: ``()`` signed step size; negative to extend the trajectory backwards.
        depth: ``()`` int, ``0 <= depth < max_tree_depth``.
        initial_energy: ``()`` Hamiltonian ``H0`` of the point the trajectory started from.
        key: PRNG key for the within-subtree sampling.
        max_tree_depth: static bound on ``depth`` (sizes the U-turn checkpoints).
        divergence_threshold: a step with ``H - H0`` above this is a divergence.

    Returns:
        A :class:`Subtree`. Integration stops at the first divergent step or the first step that
        completes a turning node; the subtree is then invalid and must not be merged.
    """
    dtype = start.position.dtype
    depth = jnp.asarray(depth, dtype=jnp.int32)
    num_leaves = jnp.left_shift(jnp.int32(1), depth)
    step_size = jnp.asarray(step_size, dtype=dtype)
    zeros = jnp.zeros_like(start.position)
    false = jnp.zeros((), dtype=bool)

    init = _SubtreeCarry(
        Subtree(
            last_state=start,
            last_velocity=zeros,
            first_momentum=zeros,
            first_velocity=zeros,
            momentum_sum=zeros,
            proposal=start,
            proposal_energy=jnp.asarray(jnp.inf, dtype=dtype),
            log_weight=jnp.asarray(-jnp.inf, dtype=dtype),
            sum_accept_prob=jnp.zeros((), dtype=dtype),
            num_steps=jnp.zeros((), dtype=jnp.int32),
            is_diverging=false,
            is_turning=false,
        ),
        init_turning_checkpoints(max_tree_depth, start.position),
    )

    def cond_fn(carry: _SubtreeCarry) -> jax.Array:
        tree = carry.subtree
        return (tree.num_steps < num_leaves) & ~tree.is_diverging & ~tree.is_turning

    def body_fn(carry: _SubtreeCarry) -> _SubtreeCarry:
        tree, checkpoints = carry
        index = tree.num_steps
        state = integrator(tree.last_state, step_size)
        energy = hamiltonian(metric.kinetic_energy, state).astype(dtype)
        log_weight_step = (initial_energy - energy).astype(dtype)  # -inf for a NaN/inf energy
        is_diverging = -log_weight_step > divergence_threshold

        # Progressive uniform sampling: keep the new step with prob w_step / (W_before + w_step).
        log_weight = jnp.logaddexp(tree.log_weight, log_weight_step)
        log_u = jnp.log(jax.random.uniform(jax.random.fold_in(key, index), dtype=dtype))
        take_step = log_u < log_weight_step - log_weight
        proposal = _select(take_step, state, tree.proposal)
        proposal_energy = jnp.where(take_step, energy, tree.proposal_energy)
        accept_prob = jnp.exp(jnp.minimum(log_weight_step, 0.0))

        velocity = metric.velocity(state.momentum)
        checkpoints, is_turning = iterative_turning_update(
            checkpoints, index, state.momentum, velocity
        )
        is_first = index == 0
        tree = Subtree(
            last_state=state,
            last_velocity=velocity,
            first_momentum=jnp.where(is_first, state.momentum, tree.first_momentum),
            first_velocity=jnp.where(is_first, velocity, tree.first_velocity),
            momentum_sum=checkpoints.momentum_sum,
            proposal=proposal,
            proposal_energy=proposal_energy,
            log_weight=log_weight,
            sum_accept_prob=tree.sum_accept_prob + accept_prob,
            num_steps=index + 1,
            is_diverging=is_diverging,
            is_turning=is_turning & ~is_diverging,
        )
        return _SubtreeCarry(tree, checkpoints)

    return jax.lax.while_loop(cond_fn, body_fn, init).subtree


class Trajectory(NamedTuple):
    """State of a (growing) NUTS trajectory; the result of :func:`build_trajectory`.

    Attributes:
        left: leftmost (earliest in time) ``IntegratorState``.
        right: rightmost (latest in time) ``IntegratorState``.
        left_velocity: ``(d,)`` velocity at ``left``.
        right_velocity: ``(d,)`` velocity at ``right``.
        momentum_sum: ``(d,)`` sum of the momenta of all states in the trajectory.
        proposal: the sampled ``IntegratorState``.
        proposal_energy: ``()`` Hamiltonian of ``proposal``.
        log_weight: ``()`` ``log sum exp(H0 - H)`` over the trajectory (0 for the start alone).
        sum_accept_prob: ``()`` sum of ``min(1, exp(H0 - H))`` over all leapfrog steps taken,
            including those of a discarded final subtree.
        num_steps: ``()`` int32, number of leapfrog steps taken.
        depth: ``()`` int32, number of subtrees successfully merged (the tree depth).
        is_diverging: ``()`` bool, stopped because of a divergence.
        is_turning: ``()`` bool, stopped because of a U-turn.
    """

    left: IntegratorState
    right: IntegratorState
    left_velocity: jax.Array
    right_velocity: jax.Array
    momentum_sum: jax.Array
    proposal: IntegratorState
    proposal_energy: jax.Array
    log_weight: jax.Array
    sum_accept_prob: jax.Array
    num_steps: jax.Array
    depth: jax.Array
    is_diverging: jax.Array
    is_turning: jax.Array


def build_trajectory(
    integrator: Integrator,
    metric: Metric,
    initial: IntegratorState,
    step_size: ArrayLike,
    key: jax.Array,
    max_tree_depth: int = 10,
    divergence_threshold: float = 1000.0,
    depth_limit: ArrayLike | None = None,
) -> Trajectory:
    """Grow a NUTS trajectory from ``initial`` by doubling and sample one of its states.

    Args:
        integrator: leapfrog ``one_step(state, step_size)``.
        metric: the kinetic energy / U-turn criterion.
        initial: starting point, with its freshly drawn momentum.
        step_size: ``()`` positive step size.
        key: PRNG key (directions, within-subtree and merge sampling).
        max_tree_depth: static maximum number of doublings.
        divergence_threshold: energy error above which a step counts as divergent.
        depth_limit: ``()`` int (may be traced), ``<= max_tree_depth``: stop doubling at this
            depth instead (the checkpoints stay sized by ``max_tree_depth``).

    Returns:
        The final :class:`Trajectory`; ``proposal`` is the next state of the Markov chain.
    """
    dtype = initial.position.dtype
    step_size = jnp.asarray(step_size, dtype=dtype)
    initial_energy = hamiltonian(metric.kinetic_energy, initial).astype(dtype)
    initial_velocity = metric.velocity(initial.momentum)
    false = jnp.zeros((), dtype=bool)

    init = Trajectory(
        left=initial,
        right=initial,
        left_velocity=initial_velocity,
        right_velocity=initial_velocity,
        momentum_sum=initial.momentum,
        proposal=initial,
        proposal_energy=initial_energy,
        log_weight=jnp.zeros((), dtype=dtype),
        sum_accept_prob=jnp.zeros((), dtype=dtype),
        num_steps=jnp.zeros((), dtype=jnp.int32),
        depth=jnp.zeros((), dtype=jnp.int32),
        # A start with infinite energy (log density -inf or NaN) gives no valid weights: no
        # tree is built, the start is returned and the transition is flagged divergent.
        is_diverging=~jnp.isfinite(initial_energy),
        is_turning=false,
    )

    def cond_fn(carry: tuple[jax.Array, Trajectory]) -> jax.Array:
        _, traj = carry
        limit = max_tree_depth if depth_limit is None else depth_limit
        return (traj.depth < limit) & ~traj.is_diverging & ~traj.is_turning

    def body_fn(carry: tuple[jax.Array, Trajectory]) -> tuple[jax.Array, Trajectory]:
        key, traj = carry
        key, key_uniforms, key_subtree = jax.random.split(key, 3)
        uniforms = jax.random.uniform(key_uniforms, (2,), dtype=dtype)
        go_right = uniforms[0] < 0.5
        start = _select(go_right, traj.right, traj.left)
        signed_step = jnp.where(go_right, step_size, -step_size)
        tree = build_subtree(
            integrator,
            metric,
            start,
            signed_step,
            traj.depth,
            initial_energy,
            key_subtree,
            max_tree_depth,
            divergence_threshold,
        )
        is_valid = ~tree.is_diverging & ~tree.is_turning

        # Biased progressive sampling: prefer the new subtree with prob min(1, W_new / W_old).
        log_u = jnp.log(uniforms[1])
        take_subtree = is_valid & (log_u < tree.log_weight - traj.log_weight)
        proposal = _select(take_subtree, tree.proposal, traj.proposal)
        proposal_energy = jnp.where(take_subtree, tree.proposal_energy, traj.proposal_energy)
        log_weight = jnp.where(
            is_valid, jnp.logaddexp(traj.log_weight, tree.log_weight), traj.log_weight
        )

        # U-turn checks across the old trajectory and the new subtree.
        near_velocity = jnp.where(go_right, traj.right_velocity, traj.left_velocity)
        far_velocity = jnp.where(go_right, traj.left_velocity, traj.right_velocity)
        near_momentum = jnp.where(go_right, traj.right.momentum, traj.left.momentum)
        merged_turning = is_turning_after_merge(
            metric.check_turning,
            far_velocity,
            near_velocity,
            near_momentum,
            traj.momentum_sum,
            tree.first_velocity,
            tree.first_momentum,
            tree.last_velocity,
            tree.momentum_sum,
        )

        traj = Trajectory(
            left=_select(go_right, traj.left, tree.last_state),
            right=_select(go_right, tree.last_state, traj.right),
            left_velocity=jnp.where(go_right, traj.left_velocity, tree.last_velocity),
            right_velocity=jnp.where(go_right, tree.last_velocity, traj.right_velocity),
            momentum_sum=traj.momentum_sum + tree.momentum_sum,
            proposal=proposal,
            proposal_energy=proposal_energy,
            log_weight=log_weight,
            sum_accept_prob=traj.sum_accept_prob + tree.sum_accept_prob,
            num_steps=traj.num_steps + tree.num_steps,
            depth=traj.depth + is_valid.astype(jnp.int32),
            is_diverging=tree.is_diverging,
            is_turning=tree.is_turning | (is_valid & merged_turning),
        )
        return key, traj

    _, traj = jax.lax.while_loop(cond_fn, body_fn, (key, init))
    return traj
