"""``BernoulliLogitGLM``: values and gradients against ``Bernoulli(logits=x @ beta + alpha)``.

The reference is the plain distribution differentiated by JAX; the fused custom VJP must agree
for summed (constant cotangent) and weighted (mask, per-row scale) log-probabilities, for both
storage layouts, in float32 and float64, with several row blocks and a ragged last block.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jppl
import jppl.distributions as dist
from jppl import handlers
from jppl.distributions import glm
from jppl.infer import log_density
from jppl.infer.predictive import log_likelihood

N, D = 203, 5


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Blocks of 16 rows: 12 full blocks and a ragged one of 11 rows."""
    monkeypatch.setattr(glm, "_BLOCK_ELEMENTS", 16 * D)


def _data(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((N, D)), dtype)
    beta = jnp.asarray(rng.standard_normal(D), dtype)
    alpha = jnp.asarray(-0.4, dtype)
    y = jnp.asarray(rng.random(N) < 0.4, dtype)
    return x, alpha, beta, y


def _glm(x, alpha, beta, feature_major):
    if feature_major:
        return dist.BernoulliLogitGLM(x.T, alpha, beta, feature_major=True)
    return dist.BernoulliLogitGLM(x, alpha, beta)


def _reference(x, alpha, beta):
    return dist.Bernoulli(logits=x @ beta + alpha)


TOL = {jnp.float32: dict(rtol=2e-5, atol=2e-5), jnp.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.mark.parametrize("feature_major", [False, True])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_values_and_gradients_match_bernoulli_logits(dtype, feature_major):
    with jax.enable_x64(dtype == jnp.float64):
        x, alpha, beta, y = _data(dtype)
        weights = jnp.asarray(np.random.default_rng(1).random(N), dtype)
        tol = TOL[dtype]

        def total(make, weighted):
            def f(x, alpha, beta):
                lp = make(x, alpha, beta).log_prob(y)
                return jnp.sum(weights * lp) if weighted else 2.5 * jnp.sum(lp)

            return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))

        per_row = _glm(x, alpha, beta, feature_major).log_prob(y)
        assert per_row.shape == (N,) and per_row.dtype == dtype
        np.testing.assert_allclose(per_row, _reference(x, alpha, beta).log_prob(y), **tol)
        make = lambda x, a, b: _glm(x, a, b, feature_major)
        for weighted in (False, True):  # constant cotangent, then a per-row one
            value, grads = total(make, weighted)(x, alpha, beta)
            ref_value, ref_grads = total(_reference, weighted)(x, alpha, beta)
            np.testing.assert_allclose(value, ref_value, **tol)
            for got, want in zip(grads, ref_grads, strict=True):
                assert got.dtype == dtype
                np.testing.assert_allclose(got, want, **tol)


def test_vector_intercept_and_invalid_labels():
    x, _, beta, y = _data(jnp.float32)
    alpha = jnp.linspace(-1.0, 1.0, N)
    f = lambda a, b: jnp.sum(dist.BernoulliLogitGLM(x, a, b).log_prob(y))
    g = lambda a, b: jnp.sum(_reference(x, a, b).log_prob(y))
    got_grads, want_grads = jax.grad(f, (0, 1))(alpha, beta), jax.grad(g, (0, 1))(alpha, beta)
    for got, want in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    bad = y.at[3].set(0.5).at[7].set(2.0)
    lp = dist.BernoulliLogitGLM(x, alpha, beta).log_prob(bad)
    assert np.isneginf(lp[3]) and np.isneginf(lp[7])
    np.testing.assert_allclose(
        np.delete(np.asarray(lp), [3, 7]),
        np.delete(np.asarray(_reference(x, alpha, beta).log_prob(y)), [3, 7]),
        rtol=2e-5,
    )


