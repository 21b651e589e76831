"""NUTS performance: jppl against NumPyro and BlackJAX on the same models, data and settings.

Run from the repository root::

    .venv/bin/python -m benchmarks.nuts            # full run (long: run it with nohup)
    .venv/bin/python -m benchmarks.nuts --quick    # smoke run (about 3 minutes)
    .venv/bin/python -m benchmarks.nuts --models eight_schools radon

The process exposes 4 fake CPU devices (``--xla_force_host_platform_device_count=4``, set
before JAX initialises) so that every library can run its 4 chains in its fastest CPU setup:

* **jppl**: ``MCMC(NUTS(model), chain_method=...)`` with ``"vectorized"`` (``vmap`` over the
  chains) and ``"sharded"`` (one chain per device, ``shard_map``); the one with the higher
  ESS/s is the headline, both are in the JSON;
* **NumPyro**: ``MCMC(NUTS(model), chain_method="parallel")`` (``pmap`` over the devices;
  it traces and compiles again on every ``run()``);
* **BlackJAX**: ``window_adaptation(nuts, logdensity_fn)`` then a ``lax.scan`` of
  ``nuts.step``, each ``jax.pmap``\\ ed over the devices (one chain per device), with the log
  density written by hand on the unconstrained parameters (the way BlackJAX is used).

Every library gets the same model (jppl and NumPyro: one model function written with the
library's ``sample``/``plate``/distributions; BlackJAX: the same density by hand, checked equal
in ``tests/test_benchmarks_nuts.py``; models, data and initial points in
:mod:`benchmarks.problems`), the same data, the same initial points (unconstrained
values drawn once, ``init_params``), target acceptance 0.8, maximum tree depth 10 and a
diagonal mass matrix unless stated, Stan-style window adaptation (each library's own).

Models:

1. ``eight_schools``: eight schools, non-centered (d = 10); 4 chains x 1000 warm-up / 1000 draws.
2. ``radon``: a radon-like varying-intercepts regression (synthetic: 919 observations, 85
   counties with skewed sizes, a floor covariate; fixed seed), centered (d = 89).
3. ``gauss100``: a 100-d correlated Gaussian (random correlation, scales spread over 2 orders
   of magnitude), **dense** mass matrix in all libraries.
4. ``covertype``: Bayesian logistic regression at covertype scale (581,012 x 54 synthetic
   float32 features plus an intercept, the Edward2 paper's NUTS benchmark); 1 chain x 100
   warm-up / 100 draws in every library (started at the data-generating weights, in the
   posterior bulk); jppl's model uses ``dist.BernoulliLogitGLM`` (same density, a gradient
   that reads ``X`` once), NumPyro's ``Bernoulli(logits=X @ w + b)``, BlackJAX's the same by
   hand. Also measured: the time of one jitted ``value_and_grad`` of each library's
   log density, the time per leapfrog step over that, and the gradient time over this machine's
   memory-bandwidth floor (``bytes(X) / bandwidth`` with the bandwidth of a jitted
   ``jnp.sum(X)``, measured in the same run, interleaved).

Metrics for each library and model (definitions in the markdown report):

* ``ttfd_s``: time to first draw: wall time of the first ``run()`` on a fresh sampler object
  (trace + compile + warm-up + sampling: ``run()`` hands over all draws at once), after a
  process-wide warm-up of each library on a tiny model; ``compile_s`` is the part JAX spent
  tracing, lowering and compiling (``jax.monitoring`` events).
* ``exec_s``: warm-up + sampling time without compiling: median over runs of ``wall -
  compile`` (jppl and BlackJAX reuse their compiled programs; NumPyro compiles on every run and
  its compile time is subtracted).
* ``grads``: leapfrog steps (gradient evaluations) of warm-up plus sampling. BlackJAX reports
  its warm-up steps; NumPyro's come from ``MCMC.warmup(collect_warmup=True)`` with the same key
  and init (bitwise the same warm-up as ``run``); jppl's from replaying its warm-up with the
  pure adaptation kernels (same keys and init; checked against the run's adapted step size).
* ``min_ess``: the smallest bulk ESS (``jppl.diagnostics.ess_bulk``, rank-normalized split
  chains) over all latent coordinates, the same function for the three libraries' draws.
* ``ess_per_s = min_ess / exec_s`` and ``ess_per_grad = min_ess / grads``.

jppl alone: a second ``run()`` with the same shapes (a new key) must not compile again; its
time to first draw is reported next to the first.

Results: ``benchmarks/results/nuts_cpu.json`` and ``benchmarks/results/nuts_cpu.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run by path: import the package from the root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

if __name__ == "__main__":
    # Fake CPU devices for the chains: must be set before JAX initialises.
    from benchmarks.workers import force_host_devices

    force_host_devices(4)

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from benchmarks.problems import PROBLEMS, Problem, tiny_problem
from benchmarks.report import (
    RESULTS_DIR,
    geomean,
    load_average,
    machine_info,
    markdown_table,
    ratio,
    write_results,
)
from benchmarks.timing import measure, stats

TARGET_ACCEPT = 0.8
MAX_TREE_DEPTH = 10
QUICK_MODELS = ("eight_schools", "covertype")


# ---------------------------------------------------------------------------------------------
# The libraries behind one interface
# ---------------------------------------------------------------------------------------------


@dataclass
class RunOutput:
    """What one ``run()`` produced (host arrays)."""

    draws: dict[str, np.ndarray]  # latent sites, (num_chains, num_draws, ...)
    num_steps: np.ndarray  # (num_chains, num_draws) leapfrog steps of each sampling transition
    num_divergent: int
    step_size: np.ndarray  # (num_chains,)
    warmup_steps: int | None = None  # known from the run itself (BlackJAX)
    phases: dict[str, float] = field(default_factory=dict)  # warm-up / sampling wall times


def _host(tree) -> Any:
    return jax.tree.map(np.asarray, tree)


def _draws_and_fields(mcmc, problem: Problem) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The latent draws (host arrays) and the extra fields, grouped by chain, of a jppl or
    NumPyro ``MCMC`` after ``run``."""
    samples = mcmc.get_samples(group_by_chain=True)
    latent = {k: v for k, v in samples.items() if k in problem.init}
    return _host(latent), mcmc.get_extra_fields(group_by_chain=True)


