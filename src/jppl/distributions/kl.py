"""Kullback-Leibler divergences ``KL(p || q)`` with a registry dispatched on the types of p and q.

``kl_divergence(p, q)`` returns an array of shape ``broadcast(p.batch_shape, q.batch_shape)``.
New pairs are added with the ``register_kl(type_p, type_q)`` decorator; among the registered
pairs that match ``(type(p), type(q))``, the most specific one along the two MROs is used
(smallest total MRO distance; ties go to the pair more specific in ``p``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import digamma, gammaln, ndtr, xlogy

from jppl.distributions.continuous import (
    Beta,
    Exponential,
    Gamma,
    Laplace,
    Normal,
    Uniform,
    Weibull,
)
from jppl.distributions.continuous_extra import Kumaraswamy
from jppl.distributions.discrete import _CategoricalBase
from jppl.distributions.distribution import (
    Delta,
    Distribution,
    ExpandedDistribution,
    Independent,
    MaskedDistribution,
)
from jppl.distributions.multivariate import (
    Dirichlet,
    LowRankMultivariateNormal,
    MultivariateNormal,
)
from jppl.distributions.multivariate_extra import CirculantNormal
from jppl.distributions.util import betaln, lazy_broadcast_shape, sum_rightmost

__all__ = ["kl_divergence", "register_kl"]

_EULER_GAMMA = 0.5772156649015329

KLFn = Callable[[Distribution, Distribution], object]

_KL_REGISTRY: dict[tuple[type, type], KLFn] = {}
_KL_DISPATCH_CACHE: dict[tuple[type, type], KLFn | None] = {}


def register_kl(type_p: type, type_q: type) -> Callable[[KLFn], KLFn]:
    """Decorator registering ``fn(p, q)`` as ``KL(p || q)`` for ``p: type_p``, ``q: type_q``.

    Subclasses inherit the registration unless a more specific pair is registered.
    """
    if not (isinstance(type_p, type) and issubclass(type_p, Distribution)):
        raise TypeError(f"register_kl: expected a Distribution subclass, got {type_p!r}")
    if not (isinstance(type_q, type) and issubclass(type_q, Distribution)):
        raise TypeError(f"register_kl: expected a Distribution subclass, got {type_q!r}")

    def decorator(fn: KLFn) -> KLFn:
        _KL_REGISTRY[(type_p, type_q)] = fn
        _KL_DISPATCH_CACHE.clear()
        return fn

    return decorator


def _dispatch(type_p: type, type_q: type) -> KLFn | None:
    key = (type_p, type_q)
    if key in _KL_DISPATCH_CACHE:
        return _KL_DISPATCH_CACHE[key]
    mro_p, mro_q = type_p.__mro__, type_q.__mro__
    best, best_rank = None, None
    for (tp, tq), fn in _KL_REGISTRY.items():
        if tp in mro_p and tq in mro_q:
            i, j = mro_p.index(tp), mro_q.index(tq)
            rank = (i + j, i)
            if best_rank is None or rank < best_rank:
                best, best_rank = fn, rank
    _KL_DISPATCH_CACHE[key] = best
    return best


def kl_divergence(p: Distribution, q: Distribution):
    """``KL(p || q) = E_p[log p(x) - log q(x)]``, shape ``broadcast(p.batch, q.batch)``.

    Raises ``NotImplementedError`` when no registered pair matches the two types, and
    ``ValueError`` when the event shapes differ.
    """
    fn = _dispatch(type(p), type(q))
    if fn is None:
        raise NotImplementedError(
            f"No KL divergence is registered for p: {type(p).__name__} and "
            f"q: {type(q).__name__}; add one with @register_kl({type(p).__name__}, "
            f"{type(q).__name__})."
        )
    if tuple(p.event_shape) != tuple(q.event_shape):
        raise ValueError(
            f"kl_divergence: event shapes differ: p ({type(p).__name__}) has "
            f"{p.event_shape}, q ({type(q).__name__}) has {q.event_shape}."
        )
    return fn(p, q)


def _batch(p: Distribution, q: Distribution) -> tuple[int, ...]:
    return lazy_broadcast_shape(p.batch_shape, q.batch_shape)


# -- wrappers -----------------------------------------------------------------------------------
def _unwrap_independent(d: Distribution) -> tuple[Distribution, int]:
    n = 0
    while isinstance(d, Independent):
        n += d.reinterpreted_batch_ndims
        d = d.base_dist
    return d, n


@register_kl(Independent, Independent)
def _kl_independent_independent(p: Independent, q: Independent):
    base_p, n_p = _unwrap_independent(p)
    base_q, n_q = _unwrap_independent(q)
    if n_p != n_q:
        raise NotImplementedError(
            "KL between Independent distributions needs the same number of reinterpreted "
            f"batch dims, got {n_p} and {n_q}."
        )
    return sum_rightmost(kl_divergence(base_p, base_q), n_p)


@register_kl(ExpandedDistribution, Distribution)
def _kl_expanded_any(p: ExpandedDistribution, q: Distribution):
    return jnp.broadcast_to(kl_divergence(p.base_dist, q), _batch(p, q))


@register_kl(Distribution, ExpandedDistribution)
def _kl_any_expanded(p: Distribution, q: ExpandedDistribution):
    return jnp.broadcast_to(kl_divergence(p, q.base_dist), _batch(p, q))


@register_kl(ExpandedDistribution, ExpandedDistribution)
def _kl_expanded_expanded(p: ExpandedDistribution, q: ExpandedDistribution):
    return jnp.broadcast_to(kl_divergence(p.base_dist, q.base_dist), _batch(p, q))


def _apply_mask(kl, mask, shape):
    """``kl`` broadcast to ``shape`` with zeros where ``mask`` (bool or bool array) is False."""
    if mask is True:
        return jnp.broadcast_to(kl, shape)
    if mask is False:
        return jnp.zeros(shape, dtype=jnp.result_type(kl))
    return jnp.broadcast_to(jnp.where(mask, kl, jnp.zeros((), jnp.result_type(kl))), shape)


def _and_masks(m1, m2):
    if m1 is False or m2 is False:
        return False
    if m1 is True:
        return m2
    if m2 is True:
        return m1
    return m1 & m2


@register_kl(MaskedDistribution, Distribution)
def _kl_masked_any(p: MaskedDistribution, q: Distribution):
    return _apply_mask(kl_divergence(p.base_dist, q), p._mask, _batch(p, q))


@register_kl(Distribution, MaskedDistribution)
def _kl_any_masked(p: Distribution, q: MaskedDistribution):
    return _apply_mask(kl_divergence(p, q.base_dist), q._mask, _batch(p, q))


@register_kl(MaskedDistribution, MaskedDistribution)
def _kl_masked_masked(p: MaskedDistribution, q: MaskedDistribution):
    mask = _and_masks(p._mask, q._mask)
    return _apply_mask(kl_divergence(p.base_dist, q.base_dist), mask, _batch(p, q))


@register_kl(Delta, Distribution)
def _kl_delta_any(p: Delta, q: Distribution):
    # Convention used by MAP (AutoDelta) guides: the entropy of a point mass is taken as zero,
    # so KL(Delta(v) || q) = log_density - log q(v).
    return jnp.broadcast_to(p.log_density - q.log_prob(p.v), _batch(p, q))


# -- univariate continuous ----------------------------------------------------------------------
@register_kl(Normal, Normal)
def _kl_normal_normal(p: Normal, q: Normal):
    var_ratio = (p.scale / q.scale) ** 2
    t1 = ((p.loc - q.loc) / q.scale) ** 2
    return 0.5 * (var_ratio + t1 - 1.0 - jnp.log(var_ratio))


@register_kl(Normal, Laplace)
def _kl_normal_laplace(p: Normal, q: Laplace):
    # -H(p) + log(2 b) + E|X - m| / b, with E|X - m| the mean of a folded normal.
    delta = p.loc - q.loc
    s = p.scale
    abs_mean = s * math.sqrt(2 / math.pi) * jnp.exp(-0.5 * (delta / s) ** 2) + delta * (
        1.0 - 2.0 * ndtr(-delta / s)
    )
    neg_entropy = -0.5 * jnp.log(2 * math.pi * math.e * s**2)
    return neg_entropy + jnp.log(2 * q.scale) + abs_mean / q.scale


@register_kl(Laplace, Laplace)
def _kl_laplace_laplace(p: Laplace, q: Laplace):
    diff = jnp.abs(p.loc - q.loc)
    return (
        jnp.log(q.scale / p.scale)
        + diff / q.scale
        + p.scale / q.scale * jnp.exp(-diff / p.scale)
        - 1.0
    )


@register_kl(Exponential, Exponential)
def _kl_exponential_exponential(p: Exponential, q: Exponential):
    ratio = q.rate / p.rate
    return ratio - jnp.log(ratio) - 1.0


@register_kl(Gamma, Gamma)
def _kl_gamma_gamma(p: Gamma, q: Gamma):
    a_p, b_p, a_q, b_q = p.concentration, p.rate, q.concentration, q.rate
    return (
        (a_p - a_q) * digamma(a_p)
        - gammaln(a_p)
        + gammaln(a_q)
        + a_q * (jnp.log(b_p) - jnp.log(b_q))
        + a_p * (b_q - b_p) / b_p
    )


@register_kl(Beta, Beta)
def _kl_beta_beta(p: Beta, q: Beta):
    a_p, b_p, a_q, b_q = p.concentration1, p.concentration0, q.concentration1, q.concentration0
    return (
        betaln(a_q, b_q)
        - betaln(a_p, b_p)
        + (a_p - a_q) * digamma(a_p)
        + (b_p - b_q) * digamma(b_p)
        + (a_q - a_p + b_q - b_p) * digamma(a_p + b_p)
    )


@register_kl(Uniform, Uniform)
def _kl_uniform_uniform(p: Uniform, q: Uniform):
    inside = (q.low <= p.low) & (p.high <= q.high)
    kl = jnp.log((q.high - q.low) / (p.high - p.low))
    return jnp.where(inside, kl, jnp.inf)


@register_kl(Uniform, Normal)
def _kl_uniform_normal(p: Uniform, q: Normal):
    width = p.high - p.low
    sq = width**2 / 12.0 + (0.5 * (p.low + p.high) - q.loc) ** 2
    return -jnp.log(width) + 0.5 * jnp.log(2 * math.pi * q.scale**2) + sq / (2 * q.scale**2)


# -- pairs with the distributions of continuous_extra ----------------------------------------
@register_kl(Weibull, Gamma)
def _kl_weibull_gamma(p: Weibull, q: Gamma):
    # -H(p) - E_p[log q(x)], with E_p[log x] = log(scale) - euler_gamma / k and
    # E_p[x] = scale * Gamma(1 + 1 / k) for p = Weibull(scale, k)
    k, lam = p.concentration, p.scale
    alpha, beta = q.concentration, q.rate
    return (
        jnp.log(k)
        + gammaln(alpha)
        - alpha * jnp.log(lam * beta)
        + alpha * _EULER_GAMMA / k
        - _EULER_GAMMA
        - 1.0
        + beta * lam * jnp.exp(gammaln(1.0 + 1.0 / k))
    )


@register_kl(Kumaraswamy, Beta)
def _kl_kumaraswamy_beta(p: Kumaraswamy, q: Beta):
    # -H(p) - E_p[log q(x)]; E_p[log(1 - x)] = -sum_m b B(m / a, b) / (m + a b) is the series
    # truncated after p.KL_KUMARASWAMY_BETA_TAYLOR_ORDER terms (as NumPyro)
    a, b = p.concentration1, p.concentration0
    alpha, beta = q.concentration1, q.concentration0
    harmonic = digamma(b) + 1.0 / b + _EULER_GAMMA  # H_b = E_p[-a log x]
    m = jnp.arange(1, p.KL_KUMARASWAMY_BETA_TAYLOR_ORDER + 1, dtype=jnp.result_type(a))
    a_, b_ = a[..., None], b[..., None]
    series = jnp.sum(b_ * jnp.exp(betaln(m / a_, b_)) / (m + a_ * b_), axis=-1)
    return (
        jnp.log(a * b)
        + betaln(alpha, beta)
        + (1.0 / b - 1.0)
        + (alpha / a - 1.0) * harmonic
        + (beta - 1.0) * series
    )


# -- multivariate -------------------------------------------------------------------------------
@register_kl(Dirichlet, Dirichlet)
def _kl_dirichlet_dirichlet(p: Dirichlet, q: Dirichlet):
    a_p, a_q = p.concentration, q.concentration
    s_p = jnp.sum(a_p, -1)
    return (
        gammaln(s_p)
        - jnp.sum(gammaln(a_p), -1)
        - gammaln(jnp.sum(a_q, -1))
        + jnp.sum(gammaln(a_q), -1)
        + jnp.sum((a_p - a_q) * (digamma(a_p) - digamma(s_p)[..., None]), -1)
    )


_Gaussian = MultivariateNormal | LowRankMultivariateNormal


def _gaussian_factor(p: _Gaussian):
    """``(S, log det Sigma)`` with ``S S^T = Sigma``; ``S: (..., k, m)``."""
    if isinstance(p, MultivariateNormal):
        L = p.scale_tril
        return L, 2 * jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), -1)
    W, D = p.cov_factor, p.cov_diag
    S = jnp.concatenate([W, jnp.sqrt(D)[..., None] * jnp.eye(D.shape[-1], dtype=D.dtype)], -1)
    return S, p._log_det()


def _inv_quad_trace(q: _Gaussian, X):
    """``trace(X^T Sigma_q^{-1} X)`` for ``X: (..., k, m)``; returns the broadcast batch."""
    if isinstance(q, MultivariateNormal):
        L = q.scale_tril
        batch = lazy_broadcast_shape(L.shape[:-2], X.shape[:-2])
        L = jnp.broadcast_to(L, batch + L.shape[-2:])
        X = jnp.broadcast_to(X, batch + X.shape[-2:])
        Z = solve_triangular(L, X, lower=True)
        return jnp.sum(Z * Z, axis=(-2, -1))
    # Woodbury: Sigma^{-1} = D^{-1} - D^{-1} W C^{-1} W^T D^{-1}, C = L_c L_c^T.
    W, D = q.cov_factor, q.cov_diag
    Lc = q._capacitance_tril()
    X_d = X / D[..., None]
    first = jnp.sum(X * X_d, axis=(-2, -1))
    V = jnp.matmul(jnp.swapaxes(W, -2, -1), X_d)  # (..., r, m)
    batch = lazy_broadcast_shape(Lc.shape[:-2], V.shape[:-2])
    Lc = jnp.broadcast_to(Lc, batch + Lc.shape[-2:])
    V = jnp.broadcast_to(V, batch + V.shape[-2:])
    Z = solve_triangular(Lc, V, lower=True)
    return first - jnp.sum(Z * Z, axis=(-2, -1))


def _log_det(q: _Gaussian):
    return _gaussian_factor(q)[1] if isinstance(q, MultivariateNormal) else q._log_det()


@register_kl(MultivariateNormal, MultivariateNormal)
@register_kl(LowRankMultivariateNormal, MultivariateNormal)
@register_kl(MultivariateNormal, LowRankMultivariateNormal)
@register_kl(LowRankMultivariateNormal, LowRankMultivariateNormal)
def _kl_gaussian_gaussian(p: _Gaussian, q: _Gaussian):
    """``0.5 [tr(Sq^-1 Sp) + d^T Sq^-1 d - k + log|Sq| - log|Sp|]``, ``d = mu_q - mu_p``."""
    k = p.event_shape[0]
    S_p, log_det_p = _gaussian_factor(p)
    trace = _inv_quad_trace(q, S_p)
    maha = _inv_quad_trace(q, (q.loc - p.loc)[..., None])
    kl = 0.5 * (trace + maha - k + _log_det(q) - log_det_p)
    return jnp.broadcast_to(kl, _batch(p, q))


# -- categorical ----------------------------------------------------------------------------------
@register_kl(_CategoricalBase, _CategoricalBase)
def _kl_categorical_categorical(p: _CategoricalBase, q: _CategoricalBase):
    """``sum_k p_k (log p_k - log q_k)`` (terms with ``p_k = 0`` are 0), for probs or logits."""
    log_p, log_q = p._normalized_logits(), q._normalized_logits()
    probs = jnp.exp(log_p)
    return jnp.sum(xlogy(probs, probs) - jnp.where(probs > 0, probs * log_q, 0.0), axis=-1)


# -- circulant ------------------------------------------------------------------------------------
@register_kl(Independent, CirculantNormal)
def _kl_diag_normal_circulant(p: Independent, q: CirculantNormal):
    """``KL(N(m, diag s^2) || N(mu, C))`` with ``C`` circulant, in ``O(n log n)``.

    ``C``'s eigenvalues are ``lam = FFT(c)`` (``c`` its first row), so ``log det C = sum log lam``,
    ``C^-1`` is circulant with the constant diagonal ``mean(1 / lam)``, and
    ``d^T C^-1 d = sum |FFT(d)|^2 / lam / n``.
    """
    base, ndims = _unwrap_independent(p)
    if not isinstance(base, Normal) or ndims != 1:
        raise NotImplementedError(
            "KL(Independent || CirculantNormal) needs p = Normal(...).to_event(1), got "
            f"{type(base).__name__} with {ndims} reinterpreted dims."
        )
    n = q.event_shape[0]
    lam = jnp.fft.fft(q.covariance_row, axis=-1).real
    var = jnp.broadcast_to(base.scale**2, p.batch_shape + p.event_shape)
    d = q.loc - base.loc
    trace = jnp.mean(1.0 / lam, axis=-1) * jnp.sum(var, axis=-1)
    maha = jnp.sum(jnp.abs(jnp.fft.fft(d, axis=-1)) ** 2 / lam, axis=-1) / n
    logdet = jnp.sum(jnp.log(lam), axis=-1) - jnp.sum(jnp.log(var), axis=-1)
    return 0.5 * (trace + maha - n + logdet)
