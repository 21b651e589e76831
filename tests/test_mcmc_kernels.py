"""Tests of the pure MCMC kernels (leapfrog, metrics, U-turn checks, HMC and NUTS).

Statistical checks compare against closed-form Gaussian truth; Monte Carlo tolerances use
batch-means standard errors so that they track the effective sample size of the chains.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jppl.mcmc import hmc, nuts
from jppl.mcmc.integrators import IntegratorState, hamiltonian, velocity_verlet
from jppl.mcmc.metrics import gaussian_euclidean
from jppl.mcmc.termination import (
    init_turning_checkpoints,
    is_turning_after_merge,
    iterative_turning_update,
)

# ---------------------------------------------------------------------------------------------
# Targets and helpers
# ---------------------------------------------------------------------------------------------


def _std_normal_logdensity(x):
    return -0.5 * jnp.sum(x**2)


_NUTS_STD = nuts.kernel(_std_normal_logdensity)
_HMC_STD = hmc.kernel(_std_normal_logdensity)


def _random_covariance(dim, seed, scale_range=(0.3, 3.0)):
    """A dense covariance with varied scales and correlations (float64 numpy)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(dim, 2 * dim))
    w = a @ a.T / (2 * dim)
    s = np.sqrt(np.diag(w))
    corr = w / np.outer(s, s)
    scales = np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]), size=dim))
    return corr * np.outer(scales, scales)


def _gaussian_logdensity(cov):
    precision = jnp.asarray(np.linalg.inv(cov), dtype=jnp.float32)

    def logdensity(x):
        return -0.5 * x @ (precision @ x)

    return logdensity


@partial(jax.jit, static_argnums=(0, 4))
def _run_chains(kernel, params, key, init_positions, num_samples):
    """``(chains, num_samples, d)`` draws and stacked infos from ``kernel`` via scan + vmap.

    Jitted with the kernel static, so tests sharing a module-level kernel and shapes share
    one compilation (the parameters are traced).
    """

    def one_chain(chain_key, position):
        def body(state, step_key):
            state, info = kernel.step(step_key, state, params)
            return state, (state.position, info)

        keys = jax.random.split(chain_key, num_samples)
        _, out = jax.lax.scan(body, kernel.init(position), keys)
        return out

    chain_keys = jax.random.split(key, init_positions.shape[0])
    return jax.vmap(one_chain)(chain_keys, init_positions)


def _batch_means(values, num_batches=20):
    """Mean and batch-means standard error of ``values`` ``(chains, draws, ...)``."""
    values = np.asarray(values, dtype=np.float64)
    chains, draws = values.shape[:2]
    size = draws // num_batches
    batches = values[:, : size * num_batches].reshape(
        (chains, num_batches, size) + values.shape[2:]
    )
    means = batches.mean(axis=2).reshape((chains * num_batches,) + values.shape[2:])
    return values.mean(axis=(0, 1)), means.std(axis=0, ddof=1) / np.sqrt(means.shape[0])


def _assert_moments(samples, mean, cov, num_sigma=5.0, max_rel_se=0.1):
    """Mean and second moments (centred at the true mean) within ``num_sigma`` MC errors.

    ``cov`` is ``(d,)`` (marginal variances only) or ``(d, d)``. ``max_rel_se`` bounds the
    standard errors relative to the scale of each quantity, so that a stuck or wildly
    autocorrelated chain cannot pass through huge error bars.
    """
    samples = np.asarray(samples, dtype=np.float64)
    var = np.diag(cov) if cov.ndim == 2 else cov
    est_mean, se_mean = _batch_means(samples)
    np.testing.assert_array_less(np.abs(est_mean - mean), num_sigma * se_mean + 1e-3)
    np.testing.assert_array_less(se_mean, max_rel_se * np.sqrt(var))
    centred = samples - mean
    if cov.ndim == 1:
        est, se = _batch_means(centred**2)
        scale = var
    else:
        est, se = _batch_means(centred[..., :, None] * centred[..., None, :])
        scale = np.sqrt(np.outer(var, var))
    np.testing.assert_array_less(np.abs(est - cov), num_sigma * se + 1e-3 * scale)
    np.testing.assert_array_less(se, max_rel_se * scale)


# ---------------------------------------------------------------------------------------------
# Leapfrog integrator
# ---------------------------------------------------------------------------------------------


