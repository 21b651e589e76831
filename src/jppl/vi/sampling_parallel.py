"""The sampling-parallel loss: an ELBO whose particles see augmented minibatches, optionally
with the exact predictive likelihood.

The recipe of *Sampling Parallelism for Fast and Efficient Bayesian Learning*: each step draws
``S`` weight samples (the ELBO's particles), evaluates them spread over the ``sample`` axis of
a device mesh, and averages their gradients; each *sample group* may see its own augmentation
of the minibatch. :class:`SamplingParallelLoss` wraps an ELBO and changes only what a particle
sees and, in exact mode, how particles are combined: the particle split is the ELBO's
(:meth:`~jppl.vi.ELBO.loss`, :func:`jppl.parallel.map_particles`), and so are the per-particle
loss and its reduction. :class:`jppl.nn.Trainer` trains with it.

Keys: at the step keyed ``step_key`` particle ``i`` uses ``fold_in(step_key, i)`` (as every
ELBO) and sample group ``g`` augments with ``fold_in(fold_in(step_key, AUGMENT_TAG), g)``;
particles are assigned to groups in contiguous blocks of ``S / G`` (particle ``i`` is in group
``i // (S / G)``). So the loss does not depend on the mesh (up to the order of floating-point
sums).

Exact mode (``exact=True``) replaces the per-sample expected log-likelihood by the log of the
sample-averaged predictive probability, per data point::

    loss = -scale * sum_n log( (1/S) sum_s p(y_n | x_n, w_s) ) + mean_s KL_s

which is a tighter (smaller, by Jensen) objective. Cost: the likelihood can no longer be
reduced to one scalar per sample before the samples are combined; the ``(S, B)`` per-sample
per-data-point log-likelihoods are combined across the ``sample`` axis (a log-sum-exp per data
point: two all-reduces of ``B`` floats per step, on top of the gradient all-reduce that both
modes need), and the gradients of the samples are coupled through per-data-point softmax
weights. The guide and model are traced twice per particle (once for the KL part, with the
observations hidden, once for the likelihoods); XLA removes the duplicated work (measured on
CPU: the same flops as the standard loss). It needs reparameterizable guide sites, observed
sites inside the plate named ``data_plate``, and one common scale for all observed sites.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.nn import logsumexp

from jppl.handlers import block
from jppl.model import site_log_prob
from jppl.parallel import axis_size, current_mesh, map_particles
from jppl.primitives import Message
from jppl.vi.elbo import ELBO, RenyiELBO, get_importance_traces, same_scale

__all__ = ["AUGMENT_TAG", "Augment", "SamplingParallelLoss"]

Batch = tuple[jax.Array, ...]
Augment = Callable[[jax.Array, Batch], Batch]

AUGMENT_TAG: int = 0x41554755
"""``fold_in`` tag of the augmentation keys of a step (``'AUGU'``; far above any particle id)."""


def _hide_observed(msg: Message) -> bool:
    return msg["type"] == "sample" and bool(msg["is_observed"])


class SamplingParallelLoss(ELBO):
    """An ELBO whose particles see per-group augmented minibatches; optionally exact.

    It evaluates the wrapped ELBO's :meth:`~jppl.vi.ELBO.particle_loss` for its
    ``num_particles`` particles (split over the active mesh's ``sample`` axis by
    :meth:`~jppl.vi.ELBO.loss`) and combines them with its
    :meth:`~jppl.vi.ELBO.reduce_particles`. On top (see the module docstring):

    * augmentation (:meth:`particle_args`): the model's positional arguments (the minibatch)
      are replaced, for the particles of group ``g``, by ``augment(fold_in(fold_in(rng_key,
      AUGMENT_TAG), g), args)``; the ``G`` augmentations are vmapped, and split over
      ``sample`` when ``G`` is a multiple of its size;
    * ``exact=True``: the log of the sample-averaged likelihood per data point.

    Args:
        elbo: the ELBO (``Trace_ELBO`` or ``TraceMeanField_ELBO``; ``RenyiELBO`` only without
            ``exact``), with ``num_particles = S``.
        num_groups: ``G``, the number of sample groups (divides ``S``).
        augment: ``augment(key, args) -> args``: a pure function of a PRNG key and the tuple
            of the model's positional arguments that returns a tuple of arrays with the same
            shapes and dtypes (e.g. randomly shifted images with unchanged labels). It must keep
            the order of the data points. ``None``: no augmentation (then ``G`` must be 1).
        exact: use the exact predictive likelihood.
        data_plate: name of the plate of the data points (only used by ``exact``).

    Raises:
        TypeError/ValueError: bad ``elbo``, ``num_groups``, ``augment`` or ``data_plate``.
    """

    def __init__(
        self,
        elbo: ELBO,
        *,
        num_groups: int = 1,
        augment: Augment | None = None,
        exact: bool = False,
        data_plate: str = "data",
    ):
        where = "SamplingParallelLoss"
        if not isinstance(elbo, ELBO):
            raise TypeError(f"{where}: elbo must be a jppl.vi ELBO, got {elbo!r}")
        super().__init__(elbo.num_particles)
        self.elbo = elbo
        is_int = isinstance(num_groups, int | np.integer) and not isinstance(num_groups, bool)
        if not is_int or num_groups < 1:
            raise ValueError(f"{where}: num_groups must be an int >= 1, got {num_groups!r}")
        self.num_groups = int(num_groups)
        if self.num_particles % self.num_groups:
            raise ValueError(
                f"{where}: num_groups={self.num_groups} must divide num_particles="
                f"{self.num_particles} (each group holds num_particles / num_groups particles)."
            )
        if augment is not None and not callable(augment):
            raise TypeError(f"{where}: augment must be a callable (key, args) -> args or None.")
        if augment is None and self.num_groups > 1:
            raise ValueError(
                f"{where}: num_groups={self.num_groups} > 1 needs an augment function (the "
                "groups differ only by their augmentation)."
            )
        if exact and isinstance(elbo, RenyiELBO):
            raise ValueError(f"{where}: exact=True needs Trace_ELBO or TraceMeanField_ELBO.")
        if not isinstance(data_plate, str) or not data_plate:
            raise TypeError(f"{where}: data_plate must be a plate name, got {data_plate!r}")
        self.augment = augment
        self.exact = bool(exact)
        self.data_plate = data_plate

    def __repr__(self) -> str:
        return (
            f"SamplingParallelLoss({self.elbo!r}, num_groups={self.num_groups}, "
            f"augment={self.augment is not None}, exact={self.exact})"
        )

    # -- augmentation -------------------------------------------------------------------------
    def group_keys(self, rng_key: jax.Array) -> jax.Array:
        """Augmentation keys ``(G,)`` of the step keyed ``rng_key``."""
        root = jax.random.fold_in(rng_key, AUGMENT_TAG)
        return jax.vmap(lambda g: jax.random.fold_in(root, g))(jnp.arange(self.num_groups))

    def group_batches(self, rng_key: jax.Array, args: Batch) -> Batch:
        """The ``G`` augmented copies of ``args``: each array gets a leading dim ``G``.

        Raises:
            ValueError: no ``augment`` function, or it changes shapes/dtypes or the structure.
        """
        if self.augment is None:
            raise ValueError("SamplingParallelLoss.group_batches: no augment function was given.")
        args = tuple(args)
        got = jax.eval_shape(lambda k, a: tuple(self.augment(k, a)), jax.random.key(0), args)
        want = [(tuple(jnp.shape(a)), jnp.result_type(a)) for a in args]
        have = [(tuple(a.shape), a.dtype) for a in jax.tree_util.tree_leaves(got)]
        if len(got) != len(args) or have != want:
            raise ValueError(
                "augment(key, args) must return a tuple of arrays with the shapes and dtypes of "
                f"args {[(s, str(d)) for s, d in want]}; got {[(s, str(d)) for s, d in have]}."
            )
        # The groups are split over `sample` only when they fill its devices evenly.
        axis = "sample" if self.num_groups % axis_size(current_mesh(), "sample") == 0 else None
        return map_particles(
            lambda k: tuple(self.augment(k, args)), self.group_keys(rng_key), axis=axis
        )

    def particle_args(self, rng_key: jax.Array, args: tuple) -> tuple[Any, int | None]:
        """Each particle's minibatch: ``args`` without ``augment``; else its group's
        augmented copy (one copy shared by all particles when ``G = 1``)."""
        if self.augment is None:
            return args, None
        groups = self.group_batches(rng_key, args)
        if self.num_groups == 1:
            return jax.tree_util.tree_map(lambda a: a[0], groups), None
        per_group = self.num_particles // self.num_groups
        return jax.tree_util.tree_map(lambda a: jnp.repeat(a, per_group, axis=0), groups), 0

    # -- particles ----------------------------------------------------------------------------
    def particle_loss(self, rng_key, param_map, model, guide, args, kwargs):
        """The wrapped ELBO's particle; with ``exact``: ``(elbo without the likelihood,
        (surrogate, per-data-point log-likelihood (B,), likelihood scale))``."""
        if not self.exact:
            return self.elbo.particle_loss(rng_key, param_map, model, guide, args, kwargs)
        prior_elbo, surrogate = self.elbo.particle_loss(
            rng_key, param_map, block(model, hide_fn=_hide_observed), guide, args, kwargs
        )
        model_trace, guide_trace = get_importance_traces(
            rng_key, param_map, model, guide, args, kwargs
        )
        log_lik, scale = self._log_likelihood(model_trace, guide_trace)
        return prior_elbo, (surrogate, log_lik, scale)

    def _log_likelihood(self, model_trace, guide_trace) -> tuple[jax.Array, jax.Array]:
        """``(per-data-point log-likelihood (B,), its common scale)`` of a particle's traces."""
        where = "SamplingParallelLoss(exact=True)"
        for name, site in guide_trace.items():
            if site["type"] == "sample" and not site["is_observed"] and not site["fn"].has_rsample:
                raise ValueError(
                    f"{where}: guide site '{name}' ({type(site['fn']).__name__}) is not "
                    "reparameterizable; the exact predictive loss needs reparameterized weights."
                )
        log_lik, scale, scale_site = None, None, None
        for name, site in model_trace.items():
            if site["type"] != "sample" or not site["is_observed"]:
                continue
            frames = [f for f in site["cond_indep_stack"] if f.name == self.data_plate]
            if not frames:
                raise ValueError(
                    f"{where}: observed site '{name}' is not inside the plate "
                    f"'{self.data_plate}' (data_plate); the exact loss averages the likelihood "
                    "of each data point of that plate over the weight samples."
                )
            if scale_site is None:
                scale, scale_site = site["scale"], name
            elif not same_scale(scale, site["scale"]):
                raise ValueError(
                    f"{where}: observed sites '{scale_site}' and '{name}' have different "
                    "log-probability scales; the exact loss needs one common scale."
                )
            lp = site_log_prob(site, scaled=False)
            pos = jnp.ndim(lp) + frames[0].dim
            lp = jnp.sum(lp, axis=tuple(a for a in range(jnp.ndim(lp)) if a != pos))
            log_lik = lp if log_lik is None else log_lik + lp
        if log_lik is None:
            raise ValueError(f"{where}: the model has no observed sample site.")
        return log_lik, jnp.asarray(1.0 if scale is None else scale, log_lik.dtype)

    def reduce_particles(self, elbo_particles, surrogates, axis_name=None):
        """The wrapped ELBO's reduction; with ``exact``, of the prior part, minus the scaled
        log of the sample-averaged likelihood of each data point (``axis_name`` must then be
        ``None``: the particles are all here, or split by a mesh)."""
        if not self.exact:
            return self.elbo.reduce_particles(elbo_particles, surrogates, axis_name)
        if axis_name is not None:
            raise ValueError(
                "SamplingParallelLoss(exact=True) reduces over all particles at once; split "
                "them with a mesh (SVI(..., mesh=...)) instead of a named mapped axis."
            )
        surrogate, log_lik, scale = surrogates  # (S,), (S, B), (S,)
        prior_loss = self.elbo.reduce_particles(elbo_particles, surrogate)
        log_mean_lik = logsumexp(log_lik, axis=0) - math.log(self.num_particles)  # (B,)
        return prior_loss - scale[0] * jnp.sum(log_mean_lik)
