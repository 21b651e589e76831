"""GaussianRandomWalk, MultivariateStudentT, ZeroSumNormal, Wishart, WishartCholesky and
InverseWishart, checked against SciPy densities or closed forms written out from the
definitions, Monte Carlo z-tests of mean/variance (fixed seeds, 5 standard errors), support
membership of draws, finite-difference gradients, and jit/vmap/expand (float64)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jppl.distributions import constraints
from jppl.distributions.multivariate_extra import (
    GaussianRandomWalk,
    InverseWishart,
    MultivariateStudentT,
    Wishart,
    WishartCholesky,
    ZeroSumNormal,
)
from jppl.util import enable_x64


@pytest.fixture(autouse=True)
def x64():
    enable_x64(True)
    yield
    enable_x64(False)


S3 = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, 0.2], [0.1, 0.2, 0.5]])
S3B = np.stack([S3, np.diag([1.0, 0.5, 2.0])])  # a batch of two scale matrices


def _z_test(samples, mean, var, n_se: float = 5.0):
    """Sample mean and variance (about the true mean) within ``n_se`` standard errors."""
    x = np.asarray(samples)
    n = x.shape[0]
    mean, var = np.broadcast_to(mean, x.shape[1:]), np.broadcast_to(var, x.shape[1:])
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(var))
    se_mean = x.std(0) / math.sqrt(n)
    assert np.all(np.abs(x.mean(0) - mean) <= n_se * se_mean + 1e-12)
    dev2 = (x - mean) ** 2
    se_var = dev2.std(0) / math.sqrt(n)
    assert np.all(np.abs(dev2.mean(0) - var) <= n_se * se_var + 1e-12)


def _assert_grad_close(got, fd):
    """Autodiff vs central differences: step 1e-6 on O(10) log densities leaves about 1e-9
    of rounding error in each difference quotient."""
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)


def _fd_grad(f, x, eps=1e-6):
    """Central finite differences of scalar ``f`` at array ``x``."""
    x = np.asarray(x, dtype=float)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = eps
        g[idx] = (float(f(x + e)) - float(f(x - e))) / (2 * eps)
    return g


# -- GaussianRandomWalk -------------------------------------------------------------------------
def test_grw_log_prob_is_sum_of_normal_increments():
    scale = np.array([0.5, 2.0])
    d = GaussianRandomWalk(scale, num_steps=5)
    assert d.batch_shape == (2,) and d.event_shape == (5,)
    assert d.support is constraints.real_vector and d.has_rsample
    x = np.random.default_rng(0).normal(size=(4, 2, 5)) * 2
    incr = np.diff(x, axis=-1, prepend=0.0)
    want = stats.norm(0, scale[:, None]).logpdf(incr).sum(-1)
    np.testing.assert_allclose(d.log_prob(x), want, rtol=1e-12)
    # default parameters: one step of N(0, 1)
    d1 = GaussianRandomWalk()
    assert d1.event_shape == (1,)
    np.testing.assert_allclose(d1.log_prob(np.array([0.3])), stats.norm.logpdf(0.3))


@pytest.mark.slow  # Monte Carlo: compiles samplers for 20000 draws
def test_grw_moments():
    d = GaussianRandomWalk(np.array([0.5, 2.0]), num_steps=4)
    x = d.sample(jax.random.PRNGKey(0), (20000,))
    assert x.shape == (20000, 2, 4)
    _z_test(x, d.mean, d.variance)
    np.testing.assert_allclose(d.variance[1], 4.0 * np.arange(1, 5))
    # covariance of the walk is scale^2 min(s, t) + 1
    c = np.cov(np.asarray(x[:, 0]).T)
    want = 0.25 * (np.minimum.outer(np.arange(4), np.arange(4)) + 1)
    np.testing.assert_allclose(c, want, atol=5 * 0.25 * 4 / math.sqrt(20000))


def test_grw_grad():
    v = np.array([0.1, -0.4, 0.3, 1.0])
    g = jax.grad(lambda s: GaussianRandomWalk(s, 4).log_prob(v))(0.7)
    _assert_grad_close(g, _fd_grad(lambda s: GaussianRandomWalk(s, 4).log_prob(v), 0.7))
    gx = jax.grad(lambda y: GaussianRandomWalk(0.7, 4).log_prob(y))(v)
    _assert_grad_close(gx, _fd_grad(lambda y: GaussianRandomWalk(0.7, 4).log_prob(y), v))


def test_grw_bad_num_steps():
    with pytest.raises(ValueError, match="num_steps"):
        GaussianRandomWalk(1.0, num_steps=0)
    with pytest.raises(TypeError, match="num_steps"):
        GaussianRandomWalk(1.0, num_steps=2.5)


# -- MultivariateStudentT -----------------------------------------------------------------------
def test_mvt_log_prob_matches_scipy_with_batches():
    df = np.array([2.5, 7.0])
    loc = np.array([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]])
    L = np.linalg.cholesky(S3B)
    d = MultivariateStudentT(df, loc, L)
    assert d.batch_shape == (2,) and d.event_shape == (3,)
    assert d.support is constraints.real_vector and d.has_rsample
    x = np.random.default_rng(1).normal(size=(5, 2, 3)) * 3
    want = np.stack(
        [stats.multivariate_t(loc[b], S3B[b], df=df[b]).logpdf(x[:, b]) for b in range(2)], -1
    )
    np.testing.assert_allclose(d.log_prob(x), want, rtol=1e-12)
    np.testing.assert_allclose(d.covariance_matrix, S3B, rtol=1e-12)
    np.testing.assert_allclose(d.precision_matrix, np.linalg.inv(S3B), rtol=1e-10)
    # scalar loc broadcasts over the event
    d0 = MultivariateStudentT(4.0, 0.0, L[0])
    np.testing.assert_allclose(
        d0.log_prob(x[:, 0]), stats.multivariate_t(np.zeros(3), S3, df=4.0).logpdf(x[:, 0])
    )


@pytest.mark.slow  # Monte Carlo: compiles samplers for 20000 draws
def test_mvt_moments():
    d = MultivariateStudentT(
        np.array([9.0, 12.0]), np.array([1.0, -1.0, 0.0]), np.linalg.cholesky(S3)
    )
    x = d.sample(jax.random.PRNGKey(2), (20000,))
    assert x.shape == (20000, 2, 3)
    _z_test(x, d.mean, d.variance)
    np.testing.assert_allclose(d.variance[0], 9.0 / 7.0 * np.diag(S3))
    low = MultivariateStudentT(np.array([0.5, 1.5]), 0.0, np.eye(2))
    assert np.all(np.isinf(low.mean[0])) and np.all(low.mean[1] == 0)
    assert np.all(np.isnan(low.variance[0])) and np.all(np.isinf(low.variance[1]))


@pytest.mark.slow  # compiles the gamma sampler and its gradient for one more shape
def test_mvt_grad_and_rsample():
    L = np.linalg.cholesky(S3)
    v = np.array([0.3, -1.0, 2.0])

    def lp(df):
        return MultivariateStudentT(df, 0.5, L).log_prob(v)

    _assert_grad_close(jax.grad(lp)(3.0), _fd_grad(lp, 3.0))

    # reparameterized draws: a shift of loc shifts the draw; the draw has a gradient in df
    # (JAX's implicit gamma gradient, which is an approximation: not compared with FD here)
    def first(loc, df):
        return MultivariateStudentT(df, loc, L).rsample(jax.random.PRNGKey(0))[0]

    g_loc, g_df = jax.grad(first, argnums=(0, 1))(np.zeros(3), 5.0)
    np.testing.assert_allclose(g_loc, [1.0, 0.0, 0.0])
    assert np.isfinite(g_df) and g_df != 0.0


def test_mvt_requires_scale_tril():
    with pytest.raises(ValueError, match="scale_tril"):
        MultivariateStudentT(3.0, np.zeros(2))
    with pytest.raises(ValueError, match="loc"):
        MultivariateStudentT(3.0, np.zeros(4), np.eye(3))


# -- ZeroSumNormal ------------------------------------------------------------------------------
def _zsn_closed_form(x, scale, event_shape):
    """Density of N(0, scale^2 I) restricted to the zero-sum subspace, w.r.t. its volume.

    The subspace of arrays summing to zero along each axis has dimension
    ``m = prod(n_i - 1)``; an isotropic normal restricted to it (and renormalized) is again
    isotropic there, so the density at ``x`` on it is ``(2 pi s^2)^(-m/2) exp(-|x|^2/(2 s^2))``.
    """
    m = np.prod([n - 1 for n in event_shape])
    axes = tuple(range(-len(event_shape), 0))
    sq = np.sum(np.asarray(x) ** 2, axis=axes, keepdims=True)
    out = -0.5 * m * np.log(2 * np.pi * scale**2) - sq / (2 * scale**2)
    return np.squeeze(out, axis=axes)


@pytest.mark.parametrize("event_shape", [(4,), (3, 5)])
def test_zsn_log_prob_and_support(event_shape):
    scale = np.array([0.5, 2.0])
    d = ZeroSumNormal(scale, event_shape)
    assert d.batch_shape == (2,) and d.event_shape == event_shape and d.has_rsample
    assert d.support.event_dim == len(event_shape)
    x = d.sample(jax.random.PRNGKey(3), (7,))
    assert x.shape == (7, 2) + event_shape
    for ax in range(-len(event_shape), 0):
        np.testing.assert_allclose(np.sum(x, axis=ax), 0.0, atol=1e-12)
    assert np.all(d.support(x))
    want = _zsn_closed_form(x, scale.reshape((2,) + (1,) * len(event_shape)), event_shape)
    np.testing.assert_allclose(d.log_prob(x), want, rtol=1e-12)


@pytest.mark.slow  # Monte Carlo: compiles samplers for 20000 draws
@pytest.mark.parametrize("event_shape", [(4,), (3, 5)])
def test_zsn_moments(event_shape):
    d = ZeroSumNormal(np.array([0.5, 2.0]), event_shape)
    x = d.sample(jax.random.PRNGKey(3), (20000,))
    _z_test(x, d.mean, d.variance)
    if len(event_shape) == 1:
        # covariance scale^2 (I - J / n)
        n = event_shape[0]
        c = np.cov(np.asarray(x[:, 1]).T)
        want_c = 4.0 * (np.eye(n) - np.ones((n, n)) / n)
        np.testing.assert_allclose(c, want_c, atol=5 * 4.0 * math.sqrt(2 / 20000))


def test_zsn_grad():
    v = np.array([0.4, -1.0, 0.2, 0.4])

    def lp(s):
        return ZeroSumNormal(s, (4,)).log_prob(v)

    _assert_grad_close(jax.grad(lp)(1.3), _fd_grad(lp, 1.3))


def test_zsn_bad_event_shape():
    with pytest.raises(ValueError, match="event_shape"):
        ZeroSumNormal(1.0, ())
    with pytest.raises(TypeError, match="event_shape"):
        ZeroSumNormal(1.0, 3)


# -- Wishart family -----------------------------------------------------------------------------
def test_wishart_log_prob_matches_scipy_all_parameterizations():
    nu = np.array([3.5, 6.0])
    X = stats.wishart(df=5, scale=S3).rvs(4, random_state=0)  # (4, 3, 3)
    want = np.stack(
        [stats.wishart(df=nu[b], scale=S3B[b]).logpdf(np.moveaxis(X, 0, -1)) for b in range(2)],
        -1,
    )
    for kw in (
        {"scale_matrix": S3B},
        {"rate_matrix": np.linalg.inv(S3B)},
        {"scale_tril": np.linalg.cholesky(S3B)},
    ):
        d = Wishart(nu, **kw)
        assert d.batch_shape == (2,) and d.event_shape == (3, 3)
        assert d.support is constraints.positive_definite and d.has_rsample
        np.testing.assert_allclose(d.log_prob(X[:, None]), want, rtol=1e-11)
        np.testing.assert_allclose(d.scale_matrix, S3B, rtol=1e-10)
        np.testing.assert_allclose(d.rate_matrix, np.linalg.inv(S3B), rtol=1e-10)


@pytest.mark.slow  # Monte Carlo: compiles samplers for 20000 draws
def test_wishart_moments_and_support():
    d = Wishart(np.array([4.0, 8.0]), S3B)
    x = d.sample(jax.random.PRNGKey(4), (20000,))
    assert x.shape == (20000, 2, 3, 3)
    assert np.all(constraints.positive_definite(x))
    _z_test(x, d.mean, d.variance)
    for b in range(2):  # the closed forms themselves, against SciPy
        ref = stats.wishart(df=float(d.concentration[b]), scale=S3B[b])
        np.testing.assert_allclose(d.mean[b], ref.mean(), rtol=1e-12)
        np.testing.assert_allclose(d.variance[b], ref.var(), rtol=1e-12)


def _vech_jacobian_logdet(L):
    """log |det d vech(L L^T) / d vech(L)|, by autodiff over the lower-triangular entries."""
    p = L.shape[-1]
    r, c = np.tril_indices(p)

    def f(v):
        M = jnp.zeros((p, p)).at[r, c].set(v)
        return (M @ M.T)[r, c]

    J = jax.jacobian(f)(jnp.asarray(L)[r, c])
    return np.linalg.slogdet(np.asarray(J))[1]


def test_wishart_cholesky_log_prob_is_change_of_variables():
    nu = np.array([3.5, 6.0])
    d = WishartCholesky(nu, S3B)
    assert d.support is constraints.lower_cholesky and d.event_shape == (3, 3)
    X = stats.wishart(df=5, scale=S3).rvs(3, random_state=1)
    Ls = np.linalg.cholesky(X)
    want = np.array(
        [
            [
                stats.wishart(df=nu[b], scale=S3B[b]).logpdf(X[i]) + _vech_jacobian_logdet(Ls[i])
                for b in range(2)
            ]
            for i in range(3)
        ]
    )
    np.testing.assert_allclose(d.log_prob(Ls[:, None]), want, rtol=1e-11)


@pytest.mark.slow  # Monte Carlo: compiles samplers for 20000 draws
def test_wishart_cholesky_moments_and_support():
    d = WishartCholesky(np.array([4.0, 8.0]), S3B)
    x = d.sample(jax.random.PRNGKey(5), (20000,))
    assert np.all(constraints.lower_cholesky(x))
    _z_test(x, d.mean, d.variance)
    # the product of the draws is Wishart: its mean is nu S (z-test)
    w = np.asarray(x @ np.swapaxes(x, -1, -2))
    se = w.std(0) / math.sqrt(w.shape[0])
    assert np.all(np.abs(w.mean(0) - np.array([4.0, 8.0])[:, None, None] * S3B) <= 5 * se)


def test_inverse_wishart_against_scipy():
    nu = np.array([7.5, 10.0])
    X = stats.invwishart(df=8, scale=S3).rvs(4, random_state=2)
    want = np.stack(
        [stats.invwishart(df=nu[b], scale=S3B[b]).logpdf(np.moveaxis(X, 0, -1)) for b in range(2)],
        -1,
    )
    for kw in ({"scale_matrix": S3B}, {"rate_matrix": np.linalg.inv(S3B)}):
        d = InverseWishart(nu, **kw)
        assert d.support is constraints.positive_definite and d.batch_shape == (2,)
        np.testing.assert_allclose(d.log_prob(X[:, None]), want, rtol=1e-11)
    for b in range(2):
        ref = stats.invwishart(df=nu[b], scale=S3B[b])
        np.testing.assert_allclose(d.mean[b], ref.mean(), rtol=1e-12)
        np.testing.assert_allclose(d.variance[b], ref.var(), rtol=1e-12)
    low = InverseWishart(4.5, S3)  # mean needs nu > p + 1, variance nu > p + 3
    assert np.all(np.isfinite(low.mean)) and np.all(np.isnan(low.variance))


@pytest.mark.slow  # Monte Carlo: compiles samplers for 20000 draws
def test_inverse_wishart_moments():
    d = InverseWishart(np.array([7.5, 10.0]), S3B)
    x = d.sample(jax.random.PRNGKey(6), (20000,))
    assert np.all(constraints.positive_definite(x))
    _z_test(x, d.mean, d.variance)


def test_wishart_grads():
    L = np.linalg.cholesky(S3)
    X = stats.wishart(df=5, scale=S3).rvs(1, random_state=3)
    for cls in (Wishart, InverseWishart):

        def lp(nu, cls=cls):
            return cls(nu, scale_tril=L).log_prob(X)

        _assert_grad_close(jax.grad(lp)(5.5), _fd_grad(lp, 5.5))

        def lp_s(s, cls=cls):
            return cls(5.5, scale_matrix=s).log_prob(X)

        _assert_grad_close(jax.grad(lp_s)(S3), _fd_grad(lp_s, S3))


def test_wishart_bad_args():
    with pytest.raises(ValueError, match="exactly one"):
        Wishart(4.0)
    with pytest.raises(ValueError, match="exactly one"):
        WishartCholesky(4.0, S3, scale_tril=np.eye(3))
    with pytest.raises(ValueError, match="concentration"):
        Wishart(1.5, S3, validate_args=True)
    with pytest.raises(ValueError, match="square"):
        InverseWishart(4.0, np.ones((3, 2)))


# -- jit, vmap, expand --------------------------------------------------------------------------
CASES = {
    "grw": lambda: GaussianRandomWalk(jnp.array([0.5, 1.0, 2.0]), 4),
    "mvt": lambda: MultivariateStudentT(
        jnp.array([3.0, 5.0, 9.0]), jnp.zeros(3), jnp.asarray(np.linalg.cholesky(S3))
    ),
    "zsn": lambda: ZeroSumNormal(jnp.array([0.5, 1.0, 2.0]), (2, 3)),
    "wishart": lambda: Wishart(jnp.array([4.0, 5.0, 6.0]), jnp.asarray(S3)),
    "wishart_chol": lambda: WishartCholesky(jnp.array([4.0, 5.0, 6.0]), jnp.asarray(S3)),
    "inv_wishart": lambda: InverseWishart(jnp.array([4.0, 5.0, 6.0]), jnp.asarray(S3)),
}


@pytest.mark.parametrize(
    "name",
    # the default suite has a time budget: the random walk there, the rest (each compiles a
    # gamma sampler, ~10 s) in the slow step
    [n if n == "grw" else pytest.param(n, marks=pytest.mark.slow) for n in sorted(CASES)],
)
def test_jit_vmap_expand(name):
    d = CASES[name]()
    assert d.batch_shape == (3,)
    # expand to a new leading batch dim; its draws have the shape of d.sample((4,)) (so the
    # gamma sampler, slow to compile, is compiled once per distribution)
    e = d.expand((4, 3))
    x = e.sample(jax.random.PRNGKey(9))
    assert x.shape == (4, 3) + d.event_shape and e.batch_shape == (4, 3)
    x2 = d.sample(jax.random.PRNGKey(7), (4,))
    assert x2.shape == (4, 3) + d.event_shape
    assert np.all(d.validate_sample(x)) and np.all(d.validate_sample(x2))
    lp = d.log_prob(x)
    assert lp.shape == (4, 3) and np.all(np.isfinite(lp))
    np.testing.assert_allclose(e.log_prob(x), lp, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(lambda d, x: d.log_prob(x))(d, x), lp, rtol=1e-12)
    # vmap over the batch axis of both the distribution and the value
    lp_v = jax.vmap(lambda d, x: d.log_prob(x), in_axes=(0, 1), out_axes=1)(d, x)
    np.testing.assert_allclose(lp_v, lp, rtol=1e-12)
    # a distribution mapped over by vmap draws with its batch axis removed
    shapes = jax.vmap(lambda d: jnp.zeros(d.batch_shape + d.event_shape))(d).shape
    assert shapes == (3,) + d.event_shape
    if not isinstance(d, MultivariateStudentT | Wishart | WishartCholesky | InverseWishart):
        keys = jax.random.split(jax.random.PRNGKey(8), 3)
        xs = jax.vmap(lambda d, k: d.sample(k))(d, keys)
        assert xs.shape == (3,) + d.event_shape
