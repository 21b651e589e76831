"""MCMC chains on a device mesh: chains over ``chain``, the log density over ``data``.

``MCMC(..., mesh=mesh)`` with a mesh from :func:`jppl.parallel.make_mesh` runs the per-chain
program (:func:`jppl.mcmc.chains.build_chain`) on every device of the mesh:

* the chains are split over the mesh's ``chain`` axis (``num_chains`` must be a multiple of
  its size: each of its positions runs ``num_chains / size`` chains);
* the model is traced under :func:`jppl.parallel.use_mesh`, so the observations of plates
  declared with ``plate(..., shard="data")`` are split over ``data``: each device evaluates the
  log density and gradient of its own rows (the data are never gathered). By default the rows
  are cut into fixed data blocks whose values and gradients are all-gathered and added in
  block order (:mod:`jppl.model.blocked`: bitwise the same on every number of ``data``
  devices); with ``data_blocks=0`` one all-reduce sums the partial sums. The other axes
  (``sample``, ``model``) hold copies.

How ``chain_method`` maps the chains with a mesh:

* ``"sharded"`` (the default with a mesh): ``shard_map`` that is manual over ``chain`` only;
  each position along ``chain`` runs the single-chain program itself (one chain there) or a
  ``vmap`` of it over its own chains, with no communication between chains, while ``data`` is
  left to XLA's SPMD partitioner. On a ``chain``-only mesh the compiled per-chain program is
  the one ``chain_method="sharded"`` / ``"sequential"`` run without a mesh, so the draws are
  bitwise those of the same chains without a mesh.
* ``"vectorized"``: ``vmap(..., spmd_axis_name="chain")`` of the per-chain program, under the
  partitioner. The chains of a batch advance together: a NUTS trajectory's loop runs until the
  longest trajectory of *all* chains is done, and its stopping test is reduced across
  ``chain`` at every doubling. Useful to compare with ``"vectorized"`` without a mesh.
* ``"sequential"``: one chain after the other, each on the whole mesh (data-parallel); the
  mesh's ``chain`` axis must have size 1.

Results are replicated on every device (the compiled program ends with ``out_shardings``
replicated), so samples, the last state and the diagnostics can be read on every process of a
multi-host run. Inputs (initial positions, keys, states) are replicated onto the mesh first
(every process passes the same values).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jppl.mcmc.chains import _single, run_each_chain
from jppl.parallel.context import use_mesh
from jppl.parallel.mesh import axis_size
from jppl.parallel.sharding import replicate, split_leading

__all__ = ["CHAIN_AXIS", "check_mesh", "jit_on_mesh", "map_chains_on_mesh"]

CHAIN_AXIS = "chain"
_METHODS = ("vectorized", "sharded", "sequential")


def check_mesh(mesh: Any, num_chains: int, chain_method: str | None) -> str:
    """Validate ``MCMC``'s ``mesh`` against its chains; return the chain method to use.

    Args:
        mesh: a :class:`jax.sharding.Mesh` with a ``chain`` axis (as
            :func:`jppl.parallel.make_mesh` builds).
        num_chains: number of chains ``C``.
        chain_method: the requested method, or ``None`` (then ``"sharded"``).

    Raises:
        TypeError: ``mesh`` is not a ``Mesh``.
        ValueError: the mesh has no ``chain`` axis, ``C`` is not a multiple of its size, or
            ``"sequential"`` is asked for with a ``chain`` axis larger than 1.
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"MCMC: mesh must be a jax.sharding.Mesh (see jppl.parallel.make_mesh), got {mesh!r}"
        )
    if CHAIN_AXIS not in mesh.axis_names:
        raise ValueError(
            f"MCMC: the mesh has axes {tuple(mesh.axis_names)} but no '{CHAIN_AXIS}' axis; "
            "build it with jppl.parallel.make_mesh(chain=..., data=...)."
        )
    method = "sharded" if chain_method is None else chain_method
    if method not in _METHODS:
        raise ValueError(f"chain_method must be one of {_METHODS}, got {chain_method!r}")
    size = axis_size(mesh, CHAIN_AXIS)
    if num_chains % size:
        raise ValueError(
            f"MCMC: num_chains={num_chains} is not a multiple of the size {size} of the mesh's "
            f"'{CHAIN_AXIS}' axis; every position along '{CHAIN_AXIS}' must run the same number "
            f"of chains (use num_chains={-(-num_chains // size) * size}, or a mesh with "
            f"chain={num_chains} or a divisor of it)."
        )
    if method == "sequential" and size > 1:
        raise ValueError(
            f"MCMC: chain_method='sequential' runs one chain at a time on the whole mesh, but "
            f"the mesh's '{CHAIN_AXIS}' axis has size {size}; use chain_method='sharded' (or a "
            f"mesh with {CHAIN_AXIS}=1)."
        )
    return method


