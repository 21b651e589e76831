"""Discrete latent sites: enumerating them for gradient-based inference, and drawing them back.

* :func:`~jppl.model.density.enumerate_discrete` (in :mod:`jppl.model.density`, re-exported
  here): what ``MCMC`` with NUTS/HMC and ``initialize_model`` do to a model with discrete
  latent sites (as NumPyro does): every such site is enumerated (``config_enumerate``), so the
  potential is the exact marginal density of the continuous sites.
* :func:`infer_discrete`: the enumerated sites drawn from their posterior given everything
  else (``temperature=1``, forward filtering and backward sampling) or set to their joint MAP
  (``temperature=0``, Viterbi), by backtracking through the eliminations of
  :func:`jppl.model.enum.contract`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jppl.enumerate import enum
from jppl.handlers import block, seed, substitute, trace
from jppl.model.density import compute_log_probs, enumerate_discrete, guess_max_plate_nesting
from jppl.model.enum import (
    Elimination,
    contract,
    enumerated_sites,
    sample_eliminations,
    trace_factors,
)

__all__ = ["enumerate_discrete", "guess_max_plate_nesting", "infer_discrete", "sample_posterior"]


def _support_values(site: dict[str, Any], index: jax.Array, plate_names: tuple[str, ...]):
    """The values of an enumerated site at ``index`` (axes ``plate_names``), laid out with
    each plate at its dim, as an ordinary draw of the site would be."""
    fn = site["fn"]
    event_shape = tuple(fn.event_shape)
    support = jnp.reshape(site["value"], (-1,) + event_shape)
    values = support[index]
    if not plate_names:
        return values
    dims = {frame.name: frame.dim for frame in site["cond_indep_stack"]}
    sizes = dict(zip(plate_names, values.shape, strict=False))
    ordered = sorted(plate_names, key=lambda name: dims[name])  # leftmost dim first
    event_axes = tuple(range(len(plate_names), values.ndim))
    values = jnp.transpose(values, tuple(plate_names.index(n) for n in ordered) + event_axes)
    rank = -dims[ordered[0]]
    shape = [1] * rank
    for name in ordered:
        shape[rank + dims[name]] = sizes[name]
    return jnp.reshape(values, tuple(shape) + event_shape)


def sample_posterior(
    model: Callable,
    first_available_dim: int | None,
    temperature: int,
    rng_key: jax.Array | None,
    model_args: tuple,
    model_kwargs: dict,
) -> dict[str, Any]:
    """Values of every sample site of one run of ``model``, with its enumerated sites drawn
    from their posterior (``temperature=1``) or set to the joint MAP (``temperature=0``)."""
    if temperature not in (0, 1):
        raise ValueError(f"infer_discrete: temperature must be 0 or 1, got {temperature!r}")
    if rng_key is None and temperature == 1:
        raise ValueError("infer_discrete: temperature=1 draws, so it needs rng_key=.")
    key_run, key_draw = (None, None) if rng_key is None else jax.random.split(rng_key)
    if first_available_dim is None:
        with block():
            first_trace = trace(seed(model, rng_seed=0 if key_run is None else key_run)).get_trace(
                *model_args, **model_kwargs
            )
        first_available_dim = -guess_max_plate_nesting(first_trace) - 1
    run = enum(model, first_available_dim=first_available_dim)
    if key_run is not None:
        run = seed(run, rng_seed=key_run)
    with block():
        model_trace = trace(run).get_trace(*model_args, **model_kwargs)
    sites = enumerated_sites(model_trace)
    values = {
        name: site["value"]
        for name, site in model_trace.items()
        if site["type"] == "sample" and name not in sites
    }
    if not sites:
        return values
    scanned = [name for name, site in sites.items() if "_scan_time" in site["infer"]]
    if scanned:
        raise NotImplementedError(
            f"infer_discrete: site '{scanned[0]}' is enumerated inside a scan; drawing the "
            "sites of a scan is not supported (as in NumPyro). Write the chain as a Python "
            "loop with markov() to draw its states."
        )
    records: list[Elimination] = []
    factors, homes = trace_factors(model_trace, compute_log_probs(model_trace))
    contract(factors, homes, records=records, maximize=temperature == 0)
    draws = sample_eliminations(records, key_draw, temperature)
    for name, site in sites.items():
        index, plate_names = draws[name]
        values[name] = _support_values(site, index, plate_names)
    return values


def infer_discrete(
    fn: Callable | None = None,
    first_available_dim: int | None = None,
    temperature: int = 1,
    rng_key: jax.Array | None = None,
) -> Callable:
    """Run ``fn`` with its enumerated sites drawn from their posterior given the rest.

    The sites marked ``infer={"enumerate": "parallel"}`` (e.g. by ``config_enumerate``) are
    drawn jointly from their posterior given the observations and the other sites' values
    (``temperature=1``: forward filtering, backward sampling) or set to their joint MAP
    (``temperature=0``: Viterbi). The other latent sites keep the values of the run (supply
    them with ``substitute`` / ``condition``, e.g. posterior draws of the continuous sites).

    Args:
        fn: the model (or use ``infer_discrete(...)`` as a decorator).
        first_available_dim: ``-(max_plate_nesting + 1)``; guessed from a run when ``None``.
        temperature: 1 (sample) or 0 (MAP).
        rng_key: PRNG key; needed for ``temperature=1`` and for latent sites that are not
            supplied.

    Returns:
        a callable with ``fn``'s signature and return value.
    """
    if temperature not in (0, 1):
        raise ValueError(f"infer_discrete: temperature must be 0 or 1, got {temperature!r}")
    if temperature == 1 and rng_key is None:
        raise ValueError("infer_discrete: temperature=1 draws, so it needs rng_key=.")
    if fn is None:
        return functools.partial(
            infer_discrete,
            first_available_dim=first_available_dim,
            temperature=temperature,
            rng_key=rng_key,
        )

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        values = sample_posterior(fn, first_available_dim, temperature, rng_key, args, kwargs)
        return substitute(fn, data=values)(*args, **kwargs)

    return wrapped
