"""NumPyro's ``numpyro.contrib.control_flow``: :func:`scan` and :func:`cond` over model code.

``scan(f, init, xs)`` is :func:`jax.lax.scan` whose body ``f(carry, x)`` may call jppl
primitives; ``cond(pred, true_fun, false_fun, operand)`` is :func:`jax.lax.cond` with
primitives in both branches. The body is traced once, so cost and compile time do not grow
with the number of steps.

How the handlers around the call act on the body (the "outer" handlers, those active when
``scan``/``cond`` is called):

1. *Per step.* The body runs under a step handler (:class:`_StepHandler`) pushed on top of the
   outer stack. It stops every message of the body and walks the outer handlers itself,
   innermost first, giving each the per-step message:

   * ``seed``: a per-step key, ``fold_in`` of one key drawn from that ``seed`` before the loop
     with the step index;
   * ``substitute``, ``condition``, ``replay`` (and any other handler that sets a value, such
     as the one behind the potential energy): a value with a leading axis of length
     ``length`` is read at the step (``value[t]``); a value with the shape of one step (e.g.
     from an ``init_to_*`` strategy called on the per-step site) is used as it is;
   * ``plate`` and ``scope``: applied to the per-step message (broadcasting, frames, names),
     so the dims of a plate around the ``scan`` call sit to the right of the time axis;
   * any other handler sees a *copy* of the per-step message with its state restored
     afterwards; only the value, ``is_observed``, the key, ``infer`` and ``stop`` it sets are
     kept. Its real effect (a scale, a mask, recording) is applied to the stacked site.

2. *Stacked.* After the loop, each ``sample``/``deterministic`` site ``name`` of the body is
   sent once more through the outer handlers (all but those of the per-step list above) with
   its values stacked along a new leading time axis, shape ``(length, ...)``. Its ``fn`` is a
   :class:`StackedDistribution` over the stacked value: ``log_prob`` gives the per-step log
   densities ``(length, *batch)`` and its ``support`` is the body site's support. So
   ``trace`` records the stacked site, and the log density, the unconstrained space,
   initialization (NUTS, HMC), autoguides and ``Predictive`` read it like any other site.

``cond`` does the same with one "step" per branch and no time axis. Calls nest (a ``cond``
or a ``scan`` inside a ``scan`` body): an inner site is stacked once per enclosing loop, time
axes outermost first. Differences from NumPyro: a ``plate`` around the call works (NumPyro
raises); a ``param`` site in the body raises (NumPyro records a stacked param that is never
learnt); a substituted value with fewer than ``length`` steps raises (NumPyro draws the rest).
Enumerated discrete sites in a ``scan`` body (``history=1``, ``reverse=False``) are summed out
exactly, at a cost linear in the length (:func:`jppl.model.enum.scan_factor`); not in ``cond``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jppl.distributions.constraints import Constraint
from jppl.distributions.distribution import Distribution
from jppl.enumerate import markov
from jppl.handlers import (
    collapse,
    condition,
    do,
    reparam,
    replay,
    scope,
    seed,
    substitute,
)
from jppl.model.enum import PREV
from jppl.primitives import Message, Messenger, new_message, plate
from jppl.stack import HANDLER_STACK, innermost

__all__ = ["StackedDistribution", "cond", "scan"]

_SITE_TYPES = ("sample", "deterministic")


# ---------------------------------------------------------------------------------------------
# The stacked distribution of a scanned site
# ---------------------------------------------------------------------------------------------


class StackedDistribution(Distribution):
    """``length`` independent per-step distributions, stacked along a new leading batch dim.

    The distribution of a ``sample`` site of a :func:`scan` body over all its steps: step
    ``t`` of the value, ``value[t]``, follows the body's distribution at step ``t``.

    Args:
        base: the per-step distribution with every pytree leaf stacked along a leading axis of
            size ``length`` (as :func:`jax.lax.scan` returns it).
        support: the per-step support with its leaves stacked likewise, each leaf first
            broadcast (by leading 1s) to the ndim of one step's value, so that it lines up
            with the stacked value.
        length: number of steps ``T``.
        batch_shape, event_shape: those of one step.
        time_first: the values' time axis is their first axis, whatever their ndim (a site
            enumerated in the body: one step's value has the enumeration dims to the left of
            its batch shape).

    ``batch_shape`` is ``(T, *batch_shape)``; ``log_prob(value)`` of a value of shape
    ``(*extra, T, *batch_shape, *event_shape)`` has shape ``(*extra, T, *batch_shape)``.
    """

    def __init__(
        self,
        base: Distribution,
        support: Constraint,
        length: int,
        batch_shape: tuple[int, ...],
        event_shape: tuple[int, ...],
        time_first: bool = False,
    ):
        leaves, treedef = jax.tree_util.tree_flatten(base)
        self._time_first = bool(time_first)
        # Kept flat: the stacked leaves rebuild a per-step distribution only inside `vmap`
        # (a rebuilt stacked one would recompute a wrong batch shape from them).
        self._leaves = list(leaves)
        self._treedef = treedef
        self._support = support
        self._length = int(length)
        self._has_rsample = bool(base.has_rsample)
        self._has_enumerate_support = bool(base.has_enumerate_support)
        super().__init__((self._length, *batch_shape), event_shape, validate_args=False)

    def _per_step(self) -> Distribution:
        """The stacked base (leaves with the leading time axis); use only under ``vmap``."""
        return jax.tree_util.tree_unflatten(self._treedef, self._leaves)

    @property
    def support(self) -> Constraint:  # type: ignore[override]
        return self._support

    @property
    def has_rsample(self) -> bool:  # type: ignore[override]
        return self._has_rsample

    @property
    def has_enumerate_support(self) -> bool:  # type: ignore[override]
        return self._has_enumerate_support

    def sample(self, key, sample_shape=()):
        sample_shape = tuple(sample_shape)
        keys = jax.random.split(key, self._length)
        draws = jax.vmap(lambda d, k: d.sample(k, sample_shape))(self._per_step(), keys)
        return jnp.moveaxis(draws, 0, len(sample_shape))

    def log_prob(self, value):
        value = jnp.asarray(value)
        if self._time_first:
            # an enumerated site: each step's value has the enumeration dims on its left
            return jax.vmap(lambda d, v: d.log_prob(v))(self._per_step(), value)
        extra = jnp.ndim(value) - len(self.batch_shape) - len(self.event_shape)
        if extra < 0:
            # A value broadcast over leading dims: give it the full shape first.
            value = jnp.broadcast_to(value, self.batch_shape + self.event_shape)
            extra = 0
        elif jnp.shape(value)[extra] != self._length:
            target = jnp.shape(value)[:extra] + self.batch_shape + self.event_shape
            value = jnp.broadcast_to(value, target)
        return jax.vmap(lambda d, v: d.log_prob(v), in_axes=(0, extra), out_axes=extra)(
            self._per_step(), value
        )

    @property
    def mean(self):
        return jax.vmap(lambda d: d.mean)(self._per_step())

    @property
    def variance(self):
        return jax.vmap(lambda d: d.variance)(self._per_step())

    def __repr__(self) -> str:
        return (
            f"<StackedDistribution of {self._treedef.num_leaves}-leaf per-step distribution, "
            f"batch_shape={self.batch_shape} event_shape={self.event_shape}>"
        )


# ---------------------------------------------------------------------------------------------
# Running a body under the outer handlers
# ---------------------------------------------------------------------------------------------


def _is_array(x) -> bool:
    return isinstance(x, jax.Array | np.ndarray | np.generic)


def _step_shape(msg: Message, before) -> tuple[int, ...] | None:
    """The shape of one step's value of ``msg`` (None: leave values of this type alone)."""
    kind = msg["type"]
    if kind == "sample":
        sample_shape = tuple(msg["kwargs"].get("sample_shape", ()))
        return sample_shape + msg["fn"].batch_shape + msg["fn"].event_shape
    if kind == "deterministic":
        return jnp.shape(before)
    if kind == "plate":
        return (msg["args"][1],)
    return None


