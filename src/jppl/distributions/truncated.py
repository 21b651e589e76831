"""Truncated, censored and folded distributions, with NumPyro's names and parameterizations.

* ``LeftTruncatedDistribution(base_dist, low=0.)``, ``RightTruncatedDistribution(base_dist,
  high=0.)``, ``TwoSidedTruncatedDistribution(base_dist, low=0., high=1.)`` restrict a
  univariate base on the real line that is symmetric about its ``loc`` (``Normal``, ``Cauchy``,
  ``Laplace``, ``Logistic``, ``StudentT``) to ``[low, high]`` and renormalize it;
  ``TruncatedDistribution(base_dist, low=None, high=None)`` picks one of them (and the Gamma
  classes for a ``Gamma`` base); ``TruncatedCauchy(loc, scale, *, low, high)`` is a shortcut.
* ``LeftTruncatedGamma``, ``RightTruncatedGamma``, ``TwoSidedTruncatedGamma`` and the factory
  ``TruncatedGamma(concentration, rate, *, low, high)`` do the same for ``Gamma``.
* ``FoldedDistribution(base_dist)`` is ``|X|``.
* ``LeftCensoredDistribution(base_dist, censored)``, ``RightCensoredDistribution(base_dist,
  censored)`` and ``IntervalCensoredDistribution(base_dist, left_censored, right_censored)``
  give the censored-data likelihood of survival analysis.
* ``LowerTruncatedPowerLaw(alpha, low)``, ``DoublyTruncatedPowerLaw(alpha, low, high)`` and
  ``TruncatedPolyaGamma(batch_shape)``.

Shapes: the batch shape is the broadcast of the base's batch shape with the bounds / censoring
indicators; every method returns ``sample_shape + batch_shape`` (``IntervalCensored`` values
carry a trailing ``(lower, upper)`` event dim of size 2). The base distribution is stored with
its parameters broadcast to that batch shape, so these distributions ``vmap`` like any other.
Invalid bounds or an unsupported base raise an error naming the argument, where NumPyro would
return ``nan`` or a wrong density.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import gammainc, gammaincc, log_ndtr, logsumexp
from jax.typing import ArrayLike

from jppl.distributions import constraints
from jppl.distributions.continuous import (
    Cauchy,
    Exponential,
    Gamma,
    Laplace,
    Logistic,
    LogNormal,
    Normal,
    StudentT,
    TruncatedNormal,
    Weibull,
    _as_float,
    _log1mexp,
)
from jppl.distributions.distribution import Distribution
from jppl.distributions.util import is_concrete, lazy_broadcast_shape, validate_sample_shape

__all__ = [
    "DoublyTruncatedPowerLaw",
    "FoldedDistribution",
    "IntervalCensoredDistribution",
    "LeftCensoredDistribution",
    "LeftTruncatedDistribution",
    "LeftTruncatedGamma",
    "LowerTruncatedPowerLaw",
    "RightCensoredDistribution",
    "RightTruncatedDistribution",
    "RightTruncatedGamma",
    "TruncatedCauchy",
    "TruncatedDistribution",
    "TruncatedGamma",
    "TruncatedPolyaGamma",
    "TwoSidedTruncatedDistribution",
    "TwoSidedTruncatedGamma",
]

# Bases that are symmetric about ``loc``: a bound above ``loc`` is handled by reflecting
# about ``loc``, so the probabilities involved are lower-tail ones, which keep their digits.
_SYMMETRIC_BASES = (Normal, Cauchy, Laplace, Logistic, StudentT)


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def _tiny(dtype) -> float:
    return float(jnp.finfo(dtype).tiny)


def _float_dtype(*xs) -> jnp.dtype:
    return jnp.result_type(*[jnp.asarray(x) for x in xs], float)


def _broadcast_base(base: Distribution, batch_shape: tuple[int, ...]) -> Distribution:
    """``base`` with each batch-aligned parameter broadcast to ``batch_shape``.

    Leaves whose shape does not start with the base's batch shape are left alone; if the
    result does not have ``batch_shape`` the base is returned unchanged (callers broadcast
    their outputs instead).
    """
    if base.batch_shape == batch_shape:
        return base
    nb = len(base.batch_shape)

    def bcast(leaf):
        shape = jnp.shape(leaf)
        if len(shape) >= nb and tuple(shape[:nb]) == base.batch_shape:
            return jnp.broadcast_to(leaf, batch_shape + tuple(shape[nb:]))
        return leaf

    out = jax.tree.map(bcast, base)
    return out if out.batch_shape == batch_shape else base


def _require_univariate(cls_name: str, base_dist) -> None:
    if not isinstance(base_dist, Distribution):
        raise TypeError(
            f"{cls_name}: `base_dist` must be a jppl Distribution, got {type(base_dist).__name__}."
        )
    if base_dist.event_shape != ():
        raise ValueError(
            f"{cls_name}: `base_dist` must be univariate (event_shape ()), got event_shape "
            f"{base_dist.event_shape}."
        )


def _has_method(d: Distribution, name: str) -> bool:
    return getattr(type(d), name) is not getattr(Distribution, name)


def _concrete_all(pred, *xs) -> bool | None:
    """``all(pred(*xs))`` for concrete inputs, ``None`` if any is traced."""
    if not all(is_concrete(x) for x in xs):
        return None
    with jax.ensure_compile_time_eval():
        return bool(np.all(np.asarray(pred(*[jnp.asarray(x) for x in xs]))))


def _bisection_steps(dtype) -> int:
    """Halvings that shrink a log-space bracket of width ~1500 below the dtype's eps."""
    return int(jnp.finfo(dtype).nmant) + 12


def _invert_monotone(
    cdf_fn: Callable, log_pdf_fn: Callable, q, t_lo, t_hi, to_x: Callable, steps: int
):
    """The ``x`` with ``cdf_fn(x) == q``, by bisection over ``t`` in ``[t_lo, t_hi]``.

    ``x = to_x(t)`` is increasing. Bisection only compares, so it carries no derivative; one
    Newton step from the detached root, ``x - (F(x) - q) / f(x)``, leaves the value in place
    and gives the implicit-function derivative ``dx = (dq - dF) / f`` (so samples built on it
    are reparameterized).
    """

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        right = cdf_fn(to_x(mid)) < q
        return jnp.where(right, mid, lo), jnp.where(right, hi, mid)

    lo, hi = lax.fori_loop(0, steps, body, (t_lo, t_hi))
    x0 = lax.stop_gradient(to_x(0.5 * (lo + hi)))
    pdf = jnp.exp(log_pdf_fn(x0))
    ok = pdf > 0
    return x0 - jnp.where(ok, (cdf_fn(x0) - q) / jnp.where(ok, pdf, 1.0), 0.0)


