"""Compositional Gibbs (``Gibbs``, ``DiscreteGibbs``, ``CustomGibbs``) driven by ``MCMC``.

Posteriors are checked against exact ones: a categorical latent selecting the mean of a
normal (the continuous part Gaussian given the category, so the posterior is a closed-form
mixture), a conjugate normal hierarchy, and a purely discrete model by enumeration; within
four Monte Carlo standard errors (:mod:`jppl.diagnostics`). Also: each NUTS block adapts its
own step size, NumPyro's docstring example, chain methods and save / resume bitwise, and the
errors for invalid blocks.
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
from jppl.infer import (
    HMC,
    MCMC,
    NUTS,
    CustomGibbs,
    DiscreteGibbs,
    Gibbs,
    HMCGibbs,
    discrete_latent_sites,
    latent_sample_sites,
)

QUIET = {"progress_bar": False, "warn": False}


def _within(samples, truth, what, k=4.0):
    """``samples`` (chains, draws): mean within ``k`` MCSE of the truth."""
    x = np.asarray(samples, np.float64)
    err = abs(x.mean() - truth)
    mcse = float(diagnostics.mcse_mean(x))
    assert err < k * mcse, f"{what}: mean {x.mean():.4f}, exact {truth:.4f}, mcse {mcse:.4f}"


# -- c ~ Categorical(p), x ~ Normal(locs[c], 0.5), y ~ Normal(0, 2), obs ~ Normal(x + y, 1) ------

PROBS = np.array([0.15, 0.3, 0.3, 0.25], np.float32)
LOCS = np.array([-1.0, 0.0, 1.0, 2.0], np.float32)
OBS = 1.0
X_SD, Y_SD = 0.5, 2.0


def mixture(probs, locs):
    c = jppl.sample("c", dist.Categorical(probs))
    x = jppl.sample("x", dist.Normal(jnp.asarray(locs)[c], X_SD))
    y = jppl.sample("y", dist.Normal(0.0, Y_SD))
    jppl.sample("obs", dist.Normal(x + y, 1.0), obs=jnp.array([OBS]))


def _mixture_posterior():
    """P(c | obs), E[x | obs], E[y | obs]: given c, (x, y, obs) is Gaussian, so obs ~
    N(locs[c], X_SD^2 + Y_SD^2 + 1) and E[x | c, obs], E[y | c, obs] are linear in obs."""
    total = X_SD**2 + Y_SD**2 + 1.0
    w = PROBS * stats.norm.pdf(OBS, LOCS, np.sqrt(total))
    w = w / w.sum()
    ex = LOCS + X_SD**2 / total * (OBS - LOCS)
    ey = Y_SD**2 / total * (OBS - LOCS)
    return w, float((w * ex).sum()), float((w * ey).sum())


def y_given_x(rng_key, gibbs_sites, hmc_sites):
    """The exact conditional y | x, obs (normal prior, normal likelihood)."""
    precision = 1.0 / Y_SD**2 + 1.0
    mean = (OBS - hmc_sites["x"]) / precision
    return {"y": mean + jax.random.normal(rng_key) / jnp.sqrt(precision)}


def _check_mixture(samples):
    w, ex, ey = _mixture_posterior()
    c = np.asarray(samples["c"])
    assert c.dtype == np.int32 and set(np.unique(c)) <= {0, 1, 2, 3}
    for j, p in enumerate(w):
        _within(c == j, p, f"P(c={j})")
    _within(samples["x"], ex, "E[x]")
    _within(samples["y"], ey, "E[y]")


def test_discrete_gibbs_and_nuts_blocks_match_the_exact_posterior():
    kernel = Gibbs([(DiscreteGibbs(mixture), discrete_latent_sites), (NUTS(mixture), None)])
    mcmc = MCMC(
        kernel, num_warmup=300, num_samples=2000, num_chains=2, chain_method="vectorized", **QUIET
    )
    mcmc.run(jax.random.key(0), PROBS, LOCS, extra_fields=("z",))
    samples = mcmc.get_samples(group_by_chain=True)
    assert set(samples) == {"c", "x", "y"} and samples["x"].shape == (2, 2000)
    _check_mixture(samples)
    # flat position: c (constrained), x, y (unconstrained = constrained for reals)
    z = mcmc.get_extra_fields(group_by_chain=True)["z"]
    np.testing.assert_array_equal(z[..., 0], samples["c"])
    np.testing.assert_array_equal(z[..., 1], samples["x"])
    # the NUTS block adapted its own coordinates; the discrete one keeps 1
    imm = np.asarray(mcmc.last_state.inverse_mass_matrix)
    assert imm.shape == (2, 3) and np.all(imm[:, 0] == 1.0) and np.all(imm[:, 1:] != 1.0)


@pytest.mark.slow
def test_custom_discrete_and_two_nuts_blocks_match_the_exact_posterior():
    """The docstring's three kinds of blocks, and x, y in two NUTS blocks."""
    custom = Gibbs(
        [
            (DiscreteGibbs(mixture), discrete_latent_sites),
            (CustomGibbs(y_given_x), ["y"]),
            (NUTS(mixture), None),
        ]
    )
    split = Gibbs(
        [
            (NUTS(mixture), ["x"]),
            (DiscreteGibbs(mixture, modified=True), ["c"]),
            (HMC(mixture, num_steps=4), ["y"]),
        ]
    )
    for key, kernel in enumerate((custom, split)):
        mcmc = MCMC(
            kernel,
            num_warmup=300,
            num_samples=3000,
            num_chains=2,
            chain_method="vectorized",
            **QUIET,
        )
        mcmc.run(jax.random.key(key), PROBS, LOCS)
        _check_mixture(mcmc.get_samples(group_by_chain=True))


