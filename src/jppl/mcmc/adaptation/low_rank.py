r"""nutpie's low-rank modified mass matrix (kernel-free).

After the diagonal scaling ``D = sqrt(Var(x) / Var(grad))`` (population variances), the draws
``D^{-1/2}(x - mean)`` and gradients ``D^{1/2}(grad - mean)`` of a window are projected onto
the subspace they span. There the SPD matrix ``S`` minimizing the sample Fisher divergence
solves ``S C_grad S = C_draw``, i.e. the geometric mean
``S = C_g^{-1/2} (C_g^{1/2} C_x C_g^{1/2})^{1/2} C_g^{-1/2}`` of the regularized covariances
``C + n * gamma * I``. The eigenvalues of ``S`` outside ``[1 / cutoff, cutoff]`` (at most
``rank`` of them, the farthest from 1 in log scale) are kept, giving

    ``M^{-1} = D^{1/2} (I + U (Lambda - I) U^T) D^{1/2}``.

The kernels accept only diagonal or dense metrics, so this matrix is returned as a dense
``(d, d)`` array: the kernel then pays ``O(d^2)`` per leapfrog step and a Cholesky
factorization (``O(d^3)``) per transition, and each low-rank update costs a few ``(m, m)``
eigendecompositions with ``m = min(d, 2 * window)``. This is fine for posteriordb-sized models
(``d`` up to a few hundred), not for very large ``d``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jppl.mcmc.adaptation.mass_matrix import diag_from_variances

__all__ = ["LowRankBuffer", "low_rank_inverse_mass_matrix"]


class LowRankBuffer(NamedTuple):
    """Ring buffer of recent draws and gradients (low-rank nutpie adaptation).

    Attributes:
        draws: ``(capacity, d)``.
        grads: ``(capacity, d)``.
        sample: ``(capacity,)`` int32, sample number stored in each slot (``-1``: empty).
        good: ``(capacity,)`` bool, the slot holds a draw that counts (the chain moved).
    """

    draws: jax.Array
    grads: jax.Array
    sample: jax.Array
    good: jax.Array


def _spd_geometric_mean_eigh(
    draws: jax.Array, grads: jax.Array, n: jax.Array, reg: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Eigen-decomposition ``(values (m,), vectors (m, m))`` of the SPD ``S`` solving
    ``S B S = A`` for ``A = draws^T draws / n + reg I`` and ``B = grads^T grads / n + reg I``
    (``draws``, ``grads``: ``(N, m)``, centred and masked rows).

    ``S = A # B^{-1}`` is computed from factors only, so the condition number is never squared
    (forming ``B^{1/2} A B^{1/2}`` would lose everything below ``reg^2`` in float32):
    ``B = R^T R`` from the QR factorization of ``[grads / sqrt(n); sqrt(reg) I]``; the SVD of
    ``K = [draws / sqrt(n); sqrt(reg) I] R^T`` gives ``(R A R^T)^{1/2} = V Sigma V^T``; then
    ``S = G G^T`` with ``G = R^{-1} V Sigma^{1/2}``, and the SVD of ``G`` yields the
    eigenvalues of ``S`` as squared singular values (positive by construction).
    """
    m = draws.shape[1]
    dtype = draws.dtype
    root_reg = jnp.sqrt(reg) * jnp.eye(m, dtype=dtype)
    root_n = jnp.sqrt(n)
    factor_a = jnp.concatenate([draws / root_n, root_reg], axis=0)
    factor_b = jnp.concatenate([grads / root_n, root_reg], axis=0)
    r = jnp.linalg.qr(factor_b, mode="r")[:m, :m]
    _, sigma, vt = jnp.linalg.svd(factor_a @ r.T, full_matrices=False)
    g = jax.scipy.linalg.solve_triangular(r, vt.T * jnp.sqrt(sigma), lower=False)
    vecs, singular, _ = jnp.linalg.svd(g, full_matrices=False)
    vals = jnp.clip(singular**2, 1e-12, 1e12).astype(dtype)
    return vals, vecs


