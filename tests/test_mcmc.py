"""Tests of the MCMC front end: NUTS / HMC samplers bound to models and the MCMC driver.

Statistical checks compare with closed forms or the posteriordb reference, with tolerances
scaled by the effective sample size. Reproducibility checks (same key, continuation,
save/load, chain methods) are bitwise where the compiled per-chain programs are the same.
Compilation dominates the run time here, so tests share MCMC objects where they can.
"""

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jppl
import jppl.distributions as dist
from jppl import handlers, parallel
from jppl.diagnostics import ConvergenceWarning, ess_bulk
from jppl.infer import init_to_median, init_to_value
from jppl.mcmc import HMC, MCMC, NUTS, MCMCState
from jppl.mcmc.sampler import Sampler
from jppl.reparam import LocScaleReparam

REFERENCE = (
    Path(__file__).resolve().parents[1]
    / "benchmarks/posteriordb/data/eight_schools-eight_schools_noncentered/reference.json"
)
Y = jnp.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = jnp.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools_centered(sigma, y=None):
    mu = jppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = jppl.sample("tau", dist.HalfCauchy(5.0))
    with jppl.plate("schools", sigma.shape[0]):
        theta = jppl.sample("theta", dist.Normal(mu, tau))
        jppl.sample("y", dist.Normal(theta, sigma), obs=y)


def normal_normal(y, sigma=1.0):
    """Conjugate model: ``mu ~ N(1, 2^2)``, ``y_i ~ N(mu, sigma^2)``."""
    mu = jppl.sample("mu", dist.Normal(1.0, 2.0))
    with jppl.plate("data", y.shape[0]):
        jppl.sample("y", dist.Normal(mu, sigma), obs=y)


def small_model(y):
    """Two latent sites (a vector and a positive scalar), cheap to compile and run."""
    loc = jppl.sample("loc", dist.Normal(jnp.zeros(2), 3.0).to_event(1))
    scale = jppl.sample("scale", dist.HalfNormal(2.0))
    with jppl.plate("data", y.shape[0]):
        jppl.sample("y", dist.Normal(loc.sum(), scale), obs=y)


Y_SMALL = jnp.array([0.3, -1.2, 0.8, 2.1, 0.4, -0.5, 1.1, 0.0])


def _quiet(mcmc_kwargs=None, **kwargs):
    return dict(progress_bar=False, warn=False, **(mcmc_kwargs or {}), **kwargs)


def _host(x):
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def _assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(_host(x), _host(y))


