"""Tests of jppl.infer.Predictive and jppl.infer.log_likelihood."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jppl
import jppl.distributions as dist
from jppl.infer import Predictive, log_likelihood

N, D, S = 6, 3, 5
X = np.random.default_rng(0).normal(size=(N, D)).astype(np.float32)


def regression(X, y=None):
    w = jppl.sample("w", dist.Normal(jnp.zeros(X.shape[1]), 1.0).to_event(1))
    b = jppl.sample("b", dist.Normal(0.0, 1.0))
    sigma = jppl.sample("sigma", dist.HalfNormal(1.0))
    mean = jppl.deterministic("mean", X @ w + b)
    with jppl.plate("N", X.shape[0]):
        jppl.sample("y", dist.Normal(mean, sigma), obs=y)


def _samples(batch=(S,), sigma=1e-4):
    rng = np.random.default_rng(1)
    return {
        "w": jnp.asarray(rng.normal(size=batch + (D,)), dtype=jnp.float32),
        "b": jnp.asarray(rng.normal(size=batch), dtype=jnp.float32),
        "sigma": jnp.full(batch, sigma, dtype=jnp.float32),
    }


def test_prior_predictive_shapes_and_independent_draws():
    pred = Predictive(regression, num_samples=7)(jax.random.key(0), jnp.asarray(X))
    assert set(pred) == {"w", "b", "sigma", "mean", "y"}
    assert pred["w"].shape == (7, D)
    assert pred["y"].shape == (7, N)
    assert pred["mean"].shape == (7, N)
    assert np.all(np.asarray(pred["sigma"]) > 0)
    assert len(np.unique(np.asarray(pred["b"]))) == 7  # one key per draw
    with pytest.raises(ValueError, match="num_samples"):
        Predictive(regression)


def test_posterior_predictive_linear_regression():
    samples = _samples()
    pred = Predictive(regression, samples)(jax.random.key(1), jnp.asarray(X))
    assert set(pred) == {"mean", "y"}  # not in the samples: observed site + deterministic
    expected = (
        np.einsum("nd,sd->sn", X, np.asarray(samples["w"])) + np.asarray(samples["b"])[:, None]
    )
    np.testing.assert_allclose(pred["mean"], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pred["y"], expected, atol=1e-2)  # sigma = 1e-4


def test_parallel_matches_sequential():
    samples = _samples(sigma=0.5)
    key = jax.random.key(2)
    seq = Predictive(regression, samples)(key, jnp.asarray(X))
    par = Predictive(regression, samples, parallel=True)(key, jnp.asarray(X))
    np.testing.assert_allclose(seq["y"], par["y"], rtol=1e-5)


def test_num_samples_mismatch_warns_and_uses_the_draws():
    # NumPyro's behaviour: warn, then run once per posterior draw (S = 5 here, not 4).
    samples = _samples()
    with pytest.warns(UserWarning, match="num_samples=4 differs from the 5 draws"):
        pred_obj = Predictive(regression, samples, num_samples=4)
    assert pred_obj.num_samples == S
    pred = pred_obj(jax.random.key(1), jnp.asarray(X))
    assert pred["y"].shape == (S, N)
    expected = (
        np.einsum("nd,sd->sn", X, np.asarray(samples["w"])) + np.asarray(samples["b"])[:, None]
    )
    np.testing.assert_allclose(pred["mean"], expected, rtol=1e-5, atol=1e-5)


def test_inconsistent_samples():
    bad = dict(_samples(), b=jnp.zeros(S + 1))
    with pytest.raises(ValueError, match="leading dims"):
        Predictive(regression, bad)


def test_batch_ndims_two():
    samples = _samples(batch=(2, 4))
    pred = Predictive(regression, samples, batch_ndims=2)(jax.random.key(3), jnp.asarray(X))
    assert pred["y"].shape == (2, 4, N)
    expected = (
        np.einsum("nd,csd->csn", X, np.asarray(samples["w"])) + np.asarray(samples["b"])[..., None]
    )
    np.testing.assert_allclose(pred["mean"], expected, rtol=1e-5, atol=1e-5)


def test_return_sites():
    samples = _samples()
    pred = Predictive(regression, samples, return_sites=["y", "w"])(
        jax.random.key(4), jnp.asarray(X)
    )
    assert set(pred) == {"y", "w"}
    np.testing.assert_allclose(pred["w"], samples["w"])
    with pytest.raises(ValueError, match="not_a_site"):
        Predictive(regression, samples, return_sites=["not_a_site"])(
            jax.random.key(4), jnp.asarray(X)
        )


def test_deterministic_recomputed_unless_kept():
    samples = dict(_samples(), mean=jnp.full((S, N), 123.0))
    pred = Predictive(regression, samples)(jax.random.key(5), jnp.asarray(X))
    assert not np.allclose(pred["mean"], 123.0)
    pred = Predictive(regression, samples, exclude_deterministic=False)(
        jax.random.key(5), jnp.asarray(X)
    )
    np.testing.assert_allclose(pred["mean"], 123.0)


def test_predictive_with_guide_and_params():
    def model(y=None):
        mu = jppl.sample("mu", dist.Normal(0.0, 10.0))
        with jppl.plate("N", 3):
            jppl.sample("y", dist.Normal(mu, 0.01), obs=y)

    def guide(y=None):
        loc = jppl.param("loc", 0.0)
        scale = jppl.param("scale", 1.0, constraint=dist.constraints.positive)
        jppl.sample("mu", dist.Normal(loc, scale))

    params = {"loc": jnp.array(5.0), "scale": jnp.array(0.01)}
    pred = Predictive(model, guide=guide, params=params, num_samples=10)
    out = pred(jax.random.key(6))
    assert set(out) == {"y"}
    assert out["y"].shape == (10, 3)
    np.testing.assert_allclose(out["y"], 5.0, atol=0.1)
    out = Predictive(model, guide=guide, params=params, num_samples=10, return_sites=["mu", "y"])(
        jax.random.key(6)
    )
    # y is centred on each draw's mu (the model replays the guide's latent draw).
    np.testing.assert_allclose(out["y"], np.broadcast_to(out["mu"][:, None], (10, 3)), atol=0.05)
    assert np.std(np.asarray(out["mu"])) > 1e-4
    # Params batched over a leading dim (e.g. several SVI runs).
    batched = {"loc": jnp.array([-5.0, 5.0]), "scale": jnp.array([0.01, 0.01])}
    out = Predictive(model, guide=guide, params=batched, batch_ndims=1)(jax.random.key(7))
    np.testing.assert_allclose(out["y"].mean(axis=1), [-5.0, 5.0], atol=0.1)
    with pytest.raises(ValueError, match="not both"):
        Predictive(model, {"mu": jnp.zeros(3)}, guide=guide)


def test_log_likelihood_matches_scipy():
    y = np.random.default_rng(3).normal(size=N).astype(np.float32)
    samples = _samples(sigma=0.8)
    ll = log_likelihood(regression, samples, jnp.asarray(X), jnp.asarray(y))
    assert set(ll) == {"y"}
    assert ll["y"].shape == (S, N)
    w, b = np.asarray(samples["w"]), np.asarray(samples["b"])
    expected = stats.norm(X @ w.T + b, 0.8).logpdf(y[:, None]).T
    np.testing.assert_allclose(ll["y"], expected, rtol=1e-4)
    ll_par = log_likelihood(regression, samples, jnp.asarray(X), jnp.asarray(y), parallel=True)
    np.testing.assert_allclose(ll_par["y"], ll["y"], rtol=1e-5)
    # Two batch dims (chains, draws).
    samples2 = jax.tree_util.tree_map(lambda x: x.reshape((1,) + x.shape), samples)
    ll2 = log_likelihood(regression, samples2, jnp.asarray(X), jnp.asarray(y), batch_ndims=2)
    np.testing.assert_allclose(ll2["y"][0], ll["y"], rtol=1e-5)


def test_log_likelihood_mask_and_missing_latent():
    def model(y):
        mu = jppl.sample("mu", dist.Normal(0.0, 1.0))
        with jppl.plate("N", 4):
            jppl.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=jnp.arange(4) < 2)

    y = jnp.array([0.5, -0.5, 9.0, 9.0])
    samples = {"mu": jnp.array([0.0, 1.0]), "y_unobserved": jnp.zeros((2, 4))}
    ll = log_likelihood(model, samples, y)
    expected = stats.norm(np.array([[0.0], [1.0]]), 1.0).logpdf(np.asarray(y))
    expected[:, 2:] = 0.0
    assert set(ll) == {"y_observed"}  # obs_mask splits the site, as NumPyro does
    np.testing.assert_allclose(ll["y_observed"], expected, rtol=1e-5)
    with pytest.raises(ValueError, match="'mu'.*posterior_samples"):
        log_likelihood(model, {"other": jnp.zeros(2)}, y)


def test_importable_from_util_like_numpyro():
    from jppl.infer.util import Predictive as P
    from jppl.infer.util import log_likelihood as ll

    assert P is Predictive and ll is log_likelihood
