"""handlers.collapse: latents integrated out by conjugacy into one factor site.

Each closed form is checked against SciPy or numerical integration of prior x likelihood.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import betaln, gammaln

import jppl
import jppl.distributions as dist
from jppl import handlers, param, plate, sample
from jppl.distributions import constraints
from jppl.infer import MCMC, NUTS, SVI, Trace_ELBO
from jppl.infer.autoguide import AutoDelta


def _factor(model, *args):
    """The collapse factor's value and the trace of ``model``."""
    tr = handlers.trace(handlers.seed(model, 0)).get_trace(*args)
    sites = [s for s in tr.values() if s["type"] == "sample"]
    assert len(sites) == 1, list(tr)
    site = sites[0]
    return np.asarray(site["fn"].log_prob(site["value"]), np.float64), tr


def _quad_beta(a, b, loglik):
    """log of the integral over p of Beta(p; a, b) * exp(loglik(p))."""
    val, _ = integrate.quad(
        lambda p: np.exp(stats.beta(a, b).logpdf(p) + loglik(p)), 0, 1, epsabs=0, epsrel=1e-10
    )
    return np.log(val)


def test_beta_binomial_one_observation_is_betabinomial():
    def model():
        with handlers.collapse():
            p = sample("probs", dist.Beta(0.5, 1.5))
            sample("obs", dist.Binomial(10, p), obs=3.0)

    value, tr = _factor(model)
    assert list(tr) == ["probs"]
    np.testing.assert_allclose(value, stats.betabinom(10, 0.5, 1.5).logpmf(3), rtol=1e-5)
    quad = _quad_beta(0.5, 1.5, lambda p: stats.binom(10, p).logpmf(3))
    np.testing.assert_allclose(value, quad, rtol=1e-5)


def test_beta_binomial_several_observations_of_one_latent():
    n = jnp.array([10.0, 4.0, 7.0])
    k = jnp.array([3.0, 4.0, 0.0])

    def model():
        with handlers.collapse():
            p = sample("probs", dist.Beta(2.0, 3.0))
            with plate("N", 3):
                sample("obs", dist.Binomial(n, p), obs=k)

    value, _ = _factor(model)
    nn, kk = np.asarray(n), np.asarray(k)
    closed = (
        betaln(2 + kk.sum(), 3 + (nn - kk).sum())
        - betaln(2, 3)
        + np.sum(gammaln(nn + 1) - gammaln(kk + 1) - gammaln(nn - kk + 1))
    )
    quad = _quad_beta(2.0, 3.0, lambda p: stats.binom(nn, p).logpmf(kk).sum())
    np.testing.assert_allclose(value, closed, rtol=1e-5)
    np.testing.assert_allclose(value, quad, rtol=1e-5)


def test_beta_bernoulli_two_sites_share_the_latent():
    data = jnp.array([1.0, 0.0, 1.0, 1.0])

    def model():
        with handlers.collapse():
            p = sample("p", dist.Beta(1.5, 2.5))
            with plate("N", 4):
                sample("a", dist.Bernoulli(p), obs=data)
            sample("b", dist.Binomial(5, p), obs=2.0)

    value, _ = _factor(model)
    quad = _quad_beta(
        1.5,
        2.5,
        lambda p: stats.bernoulli(p).logpmf(np.asarray(data)).sum() + stats.binom(5, p).logpmf(2),
    )
    np.testing.assert_allclose(value, quad, rtol=1e-5)


def test_gamma_poisson():
    counts = jnp.array([0.0, 3.0, 5.0, 1.0])

    def one():
        with handlers.collapse():
            lam = sample("lam", dist.Gamma(2.5, 0.7))
            sample("obs", dist.Poisson(lam), obs=4.0)

    def many():
        with handlers.collapse():
            lam = sample("lam", dist.Gamma(2.5, 0.7))
            with plate("N", 4):
                sample("obs", dist.Poisson(lam), obs=counts)

    # GammaPoisson(a, b) is a negative binomial with r = a, success probability b / (1 + b).
    value, _ = _factor(one)
    np.testing.assert_allclose(value, stats.nbinom(2.5, 0.7 / 1.7).logpmf(4), rtol=1e-5)

    def integrand(lam):
        return np.exp(
            stats.gamma(2.5, scale=1 / 0.7).logpdf(lam)
            + stats.poisson(lam).logpmf(np.asarray(counts)).sum()
        )

    quad = np.log(integrate.quad(integrand, 0, np.inf, epsabs=0, epsrel=1e-10)[0])
    value, _ = _factor(many)
    np.testing.assert_allclose(value, quad, rtol=1e-5)


