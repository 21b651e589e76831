"""CAR, CirculantNormal, EulerMaruyama, GaussianCopula, GaussianCopulaBeta,
GaussianStateSpace, InverseWishartCholesky and MatrixNormal, checked against SciPy densities or
dense closed forms written out from the definitions (float64), Monte Carlo z-tests of
mean/variance (fixed seeds, 5 standard errors), finite-difference gradients, jit/vmap, and
invalid arguments under validation."""

from __future__ import annotations

import functools
import math

import jax
import numpy as np
import pytest
import scipy.linalg
import scipy.sparse
from scipy import stats

from jppl.distributions import constraints
from jppl.distributions.continuous import Exponential, Gamma, Normal
from jppl.distributions.copula import GaussianCopula, GaussianCopulaBeta
from jppl.distributions.multivariate_extra import (
    CAR,
    CirculantNormal,
    InverseWishartCholesky,
    MatrixNormal,
)
from jppl.distributions.timeseries import EulerMaruyama, GaussianStateSpace
from jppl.util import enable_x64


@pytest.fixture(autouse=True)
def x64():
    enable_x64(True)
    yield
    enable_x64(False)


S3 = np.array([[2.0, 0.3, 0.1], [0.3, 1.0, 0.2], [0.1, 0.2, 0.5]])
S2 = np.array([[1.0, 0.4], [0.4, 0.8]])
R3 = np.array([[1.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 1.0]])
# a 4-cycle plus one chord: every site has a neighbour
W4 = np.array([[0, 1, 1, 1], [1, 0, 1, 0], [1, 1, 0, 1], [1, 0, 1, 0]], dtype=float)


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


@functools.partial(jax.jit, static_argnums=2)
def _draw(dist, key, n: int):
    """``n`` compiled draws of ``dist``."""
    return dist.sample(key, (n,))


@jax.jit
def _lp(dist, value):
    """``dist.log_prob(value)`` compiled (eager dispatch of special functions is slow)."""
    return dist.log_prob(value)


def _fd_grad(f, x, eps=1e-6):
    """Central finite differences of scalar ``f`` at array ``x``."""
    x = np.asarray(x, dtype=float)
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = eps
        g[idx] = (float(f(x + e)) - float(f(x - e))) / (2 * eps)
    return g


def _assert_grad_close(got, fd):
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)


# -- MatrixNormal -------------------------------------------------------------------------------
def _mn_params():
    loc = np.arange(6.0).reshape(2, 3) / 3
    Lr = np.linalg.cholesky(np.stack([S2, np.diag([0.5, 2.0])]))  # batch of two
    Lc = np.linalg.cholesky(S3)
    return loc, Lr, Lc


def test_matrix_normal_log_prob_matches_scipy():
    loc, Lr, Lc = _mn_params()
    d = MatrixNormal(loc, Lr, Lc)
    assert d.batch_shape == (2,) and d.event_shape == (2, 3)
    assert d.support is constraints.real_matrix and d.has_rsample
    x = np.random.default_rng(0).normal(size=(4, 2, 2, 3))
    got = _lp(d, x)
    want = np.array(
        [
            [stats.matrix_normal(loc, Lr[b] @ Lr[b].T, S3).logpdf(x[s, b]) for b in range(2)]
            for s in range(4)
        ]
    )
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # vec(X) ~ N(vec(loc), kron(V, U)) (column-stacking vec)
    cov = np.kron(S3, Lr[0] @ Lr[0].T)
    mvn = stats.multivariate_normal(loc.T.ravel(), cov)
    np.testing.assert_allclose(
        _lp(MatrixNormal(loc, Lr[0], Lc), x[:, 0]),
        mvn.logpdf(x[:, 0].swapaxes(-1, -2).reshape(4, -1)),
        rtol=1e-10,
    )


@pytest.mark.slow  # Monte Carlo
def test_matrix_normal_moments():
    loc, Lr, Lc = _mn_params()
    d = MatrixNormal(loc, Lr, Lc)
    x = _draw(d, jax.random.PRNGKey(1), 4000)
    assert x.shape == (4000, 2, 2, 3)
    _z_test(x, d.mean, d.variance)


