"""NumPyro-fidelity of the handlers and primitives (issue 15, handlers part).

Expected values come from closed forms, hand-written densities or explicit loops.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import jppl
import jppl.distributions as dist
from jppl import handlers
from jppl.diagnostics import mcse_mean, mcse_sd
from jppl.handlers import (
    block,
    condition,
    do,
    infer_config,
    lift,
    mask,
    replay,
    scale,
    scope,
    seed,
    substitute,
    trace,
    uncondition,
)
from jppl.infer import MCMC, NUTS, SVI, Trace_ELBO
from jppl.infer.autoguide import AutoNormal
from jppl.infer.reparam import LocScaleReparam
from jppl.infer.util import log_density
from jppl.ops.indexing import Vindex, vindex
from jppl.primitives import default_process_message, mutable, new_message

# -- item 3: sample_shape inside plates ---------------------------------------------------


def test_sample_shape_joins_batch_shape_inside_nested_plates():
    def model():
        with jppl.plate("outer", 10):
            with jppl.plate("inner", 5, dim=-3):
                return jppl.sample("x", dist.Normal(0.0, 1.0), sample_shape=(10,))

    tr = trace(seed(model, 0)).get_trace()
    site = tr["x"]
    # sample_shape (10,) fills the outer plate's dim -1; inner adds dim -3.
    assert site["value"].shape == (5, 1, 10)
    assert site["fn"].batch_shape == (5, 1, 10)
    assert site["kwargs"]["sample_shape"] == ()
    assert site["fn"].log_prob(site["value"]).shape == (5, 1, 10)


def test_sample_shape_inside_plate_log_density_counts_each_draw_once():
    def model():
        with jppl.plate("n", 4):
            jppl.sample("x", dist.Normal(1.0, 2.0), sample_shape=(4,))

    x = jnp.array([0.5, -1.0, 2.0, 3.0])
    lp, _ = log_density(model, (), {}, {"x": x})
    np.testing.assert_allclose(lp, stats.norm(1.0, 2.0).logpdf(np.asarray(x)).sum(), rtol=1e-6)


def test_sample_shape_outside_plates_and_extra_leading_dims():
    def model():
        a = jppl.sample("a", dist.Normal(jnp.zeros(3), 1.0), sample_shape=(2,))
        with jppl.plate("p", 3):
            b = jppl.sample("b", dist.Normal(0.0, 1.0), sample_shape=(4, 1))
        return a, b

    a, b = seed(model, 1)()
    assert a.shape == (2, 3)
    assert b.shape == (4, 3)


def test_sample_shape_that_does_not_broadcast_with_plate_names_site():
    def model():
        with jppl.plate("p", 10):
            jppl.sample("bad", dist.Normal(0.0, 1.0), sample_shape=(3,))

    with pytest.raises(ValueError, match="'bad'.*plate 'p'"):
        seed(model, 0)()


# -- item 4: param subsampling, replayed plate indices -----------------------------------


def _param_model():
    full = jnp.arange(100.0)
    rows = jnp.arange(300.0).reshape(100, 3)
    with jppl.plate("p", 100, subsample_size=7) as idx:
        w = jppl.param("w", full, event_dim=0)
        v = jppl.param("v", rows, event_dim=1)
        u = jppl.param("u", full)  # no event_dim: all dims are event dims, not subsampled
        d = jppl.subsample(full, event_dim=0)
    return idx, w, v, u, d


def test_param_with_event_dim_is_subsampled_in_plate():
    with trace() as tr:
        idx, w, v, u, d = seed(_param_model, 0)()
    idx = np.asarray(idx)
    assert idx.shape == (7,) and len(set(idx.tolist())) == 7
    np.testing.assert_array_equal(w, idx.astype(np.float32))
    np.testing.assert_array_equal(v, np.arange(300.0).reshape(100, 3)[idx])
    assert u.shape == (100,)
    np.testing.assert_array_equal(d, w)
    # The trace keeps the full value (what an optimizer stores).
    assert tr["w"]["value"].shape == (100,)
    assert tr["v"]["value"].shape == (100, 3)


def test_replayed_plate_reuses_indices_for_params_and_subsample():
    tr = trace(seed(_param_model, 0)).get_trace()
    idx0 = np.asarray(tr["p"]["value"])
    for other_seed in (1, 2, 3):
        idx, w, v, _, d = replay(seed(_param_model, other_seed), trace=tr)()
        np.testing.assert_array_equal(idx, idx0)
        np.testing.assert_array_equal(w, idx0.astype(np.float32))
        np.testing.assert_array_equal(v[:, 0], 3.0 * idx0)
        np.testing.assert_array_equal(d, idx0.astype(np.float32))
    # Without replay another seed draws other indices.
    idx1 = seed(_param_model, 1)()[0]
    assert not np.array_equal(idx1, idx0)


def test_param_of_wrong_size_in_subsampled_plate_names_site():
    def model():
        with jppl.plate("p", 100, subsample_size=7):
            jppl.param("w", jnp.zeros(50), event_dim=0)

    with pytest.raises(ValueError, match="'w'.*plate 'p'"):
        seed(model, 0)()


# -- item 5: obs_mask imputation --------------------------------------------------------

SIGMA, TAU = 1.0, 2.0
Y_MISSING = np.array([0.3, 1.7, np.nan, 1.1, np.nan, 2.4], np.float32)  # NaN: missing
OBS_MASK = np.array([True, True, False, True, False, True])


def _missing_model(y, obs_mask):
    mu = jppl.sample("mu", dist.Normal(0.0, TAU))
    with jppl.plate("n", y.shape[0]):
        return jppl.sample("y", dist.Normal(mu, SIGMA), obs=y, obs_mask=obs_mask)


def _closed_form_posterior():
    """mu | y_obs ~ N(m, v); a missing y | y_obs ~ N(m, v + SIGMA^2)."""
    y_obs = Y_MISSING[OBS_MASK].astype(np.float64)
    precision = 1.0 / TAU**2 + y_obs.size / SIGMA**2
    mean = y_obs.sum() / SIGMA**2 / precision
    return mean, 1.0 / precision


def test_obs_mask_splits_site_and_imputes_unobserved_entries():
    y, m = jnp.asarray(Y_MISSING), jnp.asarray(OBS_MASK)
    tr = trace(seed(_missing_model, 0)).get_trace(y, m)
    observed, unobserved, combined = tr["y_observed"], tr["y_unobserved"], tr["y"]
    assert observed["type"] == "sample" and observed["is_observed"]
    assert unobserved["type"] == "sample" and not unobserved["is_observed"]
    assert combined["type"] == "deterministic"
    expected = np.where(OBS_MASK, Y_MISSING, np.asarray(unobserved["value"]))
    assert np.all(np.isfinite(expected))
    np.testing.assert_array_equal(combined["value"], expected)
    # The NaN placeholders are replaced by the imputed values in the observed site too.
    np.testing.assert_array_equal(observed["value"], expected)
    np.testing.assert_array_equal(seed(_missing_model, 0)(y, m), expected)
    assert [f.name for f in unobserved["cond_indep_stack"]] == ["n"]
    # The observed entries' log-probability only; the placeholders add nothing.
    mu = 0.4
    u = jnp.linspace(-1.0, 1.0, 6)
    lp, _ = log_density(_missing_model, (y, m), {}, {"mu": mu, "y_unobserved": u})
    norm = stats.norm(mu, SIGMA)
    expected_lp = (
        stats.norm(0.0, TAU).logpdf(mu)
        + norm.logpdf(Y_MISSING[OBS_MASK]).sum()
        # every entry of the latent site keeps its density (see `sample`'s docstring)
        + norm.logpdf(np.asarray(u)).sum()
    )
    np.testing.assert_allclose(lp, expected_lp, rtol=1e-5)
    # Its gradient is finite despite the NaN placeholders: d/dmu of the terms above.
    grad = jax.grad(
        lambda mu: log_density(_missing_model, (y, m), {}, {"mu": mu, "y_unobserved": u})[0]
    )(mu)
    y_obs = Y_MISSING[OBS_MASK]
    expected_grad = (
        -mu / TAU**2 + (y_obs - mu).sum() / SIGMA**2 + (np.asarray(u) - mu).sum() / SIGMA**2
    )
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5)


def test_obs_mask_bad_input_errors():
    y = jnp.asarray(Y_MISSING)

    def no_obs():
        jppl.sample("y", dist.Normal(0.0, 1.0).expand((6,)), obs_mask=jnp.asarray(OBS_MASK))

    def float_mask():
        jppl.sample("y", dist.Normal(0.0, 1.0), obs=y, obs_mask=jnp.ones(6))

    with pytest.raises(ValueError, match="'y'.*needs obs"):
        seed(no_obs, 0)()
    with pytest.raises(TypeError, match="'y'.*boolean"):
        seed(float_mask, 0)()


def test_obs_mask_imputation_with_nuts_matches_closed_form_posterior():
    mean, var = _closed_form_posterior()
    mcmc = MCMC(NUTS(_missing_model), num_warmup=400, num_samples=2000, progress_bar=False)
    mcmc.run(jax.random.key(0), jnp.asarray(Y_MISSING), jnp.asarray(OBS_MASK))
    samples = mcmc.get_samples(group_by_chain=True)
    imputed = np.asarray(samples["y_unobserved"])[..., ~OBS_MASK]  # (1, draws, 2)
    mu = np.asarray(samples["mu"])[..., None]  # (1, draws, 1)
    draws = np.concatenate([mu, imputed], axis=-1)
    expected_mean = np.full(3, mean)
    expected_sd = np.sqrt([var, var + SIGMA**2, var + SIGMA**2])
    # 5 Monte Carlo standard errors (from the chain's own ESS) on each mean and sd.
    got_mean, got_sd = draws.mean(axis=(0, 1)), draws.std(axis=(0, 1), ddof=1)
    assert np.all(np.abs(got_mean - expected_mean) < 5 * mcse_mean(draws)), (got_mean, mean)
    assert np.all(np.abs(got_sd - expected_sd) < 5 * mcse_sd(draws)), (got_sd, expected_sd)


def test_obs_mask_imputation_with_svi_autonormal_reaches_mean_field_optimum():
    # The joint of (mu, y_unobserved) is Gaussian, so the mean-field Gaussian optimum is known:
    # exact means, and each variance is 1 / (the diagonal of the joint precision).
    mean, _ = _closed_form_posterior()
    n, n_obs = Y_MISSING.size, int(OBS_MASK.sum())
    prec_mu = 1.0 / TAU**2 + (n_obs + n) / SIGMA**2  # y_observed, and all n latent entries
    guide = AutoNormal(_missing_model)
    schedule = optax.exponential_decay(0.05, 3000, 0.02)
    svi = SVI(_missing_model, guide, optax.adam(schedule), Trace_ELBO(num_particles=16))
    result = svi.run(
        jax.random.key(1), 3000, jnp.asarray(Y_MISSING), jnp.asarray(OBS_MASK), progress_bar=False
    )
    params = result.params
    np.testing.assert_allclose(params["mu_auto_loc"], mean, atol=0.05)
    np.testing.assert_allclose(params["y_unobserved_auto_loc"][~OBS_MASK], mean, atol=0.1)
    np.testing.assert_allclose(params["mu_auto_scale"], prec_mu**-0.5, rtol=0.15)
    np.testing.assert_allclose(params["y_unobserved_auto_scale"][~OBS_MASK], SIGMA, rtol=0.15)


# -- item 6: lift memoizes ---------------------------------------------------------------


def test_lift_reuses_the_draw_for_a_param_read_twice():
    def model():
        a = jppl.param("w", jnp.zeros(3))
        b = jppl.param("w", jnp.zeros(3))
        return a, b

    lifted = lift(model, prior=dist.Normal(0.0, 1.0))
    with trace() as tr:
        a, b = seed(lifted, 0)()
    np.testing.assert_array_equal(a, b)
    assert list(tr) == ["w"] and tr["w"]["type"] == "sample"
    # A new run draws anew (one draw per run, not one forever).
    a2, b2 = seed(lifted, 1)()
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a, a2)
    # The log density counts the prior once.
    w = jnp.array([0.1, -0.2, 0.3])
    lp, _ = log_density(lifted, (), {}, {"w": w})
    np.testing.assert_allclose(lp, stats.norm(0, 1).logpdf(np.asarray(w)).sum(), rtol=1e-6)


# -- item 7: do with None -----------------------------------------------------------------


def test_do_with_none_means_no_intervention():
    def model():
        x = jppl.sample("x", dist.Normal(0.0, 1.0))
        return jppl.sample("y", dist.Normal(x, 1.0)), x

    tr = trace(seed(do(model, data={"x": None}), 0)).get_trace()
    ref = trace(seed(model, 0)).get_trace()
    assert list(tr) == ["x", "y"]
    np.testing.assert_array_equal(tr["x"]["value"], ref["x"]["value"])
    np.testing.assert_array_equal(tr["y"]["value"], ref["y"]["value"])
    # A real intervention next to it still applies.
    _, x = seed(do(model, data={"x": 3.0, "y": None}), 0)()
    assert float(x) == 3.0


# -- item 10 and scope(hide_types=) ----------------------------------------------------------


def _plated():
    with jppl.plate("p", 4):
        jppl.sample("s", dist.Normal(0.0, 1.0))
        jppl.deterministic("d", jnp.ones(4))


def test_scope_renames_plate_frames_like_the_plate_site():
    tr = trace(seed(scope(_plated, prefix="a"), 0)).get_trace()
    assert list(tr) == ["a/p", "a/s", "a/d"]
    for name in ("a/s", "a/d"):
        assert [f.name for f in tr[name]["cond_indep_stack"]] == ["a/p"]

    # Nested scopes compose; a plate outside the scope keeps its name.
    def outer():
        with jppl.plate("q", 2, dim=-2):
            scope(scope(_plated, prefix="in"), prefix="out")()

    tr = trace(seed(outer, 0)).get_trace()
    assert [f.name for f in tr["out/in/s"]["cond_indep_stack"]] == ["out/in/p", "q"]


def test_scope_divider_and_hide_types():
    tr = trace(seed(scope(_plated, prefix="a", divider=".", hide_types=["plate"]), 0)).get_trace()
    assert list(tr) == ["p", "a.s", "a.d"]
    assert [f.name for f in tr["a.s"]["cond_indep_stack"]] == ["p"]
    tr = trace(seed(scope(_plated, prefix="a", hide_types=["deterministic"]), 0)).get_trace()
    assert list(tr) == ["a/p", "a/s", "d"]


# -- uncondition ----------------------------------------------------------------------------


def _observed_model(obs=None):
    return jppl.sample("x", dist.Normal(3.0, 0.5), obs=obs)


@pytest.mark.parametrize("seed_outside", [True, False])
def test_uncondition_samples_observed_sites(seed_outside):
    obs = jnp.asarray(100.0)

    def run(i):
        if seed_outside:
            return trace(seed(uncondition(_observed_model), i)).get_trace(obs)
        return trace(uncondition(seed(_observed_model, i))).get_trace(obs)

    tr = run(0)
    site = tr["x"]
    assert not site["is_observed"]
    assert site["infer"]["was_observed"] is True
    assert float(site["infer"]["obs"]) == 100.0
    draws = np.array([float(run(i)["x"]["value"]) for i in range(300)])
    # Draws from N(3, 0.5): 5 standard errors on the mean and a chi-square bound on the sd.
    assert abs(draws.mean() - 3.0) < 5 * 0.5 / np.sqrt(300)
    assert 0.4 < draws.std(ddof=1) < 0.6
    # Latent sites are left alone.
    assert trace(seed(uncondition(_observed_model), 0)).get_trace()["x"]["infer"] == {}


def test_uncondition_undoes_condition():
    tr = trace(seed(uncondition(condition(_observed_model, data={"x": 7.0})), 0)).get_trace()
    assert not tr["x"]["is_observed"] and float(tr["x"]["infer"]["obs"]) == 7.0
    assert float(tr["x"]["value"]) != 7.0


# -- infer_config ---------------------------------------------------------------------------


def test_infer_config_merges_into_sample_sites_only():
    user_infer = {"keep": 1}

    def model():
        jppl.param("w", 1.0)
        jppl.sample("x", dist.Normal(0.0, 1.0), infer=user_infer)
        jppl.sample("y", dist.Normal(0.0, 1.0))

    configured = infer_config(model, config_fn=lambda site: {"tag": site["name"]})
    tr = trace(seed(configured, 0)).get_trace()
    assert tr["x"]["infer"] == {"keep": 1, "tag": "x"}
    assert tr["y"]["infer"] == {"tag": "y"}
    assert "tag" not in tr["w"].get("infer", {})
    assert user_infer == {"keep": 1}
    with pytest.raises(TypeError, match="dict for site 'x'"):
        seed(infer_config(model, config_fn=lambda site: None), 0)()


# -- handler(**kwargs)(fn) -------------------------------------------------------------------


def _two_site_model():
    with jppl.plate("p", 3):
        w = jppl.param("w", jnp.ones(3))
        x = jppl.sample("x", dist.Normal(w, 1.0))
        jppl.sample("y", dist.Normal(x, 1.0), obs=jnp.zeros(3))
    return x


_BASE_TRACE = trace(seed(_two_site_model, 5)).get_trace()

_HANDLER_OPTIONS = {
    "block": (block, {"hide": ["y"]}),
    "condition": (condition, {"data": {"x": jnp.full(3, 2.0)}}),
    "do": (do, {"data": {"x": jnp.full(3, 2.0)}}),
    "infer_config": (infer_config, {"config_fn": lambda site: {"t": 1}}),
    "lift": (lift, {"prior": dist.Normal(0.0, 1.0)}),
    "mask": (mask, {"mask": jnp.array([True, False, True])}),
    "reparam": (handlers.reparam, {"config": {"x": LocScaleReparam(0.0)}}),
    "replay": (replay, {"trace": _BASE_TRACE}),
    "scale": (scale, {"scale": 2.0}),
    "scope": (scope, {"prefix": "s"}),
    "substitute": (substitute, {"data": {"w": jnp.zeros(3)}}),
    "uncondition": (uncondition, {}),
}


@pytest.mark.parametrize("name", sorted(_HANDLER_OPTIONS))
def test_every_handler_works_as_handler_of_kwargs_applied_to_fn(name):
    handler, options = _HANDLER_OPTIONS[name]
    wrapped = handler(**options)(_two_site_model)
    assert wrapped.__name__ == "_two_site_model"
    got = trace(seed(wrapped, 0)).get_trace()
    ref = trace(seed(handler(_two_site_model, **options), 0)).get_trace()
    assert list(got) == list(ref)
    for site in ref:
        np.testing.assert_array_equal(got[site]["value"], ref[site]["value"])
        assert got[site].get("is_observed") == ref[site].get("is_observed")


def test_seed_and_trace_work_as_decorators_with_keywords():
    a = seed(rng_seed=0)(_two_site_model)()
    b = seed(_two_site_model, rng_seed=0)()
    np.testing.assert_array_equal(a, b)
    tr = trace()(seed(rng_seed=0)(_two_site_model)).get_trace()
    np.testing.assert_array_equal(tr["x"]["value"], a)
    with pytest.raises(TypeError, match="without a function"):
        seed(rng_seed=0)(1, 2)


# -- plate_stack ---------------------------------------------------------------------------


def test_plate_stack_shapes_names_and_dims():
    def model():
        with jppl.plate_stack("b", [2, 3, 4], rightmost_dim=-2):
            return jppl.sample("x", dist.Normal(0.0, 1.0))

    tr = trace(seed(model, 0)).get_trace()
    assert tr["x"]["value"].shape == (2, 3, 4, 1)
    frames = {f.name: (f.dim, f.size) for f in tr["x"]["cond_indep_stack"]}
    assert frames == {"b_0": (-2, 4), "b_1": (-3, 3), "b_2": (-4, 2)}
    assert jppl.plate_stack is jppl.primitives.plate_stack
    with pytest.raises(ValueError, match="rightmost_dim"):
        with jppl.plate_stack("b", [2], rightmost_dim=0):
            pass


# -- mutable and default_process_message ---------------------------------------------------


def _counter_model():
    state = mutable("count", {"n": jnp.asarray(0)})
    state["n"] = state["n"] + 1
    return state["n"]


def test_mutable_state_persists_across_runs_through_trace_and_substitute():
    assert _counter_model() == 1  # outside handlers: init_value
    tr = trace(_counter_model).get_trace()
    assert tr["count"]["type"] == "mutable"
    state = tr["count"]["value"]
    assert int(state["n"]) == 1
    for expected in (2, 3, 4):
        tr = trace(substitute(_counter_model, data={"count": state})).get_trace()
        assert int(tr["count"]["value"]["n"]) == expected
        assert int(state["n"]) == expected - 1  # the caller's dict is not touched
        state = tr["count"]["value"]


def test_default_process_message_fills_values():
    msg = new_message("param", "w", fn=lambda v: 2 * v, args=(jnp.asarray(1.5),))
    default_process_message(msg)
    assert float(msg["value"]) == 3.0
    msg = new_message(
        "sample",
        "x",
        fn=dist.Normal(0.0, 1.0),
        kwargs={"rng_key": jax.random.key(0), "sample_shape": (2,)},
    )
    default_process_message(msg)
    assert msg["value"].shape == (2,)
    np.testing.assert_array_equal(
        msg["value"], dist.Normal(0.0, 1.0).sample(jax.random.key(0), (2,))
    )


# -- Vindex ----------------------------------------------------------------------------------


def test_vindex_broadcasts_batch_dims_like_a_loop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 1, 1, 5, 6, 7))  # batch (2, 1, 1), event (5, 6, 7)
    i = rng.integers(0, 5, size=(3, 4))
    j = rng.integers(-7, 7, size=(4,))
    got = np.asarray(Vindex(jnp.asarray(x))[..., i, :, j])
    assert got.shape == (2, 3, 4, 6)
    expected = np.empty((2, 3, 4, 6))
    for b0, b2, b3 in itertools.product(range(2), range(3), range(4)):
        expected[b0, b2, b3] = x[b0, 0, 0, i[b2, b3], :, j[b3]]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_vindex_without_ellipsis_and_with_scalars():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 5, 6))
    i = rng.integers(0, 4, size=(3,))
    k = rng.integers(0, 6, size=(2, 1))
    got = np.asarray(vindex(jnp.asarray(x), (i, slice(None), k)))
    assert got.shape == (2, 3, 5)
    expected = np.empty((2, 3, 5))
    for a, b in itertools.product(range(2), range(3)):
        expected[a, b] = x[i[b], :, k[a, 0]]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # Scalars and slices only: plain indexing; trailing dims are kept.
    np.testing.assert_allclose(Vindex(jnp.asarray(x))[1, :, 2], x[1, :, 2], rtol=1e-6)
    np.testing.assert_allclose(Vindex(jnp.asarray(x))[..., 2], x[..., 2], rtol=1e-6)
    np.testing.assert_allclose(Vindex(jnp.asarray(x))[3], x[3], rtol=1e-6)


def test_vindex_mixture_component_selection_under_jit():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(3), size=(4, 2))  # (states 4, outcomes 2, comps 3)
    z = rng.integers(0, 4, size=(10,))
    y = rng.integers(0, 2, size=(10,))
    got = jax.jit(lambda p, z, y: Vindex(p)[z, y, :])(jnp.asarray(probs), z, y)
    np.testing.assert_allclose(
        got, np.stack([probs[a, b] for a, b in zip(z, y, strict=True)]), rtol=1e-6
    )


def test_vindex_bad_indices_error():
    x = jnp.zeros((3, 4))
    with pytest.raises(NotImplementedError, match="slice"):
        Vindex(x)[1:2, 0]
    with pytest.raises(IndexError, match="'...' may only come first"):
        Vindex(x)[0, ...]
    with pytest.raises(IndexError, match="integer"):
        Vindex(x)[..., jnp.ones(2)]
    with pytest.raises(IndexError, match="3 indices"):
        Vindex(x)[0, 0, 0]
    with pytest.raises(IndexError, match="broadcast"):
        Vindex(jnp.zeros((2, 3, 4)))[..., jnp.zeros(5, int), 0]
