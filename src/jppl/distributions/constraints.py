"""Constraints: the sets that distribution parameters and supports live in.

A constraint is a callable ``c(x) -> bool array`` that checks membership elementwise over the
batch dimensions. ``c.event_dim`` is the number of rightmost dimensions that form one element
(0 for scalars, 1 for vectors such as a simplex, 2 for matrices). ``biject_to(c)`` in
:mod:`jppl.distributions.transforms` maps the real space onto it.

Names follow NumPyro and PyTorch so that ``constraints.positive`` etc. port unchanged.

Every constraint is a JAX pytree: array parameters (e.g. the bounds of ``interval(lo, hi)``
given as arrays) are leaves, everything else (Python-number bounds, ``event_dim``, nested
constraints' static data) is auxiliary data, so constraints can be passed to and returned from
``jit``/``vmap``. ``c.eq(other)`` is structural equality as in NumPyro (a Python bool, or a
boolean array when a parameter is traced); ``==`` is its static form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jppl.distributions.util import PyTreeObject, is_concrete

__all__ = [
    "Constraint",
    "boolean",
    "cat",
    "circular",
    "complex",
    "corr_cholesky",
    "corr_matrix",
    "dependent",
    "greater_than",
    "greater_than_eq",
    "independent",
    "integer_interval",
    "integer_greater_than",
    "interval",
    "is_dependent",
    "less_than",
    "less_than_eq",
    "l1_ball",
    "lower_cholesky",
    "multinomial",
    "nonnegative",
    "nonnegative_integer",
    "open_interval",
    "ordered_vector",
    "positive",
    "positive_definite",
    "positive_definite_circulant_vector",
    "positive_integer",
    "positive_ordered_vector",
    "positive_semidefinite",
    "real",
    "real_matrix",
    "real_vector",
    "scaled_unit_lower_cholesky",
    "simplex",
    "softplus_positive",
    "sphere",
    "softplus_lower_cholesky",
    "unit_interval",
    "zero_sum",
]


def _array_equiv(a: Any, b: Any, static: bool = False):
    """Whether two parameter values are equal (same broadcast shape and entries).

    ``static=True`` always gives a Python bool: traced values then compare equal only when they
    are the same object. Otherwise a concrete comparison gives a bool and a traced one a boolean
    scalar array. Nested constraints/transforms compare with their ``eq``; sequences elementwise;
    other static values (ints, tuples of ints, functions) with ``==``.
    """
    if a is b:
        return True
    if isinstance(a, PyTreeObject) and callable(getattr(a, "eq", None)):
        return a.eq(b, static=static)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b) or type(a) is not type(b):
            return False
        result: Any = True
        for x, y in zip(a, b, strict=True):
            r = _array_equiv(x, y, static)
            if static and not r:
                return False
            result = result & r
        return result
    arraylike = (jax.Array, np.ndarray, np.generic, float, int, bool)
    if not (isinstance(a, arraylike) and isinstance(b, arraylike)):
        return bool(a == b)
    if is_concrete(a) and is_concrete(b):
        return bool(np.array_equiv(np.asarray(a), np.asarray(b)))
    if static:
        return False
    return jnp.array_equiv(jnp.asarray(a), jnp.asarray(b))


def _attributes_equiv(a: object, b: object, static: bool):
    """Whether two objects of one kind (constraints, transforms) have equal attributes: a
    Python bool, or with ``static=False`` and traced attributes a boolean array."""
    mine, theirs = vars(a), vars(b)
    if mine.keys() != theirs.keys():
        return False
    result: Any = True
    for key, value in mine.items():
        r = _array_equiv(value, theirs[key], static)
        if static and not r:
            return False
        result = result & r
    return result


class Constraint(PyTreeObject):
    """Base class. Subclasses implement ``__call__`` and may set ``event_dim``/``is_discrete``.

    ``_eq_as`` (a class attribute) names the class a subclass compares as in :meth:`eq`, so that
    e.g. ``positive`` equals ``greater_than(0.0)`` (the same set, like NumPyro).
    """

    is_discrete: bool = False
    event_dim: int = 0

    def __call__(self, x):
        raise NotImplementedError

    # -- pytree and equality ----------------------------------------------------------------
    def tree_flatten(self):
        """``(leaves, aux_data)``: array parameters, and the static rest (NumPyro's method)."""
        return self._tree_flatten()

    @classmethod
    def tree_unflatten(cls, aux_data, params):
        """Rebuild a constraint from :meth:`tree_flatten`'s output."""
        return cls._tree_unflatten(aux_data, params)

    @classmethod
    def _tree_unflatten(cls, aux_data, children):
        obj = super()._tree_unflatten(aux_data, children)
        # Keep module singletons (real, positive, dependent, ...) identical through jit, since
        # code compares them with ``is``.
        single = _SINGLETONS.get(cls)
        if single is not None and vars(single) == vars(obj):
            return single
        return obj

    @classmethod
    def _eq_family(cls) -> type:
        return cls.__dict__.get("_eq_as", cls)

    def _canonical(self) -> Constraint:
        """The form compared by :meth:`eq` (``real_vector`` is ``independent(real, 1)``)."""
        return self

    def eq(self, other: object, static: bool = False):
        """Structural equality: the same kind of constraint with equal parameters.

        Returns a Python bool, or (``static=False`` with traced parameters) a boolean array.
        """
        if self is other:
            return True
        if not isinstance(other, Constraint):
            return False
        if self._canonical() is not self or other._canonical() is not other:
            return self._canonical().eq(other._canonical(), static=static)
        if self._eq_family() is not other._eq_family():
            return False
        return _attributes_equiv(self, other, static)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Constraint):
            return NotImplemented
        return bool(self.eq(other, static=True))

    def __hash__(self) -> int:
        # equal constraints share a canonical family, so this is consistent with ``__eq__``
        return hash(self._canonical()._eq_family())

    def check(self, x):
        """Alias of ``__call__``: a boolean array of shape ``x.shape[:x.ndim - event_dim]``."""
        return self(x)

    def feasible_like(self, prototype):
        """An array of ``prototype``'s shape whose every element satisfies the constraint."""
        return jnp.zeros_like(prototype)

    def __repr__(self) -> str:
        return type(self).__name__.lstrip("_")


