"""Training Bayesian neural networks with sampling parallelism: :class:`Trainer`, a loop over SVI.

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

The pieces are those of :mod:`jppl.vi`: a step is ``SVI.update`` with a
:class:`~jppl.vi.SamplingParallelLoss` (particles over ``sample``, augmentation groups, the
exact predictive loss: see :mod:`jppl.vi.sampling_parallel`), an epoch's minibatches are
:func:`jppl.vi.epoch_batches`, checkpoints are :func:`jppl.vi.save_state` files. Keys
(everything follows from the state's key and step counter, whatever the mesh):

* step ``t`` uses ``step_key = fold_in(state.rng_key, t)``, particle ``i`` uses
  ``fold_in(step_key, i)`` and sample group ``g`` augments with
  ``fold_in(fold_in(step_key, AUGMENT_TAG), g)``, as in :class:`~jppl.vi.SamplingParallelLoss`;
* epoch ``e`` visits the data in the minibatches ``epoch_batches(fold_in(fold_in(
  state.rng_key, e * steps_per_epoch), SHUFFLE_TAG), N, B)`` (a permutation of the data, the
  last ``N mod B`` examples of it skipped).

So the losses do not depend on the mesh (up to the order of floating-point sums), and a run
resumed from a checkpoint repeats the uninterrupted trajectory bitwise.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from jppl.nn.metrics import accuracy, expected_calibration_error, negative_log_likelihood
from jppl.nn.predict import sample_predictions, summarize_logits
from jppl.parallel import axis_size, check_divisible, constrain, dim_spec, replicate
from jppl.primitives import Message, Messenger
from jppl.progress import StepBar, write_line
from jppl.vi import (
    ELBO,
    SVI,
    SamplingParallelLoss,
    SVIState,
    TraceMeanField_ELBO,
    copy_state,
    epoch_batches,
    load_state,
    save_state,
)
from jppl.vi.sampling_parallel import Augment

__all__ = ["SHUFFLE_TAG", "EpochMetrics", "TrainResult", "Trainer", "latest_checkpoint"]

Batch = tuple[jax.Array, ...]

SHUFFLE_TAG: int = 0x53485546
"""``fold_in`` tag of the shuffling key of an epoch (``'SHUF'``)."""


class _scale_observed(Messenger):
    """Multiply the log-probability of observed sample sites (only) by ``factor``."""

    def __init__(self, fn: Callable | None = None, factor: float = 1.0):
        self.factor = factor
        super().__init__(fn)

    def process_message(self, msg: Message) -> None:
        if msg["type"] != "sample" or not msg["is_observed"]:
            return
        msg["scale"] = self.factor if msg["scale"] is None else self.factor * msg["scale"]


def _check_int(value, name: str, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{where}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


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

    A thin loop over :class:`~jppl.vi.SVI`: the state is an :class:`~jppl.vi.SVIState`, a
    step is ``SVI.update`` with a :class:`~jppl.vi.SamplingParallelLoss`, checkpoints are
    :func:`~jppl.vi.save_state` files. See the module docstring for the keys.

    Args:
        model, guide: callables taking the minibatch arrays as positional arguments, e.g.
            ``model(x, y)``; the model's data plate has the minibatch size.
        optimizer: an ``optax.GradientTransformation``.
        num_data: ``N``, the number of training data points (the leading dim of the data).
        batch_size: ``B``; an epoch is ``N // B`` steps (the remainder of each shuffled epoch
            is skipped). Must be a multiple of the mesh's ``data`` axis size.
        num_particles: ``S``, weight samples per step (a multiple of the ``sample`` axis size).
        num_groups, augment, exact, data_plate: see :class:`~jppl.vi.SamplingParallelLoss`.
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
        check_divisible(self.batch_size, mesh, "data", "Trainer: batch_size")
        check_divisible(self.num_particles, mesh, "sample", "Trainer: num_particles")
        self.mesh = mesh
        self.stable_update = bool(stable_update)
        # fit donates the state's buffers from one step to the next (after copying its input)
        self._train_step = jax.jit(self._indexed_step, donate_argnums=0)
        self._epoch_batches = jax.jit(self._batches_of_epoch)
        self._eval_cache: dict = {}

    # -- data ---------------------------------------------------------------------------------
    def _check_data(self, data: Sequence, what: str) -> Batch:
        if not isinstance(data, tuple | list) or not data:
            raise TypeError(
                f"Trainer.{what}: data must be a non-empty tuple of arrays (the model's "
                f"positional arguments with the data points along dim 0), got {type(data)}."
            )
        data = tuple(jnp.asarray(a) for a in data)
        sizes = {int(a.shape[0]) if a.ndim else -1 for a in data}
        if len(sizes) != 1 or -1 in sizes:
            raise ValueError(
                f"Trainer.{what}: every array must have the same leading (data) dim; got "
                f"leading sizes {sorted(sizes)} (-1: a scalar)."
            )
        if sizes != {self.num_data}:
            raise ValueError(
                f"Trainer.{what}: the data have {sizes.pop()} points along dim 0, but the "
                f"trainer was built with num_data={self.num_data}."
            )
        return data

    def _batches_of_epoch(self, rng_key: jax.Array, epoch: jax.Array) -> jax.Array:
        key = jax.random.fold_in(
            jax.random.fold_in(rng_key, epoch * self.steps_per_epoch), SHUFFLE_TAG
        )
        return epoch_batches(key, self.num_data, self.batch_size)

    def epoch_batches(self, state: SVIState, epoch: int) -> jax.Array:
        """Minibatch indices ``(steps_per_epoch, B)`` of epoch ``epoch`` (0-based): together a
        permutation of the data points, less the ``N mod B`` skipped ones."""
        return self._epoch_batches(state.rng_key, jnp.asarray(epoch, jnp.int32))

    # -- steps --------------------------------------------------------------------------------
    def init(self, rng_key: jax.Array, data: Sequence) -> SVIState:
        """Initial state (params from the model/guide initializers, traced on one minibatch)."""
        data = self._check_data(data, "init")
        return self.svi.init(rng_key, *(a[: self.batch_size] for a in data))

    def step(self, state: SVIState, batch: Sequence[jax.Array]) -> tuple[SVIState, jax.Array]:
        """One update on the minibatch ``batch`` (``B`` points each); pure and jit-able.

        Returns:
            ``(new_state, loss)``.
        """
        batch = tuple(batch)
        if axis_size(self.mesh, "data") > 1:
            batch = tuple(constrain(a, self.mesh, dim_spec(a.ndim, 0, "data")) for a in batch)
        update = self.svi.stable_update if self.stable_update else self.svi.update
        return update(state, *batch)

    def _indexed_step(self, state: SVIState, data: Batch, batches: jax.Array):
        idx = batches[state.step % self.steps_per_epoch]
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
        data = self._check_data(data, "fit")
        if self.mesh is not None:
            data = replicate(data, self.mesh)
        state = copy_state(state)  # the steps donate the state's buffers
        spe = self.steps_per_epoch
        all_losses: list[np.ndarray] = []
        history: list[EpochMetrics] = []
        for _ in range(num_epochs):
            epoch, position = divmod(int(state.step), spe)
            batches = self.epoch_batches(state, epoch)
            num_steps = spe - position
            bar = StepBar(num_steps, f"epoch {epoch + 1}", leave=False) if progress_bar else None
            start = time.perf_counter()
            losses = []
            for k in range(num_steps):
                state, loss = self._train_step(state, data, batches)
                losses.append(loss)
                if bar is not None and (k % 5 == 4 or k == num_steps - 1):
                    bar.update(k + 1, f"loss {float(loss):.4g}")
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
                write_line(_format_metrics(metrics))
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


def _format_metrics(m: EpochMetrics) -> str:
    line = f"epoch {m.epoch}: step {m.step}, loss {m.loss:.5g}, {m.seconds:.1f} s"
    if not math.isnan(m.val_accuracy):
        line += f", val acc {m.val_accuracy:.4f}, NLL {m.val_nll:.4f}, ECE {m.val_ece:.4f}"
    return line
