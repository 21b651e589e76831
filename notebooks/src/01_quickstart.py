# %% [markdown]
# # Quickstart: eight schools with NUTS
#
# This notebook fits the classic *eight schools* model with jppl's NUTS sampler. The centered
# version of the model has a funnel-shaped posterior that NUTS cannot explore: it reports
# **divergent transitions**. We look at them with ArviZ trace and rank plots, find where they
# come from, and then fix them with the `reparam` handler, *without rewriting the model*.
#
# The data (Rubin, 1981): the estimated effect `y` of a coaching programme on test scores in
# eight schools, and the standard error `sigma` of each estimate.

# %%
import arviz as az
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jppl
import jppl.distributions as dist
from jppl import handlers
from jppl.infer import MCMC, NUTS
from jppl.infer.reparam import LocScaleReparam

y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
sigma = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])
schools = list("ABCDEFGH")

fig, ax = plt.subplots(figsize=(6, 3))
ax.errorbar(schools, y, yerr=sigma, fmt="o", capsize=3)
ax.axhline(0.0, color="gray", lw=0.5)
ax.set(xlabel="school", ylabel="estimated effect y ± sigma", title="Eight schools data")
plt.show()

# %% [markdown]
# The estimates are noisy: every error bar crosses most of the others. A hierarchical model
# lets the schools share information: each school's true effect `theta[j]` is drawn from a
# common normal distribution with mean `mu` and spread `tau`, both learned from the data.
#
# A jppl model is a plain Python function. `jppl.sample` declares a random variable, and
# `jppl.plate` says that the eight schools are conditionally independent. The observed site
# gets its data through `obs=`.

# %%
def eight_schools(sigma, y=None):
    mu = jppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = jppl.sample("tau", dist.HalfCauchy(5.0))
    with jppl.plate("schools", sigma.shape[0]):
        theta = jppl.sample("theta", dist.Normal(mu, tau))
        jppl.sample("y", dist.Normal(theta, sigma), obs=y)

# %% [markdown]
# ## NUTS on the centered model
#
# `NUTS` binds the model to the No-U-Turn sampler; `MCMC` runs the chains. Here: 4 chains,
# each with 500 warm-up steps (step size and mass matrix adaptation) and 500 kept draws, and a
# target acceptance probability of 0.9. After the run, jppl checks the usual convergence
# diagnostics and warns about what it finds.

# %%
centered = MCMC(
    NUTS(eight_schools, target_accept_prob=0.9),
    num_warmup=500, num_samples=500, num_chains=4,
)
centered.run(jax.random.key(0), sigma, y=y)

# %% [markdown]
# The warnings say it: divergent transitions, a high R-hat and a small effective sample size.
# A divergence is a trajectory on which the numerical integrator's energy error blew up; it
# means that the sampler met a region of high curvature it could not enter. Here is how many
# of the 2000 kept transitions diverged, per chain:

# %%
divergent = np.asarray(centered.get_extra_fields(group_by_chain=True)["diverging"])
print("divergences per chain:", divergent.sum(axis=1), " total:", centered.num_divergent)
assert centered.num_divergent > 0

# %% [markdown]
# ## Looking at the chains with ArviZ
#
# `MCMC.to_arviz()` returns ArviZ's results object with the posterior draws, the sampler
# statistics (including `diverging`), the observed data and the pointwise log-likelihood: an
# `arviz.InferenceData` with ArviZ 0.x, an `xarray.DataTree` with ArviZ 1.x (which pip
# installs on Python 3.12+). The two lines name their plots differently, so the two helpers
# below call whichever is installed. In a trace plot, ArviZ marks the divergent transitions
# with ticks under each panel.

# %%
ARVIZ_1 = int(az.__version__.split(".")[0]) >= 1


def trace_plot(idata):
    """Marginal densities and traces of mu and tau, one line per chain."""
    if ARVIZ_1:
        az.plot_trace_dist(
            idata, var_names=["mu", "tau"], backend="matplotlib", figure_kwargs={"figsize": (10, 4)}
        )
    else:
        az.plot_trace(idata, var_names=["mu", "tau"], compact=True, figsize=(10, 4))
        plt.tight_layout()
    plt.show()


def rank_plot(idata):
    """Each chain's ranks of tau among all draws (0.x: histograms; 1.x: the difference of
    their ECDF from the uniform one, with a 99% simultaneous envelope)."""
    if ARVIZ_1:
        az.plot_rank(
            idata, var_names=["tau"], backend="matplotlib", figure_kwargs={"figsize": (5, 3)}
        )
    else:
        az.plot_rank(idata, var_names=["tau"], figsize=(5, 3))
    plt.show()


idata_centered = centered.to_arviz()
trace_plot(idata_centered)

# %% [markdown]
# The divergences (the black ticks) sit at small values of `tau`, and the four chains'
# density estimates of `tau` disagree near zero. A **rank plot** makes the poor mixing easier
# to see: rank all draws of all chains together and look at each chain's ranks. If the
# chains sample the same distribution, each chain's ranks are uniform (flat histograms with
# ArviZ 0.x; ECDF differences inside the envelope with ArviZ 1.x); here they are not (some
# chains have too many low ranks, others too few).

# %%
rank_plot(idata_centered)

# %% [markdown]
# The diagnostics table agrees: for `tau`, the R-hat is above 1.01 and the bulk effective
# sample size is a small fraction of the 2000 draws.

