"""The models and data the benchmarks share, and the MCMC problems built from them.

Models are written once for both libraries: ``make(pp, dist)`` returns the model function
written with ``pp.sample`` / ``pp.plate`` and ``dist`` (``pp, dist = jppl, jppl.distributions``
or ``numpyro, numpyro.distributions``). For BlackJAX the same densities are written by hand on
the unconstrained latent values (``*_logdensity``).

* eight schools (non-centered), a radon-like varying-intercepts regression and a 100-d
  correlated Gaussian: :mod:`benchmarks.nuts` and :mod:`benchmarks.progress`;
* logistic regression: the model (:mod:`benchmarks.nuts` on covertype-sized data,
  :mod:`benchmarks.svi`) and its synthetic data (:func:`logreg_data`: :mod:`benchmarks.svi`,
  :mod:`benchmarks.likelihood_grad`; :func:`covertype_data`: :mod:`benchmarks.nuts`;
  :func:`covtype_like`: :mod:`benchmarks.parallel`);
* the digits (:func:`digits`) and a Bayesian MLP on them (:func:`bnn_model`):
  :mod:`benchmarks.svi`, :mod:`benchmarks.parallel`, :mod:`benchmarks.bnn`.

:class:`Problem` bundles a model with its data, initial points and NUTS run settings
(:data:`PROBLEMS`: the models of :mod:`benchmarks.nuts`). Every data set has a fixed seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.scipy.linalg import solve_triangular

LOG_2PI = math.log(2.0 * math.pi)

# ---------------------------------------------------------------------------------------------
# Models: one function per model, instantiated with jppl or NumPyro (``pp``, ``dist``)
# ---------------------------------------------------------------------------------------------


def eight_schools_model(pp, dist) -> Callable:
    """Eight schools, non-centered: ``theta = mu + tau * theta_raw``."""

    def model(sigma, y=None):
        mu = pp.sample("mu", dist.Normal(0.0, 5.0))
        tau = pp.sample("tau", dist.HalfCauchy(5.0))
        with pp.plate("schools", sigma.shape[0]):
            theta_raw = pp.sample("theta_raw", dist.Normal(0.0, 1.0))
            pp.sample("y", dist.Normal(mu + tau * theta_raw, sigma), obs=y)

    return model


def radon_model(pp, dist, num_counties: int = 85) -> Callable:
    """Varying intercepts (centered): ``y ~ N(a[county] + beta * floor, sigma_y)``,
    ``a ~ N(mu_a, sigma_a)``."""

    def model(county, floor, y=None):
        mu_a = pp.sample("mu_a", dist.Normal(0.0, 10.0))
        sigma_a = pp.sample("sigma_a", dist.HalfNormal(1.0))
        beta = pp.sample("beta", dist.Normal(0.0, 10.0))
        sigma_y = pp.sample("sigma_y", dist.HalfNormal(1.0))
        with pp.plate("counties", num_counties):
            a = pp.sample("a", dist.Normal(mu_a, sigma_a))
        with pp.plate("obs", county.shape[0]):
            pp.sample("y", dist.Normal(a[county] + beta * floor, sigma_y), obs=y)

    return model


def gauss_model(pp, dist) -> Callable:
    """``x ~ MultivariateNormal(0, scale_tril=L)``."""

    def model(scale_tril):
        d = scale_tril.shape[-1]
        pp.sample("x", dist.MultivariateNormal(jnp.zeros(d), scale_tril=scale_tril))

    return model


def logreg_model(pp, dist, glm: bool = False) -> Callable:
    """Bayesian logistic regression ``y ~ Bernoulli(logits = X @ w + b)``, N(0, 1) priors.

    ``glm``: the likelihood is jppl's GLM distribution (``BernoulliLogitGLM``: the same density,
    with a gradient that reads ``X`` once) instead of ``Bernoulli(logits=...)``.
    """

    def model(X, y=None):
        n, d = X.shape
        w = pp.sample("w", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
        b = pp.sample("b", dist.Normal(0.0, 1.0))
        with pp.plate("data", n):
            if glm:
                pp.sample("y", dist.BernoulliLogitGLM(X, b, w), obs=y)
            else:
                pp.sample("y", dist.Bernoulli(logits=X @ w + b), obs=y)

    return model


def bnn_model(
    pp,
    dist,
    hidden: int = 32,
    num_classes: int = 10,
    plate: str = "data",
    shard: str | None = None,
) -> Callable:
    """Bayesian MLP ``d -> hidden (tanh) -> num_classes`` with ``Normal(0, 1)`` priors on all
    weights and biases (plain sample sites ``w1, b1, w2, b2``), categorical likelihood in a
    plate named ``plate`` over the rows; ``shard``: the plate's mesh axis (jppl only)."""
    options = {} if shard is None else {"shard": shard}

    def model(X, y=None):
        n, d = X.shape
        w1 = pp.sample("w1", dist.Normal(0.0, 1.0).expand([d, hidden]).to_event(2))
        b1 = pp.sample("b1", dist.Normal(0.0, 1.0).expand([hidden]).to_event(1))
        w2 = pp.sample("w2", dist.Normal(0.0, 1.0).expand([hidden, num_classes]).to_event(2))
        b2 = pp.sample("b2", dist.Normal(0.0, 1.0).expand([num_classes]).to_event(1))
        logits = jnp.tanh(X @ w1 + b1) @ w2 + b2
        with pp.plate(plate, n, **options):
            pp.sample("y", dist.Categorical(logits=logits), obs=y)

    return model


