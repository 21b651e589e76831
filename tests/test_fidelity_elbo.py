"""NumPyro fidelity of the ELBOs and SVI (issue 15): guide-observed sites, shared params,
SVI's signature and static keyword arguments, ELBO options, TraceGraph_ELBO, psis_diagnostic.

Expected values are independent: hand-written log densities (Delta guides make an ELBO
deterministic), closed-form expectations, enumeration of discrete values, generalized Pareto
draws with a known shape, and ArviZ's PSIS as a second implementation.
"""

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import jppl
import jppl.distributions as dist
from jppl.distributions import constraints
from jppl.infer import (
    ELBO,
    SVI,
    RenyiELBO,
    Trace_ELBO,
    TraceGraph_ELBO,
    TraceMeanField_ELBO,
    psis_diagnostic,
)
from jppl.vi.elbo import fit_generalized_pareto, psis_khat

X0, OBS_G, LOC = 1.2, 0.3, 0.4


def norm_lp(x, loc, scale=1.0):
    return float(stats.norm(loc, scale).logpdf(x))


# ---------------------------------------------------------------------------------------------
# Observed sites of the guide count in log q
# ---------------------------------------------------------------------------------------------


def obs_model():
    z = jppl.sample("z", dist.Normal(0.0, 1.0))
    jppl.sample("x", dist.Normal(z, 1.0), obs=X0)


def obs_guide():
    loc = jppl.param("loc", LOC)
    jppl.sample("z", dist.Delta(loc))
    # An observed site of the guide: a factor of q, so -log N(OBS_G; loc, 2) in the ELBO.
    jppl.sample("g", dist.Normal(loc, 2.0), obs=OBS_G)


def _obs_elbo():
    return norm_lp(LOC, 0.0) + norm_lp(X0, LOC) - norm_lp(OBS_G, LOC, 2.0)


@pytest.mark.parametrize(
    "elbo",
    [Trace_ELBO(), Trace_ELBO(num_particles=3), TraceMeanField_ELBO(), RenyiELBO(alpha=0.5)],
    ids=["trace", "trace3", "meanfield", "renyi"],
)
def test_guide_observed_site_counts_in_log_q(elbo):
    """The Delta guide makes every particle equal: the loss is minus the hand-computed ELBO."""
    loss = elbo.loss(jax.random.key(0), {"loc": jnp.asarray(LOC)}, obs_model, obs_guide)
    np.testing.assert_allclose(float(loss), -_obs_elbo(), rtol=1e-5)


def test_guide_observed_site_gradient():
    """d/dloc of the ELBO includes -d/dloc log N(OBS_G; loc, 2) = -(OBS_G - loc) / 4."""
    grad = jax.grad(
        lambda loc: Trace_ELBO().loss(jax.random.key(0), {"loc": loc}, obs_model, obs_guide)
    )(jnp.asarray(LOC))
    expected = -(-LOC + (X0 - LOC) - (OBS_G - LOC) / 4.0)
    np.testing.assert_allclose(float(grad), expected, rtol=1e-5)


def test_sum_sites_false_gives_the_terms_of_each_site():
    terms = Trace_ELBO(sum_sites=False).loss(
        jax.random.key(0), {"loc": jnp.asarray(LOC)}, obs_model, obs_guide
    )
    assert set(terms) == {"z", "x", "g"}
    np.testing.assert_allclose(float(terms["z"]), -norm_lp(LOC, 0.0), rtol=1e-5)
    np.testing.assert_allclose(float(terms["x"]), -norm_lp(X0, LOC), rtol=1e-5)
    np.testing.assert_allclose(float(terms["g"]), norm_lp(OBS_G, LOC, 2.0), rtol=1e-5)
    np.testing.assert_allclose(float(sum(terms.values())), -_obs_elbo(), rtol=1e-5)
    mf_terms = TraceMeanField_ELBO(sum_sites=False).loss(
        jax.random.key(0), {"loc": jnp.asarray(LOC)}, obs_model, obs_guide
    )
    np.testing.assert_allclose(float(sum(mf_terms.values())), -_obs_elbo(), rtol=1e-5)


