"""NUTS with enumerated discrete sites: jppl against NumPyro (with funsor), side by side.

Run from the repository root::

    .venv/bin/python -m benchmarks.enumeration            # about 5 minutes on 2 CPU cores
    .venv/bin/python -m benchmarks.enumeration --quick    # smoke run (about 2 minutes)
    .venv/bin/python -m benchmarks.enumeration --grad-only --problems hmm  # gradient tables only

Both libraries get the same model (written once per library below, with the library's own
``sample``/``plate``/``factor``/``scan`` and distributions), the same data and the same
settings; each sums the discrete sites out by itself (``MCMC(NUTS(model))`` enumerates discrete
latent sites with ``enumerate_support`` in both). Problems:

1. ``mixture``: a 1-D Gaussian mixture, K = 3 components, N = 1000 points (fixed seed, weights
   (0.5, 0.3, 0.2), locations (-3, 0, 3), scale 1). Priors: ``weights ~ Dirichlet(1)``,
   ``scale ~ HalfNormal(2)``, ordered locations with a Normal(0, 10) density (Stan's
   ``ordered[K] locs; locs ~ normal(0, 10)``: ``ImproperUniform(ordered_vector)`` plus a
   ``factor``, so that chains cannot switch labels), ``z ~ Categorical(weights)`` in a plate,
   enumerated.
2. ``hmm``: a K = 3-state HMM with Normal(locs[z], 1) emissions, T = 500 steps written with each
   library's ``scan`` (first state drawn from row 0 of the transition matrix), rows of the
   transition matrix ``Dirichlet(1)``, emission locations ordered with a Normal(0, 10) density;
   the hidden state enumerated.

For each problem, library and seed (``--seeds``): a fresh process (:func:`run_worker`) runs
``MCMC(NUTS(model), num_chains=2, chain_method="vectorized")`` with ``--num-warmup`` and
``--num-samples`` (500 + 500; ``--quick``: 100 + 100, one seed). Recorded (definitions in the
markdown report): ``process_s`` (the worker's wall time, imports included), ``run_s`` (building
``MCMC`` and ``run`` until the draws are on the host: compilation and sampling, no imports),
``compile_s`` (JAX tracing, lowering and compiling inside ``run_s``), the leapfrog steps of the
sampling phase, divergences, and the draws of the continuous parameters, from which this process
computes for both libraries with the same functions (:mod:`jppl.diagnostics`): the smallest bulk
ESS over all coordinates (``ess_bulk``, draws grouped by chain), ESS/s (``min_ess / run_s``,
and ``min_ess / (run_s - compile_s)``), the posterior means and their Monte Carlo standard
errors (``mcse_mean``). Correctness: for each seed, the largest ``|mean_jppl - mean_numpyro| /
sqrt(mcse_jppl^2 + mcse_numpyro^2)`` over the coordinates.

A second table: the time of one jitted ``grad`` of each library's potential energy (the
enumerated, unconstrained negative log density of ``initialize_model``) at the same
unconstrained point (:func:`unconstrained_point`), in a fresh process per library, with the
time of that ``initialize_model`` call (it runs the model eagerly to find an initial point);
the two potentials' values and gradients at that point are recorded to check they agree.

Results: ``benchmarks/results/enumeration_cpu.json`` and ``.md``; ratios are jppl / NumPyro
(ESS/s: above 1 means jppl is faster; gradient time: below 1 means jppl is faster).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run by path: import the package from the root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from benchmarks.report import (
    RESULTS_DIR,
    fmt,
    fmt_ratio,
    geomean,
    machine_info,
    markdown_table,
    ratio,
    write_results,
)
from benchmarks.workers import error_line, is_worker, run_worker

LIBRARIES = ("jppl", "numpyro")
K = 3
MIX_N, MIX_WEIGHTS, MIX_LOCS, MIX_SCALE = 1000, (0.5, 0.3, 0.2), (-3.0, 0.0, 3.0), 1.0
HMM_T = 500
HMM_TRANS = ((0.8, 0.1, 0.1), (0.1, 0.8, 0.1), (0.15, 0.15, 0.7))
HMM_LOCS = (-2.0, 0.0, 2.0)
DATA_SEED = 0
GRAD_REPS, GRAD_INNER = 15, 50


# ---------------------------------------------------------------------------------------------
# Data and models
# ---------------------------------------------------------------------------------------------


def mixture_data(size: int = MIX_N, seed: int = DATA_SEED) -> np.ndarray:
    """``x`` (size,) float32: points from the true mixture (NumPy generator ``seed``)."""
    rng = np.random.default_rng(seed)
    z = rng.choice(K, size=size, p=MIX_WEIGHTS)
    return (np.asarray(MIX_LOCS)[z] + MIX_SCALE * rng.normal(size=size)).astype(np.float32)


def hmm_data(size: int = HMM_T, seed: int = DATA_SEED) -> np.ndarray:
    """``y`` (size,) float32: emissions of the true HMM (the first state from row 0)."""
    rng = np.random.default_rng(seed)
    trans, z, ys = np.asarray(HMM_TRANS), 0, []
    for _ in range(size):
        z = rng.choice(K, p=trans[z])
        ys.append(HMM_LOCS[z] + rng.normal())
    return np.asarray(ys, np.float32)


def backend(lib: str) -> SimpleNamespace:
    """One library's modules and functions under common names: ``ppl`` (``sample``, ``plate``,
    ``factor``), ``dist``, ``constraints``, ``scan``, ``MCMC``, ``NUTS``, ``initialize_model``,
    ``enum_log_density(model, args, params)`` (the log joint with the discrete sites summed
    out, at constrained ``params``) and ``enum_potential(model, args, params)`` (its negative in
    the unconstrained space, Jacobians included, at unconstrained ``params``)."""
    if lib == "jppl":
        import jppl as ppl
        import jppl.distributions as dist
        from jppl.contrib.control_flow import scan
        from jppl.contrib.funsor import config_enumerate, enum, log_density
        from jppl.distributions import constraints
        from jppl.infer import MCMC, NUTS, initialize_model, potential_energy

        def enum_potential(model: Callable, args: tuple, params: dict) -> Any:
            return potential_energy(enumerated(model), args, {}, params)
    elif lib == "numpyro":
        import numpyro as ppl
        import numpyro.distributions as dist
        from numpyro.contrib.control_flow import scan
        from numpyro.contrib.funsor import config_enumerate, enum, log_density
        from numpyro.distributions import constraints
        from numpyro.infer import MCMC, NUTS
        from numpyro.infer.util import initialize_model, potential_energy

        def enum_potential(model: Callable, args: tuple, params: dict) -> Any:
            return potential_energy(enumerated(model), args, {}, params, enum=True)
    else:
        raise ValueError(f"library must be one of {LIBRARIES}, got {lib!r}")

    def enumerated(model: Callable) -> Callable:
        return enum(config_enumerate(model), first_available_dim=-2)

    def enum_log_density(model: Callable, args: tuple, params: dict) -> Any:
        return log_density(enumerated(model), args, {}, params)[0]

    return SimpleNamespace(
        name=lib,
        ppl=ppl,
        dist=dist,
        constraints=constraints,
        scan=scan,
        MCMC=MCMC,
        NUTS=NUTS,
        initialize_model=initialize_model,
        enum_log_density=enum_log_density,
        enum_potential=enum_potential,
    )


def _ordered_locs(b: SimpleNamespace, name: str) -> Any:
    """``name``: K ordered locations with a Normal(0, 10) density (flat on the ordered cone, plus
    a factor)."""
    import jax.numpy as jnp

    locs = b.ppl.sample(name, b.dist.ImproperUniform(b.constraints.ordered_vector, (), (K,)))
    b.ppl.factor(f"{name}_prior", jnp.sum(b.dist.Normal(0.0, 10.0).log_prob(locs)))
    return locs


def make_mixture(b: SimpleNamespace) -> Callable:
    """The mixture model ``model(x)`` with ``x`` (N,), in library ``b``."""
    import jax.numpy as jnp

    def mixture(x):
        weights = b.ppl.sample("weights", b.dist.Dirichlet(jnp.ones(K)))
        scale = b.ppl.sample("scale", b.dist.HalfNormal(2.0))
        locs = _ordered_locs(b, "locs")
        with b.ppl.plate("data", x.shape[0]):
            z = b.ppl.sample("z", b.dist.Categorical(weights))
            b.ppl.sample("x", b.dist.Normal(locs[z], scale), obs=x)

    return mixture


HMM_LENGTHS = (250, 500, 1000)
"""The lengths of the gradient-scaling table."""


def make_hmm(b: SimpleNamespace) -> Callable:
    """The HMM ``model(y)`` with ``y`` (T,), in library ``b`` (its ``scan``)."""
    import jax.numpy as jnp

    def hmm(y):
        trans = b.ppl.sample("trans", b.dist.Dirichlet(jnp.ones((K, K))).to_event(1))
        locs = _ordered_locs(b, "locs")

        def step(z_prev, y_t):
            z = b.ppl.sample("z", b.dist.Categorical(trans[z_prev]))
            b.ppl.sample("y", b.dist.Normal(locs[z], 1.0), obs=y_t)
            return z, None

        b.scan(step, 0, y)

    return hmm


@dataclass(frozen=True)
class Problem:
    """One benchmark problem: its data, model builder and continuous parameters."""

    name: str
    data: Callable[..., np.ndarray]  # (size=default, seed=DATA_SEED) -> observations
    make_model: Callable[[SimpleNamespace], Callable]
    params: tuple[str, ...]  # continuous latent sites (the ESS and mean columns)
    unconstrained_shapes: dict[str, tuple[int, ...]]


PROBLEMS = {
    "mixture": Problem(
        "mixture",
        mixture_data,
        make_mixture,
        ("weights", "scale", "locs"),
        {"weights": (K - 1,), "scale": (), "locs": (K,)},
    ),
    "hmm": Problem(
        "hmm",
        hmm_data,
        make_hmm,
        ("trans", "locs"),
        {"trans": (K, K - 1), "locs": (K,)},
    ),
}


def unconstrained_point(problem: Problem, seed: int = 0) -> dict[str, np.ndarray]:
    """A fixed point in the unconstrained space (float32): ``N(0, 0.5)`` values, where the
    ordered locations' first coordinate is -1 (so they sit near the data)."""
    rng = np.random.default_rng(seed)
    point = {
        name: (0.5 * rng.normal(size=shape)).astype(np.float32)
        for name, shape in problem.unconstrained_shapes.items()
    }
    point["locs"][0] = -1.0
    return point


