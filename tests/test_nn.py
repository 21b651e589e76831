"""Tests of jppl.nn: Flax (Linen and NNX) modules as param sites and as latent variables."""

import importlib.util
import pathlib
import time

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jppl
import jppl.distributions as dist
from jppl.handlers import seed, substitute, trace
from jppl.infer import log_density
from jppl.nn import flax_module, param_paths, random_flax_module
from jppl.vi import SVI, Trace_ELBO
from jppl.vi.autoguide import AutoNormal

TRUE_W = jnp.array([2.0, -3.0])
TRUE_B = 1.0


class LinenMLP(linen.Module):
    hidden: int = 8

    @linen.compact
    def __call__(self, x):
        return linen.Dense(1)(linen.tanh(linen.Dense(self.hidden)(x)))


class LinenBN(linen.Module):
    @linen.compact
    def __call__(self, x, train: bool = True):
        x = linen.Dense(3)(x)
        return linen.BatchNorm(use_running_average=not train)(x)


class LinenDropout(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dropout(0.5, deterministic=False)(linen.Dense(16)(x))


class NNXMLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(2, 4, rngs=rngs), nnx.Linear(4, 1, rngs=rngs)])

    def __call__(self, x):
        return self.layers[1](jnp.tanh(self.layers[0](x)))


def regression_data(n=64, noise=0.1, seed_=1):
    kx, ke = jax.random.split(jax.random.key(seed_))
    x = jax.random.normal(kx, (n, 2))
    y = x @ TRUE_W + TRUE_B + noise * jax.random.normal(ke, (n,))
    return x, y


def regression_model(make_net, sigma=0.1):
    def model(x, y=None):
        net = make_net()
        with jppl.plate("data", x.shape[0]):
            jppl.sample("y", dist.Normal(net(x)[..., 0], sigma), obs=y)

    return model


def empty_guide(*args, **kwargs):
    pass


# ---------------------------------------------------------------------------------------------
# flax_module
# ---------------------------------------------------------------------------------------------


def test_flax_module_linen_param_site_and_apply():
    x = jnp.linspace(-1, 1, 10).reshape(5, 2)
    model = lambda x: flax_module("net", LinenMLP(), input_shape=(1, 2))(x)
    tr = trace(seed(model, 0)).get_trace(x)
    assert list(tr) == ["net$params"]
    site = tr["net$params"]
    assert site["type"] == "param"
    expected = jax.eval_shape(LinenMLP().init, jax.random.key(0), jnp.ones((1, 2)))["params"]
    assert jax.tree.structure(site["value"]) == jax.tree.structure(expected)
    assert jax.tree.map(jnp.shape, site["value"]) == jax.tree.map(lambda s: s.shape, expected)
    assert param_paths(site["value"]) == [
        "Dense_0.bias",
        "Dense_0.kernel",
        "Dense_1.bias",
        "Dense_1.kernel",
    ]
    out = seed(model, 0)(x)
    np.testing.assert_allclose(out, LinenMLP().apply({"params": site["value"]}, x), rtol=1e-6)
    # A substituted value is used as is, and needs no seed handler.
    params = jax.tree.map(jnp.zeros_like, site["value"])
    np.testing.assert_allclose(substitute(model, data={"net$params": params})(x), 0.0)


def test_flax_module_linen_init_from_kwargs():
    def model(x):
        return flax_module("net", linen.Dense(3), inputs=jnp.ones((1, 4)))(x)

    tr = trace(seed(model, 0)).get_trace(jnp.ones((2, 4)))
    assert jax.tree.map(jnp.shape, tr["net$params"]["value"]) == {"bias": (3,), "kernel": (4, 3)}
    with pytest.raises(ValueError, match="input_shape"):
        seed(lambda: flax_module("net", linen.Dense(3)), 0)()


def test_flax_module_nnx_param_site_and_apply():
    module = NNXMLP(nnx.Rngs(0))
    x = jnp.linspace(-1, 1, 10).reshape(5, 2)
    model = lambda x: flax_module("mlp", module)(x)
    tr = trace(model).get_trace(x)  # NNX modules are already initialised: no key needed
    value = tr["mlp$params"]["value"]
    expected = nnx.to_pure_dict(nnx.state(module, nnx.Param))
    assert jax.tree.structure(value) == jax.tree.structure(expected)
    jax.tree.map(np.testing.assert_array_equal, value, expected)
    assert param_paths(value) == [
        "layers.0.bias",
        "layers.0.kernel",
        "layers.1.bias",
        "layers.1.kernel",
    ]
    np.testing.assert_allclose(model(x), module(x), rtol=1e-6)
    # With other params, the output is the merged module's.
    shifted = jax.tree.map(lambda a: a + 0.5, value)
    out = substitute(model, data={"mlp$params": shifted})(x)
    graphdef, _ = nnx.split(module, nnx.Param)
    np.testing.assert_allclose(out, nnx.merge(graphdef, shifted)(x), rtol=1e-6)