# The same log densities by hand, on the *unconstrained* latent values (dict of arrays), with
# the log-Jacobians of the positive sites (exp transforms): what BlackJAX samples.


def _normal_lp(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - jnp.log(scale) - 0.5 * LOG_2PI


def _half_normal_lp(x, scale):
    return _normal_lp(x, 0.0, scale) + math.log(2.0)


def eight_schools_logdensity(p, sigma, y):
    tau = jnp.exp(p["tau"])
    lp = _normal_lp(p["mu"], 0.0, 5.0)
    lp += math.log(2.0 / (math.pi * 5.0)) - jnp.log1p((tau / 5.0) ** 2) + p["tau"]
    lp += jnp.sum(_normal_lp(p["theta_raw"], 0.0, 1.0))
    lp += jnp.sum(_normal_lp(y, p["mu"] + tau * p["theta_raw"], sigma))
    return lp


def radon_logdensity(p, county, floor, y):
    sigma_a, sigma_y = jnp.exp(p["sigma_a"]), jnp.exp(p["sigma_y"])
    lp = _normal_lp(p["mu_a"], 0.0, 10.0) + _normal_lp(p["beta"], 0.0, 10.0)
    lp += _half_normal_lp(sigma_a, 1.0) + p["sigma_a"] + _half_normal_lp(sigma_y, 1.0)
    lp += p["sigma_y"]
    lp += jnp.sum(_normal_lp(p["a"], p["mu_a"], sigma_a))
    lp += jnp.sum(_normal_lp(y, p["a"][county] + p["beta"] * floor, sigma_y))
    return lp


def gauss_logdensity(p, scale_tril):
    z = solve_triangular(scale_tril, p["x"], lower=True)
    d = scale_tril.shape[-1]
    return -0.5 * jnp.sum(z**2) - jnp.sum(jnp.log(jnp.diagonal(scale_tril))) - 0.5 * d * LOG_2PI


def logreg_logdensity(p, X, y):
    logits = X @ p["w"] + p["b"]
    lp = jnp.sum(y * logits - jax.nn.softplus(logits))
    return lp + jnp.sum(_normal_lp(p["w"], 0.0, 1.0)) + _normal_lp(p["b"], 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

EIGHT_SCHOOLS_Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0], np.float32)
EIGHT_SCHOOLS_SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0], np.float32)


def radon_data(num_obs: int = 919, num_counties: int = 85, seed: int = 1):
    """Synthetic radon-like data: skewed county sizes (every county has >= 1 observation),
    a binary floor covariate (about 17% ones) and log-radon-like responses."""
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 1.2, size=num_counties)
    extra = rng.choice(num_counties, size=num_obs - num_counties, p=weights / weights.sum())
    county = rng.permutation(np.concatenate([np.arange(num_counties), extra])).astype(np.int32)
    floor = (rng.random(num_obs) < 0.17).astype(np.float32)
    mu_a, sigma_a, beta, sigma_y = 1.5, 0.35, -0.65, 0.75
    a = mu_a + sigma_a * rng.standard_normal(num_counties)
    y = a[county] + beta * floor + sigma_y * rng.standard_normal(num_obs)
    return county, floor, y.astype(np.float32)


