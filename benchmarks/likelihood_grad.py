"""Value and gradient of a Bernoulli-logits likelihood: jppl's hand-written derivative against
autodiff of the same formula and against NumPyro's ``Bernoulli(logits=...)``.

Run from the repository root::

    .venv/bin/python -m benchmarks.likelihood_grad            # 40 interleaved repeats
    .venv/bin/python -m benchmarks.likelihood_grad --quick    # smoke run

Workload: ``sum(log Bernoulli(y | X @ w + b))`` and its gradient in ``(w, b)`` for a synthetic
logistic regression (10,000 x 20, fixed seed: :func:`benchmarks.problems.logreg_data`), as NUTS
and SVI evaluate it: a ``jax.jit`` of a ``lax.scan`` of 500 evaluations (each at a slightly
different point, so nothing is hoisted; each version's value and gradient are first checked
against float64 NumPy).
Three versions of the log-density, timed in round-robin order:

* ``jppl``: ``jppl.distributions.Bernoulli(logits=...).log_prob`` (a ``jax.custom_jvp``,
  :mod:`jppl.distributions.fused`);
* ``autodiff``: the same guarded formula (the plain ``jnp`` function the JVP wraps),
  differentiated by JAX (what ``jppl`` did before);
* ``numpyro``: ``numpyro.distributions.Bernoulli(logits=...).log_prob``.

Results: ``benchmarks/results/likelihood_grad_cpu.json`` and ``.md`` (microseconds per
evaluation; ratios < 1 mean jppl is faster).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run by path: import the package from the root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from benchmarks.problems import logreg_data
from benchmarks.report import RESULTS_DIR, machine_info, markdown_table, ratio, write_results
from benchmarks.timing import interleaved, stats

NUM_DATA, NUM_FEATURES, EVALS = 10_000, 20, 500


def autodiff_log_prob(logits, x):
    """jppl's guarded ``x * l - softplus(l)`` (the plain ``jnp`` body of its custom JVP), left
    to JAX's autodiff."""
    from jppl.distributions.fused import _bernoulli_parts

    return _bernoulli_parts(logits, x)[0]


def versions() -> dict:
    import numpyro.distributions as npd

    import jppl.distributions as jpd

    return {
        "jppl": lambda l, x: jpd.Bernoulli(logits=l).log_prob(x),  # noqa: E741
        "autodiff": autodiff_log_prob,
        "numpyro": lambda l, x: npd.Bernoulli(logits=l).log_prob(x),  # noqa: E741
    }


def loglik_fn(log_prob, X, y):
    """``w (F+1,) -> sum_i log_prob(X_i w[:-1] + w[-1], y_i)``."""
    return lambda w: jnp.sum(log_prob(X @ w[:-1] + w[-1], y))


def make_scan(log_prob, X, y):
    """``jit``: ``w (F+1,) -> mean of EVALS (value + gradient)``, one per scan step."""
    value_and_grad = jax.value_and_grad(loglik_fn(log_prob, X, y))

    def run(w):
        def body(carry, i):
            value, grad = value_and_grad(w + 1e-4 * i)
            return carry + grad + value, None

        steps = jnp.arange(EVALS, dtype=w.dtype)
        return lax.scan(body, jnp.zeros_like(w), steps)[0] / EVALS

    return jax.jit(run)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 repeats instead of 40")
    parser.add_argument("--out", default=str(RESULTS_DIR / "likelihood_grad_cpu"))
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    X, y = map(jnp.asarray, logreg_data(NUM_DATA, NUM_FEATURES, rng=rng))
    w0 = jnp.zeros(NUM_FEATURES + 1, jnp.float32)

    # the three versions agree with a float64 NumPy value and gradient at a test point
    w1 = 0.1 * rng.normal(size=NUM_FEATURES + 1)
    X64, y64 = np.asarray(X, np.float64), np.asarray(y, np.float64)
    logits = X64 @ w1[:-1] + w1[-1]
    value64 = np.sum(y64 * logits - np.logaddexp(0.0, logits))
    residual = y64 - 1.0 / (1.0 + np.exp(-logits))
    grad64 = np.concatenate([X64.T @ residual, [residual.sum()]])
    for name, log_prob in versions().items():
        value_and_grad = jax.jit(jax.value_and_grad(loglik_fn(log_prob, X, y)))
        value, grad = value_and_grad(jnp.asarray(w1, jnp.float32))
        np.testing.assert_allclose(value, value64, rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(grad, grad64, rtol=1e-4, atol=1e-2, err_msg=name)

    fns = {name: make_scan(lp, X, y) for name, lp in versions().items()}
    for fn in fns.values():
        jax.block_until_ready(fn(w0))  # compile
    calls = {name: (lambda f=fn: f(w0)) for name, fn in fns.items()}
    times = interleaved(calls, repeats=5 if args.quick else 40)
    res = {
        name: {k: v / EVALS * 1e6 for k, v in stats(t).items() if k != "n"}
        for name, t in times.items()
    }
    report = {
        "machine": machine_info(),
        "workload": f"value and gradient of sum log Bernoulli(y | X w + b), X {NUM_DATA} x "
        f"{NUM_FEATURES}, {EVALS} evaluations per timed call",
        "microseconds_per_evaluation": res,
        "ratio_jppl_vs_autodiff": ratio(res["jppl"]["median"], res["autodiff"]["median"]),
        "ratio_jppl_vs_numpyro": ratio(res["jppl"]["median"], res["numpyro"]["median"]),
    }
    rows = [[n, r["median"], r["min"], r["median"] / res["jppl"]["median"]] for n, r in res.items()]
    text = "\n\n".join(
        [
            "# Bernoulli-logits likelihood: value + gradient (CPU)",
            f"`python benchmarks/likelihood_grad.py`, {report['machine']['time']}, jax "
            f"{report['machine']['jax']}, load average {report['machine']['load_average']}. "
            f"{report['workload']}.",
            markdown_table(
                ["version", "median us", "fastest us", "time / jppl's"],
                rows,
            ),
        ]
    )
    write_results(args.out, report, text)
    print(text)
    return report


if __name__ == "__main__":
    main()