# ---------------------------------------------------------------------------------------------
# Shared run: eight schools, 4 chains
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eight_schools_run():
    """Eight schools made non-centered by ``reparam`` (``theta`` becomes deterministic)."""
    model = handlers.reparam(eight_schools_centered, config={"theta": LocScaleReparam(0)})
    mcmc = MCMC(NUTS(model), num_warmup=1000, num_samples=1000, num_chains=4, progress_bar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mcmc.run(jax.random.key(0), SIGMA, y=Y, extra_fields=("z", "mean_accept_prob"))
    return mcmc


def test_eight_schools_matches_posteriordb_reference(eight_schools_run):
    reference = json.loads(REFERENCE.read_text())["parameters"]
    samples = eight_schools_run.get_samples(group_by_chain=True)
    for name in ("mu", "tau"):
        draws = np.asarray(samples[name], np.float64)
        ref = reference[name]
        mean, sd = draws.mean(), draws.std()
        mcse = sd / np.sqrt(float(ess_bulk(draws)))
        assert abs(mean - ref["mean"]) < 4 * np.hypot(mcse, ref["mcse_mean"]), name
        assert abs(sd - ref["sd"]) < 0.1 * ref["sd"], name
    theta = np.asarray(samples["theta"], np.float64).reshape(-1, 8)
    ref_theta = np.array([reference[f"theta[{j + 1}]"]["mean"] for j in range(8)])
    np.testing.assert_allclose(theta.mean(0), ref_theta, atol=0.5)
    assert eight_schools_run.num_divergent < 20


def test_get_samples_shapes_and_deterministic_sites(eight_schools_run):
    flat = eight_schools_run.get_samples()
    grouped = eight_schools_run.get_samples(group_by_chain=True)
    assert set(flat) == {"mu", "tau", "theta_decentered", "theta"}
    assert flat["mu"].shape == (4000,) and flat["theta"].shape == (4000, 8)
    assert grouped["mu"].shape == (4, 1000) and grouped["theta_decentered"].shape == (4, 1000, 8)
    np.testing.assert_allclose(
        grouped["theta"],
        grouped["mu"][..., None] + grouped["tau"][..., None] * grouped["theta_decentered"],
        rtol=1e-5,
        atol=1e-5,
    )
    np.testing.assert_array_equal(flat["theta"], grouped["theta"].reshape(4000, 8))


def test_extra_fields(eight_schools_run):
    fields = eight_schools_run.get_extra_fields(group_by_chain=True)
    for name in ("diverging", "accept_prob", "num_steps", "tree_depth", "energy"):
        assert fields[name].shape == (4, 1000), name
    assert fields["diverging"].dtype == jnp.bool_
    assert fields["z"].shape == (4, 1000, 10)
    np.testing.assert_array_equal(fields["mean_accept_prob"], fields["accept_prob"])
    assert 0.6 < float(jnp.mean(fields["accept_prob"])) < 0.95
    depth = np.asarray(fields["tree_depth"])
    assert np.all(np.asarray(fields["num_steps"]) <= 2 ** (depth + 1) - 1)
    # the step size is constant within a chain and equals the adapted one
    step = np.asarray(fields["step_size"])
    np.testing.assert_array_equal(step, np.repeat(step[:, :1], 1000, axis=1))
    np.testing.assert_array_equal(step[:, 0], eight_schools_run.last_state.step_size)
    # potential energy and energy are consistent: energy = potential + kinetic >= potential
    assert np.all(np.asarray(fields["energy"]) >= np.asarray(fields["potential_energy"]) - 1e-4)
    # z is the flat unconstrained draw: (mu, tau (log), theta_decentered) in sorted order
    samples = eight_schools_run.get_samples(group_by_chain=True)
    np.testing.assert_allclose(fields["z"][..., 0], samples["mu"], rtol=1e-6)
    np.testing.assert_allclose(np.exp(fields["z"][..., 1]), samples["tau"], rtol=1e-5)
    with pytest.raises(ValueError, match="Unknown extra field"):
        eight_schools_run._field_names(("nope",))


def test_last_state_and_print_summary(eight_schools_run, capsys):
    state = eight_schools_run.last_state
    assert isinstance(state, MCMCState)
    assert state.position.shape == (4, 10) and state.inverse_mass_matrix.shape == (4, 10)
    assert state.rng_key.shape == (4,) and np.all(np.asarray(state.step) == 1000)
    np.testing.assert_allclose(state.potential_energy, -state.logdensity)
    eight_schools_run.print_summary(prob=0.8)
    out = capsys.readouterr().out
    assert "mu" in out and "tau" in out and "theta_decentered[7]" in out and "10%" in out
    assert "theta[0]" not in out  # deterministic sites excluded by default
    assert "Number of divergences" in out
    eight_schools_run.print_summary(exclude_deterministic=False)
    assert "theta[0]" in capsys.readouterr().out


def test_to_arviz_groups_and_shapes(eight_schools_run):
    import arviz as az  # a dev dependency on every supported Python

    from jppl.inference_data import arviz_line

    idata = eight_schools_run.to_arviz()
    if arviz_line() == 0:
        assert isinstance(idata, az.InferenceData)
        groups = set(idata.groups())
    else:
        import xarray as xr

        assert isinstance(idata, xr.DataTree)
        groups = set(idata.children)
    assert groups >= {"posterior", "sample_stats", "observed_data", "log_likelihood"}
    post = idata.posterior
    assert post["mu"].dims == ("chain", "draw") and post["mu"].shape == (4, 1000)
    assert post["theta"].shape == (4, 1000, 8)
    stats_names = {"diverging", "tree_depth", "energy", "lp", "step_size", "acceptance_rate"}
    assert stats_names | {"n_steps"} <= set(idata.sample_stats.data_vars)
    fields = eight_schools_run.get_extra_fields(group_by_chain=True)
    np.testing.assert_array_equal(idata.sample_stats["lp"], -np.asarray(fields["potential_energy"]))
    np.testing.assert_array_equal(idata.observed_data["y"], np.asarray(Y))
    loglik = idata.log_likelihood["y"]
    assert loglik.shape == (4, 1000, 8)
    samples = eight_schools_run.get_samples(group_by_chain=True)
    expected = dist.Normal(samples["theta"][1, 7], SIGMA).log_prob(Y)
    np.testing.assert_allclose(loglik[1, 7], expected, rtol=1e-5)
    summary = az.summary(idata, var_names=["mu"], kind="diagnostics", round_to="none")
    assert float(summary.loc["mu", "r_hat"]) < 1.01


def test_second_run_does_not_retrace_or_recompile():
    traces = []

    def model(y):
        traces.append(1)  # runs once per trace of the model
        small_model(y)

    mcmc = MCMC(NUTS(model), num_warmup=50, num_samples=50, num_chains=2, **_quiet())
    mcmc.run(jax.random.key(0), Y_SMALL)
    first = len(traces)
    compiled = len(mcmc._compiled)
    mcmc.run(jax.random.key(1), Y_SMALL + 1.0)  # new data, same shapes
    assert len(traces) == first, "the model was traced again"
    assert len(mcmc._compiled) == compiled
    # the new data was used: the posterior of loc[0] + loc[1] moved by about 1
    shift = float(jnp.mean(mcmc.get_samples()["loc"].sum(-1)))
    assert shift > 0.8


# ---------------------------------------------------------------------------------------------
# Correctness of the posterior
# ---------------------------------------------------------------------------------------------


def test_conjugate_normal_normal():
    rng = np.random.default_rng(0)
    y = jnp.asarray(rng.normal(0.7, 1.5, size=20), jnp.float32)
    mcmc = MCMC(NUTS(normal_normal), num_warmup=500, num_samples=1000, num_chains=4, **_quiet())
    mcmc.run(jax.random.key(1), y, sigma=1.5)
    draws = np.asarray(mcmc.get_samples(group_by_chain=True)["mu"], np.float64)
    precision = 1 / 2.0**2 + len(y) / 1.5**2
    mean = (1.0 / 2.0**2 + float(jnp.sum(y)) / 1.5**2) / precision
    sd = precision**-0.5
    mcse = draws.std() / np.sqrt(float(ess_bulk(draws)))
    assert abs(draws.mean() - mean) < 4 * mcse
    assert abs(draws.std() - sd) < 0.05 * sd


def _random_covariance(dim, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(dim, 2 * dim))
    w = a @ a.T / (2 * dim)
    s = np.sqrt(np.diag(w))
    corr = w / np.outer(s, s)
    scales = np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=dim))
    return corr * np.outer(scales, scales)


