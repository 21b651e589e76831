# %% [markdown]
# # Data-parallel NUTS: a large logistic regression split over devices
#
# When the data are large, most of NUTS's time goes into the log density and its gradient,
# evaluated once per leapfrog step over every observation. jppl can split the observations of
# a plate across devices: each device computes the log-likelihood and gradient of its own
# rows, and a small collective combines the partial results. This is the multi-GPU NUTS
# of the Edward2 paper (logistic regression on covertype). In jppl it takes two changes to a
# single-device program:
#
# * the plate of the observations is marked `plate("N", n, shard="data")`;
# * `MCMC(..., mesh=mesh)` gets a device mesh whose `data` axis holds the devices.
#
# This notebook runs on a laptop-sized machine, so it uses **4 fake CPU devices**: XLA splits
# the host CPU into 4 devices, which must be set before JAX starts. On a real cluster the same
# code spans GPUs: `make_mesh(data=-1)` takes every device of every process (with
# `jppl.parallel.initialize()` first when there are several hosts). The fake devices share the
# same CPU cores, so they show that the results and the communication are right, not a
# speedup.

# %%
import os
import tempfile

DUMP_DIR = tempfile.mkdtemp(prefix="jppl_hlo_")
# Before JAX starts: 4 CPU devices, and a text dump of the MCMC programs after XLA's
# optimizations (read at the end of the notebook to list the collectives).
os.environ["XLA_FLAGS"] = (
    "--xla_force_host_platform_device_count=4 "
    f"--xla_dump_to={DUMP_DIR} --xla_dump_hlo_as_text --xla_dump_hlo_module_re=mcmc_chains"
)

import glob  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jppl  # noqa: E402
import jppl.distributions as dist  # noqa: E402
from jppl import parallel  # noqa: E402
from jppl.infer import MCMC, NUTS  # noqa: E402
from jppl.model.blocked import blocked_potential_energy  # noqa: E402

print(jax.devices())

# %% [markdown]
# ## The data and the model
#
# Covertype has 581,012 rows and 54 features. To keep this notebook under two minutes we
# draw a synthetic data set of the same width and 100,000 rows: standard normal features,
# weights drawn from N(0, 0.5²), an intercept of 0.3, and Bernoulli labels.
#
# The model is an ordinary Bayesian logistic regression. The only parallel-specific part is
# `shard="data"` on the plate; without a mesh it does nothing, so the same model runs on one
# device.

# %%
N, D = 100_000, 54
rng = np.random.default_rng(0)
X = rng.standard_normal((N, D), dtype=np.float32)
w_true = (0.5 * rng.standard_normal(D)).astype(np.float32)
b_true = np.float32(0.3)
y = (rng.random(N, dtype=np.float32) < 1 / (1 + np.exp(-(X @ w_true + b_true)))).astype(
    np.float32
)
print(f"X: {X.shape} ({X.nbytes / 2**20:.1f} MiB), y: {y.shape}, mean label {y.mean():.3f}")


def model(X, y):
    b = jppl.sample("b", dist.Normal(0.0, 1.0))
    w = jppl.sample("w", dist.Normal(0.0, 1.0).expand([X.shape[1]]).to_event(1))
    with jppl.plate("N", X.shape[0], shard="data"):
        jppl.sample("y", dist.BernoulliLogits(X @ w + b), obs=y)

# %% [markdown]
# ## A mesh and the data on it
#
# `make_mesh(data=4)` builds a mesh with jppl's four named axes (`chain`, `sample`, `data`,
# `model`); here only `data` is larger than 1. `shard_along` places the rows of `X` and `y`
# across the `data` axis: each device holds a quarter of them.

# %%
mesh = parallel.make_mesh(data=4)
X_sharded, y_sharded = parallel.shard_along((X, y), mesh, "data")
print(dict(mesh.shape))
for shard in X_sharded.addressable_shards:
    print(f"{shard.device}: rows {shard.index[0].start}..{shard.index[0].stop}, {shard.data.shape}")
