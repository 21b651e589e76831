"""Univariate continuous distributions, checked against scipy.stats (float64) as ground truth."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

import jppl.distributions as dist
from jppl.distributions import constraints


class _HalfT:
    """|T| for T ~ t(df, 0, scale): scipy has no folded t, so build the few methods we need."""

    def __init__(self, df, scale):
        self.t = stats.t(df, 0.0, scale)
        self.df, self.scale = np.asarray(df), np.asarray(scale)

    def logpdf(self, x):
        return np.where(x >= 0, np.log(2.0) + self.t.logpdf(x), -np.inf)

    def cdf(self, x):
        return np.clip(2.0 * self.t.cdf(x) - 1.0, 0.0, 1.0)

    def rvs(self, size, random_state):
        return np.abs(self.t.rvs(size=size, random_state=random_state))

    def mean(self):
        df = self.df
        with np.errstate(all="ignore"):
            log_ratio = special.gammaln((df + 1) / 2) - special.gammaln(df / 2)
            m = 2.0 * self.scale * np.sqrt(df / np.pi) * np.exp(log_ratio) / (df - 1)
        return np.where(df > 1, m, np.inf)

    def var(self):
        with np.errstate(all="ignore"):
            v = self.t.var() - self.mean() ** 2
        return np.where(self.df > 2, v, np.inf)


def _truncnorm(p):
    loc, scale = p["loc"], p["scale"]
    return stats.truncnorm((p["low"] - loc) / scale, (p["high"] - loc) / scale, loc, scale)


# name -> (constructor from a dict of numpy params, scipy frozen distribution, params,
#          which of cdf/icdf/entropy the class implements)
# Every parameter has batch shape (3,).
CASES = {
    "Normal": (
        lambda p: dist.Normal(p["loc"], p["scale"]),
        lambda p: stats.norm(p["loc"], p["scale"]),
        {"loc": [-1.0, 0.5, 2.0], "scale": [0.5, 1.0, 3.0]},
        "cdf icdf entropy",
    ),
    "HalfNormal": (
        lambda p: dist.HalfNormal(p["scale"]),
        lambda p: stats.halfnorm(scale=p["scale"]),
        {"scale": [0.3, 1.0, 4.0]},
        "cdf icdf entropy",
    ),
    "Cauchy": (
        lambda p: dist.Cauchy(p["loc"], p["scale"]),
        lambda p: stats.cauchy(p["loc"], p["scale"]),
        {"loc": [-2.0, 0.0, 1.0], "scale": [0.5, 1.0, 2.0]},
        "cdf icdf entropy",
    ),
    "HalfCauchy": (
        lambda p: dist.HalfCauchy(p["scale"]),
        lambda p: stats.halfcauchy(scale=p["scale"]),
        {"scale": [0.5, 1.0, 2.5]},
        "cdf icdf entropy",
    ),
    "StudentT": (
        lambda p: dist.StudentT(p["df"], p["loc"], p["scale"]),
        lambda p: stats.t(p["df"], p["loc"], p["scale"]),
        {"df": [5.0, 7.5, 30.0], "loc": [-1.0, 0.0, 3.0], "scale": [0.5, 1.0, 2.0]},
        "cdf entropy",
    ),
    "HalfStudentT": (
        lambda p: dist.HalfStudentT(p["df"], p["scale"]),
        lambda p: _HalfT(p["df"], p["scale"]),
        {"df": [5.0, 8.0, 20.0], "scale": [0.5, 1.0, 2.0]},
        "cdf",
    ),
    "LogNormal": (
        lambda p: dist.LogNormal(p["loc"], p["scale"]),
        lambda p: stats.lognorm(s=p["scale"], scale=np.exp(p["loc"])),
        {"loc": [-1.0, 0.0, 1.0], "scale": [0.25, 0.5, 0.8]},
        "cdf icdf entropy",
    ),
    "Exponential": (
        lambda p: dist.Exponential(p["rate"]),
        lambda p: stats.expon(scale=1.0 / p["rate"]),
        {"rate": [0.5, 1.0, 4.0]},
        "cdf icdf entropy",
    ),
    "Gamma": (
        lambda p: dist.Gamma(p["concentration"], p["rate"]),
        lambda p: stats.gamma(p["concentration"], scale=1.0 / p["rate"]),
        {"concentration": [0.5, 2.0, 9.0], "rate": [2.0, 1.0, 0.5]},
        "cdf entropy",
    ),
    "InverseGamma": (
        lambda p: dist.InverseGamma(p["concentration"], p["rate"]),
        lambda p: stats.invgamma(p["concentration"], scale=p["rate"]),
        {"concentration": [5.0, 7.0, 12.0], "rate": [0.5, 1.0, 3.0]},
        "cdf entropy",
    ),
    "Beta": (
        lambda p: dist.Beta(p["concentration1"], p["concentration0"]),
        lambda p: stats.beta(p["concentration1"], p["concentration0"]),
        {"concentration1": [0.5, 2.0, 5.0], "concentration0": [0.7, 3.0, 1.0]},
        "cdf entropy",
    ),
    "Uniform": (
        lambda p: dist.Uniform(p["low"], p["high"]),
        lambda p: stats.uniform(p["low"], p["high"] - p["low"]),
        {"low": [-2.0, 0.0, 1.0], "high": [-1.0, 1.0, 5.0]},
        "cdf icdf entropy",
    ),
    "Laplace": (
        lambda p: dist.Laplace(p["loc"], p["scale"]),
        lambda p: stats.laplace(p["loc"], p["scale"]),
        {"loc": [-1.0, 0.0, 2.0], "scale": [0.5, 1.0, 2.0]},
        "cdf icdf entropy",
    ),
    "Logistic": (
        lambda p: dist.Logistic(p["loc"], p["scale"]),
        lambda p: stats.logistic(p["loc"], p["scale"]),
        {"loc": [-1.0, 0.0, 2.0], "scale": [0.5, 1.0, 2.0]},
        "cdf icdf entropy",
    ),
    "Gumbel": (
        lambda p: dist.Gumbel(p["loc"], p["scale"]),
        lambda p: stats.gumbel_r(p["loc"], p["scale"]),
        {"loc": [-1.0, 0.0, 2.0], "scale": [0.5, 1.0, 2.0]},
        "cdf icdf entropy",
    ),
    "Weibull": (
        lambda p: dist.Weibull(p["scale"], p["concentration"]),
        lambda p: stats.weibull_min(p["concentration"], scale=p["scale"]),
        {"scale": [0.5, 1.0, 3.0], "concentration": [0.8, 1.5, 4.0]},
        "cdf icdf entropy",
    ),
    "Chi2": (
        lambda p: dist.Chi2(p["df"]),
        lambda p: stats.chi2(p["df"]),
        {"df": [1.0, 3.0, 10.0]},
        "cdf entropy",
    ),
    "TruncatedNormal": (
        lambda p: dist.TruncatedNormal(p["loc"], p["scale"], low=p["low"], high=p["high"]),
        _truncnorm,
        {
            "loc": [0.0, 1.0, -2.0],
            "scale": [1.0, 2.0, 0.5],
            "low": [-1.0, 2.0, -np.inf],
            "high": [1.5, np.inf, -1.0],
        },
        "cdf icdf entropy",
    ),
    "VonMises": (
        lambda p: dist.VonMises(p["loc"], p["concentration"]),
        lambda p: stats.vonmises(p["concentration"], loc=p["loc"]),
        {"loc": [-2.0, 0.0, 3.0], "concentration": [0.3, 2.0, 20.0]},
        "",
    ),
}
NAMES = list(CASES)
WITH_CDF = [n for n in NAMES if "cdf" in CASES[n][3].split()]
WITH_ICDF = [n for n in NAMES if "icdf" in CASES[n][3].split()]
WITH_ENTROPY = [n for n in NAMES if "entropy" in CASES[n][3].split()]


def _params(name, dtype=np.float32):
    return {k: np.asarray(v, dtype) for k, v in CASES[name][2].items()}


def _make(name, **override):
    p = _params(name)
    p.update({k: np.asarray(v, np.float32) for k, v in override.items()})
    return CASES[name][0](p), CASES[name][1]({k: v.astype(np.float64) for k, v in p.items()})


def _values(name, shape, seed=0):
    """Values in the support drawn by scipy (float32, as jppl sees them)."""
    _, sp = _make(name)
    x = sp.rvs(size=shape, random_state=np.random.default_rng(seed))
    if name == "VonMises":  # scipy draws on [loc - pi, loc + pi]; any real angle is fine
        x = np.remainder(x + np.pi, 2 * np.pi) - np.pi
    return x.astype(np.float32)


# -- log_prob ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_log_prob_matches_scipy(name):
    d, sp = _make(name)
    assert d.batch_shape == (3,) and d.event_shape == ()
    x = _values(name, (5, 3))
    # values (5, 3) against batch (3,); and (5, 1) broadcast against (3,)
    for val in (x, x[:, :1]):
        lp = d.log_prob(val)
        assert lp.shape == (5, 3) and lp.dtype == jnp.float32
        expected = sp.logpdf(val.astype(np.float64))
        np.testing.assert_allclose(lp, expected, rtol=2e-5, atol=2e-5)
    # a scalar value broadcasts to the batch shape
    assert d.log_prob(x[0, 0]).shape == (3,)


@pytest.mark.parametrize(
    "name",
    [
        "HalfNormal",
        "HalfCauchy",
        "HalfStudentT",
        "Exponential",
        "Gamma",
        "LogNormal",
        "InverseGamma",
        "Weibull",
        "Chi2",
        "Beta",
        "Uniform",
        "TruncatedNormal",
    ],
)
def test_log_prob_outside_support_is_minus_inf(name):
    d, _ = _make(name)
    lo = np.asarray(d.support.lower_bound if hasattr(d.support, "lower_bound") else 0.0)
    lp = d.log_prob(jnp.broadcast_to(lo - 1.0, (3,)))
    assert np.all(np.isneginf(lp) | (np.asarray(lo) == -np.inf))
    grad = jax.grad(lambda v: d.log_prob(v).sum())(jnp.full((3,), 0.5))
    assert np.all(np.isfinite(grad) | np.isinf(d.log_prob(jnp.full((3,), 0.5))))


def test_parameter_broadcasting():
    d = dist.Gamma(jnp.ones((2, 1)), jnp.array([1.0, 2.0, 3.0]))
    assert d.batch_shape == (2, 3)
    assert d.concentration.shape == d.rate.shape == (2, 3)
    assert d.log_prob(jnp.ones((5, 1, 1))).shape == (5, 2, 3)
    assert d.mean.shape == d.variance.shape == (2, 3)
    tn = dist.TruncatedNormal(jnp.zeros(3), 1.0, low=jnp.zeros((4, 1)))
    assert tn.batch_shape == (4, 3) and tn.high.shape == (4, 3)
    assert np.all(np.isposinf(tn.high))
    # integer parameters become floats; scalars give an empty batch shape
    n = dist.Normal(0, 1)
    assert n.batch_shape == () and n.loc.dtype == jnp.float32
    with pytest.raises(ValueError, match="broadcast"):
        dist.Normal(jnp.zeros(3), jnp.ones(4))


# -- cdf / icdf / entropy -----------------------------------------------------------------------
@pytest.mark.parametrize("name", WITH_CDF)
def test_cdf_matches_scipy(name):
    d, sp = _make(name)
    x = _values(name, (4, 3), seed=1)
    np.testing.assert_allclose(d.cdf(x), sp.cdf(x.astype(np.float64)), rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("name", WITH_ICDF)
def test_icdf_inverts_cdf(name):
    d, sp = _make(name)
    q = np.array([[0.001], [0.1], [0.37], [0.5], [0.8], [0.999]], np.float32)
    x = d.icdf(q)
    assert x.shape == (6, 3)
    np.testing.assert_allclose(d.cdf(x), np.broadcast_to(q, (6, 3)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(x, sp.ppf(q.astype(np.float64)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", WITH_ENTROPY)
def test_entropy_matches_scipy(name):
    d, sp = _make(name)
    if name == "TruncatedNormal":  # scipy's closed form gives nan for infinite bounds
        p = {k: v.astype(np.float64) for k, v in _params(name).items()}
        expected = [
            stats.truncnorm(
                *(np.array([p[k][i] for k in ("low", "high")]) - p["loc"][i]) / p["scale"][i],
                p["loc"][i],
                p["scale"][i],
            ).expect(lambda x, i=i: -sp.logpdf(np.full(3, x))[i])
            for i in range(3)
        ]
    else:
        expected = sp.entropy()
    np.testing.assert_allclose(d.entropy(), expected, rtol=1e-5, atol=1e-5)


# -- mean / variance ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("VonMises", "Cauchy")])
def test_mean_variance_match_scipy(name):
    d, sp = _make(name)
    assert d.mean.shape == d.variance.shape == (3,)
    np.testing.assert_allclose(d.mean, sp.mean(), rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(d.variance, sp.var(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "name, params",
    [
        ("StudentT", {"df": [0.5, 1.5, 3.0], "loc": [1.0, 1.0, 1.0], "scale": [2.0, 2.0, 2.0]}),
        ("InverseGamma", {"concentration": [0.5, 1.5, 3.0], "rate": [1.0, 1.0, 1.0]}),
        ("HalfStudentT", {"df": [0.5, 1.5, 3.0], "scale": [1.0, 1.0, 2.0]}),
    ],
)
def test_moments_that_do_not_exist(name, params):
    """Moments that do not exist are reported as inf or nan, as scipy and NumPyro do."""
    d, sp = _make(name, **params)
    np.testing.assert_allclose(d.mean, sp.mean(), rtol=2e-5)
    np.testing.assert_allclose(d.variance, sp.var(), rtol=2e-5)


def test_cauchy_moments():
    """As in NumPyro: the Cauchy mean is nan, its variance inf; both are inf for HalfCauchy."""
    cauchy = dist.Cauchy(jnp.zeros(2))
    assert cauchy.mean.shape == (2,)
    assert np.all(np.isnan(cauchy.mean)) and np.all(np.isposinf(cauchy.variance))
    assert np.isposinf(dist.HalfCauchy(1.0).mean) and np.isposinf(dist.HalfCauchy(1.0).variance)


# -- sampling -----------------------------------------------------------------------------------
_N = 50_000


@jax.jit
def _draw(d, key):
    """``(2, _N // 2) + batch_shape`` draws and their log densities (module level: cached)."""
    x = d.sample(key, (2, _N // 2))
    return x, d.log_prob(x)


@pytest.mark.parametrize("name", NAMES)
def test_sample_shape_support_and_moments(name):
    """Shapes, support and dtype of draws, and their moments against ``mean``/``variance``."""
    d, sp = _make(name)
    # alternate typed and raw keys; one jitted function per distribution keeps compiles few
    key = jax.random.key(3) if NAMES.index(name) % 2 else jax.random.PRNGKey(3)
    x, lp = _draw(d, key)
    assert x.shape == (2, _N // 2, 3) and x.dtype == jnp.float32
    assert np.all(d.validate_sample(x)) and np.all(np.isfinite(lp))
    x = np.asarray(x, np.float64).reshape(_N, 3)
    if name == "VonMises":
        # circular mean direction, and mean resultant length 1 - variance
        loc = np.asarray(d.loc, np.float64)
        mean_cos = np.mean(np.cos(x - loc), 0)
        np.testing.assert_allclose(np.mean(np.sin(x - loc), 0), 0.0, atol=5 / np.sqrt(_N))
        np.testing.assert_allclose(mean_cos, 1 - np.asarray(d.variance), atol=5 / np.sqrt(_N))
    elif name in ("Cauchy", "HalfCauchy"):
        # no moments: compare the empirical cdf at a few quantiles instead
        for q in (0.1, 0.5, 0.9):
            frac = np.mean(x <= sp.ppf(q), axis=0)
            np.testing.assert_allclose(frac, q, atol=5 * np.sqrt(q * (1 - q) / _N))
    else:
        mean, var = np.asarray(d.mean, np.float64), np.asarray(d.variance, np.float64)
        se_mean = np.sqrt(var / _N)
        assert np.all(np.abs(x.mean(0) - mean) < 5 * se_mean + 1e-6), (x.mean(0), mean)
        sq = (x - x.mean(0)) ** 2
        se_var = sq.std(0) / np.sqrt(_N)
        assert np.all(np.abs(sq.mean(0) - var) < 5 * se_var + 1e-6), (sq.mean(0), var)


def test_sample_conventions():
    d = dist.Normal(jnp.zeros(3))
    assert d.sample(jax.random.key(2)).shape == (3,)
    assert d(rng_key=jax.random.key(2), sample_shape=(5,)).shape == (5, 3)
    np.testing.assert_array_equal(
        d.sample(jax.random.key(7), (2,)), d.sample(jax.random.key(7), (2,))
    )
    assert not np.allclose(d.sample(jax.random.key(7), (2,)), d.sample(jax.random.key(8), (2,)))
    np.testing.assert_array_equal(
        d.rsample(jax.random.key(7), (2,)), d.sample(jax.random.key(7), (2,))
    )


def test_gamma_small_concentration_samples_stay_positive():
    d = dist.Gamma(jnp.full(3, 0.02), 1.0)
    x, lp = _draw(d, jax.random.PRNGKey(0))  # same shapes as the moments test: no recompile
    assert np.all(x > 0) and np.all(np.isfinite(lp))


# -- reparameterized gradients --------------------------------------------------------------------
# (StudentT, Chi2, InverseGamma and HalfStudentT draw through the same gamma sampler as Gamma.)
GRAD_CASES = ["Normal", "LogNormal", "Gamma", "Beta", "Weibull", "Uniform", "TruncatedNormal"]


@pytest.mark.parametrize("name", GRAD_CASES)
def test_reparameterized_gradient_of_mean(name):
    """d/dθ of the sample mean (pathwise) ≈ d/dθ of the closed-form mean, for every θ."""
    ctor = CASES[name][0]
    p0 = {k: jnp.asarray(v) for k, v in _params(name).items()}
    if name == "TruncatedNormal":  # bounds are not differentiated (kept out of the grad)
        bounds = {k: p0.pop(k) for k in ("low", "high")}
    else:
        bounds = {}
    key, n = jax.random.key(5), 50_000
    assert ctor({**p0, **bounds}).has_rsample

    @jax.jit
    def grads(p):
        g_mc = jax.grad(lambda p: ctor({**p, **bounds}).rsample(key, (n,)).mean(0).sum())(p)
        g_exact = jax.grad(lambda p: ctor({**p, **bounds}).mean.sum())(p)
        return g_mc, g_exact

    g_mc, g_exact = grads(p0)
    if name == "Gamma":  # d E[x] / d concentration = 1 / rate
        np.testing.assert_allclose(g_exact["concentration"], 1 / p0["rate"], rtol=1e-6)
    for k in p0:
        assert np.all(np.isfinite(g_mc[k])), k
        np.testing.assert_allclose(g_mc[k], g_exact[k], rtol=0.03, atol=0.01, err_msg=k)


def test_normal_pathwise_gradient():
    g = jax.grad(lambda m: dist.Normal(m, 2.0).sample(jax.random.key(6), (10,)).mean())(0.3)
    np.testing.assert_allclose(g, 1.0, rtol=1e-6)


def test_von_mises_is_not_reparameterized():
    d = dist.VonMises(0.0, 1.0)
    assert not d.has_rsample
    with pytest.raises(NotImplementedError):
        d.rsample(jax.random.key(0))


# -- validation -------------------------------------------------------------------------------
def test_invalid_parameters_raise_naming_the_parameter():
    with pytest.raises(ValueError, match="scale"):
        dist.Normal(0.0, -1.0, validate_args=True)
    with pytest.raises(ValueError, match="concentration1"):
        dist.Beta(-1.0, 1.0, validate_args=True)
    with pytest.raises(ValueError, match="df"):
        dist.StudentT(jnp.array([1.0, 0.0]), validate_args=True)
    with pytest.raises(ValueError, match="low"):
        dist.Uniform(1.0, 0.0, validate_args=True)
    with pytest.raises(ValueError, match="low"):
        dist.TruncatedNormal(0.0, 1.0, low=2.0, high=1.0, validate_args=True)
    dist.Normal(0.0, -1.0)  # validation is off by default
    dist.enable_validation()
    with pytest.raises(ValueError, match="rate"):
        dist.Exponential(0.0)
    dist.TruncatedNormal(0.0, 1.0, high=2.0)  # one-sided is fine
    dist.Chi2(3.0)


def test_validate_sample():
    assert np.array_equal(
        dist.Gamma(2.0).validate_sample(jnp.array([-1.0, 0.0, 1.0])), [False, False, True]
    )
    assert np.array_equal(
        dist.Beta(2.0, 2.0).validate_sample(jnp.array([-0.1, 0.5, 1.1])), [False, True, False]
    )
    u = dist.Uniform(jnp.array([0.0, 1.0]), jnp.array([1.0, 3.0]))
    assert isinstance(u.support, constraints.Constraint)
    assert np.array_equal(u.validate_sample(jnp.array([0.5, 0.5])), [True, False])
    assert "support" not in vars(u)
    tn = dist.TruncatedNormal(low=0.0)
    assert np.array_equal(tn.validate_sample(jnp.array([-1.0, 1e30])), [False, True])
    vm = dist.VonMises(0.0, 1.0)
    assert np.array_equal(vm.validate_sample(jnp.array([-4.0, 3.0])), [False, True])
    assert not dist.Normal().validate_sample(jnp.nan)


# -- jit / vmap / pytree ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["Normal", "TruncatedNormal", "VonMises"])
def test_jit_and_vmap(name):
    """Distributions are pytrees: they cross ``jit`` and can be ``vmap``-ed over their batch."""
    d, _ = _make(name)
    x = _values(name, (2, 3))
    lp = d.log_prob(x)

    @jax.jit
    def log_probs(d, x):
        # vmap over the batch dimension of the distribution itself
        return d.log_prob(x), jax.vmap(lambda d, x: d.log_prob(x), (0, 1), 1)(d, x)

    for out in log_probs(d, x):
        np.testing.assert_allclose(out, lp, rtol=1e-5, atol=1e-6)

    @jax.jit
    def samples(d, key, keys):
        return d.sample(key, (4,)), jax.vmap(lambda d, k: d.sample(k, (2,)), (0, 0), 1)(d, keys)

    s1, s2 = samples(d, jax.random.key(1), jax.random.split(jax.random.key(0), 3))
    assert s1.shape == (4, 3) and s2.shape == (2, 3)
    assert np.all(d.validate_sample(s1)) and np.all(d.validate_sample(s2))
    leaves = jax.tree_util.tree_leaves(d)
    assert leaves and all(leaf.shape == (3,) for leaf in leaves)


def test_jit_with_parameters_as_arguments():
    f = jax.jit(lambda m, s, x: dist.Normal(m, s).log_prob(x))
    np.testing.assert_allclose(f(0.0, 1.0, 0.5), stats.norm.logpdf(0.5), rtol=1e-6)
    np.testing.assert_allclose(
        jax.jit(lambda d, x: d.log_prob(x))(dist.Normal(0.0, 1.0), 0.5),
        stats.norm.logpdf(0.5),
        rtol=1e-6,
    )
    g = jax.jit(jax.grad(lambda c, x: dist.Gamma(c, 2.0).log_prob(x)))(3.0, 1.5)
    expected = np.log(2.0) + np.log(1.5) - float(jax.scipy.special.digamma(3.0))
    np.testing.assert_allclose(g, expected, rtol=1e-5)


# -- expand / to_event / mask -------------------------------------------------------------------
def test_expand_to_event_mask():
    d = dist.Normal(jnp.array([0.0, 1.0, 2.0]), 1.0)
    e = d.expand((4, 3))
    assert e.batch_shape == (4, 3)
    x = e.sample(jax.random.key(0), (2,))
    assert x.shape == (2, 4, 3)
    np.testing.assert_allclose(e.log_prob(x), d.log_prob(x), rtol=1e-6)

    ind = d.to_event(1)
    assert ind.batch_shape == () and ind.event_shape == (3,)
    np.testing.assert_allclose(ind.log_prob(x), d.log_prob(x).sum(-1), rtol=1e-6)

    g = dist.Exponential(jnp.array([1.0, 2.0, 3.0])).expand((2, 3)).to_event(2)
    assert g.event_shape == (2, 3) and g.sample(jax.random.key(1), (5,)).shape == (5, 2, 3)
    v = jnp.ones((2, 3))
    expected = 2 * stats.expon(scale=1 / np.array([1.0, 2.0, 3.0])).logpdf(1.0).sum()
    np.testing.assert_allclose(g.log_prob(v), expected, rtol=1e-5)

    mask = jnp.array([True, False, True])
    m = dist.Beta(jnp.array([2.0, 2.0, 2.0]), 3.0).mask(mask)
    lp = m.log_prob(jnp.full((3,), 0.3))
    np.testing.assert_allclose(lp, np.where(mask, stats.beta(2, 3).logpdf(0.3), 0.0), rtol=1e-5)
    np.testing.assert_allclose(
        m.to_event(1).log_prob(jnp.full((3,), 0.3)), 2 * stats.beta(2, 3).logpdf(0.3), rtol=1e-5
    )
    tn = dist.TruncatedNormal(0.0, 1.0, low=0.0).expand((5,))
    assert tn.batch_shape == (5,) and tn.log_prob(jnp.ones((3, 1))).shape == (3, 5)


# -- truncated normal in the tails ------------------------------------------------------------
@pytest.mark.parametrize(
    "low, high",
    [(5.0, 6.0), (8.0, None), (None, -30.0), (-40.0, -39.9), (3.0, 3.5), (-2.0, None)],
)
def test_truncated_normal_tails(low, high):
    """Sampling/quantiles stay accurate when the interval lies far out in a tail."""
    d = dist.TruncatedNormal(0.0, 1.0, low=low, high=high)
    a = -np.inf if low is None else low
    b = np.inf if high is None else high
    sp = stats.truncnorm(a, b)
    m = max(abs(v) for v in (a, b) if np.isfinite(v))  # how far out the interval lies
    x = np.asarray(d.sample(jax.random.key(0), (20_000,)), np.float64)
    assert np.all(np.isfinite(x)) and np.all((x >= a) & (x <= b))
    assert abs(x.mean() - sp.mean()) < 5 * sp.std() / np.sqrt(x.size)
    # quantiles vs scipy, within a few float32 ulps of the quantile's magnitude
    q = np.array([1e-5, 0.01, 0.3, 0.5, 0.9, 1 - 1e-5], np.float32)
    ref = sp.ppf(q.astype(np.float64))
    np.testing.assert_allclose(d.icdf(q), ref, rtol=0, atol=8 * 1.2e-7 * max(1.0, abs(ref).max()))
    # normalized log density; float32 rounding grows like the log density itself, ~m^2 / 2
    np.testing.assert_allclose(
        d.log_prob(x[:50].astype(np.float32)), sp.logpdf(np.float32(x[:50])), atol=1e-6 * (1 + m**2)
    )
    # pathwise gradient of the quantile in loc vs a central difference of scipy's (float64)
    q = np.array([0.01, 0.5, 0.99], np.float32)
    g = jax.vmap(
        jax.grad(lambda loc, q: dist.TruncatedNormal(loc, 1.0, low=low, high=high).icdf(q)),
        (None, 0),
    )(0.0, q)
    h = 1e-4
    fd = (
        h
        + stats.truncnorm(a - h, b - h).ppf(q.astype(np.float64))
        - (-h + stats.truncnorm(a + h, b + h).ppf(q.astype(np.float64)))
    ) / (2 * h)
    # (the quantile barely moves with loc out there: d/dloc = 1 - (nearly 1), so float32 leaves
    # an absolute error that grows slowly with the distance m)
    np.testing.assert_allclose(g, fd, rtol=2e-3, atol=2e-6 * (1 + m))


def test_truncated_normal_default_is_normal():
    tn = dist.TruncatedNormal(1.0, 2.0)
    np.testing.assert_allclose(tn.log_prob(0.3), stats.norm(1, 2).logpdf(0.3), rtol=1e-6)
    np.testing.assert_allclose(tn.mean, 1.0, atol=1e-6)
    np.testing.assert_allclose(tn.variance, 4.0, rtol=1e-6)
    assert tn.support is constraints.real  # no bound on either side (as NumPyro)


# -- von Mises --------------------------------------------------------------------------------
@pytest.mark.parametrize("concentration", [1e-6, 0.05, 50.0, 1e5])
def test_von_mises_extreme_concentrations(concentration):
    d = dist.VonMises(jnp.array([-3.0, 0.5]), concentration)
    x = np.asarray(d.sample(jax.random.key(0), (20_000,)), np.float64)
    assert np.all(np.abs(x) <= np.pi)
    loc = np.asarray(d.loc, np.float64)
    r = np.mean(np.cos(x - loc), 0)
    np.testing.assert_allclose(r, 1 - np.asarray(d.variance), atol=5 / np.sqrt(x.shape[0]))
    if concentration >= 50:  # nearly normal around loc with variance 1 / k
        dev = np.remainder(x - loc + np.pi, 2 * np.pi) - np.pi
        np.testing.assert_allclose(dev.var(0) * concentration, 1.0, rtol=0.05)
    np.testing.assert_allclose(
        d.log_prob(jnp.asarray(x[:5], jnp.float32)),
        stats.vonmises(concentration, loc=loc).logpdf(np.float32(x[:5])),
        rtol=1e-5,
        atol=1e-5,
    )


def test_public_names():
    for name in NAMES:
        assert name in dist.__all__ or hasattr(dist, name)
        assert issubclass(getattr(dist, name), dist.Distribution)
    assert issubclass(dist.Chi2, dist.Gamma)
    c = dist.Chi2(jnp.array([2.0, 4.0]))
    np.testing.assert_allclose(c.concentration, [1.0, 2.0])
    np.testing.assert_allclose(c.rate, [0.5, 0.5])
    assert math.isclose(float(dist.Exponential(2.0).mean), 0.5)
