"""Reparameterization strategies for the :class:`jppl.handlers.reparam` handler.

A strategy is called as ``strategy(name, fn, obs) -> (new_fn, value)``. It may add auxiliary
sample sites; when it returns ``new_fn=None`` and a ``value``, the original site becomes a
deterministic site holding ``value``.

``LocScaleReparam`` turns a centered hierarchical model into a non-centered one without
rewriting it::

    model_nc = reparam(model, config={"theta": LocScaleReparam(centered=0)})
"""

from __future__ import annotations

import jax.numpy as jnp

from jppl.distributions import constraints
from jppl.distributions.distribution import Distribution, ExpandedDistribution, Independent
from jppl.primitives import param, sample

__all__ = ["LocScaleReparam", "Reparam", "TransformReparam"]


class Reparam:
    """Base class of reparameterization strategies."""

    def __call__(self, name: str, fn: Distribution, obs):
        raise NotImplementedError


def _unwrap(fn: Distribution):
    """Strip Expanded/Independent wrappers; return the base and a function that rewraps."""
    wrappers = []
    while isinstance(fn, ExpandedDistribution | Independent):
        if isinstance(fn, ExpandedDistribution):
            wrappers.append(("expand", fn.batch_shape))
        else:
            wrappers.append(("to_event", fn.reinterpreted_batch_ndims))
        fn = fn.base_dist

    def rewrap(base: Distribution) -> Distribution:
        for kind, arg in reversed(wrappers):
            base = base.expand(arg) if kind == "expand" else base.to_event(arg)
        return base

    return fn, rewrap


class LocScaleReparam(Reparam):
    """Decenter a location-scale distribution (Normal, StudentT, Cauchy, Laplace, ...).

    With ``centered = c`` in [0, 1], draws ``x_decentered ~ D(c * loc, scale ** c)`` and
    returns ``loc + scale ** (1 - c) * (x_decentered - c * loc)``, which has the original
    distribution. ``c = 0`` is the fully non-centered form; ``c = None`` learns ``c`` as a
    ``param`` site ``{name}_centered``. Other parameters of the family (e.g. ``df``) are kept.
    """

    def __init__(self, centered: float | None = None):
        if centered is not None and not (0.0 <= float(centered) <= 1.0):
            raise ValueError(f"LocScaleReparam: centered must be in [0, 1], got {centered}")
        self.centered = centered

    def __call__(self, name: str, fn: Distribution, obs):
        if obs is not None:
            raise ValueError(f"LocScaleReparam cannot reparameterize observed site '{name}'.")
        base, rewrap = _unwrap(fn)
        if not (hasattr(base, "loc") and hasattr(base, "scale")):
            raise TypeError(
                f"LocScaleReparam at site '{name}': {type(base).__name__} is not a "
                "location-scale family (it has no `loc` and `scale`)."
            )
        if self.centered == 1:
            return fn, None
        centered = self.centered
        if centered is None:
            centered = param(
                f"{name}_centered",
                jnp.full(jnp.shape(base.loc), 0.5),
                constraint=constraints.unit_interval,
            )
        loc, scale = base.loc, base.scale
        others = {
            k: getattr(base, k)
            for k in base.arg_constraints
            if k not in ("loc", "scale") and k in vars(base)
        }
        decentered = type(base)(loc=centered * loc, scale=scale**centered, **others)
        x = sample(f"{name}_decentered", rewrap(decentered))
        return None, loc + scale ** (1 - centered) * (x - centered * loc)


class TransformReparam(Reparam):
    """Sample a ``TransformedDistribution``'s base as ``{name}_base`` and apply its transforms."""

    def __call__(self, name: str, fn: Distribution, obs):
        from jppl.distributions.transformed import TransformedDistribution

        if obs is not None:
            raise ValueError(f"TransformReparam cannot reparameterize observed site '{name}'.")
        base, rewrap = _unwrap(fn)
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
        x = sample(f"{name}_base", rewrap(base_dist))
        for t in base.transforms:
            x = t(x)
        return None, x