@pytest.mark.slow  # compile-bound; its blocks are covered by the default tests too
def test_numpyro_docstring_example_runs():
    def model(probs, locs):
        c = jppl.sample("c", dist.Categorical(probs))
        x = jppl.sample("x", dist.Normal(locs[c], 0.5))
        y = jppl.sample("y", dist.Normal(0.0, 2.0))
        jppl.sample("obs", dist.Normal(x + y, 1.0), obs=jnp.array([1.0]))

    def gibbs_fn(rng_key, gibbs_sites, hmc_sites):
        x = hmc_sites["x"]
        return {"y": dist.Normal(0.8 * (1 - x), jnp.sqrt(0.8)).sample(rng_key)}

    kernel = Gibbs(
        [
            (DiscreteGibbs(model), discrete_latent_sites),
            (CustomGibbs(gibbs_fn), ["y"]),
            (NUTS(model), None),
        ]
    )
    mcmc = MCMC(kernel, num_warmup=100, num_samples=100, progress_bar=False, warn=False)
    probs, locs = jnp.array([0.15, 0.3, 0.3, 0.25]), jnp.array([-2.0, 0.0, 2.0, 4.0])
    mcmc.run(jax.random.key(0), probs, locs)
    samples = mcmc.get_samples()
    assert {k: v.shape for k, v in samples.items()} == {"c": (100,), "x": (100,), "y": (100,)}
    assert np.all(np.isfinite(samples["x"])) and set(np.unique(samples["c"])) <= {0, 1, 2, 3}


# -- CustomGibbs with a conjugate normal conditional ----------------------------------------------

Y_DATA = np.array([1.2, 0.4, 2.0, 1.1, 0.7], np.float32)
MU_SD = 2.0


def hierarchy(y):
    mu = jppl.sample("mu", dist.Normal(0.0, MU_SD))
    theta = jppl.sample("theta", dist.Normal(mu, 1.0))
    with jppl.plate("n", y.shape[0]):
        jppl.sample("y", dist.Normal(theta, 1.0), obs=y)


