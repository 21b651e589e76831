"""NUTS on a device mesh: chains over ``chain``, the log density over ``data`` (issue 5).

The model is a small logistic regression whose observation plate is sharded
(``plate(..., shard="data")``). With a fixed key, the draws on every mesh shape are compared
with the same chains run on one device without a mesh (a second, independent computation),
and each draw's potential energy with the log joint in float64 NumPy (fixed step size, no
warm-up: the mesh and no-mesh programs round differently, and adaptation would amplify it).

Across meshes, the data-sharded likelihood is added in fixed blocks (``data_blocks``,
:mod:`jppl.model.blocked`): the draws *with* warm-up adaptation are then bitwise the same on
1, 2, 4 and 8 data devices. With ``data_blocks=0`` (XLA's reduction) they drift apart (2e-2
after 30 warm-up + 20 draws, measured before blocks existed). "Relative" error of an array is
``max|a - b| / max|b|``. The 8 devices are fake CPU devices (conftest).
"""

from __future__ import annotations

import contextlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, Mesh

import jppl
import jppl.distributions as dist
from jppl import parallel
from jppl.mcmc import MCMC, NUTS
from jppl.mcmc import runner as mcmc_runner

pytestmark = pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (fake) devices")

N, F = 256, 4
C = 4  # chains
DRAWS = 20
RTOL = 1e-5
STEP_SIZE = 0.3


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, F)).astype(np.float32)
    w = np.array([1.0, -1.0, 0.5, 0.0], np.float32)
    y = (rng.random(N) < 1 / (1 + np.exp(-x @ w))).astype(np.float32)
    return x, y


X, Y = _data()


def logreg(x, y):
    w = jppl.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with jppl.plate("N", x.shape[0], shard="data"):
        jppl.sample("y", dist.BernoulliLogits(x @ w), obs=y)


def logreg_wrong_axis(x, y):
    w = jppl.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with jppl.plate("N", x.shape[0], shard="batch"):
        jppl.sample("y", dist.BernoulliLogits(x @ w), obs=y)


def log_joint_numpy(w: np.ndarray) -> np.ndarray:
    """``(..., F) -> (...)`` log joint of ``logreg`` in float64 NumPy (independent of jppl)."""
    x, y, w = X.astype(np.float64), Y.astype(np.float64), np.asarray(w, np.float64)
    logits = w @ x.T
    value = np.sum(y * logits - np.logaddexp(0.0, logits), axis=-1)
    return value - 0.5 * np.sum(w**2, axis=-1) - 0.5 * F * np.log(2 * np.pi)


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _sampler() -> NUTS:
    return NUTS(logreg, step_size=STEP_SIZE, adapt_step_size=False, adapt_mass_matrix=False)


def _mcmc(mesh, num_samples=DRAWS, chain_method=None, sampler=None, **kwargs) -> MCMC:
    return MCMC(
        sampler or _sampler(),
        num_warmup=kwargs.pop("num_warmup", 0),
        num_samples=num_samples,
        num_chains=C,
        chain_method=chain_method,
        progress_bar=False,
        warn=False,
        mesh=mesh,
        **kwargs,
    )


def _data_on(mesh):
    return (X, Y) if mesh is None else parallel.shard_along((X, Y), mesh, "data")


def _run(mesh, chain_method=None) -> MCMC:
    mcmc = _mcmc(mesh, chain_method=chain_method)
    mcmc.run(jax.random.key(1), *_data_on(mesh))
    return mcmc


def _host(x) -> np.ndarray:
    if jax.numpy.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


@contextlib.contextmanager
def _recorded_programs(monkeypatch):
    """Record the calls of the chains' compiled loop (``mcmc_chains``: the transitions of a
    chunk), with their arguments (to read the compiled HLO afterwards: lowering again hits
    JAX's compilation cache). The donated carry is copied before each call, so the arguments
    stay readable."""
    programs: list = []
    original = mcmc_runner._jit

    def recording(fn, name, donate=False):
        jitted = original(fn, name, donate)
        if name != "mcmc_chains":
            return jitted

        def call(*args):
            programs.append((jitted, jax.tree.map(jnp.copy, args)))
            return jitted(*args)

        return call

    monkeypatch.setattr(mcmc_runner, "_jit", recording)
    yield programs


