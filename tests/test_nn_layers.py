"""Tests of jppl.nn.BayesianModule (mean-field Bayesian Flax modules) and jppl.nn.priors."""

import math

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats as st
from flax import nnx

import jppl
import jppl.distributions as dist
from jppl.handlers import seed, substitute, trace
from jppl.nn import (
    BayesianModule,
    normal_prior,
    param_paths,
    sample_predictions,
    scale_mixture_prior,
)
from jppl.vi import SVI, Trace_ELBO, TraceMeanField_ELBO, get_importance_traces, particle_keys

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def guide_trace(bnn, *inputs, key=0):
    """Trace of the guide side plus the output of its network on ``inputs``."""
    out = {}

    def fn():
        net = bnn.guide()
        out["y"] = net(*inputs)
        out["params"] = net.params

    tr = trace(seed(fn, key)).get_trace()
    return tr, out["y"], out["params"]


def sample_sites(tr):
    return {k: v for k, v in tr.items() if v["type"] == "sample"}


def np_leaves(params):
    return {
        p: np.asarray(v, np.float64)
        for p, v in zip(param_paths(params), jax.tree_util.tree_leaves(params), strict=True)
    }


# Independent forward passes (numpy) for the simple layers; kernel layout is Flax's.
def np_dense(w, x):
    return x @ w["kernel"] + w["bias"]


def np_conv1d_valid(w, x):
    k = w["kernel"]  # (width, in, out)
    width = k.shape[0]
    steps = x.shape[1] - width + 1
    out = np.stack([np.einsum("bwc,wco->bo", x[:, t : t + width], k) for t in range(steps)], 1)
    return out + w["bias"]


def np_embed(w, idx):
    return w["embedding"][idx.astype(int)]


X_DENSE = jax.random.normal(jax.random.key(10), (5, 3))
X_SEQ = jax.random.normal(jax.random.key(11), (2, 6, 2))
X_IDX = jnp.array([[0, 4, 2], [1, 1, 3]])
X_ATT = jax.random.normal(jax.random.key(12), (2, 5, 4))

NNX_CASES = {
    "linear": (lambda r: nnx.Linear(3, 4, rngs=r), X_DENSE, np_dense),
    "conv": (
        lambda r: nnx.Conv(2, 3, kernel_size=(3,), padding="VALID", rngs=r),
        X_SEQ,
        np_conv1d_valid,
    ),
    "embed": (lambda r: nnx.Embed(5, 3, rngs=r), X_IDX, np_embed),
    "attention": (
        lambda r: nnx.MultiHeadAttention(
            num_heads=2, in_features=4, qkv_features=4, decode=False, rngs=r
        ),
        X_ATT,
        None,
    ),
}

LINEN_CASES = {
    "dense": (linen.Dense(4), X_DENSE, np_dense),
    "conv": (linen.Conv(3, kernel_size=(3,), padding="VALID"), X_SEQ, np_conv1d_valid),
    "embed": (linen.Embed(5, 3), X_IDX, np_embed),
    "attention": (linen.MultiHeadDotProductAttention(num_heads=2, qkv_features=4), X_ATT, None),
}


# ---------------------------------------------------------------------------------------------
# Lifting Flax layers: Dense, Conv, Embed, attention (NNX and Linen)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(NNX_CASES))
def test_lift_nnx_layers(case):
    make, x, reference = NNX_CASES[case]
    module = make(nnx.Rngs(0))
    flax_params = nnx.to_pure_dict(nnx.state(module, nnx.Param))
    bnn = BayesianModule("layer", module, init_scale=0.05)
    tr, y, sampled = guide_trace(bnn, x)
    paths = param_paths(flax_params)
    assert sorted(bnn.site_names) == sorted(f"layer/{p}" for p in paths)
    assert sorted(sample_sites(tr)) == sorted(bnn.site_names)
    init = np_leaves(flax_params)
    for path in paths:
        site = tr[f"layer/{path}"]
        assert np.shape(site["value"]) == init[path].shape
        np.testing.assert_array_equal(tr[bnn.loc_name(path)]["value"], init[path])  # Flax init
        np.testing.assert_allclose(tr[bnn.scale_name(path)]["value"], 0.05, rtol=1e-6)
        assert not np.allclose(site["value"], init[path])  # a draw, not the mean
    # The model side has the same latent sites with the same shapes.
    model_tr = trace(seed(lambda: bnn.model()(x), 1)).get_trace()
    assert {k: np.shape(v["value"]) for k, v in sample_sites(model_tr).items()} == {
        k: np.shape(v["value"]) for k, v in sample_sites(tr).items()
    }
    # The network uses the sampled weights: compare with an independent forward pass.
    if reference is not None:
        expected = reference(np_leaves(sampled), np.asarray(x, np.float64))
    else:
        graphdef, state = nnx.split(make(nnx.Rngs(0)))
        nnx.replace_by_pure_dict(state, jax.tree_util.tree_map(jnp.asarray, sampled))
        expected = nnx.merge(graphdef, state)(x)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", list(LINEN_CASES))
