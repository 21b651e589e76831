"""Long runs users can trust: Ctrl-C keeps the finished work of ``SVI.run`` and ``Trainer.fit``
(and continuing repeats the uninterrupted trajectory bitwise), non-finite steps are skipped
with a warning, stop the run, or are applied, and the bars show it.

Interrupts are real SIGINTs, sent from a hook at a known point of the run (a chunk of
``SVI.run``, a step of ``Trainer.fit``): either raised in the main thread or sent by
``os.kill`` from a helper thread that the hook waits for. Either way Python runs the handler
before the loop's next check, so the point where the run stops is deterministic.
"""

import os
import signal
import threading
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jppl
import jppl.distributions as dist
import jppl.nn.trainer as trainer_module
import jppl.vi.svi as svi_module
from jppl import runloop
from jppl.distributions import constraints
from jppl.nn import Trainer
from jppl.runloop import RunInterrupted
from jppl.vi import SVI, NonFiniteError, NonFiniteReport, NonFiniteWarning, Trace_ELBO
from test_nn_trainer import D, K, softmax_guide, softmax_model  # the models of those tests
from test_svi import M0, S0, SIGMA, X, normal_guide, normal_model

THRESHOLD = 2.0  # mu above it makes the loss (and the gradient of "w") NaN


def nan_model(x):
    """``normal_model`` with a model param ``w`` whose term is NaN when a draw of mu exceeds
    THRESHOLD (sqrt of -w): then the loss and the gradient of ``w`` (only) are NaN."""
    mu = jppl.sample("mu", dist.Normal(M0, S0))
    w = jppl.param("w", 1.0, constraint=constraints.positive)
    with jppl.plate("data", x.shape[0]):
        jppl.sample("x", dist.Normal(mu, SIGMA), obs=x)
    jppl.factor("bad", jnp.sqrt(jnp.where(mu > THRESHOLD, -w, w)) - w)


def send_sigint(how: str) -> None:
    """A real SIGINT: raised in this (the main) thread, or sent by a helper thread."""
    if how == "main":
        signal.raise_signal(signal.SIGINT)
    else:
        sender = threading.Timer(0.0, lambda: os.kill(os.getpid(), signal.SIGINT))
        sender.start()
        sender.join()


def fixed_chunks(size: int, interrupt_after: int | None = None, how: str = "main"):
    """A Pacer of ``size``-step chunks that sends SIGINT after chunk ``interrupt_after``."""

    class FixedChunks(runloop.Pacer):
        def __init__(self, total, **kwargs):
            super().__init__(total, **kwargs)
            self.chunks = 0

        def next(self):
            return min(size, self.total - self.done)

        def record(self, steps, seconds, *, compiled=False):
            super().record(steps, seconds, compiled=compiled)
            self.chunks += 1
            if self.chunks == interrupt_after:
                send_sigint(how)

    return FixedChunks


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def normal_svi():
    return SVI(normal_model, normal_guide, optax.adam(0.05), Trace_ELBO(4))


# ---------------------------------------------------------------------------------------------
# Interrupts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["main", "thread"])
def test_svi_run_interrupt_keeps_the_steps_and_continues_bitwise(monkeypatch, normal_svi, how):
    svi = normal_svi
    full = svi.run(jax.random.key(3), 60, X, progress_bar=False)
    assert svi.last_result is full

    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(svi_module, "Pacer", fixed_chunks(7, interrupt_after=3, how=how))
    with pytest.raises(RunInterrupted) as info:
        svi.run(jax.random.key(3), 60, X, progress_bar=False)
    assert signal.getsignal(signal.SIGINT) is handler  # restored
    err = info.value
    assert isinstance(err, KeyboardInterrupt)
    assert (err.done, err.total) == (21, 60)
    part = err.result
    assert svi.last_result is part
    assert int(part.state.step) == 21 and part.losses.shape == (21,)
    np.testing.assert_array_equal(part.losses, full.losses[:21])

    monkeypatch.setattr(svi_module, "Pacer", runloop.Pacer)
    rest = svi.run(None, 60 - err.done, X, progress_bar=False, init_state=part.state)
    np.testing.assert_array_equal(np.concatenate([part.losses, rest.losses]), full.losses)
    assert_trees_equal(
        (rest.state.params, rest.state.optim_state, rest.state.step),
        (full.state.params, full.state.optim_state, full.state.step),
    )
    assert_trees_equal(rest.params, full.params)


