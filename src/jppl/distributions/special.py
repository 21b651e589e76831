"""Inverse regularized incomplete gamma and beta functions (quantiles of Gamma and Beta), and
a regularized incomplete beta function differentiable in its shape parameters.

JAX has ``gammainc`` and ``betainc`` but no inverse (``jax.scipy.special`` has no
``gammaincinv`` / ``betaincinv``), and none of our dependencies (jax, numpy, optax, flax,
chex) maintains one, so they are written here once and shared by ``Gamma.icdf``,
``Beta.icdf``, ``StudentT.icdf``, ``InverseGamma.icdf`` (through ``gammainccinv``) and
``GaussianCopulaBeta``.

Both solve ``log F(t) = log p`` by Newton's method in a variable ``t`` in which the
distribution has a log-concave density (``t = log x`` for the Gamma, ``t = logit x`` for the
Beta). The log of a log-concave CDF (or survival function) is concave, so after the first
step Newton's iterates approach the root monotonically from one side; a bracket that every
evaluation narrows catches the rare first step that leaves it (the step is then replaced by
bisection). The lower tail is solved for ``p < 1/2`` and the upper tail (survival function,
evaluated directly, not as ``1 - cdf``) otherwise, so both tails keep relative accuracy.

Derivatives (``jax.custom_jvp``, implicit function theorem): ``dx/dp = 1 / pdf(x)``; for the
Gamma ``dx/da = -(dP/da)(a, x) / pdf(x)`` with JAX's own derivative of ``gammainc`` in ``a``.
JAX's ``betainc`` has no derivative in ``a`` or ``b`` (it raises), so :func:`betainc` here
wraps its value with derivatives in all three arguments (the shape ones from a continued
fraction, see its docstring), and ``betaincinv``'s shape derivatives use them.

All functions broadcast their arguments, work in float32 and float64, and are ``jit`` /
``vmap`` friendly (one ``lax.while_loop`` over the whole array, no Python loop over data).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero
from jax.scipy.special import betaln as _jax_betaln
from jax.scipy.special import digamma, gammainc, gammaincc, gammaln, ndtri
from jax.typing import ArrayLike

__all__ = ["betainc", "betaincinv", "betaln", "gammainccinv", "gammaincinv"]


def _promote(*args: ArrayLike) -> list[jax.Array]:
    """Float arrays of one dtype, broadcast to a common shape."""
    arrays = [jnp.asarray(x) for x in args]
    dtype = jnp.result_type(float, *arrays)
    return list(jnp.broadcast_arrays(*(x.astype(dtype) for x in arrays)))


def _newton_log_concave(
    log_tail_and_log_slope: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    log_target: jax.Array,
    upper: jax.Array,
    t0: jax.Array,
    t_min: float,
    t_max: float,
    max_iter: int,
) -> jax.Array:
    """Root ``t`` of ``g(t) = log_tail(t) - log_target`` (all arrays of one shape).

    ``log_tail_and_log_slope(t)`` returns ``log F(t)`` (lower tail, where ``upper`` is False)
    or ``log S(t)`` (upper tail) and ``log |dF/dt|``; ``g`` is concave and monotone, so the
    Newton step ``t - g / g'`` with ``g' = -+exp(log_slope - log_tail)`` converges from one
    side. ``[t_min, t_max]`` is the initial bracket.
    """
    dtype = t0.dtype
    eps = float(jnp.finfo(dtype).eps)
    sign = jnp.where(upper, -1.0, 1.0).astype(dtype)
    # |g| at this level is rounding noise of the special function: no step can improve on it
    g_tol = 8.0 * eps * jnp.maximum(1.0, jnp.abs(log_target))
    step_tol = eps**0.75

    def cond(state):
        i, _, _, _, done = state
        return (i < max_iter) & ~jnp.all(done)

    def body(state):
        i, t, lo, hi, done = state
        log_tail, log_slope = log_tail_and_log_slope(t)
        g = log_tail - log_target
        # t is left of the root where the (signed) increasing function sign * g is negative
        left = sign * g < 0
        lo = jnp.where(left & ~done, t, lo)
        hi = jnp.where(~left & ~done, t, hi)
        t_newton = t - sign * g * jnp.exp(log_tail - log_slope)
        step = jnp.abs(t_newton - t)
        scale = jnp.maximum(1.0, jnp.abs(t))
        inside = jnp.isfinite(t_newton) & (t_newton > lo) & (t_newton < hi)
        # a tiny step that leaves the bracket is noise in g near the root: stop there
        stalled = jnp.isfinite(t_newton) & ~inside & (step <= math.sqrt(eps) * scale)
        t_new = jnp.where(inside, t_newton, jnp.where(stalled, t, 0.5 * (lo + hi)))
        t_new = jnp.where(done, t, t_new)
        # the error after a Newton step of size s is O(s^2): s <= eps^(3/4) leaves rounding
        # noise only (waiting for s ~ eps would spin on that noise)
        converged = (inside & (step <= step_tol * scale)) | stalled | (jnp.abs(g) <= g_tol)
        return i + 1, t_new, lo, hi, done | converged

    lo = jnp.full_like(t0, t_min)
    hi = jnp.full_like(t0, t_max)
    t0 = jnp.clip(t0, t_min, t_max)
    done = ~jnp.isfinite(t0)
    _, t, _, _, _ = lax.while_loop(cond, body, (0, t0, lo, hi, done))
    return t


def _max_iter(dtype) -> int:
    return 60 if jnp.finfo(dtype).bits > 32 else 40


# ------------------------------------------------------------------------------------------
# gammaincinv
# ------------------------------------------------------------------------------------------
# jitted on their own so that eager calls (and repeated calls of one shape) compile the
# solver once, for both tails (``complement`` is an array, not a static flag); inside an
# outer jit they are inlined as usual
@jax.jit
def _gammaincinv_solve(a: jax.Array, y: jax.Array, complement: jax.Array) -> jax.Array:
    """``x >= 0`` with ``gammainc(a, x) = y``, or ``gammaincc(a, x) = y`` where the boolean
    ``complement`` is set; all of one shape (``a``, ``y`` of one float dtype)."""
    dtype = y.dtype
    finfo = jnp.finfo(dtype)
    t_min, t_max = math.log(float(finfo.tiny)), math.log(float(finfo.max))
    valid = (a > 0) & (y >= 0) & (y <= 1)
    a_s = jnp.where(valid, a, 1.0)
    y_s = jnp.where(valid & (y > 0) & (y < 1), y, 0.5)
    # the smaller of p and q = 1 - p is the given one, or 1 - (the given one) >= 1/2, which
    # is exact (Sterbenz), so both tails keep their relative accuracy
    p_s = jnp.where(complement, 1.0 - y_s, y_s)
    q_s = jnp.where(complement, y_s, 1.0 - y_s)
    upper = q_s < p_s
    log_target = jnp.where(upper, jnp.log(q_s), jnp.log(p_s))
    lgam = gammaln(a_s)

    # initial guess: the larger of the small-x series bound (gammainc(a, x) <= x^a / Gamma(a +
    # 1), so it never exceeds the root) and Wilson-Hilferty's normal approximation of the
    # cube root of a Gamma variable
    t_series = (jnp.log(p_s) + gammaln(a_s + 1.0)) / a_s
    s = 1.0 / (9.0 * a_s)
    z = jnp.where(upper, -ndtri(q_s), ndtri(p_s))
    cube = 1.0 - s + z * jnp.sqrt(s)
    t_wh = jnp.log(a_s) + 3.0 * jnp.log(jnp.where(cube > 0, cube, 1.0))
    t_wh = jnp.where(cube > 0, t_wh, t_min)
    # upper tail of a small shape: Q(a, x) ~ x^(a - 1) exp(-x) / Gamma(a), one fixed-point step
    x_up = jnp.maximum(-log_target - lgam, 1.0)
    x_up = jnp.maximum(-log_target - lgam + (a_s - 1.0) * jnp.log(x_up), 1.0)
    t0 = jnp.maximum(t_series, t_wh)
    t0 = jnp.where(upper & (a_s < 1.0), jnp.maximum(t0, jnp.log(x_up)), t0)

    def log_tail_and_log_slope(t):
        x = jnp.exp(t)
        tail = jnp.where(upper, gammaincc(a_s, x), gammainc(a_s, x))
        # d gammainc(a, e^t) / dt = x * pdf(x)
        log_slope = a_s * t - x - lgam
        # where the tail underflows, the leading term of its series (lower tail) or
        # asymptotic expansion (upper tail) keeps Newton going
        log_asym = jnp.where(upper, log_slope - t, log_slope - jnp.log(a_s))
        return jnp.where(tail > 0, jnp.log(tail), log_asym), log_slope

    t = _newton_log_concave(
        log_tail_and_log_slope, log_target, upper, t0, t_min, t_max, _max_iter(dtype)
    )
    x = jnp.exp(t)
    # p = 0 gives 0, p = 1 gives inf (from y = p, or y = q = 1 - p)
    p_end = jnp.where(complement, 1.0 - y, y)
    x = jnp.where(p_end == 0, 0.0, jnp.where(p_end == 1, jnp.inf, x))
    return jnp.where(valid, x, jnp.nan)


@partial(jax.custom_jvp, nondiff_argnums=(2,))
def _gammaincinv(a: jax.Array, y: jax.Array, complement: bool) -> jax.Array:
    return _gammaincinv_solve(a, y, jnp.full(y.shape, complement))


@_gammaincinv.defjvp
def _gammaincinv_jvp(complement, primals, tangents):
    a, y = primals
    ta, ty = tangents
    x = _gammaincinv(a, y, complement)
    # 1 / pdf(x), in logs so that it does not overflow before it is needed
    inv_pdf = jnp.exp(gammaln(a) + x - jnp.where(x > 0, (a - 1.0) * jnp.log(x), 0.0))
    # P(a, x) = p, or 1 - q: dx = (dp - dP/da da) / pdf, with dp = -dq for the complement
    dx = (-ty if complement else ty) * inv_pdf
    # dP/da at fixed x, from JAX's own derivative of gammainc in a
    dP_da = jax.jvp(lambda a_: gammainc(a_, x), (a,), (ta,))[1]
    return x, dx - dP_da * inv_pdf


def gammaincinv(a: ArrayLike, p: ArrayLike) -> jax.Array:
    """Inverse of the regularized lower incomplete gamma function: ``x`` with
    ``gammainc(a, x) = p`` (the ``p`` quantile of ``Gamma(a, rate=1)``).

    ``a > 0`` and ``p`` broadcast together; returns their broadcast shape and float dtype.
    ``p = 0`` gives 0, ``p = 1`` gives ``inf``; ``p`` outside ``[0, 1]`` or ``a <= 0`` gives
    ``nan``. Differentiable in ``p`` and ``a`` (implicit function theorem).
    """
    a, p = _promote(a, p)
    return _gammaincinv(a, p, False)


def gammainccinv(a: ArrayLike, q: ArrayLike) -> jax.Array:
    """Inverse of the regularized upper incomplete gamma function: ``x`` with
    ``gammaincc(a, x) = q`` (the upper ``q`` quantile of ``Gamma(a, rate=1)``), accurate for
    small ``q`` where ``gammaincinv(a, 1 - q)`` would lose ``1 - q``'s digits.

    Shapes, dtypes and derivatives as :func:`gammaincinv`; ``q = 0`` gives ``inf``, ``q = 1``
    gives 0.
    """
    a, q = _promote(a, q)
    return _gammaincinv(a, q, True)


# ------------------------------------------------------------------------------------------
# betainc (differentiable in a and b)
# ------------------------------------------------------------------------------------------
# continued-fraction steps; each does one even and one odd term. The fraction converges in
# O(sqrt(max(a, b))) steps on the side of the symmetry switch it is used on, so 300 steps
# cover shapes up to ~1e4 to float64 precision
_CF_STEPS = 300


def _digamma_step(z: jax.Array, d: jax.Array) -> jax.Array:
    """``digamma(z + d) - digamma(z)`` (``z, d > 0``) without the cancellation of the plain
    difference when ``d << z``: for ``z >= 8`` from the asymptotic series ``digamma(z) ~ log z
    - 1 / (2z) - 1 / (12 z^2) + 1 / (120 z^4) - 1 / (252 z^6) + 1 / (240 z^8) - 1 / (132
    z^10)``, term by term (truncation below 1e-11 relative)."""
    big = z >= 8.0
    zs = jnp.where(big, z, 8.0)
    w = zs + d
    series = (
        jnp.log1p(d / zs)
        + d / (2.0 * zs * w)
        + d * (zs + w) / (12.0 * zs**2 * w**2)
        + (1.0 / w**4 - 1.0 / zs**4) / 120.0
        - (1.0 / w**6 - 1.0 / zs**6) / 252.0
        + (1.0 / w**8 - 1.0 / zs**8) / 240.0
        - (1.0 / w**10 - 1.0 / zs**10) / 132.0
    )
    return jnp.where(big, series, digamma(z + d) - digamma(z))


def betaln(a, b):
    """``log B(a, b)``, accurate in float64.

    ``jax.scipy.special.betaln`` (JAX 0.10 to 0.11) is off by up to 3.5e-7 relative in
    float64 for moderate arguments (``betaln(2, 8)``: 1.3e-6 absolute, against SciPy); the
    log-gamma sum is within 2e-14 there. JAX's form is kept where both arguments' log-gammas
    are large enough for the sum to cancel (``max(a, b) >= 1e4``).
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    direct = gammaln(a) + gammaln(b) - gammaln(a + b)
    return jnp.where(jnp.maximum(a, b) < 1e4, direct, _jax_betaln(a, b))