def _leapfrog_setup(inverse_mass):
    cov = jnp.asarray([[2.0, 0.6], [0.6, 0.5]])
    logdensity = _gaussian_logdensity(np.asarray(cov, dtype=np.float64))
    metric = gaussian_euclidean(inverse_mass)
    step = velocity_verlet(logdensity, metric.velocity)
    x0 = jnp.asarray([0.7, -0.4])
    p0 = jnp.asarray([0.3, 1.1])
    logp, grad = jax.value_and_grad(logdensity)(x0)
    return metric, step, IntegratorState(x0, p0, logp, grad)


def _integrate(step, state, step_size, num_steps):
    return jax.lax.fori_loop(0, num_steps, lambda _, s: step(s, step_size), state)


@pytest.mark.parametrize(
    "inverse_mass", [jnp.asarray([1.0, 0.5]), jnp.asarray([[1.0, 0.2], [0.2, 0.5]])]
)
def test_leapfrog_energy_error_is_second_order(inverse_mass):
    metric, step, state = _leapfrog_setup(inverse_mass)
    h0 = hamiltonian(metric.kinetic_energy, state)

    def max_energy_error(step_size, num_steps):
        def body(s, _):
            s = step(s, step_size)
            return s, hamiltonian(metric.kinetic_energy, s)

        _, energies = jax.lax.scan(body, state, None, length=num_steps)
        return float(jnp.max(jnp.abs(energies - h0)))

    # Integrate to the same time T = 2 with step sizes h and h / 2.
    err_coarse = max_energy_error(0.1, 20)
    err_fine = max_energy_error(0.05, 40)
    assert err_coarse < 0.05
    ratio = err_coarse / err_fine
    assert 3.0 < ratio < 5.0, ratio


@pytest.mark.parametrize(
    "inverse_mass", [jnp.asarray([1.0, 0.5]), jnp.asarray([[1.0, 0.2], [0.2, 0.5]])]
)
def test_leapfrog_reversibility(inverse_mass):
    _, step, state = _leapfrog_setup(inverse_mass)
    forward = _integrate(step, state, 0.1, 25)
    flipped = forward._replace(momentum=-forward.momentum)
    back = _integrate(step, flipped, 0.1, 25)
    np.testing.assert_allclose(back.position, state.position, atol=1e-5)
    np.testing.assert_allclose(-back.momentum, state.momentum, atol=1e-5)
    # Negative step sizes run time backwards.
    back_neg = _integrate(step, forward, -0.1, 25)
    np.testing.assert_allclose(back_neg.position, state.position, atol=1e-5)
    np.testing.assert_allclose(back_neg.momentum, state.momentum, atol=1e-5)


def test_leapfrog_one_step_time_reversal_and_cached_gradient():
    calls = []

    def logdensity(x):
        calls.append(None)  # counts traces, i.e. gradient evaluations per traced step
        return -0.5 * jnp.sum(x**2) - 0.1 * jnp.sum(x**4)

    metric = gaussian_euclidean(jnp.asarray([1.0, 2.0, 0.5]))
    step = velocity_verlet(logdensity, metric)  # a Metric works too
    x0 = jnp.asarray([0.3, -1.2, 0.8])
    logp, grad = jax.value_and_grad(logdensity)(x0)
    state = IntegratorState(x0, jnp.asarray([1.0, 0.2, -0.5]), logp, grad)
    calls.clear()
    one = step(state, 0.2)
    assert len(calls) == 1
    np.testing.assert_allclose(one.logdensity, logdensity(one.position), rtol=1e-6)
    np.testing.assert_allclose(one.logdensity_grad, jax.grad(logdensity)(one.position), rtol=1e-6)
    back = step(one._replace(momentum=-one.momentum), 0.2)
    np.testing.assert_allclose(back.position, x0, atol=2e-6)
    np.testing.assert_allclose(-back.momentum, state.momentum, atol=2e-6)
    np.testing.assert_allclose(back.logdensity, logp, atol=2e-6)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def test_diagonal_metric():
    inv_mass = np.asarray([0.5, 2.0, 4.0], dtype=np.float32)
    metric = gaussian_euclidean(inv_mass)
    p = jnp.asarray([1.0, -2.0, 0.5])
    np.testing.assert_allclose(metric.kinetic_energy(p), 0.5 * np.sum(inv_mass * p**2), rtol=1e-6)
    np.testing.assert_allclose(metric.velocity(p), inv_mass * p, rtol=1e-6)
    keys = jax.random.split(jax.random.key(1), 100_000)
    draws = np.asarray(jax.vmap(metric.sample_momentum, (0, None))(keys, jnp.zeros(3)))
    assert draws.dtype == np.float32
    np.testing.assert_allclose(draws.mean(0), 0.0, atol=0.03)
    np.testing.assert_allclose(draws.var(0), 1.0 / inv_mass, rtol=0.03)


