"""Placing arrays on a mesh, and the sharding annotations that jppl puts on log densities.

User-facing helpers put data on a mesh: :func:`shard_along` (split along one named axis),
:func:`replicate`, and :func:`process_local_array` (multi-host: each process gives only its own
rows). The other functions are used while tracing: :func:`constrain` pins one array's sharding,
and :func:`shard_log_prob` splits a site's log-probability along its sharded plates, which is
what makes XLA compute per-device partial sums of the likelihood (and of its gradient) and
all-reduce them instead of gathering the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jppl.parallel.mesh import axis_size, current_mesh

__all__ = [
    "check_plate_shard",
    "constrain",
    "dim_spec",
    "pad_to_multiple",
    "process_local_array",
    "replicate",
    "replicated_indices",
    "shard_along",
    "shard_log_prob",
    "split_leading",
    "state_shardings",
    "take_sharded",
    "traced_mesh",
    "traced_sharding",
]

_PAD_HINT = (
    "Pad the data to a multiple of the axis size and mask the padded entries out of the "
    "likelihood: `(x, y), valid = jppl.parallel.pad_to_multiple((x, y), axis_size)`, then "
    "`with jppl.handlers.mask(mask=valid): sample(..., obs=y)`."
)


def _check_mesh(mesh, what: str) -> Mesh:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{what}: mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    return mesh


def _check_axis(mesh: Mesh, axis: str, what: str) -> None:
    if axis not in mesh.axis_names:
        raise ValueError(
            f"{what}: the mesh has no axis '{axis}'; its axes are {tuple(mesh.axis_names)}."
        )


def traced_mesh(mesh: Mesh):
    """``mesh``, or while tracing inside a ``shard_map`` that is manual over some of its axes,
    the context's abstract mesh (whose axis types mark those axes ``Manual``): what a sharding
    constraint or a nested ``shard_map`` placed there must name."""
    context = jax.sharding.get_abstract_mesh()
    if (
        not context.empty
        and context.manual_axes
        and tuple(context.axis_names) == tuple(mesh.axis_names)
        and tuple(context.axis_sizes) == tuple(mesh.axis_sizes)
    ):
        return context
    return mesh


def traced_sharding(mesh: Mesh, spec: P) -> NamedSharding:
    """``NamedSharding(mesh, spec)`` for a constraint placed while tracing.

    Inside a ``jax.shard_map`` that is manual over some of ``mesh``'s axes (e.g. MCMC chains
    mapped over ``chain`` with ``data`` left to the partitioner), the sharding is built on the
    context's abstract mesh, whose axis types mark those axes ``Manual`` (a sharding on the
    all-``Auto`` mesh is rejected there). ``spec`` must then name only the non-manual axes.
    """
    return NamedSharding(traced_mesh(mesh), spec)


def dim_spec(ndim: int, dim: int, axis: str | tuple[str, ...] | None) -> P:
    """``PartitionSpec`` of an ``ndim``-d array split along ``axis`` at dim ``dim`` (may be < 0)."""
    pos = dim if dim >= 0 else ndim + dim
    if not 0 <= pos < ndim:
        raise ValueError(f"dim {dim} is out of range for an array with {ndim} dims.")
    spec: list[Any] = [None] * ndim
    spec[pos] = axis
    return P(*spec)


def shard_along(tree: Any, mesh: Mesh, axis: str = "data", dim: int = 0) -> Any:
    """Put every array of ``tree`` on ``mesh``, split along mesh axis ``axis`` at array dim ``dim``.

    Args:
        tree: a pytree of arrays, each with a dim ``dim`` divisible by the axis size.
        mesh: the mesh; other mesh axes hold copies.
        axis: the mesh axis to split along (normally ``"data"``).
        dim: the array dim that is split (e.g. 0 for observations along the first dim).

    Returns:
        the same tree of global ``jax.Array`` s with ``NamedSharding(mesh, P(..axis at dim..))``.

    Raises:
        ValueError: the mesh lacks ``axis``, or a leaf's dim ``dim`` is not divisible by the axis
            size (pad and mask, see the message).
    """
    _check_mesh(mesh, "shard_along")
    _check_axis(mesh, axis, "shard_along")
    n = axis_size(mesh, axis)

    def put(path, x):
        shape = np.shape(x)
        where = jax.tree_util.keystr(path) or "the array"
        spec = dim_spec(len(shape), dim, axis)
        size = shape[dim]
        if size % n:
            raise ValueError(
                f"shard_along: {where} has size {size} at dim {dim}, which is not divisible by "
                f"the size {n} of mesh axis '{axis}'. {_PAD_HINT}"
            )
        return jax.device_put(x, NamedSharding(mesh, spec))

    return jax.tree_util.tree_map_with_path(put, tree)


def pad_to_multiple(tree: Any, multiple: int, dim: int = 0) -> tuple[Any, np.ndarray]:
    """Pad every array of ``tree`` with zeros along ``dim`` to a multiple of ``multiple``.

    Use it when the number of observations does not divide the ``data`` axis, and mask the
    padding out of the likelihood::

        (x, y), valid = pad_to_multiple((x, y), parallel.axis_size(mesh, "data"))
        with plate("N", x.shape[0], shard="data"), jppl.handlers.mask(mask=valid):
            sample("y", ..., obs=y)

    Args:
        tree: a pytree of arrays that share the size ``n`` of dim ``dim``.
        multiple: the padded size is the smallest multiple of it that is ``>= n``.
        dim: the dim to pad.

    Returns:
        ``(padded tree, valid)``: NumPy arrays of size ``n_padded`` at ``dim``, and the bool
        mask ``valid`` of shape ``(n_padded,)`` (True for the ``n`` original entries).
    """
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"pad_to_multiple: multiple must be a positive int, got {multiple!r}")
    sizes = {np.shape(x)[dim] for x in jax.tree_util.tree_leaves(tree)}
    if len(sizes) != 1:
        raise ValueError(
            f"pad_to_multiple: the arrays have different sizes {sorted(sizes)} "
            f"at dim {dim}; they must share one."
        )
    (n,) = sizes
    padded = -(-n // multiple) * multiple

    def pad(x):
        x = np.asarray(x)
        widths = [(0, 0)] * x.ndim
        widths[dim if dim >= 0 else x.ndim + dim] = (0, padded - n)
        return np.pad(x, widths)

    return jax.tree_util.tree_map(pad, tree), np.arange(padded) < n


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Put every array of ``tree`` on every device of ``mesh`` (a full copy each).

    With several processes, every process must pass the same values (e.g. the same initial
    parameters); each copies them to its own devices.
    """
    _check_mesh(mesh, "replicate")
    sharding = NamedSharding(mesh, P())
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    def put(x):
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = put(jax.random.key_data(x))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree_util.tree_map(put, tree)


