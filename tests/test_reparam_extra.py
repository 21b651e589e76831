"""Reparameterizers CircularReparam, ExplicitReparam, ProjectedNormalReparam,
UnitJacobianReparam, NeuTraReparam, HaarReparam and DiscreteCosineReparam.

Each keeps the law of the site (two-sample KS tests against scipy or the textbook
construction, with a deliberately wrong target that must fail) and gives the log density of
its new coordinates (closed forms from scipy, Jacobians from ``jax.jacobian``).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import fft, stats

import jppl
import jppl.distributions as dist
from jppl.distributions import transforms as T
from jppl.handlers import mask, reparam, seed, substitute, trace
from jppl.infer import MCMC, NUTS, init_to_feasible
from jppl.infer.autoguide import AutoDiagonalNormal, AutoMultivariateNormal, AutoNormal
from jppl.model.density import log_density, potential_energy
from jppl.reparam import (
    CircularReparam,
    DiscreteCosineReparam,
    ExplicitReparam,
    HaarReparam,
    NeuTraReparam,
    ProjectedNormalReparam,
    UnitJacobianReparam,
)

KS_ALPHA = 0.01


def _draws(model, name, n, seed_=0, *args):
    """``n`` prior draws of site ``name``: ``(n,) + site shape`` (one compiled program)."""
    keys = jax.random.split(jax.random.key(seed_), n)
    draw = jax.jit(jax.vmap(lambda k: trace(seed(model, k)).get_trace(*args)[name]["value"]))
    return np.asarray(draw(keys))


def _evaluate(model, values, *args):
    """Run ``model`` with sites substituted by a batch of ``values`` as one compiled program.

    ``values``: ``{site: (batch,) + site shape}``. Returns the log joints ``(batch,)``, the
    values of the sample and deterministic sites ``{site: (batch,) + shape}``, and the
    structure of the trace ``{site: (type, fn batch shape, fn event shape)}``.
    """
    structure = {}

    def one(v):
        log_joint, tr = log_density(model, args, {}, v)
        for name, site in tr.items():
            fn = site["fn"] if site["type"] == "sample" else None
            shapes = (fn.batch_shape, fn.event_shape) if fn is not None else (None, None)
            structure[name] = (site["type"], *shapes)
        kept = {n: s["value"] for n, s in tr.items() if s["type"] in ("sample", "deterministic")}
        return log_joint, kept

    log_joint, kept = jax.jit(jax.vmap(one))(values)
    return np.asarray(log_joint, np.float64), kept, structure


def _structure(model, *args):
    """``{site: (type, value shape)}`` of a seeded run, traced without compiling anything."""
    found = {}

    def run():
        tr = trace(seed(model, 0)).get_trace(*args)
        found.update({n: (s["type"], jnp.shape(s["value"])) for n, s in tr.items()})
        return 0

    jax.eval_shape(run)
    return found


def _ks_pass_and_wrong_fails(draws, truth, wrong):
    """``draws`` match ``truth`` (p > 0.01) and the KS test rejects ``wrong`` (p < 0.01)."""
    ok = stats.ks_2samp(draws, truth).pvalue
    bad = stats.ks_2samp(draws, wrong).pvalue
    assert ok > KS_ALPHA, ok
    assert bad < KS_ALPHA, bad


def _wrap(x):
    return np.remainder(x + np.pi, 2 * np.pi) - np.pi


# -- CircularReparam ---------------------------------------------------------------------------


def _von_mises_model():
    with jppl.plate("p", 2):
        jppl.sample("x", dist.VonMises(jnp.array([3.0, -1.0]), jnp.array([2.0, 0.5])))


def test_circular_reparam_log_density_is_the_wrapped_von_mises():
    model = reparam(_von_mises_model, {"x": CircularReparam()})
    us = np.array([[3.1, -1.0], [3.3, 5.0], [-9.0, 20.0]])
    lp, values, structure = _evaluate(model, {"x_unwrapped": jnp.asarray(us, jnp.float32)})
    assert structure["x"][0] == "deterministic"
    assert structure["x_unwrapped"] == ("sample", (2,), ())
    assert structure["x_factor"][0] == "sample"
    # The flat unwrapped site adds nothing: the density is the von Mises at wrap(u), periodic
    # in u (each period holds the whole law).
    truth = stats.vonmises(kappa=np.array([2.0, 0.5]), loc=np.array([3.0, -1.0]))
    assert_allclose(lp, truth.logpdf(_wrap(us)).sum(-1), rtol=1e-5)
    x = np.asarray(values["x"])
    assert_allclose(x, _wrap(us), atol=1e-5)
    assert np.all((x >= -np.pi) & (x < np.pi))


def test_circular_reparam_errors():
    def normal_model():
        jppl.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(TypeError, match="circular support"):
        _structure(reparam(normal_model, {"x": CircularReparam()}))

    def observed():
        jppl.sample("x", dist.VonMises(0.0, 1.0), obs=0.5)

    with pytest.raises(ValueError, match="observed site 'x'"):
        _structure(reparam(observed, {"x": CircularReparam()}))


@pytest.mark.slow
def test_circular_reparam_nuts_across_the_cut():
    """VonMises centered at 3.0 has mass on both sides of +-pi; NUTS on the unwrapped site."""

    def model():
        jppl.sample("x", dist.VonMises(3.0, 2.0))

    mcmc = MCMC(
        NUTS(reparam(model, {"x": CircularReparam()})),
        num_warmup=500,
        num_samples=2000,
        progress_bar=False,
        warn=False,
    )
    mcmc.run(jax.random.key(1))
    x = np.asarray(mcmc.get_samples()["x"])[::2]
    rng = np.random.default_rng(0)
    truth = stats.vonmises(kappa=2.0, loc=3.0).rvs(4000, random_state=rng)
    wrong = stats.vonmises(kappa=2.0, loc=2.5).rvs(4000, random_state=rng)
    _ks_pass_and_wrong_fails(_wrap(x), _wrap(truth), _wrap(wrong))


# -- ExplicitReparam ---------------------------------------------------------------------------


def _gamma_model():
    jppl.sample("x", dist.Gamma(4.0, 4.0))


def test_explicit_reparam_softplus_density():
    model = reparam(_gamma_model, {"x": ExplicitReparam(T.SoftplusTransform().inv)})
    ys = np.array([-1.5, 0.2, 2.0])
    lp, values, structure = _evaluate(model, {"x_base": jnp.asarray(ys, jnp.float32)})
    assert structure["x"][0] == "deterministic" and structure["x_base"][0] == "sample"
    assert_allclose(values["x"], np.log1p(np.exp(ys)), rtol=1e-5)
    # Density of y = softplus^{-1}(x): p_gamma(softplus(y)) * sigmoid(y).
    expected = stats.gamma(4.0, scale=0.25).logpdf(np.log1p(np.exp(ys))) - np.log1p(np.exp(-ys))
    assert_allclose(lp, expected, rtol=1e-5)


def test_explicit_reparam_keeps_the_law():
    def model():
        jppl.sample("x", dist.Exponential(2.0))

    x = _draws(reparam(model, {"x": ExplicitReparam(T.SoftplusTransform().inv)}), "x", 2000)
    rng = np.random.default_rng(0)
    _ks_pass_and_wrong_fails(
        x,
        stats.expon(scale=0.5).rvs(4000, random_state=rng),
        stats.expon(scale=0.6).rvs(4000, random_state=rng),
    )


def test_explicit_reparam_composes_a_sequence_of_transforms():
    """y = 1 + 2 log x for x ~ LogNormal(0.3, 0.8): y ~ Normal(1.6, 1.6) (closed form)."""

    def model():
        jppl.sample("x", dist.LogNormal(0.3, 0.8))

    rep = ExplicitReparam([T.ExpTransform().inv, T.AffineTransform(1.0, 2.0)])
    assert isinstance(rep.transform, T.ComposeTransform)
    model_r = reparam(model, {"x": rep})
    ys = np.array([-1.0, 1.6, 4.0])
    lp, values, _ = _evaluate(model_r, {"x_base": jnp.asarray(ys, jnp.float32)})
    assert_allclose(lp, stats.norm(1.6, 1.6).logpdf(ys), rtol=1e-5)
    assert_allclose(values["x"], np.exp((ys - 1) / 2), rtol=1e-5)


def test_explicit_reparam_errors():
    with pytest.raises(TypeError, match="transform must be a Transform"):
        ExplicitReparam("softplus")
    with pytest.raises(TypeError, match="transform must be a Transform"):
        ExplicitReparam([])

    def observed():
        jppl.sample("x", dist.Gamma(4.0, 4.0), obs=1.0)

    rep = ExplicitReparam(T.ExpTransform().inv)
    with pytest.raises(ValueError, match="observed site 'x'"):
        _structure(reparam(observed, {"x": rep}))


@pytest.mark.slow
def test_explicit_reparam_nuts_samples_the_gamma():
    model = reparam(_gamma_model, {"x": ExplicitReparam(T.SoftplusTransform().inv)})
    mcmc = MCMC(NUTS(model), num_warmup=500, num_samples=2000, progress_bar=False)
    mcmc.run(jax.random.key(0))
    x = np.asarray(mcmc.get_samples()["x"])[::2]
    rng = np.random.default_rng(1)
    _ks_pass_and_wrong_fails(
        x,
        stats.gamma(4.0, scale=1 / 4.0).rvs(4000, random_state=rng),
        stats.gamma(4.0, scale=1 / 3.2).rvs(4000, random_state=rng),
    )


# -- ProjectedNormalReparam ----------------------------------------------------------------------

CONC = np.array([[1.0, 2.0, 0.5], [-0.3, 0.2, 0.1]])


def _projected_normal_model():
    with jppl.plate("p", 2):
        jppl.sample("x", dist.ProjectedNormal(jnp.asarray(CONC, jnp.float32)))


def _projected_normal_truth(conc, n, rng):
    """Direction of Normal(conc, I): the definition of ProjectedNormal."""
    z = conc + rng.standard_normal((n,) + conc.shape)
    return z / np.linalg.norm(z, axis=-1, keepdims=True)


def test_projected_normal_reparam_keeps_the_law():
    model = reparam(_projected_normal_model, {"x": ProjectedNormalReparam()})
    v = np.random.default_rng(3).standard_normal((4, 2, 3))
    lp, values, structure = _evaluate(model, {"x_normal": jnp.asarray(v, jnp.float32)})
    assert structure["x"][0] == "deterministic"
    assert structure["x_normal"] == ("sample", (2,), (3,))
    z = v + CONC
    assert_allclose(values["x"], z / np.linalg.norm(z, axis=-1, keepdims=True), rtol=1e-5)
    # The new site is parameter free: its density is the standard normal one.
    assert_allclose(lp, stats.norm.logpdf(v).sum((1, 2)), rtol=1e-5)

    x = _draws(model, "x", 2000)
    rng = np.random.default_rng(0)
    truth = _projected_normal_truth(CONC, 4000, rng)
    wrong = _projected_normal_truth(0.6 * CONC, 4000, rng)
    unit = CONC / np.linalg.norm(CONC, axis=-1, keepdims=True)
    for i in range(2):
        # the component along the concentration direction and a plain coordinate
        _ks_pass_and_wrong_fails(x[:, i] @ unit[i], truth[:, i] @ unit[i], wrong[:, i] @ unit[i])
    _ks_pass_and_wrong_fails(x[:, 0, 0], truth[:, 0, 0], wrong[:, 0, 0])


def test_projected_normal_reparam_errors():
    def normal_model():
        jppl.sample("x", dist.Normal(jnp.zeros(3), 1.0).to_event(1))

    with pytest.raises(TypeError, match="expected a ProjectedNormal, got Normal"):
        _structure(reparam(normal_model, {"x": ProjectedNormalReparam()}))

    def observed():
        jppl.sample("x", dist.ProjectedNormal(jnp.ones(3)), obs=jnp.array([1.0, 0.0, 0.0]))

    with pytest.raises(ValueError, match="observed site 'x'"):
        _structure(reparam(observed, {"x": ProjectedNormalReparam()}))


# -- UnitJacobianReparam -------------------------------------------------------------------------


def _mvn_model():
    cov = np.array([[1.0, 0.6, 0.2], [0.6, 2.0, 0.3], [0.2, 0.3, 0.5]])
    jppl.sample("x", dist.MultivariateNormal(jnp.array([0.5, -1.0, 2.0]), jnp.asarray(cov)))


def test_unit_jacobian_reparam_with_a_shift_adds_no_jacobian():
    shift = jnp.array([1.0, -2.0, 0.5])
    rep = UnitJacobianReparam(T.AffineTransform(shift, 1.0, domain=dist.constraints.real_vector))
    model = reparam(_mvn_model, {"x": rep})
    ys = np.array([[0.0, 0.0, 0.0], [1.5, -3.0, 2.5], [-1.0, 2.0, 4.0]])
    lp, values, structure = _evaluate(model, {"x_transformed": jnp.asarray(ys, jnp.float32)})
    assert structure["x"][0] == "deterministic"
    assert structure["x_transformed"] == ("sample", (), (3,))
    assert_allclose(values["x"], ys - np.asarray(shift), rtol=1e-6)
    cov = np.array([[1.0, 0.6, 0.2], [0.6, 2.0, 0.3], [0.2, 0.3, 0.5]])
    truth = stats.multivariate_normal(np.array([0.5, -1.0, 2.0]), cov)
    assert_allclose(lp, truth.logpdf(ys - np.asarray(shift)), rtol=1e-5)


def _lognormal_model():
    with jppl.plate("p", 2):
        jppl.sample("x", dist.LogNormal(0.2, 0.7).expand([4]).to_event(1))


def test_unit_jacobian_reparam_on_a_positive_support():
    """A unit-triangular shear of u = log x: the density of y is that of u (Normal(0.2, 0.7)),
    so the marginal of x stays LogNormal (sampled in the slow test below)."""
    shear = jnp.eye(4) + jnp.tril(jnp.full((4, 4), 0.5), -1)
    rep = UnitJacobianReparam(T.LowerCholeskyAffine(jnp.zeros(4), shear), suffix="sheared")
    model = reparam(_lognormal_model, {"x": rep})
    y = np.random.default_rng(1).standard_normal((3, 2, 4))
    u = np.linalg.solve(np.asarray(shear, np.float64), y[..., None])[..., 0]
    lp, values, structure = _evaluate(model, {"x_sheared": jnp.asarray(y, jnp.float32)})
    assert structure["x_sheared"] == ("sample", (2,), (4,))
    assert_allclose(values["x"], np.exp(u), rtol=1e-5)
    assert_allclose(lp, stats.norm(0.2, 0.7).logpdf(u).sum((1, 2)), rtol=1e-5)


@pytest.mark.slow
def test_unit_jacobian_reparam_keeps_the_lognormal_law():
    shear = jnp.eye(4) + jnp.tril(jnp.full((4, 4), 0.5), -1)
    rep = UnitJacobianReparam(T.LowerCholeskyAffine(jnp.zeros(4), shear), suffix="sheared")
    draws = _draws(reparam(_lognormal_model, {"x": rep}), "x", 2000)
    rng = np.random.default_rng(0)
    truth = stats.lognorm(0.7, scale=np.exp(0.2)).rvs(4000, random_state=rng)
    wrong = stats.lognorm(0.7, scale=np.exp(0.35)).rvs(4000, random_state=rng)
    for j in (0, 3):
        _ks_pass_and_wrong_fails(draws[:, 1, j], truth, wrong)


def test_unit_jacobian_reparam_with_a_non_unit_jacobian_is_still_exact():
    """With y = a + B log x (|det B| != 1) the new site's density carries the Jacobian:
    it equals p(x(y)) |det dx/dy|, with the determinant from jax.jacobian."""
    b = jnp.array([[2.0, 0.0, 0.0], [0.5, 0.7, 0.0], [-0.4, 0.3, 1.5]])
    a = jnp.array([0.3, -0.2, 1.0])

    def model():
        jppl.sample("x", dist.Gamma(jnp.array([2.0, 3.0, 1.5]), 1.5).to_event(1))

    rep = UnitJacobianReparam(T.LowerCholeskyAffine(a, b))
    model_r = reparam(model, {"x": rep})

    def x_of_y(y):
        return jnp.exp(jax.scipy.linalg.solve_triangular(b, y - a, lower=True))

    ys = jnp.array([[0.1, 0.2, 0.3], [1.0, -0.5, 2.0]])
    x, jac = jax.jit(lambda ys: (jax.vmap(x_of_y)(ys), jax.vmap(jax.jacobian(x_of_y))(ys)))(ys)
    x = np.asarray(x, np.float64)
    log_det = np.linalg.slogdet(np.asarray(jac, np.float64))[1]
    expected = stats.gamma(np.array([2.0, 3.0, 1.5]), scale=1 / 1.5).logpdf(x).sum(-1)
    lp, values, _ = _evaluate(model_r, {"x_transformed": ys})
    assert_allclose(values["x"], x, rtol=1e-5)
    assert_allclose(lp, expected + log_det, rtol=1e-5)


def test_unit_jacobian_reparam_errors():
    with pytest.raises(TypeError, match="transform must be a Transform"):
        UnitJacobianReparam(lambda x: x)
    with pytest.raises(ValueError, match="suffix must be a non-empty str"):
        UnitJacobianReparam(T.PermuteTransform([1, 0]), suffix="")

    def scalar():
        jppl.sample("x", dist.Normal(0.0, 1.0))

    rep = UnitJacobianReparam(T.PermuteTransform([1, 0]))
    with pytest.raises(ValueError, match="acts on 1 trailing dims"):
        _structure(reparam(scalar, {"x": rep}))

    def observed():
        jppl.sample("x", dist.Normal(jnp.zeros(2), 1.0).to_event(1), obs=jnp.zeros(2))

    with pytest.raises(ValueError, match="observed site 'x'"):
        _structure(reparam(observed, {"x": rep}))


# -- HaarReparam and DiscreteCosineReparam --------------------------------------------------------

STEPS = 8
# A Gaussian random walk x_t = x_{t-1} + 0.5 eps_t: Cov(x_s, x_t) = 0.25 min(s, t).
WALK_COV = 0.25 * np.minimum.outer(np.arange(1, STEPS + 1), np.arange(1, STEPS + 1))
WALK_REPARAMS = {
    "a": HaarReparam(),
    "b": HaarReparam(flip=True),
    "c": DiscreteCosineReparam(),
    "d": DiscreteCosineReparam(smooth=1.0),
    "e": DiscreteCosineReparam(smooth=1.0),  # on a positive (LogNormal) series
    "f": HaarReparam(dim=-2),  # the time axis of a (time, 3) event
}
NEW_SITE = {"a": "a_haar", "b": "b_haar", "c": "c_dct", "d": "d_dct", "e": "e_dct", "f": "f_haar"}


def _walks_model():
    walk = dist.MultivariateNormal(jnp.zeros(STEPS), jnp.asarray(WALK_COV, jnp.float32))
    with jppl.plate("p", 2):
        for name in "abcd":
            jppl.sample(name, walk)
        jppl.sample("e", dist.LogNormal(0.2, 0.7).expand([STEPS]).to_event(1))
    jppl.sample("f", dist.Normal(0.0, 1.0).expand([STEPS, 3]).to_event(2))


def _dct_weights(smooth):
    """Frequency ``k + 1/2`` to the power ``smooth``, scaled to geometric mean one."""
    w = (np.arange(STEPS) + 0.5) ** smooth
    return w / np.exp(np.mean(np.log(w)))


def test_haar_and_dct_reparams_have_unit_jacobian():
    model = reparam(_walks_model, WALK_REPARAMS)
    rng = np.random.default_rng(5)
    ys = {NEW_SITE[n]: rng.standard_normal((2, 2, STEPS)) for n in "abcde"}
    ys["f_haar"] = rng.standard_normal((2, STEPS, 3))
    ys["b_haar"] = ys["a_haar"]  # to compare the flipped Haar with the plain one
    lp, values, structure = _evaluate(
        model, {k: jnp.asarray(v, jnp.float32) for k, v in ys.items()}
    )
    for name, new in NEW_SITE.items():
        assert structure[name][0] == "deterministic" and structure[new][0] == "sample"
    assert structure["a_haar"][1:] == ((2,), (STEPS,))
    assert structure["f_haar"][1:] == ((), (STEPS, 3))
    x = {n: np.asarray(values[n], np.float64) for n in NEW_SITE}

    # The DCT sites against scipy's orthonormal inverse DCT-II (weighted for smooth = 1).
    assert_allclose(x["c"], fft.idct(ys["c_dct"], type=2, norm="ortho"), atol=1e-5)
    w = _dct_weights(1.0)
    assert_allclose(x["d"], fft.idct(ys["d_dct"] / w, type=2, norm="ortho"), atol=1e-5)
    assert_allclose(x["e"], np.exp(fft.idct(ys["e_dct"] / w, type=2, norm="ortho")), rtol=1e-5)
    # flip reverses the time axis before the transform: x_b(y) is x_a(y) reversed.
    assert_allclose(x["b"], x["a"][..., ::-1], atol=1e-6)

    # No Jacobian term: the log joint is the original density at x (for the positive site,
    # the density of u = log x, in which the DCT acts).
    walk = stats.multivariate_normal(np.zeros(STEPS), WALK_COV)
    expected = sum(walk.logpdf(x[n]).sum(-1) for n in "abcd")
    expected = expected + stats.norm(0.2, 0.7).logpdf(np.log(x["e"])).sum((1, 2))
    expected = expected + stats.norm.logpdf(x["f"]).sum((1, 2))
    assert_allclose(lp, expected, rtol=1e-5)

    # ... which is right because x(y) (u = log x for the positive site) preserves volume: the
    # DCT sites are scipy's orthonormal DCT with weights of geometric mean one (checked above);
    # the Haar maps by their Jacobians.
    def haar_x(y_a, y_f):
        walk = dist.Normal(0.0, 1.0).expand([STEPS]).to_event(1)
        grid = dist.Normal(0.0, 1.0).expand([STEPS, 3]).to_event(2)
        with substitute(data={"a_haar": y_a, "f_haar": y_f}):
            return WALK_REPARAMS["a"]("a", walk, None)[1], WALK_REPARAMS["f"]("f", grid, None)[1]

    y_a, y_f = jnp.asarray(ys["a_haar"][0, 0], jnp.float32), jnp.asarray(ys["f_haar"][0])
    jac = jax.jit(jax.jacobian(haar_x, argnums=(0, 1)))(y_a, y_f)
    for out, n in ((0, STEPS), (1, 3 * STEPS)):
        matrix = np.asarray(jac[out][out], np.float64).reshape(n, n)
        assert_allclose(np.linalg.slogdet(matrix)[1], 0.0, atol=1e-4)


def test_haar_and_dct_reparam_errors():
    def scalar():
        jppl.sample("x", dist.Normal(0.0, 1.0))

    for rep in (HaarReparam(), DiscreteCosineReparam()):
        with pytest.raises(ValueError, match="acts on 1 trailing dims"):
            _structure(reparam(scalar, {"x": rep}))
    with pytest.raises(ValueError, match="dim must be a negative int"):
        HaarReparam(dim=0)
    with pytest.raises(ValueError, match="dim must be a negative int"):
        DiscreteCosineReparam(dim=1)

    def observed():
        jppl.sample("x", dist.Normal(jnp.zeros(4), 1.0).to_event(1), obs=jnp.zeros(4))

    with pytest.raises(ValueError, match="observed site 'x'"):
        _structure(reparam(observed, {"x": HaarReparam()}))


@pytest.mark.slow
def test_dct_reparam_keeps_the_random_walk_law():
    walk = stats.multivariate_normal(np.zeros(STEPS), WALK_COV)
    rng = np.random.default_rng(2)
    truth, wrong = walk.rvs(4000, random_state=rng), 1.2 * walk.rvs(4000, random_state=rng)
    for rep in (DiscreteCosineReparam(smooth=1.0), HaarReparam()):
        x = _draws(reparam(_walks_model, {"d": rep}), "d", 2000)[:, 0]
        for t in (0, STEPS - 1):
            _ks_pass_and_wrong_fails(x[:, t], truth[:, t], wrong[:, t])


# -- NeuTraReparam ---------------------------------------------------------------------------------

Y = np.array([[0.8, -0.4], [1.5, 0.1], [0.3, -1.2], [1.1, 0.0]])
PRIOR_SD = 2.0
TAU_LOC, TAU_SD = 0.5, 0.7
THETA_SD = 1.5
DIM = 6  # mu (2), log tau (1), theta (3, in a plate)


def _conjugate_model(y):
    mu = jppl.sample("mu", dist.Normal(0.0, PRIOR_SD).expand([2]).to_event(1))
    jppl.sample("tau", dist.LogNormal(TAU_LOC, TAU_SD))
    with jppl.plate("g", 3):
        jppl.sample("theta", dist.Normal(0.0, THETA_SD))
    with jppl.plate("n", y.shape[0]):
        jppl.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=y)


def _exact_posterior():
    """Posterior of (mu, log tau, theta) in the unconstrained space: Gaussian, mean and sd."""
    precision = 1 / PRIOR_SD**2 + Y.shape[0]
    mean = np.concatenate([Y.sum(0) / precision, [TAU_LOC], np.zeros(3)])
    sd = np.array([precision**-0.5] * 2 + [TAU_SD] + [THETA_SD] * 3)
    return mean, sd


def _ran_guide(cls):
    guide = cls(_conjugate_model, init_loc_fn=init_to_feasible)
    seed(guide, 0)(jnp.asarray(Y))  # runs the prototype
    return guide


# The guides' parameters are set by hand: NeuTraReparam only reads the prototype of a guide,
# so one run guide per class serves every test.
@pytest.fixture(scope="module")
def diag_guide():
    return _ran_guide(AutoDiagonalNormal)


@pytest.fixture(scope="module")
def mvn_guide():
    return _ran_guide(AutoMultivariateNormal)


def _original_potential(x):
    values = {"mu": x[:2], "tau": x[2], "theta": x[3:]}
    return potential_energy(_conjugate_model, (jnp.asarray(Y),), {}, values)


def _check_warped_potential(neutra, models, zs):
    """U_warped(z) = U(T(z)) - log|det dT/dz| for each reparameterized model in ``models``,
    with the determinant from jax.jacobian. Returns the first model's U_warped(zs)."""

    def warped(model_r):
        return jax.vmap(
            lambda z: potential_energy(model_r, (jnp.asarray(Y),), {}, {"auto_shared_latent": z})
        )

    # one compiled program for all sides
    got, u, jac = jax.jit(
        lambda zs: (
            [warped(m)(zs) for m in models],
            jax.vmap(_original_potential)(neutra.transform(zs)),
            jax.vmap(jax.jacobian(neutra.transform))(zs),
        )
    )(zs)
    log_det = np.linalg.slogdet(np.asarray(jac, np.float64))[1]
    for g in got:
        assert_allclose(g, np.asarray(u, np.float64) - log_det, rtol=1e-5, atol=1e-5)
    return np.asarray(got[0])


