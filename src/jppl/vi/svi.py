"""Stochastic variational inference: optimize the ``param`` sites of a guide (and model).

::

    svi = SVI(model, guide, optax.adam(1e-2), Trace_ELBO())
    result = svi.run(jax.random.key(0), 2000, x, y)
    result.params                      # constrained values of the param sites
    svi.run(key, 1000, x, y, init_state=result.state)   # continues exactly where it stopped

The state is an :class:`SVIState` pytree holding the *unconstrained* parameters
(``biject_to(constraint).inv(value)`` of each ``param`` site), the optax state, the PRNG key
and the step counter. Step ``t`` uses the key ``fold_in(state.rng_key, t)``, so a run that is
stopped and resumed follows the same trajectory as an uninterrupted one.

With ``SVI(..., mesh=m)`` (a mesh from :func:`jppl.parallel.make_mesh`) the same code runs on
many devices: the ELBO's particles are split over the mesh's ``sample`` axis and the
observations of plates with ``shard="data"`` over its ``data`` axis; parameters and optimizer
state are replicated on every device (so results can be read on every process).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from os import PathLike
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh

from jppl.distributions import constraints
from jppl.distributions.transforms import biject_to
from jppl.handlers import replay, seed, substitute, trace
from jppl.parallel import pin_state, put_state, state_placement, use_mesh
from jppl.progress import StepBar, is_interactive
from jppl.vi.elbo import ELBO

__all__ = ["SVI", "SVIRunResult", "SVIState", "copy_state", "load_state", "save_state"]


class SVIState(NamedTuple):
    """State of an SVI run (a pytree).

    Attributes:
        params: ``{param site name: unconstrained array (or pytree of arrays)}``.
        optim_state: the optax optimizer state for ``params``.
        rng_key: PRNG key of the run; step ``t`` uses ``fold_in(rng_key, t)``.
        step: ``()`` int32, number of updates done so far.
    """

    params: dict[str, jax.Array]
    optim_state: Any
    rng_key: jax.Array
    step: jax.Array


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
    ok = jnp.asarray(True)
    for leaf in jax.tree_util.tree_leaves(tree):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            ok = ok & jnp.all(jnp.isfinite(leaf))
    return ok


class SVI:
    """Stochastic variational inference.

    Args:
        model: the model (a callable using jppl primitives).
        guide: the guide: it samples every latent site of the model, and its ``param`` sites
            (with their ``constraint``) are what is optimized (``param`` sites of the model are
            optimized too).
        optimizer: an ``optax.GradientTransformation`` (applied in the unconstrained space).
        loss: an :class:`~jppl.vi.elbo.ELBO` (e.g. ``Trace_ELBO()``).
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
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        optimizer: optax.GradientTransformation,
        loss: ELBO,
        *,
        mesh: Mesh | None = None,
        shard_state: bool = False,
    ):
        if not callable(model) or not callable(guide):
            raise TypeError("SVI: model and guide must be callables.")
        if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
            raise TypeError(
                f"SVI: optimizer must be an optax.GradientTransformation, got {optimizer!r}"
            )
        if not hasattr(loss, "loss"):
            raise TypeError(f"SVI: loss must be an ELBO (e.g. Trace_ELBO()), got {loss!r}")
        if mesh is not None and not isinstance(mesh, Mesh):
            raise TypeError(
                f"SVI: mesh must be a jax.sharding.Mesh (see jppl.parallel.make_mesh), got {mesh!r}"
            )
        if shard_state and mesh is None:
            raise ValueError("SVI: shard_state=True splits the state over a mesh; give `mesh`.")
        self.mesh = mesh
        self.shard_state = bool(shard_state)
        self.model = model
        self.guide = guide
        self.optimizer = optimizer
        self.loss = loss
        self.constraints: dict[str, constraints.Constraint] | None = None
        self.transforms: dict[str, Any] | None = None
        self._chunk_cache: dict = {}

    # -- parameters ---------------------------------------------------------------------------
    def _trace_params(
        self, rng_key, args: tuple, kwargs: dict, init_params: dict | None
    ) -> dict[str, Any]:
        """Run guide then model once; record param sites' values and constraints."""
        init_params = {} if init_params is None else dict(init_params)
        guide_key, model_key = jax.random.split(rng_key)
        guide_trace = trace(
            seed(substitute(self.guide, data=init_params), rng_seed=guide_key)
        ).get_trace(*args, **kwargs)
        model_trace = trace(
            seed(replay(substitute(self.model, data=init_params), trace=guide_trace), model_key)
        ).get_trace(*args, **kwargs)
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
        return values

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
        ``transforms``), and initializes the optimizer.

        Args:
            rng_key: PRNG key; it seeds the initial run, and the state's key is derived from it.
            *args, **kwargs: arguments of the model and guide.
            init_params: optional ``{param name: constrained value}`` overriding the
                ``init_value`` of those param sites.
        """
        init_key, run_key = jax.random.split(rng_key)
        with use_mesh(self.mesh):
            values = self._trace_params(init_key, args, kwargs, init_params)
        # Strongly typed leaves: weakly typed ones would change type after the first optimizer
        # step and make the jitted update compile again.
        params = jax.tree_util.tree_map(
            lambda v: jnp.asarray(v, dtype=jnp.asarray(v).dtype), self.unconstrain(values)
        )
        optim_state = self.optimizer.init(params)
        return self.place_state(SVIState(params, optim_state, run_key, jnp.zeros((), jnp.int32)))

    def place_state(self, state: SVIState) -> SVIState:
        """Put ``state`` (e.g. loaded from a file) on the mesh as this SVI keeps it: replicated,
        or split over the devices with ``shard_state``. Without a mesh, ``state`` itself.
        With several processes every process must pass the same values."""
        return put_state(state, self.mesh, self.shard_state)

    def _loss_fn(self, step_key, args, kwargs) -> Callable:
        def loss_fn(params):
            with use_mesh(self.mesh):
                return self.loss.loss(
                    step_key, self.constrain(params), self.model, self.guide, *args, **kwargs
                )

        return loss_fn

    def _step(self, state: SVIState, args, kwargs, stable: bool) -> tuple[SVIState, jax.Array]:
        self._require_init()
        step_key = jax.random.fold_in(state.rng_key, state.step)
        loss, grads = jax.value_and_grad(self._loss_fn(step_key, args, kwargs))(state.params)
        updates, optim_state = self.optimizer.update(grads, state.optim_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if stable:
            ok = jnp.isfinite(loss) & _all_finite(grads) & _all_finite(params)
            params = jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), params, state.params)
            optim_state = jax.tree_util.tree_map(
                lambda n, o: jnp.where(ok, n, o), optim_state, state.optim_state
            )
        new_state = SVIState(params, optim_state, state.rng_key, state.step + 1)
        # The state stays where it was; the loss is replicated (readable on every process).
        new_state = pin_state(new_state, self.mesh, self.shard_state)
        return new_state, pin_state(loss, self.mesh)

    def update(self, state: SVIState, *args, **kwargs) -> tuple[SVIState, jax.Array]:
        """One optimization step; pure (``jax.jit``-able). Returns ``(new_state, loss)``."""
        return self._step(state, args, kwargs, stable=False)

    def stable_update(self, state: SVIState, *args, **kwargs) -> tuple[SVIState, jax.Array]:
        """Like :meth:`update`, but keeps the old params and optimizer state when the loss,
        the gradients or the new params are not finite (the step counter still advances, so
        the next step draws fresh particles)."""
        return self._step(state, args, kwargs, stable=True)

    def evaluate(self, state: SVIState, *args, **kwargs) -> jax.Array:
        """The loss at ``state`` with the key of its current step (no update)."""
        self._require_init()
        step_key = jax.random.fold_in(state.rng_key, state.step)
        return pin_state(self._loss_fn(step_key, args, kwargs)(state.params), self.mesh)

    # -- run ----------------------------------------------------------------------------------
    def _chunk_runner(
        self, size: int, stable: bool, treedef, static_leaves, dynamic_mask, out_shardings
    ):
        """Compiled ``run_chunk(state, n, dynamic_leaves) -> (state, losses (size,))``.

        Runs ``n <= size`` steps (``n`` is traced, so every chunk of a run, the last one
        included, uses the same compiled loop); ``losses[n:]`` is padding. The input state is
        donated.
        """
        cache_key = None
        try:
            shardings = jax.tree_util.tree_flatten(out_shardings)
            cache_key = (size, stable, treedef, tuple(static_leaves), tuple(dynamic_mask))
            cache_key += (tuple(shardings[0]), shardings[1])
            hash(cache_key)
        except TypeError:
            cache_key = None
        if cache_key is not None and cache_key in self._chunk_cache:
            return self._chunk_cache[cache_key]

        def run_chunk(state, n, dynamic_leaves):
            it_dyn, it_static = iter(dynamic_leaves), iter(static_leaves)
            leaves = [next(it_dyn) if d else next(it_static) for d in dynamic_mask]
            args, kwargs = jax.tree_util.tree_unflatten(treedef, leaves)
            loss_type = jax.eval_shape(lambda s: self._step(s, args, kwargs, stable)[1], state)

            def body(i, carry):
                s, losses = carry
                s, loss = self._step(s, args, kwargs, stable)
                return s, losses.at[i].set(loss)

            losses = jnp.zeros((size,), loss_type.dtype)
            return lax.fori_loop(0, n, body, (state, losses))

        runner = jax.jit(run_chunk, donate_argnums=0, out_shardings=out_shardings)
        if cache_key is not None:
            self._chunk_cache[cache_key] = runner
        return runner

    def run(
        self,
        rng_key,
        num_steps: int,
        *args,
        progress_bar: bool = True,
        init_state: SVIState | None = None,
        init_params: dict | None = None,
        stable_update: bool = False,
        **kwargs,
    ) -> SVIRunResult:
        """Run ``num_steps`` updates in chunks of a compiled loop (one compilation per run).

        Args:
            rng_key: PRNG key (ignored when ``init_state`` is given).
            num_steps: number of updates.
            *args, **kwargs: arguments of model and guide (arrays are passed to the compiled
                loop; other values are baked into it).
            progress_bar: show a tqdm bar with the running loss (a single final line when
                stderr is not a terminal).
            init_state: continue from this state (e.g. ``result.state`` of a previous run): the
                trajectory is the same as that of one uninterrupted run.
            init_params: constrained initial values of param sites (see :meth:`init`).
            stable_update: use :meth:`stable_update` (skip non-finite steps).

        Returns:
            :class:`SVIRunResult` ``(params, state, losses)`` with ``losses`` of shape
            ``(num_steps,)``.
        """
        num_steps = int(num_steps)
        if num_steps < 1:
            raise ValueError(f"SVI.run: num_steps must be >= 1, got {num_steps}")
        if init_state is None:
            state = self.init(rng_key, *args, init_params=init_params, **kwargs)
        else:
            state = init_state
            if self.transforms is None:
                # Only the constraints are needed (for get_params); any key will do.
                self._trace_params(jax.random.key(0), args, kwargs, None)

        state = copy_state(state)  # the chunks donate the state's buffers
        leaves, treedef = jax.tree_util.tree_flatten((args, kwargs))
        dynamic_mask = [_is_array(leaf) for leaf in leaves]
        dynamic = [leaf for leaf, d in zip(leaves, dynamic_mask, strict=True) if d]
        static = [leaf for leaf, d in zip(leaves, dynamic_mask, strict=True) if not d]

        # About 100 chunks per run; sizes are powers of two so that runs share compilations.
        chunk = 1 << max(0, math.ceil(math.log2(max(1.0, num_steps / 100))))
        out_shardings = (
            state_placement(state, self.mesh, self.shard_state),
            state_placement(None, self.mesh),  # the losses: replicated
        )
        runner = self._chunk_runner(
            chunk, stable_update, treedef, static, dynamic_mask, out_shardings
        )
        live = progress_bar and is_interactive()
        bar = _Progress(num_steps, live) if progress_bar else None
        losses = []
        done = 0
        while done < num_steps:
            length = min(chunk, num_steps - done)
            state, chunk_losses = runner(state, jnp.asarray(length, jnp.int32), dynamic)
            chunk_losses = chunk_losses[:length] if length < chunk else chunk_losses
            losses.append(chunk_losses)
            done += length
            if bar is not None and live:
                bar.update(length, chunk_losses)
        losses = jnp.concatenate(losses)
        if bar is not None:
            bar.close(losses)
        return SVIRunResult(self.get_params(state), state, losses)

    # -- save / load --------------------------------------------------------------------------
    def save(self, path: str | PathLike, state: SVIState) -> None:
        """Save ``state`` to ``path`` (``.npz``; see :func:`save_state`)."""
        save_state(path, state)

    @staticmethod
    def load_state(path: str | PathLike, template: SVIState | None = None) -> SVIState:
        """Load a state saved by :meth:`save` (see :func:`load_state`)."""
        return load_state(path, template)


# ---------------------------------------------------------------------------------------------
# Progress display
# ---------------------------------------------------------------------------------------------


class _Progress:
    """The bar of :meth:`SVI.run`, fed after each chunk (live), or one summary line at the end."""

    def __init__(self, total: int, live: bool):
        self.total = total
        self.start = time.perf_counter()
        self.bar = StepBar(total, "SVI") if live else None
        self.done = 0
        self.init_loss: float | None = None

    def update(self, n: int, chunk_losses) -> None:
        values = np.asarray(chunk_losses)
        if self.init_loss is None:
            self.init_loss = float(values[0])
        self.done += n
        self.bar.update(
            self.done, f"init loss: {self.init_loss:.4g}, avg. loss: {float(np.mean(values)):.4g}"
        )

    def close(self, losses) -> None:
        values = np.asarray(losses)
        tail = values[-max(1, len(values) // 10) :]
        summary = f"init loss: {float(values[0]):.4g}, avg. loss (last {len(tail)}): " + (
            f"{float(np.mean(tail)):.4g}"
        )
        if self.bar is not None:
            self.bar.close(summary)
        else:
            elapsed = time.perf_counter() - self.start
            print(
                f"SVI: {self.total}/{self.total} [{elapsed:.1f}s] {summary}",
                file=sys.stderr,
                flush=True,
            )


# ---------------------------------------------------------------------------------------------
# Saving states (.npz, no pickle)
# ---------------------------------------------------------------------------------------------

_META = "__jppl_svi_state__"


def _encode(node, leaves: list) -> dict:
    """Describe the structure of ``node`` in JSON, appending its arrays to ``leaves``."""
    if node is None:
        return {"t": "none"}
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        cls = type(node)
        return {
            "t": "namedtuple",
            "module": cls.__module__,
            "name": cls.__qualname__,
            "c": [_encode(child, leaves) for child in node],
        }
    if isinstance(node, tuple | list):
        return {"t": type(node).__name__, "c": [_encode(child, leaves) for child in node]}
    if isinstance(node, dict):
        keys = list(node)
        if not all(isinstance(k, str) for k in keys):
            raise TypeError(f"save_state: dict keys must be str, got {keys!r}")
        return {"t": "dict", "k": keys, "c": [_encode(node[k], leaves) for k in keys]}
    if isinstance(node, jax.Array | np.ndarray | np.generic | int | float | bool | complex):
        arr = node
        entry: dict[str, Any] = {"t": "leaf", "i": len(leaves)}
        if isinstance(arr, jax.Array) and jnp.issubdtype(arr.dtype, jax.dtypes.prng_key):
            entry["key_impl"] = str(jax.random.key_impl(arr))
            arr = jax.random.key_data(arr)
        elif not isinstance(arr, jax.Array | np.ndarray | np.generic):
            entry["python"] = type(arr).__name__
        arr = np.asarray(arr)
        if arr.dtype.kind not in "biufc":
            entry["dtype"] = str(arr.dtype)
            arr = arr.view(np.uint8)
        leaves.append(arr)
        return entry
    raise TypeError(
        f"save_state: cannot store a {type(node).__name__} in the state; only dicts, lists, "
        "tuples, NamedTuples, None and arrays are supported."
    )


def _decode_leaf(entry: dict, arrays: dict) -> Any:
    arr = arrays[f"leaf_{entry['i']}"]
    if "dtype" in entry:
        arr = arr.view(jnp.dtype(entry["dtype"]))
    if "key_impl" in entry:
        return jax.random.wrap_key_data(jnp.asarray(arr), impl=entry["key_impl"])
    if "python" in entry:
        return {"int": int, "float": float, "bool": bool, "complex": complex}[entry["python"]](
            arr.item()
        )
    return jnp.asarray(arr)


def _decode(entry: dict, arrays: dict) -> Any:
    kind = entry["t"]
    if kind == "none":
        return None
    if kind == "leaf":
        return _decode_leaf(entry, arrays)
    children = [_decode(c, arrays) for c in entry.get("c", [])]
    if kind == "tuple":
        return tuple(children)
    if kind == "list":
        return children
    if kind == "dict":
        return dict(zip(entry["k"], children, strict=True))
    if kind == "namedtuple":
        # Only classes of modules that are already imported: nothing is imported (or run) on
        # behalf of the file.
        module = sys.modules.get(entry["module"])
        cls = module
        for part in entry["name"].split("."):
            cls = getattr(cls, part, None) if cls is not None else None
        if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
            raise ValueError(
                f"load_state: NamedTuple {entry['module']}.{entry['name']} is not available "
                "(import its module first, or pass template=svi.init(...))."
            )
        return cls(*children)
    raise ValueError(f"load_state: unknown entry type {kind!r} in the file.")


def save_state(path: str | PathLike, state: SVIState) -> None:
    """Save an :class:`SVIState` (any pytree of dicts/tuples/NamedTuples/arrays) to ``.npz``.

    Arrays are stored as they are (PRNG keys as their key data), so :func:`load_state` restores
    them bitwise; the structure is stored as JSON (no pickled code).
    """
    leaves: list[np.ndarray] = []
    structure = _encode(state, leaves)
    arrays = {f"leaf_{i}": leaf for i, leaf in enumerate(leaves)}
    arrays[_META] = np.asarray(json.dumps({"version": 1, "structure": structure}))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_state(path: str | PathLike, template: Any = None) -> SVIState:
    """Load a state written by :func:`save_state`.

    Args:
        path: the ``.npz`` file.
        template: optional pytree with the expected structure (e.g. ``svi.init(...)``); the
            loaded leaves are checked against its shapes and dtypes and put into its
            structure. Without it, the structure stored in the file is rebuilt (NamedTuple
            types, e.g. optax states, must come from modules that are already imported).
    """
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    if _META not in arrays:
        raise ValueError(f"load_state: {path} was not written by save_state.")
    meta = json.loads(str(arrays[_META]))
    state = _decode(meta["structure"], arrays)
    if template is None:
        return state
    loaded, _ = jax.tree_util.tree_flatten(state)
    expected, treedef = jax.tree_util.tree_flatten(template)
    if len(loaded) != len(expected):
        raise ValueError(
            f"load_state: the file has {len(loaded)} arrays, the template {len(expected)}."
        )
    for i, (a, b) in enumerate(zip(loaded, expected, strict=True)):
        if jnp.shape(a) != jnp.shape(b) or jnp.result_type(a) != jnp.result_type(b):
            raise ValueError(
                f"load_state: leaf {i} has shape {jnp.shape(a)} and dtype {jnp.result_type(a)} "
                f"in the file, but {jnp.shape(b)} and {jnp.result_type(b)} in the template."
            )
    return jax.tree_util.tree_unflatten(treedef, loaded)
