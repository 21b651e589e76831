"""Tests of the posteriordb validation models in ``benchmarks/posteriordb_models.py``.

For each of the 21 posteriors: (a) the jppl model traces with its data, every latent site has a
finite log density, the potential energy and its gradient are finite at the reference means and
``to_reference_names`` gives exactly the reference's parameter names; (b) jppl's log density at the
reference means equals that of an independent NumPyro version of the model written below from
the same ``model.md`` (NumPyro versions build their derived data from the raw ``data.json``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pytest
from benchmarks import posteriordb_models as pdb
from jax.scipy.special import logsumexp
from numpyro.distributions import constraints as nconstraints
from numpyro.infer.util import log_density as numpyro_log_density

from jppl.handlers import seed, trace
from jppl.infer import compute_log_probs, log_density, potential_energy, unconstrain_fn

NAMES = pdb.posterior_names()


# ---------------------------------------------------------------------------------------------
# NumPyro versions, written independently from each model.md; each takes the raw data.json dict
# ---------------------------------------------------------------------------------------------


def _a(x: Any) -> jax.Array:
    return jnp.asarray(np.asarray(x, dtype=np.float64))


def _flat(support, shape=()):
    return ndist.ImproperUniform(support, (), shape)


def np_eight_noncentered(d: dict) -> None:
    mu = numpyro.sample("mu", ndist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", ndist.HalfCauchy(5.0))
    tt = numpyro.sample("theta_trans", ndist.Normal(0.0, 1.0).expand([d["J"]]).to_event(1))
    numpyro.sample("y", ndist.Normal(mu + tau * tt, _a(d["sigma"])).to_event(1), obs=_a(d["y"]))


def np_eight_centered(d: dict) -> None:
    mu = numpyro.sample("mu", ndist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", ndist.HalfCauchy(5.0))
    theta = numpyro.sample("theta", ndist.Normal(mu, tau).expand([d["J"]]).to_event(1))
    numpyro.sample("y", ndist.Normal(theta, _a(d["sigma"])).to_event(1), obs=_a(d["y"]))


def _np_linreg(X: np.ndarray, y: Any, beta_prior, sigma_prior) -> None:
    """y ~ Normal(X @ beta, sigma) with the given priors (X built in float64 numpy)."""
    beta = numpyro.sample("beta", beta_prior)
    sigma = numpyro.sample("sigma", sigma_prior)
    numpyro.sample("obs", ndist.Normal(_a(X) @ beta, sigma).to_event(1), obs=_a(y))


def _ones(d: dict, key: str) -> np.ndarray:
    return np.ones(len(d[key]))


def np_kidscore_momiq(d: dict) -> None:
    X = np.column_stack([_ones(d, "mom_iq"), d["mom_iq"]])
    _np_linreg(X, d["kid_score"], _flat(nconstraints.real_vector, (2,)), ndist.HalfCauchy(2.5))


def np_kidscore_interaction(d: dict) -> None:
    hs, iq = np.asarray(d["mom_hs"], float), np.asarray(d["mom_iq"], float)
    X = np.column_stack([np.ones_like(hs), hs, iq, hs * iq])
    _np_linreg(X, d["kid_score"], _flat(nconstraints.real_vector, (4,)), ndist.HalfCauchy(2.5))


def np_kidscore_interaction_z(d: dict) -> None:
    hs, iq = np.asarray(d["mom_hs"], float), np.asarray(d["mom_iq"], float)
    zhs = (hs - np.mean(hs)) / (2 * np.std(hs, ddof=1))
    ziq = (iq - np.mean(iq)) / (2 * np.std(iq, ddof=1))
    X = np.column_stack([np.ones_like(hs), zhs, ziq, zhs * ziq])
    _np_linreg(
        X, d["kid_score"], _flat(nconstraints.real_vector, (4,)), _flat(nconstraints.positive)
    )


def np_earn_height(d: dict) -> None:
    X = np.column_stack([_ones(d, "height"), d["height"]])
    _np_linreg(X, d["earn"], _flat(nconstraints.real_vector, (2,)), _flat(nconstraints.positive))


def np_logearn_interaction(d: dict) -> None:
    h, m = np.asarray(d["height"], float), np.asarray(d["male"], float)
    X = np.column_stack([np.ones_like(h), h, m, h * m])
    y = np.log(np.asarray(d["earn"], float))
    _np_linreg(X, y, _flat(nconstraints.real_vector, (4,)), _flat(nconstraints.positive))


def np_kilpisjarvi(d: dict) -> None:
    alpha = numpyro.sample("alpha", ndist.Normal(d["pmualpha"], d["psalpha"]))
    beta = numpyro.sample("beta", ndist.Normal(d["pmubeta"], d["psbeta"]))
    sigma = numpyro.sample("sigma", _flat(nconstraints.positive))
    mean = alpha + beta * _a(d["x"])
    numpyro.sample("obs", ndist.Normal(mean, sigma).to_event(1), obs=_a(d["y"]))


def np_logmesquite(d: dict) -> None:
    cols = ["diam1", "diam2", "canopy_height", "total_height", "density"]
    X = np.column_stack(
        [_ones(d, "weight")] + [np.log(np.asarray(d[c], float)) for c in cols] + [d["group"]]
    )
    y = np.log(np.asarray(d["weight"], float))
    _np_linreg(X, y, _flat(nconstraints.real_vector, (7,)), _flat(nconstraints.positive))


def np_nes(d: dict) -> None:
    age = np.asarray(d["age_discrete"])
    X = np.column_stack(
        [_ones(d, "partyid7"), d["real_ideo"], d["race_adj"]]
        + [(age == a).astype(float) for a in (2, 3, 4)]
        + [d["educ1"], d["gender"], d["income"]]
    )
    _np_linreg(
        X, d["partyid7"], _flat(nconstraints.real_vector, (9,)), _flat(nconstraints.positive)
    )


def np_blr(d: dict) -> None:
    beta_prior = ndist.Normal(0.0, 10.0).expand([d["D"]]).to_event(1)
    _np_linreg(np.asarray(d["X"], float), d["y"], beta_prior, ndist.HalfNormal(10.0))


def np_diamonds(d: dict) -> None:
    X = np.asarray(d["X"], float)[:, 1:]
    Xc = X - X.mean(axis=0, keepdims=True)
    b = numpyro.sample("b", ndist.Normal(0.0, 1.0).expand([d["K"] - 1]).to_event(1))
    intercept = numpyro.sample("Intercept", ndist.StudentT(3.0, 8.0, 10.0))
    sigma = numpyro.sample("sigma", _flat(nconstraints.positive))
    # HalfStudentT(3, 10) written by hand: twice the StudentT(3, 0, 10) density on sigma > 0.
    numpyro.factor("sigma_prior", jnp.log(2.0) + ndist.StudentT(3.0, 0.0, 10.0).log_prob(sigma))
    mean = intercept + _a(Xc) @ b
    numpyro.sample("obs", ndist.Normal(mean, sigma).to_event(1), obs=_a(d["Y"]))


def np_arK(d: dict) -> None:
    y, K = _a(d["y"]), d["K"]
    alpha = numpyro.sample("alpha", ndist.Normal(0.0, 10.0))
    beta = numpyro.sample("beta", ndist.Normal(0.0, 10.0).expand([K]).to_event(1))
    sigma = numpyro.sample("sigma", ndist.HalfCauchy(2.5))
    mean = alpha
    for k in range(1, K + 1):  # beta[k] (1-based) multiplies lag k
        mean = mean + beta[k - 1] * y[K - k : d["T"] - k]
    numpyro.sample("obs", ndist.Normal(mean, sigma).to_event(1), obs=y[K:])


def np_arma11(d: dict) -> None:
    y = _a(d["y"])
    mu = numpyro.sample("mu", ndist.Normal(0.0, 10.0))
    phi = numpyro.sample("phi", ndist.Normal(0.0, 2.0))
    theta = numpyro.sample("theta", ndist.Normal(0.0, 2.0))
    sigma = numpyro.sample("sigma", ndist.HalfCauchy(2.5))

    def step(err_prev, t):
        nu = mu + phi * y[t - 1] + theta * err_prev
        err = y[t] - nu
        return err, err

    err1 = y[0] - (mu + phi * mu)
    _, errs = jax.lax.scan(step, err1, jnp.arange(1, d["T"]))
    err = jnp.concatenate([err1[None], errs])
    numpyro.sample("err", ndist.Normal(0.0, sigma).expand([d["T"]]).to_event(1), obs=err)


def np_garch11(d: dict) -> None:
    y = _a(d["y"])
    mu = numpyro.sample("mu", _flat(nconstraints.real))
    alpha0 = numpyro.sample("alpha0", _flat(nconstraints.positive))
    alpha1 = numpyro.sample("alpha1", _flat(nconstraints.unit_interval))
    beta1 = numpyro.sample("beta1", _flat(nconstraints.interval(0.0, 1.0 - alpha1)))
    s = [jnp.asarray(d["sigma1"], dtype=y.dtype)]
    for t in range(1, d["T"]):
        s.append(jnp.sqrt(alpha0 + alpha1 * (y[t - 1] - mu) ** 2 + beta1 * s[-1] ** 2))
    numpyro.sample("obs", ndist.Normal(mu, jnp.stack(s)).to_event(1), obs=y)


def _np_kernel(x, alpha, rho):
    sq = (x[:, None] - x[None, :]) ** 2
    return alpha**2 * jnp.exp(-sq / (2.0 * rho**2))


def np_gp_pois_regr(d: dict) -> None:
    x = _a(d["x"])
    rho = numpyro.sample("rho", ndist.Gamma(25.0, 4.0))
    alpha = numpyro.sample("alpha", ndist.HalfNormal(2.0))
    f_tilde = numpyro.sample("f_tilde", ndist.Normal(0.0, 1.0).expand([d["N"]]).to_event(1))
    # Same jitter rule as the jppl model: 1e-10 in float64, 1e-6 alpha^2 in float32.
    jitter = 1e-10 if x.dtype == jnp.float64 else 1e-6 * alpha**2
    L = jnp.linalg.cholesky(_np_kernel(x, alpha, rho) + jitter * jnp.eye(d["N"]))
    f = L @ f_tilde
    numpyro.sample("k", ndist.Poisson(jnp.exp(f)).to_event(1), obs=jnp.asarray(d["k"]))


def np_gp_regr(d: dict) -> None:
    x = _a(d["x"])
    rho = numpyro.sample("rho", ndist.Gamma(25.0, 4.0))
    alpha = numpyro.sample("alpha", ndist.HalfNormal(2.0))
    sigma = numpyro.sample("sigma", ndist.HalfNormal(1.0))
    cov = _np_kernel(x, alpha, rho) + sigma * jnp.eye(d["N"])
    numpyro.sample("y", ndist.MultivariateNormal(jnp.zeros(d["N"]), cov), obs=_a(d["y"]))


def np_low_dim_gauss_mix(d: dict) -> None:
    y = _a(d["y"])
    mu = numpyro.sample("mu", _flat(nconstraints.ordered_vector, (2,)))
    numpyro.factor("mu_prior", ndist.Normal(0.0, 2.0).log_prob(mu).sum())
    sigma = numpyro.sample("sigma", ndist.HalfNormal(2.0).expand([2]).to_event(1))
    theta = numpyro.sample("theta", ndist.Beta(5.0, 5.0))
    lp1 = jnp.log(theta) + ndist.Normal(mu[0], sigma[0]).log_prob(y)
    lp2 = jnp.log1p(-theta) + ndist.Normal(mu[1], sigma[1]).log_prob(y)
    numpyro.factor("lik", jnp.logaddexp(lp1, lp2).sum())


def _np_forward(gamma: jax.Array, log_e: jax.Array) -> jax.Array:
    """Forward algorithm over a python loop (a different formulation from jppl's scan)."""
    a = log_e[0]
    for t in range(1, log_e.shape[0]):
        a = jnp.stack([logsumexp(a + jnp.log(gamma[:, k])) for k in range(2)]) + log_e[t]
    return logsumexp(a)


def np_hmm_example(d: dict) -> None:
    y = _a(d["y"])
    theta1 = numpyro.sample("theta1", ndist.Dirichlet(jnp.ones(2)))
    theta2 = numpyro.sample("theta2", ndist.Dirichlet(jnp.ones(2)))
    mu = numpyro.sample("mu", _flat(nconstraints.positive_ordered_vector, (2,)))
    numpyro.factor(
        "mu_prior", ndist.Normal(3.0, 1.0).log_prob(mu[0]) + ndist.Normal(10.0, 1.0).log_prob(mu[1])
    )
    log_e = jnp.stack([ndist.Normal(mu[k], 1.0).log_prob(y) for k in range(2)], axis=-1)
    numpyro.factor("lik", _np_forward(jnp.stack([theta1, theta2]), log_e))


def np_hmm_drive_0(d: dict) -> None:
    u, v, conc = _a(d["u"]), _a(d["v"]), _a(d["alpha"])
    theta1 = numpyro.sample("theta1", ndist.Dirichlet(conc[0]))
    theta2 = numpyro.sample("theta2", ndist.Dirichlet(conc[1]))
    phi = numpyro.sample("phi", _flat(nconstraints.positive_ordered_vector, (2,)))
    lam = numpyro.sample("lambda", _flat(nconstraints.positive_ordered_vector, (2,)))
    for name, x in (("phi", phi), ("lambda", lam)):
        lp = ndist.Normal(0.0, 1.0).log_prob(x[0]) + ndist.Normal(3.0, 1.0).log_prob(x[1])
        numpyro.factor(f"{name}_prior", lp)
    # Exponential(rate r) log density written by hand: log r - r x.
    log_e = jnp.stack(
        [jnp.log(phi[k]) - phi[k] * u + jnp.log(lam[k]) - lam[k] * v for k in range(2)], axis=-1
    )
    numpyro.factor("lik", _np_forward(jnp.stack([theta1, theta2]), log_e))


NUMPYRO_MODELS: dict[str, Callable[[dict], None]] = {
    "eight_schools-eight_schools_noncentered": np_eight_noncentered,
    "eight_schools-eight_schools_centered": np_eight_centered,
    "kidiq-kidscore_momiq": np_kidscore_momiq,
    "kidiq-kidscore_interaction": np_kidscore_interaction,
    "kidiq_with_mom_work-kidscore_interaction_z": np_kidscore_interaction_z,
    "earnings-earn_height": np_earn_height,
    "earnings-logearn_interaction": np_logearn_interaction,
    "kilpisjarvi_mod-kilpisjarvi": np_kilpisjarvi,
    "mesquite-logmesquite": np_logmesquite,
    "nes2000-nes": np_nes,
    "sblrc-blr": np_blr,
    "sblri-blr": np_blr,
    "diamonds-diamonds": np_diamonds,
    "arK-arK": np_arK,
    "arma-arma11": np_arma11,
    "garch-garch11": np_garch11,
    "gp_pois_regr-gp_pois_regr": np_gp_pois_regr,
    "gp_pois_regr-gp_regr": np_gp_regr,
    "low_dim_gauss_mix-low_dim_gauss_mix": np_low_dim_gauss_mix,
    "hmm_example-hmm_example": np_hmm_example,
    "bball_drive_event_0-hmm_drive_0": np_hmm_drive_0,
}


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=NAMES)
def posterior(request):
    """``(name, spec, data, reference, args, kwargs, point)``, loaded once per posterior."""
    name = request.param
    spec, data, reference = pdb.load_posterior(name)
    args, kwargs = spec.load_data(data)
    point = spec.reference_point(pdb.reference_means(reference), args, kwargs)
    return name, spec, data, reference, args, kwargs, point