def mu_given_theta(rng_key, gibbs_sites, hmc_sites):
    """mu | theta: prior N(0, MU_SD^2), one unit-variance observation theta."""
    precision = 1.0 / MU_SD**2 + 1.0
    mean = hmc_sites["theta"] / precision
    return {"mu": mean + jax.random.normal(rng_key) / jnp.sqrt(precision)}


@pytest.mark.slow  # the default suite keeps the DiscreteGibbs + NUTS check
def test_custom_gibbs_conjugate_normal_matches_closed_form():
    # theta ~ N(0, MU_SD^2 + 1) a priori; n unit-variance observations
    n = len(Y_DATA)
    precision = 1.0 / (MU_SD**2 + 1.0) + n
    theta_mean, theta_sd = Y_DATA.sum() / precision, 1.0 / np.sqrt(precision)
    shrink = MU_SD**2 / (MU_SD**2 + 1.0)  # E[mu | theta] = shrink * theta
    kernel = Gibbs([(CustomGibbs(mu_given_theta), ["mu"]), (NUTS(hierarchy), None)])
    mcmc = MCMC(
        kernel, num_warmup=300, num_samples=2000, num_chains=2, chain_method="vectorized", **QUIET
    )
    mcmc.run(jax.random.key(3), Y_DATA)
    s = mcmc.get_samples(group_by_chain=True)
    _within(s["theta"], theta_mean, "E[theta]")
    _within(s["mu"], shrink * theta_mean, "E[mu]")
    # second moment of theta: sd within 4 MCSE
    sd_err = abs(np.asarray(s["theta"]).std() - theta_sd)
    assert sd_err < 4 * float(diagnostics.mcse_sd(np.asarray(s["theta"], np.float64)))


# -- DiscreteGibbs on its own: a purely discrete model by enumeration -----------------------------

W = np.array([[0.0, 1.2, -0.5], [0.3, -1.0, 0.8]], np.float32)


def discrete_pair():
    a = jppl.sample("a", dist.Bernoulli(0.3))
    b = jppl.sample("b", dist.Categorical(jnp.array([0.2, 0.5, 0.3])))
    jppl.factor("coupling", jnp.asarray(W)[a, b])


def _pair_posterior():
    joint = np.zeros((2, 3))
    for a, b in itertools.product(range(2), range(3)):
        joint[a, b] = [0.7, 0.3][a] * [0.2, 0.5, 0.3][b] * np.exp(W[a, b])
    return joint / joint.sum()


@pytest.mark.parametrize(
    "random_walk, modified",
    [
        (False, False),
        pytest.param(False, True, marks=pytest.mark.slow),
        pytest.param(True, False, marks=pytest.mark.slow),
        pytest.param(True, True, marks=pytest.mark.slow),
    ],
)
def test_discrete_gibbs_alone_matches_enumeration(random_walk, modified):
    kernel = DiscreteGibbs(discrete_pair, random_walk=random_walk, modified=modified)
    if not (random_walk or modified):  # also: a NUTS block for the (no) remaining sites
        kernel = Gibbs([(kernel, discrete_latent_sites), (NUTS(discrete_pair), None)])
    mcmc = MCMC(
        kernel, num_warmup=100, num_samples=3000, num_chains=2, chain_method="vectorized", **QUIET
    )
    mcmc.run(jax.random.key(7))
    s = mcmc.get_samples(group_by_chain=True)
    joint = _pair_posterior()
    for a, b in itertools.product(range(2), range(3)):
        _within((s["a"] == a) & (s["b"] == b), joint[a, b], f"P(a={a}, b={b})")


# -- supports set by another block's sites -------------------------------------------------------


def bounded():
    k = jppl.sample("k", dist.Exponential(1.0))
    x = jppl.sample("x", dist.Uniform(0.0, k))
    jppl.sample("y", dist.Normal(x, 0.5), obs=0.8)