def test_dense_metric():
    cov = _random_covariance(4, seed=3)  # plays the role of M^{-1}
    metric = gaussian_euclidean(jnp.asarray(cov, dtype=jnp.float32))
    p = jnp.asarray([1.0, -2.0, 0.5, 0.3])
    np.testing.assert_allclose(metric.kinetic_energy(p), 0.5 * p @ cov @ p, rtol=1e-5)
    np.testing.assert_allclose(metric.velocity(p), cov @ np.asarray(p), rtol=1e-5)
    keys = jax.random.split(jax.random.key(2), 200_000)
    draws = np.asarray(jax.vmap(metric.sample_momentum, (0, None))(keys, jnp.zeros(4)))
    mass = np.linalg.inv(cov)
    np.testing.assert_allclose(np.cov(draws.T), mass, atol=0.03 * np.max(np.abs(mass)))
    # Energy of a draw is chi-square(d) / 2 whatever the mass matrix.
    energies = jax.vmap(metric.kinetic_energy)(jnp.asarray(draws))
    np.testing.assert_allclose(np.mean(energies), 2.0, rtol=0.02)


def test_metric_check_turning_and_validation():
    metric = gaussian_euclidean(jnp.ones(2))
    v_left, v_right = jnp.asarray([1.0, 0.0]), jnp.asarray([0.0, 1.0])
    assert not metric.check_turning(v_left, v_right, jnp.asarray([1.0, 1.0]))
    assert metric.check_turning(v_left, v_right, jnp.asarray([1.0, -1.0]))
    assert metric.check_turning(v_left, v_right, jnp.asarray([-1.0, 1.0]))
    with pytest.raises(ValueError):
        gaussian_euclidean(jnp.ones((2, 2, 2)))


# ---------------------------------------------------------------------------------------------
# Iterative U-turn checks against a recursive reference (Stan's build_tree structure)
# ---------------------------------------------------------------------------------------------


def _turning(v_left, v_right, rho):
    return not (rho @ v_left > 0 and rho @ v_right > 0)


def _recursive_first_failure(momenta, inverse_mass, extra_checks=True):
    """Index of the step at which a recursive subtree build stops on a U-turn, or ``None``.

    Diagonal metric (velocity = inverse_mass * momentum); follows the recursion of the
    recursive NUTS subtree build with Stan's checks.
    """
    step = [0]

    def build(depth):
        """Returns (valid, rho, (p_first, v_first), (p_last, v_last))."""
        if depth == 0:
            p = momenta[step[0]]
            step[0] += 1
            return True, p.copy(), (p, inverse_mass * p), (p, inverse_mass * p)
        ok, rho_a, first_a, last_a = build(depth - 1)
        if not ok:
            return False, None, None, None
        ok, rho_b, first_b, last_b = build(depth - 1)
        if not ok:
            return False, None, None, None
        rho = rho_a + rho_b
        turning = _turning(first_a[1], last_b[1], rho)
        if extra_checks:
            turning |= _turning(first_a[1], first_b[1], rho_a + first_b[0])
            turning |= _turning(last_a[1], last_b[1], rho_b + last_a[0])
        return (not turning), rho, first_a, last_b

    ok = build(int(np.log2(len(momenta))))[0]
    return None if ok else step[0] - 1


_jit_turning_update = jax.jit(iterative_turning_update)


def _iterative_first_failure(momenta, inverse_mass, max_tree_depth):
    m = jnp.asarray(momenta, dtype=jnp.float32)
    v = jnp.asarray(momenta * inverse_mass, dtype=jnp.float32)
    checkpoints = init_turning_checkpoints(max_tree_depth, m[0])
    for n in range(len(momenta)):
        checkpoints, turning = _jit_turning_update(checkpoints, n, m[n], v[n])
        if bool(turning):
            return n
    return None


