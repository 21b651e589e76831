"""``TraceEnum_ELBO`` with enumerated guide sites: the ELBO is the exact expectation over
them, checked against sums over every configuration written as explicit loops (float64)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import log_softmax, logsumexp
from scipy.stats import norm

import jppl
import jppl.distributions as dist
from jppl.infer import SVI, TraceEnum_ELBO
from jppl.util import enable_x64

X = np.array([0.1, 2.3, -1.0, 1.7])
W = np.array([0.3, 0.7])
LOCS = np.array([-1.0, 2.0])
ENUM = {"enumerate": "parallel"}


@pytest.fixture(autouse=True)
def x64():
    enable_x64(True)
    yield
    enable_x64(False)


def _loss(model, guide, params, *args, nesting=float("inf")):
    elbo = TraceEnum_ELBO(max_plate_nesting=nesting)
    return elbo.loss(jax.random.key(0), params, model, guide, *args)


# -- a global enumerated guide site ---------------------------------------------------------------


def global_model(x):
    z = jppl.sample("z", dist.Categorical(jnp.asarray(W)))
    with jppl.plate("N", x.shape[0]):
        jppl.sample("x", dist.Normal(jnp.asarray(LOCS)[z], 1.0), obs=x)


def global_guide(x):
    logits = jppl.param("logits", jnp.zeros(2))
    jppl.sample("z", dist.Categorical(logits=logits), infer=ENUM)


def _global_brute(logits):
    log_q = log_softmax(logits)
    return sum(
        np.exp(log_q[z]) * (np.log(W[z]) + norm.logpdf(X, LOCS[z], 1.0).sum() - log_q[z])
        for z in range(2)
    )


def test_global_guide_site_gives_the_exact_elbo_and_gradient():
    logits = np.array([0.4, -0.3])
    params = {"logits": jnp.asarray(logits)}
    got = _loss(global_model, global_guide, params, jnp.asarray(X))
    np.testing.assert_allclose(float(got), -_global_brute(logits), rtol=1e-12)
    grad = jax.grad(lambda p: _loss(global_model, global_guide, p, jnp.asarray(X)))(params)
    eps = 1e-6
    fd = [
        -(_global_brute(logits + eps * e) - _global_brute(logits - eps * e)) / (2 * eps)
        for e in np.eye(2)
    ]
    np.testing.assert_allclose(np.asarray(grad["logits"]), fd, rtol=1e-6, atol=1e-8)


# -- local enumerated guide sites in a plate, with a point-estimated global site ----------------


def local_model(x):
    mu = jppl.sample("mu", dist.Normal(0.0, 3.0))
    with jppl.plate("N", x.shape[0]):
        z = jppl.sample("z", dist.Categorical(jnp.asarray(W)))
        jppl.sample("x", dist.Normal(mu + jnp.asarray(LOCS)[z], 1.0), obs=x)


def local_guide(x):
    mu = jppl.param("mu_loc", 0.0)
    jppl.sample("mu", dist.Delta(mu))
    phi = jppl.param("phi", jnp.zeros((x.shape[0], 2)))
    with jppl.plate("N", x.shape[0]):
        jppl.sample("z", dist.Categorical(logits=phi), infer=ENUM)


def _local_brute(mu, phi):
    total = norm.logpdf(mu, 0.0, 3.0)
    for n, xn in enumerate(X):
        log_q = log_softmax(phi[n])
        total += sum(
            np.exp(log_q[k]) * (np.log(W[k]) + norm.logpdf(xn, mu + LOCS[k], 1.0) - log_q[k])
            for k in range(2)
        )
    return total


def test_local_guide_sites_give_the_exact_elbo():
    rng = np.random.default_rng(0)
    mu, phi = 0.3, rng.normal(size=(4, 2))
    params = {"mu_loc": jnp.asarray(mu), "phi": jnp.asarray(phi)}
    got = _loss(local_model, local_guide, params, jnp.asarray(X))
    np.testing.assert_allclose(float(got), -_local_brute(mu, phi), rtol=1e-12)
    grad = jax.grad(lambda p: _loss(local_model, local_guide, p, jnp.asarray(X)))(params)
    eps = 1e-6
    fd_mu = -(_local_brute(mu + eps, phi) - _local_brute(mu - eps, phi)) / (2 * eps)
    np.testing.assert_allclose(float(grad["mu_loc"]), fd_mu, rtol=1e-6)
    e = np.zeros_like(phi)
    e[2, 1] = eps
    fd_phi = -(_local_brute(mu, phi + e) - _local_brute(mu, phi - e)) / (2 * eps)
    np.testing.assert_allclose(float(grad["phi"][2, 1]), fd_phi, rtol=1e-6)


def test_svi_recovers_the_exact_posterior_responsibilities():
    # With mu fixed at its point estimate, the ELBO's maximum over q(z_n) is the posterior
    # p(z_n | x_n, mu), by Bayes' rule.
    def model(x):
        with jppl.plate("N", x.shape[0]):
            z = jppl.sample("z", dist.Categorical(jnp.asarray(W)))
            jppl.sample("x", dist.Normal(jnp.asarray(LOCS)[z], 1.0), obs=x)

    def guide(x):
        phi = jppl.param("phi", jnp.zeros((x.shape[0], 2)))
        with jppl.plate("N", x.shape[0]):
            jppl.sample("z", dist.Categorical(logits=phi), infer=ENUM)

    svi = SVI(model, guide, optax.adam(0.1), TraceEnum_ELBO())
    result = svi.run(jax.random.key(0), 800, jnp.asarray(X), progress_bar=False)
    got = jax.nn.softmax(result.params["phi"], axis=-1)
    log_post = np.log(W) + norm.logpdf(X[:, None], LOCS, 1.0)
    exact = np.exp(log_post - logsumexp(log_post, axis=1, keepdims=True))
    np.testing.assert_allclose(np.asarray(got), exact, atol=2e-3)
    # At the optimum the ELBO is the log evidence.
    evidence = logsumexp(log_post, axis=1).sum()
    np.testing.assert_allclose(float(result.losses[-1]), -evidence, atol=1e-4)


# -- guide enumeration and model enumeration together ------------------------------------------


def mixed_model(x):
    z = jppl.sample("z", dist.Bernoulli(0.4))
    trans = jnp.array([[0.8, 0.2], [0.25, 0.75]])
    with jppl.plate("N", x.shape[0]):
        y = jppl.sample("y", dist.Categorical(trans[z]), infer=ENUM)
        jppl.sample("x", dist.Normal(jnp.asarray(LOCS)[y], 1.0), obs=x)


def mixed_guide(x):
    p = jppl.param("p", 0.5)
    jppl.sample("z", dist.Bernoulli(p), infer=ENUM)


def test_model_sites_are_summed_inside_the_guide_expectation():
    p = 0.35
    trans = np.array([[0.8, 0.2], [0.25, 0.75]])
    q = np.array([1 - p, p])
    prior = np.array([0.6, 0.4])
    expected = sum(
        q[z]
        * (
            np.log(prior[z])
            + sum(logsumexp(np.log(trans[z]) + norm.logpdf(xn, LOCS, 1.0)) for xn in X)
            - np.log(q[z])
        )
        for z in range(2)
    )
    got = _loss(mixed_model, mixed_guide, {"p": jnp.asarray(p)}, jnp.asarray(X))
    np.testing.assert_allclose(float(got), -expected, rtol=1e-12)


def test_guide_site_depending_on_an_enumerated_one():
    # q(z1) q(z2 | z1) enumerated; the model's likelihood depends on z2 only, so its term is
    # weighted by the marginal q(z2).
    q1 = np.array([0.3, 0.7])
    q2 = np.array([[0.9, 0.1], [0.2, 0.8]])

    def model(x):
        z1 = jppl.sample("z1", dist.Bernoulli(0.5))
        z2 = jppl.sample("z2", dist.Categorical(jnp.array([[0.6, 0.4], [0.1, 0.9]])[z1]))
        with jppl.plate("N", x.shape[0]):
            jppl.sample("x", dist.Normal(jnp.asarray(LOCS)[z2], 1.0), obs=x)

    def guide(x):
        z1 = jppl.sample("z1", dist.Categorical(jnp.asarray(q1)), infer=ENUM)
        jppl.sample("z2", dist.Categorical(jnp.asarray(q2)[z1]), infer=ENUM)

    p2 = np.array([[0.6, 0.4], [0.1, 0.9]])
    expected = 0.0
    for z1, z2 in itertools.product(range(2), range(2)):
        joint = q1[z1] * q2[z1, z2]
        expected += joint * (
            np.log(0.5)
            + np.log(p2[z1, z2])
            + norm.logpdf(X, LOCS[z2], 1.0).sum()
            - np.log(q1[z1])
            - np.log(q2[z1, z2])
        )
    got = _loss(model, guide, {}, jnp.asarray(X))
    np.testing.assert_allclose(float(got), -expected, rtol=1e-12)


def test_continuous_guide_site_per_enumerated_value():
    # y ~ q(y | z) is drawn once per value of the enumerated z: the ELBO weights each draw's
    # terms by q(z). Checked against the same draws read from the guide.
    def model():
        z = jppl.sample("z", dist.Bernoulli(0.3))
        y = jppl.sample("y", dist.Normal(jnp.array([-1.0, 1.0])[z], 1.0))
        jppl.sample("obs", dist.Normal(y, 0.5), obs=0.4)

    def guide():
        z = jppl.sample("z", dist.Bernoulli(0.6), infer=ENUM)
        jppl.sample("y", dist.Normal(jnp.array([-0.5, 0.7])[z], 0.8))

    elbo = TraceEnum_ELBO(max_plate_nesting=0)
    key = jax.random.key(3)
    got = float(elbo.loss(key, {}, model, guide))
    from jppl.vi.elbo import get_importance_traces

    _, guide_trace = get_importance_traces(
        jax.random.fold_in(key, 0),
        {},
        model,
        guide,
        (),
        {},
        first_available_dim=-1,
        enumerate_guide=True,
    )
    ys = np.asarray(guide_trace["y"]["value"]).reshape(2)
    q = np.array([0.4, 0.6])
    expected = sum(
        q[z]
        * (
            np.log([0.7, 0.3][z])
            + norm.logpdf(ys[z], [-1.0, 1.0][z], 1.0)
            + norm.logpdf(0.4, ys[z], 0.5)
            - np.log(q[z])
            - norm.logpdf(ys[z], [-0.5, 0.7][z], 0.8)
        )
        for z in range(2)
    )
    np.testing.assert_allclose(got, -expected, rtol=1e-12)


# -- errors ------------------------------------------------------------------------------------


def test_model_enumeration_more_global_than_the_guide_is_an_error():
    def model(x):
        w = jppl.sample("w", dist.Bernoulli(0.5), infer=ENUM)
        with jppl.plate("N", x.shape[0]):
            z = jppl.sample("z", dist.Bernoulli(0.5))
            jppl.sample("x", dist.Normal(w + z, 1.0), obs=x)

    def guide(x):
        with jppl.plate("N", x.shape[0]):
            jppl.sample("z", dist.Bernoulli(0.5), infer=ENUM)

    with pytest.raises(ValueError, match="'w'.*no more global.*guide"):
        _loss(model, guide, {}, jnp.asarray(X))


def test_unreparameterized_guide_site_under_an_enumerated_one_is_an_error():
    def model():
        z = jppl.sample("z", dist.Bernoulli(0.5))
        jppl.sample("k", dist.Poisson(jnp.array([1.0, 3.0])[z]))

    def guide():
        z = jppl.sample("z", dist.Bernoulli(0.5), infer=ENUM)
        jppl.sample("k", dist.Poisson(jnp.array([2.0, 4.0])[z]))

    with pytest.raises(NotImplementedError, match="guide site 'k'.*enumerated"):
        _loss(model, guide, {}, nesting=0)


def test_scaled_plates_scale_each_term():
    # A scale handler around the plate (as subsampling gives) scales the local terms of model
    # and guide: ELBO = log p(mu) + s * sum_n E_q[log p(z_n) p(x_n | z_n, mu) - log q(z_n)].
    from jppl.handlers import scale

    s = 2.5

    def model(x):
        mu = jppl.sample("mu", dist.Normal(0.0, 3.0))
        with scale(scale=s), jppl.plate("N", x.shape[0]):
            z = jppl.sample("z", dist.Categorical(jnp.asarray(W)))
            jppl.sample("x", dist.Normal(mu + jnp.asarray(LOCS)[z], 1.0), obs=x)

    def guide(x):
        jppl.sample("mu", dist.Delta(jppl.param("mu_loc", 0.0)))
        phi = jppl.param("phi", jnp.zeros((x.shape[0], 2)))
        with scale(scale=s), jppl.plate("N", x.shape[0]):
            jppl.sample("z", dist.Categorical(logits=phi), infer=ENUM)

    rng = np.random.default_rng(1)
    mu, phi = -0.2, rng.normal(size=(4, 2))
    local = _local_brute(mu, phi) - norm.logpdf(mu, 0.0, 3.0)
    expected = norm.logpdf(mu, 0.0, 3.0) + s * local
    params = {"mu_loc": jnp.asarray(mu), "phi": jnp.asarray(phi)}
    got = _loss(model, guide, params, jnp.asarray(X))
    np.testing.assert_allclose(float(got), -expected, rtol=1e-12)
