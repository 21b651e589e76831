"""A small Bayesian vision transformer on 8x8 digits, trained with S=16 weight samples on 1 and
on 4 (fake CPU) devices: the same losses.

Sampling parallelism (*Sampling Parallelism for Fast and Efficient Bayesian Learning*): every
step draws S = 16 weight samples from a mean-field Gaussian guide; the trainer splits them over
the mesh's ``sample`` axis (4 per device on 4 devices) and averages their gradients. The
samples form G = 4 groups, and each group sees its own random shift of the minibatch. All keys
derive from the step key and the particle/group index, never from the device, so the run on
4 devices reproduces the 1-device losses up to float32 summation order.

Model: a ViT over the 4 patches (4x4 pixels) of a digit: linear patch embedding and learned
position embedding (dim 32), one pre-LayerNorm transformer block (4 heads, MLP 64; ``--depth``
and ``--patch`` change this), mean pooling and a linear head. Every parameter (attention,
LayerNorm and embeddings included) is a latent weight with a ``Normal(0, 1)`` prior
(:class:`jppl.nn.BayesianModule`); KL weight 0.2.

Data: ``sklearn.datasets.load_digits`` (pixels / 16), stratified 75/25 split (seed 0).

Run ``python examples/bnn_vit_digits.py`` (``--help`` for options; ``--hybrid`` adds a
``sample=2 x data=2`` run). It sets 4 CPU devices itself (``jax_num_cpu_devices``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jppl
import jppl.distributions as dist
from jppl import parallel
from jppl.nn import BayesianModule, Trainer, normal_prior

NUM_CLASSES = 10


def load_digits_images(test_fraction: float = 0.25, seed: int = 0):
    """``(x_train, y_train, x_test, y_test)``: float32 images ``(N, 8, 8)`` in [0, 1], int32
    labels; stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x,
        data.target.astype(np.int32),
        test_size=test_fraction,
        stratify=data.target,
        random_state=seed,
    )
    return x_tr, y_tr, x_te, y_te


