"""Bijective transforms between constrained and unconstrained spaces, and ``biject_to``.

A :class:`Transform` ``t`` maps points of ``t.domain`` to points of ``t.codomain``. Both are
constraints; their ``event_dim`` says how many rightmost dimensions form one point.
``t.log_abs_det_jacobian(x, y)`` is ``log |det dy/dx|`` summed over the domain's event dims, so
for an input of shape ``batch + event`` it has shape ``batch``. For transforms that change the
event shape (stick-breaking ``(K-1,) -> (K,)``, vector to lower-triangular ``(M,) -> (K, K)``)
the determinant is that of the square map from the input onto the output's free coordinates.

``biject_to(constraint)`` returns a transform from the unconstrained reals onto ``constraint``;
this is what inference uses to run in unconstrained space. New constraints can be added with
``@biject_to.register(MyConstraintClass)``.

Every transform is a JAX pytree (array parameters are leaves, static configuration is
auxiliary data), so transforms can be passed through ``jit`` and ``vmap`` and their parameters
may be traced. ``t.eq(other)`` is structural equality as in NumPyro (a Python bool, or a
boolean array when a parameter is traced); ``==`` is its static form.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.nn import log_sigmoid, softplus

from jppl.distributions import constraints
from jppl.distributions.util import (
    PyTreeObject,
    is_concrete,
    sum_rightmost,
    tril_matrix_to_vec,
    vec_to_tril_matrix,
)

__all__ = [
    "AbsTransform",
    "AffineTransform",
    "CatTransform",
    "CholeskyTransform",
    "CircularTransform",
    "ComplexTransform",
    "ComposeTransform",
    "ConstraintRegistry",
    "CorrCholeskyTransform",
    "CorrMatrixCholeskyTransform",
    "DiscreteCosineTransform",
    "ExpTransform",
    "HaarTransform",
    "IdentityTransform",
    "IndependentTransform",
    "L1BallTransform",
    "LowerCholeskyAffine",
    "LowerCholeskyTransform",
    "OrderedTransform",
    "PackRealFastFourierCoefficientsTransform",
    "PermuteTransform",
    "PositiveDefiniteTransform",
    "PowerTransform",
    "RealFastFourierTransform",
    "RecursiveLinearTransform",
    "ReshapeTransform",
    "ScaledUnitLowerCholeskyTransform",
    "SigmoidTransform",
    "SimplexToOrderedTransform",
    "SoftplusLowerCholeskyTransform",
    "SoftplusTransform",
    "StickBreakingTransform",
    "TanhTransform",
    "Transform",
    "UnpackTransform",
    "ZeroSumTransform",
    "biject_to",
]


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def _float_dtype(x):
    return jnp.result_type(x, float)


def _clipped_expit(x):
    """``sigmoid(x)`` kept strictly inside (0, 1) so that its inverse stays finite."""
    finfo = jnp.finfo(_float_dtype(x))
    return jnp.clip(jax.nn.sigmoid(x), finfo.tiny, 1.0 - finfo.eps)


def _inv_softplus(y):
    """Inverse of ``softplus``: ``log(exp(y) - 1)``, written to be stable for large ``y``."""
    return y + jnp.log(-jnp.expm1(-y))


def _tril_size_to_n(m: int, diagonal: int = 0) -> int:
    """``n`` such that an ``n x n`` lower triangle (offset ``diagonal``) has ``m`` entries."""
    n = round((math.sqrt(8 * m + 1) - 1) / 2) - diagonal
    if (n + diagonal) * (n + diagonal + 1) // 2 != m:
        raise ValueError(f"A vector of length {m} does not fill a lower-triangular matrix.")
    return n


def _is_negative(scale) -> bool:
    """True only when ``scale`` is concrete and everywhere negative (tracers count as positive)."""
    return is_concrete(scale) and bool(np.all(np.asarray(scale) < 0))


# ------------------------------------------------------------------------------------------
# base classes
# ------------------------------------------------------------------------------------------
class Transform(PyTreeObject):
    """Base class of transforms.

    Subclasses set (or compute, as properties) ``domain`` and ``codomain`` and implement
    ``__call__(x)``, ``_inverse(y)`` and ``log_abs_det_jacobian(x, y, intermediates=None)``.
    Transforms that change the event shape also override ``forward_shape``/``inverse_shape``.
    """

    domain: constraints.Constraint = constraints.real
    codomain: constraints.Constraint = constraints.real

    def __call__(self, x):
        raise NotImplementedError

    def _inverse(self, y):
        raise NotImplementedError(f"{type(self).__name__} has no inverse.")

    @property
    def inv(self) -> Transform:
        """The inverse transform; ``t.inv.inv`` is ``t``."""
        return _InverseTransform(self)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        """``log |det dy/dx|`` with shape ``x.shape[:x.ndim - domain.event_dim]`` (broadcast)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement `log_abs_det_jacobian`."
        )

    def call_with_intermediates(self, x):
        """``(y, intermediates)``; intermediates can be passed to ``log_abs_det_jacobian``."""
        return self(x), None

    def forward_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of the output for an input of shape ``shape``."""
        return tuple(shape)

    def inverse_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of the input that produces an output of shape ``shape``."""
        return tuple(shape)

    @property
    def sign(self):
        """+1 or -1 for monotone one-dimensional transforms (may be an array)."""
        raise NotImplementedError(f"{type(self).__name__} has no well-defined `sign`.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- pytree and equality ----------------------------------------------------------------
    def tree_flatten(self):
        """``(leaves, aux_data)``: array parameters, and the static rest (NumPyro's method)."""
        return self._tree_flatten()

    @classmethod
    def tree_unflatten(cls, aux_data, params):
        """Rebuild a transform from :meth:`tree_flatten`'s output."""
        return cls._tree_unflatten(aux_data, params)

    def eq(self, other: object, static: bool = False):
        """Structural equality: the same transform class with equal parameters (domains and
        parts included). A Python bool, or a boolean array when a parameter is traced."""
        if self is other:
            return True
        if type(other) is not type(self):
            return False
        return constraints._attributes_equiv(self, other, static)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Transform):
            return NotImplemented
        return bool(self.eq(other, static=True))

    def __hash__(self) -> int:
        return hash(type(self))  # equal transforms have the same class


class _InverseTransform(Transform):
    """The inverse of a transform; built by ``Transform.inv``."""

    def __init__(self, transform: Transform):
        self._inv = transform

    @property
    def domain(self):  # type: ignore[override]
        return self._inv.codomain

    @property
    def codomain(self):  # type: ignore[override]
        return self._inv.domain

    @property
    def inv(self) -> Transform:
        return self._inv

    @property
    def sign(self):
        return self._inv.sign

    def __call__(self, x):
        return self._inv._inverse(x)

    def _inverse(self, y):
        return self._inv(y)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        # The inverse's Jacobian determinant is the reciprocal of the forward one at (y, x).
        return -self._inv.log_abs_det_jacobian(y, x, None)

    def forward_shape(self, shape):
        return self._inv.inverse_shape(shape)

    def inverse_shape(self, shape):
        return self._inv.forward_shape(shape)

    def __repr__(self) -> str:
        return f"{self._inv!r}.inv"


# ------------------------------------------------------------------------------------------
# elementwise transforms
# ------------------------------------------------------------------------------------------
class IdentityTransform(Transform):
    """``y = x`` on ``domain`` (default: the reals)."""

    def __init__(self, domain: constraints.Constraint = constraints.real):
        self.domain = domain

    @property
    def codomain(self):  # type: ignore[override]
        return self.domain

    @property
    def sign(self):
        return 1

    def __call__(self, x):
        return x

    def _inverse(self, y):
        return y

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        x = jnp.asarray(x)
        shape = x.shape[: x.ndim - self.domain.event_dim]
        return jnp.zeros(shape, dtype=_float_dtype(x))


class AffineTransform(Transform):
    """``y = loc + scale * x``, elementwise.

    ``loc``, ``scale``: arrays broadcastable against the input. ``domain`` may be the reals
    (default), ``real_vector``/``real_matrix`` (then the log-det is summed over the event), or
    a bounded set such as ``positive`` or ``unit_interval``, whose image is the codomain.
    """

    def __init__(self, loc, scale, domain: constraints.Constraint = constraints.real):
        self.loc = loc
        self.scale = scale
        self.domain = domain

    @property
    def codomain(self):  # type: ignore[override]
        d = self.domain
        if isinstance(d, constraints._Real | constraints._RealVector | constraints._RealMatrix):
            return d
        if isinstance(d, constraints._Independent) and isinstance(
            d.base_constraint, constraints._Real
        ):
            return d
        neg = _is_negative(self.scale)
        if isinstance(d, constraints._GreaterThan):
            bound = self(d.lower_bound)
            return constraints.less_than(bound) if neg else constraints.greater_than(bound)
        if isinstance(d, constraints._LessThan):
            bound = self(d.upper_bound)
            return constraints.greater_than(bound) if neg else constraints.less_than(bound)
        if isinstance(d, constraints._Interval):
            lo, hi = self(d.lower_bound), self(d.upper_bound)
            if neg:
                lo, hi = hi, lo
            if isinstance(d, constraints._OpenInterval):
                return constraints.open_interval(lo, hi)
            return constraints.interval(lo, hi)
        raise NotImplementedError(f"AffineTransform: unsupported domain {d!r}.")

    @property
    def sign(self):
        return jnp.sign(self.scale)

    def __call__(self, x):
        return self.loc + self.scale * x

    def _inverse(self, y):
        return (y - self.loc) / self.scale

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        shape = jnp.broadcast_shapes(jnp.shape(x), jnp.shape(self.scale))
        log_scale = jnp.broadcast_to(jnp.log(jnp.abs(self.scale)), shape)
        return sum_rightmost(log_scale, self.domain.event_dim)

    def forward_shape(self, shape):
        return tuple(np.broadcast_shapes(tuple(shape), jnp.shape(self.loc), jnp.shape(self.scale)))

    def inverse_shape(self, shape):
        return self.forward_shape(shape)


