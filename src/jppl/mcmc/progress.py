"""Progress display of MCMC runs, fed by the host between compiled chunks.

:class:`~jppl.mcmc.MCMC` runs a chain's transitions in chunks of one compiled loop (sized by
:class:`jppl.runloop.Pacer` to last about a quarter of a second), and after each chunk reads a
few numbers of the chains' carry: the divergences so far in each phase, and the step size,
acceptance statistic and number of integration steps of the last transition (means over the
chains). :class:`ProgressBar` turns them into one tqdm bar per phase (warm-up, then sampling):

* **what is shown**: in both phases the step size in use (during warm-up the one being
  adapted), the acceptance statistic, the trajectory length and the exact number of divergent
  transitions of the phase so far (warm-up divergences are expected while the step size is
  being tuned), and tqdm's rate;
* **where**: live on a terminal or in a Jupyter kernel (:func:`jppl.runloop.is_interactive`);
  otherwise (CI logs) one line per phase when the run ends.

Nothing is compiled into the loops for the display: with or without a bar the compiled
programs are the same.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from jppl.runloop import make_bar

__all__ = ["ProgressBar", "summary_line"]


def summary_line(step_size: Any, divergences: Any) -> str:
    """``"step size 1.23e-01, 4 divergences"``: mean step size over chains, total count."""
    step = float(np.mean(np.asarray(step_size)))
    return f"step size {step:.2e}, {int(np.sum(np.asarray(divergences)))} divergences"


class ProgressBar:
    """One bar per phase of a run, updated by :meth:`update` after each chunk.

    A run is opened with :meth:`start` and the list of its phases (e.g. warm-up then
    sampling); :meth:`update` gives the transitions done since the start of the run, and the
    bar of an earlier phase is closed when the run moves past it. :meth:`close` ends the run
    with the exact summaries.
    """

    def __init__(self) -> None:
        self._bar = None
        self._phases: list[tuple[str, int]] = []
        self._current = -1
        self._live = False
        self._label = ""
        self._start = 0.0
        self._last: tuple[float, float, float] = (float("nan"),) * 3
        self._divergences = (0, 0)
        self._first = True

    def start(self, phases: Sequence[tuple[str, int]], live: bool, label: str = "") -> None:
        """Open a run going through ``phases`` (``(name, transitions)`` each, in order; phases
        of 0 transitions are skipped); ``live`` draws bars."""
        self._phases = [(str(name), int(total)) for name, total in phases]
        self._live = bool(live)
        self._label = label
        self._start = time.perf_counter()
        self._bar = None
        self._current = -1
        self._first = True
        self._open(self._next_phase(-1))

    def _next_phase(self, after: int) -> int:
        for i in range(after + 1, len(self._phases)):
            if self._phases[i][1] > 0:
                return i
        return len(self._phases)

    def _open(self, index: int) -> None:
        self._current = index
        if index >= len(self._phases) or not self._live:
            return
        name, total = self._phases[index]
        self._bar = make_bar(total, f"{name}{self._label}")

    def _finish(self, summary: str) -> None:
        """Close the current phase's bar, full."""
        if self._bar is None:
            return
        total = self._phases[self._current][1]
        self._bar.set_postfix_str(summary, refresh=False)
        self._bar.update(total - self._bar.n)
        self._bar.close()
        self._bar = None

    def update(
        self,
        done: int,
        divergences: Sequence[int],
        last: Sequence[float],
        summary: str | None = None,
    ) -> None:
        """After a chunk: ``done`` transitions of the run are finished; ``divergences`` the
        divergent transitions so far of each phase; ``last`` the step size, acceptance
        statistic and integration steps of the last transition; ``summary``: the line that
        closes the current phase if it ends here (default: the last step size and the
        phase's divergences)."""
        if not 0 <= self._current < len(self._phases):
            return
        self._last = tuple(float(x) for x in last)
        self._divergences = tuple(int(d) for d in divergences)
        offset = sum(total for _, total in self._phases[: self._current])
        while done > offset + self._phases[self._current][1]:  # moved past this phase
            offset += self._advance_phase()
            if self._current >= len(self._phases):
                return
        if self._bar is not None:
            if self._first:
                # the first chunk included compilation: the bar's clock starts after it
                self._bar.reset(total=self._phases[self._current][1])
                self._first = False
            step_size, accept_prob, num_steps = self._last
            parts = [
                f"step size {step_size:.2e}",
                f"acc. prob {accept_prob:.2f}",
                f"{num_steps:.0f} steps",
                f"{self._divergences[self._current]} divergences",
            ]
            self._bar.set_postfix_str(", ".join(parts), refresh=False)
            self._bar.update(done - offset - self._bar.n)
        later = self._next_phase(self._current) < len(self._phases)
        if later and done == offset + self._phases[self._current][1]:
            self._advance_phase(summary)  # the next bar's clock starts now

    def _advance_phase(self, summary: str | None = None) -> int:
        """Close the finished current phase, open the next; returns its length."""
        total = self._phases[self._current][1]
        if summary is None:
            summary = summary_line(self._last[0], self._divergences[self._current])
        self._finish(summary)
        self._open(self._next_phase(self._current))
        return total

    def close(self, summaries: Sequence[str] | None) -> None:
        """End the run: finish the open bars with the exact ``summaries`` (one per phase given
        to :meth:`start`), or without a display print one line per phase. ``None``: the run
        was interrupted; the open bar is left where it stopped."""
        elapsed = time.perf_counter() - self._start
        if summaries is None:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        elif self._live:
            while self._current < len(self._phases):
                self._finish(summaries[self._current])
                self._open(self._next_phase(self._current))
        else:
            shown = [i for i, (_, total) in enumerate(self._phases) if total > 0]
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
