"""Stochastic variational inference: optimize the ``param`` sites of a guide (and model).

::

    svi = SVI(model, guide, optax.adam(1e-2), Trace_ELBO())
    result = svi.run(jax.random.key(0), 2000, x, y)
    result.params                      # constrained values of the param sites
    svi.run(key, 1000, x, y, init_state=result.state)   # continues exactly where it stopped

The state is an :class:`SVIState` pytree holding the *unconstrained* parameters
(``biject_to(constraint).inv(value)`` of each ``param`` site), the optax state, the PRNG key,
the step counter and, as in NumPyro, the values of the ``mutable`` sites (e.g. running batch
statistics of ``flax_module(..., mutable=["batch_stats"])``): each step gives them to the
model and guide (without gradient) and keeps their values after the step. Step ``t`` uses
the key ``fold_in(state.rng_key, t)``, so a run that is stopped and resumed follows the same
trajectory as an uninterrupted one.

Long runs (:meth:`SVI.run`) are safe to interrupt and guarded against NaN:

* **Ctrl-C** (or a Jupyter interrupt) stops the run after the current compiled chunk (about
  0.25 s of work) and raises :class:`~jppl.runloop.RunInterrupted` whose ``.result`` is the
  :class:`SVIRunResult` of the finished steps (also kept as ``svi.last_result``); continuing
  with ``init_state=err.result.state`` repeats the uninterrupted trajectory bitwise.
* **Non-finite steps** (a loss or gradient not finite) are skipped by default: the last
  finite parameters and optimizer state are kept, the step counter advances, and one
  :class:`NonFiniteWarning` per run names the first bad step and the sites whose gradient was
  not finite. ``on_nonfinite="stop"`` raises :class:`NonFiniteError` at the first one (with
  the last finite state), ``"ignore"`` applies every update as it is (no check).

With ``SVI(..., mesh=m)`` (a mesh from :func:`jppl.parallel.make_mesh`) the same code runs on
many devices: the ELBO's particles are split over the mesh's ``sample`` axis and the
observations of plates with ``shard="data"`` over its ``data`` axis; parameters and optimizer
state are replicated on every device (so results can be read on every process).
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from os import PathLike
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh

from jppl import checkpoint
from jppl.distributions import constraints
from jppl.distributions.transforms import biject_to
from jppl.handlers import replay, seed, substitute, trace
from jppl.optim import Minimize
from jppl.parallel import pin_state, put_state, state_placement, use_mesh
from jppl.primitives import Messenger
from jppl.runloop import Pacer, RunInterrupted, StepBar, interruptible, is_interactive
from jppl.vi.elbo import ELBO

__all__ = [
    "SVI",
    "NonFiniteError",
    "NonFiniteReport",
    "NonFiniteWarning",
    "OnNonFinite",
    "SVIRunResult",
    "SVIState",
    "StepHealth",
    "copy_state",
    "load_state",
    "save_state",
]


class SVIState(NamedTuple):
    """State of an SVI run (a pytree).

    Attributes:
        params: ``{param site name: unconstrained array (or pytree of arrays)}``.
        optim_state: the optax optimizer state for ``params``.
        rng_key: PRNG key of the run; step ``t`` uses ``fold_in(rng_key, t)``.
        step: ``()`` int32, number of updates done so far.
        mutable_state: ``{mutable site name: value}`` of the model and guide (a pytree of
            arrays per site, e.g. a dict of running statistics), or ``None`` when they have no
            ``mutable`` site. Each step runs the model and guide with these values (under
            ``stop_gradient``) and stores their values after the run.
    """

    params: dict[str, jax.Array]
    optim_state: Any
    rng_key: jax.Array
    step: jax.Array
    mutable_state: dict[str, Any] | None = None


class SVIRunResult(NamedTuple):
    """Result of :meth:`SVI.run`: constrained ``params``, final ``state``, ``losses`` ``(T,)``."""

    params: dict[str, jax.Array]
    state: SVIState
    losses: jax.Array


def _is_array(x) -> bool:
    return isinstance(x, jax.Array | np.ndarray)


def copy_state(state: Any) -> Any:
    """A copy of ``state`` (any pytree of arrays) in fresh buffers, with the same shardings.

    Steps that donate their input state (``SVI.run``, ``Trainer.fit``) work on such a copy, so
    the caller's state stays valid, and leaves that share one buffer get their own."""
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), state)


def _all_finite(tree) -> jax.Array:
    """``()`` bool: every float leaf of ``tree`` is finite (one fused reduction per leaf)."""
    ok = jnp.asarray(True)
    for leaf in jax.tree_util.tree_leaves(tree):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            ok = ok & jnp.all(jnp.isfinite(leaf))
    return ok


# ---------------------------------------------------------------------------------------------
# Non-finite steps
# ---------------------------------------------------------------------------------------------

OnNonFinite = Literal["warn", "stop", "ignore"]
"""What a run does with a non-finite step (a loss or gradient not finite): ``"warn"``
skips it (keeps the last finite params and optimizer state; the step counter advances) and
warns once per run, ``"stop"`` raises :class:`NonFiniteError` at the first one, ``"ignore"``
applies the update as it is."""


class StepHealth(NamedTuple):
    """Finiteness of one step of :meth:`SVI.guarded_update` (a pytree of ``()`` bools).

    Attributes:
        ok: the loss and every gradient are finite (the update was applied).
        finite_loss: the loss is finite.
        finite_grads: ``{param site name: the gradient of every leaf of the site is finite}``.
    """

    ok: jax.Array
    finite_loss: jax.Array
    finite_grads: dict[str, jax.Array]