def test_iterative_uturn_matches_recursive_reference():
    rng = np.random.default_rng(0)
    outcomes = {"full": 0, "early": 0, "extra_only": 0}
    inverse_mass = np.asarray([1.0, 3.0])
    for trial in range(80):
        depth = 2 + trial % 5
        num = 2**depth
        # Integer momenta and inverse masses keep every sum and dot product exact in float32.
        if trial % 2:  # a slowly rotating drift plus noise: turns at all levels
            angle = rng.uniform(0, 2 * np.pi) + np.arange(num) * rng.uniform(0.03, 0.5)
            drift = 8 * np.stack([np.cos(angle), np.sin(angle)], -1)
            momenta = np.round(drift + rng.normal(0, 3, (num, 2)))
        else:  # a noisy forward drift: often caught only by the checks across halves
            momenta = np.round(np.stack([rng.uniform(-2, 8, num), rng.normal(0, 4, num)], -1))
        expected = _recursive_first_failure(momenta, inverse_mass)
        # The stacks must work both at their tightest (depth = L - 1) and with spare rows.
        for max_tree_depth in (depth + 1, 8):
            got = _iterative_first_failure(momenta, inverse_mass, max_tree_depth)
            assert got == expected, (trial, max_tree_depth)
        if expected is None:
            outcomes["full"] += 1
        else:
            outcomes["early"] += 1
            if _recursive_first_failure(momenta, inverse_mass, extra_checks=False) != expected:
                outcomes["extra_only"] += 1
    # The cases exercise complete subtrees, early stops and stops due to the extra checks.
    assert all(v >= 3 for v in outcomes.values()), outcomes


def test_merge_extra_checks():
    check = gaussian_euclidean(jnp.ones(2)).check_turning
    e1, e2 = jnp.asarray([1.0, 0.0]), jnp.asarray([0.0, 1.0])
    # Whole-segment check passes, but the left segment plus the first state on the right fails.
    left_sum = jnp.asarray([1.0, 0.0])
    right_sum = jnp.asarray([3.0, 1.0])
    first_right = jnp.asarray([-2.0, 0.5])
    args = (e1, e1, e1, left_sum, first_right, first_right, e2 + e1, right_sum)
    assert not check(e1, e1 + e2, left_sum + right_sum)
    assert is_turning_after_merge(check, *args)
    # Everything pointing the same way is not turning.
    same = (e1, e1, e1, 2 * e1, e1, e1, e1, 3 * e1)
    assert not is_turning_after_merge(check, *same)


# ---------------------------------------------------------------------------------------------
# HMC
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 10])
def test_hmc_standard_normal(dim):
    kernel = _HMC_STD
    params = hmc.HMCParams(
        step_size=0.3, inverse_mass_matrix=jnp.ones(dim), num_integration_steps=5
    )
    x0 = jax.random.normal(jax.random.key(1), (4, dim))
    xs, info = _run_chains(kernel, params, jax.random.key(2), x0, 2000)
    assert xs.shape == (4, 2000, dim)
    assert 0.8 < float(info.acceptance_rate.mean()) <= 1.0
    assert not bool(info.is_divergent.any())
    _assert_moments(xs, np.zeros(dim), np.ones(dim))


def test_hmc_correlated_dense_mass():
    cov = np.asarray([[1.0, 0.95], [0.95, 1.0]]) * np.asarray([[4.0, 1.0], [1.0, 0.25]])
    kernel = hmc.kernel(_gaussian_logdensity(cov))
    params = hmc.HMCParams(0.4, jnp.asarray(cov, dtype=jnp.float32), 4)
    xs, info = _run_chains(kernel, params, jax.random.key(3), jnp.zeros((4, 2)), 2000)
    assert float(info.acceptance_rate.mean()) > 0.8
    _assert_moments(xs, np.zeros(2), cov)


def test_hmc_acceptance_and_divergence_flags():
    kernel = _HMC_STD
    state = kernel.init(jnp.ones(3))
    new, info = jax.jit(kernel.step)(jax.random.key(0), state, hmc.HMCParams(1e-3, jnp.ones(3), 3))
    assert float(info.acceptance_rate) > 0.999 and bool(info.is_accepted)
    assert int(info.num_integration_steps) == 3
    np.testing.assert_allclose(new.logdensity, _std_normal_logdensity(new.position), rtol=1e-6)
    _, info = jax.jit(kernel.step)(jax.random.key(0), state, hmc.HMCParams(50.0, jnp.ones(3), 10))
    assert bool(info.is_divergent) and not bool(info.is_accepted)
    assert float(info.acceptance_rate) == 0.0