def test_registry_covers_the_folder():
    folders = sorted(p.name for p in pdb.DATA_DIR.iterdir() if p.is_dir())
    assert sorted(NAMES) == folders == sorted(pdb.POSTERIORS) == sorted(NUMPYRO_MODELS)
    assert len(NAMES) == 21
    for name in folders:
        for f in ("data.json", "model.md", "reference.json"):
            assert (pdb.DATA_DIR / name / f).is_file()
    for f in ("README.md", "LICENCE-posteriordb.md", "index.json"):
        assert (pdb.DATA_DIR / f).is_file()
    with pytest.raises(KeyError, match="Unknown posterior"):
        pdb.load_posterior("no-such-posterior")


def _seeded_sites(model: Callable, args: tuple, kwargs: dict, rng_seed: int = 0):
    """Jitted seeded run: ``(latent names, {site: value}, {site: log prob})``.

    The values cover the latent and deterministic sites; jit keeps the many small ops cheap.
    """
    latent: list[str] = []

    def run():
        model_trace = trace(seed(model, rng_seed)).get_trace(*args, **kwargs)
        latent[:] = [
            n for n, s in model_trace.items() if s["type"] == "sample" and not s["is_observed"]
        ]
        values = {
            n: s["value"]
            for n, s in model_trace.items()
            if n in latent or s["type"] == "deterministic"
        }
        return values, compute_log_probs(model_trace)

    values, log_probs = jax.jit(run)()
    return latent, values, log_probs