@pytest.mark.slow
def test_support_set_by_another_nuts_block_matches_a_grid():
    """NumPyro refuses value-dependent supports across blocks; here each block's conditional
    is the joint density on the flat (unconstrained) position, Jacobians included, so a
    Uniform(0, k) site in another block than k is sampled exactly (checked on a 2-d grid)."""
    k = np.linspace(1e-4, 15.0, 3000)[:, None]
    x = np.linspace(1e-4, 15.0, 3000)[None, :]
    w = stats.expon.pdf(k) * (x < k) / k * stats.norm.pdf(0.8, x, 0.5)
    w /= w.sum()
    kernel = Gibbs([(NUTS(bounded), ["k"]), (NUTS(bounded), ["x"])])
    mcmc = MCMC(
        kernel, num_warmup=500, num_samples=3000, num_chains=2, chain_method="vectorized", **QUIET
    )
    mcmc.run(jax.random.key(1))
    s = mcmc.get_samples(group_by_chain=True)
    _within(s["k"], float((w * k).sum()), "E[k]")
    _within(s["x"], float((w * x).sum()), "E[x]")


# -- each NUTS block adapts its own step size ----------------------------------------------------


def two_scales():
    jppl.sample("a", dist.Normal(0.0, 0.01))
    jppl.sample("b", dist.Normal(0.0, 100.0))


@pytest.mark.slow
def test_each_nuts_block_adapts_its_own_step_size():
    """Without mass-matrix adaptation a common step size cannot serve scales 0.01 and 100:
    each block's own dual averaging finds step sizes ~1e4 apart, stored as the state's step
    size (block a, the reference) and the folded ratio on b's coordinate."""
    opts = dict(adapt_mass_matrix=False)
    kernel = Gibbs([(NUTS(two_scales, **opts), ["a"]), (NUTS(two_scales, **opts), ["b"])])
    mcmc = MCMC(
        kernel, num_warmup=400, num_samples=1000, num_chains=2, chain_method="vectorized", **QUIET
    )
    mcmc.run(jax.random.key(11), extra_fields=("accept_prob",))
    state = mcmc.last_state
    eps_a = np.asarray(state.step_size)
    imm = np.asarray(state.inverse_mass_matrix)
    eps_b = eps_a * np.sqrt(imm[:, 1])  # the folded (eps_b / eps_a)^2 on b's coordinate
    np.testing.assert_array_equal(imm[:, 0], 1.0)
    assert np.all((eps_a > 1e-3) & (eps_a < 0.05)), eps_a
    assert np.all((eps_b > 10.0) & (eps_b < 500.0)), eps_b
    s = mcmc.get_samples(group_by_chain=True)
    _within(s["a"], 0.0, "E[a]")
    _within(s["b"], 0.0, "E[b]")
    assert 0.6 < float(np.mean(mcmc.get_extra_fields()["accept_prob"])) < 0.98


# -- chain methods and checkpoints ----------------------------------------------------------------


def _kernel():
    return Gibbs(
        [
            (DiscreteGibbs(mixture, random_walk=True), discrete_latent_sites),
            (CustomGibbs(y_given_x), ["y"]),
            (HMC(mixture, num_steps=5), None),
        ]
    )


def _raw(x):
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(x))
    return np.asarray(x)


@pytest.mark.slow
def test_chains_split_over_a_chain_mesh_give_the_sequential_draws():
    draws = {}
    for name, options in (
        ("sharded", {"mesh": jppl.parallel.make_mesh(chain=2)}),
        ("sequential", {"chain_method": "sequential"}),
    ):
        mcmc = MCMC(_kernel(), num_warmup=20, num_samples=20, num_chains=2, **options, **QUIET)
        mcmc.run(jax.random.key(5), PROBS, LOCS)
        draws[name] = mcmc.get_samples(group_by_chain=True)
    for site in ("c", "x", "y"):
        np.testing.assert_array_equal(draws["sharded"][site], draws["sequential"][site])