def test_matrix_normal_grad_vmap():
    loc, Lr, Lc = _mn_params()
    v = np.random.default_rng(2).normal(size=(2, 3))
    f = jax.jit(lambda m: MatrixNormal(m, Lr[0], Lc).log_prob(v))
    _assert_grad_close(jax.grad(f)(loc), _fd_grad(f, loc))
    # vmap over the batched distribution sees one member at a time
    d = MatrixNormal(loc, Lr, Lc)
    xs = np.random.default_rng(3).normal(size=(2, 3, 2, 3))
    out = jax.jit(jax.vmap(lambda dist, xx: dist.log_prob(xx)))(d, xs)
    np.testing.assert_allclose(out, np.asarray(_lp(d, xs.swapaxes(0, 1))).T, rtol=1e-12)


def test_matrix_normal_bad_args():
    loc, Lr, Lc = _mn_params()
    with pytest.raises(ValueError, match="scale_tril_column"):
        MatrixNormal(loc, Lr, np.eye(2))
    with pytest.raises(ValueError, match="scale_tril_row"):
        MatrixNormal(loc, -Lr, Lc, validate_args=True)


# -- InverseWishartCholesky ---------------------------------------------------------------------
def _iwc_log_jacobian(L):
    """log |dX/dL| for X = L L^T on lower triangles: p log 2 + sum_i (p - i) log L_ii."""
    p = L.shape[-1]
    return p * math.log(2.0) + np.sum((p - np.arange(p)) * np.log(np.diag(L)))


def test_iwc_log_prob_matches_scipy_change_of_variables():
    nu = np.array([4.5, 9.0])
    d = InverseWishartCholesky(nu, scale_matrix=S3)
    assert d.batch_shape == (2,) and d.event_shape == (3, 3)
    assert d.support is constraints.lower_cholesky and not d.has_rsample
    rng = np.random.default_rng(3)
    Xs = stats.invwishart(7, S3).rvs(4, random_state=rng)
    Ls = np.linalg.cholesky(Xs)
    got = _lp(d, Ls[:, None])
    want = np.array(
        [
            [stats.invwishart(n, S3).logpdf(X) + _iwc_log_jacobian(L) for n in nu]
            for X, L in zip(Xs, Ls, strict=True)
        ]
    )
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # the same distribution from rate_matrix or scale_tril
    for kw in ({"rate_matrix": np.linalg.inv(S3)}, {"scale_tril": np.linalg.cholesky(S3)}):
        np.testing.assert_allclose(
            _lp(InverseWishartCholesky(nu, **kw), Ls[:, None]), want, rtol=1e-10
        )


@pytest.mark.slow  # Monte Carlo
def test_iwc_moments():
    nu, p = 8.0, 3
    d = InverseWishartCholesky(nu, scale_matrix=S3)
    L = _draw(d, jax.random.PRNGKey(4), 8000)
    assert np.all(np.asarray(constraints.lower_cholesky(L)))
    lower = np.tril_indices(3)
    _z_test(
        np.asarray(L)[:, lower[0], lower[1]],
        np.asarray(d.mean)[lower],
        np.asarray(d.variance)[lower],
    )
    # X = L L^T has the inverse Wishart mean Psi / (nu - p - 1)
    X = np.asarray(L @ np.swapaxes(L, -1, -2))
    _z_test(X, S3 / (nu - p - 1), np.var(X, 0))
    # d_j = nu - p + 1 + j: E[1 / chi(d_0)] is infinite for nu = 2.5, so column 0 has no mean
    m = np.asarray(InverseWishartCholesky(2.5, scale_matrix=S3).mean)
    assert np.all(np.isnan(m[:, 0])) and np.all(np.isfinite(m[:, 1:]))
    assert np.all(m[np.triu_indices(3, 1)] == 0)
    v = np.asarray(InverseWishartCholesky(3.5, scale_matrix=S3).variance)
    assert np.all(np.isnan(v[:, 0])) and np.all(np.isfinite(v[:, 1:]))


def test_iwc_bad_concentration():
    with pytest.raises(ValueError, match="concentration"):
        InverseWishartCholesky(1.5, scale_matrix=S3, validate_args=True)
    with pytest.raises(ValueError, match="exactly one"):
        InverseWishartCholesky(5.0)


# -- CAR ----------------------------------------------------------------------------------------
def _car_cov(alpha, tau, W):
    D = np.diag(W.sum(-1))
    return np.linalg.inv(tau * (D - alpha * W))


