"""Evidence lower bounds (ELBOs) for stochastic variational inference.

An ELBO object turns ``(model, guide, params)`` into a scalar *loss* (the negative bound) whose
gradient with respect to the guide's and model's ``param`` sites is an unbiased estimate of the
gradient of the negative bound::

    loss = Trace_ELBO(num_particles=8).loss(rng_key, param_map, model, guide, *args, **kwargs)

``param_map`` holds the *constrained* values of the ``param`` sites (``{name: array}``).

Structure (shared by all ELBOs), written so that a mesh layer can shard particles:

* :meth:`ELBO.particle_loss` ``(rng_key, param_map, model, guide, args, kwargs)`` runs the guide
  and the model once and returns ``(elbo_particle, surrogate)``: the single-particle estimate
  of the bound and the ELBO-specific differentiable pieces that the reduction needs;
* :meth:`ELBO.loss` maps it over the particle keys with :func:`jppl.parallel.map_particles`
  (particle ``i`` always uses :func:`particle_keys` ``(rng_key, i)``, i.e.
  ``jax.random.fold_in(rng_key, i)``, whatever device it runs on), and over the model
  arguments that :meth:`ELBO.particle_args` gives each particle (by default all the same);
  :meth:`ELBO.loss_from_particles` is the plain ``jax.vmap`` over a batch of keys, for
  callers that split particles themselves (e.g. under ``shard_map``);
* :meth:`ELBO.reduce_particles` combines the per-particle values into the loss; its optional
  ``axis_name`` names a mapped axis over which the particles are split (``psum``/``pmax``
  collectives are then used for the cross-particle sums);
* :meth:`ELBO.loss_with_mutable_state` is :meth:`ELBO.loss` that also returns the values of
  the ``mutable`` sites after the run (NumPyro's ``SVIState.mutable_state``): the
  per-particle function returns them beside its loss (it stays pure), and they are kept only
  with ``num_particles=1``.

Meshes (:mod:`jppl.parallel`): under an active mesh whose ``sample`` axis has size ``D > 1``,
:meth:`ELBO.loss` splits the particle axis over ``sample`` (each device runs
``num_particles / D`` particles; ``num_particles`` must be divisible by ``D``), and the
log-probabilities of sites in plates with ``shard="data"`` are split over ``data``. XLA then
reduces the per-device partial sums; particle ``i`` keeps the key ``fold_in(rng_key, i)``, so
the loss does not depend on the mesh (up to the order of floating-point sums).

Non-reparameterizable latent sites of the guide (``not fn.has_rsample``: discrete, VonMises,
...) get a score-function (REINFORCE) term: the surrogate ``stop_gradient(cost - baseline) *
log q(z)`` with a leave-one-out baseline (the mean of the other particles' costs) when
``num_particles > 1``. Their values are drawn without gradient. The *value* of the returned
loss is always the plain negative ELBO estimate. :class:`TraceGraph_ELBO` narrows each such
site's cost to the terms downstream of it (a dataflow pass over the traced model and guide)
and to its own plate elements (Rao-Blackwellization).

``vectorize_particles=False`` (or a map callable) maps the particles with ``jax.lax.map``
instead of one ``jax.vmap``; only the vmap is split over a mesh. ``log q`` counts every sample
site of the guide, observed ones included. :func:`psis_diagnostic` gives the Pareto k-hat of
a guide's importance weights.

Subsampling: a ``plate(..., subsample_size=B)`` scales the log densities inside it by
``size / B``. Model and guide plates with the same name must have the same sizes; the guide's
minibatch indices are replayed into the model. A guide latent site that the model places in a
subsampled plate but the guide does not (a local latent sampled without the plate) has its
``log q`` scaled by that plate's factor too, so the estimate stays unbiased.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from jax import lax

from jppl.distributions.kl import kl_divergence
from jppl.enumerate import enum
from jppl.handlers import replay, seed, substitute, trace
from jppl.model import site_log_prob
from jppl.model.discrete import guess_max_plate_nesting
from jppl.model.enum import (
    Factor,
    align,
    contract_keeping,
    enum_log_joint,
    enumerated_sites,
    group_scale,
    is_enumerated,
    marginal,
    plates_of,
    site_factor,
    tied_groups,
)
from jppl.parallel import map_particles
from jppl.primitives import Message, Messenger

__all__ = [
    "ELBO",
    "RenyiELBO",
    "TraceEnum_ELBO",
    "TraceGraph_ELBO",
    "TraceMeanField_ELBO",
    "Trace_ELBO",
    "fit_generalized_pareto",
    "get_importance_traces",
    "log_importance_weight",
    "particle_keys",
    "psis_diagnostic",
    "psis_khat",
    "same_scale",
]

Trace = dict[str, Message]


# ---------------------------------------------------------------------------------------------
# Tracing model and guide
# ---------------------------------------------------------------------------------------------


def particle_keys(rng_key: jax.Array, indices: jax.Array) -> jax.Array:
    """Keys of the particles ``indices`` (int array ``(S,)``): ``fold_in(rng_key, i)`` each.

    Returns:
        a batch of keys with leading dim ``S``; particle ``i``'s key depends only on
        ``rng_key`` and ``i``.
    """
    indices = jnp.asarray(indices)
    return jax.vmap(lambda i: jax.random.fold_in(rng_key, i))(indices)


class _detach_nonreparam(Messenger):
    """Draw latent sites without a reparameterized sampler with no gradient through the draw.

    Must sit outside the ``seed`` handler (so that the site already has its key). The draw uses
    ``stop_gradient`` on the distribution's parameters, so nothing is differentiated through
    the sampler (e.g. a rejection loop); ``log_prob`` later uses the original distribution.
    """

    def process_message(self, msg: Message) -> None:
        if msg["type"] != "sample" or msg["is_observed"] or msg["value"] is not None:
            return
        fn = msg["fn"]
        key = msg["kwargs"].get("rng_key")
        if fn.has_rsample or key is None:
            return
        detached = jax.tree_util.tree_map(lax.stop_gradient, fn)
        value, intermediates = detached(
            rng_key=key,
            sample_shape=msg["kwargs"].get("sample_shape", ()),
            sample_intermediates=True,
        )
        msg["value"] = lax.stop_gradient(value)
        msg["intermediates"] = intermediates


class _require_guide_values(Messenger):
    """Raise for a latent model site that the guide did not provide (placed inside ``seed``)."""

    def process_message(self, msg: Message) -> None:
        if msg["type"] == "sample" and not msg["is_observed"] and msg["value"] is None:
            hint = (
                " It is marked for enumeration: use TraceEnum_ELBO to sum it out."
                if msg["infer"].get("enumerate") == "parallel"
                else ""
            )
            raise ValueError(
                f"Latent sample site '{msg['name']}' of the model has no matching sample site "
                "in the guide; the guide must sample every latent site of the model (under the "
                f"same name), or the site must be observed.{hint}"
            )


class _record_mutable(Messenger):
    """Record the values of the ``mutable`` sites of the first run of ``fn`` (in ``values``).

    A site's value is the object that the run may update in place (e.g. a dict of running
    statistics), so after the run it holds the updated state. Later runs (e.g. the dataflow
    pass of :class:`TraceGraph_ELBO`) are not recorded: their values may be tracers of an
    inner transformation. ``after_first_run(values)`` is called when the first run ends.
    """

    def __init__(self, fn, after_first_run: Callable[[dict], Any] | None = None):
        self.values: dict[str, Any] | None = None
        self.after_first_run = after_first_run
        self._recording = False
        super().__init__(fn)

    def __enter__(self):
        self._recording = self.values is None
        if self._recording:
            self.values = {}
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        result = super().__exit__(exc_type, exc_value, traceback)
        if self._recording and exc_type is None and self.after_first_run is not None:
            self.after_first_run(self.values)
        self._recording = False
        return result

    def postprocess_message(self, msg: Message) -> None:
        if self._recording and msg["type"] == "mutable":
            self.values[msg["name"]] = msg["value"]


def _check_plates(model_trace: Trace, guide_trace: Trace) -> None:
    for name, site in guide_trace.items():
        if site["type"] != "plate" or name not in model_trace:
            continue
        other = model_trace[name]
        if other["type"] != "plate":
            continue
        if tuple(site["args"][:2]) != tuple(other["args"][:2]):
            raise ValueError(
                f"plate '{name}' has size/subsample_size {tuple(site['args'][:2])} in the guide "
                f"but {tuple(other['args'][:2])} in the model; they must agree."
            )


def _check_subsampled_plates(model_trace: Trace, guide_trace: Trace) -> None:
    """A subsampled guide plate must have the model's plate name (to share the minibatch).

    (An unsubsampled guide plate over a user-given minibatch is fine: the model's plate scale
    is then applied to the guide's ``log q``, see :func:`_guide_scale`.)
    """
    for name, site in model_trace.items():
        if not _is_latent(site) or name not in guide_trace:
            continue
        guide_frames = {f.dim: f for f in guide_trace[name]["cond_indep_stack"]}
        model_names = {f.name for f in site["cond_indep_stack"]}
        for frame in site["cond_indep_stack"]:
            other = guide_frames.get(frame.dim)
            if other is None or other.name in model_names:
                continue
            if _plate_scale(guide_trace, other.name) != 1.0:
                raise ValueError(
                    f"Sample site '{name}' is in plate '{frame.name}' in the model but in plate "
                    f"'{other.name}' in the guide (batch dim {frame.dim}); with subsampling the "
                    "plates must have the same name, so that they use the same minibatch."
                )


def _check_latent_shapes(model_trace: Trace, guide_trace: Trace) -> None:
    for name, site in model_trace.items():
        if site["type"] != "sample" or site["is_observed"] or name not in guide_trace:
            continue
        fn = site["fn"]
        expected = tuple(site["kwargs"].get("sample_shape", ())) + fn.batch_shape + fn.event_shape
        got = tuple(jnp.shape(site["value"]))
        guide_infer = guide_trace[name]["infer"]
        if guide_infer.get("_enum_names"):
            # The guide enumerated this site or one it depends on: its value broadcasts
            # against the model's shape, with the guide's enumerated dims to the left.
            enum_dims = set(guide_infer["_enum_names"])
            rank = len(expected)
            extra = got[: max(0, len(got) - rank)]
            right = got[len(extra) :]
            aligned = (1,) * (rank - len(right)) + right
            ok = all(
                size == 1 or dim in enum_dims
                for dim, size in zip(range(-len(got), -rank), extra, strict=True)
            ) and all(a in (1, e) for a, e in zip(aligned, expected, strict=True))
            if ok:
                continue
        if got != expected:
            raise ValueError(
                f"Sample site '{name}': the guide's value has shape {got}, but the model's site "
                f"has shape {expected} (sample_shape + batch_shape + event_shape); the guide "
                "must sample each latent site with the model's shape (check the plates)."
            )


def get_importance_traces(
    rng_key: jax.Array,
    param_map: dict[str, Any],
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    first_available_dim: int | None = None,
    enumerate_guide: bool = False,
) -> tuple[Trace, Trace]:
    """Run the guide, then the model replayed against it; return ``(model_trace, guide_trace)``.

    With ``first_available_dim``, the model's sites marked for enumeration that the guide
    does not sample are enumerated (:class:`jppl.enumerate.enum`) instead of replayed. With
    ``enumerate_guide`` too, so are the guide's marked sites (first; the model's enumerated
    sites take dims to the left of the guide's, and the model's sites name the guide's dims).

    ``param_map`` (constrained values) is substituted into both. The guide gets
    ``split(rng_key)[0]`` and the model ``split(rng_key)[1]`` (for its own ``prng_key()`` calls
    and unreplayed subsampling plates). Latent model sites take the guide's values; the
    guide's plate indices are reused by the model's plates of the same name.

    Raises:
        ValueError: a latent model site missing from the guide, plates that disagree, or a
            guide value of the wrong shape.
    """
    guide_key, model_key = jax.random.split(rng_key)
    guide_fn = substitute(guide, data=param_map)
    if enumerate_guide:
        if first_available_dim is None:
            raise ValueError("get_importance_traces: enumerate_guide needs first_available_dim")
        guide_fn = enum(guide_fn, first_available_dim=first_available_dim)
    guide_run = _detach_nonreparam(seed(guide_fn, rng_seed=guide_key))
    guide_trace = trace(guide_run).get_trace(*args, **kwargs)
    guide_dims = {
        name: site["infer"]["_enumerate_dim"]
        for name, site in guide_trace.items()
        if is_enumerated(site)
    }
    replayed = replay(substitute(model, data=param_map), trace=guide_trace)
    if first_available_dim is not None:
        replayed = enum(replayed, first_available_dim=first_available_dim, live_dims=guide_dims)
    model_run = seed(_require_guide_values(replayed), rng_seed=model_key)
    model_trace = trace(model_run).get_trace(*args, **kwargs)
    _check_plates(model_trace, guide_trace)
    _check_subsampled_plates(model_trace, guide_trace)
    _check_latent_shapes(model_trace, guide_trace)
    return model_trace, guide_trace


# ---------------------------------------------------------------------------------------------
# Log-probability helpers
# ---------------------------------------------------------------------------------------------


def _mul_scale(x, scale):
    return x if scale is None else scale * x


def _plate_scale(tr: Trace, frame_name: str) -> float:
    """``size / subsample_size`` of the plate ``frame_name`` recorded in trace ``tr`` (else 1)."""
    site = tr.get(frame_name)
    if site is None or site["type"] != "plate":
        return 1.0
    size, subsample_size = site["args"][:2]
    return size / subsample_size if subsample_size < size else 1.0


def _guide_scale(name: str, guide_site: Message, model_trace: Trace):
    """Scale of ``log q`` at a guide site, including subsampled model plates the guide lacks."""
    scale = guide_site["scale"]
    model_site = model_trace.get(name)
    if model_site is None or model_site["type"] != "sample":
        return scale
    guide_plates = {frame.name for frame in guide_site["cond_indep_stack"]}
    extra = 1.0
    for frame in model_site["cond_indep_stack"]:
        if frame.name not in guide_plates:
            extra *= _plate_scale(model_trace, frame.name)
    if extra == 1.0:
        return scale
    return extra if scale is None else scale * extra


def _is_latent(site: Message) -> bool:
    return site["type"] == "sample" and not site["is_observed"]


def _score_log_prob(guide_trace: Trace) -> jax.Array:
    """Sum of (unscaled) ``log q`` over non-reparameterizable latent guide sites."""
    total = jnp.zeros(())
    for site in guide_trace.values():
        if _is_latent(site) and not site["fn"].has_rsample and not is_enumerated(site):
            total = total + jnp.sum(site_log_prob(site, scaled=False))
    return total


def _psum(x, axis_name):
    return x if axis_name is None else lax.psum(x, axis_name)


def same_scale(a, b) -> bool:
    """Whether two log-probability scales (``None``, numbers or arrays) are known to be equal.

    ``None`` equals 1; traced values are equal only when they are the same object.
    """
    if a is None or b is None:
        return (a is None or _is_one(a)) and (b is None or _is_one(b))
    if a is b:
        return True
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-12)
    if isinstance(a, jax.core.Tracer) or isinstance(b, jax.core.Tracer):
        return False  # values unknown while tracing: only the same object counts as equal
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.all(a == b))


def _is_one(x) -> bool:
    return isinstance(x, int | float) and x == 1


# ---------------------------------------------------------------------------------------------
# ELBOs
# ---------------------------------------------------------------------------------------------


class ELBO:
    """Base class: a Monte Carlo estimate of the ELBO over ``num_particles`` particles.

    Subclasses implement :meth:`particle_loss` (one particle) and may override
    :meth:`reduce_particles` (how particles are combined). The default reduction averages
    ``elbo_particle`` over particles and adds the score-function term for
    non-reparameterizable guide sites.

    Args:
        num_particles: number of particles (draws from the guide) of the estimate.
        vectorize_particles: how the particles are mapped, as in NumPyro: ``True``: one
            ``jax.vmap`` (split over the ``sample`` axis of an active mesh, see
            :func:`jppl.parallel.map_particles`); ``False``: ``jax.lax.map`` (one particle
            at a time: less memory, nothing split over a mesh); or a callable
            ``map_fn(f, xs)`` applying ``f`` to each leading-dim slice of the pytree ``xs``
            and stacking the results (e.g. ``functools.partial(jax.lax.map,
            batch_size=4)``). ``xs`` is the ``(num_particles,)`` batch of particle keys, or
            ``(keys, args)`` when each particle has its own model arguments
            (:meth:`particle_args`).
    """

    #: Whether the ELBO gives unbiased gradients for discrete latent sites of the guide
    #: (``Trace_ELBO``, ``TraceMeanField_ELBO`` and ``TraceGraph_ELBO`` do: they add a
    #: score-function term for them).
    can_infer_discrete: bool = False

    def __init__(self, num_particles: int = 1, vectorize_particles: bool | Callable = True):
        if isinstance(num_particles, bool) or not isinstance(num_particles, int | np.integer):
            raise TypeError(f"num_particles must be an int, got {num_particles!r}")
        if num_particles < 1:
            raise ValueError(f"num_particles must be >= 1, got {num_particles}")
        if not (isinstance(vectorize_particles, bool) or callable(vectorize_particles)):
            raise ValueError(
                "vectorize_particles must be a bool (True: jax.vmap, False: jax.lax.map) or a "
                f"callable map_fn(f, xs), got {vectorize_particles!r}"
            )
        self.num_particles = int(num_particles)
        self.vectorize_particles = vectorize_particles

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_particles={self.num_particles})"

    # -- one particle -------------------------------------------------------------------------
    def particle_loss(
        self,
        rng_key: jax.Array,
        param_map: dict[str, Any],
        model: Callable,
        guide: Callable,
        args: tuple,
        kwargs: dict,
    ) -> tuple[jax.Array, Any]:
        """One particle: ``(elbo_particle, surrogate)``.

        For the trace ELBOs, ``elbo_particle`` is the scalar ``log p(x, z) - log q(z)`` (plate
        scales applied) at one draw ``z ~ q``, and ``surrogate`` the scalar sum of the
        unscaled ``log q(z)`` of the non-reparameterizable latent sites (0 if none), the
        factor of the score-function term; the reduction forms
        ``stop_gradient(cost - baseline) * surrogate``.
        """
        raise NotImplementedError

    # -- many particles -----------------------------------------------------------------------
    def loss_from_particles(
        self,
        keys: jax.Array,
        param_map: dict[str, Any],
        model: Callable,
        guide: Callable,
        args: tuple = (),
        kwargs: dict | None = None,
        spmd_axis_name: str | None = None,
    ) -> tuple[jax.Array, Any]:
        """:meth:`particle_loss` for a batch of particle keys (leading dim ``S_local``).

        Args:
            spmd_axis_name: mesh axis that the particle dim is split over (passed to
                ``jax.vmap``, so sharding constraints inside keep that split).

        Returns:
            ``(elbo_particles, surrogates)``, each with a leading dim ``S_local``; the
            particles can be any subset of ``0..num_particles-1`` (e.g. one device's share).
        """
        kwargs = {} if kwargs is None else kwargs

        def one(key):
            return self.particle_loss(key, param_map, model, guide, args, kwargs)

        return jax.vmap(one, spmd_axis_name=spmd_axis_name)(keys)

    def reduce_particles(
        self, elbo_particles: Any, surrogates: Any, axis_name: str | None = None
    ) -> Any:
        """Combine all ``num_particles`` particles into the scalar loss (negative ELBO).

        Args:
            elbo_particles: ``(S_local,)`` per-particle ELBO estimates, or a dict of them per
                site (``sum_sites=False``).
            surrogates: ``(S_local,)`` per-particle ``log q`` of non-reparameterizable sites.
            axis_name: the mapped axis across which the particles are split (``None``: all
                ``num_particles`` are here).

        Returns:
            scalar: value ``-mean(elbo_particles)``; gradient the unbiased surrogate
            gradient (with the leave-one-out baseline when ``num_particles > 1``). For a dict
            of per-site estimates, the dict of per-site losses: each carries the
            score-function term of its own cost, so their sum is the summed loss, gradient
            included.
        """
        return jax.tree_util.tree_map(
            lambda e: self._reduce_one(e, surrogates, axis_name), elbo_particles
        )

    def _reduce_one(self, elbo_particles, surrogates, axis_name):
        n = self.num_particles
        elbo = _psum(jnp.sum(elbo_particles), axis_name) / n
        cost = lax.stop_gradient(elbo_particles)
        if n > 1:
            # cost_i - mean_{j != i} cost_j = n / (n - 1) * (cost_i - mean_j cost_j)
            advantage = (n / (n - 1)) * (cost - lax.stop_gradient(elbo))
        else:
            advantage = cost
        score = _psum(jnp.sum(advantage * surrogates), axis_name) / n
        return -(elbo + (score - lax.stop_gradient(score)))

    def particle_args(self, rng_key: jax.Array, args: tuple) -> tuple[Any, int | None]:
        """The model's positional arguments for the particles of the step keyed ``rng_key``.

        Returns:
            ``(args, None)``: every particle sees ``args`` (the default); or ``(batch, 0)``:
            each leaf of ``batch`` has a leading ``num_particles`` dim and particle ``i`` sees
            entry ``i`` (e.g. its own augmented minibatch, see
            :class:`~jppl.vi.SamplingParallelLoss`).
        """
        return args, None

    def loss(
        self,
        rng_key: jax.Array,
        param_map: dict[str, Any],
        model: Callable,
        guide: Callable,
        *args,
        **kwargs,
    ) -> jax.Array:
        """Scalar loss (negative ELBO estimate) averaged over ``num_particles`` particles.

        Args:
            rng_key: PRNG key; particle ``i`` uses ``fold_in(rng_key, i)``.
            param_map: ``{param site name: constrained value}``.
            model, guide: the model and guide; ``*args, **kwargs`` are passed to both.

        Under an active mesh with a ``sample`` axis of size ``D > 1``, the particles are split
        over it (:func:`jppl.parallel.map_particles`; ``num_particles`` must be divisible by
        ``D``).
        """
        keys = particle_keys(rng_key, jnp.arange(self.num_particles))
        batch, batch_axis = self.particle_args(rng_key, args)
        elbos, surrogates = self.map_particles(
            lambda key, particle_args: self.particle_loss(
                key, param_map, model, guide, particle_args, kwargs
            ),
            keys,
            batch,
            batch_axis,
        )
        return self.reduce_particles(elbos, surrogates)

    def loss_with_mutable_state(
        self,
        rng_key: jax.Array,
        param_map: dict[str, Any],
        model: Callable,
        guide: Callable,
        *args,
        **kwargs,
    ) -> dict[str, Any]:
        """:meth:`loss`, and the values of the ``mutable`` sites after the run (as NumPyro).

        The state of a ``mutable`` site (e.g. running batch statistics) is given in
        ``param_map`` under the site's name (``SVI`` passes ``SVIState.mutable_state`` there,
        under ``stop_gradient``); the guide runs first and the model then sees the guide's
        updated value of a site of the same name. The returned state is the value of each
        site after the first run of guide and model (the model's where both have it), which
        the model may have updated in place.

        Returns:
            ``{"loss": loss, "mutable_state": {site name: value} or None}`` (``None`` when
            the model and guide have no ``mutable`` site with a value).

        Raises:
            ValueError: mutable sites with ``num_particles > 1`` (each particle would update
                the state differently; NumPyro warns and drops the state), or in the model
                with ``multi_sample_guide=True``.
        """
        keys = particle_keys(rng_key, jnp.arange(self.num_particles))
        batch, batch_axis = self.particle_args(rng_key, args)

        def one(key, particle_args):
            # Local to the particle: the guide's updated state is written into this copy of
            # param_map, so the model's substitute gives it to the model's site of that name.
            local = dict(param_map)
            guide_run = _record_mutable(guide, after_first_run=local.update)
            model_run = _record_mutable(model)
            elbo, surrogate = self.particle_loss(
                key, local, model_run, guide_run, particle_args, kwargs
            )
            if model_run.values and getattr(self, "multi_sample_guide", False):
                raise ValueError(
                    f"{type(self).__name__}(multi_sample_guide=True): the model has mutable "
                    f"sites {sorted(model_run.values)}; mutable state in the model is not "
                    "supported with a multi-sample guide."
                )
            state = {**(guide_run.values or {}), **(model_run.values or {})}
            state = {
                name: jax.tree_util.tree_map(jnp.asarray, value)
                for name, value in state.items()
                if jax.tree_util.tree_leaves(value)
            }
            return elbo, surrogate, state

        elbos, surrogates, state = self.map_particles(one, keys, batch, batch_axis)
        if not state:
            state = None
        elif self.num_particles > 1:
            raise ValueError(
                f"{self!r}: the model or guide has mutable sites {sorted(state)}, whose state "
                "is kept only with num_particles=1 (each particle would update it "
                "differently); use num_particles=1."
            )
        else:
            state = jax.tree_util.tree_map(lambda x: x[0], state)
        return {"loss": self.reduce_particles(elbos, surrogates), "mutable_state": state}

    def map_particles(
        self, one: Callable, keys: jax.Array, batch: Any, batch_axis: int | None
    ) -> Any:
        """``one(key, args)`` for each particle, by ``vectorize_particles`` (see the class).

        Args:
            one: the per-particle function.
            keys: ``(S,)`` particle keys.
            batch, batch_axis: the particles' model arguments (:meth:`particle_args`).

        Returns:
            ``one``'s outputs stacked along a leading dim ``S``.
        """
        what = f"{type(self).__name__}: num_particles"
        if self.vectorize_particles is True:
            return map_particles(one, keys, batch, in_axes=(0, batch_axis), what=what)
        map_fn = jax.lax.map if self.vectorize_particles is False else self.vectorize_particles
        if batch_axis is None:
            return map_fn(lambda key: one(key, batch), keys)
        return map_fn(lambda xs: one(*xs), (keys, batch))


class Trace_ELBO(ELBO):
    """The standard ELBO ``E_q[log p(x, z) - log q(z)]``, estimated by Monte Carlo.

    ``log q`` is the guide's log density at all its sample sites, observed ones included (as
    in NumPyro). Reparameterized latent sites are differentiated through their samples;
    others get a score-function term with a leave-one-out baseline (``num_particles > 1``).

    Args:
        num_particles, vectorize_particles: see :class:`ELBO`.
        multi_sample_guide: the guide draws several samples itself: each of its sample sites
            has a leading dim ``N`` (the same for all), and its ``log q`` is that of all
            ``N`` samples jointly. The model is run once per sample (with the guide's plate
            indices) and its log densities are summed over the ``N`` samples, as in NumPyro:
            one particle's estimate is ``sum_n log p(x, z_n) - log q(z_1..N)``.
        sum_sites: ``True``: :meth:`~ELBO.loss` is the scalar loss. ``False``: a dict
            ``{site name: loss term}`` (``-mean`` over particles of ``log p - log q`` at that
            site, ``0`` for the density a site lacks in model or guide) whose sum is the
            loss (also in its gradient); for inspection: ``SVI`` needs the scalar.
    """

    can_infer_discrete = True

    def __init__(
        self,
        num_particles: int = 1,
        vectorize_particles: bool | Callable = True,
        multi_sample_guide: bool = False,
        sum_sites: bool = True,
    ):
        super().__init__(num_particles, vectorize_particles)
        self.multi_sample_guide = bool(multi_sample_guide)
        self.sum_sites = bool(sum_sites)

    def particle_loss(self, rng_key, param_map, model, guide, args, kwargs):
        if self.multi_sample_guide:
            log_p, log_q, guide_trace = _multi_sample_log_probs(
                rng_key, param_map, model, guide, args, kwargs
            )
        else:
            model_trace, guide_trace = get_importance_traces(
                rng_key, param_map, model, guide, args, kwargs
            )
            log_p = {
                name: jnp.sum(site_log_prob(site))
                for name, site in model_trace.items()
                if site["type"] == "sample"
            }
            log_q = {
                name: jnp.sum(_guide_log_prob(name, site, model_trace))
                for name, site in guide_trace.items()
                if site["type"] == "sample"
            }
        surrogate = _score_log_prob(guide_trace)
        if not self.sum_sites:
            return _site_terms(log_p, log_q), surrogate
        elbo = jnp.zeros(())
        for value in log_p.values():
            elbo = elbo + value
        for value in log_q.values():
            elbo = elbo - value
        return elbo, surrogate


class TraceEnum_ELBO(ELBO):
    """The ELBO with enumerated discrete sites summed exactly, in the model and in the guide.

    The model's sites marked ``infer={"enumerate": "parallel"}`` (e.g. by
    ``config_enumerate``) that the guide does not sample are enumerated, and ``log p`` is
    the density of the other sites with them summed out (variable elimination over plates,
    :mod:`jppl.model.enum`). The guide's marked sites are enumerated too: the ELBO is then the
    exact expectation over them, ``sum_z q(z) (log p(x, z, ...) - log q(z, ...))`` (each term
    weighted by the guide's marginal probability of the enumerated variables it depends on),
    so their parameters get exact gradients, with no score-function noise. The other guide
    sites are sampled as in :class:`Trace_ELBO` (non-reparameterized ones get a
    score-function term).

    Args:
        num_particles, vectorize_particles: see :class:`ELBO`.
        max_plate_nesting: the number of nested plates of model and guide; guessed from a run
            of both when left at ``inf``.

    Raises (when computing the loss):
        ValueError: a model enumerated site more global (in fewer plates) than a guide
            enumerated site it meets in a site.
        NotImplementedError: guide enumeration together with an enumerated ``scan`` in the
            model, or with a non-reparameterized sampled guide site that depends on an
            enumerated guide site.
    """

    can_infer_discrete = True

    def __init__(
        self,
        num_particles: int = 1,
        max_plate_nesting: float = float("inf"),
        vectorize_particles: bool | Callable = True,
    ):
        if max_plate_nesting != float("inf") and (
            not isinstance(max_plate_nesting, int) or max_plate_nesting < 0
        ):
            raise ValueError(
                f"TraceEnum_ELBO: max_plate_nesting must be an int >= 0, got {max_plate_nesting!r}"
            )
        super().__init__(num_particles, vectorize_particles)
        self.max_plate_nesting = max_plate_nesting

    def _nesting(self, rng_key, param_map, model, guide, args, kwargs) -> int:
        if self.max_plate_nesting != float("inf"):
            return int(self.max_plate_nesting)
        guide_key, model_key = jax.random.split(rng_key)
        guide_trace = trace(seed(substitute(guide, data=param_map), rng_seed=guide_key)).get_trace(
            *args, **kwargs
        )
        model_trace = trace(
            seed(replay(substitute(model, data=param_map), trace=guide_trace), rng_seed=model_key)
        ).get_trace(*args, **kwargs)
        return max(guess_max_plate_nesting(guide_trace), guess_max_plate_nesting(model_trace))

    def particle_loss(self, rng_key, param_map, model, guide, args, kwargs):
        nesting = self._nesting(rng_key, param_map, model, guide, args, kwargs)
        first = -nesting - 1
        model_trace, guide_trace = get_importance_traces(
            rng_key,
            param_map,
            model,
            guide,
            args,
            kwargs,
            first_available_dim=first,
            enumerate_guide=True,
        )
        if any(is_enumerated(site) for site in guide_trace.values()):
            return _guide_enum_elbo(model_trace, guide_trace, first), _score_log_prob(guide_trace)
        if any(is_enumerated(site) for site in model_trace.values()):
            log_p = enum_log_joint(
                model_trace,
                {
                    name: site_log_prob(site, scaled=False)
                    for name, site in model_trace.items()
                    if site["type"] == "sample"
                },
            )
        else:
            log_p = jnp.zeros(())
            for site in model_trace.values():
                if site["type"] == "sample":
                    log_p = log_p + jnp.sum(site_log_prob(site))
        elbo = log_p
        for name, site in guide_trace.items():
            if site["type"] == "sample":
                elbo = elbo - jnp.sum(_guide_log_prob(name, site, model_trace))
        return elbo, _score_log_prob(guide_trace)


def _guide_enum_elbo(model_trace: Trace, guide_trace: Trace, first: int) -> jax.Array:
    """One particle's ELBO with the guide's enumerated sites summed exactly.

    Every cost term (the model's sites, with the model's own enumerated sites summed out per
    value of the guide's; ``-log q`` of each guide site) is a factor over the guide's
    enumerated variables it depends on and its plates; its expectation weights it by the
    guide's marginal probability of those variables (:func:`jppl.model.enum.marginal` of the
    guide's enumerated factors) and sums.
    """
    guide_homes = {
        name: frozenset(plates_of(site))
        for name, site in guide_trace.items()
        if is_enumerated(site)
    }
    for name, site in guide_trace.items():
        if (
            _is_latent(site)
            and not is_enumerated(site)
            and not site["fn"].has_rsample
            and site["infer"].get("_enum_names")
        ):
            raise NotImplementedError(
                f"TraceEnum_ELBO: guide site '{name}' is sampled without a reparameterized "
                "sampler and depends on the guide's enumerated sites "
                f"{sorted(set(site['infer']['_enum_names'].values()))}; enumerate it too "
                "(infer={'enumerate': 'parallel'}) or make it independent of them."
            )
    model_homes = {
        name: frozenset(plates_of(site)) for name, site in enumerated_sites(model_trace).items()
    }
    homes = {**guide_homes, **model_homes}
    log_probs = {
        name: site_log_prob(site, scaled=False)
        for name, site in model_trace.items()
        if site["type"] == "sample"
    }
    if any(
        site["type"] == "sample" and "_scan_time" in site["infer"] for site in model_trace.values()
    ):
        raise NotImplementedError(
            "TraceEnum_ELBO: enumerating guide sites together with an enumerated `scan` in the "
            "model is not supported; enumerate the chain's sites in the model only."
        )
    costs: list[tuple[Factor, Any]] = []  # (factor, scale)
    elbo = jnp.zeros(())
    # Model side: sites tied by the model's enumerated variables are summed out together, per
    # value of the guide's enumerated variables (kept).
    names = [name for name, site in model_trace.items() if site["type"] == "sample"]
    factors = {name: site_factor(model_trace[name], log_probs[name], first) for name in names}
    groups = tied_groups(names, factors, model_homes)
    keep = frozenset(guide_homes)
    for members in groups:
        if not any(name in model_homes for name in members):
            (name,) = members  # its scale (any shape) applied as in Trace_ELBO
            site = model_trace[name]
            costs.append((site_factor(site, site_log_prob(site), first), None))
            continue
        scale = group_scale(model_trace, members)
        _check_model_enum_within_guide(members, factors, model_homes, guide_homes)
        total, rest = contract_keeping([factors[n] for n in members], homes, keep)
        elbo = elbo + (total if scale == 1.0 else scale * total)
        costs.extend((factor, None if scale == 1.0 else scale) for factor in rest)
    # Guide side: -log q of every guide sample site (scaled as in Trace_ELBO).
    for name, site in guide_trace.items():
        if site["type"] == "sample":
            log_q = _guide_log_prob(name, site, model_trace)
            costs.append((site_factor(site, -log_q, first), None))
    # Weights: the guide's marginal probability of the enumerated variables of each term.
    q_factors = [
        site_factor(site, site_log_prob(site, scaled=False), first)
        for name, site in guide_trace.items()
        if name in guide_homes
    ]
    weights: dict[frozenset[str], Factor] = {}
    for factor, scale in costs:
        cost = factor.log if scale is None else scale * factor.log
        needed = frozenset(n for n in factor.names if n in guide_homes)
        if not needed:
            elbo = elbo + jnp.sum(cost)
            continue
        if needed not in weights:
            weights[needed] = marginal(q_factors, guide_homes, needed)
        w = weights[needed]
        outside = [n for n in w.names if n not in factor.names]
        if outside:  # only a site outside a guide variable's plate can lack that plate
            raise ValueError(
                "TraceEnum_ELBO: a site depends on the guide's enumerated sites "
                f"{sorted(needed)} but is not in their plates {outside}; a site that depends "
                "on a variable of a plate must lie in that plate."
            )
        elbo = elbo + jnp.sum(jnp.exp(align(w, factor.names)) * cost)
    return elbo


def _check_model_enum_within_guide(
    members: list[str],
    factors: dict[str, Factor],
    model_homes: dict[str, frozenset[str]],
    guide_homes: dict[str, frozenset[str]],
) -> None:
    """A model enumerated variable summed inside ``log`` must be at least as local as every
    guide enumerated variable it meets (else the expectation over the guide's would not split
    over the plate's entries)."""
    for name in members:
        names = factors[name].names
        for var in (n for n in names if n in model_homes):
            for g in (n for n in names if n in guide_homes):
                if not guide_homes[g] <= model_homes[var]:
                    raise ValueError(
                        f"TraceEnum_ELBO: the model's enumerated site '{var}' (plates "
                        f"{sorted(model_homes[var])}) meets the guide's enumerated site '{g}' "
                        f"(plates {sorted(guide_homes[g])}) in site '{name}': a model "
                        "enumerated site must be no more global than the guide enumerated "
                        "sites it depends on. Enumerate it in the guide instead."
                    )


def _guide_log_prob(name: str, site: Message, model_trace: Trace) -> jax.Array:
    """``log q`` at a guide sample site, scaled (a latent site also by the subsampled model
    plates that the guide lacks, see :func:`_guide_scale`)."""
    if site["is_observed"]:
        return site_log_prob(site)
    return _mul_scale(site_log_prob(site, scaled=False), _guide_scale(name, site, model_trace))


def _site_terms(log_p: dict, log_q: dict) -> dict[str, jax.Array]:
    """``{site: log p - log q}`` over the sites of model and guide (0 where one lacks it)."""
    zero = jnp.zeros(())
    return {name: log_p.get(name, zero) - log_q.get(name, zero) for name in {**log_p, **log_q}}


def _multi_sample_log_probs(
    rng_key: jax.Array,
    param_map: dict[str, Any],
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
) -> tuple[dict[str, jax.Array], dict[str, jax.Array], Trace]:
    """Per-site ``log p`` and ``log q`` of one particle of a guide drawing ``N`` samples itself.

    The guide runs once; the model runs (vmapped) once per sample ``n`` with every guide
    sample and deterministic site substituted by its entry ``n`` and the guide's plate
    indices; model log densities are summed over the ``N`` samples.

    Returns:
        ``({model site: scalar log p}, {guide site: scalar log q}, guide_trace)``.
    """
    guide_key, model_key = jax.random.split(rng_key)
    guide_run = _detach_nonreparam(seed(substitute(guide, data=param_map), rng_seed=guide_key))
    guide_trace = trace(guide_run).get_trace(*args, **kwargs)
    sizes = {
        name: jnp.shape(site["value"])[0] if jnp.ndim(site["value"]) else None
        for name, site in guide_trace.items()
        if _is_latent(site)
    }
    if not sizes:
        raise ValueError(
            "Trace_ELBO(multi_sample_guide=True): the guide has no latent sample site."
        )
    num_samples = next(iter(sizes.values()))
    for name, size in sizes.items():
        if size != num_samples:
            raise ValueError(
                f"Trace_ELBO(multi_sample_guide=True): guide sample site '{name}' has leading "
                f"dim {size}, but the first sample site has {num_samples}; every sample site "
                "of a multi-sample guide must have the leading dim of the number of samples."
            )
    latents = {
        name: site["value"]
        for name, site in guide_trace.items()
        if (_is_latent(site) or site["type"] == "deterministic") and jnp.size(site["value"]) > 0
    }
    plates = {name: site["value"] for name, site in guide_trace.items() if site["type"] == "plate"}

    def model_terms(key, latent):
        data = {**param_map, **plates, **latent}
        run = seed(_require_guide_values(substitute(model, data=data)), rng_seed=key)
        model_trace = trace(run).get_trace(*args, **kwargs)
        return {
            name: jnp.sum(site_log_prob(site))
            for name, site in model_trace.items()
            if site["type"] == "sample"
        }

    keys = jax.random.split(model_key, num_samples)
    model_sums = jax.tree_util.tree_map(
        lambda x: jnp.sum(x, axis=0), jax.vmap(model_terms)(keys, latents)
    )
    log_q = {
        name: jnp.sum(site_log_prob(site))
        for name, site in guide_trace.items()
        if site["type"] == "sample"
    }
    return model_sums, log_q, guide_trace


class TraceMeanField_ELBO(ELBO):
    """Trace ELBO with analytic ``KL(q(z) || p(z | ...))`` for latent sites where possible.

    For each latent model site whose guide site has the same shape (batch and event) and the
    same log-probability scale, and for whose distribution pair ``kl_divergence`` is
    registered, ``scale * KL`` replaces the Monte Carlo term ``log p(z) - log q(z)``; other
    sites fall back to Monte Carlo. Exact in expectation when the guide is mean-field (each
    guide site independent of the others), with lower variance. Observed guide sites count
    ``-log q`` as in :class:`Trace_ELBO` (NumPyro skips it for an observed guide site whose
    name is also a model site; this estimator then matches :class:`Trace_ELBO`).

    Args:
        num_particles, vectorize_particles: see :class:`ELBO`.
        sum_sites: ``False``: :meth:`~ELBO.loss` returns ``{site name: loss term}`` (see
            :class:`Trace_ELBO`).
    """

    can_infer_discrete = True

    def __init__(
        self,
        num_particles: int = 1,
        vectorize_particles: bool | Callable = True,
        sum_sites: bool = True,
    ):
        super().__init__(num_particles, vectorize_particles)
        self.sum_sites = bool(sum_sites)

    def particle_loss(self, rng_key, param_map, model, guide, args, kwargs):
        model_trace, guide_trace = get_importance_traces(
            rng_key, param_map, model, guide, args, kwargs
        )
        elbo = jnp.zeros(())
        terms: dict[str, jax.Array] = {}
        for name, site in model_trace.items():
            if site["type"] != "sample":
                continue
            log_p = jnp.sum(site_log_prob(site))
            if site["is_observed"]:
                elbo = elbo + log_p
                terms[name] = log_p
                continue
            guide_site = guide_trace[name]
            g_scale = _guide_scale(name, guide_site, model_trace)
            kl = self._analytic_kl(site, guide_site, g_scale)
            if kl is not None:
                term = -jnp.sum(_mul_scale(kl, site["scale"]))
                elbo = elbo + term
            else:
                log_q = jnp.sum(_mul_scale(site_log_prob(guide_site, scaled=False), g_scale))
                elbo = elbo + log_p - log_q
                term = log_p - log_q
            terms[name] = term
        for name, site in guide_trace.items():
            if site["type"] == "sample" and (
                site["is_observed"]
                or name not in model_trace
                or model_trace[name]["type"] != "sample"
            ):
                log_q = jnp.sum(_guide_log_prob(name, site, model_trace))
                elbo = elbo - log_q
                terms[name] = terms.get(name, jnp.zeros(())) - log_q
        surrogate = _score_log_prob(guide_trace)
        return (elbo if self.sum_sites else terms), surrogate

    @staticmethod
    def _analytic_kl(model_site: Message, guide_site: Message, guide_scale):
        p, q = model_site["fn"], guide_site["fn"]
        if p.batch_shape != q.batch_shape or p.event_shape != q.event_shape:
            return None
        if tuple(jnp.shape(guide_site["value"])) != q.batch_shape + q.event_shape:
            return None  # a sample_shape: the KL would count one draw
        if not same_scale(model_site["scale"], guide_scale):
            return None
        try:
            return kl_divergence(q, p)
        except (NotImplementedError, ValueError):
            return None


class RenyiELBO(ELBO):
    """The variational Rényi bound (Li & Turner, 2016) of order ``alpha``.

    ``L_alpha = 1 / (1 - alpha) * log mean_i exp((1 - alpha) * w_i)`` with the log weights
    ``w_i = log p(x, z_i) - log q(z_i)``, ``z_i ~ q``. ``alpha = 0`` gives the importance
    weighted bound (IWAE); ``alpha -> 1`` tends to the ELBO (``alpha = 1`` itself is not
    allowed: use :class:`Trace_ELBO`). As in NumPyro, the bound is computed separately for
    each element of the plates that enclose every sample site of model and guide (e.g. a data
    plate around the whole model) and summed; subsampling is only allowed in such plates.
    All latent guide sites must be reparameterizable. ``log q`` includes observed guide
    sites, as in NumPyro.
    """

    def __init__(self, alpha: float = 0.0, num_particles: int = 2):
        if alpha == 1:
            raise ValueError("RenyiELBO: alpha = 1 is the standard ELBO; use Trace_ELBO instead.")
        super().__init__(num_particles)
        self.alpha = float(alpha)

    def __repr__(self) -> str:
        return f"RenyiELBO(alpha={self.alpha}, num_particles={self.num_particles})"

    def particle_loss(self, rng_key, param_map, model, guide, args, kwargs):
        """One particle: ``(log_weights, plate_scale)``.

        ``log_weights`` has the shape of the common (independent) plates, e.g. ``(B,)`` for a
        data plate of (sub)size ``B`` enclosing all sites, else ``()``; its entries are
        unscaled by the subsampling of those plates, whose factor is ``plate_scale`` (scalar).
        """
        model_trace, guide_trace = get_importance_traces(
            rng_key, param_map, model, guide, args, kwargs
        )
        for name, site in guide_trace.items():
            if _is_latent(site) and not site["fn"].has_rsample:
                raise ValueError(
                    f"RenyiELBO: guide site '{name}' ({type(site['fn']).__name__}) is not "
                    "reparameterizable; use Trace_ELBO for non-reparameterizable sites."
                )
        sites = [
            (site, "model", name) for name, site in model_trace.items() if site["type"] == "sample"
        ] + [
            (site, "guide", name) for name, site in guide_trace.items() if site["type"] == "sample"
        ]
        frames = [set(site["cond_indep_stack"]) for site, _, _ in sites]
        indep = set.intersection(*frames) if frames else set()
        for frame in set().union(*frames) if frames else set():
            if frame not in indep and _plate_scale(model_trace, frame.name) != 1.0:
                raise ValueError(
                    f"RenyiELBO: subsampling is only supported in plates that enclose every "
                    f"sample site of model and guide; plate '{frame.name}' does not."
                )
        indep_scale = 1.0
        for frame in indep:
            indep_scale *= _plate_scale(model_trace, frame.name)
        indep_dims = sorted(frame.dim for frame in indep)
        out_ndim = -indep_dims[0] if indep_dims else 0

        total = jnp.zeros(())
        for site, kind, name in sites:
            log_prob = site_log_prob(site, scaled=False)
            own_scale = kind == "model" or site["is_observed"]
            scale = site["scale"] if own_scale else _guide_scale(name, site, model_trace)
            log_prob = _mul_scale(log_prob, scale)
            if indep_scale != 1.0:
                log_prob = log_prob / indep_scale
            # Sum every dim that is not an independent plate dim; keep those aligned right.
            ndim = jnp.ndim(log_prob)
            keep = {ndim + d for d in indep_dims if ndim + d >= 0}
            log_prob = jnp.sum(
                log_prob, axis=tuple(a for a in range(ndim) if a not in keep), keepdims=True
            )
            log_prob = jnp.reshape(log_prob, jnp.shape(log_prob)[max(ndim - out_ndim, 0) :])
            sign = 1.0 if kind == "model" else -1.0
            total = total + sign * log_prob
        return total, jnp.asarray(indep_scale, dtype=jnp.result_type(float))

    def reduce_particles(self, elbo_particles, surrogates, axis_name=None):
        """Negative Rényi bound from ``(S_local, *plate_shape)`` log weights (see class doc)."""
        n = self.num_particles
        scaled = (1.0 - self.alpha) * elbo_particles
        shift = lax.stop_gradient(jnp.max(scaled, axis=0))
        if axis_name is not None:
            shift = lax.pmax(shift, axis_name)
        shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
        sum_exp = _psum(jnp.sum(jnp.exp(scaled - shift), axis=0), axis_name)
        log_mean = jnp.log(sum_exp) + shift - jnp.log(n)
        bound = jnp.sum(log_mean) / (1.0 - self.alpha)
        return -(surrogates[0] * bound)


# ---------------------------------------------------------------------------------------------
# TraceGraph_ELBO: which cost terms depend on each non-reparameterizable site
# ---------------------------------------------------------------------------------------------


class _provenance_values(Messenger):
    """Set the non-reparameterizable guide sites to given values that also carry (by a ``0 *``
    term) the dependencies of the site's distribution, for the dataflow of the jaxpr."""

    def __init__(self, fn, values: dict[str, jax.Array]):
        self.values = values
        super().__init__(fn)

    def process_message(self, msg: Message) -> None:
        if msg["type"] != "sample" or msg["name"] not in self.values:
            return
        value = self.values[msg["name"]]
        leaves = [
            jnp.sum(jnp.asarray(leaf, jnp.float32))
            for leaf in jax.tree_util.tree_leaves(msg["fn"])
            if isinstance(leaf, int | float | np.ndarray | jax.Array)
            and not jax.dtypes.issubdtype(jnp.result_type(leaf), jax.dtypes.prng_key)
        ]
        dep = 0.0 * sum(leaves, start=jnp.zeros((), jnp.float32))
        msg["value"] = value + dep.astype(jnp.result_type(value))


def _jaxpr_deps(jaxpr: jax.extend.core.Jaxpr, in_deps: list[frozenset]) -> list[frozenset]:
    """Which inputs each output of ``jaxpr`` depends on (sets of labels): a forward dataflow
    pass; inside calls with a sub-jaxpr (``pjit``, custom derivatives) per output, other
    higher-order primitives (loops, conds) conservatively every input to every output."""
    env: dict = {}
    for var, deps in zip(jaxpr.invars, in_deps, strict=True):
        env[var] = deps

    def read(v) -> frozenset:
        return env.get(v, frozenset()) if isinstance(v, jax.extend.core.Var) else frozenset()

    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        outs = None
        for sub in eqn.params.values():
            inner = getattr(sub, "jaxpr", sub)
            if (
                isinstance(inner, jax.extend.core.Jaxpr)
                and len(inner.invars) == len(ins)
                and len(inner.outvars) == len(eqn.outvars)
            ):
                outs = _jaxpr_deps(inner, ins)
                break
        if outs is None:
            union = frozenset().union(*ins)
            outs = [union] * len(eqn.outvars)
        for var, deps in zip(eqn.outvars, outs, strict=True):
            env[var] = deps
    return [read(v) for v in jaxpr.outvars]


def _nonreparam_deps(
    rng_key: jax.Array,
    param_map: dict[str, Any],
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    values: dict[str, jax.Array],
) -> tuple[dict[str, frozenset], dict[str, frozenset]]:
    """``(model_deps, guide_deps)``: for each sample site of model and guide, the
    non-reparameterizable guide sites (keys of ``values``) that its log density depends on,
    through values or distribution parameters (traced once, on abstract values)."""
    names = list(values)

    def log_probs(*nr_values):
        subs = dict(zip(names, nr_values, strict=True))
        guide_key, model_key = jax.random.split(rng_key)
        guide_run = seed(_provenance_values(substitute(guide, data=param_map), subs), guide_key)
        guide_trace = trace(guide_run).get_trace(*args, **kwargs)
        model_run = seed(replay(substitute(model, data=param_map), trace=guide_trace), model_key)
        model_trace = trace(model_run).get_trace(*args, **kwargs)
        return _site_log_probs(model_trace, guide_trace)

    specs = [jax.ShapeDtypeStruct(jnp.shape(values[n]), jnp.result_type(values[n])) for n in names]
    closed, out_shape = jax.make_jaxpr(log_probs, return_shape=True)(*specs)
    # Constants (param values, data) depend on no site: unknown variables read as empty sets.
    out_deps = _jaxpr_deps(closed.jaxpr, [frozenset([n]) for n in names])
    model_deps, guide_deps = jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(out_shape), out_deps
    )
    return model_deps, guide_deps


def _site_log_probs(model_trace: dict, guide_trace: dict) -> tuple[dict, dict]:
    """``({model sample site: log p}, {guide sample site: log q})``, scaled and masked."""
    model_lp = {
        name: site_log_prob(site) for name, site in model_trace.items() if site["type"] == "sample"
    }
    guide_lp = {
        name: _guide_log_prob(name, site, model_trace)
        for name, site in guide_trace.items()
        if site["type"] == "sample"
    }
    return model_lp, guide_lp


def _sum_to(cost: jax.Array, cost_frames, target_frames, ndim: int) -> jax.Array:
    """Sum a cost term over every dim but the plate dims it shares with the target site,
    and shape it to broadcast against the target's ``ndim``-dim log density."""
    keep = {f.dim for f in cost_frames if f in target_frames and -ndim <= f.dim}
    cdim = jnp.ndim(cost)
    axes = tuple(a for a in range(cdim) if a - cdim not in keep)
    cost = jnp.sum(cost, axis=axes, keepdims=True)
    if cdim > ndim:
        cost = jnp.reshape(cost, jnp.shape(cost)[cdim - ndim :])
    return cost


class TraceGraph_ELBO(ELBO):
    """The ELBO with a Rao-Blackwellized score-function estimator for non-reparameterizable
    sites (Schulman et al. 2015, *Gradient estimation using stochastic computation graphs*).

    As :class:`Trace_ELBO` in value. Each non-reparameterizable latent guide site ``z`` (e.g.
    a discrete one) gets the surrogate term ``sum(log q(z) * stop_gradient(cost_z))``, where
    ``cost_z`` holds only the terms ``log p - log q`` of the sites *downstream* of ``z``
    (whose value or distribution depends on ``z``, found by a dataflow pass over the traced
    computation), summed over every plate dim that is not one of ``z``'s plates (so element
    ``i`` of a plate only sees the costs of element ``i``). ``log q(z)`` is not scaled by
    subsampling in that term (the costs are), as in Pyro. With ``num_particles > 1`` each
    ``cost_z`` has a leave-one-out baseline (the mean of the other particles' costs: no
    bias, less variance). Reparameterized sites are differentiated through their samples.

    Args:
        num_particles, vectorize_particles: see :class:`ELBO`.
    """

    can_infer_discrete = True

    def __init__(self, num_particles: int = 1, vectorize_particles: bool | Callable = True):
        super().__init__(num_particles, vectorize_particles)

    def particle_loss(self, rng_key, param_map, model, guide, args, kwargs):
        """One particle: ``(elbo, {site: (log q unscaled, downstream cost)})``."""
        model_trace, guide_trace = get_importance_traces(
            rng_key, param_map, model, guide, args, kwargs
        )
        model_lp, guide_lp = _site_log_probs(model_trace, guide_trace)
        elbo = jnp.zeros(())
        for value in model_lp.values():
            elbo = elbo + jnp.sum(value)
        nonreparam = {
            name: site["value"]
            for name, site in guide_trace.items()
            if _is_latent(site) and not site["fn"].has_rsample
        }
        for name, value in guide_lp.items():
            # The direct gradient of log q at a non-reparameterized site has mean 0: its
            # score-function term carries the gradient.
            value = jnp.sum(value)
            elbo = elbo - (lax.stop_gradient(value) if name in nonreparam else value)
        if not nonreparam:
            return elbo, {}
        model_deps, guide_deps = _nonreparam_deps(
            rng_key, param_map, model, guide, args, kwargs, nonreparam
        )
        terms = [(model_trace[n], lp, model_deps[n]) for n, lp in model_lp.items()]
        terms += [(guide_trace[n], -lp, guide_deps[n]) for n, lp in guide_lp.items()]
        surrogates = {}
        for node in nonreparam:
            site = guide_trace[node]
            log_q = site_log_prob(site, scaled=False)
            cost = jnp.zeros(())
            for other, lp, deps in terms:
                if node in deps:
                    cost = cost + _sum_to(
                        lp, other["cond_indep_stack"], site["cond_indep_stack"], jnp.ndim(log_q)
                    )
            surrogates[node] = (log_q, lax.stop_gradient(jnp.broadcast_to(cost, jnp.shape(log_q))))
        return elbo, surrogates

    def reduce_particles(self, elbo_particles, surrogates, axis_name=None):
        """``-mean(elbo)`` plus, for each non-reparameterizable site, the zero-valued
        score-function term with the leave-one-out baseline (``num_particles > 1``)."""
        n = self.num_particles
        elbo = _psum(jnp.sum(elbo_particles), axis_name) / n
        score = jnp.zeros(())
        for log_q, cost in surrogates.values():
            if n > 1:
                mean_cost = _psum(jnp.sum(cost, axis=0), axis_name) / n
                advantage = (n / (n - 1)) * (cost - mean_cost)
            else:
                advantage = cost
            score = score + _psum(jnp.sum(advantage * log_q), axis_name) / n
        return -(elbo + (score - lax.stop_gradient(score)))


# ---------------------------------------------------------------------------------------------
# PSIS diagnostic
# ---------------------------------------------------------------------------------------------


def fit_generalized_pareto(x: np.ndarray) -> tuple[float, float]:
    """Shape ``k`` and scale ``sigma`` of a generalized Pareto fit to exceedances ``x``.

    The empirical Bayes estimate of Zhang & Stephens (2009, *Technometrics* 51(3)) with the
    weakly informative prior on ``k`` of Vehtari et al. (2024, *JMLR* 25(72), appendix G:
    ``k`` shrunk towards 0.5 with weight 10 / (n + 10)), as in PSIS. Written here rather than
    imported: the maintained implementations (ArviZ's ``psislw``, arviz-stats) are not jppl
    runtime dependencies, and would add xarray (and on ArviZ 0.x matplotlib) to every install
    for one 30-line fit; ``tests/test_fidelity_elbo.py`` checks it against ArviZ to 1e-6.

    Args:
        x: ``(n,)`` positive exceedances over the tail threshold, ``n >= 2`` (host array).

    Returns:
        ``(k, sigma)``, floats.
    """
    x = np.sort(np.asarray(x, dtype=np.float64))
    n = x.shape[0]
    if x.ndim != 1 or n < 2:
        raise ValueError(f"fit_generalized_pareto: expected (n,) with n >= 2, got {x.shape}")
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        prior = 3.0
        m = 30 + int(np.sqrt(n))
        # Grid of theta = -k / sigma candidates around the scale of the data (Zhang & Stephens).
        theta = 1.0 / x[-1] + (1.0 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))) / (
            prior * x[int(n / 4 + 0.5) - 1]
        )
        k_theta = np.mean(np.log1p(-theta[:, None] * x), axis=1)
        profile = n * (np.log(-theta / k_theta) - k_theta - 1.0)
        # Posterior weights of the grid points: 1 / sum_j exp(L_j - L_i).
        weights = 1.0 / np.sum(np.exp(profile[None, :] - profile[:, None]), axis=1)
        keep = weights >= 10 * np.finfo(float).eps
        weights, theta = weights[keep], theta[keep]
        weights = weights / np.sum(weights)
        theta_hat = np.sum(theta * weights)
        k = float(np.mean(np.log1p(-theta_hat * x)))
        sigma = float(-k / theta_hat)
    a = 10.0
    k = k * n / (n + a) + a * 0.5 / (n + a)
    return k, sigma