def _model(make_likelihood):
    def model(x, y):
        beta = jppl.sample("beta", dist.Normal(0.0, 1.0).expand([D]).to_event(1))
        alpha = jppl.sample("alpha", dist.Normal(0.0, 2.0))
        with jppl.plate("data", x.shape[0]):
            jppl.sample("y", make_likelihood(x, alpha, beta), obs=y)

    return model


def test_in_a_model_with_plate_mask_and_scale():
    x, _, _, y = _data(jnp.float32)
    params = {"beta": jnp.linspace(-1.0, 1.0, D), "alpha": jnp.asarray(0.2)}
    keep = jnp.asarray(np.random.default_rng(2).random(N) < 0.7)
    wrappers = {
        "plain": lambda m: m,
        "scaled": lambda m: handlers.scale(m, scale=3.0),
        "masked": lambda m: handlers.mask(m, mask=keep),
    }
    for name, wrap in wrappers.items():
        fused = wrap(_model(lambda x, a, b: dist.BernoulliLogitGLM(x, a, b)))
        plain = wrap(_model(lambda x, a, b: _reference(x, a, b)))

        def value(model, p):
            return log_density(model, (x, y), {}, p)[0]

        got, got_grad = jax.value_and_grad(lambda p, m=fused: value(m, p))(params)
        want, want_grad = jax.value_and_grad(lambda p, m=plain: value(m, p))(params)
        np.testing.assert_allclose(got, want, rtol=2e-5, err_msg=name)
        for k in params:
            np.testing.assert_allclose(got_grad[k], want_grad[k], rtol=2e-5, atol=2e-5)
    # per-observation log-likelihoods (posterior draws of shape (2, ...))
    draws = {k: jnp.stack([v, 0.5 * v]) for k, v in params.items()}
    fused = log_likelihood(_model(lambda x, a, b: dist.BernoulliLogitGLM(x, a, b)), draws, x, y)
    plain = log_likelihood(_model(_reference), draws, x, y)
    assert fused["y"].shape == (2, N)
    np.testing.assert_allclose(fused["y"], plain["y"], rtol=2e-5, atol=2e-6)


def test_sample_mean_and_shapes():
    x, alpha, beta, _ = _data(jnp.float32)
    d = dist.BernoulliLogitGLM(x, alpha, beta)
    assert d.batch_shape == (N,) and d.event_shape == ()
    np.testing.assert_allclose(d.mean, jax.nn.sigmoid(x @ beta + alpha), rtol=1e-6)
    draws = d.sample(jax.random.key(0), (4000,))
    assert draws.shape == (4000, N)
    assert set(np.unique(np.asarray(draws))) <= {0, 1}
    # the frequencies of 4000 draws are within 5 binomial standard errors of the means
    p = np.asarray(d.mean)
    se = np.sqrt(p * (1 - p) / 4000)
    assert np.all(np.abs(np.asarray(draws).mean(0) - p) < 5 * se + 1e-3)
    # a value with a leading sample dim is scored row by row
    lp = d.log_prob(draws[:3])
    np.testing.assert_allclose(
        lp, _reference(x, alpha, beta).log_prob(draws[:3]), rtol=2e-5, atol=2e-6
    )


def test_bad_arguments_name_the_argument():
    x, alpha, beta, y = _data(jnp.float32)
    with pytest.raises(ValueError, match="x must be a"):
        dist.BernoulliLogitGLM(x[0], alpha, beta)
    with pytest.raises(ValueError, match=r"beta must have shape \(D,\) = \(5,\)"):
        dist.BernoulliLogitGLM(x, alpha, beta[:3])
    with pytest.raises(ValueError, match="alpha must be a scalar"):
        dist.BernoulliLogitGLM(x, jnp.zeros(3), beta)
    with pytest.raises(ValueError, match=r"beta must have shape \(D,\) = \(203,\)"):
        dist.BernoulliLogitGLM(x, alpha, beta, feature_major=True)  # x is not (D, N)
    with pytest.raises(ValueError, match="value must have shape"):
        glm.bernoulli_logit_glm_log_prob(x, alpha, beta, y[:10])