def process_local_array(local_data, mesh: Mesh, axis: str = "data", dim: int = 0) -> jax.Array:
    """A global array split along ``axis`` from the rows that *this process* holds.

    Multi-host use: process ``p`` loads only its own consecutive block of the data (e.g. rows
    ``p * n_local:(p + 1) * n_local``) and every process calls this with its block; the
    result is one global array of ``num_processes * n_local`` rows (along ``dim``), sharded
    along ``axis``. It wraps ``jax.make_array_from_process_local_data``. With one process it
    equals :func:`shard_along`.

    Args:
        local_data: this process's block (NumPy or JAX array).
        mesh: the (global) mesh; the devices of each process must form a contiguous block
            along ``axis`` (as ``make_mesh`` lays them out by default).
        axis: mesh axis to split along.
        dim: the array dim that is split.
    """
    _check_mesh(mesh, "process_local_array")
    _check_axis(mesh, axis, "process_local_array")
    local_data = np.asarray(local_data)
    spec = dim_spec(local_data.ndim, dim, axis)
    sharding = NamedSharding(mesh, spec)
    pos = dim if dim >= 0 else local_data.ndim + dim
    n_proc = len({d.process_index for d in mesh.devices.flat})
    global_shape = list(local_data.shape)
    global_shape[pos] *= n_proc
    n = axis_size(mesh, axis)
    if global_shape[pos] % n:
        raise ValueError(
            f"process_local_array: the global size {global_shape[pos]} at dim {dim} is not "
            f"divisible by the size {n} of mesh axis '{axis}'. {_PAD_HINT}"
        )
    return jax.make_array_from_process_local_data(sharding, local_data, tuple(global_shape))


