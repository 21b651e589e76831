"""Scaling of jppl.parallel over devices: memory, FLOPs and cross-device traffic per step.

Run from the repository root (it starts 8 fake CPU devices unless XLA_FLAGS is already set)::

    .venv/bin/python -m benchmarks.parallel            # full run (a few minutes)
    .venv/bin/python -m benchmarks.parallel --quick    # fewer timing repetitions

Two workloads, each on D = 1, 2, 4 and 8 devices (D = 1 is the plain path, without a mesh):

* ``bnn_sample``: one ``SVI.update`` step of a Bayesian MLP 64 -> 32 (tanh) -> 10 on
  ``sklearn.datasets.load_digits`` (1797 images), ``AutoNormal`` guide,
  ``Trace_ELBO(num_particles=16)``, with the particles split over the mesh's ``sample`` axis.
* ``logreg_data``: the value and gradient of the log density of a covertype-scale logistic
  regression (581,012 x 54 features + intercept, float32; synthetic values, fixed seed) with
  the observations split over the ``data`` axis. 581,012 is not divisible by 8, so the data
  are padded to 581,016 rows and the 4 padded rows masked out (``pad_to_multiple`` +
  ``handlers.mask``), for every D alike.

For each, from XLA's compiled program (per device): temporary memory
(``memory_analysis().temp_size_in_bytes``), argument bytes, FLOPs (``cost_analysis()``), and
the collectives (all-reduce / all-gather / ... with their result bytes, parsed from
``compiled.as_text()``); the targets are temp and FLOPs at D = 8 at most 1.15 / 8 of D = 1, a
reduction of the log density and gradient (never a gather of the data) on ``data``, and one
reduction of the gradient on ``sample``. Wall time per step on 1 and 2 devices is recorded as
information only: fake CPU devices share the machine's cores (see
``/work/shared/notes/jax-multidevice-on-cpu.md``), so it is not a speed-up measurement.

Results: ``benchmarks/results/parallel_cpu.json`` and ``benchmarks/results/parallel_cpu.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run by path: import the package from the root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

if __name__ == "__main__":
    from benchmarks.workers import force_host_devices

    force_host_devices(8)

import argparse
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding

import jppl
import jppl.distributions as dist
from benchmarks.problems import COVTYPE_F, COVTYPE_N, bnn_model, covtype_like, digits
from benchmarks.report import (
    RESULTS_DIR,
    machine_info,
    markdown_table,
    ratio,
    traffic,
    write_results,
)
from benchmarks.timing import analyse_compiled, wall_per_call
from jppl import parallel
from jppl.infer import log_density
from jppl.model.blocked import blocked_potential_energy
from jppl.parallel.blocks import BlockPlan
from jppl.vi import SVI, Trace_ELBO
from jppl.vi.autoguide import AutoNormal

DEVICE_COUNTS = (1, 2, 4, 8)
TARGET = 1.15  # at D devices, per-device temp memory and FLOPs <= TARGET / D of D = 1
NUM_PARTICLES = 16

# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------

bnn = bnn_model(jppl, dist, plate="N", shard="data")
"""Bayesian MLP 64 -> 32 (tanh) -> 10 with N(0, 1) priors; the image plate is data-shardable."""


def logreg(x, y, valid):
    w = jppl.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with jppl.plate("N", x.shape[0], shard="data"), jppl.handlers.mask(mask=valid):
        jppl.sample("y", dist.BernoulliLogits(x @ w), obs=y)


def logreg_value_and_grad(mesh, plan: BlockPlan | None = None):
    """The log density's value and gradient: XLA's reduction (``plan=None``) or, as ``MCMC``
    computes it on a mesh, the data blocks of ``plan`` added in a fixed order."""

    def fn(w, x, y, valid):
        with parallel.use_mesh(mesh):
            if plan is not None:
                return jax.value_and_grad(
                    lambda w: -blocked_potential_energy(logreg, (x, y, valid), {}, {"w": w}, plan)
                )(w)
            return jax.value_and_grad(
                lambda w: log_density(logreg, (x, y, valid), {}, {"w": w})[0]
            )(w)

    return jax.jit(fn)


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------


def mesh_for(axis: str, d: int):
    return None if d == 1 else parallel.make_mesh(**{axis: d})


def bench_bnn(reps: int) -> list[dict[str, Any]]:
    x, y = digits()
    rows = []
    for d in DEVICE_COUNTS:
        mesh = mesh_for("sample", d)
        svi = SVI(
            bnn,
            AutoNormal(bnn, init_scale=0.1),
            optax.adam(1e-2),
            Trace_ELBO(num_particles=NUM_PARTICLES),
            mesh=mesh,
        )
        state = svi.init(jax.random.key(0), x, y)
        compiled = jax.jit(svi.update).lower(state, x, y).compile()
        row = {"devices": d, **analyse_compiled(compiled)}
        if d <= 2:
            row["wall_s_per_step"] = wall_per_call(compiled, (state, x, y), reps, 20)
        rows.append(row)
        print(f"bnn_sample D={d}: temp {row['temp_bytes']}, flops {row['flops']:.4g}", flush=True)
    return rows


def bench_logreg(reps: int, blocks: int = 0) -> list[dict[str, Any]]:
    n_pad = -(-COVTYPE_N // max(DEVICE_COUNTS)) * max(DEVICE_COUNTS)
    w = jnp.zeros(COVTYPE_F, jnp.float32) + 0.01
    rows = []
    host = None
    name = f"logreg_data_blocks{blocks}" if blocks else "logreg_data"
    for d in DEVICE_COUNTS:
        plan = None
        if blocks:  # blocks need a mesh, also on one device
            mesh = parallel.make_mesh(data=d, devices=jax.devices()[:d])
            plan = BlockPlan("data", blocks, n_pad, (0, 0, 0))
        else:
            mesh = mesh_for("data", d)
        fn = logreg_value_and_grad(mesh, plan)

        def spec(shape, dtype, mesh=mesh):
            sharding = (
                None
                if mesh is None
                else NamedSharding(mesh, parallel.dim_spec(len(shape), 0, "data"))
            )
            return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

        compiled = fn.lower(
            w,
            spec((n_pad, COVTYPE_F), jnp.float32),
            spec((n_pad,), jnp.float32),
            spec((n_pad,), jnp.bool_),
        ).compile()
        row = {"devices": d, "rows": COVTYPE_N, "padded_rows": n_pad, **analyse_compiled(compiled)}
        if blocks:  # XLA counts the loop body (one block) once; the loop runs 8 / D times
            row["flops_one_block"] = row["flops"]
            row["flops"] = row["flops"] * (blocks // d)
        if d <= 2:
            if host is None:
                (xh, yh), valid = parallel.pad_to_multiple(covtype_like(COVTYPE_N), 8)
                host = (xh, yh, valid)
            # On the devices before timing (host arrays would be copied on every call).
            data = jax.device_put(host) if mesh is None else parallel.shard_along(host, mesh)
            row["wall_s_per_step"] = wall_per_call(compiled, (w, *data), reps, 5)
            del data
        rows.append(row)
        print(f"{name} D={d}: temp {row['temp_bytes']}, flops {row['flops']:.4g}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def add_ratios(rows: list[dict[str, Any]]) -> None:
    base = rows[0]
    for row in rows:
        d = row["devices"]
        row["temp_ratio"] = ratio(row["temp_bytes"], base["temp_bytes"])
        row["flops_ratio"] = ratio(row["flops"], base["flops"])
        row["meets_target"] = bool(
            row["temp_ratio"] <= TARGET / d and row["flops_ratio"] <= TARGET / d
        )


def table(rows: list[dict[str, Any]]) -> str:
    header = [
        "D",
        "temp MiB",
        "temp x D",
        "GFLOP",
        "FLOPs x D",
        "args MiB",
        "collectives",
        "wall ms/step",
        "<= 1.15/D",
    ]
    body = [
        [
            r["devices"],
            r["temp_bytes"] / 2**20,
            r["temp_ratio"] * r["devices"],
            r["flops"] / 1e9,
            r["flops_ratio"] * r["devices"],
            r["argument_bytes"] / 2**20,
            traffic(r),
            1e3 * r["wall_s_per_step"] if "wall_s_per_step" in r else "-",
            "yes" if r["meets_target"] else "NO",
        ]
        for r in rows
    ]
    return markdown_table(header, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer timing repetitions")
    args = parser.parse_args()
    if len(jax.devices()) < max(DEVICE_COUNTS):
        raise SystemExit(f"needs {max(DEVICE_COUNTS)} devices, found {len(jax.devices())}")
    reps = 3 if args.quick else 7
    results = {
        "machine": machine_info(("scikit-learn",)),
        "target": f"per-device temp memory and FLOPs at D devices <= {TARGET}/D of D=1",
        "bnn_sample": bench_bnn(reps),
        "logreg_data": bench_logreg(reps),
        "logreg_data_blocks8": bench_logreg(reps, blocks=8),
    }
    for key in ("bnn_sample", "logreg_data", "logreg_data_blocks8"):
        add_ratios(results[key])
    load = results["machine"]["load_average"]
    text = f"""# jppl.parallel on fake CPU devices

