# %% [markdown]
# # A Bayesian neural network with sampling parallelism
#
# A Bayesian neural network (BNN) puts a distribution over its weights. With a mean-field
# Gaussian guide, each training step of SVI draws **S weight samples** (ELBO particles),
# runs the network once per sample, and averages their gradients. More samples give less
# noisy gradients, but cost S forward and backward passes. The S samples are independent,
# so they can run on different devices: this is *sampling parallelism*. Each device evaluates
# S / D of the samples, and one all-reduce sums their gradients. The minibatch can also be
# split over devices (*data parallelism*), or both at once (*hybrid*).
#
# In jppl this takes three pieces:
#
# * `jppl.nn.BayesianModule` turns a Flax module into a prior (in the model) and a mean-field
#   guide (in the guide) over all its weights;
# * `jppl.nn.Trainer` runs minibatch SVI with `num_particles=S`;
# * `mesh=jppl.parallel.make_mesh(sample=4)` spreads the S samples over 4 devices.
#
# This notebook runs on a laptop-sized machine, so it uses **4 fake CPU devices**: XLA splits
# the host CPU into 4 devices, which must be set right after `import jax`, before JAX runs any
# operation. On a machine with GPUs, drop that line: `make_mesh(sample=4)` then spreads the
# same code over 4 real devices. The fake devices share the same CPU cores, so this notebook
# shows that the results and the memory split are right, not a speed-up.

# %%
import json
import time
from pathlib import Path

import jax

jax.config.update("jax_num_cpu_devices", 4)  # 4 fake CPU devices; remove on GPUs

import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from scipy import ndimage, stats  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import jppl  # noqa: E402
import jppl.distributions as dist  # noqa: E402
from jppl.nn import (  # noqa: E402
    BayesianModule,
    Trainer,
    normal_prior,
    reliability_diagram,
    sample_predictions,
    summarize_logits,
)
from jppl.parallel import make_mesh  # noqa: E402

print(jax.devices())
assert len(jax.devices()) == 4

# %% [markdown]
# ## The data
#
# scikit-learn's 1797 handwritten digits, 8×8 pixels with grey levels 0–16, scaled to
# [0, 1]. A stratified split keeps 25% of them (450 images) as a test set.

# %%
digits = load_digits()
x_train, x_test, y_train, y_test = train_test_split(
    (digits.data / 16.0).astype(np.float32),
    digits.target.astype(np.int32),
    test_size=0.25,
    stratify=digits.target,
    random_state=0,
)
print("train", x_train.shape, " test", x_test.shape)