def _min_ess(draws: dict[str, np.ndarray]) -> float:
    from jppl.diagnostics import ess_bulk

    values = []
    for x in draws.values():
        ess = np.asarray(ess_bulk(np.asarray(x, np.float64)), np.float64).ravel()
        values.extend(ess.tolist())
    values = [v for v in values if math.isfinite(v)]
    return min(values) if values else math.nan


class JpplRunner:
    """``jppl.mcmc.MCMC(NUTS(model))`` with a given chain method."""

    library = "jppl"

    def __init__(self, chain_method: str):
        self.chain_method = chain_method
        self.name = f"jppl-{chain_method}"
        self.recompiles = False

    def setup(self, problem: Problem) -> None:
        import jppl
        import jppl.distributions as dist
        from jppl.mcmc import MCMC, NUTS

        self.problem = problem
        self.model = problem.make_model(jppl, dist)
        self.sampler = NUTS(
            self.model,
            dense_mass=problem.dense_mass,
            target_accept_prob=TARGET_ACCEPT,
            max_tree_depth=MAX_TREE_DEPTH,
        )
        self.mcmc = MCMC(
            self.sampler,
            num_warmup=problem.num_warmup,
            num_samples=problem.num_samples,
            num_chains=problem.num_chains,
            chain_method=self.chain_method,
            progress_bar=False,
            warn=False,
        )

    def run(self, seed: int) -> Callable[[], RunOutput]:
        p = self.problem
        self.mcmc.run(jax.random.key(seed), *p.args, init_params=p.init_for(), **p.kwargs)
        samples = self.mcmc.get_samples(group_by_chain=True)
        jax.block_until_ready(samples)
        return self._output

    def _output(self) -> RunOutput:
        draws, fields = _draws_and_fields(self.mcmc, self.problem)
        return RunOutput(
            draws=draws,
            num_steps=np.asarray(fields["num_steps"]),
            num_divergent=int(self.mcmc.num_divergent),
            step_size=np.asarray(self.mcmc.last_state.step_size),
            phases=dict(self.mcmc.timings),
        )

    def count_warmup_steps(self, seed: int) -> dict[str, Any]:
        """Replay the warm-up of ``run(seed)`` with the pure adaptation kernels (same keys,
        init and options as :meth:`jppl.mcmc.NUTS.warmup`) and count its leapfrog steps."""
        from jppl.mcmc.adaptation import nuts_kernel, window_adaptation
        from jppl.mcmc.state import chain_keys

        p, sampler = self.problem, self.sampler
        target = sampler.bind(jax.random.key(0), p.args, p.kwargs)
        keys = chain_keys(jax.random.key(seed), p.num_chains)
        warm_keys = jax.vmap(lambda k: jax.random.split(k, 3))(keys)[:, 1]
        positions = p.flat_init()

        def one(key, position, args, kwargs):
            logdensity = target.make_logdensity(args, kwargs)
            warm = window_adaptation(
                logdensity,
                p.num_warmup,
                kernel=nuts_kernel(
                    logdensity,
                    max_tree_depth=MAX_TREE_DEPTH,
                    divergence_threshold=sampler.divergence_threshold,
                ),
                dense_mass=p.dense_mass,
                target_accept_prob=TARGET_ACCEPT,
                initial_step_size=sampler.step_size,
            )
            _, params, infos = warm.run(key, position)
            return jnp.sum(infos.kernel_info.num_steps), params.step_size

        if self.chain_method == "vectorized":
            fn = jax.jit(jax.vmap(one, in_axes=(0, 0, None, None)))
            steps, step_size = fn(warm_keys, positions, p.args, p.kwargs)
        else:  # the single-chain program, as each device runs it
            fn = jax.jit(lambda k, x, a, kw: jax.lax.map(lambda kx: one(*kx, a, kw), (k, x)))
            steps, step_size = fn(warm_keys, positions, p.args, p.kwargs)
        return {"steps": int(np.sum(steps)), "step_size": np.asarray(step_size)}

    def leapfrog_probe(self, num_draws: int) -> Callable[[], tuple[int, float | None]]:
        """``probe() -> (leapfrog steps, seconds)``: ``num_draws`` post-warm-up transitions
        from the last state through ``MCMC.run`` (a fresh ``MCMC`` with ``post_warmup_state``
        set, the same key every call, so every call does the same work); the seconds are
        ``MCMC.timings["sample"]`` (the compiled sampling program, without the driver's fixed
        per-``run`` host overhead, which would not be per leapfrog step)."""
        from jppl.mcmc import MCMC

        p, state = self.problem, self.mcmc.last_state
        probe = MCMC(
            self.sampler,
            num_warmup=0,
            num_samples=num_draws,
            num_chains=p.num_chains,
            chain_method=self.chain_method,
            progress_bar=False,
            warn=False,
        )

        def run() -> tuple[int, float | None]:
            probe.post_warmup_state = state
            probe.run(jax.random.key(7), *p.args, **p.kwargs)
            steps = int(np.sum(np.asarray(probe.get_extra_fields()["num_steps"])))
            return steps, probe.timings["sample"]

        return run

    def logdensity_fn(self) -> Callable:
        """``(flat z, *args, **kwargs) -> log density`` as the sampler sees it."""
        p = self.problem
        target = self.sampler.bind(jax.random.key(0), p.args, p.kwargs)
        return lambda z, *args, **kwargs: target.make_logdensity(args, kwargs)(z)