def test_normal_normal_known_scales():
    x = jnp.array([0.3, 1.7, -0.4])
    sigma = jnp.array([0.5, 1.0, 2.0])

    def model():
        with handlers.collapse():
            mu = sample("mu", dist.Normal(1.0, 1.5))
            with plate("N", 3):
                sample("obs", dist.Normal(mu, sigma), obs=x)

    value, _ = _factor(model)
    # Jointly x ~ MVN(1, diag(sigma^2) + 1.5^2).
    cov = np.diag(np.asarray(sigma) ** 2) + 1.5**2
    mvn = stats.multivariate_normal(np.ones(3), cov).logpdf(np.asarray(x))
    np.testing.assert_allclose(value, mvn, rtol=1e-5)

    def integrand(m):
        return np.exp(
            stats.norm(1.0, 1.5).logpdf(m) + stats.norm(m, sigma).logpdf(np.asarray(x)).sum()
        )

    quad = np.log(integrate.quad(integrand, -np.inf, np.inf, epsabs=0, epsrel=1e-10)[0])
    np.testing.assert_allclose(value, quad, rtol=1e-5)


def _dirichlet_integral(alpha, loglik):
    """log of the integral over the 3-simplex of Dirichlet(alpha) * exp(loglik(p))."""
    d = stats.dirichlet(alpha)

    def f(p2, p1):
        p = np.array([p1, p2, max(1.0 - p1 - p2, 1e-300)])
        return np.exp(d.logpdf(p / p.sum()) + loglik(p))

    val, _ = integrate.dblquad(f, 0, 1, 0, lambda p1: 1 - p1, epsabs=0, epsrel=1e-9)
    return np.log(val)


def test_dirichlet_categorical():
    alpha = np.array([1.5, 2.0, 3.0])
    data = jnp.array([0, 2, 2, 1, 2])

    def model():
        with handlers.collapse():
            p = sample("p", dist.Dirichlet(jnp.asarray(alpha)))
            with plate("N", 5):
                sample("obs", dist.Categorical(p), obs=data)

    value, _ = _factor(model)
    quad = _dirichlet_integral(alpha, lambda p: np.log(p[np.asarray(data)]).sum())
    np.testing.assert_allclose(value, quad, rtol=1e-5)


def test_dirichlet_multinomial():
    alpha = np.array([0.7, 2.0, 1.2])
    counts = np.array([3.0, 1.0, 4.0])

    def model():
        with handlers.collapse():
            p = sample("p", dist.Dirichlet(jnp.asarray(alpha)))
            sample("obs", dist.Multinomial(8, p), obs=jnp.asarray(counts))

    value, _ = _factor(model)
    expected = stats.dirichlet_multinomial(alpha, 8).logpmf(counts)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    quad = _dirichlet_integral(alpha, lambda p: stats.multinomial(8, p).logpmf(counts))
    np.testing.assert_allclose(value, quad, rtol=1e-5)


def test_elementwise_latents_keep_outer_plate_dims():
    # Three groups (an outer plate): one Beta latent per group, four Binomial draws each.
    a = np.array([1.0, 2.0, 0.5])
    data = jnp.array([[1.0, 4.0, 0.0], [2.0, 5.0, 1.0], [0.0, 3.0, 2.0], [3.0, 5.0, 0.0]])

    def model():
        with plate("G", 3):
            with handlers.collapse():
                p = sample("p", dist.Beta(jnp.asarray(a), 2.0))
                with plate("N", 4, dim=-2):
                    sample("obs", dist.Binomial(5, p), obs=data)

    value, tr = _factor(model)
    assert value.shape == (3,)
    assert [f.name for f in tr["p"]["cond_indep_stack"]] == ["G"]
    for g in range(3):
        quad = _quad_beta(a[g], 2.0, lambda p, g=g: stats.binom(5, p).logpmf(data[:, g]).sum())
        np.testing.assert_allclose(value[g], quad, rtol=1e-5)

    # The same plate inside the block is summed out.
    def inner():
        with handlers.collapse():
            with plate("G", 3):
                p = sample("p", dist.Beta(jnp.asarray(a), 2.0))
                with plate("N", 4, dim=-2):
                    sample("obs", dist.Binomial(5, p), obs=data)

    total, _ = _factor(inner)
    assert total.shape == ()
    np.testing.assert_allclose(total, value.sum(), rtol=1e-6)


