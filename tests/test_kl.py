"""Tests for ``kl_divergence``: closed forms vs hand-computed numpy and vs Monte Carlo."""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from scipy.special import betaln, digamma, gammaln

import jppl.distributions as dist
from jppl.distributions import kl_divergence, register_kl


@partial(jax.jit, static_argnames="n")
def _log_ratios(p, q, key, n):
    """``log p(x) - log q(x)`` at ``n`` draws ``x ~ p``: one compiled program per (p, q) kind
    (eager sampling would compile every op of the sampler separately)."""
    x = p.sample(key, (n,))
    return p.log_prob(x) - q.log_prob(x)


def _mc_kl(p, q, key, n=100_000):
    """Monte Carlo ``E_p[log p(x) - log q(x)]`` and its standard error."""
    d = np.asarray(_log_ratios(p, q, key, n), dtype=np.float64)
    return d.mean(0), d.std(0) / math.sqrt(n)


def _check_mc(p, q, key, n=100_000):
    kl = np.asarray(kl_divergence(p, q))
    mc, se = _mc_kl(p, q, key, n)
    np.testing.assert_array_less(np.abs(kl - mc), 5 * se + 1e-3)


# -- univariate ---------------------------------------------------------------------------------
def test_kl_normal_normal(key):
    mp, sp = np.array([0.0, 1.0, -0.5]), np.array([1.0, 0.5, 2.0])
    mq, sq = np.array([0.5, 1.0, 0.0]), np.array([1.5, 1.0, 1.0])
    p, q = dist.Normal(mp, sp), dist.Normal(mq, sq)
    expected = np.log(sq / sp) + (sp**2 + (mp - mq) ** 2) / (2 * sq**2) - 0.5
    kl = kl_divergence(p, q)
    assert kl.shape == (3,)
    np.testing.assert_allclose(kl, expected, rtol=1e-5, atol=1e-6)
    _check_mc(p, q, key)
    # batch shapes broadcast between p and q
    assert kl_divergence(dist.Normal(jnp.zeros((4, 1))), dist.Normal(jnp.zeros(3))).shape == (4, 3)
    np.testing.assert_allclose(kl_divergence(p, p), 0.0, atol=1e-6)


def test_kl_gamma_gamma(key):
    ap, bp = np.array([2.0, 5.0]), np.array([1.0, 3.0])
    aq, bq = np.array([3.0, 4.0]), np.array([2.0, 2.5])
    p, q = dist.Gamma(ap, bp), dist.Gamma(aq, bq)
    expected = (
        (ap - aq) * digamma(ap)
        - gammaln(ap)
        + gammaln(aq)
        + aq * np.log(bp / bq)
        + ap * (bq - bp) / bp
    )
    np.testing.assert_allclose(kl_divergence(p, q), expected, rtol=1e-5, atol=1e-6)
    _check_mc(p, q, key)


def test_kl_beta_beta(key):
    ap, bp = np.array([2.0, 0.8]), np.array([3.0, 1.5])
    aq, bq = np.array([1.0, 2.0]), np.array([1.0, 2.5])
    p, q = dist.Beta(ap, bp), dist.Beta(aq, bq)
    expected = (
        betaln(aq, bq)
        - betaln(ap, bp)
        + (ap - aq) * digamma(ap)
        + (bp - bq) * digamma(bp)
        + (aq - ap + bq - bp) * digamma(ap + bp)
    )
    np.testing.assert_allclose(kl_divergence(p, q), expected, rtol=1e-5, atol=1e-6)
    _check_mc(p, q, key)


def test_kl_exponential_exponential(key):
    lp_, lq = np.array([1.0, 2.0, 0.3]), np.array([0.5, 2.0, 1.0])
    p, q = dist.Exponential(lp_), dist.Exponential(lq)
    expected = np.log(lp_ / lq) + lq / lp_ - 1
    np.testing.assert_allclose(kl_divergence(p, q), expected, rtol=1e-5, atol=1e-6)
    _check_mc(p, q, key)