# ---------------------------------------------------------------------------------------------
# NUTS: statistical checks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [1, 10])
def test_nuts_standard_normal(dim):
    kernel = _NUTS_STD
    params = nuts.NUTSParams(step_size=0.5, inverse_mass_matrix=jnp.ones(dim))
    x0 = jax.random.normal(jax.random.key(4), (4, dim))
    xs, info = _run_chains(kernel, params, jax.random.key(5), x0, 2000)
    assert 0.8 < float(info.acceptance_rate.mean()) <= 1.0
    assert not bool(info.is_divergent.any())
    _assert_moments(xs, np.zeros(dim), np.ones(dim))


def test_nuts_correlated_2d_dense_mass():
    cov = np.asarray([[4.0, 0.95 * 2 * 0.5], [0.95 * 2 * 0.5, 0.25]])
    kernel = nuts.kernel(_gaussian_logdensity(cov))
    params = nuts.NUTSParams(0.6, jnp.asarray(cov, dtype=jnp.float32))
    xs, info = _run_chains(kernel, params, jax.random.key(6), jnp.zeros((4, 2)), 2000)
    assert float(info.acceptance_rate.mean()) > 0.8
    # With the exact covariance as mass matrix the sampler sees an isotropic Gaussian.
    assert float(info.tree_depth.mean()) < 4
    _assert_moments(xs, np.zeros(2), cov)


def test_nuts_correlated_100d_dense_mass():
    dim = 100
    cov = _random_covariance(dim, seed=7)
    kernel = nuts.kernel(_gaussian_logdensity(cov))
    params = nuts.NUTSParams(0.5, jnp.asarray(cov, dtype=jnp.float32))
    # Start from a draw of the target so that no burn-in is needed.
    chol = np.linalg.cholesky(cov)
    x0 = jnp.asarray(np.random.default_rng(8).normal(size=(4, dim)) @ chol.T, dtype=jnp.float32)
    xs, info = _run_chains(kernel, params, jax.random.key(9), x0, 1000)
    assert float(info.acceptance_rate.mean()) > 0.6
    assert not bool(info.is_divergent.any())
    _assert_moments(xs, np.zeros(dim), np.diag(cov))


def test_nuts_leaves_banana_invariant():
    """One transition from exact draws of a non-Gaussian target yields exact draws again.

    Target: ``x1 ~ N(0, 1)``, ``x2 | x1 ~ N(x1^2 / 2, 0.5^2)``. Getting the multinomial or the
    biased progressive sampling wrong shifts these moments by many standard errors.
    """

    def logdensity(x):
        return -0.5 * x[0] ** 2 - 0.5 * ((x[1] - 0.5 * x[0] ** 2) / 0.5) ** 2

    kernel = nuts.kernel(logdensity)
    # A largish step and a mismatched mass: energy errors, uneven weights, U-turns.
    params = nuts.NUTSParams(0.5, jnp.asarray([1.0, 0.7]))
    num = 200_000
    rng = np.random.default_rng(10)
    x1 = rng.normal(size=num)
    x0 = np.stack([x1, 0.5 * x1**2 + 0.5 * rng.normal(size=num)], -1)
    keys = jax.random.split(jax.random.key(11), num)
    step = jax.jit(jax.vmap(lambda k, x: kernel.step(k, kernel.init(x), params)))
    new, info = step(keys, jnp.asarray(x0, dtype=jnp.float32))
    y = np.asarray(new.position, dtype=np.float64)
    assert np.mean(np.any(y != x0.astype(np.float32), axis=1)) > 0.5  # the chain moves
    assert float(info.acceptance_rate.mean()) < 0.9  # the step size is not trivially small
    assert float(info.tree_depth.mean()) > 1.5
    a, b = y[:, 0], y[:, 1]
    moments = {  # statistic: exact expectation
        "x1": (a, 0.0),
        "x1^2": (a**2, 1.0),
        "x1^4": (a**4, 3.0),
        "x2": (b, 0.5),
        "x2^2": (b**2, 1.0),
        "x1 x2": (a * b, 0.0),
        "x1^2 x2": (a**2 * b, 1.5),
    }
    for name, (values, truth) in moments.items():
        z = (values.mean() - truth) / (values.std() / np.sqrt(num))
        assert abs(z) < 5, (name, values.mean(), truth, z)


