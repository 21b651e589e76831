"""Truncated, censored and folded distributions, checked against scipy (float64) as truth.

Truncated densities are built by hand from scipy's base distribution (``logpdf - log Z`` with
``Z`` from the tail that keeps its digits); censored likelihoods from scipy's ``logcdf`` /
``logsf`` / ``logpdf``; moments by ``scipy.integrate.quad``.
"""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from jppl.distributions import (
    Cauchy,
    Delta,
    Exponential,
    Gamma,
    Gumbel,
    Laplace,
    Logistic,
    LogNormal,
    MultivariateNormal,
    Normal,
    StudentT,
    Weibull,
    constraints,
)
from jppl.distributions.truncated import (
    DoublyTruncatedPowerLaw,
    FoldedDistribution,
    IntervalCensoredDistribution,
    LeftCensoredDistribution,
    LeftTruncatedDistribution,
    LeftTruncatedGamma,
    LowerTruncatedPowerLaw,
    RightCensoredDistribution,
    RightTruncatedDistribution,
    RightTruncatedGamma,
    TruncatedCauchy,
    TruncatedDistribution,
    TruncatedGamma,
    TruncatedPolyaGamma,
    TwoSidedTruncatedDistribution,
    TwoSidedTruncatedGamma,
)
from jppl.util import enable_x64


@pytest.fixture(autouse=True)
def x64():
    enable_x64(True)
    yield
    enable_x64(False)


KEY = jax.random.PRNGKey(0)

# base name -> (jppl constructor, scipy constructor); params (loc, scale) of batch shape (3,)
LOC = np.array([-1.0, 0.5, 2.0])
SCALE = np.array([0.5, 1.0, 2.0])
BASES = {
    "Normal": (lambda: Normal(LOC, SCALE), lambda: stats.norm(LOC, SCALE)),
    "Cauchy": (lambda: Cauchy(LOC, SCALE), lambda: stats.cauchy(LOC, SCALE)),
    "Laplace": (lambda: Laplace(LOC, SCALE), lambda: stats.laplace(LOC, SCALE)),
    "Logistic": (lambda: Logistic(LOC, SCALE), lambda: stats.logistic(LOC, SCALE)),
    "StudentT": (lambda: StudentT(4.0, LOC, SCALE), lambda: stats.t(4.0, LOC, SCALE)),
}
# bounds of batch shape (2, 1): with the base, batch shape (2, 3)
BOUNDS = {
    "left": (np.array([[-0.5], [1.0]]), None),
    "right": (None, np.array([[0.0], [3.0]])),
    "two": (np.array([[-2.0], [0.0]]), np.array([[1.0], [2.5]])),
    "far_right": (np.array([[6.0], [8.0]]), np.array([[9.0], [12.0]])),
}


def _trunc_ref(sb, low, high):
    """(logpdf(x), cdf(x), ppf(q)) of scipy's base ``sb`` truncated to [low, high]."""
    lo = -np.inf if low is None else low
    hi = np.inf if high is None else high
    upper = sb.cdf(lo) > 0.5  # above the median: upper-tail probabilities keep their digits
    z = np.where(upper, sb.sf(lo) - sb.sf(hi), sb.cdf(hi) - sb.cdf(lo))

    def logpdf(x):
        return np.where((x >= lo) & (x <= hi), sb.logpdf(x) - np.log(z), -np.inf)

    def cdf(x):
        c = np.where(upper, (sb.sf(lo) - sb.sf(x)) / z, (sb.cdf(x) - sb.cdf(lo)) / z)
        return np.clip(np.where(x < lo, 0.0, np.where(x > hi, 1.0, c)), 0.0, 1.0)

    return logpdf, cdf, lo, hi


def _points(lo, hi, n=5):
    """``n`` interior points per batch element, shape (n,) + broadcast shape of lo, hi."""
    lo_f = np.where(np.isfinite(lo), lo, np.where(np.isfinite(hi), hi - 6.0, -3.0))
    hi_f = np.where(np.isfinite(hi), hi, lo_f + 6.0)
    t = np.linspace(0.05, 0.95, n).reshape((n,) + (1,) * np.ndim(lo_f))
    return lo_f + t * (hi_f - lo_f)


def _first_fast(values):
    """The first case in the default suite, the others in the slow step (each compiles its own
    programs; the default suite has a time budget)."""
    values = list(values)
    return values[:1] + [pytest.param(v, marks=pytest.mark.slow) for v in values[1:]]


def _ks_pvalue(x, cdf):
    return stats.kstest(np.asarray(x), cdf).pvalue