def potential_and_grad(
    lib: str, problem: Problem, size: int | None = None
) -> tuple[Callable, Callable]:
    """``(potential_fn, jit(grad(potential_fn)))`` of ``problem`` in ``lib`` (from the library's
    ``initialize_model``: the enumerated, unconstrained potential energy), on ``size``
    observations (default: the problem's)."""
    import jax
    import jax.numpy as jnp

    b = backend(lib)
    data = problem.data() if size is None else problem.data(size)
    info = b.initialize_model(
        jax.random.PRNGKey(0),
        problem.make_model(b),
        model_args=(jnp.asarray(data),),
    )
    return info.potential_fn, jax.jit(jax.grad(info.potential_fn))


# ---------------------------------------------------------------------------------------------
# Workers (one fresh process each)
# ---------------------------------------------------------------------------------------------


def _sample_worker(argv: Sequence[str]) -> dict[str, Any]:
    problem_name, lib, seed, chains, warmup, draws = argv
    start = time.perf_counter()
    import jax
    import jax.numpy as jnp

    b = backend(lib)
    from benchmarks.timing import CompileTime

    problem = PROBLEMS[problem_name]
    data = jnp.asarray(problem.data())
    model = problem.make_model(b)
    imports_s = time.perf_counter() - start
    with CompileTime() as compiled:
        t0 = time.perf_counter()
        mcmc = b.MCMC(
            b.NUTS(model),
            num_warmup=int(warmup),
            num_samples=int(draws),
            num_chains=int(chains),
            chain_method="vectorized",
            progress_bar=False,
        )
        mcmc.run(jax.random.PRNGKey(int(seed)), data, extra_fields=("num_steps", "diverging"))
        samples = jax.device_get(mcmc.get_samples(group_by_chain=True))
        run_s = time.perf_counter() - t0
    fields = jax.device_get(mcmc.get_extra_fields(group_by_chain=True))
    steps = np.asarray(fields["num_steps"], np.float64)
    return {
        "problem": problem_name,
        "lib": lib,
        "seed": int(seed),
        "chains": int(chains),
        "warmup": int(warmup),
        "draws": int(draws),
        "imports_s": imports_s,
        "run_s": run_s,
        "compile_s": compiled.seconds,
        "sampling_steps": float(steps.sum()),
        "steps_per_draw": float(steps.mean()),
        "divergences": int(np.asarray(fields["diverging"]).sum()),
        "samples": {k: np.asarray(samples[k], np.float64).tolist() for k in problem.params},
    }


