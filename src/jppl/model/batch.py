"""Mapping a one-draw computation over a batch of draws (``jax.vmap`` or ``jax.lax.map``).

Shared by :func:`jppl.model.log_likelihood` and :class:`jppl.infer.Predictive`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jppl.parallel.particles import map_particles

__all__ = ["batch_shape_of", "flatten_batch", "map_batch"]


def batch_shape_of(tree: dict, batch_ndims: int, what: str) -> tuple[int, ...] | None:
    """Common leading ``batch_ndims`` dims of every leaf of ``tree`` (None if no leaves)."""
    batch_shape = None
    for name, leaf in tree.items():
        for value in jax.tree_util.tree_leaves(leaf):
            shape = tuple(jnp.shape(value))
            if len(shape) < batch_ndims:
                raise ValueError(
                    f"{what}: '{name}' has shape {shape}, which has fewer than "
                    f"batch_ndims={batch_ndims} leading batch dims."
                )
            if batch_shape is None:
                batch_shape = shape[:batch_ndims]
            elif shape[:batch_ndims] != batch_shape:
                raise ValueError(
                    f"{what}: '{name}' has leading dims {shape[:batch_ndims]}, but other entries "
                    f"have {batch_shape}; all must share the same {batch_ndims} batch dim(s)."
                )
    return batch_shape


def flatten_batch(tree, batch_ndims: int, size: int):
    """Merge the leading ``batch_ndims`` dims of every leaf into one dim of ``size``."""
    return jax.tree_util.tree_map(
        lambda x: jnp.reshape(x, (size,) + tuple(jnp.shape(x))[batch_ndims:]), tree
    )


def map_batch(
    fn: Callable,
    inputs,
    batch_shape: tuple[int, ...],
    parallel: bool,
):
    """Apply ``fn`` to each of the ``prod(batch_shape)`` slices of the (flattened) ``inputs``.

    ``inputs`` leaves have a single leading dim of size ``prod(batch_shape)``; outputs get
    ``batch_shape`` as their leading dims. ``parallel=True`` vmaps ``fn`` (under an active mesh
    the draws are split over its ``sample`` axis, :func:`jppl.parallel.map_particles`);
    ``False`` maps it one draw at a time (``jax.lax.map``).
    """
    if parallel:
        out = map_particles(fn, inputs, axis="sample", what="draws")
    else:
        out = jax.lax.map(fn, inputs)
    return jax.tree_util.tree_map(
        lambda x: jnp.reshape(x, tuple(batch_shape) + tuple(jnp.shape(x))[1:]), out
    )