def _step_value(msg: Message, value, before, index, length: int | None, source: str):
    """The value of step ``index`` that a handler gave to the per-step ``msg``.

    A value with a leading axis of size ``length`` on top of one step's shape holds all steps
    and is read at ``index``; a value with at most one step's ndim is used as it is (a value
    computed from the per-step site, e.g. by an ``init_to_*`` strategy).
    """
    if index is None or value is None:
        return value
    expected = _step_shape(msg, before)
    if expected is None:
        return value
    # the message of a nested scan's step: its value holds all steps of the inner loops
    expected = tuple(msg.get("_inner_lengths", ())) + expected
    shape = jnp.shape(value)
    if len(shape) <= len(expected):
        return value
    if len(shape) == len(expected) + 1 and shape[0] == length:
        return jnp.asarray(value)[index]
    raise ValueError(
        f"scan: the value that {source} gives to {msg['type']} site '{msg['name']}' has shape "
        f"{tuple(shape)}; expected the shape of one step {tuple(expected)}, or ({length},) + "
        f"{tuple(expected)} for all {length} steps (time leftmost)."
    )


def _check_body_site(msg: Message) -> None:
    """Reject site types that have no meaning per step of a ``scan``/``cond`` body."""
    kind = msg["type"]
    if kind == "param":
        raise NotImplementedError(
            f"param site '{msg['name']}' inside a scan/cond body: a parameter read at every "
            "step would be a different site per step. Create it outside the body (before "
            "the scan call) and use it in the body through the closure or the carry."
        )
    if kind == "mutable":
        raise NotImplementedError(
            f"mutable site '{msg['name']}' inside a scan/cond body is not supported; keep "
            "mutable state outside the body."
        )