@pytest.mark.slow  # moved out of the default suite's 15-min budget
def test_nuts_dense_mass_recovers_correlated_gaussian_100d():
    dim = 100
    cov = _random_covariance(dim, 0)
    mean = np.linspace(-3, 3, dim)
    chol = np.linalg.cholesky(cov)

    def model():
        jppl.sample(
            "x",
            dist.MultivariateNormal(
                jnp.asarray(mean, jnp.float32), scale_tril=jnp.asarray(chol, jnp.float32)
            ),
        )

    mcmc = MCMC(
        NUTS(model, dense_mass=True), num_warmup=500, num_samples=500, num_chains=2, **_quiet()
    )
    mcmc.run(jax.random.key(0))
    x = np.asarray(mcmc.get_samples(group_by_chain=True)["x"], np.float64)
    assert mcmc.last_state.inverse_mass_matrix.shape == (2, dim, dim)
    # whiten: z = L^{-1} (x - mean) is N(0, I) if the draws are right
    z = np.linalg.solve(chol, (x.reshape(-1, dim) - mean).T).T
    ess = float(np.min(ess_bulk(z.reshape(2, 500, dim))))
    assert ess > 300
    assert np.max(np.abs(z.mean(0))) < 5.0 / np.sqrt(ess)
    err = np.cov(z.T) - np.eye(dim)
    assert np.linalg.norm(err) < 1.6 * dim / np.sqrt(ess)  # ~ d / sqrt(ESS) expected
    assert np.max(np.abs(np.diag(err))) < 6 * np.sqrt(2 / ess)
    # a good dense metric gives short trajectories
    assert float(np.mean(np.asarray(mcmc.get_extra_fields()["tree_depth"]))) < 5


def test_hmc_and_nutpie_adaptations_recover_conjugate_posterior():
    rng = np.random.default_rng(1)
    y = jnp.asarray(rng.normal(-0.4, 1.0, size=10), jnp.float32)
    precision = 1 / 4.0 + 10.0
    mean = (1.0 / 4.0 + float(jnp.sum(y))) / precision
    for sampler in (
        HMC(normal_normal, num_steps=5),
        NUTS(normal_normal, adaptation="nutpie"),
    ):
        mcmc = MCMC(sampler, num_warmup=300, num_samples=1000, num_chains=2, **_quiet())
        mcmc.run(jax.random.key(2), y)
        draws = np.asarray(mcmc.get_samples(group_by_chain=True)["mu"], np.float64)
        mcse = draws.std() / np.sqrt(float(ess_bulk(draws)))
        assert abs(draws.mean() - mean) < 4 * mcse, type(sampler).__name__
        assert abs(draws.std() - precision**-0.5) < 0.1 * precision**-0.5


