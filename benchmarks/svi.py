"""SVI steps per second: jppl against NumPyro on the same models, guides, optimizer and data.

Run from the repository root::

    .venv/bin/python -m benchmarks.svi            # full run (a few minutes)
    .venv/bin/python -m benchmarks.svi --quick    # smoke run (about a minute)

Benchmarks (the model code is the same function for both libraries, given the library's
``sample``/``plate`` and distributions; models and data in :mod:`benchmarks.problems`):

* ``logreg``: Bayesian logistic regression, 10,000 synthetic observations (fixed seed), 20
  features plus an intercept; ``AutoNormal`` guide, ``Trace_ELBO(num_particles=1)``.
* ``bnn``: a Bayesian MLP 64 -> 32 (tanh) -> 10 on ``sklearn.datasets.load_digits`` (1797
  images, full batch), ``Normal(0, 1)`` priors on all weights and biases written as plain sample
  sites, categorical likelihood in a plate over the images; ``AutoNormal`` guide,
  ``Trace_ELBO(num_particles=8)``.

Both libraries use ``optax.adam(1e-2)`` (NumPyro through ``numpyro.optim.optax_to_numpyro``),
``AutoNormal(init_scale=0.1)`` and the *same* initial guide parameters (``init_params``), so
the losses of the two runs should agree up to Monte Carlo noise (the random streams differ).

Measured, for each library (the timed repetitions of the two libraries are interleaved):

* ``init_s``: ``svi.init`` on a fresh ``SVI`` (runs the autoguide's prototype).
* ``compile_s``: first call of ``jax.jit(svi.update)`` (trace + compile + one step), after a
  process-wide warm-up (full run; ``--quick`` estimates it from the scan's first call).
* ``scan``: steady-state steps/s of ``jax.jit`` of a ``lax.scan`` of ``K`` ``svi.update`` steps
  (no Python overhead per step); median over repetitions.
* ``run``: ``svi.run(key, N, ..., progress_bar=False)``, the user-facing path: ``run_cold_s``
  on a fresh ``SVI`` object (init + compile + N steps), and steps/s ``N / median`` of
  repeated calls on the same object (NumPyro's ``run`` compiles its scan again on every call;
  jppl caches its compiled loop on the ``SVI`` object).

Results: ``benchmarks/results/svi_cpu.json`` and ``benchmarks/results/svi_cpu.md`` (ratios are
jppl / NumPyro steps per second, > 1 means jppl is faster).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run by path: import the package from the root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from benchmarks.problems import bnn_model, digits, logreg_data, logreg_model
from benchmarks.report import (
    RESULTS_DIR,
    fmt_ratio,
    geomean,
    load_average,
    machine_info,
    markdown_table,
    ratio,
    write_results,
)
from benchmarks.timing import interleaved, stats, time_call

LEARNING_RATE = 1e-2
INIT_SCALE = 0.1


# ---------------------------------------------------------------------------------------------
# The two libraries behind one interface
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """What a benchmark needs of a library (the NumPyro-style API both expose)."""

    name: str
    pp: Any  # module with sample, plate
    dist: Any  # distributions module
    SVI: Any
    Trace_ELBO: Any
    AutoNormal: Any
    init_to_median: Any
    make_optimizer: Callable[[float], Any]
    log_density: Callable  # (model, args, kwargs, params) -> (log_joint, trace)


def jppl_backend() -> Backend:
    import jppl
    import jppl.distributions as dist
    from jppl.infer import SVI, Trace_ELBO, init_to_median, log_density
    from jppl.infer.autoguide import AutoNormal

    return Backend(
        name="jppl",
        pp=jppl,
        dist=dist,
        SVI=SVI,
        Trace_ELBO=Trace_ELBO,
        AutoNormal=AutoNormal,
        init_to_median=init_to_median,
        make_optimizer=lambda lr: optax.adam(lr),
        log_density=log_density,
    )


def numpyro_backend() -> Backend:
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import SVI, Trace_ELBO, init_to_median
    from numpyro.infer.autoguide import AutoNormal
    from numpyro.infer.util import log_density
    from numpyro.optim import optax_to_numpyro

    return Backend(
        name="numpyro",
        pp=numpyro,
        dist=dist,
        SVI=SVI,
        Trace_ELBO=Trace_ELBO,
        AutoNormal=AutoNormal,
        init_to_median=init_to_median,
        make_optimizer=lambda lr: optax_to_numpyro(optax.adam(lr)),
        log_density=log_density,
    )


def backends() -> list[Backend]:
    return [jppl_backend(), numpyro_backend()]


# ---------------------------------------------------------------------------------------------
# Problems
# ---------------------------------------------------------------------------------------------


@dataclass
class Problem:
    """A benchmark: model factory, data, particles, initial guide parameters, step counts."""

    name: str
    description: str
    make_model: Callable  # (pp, dist) -> model(*data)
    data: tuple
    num_particles: int
    latent_init: dict[str, np.ndarray]  # initial guide loc of each latent site
    scan_length: int  # K: steps per timed scan call
    scan_repeats: int
    run_steps: int  # N: steps per svi.run call
    run_repeats: int
    loop_length: int  # M: steps per timed Python loop of jit(svi.update)
    loop_repeats: int

    def init_params(self) -> dict[str, jax.Array]:
        """Constrained initial values of the AutoNormal parameters (same in both libraries)."""
        params = {}
        for site, loc in self.latent_init.items():
            params[f"{site}_auto_loc"] = jnp.asarray(loc, jnp.float32)
            params[f"{site}_auto_scale"] = jnp.full(np.shape(loc), INIT_SCALE, jnp.float32)
        return params


def logreg_problem(quick: bool, num_data: int = 10_000, num_features: int = 20) -> Problem:
    X, y = logreg_data(num_data, num_features, intercept=0.5)
    return Problem(
        name="logreg",
        description=(
            f"Bayesian logistic regression, {num_data} obs x {num_features} features, "
            "AutoNormal, Trace_ELBO(1)"
        ),
        make_model=logreg_model,
        data=(jnp.asarray(X), jnp.asarray(y)),
        num_particles=1,
        latent_init={
            "w": np.zeros(num_features, np.float32),
            "b": np.zeros((), np.float32),
        },
        scan_length=500 if quick else 1000,
        scan_repeats=5 if quick else 15,
        run_steps=1000 if quick else 2000,
        run_repeats=0 if quick else 3,
        loop_length=200,
        loop_repeats=7,
    )


def bnn_problem(quick: bool, hidden: int = 32, num_particles: int = 8) -> Problem:
    X, y = digits()
    d, c = X.shape[1], 10
    rng = np.random.default_rng(1)
    return Problem(
        name="bnn",
        description=(
            f"BNN MLP {d}->{hidden}(tanh)->{c} on load_digits ({X.shape[0]} images, full "
            f"batch), AutoNormal, Trace_ELBO({num_particles})"
        ),
        make_model=lambda pp, dist: bnn_model(pp, dist, hidden=hidden, num_classes=c),
        data=(jnp.asarray(X), jnp.asarray(y)),
        num_particles=num_particles,
        latent_init={
            "w1": (0.1 * rng.normal(size=(d, hidden))).astype(np.float32),
            "b1": np.zeros(hidden, np.float32),
            "w2": (0.1 * rng.normal(size=(hidden, c))).astype(np.float32),
            "b2": np.zeros(c, np.float32),
        },
        scan_length=25 if quick else 50,
        scan_repeats=3 if quick else 11,
        run_steps=100 if quick else 500,
        run_repeats=0 if quick else 2,
        loop_length=20,
        loop_repeats=5,
    )


PROBLEMS = {"logreg": logreg_problem, "bnn": bnn_problem}


# ---------------------------------------------------------------------------------------------
# Building and running SVI
# ---------------------------------------------------------------------------------------------


def build_svi(backend: Backend, problem: Problem):
    """``(svi, model, guide)`` of ``problem`` in ``backend``'s library (fresh objects)."""
    model = problem.make_model(backend.pp, backend.dist)
    guide = backend.AutoNormal(model, init_loc_fn=backend.init_to_median, init_scale=INIT_SCALE)
    svi = backend.SVI(
        model,
        guide,
        backend.make_optimizer(LEARNING_RATE),
        backend.Trace_ELBO(num_particles=problem.num_particles),
    )
    return svi, model, guide