def test_sum_sites_false_is_refused_by_svi():
    svi = SVI(obs_model, obs_guide, optax.sgd(0.1), Trace_ELBO(sum_sites=False))
    state = svi.init(jax.random.key(0))
    with pytest.raises(TypeError, match="scalar"):
        svi.update(state)


# ---------------------------------------------------------------------------------------------
# Param sites shared by model and guide
# ---------------------------------------------------------------------------------------------

DATA = jnp.asarray([0.5, 1.5, 2.5, 3.0])


def shared_model(data):
    w = jppl.param("shared")  # no initial value: the guide's
    with jppl.plate("n", data.shape[0]):
        jppl.sample("y", dist.Normal(w, 1.0), obs=data)


def shared_guide(data):
    jppl.param("shared", 0.7)


def test_model_param_reads_the_guide_value():
    svi = SVI(shared_model, shared_guide, optax.sgd(0.05), Trace_ELBO())
    state = svi.init(jax.random.key(0), DATA)
    np.testing.assert_allclose(float(svi.get_params(state)["shared"]), 0.7)
    expected = -float(np.sum(stats.norm(0.7, 1.0).logpdf(np.asarray(DATA))))
    np.testing.assert_allclose(float(svi.evaluate(state, DATA)), expected, rtol=1e-5)
    result = svi.run(jax.random.key(1), 300, DATA, progress_bar=False)
    np.testing.assert_allclose(float(result.params["shared"]), float(jnp.mean(DATA)), atol=1e-3)


def test_param_without_any_initial_value_is_an_error():
    svi = SVI(shared_model, lambda data: None, optax.sgd(0.05), Trace_ELBO())
    with pytest.raises(ValueError, match="'shared' has no initial value"):
        svi.init(jax.random.key(0), DATA)


# ---------------------------------------------------------------------------------------------
# SVI(model, guide, optim, loss, **static_kwargs)
# ---------------------------------------------------------------------------------------------


def static_model(data, *, shift):
    with jppl.plate("n", data.shape[0]):
        jppl.sample("y", dist.Normal(jppl.param("mu", 0.0) + shift, 1.0), obs=data)


def static_guide(data, *, shift):
    pass


def test_optim_keyword_and_static_kwargs():
    svi = SVI(static_model, static_guide, optim=optax.sgd(0.05), loss=Trace_ELBO(), shift=2.0)
    assert svi.optim is svi.optimizer
    state = svi.init(jax.random.key(0), DATA)
    expected = -float(np.sum(stats.norm(2.0, 1.0).logpdf(np.asarray(DATA))))
    np.testing.assert_allclose(float(svi.evaluate(state, DATA)), expected, rtol=1e-5)
    new_state, loss = jax.jit(svi.update)(state, DATA)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    result = svi.run(jax.random.key(1), 300, DATA, progress_bar=False)
    np.testing.assert_allclose(float(result.params["mu"]), float(jnp.mean(DATA)) - 2.0, atol=1e-3)
    with pytest.raises(TypeError, match="shift"):
        svi.evaluate(state, DATA, shift=1.0)


def test_guide_site_missing_from_model_warns():
    def guide(data, *, shift):
        jppl.sample("extra", dist.Normal(0.0, 1.0))
        jppl.sample("aux", dist.Normal(0.0, 1.0), infer={"is_auxiliary": True})

    svi = SVI(static_model, guide, optax.sgd(0.05), Trace_ELBO(), shift=0.0)
    with pytest.warns(UserWarning, match="'extra'") as record:
        svi.init(jax.random.key(0), DATA)
    assert not any("'aux'" in str(w.message) for w in record)


# ---------------------------------------------------------------------------------------------
# vectorize_particles, multi_sample_guide
# ---------------------------------------------------------------------------------------------


def normal_guide():
    jppl.sample("z", dist.Normal(jppl.param("loc", 0.3), jppl.param("scale", 0.8)))