@pytest.fixture(scope="module")
def reference() -> MCMC:
    """The chains on one device, no mesh (one single-chain program, chains in a loop)."""
    return _run(None, "sequential")


def _assert_matches_reference(mcmc: MCMC, reference: MCMC) -> None:
    draws = mcmc.get_samples(group_by_chain=True)["w"]
    assert draws.shape == (C, DRAWS, F)
    assert rel(draws, reference.get_samples(group_by_chain=True)["w"]) <= RTOL
    fields, ref_fields = mcmc.get_extra_fields(), reference.get_extra_fields()
    np.testing.assert_array_equal(np.asarray(fields["num_steps"]), ref_fields["num_steps"])
    assert rel(fields["potential_energy"], ref_fields["potential_energy"]) <= RTOL
    truth = -log_joint_numpy(np.asarray(draws))  # (C, DRAWS), at the mesh run's own draws
    potential = mcmc.get_extra_fields(group_by_chain=True)["potential_energy"]
    assert rel(potential, truth) <= RTOL
    state, ref_state = mcmc.last_state, reference.last_state
    assert rel(state.position, ref_state.position) <= RTOL
    assert rel(state.logdensity_grad, ref_state.logdensity_grad) <= RTOL
    np.testing.assert_array_equal(_host(state.rng_key), _host(ref_state.rng_key))


# ---------------------------------------------------------------------------------------------
# Invariance
# ---------------------------------------------------------------------------------------------


def test_reference_potential_energy_is_the_numpy_log_joint(reference):
    draws = np.asarray(reference.get_samples(group_by_chain=True)["w"])
    potential = reference.get_extra_fields(group_by_chain=True)["potential_energy"]
    assert rel(potential, -log_joint_numpy(draws)) <= RTOL
    assert reference.chain_method == "sequential"
    assert np.std(draws[:, -1], axis=0).min() > 0.01  # the chains moved apart


def test_chain_only_mesh_is_bitwise_the_chains_without_mesh_and_continues(reference, tmp_path):
    """``chain=4``: each device runs the single-chain program of the no-mesh run. Run half the
    draws, save, load with the mesh, continue: bitwise the uninterrupted no-mesh run."""
    mesh = parallel.make_mesh(chain=4)
    half = DRAWS // 2
    first = _mcmc(mesh, num_samples=half)
    first.run(jax.random.key(1), X, Y)
    assert first.chain_method == "sharded"
    first.save(tmp_path / "ckpt.npz")
    second = MCMC.load(tmp_path / "ckpt.npz", _sampler(), progress_bar=False, warn=False, mesh=mesh)
    second.run(None, X, Y)

    ref_w = np.asarray(reference.get_samples(group_by_chain=True)["w"])
    np.testing.assert_array_equal(first.get_samples(group_by_chain=True)["w"], ref_w[:, :half])
    np.testing.assert_array_equal(second.get_samples(group_by_chain=True)["w"], ref_w[:, half:])
    ref_fields = reference.get_extra_fields(group_by_chain=True)
    for name, value in second.get_extra_fields(group_by_chain=True).items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(ref_fields[name])[:, half:])
    for a, b in zip(second.last_state, reference.last_state, strict=True):
        np.testing.assert_array_equal(_host(a), _host(b))