def _replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def jit_on_mesh(fn: Callable, mesh: Mesh, name: str = "on_mesh") -> Callable:
    """``jax.jit(fn)``, traced under ``use_mesh(mesh)``, with every output replicated on
    ``mesh`` (readable on every process). The caller places the inputs (see :func:`_place`).
    ``name`` names the compiled XLA module (``jit_<name>``, e.g. in ``--xla_dump_to`` dumps)."""

    def traced(*args):
        with use_mesh(mesh):
            return fn(*args)

    traced.__name__ = traced.__qualname__ = name
    return jax.jit(traced, out_shardings=_replicated(mesh))


def _place(chain_in: Any, shared: tuple, mesh: Mesh) -> tuple[Any, tuple]:
    """Replicate the chains' inputs and the progress intervals onto ``mesh``; the model's
    data (``shared[0]``) keep their own placement (e.g. split over ``data``)."""
    dynamic, every = shared
    return replicate(chain_in, mesh), (dynamic, replicate(every, mesh))


def map_chains_on_mesh(
    chain_fn: Callable,
    method: str,
    num_chains: int,
    mesh: Mesh,
    on_chain: Callable | None = None,
    spmd: bool = True,
) -> Callable:
    """Compile ``chain_fn(chain_in, shared)`` for ``num_chains`` chains on ``mesh``.

    Args:
        chain_fn: the per-chain program (:func:`jppl.mcmc.chains.build_chain`).
        method: ``"sharded"``, ``"vectorized"`` or ``"sequential"`` (see the module doc;
            validated by :func:`check_mesh`).
        num_chains: ``C``, a multiple of the mesh's ``chain`` size.
        mesh: the mesh.
        on_chain: for ``"sequential"``, as in :func:`jppl.mcmc.chains.map_chains`.
        spmd: for ``"vectorized"``, ``vmap`` with ``spmd_axis_name="chain"``. ``False`` for a
            per-chain program that contains a ``shard_map`` (data blocks,
            :mod:`jppl.model.blocked`), which JAX 0.10 cannot batch that way; the chains are
            then still split over ``chain`` at the program's inputs and outputs.

    Returns:
        ``run(chain_in, shared)``: every leaf of ``chain_in`` has a leading ``C`` dim (``shared
        = (model data, progress intervals)`` is the same for all chains); every output leaf has
        a leading ``C`` dim and is replicated on the mesh.
    """
    method = check_mesh(mesh, num_chains, method)
    per_position = num_chains // axis_size(mesh, CHAIN_AXIS)
    if method == "sequential":
        single = jit_on_mesh(chain_fn, mesh, "mcmc_chains")
        stack = jit_on_mesh(
            lambda *outs: jax.tree.map(lambda *v: jnp.stack(v), *outs), mesh, "mcmc_stack"
        )

        def run_sequential(chain_in, shared):
            chain_in, shared = _place(chain_in, shared, mesh)
            return stack(*run_each_chain(single, chain_in, shared, num_chains, on_chain))

        return run_sequential
    if method == "vectorized":
        batched = jax.vmap(chain_fn, in_axes=(0, None), spmd_axis_name=CHAIN_AXIS if spmd else None)

        def local(chain_in, shared):
            return split_leading(batched(split_leading(chain_in, CHAIN_AXIS), shared), CHAIN_AXIS)

    else:
        per_chain = _single(chain_fn) if per_position == 1 else jax.vmap(chain_fn, (0, None))
        local = jax.shard_map(
            per_chain,
            mesh=mesh,
            in_specs=(P(CHAIN_AXIS), P()),
            out_specs=P(CHAIN_AXIS),
            axis_names=frozenset({CHAIN_AXIS}),
            check_vma=False,
        )
    compiled = jit_on_mesh(local, mesh, "mcmc_chains")

    def run(chain_in, shared):
        return compiled(*_place(chain_in, shared, mesh))

    return run
