"""Tests of jppl.parallel: meshes, sharded plates, data- and sample-parallel inference.

Invariance is checked against independent truth: the log density and gradient of a logistic
regression in float64 NumPy, and the same SVI run on one device (no mesh). "Relative" error
of an array is ``max|a - b| / max|b|``. The 8 devices are fake CPU devices (conftest).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

import jppl
import jppl.distributions as dist
from jppl import parallel
from jppl.handlers import trace
from jppl.infer import Predictive
from jppl.infer.util import log_density, potential_energy
from jppl.vi import SVI, RenyiELBO, Trace_ELBO
from jppl.vi.autoguide import AutoNormal

pytestmark = pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (fake) devices")

N, F = 64, 3
RTOL = 1e-5


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, F)).astype(np.float32)
    w = np.array([1.0, -2.0, 0.5], np.float32)
    y = (rng.random(N) < 1 / (1 + np.exp(-x @ w))).astype(np.float32)
    return x, y


X, Y = _data()
W_EVAL = np.array([0.3, -0.2, 0.1], np.float32)


def logreg(x, y, subsample_size=None):
    w = jppl.sample("w", dist.Normal(0.0, 1.0).expand([F]).to_event(1))
    with jppl.plate("N", x.shape[0], subsample_size=subsample_size, shard="data"):
        xb = jppl.subsample(x, event_dim=1)
        yb = None if y is None else jppl.subsample(y, event_dim=0)
        jppl.sample("y", dist.BernoulliLogits(xb @ w), obs=yb)


def logreg_truth(w):
    """Log joint and gradient in float64 NumPy (independent of jppl)."""
    x, y, w = X.astype(np.float64), Y.astype(np.float64), w.astype(np.float64)
    logits = x @ w
    value = np.sum(y * logits - np.logaddexp(0.0, logits)) - 0.5 * np.sum(w**2)
    value -= 0.5 * F * np.log(2 * np.pi)
    grad = x.T @ (y - 1 / (1 + np.exp(-logits))) - w
    return value, grad


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _value_and_grad(mesh):
    def fn(w, x, y):
        with parallel.use_mesh(mesh):
            return jax.value_and_grad(lambda w: log_density(logreg, (x, y), {}, {"w": w})[0])(w)

    return jax.jit(fn)


# ---------------------------------------------------------------------------------------------
# Meshes
# ---------------------------------------------------------------------------------------------


def test_make_mesh_shapes_and_rest():
    mesh = parallel.make_mesh()
    assert mesh.axis_names == parallel.AXES == ("chain", "sample", "data", "model")
    assert tuple(mesh.devices.shape) == (1, 1, 1, 1)
    assert mesh.axis_types == (AxisType.Auto,) * 4
    assert dict(parallel.make_mesh(data=-1).shape)["data"] == 8
    mesh = parallel.make_mesh(sample=2, data=-1)
    assert tuple(mesh.devices.shape) == (1, 2, 4, 1)
    # Sizes that divide the device count use the first devices.
    mesh = parallel.make_mesh(data=2)
    assert list(mesh.devices.flat) == jax.devices()[:2]
    assert parallel.axis_size(mesh, "data") == 2 and parallel.axis_size(None, "data") == 1


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"data": 3}, ValueError, "multiply to 3, which does not divide the 8"),
        ({"sample": 3, "data": -1}, ValueError, "take 3 devices, which does not divide the 8"),
        ({"sample": -1, "data": -1}, ValueError, "only one axis may be -1"),
        ({"data": 0}, ValueError, "data must be a positive int or -1"),
        ({"chain": 1.5}, TypeError, "chain must be an int"),
    ],
)
def test_make_mesh_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        parallel.make_mesh(**kwargs)


def test_use_mesh_nests_and_rejects_non_meshes():
    outer, inner = parallel.make_mesh(data=2), parallel.make_mesh(data=4)
    assert parallel.current_mesh() is None
    with parallel.use_mesh(outer):
        with parallel.use_mesh(inner):
            assert parallel.current_mesh() is inner
        assert parallel.current_mesh() is outer
    assert parallel.current_mesh() is None
    with pytest.raises(TypeError, match="expected a jax.sharding.Mesh"):
        with parallel.use_mesh("data"):
            pass


# ---------------------------------------------------------------------------------------------
# Placing data
# ---------------------------------------------------------------------------------------------


def test_shard_along_and_process_local_array():
    mesh = parallel.make_mesh(sample=2, data=4)
    xs, ys = parallel.shard_along((X, Y), mesh, "data")
    assert xs.sharding.spec == P("data", None) and ys.sharding.spec == P("data")
    assert {s.data.shape for s in xs.addressable_shards} == {(N // 4, F)}
    np.testing.assert_array_equal(np.asarray(xs), X)
    # One process: its local block is the whole array.
    xl = parallel.process_local_array(X, mesh, "data")
    assert xl.sharding == xs.sharding
    np.testing.assert_array_equal(np.asarray(xl), X)
    cols = parallel.shard_along(np.zeros((3, 16), np.float32), mesh, "data", dim=-1)
    assert cols.sharding.spec == P(None, "data")
    rep = parallel.replicate({"a": X}, mesh)
    assert rep["a"].sharding.is_fully_replicated


def test_shard_along_errors():
    mesh = parallel.make_mesh(data=4)
    with pytest.raises(ValueError, match=r"size 10 at dim 0, which is not divisible by the size 4"):
        parallel.shard_along(np.zeros(10), mesh, "data")
    with pytest.raises(ValueError, match="has no axis 'batch'"):
        parallel.shard_along(np.zeros(8), mesh, "batch")
    with pytest.raises(TypeError, match="must be a jax.sharding.Mesh"):
        parallel.shard_along(np.zeros(8), None, "data")


# ---------------------------------------------------------------------------------------------
# Sharded plates
# ---------------------------------------------------------------------------------------------


def test_plate_records_shard_and_is_a_no_op_without_mesh():
    tr = trace(jppl.handlers.seed(logreg, 0)).get_trace(X, Y)
    assert tr["y"]["cond_indep_stack"] == [jppl.CondIndepStackFrame("N", -1, N, "data")]
    assert jppl.CondIndepStackFrame("N", -1, N).shard is None
    value, _ = log_density(logreg, (X, Y), {}, {"w": W_EVAL})
    truth, _ = logreg_truth(W_EVAL)
    assert abs(float(value) - truth) <= RTOL * abs(truth)


def test_plate_shard_errors():
    def model(n, axis="data"):
        with jppl.plate("obs", n, shard=axis):
            jppl.sample("z", dist.Normal(0.0, 1.0), obs=jnp.zeros(n))

    with parallel.use_mesh(parallel.make_mesh(data=4)):
        with pytest.raises(
            ValueError,
            match=r"plate 'obs' is sharded over mesh axis 'batch'.*"
            r"\('chain', 'sample', 'data', 'model'\)",
        ):
            log_density(model, (8, "batch"))
        with pytest.raises(
            ValueError,
            match=r"plate 'obs' has \(sub\)sample size 10, which is "
            r"not divisible by the size 4 of mesh axis 'data'.*mask",
        ):
            log_density(model, (10,))
    with pytest.raises(TypeError, match="plate 'obs': shard must be a mesh axis name"):
        log_density(model, (8, 3))
    # The same model runs without a mesh whatever its size.
    assert np.isfinite(float(log_density(model, (10,))[0]))


# ---------------------------------------------------------------------------------------------
# Data-parallel log density and gradient
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", [{}, {"data": 2}, {"data": 4}, {"data": 8}, {"sample": 2, "data": 4}]
)
def test_data_parallel_log_density_and_grad_match_truth(shape):
    mesh = parallel.make_mesh(**shape) if shape else None
    x, y = (X, Y) if mesh is None else parallel.shard_along((X, Y), mesh, "data")
    value, grad = _value_and_grad(mesh)(jnp.asarray(W_EVAL), x, y)
    truth_value, truth_grad = logreg_truth(W_EVAL)
    assert abs(float(value) - truth_value) <= RTOL * abs(truth_value)
    assert rel(grad, truth_grad) <= RTOL


def test_data_parallel_gradient_reduces_partial_sums_without_gathering_data():
    mesh = parallel.make_mesh(data=4)
    x, y = parallel.shard_along((X, Y), mesh, "data")
    compiled = _value_and_grad(mesh).lower(jnp.asarray(W_EVAL), x, y).compile()
    ops = parallel.collectives(compiled)
    assert [c.op for c in ops] == ["all-reduce"]  # one fused reduction, no all-gather
    assert ops[0].bytes == 4 * (1 + F)  # the log density and its gradient
    # The per-device work is a quarter of the single-device work.
    single = _value_and_grad(None).lower(jnp.asarray(W_EVAL), X, Y).compile()
    ratio = compiled.cost_analysis()["flops"] / single.cost_analysis()["flops"]
    assert ratio <= 1.15 / 4


def test_potential_energy_is_sharded_too():
    mesh = parallel.make_mesh(data=8)
    x, y = parallel.shard_along((X, Y), mesh, "data")

    def pe(z, x, y):
        with parallel.use_mesh(mesh):
            return jax.value_and_grad(lambda z: potential_energy(logreg, (x, y), {}, z))(z)

    compiled = jax.jit(pe).lower({"w": jnp.asarray(W_EVAL)}, x, y).compile()
    assert {c.op for c in parallel.collectives(compiled)} == {"all-reduce"}
    value, grad = jax.jit(pe)({"w": jnp.asarray(W_EVAL)}, x, y)
    truth_value, truth_grad = logreg_truth(W_EVAL)
    assert abs(float(value) + truth_value) <= RTOL * abs(truth_value)
    assert rel(grad["w"], -truth_grad) <= RTOL


def test_subsampling_on_sharded_data_picks_rows_locally():
    mesh = parallel.make_mesh(data=4)
    xs = parallel.shard_along(X, mesh, "data")
    idx = jax.random.permutation(jax.random.key(1), N)[:16]

    def take(x, idx):
        with parallel.use_mesh(mesh):
            return parallel.take_sharded(x, idx, 0, "data")

    fn = jax.jit(take)
    np.testing.assert_array_equal(np.asarray(fn(xs, idx)), X[np.asarray(idx)])
    ops = parallel.collectives(fn.lower(xs, idx).compile())
    assert "all-gather" not in {c.op for c in ops}
    assert sum(c.bytes for c in ops) <= 16 * F * 4  # only the minibatch crosses devices


# ---------------------------------------------------------------------------------------------
# SVI: particles over `sample`, observations over `data`
# ---------------------------------------------------------------------------------------------

SVI_STEPS = 6


def _svi_run(shape, num_particles=8, subsample_size=None, loss_cls=Trace_ELBO):
    mesh = parallel.make_mesh(**shape) if shape is not None else None
    x, y = (X, Y) if mesh is None else parallel.shard_along((X, Y), mesh, "data")
    svi = SVI(
        logreg,
        AutoNormal(logreg),
        optax.adam(0.05),
        loss_cls(num_particles=num_particles),
        mesh=mesh,
    )
    return svi.run(jax.random.key(2), SVI_STEPS, x, y, subsample_size, progress_bar=False)


@pytest.fixture(scope="module")
def svi_reference():
    return _svi_run(None)


def _assert_same_run(result, reference):
    assert rel(result.losses, reference.losses) <= RTOL
    for name, value in reference.params.items():
        assert rel(result.params[name], value) <= RTOL, name
        assert result.params[name].sharding.is_fully_replicated


@pytest.mark.parametrize(
    "shape",
    [
        {"sample": 8},
        {"sample": 2, "data": 4},
        pytest.param({"data": 4}, marks=pytest.mark.slow),
        pytest.param({"sample": 2}, marks=pytest.mark.slow),
        pytest.param({"sample": 4}, marks=pytest.mark.slow),
        pytest.param({"data": 2}, marks=pytest.mark.slow),
        pytest.param({"data": 8}, marks=pytest.mark.slow),
        pytest.param({"sample": 4, "data": 2}, marks=pytest.mark.slow),
        pytest.param({"sample": 2, "data": 2}, marks=pytest.mark.slow),
    ],
)
def test_svi_is_invariant_to_the_mesh(shape, svi_reference):
    _assert_same_run(_svi_run(shape), svi_reference)


def test_svi_subsampled_and_sharded_is_invariant_to_the_mesh():
    reference = _svi_run(None, subsample_size=16)
    _assert_same_run(_svi_run({"sample": 2, "data": 4}, subsample_size=16), reference)


@pytest.mark.slow
def test_renyi_elbo_is_invariant_to_the_mesh():
    reference = _svi_run(None, loss_cls=RenyiELBO)
    _assert_same_run(_svi_run({"sample": 4, "data": 2}, loss_cls=RenyiELBO), reference)


def test_num_particles_not_divisible_by_sample_axis():
    with pytest.raises(
        ValueError,
        match=r"num_particles=6 is not divisible by the size 4 of "
        r"the mesh's 'sample' axis",
    ):
        _svi_run({"sample": 4}, num_particles=6)
    with pytest.raises(TypeError, match="SVI: mesh must be a jax.sharding.Mesh"):
        SVI(logreg, AutoNormal(logreg), optax.adam(0.1), Trace_ELBO(), mesh="sample")


def test_sample_parallel_step_reduces_only_the_gradient():
    mesh = parallel.make_mesh(sample=4)
    svi = SVI(logreg, AutoNormal(logreg), optax.adam(0.05), Trace_ELBO(num_particles=8), mesh=mesh)
    state = svi.init(jax.random.key(0), X, Y)
    compiled = jax.jit(svi.update).lower(state, X, Y).compile()
    ops = parallel.collectives(compiled)
    assert {c.op for c in ops} == {"all-reduce"}
    grad_bytes = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(state.params))
    # The gradient of loc and scale (its two terms may travel separately) and the loss.
    assert sum(c.bytes for c in ops) <= 2 * grad_bytes + 16
    # The state stays replicated, so every process can read it.
    new_state, loss = compiled(state, X, Y)
    assert new_state.params["w_auto_loc"].sharding.is_fully_replicated
    assert np.isfinite(float(loss))


def _wide(x, y):
    """A regression with a (F, 16) weight matrix: its guide params split over 8 devices."""
    w = jppl.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1], 16]).to_event(2))
    with jppl.plate("N", x.shape[0], shard="data"):
        jppl.sample("y", dist.Normal(jnp.tanh(x @ w).sum(-1), 1.0), obs=y)


def test_shard_state_splits_params_and_optimizer_state_and_gives_the_same_run():
    mesh = parallel.make_mesh(sample=4, data=2)
    y = np.asarray(X @ np.ones((X.shape[1],), np.float32))
    x_on, y_on = parallel.shard_along((X, y), mesh, "data")

    def run(shard_state):
        svi = SVI(
            _wide,
            AutoNormal(_wide),
            optax.adam(0.05),
            Trace_ELBO(num_particles=8),
            mesh=mesh,
            shard_state=shard_state,
        )
        state = svi.init(jax.random.key(0), x_on, y_on)
        compiled = jax.jit(svi.update).lower(state, x_on, y_on).compile()
        result = svi.run(jax.random.key(0), SVI_STEPS, x_on, y_on, progress_bar=False)
        return svi, state, compiled, result

    _, _, plain_compiled, plain = run(False)
    svi, state, compiled, result = run(True)
    assert rel(result.losses, plain.losses) <= RTOL
    for name, value in plain.params.items():
        assert rel(result.params[name], value) <= RTOL, name
    # each device holds 1/8 of the (F, 16) loc and scale and of Adam's moments
    for leaf in jax.tree_util.tree_leaves((result.state.params, result.state.optim_state)):
        if leaf.ndim == 2:
            assert leaf.sharding.shard_shape(leaf.shape) == (leaf.shape[0], 2), leaf.sharding
    assert result.state.rng_key.sharding.is_fully_replicated
    state_bytes = sum(
        x.nbytes for x in jax.tree_util.tree_leaves((state.params, state.optim_state))
    )
    saved = plain_compiled.memory_analysis().argument_size_in_bytes
    saved -= compiled.memory_analysis().argument_size_in_bytes
    assert saved >= 0.8 * state_bytes * 7 / 8
    # an init_state given to run stays valid (run donates only its own copy)
    again = svi.run(None, 2, x_on, y_on, progress_bar=False, init_state=result.state)
    assert np.isfinite(np.asarray(result.state.params["w_auto_loc"])).all()
    assert again.losses.shape == (2,)
    with pytest.raises(ValueError, match=r"shard_state=True .* give `mesh`"):
        SVI(_wide, AutoNormal(_wide), optax.adam(0.1), Trace_ELBO(), shard_state=True)


# ---------------------------------------------------------------------------------------------
# Predictive
# ---------------------------------------------------------------------------------------------


def test_predictive_with_mesh_gives_the_same_draws():
    samples = {"w": jnp.asarray(np.random.default_rng(3).normal(size=(8, F)), jnp.float32)}
    mesh = parallel.make_mesh(sample=2, data=4)
    x = parallel.shard_along(X, mesh, "data")
    expected = Predictive(logreg, samples, parallel=True)(jax.random.key(4), X, None)["y"]
    got = Predictive(logreg, samples, parallel=True, mesh=mesh)(jax.random.key(4), x, None)["y"]
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    with pytest.raises(ValueError, match="8 draws are not divisible by the size 3"):
        Predictive(
            logreg,
            samples,
            parallel=True,
            mesh=parallel.make_mesh(sample=3, devices=jax.devices()[:6]),
        )
    assert math.prod(got.shape) == 8 * N


def test_padding_and_masking_gives_the_unpadded_log_density():
    n = 60  # not divisible by 8
    (x, y), valid = parallel.pad_to_multiple((X[:n], Y[:n]), 8)
    assert x.shape == (64, F) and valid.sum() == n and not valid[n:].any()
    mesh = parallel.make_mesh(data=8)
    x, y, valid = parallel.shard_along((x, y, valid), mesh, "data")

    def model(x, y, valid):
        w = jppl.sample("w", dist.Normal(0.0, 1.0).expand([F]).to_event(1))
        with jppl.plate("N", x.shape[0], shard="data"), jppl.handlers.mask(mask=valid):
            jppl.sample("y", dist.BernoulliLogits(x @ w), obs=y)

    def value(x, y, valid):
        with parallel.use_mesh(mesh):
            return log_density(model, (x, y, valid), {}, {"w": jnp.asarray(W_EVAL)})[0]

    logits = X[:n].astype(np.float64) @ W_EVAL.astype(np.float64)
    truth = np.sum(Y[:n] * logits - np.logaddexp(0.0, logits))
    truth += np.sum(-0.5 * W_EVAL.astype(np.float64) ** 2) - 0.5 * F * np.log(2 * np.pi)
    assert abs(float(jax.jit(value)(x, y, valid)) - truth) <= RTOL * abs(truth)


def test_chains_over_chain_axis_with_data_sharded_potential():
    """What MCMC builds on: vmapped chains split over `chain`, each potential over `data`."""
    mesh = parallel.make_mesh(chain=2, data=4)
    x, y = parallel.shard_along((X, Y), mesh, "data")
    w = jnp.asarray(np.random.default_rng(5).normal(size=(4, F)), jnp.float32)  # 4 chains

    def grads(w, x, y):
        with parallel.use_mesh(mesh):
            w = parallel.split_leading(w, "chain")
            pe = lambda w: potential_energy(logreg, (x, y), {}, {"w": w})
            out = jax.vmap(jax.value_and_grad(pe), spmd_axis_name="chain")(w)
            return parallel.split_leading(out, "chain")

    fn = jax.jit(grads)
    values, g = fn(w, x, y)
    for i in range(4):
        truth_value, truth_grad = logreg_truth(np.asarray(w[i]))
        assert abs(float(values[i]) + truth_value) <= RTOL * abs(truth_value)
        assert rel(g[i], -truth_grad) <= RTOL
    ops = parallel.collectives(fn.lower(w, x, y).compile())
    assert {c.op for c in ops} == {"all-reduce"}
    assert sum(c.bytes for c in ops) <= 2 * 4 * (1 + F)  # this device's chains' values + grads


def _local_latent_model(x, y):
    """Per-row random effects ``u`` in the sharded plate (local latents of the guide)."""
    w = jppl.sample("w", dist.Normal(0.0, 1.0).expand([F]).to_event(1))
    with jppl.plate("N", x.shape[0], shard="data"):
        u = jppl.sample("u", dist.Normal(0.0, 0.5))
        jppl.sample("y", dist.BernoulliLogits(x @ w + u), obs=y)


def test_autonormal_keeps_the_shard_of_local_latent_plates():
    guide = AutoNormal(_local_latent_model)
    guide_trace = trace(jppl.handlers.seed(guide, 0)).get_trace(X, Y)
    frames = guide_trace["u"]["cond_indep_stack"]
    assert [(f.name, f.shard) for f in frames] == [("N", "data")]

    def run(mesh):
        x, y = (X, Y) if mesh is None else parallel.shard_along((X, Y), mesh, "data")
        svi = SVI(
            _local_latent_model,
            AutoNormal(_local_latent_model),
            optax.adam(0.05),
            Trace_ELBO(num_particles=2),
            mesh=mesh,
        )
        return svi.run(jax.random.key(3), 4, x, y, progress_bar=False)

    _assert_same_run(run(parallel.make_mesh(data=4)), run(None))