class _Real(Constraint):
    def __call__(self, x):
        return (x == x) & (x != float("inf")) & (x != float("-inf"))

    def __repr__(self):
        return "real"


class _Boolean(Constraint):
    is_discrete = True

    def __call__(self, x):
        return (x == 0) | (x == 1)

    def __repr__(self):
        return "boolean"


class _GreaterThan(Constraint):
    def __init__(self, lower_bound):
        self.lower_bound = lower_bound

    def __call__(self, x):
        return x > self.lower_bound

    def feasible_like(self, prototype):
        return jnp.broadcast_to(self.lower_bound + 1, jnp.shape(prototype)).astype(
            jnp.result_type(prototype, float)
        )

    def __repr__(self):
        return f"greater_than({self.lower_bound})"


class _GreaterThanEq(_GreaterThan):
    def __call__(self, x):
        return x >= self.lower_bound

    def __repr__(self):
        return f"greater_than_eq({self.lower_bound})"


class _Positive(_GreaterThan):
    _eq_as = _GreaterThan

    def __init__(self):
        super().__init__(0.0)

    def __repr__(self):
        return "positive"


class _Nonnegative(_GreaterThanEq):
    _eq_as = _GreaterThanEq

    def __init__(self):
        super().__init__(0.0)

    def __repr__(self):
        return "nonnegative"


class _SoftplusPositive(_Positive):
    """Positive reals, unconstrained through softplus instead of exp (more stable for scales)."""

    def __repr__(self):
        return "softplus_positive"


class _LessThan(Constraint):
    def __init__(self, upper_bound):
        self.upper_bound = upper_bound

    def __call__(self, x):
        return x < self.upper_bound

    def feasible_like(self, prototype):
        return jnp.broadcast_to(self.upper_bound - 1, jnp.shape(prototype)).astype(
            jnp.result_type(prototype, float)
        )

    def __repr__(self):
        return f"less_than({self.upper_bound})"


class _LessThanEq(_LessThan):
    def __call__(self, x):
        return x <= self.upper_bound

    def __repr__(self):
        return f"less_than_eq({self.upper_bound})"


