"""Tests of jppl.contrib.control_flow: scan and cond with primitives in the body.

Truth comes from closed forms (SciPy normal log pdfs), the same model written with a Python
for-loop, and the moments of a Gaussian random walk.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jppl
import jppl.distributions as dist
from jppl import handlers
from jppl.contrib.control_flow import StackedDistribution, cond, scan
from jppl.diagnostics import mcse_mean
from jppl.infer import (
    MCMC,
    NUTS,
    SVI,
    Predictive,
    Trace_ELBO,
    initialize_model,
    log_density,
    potential_energy,
)
from jppl.infer.autoguide import AutoNormal
from jppl.optim import Adam

T = 20
RNG = np.random.default_rng(0)


def _quiet(**kwargs):
    return dict(progress_bar=False, warn=False, **kwargs)


# -- models ------------------------------------------------------------------------------------


def ar1_scan(y=None, T=T):
    """Latent AR(1) x_t = phi x_{t-1} + N(0, 1), x_{-1} = 0; y_t ~ N(x_t, 0.5)."""
    phi = jppl.sample("phi", dist.Normal(0.0, 0.5))

    def step(x_prev, y_t):
        x = jppl.sample("x", dist.Normal(phi * x_prev, 1.0))
        jppl.sample("y", dist.Normal(x, 0.5), obs=y_t)
        return x, x

    _, xs = scan(step, jnp.zeros(()), y, length=T)
    return xs


def ar1_loop(y=None, T=T):
    """The same model as ``ar1_scan`` with a Python for-loop and stacked sites by hand."""
    phi = jppl.sample("phi", dist.Normal(0.0, 0.5))
    x = jppl.sample("x", _LoopAR1(phi, T))
    jppl.sample("y", dist.Normal(x, 0.5), obs=y)
    return x


class _LoopAR1(dist.Distribution):
    """The AR(1) prior of ``x`` as one event of shape (T,), written as a Python loop."""

    support = dist.constraints.real_vector

    def __init__(self, phi, length):
        self.phi = jnp.asarray(phi)
        self.length = length
        super().__init__((), (length,))

    def log_prob(self, value):
        total = 0.0
        prev = jnp.zeros(())
        for t in range(self.length):
            total = total + dist.Normal(self.phi * prev, 1.0).log_prob(value[..., t])
            prev = value[..., t]
        return total

    def sample(self, key, sample_shape=()):
        xs, prev = [], jnp.zeros(sample_shape)
        for k in jax.random.split(key, self.length):
            prev = self.phi * prev + jax.random.normal(k, sample_shape)
            xs.append(prev)
        return jnp.stack(xs, -1)


def random_walk(T=T):
    """Gaussian random walk from 0 with unit steps: x_t ~ N(0, t + 1)."""

    def step(x_prev, _):
        x = jppl.sample("x", dist.Normal(x_prev, 1.0))
        jppl.deterministic("x2", x**2)
        return x, None

    return scan(step, jnp.zeros(()), None, length=T)


def _ar1_log_joint(phi, x, y, reverse=False):
    """Closed-form log p(phi, x, y) of ar1_scan (reverse: the recursion runs from t = T-1)."""
    x = np.asarray(x, np.float64)
    order = x[::-1] if reverse else x
    prev = np.concatenate([[0.0], order[:-1]])
    lp = stats.norm.logpdf(phi, 0.0, 0.5)
    lp += stats.norm.logpdf(order, phi * prev, 1.0).sum()
    lp += stats.norm.logpdf(np.asarray(y), x, 0.5).sum()
    return lp


Y = jnp.asarray(RNG.normal(size=T), jnp.float32)
X = jnp.asarray(RNG.normal(size=T), jnp.float32)


# -- (a) log density against the closed form --------------------------------------------------


def test_scan_log_density_matches_closed_form():
    lp, tr = log_density(ar1_scan, (Y,), {}, {"phi": 0.3, "x": X})
    np.testing.assert_allclose(float(lp), _ar1_log_joint(0.3, X, Y), rtol=1e-5)
    site = tr["x"]
    assert isinstance(site["fn"], StackedDistribution)
    assert site["value"].shape == (T,) and site["fn"].batch_shape == (T,)
    assert site["fn"].log_prob(site["value"]).shape == (T,)
    assert site["fn"].support is dist.constraints.real
    assert tr["y"]["is_observed"] and np.array_equal(tr["y"]["value"], Y)


def test_reverse_scan_runs_from_the_end_and_aligns_sites_with_xs():
    def model(y):
        def step(x_prev, y_t):
            x = jppl.sample("x", dist.Normal(0.3 * x_prev, 1.0))
            jppl.sample("y", dist.Normal(x, 0.5), obs=y_t)
            return x, x

        return scan(step, jnp.zeros(()), y, reverse=True)

    lp, tr = log_density(model, (Y,), {}, {"x": X})
    phi_term = stats.norm.logpdf(0.3, 0.0, 0.5)  # model has no phi site
    np.testing.assert_allclose(float(lp), _ar1_log_joint(0.3, X, Y, reverse=True) - phi_term, 1e-5)
    last, ys = handlers.substitute(model, data={"x": X})(Y)
    assert float(last) == float(X[0])  # the last step run is t = 0
    np.testing.assert_array_equal(ys, X)


# -- (b) NUTS: the scan model and the for-loop model target the same posterior ----------------


def test_potential_energy_equals_for_loop_model():
    z = {"phi": jnp.asarray(0.4), "x": jnp.asarray(RNG.normal(size=T), jnp.float32)}
    pe_scan = potential_energy(ar1_scan, (Y,), {}, z)
    pe_loop = potential_energy(ar1_loop, (Y,), {}, z)
    np.testing.assert_allclose(float(pe_scan), float(pe_loop), rtol=1e-6)
    g_scan = jax.grad(lambda z: potential_energy(ar1_scan, (Y,), {}, z))(z)
    g_loop = jax.grad(lambda z: potential_energy(ar1_loop, (Y,), {}, z))(z)
    for k in z:
        np.testing.assert_allclose(g_scan[k], g_loop[k], rtol=1e-5, atol=1e-5)


def test_initialize_model_gives_stacked_unconstrained_sites():
    info = initialize_model(jax.random.key(0), ar1_scan, model_args=(Y,))
    assert info.param_info.z["x"].shape == (T,)
    assert np.isfinite(float(info.param_info.potential_energy))
    assert info.postprocess_fn(info.param_info.z)["x"].shape == (T,)


@pytest.mark.slow
def test_nuts_scan_matches_for_loop_posterior():
    means, mcses = [], []
    for model in (ar1_scan, ar1_loop):
        mcmc = MCMC(NUTS(model), num_warmup=200, num_samples=400, **_quiet())
        mcmc.run(jax.random.key(1), Y)
        phi = np.asarray(mcmc.get_samples()["phi"])
        assert mcmc.get_samples()["x"].shape == (400, T)
        means.append(phi.mean())
        mcses.append(float(mcse_mean(phi[None])))
    assert abs(means[0] - means[1]) < 4 * np.hypot(*mcses), (means, mcses)


# -- (c) Predictive ----------------------------------------------------------------------------


def test_predictive_prior_draws_have_random_walk_moments():
    S = 4000
    draws = Predictive(random_walk, num_samples=S)(jax.random.key(2))
    assert draws["x"].shape == (S, T) and draws["x2"].shape == (S, T)
    x = np.asarray(draws["x"], np.float64)
    np.testing.assert_allclose(draws["x2"], draws["x"] ** 2, rtol=1e-6)
    var = np.arange(1, T + 1)
    assert np.all(np.abs(x.mean(0)) < 4 * np.sqrt(var / S))
    # sample variance: standard error about var * sqrt(2 / S)
    assert np.all(np.abs(x.var(0) - var) < 4 * var * np.sqrt(2 / S))
    # increments are independent N(0, 1) draws: a fresh key per step
    inc = np.diff(np.concatenate([np.zeros((S, 1)), x], 1), axis=1)
    corr = np.corrcoef(inc[:, :5].T)
    assert np.all(np.abs(corr - np.eye(5)) < 4 / np.sqrt(S))


def test_posterior_predictive_substitutes_each_step():
    samples = {"phi": jnp.full((3,), 0.5), "x": jnp.asarray(RNG.normal(size=(3, T)), jnp.float32)}
    out = Predictive(ar1_scan, posterior_samples=samples)(jax.random.key(3))
    assert out["y"].shape == (3, T)
    resid = np.asarray(out["y"] - samples["x"])
    assert np.all(np.abs(resid) < 0.5 * 5)


# -- (d) handlers inside the body ----------------------------------------------------------------


def test_seed_gives_a_fresh_key_per_step_and_is_reproducible():
    x1 = handlers.trace(handlers.seed(random_walk, 0)).get_trace()["x"]["value"]
    x2 = handlers.trace(handlers.seed(random_walk, 0)).get_trace()["x"]["value"]
    x3 = handlers.trace(handlers.seed(random_walk, 1)).get_trace()["x"]["value"]
    np.testing.assert_array_equal(x1, x2)
    assert not np.allclose(x1, x3)
    steps = np.diff(np.concatenate([[0.0], np.asarray(x1)]))
    assert len(np.unique(np.round(steps, 6))) == T


def test_substitute_and_condition_read_step_t():
    tr = handlers.trace(handlers.substitute(handlers.seed(ar1_scan, 0), data={"x": X})).get_trace()
    np.testing.assert_array_equal(tr["x"]["value"], X)
    assert not tr["x"]["is_observed"]
    tr = handlers.trace(handlers.condition(handlers.seed(ar1_scan, 0), data={"x": X})).get_trace()
    np.testing.assert_array_equal(tr["x"]["value"], X)
    assert tr["x"]["is_observed"]
    # a value of one step's shape is used at every step
    tr = handlers.trace(
        handlers.substitute(handlers.seed(ar1_scan, 0), data={"x": 1.5})
    ).get_trace()
    np.testing.assert_array_equal(tr["x"]["value"], np.full(T, 1.5))


def test_substitute_fn_is_called_per_step_site():
    seen = []

    def substitute_fn(site):
        if site["name"] != "x":
            return None
        seen.append(site["fn"].batch_shape)
        return site["fn"].loc + 1.0  # one step's shape: each x_t = phi x_{t-1} + 1

    model = handlers.substitute(handlers.seed(ar1_scan, 0), substitute_fn=substitute_fn)
    tr = handlers.trace(handlers.substitute(model, data={"phi": 0.5})).get_trace()
    assert seen and set(seen) == {()}  # called on the per-step site
    expected, prev = [], 0.0
    for _ in range(T):
        prev = 0.5 * prev + 1.0
        expected.append(prev)
    np.testing.assert_allclose(tr["x"]["value"], expected, rtol=1e-6)


def test_wrong_substituted_shape_names_the_site():
    with pytest.raises(ValueError, match="site 'x'"):
        handlers.substitute(handlers.seed(ar1_scan, 0), data={"x": jnp.zeros((T + 1,))})()


def test_plate_inside_body_and_around_the_scan():
    N = 3
    y = jnp.asarray(RNG.normal(size=(T, N)), jnp.float32)

    def inside(y):
        def step(x_prev, y_t):
            with jppl.plate("N", N):
                x = jppl.sample("x", dist.Normal(0.5 * x_prev, 1.0))
                jppl.sample("y", dist.Normal(x, 0.5), obs=y_t)
            return x, None

        scan(step, jnp.zeros(N), y)

    def around(y):
        def step(x_prev, y_t):
            x = jppl.sample("x", dist.Normal(0.5 * x_prev, 1.0))
            jppl.sample("y", dist.Normal(x, 0.5), obs=y_t)
            return x, None

        with jppl.plate("N", N):
            scan(step, jnp.zeros(N), y)

    x = jnp.asarray(RNG.normal(size=(T, N)), jnp.float32)
    prev = np.concatenate([np.zeros((1, N)), np.asarray(x)[:-1]])
    ref = stats.norm.logpdf(x, 0.5 * prev, 1.0).sum() + stats.norm.logpdf(y, x, 0.5).sum()
    for model in (inside, around):
        lp, tr = log_density(model, (y,), {}, {"x": x})
        np.testing.assert_allclose(float(lp), ref, rtol=1e-5)
        assert tr["x"]["fn"].batch_shape == (T, N)
        assert [(f.name, f.dim) for f in tr["x"]["cond_indep_stack"]] == [("N", -1)]
    # a plate of size N around a scalar body site broadcasts it per step
    tr = handlers.trace(handlers.seed(around, 0)).get_trace(y)
    assert tr["x"]["value"].shape == (T, N)


def test_scale_and_mask_around_the_scan_act_on_the_stacked_site():
    mask = jnp.arange(T) % 2 == 0

    def model(y):
        def step(x_prev, y_t):
            x = jppl.sample("x", dist.Normal(0.3 * x_prev, 1.0))
            jppl.sample("y", dist.Normal(x, 0.5), obs=y_t)
            return x, None

        with handlers.mask(mask=mask), handlers.scale(scale=2.0):
            scan(step, jnp.zeros(()), y)

    lp, _ = log_density(model, (Y,), {}, {"x": X})
    prev = np.concatenate([[0.0], np.asarray(X)[:-1]])
    per_step = stats.norm.logpdf(X, 0.3 * prev, 1.0) + stats.norm.logpdf(Y, X, 0.5)
    ref = 2 * per_step[np.asarray(mask)].sum()
    np.testing.assert_allclose(float(lp), ref, rtol=1e-5)


def test_length_without_xs_and_carry_pytree():
    def model():
        def step(carry, _):
            x = jppl.sample("x", dist.Normal(carry["x"], 1.0))
            return {"x": x, "n": carry["n"] + 1}, 2 * x

        return scan(step, {"x": jnp.zeros(()), "n": jnp.zeros((), jnp.int32)}, None, length=4)

    last, ys = handlers.substitute(model, data={"x": jnp.arange(4.0)})()
    assert int(last["n"]) == 4 and float(last["x"]) == 3.0
    np.testing.assert_array_equal(ys, 2 * jnp.arange(4.0))


def test_body_is_traced_once_whatever_the_length():
    calls = []

    def model(y):
        def step(x_prev, y_t):
            calls.append(1)
            x = jppl.sample("x", dist.Normal(x_prev, 1.0))
            jppl.sample("y", dist.Normal(x, 1.0), obs=y_t)
            return x, None

        scan(step, jnp.zeros(()), y)

    for length in (5, 5000):
        calls.clear()
        y = jnp.zeros(length)
        pe = potential_energy(model, (y,), {}, {"x": jnp.zeros(length)})
        assert len(calls) == 1
        np.testing.assert_allclose(float(pe), -2 * length * stats.norm.logpdf(0.0), rtol=1e-5)


def test_scan_without_handlers_is_lax_scan():
    last, ys = scan(lambda c, x: (c + x, c), 0.0, jnp.arange(5.0))
    assert float(last) == 10.0 and np.array_equal(ys, [0, 0, 1, 3, 6])


def test_param_inside_scan_raises():
    def model():
        def step(c, _):
            w = jppl.param("w", 1.0)
            return c + w, None

        scan(step, 0.0, None, length=3)

    with pytest.raises(NotImplementedError, match="param site 'w'"):
        handlers.seed(model, 0)()


@pytest.mark.parametrize("history", [-1, 1.5, True])
def test_history_is_validated(history):
    with pytest.raises(ValueError, match="history"):
        scan(lambda c, x: (c, x), 0.0, jnp.arange(3.0), history=history)


def test_length_mismatch_raises():
    with pytest.raises(ValueError, match="length=4"):
        scan(lambda c, x: (c, x), 0.0, jnp.arange(3.0), length=4)


def test_positive_and_interval_supports_in_the_unconstrained_space():
    N = 3

    def model():
        s = jppl.sample("s", dist.HalfNormal(1.0))

        def step(high, _):
            v = jppl.sample("v", dist.HalfNormal(s))
            with jppl.plate("N", N):
                u = jppl.sample("u", dist.Uniform(0.0, high))  # support depends on the step
            return high + 1.0, (u, v)

        scan(step, jnp.ones(()), None, length=4)

    z = {
        "s": jnp.asarray(0.2),
        "v": jnp.asarray(RNG.normal(size=4), jnp.float32),
        "u": jnp.asarray(RNG.normal(size=(4, N)), jnp.float32),
    }
    pe = potential_energy(model, (), {}, z)
    s, v = np.exp(0.2), np.exp(np.asarray(z["v"], np.float64))
    high = np.arange(1.0, 5.0)[:, None]
    sig = 1 / (1 + np.exp(-np.asarray(z["u"], np.float64)))
    log_joint = stats.halfnorm.logpdf(s) + 0.2 + stats.halfnorm.logpdf(v, scale=s).sum()
    log_joint += np.sum(z["v"])  # log-Jacobian of exp
    log_joint += np.sum(-np.log(high) * np.ones((1, N)))  # uniform densities
    log_joint += np.sum(np.log(high) + np.log(sig) + np.log1p(-sig))  # log-Jacobian
    np.testing.assert_allclose(float(pe), -log_joint, rtol=1e-5)
    tr = handlers.trace(handlers.seed(model, 0)).get_trace()
    assert tr["u"]["value"].shape == (4, N)
    assert np.all(np.asarray(tr["u"]["value"]) < high)
    assert np.all(tr["u"]["fn"].support(tr["u"]["value"]))


def test_sample_shape_and_event_dims_in_the_body_under_jit():
    def model():
        def step(c, _):
            jppl.sample("x", dist.Normal(c, 1.0), sample_shape=(2,))
            jppl.sample("v", dist.Dirichlet(jnp.ones(3)))
            return c + 1.0, None

        scan(step, 0.0, None, length=3)

    tr = handlers.trace(handlers.seed(model, 0)).get_trace()
    assert tr["x"]["value"].shape == (3, 2) and tr["x"]["fn"].batch_shape == (3, 2)
    assert tr["v"]["value"].shape == (3, 3) and tr["v"]["fn"].event_shape == (3,)
    x, v = jnp.arange(6.0).reshape(3, 2), jnp.asarray([[0.2, 0.3, 0.5]] * 3)
    lp = jax.jit(lambda x, v: log_density(model, (), {}, {"x": x, "v": v})[0])(x, v)
    ref = stats.norm.logpdf(np.arange(6.0).reshape(3, 2), np.arange(3.0)[:, None]).sum()
    ref += 3 * stats.dirichlet.logpdf([0.2, 0.3, 0.5], [1, 1, 1])
    np.testing.assert_allclose(float(lp), ref, rtol=1e-5)
    z = initialize_model(jax.random.key(0), model).param_info.z
    assert z["v"].shape == (3, 2)  # the simplex's unconstrained space, per step


def test_factor_and_obs_mask_in_the_body():
    def model(y):
        def step(c, y_t):
            x = jppl.sample("x", dist.Normal(0.0, 1.0))
            jppl.factor("f", -(x**2))
            jppl.sample("o", dist.Normal(x, 1.0), obs=y_t, obs_mask=~jnp.isnan(y_t))
            return c, None

        scan(step, 0.0, y)

    y = jnp.asarray([1.0, jnp.nan, 2.0])
    x, imputed = np.array([0.1, 0.2, 0.3]), np.array([0.0, 5.0, 0.0])
    lp, tr = log_density(model, (y,), {}, {"x": x, "o_unobserved": imputed})
    ref = stats.norm.logpdf(x).sum() - (x**2).sum() + stats.norm.logpdf(imputed, x).sum()
    ref += stats.norm.logpdf([1.0, 2.0], x[[0, 2]]).sum()
    np.testing.assert_allclose(float(lp), ref, rtol=1e-5)
    np.testing.assert_array_equal(tr["o"]["value"], [1.0, 5.0, 2.0])


def test_nested_scan_and_cond_inside_scan():
    def nested():
        def outer(c, _):
            return scan(lambda c2, _: (jppl.sample("y", dist.Normal(c2, 1.0)),) * 2, c, None, 3)

        return scan(outer, 0.0, None, length=2)

    values = jnp.arange(6.0).reshape(2, 3)
    lp, tr = log_density(nested, (), {}, {"y": values})
    flat = np.arange(6.0)
    ref = stats.norm.logpdf(flat, np.concatenate([[0.0], flat[:-1]])).sum()
    np.testing.assert_allclose(float(lp), ref, rtol=1e-6)
    assert tr["y"]["fn"].batch_shape == (2, 3)
    draws = handlers.trace(handlers.seed(nested, 0)).get_trace()["y"]["value"]
    assert draws.shape == (2, 3) and len(np.unique(np.asarray(draws))) == 6

    def switching():
        def step(c, t):
            x = cond(
                t % 2 == 0,
                lambda _: jppl.sample("x", dist.Normal(10.0, 1.0)),
                lambda _: jppl.sample("x", dist.Normal(-10.0, 1.0)),
                None,
            )
            return c, x

        return scan(step, 0.0, jnp.arange(4))

    x = jnp.asarray([10.0, -10.0, 11.0, -9.0])
    lp, _ = log_density(switching, (), {}, {"x": x})
    np.testing.assert_allclose(float(lp), stats.norm.logpdf([0, 0, 1, 1]).sum(), rtol=1e-6)
    draws = handlers.seed(switching, 0)()[1]
    assert np.array_equal(np.sign(draws), [1, -1, 1, -1])


def test_scope_block_and_subsampled_plate_around_the_scan():
    data = {"a/x": jnp.ones(T)}
    tr = handlers.trace(
        handlers.substitute(handlers.scope(handlers.seed(ar1_scan, 0), prefix="a"), data=data)
    ).get_trace(Y)
    assert set(tr) == {"a/phi", "a/x", "a/y"}
    np.testing.assert_array_equal(tr["a/x"]["value"], np.ones(T))
    tr = handlers.trace(handlers.block(handlers.seed(ar1_scan, 0), hide=["x"])).get_trace(Y)
    assert set(tr) == {"phi", "y"}

    def sub():
        def step(c, _):
            return c, jppl.sample("x", dist.Normal(c, 1.0))

        with jppl.plate("M", 6, subsample_size=2):
            scan(step, jnp.zeros(2), None, length=3)

    tr = handlers.trace(handlers.seed(sub, 0)).get_trace()
    assert tr["x"]["value"].shape == (3, 2) and tr["x"]["scale"] == 3.0


def test_handlers_that_cannot_act_per_step_raise():
    from jppl.reparam import LocScaleReparam

    with pytest.raises(NotImplementedError, match="handlers.do.*'x'"):
        handlers.do(handlers.seed(ar1_scan, 0), data={"x": jnp.ones(T)})(Y)
    with pytest.raises(NotImplementedError, match="handlers.reparam.*'x'"):
        handlers.reparam(handlers.seed(ar1_scan, 0), config={"x": LocScaleReparam(0.0)})(Y)


def test_log_likelihood_of_scanned_observations():
    samples = {"phi": jnp.full((2,), 0.3), "x": jnp.stack([X, -X])}
    ll = jppl.infer.log_likelihood(ar1_scan, samples, Y)
    assert ll["y"].shape == (2, T)
    np.testing.assert_allclose(ll["y"][1], stats.norm.logpdf(Y, -X, 0.5), rtol=1e-5)


# -- (e) cond ----------------------------------------------------------------------------------


def cond_model(flag):
    def true_fun(_):
        return jppl.sample("x", dist.Normal(20.0, 2.0))

    def false_fun(_):
        return jppl.sample("x", dist.Normal(0.0, 1.0))

    x = cond(flag, true_fun, false_fun, None)
    jppl.sample("obs", dist.Normal(x, 1.0), obs=1.0)
    return x


@pytest.mark.parametrize("flag", [True, False])
def test_cond_log_density_is_the_branch_taken(flag):
    x = 1.7
    lp, tr = log_density(cond_model, (jnp.asarray(flag),), {}, {"x": x})
    prior = stats.norm.logpdf(x, 20.0, 2.0) if flag else stats.norm.logpdf(x, 0.0, 1.0)
    np.testing.assert_allclose(float(lp), prior + stats.norm.logpdf(1.0, x, 1.0), rtol=1e-6)
    assert tr["x"]["value"].shape == ()


def test_cond_under_nuts():
    mcmc = MCMC(NUTS(cond_model), num_warmup=150, num_samples=300, **_quiet())
    mcmc.run(jax.random.key(4), jnp.asarray(False))
    x = np.asarray(mcmc.get_samples()["x"])
    # x ~ N(0, 1), obs ~ N(x, 1): the posterior of x is N(0.5, 1/2)
    assert abs(x.mean() - 0.5) < 4 * float(mcse_mean(x[None]))


def test_cond_branch_with_latent_predicate_samples_both_branches():
    def model():
        c = jppl.sample("c", dist.Normal(0.0, 1.0))
        return cond(
            c > 0,
            lambda _: jppl.sample("x", dist.Normal(5.0, 1.0)),
            lambda _: jppl.sample("x", dist.Normal(-5.0, 1.0)),
            None,
        )

    draws = Predictive(model, num_samples=400)(jax.random.key(5))
    c, x = np.asarray(draws["c"]), np.asarray(draws["x"])
    assert np.all(np.sign(x) == np.sign(c))


def test_cond_mismatched_branches_name_the_site():
    def model():
        return cond(
            True,
            lambda _: jppl.sample("x", dist.Normal(0.0, 1.0)),
            lambda _: jppl.sample("z", dist.Normal(0.0, 1.0)),
            None,
        )

    with pytest.raises(ValueError, match=r"\['x'\].*\['z'\]"):
        handlers.seed(model, 0)()

    def shapes():
        return cond(
            True,
            lambda _: jppl.sample("x", dist.Normal(jnp.zeros(2), 1.0)),
            lambda _: jppl.sample("x", dist.Normal(jnp.zeros(3), 1.0)),
            None,
        )

    with pytest.raises(ValueError, match="site 'x'.*value shape"):
        handlers.seed(shapes, 0)()

    def classes():
        return cond(
            True,
            lambda _: jppl.sample("x", dist.Normal(0.0, 1.0)),
            lambda _: jppl.sample("x", dist.Laplace(0.0, 1.0)),
            None,
        )

    with pytest.raises(ValueError, match="site 'x'.*distribution"):
        handlers.seed(classes, 0)()


# -- (f) SVI with an autoguide ------------------------------------------------------------------


def test_svi_autonormal_on_scanned_model():
    guide = AutoNormal(ar1_scan)
    svi = SVI(ar1_scan, guide, Adam(0.05), Trace_ELBO(num_particles=2))
    result = svi.run(jax.random.key(6), 300, Y, progress_bar=False)
    losses = np.asarray(result.losses)
    assert losses[-50:].mean() < losses[:50].mean() - 5.0
    params = result.params
    assert params["x_auto_loc"].shape == (T,)
