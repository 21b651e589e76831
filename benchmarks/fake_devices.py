"""Fake CPU devices for the benchmarks' meshes (XLA splits the host CPU into ``count``).

Call :func:`force_host_devices` before JAX is imported; it is a no-op when ``XLA_FLAGS``
already asks for a device count (e.g. the test suite's 8). This module must not import JAX.
"""

from __future__ import annotations

import os


def force_host_devices(count: int) -> None:
    """Ask XLA for ``count`` host (CPU) devices unless ``XLA_FLAGS`` already sets a count."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()
