"""Training Bayesian neural networks with sampling parallelism: :class:`Trainer`, thin over SVI.

The recipe of *Sampling Parallelism for Fast and Efficient Bayesian Learning*: each step draws
``S`` weight samples (ELBO particles) from a mean-field guide, evaluates them spread over the
``sample`` axis of a device mesh (optionally with the minibatch split over ``data``: hybrid
parallelism), and averages their gradients; each *sample group* may see its own augmentation
of the minibatch::

    bnn = BayesianModule("net", ViT(...), prior=normal_prior(1.0))
    def model(x, y):
        logits = bnn.model()(x)
        with jppl.plate("data", x.shape[0], shard="data"):
            jppl.sample("y", dist.CategoricalLogits(logits), obs=y)
    def guide(x, y):
        bnn.guide()

    trainer = Trainer(model, guide, optax.adam(1e-3), num_data=len(x), batch_size=128,
                      num_particles=16, num_groups=4, augment=random_shift,
                      mesh=parallel.make_mesh(sample=4))
    state = trainer.init(jax.random.key(0), (x, y))
    result = trainer.fit(state, (x, y), num_epochs=20, val_data=(x_val, y_val),
                         predict=bnn.predict, checkpoint_dir="ckpt")

The model describes *one minibatch* as if it were the data (a plate of size ``batch_size``);
the trainer multiplies the log-likelihood of the observed sites by ``num_data / batch_size``,
so the loss is the negative ELBO of the full data set: ``-(N/B) sum_batch log p(y | x, w) +
KL`` per weight sample (``KL`` weighted by the :class:`~jppl.nn.BayesianModule`'s
``kl_weight``).

Keys (everything follows from the state's key and step counter, whatever the mesh):

* step ``t`` uses ``step_key = fold_in(state.rng_key, t)`` and particle ``i`` uses
  ``fold_in(step_key, i)``, exactly as :class:`~jppl.vi.SVI`;
* sample group ``g`` augments with ``fold_in(fold_in(step_key, AUGMENT_TAG), g)``; particles
  are assigned to groups in contiguous blocks of ``S / G`` (particle ``i`` is in group
  ``i // (S / G)``);
* epoch ``e`` visits the data in the order ``permutation(fold_in(fold_in(state.rng_key,
  e * steps_per_epoch), SHUFFLE_TAG), N)`` (the last ``N mod B`` examples of it are skipped).

So the losses do not depend on the mesh (up to the order of floating-point sums), and a run
resumed from a checkpoint repeats the uninterrupted trajectory bitwise.

Exact mode (``exact=True``) replaces the per-sample expected log-likelihood by the log of the
sample-averaged predictive probability, per data point::

    loss = -(N/B) sum_n log( (1/S) sum_s p(y_n | x_n, w_s) ) + mean_s KL_s

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
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.nn import logsumexp
from jax.sharding import Mesh

from jppl.handlers import block
from jppl.nn.metrics import accuracy, expected_calibration_error, negative_log_likelihood
from jppl.nn.predict import sample_predictions, summarize_logits
from jppl.parallel.mesh import axis_size, current_mesh
from jppl.parallel.sharding import constrain, dim_spec, replicate, shard_log_prob, split_leading
from jppl.primitives import Message, Messenger
from jppl.vi.elbo import ELBO, RenyiELBO, TraceMeanField_ELBO, get_importance_traces, particle_keys
from jppl.vi.svi import SVI, SVIState, copy_state, load_state, save_state

__all__ = [
    "AUGMENT_TAG",
    "SHUFFLE_TAG",
    "EpochMetrics",
    "SamplingParallelLoss",
    "TrainResult",
    "Trainer",
    "latest_checkpoint",
]

Batch = tuple[jax.Array, ...]
Augment = Callable[[jax.Array, Batch], Batch]

AUGMENT_TAG: int = 0x41554755
"""``fold_in`` tag of the augmentation keys of a step (``'AUGU'``; far above any particle id)."""
SHUFFLE_TAG: int = 0x53485546
"""``fold_in`` tag of the shuffling key of an epoch (``'SHUF'``)."""


# ---------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------


class _scale_observed(Messenger):
    """Multiply the log-probability of observed sample sites (only) by ``factor``."""

    def __init__(self, fn: Callable | None = None, factor: float = 1.0):
        self.factor = factor
        super().__init__(fn)

    def process_message(self, msg: Message) -> None:
        if msg["type"] != "sample" or not msg["is_observed"]:
            return
        msg["scale"] = self.factor if msg["scale"] is None else self.factor * msg["scale"]


def _hide_observed(msg: Message) -> bool:
    return msg["type"] == "sample" and bool(msg["is_observed"])


# ---------------------------------------------------------------------------------------------
# The loss: ELBO particles with per-group augmented batches, optionally the exact predictive
# ---------------------------------------------------------------------------------------------


def _check_int(value, name: str, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{where}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _leading(tree: Any, what: str) -> int:
    sizes = {int(np.shape(x)[0]) if np.ndim(x) else -1 for x in jax.tree_util.tree_leaves(tree)}
    if not sizes or -1 in sizes or len(sizes) != 1:
        raise ValueError(
            f"{what}: every array must have the same leading (data) dim; got leading sizes "
            f"{sorted(sizes)} (-1: a scalar)."
        )
    return sizes.pop()


class SamplingParallelLoss:
    """The loss :class:`Trainer` hands to :class:`~jppl.vi.SVI` (usable with ``SVI`` directly).

    It evaluates ``elbo.num_particles`` particles with the wrapped ELBO's
    :meth:`~jppl.vi.ELBO.particle_loss` (particle ``i`` keyed ``fold_in(rng_key, i)``),
    split over the active mesh's ``sample`` axis, and combines them with its
    :meth:`~jppl.vi.ELBO.reduce_particles`; nothing of the ELBO is re-implemented. On top:

    * augmentation: the model's positional arguments (the minibatch) are replaced, for the
      particles of group ``g``, by ``augment(fold_in(fold_in(rng_key, AUGMENT_TAG), g), args)``
      (groups are contiguous blocks of ``S / G`` particles; the ``G`` augmentations are
      vmapped, and split over ``sample`` when ``G`` is a multiple of its size);
    * ``exact=True``: the log of the sample-averaged likelihood per data point (see the module
      docstring).

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
        self.elbo = elbo
        self.num_particles = elbo.num_particles
        self.num_groups = _check_int(num_groups, "num_groups", where)
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
        keys = self.group_keys(rng_key)
        n_dev = axis_size(current_mesh(), "sample")
        spmd = "sample" if n_dev > 1 and self.num_groups % n_dev == 0 else None
        if spmd is not None:
            keys = split_leading(keys, "sample")
        return jax.vmap(lambda k: tuple(self.augment(k, args)), spmd_axis_name=spmd)(keys)

    # -- particles ----------------------------------------------------------------------------
    def _exact_particle(self, key, param_map, model, guide, args, kwargs):
        """``(elbo without likelihood, surrogate, per-data-point log-lik (B,), lik scale)``."""
        prior_elbo, surrogate = self.elbo.particle_loss(
            key, param_map, block(model, hide_fn=_hide_observed), guide, args, kwargs
        )
        model_trace, guide_trace = get_importance_traces(key, param_map, model, guide, args, kwargs)
        for name, site in guide_trace.items():
            if site["type"] == "sample" and not site["is_observed"] and not site["fn"].has_rsample:
                raise ValueError(
                    f"Trainer(exact=True): guide site '{name}' ({type(site['fn']).__name__}) is "
                    "not reparameterizable; the exact predictive loss needs reparameterized "
                    "weights."
                )
        log_lik, scale, scale_site = None, None, None
        for name, site in model_trace.items():
            if site["type"] != "sample" or not site["is_observed"]:
                continue
            frames = [f for f in site["cond_indep_stack"] if f.name == self.data_plate]
            if not frames:
                raise ValueError(
                    f"Trainer(exact=True): observed site '{name}' is not inside the plate "
                    f"'{self.data_plate}' (data_plate); the exact loss averages the likelihood "
                    "of each data point of that plate over the weight samples."
                )
            if scale_site is None:
                scale, scale_site = site["scale"], name
            elif not _same_scale(scale, site["scale"]):
                raise ValueError(
                    f"Trainer(exact=True): observed sites '{scale_site}' and '{name}' have "
                    "different log-probability scales; the exact loss needs one common scale."
                )
            lp = site["fn"].log_prob(site["value"])
            lp = shard_log_prob(lp, site["cond_indep_stack"])
            pos = jnp.ndim(lp) + frames[0].dim
            lp = jnp.sum(lp, axis=tuple(a for a in range(jnp.ndim(lp)) if a != pos))
            log_lik = lp if log_lik is None else log_lik + lp
        if log_lik is None:
            raise ValueError("Trainer(exact=True): the model has no observed sample site.")
        scale = jnp.asarray(1.0 if scale is None else scale, log_lik.dtype)
        return prior_elbo, surrogate, log_lik, scale

    def loss(
        self,
        rng_key: jax.Array,
        param_map: dict[str, Any],
        model: Callable,
        guide: Callable,
        *args,
        **kwargs,
    ) -> jax.Array:
        """Scalar loss at one step (the ``loss`` interface of :class:`~jppl.vi.SVI`).

        Args:
            rng_key: the step key (particle ``i``: ``fold_in(rng_key, i)``).
            param_map: ``{param site name: constrained value}``.
            model, guide: as for an ELBO; ``*args`` (the minibatch) are augmented per group,
                ``**kwargs`` are shared by all particles.

        Raises:
            ValueError: ``num_particles`` not divisible by the mesh's ``sample`` axis size, or a
                model that ``exact`` cannot handle (see the module docstring).
        """
        num = self.num_particles
        n_dev = axis_size(current_mesh(), "sample")
        if num % n_dev:
            raise ValueError(
                f"Trainer: num_particles={num} is not divisible by the size {n_dev} of the "
                "mesh's 'sample' axis; every device must run the same number of particles."
            )
        keys = particle_keys(rng_key, jnp.arange(num))
        args_axis: int | None = None
        if self.augment is not None:
            groups = self.group_batches(rng_key, args)
            if self.num_groups == 1:
                args = jax.tree_util.tree_map(lambda a: a[0], groups)
            else:
                per_group = num // self.num_groups
                args = jax.tree_util.tree_map(lambda a: jnp.repeat(a, per_group, axis=0), groups)
                args_axis = 0
        spmd = "sample" if n_dev > 1 else None
        if spmd is not None:
            keys = split_leading(keys, "sample")
            if args_axis is not None:
                args = split_leading(args, "sample")

        if self.exact:
            particle = self._exact_particle
        else:
            particle = self.elbo.particle_loss

        def one(key, particle_args):
            return particle(key, param_map, model, guide, tuple(particle_args), kwargs)

        out = jax.vmap(one, in_axes=(0, args_axis), spmd_axis_name=spmd)(keys, tuple(args))
        if spmd is not None:
            out = split_leading(out, "sample")
        if not self.exact:
            return self.elbo.reduce_particles(*out)
        prior_elbo, surrogates, log_lik, scale = out  # (S,), (S,), (S, B), (S,)
        prior_loss = self.elbo.reduce_particles(prior_elbo, surrogates)
        log_mean_lik = logsumexp(log_lik, axis=0) - math.log(num)  # (B,)
        return prior_loss - scale[0] * jnp.sum(log_mean_lik)


