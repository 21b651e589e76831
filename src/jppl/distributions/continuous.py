"""Univariate continuous distributions.

Class names, parameter names and parameter order follow NumPyro, so ``dist.Gamma(2.0, 3.0)``
means concentration 2 and *rate* 3 here as there. Every parameter is broadcast against the
others when the distribution is built, so ``batch_shape`` is the common broadcast shape and each
stored parameter has exactly that shape (this keeps ``jax.vmap`` over a distribution simple).

Conventions shared by all classes here:

* ``sample(key, sample_shape)`` returns ``sample_shape + batch_shape``; ``key`` may be a
  typed ``jax.random.key`` or a raw ``PRNGKey``.
* ``log_prob(value)`` broadcasts ``value`` against ``batch_shape`` and returns ``-inf`` for
  values outside the (closure of the) support, where that is cheap to check.
* ``mean``/``variance`` are arrays of shape ``batch_shape``; a moment that does not exist is
  ``inf`` (diverges) or ``nan`` (undefined).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import (
    digamma,
    expit,
    gammainc,
    gammaincc,
    gammaln,
    i0e,
    i1e,
    log_ndtr,
    logit,
    ndtr,
    ndtri,
    xlog1py,
    xlogy,
)
from jax.typing import ArrayLike

from jppl.distributions import constraints
from jppl.distributions.distribution import Distribution
from jppl.distributions.special import betainc, betaincinv, gammainccinv, gammaincinv
from jppl.distributions.util import (
    _von_mises_centered,
    betaln,
    clamp_probs,
    is_concrete,
    lazy_broadcast_shape,
    validate_sample_shape,
)

__all__ = [
    "Beta",
    "Cauchy",
    "Chi2",
    "Exponential",
    "Gamma",
    "Gumbel",
    "HalfCauchy",
    "HalfNormal",
    "HalfStudentT",
    "InverseGamma",
    "Laplace",
    "LogNormal",
    "Logistic",
    "Normal",
    "StudentT",
    "TruncatedNormal",
    "Uniform",
    "VonMises",
    "Weibull",
]

_LOG_2PI = math.log(2 * math.pi)
_HALF_LOG_2PI = 0.5 * _LOG_2PI
_LOG_2 = math.log(2.0)
_LOG_PI = math.log(math.pi)
_EULER_GAMMA = 0.5772156649015329


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def _as_float(x: ArrayLike) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def _broadcast_params(*params: ArrayLike) -> tuple[tuple[int, ...], list[jax.Array]]:
    """Convert to float arrays of one dtype, broadcast to the common (batch) shape."""
    arrays = [_as_float(p) for p in params]
    dtype = jnp.result_type(*arrays)
    shape = lazy_broadcast_shape(*(jnp.shape(a) for a in arrays))
    return shape, [jnp.broadcast_to(a.astype(dtype), shape) for a in arrays]


def _shape(sample_shape: Sequence[int], param: jax.Array) -> tuple[int, ...]:
    """``sample_shape + batch_shape``, with the batch shape read off a (broadcast) parameter."""
    return validate_sample_shape(sample_shape) + jnp.shape(param)


def _tiny(dtype) -> float:
    return float(jnp.finfo(dtype).tiny)


def _log1mexp(x: jax.Array) -> jax.Array:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate at both ends."""
    return jnp.where(
        x > -_LOG_2,
        jnp.log(-jnp.expm1(jnp.minimum(x, -0.0))),
        jnp.log1p(-jnp.exp(jnp.minimum(x, -_LOG_2))),
    )


def _check_ordered(d: Distribution, low_name: str, high_name: str) -> None:
    """Validation of ``low < high`` for distributions whose support is an interval."""
    if d._invalid_args_message is not None:
        return
    low, high = d.__dict__[low_name], d.__dict__[high_name]
    if not (is_concrete(low) and is_concrete(high)):
        return
    if not bool(jnp.all(low < high)):
        d._report_invalid_args(
            f"{type(d).__name__}: parameters `{low_name}` and `{high_name}` must satisfy "
            f"{low_name} < {high_name}, but got {low_name}={low} and {high_name}={high}"
        )