def psis_khat(log_weights: np.ndarray) -> float:
    """Pareto ``k``-hat of importance weights (Vehtari et al. 2024, algorithm 1).

    Fits a generalized Pareto distribution (:func:`fit_generalized_pareto`) to the largest
    ``M = ceil(min(0.2 S, 3 sqrt(S)))`` of the ``S`` weights, minus the threshold (the next
    largest).

    Args:
        log_weights: ``(S,)`` log importance weights (host array; any additive constant).

    Returns:
        ``k``-hat; ``inf`` (with a warning) when fewer than 5 weights lie above the threshold.
    """
    lw = np.sort(np.asarray(log_weights, dtype=np.float64).ravel())
    lw = lw - lw[-1]
    s = lw.shape[0]
    m = math.ceil(min(0.2 * s, 3.0 * math.sqrt(s)))
    cutoff = max(np.log(np.finfo(float).tiny), lw[-(m + 1)])
    tail = lw[lw > cutoff]
    if tail.shape[0] < 5:
        warnings.warn(
            f"psis_diagnostic: only {tail.shape[0]} of {s} weights above the tail threshold "
            "(5 needed); k-hat is not reliable: use more particles. Returning inf.",
            UserWarning,
            stacklevel=3,
        )
        return float("inf")
    k, _ = fit_generalized_pareto(np.exp(tail) - np.exp(cutoff))
    return k