def test_kl_laplace_pairs(key):
    p = dist.Normal(jnp.array([0.0, 1.0]), jnp.array([1.0, 0.5]))
    q = dist.Laplace(jnp.array([0.5, 0.0]), jnp.array([1.0, 2.0]))
    _check_mc(p, q, key)
    # hand computation by quadrature for the first component
    x = np.linspace(-12, 12, 200001)
    pdf = st.norm(0.0, 1.0).pdf(x)
    integrand = pdf * (st.norm(0.0, 1.0).logpdf(x) - st.laplace(0.5, 1.0).logpdf(x))
    np.testing.assert_allclose(kl_divergence(p, q)[0], np.trapezoid(integrand, x), rtol=1e-4)
    p2 = dist.Laplace(jnp.array([0.0, 1.0]), jnp.array([1.0, 0.5]))
    mp, bp, mq, bq = (
        np.array([0.0, 1.0]),
        np.array([1.0, 0.5]),
        np.array([0.5, 0.0]),
        np.array([1.0, 2.0]),
    )
    diff = np.abs(mp - mq)
    expected = np.log(bq / bp) + diff / bq + bp / bq * np.exp(-diff / bp) - 1
    np.testing.assert_allclose(kl_divergence(p2, q), expected, rtol=1e-5, atol=1e-6)
    _check_mc(p2, q, key)


def test_kl_uniform_pairs(key):
    p = dist.Uniform(jnp.array([0.0, -1.0]), jnp.array([1.0, 2.0]))
    q = dist.Uniform(jnp.array([-1.0, -1.0]), jnp.array([2.0, 1.0]))
    kl = kl_divergence(p, q)
    np.testing.assert_allclose(kl[0], math.log(3.0), rtol=1e-6)
    assert kl[1] == jnp.inf  # p's support is not inside q's
    qn = dist.Normal(jnp.array([0.2, 0.0]), jnp.array([1.0, 2.0]))
    expected = [
        -math.log(w) + 0.5 * math.log(2 * math.pi * s**2) + (w**2 / 12 + (c - m) ** 2) / (2 * s**2)
        for w, c, m, s in [(1.0, 0.5, 0.2, 1.0), (3.0, 0.5, 0.0, 2.0)]
    ]
    np.testing.assert_allclose(kl_divergence(p, qn), expected, rtol=1e-5)
    _check_mc(p, qn, key)


# -- multivariate -------------------------------------------------------------------------------
def _np_gauss_kl(mp, Sp, mq, Sq):
    k = len(mp)
    Sq_inv = np.linalg.inv(Sq)
    d = mq - mp
    return 0.5 * (
        np.trace(Sq_inv @ Sp)
        + d @ Sq_inv @ d
        - k
        + np.linalg.slogdet(Sq)[1]
        - np.linalg.slogdet(Sp)[1]
    )


def _spd(rng, k):
    a = rng.normal(size=(k, k))
    return a @ a.T / k + 0.5 * np.eye(k)


def test_kl_dirichlet_dirichlet(key):
    ap = np.array([[1.0, 2.0, 3.0], [0.5, 0.5, 4.0]])
    aq = np.array([2.0, 2.0, 2.0])
    p, q = dist.Dirichlet(ap), dist.Dirichlet(aq)
    expected = (
        gammaln(ap.sum(-1))
        - gammaln(ap).sum(-1)
        - gammaln(aq.sum())
        + gammaln(aq).sum()
        + ((ap - aq) * (digamma(ap) - digamma(ap.sum(-1, keepdims=True)))).sum(-1)
    )
    kl = kl_divergence(p, q)
    assert kl.shape == (2,)
    np.testing.assert_allclose(kl, expected, rtol=1e-5)
    _check_mc(p, q, key)


def test_kl_mvn_mvn(key):
    rng = np.random.default_rng(0)
    k = 3
    Sp = np.stack([_spd(rng, k) for _ in range(2)])
    Sq = _spd(rng, k)
    mp, mq = rng.normal(size=(2, k)), rng.normal(size=k)
    p = dist.MultivariateNormal(mp, covariance_matrix=Sp)
    q = dist.MultivariateNormal(mq, precision_matrix=np.linalg.inv(Sq))
    kl = kl_divergence(p, q)
    assert kl.shape == (2,)
    expected = [_np_gauss_kl(mp[b], Sp[b], mq, Sq) for b in range(2)]
    np.testing.assert_allclose(kl, expected, rtol=1e-4)
    _check_mc(p, q, key, n=50_000)
    # broadcasting: q batch (4, 1) vs p batch (2,)
    q4 = dist.MultivariateNormal(jnp.zeros((4, 1, k)), scale_tril=jnp.eye(k))
    assert kl_divergence(p, q4).shape == (4, 2)


