"""Helper processes of ``tests/test_checkpoint.py``, and the npz-vs-Orbax timings quoted in
:mod:`jppl.checkpoint`.

``python tests/checkpoint_worker.py zygote``: the crash test's fork server. It imports JAX and
jppl once (without starting a JAX backend) and reads commands on stdin:

* ``run KIND PATH FIRST``: fork a child that saves the state ``content(KIND, i)`` for ``i =
  FIRST, FIRST + 1, ...`` to ``PATH`` in a loop through the front end of ``KIND`` (``mcmc``:
  ``MCMC.save``; ``svi``: ``SVI.save``; ``trainer``: ``Trainer.save_checkpoint`` into the
  directory ``PATH``; ``orbax``: the ``svi`` state as an Orbax directory), printing ``saved
  i`` after each; the server prints ``child PID``. The test kills the child with SIGKILL at a
  random moment.
* ``reap PID``: wait for that child; prints ``reaped PID``.

A fork costs milliseconds where a fresh process would import JAX for seconds, so a test can
kill many saves. Each child starts its own JAX backend (none runs in the server when it
forks).

``python tests/checkpoint_worker.py bench``: median save + load times of :mod:`jppl.checkpoint`
as ``.npz`` and as Orbax, for a small MCMC state and a ~10 MB SVI state (one CPU device).

Importing this module has no side effects (the test imports it for :func:`content`).
"""

from __future__ import annotations

import os
import sys
import time
from functools import cache

import numpy as np

CHAINS, DIM = 4, 10
MCMC_DRAWS = 25_000  # 4 x 25000 x 10 float32 samples: 4 MB
SVI_SIZE = 400_000  # params, Adam mu and nu of 400000 float32 each: 4.8 MB
KINDS = ("mcmc", "svi", "trainer", "orbax")


@cache
def _bases(kind: str) -> tuple:
    """Two sets of random arrays; state ``i`` is made of set ``i % 2``."""
    rng = np.random.default_rng(0)
    if kind == "mcmc":
        return tuple(
            {
                "position": rng.normal(size=(CHAINS, DIM)).astype(np.float32),
                "x": rng.normal(size=(CHAINS, MCMC_DRAWS, DIM)).astype(np.float32),
                "pe": rng.normal(size=(CHAINS, MCMC_DRAWS)).astype(np.float32),
                "div": rng.random((CHAINS, MCMC_DRAWS)) < 0.01,
            }
            for _ in range(2)
        )
    return tuple(
        {name: rng.normal(size=SVI_SIZE).astype(np.float32) for name in ("w", "mu", "nu")}
        for _ in range(2)
    )


def content(kind: str, i: int):
    """The ``i``-th state the child of ``kind`` saves (JAX typed keys: needs a backend).

    ``mcmc``: ``(MCMCState, samples, extra_fields)``; the others: an ``SVIState`` with
    params ``{"w": (SVI_SIZE,)}`` and an Adam state (what :func:`trainer_for` initializes).
    """
    import jax
    import optax

    base = _bases(kind)[i % 2]
    key = jax.random.key(i)
    if kind == "mcmc":
        from jppl.mcmc.state import MCMCState

        state = MCMCState(
            position=base["position"],
            logdensity=-np.sum(base["position"] ** 2, axis=1),
            logdensity_grad=-2 * base["position"],
            step_size=np.full(CHAINS, 0.5 + i % 2, np.float32),
            inverse_mass_matrix=np.ones((CHAINS, DIM), np.float32),
            rng_key=jax.random.split(key, CHAINS),
            step=np.full(CHAINS, i, np.int32),
        )
        samples = {"x": base["x"]}
        fields = {"potential_energy": base["pe"], "diverging": base["div"]}
        return state, samples, fields
    from jppl.vi import SVIState

    params = {"w": base["w"]}
    adam = optax.ScaleByAdamState(np.asarray(i, np.int32), {"w": base["mu"]}, {"w": base["nu"]})
    return SVIState(params, (adam, optax.EmptyState()), key, np.asarray(i, np.int32))


def mcmc_model(y=None):
    import jppl
    import jppl.distributions as dist

    jppl.sample("x", dist.Normal(0.0, 1.0).expand([DIM]).to_event(1))


def trainer_for():
    """A Trainer whose state is :func:`content`'s ``trainer`` state (one param ``w``)."""
    import jax.numpy as jnp
    import optax

    import jppl
    import jppl.distributions as dist
    from jppl.nn import Trainer

    def model(x, y):
        w = jppl.param("w", jnp.zeros(SVI_SIZE))
        with jppl.plate("data", x.shape[0]):
            jppl.sample("y", dist.Normal(x * w[0], 1.0), obs=y)

    def guide(x, y):
        pass

    return Trainer(model, guide, optax.adam(1e-3), num_data=4, batch_size=2, num_particles=1)


def trainer_data():
    return (np.arange(4, dtype=np.float32), np.ones(4, np.float32))


def _say(line: str) -> None:
    """One line on stdout in one ``write`` (atomic on a pipe): a child killed while printing
    must not leave half a line for the server's next one (``print`` may write twice)."""
    os.write(1, (line + "\n").encode())


