"""Modelling primitives and the effect-handler stack.

A model is a plain Python function that calls the primitives below. Each call builds a
*message* (a plain ``dict``, see :data:`Message`) and passes it through the handler stack
(:func:`apply_stack`): every active handler, innermost first, may read and rewrite the message
in ``process_message``; then the default behaviour fills in a value if none was set (e.g.
draw from ``fn``); then the same handlers see the final message in ``postprocess_message``,
in stack order (outermost first, as in NumPyro). The stack (:mod:`jppl.stack`) is the only
global mutable state in jppl.

Message / trace-site keys (the same as NumPyro's, so code that inspects traces ports):

==================== ================================================================
``type``             ``"sample"``, ``"param"``, ``"deterministic"``, ``"plate"``,
                     ``"mutable"``, ``"prng_key"``, ``"subsample"``
``name``             site name (``str``)
``fn``               the distribution (sample), or a callable producing the value
``args``/``kwargs``  arguments of ``fn``; for sample sites ``kwargs`` holds
                     ``rng_key`` and ``sample_shape``
``value``            the site's value (``None`` until something sets it)
``is_observed``      True for observed sample sites (``obs=`` or ``condition``)
``scale``            multiplier of the site's log-probability (plates, ``scale``)
``mask``             boolean mask applied to the log-probability, or ``None``
``cond_indep_stack`` list of :class:`CondIndepStackFrame` of the enclosing plates
``infer``            dict of inference hints
``intermediates``    intermediate values of transformed samples
``stop``             set by ``block``: handlers further out do not see the message
==================== ================================================================
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jppl.distributions.distribution import Distribution, Unit, validation_enabled
from jppl.stack import HANDLER_STACK, innermost

__all__ = [
    "CondIndepStackFrame",
    "Message",
    "Messenger",
    "apply_stack",
    "check_obs",
    "default_process_message",
    "deterministic",
    "factor",
    "get_mask",
    "lazy_param",
    "mutable",
    "new_message",
    "param",
    "plate",
    "plate_stack",
    "prng_key",
    "sample",
    "subsample",
]

Message = dict[str, Any]
"""A message travelling through the handler stack; keys are listed in the module docstring."""


class CondIndepStackFrame(NamedTuple):
    """One enclosing plate: its ``name``, batch ``dim`` (negative) and (sub)sample ``size``.

    ``shard`` is the mesh axis the plate is split along (``plate(..., shard="data")``), or None.
    """

    name: str
    dim: int
    size: int
    shard: str | None = None


class Messenger:
    """Base class of effect handlers.

    Use a handler as a context manager (``with handler(...):``) or wrap a callable
    (``handler(fn, ...)(*args)``). Subclasses override ``process_message`` (runs before the
    default behaviour, innermost handler first) and/or ``postprocess_message`` (runs after it,
    outermost handler first). Handlers compose in any order.
    """

    def __init__(self, fn: Callable | None = None):
        if fn is not None and not callable(fn):
            raise TypeError(
                f"{type(self).__name__}: expected a callable to wrap (or None), got {fn!r}"
            )
        self.fn = fn
        if fn is not None:
            functools.update_wrapper(self, fn, updated=[])

    def __enter__(self):
        HANDLER_STACK.append(self)
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        if exc_type is None:
            if not HANDLER_STACK or HANDLER_STACK[-1] is not self:
                raise RuntimeError(f"{type(self).__name__}: handler stack is corrupted.")
            HANDLER_STACK.pop()
        else:
            # An exception unwinds everything this handler pushed, and the handler itself.
            if self in HANDLER_STACK:
                loc = len(HANDLER_STACK) - 1 - HANDLER_STACK[::-1].index(self)
                del HANDLER_STACK[loc:]

    def process_message(self, msg: Message) -> None:
        """Inspect or rewrite ``msg`` before its value is computed."""

    def postprocess_message(self, msg: Message) -> None:
        """Inspect ``msg`` after its value is computed."""

    def __call__(self, *args, **kwargs):
        if self.fn is None:
            if len(args) == 1 and not kwargs and callable(args[0]):
                # `handler(**options)(model)`: the handler wraps the model (NumPyro's form).
                self.fn = args[0]
                functools.update_wrapper(self, args[0], updated=[])
                return self
            raise TypeError(
                f"{type(self).__name__} was created without a function to wrap; use it as a "
                "context manager, pass the model as its first argument, or call the handler "
                "on the model: handler(**options)(model)."
            )
        with self:
            return self.fn(*args, **kwargs)


def _raise_no_key(msg: Message) -> None:
    raise ValueError(
        f"Sample site '{msg['name']}' is latent and needs a PRNG key, but none was given. "
        "Wrap the model in jppl.handlers.seed(model, rng_seed=...) or pass rng_key= to sample()."
    )


def _validate_sample_site(msg: Message) -> None:
    fn = msg["fn"]
    name = msg["name"]
    if not isinstance(fn, Distribution):
        return
    if fn._invalid_args_message is not None:
        raise ValueError(f"Sample site '{name}': {fn._invalid_args_message}")
    value = msg["value"]
    if not msg["is_observed"] or value is None:
        return
    # The value must broadcast against the distribution's batch + event shape.
    vshape, dshape = jnp.shape(value), fn.batch_shape + fn.event_shape
    try:
        full = np.broadcast_shapes(vshape, dshape)
    except ValueError:
        full = None
    if full is None or (
        fn.event_shape and tuple(full[len(full) - len(fn.event_shape) :]) != fn.event_shape
    ):
        raise ValueError(
            f"Sample site '{name}': observed value of shape {vshape} does not broadcast with "
            f"the distribution's batch_shape {fn.batch_shape} + event_shape {fn.event_shape}."
        )
    if (fn._validate_args or validation_enabled()) and not isinstance(value, jax.core.Tracer):
        ok = fn.validate_sample(value)
        # a support with traced parameters (e.g. interval(low, high) of latent bounds) can only
        # be checked eagerly: initialization re-runs the model outside jit when it fails
        if isinstance(ok, jax.core.Tracer):
            return
        ok = np.asarray(ok)
        if not ok.all():
            bad = np.asarray(value)
            raise ValueError(
                f"Sample site '{name}': observed value is outside the support {fn.support!r} "
                f"of {type(fn).__name__} (e.g. {np.ravel(bad)[: min(5, bad.size)]})."
            )


def default_process_message(msg: Message) -> None:
    """The default behaviour of a site whose value no handler set.

    A sample site draws from ``fn`` with the key in ``kwargs["rng_key"]`` (recording the
    intermediates); a param, mutable, plate or subsample site calls ``fn(*args, **kwargs)``.
    """
    if msg["value"] is not None:
        return
    kind = msg["type"]
    if kind == "sample":
        if msg["kwargs"].get("rng_key") is None:
            _raise_no_key(msg)
        value = msg["fn"](*msg["args"], sample_intermediates=True, **msg["kwargs"])
        msg["value"], msg["intermediates"] = value
    elif kind in ("param", "plate", "subsample", "mutable"):
        msg["value"] = msg["fn"](*msg["args"], **msg["kwargs"])


def apply_stack(msg: Message) -> Message:
    """Send ``msg`` through the active handlers, fill in its value, and return it."""
    # Innermost handler first; `block` stops the message from reaching the outer ones.
    seen = 0
    for handler in reversed(HANDLER_STACK):
        seen += 1
        handler.process_message(msg)
        if msg.get("stop"):
            break
    default_process_message(msg)
    if msg["type"] == "sample":
        _validate_sample_site(msg)
    for handler in HANDLER_STACK[len(HANDLER_STACK) - seen :]:
        handler.postprocess_message(msg)
    return msg


def new_message(kind: str, name: str, **fields) -> Message:
    """A message of type ``kind`` for site ``name``, every key at its default but ``fields``.

    For code that adds its own kind of site (e.g. :func:`jppl.nn.flax_module`'s ``param``).
    """
    msg: Message = {
        "type": kind,
        "name": name,
        "fn": None,
        "args": (),
        "kwargs": {},
        "value": None,
        "scale": None,
        "mask": None,
        "is_observed": False,
        "cond_indep_stack": [],
        "infer": {},
        "intermediates": [],
    }
    msg.update(fields)
    return msg


def _check_name(name, primitive: str) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"{primitive}: site name must be a non-empty str, got {name!r}")


def check_obs(name: str, obs):
    """Reject observations that are not numeric arrays, with a message naming the site."""
    if isinstance(obs, bool | int | float | np.number | np.bool_):
        return jnp.asarray(obs)
    if not isinstance(obs, jax.Array | np.ndarray):
        raise TypeError(
            f"Sample site '{name}': obs must be a JAX or NumPy array (or a Python number), "
            f"got {type(obs).__name__}. Convert it with jnp.asarray(...)."
        )
    dtype = obs.dtype
    if not (
        jnp.issubdtype(dtype, jnp.floating)
        or jnp.issubdtype(dtype, jnp.integer)
        or jnp.issubdtype(dtype, jnp.bool_)
    ):
        raise TypeError(
            f"Sample site '{name}': obs has dtype {dtype}; expected a real floating, integer or "
            "boolean dtype."
        )
    return obs


def sample(
    name: str,
    fn: Distribution,
    obs=None,
    sample_shape: tuple[int, ...] = (),
    infer: dict | None = None,
    rng_key=None,
    obs_mask=None,
):
    """A random variable named ``name`` with distribution ``fn``.

    Args:
        name: unique site name.
        fn: a :class:`~jppl.distributions.Distribution`.
        obs: observed value (array of shape broadcastable to ``fn``'s batch + event shape);
            makes the site observed.
        sample_shape: extra leading dims of the draw.
        infer: inference hints, stored on the site.
        rng_key: key used when no ``seed`` handler provides one.
        obs_mask: optional boolean array (broadcastable to ``fn.batch_shape``) marking which
            events of ``obs`` are observed; the others are imputed. As in NumPyro the site
            becomes three: ``name + "_unobserved"`` (a latent draw from ``fn``, sampled by
            MCMC or learnt by a guide), ``name + "_observed"`` (log-probability masked by
            ``obs_mask``) and the deterministic ``name`` holding
            ``where(obs_mask, obs, unobserved)``, which is returned. Unlike NumPyro: the
            latent entries at observed positions keep ``fn``'s log-probability instead of
            none (they are auxiliary draws that integrate out of the joint, whereas a flat
            improper density there makes NUTS trajectories never turn and a guide's scale
            diverge); and the observed site's value is ``where(obs_mask, obs, unobserved)``
            too, so placeholders such as NaN in ``obs`` give no NaN gradient. Needs ``obs``
            and an empty ``sample_shape``.

    Returns:
        the value: ``obs`` if given, else a draw of shape
        ``sample_shape + fn.batch_shape + fn.event_shape``; inside plates ``sample_shape``
        joins the batch shape and broadcasts with the plates' dims, as in NumPyro.
    """
    _check_name(name, "sample")
    if not isinstance(fn, Distribution):
        raise TypeError(
            f"Sample site '{name}': fn must be a jppl Distribution, got {type(fn).__name__}."
        )
    if obs is not None:
        obs = check_obs(name, obs)
    if obs_mask is not None:
        obs_mask = _check_obs_mask(name, obs, obs_mask, sample_shape)
        if HANDLER_STACK:
            return _masked_observe(name, fn, obs, obs_mask, rng_key, infer)
        # Without handlers there is nothing to impute with (as in NumPyro): return the data.
        return obs
    if not HANDLER_STACK:
        if obs is not None:
            return obs
        if rng_key is None:
            _raise_no_key({"name": name})
        return fn(rng_key=rng_key, sample_shape=sample_shape)
    msg = new_message(
        "sample",
        name,
        fn=fn,
        kwargs={"rng_key": rng_key, "sample_shape": tuple(sample_shape)},
        value=obs,
        is_observed=obs is not None,
        infer={} if infer is None else dict(infer),
    )
    return apply_stack(msg)["value"]


def _check_obs_mask(name: str, obs, obs_mask, sample_shape):
    if obs is None:
        raise ValueError(
            f"Sample site '{name}': obs_mask marks which entries of obs are observed, so it "
            "needs obs= as well."
        )
    if tuple(sample_shape):
        raise ValueError(
            f"Sample site '{name}': obs_mask cannot be combined with sample_shape="
            f"{tuple(sample_shape)}; put the site inside a plate instead."
        )
    if isinstance(obs_mask, bool | np.bool_):
        return jnp.asarray(obs_mask)
    if not isinstance(obs_mask, jax.Array | np.ndarray) or obs_mask.dtype != jnp.bool_:
        raise TypeError(
            f"Sample site '{name}': obs_mask must be a boolean array, got "
            f"{getattr(obs_mask, 'dtype', type(obs_mask).__name__)}."
        )
    return obs_mask


def _masked_observe(name: str, fn: Distribution, obs, obs_mask, rng_key, infer):
    """Split a partly observed site into imputed, observed and combined sites (see sample)."""
    infer = {} if infer is None else infer
    unobserved = apply_stack(
        new_message(
            "sample",
            f"{name}_unobserved",
            fn=fn,
            kwargs={"rng_key": rng_key, "sample_shape": ()},
            infer=dict(infer),
        )
    )["value"]
    # The mask has batch shape; line it up with the batch dims of the values.
    batch_mask = jnp.reshape(obs_mask, jnp.shape(obs_mask) + (1,) * fn.event_dim)
    # Placeholders at unobserved entries (often NaN) are replaced by the imputed values: their
    # log-probability is masked out, but a NaN there would still make its gradient NaN.
    filled = jnp.where(batch_mask, obs, unobserved)
    apply_stack(
        new_message(
            "sample",
            f"{name}_observed",
            fn=fn.mask(obs_mask),
            kwargs={"rng_key": rng_key, "sample_shape": ()},
            value=filled,
            is_observed=True,
            mask=obs_mask,
            infer=dict(infer),
        )
    )
    return deterministic(name, filled)


def _param_init(init_value, *args, **kwargs):
    return init_value(*args) if callable(init_value) else init_value


def param(name: str, init_value=None, constraint=None, event_dim: int | None = None):
    """A learnable parameter, e.g. of a guide.

    Args:
        name: unique site name.
        init_value: initial (constrained) value, or a callable ``f(rng_key) -> array``
            (it then needs a ``seed`` handler).
        constraint: the set the value lives in (default ``constraints.real``); optimizers
            work on the unconstrained value through ``biject_to(constraint)``.
        event_dim: number of rightmost dims that form one event (for plates).

    Returns:
        the parameter's current (constrained) value.
    """
    from jppl.distributions import constraints

    _check_name(name, "param")
    if constraint is None:
        constraint = constraints.real
    if not HANDLER_STACK:
        if callable(init_value):
            raise ValueError(
                f"param site '{name}': a callable init_value needs a PRNG key; run the model "
                "under jppl.handlers.seed."
            )
        return init_value
    args: tuple = (init_value,)
    if callable(init_value):
        key = prng_key()
        if key is None:
            raise ValueError(
                f"param site '{name}': a callable init_value needs a PRNG key; run the model "
                "under jppl.handlers.seed."
            )
        args = (init_value, key)
    msg = new_message(
        "param",
        name,
        fn=_param_init,
        args=args,
        kwargs={"constraint": constraint, "event_dim": event_dim},
    )
    return apply_stack(msg)["value"]


def lazy_param(name: str, init: Callable[[], Any]) -> Any:
    """A real-valued ``param`` site (any pytree) whose initial value ``init()`` is computed only
    if no handler (``substitute``, SVI) supplies one.

    Unlike ``param(name, callable)``, ``init`` takes no PRNG key and is not called when the
    value is given, so e.g. ``log_density`` of a model with a network needs no ``seed``
    handler; ``init`` may draw its own key (``prng_key()``) when it does run.
    """
    from jppl.distributions import constraints

    _check_name(name, "param")
    msg = new_message(
        "param",
        name,
        fn=lambda init, **_: init(),
        args=(init,),
        kwargs={"constraint": constraints.real, "event_dim": None},
    )
    return apply_stack(msg)["value"]


def _identity(value):
    return value


def mutable(name: str, init_value=None):
    """State that a model reads and updates across runs (e.g. running batch statistics).

    A site of type ``"mutable"``: its value is ``init_value`` (typically a dict the model
    updates in place) unless a handler provides one, e.g. ``substitute(model,
    data={name: state})`` with the state recorded by ``trace`` in a previous run (a dict is
    copied, so the recorded state is not changed by the new run). Outside any handler it
    returns ``init_value``.
    """
    _check_name(name, "mutable")
    if not HANDLER_STACK:
        return init_value
    msg = new_message("mutable", name, fn=_identity, args=(init_value,), value=init_value)
    return apply_stack(msg)["value"]


def deterministic(name: str, value):
    """Record ``value`` in the trace under ``name`` (e.g. a derived quantity); returns it."""
    _check_name(name, "deterministic")
    if not HANDLER_STACK:
        return value
    msg = new_message("deterministic", name, value=value)
    return apply_stack(msg)["value"]


def factor(name: str, log_factor):
    """Add ``log_factor`` (array of batch shape) to the model's log density."""
    unit = Unit(log_factor)
    return sample(name, unit, obs=jnp.empty(jnp.shape(log_factor) + (0,)))


def prng_key():
    """A fresh PRNG key from the enclosing ``seed`` handler, or ``None`` if there is none."""
    if not HANDLER_STACK:
        return None
    msg = new_message("prng_key", "_prng_key")
    return apply_stack(msg)["value"]


def subsample(data, event_dim: int):
    """Slice ``data`` along the dims of the enclosing subsampled plates.

    ``data``: array whose plate dims (counted left of its ``event_dim`` rightmost dims) have the
    full plate size; returns it indexed by each plate's minibatch indices.
    """
    if not HANDLER_STACK:
        return data
    msg = new_message("subsample", "_subsample", value=data, kwargs={"event_dim": event_dim})
    return apply_stack(msg)["value"]


def get_mask():
    """The boolean mask that enclosing ``mask`` handlers apply to a new site (or None)."""
    if not HANDLER_STACK:
        return None
    msg = new_message("mask", "_mask")
    apply_stack(msg)
    return msg["mask"]


def _subsample_indices(size: int, subsample_size: int, rng_key=None):
    if subsample_size == size:
        return jnp.arange(size)
    if rng_key is None:
        return None
    return jax.random.permutation(rng_key, size)[:subsample_size]


class plate(Messenger):
    """Conditionally independent batch dimension ``dim`` of length ``size``.

    Sites inside have their distribution's batch shape broadcast so that dim ``dim`` (a
    negative index into the batch shape, allocated automatically when ``None``) has length
    ``subsample_size`` (default ``size``). With ``subsample_size < size``, the log-probability
    of each site is scaled by ``size / subsample_size`` so the estimate of the full-data log
    density stays unbiased; ``with plate(...) as idx`` gives the minibatch indices.

    ``shard="data"`` (a mesh axis name) splits the plate across the devices of that axis of
    the mesh that an inference front end activates (``SVI(..., mesh=m)``, see
    :mod:`jppl.parallel`): each device evaluates the log-probabilities (and their gradients)
    of its own ``subsample_size / axis size`` entries, and the partial sums are all-reduced.
    Without an active mesh it does nothing. With a mesh, the axis must exist and divide
    ``subsample_size`` (else a ``ValueError``): pad the data and mask the padding out with
    ``jppl.handlers.mask``.
    """

    def __init__(
        self,
        name: str,
        size: int,
        subsample_size: int | None = None,
        dim: int | None = None,
        shard: str | None = None,
    ):
        _check_name(name, "plate")
        size = _as_int(size, f"plate '{name}': size")
        if size < 1:
            raise ValueError(f"plate '{name}': size must be a positive int, got {size}")
        if subsample_size is None:
            subsample_size = size
        subsample_size = _as_int(subsample_size, f"plate '{name}': subsample_size")
        if not 1 <= subsample_size <= size:
            raise ValueError(
                f"plate '{name}': subsample_size must be in [1, size={size}], got {subsample_size}"
            )
        if dim is not None and (not isinstance(dim, int) or dim >= 0):
            raise ValueError(f"plate '{name}': dim must be a negative int, got {dim!r}")
        if shard is not None and (not isinstance(shard, str) or not shard):
            raise TypeError(
                f"plate '{name}': shard must be a mesh axis name (e.g. 'data') or None, "
                f"got {shard!r}"
            )
        self.name = name
        self.shard = shard
        self.size = size
        self.subsample_size = subsample_size
        self._declared = (size, subsample_size, shard)
        self._requested_dim = dim
        self.dim: int | None = dim
        self._indices = None
        self._sharding = None
        super().__init__()

    def _allocate_dim(self) -> int:
        used = {h.dim for h in HANDLER_STACK if isinstance(h, plate) and h is not self}
        if self._requested_dim is not None:
            if self._requested_dim in used:
                raise ValueError(
                    f"plate '{self.name}': dim {self._requested_dim} is already used by an "
                    "enclosing plate."
                )
            return self._requested_dim
        dim = -1
        while dim in used:
            dim -= 1
        return dim

    def __enter__(self):
        self.dim = self._allocate_dim()
        # A handler may run the plate on a block of its entries (see jppl.model.blocked).
        self.size, self.subsample_size, self.shard = self._declared
        for handler in HANDLER_STACK:
            resize = getattr(handler, "resize_plate", None)
            if resize is not None:
                self.size, self.subsample_size, self.shard = resize(
                    self.name, self.size, self.subsample_size, self.shard
                )
        # A sharded plate asks the active mesh context (jppl.parallel.use_mesh) to check its
        # size, to replicate its minibatch indices and to pick the rows of sharded data; the
        # core knows nothing else of meshes. Without one the plate runs on one device.
        self._sharding = innermost("take_sharded") if self.shard is not None else None
        if self._sharding is not None:
            self._sharding.check_plate_shard(self.name, self.shard, self.subsample_size)
        msg = new_message(
            "plate",
            self.name,
            fn=_subsample_indices,
            args=(self.size, self.subsample_size),
            kwargs={"rng_key": None},
            scale=1.0,
        )
        indices = apply_stack(msg)["value"] if HANDLER_STACK else None
        if indices is None:
            if self.subsample_size < self.size:
                raise ValueError(
                    f"plate '{self.name}': drawing a minibatch of {self.subsample_size} of "
                    f"{self.size} needs a PRNG key. Run the model under jppl.handlers.seed, or "
                    f"substitute the indices: substitute(model, {{'{self.name}': indices}})."
                )
            indices = jnp.arange(self.size)
        if self._sharding is not None and self.subsample_size < self.size:
            # A copy of the minibatch indices on every device: each device then picks its own
            # rows of the sharded data and only the minibatch is reduced across devices.
            indices = self._sharding.replicated_indices(indices)
        self._indices = indices
        super().__enter__()
        return indices

    def process_message(self, msg: Message) -> None:
        kind = msg["type"]
        if kind not in ("sample", "param", "deterministic", "subsample"):
            return
        frame = CondIndepStackFrame(self.name, self.dim, self.subsample_size, self.shard)
        msg["cond_indep_stack"] = list(msg["cond_indep_stack"]) + [frame]
        if kind == "subsample":
            self._subsample(msg)
        elif kind == "sample":
            self._broadcast(msg)
            if self.subsample_size < self.size:
                ratio = self.size / self.subsample_size
                msg["scale"] = ratio if msg["scale"] is None else msg["scale"] * ratio

    def _broadcast(self, msg: Message) -> None:
        # As in NumPyro, `sample_shape` joins the batch shape inside a plate and broadcasts
        # with the plates' dims (so `sample_shape=(10,)` can fill a plate of size 10).
        fn = msg["fn"]
        sample_shape = tuple(msg["kwargs"].get("sample_shape", ()))
        batch_shape = sample_shape + tuple(fn.batch_shape)
        # The batch shape the enclosing plates seen so far (this one included) ask for.
        frames = msg["cond_indep_stack"]
        expected = [1] * max(-f.dim for f in frames)
        for f in frames:
            expected[f.dim] = f.size
        n = max(len(batch_shape), len(expected))
        padded = (1,) * (n - len(batch_shape)) + batch_shape
        plates = (1,) * (n - len(expected)) + tuple(expected)
        target = []
        for have, want in zip(padded, plates, strict=True):
            if have != want and 1 not in (have, want):
                raise ValueError(
                    f"Sample site '{msg['name']}' inside plate '{self.name}' (size "
                    f"{self.subsample_size} at batch dim {self.dim}): its batch shape "
                    f"{batch_shape} (sample_shape {sample_shape} + distribution batch shape "
                    f"{tuple(fn.batch_shape)}) does not broadcast with the plates' shape "
                    f"{tuple(expected)}."
                )
            target.append(max(have, want))
        if sample_shape:
            msg["kwargs"]["sample_shape"] = ()
        if tuple(target) != tuple(fn.batch_shape):
            msg["fn"] = fn.expand(tuple(target))

    def postprocess_message(self, msg: Message) -> None:
        # A param with an `event_dim` is subsampled along this plate's dim once its (full)
        # value is known; `trace` further out has already recorded the full value, which is
        # what an optimizer stores (as in NumPyro).
        if msg["type"] != "param" or self.subsample_size == self.size:
            return
        event_dim = msg["kwargs"].get("event_dim")
        if event_dim is None:
            return
        value = msg["value"]
        shape = jnp.shape(value)
        axis = self.dim - event_dim
        if len(shape) < -axis or shape[axis] == 1:
            return
        if shape[axis] != self.size:
            raise ValueError(
                f"param site '{msg['name']}' (event_dim={event_dim}) inside plate "
                f"'{self.name}' (size {self.size}, dim {self.dim}): its value of shape {shape} "
                f"has size {shape[axis]} at dim {axis}; expected {self.size} (or 1)."
            )
        msg["value"] = jnp.take(value, self._indices, axis=axis)

    def _subsample(self, msg: Message) -> None:
        data = msg["value"]
        if self.subsample_size == self.size:
            return
        event_dim = msg["kwargs"]["event_dim"]
        axis = jnp.ndim(data) - event_dim + self.dim
        if axis < 0 or jnp.shape(data)[axis] != self.size:
            raise ValueError(
                f"subsample inside plate '{self.name}': data of shape {jnp.shape(data)} "
                f"(event_dim={event_dim}) has no dim of size {self.size} at plate dim {self.dim}."
            )
        if self._sharding is not None:
            msg["value"] = self._sharding.take_sharded(data, self._indices, axis, self.shard)
        else:
            msg["value"] = jnp.take(data, self._indices, axis=axis)


@contextmanager
def plate_stack(prefix: str, sizes: Sequence[int], rightmost_dim: int = -1) -> Iterator[None]:
    """Contiguous plates ``{prefix}_0, {prefix}_1, ...`` for the batch shape ``sizes``.

    The plate of ``sizes[-1 - i]`` is named ``f"{prefix}_{i}"`` and sits at dim
    ``rightmost_dim - i``, so the dims ``rightmost_dim - len(sizes) + 1 ... rightmost_dim``
    have shape ``sizes``.
    """
    if isinstance(rightmost_dim, bool) or not isinstance(rightmost_dim, int) or rightmost_dim >= 0:
        raise ValueError(
            f"plate_stack '{prefix}': rightmost_dim must be a negative int, got {rightmost_dim!r}"
        )
    with ExitStack() as stack:
        for i, size in enumerate(reversed(list(sizes))):
            stack.enter_context(plate(f"{prefix}_{i}", size, dim=rightmost_dim - i))
        yield


def _as_int(value, what: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got {value!r}")
    try:
        as_int = int(value)
    except (TypeError, jax.errors.ConcretizationTypeError) as e:
        raise TypeError(f"{what} must be a concrete int, got {value!r}") from e
    if as_int != value:
        raise TypeError(f"{what} must be an int, got {value!r}")
    return as_int
