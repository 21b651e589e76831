"""What the long-running loops share (``MCMC.run``, ``SVI.run``, ``jppl.nn.Trainer.fit``):
live progress bars, Ctrl-C that keeps the finished work, and the pacing of compiled chunks.

The loops run their steps in *chunks*: each chunk is one call of a compiled loop over a traced
number of steps, and between chunks the host updates the bar and checks for Ctrl-C. A chunk
lasts about :data:`CHUNK_SECONDS` once the speed is known (:class:`Pacer`), so the bar stays
live and an interrupt is honoured within a fraction of a second, while the host's work between
chunks (a dispatch and a small transfer, well under a millisecond) stays far below 1% of a run.

* **Progress** (:func:`is_interactive`, :class:`StepBar`): a tqdm bar on stderr in a terminal
  and in a Jupyter kernel (the ipywidgets bar when ipywidgets is installed, else the text bar,
  which Jupyter redraws in place); one plain line per phase otherwise (CI logs).
* **Interrupts** (:func:`interruptible`, :class:`RunInterrupted`): inside
  ``with interruptible() as stop_requested``, Ctrl-C (SIGINT, which is also how Jupyter
  interrupts a kernel) only sets a flag; the loop finishes its current chunk, keeps its state
  and raises :class:`RunInterrupted` (a ``KeyboardInterrupt``) carrying what was done. A second
  Ctrl-C raises ``KeyboardInterrupt`` at once.

tqdm is imported only when a bar is drawn.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "CHUNK_SECONDS",
    "Pacer",
    "RunInterrupted",
    "StepBar",
    "in_notebook",
    "interruptible",
    "is_interactive",
    "make_bar",
    "write_line",
]

#: Target wall time of one compiled chunk of a run loop (seconds).
CHUNK_SECONDS = 0.25


def in_notebook() -> bool:
    """Whether this process is a Jupyter (IPython) kernel."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:  # an unusual IPython: no kernel we know how to draw in
        return False


def is_interactive() -> bool:
    """Whether a live bar can be drawn: stderr is a terminal, or this is a Jupyter kernel."""
    if in_notebook():
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _tqdm_class() -> Any:
    """tqdm's widget bar in a kernel with ipywidgets, its text bar otherwise (tqdm.auto would
    warn in a kernel without ipywidgets before falling back to the text bar)."""
    if in_notebook():
        try:
            import ipywidgets  # noqa: F401
        except ImportError:
            pass
        else:
            from tqdm.notebook import tqdm

            return tqdm
    from tqdm.std import tqdm

    return tqdm


def make_bar(total: int, desc: str, *, leave: bool = True, mininterval: float = 0.1) -> Any:
    """A live tqdm bar on stderr (see :func:`_tqdm_class`)."""
    tqdm = _tqdm_class()
    return tqdm(
        total=total,
        desc=desc,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=leave,
        mininterval=mininterval,
    )


class StepBar:
    """A live bar over ``total`` steps, with a text postfix (e.g. the loss).

    Args:
        total: number of steps.
        desc: the bar's label.
        leave: keep the finished bar on screen (else it is erased when closed).
    """

    def __init__(self, total: int, desc: str, *, leave: bool = True):
        self._bar = make_bar(total, desc, leave=leave)

    def update(self, done: int, postfix: str) -> None:
        """Show ``done`` steps finished, and ``postfix``."""
        self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.update(done - self._bar.n)

    def close(self, postfix: str | None = None) -> None:
        """Close the bar, with a last ``postfix`` if given."""
        if postfix is not None:
            self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.close()


def write_line(line: str) -> None:
    """Print ``line`` on stderr without breaking an open bar."""
    from tqdm.std import tqdm

    tqdm.write(line, file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Interrupts
# ---------------------------------------------------------------------------------------------


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run after a finished chunk; what was done is kept.

    Attributes:
        result: what the run had finished (e.g. an ``SVIRunResult`` of the steps done), or
            ``None`` when the front end keeps it on its object (``MCMC``: ``last_state``,
            ``post_warmup_state``, ``get_samples()``, ``resume()``).
        done: steps (transitions) finished by this call.
        total: steps this call was to run.
    """

    def __init__(self, message: str, result: Any = None, *, done: int = 0, total: int = 0):
        super().__init__(message)
        self.result = result
        self.done = done
        self.total = total


@contextlib.contextmanager
def interruptible() -> Iterator[Callable[[], bool]]:
    """Within the block, Ctrl-C (SIGINT) requests a stop instead of raising.

    Yields ``stop_requested() -> bool``; the loop checks it between chunks. A second SIGINT
    while a stop is pending raises ``KeyboardInterrupt`` at once (an escape hatch if a chunk
    hangs). Outside the main thread (where Python cannot install signal handlers), or when
    SIGINT is ignored or handled outside Python, the block runs as usual and
    ``stop_requested`` is always ``False``. The previous handler is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous) and previous != signal.SIG_DFL:
        # SIGINT is ignored (SIG_IGN) or not installed by Python: leave it alone.
        yield lambda: False
        return
    requested = threading.Event()

    def handler(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    signal.signal(signal.SIGINT, handler)
    try:
        yield requested.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


# ---------------------------------------------------------------------------------------------
# Pacing of compiled chunks
# ---------------------------------------------------------------------------------------------


class Pacer:
    """Sizes of the compiled chunks of a run of ``total`` steps.

    The first chunk is ``first`` steps (it includes compilation, so its time is not used); each
    later chunk is sized from the speed measured on the previous ones to last about ``target``
    seconds, growing at most ``growth`` times per chunk (a short chunk's time is mostly fixed
    overhead and would understate the speed), and never more than ``cap`` steps or what is
    left. ``multiple`` rounds sizes up to a multiple (e.g. MCMC's thinning).

    Args:
        total: steps of the run.
        target: seconds per chunk once the speed is known.
        first: size of the first chunk.
        cap: largest chunk (``None``: no limit but ``total``).
        seconds_per_step: a speed measured before (e.g. by an earlier run of the same compiled
            loop): then the first chunk is sized from it too.
    """

    def __init__(
        self,
        total: int,
        *,
        target: float = CHUNK_SECONDS,
        first: int = 1,
        cap: int | None = None,
        growth: float = 8.0,
        seconds_per_step: float | None = None,
    ):
        self.total = int(total)
        self.done = 0
        self.target = float(target)
        self.cap = self.total if cap is None else max(1, int(cap))
        self.growth = float(growth)
        self.rate = seconds_per_step
        self._last = max(1, int(first))
        self._timed = 0  # chunks whose time is known to exclude compilation
        if seconds_per_step is not None:
            self._last = self._from_rate(seconds_per_step, limit=None)
            self._timed = 1

    def _from_rate(self, rate: float, limit: int | None) -> int:
        n = int(self.target / max(rate, 1e-9))
        if limit is not None:
            n = min(n, limit)
        return max(1, n)

    def next(self) -> int:
        """Steps of the next chunk (0 when the run is done)."""
        left = self.total - self.done
        return max(0, min(self._last, self.cap, left))

    def record(self, steps: int, seconds: float, *, compiled: bool = False) -> None:
        """Account a finished chunk of ``steps`` that took ``seconds`` (``compiled=True``: the
        time includes compilation and says nothing of the speed)."""
        self.done += int(steps)
        if compiled or steps <= 0:
            return
        rate = seconds / steps
        self.rate = rate if self.rate is None or self._timed == 0 else 0.5 * (self.rate + rate)
        self._timed += 1
        limit = int(max(1, steps) * self.growth)
        self._last = self._from_rate(self.rate, limit)