def _enumerates(handler: Messenger, msg: Message) -> bool:
    """Whether ``handler`` is an enumeration handler (``jppl.enumerate.enum``) that would
    enumerate the per-step ``msg`` (supported in a ``scan`` body, not in ``cond``)."""
    if type(handler).__module__ != "jppl.enumerate" or type(handler).__name__ != "enum":
        return False
    return (
        msg["type"] == "sample"
        and not msg["is_observed"]
        and msg["infer"].get("enumerate") == "parallel"
    )


def _check_unsupported(handler: Messenger, msg: Message, in_scan: bool) -> None:
    """Raise for an outer handler that cannot act per step on the body site ``msg``
    (``in_scan``: a step of a ``scan``, else a ``cond`` branch)."""
    name = msg.get("name")
    if msg["type"] not in _SITE_TYPES:
        return
    if isinstance(handler, collapse):
        raise NotImplementedError(
            f"scan/cond: site '{name}' of the body is inside handlers.collapse; collapsing "
            "sites of a scan/cond body is not supported."
        )
    if isinstance(handler, do) and msg["type"] == "sample" and name in handler.data:
        raise NotImplementedError(
            f"scan/cond: handlers.do intervenes on site '{name}' of the body from outside the "
            "scan/cond call; put the do handler inside the body instead."
        )
    if isinstance(handler, reparam) and msg["type"] == "sample":
        config = handler.config
        strategy = config.get(name) if isinstance(config, dict) else config(msg)
        if strategy is not None:
            raise NotImplementedError(
                f"scan/cond: handlers.reparam reparameterizes site '{name}' of the body from "
                "outside the scan/cond call; put the reparam handler inside the body instead."
            )
    if _enumerates(handler, msg) and not in_scan:
        raise NotImplementedError(
            f"scan/cond: site '{name}' of the body is marked for parallel enumeration; "
            "enumerated sites are supported in the body of scan, not of cond."
        )


def _snapshot(handler: Messenger) -> tuple[dict, dict]:
    """The handler's attributes, and copies of the contents of its dict/list/set attributes."""
    attrs = dict(vars(handler))
    contents = {k: v.copy() for k, v in attrs.items() if isinstance(v, dict | list | set)}
    return attrs, contents


def _restore(handler: Messenger, state: tuple[dict, dict]) -> None:
    """Put back what :func:`_snapshot` saw, refilling the containers in place (others may
    hold them, e.g. the dict that ``trace`` returns)."""
    attrs, contents = state
    vars(handler).clear()
    vars(handler).update(attrs)
    for key, saved in contents.items():
        container = attrs[key]
        container.clear()
        if isinstance(container, list):
            container.extend(saved)
        else:
            container.update(saved)


def _probe(handler: Messenger, msg: Message, index, length: int | None) -> None:
    """Let ``handler`` process a copy of the per-step ``msg``; keep what it decides per step.

    The handler's attributes are restored afterwards, so nothing traced inside the loop body
    leaks into its state (e.g. an accumulated log-Jacobian); its real effect is applied when
    the stacked site is sent through it (:func:`_emit_site`).
    """
    trial = dict(msg)
    trial["kwargs"] = dict(msg["kwargs"])
    trial["infer"] = dict(msg["infer"])
    trial["cond_indep_stack"] = list(msg["cond_indep_stack"])
    state = _snapshot(handler)
    try:
        handler.process_message(trial)
    finally:
        _restore(handler, state)
    if trial["value"] is not msg["value"]:
        msg["value"] = _step_value(
            msg, trial["value"], msg["value"], index, length, type(handler).__name__
        )
    msg["is_observed"] = trial["is_observed"]
    if trial["kwargs"].get("rng_key") is not msg["kwargs"].get("rng_key"):
        msg["kwargs"]["rng_key"] = trial["kwargs"].get("rng_key")
    msg["infer"] = trial["infer"]
    if msg["type"] == "mask":
        msg["mask"] = trial["mask"]
    if trial.get("stop"):
        msg["stop"] = True


