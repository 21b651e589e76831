"""Mapping a per-particle function over a batch split along a mesh axis.

Particles are independent computations of one batch (ELBO particles, augmented minibatches,
predictive draws): :func:`map_particles` vmaps a function over their leading dim and, under
an active mesh, splits that dim over one mesh axis (``jax.vmap(..., spmd_axis_name=axis)``
with :func:`~jppl.parallel.split_leading` on its inputs and outputs). Without a mesh, or on
an axis of size 1, it is the same code with nothing split: a plain ``jax.vmap``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from jppl.parallel.mesh import axis_size, current_mesh
from jppl.parallel.sharding import split_leading

__all__ = ["check_divisible", "map_particles"]

InAxes = int | None | Sequence[int | None]


def map_particles(
    fn: Callable,
    *batch: Any,
    in_axes: InAxes = 0,
    axis: str | None = "sample",
    what: str = "the number of particles",
) -> Any:
    """``jax.vmap(fn, in_axes)(*batch)`` with the mapped dim split over mesh axis ``axis``.

    Each device of the active mesh's ``axis`` runs ``S / D`` of the ``S`` particles (and the
    other axes are left to XLA's partitioner, e.g. ``data`` for sharded plates inside ``fn``);
    particle ``i`` sees the same inputs on every mesh, so results do not depend on it (up to
    the order of floating-point sums of later reductions).

    Args:
        fn: the per-particle function of the positional arguments ``batch``.
        *batch: pytrees; those mapped (``in_axes`` 0) have a leading particle dim ``S``.
        in_axes: 0 (all mapped), ``None`` (shared) or one of those per positional argument.
        axis: the mesh axis to split the particles over; ``None``: split over nothing.
        what: how the error names ``S`` (e.g. ``"Trace_ELBO: num_particles"``).

    Returns:
        ``fn``'s outputs with a leading dim ``S`` (split over ``axis`` under a mesh).

    Raises:
        ValueError: ``S`` is not divisible by the size of ``axis`` (:func:`check_divisible`).
    """
    axes = tuple(in_axes) if isinstance(in_axes, Sequence) else (in_axes,) * len(batch)
    if len(axes) != len(batch) or any(a not in (0, None) for a in axes):
        raise ValueError(f"map_particles: in_axes must be 0 or None per argument, got {in_axes!r}")
    mesh = current_mesh()
    mapped = jax.tree_util.tree_leaves([x for x, a in zip(batch, axes, strict=True) if a == 0])
    if mapped:
        check_divisible(int(np.shape(mapped[0])[0]), mesh, axis, what)
    # Size 1 (no mesh, no such axis, or axis None): the vmap carries no axis name and nothing
    # is constrained, so this is a plain vmap.
    spmd = axis if axis is not None and axis_size(mesh, axis) > 1 else None
    batch = tuple(_split(x, spmd) if a == 0 else x for x, a in zip(batch, axes, strict=True))
    out = jax.vmap(fn, in_axes=axes, spmd_axis_name=spmd)(*batch)
    return _split(out, spmd)


def check_divisible(num: int, mesh: Mesh | None, axis: str | None, what: str) -> None:
    """Check that ``num`` things (particles, data points) split evenly over ``axis`` of ``mesh``.

    A no-op without a mesh or ``axis`` (size 1).

    Raises:
        ValueError: ``"{what}={num} is not divisible by the size D of the mesh's 'axis' axis"``.
    """
    size = 1 if axis is None else axis_size(mesh, axis)
    if num % size:
        raise ValueError(
            f"{what}={num} is not divisible by the size {size} of the mesh's '{axis}' axis; "
            "every device must get the same number (use a multiple of it, or a mesh with a "
            f"smaller '{axis}' axis)."
        )


def _split(tree: Any, axis: str | None) -> Any:
    return tree if axis is None else split_leading(tree, axis)
