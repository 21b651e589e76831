"""NumPyro's ``numpyro.util`` helpers: JAX settings, ``fori_collect`` and ``format_shapes``.

* :func:`enable_x64`, :func:`set_platform`, :func:`set_host_device_count` change JAX's global
  settings (re-exported from :mod:`jppl`). Unlike NumPyro, a setting that can no longer take
  effect because JAX has already started raises an error instead of being ignored.
* :func:`fori_collect` runs ``body_fun`` in a compiled loop and collects (a transform of) its
  values, e.g. the draws of :func:`jppl.infer.hmc.hmc`'s ``sample_kernel``.
* :func:`format_shapes` prints the shapes of the sites of a model trace.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jppl.runloop import Pacer, is_interactive, make_bar

__all__ = [
    "enable_x64",
    "format_shapes",
    "fori_collect",
    "identity",
    "set_host_device_count",
    "set_platform",
]

_TRUE = {"1", "true", "yes", "on"}
_PLATFORMS = ("cpu", "cuda", "rocm", "tpu", "METAL")


def identity(x, *args, **kwargs):
    """Return ``x`` (the default ``transform`` of :func:`fori_collect`)."""
    return x


# ---------------------------------------------------------------------------------------------
# JAX settings
# ---------------------------------------------------------------------------------------------


def enable_x64(use_x64: bool = True) -> None:
    """Make 64-bit floats and ints JAX's default (``jax_enable_x64``), as in NumPy.

    Args:
        use_x64: ``True``: 64 bits. ``False``: 32 bits unless the environment variable
            ``JAX_ENABLE_X64`` is set to a true value (``1``, ``true``, ``yes``, ``on``;
            NumPyro reads any non-empty value, even ``0``, as true).
    """
    if not use_x64:
        use_x64 = os.getenv("JAX_ENABLE_X64", "").strip().lower() in _TRUE
    jax.config.update("jax_enable_x64", bool(use_x64))


def set_platform(platform: str | None = None) -> None:
    """Choose the JAX platform(s): ``"cpu"``, ``"cuda"``, ``"rocm"``, ``"tpu"``, ``"METAL"``
    or a comma-separated list of them. Takes effect only before JAX's first computation.

    Args:
        platform: the platform(s); ``None`` reads ``JAX_PLATFORMS`` (default ``"cpu"``).

    Raises:
        ValueError: an unknown platform name.
    """
    if platform is None:
        platform = os.getenv("JAX_PLATFORMS", "cpu")
    unknown = [p.strip() for p in platform.split(",") if p.strip() not in _PLATFORMS]
    if unknown:
        raise ValueError(
            f"set_platform: unknown platform(s) {unknown} in {platform!r}; valid platforms "
            f"are {', '.join(_PLATFORMS)}."
        )
    jax.config.update("jax_platforms", platform)


def set_host_device_count(n: int) -> None:
    """Make XLA expose ``n`` CPU devices (for ``chain_method="parallel"``, ``pmap``,
    ``shard_map`` on a CPU).

    Sets JAX's ``jax_num_cpu_devices`` and, for child processes, the XLA flag
    ``--xla_force_host_platform_device_count=n`` in ``XLA_FLAGS``. Call it right after
    ``import jax``, before any computation.

    Raises:
        ValueError: ``n`` is not a positive int.
        RuntimeError: JAX has already started its backends, so the count cannot change any
            more (NumPyro silently keeps the old count then).
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"set_host_device_count: n must be a positive int, got {n!r}.")
    try:
        jax.config.update("jax_num_cpu_devices", int(n))
    except RuntimeError as e:
        raise RuntimeError(
            f"set_host_device_count({n}) came too late: JAX has already run a computation, "
            f"so it keeps its {jax.local_device_count('cpu')} CPU device(s). Call it right "
            "after `import jax`, before anything else uses JAX."
        ) from e
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.getenv("XLA_FLAGS", ""))
    os.environ["XLA_FLAGS"] = " ".join(
        [f"--xla_force_host_platform_device_count={int(n)}", *flags.split()]
    )


# ---------------------------------------------------------------------------------------------
# fori_collect
# ---------------------------------------------------------------------------------------------