def state_shardings(tree: Any, mesh: Mesh) -> Any:
    """Shardings that split each leaf of ``tree`` over *all* the devices of ``mesh``.

    Used for parameters and optimizer state (FSDP / ZeRO style): a leaf is split along its
    largest dim that is divisible by the number of devices (over all the mesh axes at once);
    leaves without such a dim (scalars, small vectors, PRNG keys) are replicated. Under
    ``jax.jit`` XLA then gathers the parameters where a computation needs them whole and
    reduces their gradients, so each device stores ``1 / D`` of the state.

    Args:
        tree: pytree of arrays (or ``jax.ShapeDtypeStruct``).
        mesh: the mesh.

    Returns:
        a pytree of ``NamedSharding`` with the structure of ``tree``.
    """
    _check_mesh(mesh, "state_shardings")
    n = int(mesh.devices.size)
    axes = tuple(mesh.axis_names)

    def one(x):
        shape = tuple(np.shape(x))
        is_key = jnp.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key)
        dims = [d for d, size in enumerate(shape) if size % n == 0 and size >= n]
        if n == 1 or is_key or not dims:
            return NamedSharding(mesh, P())
        dim = max(dims, key=lambda d: (shape[d], -d))
        return NamedSharding(mesh, dim_spec(len(shape), dim, axes))

    return jax.tree_util.tree_map(one, tree)


def constrain(x: jax.Array, mesh: Mesh | None, spec: P) -> jax.Array:
    """``with_sharding_constraint(x, NamedSharding(mesh, spec))``; ``x`` itself if no mesh."""
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, traced_sharding(mesh, spec))


def split_leading(tree: Any, axis: str) -> Any:
    """Split the leading dim of every array of ``tree`` over ``axis`` of the active mesh.

    The other dims are left to XLA's partitioner. Use it on a batch of independent
    computations (particles over ``sample``, chains over ``chain``) together with
    ``jax.vmap(..., spmd_axis_name=axis)``. A no-op without an active mesh or when the axis has
    size 1; the leading dims must be divisible by the axis size.
    """
    mesh = current_mesh()
    if axis_size(mesh, axis) == 1:
        return tree

    def one(x):
        spec = P(axis, *([P.UNCONSTRAINED] * (np.ndim(x) - 1)))
        return jax.lax.with_sharding_constraint(x, traced_sharding(mesh, spec))

    return jax.tree_util.tree_map(one, tree)


def check_plate_shard(name: str, axis: str, size: int) -> None:
    """Check a plate of (sub)sample ``size`` sharded along ``axis`` against the active mesh.

    A no-op without an active mesh (the same model then runs on one device).

    Raises:
        ValueError: the active mesh has no axis ``axis``, or ``size`` is not divisible by its
            size.
    """
    mesh = current_mesh()
    if mesh is None:
        return
    if axis not in mesh.axis_names:
        raise ValueError(
            f"plate '{name}' is sharded over mesh axis '{axis}', but the active mesh has axes "
            f"{tuple(mesh.axis_names)}; use one of them (normally shard='data')."
        )
    n = axis_size(mesh, axis)
    if size % n:
        raise ValueError(
            f"plate '{name}' has (sub)sample size {size}, which is not divisible by the size "
            f"{n} of mesh axis '{axis}'; every device must get the same number of entries. "
            + _PAD_HINT
        )