def test_flax_module_rejects_non_modules():
    with pytest.raises(TypeError, match="instance"):
        flax_module("net", NNXMLP)
    with pytest.raises(TypeError, match="flax"):
        flax_module("net", lambda x: x)


def test_flax_module_linen_batch_stats_state_site():
    x = jax.random.normal(jax.random.key(2), (16, 2)) * 3.0 + 5.0

    def model(x, train=True):
        net = flax_module("bn", LinenBN(), input_shape=(1, 2), mutable=["batch_stats"])
        out = net(x, train=train)
        return out, net.state

    tr = trace(seed(model, 0)).get_trace(x)
    assert set(tr) == {"bn$params", "bn$state"}
    state = tr["bn$state"]["value"]
    assert jax.tree.map(jnp.shape, state) == {
        "batch_stats": {"BatchNorm_0": {"mean": (3,), "var": (3,)}}
    }
    out, new_state = seed(model, 0)(x)
    # Training mode normalises with the batch statistics and updates the running averages.
    np.testing.assert_allclose(jnp.mean(out, axis=0), 0.0, atol=1e-4)
    assert not np.allclose(new_state["batch_stats"]["BatchNorm_0"]["mean"], 0.0)
    # Evaluation mode reads the running averages from the `$state` site.
    data = {"bn$params": tr["bn$params"]["value"], "bn$state": new_state}
    out_eval, _ = substitute(model, data=data)(x, train=False)
    expected = LinenBN().apply({"params": data["bn$params"], **new_state}, x, train=False)
    np.testing.assert_allclose(out_eval, expected, rtol=1e-5)


def test_flax_module_nnx_batch_stats_state_site():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(2, 3, rngs=rngs)
            self.bn = nnx.BatchNorm(3, rngs=rngs)

        def __call__(self, x):
            return self.bn(self.linear(x))

    module = Net(nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(2), (16, 2)) + 4.0

    def model(x):
        net = flax_module("net", module, mutable=True)
        return net(x), net.state

    tr = trace(model).get_trace(x)
    assert jax.tree.map(jnp.shape, tr["net$state"]["value"]) == {"bn": {"mean": (3,), "var": (3,)}}
    out, new_state = model(x)
    np.testing.assert_allclose(jnp.mean(out, axis=0), 0.0, atol=1e-4)
    assert not np.allclose(new_state["bn"]["mean"], 0.0)
    assert np.allclose(nnx.state(module, nnx.BatchStat)["bn"]["mean"][...], 0.0)  # untouched


