"""One process of the multi-host test (``tests/test_multihost.py``); also its shared problems.

Run as ``python multihost_worker.py PROCESS_ID NUM_PROCESSES PORT TASK[,TASK...]``: it joins
the others through ``jppl.parallel.initialize`` (coordinator on 127.0.0.1), runs the tasks on a
mesh over every device of every process, and prints one line ``RESULT <json>``. Each task is a
function in :data:`TASKS` returning JSON-able numbers; the test runs the same functions in one
process with the same number of devices and compares. Importing this module has no side
effects (the test imports it for the reference run).
"""

from __future__ import annotations

import json
import sys

import numpy as np

N_OBS, N_FEAT = 64, 3
NUM_PARTICLES, SVI_STEPS = 8, 10
NUTS_CHAINS, NUTS_WARMUP, NUTS_DRAWS = 2, 40, 10
W_EVAL = (0.3, -0.2, 0.1)


def dataset() -> tuple[np.ndarray, np.ndarray]:
    """The global logistic-regression data ``X (N, F)``, ``y (N,)`` (float32, fixed seed)."""
    rng = np.random.default_rng(42)
    x = rng.normal(size=(N_OBS, N_FEAT)).astype(np.float32)
    w = np.array([1.0, -2.0, 0.5], np.float32)
    y = (rng.random(N_OBS) < 1 / (1 + np.exp(-x @ w))).astype(np.float32)
    return x, y


def logreg_model(x, y):
    """Bayesian logistic regression with its data plate sharded over ``data``."""
    import jppl
    import jppl.distributions as dist

    w = jppl.sample("w", dist.Normal(0.0, 1.0).expand([x.shape[1]]).to_event(1))
    with jppl.plate("N", x.shape[0], shard="data"):
        jppl.sample("y", dist.BernoulliLogits(x @ w), obs=y)


def local_rows(array: np.ndarray, process_id: int, num_processes: int) -> np.ndarray:
    """Process ``process_id``'s consecutive block of rows (all rows with one process)."""
    rows = array.shape[0] // num_processes
    return array[process_id * rows : (process_id + 1) * rows]


def load_data(mesh):
    """``(X, y)`` as global arrays split over ``data``; each process gives only its rows."""
    import jax

    from jppl import parallel

    x, y = dataset()
    pid, n = jax.process_index(), jax.process_count()
    return (
        parallel.process_local_array(local_rows(x, pid, n), mesh, "data"),
        parallel.process_local_array(local_rows(y, pid, n), mesh, "data"),
    )


