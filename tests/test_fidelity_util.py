"""NumPyro fidelity: ``jppl.util`` (JAX settings, ``fori_collect``, ``format_shapes``),
``jppl.infer.util.get_potential_fn``, the functional ``jppl.infer.hmc.hmc`` and the stax
networks of ``jppl.contrib.module``.

Expected values are computed independently: plain Python loops, hand-written tables and
log densities (SciPy), the moments of a known Gaussian within Monte Carlo error.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from jax.example_libraries import stax

import jppl
import jppl.distributions as dist
from jppl.contrib.module import module, random_module
from jppl.diagnostics import mcse_mean
from jppl.handlers import seed, substitute, trace
from jppl.infer import initialize_model, log_density
from jppl.infer.hmc import HMCState, hmc
from jppl.infer.util import get_model_transforms, get_potential_fn
from jppl.util import fori_collect, format_shapes


def _run(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("XLA_FLAGS", None)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=full_env
    )


# ---------------------------------------------------------------------------------------------
# JAX settings
# ---------------------------------------------------------------------------------------------


def test_enable_x64_and_env_fallback():
    done = _run(
        "import jax.numpy as jnp, jppl\n"
        "jppl.enable_x64()\nprint(jnp.zeros(()).dtype)\n"
        "jppl.enable_x64(False)\nprint(jnp.zeros(()).dtype)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["float64", "float32"]
    # enable_x64(False) defers to JAX_ENABLE_X64; "0" means off (NumPyro reads it as on).
    code = "import jax.numpy as jnp, jppl\njppl.enable_x64(False)\nprint(jnp.zeros(()).dtype)"
    assert _run(code, {"JAX_ENABLE_X64": "0"}).stdout.strip() == "float32"
    assert _run(code, {"JAX_ENABLE_X64": "1"}).stdout.strip() == "float64"


def test_set_platform():
    with pytest.raises(ValueError, match="unknown platform.*'gpux'"):
        jppl.set_platform("cpu,gpux")
    done = _run("import jax, jppl\njppl.set_platform('cpu')\nprint(jax.devices()[0].platform)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "cpu"


def test_set_host_device_count_before_and_after_jax_starts():
    done = _run(
        "import os, jax, jppl\njppl.set_host_device_count(3)\n"
        "print(jax.local_device_count())\nprint(os.environ['XLA_FLAGS'])"
    )
    assert done.returncode == 0, done.stderr
    count, flags = done.stdout.strip().splitlines()
    assert count == "3"
    assert "--xla_force_host_platform_device_count=3" in flags
    # Here JAX has started (conftest): NumPyro would silently keep the old count.
    jnp.zeros(()).block_until_ready()
    before = os.environ.get("XLA_FLAGS")
    with pytest.raises(RuntimeError, match="came too late"):
        jppl.set_host_device_count(2)
    assert os.environ.get("XLA_FLAGS") == before
    with pytest.raises(ValueError, match="positive int"):
        jppl.set_host_device_count(0)


# ---------------------------------------------------------------------------------------------
# fori_collect
# ---------------------------------------------------------------------------------------------


def _walk(val):
    key, x, i = val
    key, sub = jax.random.split(key)
    return key, x + jax.random.normal(sub, x.shape), i + 1


def _python_collect(lower, upper, body, val, transform, thinning):
    values = []
    for _ in range(upper):
        val = body(val)
        values.append(transform(val))
    kept = values[lower:]
    kept = kept[len(kept) % thinning :][thinning - 1 :: thinning]
    return kept, val


@pytest.mark.parametrize("progbar", [False, True])
@pytest.mark.parametrize("lower, upper, thinning", [(0, 12, 1), (3, 17, 3), (5, 5, 2)])
def test_fori_collect_matches_a_python_loop(progbar, lower, upper, thinning, monkeypatch):
    # progbar=True: as in a terminal, the live bar and the loop run in compiled chunks.
    monkeypatch.setattr(jppl.util, "is_interactive", lambda: True)
    init = (jax.random.key(1), jnp.zeros(2), jnp.int32(0))
    transform = lambda v: {"x": v[1], "i": v[2]}  # noqa: E731
    expected, last = _python_collect(lower, upper, _walk, init, transform, thinning)
    out, final = fori_collect(
        lower,
        upper,
        _walk,
        init,
        transform=transform,
        progbar=progbar,
        return_last_val=True,
        thinning=thinning,
        progbar_desc=lambda i: f"iteration {i}",
        diagnostics_fn=lambda v: f"x0 {float(v[1][0]):.3f}",
    )
    assert out["x"].shape == (len(expected), 2)
    if expected:
        np.testing.assert_allclose(
            out["x"], np.stack([e["x"] for e in expected]), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_array_equal(out["i"], [int(e["i"]) for e in expected])
    np.testing.assert_allclose(final[1], last[1], rtol=1e-5, atol=1e-6)
    assert int(final[2]) == upper


def test_fori_collect_collection_size_and_errors():
    init = (jax.random.key(0), jnp.zeros(()), jnp.int32(0))
    out = fori_collect(2, 6, _walk, init, transform=lambda v: v[2], collection_size=6)
    np.testing.assert_array_equal(out, [3, 4, 5, 6, 0, 0])
    with pytest.raises(ValueError, match="collection_size=3 is smaller than the 4"):
        fori_collect(2, 6, _walk, init, collection_size=3)
    with pytest.raises(ValueError, match="thinning must be >= 1"):
        fori_collect(0, 6, _walk, init, thinning=0)
    with pytest.raises(ValueError, match="lower <= upper"):
        fori_collect(7, 6, _walk, init)
    with pytest.raises(ValueError, match=r"unknown keyword argument\(s\) \['progress'\]"):
        fori_collect(0, 6, _walk, init, progress=True)


# ---------------------------------------------------------------------------------------------
# format_shapes
# ---------------------------------------------------------------------------------------------


def _shapes_model():
    jppl.param("p", jnp.ones(3))
    jppl.sample("a", dist.Normal(0.0, 1.0))
    with jppl.plate("N", 5):
        jppl.sample("b", dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)))


def test_format_shapes_table():
    model_trace = trace(seed(_shapes_model, 0)).get_trace()
    expected = "\n".join(
        [
            "Trace Shapes:      ",
            " Param Sites:      ",
            "            p   3  ",
            "Sample Sites:      ",
            "       a dist   |  ",
            "        value   |  ",
            "     log_prob   |  ",
            "      N plate 5 |  ",
            "       b dist 5 | 2",
            "        value 5 | 2",
            "     log_prob 5 |  ",
        ]
    )
    assert format_shapes(model_trace, compute_log_prob=True) == expected
    short = format_shapes(model_trace, title="T:", last_site="a")
    assert short == "\n".join(
        [
            "           T:  ",
            " Param Sites:  ",
            "            p 3",
            "Sample Sites:  ",
            "       a dist |",
            "        value |",
        ]
    )
    assert format_shapes({}) == "Trace Shapes:"


# ---------------------------------------------------------------------------------------------
# get_potential_fn
# ---------------------------------------------------------------------------------------------


def _pe_model(y):
    mu = jppl.sample("mu", dist.Normal(1.0, 2.0))
    sigma = jppl.sample("sigma", dist.Exponential(1.5))
    jppl.deterministic("twice", 2.0 * mu)
    jppl.sample("y", dist.Normal(mu, sigma), obs=y)


def _pe_by_hand(y, mu, log_sigma):
    sigma = np.exp(log_sigma)
    log_joint = (
        st.norm(1.0, 2.0).logpdf(mu)
        + st.expon(scale=1 / 1.5).logpdf(sigma)
        + st.norm(mu, sigma).logpdf(y).sum()
        + log_sigma  # log |d sigma / d log_sigma|
    )
    return -log_joint


def test_get_potential_fn_matches_hand_density():
    y = jnp.array([0.3, -1.2, 2.0])
    transforms, _ = get_model_transforms(_pe_model, (y,), rng_key=jax.random.key(0))
    z = {"mu": jnp.array(0.4), "sigma": jnp.array(-0.3)}
    potential_fn, postprocess_fn = get_potential_fn(_pe_model, transforms, model_args=(y,))
    np.testing.assert_allclose(potential_fn(z), _pe_by_hand(y, 0.4, -0.3), rtol=1e-5)
    plain = postprocess_fn(z)
    assert set(plain) == {"mu", "sigma"}
    np.testing.assert_allclose(plain["sigma"], np.exp(-0.3), rtol=1e-6)
    _, replayed = get_potential_fn(_pe_model, transforms, replay_model=True, model_args=(y,))
    np.testing.assert_allclose(replayed(z)["twice"], 0.8, rtol=1e-6)

    gen, post_gen = get_potential_fn(_pe_model, transforms, dynamic_args=True, replay_model=True)
    y2 = jnp.array([1.0, 1.5])
    np.testing.assert_allclose(gen(y2)(z), _pe_by_hand(y2, 0.4, -0.3), rtol=1e-5)
    np.testing.assert_allclose(post_gen(y2)(z)["sigma"], np.exp(-0.3), rtol=1e-6)


def _switch_model(y):
    mu = jppl.sample("mu", dist.Normal(1.0, 2.0))
    k = jppl.sample("k", dist.Bernoulli(0.3))
    with jppl.plate("data", y.shape[0]):
        jppl.sample("y", dist.Normal(mu + 2.0 * k, 1.0), obs=y)


def test_get_potential_fn_enum_sums_out_discrete_sites():
    y = jnp.array([0.3, -1.2, 2.0])
    potential_fn, _ = get_potential_fn(_switch_model, {}, enum=True, model_args=(y,))
    mu = 0.4
    expected = st.norm(1.0, 2.0).logpdf(mu) + np.logaddexp(
        np.log(0.7) + st.norm(mu, 1.0).logpdf(np.asarray(y)).sum(),
        np.log(0.3) + st.norm(mu + 2.0, 1.0).logpdf(np.asarray(y)).sum(),
    )
    np.testing.assert_allclose(potential_fn({"mu": jnp.array(mu)}), -expected, rtol=1e-5)
    gen, _ = get_potential_fn(_switch_model, {}, enum=True, dynamic_args=True)
    np.testing.assert_allclose(gen(y)({"mu": jnp.array(mu)}), -expected, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# The functional HMC interface
# ---------------------------------------------------------------------------------------------

TRUE_MEAN = np.array([1.0, -2.0, 0.5])
TRUE_COV = np.array([[1.0, 0.5, 0.2], [0.5, 2.0, -0.3], [0.2, -0.3, 0.5]])
_PREC = jnp.asarray(np.linalg.inv(TRUE_COV))


def _gaussian_pe(z):
    d = z - jnp.asarray(TRUE_MEAN)
    return 0.5 * d @ _PREC @ d


def _check_moments(draws: np.ndarray, sigmas: float = 5.0) -> None:
    """Mean and covariance of ``draws`` (n, 3) within ``sigmas`` Monte Carlo errors."""
    draws = np.asarray(draws)
    err = mcse_mean(draws[None])
    assert np.all(np.abs(draws.mean(0) - TRUE_MEAN) < sigmas * err), (draws.mean(0), err)
    # Each covariance entry is the mean of a product of centered coordinates.
    centered = draws - TRUE_MEAN
    products = centered[:, :, None] * centered[:, None, :]
    err_cov = mcse_mean(products[None])
    assert np.all(np.abs(products.mean(0) - TRUE_COV) < sigmas * err_cov)


def test_hmc_nuts_numpyro_example_gaussian():
    """NumPyro's docstring example on a 3-d Gaussian potential: init_kernel, then the draws
    of sample_kernel collected by fori_collect after the warm-up."""
    num_warmup, num_samples = 300, 1500
    init_kernel, sample_kernel = hmc(_gaussian_pe, algo="NUTS")
    state = init_kernel(jnp.zeros(3), num_warmup=num_warmup, rng_key=jax.random.key(3))
    assert isinstance(state, HMCState)
    assert HMCState._fields == (
        "i",
        "z",
        "z_grad",
        "potential_energy",
        "energy",
        "r",
        "trajectory_length",
        "num_steps",
        "accept_prob",
        "mean_accept_prob",
        "diverging",
        "adapt_state",
        "rng_key",
    )
    np.testing.assert_allclose(state.z_grad, jax.grad(_gaussian_pe)(jnp.zeros(3)), rtol=1e-5)
    draws, last = fori_collect(
        num_warmup,
        num_warmup + num_samples,
        sample_kernel,
        state,
        transform=lambda s: s.z,
        progbar=False,
        return_last_val=True,
    )
    assert draws.shape == (num_samples, 3)
    _check_moments(draws)
    assert int(last.i) == num_warmup + num_samples
    # After the warm-up: a tuned diagonal metric (about the marginal variances), an
    # acceptance statistic near the target, and no divergences at the end.
    imm = np.asarray(last.adapt_state.inverse_mass_matrix)
    assert imm.shape == (3,)
    np.testing.assert_allclose(imm, np.diag(TRUE_COV), rtol=0.5)
    assert 0.6 < float(last.mean_accept_prob) < 0.97
    np.testing.assert_allclose(last.potential_energy, _gaussian_pe(last.z), rtol=1e-5)


def test_hmc_fixed_trajectory_dense_mass_pytree_and_potential_fn_gen():
    """algo="HMC" on a dict position with a dense metric; the potential comes from
    potential_fn_gen(mean), whose argument is passed to both kernels."""

    def potential_fn_gen(mean):
        def pe(z):
            x = jnp.concatenate([z["a"], z["b"]])
            d = x - mean
            return 0.5 * d @ _PREC @ d

        return pe

    num_warmup, num_samples = 300, 1500
    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="HMC")
    mean = jnp.asarray(TRUE_MEAN)
    z0 = {"a": jnp.zeros(1), "b": jnp.zeros(2)}
    state = init_kernel(
        z0,
        num_warmup,
        dense_mass=True,
        trajectory_length=1.5,
        model_args=(mean,),
        rng_key=jax.random.key(5),
    )
    kernel = jax.jit(lambda s: sample_kernel(s, model_args=(mean,)))
    draws, last = fori_collect(
        num_warmup,
        num_warmup + num_samples,
        kernel,
        state,
        transform=lambda s: jnp.concatenate([s.z["a"], s.z["b"]]),
        progbar=False,
        return_last_val=True,
    )
    _check_moments(draws)
    assert np.asarray(last.adapt_state.inverse_mass_matrix).shape == (3, 3)
    # HMC: num_steps = ceil(trajectory_length / step_size) with the tuned step size.
    step_size = float(last.adapt_state.step_size)
    assert int(kernel(last).num_steps) == math.ceil(1.5 / step_size)


def test_hmc_initialize_model_param_info_and_tree_depths():
    """init_params as the ParamInfo of initialize_model, and max_tree_depth=(warm-up,
    sampling): depth 1 allows one leapfrog step per transition during the warm-up."""

    def model():
        jppl.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))

    info = initialize_model(jax.random.key(0), model)
    init_kernel, sample_kernel = hmc(info.potential_fn)
    state = init_kernel(info.param_info, 20, max_tree_depth=(1, 5), rng_key=jax.random.key(1))
    steps = fori_collect(0, 60, sample_kernel, state, transform=lambda s: s.num_steps)
    assert np.all(np.asarray(steps[:20]) <= 1)
    assert np.asarray(steps[20:]).max() > 1
    assert np.asarray(steps[20:]).max() <= 2**5 - 1


def test_hmc_forward_mode_differentiation_through_while_loop():
    def pe(z):
        # 0.5 * |z|^2 accumulated in a while_loop: reverse mode cannot differentiate it.
        def body(c):
            i, acc = c
            return i + 1, acc + 0.5 * z[i] ** 2

        return jax.lax.while_loop(lambda c: c[0] < 2, body, (0, 0.0))[1]

    init_kernel, sample_kernel = hmc(pe, algo="HMC")
    with pytest.raises(ValueError, match="Reverse-mode differentiation does not work"):
        init_kernel(jnp.ones(2), 5)
    z0 = jnp.array([0.5, -1.0])
    state = init_kernel(z0, 5, forward_mode_differentiation=True, trajectory_length=1.0)
    np.testing.assert_allclose(state.z_grad, z0, rtol=1e-6)  # grad of |z|^2 / 2
    state = jax.jit(sample_kernel)(state)
    np.testing.assert_allclose(state.z_grad, state.z, rtol=1e-5)


def test_hmc_find_heuristic_step_size_is_honoured():
    """A narrow target (sd 0.01): without the search the first transition integrates with
    the initial step size 1.0, so ceil(2 pi / 1.0) = 7 steps; the search shrinks it."""

    def pe(z):
        return 0.5 * jnp.sum((z / 0.01) ** 2)

    first_steps = {}
    for search in (False, True):
        init_kernel, sample_kernel = hmc(pe, algo="HMC")
        state = init_kernel(
            jnp.zeros(2), 10, find_heuristic_step_size=search, rng_key=jax.random.key(0)
        )
        first_steps[search] = int(jax.jit(sample_kernel)(state).num_steps)
    assert first_steps[False] == 7
    assert first_steps[True] > 100


def test_hmc_regularize_mass_matrix_is_honoured():
    """Both runs are identical up to the end of the first slow window (transitions 75..99 of
    a 200-transition warm-up, n = 25 draws); there the estimate is shrunk by Stan's rule
    ``n / (n + 5) * var + 1e-3 * 5 / (n + 5)`` only with regularize_mass_matrix=True."""
    imm = {}
    for regularize in (False, True):
        init_kernel, sample_kernel = hmc(_gaussian_pe, algo="HMC")
        state = init_kernel(
            jnp.zeros(3),
            200,
            regularize_mass_matrix=regularize,
            trajectory_length=1.0,
            rng_key=jax.random.key(2),
        )
        last = fori_collect(0, 100, sample_kernel, state, return_last_val=True, progbar=False)[1]
        imm[regularize] = np.asarray(last.adapt_state.inverse_mass_matrix)
    n = 25
    assert not np.allclose(imm[False], 1.0)  # the window's estimate was applied
    np.testing.assert_allclose(imm[True], n / (n + 5) * imm[False] + 1e-3 * 5 / (n + 5), rtol=1e-5)


def test_hmc_block_dense_mass_over_dict_sites():
    """dense_mass=[("a",)]: a dense block over the two coordinates of site "a" (correlated
    in the target), a diagonal entry for "b", zeros between the blocks."""

    def pe(z):
        x = jnp.concatenate([z["a"], z["b"]])
        d = x - jnp.asarray(TRUE_MEAN)
        return 0.5 * d @ _PREC @ d

    init_kernel, sample_kernel = hmc(pe, algo="HMC")
    z0 = {"a": jnp.zeros(2), "b": jnp.zeros(1)}
    state = init_kernel(z0, 200, dense_mass=[("a",)], trajectory_length=2.0)
    last = fori_collect(0, 200, sample_kernel, state, return_last_val=True, progbar=False)[1]
    imm = np.asarray(last.adapt_state.inverse_mass_matrix)
    assert imm.shape == (3, 3)
    assert imm[0, 1] != 0.0 and imm[0, 1] == imm[1, 0]
    assert np.all(imm[:2, 2] == 0.0) and np.all(imm[2, :2] == 0.0)
    with pytest.raises(ValueError, match="unknown site 'c'"):
        init_kernel(z0, 10, dense_mass=[("a", "c")])


def test_hmc_without_warmup_keeps_the_given_parameters():
    init_kernel, sample_kernel = hmc(_gaussian_pe, algo="HMC")
    imm = jnp.array([1.0, 2.0, 0.5])
    state = init_kernel(
        jnp.zeros(3), 0, step_size=0.25, inverse_mass_matrix=imm, trajectory_length=1.0
    )
    steps, last = fori_collect(
        0, 20, sample_kernel, state, transform=lambda s: s.num_steps, return_last_val=True
    )
    np.testing.assert_array_equal(steps, 4)  # ceil(1.0 / 0.25) every time
    assert float(last.adapt_state.step_size) == 0.25
    np.testing.assert_array_equal(last.adapt_state.inverse_mass_matrix, imm)
    # The running mean of the acceptance statistic over the (sampling) transitions.
    accept = fori_collect(0, 20, sample_kernel, state, transform=lambda s: s.accept_prob)
    np.testing.assert_allclose(last.mean_accept_prob, np.mean(accept), rtol=1e-5)


def test_hmc_unsupported_options_raise():
    with pytest.raises(ValueError, match="algo must be 'HMC' or 'NUTS'"):
        hmc(_gaussian_pe, algo="MALA")
    with pytest.raises(NotImplementedError, match="kinetic_fn"):
        hmc(_gaussian_pe, kinetic_fn=lambda m, r: 0.0)
    with pytest.raises(ValueError, match="only one of"):
        hmc(_gaussian_pe, potential_fn_gen=lambda: _gaussian_pe)
    init_kernel, sample_kernel = hmc(_gaussian_pe, algo="HMC")
    with pytest.raises(RuntimeError, match="call init_kernel"):
        sample_kernel(None)
    with pytest.raises(ValueError, match="trajectory_length=None"):
        init_kernel(jnp.zeros(3), 10, num_steps=5)
    state = init_kernel(jnp.zeros(3), 10, num_steps=5, trajectory_length=None)
    with pytest.raises(NotImplementedError, match="persistent momentum"):
        sample_kernel(state._replace(r=jnp.zeros(3)))
    with pytest.raises(NotImplementedError, match="dict inverse_mass_matrix"):
        init_kernel(jnp.zeros(3), 10, inverse_mass_matrix={("x",): jnp.ones(3)})


# ---------------------------------------------------------------------------------------------
# stax networks: module and random_module
# ---------------------------------------------------------------------------------------------

NET = stax.serial(stax.Dense(4), stax.Relu, stax.Dense(1))


def _dense_by_hand(params, x):
    (w1, b1), _, (w2, b2) = params
    return np.maximum(x @ w1 + b1, 0.0) @ w2 + b2


def test_module_registers_one_param_site():
    x = jax.random.normal(jax.random.key(0), (5, 3))

    def model(x):
        net = module("net", NET, input_shape=(-1, 3))
        return net(x)

    with trace() as tr, seed(rng_seed=1):
        out = model(x)
    assert list(tr) == ["net$params"]
    params = tr["net$params"]["value"]
    assert [tuple(np.shape(p)) for layer in params for p in layer] == [(3, 4), (4,), (4, 1), (1,)]
    np.testing.assert_allclose(out, _dense_by_hand(params, np.asarray(x)), rtol=1e-5, atol=1e-6)
    # A handler that supplies the parameters needs neither a key nor an input shape.
    given = jax.tree.map(jnp.ones_like, params)
    out = substitute(lambda x: module("net", NET)(x), data={"net$params": given})(x)
    np.testing.assert_allclose(out, _dense_by_hand(given, np.asarray(x)), rtol=1e-5)
    with pytest.raises(ValueError, match="input_shape is needed"):
        seed(lambda: module("net", NET), 0)()
    with pytest.raises(ValueError, match="needs a PRNG key"):
        trace(lambda: module("net", NET, input_shape=(-1, 3))).get_trace()
    with pytest.raises(TypeError, match="stax-style pair"):
        module("net", NET[0], input_shape=(-1, 3))


def test_module_is_learned_by_svi():
    import optax

    from jppl.infer import SVI, Trace_ELBO

    x = jax.random.normal(jax.random.key(0), (64, 3))
    y = x @ jnp.array([1.0, -2.0, 0.5]) + 0.3

    def model(x, y):
        net = module("lin", stax.Dense(1), input_shape=(-1, 3))
        jppl.sample("y", dist.Normal(net(x)[:, 0], 0.1), obs=y)

    svi = SVI(model, lambda x, y: None, optax.adam(0.05), Trace_ELBO())
    result = svi.run(jax.random.key(1), 1500, x, y, progress_bar=False)
    w, b = result.params["lin$params"]
    np.testing.assert_allclose(np.ravel(w), [1.0, -2.0, 0.5], atol=0.02)
    np.testing.assert_allclose(b, [0.3], atol=0.02)


def test_random_module_log_density_is_the_prior():
    x = jnp.ones((2, 3))

    def model(x):
        net = random_module("bnn", NET, dist.Normal(0.0, 1.5), input_shape=(-1, 3))
        return net(x)

    model_trace = trace(seed(model, 0)).get_trace(x)
    assert list(model_trace) == ["bnn/0.0", "bnn/0.1", "bnn/2.0", "bnn/2.1"]
    site = model_trace["bnn/0.0"]
    assert site["type"] == "sample" and site["fn"].event_shape == (3, 4)
    assert site["fn"].batch_shape == ()
    values = {n: s["value"] for n, s in model_trace.items()}
    log_joint, _ = log_density(model, (x,), {}, values)
    expected = sum(st.norm(0.0, 1.5).logpdf(np.asarray(v)).sum() for v in values.values())
    np.testing.assert_allclose(log_joint, expected, rtol=1e-5)
    # The network applies the sampled parameters.
    params = [(values["bnn/0.0"], values["bnn/0.1"]), (), (values["bnn/2.0"], values["bnn/2.1"])]
    out = substitute(model, data=values)(x)
    np.testing.assert_allclose(out, _dense_by_hand(params, np.asarray(x)), rtol=1e-5)


def test_random_module_dict_prior_and_errors():
    net = stax.Dense(2)
    prior = {"0": dist.Normal(0.0, 1.0), "bnn/1": dist.Laplace(0.0, 2.0)}

    def model():
        return random_module("bnn", net, prior, input_shape=(-1, 3))

    model_trace = trace(seed(model, 0)).get_trace()
    values = {n: s["value"] for n, s in model_trace.items()}
    assert {n: np.shape(v) for n, v in values.items()} == {"bnn/0": (3, 2), "bnn/1": (2,)}
    log_joint, _ = log_density(model, (), {}, values)
    expected = st.norm(0, 1).logpdf(np.asarray(values["bnn/0"])).sum()
    expected += st.laplace(0, 2).logpdf(np.asarray(values["bnn/1"])).sum()
    np.testing.assert_allclose(log_joint, expected, rtol=1e-5)

    with pytest.raises(ValueError, match=r"missing \['1'\]"):
        random_module("bnn", net, {"0": dist.Normal(0.0, 1.0)}, input_shape=(-1, 3))
    with pytest.raises(ValueError, match=r"unknown keys \['kernel'\]"):
        random_module("bnn", net, {**prior, "kernel": dist.Normal(0, 1)}, input_shape=(-1, 3))
    with pytest.raises(ValueError, match="input_shape is needed"):
        random_module("bnn", net, dist.Normal(0.0, 1.0))
    with pytest.raises(ValueError, match="does not fit the parameter's shape"):
        random_module("bnn", net, dist.Normal(jnp.zeros(5), 1.0).to_event(1), input_shape=(-1, 3))


def test_flax_names_are_lazy_and_import_jppl_stays_light():
    done = _run(
        "import sys, jppl, jppl.contrib.module as m\n"
        "print(sorted(k for k in ('flax', 'jppl.nn', 'graphviz', 'tqdm') if k in sys.modules))\n"
        "import jppl.nn\n"
        "print(m.flax_module is jppl.nn.flax_module, "
        "m.random_flax_module is jppl.nn.random_flax_module, jppl.module is m.module)"
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines == ["[]", "True True True"]
    import jppl.contrib.module as contrib_module

    with pytest.raises(AttributeError, match="no attribute 'nnx_thing'"):
        contrib_module.nnx_thing  # noqa: B018
