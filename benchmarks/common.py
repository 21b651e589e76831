"""Shared utilities of the jppl benchmarks (``benchmarks/*.py``).

Timing (warm-up, repeats, medians, round-robin interleaving of the compared libraries so that
machine load hits them alike), machine information, and writing the JSON / markdown results.

Import it from a benchmark script next to it::

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import ...  # noqa: E402
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax

__all__ = [
    "RESULTS_DIR",
    "CompileTime",
    "Timer",
    "block",
    "cpu_model",
    "fmt",
    "geomean",
    "interleaved",
    "load_average",
    "machine_info",
    "markdown_table",
    "measure",
    "stats",
    "time_call",
    "write_json",
    "write_markdown",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def block(x: Any) -> Any:
    """Wait until every array in the pytree ``x`` is computed; returns ``x``."""
    return jax.block_until_ready(x)


def time_call(fn: Callable, *args, **kwargs) -> tuple[float, Any]:
    """``(seconds, result)`` of ``fn(*args, **kwargs)``, waiting for its arrays to be computed."""
    start = time.perf_counter()
    out = block(fn(*args, **kwargs))
    return time.perf_counter() - start, out


class Timer:
    """``with Timer() as t: ...``; then ``t.seconds``."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = math.nan
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


class CompileTime:
    """``with CompileTime() as c: ...``; then ``c.seconds``: time JAX spent *tracing, lowering
    and compiling* inside the block (from :mod:`jax.monitoring` events; nested ``jit``\\ s are
    traced inside their caller and are not counted twice).

    ``c.by_event`` splits it into ``trace`` (jaxpr tracing), ``lower`` (jaxpr to MLIR) and
    ``compile`` (XLA backend compile). Blocks may be nested (each sees every event).
    """

    EVENTS = {
        "/jax/core/compile/jaxpr_trace_duration": "trace",
        "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
        "/jax/core/compile/backend_compile_duration": "compile",
    }
    _active: list[CompileTime] = []
    _registered = False

    @classmethod
    def _listener(cls, event: str, duration: float, **kwargs: Any) -> None:
        name = cls.EVENTS.get(event)
        if name is None:
            return
        for timer in cls._active:
            timer.seconds += duration
            timer.by_event[name] = timer.by_event.get(name, 0.0) + duration

    def __enter__(self) -> CompileTime:
        if not CompileTime._registered:
            jax.monitoring.register_event_duration_secs_listener(CompileTime._listener)
            CompileTime._registered = True
        self.seconds = 0.0
        self.by_event: dict[str, float] = {}
        CompileTime._active.append(self)
        return self

    def __exit__(self, *exc) -> None:
        CompileTime._active.remove(self)


def measure(fn: Callable, *args, **kwargs) -> tuple[dict[str, float], Any]:
    """Run ``fn(*args, **kwargs)`` (waiting for its arrays) and return ``(m, result)``.

    ``m`` has ``wall_s`` (elapsed), ``cpu_s`` (CPU time of this process, all threads: on a
    shared machine ``cpu_s / wall_s`` shows how much of the cores the run got), ``compile_s``
    (JAX tracing + lowering + compiling, see :class:`CompileTime`; split in
    ``compile_by_event``), ``exec_s`` (``wall_s - compile_s``) and ``load`` (1-minute load
    average at the end).
    """
    cpu0 = time.process_time()
    with CompileTime() as compiled:
        start = time.perf_counter()
        out = block(fn(*args, **kwargs))
        wall = time.perf_counter() - start
    load = load_average()
    m = {
        "wall_s": wall,
        "cpu_s": time.process_time() - cpu0,
        "compile_s": compiled.seconds,
        "exec_s": max(wall - compiled.seconds, 0.0),
        "compile_by_event": dict(compiled.by_event),
        "load": load[0] if load else math.nan,
    }
    return m, out


def interleaved(
    fns: Mapping[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Time each zero-argument callable ``repeats`` times, in round-robin order.

    Each round calls every function once (the order alternates between rounds, so neither
    always runs first), so a change of the machine's load affects all of them alike. The
    ``warmup`` first rounds are not recorded. Every result is waited for (``block``).

    Returns:
        ``{name: [seconds of each recorded call]}``.
    """
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            seconds, _ = time_call(fns[name])
            if r >= warmup:
                times[name].append(seconds)
    return times


def stats(seconds: Sequence[float]) -> dict[str, float]:
    """Median, min, max and interquartile range of a list of timings (seconds)."""
    xs = sorted(seconds)
    if not xs:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "iqr": math.nan, "n": 0}
    if len(xs) >= 2:
        q = statistics.quantiles(xs, n=4, method="inclusive")
        iqr = q[2] - q[0]
    else:
        iqr = 0.0
    return {
        "median": statistics.median(xs),
        "min": xs[0],
        "max": xs[-1],
        "iqr": iqr,
        "n": len(xs),
    }


def geomean(values: Sequence[float]) -> float:
    """Geometric mean of positive numbers (NaN if any is not positive)."""
    values = list(values)
    if not values or any(not (v > 0) for v in values):
        return math.nan
    return math.exp(sum(math.log(v) for v in values) / len(values))


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
# Writing results
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


def write_markdown(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (markdown) to ``path``; creates the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip() + "\n")
    return path
