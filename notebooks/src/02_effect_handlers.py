# %% [markdown]
# # Effect handlers
#
# A jppl model is a plain Python function. Each call to a primitive (`jppl.sample`,
# `jppl.param`, ...) sends a *message* (a small `dict` describing the site) through a stack of
# **effect handlers**. A handler can read the message, change it, or record it. Everything in
# jppl's inference is built from a dozen such handlers: they are how a sampler evaluates a log
# density, how a guide is replayed against a model, how a model is conditioned on data.
#
# This notebook goes through the handlers one by one on a tiny model, writes a new handler,
# builds a log-joint function from a trace (the idea of Edward2's `make_log_joint_fn`), and
# shows how conditioning on a variable (`condition`) differs from intervening on it (`do`).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

import jppl
import jppl.distributions as dist
from jppl import handlers
from jppl.infer import MCMC, NUTS, Predictive, log_density

# %% [markdown]
# ## The running example: a confounded treatment effect
#
# A hidden variable `z` (say, a patient's general health) influences both a treatment dose `x`
# and an outcome `y`. The dose also has a direct effect `BETA` on the outcome:
#
# $$z \sim \mathcal N(0, 1),\qquad x \mid z \sim \mathcal N(z, 1),\qquad
# y \mid x, z \sim \mathcal N(\beta x + \gamma z,\ \sigma).$$

# %%
BETA, GAMMA, SIGMA = 1.0, 2.0, 0.5


def model():
    z = jppl.sample("z", dist.Normal(0.0, 1.0))
    x = jppl.sample("x", dist.Normal(z, 1.0))
    y = jppl.sample("y", dist.Normal(BETA * x + GAMMA * z, SIGMA))
    return y

# %% [markdown]
# ## `seed`: where the randomness comes from
#
# JAX has no global random state, so a model that samples needs a PRNG key. Calling the model
# bare fails with an error that names the site and says what to do:

# %%
try:
    model()
except Exception as err:  # the library's error, shown
    print(f"{type(err).__name__}: {err}")

# %% [markdown]
# `handlers.seed` supplies the key: it splits a fresh subkey off for every sample site. The
# same seed gives the same draws, a different seed different ones.

# %%
print("seed 0:", float(handlers.seed(model, rng_seed=0)()))
print("seed 0:", float(handlers.seed(model, rng_seed=0)()))
print("seed 1:", float(handlers.seed(model, rng_seed=1)()))
assert handlers.seed(model, 0)() == handlers.seed(model, 0)() != handlers.seed(model, 1)()

# %% [markdown]
# ## `trace`: record every site
#
# `trace` records the final message of every site in an ordered dict. A site holds its
# distribution (`fn`), its `value`, whether it is observed, and a few more keys that other
# handlers use.

# %%
def show(tr):
    for name, site in tr.items():
        fn = type(site["fn"]).__name__ if site["type"] == "sample" else "-"
        obs = site.get("is_observed", False)
        print(f"  {name:5s} type={site['type']:7s} fn={fn:7s} observed={obs!s:5s} "
              f"value={float(site['value']):+.3f}")


tr = handlers.trace(handlers.seed(model, rng_seed=0)).get_trace()
print("site keys:", sorted(tr["z"]))
show(tr)

# %% [markdown]
# ## `condition` and `substitute`: setting values
#
# Both set a site's value instead of drawing it. `condition` also marks the site **observed**:
# it becomes data, which inference conditions on. `substitute` only plugs in a value (for
# example a fitted parameter), and the site stays latent.

# %%
print("condition(model, {'y': 3.0}):")
show(handlers.trace(handlers.seed(handlers.condition(model, {"y": 3.0}), 0)).get_trace())
print("substitute(model, {'y': 3.0}):")
show(handlers.trace(handlers.seed(handlers.substitute(model, {"y": 3.0}), 0)).get_trace())