@pytest.mark.slow
def test_save_and_resume_give_the_uninterrupted_draws(tmp_path):
    options = dict(num_warmup=30, num_chains=2, chain_method="vectorized", **QUIET)
    whole = MCMC(_kernel(), num_samples=40, **options)
    whole.run(jax.random.key(5), PROBS, LOCS)

    first = MCMC(_kernel(), num_samples=20, **options)
    first.run(jax.random.key(5), PROBS, LOCS)
    path = first.save(tmp_path / "ckpt")
    other = Gibbs([(DiscreteGibbs(mixture), discrete_latent_sites), (NUTS(mixture), None)])
    with pytest.raises(ValueError, match="does not match the checkpoint"):
        MCMC.load(path, other)
    second = MCMC.load(path, _kernel(), progress_bar=False, warn=False)
    second.run(None, PROBS, LOCS)

    expected = whole.get_samples(group_by_chain=True)
    for name in ("c", "x", "y"):
        got = np.concatenate(
            [first.get_samples(True)[name], second.get_samples(True)[name]], axis=1
        )
        np.testing.assert_array_equal(got, expected[name])
    for a, b in zip(second.last_state, whole.last_state, strict=True):
        np.testing.assert_array_equal(_raw(a), _raw(b))


@pytest.mark.slow
def test_init_params_and_the_state_log_density():
    """``init_params`` gives every site (HMC sites unconstrained: identity here); the state's
    log density is the model's log joint at the last draw."""
    kernel = Gibbs([(DiscreteGibbs(mixture), ["c"]), (NUTS(mixture), ["x", "y"])])
    init = {"c": jnp.array(2), "x": jnp.array(0.25), "y": jnp.array(-0.5)}
    mcmc = MCMC(kernel, num_warmup=5, num_samples=3, **QUIET)
    mcmc.run(jax.random.key(0), PROBS, LOCS, init_params=init)
    last = {k: v[-1] for k, v in mcmc.get_samples().items()}
    c, x, y = int(last["c"]), float(last["x"]), float(last["y"])
    expected = (
        np.log(PROBS[c])
        + stats.norm.logpdf(x, LOCS[c], X_SD)
        + stats.norm.logpdf(y, 0, Y_SD)
        + stats.norm.logpdf(OBS, x + y, 1.0)
    )
    np.testing.assert_allclose(float(mcmc.last_state.logdensity[0]), expected, rtol=1e-5)
    with pytest.raises(ValueError, match=r"missing site\(s\) \['y'\]"):
        MCMC(kernel, num_warmup=5, num_samples=3, **QUIET).run(
            jax.random.key(0), PROBS, LOCS, init_params={"c": init["c"], "x": init["x"]}
        )


# -- selectors and errors -------------------------------------------------------------------------


def test_selectors_on_a_trace():
    def model():
        jppl.sample("a", dist.Bernoulli(0.5))
        jppl.sample("b", dist.Normal(0.0, 1.0))
        jppl.sample("e", dist.Categorical(jnp.ones(3) / 3), infer={"enumerate": "parallel"})
        jppl.sample("o", dist.Normal(0.0, 1.0), obs=0.3)

    tr = jppl.handlers.trace(jppl.handlers.seed(model, 0)).get_trace()
    assert latent_sample_sites(tr) == ("a", "b", "e")
    assert discrete_latent_sites(tr) == ("a",)


def subsampled(y):
    mu = jppl.sample("mu", dist.Normal(0.0, 1.0))
    with jppl.plate("n", y.shape[0], subsample_size=2):
        jppl.sample("y", dist.Normal(mu, 1.0), obs=jppl.subsample(y, event_dim=0))


def _run(kernel, *args):
    MCMC(kernel, num_warmup=2, num_samples=2, **QUIET).run(jax.random.key(0), *args)


