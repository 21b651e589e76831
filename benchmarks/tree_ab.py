"""A/B of two jppl source trees: MCMC execution time of the same runs, alternating processes.

For a change that must not cost speed (a refactor): run the same NUTS problems against
``--old`` and ``--new`` ``src`` folders (e.g. a ``git worktree`` of the base commit), each in
fresh interpreters, alternating ``--rounds`` times, and report the fastest repeated
(compiled) run of each. The problems are written here with jppl's public API only, so that
any tree with ``jppl.infer.MCMC`` runs them.

Usage::

    git worktree add ../base <commit>
    python -m benchmarks.tree_ab --old ../base/src --new src
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import RESULTS_DIR, fmt, load_average, markdown_table, write_results

# One interpreter: the fastest of 3 repeated runs (compiled) of each problem, as JSON.
_PROBE = r"""
import json, os, time
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
import jax, jax.numpy as jnp, numpy as np
import jppl, jppl.distributions as dist
from jppl.infer import MCMC, NUTS

y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
s = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])

def schools(s, y=None):
    mu = jppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = jppl.sample("tau", dist.HalfCauchy(5.0))
    with jppl.plate("J", 8):
        theta = jppl.sample("theta_raw", dist.Normal(0.0, 1.0))
        jppl.sample("y", dist.Normal(mu + tau * theta, s), obs=y)

a = np.random.default_rng(0).normal(size=(100, 100))
scale_tril = jnp.asarray(np.linalg.cholesky(a @ a.T / 100 + np.eye(100)), jnp.float32)

def gauss():
    jppl.sample("x", dist.MultivariateNormal(jnp.zeros(100), scale_tril=scale_tril))

out = {"jppl": jppl.__file__}
problems = [
    ("eight_schools (4 chains, sharded)", schools, (s, y), {}, "sharded"),
    ("gauss100 (4 chains, vectorized, dense)", gauss, (), {"dense_mass": True}, "vectorized"),
]
for name, model, args, options, method in problems:
    mcmc = MCMC(NUTS(model, **options), num_warmup=1000, num_samples=1000, num_chains=4,
                chain_method=method, progress_bar=False)
    mcmc.run(jax.random.key(0), *args)
    jax.block_until_ready(mcmc.get_samples())
    times = []
    for r in range(3):
        start = time.perf_counter()
        mcmc.run(jax.random.key(r + 1), *args)
        jax.block_until_ready(mcmc.get_samples())
        times.append(time.perf_counter() - start)
    out[name] = min(times)
print(json.dumps(out))
"""


def probe(src: str) -> dict[str, float]:
    """Run the problems once in a fresh interpreter with ``src`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True, help="the base tree's src folder")
    parser.add_argument("--new", required=True, help="the changed tree's src folder")
    parser.add_argument("--rounds", type=int, default=3, help="alternating old/new processes")
    parser.add_argument("--out", default=str(RESULTS_DIR / "tree_ab_cpu"), help="results stem")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    load_start = load_average()
    for _ in range(args.rounds):
        for side in ("old", "new"):
            record = probe(getattr(args, side))
            print(side, json.dumps(record), flush=True)
            runs[side].append(record)
    names = [k for k in runs["new"][0] if k != "jppl"]
    rows = []
    for name in names:
        old = sorted(r[name] for r in runs["old"])
        new = sorted(r[name] for r in runs["new"])
        rows.append(
            [
                name,
                fmt(old[0]),
                fmt(old[len(old) // 2]),
                fmt(new[0]),
                fmt(new[len(new) // 2]),
                fmt(new[len(new) // 2] / old[len(old) // 2]),
            ]
        )
    table = markdown_table(
        ["problem", "old best s", "old median s", "new best s", "new median s", "median new/old"],
        rows,
    )
    text = (
        "# jppl source trees A/B: MCMC execution time (CPU)\n\n"
        f"`python -m benchmarks.tree_ab --old {args.old} --new {args.new} --rounds "
        f"{args.rounds}`; load average at start {load_start}, at end {load_average()}.\n\n"
        "Each process: 1000 warm-up + 1000 draws, the fastest of 3 repeated (compiled) runs; "
        "old and new processes alternate.\n\n" + table + "\n"
    )
    write_results(args.out, {"old": runs["old"], "new": runs["new"]}, text)
    print(text)


if __name__ == "__main__":
    main()