@pytest.mark.parametrize("sparse", ["dense", "numpy_sparse", "scipy_sparse"])
def test_car_log_prob_matches_dense_precision(sparse):
    alpha = np.array([0.3, -0.6, 0.95])
    tau = 2.5
    loc = np.array([0.5, -1.0, 0.0, 2.0])
    adj = {"dense": W4, "numpy_sparse": W4, "scipy_sparse": scipy.sparse.csr_matrix(W4)}[sparse]
    d = CAR(loc, alpha, tau, adj, is_sparse=sparse != "dense")
    assert d.batch_shape == (3,) and d.event_shape == (4,)
    assert d.support is constraints.real_vector and d.has_rsample
    x = np.random.default_rng(5).normal(size=(2, 3, 4))
    want = np.array(
        [
            [
                stats.multivariate_normal(loc, _car_cov(a, tau, W4)).logpdf(x[s, b])
                for b, a in enumerate(alpha)
            ]
            for s in range(2)
        ]
    )
    np.testing.assert_allclose(_lp(d, x), want, rtol=1e-10)
    np.testing.assert_allclose(d.precision_matrix[0], tau * (np.diag(W4.sum(-1)) - 0.3 * W4))


@pytest.mark.slow  # Monte Carlo
def test_car_moments():
    d = CAR(np.array([1.0, 0.0, -1.0, 0.5]), 0.8, 1.5, W4)
    x = _draw(d, jax.random.PRNGKey(6), 8000)
    assert x.shape == (8000, 4)
    _z_test(x, d.mean, np.diag(_car_cov(0.8, 1.5, W4)))
    d = CAR(0.0, np.array([0.2, 0.5]), 1.5, scipy.sparse.csr_matrix(W4), is_sparse=True)
    x = _draw(d, jax.random.PRNGKey(7), 8000)
    assert x.shape == (8000, 2, 4)
    _z_test(x, d.mean, np.stack([np.diag(_car_cov(a, 1.5, W4)) for a in (0.2, 0.5)]))


def test_car_grad():
    v = np.array([0.2, -0.1, 0.4, 1.0])
    f = jax.jit(lambda a: CAR(0.0, a, 1.5, W4).log_prob(v))
    _assert_grad_close(jax.grad(f)(0.4), _fd_grad(f, 0.4))


def test_car_bad_args():
    asym = W4.copy()
    asym[0, 3] = 0.0
    with pytest.raises(ValueError, match="adj_matrix.*symmetric"):
        CAR(0.0, 0.5, 1.0, asym, validate_args=True)
    lonely = W4.copy()
    lonely[1, :] = lonely[:, 1] = 0.0
    with pytest.raises(ValueError, match="adj_matrix.*neighbour"):
        CAR(0.0, 0.5, 1.0, lonely, validate_args=True)
    with pytest.raises(ValueError, match="correlation"):
        CAR(0.0, 1.5, 1.0, W4, validate_args=True)
    with pytest.raises(TypeError, match="is_sparse"):
        CAR(0.0, 0.5, 1.0, scipy.sparse.csr_matrix(W4))


