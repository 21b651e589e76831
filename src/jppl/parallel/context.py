"""The active mesh: :func:`use_mesh` and the handler that carries it through a model.

``use_mesh(mesh)`` pushes a :class:`MeshContext` onto the handler stack. It handles no
message; it is how the modelling core reaches the mesh without importing this package: a
``plate(..., shard=axis)`` finds the innermost handler with ``take_sharded`` and asks it to
check the plate's size, to replicate its minibatch indices and to pick the rows of sharded
data (:mod:`jppl.parallel.sharding`). :func:`jppl.parallel.current_mesh` finds it the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
from jax.sharding import Mesh

from jppl.parallel import sharding
from jppl.primitives import Messenger

__all__ = ["MeshContext", "use_mesh"]


class MeshContext(Messenger):
    """A passive handler holding the active mesh (pushed by :func:`use_mesh`)."""

    passive = True  # context only: code under it is not "inside a model"

    def __init__(self, mesh: Mesh):
        super().__init__()
        self.active_mesh = mesh

    def check_plate_shard(self, name: str, axis: str, size: int) -> None:
        sharding.check_plate_shard(name, axis, size)

    def replicated_indices(self, indices: jax.Array) -> jax.Array:
        return sharding.replicated_indices(indices)

    def take_sharded(
        self, data: jax.Array, indices: jax.Array, axis: int, mesh_axis: str
    ) -> jax.Array:
        return sharding.take_sharded(data, indices, axis, mesh_axis)


@contextlib.contextmanager
def use_mesh(mesh: Mesh | None) -> Iterator[Mesh | None]:
    """Make ``mesh`` the active jppl mesh inside the block (``None``: no mesh, a no-op).

    Front ends (``SVI``, ``Predictive``, ``MCMC``) call it around the code they trace, so that
    sharded plates and particle axes find the mesh. It does not call ``jax.set_mesh``: jppl
    builds its shardings from ``mesh`` explicitly.
    """
    if mesh is None:
        yield None
        return
    if not isinstance(mesh, Mesh):
        raise TypeError(f"use_mesh: expected a jax.sharding.Mesh (or None), got {mesh!r}")
    with MeshContext(mesh):
        yield mesh
