"""More multivariate distributions: Gaussian random walks, multivariate Student-t,
zero-sum normals, Wishart distributions, matrix normals, CAR and circulant normals (NumPyro's
names and parameterizations).

Shapes follow the library convention: a draw has shape ``sample_shape + batch_shape +
event_shape``. Parameters are stored broadcast to the full batch shape, and ``sample`` reads
the batch shape off the stored parameters so that it stays right under ``jax.vmap``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve, solve_triangular
from jax.scipy.special import digamma, gammaln, multigammaln
from jax.typing import ArrayLike

from jppl.distributions import constraints
from jppl.distributions.distribution import Distribution
from jppl.distributions.multivariate import _LOG_2PI, _as_float
from jppl.distributions.transforms import ZeroSumTransform
from jppl.distributions.util import is_concrete, lazy_broadcast_shape, validate_sample_shape

__all__ = [
    "CAR",
    "CirculantNormal",
    "GaussianRandomWalk",
    "InverseWishart",
    "InverseWishartCholesky",
    "MatrixNormal",
    "MultivariateStudentT",
    "Wishart",
    "WishartCholesky",
    "ZeroSumNormal",
]


def _log_diag_sum(L):
    """``sum(log(diag(L)))`` over the last two axes: ``(..., n, n) -> (...)``."""
    return jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)


def _solve_tril_vec(L, x):
    """``L^{-1} x`` for ``L: (B..., n, n)`` lower triangular, ``x: (S..., n)`` broadcasting."""
    shape = lazy_broadcast_shape(L.shape[:-2], x.shape[:-1])
    n = L.shape[-1]
    L = jnp.broadcast_to(L, shape + (n, n))
    x = jnp.broadcast_to(x, shape + (n,))
    return solve_triangular(L, x[..., None], lower=True)[..., 0]


# -- GaussianRandomWalk -------------------------------------------------------------------------
class GaussianRandomWalk(Distribution):
    """Gaussian random walk of ``num_steps`` positions starting from 0: ``x_0 ~ N(0, scale^2)``
    and ``x_t - x_{t-1} ~ N(0, scale^2)``.

    ``scale``: positive, shape ``batch_shape``; ``event_shape = (num_steps,)``.
    """

    arg_constraints = {"scale": constraints.positive}
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self, scale: ArrayLike = 1.0, num_steps: int = 1, *, validate_args: bool | None = None
    ):
        if isinstance(num_steps, bool) or not isinstance(num_steps, int | np.integer):
            raise TypeError(
                f"GaussianRandomWalk: `num_steps` must be a positive int, got {num_steps!r}."
            )
        if num_steps < 1:
            raise ValueError(
                f"GaussianRandomWalk: `num_steps` must be a positive int, got {num_steps}."
            )
        self.scale = _as_float(scale)
        self.num_steps = int(num_steps)
        super().__init__(jnp.shape(self.scale), (self.num_steps,), validate_args=validate_args)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        shape = validate_sample_shape(sample_shape) + self.scale.shape + (self.num_steps,)
        eps = jax.random.normal(key, shape, dtype=self.scale.dtype)
        return jnp.cumsum(eps, axis=-1) * self.scale[..., None]

    def log_prob(self, value) -> jax.Array:
        """``value: (..., num_steps)``; returns ``broadcast(value.shape[:-1], batch_shape)``."""
        value = jnp.asarray(value)
        # the increments, with x_{-1} = 0
        steps = jnp.diff(value, axis=-1, prepend=jnp.zeros_like(value[..., :1]))
        s = self.scale[..., None]
        lp = -0.5 * (steps / s) ** 2 - jnp.log(s) - 0.5 * _LOG_2PI
        return jnp.sum(lp, axis=-1)

    @property
    def mean(self) -> jax.Array:
        return jnp.zeros(self.scale.shape + (self.num_steps,), dtype=self.scale.dtype)

    @property
    def variance(self) -> jax.Array:
        """``scale^2 * (t + 1)`` at step ``t``."""
        t = jnp.arange(1, self.num_steps + 1, dtype=self.scale.dtype)
        return self.scale[..., None] ** 2 * t


# -- MultivariateStudentT -----------------------------------------------------------------------
class MultivariateStudentT(Distribution):
    """Multivariate Student-t: ``loc + scale_tril @ z * sqrt(df / w)`` with ``z ~ N(0, I)`` and
    ``w ~ chi^2(df)``.

    ``df``: positive, ``batch``-shaped; ``loc``: ``(..., k)`` (a scalar is broadcast);
    ``scale_tril``: ``(..., k, k)`` lower Cholesky (required). ``event_shape = (k,)``.
    """

    arg_constraints = {
        "df": constraints.positive,
        "loc": constraints.real_vector,
        "scale_tril": constraints.lower_cholesky,
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        df: ArrayLike,
        loc: ArrayLike = 0.0,
        scale_tril: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        if scale_tril is None:
            raise ValueError("MultivariateStudentT: `scale_tril` (..., k, k) is required.")
        df, loc, scale_tril = _as_float(df), _as_float(loc), _as_float(scale_tril)
        if scale_tril.ndim < 2 or scale_tril.shape[-1] != scale_tril.shape[-2]:
            raise ValueError(
                "MultivariateStudentT: `scale_tril` must be a (batch of) square matrices, got "
                f"shape {scale_tril.shape}."
            )
        if loc.ndim == 0:
            loc = loc[None]
        k = scale_tril.shape[-1]
        if loc.shape[-1] not in (1, k):
            raise ValueError(
                f"MultivariateStudentT: `loc` has event size {loc.shape[-1]} but `scale_tril` "
                f"is {k}x{k}."
            )
        batch_shape = lazy_broadcast_shape(df.shape, loc.shape[:-1], scale_tril.shape[:-2])
        dtype = jnp.result_type(df, loc, scale_tril)
        self.df = jnp.broadcast_to(df.astype(dtype), batch_shape)
        self.loc = jnp.broadcast_to(loc.astype(dtype), batch_shape + (k,))
        self.scale_tril = jnp.broadcast_to(scale_tril.astype(dtype), batch_shape + (k, k))
        super().__init__(batch_shape, (k,), validate_args=validate_args)

    @property
    def covariance_matrix(self) -> jax.Array:
        """``scale_tril @ scale_tril.T`` (the scale matrix; the covariance is
        ``df / (df - 2)`` times it, as in NumPyro)."""
        L = self.scale_tril
        return jnp.matmul(L, jnp.swapaxes(L, -2, -1))

    @property
    def precision_matrix(self) -> jax.Array:
        """Inverse of :attr:`covariance_matrix`: ``(..., k, k)``."""
        L = self.scale_tril
        eye = jnp.broadcast_to(jnp.eye(L.shape[-1], dtype=L.dtype), L.shape)
        return cho_solve((L, True), eye)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        shape = validate_sample_shape(sample_shape) + self.df.shape
        k_z, k_w = jax.random.split(key)
        dtype = self.loc.dtype
        z = jax.random.normal(k_z, shape + self.loc.shape[-1:], dtype=dtype)
        # chi^2(df) = 2 Gamma(df / 2); jax.random.gamma has implicit reparameterized gradients
        w = 2.0 * jax.random.gamma(k_w, jnp.broadcast_to(self.df / 2, shape), dtype=dtype)
        y = z * jnp.sqrt(self.df / w)[..., None]
        return self.loc + jnp.squeeze(jnp.matmul(self.scale_tril, y[..., None]), -1)

    def log_prob(self, value) -> jax.Array:
        """``value: (..., k)``; returns ``broadcast(value.shape[:-1], batch_shape)``."""
        k = self.event_shape[0]
        df = self.df
        z = _solve_tril_vec(self.scale_tril, jnp.asarray(value) - self.loc)
        maha = jnp.sum(z * z, -1)
        log_norm = (
            gammaln(0.5 * (df + k))
            - gammaln(0.5 * df)
            - 0.5 * k * jnp.log(df * math.pi)
            - _log_diag_sum(self.scale_tril)
        )
        return log_norm - 0.5 * (df + k) * jnp.log1p(maha / df)

    @property
    def mean(self) -> jax.Array:
        """``loc`` for ``df > 1``; ``inf`` otherwise (as SciPy and NumPyro)."""
        return jnp.where(self.df[..., None] > 1, self.loc, jnp.inf)

    @property
    def variance(self) -> jax.Array:
        """``df / (df - 2) * diag(scale_tril scale_tril^T)`` for ``df > 2``; ``inf`` for
        ``1 < df <= 2``; ``nan`` for ``df <= 1``."""
        df = self.df[..., None]
        var = jnp.sum(self.scale_tril**2, -1) * df / (df - 2)
        var = jnp.where(df > 2, var, jnp.inf)
        return jnp.where(df > 1, var, jnp.nan)


# -- ZeroSumNormal ------------------------------------------------------------------------------
class ZeroSumNormal(Distribution):
    """Normal distribution restricted to arrays summing to zero along each event axis:
    ``N(0, scale^2 (I - J / n))`` along one axis of size ``n``.

    Draws are ``ZeroSumTransform`` of i.i.d. ``N(0, scale^2)`` arrays of shape
    ``tuple(n - 1 for n in event_shape)``; that map is an isometry, so the density (with respect
    to the volume on the zero-sum subspace) is ``(2 pi scale^2)^(-m / 2) exp(-|x|^2 / (2
    scale^2))`` with ``m = prod(n_i - 1)``.

    ``scale``: positive, shape ``batch_shape``; ``event_shape``: tuple of sizes >= 1.
    """

    arg_constraints = {"scale": constraints.positive}
    has_rsample = True

    def __init__(
        self,
        scale: ArrayLike,
        event_shape: Sequence[int],
        *,
        validate_args: bool | None = None,
    ):
        try:
            event_shape = tuple(int(n) for n in event_shape)
        except TypeError as e:
            raise TypeError(
                f"ZeroSumNormal: `event_shape` must be a tuple of ints, got {event_shape!r}."
            ) from e
        if len(event_shape) < 1 or any(n < 1 for n in event_shape):
            raise ValueError(
                "ZeroSumNormal: `event_shape` must be a non-empty tuple of sizes >= 1, got "
                f"{event_shape}."
            )
        self.scale = _as_float(scale)
        super().__init__(jnp.shape(self.scale), event_shape, validate_args=validate_args)

    @property
    def support(self):  # type: ignore[override]
        return constraints.zero_sum(len(self.event_shape))

    def _transform(self) -> ZeroSumTransform:
        return ZeroSumTransform(len(self.event_shape))

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        base = tuple(n - 1 for n in self.event_shape)
        shape = validate_sample_shape(sample_shape) + self.scale.shape + base
        eps = jax.random.normal(key, shape, dtype=self.scale.dtype)
        scale = jnp.reshape(self.scale, self.scale.shape + (1,) * len(base))
        return self._transform()(eps * scale)

    def log_prob(self, value) -> jax.Array:
        """``value: (..., *event_shape)``; returns ``broadcast(value.shape[:-ndim], batch)``.

        Like NumPyro, ``value`` is mapped back to the unconstrained coordinates without
        checking the zero-sum constraint (use validation for that).
        """
        nd = len(self.event_shape)
        x = self._transform().inv(jnp.asarray(value))
        scale = jnp.reshape(self.scale, self.scale.shape + (1,) * nd)
        lp = -0.5 * (x / scale) ** 2 - jnp.log(scale) - 0.5 * _LOG_2PI
        return jnp.sum(lp, axis=tuple(range(-nd, 0)))

    @property
    def mean(self) -> jax.Array:
        return jnp.zeros(self.scale.shape + self.event_shape, dtype=self.scale.dtype)

    @property
    def variance(self) -> jax.Array:
        """``scale^2 * prod_i (1 - 1 / n_i)`` for every entry."""
        factor = math.prod(1.0 - 1.0 / n for n in self.event_shape)
        var = self.scale**2 * factor
        nd = len(self.event_shape)
        return jnp.broadcast_to(
            jnp.reshape(var, var.shape + (1,) * nd), self.scale.shape + self.event_shape
        )


# -- Wishart ------------------------------------------------------------------------------------
def _cholesky_of_inverse(P):
    """Lower Cholesky factor of ``P^{-1}`` (via the flipped Cholesky of ``P``)."""
    Lf = jnp.linalg.cholesky(jnp.flip(P, axis=(-2, -1)))
    U = jnp.flip(Lf, axis=(-2, -1))
    eye = jnp.broadcast_to(jnp.eye(P.shape[-1], dtype=P.dtype), P.shape)
    return jnp.swapaxes(solve_triangular(U, eye, lower=False), -2, -1)


class _WishartBase(Distribution):
    """Shared parameters of :class:`Wishart` and :class:`WishartCholesky`.

    ``concentration`` (degrees of freedom ``nu > p - 1``, shape ``batch_shape``) and exactly
    one of ``scale_matrix``, ``rate_matrix`` (its inverse) or ``scale_tril`` (Cholesky factor of
    the scale matrix), each ``(..., p, p)``. ``event_shape = (p, p)``.
    """

    arg_constraints = {
        "concentration": constraints.dependent,
        "scale_matrix": constraints.positive_definite,
        "rate_matrix": constraints.positive_definite,
        "scale_tril": constraints.lower_cholesky,
    }
    has_rsample = True

    def __init__(
        self,
        concentration: ArrayLike,
        scale_matrix: ArrayLike | None = None,
        rate_matrix: ArrayLike | None = None,
        scale_tril: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        cls = type(self).__name__
        given = [
            (n, m)
            for n, m in (
                ("scale_matrix", scale_matrix),
                ("rate_matrix", rate_matrix),
                ("scale_tril", scale_tril),
            )
            if m is not None
        ]
        if len(given) != 1:
            names = [n for n, _ in given] or "none"
            raise ValueError(
                f"{cls}: pass exactly one of `scale_matrix`, `rate_matrix` or `scale_tril` "
                f"(got {names})."
            )
        name, matrix = given[0]
        matrix = _as_float(matrix)
        if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
            raise ValueError(
                f"{cls}: `{name}` must be a (batch of) square matrices, got shape {matrix.shape}."
            )
        concentration = _as_float(concentration)
        p = matrix.shape[-1]
        batch_shape = lazy_broadcast_shape(concentration.shape, matrix.shape[:-2])
        dtype = jnp.result_type(concentration, matrix)
        matrix = jnp.broadcast_to(matrix.astype(dtype), batch_shape + (p, p))
        self.concentration = jnp.broadcast_to(concentration.astype(dtype), batch_shape)
        if name == "scale_tril":
            self.scale_tril = matrix
        elif name == "scale_matrix":
            self.__dict__["scale_matrix"] = matrix
            self.scale_tril = jnp.linalg.cholesky(matrix)
        else:
            self.__dict__["rate_matrix"] = matrix
            self.scale_tril = _cholesky_of_inverse(matrix)
        super().__init__(batch_shape, (p, p), validate_args=validate_args)

    def _check_args(self) -> None:
        super()._check_args()
        nu = self.concentration
        p = self.event_shape[-1]
        if self._invalid_args_message is None and is_concrete(nu) and not np.all(nu > p - 1):
            self._report_invalid_args(
                f"{type(self).__name__}: parameter `concentration` must be > p - 1 = {p - 1} "
                f"for {p}x{p} matrices, got {np.ravel(np.asarray(nu))[:5]}"
            )

    @property
    def scale_matrix(self) -> jax.Array:
        """``(..., p, p)``: ``scale_tril @ scale_tril.T`` (or the matrix given)."""
        S = self.__dict__.get("scale_matrix")
        if S is not None:
            return S
        L = self.scale_tril
        return jnp.matmul(L, jnp.swapaxes(L, -2, -1))

    @property
    def rate_matrix(self) -> jax.Array:
        """``(..., p, p)``: the inverse scale matrix (or the matrix given)."""
        R = self.__dict__.get("rate_matrix")
        if R is not None:
            return R
        L = self.scale_tril
        eye = jnp.broadcast_to(jnp.eye(L.shape[-1], dtype=L.dtype), L.shape)
        return cho_solve((L, True), eye)

    def _sample_cholesky(self, key, sample_shape: Sequence[int], scale_tril=None) -> jax.Array:
        """Bartlett decomposition: ``scale_tril @ A`` with ``A`` lower triangular,
        ``A_ii^2 ~ chi^2(nu - i)`` and ``A_ij ~ N(0, 1)`` below the diagonal: the Cholesky
        factor of a Wishart draw (``scale_tril`` defaults to ``self.scale_tril``)."""
        if scale_tril is None:
            scale_tril = self.scale_tril
        shape = validate_sample_shape(sample_shape) + self.concentration.shape
        p = self.event_shape[-1]
        dtype = self.concentration.dtype
        k_diag, k_off = jax.random.split(key)
        dof = self.concentration[..., None] - jnp.arange(p, dtype=dtype)
        chi2 = 2.0 * jax.random.gamma(k_diag, jnp.broadcast_to(dof / 2, shape + (p,)), dtype=dtype)
        off = jnp.tril(jax.random.normal(k_off, shape + (p, p), dtype=dtype), -1)
        A = off + jnp.sqrt(chi2)[..., None] * jnp.eye(p, dtype=dtype)
        return jnp.matmul(scale_tril, A)

    def _log_prob_cholesky(self, L) -> jax.Array:
        """Wishart log density of ``X = L L^T`` (w.r.t. Lebesgue measure on the lower
        triangle of ``X``) from its Cholesky factor ``L: (..., p, p)``."""
        nu = self.concentration
        p = self.event_shape[-1]
        shape = lazy_broadcast_shape(L.shape[:-2], self.scale_tril.shape[:-2])
        S_tril = jnp.broadcast_to(self.scale_tril, shape + (p, p))
        # tr(S^{-1} X) = |S_tril^{-1} L|_F^2
        M = solve_triangular(S_tril, jnp.broadcast_to(L, shape + (p, p)), lower=True)
        trace = jnp.sum(M * M, axis=(-2, -1))
        return (
            (nu - p - 1) * _log_diag_sum(L)
            - 0.5 * trace
            - 0.5 * nu * p * math.log(2.0)
            - nu * _log_diag_sum(self.scale_tril)
            - multigammaln(0.5 * nu, p)
        )


class WishartCholesky(_WishartBase):
    """Distribution of the lower Cholesky factor ``L`` of a Wishart matrix ``X = L L^T``.

    The density (w.r.t. Lebesgue measure on the lower triangle of ``L``) is the Wishart
    density of ``X`` times the Jacobian ``2^p prod_i L_ii^(p - i)`` (``i = 0..p-1``).
    See :class:`_WishartBase` for the parameters.
    """

    support = constraints.lower_cholesky

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        return self._sample_cholesky(key, sample_shape)

    def log_prob(self, value) -> jax.Array:
        """``value: (..., p, p)`` lower Cholesky; returns ``broadcast(value.shape[:-2],
        batch_shape)``."""
        L = jnp.asarray(value)
        p = self.event_shape[-1]
        log_diag = jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1))
        jac = p * math.log(2.0) + jnp.sum(jnp.arange(p, 0, -1, dtype=L.dtype) * log_diag, -1)
        return self._log_prob_cholesky(L) + jac

    @property
    def mean(self) -> jax.Array:
        """``scale_tril @ E[A]`` with ``E[A_ii] = E[sqrt(chi^2(nu - i))]``."""
        p = self.event_shape[-1]
        k = self.concentration[..., None] - jnp.arange(p, dtype=self.concentration.dtype)
        e_sqrt = math.sqrt(2.0) * jnp.exp(gammaln((k + 1) / 2) - gammaln(k / 2))
        return self.scale_tril * e_sqrt[..., None, :]

    @property
    def variance(self) -> jax.Array:
        """Entry-wise variance of ``L = scale_tril @ A``; the entries of ``A`` are independent
        with ``E[A_ij^2] = 1`` below the diagonal and ``nu - i`` on it."""
        p = self.event_shape[-1]
        k = self.concentration[..., None] - jnp.arange(p, dtype=self.concentration.dtype)
        # second[..., m, j] = E[A_mj^2]
        second = jnp.tril(jnp.ones((p, p), dtype=k.dtype), -1) + k[..., None, :] * jnp.eye(
            p, dtype=k.dtype
        )
        return jnp.matmul(self.scale_tril**2, second) - self.mean**2


class Wishart(_WishartBase):
    """Wishart distribution over ``p x p`` positive-definite matrices: density
    ``det(X)^((nu - p - 1) / 2) exp(-tr(S^{-1} X) / 2) / (2^(nu p / 2) det(S)^(nu / 2)
    Gamma_p(nu / 2))``. See :class:`_WishartBase` for the parameters.
    """

    support = constraints.positive_definite

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        L = self._sample_cholesky(key, sample_shape)
        return jnp.matmul(L, jnp.swapaxes(L, -2, -1))

    def log_prob(self, value) -> jax.Array:
        """``value: (..., p, p)`` positive definite; returns ``broadcast(value.shape[:-2],
        batch_shape)``."""
        return self._log_prob_cholesky(jnp.linalg.cholesky(jnp.asarray(value)))

    @property
    def mean(self) -> jax.Array:
        return self.concentration[..., None, None] * self.scale_matrix

    @property
    def variance(self) -> jax.Array:
        """``Var(X_ij) = nu (S_ij^2 + S_ii S_jj)``."""
        S = self.scale_matrix
        d = jnp.diagonal(S, axis1=-2, axis2=-1)
        return self.concentration[..., None, None] * (S**2 + d[..., :, None] * d[..., None, :])

    def entropy(self) -> jax.Array:
        """``(p + 1) / 2 log det S + p (p + 1) / 2 log 2 + log Gamma_p(nu / 2) - (nu - p - 1)
        / 2 psi_p(nu / 2) + nu p / 2``, with the multivariate digamma ``psi_p(a) = sum_{i <
        p} psi(a - i / 2)``; shape ``batch_shape``."""
        nu = self.concentration
        p = self.event_shape[-1]
        half_nu = 0.5 * nu
        multi_digamma = jnp.sum(
            digamma(half_nu[..., None] - 0.5 * jnp.arange(p, dtype=nu.dtype)), axis=-1
        )
        return (
            (p + 1) * _log_diag_sum(self.scale_tril)
            + 0.5 * p * (p + 1) * math.log(2.0)
            + multigammaln(half_nu, p)
            - 0.5 * (nu - p - 1) * multi_digamma
            + 0.5 * nu * p
        )


class InverseWishart(_WishartBase):
    """Inverse Wishart distribution over ``p x p`` positive-definite matrices: ``X ~ IW(nu,
    Psi)`` iff ``X^{-1} ~ Wishart(nu, Psi^{-1})``; density ``det(Psi)^(nu / 2)
    det(X)^(-(nu + p + 1) / 2) exp(-tr(Psi X^{-1}) / 2) / (2^(nu p / 2) Gamma_p(nu / 2))``.

    ``scale_matrix`` is ``Psi`` (``rate_matrix`` its inverse, ``scale_tril`` its Cholesky
    factor); see :class:`_WishartBase` for shapes.
    """

    support = constraints.positive_definite

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        # W = L_w L_w^T ~ Wishart(nu, Psi^{-1}), and X = W^{-1} = L_w^{-T} L_w^{-1}
        L_w = self._sample_cholesky(key, sample_shape, _cholesky_of_inverse(self.scale_matrix))
        eye = jnp.broadcast_to(jnp.eye(L_w.shape[-1], dtype=L_w.dtype), L_w.shape)
        L_inv = solve_triangular(L_w, eye, lower=True)
        return jnp.matmul(jnp.swapaxes(L_inv, -2, -1), L_inv)

    def log_prob(self, value) -> jax.Array:
        """``value: (..., p, p)`` positive definite; returns ``broadcast(value.shape[:-2],
        batch_shape)``."""
        L = jnp.linalg.cholesky(jnp.asarray(value))
        nu = self.concentration
        p = self.event_shape[-1]
        shape = lazy_broadcast_shape(L.shape[:-2], self.scale_tril.shape[:-2])
        # tr(Psi X^{-1}) = |L^{-1} scale_tril|_F^2
        M = solve_triangular(
            jnp.broadcast_to(L, shape + (p, p)),
            jnp.broadcast_to(self.scale_tril, shape + (p, p)),
            lower=True,
        )
        trace = jnp.sum(M * M, axis=(-2, -1))
        return (
            nu * _log_diag_sum(self.scale_tril)
            - (nu + p + 1) * _log_diag_sum(L)
            - 0.5 * trace
            - 0.5 * nu * p * math.log(2.0)
            - multigammaln(0.5 * nu, p)
        )

    @property
    def mean(self) -> jax.Array:
        """``Psi / (nu - p - 1)`` for ``nu > p + 1``, else ``nan``."""
        p = self.event_shape[-1]
        nu = self.concentration[..., None, None]
        return jnp.where(nu > p + 1, self.scale_matrix / (nu - p - 1), jnp.nan)

    @property
    def variance(self) -> jax.Array:
        """``Var(X_ij) = ((nu - p + 1) Psi_ij^2 + (nu - p - 1) Psi_ii Psi_jj) /
        ((nu - p) (nu - p - 1)^2 (nu - p - 3))`` for ``nu > p + 3``, else ``nan``."""
        p = self.event_shape[-1]
        nu = self.concentration[..., None, None]
        S = self.scale_matrix
        d = jnp.diagonal(S, axis1=-2, axis2=-1)
        num = (nu - p + 1) * S**2 + (nu - p - 1) * d[..., :, None] * d[..., None, :]
        var = num / ((nu - p) * (nu - p - 1) ** 2 * (nu - p - 3))
        return jnp.where(nu > p + 3, var, jnp.nan)


class InverseWishartCholesky(_WishartBase):
    """Distribution of the lower Cholesky factor ``L`` of an inverse Wishart matrix ``X = L
    L^T ~ IW(nu, Psi)``.

    The density (w.r.t. Lebesgue measure on the lower triangle of ``L``) is the inverse Wishart
    density of ``X`` times the Jacobian ``2^p prod_i L_ii^(p - i)`` (``i = 0..p-1``). The
    parameters are those of :class:`InverseWishart`: ``concentration`` (``nu > p - 1``, shape
    ``batch_shape``) and one of ``scale_matrix`` (``Psi``), ``rate_matrix`` or ``scale_tril``,
    each ``(..., p, p)``; ``event_shape = (p, p)``.

    Draws are ``scale_tril @ M^{-1}`` with ``M`` lower triangular, ``M_jj^2 ~ chi^2(nu - p + 1
    + j)`` and ``M_ij ~ N(0, 1)`` below the diagonal (then ``M^T M ~ Wishart(nu, I)``).
    """

    support = constraints.lower_cholesky
    has_rsample = False  # as NumPyro: the concentration is not reparameterized

    def _bartlett_dof(self) -> jax.Array:
        """``(..., p)``: ``nu - p + 1 + j``, the chi^2 degrees of freedom of ``M_jj^2``."""
        p = self.event_shape[-1]
        nu = self.concentration[..., None]
        return nu - p + 1 + jnp.arange(p, dtype=nu.dtype)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        shape = validate_sample_shape(sample_shape) + self.concentration.shape
        p = self.event_shape[-1]
        dtype = self.concentration.dtype
        k_diag, k_off = jax.random.split(key)
        dof = jnp.broadcast_to(self._bartlett_dof(), shape + (p,))
        chi2 = 2.0 * jax.random.gamma(k_diag, dof / 2, dtype=dtype)
        off = jnp.tril(jax.random.normal(k_off, shape + (p, p), dtype=dtype), -1)
        M = off + jnp.sqrt(chi2)[..., None] * jnp.eye(p, dtype=dtype)
        eye = jnp.broadcast_to(jnp.eye(p, dtype=dtype), M.shape)
        return jnp.matmul(self.scale_tril, solve_triangular(M, eye, lower=True))

    def log_prob(self, value) -> jax.Array:
        """``value: (..., p, p)`` lower Cholesky; returns ``broadcast(value.shape[:-2],
        batch_shape)``."""
        L = jnp.asarray(value)
        nu = self.concentration
        p = self.event_shape[-1]
        shape = lazy_broadcast_shape(L.shape[:-2], self.scale_tril.shape[:-2])
        # tr(Psi X^{-1}) = |L^{-1} scale_tril|_F^2
        M = solve_triangular(
            jnp.broadcast_to(L, shape + (p, p)),
            jnp.broadcast_to(self.scale_tril, shape + (p, p)),
            lower=True,
        )
        trace = jnp.sum(M * M, axis=(-2, -1))
        log_diag = jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1))
        # det(X)^(-(nu + p + 1) / 2) times the Jacobian 2^p prod_i L_ii^(p - i)
        powers = -(nu[..., None] + 1) - jnp.arange(p, dtype=log_diag.dtype)
        return (
            nu * _log_diag_sum(self.scale_tril)
            + jnp.sum(powers * log_diag, -1)
            - 0.5 * trace
            + p * (1.0 - 0.5 * nu) * math.log(2.0)
            - multigammaln(0.5 * nu, p)
        )

    @property
    def mean(self) -> jax.Array:
        """Exact ``E[L] = scale_tril @ diag(E[1 / M_jj])`` with ``E[1 / chi(d)] = Gamma((d -
        1) / 2) / (sqrt(2) Gamma(d / 2))`` (the off-diagonal entries of ``M^{-1}`` have mean
        zero). Column ``j`` is ``nan`` (no mean) unless ``d_j = nu - p + 1 + j > 1``: all of
        it exists for ``nu > p``. NumPyro returns ``chol(E[X])`` instead."""
        p = self.event_shape[-1]
        d = self._bartlett_dof()
        e_inv = jnp.exp(gammaln((d - 1) / 2) - gammaln(d / 2)) / math.sqrt(2.0)
        e_inv = jnp.where(d > 1, e_inv, jnp.nan)
        lower = jnp.tril(jnp.ones((p, p), dtype=bool))
        return jnp.where(lower, self.scale_tril * e_inv[..., None, :], 0.0)

    @property
    def variance(self) -> jax.Array:
        """Exact entry-wise variance of ``L = scale_tril @ N``, ``N = M^{-1}``; column ``j`` is
        ``nan`` unless ``d_j = nu - p + 1 + j > 2``: all of it exists for ``nu > p + 1``
        (NumPyro returns ``nan`` throughout).

        The entries of a column of ``N`` are uncorrelated, with ``E[N_kj^2] = r_k r_j
        prod_{j<m<k} (1 + r_m)`` for ``k > j`` and ``r_j`` for ``k = j``, where ``r_m = E[1 /
        chi^2(d_m)] = 1 / (d_m - 2)`` (solve ``M n = e_j`` row by row).
        """
        p = self.event_shape[-1]
        d = self._bartlett_dof()
        r = jnp.where(d > 2, 1.0 / (d - 2), jnp.nan)
        # P[k] = prod_{m <= k} (1 + r_m); prod_{j < m < k} = P[k - 1] / P[j]
        log_cum = jnp.cumsum(jnp.log1p(r), -1)
        log_prev = jnp.concatenate([jnp.zeros_like(log_cum[..., :1]), log_cum[..., :-1]], -1)
        ratio = jnp.exp(log_prev[..., :, None] - log_cum[..., None, :])  # [k, j]
        strict = jnp.tril(jnp.ones((p, p), dtype=bool), -1)
        second = jnp.where(strict, r[..., :, None] * r[..., None, :] * ratio, 0.0)
        second = second + jnp.eye(p, dtype=r.dtype) * r[..., None, :]
        var = jnp.matmul(self.scale_tril**2, jnp.where(jnp.isnan(second), 0.0, second))
        var = jnp.where(jnp.isnan(r)[..., None, :], jnp.nan, var - self.mean**2)
        return jnp.where(jnp.tril(jnp.ones((p, p), dtype=bool)), var, 0.0)


# -- MatrixNormal -------------------------------------------------------------------------------
class MatrixNormal(Distribution):
    """Matrix normal distribution ``MN(loc, U, V)`` over ``n x p`` matrices, with ``U =
    scale_tril_row @ scale_tril_row^T`` (among-row covariance) and ``V = scale_tril_column @
    scale_tril_column^T`` (among-column covariance): ``vec(X) ~ N(vec(loc), kron(V, U))``.

    ``loc``: ``(..., n, p)``; ``scale_tril_row``: ``(..., n, n)``; ``scale_tril_column``:
    ``(..., p, p)``, both lower Cholesky. ``event_shape = (n, p)``.
    """

    arg_constraints = {
        "loc": constraints.real_matrix,
        "scale_tril_row": constraints.lower_cholesky,
        "scale_tril_column": constraints.lower_cholesky,
    }
    support = constraints.real_matrix
    has_rsample = True

    def __init__(
        self,
        loc: ArrayLike,
        scale_tril_row: ArrayLike,
        scale_tril_column: ArrayLike,
        *,
        validate_args: bool | None = None,
    ):
        loc, row, col = _as_float(loc), _as_float(scale_tril_row), _as_float(scale_tril_column)
        if loc.ndim < 2:
            raise ValueError(f"MatrixNormal: `loc` must be (..., n, p), got shape {loc.shape}.")
        n, p = loc.shape[-2:]
        for name, m, k in (("scale_tril_row", row, n), ("scale_tril_column", col, p)):
            if m.ndim < 2 or m.shape[-2:] != (k, k):
                raise ValueError(
                    f"MatrixNormal: `{name}` must be (..., {k}, {k}) to match `loc` of event "
                    f"shape {(n, p)}, got shape {m.shape}."
                )
        batch_shape = lazy_broadcast_shape(loc.shape[:-2], row.shape[:-2], col.shape[:-2])
        dtype = jnp.result_type(loc, row, col)
        self.loc = jnp.broadcast_to(loc.astype(dtype), batch_shape + (n, p))
        self.scale_tril_row = jnp.broadcast_to(row.astype(dtype), batch_shape + (n, n))
        self.scale_tril_column = jnp.broadcast_to(col.astype(dtype), batch_shape + (p, p))
        super().__init__(batch_shape, (n, p), validate_args=validate_args)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        shape = validate_sample_shape(sample_shape) + self.loc.shape
        eps = jax.random.normal(key, shape, dtype=self.loc.dtype)
        col_t = jnp.swapaxes(self.scale_tril_column, -2, -1)
        return self.loc + jnp.matmul(jnp.matmul(self.scale_tril_row, eps), col_t)

    def log_prob(self, value) -> jax.Array:
        """``value: (..., n, p)``; returns ``broadcast(value.shape[:-2], batch_shape)``."""
        n, p = self.event_shape
        diff = jnp.asarray(value) - self.loc
        shape = diff.shape[:-2]
        row = jnp.broadcast_to(self.scale_tril_row, shape + (n, n))
        col = jnp.broadcast_to(self.scale_tril_column, shape + (p, p))
        # Z = L_U^{-1} D L_V^{-T}; tr(V^{-1} D^T U^{-1} D) = |Z|_F^2
        a = solve_triangular(row, diff, lower=True)
        z = solve_triangular(col, jnp.swapaxes(a, -2, -1), lower=True)
        log_det = p * _log_diag_sum(self.scale_tril_row) + n * _log_diag_sum(self.scale_tril_column)
        return -0.5 * (jnp.sum(z * z, axis=(-2, -1)) + n * p * _LOG_2PI) - log_det

    @property
    def mean(self) -> jax.Array:
        return self.loc

    @property
    def variance(self) -> jax.Array:
        """``Var(X_ij) = U_ii V_jj``: ``(..., n, p)``."""
        u = jnp.sum(self.scale_tril_row**2, -1)
        v = jnp.sum(self.scale_tril_column**2, -1)
        return u[..., :, None] * v[..., None, :]


# -- CAR ----------------------------------------------------------------------------------------
def _is_scipy_sparse(x) -> bool:
    """A SciPy sparse matrix or array (duck-typed: SciPy is not imported here)."""
    return hasattr(x, "tocoo") and not isinstance(x, np.ndarray | jax.Array)


class CAR(Distribution):
    """Conditional autoregressive distribution: ``N(loc, Q^{-1})`` with precision ``Q = tau (D -
    alpha W)``, ``W`` a symmetric 0/1 adjacency matrix and ``D = diag(W 1)`` the neighbour
    counts.

    ``loc``: ``(..., n)`` (a scalar is broadcast); ``correlation`` (``alpha``, in ``(-1, 1)``)
    and ``conditional_precision`` (``tau > 0``): ``batch``-shaped; ``adj_matrix``: ``(..., n,
    n)``. ``event_shape = (n,)``.

    With ``is_sparse=True``, ``adj_matrix`` must be a concrete 2-D NumPy array or SciPy sparse
    matrix: it is kept as coordinate lists (``W @ x`` costs ``O(nnz)``), and the eigenvalues
    of ``D^{-1/2} W D^{-1/2}`` behind ``log det Q`` are computed once, in NumPy.
    """

    arg_constraints = {
        "loc": constraints.real_vector,
        "correlation": constraints.open_interval(-1, 1),
        "conditional_precision": constraints.positive,
        "adj_matrix": constraints.dependent,
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        loc: ArrayLike,
        correlation: ArrayLike,
        conditional_precision: ArrayLike,
        adj_matrix,
        *,
        is_sparse: bool = False,
        validate_args: bool | None = None,
    ):
        self.is_sparse = bool(is_sparse)
        if self.is_sparse:
            if _is_scipy_sparse(adj_matrix):
                coo = adj_matrix.tocoo()
                rows, cols, vals = coo.row, coo.col, coo.data
                dense_shape = coo.shape
            elif isinstance(adj_matrix, np.ndarray):
                rows, cols = np.nonzero(adj_matrix)
                vals = adj_matrix[rows, cols]
                dense_shape = adj_matrix.shape
            else:
                raise TypeError(
                    "CAR: with `is_sparse=True`, `adj_matrix` must be a NumPy array or a SciPy "
                    f"sparse matrix, got {type(adj_matrix).__name__}."
                )
            if len(dense_shape) != 2 or dense_shape[0] != dense_shape[1]:
                raise ValueError(
                    "CAR: with `is_sparse=True`, `adj_matrix` must be one square (n, n) matrix, "
                    f"got shape {dense_shape}."
                )
            n = dense_shape[0]
            vals = np.asarray(vals, dtype=float)
            degree = np.zeros(n)
            np.add.at(degree, rows, vals)
            self._adj_rows = np.asarray(rows, dtype=np.int32)
            self._adj_cols = np.asarray(cols, dtype=np.int32)
            self._adj_vals = vals
            self._degree = degree
            with np.errstate(divide="ignore"):
                d_rsqrt = degree**-0.5
            scaled = np.zeros((n, n))
            np.add.at(scaled, (rows, cols), vals * d_rsqrt[rows] * d_rsqrt[cols])
            self._eigvals = np.linalg.eigvalsh(scaled)
            adj_batch: tuple[int, ...] = ()
        else:
            if _is_scipy_sparse(adj_matrix):
                raise TypeError("CAR: `adj_matrix` is a sparse matrix; pass `is_sparse=True`.")
            adj = _as_float(adj_matrix)
            if adj.ndim < 2 or adj.shape[-1] != adj.shape[-2]:
                raise ValueError(
                    f"CAR: `adj_matrix` must be (..., n, n) square, got shape {adj.shape}."
                )
            n = adj.shape[-1]
            adj_batch = adj.shape[:-2]
            # kept unbroadcast: one adjacency is usually shared by the whole batch
            self.__dict__["adj_matrix"] = adj
        loc = _as_float(loc)
        if loc.ndim == 0:
            loc = loc[None]
        if loc.shape[-1] not in (1, n):
            raise ValueError(
                f"CAR: `loc` has event size {loc.shape[-1]} but `adj_matrix` is {n}x{n}."
            )
        corr, prec = _as_float(correlation), _as_float(conditional_precision)
        batch_shape = lazy_broadcast_shape(loc.shape[:-1], corr.shape, prec.shape, adj_batch)
        dtype = jnp.result_type(loc, corr, prec)
        self.loc = jnp.broadcast_to(loc.astype(dtype), batch_shape + (n,))
        self.correlation = jnp.broadcast_to(corr.astype(dtype), batch_shape)
        self.conditional_precision = jnp.broadcast_to(prec.astype(dtype), batch_shape)
        super().__init__(batch_shape, (n,), validate_args=validate_args)

    def _check_args(self) -> None:
        super()._check_args()
        if self._invalid_args_message is not None:
            return
        if self.is_sparse:
            n = self.event_shape[0]
            W = np.zeros((n, n))
            np.add.at(W, (self._adj_rows, self._adj_cols), self._adj_vals)
        else:
            W = self.__dict__["adj_matrix"]
            if not is_concrete(W):
                return
            W = np.asarray(W)
        if not np.array_equal(W, np.swapaxes(W, -2, -1)):
            self._report_invalid_args("CAR: parameter `adj_matrix` must be symmetric.")
        elif not np.all(W.sum(-1) > 0):
            self._report_invalid_args(
                "CAR: parameter `adj_matrix` must give every site at least one neighbour "
                "(a row of zeros was found)."
            )

    @property
    def adj_matrix(self) -> jax.Array:
        """The adjacency matrix ``W``: ``(..., n, n)`` (dense, rebuilt when sparse)."""
        if not self.is_sparse:
            return self.__dict__["adj_matrix"]
        n = self.event_shape[0]
        W = jnp.zeros((n, n), dtype=self.loc.dtype)
        return W.at[self._adj_rows, self._adj_cols].add(self._adj_vals.astype(W.dtype))

    def _adj_matvec(self, x) -> jax.Array:
        """``W @ x`` along the last axis of ``x``."""
        if not self.is_sparse:
            return jnp.squeeze(jnp.matmul(self.adj_matrix, x[..., None]), -1)
        contrib = x[..., self._adj_cols] * self._adj_vals.astype(x.dtype)
        return jnp.zeros_like(x).at[..., self._adj_rows].add(contrib)

    @property
    def precision_matrix(self) -> jax.Array:
        """``tau (D - alpha W)``: ``(..., n, n)``."""
        W = self.adj_matrix
        D = jnp.sum(W, -1)[..., None] * jnp.eye(W.shape[-1], dtype=W.dtype)
        tau = self.conditional_precision[..., None, None]
        return tau * (D - self.correlation[..., None, None] * W)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        shape = validate_sample_shape(sample_shape) + self.loc.shape
        z = jax.random.normal(key, shape, dtype=self.loc.dtype)
        # x = loc + L^{-T} z with Q = L L^T has covariance Q^{-1}
        L = jnp.broadcast_to(
            jnp.linalg.cholesky(self.precision_matrix), self.loc.shape + self.event_shape
        )
        Lb = jnp.broadcast_to(L, shape + self.event_shape)
        y = solve_triangular(Lb, z[..., None], lower=True, trans="T")[..., 0]
        return self.loc + y

    def log_prob(self, value) -> jax.Array:
        """``value: (..., n)``; returns ``broadcast(value.shape[:-1], batch_shape)``.

        ``log det Q = n log tau + sum log D_i + sum_k log(1 - alpha lambda_k)``, with
        ``lambda_k`` the eigenvalues of ``D^{-1/2} W D^{-1/2}``.
        """
        n = self.event_shape[0]
        phi = jnp.asarray(value) - self.loc
        if self.is_sparse:
            degree, lam = self._degree, self._eigvals
        else:
            W = self.adj_matrix
            degree = jnp.sum(W, -1)
            d_rsqrt = degree**-0.5
            lam = jnp.linalg.eigvalsh(W * d_rsqrt[..., :, None] * d_rsqrt[..., None, :])
        degree = jnp.asarray(degree, dtype=phi.dtype)
        alpha, tau = self.correlation, self.conditional_precision
        log_det = (
            n * jnp.log(tau)
            + jnp.sum(jnp.log(degree), -1)
            + jnp.sum(jnp.log1p(-alpha[..., None] * jnp.asarray(lam, dtype=phi.dtype)), -1)
        )
        quad = tau * jnp.sum(phi * (degree * phi - alpha[..., None] * self._adj_matvec(phi)), -1)
        return 0.5 * (log_det - quad - n * _LOG_2PI)

    @property
    def mean(self) -> jax.Array:
        return self.loc


# -- CirculantNormal ----------------------------------------------------------------------------
def _rfft_weights(n: int, dtype) -> jax.Array:
    """How many of the ``n`` DFT frequencies each ``rfft`` bin stands for (1 or 2)."""
    w = np.full(n // 2 + 1, 2.0)
    w[0] = 1.0
    if n % 2 == 0:
        w[-1] = 1.0
    return jnp.asarray(w, dtype=dtype)


class CirculantNormal(Distribution):
    """Multivariate normal ``N(loc, C)`` with a symmetric positive-definite circulant
    covariance ``C`` (periodic boundary conditions), evaluated in ``O(n log n)`` by the FFT.

    The eigenvalues of ``C`` are the DFT of its first row ``c``; give either ``covariance_row``
    (``c``, ``(..., n)``) or ``covariance_rfft`` (``rfft(c).real``, ``(..., n // 2 + 1)``,
    positive). ``loc``: ``(..., n)`` (at least one dim: it fixes ``n``). ``event_shape =
    (n,)``.
    """

    arg_constraints = {
        "loc": constraints.real_vector,
        "covariance_row": constraints.positive_definite_circulant_vector,
        "covariance_rfft": constraints.independent(constraints.positive, 1),
    }
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        loc: ArrayLike,
        covariance_row: ArrayLike | None = None,
        covariance_rfft: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        loc = _as_float(loc)
        if loc.ndim < 1:
            raise ValueError(
                "CirculantNormal: `loc` must have at least one dim (..., n): it fixes n."
            )
        if (covariance_row is None) == (covariance_rfft is None):
            raise ValueError(
                "CirculantNormal: pass exactly one of `covariance_row` or `covariance_rfft`."
            )
        n = loc.shape[-1]
        n_rfft = n // 2 + 1
        if covariance_row is not None:
            row = _as_float(covariance_row)
            if row.ndim < 1 or row.shape[-1] != n:
                raise ValueError(
                    f"CirculantNormal: `covariance_row` must be (..., {n}) to match `loc`, got "
                    f"shape {row.shape}."
                )
            cov_batch = row.shape[:-1]
        else:
            rfft = _as_float(covariance_rfft)
            if rfft.ndim < 1 or rfft.shape[-1] != n_rfft:
                raise ValueError(
                    f"CirculantNormal: `covariance_rfft` must be (..., n // 2 + 1) = (..., "
                    f"{n_rfft}) for n = {n}, got shape {rfft.shape}."
                )
            cov_batch = rfft.shape[:-1]
        batch_shape = lazy_broadcast_shape(loc.shape[:-1], cov_batch)
        if covariance_row is not None:
            dtype = jnp.result_type(loc, row)
            row = jnp.broadcast_to(row.astype(dtype), batch_shape + (n,))
            self.__dict__["covariance_row"] = row
            rfft = jnp.fft.rfft(row, axis=-1).real
        else:
            dtype = jnp.result_type(loc, rfft)
        self.loc = jnp.broadcast_to(loc.astype(dtype), batch_shape + (n,))
        self.covariance_rfft = jnp.broadcast_to(rfft.astype(dtype), batch_shape + (n_rfft,))
        super().__init__(batch_shape, (n,), validate_args=validate_args)

    @property
    def covariance_row(self) -> jax.Array:
        """First row ``c`` of ``C``: ``(..., n)``."""
        row = self.__dict__.get("covariance_row")
        if row is not None:
            return row
        return jnp.fft.irfft(self.covariance_rfft, n=self.event_shape[0], axis=-1)

    @property
    def covariance_matrix(self) -> jax.Array:
        """``C[i, j] = c[(j - i) mod n]``: ``(..., n, n)``."""
        n = self.event_shape[0]
        idx = (np.arange(n)[None, :] - np.arange(n)[:, None]) % n
        return self.covariance_row[..., idx]

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        # x = loc + F^* diag(sqrt(lambda)) F z is real, with covariance F^* diag(lambda) F = C
        n = self.event_shape[0]
        shape = validate_sample_shape(sample_shape) + self.loc.shape
        z = jax.random.normal(key, shape, dtype=self.loc.dtype)
        y = jnp.fft.irfft(jnp.sqrt(self.covariance_rfft) * jnp.fft.rfft(z, axis=-1), n=n, axis=-1)
        return self.loc + y

    def log_prob(self, value) -> jax.Array:
        """``value: (..., n)``; returns ``broadcast(value.shape[:-1], batch_shape)``.

        ``(x - loc)^T C^{-1} (x - loc) = sum_k |X_k|^2 / (n lambda_k)`` over all ``n``
        frequencies, with ``X = DFT(x - loc)``.
        """
        n = self.event_shape[0]
        diff = jnp.asarray(value) - self.loc
        lam = self.covariance_rfft
        w = _rfft_weights(n, lam.dtype)
        spec = jnp.fft.rfft(diff, axis=-1)
        power = spec.real**2 + spec.imag**2
        maha = jnp.sum(w * power / lam, -1) / n
        log_det = jnp.sum(w * jnp.log(lam), -1)
        return -0.5 * (maha + log_det + n * _LOG_2PI)

    @property
    def mean(self) -> jax.Array:
        return self.loc

    @property
    def variance(self) -> jax.Array:
        """``c[0]`` at every position: ``(..., n)``."""
        return jnp.broadcast_to(self.covariance_row[..., :1], self.loc.shape)

    def entropy(self) -> jax.Array:
        """``(n (1 + log 2 pi) + log det C) / 2``."""
        n = self.event_shape[0]
        lam = self.covariance_rfft
        log_det = jnp.sum(_rfft_weights(n, lam.dtype) * jnp.log(lam), -1)
        return 0.5 * (n * (1.0 + _LOG_2PI) + log_det)