class NumpyroRunner:
    """``numpyro.infer.MCMC(NUTS(model), chain_method="parallel")``."""

    library = "numpyro"
    name = "numpyro"
    recompiles = True

    def setup(self, problem: Problem) -> None:
        import numpyro
        import numpyro.distributions as dist
        from numpyro.infer import MCMC, NUTS

        self.problem = problem
        self.model = problem.make_model(numpyro, dist)
        c = problem.num_chains
        self.chain_method = "parallel" if c > 1 else "sequential"

        def make():
            kernel = NUTS(
                self.model,
                dense_mass=problem.dense_mass,
                target_accept_prob=TARGET_ACCEPT,
                max_tree_depth=MAX_TREE_DEPTH,
            )
            return MCMC(
                kernel,
                num_warmup=problem.num_warmup,
                num_samples=problem.num_samples,
                num_chains=c,
                chain_method=self.chain_method,
                progress_bar=False,
            )

        self.make = make
        self.mcmc = make()

    def _init(self):
        init = self.problem.init_for()
        if self.problem.num_chains == 1:
            init = {k: v[0] for k, v in init.items()}
        return init

    def run(self, seed: int) -> Callable[[], RunOutput]:
        p = self.problem
        self.mcmc.run(
            jax.random.PRNGKey(seed),
            *p.args,
            init_params=self._init(),
            extra_fields=("num_steps", "diverging", "adapt_state.step_size"),
            **p.kwargs,
        )
        jax.block_until_ready(self.mcmc.get_samples(group_by_chain=True))
        return self._output

    def _output(self) -> RunOutput:
        draws, fields = _draws_and_fields(self.mcmc, self.problem)
        return RunOutput(
            draws=draws,
            num_steps=np.asarray(fields["num_steps"]),
            num_divergent=int(np.sum(np.asarray(fields["diverging"]))),
            step_size=np.asarray(fields["adapt_state.step_size"])[:, -1],
        )

    def count_warmup_steps(self, seed: int) -> dict[str, Any]:
        p = self.problem
        mcmc = self.make()
        mcmc.warmup(
            jax.random.PRNGKey(seed),
            *p.args,
            init_params=self._init(),
            collect_warmup=True,
            extra_fields=("num_steps",),
            **p.kwargs,
        )
        steps = np.asarray(mcmc.get_extra_fields()["num_steps"])
        return {"steps": int(np.sum(steps))}

    def leapfrog_probe(self, num_draws: int) -> Callable[[], tuple[int, float | None]]:
        """``num_draws`` transitions of the adapted kernel (``NUTS.sample``, what NumPyro's
        sampling loop calls) from the last state, in a jitted ``lax.scan`` (chain 0)."""
        p, kernel = self.problem, self.mcmc.sampler
        state = self.mcmc.last_state
        if p.num_chains > 1:
            state = jax.tree.map(lambda x: x[0], state)

        @jax.jit
        def transitions(state):
            def body(s, _):
                s = kernel.sample(s, p.args, p.kwargs)
                return s, s.num_steps

            return jax.lax.scan(body, state, None, length=num_draws)[1]

        return lambda: (int(np.sum(np.asarray(transitions(state)))), None)

    def logdensity_fn(self) -> Callable:
        from numpyro.infer.util import potential_energy

        p = self.problem
        _, unravel = ravel_pytree({k: jnp.asarray(v[0]) for k, v in p.init.items()})
        return lambda z, *args, **kwargs: -potential_energy(self.model, args, kwargs, unravel(z))


class BlackjaxRunner:
    """BlackJAX ``window_adaptation`` + ``nuts``, ``jax.pmap``\\ ed over the devices (``jit`` for
    one chain); the hand-written log density, data passed as arguments."""

    library = "blackjax"
    name = "blackjax"
    recompiles = False

    def setup(self, problem: Problem) -> None:
        import blackjax
        from blackjax.adaptation.base import get_filter_adapt_info_fn

        self.problem = problem
        dense = problem.dense_mass

        def logdensity_of(data):
            args, kwargs = data
            return lambda params: problem.logdensity(params, *args, **kwargs)

        def warm(key, position, data):
            logdensity = logdensity_of(data)
            adaptation = blackjax.window_adaptation(
                blackjax.nuts,
                logdensity,
                is_mass_matrix_diagonal=not dense,
                target_acceptance_rate=TARGET_ACCEPT,
                adaptation_info_fn=get_filter_adapt_info_fn(
                    info_keys={"num_integration_steps", "is_divergent"}
                ),
                max_num_doublings=MAX_TREE_DEPTH,
            )
            (state, params), info = adaptation.run(key, position, num_steps=problem.num_warmup)
            steps = jnp.sum(info.info.num_integration_steps)
            n_div = jnp.sum(info.info.is_divergent.astype(jnp.int32))
            return state, params["step_size"], params["inverse_mass_matrix"], steps, n_div

        def sample(key, state, step_size, inverse_mass_matrix, data, num_samples):
            kernel = blackjax.nuts(
                logdensity_of(data),
                step_size=step_size,
                inverse_mass_matrix=inverse_mass_matrix,
                max_num_doublings=MAX_TREE_DEPTH,
            )

            def body(s, k):
                s, info = kernel.step(k, s)
                return s, (s.position, info.num_integration_steps, info.is_divergent)

            keys = jax.random.split(key, num_samples)
            _, (positions, steps, divergent) = jax.lax.scan(body, state, keys)
            return positions, steps, divergent

        self._sample_one = jax.jit(sample, static_argnums=5)
        sample_n = partial(sample, num_samples=problem.num_samples)
        if problem.num_chains > 1:
            self.warm = jax.pmap(warm, in_axes=(0, 0, None))
            self.sample = jax.pmap(sample_n, in_axes=(0, 0, 0, 0, None))
        else:
            self.warm = _batch1(jax.jit(warm), num_batched=2)
            self.sample = _batch1(jax.jit(sample_n), num_batched=4)

    def run(self, seed: int) -> Callable[[], RunOutput]:
        p = self.problem
        key_warm, key_sample = jax.random.split(jax.random.key(seed))
        c = p.num_chains
        data = (p.args, p.kwargs)
        t0 = time.perf_counter()
        state, step_size, imm, w_steps, w_div = jax.block_until_ready(
            self.warm(jax.random.split(key_warm, c), p.init_for(), data)
        )
        t1 = time.perf_counter()
        self._warm_state = (state, step_size, imm)
        out = jax.block_until_ready(
            self.sample(jax.random.split(key_sample, c), state, step_size, imm, data)
        )
        t2 = time.perf_counter()
        self._out = (out, step_size, w_steps, w_div, {"warmup": t1 - t0, "sample": t2 - t1})
        return self._output

    def _output(self) -> RunOutput:
        (positions, steps, divergent), step_size, w_steps, w_div, phases = self._out
        return RunOutput(
            draws=_host(positions),
            num_steps=np.asarray(steps),
            num_divergent=int(np.sum(np.asarray(divergent))),
            step_size=np.asarray(step_size),
            warmup_steps=int(np.sum(np.asarray(w_steps))),
            phases=phases,
        )

    def count_warmup_steps(self, seed: int) -> dict[str, Any]:
        raise NotImplementedError  # reported by the run itself

    def leapfrog_probe(self, num_draws: int) -> Callable[[], tuple[int, float | None]]:
        """``num_draws`` transitions of ``nuts.step`` from the adapted state (chain 0)."""
        p = self.problem
        state, step_size, imm = jax.tree.map(lambda x: x[0], self._warm_state)
        key, data = jax.random.key(7), (p.args, p.kwargs)

        def run() -> tuple[int, float | None]:
            _, steps, _ = self._sample_one(key, state, step_size, imm, data, num_draws)
            return int(np.sum(np.asarray(steps))), None

        return run

    def logdensity_fn(self) -> Callable:
        p = self.problem
        _, unravel = ravel_pytree({k: jnp.asarray(v[0]) for k, v in p.init.items()})
        return lambda z, *args, **kwargs: p.logdensity(unravel(z), *args, **kwargs)


