"""Gaussian copulas: couple the last batch axis of a univariate distribution through a
multivariate normal (NumPyro's ``GaussianCopula`` and ``GaussianCopulaBeta``).

Shapes follow the library convention: a draw has shape ``sample_shape + batch_shape +
event_shape``; here ``event_shape = (d,)`` is the marginal's last batch axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtr, ndtri
from jax.typing import ArrayLike

from jppl.distributions import constraints
from jppl.distributions.continuous import Beta
from jppl.distributions.distribution import Distribution
from jppl.distributions.multivariate import MultivariateNormal
from jppl.distributions.util import clamp_probs, lazy_broadcast_shape, validate_sample_shape

__all__ = ["GaussianCopula", "GaussianCopulaBeta"]

_LOG_2PI = math.log(2 * math.pi)


class GaussianCopula(Distribution):
    """Gaussian copula joining the last batch axis of ``marginal_dist``: ``x_i =
    F_i^{-1}(Phi(z_i))`` with ``z ~ N(0, R)``, ``R`` a correlation matrix.

    Density: ``prod_i f_i(x_i) * N(q; 0, R) / prod_i N(q_i; 0, 1)`` with ``q_i =
    Phi^{-1}(F_i(x_i))``.

    ``marginal_dist``: univariate, ``batch_shape = (..., d)`` (sampling needs its ``icdf``,
    ``log_prob`` its ``cdf``); exactly one of ``correlation_matrix`` or
    ``correlation_cholesky``, ``(..., d, d)``. ``batch_shape = broadcast(marginal batch[:-1],
    correlation batch)``, ``event_shape = (d,)``.
    """

    arg_constraints = {
        "correlation_matrix": constraints.corr_matrix,
        "correlation_cholesky": constraints.corr_cholesky,
    }
    has_rsample = True

    def __init__(
        self,
        marginal_dist: Distribution,
        correlation_matrix: ArrayLike | None = None,
        correlation_cholesky: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        cls = type(self).__name__
        if not isinstance(marginal_dist, Distribution) or marginal_dist.event_shape != ():
            raise ValueError(f"{cls}: `marginal_dist` must be a univariate Distribution.")
        if len(marginal_dist.batch_shape) < 1:
            raise ValueError(
                f"{cls}: `marginal_dist` needs a batch axis of size d (the coupled axis), got "
                f"batch_shape {marginal_dist.batch_shape}."
            )
        if (correlation_matrix is None) == (correlation_cholesky is None):
            raise ValueError(
                f"{cls}: pass exactly one of `correlation_matrix` or `correlation_cholesky`."
            )
        given = correlation_matrix if correlation_cholesky is None else correlation_cholesky
        d = marginal_dist.batch_shape[-1]
        if jnp.ndim(given) < 2 or jnp.shape(given)[-2:] != (d, d):
            name = "correlation_matrix" if correlation_cholesky is None else "correlation_cholesky"
            raise ValueError(
                f"{cls}: `{name}` must be (..., {d}, {d}) to match the last batch axis of "
                f"`marginal_dist`, got shape {jnp.shape(given)}."
            )
        if correlation_matrix is not None:
            self.__dict__["correlation_matrix"] = jnp.asarray(correlation_matrix)
        else:
            self.__dict__["correlation_cholesky"] = jnp.asarray(correlation_cholesky)
        self.marginal_dist = marginal_dist
        self.base_dist = MultivariateNormal(
            covariance_matrix=correlation_matrix, scale_tril=correlation_cholesky
        )
        batch_shape = lazy_broadcast_shape(
            marginal_dist.batch_shape[:-1], self.base_dist.batch_shape
        )
        super().__init__(batch_shape, (d,), validate_args=validate_args)

    @property
    def support(self):  # type: ignore[override]
        return constraints.independent(self.marginal_dist.support, 1)

    @property
    def correlation_matrix(self) -> jax.Array:
        """``R``: ``(..., d, d)``."""
        R = self.__dict__.get("correlation_matrix")
        return self.base_dist.covariance_matrix if R is None else R

    @property
    def correlation_cholesky(self) -> jax.Array:
        """Lower Cholesky factor of ``R``: ``(..., d, d)``."""
        return self.base_dist.scale_tril

    def _marginal_icdf(self, u) -> jax.Array:
        return self.marginal_dist.icdf(u)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        z = self.base_dist.expand(shape).sample(key)
        return self._marginal_icdf(ndtr(z))

    def log_prob(self, value) -> jax.Array:
        """``value: (..., d)``; returns ``broadcast(value.shape[:-1], batch_shape)``."""
        value = jnp.asarray(value)
        marginal_lp = self.marginal_dist.log_prob(value)
        q = ndtri(clamp_probs(self.marginal_dist.cdf(value)))
        d = self.event_shape[0]
        # N(q; 0, R) / prod_i N(q_i; 0, 1)
        copula_lp = self.base_dist.log_prob(q) + 0.5 * jnp.sum(q * q, -1) + 0.5 * d * _LOG_2PI
        return copula_lp + jnp.sum(marginal_lp, -1)

    @property
    def mean(self) -> jax.Array:
        return jnp.broadcast_to(self.marginal_dist.mean, self.shape())

    @property
    def variance(self) -> jax.Array:
        return jnp.broadcast_to(self.marginal_dist.variance, self.shape())


class GaussianCopulaBeta(GaussianCopula):
    """Gaussian copula with ``Beta(concentration1, concentration0)`` marginals.

    ``concentration1``, ``concentration0``: positive, broadcasting to ``(..., d)``; exactly one
    of ``correlation_matrix`` or ``correlation_cholesky``, ``(..., d, d)``. ``event_shape =
    (d,)``. Sampling inverts the Beta CDF numerically. ``log_prob`` is differentiable in the
    concentrations (NUTS on them works), and so are the draws (implicit function theorem),
    but ``has_rsample`` stays False, as in NumPyro.
    """

    arg_constraints = {
        "concentration1": constraints.positive,
        "concentration0": constraints.positive,
        "correlation_matrix": constraints.corr_matrix,
        "correlation_cholesky": constraints.corr_cholesky,
    }
    support = constraints.independent(constraints.unit_interval, 1)
    has_rsample = False

    def __init__(
        self,
        concentration1: ArrayLike,
        concentration0: ArrayLike,
        correlation_matrix: ArrayLike | None = None,
        correlation_cholesky: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        corr = correlation_matrix if correlation_cholesky is None else correlation_cholesky
        c1, c0 = jnp.asarray(concentration1), jnp.asarray(concentration0)
        if corr is not None and jnp.ndim(corr) >= 1:
            # scalar (or size-1) concentrations are shared by the d coupled coordinates
            shape = lazy_broadcast_shape(jnp.shape(c1), jnp.shape(c0), jnp.shape(corr)[-1:])
            c1, c0 = jnp.broadcast_to(c1, shape), jnp.broadcast_to(c0, shape)
        marginal = Beta(c1, c0)
        self.concentration1 = jnp.asarray(marginal.concentration1)
        self.concentration0 = jnp.asarray(marginal.concentration0)
        super().__init__(
            marginal, correlation_matrix, correlation_cholesky, validate_args=validate_args
        )