def test_neutra_diagonal_normal_at_the_exact_posterior_whitens_the_potential(diag_guide):
    mean, sd = _exact_posterior()
    params = {
        "auto_loc": jnp.asarray(mean, jnp.float32),
        "auto_scale": jnp.asarray(sd, jnp.float32),
    }
    neutra = NeuTraReparam(diag_guide, params)
    model_r = neutra.reparam(_conjugate_model)
    structure = _structure(model_r, jnp.asarray(Y))
    # The shared latent is drawn outside every plate; the per-site factors inside theirs.
    assert structure["auto_shared_latent"] == ("sample", (DIM,))
    assert structure["mu"] == ("deterministic", (2,)) and structure["tau"][0] == "deterministic"
    assert structure["theta"] == ("deterministic", (3,))
    assert structure["_theta_log_prob"] == ("sample", (3, 0))  # a factor per plate entry
    assert {"_mu_log_prob", "_tau_log_prob", "_auto_shared_latent_log_det"} <= set(structure)

    zs = jax.random.normal(jax.random.key(2), (4, DIM))
    warped = _check_warped_potential(neutra, [model_r], zs)
    # At the exact posterior the warped potential is |z|^2 / 2 + const.
    gaps = warped - 0.5 * np.sum(np.asarray(zs, np.float64) ** 2, -1)
    assert_allclose(gaps, gaps[0], atol=1e-4)

    # transform_sample maps (batched) shared latents into the supports.
    out = neutra.transform_sample(zs)
    x = np.asarray(mean + sd * np.asarray(zs, np.float64))
    assert_allclose(out["mu"], x[:, :2], rtol=1e-5)
    assert_allclose(out["tau"], np.exp(x[:, 2]), rtol=1e-5)
    assert_allclose(out["theta"], x[:, 3:], rtol=1e-5)

    # The bare handler would draw the shared latent at theta, inside its plate: a clear error.
    with pytest.raises(ValueError, match="inside a plate"):
        _structure(reparam(_conjugate_model, config={"theta": neutra}), jnp.asarray(Y))