# Handlers that act only per step (the stacked site skips them): they set values or keys, or
# rewrite the message (plates, names) in a way the stacked site already carries.
_PER_STEP_ONLY = (seed, substitute, condition, replay, plate, scope)


class _StepHandler(Messenger):
    """Runs one step of a ``scan`` body (or one ``cond`` branch) on behalf of ``outer``.

    Pushed on top of the outer handlers, it stops every message of the body and walks the
    ``outer`` handlers itself (innermost first) as described in the module docstring, then
    records the final ``sample``/``deterministic`` sites in ``self.sites``.

    Args:
        outer: the handlers active at the ``scan``/``cond`` call, outermost first.
        index: the step (traced int) whose slice of stacked values to use; None for ``cond``.
        length: the number of steps (None for ``cond``).
        keys: ``{id(seed handler): key}``, this step's key of each outer ``seed``.
    """

    def __init__(self, outer: list, index, length: int | None, keys: dict[int, Any]):
        self.outer = outer
        self.index = index
        self.length = length
        self.seeds = {i: seed(rng_seed=k) for i, k in keys.items()}
        self.sites: OrderedDict[str, Message] = OrderedDict()
        super().__init__()

    def process_message(self, msg: Message) -> None:
        _check_body_site(msg)
        for handler in reversed(self.outer):
            self._apply(handler, msg)
            if msg.get("stop"):
                break
        msg["stop"] = True

    def _apply(self, handler: Messenger, msg: Message) -> None:
        _check_unsupported(handler, msg, self.length is not None)
        step_seed = self.seeds.get(id(handler))
        if step_seed is not None:
            # This step's key from that seed (or, for an enclosing scan/cond, from the seeds it
            # walks): keys must not be split from handlers that live outside this loop body.
            step_seed.process_message(msg)
        if isinstance(handler, seed):
            return
        if isinstance(handler, substitute | condition | replay | _StepHandler):
            # Their values may hold all steps (time leftmost): read the step's slice. An
            # enclosing step handler (nested scan/cond) gives the slice of its own step, which
            # holds all steps of this loop: it is told their number, to expect that axis.
            before = msg["value"]
            inner = msg.get("_inner_lengths", ())
            if isinstance(handler, _StepHandler) and self.length is not None:
                msg["_inner_lengths"] = (self.length, *inner)
            try:
                handler.process_message(msg)
            finally:
                if inner:
                    msg["_inner_lengths"] = inner
                else:
                    msg.pop("_inner_lengths", None)
            if msg["value"] is not before:
                msg["value"] = _step_value(
                    msg, msg["value"], before, self.index, self.length, type(handler).__name__
                )
        elif isinstance(handler, plate | scope):
            handler.process_message(msg)
        elif _is_enum_handler(handler):
            # `enum` enumerates the site per step (in the markov step opened around the loop);
            # `markov` has nothing to do per site.
            if hasattr(handler, "markov_enter") and msg["type"] == "sample":
                handler.process_message(msg)
        else:
            _probe(handler, msg, self.index, self.length)

    def postprocess_message(self, msg: Message) -> None:
        if msg["type"] not in _SITE_TYPES:
            return
        name = msg["name"]
        if name in self.sites:
            raise ValueError(
                f"scan/cond: site name '{name}' is used twice in one step of the body; every "
                "site of the body must have a unique name."
            )
        site = dict(msg)
        site.pop("stop", None)
        self.sites[name] = site


def _is_enum_handler(handler: Messenger) -> bool:
    return type(handler).__module__ == "jppl.enumerate" and type(handler).__name__ in (
        "enum",
        "markov",
    )


def _seed_keys(outer: list) -> dict[int, Any]:
    """One key from each outer ``seed`` handler, drawn once before the loop; steps fold in
    their index (so an outer seed advances by one key per ``scan``/``cond`` call).

    Inside the body of an enclosing scan/cond, the seeds outside it are reached through its
    step handler (whose per-step keys live in that body): one key is drawn through it.
    """
    keys = {}
    for handler in reversed(outer):
        if isinstance(handler, seed | _StepHandler):
            msg = new_message("prng_key", "_prng_key")
            handler.process_message(msg)
            msg.pop("stop", None)
            if msg["value"] is not None:
                keys[id(handler)] = msg["value"]
        if isinstance(handler, _StepHandler):
            break
    return keys


