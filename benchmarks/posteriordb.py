"""posteriordb correctness benchmark: jppl NUTS against 21 Stan reference posteriors.

Run from the repository root::

    .venv/bin/python -m benchmarks.posteriordb                      # all 21 (long: hours on CPU)
    .venv/bin/python -m benchmarks.posteriordb --models arK-arK,sblri-blr
    .venv/bin/python -m benchmarks.posteriordb --quick              # smoke run, 2 x 300/300
    .venv/bin/python -m benchmarks.posteriordb --models NAME --update  # rerun one, merge results

For each posterior in ``benchmarks/posteriordb/data`` (models in
``benchmarks/posteriordb_models.py``) the script runs jppl's NUTS, ``num_chains=4`` chains of
1000 warm-up and 1000 kept draws, ``chain_method="vectorized"``, a fixed seed, and compares
every parameter element of ``reference.json`` (10 x 1000 thinned Stan draws) with the jppl
draws:

* **mean**: ``z = (mean_jppl - mean_ref) / sqrt(mcse_jppl^2 + mcse_ref^2)`` must satisfy
  ``|z| <= 4``; ``mcse_jppl`` is :func:`jppl.diagnostics.mcse_mean` of the ``(chains, draws)``
  array (ESS-based, not ``sd / sqrt(n)``);
* **sd**: ``|sd_jppl / sd_ref - 1| <= 0.10``.

A posterior passes when every element passes both checks. Recorded besides, per posterior:
max R-hat and min bulk / tail ESS of the compared quantities, divergences, maximum-tree-depth
hits, mean acceptance statistic, leapfrog steps per draw, the settings used and the wall time
of compile + warm-up + sampling (the ``MCMC`` object is built and run in a fresh process).

Each posterior runs in its own subprocess (``--worker``: :func:`benchmarks.workers.run_worker`),
so a crash or an out-of-memory error hits one posterior only, and float64 is switched on
(``jax_enable_x64``) only for the posteriors whose settings ask for it (see
:data:`MODEL_SETTINGS`).

Settings: every posterior starts from :data:`DEFAULT_SETTINGS` (NumPyro's NUTS defaults:
``target_accept_prob=0.8``, diagonal mass matrix, ``max_tree_depth=10``, Stan's windowed
adaptation, ``init_to_uniform``). :data:`MODEL_SETTINGS` lists the per-posterior departures with
the reason for each (known hard geometry, as a NumPyro user would tune it); the pass criteria
are never changed. ``--defaults`` ignores those departures (except the float64 switch) to show
what the defaults give. ``eight_schools-eight_schools_centered`` is always run through its
spec's ``reparam_model()`` (``LocScaleReparam(centered=0)`` on ``theta``).

Results: ``benchmarks/results/posteriordb_cpu.json`` (per posterior and per parameter element)
and ``benchmarks/results/posteriordb_cpu.md`` (one row per posterior). ``--quick`` and
``--defaults`` write ``posteriordb_cpu_quick.*`` / ``posteriordb_cpu_defaults.*`` instead. The
files are rewritten after every posterior; ``--update`` replaces the named posteriors' entries
in existing files (run with the same chains / draws / seed) instead of starting new ones.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run by path: import the package from the root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchmarks.report import (
    RESULTS_DIR,
    fmt,
    load_average,
    machine_info,
    write_json,
    write_markdown,
    write_results,
)
from benchmarks.workers import error_line, is_worker, run_worker

# ---------------------------------------------------------------------------------------------
# Pass criteria (never loosened per posterior)
# ---------------------------------------------------------------------------------------------

MEAN_Z_MAX = 4.0
"""``|mean_jppl - mean_ref| <= MEAN_Z_MAX * sqrt(mcse_jppl^2 + mcse_ref^2)``."""

SD_REL_MAX = 0.10
"""``|sd_jppl - sd_ref| <= SD_REL_MAX * sd_ref``."""

# ---------------------------------------------------------------------------------------------
# Run settings
# ---------------------------------------------------------------------------------------------

FULL_RUN = {"num_chains": 4, "num_warmup": 1000, "num_samples": 1000}
QUICK_RUN = {"num_chains": 2, "num_warmup": 300, "num_samples": 300}
SEED = 0
CHAIN_METHOD = "vectorized"

DEFAULT_SETTINGS: dict[str, Any] = {
    "target_accept_prob": 0.8,
    "dense_mass": False,
    "max_tree_depth": 10,
    "adaptation": "stan",
    "init_strategy": "uniform",
    "x64": False,
}
"""NumPyro's NUTS defaults (``init_to_uniform``, diagonal mass, Stan windowed adaptation), in
float32 (JAX's default)."""

MODEL_SETTINGS: dict[str, dict[str, Any]] = {
    # Latent GP with a 1e-10 diagonal jitter: in float32 the kernel's rounding error exceeds
    # its smallest eigenvalues and the Cholesky factor is NaN (posteriordb_models.py then falls
    # back to a larger, approximate jitter), so this posterior runs in float64 like the Stan
    # reference.
    "gp_pois_regr-gp_pois_regr": {
        "x64": True,
        "why": "exact 1e-10 GP jitter needs float64 (float32 uses an approximate larger jitter)",
    },
}
"""Per-posterior departures from :data:`DEFAULT_SETTINGS`, each with its reason (``why``).

Sampler settings are changed only for a posterior that fails with the defaults because of a
known hard geometry. With 4 x 1000/1000 every posterior passes with the defaults (float32,
diagonal mass, ``target_accept_prob=0.8``); ``kilpisjarvi`` and ``diamonds`` saturate the
tree depth in many transitions (correlations of -0.99998 and 24 correlated predictors) but
still pass, so they keep the defaults and the report shows the maximum-depth hits.
"""

INIT_STRATEGIES = ("uniform", "median", "mean", "feasible", "sample")


def settings_for(name: str, defaults_only: bool = False) -> dict[str, Any]:
    """The merged settings of one posterior (``defaults_only``: keep only the float64 switch)."""
    override = {k: v for k, v in MODEL_SETTINGS.get(name, {}).items() if k != "why"}
    if defaults_only:
        override = {k: v for k, v in override.items() if k == "x64"}
    return {**DEFAULT_SETTINGS, **override}


# ---------------------------------------------------------------------------------------------
# Comparison with the reference
# ---------------------------------------------------------------------------------------------


def _finite(x: float) -> bool:
    return x is not None and math.isfinite(x)


def compare_parameter(
    draws: np.ndarray, ref: Mapping[str, float], diagnostics: Any | None = None
) -> dict[str, Any]:
    """Compare the ``(chains, draws)`` array of one parameter element with its reference entry.

    Args:
        draws: ``(num_chains, num_draws)`` draws of one scalar quantity.
        ref: the element's ``reference.json`` entry (``mean``, ``sd``, ``mcse_mean`` used).
        diagnostics: the module providing ``mcse_mean``, ``mcse_sd``, R-hat and ESS
            (default :mod:`jppl.diagnostics`).

    Returns:
        ``mean``, ``sd`` (pooled, ddof 1), ``mcse_mean``, ``mcse_sd``, ``z_mean``,
        ``sd_rel_err`` (``sd / sd_ref - 1``), ``z_sd`` (sd difference in combined ``mcse_sd``
        units, informative only), ``rhat``, ``ess_bulk``, ``ess_tail``, ``mean_ok``, ``sd_ok``
        and ``ok``; the reference values as ``ref_mean``, ``ref_sd``, ``ref_mcse_mean``.
    """
    if diagnostics is None:
        from jppl import diagnostics
    x = np.asarray(draws, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected (chains, draws) draws, got shape {x.shape}")
    mean = float(np.mean(x))
    sd = float(np.std(x, ddof=1))
    mcse = float(diagnostics.mcse_mean(x))
    mcse_sd = float(diagnostics.mcse_sd(x))
    ref_mean, ref_sd, ref_mcse = float(ref["mean"]), float(ref["sd"]), float(ref["mcse_mean"])
    combined = math.sqrt(mcse**2 + ref_mcse**2)
    diff = mean - ref_mean
    if combined > 0:
        z_mean = diff / combined
    else:  # both standard errors 0 (constant draws): any difference is infinitely significant
        z_mean = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    sd_rel_err = sd / ref_sd - 1.0
    ref_mcse_sd = float(ref.get("mcse_sd", math.nan))
    combined_sd = math.sqrt(mcse_sd**2 + ref_mcse_sd**2)
    z_sd = (sd - ref_sd) / combined_sd if combined_sd > 0 else math.nan
    mean_ok = _finite(z_mean) and abs(z_mean) <= MEAN_Z_MAX
    sd_ok = _finite(sd_rel_err) and abs(sd - ref_sd) <= SD_REL_MAX * ref_sd
    return {
        "mean": mean,
        "sd": sd,
        "mcse_mean": mcse,
        "mcse_sd": mcse_sd,
        "ref_mean": ref_mean,
        "ref_sd": ref_sd,
        "ref_mcse_mean": ref_mcse,
        "z_mean": z_mean,
        "sd_rel_err": sd_rel_err,
        "z_sd": z_sd,
        "rhat": float(diagnostics.rank_normalized_split_rhat(x)),
        "ess_bulk": float(diagnostics.ess_bulk(x)),
        "ess_tail": float(diagnostics.ess_tail(x)),
        "mean_ok": bool(mean_ok),
        "sd_ok": bool(sd_ok),
        "ok": bool(mean_ok and sd_ok),
    }


def compare(
    draws: Mapping[str, np.ndarray], reference: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Compare ``{reference name: (chains, draws)}`` with a ``reference.json`` dict.

    Every element of ``reference["parameter_names"]`` must be in ``draws``; returns
    ``{name: compare_parameter(...)}`` in the reference's order.
    """
    missing = [n for n in reference["parameter_names"] if n not in draws]
    if missing:
        raise KeyError(f"no jppl draws for reference parameters {missing}")
    return {
        name: compare_parameter(draws[name], reference["parameters"][name])
        for name in reference["parameter_names"]
    }


def _nanmax(values: Sequence[float]) -> float:
    finite = [v for v in values if _finite(v)]
    return max(finite) if len(finite) == len(values) and finite else math.nan


def _nanmin(values: Sequence[float]) -> float:
    finite = [v for v in values if _finite(v)]
    return min(finite) if len(finite) == len(values) and finite else math.nan


def summarize_comparison(params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per-posterior aggregates of :func:`compare`'s output (``nan`` where any value is)."""

    def worst(key: str) -> tuple[str | None, float]:
        name, value = None, -1.0
        for n, p in params.items():
            v = p[key]
            a = abs(v) if _finite(v) else math.inf
            if a > value:
                name, value = n, a
        return name, value

    z_name, _ = worst("z_mean")
    sd_name, _ = worst("sd_rel_err")
    return {
        "passed": all(p["ok"] for p in params.values()),
        "num_parameters": len(params),
        "failed_mean": [n for n, p in params.items() if not p["mean_ok"]],
        "failed_sd": [n for n, p in params.items() if not p["sd_ok"]],
        "worst_mean_z": params[z_name]["z_mean"] if z_name else math.nan,
        "worst_mean_z_param": z_name,
        "worst_sd_rel_err": params[sd_name]["sd_rel_err"] if sd_name else math.nan,
        "worst_sd_rel_err_param": sd_name,
        "max_rhat": _nanmax([p["rhat"] for p in params.values()]),
        "min_ess_bulk": _nanmin([p["ess_bulk"] for p in params.values()]),
        "min_ess_tail": _nanmin([p["ess_tail"] for p in params.values()]),
    }


# ---------------------------------------------------------------------------------------------
# One posterior (runs inside a worker process)
# ---------------------------------------------------------------------------------------------


def import_models():
    """:mod:`benchmarks.posteriordb_models`, imported on first use: a worker switches float64
    on (or not) before jppl is imported."""
    from benchmarks import posteriordb_models

    return posteriordb_models


def _init_strategy(name: str):
    from jppl import infer

    if name not in INIT_STRATEGIES:
        raise ValueError(f"init_strategy must be one of {INIT_STRATEGIES}, got {name!r}")
    return getattr(infer, f"init_to_{name}")


def check_x64(name: str, settings: Mapping[str, Any]) -> None:
    """Raise unless the settings' ``x64`` is this process's ``jax_enable_x64``."""
    import jax

    if bool(settings["x64"]) != bool(jax.config.jax_enable_x64):
        raise RuntimeError(
            f"{name}: settings ask for x64={settings['x64']} but jax_enable_x64 is "
            f"{jax.config.jax_enable_x64}; run it through a worker process."
        )


def make_sampler(spec: Any, settings: Mapping[str, Any]):
    """jppl ``NUTS`` for a posterior spec (its ``reparam_model()``) with :func:`settings_for`
    settings (``adaptation`` picks the warm-up scheme)."""
    from jppl.mcmc import NUTS

    return NUTS(
        spec.reparam_model(),
        target_accept_prob=float(settings["target_accept_prob"]),
        dense_mass=settings["dense_mass"],
        max_tree_depth=int(settings["max_tree_depth"]),
        adaptation=settings["adaptation"],
        init_strategy=_init_strategy(settings["init_strategy"]),
    )


def make_mcmc(sampler: Any, num_warmup: int, num_samples: int, num_chains: int):
    """``MCMC`` as the benchmarks run it (:data:`CHAIN_METHOD`, no progress bar, no warnings)."""
    from jppl.mcmc import MCMC

    return MCMC(
        sampler,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=CHAIN_METHOD,
        progress_bar=False,
        warn=False,
    )


def fields_and_draws(mcmc: Any, spec: Any, samples: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's extra fields and its ``samples`` under the reference names, ``(chains, draws)``
    host arrays."""
    fields = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    draws = {k: np.asarray(v) for k, v in spec.to_reference_names(samples, batch_ndims=2).items()}
    return fields, draws


def reparam_sites(spec: Any) -> list[str] | None:
    """The reparametrized sites of a spec (sorted), ``None`` without a reparametrization."""
    return None if spec.reparam_config is None else sorted(spec.reparam_config)


def run_posterior(
    name: str,
    settings: Mapping[str, Any],
    num_chains: int,
    num_warmup: int,
    num_samples: int,
    seed: int = SEED,
) -> dict[str, Any]:
    """Run jppl NUTS on one posterior in this process and compare with its reference.

    ``settings`` as :func:`settings_for` returns them; its ``x64`` must match this process's
    ``jax_enable_x64`` (the worker sets it before anything else). ``num_warmup`` is the
    warm-up length unless ``settings`` has its own ``num_warmup``.
    """
    import jax

    check_x64(name, settings)
    models = import_models()
    spec, data, reference = models.load_posterior(name)
    args, kwargs = spec.load_data(data)
    num_warmup = int(settings.get("num_warmup", num_warmup))
    start = time.perf_counter()
    sampler = make_sampler(spec, settings)
    mcmc = make_mcmc(sampler, num_warmup, num_samples, num_chains)
    mcmc.run(jax.random.key(seed), *args, **kwargs)
    samples = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    wall = time.perf_counter() - start

    fields, draws = fields_and_draws(mcmc, spec, samples)
    params = compare(draws, reference)
    max_depth = int(settings["max_tree_depth"])
    dtype = str(np.asarray(jax.tree.leaves(samples)[0]).dtype)
    diag = {
        "num_divergent": int(np.sum(fields["diverging"])),
        "divergent_per_chain": np.sum(fields["diverging"], axis=1).astype(int).tolist(),
        "num_max_tree_depth": int(np.sum(fields["tree_depth"] >= max_depth)),
        "mean_tree_depth": float(np.mean(fields["tree_depth"])),
        "mean_accept_prob": float(np.mean(fields["accept_prob"])),
        "accept_prob_per_chain": np.mean(fields["accept_prob"], axis=1).tolist(),
        "mean_num_steps": float(np.mean(fields["num_steps"])),
        "total_num_steps": int(np.sum(fields["num_steps"])),
        "step_size_per_chain": np.asarray(fields["step_size"])[:, -1].tolist(),
    }
    return {
        "name": name,
        "status": "ok",
        **summarize_comparison(params),
        "diagnostics": diag,
        "settings": {
            **dict(settings),
            "num_warmup": num_warmup,
            "num_samples": num_samples,
            "num_chains": num_chains,
            "chain_method": CHAIN_METHOD,
            "seed": seed,
            "reparam": reparam_sites(spec),
        },
        "dtype": dtype,
        "time_s": wall,
        "timings": dict(mcmc.timings),
        "parameters": params,
    }


def _worker(argv: Sequence[str]) -> None:
    """``--worker NAME SETTINGS_JSON RUN_JSON OUT_PATH``: one posterior, result to OUT_PATH."""
    name, settings_json, run_json, out_path = argv
    settings, run = json.loads(settings_json), json.loads(run_json)
    import jax

    jax.config.update("jax_enable_x64", bool(settings["x64"]))
    result = run_posterior(name, settings, **run)
    write_json(out_path, result)


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def run_in_subprocess(
    name: str,
    settings: Mapping[str, Any],
    run: Mapping[str, int],
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run :func:`run_posterior` in a fresh Python process (:func:`benchmarks.workers.run_worker`);
    failures become a result with ``status`` ``"error"`` / ``"timeout"`` (and the end of the
    worker's stderr)."""
    args = [name, json.dumps(dict(settings)), json.dumps(dict(run))]
    return run_worker(
        "benchmarks.posteriordb",
        args,
        {"name": name},
        timeout,
        settings={**dict(settings), **dict(run)},
    )


def _fmt_settings(settings: Mapping[str, Any], num_warmup: int | None = None) -> str:
    parts = []
    for key, default in DEFAULT_SETTINGS.items():
        value = settings.get(key, default)
        if value != default:
            parts.append(f"{key}={value}")
    if settings.get("reparam"):
        parts.append("LocScaleReparam")
    if num_warmup is not None and settings.get("num_warmup", num_warmup) != num_warmup:
        parts.append(f"num_warmup={settings['num_warmup']}")
    return ", ".join(parts) or "defaults"


def markdown_report(report: Mapping[str, Any]) -> str:
    """The markdown summary of a :func:`main` report (one row per posterior)."""
    run = report["run"]
    lines = [
        "# posteriordb: jppl NUTS against the Stan reference posteriors (CPU)",
        "",
        f"{run['num_chains']} chains x {run['num_warmup']} warm-up / {run['num_samples']} draws, "
        f"chain_method={CHAIN_METHOD}, seed {run['seed']}. Pass: every parameter element has "
        f"|mean z| <= {MEAN_Z_MAX:g} (combined MCSE) and |sd / sd_ref - 1| <= {SD_REL_MAX:g}. "
        "Time: compile + warm-up + sampling (the total: of the worker processes, with imports). "
        "Command(s): "
        + ", ".join(f"`{c}`" for c in report.get("commands", [report["command"]]))
        + ".",
        "",
        f"**{report['num_passed']} / {report['num_models']} passed**; total time "
        f"{report['total_s'] / 60:.1f} min on {report['machine']['cpu_model']} "
        f"({report['machine']['cpus_usable']} usable cores, load average at start "
        f"{report['machine']['load_average']}).",
        "",
        "| posterior | pass | worst mean z | worst sd err | max R-hat | min ESS bulk | "
        "divergences | max-depth hits | time (s) | dtype | settings |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if r["status"] != "ok":
            lines.append(
                f"| {r['name']} | **{r['status'].upper()}** | - | - | - | - | - | - | "
                f"{fmt(r.get('process_s'))} | - | "
                f"{_fmt_settings(r['settings'], run['num_warmup'])} |"
            )
            continue
        d = r["diagnostics"]
        z = f"{r['worst_mean_z']:+.2f} ({r['worst_mean_z_param']})"
        sd = f"{100 * r['worst_sd_rel_err']:+.1f}% ({r['worst_sd_rel_err_param']})"
        lines.append(
            f"| {r['name']} | {'yes' if r['passed'] else '**NO**'} | {z} | {sd} | "
            f"{r['max_rhat']:.3f} | {r['min_ess_bulk']:.0f} | {d['num_divergent']} | "
            f"{d['num_max_tree_depth']} | {r['time_s']:.1f} | {r['dtype']} | "
            f"{_fmt_settings(r['settings'], run['num_warmup'])} |"
        )
    failures = [r for r in report["results"] if not r["passed"]]
    if failures:
        lines += ["", "## Failures", ""]
        for r in failures:
            if r["status"] != "ok":
                lines.append(f"* {r['name']}: {r['status']} ({error_line(r)})")
                continue
            bad = []
            for n, p in r["parameters"].items():
                if not p["ok"]:
                    bad.append(f"{n} (z {p['z_mean']:+.2f}, sd {100 * p['sd_rel_err']:+.1f}%)")
            lines.append(f"* {r['name']}: " + ", ".join(bad))
    health = _health_notes(report)
    if health:
        lines += ["", "## Run health (R-hat > 1.01, ESS < 400, divergences, max tree depth)", ""]
        lines += [f"* {n}" for n in health]
    notes = report.get("notes")
    if notes:
        lines += ["", "## Settings", ""]
        lines += [f"* {n}" for n in notes]
    return "\n".join(lines)


def _health_notes(report: Mapping[str, Any]) -> list[str]:
    run, notes = report["run"], []
    transitions = run["num_chains"] * run["num_samples"]
    for r in report["results"]:
        if r["status"] != "ok":
            continue
        d, issues = r["diagnostics"], []
        if r["max_rhat"] > 1.01:
            issues.append(f"max R-hat {r['max_rhat']:.3f}")
        if r["min_ess_bulk"] < 400 or r["min_ess_tail"] < 400:
            issues.append(f"min ESS bulk {r['min_ess_bulk']:.0f} / tail {r['min_ess_tail']:.0f}")
        if d["num_divergent"]:
            issues.append(
                f"{d['num_divergent']} divergences (per chain {d['divergent_per_chain']})"
            )
        if d["num_max_tree_depth"]:
            issues.append(
                f"max tree depth {r['settings']['max_tree_depth']} reached in "
                f"{d['num_max_tree_depth']} / {transitions} transitions "
                f"({d['mean_num_steps']:.0f} leapfrog steps per draw on average)"
            )
        if issues:
            notes.append(f"{r['name']}: " + "; ".join(issues))
    return notes


def select_posteriors(
    parser: argparse.ArgumentParser, models: str | None, all_names: Sequence[str]
) -> list[str]:
    """The posteriors named by ``--models`` (comma-separated; all when not given)."""
    names = list(all_names) if not models else [n.strip() for n in models.split(",")]
    unknown = [n for n in names if n not in all_names]
    if unknown:
        parser.error(f"unknown posteriors {unknown}; known: {all_names}")
    return names


def _settings_notes(names: Sequence[str], defaults_only: bool) -> list[str]:
    notes = [f"defaults: {json.dumps(DEFAULT_SETTINGS)}"]
    for name in names:
        s = settings_for(name, defaults_only)
        if s != DEFAULT_SETTINGS:
            diff = {k: v for k, v in s.items() if DEFAULT_SETTINGS.get(k) != v}
            why = MODEL_SETTINGS.get(name, {}).get("why", "")
            notes.append(f"{name}: {json.dumps(diff)}" + (f" ({why})" if why else ""))
    return notes


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if is_worker(argv):
        _worker(argv[1:])
        return {}
    models = import_models()
    all_names = models.posterior_names()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models", help="comma-separated posterior names (default: all 21)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 chains x 300/300")
    parser.add_argument(
        "--defaults", action="store_true", help="ignore MODEL_SETTINGS (except float64)"
    )
    parser.add_argument("--num-chains", type=int)
    parser.add_argument("--num-warmup", type=int)
    parser.add_argument("--num-samples", type=int)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--timeout", type=float, default=None, help="seconds per posterior")
    parser.add_argument("--out", help="output path without suffix (default: results folder)")
    parser.add_argument(
        "--update",
        action="store_true",
        help="merge into the existing result files (same run settings): rerun some posteriors",
    )
    parser.add_argument(
        "--render", action="store_true", help="only rewrite the .md from the existing .json"
    )
    opts = parser.parse_args(argv)

    names = select_posteriors(parser, opts.models, all_names)
    run = dict(QUICK_RUN if opts.quick else FULL_RUN)
    for key in ("num_chains", "num_warmup", "num_samples"):
        if getattr(opts, key) is not None:
            run[key] = getattr(opts, key)
    run["seed"] = opts.seed
    suffix = "_quick" if opts.quick else ""
    suffix += "_defaults" if opts.defaults else ""
    out = Path(opts.out) if opts.out else RESULTS_DIR / f"posteriordb_cpu{suffix}"

    if opts.render:
        report = json.loads(out.with_suffix(".json").read_text())
        write_markdown(out.with_suffix(".md"), markdown_report(report))
        return report

    previous: dict[str, Any] = {}
    commands: list[str] = []
    if opts.update and out.with_suffix(".json").exists():
        old = json.loads(out.with_suffix(".json").read_text())
        old_run = {k: old["run"][k] for k in run}
        if old_run != run:
            parser.error(f"--update: {out.with_suffix('.json')} has run settings {old_run}")
        previous = {r["name"]: r for r in old["results"]}
        commands = list(old.get("commands", []))
    commands.append(" ".join(["python benchmarks/posteriordb.py", *argv]))

    machine = machine_info(("arviz",))
    results: dict[str, Any] = dict(previous)
    for i, name in enumerate(names):
        settings = settings_for(name, opts.defaults)
        print(
            f"[{i + 1}/{len(names)}] {name} ({_fmt_settings(settings, run['num_warmup'])}) ...",
            flush=True,
        )
        load = load_average()
        r = run_in_subprocess(name, settings, run, timeout=opts.timeout)
        r["load_average_at_start"] = load
        results[name] = r
        if r["status"] == "ok":
            print(
                f"    {'PASS' if r['passed'] else 'FAIL'}: worst z {r['worst_mean_z']:+.2f} "
                f"({r['worst_mean_z_param']}), worst sd err {100 * r['worst_sd_rel_err']:+.1f}% "
                f"({r['worst_sd_rel_err_param']}), max R-hat {r['max_rhat']:.3f}, min ESS "
                f"{r['min_ess_bulk']:.0f}, {r['diagnostics']['num_divergent']} divergences, "
                f"{r['diagnostics']['num_max_tree_depth']} max-depth hits, {r['time_s']:.1f} s",
                flush=True,
            )
        else:
            print(f"    {r['status'].upper()}: {r['stderr_tail'][-800:]}", flush=True)
        ordered = [results[n] for n in all_names if n in results]
        report = {
            "benchmark": "posteriordb",
            "command": commands[-1],
            "commands": commands,
            "run": {**run, "chain_method": CHAIN_METHOD},
            "criteria": {"mean_z_max": MEAN_Z_MAX, "sd_rel_max": SD_REL_MAX},
            "default_settings": DEFAULT_SETTINGS,
            "model_settings": {} if opts.defaults else MODEL_SETTINGS,
            "notes": _settings_notes([r["name"] for r in ordered], opts.defaults),
            "machine": machine,
            "num_models": len(ordered),
            "num_passed": sum(bool(x["passed"]) for x in ordered),
            # sum of the per-posterior process times (fresh process: import, compile, run)
            "total_s": sum(x.get("process_s", 0.0) for x in ordered),
            "complete": all(n in results for n in names),
            "all_posteriors": len(ordered) == len(all_names),
            "results": ordered,
        }
        # rewritten after every posterior, so a long run can be followed (and survives a kill)
        write_results(out.with_suffix(""), report, markdown_report(report))
    print(
        f"{report['num_passed']} / {report['num_models']} passed in "
        f"{report['total_s'] / 60:.1f} min; wrote {out.with_suffix('.json')} and .md",
        flush=True,
    )
    return report


if __name__ == "__main__":
    main()
