"""Generalized-linear-model likelihoods with a fused value-and-gradient pass.

``BernoulliLogitGLM(x, alpha, beta)`` is ``Bernoulli(logits=x @ beta + alpha)`` over the ``N``
rows of a design matrix ``x`` (``(N, D)``), in the spirit of Stan's ``bernoulli_logit_glm``.
Its ``log_prob`` is a vector ``(N,)`` like any distribution's, but under differentiation it
reads ``x`` once per value-and-gradient instead of twice (once for the logits, once for
``x^T r``):

* the forward pass walks ``x`` in blocks of rows small enough to stay in cache; for each block
  it computes the logits ``z_b = x_b @ beta + alpha_b``, the log-likelihoods
  ``y_b z_b - softplus(z_b)`` and the residuals ``r_b = y_b - sigmoid(z_b)``, and accumulates
  ``g = x^T r`` in the same pass;
* the backward pass receives the cotangent ``c`` (``(N,)``) of the per-row log-likelihoods.
  When ``c`` is constant (``c = s * ones``: the site's log-probability is summed, possibly
  scaled, which is what a log density does) the ``beta`` cotangent is ``s * g`` and ``x`` is not
  read again; otherwise (masks, per-row weights) a second pass computes ``x^T (c * r)``. The
  choice is a runtime ``lax.cond``. The cotangents of ``alpha`` (``c * r``, summed to its
  shape) and of ``x`` (``(c * r) beta^T``, only computed if used) need no pass over ``x``.

Without differentiation the log-likelihood is the plain ``y z - softplus(z)`` of
``z = x @ beta + alpha``. Values outside ``{0, 1}`` have log-probability ``-inf``.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jppl.distributions import constraints
from jppl.distributions.distribution import Distribution
from jppl.distributions.util import validate_sample_shape

__all__ = ["BernoulliLogitGLM", "bernoulli_logit_glm_log_prob"]

#: Elements of ``x`` per row block of the fused pass (2 MiB of float32: the block stays in
#: cache between its two uses; much smaller blocks pay the loop's per-iteration overhead).
_BLOCK_ELEMENTS = 1 << 19


def _block_rows(num_features: int) -> int:
    """Rows per block: a power of two with about ``_BLOCK_ELEMENTS`` elements, at least 8."""
    rows = max(8, _BLOCK_ELEMENTS // max(1, num_features))
    return 1 << int(math.floor(math.log2(rows)))


def _terms(z: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-row ``(log-likelihood, residual y - sigmoid(z))`` from logits ``z`` and labels
    ``y`` (same shape), with one ``exp`` and one ``log1p`` per row; ``-inf`` for labels outside
    ``{0, 1}`` (their residual is 0)."""
    ok = (y == 0) | (y == 1)
    e = jnp.exp(-jnp.abs(z))
    lp = y * z - (jnp.maximum(z, 0.0) + jnp.log1p(e))
    sigmoid = jnp.where(z >= 0, 1.0, e) / (1.0 + e)
    return jnp.where(ok, lp, -jnp.inf), jnp.where(ok, y - sigmoid, 0.0)