@pytest.mark.slow
def test_simulation_based_calibration():
    """SBC (Talts et al. 2018) on a small hierarchical model: 200 data sets from the prior,
    100 thinned posterior draws each; the rank of the true value among them is uniform."""
    num_groups = 4

    def model(y):
        mu = jppl.sample("mu", dist.Normal(0.0, 1.0))
        tau = jppl.sample("tau", dist.HalfNormal(1.0))
        with jppl.plate("groups", num_groups):
            z = jppl.sample("z", dist.Normal(0.0, 1.0))
            jppl.sample("y", dist.Normal(mu + tau * z, 1.0), obs=y)

    rng = np.random.default_rng(0)
    mcmc = MCMC(NUTS(model), num_warmup=300, num_samples=1000, thinning=10, **_quiet())
    ranks = {"mu": [], "tau": []}
    for i in range(200):
        mu, tau = rng.normal(), abs(rng.normal())
        y = mu + tau * rng.normal(size=num_groups) + rng.normal(size=num_groups)
        mcmc.run(jax.random.key(i), jnp.asarray(y, jnp.float32))
        samples = mcmc.get_samples()
        ranks["mu"].append(int(np.sum(np.asarray(samples["mu"]) < mu)))
        ranks["tau"].append(int(np.sum(np.asarray(samples["tau"]) < tau)))
    for name, r in ranks.items():
        counts = np.bincount(np.asarray(r) * 10 // 101, minlength=10)
        p_value = stats.chisquare(counts).pvalue
        assert p_value > 0.01, (name, counts)


# ---------------------------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------------------------


def test_same_key_same_draws_bitwise():
    mcmc = MCMC(NUTS(small_model), num_warmup=100, num_samples=100, num_chains=2, **_quiet())
    mcmc.run(jax.random.key(3), Y_SMALL)
    first, first_fields = mcmc.get_samples(), mcmc.get_extra_fields()
    mcmc.run(jax.random.key(3), Y_SMALL)
    _assert_trees_equal(first, mcmc.get_samples())
    _assert_trees_equal(first_fields, mcmc.get_extra_fields())
    # a raw uint32 key (NumPyro-style PRNGKey) is the same key
    mcmc.run(jax.random.PRNGKey(3), Y_SMALL)
    _assert_trees_equal(first, mcmc.get_samples())
    # a batch of per-chain keys is used as is
    mcmc.run(jax.random.split(jax.random.key(3), 2), Y_SMALL)
    _assert_trees_equal(first, mcmc.get_samples())
    mcmc.run(jax.random.key(4), Y_SMALL)
    assert not np.array_equal(first["scale"], mcmc.get_samples()["scale"])


def test_continuation_is_bitwise_one_long_run_and_save_load(tmp_path):
    mcmc = MCMC(NUTS(small_model), num_warmup=150, num_samples=200, num_chains=2, **_quiet())
    mcmc.run(jax.random.key(4), Y_SMALL)
    full = mcmc.get_samples(group_by_chain=True)
    full_fields = mcmc.get_extra_fields(group_by_chain=True)

    mcmc.num_samples = 100  # same warm-up (cached), half the draws
    mcmc.run(jax.random.key(4), Y_SMALL)
    first = mcmc.get_samples(group_by_chain=True)
    mcmc.save(tmp_path / "ckpt.npz")
    mcmc.post_warmup_state = mcmc.last_state
    mcmc.run(mcmc.post_warmup_state.rng_key, Y_SMALL)
    second = mcmc.get_samples(group_by_chain=True)
    joined = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=1), first, second)
    _assert_trees_equal(joined, full)
    np.testing.assert_array_equal(mcmc.last_state.step, [200, 200])

    # a killed job: a new process restores the state from disk and continues
    resumed = MCMC.load(tmp_path / "ckpt.npz", NUTS(small_model), progress_bar=False, warn=False)
    assert resumed.num_samples == 100 and resumed.num_chains == 2
    _assert_trees_equal(resumed.get_samples(group_by_chain=True), first)  # restored samples
    resumed.run(None, Y_SMALL)
    _assert_trees_equal(resumed.get_samples(group_by_chain=True), second)
    fields = resumed.get_extra_fields(group_by_chain=True)
    np.testing.assert_array_equal(fields["diverging"], full_fields["diverging"][:, 100:])
    _assert_trees_equal(resumed.last_state, mcmc.last_state)

    # the checkpoint holds no pickled objects, and a mismatched sampler is refused
    with np.load(tmp_path / "ckpt.npz", allow_pickle=False) as data:
        assert "__jppl__" in data.files  # the JSON record of jppl.checkpoint
        assert all(data[name].dtype != object for name in data.files)
    with pytest.raises(ValueError, match="does not match"):
        MCMC.load(tmp_path / "ckpt.npz", NUTS(small_model, dense_mass=True))

    # a new key after continuing gives a different stream
    mcmc.post_warmup_state = mcmc.last_state
    mcmc.run(jax.random.key(99), Y_SMALL)
    assert not np.array_equal(mcmc.get_samples()["scale"], second["scale"].reshape(-1))