def _base_cdf(base: Distribution, x):
    """``base.cdf(x)``; for Laplace the lower tail is taken as ``exp(z) / 2`` directly
    (``Laplace.cdf`` forms it as ``1/2 - 1/2 (1 - exp(z))`` and loses its relative digits)."""
    if isinstance(base, Laplace):
        z = (x - base.loc) / base.scale
        return jnp.where(
            z < 0, 0.5 * jnp.exp(jnp.minimum(z, 0.0)), 1.0 - 0.5 * jnp.exp(-jnp.abs(z))
        )
    return base.cdf(x)


def _base_icdf(base: Distribution, u):
    """``base.icdf(u)``; StudentT (which has no closed-form inverse here) by bisection, and
    Laplace from the tail of ``u`` (keeping small levels' digits)."""
    if isinstance(base, Laplace):
        lower = u < 0.5
        z = jnp.where(
            lower,
            jnp.log(2.0 * jnp.where(lower, u, 0.25)),
            -jnp.log(2.0 * (1.0 - jnp.where(lower, 0.75, u))),
        )
        return base.loc + base.scale * z
    if isinstance(base, StudentT):
        dtype = _float_dtype(u, base.loc)
        shape = lazy_broadcast_shape(jnp.shape(u), base.batch_shape)
        half_pi = jnp.full(shape, 0.5 * math.pi, dtype)
        # bisect over the angle t, x = loc + scale * tan(t): a finite bracket for any quantile
        x = _invert_monotone(
            base.cdf,
            base.log_prob,
            u,
            -half_pi,
            half_pi,
            lambda t: base.loc + base.scale * jnp.tan(t),
            _bisection_steps(dtype),
        )
        return jnp.where(u <= 0, -jnp.inf, jnp.where(u >= 1, jnp.inf, x))
    return base.icdf(u)


def _log_cdf(base: Distribution, x):
    """``log F(x)``, in closed form where the base allows it (accurate in the far tails)."""
    if isinstance(base, Normal):
        return log_ndtr((x - base.loc) / base.scale)
    if isinstance(base, LogNormal):
        pos = x > 0
        z = (jnp.log(jnp.where(pos, x, 1.0)) - base.loc) / base.scale
        return jnp.where(pos, log_ndtr(z), -jnp.inf)
    if isinstance(base, Exponential):
        return _log1mexp(-base.rate * jnp.maximum(x, 0.0))
    if isinstance(base, Weibull):
        return _log1mexp(-((jnp.maximum(x, 0.0) / base.scale) ** base.concentration))
    return jnp.log(_base_cdf(base, x))


def _log_sf(base: Distribution, x):
    """``log(1 - F(x))``, without the cancellation of ``1 - F`` where the base allows it."""
    if isinstance(base, Normal):
        return log_ndtr(-(x - base.loc) / base.scale)
    if isinstance(base, _SYMMETRIC_BASES):
        return jnp.log(_base_cdf(base, 2.0 * base.loc - x))
    if isinstance(base, LogNormal):
        pos = x > 0
        z = (jnp.log(jnp.where(pos, x, 1.0)) - base.loc) / base.scale
        return jnp.where(pos, log_ndtr(-z), 0.0)
    if isinstance(base, Exponential):
        return -base.rate * jnp.maximum(x, 0.0)
    if isinstance(base, Weibull):
        return -((jnp.maximum(x, 0.0) / base.scale) ** base.concentration)
    if isinstance(base, Gamma):
        return jnp.log(gammaincc(base.concentration, base.rate * jnp.maximum(x, 0.0)))
    return jnp.log1p(-base.cdf(x))


def _log_exprel(u):
    """``log((exp(u) - 1) / u)``, for any real ``u`` (0 at ``u = 0``)."""
    small = jnp.abs(u) < 1e-6
    big = u > 1.0
    u_mid = jnp.where(small | big, -1.0, u)
    u_big = jnp.where(big, u, 2.0)
    return jnp.where(
        small,
        jnp.log1p(u / 2.0 + u**2 / 6.0),
        jnp.where(
            big,
            u_big + jnp.log1p(-jnp.exp(-u_big)) - jnp.log(u_big),
            jnp.log(jnp.expm1(u_mid) / u_mid),
        ),
    )


def _uniform(key, shape, dtype):
    return jax.random.uniform(key, shape, dtype, minval=_tiny(dtype))