# the Normal cases run jppl's TruncatedNormal, whose compile is slow: marked slow
@pytest.mark.parametrize("bounds", _first_fast(BOUNDS))
@pytest.mark.parametrize(
    "base",
    [pytest.param("Normal", marks=pytest.mark.slow)]
    + _first_fast(b for b in BASES if b != "Normal"),
)
def test_truncated_symmetric_against_scipy(base, bounds):
    low, high = BOUNDS[bounds]
    d = TruncatedDistribution(BASES[base][0](), low, high)
    cls = {
        "left": LeftTruncatedDistribution,
        "right": RightTruncatedDistribution,
    }.get(bounds, TwoSidedTruncatedDistribution)
    assert type(d) is cls and d.batch_shape == (2, 3) and d.has_rsample
    logpdf, cdf, lo, hi = _trunc_ref(BASES[base][1](), low, high)
    lo, hi = np.broadcast_to(lo, (2, 3)), np.broadcast_to(hi, (2, 3))
    _check_univariate(d, logpdf, cdf, lo, hi, _points(lo, hi), jax.random.PRNGKey(7))


def _check_univariate(d, logpdf, cdf, lo, hi, x, key=KEY, n=1000):
    """log_prob, cdf, icdf round trips, support and samples (KS) of a (2, 3)-batched ``d``."""
    q = np.concatenate([np.linspace(0.02, 0.98, 7), [-0.1, 1.1, 1e-12]]).reshape(10, 1, 1)
    lp, c, xq, cq, s = _evaluate(d, x, q, key, n)  # one compile per distribution
    np.testing.assert_allclose(lp, logpdf(x), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(c, cdf(x), rtol=1e-9, atol=1e-14)
    assert xq.shape == (10, 2, 3)
    np.testing.assert_allclose(cq[:7], np.broadcast_to(q[:7], (7, 2, 3)), rtol=1e-9, atol=1e-12)
    assert np.all(np.isnan(xq[7:9]))
    # a tiny level: the round trip is as accurate as the cdf, whose absolute error is that of
    # the base's cdf (JAX's incomplete gamma: ~1e-14 relative in the far tail), plus the
    # change of the cdf over one float spacing of x where the density at the bound is large
    x9 = np.asarray(xq[9])
    tol = 1e-14 + 4.0 * np.exp(logpdf(x9)) * np.spacing(np.abs(x9))
    assert np.all(np.abs(np.asarray(cq[9]) - 1e-12) <= 1e-6 * 1e-12 + tol)
    # outside the support: -inf / cdf 0 or 1
    if np.all(np.isfinite(lo)):
        assert np.all(d.log_prob(lo - 0.1) == -np.inf) and np.all(d.cdf(lo - 0.1) == 0)
    if np.all(np.isfinite(hi)):
        assert np.all(d.log_prob(hi + 0.1) == -np.inf) and np.all(d.cdf(hi + 0.1) == 1)
    # samples: in the support, and distributed as the truncated cdf (KS per element)
    assert s.shape == (n, 2, 3) and np.all((s >= lo) & (s <= hi))
    assert np.all(np.asarray(d.support(s)))
    for i, j in [(0, 0), (1, 2)]:
        p = _ks_pvalue(s[:, i, j], lambda v, i=i, j=j: _cdf_ij(cdf, v, i, j))
        assert p > 1e-3, (i, j, p)


@partial(jax.jit, static_argnums=(4,))
def _evaluate(d, x, q, key, n):
    xq = d.icdf(q)
    return d.log_prob(x), d.cdf(x), xq, d.cdf(xq), d.sample(key, (n,))


def _cdf_ij(cdf, v, i, j):
    v = np.asarray(v)
    full = cdf(np.broadcast_to(v[:, None, None], v.shape + (2, 3)))
    return full[:, i, j]


def test_supports_and_types():
    n = Normal(0.0, 1.0)
    assert LeftTruncatedDistribution(n, 1.0).support == constraints.greater_than_eq(1.0)
    r = RightTruncatedDistribution(n, 1.0).support
    assert repr(r) == "less_than_eq(1.0)" and bool(r(1.0)) and not bool(r(1.0001))
    assert TwoSidedTruncatedDistribution(n, 0.0, 2.0).support == constraints.interval(0.0, 2.0)
    assert TruncatedDistribution(n) is n
    assert LeftTruncatedGamma(Gamma(2.0), 1.0).support == constraints.greater_than_eq(1.0)
    assert RightTruncatedGamma(Gamma(2.0), 1.0).support == constraints.interval(0.0, 1.0)
    assert isinstance(TruncatedCauchy(0.0, 1.0, low=-1.0), LeftTruncatedDistribution)
    assert isinstance(TruncatedCauchy(high=2.0).base_dist, Cauchy)
    assert isinstance(TruncatedCauchy(), Cauchy)
    assert isinstance(TruncatedGamma(2.0, 1.0), Gamma)
    assert isinstance(TruncatedGamma(2.0, 1.0, low=1.0, high=2.0), TwoSidedTruncatedGamma)
    # a Gamma base through the generic factory gets the Gamma classes
    assert isinstance(TruncatedDistribution(Gamma(2.0), high=2.0), RightTruncatedGamma)
    # defaults follow NumPyro
    assert float(LeftTruncatedDistribution(n).low) == 0.0
    assert float(RightTruncatedDistribution(n).high) == 0.0
    t = TwoSidedTruncatedDistribution(n)
    assert (float(t.low), float(t.high)) == (0.0, 1.0)


def test_bad_arguments_raise_naming_the_argument():
    with pytest.raises(TypeError, match="base_dist.*Gamma"):
        LeftTruncatedDistribution(Gamma(2.0), 1.0)
    with pytest.raises(TypeError, match="base_dist.*Gumbel"):
        TwoSidedTruncatedDistribution(Gumbel(0.0, 1.0), 0.0, 1.0)
    with pytest.raises(ValueError, match="base_dist.*univariate"):
        LeftTruncatedDistribution(MultivariateNormal(jnp.zeros(2), jnp.eye(2)), 0.0)
    with pytest.raises(ValueError, match="low < high"):
        TwoSidedTruncatedDistribution(Normal(0.0, 1.0), 2.0, 1.0)
    with pytest.raises(ValueError, match="`low` must be >= 0"):
        LeftTruncatedGamma(Gamma(2.0), -1.0)
    with pytest.raises(ValueError, match="`high` must be > 0"):
        TruncatedGamma(2.0, high=-1.0)
    with pytest.raises(ValueError, match="low < high"):
        TruncatedGamma(2.0, low=3.0, high=1.0)
    with pytest.raises(TypeError, match="base_dist.*Gamma"):
        LeftTruncatedGamma(Normal(0.0, 1.0), 1.0)
    with pytest.raises(ValueError, match="`low` must not be nan"):
        LeftTruncatedDistribution(Normal(0.0, 1.0), jnp.nan)
    with pytest.raises(TypeError, match="base_dist.*cdf"):
        LeftCensoredDistribution(Delta(0.0), 1)
    with pytest.raises(ValueError, match="`censored` must hold 0/1"):
        RightCensoredDistribution(Normal(0.0, 1.0), jnp.array([0, 2]))
    with pytest.raises(ValueError, match="`alpha` must be < -1"):
        LowerTruncatedPowerLaw(-0.5, 1.0)
    with pytest.raises(ValueError, match="`low` must be > 0 when `alpha` <= -1"):
        DoublyTruncatedPowerLaw(-1.5, 0.0, 1.0)
    with pytest.raises(ValueError, match="univariate"):
        FoldedDistribution(MultivariateNormal(jnp.zeros(2), jnp.eye(2)))


def _mean_var_quad(logpdf, lo, hi):
    f = lambda x: np.exp(logpdf(x))  # noqa: E731
    z = integrate.quad(f, lo, hi, epsabs=0, epsrel=1e-12, limit=200)[0]
    m = integrate.quad(lambda x: x * f(x), lo, hi, epsabs=0, epsrel=1e-12, limit=200)[0] / z
    v = integrate.quad(lambda x: (x - m) ** 2 * f(x), lo, hi, epsrel=1e-12, limit=200)[0] / z
    return z, m, v


@pytest.mark.parametrize("bounds", _first_fast(["left", "right", "two", "far_right"]))
def test_normal_and_cauchy_moments(bounds):
    low, high = BOUNDS[bounds]
    for name in ["Normal", "Cauchy"]:
        d = TruncatedDistribution(BASES[name][0](), low, high)
        mean, var = jax.jit(lambda d: (d.mean, d.variance))(d)
        assert mean.shape == var.shape == (2, 3)
        for i, j in [(0, 0), (1, 1), (1, 2)]:
            lo = -np.inf if low is None else low[i, 0]
            hi = np.inf if high is None else high[i, 0]
            sb_ij = _scalar(name, j)
            if name == "Cauchy" and not (np.isfinite(lo) and np.isfinite(hi)):
                assert mean[i, j] == (np.inf if np.isfinite(lo) else -np.inf)
                assert np.isnan(var[i, j])
                continue
            _, m, v = _mean_var_quad(sb_ij.logpdf, lo, hi)
            np.testing.assert_allclose(mean[i, j], m, rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(var[i, j], v, rtol=1e-7)
    # entropy, Normal base: -E[log p] by quadrature
    d = TruncatedDistribution(
        Normal(0.5, 2.0), None if low is None else low[1, 0], None if high is None else high[1, 0]
    )
    lo = -np.inf if low is None else low[1, 0]
    hi = np.inf if high is None else high[1, 0]
    lp = lambda x: float(d.log_prob(x))  # noqa: E731
    h = -integrate.quad(lambda x: np.exp(lp(x)) * lp(x), lo, hi, epsrel=1e-10)[0]
    np.testing.assert_allclose(d.entropy(), h, rtol=1e-8)
    with pytest.raises(NotImplementedError, match="Laplace"):
        _ = TruncatedDistribution(Laplace(0.0, 1.0), low, high).mean


def _scalar(name, j):
    if name == "Normal":
        return stats.norm(LOC[j], SCALE[j])
    return stats.cauchy(LOC[j], SCALE[j])


# -- truncated Gamma -----------------------------------------------------------------------
CONC = np.array([0.4, 2.0, 7.5])
RATE = np.array([1.5, 1.0, 0.5])
GAMMA_BOUNDS = {
    "left": (np.array([[0.5], [3.0]]), None),
    "right": (None, np.array([[0.2], [4.0]])),
    "two": (np.array([[0.1], [1.0]]), np.array([[1.0], [6.0]])),
    "far_right": (np.array([[20.0], [40.0]]), np.array([[21.0], [45.0]])),
}


@pytest.mark.slow  # bisection over JAX's incomplete gamma compiles slowly (~30 s a case)
@pytest.mark.parametrize("bounds", list(GAMMA_BOUNDS))
def test_truncated_gamma_against_scipy(bounds):
    low, high = GAMMA_BOUNDS[bounds]
    d = TruncatedGamma(CONC, RATE, low=low, high=high)
    cls = {"left": LeftTruncatedGamma, "right": RightTruncatedGamma}.get(
        bounds, TwoSidedTruncatedGamma
    )
    assert type(d) is cls and d.batch_shape == (2, 3) and d.has_rsample
    sb = stats.gamma(CONC, scale=1.0 / RATE)
    logpdf, cdf, lo, hi = _trunc_ref(sb, 0.0 if low is None else low, high)
    lo, hi = np.broadcast_to(lo, (2, 3)), np.broadcast_to(hi, (2, 3))
    _check_univariate(
        d, logpdf, cdf, lo, hi, _points(lo, np.where(np.isfinite(hi), hi, lo + 10.0)), KEY
    )
    # moments against quadrature
    mean, var = jax.jit(lambda d: (d.mean, d.variance))(d)
    for i, j in [(0, 1), (1, 2), (1, 0)]:
        sbij = stats.gamma(CONC[j], scale=1.0 / RATE[j])
        _, m, v = _mean_var_quad(sbij.logpdf, lo[i, j], hi[i, j])
        np.testing.assert_allclose(mean[i, j], m, rtol=1e-8)
        np.testing.assert_allclose(var[i, j], v, rtol=1e-6)


def test_truncated_gamma_log_prob_and_cdf():
    # the fast subset of the slow test above: density and cdf for every kind of bound
    f = jax.jit(lambda d, x: (d.log_prob(x), d.cdf(x)))
    for low, high in GAMMA_BOUNDS.values():
        d = TruncatedGamma(CONC, RATE, low=low, high=high)
        logpdf, cdf, lo, hi = _trunc_ref(
            stats.gamma(CONC, scale=1.0 / RATE), 0.0 if low is None else low, high
        )
        lo, hi = np.broadcast_to(lo, (2, 3)), np.broadcast_to(hi, (2, 3))
        x = _points(lo, np.where(np.isfinite(hi), hi, lo + 10.0))
        lp, c = f(d, x)
        np.testing.assert_allclose(lp, logpdf(x), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(c, cdf(x), rtol=1e-9, atol=1e-14)


# -- gradients -----------------------------------------------------------------------------
def _fd_check(f, args, rtol=1e-6, h=1e-6):
    """Gradient of scalar ``f`` against central finite differences in each argument."""
    grads = jax.grad(f, argnums=tuple(range(len(args))))(*args)
    for k, (a, g) in enumerate(zip(args, grads, strict=True)):
        e = np.zeros(np.shape(a))
        fd = np.zeros(np.shape(a))
        for idx in np.ndindex(np.shape(a)):
            e[...] = 0
            e[idx] = h
            fd[idx] = (
                f(*[a + e if m == k else b for m, b in enumerate(args)])
                - f(*[a - e if m == k else b for m, b in enumerate(args)])
            ) / (2 * h)
        np.testing.assert_allclose(g, fd, rtol=rtol, atol=1e-8, err_msg=f"argument {k}")


@pytest.mark.parametrize(
    "name", _first_fast(["Cauchy", "Normal", "Laplace", "Logistic", "StudentT"])
)
def test_truncated_gradients(name):
    ctor = {
        "Normal": Normal,
        "Cauchy": Cauchy,
        "Laplace": Laplace,
        "Logistic": Logistic,
        "StudentT": lambda loc, scale: StudentT(4.0, loc, scale),
    }[name]
    x = jnp.array([0.3, 1.2])

    def lp(loc, scale, low, high):
        d = TwoSidedTruncatedDistribution(ctor(loc, scale), low, high)
        return jnp.sum(d.log_prob(x)) + jnp.sum(d.cdf(x))

    args = (jnp.array(0.4), jnp.array(1.3), jnp.array(-0.5), jnp.array(2.0))
    _fd_check(jax.jit(lp), args)

    # reparameterized draws: d sample / d (loc, low) with the key held fixed
    def draw(loc, low):
        return jnp.sum(LeftTruncatedDistribution(ctor(loc, 1.0), low).sample(KEY, (4,)))

    _fd_check(jax.jit(draw), (jnp.array(0.2), jnp.array(1.5)), rtol=1e-5)


@pytest.mark.slow
def test_truncated_gamma_gradients():
    x = jnp.array([0.8, 1.7])

    def lp(conc, rate, low, high):
        d = TwoSidedTruncatedGamma(Gamma(conc, rate), low, high)
        return jnp.sum(d.log_prob(x)) + jnp.sum(d.cdf(x)) + d.mean

    _fd_check(jax.jit(lp), (jnp.array(2.5), jnp.array(1.2), jnp.array(0.5), jnp.array(3.0)))

    def draw(conc, rate, low):
        return jnp.sum(LeftTruncatedGamma(Gamma(conc, rate), low).sample(KEY, (3,)))

    _fd_check(jax.jit(draw), (jnp.array(2.5), jnp.array(1.2), jnp.array(0.5)), rtol=1e-5)


# -- jit / vmap / expand / to_event / mask -------------------------------------------------
def _all_dists():
    return {
        "left": LeftTruncatedDistribution(Cauchy(LOC, SCALE), 0.0),
        "right_normal": RightTruncatedDistribution(Normal(LOC, SCALE), 1.0),
        "two": TwoSidedTruncatedDistribution(StudentT(4.0, LOC, SCALE), -1.0, 2.0),
        "gamma": TruncatedGamma(CONC, RATE, low=0.5, high=4.0),
        "folded": FoldedDistribution(Normal(LOC, SCALE)),
        "left_cens": LeftCensoredDistribution(Normal(LOC, SCALE), jnp.array([0, 1, 1])),
        "right_cens": RightCensoredDistribution(Exponential(RATE), jnp.array([1, 0, 1])),
        "power": DoublyTruncatedPowerLaw(np.array([-2.0, -1.0, 0.5]), 0.5, 3.0),
        "lower_power": LowerTruncatedPowerLaw(np.array([-2.0, -3.0, -4.5]), 0.5),
        "polya": TruncatedPolyaGamma((3,)),
    }


@pytest.mark.parametrize("name", _first_fast(_all_dists()))
def test_jit_vmap_expand_to_event_mask(name):
    d = _all_dists()[name]
    assert d.batch_shape == (3,)
    x = d.sample(KEY, (2,))
    assert x.shape == (2, 3)
    lp = d.log_prob(x)
    assert lp.shape == (2, 3) and np.all(np.isfinite(lp))
    # jit: the distribution crosses the boundary as a pytree
    np.testing.assert_allclose(jax.jit(lambda d, x: d.log_prob(x))(d, x), lp, rtol=1e-12)
    # vmap over the batch axis of the distribution and the value
    if name == "polya":  # no parameters to map over
        return
    lp_v = jax.vmap(lambda d, x: d.log_prob(x), in_axes=(0, 1), out_axes=1)(d, x)
    np.testing.assert_allclose(lp_v, lp, rtol=1e-12)
    e = d.expand((4, 3))
    assert e.batch_shape == (4, 3) and e.sample(KEY, (2,)).shape == (2, 4, 3)
    np.testing.assert_allclose(e.log_prob(x[0]), np.broadcast_to(lp[0], (4, 3)), rtol=1e-12)
    ind = d.to_event(1)
    assert ind.event_shape == (3,)
    np.testing.assert_allclose(ind.log_prob(x), lp.sum(-1), rtol=1e-12)
    m = d.mask(jnp.array([True, False, True]))
    np.testing.assert_allclose(m.log_prob(x), lp * np.array([1, 0, 1]), rtol=1e-12)


# -- folded --------------------------------------------------------------------------------
def test_folded_against_scipy():
    d = FoldedDistribution(Normal(LOC, SCALE))
    sb = stats.foldnorm(np.abs(LOC) / SCALE, scale=SCALE)
    x = np.array([[0.0, 0.1, 0.7], [1.5, 2.5, 6.0]])
    np.testing.assert_allclose(d.log_prob(x), sb.logpdf(x), rtol=1e-10)
    np.testing.assert_allclose(d.cdf(x), sb.cdf(x), rtol=1e-10, atol=1e-15)
    assert np.all(d.log_prob(-0.5) == -np.inf)
    assert d.support is constraints.positive and d.has_rsample
    s = np.asarray(d.sample(jax.random.PRNGKey(11), (2000,)))
    assert np.all(s >= 0)
    for j in range(3):
        assert (
            _ks_pvalue(s[:, j], stats.foldnorm(abs(LOC[j]) / SCALE[j], scale=SCALE[j]).cdf) > 1e-3
        )
    c = FoldedDistribution(Cauchy(0.5, 2.0))
    np.testing.assert_allclose(
        c.log_prob(np.array([0.3, 4.0])),
        stats.foldcauchy(0.25, scale=2.0).logpdf(np.array([0.3, 4.0])),
        rtol=1e-10,
    )
    # a base on the positive half-line folds to itself
    g = FoldedDistribution(Gamma(2.0, 1.0))
    np.testing.assert_allclose(g.log_prob(1.3), stats.gamma(2.0).logpdf(1.3), rtol=1e-12)
    assert not FoldedDistribution(RightCensoredDistribution(Normal(0.0, 1.0), 0)).has_rsample


# -- censored ------------------------------------------------------------------------------
CENSOR_BASES = {
    "Normal": (lambda: Normal(LOC, SCALE), stats.norm(LOC, SCALE)),
    "Cauchy": (lambda: Cauchy(LOC, SCALE), stats.cauchy(LOC, SCALE)),
    "Exponential": (lambda: Exponential(RATE), stats.expon(scale=1.0 / RATE)),
    "Weibull": (lambda: Weibull(SCALE, CONC), stats.weibull_min(CONC, scale=SCALE)),
    "LogNormal": (lambda: LogNormal(LOC, SCALE), stats.lognorm(SCALE, scale=np.exp(LOC))),
    "Gamma": (lambda: Gamma(CONC, RATE), stats.gamma(CONC, scale=1.0 / RATE)),
}


@pytest.mark.parametrize("name", _first_fast(CENSOR_BASES))
def test_left_right_censored_against_scipy(name):
    ctor, sb = CENSOR_BASES[name]
    censored = np.array([[0], [1]])  # batch (2, 3) with the base
    x = np.array([[0.3, 1.1, 2.5], [0.05, 0.9, 4.0]])
    left = LeftCensoredDistribution(ctor(), censored)
    right = RightCensoredDistribution(ctor(), censored)
    assert left.batch_shape == right.batch_shape == (2, 3)
    assert not left.has_rsample and left.support == ctor().support
    ref_l = np.where(censored == 1, sb.logcdf(x), sb.logpdf(x))
    ref_r = np.where(censored == 1, sb.logsf(x), sb.logpdf(x))
    np.testing.assert_allclose(left.log_prob(x), ref_l, rtol=1e-10)
    np.testing.assert_allclose(right.log_prob(x), ref_r, rtol=1e-10)
    s = right.sample(KEY, (5,))
    assert s.shape == (5, 2, 3) and np.all(np.asarray(ctor().support(s)))


def test_censored_far_tails():
    # log S and log F far out, where 1 - F and clipping would lose them
    n = RightCensoredDistribution(Normal(0.0, 1.0), True)
    np.testing.assert_allclose(n.log_prob(12.0), stats.norm.logsf(12.0), rtol=1e-12)
    ln = LeftCensoredDistribution(Normal(0.0, 1.0), True)
    np.testing.assert_allclose(ln.log_prob(-40.0), stats.norm.logcdf(-40.0), rtol=1e-12)
    w = RightCensoredDistribution(Weibull(1.0, 2.0), True)
    np.testing.assert_allclose(w.log_prob(8.0), -64.0, rtol=1e-14)
    g = RightCensoredDistribution(Gamma(2.0, 1.0), True)
    np.testing.assert_allclose(g.log_prob(30.0), stats.gamma(2.0).logsf(30.0), rtol=1e-10)


@pytest.mark.parametrize("name", _first_fast(["Normal", "Weibull", "Gamma"]))
def test_interval_censored_against_scipy(name):
    ctor, sb = CENSOR_BASES[name]
    # per element of the base's batch (3,): the six kinds of row, stacked on a leading axis
    left_c = np.array([[1], [0], [0], [1], [0], [0]])
    right_c = np.array([[0], [1], [0], [1], [0], [0]])
    lo = np.array(
        [
            [-np.inf] * 3,
            [0.8, 1.0, 2.0],
            [0.2, 0.5, 1.0],
            [0.3, 0.6, 1.0],
            [0.7, 1.2, 2.0],
            [5.0, 7.0, 30.0],
        ]
    )
    hi = np.array(
        [
            [0.5, 1.1, 2.5],
            [np.inf] * 3,
            [0.9, 1.6, 3.0],
            [0.9, 2.0, 4.0],
            [0.7, 1.2, 2.0],
            [6.0, 8.0, 31.0],
        ]
    )
    if name != "Normal":
        lo[0] = 0.0
    d = IntervalCensoredDistribution(ctor(), left_c, right_c)
    assert d.batch_shape == (6, 3) and d.event_shape == (2,)
    value = np.stack([lo, hi], axis=-1)
    with np.errstate(divide="ignore"):
        ref = np.stack(
            [
                sb.logcdf(hi[0]),
                sb.logsf(lo[1]),
                np.log(sb.cdf(hi[2]) - sb.cdf(lo[2])),
                np.logaddexp(sb.logcdf(lo[3]), sb.logsf(hi[3])),
                sb.logpdf(lo[4]),
                # far right, from scipy's logsf: log(S(lo) - S(hi))
                sb.logsf(lo[5]) + np.log1p(-np.exp(sb.logsf(hi[5]) - sb.logsf(lo[5]))),
            ]
        )
    np.testing.assert_allclose(d.log_prob(value), ref, rtol=1e-9)
    assert np.all(np.asarray(d.validate_sample(value)))
    bad = value.copy()
    bad[2, :, 0] = bad[2, :, 1] + 1.0  # lower > upper on interval rows
    assert not np.any(np.asarray(d.validate_sample(bad))[2])
    s = d.sample(KEY, (4,))
    assert s.shape == (4, 6, 3, 2) and np.all(s[..., 0] == s[..., 1])
    # gradients are finite even with infinite, unused bounds
    g = jax.grad(
        lambda v: jnp.sum(IntervalCensoredDistribution(ctor(), left_c, right_c).log_prob(v))
    )(jnp.asarray(value))
    assert np.all(np.isfinite(np.asarray(g)[np.isfinite(value)]))


def test_censored_gradients():
    x = jnp.array([0.4, 1.3, 2.2])
    c = jnp.array([0, 1, 1])

    def f(loc, scale):
        r = RightCensoredDistribution(Normal(loc, scale), c).log_prob(x)
        left = LeftCensoredDistribution(Normal(loc, scale), c).log_prob(x)
        v = jnp.stack([x, x + 0.5], -1)
        i = IntervalCensoredDistribution(Normal(loc, scale), c, 1 - c).log_prob(v)
        return jnp.sum(r) + jnp.sum(left) + jnp.sum(i)

    _fd_check(jax.jit(f), (jnp.array(0.7), jnp.array(1.4)))


# -- power laws and Polya-Gamma ------------------------------------------------------------
@pytest.mark.parametrize("alpha", _first_fast([-2.5, -1.0, -1.0 + 1e-9, 0.5, 3.0]))
def test_doubly_truncated_power_law(alpha):
    low, high = 0.5, 3.0
    d = DoublyTruncatedPowerLaw(alpha, low, high)
    z = integrate.quad(lambda t: t**alpha, low, high, epsrel=1e-13)[0]
    x = np.array([0.5, 0.9, 1.7, 3.0])
    np.testing.assert_allclose(d.log_prob(x), alpha * np.log(x) - np.log(z), rtol=1e-10)
    ref_cdf = [integrate.quad(lambda t: t**alpha, low, v, epsrel=1e-13)[0] / z for v in x]
    np.testing.assert_allclose(d.cdf(x), ref_cdf, rtol=1e-10, atol=1e-15)
    q = np.linspace(0.0, 1.0, 9)
    np.testing.assert_allclose(d.cdf(d.icdf(q)), q, rtol=1e-10, atol=1e-15)
    assert d.log_prob(3.1) == -np.inf and d.support == constraints.interval(low, high)
    s = np.asarray(d.sample(jax.random.PRNGKey(5), (1000,)))
    assert np.all((s >= low) & (s <= high))
    assert _ks_pvalue(s, lambda v: np.asarray(d.cdf(v))) > 1e-3
    # gradients, smooth through alpha = -1
    f = jax.jit(
        lambda a, lo, hi: jnp.sum(
            DoublyTruncatedPowerLaw(a, lo, hi).log_prob(x[1:3])
            + DoublyTruncatedPowerLaw(a, lo, hi).icdf(0.3)
        )
    )
    _fd_check(f, (jnp.array(alpha), jnp.array(low), jnp.array(high)), rtol=1e-5)


def test_doubly_truncated_power_law_zero_low():
    d = DoublyTruncatedPowerLaw(0.5, 0.0, 3.0)
    x = np.array([0.1, 1.0, 2.9])
    np.testing.assert_allclose(d.log_prob(x), 0.5 * np.log(x) - np.log(3.0**1.5 / 1.5), rtol=1e-12)
    np.testing.assert_allclose(d.cdf(x), (x / 3.0) ** 1.5, rtol=1e-12)
    np.testing.assert_allclose(d.icdf(d.cdf(x)), x, rtol=1e-12)


def test_lower_truncated_power_law_is_pareto():
    alpha, low = np.array([-3.5, -2.5, -5.0]), np.array([2.0, 0.5, 1.0])
    d = LowerTruncatedPowerLaw(alpha, low)
    sb = stats.pareto(-alpha - 1.0, scale=low)
    x = np.array([[2.0, 0.6, 1.0], [3.0, 4.0, 10.0]])
    np.testing.assert_allclose(d.log_prob(x), sb.logpdf(x), rtol=1e-12)
    np.testing.assert_allclose(d.cdf(x), sb.cdf(x), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d.icdf(sb.cdf(x)), x, rtol=1e-12)
    np.testing.assert_allclose(d.mean, sb.mean(), rtol=1e-12)
    var = np.asarray(d.variance)
    np.testing.assert_allclose(var[[0, 2]], sb.var()[[0, 2]], rtol=1e-12)
    assert var[1] == np.inf  # E[X^2] diverges for -alpha - 1 <= 2
    s = np.asarray(d.sample(jax.random.PRNGKey(2), (2000,)))
    assert np.all(s >= low)
    assert _ks_pvalue(s[:, 0], stats.pareto(2.5, scale=2.0).cdf) > 1e-3


def _pg_density_other_series(x, terms=200):
    """PG(1, 0) density from its other (large-x) series: PG(1, 0) = J*(1) / 4 with
    J*(1) density pi sum_n (-1)^n (n + 1/2) exp(-(n + 1/2)^2 pi^2 t / 2) (Devroye 2009)."""
    t = 4.0 * np.asarray(x)[..., None]
    n = np.arange(terms)
    return (
        4.0
        * np.pi
        * np.sum((-1.0) ** n * (n + 0.5) * np.exp(-((n + 0.5) ** 2) * np.pi**2 * t / 2), -1)
    )


def test_truncated_polya_gamma():
    d = TruncatedPolyaGamma((2,))
    assert d.support == constraints.interval(0.0, 2.5) and d.batch_shape == (2,)
    x = np.array([[0.15, 0.4], [1.0, 2.4]])
    # truth: the long-time series, renormalized on [0, 2.5] by quadrature
    mass = integrate.quad(lambda t: _pg_density_other_series(t), 0.0, 2.5, epsrel=1e-13)[0]
    ref = np.log(_pg_density_other_series(x)) - np.log(mass)
    np.testing.assert_allclose(d.log_prob(x), ref, rtol=1e-10)
    lp = jax.jit(d.log_prob)
    total = integrate.quad(lambda t: float(np.exp(lp(t)[0])), 0.0, 2.5, epsrel=1e-12)[0]
    np.testing.assert_allclose(total, 1.0, rtol=1e-9)
    assert np.all(d.log_prob(np.array([-0.1, 2.6])) == -np.inf)
    s = np.asarray(d.sample(KEY, (4000,)))
    assert s.shape == (4000, 2) and np.all((s >= 0) & (s <= 2.5))
    # the sampler sums 8 terms of the series sum_k g_k / (2 pi^2 (k + 1/2)^2), g_k ~ Gamma(1)
    k = np.arange(8) + 0.5
    m = np.sum(1.0 / k**2) / (2 * np.pi**2)
    sd = math.sqrt(np.sum(1.0 / k**4)) / (2 * np.pi**2)
    assert np.all(np.abs(s.mean(0) - m) < 5 * sd / math.sqrt(4000))


def test_numerics_far_in_the_tails():
    # Normal base 40 sd out (mass underflows double precision): still finite and normalized
    d = LeftTruncatedDistribution(Normal(0.0, 1.0), 40.0)
    x = d.sample(KEY, (100,))
    assert np.all(np.isfinite(x)) and np.all(x >= 40.0)
    # a difference of two terms near 800: absolute accuracy ~1e-13 * 800
    np.testing.assert_allclose(
        d.log_prob(40.0), -special.log_ndtr(-40.0) + stats.norm.logpdf(40.0), atol=1e-10
    )
    # Gamma far in the right tail: the upper-tail normalizer keeps its digits
    g = TruncatedGamma(2.0, 1.0, low=30.0, high=40.0)
    ref = stats.gamma(2.0).logpdf(35.0) - np.log(
        stats.gamma(2.0).sf(30.0) - stats.gamma(2.0).sf(40.0)
    )
    np.testing.assert_allclose(g.log_prob(35.0), ref, rtol=1e-12)
