# %% [markdown]
# # A variational autoencoder on handwritten digits
#
# A variational autoencoder (VAE; Kingma & Welling, 2014) is a latent-variable model whose
# likelihood is a neural network, fitted with SVI and an *amortized* guide: a second network
# maps each image to the parameters of its latent variable's approximate posterior.
#
# In jppl the networks are ordinary Flax modules. `jppl.nn.flax_module` registers a module's
# weights as one `param` site of the model or the guide, so SVI trains them like any other
# parameter.
#
# The data: scikit-learn's 1797 handwritten digits, 8×8 pixels, with grey levels 0–16.
# We scale the pixels to [0, 1] and binarize them at 0.5, so that a Bernoulli likelihood
# fits, and hold out the last 297 images as a test set.

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx
from scipy import stats
from sklearn.datasets import load_digits

import jppl
import jppl.distributions as dist
from jppl import handlers
from jppl.infer import SVI, Predictive, Trace_ELBO
from jppl.nn import flax_module

digits = load_digits()
images = jnp.asarray(digits.data / 16.0 > 0.5, dtype=jnp.float32)  # (1797, 64) in {0, 1}
labels = digits.target
x_train, x_test = images[:1500], images[1500:]
labels_test = labels[1500:]
print("train", x_train.shape, " test", x_test.shape)


def show_images(rows, titles=None, size=1.0):
    """Plot a list of rows, each a (n, 64) array of pixel values in [0, 1], as 8x8 images."""
    n_rows, n_cols = len(rows), len(rows[0])
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * size, n_rows * size),
                             squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            axes[r, c].imshow(np.asarray(row[c]).reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            axes[r, c].axis("off")
        if titles is not None:
            axes[r, 0].set_title(titles[r], fontsize=9, loc="left")
    return fig


show_images([x_train[:12]], ["training images (binarized)"])
plt.show()

# %% [markdown]
# ## Model and guide
#
# The model (the *decoder*) draws a 2-dimensional latent code `z` for each image from a
# standard normal and turns it into 64 pixel probabilities with a small network. The guide
# (the *encoder*) maps each image to the mean and standard deviation of a normal over its
# `z`. Two latent dimensions are few, but they let us plot the latent space.
#
# The model also records the pixel probabilities as a `deterministic` site `probs`, which we
# will read with `Predictive` to draw reconstructions and new digits.

# %%
LATENT, HIDDEN, PIXELS = 2, 128, 64


class Encoder(nnx.Module):
    """x (batch, 64) -> loc, scale, each (batch, LATENT)."""

    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(PIXELS, HIDDEN, rngs=rngs)
        self.loc = nnx.Linear(HIDDEN, LATENT, rngs=rngs)
        self.log_scale = nnx.Linear(HIDDEN, LATENT, rngs=rngs)

    def __call__(self, x):
        h = nnx.softplus(self.hidden(x))
        return self.loc(h), jnp.exp(self.log_scale(h))


class Decoder(nnx.Module):
    """z (batch, LATENT) -> logits (batch, 64)."""

    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(LATENT, HIDDEN, rngs=rngs)
        self.out = nnx.Linear(HIDDEN, PIXELS, rngs=rngs)

    def __call__(self, z):
        return self.out(nnx.softplus(self.hidden(z)))


rngs = nnx.Rngs(0)
encoder, decoder = Encoder(rngs), Decoder(rngs)


def model(num_images, x=None):
    decode = flax_module("decoder", decoder)
    with jppl.plate("images", num_images):
        z = jppl.sample("z", dist.Normal(0.0, 1.0).expand([LATENT]).to_event(1))
        logits = decode(z)
        jppl.deterministic("probs", jax.nn.sigmoid(logits))
        jppl.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)


def guide(num_images, x=None):
    encode = flax_module("encoder", encoder)
    with jppl.plate("images", num_images):
        loc, scale = encode(x)
        jppl.sample("z", dist.Normal(loc, scale).to_event(1))

# %% [markdown]
# ## Training
#
# Full-batch SVI with Adam. The loss is the negative ELBO summed over the 1500 training
# images; we plot it per image. The ELBO is a lower bound on the log-likelihood of the data,
# so the per-image loss is an upper bound on the number of nats needed to encode an image.

# %%
NUM_STEPS = 3000
svi = SVI(model, guide, optax.adam(optax.exponential_decay(1e-2, NUM_STEPS, 0.1)), Trace_ELBO())
result = svi.run(jax.random.key(0), NUM_STEPS, x_train.shape[0], x_train)
params = result.params
train_loss = np.asarray(result.losses) / x_train.shape[0]
print("param sites:", {k: sum(v.size for v in jax.tree.leaves(p)) for k, p in params.items()})
print(f"-ELBO per image: step 1 {train_loss[0]:.1f}, last 100 steps {train_loss[-100:].mean():.1f}")

fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(train_loss, lw=0.8)
ax.set(xlabel="step", ylabel="-ELBO per image (nats)", yscale="log", title="training")
plt.show()

# %% [markdown]
# ## Does it generalize?
#
# The ELBO on the 297 held-out images, estimated with 32 particles, is close to the one on the
# training images: the networks have not memorized the training set. For scale, a baseline
# without any latent structure: coding each pixel independently, with its frequency over the
# training set as its probability, costs about 4 nats more per test image.