def _with_draws(values: dict[str, jax.Array], draws: int) -> dict[str, jax.Array]:
    return {k: jnp.broadcast_to(v, (draws, *jnp.shape(v))) for k, v in values.items()}


def _jppl_log_density(spec, args: tuple, kwargs: dict, point: dict):
    """Jitted ``(log joint, {latent/deterministic site: value})`` at ``point``."""

    def run(point):
        ld, model_trace = log_density(spec.model, args, kwargs, point)
        values = {
            n: s["value"]
            for n, s in model_trace.items()
            if s["type"] == "deterministic" or (s["type"] == "sample" and not s["is_observed"])
        }
        return ld, values

    return jax.jit(run)(point)


def test_model_traces_and_reference_names(posterior):
    name, spec, _, reference, args, kwargs, point = posterior
    models = [spec.model]
    if spec.reparam_config:
        assert name == "eight_schools-eight_schools_centered"
        models.append(spec.reparam_model())
    for model in models:
        latent, values, log_probs = _seeded_sites(model, args, kwargs)
        assert latent
        for site in latent:
            assert np.all(np.isfinite(np.asarray(log_probs[site]))), (name, site)
        ref = spec.to_reference_names(_with_draws(values, 3))
        assert list(ref) == reference["parameter_names"], name
        assert all(v.shape == (3,) for v in ref.values())

    # The reference point is in the support (finite log density, potential and gradient there),
    # and mapping it back to reference names gives the reference means.
    ld, values = _jppl_log_density(spec, args, kwargs, point)
    assert np.isfinite(float(ld)), name
    z = unconstrain_fn(spec.model, args, kwargs, point)
    pe, grad = jax.jit(jax.value_and_grad(lambda z: potential_energy(spec.model, args, kwargs, z)))(
        z
    )
    assert np.isfinite(float(pe)), name
    for g in jax.tree_util.tree_leaves(grad):
        assert np.all(np.isfinite(np.asarray(g))), name
    back = spec.to_reference_names(_with_draws(values, 1))
    means = pdb.reference_means(reference)
    for k in reference["parameter_names"]:
        np.testing.assert_allclose(float(back[k][0]), means[k], rtol=1e-4, atol=1e-4, err_msg=k)