assert all(s.data.shape == (N // 4, D) for s in X_sharded.addressable_shards)

# %% [markdown]
# ## NUTS with the mesh
#
# One chain, 100 warm-up and 100 kept draws; the only new argument is `mesh=mesh`. The
# model is traced under the mesh, so every evaluation of the log density inside NUTS (warm-up
# included) is split over the 4 devices. The results are replicated on every device, so they
# read like any other run. (One short chain is a demonstration of the mechanics: it is too
# short for the convergence diagnostics, which need several chains, so `warn=False`.)

# %%
mcmc = MCMC(
    NUTS(model), num_warmup=100, num_samples=100, warn=False, mesh=mesh
)
start = time.perf_counter()
mcmc.run(jax.random.key(0), X_sharded, y_sharded)
print(f"warm-up + sampling: {time.perf_counter() - start:.1f} s (compilation included)")
samples = mcmc.get_samples()
w_mean = np.asarray(samples["w"]).mean(0)
b_mean = float(np.asarray(samples["b"]).mean())
err = np.abs(w_mean - w_true).max()
print(f"divergences: {mcmc.num_divergent}")
print(f"intercept: posterior mean {b_mean:.3f} (true {b_true:.1f})")
print(f"weights: largest |posterior mean - true weight| = {err:.3f}")
assert mcmc.num_divergent == 0
assert err < 0.1 and abs(b_mean - b_true) < 0.1

# %% [markdown]
# With 100,000 observations the posterior is narrow and centred near the weights that
# generated the data: no posterior mean is more than 0.1 from its true value.
#
# ## The same draws on 2 devices, warm-up included
#
# `MCMC` cuts the rows into 8 fixed blocks (`data_blocks`, here 12,500 rows each): every
# device runs the same per-block program on its own blocks, and the blocks' log densities and
# gradients are added in block order. No rounding depends on how many devices there are, so
# the whole run (the adapted step size and mass matrix, every draw) is **bitwise** the same on
# a mesh with 2 data devices as on the 4 above.

# %%
print(mcmc.block_plan)
mesh2 = parallel.make_mesh(data=2, devices=jax.devices()[:2])
mcmc2 = MCMC(
    NUTS(model), num_warmup=100, num_samples=100, warn=False, mesh=mesh2
)
mcmc2.run(jax.random.key(0), *parallel.shard_along((X, y), mesh2, "data"))
for name in ("b", "w"):
    same = np.array_equal(mcmc2.get_samples()[name], samples[name])
    print(f"{name}: draws on 2 and 4 devices bitwise equal: {same}")
    assert same
assert np.array_equal(mcmc2.last_state.step_size, mcmc.last_state.step_size)
assert np.array_equal(
    mcmc2.last_state.inverse_mass_matrix, mcmc.last_state.inverse_mass_matrix
)

# %% [markdown]
# ## The same draws on one device
#
# One device with a one-device mesh runs the same 8 blocks one after the other, so it gives
# the same bits too. We continue the adapted chain for 20 draws twice from the same state:
# once on the 4-device mesh, once on a single device (same key, same adapted step size and
# mass matrix). (Without any mesh, jppl sums the likelihood in one pass: a different order, so
# the draws would agree only up to float32 rounding, amplified along the trajectories.)

# %%
state = mcmc.last_state
mcmc.post_warmup_state = state
mcmc.num_samples = 20
mcmc.run(None, X_sharded, y_sharded)
on_mesh = np.asarray(mcmc.get_samples()["w"])

mesh1 = parallel.make_mesh(data=1, devices=jax.devices()[:1])
one_device = MCMC(
    NUTS(model), num_warmup=0, num_samples=20, warn=False, mesh=mesh1
)
one_device.post_warmup_state = state
one_device.run(None, *parallel.shard_along((X, y), mesh1, "data"))
single = np.asarray(one_device.get_samples()["w"])
print(f"draws on 4 devices and on 1 device bitwise equal: {np.array_equal(on_mesh, single)}")
assert np.array_equal(on_mesh, single)

# %% [markdown]
# ## What a leapfrog step costs
#
# A NUTS transition is a sequence of leapfrog steps, each one value-and-gradient of the log
# density plus a few vector operations on the 55 parameters. With a large data set the
# gradient should dominate, so the time per leapfrog step should be close to the time of one
# jitted `value_and_grad` of the same data-parallel potential (the blocked one that `MCMC`
# uses, `jppl.model.blocked`). We time the sampling of the
# continued chain (already compiled) and divide by its number of leapfrog steps. For the raw
# gradient we time a compiled loop of as many `value_and_grad` evaluations on the same mesh
# (each depending on the last, so none can be skipped), which takes about as long. The two
# measurements alternate, and the best of 5 of each limits the noise of a shared machine.

# %%
def sample_again():
    mcmc.post_warmup_state = state
    mcmc.run(None, X_sharded, y_sharded)


sample_again()  # compiled already: warm the caches
leapfrogs = int(np.asarray(mcmc.get_extra_fields()["num_steps"]).sum())


def potential_and_grad(z, X, y):
    with parallel.use_mesh(mesh):
        return jax.value_and_grad(
            lambda z: blocked_potential_energy(model, (X, y), {}, z, mcmc.block_plan)
        )(z)


@jax.jit
def many_gradients(z, X, y):
    def body(i, carry):
        z, total = carry
        value, grad = potential_and_grad(z, X, y)
        z = jax.tree.map(lambda a, g: a - 1e-9 * g, z, grad)
        return z, total + value

    return jax.lax.fori_loop(0, leapfrogs, body, (z, jnp.float32(0.0)))


z = {"b": jnp.float32(b_true), "w": jnp.asarray(w_true)}
jax.block_until_ready(many_gradients(z, X_sharded, y_sharded))
sampling_s, gradients_s = [], []
for _ in range(5):
    start = time.perf_counter()
    sample_again()
    sampling_s.append(time.perf_counter() - start)
    start = time.perf_counter()
    jax.block_until_ready(many_gradients(z, X_sharded, y_sharded))
    gradients_s.append(time.perf_counter() - start)

per_leapfrog = min(sampling_s) / leapfrogs
per_gradient = min(gradients_s) / leapfrogs
ratio = per_leapfrog / per_gradient
print(f"{leapfrogs} leapfrog steps: {min(sampling_s) * 1e3:.0f} ms")
print(f"{leapfrogs} value_and_grad: {min(gradients_s) * 1e3:.0f} ms")
print(f"per leapfrog step: {per_leapfrog * 1e3:.2f} ms")
print(f"per value_and_grad: {per_gradient * 1e3:.2f} ms")
print(f"per leapfrog / value_and_grad: {ratio:.2f}x")
assert ratio < 2.0

# %% [markdown]
# A leapfrog step costs about one value-and-gradient (the ratio above; the check allows up to
# 2x for the noise of a shared machine): the sampler adds little on top of the likelihood,
# whose cost is what the data axis splits. On this machine the fake devices share the same
# cores, so these absolute times do not shrink with more devices; on GPUs each device reads
# only its own rows.
#
# ## What crosses devices
#
# The first cell asked XLA to dump the MCMC programs after optimization. `parallel.collectives`
# lists their cross-device operations. A data-parallel log density must combine the partial
# sums and never gather the data. With data blocks, each evaluation **all-gathers** the 8
# blocks' values (8 floats) and gradients (8 × 55 floats), which every device then adds in
# block order; the 100,000 × 54 data never move.

# %%
dumps = sorted(glob.glob(os.path.join(DUMP_DIR, "*jit_mcmc_chains*after_optimizations.txt")))
print(f"{len(dumps)} compiled MCMC programs (the runs above on 4, 2 and 1 devices)")
for path in dumps:
    with open(path) as f:
        text = f.read()
    ops = parallel.collectives(text)
    print(os.path.basename(path).split(".")[0], parallel.summarize_collectives(text))
    for c in ops:
        print(f"    {c.op}: {', '.join(c.shapes)} ({c.bytes} bytes)")
    assert {c.op for c in ops} == {"all-gather"}
    assert all(c.bytes <= 8 * (D + 1) * 4 for c in ops)

# %% [markdown]
# Each program sends only the blocks' values and gradients (at most 8 × 55 floats = 1,760
# bytes per evaluation). With `MCMC(..., data_blocks=0)` XLA instead all-reduces one value and
# one 55-float gradient (fewer bytes, but the sums' last bits then depend on the device
# count).
#
# ## More devices, more chains, more hosts
#
# * **Chains and data together**: `make_mesh(chain=2, data=4)` on 8 devices runs 2 chains
#   (or any multiple of 2) side by side, each with its log density split over 4 devices:
#   `MCMC(NUTS(model), ..., num_chains=2, mesh=mesh)`. The chains never communicate; only the
#   data shards of one chain do.
# * **Several hosts**: call `jppl.parallel.initialize()` first in every process, build the mesh
#   over `jax.devices()` (every device of every process), let each process load only its own
#   rows with `parallel.process_local_array(rows, mesh, "data")`, and run the same code. The
#   samples are replicated, so every process can read them.
# * **Invariance**: for a fixed key, the draws with warm-up adaptation are bitwise the same on
#   1, 2, 4 and 8 data devices and `chain × data` meshes (`tests/test_parallel_mcmc.py`), and
#   with 2 processes × 2 devices (`tests/test_multihost.py`). On a `chain`-only mesh they are
#   bitwise those of the same chains without a mesh.