def _same_scale(a, b) -> bool:
    if a is b:
        return True
    if isinstance(a, int | float | None) and isinstance(b, int | float | None):
        return math.isclose(1.0 if a is None else a, 1.0 if b is None else b, rel_tol=1e-12)
    return False


# ---------------------------------------------------------------------------------------------
# Trainer
# ---------------------------------------------------------------------------------------------


class EpochMetrics(NamedTuple):
    """Metrics of one epoch of :meth:`Trainer.fit`.

    Attributes:
        epoch: 1-based epoch number (counted from the start of training, not of this call).
        step: the state's step counter at the end of the epoch.
        loss: mean training loss of the epoch's steps (negative ELBO of the full data set).
        seconds: wall time of the epoch (validation excluded).
        val_accuracy, val_nll, val_ece: metrics of the posterior predictive on ``val_data``
            (NaN without it): accuracy, mean NLL of the predictive, ECE with 15 bins.
    """

    epoch: int
    step: int
    loss: float
    seconds: float
    val_accuracy: float = math.nan
    val_nll: float = math.nan
    val_ece: float = math.nan


class TrainResult(NamedTuple):
    """Result of :meth:`Trainer.fit`.

    Attributes:
        state: the final :class:`~jppl.vi.SVIState`.
        params: its constrained parameters.
        losses: ``(T,)`` NumPy array, the loss of every step of this call.
        history: one :class:`EpochMetrics` per epoch of this call.
    """

    state: SVIState
    params: dict[str, jax.Array]
    losses: np.ndarray
    history: list[EpochMetrics]