def test_invalid_blocks_are_named():
    d, n = DiscreteGibbs(mixture), NUTS(mixture)
    with pytest.raises(ValueError, match="at least one block"):
        Gibbs([])
    with pytest.raises(ValueError, match="at most one block can use None"):
        Gibbs([(d, None), (n, None)])
    with pytest.raises(ValueError, match=r"list of site names, got the string 'x'"):
        Gibbs([(n, "x"), (d, None)])
    with pytest.raises(ValueError, match="HMCGibbs.*not supported"):
        Gibbs([(HMCGibbs(n, y_given_x, ["y"]), None)])
    with pytest.raises(ValueError, match="potential function"):
        Gibbs([(NUTS(potential_fn=lambda z: z**2), ["x"]), (d, None)])
    with pytest.raises(ValueError, match="share the same model"):
        Gibbs([(d, ["c"]), (NUTS(subsampled), None)])
    with pytest.raises(ValueError, match="at least one block built on a model"):
        Gibbs([(CustomGibbs(y_given_x), None)])
    with pytest.raises(ValueError, match=r"blocks \[0, 1\] are HMC kernels .*trajectory_length"):
        Gibbs([(HMC(mixture), ["x"]), (HMC(mixture), ["y"]), (d, None)])
    with pytest.raises(ValueError, match="CustomGibbs: gibbs_fn must be a callable"):
        CustomGibbs(None)

    # at init (MCMC.run)
    with pytest.raises(ValueError, match=r"sites \['x'\] are owned by more than one block"):
        _run(Gibbs([(n, ["x", "y"]), (NUTS(mixture), ["x"]), (d, ["c"])]), PROBS, LOCS)
    with pytest.raises(ValueError, match=r"latent sites \['y'\] are not owned by any block"):
        _run(Gibbs([(n, ["x"]), (d, ["c"])]), PROBS, LOCS)
    with pytest.raises(ValueError, match=r"sites \['z'\] of block 0 are not latent sample sites"):
        _run(Gibbs([(n, ["z"]), (d, None)]), PROBS, LOCS)
    with pytest.raises(ValueError, match=r"sites \['obs'\] of block 0 are not latent"):
        _run(Gibbs([(n, ["obs"]), (d, None)]), PROBS, LOCS)
    with pytest.raises(ValueError, match=r"discrete latent sites \['c'\] cannot be sampled by"):
        _run(Gibbs([(n, None)]), PROBS, LOCS)
    with pytest.raises(ValueError, match=r"DiscreteGibbs block 0 owns the continuous site 'x'"):
        _run(Gibbs([(d, ["c", "x"]), (n, None)]), PROBS, LOCS)
    with pytest.raises(ValueError, match="block 0 .* owns no sites"):
        no_discrete = Gibbs(
            [(DiscreteGibbs(hierarchy), discrete_latent_sites), (NUTS(hierarchy), None)]
        )
        _run(no_discrete, Y_DATA)
    with pytest.raises(ValueError, match="DiscreteGibbs block 0 owns the continuous site"):
        _run(DiscreteGibbs(mixture), PROBS, LOCS)  # on its own: all latent sites discrete
    with pytest.raises(NotImplementedError, match="subsampling plates"):
        _run(Gibbs([(NUTS(subsampled), None)]), Y_DATA)
    with pytest.raises(ValueError, match="only usable as a block of Gibbs"):
        _run(CustomGibbs(y_given_x))
    bad_fn = CustomGibbs(lambda rng_key, gibbs_sites, hmc_sites: {"x": hmc_sites["x"]})
    with pytest.raises(ValueError, match=r"exactly the sites \['y'\], got \['x'\]"):
        _run(Gibbs([(bad_fn, ["y"]), (d, ["c"]), (n, None)]), PROBS, LOCS)

    def dynamic_support():
        k = jppl.sample("k", dist.Exponential(1.0))
        x = jppl.sample("x", dist.Uniform(0.0, k))
        jppl.sample("y", dist.Normal(x, 1.0), obs=0.5)

    custom_k = CustomGibbs(lambda rng_key, gibbs_sites, hmc_sites: gibbs_sites)
    with pytest.raises(ValueError, match=r"support of site\(s\) \['x'\] depends on the Custom"):
        _run(Gibbs([(custom_k, ["k"]), (NUTS(dynamic_support), None)]))
