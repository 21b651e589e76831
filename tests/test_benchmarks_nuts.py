"""The NUTS benchmark (``benchmarks/nuts.py``) gives the three libraries the same targets.

For each benchmark model: (a) the unconstrained log density that jppl's sampler sees (``-``
potential energy), NumPyro's ``-potential_energy`` and the hand-written BlackJAX log density
agree at the benchmark's initial points, and so do their gradients; (b) jppl's and NumPyro's
``log_density`` agree at the corresponding constrained values. Also: the report helpers turn
a results dict into the markdown table and the target list.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from benchmarks import nuts as bench
from benchmarks import problems

MODELS = list(problems.PROBLEMS)
# float32 sums over many terms: the covertype log density is a sum over 58k observations.
RTOL = {"covertype": 2e-5}


@pytest.fixture(scope="module", params=MODELS)
def problem(request):
    if request.param == "covertype":  # a smaller design matrix is enough for this check
        X, y, w, b = problems.covertype_data(num_obs=20_000)
        p = problems.covertype_problem(quick=True)
        p.args, p.kwargs = (jnp.asarray(X),), {"y": jnp.asarray(y)}
        p.init = {"b": np.full((1,), b, np.float32), "w": w[None]}
        return p
    return problems.PROBLEMS[request.param](quick=True)


def _points(problem, num: int = 2) -> jax.Array:
    """The first initial points, plus a perturbed copy (so not only the init is checked)."""
    flat = problem.flat_init()[:num]
    rng = np.random.default_rng(0)
    shifted = flat + jnp.asarray(0.1 * rng.standard_normal(flat.shape), flat.dtype)
    return jnp.concatenate([flat, shifted])


def test_same_unconstrained_log_density_and_gradient(problem):
    runners = [bench.JpplRunner("vectorized"), bench.NumpyroRunner(), bench.BlackjaxRunner()]
    fns = []
    for runner in runners:
        runner.setup(problem)
        fns.append(jax.jit(jax.value_and_grad(runner.logdensity_fn())))
    rtol = RTOL.get(problem.name, 1e-5)
    for z in _points(problem):
        values = [f(z, *problem.args, **problem.kwargs) for f in fns]
        lps = np.array([float(v) for v, _ in values])
        assert np.isfinite(lps).all(), lps
        np.testing.assert_allclose(lps[1:], lps[0], rtol=rtol, err_msg=problem.name)
        grads = [np.asarray(g) for _, g in values]
        scale = np.max(np.abs(grads[0])) + 1.0
        for g in grads[1:]:
            np.testing.assert_allclose(g, grads[0], rtol=1e-4, atol=1e-4 * scale)


def test_same_constrained_log_density(problem):
    import numpyro
    import numpyro.distributions as ndist
    from numpyro.infer.util import constrain_fn as np_constrain_fn
    from numpyro.infer.util import log_density as np_log_density

    import jppl
    import jppl.distributions as jdist
    from jppl.infer import log_density as jppl_log_density

    np_model = problem.make_model(numpyro, ndist)
    jp_model = problem.make_model(jppl, jdist)
    unconstrained = {k: jnp.asarray(v[0]) for k, v in problem.init.items()}
    params = np_constrain_fn(np_model, problem.args, problem.kwargs, unconstrained)
    lp_np, _ = np_log_density(np_model, problem.args, problem.kwargs, params)
    lp_jp, _ = jppl_log_density(jp_model, problem.args, problem.kwargs, params)
    assert math.isfinite(float(lp_np))
    np.testing.assert_allclose(
        float(lp_jp), float(lp_np), rtol=RTOL.get(problem.name, 1e-5), err_msg=problem.name
    )


def test_init_points_are_shared_and_sized(problem):
    flat = problem.flat_init()
    assert flat.shape[0] == problem.num_chains
    assert set(problem.init) == set(problem.init_for())
    for v in problem.init.values():
        assert v.shape[0] >= problem.num_chains


def _fake_entry(library, ess_per_s, ttfd, grads=1000, **extra):
    entry = {
        "library": library,
        "first_run": {"wall_s": ttfd, "compile_s": ttfd / 2, "load": 1.0},
        "ttfd_s": ttfd,
        "ttfd_cpu_s": ttfd / 2,
        "compile_s": ttfd / 2,
        "exec_s": 1.0,
        "grads": grads,
        "min_ess": ess_per_s,
        "ess_per_s": ess_per_s,
        "ess_per_grad": ess_per_s / grads,
        "num_divergent": 0,
        "per_leapfrog_s": 1.0 / grads,
    }
    entry.update(extra)
    return entry


def test_report_and_targets_from_results():
    models = {}
    for name, gain in (("eight_schools", 2.0), ("covertype", 0.9)):
        res = {
            "jppl-vectorized": _fake_entry("jppl", 100.0 * gain, 5.0),
            "jppl-sharded": _fake_entry(
                "jppl",
                90.0 * gain,
                4.0,
                second_run={"wall_s": 0.5, "compile_s": 0.0},
                per_leapfrog_sampling_s=1.05e-3,
            ),
            "numpyro": _fake_entry("numpyro", 100.0, 10.0),
            "blackjax": _fake_entry("blackjax", 120.0, 9.0),
        }
        models[name] = {"results": res, "ratios": bench.ratios(res), "settings_note": ""}
    results = {
        "machine": {
            "cpu_model": "test",
            "cpus_usable": 2,
            "devices": ["cpu:0"],
            "XLA_FLAGS": "",
            "jax": jax.__version__,
            "load_average": [1.0, 1.0, 1.0],
        },
        "quick": True,
        "elapsed_s": 1.0,
        "models": models,
        "gradient": {
            "grad_s:jppl": 1e-3,
            "grad_s:numpyro": 1e-3,
            "grad_s:blackjax": 1e-3,
            "grad_over_floor:jppl": 3.0,
            "floor_s": 1e-3 / 3.0,
            "design_matrix_bytes": 10**6,
            "bandwidth_sum_GBps": 3.0,
            "bandwidth_copy_GBps": 3.0,
        },
    }
    assert models["eight_schools"]["ratios"]["jppl_headline"] == "jppl-vectorized"
    np.testing.assert_allclose(models["eight_schools"]["ratios"]["numpyro"]["ess_per_s"], 2.0)
    results["targets"] = bench.targets(results)
    met = {t["target"]: t["met"] for t in results["targets"]}
    assert met["ESS/s >= NumPyro on every model"] is False  # covertype 0.9x
    assert met["ESS/s geometric mean >= 1.3x NumPyro"] is True  # sqrt(2 * 0.9) = 1.34
    assert met["time to first draw <= 0.5x NumPyro on every model"] is True
    assert met["per leapfrog step <= 1.10x one value_and_grad (covertype)"] is True
    assert met["gradient <= 2x memory-bandwidth floor (covertype)"] is False
    text = bench.report(results)
    assert "| eight_schools | **jppl-vectorized** |" in text
    assert "geometric mean" in text and "**missed**" in text and "**met**" in text