def patchify(images: jax.Array, patch: int) -> jax.Array:
    """``(B, H, W) -> (B, (H/p)(W/p), p*p)`` non-overlapping patches in row-major order."""
    b, h, w = images.shape
    x = images.reshape(b, h // patch, patch, w // patch, patch)
    return x.transpose(0, 1, 3, 2, 4).reshape(b, (h // patch) * (w // patch), patch * patch)


class Block(nnx.Module):
    """Pre-LayerNorm transformer block: ``x (B, T, D) -> (B, T, D)``."""

    def __init__(self, dim: int, heads: int, mlp: int, rngs: nnx.Rngs):
        self.ln1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(heads, dim, decode=False, rngs=rngs)
        self.ln2 = nnx.LayerNorm(dim, rngs=rngs)
        self.fc1 = nnx.Linear(dim, mlp, rngs=rngs)
        self.fc2 = nnx.Linear(mlp, dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(jax.nn.gelu(self.fc1(self.ln2(x))))


class ViT(nnx.Module):
    """``images (B, 8, 8) -> logits (B, 10)`` over ``patch x patch`` patches."""

    def __init__(self, dim: int, depth: int, heads: int, mlp: int, patch: int, rngs: nnx.Rngs):
        tokens = (8 // patch) ** 2
        self.patch = patch
        self.embed = nnx.Linear(patch * patch, dim, rngs=rngs)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (tokens, dim)))
        self.blocks = nnx.List([Block(dim, heads, mlp, rngs) for _ in range(depth)])
        self.ln = nnx.LayerNorm(dim, rngs=rngs)
        self.head = nnx.Linear(dim, NUM_CLASSES, rngs=rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        x = self.embed(patchify(images, self.patch)) + self.pos[...]
        for block in self.blocks:
            x = block(x)
        return self.head(jnp.mean(self.ln(x), axis=1))


def random_shift(key: jax.Array, batch: tuple[jax.Array, jax.Array]):
    """Shift each image by an independent offset in {-1, 0, 1}^2 pixels (labels unchanged).

    The digits have blank borders, so a cyclic roll is a shift.
    """
    images, labels = batch
    shifts = jax.random.randint(key, (images.shape[0], 2), -1, 2)
    rolled = jax.vmap(lambda im, s: jnp.roll(im, (s[0], s[1]), axis=(0, 1)))(images, shifts)
    return rolled, labels


def make_bnn(
    kl_weight: float, depth: int = 1, patch: int = 4, seed: int = 0
) -> tuple[BayesianModule, Callable, Callable]:
    """``(bnn, model, guide)`` of the Bayesian ViT; model/guide take ``(images, labels)``."""
    bnn = BayesianModule(
        "vit",
        ViT(dim=32, depth=depth, heads=4, mlp=64, patch=patch, rngs=nnx.Rngs(seed)),
        prior=normal_prior(1.0),
        init_scale=1e-3,
        kl_weight=kl_weight,
    )

    def model(images: jax.Array, labels: jax.Array) -> None:
        logits = bnn.model()(images)
        with jppl.plate("data", images.shape[0], shard="data"):
            jppl.sample("y", dist.CategoricalLogits(logits), obs=labels)

    def guide(images: jax.Array, labels: jax.Array) -> None:
        bnn.guide()

    return bnn, model, guide


def train(args, mesh, data):
    """One training run on ``mesh``; returns ``(losses (T,), per-epoch history, test metrics,
    seconds)``."""
    x_tr, y_tr, x_te, y_te = data
    bnn, model, guide = make_bnn(args.kl_weight, args.depth, args.patch, args.seed)
    steps = args.epochs * (len(y_tr) // args.batch_size)
    trainer = Trainer(
        model,
        guide,
        optax.adam(optax.cosine_decay_schedule(args.lr, steps, alpha=0.1)),
        num_data=len(y_tr),
        batch_size=args.batch_size,
        num_particles=args.particles,
        num_groups=args.groups,
        augment=random_shift,
        mesh=mesh,
    )
    start = time.perf_counter()
    state = trainer.init(jax.random.key(args.seed), (x_tr, y_tr))
    result = trainer.fit(state, (x_tr, y_tr), args.epochs, progress_bar=not args.quiet)
    seconds = time.perf_counter() - start
    metrics = trainer.evaluate(result.state, bnn.predict, x_te, y_te, num_samples=args.samples)
    return result.losses, result.history, metrics, seconds


def set_cpu_devices(n: int) -> None:
    """Ask for ``n`` CPU devices (before JAX starts its backend); check there are enough."""
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        pass  # the backend is already running (e.g. in a notebook): use what it has
    if jax.device_count() < n:
        raise RuntimeError(
            f"bnn_vit_digits: needs {n} devices, JAX has {jax.device_count()}; run it as a "
            "fresh process (it sets jax_num_cpu_devices) or set XLA_FLAGS="
            f"--xla_force_host_platform_device_count={n}."
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--particles", type=int, default=16)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--kl-weight", type=float, default=0.2)
    parser.add_argument("--depth", type=int, default=1, help="transformer blocks")
    parser.add_argument("--patch", type=int, default=4, help="patch side (divides 8)")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--samples", type=int, default=64, help="predictive weight draws")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hybrid", action="store_true", help="also run sample=2 x data=2")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    set_cpu_devices(4)

    data = load_digits_images(seed=args.seed)
    meshes = {"1 device": None, "4 devices (sample=4)": parallel.make_mesh(sample=4)}
    if args.hybrid:
        meshes["4 devices (sample=2 x data=2)"] = parallel.make_mesh(sample=2, data=2)
    runs = {name: train(args, mesh, data) for name, mesh in meshes.items()}

    print(
        f"Bayesian ViT, {len(data[1])} training digits, S={args.particles} weight samples in "
        f"{args.groups} augmentation groups, batch {args.batch_size}, {args.epochs} epochs"
    )
    names = list(runs)
    print("epoch  " + "  ".join(f"{n:>30s}" for n in names) + "   (mean loss per epoch)")
    histories = [runs[n][1] for n in names]
    for e in range(args.epochs):
        print(f"{e + 1:5d}  " + "  ".join(f"{h[e].loss:30.3f}" for h in histories))
    ref = runs[names[0]][0]
    for name in names[1:]:
        rel = np.abs(runs[name][0] / ref - 1.0)
        print(
            f"max relative difference of the {len(ref)} step losses, {name} vs 1 device: "
            f"{rel.max():.2e} (first epoch {rel[: len(ref) // args.epochs].max():.2e})"
        )
    for name in names:
        _, _, m, seconds = runs[name]
        print(
            f"{name}: test accuracy {m['accuracy']:.4f}, NLL {m['nll']:.4f}, ECE {m['ece']:.4f} "
            f"(M={args.samples}); training {seconds:.1f} s"
        )


if __name__ == "__main__":
    main()
