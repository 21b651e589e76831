"""Warm-up adaptation benchmark: Stan's windows against nutpie (diagonal, low rank) on posteriordb.

Run from the repository root::

    .venv/bin/python -m benchmarks.adaptation                        # 21 posteriors x 5 schemes
    .venv/bin/python -m benchmarks.adaptation --quick                # smoke run (2 x 200 draws)
    .venv/bin/python -m benchmarks.adaptation --models arK-arK,sblri-blr --update  # merge
    .venv/bin/python -m benchmarks.adaptation --render               # .md from the .json

For each posterior of ``benchmarks/posteriordb`` (loaded, configured and checked through
``benchmarks/posteriordb.py``: its per-posterior settings such as float64 for gp_pois_regr and
the non-centred reparametrization of eight_schools_centered, and its reference check: every
mean within 4 combined MCSE, every sd within 10%) and each warm-up scheme of :data:`SCHEMES`
(Stan 1000 warm-up draws; nutpie diagonal and nutpie low rank with 1000 and with 300), jppl's
NUTS runs 4 chains x 1000 kept draws with a fixed seed. Recorded per posterior and scheme:

* gradient evaluations of the warm-up and of the sampling, summed over chains. Sampling: the
  leapfrog steps of every transition (``num_steps``). Warm-up: the gradient at the initial
  point, the leapfrog steps of every warm-up transition, and those of the step-size searches
  (:func:`search_leapfrogs`). The gradients spent finding a valid initial point are the same
  for every scheme and are not counted;
* min bulk ESS and min tail ESS over all the posterior's reference quantities;
* ESS per gradient: ``min bulk ESS / (warm-up + sampling gradients)`` and per sampling
  gradient ``min bulk ESS / sampling gradients``;
* divergences (warm-up and sampling), whether the reference check passes, wall time.

The summary gives, per scheme, the median over posteriors of the ratio of its ESS per gradient
to Stan's (:data:`BASELINE`), and the number of posteriors passing the reference check.

The warm-up runs here (not through :class:`jppl.mcmc.MCMC`) with the public adaptation API
(:func:`jppl.mcmc.adaptation.window_adaptation` / ``nutpie_adaptation``) so that its
per-transition diagnostics are kept; it uses the same options, PRNG keys and vectorized chains
as ``MCMC.warmup`` (a test checks that the adapted states agree). Sampling then runs through
``MCMC.run`` from that ``post_warmup_state``.

Each (posterior, scheme) runs in its own subprocess (``--worker``). Results:
``benchmarks/results/adaptation_cpu.{json,md}`` (``--quick``: ``adaptation_cpu_quick.*``),
rewritten after every run; ``--update`` merges into the existing files (same run settings),
so a long run can be split by ``--models`` / ``--schemes``. ESS per gradient does not depend
on machine load; wall times do.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run by path: import the package from the root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import functools
import hashlib
import json
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchmarks import posteriordb as pdb
from benchmarks.report import (
    RESULTS_DIR,
    fmt,
    load_average,
    machine_info,
    ratio,
    write_json,
    write_markdown,
    write_results,
)
from benchmarks.workers import error_line, is_worker, run_worker

SCHEMES: dict[str, dict[str, Any]] = {
    "stan_1000": {"adaptation": "stan", "num_warmup": 1000},
    "nutpie_1000": {"adaptation": "nutpie", "num_warmup": 1000},
    "nutpie_300": {"adaptation": "nutpie", "num_warmup": 300},
    "nutpie_low_rank_1000": {"adaptation": "nutpie_low_rank", "num_warmup": 1000},
    "nutpie_low_rank_300": {"adaptation": "nutpie_low_rank", "num_warmup": 300},
}
"""The compared warm-up schemes: ``NUTS(adaptation=...)`` and the number of warm-up draws."""

BASELINE = "stan_1000"
"""The scheme the ESS-per-gradient ratios are taken against."""

FULL_RUN = {"num_chains": 4, "num_samples": 1000, "warmup_scale": 1.0}
QUICK_RUN = {"num_chains": 2, "num_samples": 200, "warmup_scale": 0.2}
"""``warmup_scale`` multiplies each scheme's ``num_warmup`` (quick: 200 and 60)."""

SEED = 0
CHAIN_METHOD = pdb.CHAIN_METHOD

