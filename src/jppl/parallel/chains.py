"""Mapping a per-chain function over independent chains: vectorized, sharded or sequential.

A *chain* is any computation ``chain_fn(chain_in, shared) -> outputs`` run once per chain
(an MCMC chain's warm-up and sampling, for ``jppl.mcmc``; this module knows nothing of it):
``chain_in`` holds the chain's own inputs, ``shared`` what every chain reads (e.g. a model's
data). :func:`map_chains` compiles it for ``C`` chains in one of :data:`CHAIN_METHODS`:

* ``"vectorized"``: ``jit(vmap(chain_fn))`` (a single chain without a mesh runs without
  ``vmap``). On a mesh, ``vmap(..., spmd_axis_name="chain")`` with the batch split over the
  mesh's ``chain`` axis, under XLA's partitioner: the chains of a batch advance together (a
  NUTS trajectory's loop runs until the longest trajectory of *all* chains is done).
* ``"sharded"``: ``shard_map`` manual over the mesh's ``chain`` axis only, the other axes
  (e.g. ``data``, for a log density split over the observations) left to XLA's partitioner.
  Each position along ``chain`` runs the single-chain program itself (one chain there) or a
  ``vmap`` of it over its own chains, with no communication between chains. If ``C`` is not
  a multiple of the axis size, the chains are **padded** (the last chain's inputs repeated)
  and the padding is dropped from the outputs.
* ``"sequential"``: one compiled single-chain program called in a Python loop (on a mesh, each
  chain on the whole mesh: its ``chain`` axis must have size 1).
* a callable transform such as ``jax.vmap`` (NumPyro's ``chain_method=jax.vmap``): the batch
  is ``transform(lambda chain_in: chain_fn(chain_in, shared))(chain_in)`` (``shared`` closed
  over), on one device; a single chain runs without it.

Sharded chains always run on a mesh: without one, on the trivial chain-only mesh
:func:`chain_mesh` (one axis ``chain`` over as few devices as ``ceil(C / devices)`` chains per
device need), so "no mesh" is that mesh, not another code path. For the same inputs,
``"sharded"`` with one chain per position and ``"sequential"`` give the same outputs bitwise;
``"vectorized"`` may round the batched arithmetic differently.

On a mesh the chains' inputs are replicated onto it first (every process passes the same
values) and every output is replicated on every device (the compiled program ends with
replicated ``out_shardings``), so every process of a multi-host run can read the results.
``shared`` is passed as the caller placed it (data split over ``data`` stays split).
:func:`map_chains` activates no mesh while ``chain_fn`` is traced: a caller whose chain traces
a model under a mesh wraps it in :func:`jppl.parallel.use_mesh` itself.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jppl.parallel.context import use_mesh
from jppl.parallel.mesh import axis_size
from jppl.parallel.sharding import replicate, split_leading

__all__ = [
    "CHAIN_AXIS",
    "CHAIN_METHODS",
    "chain_mesh",
    "chain_program",
    "check_chain_mesh",
    "jit_replicated",
    "map_chains",
    "shard_plan",
]

CHAIN_AXIS = "chain"
CHAIN_METHODS = ("vectorized", "sharded", "sequential")

#: ``on_chain(c)``: a context manager around chain ``c`` of a sequential run, whose value is
#: called with the chain's outputs (e.g. a progress bar per chain).
OnChain = Callable[[int], contextlib.AbstractContextManager[Callable[[Any], None]]]


def _check_method(method: Any) -> None:
    if not callable(method) and method not in CHAIN_METHODS:
        raise ValueError(
            f"chain_method must be one of {CHAIN_METHODS} or a callable transform such as "
            f"jax.vmap, got {method!r}"
        )


def _transformed(chain_fn: Callable, transform: Callable) -> Callable:
    """``chain_fn`` batched by a user's transform (e.g. ``jax.vmap``) over ``chain_in``, with
    ``shared`` closed over (a transform need not take ``in_axes``)."""

    def batched(chain_in, shared):
        return transform(lambda one: chain_fn(one, shared))(chain_in)

    return batched


def check_chain_mesh(
    mesh: Any, num_chains: int, chain_method: str | None, what: str = "map_chains"
) -> str:
    """Validate a mesh for ``num_chains`` chains; return the chain method to use.

    Args:
        mesh: a :class:`jax.sharding.Mesh` with a ``chain`` axis (as
            :func:`jppl.parallel.make_mesh` builds).
        num_chains: number of chains ``C``.
        chain_method: the requested method, or ``None`` (then ``"sharded"``).
        what: who asks, for the error messages (e.g. ``"MCMC"``).

    Raises:
        TypeError: ``mesh`` is not a ``Mesh``.
        ValueError: the mesh has no ``chain`` axis, ``C`` is not a multiple of its size, or
            ``"sequential"`` is asked for with a ``chain`` axis larger than 1.
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"{what}: mesh must be a jax.sharding.Mesh (see jppl.parallel.make_mesh), got {mesh!r}"
        )
    if CHAIN_AXIS not in mesh.axis_names:
        raise ValueError(
            f"{what}: the mesh has axes {tuple(mesh.axis_names)} but no '{CHAIN_AXIS}' axis; "
            "build it with jppl.parallel.make_mesh(chain=..., data=...)."
        )
    method = "sharded" if chain_method is None else chain_method
    if method not in CHAIN_METHODS:
        raise ValueError(
            f"{what}: with a mesh, chain_method must be one of {CHAIN_METHODS}, got "
            f"{chain_method!r}"
        )
    size = axis_size(mesh, CHAIN_AXIS)
    if num_chains % size:
        raise ValueError(
            f"{what}: num_chains={num_chains} is not a multiple of the size {size} of the mesh's "
            f"'{CHAIN_AXIS}' axis; every position along '{CHAIN_AXIS}' must run the same number "
            f"of chains (use num_chains={-(-num_chains // size) * size}, or a mesh with "
            f"chain={num_chains} or a divisor of it)."
        )
    if method == "sequential" and size > 1:
        raise ValueError(
            f"{what}: chain_method='sequential' runs one chain at a time on the whole mesh, but "
            f"the mesh's '{CHAIN_AXIS}' axis has size {size}; use chain_method='sharded' (or a "
            f"mesh with {CHAIN_AXIS}=1)."
        )
    return method


