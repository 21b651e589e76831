"""Vectorized advanced indexing that broadcasts batch dims (NumPyro's ``numpyro.ops.indexing``).

``Vindex(x)[..., i, :, j]`` generalizes ``x[..., i, :, j]`` from integer ``i, j`` to integer
arrays with batch dims: the leading ``...`` stands for the batch dims of ``x``, which
broadcast with the shapes of the index arrays, and the result has shape
``broadcast(x.shape[:-3], i.shape, j.shape) + (x.shape[-2],)``. This is what mixture models
need to pick components with batched (or enumerated) discrete variables.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Vindex", "vindex"]


def _check_arg(arg: Any, position: int) -> Any:
    """An index entry as ``slice(None)`` or an integer array; anything else is an error."""
    if isinstance(arg, slice):
        if arg != slice(None):
            raise NotImplementedError(
                f"vindex: only the full slice ':' is supported, got {arg!r} at position {position}."
            )
        return arg
    if arg is None or arg is Ellipsis:
        raise IndexError(
            f"vindex: {arg!r} at position {position} is not supported; '...' may only come "
            "first (it stands for the batch dims of the indexed array)."
        )
    if isinstance(arg, bool | np.bool_):
        raise IndexError(f"vindex: boolean index at position {position} is not supported.")
    arr = arg if isinstance(arg, jax.Array | np.ndarray) else np.asarray(arg)
    if not jnp.issubdtype(arr.dtype, jnp.integer):
        raise IndexError(
            f"vindex: index at position {position} must be an int or an integer array, got "
            f"dtype {arr.dtype}."
        )
    return arr


def vindex(tensor: jax.Array, args: Any) -> jax.Array:
    """``tensor[args]`` with broadcasting semantics for the batch dims (see :class:`Vindex`).

    Args:
        tensor: array of shape ``batch_shape + event_shape``.
        args: an index: a tuple of ints, integer arrays and full slices ``:``, for the
            ``len(args)`` leftmost dims of ``tensor`` (no batch dims); or, when it starts
            with ``...``, for its ``len(args) - 1`` rightmost dims, the dims left of them
            being batch dims.

    Returns:
        array of shape ``broadcast(batch_shape, *index shapes) + kept`` where ``kept`` holds
        the sizes of the dims indexed by ``:``, in order (dims not indexed count as ``:``).
        With no batched (non-scalar) index this is plain ``tensor[args]``.
    """
    tensor = jnp.asarray(tensor)
    if not isinstance(args, tuple):
        args = (args,)
    if args and args[0] is Ellipsis:
        event = list(args[1:])
        n_batch = tensor.ndim - len(event)
    else:
        event = list(args) + [slice(None)] * (tensor.ndim - len(args))
        n_batch = 0
    if n_batch < 0 or len(event) > tensor.ndim:
        raise IndexError(
            f"vindex: {len(event)} indices for an array of shape {tensor.shape} "
            f"({tensor.ndim} dims)."
        )
    offset = 1 if args and args[0] is Ellipsis else 0
    event = [_check_arg(a, i + offset) for i, a in enumerate(event)]
    arrays = [a for a in event if not isinstance(a, slice)]
    n_kept = sum(isinstance(a, slice) for a in event)
    try:
        np.broadcast_shapes(tensor.shape[:n_batch], *(np.shape(a) for a in arrays))
    except ValueError as e:
        raise IndexError(
            f"vindex: the batch shape {tensor.shape[:n_batch]} of the array and the index "
            f"shapes {[np.shape(a) for a in arrays]} do not broadcast."
        ) from e

    # Every dim gets an integer index array; together they broadcast to
    # batch_shape + kept shape, which is the result's shape.
    index: list[Any] = []
    for dim in range(n_batch):
        size = tensor.shape[dim]
        index.append(jnp.arange(size).reshape((size,) + (1,) * (n_batch - 1 - dim + n_kept)))
    kept = 0
    for dim, arg in enumerate(event):
        if isinstance(arg, slice):
            size = tensor.shape[n_batch + dim]
            kept += 1
            index.append(jnp.arange(size).reshape((size,) + (1,) * (n_kept - kept)))
        else:
            index.append(jnp.reshape(arg, np.shape(arg) + (1,) * n_kept))
    return tensor[tuple(index)]


class Vindex:
    """``Vindex(x)[..., i, j, :]`` is ``vindex(x, (Ellipsis, i, j, slice(None)))``."""

    def __init__(self, tensor: jax.Array):
        self._tensor = tensor

    def __getitem__(self, args: Any) -> jax.Array:
        return vindex(self._tensor, args)