STEP_SIZE_TOL = 1e-3
"""Largest relative difference allowed between the recorded warm-up step sizes and their
reconstruction by dual averaging (:func:`reconstruct_step_sizes`); above it the search counts
are flagged as unreliable (``search_check_ok`` false)."""

# Bounds of jppl's step-size search (jppl.mcmc.adaptation.step_size._STEP_SIZE_MIN / _MAX) and its
# iteration limit (find_reasonable_step_size's max_iterations).
_SEARCH_MIN, _SEARCH_MAX, _SEARCH_MAX_ITER = 1e-10, 1e7, 100


def warmup_length(scheme: str, warmup_scale: float) -> int:
    """The number of warm-up draws of ``scheme`` (at least 20)."""
    return max(20, int(round(SCHEMES[scheme]["num_warmup"] * warmup_scale)))


# ---------------------------------------------------------------------------------------------
# Gradient accounting of the step-size searches
# ---------------------------------------------------------------------------------------------


def search_leapfrogs(eps_in: float, eps_out: float, offset: int) -> tuple[int, float]:
    """Leapfrog steps (= gradient evaluations) of one run of jppl's step-size search.

    The search (:func:`jppl.mcmc.adaptation.find_reasonable_step_size`) doubles (or halves) the
    step size ``k`` times until the acceptance of one leapfrog step crosses the target, so
    ``eps_out = eps_in * 2^(+-k)``, and takes ``k + offset`` leapfrog steps, where ``offset``
    (the direction and crossing tests) is measured by :func:`search_offset`. When the step size
    leaves ``[1e-10, 1e7]`` the search stops at the clipped value (``ceil(k) + offset - 1``
    steps); a non-finite ``eps_in`` costs ``offset - 1`` steps (both rare).

    Returns:
        ``(steps, off_grid)``: ``off_grid`` is the distance of ``|log2(eps_out / eps_in)|`` to
        the nearest integer (0 for a consistent pair; not checked for a clipped end).
    """
    if not (math.isfinite(eps_in) and eps_in > 0):
        return offset - 1, 0.0
    ratio = abs(math.log2(eps_out / eps_in))
    clipped = eps_out <= _SEARCH_MIN * (1 + 1e-6) or eps_out >= _SEARCH_MAX * (1 - 1e-6)
    if clipped:
        return min(math.ceil(ratio - 1e-3) + offset - 1, _SEARCH_MAX_ITER + 1), 0.0
    k = round(ratio)
    return min(k + offset, _SEARCH_MAX_ITER + 1), abs(ratio - k)


@functools.cache
def search_offset() -> int:
    """Leapfrog steps of jppl's step-size search besides its ``k`` doublings/halvings.

    Measured on a 1-d standard normal whose log density counts its evaluations (a host
    callback), from ``eps_in = 2^-8`` (the search doubles ``k`` times). The offset depends on
    how the search tests the direction and the crossing (2 for one direction test and one
    crossing test, 1 when the first test also doubles), hence measured, not assumed.
    """
    import jax
    import jax.numpy as jnp

    from jppl.mcmc import adaptation as adapt
    from jppl.mcmc import nuts

    counter = [0]

    def bump() -> None:
        counter[0] += 1

    def logdensity(x):
        jax.debug.callback(bump)
        return -0.5 * jnp.sum(x**2)

    state = nuts.init(jnp.zeros(1), logdensity)
    eps_in = 2.0**-8
    search = jax.jit(
        lambda key: adapt.find_reasonable_step_size(key, state, logdensity, jnp.ones(1), eps_in)
    )
    jax.block_until_ready(search(jax.random.key(0)))
    counter[0] = 0
    eps_out = float(jax.block_until_ready(search(jax.random.key(0))))
    return counter[0] - round(abs(math.log2(eps_out / eps_in)))


