"""jppl.checkpoint: atomic saves that survive SIGKILL, one format for MCMC / SVI / Trainer, clear
errors for files that are not (complete) checkpoints, checks of loaded states, directories
of step checkpoints, and Orbax directories restored onto another mesh."""

from __future__ import annotations

import io
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import warnings
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import checkpoint_worker as worker
from jppl import checkpoint, parallel
from jppl.checkpoint import CheckpointError, CheckpointWarning
from jppl.mcmc import MCMC, NUTS
from jppl.mcmc import io as mcmc_io
from jppl.mcmc.state import MCMCState
from jppl.vi import SVI, SVIState, Trace_ELBO, load_state, save_state
from jppl.vi.autoguide import AutoNormal

WORKER = Path(__file__).resolve().parent / "checkpoint_worker.py"
PREFIX = "not a jppl checkpoint or incomplete: "


def _leaves_equal(a, b) -> None:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        if jnp.issubdtype(jnp.result_type(x), jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _small_state(shift: float = 0.0) -> SVIState:
    params = {"loc": jnp.arange(8.0) + shift, "scale": jnp.ones((4, 2))}
    return SVIState(
        params, optax.adam(0.1).init(params), jax.random.key(3), jnp.asarray(5, jnp.int32)
    )


# ---------------------------------------------------------------------------------------------
# SIGKILL during save
# ---------------------------------------------------------------------------------------------


class Zygote:
    """``checkpoint_worker.py zygote``: forks a saving child per trial (see its docstring)."""

    def __init__(self):
        env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), "zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        assert self.expect("ready", timeout=120) == "ready"

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def expect(self, prefix: str, timeout: float = 60) -> str:
        """The next line starting with ``prefix`` (others are kept in ``self.seen``)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line
            self.seen.append(line)

    def trial(self, kind: str, path: str, first: int, delay: float) -> list[int]:
        """Run a saving child, SIGKILL it ``delay`` s after its first save; the indices it
        reported saved."""
        self.seen: list[str] = []
        self.send(f"run {kind} {path} {first}")
        pid = int(self.expect("child ").split()[1])
        saved = [int(self.expect("saved ").split()[1])]
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        self.send(f"reap {pid}")
        self.expect(f"reaped {pid}")
        saved += [int(line.split()[1]) for line in self.seen if line.startswith("saved ")]
        return saved

    def close(self) -> None:
        self.send("quit")
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def zygote():
    z = Zygote()
    yield z
    z.close()


def _load_front_end(kind: str, path: str, trainer):
    """Load (and check) through the front end; ``(step, tree comparable to content)``."""
    if kind == "mcmc":
        mcmc = MCMC.load(path, NUTS(worker.mcmc_model), progress_bar=False)
        state = mcmc.last_state
        step = int(state.step[0])
        return step, (state, mcmc.get_samples(group_by_chain=True), mcmc.get_extra_fields(True))
    if kind in ("svi", "orbax"):
        state = SVI.load_state(path, template=worker.content(kind, 0))
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error", CheckpointWarning)  # nothing may be skipped
            state = trainer.restore(path, worker.trainer_data())
    return int(state.step), state


def _temporaries(path: str, kind: str) -> list[str]:
    directory = path if kind == "trainer" else os.path.dirname(path)
    return [os.path.join(directory, n) for n in os.listdir(directory) if n.startswith(".")]


def _kill_during_saves(zygote, tmp_path, kind: str, trials: int) -> None:
    rng = random.Random(f"{kind}-{trials}")
    path = str(tmp_path / ("ckpt.npz" if kind in ("mcmc", "svi") else "ckpt"))
    trainer = worker.trainer_for() if kind == "trainer" else None
    mid_write = partial_refused = 0
    for trial in range(trials):
        first = (trial + 1) * 100_000
        saved = zygote.trial(kind, path, first, delay=rng.uniform(0.0, 0.06))
        last = max(saved)
        # A temporary left behind: the kill landed while writing. It is never taken for the
        # checkpoint; read on purpose, it is either refused or a complete state.
        leftovers = _temporaries(path, kind)
        mid_write += bool(leftovers)
        for leftover in leftovers:
            try:
                tree = checkpoint.load(leftover).tree
            except CheckpointError as e:
                assert str(e).startswith(PREFIX + leftover), str(e)
                partial_refused += 1
            else:
                step = tree["state"].step[0] if kind == "mcmc" else tree.step
                expected = worker.content(kind, int(step))
                if kind == "mcmc":
                    expected = {"state": expected[0], "samples": expected[1], "fields": {}}
                    tree = {**tree, "fields": {}}
                _leaves_equal(tree, expected)
        step, loaded = _load_front_end(kind, path, trainer)
        assert step in (last, last + 1), (trial, saved, step)  # the last save, or the next
        expected = worker.content(kind, step)
        if kind == "mcmc":
            state, samples, fields = expected
            expected = (
                state._replace(step=np.full(worker.CHAINS, step, np.int32)),
                samples,
                fields,
            )
        _leaves_equal(loaded, expected)
    # The kills did land while writing; later saves removed the dead processes' temporaries.
    assert mid_write >= 1, f"no kill landed mid-write in {trials} trials"
    assert len(_temporaries(path, kind)) <= 1
    print(f"{kind}: {trials} kills, {mid_write} mid-write, {partial_refused} partial refused")


@pytest.mark.parametrize("kind", worker.KINDS)
def test_sigkill_during_save_keeps_the_previous_checkpoint(zygote, tmp_path, kind):
    """20 SIGKILLs at random moments of a loop of saves of a ~5 MB state, per front end
    (``MCMC.save``, ``SVI.save``, ``Trainer.save_checkpoint``, and the same state as an Orbax
    directory): the checkpoint always loads and checks as the last completed save (or the
    one being renamed), bitwise."""
    _kill_during_saves(zygote, tmp_path, kind, trials=10 if kind == "orbax" else 20)


@pytest.mark.slow
@pytest.mark.parametrize("kind", worker.KINDS)
def test_sigkill_during_save_many_times(zygote, tmp_path, kind):
    _kill_during_saves(zygote, tmp_path, kind, trials=150)


# ---------------------------------------------------------------------------------------------
# Files that are not (complete) checkpoints
# ---------------------------------------------------------------------------------------------


def _bad_files(good: bytes) -> dict[str, bytes]:
    """Name -> content of files that must be refused."""
    foreign = io.BytesIO()
    np.savez(foreign, a=np.ones(3), b=np.zeros(2))
    pickled = io.BytesIO()
    np.savez(pickled, __jppl__=np.array([{"format": "jppl-checkpoint"}], dtype=object))
    other_zip = io.BytesIO()
    with zipfile.ZipFile(other_zip, "w") as zf:
        zf.writestr("readme.txt", "not ours")
    npy = io.BytesIO()
    np.save(npy, np.arange(4))
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    return {
        "empty": b"",
        "random": np.random.default_rng(0).bytes(5000),
        "text": b"step_size = 0.1\n",
        "truncated_head": good[:100],
        "truncated_half": good[: len(good) // 2],
        "truncated_tail": good[:-1],
        "flipped_byte": bytes(flipped),
        "foreign_npz": foreign.getvalue(),
        "pickled_record": pickled.getvalue(),
        "other_zip": other_zip.getvalue(),
        "npy": npy.getvalue(),
    }


REASONS = {
    "empty": "the file is empty",
    "random": "not a complete .npz archive",
    "text": "not a complete .npz archive",
    "truncated_head": "not a complete .npz archive",
    "truncated_half": "not a complete .npz archive",
    "truncated_tail": "not a complete .npz archive",
    "flipped_byte": "Bad CRC-32",
    "foreign_npz": r"no jppl record \(__jppl__\) in the archive; it holds \[a, b\]",
    "pickled_record": "holds Python objects",
    "other_zip": r"it holds \[readme.txt\]",
    "npy": "not a complete .npz archive",
}


def test_bad_files_raise_one_clear_error(tmp_path):
    state = _small_state()
    svi_file = save_state(tmp_path / "good", state)
    mcmc_file = mcmc_io.write_checkpoint(
        tmp_path / "mcmc", _mcmc_state(), settings=SETTINGS, sampler_config={}
    )
    readers = {
        svi_file: (
            lambda p: load_state(p),
            lambda p: SVI.load_state(p, template=state),
            lambda p: checkpoint.load(p),
        ),
        mcmc_file: (lambda p: mcmc_io.read_checkpoint(p, {}), lambda p: checkpoint.load(p)),
    }
    for source, loads in readers.items():
        bad = _bad_files(Path(source).read_bytes())
        assert set(bad) == set(REASONS)
        for name, data in bad.items():
            path = tmp_path / f"{name}.npz"
            path.write_bytes(data)
            expected = f"{PREFIX}{path}: .*{REASONS[name]}"
            for load in loads:
                for given in (path, tmp_path / name):  # with or without the suffix
                    with pytest.raises(CheckpointError, match=expected) as info:
                        load(given)
                    assert "allow_pickle" not in str(info.value)
                    assert isinstance(info.value, ValueError)


def test_older_format_and_other_kinds_are_named(tmp_path):
    np.savez(tmp_path / "old.npz", __jppl_svi_state__=np.asarray("{}"), leaf_0=np.ones(2))
    with pytest.raises(CheckpointError, match="older jppl"):
        load_state(tmp_path / "old")
    save_state(tmp_path / "svi", _small_state())
    with pytest.raises(CheckpointError, match=r"holds a 'svi' checkpoint; expected 'mcmc'"):
        mcmc_io.read_checkpoint(tmp_path / "svi", {})


def test_missing_file_names_the_path(tmp_path):
    for load in (load_state, lambda p: mcmc_io.read_checkpoint(p, {})):
        with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing.npz")):
            load(tmp_path / "nothing")


def test_orbax_directory_damaged_or_foreign(tmp_path):
    state = _small_state()
    path = checkpoint.save(tmp_path / "ob", state, kind="svi", storage="orbax")
    assert os.path.isdir(path) and checkpoint.is_checkpoint_dir(path)
    _leaves_equal(load_state(tmp_path / "ob.npz", template=state), state)
    os.remove(os.path.join(path, "jppl.json"))
    with pytest.raises(CheckpointError, match=f"{PREFIX}{path}: a directory without jppl.json"):
        load_state(path)
    os.makedirs(tmp_path / "foreign")
    with pytest.raises(CheckpointError, match=f"{PREFIX}{tmp_path / 'foreign'}: "):
        load_state(tmp_path / "foreign")
    path = checkpoint.save(tmp_path / "ob2", state, kind="svi", storage="orbax")
    for root, _, files in os.walk(os.path.join(path, "arrays")):
        for f in files:
            if f not in ("_CHECKPOINT_METADATA", "commit_success.txt"):
                os.remove(os.path.join(root, f))
    with pytest.raises(CheckpointError, match=f"{PREFIX}{path}: Orbax could not read"):
        load_state(path, template=state)


# ---------------------------------------------------------------------------------------------
# Paths, formats, templates
# ---------------------------------------------------------------------------------------------


def test_the_same_path_with_or_without_suffix(tmp_path):
    state = _small_state()
    assert save_state(tmp_path / "ckpt", state) == str(tmp_path / "ckpt.npz")
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]
    for given in ("ckpt", "ckpt.npz"):
        _leaves_equal(load_state(tmp_path / given), state)
        _leaves_equal(SVI.load_state(str(tmp_path / given), template=state), state)
    assert save_state(tmp_path / "other.npz", state) == str(tmp_path / "other.npz")
    _leaves_equal(load_state(tmp_path / "other"), state)
    # the Orbax directory of a state saved under the same name replaces the file, and back
    new = _small_state(1.0)
    assert checkpoint.save(tmp_path / "ckpt", new, kind="svi", storage="orbax") == str(
        tmp_path / "ckpt"
    )
    assert not os.path.exists(tmp_path / "ckpt.npz")
    _leaves_equal(load_state(tmp_path / "ckpt.npz", template=state), new)
    save_state(tmp_path / "ckpt.npz", state)
    assert not os.path.exists(tmp_path / "ckpt")
    _leaves_equal(load_state(tmp_path / "ckpt"), state)


def test_structure_round_trip_without_template(tmp_path):
    """NamedTuples, tuples, lists, None, Python numbers, bfloat16 and typed keys (of two
    implementations) come back as they were, bitwise."""
    tree = {
        "nt": optax.ScaleByAdamState(jnp.asarray(2), {"a": jnp.ones(3)}, {"a": jnp.zeros(3)}),
        "seq": [1, 2.5, True, None, (jnp.arange(3, dtype=jnp.bfloat16),)],
        "keys": (jax.random.key(1), jax.random.split(jax.random.key(2, impl="rbg"), 3)),
        "raw": jax.random.PRNGKey(4),
    }
    checkpoint.save(tmp_path / "t", tree, kind="test", meta={"note": [1, "x"]})
    loaded = checkpoint.load(tmp_path / "t", kind="test")
    assert loaded.meta == {"note": [1, "x"]} and loaded.kind == "test"
    out = loaded.tree
    assert isinstance(out["nt"], optax.ScaleByAdamState)
    assert out["seq"][:4] == [1, 2.5, True, None] and isinstance(out["seq"][0], int)
    assert jax.tree.structure(out) == jax.tree.structure(tree)
    assert str(jax.random.key_impl(out["keys"][1])) == "rbg"
    _leaves_equal(out, tree)


def test_template_mismatch_names_the_leaf(tmp_path):
    state = _small_state()
    save_state(tmp_path / "s", state)
    wrong_shape = state._replace(params={**state.params, "loc": jnp.zeros(7)})
    with pytest.raises(
        CheckpointError,
        match=r"checkpoint .*s\.npz: state\.params\['loc'\] has shape \(8,\) and dtype float32 "
        r"in the file; expected shape \(7,\)",
    ):
        load_state(tmp_path / "s", template=wrong_shape)
    missing = state._replace(params={**state.params, "extra": jnp.zeros(2)})
    with pytest.raises(CheckpointError, match=r"state\.params\['extra'\] is missing"):
        load_state(tmp_path / "s", template=missing)
    fewer = state._replace(params={"loc": state.params["loc"]})
    with pytest.raises(CheckpointError, match=r"holds state\.params\['scale'\], which the"):
        load_state(tmp_path / "s", template=fewer)
    with pytest.raises(
        CheckpointError,
        match=r"state\.rng_key has PRNG keys \(threefry2x32\) with key data of shape \(2,\) in "
        r"the file; expected shape \(2,\) and dtype uint32",
    ):
        load_state(tmp_path / "s", template=state._replace(rng_key=jax.random.PRNGKey(0)))
    with pytest.raises(CheckpointError, match=r"state\.step has shape \(\) and dtype int32"):
        checkpoint.check_tree(state, state._replace(step=jnp.zeros(2, jnp.int32)), "here")


# ---------------------------------------------------------------------------------------------
# MCMC states
# ---------------------------------------------------------------------------------------------


def _mcmc_state(chains: int = 3, dim: int = 2, dense: bool = False) -> MCMCState:
    imm = np.broadcast_to(np.eye(dim), (chains, dim, dim)) if dense else np.ones((chains, dim))
    return MCMCState(
        position=np.zeros((chains, dim), np.float32),
        logdensity=np.zeros(chains, np.float32),
        logdensity_grad=np.zeros((chains, dim), np.float32),
        step_size=np.full(chains, 0.3, np.float32),
        inverse_mass_matrix=np.array(imm, np.float32),
        rng_key=jax.random.split(jax.random.key(0), chains),
        step=np.zeros(chains, np.int32),
    )


SETTINGS = {"num_warmup": 1, "num_samples": 1, "num_chains": 3, "thinning": 1}
SETTINGS["chain_method"] = "vectorized"


@pytest.mark.parametrize(
    "field, value, dense, message",
    [
        ("step_size", np.nan, False, "state.step_size of chain 2 is nan; expected a finite"),
        ("step_size", -0.1, False, "state.step_size of chain 2 is -0.1"),
        ("step_size", np.inf, False, "state.step_size of chain 2 is inf"),
        ("position", np.nan, False, r"state.position of chain 2 is nan at index \(1,\)"),
        ("logdensity", -np.inf, False, "state.logdensity of chain 2 is -inf"),
        ("logdensity_grad", np.nan, False, "state.logdensity_grad of chain 2 is nan"),
        (
            "inverse_mass_matrix",
            0.0,
            False,
            "state.inverse_mass_matrix of chain 2 has diagonal entry 0.0",
        ),
        (
            "inverse_mass_matrix",
            np.nan,
            False,
            "state.inverse_mass_matrix of chain 2 has non-finite",
        ),
        ("inverse_mass_matrix", 0.5, True, "state.inverse_mass_matrix of chain 2 is not symmetric"),
    ],
)
def test_invalid_mcmc_states_are_refused(tmp_path, field, value, dense, message):
    state = _mcmc_state(dense=dense)
    arr = np.array(getattr(state, field))
    if arr.ndim == 1:
        arr[2] = value
    elif dense:
        arr[2, 0, 1] = value  # one off-diagonal entry: not symmetric
    else:
        arr[2, 1] = value
    path = mcmc_io.write_checkpoint(
        tmp_path / "bad", state._replace(**{field: arr}), settings=SETTINGS, sampler_config={}
    )
    with pytest.raises(CheckpointError, match=f"checkpoint {path}: {message}"):
        mcmc_io.read_checkpoint(tmp_path / "bad", {})
    # the valid state loads, and a NaN step size is also refused through MCMC.load
    mcmc_io.write_checkpoint(tmp_path / "ok", state, settings=SETTINGS, sampler_config={})
    _leaves_equal(mcmc_io.read_checkpoint(tmp_path / "ok.npz", {}).state, state)


def test_mcmc_chains_must_agree(tmp_path):
    state = _mcmc_state()
    bad = state._replace(step_size=np.full(2, 0.3, np.float32))
    mcmc_io.write_checkpoint(tmp_path / "c", bad, settings=SETTINGS, sampler_config={})
    with pytest.raises(CheckpointError, match=r"state.step_size has shape \(2,\); expected a"):
        mcmc_io.read_checkpoint(tmp_path / "c", {})
    with pytest.raises(CheckpointError, match="holds 3 chains; expected 4"):
        checkpoint.check_mcmc_state(state, "x", num_chains=4)


def test_mcmc_load_refuses_nan_step_size(tmp_path):
    mcmc = MCMC(NUTS(worker.mcmc_model), num_warmup=5, num_samples=5, num_chains=3)
    state = _mcmc_state(dim=worker.DIM)
    mcmc.restore(state._replace(step_size=np.array([0.1, 0.2, np.nan], np.float32)))
    mcmc.save(tmp_path / "run")
    with pytest.raises(ValueError, match=r"run\.npz: state\.step_size of chain 2 is nan"):
        MCMC.load(tmp_path / "run", NUTS(worker.mcmc_model))


# ---------------------------------------------------------------------------------------------
# Directories of step checkpoints
# ---------------------------------------------------------------------------------------------


def test_trainer_directory_keeps_the_last_and_falls_back(tmp_path):
    trainer = worker.trainer_for()
    data = worker.trainer_data()
    states = [worker.content("trainer", i) for i in (3, 6, 9)]
    paths = [trainer.save_checkpoint(tmp_path, s, keep=2) for s in states]
    assert sorted(os.listdir(tmp_path)) == ["step_000000006.npz", "step_000000009.npz"]
    from jppl.nn.trainer import latest_checkpoint

    assert latest_checkpoint(tmp_path) == paths[-1] == str(tmp_path / "step_000000009.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        _leaves_equal(trainer.restore(tmp_path, data), states[2])
    # the newest is truncated (e.g. copied half-way): the previous one, with a warning
    Path(paths[-1]).write_bytes(Path(paths[-1]).read_bytes()[:1000])
    with pytest.warns(CheckpointWarning, match=f"skipped checkpoint {paths[-1]}: {PREFIX}"):
        restored = trainer.restore(tmp_path, data)
    _leaves_equal(restored, states[1])
    assert isinstance(restored.rng_key, jax.Array)
    # a file named directly is not replaced by another one
    with pytest.raises(CheckpointError, match=PREFIX):
        trainer.restore(paths[-1], data)
    Path(paths[1]).write_bytes(b"")
    with pytest.warns(CheckpointWarning), pytest.raises(CheckpointError, match="no readable"):
        trainer.restore(tmp_path, data)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no step_"):
        trainer.restore(tmp_path / "empty", data)


def test_stale_temporaries_are_ignored_and_cleaned(tmp_path):
    state = _small_state()
    save_state(tmp_path / "ckpt", state)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(dead.stdout)
    host = checkpoint._host()
    stale = tmp_path / f".ckpt.npz.tmp-{host}-{dead_pid}-0123abcd"
    live = tmp_path / f".ckpt.npz.tmp-{host}-{os.getppid()}-0123abcd"
    other_host = tmp_path / f".ckpt.npz.tmp-elsewhere-{dead_pid}-0123abcd"
    for p in (stale, live, other_host):
        p.write_bytes(b"PK\x03\x04 partial")
    _leaves_equal(load_state(tmp_path / "ckpt"), state)
    save_state(tmp_path / "ckpt", _small_state(2.0))
    assert not stale.exists() and live.exists() and other_host.exists()
    _leaves_equal(load_state(tmp_path / "ckpt"), _small_state(2.0))


# ---------------------------------------------------------------------------------------------
# Sharded states (one process, 8 devices): Orbax restores onto another mesh
# ---------------------------------------------------------------------------------------------


def _model(x):
    import jppl
    import jppl.distributions as dist

    w = jppl.sample("w", dist.Normal(0.0, 1.0).expand([8]).to_event(1))
    with jppl.plate("n", x.shape[0]):
        jppl.sample("y", dist.Normal(x @ w, 1.0), obs=jnp.zeros(x.shape[0]))


@pytest.mark.skipif(len(jax.devices()) < 8, reason="needs 8 (fake) devices")
def test_sharded_svi_state_restores_onto_another_mesh(tmp_path):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(16, 8)), jnp.float32)

    def make(mesh):
        return SVI(
            _model,
            AutoNormal(_model),
            optax.adam(0.05),
            Trace_ELBO(8),
            mesh=mesh,
            shard_state=True,
        )

    svi8 = make(parallel.make_mesh(sample=8))
    full = svi8.run(jax.random.key(0), 6, x, progress_bar=False)
    first = svi8.run(jax.random.key(0), 3, x, progress_bar=False)
    assert not all(p.sharding.is_fully_replicated for p in jax.tree.leaves(first.state.params))
    for storage in ("npz", "orbax"):
        path = checkpoint.save(tmp_path / storage, first.state, kind="svi", storage=storage)
        svi4 = make(parallel.make_mesh(sample=2, data=2, devices=jax.devices()[4:]))
        template = svi4.init(jax.random.key(0), x)
        restored = SVI.load_state(path, template=template)
        for leaf, t in zip(jax.tree.leaves(restored), jax.tree.leaves(template), strict=True):
            assert leaf.sharding == t.sharding
        _leaves_equal(restored, first.state)
        second = svi4.run(None, 3, x, progress_bar=False, init_state=restored)
        np.testing.assert_allclose(
            np.concatenate([first.losses, second.losses]), full.losses, rtol=1e-6
        )
        # without a template: host arrays, placed by the SVI
        placed = svi4.place_state(SVI.load_state(path))
        _leaves_equal(placed, first.state)


def test_orbax_is_imported_only_for_orbax_storage(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from jppl import checkpoint\n"
        f"checkpoint.save({str(tmp_path / 'a')!r}, {{'x': np.ones(3)}}, kind='t')\n"
        f"checkpoint.load({str(tmp_path / 'a')!r})\n"
        "print(any(m.startswith('orbax') for m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_orbax_replace_without_rename_exchange(tmp_path, monkeypatch):
    """Where renameat2(RENAME_EXCHANGE) is missing, a directory is replaced by two renames;
    a crash between them leaves the old checkpoint moved aside, and it is still found."""
    monkeypatch.setattr(checkpoint, "_exchange", lambda a, b: False)
    old, new = _small_state(), _small_state(1.0)
    checkpoint.save(tmp_path / "ob", old, kind="svi", storage="orbax")
    checkpoint.save(tmp_path / "ob", new, kind="svi", storage="orbax")
    assert os.listdir(tmp_path) == ["ob"]
    _leaves_equal(load_state(tmp_path / "ob", template=old), new)
    # the crash: "ob" renamed aside, the new one not yet in place
    aside = tmp_path / f".ob.old-{checkpoint._host()}-999999999-0123abcd"
    os.rename(tmp_path / "ob", aside)
    assert checkpoint.resolve(tmp_path / "ob") == str(aside)
    _leaves_equal(load_state(tmp_path / "ob", template=old), new)
    checkpoint.save(tmp_path / "ob", old, kind="svi", storage="orbax")
    assert os.listdir(tmp_path) == ["ob"]  # the moved-aside one is removed once superseded
