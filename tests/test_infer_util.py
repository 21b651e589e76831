"""Tests of jppl.infer.util (log densities, unconstrained space, initialize_model) and of the
initialization strategies, checked against closed forms from scipy.stats."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jppl
import jppl.distributions as dist
from jppl.handlers import seed, substitute, trace
from jppl.infer import (
    constrain_fn,
    get_model_transforms,
    init_to_feasible,
    init_to_mean,
    init_to_median,
    init_to_sample,
    init_to_uniform,
    init_to_value,
    initialize_model,
    log_density,
    potential_energy,
    transform_fn,
    unconstrain_fn,
)
from jppl.infer.util import compute_log_probs

Y = np.array([0.3, -1.2, 2.1, 0.8, 1.5], dtype=np.float32)


def normal_normal(y, m0=1.0, s0=2.0, s=0.7):
    mu = jppl.sample("mu", dist.Normal(m0, s0))
    with jppl.plate("N", y.shape[0]):
        jppl.sample("y", dist.Normal(mu, s), obs=y)


def scale_model(y):
    mu = jppl.sample("mu", dist.Normal(0.0, 1.0))
    sigma = jppl.sample("sigma", dist.HalfNormal(2.0))
    jppl.deterministic("twice_sigma", 2 * sigma)
    with jppl.plate("N", y.shape[0]):
        jppl.sample("y", dist.Normal(mu, sigma), obs=y)


# -- log_density -------------------------------------------------------------------------------


def test_log_density_normal_normal_matches_scipy():
    mu = 0.4
    lp, tr = log_density(normal_normal, (jnp.asarray(Y),), {}, {"mu": jnp.array(mu)})
    expected = stats.norm(1.0, 2.0).logpdf(mu) + stats.norm(mu, 0.7).logpdf(Y).sum()
    np.testing.assert_allclose(lp, expected, rtol=1e-5)
    assert tr["mu"]["value"] == pytest.approx(mu)
    per_site = compute_log_probs(tr)
    assert per_site["y"].shape == (5,)
    np.testing.assert_allclose(per_site["y"], stats.norm(mu, 0.7).logpdf(Y), rtol=1e-5)


def test_log_density_scale_and_mask():
    def model(y):
        mu = jppl.sample("mu", dist.Normal(0.0, 1.0))
        with jppl.handlers.scale(scale=3.0), jppl.plate("N", 5):
            jppl.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=jnp.arange(5) < 3)

    u = jnp.linspace(-1.0, 1.0, 5)  # the imputed entries (latent site y_unobserved)
    lp, _ = log_density(model, (jnp.asarray(Y),), None, {"mu": 0.5, "y_unobserved": u})
    expected = (
        stats.norm(0, 1).logpdf(0.5)
        + 3 * stats.norm(0.5, 1).logpdf(Y[:3]).sum()
        + 3 * stats.norm(0.5, 1).logpdf(np.asarray(u)).sum()
    )
    np.testing.assert_allclose(lp, expected, rtol=1e-5)


def test_log_density_subsample_scale():
    data = jnp.linspace(-2.0, 2.0, 100)

    def model():
        mu = jppl.sample("mu", dist.Normal(0.0, 1.0))
        with jppl.plate("N", 100, subsample_size=10) as idx:
            jppl.sample("y", dist.Normal(mu, 1.0), obs=data[idx])

    lp, tr = log_density(seed(model, rng_seed=3), (), {}, {"mu": 0.2})
    idx = np.asarray(tr["N"]["value"])
    assert idx.shape == (10,)
    expected = (
        stats.norm(0, 1).logpdf(0.2) + 10 * stats.norm(0.2, 1).logpdf(np.asarray(data)[idx]).sum()
    )
    np.testing.assert_allclose(lp, expected, rtol=1e-5)


def test_log_density_missing_latent_names_site():
    with pytest.raises(ValueError, match="'mu'.*no value"):
        log_density(normal_normal, (jnp.asarray(Y),), {}, {})


# -- unconstrained space -----------------------------------------------------------------------


def _expected_potential(mu, u, y):
    sigma = np.exp(u)
    return -(
        stats.norm(0, 1).logpdf(mu)
        + stats.halfnorm(scale=2.0).logpdf(sigma)
        + stats.norm(mu, sigma).logpdf(y).sum()
        + u  # log |d sigma / d u| of sigma = exp(u)
    )


def test_potential_energy_with_exp_jacobian():
    mu, u = 0.3, -0.4
    pe = potential_energy(
        scale_model, (jnp.asarray(Y),), {}, {"mu": jnp.array(mu), "sigma": jnp.array(u)}
    )
    np.testing.assert_allclose(pe, _expected_potential(mu, u, Y), rtol=1e-5)


def test_potential_energy_exponential_prior():
    def model(y):
        rate = jppl.sample("rate", dist.Exponential(1.5))
        with jppl.plate("N", y.shape[0]):
            jppl.sample("y", dist.Exponential(rate), obs=y)

    y = np.abs(Y)
    u = 0.25
    pe = potential_energy(model, (jnp.asarray(y),), {}, {"rate": jnp.array(u)})
    rate = np.exp(u)
    expected = -(
        stats.expon(scale=1 / 1.5).logpdf(rate) + stats.expon(scale=1 / rate).logpdf(y).sum() + u
    )
    np.testing.assert_allclose(pe, expected, rtol=1e-5)


def test_potential_fn_grad_matches_finite_differences():
    info = initialize_model(jax.random.key(0), scale_model, model_args=(jnp.asarray(Y),))
    z = {"mu": jnp.array(0.3), "sigma": jnp.array(-0.4)}
    grad = jax.jit(jax.grad(info.potential_fn))(z)
    h = 1e-2
    for name in z:
        plus = dict(z, **{name: z[name] + h})
        minus = dict(z, **{name: z[name] - h})
        fd = (
            _expected_potential(float(plus["mu"]), float(plus["sigma"]), Y)
            - _expected_potential(float(minus["mu"]), float(minus["sigma"]), Y)
        ) / (2 * h)
        assert np.isfinite(grad[name])
        np.testing.assert_allclose(grad[name], fd, rtol=1e-2, atol=1e-3)


def test_transforms_roundtrip_simplex_and_positive():
    def model():
        jppl.sample("p", dist.Dirichlet(jnp.ones(3)))
        jppl.sample("s", dist.HalfCauchy(1.0), sample_shape=(2,))
        jppl.param("w", jnp.ones(2), constraint=dist.constraints.positive)

    transforms, tr = get_model_transforms(model, rng_key=jax.random.key(1))
    assert set(transforms) == {"p", "s", "w"}
    values = {"p": jnp.array([0.2, 0.3, 0.5]), "s": jnp.array([0.5, 2.0])}
    z = unconstrain_fn(model, (), {}, values)
    assert z["p"].shape == (2,)
    np.testing.assert_allclose(z["s"], np.log([0.5, 2.0]), rtol=1e-5)
    back = constrain_fn(seed(model, rng_seed=0), (), {}, z)
    for k in values:
        np.testing.assert_allclose(back[k], values[k], rtol=1e-5)
    again = transform_fn(transforms, z)
    np.testing.assert_allclose(again["p"], values["p"], rtol=1e-5)
    np.testing.assert_allclose(transform_fn(transforms, again, invert=True)["s"], z["s"])


def test_discrete_latent_site_error():
    def model():
        z = jppl.sample("z_cluster", dist.Bernoulli(0.3))
        jppl.sample("x", dist.Normal(z, 1.0), obs=0.5)

    # initialize_model sums it out, as NumPyro's does; the raw potential names it.
    info = initialize_model(jax.random.key(0), model)
    assert info.param_info.z == {}
    with pytest.raises(ValueError, match="z_cluster.*marginaliz"):
        potential_energy(model, (), {}, {})


# -- initialize_model ----------------------------------------------------------------------------


def test_initialize_model_outputs():
    info = initialize_model(jax.random.key(2), scale_model, model_args=(jnp.asarray(Y),))
    z, pe, z_grad = info.param_info
    assert set(z) == {"mu", "sigma"}
    assert np.all(np.abs(np.asarray([z["mu"], z["sigma"]])) <= 2.0)  # uniform(-2, 2)
    np.testing.assert_allclose(pe, info.potential_fn(z), rtol=1e-6)
    np.testing.assert_allclose(
        pe, _expected_potential(float(z["mu"]), float(z["sigma"]), Y), rtol=1e-5
    )
    np.testing.assert_allclose(z_grad["mu"], jax.grad(info.potential_fn)(z)["mu"], rtol=1e-5)
    out = info.postprocess_fn(z)
    np.testing.assert_allclose(out["sigma"], np.exp(z["sigma"]), rtol=1e-6)
    np.testing.assert_allclose(out["twice_sigma"], 2 * np.exp(z["sigma"]), rtol=1e-6)
    assert info.model_trace["y"]["is_observed"]


def test_initialize_model_dynamic_args():
    info = initialize_model(
        jax.random.key(2), scale_model, model_args=(jnp.asarray(Y),), dynamic_args=True
    )
    z = info.param_info.z
    pe = info.potential_fn(jnp.asarray(Y))(z)
    np.testing.assert_allclose(pe, info.param_info.potential_energy, rtol=1e-6)
    pe2 = info.potential_fn(jnp.asarray(Y[:3]))(z)
    np.testing.assert_allclose(
        pe2, _expected_potential(float(z["mu"]), float(z["sigma"]), Y[:3]), rtol=1e-5
    )


def restricted(threshold=1.5):
    x = jppl.sample("x", dist.Normal(0.0, 1.0))
    jppl.factor("restrict", jnp.where(x > threshold, 0.0, -jnp.inf))


def test_initialize_model_retries_until_finite():
    # Under uniform(-2, 2) init only x > 1.5 (1/8 of the draws) has a finite density.
    for k in range(3):
        info = initialize_model(jax.random.key(k), restricted)
        assert float(info.param_info.z["x"]) > 1.5
        assert np.isfinite(info.param_info.potential_energy)
    keys = jax.random.split(jax.random.key(10), 4)  # batch of keys: the while_loop path
    info = initialize_model(keys, restricted)
    assert info.param_info.z["x"].shape == (4,)
    assert np.all(np.asarray(info.param_info.z["x"]) > 1.5)


def test_initialize_model_under_jit():
    def init(key):
        return initialize_model(key, restricted).param_info

    z, pe, _ = jax.jit(init)(jax.random.key(5))
    assert float(z["x"]) > 1.5 and np.isfinite(pe)


def test_initialize_model_raises_when_never_finite():
    with pytest.raises(RuntimeError, match="valid initial parameters.*restrict"):
        initialize_model(jax.random.key(0), restricted, model_args=(10.0,), max_tries=5)


# -- initialization strategies -----------------------------------------------------------------


def support_model():
    jppl.sample("pos", dist.HalfNormal(1.0), sample_shape=(3,))
    jppl.sample("unit", dist.Uniform(0.0, 1.0))
    jppl.sample("simplex", dist.Dirichlet(jnp.ones(4)))
    jppl.sample("loc", dist.Normal(3.0, 1.0))
    jppl.sample("obs", dist.Normal(0.0, 1.0), obs=1.0)


def _init_trace(strategy, key=0):
    model = substitute(seed(support_model, rng_seed=key), substitute_fn=strategy)
    return trace(model).get_trace()


@pytest.mark.parametrize(
    "strategy",
    [
        init_to_uniform,
        init_to_uniform(radius=0.5),
        init_to_median,
        init_to_sample,
        init_to_mean,
        init_to_feasible,
        init_to_value(values={"loc": 1.0}),
    ],
)
def test_init_strategies_in_support(strategy):
    tr = _init_trace(strategy)
    for name in ("pos", "unit", "simplex", "loc"):
        site = tr[name]
        assert site["value"].shape == site["fn"].shape(site["kwargs"]["sample_shape"])
        assert np.all(np.asarray(site["fn"].support(site["value"]))), name
    assert float(tr["obs"]["value"]) == 1.0


def test_init_to_value_and_feasible():
    tr = _init_trace(init_to_value(values={"loc": 1.25, "pos": jnp.array([1.0, 2.0, 3.0])}))
    assert float(tr["loc"]["value"]) == 1.25
    np.testing.assert_allclose(tr["pos"]["value"], [1.0, 2.0, 3.0])
    tr = _init_trace(init_to_feasible)
    np.testing.assert_allclose(tr["pos"]["value"], np.ones(3), rtol=1e-6)  # exp(0)
    np.testing.assert_allclose(tr["unit"]["value"], 0.5, rtol=1e-6)  # sigmoid(0)
    np.testing.assert_allclose(tr["simplex"]["value"], np.full(4, 0.25), rtol=1e-5)
    assert float(tr["loc"]["value"]) == 0.0


def test_init_to_median_and_mean_values():
    def model():
        jppl.sample("loc", dist.Normal(3.0, 1.0))
        jppl.sample("pos", dist.LogNormal(0.5, 0.2))

    def init(strategy):
        return trace(substitute(seed(model, rng_seed=0), substitute_fn=strategy)).get_trace()

    tr = init(init_to_median(num_samples=401))
    assert abs(float(tr["loc"]["value"]) - 3.0) < 0.25
    assert abs(float(tr["pos"]["value"]) - np.exp(0.5)) < 0.1  # median of LogNormal
    tr = init(init_to_mean)
    np.testing.assert_allclose(tr["loc"]["value"], 3.0)
    np.testing.assert_allclose(tr["pos"]["value"], np.exp(0.5 + 0.2**2 / 2), rtol=1e-5)
    tr = _init_trace(init_to_mean)
    np.testing.assert_allclose(tr["unit"]["value"], 0.5, rtol=1e-6)

    def cauchy_model():
        jppl.sample("c", dist.Cauchy(4.0, 0.01))

    # The Cauchy mean is undefined: init_to_mean falls back to the median.
    tr = trace(substitute(seed(cauchy_model, rng_seed=0), substitute_fn=init_to_mean)).get_trace()
    assert abs(float(tr["c"]["value"]) - 4.0) < 0.1


def test_initialize_model_with_init_to_value():
    info = initialize_model(
        jax.random.key(0),
        scale_model,
        model_args=(jnp.asarray(Y),),
        init_strategy=init_to_value(values={"mu": 0.7, "sigma": 1.3}),
    )
    np.testing.assert_allclose(info.param_info.z["mu"], 0.7)
    np.testing.assert_allclose(info.param_info.z["sigma"], np.log(1.3), rtol=1e-5)
