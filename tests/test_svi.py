"""Tests of jppl.vi: ELBOs (Trace, mean-field, Rényi, score function), SVI and minibatching.

Numbers are checked against closed forms: the conjugate Normal-Normal posterior and evidence,
the exact ELBO of Normal guides, and the exact ELBO of a Bernoulli latent (by enumeration).
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, PartitionSpec

import jppl
import jppl.distributions as dist
from jppl.distributions import constraints
from jppl.handlers import substitute
from jppl.infer import SVI, RenyiELBO, SVIState, Trace_ELBO, TraceMeanField_ELBO
from jppl.vi import (
    NonFiniteWarning,
    epoch_batches,
    get_importance_traces,
    load_state,
    minibatches,
    particle_keys,
    save_state,
)

# ---------------------------------------------------------------------------------------------
# A conjugate model: mu ~ N(M0, S0), x_i ~ N(mu, SIGMA)
# ---------------------------------------------------------------------------------------------

M0, S0, SIGMA = 0.5, 2.0, 1.5
X = jnp.asarray(np.random.default_rng(0).normal(1.3, SIGMA, size=20), jnp.float32)


def normal_model(x):
    mu = jppl.sample("mu", dist.Normal(M0, S0))
    with jppl.plate("data", x.shape[0]):
        jppl.sample("x", dist.Normal(mu, SIGMA), obs=x)


def normal_guide(x):
    loc = jppl.param("loc", 0.0)
    scale = jppl.param("scale", 1.0, constraint=constraints.positive)
    jppl.sample("mu", dist.Normal(loc, scale))


def exact_posterior(x):
    x = np.asarray(x, np.float64)
    prec = 1 / S0**2 + len(x) / SIGMA**2
    return (M0 / S0**2 + x.sum() / SIGMA**2) / prec, prec**-0.5


def exact_elbo(x, loc, scale):
    """E_q[log p(x, mu) - log q(mu)] for q = N(loc, scale), in closed form."""
    x = np.asarray(x, np.float64)
    loglik = np.sum(
        -0.5 * np.log(2 * np.pi * SIGMA**2) - ((x - loc) ** 2 + scale**2) / (2 * SIGMA**2)
    )
    kl = np.log(S0 / scale) + (scale**2 + (loc - M0) ** 2) / (2 * S0**2) - 0.5
    return loglik - kl


def log_evidence(x):
    x = np.asarray(x, np.float64)
    n = len(x)
    cov = SIGMA**2 * np.eye(n) + S0**2 * np.ones((n, n))
    diff = x - M0
    _, logdet = np.linalg.slogdet(cov)
    return -0.5 * (n * np.log(2 * np.pi) + logdet + diff @ np.linalg.solve(cov, diff))


PARAMS = {"loc": jnp.asarray(0.3), "scale": jnp.asarray(0.4)}


# ---------------------------------------------------------------------------------------------
# Posterior recovery
# ---------------------------------------------------------------------------------------------


def test_conjugate_normal_posterior_recovered():
    steps = 3000
    schedule = optax.exponential_decay(0.05, transition_steps=steps, decay_rate=0.005)
    svi = SVI(normal_model, normal_guide, optax.adam(schedule), TraceMeanField_ELBO(32))
    result = svi.run(jax.random.key(0), steps, X, progress_bar=False)
    mean, sd = exact_posterior(X)
    assert result.losses.shape == (steps,)
    assert abs(float(result.params["loc"]) - mean) < 0.01 * abs(mean)
    assert abs(float(result.params["scale"]) - sd) < 0.01 * sd
    # get_params gives constrained values: scale = exp(unconstrained).
    np.testing.assert_allclose(
        result.params["scale"], jnp.exp(result.state.params["scale"]), rtol=1e-6
    )
    # The final loss is about the negative optimal ELBO = -log evidence (the guide is exact).
    np.testing.assert_allclose(np.mean(result.losses[-200:]), -log_evidence(X), rtol=2e-3)


# ---------------------------------------------------------------------------------------------
# Particles
# ---------------------------------------------------------------------------------------------


def two_latent_model(x):
    mu = jppl.sample("mu", dist.Normal(0.0, 2.0))
    tau = jppl.sample("tau", dist.LogNormal(0.0, 0.5))
    with jppl.plate("data", x.shape[0]):
        jppl.sample("x", dist.Normal(mu, tau), obs=x)


def two_latent_guide(x):
    loc = jppl.param("loc", 0.2)
    scale = jppl.param("scale", 0.5, constraint=constraints.positive)
    tau_loc = jppl.param("tau_loc", 0.1)
    jppl.sample("mu", dist.Normal(loc, scale))
    jppl.sample("tau", dist.LogNormal(tau_loc, 0.3))


def test_multi_particle_gradient_is_mean_of_particle_gradients():
    elbo = Trace_ELBO(num_particles=5)
    key = jax.random.key(1)
    params = {"loc": jnp.asarray(0.2), "scale": jnp.asarray(0.5), "tau_loc": jnp.asarray(0.1)}
    loss, grad = jax.jit(
        jax.value_and_grad(lambda p: elbo.loss(key, p, two_latent_model, two_latent_guide, X))
    )(params)

    def particle(p, i):
        k = jax.random.fold_in(key, i)
        return -elbo.particle_loss(k, p, two_latent_model, two_latent_guide, (X,), {})[0]

    particle_grad = jax.jit(jax.value_and_grad(particle))
    values, grads = [], []
    for i in range(5):
        v, g = particle_grad(params, i)
        values.append(v)
        grads.append(g)
    np.testing.assert_allclose(loss, np.mean(values), rtol=1e-6)
    for name in params:
        np.testing.assert_allclose(
            grad[name], np.mean([g[name] for g in grads]), rtol=1e-5, atol=1e-6
        )
    # Particle i's key depends only on the step key and i.
    keys = particle_keys(key, jnp.arange(5))
    np.testing.assert_array_equal(
        jax.random.key_data(keys[3]), jax.random.key_data(jax.random.fold_in(key, 3))
    )


def test_renyi_near_one_matches_trace_elbo_and_bounds_are_ordered():
    with pytest.raises(ValueError, match="alpha = 1"):
        RenyiELBO(alpha=1.0)
    n = 16

    def losses(k):
        out = [Trace_ELBO(n).loss(k, PARAMS, normal_model, normal_guide, X)]
        for alpha in (0.999, 0.5, 0.0):
            out.append(RenyiELBO(alpha, n).loss(k, PARAMS, normal_model, normal_guide, X))
        return out

    keys = jax.random.split(jax.random.key(2), 200)
    lt, l999, l05, l0 = (np.asarray(v) for v in jax.jit(jax.vmap(losses))(keys))
    # alpha -> 1: the same value as the ELBO on the same particles.
    np.testing.assert_allclose(l999, lt, rtol=2e-3)
    # For the same particles the Rényi bound decreases with alpha (power means):
    # IWAE (alpha=0) >= alpha=0.5 >= ELBO, i.e. the losses increase.
    assert np.all(np.asarray(l0) <= np.asarray(l05) + 1e-4)
    assert np.all(np.asarray(l05) <= np.asarray(lt) + 1e-4)
    # In expectation: ELBO (exact) <= IWAE <= log evidence.
    iwae, se = -np.mean(l0), np.std(l0) / np.sqrt(len(l0))
    np.testing.assert_allclose(-np.mean(lt), exact_elbo(X, 0.3, 0.4), rtol=1e-2)
    assert exact_elbo(X, 0.3, 0.4) < iwae - 4 * se
    assert iwae < log_evidence(X) + 4 * se


LOCAL_X = jnp.linspace(-2.0, 2.0, 30)
LOCAL_M = jnp.linspace(-0.5, 0.5, 30)
LOCAL_S = jnp.linspace(0.3, 1.2, 30)


def local_model(x):
    with jppl.plate("data", x.shape[0]):
        u = jppl.sample("u", dist.Normal(0.0, 1.0))
        jppl.sample("x", dist.Normal(u, 3.0), obs=x)


def local_guide(x):
    with jppl.plate("data", x.shape[0]):
        jppl.sample("u", dist.Normal(jppl.param("m", LOCAL_M), jppl.param("s", LOCAL_S)))


def test_trace_mean_field_matches_trace_elbo_with_lower_variance():
    s = 4000
    key = jax.random.key(3)
    keys = particle_keys(key, jnp.arange(s))
    params = {"m": LOCAL_M, "s": LOCAL_S}

    def run(k):
        out = {}
        for elbo in (Trace_ELBO(s), TraceMeanField_ELBO(s)):
            out[type(elbo).__name__] = elbo.loss_from_particles(
                k, params, local_model, local_guide, (LOCAL_X,)
            )[0]
        mf_loss = TraceMeanField_ELBO(s).loss(key, params, local_model, local_guide, LOCAL_X)
        return out, mf_loss

    per, mf_loss = jax.jit(run)(keys)
    m, sd, x = (np.asarray(a, np.float64) for a in (LOCAL_M, LOCAL_S, LOCAL_X))
    loglik = -0.5 * np.log(2 * np.pi * 9.0) - ((x - m) ** 2 + sd**2) / 18.0
    kl = -np.log(sd) + (sd**2 + m**2) / 2 - 0.5
    truth = np.sum(loglik - kl)
    for values in per.values():
        values = np.asarray(values, np.float64)
        assert abs(values.mean() - truth) < 4 * values.std() / np.sqrt(s)
    assert np.var(per["TraceMeanField_ELBO"]) < 0.2 * np.var(per["Trace_ELBO"])
    # The loss is the negative mean of the particles.
    np.testing.assert_allclose(mf_loss, -np.mean(per["TraceMeanField_ELBO"]), rtol=1e-5)


def test_mean_field_falls_back_to_monte_carlo_without_registered_kl():
    # Gumbel guide vs Normal prior: no KL registered, so the MC term is used (no error).
    def guide(x):
        jppl.sample("mu", dist.Gumbel(jppl.param("loc", 0.3), 0.4))

    key = jax.random.key(4)
    a = TraceMeanField_ELBO(3).loss(key, {"loc": 0.3}, normal_model, guide, X)
    b = Trace_ELBO(3).loss(key, {"loc": 0.3}, normal_model, guide, X)
    np.testing.assert_allclose(a, b, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Score-function gradients
# ---------------------------------------------------------------------------------------------

X_OBS = 0.8
P_PRIOR = 0.3


def bernoulli_model():
    z = jppl.sample("z", dist.Bernoulli(probs=P_PRIOR))
    jppl.sample("x", dist.Normal(3.0 * z - 1.0, 1.0), obs=X_OBS)


def bernoulli_guide():
    q = jppl.param("q", 0.5, constraint=constraints.unit_interval)
    jppl.sample("z", dist.Bernoulli(probs=q))


def exact_bernoulli_elbo(q):
    total = 0.0
    for z, qz, pz in ((0.0, 1 - q, 1 - P_PRIOR), (1.0, q, P_PRIOR)):
        log_lik = jax.scipy.stats.norm.logpdf(X_OBS, 3.0 * z - 1.0, 1.0)
        total = total + qz * (jnp.log(pz) + log_lik - jnp.log(qz))
    return total


@pytest.mark.parametrize("num_particles", [1, 64])
def test_score_function_gradient_matches_exact_gradient(num_particles):
    q = 0.35
    exact_value = float(exact_bernoulli_elbo(q))
    exact_grad = float(jax.grad(exact_bernoulli_elbo)(q))
    elbo = Trace_ELBO(num_particles)

    def loss_and_grad(key):
        return jax.value_and_grad(lambda p: elbo.loss(key, p, bernoulli_model, bernoulli_guide))(
            {"q": jnp.asarray(q)}
        )

    reps = 256000 // num_particles
    values, grads = jax.jit(jax.vmap(loss_and_grad))(jax.random.split(jax.random.key(5), reps))
    grads = np.asarray(grads["q"], np.float64)
    values = np.asarray(values, np.float64)
    g_mean, g_se = grads.mean(), grads.std() / np.sqrt(reps)
    assert g_se < 0.05 * abs(exact_grad)  # the test can tell a wrong gradient apart
    assert abs(g_mean - (-exact_grad)) < 4 * g_se
    # The loss value is the plain (negative) ELBO estimate.
    assert abs(values.mean() + exact_value) < 4 * values.std() / np.sqrt(reps) + 1e-6


def test_nonreparameterized_continuous_site_is_detached():
    # VonMises has no reparameterized sampler: the draw must not be differentiated through.
    def model():
        jppl.sample("a", dist.VonMises(0.0, 2.0))

    def guide():
        jppl.sample("a", dist.VonMises(jppl.param("m", 0.5), 3.0))

    def loss(p):
        return Trace_ELBO(4).loss(jax.random.key(6), p, model, guide)

    grad = jax.jit(jax.grad(loss))({"m": jnp.asarray(0.5)})
    assert np.isfinite(grad["m"])


# ---------------------------------------------------------------------------------------------
# Subsampling
# ---------------------------------------------------------------------------------------------

N_SUB, B_SUB = 6, 2
X_SUB = jnp.asarray([0.3, -1.2, 2.0, 0.7, 1.1, -0.4])


def sub_model(x_batch, idx):
    z = jppl.sample("z", dist.Normal(0.0, 1.0))
    with jppl.plate("data", N_SUB, subsample_size=idx.shape[0]):
        u = jppl.sample("u", dist.Normal(z, 1.0))
        jppl.sample("x", dist.Normal(u, 0.5), obs=x_batch)


U_LOC = jnp.linspace(-0.5, 1.0, N_SUB)
U_SCALE = jnp.linspace(0.3, 0.6, N_SUB)


def sub_guide(x_batch, idx):
    """The local latents are sampled without a plate (one event of the minibatch's size)."""
    jppl.sample("z", dist.Normal(jppl.param("mz", 0.4), 0.7))
    jppl.sample("u", dist.Normal(U_LOC[idx], U_SCALE[idx]).to_event(1))


def test_subsampled_elbo_unbiased_exact_enumeration():
    # Fixed key: same draw of the global latent; all minibatches enumerated: the mean of the
    # minibatch estimates equals the full-data estimate exactly (the local KLs are analytic).
    key = jax.random.key(7)

    def guide_plated(x_batch, idx):
        jppl.sample("z", dist.Normal(jppl.param("mz", 0.4), 0.7))
        with jppl.plate("local", idx.shape[0]):
            jppl.sample("u", dist.Normal(U_LOC[idx], U_SCALE[idx]))

    def model_indep(x_batch, idx):
        # u does not feed x, so with analytic KLs only z is Monte Carlo (fixed by the key).
        z = jppl.sample("z", dist.Normal(0.0, 1.0))
        with jppl.plate("data", N_SUB, subsample_size=idx.shape[0]):
            jppl.sample("u", dist.Normal(z, 1.0))
            jppl.sample("x", dist.Normal(z, 0.5), obs=x_batch)

    def guide_unplated(x_batch, idx):
        jppl.sample("z", dist.Normal(jppl.param("mz", 0.4), 0.7))
        jppl.sample("u", dist.Normal(U_LOC[idx], U_SCALE[idx]))

    elbo = TraceMeanField_ELBO(1)
    params = {"mz": jnp.asarray(0.4)}

    def loss(guide, idx):
        return elbo.loss(key, params, model_indep, guide, X_SUB[idx], idx)

    full = jax.jit(lambda: loss(guide_unplated, jnp.arange(N_SUB)))()
    subsets = jnp.asarray(list(itertools.combinations(range(N_SUB), B_SUB)))
    for guide in (guide_unplated, guide_plated):
        # (guide_plated has a plate of another name: its log q is scaled by the model's plate.)
        values = jax.jit(jax.vmap(lambda idx, guide=guide: loss(guide, idx)))(subsets)
        np.testing.assert_allclose(np.mean(values), full, rtol=1e-5)


def test_subsampled_trace_elbo_unbiased_with_unplated_guide():
    z0 = 0.25
    guide = substitute(sub_guide, data={"z": jnp.asarray(z0)})  # same global latent draw
    params = {"mz": jnp.asarray(0.4)}
    elbo = Trace_ELBO(1)
    reps = 20000

    def one(key):
        k1, k2 = jax.random.split(key)
        idx = jax.random.permutation(k1, N_SUB)[:B_SUB]
        return elbo.loss(k2, params, sub_model, guide, X_SUB[idx], idx)

    losses = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(8), reps)))

    # Exact full-data ELBO given z = z0, in closed form.
    def e_log_normal(m, s, a, tau):  # E_{u ~ N(m, s)} log N(u | a, tau)
        return -0.5 * np.log(2 * np.pi * tau**2) - ((m - a) ** 2 + s**2) / (2 * tau**2)

    m, s, x = np.asarray(U_LOC), np.asarray(U_SCALE), np.asarray(X_SUB)
    local = (
        e_log_normal(m, s, z0, 1.0)
        + e_log_normal(x, s, m, 0.5)  # E log N(x | u, 0.5) = same formula with roles swapped
        + 0.5 * np.log(2 * np.pi * np.e * s**2)
    )
    log_z = (
        -0.5 * np.log(2 * np.pi)
        - 0.5 * z0**2
        - (-0.5 * np.log(2 * np.pi * 0.49) - (z0 - 0.4) ** 2 / 0.98)
    )
    truth = log_z + local.sum()
    se = losses.std() / np.sqrt(reps)
    assert abs(-losses.mean() - truth) < 4 * se
    # Without scaling log q of the unplated local latents the bias would be large.
    bias_if_unscaled = (
        (N_SUB / B_SUB - 1) * (B_SUB / N_SUB) * np.sum(0.5 * np.log(2 * np.pi * np.e * s**2))
    )
    assert abs(bias_if_unscaled) > 20 * se


