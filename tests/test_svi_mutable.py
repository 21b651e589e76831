"""SVI keeps the state of ``mutable`` sites from step to step (NumPyro's ``mutable_state``).

Expected values are closed forms: SVI.init runs the model once (as NumPyro's ``init``) and
each step once more, so after ``N`` steps a site updated on every run has been updated
``N + 1`` times (a counter holds ``N + 1``, an exponential moving average with decay ``r``
of a fixed value ``m`` from 0 holds ``m * (1 - r ** (N + 1))``).
"""

import math
from typing import Any, NamedTuple

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jppl
import jppl.distributions as dist
from jppl import checkpoint, parallel
from jppl.handlers import substitute
from jppl.infer import SVI, RenyiELBO, Trace_ELBO, TraceGraph_ELBO
from jppl.nn import flax_module
from jppl.primitives import mutable
from jppl.vi import SVIState, load_state, save_state

DECAY = 0.9
X = jnp.arange(5.0)  # mean 2


def counting_model(x):
    stats = mutable("stats", {"n": jnp.array(0.0), "ema": jnp.array(0.0)})
    stats["n"] = stats["n"] + 1.0
    stats["ema"] = DECAY * stats["ema"] + (1 - DECAY) * jnp.mean(x)
    mu = jppl.sample("mu", dist.Normal(0.0, 1.0))
    jppl.sample("x", dist.Normal(mu, 1.0), obs=x)


def normal_guide(x):
    loc = jppl.param("loc", 0.0)
    jppl.sample("mu", dist.Normal(loc, 1.0))


def expected_stats(num_steps, mean=2.0):
    runs = num_steps + 1  # SVI.init's run and one per step
    return runs, mean * (1 - DECAY**runs)


def check_stats(state, num_steps):
    n, ema = expected_stats(num_steps)
    np.testing.assert_allclose(state.mutable_state["stats"]["n"], n)
    np.testing.assert_allclose(state.mutable_state["stats"]["ema"], ema, rtol=1e-6)


def test_svi_update_keeps_mutable_state():
    svi = SVI(counting_model, normal_guide, optax.adam(0.01), Trace_ELBO())
    state = svi.init(jax.random.key(0), X)
    check_stats(state, 0)
    update = jax.jit(svi.update)
    for _ in range(3):
        state, _ = update(state, X)
    check_stats(state, 3)
    assert set(svi.get_params(state)) == {"loc"}  # the state is not a parameter


