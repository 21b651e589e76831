"""Euclidean metrics: the Gaussian kinetic energy ``K(p) = p^T M^{-1} p / 2``.

The sampler is parameterized by the *inverse* mass matrix ``M^{-1}``, which adaptation
estimates as the posterior covariance. It is either a vector ``(d,)`` (diagonal metric) or a
matrix ``(d, d)`` (dense metric); a scalar is accepted as a shared diagonal.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.typing import ArrayLike

__all__ = ["Metric", "gaussian_euclidean"]


class Metric(NamedTuple):
    """The momentum distribution and the quantities derived from it.

    Attributes:
        sample_momentum: ``(key, position (d,)) -> momentum (d,)``, a draw from ``N(0, M)``
            with the position's shape and dtype.
        kinetic_energy: ``momentum (d,) -> ()``, ``p^T M^{-1} p / 2``.
        velocity: ``momentum (d,) -> (d,)``, ``dK/dp = M^{-1} p``.
        check_turning: ``(velocity_left (d,), velocity_right (d,), momentum_sum (d,)) -> ()``
            bool; the generalized U-turn criterion. A trajectory segment whose momenta sum to
            ``momentum_sum`` and whose end points have the given velocities is *turning*
            unless ``momentum_sum . velocity_left > 0`` and ``momentum_sum . velocity_right
            > 0``.
        inverse_mass_matrix: the ``(d,)`` or ``(d, d)`` array the metric was built from.
    """

    sample_momentum: Callable[[jax.Array, jax.Array], jax.Array]
    kinetic_energy: Callable[[jax.Array], jax.Array]
    velocity: Callable[[jax.Array], jax.Array]
    check_turning: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
    inverse_mass_matrix: jax.Array


def _check_turning(
    velocity_left: jax.Array, velocity_right: jax.Array, momentum_sum: jax.Array
) -> jax.Array:
    """Generalized U-turn test: True unless the summed momentum points along both ends."""
    left = jnp.vdot(momentum_sum, velocity_left)
    right = jnp.vdot(momentum_sum, velocity_right)
    return jnp.logical_not((left > 0) & (right > 0))


def gaussian_euclidean(inverse_mass_matrix: ArrayLike) -> Metric:
    """Build the Gaussian Euclidean metric with the given inverse mass matrix.

    Args:
        inverse_mass_matrix: ``()``, ``(d,)`` (diagonal of ``M^{-1}``) or ``(d, d)``
            (symmetric positive definite ``M^{-1}``).

    Returns:
        A :class:`Metric`. For a dense metric the momentum is drawn as ``p = L^{-T} z`` with
        ``z ~ N(0, I)`` and ``L`` the lower Cholesky factor of ``M^{-1}``; then
        ``Cov(p) = (L L^T)^{-1} = M`` and ``M`` itself is never formed or inverted.
    """
    inverse_mass_matrix = jnp.asarray(inverse_mass_matrix)
    if not jnp.issubdtype(inverse_mass_matrix.dtype, jnp.floating):
        inverse_mass_matrix = inverse_mass_matrix.astype(jnp.result_type(float))
    ndim = inverse_mass_matrix.ndim

    if ndim <= 1:
        momentum_scale = jax.lax.rsqrt(inverse_mass_matrix)

        def velocity(momentum: jax.Array) -> jax.Array:
            return inverse_mass_matrix * momentum

        def sample_momentum(key: jax.Array, position: jax.Array) -> jax.Array:
            noise = jax.random.normal(key, jnp.shape(position), dtype=position.dtype)
            return (noise * momentum_scale).astype(position.dtype)

    elif ndim == 2:
        chol_inverse_mass = jnp.linalg.cholesky(inverse_mass_matrix)

        def velocity(momentum: jax.Array) -> jax.Array:
            return inverse_mass_matrix @ momentum

        def sample_momentum(key: jax.Array, position: jax.Array) -> jax.Array:
            noise = jax.random.normal(key, jnp.shape(position), dtype=position.dtype)
            momentum = solve_triangular(chol_inverse_mass, noise, lower=True, trans="T")
            return momentum.astype(position.dtype)

    else:
        raise ValueError(
            "inverse_mass_matrix must be a scalar, a vector (diagonal) or a matrix (dense); "
            f"got an array of shape {inverse_mass_matrix.shape}"
        )

    def kinetic_energy(momentum: jax.Array) -> jax.Array:
        return 0.5 * jnp.vdot(momentum, velocity(momentum))

    return Metric(
        sample_momentum=sample_momentum,
        kinetic_energy=kinetic_energy,
        velocity=velocity,
        check_turning=_check_turning,
        inverse_mass_matrix=inverse_mass_matrix,
    )