def _collect_loop(body_fun: Callable, transform: Callable, thinning: int, start_idx: int):
    """``run(i0, i1, val, collection) -> (val, collection)``: iterations ``i0 <= i < i1``.

    After iteration ``i`` the value is written at ``(i - start_idx) // thinning`` when that is
    ``>= 0``, so of each block of ``thinning`` iterations the last one is kept.
    """

    def body(i, carry):
        val, collection = carry
        val = body_fun(val)
        if not jax.tree.leaves(collection) or jax.tree.leaves(collection)[0].shape[0] == 0:
            return val, collection  # nothing to collect
        idx = (i - start_idx) // thinning
        new = transform(val)
        collection = jax.lax.cond(
            idx >= 0,
            lambda c: jax.tree.map(lambda a, v: a.at[idx].set(v), c, new),
            lambda c: c,
            collection,
        )
        return val, collection

    def run(i0, i1, val, collection):
        return jax.lax.fori_loop(i0, i1, body, (val, collection))

    return jax.jit(run, donate_argnums=(3,))


def fori_collect(
    lower: int,
    upper: int,
    body_fun: Callable[[Any], Any],
    init_val: Any,
    transform: Callable[[Any], Any] = identity,
    progbar: bool = True,
    progress_rate: int | None = None,
    return_last_val: bool = False,
    collection_size: int | None = None,
    thinning: int = 1,
    **progbar_opts,
):
    """Run ``val = body_fun(val)`` ``upper`` times and collect ``transform(val)``.

    Like ``lax.fori_loop`` over ``0 <= i < upper``, keeping the values of iterations
    ``lower <= i < upper``, thinned: of each block of ``thinning`` iterations the last is kept,
    the blocks ending at the last iteration (the first ``(upper - lower) % thinning`` kept
    iterations are dropped).

    Args:
        lower: number of leading iterations whose values are not collected (e.g. warm-up).
        upper: total number of iterations.
        body_fun: ``val -> val`` with the same pytree structure, shapes and dtypes.
        init_val: the initial value (a pytree of arrays).
        transform: ``val -> pytree of arrays`` collected at each kept iteration.
        progbar: show a live bar in a terminal or Jupyter (:func:`jppl.runloop.make_bar`);
            the loop then runs in compiled chunks of about a quarter of a second
            (:class:`jppl.runloop.Pacer`). Otherwise (or elsewhere, e.g. in CI) it is one
            compiled loop.
        progress_rate: accepted for NumPyro compatibility; the bar is updated after each chunk.
        return_last_val: also return the value after the last iteration.
        collection_size: length of the collection's leading axis; default
            ``(upper - lower) // thinning``. A larger size leaves zeros after the collected
            values.
        thinning: keep one value per ``thinning`` iterations (``>= 1``).
        **progbar_opts: ``progbar_desc`` (``i -> str``, the bar's label from the iteration
            reached) and ``diagnostics_fn`` (``val -> str``, the bar's postfix).

    Returns:
        the collection: ``transform(val)``'s pytree with a leading axis of length
        ``collection_size`` on every leaf; with ``return_last_val``, ``(collection, val)``.

    Raises:
        ValueError: ``lower > upper``, ``thinning < 1``, a ``collection_size`` too small for
            the kept values, or an unknown keyword argument.
    """
    lower, upper, thinning = int(lower), int(upper), int(thinning)
    if not 0 <= lower <= upper:
        raise ValueError(
            f"fori_collect: need 0 <= lower <= upper, got lower={lower}, upper={upper}."
        )
    if thinning < 1:
        raise ValueError(f"fori_collect: thinning must be >= 1, got {thinning}.")
    kept = (upper - lower) // thinning
    collection_size = kept if collection_size is None else int(collection_size)
    if collection_size < kept:
        raise ValueError(
            f"fori_collect: collection_size={collection_size} is smaller than the "
            f"{kept} values to collect ((upper - lower) // thinning)."
        )
    progbar_desc = progbar_opts.pop("progbar_desc", None)
    diagnostics_fn = progbar_opts.pop("diagnostics_fn", None)
    progbar_opts.pop("num_chains", None)  # NumPyro's per-chain bars: one bar here
    if progbar_opts:
        raise ValueError(f"fori_collect: unknown keyword argument(s) {sorted(progbar_opts)}.")
    start_idx = lower + (upper - lower) % thinning

    def zeros(x):
        return jnp.zeros((collection_size, *x.shape), x.dtype)

    collection = jax.tree.map(zeros, jax.eval_shape(transform, init_val))
    run = _collect_loop(body_fun, transform, thinning, start_idx)
    val = init_val
    if not (progbar and upper > 0 and is_interactive()):
        val, collection = run(0, upper, val, collection)
        return (collection, val) if return_last_val else collection
    bar = make_bar(upper, "fori_collect")
    pacer = Pacer(upper)
    compiling = True
    try:
        while (length := pacer.next()) > 0:
            start = time.perf_counter()
            i0 = pacer.done
            val, collection = run(np.int32(i0), np.int32(i0 + length), val, collection)
            jax.block_until_ready(val)
            pacer.record(length, time.perf_counter() - start, compiled=compiling)
            compiling = False
            if progbar_desc is not None:
                bar.set_description(progbar_desc(pacer.done - 1), refresh=False)
            if diagnostics_fn is not None:
                bar.set_postfix_str(diagnostics_fn(val), refresh=False)
            bar.update(length)
    finally:
        bar.close()
    return (collection, val) if return_last_val else collection


