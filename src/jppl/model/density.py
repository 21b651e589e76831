"""Log densities of models, the unconstrained parameter space, and model initialization.

Vocabulary used throughout:

* *constrained* values are what the model sees (a scale is positive, a probability vector is
  on the simplex); a dict ``{site name: array}`` of such values is what ``substitute`` takes.
* *unconstrained* values live in a real space; ``biject_to(site["fn"].support)`` maps them to
  the constrained ones. Samplers and optimizers work there.
* the *potential energy* is the negative log joint density in the unconstrained space,
  including the log-Jacobian of those maps.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jppl.distributions import (
    TransformedDistribution,
    constraints,
    enable_validation,
    validation_enabled,
)
from jppl.distributions.util import sum_rightmost
from jppl.enumerate import config_enumerate, enum
from jppl.handlers import block, seed, substitute, trace
from jppl.model.batch import batch_shape_of, flatten_batch, map_batch
from jppl.model.enum import (
    enum_log_joint,
    enumerated_sites,
    is_enumerated,
    pointwise_log_likelihood,
)
from jppl.model.initialization import init_to_uniform
from jppl.parallel.mesh import current_mesh
from jppl.parallel.sharding import shard_log_prob
from jppl.primitives import Message, Messenger

__all__ = [
    "ModelInfo",
    "ParamInfo",
    "compute_log_probs",
    "constrain_fn",
    "enumerate_discrete",
    "enumerated",
    "explain_invalid_init",
    "find_valid_initial_params",
    "forward_mode_gradient",
    "get_model_transforms",
    "guess_max_plate_nesting",
    "initialize_model",
    "log_density",
    "log_likelihood",
    "potential_energy",
    "require_values",
    "site_log_prob",
    "transform_fn",
    "unconstrain_fn",
]

Trace = dict[str, Message]


# ---------------------------------------------------------------------------------------------
# Log densities
# ---------------------------------------------------------------------------------------------


class require_values(Messenger):
    """Raise a clear error for a latent sample site that would need a key to be drawn.

    Placed just outside a ``substitute`` handler, it sees every sample site after its value
    has (or has not) been supplied; ``what`` names where the value should have come from.
    """

    def __init__(self, fn: Callable | None = None, what: str = "params"):
        self.what = what
        super().__init__(fn)

    def process_message(self, msg: Message) -> None:
        if msg["type"] != "sample" or msg["value"] is not None:
            return
        if msg["kwargs"].get("rng_key") is not None:
            return
        raise ValueError(
            f"Latent sample site '{msg['name']}' has no value: give its value in {self.what} "
            "(or seed the model so that it can be drawn)."
        )


def site_log_prob(site: Message, scaled: bool = True) -> jax.Array:
    """Log-probability of one sample site's value, times the site's ``scale`` if ``scaled``.

    Masks need no special care: the ``mask`` handler and ``obs_mask`` wrap ``site["fn"]``.
    Under an active mesh (:func:`jppl.parallel.use_mesh`), the log-probability of a site in a
    plate with ``shard=`` is split along that plate's dim across the mesh axis.

    Returns:
        array of shape ``sample_shape + batch_shape`` of the site.
    """
    fn = site["fn"]
    if site.get("intermediates") and isinstance(fn, TransformedDistribution):
        # the transforms' values from sampling: a flow without an inverse (BNAF) needs them,
        # and the others skip inverting (NumPyro passes them the same way)
        log_prob = fn.log_prob(site["value"], site["intermediates"])
    else:
        log_prob = fn.log_prob(site["value"])
    if scaled and site["scale"] is not None:
        log_prob = site["scale"] * log_prob
    if current_mesh() is not None:
        log_prob = shard_log_prob(log_prob, site["cond_indep_stack"])
    return log_prob


def compute_log_probs(trace: Trace, scaled: bool = True) -> dict[str, jax.Array]:
    """``{name: site_log_prob(site)}`` for every sample site (latent and observed) of a trace."""
    return {
        name: site_log_prob(site, scaled=scaled)
        for name, site in trace.items()
        if site["type"] == "sample"
    }


def log_density(
    model: Callable,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    params: dict[str, Any] | None = None,
) -> tuple[jax.Array, Trace]:
    """Log joint density of ``model`` with its latent sites set to ``params``.

    Args:
        model: the model (a callable using jppl primitives).
        model_args, model_kwargs: arguments of the model.
        params: dict ``{site name: constrained value}``; every latent sample site must be in
            it (or be given a value by a handler inside ``model``, e.g. ``seed``).

    Returns:
        ``(log_joint, trace)``: the scalar sum over sample sites of ``scale * log_prob`` and the
        model's trace. Sites enumerated by :class:`jppl.enumerate.enum` (e.g. a model wrapped
        as ``enum(config_enumerate(model), first_available_dim=-2)``) are summed out: the
        result is the marginal density of the other sites.
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    params = {} if params is None else params
    model_trace = trace(require_values(substitute(model, data=params), what="`params`")).get_trace(
        *model_args, **model_kwargs
    )
    return _log_joint(model_trace), model_trace