def _promote_leaves(tree, ndim: int):
    """``tree`` with each array leaf given leading 1s up to ``ndim`` dims (so that stacking
    along a new leading axis keeps the leaves aligned with the value of one step)."""

    def promote(leaf):
        if not _is_array(leaf) and not isinstance(leaf, jax.core.Tracer):
            return leaf
        return jnp.reshape(leaf, (1,) * max(0, ndim - jnp.ndim(leaf)) + jnp.shape(leaf))

    return jax.tree_util.tree_map(promote, tree)


def _split_site(site: Message) -> tuple[dict, dict]:
    """Split a recorded body site into ``(static, dynamic)`` parts.

    ``dynamic`` holds the arrays that the loop stacks (value, per-step ``fn`` and support,
    array masks and scales, array entries of ``infer``); ``static`` the rest. Per-step
    arrays are broadcast (leading 1s) to one step's batch ndim so they stay aligned once a
    time axis is prepended.
    """
    static: dict[str, Any] = {
        "type": site["type"],
        "name": site["name"],
        "is_observed": site["is_observed"],
        "cond_indep_stack": list(site["cond_indep_stack"]),
    }
    dynamic: dict[str, Any] = {"value": site["value"]}
    infer = dict(site["infer"])
    array_infer = {k: v for k, v in infer.items() if _is_array(v) or _is_tracer(v)}
    static["infer"] = {k: v for k, v in infer.items() if k not in array_infer}
    dynamic["infer"] = array_infer
    if site["type"] == "sample":
        fn = site["fn"]
        sample_shape = tuple(site["kwargs"].get("sample_shape", ()))
        if sample_shape:
            fn = fn.expand(sample_shape + fn.batch_shape)
        batch_ndim = len(fn.batch_shape)
        dynamic["fn"] = fn
        dynamic["support"] = _promote_leaves(fn.support, batch_ndim + len(fn.event_shape))
        static["batch_shape"] = fn.batch_shape
        static["event_shape"] = fn.event_shape
        for key in ("scale", "mask"):
            value = site[key]
            if _is_array(value) or _is_tracer(value):
                dynamic[key] = _promote_leaves(value, batch_ndim)
            else:
                static[key] = value
    return static, dynamic


def _is_tracer(x) -> bool:
    return isinstance(x, jax.core.Tracer)


def run_body(
    fn: Callable, args: tuple, outer: list, index, length: int | None, keys: dict[int, Any]
) -> tuple[Any, OrderedDict[str, Message]]:
    """Run ``fn(*args)`` (one step of a scan body, or a cond branch) under the outer handlers.

    Args:
        fn: the body.
        args: its arguments (``(carry, x)`` for a scan step, ``(operand,)`` for a branch).
        outer: the handlers active at the scan/cond call, outermost first.
        index: the step (traced int) whose slice of all-step values to use; None for cond.
        length: the number of steps (None for cond).
        keys: this step's key for each outer ``seed`` (``{id(seed): key}``).

    Returns:
        ``(fn's output, sites)``: the final ``sample``/``deterministic`` messages of the body,
        by name, in order.
    """
    step = _StepHandler(outer, index, length, keys)
    with step:
        out = fn(*args)
    return out, step.sites


def split_sites(sites: OrderedDict[str, Message]) -> tuple[list[dict], list[dict]]:
    """The static and the dynamic (stackable) parts of the sites of one body run, in order."""
    parts = [_split_site(site) for site in sites.values()]
    return [s for s, _ in parts], [d for _, d in parts]


def _emit_site(msg: Message) -> Message:
    """Send the stacked site ``msg`` (its value set) through the active handlers.

    Like :func:`jppl.primitives.apply_stack`, but the handlers that acted per step (seed,
    substitute, condition, replay, plate, scope) are skipped in ``process_message``.
    """
    seen = 0
    for handler in reversed(HANDLER_STACK):
        seen += 1
        if not isinstance(handler, _PER_STEP_ONLY):
            handler.process_message(msg)
        if msg.get("stop"):
            break
    for handler in HANDLER_STACK[len(HANDLER_STACK) - seen :]:
        handler.postprocess_message(msg)
    return msg


