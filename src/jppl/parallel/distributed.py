"""Multi-process (multi-host) runs: start-up and reading results on every process.

Every process runs the same program. Call :func:`initialize` first (before any other JAX
call), build the mesh over ``jax.devices()`` (all devices of all processes), give each process
only its own rows of the data with :func:`jppl.parallel.process_local_array`, and run inference
with ``mesh=``. Replicated results (SVI params, losses) can be read on every process;
:func:`gather` brings a sharded array to every host.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

__all__ = ["gather", "initialize", "is_coordinator", "process_count", "process_index"]


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: int | Sequence[int] | None = None,
    *,
    initialization_timeout: int = 300,
    heartbeat_timeout_seconds: int = 100,
    cpu_collectives: str | None = "gloo",
) -> None:
    """Connect this process to the others (wraps ``jax.distributed.initialize``).

    Call it once per process, before any other JAX computation. With every argument ``None``,
    JAX detects the cluster (SLURM, Open MPI, Cloud TPU, Kubernetes, ...). On CPU-only
    machines, cross-process collectives need ``cpu_collectives`` (``"gloo"``, the default here).

    Args:
        coordinator_address: ``"host:port"`` of process 0's coordination service.
        num_processes: total number of processes.
        process_id: this process's index in ``0 .. num_processes - 1``.
        local_device_ids: the local devices this process uses (default: all).
        initialization_timeout: seconds to wait for every process to connect; on timeout JAX
            aborts the process (it is not a Python exception).
        heartbeat_timeout_seconds: seconds without a heartbeat after which a peer counts as
            dead (and the survivors abort).
        cpu_collectives: ``jax_cpu_collectives_implementation`` to set (``None``: leave it).
    """
    if cpu_collectives is not None:
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
        initialization_timeout=initialization_timeout,
        heartbeat_timeout_seconds=heartbeat_timeout_seconds,
    )


def process_index() -> int:
    """Index of this process (0 with a single process)."""
    return jax.process_index()


def process_count() -> int:
    """Number of processes (1 without :func:`initialize`)."""
    return jax.process_count()


def is_coordinator() -> bool:
    """True on process 0 (e.g. to write files or print once)."""
    return jax.process_index() == 0


def gather(tree: Any) -> Any:
    """Every array of ``tree`` as a full NumPy array on *every* process.

    Fully replicated and single-process arrays are read directly; arrays sharded across
    processes are all-gathered (``multihost_utils.process_allgather``). Every process must
    call it (it is a collective when arrays span processes).
    """

    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable or x.is_fully_replicated:
            return np.asarray(x)
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree_util.tree_map(one, tree)
