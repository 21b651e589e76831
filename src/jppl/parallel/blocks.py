"""Sums over data split across devices, added in an order that does not depend on the mesh.

A sum over rows that XLA's partitioner splits over ``D`` devices is computed as ``D`` partial
sums plus an all-reduce, so its float rounding changes with ``D``. That is harmless for one
evaluation (about 1e-7 relative) but not for NUTS with warm-up adaptation, which feeds every
rounding difference back into the step size and the mass matrix until the draws differ.

Here the data are cut into a fixed number ``V`` of *blocks* of consecutive rows (``V`` a multiple
of the axis size, and the same for every device count). Every device runs the *same* compiled
per-block program on each of its ``V / D`` blocks, one after the other (``lax.map``), which
gives the value and gradient of each block; the ``V`` per-block results are then all-gathered
and added in block order. Each block's result and the final sum are therefore bitwise the same
on 1, 2, 4 or 8 devices. What crosses devices is ``V`` values and ``V`` gradients of the
parameters (never the data).

:func:`plan_blocks` finds the split arrays from their shardings; :func:`blockwise_sum` is the
differentiable sum.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jppl.parallel.mesh import axis_size, current_mesh
from jppl.parallel.sharding import dim_spec, traced_mesh

__all__ = ["BlockPlan", "blockwise_sum", "default_num_blocks", "plan_blocks"]

#: Blocks per data-sharded sum, before rounding up to a multiple of the axis size: the draws
#: are the same on every device count that divides it (1, 2, 4 and 8 devices).
DEFAULT_BLOCKS = 8


class BlockPlan(NamedTuple):
    """How the leaves of a data tree are cut into blocks.

    Attributes:
        axis: the mesh axis the data are split over (``"data"``).
        num_blocks: ``V``, a multiple of that axis's size.
        size: ``N``, the size of the split dim of every split leaf (a multiple of ``V``).
        dims: for each leaf of the flattened tree, its split dim, or ``None`` for a leaf that
            every block sees whole.
    """

    axis: str
    num_blocks: int
    size: int
    dims: tuple[int | None, ...]

    @property
    def block_size(self) -> int:
        """Rows per block, ``N / V``."""
        return self.size // self.num_blocks


def default_num_blocks(num_devices: int) -> int:
    """``lcm(8, num_devices)``: one ``V`` for every axis size that divides 8."""
    return math.lcm(DEFAULT_BLOCKS, num_devices)


def _split_dim(x: Any, mesh: Mesh, axis: str) -> int | None:
    """The dim of ``x`` split over exactly ``axis`` of ``mesh``; ``None`` if not split over it.

    Raises:
        ValueError: ``x`` is split over ``axis`` together with another axis, or over it at
            several dims (not supported by blocks).
    """
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, NamedSharding) or axis not in sharding.mesh.axis_names:
        return None
    if tuple(sharding.mesh.axis_sizes) != tuple(mesh.axis_sizes):
        return None
    found = []
    for dim, entry in enumerate(sharding.spec):
        names = entry if isinstance(entry, tuple) else (entry,)
        if axis in names:
            if len(names) > 1:
                raise ValueError(
                    f"an array of shape {x.shape} is split over mesh axes {names} at dim {dim}; "
                    f"data blocks need it split over '{axis}' alone."
                )
            found.append(dim)
    if len(found) > 1:
        raise ValueError(
            f"an array of shape {x.shape} is split over mesh axis '{axis}' at dims {found}; "
            "data blocks need one split dim."
        )
    return found[0] if found else None


def plan_blocks(
    tree: Any, mesh: Mesh, axis: str = "data", num_blocks: int | None = None
) -> BlockPlan | None:
    """Plan the blocks of the arrays of ``tree`` that are split over ``axis`` of ``mesh``.

    Args:
        tree: a pytree (e.g. a model's ``(args, kwargs)``); its ``jax.Array`` leaves with a
            ``NamedSharding`` that splits one dim over ``axis`` (as
            :func:`jppl.parallel.shard_along` makes them) are the split leaves.
        mesh: the mesh.
        axis: the data axis.
        num_blocks: ``V``; default :func:`default_num_blocks` of the axis size.

    Returns:
        the plan, or ``None`` when no leaf is split over ``axis`` (nothing to cut).

    Raises:
        ValueError: the split leaves have different sizes along their split dims, ``V`` is not
            a multiple of the axis size, or ``N`` is not a multiple of ``V``.
    """
    if axis not in mesh.axis_names:
        return None
    leaves = jax.tree.leaves(tree)
    dims = tuple(_split_dim(x, mesh, axis) for x in leaves)
    sizes = {np.shape(x)[d] for x, d in zip(leaves, dims, strict=True) if d is not None}
    if not sizes:
        return None
    if len(sizes) > 1:
        raise ValueError(
            f"the arrays split over mesh axis '{axis}' have sizes {sorted(sizes)} along their "
            "split dims; data blocks need one size N (every split array indexed by the same "
            "plate)."
        )
    (size,) = sizes
    n_dev = axis_size(mesh, axis)
    blocks = default_num_blocks(n_dev) if num_blocks is None else int(num_blocks)
    if blocks < 1 or blocks % n_dev:
        raise ValueError(
            f"data_blocks={num_blocks} must be a positive multiple of the size {n_dev} of mesh "
            f"axis '{axis}'."
        )
    if size % blocks:
        raise ValueError(
            f"the data split over mesh axis '{axis}' have N={size} rows, which is not a "
            f"multiple of the {blocks} data blocks. Pad them to a multiple of {blocks} and mask "
            f"the padding out (jppl.parallel.pad_to_multiple(..., {blocks})), pick "
            "data_blocks=<a multiple of the axis size that divides N>, or pass data_blocks=0 "
            "to let XLA reduce (then results depend on the device count in the last bits)."
        )
    return BlockPlan(axis, blocks, size, dims)


def _to_blocks(x: jax.Array, dim: int, num: int) -> jax.Array:
    """``(..., num * b, ...)`` with the rows at ``dim`` -> ``(num, ..., b, ...)``."""
    shape = x.shape
    x = jnp.reshape(x, shape[:dim] + (num, shape[dim] // num) + shape[dim + 1 :])
    return jnp.moveaxis(x, dim, 0)


def _add_in_order(tree: Any, num: int) -> Any:
    """``tree[0] + tree[1] + ... + tree[num - 1]`` along the leading dim, left to right."""

    def add(x):
        total = x[0]
        for i in range(1, num):
            total = total + x[i]
        return total

    return jax.tree.map(add, tree)


def _blockwise(fn: Callable, plan: BlockPlan, params: Any, leaves: list, with_grad: bool):
    """Per-block ``fn`` (or its value and gradient), all-gathered and added in block order."""
    mesh = current_mesh()
    if mesh is None:
        raise RuntimeError("blockwise_sum needs an active mesh (jppl.parallel.use_mesh).")
    n_dev = axis_size(mesh, plan.axis)
    local_blocks = plan.num_blocks // n_dev
    arrays = [i for i, x in enumerate(leaves) if isinstance(x, (jax.Array, np.ndarray))]
    split = [i for i in arrays if plan.dims[i] is not None]
    whole = [i for i in arrays if plan.dims[i] is None]

    def local(params, split_leaves, whole_leaves):
        blocks = [
            _to_blocks(x, plan.dims[i], local_blocks)
            for i, x in zip(split, split_leaves, strict=True)
        ]

        def one(block):
            full = list(leaves)
            for i, x in zip(split, block, strict=True):
                full[i] = x
            for i, x in zip(whole, whole_leaves, strict=True):
                full[i] = x
            if with_grad:
                return jax.value_and_grad(fn)(params, full)
            return fn(params, full)

        per_block = jax.lax.map(one, blocks)
        gathered = jax.lax.all_gather(per_block, plan.axis, tiled=True)
        return _add_in_order(gathered, plan.num_blocks)

    split_specs = [dim_spec(np.ndim(leaves[i]), plan.dims[i], plan.axis) for i in split]
    mapped = jax.shard_map(
        local,
        mesh=traced_mesh(mesh),
        in_specs=(P(), split_specs, [P()] * len(whole)),
        out_specs=P(),
        axis_names=frozenset({plan.axis}),
        check_vma=False,
    )
    return mapped(params, [leaves[i] for i in split], [leaves[i] for i in whole])


def blockwise_sum(fn: Callable, plan: BlockPlan, params: Any, leaves: list) -> jax.Array:
    """``sum over blocks b of fn(params, leaves cut to block b)``, independent of the mesh.

    Must be called while tracing under :func:`jppl.parallel.use_mesh` with the plan's mesh.

    Args:
        fn: ``(params, leaves) -> ()`` float: the contribution of one block; ``leaves`` is the
            list of leaves with each split leaf cut to its ``N / V`` rows of the block.
        plan: from :func:`plan_blocks` on the tree that ``leaves`` flattens.
        params: pytree of float arrays (the same on every device) to differentiate against.
        leaves: the flattened data tree (split leaves placed as the plan says).

    Returns:
        the scalar sum. Its gradient with respect to ``params`` is the block gradients added in
        block order (it is computed by the forward pass); ``leaves`` get no gradient.
    """

    arrays = [i for i, x in enumerate(leaves) if isinstance(x, (jax.Array, np.ndarray))]

    def with_arrays(values: list) -> list:
        full = list(leaves)
        for i, x in zip(arrays, values, strict=True):
            full[i] = x
        return full

    # The data are explicit (non-differentiated) arguments: a custom_vjp may not close over
    # traced arrays.
    @jax.custom_vjp
    def total(params, values):
        return _blockwise(fn, plan, params, with_arrays(values), with_grad=False)

    def forward(params, values):
        value, grad = _blockwise(fn, plan, params, with_arrays(values), with_grad=True)
        return value, grad

    def backward(grad, cotangent):
        return jax.tree.map(lambda g: (cotangent * g).astype(g.dtype), grad), None

    total.defvjp(forward, backward)
    return total(params, [leaves[i] for i in arrays])
