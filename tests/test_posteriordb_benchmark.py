"""The posteriordb correctness benchmark (``benchmarks/posteriordb.py``).

(a) The comparison with a reference entry computes the documented statistics: draws whose mean
and sd equal the reference give ``z = 0`` and a zero sd error, a mean shifted by ``k``
combined MCSEs gives ``z = k``, a scaled sd gives the scale's relative error, and the pass
flags follow the 4-sigma / 10% rules. (b) The settings merge keeps the pass criteria fixed and
``--defaults`` keeps only the float64 switch. (c) One small posterior runs end to end through
``main`` (a worker subprocess, 2 chains x 200/200) and the JSON / markdown results have the
documented structure.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from benchmarks import posteriordb as bench

from jppl import diagnostics


def _draws(mean: float, sd: float, shape=(4, 500), seed: int = 0, rho: float = 0.5) -> np.ndarray:
    """AR(1) draws (autocorrelated, so MCSE != sd / sqrt(n)) with *exactly* the pooled mean
    and sd (ddof 1) given."""
    rng = np.random.default_rng(seed)
    eps = rng.normal(size=shape)
    x = np.empty(shape)
    x[:, 0] = eps[:, 0]
    for t in range(1, shape[1]):
        x[:, t] = rho * x[:, t - 1] + math.sqrt(1 - rho**2) * eps[:, t]
    x = (x - x.mean()) / x.std(ddof=1)
    return mean + sd * x


def _ref(mean: float, sd: float, mcse_mean: float = 0.02, mcse_sd: float = 0.015) -> dict:
    return {"mean": mean, "sd": sd, "mcse_mean": mcse_mean, "mcse_sd": mcse_sd}


def test_identical_moments_give_zero():
    x = _draws(1.5, 2.0)
    r = bench.compare_parameter(x, _ref(1.5, 2.0))
    assert r["z_mean"] == pytest.approx(0.0, abs=1e-9)
    assert r["sd_rel_err"] == pytest.approx(0.0, abs=1e-12)
    assert r["mean"] == pytest.approx(1.5) and r["sd"] == pytest.approx(2.0)
    assert r["mcse_mean"] == pytest.approx(float(diagnostics.mcse_mean(x)))
    assert r["mcse_mean"] > 2.0 / math.sqrt(x.size)  # ESS-based: autocorrelated draws
    assert r["ok"] and r["mean_ok"] and r["sd_ok"]
    for key in ("rhat", "ess_bulk", "ess_tail", "mcse_sd", "z_sd"):
        assert math.isfinite(r[key]), key


@pytest.mark.parametrize("k", [-5.0, -3.0, 0.5, 3.9, 4.1, 6.0])
def test_mean_z_is_shift_in_combined_mcse(k):
    x = _draws(0.0, 1.0, seed=1)
    ref_mcse = 0.03
    combined = math.sqrt(float(diagnostics.mcse_mean(x)) ** 2 + ref_mcse**2)
    r = bench.compare_parameter(x, _ref(-k * combined, 1.0, mcse_mean=ref_mcse))
    assert r["z_mean"] == pytest.approx(k, rel=1e-9)
    assert r["mean_ok"] == (abs(k) <= bench.MEAN_Z_MAX)
    assert r["sd_ok"]
    assert r["ok"] == r["mean_ok"]


@pytest.mark.parametrize("scale", [0.85, 0.95, 1.05, 1.15])
def test_sd_relative_error(scale):
    x = _draws(3.0, 2.0 * scale, seed=2)
    r = bench.compare_parameter(x, _ref(3.0, 2.0))
    assert r["sd_rel_err"] == pytest.approx(scale - 1.0, abs=1e-12)
    assert r["sd_ok"] == (abs(scale - 1.0) <= bench.SD_REL_MAX)
    assert r["mean_ok"]


def test_nan_draws_fail():
    x = _draws(0.0, 1.0)
    x[0, 3] = np.nan
    r = bench.compare_parameter(x, _ref(0.0, 1.0))
    assert not r["ok"]


def test_compare_and_summary():
    reference = {
        "parameter_names": ["a", "b[1]", "b[2]"],
        "parameters": {"a": _ref(0.0, 1.0), "b[1]": _ref(5.0, 2.0), "b[2]": _ref(-1.0, 0.5)},
    }
    draws = {
        "a": _draws(0.0, 1.0, seed=3),
        "b[1]": _draws(5.0, 2.0 * 1.2, seed=4),  # sd 20% too wide
        "b[2]": _draws(-1.0, 0.5, seed=5),
    }
    params = bench.compare(draws, reference)
    assert list(params) == reference["parameter_names"]
    s = bench.summarize_comparison(params)
    assert not s["passed"]
    assert s["failed_sd"] == ["b[1]"] and s["failed_mean"] == []
    assert s["worst_sd_rel_err_param"] == "b[1]"
    assert s["worst_sd_rel_err"] == pytest.approx(0.2)
    assert s["num_parameters"] == 3
    with pytest.raises(KeyError, match="b\\[2\\]"):
        bench.compare({"a": draws["a"], "b[1]": draws["b[1]"]}, reference)


def test_settings():
    names = bench.import_models().posterior_names()
    assert len(names) == 21
    for name in names:
        s = bench.settings_for(name)
        assert set(s) >= set(bench.DEFAULT_SETTINGS)
        assert s["init_strategy"] in bench.INIT_STRATEGIES
        d = bench.settings_for(name, defaults_only=True)
        assert {k: v for k, v in d.items() if k != "x64"} == {
            k: v for k, v in bench.DEFAULT_SETTINGS.items() if k != "x64"
        }
    assert set(bench.MODEL_SETTINGS) <= set(names)
    assert bench.settings_for("gp_pois_regr-gp_pois_regr")["x64"]
    assert bench.MEAN_Z_MAX == 4.0 and bench.SD_REL_MAX == 0.10


def test_run_posterior_checks_x64():
    import jax

    settings = {**bench.DEFAULT_SETTINGS, "x64": not jax.config.jax_enable_x64}
    with pytest.raises(RuntimeError, match="x64"):
        bench.run_posterior("kidiq-kidscore_momiq", settings, 2, 10, 10)


@pytest.mark.slow  # moved out of the default suite's 15-min budget
def test_end_to_end_small(tmp_path):
    name = "kidiq-kidscore_momiq"
    out = tmp_path / "pdb"
    argv = ["--models", name, "--num-chains", "2", "--num-warmup", "200", "--num-samples", "200"]
    report = bench.main([*argv, "--out", str(out), "--timeout", "300"])
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["num_models"] == 1 and saved["complete"]
    assert saved["run"]["num_chains"] == 2 and saved["run"]["num_samples"] == 200
    (r,) = saved["results"]
    assert r["status"] == "ok", r.get("stderr_tail")
    assert r == json.loads(json.dumps(report["results"][0]))  # what main returned was written
    _, _, reference = bench.import_models().load_posterior(name)
    assert list(r["parameters"]) == reference["parameter_names"]
    for p in r["parameters"].values():
        for key in ("z_mean", "sd_rel_err", "rhat", "ess_bulk", "mean", "sd", "mcse_mean"):
            assert isinstance(p[key], float) and math.isfinite(p[key]), key
        assert p["ok"] == (p["mean_ok"] and p["sd_ok"])
    assert r["passed"] == all(p["ok"] for p in r["parameters"].values())
    d = r["diagnostics"]
    assert len(d["divergent_per_chain"]) == 2 and d["num_divergent"] >= 0
    assert 0.0 < d["mean_accept_prob"] <= 1.0
    assert r["settings"]["num_samples"] == 200 and r["settings"]["num_warmup"] == 200
    assert r["dtype"] == "float32" and r["time_s"] > 0
    assert r["max_rhat"] < 1.2 and r["min_ess_bulk"] > 20
    md = out.with_suffix(".md").read_text()
    assert name in md and "worst mean z" in md
    # --update merges only into results of the same run settings (checked before any run)
    with pytest.raises(SystemExit):
        bench.main([*argv[:-1], "300", "--out", str(out), "--update"])