def init_state(svi, problem: Problem, seed: int = 0):
    return svi.init(jax.random.key(seed), *problem.data, init_params=problem.init_params())


def make_scan(svi, length: int) -> Callable:
    """``jit``: ``(state, *data) -> (state, losses (length,))``, ``length`` ``svi.update``s."""

    def run(state, *data):
        def body(s, _):
            return svi.update(s, *data)

        return lax.scan(body, state, None, length=length)

    return jax.jit(run)


def loss_summary(losses) -> dict[str, float]:
    losses = np.asarray(losses, dtype=np.float64)
    tail = losses[-max(1, len(losses) // 10) :]
    return {
        "first_loss": float(np.mean(losses[: min(10, len(losses))])),
        "final_loss": float(np.mean(tail)),
        "final_loss_sd": float(np.std(tail)),
        "num_steps": len(losses),
    }


def warm_up(libs: list[Backend]) -> float:
    """Compile and run a tiny SVI step in each library (JAX's and the libraries' one-time costs
    are then not counted in the first benchmark's compile time)."""
    start = time.perf_counter()
    tiny = logreg_problem(quick=True, num_data=32, num_features=3)
    for backend in libs:
        svi, _, _ = build_svi(backend, tiny)
        state = init_state(svi, tiny)
        time_call(jax.jit(svi.update), state, *tiny.data)
    return time.perf_counter() - start


def bench_problem(problem: Problem, libs: list[Backend], quick: bool, log) -> dict[str, Any]:
    names = [b.name for b in libs]
    res: dict[str, dict[str, Any]] = {name: {} for name in names}
    data = problem.data

    # -- init and compile of svi.update (which library goes first alternates between the
    # benchmarks, and between this phase and the cold run below) -------------------------
    # then: a Python loop of the jitted update (per-step dispatch included)
    if not quick:
        loops: dict[str, dict] = {}
        for backend in libs if problem.name == "logreg" else libs[::-1]:
            svi, _, _ = build_svi(backend, problem)
            init_s, state = time_call(init_state, svi, problem)
            update = jax.jit(svi.update)
            compile_s, (state, _) = time_call(update, state, *data)
            # init_s depends on the order: both libraries share JAX's caches of eagerly
            # compiled ops (e.g. jax.random.normal per shape), so the second one gains.
            res[backend.name].update(init_s=init_s, compile_s=compile_s)
            loops[backend.name] = {"update": update, "state": state}
            log(
                f"  {backend.name:8s} init {init_s:6.2f}s  compile (first update) {compile_s:6.2f}s"
            )

        M = problem.loop_length

        def loop_steps(name):
            def call():
                cell = loops[name]
                state, loss = cell["state"], None
                for _ in range(M):
                    state, loss = cell["update"](state, *data)
                cell["state"] = state
                return loss

            return call

        times = interleaved({n: loop_steps(n) for n in names}, repeats=problem.loop_repeats)
        for name in names:
            st = stats(times[name])
            res[name]["loop"] = {
                "steps_per_call": M,
                "seconds": st,
                "steps_per_s": M / st["median"],
            }
            log(f"  {name:8s} python loop of jit(update): {M / st['median']:9.1f} steps/s")

    # -- steady state: jit(lax.scan(svi.update)) ------------------------------------------
    K = problem.scan_length
    cells: dict[str, dict] = {}
    for backend in libs:
        svi, _, _ = build_svi(backend, problem)
        init_s, state = time_call(init_state, svi, problem)
        scan = make_scan(svi, K)
        first_s, (state, losses) = time_call(scan, state, *data)
        cells[backend.name] = {"svi": svi, "scan": scan, "state": state, "losses": [losses]}
        res[backend.name]["scan_first_call_s"] = first_s
        if quick:
            res[backend.name]["init_s"] = init_s

    def scan_step(name):
        def call():
            cell = cells[name]
            cell["state"], losses = cell["scan"](cell["state"], *data)
            cell["losses"].append(losses)
            return losses

        return call

    load_before = load_average()
    times = interleaved({n: scan_step(n) for n in names}, repeats=problem.scan_repeats, warmup=1)
    for name in names:
        st = stats(times[name])
        r = res[name]
        r["scan"] = {
            "steps_per_call": K,
            "seconds": st,
            "steps_per_s": K / st["median"],
            "steps_per_s_best": K / st["min"],
        }
        if quick:  # compile estimated from the scan's first call
            r["compile_s"] = max(r["scan_first_call_s"] - st["median"], 0.0)
            r["compile_s_note"] = "estimated: first scan call minus a steady call"
        all_losses = np.concatenate([np.asarray(x) for x in cells[name]["losses"]])
        r["scan"]["losses"] = loss_summary(all_losses)
        log(
            f"  {name:8s} scan x{K}: {r['scan']['steps_per_s']:9.1f} steps/s "
            f"(median of {st['n']}, iqr {st['iqr'] / st['median']:.1%}), "
            f"loss after {len(all_losses)} steps {r['scan']['losses']['final_loss']:.2f}"
        )
    res_load = {"scan_load_before": load_before, "scan_load_after": load_average()}

    # -- user-facing path: svi.run ---------------------------------------------------------
    N = problem.run_steps
    run_objs: dict[str, Any] = {}
    run_results: dict[str, Any] = {}
    for backend in libs if problem.name != "logreg" else libs[::-1]:  # other order
        svi, _, _ = build_svi(backend, problem)
        cold_s, result = time_call(
            lambda svi=svi: svi.run(
                jax.random.key(1),
                N,
                *data,
                progress_bar=False,
                init_params=problem.init_params(),
            )
        )
        run_objs[backend.name] = svi
        run_results[backend.name] = result
        res[backend.name]["run_cold_s"] = cold_s
        log(f"  {backend.name:8s} run({N}) cold (init + compile + run) {cold_s:6.2f}s")

    def run_call(name):
        def call():
            result = run_objs[name].run(
                jax.random.key(1), N, *data, progress_bar=False, init_params=problem.init_params()
            )
            run_results[name] = result
            return result.losses

        return call

    # (skipped by --quick: NumPyro's run compiles again on every call)
    times = interleaved({n: run_call(n) for n in names}, repeats=problem.run_repeats, warmup=0)
    for name in names:
        st = stats(times[name])
        r = res[name]
        r["run"] = {
            "steps_per_call": N,
            "seconds": st,
            "steps_per_s": N / st["median"] if st["n"] else math.nan,
            "losses": loss_summary(run_results[name].losses),
        }
        if not st["n"]:
            continue
        log(
            f"  {name:8s} run({N}) warm: {r['run']['steps_per_s']:9.1f} steps/s "
            f"(median {st['median']:.2f}s of {st['n']}), "
            f"loss {r['run']['losses']['first_loss']:.2f} -> {r['run']['losses']['final_loss']:.2f}"
        )

    j, n = res["jppl"], res["numpyro"]
    out = {
        "description": problem.description,
        "num_particles": problem.num_particles,
        "scan_length": K,
        "run_steps": N,
        **res,
        "ratio": {
            "scan_steps_per_s": ratio(j["scan"]["steps_per_s"], n["scan"]["steps_per_s"]),
            "scan_steps_per_s_best": ratio(
                j["scan"]["steps_per_s_best"], n["scan"]["steps_per_s_best"]
            ),
            "run_steps_per_s": ratio(j["run"]["steps_per_s"], n["run"]["steps_per_s"]),
            "run_cold_speedup": ratio(n["run_cold_s"], j["run_cold_s"]),
            "compile_speedup": ratio(n["compile_s"], j["compile_s"]),
            "loop_steps_per_s": (
                ratio(j["loop"]["steps_per_s"], n["loop"]["steps_per_s"]) if "loop" in j else None
            ),
        },
        **res_load,
        "load_average_end": load_average(),
    }
    rt = out["ratio"]
    log(
        f"  ratio jppl/numpyro: scan {fmt_ratio(rt['scan_steps_per_s'])}, "
        f"run {fmt_ratio(rt['run_steps_per_s'])}, run cold {fmt_ratio(rt['run_cold_speedup'])}"
    )
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def markdown_report(results: dict[str, Any]) -> str:
    info = results["machine"]
    benches = results["benchmarks"]
    rows = []
    for name, b in benches.items():
        j, n, r = b["jppl"], b["numpyro"], b["ratio"]
        rows.append(
            [
                name,
                j["compile_s"],
                n["compile_s"],
                j["scan"]["steps_per_s"],
                n["scan"]["steps_per_s"],
                r["scan_steps_per_s"],
                r["scan_steps_per_s_best"],
                j["run"]["steps_per_s"],
                n["run"]["steps_per_s"],
                r["run_steps_per_s"],
                r["run_cold_speedup"],
                r["loop_steps_per_s"],
                f"{j['run']['losses']['final_loss']:.1f} / {n['run']['losses']['final_loss']:.1f}",
            ]
        )
    table = markdown_table(
        [
            "benchmark",
            "compile s jppl",
            "compile s numpyro",
            "scan steps/s jppl",
            "scan steps/s numpyro",
            "scan ratio",
            "scan ratio (best)",
            "run steps/s jppl",
            "run steps/s numpyro",
            "run ratio",
            "run cold ratio",
            "python-loop ratio",
            "loss after run jppl / numpyro",
        ],
        rows,
    )
    g = results["geomean"]
    lines = [
        "# SVI benchmark (CPU): jppl vs NumPyro",
        "",
        f"`{results['command']}` — {info['time']}",
        "",
        f"CPU: {info['cpu_model']} ({info['cpus_usable']} usable cores), jax {info['jax']}, "
        f"numpyro {info['numpyro']}, optax {info['optax']}; load average at start "
        f"{info['load_average']}, at end {results['load_average_end']}.",
        "",
        table,
        "",
        f"Geometric mean of the ratios (jppl / NumPyro steps per second, > 1: jppl faster): "
        f"scan {fmt_ratio(g['scan_steps_per_s'])} (best {fmt_ratio(g['scan_steps_per_s_best'])}), "
        f"run {fmt_ratio(g['run_steps_per_s'])}, run cold {fmt_ratio(g['run_cold_speedup'])}.",
        "",
        f"Target (>= 1.0x on each benchmark and >= 1.2x geometric mean, steady-state scan): "
        f"**{'met' if results['target_met'] else 'not met'}**.",
        "",
    ]
    for name, b in benches.items():
        lines.append(f"- `{name}`: {b['description']}.")
    lines += [
        "",
        "scan: `jax.jit(lax.scan(svi.update))` over K steps, median of interleaved repeats "
        "(best: ratio of the fastest repeats, less sensitive to the load of a shared machine). "
        "run: `svi.run(key, N, ..., progress_bar=False)` called again on the same `SVI` object "
        "(NumPyro compiles its scan on every `run` call, so its figure includes a compilation; "
        "jppl reuses its compiled loop); run cold: a first `run` on a fresh `SVI` object (init + "
        "compile + N steps), NumPyro's seconds / jppl's. python-loop: `jax.jit(svi.update)` "
        "called in a Python loop. compile: first call of `jax.jit(svi.update)`. Both "
        "libraries start from the same guide parameters; the losses are the mean of the last "
        "10% of the steps of the run.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (about a minute)")
    parser.add_argument(
        "--only", choices=sorted(PROBLEMS), action="append", help="run only these benchmarks"
    )
    parser.add_argument("--out", default=str(RESULTS_DIR), help="folder of the result files")
    parser.add_argument(
        "--name", default="svi_cpu", help="basename of the result files (default svi_cpu)"
    )
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, flush=True)

    start = time.perf_counter()
    info = machine_info()
    log(f"machine: {info['cpu_model']}, {info['cpus_usable']} cores, load {info['load_average']}")
    libs = backends()
    log(f"warm-up: {warm_up(libs):.1f}s")
    results: dict[str, Any] = {
        "command": "python benchmarks/svi.py" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "machine": info,
        "settings": {"optimizer": f"optax.adam({LEARNING_RATE})", "init_scale": INIT_SCALE},
        "benchmarks": {},
    }
    for name in args.only or list(PROBLEMS):
        problem = PROBLEMS[name](args.quick)
        log(f"{name}: {problem.description}")
        results["benchmarks"][name] = bench_problem(problem, libs, args.quick, log)

    benches = results["benchmarks"].values()
    scan_ratios = [b["ratio"]["scan_steps_per_s"] for b in benches]
    results["geomean"] = {
        "scan_steps_per_s": geomean(scan_ratios),
        "scan_steps_per_s_best": geomean([b["ratio"]["scan_steps_per_s_best"] for b in benches]),
        "run_steps_per_s": geomean([b["ratio"]["run_steps_per_s"] for b in benches]),
        "run_cold_speedup": geomean([b["ratio"]["run_cold_speedup"] for b in benches]),
    }
    results["target_met"] = bool(
        all(r >= 1.0 for r in scan_ratios) and results["geomean"]["scan_steps_per_s"] >= 1.2
    )
    results["load_average_end"] = load_average()
    results["wall_s"] = time.perf_counter() - start

    out = Path(args.out)
    write_results(out / args.name, results, markdown_report(results))
    log(
        f"geomean jppl/numpyro: scan {fmt_ratio(results['geomean']['scan_steps_per_s'])}, "
        f"run {fmt_ratio(results['geomean']['run_steps_per_s'])}, "
        f"run cold {fmt_ratio(results['geomean']['run_cold_speedup'])}; target "
        f"{'met' if results['target_met'] else 'not met'}; wall {results['wall_s']:.0f}s; "
        f"wrote {out / args.name}.json/.md"
    )
    return results


if __name__ == "__main__":
    main()