def _batch1(fn: Callable, num_batched: int) -> Callable:
    """Run a single-chain function on inputs with a leading chain dim of 1 (the first
    ``num_batched`` arguments), adding the dim back to the outputs."""

    def run(*args):
        batched = [jax.tree.map(lambda x: x[0], a) for a in args[:num_batched]]
        out = fn(*batched, *args[num_batched:])
        return jax.tree.map(lambda x: jnp.asarray(x)[None], out)

    return run


def make_runners(chain_methods=("vectorized", "sharded")) -> list:
    return [*(JpplRunner(m) for m in chain_methods), NumpyroRunner(), BlackjaxRunner()]


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


def warm_up(runners: list, log) -> float:
    """One tiny run per library: one-time costs (imports, backend start, primitive
    registration) are then not charged to the first benchmark."""
    start = time.perf_counter()
    problem = tiny_problem()
    for runner in runners:
        runner.setup(problem)
        runner.run(0)()
    seconds = time.perf_counter() - start
    log(f"process warm-up: {seconds:.1f} s")
    return seconds


def _median(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return statistics.median(xs) if xs else math.nan


def bench_problem(
    problem: Problem, runners: list, log, order_flip: bool, count_warmup: bool = True
) -> dict[str, Any]:
    """First run, jppl's second run, interleaved repeats and step counts for each runner."""
    res: dict[str, dict[str, Any]] = {}
    outputs: dict[str, RunOutput] = {}
    order = runners[::-1] if order_flip else runners
    for runner in order:
        runner.setup(problem)
        m, get = measure(runner.run, 0)
        out = get()
        outputs[runner.name] = out
        _annotate(m, out)
        res[runner.name] = {"library": runner.library, "first_run": m, "runs": [m]}
        log(
            f"  {runner.name:16s} first run {m['wall_s']:7.2f} s (compile {m['compile_s']:6.2f}"
            f" s, cpu {m['cpu_s']:6.2f} s, load {m['load']:.1f})"
        )
    # jppl: a second run with the same shapes and a new key must not compile again.
    for runner in runners:
        if runner.library != "jppl":
            continue
        m, get = measure(runner.run, 1)
        _annotate(m, get())
        res[runner.name]["second_run"] = m
        log(f"  {runner.name:16s} second run {m['wall_s']:6.2f} s (compile {m['compile_s']:.3f} s)")
    # Interleaved repeats of the first run (same key: the same work), for exec times.
    for r in range(problem.repeats):
        for runner in order if r % 2 else order[::-1]:
            m, get = measure(runner.run, 0)
            _annotate(m, get())
            res[runner.name]["runs"].append(m)
    # Leapfrog steps of the warm-up (untimed replays where the run does not report them).
    for runner in runners:
        out = outputs[runner.name]
        entry = res[runner.name]
        if out.warmup_steps is not None:
            entry["warmup_steps_source"] = "run"
            warm_steps = out.warmup_steps
        elif not count_warmup:
            entry["warmup_steps_source"] = "not counted (--quick)"
            warm_steps = None
        else:
            counted = runner.count_warmup_steps(0)
            warm_steps = counted["steps"]
            entry["warmup_steps_source"] = "replay"
            if "step_size" in counted:
                entry["warmup_replay_step_size_match"] = bool(
                    np.allclose(counted["step_size"], out.step_size, rtol=1e-5)
                )
        entry.update(summarize(problem, runner, out, warm_steps, entry))
        log(
            f"  {runner.name:16s} exec {entry['exec_s']:7.3f} s  grads {entry['grads'] or -1:8d}  "
            f"min ESS {entry['min_ess']:7.1f}  ESS/s {entry['ess_per_s']:9.1f}  "
            f"ESS/grad {entry['ess_per_grad']:.4f}  div {entry['num_divergent']}"
        )
    return res


def summarize(problem: Problem, runner, out: RunOutput, warm_steps: int | None, entry) -> dict:
    runs = entry["runs"]
    # Exec time: runs after the first where the program is reused; NumPyro compiles on every
    # run, so all its runs count (compile time subtracted).
    reuse = runs[1:] if (not runner.recompiles and len(runs) > 1) else runs
    exec_s = _median([r["exec_s"] for r in reuse])
    sample_steps = int(np.sum(out.num_steps))
    grads = warm_steps + sample_steps if warm_steps is not None else None
    min_ess = _min_ess(out.draws)
    result = {
        "exec_s": exec_s,
        "exec_runs_s": [r["exec_s"] for r in reuse],
        "ttfd_s": entry["first_run"]["wall_s"],
        "ttfd_cpu_s": entry["first_run"]["cpu_s"],
        "compile_s": entry["first_run"]["compile_s"],
        "grads_warmup": warm_steps,
        "grads_sampling": sample_steps,
        "grads": grads,
        "mean_steps_per_draw": sample_steps / max(1, out.num_steps.size),
        "min_ess": min_ess,
        "ess_per_s": min_ess / exec_s,
        "ess_per_grad": min_ess / grads if grads else math.nan,
        "num_divergent": out.num_divergent,
        "step_size": out.step_size.tolist(),
        "per_leapfrog_s": exec_s / grads if grads else math.nan,
    }
    # Sampling phase alone (jppl and BlackJAX time their two programs), in runs that did not
    # compile (the repeats and jppl's second run).
    warm_runs = [r for r in runs[1:] + [entry.get("second_run")] if r and "sample_s" in r]
    if warm_runs:
        result["sample_phase_s"] = _median([r["sample_s"] for r in warm_runs])
        result["per_leapfrog_sampling_s"] = _median(
            [r["sample_s"] / max(1, r["sample_steps"]) for r in warm_runs]
        )
    return result


def _annotate(m: dict[str, Any], out: RunOutput) -> None:
    """Add a run's sampling steps and phase times to its measurement record."""
    m["sample_steps"] = int(np.sum(out.num_steps))
    m["min_ess"] = _min_ess(out.draws)
    if "sample" in out.phases:
        m["warmup_s"] = out.phases.get("warmup", math.nan)
        m["sample_s"] = out.phases["sample"]


def headline_jppl(res: dict[str, Any]) -> str:
    """The jppl chain method with the higher ESS/s."""
    names = [n for n, r in res.items() if r["library"] == "jppl"]
    return max(
        names, key=lambda n: res[n]["ess_per_s"] if math.isfinite(res[n]["ess_per_s"]) else -1.0
    )


# ---------------------------------------------------------------------------------------------
# Gradient and memory-bandwidth measurements (covertype)
# ---------------------------------------------------------------------------------------------


GRAD_LOOP = 10


def _grad_loop(value_and_grad: Callable, z: jax.Array, args: tuple, kwargs: dict) -> jax.Array:
    def body(_, carry):
        z, acc = carry
        value, grad = value_and_grad(z, *args, **kwargs)
        return z + 1e-6 * jnp.tanh(grad), acc + value

    return jax.lax.fori_loop(0, GRAD_LOOP, body, (z, jnp.zeros((), z.dtype)))[1]


def bench_gradient(
    problem: Problem, runners: list, log, repeats: int, num_draws: int = 10, probe_every: int = 3
) -> dict[str, Any]:
    """Jitted ``value_and_grad`` of each library's log density (data as arguments), the time
    per leapfrog step of each library's sampling loop (``num_draws`` transitions from the
    adapted state, every ``probe_every`` rounds) and the memory-bandwidth floor of one pass
    over the design matrix, all interleaved in the same rounds (so that a change of machine
    load affects them alike)."""
    X = problem.args[0]
    nbytes = int(X.size) * X.dtype.itemsize
    z = problem.flat_init()[0]
    fns: dict[str, Callable[[], Any]] = {}
    done = set()
    for runner in runners:  # already set up for ``problem`` (bench_problem ran them)
        if runner.library in done:
            continue
        done.add(runner.library)
        vg = jax.jit(jax.value_and_grad(runner.logdensity_fn()))
        fns[f"grad:{runner.library}"] = lambda vg=vg: vg(z, *problem.args, **problem.kwargs)
        # The same gradient inside a compiled loop (as a sampler runs it: no dispatch, buffers
        # reused): GRAD_LOOP evaluations, each at a point depending on the previous gradient.
        loop = jax.jit(partial(_grad_loop, jax.value_and_grad(runner.logdensity_fn())))
        fns[f"grad-loop:{runner.library}"] = lambda loop=loop: loop(z, problem.args, problem.kwargs)
    sum_fn = jax.jit(jnp.sum)
    # STREAM-like "scale" in place (donated buffer: no fresh 100 MB allocation per call).
    negate = jax.jit(lambda x: -x, donate_argnums=0)
    buffer = [X + 0.0]

    def copy_in_place():
        buffer[0] = negate(buffer[0])
        return buffer[0]

    fns["sum(X)"] = lambda: sum_fn(X)
    fns["copy(X)"] = copy_in_place
    # Leapfrog steps in each library's sampling loop, in the same rounds as the gradients.
    probes = {f"leapfrog:{r.name}": r.leapfrog_probe(num_draws) for r in runners}
    steps: dict[str, int] = {}
    for k, probe in probes.items():
        steps[k] = probe()[0]  # compile
        fns[k] = probe
    times: dict[str, list[float]] = {k: [] for k in fns}
    for k, fn in fns.items():  # compile
        if k not in probes:
            jax.block_until_ready(fn())
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats + 1):
        for k in names if r % 2 == 0 else names[::-1]:
            if k in probes and r % probe_every:
                continue
            m, out = measure(fns[k])
            seconds = m["wall_s"]
            if k in probes:
                assert out[0] == steps[k], (k, out, steps[k])  # the same work every call
                seconds = out[1] if out[1] is not None else seconds
            if r > 0:
                times[k].append(seconds)
                cpu[k].append(m["cpu_s"])
    out: dict[str, Any] = {
        "design_matrix_bytes": nbytes,
        "repeats": repeats,
        "times": {},
        "probe_draws": num_draws,
        "probe_steps": steps,
    }
    for k in names:
        out["times"][k] = {**stats(times[k]), "cpu_median": _median(cpu[k])}
    for k in probes:
        name = k.removeprefix("leapfrog:")
        out[f"per_leapfrog_s:{name}"] = out["times"][k]["median"] / steps[k]
    sum_s = out["times"]["sum(X)"]["median"]
    copy_s = out["times"]["copy(X)"]["median"]
    out["bandwidth_sum_GBps"] = nbytes / sum_s / 1e9
    out["bandwidth_copy_GBps"] = 2 * nbytes / copy_s / 1e9
    out["floor_s"] = sum_s  # one read of X at the measured read bandwidth
    for lib in sorted(done):
        g = out["times"][f"grad:{lib}"]["median"]
        out[f"grad_s:{lib}"] = g
        out[f"grad_over_floor:{lib}"] = g / sum_s
        out[f"grad_loop_s:{lib}"] = out["times"][f"grad-loop:{lib}"]["median"] / GRAD_LOOP
    for r in runners:
        per = out[f"per_leapfrog_s:{r.name}"]
        out[f"per_leapfrog_over_grad:{r.name}"] = per / out[f"grad_s:{r.library}"]
        out[f"per_leapfrog_over_grad_loop:{r.name}"] = per / out[f"grad_loop_s:{r.library}"]
    log(
        "  per leapfrog: "
        + ", ".join(
            f"{r.name} {1e3 * out[f'per_leapfrog_s:{r.name}']:.1f} ms "
            f"({out[f'per_leapfrog_over_grad:{r.name}']:.2f}x grad, "
            f"{out[f'per_leapfrog_over_grad_loop:{r.name}']:.2f}x grad in a loop)"
            for r in runners
        )
    )
    log(
        "  gradient: "
        + ", ".join(
            f"{lib} {1e3 * out[f'grad_s:{lib}']:.1f} ms (in a loop "
            f"{1e3 * out[f'grad_loop_s:{lib}']:.1f} ms)"
            for lib in sorted(done)
        )
        + f"; sum(X) {1e3 * sum_s:.1f} ms ({out['bandwidth_sum_GBps']:.1f} GB/s), "
        f"copy(X) {1e3 * copy_s:.1f} ms ({out['bandwidth_copy_GBps']:.1f} GB/s)"
    )
    return out


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

