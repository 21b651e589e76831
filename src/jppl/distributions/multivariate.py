"""Multivariate distributions: Dirichlet, multivariate normals and LKJ priors on correlations.

Shapes follow the library convention: a draw has shape ``sample_shape + batch_shape +
event_shape``. For the vector-valued distributions here ``event_shape == (k,)``; for the
LKJ family ``event_shape == (d, d)``. Parameters are stored broadcast to the full batch shape,
and ``sample`` reads the batch shape off the stored parameters (not ``self.batch_shape``) so
that it stays right when a distribution is mapped over by ``jax.vmap``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve, solve_triangular
from jax.scipy.special import digamma, gammaln, xlogy
from jax.typing import ArrayLike

from jppl.distributions import constraints
from jppl.distributions.distribution import Distribution
from jppl.distributions.util import lazy_broadcast_shape, validate_sample_shape

__all__ = [
    "Dirichlet",
    "LKJ",
    "LKJCholesky",
    "LowRankMultivariateNormal",
    "MultivariateNormal",
]

_LOG_2PI = math.log(2 * math.pi)


# -- helpers ------------------------------------------------------------------------------------
def _as_float(x: ArrayLike) -> jax.Array:
    """``x`` as an array of a floating dtype (the default float for int/bool input)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def _tri_solve(L, x):
    """``L^{-1} x`` for lower-triangular ``L: (B..., n, n)`` and vectors ``x: (S..., n)``.

    ``S`` must broadcast against ``B``; the result has shape ``broadcast(S, B) + (n,)``. When
    ``x`` only adds leading (sample) dims to ``B``, those are folded into the columns of a single
    triangular solve so that ``L`` is never copied per sample.
    """
    n = L.shape[-1]
    lb = L.shape[:-2]
    full = lazy_broadcast_shape(x.shape[:-1], lb)
    x = jnp.broadcast_to(x, full + (n,))
    n_extra = len(full) - len(lb)
    if full[n_extra:] == lb:
        extra = full[:n_extra]
        m = int(np.prod(extra, dtype=int))
        # (extra..., B..., n) -> (B..., n, m)
        xt = jnp.moveaxis(jnp.reshape(x, (m,) + lb + (n,)), 0, -1)
        y = solve_triangular(L, xt, lower=True)
        return jnp.reshape(jnp.moveaxis(y, -1, 0), full + (n,))
    L = jnp.broadcast_to(L, full + (n, n))
    return solve_triangular(L, x[..., None], lower=True)[..., 0]


def _mat_vec(A, x):
    """Batched ``A @ x`` for ``A: (..., m, n)``, ``x: (..., n)`` with broadcasting."""
    return jnp.squeeze(jnp.matmul(A, x[..., None]), -1)


def _precision_to_scale_tril(P):
    """Lower Cholesky factor ``L`` of ``P^{-1}`` without forming the inverse explicitly.

    With ``J`` the reversal permutation, ``chol(J P J) = Lf`` gives ``P = U U^T`` where
    ``U = J Lf J`` is upper triangular, so ``P^{-1} = U^{-T} U^{-1}`` and ``L = U^{-T}``.
    """
    Lf = jnp.linalg.cholesky(jnp.flip(P, axis=(-2, -1)))
    U = jnp.flip(Lf, axis=(-2, -1))
    eye = jnp.broadcast_to(jnp.eye(P.shape[-1], dtype=P.dtype), P.shape)
    U_inv = solve_triangular(U, eye, lower=False)
    return jnp.swapaxes(U_inv, -2, -1)


def _tril_inverse(L):
    eye = jnp.broadcast_to(jnp.eye(L.shape[-1], dtype=L.dtype), L.shape)
    return solve_triangular(L, eye, lower=True)


def _log_diag_sum(L):
    return jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)