def reconstruct_step_sizes(
    step_size: np.ndarray,
    accept: np.ndarray,
    restart: np.ndarray,
    target_accept_prob: float,
) -> np.ndarray:
    """Replay dual averaging over one chain's warm-up.

    Args:
        step_size: ``(W,)`` step size used by each warm-up transition.
        accept: ``(W,)`` acceptance statistic of each transition.
        restart: ``(W,)`` bool, dual averaging restarts after this transition from the next
            transition's step size (a step-size search happened there).
        target_accept_prob: the adaptation's target.

    Returns:
        ``(W,)`` ``exp(log_step_size)`` after the update with transition ``t``'s acceptance,
        before any restart: the next step size where ``restart`` is false, and the input of
        the search where Stan restarts.
    """
    import jax
    import jax.numpy as jnp

    from jppl.mcmc import adaptation as adapt

    eps = jnp.asarray(step_size)
    following = jnp.concatenate([eps[1:], eps[-1:]])

    def body(da, xs):
        acc, again, nxt = xs
        da = adapt.dual_averaging_update(da, acc, target_accept_prob=target_accept_prob)
        proposed = jnp.exp(da.log_step_size)
        fresh = adapt.dual_averaging_init(nxt)
        da = jax.tree.map(lambda a, b: jnp.where(again, a, b), fresh, da)
        return da, proposed

    xs = (jnp.asarray(accept, eps.dtype), jnp.asarray(restart), following)
    _, proposed = jax.lax.scan(body, adapt.dual_averaging_init(eps[0]), xs)
    return np.asarray(proposed, np.float64)


def count_search_leapfrogs(
    adaptation: str,
    initial_step_size: float,
    step_size: np.ndarray,
    accept: np.ndarray,
    target_accept_prob: float,
) -> dict[str, Any]:
    """Leapfrog steps of all step-size searches of one chain's warm-up.

    Searches: one before the first transition (from ``initial_step_size``), and then Stan
    searches after every slow-window end (from the dual-averaged step size), nutpie after its
    first mass-matrix update (from the step size of that transition). The search results are
    the recorded step sizes; the Stan inputs come from :func:`reconstruct_step_sizes`, whose
    other values must equal the recorded step sizes (checked, ``max_rel_err``).

    Args:
        adaptation: ``"stan"``, ``"nutpie"`` or ``"nutpie_low_rank"`` (default schedules).
        initial_step_size: the sampler's ``step_size`` (start of the first search).
        step_size, accept: ``(W,)`` recorded step sizes and acceptance statistics.
        target_accept_prob: dual averaging's target.

    Returns:
        ``leapfrogs``, ``num_searches``, ``max_rel_err`` (reconstruction of the step sizes),
        ``max_off_grid`` (see :func:`search_leapfrogs`) and ``ok`` (both within tolerance).
    """
    from jppl.mcmc import adaptation as adapt

    step_size = np.asarray(step_size, np.float64)
    n = step_size.shape[0]
    if adaptation == "stan":
        restart = adapt.build_schedule(n).is_window_end
    else:
        restart = adapt.build_nutpie_schedule(n).first_update
    restart = np.asarray(restart, bool)
    proposed = reconstruct_step_sizes(step_size, accept, restart, target_accept_prob)
    offset = search_offset()
    counted = [search_leapfrogs(float(initial_step_size), float(step_size[0]), offset)]
    for t in np.flatnonzero(restart):
        # The search starts from the dual-averaged step size (Stan), or from the step size of
        # the transition (older nutpie code): whichever the search doubled/halved exactly.
        candidates = [proposed[t], step_size[t]] if adaptation != "stan" else [proposed[t]]
        tries = [search_leapfrogs(float(c), float(step_size[t + 1]), offset) for c in candidates]
        counted.append(min(tries, key=lambda c: c[1]))
    keep = ~restart[:-1]
    rel = np.abs(proposed[:-1][keep] / step_size[1:][keep] - 1.0) if n > 1 else np.zeros(0)
    max_rel = float(np.max(rel)) if rel.size else 0.0
    off_grid = max(c[1] for c in counted)
    return {
        "leapfrogs": int(sum(c[0] for c in counted)),
        "num_searches": len(counted),
        "max_rel_err": max_rel,
        "max_off_grid": off_grid,
        "ok": bool(max_rel <= STEP_SIZE_TOL and off_grid <= 0.01),
    }


# ---------------------------------------------------------------------------------------------
# One posterior with one scheme (runs inside a worker process)
# ---------------------------------------------------------------------------------------------


def _adaptation_for(sampler: Any, logdensity: Any, num_warmup: int):
    """The :class:`jppl.mcmc.adaptation.Adaptation` that ``MCMC`` builds for ``sampler``
    (:meth:`~jppl.mcmc.NUTS.make_warmup`; block-dense metrics are not handled here)."""
    if not isinstance(sampler.dense_mass, bool):
        raise ValueError("block-dense mass matrices are not supported by this benchmark")
    return sampler.make_warmup(logdensity, num_warmup, None)


