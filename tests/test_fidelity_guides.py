"""NumPyro fidelity of reparameterizations, autoguides' posterior summaries and jppl.optim.

Expected values are closed forms and hand-written formulas (change of variables, the update
rules of ``jax.example_libraries.optimizers`` written out in NumPy), never NumPyro's output.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import jppl
import jppl.distributions as dist
import jppl.optim
from jppl.handlers import block, reparam, seed, trace
from jppl.infer import SVI, Trace_ELBO, log_density
from jppl.infer.autoguide import (
    AutoDelta,
    AutoDiagonalNormal,
    AutoGuideList,
    AutoMultivariateNormal,
    AutoNormal,
)
from jppl.infer.reparam import LocScaleReparam, TransformReparam

# ---------------------------------------------------------------------------------------------
# LocScaleReparam
# ---------------------------------------------------------------------------------------------

LOC, SCALE = 1.5, 2.0


@pytest.mark.parametrize(
    "fn",
    [
        dist.LogNormal(2.0, 0.5),
        dist.TruncatedNormal(0.0, 1.0, low=0.0),
        dist.HalfNormal(1.0),
        dist.LogNormal(jnp.zeros(3), 1.0).to_event(1),
    ],
)
def test_loc_scale_reparam_rejects_families_that_are_not_loc_scale(fn):
    # LogNormal has `loc` and `scale` but is exp(loc + scale * z): decentering it as
    # loc + scale * LogNormal(0, 1) would silently change its law (mean 8.4 -> 2.8).
    def model():
        jppl.sample("x", fn)

    name = type(fn.base_dist if isinstance(fn, dist.Independent) else fn).__name__
    with pytest.raises(TypeError, match=rf"site 'x'.*{name}.*not a location-scale family"):
        trace(seed(reparam(model, {"x": LocScaleReparam(0)}), 0)).get_trace()


def test_loc_scale_reparam_shape_params_as_numpyro():
    def model():
        jppl.sample("x", dist.StudentT(4.0, LOC, SCALE))

    with pytest.raises(ValueError, match=r"site 'x'.*StudentT.*\('df',\)"):
        trace(seed(reparam(model, {"x": LocScaleReparam(0)}), 0)).get_trace()
    tr = trace(seed(reparam(model, {"x": LocScaleReparam(0, shape_params=("df",))}), 0)).get_trace()
    decentered = tr["x_decentered"]["fn"]
    assert isinstance(decentered, dist.StudentT)
    np.testing.assert_allclose([decentered.df, decentered.loc, decentered.scale], [4.0, 0.0, 1.0])

    def normal_model():
        jppl.sample("x", dist.Normal(LOC, SCALE))

    with pytest.raises(ValueError, match=r"site 'x'.*Normal"):
        trace(
            seed(reparam(normal_model, {"x": LocScaleReparam(0, shape_params=("df",))}), 0)
        ).get_trace()
    with pytest.raises(ValueError, match="centered"):
        LocScaleReparam(jnp.array([0.2, 1.5]))
    for bad in (np.array([0.1, 0.2]), np.full((2, 1), 0.5)):
        with pytest.raises(ValueError, match=r"site 'x'.*centered of shape"):
            trace(seed(reparam(normal_model, {"x": LocScaleReparam(bad)}), 0)).get_trace()
    with pytest.raises(TypeError, match="shape_params"):
        LocScaleReparam(0, shape_params="df")


def _check_change_of_variables(model, config, c, dec, y, logpdf):
    """Log joint of the reparameterized model at ``x_decentered = dec`` against the hand
    density ``logpdf(x_dec, c * loc, scale ** c)`` and the change of variables
    ``log p_x(x) + (1 - c) log(scale)`` with ``x = loc + scale ** (1 - c) (dec - c * loc)``."""
    c = np.broadcast_to(np.asarray(c, dtype=np.float64), dec.shape)
    x = LOC + SCALE ** (1 - c) * (dec - c * LOC)
    lik = stats.norm.logpdf(y, x, 1.0).sum()
    is_centered = np.all(c == 1) and not isinstance(config["x"].centered, np.ndarray)
    params = {"x": dec} if is_centered else {"x_decentered": dec}
    lp, tr = log_density(reparam(model, config), (y,), {}, params)
    np.testing.assert_allclose(tr["x"]["value"], x, rtol=1e-6)
    expected = logpdf(dec, c * LOC, SCALE**c).sum() + lik
    np.testing.assert_allclose(lp, expected, rtol=1e-5)
    jacobian = (1 - c) * np.log(SCALE)
    np.testing.assert_allclose(lp, (logpdf(x, LOC, SCALE) + jacobian).sum() + lik, rtol=1e-5)


CENTERINGS = [0.0, 0.3, 1.0, np.array([0.0, 0.3, 1.0])]


@pytest.mark.parametrize("c", CENTERINGS, ids=["0", "0.3", "1", "array"])
def test_loc_scale_reparam_log_density_normal(c):
    def model(y):
        with jppl.plate("J", 3):
            x = jppl.sample("x", dist.Normal(LOC, SCALE))
            jppl.sample("y", dist.Normal(x, 1.0), obs=y)

    dec = np.array([-0.4, 0.9, 2.2])
    y = np.array([0.1, -1.0, 3.0])
    config = {"x": LocScaleReparam(c)}
    _check_change_of_variables(model, config, c, dec, y, stats.norm.logpdf)


@pytest.mark.parametrize("c", CENTERINGS, ids=["0", "0.3", "1", "array"])
def test_loc_scale_reparam_log_density_student_t_event(c):
    df = 3.5

    def model(y):
        x = jppl.sample("x", dist.StudentT(df, LOC, SCALE).expand([3]).to_event(1))
        jppl.sample("y", dist.Normal(x, 1.0).to_event(1), obs=y)

    dec = np.array([0.7, -2.0, 1.1])
    y = np.array([1.0, 0.0, -0.5])
    config = {"x": LocScaleReparam(c, shape_params=("df",))}

    def logpdf(v, loc, scale):
        return stats.t.logpdf(v, df, loc, scale)

    _check_change_of_variables(model, config, c, dec, y, logpdf)
    if not (np.ndim(c) == 0 and c == 1):
        tr = trace(seed(reparam(model, config), 0)).get_trace(y)
        assert tr["x_decentered"]["fn"].event_shape == (3,)


def test_loc_scale_reparam_learned_centering():
    def model():
        with jppl.plate("J", 3):
            jppl.sample("x", dist.Normal(LOC, SCALE))

    tr = trace(seed(reparam(model, {"x": LocScaleReparam()}), 0)).get_trace()
    # as NumPyro: one centering of the site's event shape, initialized at 0.5, in [0, 1]
    assert tr["x_centered"]["type"] == "param"
    np.testing.assert_allclose(tr["x_centered"]["value"], 0.5)
    assert jnp.shape(tr["x_centered"]["value"]) == ()
    assert tr["x_centered"]["kwargs"]["constraint"] is dist.constraints.unit_interval
    dec = np.array([-0.4, 0.9, 2.2])
    lp, _ = log_density(
        reparam(model, {"x": LocScaleReparam()}), (), {}, {"x_decentered": dec, "x_centered": 0.3}
    )
    np.testing.assert_allclose(lp, stats.norm.logpdf(dec, 0.3 * LOC, SCALE**0.3).sum(), rtol=1e-5)


def test_transform_reparam_keeps_batch_and_event_dims():
    base = dist.TransformedDistribution(
        dist.Normal(0.0, 1.0), dist.transforms.AffineTransform(LOC, SCALE)
    )

    def model():
        jppl.sample("x", base.expand([2, 3]).to_event(1))

    tr = trace(seed(reparam(model, {"x": TransformReparam()}), 0)).get_trace()
    fn = tr["x_base"]["fn"]
    assert fn.batch_shape == (2,) and fn.event_shape == (3,)
    z = tr["x_base"]["value"]
    np.testing.assert_allclose(tr["x"]["value"], LOC + SCALE * z, rtol=1e-6)


@pytest.mark.parametrize(
    "transform, base_event, event",
    [("StickBreakingTransform", (3,), (4,)), ("CorrCholeskyTransform", (3,), (3, 3))],
)
def test_transform_reparam_with_a_transform_that_changes_the_event_shape(
    transform, base_event, event
):
    """The base site keeps the site's batch dims (plate 2, reinterpreted 5) on top of its own
    event; the site's value is the transform of the base's, whose own density is the base's."""
    t = getattr(dist.transforms, transform)()
    d = dist.TransformedDistribution(dist.Normal(0.0, 1.0).expand(base_event).to_event(1), t)
    assert d.event_shape == event

    def model():
        with jppl.plate("p", 2):
            jppl.sample("x", d.expand([2, 5]).to_event(1))

    tr = trace(seed(reparam(model, {"x": TransformReparam()}), 0)).get_trace()
    fn = tr["x_base"]["fn"]
    assert fn.batch_shape == (2,) and fn.event_shape == (5, *base_event)
    z = tr["x_base"]["value"]
    assert tr["x"]["value"].shape == (2, 5, *event)
    np.testing.assert_allclose(tr["x"]["value"], t(z), rtol=1e-6)
    lp, _ = log_density(reparam(model, {"x": TransformReparam()}), (), {}, {"x_base": z})
    np.testing.assert_allclose(lp, stats.norm.logpdf(np.asarray(z)).sum(), rtol=1e-5)


