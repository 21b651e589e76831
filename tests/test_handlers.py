"""Primitives, the handler stack and every effect handler, alone and composed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import stats

import jppl
import jppl.distributions as dist
from jppl import handlers
from jppl.handlers import (
    block,
    condition,
    do,
    lift,
    mask,
    reparam,
    replay,
    scale,
    scope,
    seed,
    substitute,
    trace,
)
from jppl.reparam import LocScaleReparam

NUMPYRO_SITE_KEYS = {
    "type",
    "name",
    "fn",
    "args",
    "kwargs",
    "value",
    "is_observed",
    "scale",
    "mask",
    "cond_indep_stack",
    "infer",
}


def simple_model(y=None):
    mu = jppl.sample("mu", dist.Normal(0.0, 1.0))
    sigma = jppl.sample("sigma", dist.HalfNormal(1.0))
    with jppl.plate("N", 3):
        jppl.sample("y", dist.Normal(mu, sigma), obs=y)
    return mu


def site_log_prob(site):
    lp = site["fn"].log_prob(site["value"])
    return lp if site["scale"] is None else site["scale"] * lp


# -- primitives ----------------------------------------------------------------------------------


def test_sample_without_handlers_uses_rng_key():
    x = jppl.sample("x", dist.Normal(0.0, 1.0), rng_key=jax.random.key(1))
    assert x.shape == ()
    assert jppl.sample("x", dist.Normal(0.0, 1.0), obs=2.0) == 2.0


def test_latent_sample_without_key_says_wrap_in_seed():
    with pytest.raises(ValueError, match=r"'mu'.*seed"):
        simple_model()
    with pytest.raises(ValueError, match=r"'mu'.*seed"):
        trace(simple_model).get_trace()


def test_trace_sites_have_numpyro_keys_and_order():
    tr = trace(seed(simple_model, 0)).get_trace(jnp.ones(3))
    assert list(tr) == ["mu", "sigma", "N", "y"]
    for name in ("mu", "sigma", "y"):
        assert NUMPYRO_SITE_KEYS <= set(tr[name])
        assert tr[name]["type"] == "sample"
    assert tr["y"]["is_observed"] and not tr["mu"]["is_observed"]
    assert tr["y"]["fn"].batch_shape == (3,)
    assert tr["y"]["cond_indep_stack"] == [jppl.CondIndepStackFrame("N", -1, 3)]
    assert tr["N"]["type"] == "plate"
    np.testing.assert_array_equal(tr["N"]["value"], np.arange(3))


def test_seed_is_deterministic_and_observed_sites_use_no_key():
    a = trace(seed(simple_model, 3)).get_trace(jnp.ones(3))
    b = trace(seed(simple_model, 3)).get_trace(jnp.zeros(3))
    c = trace(seed(simple_model, 4)).get_trace(jnp.ones(3))
    assert a["mu"]["value"] == b["mu"]["value"]
    assert a["sigma"]["value"] == b["sigma"]["value"]
    assert a["mu"]["value"] != c["mu"]["value"]
    # A seeded model is a pure function of its seed: calling it twice gives the same draws.
    seeded = seed(simple_model, jax.random.key(7))
    assert seeded(jnp.ones(3)) == seeded(jnp.ones(3))


def test_seed_accepts_raw_and_typed_keys_and_rejects_junk():
    seed(simple_model, jax.random.PRNGKey(0))(jnp.ones(3))
    seed(simple_model, jax.random.key(0))(jnp.ones(3))
    with pytest.raises(TypeError, match="rng_seed"):
        seed(simple_model, "zero")
    with pytest.raises(ValueError, match="rng_seed"):
        seed(simple_model)


def test_seeded_model_under_jit_and_vmap():
    def draw(k):
        return trace(seed(simple_model, k)).get_trace(jnp.ones(3))["mu"]["value"]

    keys = jax.random.split(jax.random.key(0), 4)
    vm = jax.vmap(draw)(keys)
    jt = jnp.stack([jax.jit(draw)(k) for k in keys])
    assert_allclose(vm, jt, rtol=1e-6)
    assert len(set(np.asarray(vm).tolist())) == 4


def test_prng_key_primitive():
    assert jppl.prng_key() is None
    with seed(rng_seed=0):
        k1, k2 = jppl.prng_key(), jppl.prng_key()
    assert not np.array_equal(jax.random.key_data(k1), jax.random.key_data(k2))


def test_deterministic_and_factor():
    def model():
        x = jppl.sample("x", dist.Normal(0.0, 1.0))
        jppl.deterministic("x2", x**2)
        jppl.factor("penalty", -3.5)

    tr = trace(seed(model, 0)).get_trace()
    assert tr["x2"]["type"] == "deterministic"
    assert_allclose(tr["x2"]["value"], tr["x"]["value"] ** 2)
    assert tr["penalty"]["is_observed"]
    assert_allclose(site_log_prob(tr["penalty"]), -3.5)


def test_param_site_and_callable_init():
    def guide():
        a = jppl.param("a", jnp.ones(2))
        b = jppl.param("b", lambda k: jax.random.normal(k, (3,)))
        return a, b

    tr = trace(seed(guide, 0)).get_trace()
    assert tr["a"]["type"] == "param"
    assert tr["b"]["value"].shape == (3,)
    assert tr["a"]["kwargs"]["constraint"] is dist.constraints.real
    with pytest.raises(ValueError, match="'b'.*seed"):
        trace(guide).get_trace()


# -- bad input -----------------------------------------------------------------------------------


def test_duplicate_site_names_raise():
    def model():
        jppl.sample("x", dist.Normal(0.0, 1.0))
        jppl.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="'x'.*twice"):
        trace(seed(model, 0)).get_trace()


def test_obs_outside_support_raises_with_site_name():
    def model(y):
        jppl.sample("rate", dist.Exponential(1.0), obs=y)

    jppl.enable_validation()
    with pytest.raises(ValueError, match="'rate'.*support"):
        trace(seed(model, 0)).get_trace(jnp.array([-1.0, 2.0]))
    jppl.enable_validation(False)
    trace(seed(model, 0)).get_trace(jnp.array([-1.0, 2.0]))  # off: no check

    def model2(y):
        jppl.sample("count", dist.Poisson(3.0, validate_args=True), obs=y)

    with pytest.raises(ValueError, match="'count'.*support"):
        trace(model2).get_trace(jnp.array(1.5))


def test_invalid_parameters_name_the_site():
    def model():
        jppl.sample("s", dist.Normal(0.0, -1.0, validate_args=True))

    with pytest.raises(ValueError, match=r"'s'.*scale"):
        trace(seed(model, 0)).get_trace()

    def model2():
        jppl.sample("coin", dist.Bernoulli(probs=1.5))

    jppl.enable_validation()
    with pytest.raises(ValueError, match=r"'coin'.*probs"):
        trace(seed(model2, 0)).get_trace()
    # Outside a model, the error is raised at construction.
    with pytest.raises(ValueError, match="scale"):
        dist.Normal(0.0, -1.0)


def test_plate_size_conflict_names_site_and_plate():
    def model():
        with jppl.plate("N", 3):
            jppl.sample("x", dist.Normal(jnp.zeros(5), 1.0))

    with pytest.raises(ValueError, match=r"'x'.*plate 'N'.*\(5,\)"):
        trace(seed(model, 0)).get_trace()


@pytest.mark.parametrize(
    "obs, err",
    [
        ([1.0, 2.0, 3.0], TypeError),
        ("abc", TypeError),
        (np.array(["a", "b", "c"]), TypeError),
        (np.array([1 + 1j, 2, 3]), TypeError),
        (jnp.ones(4), ValueError),
    ],
)
def test_bad_obs_is_rejected_with_site_name(obs, err):
    with pytest.raises(err, match="'y'"):
        trace(seed(simple_model, 0)).get_trace(obs)


def test_condition_rejects_non_array_values():
    with pytest.raises(TypeError, match="'mu'"):
        trace(seed(condition(simple_model, {"mu": [1.0]}), 0)).get_trace(jnp.ones(3))


def test_plate_argument_errors():
    with pytest.raises(ValueError, match="size"):
        jppl.plate("N", 0)
    with pytest.raises(ValueError, match="subsample_size"):
        jppl.plate("N", 3, subsample_size=5)
    with pytest.raises(TypeError, match="size"):
        jppl.plate("N", 2.5)
    with pytest.raises(ValueError, match="dim"):
        jppl.plate("N", 3, dim=0)


def test_sample_rejects_non_distribution():
    with pytest.raises(TypeError, match="'x'"):
        jppl.sample("x", stats.norm(), rng_key=jax.random.key(0))


# -- plates --------------------------------------------------------------------------------------


def test_nested_plates_allocate_dims_and_broadcast():
    def model():
        with jppl.plate("a", 4):
            with jppl.plate("b", 3):
                x = jppl.sample("x", dist.Normal(0.0, 1.0))
            with jppl.plate("c", 2, dim=-3):
                y = jppl.sample("y", dist.Normal(0.0, 1.0))
        return x, y

    tr = trace(seed(model, 0)).get_trace()
    assert tr["x"]["value"].shape == (3, 4)
    assert tr["y"]["value"].shape == (2, 1, 4)
    dims = {f.name: f.dim for f in tr["x"]["cond_indep_stack"]}
    assert dims == {"a": -1, "b": -2}


def test_plate_with_event_dims_and_to_event():
    def model():
        with jppl.plate("N", 5):
            return jppl.sample("z", dist.Normal(jnp.zeros(2), 1.0).to_event(1))

    assert seed(model, 0)().shape == (5, 2)


def test_plate_subsample_scale_and_indices():
    n, b = 100, 10
    data = jnp.arange(float(n))

    def model():
        with jppl.plate("N", n, subsample_size=b) as idx:
            batch = jppl.subsample(data, event_dim=0)
            jppl.sample("y", dist.Normal(0.0, 1.0), obs=batch)
        return idx, batch

    tr = trace(seed(model, 1)).get_trace()
    idx = tr["N"]["value"]
    assert idx.shape == (b,) and len(set(np.asarray(idx).tolist())) == b
    assert_allclose(tr["y"]["value"], data[idx])
    assert tr["y"]["scale"] == pytest.approx(n / b)
    expected = n / b * stats.norm.logpdf(np.asarray(data[idx])).sum()
    assert_allclose(site_log_prob(tr["y"]).sum(), expected, rtol=1e-5)
    # Without a key the minibatch cannot be drawn; the message says what to do.
    with pytest.raises(ValueError, match="'N'.*seed"):
        trace(model).get_trace()
    # ...unless the indices are substituted.
    tr2 = trace(substitute(model, {"N": jnp.arange(b)})).get_trace()
    assert_allclose(tr2["y"]["value"], data[:b])


# -- handlers -----------------------------------------------------------------------------------


def test_condition_makes_sites_observed():
    tr = trace(seed(condition(simple_model, {"mu": 0.3}), 0)).get_trace(jnp.ones(3))
    assert tr["mu"]["is_observed"] and tr["mu"]["value"] == pytest.approx(0.3)
    tr = trace(
        seed(
            condition(simple_model, condition_fn=lambda s: 0.7 if s["name"] == "sigma" else None), 0
        )
    ).get_trace(jnp.ones(3))
    assert tr["sigma"]["is_observed"] and tr["sigma"]["value"] == pytest.approx(0.7)


def test_substitute_values_and_function():
    tr = trace(substitute(seed(simple_model, 0), {"mu": 1.5})).get_trace(jnp.ones(3))
    assert tr["mu"]["value"] == 1.5 and not tr["mu"]["is_observed"]

    def only_mu(site):
        return 2.0 if site["name"] == "mu" else None

    tr = trace(substitute(seed(simple_model, 0), substitute_fn=only_mu)).get_trace(jnp.ones(3))
    assert tr["mu"]["value"] == 2.0
    with pytest.raises(ValueError, match="exactly one"):
        substitute(simple_model)


def test_seed_condition_substitute_composition():
    model = seed(condition(substitute(simple_model, {"sigma": 2.0}), {"mu": 0.5}), 0)
    tr = trace(model).get_trace(jnp.ones(3))
    assert tr["mu"]["is_observed"] and tr["mu"]["value"] == 0.5
    assert tr["sigma"]["value"] == 2.0 and not tr["sigma"]["is_observed"]
    total = sum(site_log_prob(s).sum() for s in tr.values() if s["type"] == "sample")
    expected = (
        stats.norm.logpdf(0.5) + stats.halfnorm.logpdf(2.0) + stats.norm.logpdf(1.0, 0.5, 2.0) * 3
    )
    assert_allclose(total, expected, rtol=1e-5)


def test_replay_reuses_guide_values():
    def guide(y=None):
        jppl.sample("mu", dist.Normal(5.0, 0.1))
        jppl.sample("sigma", dist.LogNormal(0.0, 0.1))

    guide_tr = trace(seed(guide, 1)).get_trace()
    tr = trace(replay(seed(simple_model, 2), trace=guide_tr)).get_trace(jnp.ones(3))
    assert tr["mu"]["value"] == guide_tr["mu"]["value"]
    assert tr["sigma"]["value"] == guide_tr["sigma"]["value"]
    assert_allclose(tr["y"]["value"], jnp.ones(3))


def test_block_hides_sites_from_outer_handlers():
    tr = trace(block(seed(simple_model, 0), hide=["mu"])).get_trace(jnp.ones(3))
    assert "mu" not in tr and "sigma" in tr
    tr = trace(block(seed(simple_model, 0))).get_trace(jnp.ones(3))
    assert len(tr) == 0
    tr = trace(block(seed(simple_model, 0), expose=["y"])).get_trace(jnp.ones(3))
    assert list(tr) == ["y"]
    tr = trace(block(seed(simple_model, 0), expose_types=["plate"])).get_trace(jnp.ones(3))
    assert list(tr) == ["N"]

    # block inside trace: an inner trace still sees everything.
    def outer():
        with trace() as inner_tr:
            with block(hide_fn=lambda s: s["name"] == "sigma"):
                seed(simple_model, 0)(jnp.ones(3))
        return inner_tr

    with trace() as outer_tr:
        inner = outer()
    assert "sigma" not in inner and "mu" in inner and "mu" in outer_tr


def test_block_hidden_site_still_gets_a_key_from_seed_outside():
    # As in NumPyro: hiding a latent site does not leave it without a key.
    def model():
        return jppl.sample("mu", dist.Normal(0.0, 1.0))

    tr = trace(seed(block(model), 0)).get_trace()
    assert "mu" not in tr
    a, b, c = (float(seed(block(model), k)()) for k in (0, 0, 1))
    assert a == b != c
    with pytest.raises(ValueError, match="'mu'.*PRNG key"):
        block(model)()


def test_scale_multiplies_and_composes_with_plate_subsampling():
    tr = trace(scale(scale(seed(simple_model, 0), 2.0), 3.0)).get_trace(jnp.ones(3))
    assert tr["mu"]["scale"] == pytest.approx(6.0)
    with pytest.raises(ValueError, match="positive"):
        scale(simple_model, -1.0)


def test_mask_zeroes_log_prob():
    m = jnp.array([True, False, True])

    def model(y):
        with jppl.plate("N", 3), mask(mask=m):
            jppl.sample("y", dist.Normal(0.0, 1.0), obs=y)
        return jppl.get_mask()

    y = jnp.array([0.1, 0.2, 0.3])
    tr = trace(model).get_trace(y)
    lp = site_log_prob(tr["y"])
    assert_allclose(lp, np.where(m, stats.norm.logpdf(np.asarray(y)), 0.0), rtol=1e-6)
    np.testing.assert_array_equal(tr["y"]["mask"], m)
    with pytest.raises(TypeError, match="boolean"):
        mask(model, mask=jnp.ones(3))


def test_do_intervenes_without_observing():
    def model():
        x = jppl.sample("x", dist.Normal(0.0, 1.0))
        y = jppl.sample("y", dist.Normal(x, 0.01))
        return x, y

    tr = trace(seed(do(model, {"x": 10.0}), 0)).get_trace()
    assert not tr["x"]["is_observed"]
    assert abs(float(tr["x"]["value"])) < 5  # x itself is still drawn from its prior
    assert float(tr["y"]["value"]) == pytest.approx(10.0, abs=0.1)  # y sees the intervention
    assert "x__CF" not in tr
    # condition, by contrast, observes x.
    tr_c = trace(seed(condition(model, {"x": 10.0}), 0)).get_trace()
    assert tr_c["x"]["is_observed"] and tr_c["x"]["value"] == 10.0


def test_scope_prefixes_names():
    def model():
        with scope(prefix="outer"):
            with scope(prefix="inner"):
                jppl.sample("x", dist.Normal(0.0, 1.0))
            jppl.param("p", 1.0)

    tr = trace(seed(model, 0)).get_trace()
    assert set(tr) == {"outer/inner/x", "outer/p"}


def test_lift_turns_params_into_samples():
    def model():
        return jppl.param("w", jnp.zeros(3))

    tr = trace(seed(lift(model, prior=dist.Normal(0.0, 1.0)), 0)).get_trace()
    assert tr["w"]["type"] == "sample"
    assert tr["w"]["fn"].batch_shape == (3,)
    assert not np.allclose(tr["w"]["value"], 0.0)
    tr = trace(seed(lift(model, prior={"other": dist.Normal(0.0, 1.0)}), 0)).get_trace()
    assert tr["w"]["type"] == "param"


def test_infer_config():
    tr = trace(
        seed(handlers.infer_config(simple_model, lambda s: {"tag": s["name"]}), 0)
    ).get_trace(jnp.ones(3))
    assert tr["mu"]["infer"] == {"tag": "mu"}


def eight_schools_centered(sigma, y=None):
    mu = jppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = jppl.sample("tau", dist.HalfCauchy(5.0))
    with jppl.plate("J", len(sigma)):
        theta = jppl.sample("theta", dist.Normal(mu, tau))
        jppl.sample("obs", dist.Normal(theta, sigma), obs=y)


def test_loc_scale_reparam_decenters_without_rewriting():
    sigma = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
    y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    model = reparam(eight_schools_centered, config={"theta": LocScaleReparam(centered=0)})
    tr = trace(seed(model, 0)).get_trace(sigma, y)
    assert tr["theta"]["type"] == "deterministic"
    assert tr["theta_decentered"]["type"] == "sample"
    z = tr["theta_decentered"]["fn"]
    assert_allclose(z.mean, 0.0) and assert_allclose(z.variance, 1.0)
    assert_allclose(
        tr["theta"]["value"],
        tr["mu"]["value"] + tr["tau"]["value"] * tr["theta_decentered"]["value"],
        rtol=1e-6,
    )

    # theta has the same distribution as in the centered model: compare moments.
    def draw(k):
        return trace(seed(model, k)).get_trace(sigma, y)

    keys = jax.random.split(jax.random.key(1), 20000)
    trs = jax.vmap(lambda k: {s: v["value"] for s, v in draw(k).items() if s in ("mu", "theta")})(
        keys
    )
    theta_minus_mu = trs["theta"] - trs["mu"][:, None]
    # theta - mu given tau is N(0, tau): its median absolute value matches that of the
    # centered model's draws.
    centered = jax.vmap(
        lambda k: {
            s: v["value"]
            for s, v in trace(seed(eight_schools_centered, k)).get_trace(sigma, y).items()
            if s in ("mu", "theta")
        }
    )(keys)
    c_minus_mu = centered["theta"] - centered["mu"][:, None]
    assert_allclose(np.median(np.abs(theta_minus_mu)), np.median(np.abs(c_minus_mu)), rtol=0.05)


def test_loc_scale_reparam_partial_centering_and_learned():
    def model():
        return jppl.sample("x", dist.Normal(2.0, 3.0))

    for c in (0.0, 0.3, 1.0):
        tr = trace(seed(reparam(model, {"x": LocScaleReparam(centered=c)}), 0)).get_trace()
        if c == 1.0:
            assert tr["x"]["type"] == "sample"
            continue
        x_dec = tr["x_decentered"]["value"]
        assert_allclose(tr["x"]["value"], 2.0 + 3.0 ** (1 - c) * (x_dec - c * 2.0), rtol=1e-6)
    tr = trace(seed(reparam(model, {"x": LocScaleReparam()}), 0)).get_trace()
    assert tr["x_centered"]["type"] == "param"
    with pytest.raises(ValueError, match="centered"):
        LocScaleReparam(centered=2.0)


def test_custom_handler_subclass():
    class record_names(jppl.Messenger):
        def __init__(self, fn=None):
            self.names = []
            super().__init__(fn)

        def postprocess_message(self, msg):
            if msg["type"] == "sample":
                self.names.append(msg["name"])

    class double_scale(jppl.Messenger):
        def process_message(self, msg):
            if msg["type"] == "sample":
                msg["scale"] = 2.0 if msg["scale"] is None else 2.0 * msg["scale"]

    rec = record_names(seed(simple_model, 0))
    rec(jnp.ones(3))
    assert rec.names == ["mu", "sigma", "y"]
    tr = trace(double_scale(seed(simple_model, 0))).get_trace(jnp.ones(3))
    assert tr["y"]["scale"] == 2.0


def test_stack_is_clean_after_exception():
    from jppl.stack import HANDLER_STACK as _HANDLER_STACK

    def bad():
        jppl.sample("x", dist.Normal(0.0, 1.0))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        trace(seed(bad, 0)).get_trace()
    assert _HANDLER_STACK == []


def test_lazy_param_calls_its_initializer_only_when_no_handler_sets_it():
    from jppl.primitives import lazy_param

    calls = []

    def init():
        calls.append(1)
        return {"w": jnp.ones(3)}

    def model():
        return lazy_param("net", init)

    given = {"w": jnp.full(3, 2.0)}
    out = handlers.substitute(model, data={"net": given})()
    assert calls == [] and out is given
    tr = handlers.trace(model).get_trace()
    assert calls == [1] and tr["net"]["type"] == "param"
    assert_allclose(tr["net"]["value"]["w"], 1.0)
    with pytest.raises(TypeError, match="site name"):
        lazy_param("", init)
