"""More continuous distributions, with NumPyro's names and parameterizations: univariate ones,
and the directional ``SineSkewed`` and ``ProjectedNormal``.

Same conventions as :mod:`jppl.distributions.continuous`: parameters are broadcast against each
other at construction (each stored parameter has shape ``batch_shape``), ``sample`` returns
``sample_shape + batch_shape``, ``log_prob`` is ``-inf`` outside the support, and a moment that
does not exist is reported as ``inf``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import digamma, erfc, exp1, i0e, ndtr, ndtri, xlog1py, xlogy
from jax.typing import ArrayLike

from jppl.distributions import constraints
from jppl.distributions.continuous import (
    Beta,
    VonMises,
    _broadcast_params,
    _check_ordered,
    _shape,
    _tiny,
)
from jppl.distributions.distribution import Distribution, ExpandedDistribution, Independent
from jppl.distributions.util import (
    betaln,
    clamp_probs,
    is_concrete,
    lazy_broadcast_shape,
    validate_sample_shape,
)

__all__ = [
    "AsymmetricLaplace",
    "AsymmetricLaplaceQuantile",
    "BetaProportion",
    "Dagum",
    "Gompertz",
    "Kumaraswamy",
    "Levy",
    "LogUniform",
    "Pareto",
    "ProjectedNormal",
    "SineBivariateVonMises",
    "SineSkewed",
    "SoftLaplace",
]

_EULER_GAMMA = 0.5772156649015329
_LOG_PI = math.log(math.pi)


def _exponential(key, sample_shape: Sequence[int], param: jax.Array) -> jax.Array:
    """Standard exponential draws of shape ``sample_shape + batch_shape``, kept above zero.

    A draw of exactly 0 (probability ~2^-24 in float32) would put a sample on the boundary
    of an open support or give an infinite pathwise gradient.
    """
    e = jax.random.exponential(key, _shape(sample_shape, param), param.dtype)
    return jnp.maximum(e, _tiny(param.dtype))


# ------------------------------------------------------------------------------------------
# heavy or one-sided tails
# ------------------------------------------------------------------------------------------
class Pareto(Distribution):
    """Pareto distribution with minimum ``scale`` (x_m > 0) and tail index ``alpha`` (> 0).

    Density ``alpha * scale**alpha / x**(alpha + 1)`` on ``x > scale``; X = scale * exp(E / alpha)
    for E ~ Exponential(1). The mean is finite for ``alpha > 1``, the variance for
    ``alpha > 2`` (else ``inf``). Parameters broadcast to ``batch_shape``.
    """

    arg_constraints = {"scale": constraints.positive, "alpha": constraints.positive}
    has_rsample = True

    def __init__(self, scale: ArrayLike, alpha: ArrayLike, *, validate_args=None):
        batch_shape, (self.scale, self.alpha) = _broadcast_params(scale, alpha)
        super().__init__(batch_shape, validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.greater_than(self.scale)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        return self.scale * jnp.exp(_exponential(key, sample_shape, self.scale) / self.alpha)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        ok = value >= self.scale
        x = jnp.where(ok, value, self.scale)
        a = self.alpha
        lp = jnp.log(a) + a * jnp.log(self.scale) - (a + 1.0) * jnp.log(x)
        return jnp.where(ok, lp, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        # 1 - (scale / x)^alpha, through expm1 for accuracy just above the minimum
        ratio = self.scale / jnp.maximum(value, self.scale)
        return -jnp.expm1(self.alpha * jnp.log(ratio))

    def icdf(self, q: ArrayLike) -> jax.Array:
        return self.scale * jnp.exp(-jnp.log1p(-q) / self.alpha)

    def entropy(self) -> jax.Array:
        return jnp.log(self.scale / self.alpha) + 1.0 + 1.0 / self.alpha

    @property
    def mean(self) -> jax.Array:
        a = self.alpha
        safe = jnp.where(a > 1, a - 1.0, 1.0)
        return jnp.where(a > 1, a * self.scale / safe, jnp.inf)

    @property
    def variance(self) -> jax.Array:
        a = self.alpha
        safe = jnp.where(a > 2, a, 3.0)
        var = self.scale**2 * safe / ((safe - 1.0) ** 2 * (safe - 2.0))
        return jnp.where(a > 2, var, jnp.inf)


class Levy(Distribution):
    """Lévy distribution with location ``loc`` and scale ``scale`` (c > 0).

    Density ``sqrt(c / (2 pi)) (x - loc)^(-3/2) exp(-c / (2 (x - loc)))`` on ``x > loc``;
    X = loc + c / Z^2 for Z ~ Normal(0, 1). Mean and variance are infinite. As in NumPyro it
    has no reparameterized sampler (``has_rsample`` is False).
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    has_rsample = False

    def __init__(self, loc: ArrayLike, scale: ArrayLike, *, validate_args=None):
        batch_shape, (self.loc, self.scale) = _broadcast_params(loc, scale)
        super().__init__(batch_shape, validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.greater_than(self.loc)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        z = jax.random.normal(key, _shape(sample_shape, self.loc), self.loc.dtype)
        return self.loc + self.scale / jnp.maximum(z**2, _tiny(self.loc.dtype))

    def log_prob(self, value: ArrayLike) -> jax.Array:
        ok = value > self.loc
        y = jnp.where(ok, value - self.loc, 1.0)
        c = self.scale
        lp = 0.5 * (jnp.log(c) - math.log(2 * math.pi)) - 1.5 * jnp.log(y) - 0.5 * c / y
        return jnp.where(ok, lp, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        # 2 (1 - Phi(sqrt(c / y))) = erfc(sqrt(c / (2 y))); erfc keeps the right tail accurate
        ok = value > self.loc
        y = jnp.where(ok, value - self.loc, 1.0)
        return jnp.where(ok, erfc(jnp.sqrt(0.5 * self.scale / y)), 0.0)

    def icdf(self, q: ArrayLike) -> jax.Array:
        # Phi^-1(1 - q / 2) = -Phi^-1(q / 2); the latter keeps small q accurate
        return self.loc + self.scale / ndtri(0.5 * jnp.asarray(q)) ** 2

    def entropy(self) -> jax.Array:
        const = 0.5 + 1.5 * _EULER_GAMMA + 0.5 * math.log(16 * math.pi)
        return const + jnp.log(self.scale)

    @property
    def mean(self) -> jax.Array:
        return jnp.full_like(self.loc, jnp.inf)

    @property
    def variance(self) -> jax.Array:
        return jnp.full_like(self.loc, jnp.inf)


class Gompertz(Distribution):
    """Gompertz distribution with ``concentration`` (eta > 0) and ``rate`` (b > 0).

    cdf(x) = 1 - exp(-eta (exp(b x) - 1)) for x >= 0 (NumPyro's naming: Wikipedia's eta and b).
    ``mean`` is ``exp(eta) E1(eta) / b``; like NumPyro, no variance or entropy.
    """

    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.positive
    has_rsample = True

    def __init__(self, concentration: ArrayLike, rate: ArrayLike = 1.0, *, validate_args=None):
        batch_shape, (self.concentration, self.rate) = _broadcast_params(concentration, rate)
        super().__init__(batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        # inverse cdf with E = -log(1 - U) ~ Exponential(1)
        e = _exponential(key, sample_shape, self.rate)
        return jnp.log1p(e / self.concentration) / self.rate

    def log_prob(self, value: ArrayLike) -> jax.Array:
        ok = value >= 0
        bx = jnp.where(ok, value, 0.0) * self.rate
        lp = jnp.log(self.concentration) + jnp.log(self.rate) + bx
        lp = lp - self.concentration * jnp.expm1(bx)
        return jnp.where(ok, lp, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        bx = jnp.maximum(value, 0.0) * self.rate
        return -jnp.expm1(-self.concentration * jnp.expm1(bx))

    def icdf(self, q: ArrayLike) -> jax.Array:
        return jnp.log1p(-jnp.log1p(-q) / self.concentration) / self.rate

    @property
    def mean(self) -> jax.Array:
        eta = self.concentration
        return jnp.exp(eta) * exp1(eta) / self.rate


class Dagum(Distribution):
    """Dagum (Mielke beta-kappa) distribution: ``concentration`` p, ``sharpness`` a, ``scale`` b.

    cdf(x) = (1 + (x / b)^(-a))^(-p) for x > 0 (all parameters > 0). The mean is finite for
    a > 1, the variance for a > 2 (else ``inf``). Parameters broadcast to ``batch_shape``.
    """

    arg_constraints = {
        "concentration": constraints.positive,
        "sharpness": constraints.positive,
        "scale": constraints.positive,
    }
    support = constraints.positive
    has_rsample = True

    def __init__(
        self,
        concentration: ArrayLike,
        sharpness: ArrayLike,
        scale: ArrayLike,
        *,
        validate_args=None,
    ):
        batch_shape, (self.concentration, self.sharpness, self.scale) = _broadcast_params(
            concentration, sharpness, scale
        )
        super().__init__(batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        # inverse cdf with E = -log U ~ Exponential(1): x = b (exp(E / p) - 1)^(-1/a)
        e = _exponential(key, sample_shape, self.scale)
        return self.scale * jnp.expm1(e / self.concentration) ** (-1.0 / self.sharpness)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        p, a = self.concentration, self.sharpness
        ok = value > 0
        x = jnp.where(ok, value, 1.0)
        t = a * (jnp.log(x) - jnp.log(self.scale))  # a log(x / b)
        lp = jnp.log(a) + jnp.log(p) - jnp.log(x) + p * t - (p + 1.0) * jax.nn.softplus(t)
        return jnp.where(ok, lp, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        ok = value > 0
        x = jnp.where(ok, value, 1.0)
        t = self.sharpness * (jnp.log(self.scale) - jnp.log(x))
        return jnp.where(ok, jnp.exp(-self.concentration * jax.nn.softplus(t)), 0.0)

    def icdf(self, q: ArrayLike) -> jax.Array:
        return self.scale * jnp.expm1(-jnp.log(q) / self.concentration) ** (-1.0 / self.sharpness)

    def _raw_moment(self, k: int) -> jax.Array:
        """E[X^k] = p b^k B(1 - k/a, p + k/a) for a > k, else inf."""
        a, p = self.sharpness, self.concentration
        safe = jnp.where(a > k, a, k + 1.0)
        m = p * self.scale**k * jnp.exp(betaln(1.0 - k / safe, p + k / safe))
        return jnp.where(a > k, m, jnp.inf)

    @property
    def mean(self) -> jax.Array:
        return self._raw_moment(1)

    @property
    def variance(self) -> jax.Array:
        return jnp.where(self.sharpness > 2, self._raw_moment(2) - self.mean**2, jnp.inf)


# ------------------------------------------------------------------------------------------
# bounded supports
# ------------------------------------------------------------------------------------------
class LogUniform(Distribution):
    """Log-uniform (reciprocal) distribution on [``low``, ``high``], 0 < low < high.

    X = exp(Y) for Y ~ Uniform(log low, log high): density ``1 / (x log(high / low))``.
    """

    arg_constraints = {"low": constraints.positive, "high": constraints.positive}
    has_rsample = True

    def __init__(self, low: ArrayLike, high: ArrayLike, *, validate_args=None):
        batch_shape, (self.low, self.high) = _broadcast_params(low, high)
        super().__init__(batch_shape, validate_args=validate_args)

    def _check_args(self) -> None:
        super()._check_args()
        _check_ordered(self, "low", "high")

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.interval(self.low, self.high)

    def _log_width(self) -> jax.Array:
        return jnp.log(self.high) - jnp.log(self.low)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        u = jax.random.uniform(key, _shape(sample_shape, self.low), self.low.dtype)
        x = self.low * jnp.exp(u * self._log_width())
        return jnp.clip(x, self.low, self.high)  # exp may round just past high

    def log_prob(self, value: ArrayLike) -> jax.Array:
        ok = (value >= self.low) & (value <= self.high)
        x = jnp.where(ok, value, self.low)
        return jnp.where(ok, -jnp.log(x) - jnp.log(self._log_width()), -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        x = jnp.clip(value, self.low, self.high)
        return jnp.clip((jnp.log(x) - jnp.log(self.low)) / self._log_width(), 0.0, 1.0)

    def icdf(self, q: ArrayLike) -> jax.Array:
        return self.low * jnp.exp(q * self._log_width())

    def entropy(self) -> jax.Array:
        return 0.5 * (jnp.log(self.low) + jnp.log(self.high)) + jnp.log(self._log_width())

    @property
    def mean(self) -> jax.Array:
        return (self.high - self.low) / self._log_width()

    @property
    def variance(self) -> jax.Array:
        return 0.5 * (self.high**2 - self.low**2) / self._log_width() - self.mean**2


class Kumaraswamy(Distribution):
    """Kumaraswamy distribution on [0, 1] with shapes ``concentration1`` (a) and
    ``concentration0`` (b), both > 0.

    Density ``a b x^(a-1) (1 - x^a)^(b-1)``; cdf(x) = 1 - (1 - x^a)^b. ``KL(Kumaraswamy || Beta)``
    sums ``KL_KUMARASWAMY_BETA_TAYLOR_ORDER`` terms of a series (10, as NumPyro; raise it on
    the class or instance for a more precise value when b is small).
    """

    arg_constraints = {
        "concentration1": constraints.positive,
        "concentration0": constraints.positive,
    }
    support = constraints.unit_interval
    has_rsample = True
    KL_KUMARASWAMY_BETA_TAYLOR_ORDER = 10

    def __init__(self, concentration1: ArrayLike, concentration0: ArrayLike, *, validate_args=None):
        batch_shape, (self.concentration1, self.concentration0) = _broadcast_params(
            concentration1, concentration0
        )
        super().__init__(batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        # inverse cdf with E = -log(1 - U): x = (1 - exp(-E / b))^(1/a)
        e = _exponential(key, sample_shape, self.concentration1)
        x = (-jnp.expm1(-e / self.concentration0)) ** (1.0 / self.concentration1)
        return clamp_probs(x)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        a, b = self.concentration1, self.concentration0
        ok = (value >= 0) & (value <= 1)
        x = jnp.where(ok, value, 0.5)
        lp = jnp.log(a) + jnp.log(b) + xlogy(a - 1.0, x) + xlog1py(b - 1.0, -(x**a))
        return jnp.where(ok, lp, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        x = jnp.clip(value, 0.0, 1.0)
        return -jnp.expm1(self.concentration0 * jnp.log1p(-(x**self.concentration1)))

    def icdf(self, q: ArrayLike) -> jax.Array:
        return (-jnp.expm1(jnp.log1p(-q) / self.concentration0)) ** (1.0 / self.concentration1)

    def entropy(self) -> jax.Array:
        # (1 - 1/b) + (1 - 1/a) H_b - log(a b), H_b = digamma(b + 1) + Euler's gamma
        a, b = self.concentration1, self.concentration0
        harmonic = digamma(b + 1.0) + _EULER_GAMMA
        return (1.0 - 1.0 / b) + (1.0 - 1.0 / a) * harmonic - jnp.log(a) - jnp.log(b)

    def _raw_moment(self, k: int) -> jax.Array:
        """E[X^k] = b B(1 + k / a, b)."""
        a, b = self.concentration1, self.concentration0
        return b * jnp.exp(betaln(1.0 + k / a, b))

    @property
    def mean(self) -> jax.Array:
        return self._raw_moment(1)

    @property
    def variance(self) -> jax.Array:
        return self._raw_moment(2) - self.mean**2


class BetaProportion(Beta):
    """Beta distribution with ``mean`` mu in (0, 1) and precision ``concentration`` phi > 0.

    Beta(mu phi, (1 - mu) phi): ``concentration1``, ``concentration0`` and every method are
    the Beta's (so KL pairs registered for Beta apply); ``concentration`` is stored with
    shape ``batch_shape``.
    """

    arg_constraints = {
        "mean": constraints.open_interval(0.0, 1.0),
        "concentration": constraints.positive,
    }
    support = constraints.unit_interval
    has_rsample = True

    def __init__(self, mean: ArrayLike, concentration: ArrayLike, *, validate_args=None):
        batch_shape, (mean, concentration) = _broadcast_params(mean, concentration)
        self.concentration = concentration
        # ``mean`` is no attribute (Beta's ``mean`` property derives it); keep it only while
        # the base class validates, so that it never becomes part of the pytree
        self._mean_arg = mean
        try:
            super().__init__(
                mean * concentration, (1.0 - mean) * concentration, validate_args=validate_args
            )
        finally:
            del self._mean_arg

    def _check_args(self) -> None:
        super()._check_args()
        mean = self.__dict__.get("_mean_arg")
        if self._invalid_args_message is not None or mean is None or not is_concrete(mean):
            return
        constraint = self.arg_constraints["mean"]
        ok = np.asarray(constraint(mean))
        if not ok.all():
            self._report_invalid_args(
                f"BetaProportion: parameter `mean` must satisfy the constraint {constraint!r}, "
                f"but got invalid value(s) {np.asarray(mean)[~ok][:5]}"
            )


# ------------------------------------------------------------------------------------------
# on the real line
# ------------------------------------------------------------------------------------------
class _TwoSidedExponential(Distribution):
    """Exponential tails on both sides of ``loc``: density ``exp(-|x - loc| / s) / (l + r)``
    with ``s = l`` (left of loc) or ``r`` (right of loc), read from ``_left``/``_right``."""

    support = constraints.real
    has_rsample = True
    loc: jax.Array

    @property
    def _left(self) -> jax.Array:
        raise NotImplementedError

    @property
    def _right(self) -> jax.Array:
        raise NotImplementedError

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        shape = _shape(sample_shape, self.loc)
        e = jax.random.exponential(key, (2,) + shape, self.loc.dtype)
        return self.loc - self._left * e[0] + self._right * e[1]

    def log_prob(self, value: ArrayLike) -> jax.Array:
        z = value - self.loc
        left, right = self._left, self._right
        return -jnp.abs(z) / jnp.where(z < 0, left, right) - jnp.log(left + right)

    def cdf(self, value: ArrayLike) -> jax.Array:
        z = value - self.loc
        left, right = self._left, self._right
        total = left + right
        lower = left / total * jnp.exp(jnp.minimum(z, 0.0) / left)
        upper = 1.0 - right / total * jnp.exp(-jnp.maximum(z, 0.0) / right)
        return jnp.where(z < 0, lower, upper)

    def icdf(self, q: ArrayLike) -> jax.Array:
        left, right = self._left, self._right
        total = left + right
        p_left = left / total
        q = jnp.asarray(q)
        below = self.loc + left * jnp.log(jnp.minimum(q, p_left) / p_left)
        above = self.loc - right * jnp.log(jnp.maximum(1.0 - q, 0.0) * total / right)
        return jnp.where(q <= p_left, below, above)

    def entropy(self) -> jax.Array:
        return 1.0 + jnp.log(self._left + self._right)

    @property
    def mean(self) -> jax.Array:
        return self.loc + self._right - self._left

    @property
    def variance(self) -> jax.Array:
        return self._left**2 + self._right**2


class AsymmetricLaplace(_TwoSidedExponential):
    """Asymmetric Laplace with ``loc``, ``scale`` (> 0) and ``asymmetry`` k (> 0).

    The left tail decays with scale ``scale * k``, the right with ``scale / k``; k = 1 is
    Laplace(loc, scale). Parameters broadcast to ``batch_shape``.
    """

    arg_constraints = {
        "loc": constraints.real,
        "scale": constraints.positive,
        "asymmetry": constraints.positive,
    }

    def __init__(
        self,
        loc: ArrayLike = 0.0,
        scale: ArrayLike = 1.0,
        asymmetry: ArrayLike = 1.0,
        *,
        validate_args=None,
    ):
        batch_shape, (self.loc, self.scale, self.asymmetry) = _broadcast_params(
            loc, scale, asymmetry
        )
        super().__init__(batch_shape, validate_args=validate_args)

    @property
    def left_scale(self) -> jax.Array:
        return self.scale * self.asymmetry

    @property
    def right_scale(self) -> jax.Array:
        return self.scale / self.asymmetry

    _left = left_scale
    _right = right_scale


class AsymmetricLaplaceQuantile(_TwoSidedExponential):
    """The asymmetric Laplace of Bayesian quantile regression: ``loc``, ``scale`` (> 0) and
    ``quantile`` tau in (0, 1).

    Density ``tau (1 - tau) / scale * exp(-rho_tau((x - loc) / scale))`` with the check loss
    ``rho_tau(u) = u (tau - [u < 0])``, so ``cdf(loc) = tau``; tau = 1/2 is
    Laplace(loc, 2 scale).
    """

    arg_constraints = {
        "loc": constraints.real,
        "scale": constraints.positive,
        "quantile": constraints.open_interval(0.0, 1.0),
    }

    def __init__(
        self,
        loc: ArrayLike = 0.0,
        scale: ArrayLike = 1.0,
        quantile: ArrayLike = 0.5,
        *,
        validate_args=None,
    ):
        batch_shape, (self.loc, self.scale, self.quantile) = _broadcast_params(loc, scale, quantile)
        super().__init__(batch_shape, validate_args=validate_args)

    @property
    def _left(self) -> jax.Array:
        return self.scale / (1.0 - self.quantile)

    @property
    def _right(self) -> jax.Array:
        return self.scale / self.quantile


class SoftLaplace(Distribution):
    """A smooth, log-convex density with Laplace-like tails: ``loc`` and ``scale`` (> 0).

    Density ``1 / (pi scale cosh(z))``, z = (x - loc) / scale (the hyperbolic secant
    distribution); cdf ``(2 / pi) arctan(exp(z))``; variance ``(pi scale / 2)^2``.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc: ArrayLike, scale: ArrayLike, *, validate_args=None):
        batch_shape, (self.loc, self.scale) = _broadcast_params(loc, scale)
        super().__init__(batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        dtype = self.loc.dtype
        u = jax.random.uniform(key, _shape(sample_shape, self.loc), dtype, minval=_tiny(dtype))
        return self.icdf(u)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        z = (value - self.loc) / self.scale
        return math.log(2 / math.pi) - jnp.log(self.scale) - jnp.logaddexp(z, -z)

    def cdf(self, value: ArrayLike) -> jax.Array:
        z = (value - self.loc) / self.scale
        return jnp.arctan(jnp.exp(z)) * (2 / math.pi)

    def icdf(self, q: ArrayLike) -> jax.Array:
        # log tan(pi q / 2) = -log tan(pi (1 - q) / 2): use the side where the argument is small
        q = jnp.asarray(q)
        half = math.pi / 2
        z = jnp.where(
            q <= 0.5,
            jnp.log(jnp.tan(half * jnp.minimum(q, 0.5))),
            -jnp.log(jnp.tan(half * (1.0 - jnp.maximum(q, 0.5)))),
        )
        return self.loc + self.scale * z

    def entropy(self) -> jax.Array:
        # -E[log p] = log(pi scale) + E[log cosh z], and E[log cosh z] = log 2
        return math.log(2 * math.pi) + jnp.log(self.scale)

    @property
    def mean(self) -> jax.Array:
        return self.loc

    @property
    def variance(self) -> jax.Array:
        return (0.5 * math.pi * self.scale) ** 2


# ------------------------------------------------------------------------------------------
# on the torus
# ------------------------------------------------------------------------------------------


class SineSkewed(Distribution):
    """Sine-skewing of a distribution on the d-torus (Ameijeiras-Alonso and Ley, 2019).

    ``base_dist``: a distribution symmetric about its ``mean`` with event shape ``(d,)`` on
    ``[-pi, pi)^d`` (e.g. ``VonMises(loc, k).to_event(1)``, ``SineBivariateVonMises``);
    ``skewness``: ``batch_shape + (d,)`` with ``sum(|skewness|) <= 1``. The density is
    ``base(x) * (1 + sum_j skewness_j sin(x_j - mean_j))`` (``mean``: the base's centre).

    ``mean`` is the circular mean ``atan2(E sin x_j, E cos x_j)`` of the *skewed* density, which
    moves away from the base's centre: for a base of independent von Mises
    (``VonMises(loc, k).to_event(1)``) it is ``loc + arctan(skewness / k)`` (the base's
    ``E sin^2(x - loc) = A(k) / k`` and ``E cos(x - loc) = A(k)``, ``A = I1 / I0``). For other
    bases it raises (returning the base's centre, as some libraries do, would be wrong).
    """

    arg_constraints = {"skewness": constraints.l1_ball}
    support = constraints.independent(constraints.circular, 1)
    has_rsample = False

    def __init__(self, base_dist: Distribution, skewness: ArrayLike, *, validate_args=None):
        skewness = jnp.asarray(skewness)
        if not jnp.issubdtype(skewness.dtype, jnp.floating):
            skewness = skewness.astype(jnp.result_type(float))
        if len(base_dist.event_shape) != 1 or base_dist.event_shape != jnp.shape(skewness)[-1:]:
            raise ValueError(
                "SineSkewed: `skewness` needs one weight per torus dimension: its last axis "
                f"must equal the base distribution's event shape (d,), but got skewness shape "
                f"{jnp.shape(skewness)} and base event_shape {base_dist.event_shape}."
            )
        batch_shape = lazy_broadcast_shape(base_dist.batch_shape, jnp.shape(skewness)[:-1])
        event_shape = base_dist.event_shape
        self.skewness = jnp.broadcast_to(skewness, batch_shape + event_shape)
        self.base_dist = base_dist.expand(batch_shape)
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    def _skew(self, value: ArrayLike) -> jax.Array:
        """``sum_j skewness_j sin(value_j - mean_j)``, shape ``sample_shape + batch_shape``."""
        return jnp.sum(self.skewness * jnp.sin(value - self.base_dist.mean), axis=-1)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        # draw y from the base; keep it with probability (1 + skew(y)) / 2, else reflect it
        # through the base's centre of symmetry
        base_key, flip_key = jax.random.split(key)
        sample_shape = tuple(sample_shape)
        y = self.base_dist.sample(base_key, sample_shape)
        u = jax.random.uniform(flip_key, sample_shape + self.batch_shape, y.dtype)
        keep = (u <= 0.5 + 0.5 * self._skew(y))[..., None]
        x = jnp.where(keep, y, 2.0 * self.base_dist.mean - y)
        return jnp.remainder(x + jnp.pi, 2 * jnp.pi) - jnp.pi

    def log_prob(self, value: ArrayLike) -> jax.Array:
        return self.base_dist.log_prob(value) + jnp.log1p(self._skew(value))

    @property
    def mean(self) -> jax.Array:
        base = self.base_dist.base_dist if isinstance(self.base_dist, Independent) else None
        while isinstance(base, ExpandedDistribution):
            base = base.base_dist
        if not isinstance(base, VonMises) or self.base_dist.reinterpreted_batch_ndims != 1:
            raise NotImplementedError(
                "SineSkewed.mean is implemented for a base of independent von Mises "
                "(VonMises(loc, concentration).to_event(1)); the skewed circular mean of base "
                f"{type(self.base_dist).__name__} needs its E[sin x_i sin x_j] moments."
            )
        shape = self.batch_shape + self.event_shape
        loc = jnp.broadcast_to(base.loc, shape)
        concentration = jnp.broadcast_to(base.concentration, shape)
        return _wrap(loc + jnp.arctan(self.skewness / concentration))


def _normalize(x: jax.Array) -> jax.Array:
    """``x / |x|`` along the last axis; the norm is kept above ``tiny`` (x = 0 has no direction)."""
    norm = jnp.sqrt(jnp.sum(x**2, axis=-1, keepdims=True))
    return x / jnp.maximum(norm, _tiny(x.dtype))


class ProjectedNormal(Distribution):
    """Direction ``z / |z|`` of ``z ~ Normal(concentration, I)``, on the unit sphere in R^d.

    ``concentration``: ``batch_shape + (d,)``. Draws are reparameterized. As in NumPyro,
    ``log_prob`` (with respect to the sphere's surface measure) exists for d = 2 and 3 only;
    ``mean`` is the normalized concentration (the direction of the mode).
    """

    arg_constraints = {"concentration": constraints.real_vector}
    support = constraints.sphere
    has_rsample = True

    def __init__(self, concentration: ArrayLike, *, validate_args=None):
        concentration = jnp.asarray(concentration)
        if concentration.ndim < 1:
            raise ValueError(
                "ProjectedNormal: `concentration` must have at least one dimension (the "
                f"event, d), but got shape {concentration.shape}."
            )
        if not jnp.issubdtype(concentration.dtype, jnp.floating):
            concentration = concentration.astype(jnp.result_type(float))
        self.concentration = concentration
        super().__init__(
            concentration.shape[:-1], concentration.shape[-1:], validate_args=validate_args
        )

    @property
    def mean(self) -> jax.Array:
        return _normalize(self.concentration)

    @property
    def mode(self) -> jax.Array:
        return _normalize(self.concentration)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        shape = validate_sample_shape(sample_shape) + self.batch_shape + self.event_shape
        eps = jax.random.normal(key, shape, self.concentration.dtype)
        return _normalize(self.concentration + eps)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        # Along the ray r * value: |r value - c|^2 = (r - t)^2 + |c|^2 - t^2 with t = <c, value>,
        # so the density is (2 pi)^(-(d-1)/2) exp(-(|c|^2 - t^2) / 2) * int_0^inf r^(d-1)
        # phi(r - t) dr, whose last factor is phi(t) + t Phi(t) (d = 2) or
        # t phi(t) + (1 + t^2) Phi(t) (d = 3).
        dim = self.event_shape[0]
        if dim not in (2, 3):
            raise NotImplementedError(
                f"ProjectedNormal.log_prob is implemented for d = 2 and 3 only, got d = {dim}."
            )
        c = self.concentration
        t = jnp.sum(c * value, axis=-1)
        perp = jnp.sum(c**2, axis=-1) - t**2
        phi = jnp.exp(-0.5 * t**2) / math.sqrt(2 * math.pi)
        if dim == 2:
            radial = phi + t * ndtr(t)
        else:
            radial = t * phi + (1.0 + t**2) * ndtr(t)
        return -0.5 * perp - 0.5 * (dim - 1) * math.log(2 * math.pi) + jnp.log(radial)


def _log_i0(x: jax.Array) -> jax.Array:
    return jnp.log(i0e(x)) + jnp.abs(x)


def _wrap(x: jax.Array) -> jax.Array:
    return jnp.remainder(x + jnp.pi, 2 * jnp.pi) - jnp.pi


class SineBivariateVonMises(Distribution):
    """Sine bivariate von Mises distribution on the 2-torus (Singh, Hnizdo and Demchuk, 2002).

    Density of ``(phi, psi)`` proportional to ``exp(k1 cos(phi - mu) + k2 cos(psi - nu) +
    lam sin(phi - mu) sin(psi - nu))`` with ``phi_loc`` mu, ``psi_loc`` nu,
    ``phi_concentration`` k1, ``psi_concentration`` k2 and ``correlation`` lam; give
    ``correlation`` or ``weighted_correlation`` w (lam = w sqrt(k1 k2)), not both. All
    broadcast to ``batch_shape``; the event shape is ``(2,)``. Not reparameterized.

    ``norm_const`` (log of the normalizer) integrates the psi-marginal
    ``2 pi I0(sqrt(k2^2 + lam^2 sin^2 phi)) exp(k1 cos phi)`` over phi with a periodic
    trapezoid rule (spectrally accurate; every term is positive). ``sample`` draws phi from
    that marginal by rejection from VonMises(mu, k1) (the ratio is bounded by
    ``I0(sqrt(k2^2 + lam^2))``), then psi given phi, a von Mises; at most
    ``max_sample_iter`` proposal rounds.
    """

    arg_constraints = {
        "phi_loc": constraints.circular,
        "psi_loc": constraints.circular,
        "phi_concentration": constraints.positive,
        "psi_concentration": constraints.positive,
        "correlation": constraints.real,
    }
    support = constraints.independent(constraints.circular, 1)
    has_rsample = False
    max_sample_iter = 1000
    _GRID = 1024  # trapezoid nodes for the normalizer

    def __init__(
        self,
        phi_loc: ArrayLike,
        psi_loc: ArrayLike,
        phi_concentration: ArrayLike,
        psi_concentration: ArrayLike,
        correlation: ArrayLike | None = None,
        weighted_correlation: ArrayLike | None = None,
        *,
        validate_args=None,
    ):
        if (correlation is None) == (weighted_correlation is None):
            raise ValueError(
                "SineBivariateVonMises: give exactly one of `correlation` and "
                "`weighted_correlation`."
            )
        if weighted_correlation is not None:
            correlation = jnp.asarray(weighted_correlation) * jnp.sqrt(
                jnp.asarray(phi_concentration) * jnp.asarray(psi_concentration)
            )
        batch_shape, params = _broadcast_params(
            phi_loc, psi_loc, phi_concentration, psi_concentration, correlation
        )
        (
            self.phi_loc,
            self.psi_loc,
            self.phi_concentration,
            self.psi_concentration,
            self.correlation,
        ) = params
        super().__init__(batch_shape, (2,), validate_args=validate_args)

    def _log_marginal(self, phi: jax.Array) -> jax.Array:
        """log of the unnormalized density of the centred phi, with psi integrated out."""
        k2, lam = self.psi_concentration, self.correlation
        a = jnp.sqrt(k2**2 + (lam * jnp.sin(phi)) ** 2)
        return self.phi_concentration * jnp.cos(phi) + _log_i0(a) + math.log(2 * math.pi)

    @property
    def norm_const(self) -> jax.Array:
        """log of the normalizing constant, shape ``batch_shape``."""
        n = self._GRID
        grid = jnp.arange(n, dtype=self.phi_loc.dtype) * (2 * math.pi / n) - math.pi
        grid = grid.reshape((n,) + (1,) * len(self.batch_shape))
        logs = self._log_marginal(grid)
        return jax.nn.logsumexp(logs, axis=0) + math.log(2 * math.pi / n)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        value = jnp.asarray(value)
        d_phi, d_psi = value[..., 0] - self.phi_loc, value[..., 1] - self.psi_loc
        unnorm = (
            self.phi_concentration * jnp.cos(d_phi)
            + self.psi_concentration * jnp.cos(d_psi)
            + self.correlation * jnp.sin(d_phi) * jnp.sin(d_psi)
        )
        return unnorm - self.norm_const

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        k1, k2, lam = self.phi_concentration, self.psi_concentration, self.correlation
        proposal = VonMises(jnp.zeros_like(k1), k1)
        log_bound = _log_i0(jnp.sqrt(k2**2 + lam**2))
        phi_key, psi_key = jax.random.split(key)

        def cond(state):
            i, done, _, _ = state
            return (i < self.max_sample_iter) & ~jnp.all(done)

        def body(state):
            i, done, phi, key = state
            key, prop_key, u_key = jax.random.split(key, 3)
            x = proposal.sample(prop_key, sample_shape)
            a = jnp.sqrt(k2**2 + (lam * jnp.sin(x)) ** 2)
            u = jax.random.uniform(u_key, shape, k1.dtype)
            accept = ~done & (jnp.log(u) < _log_i0(a) - log_bound)
            return i + 1, done | accept, jnp.where(accept, x, phi), key

        init = (jnp.array(0), jnp.zeros(shape, bool), jnp.zeros(shape, k1.dtype), phi_key)
        _, _, phi, _ = lax.while_loop(cond, body, init)
        # psi | phi: k2 cos(psi) + lam sin(phi) sin(psi) = a cos(psi - beta)
        s = lam * jnp.sin(phi)
        psi = VonMises(jnp.arctan2(s, k2), jnp.sqrt(k2**2 + s**2)).sample(psi_key)
        return jnp.stack((_wrap(phi + self.phi_loc), _wrap(psi + self.psi_loc)), axis=-1)

    @property
    def mean(self) -> jax.Array:
        """The circular mean (the locations wrapped to [-pi, pi))."""
        return jnp.stack((_wrap(self.phi_loc), _wrap(self.psi_loc)), axis=-1)