def test_vectorize_particles_options_agree():
    params = {"loc": jnp.asarray(0.3), "scale": jnp.asarray(0.8)}
    calls = []

    def my_map(f, xs):
        calls.append(1)
        return jax.lax.map(f, xs, batch_size=2)

    losses = [
        float(elbo.loss(jax.random.key(3), params, obs_model, normal_guide))
        for elbo in (
            Trace_ELBO(num_particles=4),
            Trace_ELBO(num_particles=4, vectorize_particles=False),
            Trace_ELBO(num_particles=4, vectorize_particles=my_map),
            TraceMeanField_ELBO(num_particles=4, vectorize_particles=lambda f, xs: jax.vmap(f)(xs)),
            TraceMeanField_ELBO(num_particles=4),
        )
    ]
    assert calls
    np.testing.assert_allclose(losses[:3], losses[0], rtol=1e-6)
    np.testing.assert_allclose(losses[3:], losses[3], rtol=1e-6)
    with pytest.raises(ValueError, match="vectorize_particles"):
        Trace_ELBO(vectorize_particles="yes")


def test_vectorize_particles_matches_the_closed_form_elbo():
    """Expected Normal-guide ELBO in closed form vs 4000 particles mapped with lax.map."""
    loc, scale = 0.3, 0.8
    params = {"loc": jnp.asarray(loc), "scale": jnp.asarray(scale)}
    elbo = -0.5 * math.log(2 * math.pi) - 0.5 * (loc**2 + scale**2)
    elbo += -0.5 * math.log(2 * math.pi) - 0.5 * ((X0 - loc) ** 2 + scale**2)
    elbo += 0.5 * math.log(2 * math.pi * math.e * scale**2)
    loss = Trace_ELBO(num_particles=4000, vectorize_particles=False).loss(
        jax.random.key(5), params, obs_model, normal_guide
    )
    # Per-particle std of the ELBO here is about 1.2: 4 standard errors ~ 0.08.
    np.testing.assert_allclose(float(loss), -elbo, atol=0.08)


NUM_GUIDE_SAMPLES = 3


def multi_guide():
    loc = jppl.param("loc", LOC)
    with jppl.plate("samples", NUM_GUIDE_SAMPLES):
        jppl.sample("z", dist.Delta(loc + jnp.arange(NUM_GUIDE_SAMPLES, dtype=jnp.float32)))


