"""Progress display shared by the run loops, on stderr: whether a live bar can be drawn, and a
tqdm bar over host-side steps (``SVI.run``, ``jppl.nn.Trainer.fit``). MCMC's bars, fed from
inside its compiled loop, build on :func:`is_interactive` (:mod:`jppl.mcmc.progress`).

tqdm is imported only when a bar is drawn.
"""

from __future__ import annotations

import sys

__all__ = ["StepBar", "is_interactive", "write_line"]


def is_interactive() -> bool:
    """Whether a live bar can be drawn (stderr is a terminal)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class StepBar:
    """A tqdm bar on stderr over ``total`` steps, with a text postfix (e.g. the loss).

    Args:
        total: number of steps.
        desc: the bar's label.
        leave: keep the finished bar on screen (else it is erased when closed).
    """

    def __init__(self, total: int, desc: str, *, leave: bool = True):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=leave)

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
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)