def test_lift_linen_layers(case):
    module, x, reference = LINEN_CASES[case]
    if case == "embed":  # integer inputs: pass an example instead of input_shape (ones)
        bnn = BayesianModule("layer", module, init_scale=0.05, inputs=x)
    else:
        bnn = BayesianModule("layer", module, init_scale=0.05, input_shape=x.shape)
    tr, y, sampled = guide_trace(bnn, x)
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), x))["params"]
    paths = param_paths(shapes)
    assert sorted(sample_sites(tr)) == sorted(f"layer/{p}" for p in paths)
    for path, leaf in zip(paths, jax.tree_util.tree_leaves(shapes), strict=True):
        assert np.shape(tr[f"layer/{path}"]["value"]) == leaf.shape
        assert np.shape(tr[bnn.loc_name(path)]["value"]) == leaf.shape
    if reference is not None:
        expected = reference(np_leaves(sampled), np.asarray(x, np.float64))
    else:
        expected = module.apply({"params": sampled}, x)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_guide_draws_are_reparameterized_normal_per_draw():
    # Each draw (vmapped over keys, as ELBO particles are) gets independent N(loc, scale).
    bnn = BayesianModule("d", nnx.Linear(2, 2, rngs=nnx.Rngs(0)), init_scale=0.2)
    tr, _, _ = guide_trace(bnn, X_DENSE[:, :2])
    params = {k: v["value"] for k, v in tr.items() if v["type"] == "param"}
    params["d/kernel$scale"] = jnp.array([[0.1, 0.5], [1.0, 2.0]])
    draws = sample_predictions(
        jax.random.key(3), lambda: bnn.guide().params["kernel"], params, num_samples=4000
    )
    draws = np.asarray(draws).reshape(4000, 4)
    loc = np.asarray(params["d/kernel$loc"]).ravel()
    scale = np.asarray(params["d/kernel$scale"]).ravel()
    assert np.all(np.abs(draws.mean(0) - loc) < 5 * scale / math.sqrt(4000))
    np.testing.assert_allclose(draws.std(0), scale, rtol=0.05)
    corr = np.corrcoef(draws.T)[np.triu_indices(4, 1)]
    assert np.all(np.abs(corr) < 5 / math.sqrt(4000))

    # Gradient flows to loc and scale through the draw: d w / d loc = 1, d w / d scale = eps.
    def one_draw(p):
        return seed(substitute(lambda: bnn.guide().params["kernel"], data=p), 7)()

    g_loc = jax.grad(lambda p: one_draw(p)[0, 0])(params)
    assert float(g_loc["d/kernel$loc"][0, 0]) == 1.0
    w = one_draw(params)
    eps = (w - params["d/kernel$loc"]) / params["d/kernel$scale"]
    np.testing.assert_allclose(g_loc["d/kernel$scale"][0, 0], eps[0, 0], rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Priors
# ---------------------------------------------------------------------------------------------


def test_priors_match_scipy_and_per_leaf_dict():
    mix = scale_mixture_prior(0.25, 1.5, 0.1)
    bnn = BayesianModule(
        "d",
        nnx.Linear(3, 2, rngs=nnx.Rngs(0)),
        prior={"kernel": mix, "bias": normal_prior(2.0)},
    )
    tr = trace(seed(bnn.model, 0)).get_trace()
    w = np.asarray(tr["d/kernel"]["value"], np.float64)
    b = np.asarray(tr["d/bias"]["value"], np.float64)
    mix_pdf = 0.25 * st.norm(0, 1.5).pdf(w) + 0.75 * st.norm(0, 0.1).pdf(w)
    np.testing.assert_allclose(
        tr["d/kernel"]["fn"].log_prob(tr["d/kernel"]["value"]), np.log(mix_pdf).sum(), rtol=1e-5
    )
    np.testing.assert_allclose(
        tr["d/bias"]["fn"].log_prob(tr["d/bias"]["value"]),
        st.norm(0, 2.0).logpdf(b).sum(),
        rtol=1e-5,
    )
    # Draws from the mixture prior have its variance: 0.25 * 1.5^2 + 0.75 * 0.1^2.
    draws = np.asarray(mix.sample(jax.random.key(1), (20000,)))
    var = 0.25 * 1.5**2 + 0.75 * 0.1**2
    np.testing.assert_allclose(draws.var(), var, rtol=0.05)


def test_prior_argument_errors():
    with pytest.raises(ValueError, match=r"scale_mixture_prior: mix must be in \(0, 1\)"):
        scale_mixture_prior(1.0)
    with pytest.raises(ValueError, match="scale_mixture_prior: scale2 must be"):
        scale_mixture_prior(0.5, 1.0, 0.0)
    with pytest.raises(ValueError, match="normal_prior: scale must be"):
        normal_prior(-1.0)


# ---------------------------------------------------------------------------------------------
# The loss: -E[log lik] + beta * KL
# ---------------------------------------------------------------------------------------------


class TinyMLP(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(3, 4, rngs=rngs)
        self.l2 = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        return self.l2(jnp.tanh(self.l1(x)))


def np_tiny_mlp(w, x):
    h = np.tanh(x @ w["l1.kernel"] + w["l1.bias"])
    return h @ w["l2.kernel"] + w["l2.bias"]


def np_log_lik(w, x, y):
    logits = np_tiny_mlp(w, x)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return log_p[np.arange(len(y)), y].sum()


def classifier(bnn):
    def model(x, y=None):
        logits = bnn.model()(x)
        with jppl.plate("data", x.shape[0]):
            jppl.sample("y", dist.CategoricalLogits(logits), obs=y)

    def guide(x, y=None):
        bnn.guide()

    return model, guide


X_CLS = jax.random.normal(jax.random.key(20), (16, 3))
Y_CLS = (X_CLS[:, 0] + X_CLS[:, 1] > 0).astype(jnp.int32)


def _loss_and_draws(bnn, elbo, beta_seed=0):
    model, guide = classifier(bnn)
    svi = SVI(model, guide, optax.adam(1e-2), elbo)
    params = svi.get_params(svi.init(jax.random.key(beta_seed), X_CLS, Y_CLS))
    key = jax.random.key(5)
    loss = float(elbo.loss(key, params, model, guide, X_CLS, Y_CLS))
    draws = []  # the weights particle i used (same keys as the loss)
    for k in particle_keys(key, jnp.arange(elbo.num_particles)):
        _, g_tr = get_importance_traces(k, params, model, guide, (X_CLS, Y_CLS), {})
        draws.append({p: np.asarray(g_tr[f"net/{p}"]["value"], np.float64) for p in bnn.paths})
    post = {
        p: tuple(np.asarray(a, np.float64) for a in ls) for p, ls in bnn.posterior(params).items()
    }
    return loss, draws, post


@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_mean_field_loss_is_nll_plus_beta_analytic_kl(beta):
    bnn = BayesianModule(
        "net", TinyMLP(nnx.Rngs(0)), prior=normal_prior(0.7), init_scale=0.3, kl_weight=beta
    )
    loss, draws, post = _loss_and_draws(bnn, TraceMeanField_ELBO(num_particles=3))
    x, y = np.asarray(X_CLS, np.float64), np.asarray(Y_CLS)
    exp_nll = -np.mean([np_log_lik(w, x, y) for w in draws])
    kl = 0.0
    for m, s in post.values():  # KL(N(m, s^2) || N(0, 0.7^2)), closed form
        kl += np.sum(np.log(0.7 / s) + (s**2 + m**2) / (2 * 0.7**2) - 0.5)
    np.testing.assert_allclose(loss, exp_nll + beta * kl, rtol=1e-5)


@pytest.mark.parametrize(
    "elbo, prior",
    [
        (Trace_ELBO(num_particles=3), "normal"),
        (TraceMeanField_ELBO(num_particles=3), "mixture"),  # no closed form: Monte Carlo
    ],
)
def test_monte_carlo_kl_is_scaled_by_beta(elbo, prior):
    beta = 0.3
    p = normal_prior(0.7) if prior == "normal" else scale_mixture_prior(0.5, 1.0, 0.05)
    bnn = BayesianModule("net", TinyMLP(nnx.Rngs(0)), prior=p, init_scale=0.3, kl_weight=beta)
    loss, draws, post = _loss_and_draws(bnn, elbo)
    x, y = np.asarray(X_CLS, np.float64), np.asarray(Y_CLS)

    def log_prior(w):
        if prior == "normal":
            return st.norm(0, 0.7).logpdf(w).sum()
        return np.log(0.5 * st.norm(0, 1.0).pdf(w) + 0.5 * st.norm(0, 0.05).pdf(w)).sum()

    per_particle = []
    for w in draws:
        log_ratio = sum(
            log_prior(w[p]) - st.norm(post[p][0], post[p][1]).logpdf(w[p]).sum() for p in w
        )
        per_particle.append(np_log_lik(w, x, y) + beta * log_ratio)
    np.testing.assert_allclose(loss, -np.mean(per_particle), rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Partially Bayesian modules, fitting, errors
# ---------------------------------------------------------------------------------------------


def test_dict_prior_leaves_uncovered_leaves_deterministic_and_svi_learns():
    bnn = BayesianModule("net", TinyMLP(nnx.Rngs(0)), prior={"kernel": normal_prior(1.0)})
    assert bnn.site_names == ["net/l1.kernel", "net/l2.kernel"]
    model, guide = classifier(bnn)
    svi = SVI(model, guide, optax.adam(3e-2), TraceMeanField_ELBO(num_particles=2))
    result = svi.run(jax.random.key(0), 300, X_CLS, Y_CLS, progress_bar=False)
    assert "net$params" in result.params  # the biases: one param site shared by both sides
    assert set(bnn.posterior(result.params)) == {"l1.kernel", "l2.kernel"}
    assert float(np.mean(result.losses[-20:])) < 0.5 * float(result.losses[0])


def test_bayesian_module_errors():
    lin = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="prior keys \\['kernl'\\] match no parameter"):
        BayesianModule("net", lin, prior={"kernl": normal_prior()})
    with pytest.raises(TypeError, match="prior must be a Distribution"):
        BayesianModule("net", lin, prior=3.0)
    with pytest.raises(ValueError, match="init_scale for 'bias' must be finite and > 0"):
        BayesianModule("net", lin, init_scale=lambda path, shape: 0.0 if path == "bias" else 0.1)
    with pytest.raises(ValueError, match="kl_weight must be finite and > 0"):
        BayesianModule("net", lin, kl_weight=0.0)
    with pytest.raises(TypeError, match="kl_weight must be a positive scalar"):
        BayesianModule("net", lin, kl_weight="1")
    with pytest.raises(TypeError, match="pass a module instance, not the class"):
        BayesianModule("net", nnx.Linear)
    with pytest.raises(ValueError, match="non-parameter variables"):
        BayesianModule("net", nnx.BatchNorm(3, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="a Linen module needs input_shape"):
        BayesianModule("net", linen.Dense(2))
    bnn = BayesianModule("net", lin)
    with pytest.raises(KeyError, match="params lack the sites"):
        bnn.posterior({})


def test_kl_weight_can_be_a_model_argument():
    # A beta passed as an argument (e.g. a KL-annealing schedule value) reaches model and
    # guide as the same array, so the analytic KL is still used and scaled by it.
    bnn = BayesianModule("net", TinyMLP(nnx.Rngs(0)), prior=normal_prior(0.7), init_scale=0.3)

    def model(x, y, beta):
        logits = bnn.model(kl_weight=beta)(x)
        with jppl.plate("data", x.shape[0]):
            jppl.sample("y", dist.CategoricalLogits(logits), obs=y)

    def guide(x, y, beta):
        bnn.guide(kl_weight=beta)

    elbo = TraceMeanField_ELBO(num_particles=2)
    svi = SVI(model, guide, optax.adam(1e-2), elbo)
    params = svi.get_params(svi.init(jax.random.key(0), X_CLS, Y_CLS, 1.0))
    key = jax.random.key(1)
    loss = {
        b: float(elbo.loss(key, params, model, guide, X_CLS, Y_CLS, jnp.asarray(b)))
        for b in (0.2, 1.0)
    }
    kl = 0.0
    for m, s in bnn.posterior(params).values():
        m, s = np.asarray(m, np.float64), np.asarray(s, np.float64)
        kl += np.sum(np.log(0.7 / s) + (s**2 + m**2) / (2 * 0.7**2) - 0.5)
    # Same draws at both betas, so the difference is exactly (1.0 - 0.2) * analytic KL.
    np.testing.assert_allclose(loss[1.0] - loss[0.2], 0.8 * kl, rtol=1e-4)