fig, axes = plt.subplots(1, 10, figsize=(10, 1.3))
for ax, image, label in zip(axes, x_train, y_train, strict=False):
    ax.imshow(image.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(str(label), fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# ## The Bayesian network
#
# The network is an ordinary Flax NNX module: 64 inputs, 100 ReLU units, 10 logits.
# `BayesianModule` lifts each of its weight arrays to a sample site with a `Normal(0, 1)`
# prior; `bnn.model()` draws the weights from the prior, `bnn.guide()` from
# `Normal(loc, scale)` with learned `loc` and `scale` (initialized at the module's own
# initial weights, with scale 1e-3).
#
# The model describes **one minibatch**: the trainer scales its log-likelihood by
# N / B so that the loss is the negative ELBO of the whole training set. The plate of the
# labels is marked `shard="data"`: on a mesh with a `data` axis, the minibatch is split over
# it.

# %%
class MLP(nnx.Module):
    """x (N, 64) -> logits (N, 10), one ReLU hidden layer."""

    def __init__(self, hidden: int, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(64, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


bnn = BayesianModule(
    "mlp", MLP(100, nnx.Rngs(0)), prior=normal_prior(1.0), init_scale=1e-3
)


def model(x, y):
    logits = bnn.model()(x)
    with jppl.plate("data", x.shape[0], shard="data"):
        jppl.sample("y", dist.CategoricalLogits(logits), obs=y)


def guide(x, y):
    bnn.guide()

# %% [markdown]
# ## Training with S = 8 weight samples, on 1 device and on 4
#
# Three trainers differ only in their `mesh`:
#
# * `None`: one device evaluates the 8 samples (vectorized with `vmap`);
# * `make_mesh(sample=4)`: each of 4 devices evaluates 2 samples;
# * `make_mesh(sample=2, data=2)` (hybrid): each of 2 pairs of devices evaluates 4 samples,
#   and the two devices of a pair split the 128 images of the minibatch.
#
# The random numbers do not depend on the mesh: step `t` draws sample `i`'s weights with
# `fold_in(fold_in(key, t), i)` whichever device computes it, and the minibatch order
# depends only on the key and the epoch. So the three runs compute the same losses; only the
# order of floating-point sums differs. Each run is 30 epochs of 10 minibatches of 128
# images, with Adam at learning rate 0.01.

# %%
NUM_PARTICLES, BATCH_SIZE, NUM_EPOCHS = 8, 128, 30
meshes = {
    "1 device": None,
    "sample=4": make_mesh(sample=4),
    "sample=2, data=2": make_mesh(sample=2, data=2),
}
runs, trainers = {}, {}
for name, mesh in meshes.items():
    trainer = Trainer(
        model, guide, optax.adam(1e-2), num_data=len(y_train), batch_size=BATCH_SIZE,
        num_particles=NUM_PARTICLES, mesh=mesh,
    )
    start = time.perf_counter()
    state = trainer.init(jax.random.key(0), (x_train, y_train))
    runs[name] = trainer.fit(state, (x_train, y_train), NUM_EPOCHS)
    trainers[name] = trainer
    print(f"{name:17s} {len(runs[name].losses)} steps in {time.perf_counter() - start:5.1f} s "
          f"(with compilation); final loss {runs[name].losses[-1]:.1f}")

# %% [markdown]
# The three loss curves lie on top of each other. They are not bitwise equal: a sum over
# samples or data points split across devices is added in another order than on one device,
# so the loss and the gradient of a step differ in the last float32 bits. We check that
# directly below: at the same parameters and key, the gradients of the three meshes differ by
# about 1e-7 relative (float32's precision). Adam then feeds these last bits back into the
# parameters at every step, so the runs drift apart slowly: the first 30 steps agree to 1e-6,
# and after 300 steps the losses differ by about 1e-5 relative (the exact figure depends on
# the XLA version and the CPU). The fitted models agree: their test accuracy and NLL are
# compared further down. (MCMC, where adaptation amplifies such bits much more, adds data
# blocks in a fixed order and is bitwise the same on every data mesh; SVI does not do that
# yet.)

# %%
reference = runs["1 device"].losses
fig, (ax, ax_diff) = plt.subplots(1, 2, figsize=(11, 3.5))
for (name, run), style in zip(runs.items(), ["-", "--", ":"], strict=True):
    ax.plot(run.losses, style, lw=1.5, label=name)
ax.set(xlabel="step", ylabel="-ELBO (training set)", yscale="log", title="loss, S = 8")
ax.legend()
for name in ["sample=4", "sample=2, data=2"]:
    rel = np.abs(runs[name].losses - reference) / np.abs(reference)
    print(f"{name:17s} max relative difference to 1 device: {rel.max():.2e}; "
          f"bitwise equal at {np.mean(rel == 0):.0%} of the steps")
    steps = np.flatnonzero(rel > 0)
    ax_diff.semilogy(steps, rel[steps], ".", ms=4, label=name)
    assert rel[:30].max() < 1e-6
ax_diff.axhline(1e-6, color="k", lw=0.8, ls="--", label="1e-6")
ax_diff.set(xlabel="step", ylabel="|loss - loss(1 device)| / loss", ylim=(1e-9, 1e-4),
            title="relative difference (steps where it is not 0)")
ax_diff.legend(loc="lower right", fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The gradient of the loss at the same parameters and the same step key, on each mesh:

# %%
state0 = trainers["1 device"].init(jax.random.key(0), (x_train, y_train))
batch0 = (jnp.asarray(x_train[:BATCH_SIZE]), jnp.asarray(y_train[:BATCH_SIZE]))


def flat_gradient(trainer, state):
    """The gradient of the loss at `state` (its step's key, minibatch batch0), flattened."""
    state = trainer.svi.place_state(state)
    loss = lambda params: trainer.svi.evaluate(state._replace(params=params), *batch0)
    leaves = jax.tree.leaves(jax.jit(jax.grad(loss))(state.params))
    return np.concatenate([np.ravel(np.asarray(g)) for g in leaves])


flat_grads = {name: flat_gradient(trainer, state0) for name, trainer in trainers.items()}
g_ref = flat_grads["1 device"]
for name in ["sample=4", "sample=2, data=2"]:
    rel_grad = np.linalg.norm(flat_grads[name] - g_ref) / np.linalg.norm(g_ref)
    print(f"{name:17s} |grad - grad(1 device)| / |grad(1 device)| = {rel_grad:.1e}")
    assert rel_grad < 1e-6

# %% [markdown]
# ## Predictions: accuracy, NLL and calibration
#
# The posterior predictive of a test image averages the class probabilities of M = 100
# weight draws from the guide. `sample_predictions` makes the draws (draw `m` keyed
# `fold_in(key, m)`) and returns the logits `(M, N, 10)`; `summarize_logits` averages the
# probabilities and computes the entropies we use below.
#
# `Trainer.evaluate` gives three numbers: accuracy, the negative log-likelihood (NLL) of the
# test labels, and the expected calibration error (ECE, 15 bins): the gap between confidence
# and accuracy, averaged over images. We check them against a direct NumPy computation from
# the predictive probabilities, and check that the three meshes give the same model.

# %%
NUM_DRAWS = 100
params = runs["1 device"].params
predict_key = jax.random.key(1)


@jax.jit
def summarize(x):
    """Posterior predictive summary of inputs x (N, 64) over NUM_DRAWS weight draws."""
    logits = sample_predictions(predict_key, bnn.predict, params, x, num_samples=NUM_DRAWS)
    return summarize_logits(logits)


test = summarize(jnp.asarray(x_test))
probs = np.asarray(test.mean_probs, dtype=np.float64)  # (450, 10)

for name, run in runs.items():
    m = trainers[name].evaluate(run.state, bnn.predict, x_test, y_test, num_samples=NUM_DRAWS,
                                rng_key=predict_key)
    print(f"{name:17s} accuracy {m['accuracy']:.4f}, NLL {m['nll']:.4f}, ECE {m['ece']:.4f}")
    if name == "1 device":
        metrics = m
    assert abs(m["accuracy"] - metrics["accuracy"]) < 1e-6
    assert abs(m["nll"] - metrics["nll"]) < 1e-3

# The same numbers from the predictive probabilities, in NumPy.
confidence, predicted = probs.max(1), probs.argmax(1)
correct = predicted == y_test
bins = np.minimum((confidence * 15).astype(int), 14)
ece_np = sum(abs(correct[bins == b].sum() - confidence[bins == b].sum()) for b in range(15))
ece_np /= len(y_test)
nll_np = -np.mean(np.log(probs[np.arange(len(y_test)), y_test]))
print(f"NumPy             accuracy {correct.mean():.4f}, NLL {nll_np:.4f}, ECE {ece_np:.4f}")
assert abs(correct.mean() - metrics["accuracy"]) < 1e-6
assert abs(nll_np - metrics["nll"]) < 1e-4
assert abs(ece_np - metrics["ece"]) < 1e-4
assert metrics["accuracy"] > 0.95 and metrics["ece"] < 0.05

# %% [markdown]
# Over 95% of the test digits are classified correctly, and the ECE is a few percent.
#
# ## Reliability diagram
#
# A reliability diagram sorts the test images by the confidence of the prediction (the
# largest predictive probability) into 10 bins, and shows the accuracy in each bin. A
# calibrated model has bars on the diagonal: of the images predicted with 70% confidence, 70%
# are right. `reliability_diagram` returns the mean confidence, the accuracy and the count
# per bin; empty bins hold NaN. The bars show each bin's accuracy; the red dots place it at
# its mean confidence, so a calibrated bin has its dot on the diagonal.

# %%
diagram = reliability_diagram(test.mean_probs, jnp.asarray(y_test), num_bins=10)
edges = np.asarray(diagram.bin_edges)
bin_acc, bin_conf = np.asarray(diagram.accuracy), np.asarray(diagram.confidence)
count = np.asarray(diagram.count)
filled = count > 0

fig, (ax, ax_count) = plt.subplots(1, 2, figsize=(10, 4))
ax.bar(edges[:-1][filled], bin_acc[filled], width=0.1, align="edge", edgecolor="k",
       alpha=0.6, label="accuracy")
ax.plot(bin_conf[filled], bin_acc[filled], "o", color="tab:red", ms=5,
        label="(mean confidence, accuracy) of the bin")
ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
       title="reliability diagram (test digits)")
ax.legend(loc="lower right", fontsize=8)
ax_count.bar(edges[:-1], count, width=0.1, align="edge", edgecolor="k")
ax_count.set(xlabel="confidence", ylabel="test images", yscale="log", title="images per bin")
plt.tight_layout()
plt.show()

for lo, c, a, n in zip(edges[:-1][filled], bin_conf[filled], bin_acc[filled], count[filled],
                       strict=True):
    print(f"bin [{lo:.1f}, {lo + 0.1:.1f}): {int(n):3d} images, confidence {c:.3f}, "
          f"accuracy {a:.3f}")
print(f"share of test images in the top bin: {count[-1] / count.sum():.1%}")
assert count.sum() == len(y_test)
assert abs(bin_acc[-1] - bin_conf[-1]) < 0.03  # the top bin, where most images are

# %% [markdown]
# Most test images land in the top bin, where accuracy and confidence agree within a few
# percent. The few low-confidence bins hold a handful of images each, so their bars are
# noisy.
#
# ## Uncertainty in and out of distribution
#
# A model that knows what it does not know should be less certain about inputs unlike its
# training data. We measure this by the **predictive entropy** `H[mean_m p_m]` of each
# input: 0 when all weight draws agree on one class with certainty, log 10 ≈ 2.30 nats at
# most. We compare the test digits with inputs the network never saw:
#
# * uniform noise images (every pixel uniform in [0, 1]);
# * inverted digits (`1 - x`);
# * the test digits rotated by 180 degrees, and by 45 degrees (bilinear, in the same 8×8
#   frame);
# * the test digits rotated by 90 degrees: a case where this BNN fails, see below.

# %%
images = x_test.reshape(-1, 8, 8)
rng = np.random.default_rng(0)
ood = {
    "uniform noise": rng.uniform(0.0, 1.0, size=x_test.shape).astype(np.float32),
    "inverted": (1.0 - x_test).astype(np.float32),
    "rotated 180": np.rot90(images, 2, axes=(1, 2)).reshape(-1, 64).astype(np.float32),
    "rotated 45": np.clip(ndimage.rotate(images, 45, axes=(1, 2), reshape=False, order=1),
                          0, 1).reshape(-1, 64).astype(np.float32),
    "rotated 90": np.rot90(images, 1, axes=(1, 2)).reshape(-1, 64).astype(np.float32),
}
fig, axes = plt.subplots(1, 6, figsize=(9.5, 1.9))
for ax, (name, x) in zip(axes, [("test digit", x_test), *ood.items()], strict=True):
    ax.imshow(x[3].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(name, fontsize=9)
    ax.axis("off")
plt.show()

# %% [markdown]
# Entropy histograms: the test digits pile up near 0, while every out-of-distribution set
# spreads towards the maximum. We check the entropies of `summarize_logits` against SciPy's
# `stats.entropy` of the predictive probabilities.

# %%
entropy = {"test digits": np.asarray(test.predictive_entropy)}
for name, x in ood.items():
    summary = summarize(jnp.asarray(x))
    entropy[name] = np.asarray(summary.predictive_entropy)
    scipy_h = stats.entropy(np.asarray(summary.mean_probs, dtype=np.float64), axis=1)
    assert np.allclose(entropy[name], scipy_h, atol=1e-4)
assert np.allclose(entropy["test digits"], stats.entropy(probs, axis=1), atol=1e-4)

fig, ax = plt.subplots(figsize=(8, 4))
bin_edges = np.linspace(0, np.log(10), 31)
for name, h in entropy.items():
    ax.hist(h, bins=bin_edges, histtype="step" if name != "test digits" else "stepfilled",
            alpha=0.5 if name == "test digits" else 1.0, lw=1.5, label=name)
ax.axvline(np.log(10), color="k", lw=0.8, ls="--")
ax.set(xlabel="predictive entropy (nats); dashed: log 10", ylabel="images", yscale="log",
       title="predictive entropy, 450 images per set")
ax.legend()
plt.show()

print(f"{'inputs':14s} {'mean entropy':>13s} {'share above q95(test)':>22s}")
q95 = np.quantile(entropy["test digits"], 0.95)
for name, h in entropy.items():
    print(f"{name:14s} {h.mean():13.3f} {np.mean(h > q95):22.1%}")
ratio = {name: entropy[name].mean() / entropy["test digits"].mean() for name in ood}
print("mean entropy / that of the test digits:", {k: round(float(v), 2) for k, v in ratio.items()})
for name in ["uniform noise", "inverted", "rotated 180", "rotated 45"]:
    assert ratio[name] > 2
assert ratio["rotated 90"] < 1.5

# %% [markdown]
# For noise, inverted digits and digits rotated by 180 or 45 degrees, the mean entropy is
# more than twice that of the test digits, and a large share of their images lie above the
# 95th percentile of the test entropies. The separation is not perfect: some rotated digits
# still look like a digit (a 0 rotated by 180 degrees is a 0), and the network is confident
# about some noise images.
#
# Digits rotated by 90 degrees are the failure case: their mean entropy is about that of the
# test digits, so the network classifies them, wrongly, with confidence. A mean-field
# Gaussian posterior over the weights of a small MLP captures only part of the epistemic
# uncertainty; predictive entropy is a useful signal, not a guarantee.
#
# ## Memory per device
#
# Sampling parallelism also divides memory. The activations of the S samples dominate the
# memory of a training step, and each device holds only those of its own S / D samples. The
# parameters and the optimizer state can be split too: with `shard_state=True` (on `SVI` and
# `Trainer`) each device stores 1 / D of them and XLA gathers the weights where the step needs
# them; the minibatch is replicated. The benchmark `benchmarks/bnn.py` compiles the training
# step that way (the same MLP, S = 16, minibatches of 256, the state donated from step to
# step) on meshes of 1 to 8 fake devices and reads XLA's memory analysis of each compiled
# program:
# `jax.jit(step).lower(...).compile().memory_analysis()`, memory = arguments + outputs +
# temporaries − aliased bytes. We read its committed results.

# %%
bench = json.loads(Path("../benchmarks/results/bnn_cpu.json").read_text())
rows = [r for r in bench["steps"] if r["S"] == 16 and r["mode"] in {"vmap", "sample", "data",
                                                                   "hybrid"}]
print(f"benchmark run {bench['machine']['time']}, jax {bench['machine']['jax']}, "
      f"batch {bench['setup']['batch']}, S = 16")
base = next(r for r in rows if r["mode"] == "vmap")
mib = 2.0**20
print(f"{'mesh':24s} {'memory MiB':>10s} {'temp MiB':>9s} {'args MiB':>9s} {'vs 1 device':>12s}")
for r in rows:
    mesh_name = "1 device" if r["mode"] == "vmap" else f"{r['mode']}: sample={r['sample']}, " \
        f"data={r['data']}"
    print(f"{mesh_name:24s} {r['memory_bytes'] / mib:10.2f} {r['temp_bytes'] / mib:9.2f} "
          f"{r['argument_bytes'] / mib:9.2f} {r['memory_bytes'] / base['memory_bytes']:12.3f}")

fig, ax = plt.subplots(figsize=(6.5, 4))
for mode, marker in [("sample", "o"), ("data", "s"), ("hybrid", "^")]:
    sel = [base, *sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["D"])]
    ax.plot([r["D"] for r in sel], [r["memory_bytes"] / mib for r in sel], marker=marker,
            label=mode)
devices = np.array([1, 2, 4, 8])
ax.plot(devices, base["memory_bytes"] / mib / devices, "k--", lw=0.8, label="1 / D")
ax.set(xscale="log", yscale="log", xlabel="devices D", ylabel="MiB per device",
       title="memory of one training step, S = 16")
ax.set_xticks(devices, [str(d) for d in devices])
ax.set_yticks([0.75, 1, 1.5, 2, 3, 4, 6], ["0.75", "1", "1.5", "2", "3", "4", "6"])
ax.minorticks_off()
ax.legend()
plt.show()

# %% [markdown]
# With the samples split over D devices, the temporaries (mostly the samples' activations)
# shrink as 1 / D, within 5%, and the arguments shrink too (each device holds its share of
# the parameters and optimizer state, plus the whole minibatch). On 4 devices a device needs
# less than a third of the single-device memory, on 8 about a seventh. Splitting only the
# data shrinks memory less at 8 devices: in that program every device computes, and
# all-reduces, the gradients of all 16 samples (arrays with a leading dim 16), each over its
# share of the minibatch.

# %%
sample_rows = {r["D"]: r for r in rows if r["mode"] == "sample"}
for d, r in sample_rows.items():
    temp_ratio = r["temp_bytes"] / base["temp_bytes"]
    print(f"sample={d}: temporaries x{temp_ratio:.3f} (1/D = {1 / d:.3f}), arguments "
          f"{r['argument_bytes'] / mib:.3f} MiB")
    assert abs(temp_ratio * d - 1) < 0.05
    assert r["argument_bytes"] < base["argument_bytes"]
assert sample_rows[4]["memory_bytes"] < base["memory_bytes"] / 3
data8 = next(r for r in rows if r["mode"] == "data" and r["D"] == 8)
reduced = [s for c in data8["collectives"] if c["op"] == "all-reduce" for s in c["shapes"]]
print("data=8 all-reduces:", reduced)
assert data8["memory_bytes"] > sample_rows[8]["memory_bytes"]
assert all(s.split("[")[1].startswith("16,") or s in ("f32[16]", "f32[]") for s in reduced)

# %% [markdown]
# ## Summary
#
# * `Trainer(..., num_particles=S, mesh=make_mesh(sample=4))` trains a BNN with its S weight
#   samples spread over 4 devices; each step's loss and gradient are those of one device to
#   float32 rounding (the runs drift apart slowly, as rounding feeds through Adam); a hybrid
#   `sample=2, data=2` mesh also splits each minibatch.
# * The fitted BNN is accurate and calibrated on test digits, and its predictive entropy is
#   much higher on inputs unlike its training data.
# * Per device, the memory of the samples' activations falls as 1 / D.
#
# On GPUs, remove the `jax_num_cpu_devices` line and pass a mesh over the real devices,
# e.g. `make_mesh(sample=-1)` for all of them.