@jax.custom_jvp
def _lbeta(a: jax.Array, b: jax.Array) -> jax.Array:
    """:func:`betaln` whose derivatives ``digamma(a) - digamma(a + b)`` (and in ``b``) avoid
    the cancellation of the plain digamma difference when one shape is much larger than the
    other."""
    return betaln(a, b)


@_lbeta.defjvp
def _lbeta_jvp(primals, tangents):
    a, b = primals
    ta, tb = tangents
    return _lbeta(a, b), -_digamma_step(a, b) * ta - _digamma_step(b, a) * tb


def _log_betainc_cf(a: jax.Array, b: jax.Array, x: jax.Array) -> jax.Array:
    """``log I_x(a, b)`` by the continued fraction (modified Lentz, fixed step count so it
    is differentiable to any order); accurate for ``0 < x < (a + 1) / (a + b + 2)``.

    ``I_x(a, b) = x^a (1 - x)^b / (a B(a, b)) * 1 / (1 + d_1 / (1 + d_2 / (1 + ...)))`` with
    ``d_{2m} = m (b - m) x / ((a + 2m - 1)(a + 2m))`` and ``d_{2m+1} = -(a + m)(a + b + m) x /
    ((a + 2m)(a + 2m + 1))``.
    """
    tiny = float(jnp.finfo(x.dtype).tiny) * 1e10

    def guard(v):
        return jnp.where(jnp.abs(v) < tiny, tiny, v)

    def lentz(coef, c, d, log_h):
        d = 1.0 / guard(1.0 + coef * d)
        c = guard(1.0 + coef / c)
        return c, d, log_h + jnp.log(jnp.abs(c * d))

    def body(m, state):
        m = jnp.asarray(m, x.dtype)
        even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m))
        state = lentz(even, *state)
        odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0))
        return lentz(odd, *state)

    # the zeroth step of the fraction, d_1 with m = 0
    d = 1.0 / guard(1.0 - (a + b) * x / (a + 1.0))
    c = jnp.ones_like(x)
    _, _, log_h = lax.fori_loop(1, _CF_STEPS + 1, body, (c, d, jnp.log(jnp.abs(d))))
    return a * jnp.log(x) + b * jnp.log1p(-x) - jnp.log(a) - _lbeta(a, b) + log_h