class NonFiniteReport(NamedTuple):
    """The non-finite steps of a run, accumulated inside its compiled loop (a pytree).

    Build it with :meth:`empty`, update it with :meth:`record` after each
    :meth:`SVI.guarded_update` (jit-able), and read it on the host with :meth:`message`.

    Attributes:
        count: ``()`` int32, non-finite steps seen.
        first_step: ``()`` int32, the state's step counter at the first of them (-1: none).
        first: the :class:`StepHealth` of that step (all true while ``count == 0``).
    """

    count: jax.Array
    first_step: jax.Array
    first: StepHealth

    @classmethod
    def empty(cls, params: dict[str, Any]) -> NonFiniteReport:
        """A report of no non-finite step, for the param sites of ``params``."""
        true = jnp.asarray(True)
        health = StepHealth(true, true, {name: true for name in params})
        return cls(jnp.zeros((), jnp.int32), jnp.full((), -1, jnp.int32), health)

    def record(self, step: jax.Array, health: StepHealth) -> NonFiniteReport:
        """Account one step: ``step`` is the step counter of the state it started from."""
        bad = ~health.ok
        first = bad & (self.count == 0)
        return NonFiniteReport(
            self.count + bad.astype(jnp.int32),
            jnp.where(first, jnp.asarray(step, jnp.int32), self.first_step),
            jax.tree_util.tree_map(lambda h, f: jnp.where(first, h, f), health, self.first),
        )

    def bad_sites(self) -> list[str]:
        """Param sites whose gradient was not finite at the first non-finite step (host)."""
        return [name for name, ok in self.first.finite_grads.items() if not bool(ok)]

    def message(self, where: str, total: int, start_step: int = 0, *, stopped: bool = False) -> str:
        """What happened, for a warning or an error (on the host, e.g. after ``device_get``).

        Args:
            where: the loop, e.g. ``"SVI.run"``.
            total: steps of the run (for "k of total steps were skipped").
            start_step: the step counter at the start of the run: the first bad step is also
                given as an index of the run's losses when it is not 0.
            stopped: the run stopped at the first non-finite step (``on_nonfinite="stop"``).
        """
        step = int(self.first_step)
        what = "loss" if not bool(self.first.finite_loss) else "gradient"
        at = f"step {step}" if start_step == 0 else f"step {step} (losses[{step - start_step}])"
        sites = self.bad_sites()
        if sites:
            named = ", ".join(repr(s) for s in sites[:5]) + (", ..." if len(sites) > 5 else "")
            detail = f"sites with a non-finite gradient: {named}"
        else:
            detail = "all gradients finite"
        head = f"{where}: non-finite {what} at {at} ({detail})"
        if stopped:
            return (
                f"{head}; stopped there (on_nonfinite='stop'): .result holds the last finite "
                f"state, after {step - start_step} steps of this run."
            )
        return (
            f"{head}; {int(self.count)} of {total} steps were skipped and the last finite state "
            "kept (on_nonfinite='stop' raises at the first, 'ignore' applies them)."
        )


class NonFiniteError(FloatingPointError):
    """A run met a non-finite step with ``on_nonfinite="stop"``.

    Attributes:
        result: the run's result up to the last finite step (an :class:`SVIRunResult` for
            :meth:`SVI.run`, a ``TrainResult`` for ``jppl.nn.Trainer.fit``).
        step: the state's step counter at the non-finite step.
        sites: the param sites whose gradient was not finite there.
    """

    def __init__(self, message: str, result: Any = None, *, step: int = -1, sites=()):
        super().__init__(message)
        self.result = result
        self.step = step
        self.sites = tuple(sites)


class NonFiniteWarning(RuntimeWarning):
    """A run skipped non-finite steps (``on_nonfinite="warn"``, or ``stable_update=True``)."""


def _nonfinite_mode(on_nonfinite: str, stable_update: bool, where: str) -> str:
    """Check ``on_nonfinite``; ``stable_update=True`` (skip) is the default ``"warn"``."""
    if on_nonfinite not in ("warn", "stop", "ignore"):
        raise ValueError(
            f"{where}: on_nonfinite must be 'warn', 'stop' or 'ignore', got {on_nonfinite!r}"
        )
    if stable_update and on_nonfinite == "ignore":
        raise ValueError(
            f"{where}: stable_update=True skips non-finite steps but on_nonfinite='ignore' "
            "applies them; give one of them."
        )
    return on_nonfinite


#: Steps of the loss buffer of a compiled chunk of :meth:`SVI.run` (its largest chunk). One
#: static size for every run, so runs share their compilation; the buffer (256 KiB in float32)
#: costs far less than a chunk, which lasts about 0.25 s unless steps take under 4 us.
_CHUNK_SIZE = 1 << 16


