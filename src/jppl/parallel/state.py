"""Keeping a training state (parameters, optimizer state, key, step) on a mesh.

A state is either replicated on every device of the mesh, or split over all of them
(``split=True``, FSDP / ZeRO style, :func:`~jppl.parallel.state_shardings`). The same three
calls serve both, and without a mesh they leave the state alone, so a front end such as
:class:`~jppl.vi.SVI` has one code path for every mesh:

* :func:`state_placement`: the shardings (for ``jax.jit(..., out_shardings=...)``);
* :func:`put_state`: put a host state (e.g. loaded from a file) on the mesh;
* :func:`pin_state`: inside a jitted step, keep the new state where the old one was.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jppl.parallel.sharding import replicate, state_shardings

__all__ = ["pin_state", "put_state", "state_placement"]


def state_placement(tree: Any, mesh: Mesh | None, split: bool = False) -> Any:
    """Shardings of ``tree`` kept on ``mesh``.

    Returns:
        ``None`` without a mesh; one replicated ``NamedSharding`` (a pytree prefix of
        ``tree``); or with ``split``, :func:`~jppl.parallel.state_shardings` of ``tree``
        (each leaf split along its largest dim divisible by the number of devices).
    """
    if mesh is None:
        return None
    return state_shardings(tree, mesh) if split else NamedSharding(mesh, P())


def put_state(tree: Any, mesh: Mesh | None, split: bool = False) -> Any:
    """Put ``tree`` on ``mesh`` as :func:`state_placement` says; ``tree`` itself without one.

    With several processes every process must pass the same values.
    """
    if mesh is None:
        return tree
    tree = replicate(tree, mesh)
    if split:
        tree = jax.jit(lambda t: t, out_shardings=state_placement(tree, mesh, split))(tree)
    return tree


def pin_state(tree: Any, mesh: Mesh | None, split: bool = False) -> Any:
    """Inside a jitted function: constrain ``tree`` to :func:`state_placement` (a no-op
    without a mesh). Pinning a step's outputs keeps the state where it was, and a replicated
    loss readable on every process."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, state_placement(tree, mesh, split))