def _save_loop(kind: str, path: str, first: int) -> None:
    """Save ``content(kind, i)`` for ``i = first, first + 1, ...`` forever (until killed)."""
    import jax
    import optax

    states = [content(kind, first + k) for k in range(2)]  # starts the backend, compiles
    if kind == "mcmc":
        from jppl.mcmc import MCMC, NUTS

        mcmc = MCMC(
            NUTS(mcmc_model),
            num_warmup=10,
            num_samples=MCMC_DRAWS,
            num_chains=CHAINS,
            progress_bar=False,
        )
    elif kind == "svi":
        from jppl.vi import SVI, Trace_ELBO

        svi = SVI(mcmc_model, mcmc_model, optax.adam(1e-3), Trace_ELBO())
    elif kind == "orbax":
        from jppl import checkpoint
    else:
        trainer = trainer_for()
    i = first
    while True:
        state = states[(i - first) % 2]
        if kind == "mcmc":
            mcmc_state, samples, fields = state
            keys = jax.random.split(jax.random.key(i), CHAINS)
            step = np.full(CHAINS, i, np.int32)
            mcmc.restore(mcmc_state._replace(rng_key=keys, step=step), samples, fields)
            mcmc.save(path)
        else:
            step = np.asarray(i, np.int32)
            adam = state.optim_state[0]._replace(count=step)
            state = state._replace(
                rng_key=jax.random.key(i), step=step, optim_state=(adam, optax.EmptyState())
            )
            if kind == "svi":
                svi.save(path, state)
            elif kind == "orbax":
                checkpoint.save(path, state, kind="svi", storage="orbax")
            else:
                trainer.save_checkpoint(path, state, keep=2)
        _say(f"saved {i}")
        i += 1


def zygote() -> None:
    import jax  # noqa: F401  (imported once here; no backend starts before a fork)

    import jppl.mcmc  # noqa: F401
    import jppl.nn  # noqa: F401
    import jppl.vi  # noqa: F401

    for kind in KINDS:
        _bases(kind)
    _say("ready")
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "run":
            pid = os.fork()
            if pid == 0:
                try:
                    _save_loop(cmd[1], cmd[2], int(cmd[3]))
                except BaseException as e:  # the test sees it on stderr
                    print(f"child failed: {e!r}", file=sys.stderr, flush=True)
                finally:
                    os._exit(1)
            _say(f"child {pid}")
        elif cmd[0] == "reap":
            os.waitpid(int(cmd[1]), 0)
            _say(f"reaped {cmd[1]}")
        elif cmd[0] == "quit":
            break


def bench(repeats: int = 7) -> None:
    """Median save + load times (ms) of npz and Orbax storage (see jppl.checkpoint)."""
    import tempfile

    import jax
    import jax.numpy as jnp

    from jppl import checkpoint
    from jppl.mcmc.state import MCMCState

    rng = np.random.default_rng(0)
    key = jax.random.key(0)
    small = {
        "state": MCMCState(
            jnp.asarray(rng.normal(size=(4, 10)), jnp.float32),
            jnp.zeros(4),
            jnp.zeros((4, 10)),
            jnp.full(4, 0.5),
            jnp.ones((4, 10)),
            jax.random.split(key, 4),
            jnp.zeros(4, jnp.int32),
        ),
        "samples": {"x": jnp.asarray(rng.normal(size=(4, 1000, 10)), jnp.float32)},
        "fields": {
            name: jnp.asarray(rng.normal(size=(4, 1000)), jnp.float32)
            for name in ("potential_energy", "accept_prob", "energy", "step_size")
        },
    }
    n = 10_000_000 // 12  # params, Adam mu and nu: ~10 MB of float32
    large = {
        "params": {"w": jnp.asarray(rng.normal(size=n), jnp.float32)},
        "mu": {"w": jnp.asarray(rng.normal(size=n), jnp.float32)},
        "nu": {"w": jnp.asarray(rng.normal(size=n), jnp.float32)},
        "rng_key": key,
        "step": jnp.asarray(3, jnp.int32),
    }
    for label, tree in (("MCMC 4 chains x 10 dims + 1000 draws", small), ("SVI ~10 MB", large)):
        nbytes = sum(
            np.asarray(
                jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
            ).nbytes
            for x in jax.tree.leaves(tree)
        )
        row = [f"{label} ({nbytes / 1e6:.2f} MB):"]
        for storage in ("npz", "orbax"):
            saves, loads = [], []
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "ckpt")
                for r in range(repeats + 1):
                    t0 = time.perf_counter()
                    checkpoint.save(path, tree, kind="bench", storage=storage)
                    t1 = time.perf_counter()
                    loaded = checkpoint.load(path, template=tree).tree
                    jax.block_until_ready(loaded)
                    t2 = time.perf_counter()
                    if r:  # the first round imports and compiles
                        saves.append(t1 - t0)
                        loads.append(t2 - t1)
            row.append(
                f"{storage} save {1e3 * np.median(saves):.1f} ms, load "
                f"{1e3 * np.median(loads):.1f} ms;"
            )
        print(" ".join(row), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "zygote":
        zygote()
    elif sys.argv[1] == "bench":
        bench()
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}")