def _grad_worker(argv: Sequence[str]) -> dict[str, Any]:
    problem_name, lib, reps, inner, *size = argv
    import jax
    import jax.numpy as jnp

    from benchmarks.timing import CompileTime, wall_per_call

    problem = PROBLEMS[problem_name]
    point = {k: jnp.asarray(v) for k, v in unconstrained_point(problem).items()}
    t0 = time.perf_counter()
    potential, grad = potential_and_grad(lib, problem, int(size[0]) if size else None)
    init_s = time.perf_counter() - t0
    with CompileTime() as compiled:
        g = jax.block_until_ready(grad(point))
    seconds = wall_per_call(grad, (point,), reps=int(reps), inner=int(inner))
    return {
        "problem": problem_name,
        "lib": lib,
        "size": int(size[0]) if size else None,
        "potential": float(jax.jit(potential)(point)),
        "grad": {k: np.asarray(v, np.float64).ravel().tolist() for k, v in g.items()},
        "init_s": init_s,
        "compile_s": compiled.seconds,
        "grad_us": seconds * 1e6,
    }


def _worker(argv: Sequence[str]) -> None:
    kind, *rest, out = argv
    record = _sample_worker(rest) if kind == "sample" else _grad_worker(rest)
    with open(out, "w") as f:
        json.dump(record, f)


