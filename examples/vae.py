"""A variational autoencoder on scikit-learn's 8x8 digits: amortized inference with Flax NNX.

Model (decoder ``p``), for each image ``n`` in a plate over the batch::

    z_n ~ Normal(0, 1)^latent_dim                      (site "z", event shape (latent_dim,))
    x_n ~ Bernoulli(logits=decoder(z_n))^64            (site "x", event shape (64,))

Guide (encoder ``q``), in the same plate::

    z_n ~ Normal(loc(x_n), scale(x_n))^latent_dim

The networks are ``flax.nnx`` modules registered with :func:`jppl.nn.flax_module`, so SVI
learns the param sites ``"decoder$params"`` and ``"encoder$params"``.

Data: ``sklearn.datasets.load_digits`` (1797 images, pixel values 0..16), scaled to [0, 1]
and **binarized** at 0.5, so ``x`` is in {0, 1}^64 as a Bernoulli likelihood requires.

Run ``python examples/vae.py`` to train and print the ELBO and reconstruction errors.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jppl
import jppl.distributions as dist
from jppl.handlers import seed, substitute, trace
from jppl.nn import flax_module

DATA_DIM = 64


def load_digits_binary() -> jax.Array:
    """The 1797 digits as a ``(1797, 64)`` float32 array of 0/1 pixels (scaled value > 0.5)."""
    from sklearn.datasets import load_digits

    images = load_digits().data / 16.0
    return jnp.asarray(images > 0.5, dtype=jnp.float32)


class Encoder(nnx.Module):
    """``x (batch, data_dim) -> (loc, scale)``, each ``(batch, latent_dim)``."""

    def __init__(self, data_dim: int, hidden: int, latent_dim: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(data_dim, hidden, rngs=rngs)
        self.loc = nnx.Linear(hidden, latent_dim, rngs=rngs)
        self.log_scale = nnx.Linear(hidden, latent_dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = nnx.softplus(self.hidden(x))
        return self.loc(h), jnp.exp(self.log_scale(h))


class Decoder(nnx.Module):
    """``z (batch, latent_dim) -> logits (batch, data_dim)``."""

    def __init__(self, latent_dim: int, hidden: int, data_dim: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(latent_dim, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, data_dim, rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        return self.out(nnx.softplus(self.hidden(z)))


def make_vae(
    latent_dim: int = 2, hidden: int = 64, data_dim: int = DATA_DIM, seed: int = 0
) -> tuple[Callable, Callable]:
    """``(model, guide)`` of a VAE; both take ``x`` of shape ``(batch, data_dim)``."""
    rngs = nnx.Rngs(seed)
    encoder = Encoder(data_dim, hidden, latent_dim, rngs=rngs)
    decoder = Decoder(latent_dim, hidden, data_dim, rngs=rngs)

    def model(x: jax.Array) -> None:
        decode = flax_module("decoder", decoder)
        with jppl.plate("data", x.shape[0]):
            z = jppl.sample("z", dist.Normal(0.0, 1.0).expand([latent_dim]).to_event(1))
            jppl.sample("x", dist.Bernoulli(logits=decode(z)).to_event(1), obs=x)

    def guide(x: jax.Array) -> None:
        encode = flax_module("encoder", encoder)
        with jppl.plate("data", x.shape[0]):
            loc, scale = encode(x)
            jppl.sample("z", dist.Normal(loc, scale).to_event(1))

    return model, guide


def reconstruct(model: Callable, guide: Callable, params: dict, x: jax.Array) -> jax.Array:
    """Pixel probabilities ``(batch, data_dim)`` of ``decoder(encoder_loc(x))``."""
    guide_trace = trace(substitute(seed(guide, 0), data=params)).get_trace(x)
    z_loc = guide_trace["z"]["fn"].mean
    model_trace = trace(substitute(seed(model, 0), data={**params, "z": z_loc})).get_trace(x)
    return model_trace["x"]["fn"].mean


def mean_squared_errors(model, guide, params, x) -> tuple[float, float]:
    """Per-pixel squared error of the reconstructions and of the mean image."""
    recon = reconstruct(model, guide, params, x)
    mean_image = jnp.mean(x, axis=0)
    return float(jnp.mean((recon - x) ** 2)), float(jnp.mean((mean_image - x) ** 2))


def train(
    num_steps: int = 2000, latent_dim: int = 2, hidden: int = 64, lr: float = 1e-2, seed: int = 0
):
    """Train on all digits (full batch) with Adam; returns ``(model, guide, result)``."""
    import optax

    from jppl.infer import SVI, Trace_ELBO

    x = load_digits_binary()
    model, guide = make_vae(latent_dim, hidden, seed=seed)
    svi = SVI(model, guide, optax.adam(lr), Trace_ELBO())
    result = svi.run(jax.random.key(seed), num_steps, x, progress_bar=False)
    return model, guide, result


def main() -> None:
    model, guide, result = train()
    losses = np.asarray(result.losses)
    x = load_digits_binary()
    recon_mse, mean_mse = mean_squared_errors(model, guide, result.params, x)
    n = x.shape[0]
    print(
        f"-ELBO per image: first step {losses[0] / n:.2f}, last 100 steps "
        f"{losses[-100:].mean() / n:.2f}"
    )
    print(f"per-pixel MSE: reconstruction {recon_mse:.4f}, mean image {mean_mse:.4f}")


if __name__ == "__main__":
    main()
