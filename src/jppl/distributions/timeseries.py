"""Time-series distributions: the Euler-Maruyama discretization of an SDE and the linear
Gaussian state space model (NumPyro's names and parameterizations).

Shapes follow the library convention: a draw has shape ``sample_shape + batch_shape +
event_shape``, with time the first event axis. Parameters are stored broadcast to the full
batch shape, and ``sample`` reads the batch shape off the stored parameters so that it stays
right under ``jax.vmap``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jppl.distributions import constraints
from jppl.distributions.distribution import Distribution
from jppl.distributions.multivariate import (
    _LOG_2PI,
    _as_float,
    _covariance_of,
    _log_diag_sum,
    _precision_of,
    _precision_to_scale_tril,
    _tri_solve,
)
from jppl.distributions.util import lazy_broadcast_shape, validate_sample_shape

__all__ = ["EulerMaruyama", "GaussianStateSpace"]


# -- EulerMaruyama ------------------------------------------------------------------------------
class EulerMaruyama(Distribution):
    """Euler-Maruyama discretization of the SDE ``dy = f(y, t) dt + g(y, t) dW`` on the time
    grid ``t``: ``y_0 ~ init_dist`` and ``y_k ~ N(y_{k-1} + f dt_k, g^2 dt_k)`` (element-wise),
    ``dt_k = t_k - t_{k-1}``, with ``f, g = sde_fn(y_{k-1}, t_{k-1})``.

    ``t``: ``(..., T)`` increasing; ``sde_fn(y, t) -> (f, g)`` is called on one state ``y`` of
    shape ``init_dist.event_shape`` and a scalar time (``f`` and ``g`` broadcast to ``y``;
    it is vmapped over batch and time); ``init_dist``: the law of ``y_0``. ``batch_shape =
    broadcast(t.shape[:-1], init_dist.batch_shape)``, ``event_shape = (T,) +
    init_dist.event_shape``.
    """

    arg_constraints = {"t": constraints.ordered_vector}
    has_rsample = False

    def __init__(
        self,
        t: ArrayLike,
        sde_fn: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]],
        init_dist: Distribution,
        *,
        validate_args: bool | None = None,
    ):
        if not isinstance(init_dist, Distribution):
            raise TypeError(
                "EulerMaruyama: `init_dist` must be a Distribution, got "
                f"{type(init_dist).__name__}."
            )
        if not callable(sde_fn):
            raise TypeError("EulerMaruyama: `sde_fn(y, t) -> (drift, diffusion)` must be callable.")
        t = _as_float(t)
        if t.ndim < 1 or t.shape[-1] < 2:
            raise ValueError(
                f"EulerMaruyama: `t` must be (..., T) with T >= 2 time points, got shape {t.shape}."
            )
        batch_shape = lazy_broadcast_shape(t.shape[:-1], init_dist.batch_shape)
        self.t = jnp.broadcast_to(t, batch_shape + t.shape[-1:])
        self.sde_fn = sde_fn
        self.init_dist = init_dist
        super().__init__(
            batch_shape, t.shape[-1:] + init_dist.event_shape, validate_args=validate_args
        )

    @property
    def support(self):  # type: ignore[override]
        return constraints.independent(constraints.real, len(self.event_shape))

    def _drift_diffusion(self, y_prev, t_prev):
        """``sde_fn`` mapped over ``(N, K)`` leading axes of ``y_prev: (N, K, *E)`` and
        ``t_prev: (N, K)``; both outputs broadcast to ``y_prev.shape``."""
        f, g = jax.vmap(jax.vmap(self.sde_fn))(y_prev, t_prev)
        ev = len(self.init_dist.event_shape)

        def pad(a):
            a = jnp.asarray(a)
            # outputs of shape (N, K) + a trailing part of the event shape
            return jnp.broadcast_to(
                jnp.reshape(a, a.shape[:2] + (1,) * (ev - (a.ndim - 2)) + a.shape[2:]),
                y_prev.shape,
            )

        return pad(f), pad(g)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        batch = validate_sample_shape(sample_shape) + self.t.shape[:-1]
        T = self.t.shape[-1]
        ev_shape = self.init_dist.event_shape
        k_noise, k_init = jax.random.split(key)
        y0 = self.init_dist.expand(batch).sample(k_init)
        dtype = jnp.result_type(y0, self.t)
        noise = jax.random.normal(k_noise, batch + (T - 1,) + ev_shape, dtype=dtype)
        m = math.prod(batch)
        t = jnp.reshape(jnp.broadcast_to(self.t, batch + (T,)), (m, T))
        dt = jnp.diff(t, axis=-1)

        def one_path(y_init, eps, t_prev, dt_row):
            def step(y, xs):
                e, tk, dk = xs
                f, g = self.sde_fn(y, tk)
                y = y + dk * f + jnp.sqrt(dk) * g * e
                return y, y

            _, ys = jax.lax.scan(step, y_init, (eps, t_prev, dt_row))
            return jnp.concatenate([y_init[None], ys], axis=0)

        paths = jax.vmap(one_path)(
            jnp.reshape(y0, (m,) + ev_shape).astype(dtype),
            jnp.reshape(noise, (m, T - 1) + ev_shape),
            t[:, :-1],
            dt,
        )
        return jnp.reshape(paths, batch + (T,) + ev_shape)

    def log_prob(self, value) -> jax.Array:
        """``value: (..., T, *init_dist.event_shape)``; returns ``broadcast(value batch,
        batch_shape)``: the ``init_dist`` density of ``y_0`` plus the normal transition
        densities."""
        value = jnp.asarray(value)
        ev_shape = self.event_shape
        T = ev_shape[0]
        batch = lazy_broadcast_shape(value.shape[: value.ndim - len(ev_shape)], self.batch_shape)
        value = jnp.broadcast_to(value, batch + ev_shape)
        m = math.prod(batch)
        flat = jnp.reshape(value, (m,) + ev_shape)
        t = jnp.reshape(jnp.broadcast_to(self.t, batch + (T,)), (m, T))
        f, g = self._drift_diffusion(flat[:, :-1], t[:, :-1])
        dt = jnp.diff(t, axis=-1)
        dt = jnp.reshape(dt, dt.shape + (1,) * (len(ev_shape) - 1))
        sigma = jnp.sqrt(dt) * g
        # residual under a zero-mean normal: finite even where the drift is not
        resid = (flat[:, 1:] - flat[:, :-1] - dt * f) / sigma
        lp = -0.5 * resid**2 - jnp.log(sigma) - 0.5 * _LOG_2PI
        lp = jnp.reshape(jnp.sum(lp, axis=tuple(range(1, lp.ndim))), batch)
        return lp + self.init_dist.log_prob(
            value[(Ellipsis, 0) + (slice(None),) * (len(ev_shape) - 1)]
        )


# -- GaussianStateSpace -------------------------------------------------------------------------
class GaussianStateSpace(Distribution):
    """Linear Gaussian state space model ``z_t = A z_{t-1} + eps_t`` for ``t = 0..T-1``, with
    ``z_{-1} = initial_value`` (zero by default) and ``eps_t ~ N(0, Sigma)`` i.i.d.

    ``num_steps``: ``T``; ``transition_matrix``: ``A``, ``(..., n, n)``; exactly one of
    ``covariance_matrix``, ``precision_matrix`` or ``scale_tril`` for ``Sigma``, ``(..., n,
    n)``; ``initial_value``: ``(..., n)``. ``event_shape = (T, n)``. The map from innovations
    to states is unit lower block-triangular, so the density is the product of the innovation
    densities ``N(z_t - A z_{t-1}; 0, Sigma)``.
    """

    arg_constraints = {
        "covariance_matrix": constraints.positive_definite,
        "precision_matrix": constraints.positive_definite,
        "scale_tril": constraints.lower_cholesky,
        "transition_matrix": constraints.real_matrix,
        "initial_value": constraints.real_vector,
    }
    support = constraints.real_matrix
    has_rsample = True

    def __init__(
        self,
        num_steps: int,
        transition_matrix: ArrayLike,
        covariance_matrix: ArrayLike | None = None,
        precision_matrix: ArrayLike | None = None,
        scale_tril: ArrayLike | None = None,
        initial_value: ArrayLike | None = None,
        *,
        validate_args: bool | None = None,
    ):
        if (
            isinstance(num_steps, bool)
            or not isinstance(num_steps, int | np.integer)
            or num_steps < 1
        ):
            raise ValueError(
                f"GaussianStateSpace: `num_steps` must be a positive int, got {num_steps!r}."
            )
        given = [
            (name, m)
            for name, m in (
                ("covariance_matrix", covariance_matrix),
                ("precision_matrix", precision_matrix),
                ("scale_tril", scale_tril),
            )
            if m is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "GaussianStateSpace: pass exactly one of `covariance_matrix`, "
                f"`precision_matrix` or `scale_tril` (got {[n for n, _ in given] or 'none'})."
            )
        A = _as_float(transition_matrix)
        if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
            raise ValueError(
                "GaussianStateSpace: `transition_matrix` must be a (batch of) square matrices, "
                f"got shape {A.shape}."
            )
        n = A.shape[-1]
        name, matrix = given[0]
        matrix = _as_float(matrix)
        if matrix.ndim < 2 or matrix.shape[-2:] != (n, n):
            raise ValueError(
                f"GaussianStateSpace: `{name}` must be (..., {n}, {n}) to match "
                f"`transition_matrix`, got shape {matrix.shape}."
            )
        init = jnp.zeros((n,), A.dtype) if initial_value is None else _as_float(initial_value)
        if init.ndim < 1 or init.shape[-1] != n:
            raise ValueError(
                f"GaussianStateSpace: `initial_value` must be (..., {n}), got shape {init.shape}."
            )
        batch_shape = lazy_broadcast_shape(A.shape[:-2], matrix.shape[:-2], init.shape[:-1])
        dtype = jnp.result_type(A, matrix, init)
        matrix = jnp.broadcast_to(matrix.astype(dtype), batch_shape + (n, n))
        if name == "scale_tril":
            self.scale_tril = matrix
        elif name == "covariance_matrix":
            self.__dict__["covariance_matrix"] = matrix
            self.scale_tril = jnp.linalg.cholesky(matrix)
        else:
            self.__dict__["precision_matrix"] = matrix
            self.scale_tril = _precision_to_scale_tril(matrix)
        self.num_steps = int(num_steps)
        self.transition_matrix = jnp.broadcast_to(A.astype(dtype), batch_shape + (n, n))
        self.initial_value = jnp.broadcast_to(init.astype(dtype), batch_shape + (n,))
        super().__init__(batch_shape, (self.num_steps, n), validate_args=validate_args)

    @property
    def covariance_matrix(self) -> jax.Array:
        """Innovation covariance ``Sigma``: ``(..., n, n)``."""
        S = self.__dict__.get("covariance_matrix")
        return _covariance_of(self.scale_tril) if S is None else S

    @property
    def precision_matrix(self) -> jax.Array:
        """Innovation precision ``Sigma^{-1}``: ``(..., n, n)``."""
        P = self.__dict__.get("precision_matrix")
        return _precision_of(self.scale_tril) if P is None else P

    def _recurse(self, eps) -> jax.Array:
        """States from innovations ``eps: (S..., B..., T, n)`` by ``z_t = A z_{t-1} + eps_t``."""
        A = self.transition_matrix
        z0 = jnp.broadcast_to(self.initial_value, eps.shape[:-2] + eps.shape[-1:])

        def step(z, e):
            z = jnp.squeeze(jnp.matmul(A, z[..., None]), -1) + e
            return z, z

        _, zs = jax.lax.scan(step, z0, jnp.moveaxis(eps, -2, 0))
        return jnp.moveaxis(zs, 0, -2)

    def sample(self, key, sample_shape: Sequence[int] = ()) -> jax.Array:
        n = self.scale_tril.shape[-1]
        shape = validate_sample_shape(sample_shape) + self.scale_tril.shape[:-2]
        z = jax.random.normal(key, shape + (self.num_steps, n), dtype=self.scale_tril.dtype)
        eps = jnp.squeeze(jnp.matmul(self.scale_tril[..., None, :, :], z[..., None]), -1)
        return self._recurse(eps)

    def log_prob(self, value) -> jax.Array:
        """``value: (..., T, n)``; returns ``broadcast(value.shape[:-2], batch_shape)``."""
        value = jnp.asarray(value)
        T, n = self.event_shape
        prev = jnp.concatenate(
            [
                jnp.broadcast_to(
                    self.initial_value[..., None, :],
                    lazy_broadcast_shape(value.shape[:-2], self.batch_shape) + (1, n),
                ),
                jnp.broadcast_to(
                    value[..., :-1, :],
                    lazy_broadcast_shape(value.shape[:-2], self.batch_shape) + (T - 1, n),
                ),
            ],
            axis=-2,
        )
        A_t = jnp.swapaxes(self.transition_matrix, -2, -1)[..., None, :, :]
        eps = value - jnp.squeeze(jnp.matmul(prev[..., None, :], A_t), -2)
        w = _tri_solve(self.scale_tril[..., None, :, :], eps)
        return (
            -0.5 * jnp.sum(w * w, axis=(-2, -1))
            - T * _log_diag_sum(self.scale_tril)
            - 0.5 * T * n * _LOG_2PI
        )

    @property
    def mean(self) -> jax.Array:
        """``A^(t+1) z_{-1}`` at step ``t``: ``(..., T, n)``."""
        return self._recurse(jnp.zeros(self.batch_shape + self.event_shape, self.scale_tril.dtype))

    @property
    def variance(self) -> jax.Array:
        """``diag(sum_{j<=t} A^j Sigma A^jT)`` at step ``t``: ``(..., T, n)``."""
        A = self.transition_matrix

        def step(L, _):
            return jnp.matmul(A, L), jnp.sum(L * L, -1)

        _, diag = jax.lax.scan(step, self.scale_tril, None, length=self.num_steps)
        return jnp.moveaxis(jnp.cumsum(diag, axis=0), 0, -2)