# ---------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------


def summarize(record: dict[str, Any]) -> dict[str, Any]:
    """A sampling record with its draws replaced by their statistics (same functions for both
    libraries): ``min_ess`` (smallest bulk ESS), ``ess_per_s``, ``ess_per_s_exec`` (without
    compilation), ``ess_per_grad`` (per leapfrog step of the sampling phase), ``mean`` and
    ``mcse`` (flattened over the parameters, in ``params`` order)."""
    from jppl.diagnostics import ess_bulk, mcse_mean

    out = {k: v for k, v in record.items() if k != "samples"}
    columns = []
    for draws in record["samples"].values():
        x = np.asarray(draws, np.float64)
        columns.append(x.reshape(x.shape[:2] + (-1,)))
    flat = np.concatenate(columns, axis=-1)  # (chains, draws, coordinates)
    ess = np.asarray(ess_bulk(flat), np.float64)
    # a simplex row's last coordinate is 1 - the others: still a coordinate of its own here
    min_ess = float(np.nanmin(ess))
    out["min_ess"] = min_ess
    out["ess_per_s"] = ratio(min_ess, record["run_s"])
    out["ess_per_s_exec"] = ratio(min_ess, record["run_s"] - record["compile_s"])
    out["ess_per_grad"] = ratio(min_ess, record["sampling_steps"])
    out["mean"] = flat.mean((0, 1)).tolist()
    out["mcse"] = np.asarray(mcse_mean(flat), np.float64).tolist()
    return out


