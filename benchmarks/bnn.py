"""Sampling parallelism for Bayesian neural networks: one SVI step against S and D.

Run from the repository root (it starts 8 fake CPU devices unless ``XLA_FLAGS`` already asks
for a device count)::

    .venv/bin/python -m benchmarks.bnn            # full run
    .venv/bin/python -m benchmarks.bnn --quick    # smoke run (small grid, 1 training seed)
    .venv/bin/python -m benchmarks.bnn --replot   # rewrite the .md / .png from the .json

Workload: a mean-field Gaussian BNN (:class:`jppl.nn.BayesianModule` around an ``nnx`` MLP
64 -> 100 (ReLU) -> 10, ``Normal(0, 1)`` prior) on ``sklearn.datasets.load_digits`` (1797
images scaled to [0, 1], padded to 1800 rows with the 3 padded rows masked out of the
likelihood, so every data split is even). One *step* is the value and gradient of the
S-particle ELBO (``TraceMeanField_ELBO``: analytic KL) plus an Adam update on a batch of 256
images, for S in {1, 2, 4, 8, 16} and D in {1, 2, 4, 8} devices, in five modes:

* ``loop``: a Python loop over the S particles; each particle's value and gradient is one
  jitted call (the running sum is carried through the calls), then one jitted Adam update on
  the mean (the naive baseline; D = 1);
* ``vmap``: ``jax.jit(SVI.update)`` without a mesh: particles vmapped on one device (jppl's
  default; it is also the D = 1 point of the three sharded modes);
* ``sample``: ``SVI(..., mesh=make_mesh(sample=D))``: particles split over devices (S % D = 0);
* ``data``: ``make_mesh(data=D)``, images split over devices (plate ``shard="data"``);
* ``hybrid``: ``make_mesh(sample=D/2, data=2)`` (D >= 4).

Per step: median wall time of interleaved repeats (all configurations of one S take turns),
and from XLA's compiled program (lowered from ``ShapeDtypeStruct`` s that carry the
shardings): per-device memory, FLOPs and the collectives (``jppl.parallel.collectives``).
Memory is ``argument + output + temp - alias`` bytes: XLA:CPU's ``peak_memory_in_bytes``
equals argument + output bytes and leaves the temporaries (the activations) out, so it is
recorded (``xla_peak_bytes``) but not used. Fake CPU devices share the machine's cores
(``/work/shared/notes/jax-multidevice-on-cpu.md`` sections 4-5), so wall times on several
fake devices are information, not speed-ups; per-device memory and FLOPs are what a real
D-device machine would get. Consistency: every mode's first-step loss and updated parameters
are compared with ``vmap`` at the same S (particle ``i`` uses the same key everywhere).

Weak scaling (S = 2 D, ``sample`` and ``hybrid``): efficiency ``t(D=1, S=2) / t(D, S=2D)``
from wall time (CPU caveat above) and ``flops(D=1, S=2) / flops_per_device(D, S=2D)``
(independent of the machine's load).

Full batch (not with ``--quick``): loop vs vmap at S = 8 again with all 1800 images per step,
and the compiled memory / FLOPs at S = 16 on all images (no timing) for the MLP above and a
bigger one (64 -> 1024 -> 1024 -> 10).

Training (``jppl.nn.Trainer``): epochs until the posterior predictive (16 weight draws)
reaches 95% test accuracy (stratified 75/25 split), S = 16 particles, minibatches of 128, on
``make_mesh(sample=4)``, with and without *independent per-group augmentation* (4 sample
groups of 4 particles, each group sees its own random 1-pixel shifts and pixel noise of the
minibatch).

Targets (issue 6): ``vmap`` at least 3x faster than ``loop`` at S = 8; per-device memory of
``sample`` at D = 8 at most 1/6 of D = 1 for S = 16. Printed as PASS / MISS for each regime.

Results: ``benchmarks/results/bnn_cpu.json``, ``bnn_cpu.md`` and ``bnn_cpu.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run by path: import the package from the root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

if __name__ == "__main__":
    from benchmarks.workers import force_host_devices

    force_host_devices(8)

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax

import jppl
import jppl.distributions as dist
from benchmarks.problems import digits
from benchmarks.report import (
    RESULTS_DIR,
    fmt,
    machine_info,
    markdown_table,
    ratio,
    traffic,
    write_markdown,
    write_results,
)
from benchmarks.timing import analyse_compiled, interleaved_wall_cpu, stats, time_call
from jppl import parallel
from jppl.nn import BayesianModule, normal_prior
from jppl.nn.trainer import Trainer
from jppl.vi import SVI, TraceMeanField_ELBO
from jppl.vi.svi import SVIState, copy_state

MODES = ("loop", "vmap", "sample", "data", "hybrid")
SHARDED = ("sample", "data", "hybrid")
NUM_CLASSES = 10
LEARNING_RATE = 1e-3
PAD_TO = 8  # rows padded to a multiple of the largest data axis
LOOP_SPEEDUP_TARGET = 3.0  # vmap vs loop at S = 8
MEMORY_TARGET = 1 / 6  # peak per device at D = 8 vs D = 1, S = 16
TARGET_ACCURACY = 0.95
BATCH = 256  # images per step in the step grid (a training minibatch)
FULL_BATCH = 1800  # all 1797 digits, padded


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


class MLP(nnx.Module):
    """``x (N, in_features) -> logits (N, num_classes)`` with ReLU hidden layers."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int, rngs):
        sizes = (in_features, *hidden)
        self.hidden = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )
        self.out = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.hidden:
            x = jax.nn.relu(layer(x))
        return self.out(x)