class ExpTransform(Transform):
    """``y = exp(x)``: reals -> positive reals."""

    domain = constraints.real
    codomain = constraints.positive

    @property
    def sign(self):
        return 1

    def __call__(self, x):
        return jnp.exp(x)

    def _inverse(self, y):
        return jnp.log(y)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        return jnp.asarray(x)


class SigmoidTransform(Transform):
    """``y = 1 / (1 + exp(-x))``: reals -> (0, 1); clipped away from 0 and 1."""

    domain = constraints.real
    codomain = constraints.unit_interval

    @property
    def sign(self):
        return 1

    def __call__(self, x):
        return _clipped_expit(x)

    def _inverse(self, y):
        finfo = jnp.finfo(_float_dtype(y))
        y = jnp.clip(y, finfo.tiny, 1.0 - finfo.eps)
        return jnp.log(y) - jnp.log1p(-y)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        # d sigmoid / dx = sigmoid(x) * sigmoid(-x)
        return log_sigmoid(x) + log_sigmoid(-x)


class SoftplusTransform(Transform):
    """``y = log(1 + exp(x))``: reals -> positive reals, linear for large ``x``."""

    domain = constraints.real
    codomain = constraints.softplus_positive

    @property
    def sign(self):
        return 1

    def __call__(self, x):
        return softplus(x)

    def _inverse(self, y):
        return _inv_softplus(y)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        return log_sigmoid(x)


class TanhTransform(Transform):
    """``y = tanh(x)``: reals -> (-1, 1)."""

    domain = constraints.real
    codomain = constraints.open_interval(-1.0, 1.0)

    @property
    def sign(self):
        return 1

    def __call__(self, x):
        return jnp.tanh(x)

    def _inverse(self, y):
        eps = jnp.finfo(_float_dtype(y)).eps
        return jnp.arctanh(jnp.clip(y, -1.0 + eps, 1.0 - eps))

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        # log(1 - tanh(x)^2) = 2 * (log 2 - x - softplus(-2x)), stable for all x.
        return 2.0 * (math.log(2.0) - x - softplus(-2.0 * x))


class PowerTransform(Transform):
    """``y = x ** exponent`` on the positive reals."""

    domain = constraints.positive
    codomain = constraints.positive

    def __init__(self, exponent):
        self.exponent = exponent

    @property
    def sign(self):
        return jnp.sign(self.exponent)

    def __call__(self, x):
        return jnp.power(x, self.exponent)

    def _inverse(self, y):
        return jnp.power(y, 1.0 / self.exponent)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        return jnp.log(jnp.abs(self.exponent * y / x))

    def forward_shape(self, shape):
        return tuple(np.broadcast_shapes(tuple(shape), jnp.shape(self.exponent)))

    def inverse_shape(self, shape):
        return self.forward_shape(shape)


class AbsTransform(Transform):
    """``y = |x|``: reals -> nonnegative reals. Not injective; the inverse picks ``x = y``."""

    domain = constraints.real
    codomain = constraints.nonnegative

    def __call__(self, x):
        return jnp.abs(x)

    def _inverse(self, y):
        return y


class CircularTransform(Transform):
    """Wraps the reals onto the circle ``[-pi, pi)``; not injective, log-det 0 (a local isometry).

    The inverse is the identity (it returns the representative in ``[-pi, pi)``).
    """

    domain = constraints.real
    codomain = constraints.circular

    def __call__(self, x):
        return jnp.remainder(x + math.pi, 2 * math.pi) - math.pi

    def _inverse(self, y):
        return y

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        return jnp.zeros_like(jnp.asarray(x, dtype=_float_dtype(x)))


# ------------------------------------------------------------------------------------------
# combinators
# ------------------------------------------------------------------------------------------
def _compose_input_event_dim(parts: Sequence[Transform]) -> int:
    """Event dim the first part's input must have so that every part sees a whole event."""
    event_dim = parts[-1].codomain.event_dim
    for part in reversed(parts):
        event_dim = part.domain.event_dim + max(event_dim - part.codomain.event_dim, 0)
    return event_dim


def _compose_output_event_dim(parts: Sequence[Transform]) -> int:
    event_dim = _compose_input_event_dim(parts)
    for part in parts:
        event_dim = part.codomain.event_dim + max(event_dim - part.domain.event_dim, 0)
    return event_dim


class ComposeTransform(Transform):
    """Applies ``parts`` in order: ``y = parts[-1](...parts[0](x))``.

    The event dims of the composition are the largest any part needs; each part's log-det is
    summed over the extra event dims it does not itself consume.
    """

    def __init__(self, parts: Sequence[Transform]):
        flat: list[Transform] = []
        for p in parts:
            flat.extend(p.parts if isinstance(p, ComposeTransform) else [p])
        self.parts = flat

    @property
    def domain(self):  # type: ignore[override]
        if not self.parts:
            return constraints.real
        first = self.parts[0].domain
        extra = _compose_input_event_dim(self.parts) - first.event_dim
        return constraints.independent(first, extra) if extra > 0 else first

    @property
    def codomain(self):  # type: ignore[override]
        if not self.parts:
            return constraints.real
        last = self.parts[-1].codomain
        extra = _compose_output_event_dim(self.parts) - last.event_dim
        return constraints.independent(last, extra) if extra > 0 else last

    @property
    def sign(self):
        s = 1
        for p in self.parts:
            s = s * p.sign
        return s

    def __call__(self, x):
        for p in self.parts:
            x = p(x)
        return x

    def _inverse(self, y):
        for p in reversed(self.parts):
            y = p._inverse(y)
        return y

    def call_with_intermediates(self, x):
        """Returns ``(y, [(input_k, intermediates_k) for each part k])``."""
        intermediates = []
        for p in self.parts:
            x_in = x
            x, inter = p.call_with_intermediates(x)
            intermediates.append((x_in, inter))
        return x, intermediates

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        if not self.parts:
            return IdentityTransform(self.domain).log_abs_det_jacobian(x, y)
        if intermediates is None:
            _, intermediates = self.call_with_intermediates(x)
        outputs = [xi for xi, _ in intermediates[1:]] + [y]
        event_dim = self.domain.event_dim
        total = 0.0
        for p, (x_in, inter), y_out in zip(self.parts, intermediates, outputs, strict=True):
            ladj = p.log_abs_det_jacobian(x_in, y_out, inter)
            extra = event_dim - p.domain.event_dim
            total = total + sum_rightmost(ladj, extra)
            event_dim = p.codomain.event_dim + extra
        return total

    def forward_shape(self, shape):
        for p in self.parts:
            shape = p.forward_shape(shape)
        return tuple(shape)

    def inverse_shape(self, shape):
        for p in reversed(self.parts):
            shape = p.inverse_shape(shape)
        return tuple(shape)

    def __repr__(self) -> str:
        return f"ComposeTransform({self.parts!r})"


class IndependentTransform(Transform):
    """Treats the rightmost ``reinterpreted_batch_ndims`` batch dims of ``base_transform`` as
    event dims: the log-det is summed over them."""

    def __init__(self, base_transform: Transform, reinterpreted_batch_ndims: int):
        if reinterpreted_batch_ndims < 0:
            raise ValueError("reinterpreted_batch_ndims must be >= 0")
        self.base_transform = base_transform
        self.reinterpreted_batch_ndims = int(reinterpreted_batch_ndims)

    @property
    def domain(self):  # type: ignore[override]
        return constraints.independent(self.base_transform.domain, self.reinterpreted_batch_ndims)

    @property
    def codomain(self):  # type: ignore[override]
        return constraints.independent(self.base_transform.codomain, self.reinterpreted_batch_ndims)

    @property
    def sign(self):
        return self.base_transform.sign

    def __call__(self, x):
        return self.base_transform(x)

    def _inverse(self, y):
        return self.base_transform._inverse(y)

    def call_with_intermediates(self, x):
        return self.base_transform.call_with_intermediates(x)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        ladj = self.base_transform.log_abs_det_jacobian(x, y, intermediates)
        # Elementwise transforms may return a log-det that still needs broadcasting to x.
        full = jnp.shape(x)[: jnp.ndim(x) - self.base_transform.domain.event_dim]
        if jnp.shape(ladj) != full:
            ladj = jnp.broadcast_to(ladj, np.broadcast_shapes(jnp.shape(ladj), full))
        return sum_rightmost(ladj, self.reinterpreted_batch_ndims)

    def forward_shape(self, shape):
        return self.base_transform.forward_shape(shape)

    def inverse_shape(self, shape):
        return self.base_transform.inverse_shape(shape)

    def __repr__(self) -> str:
        return f"IndependentTransform({self.base_transform!r}, {self.reinterpreted_batch_ndims})"