def _log_joint(model_trace: Trace) -> jax.Array:
    """Sum over sample sites of ``scale * log_prob``; the enumerated sites of a trace run
    under :class:`jppl.enumerate.enum` are summed out exactly (:mod:`jppl.model.enum`)."""
    if any(is_enumerated(site) for site in model_trace.values()):
        return enum_log_joint(model_trace, compute_log_probs(model_trace, scaled=False))
    log_probs = compute_log_probs(model_trace)
    log_joint = jnp.zeros(())
    for log_prob in log_probs.values():
        log_joint = log_joint + jnp.sum(log_prob)
    return log_joint


# ---------------------------------------------------------------------------------------------
# Unconstrained space
# ---------------------------------------------------------------------------------------------


def guess_max_plate_nesting(model_trace: Trace) -> int:
    """The number of nested plate dims used by the sites of a trace (0 without plates)."""
    dims = [
        -frame.dim
        for site in model_trace.values()
        if site["type"] in ("sample", "deterministic", "param")
        for frame in site.get("cond_indep_stack", ())
    ]
    return max(dims, default=0)


def _discrete_latents(model_trace: Trace) -> dict[str, Any]:
    return {
        name: site
        for name, site in model_trace.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and site["fn"].is_discrete
        and "_enumerate_dim" not in site["infer"]
    }