def test_multi_sample_guide_sums_the_model_over_guide_samples():
    zs = LOC + np.arange(NUM_GUIDE_SAMPLES)
    expected = sum(norm_lp(z, 0.0) + norm_lp(X0, z) for z in zs)  # Delta: log q = 0
    elbo = Trace_ELBO(multi_sample_guide=True)
    loss = elbo.loss(jax.random.key(0), {"loc": jnp.asarray(LOC)}, obs_model, multi_guide)
    np.testing.assert_allclose(float(loss), -expected, rtol=1e-5)
    svi = SVI(obs_model, multi_guide, optax.sgd(0.01), elbo)
    state = svi.init(jax.random.key(0))
    np.testing.assert_allclose(float(svi.evaluate(state)), -expected, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# TraceGraph_ELBO
# ---------------------------------------------------------------------------------------------

P_PRIOR = 0.3


def discrete_model():
    z = jppl.sample("z", dist.Bernoulli(P_PRIOR))
    w = jppl.sample("w", dist.Normal(0.0, 1.0))
    jppl.sample("x", dist.Normal(w + 2.0 * z, 1.0), obs=X0)


def discrete_guide():
    p = jppl.param("p", 0.6, constraint=constraints.unit_interval)
    jppl.sample("z", dist.Bernoulli(p))
    jppl.sample("w", dist.Normal(jppl.param("m", 0.2), 1.0))


def exact_discrete_loss(params):
    """-ELBO by enumerating z in {0, 1} with the Gaussian expectations over w in closed form."""
    p, m = params["p"], params["m"]
    half_log_2pi = 0.5 * jnp.log(2 * jnp.pi)
    total = 0.0
    for z, q in ((0.0, 1.0 - p), (1.0, p)):
        log_pz = math.log(P_PRIOR) if z else math.log(1 - P_PRIOR)
        inner = log_pz - jnp.log(q) - half_log_2pi - 0.5 * (m**2 + 1.0)
        inner += -half_log_2pi - 0.5 * ((X0 - m - 2.0 * z) ** 2 + 1.0)
        inner += 0.5 * jnp.log(2 * jnp.pi * jnp.e)
        total = total + q * inner
    return -total


def _gradient_replicates(elbo, model, guide, params, reps):
    grad = jax.jit(jax.grad(lambda pm, k: elbo.loss(k, pm, model, guide)))
    out = [grad(params, jax.random.key(100 + r)) for r in range(reps)]
    return {name: np.array([g[name] for g in out]) for name in params}


def test_tracegraph_gradient_is_unbiased_for_a_discrete_latent():
    params = {"p": jnp.asarray(0.6), "m": jnp.asarray(0.2)}
    exact = jax.grad(exact_discrete_loss)(params)
    loss = TraceGraph_ELBO(num_particles=500).loss(
        jax.random.key(0), params, discrete_model, discrete_guide
    )
    # The loss is the plain -ELBO estimate (per-particle std about 1.5: 4 SE ~ 0.27).
    np.testing.assert_allclose(float(loss), float(exact_discrete_loss(params)), atol=0.27)
    reps = _gradient_replicates(
        TraceGraph_ELBO(num_particles=200), discrete_model, discrete_guide, params, 40
    )
    for name, values in reps.items():
        # 40 independent estimates of 200 particles: the mean is within 4.5 standard errors.
        stderr = values.std(ddof=1) / math.sqrt(len(values))
        assert abs(values.mean() - float(exact[name])) < 4.5 * stderr + 1e-3, (
            name,
            values.mean(),
            float(exact[name]),
            stderr,
        )


NP = 6
P_GUIDE = jnp.linspace(0.2, 0.8, NP)
Y = jnp.asarray([0.1, 2.3, -0.4, 1.9, 0.7, 2.2])


def plate_model():
    with jppl.plate("n", NP):
        z = jppl.sample("z", dist.Bernoulli(P_PRIOR))
        jppl.sample("y", dist.Normal(2.0 * z, 1.0), obs=Y)


def plate_guide():
    p = jppl.param("p", P_GUIDE, constraint=constraints.unit_interval)
    with jppl.plate("n", NP):
        jppl.sample("z", dist.Bernoulli(p))


def exact_plate_loss(params):
    p = params["p"]
    total = 0.0
    for z, q in ((0.0, 1.0 - p), (1.0, p)):
        log_pz = math.log(P_PRIOR) if z else math.log(1 - P_PRIOR)
        log_lik = -0.5 * jnp.log(2 * jnp.pi) - 0.5 * (Y - 2.0 * z) ** 2
        total = total + jnp.sum(q * (log_pz + log_lik - jnp.log(q)))
    return -total


def test_tracegraph_rao_blackwellizes_over_plate_elements():
    """Element i of the plate only sees its own costs: unbiased, and lower variance than the
    score function with the whole cost (Trace_ELBO)."""
    params = {"p": P_GUIDE}
    exact = np.asarray(jax.grad(exact_plate_loss)(params)["p"])
    graph = _gradient_replicates(
        TraceGraph_ELBO(num_particles=100), plate_model, plate_guide, params, 40
    )["p"]
    whole = _gradient_replicates(
        Trace_ELBO(num_particles=100), plate_model, plate_guide, params, 40
    )["p"]
    stderr = graph.std(axis=0, ddof=1) / math.sqrt(graph.shape[0])
    assert np.all(np.abs(graph.mean(axis=0) - exact) < 4.5 * stderr + 1e-3)
    assert np.all(graph.var(axis=0) < 0.5 * whole.var(axis=0))


def test_tracegraph_trains_a_discrete_guide():
    svi = SVI(plate_model, plate_guide, optax.adam(0.05), TraceGraph_ELBO(num_particles=16))
    result = svi.run(jax.random.key(0), 600, progress_bar=False)
    # The exact posterior of each z_i: prior * likelihood, normalized.
    like1 = P_PRIOR * np.exp(-0.5 * (np.asarray(Y) - 2.0) ** 2)
    like0 = (1 - P_PRIOR) * np.exp(-0.5 * np.asarray(Y) ** 2)
    np.testing.assert_allclose(np.asarray(result.params["p"]), like1 / (like0 + like1), atol=0.08)


def test_elbo_base_class_is_exported():
    assert issubclass(TraceGraph_ELBO, ELBO) and issubclass(Trace_ELBO, ELBO)
    assert jppl.infer.ELBO is ELBO


# ---------------------------------------------------------------------------------------------
# psis_diagnostic
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0.2, 0.7])
def test_generalized_pareto_fit_recovers_a_known_shape(k):
    x = stats.genpareto(c=k, scale=1.5).rvs(size=20000, random_state=np.random.default_rng(1))
    k_hat, sigma_hat = fit_generalized_pareto(x)
    # The ML-type estimate has standard error about (1 + k) / sqrt(n) ~ 0.01.
    np.testing.assert_allclose(k_hat, k, atol=0.04)
    np.testing.assert_allclose(sigma_hat, 1.5, rtol=0.06)