def shard_plan(num_chains: int, num_devices: int) -> tuple[int, int]:
    """``(devices used, padded number of chains)`` for sharded chains.

    Uses ``ceil(num_chains / devices)`` chains per device and as few devices as that load
    needs, so at most ``chains_per_device - 1`` padding chains are added.
    """
    per_device = math.ceil(num_chains / min(num_chains, num_devices))
    used = math.ceil(num_chains / per_device)
    return used, used * per_device


def chain_mesh(num_chains: int, devices: Sequence[Any] | None = None) -> Mesh:
    """The trivial chain-only mesh for ``num_chains`` sharded chains: one axis ``chain`` over
    the first devices of ``devices`` (default ``jax.devices()``) that :func:`shard_plan` uses.

    It has no other axis (nothing but the chains is split), so a ``shard_map`` over it is
    manual over all its axes (which lets host callbacks fire from inside the chains).
    """
    devices = list(jax.devices() if devices is None else devices)
    used, _ = shard_plan(num_chains, len(devices))
    return Mesh(np.asarray(devices[:used]), (CHAIN_AXIS,))


def jit_replicated(fn: Callable, mesh: Mesh | None, name: str) -> Callable:
    """``jax.jit(fn)`` with every output replicated on ``mesh`` (readable on every process);
    a plain ``jax.jit`` without a mesh. ``name`` names the compiled XLA module (``jit_<name>``,
    e.g. in ``--xla_dump_to`` dumps)."""

    def named(*args):
        return fn(*args)

    named.__name__ = named.__qualname__ = name
    if mesh is None:
        return jax.jit(named)
    return jax.jit(named, out_shardings=NamedSharding(mesh, P()))


def _pad(tree: Any, size: int) -> Any:
    """Every leaf's leading dim padded to ``size`` by repeating its last entry."""

    def pad(x):
        extra = size - x.shape[0]
        if extra == 0:
            return x
        return jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)], axis=0)

    return jax.tree.map(pad, tree)


def _single(chain_fn: Callable) -> Callable:
    """``chain_fn`` on inputs and outputs with a leading chain dim of 1 (no ``vmap``)."""

    def run(chain_in, shared):
        one = jax.tree.map(lambda x: x[0], chain_in)
        return jax.tree.map(lambda x: x[None], chain_fn(one, shared))

    return run


def _stack(*outs: Any) -> Any:
    return jax.tree.map(lambda *v: jnp.stack(v), *outs)


def _each_chain(
    single: Callable, chain_in: Any, shared: Any, num_chains: int, on_chain: OnChain | None
) -> list:
    """Outputs of ``single(chain_c, shared)`` for each chain ``c`` in turn."""
    outs = []
    for c in range(num_chains):
        one = jax.tree.map(lambda x, c=c: x[c], chain_in)
        if on_chain is None:
            outs.append(single(one, shared))
        else:
            with on_chain(c) as record:
                outs.append(jax.block_until_ready(single(one, shared)))
                record(outs[-1])
    return outs


def _split_chains(tree: Any, mesh: Mesh | None) -> Any:
    """The leading (chain) dim of every leaf split over ``mesh``'s ``chain`` axis."""
    if mesh is None:
        return tree
    with use_mesh(mesh):  # split_leading reads the active mesh
        return split_leading(tree, CHAIN_AXIS)