def test_model_and_guide_plates_agree():
    def model():
        with jppl.plate("data", 10, subsample_size=3) as idx:
            jppl.sample("u", dist.Normal(0.0, 1.0))
        return idx

    def guide():
        with jppl.plate("data", 10, subsample_size=3):
            jppl.sample("u", dist.Normal(0.0, 2.0))

    model_trace, guide_trace = get_importance_traces(jax.random.key(9), {}, model, guide, (), {})
    np.testing.assert_array_equal(model_trace["data"]["value"], guide_trace["data"]["value"])
    assert model_trace["u"]["scale"] == pytest.approx(10 / 3)

    def bad_guide():
        with jppl.plate("data", 10, subsample_size=5):
            jppl.sample("u", dist.Normal(0.0, 2.0).expand([5]))

    with pytest.raises(ValueError, match="plate 'data'"):
        Trace_ELBO().loss(jax.random.key(0), {}, model, bad_guide)


def test_mismatched_guide_errors():
    def guide_missing(x):
        jppl.param("loc", 0.0)

    with pytest.raises(ValueError, match="'mu'.*no matching sample site"):
        Trace_ELBO().loss(jax.random.key(0), {}, normal_model, guide_missing, X)

    def prior_only():
        jppl.sample("mu", dist.Normal(0.0, 1.0))

    def guide_wrong_shape():
        jppl.sample("mu", dist.Normal(jnp.zeros(3), 1.0))

    with pytest.raises(ValueError, match="'mu'.*shape"):
        Trace_ELBO().loss(jax.random.key(0), {}, prior_only, guide_wrong_shape)


