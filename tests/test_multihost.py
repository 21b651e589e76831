"""Multi-host runs: 2 local processes x 2 CPU devices give the results of 1 process x 4 devices.

The workers (``tests/multihost_worker.py``) join through ``jppl.parallel.initialize`` with a
coordinator on 127.0.0.1 and gloo CPU collectives, load only their own rows of the data
(``process_local_array``), and run (a) the data-sharded log density and gradient of a logistic
regression, (b) SVI with the ELBO's particles split over all 4 devices, (c) NUTS with warm-up
adaptation and the data split over all 4 devices (bitwise equal to one process).
``jax.distributed`` is never initialized in the pytest process; each worker has short
init/heartbeat timeouts and is killed if the pair does not finish in time, so the test cannot
hang.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import multihost_worker as worker

NUM_PROCESSES = 2
TIMEOUT_S = 240
WORKER = Path(__file__).resolve().parent / "multihost_worker.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(tasks: list[str]) -> list[dict]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(i), str(NUM_PROCESSES), str(port), ",".join(tasks)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(NUM_PROCESSES)
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=TIMEOUT_S))
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.communicate()
        pytest.fail(f"multi-host workers did not finish in {TIMEOUT_S} s")
    results = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, f"worker failed (rc {proc.returncode}):\n{err[-4000:]}"
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert lines, f"worker printed no result:\n{out[-2000:]}\n{err[-2000:]}"
        results.append(json.loads(lines[-1][len("RESULT ") :]))
    return results


def _logreg_numpy(w: np.ndarray) -> tuple[float, np.ndarray]:
    """Log joint and gradient of the worker's logistic regression, in float64 NumPy."""
    x, y = (a.astype(np.float64) for a in worker.dataset())
    logits = x @ w
    value = np.sum(y * logits - np.logaddexp(0.0, logits))
    value += np.sum(-0.5 * w**2 - 0.5 * np.log(2 * np.pi))
    grad = x.T @ (y - 1 / (1 + np.exp(-logits))) - w
    return float(value), grad


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.slow  # about 90 s: two fresh JAX processes plus the reference runs
@pytest.mark.skipif(len(jax.devices()) < 4, reason="needs 4 (fake) devices for the reference")
def test_two_processes_match_one_process_with_four_devices():
    results = _launch(["logdensity", "svi", "nuts"])
    assert sorted(r["process_index"] for r in results) == list(range(NUM_PROCESSES))
    assert all(r["devices"] == 4 for r in results)

    ref_ld = worker.task_logdensity(4)
    ref_svi = worker.task_svi(4)
    ref_nuts = worker.task_nuts(4)
    draws = np.asarray(ref_nuts["w"], np.float64)
    assert draws.shape == (worker.NUTS_CHAINS, worker.NUTS_DRAWS, worker.N_FEAT)
    log_joint = np.vectorize(lambda c, i: _logreg_numpy(draws[c, i])[0])(
        *np.indices(draws.shape[:2])
    )
    assert _rel(ref_nuts["potential_energy"], -log_joint) <= 1e-5
    truth_value, truth_grad = _logreg_numpy(np.asarray(worker.W_EVAL, np.float64))
    assert abs(ref_ld["value"] - truth_value) <= 1e-5 * abs(truth_value)
    assert _rel(ref_ld["grad"], truth_grad) <= 1e-5

    for r in results:  # every process reads the same replicated results
        assert _rel(r["logdensity"]["value"], ref_ld["value"]) <= 1e-5
        assert _rel(r["logdensity"]["grad"], ref_ld["grad"]) <= 1e-5
        assert len(r["svi"]["losses"]) == worker.SVI_STEPS
        assert _rel(r["svi"]["losses"], ref_svi["losses"]) <= 1e-5
        for name, value in ref_svi["params"].items():
            assert _rel(r["svi"]["params"][name], value) <= 1e-5, name
        # NUTS with warm-up adaptation: bitwise the same (the data blocks are added in a fixed
        # order whatever the devices and processes)
        assert r["nuts"]["blocks"] == 8
        for name in (
            "w",
            "potential_energy",
            "num_steps",
            "last_position",
            "step_size",
            "inverse_mass_matrix",
        ):
            assert r["nuts"][name] == ref_nuts[name], name
        assert _rel(r["nuts"]["log_likelihood_y"], ref_nuts["log_likelihood_y"]) <= 1e-5
        assert r["nuts"]["observed_y"] == ref_nuts["observed_y"]  # to_arviz gathers the rows


@pytest.mark.slow  # about 60 s: two pairs of fresh JAX processes
@pytest.mark.skipif(len(jax.devices()) < 4, reason="needs 4 (fake) devices for the reference")
def test_svi_checkpoints_restore_onto_another_mesh(tmp_path, monkeypatch):
    """SVI states on 2 processes x 2 devices are saved: split over the devices
    (``shard_state=True``: every process writes its own shards, an Orbax directory) and
    replicated (process 0 writes an ``.npz``). Restored onto other meshes (2 processes as
    sample=2 x data=2; 1 process as data=4) and continued, they give the losses and params of
    an uninterrupted run."""
    from jppl import parallel

    monkeypatch.setenv(worker.CHECKPOINT_DIR_ENV, str(tmp_path))
    saved = _launch(["checkpoint_save"])
    restored = _launch(["checkpoint_restore"])
    ref = worker.task_checkpoint_reference(4)
    one = worker.task_checkpoint_restore(4, mesh=parallel.make_mesh(data=4))
    steps = worker.CKPT_STEPS
    paths = {"split": str(tmp_path / "split"), "replicated": str(tmp_path / "replicated.npz")}
    assert os.path.isdir(paths["split"]) and os.path.isfile(paths["replicated"])
    assert sorted(os.listdir(tmp_path)) == ["replicated.npz", "split"]  # no temporary left
    for name, path in paths.items():
        for r in saved:
            s = r["checkpoint_save"][name]
            assert s["path"] == path
            assert all(s["split"]) == (name == "split")  # split over both processes' devices
            assert _rel(s["losses"], ref["losses"][:steps]) <= 1e-6
        for r in [*(r["checkpoint_restore"][name] for r in restored), one[name]]:
            assert r["placed"] and r["step"] == steps
            assert all(r["split"]) == (name == "split")
            assert _rel(r["losses"], ref["losses"][steps:]) <= 1e-6
            for site, value in ref["params"].items():
                assert _rel(r["params"][site], value) <= 1e-6, site
