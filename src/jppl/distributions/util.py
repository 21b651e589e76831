"""Small numerical and shape helpers shared by the distributions."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import expit, logit

from jppl.distributions.special import betaincinv, betaln, gammaincinv  # NumPyro: these here

__all__ = [
    "add_diag",
    "betaincinv",
    "betaln",
    "binary_cross_entropy_with_logits",
    "binomial",
    "categorical",
    "cholesky_update",
    "clamp_probs",
    "gammaincinv",
    "is_concrete",
    "is_prng_key",
    "lazy_broadcast_shape",
    "log1mexp",
    "logdiffexp",
    "logits_to_probs",
    "multinomial",
    "probs_to_logits",
    "promote_shapes",
    "safe_normalize",
    "sum_rightmost",
    "validate_sample_shape",
    "vec_to_tril_matrix",
    "tril_matrix_to_vec",
    "von_mises_centered",
]


def is_concrete(x) -> bool:
    """True when ``x`` holds concrete values (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def is_prng_key(key) -> bool:
    """True for both new-style typed keys and raw ``uint32[2]`` keys."""
    try:
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            return True
    except AttributeError:
        return False
    return key.dtype == jnp.uint32 and jnp.shape(key)[-1:] == (2,)


def promote_shapes(*args, shape: Sequence[int] = ()):
    """Left-pad each argument's shape with ones so that all have the same ndim.

    Scalars stay scalars unless ``shape`` asks for more dims. Arguments are converted to arrays.
    """
    if len(args) < 2 and not shape:
        return [jnp.asarray(a) for a in args]
    shapes = [jnp.shape(a) for a in args]
    num_dims = max(len(shape), *(len(s) for s in shapes))
    out = []
    for a, s in zip(args, shapes, strict=True):
        a = jnp.asarray(a)
        if len(s) < num_dims:
            a = jnp.reshape(a, (1,) * (num_dims - len(s)) + s)
        out.append(a)
    return out


def lazy_broadcast_shape(*shapes: Sequence[int]) -> tuple[int, ...]:
    """``np.broadcast_shapes`` with an error that names the offending shapes."""
    try:
        return tuple(np.broadcast_shapes(*[tuple(s) for s in shapes]))
    except ValueError as e:
        raise ValueError(f"Shapes {list(map(tuple, shapes))} do not broadcast together.") from e


def sum_rightmost(x, dim: int):
    """Sum the rightmost ``dim`` dimensions of ``x`` (no-op for dim <= 0)."""
    if dim <= 0:
        return x
    return jnp.sum(x, axis=tuple(range(-dim, 0)))


def clamp_probs(probs):
    finfo = jnp.finfo(jnp.result_type(probs, float))
    return jnp.clip(probs, finfo.tiny, 1.0 - finfo.eps)


def probs_to_logits(probs, is_binary: bool = False):
    """Probabilities to logits; for categorical probs these are log-probabilities."""
    ps_clamped = clamp_probs(probs)
    if is_binary:
        return logit(ps_clamped)
    return jnp.log(ps_clamped)


def logits_to_probs(logits, is_binary: bool = False):
    if is_binary:
        return expit(logits)
    return jax.nn.softmax(logits, axis=-1)


def validate_sample_shape(sample_shape) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in sample_shape)
    except TypeError as e:
        raise TypeError(f"sample_shape must be a tuple of ints, got {sample_shape!r}") from e


def vec_to_tril_matrix(t, diagonal: int = 0):
    """Fill a lower-triangular matrix (rows first) from the last axis of ``t``.

    ``t``: ``(..., n * (n + 1) / 2)`` for ``diagonal=0``; returns ``(..., n, n)``.
    ``diagonal=-1`` fills the strictly lower part from ``(..., n * (n - 1) / 2)``.
    """
    m = t.shape[-1]
    n = round((np.sqrt(8 * m + 1) - 1) / 2) - diagonal
    rows, cols = np.tril_indices(n, k=diagonal)
    out = jnp.zeros(t.shape[:-1] + (n, n), dtype=t.dtype)
    return out.at[..., rows, cols].set(t)


def tril_matrix_to_vec(mat, diagonal: int = 0):
    n = mat.shape[-1]
    rows, cols = np.tril_indices(n, k=diagonal)
    return mat[..., rows, cols]


__all__ += ["expit", "logit"]


def _is_pytree_child(v) -> bool:
    if isinstance(v, (jax.Array, np.ndarray, np.generic)):
        return True
    if isinstance(v, PyTreeObject):
        return True
    if isinstance(v, (list, tuple)) and any(_is_pytree_child(e) for e in v):
        return True
    return False