def test_minibatches():
    key = jax.random.key(10)
    batches = list(minibatches(key, 10, 3))
    assert [b.shape for b in batches] == [(3,)] * 3
    flat = np.concatenate(batches)
    assert len(set(flat.tolist())) == 9
    again = list(minibatches(key, 10, 3))
    np.testing.assert_array_equal(np.concatenate(again), flat)
    full = list(minibatches(key, 10, 3, drop_last=False))
    assert [b.shape for b in full] == [(3,), (3,), (3,), (1,)]
    assert sorted(np.concatenate(full).tolist()) == list(range(10))
    np.testing.assert_array_equal(epoch_batches(key, 10, 3).reshape(-1), flat)
    with pytest.raises(ValueError):
        list(minibatches(key, 3, 5))


# ---------------------------------------------------------------------------------------------
# SVI driver
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def normal_svi():
    """One SVI object (and its jitted update) shared by the driver tests: fewer compilations."""
    svi = SVI(normal_model, normal_guide, optax.adam(0.05), Trace_ELBO(4))
    return svi, jax.jit(svi.update)


def test_update_under_jit_and_run_resume_and_save_load(tmp_path, normal_svi):
    svi, jit_update = normal_svi
    state = svi.init(jax.random.key(11), X)
    assert isinstance(state, SVIState)
    assert set(state.params) == {"loc", "scale"}
    np.testing.assert_allclose(state.params["scale"], 0.0, atol=1e-7)  # log(1.0)
    assert int(state.step) == 0

    s_jit, l_jit = jit_update(state, X)
    assert int(s_jit.step) == 1
    # The loss of step t is the loss at the state before it (same key).
    np.testing.assert_allclose(jax.jit(svi.evaluate)(state, X), l_jit, rtol=1e-5)

    # run == repeated updates; resume == uninterrupted (bitwise).
    full = svi.run(jax.random.key(11), 50, X, progress_bar=False)
    s = state
    for _ in range(50):
        s, _ = jit_update(s, X)
    np.testing.assert_allclose(full.losses[0], l_jit, rtol=1e-5)
    for name in state.params:
        np.testing.assert_allclose(full.state.params[name], s.params[name], rtol=1e-4)
    first = svi.run(jax.random.key(11), 20, X, progress_bar=False)
    path = tmp_path / "state.npz"
    svi.save(path, first.state)
    restored = SVI.load_state(path)
    for a, b in zip(
        jax.tree_util.tree_leaves(first.state), jax.tree_util.tree_leaves(restored), strict=True
    ):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(first.state)
    # A template gives the same state.
    templated = load_state(path, template=state)
    assert jax.tree_util.tree_structure(templated) == jax.tree_util.tree_structure(state)

    fresh = SVI(normal_model, normal_guide, optax.adam(0.05), Trace_ELBO(4))
    second = fresh.run(None, 30, X, progress_bar=False, init_state=restored)
    assert int(second.state.step) == 50
    np.testing.assert_array_equal(
        np.concatenate([first.losses, second.losses]), np.asarray(full.losses)
    )
    for name in full.params:
        np.testing.assert_array_equal(full.state.params[name], second.state.params[name])
        np.testing.assert_array_equal(full.params[name], second.params[name])
    assert float(second.params["scale"]) > 0