def test_neutra_multivariate_normal_potential_and_handler_form(mvn_guide):
    rng = np.random.default_rng(4)
    tril = np.tril(0.3 * rng.standard_normal((DIM, DIM)), -1) + np.diag(rng.uniform(0.4, 1, DIM))
    params = {
        "auto_loc": jnp.asarray(rng.standard_normal(DIM), jnp.float32),
        "auto_scale_tril": jnp.asarray(tril, jnp.float32),
    }
    neutra = NeuTraReparam(mvn_guide, params)
    zs = jax.random.normal(jax.random.key(4), (3, DIM))
    # The bare handler (the first latent, mu, is outside any plate) gives the same potential;
    # a site the guide does not cover (the observed y) passes through unchanged.
    config = {"mu": neutra, "tau": neutra, "theta": neutra, "y": neutra}
    models = [neutra.reparam(_conjugate_model), reparam(_conjugate_model, config=config)]
    _check_warped_potential(neutra, models, zs)
    structure = _structure(reparam(_conjugate_model, config=config), jnp.asarray(Y))
    assert structure["y"] == ("sample", Y.shape)


def test_neutra_masked_model_has_zero_log_density(diag_guide):
    guide = diag_guide
    mean, sd = _exact_posterior()
    neutra = NeuTraReparam(guide, {"auto_loc": jnp.asarray(mean), "auto_scale": jnp.asarray(sd)})
    model_r = mask(neutra.reparam(_conjugate_model), mask=False)
    lp, _, _ = _evaluate(model_r, {"auto_shared_latent": jnp.ones((1, DIM))}, jnp.asarray(Y))
    assert lp[0] == 0.0