# ---------------------------------------------------------------------------------------------
# NUTS: tree mechanics
# ---------------------------------------------------------------------------------------------


def test_nuts_max_tree_depth():
    dim = 3
    kernel = nuts.kernel(_std_normal_logdensity, max_tree_depth=3)
    keys = jax.random.split(jax.random.key(12), 64)
    # A tiny step never turns within 7 steps: every tree is complete and stops at the bound.
    _, info = jax.jit(jax.vmap(kernel.step, (0, None, None)))(
        keys, kernel.init(jnp.ones(dim)), nuts.NUTSParams(1e-3, jnp.ones(dim))
    )
    np.testing.assert_array_equal(info.tree_depth, 3)
    np.testing.assert_array_equal(info.num_steps, 2**3 - 1)
    assert not bool(info.is_turning.any()) and not bool(info.is_divergent.any())
    np.testing.assert_allclose(info.acceptance_rate, 1.0, atol=1e-5)
    with pytest.raises(ValueError):
        nuts.build_kernel(_std_normal_logdensity, max_tree_depth=0)


def test_nuts_uturn_stops_trajectories():
    # Same kernel and shapes as test_nuts_standard_normal[1], so the compilation is shared.
    params = nuts.NUTSParams(0.1, jnp.ones(1))
    _, info = _run_chains(_NUTS_STD, params, jax.random.key(13), jnp.zeros((4, 1)), 2000)
    # Half a period of the unit Gaussian is ~pi / 0.1 ~ 31 steps: depth about 4-6, never 10.
    depth = np.asarray(info.tree_depth)
    steps = np.asarray(info.num_steps)
    assert depth.mean() < 7 and depth.max() < 10
    assert bool(info.is_turning.all()) and not bool(info.is_divergent.any())
    assert float(info.acceptance_rate.mean()) > 0.99
    # Bounds, and num_steps consistent with the depth: the kept subtrees (2^depth - 1 steps)
    # plus at most one partial, discarded subtree.
    assert depth.max() <= 10 and steps.max() <= 2**10 - 1
    assert np.all(steps >= 2**depth - 1) and np.all(steps <= 2 ** (depth + 1) - 1)


def test_nuts_divergence():
    def logdensity(x):  # stiff inside a box, NaN outside
        inside = jnp.all(jnp.abs(x) < 5.0)
        return jnp.where(inside, -100.0 * jnp.sum(x**4), jnp.nan)

    kernel = nuts.kernel(logdensity)
    state = kernel.init(jnp.full(2, 0.5))
    keys = jax.random.split(jax.random.key(14), 32)
    step = jax.jit(jax.vmap(kernel.step, (0, None, None)))
    # 0.3: the first step stays in the box with a huge energy error; 10: it lands on NaN.
    for step_size in (0.3, 10.0):
        new, info = step(keys, state, nuts.NUTSParams(step_size, jnp.ones(2)))
        assert bool(info.is_divergent.all())
        # The very first step diverges, so the chain stays put.
        np.testing.assert_array_equal(info.tree_depth, 0)
        np.testing.assert_array_equal(info.num_steps, 1)
        np.testing.assert_array_equal(new.position, np.broadcast_to(state.position, (32, 2)))
        assert float(info.acceptance_rate.max()) < 1e-6
        assert not bool(info.is_turning.any())


def test_nuts_reproducible_and_vmap_matches_loop():
    dim, chains, draws = 5, 2, 20
    cov = _random_covariance(dim, seed=15)
    logdensity = _gaussian_logdensity(cov)
    kernel = nuts.kernel(logdensity)
    params = nuts.NUTSParams(0.3, jnp.asarray(np.diag(cov), dtype=jnp.float32))
    x0 = jax.random.normal(jax.random.key(16), (chains, dim))
    out1 = _run_chains(kernel, params, jax.random.key(17), x0, draws)
    out2 = _run_chains(kernel, params, jax.random.key(17), x0, draws)
    for a, b in zip(jax.tree.leaves(out1), jax.tree.leaves(out2), strict=True):
        np.testing.assert_array_equal(a, b)

    chain_keys = jax.random.split(jax.random.key(17), chains)
    step = jax.jit(kernel.step)
    for c in range(chains):
        state = kernel.init(x0[c])
        keys = jax.random.split(chain_keys[c], draws)
        for t in range(draws):
            state, info = step(keys[t], state, params)
            np.testing.assert_allclose(state.position, out1[0][c, t], rtol=1e-4, atol=1e-5)
            assert int(info.num_steps) == int(out1[1].num_steps[c, t])
            assert int(info.tree_depth) == int(out1[1].tree_depth[c, t])

    # State and info are consistent with the target.
    assert isinstance(state, nuts.NUTSState) and isinstance(info, nuts.NUTSInfo)
    assert state.position.dtype == jnp.float32 and info.momentum.shape == (dim,)
    np.testing.assert_allclose(state.logdensity, logdensity(state.position), rtol=1e-5)
    np.testing.assert_allclose(
        state.logdensity_grad, jax.grad(logdensity)(state.position), rtol=1e-4, atol=1e-5
    )
    # The reported energy belongs to the selected point, so it is at least -log p there.
    assert float(info.energy) >= -float(state.logdensity)
    assert 0.0 <= float(info.acceptance_rate) <= 1.0