def run_warmup(
    sampler: Any,
    args: tuple,
    kwargs: dict,
    rng_key: Any,
    num_chains: int,
    num_warmup: int,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Warm up ``num_chains`` vectorized chains as ``MCMC(..., chain_method="vectorized")
    .warmup(rng_key, *args, **kwargs)`` does (same keys, initial points and options), keeping
    the per-transition diagnostics.

    Returns:
        ``(state, infos)``: the :class:`jppl.mcmc.MCMCState` to sample from, and ``(C, W)``
        arrays ``num_steps``, ``accept``, ``diverging``, ``step_size`` of the warm-up
        transitions.
    """
    import jax
    import jax.numpy as jnp

    from jppl.mcmc.state import MCMCState, chain_keys, split_model_args

    if sampler.adaptation_options:
        raise ValueError("the search accounting assumes the default adaptation schedules")
    sig = split_model_args(args, kwargs)
    bind_key = jax.random.key(0) if rng_key is None else rng_key
    target = sampler.bind(bind_key, args, kwargs)
    keys = chain_keys(rng_key, num_chains)
    split = jax.vmap(lambda k: jax.random.split(k, 3))(keys)
    init = jax.jit(lambda k, dyn: target.make_init(k, *sig.rebuild(dyn)))
    positions, valid = init(split[:, 0], sig.dynamic)
    if not bool(np.all(np.asarray(valid))):
        raise RuntimeError("no valid initial point found for some chains")

    def one_chain(position, key_warm, dyn):
        a, kw = sig.rebuild(dyn)
        warm = _adaptation_for(sampler, target.make_logdensity(a, kw), num_warmup)
        chain, params, infos = warm.run(key_warm, position)
        info = infos.kernel_info
        record = {
            "num_steps": info.num_steps,
            "accept": info.acceptance_rate,
            "diverging": info.is_divergent,
            "step_size": infos.step_size,
        }
        return chain, params, record

    fn = jax.jit(jax.vmap(one_chain, in_axes=(0, 0, None)))
    chain, params, record = jax.block_until_ready(fn(positions, split[:, 1], sig.dynamic))
    dtype = chain.position.dtype
    state = MCMCState(
        position=chain.position,
        logdensity=chain.logdensity,
        logdensity_grad=chain.logdensity_grad,
        step_size=jnp.asarray(params.step_size, dtype),
        inverse_mass_matrix=jnp.asarray(params.inverse_mass_matrix, dtype),
        rng_key=split[:, 2],
        step=jnp.zeros((num_chains,), jnp.int32),
    )
    return state, {k: np.asarray(v) for k, v in record.items()}


def gradient_counts(
    sampler: Any, warm_infos: Mapping[str, np.ndarray], sample_num_steps: np.ndarray
) -> dict[str, Any]:
    """Gradient evaluations of a run, summed over chains (see the module docstring).

    Args:
        sampler: the NUTS sampler (its ``adaptation``, ``step_size``, ``target_accept_prob``).
        warm_infos: :func:`run_warmup`'s ``(C, W)`` diagnostics.
        sample_num_steps: ``(C, S)`` leapfrog steps of the sampling transitions.
    """
    num_chains = warm_infos["num_steps"].shape[0]
    searches = [
        count_search_leapfrogs(
            sampler.adaptation,
            sampler.step_size,
            warm_infos["step_size"][c],
            warm_infos["accept"][c],
            sampler.target_accept_prob,
        )
        for c in range(num_chains)
    ]
    transitions = int(np.sum(warm_infos["num_steps"], dtype=np.int64))
    search = sum(s["leapfrogs"] for s in searches)
    warmup = num_chains + transitions + search  # + the initial gradient of each chain
    sampling = int(np.sum(sample_num_steps, dtype=np.int64))
    return {
        "warmup": warmup,
        "warmup_transitions": transitions,
        "warmup_search": search,
        "warmup_initial": num_chains,
        "sampling": sampling,
        "total": warmup + sampling,
        "num_searches_per_chain": [s["num_searches"] for s in searches],
        "search_check_ok": all(s["ok"] for s in searches),
        "search_max_rel_err": max(s["max_rel_err"] for s in searches),
        "search_max_off_grid": max(s["max_off_grid"] for s in searches),
        "search_offset": search_offset(),
    }


def _source_digest() -> str:
    """Hash of the imported ``jppl/mcmc/**/*.py`` (the code under test may change between
    workers; run against a frozen copy with ``PYTHONPATH`` to avoid that)."""
    import jppl.mcmc

    digest = hashlib.sha256()
    root = Path(jppl.mcmc.__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def run_scheme(
    name: str,
    scheme: str,
    num_chains: int,
    num_samples: int,
    warmup_scale: float = 1.0,
    seed: int = SEED,
) -> dict[str, Any]:
    """Run one posterior with one warm-up scheme in this process; the result record.

    The posterior's :func:`posteriordb.settings_for` settings are used with ``adaptation``
    replaced by the scheme's; their ``x64`` must match this process's ``jax_enable_x64``.
    """
    import jax

    import jppl

    settings = {**pdb.settings_for(name), "adaptation": SCHEMES[scheme]["adaptation"]}
    pdb.check_x64(name, settings)
    num_warmup = warmup_length(scheme, warmup_scale)
    spec, data, reference = pdb.import_models().load_posterior(name)
    args, kwargs = spec.load_data(data)
    sampler = pdb.make_sampler(spec, settings)
    key = jax.random.key(seed)

    start = time.perf_counter()
    state, warm = run_warmup(sampler, args, kwargs, key, num_chains, num_warmup)
    warmup_s = time.perf_counter() - start
    mcmc = pdb.make_mcmc(sampler, num_warmup, num_samples, num_chains)
    mcmc.post_warmup_state = state
    mcmc.run(None, *args, **kwargs)
    samples = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    wall = time.perf_counter() - start

    fields, draws = pdb.fields_and_draws(mcmc, spec, samples)
    params = pdb.compare(draws, reference)
    summary = pdb.summarize_comparison(params)
    grads = gradient_counts(sampler, warm, fields["num_steps"])
    ess_bulk, ess_tail = summary["min_ess_bulk"], summary["min_ess_tail"]
    max_depth = int(settings["max_tree_depth"])
    return {
        "name": name,
        "scheme": scheme,
        "status": "ok",
        "adaptation": settings["adaptation"],
        "num_warmup": num_warmup,
        "passed": summary["passed"],
        "summary": summary,
        "gradients": grads,
        "min_ess_bulk": ess_bulk,
        "min_ess_tail": ess_tail,
        "ess_bulk_per_grad": ess_bulk / grads["total"],
        "ess_tail_per_grad": ess_tail / grads["total"],
        "ess_bulk_per_sampling_grad": ess_bulk / grads["sampling"],
        "divergences_warmup": int(np.sum(warm["diverging"])),
        "divergences": int(np.sum(fields["diverging"])),
        "num_max_tree_depth": int(np.sum(fields["tree_depth"] >= max_depth)),
        "mean_accept_prob": float(np.mean(fields["accept_prob"])),
        "step_size_per_chain": np.asarray(state.step_size).tolist(),
        "time_s": wall,
        "warmup_s": warmup_s,
        "sample_s": wall - warmup_s,
        "settings": {
            **settings,
            "num_chains": num_chains,
            "num_warmup": num_warmup,
            "num_samples": num_samples,
            "chain_method": CHAIN_METHOD,
            "seed": seed,
            "reparam": pdb.reparam_sites(spec),
        },
        "dtype": str(np.asarray(jax.tree.leaves(samples)[0]).dtype),
        "mcmc_source": _source_digest(),
        "jppl_path": str(Path(jppl.__file__).parent),
        "parameters": params,
    }


def _worker(argv: Sequence[str]) -> None:
    """``--worker NAME SCHEME RUN_JSON OUT_PATH``: one run, its record to OUT_PATH."""
    name, scheme, run_json, out_path = argv
    import jax

    jax.config.update("jax_enable_x64", bool(pdb.settings_for(name)["x64"]))
    write_json(out_path, run_scheme(name, scheme, **json.loads(run_json)))


def run_in_subprocess(
    name: str, scheme: str, run: Mapping[str, Any], timeout: float | None = None
) -> dict[str, Any]:
    """:func:`run_scheme` in a fresh Python process (:func:`benchmarks.workers.run_worker`); a
    crash or timeout becomes a record with ``status`` ``"error"`` / ``"timeout"`` and the end
    of the worker's stderr."""
    args = [name, scheme, json.dumps(dict(run))]
    return run_worker("benchmarks.adaptation", args, {"name": name, "scheme": scheme}, timeout)


# ---------------------------------------------------------------------------------------------
# Summary and report
# ---------------------------------------------------------------------------------------------


def _ratio(results: Mapping[tuple[str, str], Any], name: str, scheme: str, key: str) -> float:
    """``results[name, scheme][key] / results[name, BASELINE][key]`` (nan if either is
    missing, failed or not positive)."""
    a, b = results.get((name, scheme)), results.get((name, BASELINE))
    if not a or not b or a["status"] != "ok" or b["status"] != "ok":
        return math.nan
    return ratio(a[key], b[key])


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per scheme: the median (and geometric mean) over posteriors of the ESS-per-gradient
    ratio to :data:`BASELINE`, the number of posteriors passing the reference check, errors,
    divergences and gradients."""
    results = {(r["name"], r["scheme"]): r for r in records}
    names = sorted({r["name"] for r in records})
    out: dict[str, Any] = {}
    for scheme in SCHEMES:
        mine = [results[n, scheme] for n in names if (n, scheme) in results]
        if not mine:
            continue
        ok = [r for r in mine if r["status"] == "ok"]
        entry: dict[str, Any] = {
            "num_models": len(mine),
            "num_passed": sum(bool(r["passed"]) for r in mine),
            "failed": [r["name"] for r in mine if not r["passed"]],
            "errors": [r["name"] for r in mine if r["status"] != "ok"],
            "divergences": sum(r["divergences"] for r in ok),
            "median_warmup_grads": statistics.median([r["gradients"]["warmup"] for r in ok])
            if ok
            else math.nan,
        }
        for key, label in (
            ("ess_bulk_per_grad", "ratio_ess_per_grad"),
            ("ess_bulk_per_sampling_grad", "ratio_ess_per_sampling_grad"),
            ("ess_tail_per_grad", "ratio_ess_tail_per_grad"),
        ):
            ratios = [_ratio(results, n, scheme, key) for n in names]
            ratios = [x for x in ratios if math.isfinite(x)]
            entry[f"median_{label}"] = statistics.median(ratios) if ratios else math.nan
            entry[f"geomean_{label}"] = (
                math.exp(statistics.fmean(math.log(x) for x in ratios)) if ratios else math.nan
            )
            entry[f"num_{label}"] = len(ratios)
        out[scheme] = entry
    return out


def markdown_report(report: Mapping[str, Any]) -> str:
    """The markdown summary of a :func:`main` report."""
    run = report["run"]
    records = report["results"]
    results = {(r["name"], r["scheme"]): r for r in records}
    names = [n for n in report["posteriors"] if any(k[0] == n for k in results)]
    schemes = [s for s in SCHEMES if any(k[1] == s for k in results)]
    warmups = ", ".join(f"{s} {warmup_length(s, run['warmup_scale'])}" for s in schemes)
    lines = [
        "# Warm-up adaptation: Stan windows vs nutpie on posteriordb (jppl NUTS, CPU)",
        "",
        f"{run['num_chains']} chains x {run['num_samples']} draws, warm-up draws: {warmups}; "
        f"chain_method={CHAIN_METHOD}, seed {run['seed']}, per-posterior settings of "
        "`benchmarks/posteriordb.py`. ESS = min over the posterior's reference quantities. "
        "ESS/grad = min bulk ESS / all gradient evaluations (warm-up + sampling, all chains); "
        "ratios are to stan_1000 on the same posterior. Pass = posteriordb reference check "
        "(every mean within 4 combined MCSE, every sd within 10%). Command(s): "
        + ", ".join(f"`{c}`" for c in report["commands"])
        + ".",
        "",
        f"Machine: {report['machine']['cpu_model']} ({report['machine']['cpus_usable']} usable "
        f"cores, load average at start {report['machine']['load_average']}); total "
        f"{report['total_s'] / 60:.1f} min of worker processes.",
        "",
        "jppl code used (path, digest of its `jppl/mcmc/*.py`): "
        + ", ".join(
            sorted(
                {
                    f"`{r['jppl_path']}` ({r['mcmc_source']})"
                    for r in records
                    if r["status"] == "ok" and "jppl_path" in r
                }
            )
        )
        + ".",
        "",
        "## Summary",
        "",
        "| scheme | median ESS/grad ratio | geo-mean ratio | median ratio per sampling grad | "
        "median tail-ESS/grad ratio | pass | divergences | median warm-up grads |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scheme in schemes:
        s = report["summary"][scheme]
        lines.append(
            f"| {scheme} | {fmt(s['median_ratio_ess_per_grad'])} "
            f"(n={s['num_ratio_ess_per_grad']}) | {fmt(s['geomean_ratio_ess_per_grad'])} | "
            f"{fmt(s['median_ratio_ess_per_sampling_grad'])} | "
            f"{fmt(s['median_ratio_ess_tail_per_grad'])} | "
            f"{s['num_passed']} / {s['num_models']} | {s['divergences']} | "
            f"{fmt(s['median_warmup_grads'])} |"
        )
    lines += [
        "",
        "## ESS/grad ratio to stan_1000 per posterior (NO = reference check failed)",
        "",
        "| posterior | " + " | ".join(schemes) + " |",
        "|---|" + "---|" * len(schemes),
    ]
    for name in names:
        cells = []
        for scheme in schemes:
            r = results.get((name, scheme))
            if r is None:
                cells.append("")
            elif r["status"] != "ok":
                cells.append(f"**{r['status'].upper()}**")
            else:
                value = _ratio(results, name, scheme, "ess_bulk_per_grad")
                cells.append(fmt(value) + ("" if r["passed"] else " **NO**"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Per posterior and scheme",
        "",
        "| posterior | scheme | pass | warm-up grads | sampling grads | min ESS bulk | "
        "min ESS tail | ESS/grad x1e3 | ESS/sampling grad x1e3 | div. (warm-up) | "
        "max-depth | time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        for scheme in schemes:
            r = results.get((name, scheme))
            if r is None:
                continue
            if r["status"] != "ok":
                lines.append(f"| {name} | {scheme} | **{r['status'].upper()}** |" + " - |" * 9)
                continue
            g = r["gradients"]
            lines.append(
                f"| {name} | {scheme} | {'yes' if r['passed'] else '**NO**'} | {g['warmup']} | "
                f"{g['sampling']} | {r['min_ess_bulk']:.0f} | {r['min_ess_tail']:.0f} | "
                f"{1e3 * r['ess_bulk_per_grad']:.3g} | "
                f"{1e3 * r['ess_bulk_per_sampling_grad']:.3g} | {r['divergences']} "
                f"({r['divergences_warmup']}) | {r['num_max_tree_depth']} | "
                f"{r['time_s']:.1f} |"
            )
    problems = []
    for r in records:
        if r["status"] != "ok":
            problems.append(f"{r['name']} / {r['scheme']}: {r['status']} ({error_line(r)})")
        elif not r["passed"]:
            bad = [
                f"{n} (z {p['z_mean']:+.2f}, sd {100 * p['sd_rel_err']:+.1f}%, "
                f"R-hat {p['rhat']:.3f})"
                for n, p in r["parameters"].items()
                if not p["ok"]
            ]
            problems.append(
                f"{r['name']} / {r['scheme']}: {', '.join(bad[:6])}"
                + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
                + f"; {r['divergences']} divergences, max R-hat {r['summary']['max_rhat']:.3f}"
            )
        elif not r["gradients"]["search_check_ok"]:
            problems.append(
                f"{r['name']} / {r['scheme']}: step-size search accounting not verified "
                f"(rel. err {r['gradients']['search_max_rel_err']:.2g})"
            )
    if problems:
        lines += ["", "## Failures and flags", ""] + [f"* {p}" for p in problems]
    return "\n".join(lines)


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def build_report(
    records: Mapping[tuple[str, str], Any],
    names_order: Sequence[str],
    run: Mapping[str, Any],
    commands: Sequence[str],
    machine: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON report: run settings, ordered records and the per-scheme summary."""
    ordered = [records[n, s] for n in names_order for s in SCHEMES if (n, s) in records]
    return {
        "benchmark": "adaptation",
        "commands": list(commands),
        "run": dict(run),
        "schemes": SCHEMES,
        "baseline": BASELINE,
        "posteriors": list(names_order),
        "machine": dict(machine),
        "total_s": sum(r.get("process_s", 0.0) for r in ordered),
        "summary": summarize(ordered),
        "results": ordered,
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if is_worker(argv):
        _worker(argv[1:])
        return {}
    all_names = pdb.import_models().posterior_names()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models", help="comma-separated posterior names (default: all 21)")
    parser.add_argument("--schemes", help=f"comma-separated schemes (default: {list(SCHEMES)})")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 chains x 200 draws")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--timeout", type=float, default=None, help="seconds per run")
    parser.add_argument("--out", help="output path without suffix (default: results folder)")
    parser.add_argument("--update", action="store_true", help="merge into existing results")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run in this process (no worker subprocesses; float32 posteriors only)",
    )
    parser.add_argument("--render", action="store_true", help="only rewrite the .md")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="only merge these result files (same run settings; later ones win) into --out",
    )
    opts = parser.parse_args(argv)

    names = pdb.select_posteriors(parser, opts.models, all_names)
    schemes = list(SCHEMES) if not opts.schemes else [s.strip() for s in opts.schemes.split(",")]
    bad = [s for s in schemes if s not in SCHEMES]
    if bad:
        parser.error(f"unknown schemes {bad}; known: {list(SCHEMES)}")
    run = {**(QUICK_RUN if opts.quick else FULL_RUN), "seed": opts.seed}
    default_out = RESULTS_DIR / ("adaptation_cpu_quick" if opts.quick else "adaptation_cpu")
    out = Path(opts.out) if opts.out else default_out
    json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    if opts.render:
        report = _load(json_path)
        write_markdown(md_path, markdown_report(report))
        return report
    if opts.merge:
        parts = [_load(Path(p)) for p in opts.merge]
        runs = {json.dumps(part["run"], sort_keys=True) for part in parts}
        if len(runs) != 1:
            parser.error(f"--merge: the files have different run settings: {sorted(runs)}")
        merged = {(r["name"], r["scheme"]): r for part in parts for r in part["results"]}
        commands = [c for part in parts for c in part["commands"]]
        report = build_report(merged, all_names, parts[0]["run"], commands, parts[0]["machine"])
        write_results(out.with_suffix(""), report, markdown_report(report))
        return report

    records: dict[tuple[str, str], Any] = {}
    commands: list[str] = []
    if opts.update and json_path.exists():
        old = _load(json_path)
        if old["run"] != run:
            parser.error(f"--update: {json_path} has run settings {old['run']}, not {run}")
        records = {(r["name"], r["scheme"]): r for r in old["results"]}
        commands = list(old["commands"])
    commands.append(" ".join(["python benchmarks/adaptation.py", *argv]))
    machine = machine_info(("arviz",))
    keyed = {k: v for k, v in run.items() if k != "seed"}
    report: dict[str, Any] = {}
    todo = [(n, s) for n in names for s in schemes]
    for i, (name, scheme) in enumerate(todo):
        print(f"[{i + 1}/{len(todo)}] {name} / {scheme} ...", flush=True)
        load = load_average()
        if opts.in_process:
            start = time.perf_counter()
            r = run_scheme(name, scheme, seed=opts.seed, **keyed)
            r["process_s"] = time.perf_counter() - start
        else:
            r = run_in_subprocess(name, scheme, run, timeout=opts.timeout)
        r["load_average_at_start"] = load
        records[name, scheme] = r
        if r["status"] == "ok":
            g = r["gradients"]
            print(
                f"    {'PASS' if r['passed'] else 'FAIL'}: grads warm-up {g['warmup']} + "
                f"sampling {g['sampling']}, min ESS bulk {r['min_ess_bulk']:.0f} / tail "
                f"{r['min_ess_tail']:.0f}, ESS/grad {r['ess_bulk_per_grad']:.3g}, "
                f"{r['divergences']} divergences, {r['time_s']:.1f} s",
                flush=True,
            )
        else:
            print(f"    {r['status'].upper()}: {r['stderr_tail'][-800:]}", flush=True)
        report = build_report(records, all_names, run, commands, machine)
        write_results(out.with_suffix(""), report, markdown_report(report))
    for scheme, s in report.get("summary", {}).items():
        print(
            f"{scheme}: median ESS/grad ratio {fmt(s['median_ratio_ess_per_grad'])}, "
            f"pass {s['num_passed']} / {s['num_models']}",
            flush=True,
        )
    return report


if __name__ == "__main__":
    main()
