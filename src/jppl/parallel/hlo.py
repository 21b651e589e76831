"""Reading the cross-device collectives out of a compiled XLA program.

Used to check what a sharded step sends between devices: e.g. a data-parallel log density
must all-reduce scalars and gradients, never all-gather the data.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import numpy as np

__all__ = ["COLLECTIVE_OPS", "Collective", "collectives", "summarize_collectives"]

COLLECTIVE_OPS: tuple[str, ...] = (
    "all-reduce",
    "all-gather",
    "all-to-all",
    "reduce-scatter",
    "collective-permute",
    "collective-broadcast",
)

_DTYPE_BYTES = {
    "pred": 1,
    "s8": 1,
    "u8": 1,
    "s16": 2,
    "u16": 2,
    "f16": 2,
    "bf16": 2,
    "s32": 4,
    "u32": 4,
    "f32": 4,
    "s64": 8,
    "u64": 8,
    "f64": 8,
    "c64": 8,
    "c128": 16,
}
_OPS = "|".join(re.escape(op) for op in COLLECTIVE_OPS)
# `%name = <shape or (tuple of shapes)> <op>(` ; async pairs appear as `<op>-start(`.
_LINE = re.compile(rf"=\s+(\(.*?\)|\S+)\s+({_OPS})(-start)?\(")
_ARRAY = re.compile(r"([a-z]+[0-9]*)\[([0-9,]*)\]")


class Collective(NamedTuple):
    """One collective instruction: its ``op`` name, result ``shapes`` and result ``bytes``."""

    op: str
    shapes: tuple[str, ...]
    bytes: int


def _shape_bytes(shape_text: str) -> tuple[tuple[str, ...], int]:
    shapes, total = [], 0
    for dtype, dims in _ARRAY.findall(shape_text):
        if dtype not in _DTYPE_BYTES:
            continue
        size = int(np.prod([int(d) for d in dims.split(",") if d], dtype=np.int64))
        shapes.append(f"{dtype}[{dims}]")
        total += size * _DTYPE_BYTES[dtype]
    return tuple(shapes), total


def collectives(compiled: Any) -> list[Collective]:
    """The collectives of a compiled program (``jit(f).lower(...).compile()`` or its text).

    Returns:
        one :class:`Collective` per instruction, with the bytes of its result on one device
        (for an all-reduce: the size of the reduced buffer; for an all-gather: the gathered
        result).
    """
    text = compiled if isinstance(compiled, str) else compiled.as_text()
    found = []
    for match in _LINE.finditer(text):
        shapes, nbytes = _shape_bytes(match.group(1))
        found.append(Collective(match.group(2), shapes, nbytes))
    return found


def summarize_collectives(compiled: Any) -> dict[str, dict[str, int]]:
    """``{op: {"count": n, "bytes": total result bytes}}`` over the program's collectives."""
    summary: dict[str, dict[str, int]] = {}
    for c in collectives(compiled):
        entry = summary.setdefault(c.op, {"count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += c.bytes
    return summary
