"""jppl versions of the 21 posteriordb reference posteriors in ``benchmarks/posteriordb/data``.

Each model is written from the posterior's ``model.md`` (priors, constraints and likelihood as
described there). The registry :data:`POSTERIORS` maps a posteriordb name to a
:class:`PosteriorSpec` holding

* ``model``: the jppl model function;
* ``load_data(data_dict) -> (args, kwargs)``: turns ``data.json`` into model arguments. It also
  computes the "transformed data" (logs, centering, standardization, design matrices) in
  float64 numpy before the arrays are handed to JAX;
* ``to_reference_names(samples) -> {reference name: (draws,) array}``: maps jppl sites (latent or
  deterministic, each with a leading draw dim) to posteriordb's 1-based Stan names;
* ``reference_point(values, args, kwargs) -> {latent site: constrained value}``: the inverse,
  mapping one value per reference name (e.g. the reference means) to values of the model's
  latent sample sites, e.g. for ``init_to_value`` or to evaluate the log density;
* ``reparam_config``: for ``eight_schools-eight_schools_centered`` the benchmark runs the
  centered model through ``jppl.handlers.reparam(model, config=reparam_config)`` with
  ``LocScaleReparam(centered=0)`` on ``theta``; ``None`` elsewhere.

Notes on priors: Stan's "no prior statement" is an improper flat prior, written here as
``dist.ImproperUniform(support, (), event_shape)``. Stan's ``normal(0, s)`` / ``cauchy(0, s)`` /
``student_t(3, 0, s)`` on a positive parameter are HalfNormal / HalfCauchy / HalfStudentT (equal up
to a constant). Priors on ordered / positive-ordered vectors are an ``ImproperUniform`` site on that
set plus a :func:`jppl.factor` with the prior's log density (density restricted to the set, no
renormalization, as in Stan). Discrete states (mixture labels, HMM states) are summed out.

Precision: the references are float64 Stan runs; run the benchmark with x64 enabled. All models
also work in float32, but ``gp_pois_regr`` then needs a larger Cholesky jitter (see
``_gp_pois_jitter``), so its float32 posterior is a (very close) approximation.

Use :func:`load_posterior` to get ``(spec, data_dict, reference_dict)`` for one posterior.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp

import jppl
import jppl.distributions as dist
from jppl.distributions import constraints
from jppl.reparam import LocScaleReparam

__all__ = [
    "DATA_DIR",
    "POSTERIORS",
    "PosteriorSpec",
    "load_posterior",
    "posterior_names",
    "reference_means",
]

DATA_DIR: Path = Path(__file__).resolve().parent / "posteriordb" / "data"
"""Folder holding ``index.json`` and one ``<posterior_name>/`` folder per posterior."""

Array = jax.Array
Args = tuple[tuple[Any, ...], dict[str, Any]]


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _f64(x: Any) -> np.ndarray:
    """``x`` (a JSON list or number) as a float64 numpy array."""
    return np.asarray(x, dtype=np.float64)


def _arr(x: Any) -> Array:
    """``x`` as a JAX array of the default float dtype (float32 unless x64 is enabled)."""
    return jnp.asarray(_f64(x))


def _flat(support: constraints.Constraint, event_shape: Sequence[int] = ()) -> dist.Distribution:
    """Improper flat prior on ``support`` (a scalar site when ``event_shape`` is ``()``)."""
    return dist.ImproperUniform(support, (), tuple(event_shape))


def _normal_regression(name: str, mean: Array, sigma: Array, obs: Array | None) -> Array:
    """``obs_i ~ Normal(mean_i, sigma)`` over a plate of the observations."""
    with jppl.plate(f"{name}_plate", mean.shape[-1]):
        return jppl.sample(name, dist.Normal(mean, sigma), obs=obs)


def _hmm_log_likelihood(log_trans: Array, log_emission: Array) -> Array:
    """Forward algorithm: ``log sum_z p(obs, z)`` with a uniform (unnormalized) initial state.

    Args:
        log_trans: ``(K, K)``, ``log_trans[j, k] = log P(z_t = k | z_{t-1} = j)``.
        log_emission: ``(N, K)``, ``log p(obs_t | z_t = k)``.
    """

    def step(alpha: Array, log_e: Array) -> tuple[Array, None]:
        alpha = logsumexp(alpha[:, None] + log_trans, axis=0) + log_e
        return alpha, None

    alpha, _ = lax.scan(step, log_emission[0], log_emission[1:])
    return logsumexp(alpha)


# ---------------------------------------------------------------------------------------------
# Hierarchical: eight schools
# ---------------------------------------------------------------------------------------------


def eight_schools_noncentered(sigma: Array, y: Array | None = None) -> None:
    """Non-centered eight schools; ``theta = mu + tau * theta_trans`` is a deterministic site."""
    mu = jppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = jppl.sample("tau", dist.HalfCauchy(5.0))
    with jppl.plate("J", sigma.shape[0]):
        theta_trans = jppl.sample("theta_trans", dist.Normal(0.0, 1.0))
        theta = jppl.deterministic("theta", mu + tau * theta_trans)
        jppl.sample("y", dist.Normal(theta, sigma), obs=y)


def eight_schools_centered(sigma: Array, y: Array | None = None) -> None:
    """Centered eight schools (a funnel); ``theta ~ Normal(mu, tau)`` is sampled directly."""
    mu = jppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = jppl.sample("tau", dist.HalfCauchy(5.0))
    with jppl.plate("J", sigma.shape[0]):
        theta = jppl.sample("theta", dist.Normal(mu, tau))
        jppl.sample("y", dist.Normal(theta, sigma), obs=y)


def _load_eight_schools(data: Mapping[str, Any]) -> Args:
    return (_arr(data["sigma"]),), {"y": _arr(data["y"])}


def _eight_schools_noncentered_point(
    values: Mapping[str, float], args: tuple, kwargs: dict
) -> dict[str, Array]:
    point = _stack_sites(values, ("theta", "mu", "tau"))
    theta_trans = (point.pop("theta") - point["mu"]) / point["tau"]
    return {**point, "theta_trans": theta_trans}


# ---------------------------------------------------------------------------------------------
# ARM regressions (kidiq, earnings, mesquite, nes) and kilpisjarvi
# ---------------------------------------------------------------------------------------------


def kidscore_momiq(mom_iq: Array, kid_score: Array | None = None) -> None:
    """kid_score ~ Normal(beta_1 + beta_2 mom_iq, sigma); flat beta, HalfCauchy(2.5) sigma."""
    beta = jppl.sample("beta", _flat(constraints.real_vector, (2,)))
    sigma = jppl.sample("sigma", dist.HalfCauchy(2.5))
    _normal_regression("kid_score", beta[0] + beta[1] * mom_iq, sigma, kid_score)


def kidscore_interaction(mom_hs: Array, mom_iq: Array, kid_score: Array | None = None) -> None:
    """kid_score ~ hs + iq + hs:iq; flat beta, HalfCauchy(2.5) sigma."""
    beta = jppl.sample("beta", _flat(constraints.real_vector, (4,)))
    sigma = jppl.sample("sigma", dist.HalfCauchy(2.5))
    mean = beta[0] + beta[1] * mom_hs + beta[2] * mom_iq + beta[3] * (mom_hs * mom_iq)
    _normal_regression("kid_score", mean, sigma, kid_score)


def kidscore_interaction_z(z_hs: Array, z_iq: Array, kid_score: Array | None = None) -> None:
    """Interaction regression on predictors standardized by 2 sd; flat beta and sigma."""
    beta = jppl.sample("beta", _flat(constraints.real_vector, (4,)))
    sigma = jppl.sample("sigma", _flat(constraints.positive))
    mean = beta[0] + beta[1] * z_hs + beta[2] * z_iq + beta[3] * (z_hs * z_iq)
    _normal_regression("kid_score", mean, sigma, kid_score)


def _load_kidiq_momiq(data: Mapping[str, Any]) -> Args:
    return (_arr(data["mom_iq"]),), {"kid_score": _arr(data["kid_score"])}


def _load_kidiq_interaction(data: Mapping[str, Any]) -> Args:
    return (_arr(data["mom_hs"]), _arr(data["mom_iq"])), {"kid_score": _arr(data["kid_score"])}


def _load_kidiq_interaction_z(data: Mapping[str, Any]) -> Args:
    def z(x: np.ndarray) -> Array:
        return _arr((x - x.mean()) / (2.0 * x.std(ddof=1)))

    z_hs, z_iq = z(_f64(data["mom_hs"])), z(_f64(data["mom_iq"]))
    return (z_hs, z_iq), {"kid_score": _arr(data["kid_score"])}


def earn_height(height: Array, earn: Array | None = None) -> None:
    """Raw-dollar earnings ~ Normal(beta_1 + beta_2 height, sigma); flat beta and sigma."""
    beta = jppl.sample("beta", _flat(constraints.real_vector, (2,)))
    sigma = jppl.sample("sigma", _flat(constraints.positive))
    _normal_regression("earn", beta[0] + beta[1] * height, sigma, earn)


def logearn_interaction(height: Array, male: Array, log_earn: Array | None = None) -> None:
    """log(earn) ~ height + male + height:male; flat beta and sigma."""
    beta = jppl.sample("beta", _flat(constraints.real_vector, (4,)))
    sigma = jppl.sample("sigma", _flat(constraints.positive))
    mean = beta[0] + beta[1] * height + beta[2] * male + beta[3] * (height * male)
    _normal_regression("log_earn", mean, sigma, log_earn)


def _load_earn_height(data: Mapping[str, Any]) -> Args:
    return (_arr(data["height"]),), {"earn": _arr(data["earn"])}


def _load_logearn_interaction(data: Mapping[str, Any]) -> Args:
    args = (_arr(data["height"]), _arr(data["male"]))
    return args, {"log_earn": _arr(np.log(_f64(data["earn"])))}


def kilpisjarvi(
    x: Array,
    pmualpha: float,
    psalpha: float,
    pmubeta: float,
    psbeta: float,
    y: Array | None = None,
) -> None:
    """Linear trend y ~ Normal(alpha + beta x, sigma); normal alpha/beta, flat sigma."""
    alpha = jppl.sample("alpha", dist.Normal(pmualpha, psalpha))
    beta = jppl.sample("beta", dist.Normal(pmubeta, psbeta))
    sigma = jppl.sample("sigma", _flat(constraints.positive))
    _normal_regression("y", alpha + beta * x, sigma, y)


def _load_kilpisjarvi(data: Mapping[str, Any]) -> Args:
    priors = tuple(float(data[k]) for k in ("pmualpha", "psalpha", "pmubeta", "psbeta"))
    return (_arr(data["x"]), *priors), {"y": _arr(data["y"])}


def logmesquite(X: Array, log_weight: Array | None = None) -> None:
    """log(weight) ~ Normal(X beta, sigma), X = [1, 5 log sizes, log density, group]; flat."""
    beta = jppl.sample("beta", _flat(constraints.real_vector, (X.shape[-1],)))
    sigma = jppl.sample("sigma", _flat(constraints.positive))
    _normal_regression("log_weight", X @ beta, sigma, log_weight)


def _load_mesquite(data: Mapping[str, Any]) -> Args:
    logged = ("diam1", "diam2", "canopy_height", "total_height", "density")
    columns = [np.ones(int(data["N"]))] + [np.log(_f64(data[k])) for k in logged]
    X = np.stack([*columns, _f64(data["group"])], axis=-1)
    return (_arr(X),), {"log_weight": _arr(np.log(_f64(data["weight"])))}


def nes(X: Array, partyid7: Array | None = None) -> None:
    """partyid7 ~ Normal(X beta, sigma) with 9 coefficients (age dummies); flat priors."""
    beta = jppl.sample("beta", _flat(constraints.real_vector, (X.shape[-1],)))
    sigma = jppl.sample("sigma", _flat(constraints.positive))
    _normal_regression("partyid7", X @ beta, sigma, partyid7)


def _load_nes(data: Mapping[str, Any]) -> Args:
    age = np.asarray(data["age_discrete"])
    columns = [
        np.ones(int(data["N"])),
        _f64(data["real_ideo"]),
        _f64(data["race_adj"]),
        (age == 2).astype(np.float64),
        (age == 3).astype(np.float64),
        (age == 4).astype(np.float64),
        _f64(data["educ1"]),
        _f64(data["gender"]),
        _f64(data["income"]),
    ]
    return (_arr(np.stack(columns, axis=-1)),), {"partyid7": _arr(data["partyid7"])}


def blr(X: Array, y: Array | None = None) -> None:
    """Bayesian linear regression without intercept: N(0, 10) beta, HalfNormal(10) sigma."""
    beta = jppl.sample("beta", dist.Normal(0.0, 10.0).expand((X.shape[-1],)).to_event(1))
    sigma = jppl.sample("sigma", dist.HalfNormal(10.0))
    _normal_regression("y", X @ beta, sigma, y)


def _load_blr(data: Mapping[str, Any]) -> Args:
    return (_arr(data["X"]),), {"y": _arr(data["y"])}


def diamonds(Xc: Array, Y: Array | None = None) -> None:
    """brms regression on centered predictors ``Xc``: N(0,1) b, t(3, 8, 10) Intercept, t+ sigma."""
    b = jppl.sample("b", dist.Normal(0.0, 1.0).expand((Xc.shape[-1],)).to_event(1))
    intercept = jppl.sample("Intercept", dist.StudentT(3.0, 8.0, 10.0))
    sigma = jppl.sample("sigma", dist.HalfStudentT(3.0, 10.0))
    _normal_regression("Y", intercept + Xc @ b, sigma, Y)


def _load_diamonds(data: Mapping[str, Any]) -> Args:
    X = _f64(data["X"])[:, 1:]
    return (_arr(X - X.mean(axis=0)),), {"Y": _arr(data["Y"])}


# ---------------------------------------------------------------------------------------------
# Time series
# ---------------------------------------------------------------------------------------------


def arK(lags: Array, y: Array | None = None) -> None:
    """AR(K): ``y[t] ~ Normal(alpha + sum_k beta[k] y[t-k], sigma)`` for t > K.

    ``lags`` is the ``(T-K, K)`` matrix with ``lags[i, k-1] = y_{K+i-k}`` and ``y`` the
    ``T-K`` modelled points ``y_{K+1..T}`` (see the loader).
    """
    alpha = jppl.sample("alpha", dist.Normal(0.0, 10.0))
    beta = jppl.sample("beta", dist.Normal(0.0, 10.0).expand((lags.shape[-1],)).to_event(1))
    sigma = jppl.sample("sigma", dist.HalfCauchy(2.5))
    _normal_regression("y", alpha + lags @ beta, sigma, y)


def _load_arK(data: Mapping[str, Any]) -> Args:
    y, K = _f64(data["y"]), int(data["K"])
    T = y.shape[0]
    lags = np.stack([y[K - k : T - k] for k in range(1, K + 1)], axis=-1)
    return (_arr(lags),), {"y": _arr(y[K:])}


def arma11(y: Array) -> None:
    """ARMA(1,1) through the residual recursion (err_0 = 0, y_0 := mu); ``y`` is required."""
    mu = jppl.sample("mu", dist.Normal(0.0, 10.0))
    phi = jppl.sample("phi", dist.Normal(0.0, 2.0))
    theta = jppl.sample("theta", dist.Normal(0.0, 2.0))
    sigma = jppl.sample("sigma", dist.HalfCauchy(2.5))
    y_prev = jnp.concatenate([jnp.reshape(mu, (1,)), y[:-1]])

    def step(err_prev: Array, inputs: tuple[Array, Array]) -> tuple[Array, Array]:
        y_t, y_lag = inputs
        nu = mu + phi * y_lag + theta * err_prev
        return y_t - nu, nu

    _, nu = lax.scan(step, jnp.zeros_like(mu), (y, y_prev))
    _normal_regression("y", nu, sigma, y)


def _load_arma(data: Mapping[str, Any]) -> Args:
    return (_arr(data["y"]),), {}


def garch11(y: Array, sigma1: float) -> None:
    """GARCH(1,1) with a flat prior on {alpha0 > 0, 0 < alpha1 < 1, 0 < beta1 < 1 - alpha1}.

    ``beta1`` is an improper-uniform site on the interval ``(0, 1 - alpha1)``, so the joint
    density of (alpha1, beta1) is flat on the triangle (no ``1 / (1 - alpha1)`` factor).
    """
    mu = jppl.sample("mu", _flat(constraints.real))
    alpha0 = jppl.sample("alpha0", _flat(constraints.positive))
    alpha1 = jppl.sample("alpha1", dist.Uniform(0.0, 1.0))
    beta1 = jppl.sample("beta1", _flat(constraints.interval(0.0, 1.0 - alpha1)))

    def step(s_prev: Array, y_prev: Array) -> tuple[Array, Array]:
        s = jnp.sqrt(alpha0 + alpha1 * (y_prev - mu) ** 2 + beta1 * s_prev**2)
        return s, s

    s1 = jnp.full(jnp.shape(mu), sigma1, dtype=jnp.result_type(alpha0))
    _, s_rest = lax.scan(step, s1, y[:-1])
    scale = jnp.concatenate([jnp.reshape(s1, (1,)), s_rest])
    _normal_regression("y", jnp.broadcast_to(mu, y.shape), scale, y)


def _load_garch(data: Mapping[str, Any]) -> Args:
    return (_arr(data["y"]), float(data["sigma1"])), {}


# ---------------------------------------------------------------------------------------------
# Gaussian processes
# ---------------------------------------------------------------------------------------------


def _sq_exp_kernel(x: Array, alpha: Array, rho: Array) -> Array:
    """``alpha^2 exp(-(x_i - x_j)^2 / (2 rho^2))``."""
    d = x[:, None] - x[None, :]
    return alpha**2 * jnp.exp(-0.5 * (d / rho) ** 2)


_F32_REL_JITTER = 1e-6


def _gp_pois_jitter(x: Array, alpha: Array, jitter: float | None) -> Array:
    """Diagonal jitter of ``gp_pois_regr``: 1e-10 as in the source model, in float64.

    In float32 the rounding error of the kernel (~1e-7 alpha^2) exceeds the smallest eigenvalues
    of the smooth kernel matrix and a 1e-10 jitter leaves the Cholesky factor NaN, so float32
    runs use ``1e-6 * alpha^2`` instead (prior sd of the extra noise on f ~ 0.003 alpha, well
    below the posterior sd of f, ~0.1). Run this posterior in float64 for an exact comparison.
    """
    if jitter is not None:
        return jnp.asarray(jitter)
    if jnp.result_type(x, alpha) == jnp.float64:
        return jnp.asarray(1e-10)
    return _F32_REL_JITTER * alpha**2


def gp_pois_regr(x: Array, k: Array | None = None, *, jitter: float | None = None) -> None:
    """Latent whitened GP with Poisson counts; ``f = L f_tilde`` is a deterministic site.

    ``jitter``: the diagonal term (default: see :func:`_gp_pois_jitter`).
    """
    rho = jppl.sample("rho", dist.Gamma(25.0, 4.0))
    alpha = jppl.sample("alpha", dist.HalfNormal(2.0))
    n = x.shape[0]
    f_tilde = jppl.sample("f_tilde", dist.Normal(0.0, 1.0).expand((n,)).to_event(1))
    chol = _gp_pois_cholesky(x, alpha, rho, jitter)
    f = jppl.deterministic("f", chol @ f_tilde)
    with jppl.plate("N", n):
        jppl.sample("k", dist.Poisson(jnp.exp(f)), obs=k)


def _gp_pois_cholesky(x: Array, alpha: Array, rho: Array, jitter: float | None) -> Array:
    """Cholesky factor of the ``gp_pois_regr`` kernel matrix plus its jitter."""
    cov = _sq_exp_kernel(x, alpha, rho) + _gp_pois_jitter(x, alpha, jitter) * jnp.eye(x.shape[0])
    return jnp.linalg.cholesky(cov)


def gp_regr(x: Array, y: Array | None = None) -> None:
    """Marginal GP regression; ``sigma`` is added to the diagonal un-squared (as in the source)."""
    rho = jppl.sample("rho", dist.Gamma(25.0, 4.0))
    alpha = jppl.sample("alpha", dist.HalfNormal(2.0))
    sigma = jppl.sample("sigma", dist.HalfNormal(1.0))
    n = x.shape[0]
    cov = _sq_exp_kernel(x, alpha, rho) + sigma * jnp.eye(n)
    jppl.sample(
        "y",
        dist.MultivariateNormal(jnp.zeros(n), scale_tril=jnp.linalg.cholesky(cov)),
        obs=y,
    )


def _load_gp_pois_regr(data: Mapping[str, Any]) -> Args:
    return (_arr(data["x"]),), {"k": jnp.asarray(np.asarray(data["k"], dtype=np.int32))}


def _load_gp_regr(data: Mapping[str, Any]) -> Args:
    return (_arr(data["x"]),), {"y": _arr(data["y"])}


def _gp_pois_regr_point(values: Mapping[str, float], args: tuple, kwargs: dict) -> dict[str, Array]:
    point = _stack_sites(values, ("rho", "alpha", "f"))
    (x,) = args
    chol = _gp_pois_cholesky(x, point["alpha"], point["rho"], kwargs.get("jitter"))
    f_tilde = jax.scipy.linalg.solve_triangular(chol, point.pop("f"), lower=True)
    return {**point, "f_tilde": f_tilde}


# ---------------------------------------------------------------------------------------------
# Mixture and hidden Markov models
# ---------------------------------------------------------------------------------------------


def low_dim_gauss_mix(y: Array) -> None:
    """Two-component Gaussian mixture with ordered means; the labels are summed out."""
    mu = jppl.sample("mu", _flat(constraints.ordered_vector, (2,)))
    jppl.factor("mu_prior", jnp.sum(dist.Normal(0.0, 2.0).log_prob(mu)))
    sigma = jppl.sample("sigma", dist.HalfNormal(2.0).expand((2,)).to_event(1))
    theta = jppl.sample("theta", dist.Beta(5.0, 5.0))
    weights = jnp.stack([theta, 1.0 - theta], axis=-1)
    mixture = dist.MixtureSameFamily(dist.Categorical(probs=weights), dist.Normal(mu, sigma))
    with jppl.plate("N", y.shape[0]):
        jppl.sample("y", mixture, obs=y)


def _load_y_only(data: Mapping[str, Any]) -> Args:
    return (_arr(data["y"]),), {}


def hmm_example(y: Array) -> None:
    """2-state HMM with Normal(mu_k, 1) emissions; states marginalized (forward algorithm)."""
    theta1 = jppl.sample("theta1", dist.Dirichlet(jnp.ones(2)))
    theta2 = jppl.sample("theta2", dist.Dirichlet(jnp.ones(2)))
    mu = jppl.sample("mu", _flat(constraints.positive_ordered_vector, (2,)))
    jppl.factor("mu_prior", jnp.sum(dist.Normal(jnp.array([3.0, 10.0]), 1.0).log_prob(mu)))
    log_trans = jnp.log(jnp.stack([theta1, theta2]))
    log_emission = dist.Normal(mu, 1.0).log_prob(y[:, None])
    jppl.factor("log_lik", _hmm_log_likelihood(log_trans, log_emission))


def hmm_drive_0(u: Array, v: Array, alpha: Array) -> None:
    """2-state HMM with Exponential(phi_k) and Exponential(lambda_k) emissions for u and v."""
    theta1 = jppl.sample("theta1", dist.Dirichlet(alpha[0]))
    theta2 = jppl.sample("theta2", dist.Dirichlet(alpha[1]))
    prior_loc = jnp.array([0.0, 3.0])
    phi = jppl.sample("phi", _flat(constraints.positive_ordered_vector, (2,)))
    jppl.factor("phi_prior", jnp.sum(dist.Normal(prior_loc, 1.0).log_prob(phi)))
    lam = jppl.sample("lambda", _flat(constraints.positive_ordered_vector, (2,)))
    jppl.factor("lambda_prior", jnp.sum(dist.Normal(prior_loc, 1.0).log_prob(lam)))
    log_trans = jnp.log(jnp.stack([theta1, theta2]))
    log_emission = dist.Exponential(phi).log_prob(u[:, None]) + dist.Exponential(lam).log_prob(
        v[:, None]
    )
    jppl.factor("log_lik", _hmm_log_likelihood(log_trans, log_emission))


def _load_hmm_drive(data: Mapping[str, Any]) -> Args:
    return (_arr(data["u"]), _arr(data["v"]), _arr(data["alpha"])), {}


# ---------------------------------------------------------------------------------------------
# Reference names
# ---------------------------------------------------------------------------------------------


def _reference_names(
    samples: Mapping[str, Any], sites: Sequence[str], batch_ndims: int = 1
) -> dict[str, Array]:
    """Split each site's samples (``batch_ndims`` leading dims, then ``()`` or ``(K,)``) into
    Stan names, in order."""
    out: dict[str, Array] = {}
    for site in sites:
        x = jnp.asarray(samples[site])
        if x.ndim == batch_ndims:
            out[site] = x
        elif x.ndim == batch_ndims + 1:
            for i in range(x.shape[-1]):
                out[f"{site}[{i + 1}]"] = x[..., i]
        else:
            raise ValueError(
                f"Site {site!r}: expected {batch_ndims} leading sample dim(s) and a scalar or "
                f"vector value, got shape {x.shape}."
            )
    return out


def _stack_sites(values: Mapping[str, float], sites: Sequence[str]) -> dict[str, Array]:
    """Inverse of :func:`_reference_names` for one draw: gather ``site[1..K]`` into vectors."""
    out: dict[str, Array] = {}
    for site in sites:
        if site in values:
            out[site] = jnp.asarray(values[site])
            continue
        elements = []
        while f"{site}[{len(elements) + 1}]" in values:
            elements.append(values[f"{site}[{len(elements) + 1}]"])
        if not elements:
            raise KeyError(f"No reference value for site {site!r}.")
        out[site] = jnp.stack([jnp.asarray(e) for e in elements])
    return out


def _plain_point(sites: Sequence[str]) -> Callable[[Mapping[str, float], tuple, dict], dict]:
    def point(values: Mapping[str, float], args: tuple, kwargs: dict) -> dict[str, Array]:
        return _stack_sites(values, sites)

    return point


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PosteriorSpec:
    """One posteriordb posterior: jppl model, data loader, and reference-name mapping.

    Attributes:
        name: posteriordb name ``<data>-<model>``.
        model: jppl model function, called as ``model(*args, **kwargs)``.
        load_data: ``data.json`` dict -> ``(args, kwargs)`` of the model.
        reference_sites: the sites (latent or deterministic) behind the reference names, in the
            reference's order.
        reference_point_fn: ``(values, args, kwargs) -> {latent site: constrained value}``.
        reparam_config: config for ``jppl.handlers.reparam`` that the benchmark should apply,
            or ``None``.
    """

    name: str
    model: Callable[..., Any]
    load_data: Callable[[Mapping[str, Any]], Args]
    reference_sites: tuple[str, ...]
    reference_point_fn: Callable[[Mapping[str, float], tuple, dict], dict[str, Array]] | None = None
    reparam_config: dict[str, Any] | None = field(default=None)

    def to_reference_names(
        self, samples: Mapping[str, Any], batch_ndims: int = 1
    ) -> dict[str, Array]:
        """``{site: (draws, ...) array}`` -> ``{reference name: (draws,) array}`` (1-based).

        ``batch_ndims``: number of leading sample dims, e.g. 2 for ``(chains, draws, ...)``.
        """
        return _reference_names(samples, self.reference_sites, batch_ndims)

    def reference_point(
        self, values: Mapping[str, float], args: tuple, kwargs: dict
    ) -> dict[str, Array]:
        """Latent-site values (constrained) for one value per reference name (e.g. the means)."""
        fn = self.reference_point_fn or _plain_point(self.reference_sites)
        return fn(values, args, kwargs)

    def reparam_model(self) -> Callable[..., Any]:
        """``model`` with ``reparam_config`` applied (the model itself when there is none)."""
        if not self.reparam_config:
            return self.model
        return jppl.handlers.reparam(self.model, config=self.reparam_config)


def _spec(name: str, model: Callable, load: Callable, sites: Sequence[str], **kw) -> PosteriorSpec:
    return PosteriorSpec(name, model, load, tuple(sites), **kw)


_EIGHT = ("theta", "mu", "tau")
_BETA_SIGMA = ("beta", "sigma")

POSTERIORS: dict[str, PosteriorSpec] = {
    spec.name: spec
    for spec in [
        _spec(
            "eight_schools-eight_schools_noncentered",
            eight_schools_noncentered,
            _load_eight_schools,
            _EIGHT,
            reference_point_fn=_eight_schools_noncentered_point,
        ),
        _spec(
            "eight_schools-eight_schools_centered",
            eight_schools_centered,
            _load_eight_schools,
            _EIGHT,
            reparam_config={"theta": LocScaleReparam(centered=0)},
        ),
        _spec("kidiq-kidscore_momiq", kidscore_momiq, _load_kidiq_momiq, _BETA_SIGMA),
        _spec(
            "kidiq-kidscore_interaction",
            kidscore_interaction,
            _load_kidiq_interaction,
            _BETA_SIGMA,
        ),
        _spec(
            "kidiq_with_mom_work-kidscore_interaction_z",
            kidscore_interaction_z,
            _load_kidiq_interaction_z,
            _BETA_SIGMA,
        ),
        _spec("earnings-earn_height", earn_height, _load_earn_height, _BETA_SIGMA),
        _spec(
            "earnings-logearn_interaction",
            logearn_interaction,
            _load_logearn_interaction,
            _BETA_SIGMA,
        ),
        _spec(
            "kilpisjarvi_mod-kilpisjarvi",
            kilpisjarvi,
            _load_kilpisjarvi,
            ("alpha", "beta", "sigma"),
        ),
        _spec("mesquite-logmesquite", logmesquite, _load_mesquite, _BETA_SIGMA),
        _spec("nes2000-nes", nes, _load_nes, _BETA_SIGMA),
        _spec("sblrc-blr", blr, _load_blr, _BETA_SIGMA),
        _spec("sblri-blr", blr, _load_blr, _BETA_SIGMA),
        _spec("diamonds-diamonds", diamonds, _load_diamonds, ("b", "Intercept", "sigma")),
        _spec("arK-arK", arK, _load_arK, ("alpha", "beta", "sigma")),
        _spec("arma-arma11", arma11, _load_arma, ("mu", "phi", "theta", "sigma")),
        _spec("garch-garch11", garch11, _load_garch, ("mu", "alpha0", "alpha1", "beta1")),
        _spec(
            "gp_pois_regr-gp_pois_regr",
            gp_pois_regr,
            _load_gp_pois_regr,
            ("rho", "alpha", "f"),
            reference_point_fn=_gp_pois_regr_point,
        ),
        _spec("gp_pois_regr-gp_regr", gp_regr, _load_gp_regr, ("rho", "alpha", "sigma")),
        _spec(
            "low_dim_gauss_mix-low_dim_gauss_mix",
            low_dim_gauss_mix,
            _load_y_only,
            ("mu", "sigma", "theta"),
        ),
        _spec("hmm_example-hmm_example", hmm_example, _load_y_only, ("theta1", "theta2", "mu")),
        _spec(
            "bball_drive_event_0-hmm_drive_0",
            hmm_drive_0,
            _load_hmm_drive,
            ("theta1", "theta2", "phi", "lambda"),
        ),
    ]
}


def posterior_names() -> list[str]:
    """The posterior names in ``index.json`` order."""
    with open(DATA_DIR / "index.json") as f:
        return [p["posterior_name"] for p in json.load(f)["posteriors"]]


def load_posterior(name: str) -> tuple[PosteriorSpec, dict[str, Any], dict[str, Any]]:
    """``(spec, data_dict, reference_dict)`` for a posterior, read from :data:`DATA_DIR`."""
    if name not in POSTERIORS:
        raise KeyError(f"Unknown posterior {name!r}; known: {sorted(POSTERIORS)}")
    folder = DATA_DIR / name
    with open(folder / "data.json") as f:
        data = json.load(f)
    with open(folder / "reference.json") as f:
        reference = json.load(f)
    return POSTERIORS[name], data, reference


def reference_means(reference: Mapping[str, Any]) -> dict[str, float]:
    """``{reference name: posterior mean}`` from a ``reference.json`` dict."""
    return {k: reference["parameters"][k]["mean"] for k in reference["parameter_names"]}