# %%
elbo = Trace_ELBO(num_particles=32)
test_loss = float(elbo.loss(jax.random.key(1), params, model, guide, x_test.shape[0], x_test))
train_eval = float(elbo.loss(jax.random.key(1), params, model, guide, x_train.shape[0], x_train))
pixel_freq = jnp.clip(x_train.mean(0), 1e-3, 1 - 1e-3)
independent = -float(jnp.mean(jnp.sum(x_test * jnp.log(pixel_freq)
                                      + (1 - x_test) * jnp.log1p(-pixel_freq), axis=1)))
print(f"-ELBO per image: train {train_eval / x_train.shape[0]:.2f}, "
      f"test {test_loss / x_test.shape[0]:.2f}")
print(f"independent pixels at their training frequency: {independent:.2f} nats per test image")
assert abs(test_loss / x_test.shape[0] - train_eval / x_train.shape[0]) < 2.0
assert test_loss / x_test.shape[0] < independent - 2.0

# %% [markdown]
# ## Reconstructions
#
# To reconstruct an image, encode it (draw `z` from the guide) and decode `z` into pixel
# probabilities. `Predictive` with a guide does exactly this: it runs the guide with the
# fitted parameters, then the model with the guide's `z`, and returns the sites we ask for.

# %%
reconstruct = Predictive(model, guide=guide, params=params, num_samples=1,
                         return_sites=["probs"])
recon = reconstruct(jax.random.key(2), x_test.shape[0], x_test)["probs"][0]  # (297, 64)
show_images([x_test[:12], recon[:12]], ["test images", "reconstructions: pixel probabilities"])
plt.show()

# %% [markdown]
# The reconstructions are blurry but mostly keep the digit: two latent dimensions hold its
# identity and rough shape, not every pixel. In numbers: the mean squared error per pixel of
# the reconstructions is about two thirds of that of the best single image for everyone (the
# mean training image).

# %%
mse_recon = float(jnp.mean((recon - x_test) ** 2))
mse_mean = float(jnp.mean((x_train.mean(0) - x_test) ** 2))
print(f"per-pixel MSE on test images: reconstructions {mse_recon:.4f}, mean image {mse_mean:.4f}")
assert mse_recon < 0.75 * mse_mean

# %% [markdown]
# ## The latent space
#
# The encoder's mean `loc(x)` places each test image in the 2-d latent space. We read it from
# a trace of the guide with the fitted parameters substituted. Coloured by the true digit
# (which the VAE never saw), images of the same digit gather in the same regions.

# %%
guide_trace = handlers.trace(
    handlers.substitute(handlers.seed(guide, rng_seed=0), data=params)
).get_trace(x_test.shape[0], x_test)
z_loc = np.asarray(guide_trace["z"]["fn"].mean)  # (297, 2)

fig, ax = plt.subplots(figsize=(5.5, 4.5))
points = ax.scatter(z_loc[:, 0], z_loc[:, 1], c=labels_test, cmap="tab10", s=12)
ax.legend(*points.legend_elements(), title="digit", fontsize=7, loc="center left",
          bbox_to_anchor=(1, 0.5))
ax.set(xlabel="z[0]", ylabel="z[1]", title="encoder means of the test images")
plt.show()

# %% [markdown]
# A number shows the same: for each test image, is its nearest neighbour in the latent space
# (among the other test images) an image of the same digit? Pure chance would give about 10%.

# %%
dist2 = np.sum((z_loc[:, None, :] - z_loc[None, :, :]) ** 2, axis=-1)
np.fill_diagonal(dist2, np.inf)
same = np.mean(labels_test[np.argmin(dist2, axis=1)] == labels_test)
print(f"nearest latent neighbour has the same label: {same:.1%}")
assert same > 0.5

# %% [markdown]
# ## New digits
#
# The model is generative: draw `z` from the standard normal prior and decode it.
# `Predictive` without posterior samples runs the model forward with the fitted parameters.

# %%
sampler = Predictive(model, params=params, num_samples=1, return_sites=["probs"])
new = sampler(jax.random.key(3), 24)["probs"][0]  # (24, 64)
show_images([new[:12], new[12:]], ["decoded draws z ~ N(0, I)", ""])
plt.show()

# %% [markdown]
# Finally, walk through the latent space on a regular grid. The grid runs over the normal
# quantiles from 5% to 95% in each direction, so it covers the bulk of the prior. To decode
# fixed `z` values, hand them to `Predictive` as "posterior samples" of the site `z`.

# %%
n = 12
q = stats.norm.ppf(np.linspace(0.05, 0.95, n))
grid = np.stack(np.meshgrid(q, -q), axis=-1).reshape(-1, 2)  # (144, 2), rows top to bottom
decode_grid = Predictive(model, posterior_samples={"z": jnp.asarray(grid)[None]},
                         params=params, return_sites=["probs"])
tiles = np.asarray(decode_grid(jax.random.key(4), n * n)["probs"][0]).reshape(n, n, 8, 8)
tiles = np.pad(tiles, ((0, 0), (0, 0), (1, 1), (1, 1)))  # a white border around each digit
canvas = tiles.transpose(0, 2, 1, 3).reshape(n * 10, n * 10)
fig, ax = plt.subplots(figsize=(7, 7))
ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1)
ax.set(title="decoder over a grid of z", xticks=[], yticks=[])
plt.show()