PEERS = ("numpyro", "blackjax")
RATIO_FIELDS = {
    "ess_per_s": "ess_per_s",
    "ess_per_grad": "ess_per_grad",
    "ttfd": "ttfd_s",
    "ttfd_cpu": "ttfd_cpu_s",
    "compile": "compile_s",
    "exec": "exec_s",
    "per_leapfrog": "per_leapfrog_s",
}
"""The ratio columns ``jppl headline / peer``: ``{ratio name: result field}``."""


def _noisy_ess(model: dict[str, Any]) -> bool:
    """Too few draws for a stable min ESS (the covertype setting)."""
    settings = model.get("settings", {})
    return settings.get("num_chains", 4) * settings.get("num_samples", 1000) < 1000


def ratios(model_res: dict[str, Any]) -> dict[str, Any]:
    head = headline_jppl(model_res)
    j = model_res[head]
    out: dict[str, Any] = {"jppl_headline": head}
    for peer in PEERS:
        if peer not in model_res:
            continue
        q = model_res[peer]
        out[peer] = {key: ratio(j.get(f), q.get(f)) for key, f in RATIO_FIELDS.items()}
    return out


def _status(ok: bool | None) -> str:
    if ok is None:
        return "n/a"
    return "**met**" if ok else "**missed**"