def test_save_load_raw_uint32_key(tmp_path):
    state = SVIState({"a": jnp.arange(3.0)}, (optax.EmptyState(),), jax.random.PRNGKey(3), 7)
    save_state(tmp_path / "s.npz", state)
    loaded = load_state(tmp_path / "s.npz")
    np.testing.assert_array_equal(loaded.rng_key, state.rng_key)
    assert loaded.rng_key.dtype == jnp.uint32
    assert loaded.step == 7 and isinstance(loaded.step, int)
    assert isinstance(loaded.optim_state[0], optax.EmptyState)


def test_stable_update_skips_nan(normal_svi):
    svi, jit_update = normal_svi
    state = svi.init(jax.random.key(12), X)
    bad = X.at[0].set(jnp.nan)
    new, loss = jax.jit(svi.stable_update)(state, bad)
    assert not np.isfinite(loss)
    for name in state.params:
        np.testing.assert_array_equal(new.params[name], state.params[name])
    assert int(new.step) == 1
    unstable, _ = jit_update(state, bad)
    assert not np.isfinite(unstable.params["loc"])
    # run(stable_update=True) keeps the params finite too, and says so.
    with pytest.warns(NonFiniteWarning, match="non-finite loss at step 0 .*5 of 5 steps"):
        result = svi.run(jax.random.key(12), 5, bad, progress_bar=False, stable_update=True)
    assert np.isfinite(result.params["loc"])


