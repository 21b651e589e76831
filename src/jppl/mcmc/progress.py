"""Progress reporting for compiled MCMC runs.

The warm-up and sampling loops are compiled ``lax.scan``\\ s, so the bar is fed by host
callbacks (:func:`jax.debug.callback`) fired from inside the scan:

* **throttled**: a callback fires every ``every`` transitions and at the last transition,
  through ``lax.cond``; its arguments are packed into one float32 vector (each extra callback
  argument costs tens of microseconds). ``every`` is a traced argument chosen by the host
  for each run (:meth:`ProgressBar.pick_every`): about 100 reports per phase the first time,
  then about one per 0.1 s of the phase's measured duration (at most 100), so the bar stays
  live while a fast phase of a cached program pays only a few callbacks. A callback costs
  about 0.05-0.1 ms of host round trip in isolation, more inside a busy multi-threaded program.
* **once for all chains**: the reporting function is a :func:`jax.custom_batching.custom_vmap`
  whose batching rule reduces over the chain axis (sum of the divergence counts, mean step
  size and acceptance) and then fires a single callback. ``vmap`` over chains therefore costs
  one callback per reported step, not one per chain.
* **once per mesh, not once per device**: with sharded chains (``shard_map`` over the
  ``"chain"`` axis) only device 0 calls back; during sampling the divergence counts are first
  summed over devices with a ``psum`` inside the throttled branch (so devices synchronize only
  every ``every`` transitions).
* **divergences**: sampling carries a running count per chain, so the bar shows the exact
  number of divergent transitions so far. The warm-up scan (owned by
  :mod:`jppl.mcmc.adaptation`) has no room for a counter, so during warm-up the bar shows
  acceptance and trajectory length, and the warm-up divergence total appears when the phase
  ends (warm-up divergences are expected while the step size is being tuned).

When stderr is not a terminal (CI logs), nothing is compiled into the loops: each phase prints
one final line instead of a live bar.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.custom_batching import custom_vmap

__all__ = ["ProgressBar", "is_interactive", "make_reporter"]


def is_interactive() -> bool:
    """Whether a live bar can be drawn (stderr is a terminal)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _fmt_step(step_size: float) -> str:
    return f"{step_size:.2e}"