class _Interval(Constraint):
    """Closed interval ``[lower_bound, upper_bound]``."""

    def __init__(self, lower_bound, upper_bound):
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound

    def __call__(self, x):
        return (x >= self.lower_bound) & (x <= self.upper_bound)

    def feasible_like(self, prototype):
        mid = (jnp.asarray(self.lower_bound) + jnp.asarray(self.upper_bound)) / 2
        return jnp.broadcast_to(mid, jnp.shape(prototype)).astype(jnp.result_type(prototype, float))

    def __repr__(self):
        return f"interval({self.lower_bound}, {self.upper_bound})"


class _OpenInterval(_Interval):
    def __call__(self, x):
        return (x > self.lower_bound) & (x < self.upper_bound)

    def __repr__(self):
        return f"open_interval({self.lower_bound}, {self.upper_bound})"


class _UnitInterval(_Interval):
    _eq_as = _Interval

    def __init__(self):
        super().__init__(0.0, 1.0)

    def __repr__(self):
        return "unit_interval"


class _Circular(_Interval):
    _eq_as = _Interval

    def __init__(self):
        super().__init__(-np.pi, np.pi)

    def __repr__(self):
        return "circular"


class _IntegerInterval(Constraint):
    is_discrete = True

    def __init__(self, lower_bound, upper_bound):
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound

    def __call__(self, x):
        return (x >= self.lower_bound) & (x <= self.upper_bound) & (x == jnp.floor(x))

    def feasible_like(self, prototype):
        return jnp.broadcast_to(self.lower_bound, jnp.shape(prototype))

    def __repr__(self):
        return f"integer_interval({self.lower_bound}, {self.upper_bound})"


class _IntegerGreaterThan(Constraint):
    is_discrete = True

    def __init__(self, lower_bound):
        self.lower_bound = lower_bound

    def __call__(self, x):
        return (x >= self.lower_bound) & (x == jnp.floor(x))

    def feasible_like(self, prototype):
        return jnp.broadcast_to(self.lower_bound, jnp.shape(prototype))

    def __repr__(self):
        return f"integer_greater_than({self.lower_bound})"


class _Simplex(Constraint):
    event_dim = 1

    def __call__(self, x):
        x = jnp.asarray(x)
        return jnp.all(x >= 0, axis=-1) & (jnp.abs(jnp.sum(x, axis=-1) - 1) < 1e-6 * 10)

    def feasible_like(self, prototype):
        n = jnp.shape(prototype)[-1]
        return jnp.full(jnp.shape(prototype), 1.0 / n, dtype=jnp.result_type(prototype, float))

    def __repr__(self):
        return "simplex"


class _Multinomial(Constraint):
    is_discrete = True
    event_dim = 1

    def __init__(self, upper_bound):
        self.upper_bound = upper_bound

    def __call__(self, x):
        return jnp.all(x >= 0, axis=-1) & (jnp.sum(x, axis=-1) == self.upper_bound)

    def __repr__(self):
        return f"multinomial({self.upper_bound})"


class _OrderedVector(Constraint):
    event_dim = 1

    def __call__(self, x):
        return jnp.all(x[..., 1:] > x[..., :-1], axis=-1) & jnp.all(jnp.isfinite(x), axis=-1)

    def feasible_like(self, prototype):
        n = jnp.shape(prototype)[-1]
        return jnp.broadcast_to(
            jnp.arange(n, dtype=jnp.result_type(prototype, float)), jnp.shape(prototype)
        )

    def __repr__(self):
        return "ordered_vector"


class _PositiveOrderedVector(_OrderedVector):
    def __call__(self, x):
        return super().__call__(x) & jnp.all(x > 0, axis=-1)

    def feasible_like(self, prototype):
        return super().feasible_like(prototype) + 1

    def __repr__(self):
        return "positive_ordered_vector"


class _RealVector(Constraint):
    event_dim = 1

    def __call__(self, x):
        return jnp.all(jnp.isfinite(x), axis=-1)

    def _canonical(self) -> Constraint:
        return _Independent(real, 1)

    def __repr__(self):
        return "real_vector"