def test_progress_line_when_not_a_tty(capsys, normal_svi):
    svi, _ = normal_svi
    svi.run(jax.random.key(13), 30, X)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("SVI: 30/30") and "loss" in err[0]


def test_init_params_and_model_params():
    def model(x):
        s = jppl.param("sigma", 1.0, constraint=constraints.positive)
        mu = jppl.sample("mu", dist.Normal(0.0, 1.0))
        with jppl.plate("data", x.shape[0]):
            jppl.sample("x", dist.Normal(mu, s), obs=x)

    svi = SVI(model, normal_guide, optax.adam(0.01), Trace_ELBO())
    state = svi.init(jax.random.key(14), X, init_params={"loc": 2.0})
    params = svi.get_params(state)
    assert set(params) == {"loc", "scale", "sigma"}
    np.testing.assert_allclose(params["loc"], 2.0)
    np.testing.assert_allclose(state.params["sigma"], 0.0, atol=1e-7)
    with pytest.raises(ValueError, match="not param sites"):
        svi.init(jax.random.key(14), X, init_params={"nope": 1.0})


# ---------------------------------------------------------------------------------------------
# Particles split across devices
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("elbo", [Trace_ELBO(16), RenyiELBO(0.0, 16)], ids=["trace", "renyi"])
def test_particles_sharded_over_devices(elbo):
    devices = np.array(jax.devices()[:8])
    if len(devices) < 8:
        pytest.skip("needs 8 devices")
    mesh = Mesh(devices, ("particle",))
    key = jax.random.key(15)

    def sharded_loss(params):
        def local(indices):
            keys = particle_keys(key, indices)
            e, s = elbo.loss_from_particles(keys, params, normal_model, normal_guide, (X,))
            return elbo.reduce_particles(e, s, axis_name="particle")

        return jax.shard_map(
            local, mesh=mesh, in_specs=PartitionSpec("particle"), out_specs=PartitionSpec()
        )(jnp.arange(16))

    def plain_loss(params):
        return elbo.loss(key, params, normal_model, normal_guide, X)

    v1, g1 = jax.jit(jax.value_and_grad(sharded_loss))(PARAMS)
    v2, g2 = jax.jit(jax.value_and_grad(plain_loss))(PARAMS)
    np.testing.assert_allclose(v1, v2, rtol=1e-5)
    for name in PARAMS:
        np.testing.assert_allclose(g1[name], g2[name], rtol=1e-4, atol=1e-6)
    assert math.isfinite(float(v1))


