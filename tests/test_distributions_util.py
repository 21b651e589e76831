"""NumPyro's public helpers in jppl.distributions.util, against NumPy, SciPy and closed forms."""

from decimal import Decimal, localcontext

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jppl.distributions import util


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def test_cholesky_update_and_downdate_match_a_fresh_factorization():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 5, 5))
    cov = a @ np.swapaxes(a, -1, -2) + 5 * np.eye(5)
    L = np.linalg.cholesky(cov)
    x = rng.normal(size=(3, 5))
    for coef in (1.0, 2.5, -0.2):
        got = util.cholesky_update(L, x, coef)
        want = np.linalg.cholesky(cov + coef * np.einsum("bi,bj->bij", x, x))
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # batches broadcast: one factor, three vectors
    got = util.cholesky_update(L[0], x, 1.0)
    assert got.shape == (3, 5, 5)
    np.testing.assert_allclose(got[2], np.linalg.cholesky(cov[0] + np.outer(x[2], x[2])))


def _log_diff_exp_50_digits(a: float, b: float) -> float:
    """``log(e^a - e^b)`` in 50-digit decimal arithmetic."""
    with localcontext() as ctx:
        ctx.prec = 50
        eb = Decimal(0) if b == -np.inf else Decimal(b).exp()
        return float((Decimal(a).exp() - eb).ln())


def _log_diff_exp_50_digits(a: float, b: float) -> float:
    """``log(e^a - e^b)`` in 50-digit decimal arithmetic."""
    with localcontext() as ctx:
        ctx.prec = 50
        eb = Decimal(0) if b == -np.inf else Decimal(b).exp()
        return float((Decimal(a).exp() - eb).ln())


def test_log1mexp_and_logdiffexp_are_accurate_at_both_ends():
    x = np.array([-1e-12, -1e-5, -0.5, -0.7, -5.0, -40.0, -800.0])
    want = np.array([_log_diff_exp_50_digits(0.0, v) for v in x])
    np.testing.assert_allclose(util.log1mexp(x), want, rtol=1e-13)
    assert util.log1mexp(0.0) == -np.inf and np.isnan(util.log1mexp(0.5))
    # the derivative -1 / expm1(-x), finite next to 0
    np.testing.assert_allclose(jax.grad(util.log1mexp)(-1e-6), -1.0 / np.expm1(1e-6))
    a, b = np.array([3.0, 1.0, -2.0, 0.0, 50.0]), np.array([1.0, 1.0, -3.0, -np.inf, 49.0])
    want = [_log_diff_exp_50_digits(u, v) for u, v in zip(a, b, strict=True)]
    np.testing.assert_allclose(util.logdiffexp(a, b), want, rtol=1e-13)
    assert util.logdiffexp(-np.inf, -np.inf) == -np.inf
    assert np.isnan(util.logdiffexp(0.0, 1.0)) and np.isnan(util.logdiffexp(np.inf, 0.0))


def test_binary_cross_entropy_with_logits():
    x = np.array([-30.0, -2.0, 0.0, 0.7, 40.0])
    y = np.array([0.0, 1.0, 0.3, 1.0, 0.0])
    # -log sigmoid(x) = log(1 + e^-x), -log(1 - sigmoid(x)) = log(1 + e^x)
    want = y * np.logaddexp(0.0, -x) + (1 - y) * np.logaddexp(0.0, x)
    np.testing.assert_allclose(util.binary_cross_entropy_with_logits(x, y), want, rtol=1e-6)
    inf = np.inf
    got = util.binary_cross_entropy_with_logits([inf, -inf, -inf, inf], [1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(got, [0.0, 0.0, inf, inf])


def test_add_diag_and_safe_normalize():
    m = np.arange(8.0).reshape(2, 2, 2)
    np.testing.assert_array_equal(util.add_diag(m, np.array([1.0, 2.0])), m + np.diag([1.0, 2.0]))
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(util.safe_normalize(x), [[0.6, 0.8], [2**-0.5, 2**-0.5]])
    np.testing.assert_allclose(util.safe_normalize(x, p=1), [[3 / 7, 4 / 7], [0.5, 0.5]])
    assert np.all(np.isfinite(jax.jacobian(util.safe_normalize)(jnp.zeros(3))))
    with pytest.raises(ValueError, match="p must be a number >= 0"):
        util.safe_normalize(x, p=-1)


@pytest.mark.slow  # compiles four samplers (~15 s)
def test_samplers_match_their_distributions():
    key = jax.random.key(0)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    n = 20000
    b = np.asarray(util.binomial(k1, 0.3, 10, (n,)))
    assert b.shape == (n,)
    counts = np.bincount(b.astype(int), minlength=11)
    assert stats.chisquare(counts, n * stats.binom(10, 0.3).pmf(np.arange(11))).pvalue > 0.01
    p = np.array([0.2, 0.5, 0.3])
    c = np.asarray(util.categorical(k2, p, (n,)))
    assert stats.chisquare(np.bincount(c, minlength=3), n * p).pvalue > 0.01
    m = np.asarray(util.multinomial(k3, p, 7, (n,)))
    assert m.shape == (n, 3) and np.all(m.sum(-1) == 7)
    np.testing.assert_allclose(m.mean(0), 7 * p, atol=4 * np.sqrt(7 * 0.25 / n))
    v = np.asarray(util.von_mises_centered(k4, 2.0, (n,)))
    assert stats.kstest(v, stats.vonmises(2.0).cdf).pvalue > 0.01
    # the default shapes are the parameters' batch shapes
    assert util.categorical(k2, np.ones((4, 3)) / 3).shape == (4,)
    assert util.multinomial(k3, np.ones((4, 3)) / 3, 5).shape == (4, 3)