def _jppl_per_leapfrog(cov: dict[str, Any], grad: dict[str, Any]) -> tuple[float, str]:
    """jppl's time per leapfrog step on covertype: the faster chain method in the interleaved
    probe (1 chain: both run the same transitions), else the headline's sampling phase."""
    probed = {
        name: grad[f"per_leapfrog_s:{name}"]
        for name, r in cov["results"].items()
        if r["library"] == "jppl" and f"per_leapfrog_s:{name}" in grad
    }
    if probed:
        best = min(probed, key=probed.get)
        return probed[best], best
    head = cov["ratios"]["jppl_headline"]
    j = cov["results"][head]
    return j.get("per_leapfrog_sampling_s", j["per_leapfrog_s"]), head


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    models = results["models"]
    rows = []
    ess_ratios = {
        m: r["ratios"]["numpyro"]["ess_per_s"]
        for m, r in models.items()
        if "numpyro" in r["ratios"]
    }
    if ess_ratios:
        worst = min(ess_ratios, key=ess_ratios.get)
        rows.append(
            {
                "target": "ESS/s >= NumPyro on every model",
                "value": f"min {ess_ratios[worst]:.2f}x ({worst})",
                "met": all(v >= 1.0 for v in ess_ratios.values()),
            }
        )
        gm = geomean(list(ess_ratios.values()))
        rows.append(
            {
                "target": "ESS/s geometric mean >= 1.3x NumPyro",
                "value": f"{gm:.2f}x",
                "met": bool(gm >= 1.3),
            }
        )
    ttfd = {
        m: r["ratios"]["numpyro"]["ttfd"] for m, r in models.items() if "numpyro" in r["ratios"]
    }
    if ttfd:
        worst = max(ttfd, key=ttfd.get)
        rows.append(
            {
                "target": "time to first draw <= 0.5x NumPyro on every model",
                "value": f"max {ttfd[worst]:.2f}x ({worst})",
                "met": all(v <= 0.5 for v in ttfd.values()),
            }
        )
    ttfd_cpu = {
        m: r["ratios"]["numpyro"].get("ttfd_cpu", math.nan)
        for m, r in models.items()
        if "numpyro" in r["ratios"]
    }
    if ttfd_cpu and all(math.isfinite(v) for v in ttfd_cpu.values()):
        worst = max(ttfd_cpu, key=ttfd_cpu.get)
        rows.append(
            {
                "target": "(same, in process CPU time: less sensitive to machine load)",
                "value": f"max {ttfd_cpu[worst]:.2f}x ({worst})",
                "met": all(v <= 0.5 for v in ttfd_cpu.values()),
            }
        )
    grad = results.get("gradient")
    cov = models.get("covertype")
    if grad is not None and cov is not None:
        per, label = _jppl_per_leapfrog(cov, grad)
        ratio = per / grad["grad_s:jppl"]
        rows.append(
            {
                "target": "per leapfrog step <= 1.10x one value_and_grad (covertype)",
                "value": f"{ratio:.2f}x ({1e3 * per:.1f} ms vs {1e3 * grad['grad_s:jppl']:.1f} ms;"
                f" {label})",
                "met": bool(ratio <= 1.10),
            }
        )
        loop_s = grad.get("grad_loop_s:jppl", math.nan)
        if math.isfinite(loop_s):
            ratio = per / loop_s
            rows.append(
                {
                    "target": "(same, vs the gradient inside a compiled loop: the stricter "
                    "reference)",
                    "value": f"{ratio:.2f}x ({1e3 * per:.1f} ms vs {1e3 * loop_s:.1f} ms)",
                    "met": bool(ratio <= 1.10),
                }
            )
        g = grad["grad_over_floor:jppl"]
        rows.append(
            {
                "target": "gradient <= 2x memory-bandwidth floor (covertype)",
                "value": f"{g:.2f}x ({1e3 * grad['grad_s:jppl']:.1f} ms vs "
                f"{1e3 * grad['floor_s']:.1f} ms)",
                "met": bool(g <= 2.0),
            }
        )
    return rows


