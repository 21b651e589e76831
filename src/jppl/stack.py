"""The effect-handler stack, the only global mutable state of jppl.

Handlers (:class:`jppl.primitives.Messenger`) push themselves here while active; primitives send
their messages through it. It sits in its own module, below :mod:`jppl.distributions` and
:mod:`jppl.primitives`, so that both can read it without importing each other.

A handler that only provides context (the mesh of :func:`jppl.parallel.use_mesh`) sets the
class attribute ``passive = True``: it does not make the code around it "a model".
"""

from __future__ import annotations

from typing import Any

__all__ = ["HANDLER_STACK", "inside_model", "innermost"]

HANDLER_STACK: list[Any] = []
"""Active handlers, outermost first."""


def inside_model() -> bool:
    """Whether a model is running: some active handler is not passive."""
    return any(not getattr(handler, "passive", False) for handler in HANDLER_STACK)


def innermost(attribute: str) -> Any | None:
    """The innermost active handler that has ``attribute``, or ``None``."""
    for handler in reversed(HANDLER_STACK):
        if hasattr(handler, attribute):
            return handler
    return None
