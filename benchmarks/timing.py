"""Measuring inside one process: wall, CPU and compile time, interleaved repeats, statistics,
and XLA's figures of a compiled program (memory, FLOPs, collectives).

Interleaving: the compared functions take turns (round robin, the order alternating between
rounds), so that a change of the machine's load hits them alike.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from benchmarks.report import load_average

__all__ = [
    "CompileTime",
    "analyse_compiled",
    "block",
    "interleaved",
    "interleaved_wall_cpu",
    "measure",
    "stats",
    "time_call",
    "wall_per_call",
]


def block(x: Any) -> Any:
    """Wait until every array in the pytree ``x`` is computed; returns ``x``."""
    return jax.block_until_ready(x)


def time_call(fn: Callable, *args, **kwargs) -> tuple[float, Any]:
    """``(seconds, result)`` of ``fn(*args, **kwargs)``, waiting for its arrays to be computed."""
    start = time.perf_counter()
    out = block(fn(*args, **kwargs))
    return time.perf_counter() - start, out


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


def interleaved_wall_cpu(
    fns: Mapping[str, Callable[[], Any]], repeats: int, warmup: int = 1
) -> dict[str, tuple[list[float], list[float]]]:
    """Time each zero-argument callable ``repeats`` times, in round-robin order, recording the
    wall *and* the process CPU seconds of each call.

    Each round calls every function once (the order alternates between rounds, so neither
    always runs first), so a change of the machine's load affects all of them alike. The
    ``warmup`` first rounds are not recorded. Every result is waited for (:func:`block`). CPU
    time (all threads of this process) does not count the time spent waiting for a core on a
    loaded machine, so it is a second, load-robust view of the work a call costs.

    Returns:
        ``{name: (wall seconds, cpu seconds)}`` of the recorded calls.
    """
    names = list(fns)
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in names}
    for r in range(warmup + repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            cpu0 = time.process_time()
            wall, _ = time_call(fns[name])
            if r >= warmup:
                out[name][0].append(wall)
                out[name][1].append(time.process_time() - cpu0)
    return out


def interleaved(
    fns: Mapping[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """:func:`interleaved_wall_cpu`'s wall times: ``{name: [seconds of each recorded call]}``."""
    return {name: wall for name, (wall, _) in interleaved_wall_cpu(fns, repeats, warmup).items()}


def wall_per_call(fn: Callable, args: Sequence[Any], reps: int, inner: int) -> float:
    """Median seconds of one call of ``fn(*args)`` (``inner`` calls per timed repetition, after
    one untimed call)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(inner):
            out = fn(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


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


def analyse_compiled(compiled: Any) -> dict[str, Any]:
    """Per-device figures of a compiled program (``jax.jit(f).lower(...).compile()``).

    ``temp_bytes``, ``argument_bytes`` and ``output_bytes`` (``memory_analysis()``), ``flops``
    (``cost_analysis()``), and the collectives (all-reduce, all-gather, ... with their result
    bytes) from :func:`jppl.parallel.collectives`: each as a record in ``collectives`` and
    counted per op in ``collective_summary``.
    """
    from jppl import parallel

    mem = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    return {
        "temp_bytes": int(mem.temp_size_in_bytes),
        "argument_bytes": int(mem.argument_size_in_bytes),
        "output_bytes": int(mem.output_size_in_bytes),
        "flops": float(cost["flops"]),
        "collectives": [c._asdict() for c in parallel.collectives(compiled)],
        "collective_summary": parallel.summarize_collectives(compiled),
    }