# %% [markdown]
# ## `block`: hide sites from outer handlers
#
# `block` stops messages from reaching the handlers outside it. The model still samples `z`,
# but a trace taken outside the block does not see it. (Guides use this to hide auxiliary
# sites from the model.)

# %%
tr_blocked = handlers.trace(handlers.block(handlers.seed(model, 0), hide=["z"])).get_trace()
print("visible sites:", list(tr_blocked))
assert "z" not in tr_blocked

# %% [markdown]
# ## `scale`: weight the log density
#
# `scale` multiplies the log-probability of every sample site by a constant, as needed when a
# minibatch stands in for a full dataset. `jppl.infer.log_density` evaluates a model's log
# joint at given values; scaling by 10 multiplies it by 10:

# %%
point = {"z": 0.3, "x": -0.2, "y": 1.1}
lp, _ = log_density(model, params=point)
lp10, _ = log_density(handlers.scale(model, scale=10.0), params=point)
print(f"log p = {float(lp):.4f}   scaled by 10: {float(lp10):.4f}   ratio {float(lp10 / lp):.4f}")
assert jnp.allclose(lp10, 10 * lp)

# %% [markdown]
# ## Writing a handler: a tempered likelihood
#
# A handler is a subclass of `jppl.handlers.Messenger` that overrides `process_message` (runs
# before the value is computed, innermost handler first) and/or `postprocess_message` (runs
# after). Here is a handler for *power posteriors*: it multiplies the log-likelihood of the
# **observed** sites by `beta`, leaving the prior alone. It uses the message's `scale` key,
# which the log density multiplies in (the same key `scale` sets).

# %%
class tempered(handlers.Messenger):
    """Raise the likelihood to the power ``beta``: scale observed sample sites' log-probs."""

    def __init__(self, fn=None, beta=1.0):
        self.beta = beta
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["is_observed"]:
            msg["scale"] = self.beta if msg["scale"] is None else self.beta * msg["scale"]

# %% [markdown]
# Check it against the density written out by hand with `scipy.stats`: the prior terms of `z`
# and `x` unchanged, the likelihood term of `y` times `beta = 0.3`.

# %%
conditioned = handlers.condition(model, {"y": 1.1})
latent = {"z": 0.3, "x": -0.2}
lp_tempered, _ = log_density(tempered(conditioned, beta=0.3), params=latent)
by_hand = (
    stats.norm.logpdf(0.3, 0.0, 1.0)
    + stats.norm.logpdf(-0.2, 0.3, 1.0)
    + 0.3 * stats.norm.logpdf(1.1, BETA * -0.2 + GAMMA * 0.3, SIGMA)
)
print(f"tempered log density {float(lp_tempered):.6f}   by hand {by_hand:.6f}")
assert np.isclose(float(lp_tempered), by_hand, rtol=1e-5)

# %% [markdown]
# Handler order matters. `tempered` reads `is_observed`, which `condition` sets. Wrapped the
# other way round, `tempered` sees each message *before* `condition` marks `y` observed, so it
# tempers nothing:

# %%
lp_wrong_order, _ = log_density(handlers.condition(tempered(model, beta=0.3), {"y": 1.1}),
                                params=latent)
lp_plain, _ = log_density(conditioned, params=latent)
print(f"condition(tempered(model)): {float(lp_wrong_order):.6f}  "
      f"(untempered: {float(lp_plain):.6f})")
assert np.isclose(float(lp_wrong_order), float(lp_plain))

# %% [markdown]
# ## A log-joint function from a trace
#
# Edward2's `make_log_joint_fn` turns a generative program into a function that returns the
# log joint density at named values of its random variables. With handlers this is a few
# lines: `substitute` the given values, `trace` the run, and add up each sample site's
# (scaled) log-probability. A site without a value has no PRNG key to draw one, so a missing
# value raises an error that names it.