def enumerate_discrete(
    model: Callable, rng_key: jax.Array, model_args: tuple = (), model_kwargs: dict | None = None
) -> Callable:
    """``model`` with its discrete latent sites enumerated, or ``model`` itself if it has
    none (the model is traced once, abstractly, to find out).

    Raises:
        ValueError: for a discrete latent site whose support cannot be enumerated (e.g.
            Poisson), naming it and the ways around it.
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    found: dict[str, Any] = {}

    def run(key):
        model_trace = trace(seed(model, rng_seed=key)).get_trace(*model_args, **model_kwargs)
        found["discrete"] = {
            name: type(site["fn"]).__name__ if not site["fn"].has_enumerate_support else None
            for name, site in _discrete_latents(model_trace).items()
        }
        found["nesting"] = guess_max_plate_nesting(model_trace)
        found["enumerated"] = bool(enumerated_sites(model_trace))

    jax.eval_shape(run, rng_key)
    if not found["discrete"]:
        return model
    unbounded = {name: kind for name, kind in found["discrete"].items() if kind is not None}
    if unbounded:
        name, kind = next(iter(unbounded.items()))
        raise ValueError(
            f"Sample site '{name}' is a latent discrete variable ({kind}) whose support is "
            "unbounded, so it cannot be enumerated (summed out) for gradient-based inference. "
            "Marginalize it by hand (e.g. a mixture, or a factor with a truncated sum), "
            "observe it, or update it with your own Gibbs step (HMCGibbs)."
        )
    if found["enumerated"]:
        raise ValueError(
            "The model mixes enumerated sites (under an `enum` handler) with discrete latent "
            f"sites that are not enumerated ({', '.join(sorted(found['discrete']))}); mark "
            "them for enumeration too (config_enumerate) or give them values."
        )
    return enum(config_enumerate(model), first_available_dim=-found["nesting"] - 1)


def _has_discrete_latents(model: Callable, args: tuple, kwargs: dict) -> bool:
    """Whether one (abstract) run of ``model`` has discrete latent sites with enumerable
    support."""
    found = {}

    def run(key):
        with block():
            model_trace = trace(seed(model, rng_seed=key)).get_trace(*args, **kwargs)
        found["any"] = any(
            site["type"] == "sample"
            and not site["is_observed"]
            and site["fn"].is_discrete
            and site["fn"].has_enumerate_support
            for site in model_trace.values()
        )

    jax.eval_shape(run, jax.random.key(0))
    return found["any"]


def enumerated(model: Callable) -> Callable:
    """``model`` with its discrete latent sites (those with ``enumerate_support``) enumerated,
    ``max_plate_nesting`` guessed from a run of the model at each call (with a fixed key,
    hidden from the handlers around it)."""

    @functools.wraps(model)
    def run(*args, **kwargs):
        with block():
            model_trace = trace(seed(model, rng_seed=0)).get_trace(*args, **kwargs)
        first = -guess_max_plate_nesting(model_trace) - 1
        return enum(config_enumerate(model), first_available_dim=first)(*args, **kwargs)

    return run


def _biject_to(constraint, site_name: str):
    from jppl.distributions.transforms import biject_to

    try:
        return biject_to(constraint)
    except NotImplementedError as e:
        raise NotImplementedError(
            f"Site '{site_name}': there is no bijection from the real space onto its support "
            f"{constraint!r}, so it cannot be moved to the unconstrained space. ({e})"
        ) from e


def _discrete_latent_error(name: str, fn) -> ValueError:
    return ValueError(
        f"Sample site '{name}' is a latent discrete variable ({type(fn).__name__}); gradient-based "
        "inference needs it to be marginalized out: enumerate it (MCMC and initialize_model do "
        "this for you; by hand: enum(config_enumerate(model), first_available_dim="
        "-max_plate_nesting - 1)), sum it out by hand (e.g. a mixture distribution), or "
        "observe it."
    )


class _forbid_discrete_latents(Messenger):
    """Raise for a latent discrete sample site that nothing has given a value."""

    def process_message(self, msg: Message) -> None:
        if (
            msg["type"] == "sample"
            and not msg["is_observed"]
            and msg["value"] is None
            and msg["fn"].is_discrete
        ):
            raise _discrete_latent_error(msg["name"], msg["fn"])


def _site_transform(site: Message):
    if site["type"] == "param":
        constraint = site["kwargs"].get("constraint") or constraints.real
        return _biject_to(constraint, site["name"])
    return _biject_to(site["fn"].support, site["name"])


def get_model_transforms(
    model: Callable,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    rng_key=None,
) -> tuple[dict[str, Any], Trace]:
    """Bijections from the unconstrained space for the latent sites of one run of ``model``.

    Args:
        model: the model; if ``rng_key`` is None it must already be seeded (or have all its
            latent sites substituted).
        rng_key: optional PRNG key to seed the model with.

    Returns:
        ``(transforms, trace)``: ``transforms[name]`` maps an unconstrained array onto the
        support of latent sample site ``name`` (or the constraint of param site ``name``).

    Raises:
        ValueError: for a latent discrete site (it would have to be marginalized out).
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    if rng_key is not None:
        model = seed(model, rng_seed=rng_key)
    model_trace = trace(_forbid_discrete_latents(model)).get_trace(*model_args, **model_kwargs)
    transforms = {}
    for name, site in model_trace.items():
        if site["type"] == "param" or (site["type"] == "sample" and not site["is_observed"]):
            if site["type"] == "sample" and site["fn"].is_discrete:
                continue  # given a value by a handler inside `model`: not a free parameter
            transforms[name] = _site_transform(site)
    return transforms, model_trace


def transform_fn(transforms: dict, params: dict, invert: bool = False) -> dict:
    """Apply ``transforms[name]`` (or its inverse) to ``params[name]``; other entries pass."""
    if invert:
        return {k: transforms[k].inv(v) if k in transforms else v for k, v in params.items()}
    return {k: transforms[k](v) if k in transforms else v for k, v in params.items()}