# In float32 the whitened GP's Cholesky factor has pivots near sqrt(jitter), so rounding
# differences between two implementations of the kernel move f by ~1e-4 and the log density by
# ~1e-2: compare this one in float64 (where the model uses the source's 1e-10 jitter).
_COMPARE_IN_X64 = {"gp_pois_regr-gp_pois_regr"}


def test_log_density_matches_numpyro(posterior):
    name, spec, data, _, args, kwargs, point = posterior
    if name in _COMPARE_IN_X64:
        with jax.enable_x64(True):
            args, kwargs = spec.load_data(data)
            point = spec.reference_point(pdb.reference_means(_reference(name)), args, kwargs)
            assert args[0].dtype == jnp.float64
            ld_jppl, _ = log_density(spec.model, args, kwargs, point)
            ld_numpyro, _ = numpyro_log_density(NUMPYRO_MODELS[name], (data,), {}, point)
            np.testing.assert_allclose(float(ld_jppl), float(ld_numpyro), rtol=1e-9)
        return
    ld_jppl, _ = _jppl_log_density(spec, args, kwargs, point)
    ld_numpyro, _ = numpyro_log_density(NUMPYRO_MODELS[name], (data,), {}, point)
    np.testing.assert_allclose(float(ld_jppl), float(ld_numpyro), rtol=1e-4, atol=1e-3)


def _reference(name: str) -> dict:
    return pdb.load_posterior(name)[2]


def test_centered_eight_schools_reparam_is_noncentered():
    spec, data, _ = pdb.load_posterior("eight_schools-eight_schools_centered")
    args, kwargs = spec.load_data(data)
    model_trace = trace(seed(spec.reparam_model(), 1)).get_trace(*args, **kwargs)
    assert model_trace["theta"]["type"] == "deterministic"
    assert model_trace["theta_decentered"]["type"] == "sample"
    assert pdb.POSTERIORS["eight_schools-eight_schools_noncentered"].reparam_config is None