def make_bnn(
    hidden: Sequence[int], kl_weight: float = 1.0, seed: int = 0
) -> tuple[BayesianModule, Callable, Callable]:
    """``(bnn, model, guide)``; model and guide take ``(x (N, 64), y (N,), valid (N,) bool)``.

    The image plate is declared ``shard="data"`` (a no-op without a mesh) and the likelihood
    of rows with ``valid == False`` (padding) is masked out.
    """
    bnn = BayesianModule(
        "mlp",
        MLP(64, tuple(hidden), NUM_CLASSES, nnx.Rngs(seed)),
        prior=normal_prior(1.0),
        init_scale=1e-2,
        kl_weight=kl_weight,
    )

    def model(x: jax.Array, y: jax.Array, valid: jax.Array) -> None:
        logits = bnn.model()(x)
        with jppl.plate("data", x.shape[0], shard="data"), jppl.handlers.mask(mask=valid):
            jppl.sample("y", dist.CategoricalLogits(logits), obs=y)

    def guide(x: jax.Array, y: jax.Array, valid: jax.Array) -> None:
        bnn.guide()

    return bnn, model, guide


def padded_digits(batch: int = FULL_BATCH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``batch`` rows of the digits padded to 1800 rows (3 padded, masked).

    Returns:
        ``x (batch, 64)`` in [0, 1], ``y (batch,)`` int32, ``valid (batch,)`` bool.
    """
    (x, y), valid = parallel.pad_to_multiple(digits(), PAD_TO)
    if not 0 < batch <= len(y) or batch % PAD_TO:
        raise ValueError(f"padded_digits: batch must be a multiple of {PAD_TO} in (0, {len(y)}]")
    return x[:batch], y[:batch], valid[:batch]


# ---------------------------------------------------------------------------------------------
# Configurations and compiled steps
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One point of the grid: ``mode`` with ``S`` particles on a ``sample x data`` mesh."""

    mode: str
    S: int
    sample: int = 1
    data: int = 1

    @property
    def D(self) -> int:
        return self.sample * self.data

    @property
    def name(self) -> str:
        return f"{self.mode} S={self.S} D={self.D}"


def grid(s_values: Sequence[int], d_values: Sequence[int]) -> list[Config]:
    """Every valid configuration (``sample`` needs S % D == 0, ``hybrid`` D >= 4)."""
    configs = []
    for s in s_values:
        configs += [Config("loop", s), Config("vmap", s)]
        for d in d_values:
            if d == 1:
                continue
            if s % d == 0:
                configs.append(Config("sample", s, sample=d))
            configs.append(Config("data", s, data=d))
            if d >= 4 and d % 2 == 0 and s % (d // 2) == 0:
                configs.append(Config("hybrid", s, sample=d // 2, data=2))
    return configs


@dataclass
class Prepared:
    """A configuration ready to run: ``step(state) -> state`` and its compiled analysis."""

    config: Config
    step: Callable[[SVIState], SVIState]
    first: Callable[[SVIState], tuple[SVIState, jax.Array]]
    state: SVIState
    analysis: dict[str, Any]


def _spec(tree: Any) -> Any:
    """``ShapeDtypeStruct`` s (with the arrays' shardings) for a pytree of arrays."""
    return jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), tree
    )


def _analyse(compiled) -> dict[str, Any]:
    """:func:`benchmarks.timing.analyse_compiled` plus ``memory_bytes``, the per-device memory
    of the program.

    ``memory_bytes = argument + output + temp - alias`` bytes: everything the executable holds
    while it runs (an upper bound of the live bytes). XLA:CPU's ``peak_memory_in_bytes``
    (kept as ``xla_peak_bytes``) equals argument + output bytes here, without the temporaries,
    so it does not see the activations that sample parallelism splits.
    """
    out = analyse_compiled(compiled)
    mem = compiled.memory_analysis()
    out["alias_bytes"] = int(mem.alias_size_in_bytes)
    out["xla_peak_bytes"] = int(mem.peak_memory_in_bytes)
    out["memory_bytes"] = (
        out["argument_bytes"] + out["output_bytes"] + out["temp_bytes"] - out["alias_bytes"]
    )
    return out


def prepare_sharded(
    config: Config, model, guide, host_data, seed: int = 0, shard_state: bool = True
) -> Prepared:
    """``jax.jit(SVI.update, donate_argnums=0)`` for ``vmap`` (no mesh) or a ``sample x data``
    mesh, as ``SVI.run`` / ``Trainer.fit`` run a step: the state's buffers are donated to the
    new state and, on a mesh, the params and Adam state are split over the devices
    (``SVI(shard_state=True)``; ``shard_state=False`` replicates them)."""
    mesh = None
    if config.mode != "vmap":
        mesh = parallel.make_mesh(sample=config.sample, data=config.data)
    svi = SVI(
        model,
        guide,
        optax.adam(LEARNING_RATE),
        TraceMeanField_ELBO(config.S),
        mesh=mesh,
        shard_state=shard_state and mesh is not None,
    )
    if mesh is None:
        data = jax.device_put(host_data)
    elif config.data > 1:
        data = parallel.shard_along(host_data, mesh, "data")
    else:
        data = parallel.replicate(host_data, mesh)
    state = svi.init(jax.random.key(seed), *data)
    compiled = jax.jit(svi.update, donate_argnums=0).lower(*_spec((state, *data))).compile()
    return Prepared(
        config,
        step=lambda s: compiled(s, *data)[0],  # donates s
        first=lambda s: compiled(copy_state(s), *data),
        state=state,
        analysis=_analyse(compiled),
    )


def prepare_loop(config: Config, model, guide, host_data, seed: int = 0) -> Prepared:
    """The naive baseline: S jitted single-particle value-and-grad calls, then one update."""
    s = config.S
    svi = SVI(model, guide, optax.adam(LEARNING_RATE), TraceMeanField_ELBO(1))
    elbo = TraceMeanField_ELBO(1)
    data = jax.device_put(host_data)
    state = svi.init(jax.random.key(seed), *data)

    def particle(params, loss_sum, grad_sum, rng_key, step, i, x, y, valid):
        # Particle i of step `step` uses the key SVI's S-particle ELBO gives it.
        key = jax.random.fold_in(jax.random.fold_in(rng_key, step), i)

        def neg_elbo(p):
            return -elbo.particle_loss(key, svi.constrain(p), model, guide, (x, y, valid), {})[0]

        loss, grads = jax.value_and_grad(neg_elbo)(params)
        return loss_sum + loss, jax.tree_util.tree_map(jnp.add, grad_sum, grads)

    def apply(state, loss_sum, grad_sum):
        grads = jax.tree_util.tree_map(lambda g: g / s, grad_sum)
        updates, opt = svi.optimizer.update(grads, state.optim_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return SVIState(params, opt, state.rng_key, state.step + 1), loss_sum / s

    zero_loss = jnp.zeros((), jnp.float32)
    zero_grads = jax.tree_util.tree_map(jnp.zeros_like, state.params)
    index = jnp.asarray(0, jnp.int32)
    particle_c = (
        jax.jit(particle)
        .lower(
            *_spec((state.params, zero_loss, zero_grads, state.rng_key, state.step, index, *data))
        )
        .compile()
    )
    apply_c = jax.jit(apply).lower(*_spec((state, zero_loss, zero_grads))).compile()
    indices = [jnp.asarray(i, jnp.int32) for i in range(s)]

    def first(st: SVIState) -> tuple[SVIState, jax.Array]:
        loss, grads = zero_loss, zero_grads
        for i in indices:
            loss, grads = particle_c(st.params, loss, grads, st.rng_key, st.step, i, *data)
        return apply_c(st, loss, grads)

    a_particle, a_apply = _analyse(particle_c), _analyse(apply_c)
    analysis = {
        **a_particle,
        "flops": s * a_particle["flops"] + a_apply["flops"],
        "memory_bytes": max(a_particle["memory_bytes"], a_apply["memory_bytes"]),
        "temp_bytes": max(a_particle["temp_bytes"], a_apply["temp_bytes"]),
        "note": "one particle's program (S calls per step) and the update program",
    }
    return Prepared(config, lambda st: first(st)[0], first, state, analysis)


def prepare(config: Config, model, guide, host_data, seed: int = 0) -> Prepared:
    if config.mode == "loop":
        return prepare_loop(config, model, guide, host_data, seed)
    return prepare_sharded(config, model, guide, host_data, seed)


def _to_host(tree: Any) -> Any:
    return jax.tree_util.tree_map(np.asarray, tree)


def max_rel_diff(a: Any, b: Any) -> float:
    """``max |a - b| / (max |b| + 1e-12)`` over the leaves of two pytrees of host arrays."""
    num = max(float(np.max(np.abs(x - y))) for x, y in zip(*map(_leaves, (a, b)), strict=True))
    den = max(float(np.max(np.abs(y))) for y in _leaves(b))
    return num / (den + 1e-12)


def _leaves(tree: Any) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def timed_steps(prepared: Prepared, inner: int) -> Callable[[], SVIState]:
    """A callable that runs ``inner`` chained steps from (a copy of: steps donate their input
    state) the initial state."""

    def run() -> SVIState:
        state = copy_state(prepared.state)
        for _ in range(inner):
            state = prepared.step(state)
        return state

    return run


def bench_steps(
    hidden: Sequence[int],
    s_values: Sequence[int],
    d_values: Sequence[int],
    repeats: int,
    batch: int = BATCH,
    min_timed_s: float = 0.05,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Compile, analyse, check and time every configuration of the grid.

    Returns:
        one row per configuration: ``mode, S, D, sample, data``, ``step_s`` (median seconds
        per step), ``step_iqr_s``, ``repeats``, ``inner`` (steps per timed call), the compiled
        analysis (``memory_bytes``, ``temp_bytes``, ``argument_bytes``, ``flops`` per device,
        ``collective_summary``), ``loss`` (first step) and ``loss_rel_diff`` /
        ``params_rel_diff`` against ``vmap`` at the same S.
    """
    _, model, guide = make_bnn(hidden)
    host = padded_digits(batch)
    rows = []
    for s in s_values:
        configs = [c for c in grid([s], d_values)]
        prepared = []
        for c in configs:
            start = time.perf_counter()
            prepared.append(prepare(c, model, guide, host))
            log(f"  compiled {c.name} in {time.perf_counter() - start:.1f} s")
        firsts = {}
        for p in prepared:
            new_state, loss = p.first(p.state)
            firsts[p.config] = (_to_host(new_state.params), float(loss))
        reference = firsts[Config("vmap", s)]
        # Steps per timed call: enough that one call lasts about `min_timed_s`.
        inner = {}
        for p in prepared:
            seconds, _ = time_call(timed_steps(p, 1))
            seconds = min(seconds, time_call(timed_steps(p, 1))[0])
            inner[p.config] = max(1, min(50, math.ceil(min_timed_s / max(seconds, 1e-6))))
        times = interleaved_wall_cpu(
            {p.config.name: timed_steps(p, inner[p.config]) for p in prepared}, repeats
        )
        for p in prepared:
            c = p.config
            st = stats([t / inner[c] for t in times[c.name][0]])
            cpu = stats([t / inner[c] for t in times[c.name][1]])
            params, loss = firsts[c]
            ref_params, ref_loss = reference
            row = {
                "mode": c.mode,
                "S": c.S,
                "D": c.D,
                "sample": c.sample,
                "data": c.data,
                "step_s": st["median"],
                "step_iqr_s": st["iqr"],
                "step_cpu_s": cpu["median"],
                "repeats": st["n"],
                "inner": inner[c],
                **p.analysis,
                "loss": loss,
                "loss_rel_diff": abs(loss - ref_loss) / abs(ref_loss),
                "params_rel_diff": max_rel_diff(params, ref_params),
            }
            rows.append(row)
            log(
                f"{c.name:22s} {1e3 * row['step_s']:8.2f} ms/step  mem "
                f"{row['memory_bytes'] / 2**20:7.2f} MiB  {row['flops'] / 1e9:7.4f} GFLOP/dev  "
                f"loss diff {row['loss_rel_diff']:.1e}  params diff {row['params_rel_diff']:.1e}"
            )
    return rows


def memory_only(
    hidden: Sequence[int],
    s: int,
    d_values: Sequence[int],
    batch: int = FULL_BATCH,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Compiled per-device memory / FLOPs (no timing) of ``vmap`` and the sharded modes."""
    _, model, guide = make_bnn(hidden)
    host = padded_digits(batch)
    rows = []
    for c in grid([s], d_values):
        if c.mode == "loop":
            continue
        p = prepare_sharded(c, model, guide, host)
        rows.append({"mode": c.mode, "S": s, "D": c.D, "sample": c.sample, "data": c.data})
        rows[-1].update(p.analysis)
        log(
            f"  [memory-only {hidden}] {c.name:22s} mem {p.analysis['memory_bytes'] / 2**20:8.2f} "
            f"MiB  temp {p.analysis['temp_bytes'] / 2**20:8.2f} MiB"
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Summaries of the grid
# ---------------------------------------------------------------------------------------------


def find(rows: list[dict[str, Any]], mode: str, s: int, d: int) -> dict[str, Any] | None:
    """The row of ``mode`` at ``(S, D)``; D = 1 of a sharded mode is the ``vmap`` row."""
    if d == 1 and mode in SHARDED:
        mode = "vmap"
    for row in rows:
        if row["mode"] == mode and row["S"] == s and row["D"] == d:
            return row
    return None


def weak_scaling(
    rows: list[dict[str, Any]], d_values: Sequence[int], mode: str = "sample"
) -> list[dict[str, Any]]:
    """Efficiency with S = 2 D: ``t(D=1, S=2) / t(D, S=2D)`` and the same from FLOPs."""
    base = find(rows, "vmap", 2, 1)
    out = []
    if base is None:
        return out
    for d in d_values:
        row = find(rows, mode, 2 * d, d)
        if row is None:
            continue
        out.append(
            {
                "mode": mode,
                "D": d,
                "S": 2 * d,
                "step_s": row["step_s"],
                "time_efficiency": base["step_s"] / row["step_s"],
                "flops_per_device": row["flops"],
                "flops_efficiency": base["flops"] / row["flops"],
            }
        )
    return out


def targets(
    rows: list[dict[str, Any]], s_loop: int = 8, s_mem: int = 16, label: str = ""
) -> dict[str, Any]:
    """The two issue targets, from the points of ``rows`` that exist.

    ``vmap_vs_loop{label}``: ``t(loop) / t(vmap)`` at ``S = s_loop`` (target >= 3);
    ``memory_{mode}{label}``: per-device ``memory_bytes`` of ``mode`` at the largest D over
    ``vmap`` (D = 1), at ``S = s_mem`` (target <= 1/6).
    """
    result: dict[str, Any] = {}
    loop, vmap = find(rows, "loop", s_loop, 1), find(rows, "vmap", s_loop, 1)
    if loop and vmap:
        speedup = ratio(loop["step_s"], vmap["step_s"])
        result[f"vmap_vs_loop{label}"] = {
            "S": s_loop,
            "loop_s": loop["step_s"],
            "vmap_s": vmap["step_s"],
            "speedup": speedup,
            "speedup_cpu": ratio(loop.get("step_cpu_s"), vmap.get("step_cpu_s")),
            "target": LOOP_SPEEDUP_TARGET,
            "pass": bool(speedup >= LOOP_SPEEDUP_TARGET),
        }
    one = find(rows, "vmap", s_mem, 1)
    d_max = max(r["D"] for r in rows)
    for mode in SHARDED:
        row = find(rows, mode, s_mem, d_max)
        if one is None or row is None or d_max == 1:
            continue
        fraction = ratio(row["memory_bytes"], one["memory_bytes"])
        result[f"memory_{mode}{label}"] = {
            "S": s_mem,
            "D": d_max,
            "memory_D1_bytes": one["memory_bytes"],
            "memory_bytes": row["memory_bytes"],
            "ratio": fraction,
            "target": MEMORY_TARGET,
            "pass": bool(fraction <= MEMORY_TARGET),
        }
    return result


# ---------------------------------------------------------------------------------------------
# Epochs to a target accuracy, with and without independent per-group augmentation
# ---------------------------------------------------------------------------------------------


def augment(key: jax.Array, x: jax.Array, noise: float = 0.05) -> jax.Array:
    """Random shifts by -1, 0 or +1 pixel (each axis, zero fill) and Gaussian pixel noise.

    Args:
        key: PRNG key.
        x: ``(B, 64)`` 8x8 images with pixels in [0, 1].
        noise: standard deviation of the added pixel noise.

    Returns:
        ``(B, 64)`` augmented images.
    """
    b = x.shape[0]
    k_shift, k_noise = jax.random.split(key)
    offsets = jax.random.randint(k_shift, (b, 2), 0, 3)
    padded = jnp.pad(x.reshape(b, 8, 8), ((0, 0), (1, 1), (1, 1)))
    shifted = jax.vmap(lambda im, o: lax.dynamic_slice(im, (o[0], o[1]), (8, 8)))(padded, offsets)
    return shifted.reshape(b, 64) + noise * jax.random.normal(k_noise, (b, 64), x.dtype)


def train_split(seed: int = 0) -> tuple[np.ndarray, ...]:
    """Stratified 75/25 split of the digits (pixels in [0, 1]): ``x_tr, x_te, y_tr, y_te``."""
    from sklearn.model_selection import train_test_split

    x, y = digits()
    return tuple(train_test_split(x, y, test_size=0.25, stratify=y, random_state=seed))


def make_trainer(
    hidden: Sequence[int],
    num_train: int,
    batch_size: int,
    num_particles: int,
    groups: int,
    augmented: bool,
    lr: float = 1e-2,
    mesh_sample: int = 1,
    seed: int = 0,
) -> tuple[BayesianModule, Trainer]:
    """``(bnn, trainer)``: :class:`jppl.nn.Trainer` on the BNN of :func:`make_bnn`.

    With ``augmented``, the S particles form ``groups`` sample groups and group ``g`` sees
    ``augment(key_g, x)`` of the minibatch (labels and mask unchanged); without it there is one
    group and no augmentation. The trainer scales the likelihood by ``N / B`` (the loss is the
    full-data negative ELBO, KL weight 1). ``mesh_sample > 1``: particles (and groups) are
    split over a ``sample`` mesh axis of that size.
    """
    bnn, model, guide = make_bnn(hidden, seed=seed)

    def augment_batch(key: jax.Array, args: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        x, *rest = args
        return (augment(key, x), *rest)

    trainer = Trainer(
        model,
        guide,
        optax.adam(lr),
        num_data=num_train,
        batch_size=batch_size,
        num_particles=num_particles,
        num_groups=groups if augmented else 1,
        augment=augment_batch if augmented else None,
        mesh=parallel.make_mesh(sample=mesh_sample) if mesh_sample > 1 else None,
    )
    return bnn, trainer


def epochs_to_target(
    bnn: BayesianModule,
    trainer: Trainer,
    data: tuple[jax.Array, ...],
    seed: int,
    max_epochs: int,
    target: float = TARGET_ACCURACY,
    num_eval_samples: int = 16,
) -> dict[str, Any]:
    """Train one epoch at a time until the test accuracy reaches ``target`` (or ``max_epochs``).

    Args:
        bnn, trainer: from :func:`make_trainer`.
        data: ``(x_train, x_test, y_train, y_test)``.
        seed: seeds the trainer state (particles, minibatch order, augmentation draws).

    Returns:
        ``epochs_to_target`` (``None`` if not reached) and the per-epoch test ``accuracy``
        (posterior predictive mean over ``num_eval_samples`` weight draws) and mean training
        ``loss`` (full-data negative ELBO estimate).
    """
    x_tr, x_te, y_tr, y_te = data
    train = (x_tr, y_tr, jnp.ones(y_tr.shape, bool))
    state = trainer.init(jax.random.key(seed), train)
    accs, losses, reached = [], [], None
    start = time.perf_counter()
    for e in range(1, max_epochs + 1):
        result = trainer.fit(
            state,
            train,
            1,
            val_data=(x_te, y_te),
            predict=bnn.predict,
            num_eval_samples=num_eval_samples,
            progress_bar=False,
        )
        state = result.state
        accs.append(result.history[-1].val_accuracy)
        losses.append(result.history[-1].loss)
        if accs[-1] >= target:
            reached = e
            break
    return {
        "seed": seed,
        "epochs_to_target": reached,
        "accuracy": accs,
        "loss": losses,
        "seconds": time.perf_counter() - start,
    }


def bench_training(
    hidden: Sequence[int],
    seeds: Sequence[int],
    max_epochs: int,
    batch_size: int = 128,
    num_particles: int = 16,
    groups: int = 4,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Epochs to :data:`TARGET_ACCURACY` with and without per-group augmentation, per seed."""
    data = tuple(map(jnp.asarray, train_split()))
    runs = []
    for augmented in (False, True):
        bnn, trainer = make_trainer(
            hidden, len(data[2]), batch_size, num_particles, groups, augmented, mesh_sample=groups
        )
        for seed in seeds:
            run = {"augmented": augmented, **epochs_to_target(bnn, trainer, data, seed, max_epochs)}
            runs.append(run)
            log(
                f"  training seed {seed} augmented={augmented}: epochs to "
                f"{TARGET_ACCURACY:.0%} = {run['epochs_to_target']} (last acc "
                f"{run['accuracy'][-1]:.4f}, {run['seconds']:.1f} s with compilation)"
            )
    summary = {}
    for augmented in (False, True):
        epochs = [r["epochs_to_target"] for r in runs if r["augmented"] == augmented]
        reached = [e for e in epochs if e is not None]
        summary["per_group_augmentation" if augmented else "no_augmentation"] = {
            "epochs": epochs,
            "median_epochs": statistics.median(reached) if len(reached) == len(epochs) else None,
            "reached": f"{len(reached)}/{len(epochs)}",
        }
    return {
        "setup": {
            "hidden": list(hidden),
            "num_particles": num_particles,
            "groups": groups,
            "batch_size": batch_size,
            "likelihood_scale": "num_train / batch_size (Trainer), KL weight 1",
            "mesh": f"make_mesh(sample={groups})",
            "target_accuracy": TARGET_ACCURACY,
            "max_epochs": max_epochs,
            "eval_samples": 16,
            "augmentation": "shift by -1/0/+1 px per axis (zero fill) + N(0, 0.05) pixel noise",
            "written_against": "jppl.nn.Trainer (TraceMeanField_ELBO, Adam 1e-2)",
        },
        "runs": runs,
        "summary": summary,
    }


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def markdown(results: dict[str, Any]) -> str:
    rows, s_values = results["steps"], results["setup"]["S"]
    names = sorted({(r["mode"], r["D"]) for r in rows}, key=lambda k: (MODES.index(k[0]), k[1]))

    def per_s(key: str) -> list[list[Any]]:
        return [
            [f"{mode} D={d}"]
            + [
                1e3 * r[key] if (r := find(rows, mode, s, d)) is not None else None
                for s in s_values
            ]
            for mode, d in names
        ]

    s_mem = max(s_values)
    mem_rows = []
    for mode, d in names:
        r = find(rows, mode, s_mem, d)
        if r is None:
            continue
        mem_rows.append(
            [
                f"{mode} D={d}",
                r["memory_bytes"] / 2**20,
                r["temp_bytes"] / 2**20,
                r["argument_bytes"] / 2**20,
                r["flops"] / 1e9,
                traffic(r),
            ]
        )
    weak = [
        [w["mode"], w["D"], w["S"], 1e3 * w["step_s"], w["time_efficiency"], w["flops_efficiency"]]
        for w in results["weak_scaling"]
    ]
    lines = [
        "# Sampling parallelism for a digits BNN on fake CPU devices",
        "",
        f"Generated by `benchmarks/bnn.py{' --quick' if results['setup']['quick'] else ''}` "
        f"({results['machine']['time']}, jax {results['machine']['jax']}, "
        f"{results['machine']['cpu_count']} CPUs, load average "
        f"{results['machine']['load_average']}). BNN MLP 64 -> "
        f"{' -> '.join(map(str, results['setup']['hidden']))} -> 10, steps on "
        f"{results['setup']['batch']} digits (full-batch figures: 1797 padded to 1800), "
        "TraceMeanField_ELBO + Adam. Fake devices share the same cores: wall times on D > 1 "
        "are information, not speed-ups. Memory and FLOPs are per device from XLA's compiled "
        "program; memory = argument + output + temp - alias bytes (XLA:CPU's "
        "`peak_memory_in_bytes` leaves out the temporaries). Steps run as `SVI.run` and "
        "`Trainer.fit` run them: the state is donated, and on a mesh the params and Adam "
        "state are split over the devices (`SVI(shard_state=True)`).",
        "",
        "## Targets",
        "",
    ]
    for name, t in results["targets"].items():
        verdict = "PASS" if t["pass"] else "MISS"
        if name.startswith("vmap_vs_loop"):
            lines.append(
                f"- **{verdict}** {name} at S={t['S']}: {t['speedup']:.2f}x "
                f"(loop {1e3 * t['loop_s']:.2f} ms, vmap {1e3 * t['vmap_s']:.2f} ms; "
                f"target >= {t['target']:g}x); from process CPU time: {fmt(t.get('speedup_cpu'))}x"
            )
        else:
            lines.append(
                f"- **{verdict}** {name} at S={t['S']}, D={t['D']}: "
                f"{t['memory_bytes'] / 2**20:.2f} / {t['memory_D1_bytes'] / 2**20:.2f} MiB = "
                f"{t['ratio']:.3f} of D=1 (target <= {t['target']:.3f})"
            )
    rep = results.get("replicated_state")
    if rep is not None:
        lines.append(
            f"- (information) `sample` at S={rep['S']}, D={rep['D']} with the state "
            f"replicated instead of split: {rep['memory_bytes'] / 2**20:.2f} MiB per device "
            f"(args {rep['argument_bytes'] / 2**20:.3f} MiB)"
        )
    lines += [
        "",
        "## Step time (ms, median of interleaved repeats)",
        "",
        markdown_table(["config"] + [f"S={s}" for s in s_values], per_s("step_s")),
        "",
        "## Process CPU time per step (ms, all threads; medians of the same calls)",
        "",
        markdown_table(["config"] + [f"S={s}" for s in s_values], per_s("step_cpu_s")),
        "",
        f"## Per device at S={s_mem} (compiled program)",
        "",
        markdown_table(
            ["config", "memory MiB", "temp MiB", "args MiB", "GFLOP", "collectives"], mem_rows
        ),
        "",
        "## Weak scaling, S = 2D (t(D=1,S=2)/t(D,S=2D); FLOPs: same from per-device FLOPs)",
        "",
        markdown_table(["mode", "D", "S", "ms/step", "time eff.", "FLOPs eff."], weak),
    ]
    for block in results.get("memory_only", []):
        block_rows = [
            [
                f"{r['mode']} D={r['D']}",
                r["memory_bytes"] / 2**20,
                r["temp_bytes"] / 2**20,
                r["argument_bytes"] / 2**20,
                r["flops"] / 1e9,
            ]
            for r in block["rows"]
        ]
        lines += [
            "",
            f"## Memory only: MLP {block['hidden']}, {block['batch']} images, S={block['S']} "
            "(per device, compiled, no timing)",
            "",
            markdown_table(["config", "memory MiB", "temp MiB", "args MiB", "GFLOP"], block_rows),
        ]
    training = results.get("training")
    if training:
        setup = training["setup"]
        lines += [
            "",
            f"## Epochs to {setup['target_accuracy']:.0%} test accuracy "
            f"(S={setup['num_particles']} in {setup['groups']} groups, B={setup['batch_size']}, "
            f"max {setup['max_epochs']} epochs; {setup['written_against']})",
            "",
            markdown_table(
                ["arm", "epochs per seed", "median", "reached"],
                [
                    [arm, str(v["epochs"]), v["median_epochs"], v["reached"]]
                    for arm, v in training["summary"].items()
                ],
            ),
        ]
    return "\n".join(lines)


def _int_ticks(ax, values: Sequence[int]) -> None:
    """Label a log-scaled x axis with the integers ``values`` only."""
    ax.set_xticks(list(values))
    ax.set_xticklabels([str(v) for v in values])
    ax.set_xticks([], minor=True)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, s_values = results["steps"], results["setup"]["S"]
    d_values = results["setup"]["D"]
    fig, axes = plt.subplots(1, 3 if results.get("training") else 2, figsize=(16, 4.5))
    ax = axes[0]
    for mode in MODES:
        for d in sorted({r["D"] for r in rows if r["mode"] == mode}):
            pts = [(r["S"], r["step_s"]) for r in rows if r["mode"] == mode and r["D"] == d]
            if pts:
                s, t = zip(*sorted(pts), strict=True)
                style = "-" if d in (1, max(d_values)) else ":"
                ax.plot(s, 1e3 * np.asarray(t), style, marker="o", label=f"{mode} D={d}")
    ax.set(xscale="log", yscale="log", xlabel="S (particles)", ylabel="ms / step")
    _int_ticks(ax, s_values)
    ax.set_title("step time (fake devices share 2 cores)")
    ax.legend(fontsize=6, ncol=2)
    ax = axes[1]
    s_mem = max(s_values)
    for mode in SHARDED:
        pts = [(d, r["memory_bytes"]) for d in d_values if (r := find(rows, mode, s_mem, d))]
        if pts:
            d, m = zip(*pts, strict=True)
            ax.plot(d, np.asarray(m) / 2**20, marker="o", label=mode)
    one = find(rows, "vmap", s_mem, 1)
    if one:
        d = np.asarray(d_values)
        ax.plot(d, one["memory_bytes"] / 2**20 / d, "k--", label="D=1 / D")
    ax.set(xscale="log", yscale="log", xlabel="D (devices)", ylabel="MiB per device")
    _int_ticks(ax, d_values)
    ax.set_title(f"per-device memory (args + out + temp), S={s_mem}")
    ax.legend(fontsize=7)
    if results.get("training"):
        ax = axes[2]
        for run in results["training"]["runs"]:
            label = f"{'per-group aug.' if run['augmented'] else 'no aug.'} seed {run['seed']}"
            ax.plot(
                range(1, len(run["accuracy"]) + 1),
                run["accuracy"],
                "-" if run["augmented"] else "--",
                marker=".",
                label=label,
            )
        ax.axhline(TARGET_ACCURACY, color="k", lw=0.5)
        ax.set(xlabel="epoch", ylabel="test accuracy", title="accuracy per epoch")
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(
    quick: bool,
    out_dir: Path = RESULTS_DIR,
    hidden: Sequence[int] = (100,),
    s_values: Sequence[int] | None = None,
    d_values: Sequence[int] | None = None,
    batch: int = BATCH,
    training: bool = True,
    full_batch: bool | None = None,
    big_hidden: Sequence[Sequence[int]] = ((1024, 1024),),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The whole benchmark; writes ``bnn_cpu.{json,md,png}`` into ``out_dir``.

    Args:
        quick: small grid (S in {2, 8, 16}), 3 repeats, one short training seed, and no
            full-batch part unless ``full_batch`` is given.
        out_dir: folder of the results.
        hidden: hidden layer sizes of the MLP.
        s_values, d_values: the grid (default S in {1, 2, 4, 8, 16}, D in {1, 2, 4, 8}).
        batch: images per step in the grid.
        training: run the epochs-to-target part.
        full_batch: also time loop vs vmap at S = 8 on all 1800 images and analyse the
            memory of the S = max step on all images for ``hidden`` and each ``big_hidden``
            (default: not ``quick``).
        log: progress printer.

    Returns:
        the results dict (as written to the JSON file).
    """
    s_values = tuple(s_values or ((2, 8, 16) if quick else (1, 2, 4, 8, 16)))
    d_values = tuple(d_values or (1, 2, 4, 8))
    if len(jax.devices()) < max(d_values):
        raise SystemExit(f"needs {max(d_values)} devices, found {len(jax.devices())}")
    repeats = 3 if quick else 15
    full_batch = (not quick) if full_batch is None else full_batch
    results: dict[str, Any] = {
        "machine": machine_info(("scikit-learn",)),
        "setup": {
            "quick": quick,
            "hidden": list(hidden),
            "S": list(s_values),
            "D": list(d_values),
            "data": "sklearn digits, 1797 images padded (masked) to 1800",
            "batch": batch,
            "elbo": "TraceMeanField_ELBO",
            "optimizer": f"adam({LEARNING_RATE})",
            "repeats": repeats,
        },
    }
    start = time.perf_counter()
    rows = bench_steps(hidden, s_values, d_values, repeats, batch=batch, log=log)
    results["steps"] = rows
    results["weak_scaling"] = weak_scaling(rows, d_values) + weak_scaling(rows, d_values, "hybrid")
    results["targets"] = targets(rows, s_mem=max(s_values))
    # What splitting the state saves: the same `sample` step with the state replicated.
    s_mem, d_max = max(s_values), max(d_values)
    if s_mem % d_max == 0 and d_max > 1:
        _, model, guide = make_bnn(hidden)
        config = Config("sample", s_mem, sample=d_max)
        replicated = prepare_sharded(config, model, guide, padded_digits(batch), shard_state=False)
        results["replicated_state"] = {"S": s_mem, "D": d_max, **replicated.analysis}
    if full_batch:
        # The same two targets where each step sees all 1800 images: the loop's per-call
        # overhead matters less, activations (split by the sharded modes) matter more.
        log("full batch: loop vs vmap at S=8")
        pair = bench_steps(hidden, (8,), (1,), repeats, batch=FULL_BATCH, log=log)
        results["full_batch_steps"] = pair
        results["targets"].update(targets(pair, label="_full_batch"))
        results["memory_only"] = []
        for h in (tuple(hidden), *big_hidden):
            log(f"memory only: MLP {h}, {FULL_BATCH} images, S={max(s_values)}")
            mem_rows = memory_only(h, max(s_values), d_values, FULL_BATCH, log=log)
            results["memory_only"].append(
                {"hidden": list(h), "batch": FULL_BATCH, "S": max(s_values), "rows": mem_rows}
            )
            suffix = "_full_batch" if h == tuple(hidden) else "_full_batch_big"
            results["targets"].update(targets(mem_rows, s_mem=max(s_values), label=suffix))
    if training:
        seeds = (0,) if quick else (0, 1, 2)
        results["training"] = bench_training(hidden, seeds, max_epochs=3 if quick else 30, log=log)
    results["wall_s"] = time.perf_counter() - start
    out_dir = Path(out_dir)
    text = markdown(results)
    write_results(out_dir / "bnn_cpu", results, text)
    plot(results, out_dir / "bnn_cpu.png")
    log(text)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small grid, short training")
    parser.add_argument("--no-training", action="store_true", help="skip epochs-to-target")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="output folder")
    parser.add_argument(
        "--replot", action="store_true", help="only rewrite bnn_cpu.md/png from bnn_cpu.json"
    )
    args = parser.parse_args(argv)
    if args.replot:
        results = json.loads((args.out / "bnn_cpu.json").read_text())
        write_markdown(args.out / "bnn_cpu.md", markdown(results))
        plot(results, args.out / "bnn_cpu.png")
    else:
        results = run(args.quick, args.out, training=not args.no_training)
    for name, t in results["targets"].items():
        print(f"{'PASS' if t['pass'] else 'MISS'} {name}: " + fmt(t.get("speedup", t.get("ratio"))))


if __name__ == "__main__":
    main()