def gauss_scale_tril(dim: int = 100, seed: int = 2) -> np.ndarray:
    """Cholesky factor of ``D C D``: ``C`` the correlation of ``A A^T`` with ``A`` a ``d x 2d``
    standard normal matrix (condition number about 30), ``D`` log-uniform scales in
    ``[0.1, 10]``."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((dim, 2 * dim))
    cov = a @ a.T
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    scales = np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=dim))
    return np.linalg.cholesky(corr * np.outer(scales, scales)).astype(np.float32)


def logreg_data(
    num_data: int = 10_000,
    num_features: int = 20,
    intercept: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic logistic-regression data: ``X (num_data, num_features)`` standard normal,
    weights standard normal, ``y ~ Bernoulli(sigmoid(X @ w + intercept))``, float32.

    ``rng``: the generator to draw from (default ``np.random.default_rng(0)``); a caller that
    draws more after the data passes its own.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    X = rng.normal(size=(num_data, num_features)).astype(np.float32)
    w_true = rng.normal(size=num_features).astype(np.float32)
    logits = X @ w_true + intercept
    y = (rng.random(num_data) < 1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    return X, y


def covertype_data(num_obs: int = 581_012, num_features: int = 54, seed: int = 3):
    """Synthetic covertype-sized data: standard normal float32 features, weights ``N(0, 0.5^2)``,
    intercept 0.3, Bernoulli labels."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((num_obs, num_features), dtype=np.float32)
    w = (0.5 * rng.standard_normal(num_features)).astype(np.float32)
    b = np.float32(0.3)
    logits = X @ w + b
    y = (rng.random(num_obs, dtype=np.float32) < 1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    return X, y, w, b


COVTYPE_N, COVTYPE_F = 581_012, 55


def covtype_like(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic data with covertype's shape and an intercept column: ``x (n, 55)`` (last
    column 1), weights ``N(0, 0.3^2)``, ``y (n,)`` Bernoulli labels (seed 0; not the draw of
    :func:`covertype_data`)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, COVTYPE_F), dtype=np.float32)
    x[:, -1] = 1.0
    w = rng.normal(scale=0.3, size=COVTYPE_F).astype(np.float32)
    y = (rng.random(n, dtype=np.float32) < 1 / (1 + np.exp(-(x @ w)))).astype(np.float32)
    return x, y


def digits() -> tuple[np.ndarray, np.ndarray]:
    """``sklearn.datasets.load_digits``: ``x (1797, 64)`` pixels scaled to [0, 1] (float32),
    ``y (1797,)`` int32 labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    return x, data.target.astype(np.int32)


# ---------------------------------------------------------------------------------------------
# MCMC problems
# ---------------------------------------------------------------------------------------------


@dataclass
class Problem:
    """A benchmark model with its data, initial points and run settings."""

    name: str
    description: str
    make_model: Callable  # (pp, dist) -> model(*args, **kwargs)
    logdensity: Callable  # (unconstrained params dict, *args, **kwargs) -> ()
    args: tuple
    kwargs: dict
    init: dict[str, np.ndarray]  # unconstrained initial values, leading num_chains dim
    num_chains: int = 4
    num_warmup: int = 1000
    num_samples: int = 1000
    dense_mass: bool = False
    repeats: int = 3  # timed runs besides the first (interleaved across libraries)
    settings_note: str = ""
    extra: dict = field(default_factory=dict)

    def init_for(self, chains: int | None = None) -> dict[str, jax.Array]:
        c = self.num_chains if chains is None else chains
        return {k: jnp.asarray(v[:c]) for k, v in self.init.items()}

    def flat_init(self) -> jax.Array:
        """``(num_chains, d)``: the initial points raveled like jppl (sorted site names)."""
        return jax.vmap(lambda t: ravel_pytree(t)[0])(self.init_for())


def uniform_init(shapes: dict[str, tuple], num_chains: int, seed: int) -> dict[str, np.ndarray]:
    """Stan-like ``uniform(-2, 2)`` unconstrained initial values (the same for all libraries)."""
    rng = np.random.default_rng(seed)
    return {
        name: rng.uniform(-2.0, 2.0, size=(num_chains, *shape)).astype(np.float32)
        for name, shape in sorted(shapes.items())
    }


def eight_schools_problem(quick: bool) -> Problem:
    return Problem(
        name="eight_schools",
        description="eight schools, non-centered (d=10)",
        make_model=eight_schools_model,
        logdensity=lambda p, sigma, y: eight_schools_logdensity(p, sigma, y),
        args=(jnp.asarray(EIGHT_SCHOOLS_SIGMA),),
        kwargs={"y": jnp.asarray(EIGHT_SCHOOLS_Y)},
        init=uniform_init({"mu": (), "tau": (), "theta_raw": (8,)}, 4, seed=10),
        repeats=1 if quick else 5,
    )


def radon_problem(quick: bool) -> Problem:
    county, floor, y = radon_data()
    init = uniform_init(
        {"mu_a": (), "sigma_a": (), "beta": (), "sigma_y": (), "a": (85,)}, 4, seed=11
    )
    return Problem(
        name="radon",
        description="radon-like varying intercepts, centered (919 obs, 85 groups, d=89)",
        make_model=radon_model,
        logdensity=lambda p, county, floor, y: radon_logdensity(p, county, floor, y),
        args=(jnp.asarray(county), jnp.asarray(floor)),
        kwargs={"y": jnp.asarray(y)},
        init=init,
        repeats=1 if quick else 3,
    )


def gauss_problem(quick: bool) -> Problem:
    scale_tril = gauss_scale_tril()
    return Problem(
        name="gauss100",
        description="100-d correlated Gaussian, dense mass matrix",
        make_model=gauss_model,
        logdensity=lambda p, scale_tril: gauss_logdensity(p, scale_tril),
        args=(jnp.asarray(scale_tril),),
        kwargs={},
        init=uniform_init({"x": (100,)}, 4, seed=12),
        dense_mass=True,
        repeats=1 if quick else 3,
        settings_note="dense mass",
    )


def covertype_model(pp, dist) -> Callable:
    """:func:`logreg_model`, with jppl's fused GLM likelihood (NumPyro: ``Bernoulli``)."""
    return logreg_model(pp, dist, glm=pp.__name__ == "jppl")