def emit_sites(statics: list[dict], dynamics: list[dict], length: int | None) -> None:
    """Send the body's sites through the active handlers, once each.

    ``length`` is the number of scan steps (the dynamic parts have a leading time axis of that
    size; a sample site's ``fn`` becomes a :class:`StackedDistribution`), or None for a
    ``cond`` (the parts are those of the branch taken).
    """
    for static, dynamic in zip(statics, dynamics, strict=True):
        infer = {**static["infer"], **dynamic["infer"]}
        if static["type"] == "deterministic":
            msg = new_message(
                "deterministic",
                static["name"],
                value=dynamic["value"],
                cond_indep_stack=static["cond_indep_stack"],
                infer=infer,
            )
        else:
            fn = dynamic["fn"]
            if length is not None:
                fn = StackedDistribution(
                    fn,
                    dynamic["support"],
                    length,
                    static["batch_shape"],
                    static["event_shape"],
                    time_first="_enumerate_dim" in infer or "_enum_names" in infer,
                )
            msg = new_message(
                "sample",
                static["name"],
                fn=fn,
                kwargs={"rng_key": None, "sample_shape": ()},
                value=dynamic["value"],
                is_observed=static["is_observed"],
                scale=dynamic.get("scale", static.get("scale")),
                mask=dynamic.get("mask", static.get("mask")),
                cond_indep_stack=static["cond_indep_stack"],
                infer=infer,
            )
        _emit_site(msg)


# ---------------------------------------------------------------------------------------------
# scan
# ---------------------------------------------------------------------------------------------


def _scan_length(xs, length) -> int:
    leaves = jax.tree_util.tree_leaves(xs)
    sizes = {int(jnp.shape(leaf)[0]) for leaf in leaves if jnp.ndim(leaf) > 0}
    if any(jnp.ndim(leaf) == 0 for leaf in leaves):
        raise ValueError("scan: every leaf of xs must have a leading axis to scan over.")
    if length is not None:
        if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 0:
            raise ValueError(f"scan: length must be a non-negative int, got {length!r}")
        length = int(length)
        if sizes and sizes != {length}:
            raise ValueError(
                f"scan: length={length} does not match the leading axis of xs {sorted(sizes)}."
            )
        return length
    if not sizes:
        raise ValueError("scan: give length= when xs is None (or has no leaves).")
    if len(sizes) > 1:
        raise ValueError(f"scan: the leaves of xs have different leading sizes {sorted(sizes)}.")
    return sizes.pop()


def scan(
    f: Callable,
    init,
    xs,
    length: int | None = None,
    reverse: bool = False,
    history: int = 1,
):
    """:func:`jax.lax.scan` whose body ``f(carry, x) -> (carry, y)`` may call jppl primitives.

    Each ``sample``/``deterministic`` site ``name`` of the body appears once in a trace, with
    its values stacked along a leading time axis (shape ``(length, ...)``, position ``t`` the
    step of ``xs[t]`` also with ``reverse=True``) and, for a sample site, ``fn`` a
    :class:`StackedDistribution` whose ``log_prob`` gives the per-step log densities
    ``(length, *batch)``. Handlers around the call act per step (see the module docstring):
    ``seed`` gives a fresh key per step; ``substitute``/``condition`` values keyed by site
    name with a leading time axis give step ``t`` its slice ``value[t]`` (a value shaped like
    one step is used at every step); plates around the call put their dims to the right of the
    time axis. Observed sites (``obs=`` from ``xs``) work as usual.

    Not supported (each raises ``NotImplementedError`` naming the site): ``param`` and
    ``mutable`` sites in the body (create parameters outside the body and close over them, as
    NumPyro's stacked param site is never learnt), ``do``/``reparam``/``collapse`` around the
    call acting on body sites (put them inside the body); with enumerated discrete sites in
    the body, ``history`` other than 1 and ``reverse=True``.

    Args:
        f: the body, ``f(carry, x) -> (new_carry, y)``.
        init: the initial carry (a pytree).
        xs: the pytree scanned along its leading axis, or None (then give ``length``).
        length: the number of steps (needed when ``xs`` is None).
        reverse: run from the last step to the first, as in :func:`jax.lax.scan`.
        history: how many previous steps a step depends on; it only matters for enumerated
            discrete sites (1 is supported), and is checked to be a non-negative int
            (NumPyro's 0 means no dependence between steps).

    Returns:
        ``(last carry, stacked ys)``, as :func:`jax.lax.scan`.
    """
    if isinstance(history, bool) or not isinstance(history, int | np.integer) or history < 0:
        raise ValueError(f"scan: history must be a non-negative int, got {history!r}")
    if not callable(f):
        raise TypeError(f"scan: f must be a callable f(carry, x), got {f!r}")
    length = _scan_length(xs, length)
    if not HANDLER_STACK:
        return lax.scan(f, init, xs, length=length, reverse=reverse)
    enumerator = innermost("markov_enter")
    if enumerator is not None:
        return _scan_enumerated(f, init, xs, length, reverse, history, enumerator)
    return _scan_stacked(f, init, xs, length, reverse)