def test_map_particles_splits_over_the_sample_axis():
    """The same numbers with and without a mesh; shared (None) arguments; a bad size named."""
    from jppl import parallel

    keys = particle_keys(jax.random.key(16), jnp.arange(8))
    shift = jnp.arange(8.0)

    def one(key, s, offset):
        return jnp.sum(jax.random.normal(key, (3,))) + s + offset

    def run(ks, sh):
        return parallel.map_particles(one, ks, sh, 1.5, in_axes=(0, 0, None))

    expected = jax.jit(run)(keys, shift)
    mesh = parallel.make_mesh(sample=4)
    with parallel.use_mesh(mesh):
        got = jax.jit(run)(keys, shift)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    assert expected.shape == (8,)
    with parallel.use_mesh(parallel.make_mesh(sample=4)):
        with pytest.raises(
            ValueError, match="ELBO: num_particles=6 is not divisible by the size 4"
        ):
            parallel.map_particles(lambda k: k, jnp.arange(6), what="ELBO: num_particles")


def test_particle_args_give_each_particle_its_arguments():
    """An ELBO whose particle i sees x + i: the loss is the mean of the single-particle ELBOs."""

    class Shifted(Trace_ELBO):
        def particle_args(self, rng_key, args):
            (x,) = args
            return (x[None] + jnp.arange(self.num_particles)[:, None],), 0

    key = jax.random.key(17)
    elbo = Shifted(4)
    loss = elbo.loss(key, PARAMS, normal_model, normal_guide, X)
    by_hand = [
        Trace_ELBO(1).particle_loss(
            jax.random.fold_in(key, i), PARAMS, normal_model, normal_guide, (X + i,), {}
        )[0]
        for i in range(4)
    ]
    np.testing.assert_allclose(float(loss), -np.mean(by_hand), rtol=1e-6)