_CKPT = re.compile(r"^step_(\d{9})\.npz$")


def latest_checkpoint(directory: str | os.PathLike) -> str | None:
    """Path of the checkpoint with the largest step in ``directory`` (``None`` if none)."""
    if not os.path.isdir(directory):
        return None
    found = sorted(name for name in os.listdir(directory) if _CKPT.match(name))
    return os.path.join(directory, found[-1]) if found else None


class Trainer:
    """Minibatch training of a (Bayesian) model with S weight samples per step, over a mesh.

    A thin layer over :class:`~jppl.vi.SVI`: the state is an :class:`~jppl.vi.SVIState`, a
    step is ``SVI.update`` with a :class:`SamplingParallelLoss`, checkpoints are
    :func:`~jppl.vi.save_state` files. See the module docstring for the keys and exact mode.

    Args:
        model, guide: callables taking the minibatch arrays as positional arguments, e.g.
            ``model(x, y)``; the model's data plate has the minibatch size.
        optimizer: an ``optax.GradientTransformation``.
        num_data: ``N``, the number of training data points (the leading dim of the data).
        batch_size: ``B``; an epoch is ``N // B`` steps (the remainder of each shuffled epoch
            is skipped). Must be a multiple of the mesh's ``data`` axis size.
        num_particles: ``S``, weight samples per step (a multiple of the ``sample`` axis size).
        num_groups, augment, exact, data_plate: see :class:`SamplingParallelLoss`.
        elbo: the ELBO to use (default ``TraceMeanField_ELBO(num_particles)``: analytic KL);
            its ``num_particles`` is used and must equal ``num_particles`` if both are given.
        mesh: optional mesh (:func:`jppl.parallel.make_mesh`): particles over ``sample``, the
            minibatch over ``data`` (plates with ``shard="data"``), state replicated (or
            split, see ``shard_state``). The training data are replicated on every device of
            the mesh.
        stable_update: skip steps with non-finite loss/gradients (``SVI.stable_update``).
        shard_state: split the params and the optimizer state over the mesh's devices (see
            :class:`~jppl.vi.SVI`): each device stores ``1 / D`` of them.

    Raises:
        TypeError/ValueError: bad arguments, naming which.
    """

    def __init__(
        self,
        model: Callable,
        guide: Callable,
        optimizer: optax.GradientTransformation,
        *,
        num_data: int,
        batch_size: int,
        num_particles: int | None = None,
        num_groups: int = 1,
        augment: Augment | None = None,
        exact: bool = False,
        elbo: ELBO | None = None,
        mesh: Mesh | None = None,
        data_plate: str = "data",
        stable_update: bool = False,
        shard_state: bool = False,
    ):
        self.num_data = _check_int(num_data, "num_data", "Trainer")
        self.batch_size = _check_int(batch_size, "batch_size", "Trainer")
        if self.batch_size > self.num_data:
            raise ValueError(
                f"Trainer: batch_size={self.batch_size} exceeds num_data={self.num_data}."
            )
        if elbo is None:
            num_particles = 16 if num_particles is None else num_particles
            elbo = TraceMeanField_ELBO(_check_int(num_particles, "num_particles", "Trainer"))
        elif num_particles is not None and num_particles != getattr(elbo, "num_particles", None):
            raise ValueError(
                f"Trainer: num_particles={num_particles!r} differs from the given elbo's "
                f"num_particles={getattr(elbo, 'num_particles', None)!r}; give one of them."
            )
        n_data_dev = axis_size(mesh, "data") if isinstance(mesh, Mesh) else 1
        if self.batch_size % n_data_dev:
            raise ValueError(
                f"Trainer: batch_size={self.batch_size} is not divisible by the size "
                f"{n_data_dev} of the mesh's 'data' axis."
            )
        n_sample_dev = axis_size(mesh, "sample") if isinstance(mesh, Mesh) else 1
        if elbo.num_particles % n_sample_dev:
            raise ValueError(
                f"Trainer: num_particles={elbo.num_particles} is not divisible by the size "
                f"{n_sample_dev} of the mesh's 'sample' axis."
            )
        self.loss = SamplingParallelLoss(
            elbo, num_groups=num_groups, augment=augment, exact=exact, data_plate=data_plate
        )
        self.num_particles = elbo.num_particles
        self.steps_per_epoch = self.num_data // self.batch_size
        self.likelihood_scale = self.num_data / self.batch_size
        scaled_model = model
        if self.batch_size != self.num_data:
            scaled_model = _scale_observed(model, factor=self.likelihood_scale)
        self.svi = SVI(
            scaled_model, guide, optimizer, self.loss, mesh=mesh, shard_state=shard_state
        )
        self.mesh = mesh
        self.stable_update = bool(stable_update)
        # fit donates the state's buffers from one step to the next (after copying its input)
        self._train_step = jax.jit(self._indexed_step, donate_argnums=0)
        self._permutation = jax.jit(self._epoch_permutation)
        self._eval_cache: dict = {}

    # -- data ---------------------------------------------------------------------------------
    def _check_data(self, data: Sequence, what: str) -> Batch:
        if not isinstance(data, tuple | list) or not data:
            raise TypeError(
                f"Trainer.{what}: data must be a non-empty tuple of arrays (the model's "
                f"positional arguments with the data points along dim 0), got {type(data)}."
            )
        data = tuple(jnp.asarray(a) for a in data)
        n = _leading(data, f"Trainer.{what}")
        if n != self.num_data:
            raise ValueError(
                f"Trainer.{what}: the data have {n} points along dim 0, but the trainer was "
                f"built with num_data={self.num_data}."
            )
        return data

    def _place(self, data: Batch) -> Batch:
        return data if self.mesh is None else replicate(data, self.mesh)

    def _epoch_permutation(self, rng_key: jax.Array, epoch: jax.Array) -> jax.Array:
        first_step = epoch * self.steps_per_epoch
        key = jax.random.fold_in(jax.random.fold_in(rng_key, first_step), SHUFFLE_TAG)
        return jax.random.permutation(key, self.num_data)

    def epoch_permutation(self, state: SVIState, epoch: int) -> jax.Array:
        """Order ``(N,)`` in which epoch ``epoch`` (0-based) visits the data points."""
        return self._permutation(state.rng_key, jnp.asarray(epoch, jnp.int32))

    def batch_indices(self, state: SVIState, perm: jax.Array) -> jax.Array:
        """Indices ``(B,)`` of the minibatch of the state's step, given its epoch's ``perm``."""
        position = state.step % self.steps_per_epoch
        return jax.lax.dynamic_slice_in_dim(perm, position * self.batch_size, self.batch_size)

    # -- steps --------------------------------------------------------------------------------
    def init(self, rng_key: jax.Array, data: Sequence) -> SVIState:
        """Initial state (params from the model/guide initializers, traced on one minibatch)."""
        data = self._check_data(data, "init")
        batch = tuple(a[: self.batch_size] for a in data)
        return self.svi.init(rng_key, *batch)

    def step(self, state: SVIState, batch: Sequence[jax.Array]) -> tuple[SVIState, jax.Array]:
        """One update on the minibatch ``batch`` (``B`` points each); pure and jit-able.

        Returns:
            ``(new_state, loss)``.
        """
        batch = tuple(batch)
        if self.mesh is not None and axis_size(self.mesh, "data") > 1:
            batch = tuple(constrain(a, self.mesh, dim_spec(a.ndim, 0, "data")) for a in batch)
        if self.stable_update:
            return self.svi.stable_update(state, *batch)
        return self.svi.update(state, *batch)

    def _indexed_step(self, state: SVIState, data: Batch, perm: jax.Array):
        idx = self.batch_indices(state, perm)
        return self.step(state, tuple(jnp.take(a, idx, axis=0) for a in data))

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(
        self,
        state: SVIState,
        predict: Callable[[jax.Array], jax.Array],
        x: jax.Array,
        y: jax.Array,
        *,
        num_samples: int = 32,
        rng_key: jax.Array | None = None,
    ) -> dict[str, float]:
        """Accuracy, NLL and ECE (15 bins) of the posterior predictive on ``(x, y)``.

        Args:
            predict: ``predict(x) -> logits (N, K)`` for one weight draw from the guide (e.g.
                ``bnn.predict``), as for :func:`~jppl.nn.sample_predictions`.
            x, y: inputs and integer labels ``(N,)``.
            num_samples: weight draws M.
            rng_key: key of the draws (default: ``fold_in(state.rng_key, SHUFFLE_TAG + 1)``).
        """
        num_samples = _check_int(num_samples, "num_samples", "Trainer.evaluate")
        if rng_key is None:
            rng_key = jax.random.fold_in(state.rng_key, SHUFFLE_TAG + 1)
        cache_key = (predict, num_samples)
        fn = self._eval_cache.get(cache_key)
        if fn is None:

            def fn(params, x, y, key):
                logits = sample_predictions(key, predict, params, x, num_samples=num_samples)
                s = summarize_logits(logits)
                return (
                    accuracy(s.mean_probs, y),
                    negative_log_likelihood(s.log_mean_probs, y),
                    expected_calibration_error(s.mean_probs, y, num_bins=15),
                )

            fn = self._eval_cache[cache_key] = jax.jit(fn)
        params = self.svi.get_params(state)
        acc, nll, ece = fn(params, jnp.asarray(x), jnp.asarray(y), rng_key)
        return {"accuracy": float(acc), "nll": float(nll), "ece": float(ece)}

    # -- loop -----------------------------------------------------------------------------------
    def fit(
        self,
        state: SVIState,
        data: Sequence,
        num_epochs: int,
        *,
        val_data: tuple[jax.Array, jax.Array] | None = None,
        predict: Callable[[jax.Array], jax.Array] | None = None,
        num_eval_samples: int = 32,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_every: int = 1,
        keep_checkpoints: int = 3,
        progress_bar: bool = True,
    ) -> TrainResult:
        """Train ``num_epochs`` more epochs from ``state`` (shuffled minibatches of size B).

        A state in the middle of an epoch (e.g. restored from a mid-epoch save) first finishes
        that epoch, which counts as one. Everything is determined by the state, so stopping and
        resuming (:meth:`restore`) repeats the uninterrupted trajectory bitwise.

        Args:
            state: from :meth:`init` or :meth:`restore` (or a previous ``fit``).
            data: tuple of training arrays ``(N, ...)``, the model's positional arguments.
            num_epochs: epochs to run (>= 1).
            val_data: optional ``(x_val, y_val)``; with ``predict`` the per-epoch metrics
                include the predictive accuracy, NLL and ECE (:meth:`evaluate`).
            predict: ``predict(x) -> logits`` for one weight draw (e.g. ``bnn.predict``).
            num_eval_samples: weight draws for the validation metrics.
            checkpoint_dir: save the state there every ``checkpoint_every`` epochs (and at the
                end) as ``step_<step>.npz``, keeping the last ``keep_checkpoints`` files.
            progress_bar: a tqdm bar per epoch with the running loss, and a line of metrics.

        Returns:
            :class:`TrainResult` ``(state, params, losses, history)``.
        """
        num_epochs = _check_int(num_epochs, "num_epochs", "Trainer.fit")
        checkpoint_every = _check_int(checkpoint_every, "checkpoint_every", "Trainer.fit")
        keep_checkpoints = _check_int(keep_checkpoints, "keep_checkpoints", "Trainer.fit")
        if (val_data is None) != (predict is None):
            raise ValueError("Trainer.fit: give both val_data and predict, or neither.")
        data = self._place(self._check_data(data, "fit"))
        state = copy_state(state)  # the steps donate the state's buffers
        spe = self.steps_per_epoch
        all_losses: list[np.ndarray] = []
        history: list[EpochMetrics] = []
        for _ in range(num_epochs):
            step0 = int(state.step)
            epoch = step0 // spe
            perm = self.epoch_permutation(state, epoch)
            num_steps = spe - step0 % spe
            bar = _bar(num_steps, f"epoch {epoch + 1}", progress_bar)
            start = time.perf_counter()
            losses = []
            for k in range(num_steps):
                state, loss = self._train_step(state, data, perm)
                losses.append(loss)
                if bar is not None and (k % 5 == 4 or k == num_steps - 1):
                    bar.set_postfix_str(f"loss {float(loss):.4g}", refresh=False)
                    bar.update(k + 1 - bar.n)
            epoch_losses = np.asarray(jnp.stack(losses))
            seconds = time.perf_counter() - start
            all_losses.append(epoch_losses)
            metrics = EpochMetrics(epoch + 1, int(state.step), float(epoch_losses.mean()), seconds)
            if val_data is not None:
                m = self.evaluate(state, predict, *val_data, num_samples=num_eval_samples)
                metrics = metrics._replace(
                    val_accuracy=m["accuracy"], val_nll=m["nll"], val_ece=m["ece"]
                )
            history.append(metrics)
            if bar is not None:
                bar.close()
                _write(_format_metrics(metrics))
            last = len(history) == num_epochs
            if checkpoint_dir is not None and (len(history) % checkpoint_every == 0 or last):
                self.save_checkpoint(checkpoint_dir, state, keep=keep_checkpoints)
        return TrainResult(state, self.svi.get_params(state), np.concatenate(all_losses), history)

    # -- checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(
        self, directory: str | os.PathLike, state: SVIState, *, keep: int = 3
    ) -> str:
        """Write ``state`` to ``directory/step_<step>.npz`` atomically; keep the last ``keep``.

        The file is :func:`~jppl.vi.save_state`'s ``.npz`` (arrays stored bitwise, structure as
        JSON, no pickle). With several processes, only process 0 writes.

        Returns:
            the checkpoint's path.
        """
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, f"step_{int(state.step):09d}.npz")
        if jax.process_index() == 0:
            tmp = path + ".tmp"
            save_state(tmp, jax.device_get(state))
            os.replace(tmp, path)
            found = sorted(n for n in os.listdir(directory) if _CKPT.match(n))
            for name in found[:-keep]:
                os.remove(os.path.join(directory, name))
        return path

    def restore(self, path: str | os.PathLike, data: Sequence) -> SVIState:
        """Load a checkpoint written by :meth:`save_checkpoint` (a file, or a directory: its
        latest checkpoint), checked against the structure of :meth:`init` on ``data``, and put
        on the mesh.

        Raises:
            FileNotFoundError: no checkpoint there. ValueError: it does not fit this trainer.
        """
        if os.path.isdir(path):
            found = latest_checkpoint(path)
            if found is None:
                raise FileNotFoundError(f"Trainer.restore: no step_*.npz checkpoint in {path}.")
            path = found
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Trainer.restore: {path} does not exist.")
        template = self.init(jax.random.key(0), data)
        state = load_state(path, template=jax.device_get(template))
        return self.svi.place_state(state)


# ---------------------------------------------------------------------------------------------
# Display
# ---------------------------------------------------------------------------------------------


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=False)


def _write(line: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)


def _format_metrics(m: EpochMetrics) -> str:
    line = f"epoch {m.epoch}: step {m.step}, loss {m.loss:.5g}, {m.seconds:.1f} s"
    if not math.isnan(m.val_accuracy):
        line += f", val acc {m.val_accuracy:.4f}, NLL {m.val_nll:.4f}, ECE {m.val_ece:.4f}"
    return line