class ReshapeTransform(Transform):
    """Reshapes the rightmost event: ``inverse_shape`` (input) -> ``forward_shape`` (output).

    Both shapes must have the same number of elements; log-det is zero.
    """

    def __init__(self, forward_shape: Sequence[int], inverse_shape: Sequence[int]):
        forward_shape, inverse_shape = tuple(forward_shape), tuple(inverse_shape)
        if math.prod(forward_shape) != math.prod(inverse_shape):
            raise ValueError(
                f"ReshapeTransform: shapes {forward_shape} and {inverse_shape} differ in size."
            )
        self._forward_shape = forward_shape
        self._inverse_shape = inverse_shape

    @property
    def domain(self):  # type: ignore[override]
        return constraints.independent(constraints.real, len(self._inverse_shape))

    @property
    def codomain(self):  # type: ignore[override]
        return constraints.independent(constraints.real, len(self._forward_shape))

    @staticmethod
    def _replace(shape, old, new):
        shape = tuple(shape)
        n = len(old)
        if shape[len(shape) - n :] != old:
            raise ValueError(f"ReshapeTransform: shape {shape} does not end with {old}.")
        return shape[: len(shape) - n] + new

    def __call__(self, x):
        return jnp.reshape(x, self.forward_shape(jnp.shape(x)))

    def _inverse(self, y):
        return jnp.reshape(y, self.inverse_shape(jnp.shape(y)))

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        shape = jnp.shape(x)[: jnp.ndim(x) - len(self._inverse_shape)]
        return jnp.zeros(shape, dtype=_float_dtype(x))

    def forward_shape(self, shape):
        return self._replace(shape, self._inverse_shape, self._forward_shape)

    def inverse_shape(self, shape):
        return self._replace(shape, self._forward_shape, self._inverse_shape)


class PermuteTransform(Transform):
    """Permutes the last axis: ``y = x[..., permutation]``; log-det zero."""

    domain = constraints.real_vector
    codomain = constraints.real_vector

    def __init__(self, permutation):
        # kept as a tuple of ints: static pytree data, so it stays concrete under jit
        self.permutation = tuple(int(i) for i in np.asarray(permutation).ravel())
        if sorted(self.permutation) != list(range(len(self.permutation))):
            raise ValueError(f"PermuteTransform: {permutation} is not a permutation.")

    def __call__(self, x):
        return jnp.asarray(x)[..., np.asarray(self.permutation)]

    def _inverse(self, y):
        return jnp.asarray(y)[..., np.argsort(self.permutation)]

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        return jnp.zeros(jnp.shape(x)[:-1], dtype=_float_dtype(x))


class UnpackTransform(Transform):
    """Unpacks a flat vector into a pytree with ``unpack_fn``; log-det zero.

    The inverse flattens the pytree back with ``pack_fn`` if given, otherwise by raveling
    its leaves in pytree order (matching ``jax.flatten_util.ravel_pytree``; unbatched only).
    """

    domain = constraints.real_vector
    codomain = constraints.dependent

    def __init__(self, unpack_fn: Callable, pack_fn: Callable | None = None):
        self.unpack_fn = unpack_fn
        self.pack_fn = pack_fn

    def __call__(self, x):
        return self.unpack_fn(x)

    def _inverse(self, y):
        if self.pack_fn is not None:
            return self.pack_fn(y)
        return ravel_pytree(y)[0]

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        return jnp.zeros(jnp.shape(x)[:-1], dtype=_float_dtype(x))

    def forward_shape(self, shape):
        raise NotImplementedError("UnpackTransform output is a pytree; it has no single shape.")

    def inverse_shape(self, shape):
        raise NotImplementedError("UnpackTransform output is a pytree; it has no single shape.")


# ------------------------------------------------------------------------------------------
# vector transforms
# ------------------------------------------------------------------------------------------
class StickBreakingTransform(Transform):
    """Unconstrained ``(..., K-1)`` -> simplex ``(..., K)`` by stick breaking.

    Coordinate ``i`` breaks off the fraction ``sigmoid(x_i - log(K-1-i))`` of what is left, so
    ``x = 0`` maps to the uniform simplex point. Computed in log space (stable for large
    ``|x|``). The log-det is that of ``x -> y[..., :-1]``.
    """

    domain = constraints.real_vector
    codomain = constraints.simplex

    @staticmethod
    def _shifted(x):
        x = jnp.asarray(x, dtype=_float_dtype(x))
        n = x.shape[-1]
        return x - jnp.log(jnp.arange(n, 0, -1, dtype=x.dtype))

    def __call__(self, x):
        xs = self._shifted(x)
        log_z = log_sigmoid(xs)  # fraction taken at step i
        log_rest = jnp.cumsum(log_sigmoid(-xs), axis=-1)  # log of stick left after step i
        pad = jnp.zeros(xs.shape[:-1] + (1,), dtype=xs.dtype)
        log_y = jnp.concatenate([log_z, pad], axis=-1) + jnp.concatenate([pad, log_rest], -1)
        return jnp.exp(log_y)

    def _inverse(self, y):
        y = jnp.asarray(y, dtype=_float_dtype(y))
        tiny = jnp.finfo(y.dtype).tiny
        # stick remaining after coordinate i: sum_{j > i} y_j, summed from the right.
        tail = jnp.flip(jnp.cumsum(jnp.flip(y, -1), axis=-1), -1)[..., 1:]
        n = y.shape[-1] - 1
        offset = jnp.log(jnp.arange(n, 0, -1, dtype=y.dtype))
        return jnp.log(jnp.maximum(y[..., :-1], tiny)) - jnp.log(jnp.maximum(tail, tiny)) + offset

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        xs = self._shifted(x)
        log_1mz = log_sigmoid(-xs)
        log_rest_before = jnp.cumsum(log_1mz, axis=-1) - log_1mz
        return jnp.sum(log_sigmoid(xs) + log_1mz + log_rest_before, axis=-1)

    def forward_shape(self, shape):
        if len(shape) < 1:
            raise ValueError("StickBreakingTransform needs at least one dimension.")
        return tuple(shape[:-1]) + (shape[-1] + 1,)

    def inverse_shape(self, shape):
        if len(shape) < 1:
            raise ValueError("StickBreakingTransform needs at least one dimension.")
        return tuple(shape[:-1]) + (shape[-1] - 1,)


class OrderedTransform(Transform):
    """Unconstrained ``(..., K)`` -> increasing ``(..., K)``: ``y_0 = x_0``,
    ``y_i = y_{i-1} + exp(x_i)``."""

    domain = constraints.real_vector
    codomain = constraints.ordered_vector

    def __call__(self, x):
        x = jnp.asarray(x)
        steps = jnp.concatenate([x[..., :1], jnp.exp(x[..., 1:])], axis=-1)
        return jnp.cumsum(steps, axis=-1)

    def _inverse(self, y):
        y = jnp.asarray(y)
        return jnp.concatenate([y[..., :1], jnp.log(jnp.diff(y, axis=-1))], axis=-1)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        return jnp.sum(jnp.asarray(x)[..., 1:], axis=-1)


class ZeroSumTransform(Transform):
    """Unconstrained ``(..., n-1)`` -> zero-sum ``(..., n)`` along each of the last
    ``transform_ndims`` axes (the map of PyMC and NumPyro, so unconstrained values carry over).

    Along one axis, with ``s = sum(x)``: ``y = [x - s / (sqrt(n) (1 + sqrt(n))), -s / sqrt(n)]``.
    This is an isometry onto the zero-sum subspace (its Jacobian ``J`` has ``J^T J = I``), so
    the log-det, taken with respect to the volume on that subspace, is zero (as in NumPyro).
    """

    def __init__(self, transform_ndims: int = 1):
        self.transform_ndims = int(transform_ndims)
        if self.transform_ndims < 1:
            raise ValueError(
                f"ZeroSumTransform: transform_ndims must be >= 1, got {transform_ndims}."
            )

    @property
    def domain(self):  # type: ignore[override]
        return constraints.independent(constraints.real, self.transform_ndims)

    @property
    def codomain(self):  # type: ignore[override]
        return constraints.zero_sum(self.transform_ndims)

    @staticmethod
    def _extend(x, axis):
        rn = math.sqrt(x.shape[axis] + 1)
        s = jnp.sum(x, axis=axis, keepdims=True)
        return jnp.concatenate([x - s / (rn * (1.0 + rn)), -s / rn], axis=axis)

    @staticmethod
    def _reduce(y, axis):
        n = y.shape[axis]
        rn = math.sqrt(n)
        # on the subspace the last entry is -s / sqrt(n), which gives back s
        s = -rn * jax.lax.slice_in_dim(y, n - 1, n, axis=axis % y.ndim)
        body = jax.lax.slice_in_dim(y, 0, n - 1, axis=axis % y.ndim)
        return body + s / (rn * (1.0 + rn))

    def __call__(self, x):
        x = jnp.asarray(x, dtype=_float_dtype(x))
        for axis in range(-self.transform_ndims, 0):
            x = self._extend(x, axis)
        return x

    def _inverse(self, y):
        y = jnp.asarray(y, dtype=_float_dtype(y))
        for axis in range(-self.transform_ndims, 0):
            y = self._reduce(y, axis)
        return y

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        shape = jnp.shape(x)[: jnp.ndim(x) - self.transform_ndims]
        return jnp.zeros(shape, dtype=_float_dtype(x))

    def forward_shape(self, shape):
        k = self.transform_ndims
        return tuple(shape[: len(shape) - k]) + tuple(s + 1 for s in shape[len(shape) - k :])

    def inverse_shape(self, shape):
        k = self.transform_ndims
        return tuple(shape[: len(shape) - k]) + tuple(s - 1 for s in shape[len(shape) - k :])