# -- Dirichlet ----------------------------------------------------------------------------------
class Dirichlet(Distribution):
    """Dirichlet distribution on the probability simplex.

    ``concentration``: ``(..., k)``, positive; ``batch_shape = concentration.shape[:-1]``,
    ``event_shape = (k,)``. Draws are reparameterized (implicit gradients through the gamma
    sampler of ``jax.random.dirichlet``).
    """

    arg_constraints = {"concentration": constraints.independent(constraints.positive, 1)}
    support = constraints.simplex
    has_rsample = True

    def __init__(self, concentration: ArrayLike, *, validate_args: bool | None = None):
        concentration = _as_float(concentration)
        if jnp.ndim(concentration) < 1:
            raise ValueError("Dirichlet: `concentration` must have at least one dimension.")
        self.concentration = concentration
        super().__init__(
            concentration.shape[:-1], concentration.shape[-1:], validate_args=validate_args
        )

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        shape = validate_sample_shape(sample_shape) + self.concentration.shape[:-1]
        x = jax.random.dirichlet(key, self.concentration, shape=shape)
        # Keep draws strictly inside the simplex so that log_prob stays finite.
        tiny = jnp.finfo(x.dtype).tiny
        return jnp.clip(x, tiny, 1.0)

    def log_prob(self, value) -> jax.Array:
        """``value: (..., k)``; returns ``broadcast(value.shape[:-1], batch)``.

        ``-inf`` off the (closed) simplex: a negative entry, or entries whose sum is not 1 up
        to float rounding (``max(1e-5, k * eps)``, no stricter than ``constraints.simplex``).
        """
        a = self.concentration
        value = jnp.asarray(value)
        value = value.astype(jnp.result_type(value, a))
        k = a.shape[-1]
        tol = max(1e-5, k * float(jnp.finfo(value.dtype).eps))
        ok = jnp.all(value >= 0, -1) & (jnp.abs(jnp.sum(value, -1) - 1.0) <= tol)
        # off the simplex, evaluate at the centre instead so that gradients stay finite
        x = jnp.where(ok[..., None], value, 1.0 / k)
        norm = gammaln(jnp.sum(a, -1)) - jnp.sum(gammaln(a), -1)
        return jnp.where(ok, jnp.sum(xlogy(a - 1.0, x), -1) + norm, -jnp.inf)

    @property
    def mean(self) -> jax.Array:
        return self.concentration / jnp.sum(self.concentration, -1, keepdims=True)

    @property
    def variance(self) -> jax.Array:
        a = self.concentration
        a0 = jnp.sum(a, -1, keepdims=True)
        return a * (a0 - a) / (a0**2 * (a0 + 1))

    def entropy(self) -> jax.Array:
        a = self.concentration
        k = a.shape[-1]
        a0 = jnp.sum(a, -1)
        log_b = jnp.sum(gammaln(a), -1) - gammaln(a0)
        return log_b + (a0 - k) * digamma(a0) - jnp.sum((a - 1) * digamma(a), -1)


# -- MultivariateNormal -------------------------------------------------------------------------
def _covariance_of(scale_tril: jax.Array) -> jax.Array:
    """``L L^T`` for a ``(..., k, k)`` lower Cholesky factor ``L``."""
    return jnp.matmul(scale_tril, jnp.swapaxes(scale_tril, -2, -1))


def _precision_of(scale_tril: jax.Array) -> jax.Array:
    """``(L L^T)^{-1} = L^{-T} L^{-1}`` for a ``(..., k, k)`` lower Cholesky factor ``L``."""
    L_inv = _tril_inverse(scale_tril)
    return jnp.matmul(jnp.swapaxes(L_inv, -2, -1), L_inv)


