"""Writing the benchmarks' results: machine information, the JSON and markdown files
(``benchmarks/results/<name>_cpu.json`` and ``.md``), tables and ratio columns."""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax

__all__ = [
    "RESULTS_DIR",
    "cpu_model",
    "fmt",
    "fmt_ratio",
    "geomean",
    "load_average",
    "machine_info",
    "markdown_table",
    "ratio",
    "traffic",
    "write_json",
    "write_markdown",
    "write_results",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------------------------------------
# Machine information
# ---------------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    """``os.getloadavg()`` (1, 5, 15 minutes) rounded, or ``None`` where unavailable."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    return getattr(mod, "__version__", None)


def machine_info(extra_packages: Sequence[str] = ()) -> dict[str, Any]:
    """Machine, software versions and load: recorded with every result file."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    devices = jax.devices()
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": _version("jaxlib"),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "load_average": load_average(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    for pkg in ("jppl", "numpyro", "optax", "flax", *extra_packages):
        info[pkg] = _version(pkg)
    return info


# ---------------------------------------------------------------------------------------------
# Result files
# ---------------------------------------------------------------------------------------------


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float):
        return None if not math.isfinite(x) else x
    if hasattr(x, "item") and getattr(x, "ndim", None) == 0:  # numpy / jax scalars
        return _jsonable(x.item())
    return x


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (non-finite floats as ``null``); creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")
    return path


def write_markdown(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (markdown) to ``path``; creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip() + "\n")
    return path


def write_results(stem: str | os.PathLike, results: Any, text: str) -> tuple[Path, Path]:
    """Write ``results`` to ``<stem>.json`` (:func:`write_json`) and ``text`` to ``<stem>.md``
    (:func:`write_markdown`); e.g. ``stem = RESULTS_DIR / "nuts_cpu"``. Returns both paths."""
    return write_json(f"{stem}.json", results), write_markdown(f"{stem}.md", text)


# ---------------------------------------------------------------------------------------------
# Tables and ratio columns
# ---------------------------------------------------------------------------------------------


def fmt(x: Any, digits: int = 3) -> str:
    """A number for a table: ``digits`` significant digits, ``-`` for missing/NaN."""
    if x is None:
        return "-"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "-"
        if x != 0 and (abs(x) >= 10**digits or abs(x) < 10 ** -(digits - 1)):
            return f"{x:.{digits - 1}e}" if abs(x) < 10**digits else f"{x:,.0f}"
        return f"{x:.{digits}g}"
    return str(x)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table (cells formatted with :func:`fmt`)."""
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    for row in rows:
        lines.append("| " + " | ".join(fmt(c) for c in row) + " |")
    return "\n".join(lines)


def ratio(a: float | None, b: float | None) -> float:
    """``a / b`` for a ratio column; NaN where either is missing or not finite, or ``b`` is not
    positive."""
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b) and b > 0):
        return math.nan
    return a / b


def geomean(values: Sequence[float]) -> float:
    """Geometric mean of positive numbers (NaN if any is not positive)."""
    values = list(values)
    if not values or any(not (v > 0) for v in values):
        return math.nan
    return math.exp(sum(math.log(v) for v in values) / len(values))


def fmt_ratio(x: float | None) -> str:
    """``1.23x``, or ``-`` when the ratio was not measured."""
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}x"


def traffic(row: Mapping[str, Any]) -> str:
    """The collectives of a compiled program (``collective_summary`` of
    :func:`benchmarks.timing.analyse_compiled`) as ``op xCOUNT (BYTES B), ...``."""
    parts = [f"{op} x{v['count']} ({v['bytes']} B)" for op, v in row["collective_summary"].items()]
    return ", ".join(parts) if parts else "none"