def test_masked_observations_are_dropped():
    data = jnp.array([1.0, 0.0, 1.0, 1.0])
    keep = jnp.array([True, False, True, False])

    def model():
        with handlers.collapse():
            p = sample("p", dist.Beta(2.0, 2.0))
            with plate("N", 4), handlers.mask(mask=keep):
                sample("obs", dist.Bernoulli(p), obs=data)

    value, _ = _factor(model)
    # Two kept observations, both ones.
    np.testing.assert_allclose(value, betaln(4, 2) - betaln(2, 2), rtol=1e-5)


def test_validation_accepts_the_placeholder():
    jppl.enable_validation()

    def model():
        with handlers.collapse():
            p = sample("p", dist.Beta(2.0, 2.0))
            sample("obs", dist.Bernoulli(p), obs=1.0)

    value, _ = _factor(model)
    np.testing.assert_allclose(value, np.log(0.5), rtol=1e-6)


# -- NumPyro's tests, translated ---------------------------------------------------------------
def test_collapse_beta_binomial_matches_explicit_betabinomial():
    total_count, data = 10, 3.0

    def model1():
        c1 = param("c1", 0.5, constraint=constraints.positive)
        c0 = param("c0", 1.5, constraint=constraints.positive)
        with handlers.collapse():
            probs = sample("probs", dist.Beta(c1, c0))
            sample("obs", dist.Binomial(total_count, probs), obs=data)

    def model2():
        c1 = param("c1", 0.5, constraint=constraints.positive)
        c0 = param("c0", 1.5, constraint=constraints.positive)
        sample("obs", dist.BetaBinomial(c1, c0, total_count), obs=data)

    trace1 = handlers.trace(model1).get_trace()
    trace2 = handlers.trace(model2).get_trace()
    assert "probs" in trace1 and "obs" not in trace1
    assert "probs" not in trace2 and "obs" in trace2
    # The reference model itself agrees with SciPy.
    obs = trace2["obs"]
    np.testing.assert_allclose(
        obs["fn"].log_prob(obs["value"]), stats.betabinom(10, 0.5, 1.5).logpmf(3), rtol=1e-5
    )

    svi1 = SVI(model1, lambda: None, jppl.optim.Adam(1), Trace_ELBO())
    svi2 = SVI(model2, lambda: None, jppl.optim.Adam(1), Trace_ELBO())
    state1, state2 = svi1.init(jax.random.key(0)), svi2.init(jax.random.key(0))
    for name in ("c1", "c0"):
        np.testing.assert_allclose(svi1.get_params(state1)[name], svi2.get_params(state2)[name])
    (state1, loss1), (state2, loss2) = svi1.update(state1), svi2.update(state2)
    np.testing.assert_allclose(loss1, -stats.betabinom(10, 0.5, 1.5).logpmf(3), rtol=1e-5)
    np.testing.assert_allclose(loss1, loss2, rtol=1e-6)
    params1, params2 = svi1.get_params(state1), svi2.get_params(state2)
    for name in ("c1", "c0"):
        np.testing.assert_allclose(params1[name], params2[name], rtol=1e-6)
    # Adam's first step moves each unconstrained value by the learning rate (1).
    for name, init in (("c1", 0.5), ("c0", 1.5)):
        assert abs(abs(np.log(params1[name]) - np.log(init)) - 1.0) < 1e-4