def test_restore_and_the_last_runs_accessors():
    """``restore`` continues another object's chains bitwise (what ``MCMC.load`` does with a
    saved state); the last run's model arguments and samples by name are public."""
    mcmc = MCMC(NUTS(small_model), num_warmup=100, num_samples=40, num_chains=2, **_quiet())
    mcmc.run(jax.random.key(4), Y_SMALL)
    assert len(mcmc.model_args) == 1 and mcmc.model_args[0] is Y_SMALL
    assert mcmc.model_kwargs == {}
    named = mcmc.named_samples
    assert sorted(named) == ["loc", "scale"] and named["loc"].shape == (2, 40, 2)

    other = MCMC(NUTS(small_model), num_warmup=100, num_samples=40, num_chains=2, **_quiet())
    other.restore(mcmc.last_state)
    assert other.post_warmup_state is mcmc.last_state is other.last_state
    other.run(None, Y_SMALL)
    mcmc.post_warmup_state = mcmc.last_state
    mcmc.run(None, Y_SMALL)
    _assert_trees_equal(other.get_samples(), mcmc.get_samples())
    _assert_trees_equal(other.last_state, mcmc.last_state)
    three = MCMC(NUTS(small_model), num_warmup=1, num_samples=1, num_chains=3, **_quiet())
    with pytest.raises(ValueError, match=r"holds 2 chains, num_chains=3"):
        three.restore(mcmc.last_state)
    with pytest.raises(TypeError, match=r"must be an MCMCState"):
        three.restore(mcmc.last_state._asdict())

    # a potential_fn's pytree: its leaves named by their key paths
    def potential(z):
        return 0.5 * (jnp.sum(z[0] ** 2) + z[1] ** 2)

    pot = MCMC(NUTS(potential_fn=potential), num_warmup=20, num_samples=10, **_quiet())
    pot.run(jax.random.key(0), init_params=(jnp.zeros(2), jnp.asarray(0.5)))
    assert {k: v.shape for k, v in pot.named_samples.items()} == {"0": (1, 10, 2), "1": (1, 10)}


class _Delegating:
    """A sampler that is neither NUTS nor HMC: only the members of the ``Sampler`` protocol."""

    def __init__(self, inner):
        self._inner = inner
        self.model = inner.model
        self.state_type = inner.state_type
        self.optional_fields = inner.optional_fields

    @property
    def max_tree_depth(self):
        return self._inner.max_tree_depth

    def config(self):
        return self._inner.config()

    def bind(self, rng_key, model_args, model_kwargs, init_params=None, blocks=None):
        return self._inner.bind(rng_key, model_args, model_kwargs, init_params, blocks)

    def block_mask(self, target):
        return self._inner.block_mask(target)

    def make_warmup(self, logdensity, num_warmup, block_mask=None):
        return self._inner.make_warmup(logdensity, num_warmup, block_mask)

    def transition(self, logdensity):
        return self._inner.transition(logdensity)


SAMPLER_MEMBERS = (
    "model",
    "state_type",
    "optional_fields",
    "max_tree_depth",
    "config",
    "bind",
    "block_mask",
    "make_warmup",
    "transition",
)


def test_samplers_satisfy_the_sampler_protocol():
    """NUTS and HMC are ``Sampler``s; every one of the protocol's nine members is needed, and
    they are all ``MCMC`` uses: a sampler with only those runs the same chains."""
    for sampler in (NUTS(small_model), HMC(small_model), NUTS(potential_fn=jnp.sum)):
        assert isinstance(sampler, Sampler)
    full = {name: getattr(NUTS(small_model), name) for name in SAMPLER_MEMBERS}
    assert isinstance(SimpleNamespace(**full), Sampler)
    for name in SAMPLER_MEMBERS:
        partial = SimpleNamespace(**{k: v for k, v in full.items() if k != name})
        assert not isinstance(partial, Sampler), name
    runs = []
    for sampler in (
        NUTS(small_model, dense_mass=[("loc",)]),
        _Delegating(NUTS(small_model, dense_mass=[("loc",)])),
    ):
        assert isinstance(sampler, Sampler)
        mcmc = MCMC(sampler, num_warmup=60, num_samples=20, num_chains=2, **_quiet())
        mcmc.run(jax.random.key(2), Y_SMALL, extra_fields=("momentum",))
        runs.append(mcmc)
    _assert_trees_equal(runs[0].get_samples(), runs[1].get_samples())
    _assert_trees_equal(runs[0].get_extra_fields(), runs[1].get_extra_fields())


