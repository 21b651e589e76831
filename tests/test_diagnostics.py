"""Tests of jppl.diagnostics, cross-checked against ArviZ on the same arrays.

Both ArviZ lines are checked, whichever is installed (CI's oldest leg has ArviZ 0.x, its main
leg ArviZ 1.x, i.e. arviz-stats). Where the two lines differ only in a default or a name, the
helpers below pass the same definition to each: ArviZ 1.x's tail ESS takes the quantiles
(1 - p, p) of its credible mass p (default 0.89: the 11% and 89% quantiles), while jppl (like
Stan and ArviZ 0.x) uses 5% and 95%; the helpers ask ArviZ 1.x for those explicitly.

Sample sizes are chosen so that no type-7 quantile at 5%, 30%, 50% or 95% falls exactly on a
draw ((S - 1) * p is not an integer): ArviZ computes quantiles with scipy's ``mquantiles``,
whose rounding then differs from numpy's by one ulp, which flips a quantile indicator.
"""

import logging
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal, special
from scipy import stats as sps

from jppl import diagnostics as diag
from jppl.inference_data import arviz_line

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import arviz as az  # a dev dependency on every supported Python

logging.getLogger("arviz").setLevel(logging.ERROR)
ARVIZ_1 = arviz_line() == 1
#: Stan's tail-ESS quantiles (5%, 95%), ArviZ 0.x's default, given explicitly to ArviZ 1.x.
STAN_TAIL = {"prob": (0.05, 0.95)} if ARVIZ_1 else {}


# ------------------------------------------------------------------------------------------
# Data sets
# ------------------------------------------------------------------------------------------


def ar1(rng, num_chains, num_draws, rho, shape=()):
    """Stationary AR(1) chains with unit marginal variance, lag-t autocorrelation rho**t."""
    z = rng.normal(size=(num_chains, num_draws, *shape))
    z[:, 1:] *= np.sqrt(1.0 - rho**2)
    return signal.lfilter([1.0], [1.0, -rho], z, axis=1)


