"""Minibatch indices for subsampled SVI, drawn purely from a PRNG key.

::

    for epoch in range(10):
        for idx in minibatches(jax.random.fold_in(key, epoch), N, 128):
            state, loss = update(state, x[idx], idx)

The same key always gives the same batches; each epoch is a random permutation of
``0..num_items-1`` cut into consecutive batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import jax.numpy as jnp

__all__ = ["epoch_batches", "minibatches", "num_batches"]


def _check(num_items: int, batch_size: int) -> tuple[int, int]:
    for name, value in (("num_items", num_items), ("batch_size", batch_size)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if batch_size > num_items:
        raise ValueError(f"batch_size ({batch_size}) is larger than num_items ({num_items})")
    return int(num_items), int(batch_size)


def num_batches(num_items: int, batch_size: int, *, drop_last: bool = True) -> int:
    """Number of batches in one epoch."""
    num_items, batch_size = _check(num_items, batch_size)
    return num_items // batch_size if drop_last else -(-num_items // batch_size)


def epoch_batches(key: jax.Array, num_items: int, batch_size: int) -> jax.Array:
    """All full batches of one epoch as one array (``jit``-friendly).

    Returns:
        int32 array ``(num_items // batch_size, batch_size)`` of distinct indices; the
        ``num_items % batch_size`` leftover items of the permutation are dropped.
    """
    num_items, batch_size = _check(num_items, batch_size)
    n = num_items // batch_size
    perm = jax.random.permutation(key, num_items).astype(jnp.int32)
    return perm[: n * batch_size].reshape(n, batch_size)


def minibatches(
    key: jax.Array, num_items: int, batch_size: int, *, drop_last: bool = True
) -> Iterator[jax.Array]:
    """Iterate over the minibatch index arrays of one epoch.

    Args:
        key: PRNG key of the epoch (use ``fold_in(key, epoch)`` for successive epochs).
        num_items: dataset size ``N``.
        batch_size: ``B``.
        drop_last: drop the last, smaller batch (so every batch has shape ``(B,)``, as a
            ``plate(..., subsample_size=B)`` needs); otherwise it is yielded too.

    Yields:
        int32 arrays of shape ``(B,)`` (the last one ``(N % B,)`` if ``drop_last=False``);
        together they are a random permutation of ``0..N-1`` (minus the dropped rest).
    """
    num_items, batch_size = _check(num_items, batch_size)
    perm = jax.random.permutation(key, num_items).astype(jnp.int32)
    stop = num_batches(num_items, batch_size, drop_last=drop_last) * batch_size
    for start in range(0, stop, batch_size):
        yield perm[start : min(start + batch_size, num_items)]