@pytest.mark.slow  # moved out of the default suite's 15-min budget
def test_chain_methods_agree():
    """``sharded`` with one chain per device runs the single-chain program, so it equals
    ``sequential`` bitwise. ``vectorized`` runs the batched program: XLA may round the batched
    arithmetic differently (1 ulp), so it is compared on a short run with fixed tuning, where
    the chains have not yet amplified the rounding, and statistically on the full run."""
    assert jax.device_count() == 8
    results = {}
    for method in ("sequential", "sharded"):
        mcmc = MCMC(
            NUTS(small_model),
            num_warmup=100,
            num_samples=100,
            num_chains=4,
            chain_method=method,
            **_quiet(),
        )
        mcmc.run(jax.random.key(5), Y_SMALL)
        results[method] = mcmc
    seq, shard = results["sequential"], results["sharded"]
    _assert_trees_equal(
        seq.get_samples(group_by_chain=True), shard.get_samples(group_by_chain=True)
    )
    _assert_trees_equal(seq.last_state, shard.last_state)
    # the sharded results live on 4 devices, one chain each
    assert len(shard.get_samples(group_by_chain=True)["scale"].sharding.device_set) == 4
    # same post-warm-up state and fixed tuning: the draws agree to float rounding
    short = {}
    four = parallel.make_mesh(chain=4, devices=jax.devices()[:4])
    for method, mesh in (("vectorized", None), ("sharded", four)):
        mcmc = MCMC(
            NUTS(small_model, adapt_step_size=False, adapt_mass_matrix=False, step_size=0.2),
            num_warmup=0,
            num_samples=30,
            num_chains=8,
            chain_method=method,
            mesh=mesh,
            **_quiet(),
        )
        mcmc.run(jax.random.key(6), Y_SMALL)
        short[method] = mcmc.get_samples(group_by_chain=True)
    for name in ("loc", "scale"):
        np.testing.assert_allclose(short["vectorized"][name], short["sharded"][name], atol=1e-4)


def test_default_chain_method():
    """Sharded when every chain gets its own device (and there are several), else vectorized."""
    assert jax.device_count() == 8
    chosen = [
        MCMC(NUTS(small_model), num_warmup=1, num_samples=1, num_chains=c).chain_method
        for c in (1, 4, 9)
    ]
    assert chosen == ["vectorized", "sharded", "vectorized"]
    # `devices=` is deprecated (choose devices with `mesh=`) but keeps its meaning until removed
    with pytest.warns(DeprecationWarning, match=r"devices=\.\.\.\) is deprecated"):
        few = MCMC(NUTS(small_model), num_warmup=1, num_samples=1, num_chains=4, devices=[None] * 3)
    assert few.chain_method == "vectorized"


def test_single_chain_programs_and_fused_warmup():
    """One chain runs the single-chain program without vmap, so vectorized equals sequential
    bitwise. The warm-up inside the one-loop program is ``window_adaptation(...).run`` with the
    same keys (same tuned step size, inverse mass matrix and position), and warmup() then
    run() equals one run() bitwise."""
    from jppl.mcmc import window_adaptation
    from jppl.mcmc.state import chain_keys

    init = {"loc": jnp.array([0.3, -0.2]), "scale": jnp.asarray(0.1)}
    runs = {}
    for method in ("vectorized", "sequential"):
        mcmc = MCMC(
            NUTS(small_model), num_warmup=150, num_samples=40, chain_method=method, **_quiet()
        )
        mcmc.run(jax.random.key(12), Y_SMALL, init_params=init)
        runs[method] = mcmc
    full = runs["sequential"]
    _assert_trees_equal(runs["vectorized"].get_samples(), full.get_samples())

    split = runs["vectorized"]
    split.warmup(jax.random.key(12), Y_SMALL, init_params=init)
    target = split.sampler.bind(jax.random.key(0), (Y_SMALL,), {})
    key_warm = jax.random.split(chain_keys(jax.random.key(12), 1)[0], 3)[1]
    position = jnp.concatenate([init["loc"], init["scale"][None]])  # sorted site order

    @jax.jit
    def replay(key, position, y):
        return window_adaptation(target.make_logdensity((y,), {}), 150).run(key, position)

    chain, params, _ = replay(key_warm, position, Y_SMALL)
    state = split.post_warmup_state
    np.testing.assert_allclose(state.step_size[0], params.step_size, rtol=1e-5)
    np.testing.assert_allclose(state.inverse_mass_matrix[0], params.inverse_mass_matrix, rtol=1e-5)
    np.testing.assert_allclose(state.position[0], chain.position, rtol=1e-4, atol=1e-5)

    split.run(None, Y_SMALL)
    _assert_trees_equal(split.get_samples(), full.get_samples())
    _assert_trees_equal(split.last_state, full.last_state)