Generated by `benchmarks/parallel.py` ({results["machine"]["time"]}, jax
{results["machine"]["jax"]}, {results["machine"]["cpu_count"]} CPUs, load average {load}).
Per-device figures from XLA's compiled program; "x D" columns are the ratio to D = 1 times D
(1.0 = perfect 1/D scaling; the target is <= {TARGET}). Collectives: ops in the compiled
program with their per-device result bytes. Wall time (1 and 2 devices only) is information,
not a target: fake devices share the same 2 cores.

## BNN SVI step, S = {NUM_PARTICLES} particles split over `sample`

{table(results["bnn_sample"])}

## Covertype-scale logistic regression gradient ({COVTYPE_N:,} x {COVTYPE_F}), rows over `data`

{table(results["logreg_data"])}

## The same gradient as `MCMC` computes it on a mesh: 8 data blocks added in a fixed order

Each device runs the per-block program on its 8 / D blocks in a loop and the blocks' values and
gradients are all-gathered and added in block order, so the result is bitwise the same for
every D (see `jppl.model.blocked`). XLA's cost analysis counts the body of that loop once:
the FLOPs column is the per-device FLOPs of one block's program times the 8 / D blocks. The
loop copies the rows of the block it works on (XLA:CPU does not feed a slice to a matrix
product in place), so the temporary memory is one block (N / 8 rows) on every D < 8: the
price of bitwise invariance, below the data each device holds (args). At D = 8 each device
holds one block and nothing is copied. `MCMC(..., data_blocks=0)` uses the all-reduce above.

{table(results["logreg_data_blocks8"])}
"""
    write_results(RESULTS_DIR / "parallel_cpu", results, text)
    print(text)


if __name__ == "__main__":
    main()