def test_svi_run_chunks_are_paced_and_the_speed_is_remembered(monkeypatch, normal_svi):
    sizes: list[int] = []

    class Recording(runloop.Pacer):
        def next(self):
            n = super().next()
            if n:
                sizes.append(n)
            return n

    monkeypatch.setattr(svi_module, "Pacer", Recording)
    svi = SVI(normal_model, normal_guide, optax.adam(0.05), Trace_ELBO(4))
    svi.run(jax.random.key(0), 500, X, progress_bar=False)
    # The first chunk compiles (1 step), the second measures; then they grow (at most 8x).
    assert sizes[:2] == [1, 1] and sum(sizes) == 500
    assert all(b <= 8 * a for a, b in zip(sizes[1:], sizes[2:], strict=False))
    first_run = len(sizes)
    sizes.clear()
    svi.run(jax.random.key(1), 500, X, progress_bar=False)
    # The second run sizes its first chunk from the speed measured by the first.
    assert sizes[0] > 1 and len(sizes) < first_run


# ---------------------------------------------------------------------------------------------
# Non-finite steps in SVI.run
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nan_svi():
    """The NaN model's SVI, and the losses of its plain steps (to locate the bad ones)."""
    svi = SVI(nan_model, normal_guide, optax.adam(0.05), Trace_ELBO(4))
    state = svi.init(jax.random.key(5), X)
    step = jax.jit(svi.guarded_update)
    losses, bad_grads = [], []
    for _ in range(300):
        state, loss, health = step(state, X)
        losses.append(float(loss))
        bad_grads.append(sorted(k for k, ok in health.finite_grads.items() if not bool(ok)))
    return svi, np.asarray(losses), bad_grads, state


def test_nonfinite_steps_are_skipped_with_one_warning(nan_svi):
    svi, losses, bad_grads, manual = nan_svi
    bad = np.flatnonzero(~np.isfinite(losses))
    assert 3 <= len(bad) <= 150, len(bad)  # the model does what the test needs
    first = int(bad[0])
    assert bad_grads[first] == ["w"]

    with pytest.warns(NonFiniteWarning) as record:
        result = svi.run(jax.random.key(5), 300, X, progress_bar=False)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith(f"SVI.run: non-finite loss at step {first} ")
    assert "sites with a non-finite gradient: 'w')" in message
    assert f"{len(bad)} of 300 steps were skipped and the last finite state kept" in message
    assert record[0].filename == __file__  # points at the caller

    for value in jax.tree_util.tree_leaves(result.params):
        assert np.all(np.isfinite(value))
    np.testing.assert_array_equal(np.flatnonzero(~np.isfinite(result.losses)), bad)
    assert int(result.state.step) == 300
    # The same steps as a loop of guarded_update, and as stable_update=True (which also warns).
    for name in manual.params:
        np.testing.assert_allclose(result.state.params[name], manual.params[name], rtol=1e-6)
    with pytest.warns(NonFiniteWarning, match=f"at step {first} "):
        stable = svi.run(jax.random.key(5), 300, X, progress_bar=False, stable_update=True)
    assert_trees_equal(stable.state.params, result.state.params)
    np.testing.assert_array_equal(stable.losses, result.losses)


def test_on_nonfinite_stop_raises_with_the_last_finite_state(nan_svi):
    svi, losses, _, _ = nan_svi
    first = int(np.flatnonzero(~np.isfinite(losses))[0])
    with pytest.raises(NonFiniteError) as info:
        svi.run(jax.random.key(5), 300, X, progress_bar=False, on_nonfinite="stop")
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert err.step == first and err.sites == ("w",)
    assert f"non-finite loss at step {first} " in str(err) and "stopped there" in str(err)
    assert svi.last_result is err.result
    assert int(err.result.state.step) == first and err.result.losses.shape == (first,)
    assert np.all(np.isfinite(err.result.losses))
    # The state is that of the steps before the bad one.
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteWarning)
        before = svi.run(jax.random.key(5), first, X, progress_bar=False)
    np.testing.assert_array_equal(err.result.losses, before.losses)
    assert_trees_equal(err.result.state.params, before.state.params)
    assert_trees_equal(err.result.params, before.params)