# ------------------------------------------------------------------------------------------
# location-scale families on the real line
# ------------------------------------------------------------------------------------------
class _LocScaleFamily(Distribution):
    """A location-scale family on the real line: ``X = loc + scale * Z``.

    ``Z`` is the family's standard member, which a subclass describes by static functions
    ``_std_sample(key, shape, dtype)``, ``_std_log_prob(z)``, ``_std_cdf(z)``, ``_std_icdf(q)``
    and constants ``_std_mean``, ``_std_variance``, ``_std_entropy`` (``nan``/``inf`` where a
    moment does not exist). ``loc`` and ``scale`` (> 0) broadcast to ``batch_shape``.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True
    _std_mean: float
    _std_variance: float
    _std_entropy: float

    def __init__(self, loc: ArrayLike = 0.0, scale: ArrayLike = 1.0, *, validate_args=None):
        batch_shape, (self.loc, self.scale) = _broadcast_params(loc, scale)
        super().__init__(batch_shape, validate_args=validate_args)

    @staticmethod
    def _std_sample(key, shape: tuple[int, ...], dtype) -> jax.Array:
        raise NotImplementedError

    @staticmethod
    def _std_log_prob(z: jax.Array) -> jax.Array:
        raise NotImplementedError

    @staticmethod
    def _std_cdf(z: jax.Array) -> jax.Array:
        raise NotImplementedError

    @staticmethod
    def _std_icdf(q: ArrayLike) -> jax.Array:
        raise NotImplementedError

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        eps = self._std_sample(key, _shape(sample_shape, self.loc), self.loc.dtype)
        return self.loc + self.scale * eps

    def log_prob(self, value: ArrayLike) -> jax.Array:
        return self._std_log_prob((value - self.loc) / self.scale) - jnp.log(self.scale)

    def cdf(self, value: ArrayLike) -> jax.Array:
        return self._std_cdf((value - self.loc) / self.scale)

    def icdf(self, q: ArrayLike) -> jax.Array:
        return self.loc + self.scale * self._std_icdf(q)

    def entropy(self) -> jax.Array:
        return self._std_entropy + jnp.log(self.scale)

    @property
    def mean(self) -> jax.Array:
        return self.loc + self.scale * self._std_mean

    @property
    def variance(self) -> jax.Array:
        return self.scale**2 * self._std_variance


class Normal(_LocScaleFamily):
    """Normal (Gaussian) distribution.

    ``loc``: mean; ``scale``: standard deviation (> 0). Both broadcast to ``batch_shape``.
    """

    _std_sample = staticmethod(jax.random.normal)
    _std_cdf = staticmethod(ndtr)
    _std_icdf = staticmethod(ndtri)
    _std_mean, _std_variance, _std_entropy = 0.0, 1.0, 0.5 + _HALF_LOG_2PI

    @staticmethod
    def _std_log_prob(z: jax.Array) -> jax.Array:
        return -0.5 * z**2 - _HALF_LOG_2PI


class Cauchy(_LocScaleFamily):
    """Cauchy distribution. ``loc``: median; ``scale``: half width at half maximum (> 0).

    Its mean is undefined (``nan``) and its variance infinite.
    """

    _std_sample = staticmethod(jax.random.cauchy)
    _std_mean, _std_variance, _std_entropy = math.nan, math.inf, math.log(4 * math.pi)

    @staticmethod
    def _std_log_prob(z: jax.Array) -> jax.Array:
        return -_LOG_PI - jnp.log1p(z**2)

    @staticmethod
    def _std_cdf(z: jax.Array) -> jax.Array:
        return 0.5 + jnp.arctan(z) / jnp.pi

    @staticmethod
    def _std_icdf(q: ArrayLike) -> jax.Array:
        return jnp.tan(jnp.pi * (q - 0.5))


class StudentT(Distribution):
    """Student's t distribution with ``df`` degrees of freedom (> 0), location ``loc`` and
    scale ``scale`` (> 0).

    The mean is ``loc`` for ``df > 1`` and reported as ``inf`` otherwise (as scipy and NumPyro
    do); the variance is finite for ``df > 2``, ``inf`` for ``1 < df <= 2`` and ``nan`` for
    ``df <= 1``.
    """

    arg_constraints = {
        "df": constraints.positive,
        "loc": constraints.real,
        "scale": constraints.positive,
    }
    support = constraints.real
    has_rsample = True

    def __init__(
        self, df: ArrayLike, loc: ArrayLike = 0.0, scale: ArrayLike = 1.0, *, validate_args=None
    ):
        batch_shape, (self.df, self.loc, self.scale) = _broadcast_params(df, loc, scale)
        super().__init__(batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        shape = _shape(sample_shape, self.df)
        key_z, key_g = jax.random.split(key)
        z = jax.random.normal(key_z, shape, self.df.dtype)
        # chi2(df) / df == Gamma(df / 2, rate=df / 2); jax.random.gamma has implicit gradients.
        half_df = 0.5 * self.df
        g = jax.random.gamma(key_g, half_df, shape, self.df.dtype) / half_df
        return self.loc + self.scale * z * lax.rsqrt(g)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        z = (value - self.loc) / self.scale
        half_df1 = 0.5 * (self.df + 1.0)
        return (
            gammaln(half_df1)
            - gammaln(0.5 * self.df)
            - 0.5 * jnp.log(self.df * jnp.pi)
            - jnp.log(self.scale)
            - half_df1 * jnp.log1p(z**2 / self.df)
        )

    def cdf(self, value: ArrayLike) -> jax.Array:
        z = (value - self.loc) / self.scale
        tail = 0.5 * betainc(0.5 * self.df, 0.5, self.df / (self.df + z**2))
        return jnp.where(z < 0, tail, 1.0 - tail)

    def icdf(self, q: ArrayLike) -> jax.Array:
        """Quantile, from the cdf's beta form: the two-sided tail ``w = 2 min(q, 1 - q) =
        I_u(df / 2, 1 / 2)`` with ``u = df / (df + z^2)``. ``q``: broadcasts with
        ``batch_shape``; 0 and 1 give ``-inf`` and ``inf``, ``q`` outside ``[0, 1]`` ``nan``.

        Differentiable in ``q``, ``loc``, ``scale`` and ``df`` (``betaincinv``'s shape
        derivatives).
        """
        q = jnp.asarray(q)
        half_df = 0.5 * self.df
        w = 2.0 * jnp.minimum(q, 1.0 - q)  # exact, as is 1 - w for w >= 1/2 (Sterbenz)
        tail = w <= 0.5
        # far tail: u = df / (df + z^2) from I_u(df / 2, 1 / 2) = w, z^2 = df (1 - u) / u
        u = betaincinv(half_df, 0.5, jnp.where(tail, w, 0.5))
        # centre: 1 - u from I_{1 - u}(1 / 2, df / 2) = 1 - w keeps z^2's digits when u ~ 1
        median = w == 1.0
        v = betaincinv(0.5, half_df, jnp.where(tail | median, 0.5, 1.0 - w))
        z2 = jnp.where(tail, self.df * (1.0 - u) / u, self.df * v / (1.0 - v))
        z = jnp.where(q < 0.5, -1.0, 1.0) * jnp.sqrt(jnp.where(median, 1.0, z2))
        # at the median itself z = 0, with derivative 1 / pdf(0) (sqrt would give inf * 0)
        log_pdf0 = gammaln(half_df + 0.5) - gammaln(half_df) - 0.5 * jnp.log(self.df * jnp.pi)
        z = jnp.where(median, (q - 0.5) * jnp.exp(-log_pdf0), z)
        return self.loc + self.scale * jnp.where(jnp.isnan(w) | (w < 0), jnp.nan, z)

    def entropy(self) -> jax.Array:
        half_df = 0.5 * self.df
        return (
            (half_df + 0.5) * (digamma(half_df + 0.5) - digamma(half_df))
            + 0.5 * jnp.log(self.df)
            + betaln(half_df, 0.5)
            + jnp.log(self.scale)
        )

    @property
    def mean(self) -> jax.Array:
        return jnp.where(self.df > 1, self.loc, jnp.inf)

    @property
    def variance(self) -> jax.Array:
        df = self.df
        var = jnp.where(df > 2, self.scale**2 * df / jnp.where(df > 2, df - 2.0, 1.0), jnp.inf)
        return jnp.where(df > 1, var, jnp.nan)


class Laplace(_LocScaleFamily):
    """Laplace (double exponential) distribution. ``loc``: median; ``scale``: > 0."""

    _std_sample = staticmethod(jax.random.laplace)
    _std_mean, _std_variance, _std_entropy = 0.0, 2.0, 1.0 + _LOG_2

    @staticmethod
    def _std_log_prob(z: jax.Array) -> jax.Array:
        return -_LOG_2 - jnp.abs(z)

    @staticmethod
    def _std_cdf(z: jax.Array) -> jax.Array:
        return 0.5 - 0.5 * jnp.sign(z) * jnp.expm1(-jnp.abs(z))

    @staticmethod
    def _std_icdf(q: ArrayLike) -> jax.Array:
        d = q - 0.5
        return -jnp.sign(d) * jnp.log1p(-2.0 * jnp.abs(d))


class Logistic(_LocScaleFamily):
    """Logistic distribution. ``loc``: mean and median; ``scale``: > 0."""

    _std_sample = staticmethod(jax.random.logistic)
    _std_cdf = staticmethod(expit)
    _std_icdf = staticmethod(logit)
    _std_mean, _std_variance, _std_entropy = 0.0, math.pi**2 / 3.0, 2.0

    @staticmethod
    def _std_log_prob(z: jax.Array) -> jax.Array:
        return -z - 2.0 * jax.nn.softplus(-z)


class Gumbel(_LocScaleFamily):
    """Gumbel (type-I extreme value, maximum) distribution. ``loc``: mode; ``scale``: > 0."""

    _std_sample = staticmethod(jax.random.gumbel)
    _std_mean, _std_variance, _std_entropy = _EULER_GAMMA, math.pi**2 / 6.0, _EULER_GAMMA + 1.0

    @staticmethod
    def _std_log_prob(z: jax.Array) -> jax.Array:
        return -(z + jnp.exp(-z))

    @staticmethod
    def _std_cdf(z: jax.Array) -> jax.Array:
        return jnp.exp(-jnp.exp(-z))

    @staticmethod
    def _std_icdf(q: ArrayLike) -> jax.Array:
        return -jnp.log(-jnp.log(q))


# ------------------------------------------------------------------------------------------
# distributions on the positive half-line
# ------------------------------------------------------------------------------------------
class HalfNormal(Distribution):
    """|X| for X ~ Normal(0, ``scale``); ``scale`` > 0."""

    arg_constraints = {"scale": constraints.positive}
    support = constraints.positive
    has_rsample = True

    def __init__(self, scale: ArrayLike = 1.0, *, validate_args=None):
        batch_shape, (self.scale,) = _broadcast_params(scale)
        super().__init__(batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        eps = jax.random.normal(key, _shape(sample_shape, self.scale), self.scale.dtype)
        return self.scale * jnp.abs(eps)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        z = value / self.scale
        lp = _LOG_2 - 0.5 * z**2 - _HALF_LOG_2PI - jnp.log(self.scale)
        return jnp.where(value >= 0, lp, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        value = jnp.maximum(value, 0.0)
        return 2.0 * ndtr(value / self.scale) - 1.0

    def icdf(self, q: ArrayLike) -> jax.Array:
        return self.scale * ndtri(0.5 * (q + 1.0))

    def entropy(self) -> jax.Array:
        return 0.5 * jnp.log(0.5 * jnp.pi * math.e) + jnp.log(self.scale)

    @property
    def mean(self) -> jax.Array:
        return self.scale * math.sqrt(2.0 / math.pi)

    @property
    def variance(self) -> jax.Array:
        return self.scale**2 * (1.0 - 2.0 / math.pi)


class HalfCauchy(Distribution):
    """|X| for X ~ Cauchy(0, ``scale``); ``scale`` > 0. Mean and variance are infinite."""

    arg_constraints = {"scale": constraints.positive}
    support = constraints.positive
    has_rsample = True

    def __init__(self, scale: ArrayLike = 1.0, *, validate_args=None):
        batch_shape, (self.scale,) = _broadcast_params(scale)
        super().__init__(batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        eps = jax.random.cauchy(key, _shape(sample_shape, self.scale), self.scale.dtype)
        return self.scale * jnp.abs(eps)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        z = value / self.scale
        lp = _LOG_2 - _LOG_PI - jnp.log(self.scale) - jnp.log1p(z**2)
        return jnp.where(value >= 0, lp, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        value = jnp.maximum(value, 0.0)
        return (2.0 / jnp.pi) * jnp.arctan(value / self.scale)

    def icdf(self, q: ArrayLike) -> jax.Array:
        return self.scale * jnp.tan(0.5 * jnp.pi * q)

    def entropy(self) -> jax.Array:
        return jnp.log(2 * jnp.pi * self.scale)

    @property
    def mean(self) -> jax.Array:
        return jnp.full_like(self.scale, jnp.inf)

    @property
    def variance(self) -> jax.Array:
        return jnp.full_like(self.scale, jnp.inf)


class HalfStudentT(Distribution):
    """|X| for X ~ StudentT(``df``, 0, ``scale``); ``df`` > 0, ``scale`` > 0.

    The mean is finite for ``df > 1`` (else ``inf``); the variance for ``df > 2`` (else ``inf``).
    """

    arg_constraints = {"df": constraints.positive, "scale": constraints.positive}
    support = constraints.positive
    has_rsample = True

    def __init__(self, df: ArrayLike, scale: ArrayLike = 1.0, *, validate_args=None):
        batch_shape, (self.df, self.scale) = _broadcast_params(df, scale)
        super().__init__(batch_shape, validate_args=validate_args)

    def _student(self) -> StudentT:
        return StudentT(self.df, 0.0, self.scale, validate_args=False)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        return jnp.abs(self._student().sample(key, sample_shape))

    def log_prob(self, value: ArrayLike) -> jax.Array:
        lp = _LOG_2 + self._student().log_prob(value)
        return jnp.where(value >= 0, lp, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        return 2.0 * self._student().cdf(jnp.maximum(value, 0.0)) - 1.0

    @property
    def mean(self) -> jax.Array:
        df = self.df
        safe_df = jnp.where(df > 1, df, 2.0)
        log_m = (
            0.5 * jnp.log(safe_df / jnp.pi)
            + gammaln(0.5 * (safe_df + 1))
            - gammaln(0.5 * safe_df)
            - jnp.log(safe_df - 1)
        )
        return jnp.where(df > 1, 2.0 * self.scale * jnp.exp(log_m), jnp.inf)

    @property
    def variance(self) -> jax.Array:
        df = self.df
        second = self.scale**2 * df / jnp.where(df > 2, df - 2.0, 1.0)
        return jnp.where(df > 2, second - self.mean**2, jnp.inf)


class LogNormal(Distribution):
    """exp(X) for X ~ Normal(``loc``, ``scale``); ``scale`` > 0."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.positive
    has_rsample = True

    def __init__(self, loc: ArrayLike = 0.0, scale: ArrayLike = 1.0, *, validate_args=None):
        batch_shape, (self.loc, self.scale) = _broadcast_params(loc, scale)
        super().__init__(batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        eps = jax.random.normal(key, _shape(sample_shape, self.loc), self.loc.dtype)
        return jnp.exp(self.loc + self.scale * eps)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        ok = value > 0
        log_x = jnp.log(jnp.where(ok, value, 1.0))
        z = (log_x - self.loc) / self.scale
        lp = -0.5 * z**2 - _HALF_LOG_2PI - jnp.log(self.scale) - log_x
        return jnp.where(ok, lp, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        ok = value > 0
        log_x = jnp.log(jnp.where(ok, value, 1.0))
        return jnp.where(ok, ndtr((log_x - self.loc) / self.scale), 0.0)

    def icdf(self, q: ArrayLike) -> jax.Array:
        return jnp.exp(self.loc + self.scale * ndtri(q))

    def entropy(self) -> jax.Array:
        return self.loc + 0.5 + _HALF_LOG_2PI + jnp.log(self.scale)

    @property
    def mean(self) -> jax.Array:
        return jnp.exp(self.loc + 0.5 * self.scale**2)

    @property
    def variance(self) -> jax.Array:
        s2 = self.scale**2
        return jnp.expm1(s2) * jnp.exp(2.0 * self.loc + s2)


class Exponential(Distribution):
    """Exponential distribution with ``rate`` (> 0); mean ``1 / rate``."""

    arg_constraints = {"rate": constraints.positive}
    support = constraints.positive
    has_rsample = True

    def __init__(self, rate: ArrayLike = 1.0, *, validate_args=None):
        batch_shape, (self.rate,) = _broadcast_params(rate)
        super().__init__(batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        eps = jax.random.exponential(key, _shape(sample_shape, self.rate), self.rate.dtype)
        return eps / self.rate

    def log_prob(self, value: ArrayLike) -> jax.Array:
        lp = jnp.log(self.rate) - self.rate * value
        return jnp.where(value >= 0, lp, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        return -jnp.expm1(-self.rate * jnp.maximum(value, 0.0))

    def icdf(self, q: ArrayLike) -> jax.Array:
        return -jnp.log1p(-q) / self.rate

    def entropy(self) -> jax.Array:
        return 1.0 - jnp.log(self.rate)

    @property
    def mean(self) -> jax.Array:
        return 1.0 / self.rate

    @property
    def variance(self) -> jax.Array:
        return self.rate**-2


class Gamma(Distribution):
    """Gamma distribution with shape ``concentration`` (> 0) and ``rate`` (> 0).

    Density ∝ x^(concentration - 1) exp(-rate x); mean ``concentration / rate``.
    """

    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.positive
    has_rsample = True

    def __init__(self, concentration: ArrayLike, rate: ArrayLike = 1.0, *, validate_args=None):
        batch_shape, (self.concentration, self.rate) = _broadcast_params(concentration, rate)
        super().__init__(batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        conc = self.concentration
        g = jax.random.gamma(key, conc, _shape(sample_shape, conc), conc.dtype)
        # draws with a small concentration can underflow to 0, outside the open support
        return jnp.maximum(g, _tiny(conc.dtype)) / self.rate

    def log_prob(self, value: ArrayLike) -> jax.Array:
        conc, rate = self.concentration, self.rate
        ok = value >= 0
        x = jnp.where(ok, value, 1.0)
        lp = xlogy(conc, rate) + xlogy(conc - 1.0, x) - rate * x - gammaln(conc)
        return jnp.where(ok, lp, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        return gammainc(self.concentration, self.rate * jnp.maximum(value, 0.0))

    def icdf(self, q: ArrayLike) -> jax.Array:
        """Quantile ``gammaincinv(concentration, q) / rate``; ``q`` broadcasts with
        ``batch_shape``, 0 and 1 give 0 and ``inf``, ``q`` outside ``[0, 1]`` ``nan``.
        Differentiable in ``q`` and both parameters."""
        return gammaincinv(self.concentration, q) / self.rate

    def entropy(self) -> jax.Array:
        conc = self.concentration
        return conc - jnp.log(self.rate) + gammaln(conc) + (1.0 - conc) * digamma(conc)

    @property
    def mean(self) -> jax.Array:
        return self.concentration / self.rate

    @property
    def variance(self) -> jax.Array:
        return self.concentration / self.rate**2


class Chi2(Gamma):
    """Chi-squared distribution with ``df`` (> 0) degrees of freedom: Gamma(df / 2, rate=1/2).

    ``concentration`` and ``rate`` are available as derived (read-only) attributes.
    """

    arg_constraints = {"df": constraints.positive}

    def __init__(self, df: ArrayLike, *, validate_args=None):
        batch_shape, (self.df,) = _broadcast_params(df)
        Distribution.__init__(self, batch_shape, validate_args=validate_args)

    @property
    def concentration(self) -> jax.Array:  # type: ignore[override]
        return 0.5 * self.df

    @property
    def rate(self) -> jax.Array:  # type: ignore[override]
        return jnp.full_like(self.df, 0.5)


class InverseGamma(Distribution):
    """1 / X for X ~ Gamma(``concentration``, ``rate``); both > 0.

    Density ∝ x^(-concentration - 1) exp(-rate / x) (``rate`` is the scale of the inverse
    gamma). The mean is finite for ``concentration > 1``, the variance for
    ``concentration > 2`` (else ``inf``).
    """

    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.positive
    has_rsample = True

    def __init__(self, concentration: ArrayLike, rate: ArrayLike = 1.0, *, validate_args=None):
        batch_shape, (self.concentration, self.rate) = _broadcast_params(concentration, rate)
        super().__init__(batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        conc = self.concentration
        g = jax.random.gamma(key, conc, _shape(sample_shape, conc), conc.dtype)
        return self.rate / jnp.maximum(g, _tiny(conc.dtype))

    def log_prob(self, value: ArrayLike) -> jax.Array:
        conc, rate = self.concentration, self.rate
        ok = value > 0
        x = jnp.where(ok, value, 1.0)
        lp = conc * jnp.log(rate) - gammaln(conc) - (conc + 1.0) * jnp.log(x) - rate / x
        return jnp.where(ok, lp, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        ok = value > 0
        x = jnp.where(ok, value, 1.0)
        return jnp.where(ok, gammaincc(self.concentration, self.rate / x), 0.0)

    def icdf(self, q: ArrayLike) -> jax.Array:
        """Quantile ``rate / y`` with ``y`` the upper ``q`` quantile of ``Gamma(
        concentration, 1)`` (``gammaincc(concentration, y) = q``, solved directly so small
        ``q`` keeps its digits); 0 and 1 give 0 and ``inf``, ``q`` outside ``[0, 1]``
        ``nan``. Differentiable in ``q`` and both parameters."""
        return self.rate / gammainccinv(self.concentration, q)

    def entropy(self) -> jax.Array:
        conc = self.concentration
        return conc + jnp.log(self.rate) + gammaln(conc) - (1.0 + conc) * digamma(conc)

    @property
    def mean(self) -> jax.Array:
        conc = self.concentration
        return jnp.where(conc > 1, self.rate / jnp.where(conc > 1, conc - 1.0, 1.0), jnp.inf)

    @property
    def variance(self) -> jax.Array:
        conc = self.concentration
        c1 = jnp.where(conc > 2, conc - 1.0, 2.0)
        return jnp.where(conc > 2, self.rate**2 / (c1**2 * (c1 - 1.0)), jnp.inf)


class Weibull(Distribution):
    """Weibull distribution with ``scale`` (> 0) and shape ``concentration`` (> 0).

    cdf(x) = 1 - exp(-(x / scale) ** concentration) for x >= 0.
    """

    arg_constraints = {"scale": constraints.positive, "concentration": constraints.positive}
    support = constraints.positive
    has_rsample = True

    def __init__(self, scale: ArrayLike, concentration: ArrayLike, *, validate_args=None):
        batch_shape, (self.scale, self.concentration) = _broadcast_params(scale, concentration)
        super().__init__(batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        dtype = self.scale.dtype
        e = jax.random.exponential(key, _shape(sample_shape, self.scale), dtype)
        # e == 0 (probability 2^-24 per draw) would give a nan gradient in concentration
        return self.scale * jnp.maximum(e, _tiny(dtype)) ** (1.0 / self.concentration)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        k = self.concentration
        ok = value >= 0
        z = jnp.where(ok, value, 1.0) / self.scale
        lp = jnp.log(k) - jnp.log(self.scale) + xlogy(k - 1.0, z) - z**k
        return jnp.where(ok, lp, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        z = jnp.maximum(value, 0.0) / self.scale
        return -jnp.expm1(-(z**self.concentration))

    def icdf(self, q: ArrayLike) -> jax.Array:
        return self.scale * (-jnp.log1p(-q)) ** (1.0 / self.concentration)

    def entropy(self) -> jax.Array:
        k = self.concentration
        return _EULER_GAMMA * (1.0 - 1.0 / k) + jnp.log(self.scale / k) + 1.0

    @property
    def mean(self) -> jax.Array:
        return self.scale * jnp.exp(gammaln(1.0 + 1.0 / self.concentration))

    @property
    def variance(self) -> jax.Array:
        k = self.concentration
        g1 = jnp.exp(gammaln(1.0 + 1.0 / k))
        g2 = jnp.exp(gammaln(1.0 + 2.0 / k))
        return self.scale**2 * (g2 - g1**2)


# ------------------------------------------------------------------------------------------
# bounded supports
# ------------------------------------------------------------------------------------------
class Beta(Distribution):
    """Beta distribution on [0, 1]; density ∝ x^(concentration1 - 1) (1 - x)^(concentration0 - 1).

    ``concentration1`` (a, > 0) weighs towards 1, ``concentration0`` (b, > 0) towards 0.
    """

    arg_constraints = {
        "concentration1": constraints.positive,
        "concentration0": constraints.positive,
    }
    support = constraints.unit_interval
    has_rsample = True

    def __init__(self, concentration1: ArrayLike, concentration0: ArrayLike, *, validate_args=None):
        batch_shape, (self.concentration1, self.concentration0) = _broadcast_params(
            concentration1, concentration0
        )
        super().__init__(batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        a, b = self.concentration1, self.concentration0
        x = jax.random.beta(key, a, b, _shape(sample_shape, a), a.dtype)
        return clamp_probs(x)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        a, b = self.concentration1, self.concentration0
        ok = (value >= 0) & (value <= 1)
        x = jnp.where(ok, value, 0.5)
        lp = xlogy(a - 1.0, x) + xlog1py(b - 1.0, -x) - betaln(a, b)
        return jnp.where(ok, lp, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        return betainc(self.concentration1, self.concentration0, jnp.clip(value, 0.0, 1.0))

    def icdf(self, q: ArrayLike) -> jax.Array:
        """Quantile ``betaincinv(concentration1, concentration0, q)``; ``q`` broadcasts
        with ``batch_shape``, 0 and 1 give 0 and 1, ``q`` outside ``[0, 1]`` ``nan``.

        Differentiable in ``q`` and in the concentrations (``betaincinv``'s shape
        derivatives).
        """
        return betaincinv(self.concentration1, self.concentration0, q)

    def entropy(self) -> jax.Array:
        a, b = self.concentration1, self.concentration0
        return (
            betaln(a, b)
            - (a - 1.0) * digamma(a)
            - (b - 1.0) * digamma(b)
            + (a + b - 2.0) * digamma(a + b)
        )

    @property
    def mean(self) -> jax.Array:
        return self.concentration1 / (self.concentration1 + self.concentration0)

    @property
    def variance(self) -> jax.Array:
        a, b = self.concentration1, self.concentration0
        total = a + b
        return a * b / (total**2 * (total + 1.0))


class Uniform(Distribution):
    """Continuous uniform distribution on [``low``, ``high``] (``low < high``)."""

    arg_constraints = {"low": constraints.dependent, "high": constraints.dependent}
    has_rsample = True

    def __init__(self, low: ArrayLike = 0.0, high: ArrayLike = 1.0, *, validate_args=None):
        batch_shape, (self.low, self.high) = _broadcast_params(low, high)
        super().__init__(batch_shape, validate_args=validate_args)

    def _check_args(self) -> None:
        super()._check_args()
        _check_ordered(self, "low", "high")

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.interval(self.low, self.high)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        u = jax.random.uniform(key, _shape(sample_shape, self.low), self.low.dtype)
        return self.low + (self.high - self.low) * u

    def log_prob(self, value: ArrayLike) -> jax.Array:
        ok = (value >= self.low) & (value <= self.high)
        return jnp.where(ok, -jnp.log(self.high - self.low), -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        return jnp.clip((value - self.low) / (self.high - self.low), 0.0, 1.0)

    def icdf(self, q: ArrayLike) -> jax.Array:
        return self.low + (self.high - self.low) * q

    def entropy(self) -> jax.Array:
        return jnp.log(self.high - self.low)

    @property
    def mean(self) -> jax.Array:
        return 0.5 * (self.low + self.high)

    @property
    def variance(self) -> jax.Array:
        return (self.high - self.low) ** 2 / 12.0


# -- truncated normal -------------------------------------------------------------------------
def _log_phi(x: jax.Array) -> jax.Array:
    """Log of the standard normal density."""
    return -0.5 * x**2 - _HALF_LOG_2PI


def _log_diff_ndtr(lo: jax.Array, hi: jax.Array) -> jax.Array:
    """``log(Phi(hi) - Phi(lo))`` for ``lo <= hi``, evaluated in whichever tail keeps it exact."""
    flip = lo + hi > 0  # nan (for -inf + inf) compares False: no flip needed then
    a = jnp.where(flip, -hi, lo)
    b = jnp.where(flip, -lo, hi)
    lb = log_ndtr(b)
    return lb + _log1mexp(log_ndtr(a) - lb)


def _log_ndtri(log_p: jax.Array) -> jax.Array:
    """Inverse of ``log_ndtr`` for ``log_p <= log(1/2)`` (the lower half), deep tails included.

    A starting point (``ndtri`` where ``exp(log_p)`` is representable, else the leading tail
    asymptotics) is refined by Newton steps on ``log_ndtr`` (concave, so they are safe). The last
    step is taken with the start point held constant, which gives the exact implicit gradient
    ``d x / d log_p = Phi(x) / phi(x)``.
    """
    dtype = log_p.dtype
    log_p = jnp.maximum(log_p, jnp.asarray(-1e30, dtype))
    cut = -80.0 if jnp.finfo(dtype).bits <= 32 else -700.0
    lp0 = lax.stop_gradient(log_p)
    direct = lp0 > cut
    x_direct = ndtri(jnp.exp(jnp.where(direct, lp0, -1.0)))
    t = -2.0 * jnp.where(direct, cut, lp0)
    x_asym = -jnp.sqrt(t - jnp.log(t) - _LOG_2PI)
    x = jnp.where(direct, x_direct, x_asym)

    def newton(x, target):
        lx = log_ndtr(x)
        return x - (lx - target) * jnp.exp(lx - _log_phi(x))

    for _ in range(2):
        x = newton(x, lp0)
    return newton(lax.stop_gradient(x), log_p)


def _standardize_bound(bound: jax.Array, loc: jax.Array, scale: jax.Array) -> jax.Array:
    """``(bound - loc) / scale``, keeping infinite bounds infinite with zero (not nan) gradients."""
    finite = jnp.isfinite(bound)
    return jnp.where(finite, (jnp.where(finite, bound, 0.0) - loc) / scale, bound)


def _tn_std_bounds(loc, scale, low, high):
    """Standardized bounds, reflected (``flip``) so that the interval's centre is <= 0.

    Returns ``(a, b, flip, log_z, log_phi_a)`` with ``a <= b``, ``a + b <= 0``,
    ``log_z = log(Phi(b) - Phi(a))`` the log normalizer and ``log_phi_a = log Phi(a)``.
    """
    a0 = _standardize_bound(low, loc, scale)
    b0 = _standardize_bound(high, loc, scale)
    flip = a0 + b0 > 0
    a = jnp.where(flip, -b0, a0)
    b = jnp.where(flip, -a0, b0)
    la = log_ndtr(a)
    lb = log_ndtr(b)
    log_z = lb + _log1mexp(la - lb)
    return a, b, flip, log_z, la


@jax.jit
def _tn_icdf_std(loc, scale, low, high, u_lo, u_hi):
    """Standardized quantile of the truncated normal at cdf level ``u_lo``.

    ``u_hi = 1 - u_lo`` is passed separately so that neither loses precision. Jitted because it
    is a long chain of small ops (it is inlined when called under an outer ``jit``).
    """
    a, b, flip, log_z, la = _tn_std_bounds(loc, scale, low, high)
    # in the reflected frame the level is 1 - u
    v_lo = jnp.where(flip, u_hi, u_lo)
    v_hi = jnp.where(flip, u_lo, u_hi)
    # log Phi(y) and log(1 - Phi(y)) at the quantile y, each as a sum of positive terms
    log_lower = jnp.logaddexp(la, jnp.log(v_lo) + log_z)
    log_upper = jnp.logaddexp(log_ndtr(-b), jnp.log(v_hi) + log_z)
    # exp(log_lower) + exp(log_upper) == 1, so the smaller one is <= 1/2
    z = _log_ndtri(jnp.minimum(log_lower, log_upper))
    y = jnp.clip(jnp.where(log_lower <= log_upper, z, -z), a, b)
    return jnp.where(flip, -y, y)


def _is_bound(bound: ArrayLike | None, open_value: float) -> bool:
    """False for ``None`` or a concrete bound equal to ``open_value`` (+-inf) everywhere."""
    if bound is None:
        return False
    if is_concrete(bound):
        with jax.ensure_compile_time_eval():  # a constant even while an outer jit traces
            return not bool(jnp.all(jnp.asarray(bound) == open_value))
    return True


class TruncatedNormal(Distribution):
    """Normal(``loc``, ``scale``) restricted to [``low``, ``high``] and renormalized.

    ``low=None`` / ``high=None`` mean no bound on that side (stored as ``-inf`` / ``inf``).
    ``loc``, ``scale`` (> 0), ``low`` and ``high`` broadcast together to ``batch_shape``.
    The support is, as in NumPyro, ``interval(low, high)``, ``greater_than(low)`` (``low``
    only), ``less_than(high)`` (``high`` only) or ``real`` (neither); a bound given as a
    concrete ``-inf`` / ``inf`` everywhere counts as no bound.
    Sampling is by inverse cdf, evaluated in log space on the tail nearer the interval, so it
    stays accurate (and reparameterized) even when the interval lies far out in a tail;
    ``cdf``, ``mean`` and ``variance`` stay accurate there too. ``entropy`` uses the closed
    form, which loses absolute accuracy of order ``eps * a^2`` for a bound ``a`` standard
    deviations out.
    """

    arg_constraints = {
        "loc": constraints.real,
        "scale": constraints.positive,
        "low": constraints.dependent,
        "high": constraints.dependent,
    }
    has_rsample = True

    def __init__(
        self,
        loc: ArrayLike = 0.0,
        scale: ArrayLike = 1.0,
        low: ArrayLike | None = None,
        high: ArrayLike | None = None,
        *,
        validate_args=None,
    ):
        # Which sides are bounded decides the support's type, so it must be static: a side is
        # open when its bound is None or (concretely) -inf / +inf everywhere.
        self._low_bounded = _is_bound(low, -jnp.inf)
        self._high_bounded = _is_bound(high, jnp.inf)
        low = -jnp.inf if low is None else low
        high = jnp.inf if high is None else high
        batch_shape, (self.loc, self.scale, self.low, self.high) = _broadcast_params(
            loc, scale, low, high
        )
        super().__init__(batch_shape, validate_args=validate_args)

    def _check_args(self) -> None:
        super()._check_args()
        _check_ordered(self, "low", "high")

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        # As NumPyro's Left/RightTruncatedDistribution: a one-sided support is a half-line, so
        # biject_to gives a finite bijection (an interval with an infinite end would not).
        if self._low_bounded and self._high_bounded:
            return constraints.interval(self.low, self.high)
        if self._low_bounded:
            return constraints.greater_than(self.low)
        if self._high_bounded:
            return constraints.less_than(self.high)
        return constraints.real

    def _std_bounds(self):
        return _tn_std_bounds(self.loc, self.scale, self.low, self.high)

    def _to_value(self, x_std: jax.Array) -> jax.Array:
        return jnp.clip(self.loc + self.scale * x_std, self.low, self.high)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        dtype = self.loc.dtype
        u = jax.random.uniform(key, _shape(sample_shape, self.loc), dtype, minval=_tiny(dtype))
        return self._to_value(_tn_icdf_std(self.loc, self.scale, self.low, self.high, u, 1.0 - u))

    def icdf(self, q: ArrayLike) -> jax.Array:
        q = jnp.asarray(q, self.loc.dtype)
        x = self._to_value(_tn_icdf_std(self.loc, self.scale, self.low, self.high, q, 1.0 - q))
        return jnp.where(q <= 0, self.low, jnp.where(q >= 1, self.high, x))

    def log_prob(self, value: ArrayLike) -> jax.Array:
        *_, log_z, _ = self._std_bounds()
        z = (value - self.loc) / self.scale
        lp = _log_phi(z) - jnp.log(self.scale) - log_z
        return jnp.where((value >= self.low) & (value <= self.high), lp, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        a, b, flip, log_z, _ = self._std_bounds()
        z = (value - self.loc) / self.scale
        y = jnp.clip(jnp.where(flip, -z, z), a, b)
        # In the reflected frame the cdf is the upper part (Phi(b) - Phi(y)) / Z: computing it
        # directly (not as 1 - lower part) keeps small cdf values accurate.
        lower = jnp.exp(_log_diff_ndtr(a, y) - log_z)
        upper = jnp.exp(_log_diff_ndtr(y, b) - log_z)
        return jnp.clip(jnp.where(flip, upper, lower), 0.0, 1.0)

    def _moments_std(self):
        """``(a phi(a) - b phi(b)) / Z`` and ``log Z`` in the reflected frame (for entropy)."""
        a, b, flip, log_z, _ = self._std_bounds()
        pa = jnp.exp(_log_phi(a) - log_z)
        pb = jnp.exp(_log_phi(b) - log_z)
        a_fin = jnp.where(jnp.isfinite(a), a, 0.0)
        b_fin = jnp.where(jnp.isfinite(b), b, 0.0)
        return a_fin * pa - b_fin * pb, log_z

    def entropy(self) -> jax.Array:
        t, log_z = self._moments_std()
        return 0.5 * (_LOG_2PI + 1.0) + jnp.log(self.scale) + log_z + 0.5 * t

    def _mean_var_std(self):
        """Standardized mean and variance, with ``flip``; see :func:`_tn_mean_var_std`."""
        a, b, flip, _, _ = self._std_bounds()
        m, v = _tn_mean_var_std(a, b)
        return m, v, flip

    @property
    def mean(self) -> jax.Array:
        m, _, flip = self._mean_var_std()
        return self.loc + self.scale * jnp.where(flip, -m, m)

    @property
    def variance(self) -> jax.Array:
        _, v, _ = self._mean_var_std()
        return self.scale**2 * v


# The continued fraction is used below -_TN_CF_SWITCH, where 60 terms give full float64
# accuracy (about 4e-16 relative at the switch, better further out).
_TN_CF_SWITCH = 3.0
_TN_CF_TERMS = 60


def _tn_tail_gh(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``g(x) = x + phi(x) / Phi(x)`` and ``h(x) = 1 + x g(x)``, accurate for very negative x.

    For ``x = -u`` with large ``u`` both are small differences of large numbers (``phi / Phi``
    is close to ``u``), so there they come from Laplace's continued fraction for the Mills
    ratio ``Phi(-u) / phi(u) = 1 / (u + F_1)``, ``F_k = k / (u + F_{k+1})``: ``g = F_1`` and
    ``h = F_1 F_2``. ``x = -inf`` gives ``g = h = 0``.
    """
    direct_x = jnp.maximum(x, -_TN_CF_SWITCH)
    g_direct = direct_x + jnp.exp(_log_phi(direct_x) - log_ndtr(direct_x))
    h_direct = 1.0 + direct_x * g_direct
    u = jnp.maximum(-x, _TN_CF_SWITCH)
    f = jnp.zeros_like(u)
    for k in range(_TN_CF_TERMS, 1, -1):
        f = k / (u + f)
    g_cf = 1.0 / (u + f)
    h_cf = f * g_cf
    tail = x < -_TN_CF_SWITCH
    return jnp.where(tail, g_cf, g_direct), jnp.where(tail, h_cf, h_direct)


def _tn_mean_var_std(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and variance of the standard normal truncated to ``[a, b]`` with ``a + b <= 0``.

    Computed about the upper bound ``b``, near which the mass lies when the interval is far in
    the lower tail, so that no large terms cancel: with ``q = Phi(a) / Phi(b)``, ``W = b - a``,
    ``E[X - b] = (q (g_a + W) - g_b) / (1 - q)`` and
    ``E[(X - b)^2] = (h_b - q (h_a + 2 W g_a + W^2)) / (1 - q)`` (``g``, ``h`` from
    :func:`_tn_tail_gh`). The closed forms ``(phi(a) - phi(b)) / Z`` and
    ``1 + (a phi(a) - b phi(b)) / Z - mean^2`` lose all digits there (e.g. ``a = 8`` one-sided).
    """
    # b = +inf only for the untruncated normal (the reflection makes a = -inf then)
    finite_b = jnp.isfinite(b)
    b = jnp.where(finite_b, b, 0.0)
    finite_a = jnp.isfinite(a)
    a_fin = jnp.where(finite_a, a, b - 1.0)
    log_q = jnp.where(finite_a, log_ndtr(a_fin) - log_ndtr(b), -jnp.inf)
    q = jnp.exp(log_q)
    one_minus_q = -jnp.expm1(log_q)
    w = jnp.where(finite_a, b - a_fin, 0.0)
    g_a, h_a = _tn_tail_gh(a_fin)
    g_b, h_b = _tn_tail_gh(b)
    d = (q * (g_a + w) - g_b) / one_minus_q  # E[X - b] <= 0
    second = (h_b - q * (h_a + 2.0 * w * g_a + w * w)) / one_minus_q
    mean = jnp.where(finite_b, b + d, 0.0)
    return mean, jnp.where(finite_b, jnp.maximum(second - d * d, 0.0), 1.0)


# -- von Mises: the sampler is jppl.distributions.util.von_mises_centered ------------------
class VonMises(Distribution):
    """Von Mises distribution on the circle [-pi, pi].

    ``loc``: mean direction; ``concentration`` (> 0): like an inverse variance (0 is uniform).
    ``mean`` is ``loc``; ``variance`` is the circular variance ``1 - I1(k) / I0(k)``. Samples
    are not reparameterized in ``concentration``.
    """

    arg_constraints = {"loc": constraints.real, "concentration": constraints.positive}
    support = constraints.circular
    has_rsample = False

    def __init__(self, loc: ArrayLike, concentration: ArrayLike, *, validate_args=None):
        batch_shape, (self.loc, self.concentration) = _broadcast_params(loc, concentration)
        super().__init__(batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        dtype = self.loc.dtype
        shape = _shape(sample_shape, self.loc)
        theta = _von_mises_centered(
            key, lax.stop_gradient(self.concentration), shape, jnp.dtype(dtype)
        )
        pi = jnp.asarray(jnp.pi, dtype)
        x = jnp.remainder(self.loc + theta + pi, 2.0 * pi) - pi
        return jnp.clip(x, -pi, pi)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        k = self.concentration
        # log I0(k) = log(i0e(k)) + k, and cos(d) - 1 = -2 sin(d / 2)^2 (exact for small d)
        return -2.0 * k * jnp.sin(0.5 * (value - self.loc)) ** 2 - _LOG_2PI - jnp.log(i0e(k))

    @property
    def mean(self) -> jax.Array:
        return self.loc

    @property
    def variance(self) -> jax.Array:
        k = self.concentration
        return jnp.maximum(1.0 - i1e(k) / i0e(k), 0.0)