# ------------------------------------------------------------------------------------------
# matrix transforms
# ------------------------------------------------------------------------------------------
def _vec_to_tril_shape(shape, diagonal: int):
    n = _tril_size_to_n(shape[-1], diagonal)
    return tuple(shape[:-1]) + (n, n)


def _tril_to_vec_shape(shape, diagonal: int):
    n = shape[-1]
    if len(shape) < 2 or shape[-2] != n:
        raise ValueError(f"Expected square matrices, got shape {tuple(shape)}.")
    m = (n + diagonal) * (n + diagonal + 1) // 2
    return tuple(shape[:-2]) + (m,)


class CorrCholeskyTransform(Transform):
    """Unconstrained ``(..., K(K-1)/2)`` -> Cholesky factor of a correlation matrix ``(..., K, K)``.

    The inputs, squashed by ``tanh`` into (-1, 1), fill the strictly lower triangle row by
    row as partial correlations; each row is then rescaled so that it has unit norm (signed
    stick breaking on squared entries), with the diagonal taking the remaining length. The
    log-det is that of the map onto the strictly lower entries of the output.
    """

    domain = constraints.real_vector
    codomain = constraints.corr_cholesky

    @staticmethod
    def _parts(x):
        x = jnp.asarray(x, dtype=_float_dtype(x))
        n = _tril_size_to_n(x.shape[-1], diagonal=-1)
        z = jnp.tanh(x)
        # log(1 - tanh(x)^2), stable for large |x|
        log1mz2 = 2.0 * (math.log(2.0) - jnp.abs(x) - softplus(-2.0 * jnp.abs(x)))
        z_mat = vec_to_tril_matrix(z, diagonal=-1) + jnp.eye(n, dtype=x.dtype)
        l_mat = vec_to_tril_matrix(log1mz2, diagonal=-1)
        # sum_{k<j} log(1 - z_ik^2): log of the squared row length still free at column j
        log_rest = jnp.cumsum(l_mat, axis=-1) - l_mat
        return z_mat, l_mat, log_rest

    def __call__(self, x):
        z_mat, _, log_rest = self._parts(x)
        return z_mat * jnp.exp(0.5 * log_rest)

    def _inverse(self, y):
        y = jnp.asarray(y, dtype=_float_dtype(y))
        finfo = jnp.finfo(y.dtype)
        w = jnp.tril(y, -1)
        sq = w * w
        used = jnp.cumsum(sq, axis=-1) - sq
        z = w / jnp.sqrt(jnp.maximum(1.0 - used, finfo.tiny))
        z = jnp.clip(tril_matrix_to_vec(z, diagonal=-1), -1.0 + finfo.eps, 1.0 - finfo.eps)
        return jnp.arctanh(z)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        _, l_mat, log_rest = self._parts(x)
        terms = l_mat + 0.5 * jnp.tril(log_rest, -1)
        return jnp.sum(terms, axis=(-2, -1))

    def forward_shape(self, shape):
        return _vec_to_tril_shape(shape, diagonal=-1)

    def inverse_shape(self, shape):
        return _tril_to_vec_shape(shape, diagonal=-1)


class _VecToLowerCholesky(Transform):
    """Shared code: ``(..., K(K+1)/2)`` -> lower triangular ``(..., K, K)``.

    Layout (as in NumPyro): the first ``K(K-1)/2`` entries fill the strictly lower triangle
    row by row, the last ``K`` entries give the (pre-transform) diagonal.
    """

    domain = constraints.real_vector
    codomain = constraints.lower_cholesky

    @staticmethod
    def _split(x):
        x = jnp.asarray(x, dtype=_float_dtype(x))
        n = _tril_size_to_n(x.shape[-1])
        return x[..., : x.shape[-1] - n], x[..., x.shape[-1] - n :], n

    def forward_shape(self, shape):
        return _vec_to_tril_shape(shape, diagonal=0)

    def inverse_shape(self, shape):
        return _tril_to_vec_shape(shape, diagonal=0)


class LowerCholeskyTransform(_VecToLowerCholesky):
    """``(..., K(K+1)/2)`` -> lower-triangular ``(..., K, K)`` with diagonal ``exp(x_diag)``."""

    def __call__(self, x):
        off, diag, n = self._split(x)
        return vec_to_tril_matrix(off, diagonal=-1) + jnp.exp(diag)[..., None] * jnp.eye(n)

    def _inverse(self, y):
        y = jnp.asarray(y)
        diag = jnp.diagonal(y, axis1=-2, axis2=-1)
        return jnp.concatenate([tril_matrix_to_vec(y, diagonal=-1), jnp.log(diag)], axis=-1)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        return jnp.sum(self._split(x)[1], axis=-1)


class SoftplusLowerCholeskyTransform(_VecToLowerCholesky):
    """``(..., K(K+1)/2)`` -> lower-triangular with diagonal ``softplus(x_diag)``."""

    codomain = constraints.softplus_lower_cholesky

    def __call__(self, x):
        off, diag, n = self._split(x)
        return vec_to_tril_matrix(off, diagonal=-1) + softplus(diag)[..., None] * jnp.eye(n)

    def _inverse(self, y):
        y = jnp.asarray(y)
        diag = jnp.diagonal(y, axis1=-2, axis2=-1)
        return jnp.concatenate([tril_matrix_to_vec(y, diagonal=-1), _inv_softplus(diag)], axis=-1)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        return jnp.sum(log_sigmoid(self._split(x)[1]), axis=-1)


class ScaledUnitLowerCholeskyTransform(_VecToLowerCholesky):
    """``(..., K(K+1)/2)`` -> ``diag(d) @ U`` with ``U`` unit lower triangular (strictly lower
    part from the first entries) and ``d = softplus(x_diag)`` scaling each row."""

    codomain = constraints.scaled_unit_lower_cholesky

    def __call__(self, x):
        off, diag, n = self._split(x)
        unit = vec_to_tril_matrix(off, diagonal=-1) + jnp.eye(n)
        return unit * softplus(diag)[..., :, None]

    def _inverse(self, y):
        y = jnp.asarray(y)
        d = jnp.diagonal(y, axis1=-2, axis2=-1)
        unit = y / d[..., :, None]
        return jnp.concatenate([tril_matrix_to_vec(unit, diagonal=-1), _inv_softplus(d)], axis=-1)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        _, diag, n = self._split(x)
        # row i has i off-diagonal entries scaled by d_i, plus d_i itself.
        counts = jnp.arange(n, dtype=diag.dtype)
        return jnp.sum(log_sigmoid(diag) + counts * jnp.log(softplus(diag)), axis=-1)


class CholeskyTransform(Transform):
    """Positive-definite ``(..., K, K)`` -> its lower Cholesky factor.

    The log-det is taken over the ``K(K+1)/2`` free entries (lower triangles) of both sides:
    ``-(K log 2 + sum_i (K - i) log L_ii)`` with ``i`` counted from 0.
    """

    domain = constraints.positive_definite
    codomain = constraints.lower_cholesky

    def __call__(self, x):
        return jnp.linalg.cholesky(x)

    def _inverse(self, y):
        return jnp.matmul(y, jnp.swapaxes(y, -1, -2))

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        n = jnp.shape(y)[-1]
        log_diag = jnp.log(jnp.diagonal(y, axis1=-2, axis2=-1))
        powers = jnp.arange(n, 0, -1, dtype=log_diag.dtype)
        return -(n * math.log(2.0) + jnp.sum(powers * log_diag, axis=-1))


class CorrMatrixCholeskyTransform(CholeskyTransform):
    """Correlation matrix ``(..., K, K)`` -> its Cholesky factor (rows of unit norm).

    The log-det is over the ``K(K-1)/2`` strictly lower entries of both sides:
    ``-sum_j (K - 1 - j) log L_jj``.
    """

    domain = constraints.corr_matrix
    codomain = constraints.corr_cholesky

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        n = jnp.shape(y)[-1]
        log_diag = jnp.log(jnp.diagonal(y, axis1=-2, axis2=-1))
        powers = jnp.arange(n - 1, -1, -1, dtype=log_diag.dtype)
        return -jnp.sum(powers * log_diag, axis=-1)