@pytest.mark.parametrize(
    "make, base, transform",
    [
        (lambda: dist.LogNormal(0.3, 0.7), stats.norm(0.3, 0.7), np.exp),
        (lambda: dist.LogUniform(0.5, 4.0), stats.uniform(np.log(0.5), np.log(8.0)), np.exp),
        (lambda: dist.Pareto(2.0, 3.0), stats.expon(scale=1 / 3.0), lambda z: 2 * np.exp(z)),
        (
            lambda: dist.InverseGamma(3.0, 2.0),
            stats.gamma(3.0, scale=1 / 2.0),
            lambda z: 1 / z,
        ),
    ],
)
def test_transform_reparam_on_families_defined_as_transforms(make, base, transform):
    """LogNormal, LogUniform, Pareto and InverseGamma reparameterize as the transformed
    distributions they are defined as: the base site has the base family's density (SciPy),
    and the site's value is the textbook transform of the base's (so, by the change of
    variables, the site keeps its law)."""

    def model():
        with jppl.plate("n", 5):
            jppl.sample("x", make())

    reparam_model = reparam(model, {"x": TransformReparam()})
    z = base.rvs(5, random_state=0)
    lp, tr = log_density(reparam_model, (), {}, {"x_base": jnp.asarray(z, jnp.float32)})
    np.testing.assert_allclose(tr["x"]["value"], transform(z), rtol=1e-5)
    np.testing.assert_allclose(lp, base.logpdf(z).sum(), rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Autoguides: deterministic and reparameterized sites in median() and sample_posterior()
# ---------------------------------------------------------------------------------------------

Y = jnp.array([1.0, -0.5, 2.0])


def hier(y):
    mu = jppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = jppl.sample("tau", dist.HalfNormal(2.0))
    jppl.deterministic("two_mu", 2.0 * mu)
    with jppl.plate("J", 3):
        theta = jppl.sample("theta", dist.Normal(mu, tau))
        jppl.sample("y", dist.Normal(theta, 1.0), obs=y)


hier_nc = reparam(hier, {"theta": LocScaleReparam(0)})
MU, TAU, DEC = 0.7, 1.3, np.array([0.2, -1.1, 0.5])


def _params(guide, **values):
    """The guide's params after one call, with ``values`` set by hand."""
    tr = trace(seed(guide, 0)).get_trace(Y)
    params = {k: s["value"] for k, s in tr.items() if s["type"] == "param"}
    assert set(values) <= set(params)
    return {**params, **{k: jnp.asarray(v) for k, v in values.items()}}


def _check_sites(out, mu, tau, dec):
    np.testing.assert_allclose(out["mu"], mu, rtol=1e-6)
    np.testing.assert_allclose(out["tau"], tau, rtol=1e-6)
    np.testing.assert_allclose(out["theta_decentered"], dec, rtol=1e-6)
    np.testing.assert_allclose(out["two_mu"], 2 * np.asarray(mu), rtol=1e-6)
    theta = np.asarray(mu)[..., None] + np.asarray(tau)[..., None] * np.asarray(dec)
    np.testing.assert_allclose(out["theta"], theta, rtol=1e-5, atol=1e-6)
    assert "y" not in out


def test_autonormal_median_and_samples_include_deterministic_and_reparam_sites():
    guide = AutoNormal(hier_nc)
    params = _params(
        guide,
        mu_auto_loc=MU,
        tau_auto_loc=np.log(TAU),  # HalfNormal: tau = exp(u)
        theta_decentered_auto_loc=DEC,
    )
    _check_sites(guide.median(params), MU, TAU, DEC)
    draws = guide.sample_posterior(jax.random.key(1), params, sample_shape=(4, 2))
    assert draws["theta"].shape == (4, 2, 3) and draws["two_mu"].shape == (4, 2)
    _check_sites(draws, draws["mu"], draws["tau"], draws["theta_decentered"])


def test_autodelta_median_and_samples_include_deterministic_and_reparam_sites():
    guide = AutoDelta(hier_nc)
    params = _params(guide, mu_auto_loc=MU, tau_auto_loc=TAU, theta_decentered_auto_loc=DEC)
    _check_sites(guide.median(params), MU, TAU, DEC)
    draws = guide.sample_posterior(jax.random.key(1), params, sample_shape=(3,))
    _check_sites(draws, np.full(3, MU), np.full(3, TAU), np.broadcast_to(DEC, (3, 3)))


@pytest.mark.parametrize("cls", [AutoDiagonalNormal, AutoMultivariateNormal])
def test_flat_guides_median_and_samples_include_deterministic_and_reparam_sites(cls):
    guide = cls(hier_nc)
    # flat layout in the model's order: [mu, log tau, theta_decentered]
    loc = np.concatenate([[MU, np.log(TAU)], DEC])
    params = _params(guide, auto_loc=loc)
    _check_sites(guide.median(params), MU, TAU, DEC)
    draws = guide.sample_posterior(jax.random.key(2), params, sample_shape=(5,))
    _check_sites(draws, draws["mu"], draws["tau"], draws["theta_decentered"])


def test_autoguidelist_deterministic_sites_use_all_parts():
    # The part guiding theta_decentered sees mu and tau drawn by `seed`; the deterministic
    # sites must use the list's own mu and tau.
    guide = AutoGuideList(hier_nc)
    guide.append(AutoDelta(block(seed(hier_nc, 0), expose=["mu", "tau"])))
    guide.append(AutoNormal(block(seed(hier_nc, 0), hide=["mu", "tau"])))
    params = _params(guide, mu_auto_loc=MU, tau_auto_loc=TAU, theta_decentered_auto_loc=DEC)
    _check_sites(guide.median(params), MU, TAU, DEC)
    draws = guide.sample_posterior(jax.random.key(3), params, sample_shape=(2,))
    _check_sites(draws, draws["mu"], draws["tau"], draws["theta_decentered"])


N_SUB, B_SUB = 8, 3


def local(y):
    mu = jppl.sample("mu", dist.Normal(0.0, 10.0))
    with jppl.plate("data", N_SUB, subsample_size=B_SUB) as idx:
        z = jppl.sample("z", dist.Normal(mu, 1.0))
        jppl.deterministic("z_plus_mu", z + mu)
        jppl.sample("y", dist.Normal(z, 1.0), obs=y[idx])


def test_autonormal_deterministic_sites_of_subsampled_plates_are_full_size():
    guide = AutoNormal(local)
    y = jnp.arange(N_SUB, dtype=jnp.float32)
    tr = trace(seed(guide, 0)).get_trace(y)
    params = {k: s["value"] for k, s in tr.items() if s["type"] == "param"}
    z_loc = np.linspace(-1.0, 1.0, N_SUB)
    params = {**params, "mu_auto_loc": jnp.asarray(0.4), "z_auto_loc": jnp.asarray(z_loc)}
    med = guide.median(params)
    np.testing.assert_allclose(med["z_plus_mu"], z_loc + 0.4, rtol=1e-6)
    draws = guide.sample_posterior(jax.random.key(0), params, y, sample_shape=(2,))
    assert draws["z_plus_mu"].shape == (2, N_SUB)
    np.testing.assert_allclose(draws["z_plus_mu"], draws["z"] + draws["mu"][:, None], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# jppl.optim: NumPyro's optimizers, checked against their update rules written out in NumPy
# ---------------------------------------------------------------------------------------------

PARAMS = {"a": np.array(0.5), "b": np.array([1.0, -2.0, 0.0]), "c": np.arange(6.0).reshape(2, 3)}
GRADS = [
    {"a": np.array(0.3), "b": np.array([0.5, -1.0, 0.0]), "c": np.linspace(-2, 3, 6).reshape(2, 3)},
    {"a": np.array(-0.2), "b": np.array([2.0, 0.1, 0.0]), "c": np.linspace(1, -4, 6).reshape(2, 3)},
    {"a": np.array(40.0), "b": np.array([-0.3, 0.7, 0.0]), "c": np.full((2, 3), -12.0)},
]


def schedule(i):
    return 0.1 / (1.0 + i)


def _run(optimizer):
    params = jax.tree.map(jnp.asarray, PARAMS)
    state = optimizer.init(params)
    for g in GRADS:
        updates, state = optimizer.update(jax.tree.map(jnp.asarray, g), state, params)
        params = optax.apply_updates(params, updates)
    return params


def _hand(step):
    """Run ``step(i, x, g, state) -> (x, state)`` leaf by leaf in NumPy (state starts None)."""
    out = {}
    for k, x in PARAMS.items():
        x, st = x.astype(np.float64), None
        for i, g in enumerate(GRADS):
            x, st = step(i, x, g[k].astype(np.float64), st)
        out[k] = x
    return out


def _lr(step_size, i):
    return step_size(i) if callable(step_size) else step_size


def sgd_rule(lr):
    return lambda i, x, g, s: (x - _lr(lr, i) * g, None)


def momentum_rule(lr, mass):
    def step(i, x, g, v):
        v = g if v is None else mass * v + g
        return x - _lr(lr, i) * v, v

    return step


def adam_rule(lr, b1=0.9, b2=0.999, eps=1e-8, clip=None):
    def step(i, x, g, st):
        if clip is not None:
            g = np.clip(g, -clip, clip)
        m, v = (np.zeros_like(x), np.zeros_like(x)) if st is None else st
        m = (1 - b1) * g + b1 * m
        v = (1 - b2) * g**2 + b2 * v
        mhat, vhat = m / (1 - b1 ** (i + 1)), v / (1 - b2 ** (i + 1))
        return x - _lr(lr, i) * mhat / (np.sqrt(vhat) + eps), (m, v)

    return step


def adagrad_rule(lr, momentum=0.9):
    def step(i, x, g, st):
        g_sq, m = (np.zeros_like(x), np.zeros_like(x)) if st is None else st
        g_sq = g_sq + g**2
        inv = np.where(g_sq > 0, 1 / np.sqrt(np.where(g_sq > 0, g_sq, 1.0)), 0.0)
        m = (1 - momentum) * g * inv + momentum * m
        return x - _lr(lr, i) * m, (g_sq, m)

    return step


def rmsprop_rule(lr, gamma=0.9, eps=1e-8):
    def step(i, x, g, v):
        v = (1 - gamma) * g**2 + (0 if v is None else gamma * v)
        return x - _lr(lr, i) * g / np.sqrt(v + eps), v

    return step


def rmsprop_momentum_rule(lr, gamma=0.9, eps=1e-8, momentum=0.9):
    def step(i, x, g, st):
        v, mom = (np.zeros_like(x), np.zeros_like(x)) if st is None else st
        v = gamma * v + (1 - gamma) * g**2
        mom = momentum * mom + _lr(lr, i) * g / np.sqrt(v + eps)
        return x - mom, (v, mom)

    return step


def sm3_rule(lr, momentum=0.9):
    # One accumulator per axis (a scalar is treated as a vector of one element).
    def step(i, x, g, st):
        shape = x.shape
        x1, g1 = np.atleast_1d(x), np.atleast_1d(g)
        if st is None:
            st = ([np.zeros(n) for n in x1.shape], np.zeros_like(x1))
        accs, m = st
        nd = x1.ndim
        views = [a.reshape([-1 if j == d else 1 for j in range(nd)]) for d, a in enumerate(accs)]
        acc = np.minimum.reduce(np.broadcast_arrays(*views)) + g1**2
        inv = np.where(acc > 0, 1 / np.sqrt(np.where(acc > 0, acc, 1.0)), 0.0)
        m = (1 - momentum) * g1 * inv + momentum * m
        x1 = x1 - _lr(lr, i) * m
        accs = [acc.max(axis=tuple(j for j in range(nd) if j != d)) for d in range(nd)]
        return x1.reshape(shape), (accs, m)

    return step


OPT = jppl.optim
OPTIMIZERS = {
    "SGD": (OPT.SGD(0.1), sgd_rule(0.1)),
    "SGD-schedule": (OPT.SGD(schedule), sgd_rule(schedule)),
    "Momentum": (OPT.Momentum(0.05, mass=0.8), momentum_rule(0.05, 0.8)),
    "Adam": (OPT.Adam(0.01), adam_rule(0.01)),
    "Adam-args": (
        OPT.Adam(schedule, b1=0.5, b2=0.9, eps=1e-3),
        adam_rule(schedule, 0.5, 0.9, 1e-3),
    ),
    "ClippedAdam": (OPT.ClippedAdam(0.01, clip_norm=1.0), adam_rule(0.01, clip=1.0)),
    "Adagrad": (OPT.Adagrad(0.1), adagrad_rule(0.1)),
    "Adagrad-momentum": (OPT.Adagrad(schedule, momentum=0.3), adagrad_rule(schedule, 0.3)),
    "RMSProp": (OPT.RMSProp(0.01), rmsprop_rule(0.01)),
    "RMSProp-args": (OPT.RMSProp(0.01, gamma=0.5, eps=1e-2), rmsprop_rule(0.01, 0.5, 1e-2)),
    "RMSPropMomentum": (
        OPT.RMSPropMomentum(schedule, gamma=0.8, momentum=0.5),
        rmsprop_momentum_rule(schedule, 0.8, 1e-8, 0.5),
    ),
    "SM3": (OPT.SM3(0.1), sm3_rule(0.1)),
    "SM3-schedule": (OPT.SM3(schedule, momentum=0.5), sm3_rule(schedule, 0.5)),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optim_matches_numpyro_update_rules(name):
    optimizer, rule = OPTIMIZERS[name]
    assert isinstance(optimizer, optax.GradientTransformation)
    got, expected = _run(optimizer), _hand(rule)
    for k in PARAMS:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_optim_first_adam_step_by_hand():
    # One Adam step moves each coordinate by step_size * sign(g) (up to eps; float32 holds
    # 1 - b2 to a relative 1.3e-5).
    params = {"w": jnp.array([1.0, -1.0])}
    opt = jppl.optim.Adam(0.1)
    updates, _ = opt.update({"w": jnp.array([3.0, -0.5])}, opt.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.1, 0.1], rtol=2e-5)


def test_optim_bad_arguments():
    with pytest.raises(ValueError, match="Adam: step_size must be > 0"):
        jppl.optim.Adam(-1.0)
    with pytest.raises(TypeError, match="SGD: step_size"):
        jppl.optim.SGD("fast")
    with pytest.raises(ValueError, match="Momentum: mass"):
        jppl.optim.Momentum(0.1, mass=1.5)
    with pytest.raises(ValueError, match="ClippedAdam: clip_norm"):
        jppl.optim.ClippedAdam(0.1, clip_norm=0.0)
    assert jppl.optim.optax_to_numpyro(optax.sgd(0.1)) is not None
    with pytest.raises(TypeError, match="optax_to_numpyro"):
        jppl.optim.optax_to_numpyro(0.1)


def test_optim_plugs_into_svi():
    # Normal-Normal: the posterior mean of mu is sum(y) / (n + 1/100), its sd 1/sqrt(n + 1/100).
    y = jnp.array([0.5, 1.5, 1.0, 2.0])

    def model(y):
        mu = jppl.sample("mu", dist.Normal(0.0, 10.0))
        with jppl.plate("N", y.shape[0]):
            jppl.sample("y", dist.Normal(mu, 1.0), obs=y)

    guide = AutoNormal(model)
    svi = SVI(model, guide, jppl.optim.ClippedAdam(0.05), Trace_ELBO(num_particles=8))
    params = svi.run(jax.random.key(0), 3000, y, progress_bar=False).params
    prec = y.shape[0] + 1 / 100
    np.testing.assert_allclose(params["mu_auto_loc"], float(jnp.sum(y)) / prec, atol=0.05)
    np.testing.assert_allclose(params["mu_auto_scale"], prec**-0.5, rtol=0.1)