def _scan_stacked(f, init, xs, length: int, reverse: bool, shift=None, time: str | None = None):
    """Run the body under ``lax.scan`` with the outer handlers acting per step, then emit its
    sites stacked along time. ``shift(new_carry, carry, y) -> (new_carry, y)`` is applied
    after each step; ``time`` names the time axis of enumerated sites (``infer``)."""
    outer = list(HANDLER_STACK)
    base_keys = _seed_keys(outer)
    statics: list[list[dict]] = []

    def body(state, x):
        i, carry = state
        index = length - 1 - i if reverse else i
        keys = {k: jax.random.fold_in(key, index) for k, key in base_keys.items()}
        (new_carry, y), sites = run_body(f, (carry, x), outer, index, length, keys)
        if shift is not None:
            new_carry, y = shift(new_carry, carry, y)
        static, dynamic = split_sites(sites)
        # `lax.scan` may trace the body again (e.g. to fix a weakly typed carry): keep the last.
        statics[:] = [static]
        return (i + 1, new_carry), (y, dynamic)

    (_, last), (ys, dynamic) = lax.scan(
        body, (jnp.asarray(0), init), xs, length=length, reverse=reverse
    )
    if time is not None:
        for static in statics[0]:
            static["infer"]["_scan_time"] = time
    emit_sites(statics[0], dynamic, length)
    return last, ys


def _move_enum_dims(x, moves: dict[int, int], like, what: str):
    """``x`` with each enumeration dim ``src`` of ``moves`` moved to ``moves[src]``, then
    shaped like ``like`` (leading size-1 dims dropped, broadcast)."""
    if not (_is_array(x) or _is_tracer(x)):
        return x
    for src, dst in moves.items():
        if jnp.ndim(x) < -src or jnp.shape(x)[src] == 1:
            continue
        if jnp.ndim(x) >= -dst and jnp.shape(x)[dst] != 1:
            raise ValueError(
                f"scan with enumeration (history=1): the {what} depends on the enumerated "
                "state of the previous step as well as the current one; carry only what "
                "depends on the current step (or use a Python loop with markov(history=2))."
            )
        x = jnp.swapaxes(x, src, dst)
    target = jnp.shape(like)
    while jnp.ndim(x) > len(target) and jnp.shape(x)[0] == 1:
        x = x[0]
    if jnp.shape(x) != target:
        try:
            x = jnp.broadcast_to(x, target)
        except ValueError as e:
            raise ValueError(
                f"scan with enumeration: a leaf of the {what} has shape {jnp.shape(x)} after "
                f"the first step and {target} after the later ones; keep the shapes of the "
                "carry (and of the outputs) the same at every step."
            ) from e
    return x


def _scan_enumerated(f, init, xs, length: int, reverse: bool, history: int, enumerator):
    """``scan`` under enumeration: the first step runs unrolled, its sites named with the
    prefix ``_PREV_`` (as in NumPyro); the others run under ``lax.scan`` with their enumerated
    sites allocated once. After each step the enumeration dims of the carry move from the
    step's own dims back to the first step's, so the carry keeps its shape; the log density
    chains the steps along time (:func:`jppl.model.enum.scan_factor`)."""
    if history != 1:
        raise NotImplementedError(
            f"scan with enumeration supports history=1, got history={history}; write the loop "
            "in Python with markov(history=...) instead."
        )
    if reverse:
        raise NotImplementedError("scan with enumeration does not support reverse=True.")
    first_x = jax.tree_util.tree_map(lambda a: a[0], xs)
    # Plates keep their names: the first step's sites lie in the same plates as the others'.
    with markov(history=history), scope(prefix=PREV, divider="", hide_types=["plate"]):
        carry, first_y = f(init, first_x)
    first_ys = jax.tree_util.tree_map(lambda y: jnp.asarray(y)[None], first_y)
    if length == 1:
        return carry, first_ys
    rest = jax.tree_util.tree_map(lambda a: a[1:], xs)

    def shift(new_carry, old_carry, y):
        previous, current = enumerator.step_frames()
        moves = {
            dim: previous[PREV + name] for name, dim in current.items() if PREV + name in previous
        }
        new_carry = jax.tree_util.tree_map(
            lambda x, like: _move_enum_dims(x, moves, like, "carry"), new_carry, old_carry
        )
        y = jax.tree_util.tree_map(
            lambda x, like: _move_enum_dims(x, moves, like, "output"), y, first_y
        )
        return new_carry, y

    with markov(history=history):
        time = f"_time:{id(shift)}"
        last, ys = _scan_stacked(f, carry, rest, length - 1, False, shift=shift, time=time)
    ys = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), first_ys, ys)
    return last, ys