# ---------------------------------------------------------------------------------------------
# format_shapes
# ---------------------------------------------------------------------------------------------


def _table(rows: list[list[list[str]]]) -> str:
    """Rows of three cell groups (name, batch dims, event dims) as a text table: the groups
    are aligned right, right and left, and every column is right-justified."""
    widths = [max(len(row[g]) for row in rows) for g in range(3)]
    padded = []
    for row in rows:
        name, batch, event = row
        padded.append(
            [""] * (widths[0] - len(name))
            + name
            + [""] * (widths[1] - len(batch))
            + batch
            + event
            + [""] * (widths[2] - len(event))
        )
    col_widths = [max(len(r[j]) for r in padded) for j in range(len(padded[0]))]
    return "\n".join(
        " ".join(cell.rjust(w) for cell, w in zip(r, col_widths, strict=True)) for r in padded
    )


def _dims(shape) -> list[str]:
    return [str(s) for s in shape]


def format_shapes(
    trace: dict,
    *,
    compute_log_prob: bool | Callable[[dict], bool] = False,
    title: str = "Trace Shapes:",
    last_site: str | None = None,
) -> str:
    """A table of the shapes of the sites of a model trace (NumPyro's layout).

    For each param site its value's shape; for each sample site the distribution's
    ``batch_shape | event_shape``, the value's shape split the same way and, if asked, the
    ``log_prob`` shape; for each plate its (sub)sample indices' shape.

    Args:
        trace: a trace, e.g. ``jppl.handlers.trace(seed(model, 0)).get_trace(*args)``.
        compute_log_prob: ``True``, or ``site -> bool`` choosing the sites, to add the shape
            of ``site["fn"].log_prob(site["value"])``.
        title: first line of the table.
        last_site: stop after the site with this name.

    Returns:
        the table (``title`` alone for an empty trace).
    """
    if not trace:
        return title
    rows: list[list[list[str]]] = [[[title], [], []], [["Param Sites:"], [], []]]
    for name, site in trace.items():
        if site["type"] == "param":
            rows.append([[name], _dims(jnp.shape(site["value"])), []])
        if name == last_site:
            break
    rows.append([["Sample Sites:"], [], []])
    for name, site in trace.items():
        if site["type"] == "sample":
            fn = site["fn"]
            batch_shape, event_shape = tuple(fn.batch_shape), tuple(fn.event_shape)
            rows.append([[f"{name} dist"], [*_dims(batch_shape), "|"], _dims(event_shape)])
            shape = tuple(jnp.shape(site["value"]))
            split = len(shape) - len(event_shape)
            rows.append([["value"], [*_dims(shape[:split]), "|"], _dims(shape[split:])])
            wanted = compute_log_prob(site) if callable(compute_log_prob) else compute_log_prob
            if wanted:
                log_prob = fn.log_prob(site["value"])
                rows.append([["log_prob"], [*_dims(jnp.shape(log_prob)), "|"], []])
        elif site["type"] == "plate":
            rows.append([[f"{name} plate"], [*_dims(jnp.shape(site["value"])), "|"], []])
        if name == last_site:
            break
    return _table(rows)