def test_live_progress_bar(capsys, monkeypatch, normal_svi):
    import jppl.vi.svi as svi_module

    monkeypatch.setattr(svi_module, "is_interactive", lambda: True)
    svi, _ = normal_svi
    result = svi.run(jax.random.key(13), 30, X)
    err = capsys.readouterr().err
    assert "SVI" in err and "30/30" in err and "avg. loss" in err
    assert result.losses.shape == (30,)


def test_subsampled_guide_plate_with_another_name_errors():
    def model():
        with jppl.plate("data", 10, subsample_size=3):
            jppl.sample("u", dist.Normal(0.0, 1.0))

    def guide():
        with jppl.plate("other", 10, subsample_size=3):
            jppl.sample("u", dist.Normal(0.0, 2.0))

    with pytest.raises(ValueError, match="same name"):
        Trace_ELBO().loss(jax.random.key(0), {}, model, guide)


def test_mean_field_kl_is_analytic_for_equal_concrete_array_scales():
    """Model and guide weight sites scaled by two *distinct* arrays of equal value: the KL is
    still analytic (the loss does not depend on the key and equals beta * KL in closed form);
    with unequal scales it falls back to Monte Carlo (the loss varies with the key)."""
    loc, sd = 0.4, 0.7
    kl = math.log(1.0 / sd) + (sd**2 + loc**2) / 2.0 - 0.5  # KL(N(loc, sd) || N(0, 1))

    def make(model_beta, guide_beta):
        def model():
            with jppl.handlers.scale(scale=model_beta):
                jppl.sample("z", dist.Normal(0.0, 1.0))

        def guide():
            with jppl.handlers.scale(scale=guide_beta):
                jppl.sample("z", dist.Normal(loc, sd))

        elbo = TraceMeanField_ELBO(1)
        return [float(elbo.loss(jax.random.key(k), {}, model, guide)) for k in range(3)]

    same = make(jnp.asarray(0.3), np.asarray(0.3, np.float32))
    np.testing.assert_allclose(same, 0.3 * kl, rtol=1e-5)
    different = make(jnp.asarray(0.3), jnp.asarray(0.5))
    assert len(set(different)) == 3
