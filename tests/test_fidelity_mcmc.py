"""NumPyro 0.22 fidelity of the MCMC front end (issue 15): model arguments as constants
(``jit_model_args``), the real error behind a failed initialization, ``chain_method``
("parallel", a callable transform), collected warm-up draws, the NUTS/HMC options
``trajectory_length``, ``max_tree_depth=(warmup, sampling)``, ``find_heuristic_step_size``,
``forward_mode_differentiation``, ``regularize_mass_matrix``, and models without latent sites.

Expected values are closed forms (conjugate normal posteriors, normal log densities from
SciPy, sample variances from NumPy) or exact properties of the run (shapes, bitwise equality
of the same chains, the step size and tree depths used).
"""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jppl
import jppl.distributions as dist
from jppl.infer import Predictive, init_to_value
from jppl.mcmc import HMC, MCMC, NUTS
from jppl.mcmc.adaptation import window_scheme

KEY = jax.random.key(0)


def _mcmc(sampler, **options):
    defaults = dict(num_warmup=150, num_samples=600, progress_bar=False, warn=False)
    return MCMC(sampler, **{**defaults, **options})


# -- 12. model arguments as constants (jit_model_args) -------------------------------------------


def numpy_model(data):
    """Needs concrete data: one latent coordinate per distinct value, centred on the data's
    mean; no observation, so the posterior is the prior ``N(mean(data), 1)`` per coordinate."""
    k = len(np.unique(data))
    centre = float(np.mean(data))
    jppl.sample("mu", dist.Normal(centre, 1.0).expand([k]).to_event(1))


def test_model_using_numpy_on_its_data_runs_and_a_new_run_sees_new_data():
    mcmc = _mcmc(NUTS(numpy_model))
    data = np.array([1.0, 2.0, 3.0, 3.0])
    mcmc.run(KEY, data)
    mu = np.asarray(mcmc.get_samples()["mu"])
    assert mu.shape == (600, 3)
    np.testing.assert_allclose(mu.mean(0), 2.25, atol=0.3)
    np.testing.assert_allclose(mu.std(0), 1.0, rtol=0.2)
    # Other values of the same shape: constants, so compiled again for them (not stale).
    mcmc.run(KEY, np.array([-5.0, -5.0, -5.0, -5.0]))
    mu = np.asarray(mcmc.get_samples()["mu"])
    assert mu.shape == (600, 1)
    np.testing.assert_allclose(mu.mean(0), -5.0, atol=0.3)
    # The same array changed in place is new data too.
    data[:] = [7.0, 7.0, 9.0, 9.0]
    mcmc.run(KEY, data)
    mu = np.asarray(mcmc.get_samples()["mu"])
    assert mu.shape == (600, 2)
    np.testing.assert_allclose(mu.mean(0), 8.0, atol=0.3)


def test_jit_model_args_true_refuses_a_model_that_needs_concrete_arguments():
    mcmc = _mcmc(NUTS(numpy_model), jit_model_args=True)
    with pytest.raises(ValueError, match=r"jit_model_args=False"):
        mcmc.run(KEY, np.array([1.0, 2.0]))


def test_jit_model_args_true_traces_the_data_and_does_not_trace_again():
    calls = []

    def model(y):
        calls.append(1)
        mu = jppl.sample("mu", dist.Normal(0.0, 1.0))
        jppl.sample("y", dist.Normal(mu, 1.0), obs=y)

    mcmc = _mcmc(NUTS(model), jit_model_args=True)
    mcmc.run(KEY, jnp.full(4, 2.0))
    traced = len(calls)
    y = jnp.full(4, -3.0)
    mcmc.run(KEY, y)
    assert len(calls) == traced  # same shapes: nothing traced again
    # conjugate posterior N(sum(y) / (n + 1), 1 / (n + 1))
    mu = np.asarray(mcmc.get_samples()["mu"])
    np.testing.assert_allclose(mu.mean(), float(y.sum()) / 5, atol=0.15)