def test_chain_by_data_mesh_matches_one_device(reference, monkeypatch, capsys):
    """``chain=2 x data=4``: two chains per position along ``chain``, each log density split
    over 4 devices. Results are replicated (readable on every process) and the compiled
    program sends only the 8 data blocks' log densities and gradients between the data shards
    (all-gathered, then added in block order)."""
    mesh = parallel.make_mesh(chain=2, data=4)
    with _recorded_programs(monkeypatch) as programs:
        mcmc = _run(mesh)
    _assert_matches_reference(mcmc, reference)
    for leaf in jax.tree.leaves((mcmc.get_samples(), mcmc.get_extra_fields(), mcmc.last_state)):
        assert leaf.sharding.is_fully_replicated
    assert mcmc.get_samples()["w"].shape == (C * DRAWS, F)

    mcmc.print_summary()
    assert "w[3]" in capsys.readouterr().out
    posterior = mcmc.to_arviz().posterior
    assert posterior["w"].shape == (C, DRAWS, F)
    np.testing.assert_array_equal(posterior["w"].values, mcmc.get_samples(True)["w"])

    jitted, args = programs[-1]  # the chains' program
    ops = parallel.collectives(jitted.lower(*args).compile())
    blocks = mcmc.block_plan.num_blocks
    assert blocks == 8
    gathers = [c for c in ops if c.op == "all-gather"]
    assert gathers, "the data blocks' log densities and gradients must be all-gathered"
    for c in ops:
        if c.op == "all-reduce" and c.bytes <= 5 * 4:
            continue  # the progress numbers of a chunk (2 counts, 3 means) summed over `chain`
        assert c.op == "all-gather", c
        for shape in c.shapes:
            dims = [int(d) for d in re.findall(r"\d+", shape.split("[", 1)[1])]
            # per block: the log densities or (F,) gradients of this position's 2 chains
            assert dims and dims[0] == blocks and int(np.prod(dims)) <= blocks * (C // 2) * F, c
        assert not any(str(N // 4) in shape or str(N) in shape for shape in c.shapes), c


@pytest.mark.slow
@pytest.mark.parametrize(
    "shape, chain_method",
    [
        ({"data": 2}, None),
        ({"data": 4}, None),
        ({"data": 8}, None),
        ({"chain": 2, "data": 2}, None),
        ({"chain": 4, "data": 2}, None),
        ({"chain": 2, "sample": 2, "data": 2}, None),
        ({"chain": 2, "data": 4}, "vectorized"),
        ({"data": 4}, "sequential"),
    ],
)
def test_more_mesh_shapes_match_one_device(reference, shape, chain_method):
    mcmc = _run(parallel.make_mesh(**shape), chain_method)
    assert mcmc.chain_method == (chain_method or "sharded")
    _assert_matches_reference(mcmc, reference)


@pytest.mark.slow
def test_data_mesh_single_chain_program_all_reduces_only(monkeypatch):
    """One chain, ``data=8``, ``data_blocks=0`` (XLA's reduction): the whole compiled run (no
    gathers at all) all-reduces one log density and its ``(F,)`` gradient at a time."""
    mesh = parallel.make_mesh(data=8)
    mcmc = MCMC(
        _sampler(),
        num_warmup=0,
        num_samples=5,
        progress_bar=False,
        warn=False,
        mesh=mesh,
        data_blocks=0,
    )
    with _recorded_programs(monkeypatch) as programs:
        mcmc.run(jax.random.key(0), *_data_on(mesh))
    jitted, args = programs[-1]
    ops = parallel.collectives(jitted.lower(*args).compile())
    assert {c.op for c in ops} == {"all-reduce"}
    assert all(c.bytes <= (1 + F) * 4 for c in ops)


# ---------------------------------------------------------------------------------------------
# Data blocks: bitwise invariance with warm-up adaptation
# ---------------------------------------------------------------------------------------------

WARMUP = 60


def _adapted(mesh, chain_method=None, **kwargs) -> MCMC:
    """The default NUTS (step size and diagonal mass matrix adapted) on ``mesh``."""
    mcmc = _mcmc(mesh, chain_method=chain_method, sampler=NUTS(logreg), num_warmup=WARMUP, **kwargs)
    mcmc.run(jax.random.key(3), *_data_on(mesh))
    return mcmc


@pytest.fixture(scope="module")
def adapted_one_device() -> MCMC:
    return _adapted(parallel.make_mesh(chain=1, data=1, devices=jax.devices()[:1]))


@pytest.fixture(scope="module")
def adapted_two_chain_devices() -> MCMC:
    """One chain per device, all rows on each: the reference for meshes with ``chain=2``."""
    return _adapted(parallel.make_mesh(chain=2, data=1, devices=jax.devices()[:2]))


def _same_run(a: MCMC, b: MCMC) -> None:
    for x, y in zip(
        jax.tree.leaves((a.get_samples(True), a.get_extra_fields(True), a.last_state)),
        jax.tree.leaves((b.get_samples(True), b.get_extra_fields(True), b.last_state)),
        strict=True,
    ):
        np.testing.assert_array_equal(_host(x), _host(y))


@pytest.mark.parametrize(
    "shape",
    [
        {"data": 2},
        pytest.param({"data": 8}, marks=pytest.mark.slow),
        pytest.param({"chain": 2, "data": 4}, marks=pytest.mark.slow),
    ],
)
def test_adapted_draws_are_bitwise_the_same_on_every_data_mesh(request, shape):
    """Warm-up adaptation and all: draws, statistics, step sizes, mass matrices and the last
    state on 2 and 8 data devices equal those on one device, and on 2 x 4 devices those on
    ``chain=2, data=1``, bit for bit. (The reference keeps the chains per device: two chains
    vectorized on one device round the batched arithmetic differently from one chain per
    device, which JAX 0.11's CPU backend shows.)"""
    mcmc = _adapted(parallel.make_mesh(**shape))
    assert mcmc.block_plan.num_blocks == 8
    reference = "adapted_two_chain_devices" if shape.get("chain", 1) == 2 else "adapted_one_device"
    _same_run(mcmc, request.getfixturevalue(reference))
    # and they are right: each draw's potential is the float64 log joint at that draw
    draws = np.asarray(mcmc.get_samples(group_by_chain=True)["w"])
    potential = mcmc.get_extra_fields(group_by_chain=True)["potential_energy"]
    assert rel(potential, -log_joint_numpy(draws)) <= RTOL


@pytest.mark.slow
@pytest.mark.parametrize("chain_method", ["vectorized", "sequential"])
def test_adapted_draws_bitwise_for_other_chain_methods(chain_method):
    """Within one chain method, the data axis's size does not change a bit (``"vectorized"``
    batches the chains, so its draws differ from ``"sharded"``'s in the last bits; across the
    size of the ``chain`` axis it is not bitwise either)."""
    one = _adapted(parallel.make_mesh(chain=1, data=1, devices=jax.devices()[:1]), chain_method)
    _same_run(_adapted(parallel.make_mesh(chain=1, data=4), chain_method), one)


def test_blocks_give_the_plain_log_density(adapted_one_device):
    """The blocked potential equals the plain one and the float64 truth, value and gradient."""
    from jppl.infer.util import potential_energy
    from jppl.model.blocked import blocked_potential_energy
    from jppl.parallel.blocks import plan_blocks

    mesh = parallel.make_mesh(data=4)
    data = _data_on(mesh)
    plan = plan_blocks((data, {}), mesh)
    assert plan == (("data", 8, N, (0, 0)))
    w = np.array([0.3, -0.2, 0.1, 0.5], np.float32)

    @jax.jit
    def both(w, x, y):
        with parallel.use_mesh(mesh):
            blocked = jax.value_and_grad(
                lambda w: blocked_potential_energy(logreg, (x, y), {}, {"w": w}, plan)
            )(w)
        plain = jax.value_and_grad(lambda w: potential_energy(logreg, (X, Y), {}, {"w": w}))(w)
        return blocked, plain

    (value, grad), (plain_value, plain_grad) = both(w, *data)
    assert rel(value, -log_joint_numpy(w)) <= RTOL
    assert rel(value, plain_value) <= RTOL
    assert rel(grad, plain_grad) <= RTOL


@pytest.mark.slow  # moved out of the default suite's 15-min budget
def test_data_blocks_options_and_fallbacks():
    mesh = parallel.make_mesh(data=4)
    with pytest.raises(ValueError, match=r"data_blocks must be None or an int >= 0"):
        MCMC(_sampler(), num_warmup=0, num_samples=1, mesh=mesh, data_blocks=-8)
    # an explicit number of blocks that is not a multiple of the axis size, or does not divide N
    for blocks, message in ((6, r"multiple of the size 4"), (48, r"N=256 rows, .* 48 data")):
        mcmc = _mcmc(mesh, num_samples=1, data_blocks=blocks)
        with pytest.raises(ValueError, match=message):
            mcmc.run(jax.random.key(0), *_data_on(mesh))
    # 16 blocks: fine, and the same draws on 4 and 8 data devices
    runs = []
    for d in (4, 8):
        mcmc = _mcmc(parallel.make_mesh(data=d), num_samples=3, data_blocks=16)
        mcmc.run(jax.random.key(0), *_data_on(parallel.make_mesh(data=d)))
        assert mcmc.block_plan.num_blocks == 16
        runs.append(mcmc)
    _same_run(*runs)
    # the default (8 blocks) does not divide N = 252: a warning, then XLA's reduction
    cut = parallel.shard_along((X[:252], Y[:252]), parallel.make_mesh(data=4))
    mcmc = _mcmc(mesh, num_samples=1)
    with pytest.warns(UserWarning, match=r"N=252 rows.*Falling back to XLA's reduction"):
        mcmc.run(jax.random.key(0), *cut)
    assert mcmc.block_plan is None


def logreg_standardized(x, y):
    x = (x - x.mean(0)) / x.std(0)  # a whole-data statistic: blocks would compute it per block
    logreg(x, y)


def logreg_local_latent(x, y):
    w = jppl.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with jppl.plate("N", x.shape[0], shard="data"):
        u = jppl.sample("u", dist.Normal(0.0, 0.1))
        jppl.sample("y", dist.BernoulliLogits(x @ w + u), obs=y)


@pytest.mark.slow  # moved out of the default suite's 15-min budget
def test_data_blocks_refuse_what_they_cannot_sum():
    mesh = parallel.make_mesh(data=4)
    mcmc = _mcmc(mesh, num_samples=1, sampler=NUTS(logreg_standardized, step_size=0.1))
    with pytest.raises(ValueError, match=r"outside its sharded plate .*data_blocks=0"):
        mcmc.run(jax.random.key(0), *_data_on(mesh))
    # a latent site in the sharded plate: blocks do not apply, the plain reduction is used
    mcmc = _mcmc(mesh, num_samples=1, sampler=NUTS(logreg_local_latent, step_size=0.01))
    mcmc.run(jax.random.key(0), *_data_on(mesh))
    assert mcmc.block_plan is None
    assert mcmc.get_samples()["u"].shape == (C, N)
    # ... and asked for explicitly, a warning says so
    mcmc = _mcmc(
        mesh, num_samples=1, sampler=NUTS(logreg_local_latent, step_size=0.01), data_blocks=8
    )
    with pytest.warns(UserWarning, match=r"data_blocks=8 is not used: .*observed"):
        mcmc.run(jax.random.key(0), *_data_on(mesh))
    assert mcmc.block_plan is None


# ---------------------------------------------------------------------------------------------
# Chain mapping (jppl.parallel.map_chains, generic over the per-chain function)
# ---------------------------------------------------------------------------------------------


def _toy_chain(chain_in, shared):
    """A per-chain function that is no MCMC: ``((3,), key), () -> {(3,), ()}``."""
    x, key = chain_in
    return {"y": jax.numpy.sin(x) * shared + jax.random.normal(key, ()), "n": x.sum()}


def test_map_chains_maps_any_chain_function_on_one_device_or_a_mesh():
    """Every method, with or without a mesh, gives each chain's own outputs (bitwise, one
    chain per position, as the sequential loop); sharded chains without a mesh run on the
    trivial chain-only mesh (5 chains: 5 devices of 8, or 3 per device on 2 padded to 6), and
    results on a mesh are replicated on it."""
    c = 5
    chain_in = (
        jax.numpy.arange(3.0 * c).reshape(c, 3),
        jax.random.split(jax.random.key(0), c),
    )
    one = parallel.map_chains(_toy_chain, "sequential", c)(chain_in, 2.0)
    assert one["y"].shape == (c, 3) and one["n"].shape == (c,)

    def same(out):
        for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(one), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    assert parallel.chain_mesh(c).axis_names == ("chain",)
    assert parallel.chain_mesh(c).devices.size == 5
    assert parallel.chain_mesh(c, jax.devices()[:2]).devices.size == 2
    assert parallel.shard_plan(c, 2) == (2, 6)
    sharded = parallel.map_chains(_toy_chain, "sharded", c)(chain_in, 2.0)
    same(sharded)
    assert sharded["y"].sharding.is_fully_replicated
    assert len(sharded["y"].sharding.device_set) == 5
    padded = parallel.map_chains(
        _toy_chain, "sharded", c, parallel.chain_mesh(c, jax.devices()[:2])
    )(chain_in, 2.0)
    np.testing.assert_allclose(padded["y"], one["y"], rtol=1e-6)
    for mesh, method in (
        (parallel.make_mesh(chain=2, data=4), "sharded"),  # padded to 6
        (parallel.make_mesh(chain=1, data=8), "vectorized"),
        (parallel.make_mesh(chain=1, data=8), "sequential"),
    ):
        out = parallel.map_chains(_toy_chain, method, c, mesh)(chain_in, 2.0)
        np.testing.assert_allclose(out["y"], one["y"], rtol=1e-6)
        assert out["y"].sharding.is_fully_replicated
        assert out["y"].sharding.mesh.shape == mesh.shape
    vectorized = parallel.map_chains(_toy_chain, "vectorized", c)(chain_in, 2.0)
    np.testing.assert_allclose(vectorized["y"], one["y"], rtol=1e-6)

    seen = []

    @contextlib.contextmanager
    def on_chain(i):
        yield lambda out: seen.append((i, float(out["n"])))

    parallel.map_chains(_toy_chain, "sequential", c, on_chain=on_chain)(chain_in, 2.0)
    assert seen == [(i, float(one["n"][i])) for i in range(c)]

    mesh = parallel.make_mesh(chain=2, data=4)
    with pytest.raises(ValueError, match=r"num_chains=5 is not a multiple of the size 2"):
        parallel.map_chains(_toy_chain, "vectorized", c, mesh)
    with pytest.raises(ValueError, match=r"'sequential' runs one chain at a time"):
        parallel.map_chains(_toy_chain, "sequential", 4, mesh)
    with pytest.raises(ValueError, match=r"chain_method must be one of"):
        parallel.map_chains(_toy_chain, "parallel", c)
    assert "jit_toy" in parallel.jit_replicated(jax.numpy.sin, None, "toy").lower(1.0).as_text()


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_chains_not_divisible_by_the_chain_axis():
    mesh = parallel.make_mesh(chain=4, data=2)
    with pytest.raises(ValueError, match=r"num_chains=6 is not a multiple of the size 4.*'chain'"):
        MCMC(_sampler(), num_warmup=0, num_samples=1, num_chains=6, mesh=mesh)


def test_plate_sharded_over_an_axis_the_mesh_lacks():
    mesh = parallel.make_mesh(data=4)
    sampler = NUTS(logreg_wrong_axis, step_size=STEP_SIZE, adapt_step_size=False)
    mcmc = MCMC(sampler, num_warmup=0, num_samples=1, progress_bar=False, mesh=mesh)
    with pytest.raises(ValueError, match=r"plate 'N' is sharded over mesh axis 'batch'"):
        mcmc.run(jax.random.key(0), X, Y)


def test_bad_mesh_arguments():
    devices = np.asarray(jax.devices()[:4])
    no_chain_axis = Mesh(devices, ("data",), axis_types=(AxisType.Auto,))
    with pytest.raises(ValueError, match=r"no 'chain' axis"):
        MCMC(_sampler(), num_warmup=0, num_samples=1, mesh=no_chain_axis)
    with pytest.raises(TypeError, match=r"mesh must be a jax.sharding.Mesh"):
        MCMC(_sampler(), num_warmup=0, num_samples=1, mesh="data")
    mesh = parallel.make_mesh(chain=2, data=2)
    with pytest.raises(ValueError, match=r"'sequential' runs one chain at a time"):
        MCMC(
            _sampler(),
            num_warmup=0,
            num_samples=1,
            num_chains=2,
            chain_method="sequential",
            mesh=mesh,
        )
    with pytest.raises(ValueError, match=r"give `mesh` or `devices`, not both"):
        MCMC(_sampler(), num_warmup=0, num_samples=1, mesh=mesh, devices=jax.devices()[:2])
    with pytest.raises(ValueError, match=r"chain_method must be one of"):
        MCMC(_sampler(), num_warmup=0, num_samples=1, chain_method="pmap", mesh=mesh)