def chain_program(
    chain_fn: Callable,
    method: str | Callable,
    num_chains: int,
    mesh: Mesh | None = None,
    *,
    spmd: bool = True,
) -> Callable:
    """``chain_fn(chain_in, shared)`` mapped over a batch of chains, not compiled: the body of
    :func:`map_chains`'s program, for callers that compile it themselves (e.g. with donated
    buffers, or with several such steps in one program).

    Args:
        chain_fn, method, mesh, spmd: as for :func:`map_chains` (``mesh`` is required for
            ``"sharded"``: see :func:`chain_mesh`).
        num_chains: the chains of one call: ``C`` for ``"vectorized"`` and ``"sharded"``, 1
            for ``"sequential"`` (the caller loops over the chains, each on the whole mesh).

    Returns:
        ``batched(chain_in, shared)`` on leaves with a leading ``num_chains`` dim. With a mesh
        the inputs must already be on it (e.g. :func:`jppl.parallel.replicate`), and the
        outputs stay split over ``chain`` (sharded, or vectorized on a mesh).
    """
    _check_method(method)
    if callable(method):
        if mesh is not None:
            raise ValueError("chain_program: a callable chain_method runs without a mesh.")
        return _single(chain_fn) if num_chains == 1 else _transformed(chain_fn, method)
    if method == "sharded" and mesh is None:
        raise ValueError("chain_program: sharded chains need a mesh (see chain_mesh).")
    if method == "sequential":
        if num_chains != 1:
            raise ValueError("chain_program: a sequential call runs one chain (num_chains=1).")
        return _single(chain_fn)
    if method == "vectorized":
        if mesh is None and num_chains == 1:
            return _single(chain_fn)
        spmd_axis = CHAIN_AXIS if mesh is not None and spmd else None
        batched = jax.vmap(chain_fn, in_axes=(0, None), spmd_axis_name=spmd_axis)

        def vectorized(chain_in, shared):
            return _split_chains(batched(_split_chains(chain_in, mesh), shared), mesh)

        return vectorized
    size = axis_size(mesh, CHAIN_AXIS)
    padded = -(-num_chains // size) * size
    per_chain = _single(chain_fn) if padded == size else jax.vmap(chain_fn, (0, None))
    mapped = jax.shard_map(
        per_chain,
        mesh=mesh,
        in_specs=(P(CHAIN_AXIS), P()),
        out_specs=P(CHAIN_AXIS),
        axis_names=frozenset({CHAIN_AXIS}),
        check_vma=False,
    )

    def sharded(chain_in, shared):
        out = mapped(_pad(chain_in, padded), shared)
        if padded == num_chains:
            return out
        return jax.tree.map(lambda x: x[:num_chains], out)

    return sharded


def map_chains(
    chain_fn: Callable,
    method: str | Callable,
    num_chains: int,
    mesh: Mesh | None = None,
    *,
    on_chain: OnChain | None = None,
    spmd: bool = True,
    name: str = "chains",
) -> Callable:
    """Compile ``chain_fn(chain_in, shared)`` for ``num_chains`` chains (see the module doc).

    Args:
        chain_fn: the per-chain program.
        method: one of :data:`CHAIN_METHODS`, or a callable transform (e.g. ``jax.vmap``;
            no mesh).
        num_chains: number of chains ``C``.
        mesh: the mesh to run the chains on (with a ``chain`` axis; see
            :func:`check_chain_mesh`), or ``None``: one device, or for ``"sharded"`` the
            trivial :func:`chain_mesh` over ``jax.devices()``.
        on_chain: for ``"sequential"``, ``on_chain(c)`` is entered before chain ``c`` runs and
            exited after it; its value is called with the chain's outputs (e.g. per-chain
            progress bars).
        spmd: for ``"vectorized"`` on a mesh, ``vmap`` with ``spmd_axis_name="chain"``.
            ``False`` for a per-chain program that contains a ``shard_map`` (e.g. data
            blocks, :mod:`jppl.model.blocked`), which JAX 0.10 cannot batch that way; the
            chains are then still split over ``chain`` at the program's inputs and outputs.
        name: names the compiled XLA modules (``jit_<name>``, ``jit_<name>_stack``).

    Returns:
        ``run(chain_in, shared)``: every leaf of ``chain_in`` has a leading ``C`` dim
        (``shared`` is the same for all chains); every output leaf has a leading ``C`` dim
        (replicated on the mesh, if any).

    Raises:
        ValueError: an unknown ``method``, or a mesh that does not suit it (see
            :func:`check_chain_mesh`; sharded chains are padded instead).
    """
    _check_method(method)
    if method == "sharded" and mesh is None:
        mesh = chain_mesh(num_chains)
    size = axis_size(mesh, CHAIN_AXIS)
    padded = -(-num_chains // size) * size if method == "sharded" else num_chains
    if mesh is not None:
        check_chain_mesh(mesh, padded, method, what="map_chains")

    def place(chain_in: Any) -> Any:
        return chain_in if mesh is None else replicate(chain_in, mesh)

    if method == "sequential":
        single = jit_replicated(chain_fn, mesh, name)
        stack = jit_replicated(_stack, mesh, f"{name}_stack")

        def run_sequential(chain_in, shared):
            return stack(*_each_chain(single, place(chain_in), shared, num_chains, on_chain))

        return run_sequential
    local = chain_program(chain_fn, method, num_chains, mesh, spmd=spmd)
    compiled = jit_replicated(local, mesh, name)

    def run(chain_in, shared):
        return compiled(place(chain_in), shared)

    return run