def constrain_fn(
    model: Callable,
    model_args: tuple,
    model_kwargs: dict | None,
    params: dict,
    return_deterministic: bool = False,
) -> dict:
    """Map unconstrained ``params`` to constrained values by running ``model``.

    Args:
        params: ``{site name: unconstrained array}`` for latent sample sites and param sites.
        return_deterministic: also return the values of the deterministic sites.

    Returns:
        ``{site name: constrained value}`` for the sites in ``params`` (plus deterministic
        sites if asked).
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs

    def substitute_fn(site: Message):
        name = site["name"]
        if name not in params:
            return None
        if site["type"] in ("sample", "param"):
            return _site_transform(site)(params[name])
        return params[name]

    model_trace = trace(
        require_values(substitute(model, substitute_fn=substitute_fn), what="`params`")
    ).get_trace(*model_args, **model_kwargs)
    return {
        name: site["value"]
        for name, site in model_trace.items()
        if name in params or (return_deterministic and site["type"] == "deterministic")
    }


def unconstrain_fn(
    model: Callable, model_args: tuple, model_kwargs: dict | None, params: dict
) -> dict:
    """Inverse of :func:`constrain_fn`: map constrained ``params`` to the unconstrained space.

    Latent sites that are not in ``params`` are drawn (with a fixed key) only to run the model.
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    model_trace = trace(substitute(seed(model, rng_seed=0), data=params)).get_trace(
        *model_args, **model_kwargs
    )
    transforms = {
        name: _site_transform(site)
        for name, site in model_trace.items()
        if name in params and site["type"] in ("sample", "param")
    }
    return transform_fn(transforms, params, invert=True)


class _unconstrained_substitute(Messenger):
    """Substitute latent sites from unconstrained ``params`` and accumulate the log-Jacobians.

    After a run, ``self.log_det`` is ``sum over sites of scale * log|det J|`` of the map from
    the unconstrained value to the site's support.
    """

    def __init__(self, fn: Callable | None = None, params: dict | None = None):
        self.params = {} if params is None else params
        self.log_det = jnp.zeros(())
        super().__init__(fn)

    def __enter__(self):
        self.log_det = jnp.zeros(())
        return super().__enter__()

    def process_message(self, msg: Message) -> None:
        if msg["type"] != "sample" or msg["is_observed"]:
            return
        name, fn = msg["name"], msg["fn"]
        if name not in self.params:
            if msg["value"] is None and fn.is_discrete:
                raise _discrete_latent_error(name, fn)
            return
        if fn.is_discrete:
            raise _discrete_latent_error(name, fn)
        unconstrained = self.params[name]
        transform = _biject_to(fn.support, name)
        value = transform(unconstrained)
        log_det = transform.log_abs_det_jacobian(unconstrained, value)
        # Sum the event dims of the site that the transform did not already sum.
        log_det = sum_rightmost(log_det, jnp.ndim(log_det) - jnp.ndim(value) + len(fn.event_shape))
        if msg["scale"] is not None:
            log_det = msg["scale"] * log_det
        self.log_det = self.log_det + jnp.sum(log_det)
        msg["value"] = value


def potential_energy(
    model: Callable, model_args: tuple, model_kwargs: dict | None, params: dict
) -> jax.Array:
    """Negative log joint density of ``model`` in the unconstrained space.

    Args:
        params: ``{latent site name: unconstrained array}``.

    Returns:
        scalar ``-(log p(constrained values, data) + sum log|det J|)``.

    Raises:
        ValueError: for a latent discrete site, or a latent site missing from ``params``.
    """
    handler = _unconstrained_substitute(model, params=params)
    log_joint, _ = log_density(handler, model_args, model_kwargs, {})
    return -(log_joint + handler.log_det)


# ---------------------------------------------------------------------------------------------
# Initialization
# ---------------------------------------------------------------------------------------------


class ParamInfo(NamedTuple):
    """Initial point: unconstrained values ``z``, ``potential_energy`` at it, its gradient."""

    z: dict
    potential_energy: jax.Array
    z_grad: dict


class ModelInfo(NamedTuple):
    """What :func:`initialize_model` returns."""

    param_info: ParamInfo
    potential_fn: Callable
    postprocess_fn: Callable
    model_trace: Trace


