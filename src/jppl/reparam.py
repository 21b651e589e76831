"""Reparameterization strategies for the :class:`jppl.handlers.reparam` handler.

A strategy is called as ``strategy(name, fn, obs) -> (new_fn, value)``. It may add auxiliary
sample sites; when it returns ``new_fn=None`` and a ``value``, the original site becomes a
deterministic site holding ``value``.

``LocScaleReparam`` turns a centered hierarchical model into a non-centered one without
rewriting it::

    model_nc = reparam(model, config={"theta": LocScaleReparam(centered=0)})
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jppl.distributions import constraints
from jppl.distributions.continuous import Cauchy, Gumbel, Laplace, Logistic, Normal, StudentT
from jppl.distributions.distribution import Distribution, ExpandedDistribution, Independent
from jppl.primitives import param, sample

__all__ = ["LocScaleReparam", "Reparam", "TransformReparam"]

# The location-scale families on the real line: ``x = loc + scale * z`` with ``z`` drawn
# from the same family at ``loc=0, scale=1`` and the same shape parameters. Membership is
# by exact type: a ``loc`` and a ``scale`` attribute do not make a family location-scale
# (``LogNormal(loc, scale)`` is ``exp`` of one). Values: the shape parameters the family
# needs, which the caller names in ``shape_params`` (as in NumPyro).
_LOC_SCALE_FAMILIES: dict[type, tuple[str, ...]] = {
    Normal: (),
    Cauchy: (),
    Laplace: (),
    Logistic: (),
    Gumbel: (),
    StudentT: ("df",),
}


class Reparam:
    """Base class of reparameterization strategies."""

    def __call__(self, name: str, fn: Distribution, obs):
        raise NotImplementedError


def _unwrap(fn: Distribution) -> tuple[Distribution, tuple[int, ...], int]:
    """Strip Expanded/Independent wrappers.

    Returns ``(base, batch_shape, event_dim)``: ``fn`` is ``base`` expanded to ``batch_shape``
    (``fn``'s batch shape plus its reinterpreted dims) with ``event_dim`` event dims.
    """
    shape = fn.batch_shape + fn.event_shape
    event_dim = len(fn.event_shape)
    while isinstance(fn, ExpandedDistribution | Independent):
        fn = fn.base_dist
    return fn, tuple(shape[: len(shape) - len(fn.event_shape)]), event_dim


def _rewrap(base: Distribution, batch_shape: tuple[int, ...], event_dim: int) -> Distribution:
    """Inverse of :func:`_unwrap`: expand ``base`` and reinterpret its extra batch dims."""
    base = base.expand(batch_shape)
    return base.to_event(event_dim - len(base.event_shape))


def _is_one(x) -> bool:
    """True for a Python or NumPy scalar equal to 1 (the 'leave it centered' shortcut)."""
    return isinstance(x, int | float | np.generic) and x == 1


class LocScaleReparam(Reparam):
    """Decenter a location-scale distribution (Normal, StudentT, Cauchy, Laplace, Logistic,
    Gumbel).

    With ``centered = c`` in [0, 1], draws ``{name}_decentered ~ D(c * loc, scale ** c)``
    and returns ``loc + scale ** (1 - c) * (x_decentered - c * loc)``, which has the original
    distribution ``D(loc, scale)``. ``c = 0`` is the fully non-centered form, ``c = 1`` leaves
    the site as it is.

    Args:
        centered: a float, or an array broadcastable to the site's batch shape (per-element
            centering), with values in [0, 1]; ``None`` learns it as a ``param`` site
            ``{name}_centered`` of the site's event shape, in [0, 1], initialized to 0.5.
        shape_params: names of the family's other parameters, passed unchanged to the
            decentered distribution (e.g. ``("df",)`` for ``StudentT``).

    A site whose distribution is not one of these families (e.g. ``LogNormal``, which has
    ``loc`` and ``scale`` but is not ``loc + scale * z``), or an observed site, raises.
    """

    def __init__(
        self,
        centered: float | jax.Array | np.ndarray | None = None,
        shape_params: Sequence[str] = (),
    ):
        if centered is not None:
            if not isinstance(centered, int | float | np.generic | np.ndarray | jax.Array):
                raise TypeError(
                    "LocScaleReparam: centered must be None, a float or an array, got "
                    f"{type(centered).__name__}."
                )
            if not isinstance(centered, jax.core.Tracer):
                c = np.asarray(centered)
                if not np.all((c >= 0) & (c <= 1)):
                    raise ValueError(
                        f"LocScaleReparam: centered must be in [0, 1] (elementwise), got {c}."
                    )
        if isinstance(shape_params, str) or not all(isinstance(p, str) for p in shape_params):
            raise TypeError(
                "LocScaleReparam: shape_params must be a tuple or list of parameter names, got "
                f"{shape_params!r}."
            )
        self.centered = centered
        self.shape_params = tuple(shape_params)

    def _check_family(self, name: str, base: Distribution) -> None:
        kind = type(base)
        family = type(base).__name__
        if kind not in _LOC_SCALE_FAMILIES:
            has = (
                " (it has `loc` and `scale` parameters, but a value is not `loc + scale * z` "
                "for a standard member `z`)"
                if hasattr(base, "loc") and hasattr(base, "scale")
                else ""
            )
            known = ", ".join(k.__name__ for k in _LOC_SCALE_FAMILIES)
            raise TypeError(
                f"LocScaleReparam at site '{name}': {family} is not a location-scale family "
                f"on the real line{has}. Supported: {known}. Reparameterize e.g. LogNormal as "
                "exp of a Normal site instead."
            )
        needed = _LOC_SCALE_FAMILIES[kind]
        missing = [p for p in needed if p not in self.shape_params]
        unknown = [p for p in self.shape_params if p not in needed]
        if missing or unknown:
            raise ValueError(
                f"LocScaleReparam at site '{name}': {family} has shape parameters {needed}, "
                f"but shape_params={self.shape_params}; pass "
                f"LocScaleReparam(..., shape_params={needed})."
            )

    def __call__(self, name: str, fn: Distribution, obs):
        if obs is not None:
            raise ValueError(f"LocScaleReparam cannot reparameterize observed site '{name}'.")
        base, batch_shape, event_dim = _unwrap(fn)
        self._check_family(name, base)
        centered = self.centered
        if _is_one(centered):
            return fn, None
        if centered is None:
            centered = param(
                f"{name}_centered",
                jnp.full(fn.event_shape, 0.5),
                constraint=constraints.unit_interval,
            )
        # A per-element `centered` must not change the site's shape.
        try:
            ok = jnp.broadcast_shapes(batch_shape, jnp.shape(centered)) == batch_shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"LocScaleReparam at site '{name}': centered of shape {jnp.shape(centered)} "
                f"does not broadcast to the site's shape {batch_shape}."
            )
        loc, scale = base.loc, base.scale
        others = {k: getattr(base, k) for k in self.shape_params}
        decentered = type(base)(loc=centered * loc, scale=scale**centered, **others)
        x = sample(f"{name}_decentered", _rewrap(decentered, batch_shape, event_dim))
        return None, loc + scale ** (1 - centered) * (x - centered * loc)


class TransformReparam(Reparam):
    """Sample a ``TransformedDistribution``'s base as ``{name}_base`` and apply its transforms."""

    def __call__(self, name: str, fn: Distribution, obs):
        from jppl.distributions.transformed import TransformedDistribution

        if obs is not None:
            raise ValueError(f"TransformReparam cannot reparameterize observed site '{name}'.")
        base, batch_shape, event_dim = _unwrap(fn)
        if not isinstance(base, TransformedDistribution):
            raise TypeError(
                f"TransformReparam at site '{name}': expected a TransformedDistribution, got "
                f"{type(base).__name__}."
            )
        base_dist = base.base_dist
        if base_dist.event_shape != base.event_shape:
            raise ValueError(
                f"TransformReparam at site '{name}': transforms that change the event shape "
                f"({base_dist.event_shape} -> {base.event_shape}) are not supported."
            )
        x = sample(f"{name}_base", _rewrap(base_dist, batch_shape, event_dim))
        for t in base.transforms:
            x = t(x)
        return None, x