def make(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "iid":
        return rng.normal(size=(4, 500))
    if name == "ar1":
        return ar1(rng, 4, 500, 0.8)
    if name == "shifted":
        return rng.normal(size=(4, 500)) + np.array([0.0, 0.0, 0.0, 1.0])[:, None]
    if name == "cauchy":
        return rng.standard_cauchy(size=(4, 250))
    if name == "multidim":
        return ar1(rng, 4, 200, 0.5, shape=(3, 2)) * np.arange(1, 7).reshape(3, 2)
    if name == "two_chains_odd":
        return ar1(rng, 2, 301, 0.3, shape=(2,))
    if name == "one_chain":
        return ar1(rng, 1, 1000, 0.6)
    raise ValueError(name)


DATASETS = ["iid", "ar1", "shifted", "cauchy", "multidim", "two_chains_odd", "one_chain"]


def az_stat(fn, x, **kwargs):
    """Run an ArviZ diagnostic on (chains, draws, *shape) draws; return an array of shape."""
    if kwargs.get("method") == "tail":
        kwargs = {**STAN_TAIL, **kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(fn(az.convert_to_dataset(np.asarray(x)), **kwargs)["x"].values)


def az_summary(x):
    """``az.summary`` of (chains, draws, *shape) draws, unrounded, tail ESS at 5% / 95%."""
    data = az.convert_to_dataset({"x": np.asarray(x)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not ARVIZ_1:
            return az.summary(data, round_to="none")
        # ArviZ 1.x's summary takes the tail-ESS quantiles from the credible mass p as
        # (1 - p, p): p = 0.95 gives Stan's 5% / 95%.
        with az.rc_context({"stats.ci_prob": 0.95}):
            return az.summary(data, round_to="none")


def az_autocorr(x, axis):
    """ArviZ's autocorrelation along ``axis`` (0.x: ``az.autocorr``; 1.x: arviz-stats' array
    layer, which the ``arviz`` namespace no longer re-exports)."""
    if not ARVIZ_1:
        return az.autocorr(x, axis=axis)
    from arviz_stats.base import array_stats

    return array_stats.autocorr(x, axis=axis)


def az_hdi(x, prob):
    """ArviZ's highest-density interval of 1-d draws (``hdi_prob`` was renamed ``prob`` in
    1.x)."""
    if not ARVIZ_1:
        return az.hdi(x, hdi_prob=prob)
    return az.hdi(x, prob=prob)


TIGHT = {"rtol": 1e-9, "atol": 0.0}


# ------------------------------------------------------------------------------------------
# Autocorrelation
# ------------------------------------------------------------------------------------------


def test_autocovariance_matches_direct_sum():
    x = np.random.default_rng(0).normal(size=(3, 37, 2))
    acov = diag.autocovariance(x, axis=1)
    xc = x - x.mean(axis=1, keepdims=True)
    n = x.shape[1]
    direct = np.stack([(xc[:, : n - t] * xc[:, t:]).sum(axis=1) / n for t in range(n)], axis=1)
    np.testing.assert_allclose(acov, direct, rtol=1e-10, atol=1e-12)
    acorr = diag.autocorrelation(x, axis=1)
    np.testing.assert_allclose(acorr, direct / direct[:, :1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(acorr[:, 0], 1.0)


def test_autocorrelation_matches_arviz_and_default_axis():
    x = np.random.default_rng(1).normal(size=(50, 3))
    # (az.autocorr mishandles axis=0, so compare on the transposed array.)
    expected = az_autocorr(np.ascontiguousarray(x.T), axis=1).T
    np.testing.assert_allclose(diag.autocorrelation(x), expected, rtol=1e-10)
    np.testing.assert_allclose(diag.autocorrelation(x.T, axis=-1), expected.T, rtol=1e-10)


def test_autocorrelation_of_ar1_decays_geometrically():
    x = ar1(np.random.default_rng(2), 1, 100_000, 0.7)[0]
    acorr = diag.autocorrelation(x)
    np.testing.assert_allclose(acorr[:4], 0.7 ** np.arange(4), atol=0.02)


# ------------------------------------------------------------------------------------------
# Cross-checks against ArviZ
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DATASETS)
def test_ess_matches_arviz(name):
    x = make(name)
    np.testing.assert_allclose(diag.ess_bulk(x), az_stat(az.ess, x, method="bulk"), **TIGHT)
    np.testing.assert_allclose(diag.ess_tail(x), az_stat(az.ess, x, method="tail"), **TIGHT)
    np.testing.assert_allclose(
        diag.effective_sample_size(x, split=True), az_stat(az.ess, x, method="mean"), **TIGHT
    )
    np.testing.assert_allclose(
        diag.effective_sample_size(x), az_stat(az.ess, x, method="identity"), **TIGHT
    )
    assert diag.ess_bulk(x).shape == x.shape[2:]


@pytest.mark.parametrize("name", DATASETS)
def test_mcse_matches_arviz(name):
    x = make(name)
    np.testing.assert_allclose(diag.mcse_mean(x), az_stat(az.mcse, x, method="mean"), **TIGHT)
    np.testing.assert_allclose(diag.mcse_sd(x), az_stat(az.mcse, x, method="sd"), **TIGHT)
    np.testing.assert_allclose(
        diag.mcse_quantile(x, 0.5), az_stat(az.mcse, x, method="median"), **TIGHT
    )
    np.testing.assert_allclose(
        diag.mcse_quantile(x, 0.3), az_stat(az.mcse, x, method="quantile", prob=0.3), **TIGHT
    )


@pytest.mark.parametrize("name", ["iid", "ar1", "shifted", "cauchy", "multidim"])
def test_rhat_matches_arviz(name):
    x = make(name)
    rank = diag.rank_normalized_split_rhat(x)
    np.testing.assert_allclose(rank, az_stat(az.rhat, x, method="rank"), **TIGHT)
    np.testing.assert_allclose(diag.split_rhat(x), az_stat(az.rhat, x, method="split"), **TIGHT)
    assert rank.shape == x.shape[2:]


def test_rhat_with_odd_draws_matches_arviz_summary():
    # With an odd number of draws the middle draw is dropped by the split. We fold around the
    # median of all draws before splitting (as Stan and az.summary); az.rhat folds after it.
    x = make("two_chains_odd")
    table = az_summary(x)
    np.testing.assert_allclose(
        diag.rank_normalized_split_rhat(x), table["r_hat"].to_numpy(), **TIGHT
    )
    np.testing.assert_allclose(diag.split_rhat(x), az_stat(az.rhat, x, method="split"), **TIGHT)


def _blom_z(a):
    ranks = sps.rankdata(a, method="average").reshape(a.shape)
    return special.ndtri((ranks - 0.375) / (a.size + 0.25))


def test_single_chain_rhat_is_split_rhat_of_its_halves():
    # ArviZ returns nan for one chain; like Stan we split it and compare the halves.
    x = make("one_chain")
    halves = x.reshape(2, -1)
    np.testing.assert_allclose(
        diag.split_rhat(x), az_stat(az.rhat, halves[:, :, None], method="identity")[0], **TIGHT
    )
    folded = np.abs(halves - np.median(x))
    expected = max(
        az_stat(az.rhat, _blom_z(halves)[:, :, None], method="identity")[0],
        az_stat(az.rhat, _blom_z(folded)[:, :, None], method="identity")[0],
    )
    np.testing.assert_allclose(diag.rank_normalized_split_rhat(x), expected, **TIGHT)
    assert diag.rank_normalized_split_rhat(x) < 1.05
    assert np.isnan(az_stat(az.rhat, x, method="rank"))


def test_multidimensional_equals_elementwise():
    x = make("multidim")
    for fn in (diag.rank_normalized_split_rhat, diag.ess_bulk, diag.ess_tail, diag.mcse_sd):
        full = fn(x)
        assert full.shape == (3, 2)
        for i, j in np.ndindex(3, 2):
            np.testing.assert_allclose(full[i, j], fn(x[:, :, i, j]), rtol=1e-12)


# ------------------------------------------------------------------------------------------
# Behaviour on known processes
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, -0.3])
def test_ess_of_ar1_matches_analytic_value(rho):
    num_chains, num_draws = 4, 5000
    x = ar1(np.random.default_rng(3), num_chains, num_draws, rho)
    expected = num_chains * num_draws * (1 - rho) / (1 + rho)
    np.testing.assert_allclose(diag.effective_sample_size(x), expected, rtol=0.12)
    np.testing.assert_allclose(diag.ess_bulk(x), expected, rtol=0.12)


def test_rhat_flags_shifted_chains():
    good = make("iid")
    bad = make("shifted")
    assert diag.rank_normalized_split_rhat(good) < 1.01
    assert diag.split_rhat(good) < 1.01
    assert diag.rank_normalized_split_rhat(bad) > 1.05
    assert diag.split_rhat(bad) > 1.05
    # A within-chain trend is caught by splitting, even with a single chain.
    trend = np.random.default_rng(4).normal(size=(1, 400)) + np.linspace(0, 3, 400)
    assert diag.split_rhat(trend) > 1.1


def test_rank_rhat_detects_different_scales():
    # Same location, different scales: only the folded (tail) R-hat sees it.
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 1000)) * np.array([1.0, 1.0, 1.0, 3.0])[:, None]
    assert diag.split_rhat(x) < 1.01
    assert diag.rank_normalized_split_rhat(x) > 1.05


def test_cauchy_bulk_ess_is_well_behaved():
    x = np.random.default_rng(6).standard_cauchy(size=(4, 1000))
    assert 2000 < diag.ess_bulk(x) < 6000
    assert 2000 < diag.ess_tail(x) < 6000
    assert diag.rank_normalized_split_rhat(x) < 1.01


# ------------------------------------------------------------------------------------------
# Edge cases
# ------------------------------------------------------------------------------------------


ALL_DIAGNOSTICS = [
    diag.split_rhat,
    diag.rank_normalized_split_rhat,
    diag.ess_bulk,
    diag.ess_tail,
    diag.effective_sample_size,
    diag.mcse_mean,
    diag.mcse_sd,
    lambda x: diag.mcse_quantile(x, 0.5),
]


@pytest.mark.parametrize("fn", ALL_DIAGNOSTICS)
def test_constant_and_nan_draws_give_nan_without_warnings(fn):
    x = np.random.default_rng(7).normal(size=(3, 50, 3))
    x[..., 1] = 2.5
    x[1, 7, 2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = fn(x)
    assert out.shape == (3,)
    assert np.isfinite(out[0])
    assert np.isnan(out[1]) and np.isnan(out[2])


def test_constant_rhat_matches_arviz_nan():
    x = np.full((4, 100), 3.0)
    assert np.isnan(az_stat(az.rhat, x))
    assert np.isnan(diag.rank_normalized_split_rhat(x))
    # ArviZ reports ESS = number of draws for constant draws; we follow Stan (nan).
    assert az_stat(az.ess, x) == 400
    assert np.isnan(diag.ess_bulk(x))


@pytest.mark.parametrize("fn", ALL_DIAGNOSTICS)
def test_too_few_draws_raise(fn):
    with pytest.raises(ValueError, match="at least 4 draws"):
        fn(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="num_chains, num_draws"):
        fn(np.zeros(10))
    assert np.shape(fn(np.random.default_rng(8).normal(size=(2, 4)))) == ()


def test_jax_and_float32_inputs():
    x = make("ar1")
    np.testing.assert_allclose(diag.ess_bulk(jnp.asarray(x)), diag.ess_bulk(x), rtol=1e-5)
    np.testing.assert_allclose(
        diag.rank_normalized_split_rhat(x.astype(np.float32)),
        diag.rank_normalized_split_rhat(x),
        rtol=1e-5,
    )


def test_mcse_quantile_rejects_bad_prob():
    with pytest.raises(ValueError, match="prob"):
        diag.mcse_quantile(make("iid"), 1.0)


@pytest.mark.parametrize("prob", [0.5, 0.9, 0.94])
def test_hpdi_matches_arviz(prob):
    x = np.random.default_rng(9).gamma(2.0, size=(2001, 3))
    interval = diag.hpdi(x, prob)
    assert interval.shape == (2, 3)
    for j in range(3):
        np.testing.assert_allclose(interval[:, j], az_hdi(x[:, j], prob), rtol=1e-12)
    np.testing.assert_allclose(diag.hpdi(x.T, prob, axis=1), interval)
    # Narrower than the equal-tailed interval for a skewed distribution.
    q = np.quantile(x, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
    assert np.all(interval[1] - interval[0] <= q[1] - q[0])


# ------------------------------------------------------------------------------------------
# summary / format_summary / print_summary
# ------------------------------------------------------------------------------------------


def test_summary_contents_match_arviz_summary():
    x = make("multidim")
    mu = make("ar1")
    out = diag.summary({"mu": mu, "w": x})
    assert list(out) == ["mu", "w"]
    expected_keys = ["mean", "sd", "median", "5%", "95%"]
    expected_keys += ["mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat"]
    assert list(out["w"]) == expected_keys
    assert all(v.shape == (3, 2) for v in out["w"].values())
    assert all(v.shape == () for v in out["mu"].values())

    table = az_summary(x)
    for key in ["mean", "sd", "mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat"]:
        np.testing.assert_allclose(out["w"][key].ravel(), table[key].to_numpy(), **TIGHT)
    flat = x.reshape(-1, 3, 2)
    np.testing.assert_allclose(out["w"]["median"], np.median(flat, axis=0))
    np.testing.assert_allclose(out["w"]["5%"], np.quantile(flat, 0.05, axis=0))
    np.testing.assert_allclose(out["w"]["95%"], np.quantile(flat, 0.95, axis=0))


def test_summary_prob_and_group_by_chain():
    x = make("iid")
    out = diag.summary({"a": x}, prob=0.89)
    assert "5.5%" in out["a"] and "94.5%" in out["a"]
    flat = diag.summary({"a": x.reshape(-1)}, group_by_chain=False)["a"]
    np.testing.assert_allclose(flat["ess_bulk"], diag.ess_bulk(x.reshape(1, -1)))
    np.testing.assert_allclose(flat["mean"], x.mean())
    # Too few draws for diagnostics: statistics are still reported, diagnostics are nan.
    short = diag.summary({"a": x[:, :3]})["a"]
    assert np.isfinite(short["mean"]) and np.isnan(short["r_hat"])


def test_format_summary_layout():
    rng = np.random.default_rng(10)
    samples = {
        "mu": rng.normal(size=(2, 100)),
        "theta": rng.normal(size=(2, 100, 3)),
        "w": rng.normal(size=(2, 100, 2, 2)),
    }
    text = diag.format_summary(samples, prob=0.8)
    lines = text.splitlines()
    header = lines[0].split()
    assert header == [
        "mean",
        "sd",
        "median",
        "10%",
        "90%",
        "mcse_mean",
        "mcse_sd",
        "ess_bulk",
        "ess_tail",
        "r_hat",
    ]
    names = [line.split()[0] for line in lines[1:]]
    assert names == [
        "mu",
        "theta[0]",
        "theta[1]",
        "theta[2]",
        "w[0,0]",
        "w[0,1]",
        "w[1,0]",
        "w[1,1]",
    ]
    # Right-aligned numeric columns: every line has the same length.
    assert len({len(line) for line in lines}) == 1
    stats = diag.summary(samples, prob=0.8)
    row = lines[2].split()
    assert row[1] == f"{stats['theta']['mean'][0]:.2f}"
    assert row[-1] == f"{stats['theta']['r_hat'][0]:.2f}"
    assert row[-3] == f"{stats['theta']['ess_bulk'][0]:.0f}"


def test_format_summary_extra_divergences(capsys):
    samples = {"mu": np.random.default_rng(11).normal(size=(2, 50))}
    diverging = np.zeros((2, 50), dtype=bool)
    diverging[0, [3, 9]] = True
    diverging[1, 4] = True
    text = diag.format_summary(samples, extra={"diverging": diverging})
    assert text.splitlines()[-1] == "Number of divergences: 3 (per chain: 2, 1)"
    text = diag.format_summary(samples, extra={"num_divergent": 4, "step_size": 0.1})
    assert "Number of divergences: 4" in text and "step_size: 0.1" in text
    diag.print_summary(samples, extra={"diverging": diverging})
    printed = capsys.readouterr().out
    assert "mu" in printed and "Number of divergences: 3" in printed


# ------------------------------------------------------------------------------------------
# Warnings
# ------------------------------------------------------------------------------------------


def test_no_warnings_for_healthy_run():
    samples = {"mu": make("iid"), "theta": np.random.default_rng(12).normal(size=(4, 500, 2))}
    assert diag.check_warnings(samples, 0, 0) == []


def test_warning_messages():
    rng = np.random.default_rng(13)
    samples = {
        "good": rng.normal(size=(4, 500)),
        "stuck": rng.normal(size=(4, 500, 2)) + np.array([0.0, 0.0, 0.0, 2.0])[:, None, None],
        "sticky": ar1(rng, 4, 500, 0.99),
        "const": np.ones((4, 500)),
    }
    msgs = diag.check_warnings(
        samples, num_divergent=np.array([3, 0, 1, 0]), num_max_treedepth_hits=1, max_tree_depth=10
    )
    assert len(msgs) == 5
    assert msgs[0].startswith("There were 4 divergent transitions after warmup")
    assert msgs[1].startswith("1 transition after warmup hit the maximum tree depth (10)")
    assert "R-hat is above 1.01" in msgs[2]
    assert "stuck[0]" in msgs[2] and "stuck[1]" in msgs[2] and "good" not in msgs[2]
    assert "const" not in " ".join(msgs)
    assert msgs[3].startswith("The bulk effective sample size is below 400 (100 per chain)")
    assert "sticky" in msgs[3]
    assert msgs[4].startswith("The tail effective sample size is below 400")

    one = diag.check_warnings(None, num_divergent=1)
    assert one == [one[0]] and one[0].startswith("There was 1 divergent transition after")
    # Thresholds are configurable.
    assert (
        diag.check_warnings({"sticky": samples["sticky"]}, rhat_threshold=10, min_ess_per_chain=1)
        == []
    )


def test_warn_diagnostics_emits_warnings():
    samples = {"stuck": make("shifted")}
    with pytest.warns(diag.ConvergenceWarning) as record:
        msgs = diag.warn_diagnostics(samples, num_divergent=2)
    assert [str(w.message) for w in record] == msgs
    assert msgs[0].startswith("There were 2 divergent transitions")
    assert "R-hat is above 1.01" in msgs[1] and "stuck" in msgs[1]
    assert record[0].filename == __file__


# ------------------------------------------------------------------------------------------
# NumPyro's names and signatures (issue 15)
# ------------------------------------------------------------------------------------------


def test_numpyro_diagnostic_signatures():
    import inspect

    def params(fn):
        return [
            (p.name, p.default)
            for p in inspect.signature(fn).parameters.values()
            if p.kind is not p.KEYWORD_ONLY
        ]

    empty = inspect.Parameter.empty
    assert params(diag.gelman_rubin) == [("x", empty)]
    assert params(diag.split_gelman_rubin) == [("x", empty)]
    assert params(diag.autocorrelation) == [("x", empty), ("axis", 0), ("bias", True)]
    assert params(diag.autocovariance) == [("x", empty), ("axis", 0), ("bias", True)]
    assert params(diag.effective_sample_size) == [("x", empty), ("bias", True)]


def test_autocovariance_unbiased_matches_direct_sum():
    x = np.random.default_rng(3).normal(size=(2, 40, 3))
    n = x.shape[1]
    c = x - x.mean(axis=1, keepdims=True)
    direct = np.stack(
        [np.sum(c[:, : n - t] * c[:, t:], axis=1) / (n - t) for t in range(n)], axis=1
    )
    np.testing.assert_allclose(diag.autocovariance(x, axis=1, bias=False), direct, rtol=1e-10)
    np.testing.assert_allclose(diag.autocovariance(x, 1, False), direct, rtol=1e-10)
    # the biased one divides every lag by n
    counts = np.arange(n, 0, -1)[None, :, None]
    np.testing.assert_allclose(diag.autocovariance(x, axis=1), direct * counts / n, rtol=1e-10)
    # autocorrelation: normalized by the (shared) lag 0
    np.testing.assert_allclose(
        diag.autocorrelation(x, axis=1, bias=False), direct / direct[:, :1], rtol=1e-10
    )


@pytest.mark.parametrize("bias", [True, False])
def test_autocorrelation_of_ar1_is_rho_to_the_k(bias):
    rho = 0.7
    x = ar1(np.random.default_rng(4), 1, 200_000, rho)[0]
    acorr = diag.autocorrelation(x, 0, bias)
    np.testing.assert_allclose(acorr[:8], rho ** np.arange(8), atol=0.01)


def _textbook_rhat(x):
    """BDA3's potential scale reduction factor, written out for (M, N) draws."""
    m, n = x.shape
    chain_means = x.mean(axis=1)
    w = np.mean([np.var(x[j], ddof=1) for j in range(m)])
    b = n * np.var(chain_means, ddof=1)
    var_plus = (n - 1) / n * w + b / n
    return np.sqrt(var_plus / w)


@pytest.mark.parametrize("name", ["iid", "ar1", "shifted", "two_chains_odd"])
def test_gelman_rubin_matches_textbook_and_arviz(name):
    x = make(name)
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    expected = [_textbook_rhat(flat[..., i]) for i in range(flat.shape[-1])]
    np.testing.assert_allclose(diag.gelman_rubin(x), np.reshape(expected, x.shape[2:]), **TIGHT)
    np.testing.assert_allclose(
        diag.gelman_rubin(x), az_stat(az.rhat, x, method="identity"), **TIGHT
    )


@pytest.mark.parametrize("name", ["iid", "ar1", "shifted", "one_chain"])
def test_split_gelman_rubin_matches_textbook_and_arviz(name):
    x = make(name)
    half = x.shape[1] // 2
    halves = np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)
    np.testing.assert_allclose(diag.split_gelman_rubin(x), _textbook_rhat(halves), **TIGHT)
    if x.shape[0] > 1:  # ArviZ refuses a single chain
        np.testing.assert_allclose(
            diag.split_gelman_rubin(x), az_stat(az.rhat, x, method="split"), **TIGHT
        )


def test_gelman_rubin_errors_and_shapes():
    with pytest.raises(ValueError, match="at least two chains"):
        diag.gelman_rubin(np.zeros((1, 10)))
    x = make("multidim")
    assert diag.gelman_rubin(x).shape == (3, 2)
    assert diag.split_gelman_rubin(x).shape == (3, 2)


@pytest.mark.parametrize("bias", [True, False])
def test_effective_sample_size_of_ar1_matches_closed_form(bias):
    # ESS of the mean of a stationary AR(1): S (1 - rho) / (1 + rho)
    rho = 0.5
    x = ar1(np.random.default_rng(5), 4, 20_000, rho)
    expected = x.shape[0] * x.shape[1] * (1 - rho) / (1 + rho)
    np.testing.assert_allclose(diag.effective_sample_size(x, bias), expected, rtol=0.05)
    np.testing.assert_allclose(
        diag.effective_sample_size(x, bias=True), az_stat(az.ess, x, method="identity"), **TIGHT
    )