def test_invalid_start_stays_put():
    def logdensity(x):  # -inf outside the unit box
        return jnp.where(jnp.all(jnp.abs(x) < 1.0), -0.5 * jnp.sum(x**2), -jnp.inf)

    x0 = jnp.asarray([2.0, 0.0])
    for module, params in (
        (nuts, nuts.NUTSParams(0.1, jnp.ones(2))),
        (hmc, hmc.HMCParams(0.1, jnp.ones(2), 5)),
    ):
        kernel = module.kernel(logdensity)
        new, info = jax.jit(kernel.step)(jax.random.key(20), kernel.init(x0), params)
        np.testing.assert_array_equal(new.position, x0)
        assert bool(info.is_divergent)
        assert float(info.acceptance_rate) == 0.0


def test_dtypes_follow_the_position():
    kernel = nuts.kernel(_std_normal_logdensity)
    with jax.enable_x64(True):
        # float64 positions give float64 states; a float64 mass matrix does not promote float32.
        for dtype in (jnp.float64, jnp.float32):
            state = kernel.init(jnp.ones(3, dtype=dtype))
            params = nuts.NUTSParams(0.5, np.ones(3))
            new, info = jax.jit(kernel.step)(jax.random.key(21), state, params)
            assert new.position.dtype == dtype and info.momentum.dtype == dtype
            assert np.isfinite(float(info.energy))


# ---------------------------------------------------------------------------------------------
# NUTS: whole trajectories against a recursive reference
# ---------------------------------------------------------------------------------------------


def _wall_target(cov, wall):
    """Gaussian log density plus a steep quadratic wall beyond ``x[0] = wall``.

    Returns the jax log density and a float64 numpy ``(logdensity, gradient)`` pair.
    """
    precision = np.linalg.inv(np.asarray(cov, dtype=np.float64))
    stiffness = 0.0 if wall is None else 5e3
    wall = 0.0 if wall is None else wall

    def logdensity(x):
        over = jnp.maximum(x[0] - wall, 0.0)
        return -0.5 * x @ (jnp.asarray(precision, dtype=x.dtype) @ x) - stiffness * over**2

    def logdensity_np(x):
        return -0.5 * x @ precision @ x - stiffness * max(x[0] - wall, 0.0) ** 2

    def grad_np(x):
        g = -precision @ x
        g[0] -= 2 * stiffness * max(x[0] - wall, 0.0)
        return g

    return logdensity, (logdensity_np, grad_np)


