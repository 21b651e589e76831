"""Hurdle, compound-count, ordinal, relaxed-Bernoulli and general-mixture distributions.

Checked in float64 against scipy.stats or densities written here from their definitions;
draws against the pmf / moments with bounds of a few standard errors (fixed seeds).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special as sp
from scipy import stats

import jppl
import jppl.distributions as dist
from jppl.contrib.funsor import config_enumerate, enum, log_density
from jppl.distributions.discrete_extra import (
    BetaNegativeBinomial,
    DirichletMultinomial,
    HurdleDistribution,
    HurdleGamma,
    HurdleLogits,
    HurdleLogNormal,
    HurdleNegativeBinomial2,
    HurdlePoisson,
    HurdleProbs,
    OrderedLogistic,
    RelaxedBernoulli,
    RelaxedBernoulliLogits,
    ZeroInflatedNegativeBinomial2,
)
from jppl.distributions.mixtures import Mixture, MixtureGeneral
from jppl.util import enable_x64

N_DRAWS = 20000


@pytest.fixture(autouse=True)
def x64():
    enable_x64(True)
    yield
    enable_x64(False)


_jit_lp = jax.jit(lambda d, v: d.log_prob(v))


def _lp(d, value):
    return np.asarray(_jit_lp(d, jnp.asarray(value)))


@jax.jit
def _draw(d, key):
    x = d.sample(key, (N_DRAWS,))
    return x, d.support(x)


def _check_frequencies(x, values, pmf):
    """Each value's frequency within 5 standard errors of its probability, and the mass off
    ``values`` likewise (a Bonferroni-style bound, so a fixed seed passes by a wide margin)."""
    x = np.asarray(x)
    n = x.shape[0]
    pmf = np.asarray(pmf, dtype=np.float64)
    for v, p in zip(values, pmf, strict=True):
        freq = np.mean(np.all(x == v, axis=tuple(range(1, x.ndim))) if x.ndim > 1 else x == v)
        assert abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12, (v, freq, p)
    rest = max(1.0 - pmf.sum(), 0.0)
    seen = np.isin(x, values) if x.ndim == 1 else None
    if seen is not None:
        assert abs(np.mean(~seen) - rest) <= 5 * np.sqrt(rest * (1 - rest) / n) + 1e-12


def _check_moments(x, mean, var):
    """Sample mean and variance within 5 standard errors of ``mean`` and ``var``."""
    xs = np.asarray(x, dtype=np.float64)
    n = xs.shape[0]
    mean, var = np.asarray(mean), np.asarray(var)
    assert np.all(np.abs(xs.mean(0) - mean) < 5 * np.sqrt(var / n))
    dev2 = (xs - mean) ** 2
    assert np.all(np.abs(dev2.mean(0) - var) < 5 * np.sqrt(dev2.var(0) / n))


def _bnb_logpmf(k, a, b, n):
    """log C(n + k - 1, k) B(a + k, b + n) / B(a, b), from gamma functions."""
    return (
        sp.gammaln(n + k)
        - sp.gammaln(n)
        - sp.gammaln(k + 1)
        + sp.betaln(a + k, b + n)
        - sp.betaln(a, b)
    )


# -- hurdles -----------------------------------------------------------------------------------
def _hurdle_logpmf(gate, base_logpmf, base_logp0, k):
    """From the definition: P(0) = gate; P(k > 0) = (1 - gate) B(k) / (1 - B(0))."""
    k = np.asarray(k)
    pos = np.log1p(-gate) + base_logpmf - np.log1p(-np.exp(base_logp0))
    return np.where(k == 0, np.log(gate), pos)


def test_hurdle_poisson_log_prob_mean_variance():
    gate = np.array([0.1, 0.35, 0.8])
    rate = np.array([[0.4], [2.5]])
    d = HurdlePoisson(gate, rate)
    assert isinstance(d, HurdleProbs) and d.batch_shape == (2, 3)
    assert d.support is dist.constraints.nonnegative_integer and not d.has_rsample
    assert not d.has_enumerate_support
    k = np.arange(60.0)[:, None, None]
    want = _hurdle_logpmf(gate, stats.poisson.logpmf(k, rate), -rate, k)
    np.testing.assert_allclose(_lp(d, k), want, rtol=1e-12)
    p = np.exp(want)
    np.testing.assert_allclose(p.sum(0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(d.mean, (k * p).sum(0), rtol=1e-10)
    np.testing.assert_allclose(d.variance, (k**2 * p).sum(0) - (k * p).sum(0) ** 2, rtol=1e-10)
    assert _lp(d, [[[-1.0]], [[2.5]]])[:, 0, 0].tolist() == [-np.inf, -np.inf]


def test_hurdle_negative_binomial2_log_prob_and_sums_to_one():
    mean, conc, gate = 3.0, np.array([0.7, 4.0]), 0.25
    d = HurdleNegativeBinomial2(gate, mean, conc)
    assert type(d) is HurdleProbs and d.batch_shape == (2,)
    k = np.arange(600.0)[:, None]
    nb = stats.nbinom(conc, conc / (conc + mean))
    want = _hurdle_logpmf(gate, nb.logpmf(k), nb.logpmf(0), k)
    np.testing.assert_allclose(_lp(d, k), want, rtol=1e-10)
    p = np.exp(want)
    np.testing.assert_allclose(p.sum(0), 1.0, rtol=1e-10)
    np.testing.assert_allclose(d.mean, (k * p).sum(0), rtol=1e-8)
    np.testing.assert_allclose(d.variance, (k**2 * p).sum(0) - (k * p).sum(0) ** 2, rtol=1e-8)


def test_hurdle_logits_and_factory_with_a_finite_base():
    base = dist.Binomial(4, 0.3)
    logits = np.array([-1.0, 0.5])
    d = HurdleDistribution(base, gate_logits=logits)
    assert isinstance(d, HurdleLogits) and isinstance(d, HurdleProbs)
    gate = sp.expit(logits)
    np.testing.assert_allclose(d.gate, gate, rtol=1e-14)
    k = np.arange(5.0)[:, None]
    b = stats.binom(4, 0.3)
    want = _hurdle_logpmf(gate, b.logpmf(k), b.logpmf(0), k)
    np.testing.assert_allclose(_lp(d, k), want, rtol=1e-12)
    d_probs = HurdleDistribution(base, gate=gate)
    assert type(d_probs) is HurdleProbs
    np.testing.assert_allclose(_lp(d_probs, k), want, rtol=1e-12)
    # extreme logits stay finite where the probability form would round gate to 0 or 1
    far = HurdleLogits(base, jnp.array([-800.0, 800.0]))
    np.testing.assert_allclose(_lp(far, [[0.0, 0.0]]), [[-800.0, 0.0]], rtol=1e-12)
    with pytest.raises(ValueError, match="exactly one of `gate` or `gate_logits`"):
        HurdleDistribution(base)
    with pytest.raises(ValueError, match="exactly one of `gate` or `gate_logits`"):
        HurdleDistribution(base, gate=0.2, gate_logits=0.1)


def test_hurdle_continuous_bases_log_prob_and_gradient_at_zero():
    gate = np.array([0.2, 0.6])
    x = np.array([[0.0], [0.3], [1.7], [4.0]])
    g = HurdleGamma(gate, 2.5, 1.5)
    assert g.support is dist.constraints.nonnegative and g.batch_shape == (2,)
    want = np.where(
        x == 0, np.log(gate), np.log1p(-gate) + stats.gamma(2.5, scale=1 / 1.5).logpdf(x)
    )
    np.testing.assert_allclose(_lp(g, x), want, rtol=1e-12)
    ln = HurdleLogNormal(gate, 0.3, 0.8)
    want = np.where(
        x == 0, np.log(gate), np.log1p(-gate) + stats.lognorm(0.8, scale=np.exp(0.3)).logpdf(x)
    )
    np.testing.assert_allclose(_lp(ln, x), want, rtol=1e-12)
    np.testing.assert_allclose(g.mean, (1 - gate) * 2.5 / 1.5, rtol=1e-12)
    m2 = 2.5 / 1.5**2 + (2.5 / 1.5) ** 2
    np.testing.assert_allclose(g.variance, (1 - gate) * m2 - ((1 - gate) * 2.5 / 1.5) ** 2)

    # no NaN from the base density at 0: d/dconc at x = 0 is 0, d/dgate is 1/gate
    def lp0(conc, gt):
        return HurdleGamma(gt, conc, 1.5).log_prob(0.0)

    dc, dg = jax.grad(lp0, argnums=(0, 1))(2.5, 0.2)
    assert float(dc) == 0.0
    np.testing.assert_allclose(dg, 1 / 0.2, rtol=1e-12)


@pytest.mark.slow  # one sampler compile per case: ~10 s each on a loaded 2-core box
@pytest.mark.parametrize(
    "make, values, pmf",
    [
        (
            lambda: HurdlePoisson(0.3, 1.2),
            np.arange(8),
            lambda k: np.where(k == 0, 0.3, 0.7 * stats.poisson.pmf(k, 1.2) / (1 - np.exp(-1.2))),
        ),
        (
            lambda: HurdleLogits(dist.Binomial(3, 0.05), 0.4),
            np.arange(4),
            # B(0) = 0.857: most base draws are rejected zeros
            lambda k: np.where(
                k == 0,
                sp.expit(0.4),
                sp.expit(-0.4) * stats.binom.pmf(k, 3, 0.05) / (1 - 0.95**3),
            ),
        ),
        (
            lambda: BetaNegativeBinomial(2.0, 3.5, 1.5),
            np.arange(10),
            lambda k: np.exp(_bnb_logpmf(k, 2.0, 3.5, 1.5)),
        ),
        (
            lambda: OrderedLogistic(0.4, jnp.array([-1.0, 0.2, 1.1])),
            np.arange(4),
            lambda k: np.diff(
                np.concatenate([[0.0], stats.logistic.cdf(np.array([-1.0, 0.2, 1.1]) - 0.4), [1]])
            ),
        ),
        (
            lambda: ZeroInflatedNegativeBinomial2(2.0, 1.5, gate=0.2),
            np.arange(10),
            lambda k: 0.2 * (k == 0) + 0.8 * stats.nbinom.pmf(k, 1.5, 1.5 / 3.5),
        ),
        (
            lambda: MixtureGeneral(
                dist.Categorical(jnp.array([0.3, 0.7])), [dist.Poisson(4.0), dist.Geometric(0.5)]
            ),
            np.arange(12),
            lambda k: 0.3 * stats.poisson.pmf(k, 4.0) + 0.7 * 0.5**k * 0.5,
        ),
    ],
)
def test_sample_frequencies_match_pmf(make, values, pmf):
    d = make()
    x, ok = _draw(d, jax.random.key(11))
    assert x.shape == (N_DRAWS,) and x.dtype == jnp.int32 and np.all(np.asarray(ok))
    p = pmf(values.astype(np.float64))
    np.testing.assert_allclose(np.exp(_lp(d, values)), p, rtol=1e-10)
    _check_frequencies(x, values, p)


@pytest.mark.slow  # one sampler compile per case: ~10 s each on a loaded 2-core box
@pytest.mark.parametrize(
    "make",
    [
        lambda: HurdlePoisson(jnp.array([0.1, 0.6]), jnp.array([0.3, 5.0])),
        lambda: HurdleNegativeBinomial2(0.3, jnp.array([1.0, 6.0]), 2.0),
        lambda: HurdleGamma(jnp.array([0.2, 0.7]), 2.0, 0.5),
        lambda: HurdleLogNormal(0.4, jnp.array([-0.5, 0.5]), 0.5),
        lambda: ZeroInflatedNegativeBinomial2(jnp.array([1.0, 6.0]), 2.0, gate_logits=-0.5),
        lambda: BetaNegativeBinomial(jnp.array([1.5, 3.0]), 12.0, jnp.array([2.0, 0.7])),
        lambda: DirichletMultinomial(jnp.array([[0.5, 1.0, 2.0], [3.0, 3.0, 0.2]]), 7),
        lambda: MixtureGeneral(
            dist.Categorical(jnp.array([0.25, 0.75])),
            [dist.Normal(jnp.array([-2.0, 1.0]), 0.5), dist.Gamma(3.0, 1.0)],
            support=dist.constraints.real,
        ),
    ],
)
def test_sample_moments_match_mean_and_variance(make):
    d = make()
    x, ok = _draw(d, jax.random.key(7))
    assert x.shape == (N_DRAWS,) + d.batch_shape + d.event_shape
    assert np.all(np.asarray(ok))
    assert np.shape(d.mean) == np.shape(d.variance) == d.batch_shape + d.event_shape
    _check_moments(x, d.mean, d.variance)


def test_hurdle_draws_follow_the_gate_and_truncation():
    d = HurdlePoisson(jnp.array([0.0, 0.5, 1.0]), 0.2)  # B(0) = 0.82: rejection loops
    x = np.asarray(jax.jit(lambda d: d.sample(jax.random.key(2), (4000,)))(d))
    assert np.all(x[:, 0] > 0) and np.all(x[:, 2] == 0)
    assert abs(np.mean(x[:, 1] == 0) - 0.5) < 5 * np.sqrt(0.25 / 4000)
    c, _ = _draw(HurdleGamma(0.3, 2.0), jax.random.key(4))
    assert abs(np.mean(np.asarray(c) == 0) - 0.3) < 5 * np.sqrt(0.21 / N_DRAWS)
    assert np.all(np.asarray(c) >= 0)


def test_hurdle_errors():
    with pytest.raises(ValueError, match="univariate"):
        HurdleProbs(dist.Multinomial(3, jnp.ones(2) / 2), 0.2)
    with pytest.raises(TypeError, match="base_dist"):
        HurdleProbs(2.0, 0.2)
    with pytest.raises(ValueError, match="`gate`"):
        HurdlePoisson(1.5, 2.0, validate_args=True)
    with pytest.raises(ValueError, match="`rate`"):
        HurdlePoisson(0.5, -2.0, validate_args=True)
    with pytest.raises(ValueError, match="exactly one of `gate`"):
        ZeroInflatedNegativeBinomial2(2.0, 1.0)


def test_zero_inflated_negative_binomial2_log_prob():
    mean, conc = np.array([0.5, 3.0]), 2.0
    nb = stats.nbinom(conc, conc / (conc + mean))
    k = np.arange(40.0)[:, None]
    for kw, gate in (({"gate": 0.3}, 0.3), ({"gate_logits": 0.7}, sp.expit(0.7))):
        d = ZeroInflatedNegativeBinomial2(mean, conc, **kw)
        want = np.where(
            k == 0, np.log(gate + (1 - gate) * nb.pmf(0)), np.log1p(-gate) + nb.logpmf(k)
        )
        np.testing.assert_allclose(_lp(d, k), want, rtol=1e-10)
        np.testing.assert_allclose(d.mean, (1 - gate) * mean, rtol=1e-12)


# -- compound counts ---------------------------------------------------------------------------
def test_beta_negative_binomial_log_prob_and_moments():
    a, b, n = np.array([0.6, 2.0, 5.0]), np.array([[7.0], [1.5]]), 2.5
    d = BetaNegativeBinomial(a, b, n)
    assert d.batch_shape == (2, 3) and d.support is dist.constraints.nonnegative_integer
    k = np.arange(50.0)[:, None, None]
    # C(n + k - 1, k) B(a + k, b + n) / B(a, b), from gamma functions
    want = _bnb_logpmf(k, a, b, n)
    np.testing.assert_allclose(_lp(d, k), want, rtol=1e-10)
    # scipy's betanbinom takes integer n only
    # and names the Beta parameters the other way round
    np.testing.assert_allclose(
        _lp(BetaNegativeBinomial(a, b, 2.0), k), stats.betanbinom.logpmf(k, 2, b, a), rtol=1e-10
    )
    # the b = 7 row: tail past 4000 is below 1e-15
    kk = np.arange(4000.0)[:, None]
    row = BetaNegativeBinomial(a, 7.0, n)
    p = np.exp(_lp(row, kk))
    np.testing.assert_allclose(p.sum(0), 1.0, rtol=1e-9)
    np.testing.assert_allclose(row.mean, (kk * p).sum(0), rtol=1e-7)
    var = (kk**2 * p).sum(0) - (kk * p).sum(0) ** 2
    np.testing.assert_allclose(row.variance, var, rtol=1e-6)
    # heavy tails: mean infinite for b <= 1, variance for b <= 2
    heavy = BetaNegativeBinomial(1.0, jnp.array([0.8, 1.5, 3.0]), 1.0)
    assert np.isinf(heavy.mean[0]) and np.isfinite(heavy.mean[1:]).all()
    assert np.isinf(heavy.variance[:2]).all() and np.isfinite(heavy.variance[2])
    assert _lp(d, [[[-1.0]], [[0.5]]]).max() == -np.inf


def _compositions(n, k):
    return np.array([c for c in itertools.product(range(n + 1), repeat=k) if sum(c) == n])


def test_dirichlet_multinomial_log_prob_support_and_enumeration():
    alpha = np.array([[0.5, 1.2, 3.0], [2.0, 0.1, 0.7]])
    d = DirichletMultinomial(alpha, 5)
    assert d.batch_shape == (2,) and d.event_shape == (3,)
    assert d.has_enumerate_support
    vals = d.enumerate_support(expand=False)
    assert vals.shape == (21, 1, 3) and vals.dtype == jnp.int32
    assert d.enumerate_support().shape == (21, 2, 3)
    np.testing.assert_array_equal(
        np.asarray(sorted(map(tuple, np.asarray(vals[:, 0])))), _compositions(5, 3)
    )
    # n! G(A) / G(n + A) prod_k G(x_k + a_k) / (G(a_k) x_k!)
    x = np.asarray(vals, dtype=np.float64)
    a_sum = alpha.sum(-1)
    want = (
        sp.gammaln(6.0)
        + sp.gammaln(a_sum)
        - sp.gammaln(5 + a_sum)
        + np.sum(sp.gammaln(x + alpha) - sp.gammaln(alpha) - sp.gammaln(x + 1), -1)
    )
    got = _lp(d, vals)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    for i in range(2):
        np.testing.assert_allclose(
            got[:, i], stats.dirichlet_multinomial.logpmf(x[:, 0], alpha[i], 5), rtol=1e-10
        )
    np.testing.assert_allclose(np.exp(got).sum(0), 1.0, rtol=1e-12)
    mean = (np.exp(got)[..., None] * x).sum(0)
    np.testing.assert_allclose(d.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(d.variance, (np.exp(got)[..., None] * (x - mean) ** 2).sum(0))
    assert _lp(d, [[1, 1, 1], [6, -1, 0]]).tolist() == [-np.inf, -np.inf]
    # array total_count broadcasts with the batch; draws sum to it
    d2 = DirichletMultinomial(jnp.ones(4), jnp.array([3, 9]))
    assert d2.batch_shape == (2,)
    xs = d2.sample(jax.random.key(0), (50,))
    np.testing.assert_array_equal(np.asarray(xs).sum(-1), np.broadcast_to([3, 9], (50, 2)))
    with pytest.raises(ValueError, match="at least one dimension"):
        DirichletMultinomial(1.0, 3)


@pytest.mark.slow  # one sampler compile per case: ~10 s each on a loaded 2-core box
def test_dirichlet_multinomial_sample_frequencies():
    d = DirichletMultinomial(jnp.array([0.7, 1.5, 2.5]), 3)
    vals = np.asarray(d.enumerate_support(expand=False))
    x, ok = _draw(d, jax.random.key(9))
    assert np.all(np.asarray(ok))
    _check_frequencies(x, vals, np.exp(_lp(d, vals)))


# -- ordered logistic ---------------------------------------------------------------------------
def test_ordered_logistic_probs_from_logistic_cdf():
    eta = np.array([-3.0, 0.2, 2.5])
    c = np.array([[-1.0, 0.5, 2.0], [-2.0, -1.9, 4.0]])[:, None, :]
    d = OrderedLogistic(eta, c)
    assert isinstance(d, dist.CategoricalProbs) and d.batch_shape == (2, 3)
    assert d.support.upper_bound == 3 and d.has_enumerate_support
    cum = stats.logistic.cdf(c - eta[:, None])
    want = np.diff(np.concatenate([np.zeros((2, 3, 1)), cum, np.ones((2, 3, 1))], -1), axis=-1)
    np.testing.assert_allclose(d.probs, want, rtol=1e-12, atol=1e-15)
    k = np.arange(4.0)[:, None, None]
    np.testing.assert_allclose(_lp(d, k), np.log(np.moveaxis(want, -1, 0)), rtol=1e-12)
    support = d.enumerate_support(expand=False)
    assert support.shape == (4, 1, 1)
    np.testing.assert_allclose(np.exp(_lp(d, support)).sum(0), 1.0, rtol=1e-12)
    # the top category from sigmoid(eta - c): accurate far in the tail
    far = OrderedLogistic(-40.0, jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(far.probs[-1], sp.expit(-41.0), rtol=1e-12)
    with pytest.raises(ValueError, match="`cutpoints`"):
        OrderedLogistic(0.0, jnp.array([1.0, 0.0]), validate_args=True)
    with pytest.raises(ValueError, match="at least one dimension"):
        OrderedLogistic(0.0, 1.0)


# -- relaxed Bernoulli --------------------------------------------------------------------------
def _bin_concrete_logpdf(x, temperature, logits):
    """log of T a x^(-T-1) (1-x)^(-T-1) / (a x^-T + (1-x)^-T)^2, a = exp(logits)."""
    t, lx, l1x = temperature, np.log(x), np.log1p(-x)
    return np.log(t) + logits - (t + 1) * (lx + l1x) - 2 * np.logaddexp(logits - t * lx, -t * l1x)


def test_relaxed_bernoulli_density_cdf_and_shapes():
    t, logits = np.array([0.3, 1.0, 2.5]), np.array([[-1.0], [0.8]])
    d = RelaxedBernoulliLogits(t, logits)
    assert d.batch_shape == (2, 3) and d.has_rsample
    assert d.support is dist.constraints.unit_interval
    x = np.linspace(0.01, 0.99, 25)[:, None, None]
    np.testing.assert_allclose(_lp(d, x), _bin_concrete_logpdf(x, t, logits), rtol=1e-10)
    p = RelaxedBernoulli(t, probs=sp.expit(logits))
    np.testing.assert_allclose(_lp(p, x), _bin_concrete_logpdf(x, t, logits), rtol=1e-9)
    with pytest.raises(ValueError, match="exactly one of `probs` or `logits`"):
        RelaxedBernoulli(0.5)
    # integrates to one (in logit coordinates, where the integrand is smooth and light-tailed)
    # for T >= 1 (columns 1, 2) the mass past |logit x| = 36, where x rounds to 1 in float64,
    # is below 1e-14
    y = np.linspace(-36, 36, 40001)[:, None, None]
    dens = np.exp(_lp(d, sp.expit(y))) * sp.expit(y) * sp.expit(-y)
    np.testing.assert_allclose(np.trapezoid(dens, y[:, 0, 0], axis=0)[:, 1:], 1.0, rtol=1e-8)
    # draws against the cdf P(X <= x) = sigmoid(T logit(x) - logits)
    xs = np.asarray(jax.jit(lambda d: d.sample(jax.random.key(1), (N_DRAWS,)))(d))
    assert xs.shape == (N_DRAWS, 2, 3) and np.all((xs > 0) & (xs < 1))
    for q in (0.1, 0.5, 0.9):
        cdf = sp.expit(t * sp.logit(q) - logits)
        emp = np.mean(xs <= q, axis=0)
        assert np.all(np.abs(emp - cdf) < 5 * np.sqrt(cdf * (1 - cdf) / N_DRAWS))


def test_relaxed_bernoulli_rsample_gradients():
    key = jax.random.key(3)

    def total(logits, t):
        return jnp.sum(RelaxedBernoulliLogits(t, logits).rsample(key, (64,)))

    l0, t0 = jnp.array([-0.7, 1.2]), jnp.array([0.5, 2.0])
    gl, gt = jax.jit(jax.grad(total, argnums=(0, 1)))(l0, t0)
    eps = 1e-6
    for i in range(2):
        e = jnp.zeros(2).at[i].set(eps)
        fd_l = (total(l0 + e, t0) - total(l0 - e, t0)) / (2 * eps)
        fd_t = (total(l0, t0 + e) - total(l0, t0 - e)) / (2 * eps)
        np.testing.assert_allclose(gl[i], fd_l, rtol=1e-6)
        np.testing.assert_allclose(gt[i], fd_t, rtol=1e-6)
    # closed form: x = sigmoid((l + L) / T), dx/dl = x (1 - x) / T
    x = np.asarray(RelaxedBernoulliLogits(t0, l0).rsample(key, (64,)))
    np.testing.assert_allclose(gl, (x * (1 - x) / np.asarray(t0)).sum(0), rtol=1e-10)


# -- mixtures ------------------------------------------------------------------------------------
def test_mixture_general_log_prob_moments_cdf():
    w = np.array([0.2, 0.5, 0.3])
    comps = [
        dist.Normal(jnp.array([-1.0, 0.0]), 0.7),
        dist.StudentT(5.0, 1.0, 2.0),
        dist.Laplace(2.0, jnp.array([0.5, 1.5])),
    ]
    m = Mixture(dist.Categorical(logits=jnp.log(jnp.asarray(w)) + 3.0), comps)
    assert isinstance(m, MixtureGeneral) and m.batch_shape == (2,) and m.event_shape == ()
    assert m.mixture_size == 3 and not m.has_rsample and m.support is dist.constraints.real
    x = np.linspace(-5, 6, 23)[:, None]
    logs = np.stack(
        [
            stats.norm.logpdf(x, [-1.0, 0.0], 0.7),
            np.broadcast_to(stats.t.logpdf(x, 5.0, 1.0, 2.0), (23, 2)),
            stats.laplace.logpdf(x, 2.0, [0.5, 1.5]),
        ],
        -1,
    )
    np.testing.assert_allclose(_lp(m, x), sp.logsumexp(logs + np.log(w), -1), rtol=1e-12)
    np.testing.assert_allclose(m.component_log_probs(x), logs + np.log(w), rtol=1e-12)
    cdf = (
        w[0] * stats.norm.cdf(x, [-1.0, 0.0], 0.7)
        + w[1] * stats.t.cdf(x, 5.0, 1.0, 2.0)
        + w[2] * stats.laplace.cdf(x, 2.0, [0.5, 1.5])
    )
    np.testing.assert_allclose(m.cdf(x), cdf, rtol=1e-10)
    means = np.array([[-1.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    vars_ = np.array([[0.49, 0.49], [4.0 * 5 / 3] * 2, [0.5, 4.5]])
    mean = w @ means
    np.testing.assert_allclose(m.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(m.variance, w @ (vars_ + (means - mean) ** 2), rtol=1e-12)
    # a list of same-family components equals MixtureSameFamily
    same = Mixture(dist.Categorical(jnp.asarray(w)), dist.Normal(jnp.array([-1.0, 0.0, 3.0]), 1.0))
    assert isinstance(same, dist.MixtureSameFamily)
    listed = MixtureGeneral(
        dist.Categorical(jnp.asarray(w)), [dist.Normal(v, 1.0) for v in (-1.0, 0.0, 3.0)]
    )
    np.testing.assert_allclose(_lp(listed, x[:, 0]), _lp(same, x[:, 0]), rtol=1e-12)


def test_mixture_general_explicit_support_and_intermediates():
    m = MixtureGeneral(
        dist.Categorical(jnp.array([0.4, 0.6])),
        [dist.Normal(0.0, 1.0), dist.HalfNormal(2.0)],
        support=dist.constraints.real,
    )
    x = np.array([-1.5, 0.7])
    want = np.where(
        x < 0,
        np.log(0.4) + stats.norm.logpdf(x),
        np.logaddexp(
            np.log(0.4) + stats.norm.logpdf(x), np.log(0.6) + stats.halfnorm.logpdf(x, 0, 2)
        ),
    )
    np.testing.assert_allclose(_lp(m, x), want, rtol=1e-12)
    draws, (idx,) = m.sample_with_intermediates(jax.random.key(0), (N_DRAWS,))
    draws, idx = np.asarray(draws), np.asarray(idx)
    assert draws.shape == idx.shape == (N_DRAWS,)
    assert np.all(draws[idx == 1] >= 0)
    assert abs(np.mean(idx == 1) - 0.6) < 5 * np.sqrt(0.24 / N_DRAWS)
    # zero weight: finite gradients (no NaN through the -inf component)
    g = jax.grad(
        lambda loc: MixtureGeneral(
            dist.Categorical(jnp.array([1.0, 0.0])), [dist.Normal(loc, 1.0), dist.Normal(0.0, 1.0)]
        ).log_prob(0.5)
    )(0.0)
    np.testing.assert_allclose(g, 0.5, rtol=1e-12)


def test_mixture_general_multivariate_components():
    comps = [
        dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)),
        dist.Normal(jnp.array([1.0, -1.0]), 0.5).to_event(1),
    ]
    m = MixtureGeneral(
        dist.Categorical(jnp.array([0.3, 0.7])), comps, support=dist.constraints.real_vector
    )
    assert m.event_shape == (2,) and m.batch_shape == ()
    x = np.array([[0.2, -0.4], [1.0, 1.0]])
    want = np.logaddexp(
        np.log(0.3) + stats.multivariate_normal.logpdf(x, np.zeros(2), np.eye(2)),
        np.log(0.7) + stats.norm.logpdf(x, [1.0, -1.0], 0.5).sum(-1),
    )
    np.testing.assert_allclose(_lp(m, x), want, rtol=1e-12)
    assert m.sample(jax.random.key(0), (5,)).shape == (5, 2)
    np.testing.assert_allclose(m.mean, 0.7 * np.array([1.0, -1.0]), rtol=1e-12)


def test_mixture_general_errors():
    cat = dist.Categorical(jnp.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="Categorical"):
        MixtureGeneral(dist.Bernoulli(0.5), [dist.Normal(), dist.Normal()])
    with pytest.raises(ValueError, match="2 categories but 3"):
        MixtureGeneral(cat, [dist.Normal()] * 3)
    with pytest.raises(ValueError, match="component_distributions\\[1\\]"):
        MixtureGeneral(cat, [dist.Normal(), 3.0])
    with pytest.raises(ValueError, match="event shape"):
        MixtureGeneral(cat, [dist.Normal(), dist.Normal(jnp.zeros(2)).to_event(1)])
    with pytest.raises(ValueError, match="same support"):
        MixtureGeneral(cat, [dist.Normal(), dist.HalfNormal()])
    with pytest.raises(ValueError, match="list of distributions"):
        MixtureGeneral(cat, dist.Normal(jnp.zeros(2)))


# -- enumeration, transforms of shape, jit and vmap -------------------------------------------
FINITE = [
    lambda: HurdleProbs(dist.Binomial(4, jnp.array([0.2, 0.6])), 0.3),
    lambda: HurdleLogits(dist.BetaBinomial(2.0, 3.0, 5), jnp.array([-0.5, 1.0])),
    lambda: OrderedLogistic(jnp.array([0.1, -1.0]), jnp.array([-0.5, 0.5, 1.5])),
    lambda: DirichletMultinomial(jnp.array([[1.0, 2.0], [0.5, 0.5]]), 4),
]


@pytest.mark.parametrize("make", FINITE)
def test_enumerate_support_sums_to_one(make):
    d = make()
    assert d.has_enumerate_support
    v = d.enumerate_support(expand=False)
    full = d.enumerate_support()
    assert full.shape == v.shape[:1] + d.batch_shape + d.event_shape
    np.testing.assert_allclose(np.exp(_lp(d, v)).sum(0), 1.0, rtol=1e-12)
    # through the wrappers
    e = d.expand((3,) + d.batch_shape)
    assert e.enumerate_support().shape == v.shape[:1] + (3,) + d.batch_shape + d.event_shape
    np.testing.assert_allclose(np.exp(_lp(e, e.enumerate_support(False))).sum(0), 1.0)


def test_enumerated_hurdle_site_marginalizes_exactly():
    base = dist.Binomial(3, 0.4)

    def model(y):
        z = jppl.sample("z", HurdleLogits(base, -0.3))
        c = jppl.sample("c", OrderedLogistic(z * 0.5, jnp.array([-0.5, 0.8])))
        jppl.sample("y", dist.Normal(z + c, 1.0), obs=y)

    y = 1.3
    got = float(log_density(enum(config_enumerate(model), -1), (y,), {}, {})[0])
    gate = sp.expit(-0.3)
    terms = []
    for z in range(4):
        pz = gate if z == 0 else (1 - gate) * stats.binom.pmf(z, 3, 0.4) / (1 - 0.6**3)
        cum = np.concatenate([[0.0], stats.logistic.cdf(np.array([-0.5, 0.8]) - 0.5 * z), [1.0]])
        for c in range(3):
            terms.append(np.log(pz * (cum[c + 1] - cum[c])) + stats.norm.logpdf(y, z + c, 1.0))
    np.testing.assert_allclose(got, sp.logsumexp(terms), rtol=1e-10)


X_COUNTS = np.array([[0.0, 1.0], [2.0, 0.0], [5.0, 3.0]])
X_UNIT = np.array([[0.1, 0.5], [0.9, 0.3], [0.02, 0.99]])
BATCHED = [
    (lambda g: HurdlePoisson(g, jnp.array([1.0, 3.0])), X_COUNTS),
    (lambda g: HurdleGamma(g, 2.0, jnp.array([1.0, 3.0])), X_COUNTS + X_UNIT),
    (lambda g: HurdleLogits(dist.Poisson(jnp.array([1.0, 3.0])), g), X_COUNTS),
    (lambda g: BetaNegativeBinomial(g + 1.0, 3.0, jnp.array([1.0, 2.0])), X_COUNTS),
    (lambda g: OrderedLogistic(g, jnp.array([-0.5, 0.5])), np.minimum(X_COUNTS, 2.0)),
    (lambda g: RelaxedBernoulliLogits(g + 0.5, jnp.array([-1.0, 1.0])), X_UNIT),
    (
        lambda g: MixtureGeneral(
            dist.Categorical(jnp.array([0.5, 0.5])), [dist.Poisson(g + 1.0), dist.Geometric(0.4)]
        ),
        X_COUNTS,
    ),
]


@pytest.mark.parametrize(
    "make, x",
    # the default suite has a time budget: the first case there, the others in the slow step
    BATCHED[:1] + [pytest.param(*case, marks=pytest.mark.slow) for case in BATCHED[1:]],
)
def test_jit_vmap_expand_to_event_mask(make, x):
    g = jnp.array([0.2, 0.7])
    d = make(g)
    assert d.batch_shape == (2,)
    x = jnp.asarray(x)
    lp = np.asarray(d.log_prob(x))
    assert lp.shape == (3, 2) and np.all(np.isfinite(lp))
    # jit with the distribution as a pytree argument
    np.testing.assert_allclose(_lp(d, x), lp, rtol=1e-12)
    # vmap over the parameter: slice i is a distribution with both entries g[i], evaluated
    # at x[:, i]; its column i is lp[:, i]
    per = jax.jit(
        jax.vmap(lambda gi, xi: make(jnp.full((2,), gi)).log_prob(xi[:, None]), in_axes=(0, 1))
    )(g, x)
    np.testing.assert_allclose(np.asarray(per)[[0, 1], :, [0, 1]].T, lp, rtol=1e-12)
    # a batch of distributions returned from vmap
    stacked = jax.vmap(make)(jnp.stack([g, g]))
    assert stacked.batch_shape == (2, 2)
    np.testing.assert_allclose(
        _lp(stacked, x[:, None]), np.broadcast_to(lp[:, None], (3, 2, 2)), rtol=1e-12
    )
    e = d.expand((4, 2))
    key = jax.random.key(1)
    assert jax.eval_shape(lambda e: e.sample(key, (5,)), e).shape == (5, 4, 2)
    np.testing.assert_allclose(
        _lp(e, x[:, None]), np.broadcast_to(lp[:, None], (3, 4, 2)), rtol=1e-12
    )
    np.testing.assert_allclose(_lp(d.to_event(1), x), lp.sum(-1), rtol=1e-12)
    masked = d.mask(jnp.array([True, False]))
    np.testing.assert_allclose(_lp(masked, x), np.stack([lp[:, 0], np.zeros(3)], -1), rtol=1e-12)