def test_collapse_beta_bernoulli_plated():
    # NumPyro xfails this one (a plate of observations of one collapsed latent).
    data = 0.0

    def model():
        c = sample("c", dist.Gamma(1.0, 1.0))
        with handlers.collapse():
            probs = sample("probs", dist.Beta(c, 2.0))
            with plate("plate", 10):
                sample("obs", dist.Bernoulli(probs), obs=data)

    def explicit():
        c = sample("c", dist.Gamma(1.0, 1.0))
        sample("obs", dist.BetaBinomial(c, 2.0, 10), obs=0.0)

    def guide():
        a = param("a", 1.0, constraint=constraints.positive)
        b = param("b", 1.0, constraint=constraints.positive)
        sample("c", dist.Gamma(a, b))

    svi = SVI(model, guide, jppl.optim.Adam(1), Trace_ELBO())
    ref = SVI(explicit, guide, jppl.optim.Adam(1), Trace_ELBO())
    state, ref_state = svi.init(jax.random.key(0)), ref.init(jax.random.key(0))
    (state, loss), (ref_state, ref_loss) = svi.update(state), ref.update(ref_state)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    for name in ("a", "b"):
        np.testing.assert_allclose(svi.get_params(state)[name], ref.get_params(ref_state)[name])
    # The factor at a given c: ten failures under Beta(c, 2).
    tr = handlers.trace(handlers.substitute(model, data={"c": 0.8})).get_trace()
    np.testing.assert_allclose(
        tr["probs"]["fn"].log_prob(tr["probs"]["value"]),
        betaln(0.8, 12.0) - betaln(0.8, 2.0),
        rtol=1e-5,
    )


# -- inference through a collapsed block --------------------------------------------------------
COUNTS = np.array([2.0, 0.0, 3.0, 1.0, 4.0, 2.0])
A0 = 3.0


def _gamma_poisson_model(counts):
    # Poisson counts with a Gamma(A0, b) rate collapsed; b has a Gamma(2, 1) prior.
    b = sample("b", dist.Gamma(2.0, 1.0))
    with handlers.collapse():
        lam = sample("lam", dist.Gamma(A0, b))
        with plate("N", counts.shape[0]):
            sample("obs", dist.Poisson(lam), obs=counts)


def _log_joint_b(b):
    """log p(b) + log p(counts | b) by hand (Gamma prior, Gamma-Poisson marginal)."""
    k, n = COUNTS.sum(), COUNTS.size
    marginal = (
        A0 * np.log(b)
        - (A0 + k) * np.log(b + n)
        + gammaln(A0 + k)
        - gammaln(A0)
        - gammaln(COUNTS + 1).sum()
    )
    return stats.gamma(2.0).logpdf(b) + marginal


def test_jitted_svi_step_through_collapse():
    guide = AutoDelta(_gamma_poisson_model)
    svi = SVI(_gamma_poisson_model, guide, jppl.optim.Adam(0.1), Trace_ELBO())
    counts = jnp.asarray(COUNTS)
    state = svi.init(jax.random.key(1), counts)
    b0 = float(guide.median(svi.get_params(state))["b"])
    new_state, loss = jax.jit(svi.update)(state, counts)
    np.testing.assert_allclose(loss, -_log_joint_b(b0), rtol=1e-5)
    eager_state, eager_loss = svi.update(state, counts)
    np.testing.assert_allclose(loss, eager_loss, rtol=1e-6)
    np.testing.assert_allclose(
        guide.median(svi.get_params(new_state))["b"],
        guide.median(svi.get_params(eager_state))["b"],
        rtol=1e-6,
    )


def test_nuts_posterior_of_outer_parameter():
    mcmc = MCMC(NUTS(_gamma_poisson_model), num_warmup=300, num_samples=1000, progress_bar=False)
    mcmc.run(jax.random.key(2), jnp.asarray(COUNTS))
    b = np.asarray(mcmc.get_samples()["b"])
    norm = integrate.quad(lambda x: np.exp(_log_joint_b(x)), 0, np.inf)[0]
    mean = integrate.quad(lambda x: x * np.exp(_log_joint_b(x)), 0, np.inf)[0] / norm
    second = integrate.quad(lambda x: x * x * np.exp(_log_joint_b(x)), 0, np.inf)[0] / norm
    sd = np.sqrt(second - mean**2)
    # 1000 draws, effective size well above 100: the MC error of the mean is below sd / 10.
    assert abs(b.mean() - mean) < 0.4 * sd, (b.mean(), mean, sd)
    assert abs(b.std() - sd) < 0.25 * sd, (b.std(), sd)


# -- errors ------------------------------------------------------------------------------------
def _run(model):
    return handlers.trace(handlers.seed(model, 0)).get_trace()


def test_error_observation_of_a_function_of_the_latent():
    def model():
        with handlers.collapse():
            mu = sample("mu", dist.Normal(0.0, 1.0))
            sample("obs", dist.Normal(2.0 * mu, 1.0), obs=0.5)

    with pytest.raises(ValueError, match=r"'obs'.*none of its parameters is a collapsed latent"):
        _run(model)