def test_neutra_errors(diag_guide):
    with pytest.raises(TypeError, match="AutoContinuous guide.*AutoNormal"):
        NeuTraReparam(AutoNormal(_conjugate_model), {})
    with pytest.raises(RuntimeError, match="has not been run"):
        NeuTraReparam(AutoDiagonalNormal(_conjugate_model), {})
    guide = diag_guide
    neutra = NeuTraReparam(guide, {"auto_loc": jnp.zeros(DIM), "auto_scale": jnp.ones(DIM)})
    with pytest.raises(ValueError, match="observed site 'mu'"):
        neutra("mu", dist.Normal(0.0, 1.0).expand([2]).to_event(1), jnp.zeros(2))


@pytest.mark.slow
def test_neutra_nuts_recovers_the_posterior_mean(diag_guide):
    guide = diag_guide
    mean, sd = _exact_posterior()
    # A deliberately rough guide: NUTS in the warped space must still be exact.
    params = {
        "auto_loc": jnp.asarray(mean + 0.3, jnp.float32),
        "auto_scale": jnp.asarray(1.5 * sd, jnp.float32),
    }
    neutra = NeuTraReparam(guide, params)
    mcmc = MCMC(
        NUTS(neutra.reparam(_conjugate_model)), num_warmup=500, num_samples=2000, progress_bar=False
    )
    mcmc.run(jax.random.key(0), jnp.asarray(Y))
    samples = mcmc.get_samples()
    latents = neutra.transform_sample(samples["auto_shared_latent"])
    assert_allclose(samples["mu"], latents["mu"], rtol=1e-5, atol=1e-6)  # float32
    mu = np.asarray(latents["mu"])
    se = sd[:2] / math.sqrt(mu.shape[0]) * 2.0  # ESS >= n/4 for this well-conditioned target
    assert np.all(np.abs(mu.mean(0) - mean[:2]) < 4 * se), (mu.mean(0), mean[:2])
    log_tau = np.log(np.asarray(latents["tau"]))[::2]
    rng = np.random.default_rng(0)
    _ks_pass_and_wrong_fails(
        log_tau,
        rng.normal(TAU_LOC, TAU_SD, 4000),
        rng.normal(TAU_LOC + 0.2, TAU_SD, 4000),
    )
