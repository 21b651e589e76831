"""Flax neural networks inside jppl models.

Two ways to put a Flax module (Linen or NNX) into a model:

* :func:`flax_module` registers all of the module's parameters as **one** ``param`` site named
  ``f"{name}$params"`` whose value is the parameter pytree; an optimizer (e.g. ``SVI``) learns it.
* :func:`random_flax_module` makes every parameter leaf a latent ``sample`` site named
  ``f"{name}/{path}"`` drawn from a prior: a Bayesian neural network.

Both return a callable ``net(*inputs, **kwargs)`` that applies the module with those parameters.

Parameter paths
    A leaf's *path* joins the keys leading to it with ``"."``. For Linen it is relative to the
    ``"params"`` collection (``"Dense_0.kernel"``, ``"Encoder_0.Dense_1.bias"``); for NNX it
    follows the attributes (``"linear.kernel"``, ``"layers.0.bias"`` for ``nnx.List``
    items). ``param_paths(net_params)`` lists them for a given parameter pytree.

Parameter pytrees
    Linen: the ``"params"`` collection as returned by ``module.init`` (nested dicts).
    NNX: the ``nnx.Param`` variables of the module as a pure nested dict
    (``nnx.to_pure_dict(nnx.state(module, nnx.Param))``); ``nnx.merge(graphdef, params)``
    accepts it.

Other variables
    Non-parameter collections (Linen ``batch_stats`` and the like; NNX variables other than
    ``nnx.Param`` and the RNG streams, e.g. ``nnx.BatchStat``) go to a second site
    ``f"{name}$state"``; the module sees them through ``jax.lax.stop_gradient``.

    * With ``mutable=...`` (e.g. ``["batch_stats"]``) it is a ``mutable`` site, as in NumPyro:
      the module runs in Flax's mutable mode and each call updates the site's dict in place
      (``net.state`` is that dict), so ``trace`` records the state after the run and
      :class:`~jppl.vi.SVI` keeps it from step to step in ``SVIState.mutable_state``. To run
      the trained model (``Predictive``, ``substitute``) give both sites:
      ``{**svi.get_params(state), **state.mutable_state}``; a ``$params`` value without a
      ``$state`` value (or the reverse) is an error, so the initial statistics are never used
      by mistake.
    * Without it, it is a second ``param`` site that no gradient reaches (a jppl addition:
      NumPyro drops these collections), so gradient based optimizers leave it at its initial
      value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen, nnx

from jppl.distributions.distribution import Distribution
from jppl.primitives import apply_stack, lazy_param, new_message, prng_key, sample

__all__ = ["flax_module", "param_paths", "random_flax_module"]

PyTree = Any
Prior = Distribution | dict[str, Distribution] | Callable[[str, tuple[int, ...]], Distribution]


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _path_name(path: Sequence) -> str:
    return ".".join(_key_name(k) for k in path)


def param_paths(params: PyTree) -> list[str]:
    """Dotted path names of the leaves of a parameter pytree, in flattening order."""
    return [_path_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _lazy_mutable(name: str, init: Callable[[], PyTree]) -> PyTree:
    """A ``mutable`` site whose initial value ``init()`` is computed only if nothing sets it
    (like :func:`jppl.primitives.lazy_param`)."""
    msg = new_message("mutable", name, fn=lambda init: init(), args=(init,))
    return apply_stack(msg)["value"]


def _require_key(key, what: str):
    if key is None:
        raise ValueError(
            f"{what} needs a PRNG key: run the model under jppl.handlers.seed (SVI and "
            "Predictive do this)."
        )
    return key


def _split_keys(key, names: Sequence[str]) -> dict[str, jax.Array]:
    return dict(zip(names, jax.random.split(key, len(names)), strict=True))


# ---------------------------------------------------------------------------------------------
# One adapter per Flax API: how to get initial parameters/state and how to apply the module
# ---------------------------------------------------------------------------------------------


class _LinenAdapter:
    """``flax.linen.Module``: variables come from ``module.init(rngs, *example_inputs)``."""

    def __init__(self, module: linen.Module, name: str, input_shape, apply_rng, mutable, kwargs):
        if input_shape is None and not kwargs:
            raise ValueError(
                f"flax_module '{name}': a Linen module needs input_shape= or example inputs as "
                "keyword arguments to be initialised."
            )
        self.module = module
        self.name = name
        self.init_args = () if input_shape is None else (jnp.ones(tuple(input_shape)),)
        self.init_kwargs = kwargs
        self.apply_rng = list(apply_rng or [])
        self.mutable = mutable
        self._variables = None

    def _init_fn(self, key):
        rngs = _split_keys(key, ["params", *self.apply_rng])
        variables = self.module.init(rngs, *self.init_args, **self.init_kwargs)
        return dict(variables)

    def _init(self, key) -> dict:
        if self._variables is None:
            key = _require_key(key, f"Initialising flax_module '{self.name}'")
            self._variables = self._init_fn(key)
        return self._variables

    def shapes(self) -> tuple[PyTree, PyTree | None]:
        """``jax.ShapeDtypeStruct`` pytrees of (params, state), without computing them."""
        variables = jax.eval_shape(self._init_fn, jax.random.key(0))
        state = {k: v for k, v in variables.items() if k != "params"}
        return variables.get("params", {}), (state or None)

    def initial_params(self, key) -> PyTree:
        return self._init(key).get("params", {})

    def initial_state(self, key) -> PyTree:
        return {k: v for k, v in self._init(key).items() if k != "params"}

    def apply(self, params, state, args, kwargs) -> tuple[Any, PyTree | None]:
        if self.apply_rng and "rngs" not in kwargs:
            key = _require_key(prng_key(), f"flax_module '{self.name}' with apply_rng")
            kwargs = {**kwargs, "rngs": _split_keys(key, self.apply_rng)}
        variables = {"params": params, **(state or {})}
        if self.mutable:
            out, new_state = self.module.apply(variables, *args, mutable=self.mutable, **kwargs)
            return out, {**(state or {}), **dict(new_state)}
        return self.module.apply(variables, *args, **kwargs), state


class _NNXAdapter:
    """``flax.nnx.Module`` instance: its current variables are the initial values."""

    def __init__(self, module: nnx.Module, name: str, apply_rng, mutable):
        self.name = name
        graphdef, params, rng_state, other = nnx.split(module, nnx.Param, nnx.RngState, ...)
        self.graphdef = graphdef
        self.params = nnx.to_pure_dict(params)
        self.rng_state = rng_state
        self.other = nnx.to_pure_dict(other)
        self.apply_rng = list(apply_rng or [])
        self.mutable = mutable

    def shapes(self) -> tuple[PyTree, PyTree | None]:
        return jax.eval_shape(lambda: self.params), (self.other or None)

    def initial_params(self, key) -> PyTree:
        return self.params

    def initial_state(self, key) -> PyTree:
        return self.other

    def apply(self, params, state, args, kwargs) -> tuple[Any, PyTree | None]:
        states = [params, self.rng_state] + ([state] if state else [])
        module = nnx.merge(self.graphdef, *states)
        if self.apply_rng:
            key = _require_key(prng_key(), f"flax_module '{self.name}' with apply_rng")
            nnx.reseed(module, **_split_keys(key, self.apply_rng))
        out = module(*args, **kwargs)
        if self.mutable and state:
            rest = nnx.split(module, nnx.Param, nnx.RngState, ...)[3]
            return out, nnx.to_pure_dict(rest)
        return out, state


def _adapter(name, nn_module, input_shape, apply_rng, mutable, kwargs):
    if not isinstance(name, str) or not name:
        raise TypeError(f"flax_module: name must be a non-empty str, got {name!r}")
    if isinstance(nn_module, nnx.Module):
        return _NNXAdapter(nn_module, name, apply_rng, mutable)
    if isinstance(nn_module, linen.Module):
        return _LinenAdapter(nn_module, name, input_shape, apply_rng, mutable, kwargs)
    if isinstance(nn_module, type) and issubclass(nn_module, nnx.Module | linen.Module):
        raise TypeError(
            f"flax_module '{name}': pass a module instance, not the class {nn_module.__name__}."
        )
    raise TypeError(
        f"flax_module '{name}': expected a flax.linen.Module or flax.nnx.Module instance, "
        f"got {type(nn_module).__name__}."
    )


class _BoundModule:
    """The callable returned by :func:`flax_module`: ``net(*inputs, **kwargs) -> output``.

    Attributes:
        params: the parameter pytree used (the site value).
        state: the non-parameter variables (``None`` if the module has none); with ``mutable``
            the state after the latest call.
    """

    def __init__(self, adapter, params: PyTree, state: PyTree | None):
        self._adapter = adapter
        self.params = params
        self.state = state

    def __call__(self, *args, **kwargs):
        state = None if self.state is None else jax.lax.stop_gradient(self.state)
        out, new_state = self._adapter.apply(self.params, state, args, kwargs)
        if self._adapter.mutable and self.state is not None:
            # In place: the dict is the value of the `$state` mutable site, which `trace`
            # (and so SVI) reads after the run, as in NumPyro.
            self.state.update(jax.lax.stop_gradient(new_state))
        return out

    def __repr__(self) -> str:
        return f"<jppl flax module '{self._adapter.name}'>"


def _state_site(adapter, name: str, has_state: bool, init: Callable[[], PyTree]) -> PyTree | None:
    """The ``$state`` site (initial value ``init()``): ``mutable`` with ``adapter.mutable``,
    else a ``param`` site."""
    if not has_state:
        return None
    if adapter.mutable:
        # A fresh dict: the module's calls update it in place.
        state = _lazy_mutable(f"{name}$state", lambda: dict(init()))
        if not isinstance(state, dict):
            raise TypeError(
                f"flax_module '{name}': the mutable site '{name}$state' must hold a dict of "
                f"the module's non-parameter variables, got {type(state).__name__}."
            )
        return state
    return lazy_param(f"{name}$state", init)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def flax_module(
    name: str,
    nn_module: linen.Module | nnx.Module,
    *,
    input_shape: Sequence[int] | None = None,
    apply_rng: Sequence[str] | None = None,
    mutable: Sequence[str] | bool | None = None,
    **kwargs,
) -> Callable[..., Any]:
    """Register the parameters of a Flax module as one learnable ``param`` site.

    Call it inside a model or guide: ``net = flax_module("net", MLP(), input_shape=(1, 3))``,
    then ``y = net(x)``.

    Args:
        name: site name prefix; the parameters are the ``param`` site ``f"{name}$params"``.
        nn_module: a ``flax.linen.Module`` or a ``flax.nnx.Module`` *instance*. A Linen module
            is initialised with ``module.init`` and a key from ``prng_key()`` (so the model
            must run under ``seed`` until the site has a value); an NNX module's current
            parameters are the initial value.
        input_shape: (Linen) shape of a dummy input ``jnp.ones(input_shape)`` for ``init``,
            e.g. ``(batch, features)``. Ignored for NNX.
        apply_rng: names of extra RNG streams (e.g. ``["dropout"]``). Each call of the returned
            callable draws a key from ``prng_key()`` and splits it over these streams (Linen:
            passed as ``rngs=``, unless the caller gives ``rngs`` itself; NNX: ``nnx.reseed``).
        mutable: (Linen) collections that the module updates, e.g. ``["batch_stats"]``,
            passed to ``module.apply(..., mutable=mutable)``. (NNX) any true value makes the
            callable keep the updated non-parameter variables in ``net.state``.
        **kwargs: (Linen) example inputs for ``init``, passed as keyword arguments; an
            alternative to ``input_shape``.

    Returns:
        a callable ``net(*inputs, **kwargs)`` returning the module's output for the current
        parameters. Extra keyword arguments go to ``module.apply`` (Linen) or the module's
        ``__call__`` (NNX).

    Sites:
        ``f"{name}$params"``: ``param`` site holding the parameter pytree (see module doc).
        ``f"{name}$state"``: only if the module has non-parameter variables (e.g. batch
        statistics), used under ``stop_gradient``: with ``mutable``, a ``mutable`` site whose
        dict each call updates in place (kept by ``SVI`` in ``SVIState.mutable_state``, as in
        NumPyro); without, a ``param`` site.
    """
    adapter = _adapter(name, nn_module, input_shape, apply_rng, mutable, kwargs)
    key = prng_key() if isinstance(adapter, _LinenAdapter) else None
    initialised = []  # which sites took their initial value (no handler gave one)

    def init_params():
        initialised.append("params")
        return adapter.initial_params(key)

    def init_state():
        if adapter.mutable and not initialised:
            _raise_half_given(name, "params", "state")
        initialised.append("state")
        return adapter.initial_state(key)

    params = lazy_param(f"{name}$params", init_params)
    state = None
    if _has_state(adapter):
        state = _state_site(adapter, name, True, init_state)
        if adapter.mutable and initialised == ["params"]:
            _raise_half_given(name, "state", "params")
    return _BoundModule(adapter, params, state)


def _raise_half_given(name: str, given: str, missing: str) -> None:
    # As NumPyro's flax_module (an assertion there): with `mutable`, parameters and state
    # come together, so trained parameters never run with the initial statistics.
    raise ValueError(
        f"flax_module '{name}': the site '{name}${given}' has a value but '{name}${missing}' "
        "has none; give both (after SVI, e.g. Predictive(..., params={**svi.get_params(state), "
        "**state.mutable_state})) or neither."
    )


def _has_state(adapter) -> bool:
    if isinstance(adapter, _NNXAdapter):
        return bool(adapter.other)
    return adapter.shapes()[1] is not None


def _prior_for(prior: Prior, path: str, shape: tuple[int, ...]) -> Distribution | None:
    if isinstance(prior, Distribution):
        return prior
    if isinstance(prior, dict):
        leaf = path.rsplit(".", 1)[-1]
        return prior.get(path, prior.get(leaf))
    d = prior(path, shape)
    if not isinstance(d, Distribution):
        raise TypeError(
            f"random_flax_module: the prior function returned {type(d).__name__} for "
            f"'{path}'; expected a Distribution."
        )
    return d


def _leaf_distribution(d: Distribution, path: str, shape: tuple[int, ...]) -> Distribution:
    """``d`` broadcast to ``shape`` with all dims as event dims (one site per leaf)."""
    if d.event_dim > len(shape) or tuple(d.event_shape) != shape[len(shape) - d.event_dim :]:
        raise ValueError(
            f"random_flax_module: prior for '{path}' has event shape {d.event_shape}, which "
            f"does not fit the parameter shape {shape}."
        )
    batch_shape = shape[: len(shape) - d.event_dim]
    try:
        d = d.expand(batch_shape)
    except ValueError as e:
        raise ValueError(
            f"random_flax_module: prior for '{path}' with batch shape {d.batch_shape} cannot "
            f"be broadcast to the parameter shape {shape}."
        ) from e
    return d.to_event(len(batch_shape)) if batch_shape else d


def _check_prior(prior: Any, paths: Sequence[str], what: str) -> None:
    """Check a ``prior`` argument against the parameter ``paths`` of a module.

    Raises:
        ValueError: a dict prior with keys that match no path (nor last path component).
        TypeError: a prior that is not a Distribution, a dict of them or a callable.
    """
    if isinstance(prior, dict):
        leaf_names = {p.rsplit(".", 1)[-1] for p in paths}
        unknown = [k for k in prior if k not in paths and k not in leaf_names]
        if unknown:
            raise ValueError(
                f"{what}: prior keys {unknown} match no parameter; the parameter paths are {paths}."
            )
    elif not (isinstance(prior, Distribution) or callable(prior)):
        raise TypeError(
            f"{what}: prior must be a Distribution, a dict of them or a callable (path, shape) "
            f"-> Distribution; got {type(prior).__name__}."
        )


def random_flax_module(
    name: str,
    nn_module: linen.Module | nnx.Module,
    prior: Prior,
    *,
    input_shape: Sequence[int] | None = None,
    apply_rng: Sequence[str] | None = None,
    mutable: Sequence[str] | bool | None = None,
    **kwargs,
) -> Callable[..., Any]:
    """A Flax module whose parameters are latent random variables (a Bayesian network).

    Each parameter leaf with path ``path`` (see the module docstring, e.g. ``"Dense_0.kernel"``
    or ``"layers.0.kernel"``) becomes the sample site ``f"{name}/{path}"`` with distribution
    ``prior_leaf.expand(batch).to_event(...)``, so a site's batch shape is ``()`` and its event
    shape is the leaf's shape.

    Args:
        name: site name prefix.
        nn_module: a ``flax.linen.Module`` or ``flax.nnx.Module`` instance.
        prior: one of

            * a Distribution, used for every leaf (its event shape must be a suffix of each
              leaf's shape; its batch shape must broadcast to the rest);
            * a dict ``{key: Distribution}``: a leaf uses ``prior[path]`` if present, else
              ``prior[last path component]`` (e.g. ``{"kernel": ..., "bias": ...}`` for all
              layers, with ``{"Dense_1.bias": ...}`` overriding one leaf). Leaves that match
              no key stay deterministic learnable parameters in the ``param`` site
              ``f"{name}$params"``; keys that match no leaf are an error;
            * a callable ``prior(path, shape) -> Distribution``.
        input_shape, apply_rng, mutable, **kwargs: as in :func:`flax_module`.

    Returns:
        a callable applying the module with the sampled parameters; its ``params`` attribute
        holds the parameter pytree used.

    Call it outside plates (each draw is one network). The ``seed`` handler gives keys to the
    sample sites; a ``substitute``/``condition`` of all of them needs no key for Linen
    (parameter shapes come from ``jax.eval_shape``).
    """
    adapter = _adapter(name, nn_module, input_shape, apply_rng, mutable, kwargs)
    shapes, state_shapes = adapter.shapes()
    flat, treedef = jax.tree_util.tree_flatten_with_path(shapes)
    paths = [_path_name(p) for p, _ in flat]
    _check_prior(prior, paths, f"random_flax_module '{name}'")
    priors = [
        _prior_for(prior, path, tuple(leaf.shape))
        for path, (_, leaf) in zip(paths, flat, strict=True)
    ]

    needs_key = isinstance(adapter, _LinenAdapter) and (
        any(d is None for d in priors) or state_shapes is not None
    )
    key = prng_key() if needs_key else None
    fixed = None
    if any(d is None for d in priors):
        fixed = jax.tree_util.tree_leaves(
            lazy_param(f"{name}$params", lambda: adapter.initial_params(key))
        )
    leaves = []
    for i, (path, (_, leaf), d) in enumerate(zip(paths, flat, priors, strict=True)):
        if d is None:
            leaves.append(fixed[i])
            continue
        leaves.append(sample(f"{name}/{path}", _leaf_distribution(d, path, tuple(leaf.shape))))
    params = jax.tree_util.tree_unflatten(treedef, leaves)
    state = _state_site(adapter, name, state_shapes is not None, lambda: adapter.initial_state(key))
    return _BoundModule(adapter, params, state)