def test_on_nonfinite_ignore_applies_the_updates(nan_svi):
    svi = nan_svi[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteWarning)
        result = svi.run(jax.random.key(5), 300, X, progress_bar=False, on_nonfinite="ignore")
    assert not np.isfinite(result.params["w"])
    assert np.isfinite(result.params["loc"])  # its gradient stays finite


def test_bad_on_nonfinite_is_named(normal_svi):
    with pytest.raises(ValueError, match="on_nonfinite must be"):
        normal_svi.run(jax.random.key(0), 5, X, on_nonfinite="skip")
    with pytest.raises(ValueError, match="stable_update=True skips"):
        normal_svi.run(jax.random.key(0), 5, X, stable_update=True, on_nonfinite="ignore")


def test_report_records_the_first_bad_step():
    params = {"a": jnp.zeros(3), "b": jnp.zeros(())}
    report = NonFiniteReport.empty(params)
    ok = report.first
    bad = ok._replace(ok=jnp.asarray(False), finite_loss=jnp.asarray(False))
    bad = bad._replace(finite_grads={"a": jnp.asarray(True), "b": jnp.asarray(False)})
    report = jax.jit(NonFiniteReport.record)(report, jnp.asarray(3), ok)
    report = report.record(jnp.asarray(4), bad)
    report = report.record(jnp.asarray(5), ok._replace(ok=jnp.asarray(False)))
    assert int(report.count) == 2 and int(report.first_step) == 4
    assert report.bad_sites() == ["b"]
    message = report.message("loop", 10, start_step=2)
    assert message.startswith("loop: non-finite loss at step 4 (losses[2]) ")
    assert "'b'" in message and "2 of 10 steps were skipped" in message


# ---------------------------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------------------------


def test_live_bar_shows_the_skipped_steps(capsys, monkeypatch, nan_svi):
    monkeypatch.setattr(svi_module, "is_interactive", lambda: True)
    with pytest.warns(NonFiniteWarning):
        nan_svi[0].run(jax.random.key(5), 300, X)
    err = capsys.readouterr().err
    assert "300/300" in err and "it/s" in err and "skipped (non-finite)" in err


def test_plain_line_of_an_interrupted_run(capsys, monkeypatch, normal_svi):
    monkeypatch.setattr(svi_module, "Pacer", fixed_chunks(5, interrupt_after=2))
    with pytest.raises(RunInterrupted):
        normal_svi.run(jax.random.key(3), 30, X)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("SVI: 10/30 [") and "it/s, stopped]" in line and "loss" in line


# ---------------------------------------------------------------------------------------------
# Trainer.fit
# ---------------------------------------------------------------------------------------------


def make_data(n=36, nan_row=None):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, D)).astype(np.float32)
    y = rng.integers(0, K, size=n).astype(np.int32)
    if nan_row is not None:
        x[nan_row] = np.nan
    return x, y


def make_trainer(**kwargs):
    return Trainer(
        softmax_model,
        softmax_guide,
        optax.adam(0.05),
        num_data=36,
        batch_size=12,
        num_particles=4,
        **kwargs,
    )


