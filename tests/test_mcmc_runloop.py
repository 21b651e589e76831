"""MCMC's run loop: transitions in compiled chunks, live progress between them, and Ctrl-C.

A run's transitions go through one compiled loop in chunks sized by ``jppl.runloop.Pacer``;
the host updates the bar and checks for Ctrl-C between chunks. Checked here:

* the draws do not depend on the chunking (bitwise, for each chain method);
* the bar gets several updates per phase, monotone, with the exact running divergence counts
  and the step size in use; without a display, one line per phase;
* a SIGINT sent from a helper thread during warm-up or sampling stops the run after the
  current chunk with :class:`jppl.runloop.RunInterrupted`, keeps what is done
  (``last_state``, the draws made, ``post_warmup_state`` once the warm-up is over), and
  ``resume()`` (or a run from ``post_warmup_state``) reaches bitwise the uninterrupted result.
"""

import functools
import os
import signal
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jppl
import jppl.distributions as dist
from jppl.mcmc import MCMC, NUTS, progress, runner
from jppl.runloop import Pacer, RunInterrupted

Y = jnp.array([0.3, -1.2, 0.8, 2.1, 0.4, -0.5, 1.1, 0.0])
QUIET = {"progress_bar": False, "warn": False}


def model(y):
    loc = jppl.sample("loc", dist.Normal(jnp.zeros(2), 3.0).to_event(1))
    scale = jppl.sample("scale", dist.HalfNormal(2.0))
    with jppl.plate("data", y.shape[0]):
        jppl.sample("y", dist.Normal(loc.sum(), scale), obs=y)


def funnel():
    v = jppl.sample("v", dist.Normal(0.0, 3.0))
    jppl.sample("x", dist.Normal(jnp.zeros(3), jnp.exp(v / 2)).to_event(1))


def _raw(x):
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(x))
    return np.asarray(x)