# -- 14. the real error behind a failed initialization -------------------------------------------


def test_invalid_latent_parameter_is_named_with_validation():
    def model():
        jppl.sample("x", dist.Normal(0.0, -1.0))

    dist.enable_validation()
    with pytest.raises(ValueError, match=r"Sample site 'x'.*parameter `scale`"):
        _mcmc(NUTS(model), num_warmup=5, num_samples=5).run(KEY)


def test_init_to_value_outside_the_support_names_the_site():
    def model():
        jppl.sample("s", dist.HalfNormal(1.0))

    dist.enable_validation()
    sampler = NUTS(model, init_strategy=init_to_value(values={"s": -1.0}))
    with pytest.raises(ValueError, match=r"Latent site 's'.*outside its support"):
        _mcmc(sampler, num_warmup=5, num_samples=5).run(KEY)


def test_nan_observation_names_the_site():
    def model(y):
        mu = jppl.sample("mu", dist.Normal(0.0, 1.0))
        jppl.sample("y", dist.Normal(mu, 1.0), obs=y)

    dist.enable_validation()
    with pytest.raises(ValueError, match=r"Sample site 'y': observed value is outside"):
        _mcmc(NUTS(model), num_warmup=5, num_samples=5).run(KEY, jnp.array([1.0, jnp.nan]))


def test_init_params_missing_a_site_names_it():
    def model():
        jppl.sample("a", dist.Normal(0.0, 1.0))
        jppl.sample("b", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"missing site\(s\) \['b'\]"):
        _mcmc(NUTS(model), num_warmup=5, num_samples=5).run(KEY, init_params={"a": 0.0})


# -- chain_method ------------------------------------------------------------------------------


def normal_model():
    jppl.sample("x", dist.Normal(1.0, 2.0))


def test_chain_method_parallel_is_sharded_when_devices_suffice():
    assert jax.device_count() >= 2
    parallel = _mcmc(NUTS(normal_model), num_chains=2, chain_method="parallel", num_samples=50)
    sharded = _mcmc(NUTS(normal_model), num_chains=2, chain_method="sharded", num_samples=50)
    assert parallel.chain_method == "sharded"
    parallel.run(KEY)
    sharded.run(KEY)
    np.testing.assert_array_equal(parallel.get_samples()["x"], sharded.get_samples()["x"])


def test_chain_method_parallel_warns_and_runs_sequentially_without_enough_devices():
    chains = jax.device_count() + 1
    with pytest.warns(UserWarning, match=r"chain_method='parallel' needs a device per chain"):
        mcmc = _mcmc(NUTS(normal_model), num_chains=chains, chain_method="parallel")
    assert mcmc.chain_method == "sequential"


@pytest.mark.slow  # moved out of the default suite's 15-min budget
def test_chain_method_callable_transform():
    mapped = _mcmc(NUTS(normal_model), num_chains=3, chain_method=jax.vmap)
    vectorized = _mcmc(NUTS(normal_model), num_chains=3, chain_method="vectorized")
    mapped.run(KEY)
    vectorized.run(KEY)
    x = np.asarray(mapped.get_samples(group_by_chain=True)["x"])
    assert x.shape == (3, 600)
    np.testing.assert_array_equal(x, vectorized.get_samples(group_by_chain=True)["x"])
    np.testing.assert_allclose(x.mean(), 1.0, atol=0.25)
    np.testing.assert_allclose(x.std(), 2.0, rtol=0.1)
    with pytest.raises(ValueError, match=r"chain_method must be one of"):
        _mcmc(NUTS(normal_model), chain_method="pmap")


# -- collect_warmup --------------------------------------------------------------------------