@pytest.mark.slow  # moved out of the default suite's 15-min budget
def test_sharded_pads_uneven_chains():
    mcmc = MCMC(
        NUTS(small_model),
        num_warmup=50,
        num_samples=20,
        num_chains=9,  # 2 per device on 5 of the 8 devices: padded to 10
        chain_method="sharded",
        **_quiet(),
    )
    mcmc.run(jax.random.key(7), Y_SMALL)
    assert mcmc.get_samples(group_by_chain=True)["scale"].shape == (9, 20)
    assert mcmc.last_state.position.shape == (9, 3)
    assert np.all(np.isfinite(np.asarray(mcmc.get_samples()["loc"])))


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------


def test_thinning():
    mcmc = MCMC(NUTS(small_model), num_warmup=50, num_samples=60, **_quiet())
    mcmc.run(jax.random.key(8), Y_SMALL, extra_fields=("z",))
    plain = mcmc.get_extra_fields()["z"]
    mcmc.thinning = 3  # same warm-up (cached), thinned sampling
    mcmc.run(jax.random.key(8), Y_SMALL, extra_fields=("z",))
    assert mcmc.get_samples()["scale"].shape == (20,)
    np.testing.assert_array_equal(mcmc.last_state.step, [60])
    # the kept draws are the last of each block of three
    np.testing.assert_array_equal(mcmc.get_extra_fields()["z"], plain[2::3])


def test_dense_mass_groups_block_structure():
    def model():
        a = jppl.sample("a", dist.Normal(0.0, 1.0))
        jppl.sample("b", dist.Normal(2.0 * a, 0.5))
        jppl.sample("c", dist.Normal(jnp.zeros(2), 1.0).to_event(1))

    mcmc = MCMC(
        NUTS(model, dense_mass=[("a", "b")]),
        num_warmup=500,
        num_samples=100,
        num_chains=4,
        **_quiet(),
    )
    mcmc.run(jax.random.key(9))
    imm = np.asarray(mcmc.last_state.inverse_mass_matrix)
    assert imm.shape == (4, 4, 4)  # flat order: a, b, c[0], c[1]
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    mask[np.diag_indices(4)] = True
    assert np.all(imm[:, ~mask] == 0.0)
    # the block is the posterior covariance of (a, b): [[1, 2], [2, 4.25]]; c is diagonal
    mean = imm.mean(0)
    np.testing.assert_allclose(mean[:2, :2], [[1.0, 2.0], [2.0, 4.25]], rtol=0.3)
    np.testing.assert_allclose(np.diag(mean)[2:], 1.0, rtol=0.3)
    with pytest.raises(ValueError, match="unknown latent site"):
        MCMC(NUTS(model, dense_mass=[("a", "zz")]), num_warmup=10, num_samples=10).run(
            jax.random.key(0)
        )
    with pytest.raises(ValueError, match="several dense_mass groups"):
        NUTS(model, dense_mass=[("a", "b"), ("b",)])


def test_init_strategies_and_init_params():
    def model():
        jppl.sample("s", dist.LogNormal(0.0, 1.0))

    # num_warmup=0 without step-size adaptation: the warm-up leaves the initial point
    def start(**kwargs):
        mcmc = MCMC(
            NUTS(model, adapt_step_size=False, **kwargs), num_warmup=0, num_samples=0, **_quiet()
        )
        mcmc.warmup(jax.random.key(10))
        return float(mcmc.post_warmup_state.position[0, 0])

    assert start(init_strategy=init_to_value(values={"s": 2.0})) == pytest.approx(np.log(2.0))
    assert abs(start(init_strategy=init_to_median(num_samples=31))) < 0.7
    assert -2.0 <= start() <= 2.0  # init_to_uniform: unconstrained value in (-2, 2)

    mcmc = MCMC(NUTS(model), num_warmup=0, num_samples=0, num_chains=2, **_quiet())
    mcmc.warmup(jax.random.key(0), init_params={"s": jnp.array([0.5, -0.5])})
    np.testing.assert_array_equal(mcmc.post_warmup_state.position, [[0.5], [-0.5]])
    fresh = MCMC(NUTS(model), num_warmup=0, num_samples=0, num_chains=2, **_quiet())
    with pytest.raises(ValueError, match="init_params"):
        fresh.warmup(jax.random.key(0), init_params={"s": jnp.ones(3)})


