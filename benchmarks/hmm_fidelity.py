"""Which sampler is off on NumPyro's semi-supervised HMM? jppl and NumPyro, short and long runs.

NumPyro's ``examples/hmm.py`` model (Dirichlet transition and emission rows, the forward
algorithm in ``lax.scan`` as a ``factor``), on data drawn as that example draws them (3
categories, 10 words, 100 supervised and 500 unsupervised steps; ``--data-seed``). Each library
runs the example's short setting (one chain, ``--short-warmup`` / ``--short-draws``) for several
seeds, and one long reference (``--long-chains`` chains of ``--long-warmup`` + ``--long-draws``).
For the 9 transition probabilities the report gives each short run's largest distance, in
Monte Carlo standard errors (``|short mean - long mean| / sqrt(mcse_short^2 + mcse_long^2)``),
from each library's long reference, and the two long references' distance from each other.
Each run is a fresh process (imports, compilation and sampling in ``process_s``).

    python -m benchmarks.hmm_fidelity            # ~25 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks.report import RESULTS_DIR, fmt, machine_info, markdown_table, write_results
from benchmarks.workers import is_worker, run_worker

K, V, NUM_SUPERVISED, NUM_UNSUPERVISED = 3, 10, 100, 500


def simulate(seed: int) -> list[np.ndarray]:
    """The example's data, drawn with jppl's distributions from ``PRNGKey(seed)`` as the example
    draws them: ``(transition_prior, emission_prior, supervised_categories, supervised_words,
    unsupervised_words)``."""
    import jax.numpy as jnp
    from jax import random

    import jppl.distributions as dist

    key, kt, ke = random.split(random.PRNGKey(seed), 3)
    trans = dist.Dirichlet(jnp.ones(K)).sample(kt, (K,))
    emit = dist.Dirichlet(jnp.full(V, 0.1)).sample(ke, (K,))
    cats, words, c = [], [], 0
    for t in range(NUM_SUPERVISED + NUM_UNSUPERVISED):
        key, kt, ke = random.split(key, 3)
        probs = jnp.full(K, 1.0 / K) if t in (0, NUM_SUPERVISED) else trans[c]
        c = int(dist.Categorical(probs).sample(kt))
        cats.append(c)
        words.append(int(dist.Categorical(emit[c]).sample(ke)))
    cats_a, words_a = np.array(cats), np.array(words)
    return [
        np.ones(K),
        np.full(V, 0.1),
        cats_a[:NUM_SUPERVISED],
        words_a[:NUM_SUPERVISED],
        words_a[NUM_SUPERVISED:],
    ]


def _model(ppl: Any, dist: Any):
    import jax.numpy as jnp
    from jax import lax
    from jax.scipy.special import logsumexp

    def semi_supervised_hmm(tp, ep, sup_c, sup_w, unsup_w):
        trans = ppl.sample("transition_prob", dist.Dirichlet(jnp.broadcast_to(tp, (K, K))))
        emit = ppl.sample("emission_prob", dist.Dirichlet(jnp.broadcast_to(ep, (K, V))))
        ppl.sample("supervised_categories", dist.Categorical(trans[sup_c[:-1]]), obs=sup_c[1:])
        ppl.sample("supervised_words", dist.Categorical(emit[sup_c]), obs=sup_w)
        log_t, log_e = jnp.log(trans), jnp.log(emit)

        def step(lp, w):
            return logsumexp(lp[:, None] + log_t, axis=0) + log_e[:, w], None

        lp, _ = lax.scan(step, log_e[:, unsup_w[0]], unsup_w[1:])
        ppl.factor("forward_log_prob", logsumexp(lp))

    return semi_supervised_hmm


def _worker(argv: Sequence[str]) -> None:
    lib, data_seed, seed, chains, warmup, draws, out = argv
    import jax.numpy as jnp
    from jax import random

    if lib == "jppl":
        import jppl as ppl
        import jppl.distributions as dist
        from jppl.infer import MCMC, NUTS
    else:
        import numpyro as ppl
        import numpyro.distributions as dist
        from numpyro.infer import MCMC, NUTS
    from jppl.diagnostics import ess_bulk

    data = [jnp.asarray(d) for d in simulate(int(data_seed))]
    start = time.perf_counter()
    mcmc = MCMC(
        NUTS(_model(ppl, dist)),
        num_warmup=int(warmup),
        num_samples=int(draws),
        num_chains=int(chains),
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(random.PRNGKey(int(seed)), *data)
    tr = np.asarray(mcmc.get_samples(group_by_chain=True)["transition_prob"], dtype=np.float64)
    flat = tr.reshape(tr.shape[:2] + (-1,))  # (chains, draws, K*K)
    ess = np.asarray(ess_bulk(flat))
    record = {
        "lib": lib,
        "seed": int(seed),
        "chains": int(chains),
        "warmup": int(warmup),
        "draws": int(draws),
        "run_s": time.perf_counter() - start,
        "mean": flat.mean((0, 1)).tolist(),
        "mcse": (flat.std((0, 1)) / np.sqrt(ess)).tolist(),
        "ess_bulk_min": float(ess.min()),
    }
    with open(out, "w") as f:
        json.dump(record, f)


def distance(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Largest ``|mean_a - mean_b| / sqrt(mcse_a^2 + mcse_b^2)`` over the 9 probabilities."""
    ma, mb = np.array(a["mean"]), np.array(b["mean"])
    se = np.sqrt(np.array(a["mcse"]) ** 2 + np.array(b["mcse"]) ** 2)
    return float(np.max(np.abs(ma - mb) / se))


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if is_worker(argv):
        _worker(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=5, help="short runs per library")
    parser.add_argument("--short-warmup", type=int, default=200)
    parser.add_argument("--short-draws", type=int, default=200)
    parser.add_argument("--long-chains", type=int, default=4)
    parser.add_argument("--long-warmup", type=int, default=1000)
    parser.add_argument("--long-draws", type=int, default=2000)
    args = parser.parse_args(argv)

    def run(lib: str, seed: int, chains: int, warmup: int, draws: int) -> dict[str, Any]:
        identity = {"lib": lib, "seed": seed, "chains": chains}
        rec = run_worker(
            "benchmarks.hmm_fidelity",
            [lib, str(args.data_seed), str(seed), str(chains), str(warmup), str(draws)],
            identity,
        )
        if "mean" not in rec:
            raise RuntimeError(f"{lib} seed {seed} failed:\n{rec.get('stderr_tail', '')}")
        return rec

    libs = ("jppl", "numpyro")
    long = {lib: run(lib, 100, args.long_chains, args.long_warmup, args.long_draws) for lib in libs}
    short = [
        run(lib, seed, 1, args.short_warmup, args.short_draws)
        for seed in range(args.seeds)
        for lib in libs
    ]
    rows = []
    for rec in short:
        rec["z_vs_jppl_long"] = distance(rec, long["jppl"])
        rec["z_vs_numpyro_long"] = distance(rec, long["numpyro"])
        rows.append(
            [
                rec["lib"],
                rec["seed"],
                rec["z_vs_jppl_long"],
                rec["z_vs_numpyro_long"],
                rec["ess_bulk_min"],
                rec["process_s"],
            ]
        )
    long_gap = distance(long["jppl"], long["numpyro"])
    results = {
        "machine": machine_info(),
        "settings": vars(args),
        "long": long,
        "short": short,
        "long_jppl_vs_long_numpyro_z": long_gap,
    }
    header = ["library", "seed", "max z vs jppl long", "max z vs NumPyro long", "min ESS", "s"]
    text = "\n\n".join(
        [
            "# Semi-supervised HMM: short runs against long references",
            f"`python -m benchmarks.hmm_fidelity` ({args.short_warmup} + {args.short_draws} "
            f"draws, 1 chain; long: {args.long_chains} chains of {args.long_warmup} + "
            f"{args.long_draws}). z: largest distance over the 9 transition probabilities, in "
            "Monte Carlo standard errors.",
            f"Long jppl vs long NumPyro: max z = {fmt(long_gap)}.",
            markdown_table(header, rows),
        ]
    )
    write_results(RESULTS_DIR / "hmm_fidelity_cpu", results, text)
    print(text)


if __name__ == "__main__":
    main()
