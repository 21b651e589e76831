"""Fresh-interpreter runs of the benchmarks, and their fake CPU devices.

* :func:`force_host_devices`: XLA splits the host CPU into fake devices (set before JAX starts);
* :func:`run_worker`: one unit of work (a posterior, a warm-up scheme) in a fresh Python
  process, ``python -m MODULE --worker ARGS... OUT_PATH``; the worker writes its result record
  to ``OUT_PATH`` as JSON, and a crash or a timeout becomes a failure record instead;
* :func:`run_python_json`: a short program in a fresh interpreter that prints one JSON value.

This module must not import JAX (:func:`force_host_devices` only works before JAX starts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
"""The repository root (the folder holding the ``benchmarks`` package)."""

STDERR_TAIL = 4000
"""Characters of a failed worker's stderr kept in its failure record."""


def force_host_devices(count: int) -> None:
    """Ask XLA for ``count`` host (CPU) devices unless ``XLA_FLAGS`` already sets a count (e.g.
    the test suite's 8). Call it before JAX is imported."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def is_worker(argv: Sequence[str]) -> bool:
    """Whether a benchmark's command line asks for a worker run (``--worker ...``)."""
    return list(argv[:1]) == ["--worker"]


def run_worker(
    module: str,
    args: Sequence[str],
    identity: Mapping[str, Any],
    timeout: float | None = None,
    **failure_extra: Any,
) -> dict[str, Any]:
    """Run ``python -m module --worker *args OUT_PATH`` in a fresh interpreter.

    The worker writes its result record to ``OUT_PATH`` (JSON) and exits 0; that record is
    returned. A crash (non-zero exit or no record) or a timeout gives instead ``{**identity,
    "status": "error" | "timeout", "passed": False, "returncode", "stderr_tail", **failure_extra}``.
    Either way ``process_s`` is added: the worker's wall time, imports and compilation included.
    The repository root goes first on the worker's ``PYTHONPATH`` (``benchmarks`` imports from
    any working directory; a ``PYTHONPATH`` set by the caller, e.g. to a frozen copy of jppl,
    comes next).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out_path = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", module, "--worker", *args, str(out_path)]
        paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        start = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
            returncode, stderr = proc.returncode, proc.stderr
            status = "ok" if returncode == 0 and out_path.exists() else "error"
        except subprocess.TimeoutExpired as e:
            returncode, status = None, "timeout"
            stderr = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        process_s = time.perf_counter() - start
        if status == "ok":
            result = json.loads(out_path.read_text())
        else:
            result = {
                **identity,
                "status": status,
                "passed": False,
                "returncode": returncode,
                "stderr_tail": stderr[-STDERR_TAIL:],
                **failure_extra,
            }
    result["process_s"] = process_s
    return result


def error_line(record: Mapping[str, Any]) -> str:
    """The exception line of a failed worker's ``stderr_tail`` (else its last line)."""
    lines = [ln.strip() for ln in record.get("stderr_tail", "").strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if ":" in line and (head.endswith(("Error", "Exception")) or head == "KeyboardInterrupt"):
            return line
    return lines[-1] if lines else ""


def run_python_json(code: str) -> Any:
    """Run ``python -c code`` in a fresh interpreter and parse what it printed as JSON (its
    stdout must be one JSON value); a non-zero exit raises ``CalledProcessError``."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)