def _reference_shape_distribution(target, x0, p0, step_size, max_tree_depth, threshold):
    """Exact law of (tree_depth, num_steps, is_turning, is_divergent) of one NUTS transition.

    Recursive (Stan-style) tree building in float64 with identity mass, enumerating every
    sequence of extension directions (each has probability 1/2 per doubling).
    """
    logdensity, grad = target

    def energy(x, p):
        h = -logdensity(x) + 0.5 * p @ p
        return np.inf if np.isnan(h) else h

    def leapfrog(x, p, eps):
        p = p + 0.5 * eps * grad(x)
        x = x + eps * p
        return x, p + 0.5 * eps * grad(x)

    h0 = energy(x0, p0)

    def build(x, p, depth, eps):
        """Returns (valid, diverged, x, p, rho, p_first, p_last, num_steps)."""
        if depth == 0:
            x, p = leapfrog(x, p, eps)
            h = energy(x, p)
            diverged = not (h - h0 <= threshold)
            return not diverged, diverged, x, p, p.copy(), p, p, 1
        ok, div, x, p, rho_a, first_a, last_a, n_a = build(x, p, depth - 1, eps)
        if not ok:
            return False, div, x, p, None, None, None, n_a
        ok, div, x, p, rho_b, first_b, last_b, n_b = build(x, p, depth - 1, eps)
        if not ok:
            return False, div, x, p, None, None, None, n_a + n_b
        rho = rho_a + rho_b
        turning = (
            _turning(first_a, last_b, rho)
            or _turning(first_a, first_b, rho_a + first_b)
            or _turning(last_a, last_b, rho_b + last_a)
        )
        return not turning, False, x, p, rho, first_a, last_b, n_a + n_b

    law = {}

    def record(outcome, prob):
        law[outcome] = law.get(outcome, 0.0) + prob

    def expand(left, right, rho, depth, num_steps, prob):
        if depth == max_tree_depth:
            record((depth, num_steps, False, False), prob)
            return
        for forward in (True, False):
            (x, p), eps = (right, step_size) if forward else (left, -step_size)
            ok, div, x, p, rho_new, first, last, n = build(x, p, depth, eps)
            steps = num_steps + n
            if not ok:
                record((depth, steps, not div, div), prob / 2)
                continue
            near = right[1] if forward else left[1]
            far = left[1] if forward else right[1]
            turning = (
                _turning(far, last, rho + rho_new)
                or _turning(far, first, rho + first)
                or _turning(near, last, rho_new + near)
            )
            if turning:
                record((depth + 1, steps, True, False), prob / 2)
                continue
            new_left, new_right = (left, (x, p)) if forward else ((x, p), right)
            expand(new_left, new_right, rho + rho_new, depth + 1, steps, prob / 2)

    expand((x0, p0), (x0, p0), p0.copy(), 0, 0, 1.0)
    return law


@pytest.mark.parametrize(
    "case",
    [
        # smooth: trajectories stop on U-turns at various depths
        dict(cov=[[1.0, 0.9], [0.9, 1.0]], wall=None, x0=[0.3, -0.2], p0=[0.7, 0.4], eps=0.15),
        # a wall ahead: subtrees growing forwards diverge, at several depths
        dict(cov=[[4.0, 0.0], [0.0, 1.0]], wall=1.0, x0=[0.2, 0.1], p0=[1.0, 0.2], eps=0.1),
        # max depth reached
        dict(cov=[[1.0, 0.0], [0.0, 4.0]], wall=None, x0=[0.5, 1.0], p0=[0.3, 1.0], eps=0.01),
    ],
)
def test_nuts_trajectory_law_matches_recursive_reference(case):
    from jppl.mcmc.trajectory import build_trajectory

    max_tree_depth = 10 if case["eps"] > 0.05 else 5
    logdensity, target_np = _wall_target(case["cov"], case["wall"])
    x0, p0 = np.asarray(case["x0"]), np.asarray(case["p0"])
    law = _reference_shape_distribution(target_np, x0, p0, case["eps"], max_tree_depth, 1000.0)

    metric = gaussian_euclidean(jnp.ones(2))
    integrator = velocity_verlet(logdensity, metric)
    x = jnp.asarray(x0, dtype=jnp.float32)
    logp, grad = jax.value_and_grad(logdensity)(x)
    initial = IntegratorState(x, jnp.asarray(p0, dtype=jnp.float32), logp, grad)
    num = 20_000

    @jax.jit
    @jax.vmap
    def shapes(key):
        traj = build_trajectory(integrator, metric, initial, case["eps"], key, max_tree_depth)
        return traj.depth, traj.num_steps, traj.is_turning, traj.is_diverging

    out = [np.asarray(a) for a in shapes(jax.random.split(jax.random.key(22), num))]
    counts = {}
    for outcome in zip(*[a.tolist() for a in out], strict=True):
        counts[outcome] = counts.get(outcome, 0) + 1
    # Every outcome the sampler produced is possible, with the right frequency.
    assert sum(c for o, c in counts.items() if o not in law) <= 0.001 * num, (counts, law)
    for outcome, prob in law.items():
        freq = counts.get(outcome, 0) / num
        assert abs(freq - prob) <= 5 * np.sqrt(prob * (1 - prob) / num) + 1e-3, (
            outcome,
            freq,
            prob,
        )
