"""The state of a multi-chain MCMC run, PRNG key handling and model-argument signatures."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["MCMCState", "chain_keys", "split_model_args"]


class MCMCState(NamedTuple):
    """Everything needed to continue the chains, each field with a leading chain dim ``C``.

    Draw ``t`` (counted from the end of warm-up, over all runs) of a chain uses the key
    ``fold_in(rng_key, t)``, so continuing from a state gives bitwise the draws of one long
    run.

    Attributes:
        position: ``(C, d)`` flat unconstrained position.
        logdensity: ``(C,)`` log density at ``position`` (``-potential_energy``).
        logdensity_grad: ``(C, d)`` its gradient.
        step_size: ``(C,)`` adapted step size.
        inverse_mass_matrix: ``(C, d)`` (diagonal) or ``(C, d, d)`` (dense) adapted ``M^{-1}``.
        rng_key: ``(C,)`` typed PRNG keys of the sampling phase.
        step: ``(C,)`` int32, number of post-warm-up transitions done so far.
    """

    position: jax.Array
    logdensity: jax.Array
    logdensity_grad: jax.Array
    step_size: jax.Array
    inverse_mass_matrix: jax.Array
    rng_key: jax.Array
    step: jax.Array

    @property
    def num_chains(self) -> int:
        return int(self.position.shape[0])

    @property
    def potential_energy(self) -> jax.Array:
        """``(C,)`` potential energy (NumPyro's name)."""
        return -self.logdensity


def as_typed_key(rng_key: Any) -> jax.Array:
    """A typed key array from a typed key or raw ``uint32`` key data (``(..., 2)``)."""
    rng_key = rng_key if isinstance(rng_key, jax.Array) else jnp.asarray(rng_key)
    if jnp.issubdtype(rng_key.dtype, jax.dtypes.prng_key):
        return rng_key
    return jax.random.wrap_key_data(jnp.asarray(rng_key, jnp.uint32))


def chain_keys(rng_key: Any, num_chains: int) -> jax.Array:
    """``(num_chains,)`` typed keys: ``split(rng_key, num_chains)``, or ``rng_key`` itself if it
    is already a batch of ``num_chains`` keys."""
    key = as_typed_key(rng_key)
    if key.ndim == 0:
        return jax.random.split(key, num_chains)
    if key.shape == (num_chains,):
        return key
    raise ValueError(
        f"rng_key must be a single key or a batch of num_chains={num_chains} keys, got a key "
        f"array of shape {key.shape}."
    )


def _is_dynamic(leaf: Any, jit_scalars: bool) -> bool:
    if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
        return True
    return jit_scalars and isinstance(leaf, (int, float)) and not isinstance(leaf, bool)


def _aval_key(leaf: Any) -> tuple:
    if isinstance(leaf, jax.Array):
        return ("array", leaf.shape, str(leaf.dtype), bool(getattr(leaf, "weak_type", False)))
    if isinstance(leaf, (np.ndarray, np.generic)):
        return ("array", np.shape(leaf), str(np.asarray(leaf).dtype), False)
    return ("scalar", type(leaf).__name__)


def _content_key(leaf: Any) -> tuple:
    """A key of an array's values (shape, dtype and a digest of its bytes): a model closing
    over the array as a constant compiles again for new values, even for the same object
    changed in place."""
    value = np.asarray(leaf)
    digest = hashlib.blake2b(np.ascontiguousarray(value).tobytes(), digest_size=16).hexdigest()
    return ("const", value.shape, str(value.dtype), digest)


def _static_key(leaf: Any) -> tuple:
    if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):
        return _content_key(leaf)
    try:
        hash(leaf)
    except TypeError:
        return ("id", id(leaf))
    return ("value", type(leaf).__name__, leaf)


class ArgSignature(NamedTuple):
    """Model arguments split into traced leaves and a hashable static signature.

    Attributes:
        dynamic: list of the array leaves (passed to the compiled functions as arguments).
        key: hashable signature (tree structure, static leaves, shapes/dtypes of dynamic leaves).
        rebuild: ``dynamic leaves -> (args, kwargs)`` (usable with traced leaves).
    """

    dynamic: list
    key: tuple
    rebuild: Callable[[Any], tuple[tuple, dict]]


def split_model_args(
    args: tuple, kwargs: dict, jit_model_args: bool = False, *, constants: bool = False
) -> ArgSignature:
    """Split ``(args, kwargs)`` into traced array leaves and static leaves.

    Array leaves (JAX and NumPy arrays, NumPy scalars) are traced, so new data of the same
    shapes reuses the compiled functions; with ``jit_model_args=True`` Python ``int`` and
    ``float`` leaves are traced too (``bool`` never is). Other leaves (``None``, strings,
    functions, Python numbers by default) are static: a new value compiles again.

    With ``constants=True`` every leaf is static (the compiled functions close over the
    arguments, as NumPyro does with ``jit_model_args=False``, so a model may use their concrete
    values, e.g. ``np.unique(data)``); array leaves are then keyed by their values, so new
    values compile again.
    """
    leaves, treedef = jax.tree.flatten((tuple(args), dict(kwargs)))
    dynamic_mask = [not constants and _is_dynamic(leaf, jit_model_args) for leaf in leaves]
    dynamic = [leaf for leaf, d in zip(leaves, dynamic_mask, strict=True) if d]
    static = [leaf for leaf, d in zip(leaves, dynamic_mask, strict=True) if not d]
    key = (
        treedef,
        tuple(dynamic_mask),
        tuple(_static_key(leaf) for leaf in static),
        tuple(_aval_key(leaf) for leaf in dynamic),
    )

    def rebuild(dynamic_leaves):
        dyn, stat = iter(dynamic_leaves), iter(static)
        merged = [next(dyn) if d else next(stat) for d in dynamic_mask]
        out_args, out_kwargs = jax.tree.unflatten(treedef, merged)
        return tuple(out_args), dict(out_kwargs)

    return ArgSignature(dynamic, key, rebuild)