# ------------------------------------------------------------------------------------------
# truncation of symmetric bases on the real line
# ------------------------------------------------------------------------------------------
class _TruncatedSymmetric(Distribution):
    """Shared code of Left/Right/TwoSidedTruncatedDistribution.

    Probabilities are taken in a frame where the retained interval is in the lower part of
    the base (reflected about ``loc`` when needed), so they are lower-tail values that keep
    their digits: ``p_lo = F(a)``, ``p_hi = F(b)`` for the frame interval ``[a, b]`` and the
    normalizer ``Z = p_hi - p_lo``. A ``Normal`` base is handed to jppl's ``TruncatedNormal``,
    which is accurate arbitrarily far out in the tails.
    """

    _has_low: bool = True
    _has_high: bool = True
    has_rsample = True

    def _setup(self, base_dist, low, high, validate_args) -> None:
        name = type(self).__name__
        _require_univariate(name, base_dist)
        if isinstance(base_dist, Gamma):
            raise TypeError(
                f"{name}: `base_dist` is a Gamma; use TruncatedGamma (or LeftTruncatedGamma, "
                "RightTruncatedGamma, TwoSidedTruncatedGamma) for a Gamma base."
            )
        if not isinstance(base_dist, _SYMMETRIC_BASES):
            raise TypeError(
                f"{name}: `base_dist` must be one of "
                f"{', '.join(c.__name__ for c in _SYMMETRIC_BASES)} (univariate, real support, "
                f"symmetric about loc), got {type(base_dist).__name__}."
            )
        bounds = [b for b in (low, high) if b is not None]
        dtype = _float_dtype(*bounds, base_dist.loc)
        shapes = [jnp.shape(b) for b in bounds]
        batch_shape = lazy_broadcast_shape(base_dist.batch_shape, *shapes)
        self.base_dist = _broadcast_base(base_dist, batch_shape)
        if low is not None:
            self.low = jnp.broadcast_to(_as_float(low).astype(dtype), batch_shape)
        if high is not None:
            self.high = jnp.broadcast_to(_as_float(high).astype(dtype), batch_shape)
        super().__init__(batch_shape, validate_args=validate_args)
        if self._invalid_args_message is None:
            self._check_bounds()

    def _check_bounds(self) -> None:
        name = type(self).__name__
        for arg in ("low", "high"):
            v = self.__dict__.get(arg)
            if v is not None and _concrete_all(jnp.isnan, v):
                self._report_invalid_args(f"{name}: `{arg}` must not be nan, got {v}.")
                return
        if self._has_low and self._has_high:
            if _concrete_all(lambda a, b: a < b, self.low, self.high) is False:
                self._report_invalid_args(
                    f"{name}: parameters `low` and `high` must satisfy low < high, but got "
                    f"low={self.low} and high={self.high}."
                )

    # -- bounds ------------------------------------------------------------------------------
    @property
    def _lo(self):
        return self.low if self._has_low else jnp.full(self.batch_shape, -jnp.inf)

    @property
    def _hi(self):
        return self.high if self._has_high else jnp.full(self.batch_shape, jnp.inf)

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        if self._has_low and self._has_high:
            return constraints.interval(self.low, self.high)
        if self._has_low:
            return constraints.greater_than_eq(self.low)
        return constraints.less_than_eq(self.high)

    def _truncated_normal(self) -> TruncatedNormal:
        b = self.base_dist
        return TruncatedNormal(
            b.loc,
            b.scale,
            self.low if self._has_low else None,
            self.high if self._has_high else None,
        )

    def _frame(self):
        """``(flip, p_lo, p_hi, log_z)``: reflect about loc where ``flip``; see the class doc."""
        base, loc = self.base_dist, self.base_dist.loc
        if not self._has_high:  # [low, inf) reflects onto (-inf, 2 loc - low]
            flip = jnp.ones(self.batch_shape, bool)
            p_lo = jnp.zeros(self.batch_shape)
            p_hi = _base_cdf(base, 2.0 * loc - self.low)
        elif not self._has_low:
            flip = jnp.zeros(self.batch_shape, bool)
            p_lo = jnp.zeros(self.batch_shape)
            p_hi = _base_cdf(base, self.high)
        else:
            flip = self.low > loc
            p_lo = _base_cdf(base, jnp.where(flip, 2.0 * loc - self.high, self.low))
            p_hi = _base_cdf(base, jnp.where(flip, 2.0 * loc - self.low, self.high))
        z = p_hi - p_lo
        log_z = jnp.where(z > 0, jnp.log(jnp.where(z > 0, z, 1.0)), -jnp.inf)
        return flip, p_lo, p_hi, log_z

    # -- density, cdf, sampling --------------------------------------------------------------
    def log_prob(self, value: ArrayLike) -> jax.Array:
        if isinstance(self.base_dist, Normal):
            return self._truncated_normal().log_prob(value)
        *_, log_z = self._frame()
        inside = (value >= self._lo) & (value <= self._hi) & jnp.isfinite(log_z)
        return jnp.where(inside, self.base_dist.log_prob(value) - log_z, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        if isinstance(self.base_dist, Normal):
            return self._truncated_normal().cdf(value)
        flip, p_lo, p_hi, log_z = self._frame()
        loc = self.base_dist.loc
        fy = _base_cdf(self.base_dist, jnp.where(flip, 2.0 * loc - value, value))
        c = jnp.where(flip, p_hi - fy, fy - p_lo) * jnp.exp(-log_z)
        c = jnp.clip(c, 0.0, 1.0)
        return jnp.where(value < self._lo, 0.0, jnp.where(value > self._hi, 1.0, c))

    def icdf(self, q: ArrayLike) -> jax.Array:
        q = jnp.asarray(q)
        if isinstance(self.base_dist, Normal):
            x = self._truncated_normal().icdf(q)
            return jnp.where((q < 0) | (q > 1), jnp.nan, x)
        flip, p_lo, p_hi, _ = self._frame()
        r = jnp.where(flip, 1.0 - q, q)
        y = _base_icdf(self.base_dist, p_lo + r * (p_hi - p_lo))
        x = jnp.clip(jnp.where(flip, 2.0 * self.base_dist.loc - y, y), self._lo, self._hi)
        return jnp.where((q < 0) | (q > 1), jnp.nan, x)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        dtype = jnp.result_type(self.base_dist.loc)
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        return self.icdf(_uniform(key, shape, dtype))

    # -- moments -----------------------------------------------------------------------------
    def _no_moment(self, what: str):
        return NotImplementedError(
            f"{type(self).__name__}: `{what}` is implemented for a Normal or Cauchy base only "
            f"(as in NumPyro), got {type(self.base_dist).__name__}."
        )

    def _cauchy_moments(self):
        """Mean and variance of a truncated Cauchy; one-sided: mean +-inf, variance nan."""
        b = self.base_dist
        if not (self._has_low and self._has_high):
            sign = 1.0 if self._has_low else -1.0
            return (
                jnp.full(self.batch_shape, sign * jnp.inf),
                jnp.full(self.batch_shape, jnp.nan),
            )
        alpha, beta = (self.low - b.loc) / b.scale, (self.high - b.loc) / b.scale
        d = jnp.arctan(beta) - jnp.arctan(alpha)
        m1 = (jnp.log1p(beta**2) - jnp.log1p(alpha**2)) / (2.0 * d)  # E[Z]
        m2 = (beta - alpha) / d - 1.0  # E[Z^2]
        return b.loc + b.scale * m1, b.scale**2 * (m2 - m1**2)

    @property
    def mean(self) -> jax.Array:
        if isinstance(self.base_dist, Normal):
            return self._truncated_normal().mean
        if isinstance(self.base_dist, Cauchy):
            return self._cauchy_moments()[0]
        raise self._no_moment("mean")

    @property
    def variance(self) -> jax.Array:
        if isinstance(self.base_dist, Normal):
            return self._truncated_normal().variance
        if isinstance(self.base_dist, Cauchy):
            return self._cauchy_moments()[1]
        raise self._no_moment("variance")

    def entropy(self) -> jax.Array:
        if isinstance(self.base_dist, Normal):
            return self._truncated_normal().entropy()
        raise NotImplementedError(
            f"{type(self).__name__}: `entropy` is implemented for a Normal base only, got "
            f"{type(self.base_dist).__name__}."
        )


class LeftTruncatedDistribution(_TruncatedSymmetric):
    """``base_dist`` restricted to ``[low, inf)`` and renormalized.

    ``base_dist``: ``Normal``, ``Cauchy``, ``Laplace``, ``Logistic`` or ``StudentT``;
    ``low`` broadcasts with its batch shape. Support ``greater_than_eq(low)``.
    """

    arg_constraints = {"low": constraints.real}
    _has_high = False

    def __init__(self, base_dist: Distribution, low: ArrayLike = 0.0, *, validate_args=None):
        self._setup(base_dist, low, None, validate_args)


class RightTruncatedDistribution(_TruncatedSymmetric):
    """``base_dist`` restricted to ``(-inf, high]`` and renormalized.

    ``base_dist``: ``Normal``, ``Cauchy``, ``Laplace``, ``Logistic`` or ``StudentT``;
    ``high`` broadcasts with its batch shape. Support ``less_than_eq(high)``.
    """

    arg_constraints = {"high": constraints.real}
    _has_low = False

    def __init__(self, base_dist: Distribution, high: ArrayLike = 0.0, *, validate_args=None):
        self._setup(base_dist, None, high, validate_args)


class TwoSidedTruncatedDistribution(_TruncatedSymmetric):
    """``base_dist`` restricted to ``[low, high]`` (``low < high``) and renormalized.

    ``base_dist``: ``Normal``, ``Cauchy``, ``Laplace``, ``Logistic`` or ``StudentT``;
    ``low`` and ``high`` broadcast with its batch shape. Support ``interval(low, high)``.
    """

    arg_constraints = {"low": constraints.dependent, "high": constraints.dependent}

    def __init__(
        self,
        base_dist: Distribution,
        low: ArrayLike = 0.0,
        high: ArrayLike = 1.0,
        *,
        validate_args=None,
    ):
        self._setup(base_dist, low, high, validate_args)


# ------------------------------------------------------------------------------------------
# truncated Gamma
# ------------------------------------------------------------------------------------------
def _gamma_mass(a, r, lo, hi):
    """``P(lo <= X <= hi)`` for ``X ~ Gamma(a, r)``, from the tail that keeps its digits.

    Above the median both lower-tail values are near one, so the upper-tail form is used
    there. ``lo`` may be 0 and ``hi`` may be ``inf``.
    """
    lo, hi = jnp.maximum(lo, 0.0), jnp.maximum(hi, 0.0)
    upper = gammainc(a, r * lo) > 0.5
    return jnp.where(
        upper,
        gammaincc(a, r * lo) - gammaincc(a, r * hi),
        gammainc(a, r * hi) - gammainc(a, r * lo),
    )


class _TruncatedGammaBase(Distribution):
    """Shared code of the truncated Gamma classes (normalizer, cdf, icdf, moments)."""

    _has_low: bool = True
    _has_high: bool = True
    has_rsample = True

    def _setup(self, base_dist, low, high, validate_args) -> None:
        name = type(self).__name__
        _require_univariate(name, base_dist)
        if not isinstance(base_dist, Gamma):
            raise TypeError(
                f"{name}: `base_dist` must be a Gamma, got {type(base_dist).__name__}; for "
                "Normal, Cauchy, Laplace, Logistic or StudentT use TruncatedDistribution."
            )
        bounds = [b for b in (low, high) if b is not None]
        dtype = _float_dtype(*bounds, base_dist.concentration)
        batch_shape = lazy_broadcast_shape(base_dist.batch_shape, *[jnp.shape(b) for b in bounds])
        self.base_dist = _broadcast_base(base_dist, batch_shape)
        if low is not None:
            self.low = jnp.broadcast_to(_as_float(low).astype(dtype), batch_shape)
        if high is not None:
            self.high = jnp.broadcast_to(_as_float(high).astype(dtype), batch_shape)
        super().__init__(batch_shape, validate_args=validate_args)
        if self._invalid_args_message is None:
            self._check_bounds()

    def _check_bounds(self) -> None:
        # Always checked (NumPyro only checks with validate_args, and otherwise returns nan):
        # a bound outside the Gamma's support [0, inf) truncates nothing meaningful.
        name = type(self).__name__
        if self._has_low and _concrete_all(lambda a: a >= 0, self.low) is False:
            self._report_invalid_args(
                f"{name}: `low` must be >= 0 (inside the Gamma's support), got {self.low}."
            )
        elif self._has_high and _concrete_all(lambda b: b > 0, self.high) is False:
            self._report_invalid_args(
                f"{name}: `high` must be > 0 (inside the Gamma's support), got {self.high}."
            )
        elif (
            self._has_low
            and self._has_high
            and _concrete_all(lambda a, b: a < b, self.low, self.high) is False
        ):
            self._report_invalid_args(
                f"{name}: parameters `low` and `high` must satisfy low < high, but got "
                f"low={self.low} and high={self.high}."
            )

    @property
    def _lo(self):
        return self.low if self._has_low else jnp.zeros(self.batch_shape)

    @property
    def _hi(self):
        return self.high if self._has_high else jnp.full(self.batch_shape, jnp.inf)

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        if self._has_low and self._has_high:
            return constraints.interval(self.low, self.high)
        if self._has_low:
            return constraints.greater_than_eq(self.low)
        return constraints.interval(0.0, self.high)

    def _mass(self, order: int):
        """Mass of ``Gamma(concentration + order, rate)`` over ``[low, high]``."""
        a = self.base_dist.concentration + order
        r = self.base_dist.rate
        if not self._has_high:
            return gammaincc(a, r * self.low)
        if not self._has_low:
            return gammainc(a, r * self.high)
        return _gamma_mass(a, r, self.low, self.high)

    def _log_z(self):
        z = self._mass(0)
        return jnp.where(z > 0, jnp.log(jnp.where(z > 0, z, 1.0)), -jnp.inf)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        log_z = self._log_z()
        inside = (value >= self._lo) & (value <= self._hi) & jnp.isfinite(log_z)
        return jnp.where(inside, self.base_dist.log_prob(value) - log_z, -jnp.inf)

    def _unchecked_cdf(self, value):
        b = self.base_dist
        x = jnp.clip(value, self._lo, self._hi)
        return jnp.clip(_gamma_mass(b.concentration, b.rate, self._lo, x) / self._mass(0), 0.0, 1.0)

    def cdf(self, value: ArrayLike) -> jax.Array:
        c = self._unchecked_cdf(value)
        c = jnp.where(value < self._lo, 0.0, jnp.where(value > self._hi, 1.0, c))
        return jnp.where(self._mass(0) > 0, c, jnp.nan)

    def icdf(self, q: ArrayLike) -> jax.Array:
        b = self.base_dist
        a, r = b.concentration, b.rate
        q = jnp.asarray(q)
        dtype = _float_dtype(q, a)
        shape = lazy_broadcast_shape(jnp.shape(q), self.batch_shape)
        z = self._mass(0)
        # Solve G(x) = T on the base's scale, with G the lower incomplete gamma P(a, r x), or
        # -Q(a, r x) where the retained interval is above the median (so the target keeps
        # its digits): one incomplete gamma per bisection step.
        if not self._has_high:
            upper = jnp.ones(self.batch_shape, bool)
        elif not self._has_low:
            upper = jnp.zeros(self.batch_shape, bool)
        else:
            upper = gammainc(a, r * self.low) > 0.5
        lo_p = gammainc(a, r * self._lo)
        lo_q = gammaincc(a, r * self._lo)
        target = jnp.where(upper, -(lo_q - q * z), lo_p + q * z)

        def g(x):
            return jnp.where(upper, -gammaincc(a, r * x), gammainc(a, r * x))

        tiny = _tiny(dtype)
        lo = jnp.broadcast_to(jnp.maximum(self._lo, tiny), shape).astype(dtype)
        t_c = lax.stop_gradient(target)
        if self._has_high:
            hi = jnp.broadcast_to(self.high, shape).astype(dtype)
        else:
            # no upper end: double from beyond the bulk until G covers the target
            start = 2.0 * jnp.maximum(self.low, (a + 1.0) / r)
            start = lax.stop_gradient(jnp.broadcast_to(start, shape).astype(dtype))
            hi = lax.fori_loop(0, 64, lambda _, h: jnp.where(g(h) < t_c, 2.0 * h, h), start)
        # bisect over log x: quantiles of a small-concentration Gamma can be tiny
        x = _invert_monotone(
            g, b.log_prob, target, jnp.log(lo), jnp.log(hi), jnp.exp, _bisection_steps(dtype)
        )
        x = jnp.clip(x, self._lo, self._hi)
        x = jnp.where(q <= 0, self._lo, jnp.where(q >= 1, self._hi, x))
        bad = (q < 0) | (q > 1) | (z <= 0)
        return jnp.where(bad, jnp.nan, x)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        dtype = jnp.result_type(self.base_dist.concentration)
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        return self.icdf(_uniform(key, shape, dtype))

    @property
    def mean(self) -> jax.Array:
        b = self.base_dist
        z = self._mass(0)
        m = b.concentration / b.rate * self._mass(1) / z
        return jnp.where(z > 0, m, jnp.nan)

    @property
    def variance(self) -> jax.Array:
        b = self.base_dist
        a, r, z = b.concentration, b.rate, self._mass(0)
        m2 = a * (a + 1.0) / r**2 * self._mass(2) / z
        return jnp.where(z > 0, m2 - self.mean**2, jnp.nan)


class LeftTruncatedGamma(_TruncatedGammaBase):
    """A ``Gamma`` base restricted to ``[low, inf)`` (``low >= 0``) and renormalized.

    The normalizer is the upper regularized incomplete gamma ``Q(concentration, rate * low)``.
    ``icdf`` and ``sample`` invert the cdf by bisection (a Newton step gives the gradient).
    """

    arg_constraints = {"low": constraints.greater_than_eq(0.0)}
    _has_high = False

    def __init__(self, base_dist: Gamma, low: ArrayLike = 0.0, *, validate_args=None):
        self._setup(base_dist, low, None, validate_args)


class RightTruncatedGamma(_TruncatedGammaBase):
    """A ``Gamma`` base restricted to ``[0, high]`` (``high > 0``) and renormalized.

    Support ``interval(0, high)`` (closed at 0, as in NumPyro).
    """

    arg_constraints = {"high": constraints.positive}
    _has_low = False

    def __init__(self, base_dist: Gamma, high: ArrayLike = 1.0, *, validate_args=None):
        self._setup(base_dist, None, high, validate_args)


class TwoSidedTruncatedGamma(_TruncatedGammaBase):
    """A ``Gamma`` base restricted to ``[low, high]`` (``0 <= low < high``), renormalized.

    Probabilities come from the lower or upper incomplete gamma, whichever keeps its digits.
    """

    arg_constraints = {"low": constraints.dependent, "high": constraints.dependent}

    def __init__(
        self,
        base_dist: Gamma,
        low: ArrayLike = 0.0,
        high: ArrayLike = 1.0,
        *,
        validate_args=None,
    ):
        self._setup(base_dist, low, high, validate_args)


# ------------------------------------------------------------------------------------------
# factories
# ------------------------------------------------------------------------------------------
def TruncatedDistribution(  # noqa: N802 (NumPyro's name)
    base_dist: Distribution,
    low: ArrayLike | None = None,
    high: ArrayLike | None = None,
    *,
    validate_args=None,
) -> Distribution:
    """``base_dist`` truncated to ``[low, high]``; ``None`` leaves that side open.

    Returns ``base_dist`` itself when both are ``None``, else a Left-, Right- or
    TwoSidedTruncatedDistribution (a ``Gamma`` base gets the matching truncated Gamma class,
    where NumPyro raises).
    """
    gamma = isinstance(base_dist, Gamma)
    if low is None and high is None:
        return base_dist
    if high is None:
        cls = LeftTruncatedGamma if gamma else LeftTruncatedDistribution
        return cls(base_dist, low=low, validate_args=validate_args)
    if low is None:
        cls = RightTruncatedGamma if gamma else RightTruncatedDistribution
        return cls(base_dist, high=high, validate_args=validate_args)
    cls = TwoSidedTruncatedGamma if gamma else TwoSidedTruncatedDistribution
    return cls(base_dist, low=low, high=high, validate_args=validate_args)


def TruncatedCauchy(  # noqa: N802 (NumPyro's name)
    loc: ArrayLike = 0.0,
    scale: ArrayLike = 1.0,
    *,
    low: ArrayLike | None = None,
    high: ArrayLike | None = None,
    validate_args=None,
) -> Distribution:
    """``Cauchy(loc, scale)`` truncated to ``[low, high]`` (see ``TruncatedDistribution``)."""
    return TruncatedDistribution(
        Cauchy(loc, scale), low=low, high=high, validate_args=validate_args
    )


def TruncatedGamma(  # noqa: N802 (NumPyro's name)
    concentration: ArrayLike = 1.0,
    rate: ArrayLike = 1.0,
    *,
    low: ArrayLike | None = None,
    high: ArrayLike | None = None,
    validate_args=None,
) -> Distribution:
    """``Gamma(concentration, rate)`` truncated to ``[low, high]``; ``None`` leaves a side
    open (both ``None``: the Gamma itself)."""
    return TruncatedDistribution(
        Gamma(concentration, rate), low=low, high=high, validate_args=validate_args
    )


# ------------------------------------------------------------------------------------------
# folded
# ------------------------------------------------------------------------------------------
class FoldedDistribution(Distribution):
    """``|X|`` for ``X ~ base_dist`` (univariate): density ``f(x) + f(-x)`` on ``x >= 0``.

    Support ``positive`` (as NumPyro). ``cdf`` is ``F(x) - F(-x)`` when the base has a cdf.
    """

    arg_constraints: dict = {}
    support = constraints.positive

    def __init__(self, base_dist: Distribution, *, validate_args=None):
        _require_univariate("FoldedDistribution", base_dist)
        self.base_dist = base_dist
        super().__init__(base_dist.batch_shape, validate_args=validate_args)

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return self.base_dist.has_rsample

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        return jnp.abs(self.base_dist.sample(key, sample_shape))

    def log_prob(self, value: ArrayLike) -> jax.Array:
        value = jnp.asarray(value)
        ok = value >= 0
        x = jnp.where(ok, value, 0.0)
        lp = jnp.logaddexp(self.base_dist.log_prob(x), self.base_dist.log_prob(-x))
        return jnp.where(ok, lp, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        if not _has_method(self.base_dist, "cdf"):
            raise NotImplementedError(
                f"FoldedDistribution: `cdf` needs a base with a cdf; "
                f"{type(self.base_dist).__name__} has none."
            )
        x = jnp.maximum(jnp.asarray(value), 0.0)
        return jnp.clip(self.base_dist.cdf(x) - self.base_dist.cdf(-x), 0.0, 1.0)


# ------------------------------------------------------------------------------------------
# censored
# ------------------------------------------------------------------------------------------
def _indicator(cls_name: str, arg: str, x, batch_shape) -> jax.Array:
    if is_concrete(x):
        arr = np.asarray(x)
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError(
                f"{cls_name}: `{arg}` must hold 0/1 (or booleans), got {np.ravel(arr)[:5]}."
            )
    return jnp.broadcast_to(jnp.asarray(x).astype(bool), batch_shape)


def _censoring_setup(d: Distribution, base_dist, indicators: dict) -> tuple[int, ...]:
    name = type(d).__name__
    _require_univariate(name, base_dist)
    if not _has_method(base_dist, "cdf"):
        raise TypeError(
            f"{name}: `base_dist` ({type(base_dist).__name__}) has no cdf; censored "
            "likelihoods need one."
        )
    batch_shape = lazy_broadcast_shape(
        base_dist.batch_shape, *[jnp.shape(v) for v in indicators.values()]
    )
    d.base_dist = _broadcast_base(base_dist, batch_shape)
    for arg, v in indicators.items():
        setattr(d, arg, _indicator(name, arg, v, batch_shape))
    return batch_shape


class _Censored(Distribution):
    has_rsample = False

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return self.base_dist.support

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        """Uncensored draws from the base: ``sample_shape + batch_shape``."""
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        x = self.base_dist.sample(key, validate_sample_shape(sample_shape))
        return jnp.broadcast_to(x, shape)


class LeftCensoredDistribution(_Censored):
    """Likelihood of left-censored data: ``log f(x)`` where ``censored`` is 0 (observed
    exactly) and ``log F(x)`` where it is 1 (the value is at most ``x``).

    ``base_dist``: univariate, with a ``cdf``; ``censored``: 0/1 array broadcasting with its
    batch shape. ``log F`` is in closed form for Normal, LogNormal, Exponential and Weibull.
    """

    arg_constraints = {"censored": constraints.boolean}

    def __init__(
        self, base_dist: Distribution, censored: ArrayLike = False, *, validate_args=False
    ):
        batch_shape = _censoring_setup(self, base_dist, {"censored": censored})
        super().__init__(batch_shape, validate_args=validate_args)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        return jnp.where(
            self.censored, _log_cdf(self.base_dist, value), self.base_dist.log_prob(value)
        )


class RightCensoredDistribution(_Censored):
    """Likelihood of right-censored data: ``log f(x)`` where ``censored`` is 0 and
    ``log(1 - F(x))`` where it is 1 (the value is at least ``x``).

    ``base_dist``: univariate, with a ``cdf``; ``censored``: 0/1 array broadcasting with its
    batch shape. The survival function is computed without ``1 - F`` cancellation for Normal,
    the symmetric families, LogNormal, Exponential, Weibull and Gamma.
    """

    arg_constraints = {"censored": constraints.boolean}

    def __init__(
        self, base_dist: Distribution, censored: ArrayLike = False, *, validate_args=False
    ):
        batch_shape = _censoring_setup(self, base_dist, {"censored": censored})
        super().__init__(batch_shape, validate_args=validate_args)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        return jnp.where(
            self.censored, _log_sf(self.base_dist, value), self.base_dist.log_prob(value)
        )


class IntervalCensoredDistribution(_Censored):
    """Likelihood of interval-censored data; a value is ``(..., 2)``: ``(lower, upper)``.

    Per element, with ``l = left_censored`` and ``r = right_censored`` (0/1 arrays
    broadcasting with the base's batch shape):

    * ``l`` only: ``log F(upper)``; ``r`` only: ``log(1 - F(lower))``;
    * neither: ``log(F(upper) - F(lower))``, or ``log f(lower)`` when ``lower == upper``
      exactly (NumPyro uses ``isclose``, which turns a short interval into a density);
    * both: the value lies outside the interval, ``log(F(lower) + 1 - F(upper))``.

    ``sample`` returns base draws as point intervals ``(x, x)``, shape
    ``sample_shape + batch_shape + (2,)`` (NumPyro returns the bare draws).
    """

    arg_constraints = {
        "left_censored": constraints.boolean,
        "right_censored": constraints.boolean,
    }

    def __init__(
        self,
        base_dist: Distribution,
        left_censored: ArrayLike,
        right_censored: ArrayLike,
        *,
        validate_args=False,
    ):
        batch_shape = _censoring_setup(
            self,
            base_dist,
            {"left_censored": left_censored, "right_censored": right_censored},
        )
        super().__init__(batch_shape, (2,), validate_args=validate_args)

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.independent(self.base_dist.support, 1)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        x = super().sample(key, sample_shape)
        return jnp.stack([x, x], axis=-1)

    def _masks(self, lower, upper):
        left, right = self.left_censored, self.right_censored
        neither = ~left & ~right
        point = neither & (lower == upper)
        return left & ~right, right & ~left, neither & ~point, left & right, point

    def _check_value(self, value) -> None:
        if jnp.shape(value)[-1:] != (2,):
            raise ValueError(
                "IntervalCensoredDistribution: `value` must end in a dim of size 2 "
                f"(lower, upper), got shape {jnp.shape(value)}."
            )

    def log_prob(self, value: ArrayLike) -> jax.Array:
        value = jnp.asarray(value)
        self._check_value(value)
        lower, upper = value[..., 0], value[..., 1]
        m_left, m_right, m_int, m_out, m_point = self._masks(lower, upper)
        base = self.base_dist
        # unused bounds (e.g. an infinite one) are swapped for a feasible point, so that no
        # branch the select drops can put a nan into the gradient
        safe = base.support.feasible_like(lower)
        lo = jnp.where(m_left, safe, lower)
        hi = jnp.where(m_right | m_point, safe, upper)
        log_f_lo, log_s_lo = _log_cdf(base, lo), _log_sf(base, lo)
        log_f_hi, log_s_hi = _log_cdf(base, hi), _log_sf(base, hi)
        tiny = _tiny(jnp.result_type(log_f_lo))
        # log(F(hi) - F(lo)), from whichever tail keeps its digits
        lower_form = log_f_hi + _log1mexp(jnp.minimum(log_f_lo - log_f_hi, -tiny))
        upper_form = log_s_lo + _log1mexp(jnp.minimum(log_s_hi - log_s_lo, -tiny))
        lp_int = jnp.where(log_f_lo <= -math.log(2.0), lower_form, upper_form)
        lp = jnp.where(m_left, log_f_hi, log_s_lo)
        lp = jnp.where(m_int, lp_int, lp)
        lp = jnp.where(m_out, jnp.logaddexp(log_f_lo, log_s_hi), lp)
        return jnp.where(m_point, base.log_prob(lo), lp)

    def validate_sample(self, value):
        """Per element: the bounds in use lie in the base's support, and ``lower < upper``
        for interval and outside-interval rows (``lower == upper`` for exact ones)."""
        value = jnp.asarray(value)
        self._check_value(value)
        lower, upper = value[..., 0], value[..., 1]
        m_left, m_right, m_int, m_out, m_point = self._masks(lower, upper)
        in_lo, in_hi = self.base_dist.support(lower), self.base_dist.support(upper)
        ok = jnp.where(m_left, in_hi, in_lo)
        ok = jnp.where(m_int | m_out, in_lo & in_hi & (lower < upper), ok)
        return ok


# ------------------------------------------------------------------------------------------
# power laws and the truncated Polya-Gamma
# ------------------------------------------------------------------------------------------
def _broadcast_float(*params) -> tuple[tuple[int, ...], list[jax.Array]]:
    arrays = [_as_float(p) for p in params]
    dtype = jnp.result_type(*arrays)
    shape = lazy_broadcast_shape(*(jnp.shape(a) for a in arrays))
    return shape, [jnp.broadcast_to(a.astype(dtype), shape) for a in arrays]


class LowerTruncatedPowerLaw(Distribution):
    """Density ``(-alpha - 1) low^(-alpha - 1) x^alpha`` on ``x >= low``.

    ``alpha`` < -1, ``low`` > 0, broadcast together. ``E[X^k]`` is finite for
    ``k < -alpha - 1`` (``mean``/``variance`` are ``inf`` beyond that).
    """

    arg_constraints = {
        "alpha": constraints.less_than(-1.0),
        "low": constraints.greater_than(0.0),
    }
    has_rsample = True

    def __init__(self, alpha: ArrayLike, low: ArrayLike, *, validate_args=None):
        batch_shape, (self.alpha, self.low) = _broadcast_float(alpha, low)
        super().__init__(batch_shape, validate_args=validate_args)
        if self._invalid_args_message is None:
            if _concrete_all(lambda a: a < -1, self.alpha) is False:
                self._report_invalid_args(
                    f"LowerTruncatedPowerLaw: `alpha` must be < -1 (else the density does not "
                    f"normalize), got {self.alpha}."
                )
            elif _concrete_all(lambda v: v > 0, self.low) is False:
                self._report_invalid_args(
                    f"LowerTruncatedPowerLaw: `low` must be > 0, got {self.low}."
                )

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.greater_than(self.low)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        ok = value >= self.low
        x = jnp.where(ok, value, self.low)
        a1 = -1.0 - self.alpha  # > 0
        lp = jnp.log(a1) + a1 * jnp.log(self.low) + self.alpha * jnp.log(x)
        return jnp.where(ok, lp, -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        x = jnp.maximum(value, self.low)
        return -jnp.expm1((1.0 + self.alpha) * jnp.log(x / self.low))

    def icdf(self, q: ArrayLike) -> jax.Array:
        q = jnp.asarray(q)
        x = self.low * jnp.exp(jnp.log1p(-q) / (1.0 + self.alpha))
        return jnp.where((q < 0) | (q > 1) | jnp.isnan(q), jnp.nan, x)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        return self.icdf(jax.random.uniform(key, shape, self.alpha.dtype))

    def _moment(self, k: float):
        a1 = -1.0 - self.alpha
        finite = k < a1
        return jnp.where(finite, a1 / jnp.where(finite, a1 - k, 1.0) * self.low**k, jnp.inf)

    @property
    def mean(self) -> jax.Array:
        return self._moment(1.0)

    @property
    def variance(self) -> jax.Array:
        m1, m2 = self._moment(1.0), self._moment(2.0)
        return jnp.where(jnp.isfinite(m2), m2 - m1**2, jnp.inf)


class DoublyTruncatedPowerLaw(Distribution):
    """Density ``x^alpha / Z`` on ``[low, high]``, ``Z = (high^(a+1) - low^(a+1)) / (a+1)``
    (``log(high / low)`` at ``alpha = -1``).

    ``alpha`` real, ``0 <= low < high`` (``low > 0`` when ``alpha <= -1``, where ``Z`` would
    diverge), broadcast together. Computed in log space, smooth through ``alpha = -1``.
    """

    arg_constraints = {
        "alpha": constraints.real,
        "low": constraints.greater_than_eq(0.0),
        "high": constraints.greater_than(0.0),
    }
    has_rsample = True

    def __init__(self, alpha: ArrayLike, low: ArrayLike, high: ArrayLike, *, validate_args=None):
        batch_shape, (self.alpha, self.low, self.high) = _broadcast_float(alpha, low, high)
        super().__init__(batch_shape, validate_args=validate_args)
        if self._invalid_args_message is None:
            self._check_bounds()

    def _check_bounds(self) -> None:
        name = "DoublyTruncatedPowerLaw"
        if _concrete_all(lambda a: a >= 0, self.low) is False:
            self._report_invalid_args(f"{name}: `low` must be >= 0, got {self.low}.")
        elif _concrete_all(lambda a, b: a < b, self.low, self.high) is False:
            self._report_invalid_args(
                f"{name}: parameters `low` and `high` must satisfy low < high, but got "
                f"low={self.low} and high={self.high}."
            )
        elif _concrete_all(lambda a, lo: (a > -1) | (lo > 0), self.alpha, self.low) is False:
            self._report_invalid_args(
                f"{name}: `low` must be > 0 when `alpha` <= -1 (the density does not "
                f"normalize at 0), got alpha={self.alpha} and low={self.low}."
            )

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        return constraints.interval(self.low, self.high)

    def _log_mass(self, x):
        """``log int_low^x t^alpha dt`` for ``x`` in ``(0, high]``, smooth through alpha = -1.

        With ``s = alpha + 1`` and ``d = log(x / low)``: ``(x^s - low^s) / s`` is
        ``x^s * d * exprel(-s d)``, ``exprel(u) = (exp(u) - 1) / u`` (1 at u = 0).
        """
        s = self.alpha + 1.0
        safe_low = jnp.where(self.low > 0, self.low, 1.0)
        d = jnp.maximum(jnp.log(x) - jnp.log(safe_low), 0.0)
        with_low = s * jnp.log(x) + jnp.log(d) + _log_exprel(-s * d)
        # low == 0 (only with alpha > -1): x^s / s
        s_pos = jnp.where(s > 0, s, 1.0)
        zero_low = s * jnp.log(x) - jnp.log(s_pos)
        return jnp.where(self.low > 0, with_low, zero_low)

    def log_prob(self, value: ArrayLike) -> jax.Array:
        ok = (value >= self.low) & (value <= self.high)
        x = jnp.where(ok, value, self.high)
        return jnp.where(ok, self.alpha * jnp.log(x) - self._log_mass(self.high), -jnp.inf)

    def cdf(self, value: ArrayLike) -> jax.Array:
        x = jnp.clip(value, self.low, self.high)
        x_pos = jnp.where(x > 0, x, self.high)
        c = jnp.exp(self._log_mass(x_pos) - self._log_mass(self.high))
        return jnp.where(x > 0, jnp.clip(c, 0.0, 1.0), 0.0)

    def icdf(self, q: ArrayLike) -> jax.Array:
        q = jnp.asarray(q)
        q_c = jnp.clip(q, 0.0, 1.0)
        s = self.alpha + 1.0
        low_pos = self.low > 0
        log_lo = jnp.log(jnp.where(low_pos, self.low, 1.0))
        big_l = jnp.log(self.high) - log_lo
        # x^s = low^s (1 + q ((high / low)^s - 1)), so
        # log x = log low + log(1 - q + q exp(s L)) / s, and q L at s = 0
        s_safe = jnp.where(s == 0, 1.0, s)
        sl = s_safe * big_l
        log_ratio = jnp.where(
            sl < 1.0,
            jnp.log1p(q_c * jnp.expm1(jnp.minimum(sl, 1.0))),
            jnp.logaddexp(jnp.log1p(-q_c), jnp.log(q_c) + sl),
        )
        # at s == 0 exactly: the first two terms of the series in s, so the gradient in alpha
        # is right there too
        at_zero = q_c * big_l + 0.5 * q_c * (1.0 - q_c) * big_l**2 * s
        log_x_low = log_lo + jnp.where(s == 0, at_zero, log_ratio / s_safe)
        # low == 0 (only with s > 0): x = high q^(1 / s)
        log_x_zero = jnp.log(self.high) + jnp.log(q_c) / jnp.where(s > 0, s, 1.0)
        x = jnp.exp(jnp.where(low_pos, log_x_low, log_x_zero))
        x = jnp.clip(x, self.low, self.high)
        return jnp.where((q < 0) | (q > 1) | jnp.isnan(q), jnp.nan, x)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        return self.icdf(jax.random.uniform(key, shape, self.alpha.dtype))


class TruncatedPolyaGamma(Distribution):
    """``PG(1, 0)`` (Polya-Gamma) restricted to ``[0, 2.5]``, as used by NumPyro's
    Polya-Gamma augmentation.

    ``log_prob`` is the exact truncated density: the short-time series
    ``sum_n (-1)^n (2n+1) exp(-(2n+1)^2 / (8x)) / sqrt(2 pi x^3)`` below ``x = 0.64`` and the
    long-time series ``4 pi sum_n (-1)^n (n+1/2) exp(-2 (n+1/2)^2 pi^2 x)`` above (each
    converges to float64 accuracy there), divided by the mass of ``[0, 2.5]``. NumPyro sums 7
    short-time terms everywhere (about 25% off near 2.5) and does not renormalize.
    ``sample`` follows NumPyro: 8 weighted Gamma(1) variates of the series representation,
    clipped at 2.5 (a slight underestimate of the exact law).
    """

    truncation_point = 2.5
    num_log_prob_terms = 7
    num_gamma_variates = 8
    arg_constraints: dict = {}
    support = constraints.interval(0.0, truncation_point)
    has_rsample = True
    _switch = 0.64

    def __init__(self, batch_shape: Sequence[int] = (), *, validate_args=None):
        super().__init__(tuple(batch_shape), validate_args=validate_args)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        # sample_shape + batch_shape (NumPyro puts batch_shape first, against the convention)
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        denom = jnp.square(jnp.arange(0.5, self.num_gamma_variates))
        g = jax.random.gamma(key, jnp.ones(shape + (self.num_gamma_variates,)))
        x = jnp.sum(g / denom, axis=-1) * (0.5 / math.pi**2)
        return jnp.minimum(x, self.truncation_point)

    @staticmethod
    def _log_mass_above(t: float) -> float:
        """``log P(PG(1, 0) > t)`` from the long-time series, integrated term by term."""
        n = np.arange(20) + 0.5
        terms = (-1.0) ** np.arange(20) * 2.0 / (math.pi * n) * np.exp(-2.0 * n**2 * math.pi**2 * t)
        return float(np.log(np.sum(terms)))

    def log_prob(self, value: ArrayLike) -> jax.Array:
        value = jnp.asarray(value)
        ok = (value > 0) & (value <= self.truncation_point)
        x = jnp.where(ok, value, 1.0)[..., None]
        n = jnp.arange(self.num_log_prob_terms)
        sign = jnp.where(n % 2 == 0, 1.0, -1.0)
        k = 2.0 * n + 1.0
        xs = jnp.minimum(x, self._switch)
        short = logsumexp(
            jnp.log(k) - 1.5 * jnp.log(xs) - 0.125 * k**2 / xs, b=sign, axis=-1
        ) - 0.5 * math.log(2.0 * math.pi)
        xl = jnp.maximum(x, self._switch)
        h = n + 0.5
        long = math.log(4.0 * math.pi) + logsumexp(
            jnp.log(h) - 2.0 * h**2 * math.pi**2 * xl, b=sign, axis=-1
        )
        lp = jnp.where(x[..., 0] < self._switch, short, long)
        lp = lp - math.log1p(-math.exp(self._log_mass_above(self.truncation_point)))
        lp = jnp.broadcast_to(lp, lazy_broadcast_shape(jnp.shape(lp), self.batch_shape))
        return jnp.where(jnp.broadcast_to(ok, jnp.shape(lp)), lp, -jnp.inf)