def test_warmup_collects_the_warmup_draws():
    mcmc = _mcmc(NUTS(normal_model), num_warmup=99, num_samples=10, num_chains=2)
    mcmc.warmup(KEY, collect_warmup=True, extra_fields=("z",))
    x = np.asarray(mcmc.get_samples(group_by_chain=True)["x"])
    assert x.shape == (2, 99)
    # thinning 1: the last warm-up draw is the adapted chains' position
    np.testing.assert_array_equal(x[:, -1], mcmc.post_warmup_state.position[:, 0])
    assert mcmc.get_extra_fields(group_by_chain=True)["z"].shape == (2, 99, 1)
    # the same warm-up as without collecting
    plain = _mcmc(NUTS(normal_model), num_warmup=99, num_samples=10, num_chains=2)
    plain.warmup(KEY)
    np.testing.assert_array_equal(plain.post_warmup_state.position, mcmc.post_warmup_state.position)


def test_run_collect_warmup_keeps_warmup_then_sampling_draws_thinned():
    options = dict(num_warmup=100, num_samples=60, num_chains=2, thinning=3)
    collected = _mcmc(NUTS(normal_model), **options)
    collected.run(KEY, collect_warmup=True)
    plain = _mcmc(NUTS(normal_model), **options)
    plain.run(KEY)
    x = np.asarray(collected.get_samples(group_by_chain=True)["x"])
    assert x.shape == (2, 100 // 3 + 60 // 3)
    np.testing.assert_array_equal(x[:, 33:], plain.get_samples(group_by_chain=True)["x"])
    warm = _mcmc(NUTS(normal_model), **options)
    warm.warmup(KEY, collect_warmup=True)
    np.testing.assert_array_equal(x[:, :33], warm.get_samples(group_by_chain=True)["x"])


# -- NUTS / HMC options ----------------------------------------------------------------------


@pytest.mark.slow  # moved out of the default suite's 15-min budget
def test_nuts_trajectory_length_has_no_effect_as_in_numpyro():
    a = _mcmc(NUTS(normal_model, trajectory_length=0.1), num_samples=50)
    b = _mcmc(NUTS(normal_model), num_samples=50)
    a.run(KEY)
    b.run(KEY)
    np.testing.assert_array_equal(a.get_samples()["x"], b.get_samples()["x"])


def test_max_tree_depth_pair_limits_warmup_and_sampling_separately():
    # A step size far too small for N(1, 2^2): the trajectory never turns, so each
    # transition stops at the depth limit of its phase.
    sampler = NUTS(normal_model, step_size=1e-3, adapt_step_size=False, max_tree_depth=(2, 5))
    assert sampler.max_tree_depth == 5
    mcmc = _mcmc(sampler, num_warmup=20, num_samples=30)
    mcmc.run(KEY, collect_warmup=True)
    depth = np.asarray(mcmc.get_extra_fields()["tree_depth"])
    np.testing.assert_array_equal(depth[:20], 2)
    np.testing.assert_array_equal(depth[20:], 5)
    np.testing.assert_array_equal(mcmc.get_extra_fields()["num_steps"][20:], 2**5 - 1)
    with pytest.raises(ValueError, match=r"max_tree_depth"):
        NUTS(normal_model, max_tree_depth=(2, 5, 7))


@pytest.mark.parametrize("kernel", [NUTS, HMC])
def test_find_heuristic_step_size(kernel):
    # False (NumPyro's default): the first warm-up transition uses the given step size; True
    # (jppl's default, Stan's warm-up) searches (doubling/halving) from it before that one.
    used = {}
    for search in (False, True):
        mcmc = _mcmc(
            kernel(normal_model, step_size=0.0123, find_heuristic_step_size=search),
            num_warmup=30,
        )
        mcmc.warmup(KEY, collect_warmup=True)
        used[search] = float(mcmc.get_extra_fields()["step_size"][0])
    assert used[False] == pytest.approx(0.0123, rel=1e-6)
    assert used[True] > 0.1  # 0.0123 accepts almost surely: the search doubles it


def test_forward_mode_differentiation_with_a_while_loop():
    y = jnp.array([0.5, 1.5, 2.0, 1.0])

    def model(y):
        mu = jppl.sample("mu", dist.Normal(0.0, 1.0))

        # mu / 3 added three times: reverse mode cannot differentiate a while_loop
        def body(carry):
            i, total = carry
            return i + 1, total + mu / 3.0

        _, loc = jax.lax.while_loop(lambda c: c[0] < 3, body, (0, jnp.zeros_like(mu)))
        jppl.sample("y", dist.Normal(loc, 1.0), obs=y)

    with pytest.raises(ValueError, match=r"[Rr]everse-mode differentiation"):
        _mcmc(NUTS(model), num_warmup=5, num_samples=5).run(KEY, y)
    mcmc = _mcmc(NUTS(model, forward_mode_differentiation=True), num_samples=1000)
    mcmc.run(KEY, y)
    mu = np.asarray(mcmc.get_samples()["mu"])
    # conjugate posterior: N(sum(y) / (n + 1), 1 / (n + 1))
    np.testing.assert_allclose(mu.mean(), float(y.sum()) / 5, atol=0.1)
    np.testing.assert_allclose(mu.std(), np.sqrt(1 / 5), rtol=0.15)


@pytest.mark.parametrize("regularize", [True, False])
def test_regularize_mass_matrix_switches_stan_shrinkage(regularize):
    points = np.array([0.3, -1.2, 2.5, 0.7, 1.9, -0.4, 0.0, 3.1], np.float32)
    scheme = window_scheme(lambda x: -0.5 * jnp.sum(x**2), 20, regularize_mass_matrix=regularize)
    chain = SimpleNamespace(position=jnp.zeros(1))
    state = scheme.init(chain)
    key = jax.random.key(1)
    for i, p in enumerate(points):
        end = i == len(points) - 1
        flags = (True, end, False, False, False)
        state = scheme.after(state, key, flags, SimpleNamespace(position=jnp.array([p])), 0.8)
    n, var = len(points), np.var(points, ddof=1)
    expected = n / (n + 5) * var + 1e-3 * 5 / (n + 5) if regularize else var
    np.testing.assert_allclose(state.inverse_mass_matrix, [expected], rtol=1e-5)
    if not regularize:
        with pytest.raises(ValueError, match=r"adaptation='stan'"):
            NUTS(normal_model, adaptation="nutpie", regularize_mass_matrix=False)
        with pytest.raises(ValueError, match=r"adaptation='stan'"):
            NUTS(normal_model, adaptation="nutpie", find_heuristic_step_size=False)


# -- models without latent sites -------------------------------------------------------------


def test_model_without_latent_sites_returns_its_deterministic_sites():
    def model(y=None):
        jppl.deterministic("c", jnp.array(2.0))
        jppl.sample("y", dist.Normal(0.0, 1.0), obs=y)

    mcmc = _mcmc(NUTS(model), num_warmup=10, num_samples=5, num_chains=2)
    mcmc.run(KEY, y=jnp.array(1.0))
    samples = mcmc.get_samples()
    assert set(samples) == {"c"}
    np.testing.assert_array_equal(samples["c"], np.full(10, 2.0))
    np.testing.assert_allclose(
        mcmc.get_extra_fields()["potential_energy"], -stats.norm.logpdf(1.0), rtol=1e-6
    )
    predicted = Predictive(model, samples)(jax.random.key(1))
    assert predicted["y"].shape == (10,)
    assert np.std(np.asarray(predicted["y"])) > 0

    def observed_only(y):
        jppl.sample("y", dist.Normal(0.0, 1.0), obs=y)

    mcmc = _mcmc(HMC(observed_only), num_warmup=10, num_samples=5)
    mcmc.run(KEY, jnp.array(0.5))
    assert mcmc.get_samples() == {}
