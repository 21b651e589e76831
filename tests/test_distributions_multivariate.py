"""Tests for the multivariate distributions: Dirichlet, (low-rank) multivariate normals, LKJ."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from scipy.special import betaln

import jppl.distributions as dist
from jppl.distributions import constraints


def _spd(rng, k, batch=()):
    a = rng.normal(size=batch + (k, k))
    return a @ np.swapaxes(a, -1, -2) + k * np.eye(k)


# -- Dirichlet ----------------------------------------------------------------------------------
def test_dirichlet_log_prob_entropy_vs_scipy():
    rng = np.random.default_rng(0)
    conc = np.array([[0.5, 2.0, 3.0], [1.0, 1.0, 4.0]])
    d = dist.Dirichlet(conc)
    assert d.batch_shape == (2,) and d.event_shape == (3,)
    x = rng.dirichlet([1.0, 1.0, 1.0], size=(5, 2))
    lp = d.log_prob(x)
    assert lp.shape == (5, 2)
    for b in range(2):
        expected = st.dirichlet(conc[b]).logpdf(x[:, b].T)
        np.testing.assert_allclose(lp[:, b], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(d.entropy()[b], st.dirichlet(conc[b]).entropy(), atol=1e-5)
    np.testing.assert_allclose(d.mean, conc / conc.sum(-1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(
        d.variance, np.stack([st.dirichlet(c).var() for c in conc]), rtol=1e-5
    )


def test_dirichlet_sample_moments_and_support(key):
    conc = jnp.array([0.3, 2.0, 5.0])
    d = dist.Dirichlet(conc)

    @jax.jit
    def draw(d):
        x = d.sample(key, (40000,))
        return x, constraints.simplex(x), d.log_prob(x)

    x, on_simplex, lp = draw(d)
    assert x.shape == (40000, 3) and x.dtype == jnp.float32
    assert bool(jnp.all(on_simplex))
    assert bool(jnp.all(jnp.isfinite(lp)))
    np.testing.assert_allclose(x.mean(0), d.mean, atol=0.01)
    np.testing.assert_allclose(x.var(0), d.variance, rtol=0.05)


def test_dirichlet_log_prob_off_simplex_is_minus_inf():
    """Like every distribution here, a value outside the support gets -inf, not a density."""
    conc = jnp.array([2.0, 3.0, 0.5])
    d = dist.Dirichlet(conc)
    on = np.array([0.2, 0.3, 0.5])
    off = np.array(
        [
            [0.5, 0.5, 0.5],  # sums to 1.5
            [-0.1, 0.6, 0.5],  # sums to 1, one negative entry
            [0.2, 0.3, 0.4],  # sums to 0.9
        ]
    )
    lp = np.asarray(d.log_prob(np.concatenate([on[None], off])))
    np.testing.assert_allclose(lp[0], st.dirichlet(np.asarray(conc)).logpdf(on), rtol=1e-5)
    assert np.all(np.isneginf(lp[1:]))
    # float32 rounding of a simplex point (sum off by a few ulps) stays inside
    x32 = jnp.full(10, 0.1, jnp.float32)
    assert 0 < abs(float(jnp.sum(x32)) - 1.0) < 1e-6
    np.testing.assert_allclose(
        dist.Dirichlet(jnp.ones(10)).log_prob(x32), math.lgamma(10.0), rtol=1e-6
    )
    # gradients in the value and in the concentration stay finite off the simplex
    g_x = jax.grad(lambda x: d.log_prob(x))(jnp.asarray(off[0], jnp.float32))
    g_a = jax.grad(lambda a: dist.Dirichlet(a).log_prob(jnp.asarray(off[1], jnp.float32)))(conc)
    assert np.all(np.isfinite(g_x)) and np.all(np.isfinite(g_a))


def test_dirichlet_off_simplex_observation_raises_with_validation():
    from jppl import handlers, primitives

    def model(x):
        primitives.sample("p", dist.Dirichlet(jnp.ones(3)), obs=x)

    bad = jnp.array([0.5, 0.5, 0.5])
    handlers.trace(model).get_trace(bad)  # validation off: no error, log density -inf
    dist.enable_validation()
    with pytest.raises(ValueError, match=r"'p'.*outside the support simplex.*0\.5"):
        handlers.trace(model).get_trace(bad)
    handlers.trace(model).get_trace(jnp.array([0.2, 0.3, 0.5]))


def test_dirichlet_reparameterized_gradient(key):
    # d/d a_0 E[x_0] = (a0_sum - a_0) / a0_sum^2.
    def mean_x0(conc):
        return jnp.mean(dist.Dirichlet(conc).sample(key, (20000,))[:, 0])

    conc = jnp.array([1.5, 2.0, 2.5])
    g = jax.jit(jax.grad(mean_x0))(conc)
    s = float(conc.sum())
    np.testing.assert_allclose(g[0], (s - 1.5) / s**2, rtol=0.1)
    np.testing.assert_allclose(g[1], -1.5 / s**2, rtol=0.1)


# -- MultivariateNormal -------------------------------------------------------------------------
@pytest.mark.parametrize("param", ["covariance_matrix", "precision_matrix", "scale_tril"])
def test_mvn_log_prob_vs_scipy(param):
    rng = np.random.default_rng(1)
    cov = _spd(rng, 3)
    loc = rng.normal(size=3)
    mat = {
        "covariance_matrix": cov,
        "precision_matrix": np.linalg.inv(cov),
        "scale_tril": np.linalg.cholesky(cov),
    }[param]
    d = dist.MultivariateNormal(loc, **{param: mat})
    assert d.batch_shape == () and d.event_shape == (3,)
    x = rng.normal(size=(7, 3))
    ref = st.multivariate_normal(loc, cov)
    np.testing.assert_allclose(d.log_prob(x), ref.logpdf(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d.covariance_matrix, cov, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d.precision_matrix, np.linalg.inv(cov), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(d.scale_tril, np.linalg.cholesky(cov), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d.entropy(), ref.entropy(), rtol=1e-5)
    np.testing.assert_allclose(d.variance, np.diag(cov), rtol=1e-5)
    np.testing.assert_allclose(d.mean, loc, rtol=1e-6)


def test_mvn_batch_broadcasting():
    rng = np.random.default_rng(2)
    loc = rng.normal(size=(4, 1, 3))
    cov = _spd(rng, 3, (2,))
    d = dist.MultivariateNormal(loc, covariance_matrix=cov)
    assert d.batch_shape == (4, 2) and d.event_shape == (3,)
    assert d.loc.shape == (4, 2, 3) and d.scale_tril.shape == (4, 2, 3, 3)
    x = rng.normal(size=(5, 1, 1, 3))
    lp = d.log_prob(x)
    assert lp.shape == (5, 4, 2)
    for i in range(4):
        for j in range(2):
            ref = st.multivariate_normal(loc[i, 0], cov[j]).logpdf(x[:, 0, 0])
            np.testing.assert_allclose(lp[:, i, j], ref, rtol=1e-5, atol=1e-5)
    # a single value broadcast against the batch
    assert d.log_prob(x[0, 0, 0]).shape == (4, 2)
    assert d.sample(jax.random.key(0), (6,)).shape == (6, 4, 2, 3)
    assert d.entropy().shape == (4, 2)
    # scalar loc is broadcast over the event
    d0 = dist.MultivariateNormal(0.0, scale_tril=jnp.eye(2))
    assert d0.batch_shape == () and d0.event_shape == (2,)
    np.testing.assert_allclose(d0.mean, jnp.zeros(2))


def test_mvn_sample_moments(key):
    rng = np.random.default_rng(3)
    cov = _spd(rng, 3) / 3
    loc = np.array([1.0, -2.0, 0.5])
    for kw in ({"covariance_matrix": cov}, {"precision_matrix": np.linalg.inv(cov)}):
        d = dist.MultivariateNormal(loc, **kw)
        x = d.sample(key, (50000,))
        assert x.shape == (50000, 3) and x.dtype == jnp.float32
        np.testing.assert_allclose(x.mean(0), loc, atol=0.03)
        np.testing.assert_allclose(np.cov(np.asarray(x).T), cov, atol=0.06)


def test_mvn_rsample_gradient(key):
    # E[sum(x)] = sum(loc): gradient is ones; and d log_prob / d loc = Sigma^{-1} (x - loc).
    cov = jnp.array([[2.0, 0.5], [0.5, 1.0]])

    def f(loc):
        return jnp.mean(jnp.sum(dist.MultivariateNormal(loc, cov).sample(key, (100,)), -1))

    np.testing.assert_allclose(jax.grad(f)(jnp.zeros(2)), jnp.ones(2), rtol=1e-5)
    x = jnp.array([1.0, -1.0])
    g = jax.grad(lambda m: dist.MultivariateNormal(m, cov).log_prob(x))(jnp.zeros(2))
    np.testing.assert_allclose(g, np.linalg.solve(np.asarray(cov), np.asarray(x)), rtol=1e-5)


def test_mvn_argument_errors():
    with pytest.raises(ValueError, match="exactly one"):
        dist.MultivariateNormal(jnp.zeros(2))
    with pytest.raises(ValueError, match="exactly one"):
        dist.MultivariateNormal(jnp.zeros(2), covariance_matrix=jnp.eye(2), scale_tril=jnp.eye(2))
    with pytest.raises(ValueError, match="square"):
        dist.MultivariateNormal(jnp.zeros(2), covariance_matrix=jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="event size"):
        dist.MultivariateNormal(jnp.zeros(3), covariance_matrix=jnp.eye(2))
    with pytest.raises(ValueError, match="covariance_matrix"):
        dist.MultivariateNormal(jnp.zeros(2), covariance_matrix=-jnp.eye(2), validate_args=True)
    with pytest.raises(ValueError, match="precision_matrix"):
        dist.MultivariateNormal(
            jnp.zeros(2), precision_matrix=jnp.array([[1.0, 2.0], [2.0, 1.0]]), validate_args=True
        )
    with pytest.raises(ValueError, match="scale_tril"):
        dist.MultivariateNormal(
            jnp.zeros(2), scale_tril=jnp.array([[1.0, 1.0], [0.0, 1.0]]), validate_args=True
        )
    with pytest.raises(ValueError, match="loc"):
        dist.MultivariateNormal(
            jnp.array([jnp.nan, 0.0]), covariance_matrix=jnp.eye(2), validate_args=True
        )
    # valid arguments pass validation
    dist.MultivariateNormal(jnp.zeros(2), covariance_matrix=2 * jnp.eye(2), validate_args=True)


def test_mvn_jit_vmap():
    rng = np.random.default_rng(4)
    cov = _spd(rng, 3, (2,))
    d = dist.MultivariateNormal(jnp.zeros((2, 3)), covariance_matrix=cov)
    x = jnp.asarray(rng.normal(size=(5, 2, 3)), dtype=jnp.float32)
    lp = jax.jit(lambda d, x: d.log_prob(x))(d, x)
    np.testing.assert_allclose(lp, d.log_prob(x), rtol=1e-5)
    s = jax.jit(lambda d, k: d.sample(k, (4,)))(d, jax.random.key(1))
    assert s.shape == (4, 2, 3)
    np.testing.assert_allclose(d.covariance_matrix, cov, rtol=1e-5)  # stored matrix kept
    d2 = jax.jit(lambda d: d)(d)
    np.testing.assert_allclose(d2.covariance_matrix, cov, rtol=1e-5)

    def lp_one(loc, L, xi):
        return dist.MultivariateNormal(loc, scale_tril=L).log_prob(xi)

    L = jnp.asarray(np.linalg.cholesky(cov), dtype=jnp.float32)
    out = jax.vmap(lp_one, in_axes=(None, 0, 1), out_axes=1)(jnp.zeros(3), L, x)
    np.testing.assert_allclose(out, lp, rtol=1e-5, atol=1e-5)
    # raw PRNGKey works as well as a typed key
    assert d.sample(jax.random.PRNGKey(0)).shape == (2, 3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: dist.MultivariateNormal(jnp.zeros((2, 3)), scale_tril=jnp.eye(3) * 2.0),
        lambda: dist.LowRankMultivariateNormal(jnp.zeros((2, 3)), jnp.ones((3, 1)), jnp.ones(3)),
        lambda: dist.Dirichlet(jnp.ones((2, 3))),
        lambda: dist.LKJCholesky(3, jnp.array([1.0, 2.0])),
    ],
)
def test_vmap_over_distribution(make, key):
    d = make()
    keys = jax.random.split(key, 2)

    @jax.jit  # vmap outside jit would run (and compile) the sampler op by op
    def mapped(d, keys):
        s = jax.vmap(lambda d, k: d.sample(k, (4,)), out_axes=1)(d, keys)
        lp = jax.vmap(lambda d, x: d.log_prob(x), in_axes=(0, 1), out_axes=1)(d, s)
        return s, lp, d.log_prob(s)

    s, lp, lp_unmapped = mapped(d, keys)
    assert s.shape == (4,) + d.batch_shape + d.event_shape
    np.testing.assert_allclose(lp, lp_unmapped, rtol=1e-5, atol=1e-5)


def test_vmap_returns_batched_distribution(key):
    """A distribution built inside ``vmap`` comes out with the stacked axis in its batch."""
    locs = jnp.arange(12.0).reshape(4, 3)
    mvn = jax.vmap(lambda m: dist.MultivariateNormal(m, scale_tril=2.0 * jnp.eye(3)))(locs)
    assert mvn.batch_shape == (4,) and mvn.event_shape == (3,)
    x = mvn.sample(key, (2,))
    assert x.shape == (2, 4, 3)
    expected = st.multivariate_normal(np.zeros(3), 4.0 * np.eye(3)).logpdf(
        np.asarray(x - locs, np.float64)
    )
    np.testing.assert_allclose(mvn.log_prob(x), expected, rtol=1e-5)
    inside = jax.vmap(lambda d: jnp.zeros(d.batch_shape + d.event_shape))(mvn)
    assert inside.shape == (4, 3)


# -- LowRankMultivariateNormal ------------------------------------------------------------------
def test_lowrank_mvn_vs_scipy_and_batch():
    rng = np.random.default_rng(5)
    k, r = 4, 2
    loc = rng.normal(size=(3, k))
    W = rng.normal(size=(k, r))
    D = rng.uniform(0.5, 2.0, size=(3, k))
    d = dist.LowRankMultivariateNormal(loc, W, D)
    assert d.batch_shape == (3,) and d.event_shape == (k,)
    x = rng.normal(size=(6, 1, k))
    lp = d.log_prob(x)
    assert lp.shape == (6, 3)
    for b in range(3):
        cov = W @ W.T + np.diag(D[b])
        ref = st.multivariate_normal(loc[b], cov)
        np.testing.assert_allclose(lp[:, b], ref.logpdf(x[:, 0]), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(d.covariance_matrix[b], cov, rtol=1e-5)
        np.testing.assert_allclose(d.precision_matrix[b], np.linalg.inv(cov), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(d.scale_tril[b], np.linalg.cholesky(cov), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(d.entropy()[b], ref.entropy(), rtol=1e-5)
        np.testing.assert_allclose(d.variance[b], np.diag(cov), rtol=1e-5)
    with pytest.raises(ValueError, match="disagree"):
        dist.LowRankMultivariateNormal(jnp.zeros(3), jnp.ones((4, 1)), jnp.ones(4))
    with pytest.raises(ValueError, match="cov_diag"):
        dist.LowRankMultivariateNormal(
            jnp.zeros(2), jnp.ones((2, 1)), -jnp.ones(2), validate_args=True
        )


def test_lowrank_mvn_sample_moments(key):
    rng = np.random.default_rng(6)
    W = rng.normal(size=(3, 2)) * 0.7
    D = np.array([0.5, 1.0, 0.3])
    loc = np.array([0.0, 1.0, -1.0])
    d = dist.LowRankMultivariateNormal(loc, W, D)
    x = d.sample(key, (50000,))
    assert x.shape == (50000, 3)
    np.testing.assert_allclose(x.mean(0), loc, atol=0.03)
    np.testing.assert_allclose(np.cov(np.asarray(x).T), W @ W.T + np.diag(D), atol=0.05)
    s = jax.jit(lambda d, k: d.sample(k, (2,)))(d, key)
    assert s.shape == (2, 3)


# -- LKJ ----------------------------------------------------------------------------------------
def test_lkj_cholesky_dim2_matches_beta():
    # For d = 2, r = L[1, 0] has density (1 - r^2)^(eta - 1) / c; (r + 1) / 2 ~ Beta(eta, eta).
    for eta in (0.7, 1.0, 3.0):
        r = np.linspace(-0.95, 0.95, 9)
        L = np.zeros((9, 2, 2))
        L[:, 0, 0] = 1.0
        L[:, 1, 0] = r
        L[:, 1, 1] = np.sqrt(1 - r**2)
        lp = dist.LKJCholesky(2, eta).log_prob(jnp.asarray(L, dtype=jnp.float32))
        expected = st.beta(eta, eta).logpdf((r + 1) / 2) - math.log(2)
        np.testing.assert_allclose(lp, expected, rtol=1e-5, atol=1e-5)


def test_lkj_cholesky_unnormalized_part_and_normalizer():
    rng = np.random.default_rng(7)
    d, eta = 4, 2.5
    R = np.corrcoef(rng.normal(size=(d, 10)))
    L = np.linalg.cholesky(R)
    lp = dist.LKJCholesky(d, eta).log_prob(jnp.asarray(L, dtype=jnp.float32))
    unnorm = sum((2 * (eta - 1) + d - 1 - i) * np.log(L[i, i]) for i in range(1, d))
    log_c = sum(
        (d - k)
        * ((2 * eta - 2 + d - k) * np.log(2) + betaln(eta + (d - k - 1) / 2, eta + (d - k - 1) / 2))
        for k in range(1, d)
    )
    np.testing.assert_allclose(lp, unnorm - log_c, rtol=1e-5)
    # d = 3, eta = 1: the density is one over the volume of the 3x3 elliptope, pi^2 / 2.
    L3 = jnp.eye(3)
    np.testing.assert_allclose(
        dist.LKJCholesky(3, 1.0).log_prob(L3), -math.log(math.pi**2 / 2), rtol=1e-5
    )
    # LKJ (correlation matrices) differs from LKJCholesky by the Jacobian of L -> L L^T.
    jac = sum((d - 1 - j) * np.log(L[j, j]) for j in range(d))
    np.testing.assert_allclose(
        dist.LKJ(d, eta).log_prob(jnp.asarray(R, dtype=jnp.float32)), lp - jac, rtol=1e-4
    )


def test_lkj_density_integrates_to_one(key):
    # Monte Carlo over the cube [-1, 1]^3 of off-diagonal correlations (d = 3).
    n = 200000
    u = jax.random.uniform(key, (n, 3), minval=-1.0, maxval=1.0)
    R = jnp.ones((n, 3, 3))
    R = R.at[:, 0, 1].set(u[:, 0]).at[:, 1, 0].set(u[:, 0])
    R = R.at[:, 0, 2].set(u[:, 1]).at[:, 2, 0].set(u[:, 1])
    R = R.at[:, 1, 2].set(u[:, 2]).at[:, 2, 1].set(u[:, 2])
    det = jnp.linalg.det(R)
    lp = dist.LKJ(3, 2.0).log_prob(jnp.where((det > 0)[:, None, None], R, jnp.eye(3)))
    integral = 8 * jnp.mean(jnp.where(det > 0, jnp.exp(lp), 0.0))
    np.testing.assert_allclose(integral, 1.0, atol=0.02)


@jax.jit
def _lkj_draws(lkj, key):
    """10000 draws of Cholesky factors, their correlation matrices, support and PSD checks and
    log densities, as one program (the two cvine cases share it)."""
    L = lkj.sample(key, (10000,))
    R = L @ jnp.swapaxes(L, -1, -2)
    return L, R, constraints.corr_cholesky(L), jnp.linalg.eigvalsh(R)[..., 0], lkj.log_prob(L)


@pytest.mark.parametrize("method,eta", [("onion", 1.5), ("cvine", 1.5), ("cvine", 0.4)])
def test_lkj_cholesky_samples(key, method, eta):
    d = 4
    lkj = dist.LKJCholesky(d, jnp.array([eta, eta]), sample_method=method)
    assert lkj.batch_shape == (2,) and lkj.event_shape == (d, d)
    L, R, in_support, min_eig, lp = _lkj_draws(lkj, key)
    assert L.shape == (10000, 2, d, d) and L.dtype == jnp.float32
    assert bool(jnp.all(in_support))
    np.testing.assert_allclose(jnp.diagonal(R, axis1=-2, axis2=-1), 1.0, atol=1e-5)
    assert bool(jnp.all(min_eig > -1e-5))  # PSD up to float32 rounding
    assert bool(jnp.all(jnp.isfinite(lp)))
    # Each off-diagonal correlation r has (r + 1) / 2 ~ Beta(b, b), b = eta - 1 + d / 2.
    b = eta - 1 + d / 2
    var_r = 1 / (2 * b + 1)
    kurt_r = 3 / ((2 * b + 1) * (2 * b + 3))  # E[r^4]
    rows, cols = np.tril_indices(d, -1)
    r = np.asarray(R[..., rows, cols]).reshape(-1, len(rows))
    np.testing.assert_allclose(r.mean(0), 0.0, atol=0.03)
    np.testing.assert_allclose((r**2).mean(0), var_r, atol=0.012)
    np.testing.assert_allclose((r**4).mean(0), kurt_r, atol=0.01)
    # E[det R] = c_d(eta + 1) / c_d(eta) checks the joint law against the normalizer.
    expected_det = math.exp(
        float(dist.LKJCholesky(d, eta).log_prob(jnp.eye(d)))
        - float(dist.LKJCholesky(d, eta + 1).log_prob(jnp.eye(d)))
    )
    np.testing.assert_allclose(jnp.mean(jnp.linalg.det(R)), expected_det, rtol=0.03)


def test_lkj_correlation_matrices(key):
    lkj = dist.LKJ(3, 2.0)

    @jax.jit  # one program: eager sampling compiles each op of the beta sampler apart
    def draw(d, key):
        R = d.sample(key, (500,))
        return R, constraints.corr_matrix(R), d.log_prob(R)

    R, in_support, lp = draw(lkj, key)
    assert R.shape == (500, 3, 3)
    assert bool(jnp.all(in_support))
    assert lp.shape == (500,) and bool(jnp.all(jnp.isfinite(lp)))
    np.testing.assert_allclose(lkj.mean, jnp.eye(3))
    # d = 2: log_prob on correlation matrices equals the Beta form.
    r = 0.3
    R2 = jnp.array([[1.0, r], [r, 1.0]])
    np.testing.assert_allclose(
        dist.LKJ(2, 2.0).log_prob(R2), st.beta(2, 2).logpdf((r + 1) / 2) - math.log(2), rtol=1e-5
    )


def test_lkj_errors_and_jit(key):
    with pytest.raises(ValueError, match="dimension"):
        dist.LKJCholesky(1)
    with pytest.raises(ValueError, match="sample_method"):
        dist.LKJCholesky(3, sample_method="bogus")
    with pytest.raises(ValueError, match="concentration"):
        dist.LKJCholesky(3, -1.0, validate_args=True)
    lkj = dist.LKJCholesky(3, jnp.array([1.0, 2.0]))
    L = jax.jit(lambda d, k: d.sample(k, (5,)))(lkj, key)
    assert L.shape == (5, 2, 3, 3)
    np.testing.assert_allclose(
        jax.jit(lambda d, x: d.log_prob(x))(lkj, L), lkj.log_prob(L), rtol=1e-5
    )
    lp = jax.vmap(lambda c, x: dist.LKJCholesky(3, c).log_prob(x), in_axes=(0, 1), out_axes=1)(
        jnp.array([1.0, 2.0]), L
    )
    np.testing.assert_allclose(lp, lkj.log_prob(L), rtol=1e-5)
