"""Initialization strategies: where inference starts for each latent sample site.

A strategy is a function ``strategy(site) -> value or None`` used as the ``substitute_fn``
of :class:`~jppl.handlers.substitute` around a *seeded* model::

    substitute(seed(model, rng_key), substitute_fn=init_to_median(num_samples=5))

For a latent, continuous sample site it returns a constrained value (an array of shape
``sample_shape + batch_shape + event_shape`` in the site's support); for any other site it
returns ``None`` (the site is left alone). Called without a site, each strategy returns itself
with its options bound, so both ``init_strategy=init_to_median`` and
``init_strategy=init_to_median(num_samples=5)`` work.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from jppl.primitives import Message

__all__ = [
    "init_to_feasible",
    "init_to_mean",
    "init_to_median",
    "init_to_sample",
    "init_to_uniform",
    "init_to_value",
]


def _is_latent_continuous(site: Message) -> bool:
    return site["type"] == "sample" and not site["is_observed"] and not site["fn"].is_discrete


def _site_key(site: Message):
    key = site["kwargs"].get("rng_key")
    if key is None:
        raise ValueError(
            f"Initializing site '{site['name']}' needs a PRNG key: use the strategy inside "
            "substitute(seed(model, rng_key), substitute_fn=strategy)."
        )
    return key


def _site_shape(site: Message) -> tuple[int, ...]:
    return tuple(site["kwargs"].get("sample_shape") or ()) + site["fn"].shape()


def init_to_uniform(site: Message | None = None, radius: float = 2.0):
    """Draw uniformly from ``(-radius, radius)`` in the unconstrained space, then map back.

    Returns:
        the constrained value for a latent continuous site, else ``None``.
    """
    if site is None:
        return partial(init_to_uniform, radius=radius)
    if not _is_latent_continuous(site):
        return None
    if site["value"] is not None:
        return site["value"]
    from jppl.distributions.transforms import biject_to

    transform = biject_to(site["fn"].support)
    shape = transform.inverse_shape(_site_shape(site))
    key = _site_key(site)
    unconstrained = jax.random.uniform(key, shape, minval=-radius, maxval=radius)
    return transform(unconstrained)


def init_to_feasible(site: Message | None = None):
    """The point that ``0`` in the unconstrained space maps to (deterministic)."""
    if site is None:
        return init_to_feasible
    return init_to_uniform(site, radius=0.0)


def init_to_median(site: Message | None = None, num_samples: int = 15):
    """The median of ``num_samples`` draws from the site's prior.

    The median is elementwise in the unconstrained space (for scalar supports that is the
    elementwise median of the draws), so the value always lies in the support. Falls back
    to :func:`init_to_uniform` for distributions that cannot be sampled.
    """
    if site is None:
        return partial(init_to_median, num_samples=num_samples)
    if not _is_latent_continuous(site):
        return None
    if site["value"] is not None:
        return site["value"]
    sample_shape = tuple(site["kwargs"].get("sample_shape") or ())
    key = _site_key(site)
    try:
        draws = site["fn"](rng_key=key, sample_shape=(num_samples,) + sample_shape)
    except NotImplementedError:
        return init_to_uniform(site)
    # The median is taken in the unconstrained space: for scalar supports the maps are
    # monotone, so this is the usual median; for e.g. a simplex it stays in the support.
    from jppl.distributions.transforms import biject_to

    transform = biject_to(site["fn"].support)
    return transform(jnp.median(transform.inv(draws), axis=0))


def init_to_sample(site: Message | None = None):
    """One draw from the site's prior."""
    if site is None:
        return init_to_sample
    if not _is_latent_continuous(site):
        return None
    if site["value"] is not None:
        return site["value"]
    sample_shape = tuple(site["kwargs"].get("sample_shape") or ())
    try:
        return site["fn"](rng_key=_site_key(site), sample_shape=sample_shape)
    except NotImplementedError:
        return init_to_uniform(site)


def init_to_mean(site: Message | None = None):
    """The prior mean of the site; where it is not finite (or not known), the prior median."""
    if site is None:
        return init_to_mean
    if not _is_latent_continuous(site):
        return None
    if site["value"] is not None:
        return site["value"]
    try:
        mean = jnp.broadcast_to(site["fn"].mean, _site_shape(site))
    except NotImplementedError:
        return init_to_median(site)
    finite = jnp.isfinite(mean)
    if not isinstance(finite, jax.core.Tracer) and bool(jnp.all(finite)):
        return mean
    return jnp.where(finite, mean, init_to_median(site))


def init_to_value(site: Message | None = None, values: dict[str, Any] | None = None):
    """The value given in ``values`` (a dict of constrained values) or else uniform init."""
    if site is None:
        return partial(init_to_value, values=values)
    values = {} if values is None else values
    if not (site["type"] == "sample" and not site["is_observed"]):
        return None
    if site["name"] in values:
        value = jnp.asarray(values[site["name"]])
        return jnp.broadcast_to(value, _site_shape(site))
    return init_to_uniform(site)