class _RealMatrix(Constraint):
    event_dim = 2

    def __call__(self, x):
        return jnp.all(jnp.isfinite(x), axis=(-2, -1))

    def _canonical(self) -> Constraint:
        return _Independent(real, 2)

    def __repr__(self):
        return "real_matrix"


class _ZeroSum(Constraint):
    """Arrays that sum to zero along each of their last ``event_dim`` axes (NumPyro's
    ``zero_sum(event_dim=1)``)."""

    def __init__(self, event_dim: int = 1):
        if isinstance(event_dim, bool) or not isinstance(event_dim, int | np.integer):
            raise TypeError(
                "zero_sum(event_dim): event_dim must be an int >= 1, got "
                f"{type(event_dim).__name__} of shape {np.shape(event_dim)}. "
                "To check a value use zero_sum(event_dim)(value)."
            )
        if event_dim < 1:
            raise ValueError(f"zero_sum(event_dim): event_dim must be >= 1, got {event_dim}.")
        self.event_dim = int(event_dim)

    def __call__(self, x):
        """Boolean array of shape ``x.shape[:-event_dim]``."""
        x = jnp.asarray(x)
        axes = tuple(range(-self.event_dim, 0))
        # rounding in a sum of n terms of size <= scale is a few n * eps * scale
        scale = jnp.maximum(jnp.max(jnp.abs(x), axis=axes, keepdims=True), 1.0)
        eps = jnp.finfo(jnp.result_type(x, float)).eps
        ok = jnp.ones(x.shape[: x.ndim - self.event_dim], dtype=bool)
        for axis in axes:
            tol = 10.0 * eps * x.shape[axis] * scale
            close = jnp.abs(jnp.sum(x, axis=axis, keepdims=True)) <= tol
            ok = ok & jnp.all(close, axis=axes)
        return ok

    def __repr__(self):
        return f"zero_sum(event_dim={self.event_dim})"


class _LowerCholesky(Constraint):
    """Lower-triangular matrices with a positive diagonal."""

    event_dim = 2

    def __call__(self, x):
        x = jnp.asarray(x)
        lower = jnp.all(jnp.tril(x) == x, axis=(-2, -1))
        diag_pos = jnp.all(jnp.diagonal(x, axis1=-2, axis2=-1) > 0, axis=-1)
        return lower & diag_pos

    def feasible_like(self, prototype):
        n = jnp.shape(prototype)[-1]
        return jnp.broadcast_to(
            jnp.eye(n, dtype=jnp.result_type(prototype, float)), jnp.shape(prototype)
        )

    def __repr__(self):
        return "lower_cholesky"


class _ScaledUnitLowerCholesky(_LowerCholesky):
    def __repr__(self):
        return "scaled_unit_lower_cholesky"


class _SoftplusLowerCholesky(_LowerCholesky):
    def __repr__(self):
        return "softplus_lower_cholesky"


class _CorrCholesky(_LowerCholesky):
    """Cholesky factors of correlation matrices: lower triangular, positive diagonal, unit rows."""

    def __call__(self, x):
        x = jnp.asarray(x)
        unit_rows = jnp.all(jnp.abs(jnp.sum(x * x, axis=-1) - 1) < 1e-4, axis=-1)
        return super().__call__(x) & unit_rows

    def __repr__(self):
        return "corr_cholesky"


class _PositiveDefinite(Constraint):
    event_dim = 2

    def __call__(self, x):
        x = jnp.asarray(x)
        symmetric = jnp.all(jnp.abs(x - jnp.swapaxes(x, -1, -2)) < 1e-6 * 10, axis=(-2, -1))
        eig_pos = jnp.linalg.eigvalsh(x)[..., 0] > 0
        return symmetric & eig_pos

    def feasible_like(self, prototype):
        n = jnp.shape(prototype)[-1]
        return jnp.broadcast_to(
            jnp.eye(n, dtype=jnp.result_type(prototype, float)), jnp.shape(prototype)
        )

    def __repr__(self):
        return "positive_definite"


class _CorrMatrix(_PositiveDefinite):
    def __call__(self, x):
        x = jnp.asarray(x)
        unit_diag = jnp.all(jnp.abs(jnp.diagonal(x, axis1=-2, axis2=-1) - 1) < 1e-6 * 10, axis=-1)
        return super().__call__(x) & unit_diag

    def __repr__(self):
        return "corr_matrix"