def _fused_pass(
    x: jax.Array, alpha: jax.Array, beta: jax.Array, y: jax.Array, feature_major: bool
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """One blocked pass over ``x`` (``(N, D)``, or ``(D, N)`` if ``feature_major``; ``alpha``
    and ``y`` ``(N,)``).

    Returns ``(log_lik (N,), z (N,), r (N,), g (D,))`` with ``g = x^T r``.
    """
    axis = 1 if feature_major else 0
    n, d = x.shape[axis], x.shape[1 - axis]
    rows = min(_block_rows(d), n)
    num_blocks = n // rows

    def block(start, size):
        xb = jax.lax.dynamic_slice_in_dim(x, start, size, axis=axis)
        yb = jax.lax.dynamic_slice_in_dim(y, start, size)
        zb = (beta @ xb if feature_major else xb @ beta) + jax.lax.dynamic_slice_in_dim(
            alpha, start, size
        )
        lp, r = _terms(zb, yb)
        return lp, zb, r, (xb @ r if feature_major else r @ xb)

    def body(i, carry):
        lp, z, r, g = carry
        start = i * rows
        lp_b, z_b, r_b, g_b = block(start, rows)
        update = lambda buf, v: jax.lax.dynamic_update_slice_in_dim(buf, v, start, 0)
        return update(lp, lp_b), update(z, z_b), update(r, r_b), g + g_b

    zeros = jnp.zeros((n,), x.dtype)
    carry = (zeros, zeros, zeros, jnp.zeros((d,), x.dtype))
    lp, z, r, g = jax.lax.fori_loop(0, num_blocks, body, carry)
    tail = n - num_blocks * rows
    if tail:
        start = num_blocks * rows
        lp_t, z_t, r_t, g_t = block(start, tail)
        lp, z, r = (
            jax.lax.dynamic_update_slice_in_dim(buf, v, start, 0)
            for buf, v in ((lp, lp_t), (z, z_t), (r, r_t))
        )
        g = g + g_t
    return lp, z, r, g


def _logits(x: jax.Array, alpha: jax.Array, beta: jax.Array, feature_major: bool) -> jax.Array:
    return (beta @ x if feature_major else x @ beta) + alpha


@partial(jax.custom_vjp, nondiff_argnums=(4,))
def _glm_log_lik(
    x: jax.Array, alpha: jax.Array, beta: jax.Array, y: jax.Array, feature_major: bool
) -> jax.Array:
    """``(N,)`` log-likelihoods ``y z - softplus(z)`` with ``z = x @ beta + alpha``."""
    return _terms(_logits(x, alpha, beta, feature_major), y)[0]


def _glm_fwd(x, alpha, beta, y, feature_major):
    lp, z, r, g = _fused_pass(x, alpha, beta, y, feature_major)
    return lp, (x, beta, z, r, g)


def _glm_bwd(feature_major, residuals, c):
    x, beta, z, r, g = residuals
    weighted = c * r
    constant = jnp.all(c == c[0])
    second_pass = lambda: x @ weighted if feature_major else weighted @ x
    d_beta = jax.lax.cond(constant, lambda: c[0] * g, second_pass)
    if feature_major:
        d_x = beta[:, None] * weighted[None, :]
    else:
        d_x = weighted[:, None] * beta[None, :]
    return d_x, weighted, d_beta, c * z


_glm_log_lik.defvjp(_glm_fwd, _glm_bwd)


def bernoulli_logit_glm_log_prob(
    x: ArrayLike,
    alpha: ArrayLike,
    beta: ArrayLike,
    y: ArrayLike,
    *,
    feature_major: bool = False,
) -> jax.Array:
    """Per-row log-likelihoods ``(N,)`` of labels ``y`` (``(N,)`` in ``{0, 1}``) under
    ``Bernoulli(logits = x @ beta + alpha)``, with the fused gradient described in the module
    docstring.

    Args:
        x: ``(N, D)`` design matrix, or its transpose ``(D, N)`` if ``feature_major``.
        alpha: ``()`` or ``(N,)`` intercept.
        beta: ``(D,)`` coefficients.
        y: ``(N,)`` labels (any numeric dtype; values outside ``{0, 1}`` give ``-inf``).
        feature_major: ``x`` is stored transposed (one row per feature). The fused pass then
            reads contiguous rows of length ``N``, which is faster on CPU; store the data that
            way once, outside the model.
    """
    x, alpha, beta = _check_glm_args(x, alpha, beta, feature_major)
    n = x.shape[1 if feature_major else 0]
    y = jnp.asarray(y)
    if y.shape != (n,):
        raise ValueError(
            f"BernoulliLogitGLM: the value must have shape (N,) = ({n},), got {y.shape}"
        )
    return _glm_log_lik(x, jnp.broadcast_to(alpha, (n,)), beta, y.astype(x.dtype), feature_major)


def _check_glm_args(x, alpha, beta, feature_major) -> tuple[jax.Array, jax.Array, jax.Array]:
    x, alpha, beta = jnp.asarray(x), jnp.asarray(alpha), jnp.asarray(beta)
    dtype = jnp.result_type(float, x, alpha, beta)
    layout = "(D, N)" if feature_major else "(N, D)"
    if x.ndim != 2:
        raise ValueError(f"BernoulliLogitGLM: x must be a {layout} matrix, got shape {x.shape}")
    n, d = x.shape[::-1] if feature_major else x.shape
    if beta.shape != (d,):
        raise ValueError(
            f"BernoulliLogitGLM: beta must have shape (D,) = ({d},) to match x {x.shape} "
            f"{layout}, got {beta.shape}"
        )
    if alpha.shape not in ((), (n,)):
        raise ValueError(
            f"BernoulliLogitGLM: alpha must be a scalar or have shape (N,) = ({n},), "
            f"got {alpha.shape}"
        )
    return x.astype(dtype), alpha.astype(dtype), beta.astype(dtype)


class BernoulliLogitGLM(Distribution):
    """``Bernoulli(logits = x @ beta + alpha)`` for the ``N`` rows of ``x``, batch shape
    ``(N,)``, with a ``log_prob`` whose gradient reads ``x`` once (see the module docstring).

    Args:
        x: ``(N, D)`` design matrix (data), or its transpose ``(D, N)`` if ``feature_major``.
        alpha: ``()`` or ``(N,)`` intercept.
        beta: ``(D,)`` coefficients.
        feature_major: ``x`` is given transposed, which makes the fused pass faster on CPU.

    Example::

        with jppl.plate("data", N):
            jppl.sample("y", dist.BernoulliLogitGLM(X, b, w), obs=y)
    """

    arg_constraints = {
        "x": constraints.real_matrix,
        "alpha": constraints.real,
        "beta": constraints.real_vector,
    }
    support = constraints.boolean
    pytree_aux_fields = ("feature_major",)

    def __init__(self, x, alpha, beta, *, feature_major: bool = False, validate_args=None):
        self.feature_major = bool(feature_major)
        self.x, self.alpha, self.beta = _check_glm_args(x, alpha, beta, self.feature_major)
        n = self.x.shape[1 if self.feature_major else 0]
        super().__init__((n,), validate_args=validate_args)

    @property
    def logits(self) -> jax.Array:
        """``(N,)`` log-odds ``x @ beta + alpha``."""
        return _logits(self.x, self.alpha, self.beta, self.feature_major)

    @property
    def probs(self) -> jax.Array:
        return jax.nn.sigmoid(self.logits)

    @property
    def mean(self) -> jax.Array:
        return self.probs

    @property
    def variance(self) -> jax.Array:
        p = self.probs
        return p * (1.0 - p)

    def sample(self, key, sample_shape=()):
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        return jax.random.bernoulli(key, self.probs, shape).astype(jnp.int32)

    def log_prob(self, value):
        value = jnp.asarray(value)
        if value.shape == self.batch_shape:
            return bernoulli_logit_glm_log_prob(
                self.x, self.alpha, self.beta, value, feature_major=self.feature_major
            )
        # other shapes (e.g. a leading sample dim): broadcast against the logits
        y = value.astype(self.x.dtype)
        z = jnp.broadcast_to(self.logits, jnp.broadcast_shapes(y.shape, self.batch_shape))
        return _terms(z, jnp.broadcast_to(y, z.shape))[0]