def log_importance_weight(
    rng_key: jax.Array,
    param_map: dict[str, Any],
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
) -> jax.Array:
    """``log p(x, z) - log q(z)`` at one draw ``z ~ q`` (all sample sites, scaled): ``()``."""
    model_trace, guide_trace = get_importance_traces(rng_key, param_map, model, guide, args, kwargs)
    log_w = jnp.zeros(())
    for site in model_trace.values():
        if site["type"] == "sample":
            log_w = log_w + jnp.sum(site_log_prob(site))
    for name, site in guide_trace.items():
        if site["type"] == "sample":
            log_w = log_w - jnp.sum(_guide_log_prob(name, site, model_trace))
    return log_w


def psis_diagnostic(
    rng_key: jax.Array,
    param_map: dict[str, Any],
    model: Callable,
    guide: Callable,
    *args,
    num_particles: int = 1000,
    chunk_size: int | None = None,
    **kwargs,
) -> float:
    """Pareto ``k``-hat of the importance weights ``p(x, z) / q(z)``, ``z ~ guide``.

    The diagnostic of Yao et al. (2018), *Yes, but did it work?*: ``k < 0.5``: the guide's
    importance weights have finite variance; ``0.5 <= k < 0.7``: finite mean; ``k >= 0.7``:
    the guide is a poor fit (importance sampling with it is unreliable).

    Args:
        rng_key: PRNG key; particle ``i`` uses ``fold_in(rng_key, i)``.
        param_map: ``{param site name: constrained value}`` (e.g. ``svi_result.params``).
        model, guide: the model and guide; ``*args, **kwargs`` are passed to both.
        num_particles: number of draws from the guide (at least 2; several hundred or more).
        chunk_size: draws evaluated at once (``None``: all).

    Returns:
        ``k``-hat (a float; ``inf`` when too few weights are in the tail).
    """
    if isinstance(num_particles, bool) or not isinstance(num_particles, int | np.integer):
        raise TypeError(f"psis_diagnostic: num_particles must be an int, got {num_particles!r}")
    if num_particles < 2:
        raise ValueError(f"psis_diagnostic: num_particles must be >= 2, got {num_particles}")
    chunk = num_particles if chunk_size is None else int(chunk_size)
    if chunk < 1:
        raise ValueError(f"psis_diagnostic: chunk_size must be >= 1, got {chunk_size}")

    @jax.jit
    def weights(keys):
        return jax.vmap(
            lambda key: log_importance_weight(key, param_map, model, guide, args, kwargs)
        )(keys)

    parts = [
        np.asarray(jax.device_get(weights(particle_keys(rng_key, jnp.arange(i, i + chunk)))))
        for i in range(0, num_particles, chunk)
    ]
    return psis_khat(np.concatenate(parts)[:num_particles])
