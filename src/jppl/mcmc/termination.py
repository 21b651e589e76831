"""The generalized U-turn criterion for NUTS, evaluated iteratively.

NUTS builds a subtree of ``2^depth`` leapfrog steps as a perfect binary tree over the steps in
integration order. Every internal node merges two adjacent halves and is accepted only if the
merged segment does not turn back on itself. Following Stan (2.26 and later) the merge of a
*left* segment ``A = [a .. e]`` with the *right* segment ``B = [e+1 .. b]`` that follows it is
checked three times (:func:`is_turning_after_merge`):

1. over ``A + B``: end velocities ``v_a``, ``v_b`` and momentum sum ``rho_A + rho_B``;
2. over ``A`` plus the first state of ``B``: ``v_a``, ``v_{e+1}``, ``rho_A + p_{e+1}``;
3. over the last state of ``A`` plus ``B``: ``v_e``, ``v_b``, ``p_e + rho_B``.

A check fails (the segment is *turning*) unless ``rho . v > 0`` at both of its ends. The same
three checks are applied when a finished subtree is merged into the trajectory.

Iterative evaluation
--------------------
:func:`iterative_turning_update` is called once per leapfrog step with the step's index ``n``
in the subtree and reports whether a node completed by that step fails. With ``S(n)`` the
momentum sum of steps ``0 .. n``, the sum over steps ``i .. n`` is ``S(n) - S(i - 1)``, so a
check between a stored step ``i`` and the current step needs only ``v_i``, ``S(i - 1)`` and the
scalar ``v_i . S(i - 1)``:

    (S(n) - S(i-1)) . v_i = v_i . S(n) - v_i . S(i-1),
    (S(n) - S(i-1)) . v_n = S(n) . v_n - S(i-1) . v_n.

Steps are kept in two stacks of ``L = max_tree_depth`` rows indexed by bit counts:

* the *start* stack holds, in row ``popcount(i)``, a step ``i`` that starts blocks (a block of
  ``2^h`` steps starts where ``2^h`` divides ``i``). The blocks containing step ``n`` start at
  ``n`` with its ``h`` lowest bits cleared; these have distinct bit counts and no later step
  reuses their rows while they are needed;
* the *end* stack holds, in row ``popcount(i + 1)``, a step ``i`` that ends blocks, by the
  same argument applied to ``i + 1``. Step ``i`` is moved there at step ``i + 1`` so that both
  stacks are written (in place) before they are read.

Step ``n`` completes the nodes of levels ``h + 1 = 1 .. T`` with ``T`` the number of trailing
one bits of ``n``. With ``P = popcount(n)``, the node of level ``h + 1`` starts at the step in
start row ``P - 1 - h`` and its left half ends at the step in end row ``P - h``: the rows in
play are contiguous, so every level is tested at once by evaluating the check against every
stored row (four ``(L, d) @ (d,)`` products) and masking. Check 2 only involves the first steps
of the two halves; it is evaluated when the right half starts (against start row ``P - 1``)
and kept as a pending flag, so that, as in the recursive algorithm, it stops the subtree at
the node's last step.

Each step costs ``O(d)`` writes and ``O(L d)`` reads, with no loop over levels, and memory is
``O(L d)``. The results match a recursive evaluation up to floating-point rounding of the sums.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = [
    "TurningCheckpoints",
    "init_turning_checkpoints",
    "is_turning_after_merge",
    "iterative_turning_update",
]

CheckTurning = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


class TurningCheckpoints(NamedTuple):
    """Bookkeeping of the U-turn checks inside one subtree (``L`` = maximum tree depth).

    Attributes:
        momentum_sum: ``(d,)`` sum of the momenta of the steps taken so far in the subtree.
        start_velocity: ``(L, d)``; row ``popcount(i)`` holds the velocity of a step ``i``
            that starts blocks.
        start_sum: ``(L, d)``; same rows: the momentum sum of the steps before ``i``.
        start_dot: ``(L,)``; same rows: ``start_velocity . start_sum``.
        end_velocity: ``(L, d)``; row ``popcount(i + 1)`` holds the velocity of a step ``i``
            that ends blocks.
        end_sum: ``(L, d)``; same rows: the momentum sum of the steps before ``i``.
        end_dot: ``(L,)``; same rows: ``end_velocity . end_sum``.
        pending: ``(L,)`` bool; entry ``h``: check 2 failed for the node of level ``h + 1``
            whose right half is in progress.
        previous_velocity: ``(d,)`` velocity of the latest step, moved to the end stack at the
            next step.
        previous_sum: ``(d,)`` momentum sum of the steps before the latest step.
        previous_dot: ``()``, ``previous_velocity . previous_sum``.
    """

    momentum_sum: jax.Array
    start_velocity: jax.Array
    start_sum: jax.Array
    start_dot: jax.Array
    end_velocity: jax.Array
    end_sum: jax.Array
    end_dot: jax.Array
    pending: jax.Array
    previous_velocity: jax.Array
    previous_sum: jax.Array
    previous_dot: jax.Array


def init_turning_checkpoints(max_tree_depth: int, position: jax.Array) -> TurningCheckpoints:
    """Empty checkpoints for subtrees of depth ``< max_tree_depth`` over ``(d,)`` positions."""
    dtype = position.dtype
    stack = jnp.zeros((max_tree_depth,) + jnp.shape(position), dtype=dtype)
    dots = jnp.zeros((max_tree_depth,), dtype=dtype)
    vector = jnp.zeros_like(position)
    return TurningCheckpoints(
        momentum_sum=vector,
        start_velocity=stack,
        start_sum=stack,
        start_dot=dots,
        end_velocity=stack,
        end_sum=stack,
        end_dot=dots,
        pending=jnp.zeros((max_tree_depth,), dtype=bool),
        previous_velocity=vector,
        previous_sum=vector,
        previous_dot=jnp.zeros((), dtype=dtype),
    )


def is_turning_after_merge(
    check_turning: CheckTurning,
    left_far_velocity: jax.Array,
    left_near_velocity: jax.Array,
    left_near_momentum: jax.Array,
    left_momentum_sum: jax.Array,
    right_near_velocity: jax.Array,
    right_near_momentum: jax.Array,
    right_far_velocity: jax.Array,
    right_momentum_sum: jax.Array,
) -> jax.Array:
    """Whether joining two adjacent trajectory segments produces a U-turn (the three checks).

    "Near" refers to the end of a segment that touches the other segment, "far" to its other
    end. The criterion is symmetric under reversing time, so the two segments may be given in
    either order as long as near/far are labelled consistently. All vectors are ``(d,)``;
    returns a ``()`` bool.
    """
    total = left_momentum_sum + right_momentum_sum
    whole = check_turning(left_far_velocity, right_far_velocity, total)
    left_plus_one = check_turning(
        left_far_velocity, right_near_velocity, left_momentum_sum + right_near_momentum
    )
    one_plus_right = check_turning(
        left_near_velocity, right_far_velocity, right_momentum_sum + left_near_momentum
    )
    return whole | left_plus_one | one_plus_right


def _popcount(x: jax.Array) -> jax.Array:
    return jax.lax.population_count(x)


def _set_row(table: jax.Array, row: jax.Array, value: jax.Array) -> jax.Array:
    """``table.at[row].set(value)`` as a plain dynamic-update-slice, which XLA performs in
    place inside loops (the scatter form is lowered with a bounds check that is not)."""
    value = jnp.asarray(value, dtype=table.dtype)[None]
    start = (row,) + (jnp.zeros((), dtype=row.dtype),) * (table.ndim - 1)
    return jax.lax.dynamic_update_slice(table, value, start)


def iterative_turning_update(
    checkpoints: TurningCheckpoints,
    index: ArrayLike,
    momentum: jax.Array,
    velocity: jax.Array,
) -> tuple[TurningCheckpoints, jax.Array]:
    """Record step ``index`` of a subtree and run the checks of every node it completes.

    Args:
        checkpoints: the state after steps ``0 .. index - 1`` of the current subtree (from
            :func:`init_turning_checkpoints` before step 0).
        index: ``()`` int, position of this step within the subtree (0-based, in integration
            order); must be below ``2^(L - 1)``.
        momentum: ``(d,)`` momentum of the new state.
        velocity: ``(d,)`` velocity ``M^{-1} p`` of the new state.

    Returns:
        ``(checkpoints, is_turning)`` where ``is_turning`` (``()`` bool) is True if a node of
        the subtree that ends with this step fails one of its three checks.
    """
    num_rows = checkpoints.start_dot.shape[0]
    rows = jnp.arange(num_rows, dtype=jnp.int32)
    n = jnp.asarray(index, dtype=jnp.int32)
    count = _popcount(n)
    row = jnp.minimum(count, num_rows - 1)
    sum_before = checkpoints.momentum_sum
    sum_through = sum_before + momentum
    own_dot = jnp.vdot(velocity, sum_before)

    # Step n - 1 ends blocks and goes to row popcount(n) of the end stack; step n starts
    # blocks and goes to row popcount(n) of the start stack. Recording step n - 1 only now
    # lets both stacks be updated in place before they are read.
    end_velocity = _set_row(checkpoints.end_velocity, row, checkpoints.previous_velocity)
    end_sum = _set_row(checkpoints.end_sum, row, checkpoints.previous_sum)
    end_dot = _set_row(checkpoints.end_dot, row, checkpoints.previous_dot)
    start_velocity = _set_row(checkpoints.start_velocity, row, velocity)
    start_sum = _set_row(checkpoints.start_sum, row, sum_before)
    start_dot = _set_row(checkpoints.start_dot, row, own_dot)

    # For every stored step i (row r): is the segment [i .. n] turning? With s = S(i - 1),
    # rho = S(n) - s, and the two dot products are v_i . S(n) - v_i . s and S(n) . v - s . v.
    through_dot_velocity = jnp.vdot(sum_through, velocity)

    def segment_turning(velocities: jax.Array, sums: jax.Array, dots: jax.Array) -> jax.Array:
        left = velocities @ sum_through - dots
        right = through_dot_velocity - sums @ velocity
        return jnp.logical_not((left > 0) & (right > 0))

    start_turning = segment_turning(start_velocity, start_sum, start_dot)
    end_turning = segment_turning(end_velocity, end_sum, end_dot)

    # Check 2 of the node whose right half starts at n (level tz(n) + 1): its left half starts
    # at n with the lowest set bit cleared, stored in row popcount(n) - 1. For n = 0 there is
    # no such node and tz is out of range, so nothing is written.
    check2 = jnp.any(start_turning & (rows == count - 1))
    lowest_level = _popcount((n & -n) - 1)
    pending = jnp.where(rows == lowest_level, check2, checkpoints.pending)

    # Step n completes the nodes of levels 1 .. T, T = tz(n + 1); for level h + 1 the node
    # starts at the step in start row popcount(n) - h - 1 (check 1) and its left half ends at
    # the step in end row popcount(n) - h (check 3).
    num_complete = _popcount(n ^ (n + 1)) - 1
    is_turning = (
        jnp.any(start_turning & (rows >= count - num_complete) & (rows < count))
        | jnp.any(end_turning & (rows > count - num_complete) & (rows <= count))
        | jnp.any(pending & (rows < num_complete))
    )

    checkpoints = TurningCheckpoints(
        momentum_sum=sum_through,
        start_velocity=start_velocity,
        start_sum=start_sum,
        start_dot=start_dot,
        end_velocity=end_velocity,
        end_sum=end_sum,
        end_dot=end_dot,
        pending=pending,
        previous_velocity=velocity,
        previous_sum=sum_before,
        previous_dot=own_dot,
    )
    return checkpoints, is_turning