# ---------------------------------------------------------------------------------------------
# cond
# ---------------------------------------------------------------------------------------------


def _branch_signature(static: list[dict], dynamic: list[dict]) -> dict[str, tuple]:
    """``{site name: (type, observed, fn class, value shape)}`` of one branch's sites."""
    out = {}
    for s, d in zip(static, dynamic, strict=True):
        fn = d.get("fn")
        out[s["name"]] = (
            s["type"],
            s["is_observed"],
            type(fn).__name__ if fn is not None else None,
            tuple(jnp.shape(d["value"])),
        )
    return out


def _branch_mismatch(true_sig: dict, false_sig: dict) -> str | None:
    only_true = [n for n in true_sig if n not in false_sig]
    only_false = [n for n in false_sig if n not in true_sig]
    if only_true or only_false:
        return f"site(s) {only_true} appear only in true_fun and {only_false} only in false_fun"
    if list(true_sig) != list(false_sig):
        return f"the sites come in a different order ({list(true_sig)} vs {list(false_sig)})"
    for name, sig in true_sig.items():
        other = false_sig[name]
        if sig != other:
            fields = ("type", "is_observed", "distribution", "value shape")
            diffs = ", ".join(
                f"{field} {a!r} vs {b!r}"
                for field, a, b in zip(fields, sig, other, strict=True)
                if a != b
            )
            return f"site '{name}' differs between the branches: {diffs}"
    return None


def cond(pred, true_fun: Callable, false_fun: Callable, operand: Any) -> Any:
    """:func:`jax.lax.cond` whose branches ``true_fun(operand)``/``false_fun(operand)`` may
    call jppl primitives.

    As in NumPyro, both branches must have the same ``sample``/``deterministic`` sites (same
    names, in the same order, observed or not alike, the same distribution class, and values
    of the same shape and dtype); otherwise a ``ValueError`` names the site. The sites of the
    branch taken reach the handlers around the call once, so the log density (and NUTS) sees
    the density of that branch. Handlers act on the branch sites as on a :func:`scan` step
    (without a time axis): a value given by ``substitute``/``condition`` is used as it is.

    Args:
        pred: a boolean scalar choosing the branch.
        true_fun, false_fun: the branches, each ``f(operand) -> value`` (same output type).
        operand: their input (a pytree).

    Returns:
        the output of the branch taken.
    """
    if not HANDLER_STACK:
        return lax.cond(pred, true_fun, false_fun, operand)
    outer = list(HANDLER_STACK)
    keys = _seed_keys(outer)
    signatures: dict[bool, dict] = {}
    statics: dict[bool, list[dict]] = {}

    def branch(label: bool, fun: Callable) -> Callable:
        def run(op):
            value, sites = run_body(fun, (op,), outer, None, None, keys)
            static, dynamic = split_sites(sites)
            statics[label] = static
            signatures[label] = _branch_signature(static, dynamic)
            return value, dynamic

        return run

    try:
        value, dynamic = lax.cond(pred, branch(True, true_fun), branch(False, false_fun), operand)
    except TypeError as e:
        if len(signatures) == 2:
            problem = _branch_mismatch(signatures[True], signatures[False])
            if problem is not None:
                raise ValueError(
                    f"cond: both branches must have the same sample/deterministic sites with "
                    f"the same distribution classes and shapes; {problem}."
                ) from e
        raise
    if len(statics) == 2:
        problem = _branch_mismatch(signatures[True], signatures[False])
        if problem is None and statics[True] != statics[False]:
            problem = "their plates, masks or scales differ"
        if problem is not None:
            raise ValueError(
                f"cond: both branches must have the same sample/deterministic sites with the "
                f"same distribution classes and shapes; {problem}."
            )
    # Under `jax.disable_jit()` only the branch taken runs.
    emit_sites(next(iter(statics.values())), dynamic, None)
    return value