def test_error_unknown_pair_and_unknown_prior():
    def gamma_as_loc():
        with handlers.collapse():
            g = sample("g", dist.Gamma(2.0, 1.0))
            sample("obs", dist.Normal(g, 1.0), obs=0.5)

    with pytest.raises(ValueError, match=r"no conjugacy is known for latent site 'g'.*`loc`"):
        _run(gamma_as_loc)

    def exponential_prior():
        with handlers.collapse():
            r = sample("r", dist.Exponential(1.0))
            sample("obs", dist.Poisson(r), obs=2.0)

    with pytest.raises(ValueError, match=r"latent site 'r' with prior Exponential"):
        _run(exponential_prior)


def test_error_latent_used_twice():
    def model():
        with handlers.collapse():
            g = sample("g", dist.Gamma(2.0, 1.0))
            sample("obs", dist.Normal(g, g), obs=0.5)

    with pytest.raises(ValueError, match=r"several of its parameters are collapsed latents"):
        _run(model)


def test_error_deterministic_reading_the_placeholder():
    def model():
        with handlers.collapse():
            p = sample("p", dist.Beta(1.0, 1.0))
            jppl.deterministic("odds", p / (1 - p))
            sample("obs", dist.Bernoulli(p), obs=1.0)

    with pytest.raises(ValueError, match=r"deterministic site 'odds'.*placeholder"):
        _run(model)

    def param_reads_latent():
        with handlers.collapse():
            p = sample("p", dist.Beta(1.0, 1.0))
            param("q", p)
            sample("obs", dist.Bernoulli(p), obs=1.0)

    with pytest.raises(ValueError, match=r"param site 'q' reads the collapsed latent 'p'"):
        _run(param_reads_latent)


def test_error_scale_not_one():
    def model():
        with handlers.collapse():
            p = sample("p", dist.Beta(1.0, 1.0))
            with handlers.scale(scale=2.0):
                sample("obs", dist.Bernoulli(p), obs=1.0)

    with pytest.raises(ValueError, match=r"'obs' has a log-probability scale"):
        _run(model)

    def scaled_outside():
        # A scale outside the block scales the factor, which is fine.
        with handlers.scale(scale=2.0), handlers.collapse():
            p = sample("p", dist.Beta(1.0, 1.0))
            sample("obs", dist.Bernoulli(p), obs=1.0)

    site = _run(scaled_outside)["p"]
    np.testing.assert_allclose(
        site["scale"] * site["fn"].log_prob(site["value"]), 2 * np.log(0.5), rtol=1e-5
    )


def test_error_observation_without_latent_and_empty_block():
    def model():
        with handlers.collapse():
            p = sample("p", dist.Beta(1.0, 1.0))
            sample("obs", dist.Bernoulli(p), obs=1.0)
            sample("y", dist.Normal(0.0, 1.0), obs=0.3)

    with pytest.raises(ValueError, match=r"'y'.*none of its parameters"):
        _run(model)

    def empty():
        with handlers.collapse():
            pass

    with pytest.raises(ValueError, match="no latent sample site"):
        _run(empty)


def test_error_hierarchy_of_collapsed_latents():
    def model():
        with handlers.collapse():
            mu = sample("mu", dist.Normal(0.0, 1.0))
            theta = sample("theta", dist.Normal(mu, 1.0))
            sample("obs", dist.Normal(theta, 1.0), obs=0.5)

    with pytest.raises(ValueError, match=r"prior of latent site 'theta' uses the collapsed"):
        _run(model)


def test_observation_outside_the_support_gives_minus_infinity():
    def model(k):
        with handlers.collapse():
            p = sample("p", dist.Beta(2.0, 2.0))
            with plate("N", 2):
                sample("obs", dist.Binomial(3, p), obs=k)

    # The explicit likelihood is -inf at k = 4 > n = 3 for every p, so the marginal is too.
    value, _ = _factor(model, jnp.array([1.0, 4.0]))
    assert value == -np.inf
    value, _ = _factor(model, jnp.array([1.0, 2.0]))
    quad = _quad_beta(2.0, 2.0, lambda p: stats.binom(3, p).logpmf([1, 2]).sum())
    np.testing.assert_allclose(value, quad, rtol=1e-5)