def _arviz_khat(log_weights: np.ndarray) -> float:
    """k-hat of ArviZ's PSIS: ``arviz.psislw`` on 0.x, ``arviz_stats`` on the 1.x line.

    arviz-stats takes log-likelihoods (the weights are their negation) and fits the largest
    ``floor(3 sqrt(S / r_eff))`` draws where the paper (and ArviZ 0.x, and jppl) take the
    ceiling; its ``r_eff`` is set here so that both fit the same tail.
    """
    arviz = pytest.importorskip("arviz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hasattr(arviz, "psislw"):
            return float(arviz.psislw(log_weights.copy())[1])
        from arviz_stats.base import array_stats

        n = log_weights.size
        tail = math.ceil(min(0.2 * n, 3.0 * math.sqrt(n)))
        return float(array_stats.psislw(-log_weights, r_eff=9.0 * n / (tail + 0.5) ** 2)[1])


def test_psis_khat_matches_arviz():
    rng = np.random.default_rng(2)
    for log_weights in (rng.standard_t(3, size=3000), rng.normal(size=1000) * 2.0):
        np.testing.assert_allclose(psis_khat(log_weights), _arviz_khat(log_weights), rtol=1e-6)


def test_psis_diagnostic_of_a_too_narrow_guide():
    """Target N(0, 1), guide N(0, s^2): the weights' tail is Pareto with k = 1 - s^2."""

    def model():
        jppl.sample("z", dist.Normal(0.0, 1.0))

    def guide():
        jppl.sample("z", dist.Normal(0.0, jppl.param("s", 1.0)))

    k_narrow = psis_diagnostic(
        jax.random.key(0), {"s": jnp.asarray(math.sqrt(0.3))}, model, guide, num_particles=20000
    )
    # k = 0.7; the chi-square factor of the tail biases finite-sample fits slightly low.
    assert 0.55 < k_narrow < 0.8
    k_wide = psis_diagnostic(
        jax.random.key(0),
        {"s": jnp.asarray(1.5)},
        model,
        guide,
        num_particles=4000,
        chunk_size=1000,
    )
    assert k_wide < 0.3  # bounded weights: a short tail
    with pytest.raises(ValueError, match="num_particles"):
        psis_diagnostic(jax.random.key(0), {"s": jnp.asarray(1.0)}, model, guide, num_particles=1)


def test_functools_partial_map_is_accepted():
    elbo = Trace_ELBO(num_particles=4, vectorize_particles=functools.partial(jax.lax.map))
    params = {"loc": jnp.asarray(0.3), "scale": jnp.asarray(0.8)}
    reference = Trace_ELBO(num_particles=4).loss(jax.random.key(3), params, obs_model, normal_guide)
    value = elbo.loss(jax.random.key(3), params, obs_model, normal_guide)
    np.testing.assert_allclose(float(value), float(reference), rtol=1e-6)


def test_tracegraph_particles_split_over_a_mesh():
    """Particle i keeps its key on any mesh: the loss and gradient do not depend on it."""
    from jppl import parallel

    params = {"p": P_GUIDE}
    elbo = TraceGraph_ELBO(num_particles=8)

    def value_and_grad():
        return jax.jit(
            jax.value_and_grad(
                lambda pm: elbo.loss(jax.random.key(4), pm, plate_model, plate_guide)
            )
        )(params)

    loss, grad = value_and_grad()
    with parallel.use_mesh(parallel.make_mesh(sample=4)):
        mesh_loss, mesh_grad = value_and_grad()
    np.testing.assert_allclose(float(mesh_loss), float(loss), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(mesh_grad["p"]), np.asarray(grad["p"]), rtol=1e-4)
