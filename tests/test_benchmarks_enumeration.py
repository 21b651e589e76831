"""The enumeration benchmark (``benchmarks/enumeration.py``) gives both libraries the same work.

For each problem: (a) each library's enumerated log density of the benchmark's model, at
constrained values, is the hand-written marginal density (scipy, float64: the sum over the
discrete sites in closed form, the HMM's by the forward algorithm); (b) the jppl and NumPyro
potential energies and their gradients agree at the benchmark's unconstrained point, on the
benchmark's data (float32); (c) a short sampling worker runs end to end in a fresh process and
its record summarizes. NumPyro parts need funsor (skipped without it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from benchmarks import enumeration as bench
from benchmarks.workers import run_worker
from scipy.special import logsumexp
from scipy.stats import dirichlet, halfnorm, norm

K = bench.K
WEIGHTS = np.array([0.45, 0.35, 0.2])
SCALE = 1.3
LOCS = np.array([-2.5, 0.1, 2.8])
TRANS = np.array([[0.7, 0.2, 0.1], [0.25, 0.6, 0.15], [0.1, 0.3, 0.6]])


def _backend(lib: str):
    if lib == "numpyro":
        pytest.importorskip("funsor")
    return bench.backend(lib)


def _mixture_truth(x: np.ndarray) -> float:
    comp = np.log(WEIGHTS) + norm.logpdf(x[:, None], LOCS, SCALE)  # (N, K)
    prior = dirichlet.logpdf(WEIGHTS, np.ones(K)) + halfnorm.logpdf(SCALE, scale=2.0)
    return prior + norm.logpdf(LOCS, 0.0, 10.0).sum() + logsumexp(comp, axis=1).sum()


def _hmm_truth(y: np.ndarray) -> float:
    emit = norm.logpdf(y[:, None], LOCS, 1.0)  # (T, K)
    alpha = np.log(TRANS[0]) + emit[0]  # the first state is drawn from row 0
    for t in range(1, len(y)):
        alpha = logsumexp(alpha[:, None] + np.log(TRANS), axis=0) + emit[t]
    prior = sum(dirichlet.logpdf(row, np.ones(K)) for row in TRANS)
    return prior + norm.logpdf(LOCS, 0.0, 10.0).sum() + logsumexp(alpha)


CASES = {
    "mixture": ({"weights": WEIGHTS, "scale": SCALE, "locs": LOCS}, _mixture_truth),
    "hmm": ({"trans": TRANS, "locs": LOCS}, _hmm_truth),
}


@pytest.mark.parametrize("lib", bench.LIBRARIES)
@pytest.mark.parametrize("name", list(bench.PROBLEMS))
def test_enumerated_log_density_is_the_hand_written_marginal(name, lib):
    b = _backend(lib)
    problem = bench.PROBLEMS[name]
    data = problem.data(40)
    values, truth = CASES[name]
    model = problem.make_model(b)
    params = {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}
    got = jax.jit(lambda p: b.enum_log_density(model, (jnp.asarray(data),), p))(params)
    np.testing.assert_allclose(float(got), truth(data.astype(np.float64)), rtol=1e-5)


@pytest.mark.parametrize("name", list(bench.PROBLEMS))
def test_potential_energies_and_gradients_agree(name):
    problem = bench.PROBLEMS[name]
    data = jnp.asarray(problem.data())  # the benchmark's data
    point = {k: jnp.asarray(v) for k, v in bench.unconstrained_point(problem).items()}
    out = {}
    for lib in bench.LIBRARIES:
        b = _backend(lib)
        model = problem.make_model(b)
        fn = jax.jit(jax.value_and_grad(lambda p, b=b, m=model: b.enum_potential(m, (data,), p)))
        out[lib] = fn(point)
    (vj, gj), (vn, gn) = out["jppl"], out["numpyro"]
    assert np.isfinite(float(vj))
    np.testing.assert_allclose(float(vj), float(vn), rtol=1e-4)
    for k in point:
        scale = float(np.max(np.abs(gn[k])))
        np.testing.assert_allclose(gj[k], gn[k], rtol=1e-4, atol=1e-4 * scale, err_msg=k)


@pytest.mark.slow  # a fresh process: about 10 s
def test_sampling_worker_runs_and_summarizes():
    """The worker of ``--quick`` (jppl, the mixture), shortened, in a fresh process."""
    rec = run_worker(
        "benchmarks.enumeration", ["sample", "mixture", "jppl", "0", "2", "30", "30"], {}
    )
    assert rec.get("status", "ok") == "ok", rec.get("stderr_tail")
    assert np.asarray(rec["samples"]["weights"]).shape == (2, 30, K)
    assert np.asarray(rec["samples"]["locs"]).shape == (2, 30, K)
    assert 0 < rec["compile_s"] < rec["run_s"] < rec["process_s"]
    assert rec["sampling_steps"] == pytest.approx(60 * rec["steps_per_draw"])
    s = bench.summarize(rec)
    assert "samples" not in s
    assert len(s["mean"]) == len(s["mcse"]) == 2 * K + 1  # weights, scale, locs
    assert s["min_ess"] > 0 and s["ess_per_s"] == pytest.approx(s["min_ess"] / rec["run_s"])
    assert np.all(np.diff(np.asarray(rec["samples"]["locs"]), axis=-1) > 0)  # ordered
    assert bench.mean_distance(s, s) == 0.0