@pytest.mark.parametrize(("stop_after", "how"), [(5, "main"), (6, "thread")])
def test_fit_interrupt_keeps_the_steps_and_continues_bitwise(monkeypatch, stop_after, how):
    data = make_data()
    trainer = make_trainer()
    state0 = trainer.init(jax.random.key(2), data)
    full = trainer.fit(state0, data, 3, progress_bar=False)
    assert trainer.last_result is full and full.losses.shape == (9,)

    step, calls = trainer._guarded_train_step, []

    def interrupting_step(*args):
        out = step(*args)
        calls.append(1)
        if len(calls) == stop_after:
            send_sigint(how)
        return out

    monkeypatch.setattr(trainer, "_guarded_train_step", interrupting_step)
    with pytest.raises(RunInterrupted) as info:
        trainer.fit(state0, data, 3, progress_bar=False)
    err = info.value
    part = err.result
    assert trainer.last_result is part
    assert (err.done, err.total) == (stop_after, 9) and len(calls) == stop_after
    assert int(part.state.step) == stop_after
    np.testing.assert_array_equal(part.losses, full.losses[:stop_after])
    # Epoch 2 ends after step 6: its metrics are kept only when it finished.
    assert [m.epoch for m in part.history] == list(range(1, stop_after // 3 + 1))

    monkeypatch.undo()
    rest = trainer.fit(part.state, data, 3 - len(part.history), progress_bar=False)
    np.testing.assert_array_equal(np.concatenate([part.losses, rest.losses]), full.losses)
    assert_trees_equal(
        (rest.state.params, rest.state.optim_state, rest.state.step),
        (full.state.params, full.state.optim_state, full.state.step),
    )
    assert [m.epoch for m in part.history + rest.history] == [1, 2, 3]
    # An epoch split by the interrupt reports the mean loss of its steps in the second call.
    split = {stop_after // 3 + 1} if stop_after % 3 else set()
    assert [m.loss for m in part.history + rest.history if m.epoch not in split] == [
        m.loss for m in full.history if m.epoch not in split
    ]


@pytest.fixture(scope="module")
def nan_data():
    """Data with a NaN input: the one step of each epoch whose minibatch holds it is NaN."""
    return make_data(nan_row=7)


def test_fit_skips_nonfinite_steps_with_one_warning(capsys, nan_data):
    trainer = make_trainer()
    state0 = trainer.init(jax.random.key(2), make_data())
    with pytest.warns(NonFiniteWarning) as record:
        result = trainer.fit(state0, nan_data, 3)
    bad = np.flatnonzero(~np.isfinite(result.losses))
    assert len(bad) == 3  # one step per epoch
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith(f"Trainer.fit: non-finite loss at step {bad[0]} ")
    assert "sites with a non-finite gradient: 'w_loc', 'w_scale'" in message
    assert "3 of 9 steps were skipped" in message
    assert record[0].filename == __file__
    for value in jax.tree_util.tree_leaves(result.params):
        assert np.all(np.isfinite(value))
    assert [m.skipped for m in result.history] == [1, 1, 1]
    assert all(np.isfinite(m.loss) for m in result.history)
    assert "1 non-finite steps skipped" in capsys.readouterr().err
    # The same as the trainer's (skipping) step, one at a time.
    state = state0
    step = jax.jit(trainer.step)
    for epoch in range(3):
        for idx in np.asarray(trainer.epoch_batches(state0, epoch)):
            state, _ = step(state, tuple(jnp.asarray(a)[idx] for a in nan_data))
    for name in state.params:
        np.testing.assert_allclose(result.state.params[name], state.params[name], rtol=1e-6)


def test_fit_stop_and_ignore(nan_data):
    clean = make_data()
    stopping = make_trainer(on_nonfinite="stop")
    state0 = stopping.init(jax.random.key(2), clean)
    with pytest.raises(NonFiniteError) as info:
        stopping.fit(state0, nan_data, 3, progress_bar=False)
    err = info.value
    assert err.sites == ("w_loc", "w_scale") and "Trainer.fit" in str(err)
    first = err.step
    assert stopping.last_result is err.result
    assert int(err.result.state.step) == first and err.result.losses.shape == (first,)
    assert np.all(np.isfinite(err.result.losses))
    assert len(err.result.history) == first // 3
    # The state is that of the steps before the bad one.
    before = make_trainer(on_nonfinite="ignore")
    s = before.init(jax.random.key(2), clean)
    step = jax.jit(before.step)
    for k in range(first):
        idx = np.asarray(before.epoch_batches(s, k // 3))[k % 3]
        s, _ = step(s, tuple(jnp.asarray(a)[idx] for a in nan_data))
    for name in s.params:
        np.testing.assert_allclose(err.result.state.params[name], s.params[name], rtol=1e-6)

    ignoring = make_trainer(on_nonfinite="ignore")
    state0 = ignoring.init(jax.random.key(2), clean)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteWarning)
        result = ignoring.fit(state0, nan_data, 1, progress_bar=False)
    assert not np.all(np.isfinite(result.params["w_loc"]))
    with pytest.raises(ValueError, match="on_nonfinite"):
        make_trainer(on_nonfinite="nope")


def test_fit_live_bar(capsys, monkeypatch, nan_data):
    monkeypatch.setattr(trainer_module, "is_interactive", lambda: True)
    monkeypatch.setattr(trainer_module, "_LOOK_SECONDS", 0.0)  # look at every step
    trainer = make_trainer()
    state0 = trainer.init(jax.random.key(2), make_data())
    with pytest.warns(NonFiniteWarning):
        trainer.fit(state0, nan_data, 2)
    err = capsys.readouterr().err
    assert "epoch 1" in err and "it/s" in err and "loss " in err
    assert "skipped (non-finite): 1" in err
    assert "epoch 2: step 6, loss" in err
