"""Gibbs within HMC (``HMCGibbs``, ``DiscreteHMCGibbs``, ``MixedHMC``) driven by ``MCMC``.

Posteriors are checked against brute force: the continuous part integrated on a fine grid
(or in closed form), the discrete configurations enumerated by explicit loops, within four
Monte Carlo standard errors (:mod:`jppl.diagnostics`). Also: every discrete proposal
(``random_walk``, ``modified``), supports not starting at 0, the errors for unsupported
models and options, and a saved and loaded run continuing bitwise as the uninterrupted one.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jppl
import jppl.distributions as dist
import jppl.parallel
from jppl import diagnostics
from jppl.infer import HMC, MCMC, NUTS, DiscreteHMCGibbs, HMCGibbs, MixedHMC

QUIET = {"progress_bar": False, "warn": False}
Y = np.array([0.3, -1.2, 0.8, 2.1, 0.4, -0.5, 1.1, 0.0], np.float32)
MU_SCALE, SIGMA_SCALE = 2.0, 2.0


def _within(samples, truth, what, k=4.0, sd=None):
    """``samples`` (chains, draws): mean (and sd if given) within ``k`` MCSE of the truth."""
    x = np.asarray(samples, np.float64)
    err = abs(x.mean() - truth)
    mcse = float(diagnostics.mcse_mean(x))
    assert err < k * mcse, f"{what}: mean {x.mean():.4f}, exact {truth:.4f}, mcse {mcse:.4f}"
    if sd is not None:
        err = abs(x.std() - sd)
        mcse = float(diagnostics.mcse_sd(x))
        assert err < k * mcse, f"{what}: sd {x.std():.4f}, exact {sd:.4f}, mcse {mcse:.4f}"


# -- HMCGibbs on a normal model: Gibbs on mu | sigma (conjugate), NUTS on sigma -------------------


def normal_model(y):
    mu = jppl.sample("mu", dist.Normal(0.0, MU_SCALE))
    sigma = jppl.sample("sigma", dist.HalfNormal(SIGMA_SCALE))
    with jppl.plate("n", y.shape[0]):
        jppl.sample("y", dist.Normal(mu, sigma), obs=y)


def gibbs_mu(rng_key, gibbs_sites, hmc_sites):
    """The exact conditional mu | sigma, y (normal prior, normal likelihood)."""
    sigma = hmc_sites["sigma"]
    precision = 1.0 / MU_SCALE**2 + Y.shape[0] / sigma**2
    mean = (Y.sum() / sigma**2) / precision
    return {"mu": mean + jax.random.normal(rng_key) / jnp.sqrt(precision)}


def _normal_posterior():
    """Posterior means and sds of mu and sigma by a 2-d grid."""
    mu = np.linspace(-3.0, 3.5, 1301)
    sigma = np.linspace(1e-3, 6.0, 1500)
    m, s = np.meshgrid(mu, sigma, indexing="ij")
    logp = stats.norm.logpdf(m, 0, MU_SCALE) + stats.halfnorm.logpdf(s, scale=SIGMA_SCALE)
    logp = logp + stats.norm.logpdf(Y[:, None, None], m, s).sum(0)
    w = np.exp(logp - logp.max())
    w /= w.sum()
    out = {}
    for name, v in (("mu", m), ("sigma", s)):
        mean = (w * v).sum()
        out[name] = (mean, np.sqrt((w * (v - mean) ** 2).sum()))
    return out


def test_hmc_gibbs_normal_model_matches_grid():
    kernel = HMCGibbs(NUTS(normal_model), gibbs_fn=gibbs_mu, gibbs_sites=["mu"])
    mcmc = MCMC(
        kernel,
        num_warmup=300,
        num_samples=1500,
        num_chains=2,
        chain_method="vectorized",
        **QUIET,
    )
    mcmc.run(jax.random.key(0), Y, extra_fields=("z", "momentum", "inverse_mass_matrix"))
    samples = mcmc.get_samples(group_by_chain=True)
    assert set(samples) == {"mu", "sigma"}
    truth = _normal_posterior()
    for name in ("mu", "sigma"):
        assert samples[name].shape == (2, 1500)
        _within(samples[name], truth[name][0], name, sd=truth[name][1])
    fields = mcmc.get_extra_fields(group_by_chain=True)
    # the flat position holds both sites (sorted names: mu, then sigma unconstrained)
    np.testing.assert_allclose(fields["z"][..., 0], samples["mu"], rtol=1e-6)
    np.testing.assert_allclose(np.exp(fields["z"][..., 1]), samples["sigma"], rtol=1e-5)
    assert fields["momentum"].shape == (2, 1500, 1)  # the inner kernel's coordinates
    # the inner kernel adapted its own coordinate; the Gibbs one is padded with 1
    imm = np.asarray(mcmc.last_state.inverse_mass_matrix)
    assert imm.shape == (2, 2) and np.all(imm[:, 0] == 1.0) and np.all(imm[:, 1] != 1.0)
    assert set(fields) >= {"diverging", "accept_prob", "tree_depth", "potential_energy"}


# -- DiscreteHMCGibbs: one categorical latent selecting a mean ----------------------------------

LOCS = np.array([-1.0, 0.5, 1.5], np.float32)
PROBS = np.array([0.3, 0.2, 0.5], np.float32)
Y_MIX = np.array([0.9, 1.6, -0.2], np.float32)


def select_model(y):
    k = jppl.sample("k", dist.Categorical(jnp.asarray(PROBS)))
    s = jppl.sample("s", dist.HalfNormal(1.0))
    with jppl.plate("n", y.shape[0]):
        jppl.sample("y", dist.Normal(jnp.asarray(LOCS)[k], s), obs=y)


def _select_posterior():
    """P(k | y) by explicit loops over k, with s integrated on a grid."""
    s = np.linspace(1e-4, 8.0, 40000)
    mass = []
    for k in range(len(LOCS)):
        like = stats.norm.pdf(Y_MIX[:, None], LOCS[k], s).prod(0)
        mass.append(PROBS[k] * np.trapezoid(stats.halfnorm.pdf(s) * like, s))
    mass = np.array(mass)
    return mass / mass.sum()


@pytest.mark.parametrize(
    "random_walk, modified, chain_method",
    [
        (False, False, "vectorized"),
        pytest.param(False, True, "vectorized", marks=pytest.mark.slow),
        pytest.param(True, False, "vectorized", marks=pytest.mark.slow),
        pytest.param(True, True, "sequential", marks=pytest.mark.slow),
    ],
)
def test_discrete_hmc_gibbs_categorical_matches_enumeration(random_walk, modified, chain_method):
    kernel = DiscreteHMCGibbs(NUTS(select_model), random_walk=random_walk, modified=modified)
    mcmc = MCMC(
        kernel, num_warmup=200, num_samples=2000, num_chains=2, chain_method=chain_method, **QUIET
    )
    mcmc.run(jax.random.key(1), Y_MIX)
    k = np.asarray(mcmc.get_samples(group_by_chain=True)["k"])
    assert k.dtype == np.int32 and set(np.unique(k)) <= {0, 1, 2}
    for j, p in enumerate(_select_posterior()):
        _within(k == j, p, f"P(k={j})")


def gibbs_k(rng_key, gibbs_sites, hmc_sites):
    """The exact conditional k | s, y of ``select_model``."""
    loglik = dist.Normal(jnp.asarray(LOCS)[:, None], hmc_sites["s"]).log_prob(Y_MIX).sum(-1)
    return {"k": jax.random.categorical(rng_key, jnp.log(jnp.asarray(PROBS)) + loglik)}


def test_hmc_gibbs_discrete_gibbs_site_matches_enumeration():
    kernel = HMCGibbs(NUTS(select_model), gibbs_fn=gibbs_k, gibbs_sites=["k"])
    mcmc = MCMC(
        kernel, num_warmup=200, num_samples=2000, num_chains=2, chain_method="vectorized", **QUIET
    )
    mcmc.run(jax.random.key(4), Y_MIX)
    k = np.asarray(mcmc.get_samples(group_by_chain=True)["k"])
    assert k.dtype == np.int32
    for j, p in enumerate(_select_posterior()):
        _within(k == j, p, f"P(k={j})")


# -- a Bernoulli latent per data point (several discrete coordinates) --------------------------

Y_BERN = np.array([-0.4, 2.3, 0.3, 1.9], np.float32)
SHIFT, P_ONE = 2.0, 0.4


def bernoulli_mixture(y):
    mu = jppl.sample("mu", dist.Normal(0.0, 1.0))
    with jppl.plate("n", y.shape[0]):
        z = jppl.sample("z", dist.Bernoulli(P_ONE))
        jppl.sample("y", dist.Normal(mu + SHIFT * z, 1.0), obs=y)


def _bernoulli_posterior():
    """P(z_i = 1 | y) and E[mu | y], by a loop over the 2^N configurations of z with mu
    integrated in closed form (normal prior, unit-variance normal likelihood)."""
    n = len(Y_BERN)
    weights, mu_means = [], []
    for z in itertools.product((0, 1), repeat=n):
        z = np.array(z)
        r = Y_BERN - SHIFT * z  # y - shift z ~ N(mu, 1), mu ~ N(0, 1)
        marginal = stats.multivariate_normal.pdf(r, np.zeros(n), np.eye(n) + np.ones((n, n)))
        weights.append(np.prod(np.where(z == 1, P_ONE, 1 - P_ONE)) * marginal)
        mu_means.append(r.sum() / (n + 1))
    configs = np.array(list(itertools.product((0, 1), repeat=n)))
    w = np.array(weights) / np.sum(weights)
    return (w[:, None] * configs).sum(0), (w * np.array(mu_means)).sum()


@pytest.mark.parametrize("kind", ["DiscreteHMCGibbs", "MixedHMC"])
def test_bernoulli_plate_matches_enumeration(kind):
    if kind == "DiscreteHMCGibbs":
        kernel = DiscreteHMCGibbs(HMC(bernoulli_mixture, num_steps=8))
    else:
        kernel = MixedHMC(HMC(bernoulli_mixture, trajectory_length=1.5), modified=True)
    mcmc = MCMC(
        kernel, num_warmup=200, num_samples=2000, num_chains=2, chain_method="vectorized", **QUIET
    )
    mcmc.run(jax.random.key(2), Y_BERN, extra_fields=("is_accepted",))
    samples = mcmc.get_samples(group_by_chain=True)
    assert samples["z"].shape == (2, 2000, 4)
    assert mcmc.get_extra_fields()["is_accepted"].shape == (4000,)
    p_one, mu_mean = _bernoulli_posterior()
    for i in range(len(Y_BERN)):
        _within(samples["z"][..., i], p_one[i], f"P(z_{i}=1)")
    _within(samples["mu"], mu_mean, "E[mu]")


X_SUM = np.array([3.7, 4.4], np.float32)


def offset_supports(x):
    k = jppl.sample("k", dist.DiscreteUniform(2, 4))  # support {2, 3, 4}, not {0, 1, 2}
    n = jppl.sample("n", dist.Binomial(3, 0.5))
    s = jppl.sample("s", dist.HalfNormal(1.0))
    jppl.sample("x", dist.Normal(k + n, s), obs=x)


def test_discrete_supports_are_enumerated_not_assumed():
    """Proposals come from ``enumerate_support`` (2..4 for DiscreteUniform(2, 4))."""
    s = np.linspace(1e-4, 8.0, 20000)
    joint = np.zeros((3, 4))
    for k, n in itertools.product(range(3), range(4)):
        like = stats.norm.pdf(X_SUM[:, None], k + 2 + n, s).prod(0)
        prior = stats.binom.pmf(n, 3, 0.5) / 3
        joint[k, n] = prior * np.trapezoid(stats.halfnorm.pdf(s) * like, s)
    joint /= joint.sum()
    kernel = DiscreteHMCGibbs(NUTS(offset_supports), random_walk=True)
    mcmc = MCMC(
        kernel, num_warmup=200, num_samples=2000, num_chains=2, chain_method="vectorized", **QUIET
    )
    mcmc.run(jax.random.key(6), X_SUM)
    samples = mcmc.get_samples(group_by_chain=True)
    assert set(np.unique(samples["k"])) <= {2, 3, 4}
    for k in range(3):
        _within(samples["k"] == k + 2, joint[k].sum(), f"P(k={k + 2})")
    for n in range(4):
        _within(samples["n"] == n, joint[:, n].sum(), f"P(n={n})")


# -- errors -------------------------------------------------------------------------------------


def poisson_latent():
    n = jppl.sample("n", dist.Poisson(3.0))
    jppl.sample("x", dist.Normal(n, 1.0), obs=1.0)


def test_discrete_site_without_enumerate_support_is_named():
    mcmc = MCMC(DiscreteHMCGibbs(NUTS(poisson_latent)), num_warmup=5, num_samples=5, **QUIET)
    with pytest.raises(ValueError, match=r"site 'n' \(Poisson\) has no enumerable support"):
        mcmc.run(jax.random.key(0))


def test_hmc_gibbs_bad_input():
    with pytest.raises(ValueError, match="inner_kernel must be an HMC or NUTS"):
        HMCGibbs(object(), gibbs_mu, ["mu"])
    with pytest.raises(ValueError, match="potential function"):
        HMCGibbs(NUTS(potential_fn=lambda z: z**2), gibbs_mu, ["mu"])
    kernel = HMCGibbs(NUTS(normal_model), gibbs_fn=gibbs_mu, gibbs_sites=["nu"])
    with pytest.raises(ValueError, match=r"gibbs_sites \['nu'\] are not latent sample sites"):
        MCMC(kernel, num_warmup=5, num_samples=5, **QUIET).run(jax.random.key(0), Y)
    kernel = HMCGibbs(NUTS(normal_model), lambda rng_key, gibbs_sites, hmc_sites: {}, ["mu"])
    with pytest.raises(ValueError, match=r"exactly the sites \['mu'\]"):
        MCMC(kernel, num_warmup=5, num_samples=5, **QUIET).run(jax.random.key(0), Y)

    def dynamic_support():
        k = jppl.sample("k", dist.Exponential(1.0))
        x = jppl.sample("x", dist.Uniform(0.0, k))
        jppl.sample("y", dist.Normal(x, 1.0), obs=0.5)

    kernel = HMCGibbs(NUTS(dynamic_support), lambda rng_key, gibbs_sites, hmc_sites: {}, ["k"])
    with pytest.raises(ValueError, match=r"support of site\(s\) \['x'\] depends on the Gibbs"):
        MCMC(kernel, num_warmup=5, num_samples=5, **QUIET).run(jax.random.key(0))


def test_mixed_hmc_bad_input_and_mesh():
    with pytest.raises(ValueError, match="MixedHMC: inner_kernel must be an HMC sampler; NUTS"):
        MixedHMC(NUTS(select_model))
    with pytest.raises(ValueError, match="num_discrete_updates must be None or an int >= 1"):
        MixedHMC(HMC(select_model), num_discrete_updates=0)
    mesh = jppl.parallel.make_mesh(chain=1, data=2)
    mcmc = MCMC(
        DiscreteHMCGibbs(NUTS(select_model)), num_warmup=5, num_samples=5, mesh=mesh, **QUIET
    )
    with pytest.raises(NotImplementedError, match=r"DiscreteHMCGibbs supports a mesh over 'cha"):
        mcmc.run(jax.random.key(0), Y_MIX)


@pytest.mark.slow  # moved out of the default suite's 15-min budget
def test_chains_split_over_a_chain_mesh_give_the_unsharded_draws():
    def run(**kw):
        mcmc = MCMC(
            DiscreteHMCGibbs(NUTS(select_model)),
            num_warmup=20,
            num_samples=20,
            num_chains=2,
            **kw,
            **QUIET,
        )
        mcmc.run(jax.random.key(3), Y_MIX)
        return mcmc.get_samples(group_by_chain=True)

    sharded = run(mesh=jppl.parallel.make_mesh(chain=2))
    plain = run(chain_method="sequential")
    for name in ("k", "s"):
        np.testing.assert_array_equal(np.asarray(sharded[name]), np.asarray(plain[name]))


# -- checkpoints and chain methods --------------------------------------------------------------


def _raw(x):
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(x))
    return np.asarray(x)


def test_save_and_resume_give_the_uninterrupted_draws(tmp_path):
    def kernel():
        return DiscreteHMCGibbs(HMC(select_model, num_steps=5), modified=True)

    options = dict(num_warmup=30, num_chains=2, chain_method="vectorized", **QUIET)
    whole = MCMC(kernel(), num_samples=40, **options)
    whole.run(jax.random.key(5), Y_MIX)

    first = MCMC(kernel(), num_samples=20, **options)
    first.run(jax.random.key(5), Y_MIX)
    path = first.save(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="does not match the checkpoint"):
        MCMC.load(path, DiscreteHMCGibbs(HMC(select_model, num_steps=5)))
    second = MCMC.load(path, kernel(), progress_bar=False, warn=False)
    second.run(None, Y_MIX)

    expected = whole.get_samples(group_by_chain=True)
    for name in ("k", "s"):
        got = np.concatenate(
            [first.get_samples(True)[name], second.get_samples(True)[name]], axis=1
        )
        np.testing.assert_array_equal(got, expected[name])
    for a, b in zip(second.last_state, whole.last_state, strict=True):
        np.testing.assert_array_equal(_raw(a), _raw(b))