def mean_distance(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Largest ``|mean_a - mean_b| / sqrt(mcse_a^2 + mcse_b^2)`` over the coordinates."""
    ma, mb = np.asarray(a["mean"]), np.asarray(b["mean"])
    se = np.sqrt(np.asarray(a["mcse"]) ** 2 + np.asarray(b["mcse"]) ** 2)
    return float(np.max(np.abs(ma - mb) / se))


def _median(values: Sequence[float]) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(values) if values else math.nan


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if is_worker(argv):
        _worker(argv[1:])
        return {}
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 + 100 draws, one seed")
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--num-chains", type=int, default=2)
    parser.add_argument("--num-warmup", type=int, default=None, help="default 500 (quick: 100)")
    parser.add_argument("--num-samples", type=int, default=None, help="default 500 (quick: 100)")
    parser.add_argument("--seeds", type=int, default=None, help="default 3 (quick: 1)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker")
    parser.add_argument(
        "--grad-only",
        action="store_true",
        help="only the gradient timings (no sampling, about a minute); the report is printed, "
        "and written only where --out is given",
    )
    parser.add_argument("--out", default=None, help="default benchmarks/results/enumeration_cpu")
    args = parser.parse_args(argv)
    out = args.out or (None if args.grad_only else str(RESULTS_DIR / "enumeration_cpu"))
    quick = args.quick
    warmup = args.num_warmup or (100 if quick else 500)
    draws = args.num_samples or (100 if quick else 500)
    seeds = args.seeds or (1 if quick else 3)

    runs: list[dict[str, Any]] = []
    for name in [] if args.grad_only else args.problems:
        for seed in range(seeds):
            for lib in LIBRARIES:
                identity = {"problem": name, "lib": lib, "seed": seed}
                rec = run_worker(
                    "benchmarks.enumeration",
                    ["sample", name, lib, str(seed), str(args.num_chains), str(warmup), str(draws)],
                    identity,
                    timeout=args.timeout,
                )
                rec = summarize(rec) if "samples" in rec else rec
                print(
                    f"{name} {lib} seed {seed}: {rec.get('status', 'ok')}, "
                    f"{fmt(rec.get('run_s'))} s, min ESS {fmt(rec.get('min_ess'))}"
                    + (f" ({error_line(rec)})" if "stderr_tail" in rec else ""),
                    flush=True,
                )
                runs.append(rec)
    grads: list[dict[str, Any]] = []
    reps, inner = (3, 10) if quick else (GRAD_REPS, GRAD_INNER)
    for name in args.problems:
        for lib in LIBRARIES:
            identity = {"problem": name, "lib": lib}
            grads.append(
                run_worker(
                    "benchmarks.enumeration",
                    ["grad", name, lib, str(reps), str(inner)],
                    identity,
                    timeout=args.timeout,
                )
            )

    # the HMM's gradient against its length (the enumerated scan must cost linear time)
    scaling = []
    if "hmm" in args.problems:
        for length in HMM_LENGTHS:
            for lib in LIBRARIES:
                scaling.append(
                    run_worker(
                        "benchmarks.enumeration",
                        ["grad", "hmm", lib, str(reps), str(inner), str(length)],
                        {"problem": "hmm", "lib": lib, "size": length},
                        timeout=args.timeout,
                    )
                )

    def find(records, **key):
        for r in records:
            if all(r.get(k) == v for k, v in key.items()) and "status" not in r:
                return r
        return None

    # per seed: the two libraries' means in MCSE units, and the ESS/s ratios
    pairs = []
    for name in args.problems:
        for seed in range(seeds):
            j, n = (
                find(runs, problem=name, lib="jppl", seed=seed),
                find(runs, problem=name, lib="numpyro", seed=seed),
            )
            if j is None or n is None:
                continue
            z = mean_distance(j, n)
            j["max_z_vs_other"] = n["max_z_vs_other"] = z
            pairs.append(
                {
                    "problem": name,
                    "seed": seed,
                    "max_z": z,
                    "ratio_ess_per_s": ratio(j["ess_per_s"], n["ess_per_s"]),
                    "ratio_ess_per_s_exec": ratio(j["ess_per_s_exec"], n["ess_per_s_exec"]),
                    "ratio_ess_per_grad": ratio(j["ess_per_grad"], n["ess_per_grad"]),
                }
            )
    summary = []
    for name in args.problems:
        ps = [p for p in pairs if p["problem"] == name]
        per_lib = {
            lib: [r for r in runs if r["problem"] == name and r["lib"] == lib and "min_ess" in r]
            for lib in LIBRARIES
        }
        row = {"problem": name, "seeds_compared": len(ps)}
        for lib, rs in per_lib.items():
            row[f"{lib}_ess_per_s"] = _median([r["ess_per_s"] for r in rs])
            row[f"{lib}_run_s"] = _median([r["run_s"] for r in rs])
            row[f"{lib}_compile_s"] = _median([r["compile_s"] for r in rs])
            row[f"{lib}_divergences"] = sum(r["divergences"] for r in rs)
        for key in ("ratio_ess_per_s", "ratio_ess_per_s_exec", "ratio_ess_per_grad"):
            row[key] = geomean([p[key] for p in ps])
        row["max_z"] = max((p["max_z"] for p in ps), default=math.nan)
        summary.append(row)
    grad_rows = []
    for name in args.problems:
        j, n = find(grads, problem=name, lib="jppl"), find(grads, problem=name, lib="numpyro")
        row = {"problem": name}
        if j is not None and n is not None:
            row.update(
                jppl_us=j["grad_us"],
                numpyro_us=n["grad_us"],
                ratio=ratio(j["grad_us"], n["grad_us"]),
                jppl_compile_s=j["compile_s"],
                numpyro_compile_s=n["compile_s"],
                jppl_init_s=j["init_s"],
                numpyro_init_s=n["init_s"],
                potential_rel_diff=abs(j["potential"] - n["potential"]) / abs(n["potential"]),
                grad_max_abs_diff=max(
                    float(np.max(np.abs(np.asarray(j["grad"][k]) - np.asarray(n["grad"][k]))))
                    for k in j["grad"]
                ),
            )
        grad_rows.append(row)

    settings = {
        "num_chains": args.num_chains,
        "chain_method": "vectorized",
        "num_warmup": warmup,
        "num_samples": draws,
        "seeds": seeds,
        "quick": quick,
        "mixture": {"N": MIX_N, "K": K, "weights": MIX_WEIGHTS, "locs": MIX_LOCS},
        "hmm": {"T": HMM_T, "K": K, "trans": HMM_TRANS, "locs": HMM_LOCS},
        "grad_timing": {"reps": reps, "inner": inner},
    }
    results = {
        "machine": machine_info(extra_packages=("funsor",)),
        "settings": settings,
        "summary": summary,
        "pairs": pairs,
        "runs": runs,
        "grads": grads,
        "grad_summary": grad_rows,
        "hmm_scaling": scaling,
    }
    text = report_text(results)
    if out is not None:
        write_results(out, results, text)
    print(text)
    return results


def report_text(results: dict[str, Any]) -> str:
    """The markdown report of :func:`main`'s ``results``."""
    s, m = results["settings"], results["machine"]
    summary_rows = [
        [
            r["problem"],
            r["jppl_ess_per_s"],
            r["numpyro_ess_per_s"],
            fmt_ratio(r["ratio_ess_per_s"]),
            fmt_ratio(r["ratio_ess_per_s_exec"]),
            fmt_ratio(r["ratio_ess_per_grad"]),
            f"{fmt(r['jppl_run_s'])} / {fmt(r['numpyro_run_s'])}",
            f"{fmt(r['jppl_compile_s'])} / {fmt(r['numpyro_compile_s'])}",
            f"{r['jppl_divergences']} / {r['numpyro_divergences']}",
            r["max_z"],
        ]
        for r in results["summary"]
    ]
    run_rows = [
        [
            r["problem"],
            r["lib"],
            r["seed"],
            r.get("process_s"),
            r.get("run_s"),
            r.get("compile_s"),
            r.get("min_ess"),
            r.get("ess_per_s"),
            r.get("ess_per_s_exec"),
            r.get("steps_per_draw"),
            r.get("divergences"),
            r.get("max_z_vs_other"),
        ]
        if "status" not in r
        else [
            r["problem"],
            r["lib"],
            r["seed"],
            r.get("process_s"),
            f"{r['status']}: {error_line(r)}",
        ]
        for r in results["runs"]
    ]
    grad_rows = [
        [
            r["problem"],
            r.get("jppl_us"),
            r.get("numpyro_us"),
            fmt_ratio(r.get("ratio")),
            f"{fmt(r.get('jppl_compile_s'))} / {fmt(r.get('numpyro_compile_s'))}",
            f"{fmt(r.get('jppl_init_s'))} / {fmt(r.get('numpyro_init_s'))}",
            r.get("potential_rel_diff"),
            r.get("grad_max_abs_diff"),
        ]
        for r in results["grad_summary"]
    ]
    return "\n\n".join(
        [
            "# NUTS with enumerated discrete sites: jppl vs NumPyro (funsor)",
            f"`python -m benchmarks.enumeration{' --quick' if s['quick'] else ''}`, {m['time']}, "
            f"{m['cpu_model']} ({m['cpus_usable']} usable cores), jax {m['jax']}, NumPyro "
            f"{m['numpyro']}, funsor {m['funsor']}, load average {m['load_average']}. "
            f'{s["num_chains"]} chains (`chain_method="vectorized"`), {s["num_warmup"]} warm-up '
            f"+ {s['num_samples']} draws, {s['seeds']} seed(s) per library, a fresh process "
            f"each. Mixture: N = {s['mixture']['N']}, K = {K}; HMM: T = {s['hmm']['T']}, K = {K}.",
            "## Summary (medians over seeds; ratios jppl / NumPyro, geometric mean over seeds)",
            markdown_table(
                [
                    "problem",
                    "jppl ESS/s",
                    "NumPyro ESS/s",
                    "ESS/s ratio",
                    "ratio excl. compile",
                    "ESS/grad ratio",
                    "run s (jppl / NumPyro)",
                    "compile s",
                    "divergences",
                    "max z (means)",
                ],
                summary_rows,
            ),
            "ESS: smallest bulk ESS over the coordinates of the continuous parameters "
            "(`jppl.diagnostics.ess_bulk`, draws grouped by chain, the same function for both "
            "libraries). `run s`: from building `MCMC` to the draws on the host (compilation, "
            "warm-up and sampling; no imports); ESS/s = min ESS / run s; `excl. compile`: min "
            "ESS / (run s - compile s); ESS/grad: per leapfrog step of the sampling phase. "
            "`max z`: the largest |mean_jppl - mean_NumPyro| / sqrt(mcse_jppl^2 + "
            "mcse_NumPyro^2) over the coordinates (`mcse_mean`), same seed, worst seed: about "
            "3 or less when both sample the same posterior.",
            "## Runs",
            markdown_table(
                [
                    "problem",
                    "library",
                    "seed",
                    "process s",
                    "run s",
                    "compile s",
                    "min ESS",
                    "ESS/s",
                    "ESS/s excl. compile",
                    "leapfrog steps / draw",
                    "divergences",
                    "max z vs other",
                ],
                run_rows,
            ),
            "`process s`: the worker's wall time (interpreter start, imports, data, compilation, "
            "sampling).",
            "## Gradient of the potential energy (one jitted `grad`, one point, "
            f"{s['grad_timing']['reps']} x {s['grad_timing']['inner']} calls, median)",
            markdown_table(
                [
                    "problem",
                    "jppl us",
                    "NumPyro us",
                    "ratio",
                    "grad compile s (jppl / NumPyro)",
                    "initialize_model s",
                    "potential rel. diff",
                    "grad max abs diff",
                ],
                grad_rows,
            ),
            *_scaling_section(results.get("hmm_scaling", [])),
        ]
    )


def _scaling_section(records: list[dict[str, Any]]) -> list[str]:
    """The HMM gradient against its length: time per call and per step, each library."""
    if not records:
        return []
    ok = {(r["lib"], r["size"]): r["grad_us"] for r in records if "grad_us" in r}
    rows = []
    for length in HMM_LENGTHS:
        j, n = ok.get(("jppl", length)), ok.get(("numpyro", length))
        rows.append(
            [
                length,
                j,
                None if j is None else j / length,
                n,
                None if n is None else n / length,
                fmt_ratio(ratio(j, n)) if j is not None and n is not None else "-",
            ]
        )
    first, last = HMM_LENGTHS[0], HMM_LENGTHS[-1]
    growth = {
        lib: ok[(lib, last)] / ok[(lib, first)]
        for lib in LIBRARIES
        if (lib, last) in ok and (lib, first) in ok
    }
    note = (
        f"Growth from T = {first} to T = {last} ({last // first}x the steps): "
        + ", ".join(f"{lib} {v:.2f}x" for lib, v in growth.items())
        + " (linear cost: at most the steps' ratio; a fixed part makes it smaller)."
    )
    return [
        "## HMM: gradient time against the length (the enumerated `scan`)",
        markdown_table(
            ["T", "jppl us", "jppl us / step", "NumPyro us", "NumPyro us / step", "ratio"],
            rows,
        ),
        note,
    ]


if __name__ == "__main__":
    main()