def _equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(_raw(x), _raw(y))


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Chunks of a few transitions (a target of 0.1 ms per chunk)."""
    monkeypatch.setattr(runner, "Pacer", functools.partial(Pacer, target=1e-4, growth=2.0))


def _mcmc(chain_method, **options):
    """The run of these tests: 2 chains, 60 warm-up transitions, 40 draws."""
    return MCMC(
        NUTS(model),
        num_warmup=60,
        num_samples=40,
        num_chains=2,
        chain_method=chain_method,
        **options,
    )


def _full(chain_method):
    mcmc = _mcmc(chain_method, **QUIET)
    mcmc.run(jax.random.key(3), Y)
    return mcmc


@pytest.fixture(scope="module")
def uninterrupted():
    """Reference runs (default pacing) per chain method."""
    return {m: _full(m) for m in ("vectorized", "sharded", "sequential")}


@pytest.mark.parametrize("chain_method", ["vectorized", "sharded", "sequential"])
def test_draws_do_not_depend_on_the_chunks(chain_method, uninterrupted, monkeypatch):
    chunks = []
    original = Pacer.record

    def spy(self, steps, seconds, *, compiled=False):
        chunks.append(steps)
        original(self, steps, seconds, compiled=compiled)

    monkeypatch.setattr(Pacer, "record", spy)
    monkeypatch.setattr(runner, "Pacer", functools.partial(Pacer, target=1e-4, growth=2.0))
    small = _full(chain_method)
    groups = 2 if chain_method == "sequential" else 1
    assert len(chunks) > 10 * groups and sum(chunks) == 100 * groups  # many chunks
    ref = uninterrupted[chain_method]
    _equal(small.get_samples(group_by_chain=True), ref.get_samples(group_by_chain=True))
    _equal(small.get_extra_fields(group_by_chain=True), ref.get_extra_fields(group_by_chain=True))
    _equal(small.last_state, ref.last_state)


def test_live_progress_bar(monkeypatch, capsys, tiny_chunks):
    """With a display: several updates per phase, monotone, all chains at once, with the step
    size in use and the exact running divergence count. Nothing is compiled for the bar."""
    updates = []
    original = progress.ProgressBar.update

    def spy(self, done, divergences, last, summary=None):
        updates.append((done, tuple(divergences), tuple(last)))
        original(self, done, divergences, last, summary)

    monkeypatch.setattr(progress.ProgressBar, "update", spy)
    monkeypatch.setattr(runner, "is_interactive", lambda: True)
    sampler = NUTS(funnel, step_size=1.0, adapt_step_size=False)  # diverges now and then
    for method in ("vectorized", "sharded"):
        updates.clear()
        mcmc = MCMC(
            sampler, num_warmup=200, num_samples=200, num_chains=4, chain_method=method, warn=False
        )
        mcmc.run(jax.random.key(14))
        assert [k[0] for k in mcmc._compiled] == ["init", "chain"]
        done = [u[0] for u in updates]
        assert done == sorted(done) and done[-1] == 400
        assert sum(d <= 200 for d in done) > 5 and sum(d > 200 for d in done) > 5
        assert 200 in done  # a chunk ends where the warm-up does
        warm_div = [u[1][0] for u in updates]
        sample_div = [u[1][1] for u in updates]
        assert warm_div == sorted(warm_div) and sample_div == sorted(sample_div)
        assert warm_div[-1] == mcmc._counts["warmup_num_divergent"] > 0
        assert sample_div[-1] == mcmc.num_divergent > 0
        assert all(u[2][0] == 1.0 and 0.0 <= u[2][1] <= 1.0 for u in updates)
    err = capsys.readouterr().err
    assert "warmup" in err and "sample" in err and "divergences" in err and "step size" in err

    # no display: one summary line per phase, the same compiled programs
    monkeypatch.setattr(runner, "is_interactive", lambda: False)
    mcmc.run(jax.random.key(14))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0].startswith("warmup: 200/200")
    assert lines[1].startswith("sample: 200/200") and "divergences" in lines[1]
    assert len(mcmc._compiled) == 2


def _interrupt_at(monkeypatch, transitions: int):
    """Send SIGINT from a helper thread once ``transitions`` transitions are done."""
    original = progress.ProgressBar.update
    sent = []

    def spy(self, done, divergences, last, summary=None):
        original(self, done, divergences, last, summary)
        if done >= transitions and not sent:
            sent.append(done)
            sender = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT))
            sender.start()
            sender.join()  # the main thread's handler runs while it waits here

    monkeypatch.setattr(progress.ProgressBar, "update", spy)
    monkeypatch.setattr(runner, "is_interactive", lambda: False)
    return sent


@pytest.mark.parametrize("chain_method", ["vectorized", "sequential"])
def test_interrupt_during_warmup_resumes_bitwise(
    chain_method, uninterrupted, monkeypatch, tiny_chunks
):
    sent = _interrupt_at(monkeypatch, 30)
    mcmc = _mcmc(chain_method, warn=False)
    with pytest.raises(RunInterrupted, match="mcmc.resume") as info:
        mcmc.run(jax.random.key(3), Y)
    assert isinstance(info.value, KeyboardInterrupt)
    assert 30 <= sent[0] < 60
    assert mcmc.post_warmup_state is None  # the warm-up is not over
    assert mcmc.last_state is not None and mcmc.last_state.position.shape == (2, 3)
    assert jax.tree.leaves(mcmc.get_samples())[0].shape[0] == 0  # no draws yet
    mcmc.resume()
    ref = uninterrupted[chain_method]
    _equal(mcmc.get_samples(group_by_chain=True), ref.get_samples(group_by_chain=True))
    _equal(mcmc.get_extra_fields(group_by_chain=True), ref.get_extra_fields(group_by_chain=True))
    _equal(mcmc.last_state, ref.last_state)
    with pytest.raises(RuntimeError, match="no interrupted run"):
        mcmc.resume()


@pytest.mark.parametrize("chain_method", ["vectorized", "sharded"])
def test_interrupt_during_sampling_keeps_warmup_and_draws(
    chain_method, uninterrupted, monkeypatch, tiny_chunks
):
    sent = _interrupt_at(monkeypatch, 80)
    mcmc = _mcmc(chain_method, warn=False)
    with pytest.raises(RunInterrupted) as info:
        mcmc.run(jax.random.key(3), Y)
    assert "60/60 warm-up" in str(info.value)
    ref = uninterrupted[chain_method]
    full = ref.get_samples(group_by_chain=True)
    kept = sent[0] - 60
    part = mcmc.get_samples(group_by_chain=True)
    assert part["loc"].shape[:2] == (2, kept)
    _equal(part, jax.tree.map(lambda x: x[:, :kept], full))  # the draws made so far
    np.testing.assert_array_equal(mcmc.last_state.step, [kept, kept])

    # the adapted chains: sampling from them again gives the uninterrupted draws
    warm = _mcmc(chain_method, **QUIET)
    warm.warmup(jax.random.key(3), Y)
    _equal(mcmc.post_warmup_state, warm.post_warmup_state)
    again = _mcmc(chain_method, **QUIET)
    again.post_warmup_state = mcmc.post_warmup_state
    again.run(None, Y)
    _equal(again.get_samples(group_by_chain=True), full)

    # resume() collects the rest
    mcmc.resume()
    _equal(mcmc.get_samples(group_by_chain=True), full)
    _equal(mcmc.last_state, ref.last_state)


def test_interrupt_outside_the_main_thread_is_left_alone():
    """Off the main thread no handler is installed (Python allows none there): the run is
    an ordinary one."""
    out = {}

    def work():
        mcmc = MCMC(NUTS(model), num_warmup=20, num_samples=20, **QUIET)
        mcmc.run(jax.random.key(0), Y)
        out["n"] = mcmc.get_samples()["scale"].shape[0]

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert out["n"] == 20
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