def covertype_problem(quick: bool) -> Problem:
    num_obs = 58_101 if quick else 581_012
    X, y, w, b = covertype_data(num_obs=num_obs)
    draws = 50 if quick else 100
    return Problem(
        name="covertype",
        description=(
            f"logistic regression {num_obs:,} x 54 (+intercept), float32 "
            f"(1 chain x {draws} warm-up / {draws} draws)"
        ),
        make_model=covertype_model,
        logdensity=lambda p, X, y: logreg_logdensity(p, X, y),
        args=(jnp.asarray(X),),
        kwargs={"y": jnp.asarray(y)},
        # Start in the posterior bulk (the data-generating weights) so that the short warm-up
        # suffices, identically for every library.
        init={"b": np.full((1,), b, np.float32), "w": w[None]},
        num_chains=1,
        num_warmup=draws,
        num_samples=draws,
        repeats=1 if quick else 0,  # full: each run takes minutes; see nuts.bench_gradient
        settings_note=f"1 chain x {draws}/{draws}, init at true weights",
        extra={"design_matrix": "X"},
    )


PROBLEMS: dict[str, Callable[[bool], Problem]] = {
    "eight_schools": eight_schools_problem,
    "radon": radon_problem,
    "gauss100": gauss_problem,
    "covertype": covertype_problem,
}
"""The models of :mod:`benchmarks.nuts`: ``PROBLEMS[name](quick) -> Problem``."""


def tiny_problem() -> Problem:
    """A 2-d normal-mean model for the process-wide warm-up of each library."""

    def make_model(pp, dist):
        def model(y):
            loc = pp.sample("loc", dist.Normal(jnp.zeros(2), 3.0).to_event(1))
            with pp.plate("data", y.shape[0]):
                pp.sample("y", dist.Normal(loc, 1.0).to_event(1), obs=y)

        return model

    def logdensity(p, y):
        return jnp.sum(_normal_lp(p["loc"], 0.0, 3.0)) + jnp.sum(_normal_lp(y, p["loc"], 1.0))

    y = np.random.default_rng(0).standard_normal((5, 2)).astype(np.float32)
    return Problem(
        name="tiny",
        description="warm-up",
        make_model=make_model,
        logdensity=logdensity,
        args=(jnp.asarray(y),),
        kwargs={},
        init=uniform_init({"loc": (2,)}, 4, seed=0),
        num_warmup=20,
        num_samples=20,
        repeats=0,
    )
