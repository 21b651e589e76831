"""Mass-matrix estimation: Welford's running (co)variances, Stan's regularization, and
nutpie's diagonal estimates from gradients (kernel-free, on flat ``(d,)`` positions)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = [
    "WelfordState",
    "diag_from_gradient",
    "diag_from_variances",
    "regularize_inverse_mass_matrix",
    "welford_final",
    "welford_init",
    "welford_update",
]

# Bounds on the adapted diagonal of M^{-1} (nutpie uses 1e-20 .. 1e20 in float64; these keep
# float32 arithmetic finite).
_DIAG_LOWER = 1e-10
_DIAG_UPPER = 1e10


class WelfordState(NamedTuple):
    """Running mean and sum of squared deviations (Welford's algorithm).

    Attributes:
        mean: ``(d,)`` running mean.
        m2: ``(d,)`` sum of squared deviations (diagonal) or ``(d, d)`` sum of outer products
            of deviations (dense).
        count: ``()`` int32, number of samples added.
    """

    mean: jax.Array
    m2: jax.Array
    count: jax.Array


def welford_init(dim: int, dense: bool = False, dtype: Any = None) -> WelfordState:
    """Empty estimator for ``(dim,)`` samples: variances (``dense=False``) or a covariance."""
    dtype = jnp.zeros((), dtype).dtype if dtype is not None else jnp.zeros(()).dtype
    m2_shape = (dim, dim) if dense else (dim,)
    return WelfordState(
        jnp.zeros((dim,), dtype), jnp.zeros(m2_shape, dtype), jnp.zeros((), jnp.int32)
    )


def welford_update(state: WelfordState, sample: ArrayLike) -> WelfordState:
    """Add one sample ``(d,)`` to the estimator (the diagonal/dense kind is read from
    ``state.m2``'s rank)."""
    sample = jnp.asarray(sample, state.mean.dtype)
    count = state.count + 1
    delta = sample - state.mean
    mean = state.mean + delta / count.astype(state.mean.dtype)
    if state.m2.ndim == 2:
        m2 = state.m2 + jnp.outer(sample - mean, delta)
    else:
        m2 = state.m2 + (sample - mean) * delta
    return WelfordState(mean, m2, count)


def welford_final(state: WelfordState) -> tuple[jax.Array, jax.Array]:
    """Unbiased sample variances ``(d,)`` or covariance ``(d, d)`` (``m2 / (n - 1)``) and the
    count ``n`` (``()`` int32). With fewer than two samples the estimate is zero."""
    n = state.count.astype(state.m2.dtype)
    cov = jnp.where(state.count > 1, state.m2 / jnp.maximum(n - 1.0, 1.0), 0.0)
    if cov.ndim == 2:
        cov = 0.5 * (cov + cov.T)
    return cov, state.count


def regularize_inverse_mass_matrix(covariance: ArrayLike, count: ArrayLike) -> jax.Array:
    """Stan's shrinkage of a variance ``(d,)`` or covariance ``(d, d)`` estimate from ``count``
    draws: ``(n / (n + 5)) * cov + 1e-3 * (5 / (n + 5))`` (times the identity if dense)."""
    covariance = jnp.asarray(covariance)
    n = jnp.asarray(count, covariance.dtype)
    shrink = 1e-3 * (5.0 / (n + 5.0))
    scaled = (n / (n + 5.0)) * covariance
    if covariance.ndim == 2:
        return scaled + shrink * jnp.eye(covariance.shape[0], dtype=covariance.dtype)
    return scaled + shrink


def diag_from_gradient(grad: jax.Array) -> jax.Array:
    """nutpie's initial diagonal ``1 / |grad|`` ``(d,)`` (1 where the gradient is 0 or not
    finite), clipped to ``[1e-10, 1e10]``."""
    inv = 1.0 / jnp.abs(grad)
    inv = jnp.where(jnp.isfinite(inv) & (inv > 0), inv, 1.0)
    return jnp.clip(inv, _DIAG_LOWER, _DIAG_UPPER).astype(grad.dtype)


def diag_from_variances(draw_var: jax.Array, grad_var: jax.Array, fallback: jax.Array) -> jax.Array:
    """nutpie's diagonal ``sqrt(draw_var / grad_var)`` ``(d,)`` (the Fisher-divergence optimum
    for a diagonal metric), ``fallback`` where it is not finite and positive."""
    diag = jnp.sqrt(draw_var / grad_var)
    diag = jnp.where(jnp.isfinite(diag) & (diag > 0), diag, fallback)
    return jnp.clip(diag, _DIAG_LOWER, _DIAG_UPPER)