def test_kl_lowrank_pairs(key):
    rng = np.random.default_rng(1)
    k, r = 4, 2
    W1, D1, m1 = rng.normal(size=(k, r)), rng.uniform(0.5, 1.5, k), rng.normal(size=k)
    W2, D2, m2 = rng.normal(size=(k, 1)), rng.uniform(0.5, 1.5, k), rng.normal(size=k)
    S3, m3 = _spd(rng, k), rng.normal(size=k)
    lr1 = dist.LowRankMultivariateNormal(m1, W1, D1)
    lr2 = dist.LowRankMultivariateNormal(m2, W2, D2)
    mvn = dist.MultivariateNormal(m3, S3)
    C1, C2 = W1 @ W1.T + np.diag(D1), W2 @ W2.T + np.diag(D2)
    cases = [
        (lr1, mvn, _np_gauss_kl(m1, C1, m3, S3)),
        (mvn, lr1, _np_gauss_kl(m3, S3, m1, C1)),
        (lr1, lr2, _np_gauss_kl(m1, C1, m2, C2)),
    ]
    for p, q, expected in cases:
        np.testing.assert_allclose(kl_divergence(p, q), expected, rtol=1e-4)
    _check_mc(lr1, mvn, key, n=50_000)
    _check_mc(mvn, lr2, key, n=50_000)


# -- wrappers -----------------------------------------------------------------------------------
def test_kl_independent_expanded_masked(key):
    p = dist.Normal(jnp.array([0.0, 1.0, 2.0]), 1.0)
    q = dist.Normal(0.0, jnp.array([1.0, 2.0, 0.5]))
    base = kl_divergence(p, q)
    # Independent: sum over the reinterpreted dims
    kl_ind = kl_divergence(p.to_event(1), q.to_event(1))
    assert kl_ind.shape == ()
    np.testing.assert_allclose(kl_ind, base.sum(), rtol=1e-6)
    p2 = dist.Normal(jnp.zeros((2, 3)), 1.0).to_event(1)
    q2 = dist.Normal(jnp.ones(3), 2.0).to_event(1)
    assert kl_divergence(p2, q2).shape == (2,)
    _check_mc(p2, q2, key)
    with pytest.raises(NotImplementedError, match="reinterpreted"):
        kl_divergence(
            dist.Normal(jnp.zeros((2, 3))).to_event(2),
            dist.MultivariateNormal(jnp.zeros((2, 3)), jnp.eye(3)).to_event(1),
        )
    # Expanded on either side (and both): broadcast of the base KL
    pe = dist.Normal(0.5, 2.0).expand((4, 3))
    kl_e = kl_divergence(pe, q)
    assert kl_e.shape == (4, 3)
    np.testing.assert_allclose(kl_e[2], kl_divergence(dist.Normal(0.5, 2.0), q), rtol=1e-6)
    assert kl_divergence(p, dist.Normal(0.0, 1.0).expand((2, 3))).shape == (2, 3)
    assert kl_divergence(pe, dist.Normal(0.0, 1.0).expand((3,))).shape == (4, 3)
    # Masked: zero where masked out
    mask = jnp.array([True, False, True])
    kl_m = kl_divergence(p.mask(mask), q)
    np.testing.assert_allclose(kl_m, jnp.where(mask, base, 0.0), rtol=1e-6)
    np.testing.assert_allclose(kl_divergence(p, q.mask(mask)), jnp.where(mask, base, 0.0))
    np.testing.assert_allclose(kl_divergence(p.mask(False), q), jnp.zeros(3))
    both = kl_divergence(p.mask(mask), q.mask(jnp.array([True, True, False])))
    np.testing.assert_allclose(both, jnp.array([base[0], 0.0, 0.0]), rtol=1e-6)
    # to_event of an expanded distribution composes
    kl_c = kl_divergence(dist.Normal(0.5, 2.0).expand((3,)).to_event(1), q.to_event(1))
    np.testing.assert_allclose(kl_c, kl_e[0].sum(), rtol=1e-6)


def test_kl_delta_any():
    v = jnp.array([0.3, -1.0])
    q = dist.Normal(jnp.array([0.0, 1.0]), 2.0)
    p = dist.Delta(v, log_density=0.5)
    np.testing.assert_allclose(kl_divergence(p, q), 0.5 - q.log_prob(v), rtol=1e-6)
    mvn = dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2))
    pd = dist.Delta(v, event_dim=1)
    np.testing.assert_allclose(kl_divergence(pd, mvn), -mvn.log_prob(v), rtol=1e-6)
    np.testing.assert_allclose(kl_divergence(pd, q.to_event(1)), -q.log_prob(v).sum(), rtol=1e-6)
    with pytest.raises(ValueError, match="event shapes"):
        kl_divergence(dist.Delta(v), mvn)