def replicated_indices(indices: jax.Array) -> jax.Array:
    """Pin a sharded plate's minibatch indices as replicated under the active mesh.

    Indexing data that is split along the plate's dim with replicated indices lets XLA pick
    each device's rows locally and all-reduce only the minibatch (never the whole data).
    """
    mesh = current_mesh()
    if mesh is None:
        return indices
    return jax.lax.with_sharding_constraint(indices, traced_sharding(mesh, P()))


def take_sharded(data: jax.Array, indices: jax.Array, axis: int, mesh_axis: str) -> jax.Array:
    """``jnp.take(data, indices, axis)`` for ``data`` split along ``mesh_axis`` at ``axis``.

    Each device gathers the requested rows that it holds (zeros elsewhere) and the partial
    results are summed across ``mesh_axis``: only the minibatch crosses devices, never the
    data. Every row has exactly one non-zero contribution, so the result equals
    ``jnp.take`` exactly. Falls back to ``jnp.take`` without an active mesh.

    Args:
        data: array whose dim ``axis`` (size ``n``, divisible by the axis size) is split.
        indices: int array ``(B,)`` of rows in ``[0, n)``.
        axis: the dim of ``data`` that ``indices`` index (non-negative).
        mesh_axis: the mesh axis ``data`` is split along.

    Returns:
        array with dim ``axis`` of size ``B``.
    """
    mesh = current_mesh()
    n_dev = axis_size(mesh, mesh_axis)
    if n_dev == 1:
        return jnp.take(data, indices, axis=axis)
    shape = tuple(np.shape(data))
    n = shape[axis]
    if n % n_dev:
        raise ValueError(
            f"take_sharded: the data dim {axis} has size {n}, which is not divisible by the "
            f"size {n_dev} of mesh axis '{mesh_axis}'. {_PAD_HINT}"
        )
    rows = n // n_dev
    split = jnp.reshape(data, shape[:axis] + (n_dev, rows) + shape[axis + 1 :])
    free = P.UNCONSTRAINED
    spec = P(*([free] * axis), mesh_axis, *([free] * (len(shape) - axis)))
    split = jax.lax.with_sharding_constraint(split, traced_sharding(mesh, spec))
    picked = jnp.take(split, indices % rows, axis=axis + 1)  # (..., n_dev, B, ...)
    picked = jax.lax.with_sharding_constraint(picked, traced_sharding(mesh, spec))
    owner = (indices // rows)[None, :] == jnp.arange(n_dev)[:, None]  # (n_dev, B)
    owner = jnp.reshape(owner, owner.shape + (1,) * (len(shape) - axis - 1))
    return jnp.sum(jnp.where(owner, picked, jnp.zeros((), picked.dtype)), axis=axis)


def shard_log_prob(log_prob: jax.Array, cond_indep_stack: Sequence) -> jax.Array:
    """Split a site's log-probability along the mesh axes of its sharded plates.

    Args:
        log_prob: array of shape ``sample_shape + batch_shape`` of one site.
        cond_indep_stack: the site's plate frames; a frame with ``shard`` set splits the
            log-probability's dim ``frame.dim`` (counted from the right) along mesh axis
            ``frame.shard`` when that dim has the plate's size.

    Returns:
        ``log_prob`` with a sharding constraint (unchanged without an active mesh or sharded
        plates). Sums of it become per-device partial sums plus one all-reduce.
    """
    mesh = current_mesh()
    if mesh is None:
        return log_prob
    ndim = np.ndim(log_prob)
    spec: list[Any] = [P.UNCONSTRAINED] * ndim
    found = False
    for frame in cond_indep_stack:
        axis = getattr(frame, "shard", None)
        if axis is None:
            continue
        pos = ndim + frame.dim
        if pos < 0 or np.shape(log_prob)[pos] != frame.size:
            continue
        spec[pos] = axis
        found = True
    if not found:
        return log_prob
    return jax.lax.with_sharding_constraint(log_prob, traced_sharding(mesh, P(*spec)))