def test_svi_run_keeps_mutable_state_and_resumes_bitwise():
    svi = SVI(counting_model, normal_guide, optax.adam(0.01), Trace_ELBO())
    full = svi.run(jax.random.key(1), 12, X, progress_bar=False)
    check_stats(full.state, 12)
    first = svi.run(jax.random.key(1), 5, X, progress_bar=False)
    rest = svi.run(None, 7, X, progress_bar=False, init_state=first.state)
    check_stats(rest.state, 12)
    for a, b in zip(
        jax.tree.leaves((full.state.params, full.state.mutable_state)),
        jax.tree.leaves((rest.state.params, rest.state.mutable_state)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_svi_without_mutable_sites_has_no_mutable_state():
    svi = SVI(
        lambda x: jppl.sample("x", dist.Normal(jppl.sample("mu", dist.Normal(0, 1)), 1), obs=x),
        normal_guide,
        optax.adam(0.01),
        Trace_ELBO(),
    )
    state = svi.init(jax.random.key(0), X)
    assert state.mutable_state is None
    state, _ = svi.update(state, X)
    assert state.mutable_state is None
    # A state built without the field (as before it existed) is still a valid state.
    old = SVIState(state.params, state.optim_state, state.rng_key, state.step)
    assert old.mutable_state is None
    svi.update(old, X)


def test_svi_state_without_mutable_state_for_a_mutable_model_is_an_error():
    svi = SVI(counting_model, normal_guide, optax.adam(0.01), Trace_ELBO())
    state = svi.init(jax.random.key(0), X)
    stale = state._replace(mutable_state=None)  # e.g. a state built by hand
    with pytest.raises(ValueError, match=r"mutable sites \['stats'\].*no mutable_state"):
        svi.update(stale, X)
    with pytest.raises(ValueError, match="no mutable_state"):
        svi.evaluate(stale, X)


@pytest.mark.parametrize("shard_state", [False, True])
def test_svi_mutable_state_on_a_mesh(shard_state):
    def model(x):
        stats = mutable("stats", {"n": jnp.array(0.0), "ema": jnp.zeros(8)})
        stats["n"] = stats["n"] + 1.0
        stats["ema"] = DECAY * stats["ema"] + (1 - DECAY) * jnp.mean(x)
        mu = jppl.sample("mu", dist.Normal(0.0, 1.0))
        with jppl.plate("data", x.shape[0], shard="data"):
            jppl.sample("x", dist.Normal(mu, 1.0), obs=x)

    x = jnp.arange(16.0)  # mean 7.5
    mesh = parallel.make_mesh(data=-1)
    svi = SVI(
        model, normal_guide, optax.adam(0.01), Trace_ELBO(), mesh=mesh, shard_state=shard_state
    )
    state = svi.run(jax.random.key(0), 5, x, progress_bar=False).state
    runs, ema = expected_stats(5, mean=7.5)
    np.testing.assert_allclose(state.mutable_state["stats"]["n"], runs)
    np.testing.assert_allclose(state.mutable_state["stats"]["ema"], np.full(8, ema), rtol=1e-6)


def shifted_model():
    # log p = -c (the counter before this run's increment) + log N(mu; 0, 1)
    stats = mutable("stats", {"c": jnp.array(0.0)})
    jppl.factor("shift", -stats["c"])
    stats["c"] = stats["c"] + 1.0
    jppl.sample("mu", dist.Normal(0.0, 1.0))


def delta_guide():
    jppl.sample("mu", dist.Delta(jppl.param("loc", 0.5)))


def test_svi_steps_and_evaluate_read_the_mutable_state():
    svi = SVI(shifted_model, delta_guide, optax.sgd(0.1), Trace_ELBO())
    state = svi.init(jax.random.key(0))
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    # The loss is -ELBO = c + loc**2 / 2 + log(2 pi) / 2 with c the state before the step.
    np.testing.assert_allclose(svi.evaluate(state), 1.0 + 0.125 + half_log_2pi, rtol=1e-6)
    state, loss = svi.update(state)
    np.testing.assert_allclose(loss, 1.0 + 0.125 + half_log_2pi, rtol=1e-6)
    loc = 0.5 - 0.1 * 0.5  # one SGD step on loc**2 / 2
    np.testing.assert_allclose(svi.get_params(state)["loc"], loc, rtol=1e-6)
    np.testing.assert_allclose(state.mutable_state["stats"]["c"], 2.0)
    np.testing.assert_allclose(svi.evaluate(state), 2.0 + loc**2 / 2 + half_log_2pi, rtol=1e-6)


def test_svi_mutable_site_of_guide_and_model():
    # As NumPyro: SVI.init keeps the guide's value of a site both have; each step the model
    # reads the guide's updated value, and the model's value is kept: c = 1 + 11 * steps.
    def model(x):
        stats = mutable("cnt", {"c": jnp.array(0.0)})
        stats["c"] = stats["c"] + 10.0
        counting_model(x)

    def guide(x):
        stats = mutable("cnt", {"c": jnp.array(0.0)})
        stats["c"] = stats["c"] + 1.0
        normal_guide(x)

    svi = SVI(model, guide, optax.adam(0.01), Trace_ELBO())
    state = svi.init(jax.random.key(0), X)
    np.testing.assert_allclose(state.mutable_state["cnt"]["c"], 1.0)
    for _ in range(3):
        state, _ = svi.update(state, X)
    np.testing.assert_allclose(state.mutable_state["cnt"]["c"], 34.0)
    check_stats(state, 3)


def test_svi_mutable_state_with_trace_graph_elbo():
    # TraceGraph_ELBO runs model and guide a second time (its dataflow pass): the state comes
    # from the first run only.
    def model(x):
        jppl.sample("k", dist.Bernoulli(0.5))
        counting_model(x)

    def guide(x):
        jppl.sample(
            "k", dist.Bernoulli(jppl.param("p", 0.5, constraint=dist.constraints.unit_interval))
        )
        normal_guide(x)

    svi = SVI(model, guide, optax.adam(0.01), TraceGraph_ELBO())
    result = svi.run(jax.random.key(0), 4, X, progress_bar=False)
    check_stats(result.state, 4)


def test_svi_mutable_state_with_several_particles_is_an_error():
    svi = SVI(counting_model, normal_guide, optax.adam(0.01), Trace_ELBO(num_particles=2))
    with pytest.raises(ValueError, match=r"mutable sites \['stats'\].*num_particles=1"):
        svi.init(jax.random.key(0), X)
    with pytest.raises(ValueError, match="num_particles=1"):
        SVI(counting_model, normal_guide, optax.adam(0.01), RenyiELBO()).init(jax.random.key(0), X)
    # The loss itself too (NumPyro warns and drops the state).
    with pytest.raises(ValueError, match=r"mutable sites \['stats'\].*num_particles=1"):
        Trace_ELBO(num_particles=2).loss_with_mutable_state(
            jax.random.key(0), {"loc": jnp.array(0.0)}, counting_model, normal_guide, X
        )


def test_loss_with_mutable_state_returns_the_updated_state():
    elbo = Trace_ELBO()
    state = {"stats": {"n": jnp.array(4.0), "ema": jnp.array(1.0)}}
    out = elbo.loss_with_mutable_state(
        jax.random.key(3), {"loc": jnp.array(0.0), **state}, counting_model, normal_guide, X
    )
    np.testing.assert_allclose(out["mutable_state"]["stats"]["n"], 5.0)
    np.testing.assert_allclose(out["mutable_state"]["stats"]["ema"], 0.9 * 1.0 + 0.1 * 2.0)
    np.testing.assert_allclose(state["stats"]["n"], 4.0)  # the given state is not changed
    np.testing.assert_allclose(
        out["loss"],
        elbo.loss(jax.random.key(3), {"loc": jnp.array(0.0)}, counting_model, normal_guide, X),
    )
    no_state = elbo.loss_with_mutable_state(
        jax.random.key(3), {"loc": jnp.array(0.0)}, normal_guide, normal_guide, X
    )
    assert no_state["mutable_state"] is None


def test_svi_multi_sample_guide_with_mutable_model_is_an_error():
    def guide(x):
        loc = jppl.param("loc", 0.0)
        jppl.sample("mu", dist.Normal(loc, 1.0).expand([3]))

    svi = SVI(counting_model, guide, optax.adam(0.01), Trace_ELBO(multi_sample_guide=True))
    with pytest.raises(ValueError, match="multi-sample guide"):
        svi.init(jax.random.key(0), X)


def test_svi_skipped_nonfinite_step_keeps_mutable_state():
    svi = SVI(counting_model, normal_guide, optax.adam(0.01), Trace_ELBO())
    state = svi.init(jax.random.key(0), X)
    state, _ = svi.stable_update(state, X)
    check_stats(state, 1)
    bad = X.at[0].set(jnp.nan)
    new, loss, health = svi.guarded_update(state, bad)
    assert not bool(health.ok) and not np.isfinite(loss)
    check_stats(new, 1)  # the skipped step's statistics (NaN) were not kept
    assert int(new.step) == int(state.step) + 1


def test_svi_mutable_state_checkpoint_round_trip(tmp_path):
    svi = SVI(counting_model, normal_guide, optax.adam(0.01), Trace_ELBO())
    first = svi.run(jax.random.key(2), 5, X, progress_bar=False)
    path = svi.save(tmp_path / "svi", first.state)
    for loaded in (load_state(path), SVI.load_state(path, template=first.state)):
        assert isinstance(loaded, SVIState)
        check_stats(loaded, 5)
        rest = svi.run(None, 3, X, progress_bar=False, init_state=loaded)
        check_stats(rest.state, 8)
    full = svi.run(jax.random.key(2), 8, X, progress_bar=False)
    for a, b in zip(
        jax.tree.leaves((full.state.params, full.state.mutable_state)),
        jax.tree.leaves((rest.state.params, rest.state.mutable_state)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_svi_state_without_mutable_state_checkpoint_round_trip(tmp_path):
    svi = SVI(
        lambda x: jppl.sample("x", dist.Normal(jppl.sample("mu", dist.Normal(0, 1)), 1), obs=x),
        normal_guide,
        optax.adam(0.01),
        Trace_ELBO(),
    )
    state = svi.run(jax.random.key(0), 3, X, progress_bar=False).state
    path = save_state(tmp_path / "plain", state)
    loaded = load_state(path)
    assert loaded.mutable_state is None
    np.testing.assert_array_equal(loaded.params["loc"], state.params["loc"])
    template = svi.init(jax.random.key(0), X)
    assert load_state(path, template).mutable_state is None


class FourFieldSVIState(NamedTuple):
    """An SVIState as saved before it had ``mutable_state`` (the file names SVIState)."""

    params: dict
    optim_state: Any
    rng_key: jax.Array
    step: jax.Array


FourFieldSVIState.__module__, FourFieldSVIState.__qualname__ = SVIState.__module__, "SVIState"


def test_svi_state_saved_before_mutable_state_loads(tmp_path):
    svi = SVI(
        lambda x: jppl.sample("x", dist.Normal(jppl.sample("mu", dist.Normal(0, 1)), 1), obs=x),
        normal_guide,
        optax.adam(0.01),
        Trace_ELBO(),
    )
    state = svi.run(jax.random.key(0), 3, X, progress_bar=False).state
    path = checkpoint.save(tmp_path / "old", FourFieldSVIState(*state[:4]), kind="svi")
    for loaded in (load_state(path, template=svi.init(jax.random.key(0), X)), load_state(path)):
        assert isinstance(loaded, SVIState) and loaded.mutable_state is None
        np.testing.assert_array_equal(loaded.params["loc"], state.params["loc"])
        np.testing.assert_array_equal(loaded.step, state.step)


# ---------------------------------------------------------------------------------------------
# flax_module(..., mutable=["batch_stats"]): BatchNorm running statistics
# ---------------------------------------------------------------------------------------------


class LinenBN(linen.Module):
    @linen.compact
    def __call__(self, x, train: bool = True):
        return linen.BatchNorm(use_running_average=not train, momentum=DECAY)(x)


XB = jax.random.normal(jax.random.key(1), (32, 3)) * 2.0 + jnp.array([1.0, -2.0, 3.0])
YB = jnp.zeros(32)


def expected_batch_stats(num_steps):
    """Flax's running averages (mean from 0, var from 1) after ``num_steps + 1`` training
    runs on the fixed batch ``XB`` (biased batch variance)."""
    decay = DECAY ** (num_steps + 1)
    mean = np.mean(np.asarray(XB, np.float64), axis=0)
    var = np.var(np.asarray(XB, np.float64), axis=0)
    return mean * (1 - decay), var + (1 - var) * decay


def bn_model(x, y, train=True):
    net = flax_module("bn", LinenBN(), input_shape=(1, 3), mutable=["batch_stats"])
    out = net(x, train=train)
    jppl.sample("y", dist.Normal(out.sum(-1), 1.0), obs=y)
    return out


def empty_guide(x, y, train=True):
    pass


def test_svi_flax_batchnorm_running_statistics():
    svi = SVI(bn_model, empty_guide, optax.adam(0.01), Trace_ELBO())
    result = svi.run(jax.random.key(0), 7, XB, YB, progress_bar=False)
    stats = result.state.mutable_state["bn$state"]["batch_stats"]["BatchNorm_0"]
    mean, var = expected_batch_stats(7)
    np.testing.assert_allclose(stats["mean"], mean, rtol=1e-5)
    np.testing.assert_allclose(stats["var"], var, rtol=1e-5)
    assert set(result.params) == {"bn$params"}

    # The trained network in evaluation mode uses the kept statistics ...
    data = {**result.params, **result.state.mutable_state}
    out = substitute(bn_model, data=data)(XB, YB, train=False)
    bn = result.params["bn$params"]["BatchNorm_0"]
    expected = (XB - mean) / np.sqrt(var + 1e-5) * bn["scale"] + bn["bias"]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    # ... and refuses parameters without them (NumPyro asserts), rather than the initial ones.
    with pytest.raises(ValueError, match=r"'bn\$params' has a value but 'bn\$state' has none"):
        substitute(bn_model, data=dict(result.params))(XB, YB, train=False)


def test_svi_flax_nnx_batchnorm_running_statistics():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.bn = nnx.BatchNorm(3, momentum=DECAY, rngs=rngs)

        def __call__(self, x):
            return self.bn(x)

    module = Net(nnx.Rngs(0))

    def model(x, y):
        net = flax_module("net", module, mutable=True)
        jppl.sample("y", dist.Normal(net(x).sum(-1), 1.0), obs=y)

    svi = SVI(model, lambda x, y: None, optax.adam(0.01), Trace_ELBO())
    state = svi.init(jax.random.key(0), XB, YB)
    update = jax.jit(svi.update)
    for _ in range(4):
        state, _ = update(state, XB, YB)
    stats = state.mutable_state["net$state"]["bn"]
    mean, var = expected_batch_stats(4)
    np.testing.assert_allclose(stats["mean"], mean, rtol=1e-5)
    np.testing.assert_allclose(stats["var"], var, rtol=1e-5)