def _is_single_key(rng_key) -> bool:
    rng_key = jnp.asarray(rng_key) if not isinstance(rng_key, jax.Array) else rng_key
    if jnp.issubdtype(rng_key.dtype, jax.dtypes.prng_key):
        return rng_key.ndim == 0
    return rng_key.ndim == 1


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _latent_values(model_trace: Trace) -> dict:
    return {
        name: site["value"]
        for name, site in model_trace.items()
        if site["type"] == "sample" and not site["is_observed"] and not site["fn"].is_discrete
    }


def forward_mode_gradient(fn: Callable[[Any], jax.Array]) -> Callable[[Any], jax.Array]:
    """``fn`` (a scalar function of a pytree) whose reverse-mode gradient (``jax.grad``,
    ``jax.value_and_grad``) is computed in forward mode (``jax.jacfwd``: one JVP per input
    coordinate), for functions that reverse mode cannot differentiate, e.g. a
    ``lax.while_loop`` in a model (NumPyro's ``forward_mode_differentiation=True``)."""

    @jax.custom_vjp
    def wrapped(x):
        return fn(x)

    def forward(x):
        grad, value = jax.jacfwd(lambda y: (fn(y), fn(y)), has_aux=True)(x)
        return value, grad

    def backward(grad, cotangent):
        return (jax.tree.map(lambda g: cotangent * g, grad),)

    wrapped.defvjp(forward, backward)
    return wrapped


def find_valid_initial_params(
    rng_key,
    model: Callable,
    *,
    init_strategy: Callable = init_to_uniform,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    prototype_params: dict,
    max_tries: int = 100,
    forward_mode_differentiation: bool = False,
) -> tuple[tuple[dict, jax.Array, dict], jax.Array]:
    """Draw initial points with ``init_strategy`` until potential and gradient are finite.

    Runs in a ``lax.while_loop`` (at most ``max_tries`` draws), so it works under ``jit`` and
    ``vmap``; a batch of keys (leading dim) is handled with ``lax.map``.

    Args:
        prototype_params: unconstrained values with the right structure and shapes.
        forward_mode_differentiation: compute the gradient in forward mode
            (:func:`forward_mode_gradient`).

    Returns:
        ``((z, potential_energy, z_grad), is_valid)``; with a batch of keys, every leaf has a
        leading batch dim.
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    potential_fn = partial(potential_energy, model, model_args, model_kwargs)
    if forward_mode_differentiation:
        potential_fn = forward_mode_gradient(potential_fn)

    def draw(key):
        init_model = substitute(seed(model, rng_seed=key), substitute_fn=init_strategy)
        transforms, model_trace = get_model_transforms(init_model, model_args, model_kwargs)
        values = _latent_values(model_trace)
        return transform_fn(transforms, values, invert=True)

    def body_fn(state):
        i, key, _, _ = state
        key, subkey = jax.random.split(key)
        z = draw(subkey)
        pe, z_grad = jax.value_and_grad(potential_fn)(z)
        is_valid = jnp.isfinite(pe)
        for g in jax.tree_util.tree_leaves(z_grad):
            is_valid = is_valid & jnp.all(jnp.isfinite(g))
        return i + 1, key, (z, pe, z_grad), is_valid

    def cond_fn(state):
        i, _, _, is_valid = state
        return (i < max_tries) & ~is_valid

    def find(key, exit_early: bool = False):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, prototype_params)
        state = (jnp.array(0), key, (zeros, jnp.zeros(()), zeros), jnp.array(False))
        if exit_early and _is_concrete(key):
            # One eager try first: the usual single-chain case then avoids compiling the loop.
            state = body_fn(state)
            if bool(state[3]):
                return state[2], state[3]
        else:
            # The loop carry must have exactly the types that the body returns.
            out_types = jax.eval_shape(body_fn, state)[2]
            result = jax.tree_util.tree_map(lambda t: jnp.zeros(t.shape, t.dtype), out_types)
            state = (jnp.array(0), key, result, jnp.array(False))
        _, _, result, is_valid = jax.lax.while_loop(cond_fn, body_fn, state)
        return result, is_valid

    if _is_single_key(rng_key):
        return find(rng_key, exit_early=True)
    return jax.lax.map(find, rng_key)


def _nonfinite_report(model, model_args, model_kwargs, z) -> str:
    """Best-effort list of the sites whose log density or gradient is not finite at ``z``."""
    try:
        handler = _unconstrained_substitute(model, params=z)
        _, model_trace = log_density(handler, model_args, model_kwargs, {})
        bad = [
            name
            for name, lp in compute_log_probs(model_trace).items()
            if not np.all(np.isfinite(np.asarray(lp)))
        ]
        grads = jax.grad(partial(potential_energy, model, model_args, model_kwargs))(z)
        bad_grad = [name for name, g in grads.items() if not np.all(np.isfinite(np.asarray(g)))]
    except Exception:  # noqa: BLE001 - diagnostics must not hide the real error
        return ""
    parts = []
    if bad:
        parts.append(f"non-finite log density at site(s) {bad}")
    if bad_grad:
        parts.append(f"non-finite gradient for latent site(s) {bad_grad}")
    return (" At the last try: " + "; ".join(parts) + ".") if parts else ""


def explain_invalid_init(
    rng_key,
    model: Callable,
    *,
    init_strategy: Callable = init_to_uniform,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
) -> None:
    """Raise the error that makes initialization fail, found by running ``model`` once eagerly
    (outside ``jit``, with distribution validation on); return if none is found.

    Compiled initialization only sees a non-finite potential energy; this names the cause:
    an invalid distribution parameter or an observation outside the support (the model's own
    validation error, naming the site), or an ``init_strategy`` value outside a latent site's
    support.

    Args:
        rng_key: a single PRNG key for the one run.
        model, init_strategy, model_args, model_kwargs: as for :func:`initialize_model`, with
            concrete arguments.

    Raises:
        ValueError: the cause, naming the site.
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    was_enabled = validation_enabled()
    enable_validation(True)
    try:
        init_model = substitute(seed(model, rng_seed=rng_key), substitute_fn=init_strategy)
        model_trace = trace(init_model).get_trace(*model_args, **model_kwargs)
    finally:
        enable_validation(was_enabled)
    for name, value in _latent_values(model_trace).items():
        support = model_trace[name]["fn"].support
        inside = np.asarray(support(jnp.asarray(value)))
        if not inside.all():
            bad = np.asarray(value)
            raise ValueError(
                f"Latent site '{name}': the initial value from init_strategy is outside its "
                f"support {support!r} (e.g. {np.ravel(bad)[: min(5, bad.size)]}); give a value "
                "inside the support (init_to_value takes constrained values)."
            )