class PositiveDefiniteTransform(Transform):
    """Unconstrained ``(..., K(K+1)/2)`` -> positive-definite ``L @ L.T`` with ``L`` from
    :class:`LowerCholeskyTransform`. The log-det is over the lower triangle of the output."""

    domain = constraints.real_vector
    codomain = constraints.positive_definite

    def __call__(self, x):
        return CholeskyTransform()._inverse(LowerCholeskyTransform()(x))

    def _inverse(self, y):
        return LowerCholeskyTransform()._inverse(jnp.linalg.cholesky(y))

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        lower = LowerCholeskyTransform()
        chol = lower(x)
        return lower.log_abs_det_jacobian(x, chol) - CholeskyTransform().log_abs_det_jacobian(
            y, chol
        )

    def forward_shape(self, shape):
        return _vec_to_tril_shape(shape, diagonal=0)

    def inverse_shape(self, shape):
        return _tril_to_vec_shape(shape, diagonal=0)


class LowerCholeskyAffine(Transform):
    """``y = loc + scale_tril @ x`` for vectors ``x`` of shape ``(..., K)``.

    ``loc``: ``(..., K)``; ``scale_tril``: lower triangular ``(..., K, K)`` with positive diagonal.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector

    def __init__(self, loc, scale_tril):
        scale_tril = jnp.asarray(scale_tril)
        if scale_tril.ndim < 2:
            raise ValueError("LowerCholeskyAffine: scale_tril must be at least two-dimensional.")
        self.loc = jnp.asarray(loc)
        self.scale_tril = scale_tril

    def __call__(self, x):
        return self.loc + jnp.squeeze(jnp.matmul(self.scale_tril, jnp.asarray(x)[..., None]), -1)

    def _inverse(self, y):
        y = jnp.asarray(y) - self.loc
        batch = jnp.broadcast_shapes(y.shape[:-1], self.scale_tril.shape[:-2])
        n = self.scale_tril.shape[-1]
        tril = jnp.broadcast_to(self.scale_tril, batch + (n, n))
        rhs = jnp.broadcast_to(y, batch + (n,))[..., None]
        return jax.scipy.linalg.solve_triangular(tril, rhs, lower=True)[..., 0]

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        diag = jnp.diagonal(self.scale_tril, axis1=-2, axis2=-1)
        ladj = jnp.sum(jnp.log(jnp.abs(diag)), axis=-1)
        return jnp.broadcast_to(ladj, jnp.broadcast_shapes(jnp.shape(x)[:-1], ladj.shape))

    def forward_shape(self, shape):
        return tuple(np.broadcast_shapes(tuple(shape), self.loc.shape, self.scale_tril.shape[:-1]))

    def inverse_shape(self, shape):
        return self.forward_shape(shape)


# ------------------------------------------------------------------------------------------
# NumPyro's further transforms: concatenation, complex numbers, spectral and time-series maps
# ------------------------------------------------------------------------------------------
def _check_negative_dim(name: str, dim) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim >= 0:
        raise ValueError(
            f"{name}(dim): dim must be a negative int (an axis counted from the right), got "
            f"{dim!r}."
        )
    return int(dim)


def _check_min_ndim(name: str, shape, ndim: int) -> tuple[int, ...]:
    shape = tuple(shape)
    if len(shape) < ndim:
        raise ValueError(f"{name}: needs at least {ndim} dims, got shape {shape}.")
    return shape


class CatTransform(Transform):
    """Applies ``tseq[i]`` to the ``i``-th of consecutive slices along axis ``dim`` and joins
    the results with :func:`jax.numpy.concatenate` (NumPyro's ``CatTransform``).

    ``lengths`` (default 1 each) are the slices' sizes along ``dim``, for input and output
    alike, so each part must keep its slice's shape. The log-det has shape
    ``x.shape[:x.ndim - domain.event_dim]``: the parts' log-dets are summed over the event
    dims they lack, then joined along ``dim`` when it is a batch axis, or added when it is an
    event axis.
    """

    def __init__(self, tseq: Sequence[Transform], dim: int = 0, lengths=None):
        tseq = tuple(tseq)
        if not tseq or not all(isinstance(t, Transform) for t in tseq):
            raise TypeError(
                "CatTransform(tseq): tseq must be a non-empty sequence of transforms, got "
                f"{[type(t).__name__ for t in tseq]}."
            )
        # validates dim and lengths with the same messages as constraints.cat
        cat = constraints.cat([t.domain for t in tseq], dim, lengths)
        self.transforms = tseq
        self.dim = cat.dim
        self.lengths = cat.lengths

    @property
    def length(self) -> int:
        """Total size along ``dim``."""
        return sum(self.lengths)

    @property
    def domain(self):  # type: ignore[override]
        return constraints.cat([t.domain for t in self.transforms], self.dim, self.lengths)

    @property
    def codomain(self):  # type: ignore[override]
        return constraints.cat([t.codomain for t in self.transforms], self.dim, self.lengths)

    def _slices(self, v):
        return self.domain._slices(v)

    def __call__(self, x):
        self.forward_shape(jnp.shape(x))
        parts = [t(v) for t, v in zip(self.transforms, self._slices(x), strict=True)]
        return jnp.concatenate(parts, axis=self.dim)

    def _inverse(self, y):
        self.inverse_shape(jnp.shape(y))
        parts = [t._inverse(v) for t, v in zip(self.transforms, self._slices(y), strict=True)]
        return jnp.concatenate(parts, axis=self.dim)

    def call_with_intermediates(self, x):
        """``(y, [intermediates of each part])``."""
        outs, inters = [], []
        for t, v in zip(self.transforms, self._slices(x), strict=True):
            out, inter = t.call_with_intermediates(v)
            outs.append(out)
            inters.append(inter)
        return jnp.concatenate(outs, axis=self.dim), inters

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        if intermediates is not None and len(intermediates) != len(self.transforms):
            raise ValueError(
                f"CatTransform: got {len(intermediates)} intermediates for "
                f"{len(self.transforms)} parts."
            )
        x = jnp.asarray(x)
        event_dim = self.domain.event_dim
        ladjs = []
        for i, (t, xs, ys) in enumerate(
            zip(self.transforms, self._slices(x), self._slices(y), strict=True)
        ):
            inter = None if intermediates is None else intermediates[i]
            ladj = t.log_abs_det_jacobian(xs, ys, inter)
            # elementwise parts may return a log-det still to be broadcast to their slice
            full = xs.shape[: xs.ndim - t.domain.event_dim]
            ladj = jnp.broadcast_to(ladj, np.broadcast_shapes(jnp.shape(ladj), full))
            ladjs.append(sum_rightmost(ladj, event_dim - t.domain.event_dim))
        axis = (self.dim % x.ndim) - x.ndim + event_dim
        if axis < 0:  # ``dim`` is a batch axis of the log-det
            return jnp.concatenate(ladjs, axis=axis)
        total = ladjs[0]
        for ladj in ladjs[1:]:
            total = total + ladj
        return total

    def forward_shape(self, shape):
        shape = tuple(shape)
        if not -len(shape) <= self.dim < len(shape):
            raise ValueError(f"CatTransform: dim {self.dim} is out of range for shape {shape}.")
        for i, (t, n) in enumerate(zip(self.transforms, self.lengths, strict=True)):
            part = list(shape)
            part[self.dim] = n
            if tuple(t.forward_shape(tuple(part))) != tuple(part):
                raise ValueError(
                    f"CatTransform: part {i} ({t!r}) changes its slice's shape {tuple(part)}; "
                    "each part must keep the shape, since lengths apply to input and output."
                )
        return shape

    def inverse_shape(self, shape):
        return self.forward_shape(shape)

    def __repr__(self) -> str:
        return f"CatTransform({list(self.transforms)!r}, dim={self.dim}, lengths={self.lengths})"


class ComplexTransform(Transform):
    """Pairs ``(..., 2)`` of reals -> complex ``(...)``: ``y = x[..., 0] + 1j * x[..., 1]``.

    An identity on coordinates, so the log-det (shape ``x.shape[:-1]``) is zero.
    """

    domain = constraints.real_vector
    codomain = constraints.complex

    def __call__(self, x):
        x = jnp.asarray(x)
        self.forward_shape(x.shape)
        return jax.lax.complex(x[..., 0], x[..., 1])

    def _inverse(self, y):
        y = jnp.asarray(y)
        return jnp.stack([jnp.real(y), jnp.imag(y)], axis=-1)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        return jnp.zeros(jnp.shape(x)[:-1], dtype=_float_dtype(jnp.real(jnp.asarray(x))))

    def forward_shape(self, shape):
        shape = tuple(shape)
        if len(shape) < 1 or shape[-1] != 2:
            raise ValueError(
                f"ComplexTransform: the input's last axis must have size 2 (real, imaginary), "
                f"got shape {shape}."
            )
        return shape[:-1]

    def inverse_shape(self, shape):
        return tuple(shape) + (2,)


class DiscreteCosineTransform(Transform):
    """Orthonormal DCT of type II along axis ``dim`` (negative), via
    :func:`jax.scipy.fft.dct` (inverse: :func:`jax.scipy.fft.idct`).

    ``smooth`` weights coefficient ``k`` by ``(k + 1/2) ** smooth``, normalized to geometric
    mean one: ``smooth=1`` maps Brownian noise to white noise, ``smooth=0`` keeps white noise
    white. The map is volume preserving, so the log-det (shape ``x.shape[:dim]``) is zero.
    """

    def __init__(self, dim: int = -1, smooth: float = 0.0):
        self.dim = _check_negative_dim("DiscreteCosineTransform", dim)
        self.smooth = float(smooth)

    @property
    def domain(self):  # type: ignore[override]
        return constraints.independent(constraints.real, -self.dim)

    @property
    def codomain(self):  # type: ignore[override]
        return constraints.independent(constraints.real, -self.dim)

    def _weight(self, size: int, dtype):
        """``(size, 1, ..., 1)`` weights, broadcasting along axis ``dim``."""
        freq = np.arange(size, dtype=np.float64) + 0.5
        log_w = self.smooth * np.log(freq)
        w = np.exp(log_w - log_w.mean())  # geometric mean one: a unit Jacobian determinant
        return jnp.asarray(w.reshape((size,) + (1,) * (-self.dim - 1)), dtype=dtype)

    def __call__(self, x):
        x = jnp.asarray(x, dtype=_float_dtype(x))
        self.forward_shape(x.shape)
        y = jax.scipy.fft.dct(x, type=2, norm="ortho", axis=self.dim)
        if self.smooth:
            y = y * self._weight(x.shape[self.dim], y.dtype)
        return y

    def _inverse(self, y):
        y = jnp.asarray(y, dtype=_float_dtype(y))
        self.inverse_shape(y.shape)
        if self.smooth:
            y = y / self._weight(y.shape[self.dim], y.dtype)
        return jax.scipy.fft.idct(y, type=2, norm="ortho", axis=self.dim)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        return jnp.zeros(jnp.shape(x)[: self.dim], dtype=_float_dtype(x))

    def forward_shape(self, shape):
        return _check_min_ndim("DiscreteCosineTransform", shape, -self.dim)

    def inverse_shape(self, shape):
        return _check_min_ndim("DiscreteCosineTransform", shape, -self.dim)


_SQRT_HALF = 1.0 / math.sqrt(2.0)


def _haar_level_sizes(n: int) -> list[int]:
    """Lengths of the approximation at each level: ``n, n // 2, ...`` while at least 2."""
    sizes = []
    while n >= 2:
        sizes.append(n)
        n //= 2
    return sizes


class HaarTransform(Transform):
    """Orthonormal discrete Haar transform along axis ``dim`` (negative), NumPyro's layout.

    Each level replaces the pairs ``(a, b)`` of the current approximation by the average
    ``(a + b) / sqrt(2)`` and the detail ``(a - b) / sqrt(2)``; an odd length leaves its last
    entry as it is. The output is ``[approximation, details and leftover of the coarsest level,
    ..., details and leftover of the finest level]``. ``flip`` reverses the axis first. The map
    is orthogonal, so the log-det (shape ``x.shape[:dim]``) is zero.
    """

    def __init__(self, dim: int = -1, flip: bool = False):
        self.dim = _check_negative_dim("HaarTransform", dim)
        self.flip = bool(flip)

    @property
    def domain(self):  # type: ignore[override]
        return constraints.independent(constraints.real, -self.dim)

    @property
    def codomain(self):  # type: ignore[override]
        return constraints.independent(constraints.real, -self.dim)

    @staticmethod
    def _forward_last(x):
        approx, blocks = x, []
        for size in _haar_level_sizes(x.shape[-1]):
            half = size // 2
            a, b = approx[..., 0 : 2 * half : 2], approx[..., 1 : 2 * half : 2]
            blocks.append(jnp.concatenate([(a - b) * _SQRT_HALF, approx[..., 2 * half :]], -1))
            approx = (a + b) * _SQRT_HALF
        return jnp.concatenate([approx] + blocks[::-1], axis=-1)

    @staticmethod
    def _inverse_last(y):
        sizes = _haar_level_sizes(y.shape[-1])
        approx, start = y[..., :1], 1
        for size in reversed(sizes):  # coarsest level first
            half = size // 2
            detail = y[..., start : start + half]
            rest = y[..., start + half : start + size - half]
            start += size - half
            a, b = (approx + detail) * _SQRT_HALF, (approx - detail) * _SQRT_HALF
            pairs = jnp.stack([a, b], axis=-1).reshape(a.shape[:-1] + (2 * half,))
            approx = jnp.concatenate([pairs, rest], axis=-1)
        return approx

    def __call__(self, x):
        x = jnp.asarray(x, dtype=_float_dtype(x))
        self.forward_shape(x.shape)
        x = jnp.moveaxis(x, self.dim, -1)
        if self.flip:
            x = jnp.flip(x, -1)
        return jnp.moveaxis(self._forward_last(x), -1, self.dim)

    def _inverse(self, y):
        y = jnp.asarray(y, dtype=_float_dtype(y))
        self.inverse_shape(y.shape)
        x = self._inverse_last(jnp.moveaxis(y, self.dim, -1))
        if self.flip:
            x = jnp.flip(x, -1)
        return jnp.moveaxis(x, -1, self.dim)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        return jnp.zeros(jnp.shape(x)[: self.dim], dtype=_float_dtype(x))

    def forward_shape(self, shape):
        return _check_min_ndim("HaarTransform", shape, -self.dim)

    def inverse_shape(self, shape):
        return _check_min_ndim("HaarTransform", shape, -self.dim)


class L1BallTransform(Transform):
    """Unconstrained ``(..., n)`` -> the open unit L1 ball ``(..., n)``.

    ``t = tanh(x)`` lies in (-1, 1); then stick breaking: ``y_i = t_i * r_i`` with the
    remainder ``r_i = prod_{j<i} (1 - |t_j|) = 1 - sum_{j<i} |y_j|``, so ``sum |y| < 1``.
    ``dy/dt`` is triangular with diagonal ``r``, hence ``log|det| = sum(log r) +
    sum(log(1 - tanh(x)**2))``, computed from ``x`` in log space (stable for large ``|x|``).
    """

    domain = constraints.real_vector
    codomain = constraints.l1_ball

    @staticmethod
    def _log_remainder(x):
        """``log r_i`` from ``log(1 - |tanh x_j|) = log 2 - softplus(2 |x_j|)``."""
        log_keep = math.log(2.0) - softplus(2.0 * jnp.abs(x))
        return jnp.cumsum(log_keep, axis=-1) - log_keep

    def __call__(self, x):
        x = jnp.asarray(x, dtype=_float_dtype(x))
        return jnp.tanh(x) * jnp.exp(self._log_remainder(x))

    def _inverse(self, y):
        y = jnp.asarray(y, dtype=_float_dtype(y))
        finfo = jnp.finfo(y.dtype)
        used = jnp.cumsum(jnp.abs(y), axis=-1) - jnp.abs(y)
        remainder = jnp.maximum(1.0 - used, finfo.tiny)
        t = jnp.clip(y / remainder, -1.0 + finfo.eps, 1.0 - finfo.eps)
        return jnp.arctanh(t)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        x = jnp.asarray(x, dtype=_float_dtype(x))
        # log(1 - tanh(x)^2) = 2 log 2 - 2|x| - 2 softplus(-2|x|)
        log_dtanh = 2.0 * (math.log(2.0) - jnp.abs(x) - softplus(-2.0 * jnp.abs(x)))
        return jnp.sum(self._log_remainder(x) + log_dtanh, axis=-1)


def _rfft_free_shape(shape, transform_shape) -> tuple[int, ...]:
    """``shape`` with its last ``len(transform_shape)`` sizes replaced (if given)."""
    shape = tuple(shape)
    if transform_shape is None:
        return shape
    return shape[: len(shape) - len(transform_shape)] + tuple(transform_shape)


class RealFastFourierTransform(Transform):
    """Real ``(..., n_1, ..., n_d)`` -> complex ``(..., n_1, ..., n_d // 2 + 1)`` by
    :func:`jax.numpy.fft.rfftn` over the last ``transform_ndims`` axes (inverse:
    :func:`jax.numpy.fft.irfftn`).

    ``transform_shape`` (default: the input's) crops or zero-pads the input, and fixes the
    inverse's output; without it the inverse assumes an even last size ``2 * (m - 1)``. The
    log-det is taken over the free real coordinates of the output (real parts, and imaginary
    parts that are not zero by symmetry): with ``N = n_1 ... n_d`` and ``q`` the number of
    self-conjugate frequencies, ``(N log N - (N - q) log 2) / 2``, shape ``x``'s batch.
    """

    def __init__(self, transform_shape=None, transform_ndims: int = 1):
        if isinstance(transform_shape, int | np.integer):
            transform_shape = (int(transform_shape),)
        if transform_shape is not None:
            transform_shape = tuple(int(n) for n in transform_shape)
        if isinstance(transform_ndims, bool) or not isinstance(transform_ndims, int | np.integer):
            raise TypeError(
                "RealFastFourierTransform(transform_ndims): expected an int >= 1, got "
                f"{type(transform_ndims).__name__}."
            )
        if transform_ndims < 1:
            raise ValueError(
                f"RealFastFourierTransform(transform_ndims): expected >= 1, got {transform_ndims}."
            )
        if transform_shape is not None and len(transform_shape) != transform_ndims:
            raise ValueError(
                f"RealFastFourierTransform(transform_shape): {transform_shape} has "
                f"{len(transform_shape)} dims but transform_ndims is {transform_ndims}."
            )
        self.transform_shape = transform_shape
        self.transform_ndims = int(transform_ndims)

    @property
    def domain(self):  # type: ignore[override]
        return constraints.independent(constraints.real, self.transform_ndims)

    @property
    def codomain(self):  # type: ignore[override]
        return constraints.independent(constraints.complex, self.transform_ndims)

    def _axes(self) -> tuple[int, ...]:
        return tuple(range(-self.transform_ndims, 0))

    def __call__(self, x):
        x = jnp.asarray(x, dtype=_float_dtype(x))
        _check_min_ndim("RealFastFourierTransform", x.shape, self.transform_ndims)
        return jnp.fft.rfftn(x, s=self.transform_shape, axes=self._axes())

    def _inverse(self, y):
        y = jnp.asarray(y)
        _check_min_ndim("RealFastFourierTransform", y.shape, self.transform_ndims)
        return jnp.fft.irfftn(y, s=self.transform_shape, axes=self._axes())

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        k = self.transform_ndims
        x = jnp.asarray(x)
        event = x.shape[x.ndim - k :]
        size = math.prod(event)
        q = math.prod(2 - n % 2 for n in event)  # frequencies equal to their own conjugate
        value = (size * math.log(size) - math.log(2.0) * (size - q)) / 2
        batch = np.broadcast_shapes(x.shape[: x.ndim - k], jnp.shape(y)[: jnp.ndim(y) - k])
        return jnp.full(batch, value, dtype=_float_dtype(x))

    def forward_shape(self, shape):
        shape = _rfft_free_shape(
            _check_min_ndim("RealFastFourierTransform", shape, self.transform_ndims),
            self.transform_shape,
        )
        return shape[:-1] + (shape[-1] // 2 + 1,)

    def inverse_shape(self, shape):
        shape = _check_min_ndim("RealFastFourierTransform", shape, self.transform_ndims)
        if self.transform_shape is not None:
            return _rfft_free_shape(shape, self.transform_shape)
        return shape[:-1] + (2 * (shape[-1] - 1),)


class PackRealFastFourierCoefficientsTransform(Transform):
    """Real ``(..., n)`` -> complex ``(..., n // 2 + 1)``, the free coordinates of a real
    signal's ``rfft``: the first ``n // 2 + 1`` entries are the real parts, the remaining
    ``n - n // 2 - 1`` the imaginary parts of frequencies ``1, 2, ...`` (those of frequency 0,
    and of ``n / 2`` for even ``n``, are zero). A relabelling: log-det zero.

    ``transform_shape``: ``(n,)``; needed for the inverse, which cannot tell ``n`` from the
    output size.
    """

    domain = constraints.real_vector
    codomain = constraints.independent(constraints.complex, 1)

    def __init__(self, transform_shape=None):
        if transform_shape is not None:
            transform_shape = tuple(int(n) for n in transform_shape)
            if len(transform_shape) != 1:
                raise ValueError(
                    "PackRealFastFourierCoefficientsTransform(transform_shape): only vectors "
                    f"are supported, expected a shape (n,), got {transform_shape}."
                )
        self.shape = transform_shape

    def _check_input(self, n: int) -> None:
        if self.shape is not None and self.shape != (n,):
            raise ValueError(
                f"PackRealFastFourierCoefficientsTransform: expected inputs of last size "
                f"{self.shape[0]} (transform_shape), got {n}."
            )

    def _n(self, n_rfft: int) -> int:
        if self.shape is None:
            raise ValueError(
                "PackRealFastFourierCoefficientsTransform: the inverse needs transform_shape=(n,) "
                "given to the constructor."
            )
        (n,) = self.shape
        if n_rfft != n // 2 + 1:
            raise ValueError(
                f"PackRealFastFourierCoefficientsTransform: expected {n // 2 + 1} coefficients "
                f"for n = {n}, got {n_rfft}."
            )
        return n

    def __call__(self, x):
        x = jnp.asarray(x, dtype=_float_dtype(x))
        n = x.shape[-1]
        self._check_input(n)
        n_real = n // 2 + 1
        n_imag = n - n_real
        imag = (
            jnp.zeros(x.shape[:-1] + (n_real,), x.dtype)
            .at[..., 1 : 1 + n_imag]
            .set(x[..., n_real:])
        )
        return jax.lax.complex(x[..., :n_real], imag)

    def _inverse(self, y):
        y = jnp.asarray(y)
        n = self._n(y.shape[-1])
        n_imag = n - (n // 2 + 1)
        return jnp.concatenate([jnp.real(y), jnp.imag(y)[..., 1 : 1 + n_imag]], axis=-1)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        batch = np.broadcast_shapes(jnp.shape(x)[:-1], jnp.shape(y)[:-1])
        return jnp.zeros(batch, dtype=_float_dtype(jnp.real(jnp.asarray(x))))

    def forward_shape(self, shape):
        shape = _check_min_ndim("PackRealFastFourierCoefficientsTransform", shape, 1)
        self._check_input(shape[-1])
        return shape[:-1] + (shape[-1] // 2 + 1,)

    def inverse_shape(self, shape):
        shape = _check_min_ndim("PackRealFastFourierCoefficientsTransform", shape, 1)
        return shape[:-1] + (self._n(shape[-1]),)


class RecursiveLinearTransform(Transform):
    """Time series ``(..., T, n)`` -> ``(..., T, n)`` by ``y_t = A y_{t-1} + x_t``, starting
    from ``y_{-1} = initial_value`` (default zero), run as a :func:`jax.lax.scan` over time.

    ``transition_matrix``: ``A``, ``(..., n, n)``, its batch broadcasting against the input's;
    ``initial_value``: ``(..., n)``. The Jacobian is block lower-triangular with identity
    blocks on the diagonal, so the log-det (shape: the broadcast batch) is zero.
    """

    domain = constraints.real_matrix
    codomain = constraints.real_matrix

    def __init__(self, transition_matrix, initial_value=None):
        a_shape = jnp.shape(transition_matrix)
        if len(a_shape) < 2 or a_shape[-1] != a_shape[-2]:
            raise ValueError(
                "RecursiveLinearTransform(transition_matrix): expected square matrices "
                f"(..., n, n), got shape {a_shape}."
            )
        if initial_value is None:
            initial_value = jnp.zeros(a_shape[-1:], dtype=_float_dtype(transition_matrix))
        if jnp.shape(initial_value)[-1:] != a_shape[-1:]:
            raise ValueError(
                f"RecursiveLinearTransform(initial_value): expected shape (..., {a_shape[-1]}) "
                f"to match transition_matrix {a_shape}, got {jnp.shape(initial_value)}."
            )
        self.transition_matrix = transition_matrix
        self.initial_value = initial_value

    def _batch(self, shape) -> tuple[int, ...]:
        return tuple(
            np.broadcast_shapes(
                tuple(shape[:-2]),
                jnp.shape(self.transition_matrix)[:-2],
                jnp.shape(self.initial_value)[:-1],
            )
        )

    def _apply_a(self, v):
        return jnp.einsum("...ij,...j->...i", self.transition_matrix, v)

    def __call__(self, x):
        x = jnp.asarray(x, dtype=_float_dtype(x))
        batch = self._batch(self.forward_shape(x.shape))
        n = x.shape[-1]
        x = jnp.broadcast_to(x, batch + x.shape[-2:])
        y0 = jnp.broadcast_to(self.initial_value, batch + (n,)).astype(x.dtype)

        def step(y_prev, x_t):
            y_t = self._apply_a(y_prev) + x_t
            return y_t, y_t

        _, ys = jax.lax.scan(step, y0, jnp.moveaxis(x, -2, 0))
        return jnp.moveaxis(ys, 0, -2)

    def _inverse(self, y):
        # x_t = y_t - A y_{t-1}: no recursion, so all steps at once
        y = jnp.asarray(y, dtype=_float_dtype(y))
        batch = self._batch(self.inverse_shape(y.shape))
        y = jnp.broadcast_to(y, batch + y.shape[-2:])
        y0 = jnp.broadcast_to(self.initial_value, batch + y.shape[-1:]).astype(y.dtype)
        prev = jnp.concatenate([y0[..., None, :], y[..., :-1, :]], axis=-2)
        a = jnp.expand_dims(jnp.asarray(self.transition_matrix), -3)  # broadcast over time
        return y - jnp.einsum("...ij,...j->...i", a, prev)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        return jnp.zeros(self._batch(jnp.shape(x)), dtype=_float_dtype(x))

    def forward_shape(self, shape):
        shape = _check_min_ndim("RecursiveLinearTransform", shape, 2)
        if shape[-1] != jnp.shape(self.transition_matrix)[-1]:
            raise ValueError(
                f"RecursiveLinearTransform: the input's last size {shape[-1]} differs from the "
                f"transition matrix's {jnp.shape(self.transition_matrix)[-1]}."
            )
        return self._batch(shape) + shape[-2:]

    def inverse_shape(self, shape):
        return self.forward_shape(shape)


class SimplexToOrderedTransform(Transform):
    """Simplex ``(..., K)`` -> ordered cutpoints ``(..., K - 1)``: ``y_k = logit(p_0 + ... +
    p_k) + anchor_point`` (the logistic cutpoints of Betancourt's ordinal regression case
    study). ``anchor_point`` broadcasts against ``x.shape[:-1]``.

    The log-det is that of the square map ``x[..., :-1] -> y``: the cumulative sum has unit
    determinant and ``logit' = 1 / (s (1 - s))``, so it is ``sum(softplus(y) + softplus(-y))``
    with ``y`` measured from the anchor.
    """

    domain = constraints.simplex
    codomain = constraints.ordered_vector

    def __init__(self, anchor_point=0.0):
        self.anchor_point = anchor_point

    def __call__(self, x):
        x = jnp.asarray(x, dtype=_float_dtype(x))
        head = jnp.cumsum(x[..., :-1], axis=-1)
        # 1 - s_k summed from the right, so cutpoints near 1 keep their precision
        tail = jnp.flip(jnp.cumsum(jnp.flip(x[..., 1:], -1), axis=-1), -1)
        return jnp.log(head) - jnp.log(tail) + jnp.expand_dims(jnp.asarray(self.anchor_point), -1)

    def _inverse(self, y):
        y = jnp.asarray(y, dtype=_float_dtype(y))
        s = jax.nn.sigmoid(y - jnp.expand_dims(jnp.asarray(self.anchor_point), -1))
        zero = jnp.zeros(s.shape[:-1] + (1,), s.dtype)
        return jnp.diff(s, axis=-1, prepend=zero, append=zero + 1.0)

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        z = jnp.asarray(y) - jnp.expand_dims(jnp.asarray(self.anchor_point), -1)
        return jnp.sum(softplus(z) + softplus(-z), axis=-1)

    def forward_shape(self, shape):
        shape = _check_min_ndim("SimplexToOrderedTransform", shape, 1)
        batch = np.broadcast_shapes(shape[:-1], jnp.shape(self.anchor_point))
        return tuple(batch) + (shape[-1] - 1,)

    def inverse_shape(self, shape):
        shape = _check_min_ndim("SimplexToOrderedTransform", shape, 1)
        batch = np.broadcast_shapes(shape[:-1], jnp.shape(self.anchor_point))
        return tuple(batch) + (shape[-1] + 1,)


# ------------------------------------------------------------------------------------------
# biject_to
# ------------------------------------------------------------------------------------------
class ConstraintRegistry:
    """Maps constraint classes to factories ``constraint -> Transform``.

    Lookup walks the constraint's class hierarchy, so a factory registered for a class also
    serves its subclasses unless they have their own.
    """

    def __init__(self):
        self._registry: dict[type, Callable[[constraints.Constraint], Transform]] = {}

    def register(self, constraint, factory: Callable | None = None):
        """Register ``factory`` for ``constraint`` (a class or an instance, which stands for
        its class). Without ``factory``, returns a decorator."""
        if factory is None:
            return lambda f: self.register(constraint, f)
        key = constraint if isinstance(constraint, type) else type(constraint)
        self._registry[key] = factory
        return factory

    def __call__(self, constraint: constraints.Constraint) -> Transform:
        if getattr(constraint, "is_discrete", False):
            raise NotImplementedError(
                f"biject_to: the constraint {constraint!r} is discrete, so there is no bijection "
                "from the real numbers onto it. Discrete latent sites cannot be reparameterized: "
                "they must be marginalized out (e.g. enumerated with "
                "infer={'enumerate': 'parallel'}) or observed."
            )
        for cls in type(constraint).__mro__:
            factory = self._registry.get(cls)
            if factory is not None:
                return factory(constraint)
        if isinstance(constraint, constraints._Dependent):
            raise NotImplementedError(
                "biject_to: cannot transform to a `dependent` constraint, whose support depends "
                "on other variables; give the site an explicit support, or, if it is discrete, "
                "marginalize or enumerate it."
            )
        raise NotImplementedError(
            f"biject_to: no transform is registered for the constraint {constraint!r}. "
            "Register one with @biject_to.register; if the site is discrete it must be "
            "marginalized out or enumerated instead."
        )


biject_to = ConstraintRegistry()


@biject_to.register(constraints._Real)
def _to_real(constraint):
    return IdentityTransform()


@biject_to.register(constraints._RealVector)
def _to_real_vector(constraint):
    return IndependentTransform(IdentityTransform(), 1)


@biject_to.register(constraints._RealMatrix)
def _to_real_matrix(constraint):
    return IndependentTransform(IdentityTransform(), 2)


@biject_to.register(constraints._Positive)
def _to_positive(constraint):
    return ExpTransform()


@biject_to.register(constraints._Nonnegative)
def _to_nonnegative(constraint):
    return ExpTransform()


@biject_to.register(constraints._SoftplusPositive)
def _to_softplus_positive(constraint):
    return SoftplusTransform()


def _check_finite_bounds(constraint, *bounds) -> None:
    """Raise when a concrete bound is infinite: exp/sigmoid maps would send every point there."""
    for bound in bounds:
        if is_concrete(bound) and not np.all(np.isfinite(np.asarray(bound))):
            raise ValueError(
                f"biject_to({constraint!r}): the bounds must be finite; a bound of +-inf would "
                "map every unconstrained point onto it. For a set bounded on one side use "
                "greater_than(low) or less_than(high); for no bound use real."
            )


@biject_to.register(constraints._GreaterThan)
def _to_greater_than(constraint):
    _check_finite_bounds(constraint, constraint.lower_bound)
    # also serves greater_than_eq: the image of exp is open, which lies inside both.
    return ComposeTransform(
        [ExpTransform(), AffineTransform(constraint.lower_bound, 1.0, domain=constraints.positive)]
    )


@biject_to.register(constraints._LessThan)
def _to_less_than(constraint):
    _check_finite_bounds(constraint, constraint.upper_bound)
    return ComposeTransform(
        [ExpTransform(), AffineTransform(constraint.upper_bound, -1.0, domain=constraints.positive)]
    )


@biject_to.register(constraints._Interval)
def _to_interval(constraint):
    lo, hi = constraint.lower_bound, constraint.upper_bound
    _check_finite_bounds(constraint, lo, hi)
    if isinstance(constraint, constraints._OpenInterval):
        unit = constraints.open_interval(0.0, 1.0)
    else:
        unit = constraints.unit_interval
    return ComposeTransform([SigmoidTransform(), AffineTransform(lo, hi - lo, domain=unit)])


@biject_to.register(constraints._UnitInterval)
def _to_unit_interval(constraint):
    return SigmoidTransform()


@biject_to.register(constraints._Circular)
def _to_circular(constraint):
    return CircularTransform()


@biject_to.register(constraints._Simplex)
def _to_simplex(constraint):
    return StickBreakingTransform()


@biject_to.register(constraints._OrderedVector)
def _to_ordered_vector(constraint):
    return OrderedTransform()


@biject_to.register(constraints._PositiveOrderedVector)
def _to_positive_ordered_vector(constraint):
    return ComposeTransform([OrderedTransform(), ExpTransform()])


@biject_to.register(constraints._CorrCholesky)
def _to_corr_cholesky(constraint):
    return CorrCholeskyTransform()


@biject_to.register(constraints._CorrMatrix)
def _to_corr_matrix(constraint):
    return ComposeTransform([CorrCholeskyTransform(), CorrMatrixCholeskyTransform().inv])


@biject_to.register(constraints._LowerCholesky)
def _to_lower_cholesky(constraint):
    return LowerCholeskyTransform()


@biject_to.register(constraints._ScaledUnitLowerCholesky)
def _to_scaled_unit_lower_cholesky(constraint):
    return ScaledUnitLowerCholeskyTransform()


@biject_to.register(constraints._SoftplusLowerCholesky)
def _to_softplus_lower_cholesky(constraint):
    return SoftplusLowerCholeskyTransform()


@biject_to.register(constraints._PositiveDefinite)
def _to_positive_definite(constraint):
    return PositiveDefiniteTransform()


@biject_to.register(constraints._ZeroSum)
def _to_zero_sum(constraint):
    return ZeroSumTransform(constraint.event_dim)


@biject_to.register(constraints._Independent)
def _to_independent(constraint):
    base = biject_to(constraint.base_constraint)
    n = constraint.reinterpreted_batch_ndims
    return IndependentTransform(base, n) if n > 0 else base


@biject_to.register(constraints._L1Ball)
def _to_l1_ball(constraint):
    return L1BallTransform()


@biject_to.register(constraints._PositiveSemiDefinite)
def _to_positive_semidefinite(constraint):
    # the image (positive definite matrices) lies inside the positive semi-definite ones
    return PositiveDefiniteTransform()


@biject_to.register(constraints._Complex)
def _to_complex(constraint):
    return ComplexTransform()


@biject_to.register(constraints._Cat)
def _to_cat(constraint):
    return CatTransform([biject_to(c) for c in constraint.cseq], constraint.dim, constraint.lengths)
