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
  collectives are then used for the cross-particle sums).

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
loss is always the plain negative ELBO estimate.

Subsampling: a ``plate(..., subsample_size=B)`` scales the log densities inside it by
``size / B``. Model and guide plates with the same name must have the same sizes; the guide's
minibatch indices are replayed into the model. A guide latent site that the model places in a
subsampled plate but the guide does not (a local latent sampled without the plate) has its
``log q`` scaled by that plate's factor too, so the estimate stays unbiased.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jppl.distributions.kl import kl_divergence
from jppl.handlers import replay, seed, substitute, trace
from jppl.model import site_log_prob
from jppl.parallel import map_particles
from jppl.primitives import Message, Messenger

__all__ = [
    "ELBO",
    "RenyiELBO",
    "TraceMeanField_ELBO",
    "Trace_ELBO",
    "get_importance_traces",
    "particle_keys",
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
            raise ValueError(
                f"Latent sample site '{msg['name']}' of the model has no matching sample site "
                "in the guide; the guide must sample every latent site of the model (under the "
                "same name), or the site must be observed."
            )


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
) -> tuple[Trace, Trace]:
    """Run the guide, then the model replayed against it; return ``(model_trace, guide_trace)``.

    ``param_map`` (constrained values) is substituted into both. The guide gets
    ``split(rng_key)[0]`` and the model ``split(rng_key)[1]`` (for its own ``prng_key()`` calls
    and unreplayed subsampling plates). Latent model sites take the guide's values; the
    guide's plate indices are reused by the model's plates of the same name.

    Raises:
        ValueError: a latent model site missing from the guide, plates that disagree, or a
            guide value of the wrong shape.
    """
    guide_key, model_key = jax.random.split(rng_key)
    guide_run = _detach_nonreparam(seed(substitute(guide, data=param_map), rng_seed=guide_key))
    guide_trace = trace(guide_run).get_trace(*args, **kwargs)
    model_run = seed(
        _require_guide_values(replay(substitute(model, data=param_map), trace=guide_trace)),
        rng_seed=model_key,
    )
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
        if _is_latent(site) and not site["fn"].has_rsample:
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
    """

    def __init__(self, num_particles: int = 1):
        if isinstance(num_particles, bool) or not isinstance(num_particles, int):
            raise TypeError(f"num_particles must be an int, got {num_particles!r}")
        if num_particles < 1:
            raise ValueError(f"num_particles must be >= 1, got {num_particles}")
        self.num_particles = num_particles

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
        self, elbo_particles: jax.Array, surrogates: Any, axis_name: str | None = None
    ) -> jax.Array:
        """Combine all ``num_particles`` particles into the scalar loss (negative ELBO).

        Args:
            elbo_particles: ``(S_local,)`` per-particle ELBO estimates.
            surrogates: ``(S_local,)`` per-particle ``log q`` of non-reparameterizable sites.
            axis_name: the mapped axis across which the particles are split (``None``: all
                ``num_particles`` are here).

        Returns:
            scalar: value ``-mean(elbo_particles)``; gradient the unbiased surrogate
            gradient (with the leave-one-out baseline when ``num_particles > 1``).
        """
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

        def one(key, particle_args):
            return self.particle_loss(key, param_map, model, guide, particle_args, kwargs)

        elbos, surrogates = map_particles(
            one, keys, batch, in_axes=(0, batch_axis), what=f"{type(self).__name__}: num_particles"
        )
        return self.reduce_particles(elbos, surrogates)


class Trace_ELBO(ELBO):
    """The standard ELBO ``E_q[log p(x, z) - log q(z)]``, estimated by Monte Carlo.

    Reparameterized latent sites are differentiated through their samples; others get a
    score-function term with a leave-one-out baseline (``num_particles > 1``).
    """

    def particle_loss(self, rng_key, param_map, model, guide, args, kwargs):
        model_trace, guide_trace = get_importance_traces(
            rng_key, param_map, model, guide, args, kwargs
        )
        elbo = jnp.zeros(())
        for site in model_trace.values():
            if site["type"] == "sample":
                elbo = elbo + jnp.sum(site_log_prob(site))
        for name, site in guide_trace.items():
            if _is_latent(site):
                log_q = site_log_prob(site, scaled=False)
                elbo = elbo - jnp.sum(_mul_scale(log_q, _guide_scale(name, site, model_trace)))
        return elbo, _score_log_prob(guide_trace)


class TraceMeanField_ELBO(ELBO):
    """Trace ELBO with analytic ``KL(q(z) || p(z | ...))`` for latent sites where possible.

    For each latent model site whose guide site has the same shape (batch and event) and the
    same log-probability scale, and for whose distribution pair ``kl_divergence`` is
    registered, ``scale * KL`` replaces the Monte Carlo term ``log p(z) - log q(z)``; other
    sites fall back to Monte Carlo. Exact in expectation when the guide is mean-field (each
    guide site independent of the others), with lower variance.
    """

    def particle_loss(self, rng_key, param_map, model, guide, args, kwargs):
        model_trace, guide_trace = get_importance_traces(
            rng_key, param_map, model, guide, args, kwargs
        )
        elbo = jnp.zeros(())
        for name, site in model_trace.items():
            if site["type"] != "sample":
                continue
            log_p = jnp.sum(site_log_prob(site))
            if site["is_observed"]:
                elbo = elbo + log_p
                continue
            guide_site = guide_trace[name]
            g_scale = _guide_scale(name, guide_site, model_trace)
            kl = self._analytic_kl(site, guide_site, g_scale)
            if kl is not None:
                elbo = elbo - jnp.sum(_mul_scale(kl, site["scale"]))
            else:
                log_q = site_log_prob(guide_site, scaled=False)
                elbo = elbo + log_p - jnp.sum(_mul_scale(log_q, g_scale))
        for name, site in guide_trace.items():
            if _is_latent(site) and (
                name not in model_trace or model_trace[name]["type"] != "sample"
            ):
                log_q = site_log_prob(site, scaled=False)
                elbo = elbo - jnp.sum(_mul_scale(log_q, _guide_scale(name, site, model_trace)))
        return elbo, _score_log_prob(guide_trace)

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
    All latent guide sites must be reparameterizable.
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
        ] + [(site, "guide", name) for name, site in guide_trace.items() if _is_latent(site)]
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
            scale = site["scale"] if kind == "model" else _guide_scale(name, site, model_trace)
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
