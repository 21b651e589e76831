"""Neural networks in models: ``stax``-style networks, and Flax modules (NumPyro's
``numpyro.module`` and ``numpyro.contrib.module``).

A ``stax`` network is a pair ``(init_fn, apply_fn)`` with ``init_fn(rng_key, input_shape) ->
(output_shape, params)`` and ``apply_fn(params, inputs, **kwargs) -> outputs`` (e.g.
``jax.example_libraries.stax.serial(Dense(8), Relu, Dense(1))``).

* :func:`module` registers the network's parameters as **one** ``param`` site
  ``f"{name}$params"`` (their pytree): an optimizer such as ``SVI`` learns them.
* :func:`random_module` makes each parameter leaf a latent ``sample`` site
  ``f"{name}/{path}"`` drawn from a prior (through :class:`jppl.handlers.lift`): a Bayesian
  network.

``flax_module`` and ``random_flax_module`` are :mod:`jppl.nn`'s, imported from here on first
use, so importing this module does not import Flax.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from jppl.distributions.distribution import Distribution
from jppl.handlers import lift
from jppl.primitives import lazy_param, param, prng_key

if TYPE_CHECKING:  # loaded on first use by __getattr__ below (Flax is optional)
    from jppl.nn.module import flax_module, random_flax_module

__all__ = ["flax_module", "module", "random_flax_module", "random_module"]

_FLAX_NAMES = ("flax_module", "random_flax_module")


def __getattr__(name: str) -> Any:
    # Flax is optional and heavy: load jppl.nn only when its functions are asked for.
    if name in _FLAX_NAMES:
        from jppl.nn import module as nn_module

        return getattr(nn_module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_nn(nn: Any, what: str) -> tuple[Callable, Callable]:
    if not (isinstance(nn, tuple | list) and len(nn) == 2 and all(map(callable, nn))):
        raise TypeError(
            f"{what}: nn must be a stax-style pair (init_fn, apply_fn), got {type(nn).__name__}."
        )
    return nn[0], nn[1]


def module(name: str, nn: tuple, input_shape: tuple | None = None) -> Callable:
    """Declare a ``stax``-style network whose parameters are one ``param`` site.

    Args:
        name: the network's name; its parameters are the param site ``f"{name}$params"``.
        nn: ``(init_fn, apply_fn)`` from a ``jax.example_libraries.stax`` constructor.
        input_shape: shape of the network's input (with a batch dim, e.g. ``(-1, 3)``);
            needed to initialize the parameters when no handler (``substitute``, ``SVI``)
            supplies them.

    Returns:
        ``apply_fn`` with the parameters bound: ``net(inputs, **kwargs) -> outputs``.

    Raises:
        ValueError: the parameters must be initialized but ``input_shape`` is ``None``, or
            there is no PRNG key (run the model under :class:`jppl.handlers.seed`).
    """
    init_fn, apply_fn = _check_nn(nn, f"module '{name}'")
    site = f"{name}$params"

    def initialize():
        # Runs only when no handler has set the site: then a key and a shape are needed.
        if input_shape is None:
            raise ValueError(
                f"module '{name}': a valid input_shape is needed to initialize the parameters "
                f"of param site '{site}'."
            )
        key = prng_key()
        if key is None:
            raise ValueError(
                f"module '{name}': initializing the parameters needs a PRNG key; run the "
                "model under jppl.handlers.seed (SVI and Predictive do this)."
            )
        return init_fn(key, tuple(input_shape))[1]

    # Unlike param(site, f), the key is drawn only when no handler has set the site.
    params = lazy_param(site, initialize)
    return functools.partial(apply_fn, params)


def _path(path) -> str:
    parts = []
    for k in path:
        for attr in ("idx", "key", "name"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return ".".join(parts)


def _leaf_prior(prior: Distribution, site: str, shape: tuple[int, ...]) -> Distribution:
    """``prior`` over a leaf of ``shape``: broadcast, with all of the leaf's dims as event
    dims (one draw of the site is one whole leaf)."""
    event_shape = tuple(prior.event_shape)
    if len(event_shape) > len(shape) or shape[len(shape) - len(event_shape) :] != event_shape:
        raise ValueError(
            f"random_module: the prior of site '{site}' has event shape {event_shape}, which "
            f"does not fit the parameter's shape {shape}."
        )
    batch_shape = shape[: len(shape) - len(event_shape)]
    try:
        prior = prior.expand(batch_shape)
    except ValueError as e:
        raise ValueError(
            f"random_module: the prior of site '{site}' (batch shape {prior.batch_shape}) "
            f"cannot be broadcast to the parameter's shape {shape}."
        ) from e
    return prior.to_event(len(batch_shape)) if batch_shape else prior


def random_module(
    name: str,
    nn: tuple,
    prior: Distribution | dict[str, Distribution],
    input_shape: tuple | None = None,
) -> Callable:
    """Declare a ``stax``-style network whose parameters are latent random variables.

    Each parameter leaf, at path ``path`` in the parameter pytree (its keys and list indices
    joined with ``"."``, e.g. ``"0.0"`` for the weights of ``serial(Dense(8), ...)``'s first
    layer), is the sample site ``f"{name}/{path}"``: a ``param`` site lifted
    (:class:`jppl.handlers.lift`) to a draw from its prior, broadcast to the leaf's shape
    with all dims as event dims.

    Args:
        name: prefix of the site names.
        nn: ``(init_fn, apply_fn)`` from a ``jax.example_libraries.stax`` constructor.
        prior: a Distribution for every leaf, or a dict with one for each leaf, keyed by
            ``path`` or by the site name ``f"{name}/{path}"``.
        input_shape: shape of the network's input (with a batch dim); required (it gives the
            parameter shapes, found without computing anything).

    Returns:
        ``apply_fn`` with the sampled parameters bound: ``net(inputs, **kwargs)``.

    Raises:
        ValueError: no ``input_shape``; a dict ``prior`` missing a leaf or with keys that are
            no leaf; a prior whose shape does not fit its leaf.
        TypeError: a ``prior`` that is neither a Distribution nor a dict of them.
    """
    init_fn, apply_fn = _check_nn(nn, f"random_module '{name}'")
    if input_shape is None:
        raise ValueError(f"random_module '{name}': input_shape is needed (the parameter shapes).")
    shapes = jax.eval_shape(lambda key: init_fn(key, tuple(input_shape))[1], jax.random.key(0))
    flat, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    paths = [_path(p) for p, _ in flat]
    sites = [f"{name}/{p}" for p in paths]
    if isinstance(prior, dict):
        known = set(paths) | set(sites)
        unknown = [k for k in prior if k not in known]
        missing = [
            p for p, s in zip(paths, sites, strict=True) if p not in prior and s not in prior
        ]
        if unknown or missing:
            raise ValueError(
                f"random_module '{name}': prior needs one Distribution per parameter leaf; the "
                f"leaf paths are {paths}"
                + (f"; unknown keys {unknown}" if unknown else "")
                + (f"; missing {missing}" if missing else "")
                + "."
            )
        chosen = [prior.get(s, prior.get(p)) for p, s in zip(paths, sites, strict=True)]
    elif isinstance(prior, Distribution):
        chosen = [prior] * len(paths)
    else:
        raise TypeError(
            f"random_module '{name}': prior must be a Distribution or a dict of them, got "
            f"{type(prior).__name__}."
        )
    priors = {}
    for site, (_, leaf), d in zip(sites, flat, chosen, strict=True):
        if not isinstance(d, Distribution):
            raise TypeError(
                f"random_module '{name}': the prior of site '{site}' is a {type(d).__name__}, "
                "not a Distribution."
            )
        priors[site] = _leaf_prior(d, site, tuple(leaf.shape))
    with lift(prior=priors):
        # The initial values only carry the shapes: lift replaces them by prior draws.
        leaves = [
            param(site, jnp.zeros(leaf.shape, leaf.dtype))
            for site, (_, leaf) in zip(sites, flat, strict=True)
        ]
    return functools.partial(apply_fn, jax.tree_util.tree_unflatten(treedef, leaves))