class PyTreeObject:
    """Mixin that makes every subclass a JAX pytree, generically.

    Instance attributes holding arrays (or other ``PyTreeObject``s, or lists of them) become
    pytree children; everything else (shapes, flags, constraints, Python numbers) is static
    auxiliary data. So distributions and transforms can cross ``jit``/``vmap`` boundaries.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(cls, cls._tree_flatten, cls._tree_unflatten)

    def _tree_flatten(self):
        keys, children, aux = [], [], []
        for k, v in sorted(vars(self).items()):
            if _is_pytree_child(v):
                keys.append(k)
                children.append(v)
            else:
                aux.append((k, v))
        return tuple(children), (tuple(keys), tuple(aux))

    @classmethod
    def _tree_unflatten(cls, aux_data, children):
        keys, aux = aux_data
        obj = cls.__new__(cls)
        for k, v in aux:
            obj.__dict__[k] = v
        for k, v in zip(keys, children, strict=True):
            obj.__dict__[k] = v
        return obj


# -- NumPyro's public helpers (numpyro.distributions.util) ------------------------------------
def binomial(key, p, n=1, shape: Sequence[int] = ()) -> jax.Array:
    """Binomial(``n``, ``p``) counts of ``shape`` (default: the broadcast of ``n`` and ``p``),
    drawn by ``jax.random.binomial``."""
    shape = tuple(shape) or jnp.broadcast_shapes(jnp.shape(n), jnp.shape(p))
    return jax.random.binomial(key, n, p, shape)


def categorical(key, p, shape: Sequence[int] = ()) -> jax.Array:
    """Indices drawn with probabilities ``p`` (``(..., K)``, normalized along the last dim), of
    ``shape`` (default ``p.shape[:-1]``)."""
    p = jnp.asarray(p)
    shape = tuple(shape) or p.shape[:-1]
    return jax.random.categorical(key, jnp.log(p), shape=shape)


def multinomial(key, p, n, shape: Sequence[int] = (), total_count_max: int | None = None):
    """Multinomial(``n``, ``p``) counts ``shape + (K,)`` (default shape: the batch of ``n``
    and ``p``), drawn by ``jax.random.multinomial``. ``total_count_max`` is accepted for
    NumPyro's signature; JAX's sampler needs no bound on ``n``, traced or not."""
    del total_count_max
    p = jnp.asarray(p)
    shape = tuple(shape) or jnp.broadcast_shapes(jnp.shape(n), p.shape[:-1])
    return jax.random.multinomial(key, n, p, shape=shape + p.shape[-1:]).astype(jnp.int32)


def binary_cross_entropy_with_logits(x, y) -> jax.Array:
    """``-y log sigmoid(x) - (1 - y) log(1 - sigmoid(x))``, stable for any logit (0 where
    ``y`` matches an infinite logit's side)."""
    x, y = jnp.asarray(x), jnp.asarray(y)
    dtype = jnp.result_type(x, y, float)
    # each term is 0 where its weight is 0, even against an infinite log sigmoid
    pos = jnp.where(y == 0, 0.0, -y * jax.nn.log_sigmoid(x))
    neg = jnp.where(y == 1, 0.0, -(1.0 - y) * jax.nn.log_sigmoid(-x))
    return (pos + neg).astype(dtype)


def cholesky_update(L, x, coef=1.0) -> jax.Array:
    """Lower Cholesky factor of ``L L^T + coef x x^T`` in ``O(n^2)``.

    Args:
        L: ``(..., n, n)`` lower Cholesky factor.
        x: ``(..., n)``.
        coef: scalar or ``(...)``; a negative ``coef`` is a downdate (the result must stay
            positive definite).

    Returns:
        ``(..., n, n)``, batched over the broadcast of the leading dims.
    """
    L, x = jnp.asarray(L), jnp.asarray(x)
    batch = jnp.broadcast_shapes(L.shape[:-2], x.shape[:-1], jnp.shape(coef))
    n = L.shape[-1]
    L = jnp.broadcast_to(L, batch + (n, n))
    x = jnp.broadcast_to(x, batch + (n,))
    coef = jnp.broadcast_to(jnp.asarray(coef, L.dtype), batch)
    rows = jnp.arange(n)

    def column(k, carry):
        # the classic rank-one update, one column at a time (rows above k are left alone)
        L, x = carry
        lkk = L[..., k, k]
        xk = x[..., k]
        r = jnp.sqrt(lkk * lkk + coef * xk * xk)
        c, s = r / lkk, xk / lkk
        below = rows > k
        col = L[..., :, k]
        new_col = jnp.where(below, (col + (coef * s)[..., None] * x) / c[..., None], col)
        new_col = jnp.where(rows == k, r[..., None], new_col)
        x = jnp.where(below, c[..., None] * x - s[..., None] * new_col, x)
        return L.at[..., :, k].set(new_col), x

    return lax.fori_loop(0, n, column, (L, x))[0]


@jax.custom_jvp
def log1mexp(x) -> jax.Array:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate at both ends (Maechler's switch at
    ``-log 2``); ``-inf`` at 0, ``nan`` for ``x > 0``."""
    x = jnp.asarray(x)
    return jnp.where(x > -np.log(2.0), jnp.log(-jnp.expm1(x)), jnp.log1p(-jnp.exp(x)))


# d/dx log(1 - e^x) = -1 / (e^{-x} - 1): finite where the autodiff of the branches is not
log1mexp.defjvps(lambda t, ans, x: -t / jnp.expm1(-x))


def logdiffexp(a, b) -> jax.Array:
    """``log(exp(a) - exp(b))`` for ``a >= b``: ``-inf`` where ``a == b`` (also both
    ``-inf``), ``nan`` where ``a < b`` or ``a == inf``."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    equal = a == b
    safe_b = jnp.where(equal, -jnp.inf, b)
    value = a + log1mexp(safe_b - a)
    value = jnp.where(equal, -jnp.inf, value)
    return jnp.where((a < b) | (a == jnp.inf), jnp.nan, value)


def add_diag(matrix, diag) -> jax.Array:
    """``matrix + diag * I`` on the last two dims (``diag`` a scalar or ``(..., n)``)."""
    matrix = jnp.asarray(matrix)
    idx = jnp.arange(matrix.shape[-1])
    return matrix.at[..., idx, idx].add(diag)


def safe_normalize(x, *, p: float = 2) -> jax.Array:
    """``x / ||x||_p`` along the last dim; the zero vector maps to ``(1, ..., 1) / n^(1/p)``
    (no division by zero, a finite gradient)."""
    if not isinstance(p, (int, float)) or p < 0:
        raise ValueError(f"safe_normalize: p must be a number >= 0, got {p!r}.")
    x = jnp.asarray(x)
    zero = jnp.all(x == 0, axis=-1, keepdims=True)
    # the norm never sees the zero vector, so its gradient stays finite there too
    safe = jnp.where(zero, 1.0, x)
    norm = jnp.linalg.norm(safe, ord=p, axis=-1, keepdims=True)
    y = safe / jnp.clip(norm, jnp.finfo(safe.dtype).tiny)
    return jnp.where(zero, x.shape[-1] ** (-1.0 / p), y)


def von_mises_centered(key, concentration, shape: Sequence[int] = (), dtype=None) -> jax.Array:
    """Draws from ``VonMises(0, concentration)`` of ``shape`` (default: the shape of
    ``concentration``), by the rejection sampler ``VonMises.sample`` uses."""
    shape = tuple(shape) or jnp.shape(concentration)
    dtype = jnp.dtype(dtype or jnp.result_type(float))
    return _von_mises_centered(key, jnp.asarray(concentration), shape, dtype)


def _vm_cond(state):
    return ~jnp.all(state[2])


def _vm_body(state):
    key, theta, done, k, e = state
    shape, dtype = theta.shape, theta.dtype
    key, k1, k2, k3 = jax.random.split(key, 4)
    u1 = jax.random.uniform(k1, shape, dtype)
    u2 = jax.random.uniform(k2, shape, dtype)
    half = 0.5 * jnp.pi * u1  # z = cos(pi u1) = 1 - 2 sin^2(half) = 2 cos^2(half) - 1
    sin2, cos2 = jnp.sin(half) ** 2, jnp.cos(half) ** 2
    one_minus_f = jnp.clip(2.0 * e * sin2 / (2.0 * cos2 + e), 0.0, 2.0)  # 1 - (1 + s z)/(s + z)
    c = k * (e + one_minus_f)  # k (s - f)
    accept = (c * (2.0 - c) > u2) | (jnp.log(c / u2) + 1.0 - c >= 0)
    sign = jnp.where(jax.random.bernoulli(k3, 0.5, shape), 1.0, -1.0).astype(dtype)
    proposal = sign * 2.0 * jnp.arcsin(jnp.sqrt(0.5 * one_minus_f))  # sign * arccos(f)
    theta = jnp.where(done, theta, proposal)
    return key, theta, done | accept, k, e


@partial(jax.jit, static_argnums=(2, 3))
def _von_mises_centered(key, concentration: jax.Array, shape, dtype) -> jax.Array:
    """Draws from VonMises(0, concentration) by Best & Fisher's (1979) rejection sampler.

    The envelope constant is carried as ``e = s - 1`` and the proposal as ``1 - f`` so that both
    very small and very large concentrations stay accurate in float32. All batch elements are
    drawn together; the loop ends when every element has accepted a proposal.
    """
    k = jnp.maximum(jnp.broadcast_to(concentration, shape).astype(dtype), 1e-30)
    root = jnp.sqrt(1.0 + 4.0 * k**2)
    r = 1.0 + root
    sqrt_2r = jnp.sqrt(2.0 * r)
    rho = 2.0 * k / (r + sqrt_2r)
    one_minus_rho = (1.0 + 1.0 / (root + 2.0 * k) + sqrt_2r) / (r + sqrt_2r)
    e = one_minus_rho**2 / (2.0 * rho)  # s - 1, with s = (1 + rho^2) / (2 rho)
    init = (key, jnp.zeros(shape, dtype), jnp.zeros(shape, bool), k, e)
    return lax.while_loop(_vm_cond, _vm_body, init)[1]