class ProgressBar:
    """Host side of the progress display: one tqdm bar per phase, fed by callbacks.

    The same object is closed over by the compiled functions (they are cached on the
    :class:`~jppl.mcmc.MCMC` object), so each phase is opened with :meth:`start` and closed
    with :meth:`close`; callbacks arriving while no phase is open are ignored.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bar = None
        self._phase = ""
        self._total = 0
        self._position = 0
        self._divergences = 0
        self._start = 0.0
        self._last = (float("nan"), float("nan"), float("nan"), False)
        self._first = True
        self._drawn = 0.0
        self._interval = 0.1
        self._t_first: float | None = None
        self._t_last = self._i_first = self._i_last = 0
        self.last_seconds: float | None = None

    @staticmethod
    def pick_every(total: int, seconds: float | None, unit: int = 1) -> int:
        """Reporting interval (in transitions, a multiple of ``unit``) for a phase of
        ``total`` transitions expected to run ``seconds`` (``None``: unknown): about one
        report per 0.1 s (the bar's refresh interval), at most 100 and at least 1 per phase."""
        updates = 100 if seconds is None else int(min(100, max(1, seconds / 0.1)))
        blocks = max(1, total // unit)
        return unit * max(1, -(-blocks // updates))

    def start(self, phase: str, total: int, live: bool, label: str = "") -> None:
        """Open a phase of ``total`` transitions; ``live`` draws a tqdm bar."""
        with self._lock:
            self._phase = phase
            self._total = int(total)
            self._position = 0
            self._divergences = 0
            self._last = (float("nan"), float("nan"), float("nan"), False)
            self._drawn = 0.0
            self._t_first = None
            self.last_seconds = None
            self._start = time.perf_counter()
            self._bar = None
            self._first = True
            if live:
                from tqdm.auto import tqdm

                self._bar = tqdm(
                    total=self._total,
                    desc=f"{phase}{label}",
                    file=sys.stderr,
                    dynamic_ncols=True,
                    mininterval=self._interval,
                    leave=True,
                )

    def update(self, packed) -> None:
        """Host callback. ``packed`` is ``[index, divergences, step_size, accept_prob,
        num_steps]`` (float32; see :func:`make_reporter`): ``index`` is the 0-based
        transition just done in this phase, ``divergences`` the total so far (``-1``: not
        counted)."""
        index, divergences, step_size, accept_prob, num_steps = packed.tolist()
        now = time.monotonic()
        with self._lock:
            if self._t_first is None:
                self._t_first, self._i_first = now, int(index)
            self._t_last, self._i_last = now, int(index)
            if divergences >= 0:
                self._divergences = int(divergences)
            position = int(index) + 1
            if position > self._position:
                self._position = position
                self._last = (step_size, accept_prob, num_steps, divergences >= 0)
            if self._bar is None:
                return
            if self._first:
                # The clock starts at the first transition, not before compilation.
                self._bar.reset(total=self._total)
                self._first = False
            elif now - self._drawn < self._interval:
                return
            self._drawn = now
            step_size, accept_prob, num_steps, counted = self._last
            parts = []
            if step_size == step_size:  # not NaN
                parts.append(f"step size {_fmt_step(step_size)}")
            parts.append(f"acc. prob {accept_prob:.2f}")
            parts.append(f"{num_steps:.0f} steps")
            if counted:
                parts.append(f"{self._divergences} divergences")
            self._bar.set_postfix_str(", ".join(parts), refresh=False)
            self._bar.update(self._position - self._bar.n)

    def close(self, summary: str, label: str = "") -> None:
        """Close the phase: finish the bar (exact final ``summary``) or print one line."""
        jax.effects_barrier()
        with self._lock:
            elapsed = time.perf_counter() - self._start
            if self._t_first is not None and self._i_last > self._i_first:
                # execution time of the phase, extrapolated from the callbacks' time stamps
                rate = (self._t_last - self._t_first) / (self._i_last - self._i_first)
                self.last_seconds = rate * self._total
            if self._bar is not None:
                self._bar.set_postfix_str(summary, refresh=False)
                self._bar.update(self._total - self._bar.n)
                self._bar.close()
                self._bar = None
            else:
                print(
                    f"{self._phase}{label}: {self._total}/{self._total} [{elapsed:.1f}s] {summary}",
                    file=sys.stderr,
                    flush=True,
                )
            self._total = 0


def make_reporter(bar: ProgressBar, total: int, axis_name: str | None = None) -> Callable:
    """The traced reporting function
    ``report(every, index, divergences, step_size, accept, steps)``.

    Args:
        bar: the host :class:`ProgressBar`.
        total: number of transitions in the phase (static).
        axis_name: mesh axis of sharded chains (``shard_map``): only index 0 along it calls
            back, with the divergence counts summed over the axis.

    Arguments of ``report``: ``every`` ``()`` int, report every ``every`` transitions and at
    the last one (traced: the host picks it per run, see :meth:`ProgressBar.pick_every`,
    without recompiling); ``index`` ``()`` int, 0-based transition index in the phase (the
    same for all chains); ``divergences`` ``()`` int, the chain's divergent transitions so far,
    or ``None`` if not counted (warm-up); ``step_size`` (NaN: not shown), ``accept`` and
    ``steps`` ``()`` floats. Under ``vmap`` the per-chain arguments are ``(C,)`` and one
    callback reports all chains (sum of divergences, means of the rest).
    """
    total = int(total)

    def fire(every, index, divergences, step_size, accept, steps):
        regular = ((index + 1) % every == 0) | (index + 1 == total)

        def report():
            n_div = divergences
            if axis_name is not None and divergences is not None:
                n_div = jax.lax.psum(divergences, axis_name)
            n_div = jnp.asarray(-1 if n_div is None else n_div)
            packed = jnp.stack(
                [
                    index.astype(jnp.float32),
                    n_div.astype(jnp.float32),
                    step_size,
                    accept,
                    steps,
                ]
            )
            call = lambda: jax.debug.callback(bar.update, packed)
            if axis_name is None:
                call()
            else:
                jax.lax.cond(jax.lax.axis_index(axis_name) == 0, call, lambda: None)

        jax.lax.cond(regular, report, lambda: None)

    def as_float(x):
        return jnp.asarray(x, jnp.float32)

    def as_count(x):
        return None if x is None else jnp.asarray(x).astype(jnp.int32)

    @custom_vmap
    def report(every, index, divergences, step_size, accept, steps):
        fire(
            jnp.asarray(every),
            jnp.asarray(index),
            as_count(divergences),
            as_float(step_size),
            as_float(accept),
            as_float(steps),
        )
        return jnp.zeros((), jnp.int32)

    @report.def_vmap
    def _report_batched(axis_size, in_batched, every, index, divergences, step_size, accept, steps):
        every_batched, index_batched, div_batched, step_batched, acc_batched, steps_batched = (
            in_batched
        )
        every, index = jnp.asarray(every), jnp.asarray(index)
        if every_batched:
            every = every[0]
        if index_batched:
            index = index[0]

        def mean(x, batched):
            x = as_float(x)
            return jnp.mean(x) if batched else x

        divergences = as_count(divergences)
        if divergences is not None and div_batched:
            divergences = jnp.sum(divergences)
        fire(
            every,
            index,
            divergences,
            mean(step_size, step_batched),
            mean(accept, acc_batched),
            mean(steps, steps_batched),
        )
        return jnp.zeros((), jnp.int32), False

    return report