class SVI:
    """Stochastic variational inference.

    Args:
        model: the model (a callable using jppl primitives).
        guide: the guide: it samples every latent site of the model, and its ``param`` sites
            (with their ``constraint``) are what is optimized (``param`` sites of the model are
            optimized too).
        optim: an ``optax.GradientTransformation`` (applied in the unconstrained space), or
            :class:`jppl.optim.Minimize`: each step then minimizes the loss over the
            unconstrained params with that step's key fixed (a whole BFGS run, as NumPyro's
            ``Minimize``) and returns the loss at the minimum; its state is a
            :class:`jppl.optim.MinimizeState`. Not with mutable sites or ``shard_state``.
        loss: an :class:`~jppl.vi.elbo.ELBO` (e.g. ``Trace_ELBO()``).
        **static_kwargs: keyword arguments given to the model and the guide on every call
            (``init``, ``update``, ``run``, ``evaluate``), as in NumPyro; they are constants of
            the compiled steps. A keyword argument of a call must not repeat one of them.
        mesh: optional ``jax.sharding.Mesh`` (:func:`jppl.parallel.make_mesh`): particles are
            split over its ``sample`` axis, sharded plates over their axis (``data``), and the
            state is replicated. ``None``: plain single-device code. For a fixed key the losses
            and params do not depend on the mesh (up to the order of floating-point sums).
        shard_state: with a ``mesh``, split the parameters and the optimizer state over all
            its devices instead of replicating them (FSDP / ZeRO style,
            :func:`jppl.parallel.state_shardings`): each leaf along its largest dim
            divisible by the number of devices. XLA gathers the parameters where the step needs
            them and reduces their gradients, so each device stores ``1 / D`` of the
            state (the optimizer update is elementwise: the same numbers). The state's arrays
            are then sharded; on several processes read them with
            :func:`jppl.parallel.gather`.

    :meth:`run` donates the state's buffers from one compiled chunk to the next (a given
    ``init_state`` is copied first, so it stays valid).

    Attributes:
        last_result: the :class:`SVIRunResult` of the last :meth:`run`, set whether it
            finished, was interrupted (Ctrl-C: the steps finished) or stopped at a non-finite
            step (the steps before it); ``None`` before the first run.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        optim: optax.GradientTransformation,
        loss: ELBO,
        *,
        mesh: Mesh | None = None,
        shard_state: bool = False,
        **static_kwargs,
    ):
        if not callable(model) or not callable(guide):
            raise TypeError("SVI: model and guide must be callables.")
        if not (hasattr(optim, "init") and hasattr(optim, "update")):
            raise TypeError(
                "SVI: optim must be an optax.GradientTransformation or jppl.optim.Minimize, "
                f"got {optim!r}"
            )
        if not hasattr(loss, "loss"):
            raise TypeError(f"SVI: loss must be an ELBO (e.g. Trace_ELBO()), got {loss!r}")
        if mesh is not None and not isinstance(mesh, Mesh):
            raise TypeError(
                f"SVI: mesh must be a jax.sharding.Mesh (see jppl.parallel.make_mesh), got {mesh!r}"
            )
        if shard_state and mesh is None:
            raise ValueError("SVI: shard_state=True splits the state over a mesh; give `mesh`.")
        if shard_state and isinstance(optim, Minimize):
            raise ValueError(
                "SVI: shard_state=True does not apply to optim=Minimize(), which flattens all "
                "the params into one vector for BFGS (and a dense inverse Hessian); use "
                "shard_state=False."
            )
        self.mesh = mesh
        self.shard_state = bool(shard_state)
        self.model = model
        self.guide = guide
        self.optim = optim
        self.optimizer = optim  # the name of earlier jppl versions
        self.loss = loss
        self.static_kwargs = dict(static_kwargs)
        self.constraints: dict[str, constraints.Constraint] | None = None
        self.transforms: dict[str, Any] | None = None
        # Names of the mutable sites with a value (known with the param sites).
        self._mutable_names: list[str] = []
        self.last_result: SVIRunResult | None = None
        self._chunk_cache: dict = {}
        # Seconds per step of each compiled chunk loop (and argument shapes), measured by a
        # run: the next run sizes its first chunk from it.
        self._chunk_rates: dict = {}

    # -- parameters ---------------------------------------------------------------------------
    def _call_kwargs(self, kwargs: dict) -> dict:
        """``kwargs`` of a call plus the constructor's ``static_kwargs``."""
        if not self.static_kwargs:
            return kwargs
        repeated = sorted(set(kwargs) & set(self.static_kwargs))
        if repeated:
            raise TypeError(
                f"SVI: keyword arguments {repeated} were given to the call and as static "
                "keyword arguments of SVI(...); give each once."
            )
        return {**kwargs, **self.static_kwargs}

    def _trace_params(
        self, rng_key, args: tuple, kwargs: dict, init_params: dict | None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Run guide then model once; record param sites' values and constraints.

        The model's ``param`` sites read the guide's values of the same name (so a model
        ``param("w")`` without an initial value shares the guide's ``w``), as in NumPyro.

        Returns:
            ``(param values, mutable state)``: the values of the ``mutable`` sites after the
            run (the guide's where both have one; ``None`` if there is none), as NumPyro's
            ``SVI.init``.
        """
        kwargs = self._call_kwargs(kwargs)
        init_params = {} if init_params is None else dict(init_params)
        guide_key, model_key = jax.random.split(rng_key)
        guide_trace = trace(
            seed(_require_param_values(substitute(self.guide, data=init_params)), guide_key)
        ).get_trace(*args, **kwargs)
        shared = {
            name: site["value"] for name, site in guide_trace.items() if site["type"] == "param"
        }
        shared.update(init_params)
        model = substitute(self.model, data=shared)
        if getattr(self.loss, "multi_sample_guide", False):
            # The model sees one of the guide's samples (the first), as each loss evaluation does.
            first = {
                name: site["value"][0]
                for name, site in guide_trace.items()
                if site["type"] == "sample"
                and not site["is_observed"]
                and jnp.size(site["value"]) > 0
            }
            model = substitute(model, data=first)
        else:
            model = replay(model, trace=guide_trace)
        model_trace = trace(seed(_require_param_values(model), model_key)).get_trace(
            *args, **kwargs
        )
        _warn_guide_only_sites(model_trace, guide_trace)
        mutable_state = self._collect_mutable(model_trace, guide_trace)
        self._mutable_names = [] if mutable_state is None else sorted(mutable_state)
        values: dict[str, Any] = {}
        site_constraints: dict[str, constraints.Constraint] = {}
        for tr in (guide_trace, model_trace):
            for name, site in tr.items():
                if site["type"] != "param" or name in values:
                    continue
                values[name] = site["value"]
                site_constraints[name] = site["kwargs"].get("constraint") or constraints.real
        unknown = sorted(set(init_params) - set(values))
        if unknown:
            raise ValueError(
                f"SVI.init: init_params has entries {unknown} that are not param sites of the "
                f"guide or model (param sites: {sorted(values)})."
            )
        self.constraints = site_constraints
        self.transforms = {name: biject_to(c) for name, c in site_constraints.items()}
        return values, mutable_state

    def _collect_mutable(self, model_trace: dict, guide_trace: dict) -> dict[str, Any] | None:
        """The values of the ``mutable`` sites of a first run (the guide's where both have
        one; sites without a value left out), or ``None``; checks that the loss keeps them."""
        state = {}
        for tr in (model_trace, guide_trace):
            for name, site in tr.items():
                if site["type"] == "mutable" and jax.tree_util.tree_leaves(site["value"]):
                    state[name] = site["value"]
        if not state:
            return None
        names = sorted(state)
        if getattr(self.loss, "multi_sample_guide", False) and any(
            site["type"] == "mutable" for site in model_trace.values()
        ):
            raise ValueError(
                f"SVI: the model has mutable sites {names}; mutable state in the model is not "
                "supported with a multi-sample guide (multi_sample_guide=True)."
            )
        if not hasattr(self.loss, "loss_with_mutable_state"):
            raise TypeError(
                f"SVI: the model or guide has mutable sites {names}, but the loss "
                f"{self.loss!r} has no loss_with_mutable_state method to update them."
            )
        if getattr(self.loss, "num_particles", 1) > 1:
            raise ValueError(
                f"SVI: the model or guide has mutable sites {names}, whose state is kept only "
                f"with num_particles=1 (the loss {self.loss!r} has more: each particle would "
                "update it differently); use num_particles=1."
            )
        # Strongly typed arrays (as the params): the compiled steps keep their types.
        return jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype=jnp.asarray(v).dtype), state)

    def _require_init(self) -> dict[str, Any]:
        if self.transforms is None:
            raise RuntimeError(
                "SVI: the param sites are not known yet; call svi.init(rng_key, *args) (or "
                "svi.run) first."
            )
        return self.transforms

    def constrain(self, params: dict[str, Any]) -> dict[str, Any]:
        """Map unconstrained ``params`` to their constrained values.

        A param site's value may be a pytree (e.g. a network's parameters); its transform is
        applied to each leaf.
        """
        transforms = self._require_init()
        return {
            name: jax.tree_util.tree_map(transforms[name], value) for name, value in params.items()
        }

    def unconstrain(self, params: dict[str, Any]) -> dict[str, Any]:
        """Map constrained ``params`` to the unconstrained space (leafwise, see ``constrain``)."""
        transforms = self._require_init()
        return {
            name: jax.tree_util.tree_map(transforms[name].inv, value)
            for name, value in params.items()
        }

    def get_params(self, state: SVIState) -> dict[str, jax.Array]:
        """Constrained values ``{param site name: array}`` of ``state``."""
        return self.constrain(state.params)

    # -- steps --------------------------------------------------------------------------------
    def init(self, rng_key, *args, init_params: dict | None = None, **kwargs) -> SVIState:
        """Initial :class:`SVIState`.

        Runs the guide and then the model (replayed against it) once to collect their
        ``param`` sites and constraints (stored on this object as ``constraints`` and
        ``transforms``) and the values of their ``mutable`` sites after that run (the state's
        ``mutable_state``, as in NumPyro), and initializes the optimizer.

        Args:
            rng_key: PRNG key; it seeds the initial run, and the state's key is derived from it.
            *args, **kwargs: arguments of the model and guide.
            init_params: optional ``{param name: constrained value}`` overriding the
                ``init_value`` of those param sites.
        """
        init_key, run_key = jax.random.split(rng_key)
        with use_mesh(self.mesh):
            values, mutable_state = self._trace_params(init_key, args, kwargs, init_params)
        # Strongly typed leaves: weakly typed ones would change type after the first optimizer
        # step and make the jitted update compile again.
        params = jax.tree_util.tree_map(
            lambda v: jnp.asarray(v, dtype=jnp.asarray(v).dtype), self.unconstrain(values)
        )
        optim_state = self.optim.init(params)
        state = SVIState(params, optim_state, run_key, jnp.zeros((), jnp.int32), mutable_state)
        return self.place_state(state)

    def place_state(self, state: SVIState) -> SVIState:
        """Put ``state`` (e.g. loaded from a file) on the mesh as this SVI keeps it: replicated,
        or split over the devices with ``shard_state``. Without a mesh, ``state`` itself.
        With several processes every process must pass the same values."""
        return put_state(state, self.mesh, self.shard_state)

    def _loss_fn(self, step_key, args, kwargs, mutable_state=None) -> Callable:
        """``loss_fn(params) -> (loss, new mutable state)`` (the state ``None`` without one)."""
        kwargs = self._call_kwargs(kwargs)

        def loss_fn(params):
            param_map = self.constrain(params)
            new_mutable = None
            with use_mesh(self.mesh):
                if mutable_state is None:
                    loss = self.loss.loss(
                        step_key, param_map, self.model, self.guide, *args, **kwargs
                    )
                else:
                    # The state is data of the step: no gradient flows into it.
                    param_map.update(lax.stop_gradient(mutable_state))
                    out = self.loss.loss_with_mutable_state(
                        step_key, param_map, self.model, self.guide, *args, **kwargs
                    )
                    loss = out["loss"]
                    new_mutable = _merge_mutable(mutable_state, out["mutable_state"])
            if not hasattr(loss, "shape") or jnp.shape(loss) != ():
                raise TypeError(
                    f"SVI: the loss {self.loss!r} returned {type(loss).__name__} "
                    f"{jax.tree_util.tree_map(jnp.shape, loss)}, not a scalar; SVI optimizes "
                    "a scalar loss (e.g. an ELBO with sum_sites=True, the default)."
                )
            return loss, new_mutable

        return loss_fn

    def _check_mutable_state(self, state: SVIState) -> None:
        """A state without ``mutable_state`` for a model with mutable sites would silently
        restart them from their initial values at every step."""
        if self._mutable_names and getattr(state, "mutable_state", None) is None:
            raise ValueError(
                f"SVI: the model or guide has mutable sites {self._mutable_names}, but the "
                "state has no mutable_state (e.g. a state built by hand or for another "
                "model); start from svi.init(...)."
            )

    def _step(
        self, state: SVIState, args, kwargs, guard: bool
    ) -> tuple[SVIState, jax.Array, StepHealth | None]:
        """One update; with ``guard``, a non-finite one is skipped and reported (the one
        implementation of the check: :meth:`stable_update`, :meth:`guarded_update`, ``run``)."""
        self._require_init()
        self._check_mutable_state(state)
        step_key = jax.random.fold_in(state.rng_key, state.step)
        loss_fn = self._loss_fn(step_key, args, kwargs, state.mutable_state)
        if isinstance(self.optim, Minimize):
            if state.mutable_state is not None:
                raise ValueError(
                    f"SVI: optim=Minimize() does not support mutable sites "
                    f"({sorted(state.mutable_state)}): the loss it minimizes must be a function "
                    "of the params alone."
                )
            # The whole minimization with this step's key; the loss and gradient are those at
            # the minimum (as NumPyro returns the minimized loss).
            new_params, new_optim_state, loss, grads = self.optim.minimize(
                lambda params: loss_fn(params)[0], state.params, state.optim_state
            )
            new_mutable = None

            def apply(operands):
                return new_params, new_optim_state, operands[4]

        else:
            (loss, new_mutable), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
            new_params = None

            def apply(operands):
                grads, params, optim_state, _, new_mutable = operands
                updates, optim_state = self.optim.update(grads, optim_state, params)
                return optax.apply_updates(params, updates), optim_state, new_mutable

        def keep(operands):
            return operands[1], operands[2], operands[3]

        operands = (grads, state.params, state.optim_state, state.mutable_state, new_mutable)
        health = None
        if not guard:
            params, optim_state, mutable_state = apply(operands)
        else:
            # As NumPyro's stable update: a cond on the finiteness of the loss and gradients
            # (one reduction per gradient leaf). A cond rather than a select of the old and new
            # state: XLA then updates the state in place (a select cost copies of the params
            # and Adam moments: +40% or more per step for a 2^20-parameter model on CPU). The
            # updated params are not checked (another pass over them): optax turns finite
            # gradients into finite updates. A skipped step keeps the mutable state too (its
            # new values may come from the same non-finite computation).
            finite_loss = jnp.all(jnp.isfinite(loss))
            finite_grads = {name: _all_finite(g) for name, g in grads.items()}
            ok = finite_loss
            for flag in finite_grads.values():
                ok = ok & flag
            if new_params is not None:  # a line search can end at a non-finite point
                ok = ok & _all_finite(new_params)
            params, optim_state, mutable_state = lax.cond(ok, apply, keep, operands)
            health = pin_state(StepHealth(ok, finite_loss, finite_grads), self.mesh)
        new_state = SVIState(params, optim_state, state.rng_key, state.step + 1, mutable_state)
        # The state stays where it was; the loss is replicated (readable on every process).
        new_state = pin_state(new_state, self.mesh, self.shard_state)
        return new_state, pin_state(loss, self.mesh), health

    def update(self, state: SVIState, *args, **kwargs) -> tuple[SVIState, jax.Array]:
        """One optimization step; pure (``jax.jit``-able). Returns ``(new_state, loss)``."""
        new_state, loss, _ = self._step(state, args, kwargs, guard=False)
        return new_state, loss

    def stable_update(self, state: SVIState, *args, **kwargs) -> tuple[SVIState, jax.Array]:
        """Like :meth:`update`, but keeps the old params and optimizer state when the loss or
        the gradients are not finite (the step counter still advances, so the next step draws
        fresh particles). As NumPyro's ``stable_update``."""
        new_state, loss, _ = self._step(state, args, kwargs, guard=True)
        return new_state, loss

    def guarded_update(
        self, state: SVIState, *args, **kwargs
    ) -> tuple[SVIState, jax.Array, StepHealth]:
        """:meth:`stable_update` that also says what was not finite; pure (``jax.jit``-able).

        Returns:
            ``(new_state, loss, health)``: :class:`StepHealth` (``health.ok`` false: the step
            was skipped). Accumulate it over a loop with :class:`NonFiniteReport`.
        """
        return self._step(state, args, kwargs, guard=True)

    def evaluate(self, state: SVIState, *args, **kwargs) -> jax.Array:
        """The loss at ``state`` with the key of its current step (no update; the model and
        guide see the state's ``mutable_state``)."""
        self._require_init()
        self._check_mutable_state(state)
        step_key = jax.random.fold_in(state.rng_key, state.step)
        loss, _ = self._loss_fn(step_key, args, kwargs, state.mutable_state)(state.params)
        return pin_state(loss, self.mesh)

    # -- run ----------------------------------------------------------------------------------
    def _chunk_runner(
        self, size: int, mode: str, treedef, static_leaves, dynamic_mask, out_shardings
    ):
        """Compiled ``run_chunk(state, report, n, dynamic_leaves) -> (state, report, losses)``.

        Runs ``n <= size`` steps (``n`` is traced, so every chunk of a run, and of every run
        with the same arguments, uses the same compiled loop); ``losses`` ``(size,)``, of which
        ``losses[n:]`` is padding. ``mode`` (see :data:`OnNonFinite`): ``"ignore"`` runs
        :meth:`update` (``report`` is ``None``); ``"warn"`` runs :meth:`guarded_update` and
        records the non-finite steps in ``report`` (a :class:`NonFiniteReport`); ``"stop"``
        also ends the chunk at the first one, leaving the state from before it (its step
        counter included). The input state is donated.
        """
        cache_key = None
        try:
            shardings = jax.tree_util.tree_flatten(out_shardings)
            cache_key = (size, mode, treedef, tuple(static_leaves), tuple(dynamic_mask))
            cache_key += (tuple(shardings[0]), shardings[1])
            hash(cache_key)
        except TypeError:
            cache_key = None
        if cache_key is not None and cache_key in self._chunk_cache:
            return self._chunk_cache[cache_key], cache_key
        guard = mode != "ignore"

        def run_chunk(state, report, n, dynamic_leaves):
            it_dyn, it_static = iter(dynamic_leaves), iter(static_leaves)
            leaves = [next(it_dyn) if d else next(it_static) for d in dynamic_mask]
            args, kwargs = jax.tree_util.tree_unflatten(treedef, leaves)
            loss_type = jax.eval_shape(lambda s: self._step(s, args, kwargs, guard)[1], state)

            def cond(carry):
                i, _, rep, _ = carry
                if mode == "stop":
                    return (i < n) & (rep.count == 0)
                return i < n

            def body(carry):
                i, s, rep, losses = carry
                new, loss, health = self._step(s, args, kwargs, guard)
                if guard:
                    if mode == "stop":  # the state before the bad step is the result
                        new = new._replace(step=jnp.where(health.ok, new.step, s.step))
                    rep = rep.record(s.step, health)
                return i + 1, new, rep, losses.at[i].set(loss)

            losses = jnp.zeros((size,), loss_type.dtype)
            carry = (jnp.zeros((), jnp.int32), state, report, losses)
            _, state, report, losses = lax.while_loop(cond, body, carry)
            return state, report, losses

        runner = jax.jit(run_chunk, donate_argnums=0, out_shardings=out_shardings)
        if cache_key is not None:
            self._chunk_cache[cache_key] = runner
        return runner, cache_key

    def run(
        self,
        rng_key,
        num_steps: int,
        *args,
        progress_bar: bool = True,
        init_state: SVIState | None = None,
        init_params: dict | None = None,
        stable_update: bool = False,
        on_nonfinite: OnNonFinite = "warn",
        **kwargs,
    ) -> SVIRunResult:
        """Run ``num_steps`` updates in chunks of a compiled loop (one compilation per run).

        The chunks last about 0.25 s each once the speed is known (:class:`~jppl.runloop.Pacer`;
        the first ones are short); between them the bar is updated and Ctrl-C is checked.

        Args:
            rng_key: PRNG key (ignored when ``init_state`` is given).
            num_steps: number of updates.
            *args, **kwargs: arguments of model and guide (arrays are passed to the compiled
                loop; other values are baked into it).
            progress_bar: a live bar with the running loss and speed in a terminal or Jupyter;
                a single final line otherwise (e.g. in CI logs).
            init_state: continue from this state (e.g. ``result.state`` of a previous run): the
                trajectory is the same as that of one uninterrupted run.
            init_params: constrained initial values of param sites (see :meth:`init`).
            stable_update: skip non-finite steps (:meth:`stable_update`): what the default
                ``on_nonfinite="warn"`` does (kept for NumPyro compatibility).
            on_nonfinite: a step whose loss or gradient is not finite is ``"warn"``: skipped
                (the last finite params and optimizer state are kept, the step counter
                advances) with one :class:`NonFiniteWarning` per run naming the first such step
                and the sites with a non-finite gradient; ``"stop"``: the run stops there and
                raises :class:`NonFiniteError` (``.result``: the steps before it); ``"ignore"``:
                applied as it is (plain :meth:`update`, no check).

        Returns:
            :class:`SVIRunResult` ``(params, state, losses)`` with ``losses`` of shape
            ``(num_steps,)`` (a skipped step's loss is its non-finite value). Also kept as
            ``self.last_result``.

        Raises:
            jppl.runloop.RunInterrupted: Ctrl-C (SIGINT) during the run: it stops after the
                current chunk; ``.result`` (and ``self.last_result``) is the
                :class:`SVIRunResult` of the finished steps, and
                ``run(None, num_steps - err.done, ..., init_state=err.result.state)`` finishes
                the run as if it had not been interrupted.
            NonFiniteError: a non-finite step with ``on_nonfinite="stop"``.
        """
        num_steps = int(num_steps)
        if num_steps < 1:
            raise ValueError(f"SVI.run: num_steps must be >= 1, got {num_steps}")
        mode = _nonfinite_mode(on_nonfinite, stable_update, "SVI.run")
        if init_state is None:
            state = self.init(rng_key, *args, init_params=init_params, **kwargs)
        else:
            state = init_state
            if self.transforms is None:
                # Only the constraints are needed (for get_params); any key will do.
                self._trace_params(jax.random.key(0), args, kwargs, None)

        state = copy_state(state)  # the chunks donate the state's buffers
        start_step = int(state.step)
        leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
        dynamic_mask = [_is_array(leaf) for leaf in leaves]
        dynamic = [leaf for leaf, d in zip(leaves, dynamic_mask, strict=True) if d]
        static = [leaf for leaf, d in zip(leaves, dynamic_mask, strict=True) if not d]
        report = None
        if mode != "ignore":
            report = put_state(NonFiniteReport.empty(state.params), self.mesh)

        replicated = state_placement(None, self.mesh)
        out_shardings = (
            state_placement(state, self.mesh, self.shard_state),
            None if report is None else replicated,
            replicated,  # the losses
        )
        runner, cache_key = self._chunk_runner(
            _CHUNK_SIZE, mode, treedef, static, dynamic_mask, out_shardings
        )
        rate_key = None
        if cache_key is not None:
            avals = [(jnp.shape(x), jnp.result_type(x)) for x in jax.tree_util.tree_leaves(state)]
            avals += [(jnp.shape(x), jnp.result_type(x)) for x in dynamic]
            rate_key = (cache_key, tuple(avals))
        rate = self._chunk_rates.get(rate_key) if rate_key is not None else None
        pacer = Pacer(num_steps, cap=_CHUNK_SIZE, seconds_per_step=rate)
        compiling = rate is None  # the first chunk may include compilation: not timed

        progress = _Progress(num_steps, progress_bar and is_interactive()) if progress_bar else None
        chunks: list[np.ndarray] = []  # the losses of the finished steps, on the host
        seen: NonFiniteReport | None = None  # the report after the last chunk, on the host
        done = 0
        outcome = "finished"
        try:
            with interruptible() as stop_requested:
                while (length := pacer.next()) > 0:
                    start = time.perf_counter()
                    state, report, losses = runner(state, report, np.int32(length), dynamic)
                    # One small transfer per chunk (it also waits for the chunk to finish).
                    values, seen = jax.device_get((losses, report))
                    pacer.record(length, time.perf_counter() - start, compiled=compiling)
                    compiling = False
                    if mode == "stop" and int(seen.count) > 0:
                        length = int(seen.first_step) - start_step - done
                        outcome = "nonfinite"
                    chunks.append(values[:length])
                    done += length
                    if progress is not None:
                        progress.update(done, chunks[-1], seen)
                    if outcome == "finished" and done < num_steps and stop_requested():
                        outcome = "interrupted"
                    if outcome != "finished":
                        break
        except BaseException:
            # A second Ctrl-C or an error inside a chunk: its state is lost with it.
            if progress is not None:
                progress.close(np.concatenate(chunks) if chunks else None, seen, aborted=True)
            raise
        if rate_key is not None and pacer.rate is not None:
            self._chunk_rates[rate_key] = pacer.rate

        all_losses = np.concatenate(chunks)
        result = SVIRunResult(self.get_params(state), state, jnp.asarray(all_losses))
        self.last_result = result
        if progress is not None:
            progress.close(all_losses, seen, aborted=outcome != "finished")
        if mode == "warn" and seen is not None and int(seen.count) > 0:
            warnings.warn(seen.message("SVI.run", done, start_step), NonFiniteWarning, stacklevel=2)
        if outcome == "nonfinite":
            raise NonFiniteError(
                seen.message("SVI.run", done, start_step, stopped=True),
                result,
                step=int(seen.first_step),
                sites=seen.bad_sites(),
            )
        if outcome == "interrupted":
            raise RunInterrupted(
                f"SVI.run interrupted after {done} of {num_steps} steps; err.result (also "
                f"svi.last_result) holds them: svi.run(None, {num_steps - done}, ..., "
                "init_state=err.result.state) finishes the run as if uninterrupted.",
                result,
                done=done,
                total=num_steps,
            )
        return result

    # -- save / load --------------------------------------------------------------------------
    def save(self, path: str | PathLike, state: SVIState) -> str:
        """Save ``state`` to ``path`` atomically (``<stem>.npz``, or an Orbax directory for a
        state split over several processes; see :func:`save_state`). Returns the path."""
        return save_state(path, state)

    @staticmethod
    def load_state(path: str | PathLike, template: SVIState | None = None) -> SVIState:
        """Load a state saved by :meth:`save` (see :func:`load_state`). With
        ``template=svi.init(...)`` of an SVI on another mesh, the state is checked against it
        and restored onto its shardings."""
        return load_state(path, template)


def _merge_mutable(old: dict[str, Any], new: dict[str, Any] | None) -> dict[str, Any]:
    """The state after a step: ``old`` with the sites of ``new`` replaced (a site that the
    step did not visit keeps its value). A site must keep its structure, shapes and dtypes,
    as the state is carried through compiled loops."""
    merged = dict(old)
    for name, value in (new or {}).items():
        if name not in old:
            raise ValueError(
                f"SVI: mutable site '{name}' appeared during a step but was not in the state "
                f"(its sites: {sorted(old)}); a mutable site must be visited by SVI.init."
            )
        before = old[name]
        if jax.tree_util.tree_structure(value) != jax.tree_util.tree_structure(before):
            raise ValueError(
                f"SVI: mutable site '{name}' changed its structure during a step: "
                f"{jax.tree_util.tree_structure(before)} before, "
                f"{jax.tree_util.tree_structure(value)} after."
            )

        def same_type(new_leaf, old_leaf, name=name):
            if jnp.shape(new_leaf) != jnp.shape(old_leaf) or jnp.result_type(
                new_leaf
            ) != jnp.result_type(old_leaf):
                raise ValueError(
                    f"SVI: mutable site '{name}' has a leaf of shape {jnp.shape(old_leaf)} "
                    f"and dtype {jnp.result_type(old_leaf)} in the state but "
                    f"{jnp.shape(new_leaf)} {jnp.result_type(new_leaf)} after a step; a "
                    "mutable site must keep its shapes and dtypes."
                )
            return jnp.asarray(new_leaf, dtype=jnp.result_type(old_leaf))  # strongly typed

        merged[name] = jax.tree_util.tree_map(same_type, value, before)
    return merged


class _require_param_values(Messenger):
    """Raise for a param site with neither an initial value nor a value set by a handler."""

    def process_message(self, msg) -> None:
        if msg["type"] == "param" and msg["value"] is None and msg["args"][0] is None:
            raise ValueError(
                f"SVI.init: param site '{msg['name']}' has no initial value: give it an "
                "init_value, a guide param site of the same name, or an entry of init_params."
            )


def _warn_guide_only_sites(model_trace: dict, guide_trace: dict) -> None:
    """Warn about latent guide sites that the model lacks (and not marked auxiliary)."""
    missing = [
        name
        for name, site in guide_trace.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and not (site.get("infer") or {}).get("is_auxiliary")
        and (name not in model_trace or model_trace[name]["type"] != "sample")
    ]
    if missing:
        warnings.warn(
            f"SVI: the guide has sample sites that the model does not have: {missing}; mark "
            "them infer={'is_auxiliary': True} if they are auxiliary variables of the guide "
            "(their log q is counted in the ELBO).",
            UserWarning,
            stacklevel=4,
        )


# ---------------------------------------------------------------------------------------------
# Progress display
# ---------------------------------------------------------------------------------------------


def _finite_mean(values: np.ndarray) -> float:
    """Mean of the finite entries (a skipped step's loss is not finite); NaN if none."""
    finite = values[np.isfinite(values)]
    return float(np.mean(finite)) if finite.size else float("nan")


class _Progress:
    """The bar of :meth:`SVI.run`, fed after each chunk (live), or one summary line at the end."""

    def __init__(self, total: int, live: bool):
        self.total = total
        self.start = time.perf_counter()
        self.bar = StepBar(total, "SVI") if live else None
        self.done = 0
        self.init_loss: float | None = None

    @staticmethod
    def _skipped(report: NonFiniteReport | None) -> str:
        count = 0 if report is None else int(report.count)
        return f", skipped (non-finite): {count}" if count else ""

    def update(self, done: int, chunk_losses: np.ndarray, report: NonFiniteReport | None) -> None:
        if self.init_loss is None and chunk_losses.size:
            self.init_loss = float(chunk_losses[0])
        self.done = done
        if self.bar is None or self.init_loss is None:
            return
        self.bar.update(
            done,
            f"init loss: {self.init_loss:.4g}, avg. loss: {_finite_mean(chunk_losses):.4g}"
            + self._skipped(report),
        )

    def close(
        self, losses: np.ndarray | None, report: NonFiniteReport | None, aborted: bool = False
    ) -> None:
        summary = ""
        if losses is not None and losses.size:
            tail = losses[-max(1, len(losses) // 10) :]
            summary = (
                f"init loss: {float(losses[0]):.4g}, avg. loss (last {len(tail)}): "
                f"{_finite_mean(tail):.4g}" + self._skipped(report)
            )
        if self.bar is not None:
            self.bar.close(summary)
            return
        elapsed = time.perf_counter() - self.start
        speed = f", {self.done / elapsed:.4g} it/s" if elapsed > 0 and self.done else ""
        stopped = ", stopped" if aborted else ""
        print(
            f"SVI: {self.done}/{self.total} [{elapsed:.1f}s{speed}{stopped}] {summary}",
            file=sys.stderr,
            flush=True,
        )


# ---------------------------------------------------------------------------------------------
# Saving states (jppl.checkpoint: atomic, no pickle)
# ---------------------------------------------------------------------------------------------

# The jppl.checkpoint kinds that hold an SVIState (Trainer writes "trainer"): both load here.
_STATE_KINDS = ("svi", "trainer")


def save_state(path: str | PathLike, state: SVIState) -> str:
    """Save an :class:`SVIState` (any pytree of dicts/tuples/NamedTuples/arrays) atomically.

    Arrays are stored as they are (PRNG keys as their key data), so :func:`load_state`
    restores them bitwise; the structure is stored as JSON (no pickled code). A state split
    over the devices of several processes (``SVI(..., shard_state=True)`` on a multi-host
    mesh) is written by every process as an Orbax directory; otherwise process 0 writes one
    ``.npz`` file. See :mod:`jppl.checkpoint`.

    Args:
        path: ``<stem>`` or ``<stem>.npz`` (the file is ``<stem>.npz``, a directory
            ``<stem>`` for a state split over processes).

    Returns:
        the path written.
    """
    return checkpoint.save(path, state, kind="svi")


def load_state(path: str | PathLike, template: Any = None) -> SVIState:
    """Load a state written by :func:`save_state` (or ``Trainer.save_checkpoint``).

    Args:
        path: as given to :func:`save_state` (with or without ``.npz``).
        template: optional pytree with the expected structure (e.g. ``svi.init(...)``): the
            loaded leaves are checked against its shapes and dtypes (an error names the
            leaf, e.g. ``state.params['loc']``), put into its structure and, where its leaves
            are JAX arrays, onto their shardings (so a state saved with ``shard_state=True``
            on one mesh restores onto another). Without it, the structure stored in the file
            is rebuilt as host arrays (NamedTuple types, e.g. optax states, must come from
            modules that are already imported); :meth:`SVI.place_state` puts it on a mesh.

    Raises:
        FileNotFoundError: nothing at ``path``.
        jppl.checkpoint.CheckpointError: (a ``ValueError``) not a jppl SVI checkpoint,
            truncated or corrupt, or not matching ``template``.
    """
    return checkpoint.load(path, kind=_STATE_KINDS, template=template).tree