def report(results: dict[str, Any]) -> str:
    info = results["machine"]
    models = results["models"]
    lines = [
        "# NUTS on CPU: jppl vs NumPyro vs BlackJAX",
        "",
        f"Machine: {info['cpu_model']}, {info['cpus_usable']} usable cores, "
        f"{len(info['devices'])} host devices (`{info['XLA_FLAGS']}`); jax {info['jax']}, "
        f"numpyro {info.get('numpyro')}, blackjax {info.get('blackjax')}; load average at start "
        f"{info['load_average']}, at end {results.get('load_end')}; "
        f"{'quick' if results['quick'] else 'full'} run, {results['elapsed_s']:.0f} s.",
        "",
        "Settings: target accept 0.8, max tree depth 10, diagonal mass unless stated, 4 chains "
        "x 1000 warm-up / 1000 draws unless stated, the same initial points for every library. "
        "jppl: `MCMC(NUTS(model))`, chain_method `vectorized` and `sharded` (4 fake devices; "
        "`sharded` is the default there), one compiled program for warm-up + sampling; "
        "covertype's likelihood is `dist.BernoulliLogitGLM` (fused gradient); "
        "the better ESS/s is the headline (**bold**). NumPyro: `chain_method='parallel'` "
        "(recompiles on every `run()`). BlackJAX: `window_adaptation` + `nuts` under "
        "`jax.pmap` (hand-written log density).",
        "",
        "* **TTFD**: time to first draw = wall time of the first `run()` on a fresh sampler "
        "(trace + compile + warm-up + sampling), after a process-wide warm-up of each library; "
        "**compile**: JAX trace + lower + compile time within it.",
        "* **exec**: warm-up + sampling without compile (median of the repeated runs; NumPyro: "
        "wall minus its compile time on each run).",
        "* **grads**: leapfrog steps of warm-up + sampling; **min ESS**: smallest bulk ESS "
        "(`jppl.diagnostics.ess_bulk`) over all latent coordinates; ESS/s = min ESS / exec.",
        "",
    ]
    header = [
        "model",
        "library",
        "settings",
        "TTFD s",
        "TTFD cpu s",
        "compile s",
        "exec s",
        "grads",
        "min ESS",
        "ESS/s",
        "ESS/grad",
        "div",
        "load",
    ]
    rows = []
    for name, m in models.items():
        head = m["ratios"]["jppl_headline"]
        for lib, r in m["results"].items():
            label = f"**{lib}**" if lib == head else lib
            rows.append(
                [
                    name,
                    label,
                    m["settings_note"] or "",
                    r["ttfd_s"],
                    r.get("ttfd_cpu_s"),
                    r["compile_s"],
                    r["exec_s"],
                    r["grads"],
                    r["min_ess"],
                    r["ess_per_s"],
                    r["ess_per_grad"],
                    r["num_divergent"],
                    r["first_run"]["load"],
                ]
            )
    lines += [markdown_table(header, rows), ""]

    lines += [
        "## Ratios (jppl headline / peer)",
        "",
        "ESS/s and ESS/grad: > 1 means jppl is better; TTFD and exec: < 1 means jppl is faster.",
        "",
    ]
    header = [
        "model",
        "jppl",
        "ESS/s vs NumPyro",
        "ESS/s vs BlackJAX",
        "TTFD vs NumPyro",
        "TTFD vs BlackJAX",
        "TTFD cpu vs NumPyro",
        "ESS/grad vs NumPyro",
        "ESS/grad vs BlackJAX",
        "exec vs NumPyro",
        "exec vs BlackJAX",
    ]
    rows = []
    keys = [
        ("numpyro", "ess_per_s"),
        ("blackjax", "ess_per_s"),
        ("numpyro", "ttfd"),
        ("blackjax", "ttfd"),
        ("numpyro", "ttfd_cpu"),
        ("numpyro", "ess_per_grad"),
        ("blackjax", "ess_per_grad"),
        ("numpyro", "exec"),
        ("blackjax", "exec"),
    ]
    for name, m in models.items():
        rt = m["ratios"]
        rows.append(
            [name, rt["jppl_headline"].removeprefix("jppl-")]
            + [rt.get(p, {}).get(k, math.nan) for p, k in keys]
        )
    rows.append(
        ["geometric mean", ""]
        + [
            geomean([m["ratios"].get(p, {}).get(k, math.nan) for m in models.values()])
            for p, k in keys
        ]
    )
    noisy = [name for name, m in models.items() if _noisy_ess(m)]
    if noisy and len(noisy) < len(models):
        rows.append(
            ["geometric mean (excl. " + ", ".join(noisy) + ")", ""]
            + [
                geomean(
                    [
                        m["ratios"].get(p, {}).get(k, math.nan)
                        for name, m in models.items()
                        if name not in noisy
                    ]
                )
                for p, k in keys
            ]
        )
    lines += [markdown_table(header, rows), ""]
    if noisy:
        lines += [
            f"{', '.join(noisy)}: the min ESS of a single chain of "
            f"{models[noisy[0]]['settings']['num_samples']} draws is noise-dominated (the two "
            "jppl chain methods run the same algorithm and still differ several-fold), so its "
            "ESS ratios are indicative only; its timing rows (per leapfrog step, gradient) "
            "are the meaningful part.",
            "",
        ]

    lines += ["## jppl: second `run()` with the same shapes (new key)", ""]
    header = [
        "model",
        "chain method",
        "1st run s",
        "1st compile s",
        "2nd run s",
        "2nd compile s",
        "2nd / 1st",
    ]
    rows = []
    for name, m in models.items():
        for lib, r in m["results"].items():
            if "second_run" in r:
                s = r["second_run"]
                rows.append(
                    [
                        name,
                        lib.removeprefix("jppl-"),
                        r["ttfd_s"],
                        r["compile_s"],
                        s["wall_s"],
                        s["compile_s"],
                        s["wall_s"] / r["ttfd_s"],
                    ]
                )
    lines += [markdown_table(header, rows), ""]

    grad = results.get("gradient")
    if grad is not None:
        cov = models["covertype"]["results"]
        lines += [
            "## covertype: gradient, leapfrog step and memory bandwidth",
            "",
            f"Design matrix {grad['design_matrix_bytes'] / 1e6:.1f} MB (float32). "
            f"Bandwidth: jitted `jnp.sum(X)` {grad['bandwidth_sum_GBps']:.1f} GB/s "
            f"(floor = one read of X = {1e3 * grad['floor_s']:.2f} ms); STREAM-like "
            f"in-place scale `-X` {grad['bandwidth_copy_GBps']:.1f} GB/s (read + write). "
            "**value_and_grad**: one jitted call of the library's log density (data as "
            f"arguments); **grad in loop**: the same inside a jitted `fori_loop` of {GRAD_LOOP} "
            "dependent evaluations, per evaluation. **per leapfrog (probe)**: wall time of "
            f"{grad.get('probe_draws', '?')} post-warm-up transitions of the library's "
            "sampling loop from the adapted state (jppl: `MCMC.run` with `post_warmup_state`; "
            "NumPyro: jitted scan of `NUTS.sample`; BlackJAX: jitted scan of `nuts.step`) / "
            "its leapfrog steps, timed in the same interleaved rounds as the gradient. **per "
            "leapfrog (run)**: sampling-phase time / sampling steps of the benchmark runs "
            "(other moments, other load; NumPyro: exec / all steps).",
            "",
        ]
        header = [
            "library",
            "value_and_grad ms",
            "grad in loop ms",
            "grad / floor",
            "per leapfrog (probe) ms",
            "probe / grad",
            "probe / grad in loop",
            "per leapfrog (run) ms",
        ]
        rows = []
        for lib, r in cov.items():
            base = r["library"]
            g = grad.get(f"grad_s:{base}", math.nan)
            gl = grad.get(f"grad_loop_s:{base}", math.nan)
            per = grad.get(f"per_leapfrog_s:{lib}", math.nan)
            run_per = r.get("per_leapfrog_sampling_s", r["per_leapfrog_s"])
            rows.append(
                [
                    lib,
                    1e3 * g,
                    1e3 * gl,
                    g / grad["floor_s"],
                    1e3 * per,
                    per / g,
                    per / gl,
                    1e3 * run_per,
                ]
            )
        lines += [markdown_table(header, rows), ""]
    lines += ["## Targets", ""]
    header = ["target", "value", "status"]
    lines += [
        markdown_table(
            header, [[t["target"], t["value"], _status(t["met"])] for t in results["targets"]]
        ),
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def _nan_for_null(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _nan_for_null(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_for_null(v) for v in x]
    return math.nan if x is None else x


def rewrite_report(json_path: Path) -> dict[str, Any]:
    """Recompute ratios and targets and rewrite the markdown next to ``json_path``."""
    results = _nan_for_null(json.loads(json_path.read_text()))
    for m in results["models"].values():
        for r in m["results"].values():
            r.setdefault("ttfd_cpu_s", r["first_run"]["cpu_s"])
        m["ratios"] = ratios(m["results"])
    results["targets"] = targets(results)
    _, md_path = write_results(json_path.with_suffix(""), results, report(results))
    print(f"rewrote {json_path} and {md_path}")
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (about 3 minutes)")
    parser.add_argument("--models", nargs="+", choices=list(PROBLEMS), default=None)
    parser.add_argument("--out", default=None, help="results file stem (default nuts_cpu)")
    parser.add_argument(
        "--report-only",
        metavar="JSON",
        default=None,
        help="rewrite the markdown (and targets) from an existing results JSON; runs nothing",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        return rewrite_report(Path(args.report_only))
    quick = args.quick
    names = args.models or list(QUICK_MODELS if quick else PROBLEMS)
    stem = args.out or ("nuts_cpu_quick" if quick else "nuts_cpu")

    def log(msg: str) -> None:
        print(msg, flush=True)

    start = time.perf_counter()
    info = machine_info(extra_packages=("blackjax",))
    log(f"devices: {len(jax.devices())}, load {info['load_average']}")
    runners = make_runners()
    results: dict[str, Any] = {"machine": info, "quick": quick, "models": {}}
    results["warmup_s"] = warm_up(runners, log)
    for i, name in enumerate(names):
        problem = PROBLEMS[name](quick)
        log(f"{name}: {problem.description}")
        res = bench_problem(problem, runners, log, order_flip=bool(i % 2), count_warmup=not quick)
        entry = {
            "description": problem.description,
            "settings": {
                "num_chains": problem.num_chains,
                "num_warmup": problem.num_warmup,
                "num_samples": problem.num_samples,
                "dense_mass": problem.dense_mass,
                "target_accept_prob": TARGET_ACCEPT,
                "max_tree_depth": MAX_TREE_DEPTH,
                "repeats": problem.repeats,
            },
            "settings_note": problem.settings_note,
            "results": res,
            "ratios": ratios(res),
            "load_after": load_average(),
        }
        results["models"][name] = entry
        if name == "covertype":
            results["gradient"] = bench_gradient(problem, runners, log, 6 if quick else 15)
        del problem
    results["load_end"] = load_average()
    results["elapsed_s"] = time.perf_counter() - start
    results["targets"] = targets(results)
    json_path, md_path = write_results(RESULTS_DIR / stem, results, report(results))
    log(f"wrote {json_path} and {md_path} ({results['elapsed_s']:.0f} s)")
    for t in results["targets"]:
        log(f"  {t['target']}: {t['value']} -> {'met' if t['met'] else 'MISSED'}")
    return results


if __name__ == "__main__":
    main()