class _Dependent(Constraint):
    """Placeholder for supports that depend on other variables; cannot be checked or bijected."""

    def __init__(self, is_discrete: bool = False, event_dim: int = 0):
        self.is_discrete = is_discrete
        self.event_dim = event_dim

    def __call__(self, x):
        raise ValueError("Cannot check a `dependent` constraint: it depends on other variables.")

    def __repr__(self):
        return "dependent"


class _Independent(Constraint):
    """Reinterprets ``reinterpreted_batch_ndims`` batch dims of a constraint as event dims."""

    def __init__(self, base_constraint: Constraint, reinterpreted_batch_ndims: int):
        if reinterpreted_batch_ndims < 0:
            raise ValueError(
                "independent: reinterpreted_batch_ndims must be >= 0, got "
                f"{reinterpreted_batch_ndims}"
            )
        if isinstance(base_constraint, _Independent):
            reinterpreted_batch_ndims += base_constraint.reinterpreted_batch_ndims
            base_constraint = base_constraint.base_constraint
        self.base_constraint = base_constraint
        self.reinterpreted_batch_ndims = reinterpreted_batch_ndims

    @property
    def is_discrete(self):  # type: ignore[override]
        return self.base_constraint.is_discrete

    @property
    def event_dim(self):  # type: ignore[override]
        return self.base_constraint.event_dim + self.reinterpreted_batch_ndims

    def __call__(self, x):
        result = self.base_constraint(x)
        if self.reinterpreted_batch_ndims:
            result = jnp.all(result, axis=tuple(range(-self.reinterpreted_batch_ndims, 0)))
        return result

    def feasible_like(self, prototype):
        return self.base_constraint.feasible_like(prototype)

    def __repr__(self):
        return f"independent({self.base_constraint!r}, {self.reinterpreted_batch_ndims})"


class _L1Ball(Constraint):
    """Vectors (last axis) with ``sum(|x|) <= 1``, up to a few ulps (NumPyro's ``l1_ball``)."""

    event_dim = 1

    def __call__(self, x):
        x = jnp.asarray(x)
        eps = jnp.finfo(jnp.result_type(x, float)).eps
        return jnp.sum(jnp.abs(x), axis=-1) < 1.0 + 10.0 * eps

    def __repr__(self) -> str:
        return "l1_ball"


class _Sphere(Constraint):
    """Unit vectors along the last axis (NumPyro's ``sphere``), up to a relative 1e-6 (float32
    normalization is that accurate, not better)."""

    event_dim = 1

    def __call__(self, x):
        x = jnp.asarray(x)
        return jnp.abs(jnp.sum(x**2, axis=-1) - 1.0) < 1e-6

    def feasible_like(self, prototype):
        n = jnp.shape(prototype)[-1]
        return jnp.full(jnp.shape(prototype), 1.0 / np.sqrt(n), jnp.result_type(prototype, float))

    def __repr__(self) -> str:
        return "sphere"


class _Complex(Constraint):
    """Finite complex numbers (NumPyro's ``complex``): real and imaginary parts not inf/nan."""

    def __call__(self, x):
        x = jnp.asarray(x)
        return jnp.isfinite(jnp.real(x)) & jnp.isfinite(jnp.imag(x))

    def __repr__(self) -> str:
        return "complex"


class _PositiveSemiDefinite(Constraint):
    """Symmetric matrices with no negative eigenvalue (NumPyro's ``positive_semidefinite``).

    ``x``: ``(..., n, n)``; the check has shape ``(...)``. The smallest eigenvalue may be
    negative by rounding (a few ulps of the largest), so that is allowed.
    """

    event_dim = 2

    def __call__(self, x):
        x = jnp.asarray(x)
        dtype = jnp.result_type(x, float)
        eps = jnp.finfo(dtype).eps
        sym = jnp.swapaxes(x, -1, -2)
        scale = jnp.maximum(jnp.max(jnp.abs(x), axis=(-2, -1)), jnp.finfo(dtype).tiny)
        symmetric = jnp.all(jnp.abs(x - sym) <= 10 * eps * scale[..., None, None], axis=(-2, -1))
        eig = jnp.linalg.eigvalsh((x + sym) / 2)
        n = x.shape[-1]
        return symmetric & (eig[..., 0] >= -10 * n * eps * scale)

    def feasible_like(self, prototype):
        n = jnp.shape(prototype)[-1]
        return jnp.broadcast_to(
            jnp.eye(n, dtype=jnp.result_type(prototype, float)), jnp.shape(prototype)
        )

    def __repr__(self) -> str:
        return "positive_semidefinite"