# -- registry -----------------------------------------------------------------------------------
def test_kl_registry_dispatch_and_errors():
    with pytest.raises(NotImplementedError, match="Gamma.*Beta"):
        kl_divergence(dist.Gamma(1.0, 1.0), dist.Beta(1.0, 1.0))

    class MyNormal(dist.Normal):
        pass

    class MyNormal2(MyNormal):
        pass

    # subclasses inherit the parent's pair
    np.testing.assert_allclose(
        kl_divergence(MyNormal(0.0, 1.0), dist.Normal(1.0, 1.0)), 0.5, rtol=1e-6
    )

    @register_kl(MyNormal, dist.Normal)
    def _kl_mine(p, q):
        return jnp.asarray(-1.0)

    assert float(kl_divergence(MyNormal(0.0, 1.0), dist.Normal(1.0, 1.0))) == -1.0
    assert float(kl_divergence(MyNormal2(0.0, 1.0), dist.Normal(1.0, 1.0))) == -1.0
    # the more specific registration does not affect the base pair
    np.testing.assert_allclose(kl_divergence(dist.Normal(), dist.Normal(1.0, 1.0)), 0.5)
    with pytest.raises(TypeError):
        register_kl(int, dist.Normal)


def test_kl_jit_and_grad():
    def f(loc, p_scale):
        return kl_divergence(dist.Normal(loc, p_scale), dist.Normal(0.0, 1.0))

    np.testing.assert_allclose(jax.jit(f)(1.0, 1.0), 0.5, rtol=1e-6)
    np.testing.assert_allclose(jax.grad(f)(1.0, 1.0), 1.0, rtol=1e-6)
    p = dist.MultivariateNormal(jnp.ones(2), jnp.eye(2))
    q = dist.MultivariateNormal(jnp.zeros(2), 2 * jnp.eye(2))
    np.testing.assert_allclose(
        jax.jit(kl_divergence)(p, q),
        _np_gauss_kl(np.ones(2), np.eye(2), np.zeros(2), 2 * np.eye(2)),
        rtol=1e-5,
    )


def test_kl_categorical_pairs_match_the_sum():
    """Probs and logits forms, a zero probability in p, batches: sum p (log p - log q)."""
    p = np.array([[0.2, 0.5, 0.3], [0.0, 0.4, 0.6]])
    q = np.array([[0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
    want = np.array(
        [np.sum(pr[pr > 0] * np.log(pr[pr > 0] / qr[pr > 0])) for pr, qr in zip(p, q, strict=True)]
    )
    for a, b in (
        (dist.CategoricalProbs(p), dist.CategoricalProbs(q)),
        (dist.CategoricalLogits(np.log(p + 1e-300)), dist.CategoricalProbs(q)),
        (dist.CategoricalProbs(p), dist.CategoricalLogits(np.log(q) + 3.0)),
    ):
        np.testing.assert_allclose(kl_divergence(a, b), want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("n", [5, 6])
def test_kl_diagonal_normal_to_circulant_normal_matches_the_dense_formula(n):
    """Against the Gaussian KL with the dense circulant covariance (scipy.linalg.circulant)."""
    from scipy.linalg import circulant

    with jax.enable_x64(True):
        rng = np.random.default_rng(n)
        m, s = rng.normal(size=(2, n)), rng.uniform(0.5, 1.5, size=(2, n))
        mu = rng.normal(size=n)
        lags = np.minimum(np.arange(n), n - np.arange(n))
        row = 1.5 * np.exp(-0.5 * lags**2) + 0.1 * (lags == 0)  # positive definite, symmetric
        p = dist.Normal(m, s).to_event(1)
        q = dist.CirculantNormal(mu, covariance_row=row)
        cov = circulant(row)
        prec = np.linalg.inv(cov)
        want = []
        for mi, si in zip(m, s, strict=True):
            d = mu - mi
            want.append(
                0.5
                * (
                    np.trace(prec @ np.diag(si**2))
                    + d @ prec @ d
                    - n
                    + np.linalg.slogdet(cov)[1]
                    - np.sum(np.log(si**2))
                )
            )
        np.testing.assert_allclose(kl_divergence(p, q), want, rtol=1e-10)
        with pytest.raises(NotImplementedError, match="Normal"):
            kl_divergence(dist.Laplace(m, s).to_event(1), q)
