"""Quantiles (icdf) of Beta, BetaProportion, Gamma, Chi2, InverseGamma, StudentT and
DiscreteUniform; cdfs of DiscreteUniform and the negative binomials; Wishart entropy; and the
inverse incomplete gamma / beta functions behind them (jppl.distributions.special).

Truth is SciPy in float64 (scipy.special.gammaincinv / gammainccinv / betaincinv / betainc,
scipy.stats ppf / cdf / entropy), central finite differences for derivatives, and the
textbook quantile of a discrete uniform. The solvers are jitted internally, so the tests call
them eagerly on one grid shape, (36, 12), and compile each solver once for the whole file."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special as sc
from scipy import stats

from jppl.distributions.continuous import Beta, Chi2, Gamma, InverseGamma, StudentT
from jppl.distributions.continuous_extra import BetaProportion
from jppl.distributions.copula import GaussianCopulaBeta
from jppl.distributions.discrete import (
    DiscreteUniform,
    GammaPoisson,
    NegativeBinomial2,
    NegativeBinomialLogits,
    NegativeBinomialProbs,
)
from jppl.distributions.multivariate_extra import Wishart
from jppl.distributions.special import betainc, betaincinv, gammainccinv, gammaincinv
from jppl.util import enable_x64


@pytest.fixture(autouse=True)
def x64():
    enable_x64(True)
    yield
    enable_x64(False)


# probabilities from 1e-12 to 1 - 1e-12 (both tails and the bulk), then the endpoints and
# invalid values; every quantile grid below is Q (36, 1) against 12 parameter columns
P_GRID = np.concatenate(
    [10.0 ** np.arange(-12, -1), np.linspace(0.1, 0.9, 9), 1.0 - 10.0 ** np.arange(-2, -13, -1)]
)
N = P_GRID.size  # 31
EDGE = np.array([0.0, 1.0, -0.5, 1.5, np.nan])
Q = np.concatenate([P_GRID, EDGE])[:, None]
GRID = (Q.shape[0], 12)
EPS = np.finfo(np.float64).eps


def _check_unit_interval(x, ref, rtol, err_msg=""):
    """``x`` in [0, 1] against ``ref``, relative to the nearer end; a quantile near 1 is only
    held to the spacing of floats near 1 (a few ulps of 1)."""
    x, ref = np.asarray(x), np.asarray(ref)
    bound = rtol * np.minimum(ref, 1.0 - ref) + 4 * EPS
    worst = np.max(np.abs(x - ref) - bound)
    assert worst <= 0, f"{err_msg}: exceeds the bound by {worst}"


def _check_edges(x, at_0, at_1, err_msg=""):
    """Rows N.. of a (36, k) quantile grid: q = 0, 1, then -0.5, 1.5, nan."""
    x = np.asarray(x)
    np.testing.assert_array_equal(x[N], np.broadcast_to(at_0, x[N].shape), err_msg=err_msg)
    np.testing.assert_array_equal(x[N + 1], np.broadcast_to(at_1, x[N].shape), err_msg=err_msg)
    assert np.all(np.isnan(x[N + 2 :])), err_msg


def _beta_round_trip(a, b, x, rtol, err_msg=""):
    """SciPy's betainc at ``x`` gives back the tail the quantile was solved for, up to
    ``rtol`` plus what rounding ``x`` to float64 moves that tail (``x pdf(x) eps / tail``,
    large in the upper tail where ``1 - x`` is tiny); quantiles that round to 1 excluded."""
    p = np.broadcast_to(P_GRID[:, None], x[:N].shape)
    x = np.asarray(x[:N])
    a, b = np.broadcast_to(a, x.shape), np.broadcast_to(b, x.shape)
    lower = p < 0.5
    back = np.where(lower, sc.betainc(a, b, x), sc.betainc(b, a, 1.0 - x))
    tail = np.where(lower, p, 1.0 - p)
    ok = x < 1.0
    rounding = 2 * EPS * x * stats.beta.pdf(x, a, b) / tail
    err = np.abs(back / tail - 1.0)
    worst = np.max((err - rtol - rounding)[ok])
    assert worst <= 0, f"{err_msg}: round trip exceeds the bound by {worst}"


RNG = np.random.default_rng(0)
SHAPE_A = np.geomspace(0.05, 1e3, 12)  # the brief's range for gammaincinv
BETA_A = np.exp(RNG.uniform(np.log(0.1), np.log(200.0), 12))
BETA_B = np.exp(RNG.uniform(np.log(0.1), np.log(200.0), 12))


# -- the special functions ------------------------------------------------------------------
def test_gammaincinv_matches_scipy_float64():
    x, xc = gammaincinv(SHAPE_A, Q), gammainccinv(SHAPE_A, Q)
    assert x.dtype == jnp.float64 and x.shape == GRID
    a, p = SHAPE_A, Q[:N]
    np.testing.assert_allclose(x[:N], sc.gammaincinv(a, p), rtol=1e-10, atol=0)
    np.testing.assert_allclose(xc[:N], sc.gammainccinv(a, p), rtol=1e-10, atol=0)
    # round trip through SciPy's forward functions, in the tail the inverse solved for
    lower = np.broadcast_to(p < 0.5, (N, 12))
    back = np.where(lower, sc.gammainc(a, x[:N]), sc.gammaincc(a, x[:N]))
    target = np.where(lower, p, 1.0 - p)
    np.testing.assert_allclose(back, target, rtol=2e-11)
    _check_edges(x, 0.0, np.inf, "gammaincinv")
    _check_edges(xc, np.inf, 0.0, "gammainccinv")
    # non-positive shapes
    assert np.all(np.isnan(gammaincinv(jnp.array([0.0, -1.0]), 0.3)))


@pytest.mark.slow
def test_betaincinv_matches_scipy_float64():
    x = betaincinv(BETA_A, BETA_B, Q)
    assert x.dtype == jnp.float64 and x.shape == GRID
    _check_unit_interval(x[:N], sc.betaincinv(BETA_A, BETA_B, Q[:N]), 1e-9, "betaincinv")
    _beta_round_trip(BETA_A, BETA_B, x, 1e-9, "betaincinv")
    _check_edges(x, 0.0, 1.0, "betaincinv")
    assert np.all(np.isnan(betaincinv(jnp.array([0.0, 1.0]), jnp.array([1.0, -2.0]), 0.3)))


@pytest.mark.slow
def test_special_float32():
    a = SHAPE_A.astype(np.float32)
    p = Q.astype(np.float32)
    x, y = gammaincinv(a, p), betaincinv(BETA_A.astype(np.float32), BETA_B.astype(np.float32), p)
    assert x.dtype == jnp.float32 and y.dtype == jnp.float32
    # float32 inverts JAX's own float32 gammainc / gammaincc: the round trip is off by no more
    # than the rounding of x to float32 moves the tail (relative change d log tail / d log x)
    # plus the rounding of log(tail), the variable the solver matches (eps |log tail|)
    pv = np.broadcast_to(p[:N], (N, 12)).astype(np.float64)
    lower = pv < 0.5
    x_lo = np.asarray(x[:N])
    fwd = jnp.where(
        lower, jax.scipy.special.gammainc(a, x_lo), jax.scipy.special.gammaincc(a, x_lo)
    )
    x64, a64 = x_lo.astype(np.float64), a.astype(np.float64)
    tail = np.where(lower, pv, 1 - pv)
    slope = x64 * stats.gamma.pdf(x64, a64) / tail
    eps32 = np.finfo(np.float32).eps
    # else the quantile underflows, or q = 1 - 1e-9 .. rounded to 1 in float32
    normal = (x_lo > np.finfo(np.float32).tiny) & (tail > 0)
    err = np.abs(np.asarray(fwd, np.float64) / tail - 1)
    # (for a > 10 JAX's float32 gammainc itself is off by up to ~3e-4 relative at a ~ 1e3,
    # more than that bound: there the SciPy comparison below is the check)
    small = np.broadcast_to(a <= 10, err.shape)
    assert np.all((err <= 8 * eps32 * (1 + slope + np.abs(np.log(tail))))[normal & small])
    # ... and matches SciPy's float64 quantile to the accuracy of JAX's float32 gammainc
    ref = sc.gammaincinv(a.astype(np.float64), p[:N].astype(np.float64))
    ok = ref > np.finfo(np.float32).tiny
    np.testing.assert_allclose(np.asarray(x[:N])[ok], ref[ok], rtol=1e-4)
    ref_b = sc.betaincinv(BETA_A.astype(np.float32), BETA_B.astype(np.float32), p[:N])
    ok = (ref_b > np.finfo(np.float32).tiny) & (ref_b < 1 - 1e-6)
    # relative to the nearer end, up to a few float32 ulps of 1 near 1
    err = np.abs(np.asarray(y[:N], np.float64) - ref_b)
    bound = 1e-4 * np.minimum(ref_b, 1 - ref_b) + 4 * np.finfo(np.float32).eps
    assert np.all((err <= bound)[ok])
    _check_edges(x, 0.0, np.inf, "gammaincinv float32")
    _check_edges(y, 0.0, 1.0, "betaincinv float32")


# -- derivatives ----------------------------------------------------------------------------
def _tangent(f, x):
    """Elementwise derivative of an elementwise ``f`` at ``x`` (a jvp with ones)."""
    return jax.jvp(f, (x,), (jnp.ones_like(x),))[1]


@pytest.mark.slow
def test_gammaincinv_derivatives():
    a = jnp.broadcast_to(jnp.asarray(SHAPE_A), GRID)
    p = jnp.broadcast_to(jnp.asarray(Q), GRID)
    x = np.asarray(gammaincinv(a, p))[:N]
    # d/dp is 1 / pdf(x) (SciPy's density at SciPy's quantile)
    dp = _tangent(lambda p: gammaincinv(a, p), p)[:N]
    ref_x = sc.gammaincinv(a[:N], p[:N])
    np.testing.assert_allclose(dp, 1.0 / stats.gamma.pdf(ref_x, a[:N]), rtol=1e-8)
    dq = _tangent(lambda q: gammainccinv(a, q), p)[:N]
    ref_xc = sc.gammainccinv(a[:N], p[:N])
    np.testing.assert_allclose(dq, -1.0 / stats.gamma.pdf(ref_xc, a[:N]), rtol=1e-8)
    # d/da against central differences (the solver compiled once: same shapes)
    da = np.asarray(_tangent(lambda a: gammaincinv(a, p), a))[:N]
    h = 1e-6 * a
    fd = (np.asarray(gammaincinv(a + h, p)) - np.asarray(gammaincinv(a - h, p)))[:N] / (2 * h[:N])
    np.testing.assert_allclose(da, fd, rtol=1e-5, atol=1e-12 * np.max(np.abs(x)))


def _partials(f):
    """Jitted ``(d/d arg_0, d/d arg_1, d/d arg_2)`` of an elementwise ``f`` (one pass, the
    three unit tangents batched)."""

    @jax.jit
    def partials(*args):
        ones = jnp.ones_like(args[0])
        units = jnp.eye(3, dtype=ones.dtype)[:, :, None] * ones.ravel()
        dirs = jax.vmap(lambda t: jax.jvp(f, args, tuple(t.reshape((3, *ones.shape))))[1])
        return tuple(dirs(units))

    return partials


_betaincinv_partials = _partials(betaincinv)


def test_betaincinv_derivative_in_p():
    a = jnp.broadcast_to(jnp.asarray(BETA_A), GRID)
    b = jnp.broadcast_to(jnp.asarray(BETA_B), GRID)
    p = jnp.broadcast_to(jnp.asarray(Q), GRID)
    dp = np.asarray(_tangent(lambda p: betaincinv(a, b, p), p))[:N]
    x = sc.betaincinv(a[:N], b[:N], p[:N])
    # near 1 the density depends on 1 - x, which the float64 quantile holds only to
    # eps / (1 - x): compare where that is below 1e-12
    ok = (x > 0) & (1 - x > 1e-4)
    np.testing.assert_allclose(dp[ok], 1.0 / stats.beta.pdf(x, a[:N], b[:N])[ok], rtol=1e-8)


@pytest.mark.slow
def test_betaincinv_derivatives_in_shapes():
    a = np.broadcast_to(BETA_A, GRID)
    b = np.broadcast_to(BETA_B, GRID)
    p = np.broadcast_to(Q, GRID)
    da, db, _ = (np.asarray(d)[:N] for d in _betaincinv_partials(a, b, p))
    a, b, p = a[:N], b[:N], p[:N]
    x = sc.betaincinv(a, b, p)
    # against 4th-order differences of SciPy's quantile where those keep their digits
    # (1e-8 < p < 1 - 1e-8, a quantile away from the float64 edges)
    ok = (x > 1e-200) & (1 - x > 1e-4)
    ok[:4], ok[N - 4 :] = False, False
    fd_a = _fd4(lambda s: sc.betaincinv(s, b, p), a)
    fd_b = _fd4(lambda s: sc.betaincinv(a, s, p), b)
    np.testing.assert_allclose(da[ok], fd_a[ok], rtol=1e-7, err_msg="d/da")
    np.testing.assert_allclose(db[ok], fd_b[ok], rtol=1e-7, err_msg="d/db")


def _fd4(f, s, rel=1e-5):
    """Fourth-order central difference of an elementwise ``f`` at ``s`` (step ``rel * s``)."""
    h = rel * s
    return (-f(s + 2 * h) + 8 * f(s + h) - 8 * f(s - h) + f(s - 2 * h)) / (12 * h)


# the grid of the brief: shapes 0.1 .. 100 and x from 1e-6 to 0.999
_BI_SHAPES = np.array([0.1, 0.5, 1.0, 2.5, 10.0, 100.0])
_BI_X = np.array([1e-6, 0.01, 0.3, 0.5, 0.9, 0.999])


def _betainc_grid(shapes, xs, dtype):
    a, b, x = (g.ravel() for g in np.meshgrid(shapes, shapes, xs, indexing="ij"))
    return a.astype(dtype), b.astype(dtype), x.astype(dtype)


_betainc_partials = _partials(betainc)


def _betainc_shape_fd(a, b, x):
    """``(dI/da, dI/db)`` by 4th-order differences of SciPy's smaller tail (``betainc`` or
    ``betaincc``, whose digits survive where ``I ~ 1``), and ``log`` of that tail."""
    a, b, x = (np.asarray(v, np.float64) for v in (a, b, x))
    upper = sc.betainc(a, b, x) > 0.5

    def tail(a, b):
        return np.where(upper, -sc.betaincc(a, b, x), sc.betainc(a, b, x))

    da = _fd4(lambda s: tail(s, b), a)
    db = _fd4(lambda s: tail(a, s), b)
    smaller = np.where(upper, sc.betaincc(a, b, x), sc.betainc(a, b, x))
    return da, db, np.log(np.maximum(smaller, np.finfo(np.float64).tiny))


def _check_betainc_partials(a, b, x, rtol, partials=None):
    partials = _betainc_partials(a, b, x) if partials is None else partials
    da, db, dx = (np.asarray(v, np.float64) for v in partials)
    fd_a, fd_b, log_tail = _betainc_shape_fd(a, b, x)
    rtol = np.broadcast_to(rtol(log_tail) if callable(rtol) else rtol, a.shape)
    for name, got, ref in (("a", da, fd_a), ("b", db, fd_b)):
        # dI/da < 0 < dI/db everywhere inside
        assert np.all(got <= 0) if name == "a" else np.all(got >= 0), name
        # where the tail underflows (I ~ 1e-300) its differences are subnormal noise: there
        # the derivative must be as negligible
        big = np.abs(ref) > (1e-280 if a.dtype == np.float64 else 1e-30)
        err = np.abs(got - ref) / np.where(big, np.abs(ref), 1.0)
        worst = np.argmax(np.where(big, err / rtol, 0.0))
        assert np.all(err[big] <= rtol[big]), (name, a[worst], b[worst], x[worst], err[worst])
        assert np.all(np.abs(got[~big]) < (1e-270 if a.dtype == np.float64 else 1e-25)), name
    x64 = np.asarray(x, np.float64)
    pdf = stats.beta.pdf(x64, np.asarray(a, np.float64), np.asarray(b, np.float64))
    # (a float32 density below ~1e-38 underflows to 0)
    atol = 0.0 if a.dtype == np.float64 else 1e-30
    np.testing.assert_allclose(dx, pdf, rtol=float(np.max(rtol)), atol=atol, err_msg="d/dx")


def test_betainc_derivatives_match_scipy_finite_differences():
    a, b, x = _betainc_grid(_BI_SHAPES, _BI_X, np.float64)
    # and at x = 0 and 1, where I is 0 and 1 for all shapes (one compile for both)
    edge = np.array([0.0, 1.0])
    d = _betainc_partials(
        *(np.concatenate([v, w]) for v, w in ((a, [2.5, 2.5]), (b, [0.5, 0.5]), (x, edge)))
    )
    np.testing.assert_array_equal(np.stack(d[:2])[:, -2:], 0.0)
    _check_betainc_partials(a, b, x, 1e-8, [v[:-2] for v in d])
    # the value is JAX's
    np.testing.assert_array_equal(betainc(a, b, x), jax.scipy.special.betainc(a, b, x))


@pytest.mark.slow
def test_betainc_derivatives_large_shapes_and_float32():
    # shapes to 3e4 (the continued fraction's step count): the tail's magnitude |log I| (to
    # ~250) limits the differences' digits, so the tolerance scales with it
    a, b, x = _betainc_grid(np.array([1e3, 1e4, 3e4]), np.array([0.3, 0.5, 0.7]), np.float64)
    _check_betainc_partials(a, b, x, lambda log_tail: 1e-10 * (1.0 + np.abs(log_tail)))
    # float32: rounding of log I (|log I| eps_32) and the cancellation in d log I / da at
    # large shapes (to ~5e-5) dominate; the truth is taken at the float32 inputs themselves
    eps32 = float(np.finfo(np.float32).eps)
    a, b, x = _betainc_grid(_BI_SHAPES, _BI_X, np.float32)
    assert _betainc_partials(a, b, x)[0].dtype == jnp.float32
    _check_betainc_partials(a, b, x, lambda log_tail: 1e-4 + 8 * eps32 * np.abs(log_tail))


# -- distribution quantiles -----------------------------------------------------------------
def _params():
    rng = np.random.default_rng(1)
    df = np.concatenate([[0.5, 1.0, 2.5, 30.0], rng.uniform(0.3, 40.0, 8)])
    return {
        "beta": (BETA_A, BETA_B),
        "mean_prec": (rng.uniform(0.05, 0.95, 12), rng.uniform(0.5, 50.0, 12)),
        "gamma": (SHAPE_A, rng.uniform(0.2, 5.0, 12)),
        "t": (df, rng.normal(size=12), rng.uniform(0.5, 2.0, 12)),
    }


def test_continuous_icdf_matches_scipy_ppf_and_round_trips():
    par = _params()
    (c1, c0), (mean, prec), (conc, rate), (df, loc, scale) = par.values()
    dists = {
        "beta": Beta(c1, c0),
        "beta_proportion": BetaProportion(mean, prec),
        "gamma": Gamma(conc, rate),
        "chi2": Chi2(2 * conc),
        "inverse_gamma": InverseGamma(conc, rate),
        "student_t": StudentT(df, loc, scale),
    }
    p = Q[:N]
    refs = {
        "beta": stats.beta.ppf(p, c1, c0),
        "beta_proportion": stats.beta.ppf(p, mean * prec, (1 - mean) * prec),
        "gamma": stats.gamma.ppf(p, conc, scale=1 / rate),
        "chi2": stats.chi2.ppf(p, 2 * conc),
        "inverse_gamma": stats.invgamma.ppf(p, conc, scale=rate),
        "student_t": stats.t.ppf(p, df, loc, scale),
    }
    ends = {
        "beta": (0.0, 1.0),
        "beta_proportion": (0.0, 1.0),
        "gamma": (0.0, np.inf),
        "chi2": (0.0, np.inf),
        "inverse_gamma": (0.0, np.inf),
        "student_t": (-np.inf, np.inf),
    }
    for name, d in dists.items():
        x = d.icdf(Q)
        assert x.shape == GRID and x.dtype == jnp.float64, name
        if name.startswith("beta"):
            _check_unit_interval(x[:N], refs[name], 1e-9, name)
            _beta_round_trip(d.concentration1, d.concentration0, x, 1e-9, name)
        else:
            np.testing.assert_allclose(x[:N], refs[name], rtol=1e-9, atol=0, err_msg=name)
        _check_edges(x, *ends[name], err_msg=name)


@pytest.mark.slow
def test_continuous_icdf_round_trips_through_cdf():
    (c1, c0), (mean, prec), (conc, rate), (df, loc, scale) = _params().values()
    dists = {
        "beta": Beta(c1, c0),
        "gamma": Gamma(conc, rate),
        "inverse_gamma": InverseGamma(conc, rate),
        "student_t": StudentT(df, loc, scale),
    }
    p = Q[:N]
    for name, d in dists.items():
        x = d.icdf(Q)[:N]
        back = np.asarray(d.cdf(x))
        if name == "beta":
            # near 1 the tail is 1 - cdf: bounded by _beta_round_trip's rounding term
            _beta_round_trip(c1, c0, d.icdf(Q), 1e-9, name)
            continue
        # our own cdf gives back q, in the tail that keeps its digits
        np.testing.assert_allclose(
            np.minimum(back, 1 - back),
            np.broadcast_to(np.minimum(p, 1 - p), back.shape),
            rtol=1e-8,
            err_msg=name,
        )


@pytest.mark.slow
def test_continuous_icdf_gradients_match_finite_differences():
    (c1, c0), _, (conc, rate), (df, loc, scale) = _params().values()
    p = jnp.broadcast_to(jnp.asarray(Q), GRID)

    def quantiles(q, conc, rate, loc, scale):
        return (
            Gamma(conc, rate).icdf(q),
            InverseGamma(conc, rate).icdf(q),
            Beta(c1, c0).icdf(q),
            StudentT(df, loc, scale).icdf(q),
        )

    args = [p, jnp.asarray(conc), jnp.asarray(rate), jnp.asarray(loc), jnp.asarray(scale)]
    inner = slice(4, N - 4)  # 1e-8 .. 1 - 1e-8: the quantiles stay well inside float64
    for i in range(5):
        # in q: a step relative to the nearer tail, at least a few ulps of 1 near 1
        h_q = 1e-6 * jnp.minimum(p, 1 - p) + jnp.where(p > 0.5, 1e-14, 0.0)
        h = h_q if i == 0 else 1e-6 * (jnp.abs(args[i]) + 0.1)

        def along(delta, i=i):
            moved = list(args)
            moved[i] = args[i] + delta
            return quantiles(*moved)

        # every icdf is elementwise in its arguments: a jvp with ones is the derivative
        jvp = jax.jvp(along, (jnp.zeros_like(args[i]),), (jnp.ones_like(args[i]),))[1]
        up, down = along(h), along(-h)
        for k, (j, u, d) in enumerate(zip(jvp, up, down, strict=True)):
            if i in (1, 2) and k >= 2:  # Beta and StudentT do not depend on conc / rate
                continue
            if i in (3, 4) and k < 3:
                continue
            # divide by the step actually taken (p + h rounds near 1)
            taken = np.asarray((args[i] + h) - (args[i] - h))
            fd = (np.asarray(u) - np.asarray(d)) / taken
            # beyond ~1e100 (InverseGamma at a tiny concentration) the chain rule through
            # rate / x overflows x^2: compare where the quantile is moderate
            moderate = np.abs(np.asarray(u)[inner]) < 1e100
            if k == 2:  # Beta: near 1 the density needs 1 - x, held only to eps / (1 - x)
                moderate &= np.asarray(u)[inner] < 1 - 1e-4
            if i in (3, 4):  # a 1e-6 shift of loc / scale drowns in rounding of a huge x
                moderate &= np.abs(np.asarray(u)[inner]) < 100
            np.testing.assert_allclose(
                np.asarray(j)[inner][moderate],
                fd[inner][moderate],
                rtol=1e-5,
                err_msg=f"argument {i}, output {k}",
            )


@pytest.mark.slow
def test_student_t_icdf_center_and_float32():
    df = jnp.array([0.5, 1.0, 2.5, 30.0])
    # near the median the quantile keeps relative accuracy (z ~ 1e-10)
    q = 0.5 + 1e-10
    np.testing.assert_allclose(StudentT(df).icdf(q), stats.t.ppf(q, df), rtol=1e-6)
    np.testing.assert_array_equal(StudentT(df).icdf(0.5), 0.0)
    x32 = StudentT(df.astype(jnp.float32), 0.5, 2.0).icdf(jnp.float32(0.05))
    assert x32.dtype == jnp.float32
    np.testing.assert_allclose(x32, stats.t.ppf(0.05, np.asarray(df), 0.5, 2.0), rtol=1e-4)


# -- gradients in the shape parameters (NUTS on concentrations / df) -----------------------
_CORR = np.array([[1.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 1.0]])
_COP_C1, _COP_C0 = np.array([0.7, 2.5, 12.0]), np.array([3.0, 0.4, 9.0])
_COP_VALUES = np.array([[0.1, 0.95, 0.5], [0.02, 0.6, 0.7], [0.8, 0.999, 0.4], [0.5, 0.2, 0.55]])


def _copula_log_prob_scipy(c1, c0):
    """Textbook Gaussian copula density with Beta marginals, summed over the values: ``log
    N(z; 0, R) - sum_i log N(z_i; 0, 1) + sum_i log Beta(x_i)``, ``z_i = Phi^-1(F_i(x_i))``."""
    z = sc.ndtri(stats.beta.cdf(_COP_VALUES, c1, c0))
    return np.sum(
        stats.multivariate_normal.logpdf(z, cov=_CORR)
        - stats.norm.logpdf(z).sum(-1)
        + stats.beta.logpdf(_COP_VALUES, c1, c0).sum(-1)
    )


@pytest.mark.slow
def test_gaussian_copula_beta_log_prob_gradient_in_concentrations():
    grad = jax.jit(
        jax.grad(
            lambda c1, c0: GaussianCopulaBeta(c1, c0, _CORR).log_prob(_COP_VALUES).sum(), (0, 1)
        )
    )
    g1, g0 = (np.asarray(g) for g in grad(jnp.asarray(_COP_C1), jnp.asarray(_COP_C0)))
    for i in range(3):
        e = np.eye(3)[i]

        def moved(s, c1_or_c0, i=i, e=e):
            base = (_COP_C1, _COP_C0)[c1_or_c0]
            args = [_COP_C1, _COP_C0]
            args[c1_or_c0] = base + (s - base[i]) * e
            return _copula_log_prob_scipy(*args)

        fd1 = _fd4(lambda s, m=moved: m(s, 0), _COP_C1[i])
        fd0 = _fd4(lambda s, m=moved: m(s, 1), _COP_C0[i])
        np.testing.assert_allclose([g1[i], g0[i]], [fd1, fd0], rtol=1e-7, err_msg=f"coordinate {i}")


@pytest.mark.slow
def test_beta_student_t_and_gamma_poisson_shape_gradients():
    c1, c0 = np.array([0.3, 1.0, 4.0, 50.0]), np.array([2.0, 0.6, 4.0, 20.0])
    x, q = np.array([0.05, 0.9, 0.5, 0.75]), np.array([1e-3, 0.3, 0.6, 0.99])
    df, q_t = np.array([0.7, 3.0, 10.0, 60.0]), np.array([0.01, 0.3, 0.8, 0.999])
    conc, rate, k = (
        np.array([0.4, 2.0, 7.5, 30.0]),
        np.array([0.5, 1.5, 0.2, 3.0]),
        np.array([0.0, 3.0, 40.0, 12.0]),
    )

    @jax.jit
    def grads(c1, c0, df, conc):
        # every function is elementwise in its parameters: the gradient of the sum is the
        # elementwise derivative
        def each(f, *args):
            return jax.grad(lambda *a: f(*a).sum(), tuple(range(len(args))))(*args)

        return (
            each(lambda a, b: Beta(a, b).cdf(x), c1, c0),
            each(lambda a, b: Beta(a, b).icdf(q), c1, c0),
            each(lambda d: StudentT(d).icdf(q_t), df),
            each(lambda c: GammaPoisson(c, rate).cdf(k), conc),
        )

    (cdf_1, cdf_0), (icdf_1, icdf_0), (t_df,), (nb_c,) = grads(c1, c0, df, conc)
    checks = [
        (cdf_1, _fd4(lambda s: stats.beta.cdf(x, s, c0), c1), "Beta.cdf d/dconcentration1"),
        (cdf_0, _fd4(lambda s: stats.beta.cdf(x, c1, s), c0), "Beta.cdf d/dconcentration0"),
        (icdf_1, _fd4(lambda s: stats.beta.ppf(q, s, c0), c1), "Beta.icdf d/dconcentration1"),
        (icdf_0, _fd4(lambda s: stats.beta.ppf(q, c1, s), c0), "Beta.icdf d/dconcentration0"),
        (t_df, _fd4(lambda s: stats.t.ppf(q_t, s), df), "StudentT.icdf d/ddf"),
        (
            nb_c,
            _fd4(lambda s: stats.nbinom.cdf(k, s, rate / (1 + rate)), conc),
            "GammaPoisson.cdf d/dconcentration",
        ),
    ]
    for got, ref, name in checks:
        np.testing.assert_allclose(got, ref, rtol=1e-7, err_msg=name)


# -- discrete -------------------------------------------------------------------------------
def test_discrete_uniform_cdf_and_icdf_match_scipy():
    low = np.array([-3, 0, 5])[:, None]
    high = np.array([2, 9, 5])[:, None]
    d = DiscreteUniform(low, high)
    values = np.arange(-6.0, 13.0, 0.5)
    cdf = jax.jit(d.cdf)(values)
    np.testing.assert_allclose(cdf, stats.randint.cdf(values, low, high + 1), rtol=1e-12)
    # exact multiples of 1 / n (where q * n rounds), and the points between
    q = np.unique(np.concatenate([np.arange(1, 91) / 90.0, np.linspace(1e-9, 1.0, 41)]))
    x = jax.jit(d.icdf)(q)
    np.testing.assert_array_equal(x, stats.randint.ppf(q, low, high + 1))
    # the quantile is the smallest support point whose cdf reaches q
    # (up to the rounding of q = j / 90 against k / n)
    assert np.all(np.asarray(d.cdf(x)) >= q - 1e-15) and np.all(np.asarray(d.cdf(x - 1)) < q)
    edge = d.icdf(jnp.array([0.0, -0.1, 1.1, jnp.nan]))
    np.testing.assert_array_equal(edge[:, 0], np.ravel(low))
    assert np.all(np.isnan(edge[:, 1:]))


def test_negative_binomial_cdfs_match_scipy():
    rng = np.random.default_rng(2)
    conc = rng.uniform(0.3, 8.0, (3, 1))
    rate = rng.uniform(0.05, 4.0, (4,))
    probs = rng.uniform(0.05, 0.95, (4,))
    logits = rng.normal(0.0, 2.0, (4,))
    mean = rng.uniform(0.5, 20.0, (4,))
    k = np.arange(-2.0, 40.0)[:, None, None]

    def cdfs(k):
        return (
            GammaPoisson(conc, rate).cdf(k),
            NegativeBinomial2(mean, conc).cdf(k),
            NegativeBinomialProbs(conc, probs).cdf(k),
            NegativeBinomialLogits(conc, logits).cdf(k),
        )

    got = jax.jit(cdfs)(k)
    refs = (
        stats.nbinom.cdf(k, conc, rate / (1 + rate)),
        stats.nbinom.cdf(k, conc, conc / (conc + mean)),
        stats.nbinom.cdf(k, conc, 1 - probs),
        stats.nbinom.cdf(k, conc, sc.expit(-logits)),
    )
    for g, ref in zip(got, refs, strict=True):
        assert g.shape == ref.shape == (42, 3, 4)
        np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-15)
    # non-integer values take the floor
    np.testing.assert_allclose(
        GammaPoisson(2.0, 0.5).cdf(3.7), stats.nbinom.cdf(3, 2.0, 0.5 / 1.5), rtol=1e-12
    )


# -- Wishart entropy ------------------------------------------------------------------------
@pytest.mark.parametrize("p", [1, 3])
def test_wishart_entropy_matches_scipy(p):
    rng = np.random.default_rng(p)
    A = rng.normal(size=(2, p, p))
    S = A @ np.swapaxes(A, -1, -2) + 0.5 * np.eye(p)
    nu = np.array([[p - 0.5], [p + 4.2], [40.0]])  # batch (3, 2)
    h = np.asarray(Wishart(nu, scale_matrix=S).entropy())
    assert h.shape == (3, 2)
    ref = np.array([[stats.wishart(nu[i, 0], S[j]).entropy() for j in range(2)] for i in range(3)])
    np.testing.assert_allclose(h, ref, rtol=1e-12)


# -- heavier sweeps -------------------------------------------------------------------------
@pytest.mark.slow
def test_quantile_sweeps_dense():
    a = np.geomspace(0.05, 1e3, 60)[:, None]
    p = np.concatenate([np.geomspace(1e-12, 0.5, 40), 1 - np.geomspace(1e-12, 0.5, 40)])
    x = np.asarray(jax.jit(gammaincinv)(a, p))
    np.testing.assert_allclose(x, sc.gammaincinv(a, p), rtol=1e-10, atol=0)
    ab = np.geomspace(0.05, 1e3, 20)
    A, B = np.meshgrid(ab, ab, indexing="ij")
    y = np.asarray(jax.jit(betaincinv)(A[..., None], B[..., None], p[::4]))
    lower = p[::4] < 0.5
    a3, b3 = np.broadcast_to(A[..., None], y.shape), np.broadcast_to(B[..., None], y.shape)
    back = np.where(lower, sc.betainc(a3, b3, y), sc.betainc(b3, a3, 1 - y))
    tail = np.broadcast_to(np.where(lower, p[::4], 1 - p[::4]), y.shape)
    # as _beta_round_trip: plus what rounding y to float64 moves the tail
    rounding = 2 * EPS * y * stats.beta.pdf(y, a3, b3) / tail
    ok = (y > 0) & (y < 1)
    assert np.all((np.abs(back / tail - 1) <= 1e-9 + rounding)[ok])