# %%
def make_log_joint_fn(model):
    """``log_joint(*args, **values) -> ()``: the log joint density of ``model`` at ``values``."""

    def log_joint(*args, **values):
        tr = handlers.trace(handlers.substitute(model, data=values)).get_trace(*args)
        total = jnp.zeros(())
        for site in tr.values():
            if site["type"] == "sample":
                lp = jnp.sum(site["fn"].log_prob(site["value"]))
                total = total + (lp if site["scale"] is None else site["scale"] * lp)
        return total

    return log_joint


log_joint = make_log_joint_fn(model)
by_hand = (stats.norm.logpdf(0.3, 0, 1) + stats.norm.logpdf(-0.2, 0.3, 1)
           + stats.norm.logpdf(1.1, BETA * -0.2 + GAMMA * 0.3, SIGMA))
print(f"log_joint(z=0.3, x=-0.2, y=1.1) = {float(log_joint(z=0.3, x=-0.2, y=1.1)):.6f}")
print(f"by hand with scipy.stats       = {by_hand:.6f}")
print(f"jppl.infer.log_density         = {float(log_density(model, params=point)[0]):.6f}")
assert np.isclose(float(log_joint(**point)), by_hand, rtol=1e-5)
try:
    log_joint(z=0.3, x=-0.2)
except Exception as err:
    print(f"\nmissing y -> {type(err).__name__}: {err}")

# %% [markdown]
# The result is an ordinary JAX function, so `jax.grad`, `jax.jit` and `jax.vmap` apply. Here
# it gives the posterior of the hidden `z` after observing `x = 1` and `y = 3`: evaluate the
# log joint on a grid of `z` values with `vmap` and normalize. The model is linear-Gaussian, so
# the exact posterior is a normal with precision $1 + 1 + \gamma^2/\sigma^2$ and mean
# $(x + \gamma (y - \beta x)/\sigma^2)\,/\,\text{precision}$; the two curves coincide.

# %%
x_obs, y_obs = 1.0, 3.0
grid = jnp.linspace(-1.0, 3.0, 801)
log_post = jax.jit(jax.vmap(lambda z: log_joint(z=z, x=x_obs, y=y_obs)))(grid)
density = jnp.exp(log_post - log_post.max())
density = density / jnp.trapezoid(density, grid)

precision = 2.0 + GAMMA**2 / SIGMA**2
mean = (x_obs + GAMMA * (y_obs - BETA * x_obs) / SIGMA**2) / precision
exact = stats.norm.pdf(np.asarray(grid), mean, precision**-0.5)
print(f"posterior mean of z: grid {float(jnp.trapezoid(grid * density, grid)):.4f}, "
      f"exact {mean:.4f}; max density error {np.max(np.abs(np.asarray(density) - exact)):.1e}")
assert np.allclose(np.asarray(density), exact, atol=1e-3)

dz = jax.grad(lambda z: log_joint(z=z, x=x_obs, y=y_obs))(0.0)
print(f"d/dz log p at z=0: autodiff {float(dz):.4f}, exact {precision * mean:.4f}")

fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(grid, density, lw=3, alpha=0.5, label="from make_log_joint_fn (grid)")
ax.plot(grid, exact, "k--", label="exact normal posterior")
ax.set(xlabel="z", ylabel="p(z | x=1, y=3)")
ax.legend()
plt.show()

# %% [markdown]
# ## `condition` versus `do`
#
# Two different questions about the dose:
#
# * **Observation**, `condition(model, {"x": 2})`: *among patients who received dose 2, what
#   is the outcome?* Seeing a high dose is evidence that `z` is high (high `z` causes high
#   doses), and high `z` also raises `y`. So the expected outcome is
#   $\beta x + \gamma\,\mathbb E[z \mid x] = \beta x + \gamma x / 2 = 4$.
# * **Intervention**, `do(model, {"x": 2})`: *if we set the dose to 2 for everyone, what is the
#   outcome?* Setting `x` cuts the arrow from `z` to `x`; `z` keeps its prior, and the expected
#   outcome is $\beta x = 2$.
#
# Under `do`, the site `x` is still drawn from its distribution and recorded (the intervention
# itself is kept in a site `x__CF` that is hidden from outer handlers, so it adds nothing to
# the log density), but the code downstream of `x` receives the intervened value. In the trace
# below `x` holds its own draw, while the mean of `y` is $\beta \cdot 2 + \gamma z$:

# %%
X0 = 2.0
tr_do = handlers.trace(handlers.seed(handlers.do(model, {"x": X0}), 0)).get_trace()
show(tr_do)
y_loc, z_drawn = float(tr_do["y"]["fn"].loc), float(tr_do["z"]["value"])
print(f"mean of y: {y_loc:+.3f};  BETA * 2 + GAMMA * z = {BETA * X0 + GAMMA * z_drawn:+.3f}")
assert np.isclose(y_loc, BETA * X0 + GAMMA * z_drawn)

# %% [markdown]
# Under `do`, nothing is observed, so plain forward sampling (`Predictive` with no posterior)
# draws `y`. Under `condition`, `x` is data and `z` must be inferred, so we run NUTS on the
# conditioned model (its latent sites are `z` and `y`).

# %%
do_draws = Predictive(handlers.do(model, {"x": X0}), num_samples=4000)(jax.random.key(0))
y_do = np.asarray(do_draws["y"])

mcmc = MCMC(NUTS(handlers.condition(model, {"x": X0})), num_warmup=500, num_samples=4000)
mcmc.run(jax.random.key(1))
y_cond = np.asarray(mcmc.get_samples()["y"])

# exact answers: y | do(x) ~ N(beta x, sqrt(gamma^2 + sigma^2)),
#                y | x     ~ N(beta x + gamma x / 2, sqrt(gamma^2 / 2 + sigma^2))
exact_do = stats.norm(BETA * X0, np.sqrt(GAMMA**2 + SIGMA**2))
exact_cond = stats.norm(BETA * X0 + GAMMA * X0 / 2, np.sqrt(GAMMA**2 / 2 + SIGMA**2))
print(f"E[y | do(x=2)] = {y_do.mean():.3f}  (exact {exact_do.mean():.3f}),  "
      f"sd {y_do.std():.3f} (exact {exact_do.std():.3f})")
print(f"E[y | x=2]     = {y_cond.mean():.3f}  (exact {exact_cond.mean():.3f}),  "
      f"sd {y_cond.std():.3f} (exact {exact_cond.std():.3f})")

fig, ax = plt.subplots(figsize=(7, 3.5))
ys = np.linspace(-6, 10, 400)
ax.hist(y_do, bins=60, density=True, alpha=0.5, label="do(x=2): Predictive")
ax.hist(y_cond, bins=60, density=True, alpha=0.5, label="condition(x=2): NUTS")
ax.plot(ys, exact_do.pdf(ys), "C0--")
ax.plot(ys, exact_cond.pdf(ys), "C1--")
ax.set(xlabel="y", ylabel="density", title="Observing x = 2 is not setting x = 2 (dashed: exact)")
ax.legend()
plt.show()

# %% [markdown]
# The Monte Carlo means match the exact values to within their standard errors (the NUTS
# draws are autocorrelated, so we use their effective sample size):

# %%
from jppl import diagnostics  # noqa: E402

se_do = y_do.std() / np.sqrt(len(y_do))
ess_cond = float(diagnostics.ess_bulk(y_cond[None]))
se_cond = y_cond.std() / np.sqrt(ess_cond)
print(f"do:        |error| = {abs(y_do.mean() - exact_do.mean()):.3f}, standard error {se_do:.3f}")
print(f"condition: |error| = {abs(y_cond.mean() - exact_cond.mean()):.3f}, "
      f"standard error {se_cond:.3f} (ESS {ess_cond:.0f})")
assert abs(y_do.mean() - exact_do.mean()) < 4 * se_do
assert abs(y_cond.mean() - exact_cond.mean()) < 4 * se_cond