def initialize_model(
    rng_key,
    model: Callable,
    *,
    init_strategy: Callable = init_to_uniform,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    max_tries: int = 100,
    dynamic_args: bool = False,
    forward_mode_differentiation: bool = False,
) -> ModelInfo:
    """Find an initial point of ``model`` and build its potential and postprocess functions.

    Args:
        rng_key: a PRNG key, or a batch of keys (leading dim) for several chains.
        model: the model.
        init_strategy: an ``init_to_*`` strategy of :mod:`jppl.model.initialization`.
        model_args, model_kwargs: arguments of the model.
        max_tries: how many initial points to draw before giving up.
        dynamic_args: if True, ``potential_fn(*args, **kwargs)`` and
            ``postprocess_fn(*args, **kwargs)`` return the functions for those model
            arguments instead.
        forward_mode_differentiation: the initial search computes gradients in forward mode
            (:func:`forward_mode_gradient`; for models with a ``lax.while_loop``).

    Returns:
        :class:`ModelInfo` with ``param_info = (z, potential_energy, z_grad)`` (unconstrained
        values, with a leading dim for a batch of keys), ``potential_fn(z) -> scalar``,
        ``postprocess_fn(z) -> constrained values incl. deterministic sites``, and the trace of
        one initial run.

    Raises:
        RuntimeError: if no initial point with a finite potential energy and gradient is found
            in ``max_tries`` draws (checked only outside ``jit``).
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    first_key = rng_key if _is_single_key(rng_key) else rng_key[0]
    model = enumerate_discrete(model, first_key, model_args, model_kwargs)
    init_model = substitute(seed(model, rng_seed=first_key), substitute_fn=init_strategy)
    transforms, model_trace = get_model_transforms(init_model, model_args, model_kwargs)
    prototype = transform_fn(transforms, _latent_values(model_trace), invert=True)
    # Subsampling plates keep the minibatch of the initial run.
    plates = {name: site["value"] for name, site in model_trace.items() if site["type"] == "plate"}
    fixed_model = substitute(model, data=plates) if plates else model

    (z, pe, z_grad), is_valid = find_valid_initial_params(
        rng_key,
        fixed_model,
        init_strategy=init_strategy,
        model_args=model_args,
        model_kwargs=model_kwargs,
        prototype_params=prototype,
        max_tries=max_tries,
        forward_mode_differentiation=forward_mode_differentiation,
    )
    if _is_concrete(is_valid) and not bool(np.all(np.asarray(is_valid))):
        z_last = z if _is_single_key(rng_key) else jax.tree_util.tree_map(lambda x: x[0], z)
        detail = _nonfinite_report(fixed_model, model_args, model_kwargs, z_last)
        raise RuntimeError(
            f"Cannot find valid initial parameters in {max_tries} tries: the potential energy "
            f"or its gradient is not finite at every initial point drawn.{detail} Check the "
            "model (e.g. parameters outside their support, factors that are -inf), or try "
            "another init_strategy (init_to_value, init_to_median, ...)."
        )

    if dynamic_args:

        def potential_fn(*args, **kwargs):
            return partial(potential_energy, fixed_model, args, kwargs)

        def postprocess_fn(*args, **kwargs):
            return partial(constrain_fn, fixed_model, args, kwargs, return_deterministic=True)

    else:
        potential_fn = partial(potential_energy, fixed_model, model_args, model_kwargs)
        postprocess_fn = partial(
            constrain_fn, fixed_model, model_args, model_kwargs, return_deterministic=True
        )
    return ModelInfo(ParamInfo(z, pe, z_grad), potential_fn, postprocess_fn, model_trace)


def log_likelihood(
    model: Callable,
    posterior_samples: dict[str, Any],
    *args,
    parallel: bool = False,
    batch_ndims: int = 1,
    **kwargs,
) -> dict[str, jax.Array]:
    """Log-likelihood of each observation under each posterior draw (for LOO, WAIC, ...).

    Args:
        model: the model; ``*args, **kwargs`` are passed to it (with the observed data).
        posterior_samples: dict ``{site name: array}`` with ``batch_ndims`` leading batch dims;
            it must give every latent site of the model.
        parallel: map over draws with ``jax.vmap`` (True) or ``jax.lax.map`` (False).
        batch_ndims: number of leading batch dims of the samples.

    Returns:
        ``{observed site name: array of shape batch_shape + the site's batch shape}``: the
        (unscaled, masked) ``log_prob`` of each observation. Discrete latent sites that the
        samples do not give (summed out by MCMC) are summed out here too, per observation
        (:func:`jppl.model.enum.pointwise_log_likelihood`: for a mixture, ``log sum_k
        p(z_i = k) p(y_i | k)``); the result then has the site's plate dims.
    """
    if not isinstance(posterior_samples, dict):
        raise TypeError("log_likelihood: posterior_samples must be a dict {site name: array}.")
    batch_shape = batch_shape_of(posterior_samples, batch_ndims, "posterior_samples")
    if batch_shape is None:
        raise ValueError("log_likelihood: posterior_samples is empty.")
    size = math.prod(batch_shape)

    discrete = _has_discrete_latents(model, args, kwargs)
    run = enumerated(model) if discrete else model

    def one(samples):
        model_trace = trace(
            require_values(substitute(run, data=samples), what="`posterior_samples`")
        ).get_trace(*args, **kwargs)
        if any(is_enumerated(site) for site in model_trace.values()):
            return pointwise_log_likelihood(model_trace, compute_log_probs(model_trace, False))
        return {
            name: site_log_prob(site, scaled=False)
            for name, site in model_trace.items()
            if site["type"] == "sample" and site["is_observed"]
        }

    flat = flatten_batch(posterior_samples, batch_ndims, size)
    return map_batch(one, flat, batch_shape, parallel)
