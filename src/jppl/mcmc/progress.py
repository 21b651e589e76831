"""Progress reporting for compiled MCMC runs.

Warm-up and sampling run in one compiled ``lax.scan`` (:mod:`jppl.mcmc.driver`), so the bars
are fed by host callbacks (:func:`jax.debug.callback`) fired from inside the scan:

* **throttled**: a callback fires every ``every[phase]`` transitions and at the last transition
  of each phase, through ``lax.cond``; its arguments are packed into one float32 vector (each
  extra callback argument costs tens of microseconds). ``every`` is a traced argument chosen by
  the host for each run (:meth:`ProgressBar.pick_every`): about 100 reports per phase the
  first time, then about one per 0.1 s of the phase's measured duration (at most 100), so the
  bar stays live while a fast phase of a cached program pays only a few callbacks. A callback
  costs about 0.05-0.1 ms of host round trip in isolation, more inside a busy multi-threaded
  program.
* **phases**: each report carries its phase (warm-up or sampling) and its index in the phase;
  the host closes the warm-up bar and opens the sampling bar at the first sampling report.
* **once for all chains**: the reporting function is a :func:`jax.custom_batching.custom_vmap`
  whose batching rule reduces over the chain axis (sum of the divergence counts, mean step
  size and acceptance) and then fires a single callback. ``vmap`` over chains therefore costs
  one callback per reported step, not one per chain.
* **once per mesh, not once per device**: with sharded chains (``shard_map`` over the
  ``"chain"`` axis) only device 0 calls back; the divergence counts are first summed over
  devices with a ``psum`` inside the throttled branch (so devices synchronize only every
  ``every`` transitions).
* **what is shown**: in both phases the step size in use (during warm-up the one being
  adapted), the acceptance statistic, the trajectory length and the exact number of divergent
  transitions of the phase so far (warm-up divergences are expected while the step size is
  being tuned).

When stderr is not a terminal (CI logs; :func:`jppl.progress.is_interactive`), nothing is
compiled into the loops: each phase prints one final line instead of a live bar (printed
when the run ends).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap

__all__ = ["ProgressBar", "make_reporter", "summary_line"]


def summary_line(step_size: Any, divergences: Any) -> str:
    """``"step size 1.23e-01, 4 divergences"``: mean step size over chains, total count."""
    step = float(np.mean(np.asarray(step_size)))
    return f"step size {step:.2e}, {int(np.sum(np.asarray(divergences)))} divergences"


class ProgressBar:
    """Host side of the progress display: one tqdm bar per phase, fed by callbacks.

    The same object is closed over by the compiled functions (they are cached on the
    :class:`~jppl.mcmc.MCMC` object). A run of a program is opened with :meth:`start` and the
    list of its phases (e.g. warm-up then sampling); the first callback of a later phase
    closes the bar of the earlier one (with the step size and divergence count of its last
    report) and opens the next. :meth:`close` ends the run with the exact summaries. Callbacks
    arriving while no run is open are ignored.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bar = None
        self._phases: list[tuple[str, int]] = []
        self._current = -1
        self._live = False
        self._label = ""
        self._start = 0.0
        self._interval = 0.1
        self._reset_phase()
        #: measured execution seconds of each phase of the last run (from the callbacks'
        #: time stamps; phases without two reports are missing)
        self.seconds: dict[str, float] = {}

    def _reset_phase(self) -> None:
        self._position = 0
        self._divergences = 0
        self._last = (float("nan"), float("nan"), float("nan"))
        self._first = True
        self._drawn = 0.0
        self._t_first: float | None = None
        self._t_last = self._i_first = self._i_last = 0

    @staticmethod
    def pick_every(total: int, seconds: float | None, unit: int = 1) -> int:
        """Reporting interval (in transitions, a multiple of ``unit``) for a phase of
        ``total`` transitions expected to run ``seconds`` (``None``: unknown): about one
        report per 0.1 s (the bar's refresh interval), at most 100 and at least 1 per phase."""
        updates = 100 if seconds is None else int(min(100, max(1, seconds / 0.1)))
        blocks = max(1, total // unit)
        return unit * max(1, -(-blocks // updates))

    def start(self, phases: Sequence[tuple[str, int]], live: bool, label: str = "") -> None:
        """Open a run whose program goes through ``phases`` (``(name, transitions)`` each, in
        order; phases of 0 transitions are skipped); ``live`` draws tqdm bars."""
        with self._lock:
            self._phases = [(str(name), int(total)) for name, total in phases]
            self._live = bool(live)
            self._label = label
            self._start = time.perf_counter()
            self.seconds = {}
            self._bar = None
            self._current = -1
            self._open(self._next_phase(-1))

    def _next_phase(self, after: int) -> int:
        for i in range(after + 1, len(self._phases)):
            if self._phases[i][1] > 0:
                return i
        return len(self._phases)

    def _open(self, index: int) -> None:
        self._current = index
        self._reset_phase()
        if index >= len(self._phases) or not self._live:
            return
        from tqdm.auto import tqdm

        name, total = self._phases[index]
        self._bar = tqdm(
            total=total,
            desc=f"{name}{self._label}",
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=self._interval,
            leave=True,
        )

    def _finish(self, summary: str) -> None:
        """Close the current phase (lock held)."""
        if self._current >= len(self._phases):
            return
        name, total = self._phases[self._current]
        if self._t_first is not None and self._i_last > self._i_first:
            rate = (self._t_last - self._t_first) / (self._i_last - self._i_first)
            self.seconds[name] = rate * total
        if self._bar is not None:
            self._bar.set_postfix_str(summary, refresh=False)
            self._bar.update(total - self._bar.n)
            self._bar.close()
            self._bar = None

    def update(self, packed) -> None:
        """Host callback. ``packed`` is ``[phase, index, divergences, step_size, accept_prob,
        num_steps]`` (float32; see :func:`make_reporter`): ``index`` is the 0-based transition
        just done in phase ``phase``, ``divergences`` the phase's total so far."""
        phase, index, divergences, step_size, accept_prob, num_steps = packed.tolist()
        phase, index = int(phase), int(index)
        now = time.monotonic()
        with self._lock:
            if self._current < 0 or phase < self._current or phase >= len(self._phases):
                return
            while phase > self._current:  # the program has moved on to a later phase
                step, _, _ = self._last
                self._finish(summary_line(step, self._divergences))
                self._open(self._next_phase(self._current))
            if self._t_first is None:
                self._t_first, self._i_first = now, index
            self._t_last, self._i_last = now, index
            self._divergences = int(divergences)
            position = index + 1
            if position > self._position:
                self._position = position
                self._last = (step_size, accept_prob, num_steps)
            if self._bar is None:
                return
            if self._first:
                # The clock starts at the first transition, not before compilation.
                self._bar.reset(total=self._phases[self._current][1])
                self._first = False
            elif now - self._drawn < self._interval:
                return
            self._drawn = now
            step_size, accept_prob, num_steps = self._last
            parts = [
                f"step size {_fmt_step(step_size)}",
                f"acc. prob {accept_prob:.2f}",
                f"{num_steps:.0f} steps",
                f"{self._divergences} divergences",
            ]
            self._bar.set_postfix_str(", ".join(parts), refresh=False)
            self._bar.update(self._position - self._bar.n)

    def close(self, summaries: Sequence[str]) -> None:
        """End the run: finish the open bars with the exact ``summaries`` (one per phase given
        to :meth:`start`), or print one line per phase without a terminal."""
        jax.effects_barrier()
        with self._lock:
            elapsed = time.perf_counter() - self._start
            shown = [i for i, (_, total) in enumerate(self._phases) if total > 0]
            if self._live:
                while self._current < len(self._phases):
                    self._finish(summaries[self._current])
                    self._open(self._next_phase(self._current))
            else:
                for i in shown:
                    name, total = self._phases[i]
                    timing = f" [{elapsed:.1f}s]" if i == shown[-1] else ""
                    print(
                        f"{name}{self._label}: {total}/{total}{timing} {summaries[i]}",
                        file=sys.stderr,
                        flush=True,
                    )
            self._current = -1
            self._phases = []


def _fmt_step(step_size: float) -> str:
    return f"{step_size:.2e}"


def make_reporter(
    bar: ProgressBar, totals: tuple[int, ...], axis_name: str | None = None
) -> Callable:
    """The traced reporting function
    ``report(every, phase, index, divergences, step_size, accept, steps)``.

    Args:
        bar: the host :class:`ProgressBar`.
        totals: number of transitions of each phase of the program (static), e.g.
            ``(num_warmup, num_samples)``.
        axis_name: mesh axis of sharded chains (``shard_map``): only index 0 along it calls
            back, with the divergence counts summed over the axis.

    Arguments of ``report``: ``every`` ``(num_phases,)`` int, report every ``every[phase]``
    transitions of a phase and at its last one (traced: the host picks it per run, see
    :meth:`ProgressBar.pick_every`, without recompiling); ``phase`` ``()`` int, the phase of
    the transition; ``index`` ``()`` int, its 0-based index in the phase (the same for all
    chains); ``divergences`` ``()`` int, the chain's divergent transitions so far in the
    phase; ``step_size``, ``accept`` and ``steps`` ``()`` floats. Under ``vmap`` the
    per-chain arguments are ``(C,)`` and one callback reports all chains (sum of divergences,
    means of the rest).
    """
    totals_array = np.asarray(totals, np.int32)

    def fire(every, phase, index, divergences, step_size, accept, steps):
        total = jnp.asarray(totals_array)[phase]
        regular = ((index + 1) % every[phase] == 0) | (index + 1 == total)

        def report():
            n_div = divergences
            if axis_name is not None:
                n_div = jax.lax.psum(divergences, axis_name)
            packed = jnp.stack(
                [
                    phase.astype(jnp.float32),
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
        return jnp.asarray(x).astype(jnp.int32)

    @custom_vmap
    def report(every, phase, index, divergences, step_size, accept, steps):
        fire(
            jnp.asarray(every),
            jnp.asarray(phase),
            jnp.asarray(index),
            as_count(divergences),
            as_float(step_size),
            as_float(accept),
            as_float(steps),
        )
        return jnp.zeros((), jnp.int32)

    @report.def_vmap
    def _report_batched(
        axis_size, in_batched, every, phase, index, divergences, step_size, accept, steps
    ):
        # the schedule arguments are the same for all chains: take chain 0's
        every, phase, index = (
            jnp.asarray(x)[0] if batched else jnp.asarray(x)
            for x, batched in zip((every, phase, index), in_batched[:3], strict=True)
        )
        div_batched, step_batched, acc_batched, steps_batched = in_batched[3:]

        def mean(x, batched):
            x = as_float(x)
            return jnp.mean(x) if batched else x

        divergences = as_count(divergences)
        if div_batched:
            divergences = jnp.sum(divergences)
        fire(
            every,
            phase,
            index,
            divergences,
            mean(step_size, step_batched),
            mean(accept, acc_batched),
            mean(steps, steps_batched),
        )
        return jnp.zeros((), jnp.int32), False

    return report