def test_potential_fn_sampler():
    def potential(params):
        return 0.5 * jnp.sum((params["x"] - 1.0) ** 2 / jnp.array([1.0, 4.0]))

    mcmc = MCMC(
        NUTS(potential_fn=potential), num_warmup=300, num_samples=1000, num_chains=2, **_quiet()
    )
    init = {"x": jnp.zeros((2, 2))}
    mcmc.run(jax.random.key(11), init_params=init)
    x = np.asarray(mcmc.get_samples()["x"])
    assert x.shape == (2000, 2)
    np.testing.assert_allclose(x.mean(0), [1.0, 1.0], atol=0.25)
    np.testing.assert_allclose(x.std(0), [1.0, 2.0], rtol=0.15)
    with pytest.raises(ValueError, match="init_params"):
        MCMC(NUTS(potential_fn=potential), num_warmup=1, num_samples=1).run(jax.random.key(0))


def test_unbounded_discrete_latent_site_error():
    def model():
        jppl.sample("k", dist.Poisson(0.3))

    mcmc = MCMC(NUTS(model), num_warmup=10, num_samples=10, **_quiet())
    with pytest.raises(ValueError, match="'k'.*unbounded"):
        mcmc.run(jax.random.key(0))


def test_argument_validation():
    with pytest.raises(ValueError, match="exactly one"):
        NUTS()
    with pytest.raises(ValueError, match="chain_method"):
        MCMC(NUTS(small_model), num_warmup=1, num_samples=1, chain_method="pmap")
    with pytest.raises(ValueError, match="adaptation"):
        NUTS(small_model, adaptation="pymc")
    with pytest.raises(ValueError, match="nutpie_low_rank"):
        NUTS(small_model, adaptation="nutpie", dense_mass=True)
    with pytest.raises(ValueError, match="thinning"):
        MCMC(NUTS(small_model), num_warmup=1, num_samples=1, thinning=0)
    with pytest.raises(RuntimeError, match="run"):
        MCMC(NUTS(small_model), num_warmup=1, num_samples=1).get_samples()


def test_infer_exports():
    from jppl import infer, mcmc

    assert infer.MCMC is MCMC and infer.NUTS is NUTS and infer.HMC is HMC
    assert mcmc.DEFAULT_ADAPTATION == "stan" and callable(mcmc.window_adaptation)
    assert callable(mcmc.nutpie_adaptation) and mcmc.adaptation.DEFAULT_ADAPTATION == "stan"


# ---------------------------------------------------------------------------------------------
# Diagnostics and progress
# ---------------------------------------------------------------------------------------------


def test_warnings_on_pathological_funnel():
    def funnel():
        v = jppl.sample("v", dist.Normal(0.0, 3.0))
        jppl.sample("x", dist.Normal(jnp.zeros(9), jnp.exp(v / 2)).to_event(1))

    sampler = NUTS(funnel, step_size=1.0, adapt_step_size=False, max_tree_depth=4)
    mcmc = MCMC(sampler, num_warmup=20, num_samples=300, num_chains=2, progress_bar=False)
    with pytest.warns(ConvergenceWarning) as record:
        mcmc.run(jax.random.key(13))
    messages = [str(w.message) for w in record]
    assert any("divergent transition" in m for m in messages)
    assert any("maximum tree depth (4)" in m for m in messages)
    assert any("R-hat" in m for m in messages)
    assert any("effective sample size" in m for m in messages)
    assert all(w.filename == __file__ for w in record)  # points at the caller of run()
    assert mcmc.num_divergent >= int(np.sum(np.asarray(mcmc.get_extra_fields()["diverging"])))
    assert mcmc.num_divergent > 0


def test_runs_with_x64_enabled():
    """The sampling loop's carries keep their dtypes when float64/int64 are on."""
    with jax.enable_x64(True):

        def model():
            jppl.sample("x", dist.Normal(0.0, 1.0))

        mcmc = MCMC(NUTS(model), num_warmup=20, num_samples=20, progress_bar=False)
        mcmc.run(jax.random.key(0))
        assert mcmc.get_samples()["x"].dtype == jnp.float64