# -- CirculantNormal ----------------------------------------------------------------------------
def _circ_row(n, length):
    """First row of a symmetric positive-definite circulant matrix of size n: the inverse DFT
    of a positive, even spectrum."""
    k = np.arange(n // 2 + 1)
    return np.fft.irfft(0.2 + np.exp(-0.5 * (k / length) ** 2), n)


@pytest.mark.parametrize("n", [5, 6])
def test_circulant_normal_matches_dense(n):
    rows = np.stack([_circ_row(n, 1.0), _circ_row(n, 2.0)])
    loc = np.linspace(-1, 1, n)
    d = CirculantNormal(loc, covariance_row=rows)
    assert d.batch_shape == (2,) and d.event_shape == (n,)
    assert d.support is constraints.real_vector and d.has_rsample
    x = np.random.default_rng(7).normal(size=(3, 2, n))
    covs = [scipy.linalg.circulant(r) for r in rows]
    want = np.array(
        [
            [stats.multivariate_normal(loc, c).logpdf(x[s, b]) for b, c in enumerate(covs)]
            for s in range(3)
        ]
    )
    np.testing.assert_allclose(_lp(d, x), want, rtol=1e-10)
    np.testing.assert_allclose(d.covariance_matrix, np.stack(covs), atol=1e-14)
    np.testing.assert_allclose(
        d.entropy(), [stats.multivariate_normal(loc, c).entropy() for c in covs], rtol=1e-12
    )
    # the rfft parameterization is the same distribution
    d2 = CirculantNormal(loc, covariance_rfft=np.fft.rfft(rows).real)
    np.testing.assert_allclose(_lp(d2, x), want, rtol=1e-10)
    np.testing.assert_allclose(d2.covariance_row, rows, atol=1e-14)


@pytest.mark.slow  # Monte Carlo
def test_circulant_normal_moments():
    n = 6
    row = _circ_row(n, 1.5)
    d = CirculantNormal(np.zeros(n) + 0.5, covariance_row=row)
    x = np.asarray(_draw(d, jax.random.PRNGKey(8), 8000))
    _z_test(x, d.mean, d.variance)
    # lag-1 covariance: E[(x_0 - m)(x_1 - m)] = c[1]
    prod = (x[:, 0] - 0.5) * (x[:, 1] - 0.5)
    assert abs(prod.mean() - row[1]) <= 5 * prod.std() / math.sqrt(len(prod))


def test_circulant_normal_grad():
    n = 6
    row = _circ_row(n, 1.5)
    v = np.random.default_rng(9).normal(size=n)
    f = jax.jit(lambda r: CirculantNormal(np.zeros(n), covariance_row=r).log_prob(v))
    _assert_grad_close(jax.grad(f)(row), _fd_grad(f, row))


def test_circulant_normal_bad_args():
    with pytest.raises(ValueError, match="covariance_row"):
        CirculantNormal(
            np.zeros(4), covariance_row=np.array([1.0, 0.5, 0.1, 0.2]), validate_args=True
        )
    with pytest.raises(ValueError, match="covariance_rfft"):
        CirculantNormal(np.zeros(4), covariance_rfft=np.array([1.0, -0.5, 0.1]), validate_args=True)
    with pytest.raises(ValueError, match="exactly one"):
        CirculantNormal(np.zeros(4))
    with pytest.raises(ValueError, match="covariance_row"):
        CirculantNormal(np.zeros(4), covariance_row=np.ones(3))


# -- GaussianStateSpace -------------------------------------------------------------------------
A2 = np.array([[0.9, 0.2], [-0.1, 0.7]])


def _gss_dense(T, A, Sigma, z0):
    """Mean and covariance of vec(z) (time-major) from the unrolled recursion."""
    n = A.shape[0]
    M = np.zeros((T * n, T * n))
    for t in range(T):
        for k in range(t + 1):
            M[t * n : (t + 1) * n, k * n : (k + 1) * n] = np.linalg.matrix_power(A, t - k)
    mean = np.concatenate([np.linalg.matrix_power(A, t + 1) @ z0 for t in range(T)])
    return mean, M @ np.kron(np.eye(T), Sigma) @ M.T


def test_gss_matches_dense_joint_gaussian():
    T = 4
    z0 = np.array([[1.0, -2.0], [0.0, 0.0], [0.5, 0.5]])
    d = GaussianStateSpace(T, A2, covariance_matrix=S2, initial_value=z0)
    assert d.batch_shape == (3,) and d.event_shape == (T, 2)
    assert d.support is constraints.real_matrix and d.has_rsample
    x = np.random.default_rng(10).normal(size=(2, 3, T, 2))
    want = np.zeros((2, 3))
    means, variances = [], []
    for b in range(3):
        m, c = _gss_dense(T, A2, S2, z0[b])
        means.append(m.reshape(T, 2))
        variances.append(np.diag(c).reshape(T, 2))
        want[:, b] = stats.multivariate_normal(m, c).logpdf(x[:, b].reshape(2, -1))
    np.testing.assert_allclose(_lp(d, x), want, rtol=1e-10)
    np.testing.assert_allclose(d.mean, np.stack(means), atol=1e-12)
    np.testing.assert_allclose(d.variance, np.stack(variances), rtol=1e-12)
    for kw in ({"precision_matrix": np.linalg.inv(S2)}, {"scale_tril": np.linalg.cholesky(S2)}):
        d2 = GaussianStateSpace(T, A2, initial_value=z0, **kw)
        np.testing.assert_allclose(_lp(d2, x), want, rtol=1e-10)
        np.testing.assert_allclose(d2.covariance_matrix[0], S2, rtol=1e-12)


@pytest.mark.slow  # Monte Carlo
def test_gss_moments():
    d = GaussianStateSpace(3, A2, covariance_matrix=S2, initial_value=np.array([1.0, -1.0]))
    x = _draw(d, jax.random.PRNGKey(11), 8000)
    assert x.shape == (8000, 3, 2)
    _z_test(x, d.mean, d.variance)


def test_gss_grad():
    v = np.random.default_rng(12).normal(size=(3, 2))
    f = jax.jit(lambda a: GaussianStateSpace(3, a, covariance_matrix=S2).log_prob(v))
    _assert_grad_close(jax.grad(f)(A2), _fd_grad(f, A2))


def test_gss_bad_args():
    with pytest.raises(ValueError, match="num_steps"):
        GaussianStateSpace(0, A2, covariance_matrix=S2)
    with pytest.raises(ValueError, match="exactly one"):
        GaussianStateSpace(3, A2, covariance_matrix=S2, scale_tril=np.eye(2))
    with pytest.raises(ValueError, match="transition_matrix"):
        GaussianStateSpace(3, np.ones((2, 3)), covariance_matrix=S2)
    with pytest.raises(ValueError, match="covariance_matrix"):
        GaussianStateSpace(3, A2, covariance_matrix=-S2, validate_args=True)


# -- EulerMaruyama ------------------------------------------------------------------------------
THETA, SIGMA = 0.7, 0.5


def _ou(y, t):
    """Ornstein-Uhlenbeck drift and diffusion; the diffusion grows with time so t matters."""
    return -THETA * y, SIGMA * (1.0 + 0.1 * t)


def test_euler_maruyama_log_prob_is_sum_of_transitions():
    t = np.array([[0.0, 0.1, 0.3, 0.35, 0.6], [0.0, 0.2, 0.4, 0.6, 0.8]])
    d = EulerMaruyama(t, _ou, Normal(0.0, 1.0))
    assert d.batch_shape == (2,) and d.event_shape == (5,)
    assert d.support.event_dim == 1 and not d.has_rsample
    x = np.random.default_rng(13).normal(size=(3, 2, 5))
    dt = np.diff(t, axis=-1)
    mu = x[..., :-1] - THETA * x[..., :-1] * dt
    sd = np.sqrt(dt) * SIGMA * (1.0 + 0.1 * t[:, :-1])
    want = stats.norm.logpdf(x[..., 0]) + stats.norm(mu, sd).logpdf(x[..., 1:]).sum(-1)
    np.testing.assert_allclose(_lp(d, x), want, rtol=1e-12)


def test_euler_maruyama_vector_state():
    t = np.linspace(0.0, 1.0, 4)
    init = Normal(np.array([1.0, -1.0]), 0.5).to_event(1)
    d = EulerMaruyama(t, _ou, init)
    assert d.batch_shape == () and d.event_shape == (4, 2)
    x = np.random.default_rng(14).normal(size=(2, 4, 2))
    dt = np.diff(t)[:, None]
    mu = x[:, :-1] - THETA * x[:, :-1] * dt
    sd = np.sqrt(dt) * SIGMA * (1.0 + 0.1 * t[:-1, None])
    want = stats.norm([1.0, -1.0], 0.5).logpdf(x[:, 0]).sum(-1) + stats.norm(mu, sd).logpdf(
        x[:, 1:]
    ).sum((-2, -1))
    np.testing.assert_allclose(_lp(d, x), want, rtol=1e-12)


@pytest.mark.slow  # Monte Carlo
def test_euler_maruyama_moments():
    t = np.linspace(0.0, 1.0, 4)
    d = EulerMaruyama(t, _ou, Normal(np.array([1.0, -1.0]), 0.5).to_event(1))
    # Euler recursion moments: m_k = (1 - theta dt) m_{k-1}, v_k = (1 - theta dt)^2 v_{k-1}
    # + g^2 dt
    y = np.asarray(_draw(d, jax.random.PRNGKey(15), 6000))
    assert y.shape == (6000, 4, 2)
    m, v = [np.array([1.0, -1.0])], [np.full(2, 0.25)]
    for k in range(3):
        a, h = 1 - THETA * (t[k + 1] - t[k]), t[k + 1] - t[k]
        m.append(a * m[-1])
        v.append(a**2 * v[-1] + (SIGMA * (1 + 0.1 * t[k])) ** 2 * h)
    _z_test(y, np.stack(m), np.stack(v))


def test_euler_maruyama_bad_args():
    with pytest.raises(ValueError, match="`t`"):
        EulerMaruyama(np.array([0.0, 0.2, 0.1]), _ou, Normal(0.0, 1.0), validate_args=True)
    with pytest.raises(TypeError, match="init_dist"):
        EulerMaruyama(np.arange(3.0), _ou, 1.0)


# -- GaussianCopula -----------------------------------------------------------------------------
def _copula_logpdf(x, R, marg_logpdf, marg_cdf):
    """log c(F(x)) + sum log f(x): the Gaussian copula density from its definition."""
    q = stats.norm.ppf(marg_cdf(x))
    return (
        stats.multivariate_normal(np.zeros(len(R)), R).logpdf(q)
        - stats.norm.logpdf(q).sum(-1)
        + marg_logpdf(x).sum(-1)
    )


def test_gaussian_copula_log_prob_matches_definition():
    rate = np.array([1.5, 3.0, 0.8])
    d = GaussianCopula(Exponential(rate), correlation_matrix=R3)
    assert d.batch_shape == () and d.event_shape == (3,)
    assert d.support.event_dim == 1 and d.has_rsample
    x = np.random.default_rng(16).gamma(2.0, size=(5, 3))
    e = stats.expon(scale=1 / rate)
    want = _copula_logpdf(x, R3, e.logpdf, e.cdf)
    np.testing.assert_allclose(_lp(d, x), want, rtol=1e-9)
    d2 = GaussianCopula(Exponential(rate), correlation_cholesky=np.linalg.cholesky(R3))
    np.testing.assert_allclose(_lp(d2, x), want, rtol=1e-9)
    np.testing.assert_allclose(d2.correlation_matrix, R3, atol=1e-14)
    # a batch of correlations against one marginal vector
    db = GaussianCopula(Exponential(rate), correlation_matrix=np.stack([R3, np.eye(3)]))
    assert db.batch_shape == (2,)
    indep = e.logpdf(x).sum(-1)
    np.testing.assert_allclose(_lp(db, x[:, None]), np.stack([want, indep], -1), rtol=1e-9)


@pytest.mark.slow  # Monte Carlo
def test_gaussian_copula_sampling():
    rate = np.array([1.0, 0.5, 2.0])
    d = GaussianCopula(Exponential(rate), correlation_matrix=R3)
    x = np.asarray(_draw(d, jax.random.PRNGKey(17), 8000))
    assert x.shape == (8000, 3)
    _z_test(x, d.mean, d.variance)
    # normal scores are N(0, R): their products have mean R_ij
    q = stats.norm.ppf(stats.expon(scale=1 / rate).cdf(x))
    prod = q[:, 0] * q[:, 1]
    assert abs(prod.mean() - R3[0, 1]) <= 5 * prod.std() / math.sqrt(len(prod))


def test_gaussian_copula_beta():
    a, b = np.array([2.0, 0.7, 5.0]), 1.5
    d = GaussianCopulaBeta(a, b, correlation_matrix=R3)
    assert d.batch_shape == () and d.event_shape == (3,) and not d.has_rsample
    assert d.support.event_dim == 1
    x = np.random.default_rng(18).uniform(0.05, 0.95, size=(4, 3))
    beta = stats.beta(a, b)
    want = _copula_logpdf(x, R3, beta.logpdf, beta.cdf)
    np.testing.assert_allclose(_lp(d, x), want, rtol=1e-9)
    # scalar concentrations are shared by the coupled coordinates
    assert GaussianCopulaBeta(2.0, 3.0, correlation_matrix=R3).batch_shape == ()


@pytest.mark.slow  # Monte Carlo through a numerical Beta quantile
def test_gaussian_copula_beta_sampling():
    a, b = np.array([2.0, 0.7, 5.0]), 1.5
    d = GaussianCopulaBeta(a, b, correlation_matrix=R3)
    y = np.asarray(_draw(d, jax.random.PRNGKey(19), 2000))
    assert np.all((y > 0) & (y < 1))
    # each coordinate is Beta(a_i, b) (a KS test against SciPy's CDF)
    for i in range(3):
        assert stats.kstest(y[:, i], stats.beta(a[i], b).cdf).pvalue > 1e-3
    _z_test(y, d.mean, d.variance)


def test_gaussian_copula_bad_args():
    with pytest.raises(ValueError, match="correlation_matrix"):
        GaussianCopula(Gamma(np.ones(3)), correlation_matrix=2 * R3, validate_args=True)
    with pytest.raises(ValueError, match="correlation_matrix"):
        GaussianCopula(Gamma(np.ones(2)), correlation_matrix=R3)
    with pytest.raises(ValueError, match="concentration0"):
        GaussianCopulaBeta(1.0, -1.0, correlation_matrix=R3, validate_args=True)
