"""Device meshes with jppl's four named axes, and the mesh that is active while tracing.

jppl meshes always have the axes :data:`AXES` ``= ("chain", "sample", "data", "model")`` (axes
of size 1 included), all of type ``AxisType.Auto`` so that XLA's SPMD partitioner propagates
shardings through ordinary model code:

* ``chain``: independent MCMC chains;
* ``sample``: the particles (Monte Carlo samples) of an ELBO, or predictive draws;
* ``data``: the observations of plates declared with ``plate(..., shard="data")``;
* ``model``: reserved for splitting parameters; nothing is sharded along it yet (parameters
  and optimizer states are replicated on every device).

Inference front ends take the mesh explicitly (``SVI(..., mesh=m)``) and activate it with
:func:`jppl.parallel.use_mesh` while they trace the model (it pushes a passive handler onto
the handler stack); :func:`current_mesh` finds it. Without an active mesh, sharding
annotations are no-ops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

from jppl.stack import innermost

__all__ = ["AXES", "axis_size", "current_mesh", "make_mesh"]

AXES: tuple[str, str, str, str] = ("chain", "sample", "data", "model")
"""Names of the axes of every mesh built by :func:`make_mesh`, in order."""


def _check_size(name: str, size) -> int:
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise TypeError(f"make_mesh: {name} must be an int (or -1 for 'the rest'), got {size!r}")
    size = int(size)
    if size == 0 or size < -1:
        raise ValueError(f"make_mesh: {name} must be a positive int or -1, got {size}")
    return size


def make_mesh(
    chain: int = 1,
    sample: int = 1,
    data: int = 1,
    model: int = 1,
    *,
    devices: Sequence[jax.Device] | None = None,
) -> Mesh:
    """A :class:`jax.sharding.Mesh` with axes ``("chain", "sample", "data", "model")``.

    Args:
        chain, sample, data, model: axis sizes. At most one may be ``-1``: it takes all the
            devices that the other axes leave (``num_devices // product of the others``).
        devices: the devices to use (default ``jax.devices()``, i.e. every device of every
            process). Without a ``-1``, the mesh uses the first ``chain * sample * data *
            model`` of them, which must divide their number.

    Returns:
        a mesh of shape ``(chain, sample, data, model)`` with ``AxisType.Auto`` axes.

    Raises:
        ValueError: the sizes do not divide the number of devices (or, with ``-1``, the other
            sizes do not divide it), or more than one size is ``-1``.
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh: no devices given.")
    sizes = {
        name: _check_size(name, size)
        for name, size in zip(AXES, (chain, sample, data, model), strict=True)
    }
    rest = [name for name, size in sizes.items() if size == -1]
    n = len(devices)
    if len(rest) > 1:
        raise ValueError(f"make_mesh: only one axis may be -1 ('the rest'), got {rest}.")
    fixed = math.prod(size for size in sizes.values() if size != -1)
    shape_str = ", ".join(f"{k}={v}" for k, v in sizes.items())
    if rest:
        if n % fixed:
            raise ValueError(
                f"make_mesh({shape_str}): the other axes take {fixed} devices, which does not "
                f"divide the {n} available devices, so '{rest[0]}=-1' is not a whole number."
            )
        sizes[rest[0]] = n // fixed
    elif n % fixed:
        raise ValueError(
            f"make_mesh({shape_str}): the axis sizes multiply to {fixed}, which does not divide "
            f"the {n} available devices; choose sizes whose product divides {n} (or use -1 for "
            "one axis)."
        )
    used = math.prod(sizes.values())
    grid = np.empty(used, dtype=object)
    grid[:] = devices[:used]
    return Mesh(
        grid.reshape(tuple(sizes[a] for a in AXES)),
        AXES,
        axis_types=(AxisType.Auto,) * len(AXES),
    )


def current_mesh() -> Mesh | None:
    """The mesh activated by the innermost :func:`jppl.parallel.use_mesh`, or ``None``."""
    context = innermost("active_mesh")
    return None if context is None else context.active_mesh


def axis_size(mesh: Mesh | None, name: str) -> int:
    """Size of axis ``name`` of ``mesh`` (1 if there is no mesh or it has no such axis)."""
    if mesh is None:
        return 1
    return int(dict(mesh.shape).get(name, 1))
