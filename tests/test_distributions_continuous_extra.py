"""The distributions of ``jppl.distributions.continuous_extra`` and their KL pairs, in float64.

Truth is scipy.stats where it has the distribution, else the textbook density written here;
moments and entropies come from numerical integration (scipy.integrate.quad) of that truth,
samples are checked by z-tests of their moments and a Kolmogorov-Smirnov test (fixed seeds).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from jppl.distributions import constraints
from jppl.distributions.continuous import Beta, Gamma, Laplace, VonMises, Weibull
from jppl.distributions.continuous_extra import (
    AsymmetricLaplace,
    AsymmetricLaplaceQuantile,
    BetaProportion,
    Dagum,
    Gompertz,
    Kumaraswamy,
    Levy,
    LogUniform,
    Pareto,
    ProjectedNormal,
    SineBivariateVonMises,
    SineSkewed,
    SoftLaplace,
)
from jppl.distributions.kl import kl_divergence
from jppl.util import enable_x64


@pytest.fixture(autouse=True)
def x64():
    enable_x64(True)
    yield
    enable_x64(False)


# -- truths not in scipy -----------------------------------------------------------------------
class _Kumaraswamy:
    """Textbook Kumaraswamy(a, b): pdf a b x^(a-1) (1 - x^a)^(b-1), cdf 1 - (1 - x^a)^b."""

    def __init__(self, a, b):
        self.a, self.b = np.asarray(a), np.asarray(b)

    def logpdf(self, x):
        a, b = self.a, self.b
        return np.log(a * b) + (a - 1) * np.log(x) + (b - 1) * np.log1p(-(x**a))

    def cdf(self, x):
        return 1.0 - (1.0 - np.clip(x, 0, 1) ** self.a) ** self.b


class _QuantileALD:
    """Quantile-regression asymmetric Laplace: pdf tau (1 - tau) / s exp(-rho_tau((x - m) / s))
    with the check loss rho_tau(u) = u (tau - [u < 0])."""

    def __init__(self, loc, scale, tau):
        self.m, self.s, self.t = np.asarray(loc), np.asarray(scale), np.asarray(tau)

    def logpdf(self, x):
        u = (x - self.m) / self.s
        rho = u * (self.t - (u < 0))
        return np.log(self.t * (1 - self.t) / self.s) - rho

    def cdf(self, x):
        u = (x - self.m) / self.s
        t = self.t
        return np.where(
            u < 0,
            t * np.exp((1 - t) * np.minimum(u, 0)),
            1 - (1 - t) * np.exp(-t * np.maximum(u, 0)),
        )


def _np(p):
    return {k: np.asarray(v, np.float64) for k, v in p.items()}


# name -> (constructor, truth from numpy params, params (batch (3,)), support (lo, hi) from
#          params, methods the class implements beyond log_prob/sample/mean)
INF = np.inf
CASES = {
    "Pareto": (
        lambda p: Pareto(p["scale"], p["alpha"]),
        lambda p: stats.pareto(p["alpha"], scale=p["scale"]),
        {"scale": [0.5, 1.0, 2.0], "alpha": [4.5, 5.0, 8.0]},
        lambda p: (p["scale"], INF + 0 * p["scale"]),
        "cdf icdf entropy variance",
    ),
    "LogUniform": (
        lambda p: LogUniform(p["low"], p["high"]),
        lambda p: stats.loguniform(p["low"], p["high"]),
        {"low": [0.1, 1.0, 2.0], "high": [1.0, 100.0, 3.0]},
        lambda p: (p["low"], p["high"]),
        "cdf icdf entropy variance",
    ),
    "Kumaraswamy": (
        lambda p: Kumaraswamy(p["concentration1"], p["concentration0"]),
        lambda p: _Kumaraswamy(p["concentration1"], p["concentration0"]),
        {"concentration1": [0.7, 2.0, 5.0], "concentration0": [1.5, 3.0, 0.8]},
        lambda p: (0 * p["concentration1"], 1 + 0 * p["concentration1"]),
        "cdf icdf entropy variance",
    ),
    "Levy": (
        lambda p: Levy(p["loc"], p["scale"]),
        lambda p: stats.levy(p["loc"], p["scale"]),
        {"loc": [-1.0, 0.0, 2.0], "scale": [0.5, 1.0, 3.0]},
        lambda p: (p["loc"], INF + 0 * p["loc"]),
        "cdf icdf entropy",
    ),
    "Gompertz": (
        lambda p: Gompertz(p["concentration"], p["rate"]),
        lambda p: stats.gompertz(p["concentration"], scale=1 / p["rate"]),
        {"concentration": [0.3, 1.0, 4.0], "rate": [2.0, 1.0, 0.5]},
        lambda p: (0 * p["rate"], INF + 0 * p["rate"]),
        "cdf icdf",
    ),
    "Dagum": (
        lambda p: Dagum(p["concentration"], p["sharpness"], p["scale"]),
        lambda p: stats.burr(p["sharpness"], p["concentration"], scale=p["scale"]),
        {"concentration": [0.5, 1.0, 3.0], "sharpness": [5.0, 6.0, 9.0], "scale": [0.5, 1.0, 2.0]},
        lambda p: (0 * p["scale"], INF + 0 * p["scale"]),
        "cdf icdf variance",
    ),
    "AsymmetricLaplace": (
        lambda p: AsymmetricLaplace(p["loc"], p["scale"], p["asymmetry"]),
        lambda p: stats.laplace_asymmetric(p["asymmetry"], p["loc"], p["scale"]),
        {"loc": [-1.0, 0.0, 2.0], "scale": [0.5, 1.0, 2.0], "asymmetry": [0.5, 1.0, 3.0]},
        lambda p: (-INF + 0 * p["loc"], INF + 0 * p["loc"]),
        "cdf icdf entropy variance",
    ),
    "AsymmetricLaplaceQuantile": (
        lambda p: AsymmetricLaplaceQuantile(p["loc"], p["scale"], p["quantile"]),
        lambda p: _QuantileALD(p["loc"], p["scale"], p["quantile"]),
        {"loc": [-1.0, 0.0, 2.0], "scale": [0.5, 1.0, 2.0], "quantile": [0.1, 0.5, 0.8]},
        lambda p: (-INF + 0 * p["loc"], INF + 0 * p["loc"]),
        "cdf icdf entropy variance",
    ),
    "SoftLaplace": (
        lambda p: SoftLaplace(p["loc"], p["scale"]),
        lambda p: stats.hypsecant(p["loc"], p["scale"]),
        {"loc": [-1.0, 0.0, 2.0], "scale": [0.5, 1.0, 2.0]},
        lambda p: (-INF + 0 * p["loc"], INF + 0 * p["loc"]),
        "cdf icdf entropy variance",
    ),
    "BetaProportion": (
        lambda p: BetaProportion(p["mean"], p["concentration"]),
        lambda p: stats.beta(p["mean"] * p["concentration"], (1 - p["mean"]) * p["concentration"]),
        {"mean": [0.2, 0.5, 0.9], "concentration": [3.0, 10.0, 25.0]},
        lambda p: (0 * p["mean"], 1 + 0 * p["mean"]),
        "cdf entropy variance",
    ),
}
NAMES = list(CASES)


def _has(name, method):
    return method in CASES[name][4].split()


def _make(name, **override):
    p = _np(CASES[name][2])
    p.update(_np(override))
    return CASES[name][0]({k: jnp.asarray(v) for k, v in p.items()}), CASES[name][1](p), p


def _support(name, p):
    lo, hi = CASES[name][3](p)
    return np.broadcast_to(lo, (3,)), np.broadcast_to(hi, (3,))


def _quad(name, p, f):
    """``[integral of f(x, i) over the support of element i] for i in range(3)``."""
    lo, hi = _support(name, p)
    out = []
    for i in range(3):
        val, _ = integrate.quad(lambda x, i=i: f(x, i), lo[i], hi[i], limit=200, epsabs=1e-13)
        out.append(val)
    return np.array(out)


def _pdf_i(truth, x, i):
    """Truth density of batch element ``i`` at scalar ``x`` (0 outside the support)."""
    with np.errstate(all="ignore"):
        lp = np.asarray(truth.logpdf(np.full(3, x)))[i]
    return 0.0 if not np.isfinite(lp) else math.exp(lp)


def _truth_moments(name, truth, p):
    mean = _quad(name, p, lambda x, i: x * _pdf_i(truth, x, i))
    var = _quad(name, p, lambda x, i: (x - mean[i]) ** 2 * _pdf_i(truth, x, i))
    return mean, var


def _values(name, shape, seed=0):
    """Points inside the support, from the truth's quantiles (through its cdf, by bisection
    where the truth has no ppf)."""
    d, truth, p = _make(name)
    u = np.random.default_rng(seed).uniform(0.02, 0.98, shape + (3,))
    if hasattr(truth, "ppf"):
        return truth.ppf(u)
    lo, hi = _support(name, p)
    lo, hi = np.where(np.isfinite(lo), lo, -1e3), np.where(np.isfinite(hi), hi, 1e3)
    a, b = np.broadcast_to(lo, u.shape).copy(), np.broadcast_to(hi, u.shape).copy()
    for _ in range(200):
        mid = 0.5 * (a + b)
        below = truth.cdf(mid) < u
        a, b = np.where(below, mid, a), np.where(below, b, mid)
    return 0.5 * (a + b)


# -- everything a distribution computes, in one compiled program per distribution ---------------
_N = 20_000  # draws per batch element for the moment and KS tests
_Q = np.array([[1e-6], [0.01], [0.3], [0.5], [0.77], [0.99], [1 - 1e-6]])
_MASK = np.array([True, False, True])
# these draw by a smooth map of parameter-free noise (BetaProportion draws through the
# implicit-gradient beta sampler, tested with Beta; Levy has no rsample, as in NumPyro)
_PATHWISE = [n for n in NAMES if n not in ("Levy", "BetaProportion")]


# BetaProportion draws with Beta's sampler (a gamma rejection loop that takes many seconds to
# compile): its moment and KS test compiles it once, on its own, and is marked slow; the
# wrappers' sampling paths are exercised by the other distributions (Beta's sampler itself by
# test_distributions_continuous)
_ONE_SAMPLER = ("BetaProportion",)


@functools.cache
def _slow_draws(name):
    d, _, _ = _make(name)

    @functools.partial(jax.jit, compiler_options=_FAST_COMPILE)
    def draw(d, key):
        x = d.sample(key, (_N,))
        return {"draws": x, "draws_lp": d.log_prob(x), "draws_ok": d.validate_sample(x)}

    return jax.tree.map(np.asarray, draw(d, _keys(NAMES.index(name))[0]))


# LLVM's expensive passes dominate compile time for these small programs, not run time
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _fd(f, p, k, h=1e-6):
    """Central finite difference of ``f(p)`` in each component of ``p[k]`` (shape (3,));
    the distributions are elementwise, so the Jacobian is diagonal: one step per parameter."""
    return (f({**p, k: p[k] + h}) - f({**p, k: p[k] - h})) / (2 * h)


def _keys(seed):
    """Six keys of the "rbg" generator: its programs compile several times faster than
    threefry's, which dominates this file's run time otherwise."""
    return jax.random.split(jax.random.key(seed, impl="rbg"), 6)


@functools.cache
def _computed(name):
    """jppl's outputs for the test parameters of ``name``, from one jitted function that takes
    the distribution itself (a pytree) and its parameters; numpy arrays, float64."""
    d, truth, p0 = _make(name)
    ctor = CASES[name][0]
    p = {k: jnp.asarray(v) for k, v in p0.items()}
    lo, hi = _support(name, p0)
    x = _values(name, (5,))
    x_grad = _values(name, (), seed=2)
    e, ind, m = d.expand((4, 3)), d.to_event(1), d.mask(_MASK)
    assert e.batch_shape == (4, 3) and ind.batch_shape == () and ind.event_shape == (3,)

    @functools.partial(jax.jit, compiler_options=_FAST_COMPILE)
    def run(d, e, ind, m, p, x, x_grad, keys):
        k_draw, k_vmap, k_expand, k_path = keys[0], keys[1:4], keys[4], keys[5]
        out = {
            "lp": d.log_prob(x),
            "lp_col": d.log_prob(x[:, :1]),
            "below": d.log_prob(jnp.asarray(lo) - 0.5),
            "above": d.log_prob(jnp.asarray(hi) + 0.5),
            "vmap_lp": jax.vmap(lambda d, x: d.log_prob(x), (0, 1), 1)(d, x),
            "expand_lp": e.log_prob(x[:, None, :]),
            "event_lp": ind.log_prob(x),
            "mask_lp": m.log_prob(x),
            "mask_event_lp": m.to_event(1).log_prob(x),
            "mean": d.mean,
        }
        if name not in _ONE_SAMPLER:
            out["vmap_sample"] = jax.vmap(lambda d, k: d.sample(k, (2,)), (0, 0), 1)(d, k_vmap)
            out["expand_sample"] = e.sample(k_expand, (2,))
            draws = d.sample(k_draw, (_N,))
            out.update(draws=draws, draws_lp=d.log_prob(draws), draws_ok=d.validate_sample(draws))
        for key_ in ("vmap_sample", "expand_sample"):
            if key_ in out:
                out[key_ + "_ok"] = d.validate_sample(out[key_])
        if _has(name, "variance"):
            out["variance"] = d.variance
        if _has(name, "entropy"):
            out["entropy"] = d.entropy()
        if _has(name, "cdf"):
            out["cdf"] = d.cdf(x)
        if _has(name, "icdf"):
            out["icdf"] = d.icdf(_Q)
            out["round_trip"] = d.icdf(d.cdf(x))
        # log_prob gradients against central finite differences
        g_p, g_x = jax.grad(lambda p, v: ctor(p).log_prob(v).sum(), argnums=(0, 1))(p, x_grad)
        out["grad_p"] = g_p
        out["fd_p"] = {k: _fd(lambda q: ctor(q).log_prob(x_grad), p, k) for k in p}
        out["grad_x"] = g_x
        lp_at = ctor(p).log_prob
        out["fd_x"] = (lp_at(x_grad + 1e-6) - lp_at(x_grad - 1e-6)) / 2e-6
        if name in _PATHWISE:
            # with the key fixed, d draw / d param is the derivative of the sampling map
            def path(p):
                return ctor(p).rsample(k_path, (8,))

            jac = jax.jacfwd(path)(p)
            out["path_grad"] = {k: jnp.diagonal(jac[k], axis1=-2, axis2=-1) for k in p}
            out["path_fd"] = {k: _fd(path, p, k) for k in p}
        return out

    out = run(d, e, ind, m, p, x, x_grad, _keys(NAMES.index(name)))
    return d, truth, p0, x, x_grad, jax.tree.map(np.asarray, out)


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_cdf_icdf(name):
    d, truth, p, x, _, out = _computed(name)
    assert d.batch_shape == (3,) and d.event_shape == () and d.support.event_dim == 0
    assert out["lp"].shape == (5, 3) and out["lp"].dtype == np.float64
    np.testing.assert_allclose(out["lp"], truth.logpdf(x), rtol=1e-10, atol=1e-12)
    # a (5, 1) value broadcasts against the batch; values outside the support have -inf
    np.testing.assert_allclose(out["lp_col"], truth.logpdf(np.broadcast_to(x[:, :1], (5, 3))))
    lo, hi = _support(name, p)
    assert np.all(np.isneginf(out["below"][np.isfinite(lo)]))
    assert np.all(np.isneginf(out["above"][np.isfinite(hi)]))
    if _has(name, "cdf"):
        np.testing.assert_allclose(out["cdf"], truth.cdf(x), rtol=1e-10, atol=1e-13)
    if _has(name, "icdf"):
        assert out["icdf"].shape == (7, 3)
        np.testing.assert_allclose(truth.cdf(out["icdf"]), np.broadcast_to(_Q, (7, 3)), rtol=1e-9)
        np.testing.assert_allclose(out["round_trip"], x, rtol=1e-9)


@pytest.mark.parametrize("name", [n for n in NAMES if _has(n, "entropy")])
def test_entropy_matches_integral(name):
    _, truth, p, _, _, out = _computed(name)

    def neg_p_log_p(x, i):
        with np.errstate(all="ignore"):
            lp = float(np.asarray(truth.logpdf(np.full(3, x)))[i])
        return 0.0 if not np.isfinite(lp) else -math.exp(lp) * lp

    assert out["entropy"].shape == (3,)
    np.testing.assert_allclose(out["entropy"], _quad(name, p, neg_p_log_p), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "Levy"])
def test_mean_variance_match_integrals(name):
    _, truth, p, _, _, out = _computed(name)
    mean, var = _truth_moments(name, truth, p)
    assert out["mean"].shape == (3,)
    np.testing.assert_allclose(out["mean"], mean, rtol=1e-7, atol=1e-9)
    if _has(name, "variance"):
        np.testing.assert_allclose(out["variance"], var, rtol=1e-6, atol=1e-9)


def test_moments_that_do_not_exist():
    """Infinite moments are ``inf`` (Pareto alpha <= 1 / <= 2, Dagum sharpness <= 1 / <= 2,
    Levy always), finite ones are the textbook closed forms."""

    @jax.jit
    def moments(alpha, sharpness):
        pa, da, lv = Pareto(2.0, alpha), Dagum(2.0, sharpness, 1.0), Levy(jnp.zeros(2), 1.0)
        return pa.mean, pa.variance, da.mean, da.variance, lv

    pa_mean, pa_var, da_mean, da_var, lv = moments(
        jnp.array([0.5, 1.5, 3.0]), jnp.array([0.8, 1.5, 3.0])
    )
    assert np.isposinf(pa_mean[0]) and np.all(np.isposinf(pa_var[:2]))
    np.testing.assert_allclose(pa_mean[1:], stats.pareto([1.5, 3.0], scale=2).mean(), rtol=1e-12)
    np.testing.assert_allclose(pa_var[2], stats.pareto(3.0, scale=2).var(), rtol=1e-12)
    assert np.isposinf(da_mean[0]) and np.all(np.isposinf(da_var[:2]))
    np.testing.assert_allclose(da_mean[1:], stats.burr([1.5, 3.0], 2.0).mean(), rtol=1e-10)
    np.testing.assert_allclose(da_var[2], stats.burr(3.0, 2.0).var(), rtol=1e-10)
    assert lv.mean.shape == (2,) and np.all(np.isposinf(lv.mean) & np.isposinf(lv.variance))


@pytest.mark.slow  # compiles each sampler (the default suite has a time budget)
@pytest.mark.parametrize("name", NAMES)
def test_samples_moments_and_ks(name):
    _, truth, p, _, _, out = _computed(name)
    if name in _ONE_SAMPLER:
        out = _slow_draws(name)
    x = out["draws"]
    assert x.shape == (_N, 3) and x.dtype == np.float64
    assert np.all(out["draws_ok"]) and np.all(np.isfinite(out["draws_lp"]))
    if name != "Levy":  # Levy has no finite moments: the KS test below covers it
        mean, var = _truth_moments(name, truth, p)
        se_mean = np.sqrt(var / _N)
        assert np.all(np.abs(x.mean(0) - mean) < 5 * se_mean), (x.mean(0), mean)
        sq = (x - x.mean(0)) ** 2
        se_var = sq.std(0) / np.sqrt(_N)
        assert np.all(np.abs(sq.mean(0) - var) < 5 * se_var), (sq.mean(0), var)
    for i in range(3):

        def cdf_i(v, i=i):
            return truth.cdf(np.broadcast_to(v[:, None], (len(v), 3)))[:, i]

        pval = stats.kstest(x[:, i], cdf_i).pvalue
        assert pval > 1e-4, (i, pval)


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_gradient_matches_finite_differences(name):
    _, _, p, _, _, out = _computed(name)
    for k in p:
        np.testing.assert_allclose(
            out["grad_p"][k], out["fd_p"][k], rtol=1e-6, atol=1e-7, err_msg=k
        )
    np.testing.assert_allclose(out["grad_x"], out["fd_x"], rtol=1e-6, atol=1e-7)


@pytest.mark.slow  # compiles each sampler's gradient
@pytest.mark.parametrize("name", _PATHWISE)
def test_rsample_gradient_matches_finite_differences(name):
    d, _, p, _, _, out = _computed(name)
    assert d.has_rsample
    for k in p:
        np.testing.assert_allclose(
            out["path_grad"][k], out["path_fd"][k], rtol=1e-5, atol=1e-8, err_msg=k
        )


def test_rsample_flags():
    assert BetaProportion(0.5, 2.0).has_rsample and not Levy(0.0, 1.0).has_rsample
    with pytest.raises(NotImplementedError):
        Levy(0.0, 1.0).rsample(jax.random.key(0))


@pytest.mark.slow  # compiles each sampler under jit and vmap
@pytest.mark.parametrize("name", NAMES)
def test_jit_vmap_expand_to_event_mask(name):
    d, truth, _, x, _, out = _computed(name)
    lp = truth.logpdf(x)
    leaves = jax.tree_util.tree_leaves(d)
    assert leaves and all(leaf.shape == (3,) for leaf in leaves)
    np.testing.assert_allclose(out["vmap_lp"], lp, rtol=1e-10)
    if name not in _ONE_SAMPLER:
        assert out["vmap_sample"].shape == (2, 3) and np.all(out["vmap_sample_ok"])
        assert out["expand_sample"].shape == (2, 4, 3) and np.all(out["expand_sample_ok"])
    np.testing.assert_allclose(out["expand_lp"], np.broadcast_to(lp[:, None], (5, 4, 3)))
    np.testing.assert_allclose(out["event_lp"], lp.sum(-1), rtol=1e-12)
    np.testing.assert_allclose(out["mask_lp"], np.where(_MASK, lp, 0.0), rtol=1e-12)
    np.testing.assert_allclose(out["mask_event_lp"], (lp * _MASK).sum(-1), rtol=1e-12)


def test_parameter_broadcasting():
    d = Dagum(jnp.ones((2, 1)), jnp.array([2.0, 3.0, 4.0]), 1.0)
    assert d.batch_shape == (2, 3) and d.scale.shape == (2, 3)
    # shapes only: eval_shape traces without compiling
    assert jax.eval_shape(d.log_prob, jnp.ones((5, 1, 1))).shape == (5, 2, 3)
    assert jax.eval_shape(lambda k: d.sample(k, (4,)), jax.random.key(0)).shape == (4, 2, 3)
    bp = BetaProportion(jnp.full((4, 1), 0.3), jnp.ones(2))
    assert bp.batch_shape == (4, 2) and bp.concentration.shape == (4, 2)
    np.testing.assert_allclose(bp.mean, 0.3, rtol=1e-12)
    with pytest.raises(ValueError, match="broadcast"):
        Pareto(jnp.ones(3), jnp.ones(4))
    # defaults follow NumPyro
    assert float(Gompertz(2.0).rate) == 1.0
    al, alq = AsymmetricLaplace(), AsymmetricLaplaceQuantile()
    assert float(al.loc) == 0 and float(al.scale) == 1 and float(al.asymmetry) == 1
    assert float(alq.quantile) == 0.5


# -- special cases and identities ---------------------------------------------------------------
def test_asymmetric_laplace_special_cases():
    x = jnp.linspace(-4, 4, 9)
    lap = Laplace(0.5, 2.0)
    np.testing.assert_allclose(AsymmetricLaplace(0.5, 2.0, 1.0).log_prob(x), lap.log_prob(x))
    # the quantile form at tau = 1/2 is Laplace(loc, 2 scale); its cdf at loc is tau
    np.testing.assert_allclose(
        AsymmetricLaplaceQuantile(0.5, 1.0, 0.5).log_prob(x), lap.log_prob(x), rtol=1e-12
    )
    tau = jnp.array([0.05, 0.3, 0.95])
    np.testing.assert_allclose(AsymmetricLaplaceQuantile(1.0, 2.0, tau).cdf(1.0), tau, rtol=1e-12)
    al = AsymmetricLaplace(0.0, 1.0, 2.0)
    assert float(al.left_scale) == 2.0 and float(al.right_scale) == 0.5


def test_supports():
    assert Pareto(jnp.array([1.0, 2.0]), 3.0).support(jnp.array([1.5, 1.5])).tolist() == [
        True,
        False,
    ]
    assert Levy(1.0, 1.0).support(jnp.array([0.5, 1.5])).tolist() == [False, True]
    lu = LogUniform(1.0, 10.0)
    assert lu.validate_sample(jnp.array([0.5, 1.0, 10.0, 11.0])).tolist() == [
        False,
        True,
        True,
        False,
    ]
    assert Kumaraswamy(2.0, 2.0).support is constraints.unit_interval
    assert Gompertz(1.0).support is constraints.positive
    assert Dagum(1.0, 1.0, 1.0).support is constraints.positive
    for d in (SoftLaplace(0.0, 1.0), AsymmetricLaplace(), AsymmetricLaplaceQuantile()):
        assert d.support is constraints.real
    assert "support" not in vars(lu)


def test_invalid_parameters_raise_naming_the_parameter():
    with pytest.raises(ValueError, match="alpha"):
        Pareto(1.0, -1.0, validate_args=True)
    with pytest.raises(ValueError, match="low"):
        LogUniform(2.0, 1.0, validate_args=True)
    with pytest.raises(ValueError, match="low"):
        LogUniform(-1.0, 1.0, validate_args=True)
    with pytest.raises(ValueError, match="concentration0"):
        Kumaraswamy(1.0, 0.0, validate_args=True)
    with pytest.raises(ValueError, match="scale"):
        Levy(0.0, -1.0, validate_args=True)
    with pytest.raises(ValueError, match="sharpness"):
        Dagum(1.0, -2.0, 1.0, validate_args=True)
    with pytest.raises(ValueError, match="asymmetry"):
        AsymmetricLaplace(0.0, 1.0, 0.0, validate_args=True)
    with pytest.raises(ValueError, match="quantile"):
        AsymmetricLaplaceQuantile(0.0, 1.0, 1.0, validate_args=True)
    with pytest.raises(ValueError, match="mean"):
        BetaProportion(jnp.array([0.5, 1.0]), 2.0, validate_args=True)
    with pytest.raises(ValueError, match="concentration"):
        BetaProportion(0.5, -2.0, validate_args=True)
    BetaProportion(0.5, 2.0, validate_args=True)
    assert "_mean_arg" not in vars(BetaProportion(0.5, 2.0))


# -- KL pairs -----------------------------------------------------------------------------------
def test_kl_weibull_gamma_matches_integral():
    p = Weibull(jnp.array([0.5, 1.0, 3.0]), jnp.array([0.8, 1.5, 4.0]))
    q = Gamma(jnp.array([2.0, 0.7, 5.0]), jnp.array([1.0, 3.0, 0.5]))
    kl = jax.jit(kl_divergence)(p, q)
    assert kl.shape == (3,)
    ps = stats.weibull_min([0.8, 1.5, 4.0], scale=[0.5, 1.0, 3.0])
    qs = stats.gamma([2.0, 0.7, 5.0], scale=1 / np.array([1.0, 3.0, 0.5]))
    expected = [
        integrate.quad(
            lambda x, i=i: (
                ps.pdf(np.full(3, x))[i]
                * (ps.logpdf(np.full(3, x))[i] - qs.logpdf(np.full(3, x))[i])
            ),
            0,
            np.inf,
            limit=200,
        )[0]
        for i in range(3)
    ]
    np.testing.assert_allclose(kl, expected, rtol=1e-7)
    # broadcasting against the q batch
    shape = jax.eval_shape(kl_divergence, Weibull(1.0, 2.0), Gamma(jnp.ones((2, 3)))).shape
    assert shape == (2, 3)


def _kl_kumaraswamy_beta_exact(a, b, alpha, beta):
    def integrand(x):
        lp = np.log(a * b) + (a - 1) * np.log(x) + (b - 1) * np.log1p(-(x**a))
        lq = (alpha - 1) * math.log(x) + (beta - 1) * math.log1p(-x) - special.betaln(alpha, beta)
        return math.exp(lp) * (lp - lq)

    return integrate.quad(integrand, 0, 1, limit=200)[0]


def test_kl_kumaraswamy_beta():
    """With enough series terms the KL is the integral; with NumPyro's 10 terms it is off by
    exactly the dropped terms of E[log(1 - x)] (computed here from the textbook moments
    E[x^m] = b B(1 + m / a, b), which give E[log(1 - x)] = -sum_m E[x^m] / m)."""
    a, b = np.array([0.7, 2.0, 5.0]), np.array([3.0, 2.5, 4.0])
    alpha, beta = np.array([1.5, 2.0, 0.6]), np.array([2.0, 4.0, 3.0])
    p, q = Kumaraswamy(a, b), Beta(alpha, beta)
    exact = np.array(
        [_kl_kumaraswamy_beta_exact(*args) for args in zip(a, b, alpha, beta, strict=True)]
    )
    m = np.arange(11, 200_001)[:, None]
    dropped = (b * np.exp(special.betaln(1 + m / a, b)) / m).sum(0)
    kl = jax.jit(kl_divergence)
    np.testing.assert_allclose(kl(p, q), exact - (beta - 1) * dropped, rtol=1e-6)
    p.KL_KUMARASWAMY_BETA_TAYLOR_ORDER = 20_000
    np.testing.assert_allclose(kl(p, q), exact, rtol=1e-6)


def test_kl_beta_proportion_uses_beta_pair():
    p = BetaProportion(jnp.array([0.3, 0.6]), jnp.array([4.0, 9.0]))
    q = Beta(2.0, 3.0)
    kl = jax.jit(kl_divergence)
    np.testing.assert_allclose(kl(p, q), kl(Beta(p.concentration1, p.concentration0), q))


# -- SineSkewed ---------------------------------------------------------------------------------
def _skewed_von_mises_logpdf(x, loc, conc, skew):
    """Textbook density on [-pi, pi)^d: prod_j vM(x_j; loc_j, k_j) * (1 + sum_j l_j sin(x_j -
    loc_j)); arrays broadcast with the torus dimension last."""
    base = conc * np.cos(x - loc) - np.log(2 * np.pi * special.i0(conc))
    return base.sum(-1) + np.log1p((skew * np.sin(x - loc)).sum(-1))


_SKEW_LOC = np.array([[0.5], [-2.5], [3.0]])  # batch (3,), d = 1
_SKEW_CONC = np.array([[1.0], [4.0], [0.5]])
_SKEW = np.array([[0.6], [-0.9], [0.3]])


@functools.cache
def _sine_skewed_computed():

    d1 = SineSkewed(VonMises(_SKEW_LOC, _SKEW_CONC).to_event(1), _SKEW)
    # d = 2 over a batch of 2: skewness (2, 2), loc / concentration per dimension
    loc2, conc2 = np.array([0.3, -1.0]), np.array([2.0, 1.0])
    skew2 = np.array([[0.5, -0.4], [0.0, 0.9]])
    d2 = SineSkewed(VonMises(loc2, conc2).to_event(1), skew2)
    mask = np.array([True, False, True])

    @functools.partial(jax.jit, compiler_options=_FAST_COMPILE)
    def run(d1, d2, e, m, x1, x2, keys):
        return {
            "lp1": d1.log_prob(x1),
            "lp2": d2.log_prob(x2),
            "draws1": d1.sample(keys[0], (_N,)),
            "draws2": d2.sample(keys[1], (_N,)),
            "vmap_lp1": jax.vmap(lambda d, x: d.log_prob(x), (0, 1), 1)(d1, x1),
            "expand_sample": e.sample(keys[2], (2,)),
            "expand_lp": e.log_prob(x1[:, None]),
            "event_lp": d1.to_event(1).log_prob(x1),
            "mask_lp": m.log_prob(x1),
        }

    rng = np.random.default_rng(5)
    x1 = rng.uniform(-np.pi, np.pi, (5, 3, 1))
    x2 = rng.uniform(-np.pi, np.pi, (5, 2, 2))
    e, m = d1.expand((4, 3)), d1.mask(mask)
    out = run(d1, d2, e, m, x1, x2, _keys(99))
    return d1, d2, (loc2, conc2, skew2), mask, x1, x2, jax.tree.map(np.asarray, out)


def test_sine_skewed_log_prob_and_normalization():
    d1, d2, (loc2, conc2, skew2), _, x1, x2, out = _sine_skewed_computed()
    assert d1.batch_shape == (3,) and d1.event_shape == (1,) and d2.batch_shape == (2,)
    np.testing.assert_allclose(
        out["lp1"], _skewed_von_mises_logpdf(x1, _SKEW_LOC, _SKEW_CONC, _SKEW), rtol=1e-10
    )
    np.testing.assert_allclose(
        out["lp2"], _skewed_von_mises_logpdf(x2, loc2, conc2, skew2), rtol=1e-10
    )
    # the skewing keeps the density normalized: a periodic grid sum is spectrally accurate
    g = np.linspace(-np.pi, np.pi, 256, endpoint=False)
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1)[:, :, None, :]  # (256, 256, 1, 2)
    total = np.exp(np.asarray(jax.jit(d2.log_prob)(grid))).sum((0, 1)) * (g[1] - g[0]) ** 2
    np.testing.assert_allclose(total, 1.0, rtol=1e-10)
    # mean: the circular mean atan2(E sin x, E cos x) of the skewed density, by the same
    # spectrally accurate grid sums (not the base's loc, which the skewing moves away from)
    w2 = np.exp(np.asarray(jax.jit(d2.log_prob)(grid)))[..., None]  # (256, 256, 2, 1)
    circ2 = np.arctan2((np.sin(grid) * w2).sum((0, 1)), (np.cos(grid) * w2).sum((0, 1)))
    np.testing.assert_allclose(np.asarray(d2.mean), circ2, rtol=1e-10, atol=1e-12)
    g1 = g[:, None, None]  # (256, 1, 1) against batch (3,), d = 1
    w1 = np.exp(_skewed_von_mises_logpdf(g1, _SKEW_LOC, _SKEW_CONC, _SKEW))[..., None]
    circ1 = np.arctan2((np.sin(g1) * w1).sum(0), (np.cos(g1) * w1).sum(0))
    np.testing.assert_allclose(np.asarray(d1.mean), circ1, rtol=1e-10, atol=1e-12)
    assert np.all(np.abs(np.asarray(d1.mean) - _SKEW_LOC) > 0.05)
    bivariate = SineBivariateVonMises(0.0, 0.5, 2.0, 1.0, 0.3)
    with pytest.raises(NotImplementedError, match="independent von Mises"):
        SineSkewed(bivariate, jnp.array([0.2, 0.3])).mean  # noqa: B018


def test_sine_skewed_samples():
    """d = 1: KS against the cdf from the textbook density; d = 2: E[sin(x_j - loc_j)] is
    l_j E_vM[sin^2] = l_j (1 - I2(k_j) / I0(k_j)) / 2 (z-test)."""
    d1, _, (loc2, conc2, skew2), _, _, _, out = _sine_skewed_computed()
    x1, x2 = out["draws1"], out["draws2"]
    assert x1.shape == (_N, 3, 1) and x2.shape == (_N, 2, 2)
    assert np.all(d1.validate_sample(x1))
    assert np.all((x2 >= -np.pi) & (x2 < np.pi))
    g = np.linspace(-np.pi, np.pi, 20001)
    for i in range(3):
        dens = np.exp(_skewed_von_mises_logpdf(g[:, None], _SKEW_LOC[i], _SKEW_CONC[i], _SKEW[i]))
        cdf = integrate.cumulative_simpson(dens, x=g, initial=0.0)
        pval = stats.kstest(x1[:, i, 0], lambda v, cdf=cdf: np.interp(v, g, cdf)).pvalue
        assert pval > 1e-4, (i, pval)
    s = np.sin(x2 - loc2)
    expected = skew2 * (1 - special.iv(2, conc2) / special.i0(conc2)) / 2
    se = s.std(0) / np.sqrt(_N)
    assert np.all(np.abs(s.mean(0) - expected) < 5 * se), (s.mean(0), expected)


def test_sine_skewed_wrappers_and_validation():

    d1, _, _, mask, x1, _, out = _sine_skewed_computed()
    lp = _skewed_von_mises_logpdf(x1, _SKEW_LOC, _SKEW_CONC, _SKEW)
    np.testing.assert_allclose(out["vmap_lp1"], lp, rtol=1e-10)
    assert out["expand_sample"].shape == (2, 4, 3, 1)
    np.testing.assert_allclose(out["expand_lp"], np.broadcast_to(lp[:, None], (5, 4, 3)))
    np.testing.assert_allclose(out["event_lp"], lp.sum(-1), rtol=1e-12)
    np.testing.assert_allclose(out["mask_lp"], np.where(mask, lp, 0.0), rtol=1e-12)
    assert not d1.has_rsample and d1.support.event_dim == 1
    base = VonMises(jnp.zeros(2), 1.0).to_event(1)
    with pytest.raises(ValueError, match="skewness"):
        SineSkewed(base, jnp.array([0.8, 0.5]), validate_args=True)
    with pytest.raises(ValueError, match="event shape"):
        SineSkewed(base, jnp.array([0.1, 0.1, 0.1]))
    assert SineSkewed(base, jnp.zeros((4, 2))).batch_shape == (4,)


# -- ProjectedNormal ----------------------------------------------------------------------------
def _projected_normal_logpdf(u, c):
    """log of int_0^inf r^(d-1) N(r u; c, I) dr, by quadrature (u, c: (d,) vectors)."""
    d = len(c)
    mvn = stats.multivariate_normal(c, np.eye(d))
    val = integrate.quad(lambda r: r ** (d - 1) * mvn.pdf(r * u), 0, np.inf, epsabs=1e-14)[0]
    return math.log(val)


_PN_C2 = np.array([[1.0, 0.5], [-2.0, 0.3], [0.0, 0.0]])
_PN_C3 = np.array([[0.5, -1.0, 2.0], [0.1, 0.2, -0.3]])


@functools.cache
def _projected_normal_computed():
    d2, d3 = ProjectedNormal(_PN_C2), ProjectedNormal(_PN_C3)
    e, m = d2.expand((4, 3)), d2.mask(np.array([True, False, True]))
    th = np.random.default_rng(6).uniform(-np.pi, np.pi, (5, 3))
    u2 = np.stack([np.cos(th), np.sin(th)], -1)
    v = np.random.default_rng(7).normal(size=(5, 2, 3))
    u3 = v / np.linalg.norm(v, axis=-1, keepdims=True)

    @functools.partial(jax.jit, compiler_options=_FAST_COMPILE)
    def run(d2, d3, e, m, u2, u3, keys):
        def path(c):
            return ProjectedNormal(c).rsample(keys[2], (4,))

        jac = jax.jacfwd(path)(d2.concentration)  # (4, 3, 2, 3, 2)
        h = 1e-6
        fd = jnp.stack(
            [
                (path(d2.concentration.at[:, j].add(h)) - path(d2.concentration.at[:, j].add(-h)))
                / (2 * h)
                for j in range(2)
            ],
            -1,
        )  # (4, 3, 2, 2): d draw[n, b, i] / d c[b, j]
        return {
            "lp2": d2.log_prob(u2),
            "lp3": d3.log_prob(u3),
            "draws": d2.sample(keys[0], (_N,)),
            "vmap_lp": jax.vmap(lambda d, u: d.log_prob(u), (0, 1), 1)(d2, u2),
            "expand_sample": e.sample(keys[1], (2,)),
            "expand_lp": e.log_prob(u2[:, None]),
            "event_lp": d2.to_event(1).log_prob(u2),
            "mask_lp": m.log_prob(u2),
            "jac": jnp.einsum("nbibj->nbij", jac),
            "fd": fd,
        }

    out = run(d2, d3, e, m, u2, u3, _keys(98))
    return d2, d3, u2, u3, jax.tree.map(np.asarray, out)


def test_projected_normal_log_prob():
    d2, d3, u2, u3, out = _projected_normal_computed()
    assert d2.batch_shape == (3,) and d2.event_shape == (2,) and d3.event_shape == (3,)
    expected2 = [
        [_projected_normal_logpdf(u2[n, b], _PN_C2[b]) for b in range(3)] for n in range(5)
    ]
    np.testing.assert_allclose(out["lp2"], expected2, rtol=1e-9)
    expected3 = [
        [_projected_normal_logpdf(u3[n, b], _PN_C3[b]) for b in range(2)] for n in range(5)
    ]
    np.testing.assert_allclose(out["lp3"], expected3, rtol=1e-9)
    # normalized on the circle (periodic grid sum); uniform when the concentration is 0
    th = np.linspace(-np.pi, np.pi, 512, endpoint=False)[:, None]
    grid = np.stack([np.cos(th), np.sin(th)], -1)
    total = np.exp(np.asarray(jax.jit(d2.log_prob)(grid))).sum(0) * (2 * np.pi / 512)
    np.testing.assert_allclose(total, 1.0, rtol=1e-10)
    np.testing.assert_allclose(out["lp2"][:, 2], -np.log(2 * np.pi), rtol=1e-12)
    with pytest.raises(NotImplementedError, match="d = 4"):
        ProjectedNormal(jnp.ones(4)).log_prob(jnp.full(4, 0.5))


def test_projected_normal_samples_and_gradients():
    """The mean resultant vector of draws against the density's (by quadrature), z-test; the
    pathwise derivative of draws against central finite differences."""
    d2, _, u2, _, out = _projected_normal_computed()
    x = out["draws"]
    assert x.shape == (_N, 3, 2) and np.all(np.asarray(d2.validate_sample(x)))
    th = np.linspace(-np.pi, np.pi, 512, endpoint=False)[:, None]
    grid = np.stack([np.cos(th), np.sin(th)], -1)
    dens = np.exp(np.asarray(jax.jit(d2.log_prob)(grid))) * (2 * np.pi / 512)  # (512, 3)
    expected = np.einsum("gb,gbi->bi", dens, np.broadcast_to(grid, (512, 3, 2)))
    se = x.std(0) / np.sqrt(_N)
    assert np.all(np.abs(x.mean(0) - expected) < 5 * se), (x.mean(0), expected)
    np.testing.assert_allclose(
        d2.mean, _PN_C2 / np.maximum(np.linalg.norm(_PN_C2, axis=-1, keepdims=True), 1e-300)
    )
    np.testing.assert_allclose(out["jac"], out["fd"], rtol=1e-5, atol=1e-8)


def test_projected_normal_wrappers():
    d2, _, u2, _, out = _projected_normal_computed()
    lp = out["lp2"]
    np.testing.assert_allclose(out["vmap_lp"], lp, rtol=1e-12)
    assert out["expand_sample"].shape == (2, 4, 3, 2)
    np.testing.assert_allclose(out["expand_lp"], np.broadcast_to(lp[:, None], (5, 4, 3)))
    np.testing.assert_allclose(out["event_lp"], lp.sum(-1), rtol=1e-12)
    np.testing.assert_allclose(out["mask_lp"], lp * np.array([1, 0, 1]), rtol=1e-12)
    assert d2.has_rsample and d2.support.event_dim == 1


# -- SineBivariateVonMises ----------------------------------------------------------------------
def _sine_bvm_log_norm(k1, k2, lam):
    """Singh et al. (2002): C = 4 pi^2 sum_m binom(2m, m) (lam^2 / (4 k1 k2))^m I_m(k1) I_m(k2)."""
    m = np.arange(80)
    terms = special.comb(2 * m, m) * (lam**2 / (4 * k1 * k2)) ** m * special.iv(m, k1)
    return math.log(4 * np.pi**2 * np.sum(terms * special.iv(m, k2)))


# batch (3,): unimodal, strongly correlated (lam^2 > k1 k2: bimodal), negative correlation
_BVM = {
    "phi_loc": np.array([0.5, -2.0, 3.0]),
    "psi_loc": np.array([-1.0, 2.5, 0.0]),
    "phi_concentration": np.array([2.0, 1.0, 5.0]),
    "psi_concentration": np.array([1.0, 2.0, 3.0]),
    "correlation": np.array([0.5, 3.0, -2.0]),
}


def _sine_bvm_logpdf(x):
    p = _BVM
    d_phi, d_psi = x[..., 0] - p["phi_loc"], x[..., 1] - p["psi_loc"]
    log_c = np.array(
        [
            _sine_bvm_log_norm(k1, k2, lam)
            for k1, k2, lam in zip(
                p["phi_concentration"], p["psi_concentration"], p["correlation"], strict=True
            )
        ]
    )
    return (
        p["phi_concentration"] * np.cos(d_phi)
        + p["psi_concentration"] * np.cos(d_psi)
        + p["correlation"] * np.sin(d_phi) * np.sin(d_psi)
        - log_c
    )


@functools.cache
def _sine_bvm_computed():
    """One compiled program, without sampling (the nested rejection samplers take many seconds
    to compile: the slow test below draws; expanded sampling is left to the other tests)."""
    d = SineBivariateVonMises(**_BVM)
    x = np.random.default_rng(8).uniform(-np.pi, np.pi, (5, 3, 2))
    e, m = d.expand((4, 3)), d.mask(np.array([True, False, True]))

    @functools.partial(jax.jit, compiler_options=_FAST_COMPILE)
    def run(d, e, m, x, keys):
        return {
            "lp": d.log_prob(x),
            "vmap_lp": jax.vmap(lambda d, x: d.log_prob(x), (0, 1), 1)(d, x),
            "expand_lp": e.log_prob(x[:, None]),
            "event_lp": d.to_event(1).log_prob(x),
            "mask_lp": m.log_prob(x),
            "skewed_lp": SineSkewed(d, jnp.array([0.3, -0.4])).log_prob(x),
            "weighted_norm": SineBivariateVonMises(
                0.0, 0.0, 2.0, 3.0, weighted_correlation=jnp.array([0.2, -0.5])
            ).norm_const,
        }

    return d, x, jax.tree.map(np.asarray, run(d, e, m, x, _keys(97)))


def test_sine_bivariate_von_mises_log_prob():
    d, x, out = _sine_bvm_computed()
    assert d.batch_shape == (3,) and d.event_shape == (2,) and not d.has_rsample
    np.testing.assert_allclose(out["lp"], _sine_bvm_logpdf(x), rtol=1e-10)
    w = np.array([0.2, -0.5])
    weighted = SineBivariateVonMises(0.0, 0.0, 2.0, 3.0, weighted_correlation=w)
    np.testing.assert_allclose(weighted.correlation, w * np.sqrt(6.0), rtol=1e-12)
    np.testing.assert_allclose(
        out["weighted_norm"], [_sine_bvm_log_norm(2.0, 3.0, c) for c in w * np.sqrt(6.0)]
    )
    np.testing.assert_allclose(d.mean, np.stack([_BVM["phi_loc"], _BVM["psi_loc"]], -1))
    with pytest.raises(ValueError, match="exactly one"):
        SineBivariateVonMises(0.0, 0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="psi_concentration"):
        SineBivariateVonMises(0.0, 0.0, 1.0, -1.0, correlation=0.0, validate_args=True)


@pytest.mark.slow  # its nested rejection samplers take many seconds to compile
def test_sine_bivariate_von_mises_samples():
    """z-tests of E[cos], E[sin] of each angle and of E[sin(phi - mu) sin(psi - nu)] against
    the textbook density summed over a periodic grid (spectrally accurate)."""
    d = SineBivariateVonMises(**_BVM)
    draw = jax.jit(lambda d, key: d.sample(key, (_N,)), compiler_options=_FAST_COMPILE)
    x = np.asarray(draw(d, _keys(97)[0]))
    assert x.shape == (_N, 3, 2) and np.all(np.asarray(d.validate_sample(x)))
    g = np.linspace(-np.pi, np.pi, 256, endpoint=False)
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1)[:, :, None, :]  # (256, 256, 1, 2)
    w = np.exp(_sine_bvm_logpdf(grid)) * (g[1] - g[0]) ** 2  # (256, 256, 3)
    np.testing.assert_allclose(w.sum((0, 1)), 1.0, rtol=1e-10)
    loc = np.stack([_BVM["phi_loc"], _BVM["psi_loc"]], -1)

    def stats_of(v):
        c = v - loc
        return np.concatenate(
            [np.cos(v), np.sin(v), (np.sin(c[..., 0]) * np.sin(c[..., 1]))[..., None]], -1
        )

    expected = np.einsum("ijb,ijbk->bk", w, stats_of(np.broadcast_to(grid, (256, 256, 3, 2))))
    s = stats_of(x)
    se = s.std(0) / np.sqrt(_N)
    assert np.all(np.abs(s.mean(0) - expected) < 5 * se), (s.mean(0), expected)


def test_sine_bivariate_von_mises_wrappers():
    d, x, out = _sine_bvm_computed()
    lp = out["lp"]
    np.testing.assert_allclose(out["vmap_lp"], lp, rtol=1e-12)
    np.testing.assert_allclose(out["expand_lp"], np.broadcast_to(lp[:, None], (5, 4, 3)))
    np.testing.assert_allclose(out["event_lp"], lp.sum(-1), rtol=1e-12)
    np.testing.assert_allclose(out["mask_lp"], lp * np.array([1, 0, 1]), rtol=1e-12)
    # as the base of SineSkewed (NumPyro's example)
    sk = SineSkewed(d, jnp.array([0.3, -0.4]))
    assert sk.batch_shape == (3,) and sk.event_shape == (2,)
    np.testing.assert_allclose(
        out["skewed_lp"],
        lp + np.log1p((np.array([0.3, -0.4]) * np.sin(x - np.asarray(d.mean))).sum(-1)),
        rtol=1e-10,
    )