def _betainc_shape_grads(a: jax.Array, b: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(dI/da, dI/db)`` of ``I_x(a, b)`` (all arrays of one shape, ``0 < x < 1``).

    The smaller tail ``J`` (``I_x(a, b)``, or ``1 - I_x(a, b) = I_{1 - x}(b, a)`` past the
    mean-like switch point, where the fraction converges fast) is differentiated as ``J d(log
    J)``, by forward-mode AD through the fixed-step continued fraction: the fraction and its
    derivatives converge together geometrically, so the iterate's derivative is the limit's.
    """
    flip = x > (a + 1.0) / (a + b + 2.0)
    x_t = jnp.where(flip, 1.0 - x, x)

    def log_tail(a_, b_):
        return _log_betainc_cf(jnp.where(flip, b_, a_), jnp.where(flip, a_, b_), x_t)

    one, zero = jnp.ones_like(x), jnp.zeros_like(x)
    # both directions in one pass of the fraction (the primal is the same in both)
    log_j, (dlog_da, dlog_db) = jax.vmap(
        lambda ta, tb: jax.jvp(log_tail, (a, b), (ta, tb)), out_axes=(None, 0)
    )(jnp.stack([one, zero]), jnp.stack([zero, one]))
    # I = J, or 1 - J where flipped
    scale = jnp.where(flip, -1.0, 1.0) * jnp.exp(log_j)
    return scale * dlog_da, scale * dlog_db


@jax.custom_jvp
def _betainc(a: jax.Array, b: jax.Array, x: jax.Array) -> jax.Array:
    return jax.scipy.special.betainc(a, b, x)


def _betainc_jvp(primals, tangents):
    a, b, x = primals
    ta, tb, tx = tangents
    y = _betainc(a, b, x)
    dy = jnp.zeros_like(y)
    inside = (x > 0) & (x < 1) & (a > 0) & (b > 0)
    x_s = jnp.where(inside, x, 0.5)
    a_s, b_s = jnp.where(inside, a, 1.0), jnp.where(inside, b, 1.0)
    if not isinstance(tx, SymbolicZero):
        # the Beta(a, b) density (infinite at an edge where its shape is below 1)
        log_pdf = (
            jnp.where(x > 0, (a - 1.0) * jnp.log(jnp.where(x > 0, x, 1.0)), 0.0)
            + jnp.where(x < 1, (b - 1.0) * jnp.log1p(-jnp.where(x < 1, x, 0.0)), 0.0)
            - _lbeta(a, b)
        )
        pdf = jnp.where((x >= 0) & (x <= 1), jnp.exp(log_pdf), 0.0)
        dy = dy + pdf * tx
    if not (isinstance(ta, SymbolicZero) and isinstance(tb, SymbolicZero)):
        # at x = 0 or 1, I is 0 or 1 for every shape: no derivative in them
        da, db = _betainc_shape_grads(a_s, b_s, x_s)
        if not isinstance(ta, SymbolicZero):
            dy = dy + jnp.where(inside, da, 0.0) * ta
        if not isinstance(tb, SymbolicZero):
            dy = dy + jnp.where(inside, db, 0.0) * tb
    return y, dy


_betainc.defjvp(_betainc_jvp, symbolic_zeros=True)


def betainc(a: ArrayLike, b: ArrayLike, x: ArrayLike) -> jax.Array:
    """Regularized incomplete beta function ``I_x(a, b)`` (the cdf of ``Beta(a, b)`` at
    ``x``), differentiable in all three arguments.

    The value is ``jax.scipy.special.betainc``'s; only the derivatives are ours. JAX's
    ``betainc`` has no derivative in ``a`` or ``b`` (it raises), and no maintained library
    among our dependencies (jax, numpy, optax, flax, chex) provides one, so ``dI/da`` and
    ``dI/db`` are computed here: forward-mode AD through a fixed-step continued fraction of
    ``log I`` (of the smaller of ``I`` and ``1 - I``), accurate to ~1e-9 relative in float64
    for shapes up to ~1e4 (the fraction's step count bounds the shapes). ``dI/dx`` is the
    ``Beta(a, b)`` density.

    ``a > 0``, ``b > 0`` and ``x`` broadcast together; returns their broadcast shape and float
    dtype (``nan`` where JAX's ``betainc`` gives it). At ``x = 0`` or ``1`` the shape
    derivatives are 0.
    """
    a, b, x = _promote(a, b, x)
    return _betainc(a, b, x)


# ------------------------------------------------------------------------------------------
# betaincinv
# ------------------------------------------------------------------------------------------
@jax.jit
def _betaincinv_solve(a: jax.Array, b: jax.Array, p: jax.Array) -> jax.Array:
    """``x in [0, 1]`` with ``betainc(a, b, x) = p``; all of one shape and dtype."""
    dtype = p.dtype
    t_max = -math.log(float(jnp.finfo(dtype).tiny))
    valid = (a > 0) & (b > 0) & (p >= 0) & (p <= 1)
    a_s = jnp.where(valid, a, 1.0)
    b_s = jnp.where(valid, b, 1.0)
    p_s = jnp.where(valid & (p > 0) & (p < 1), p, 0.5)
    upper = p_s > 0.5
    q_s = 1.0 - p_s
    log_target = jnp.where(upper, jnp.log(q_s), jnp.log(p_s))
    lbeta = betaln(a_s, b_s)

    # initial guess: the tail series I_x(a, b) ~ x^a / (a B(a, b)) near 0 (and its mirror
    # near 1), or, in the bulk, a normal approximation of logit(X) (mean ~ log(a / b),
    # variance ~ 1 / a + 1 / b); of the two, the one on the side from which Newton's
    # iterates converge monotonically (left for the lower tail, right for the upper)
    log_x = jnp.minimum((jnp.log(p_s) + jnp.log(a_s) + lbeta) / a_s, -1e-3)
    log_1mx = jnp.minimum((jnp.log(q_s) + jnp.log(b_s) + lbeta) / b_s, -1e-3)
    t_lo = log_x - jnp.log1p(-jnp.exp(log_x))
    t_hi = jnp.log1p(-jnp.exp(log_1mx)) - log_1mx
    z = jnp.where(upper, -ndtri(q_s), ndtri(p_s))
    t_mid = jnp.log(a_s / b_s) + z * jnp.sqrt(1.0 / a_s + 1.0 / b_s)
    t0 = jnp.where(upper, jnp.maximum(t_hi, t_mid), jnp.minimum(t_lo, t_mid))
    # the upper tail is I_{1 - x}(b, a): one betainc call serves both tails
    a_t, b_t = jnp.where(upper, b_s, a_s), jnp.where(upper, a_s, b_s)
    log_a_t = jnp.log(a_t)

    def log_tail_and_log_slope(t):
        # x, or 1 - x for the upper tail, to full precision, and its log and log complement
        u = jax.nn.sigmoid(jnp.where(upper, -t, t))
        log_u, log_1mu = (
            -jax.nn.softplus(jnp.where(upper, t, -t)),
            -jax.nn.softplus(jnp.where(upper, -t, t)),
        )
        # d betainc(a, b, sigmoid(t)) / dt = x^a (1 - x)^b / B(a, b)
        log_slope = a_t * log_u + b_t * log_1mu - lbeta
        tail = jax.scipy.special.betainc(a_t, b_t, u)
        # where the tail underflows, its series' first term (a lower bound) keeps Newton going
        log_tail = jnp.where(tail > 0, jnp.log(tail), log_slope - log_a_t)
        return log_tail, log_slope

    t = _newton_log_concave(
        log_tail_and_log_slope, log_target, upper, t0, -t_max, t_max, _max_iter(dtype)
    )
    x = jax.nn.sigmoid(t)
    x = jnp.where(p == 0, 0.0, jnp.where(p == 1, 1.0, x))
    return jnp.where(valid, x, jnp.nan)


@jax.custom_jvp
def _betaincinv(a: jax.Array, b: jax.Array, p: jax.Array) -> jax.Array:
    return _betaincinv_solve(a, b, p)


def _betaincinv_jvp(primals, tangents):
    a, b, p = primals
    ta, tb, tp = tangents
    x = _betaincinv(a, b, p)
    if all(isinstance(t, SymbolicZero) for t in tangents):
        return x, jnp.zeros_like(x)
    # 1 / pdf(x) = B(a, b) / (x^(a - 1) (1 - x)^(b - 1))
    log_pdf = (
        jnp.where(x > 0, (a - 1.0) * jnp.log(x), 0.0)
        + jnp.where(x < 1, (b - 1.0) * jnp.log1p(-x), 0.0)
        - _lbeta(a, b)
    )
    inv_pdf = jnp.exp(-log_pdf)
    dx = jnp.zeros_like(x) if isinstance(tp, SymbolicZero) else tp * inv_pdf
    if not (isinstance(ta, SymbolicZero) and isinstance(tb, SymbolicZero)):
        # I_x(a, b) = p at the solution: dx = -(dI/da da + dI/db db) / pdf(x); at x = 0 or 1
        # (p = 0 or 1) the quantile does not move with the shapes
        inside = (x > 0) & (x < 1)
        x_s = jnp.where(inside, x, 0.5)
        da, db = _betainc_shape_grads(a, b, x_s)
        d_shape = jnp.zeros_like(x)
        if not isinstance(ta, SymbolicZero):
            d_shape = d_shape + da * ta
        if not isinstance(tb, SymbolicZero):
            d_shape = d_shape + db * tb
        dx = dx - jnp.where(inside, d_shape * inv_pdf, 0.0)
    return x, dx


_betaincinv.defjvp(_betaincinv_jvp, symbolic_zeros=True)


def betaincinv(a: ArrayLike, b: ArrayLike, p: ArrayLike) -> jax.Array:
    """Inverse of the regularized incomplete beta function: ``x`` with ``betainc(a, b, x) =
    p`` (the ``p`` quantile of ``Beta(a, b)``).

    ``a > 0``, ``b > 0`` and ``p`` broadcast together; returns their broadcast shape and
    float dtype. ``p = 0`` gives 0, ``p = 1`` gives 1; ``p`` outside ``[0, 1]`` or a
    non-positive shape gives ``nan``. Differentiable in ``p`` (``dx/dp = 1 / pdf(x)``) and in
    ``a`` and ``b`` (``dx/da = -(dI/da)(a, b, x) / pdf(x)``, with :func:`betainc`'s shape
    derivatives).
    """
    a, b, p = _promote(a, b, p)
    return _betaincinv(a, b, p)