class _PositiveDefiniteCirculantVector(Constraint):
    """First rows ``c`` (last axis, length ``n``) of symmetric positive semi-definite circulant
    matrices (NumPyro's ``positive_definite_circulant_vector``, which admits zero eigenvalues).

    The eigenvalues of a circulant matrix are the DFT of ``c``; it is symmetric exactly when
    that DFT is real, so ``c`` belongs when ``rfft(c)`` is real and nonnegative up to rounding.
    The check has shape ``c.shape[:-1]`` (NumPyro returns one entry per frequency instead).
    """

    event_dim = 1

    def __call__(self, x):
        x = jnp.asarray(x)
        dtype = jnp.result_type(x, float)
        # the DFT of n entries of size <= scale rounds to within a few n * eps * scale
        scale = jnp.maximum(jnp.max(jnp.abs(x), axis=-1, keepdims=True), jnp.finfo(dtype).tiny)
        tol = 10 * x.shape[-1] * jnp.finfo(dtype).eps * scale
        spectrum = jnp.fft.rfft(x.astype(dtype), axis=-1)
        ok = (jnp.abs(spectrum.imag) <= tol) & (spectrum.real >= -tol)
        return jnp.all(ok, axis=-1)

    def feasible_like(self, prototype):
        dtype = jnp.result_type(prototype, float)
        return jnp.zeros(jnp.shape(prototype), dtype).at[..., 0].set(1.0)

    def __repr__(self) -> str:
        return "positive_definite_circulant_vector"


class _Cat(Constraint):
    """Consecutive slices along axis ``dim`` each in their own constraint (NumPyro's ``cat``),
    laid out as :func:`jax.numpy.concatenate` would join them.

    ``cseq``: the constraints, in order; ``dim``: the axis sliced; ``lengths``: each slice's
    length along ``dim`` (default 1 each). ``event_dim`` is the largest of the parts'. The
    check has shape ``x.shape[:x.ndim - event_dim]``: each part's check is reduced over the
    event dims it lacks, then joined along ``dim`` when ``dim`` is a batch axis, or combined
    with "and" when ``dim`` is an event axis.
    """

    def __init__(
        self, cseq: Sequence[Constraint], dim: int = 0, lengths: Sequence[int] | None = None
    ):
        cseq = tuple(cseq)
        if not cseq or not all(isinstance(c, Constraint) for c in cseq):
            raise TypeError(
                "cat(cseq): cseq must be a non-empty sequence of constraints, got "
                f"{[type(c).__name__ for c in cseq]}."
            )
        if isinstance(dim, bool) or not isinstance(dim, int | np.integer):
            raise TypeError(f"cat(dim): dim must be an int, got {type(dim).__name__}.")
        lengths = (1,) * len(cseq) if lengths is None else tuple(lengths)
        if len(lengths) != len(cseq) or not all(
            isinstance(n, int | np.integer) and not isinstance(n, bool) and n >= 0 for n in lengths
        ):
            raise ValueError(
                f"cat(lengths): expected {len(cseq)} nonnegative ints (one per constraint), got "
                f"{lengths!r}."
            )
        self.cseq = cseq
        self.dim = int(dim)
        self.lengths = tuple(int(n) for n in lengths)

    @property
    def is_discrete(self):  # type: ignore[override]
        return any(c.is_discrete for c in self.cseq)

    @property
    def event_dim(self):  # type: ignore[override]
        return max(c.event_dim for c in self.cseq)

    def _slices(self, x) -> list:
        """Split ``x`` along ``dim`` into the parts' slices (checks ``x``'s size there)."""
        x = jnp.asarray(x)
        if not -x.ndim <= self.dim < x.ndim:
            raise ValueError(f"cat: dim {self.dim} is out of range for a value of shape {x.shape}.")
        if x.shape[self.dim] != sum(self.lengths):
            raise ValueError(
                f"cat: the value's size along dim {self.dim} is {x.shape[self.dim]}, but the "
                f"lengths {self.lengths} sum to {sum(self.lengths)}."
            )
        bounds = np.cumsum((0,) + self.lengths)
        axis = self.dim % x.ndim
        return [
            jax.lax.slice_in_dim(x, int(a), int(b), axis=axis)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]

    def _event_axis(self, ndim: int) -> int:
        """``dim`` counted from the right of a value with ``ndim`` dims (negative)."""
        return (self.dim % ndim) - ndim

    def __call__(self, x):
        x = jnp.asarray(x)
        event_dim = self.event_dim
        checks = []
        for c, part in zip(self.cseq, self._slices(x), strict=True):
            ok = c(part)
            extra = event_dim - c.event_dim
            if extra:
                ok = jnp.all(ok, axis=tuple(range(-extra, 0)))
            checks.append(ok)
        axis = self._event_axis(x.ndim) + event_dim
        if axis >= 0:  # ``dim`` is an event axis: one verdict per batch element
            out = checks[0]
            for ok in checks[1:]:
                out = out & ok
            return out
        return jnp.concatenate(checks, axis=axis)

    def feasible_like(self, prototype):
        parts = [
            c.feasible_like(p) for c, p in zip(self.cseq, self._slices(prototype), strict=True)
        ]
        return jnp.concatenate(parts, axis=self.dim)

    def __repr__(self) -> str:
        return f"cat({list(self.cseq)!r}, dim={self.dim}, lengths={self.lengths})"