# %%
centered.print_summary()

# %% [markdown]
# ## Where the divergences come from: the funnel
#
# When `tau` is small, every `theta[j]` must lie within a few `tau` of `mu`, so the posterior
# narrows into a funnel in the `(log tau, theta)` plane. A step size that suits the wide mouth
# of the funnel is far too large for its neck. Plotting the draws of `theta[0]` against
# `log tau`, with the divergent ones in red, shows the divergences clustering in the neck.

# %%
def funnel_plot(ax, samples, diverging, title):
    log_tau = np.log(np.asarray(samples["tau"]))
    theta0 = np.asarray(samples["theta"][:, 0])
    ax.scatter(theta0[~diverging], log_tau[~diverging], s=3, alpha=0.3, label="draws")
    ax.scatter(theta0[diverging], log_tau[diverging], s=12, c="red", label="divergent")
    ax.set(xlabel="theta[0]", ylabel="log tau", title=title, ylim=(-6, 4))
    ax.legend(loc="lower right")


fig, ax = plt.subplots(figsize=(5, 4))
funnel_plot(ax, centered.get_samples(), divergent.reshape(-1), "centered")

# %% [markdown]
# ## The fix: non-centering with `reparam`, no rewrite
#
# The standard cure is the *non-centered* parameterization: draw a standard normal
# `theta_decentered[j]` and set `theta[j] = mu + tau * theta_decentered[j]`. The posterior of
# `(mu, tau, theta_decentered)` has no funnel. In jppl we do not rewrite the model for this:
# the `reparam` handler applies `LocScaleReparam(centered=0)` to the site `theta`.

# %%
noncentered_model = handlers.reparam(
    eight_schools, config={"theta": LocScaleReparam(centered=0)}
)
prior_trace = handlers.trace(handlers.seed(noncentered_model, rng_seed=0)).get_trace(sigma, y)
for name, site in prior_trace.items():
    if site["type"] in ("sample", "deterministic"):
        role = "observed" if site.get("is_observed") else site["type"]
        print(f"{name:18s} {role:14s} shape={tuple(site['value'].shape)}")

# %% [markdown]
# The model now samples `theta_decentered`, and `theta` became a deterministic site computed
# from it; the code of `eight_schools` is unchanged. We run NUTS with the same settings and the
# same random key.

# %%
noncentered = MCMC(
    NUTS(noncentered_model, target_accept_prob=0.9),
    num_warmup=500, num_samples=500, num_chains=4,
)
noncentered.run(jax.random.key(0), sigma, y=y)
print("divergences:", noncentered.num_divergent)
assert noncentered.num_divergent == 0

# %% [markdown]
# No warnings and no divergences. The trace plot shows well-mixed chains, and the ranks of
# `tau` are uniform in every chain.

# %%
idata_noncentered = noncentered.to_arviz()
trace_plot(idata_noncentered)
rank_plot(idata_noncentered)

# %% [markdown]
# Side by side, the non-centered sampler reaches deep into the neck of the funnel, where the
# centered one diverged and got stuck:

# %%
nc_divergent = np.asarray(noncentered.get_extra_fields()["diverging"])
fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
funnel_plot(axes[0], centered.get_samples(), divergent.reshape(-1), "centered")
funnel_plot(axes[1], noncentered.get_samples(), nc_divergent, "non-centered (reparam)")

# %% [markdown]
# The numbers behind the picture: the share of draws with `tau < 0.5`, and the bulk effective
# sample size of `tau`, for each run. (`jppl.diagnostics` computes the same rank-normalized
# ESS as ArviZ and Stan.)

# %%
from jppl import diagnostics  # noqa: E402

ess = {}
for label, run in [("centered", centered), ("non-centered", noncentered)]:
    tau = np.asarray(run.get_samples(group_by_chain=True)["tau"])  # (chains, draws)
    ess[label] = float(diagnostics.ess_bulk(tau))
    print(
        f"{label:13s} P(tau < 0.5) = {np.mean(tau < 0.5):.3f}   "
        f"ESS_bulk(tau) = {ess[label]:6.0f}   "
        f"R-hat(tau) = {float(diagnostics.rank_normalized_split_rhat(tau)):.3f}"
    )
assert ess["non-centered"] > 2 * ess["centered"]

# %% [markdown]
# ## Using the posterior
#
# With trustworthy draws we can answer questions about the schools. The posterior of each
# school's effect is pulled toward the common mean (*partial pooling*): school A's raw estimate
# of 28 shrinks a lot, because its standard error is large.

# %%
theta = np.asarray(noncentered.get_samples()["theta"])  # (2000, 8)
fig, ax = plt.subplots(figsize=(6, 3))
ax.errorbar(schools, y, yerr=sigma, fmt="o", capsize=3, alpha=0.4, label="data y ± sigma")
lo, hi = np.percentile(theta, [5, 95], axis=0)
mid = theta.mean(axis=0)
ax.errorbar(schools, mid, yerr=[mid - lo, hi - mid], fmt="s", capsize=3, label="theta, 90% CI")
ax.set(xlabel="school", ylabel="effect")
ax.legend()
print(f"posterior mean of theta[A] = {mid[0]:.1f} (raw estimate 28)")
print(f"P(school A's effect > school C's) = {np.mean(theta[:, 0] > theta[:, 2]):.2f}")