def test_flax_module_apply_rng_dropout():
    x = jnp.ones((4, 3))
    model = lambda x: flax_module(
        "drop", LinenDropout(), input_shape=(1, 3), apply_rng=["dropout"]
    )(x)
    a, b = seed(model, 0)(x), seed(model, 1)(x)
    params = trace(seed(model, 0)).get_trace(x)["drop$params"]["value"]
    c = seed(substitute(model, data={"drop$params": params}), 5)(x)
    assert jnp.any(a == 0) and jnp.any(a != 0)
    assert not np.allclose(a, c)  # same params, other dropout mask
    assert a.shape == b.shape == (4, 16)
    with pytest.raises(ValueError, match="PRNG key"):
        substitute(model, data={"drop$params": params})(x)

    class NNXDrop(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(3, 16, rngs=rngs)
            self.dropout = nnx.Dropout(0.5, rngs=rngs)

        def __call__(self, x):
            return self.dropout(self.linear(x))

    module = NNXDrop(nnx.Rngs(0, dropout=1))
    nmodel = lambda x: flax_module("drop", module, apply_rng=["dropout"])(x)
    a, b = seed(nmodel, 0)(x), seed(nmodel, 1)(x)
    assert jnp.any(a == 0) and not np.allclose(a, b)
    np.testing.assert_array_equal(a, seed(nmodel, 0)(x))


def test_svi_fits_linear_function_linen_mlp():
    x, y = regression_data()
    model = regression_model(lambda: flax_module("mlp", LinenMLP(), input_shape=(1, 2)))
    svi = SVI(model, empty_guide, optax.adam(0.02), Trace_ELBO())
    result = svi.run(jax.random.key(0), 1500, x, y, progress_bar=False)
    losses = np.asarray(result.losses)
    assert losses[-50:].mean() < 0.05 * losses[0]
    x_test = jnp.array([[0.5, -0.5], [-1.0, 0.3], [0.2, 0.8]])
    pred = LinenMLP().apply({"params": result.params["mlp$params"]}, x_test)[:, 0]
    np.testing.assert_allclose(pred, x_test @ TRUE_W + TRUE_B, atol=0.15)


def test_svi_fits_linear_function_nnx_linear():
    x, y = regression_data()
    module = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
    model = regression_model(lambda: flax_module("linear", module))
    svi = SVI(model, empty_guide, optax.adam(0.05), Trace_ELBO())
    result = svi.run(jax.random.key(0), 800, x, y, progress_bar=False)
    assert float(result.losses[-1]) < 0.05 * float(result.losses[0])
    fitted = result.params["linear$params"]
    np.testing.assert_allclose(fitted["kernel"][:, 0], TRUE_W, atol=0.05)
    np.testing.assert_allclose(fitted["bias"], [TRUE_B], atol=0.05)


# ---------------------------------------------------------------------------------------------
# random_flax_module
# ---------------------------------------------------------------------------------------------

PER_LEAF_PRIOR = {"kernel": dist.Normal(0.0, 1.0), "bias": dist.Normal(0.0, 10.0)}


def _check_leaf_sites(tr, name, shapes: dict):
    sample_sites = {k: s for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
    assert set(sample_sites) == {f"{name}/{p}" for p in shapes}
    for path, shape in shapes.items():
        site = tr[f"{name}/{path}"]
        assert site["value"].shape == shape
        assert site["fn"].batch_shape == () and site["fn"].event_shape == shape
        expected_scale = 10.0 if path.endswith("bias") else 1.0
        base = site["fn"].base_dist.base_dist  # Independent(ExpandedDistribution(Normal))
        assert isinstance(base, dist.Normal)
        np.testing.assert_allclose(base.scale, expected_scale)


@pytest.mark.parametrize("flavour", ["linen", "nnx"])
def test_random_flax_module_sites_per_leaf(flavour):
    if flavour == "linen":
        make = lambda: random_flax_module(
            "bnn", LinenMLP(hidden=4), PER_LEAF_PRIOR, input_shape=(1, 2)
        )
        shapes = {
            "Dense_0.bias": (1,),
            "Dense_0.kernel": (4, 1),
            "Dense_1.bias": (4,),
            "Dense_1.kernel": (2, 4),
        }
    else:
        module = NNXMLP(nnx.Rngs(0))
        make = lambda: random_flax_module("bnn", module, PER_LEAF_PRIOR)
        shapes = {
            "layers.0.bias": (4,),
            "layers.0.kernel": (2, 4),
            "layers.1.bias": (1,),
            "layers.1.kernel": (4, 1),
        }
    x = jnp.ones((3, 2))
    model = lambda x: make()(x)
    tr = trace(seed(model, 0)).get_trace(x)
    _check_leaf_sites(tr, "bnn", shapes)
    assert not any(s["type"] == "param" for s in tr.values())
    # Different seeds, different networks.
    assert not np.allclose(seed(model, 0)(x), seed(model, 1)(x))


def test_random_flax_module_prior_forms():
    module = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    x = jnp.ones((1, 3))

    def sites(prior):
        tr = trace(seed(lambda: random_flax_module("lin", module, prior)(x), 0)).get_trace()
        return tr

    # One distribution for all leaves; a batch shape that broadcasts to the leaf is kept.
    tr = sites(dist.Laplace(0.0, jnp.array([1.0, 2.0])))
    assert tr["lin/kernel"]["fn"].event_shape == (3, 2)
    np.testing.assert_allclose(tr["lin/kernel"]["fn"].base_dist.base_dist.scale, [1.0, 2.0])
    # A callable (path, shape) -> Distribution.
    seen = {}

    def prior_fn(path, shape):
        seen[path] = shape
        return dist.Normal(0.0, 1.0 / np.sqrt(shape[0]) if path == "kernel" else 1.0)

    tr = sites(prior_fn)
    assert seen == {"bias": (2,), "kernel": (3, 2)}
    np.testing.assert_allclose(tr["lin/kernel"]["fn"].base_dist.base_dist.scale, 1 / np.sqrt(3))
    # Full paths take precedence over leaf names; unmatched leaves stay learnable params.
    tr = sites({"kernel": dist.Normal(0.0, 2.0)})
    assert tr["lin$params"]["type"] == "param" and tr["lin/kernel"]["type"] == "sample"
    assert "lin/bias" not in tr
    with pytest.raises(ValueError, match="match no parameter"):
        sites({"kernal": dist.Normal(0.0, 1.0)})
    with pytest.raises(ValueError, match="event shape"):
        sites(dist.MultivariateNormal(jnp.zeros(5), jnp.eye(5)))


@pytest.mark.parametrize("flavour", ["linen", "nnx"])
def test_random_flax_module_log_density(flavour):
    x, y = regression_data(n=20)
    sigma = 0.5
    if flavour == "linen":
        make = lambda: random_flax_module("reg", linen.Dense(1), PER_LEAF_PRIOR, input_shape=(1, 2))
    else:
        module = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
        make = lambda: random_flax_module("reg", module, PER_LEAF_PRIOR)
    model = regression_model(make, sigma)
    kernel = jnp.array([[0.3], [-1.2]])
    bias = jnp.array([0.7])
    # Linen needs no key either: parameter shapes come from jax.eval_shape.
    logp, _ = log_density(model, (x, y), {}, {"reg/kernel": kernel, "reg/bias": bias})
    norm_logpdf = lambda v, s: -0.5 * (v / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)
    mean = np.asarray(x) @ np.asarray(kernel)[:, 0] + float(bias[0])
    expected = (
        norm_logpdf(np.asarray(kernel), 1.0).sum()
        + norm_logpdf(np.asarray(bias), 10.0).sum()
        + norm_logpdf(np.asarray(y) - mean, sigma).sum()
    )
    np.testing.assert_allclose(float(logp), expected, rtol=1e-5)


def test_random_flax_module_bayesian_regression_autonormal():
    x, y = regression_data(n=40, noise=0.5)
    sigma = 0.5
    module = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
    model = regression_model(lambda: random_flax_module("reg", module, PER_LEAF_PRIOR), sigma)
    guide = AutoNormal(model)
    svi = SVI(model, guide, optax.adam(0.05), Trace_ELBO(num_particles=2))
    result = svi.run(jax.random.key(0), 1000, x, y, progress_bar=False)
    # Conjugate Gaussian posterior of (w1, w2, b).
    design = np.column_stack([np.asarray(x), np.ones(x.shape[0])])
    prior_precision = np.diag([1.0, 1.0, 1e-2])
    cov = np.linalg.inv(design.T @ design / sigma**2 + prior_precision)
    mean = cov @ design.T @ np.asarray(y) / sigma**2
    median = guide.median(result.params)
    fitted = np.concatenate([median["reg/kernel"][:, 0], median["reg/bias"]])
    np.testing.assert_allclose(fitted, mean, atol=0.05)
    scales = np.concatenate(
        [result.params["reg/kernel_auto_scale"][:, 0], result.params["reg/bias_auto_scale"]]
    )
    np.testing.assert_allclose(scales, np.sqrt(np.diag(cov)), rtol=0.3)


# ---------------------------------------------------------------------------------------------
# Amortized inference: the digits VAE of examples/vae.py
# ---------------------------------------------------------------------------------------------


def _load_vae_example():
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "vae.py"
    spec = importlib.util.spec_from_file_location("jppl_example_vae", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vae_digits_elbo_and_reconstruction():
    pytest.importorskip("sklearn")
    vae = _load_vae_example()
    x = vae.load_digits_binary()
    assert x.shape == (1797, 64) and set(np.unique(np.asarray(x))) == {0.0, 1.0}
    model, guide = vae.make_vae(latent_dim=2, hidden=64)
    svi = SVI(model, guide, optax.adam(1e-2), Trace_ELBO())
    start = time.perf_counter()
    result = svi.run(jax.random.key(0), 800, x, progress_bar=False)
    elapsed = time.perf_counter() - start
    losses = np.asarray(result.losses) / x.shape[0]  # -ELBO per image, in nats
    assert set(result.params) == {"encoder$params", "decoder$params"}
    initial, final = losses[0], losses[-50:].mean()
    print(f"VAE -ELBO/image: {initial:.1f} -> {final:.1f} in 800 steps ({elapsed:.1f} s)")
    assert final < 0.5 * initial  # at least a 50% reduction of the loss
    recon_mse, mean_mse = vae.mean_squared_errors(model, guide, result.params, x)
    print(f"VAE per-pixel MSE: reconstruction {recon_mse:.4f}, mean image {mean_mse:.4f}")
    assert recon_mse < 0.8 * mean_mse


@pytest.mark.slow
def test_random_flax_module_nuts():
    from jppl.infer import MCMC, NUTS

    x, y = regression_data(n=30, noise=0.5)
    module = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
    model = regression_model(lambda: random_flax_module("reg", module, PER_LEAF_PRIOR), 0.5)
    mcmc = MCMC(NUTS(model), num_warmup=500, num_samples=500, progress_bar=False)
    mcmc.run(jax.random.key(0), x, y)
    samples = mcmc.get_samples()
    np.testing.assert_allclose(samples["reg/kernel"].mean(0)[:, 0], TRUE_W, atol=0.3)
    np.testing.assert_allclose(samples["reg/bias"].mean(0), [TRUE_B], atol=0.3)