class MultivariateNormal(Distribution):
    """Multivariate normal, parameterized by exactly one of a covariance matrix, a precision
    matrix, or the lower Cholesky factor ``scale_tril`` of the covariance.

    ``loc``: ``(..., k)`` (a scalar is broadcast to the event); matrices: ``(..., k, k)``.
    ``batch_shape`` broadcasts ``loc.shape[:-1]`` with the matrix's leading dims;
    ``event_shape = (k,)``. ``scale_tril`` is the primary (stored) parameter; the covariance and
    precision are exposed as properties, computed on demand unless given.
    """

    arg_constraints = {
        "loc": constraints.real_vector,
        "covariance_matrix": constraints.positive_definite,
        "precision_matrix": constraints.positive_definite,
        "scale_tril": constraints.lower_cholesky,
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        loc: ArrayLike = 0.0,
        covariance_matrix: ArrayLike | None = None,
        precision_matrix: ArrayLike | None = None,
        scale_tril: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        given = [
            (n, m)
            for n, m in (
                ("covariance_matrix", covariance_matrix),
                ("precision_matrix", precision_matrix),
                ("scale_tril", scale_tril),
            )
            if m is not None
        ]
        if len(given) != 1:
            names = [n for n, _ in given] or "none"
            raise ValueError(
                "MultivariateNormal: pass exactly one of `covariance_matrix`, "
                f"`precision_matrix` or `scale_tril` (got {names})."
            )
        name, matrix = given[0]
        matrix = _as_float(matrix)
        if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
            raise ValueError(
                f"MultivariateNormal: `{name}` must be a (batch of) square matrices, got shape "
                f"{matrix.shape}."
            )
        loc = _as_float(loc)
        if loc.ndim == 0:
            loc = loc[None]
        k = matrix.shape[-1]
        if loc.shape[-1] not in (1, k):
            raise ValueError(
                f"MultivariateNormal: `loc` has event size {loc.shape[-1]} but `{name}` is {k}x{k}."
            )
        batch_shape = lazy_broadcast_shape(loc.shape[:-1], matrix.shape[:-2])
        dtype = jnp.result_type(loc, matrix)
        matrix = jnp.broadcast_to(matrix.astype(dtype), batch_shape + (k, k))
        self.loc = jnp.broadcast_to(loc.astype(dtype), batch_shape + (k,))
        if name == "scale_tril":
            self.scale_tril = matrix
        elif name == "covariance_matrix":
            # Kept so that validation sees the user's matrix and the property returns it exactly.
            self.__dict__["covariance_matrix"] = matrix
            self.scale_tril = jnp.linalg.cholesky(matrix)
        else:
            self.__dict__["precision_matrix"] = matrix
            self.scale_tril = _precision_to_scale_tril(matrix)
        super().__init__(batch_shape, (k,), validate_args=validate_args)

    @property
    def covariance_matrix(self) -> jax.Array:
        """``(..., k, k)``: ``scale_tril @ scale_tril.T`` (or the matrix given)."""
        cov = self.__dict__.get("covariance_matrix")
        return _covariance_of(self.scale_tril) if cov is None else cov

    @property
    def precision_matrix(self) -> jax.Array:
        """``(..., k, k)``: the inverse covariance (or the matrix given)."""
        prec = self.__dict__.get("precision_matrix")
        return _precision_of(self.scale_tril) if prec is None else prec

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        shape = validate_sample_shape(sample_shape) + self.loc.shape
        eps = jax.random.normal(key, shape, dtype=self.loc.dtype)
        return self.loc + _mat_vec(self.scale_tril, eps)

    def log_prob(self, value) -> jax.Array:
        """``value: (..., k)``; returns ``broadcast(value.shape[:-1], batch_shape)``."""
        z = _tri_solve(self.scale_tril, value - self.loc)
        k = self.event_shape[0]
        return -0.5 * (k * _LOG_2PI + jnp.sum(z * z, -1)) - _log_diag_sum(self.scale_tril)

    @property
    def mean(self) -> jax.Array:
        return self.loc

    @property
    def variance(self) -> jax.Array:
        return jnp.sum(self.scale_tril**2, axis=-1)

    def entropy(self) -> jax.Array:
        k = self.event_shape[0]
        return 0.5 * k * (1.0 + _LOG_2PI) + _log_diag_sum(self.scale_tril)


# -- LowRankMultivariateNormal ------------------------------------------------------------------
class LowRankMultivariateNormal(Distribution):
    """Multivariate normal with covariance ``cov_factor @ cov_factor.T + diag(cov_diag)``.

    ``loc``: ``(..., k)``; ``cov_factor``: ``(..., k, r)``; ``cov_diag``: ``(..., k)``, positive.
    Densities use the Woodbury identity and the matrix determinant lemma, at ``O(k r^2)`` cost.
    """

    arg_constraints = {
        "loc": constraints.real_vector,
        "cov_factor": constraints.independent(constraints.real, 2),
        "cov_diag": constraints.independent(constraints.positive, 1),
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        loc: ArrayLike,
        cov_factor: ArrayLike,
        cov_diag: ArrayLike,
        *,
        validate_args: bool | None = None,
    ):
        loc, cov_factor, cov_diag = _as_float(loc), _as_float(cov_factor), _as_float(cov_diag)
        if loc.ndim < 1 or cov_factor.ndim < 2 or cov_diag.ndim < 1:
            raise ValueError(
                "LowRankMultivariateNormal: need `loc` (..., k), `cov_factor` (..., k, r) and "
                f"`cov_diag` (..., k); got shapes {loc.shape}, {cov_factor.shape}, "
                f"{cov_diag.shape}."
            )
        k, r = cov_factor.shape[-2:]
        if loc.shape[-1] != k or cov_diag.shape[-1] != k:
            raise ValueError(
                "LowRankMultivariateNormal: event sizes disagree: `loc` "
                f"{loc.shape}, `cov_factor` {cov_factor.shape}, `cov_diag` {cov_diag.shape}."
            )
        batch_shape = lazy_broadcast_shape(
            loc.shape[:-1], cov_factor.shape[:-2], cov_diag.shape[:-1]
        )
        dtype = jnp.result_type(loc, cov_factor, cov_diag)
        self.loc = jnp.broadcast_to(loc.astype(dtype), batch_shape + (k,))
        self.cov_factor = jnp.broadcast_to(cov_factor.astype(dtype), batch_shape + (k, r))
        self.cov_diag = jnp.broadcast_to(cov_diag.astype(dtype), batch_shape + (k,))
        super().__init__(batch_shape, (k,), validate_args=validate_args)

    def _capacitance_tril(self):
        """Cholesky factor of ``I_r + W^T D^{-1} W``: ``(..., r, r)``."""
        W, D = self.cov_factor, self.cov_diag
        Wt_Dinv = jnp.swapaxes(W / D[..., None], -2, -1)
        r = W.shape[-1]
        cap = jnp.eye(r, dtype=W.dtype) + jnp.matmul(Wt_Dinv, W)
        return jnp.linalg.cholesky(cap)

    def _log_det(self):
        """``log det(W W^T + D)`` by the matrix determinant lemma; shape ``batch_shape``."""
        return 2 * _log_diag_sum(self._capacitance_tril()) + jnp.sum(jnp.log(self.cov_diag), -1)

    def _mahalanobis(self, diff, cap_tril=None):
        """``diff^T (W W^T + D)^{-1} diff`` for ``diff: (..., k)`` (Woodbury identity)."""
        if cap_tril is None:
            cap_tril = self._capacitance_tril()
        W, D = self.cov_factor, self.cov_diag
        diff_d = diff / D
        wt = jnp.einsum("...kr,...k->...r", W, diff_d)
        z = _tri_solve(cap_tril, wt)
        return jnp.sum(diff * diff_d, -1) - jnp.sum(z * z, -1)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        sample_shape = validate_sample_shape(sample_shape)
        k_w, k_d = jax.random.split(key)
        r = self.cov_factor.shape[-1]
        dtype = self.loc.dtype
        eps_w = jax.random.normal(k_w, sample_shape + self.loc.shape[:-1] + (r,), dtype=dtype)
        eps_d = jax.random.normal(k_d, sample_shape + self.loc.shape, dtype=dtype)
        return self.loc + _mat_vec(self.cov_factor, eps_w) + jnp.sqrt(self.cov_diag) * eps_d

    def log_prob(self, value) -> jax.Array:
        """``value: (..., k)``; returns ``broadcast(value.shape[:-1], batch_shape)``."""
        cap_tril = self._capacitance_tril()
        maha = self._mahalanobis(value - self.loc, cap_tril)
        log_det = 2 * _log_diag_sum(cap_tril) + jnp.sum(jnp.log(self.cov_diag), -1)
        k = self.event_shape[0]
        return -0.5 * (k * _LOG_2PI + log_det + maha)

    @property
    def mean(self) -> jax.Array:
        return self.loc

    @property
    def variance(self) -> jax.Array:
        return jnp.sum(self.cov_factor**2, -1) + self.cov_diag

    @property
    def covariance_matrix(self) -> jax.Array:
        """``(..., k, k)``: ``W W^T + diag(D)``."""
        W = self.cov_factor
        return jnp.matmul(W, jnp.swapaxes(W, -2, -1)) + self.cov_diag[..., None] * jnp.eye(
            W.shape[-2], dtype=W.dtype
        )

    @property
    def precision_matrix(self) -> jax.Array:
        """``(..., k, k)``: ``D^{-1} - D^{-1} W C^{-1} W^T D^{-1}`` with ``C`` the capacitance."""
        W, D = self.cov_factor, self.cov_diag
        Wt_Dinv = jnp.swapaxes(W / D[..., None], -2, -1)
        A = cho_solve((self._capacitance_tril(), True), Wt_Dinv)
        k = W.shape[-2]
        return jnp.eye(k, dtype=W.dtype) / D[..., None] - jnp.matmul(
            jnp.swapaxes(Wt_Dinv, -2, -1), A
        )

    @property
    def scale_tril(self) -> jax.Array:
        """``(..., k, k)``: Cholesky factor of the covariance (``O(k^3)``)."""
        return jnp.linalg.cholesky(self.covariance_matrix)

    def entropy(self) -> jax.Array:
        k = self.event_shape[0]
        return 0.5 * (k * (1.0 + _LOG_2PI) + self._log_det())


# -- LKJ ----------------------------------------------------------------------------------------
def _lkj_log_normalizer(dimension: int, concentration):
    """``log c_d(eta)``, where ``c_d(eta) = integral of det(R)^(eta-1)`` over ``d x d``
    correlation matrices (Lebesgue measure on the off-diagonal entries); Lewandowski,
    Kurowicka & Joe (2009), eq. (16)."""
    d = dimension
    eta = concentration
    total = jnp.zeros_like(eta)
    for k in range(1, d):
        alpha = eta + 0.5 * (d - k - 1)
        log_beta = 2 * gammaln(alpha) - gammaln(2 * alpha)
        total = total + (d - k) * ((2 * eta - 2 + d - k) * math.log(2.0) + log_beta)
    return total


def _lkj_cholesky_sample(key, dimension: int, concentration, shape, method: str):
    """Draw Cholesky factors of LKJ(eta) correlation matrices: ``shape + (d, d)``.

    ``concentration`` broadcasts against ``shape``.
    """
    d = dimension
    eta = jnp.broadcast_to(concentration, shape)
    dtype = eta.dtype
    eye = jnp.eye(d, dtype=dtype)
    if method == "onion":
        # Row i (i >= 1) is [sqrt(y_i) u_i, sqrt(1 - y_i)], u_i uniform on the sphere in R^i,
        # y_i ~ Beta(i / 2, eta + (d - 1 - i) / 2).
        k_beta, k_dir = jax.random.split(key)
        i = jnp.arange(1, d, dtype=dtype)
        a = jnp.broadcast_to(i / 2, shape + (d - 1,))
        b = eta[..., None] + (d - 1 - i) / 2
        y = jax.random.beta(k_beta, a, b, shape + (d - 1,), dtype=dtype)
        y = jnp.clip(y, 0.0, 1.0 - jnp.finfo(dtype).eps)
        y = jnp.concatenate([jnp.zeros(shape + (1,), dtype=dtype), y], -1)
        z = jnp.tril(jax.random.normal(k_dir, shape + (d, d), dtype=dtype), -1)
        norm = jnp.sqrt(jnp.sum(z * z, -1, keepdims=True))
        u = z / jnp.where(norm > 0, norm, 1.0)
        return u * jnp.sqrt(y)[..., None] + eye * jnp.sqrt(1.0 - y)[..., None]
    if method == "cvine":
        # Partial correlation of (j, i) given 0..j-1 is 2 Beta(b_j, b_j) - 1 with
        # b_j = eta + (d - 2 - j) / 2; rows are assembled by stick-breaking.
        # (column d - 1 is never used; clamping j keeps its parameter valid)
        j = jnp.minimum(jnp.arange(d, dtype=dtype), d - 2)
        b = eta[..., None, None] + (d - 2 - j) / 2
        b = jnp.broadcast_to(b, shape + (d, d))
        p = 2 * jax.random.beta(key, b, b, shape + (d, d), dtype=dtype) - 1
        lim = 1.0 - jnp.finfo(dtype).eps
        p = jnp.tril(jnp.clip(p, -lim, lim), -1)
        w = 1.0 - p * p
        cp = jnp.concatenate(
            [jnp.ones(shape + (d, 1), dtype=dtype), jnp.cumprod(w[..., :-1], -1)], -1
        )
        s = jnp.sqrt(cp)
        return p * s + eye * s
    raise ValueError(f"LKJ: unknown sample_method {method!r}; use 'onion' or 'cvine'.")


class _LKJBase(Distribution):
    """Shared parameters of :class:`LKJCholesky` and :class:`LKJ`: ``dimension``,
    ``concentration`` (shape ``batch_shape``) and ``sample_method``; ``event_shape = (d, d)``.
    """

    arg_constraints = {"concentration": constraints.positive}

    def __init__(
        self,
        dimension: int,
        concentration: ArrayLike = 1.0,
        sample_method: str = "onion",
        *,
        validate_args: bool | None = None,
    ):
        dimension = int(dimension)
        if dimension < 2:
            raise ValueError(f"{type(self).__name__}: `dimension` must be >= 2, got {dimension}.")
        if sample_method not in ("onion", "cvine"):
            raise ValueError(
                f"{type(self).__name__}: sample_method must be 'onion' or 'cvine', "
                f"got {sample_method!r}."
            )
        self.dimension = dimension
        self.sample_method = sample_method
        self.concentration = _as_float(concentration)
        super().__init__(
            jnp.shape(self.concentration), (dimension, dimension), validate_args=validate_args
        )

    def _sample_cholesky(self, key, sample_shape: Sequence[int]) -> jax.Array:
        """Cholesky factors of LKJ correlation matrices: ``sample_shape + batch_shape + (d, d)``."""
        shape = validate_sample_shape(sample_shape) + jnp.shape(self.concentration)
        return _lkj_cholesky_sample(
            key, self.dimension, self.concentration, shape, self.sample_method
        )


class LKJCholesky(_LKJBase):
    """LKJ distribution over lower Cholesky factors ``L`` of ``d x d`` correlation matrices.

    The correlation matrix ``R = L L^T`` has density proportional to ``det(R)^(eta - 1)``.
    The density of ``L`` is with respect to Lebesgue measure on its strictly-lower entries:
    ``prod_{i>=1} L_ii^(2 (eta - 1) + d - 1 - i) / c_d(eta)``.

    ``dimension``: ``d >= 2``; ``concentration``: ``eta > 0``, shape ``batch_shape``;
    ``event_shape = (d, d)``. ``sample_method``: ``'onion'`` (default) or ``'cvine'``.
    """

    support = constraints.corr_cholesky

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        return self._sample_cholesky(key, sample_shape)

    def log_prob(self, value) -> jax.Array:
        """``value: (..., d, d)`` lower Cholesky factor; returns ``value.shape[:-2]`` (with
        the batch shape broadcast in)."""
        d = self.dimension
        eta = self.concentration
        log_diag = jnp.log(jnp.diagonal(value, axis1=-2, axis2=-1)[..., 1:])
        i = jnp.arange(1, d, dtype=log_diag.dtype)
        order = 2 * (eta[..., None] - 1) + (d - 1 - i)
        unnorm = jnp.sum(order * log_diag, -1)
        return unnorm - _lkj_log_normalizer(d, eta)


class LKJ(_LKJBase):
    """LKJ distribution over ``d x d`` correlation matrices: density ``det(R)^(eta - 1) /
    c_d(eta)`` with respect to Lebesgue measure on the strictly-lower entries of ``R``.

    ``concentration``: ``eta > 0`` of shape ``batch_shape``; ``event_shape = (d, d)``.
    """

    support = constraints.corr_matrix

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        L = self._sample_cholesky(key, sample_shape)
        return jnp.matmul(L, jnp.swapaxes(L, -2, -1))

    def log_prob(self, value) -> jax.Array:
        """``value: (..., d, d)`` correlation matrix; returns ``value.shape[:-2]`` (with the
        batch shape broadcast in)."""
        eta = self.concentration
        logdet = 2 * _log_diag_sum(jnp.linalg.cholesky(value))
        return (eta - 1) * logdet - _lkj_log_normalizer(self.dimension, eta)

    @property
    def mean(self) -> jax.Array:
        d = self.dimension
        eta = self.concentration
        return jnp.broadcast_to(jnp.eye(d, dtype=eta.dtype), jnp.shape(eta) + (d, d))
