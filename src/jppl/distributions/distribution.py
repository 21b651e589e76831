"""The ``Distribution`` base class and the generic wrappers built on it.

Shapes follow the usual PPL convention: a draw has shape
``sample_shape + batch_shape + event_shape`` and ``log_prob`` of such a value has shape
``sample_shape + batch_shape``. Every distribution is a JAX pytree (its array parameters are
the leaves), so it can be passed through ``jit`` and ``vmap``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jppl.distributions import constraints
from jppl.distributions.util import (
    PyTreeObject,
    is_concrete,
    lazy_broadcast_shape,
    sum_rightmost,
    validate_sample_shape,
)
from jppl.stack import inside_model

__all__ = [
    "Delta",
    "Distribution",
    "ExpandedDistribution",
    "ImproperUniform",
    "Independent",
    "MaskedDistribution",
    "Unit",
    "enable_validation",
    "validation_enabled",
]

_VALIDATION_ENABLED = False


def enable_validation(is_validate: bool = True) -> None:
    """Turn argument and support validation on (or off) for every distribution made afterwards.

    With validation on, parameters outside their constraint and observations outside the
    support raise ``ValueError``. Checks run only on concrete values (outside ``jit``).
    """
    global _VALIDATION_ENABLED
    _VALIDATION_ENABLED = bool(is_validate)


def validation_enabled() -> bool:
    return _VALIDATION_ENABLED


def _full_shape(child) -> tuple[int, ...] | None:
    """An array's shape, a distribution's ``batch_shape + event_shape``, else ``None``.

    ``child`` is a pytree child of a distribution, or whatever JAX put in its place when it
    rebuilt the tree (a tracer, a ``ShapeDtypeStruct``, or a sentinel object with no shape).
    """
    if isinstance(child, Distribution):
        return child.batch_shape + child.event_shape
    shape = getattr(child, "shape", None)
    if isinstance(shape, tuple) and all(isinstance(s, int) for s in shape):
        return shape
    return None


def _trailing_ndim(child, batch_shape: tuple[int, ...]) -> int | None:
    """How many dims ``child`` has after ``batch_shape``, if its shape starts with it.

    Only such children ("batch-aligned": parameters stored broadcast to the batch shape)
    determine the batch shape when a tree is rebuilt with differently shaped leaves.
    """
    shape = _full_shape(child)
    n = len(batch_shape)
    if shape is None or len(shape) < n or shape[:n] != batch_shape:
        return None
    return len(shape) - n


def _rebuilt_batch_shape(children, trailing_ndims) -> tuple[int, ...] | None:
    """The batch shape implied by the batch-aligned children of a rebuilt tree.

    ``None`` when no child is batch-aligned, a child has no shape (JAX rebuilds trees with
    placeholder leaves too), or the children disagree; the stored batch shape is kept then.
    """
    found = None
    for child, trailing in zip(children, trailing_ndims, strict=True):
        if trailing is None:
            continue
        shape = _full_shape(child)
        if shape is None or len(shape) < trailing:
            return None
        batch = shape[: len(shape) - trailing]
        if found is not None and batch != found:
            return None
        found = batch
    return found


class Distribution(PyTreeObject):
    """Base class of all distributions.

    Subclasses set ``arg_constraints`` (parameter name -> constraint), ``support``, and
    ``has_rsample``; implement ``sample(key, sample_shape)`` and ``log_prob(value)``; and call
    ``super().__init__(batch_shape, event_shape, validate_args=validate_args)`` after storing
    their parameters as arrays.

    As a pytree, the batch shape is recomputed from the parameters whenever JAX rebuilds the
    distribution with leaves of other shapes: inside ``jax.vmap`` over a batched distribution
    the mapped axis is gone from ``batch_shape``, and a distribution returned from ``vmap`` (or
    built by ``jax.tree.map``) gains the stacked axis. Only parameters stored broadcast to the
    batch shape (array shape ``batch_shape + ...``) are read for this.
    """

    arg_constraints: dict[str, constraints.Constraint] = {}
    support: constraints.Constraint | None = None
    has_rsample: bool = False
    has_enumerate_support: bool = False
    pytree_aux_fields: tuple[str, ...] = ()

    def __init__(
        self,
        batch_shape: Sequence[int] = (),
        event_shape: Sequence[int] = (),
        *,
        validate_args: bool | None = None,
    ):
        self._batch_shape = tuple(int(s) for s in batch_shape)
        self._event_shape = tuple(int(s) for s in event_shape)
        if validate_args is None:
            validate_args = _VALIDATION_ENABLED
        self._validate_args = bool(validate_args)
        self._invalid_args_message: str | None = None
        if self._validate_args:
            self._check_args()

    # -- pytree -----------------------------------------------------------------------------
    def _tree_flatten(self):
        children, (keys, aux) = super()._tree_flatten()
        trailing = tuple(_trailing_ndim(c, self._batch_shape) for c in children)
        return children, (keys, aux, trailing)

    @classmethod
    def _tree_unflatten(cls, aux_data, children):
        keys, aux, trailing = aux_data
        obj = super()._tree_unflatten((keys, aux), children)
        batch_shape = _rebuilt_batch_shape(children, trailing)
        if batch_shape is not None:
            obj.__dict__["_batch_shape"] = batch_shape
        return obj

    # -- validation -------------------------------------------------------------------------
    def _check_args(self) -> None:
        """Check each parameter against ``arg_constraints``.

        Inside a model, the error is deferred to the ``sample`` site that uses this
        distribution, so the message can name the site; elsewhere it is raised at once.
        """
        for name, constraint in self.arg_constraints.items():
            if name not in self.__dict__ or constraint is constraints.dependent:
                continue
            value = self.__dict__[name]
            if value is None or not is_concrete(value):
                continue
            ok = np.asarray(constraint(jnp.asarray(value)))
            if not np.all(ok):
                bad = (
                    np.asarray(value)[~np.broadcast_to(ok, np.shape(value))]
                    if np.ndim(value) == np.ndim(ok)
                    else np.asarray(value)
                )
                self._report_invalid_args(
                    f"{type(self).__name__}: parameter `{name}` must satisfy the constraint "
                    f"{constraint!r}, but got invalid value(s) {np.ravel(bad)[:5]}"
                )
                return

    def _report_invalid_args(self, msg: str) -> None:
        """Raise ``ValueError(msg)``; inside a model, keep ``msg`` for the ``sample`` site.

        The site raises it with its own name prepended. Subclasses that check more than
        ``arg_constraints`` (e.g. ``low < high``) report through this too.
        """
        if inside_model():
            self._invalid_args_message = msg
            return
        raise ValueError(msg)

    def validate_sample(self, value):
        """Boolean array of shape ``sample_shape + batch_shape``: is ``value`` in the support."""
        support = self.support
        mask = support(value)
        event_dim = len(self.event_shape) - support.event_dim
        if event_dim > 0:
            mask = jnp.all(mask, axis=tuple(range(-event_dim, 0)))
        return mask

    # -- shapes -----------------------------------------------------------------------------
    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self._batch_shape

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self._event_shape

    @property
    def event_dim(self) -> int:
        return len(self._event_shape)

    @property
    def is_discrete(self) -> bool:
        return bool(self.support is not None and self.support.is_discrete)

    def shape(self, sample_shape: Sequence[int] = ()) -> tuple[int, ...]:
        """``sample_shape + batch_shape + event_shape``."""
        return tuple(sample_shape) + self.batch_shape + self.event_shape

    # -- sampling and density ---------------------------------------------------------------
    def sample(self, key, sample_shape: Sequence[int] = ()):
        """Draw an array of shape ``sample_shape + batch_shape + event_shape``."""
        raise NotImplementedError

    def rsample(self, key, sample_shape: Sequence[int] = ()):
        if not self.has_rsample:
            raise NotImplementedError(f"{type(self).__name__} has no reparameterized sampler.")
        return self.sample(key, sample_shape)

    def sample_with_intermediates(self, key, sample_shape: Sequence[int] = ()):
        """``(sample, intermediates)``; intermediates are empty except for transformed ones."""
        return self.sample(key, sample_shape), []

    def log_prob(self, value):
        """Log density of ``value``; returns shape ``sample_shape + batch_shape``."""
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        key = kwargs.pop("rng_key")
        if kwargs.pop("sample_intermediates", False):
            return self.sample_with_intermediates(key, *args, **kwargs)
        return self.sample(key, *args, **kwargs)

    @property
    def mean(self):
        raise NotImplementedError(f"{type(self).__name__} does not implement `mean`.")

    @property
    def variance(self):
        raise NotImplementedError(f"{type(self).__name__} does not implement `variance`.")

    def entropy(self):
        raise NotImplementedError(f"{type(self).__name__} does not implement `entropy`.")

    def cdf(self, value):
        raise NotImplementedError(f"{type(self).__name__} does not implement `cdf`.")

    def icdf(self, q):
        raise NotImplementedError(f"{type(self).__name__} does not implement `icdf`.")

    def enumerate_support(self, expand: bool = True):
        raise NotImplementedError(f"{type(self).__name__} does not enumerate its support.")

    # -- wrappers ---------------------------------------------------------------------------
    def expand(self, batch_shape: Sequence[int]) -> Distribution:
        """Broadcast the batch shape to ``batch_shape`` (new draws are independent)."""
        batch_shape = tuple(batch_shape)
        if batch_shape == self.batch_shape:
            return self
        return ExpandedDistribution(self, batch_shape)

    def expand_by(self, sample_shape: Sequence[int]) -> Distribution:
        """Prepend ``sample_shape`` to the batch shape."""
        return self.expand(tuple(sample_shape) + self.batch_shape)

    def to_event(self, reinterpreted_batch_ndims: int | None = None) -> Distribution:
        """Treat the rightmost ``reinterpreted_batch_ndims`` batch dims as event dims.

        ``None`` means all of them.
        """
        if reinterpreted_batch_ndims is None:
            reinterpreted_batch_ndims = len(self.batch_shape)
        if reinterpreted_batch_ndims == 0:
            return self
        return Independent(self, reinterpreted_batch_ndims)

    def mask(self, mask) -> Distribution:
        """Zero the log density where ``mask`` (broadcastable to ``batch_shape``) is False."""
        if not isinstance(mask, bool | np.bool_):
            mask_arr = jnp.asarray(mask)
            if mask_arr.dtype != jnp.bool_:
                raise TypeError(f"mask must be a boolean array, got dtype {mask_arr.dtype}")
        elif mask:
            return self
        return MaskedDistribution(self, mask)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} batch_shape={self.batch_shape} event_shape={self.event_shape}>"
        )


def _interstitial_axes(batch_shape, base_batch_shape):
    """Positions (in ``batch_shape``) where a size-1 base dim is broadcast to size > 1."""
    offset = len(batch_shape) - len(base_batch_shape)
    return [
        offset + i
        for i, (b, s) in enumerate(zip(base_batch_shape, batch_shape[offset:], strict=True))
        if b == 1 and s != 1
    ]


class _Wrapper(Distribution):
    """A distribution built around ``base_dist``; by default it keeps the base's support, its
    mean and variance, and whether it has reparameterized samples."""

    base_dist: Distribution

    @property
    def has_rsample(self):  # type: ignore[override]
        return self.base_dist.has_rsample

    @property
    def support(self):  # type: ignore[override]
        return self.base_dist.support

    @property
    def mean(self):
        return self.base_dist.mean

    @property
    def variance(self):
        return self.base_dist.variance


class ExpandedDistribution(_Wrapper):
    """``base_dist`` with its batch shape broadcast to ``batch_shape``; draws are independent."""

    def __init__(self, base_dist: Distribution, batch_shape: Sequence[int] = ()):
        batch_shape = tuple(batch_shape)
        if isinstance(base_dist, ExpandedDistribution):
            base_dist = base_dist.base_dist
        base_batch = base_dist.batch_shape
        if len(base_batch) > len(batch_shape) or any(
            b not in (1, s) for b, s in zip(base_batch[::-1], batch_shape[::-1], strict=False)
        ):
            raise ValueError(
                f"Cannot expand a distribution with batch shape {base_batch} to {batch_shape}."
            )
        self.base_dist = base_dist
        super().__init__(batch_shape, base_dist.event_shape, validate_args=False)

    @property
    def has_enumerate_support(self):  # type: ignore[override]
        return self.base_dist.has_enumerate_support

    def sample_with_intermediates(self, key, sample_shape=()):
        sample_shape = validate_sample_shape(sample_shape)
        batch_shape, base_batch = self.batch_shape, self.base_dist.batch_shape
        lead = batch_shape[: len(batch_shape) - len(base_batch)]
        inter = _interstitial_axes(batch_shape, base_batch)
        inter_sizes = tuple(batch_shape[i] for i in inter)
        x, intermediates = self.base_dist.sample_with_intermediates(
            key, sample_shape + lead + inter_sizes
        )
        # x: sample_shape + lead + inter_sizes + base_batch + event_shape. Swap each
        # interstitial axis with the size-1 base axis it broadcasts, then drop the size-1 axes.
        start = len(sample_shape) + len(lead)
        for k, pos in enumerate(inter):
            x = jnp.swapaxes(x, start + k, start + len(inter) + (pos - len(lead)))
        if inter:
            x = jnp.squeeze(x, axis=tuple(range(start, start + len(inter))))
        return jnp.broadcast_to(x, self.shape(sample_shape)), intermediates

    def sample(self, key, sample_shape=()):
        return self.sample_with_intermediates(key, sample_shape)[0]

    def log_prob(self, value):
        lp = self.base_dist.log_prob(value)
        shape = jnp.shape(value)[: jnp.ndim(value) - self.event_dim]
        return jnp.broadcast_to(lp, lazy_broadcast_shape(shape, self.batch_shape))

    def enumerate_support(self, expand=True):
        values = self.base_dist.enumerate_support(expand=False)
        # (n,) + (1,) * base batch ndim + event_shape -> (n,) + (1,) * batch ndim + event_shape
        values = jnp.reshape(
            values, values.shape[:1] + (1,) * len(self.batch_shape) + self.event_shape
        )
        if expand:
            values = jnp.broadcast_to(values, values.shape[:1] + self.shape())
        return values

    @property
    def mean(self):
        return jnp.broadcast_to(self.base_dist.mean, self.shape())

    @property
    def variance(self):
        return jnp.broadcast_to(self.base_dist.variance, self.shape())

    def entropy(self):
        return jnp.broadcast_to(self.base_dist.entropy(), self.batch_shape)


class Independent(_Wrapper):
    """Reinterpret the rightmost ``reinterpreted_batch_ndims`` batch dims as event dims."""

    def __init__(
        self,
        base_dist: Distribution,
        reinterpreted_batch_ndims: int,
        *,
        validate_args: bool | None = None,
    ):
        n = int(reinterpreted_batch_ndims)
        if n > len(base_dist.batch_shape):
            raise ValueError(
                f"Independent: reinterpreted_batch_ndims={n} exceeds the base distribution's "
                f"batch rank {len(base_dist.batch_shape)} (batch_shape={base_dist.batch_shape})."
            )
        shape = base_dist.batch_shape + base_dist.event_shape
        event_dim = n + len(base_dist.event_shape)
        self.base_dist = base_dist
        self.reinterpreted_batch_ndims = n
        super().__init__(
            shape[: len(shape) - event_dim], shape[len(shape) - event_dim :], validate_args=False
        )

    @property
    def support(self):  # type: ignore[override]
        return constraints.independent(self.base_dist.support, self.reinterpreted_batch_ndims)

    def sample_with_intermediates(self, key, sample_shape=()):
        return self.base_dist.sample_with_intermediates(key, sample_shape)

    def sample(self, key, sample_shape=()):
        return self.base_dist.sample(key, sample_shape)

    def log_prob(self, value):
        return sum_rightmost(self.base_dist.log_prob(value), self.reinterpreted_batch_ndims)

    def entropy(self):
        return sum_rightmost(self.base_dist.entropy(), self.reinterpreted_batch_ndims)

    def expand(self, batch_shape):
        batch_shape = tuple(batch_shape)
        if batch_shape == self.batch_shape:
            return self
        n = self.reinterpreted_batch_ndims
        base_shape = batch_shape + self.event_shape[:n]
        return Independent(self.base_dist.expand(base_shape), n)


class MaskedDistribution(_Wrapper):
    """``base_dist`` whose log density is zero where ``mask`` is False.

    ``mask``: a bool, or a bool array broadcastable to ``base_dist.batch_shape``.
    """

    def __init__(self, base_dist: Distribution, mask):
        if isinstance(mask, bool | np.bool_):
            self._mask = bool(mask)
            batch_shape = base_dist.batch_shape
        else:
            self._mask = jnp.asarray(mask)
            batch_shape = lazy_broadcast_shape(jnp.shape(self._mask), base_dist.batch_shape)
        self.base_dist = base_dist
        super().__init__(batch_shape, base_dist.event_shape, validate_args=False)

    @property
    def has_enumerate_support(self):  # type: ignore[override]
        return self.base_dist.has_enumerate_support

    def enumerate_support(self, expand=True):
        return self.base_dist.expand(self.batch_shape).enumerate_support(expand=expand)

    def sample_with_intermediates(self, key, sample_shape=()):
        return self.base_dist.expand(self.batch_shape).sample_with_intermediates(key, sample_shape)

    def sample(self, key, sample_shape=()):
        return self.sample_with_intermediates(key, sample_shape)[0]

    def log_prob(self, value):
        shape = lazy_broadcast_shape(
            jnp.shape(value)[: jnp.ndim(value) - self.event_dim], self.batch_shape
        )
        if self._mask is False:
            return jnp.zeros(shape)
        lp = self.base_dist.log_prob(value)
        if self._mask is True:
            return jnp.broadcast_to(lp, shape)
        return jnp.where(self._mask, lp, jnp.zeros((), dtype=jnp.result_type(lp)))


class Delta(Distribution):
    """A point mass at ``v``, with an optional ``log_density`` added to its log probability.

    ``v``: ``batch_shape + event_shape``; ``event_dim`` rightmost dims of ``v`` are the event.
    """

    has_rsample = True
    arg_constraints = {"log_density": constraints.real}

    def __init__(self, v=0.0, log_density=0.0, event_dim: int = 0, *, validate_args=None):
        v = jnp.asarray(v)
        if event_dim > jnp.ndim(v):
            raise ValueError(f"Delta: event_dim={event_dim} exceeds the rank of v {jnp.shape(v)}")
        batch_dim = jnp.ndim(v) - event_dim
        batch_shape, event_shape = jnp.shape(v)[:batch_dim], jnp.shape(v)[batch_dim:]
        self.v = v
        self.log_density = jnp.broadcast_to(jnp.asarray(log_density, dtype=float), batch_shape)
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    @property
    def support(self):  # type: ignore[override]
        return constraints.independent(constraints.real, self.event_dim)

    def sample(self, key, sample_shape=()):
        return jnp.broadcast_to(self.v, self.shape(validate_sample_shape(sample_shape)))

    def log_prob(self, value):
        log_prob = jnp.log(value == self.v)
        return sum_rightmost(log_prob, self.event_dim) + self.log_density

    @property
    def mean(self):
        return self.v

    @property
    def variance(self):
        return jnp.zeros(self.shape())

    def entropy(self):
        return jnp.zeros(self.batch_shape)


class Unit(Distribution):
    """The trivial distribution over an empty value, carrying ``log_factor``; backs ``factor``.

    Its value has shape ``batch_shape + (0,)`` and its log probability is ``log_factor``.
    """

    arg_constraints = {"log_factor": constraints.real}
    support = constraints.real

    def __init__(self, log_factor, *, validate_args=None):
        self.log_factor = jnp.asarray(log_factor)
        super().__init__(jnp.shape(self.log_factor), (0,), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        return jnp.empty(self.shape(validate_sample_shape(sample_shape)))

    def log_prob(self, value):
        shape = lazy_broadcast_shape(jnp.shape(value)[:-1], self.batch_shape)
        return jnp.broadcast_to(self.log_factor, shape)


class ImproperUniform(Distribution):
    """A flat (improper) density over ``support``; ``log_prob`` is zero everywhere.

    It cannot be sampled from the prior in a meaningful way: ``sample`` returns draws that are
    uniform on (-2, 2) in the unconstrained space, which is what initialization needs.
    """

    def __init__(
        self,
        support: constraints.Constraint,
        batch_shape: Sequence[int],
        event_shape: Sequence[int],
        *,
        validate_args=None,
    ):
        self._support = support
        event_shape = tuple(event_shape)
        if len(event_shape) < support.event_dim:
            raise ValueError(
                f"ImproperUniform: event_shape {event_shape} has fewer dims than the support "
                f"{support!r} needs ({support.event_dim})."
            )
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    @property
    def support(self):  # type: ignore[override]
        return constraints.independent(self._support, self.event_dim - self._support.event_dim)

    def log_prob(self, value):
        shape = jnp.shape(value)[: jnp.ndim(value) - self.event_dim]
        return jnp.zeros(lazy_broadcast_shape(shape, self.batch_shape))

    def sample(self, key, sample_shape=()):
        from jppl.distributions.transforms import biject_to

        transform = biject_to(self.support)
        shape = transform.inverse_shape(self.shape(validate_sample_shape(sample_shape)))
        return transform(jax.random.uniform(key, shape, minval=-2.0, maxval=2.0))