def is_dependent(constraint: object) -> bool:
    """Whether ``constraint`` is a ``dependent`` placeholder (a support that depends on other
    variables, so it can be neither checked nor bijected onto)."""
    return isinstance(constraint, _Dependent)


# Singletons and factories, under NumPyro's names.
real = _Real()
real_vector = _RealVector()
real_matrix = _RealMatrix()
boolean = _Boolean()
positive = _Positive()
nonnegative = _Nonnegative()
softplus_positive = _SoftplusPositive()
unit_interval = _UnitInterval()
circular = _Circular()
l1_ball = _L1Ball()
sphere = _Sphere()
complex = _Complex()  # noqa: A001  (NumPyro's name)
positive_semidefinite = _PositiveSemiDefinite()
positive_definite_circulant_vector = _PositiveDefiniteCirculantVector()
simplex = _Simplex()
ordered_vector = _OrderedVector()
positive_ordered_vector = _PositiveOrderedVector()
lower_cholesky = _LowerCholesky()
scaled_unit_lower_cholesky = _ScaledUnitLowerCholesky()
softplus_lower_cholesky = _SoftplusLowerCholesky()
corr_cholesky = _CorrCholesky()
corr_matrix = _CorrMatrix()
positive_definite = _PositiveDefinite()
nonnegative_integer = _IntegerGreaterThan(0)
positive_integer = _IntegerGreaterThan(1)
dependent = _Dependent()

greater_than = _GreaterThan
greater_than_eq = _GreaterThanEq
less_than = _LessThan
less_than_eq = _LessThanEq
interval = _Interval
open_interval = _OpenInterval
integer_interval = _IntegerInterval
integer_greater_than = _IntegerGreaterThan
multinomial = _Multinomial
independent = _Independent
zero_sum = _ZeroSum
cat = _Cat

# instances that ``tree_unflatten`` returns as they are (see ``Constraint._tree_unflatten``)
_SINGLETONS: dict[type, Constraint] = {
    type(c): c
    for c in (
        real, real_vector, real_matrix, boolean, positive, nonnegative, softplus_positive,
        unit_interval, circular, simplex, ordered_vector, positive_ordered_vector,
        lower_cholesky, scaled_unit_lower_cholesky, softplus_lower_cholesky, corr_cholesky,
        corr_matrix, positive_definite, dependent, l1_ball, sphere, complex,
        positive_semidefinite, positive_definite_circulant_vector,
    )
}  # fmt: skip
