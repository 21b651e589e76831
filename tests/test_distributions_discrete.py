"""Discrete distributions and MixtureSameFamily, checked against scipy.stats and by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special as sp_special
from scipy import stats

import jppl.distributions as dist

RTOL, ATOL = 2e-4, 2e-4


_jit_log_prob = jax.jit(lambda d, value: d.log_prob(value))


def _lp(d, value):
    """``d.log_prob(value)`` as numpy, compiled as one program (cheaper than op-by-op)."""
    return np.asarray(_jit_log_prob(d, jnp.asarray(value)))


# -- log_prob against scipy ------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.0, 0.03, 0.5, 0.97, 1.0])
def test_bernoulli_log_prob(p):
    x = np.array([0, 1])
    expected = stats.bernoulli(p).logpmf(x)
    np.testing.assert_allclose(_lp(dist.Bernoulli(probs=p), x), expected, rtol=RTOL, atol=ATOL)
    if 0 < p < 1:
        d = dist.Bernoulli(logits=sp_special.logit(p))
        np.testing.assert_allclose(_lp(d, x), expected, rtol=RTOL, atol=ATOL)


def test_bernoulli_extreme_logits_stable():
    d = dist.Bernoulli(logits=jnp.array([-200.0, 200.0]))
    np.testing.assert_allclose(_lp(d, [0, 1]), [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(_lp(d, [1, 0]), [-200.0, -200.0], rtol=1e-6)


def test_bernoulli_logits_derivatives_match_closed_form():
    """The hand-written JVP (jppl.distributions.fused) for logits z: d/dz = x - sigmoid(z),
    d/dx = z, d2/dz2 = -sigmoid(z) (1 - sigmoid(z)), checked in float64 by scipy's expit;
    also under broadcasting of a (5, 1) value against (4,) logits, and against finite
    differences."""
    logits = np.array([-30.0, -2.5, 0.0, 3.7], np.float32)
    x = np.array([[0], [1], [1], [0], [1]], np.float32)

    def total(z, v):
        return jnp.sum(dist.Bernoulli(logits=z).log_prob(v))

    g_l, g_x = jax.jit(jax.grad(total, argnums=(0, 1)))(jnp.asarray(logits), jnp.asarray(x))
    sig = sp_special.expit(logits.astype(np.float64))
    np.testing.assert_allclose(g_l, np.sum(x - sig, axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g_x, np.sum(np.broadcast_to(logits, (5, 4)), 1, keepdims=True))
    hess = jax.jit(jax.hessian(lambda z: total(z, jnp.asarray(x))))(jnp.asarray(logits))
    np.testing.assert_allclose(np.diag(hess), -5 * sig * (1 - sig), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(hess - np.diag(np.diag(hess)), 0.0)
    # forward and reverse mode agree with central differences of the value in float64
    lp64 = lambda z: np.sum(stats.bernoulli(sp_special.expit(z)).logpmf(x))  # noqa: E731
    eps = 1e-4
    fd = [
        (lp64(logits + eps * e) - lp64(logits - eps * e)) / (2 * eps)
        for e in np.eye(4, dtype=np.float64)
    ]
    np.testing.assert_allclose(g_l, fd, rtol=1e-4, atol=1e-4)
    _, tangent = jax.jvp(lambda z: total(z, jnp.asarray(x)), (jnp.asarray(logits),), (jnp.ones(4),))
    np.testing.assert_allclose(tangent, np.sum(fd), rtol=1e-4)


def test_bernoulli_logits_derivative_zero_off_support_and_at_infinite_logits():
    logits = jnp.array([1.0, 1.0, jnp.inf, -jnp.inf, jnp.inf, 0.0])
    x = jnp.array([0.5, 2.0, 1.0, 1.0, 0.0, 1.0])
    lp, tangent = jax.jvp(
        lambda z, v: dist.Bernoulli(logits=z).log_prob(v), (logits, x), (jnp.ones(6), jnp.ones(6))
    )
    expected = np.array([-np.inf, -np.inf, 0.0, -np.inf, -np.inf, -np.log(2.0)], np.float32)
    np.testing.assert_array_equal(lp, expected)
    # off the support or at an infinite logit every derivative is 0 (no NaN); at z = 0, x = 1:
    # d/dz = 1 - sigmoid(0) = 0.5 and d/dx = z = 0
    np.testing.assert_array_equal(tangent, [0.0, 0.0, 0.0, 0.0, 0.0, 0.5])


def test_broadcasting_values_against_batch():
    probs = np.array([0.1, 0.5, 0.8])
    d = dist.Bernoulli(probs=probs)
    x = np.array([0, 1, 1, 0, 1])[:, None]  # (5, 1)
    lp = _lp(d, x)
    assert lp.shape == (5, 3)
    np.testing.assert_allclose(lp, stats.bernoulli(probs).logpmf(x), rtol=RTOL, atol=ATOL)
    x53 = np.random.default_rng(0).integers(0, 2, (5, 3))
    np.testing.assert_allclose(
        _lp(d, x53), stats.bernoulli(probs).logpmf(x53), rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize("n", [1, 7, 40])
@pytest.mark.parametrize("p", [0.05, 0.5, 0.9])
def test_binomial_log_prob(n, p):
    x = np.arange(n + 1)
    expected = stats.binom(n, p).logpmf(x)
    np.testing.assert_allclose(_lp(dist.Binomial(n, probs=p), x), expected, rtol=RTOL, atol=ATOL)
    d = dist.Binomial(n, logits=sp_special.logit(p))
    np.testing.assert_allclose(_lp(d, x), expected, rtol=RTOL, atol=ATOL)
    d = dist.Binomial(jnp.array(n), probs=p)  # array total_count
    np.testing.assert_allclose(_lp(d, x), expected, rtol=RTOL, atol=ATOL)


def test_binomial_batch_broadcast():
    n = np.array([[3], [10]])  # (2, 1)
    p = np.array([0.2, 0.5, 0.7])  # (3,)
    d = dist.Binomial(n, probs=p)
    assert d.batch_shape == (2, 3)
    x = np.array([0, 1, 3])[:, None, None]  # (3, 1, 1)
    np.testing.assert_allclose(_lp(d, x), stats.binom(n, p).logpmf(x), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.asarray(d.mean), n * p * np.ones((2, 3)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(d.variance), n * p * (1 - p), rtol=1e-6)


@pytest.mark.parametrize("rate", [0.01, 1.0, 4.5, 80.0])
def test_poisson_log_prob_and_cdf(rate):
    x = np.arange(0, 150, 3)
    d = dist.Poisson(rate)
    np.testing.assert_allclose(_lp(d, x), stats.poisson(rate).logpmf(x), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(
        np.asarray(d.cdf(jnp.array([-1.0, 0.0, 2.5, 7.0]))),
        stats.poisson(rate).cdf([-1.0, 0.0, 2.5, 7.0]),
        rtol=1e-4,
        atol=1e-6,
    )


@pytest.mark.parametrize("p", [0.02, 0.3, 0.9, 1.0])
def test_geometric_log_prob(p):
    x = np.arange(0, 30)
    expected = stats.geom(p, loc=-1).logpmf(x)  # failures before the first success
    np.testing.assert_allclose(_lp(dist.Geometric(probs=p), x), expected, rtol=RTOL, atol=ATOL)
    if p < 1:
        d = dist.Geometric(logits=sp_special.logit(p))
        np.testing.assert_allclose(_lp(d, x), expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("conc", [0.3, 2.0, 25.0])
@pytest.mark.parametrize("rate", [0.1, 1.0, 7.0])
def test_gamma_poisson_family_log_prob(conc, rate):
    x = np.arange(0, 60, 2)
    expected = stats.nbinom(n=conc, p=rate / (1 + rate)).logpmf(x)
    d = dist.GammaPoisson(conc, rate)
    np.testing.assert_allclose(_lp(d, x), expected, rtol=RTOL, atol=ATOL)
    d = dist.NegativeBinomial2(mean=conc / rate, concentration=conc)
    np.testing.assert_allclose(_lp(d, x), expected, rtol=RTOL, atol=ATOL)
    # NegativeBinomialProbs counts with probability `probs`: p_scipy = 1 - probs.
    probs = 1.0 / (1.0 + rate)
    d = dist.NegativeBinomial(conc, probs=probs)
    np.testing.assert_allclose(_lp(d, x), expected, rtol=RTOL, atol=ATOL)
    d = dist.NegativeBinomial(conc, logits=sp_special.logit(probs))
    np.testing.assert_allclose(_lp(d, x), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(float(d.mean), conc / rate, rtol=1e-4)


def test_negative_binomial2_at_mean_zero_is_the_point_mass_at_zero():
    """mean = 0 (an exp that underflowed) is the limit of the family, not inf - inf = NaN:
    log p(0) = 0, log p(k > 0) = -inf, with the textbook derivative d/dm log p(0) =
    -c / (c + m) = -1; the zero-inflated form inherits it."""
    k = jnp.array([0, 1, 5])
    d = dist.NegativeBinomial2(jnp.zeros(3), 2.0)
    lp = np.asarray(d.log_prob(k))  # float32: log p(0) = 0 up to gammaln's rounding
    np.testing.assert_allclose(lp[0], 0.0, atol=1e-6)
    assert np.all(lp[1:] == -np.inf)
    assert float(jax.grad(lambda m: dist.NegativeBinomial2(m, 2.0).log_prob(0))(0.0)) == -1.0
    assert float(d.mean[0]) == 0.0 and float(d.variance[0]) == 0.0
    z = dist.ZeroInflatedNegativeBinomial2(jnp.zeros(2), 2.0, gate=0.3)
    np.testing.assert_allclose(np.asarray(z.log_prob(jnp.array([0, 0]))), 0.0, atol=1e-6)
    # and the derivative in m away from 0 is x / m - (c + x) / (c + m)
    g = jax.grad(lambda m: dist.NegativeBinomial2(m, 2.0).log_prob(3))(1.3)
    np.testing.assert_allclose(float(g), 3 / 1.3 - 5 / 3.3, rtol=1e-5)


@pytest.mark.parametrize("a, b", [(0.5, 0.5), (2.0, 5.0), (30.0, 3.0)])
@pytest.mark.parametrize("n", [1, 12])
def test_beta_binomial_log_prob(a, b, n):
    x = np.arange(n + 1)
    d = dist.BetaBinomial(a, b, n)
    np.testing.assert_allclose(_lp(d, x), stats.betabinom(n, a, b).logpmf(x), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(float(d.mean), stats.betabinom(n, a, b).mean(), rtol=1e-5)
    np.testing.assert_allclose(float(d.variance), stats.betabinom(n, a, b).var(), rtol=1e-5)


def test_multinomial_log_prob():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(4), size=3)  # batch (3,), K = 4
    n = 9
    x = rng.multinomial(n, p[0], size=(5, 1))  # (5, 1, 4) broadcasts against batch (3,)
    expected = np.stack([stats.multinomial(n, pi).logpmf(x[:, 0]) for pi in p], axis=-1)
    d = dist.Multinomial(n, probs=p)
    assert (d.batch_shape, d.event_shape) == ((3,), (4,))
    np.testing.assert_allclose(_lp(d, x), expected, rtol=RTOL, atol=ATOL)
    d = dist.Multinomial(n, logits=np.log(p) + 3.0)  # unnormalized logits
    np.testing.assert_allclose(_lp(d, x), expected, rtol=RTOL, atol=ATOL)
    d = dist.Multinomial(jnp.array([n, n, n]), probs=p)
    np.testing.assert_allclose(_lp(d, x), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.asarray(d.mean), n * p, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(d.variance), n * p * (1 - p), rtol=1e-5)


def test_multinomial_zero_prob_category():
    d = dist.Multinomial(5, probs=jnp.array([0.0, 0.4, 0.6]))
    np.testing.assert_allclose(
        _lp(d, [0, 2, 3]), stats.multinomial(5, [0.0, 0.4, 0.6]).logpmf([0, 2, 3]), rtol=RTOL
    )
    assert _lp(d, [1, 1, 3]) == -np.inf


def test_categorical_log_prob():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(5), size=(2, 3))  # batch (2, 3), K = 5
    x = rng.integers(0, 5, size=(4, 2, 3))
    expected = np.log(np.take_along_axis(p[None], x[..., None], axis=-1)[..., 0])
    np.testing.assert_allclose(_lp(dist.Categorical(probs=p), x), expected, rtol=RTOL, atol=ATOL)
    d = dist.Categorical(logits=np.log(p) - 1.7)
    np.testing.assert_allclose(_lp(d, x), expected, rtol=RTOL, atol=ATOL)
    # A value of shape (4, 1, 1) broadcasts against the batch.
    x2 = np.arange(4)[:, None, None]
    assert _lp(d, x2).shape == (4, 2, 3)
    np.testing.assert_allclose(_lp(d, x2), np.log(np.moveaxis(p[..., :4], -1, 0)), rtol=RTOL)


@pytest.mark.parametrize("gate", [0.0, 0.3, 0.95])
@pytest.mark.parametrize("rate", [0.5, 6.0])
def test_zero_inflated_poisson_log_prob(gate, rate):
    x = np.arange(0, 25)
    expected = np.log(gate * (x == 0) + (1 - gate) * stats.poisson(rate).pmf(x))
    d = dist.ZeroInflatedPoisson(gate, rate)
    np.testing.assert_allclose(_lp(d, x), expected, rtol=RTOL, atol=ATOL)
    if gate > 0:
        d = dist.ZeroInflatedDistribution(dist.Poisson(rate), gate_logits=sp_special.logit(gate))
        np.testing.assert_allclose(_lp(d, x), expected, rtol=RTOL, atol=ATOL)
    d = dist.ZeroInflatedPoisson(gate, rate)
    mean = (1 - gate) * rate
    np.testing.assert_allclose(float(d.mean), mean, rtol=1e-5)
    var = (1 - gate) * (rate + rate**2) - mean**2
    np.testing.assert_allclose(float(d.variance), var, rtol=1e-5)


def test_zero_inflated_generic_binomial():
    d = dist.ZeroInflatedDistribution(dist.Binomial(6, probs=jnp.array([0.2, 0.6])), gate=0.25)
    x = np.arange(7)[:, None]
    expected = np.log(0.25 * (x == 0) + 0.75 * stats.binom(6, [0.2, 0.6]).pmf(x))
    np.testing.assert_allclose(_lp(d, x), expected, rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="exactly one"):
        dist.ZeroInflatedDistribution(dist.Poisson(1.0))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's randint stats at low == high
@pytest.mark.parametrize("low, high", [(0, 1), (-3, 4), (2, 2)])
def test_discrete_uniform_log_prob(low, high):
    x = np.arange(low - 2, high + 3)
    d = dist.DiscreteUniform(low, high)
    expected = stats.randint(low, high + 1).logpmf(x)
    np.testing.assert_allclose(_lp(d, x), expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(float(d.mean), stats.randint(low, high + 1).mean(), rtol=1e-6)
    np.testing.assert_allclose(
        float(d.variance), stats.randint(low, high + 1).var(), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(float(d.entropy()), stats.randint(low, high + 1).entropy())


# -- support handling and value dtypes -------------------------------------------------------
OUT_OF_SUPPORT = [
    (lambda: dist.Bernoulli(probs=0.3), [-1, 2, 0.5]),
    (lambda: dist.Bernoulli(logits=0.3), [-1, 2, 0.5]),
    (lambda: dist.Categorical(probs=jnp.array([0.2, 0.8])), [-1, 2, 0.5]),
    (lambda: dist.Categorical(logits=jnp.zeros(3)), [-1, 3, 1.5]),
    (lambda: dist.Binomial(4, probs=0.3), [-1, 5, 1.5]),
    (lambda: dist.Binomial(4, logits=0.3), [-1, 5, 1.5]),
    (lambda: dist.Poisson(2.0), [-1, -0.5, 2.5]),
    (lambda: dist.Geometric(probs=0.4), [-1, 0.5]),
    (lambda: dist.Geometric(logits=0.4), [-1, 0.5]),
    (lambda: dist.GammaPoisson(2.0, 1.0), [-1, 0.5]),
    (lambda: dist.NegativeBinomial2(3.0, 2.0), [-2, 1.5]),
    (lambda: dist.NegativeBinomial(3.0, probs=0.2), [-2, 1.5]),
    (lambda: dist.NegativeBinomial(3.0, logits=0.2), [-2, 1.5]),
    (lambda: dist.BetaBinomial(2.0, 3.0, 5), [-1, 6, 2.5]),
    (lambda: dist.ZeroInflatedPoisson(0.3, 2.0), [-1, 2.5]),
    (lambda: dist.DiscreteUniform(-1, 3), [-2, 4, 0.5]),
]


@pytest.mark.parametrize("make, bad", OUT_OF_SUPPORT)
def test_log_prob_outside_support_is_neg_inf(make, bad):
    d = make()
    lp = _lp(d, np.array(bad, dtype=np.float32))
    assert np.all(lp == -np.inf), lp


@pytest.mark.parametrize("make, bad", OUT_OF_SUPPORT)
def test_log_prob_int_and_float_values_agree(make, bad):
    d = make()
    x = np.array([0, 1])
    np.testing.assert_allclose(_lp(d, x.astype(np.int32)), _lp(d, x.astype(np.float32)))


def test_multinomial_outside_support():
    d = dist.Multinomial(4, probs=jnp.array([0.2, 0.3, 0.5]))
    bad = np.array([[1, 1, 1], [5, -1, 0], [2, 1.5, 0.5]])
    assert np.all(_lp(d, bad) == -np.inf)


# -- probs and logits forms ------------------------------------------------------------------
@pytest.mark.parametrize(
    "factory, extra",
    [
        (dist.Bernoulli, {}),
        (dist.Binomial, {"total_count": 5}),
        (dist.Geometric, {}),
    ],
)
def test_probs_and_logits_forms_agree(factory, extra):
    p = jnp.array([0.1, 0.45, 0.8])
    dp = factory(probs=p, **extra)
    dl = factory(logits=jnp.log(p) - jnp.log1p(-p), **extra)
    x = jnp.arange(4)[:, None]
    np.testing.assert_allclose(_lp(dp, x), _lp(dl, x), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.asarray(dp.logits), np.asarray(dl.logits), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(dp.probs), np.asarray(dl.probs), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(dp.mean), np.asarray(dl.mean), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(dp.variance), np.asarray(dl.variance), rtol=1e-5)


def test_categorical_probs_logits_properties():
    p = jnp.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    dl = dist.Categorical(logits=jnp.log(p) + 4.0)
    np.testing.assert_allclose(np.asarray(dl.probs), np.asarray(p), rtol=1e-5)
    dp = dist.Categorical(probs=p)
    np.testing.assert_allclose(np.asarray(dp.logits), np.log(np.asarray(p)), rtol=1e-5)
    ent = stats.entropy(np.asarray(p), axis=-1)
    np.testing.assert_allclose(np.asarray(dp.entropy()), ent, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(dl.entropy()), ent, rtol=1e-5)


@pytest.mark.parametrize("p", [0.2, 0.7])
def test_entropies(p):
    for d in (dist.Bernoulli(probs=p), dist.Bernoulli(logits=sp_special.logit(p))):
        np.testing.assert_allclose(float(d.entropy()), stats.bernoulli(p).entropy(), rtol=1e-5)
    np.testing.assert_allclose(
        float(dist.Geometric(probs=p).entropy()), stats.geom(p).entropy(), rtol=1e-5
    )


# -- sampling --------------------------------------------------------------------------------
N_DRAWS = 20000

# Every batch shape here is (3,) so that the compiled samplers (binomial, poisson, gamma, ...)
# are shared between distributions; compilation dominates the cost of these tests.
SAMPLED = [
    lambda: dist.Bernoulli(probs=jnp.array([0.05, 0.5, 0.9])),
    lambda: dist.Bernoulli(logits=jnp.array([-2.0, 0.0, 3.0])),
    lambda: dist.Binomial(10, probs=jnp.array([0.1, 0.5, 0.95])),
    lambda: dist.Binomial(jnp.array([1, 5, 30]), logits=jnp.array([-1.0, 0.5, 2.0])),
    lambda: dist.Multinomial(
        jnp.array([0, 3, 20]), probs=jnp.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0], [0.3, 0.3, 0.4]])
    ),
    lambda: dist.Geometric(probs=jnp.array([0.1, 0.5, 1.0])),
    lambda: dist.Geometric(logits=jnp.array([-1.0, 2.0, 0.0])),
    lambda: dist.Poisson(jnp.array([0.2, 3.0, 50.0])),
    lambda: dist.GammaPoisson(jnp.array([0.7, 4.0, 4.0]), jnp.array([0.5, 2.0, 0.1])),
    lambda: dist.NegativeBinomial2(jnp.array([1.5, 10.0, 0.3]), 3.0),
    lambda: dist.NegativeBinomial(4.0, probs=jnp.array([0.2, 0.6, 0.9])),
    lambda: dist.NegativeBinomial(4.0, logits=jnp.array([-0.5, 1.0, 0.0])),
    lambda: dist.BetaBinomial(jnp.array([0.5, 2.0, 10.0]), 2.0, 8),
    lambda: dist.ZeroInflatedPoisson(jnp.array([0.2, 0.7, 0.0]), jnp.array([3.0, 9.0, 1.0])),
    lambda: dist.ZeroInflatedDistribution(
        dist.Binomial(5, probs=0.5), gate_logits=jnp.array([-1.0, 1.0, 0.0])
    ),
    lambda: dist.DiscreteUniform(jnp.array([0, -3, 2]), 4),
]


@jax.jit
def _draw(d, key):
    """``N_DRAWS`` draws, whether each is in the support, and the log density of the first 50,
    as one compiled program (eager sampling compiles every op of the sampler apart)."""
    x = d.sample(key, (N_DRAWS,))
    return x, d.support(x), d.log_prob(x[:50])


@pytest.mark.parametrize("make", SAMPLED)
def test_sample_shape_support_and_moments(make):
    d = make()
    x, in_support, lp = _draw(d, jax.random.key(3))
    assert x.shape == (N_DRAWS,) + d.batch_shape + d.event_shape
    assert x.dtype == jnp.int32
    assert np.all(np.asarray(in_support))
    assert np.all(np.isfinite(np.asarray(lp)))
    xs = np.asarray(x, dtype=np.float64)
    mean, var = np.asarray(d.mean, np.float64), np.asarray(d.variance, np.float64)
    assert mean.shape == var.shape == d.batch_shape + d.event_shape
    se_mean = np.sqrt(var / N_DRAWS) + 1e-9
    np.testing.assert_array_less(np.abs(xs.mean(0) - mean), 5 * se_mean + 1e-6)
    dev2 = (xs - xs.mean(0)) ** 2
    se_var = np.sqrt(dev2.var(0) / N_DRAWS)
    np.testing.assert_array_less(np.abs(dev2.mean(0) - var), 5 * se_var + 1e-3 * var + 1e-6)
    if isinstance(d, dist.MultinomialProbs):
        np.testing.assert_array_equal(x.sum(-1), np.broadcast_to(d.total_count, x.shape[:-1]))
        assert np.all(x[:, 1, 2] == 0)  # zero-probability category


def test_sample_with_raw_prng_key_and_shapes():
    d = dist.Bernoulli(probs=jnp.array([[0.1, 0.5, 0.9], [0.2, 0.3, 0.4]]))
    x = d.sample(jax.random.PRNGKey(0), (4, 5))
    assert x.shape == (4, 5, 2, 3) and x.dtype == jnp.int32
    assert dist.Categorical(probs=jnp.ones((2, 3)) / 3).sample(jax.random.PRNGKey(1)).shape == (2,)
    assert dist.Geometric(probs=0.5).sample(jax.random.key(0)).shape == ()
    assert dist.Geometric(probs=0.5).sample(jax.random.PRNGKey(0), (2,)).shape == (2,)


def test_categorical_sample_frequencies():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    for d in (dist.Categorical(probs=p), dist.Categorical(logits=np.log(p))):
        x = np.asarray(d.sample(jax.random.key(5), (N_DRAWS,)))
        assert x.dtype == np.int32
        freq = np.bincount(x, minlength=4) / N_DRAWS
        np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / N_DRAWS))


# -- enumerate_support -----------------------------------------------------------------------
def test_enumerate_support():
    d = dist.Bernoulli(probs=jnp.full((2, 3), 0.3))
    assert d.has_enumerate_support
    v = d.enumerate_support(expand=False)
    np.testing.assert_array_equal(v, np.array([0, 1])[:, None, None])
    assert d.enumerate_support().shape == (2, 2, 3)

    d = dist.Categorical(logits=jnp.zeros((4, 5)))
    v = d.enumerate_support()
    assert v.shape == (5, 4)
    np.testing.assert_array_equal(v[:, 0], np.arange(5))
    assert d.enumerate_support(expand=False).shape == (5, 1)

    for n in (4, jnp.array([4, 4, 4])):
        d = dist.Binomial(n, probs=jnp.array([0.1, 0.2, 0.3]))
        np.testing.assert_array_equal(d.enumerate_support(expand=False)[:, 0], np.arange(5))
        assert d.enumerate_support().shape == (5, 3)
    with pytest.raises(NotImplementedError):
        dist.Binomial(jnp.array([2, 3]), probs=0.5).enumerate_support()

    d = dist.BetaBinomial(1.0, 2.0, 3)
    np.testing.assert_array_equal(d.enumerate_support(), np.arange(4))

    d = dist.DiscreteUniform(-2, 1).expand([3])
    v = d.enumerate_support()
    assert v.shape == (4, 3)
    np.testing.assert_array_equal(v[:, 1], np.arange(-2, 2))

    # enumerated values have total probability one
    for d in (
        dist.Binomial(6, logits=jnp.array([-1.0, 2.0])),
        dist.Categorical(probs=jnp.array([[0.2, 0.8], [0.5, 0.5]])),
        dist.BetaBinomial(jnp.array([0.5, 3.0]), 2.0, 6),
    ):
        lp = d.log_prob(d.enumerate_support())
        np.testing.assert_allclose(np.exp(lp).sum(0), 1.0, rtol=1e-5)


def test_enumerate_support_under_jit():
    @jax.jit
    def total(p):
        d = dist.Binomial(5, probs=p)
        return jnp.exp(d.log_prob(d.enumerate_support())).sum(0)

    np.testing.assert_allclose(np.asarray(total(jnp.array([0.3, 0.6]))), [1.0, 1.0], rtol=1e-5)


# -- validation ------------------------------------------------------------------------------
def test_validation_errors():
    with pytest.raises(ValueError, match="probs"):
        dist.Bernoulli(probs=1.5, validate_args=True)
    with pytest.raises(ValueError, match="probs"):
        dist.Categorical(probs=jnp.array([0.5, 0.6]), validate_args=True)
    with pytest.raises(ValueError, match="rate"):
        dist.Poisson(-1.0, validate_args=True)
    with pytest.raises(ValueError, match="total_count"):
        dist.Binomial(-2, probs=0.3, validate_args=True)
    with pytest.raises(ValueError, match="mean"):
        dist.NegativeBinomial2(-1.0, 2.0, validate_args=True)
    with pytest.raises(ValueError, match="gate"):
        dist.ZeroInflatedPoisson(1.2, 2.0, validate_args=True)
    dist.Bernoulli(probs=1.5)  # no validation by default
    dist.enable_validation()
    with pytest.raises(ValueError, match="concentration1"):
        dist.BetaBinomial(-1.0, 1.0, 3)


@pytest.mark.parametrize(
    "factory, extra",
    [
        (dist.Bernoulli, {}),
        (dist.Categorical, {}),
        (dist.Binomial, {"total_count": 3}),
        (dist.Multinomial, {"total_count": 3}),
        (dist.Geometric, {}),
        (dist.NegativeBinomial, {"total_count": 3.0}),
    ],
)
def test_exactly_one_of_probs_logits(factory, extra):
    with pytest.raises(ValueError, match="exactly one of `probs` or `logits`"):
        factory(**extra)
    with pytest.raises(ValueError, match="exactly one of `probs` or `logits`"):
        factory(probs=jnp.array([0.5, 0.5]), logits=jnp.zeros(2), **extra)


# -- pytrees: jit / vmap / grad --------------------------------------------------------------
def test_jit_and_vmap():
    d = dist.Binomial(jnp.array([3, 5]), logits=jnp.array([0.2, -0.4]))
    lp = jax.jit(lambda d, x: d.log_prob(x))(d, jnp.array([1, 2]))
    np.testing.assert_allclose(np.asarray(lp), _lp(d, [1, 2]), rtol=1e-6)
    cat = dist.Categorical(logits=jnp.zeros((3, 4)))
    s = jax.jit(lambda d, k: d.sample(k, (5,)))(cat, jax.random.key(0))
    assert s.shape == (5, 3)

    probs = jnp.array([0.1, 0.4, 0.9])
    out = jax.vmap(lambda p: dist.Bernoulli(probs=p).log_prob(1))(probs)
    np.testing.assert_allclose(np.asarray(out), np.log(probs), rtol=1e-6)

    batched = dist.Poisson(jnp.array([1.0, 2.0, 3.0]))
    means = jax.vmap(lambda d: d.mean)(batched)
    np.testing.assert_allclose(np.asarray(means), [1.0, 2.0, 3.0])

    lps = jax.vmap(lambda d, x: d.log_prob(x))(cat, jnp.array([0, 1, 3]))
    assert lps.shape == (3,)
    np.testing.assert_allclose(np.asarray(lps), np.log(0.25), rtol=1e-6)
    binom = dist.Binomial(5, probs=jnp.array([0.1, 0.2, 0.3]))
    out = jax.vmap(lambda d: (d.mean, d.variance, d.log_prob(2)))(binom)
    assert all(o.shape == (3,) for o in out)
    np.testing.assert_allclose(
        np.asarray(out[2]), stats.binom(5, [0.1, 0.2, 0.3]).logpmf(2), rtol=1e-5
    )


def test_batch_shape_follows_vmap_and_tree_map():
    """The batch shape is read off the parameters when JAX rebuilds a distribution."""
    key = jax.random.key(0)
    probs = jnp.array([0.1, 0.4, 0.9, 0.5])
    # built inside vmap and returned: the stacked axis becomes the batch
    bern = jax.vmap(lambda p: dist.Bernoulli(probs=p))(probs)
    assert bern.batch_shape == (4,) and bern.sample(key, (2,)).shape == (2, 4)
    assert bern.enumerate_support().shape == (2, 4)
    np.testing.assert_allclose(_lp(bern, jnp.ones((3, 1))), np.log([probs] * 3), rtol=1e-6)
    binom = jax.vmap(lambda p: dist.Binomial(6, probs=p))(probs)
    assert binom.batch_shape == (4,)
    np.testing.assert_allclose(_lp(binom, 2), stats.binom(6, probs).logpmf(2), rtol=1e-5)

    # mapped over: inside, the mapped axis is gone (the samplers read self.batch_shape)
    def inside(d, k):
        return d.sample(k), jnp.zeros(d.batch_shape + d.event_shape)

    @jax.jit
    def mapped(cat, ind, keys):
        return (
            jax.vmap(inside, in_axes=(1, 0))(cat, keys),  # the middle batch axis
            jax.vmap(inside, in_axes=(0, None))(ind, keys[0]),
        )

    cat = dist.Categorical(logits=jnp.zeros((4, 3, 5)))
    ind = dist.Bernoulli(probs=jnp.full((4, 3), 0.5)).to_event(1)  # wrappers follow the base
    (cat_draws, cat_zeros), (ind_draws, ind_zeros) = mapped(cat, ind, jax.random.split(key, 3))
    assert cat_draws.shape == cat_zeros.shape == (3, 4)
    assert ind_draws.shape == ind_zeros.shape == (4, 3)
    # jax.tree.map with a shape-changing function
    sliced = jax.tree.map(lambda x: x[:2], cat)
    assert sliced.batch_shape == (2, 3) and sliced.sample(key).shape == (2, 3)
    # JAX also rebuilds trees with placeholder leaves: the stored shape is kept then
    leaves, treedef = jax.tree.flatten(cat)
    assert jax.tree.unflatten(treedef, [object()] * len(leaves)).batch_shape == (4, 3)


def test_gradients_finite():
    def f(logits, conc):
        x = jnp.array([0.0, 3.0, 7.0])
        return (
            dist.Binomial(7, logits=logits).log_prob(x).sum()
            + dist.NegativeBinomial(conc, logits=logits).log_prob(x).sum()
            + dist.GammaPoisson(conc, jnp.exp(logits)).log_prob(x).sum()
            + dist.BetaBinomial(conc, 2.0, 7).log_prob(x).sum()
        )

    g = jax.jit(jax.grad(f, argnums=(0, 1)))(0.3, 2.0)
    assert all(np.isfinite(np.asarray(v)) for v in g)


# -- MixtureSameFamily -----------------------------------------------------------------------
def test_mixture_normal_log_prob_and_moments():
    w = np.array([0.2, 0.5, 0.3])
    loc, scale = np.array([-2.0, 0.0, 3.0]), np.array([0.5, 1.0, 2.0])
    mix = dist.MixtureSameFamily(dist.Categorical(probs=w), dist.Normal(loc, scale))
    assert (mix.batch_shape, mix.event_shape) == ((), ())
    x = np.linspace(-5, 8, 11)
    expected = np.log((w * stats.norm(loc, scale).pdf(x[:, None])).sum(-1))
    np.testing.assert_allclose(_lp(mix, x), expected, rtol=RTOL, atol=ATOL)
    mean = (w * loc).sum()
    var = (w * (scale**2 + loc**2)).sum() - mean**2
    np.testing.assert_allclose(float(mix.mean), mean, rtol=1e-5)
    np.testing.assert_allclose(float(mix.variance), var, rtol=1e-5)
    s = np.asarray(mix.sample(jax.random.key(0), (N_DRAWS,)), np.float64)
    assert s.shape == (N_DRAWS,)
    assert abs(s.mean() - mean) < 5 * np.sqrt(var / N_DRAWS)
    assert abs(s.var() - var) < 0.05 * var
    np.testing.assert_allclose(
        np.asarray(mix.cdf(jnp.asarray(x))),
        (w * stats.norm(loc, scale).cdf(x[:, None])).sum(-1),
        rtol=1e-4,
        atol=1e-6,
    )


def test_mixture_batched_with_logits_and_broadcast_mixing():
    rng = np.random.default_rng(3)
    loc = rng.normal(size=(2, 4))
    scale = rng.uniform(0.5, 2.0, size=(2, 4))
    logits = rng.normal(size=(4,))  # mixing batch () broadcasts against component batch (2,)
    mix = dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(loc, scale))
    assert mix.batch_shape == (2,)
    w = np.exp(logits) / np.exp(logits).sum()
    x = rng.normal(size=(5, 1))
    expected = np.log((w * stats.norm(loc, scale).pdf(x[..., None])).sum(-1))
    np.testing.assert_allclose(_lp(mix, x), expected, rtol=RTOL, atol=ATOL)
    s = mix.sample(jax.random.key(1), (3,))
    assert s.shape == (3, 2)
    mean = (w * loc).sum(-1)
    np.testing.assert_allclose(np.asarray(mix.mean), mean, rtol=1e-5)
    # any discrete event-less mixing distribution works, e.g. an expanded categorical
    mix2 = dist.MixtureSameFamily(
        dist.Categorical(logits=logits).expand((2,)), dist.Normal(loc, scale)
    )
    np.testing.assert_allclose(_lp(mix2, x), expected, rtol=RTOL, atol=ATOL)
    assert mix2.sample(jax.random.key(1), (3,)).shape == (3, 2)


def test_mixture_multivariate_components():
    rng = np.random.default_rng(4)
    k, dim = 3, 2
    w = np.array([0.3, 0.3, 0.4])
    loc = rng.normal(size=(k, dim)) * 3
    scale = rng.uniform(0.5, 1.5, size=(k, dim))
    comp = dist.Normal(loc, scale).to_event(1)  # batch (3,), event (2,)
    mix = dist.MixtureSameFamily(dist.Categorical(probs=w), comp)
    assert (mix.batch_shape, mix.event_shape) == ((), (dim,))
    x = rng.normal(size=(6, dim)) * 2
    dens = stats.norm(loc, scale).pdf(x[:, None, :]).prod(-1)  # (6, k)
    np.testing.assert_allclose(_lp(mix, x), np.log((w * dens).sum(-1)), rtol=RTOL, atol=ATOL)
    mean = (w[:, None] * loc).sum(0)
    var = (w[:, None] * (scale**2 + loc**2)).sum(0) - mean**2
    np.testing.assert_allclose(np.asarray(mix.mean), mean, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(mix.variance), var, rtol=1e-5)
    s = np.asarray(mix.sample(jax.random.key(2), (N_DRAWS,)), np.float64)
    assert s.shape == (N_DRAWS, dim)
    np.testing.assert_array_less(np.abs(s.mean(0) - mean), 5 * np.sqrt(var / N_DRAWS))
    np.testing.assert_array_less(np.abs(s.var(0) - var), 0.05 * var)


def test_mixture_multivariate_normal_components():
    if not hasattr(dist, "MultivariateNormal"):
        pytest.skip("MultivariateNormal not available")
    loc = jnp.array([[0.0, 0.0], [3.0, -1.0]])
    cov = jnp.array([[[1.0, 0.3], [0.3, 2.0]], [[0.5, 0.0], [0.0, 0.5]]])
    w = np.array([0.4, 0.6])
    mix = dist.MixtureSameFamily(
        dist.Categorical(probs=w), dist.MultivariateNormal(loc, covariance_matrix=cov)
    )
    x = np.array([[0.1, 0.2], [2.5, -1.5], [1.0, 1.0]])
    mvns = [stats.multivariate_normal(np.asarray(loc[i]), np.asarray(cov[i])) for i in range(2)]
    dens = np.stack([m.pdf(x) for m in mvns], axis=-1)
    np.testing.assert_allclose(_lp(mix, x), np.log((w * dens).sum(-1)), rtol=RTOL, atol=ATOL)
    assert mix.sample(jax.random.key(0), (4,)).shape == (4, 2)


def test_mixture_of_poissons_discrete():
    w = np.array([0.5, 0.3, 0.2])
    rate = np.array([1.0, 10.0, 4.0])
    mix = dist.MixtureSameFamily(dist.Categorical(probs=w), dist.Poisson(rate))
    assert mix.is_discrete
    x = np.arange(20)
    expected = np.log((w * stats.poisson(rate).pmf(x[:, None])).sum(-1))
    np.testing.assert_allclose(_lp(mix, x), expected, rtol=RTOL, atol=ATOL)
    s = mix.sample(jax.random.key(0), (N_DRAWS,))
    assert s.dtype == jnp.int32
    mean = (w * rate).sum()
    var = (w * (rate + rate**2)).sum() - mean**2
    np.testing.assert_allclose(float(mix.variance), var, rtol=1e-5)
    assert abs(float(np.asarray(s, np.float64).mean()) - mean) < 5 * np.sqrt(var / N_DRAWS)
    assert mix.support is mix.component_distribution.support


def test_mixture_jit_and_errors():
    mix = dist.MixtureSameFamily(
        dist.Categorical(logits=jnp.zeros(2)), dist.Normal(jnp.array([-1.0, 1.0]), 1.0)
    )
    lp = jax.jit(lambda m, x: m.log_prob(x))(mix, jnp.array([0.0, 0.5]))
    np.testing.assert_allclose(np.asarray(lp), _lp(mix, [0.0, 0.5]), rtol=1e-6)
    with pytest.raises(ValueError, match="categories"):
        dist.MixtureSameFamily(
            dist.Categorical(logits=jnp.zeros(3)), dist.Normal(jnp.zeros(2), 1.0)
        )
    with pytest.raises(ValueError):
        dist.MixtureSameFamily(dist.Normal(0.0, 1.0), dist.Normal(jnp.zeros(2), 1.0))


def test_betaln_is_accurate_in_float64():
    """jax.scipy.special.betaln is off by up to 3.5e-7 relative in float64 (JAX 0.10-0.11);
    Beta, BetaBinomial and their KL use jppl's betaln, checked here against SciPy."""
    from scipy.special import betaln as scipy_betaln

    from jppl.distributions.util import betaln
    from jppl.util import enable_x64

    enable_x64(True)
    try:
        a, b = np.meshgrid(np.linspace(0.05, 60.0, 41), np.linspace(0.05, 60.0, 41))
        got = np.asarray(betaln(jnp.asarray(a), jnp.asarray(b)))
        np.testing.assert_allclose(got, scipy_betaln(a, b), rtol=2e-12, atol=1e-12)
        # large arguments: the log-gammas (~3e7) leave ~1e-8 absolute either way
        a, b = np.meshgrid([0.5, 3.0, 1e3, 5e4, 2e6], [0.5, 3.0, 1e3, 5e4, 2e6])
        got = np.asarray(betaln(jnp.asarray(a), jnp.asarray(b)))
        np.testing.assert_allclose(got, scipy_betaln(a, b), rtol=1e-9)
    finally:
        enable_x64(False)
