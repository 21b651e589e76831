"""Tests of the automatic guides (jppl.vi.autoguide, also importable as jppl.infer.autoguide).

Fits use SVI with a decaying Adam step size; each fit is done once per module (fixtures) and
checked against closed-form posteriors. Compilation dominates the run time, so the number of
distinct fits is kept small.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jppl
import jppl.distributions as dist
from jppl.handlers import block, seed, substitute, trace
from jppl.infer import Predictive, init_to_value
from jppl.infer.autoguide import (
    AutoDelta,
    AutoDiagonalNormal,
    AutoGuideList,
    AutoLaplaceApproximation,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from jppl.vi import SVI, Trace_ELBO, TraceMeanField_ELBO
from jppl.vi.elbo import get_importance_traces

STEPS = 3000


def fit(model, guide, *args, steps=STEPS, lr=0.03, num_particles=16, loss=None, **kwargs):
    """Fit ``guide`` with SVI; returns the constrained params."""
    loss = Trace_ELBO(num_particles) if loss is None else loss
    optimizer = optax.adam(optax.exponential_decay(lr, steps, 0.01))
    svi = SVI(model, guide, optimizer, loss)
    return svi.run(jax.random.key(0), steps, *args, progress_bar=False, **kwargs).params


# ---------------------------------------------------------------------------------------------
# A model with closed-form posteriors, independent across three blocks:
#   mu:      Normal-Normal                    -> Normal posterior
#   lam:     Gamma-Poisson (positive support) -> Gamma posterior
#   (a, w):  conjugate linear regression      -> correlated 3-d Gaussian posterior
# Flat layout of the unconstrained latent vector: [mu, log(lam), a, w_0, w_1].
# ---------------------------------------------------------------------------------------------

N = 10
MU0, S0 = 0.0, 2.0
A0, B0 = 2.0, 1.0
_rng = np.random.default_rng(1)
X = jnp.asarray(_rng.normal(1.0, 1.0, (N, 2)), jnp.float32)
Y_REG = jnp.asarray(0.5 + X @ np.array([1.0, -0.5]) + _rng.normal(0, 1, N), jnp.float32)
Y_NORM = jnp.asarray(_rng.normal(1.5, 1.0, N), jnp.float32)
Y_POIS = jnp.asarray(_rng.poisson(2.0, N), jnp.float32)
DATA = (X, Y_REG, Y_NORM, Y_POIS)
REG = slice(2, 5)


def model(x, y_reg=None, y_norm=None, y_pois=None):
    mu = jppl.sample("mu", dist.Normal(MU0, S0))
    lam = jppl.sample("lam", dist.Gamma(A0, B0))
    a = jppl.sample("a", dist.Normal(0.0, 1.0))
    w = jppl.sample("w", dist.Normal(jnp.zeros(2), 1.0).to_event(1))
    with jppl.plate("data", x.shape[0]):
        jppl.sample("y_norm", dist.Normal(mu, 1.0), obs=y_norm)
        jppl.sample("y_pois", dist.Poisson(lam), obs=y_pois)
        jppl.sample("y_reg", dist.Normal(a + x @ w, 1.0), obs=y_reg)


def _exact():
    prec = 1 / S0**2 + N
    mu_mean = (MU0 / S0**2 + float(jnp.sum(Y_NORM))) / prec
    lam_a, lam_b = A0 + float(jnp.sum(Y_POIS)), B0 + N
    design = np.concatenate([np.ones((N, 1)), np.asarray(X, np.float64)], axis=1)
    reg_prec = np.eye(3) + design.T @ design
    reg_cov = np.linalg.inv(reg_prec)
    reg_mean = reg_cov @ design.T @ np.asarray(Y_REG, np.float64)
    return {
        "mu_mean": mu_mean,
        "mu_sd": prec**-0.5,
        "lam_a": lam_a,
        "lam_b": lam_b,
        "lam_mean": lam_a / lam_b,
        "lam_mode": (lam_a - 1) / lam_b,
        "reg_mean": reg_mean,
        "reg_cov": reg_cov,
        "reg_prec": reg_prec,
    }


EXACT = _exact()


def _rel_err(a, b):
    return np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b)


def _lognormal_mean(loc, scale):
    return float(jnp.exp(loc + scale**2 / 2))


_FITS: dict = {}


def fitted(cls, **kwargs):
    """One SVI fit per guide class for the whole module: ``(guide, params)``."""
    if cls not in _FITS:
        loss = kwargs.pop("loss", None)
        guide = cls(model, **kwargs)
        _FITS[cls] = (guide, fit(model, guide, *DATA, loss=loss))
    return _FITS[cls]


def test_autonormal_param_names_and_init():
    guide = AutoNormal(model, init_loc_fn=init_to_value(values={"mu": 0.7, "lam": 2.0}))
    tr = trace(seed(guide, 0)).get_trace(*DATA)
    params = {k: s for k, s in tr.items() if s["type"] == "param"}
    names = {f"{s}_auto_{p}" for s in ("mu", "lam", "a", "w") for p in ("loc", "scale")}
    assert set(params) == names
    np.testing.assert_allclose(params["mu_auto_loc"]["value"], 0.7, rtol=1e-6)
    np.testing.assert_allclose(params["lam_auto_loc"]["value"], np.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(params["lam_auto_scale"]["value"], 0.1)
    assert params["w_auto_loc"]["value"].shape == (2,)
    assert params["lam_auto_scale"]["kwargs"]["constraint"] is dist.constraints.softplus_positive
    # the model's sites did not leak into the guide's trace
    assert {k for k, s in tr.items() if s["type"] == "sample"} == {"mu", "lam", "a", "w"}
    assert guide.site_names == ["mu", "lam", "a", "w"]


def test_autonormal_recovers_conjugate_posteriors():
    guide, params = fitted(AutoNormal)
    # Normal-Normal: exact
    np.testing.assert_allclose(params["mu_auto_loc"], EXACT["mu_mean"], rtol=0.01)
    np.testing.assert_allclose(params["mu_auto_scale"], EXACT["mu_sd"], rtol=0.01)
    # Gamma-Poisson: the KL-optimal LogNormal approximation of Gamma(a, b) has mean exactly
    # a / b; without the Jacobian in the guide density it would be off by (a - 1) / a (~7%).
    lam_mean = _lognormal_mean(params["lam_auto_loc"], params["lam_auto_scale"])
    np.testing.assert_allclose(lam_mean, EXACT["lam_mean"], rtol=0.02)
    # regression: mean field on a Gaussian gives the exact means, sd = 1 / sqrt(precision_ii)
    reg_loc = jnp.concatenate([params["a_auto_loc"][None], params["w_auto_loc"]])
    reg_scale = jnp.concatenate([params["a_auto_scale"][None], params["w_auto_scale"]])
    np.testing.assert_allclose(reg_loc, EXACT["reg_mean"], atol=0.02)
    np.testing.assert_allclose(reg_scale, np.diag(EXACT["reg_prec"]) ** -0.5, rtol=0.03)


def test_autonormal_sample_posterior_median_quantiles():
    guide, params = fitted(AutoNormal)
    draws = guide.sample_posterior(jax.random.key(1), params, sample_shape=(20000,))
    assert draws["w"].shape == (20000, 2) and draws["lam"].shape == (20000,)
    assert np.all(np.asarray(draws["lam"]) > 0)
    np.testing.assert_allclose(np.mean(draws["lam"]), EXACT["lam_mean"], rtol=0.02)
    np.testing.assert_allclose(np.std(draws["mu"]), EXACT["mu_sd"], rtol=0.03)
    assert guide.sample_posterior(jax.random.key(2), params, sample_shape=(4, 3))["w"].shape == (
        4,
        3,
        2,
    )
    med = guide.median(params)
    assert set(med) == {"mu", "lam", "a", "w"}
    np.testing.assert_allclose(med["mu"], params["mu_auto_loc"], rtol=1e-6)
    np.testing.assert_allclose(med["lam"], np.exp(params["lam_auto_loc"]), rtol=1e-6)
    q = guide.quantiles(params, [0.05, 0.5, 0.95])
    assert q["mu"].shape == (3,) and q["w"].shape == (3, 2)
    np.testing.assert_allclose(q["lam"][1], med["lam"], rtol=1e-5)
    np.testing.assert_allclose(
        q["mu"][2], params["mu_auto_loc"] + 1.6448536 * params["mu_auto_scale"], rtol=1e-4
    )
    assert np.all(np.diff(np.asarray(q["lam"])) > 0)


def test_predictive_with_autoguide():
    guide, params = fitted(AutoNormal)
    out = Predictive(model, guide=guide, params=params, num_samples=1000)(jax.random.key(3), X)
    assert set(out) == {"y_norm", "y_pois", "y_reg"}
    assert out["y_norm"].shape == (1000, N)
    np.testing.assert_allclose(np.mean(out["y_norm"]), EXACT["mu_mean"], atol=0.1)
    np.testing.assert_allclose(np.mean(out["y_pois"]), EXACT["lam_mean"], rtol=0.1)
    lat = Predictive(model, guide=guide, params=params, num_samples=5, return_sites=["mu", "lam"])(
        jax.random.key(4), X
    )
    assert lat["mu"].shape == (5,) and np.all(np.asarray(lat["lam"]) > 0)


def test_autodiagonal_mean_field():
    guide, params = fitted(AutoDiagonalNormal, loss=TraceMeanField_ELBO(16))
    assert set(params) == {"auto_loc", "auto_scale"}
    assert guide.latent_dim == 5
    loc, scale = params["auto_loc"], params["auto_scale"]
    np.testing.assert_allclose(loc[0], EXACT["mu_mean"], rtol=0.01)
    np.testing.assert_allclose(scale[0], EXACT["mu_sd"], rtol=0.02)
    np.testing.assert_allclose(_lognormal_mean(loc[1], scale[1]), EXACT["lam_mean"], rtol=0.02)
    np.testing.assert_allclose(loc[REG], EXACT["reg_mean"], atol=0.02)
    np.testing.assert_allclose(scale[REG], np.diag(EXACT["reg_prec"]) ** -0.5, rtol=0.03)


def test_automvn_recovers_covariance():
    guide, params = fitted(AutoMultivariateNormal)
    assert set(params) == {"auto_loc", "auto_scale_tril"}
    post = guide.get_posterior(params)
    cov = np.asarray(post.covariance_matrix)
    np.testing.assert_allclose(post.mean[REG], EXACT["reg_mean"], atol=0.02)
    assert _rel_err(cov[REG, REG], EXACT["reg_cov"]) < 0.04
    np.testing.assert_allclose(
        np.sqrt(np.diag(cov)[REG]), np.sqrt(np.diag(EXACT["reg_cov"])), rtol=0.03
    )
    np.testing.assert_allclose(post.mean[0], EXACT["mu_mean"], rtol=0.01)
    np.testing.assert_allclose(np.sqrt(cov[0, 0]), EXACT["mu_sd"], rtol=0.02)
    np.testing.assert_allclose(cov[0, 1:], 0.0, atol=0.01)  # independent blocks
    # samples are unpacked per site and mapped into the supports
    draws = guide.sample_posterior(jax.random.key(0), params, sample_shape=(20000,))
    assert draws["a"].shape == (20000,) and draws["w"].shape == (20000, 2)
    np.testing.assert_allclose(np.mean(draws["lam"]), EXACT["lam_mean"], rtol=0.02)
    flat = np.concatenate([np.asarray(draws["a"])[:, None], np.asarray(draws["w"])], axis=1)
    assert _rel_err(np.cov(flat.T), EXACT["reg_cov"]) < 0.06
    med = guide.median(params)
    np.testing.assert_allclose(med["w"], params["auto_loc"][3:])
    np.testing.assert_allclose(med["lam"], np.exp(params["auto_loc"][1]), rtol=1e-6)
    q = guide.quantiles(params, [0.25, 0.75])
    assert q["a"].shape == (2,) and q["w"].shape == (2, 2)
    t = guide.get_transform(params)
    np.testing.assert_allclose(t(jnp.zeros(5)), params["auto_loc"])


def test_autolowrank_approximates_covariance():
    guide, params = fitted(AutoLowRankMultivariateNormal, rank=2)
    assert params["auto_cov_factor"].shape == (5, 2)
    post = guide.get_posterior(params)
    cov = np.asarray(post.covariance_matrix)
    np.testing.assert_allclose(post.mean[REG], EXACT["reg_mean"], atol=0.03)
    assert _rel_err(cov[REG, REG], EXACT["reg_cov"]) < 0.1
    np.testing.assert_allclose(np.sqrt(cov[0, 0]), EXACT["mu_sd"], rtol=0.05)


def test_laplace_covariance_is_inverse_hessian():
    guide, params = fitted(AutoLaplaceApproximation)
    assert set(params) == {"auto_loc"}
    loc = params["auto_loc"]
    # MAP in the unconstrained space: for lam = exp(u) that is the posterior mean a / b
    np.testing.assert_allclose(loc[0], EXACT["mu_mean"], rtol=1e-3)
    np.testing.assert_allclose(jnp.exp(loc[1]), EXACT["lam_mean"], rtol=1e-3)
    np.testing.assert_allclose(loc[REG], EXACT["reg_mean"], atol=1e-3)
    cov = np.asarray(guide.get_posterior(params).covariance_matrix)
    # Gaussian blocks: exact; lam: potential -(a u - b e^u) has Hessian b e^u = a at the mode
    np.testing.assert_allclose(cov[REG, REG], EXACT["reg_cov"], rtol=2e-3, atol=1e-5)
    np.testing.assert_allclose(cov[0, 0], EXACT["mu_sd"] ** 2, rtol=2e-3)
    np.testing.assert_allclose(cov[1, 1], 1 / EXACT["lam_a"], rtol=2e-3)
    np.testing.assert_allclose(cov[0, 1:], 0.0, atol=1e-5)
    draws = guide.sample_posterior(jax.random.key(1), params, sample_shape=(20000,))
    flat = np.concatenate([np.asarray(draws["a"])[:, None], np.asarray(draws["w"])], axis=1)
    np.testing.assert_allclose(flat.mean(0), EXACT["reg_mean"], atol=0.02)
    assert _rel_err(np.cov(flat.T), EXACT["reg_cov"]) < 0.05
    np.testing.assert_allclose(guide.median(params)["lam"], EXACT["lam_mean"], rtol=1e-3)


def test_autoguidelist_delta_plus_normal():
    guide = AutoGuideList(model)
    guide.append(AutoDelta(block(seed(model, 0), expose=["lam"])))
    guide.append(AutoNormal(block(seed(model, 0), hide=["lam"])))
    params = fit(model, guide, *DATA)
    assert set(params) == {"lam_auto_loc"} | {
        f"{s}_auto_{p}" for s in ("mu", "a", "w") for p in ("loc", "scale")
    }
    # AutoDelta: the MAP, i.e. the mode of Gamma(a, b) in the constrained space
    np.testing.assert_allclose(params["lam_auto_loc"], EXACT["lam_mode"], rtol=0.01)
    np.testing.assert_allclose(params["mu_auto_loc"], EXACT["mu_mean"], rtol=0.01)
    draws = guide.sample_posterior(jax.random.key(0), params, sample_shape=(6,))
    assert draws["lam"].shape == (6,) and draws["w"].shape == (6, 2)
    np.testing.assert_allclose(draws["lam"], np.full(6, params["lam_auto_loc"]))
    assert set(guide.median(params)) == {"lam", "mu", "a", "w"}
    assert guide.median(params)["lam"] is params["lam_auto_loc"]
    q = guide.quantiles(params, [0.1, 0.5])
    assert q["lam"].shape == (2,) and q["w"].shape == (2, 2)
    np.testing.assert_allclose(q["lam"], np.full(2, params["lam_auto_loc"]))

    clash = AutoGuideList(model)
    clash.append(AutoNormal(model))
    clash.append(AutoDelta(block(seed(model, 0), expose=["lam"]), prefix="d"))
    with pytest.raises(ValueError, match="lam"):
        seed(clash, 0)(*DATA)


# ---------------------------------------------------------------------------------------------
# Jacobians: the guide density of a constrained site
# ---------------------------------------------------------------------------------------------


def constrained_model():
    jppl.sample("s", dist.Gamma(3.0, 2.0))
    jppl.sample("v", dist.Normal(jnp.zeros(2), 1.0).to_event(1))
    with jppl.plate("groups", 2):
        jppl.sample("p", dist.Dirichlet(jnp.ones(3)))


@pytest.mark.parametrize("kind", ["normal", "diagonal"])
def test_guide_density_includes_jacobian_once(kind):
    # unconstrained layout: s (1), v (2), p (2 groups x 2 stick-breaking coordinates)
    locs = jnp.array([0.3, -0.2, 0.5, 0.1, -0.4, 0.2, 0.6])
    scales = jnp.array([0.4, 0.7, 1.3, 0.5, 0.8, 0.3, 0.9])
    if kind == "normal":
        guide = AutoNormal(constrained_model)
        params = {
            "s_auto_loc": locs[0],
            "s_auto_scale": scales[0],
            "v_auto_loc": locs[1:3],
            "v_auto_scale": scales[1:3],
            "p_auto_loc": locs[3:].reshape(2, 2),
            "p_auto_scale": scales[3:].reshape(2, 2),
        }
    else:
        guide = AutoDiagonalNormal(constrained_model)
        params = {"auto_loc": locs, "auto_scale": scales}
    tr = trace(seed(substitute(guide, data=params), 5)).get_trace()
    latent = [s for s in tr.values() if s["type"] == "sample" and not s["is_observed"]]
    log_q = sum(jnp.sum(s["fn"].log_prob(s["value"])) for s in latent)
    s, v, p = tr["s"]["value"], tr["v"]["value"], tr["p"]["value"]
    assert p.shape == (2, 3)
    np.testing.assert_allclose(jnp.sum(p, -1), 1.0, rtol=1e-6)
    stick = dist.transforms.StickBreakingTransform()
    u_p = stick.inv(p)
    expected = (
        dist.LogNormal(locs[0], scales[0]).log_prob(s)  # = Normal(log s) - log s
        + jnp.sum(dist.Normal(locs[1:3], scales[1:3]).log_prob(v))
        + jnp.sum(dist.Normal(locs[3:].reshape(2, 2), scales[3:].reshape(2, 2)).log_prob(u_p))
        - jnp.sum(stick.log_abs_det_jacobian(u_p, p))
    )
    np.testing.assert_allclose(log_q, expected, rtol=1e-5)
    if kind == "diagonal":
        assert tr["_auto_latent"]["infer"] == {"is_auxiliary": True}
        assert isinstance(tr["s"]["fn"], dist.Delta)
        np.testing.assert_allclose(u_p.reshape(-1), tr["_auto_latent"]["value"][3:], rtol=1e-5)
    # the model sees the guide's constrained values
    model_trace, _ = get_importance_traces(
        jax.random.key(5), params, constrained_model, guide, (), {}
    )
    np.testing.assert_allclose(model_trace["p"]["value"], p)


def test_sample_posterior_before_the_guide_ran():
    _, params = fitted(AutoNormal)
    fresh = AutoNormal(model)
    draws = fresh.sample_posterior(jax.random.key(0), params, *DATA, sample_shape=(3,))
    assert draws["w"].shape == (3, 2) and np.all(np.asarray(draws["lam"]) > 0)


# ---------------------------------------------------------------------------------------------
# Plates and subsampling
# ---------------------------------------------------------------------------------------------

N_LOC, B_LOC = 20, 5
Y_LOC = jnp.asarray(np.random.default_rng(2).normal(2.0, 1.5, N_LOC), jnp.float32)


def local_model(y):
    mu = jppl.sample("mu", dist.Normal(0.0, 10.0))
    with jppl.plate("data", N_LOC, subsample_size=B_LOC):
        z = jppl.sample("z", dist.Normal(mu, 1.0))
        jppl.sample("y", dist.Normal(z, 1.0), obs=jppl.subsample(y, event_dim=0))


def test_autonormal_subsampling_shapes_and_indices():
    guide = AutoNormal(local_model)
    model_trace, guide_trace = get_importance_traces(
        jax.random.key(0), {}, local_model, guide, (Y_LOC,), {}
    )
    assert guide_trace["z_auto_loc"]["value"].shape == (N_LOC,)
    assert guide_trace["z"]["value"].shape == (B_LOC,)
    idx = guide_trace["data"]["value"]
    np.testing.assert_array_equal(model_trace["data"]["value"], idx)
    assert model_trace["z"]["scale"] == N_LOC / B_LOC
    assert guide_trace["z"]["scale"] == N_LOC / B_LOC
    # the guide's minibatch of z uses the matching slice of the full-size loc (real support:
    # the guide site is a plain Normal)
    assert isinstance(guide_trace["z"]["fn"], dist.Normal)
    np.testing.assert_allclose(guide_trace["z"]["fn"].loc, guide_trace["z_auto_loc"]["value"][idx])

    _, delta_trace = get_importance_traces(
        jax.random.key(1), {}, local_model, AutoDelta(local_model), (Y_LOC,), {}
    )
    assert delta_trace["z_auto_loc"]["value"].shape == (N_LOC,)
    assert delta_trace["z"]["value"].shape == (B_LOC,)

    custom = AutoNormal(local_model, create_plates=lambda y: jppl.plate("data", N_LOC, 4))
    tr = trace(seed(custom, 1)).get_trace(Y_LOC)
    assert tr["z"]["value"].shape == (4,)

    with pytest.raises(ValueError, match="subsampled plate 'data'"):
        seed(AutoDiagonalNormal(local_model), 0)(Y_LOC)


def test_autonormal_subsampled_fit():
    guide = AutoNormal(local_model)
    params = fit(local_model, guide, Y_LOC, steps=4000, lr=0.05, num_particles=8)
    # exact: y_i ~ N(mu, 2) marginally; z_i | mu, y_i ~ N((mu + y_i) / 2, 1/2)
    prec_mu = 1 / 100 + N_LOC / 2
    mu_mean = float(jnp.sum(Y_LOC)) / 2 / prec_mu
    z_mean = (mu_mean + np.asarray(Y_LOC)) / 2
    np.testing.assert_allclose(params["mu_auto_loc"], mu_mean, atol=0.05)
    np.testing.assert_allclose(params["z_auto_loc"], z_mean, atol=0.1)
    # mean field on a Gaussian target: sd = 1 / sqrt(precision_ii) = 1 / sqrt(2)
    np.testing.assert_allclose(np.mean(params["z_auto_scale"]), 2**-0.5, rtol=0.05)
    draws = guide.sample_posterior(jax.random.key(0), params, sample_shape=(2,))
    assert draws["z"].shape == (2, N_LOC)


# ---------------------------------------------------------------------------------------------
# Errors and imports
# ---------------------------------------------------------------------------------------------


def discrete_model():
    p = jppl.sample("p", dist.Beta(1.0, 1.0))
    jppl.sample("coin", dist.Bernoulli(probs=p))


@pytest.mark.parametrize("cls", [AutoNormal, AutoDelta, AutoMultivariateNormal])
def test_discrete_latent_error_names_site(cls):
    with pytest.raises(ValueError, match="'coin'.*discrete"):
        seed(cls(discrete_model), 0)()


def test_guide_not_run_yet_errors():
    guide = AutoNormal(model)
    with pytest.raises(RuntimeError, match="has not been run"):
        guide.median({})
    with pytest.raises(ValueError, match="init_scale"):
        AutoNormal(model, init_scale=0.0)


def test_import_paths():
    import jppl.infer.autoguide as a
    import jppl.vi
    import jppl.vi.autoguide as b
    import jppl.vi.autoguide_extra as extra
    import jppl.vi.autoguide_flows as flows

    assert a.AutoNormal is b.AutoNormal is jppl.vi.autoguide.AutoNormal
    assert a.AutoDAIS is extra.AutoDAIS and a.AutoIAFNormal is flows.AutoIAFNormal
    assert set(a.__all__) == set(b.__all__) | set(extra.__all__) | set(flows.__all__)