def low_rank_inverse_mass_matrix(
    draws: ArrayLike,
    grads: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    rank: int = 10,
    gamma: float = 1e-5,
    cutoff: float = 2.0,
    fallback: ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """nutpie's low-rank modified inverse mass matrix from a window of draws and gradients.

    Args:
        draws: ``(n, d)`` positions.
        grads: ``(n, d)`` log-density gradients at those positions.
        weights: ``(n,)`` 0/1 mask of the rows to use (all by default).
        rank: maximum number ``k`` of eigen-directions kept (static).
        gamma: regularization; the covariances in the scaled space get ``n * gamma`` added to
            their diagonal (nutpie's convention).
        cutoff: eigenvalues in ``[1 / cutoff, cutoff]`` are treated as 1 (dropped).
        fallback: ``(d,)`` diagonal used for the coordinates where ``sqrt(Var(x) /
            Var(grad))`` is not finite and positive (e.g. a coordinate that did not move in
            float32); ones by default.

    Returns:
        ``(inverse_mass_matrix (d, d), diag (d,), eigenvalues (k,), eigenvectors (d, k))``
        where ``diag = sqrt(Var(x) / Var(grad))`` and
        ``inverse_mass_matrix = D^{1/2} (I + U (Lambda - I) U^T) D^{1/2}``; eigenvalues that
        were not kept are reported as 1. ``k = min(rank, m)`` with ``m`` the subspace
        dimension ``min(d, 2 n)``.
    """
    draws = jnp.asarray(draws)
    grads = jnp.asarray(grads, draws.dtype)
    dtype = draws.dtype
    num_rows, dim = draws.shape
    w = jnp.ones((num_rows,), dtype) if weights is None else jnp.asarray(weights, dtype)
    n = jnp.maximum(jnp.sum(w), 1.0)

    def moments(values):
        mean = (w @ values) / n
        centered = (values - mean) * w[:, None]
        return centered, jnp.sum(centered**2, axis=0) / n

    draws_c, draw_var = moments(draws)
    grads_c, grad_var = moments(grads)
    fallback = jnp.ones((dim,), dtype) if fallback is None else jnp.asarray(fallback, dtype)
    diag = diag_from_variances(draw_var, grad_var, fallback)
    scale = jnp.sqrt(diag)
    draws_s = draws_c / scale  # D^{-1/2} (x - mean)
    grads_s = grads_c * scale  # D^{1/2} (grad - mean)

    if dim <= 2 * num_rows:
        basis = None
        draws_p, grads_p = draws_s, grads_s
        m = dim
    else:
        # The covariances are the identity (times the regularization) outside the span of
        # the data, so the computation reduces to that subspace (orthonormal basis by QR).
        basis, _ = jnp.linalg.qr(jnp.concatenate([draws_s.T, grads_s.T], axis=1))
        draws_p, grads_p = draws_s @ basis, grads_s @ basis
        m = basis.shape[1]

    vals, vecs = _spd_geometric_mean_eigh(draws_p, grads_p, n, n * gamma)

    k = min(int(rank), m)
    log_vals = jnp.log(vals)
    eligible = (vals > cutoff) | (vals < 1.0 / cutoff)
    score = jnp.where(eligible, jnp.abs(log_vals), -1.0)
    _, index = jax.lax.top_k(score, k)
    kept = eligible[index]
    eigenvalues = jnp.where(kept, vals[index], 1.0)
    eigenvectors = vecs[:, index]
    if basis is not None:
        eigenvectors = basis @ eigenvectors
    correction = (eigenvectors * (eigenvalues - 1.0)) @ eigenvectors.T
    inverse_mass_matrix = (jnp.eye(dim, dtype=dtype) + correction) * jnp.outer(scale, scale)
    inverse_mass_matrix = 0.5 * (inverse_mass_matrix + inverse_mass_matrix.T)
    return inverse_mass_matrix, diag, eigenvalues, eigenvectors