def task_logdensity(num_devices: int) -> dict:
    """Log density and gradient of ``logreg_model`` at ``W_EVAL``, data over the devices."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from jppl import parallel
    from jppl.infer.util import log_density

    mesh = parallel.make_mesh(data=num_devices)
    x, y = load_data(mesh)

    def value_and_grad(w, x, y):
        with parallel.use_mesh(mesh):
            return jax.value_and_grad(lambda w: log_density(logreg_model, (x, y), {}, {"w": w})[0])(
                w
            )

    fn = jax.jit(value_and_grad, out_shardings=NamedSharding(mesh, P()))
    w = jnp.asarray(W_EVAL, jnp.float32)
    value, grad = parallel.gather(fn(w, x, y))
    return {"value": float(value), "grad": np.asarray(grad).tolist()}


def task_svi(num_devices: int) -> dict:
    """SVI (AutoNormal, Trace_ELBO with 8 particles) with the particles over the devices."""
    import jax
    import optax

    from jppl import parallel
    from jppl.vi import SVI, Trace_ELBO
    from jppl.vi.autoguide import AutoNormal

    mesh = parallel.make_mesh(sample=num_devices)
    x, y = dataset()
    svi = SVI(
        logreg_model,
        AutoNormal(logreg_model),
        optax.adam(0.05),
        Trace_ELBO(num_particles=NUM_PARTICLES),
        mesh=mesh,
    )
    result = svi.run(jax.random.key(3), SVI_STEPS, x, y, progress_bar=False)
    params = parallel.gather(result.params)
    return {
        "losses": parallel.gather(result.losses).tolist(),
        "params": {k: np.asarray(v).tolist() for k, v in params.items()},
    }


def task_nuts(num_devices: int) -> dict:
    """NUTS (2 chains, step size and mass matrix adapted) with the data split over all the
    devices.

    Both chains run on every device (``chain=1``), each device evaluating the log density and
    gradient of its own data blocks (``data_blocks``: added in a fixed order, so the draws do
    not depend on the device count or the number of processes). The results are replicated, so
    every process reads them whole.
    """
    import jax

    from jppl import parallel
    from jppl.mcmc import MCMC, NUTS

    mesh = parallel.make_mesh(data=num_devices)
    x, y = load_data(mesh)
    mcmc = MCMC(
        NUTS(logreg_model),
        num_warmup=NUTS_WARMUP,
        num_samples=NUTS_DRAWS,
        num_chains=NUTS_CHAINS,
        progress_bar=False,
        warn=False,
        mesh=mesh,
    )
    mcmc.run(jax.random.key(7), x, y)
    samples = mcmc.get_samples(group_by_chain=True)
    fields = mcmc.get_extra_fields(group_by_chain=True)
    assert all(
        leaf.is_fully_replicated for leaf in jax.tree.leaves((samples, fields, mcmc.last_state))
    )
    idata = mcmc.to_arviz()  # observed data and log-likelihoods span both processes
    return {
        "observed_y": np.asarray(idata.observed_data["y"]).tolist(),
        "log_likelihood_y": np.asarray(idata.log_likelihood["y"]).tolist(),
        "w": np.asarray(samples["w"]).tolist(),
        "potential_energy": np.asarray(fields["potential_energy"]).tolist(),
        "num_steps": np.asarray(fields["num_steps"]).tolist(),
        "last_position": np.asarray(mcmc.last_state.position).tolist(),
        "step_size": np.asarray(mcmc.last_state.step_size).tolist(),
        "inverse_mass_matrix": np.asarray(mcmc.last_state.inverse_mass_matrix).tolist(),
        "blocks": mcmc.block_plan.num_blocks,
    }


CHECKPOINT_DIR_ENV = "JPPL_TEST_CHECKPOINT_DIR"
"""Where the checkpoint tasks save and restore (set by the test, seen by every process)."""
CKPT_STEPS, CKPT_WIDTH = 4, 8
CKPT_NAMES = {True: "split", False: "replicated"}
"""``shard_state`` -> the name of the checkpoint the tasks write."""


def wide_model(x, y):
    """Logistic regression on ``CKPT_WIDTH`` features: ``w`` and its guide's params split
    evenly over 4 devices (``shard_state=True``)."""
    import jppl
    import jppl.distributions as dist

    w = jppl.sample("w", dist.Normal(0.0, 1.0).expand([CKPT_WIDTH]).to_event(1))
    with jppl.plate("N", x.shape[0]):
        jppl.sample("y", dist.BernoulliLogits(x @ w), obs=y)


def wide_dataset() -> tuple[np.ndarray, np.ndarray]:
    x, y = dataset()
    return np.concatenate([x, x**2, x[:, :2]], axis=1), y


def checkpoint_svi(mesh, shard_state: bool):
    """SVI on ``mesh``, its state split over every device (``shard_state``) or replicated."""
    import optax

    from jppl.vi import SVI, Trace_ELBO
    from jppl.vi.autoguide import AutoNormal

    return SVI(
        wide_model,
        AutoNormal(wide_model),
        optax.adam(0.05),
        Trace_ELBO(num_particles=NUM_PARTICLES),
        mesh=mesh,
        shard_state=shard_state,
    )


def _svi_result(result, state) -> dict:
    import jax

    from jppl import parallel

    params = parallel.gather(result.params)
    return {
        "losses": parallel.gather(result.losses).tolist(),
        "params": {k: np.asarray(v).tolist() for k, v in params.items()},
        "split": [not leaf.is_fully_replicated for leaf in jax.tree.leaves(state.params)],
    }


def task_checkpoint_save(num_devices: int) -> dict:
    """``CKPT_STEPS`` SVI steps on all the devices, then ``SVI.save``: a state split over the
    devices (with several processes each writes its own shards into an Orbax directory), and
    a replicated one (process 0 writes an ``.npz``)."""
    import os

    import jax

    from jppl import parallel

    out = {}
    x, y = wide_dataset()
    for shard_state, name in CKPT_NAMES.items():
        svi = checkpoint_svi(parallel.make_mesh(sample=num_devices), shard_state)
        result = svi.run(jax.random.key(5), CKPT_STEPS, x, y, progress_bar=False)
        path = svi.save(os.path.join(os.environ[CHECKPOINT_DIR_ENV], name), result.state)
        out[name] = {**_svi_result(result, result.state), "path": path}
    return out


def task_checkpoint_restore(num_devices: int, mesh=None) -> dict:
    """Restore the states of :func:`task_checkpoint_save` onto another mesh (default: the
    devices as ``sample=2 x data=num_devices/2``), split over its devices or replicated, and
    run ``CKPT_STEPS`` more steps."""
    import os

    import jax

    from jppl import parallel
    from jppl.vi import SVI

    if mesh is None:
        mesh = parallel.make_mesh(sample=2, data=num_devices // 2)
    out = {}
    x, y = wide_dataset()
    for shard_state, name in CKPT_NAMES.items():
        svi = checkpoint_svi(mesh, shard_state)
        template = svi.init(jax.random.key(0), x, y)
        state = SVI.load_state(os.path.join(os.environ[CHECKPOINT_DIR_ENV], name), template)
        placed = all(
            a.sharding == b.sharding
            for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(template), strict=True)
        )
        step = int(state.step)
        result = svi.run(None, CKPT_STEPS, x, y, progress_bar=False, init_state=state)
        out[name] = {**_svi_result(result, state), "placed": placed, "step": step}
    return out


def task_checkpoint_reference(num_devices: int) -> dict:
    """The uninterrupted run: ``2 * CKPT_STEPS`` steps."""
    import jax

    from jppl import parallel

    svi = checkpoint_svi(parallel.make_mesh(sample=num_devices), shard_state=True)
    x, y = wide_dataset()
    result = svi.run(jax.random.key(5), 2 * CKPT_STEPS, x, y, progress_bar=False)
    return _svi_result(result, result.state)


TASKS = {
    "logdensity": task_logdensity,
    "svi": task_svi,
    "nuts": task_nuts,
    "checkpoint_save": task_checkpoint_save,
    "checkpoint_restore": task_checkpoint_restore,
}
"""Task name -> ``fn(num_devices) -> JSON-able dict``."""


def main(argv: list[str]) -> None:
    process_id, num_processes, port = int(argv[1]), int(argv[2]), int(argv[3])
    tasks = argv[4].split(",")
    import jax

    jax.config.update("jax_num_cpu_devices", 2)  # before anything starts the backend
    from jppl import parallel

    parallel.initialize(
        f"127.0.0.1:{port}",
        num_processes,
        process_id,
        initialization_timeout=30,
        heartbeat_timeout_seconds=10,
    )
    results = {"process_index": parallel.process_index(), "devices": jax.device_count()}
    for name in tasks:
        results[name] = TASKS[name](jax.device_count())
    print("RESULT " + json.dumps(results), flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv)
