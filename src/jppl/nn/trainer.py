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

Long fits are safe to interrupt and guarded against NaN, as :meth:`jppl.vi.SVI.run`: Ctrl-C
stops :meth:`Trainer.fit` after the current step and raises
:class:`~jppl.runloop.RunInterrupted` with the finished work in ``.result`` (also
``trainer.last_result``), from which ``fit`` continues bitwise; a non-finite step is skipped
with one warning per fit (``on_nonfinite="warn"``), stops the fit (``"stop"``) or is applied
(``"ignore"``), using :meth:`jppl.vi.SVI.guarded_update`.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple, get_args

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from jppl import checkpoint
from jppl.nn.metrics import accuracy, expected_calibration_error, negative_log_likelihood
from jppl.nn.predict import sample_predictions, summarize_logits
from jppl.parallel import axis_size, check_divisible, constrain, dim_spec, replicate
from jppl.primitives import Message, Messenger
from jppl.runloop import RunInterrupted, StepBar, interruptible, is_interactive, write_line
from jppl.vi import (
    ELBO,
    SVI,
    NonFiniteError,
    NonFiniteReport,
    NonFiniteWarning,
    OnNonFinite,
    SamplingParallelLoss,
    SVIState,
    TraceMeanField_ELBO,
    copy_state,
    epoch_batches,
)
from jppl.vi.sampling_parallel import Augment

__all__ = ["SHUFFLE_TAG", "EpochMetrics", "TrainResult", "Trainer", "latest_checkpoint"]

Batch = tuple[jax.Array, ...]

SHUFFLE_TAG: int = 0x53485546
"""``fold_in`` tag of the shuffling key of an epoch (``'SHUF'``)."""

# Seconds between two looks of Trainer.fit at its running loss (the bar) and, with
# on_nonfinite="stop", at its non-finite steps: each look waits for a step to finish.
_LOOK_SECONDS = 0.1
# Steps Trainer.fit may queue ahead of the device: enough to keep it busy, few enough that a
# Ctrl-C (checked between steps) or a non-finite stop is acted on within a few steps.
_IN_FLIGHT = 2


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
        skipped: steps of the epoch skipped as non-finite (``on_nonfinite="warn"``); ``loss``
            is the mean over the others.
    """

    epoch: int
    step: int
    loss: float
    seconds: float
    val_accuracy: float = math.nan
    val_nll: float = math.nan
    val_ece: float = math.nan
    skipped: int = 0


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


_CKPT = "trainer"  # the jppl.checkpoint kind of Trainer checkpoints


def latest_checkpoint(directory: str | os.PathLike) -> str | None:
    """Path of the checkpoint with the largest step in ``directory`` (``None`` if none):
    ``step_<9 digits>.npz``, or the Orbax directory ``step_<9 digits>`` of a state split over
    several processes. It is not read: :meth:`Trainer.restore` skips unreadable ones."""
    return checkpoint.latest(directory)


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
        stable_update: skip steps with non-finite loss/gradients (``SVI.stable_update``):
            what the default ``on_nonfinite="warn"`` does.
        shard_state: split the params and the optimizer state over the mesh's devices (see
            :class:`~jppl.vi.SVI`): each device stores ``1 / D`` of them.
        on_nonfinite: a step whose loss or gradient is not finite is ``"warn"``: skipped (the
            last finite params and optimizer state are kept, the step counter advances) with
            one :class:`~jppl.vi.NonFiniteWarning` per :meth:`fit` naming the first such step
            and the sites with a non-finite gradient; ``"stop"``: :meth:`fit` stops there and
            raises :class:`~jppl.vi.NonFiniteError` (``.result``: a :class:`TrainResult` of the
            steps before it); ``"ignore"``: applied as it is (plain ``SVI.update``, no check).
            :meth:`step` skips unless ``"ignore"``.

    Attributes:
        last_result: the :class:`TrainResult` of the last :meth:`fit`, set whether it
            finished, was interrupted (Ctrl-C) or stopped at a non-finite step; ``None``
            before the first fit.

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
        on_nonfinite: OnNonFinite = "warn",
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
        if on_nonfinite not in get_args(OnNonFinite):
            raise ValueError(
                f"Trainer: on_nonfinite must be one of {get_args(OnNonFinite)}, got "
                f"{on_nonfinite!r}"
            )
        if self.stable_update and on_nonfinite == "ignore":
            raise ValueError(
                "Trainer: stable_update=True skips non-finite steps but on_nonfinite='ignore' "
                "applies them; give one of them."
            )
        self.on_nonfinite: str = on_nonfinite
        self.last_result: TrainResult | None = None
        # fit donates the state's buffers from one step to the next (after copying its input)
        self._train_step = jax.jit(self._indexed_step, donate_argnums=0)
        self._guarded_train_step = jax.jit(self._guarded_indexed_step, donate_argnums=0)
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
        batch = self._place_batch(batch)
        skip = self.stable_update or self.on_nonfinite != "ignore"
        update = self.svi.stable_update if skip else self.svi.update
        return update(state, *batch)

    def _place_batch(self, batch: Sequence[jax.Array]) -> Batch:
        batch = tuple(batch)
        if axis_size(self.mesh, "data") > 1:
            batch = tuple(constrain(a, self.mesh, dim_spec(a.ndim, 0, "data")) for a in batch)
        return batch

    def _batch_of_step(self, state: SVIState, data: Batch, batches: jax.Array) -> Batch:
        idx = batches[state.step % self.steps_per_epoch]
        return self._place_batch(tuple(jnp.take(a, idx, axis=0) for a in data))

    def _indexed_step(self, state: SVIState, data: Batch, batches: jax.Array):
        new_state, loss = self.svi.update(state, *self._batch_of_step(state, data, batches))
        return new_state, loss

    def _guarded_indexed_step(
        self, state: SVIState, report: NonFiniteReport, data: Batch, batches: jax.Array
    ) -> tuple[SVIState, NonFiniteReport, jax.Array]:
        """A guarded step (``SVI.guarded_update``) that records into ``report``.

        With ``on_nonfinite="stop"`` the state stops moving at the first non-finite step
        (step counter included), so the host, which looks only now and then, finds the last
        finite state whatever it has queued since.
        """
        batch = self._batch_of_step(state, data, batches)
        if self.on_nonfinite != "stop":
            new, loss, health = self.svi.guarded_update(state, *batch)
            return new, report.record(state.step, health), loss

        def run(state):
            new, loss, health = self.svi.guarded_update(state, *batch)
            return new._replace(step=jnp.where(health.ok, new.step, state.step)), loss, health

        def frozen(state):  # after the first non-finite step: nothing moves or is recorded
            loss_type = jax.eval_shape(run, state)[1]
            ok = NonFiniteReport.empty(state.params).first
            return state, jnp.full(loss_type.shape, jnp.nan, loss_type.dtype), ok

        new, loss, health = jax.lax.cond(report.count == 0, run, frozen, state)
        return new, report.record(state.step, health), loss

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
        # mutable sites (e.g. BatchNorm statistics) are read by the network like params
        params = {**self.svi.get_params(state), **(state.mutable_state or {})}
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

        A state in the middle of an epoch (e.g. restored from a mid-epoch save, or the state of
        an interrupted fit) first finishes that epoch, which counts as one. Everything is
        determined by the state, so stopping and resuming (:meth:`restore`) repeats the
        uninterrupted trajectory bitwise.

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
            progress_bar: a live bar per epoch with the running loss and speed (in a terminal
                or Jupyter), and a line of metrics per epoch (the only output without a
                display, e.g. in CI logs).

        Returns:
            :class:`TrainResult` ``(state, params, losses, history)``, also kept as
            ``self.last_result``.

        Raises:
            jppl.runloop.RunInterrupted: Ctrl-C (SIGINT) during the fit: it stops after the
                current step; ``.result`` (and ``self.last_result``) is the
                :class:`TrainResult` of the finished steps and epochs, and
                ``fit(err.result.state, data, num_epochs - len(err.result.history), ...)``
                finishes the fit as if it had not been interrupted.
            jppl.vi.NonFiniteError: a non-finite step with ``on_nonfinite="stop"``; its
                ``.result`` is the :class:`TrainResult` of the steps before it.
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
        start_step = int(state.step)
        total = num_epochs * spe - start_step % spe
        mode = self.on_nonfinite
        report = None
        if mode != "ignore":
            report = NonFiniteReport.empty(state.params)
            if self.mesh is not None:
                report = replicate(report, self.mesh)
        live = progress_bar and is_interactive()
        all_losses: list[np.ndarray] = []
        history: list[EpochMetrics] = []
        seen: NonFiniteReport | None = None  # the report at the last look, on the host
        skipped_before = 0  # non-finite steps before the current epoch
        outcome = "finished"
        with interruptible() as stop_requested:
            for _ in range(num_epochs):
                if stop_requested():
                    outcome = "interrupted"
                    break
                epoch, position = divmod(int(state.step), spe)
                batches = self.epoch_batches(state, epoch)
                num_steps = spe - position
                bar = StepBar(num_steps, f"epoch {epoch + 1}", leave=False) if live else None
                start = time.perf_counter()
                next_look = start + _LOOK_SECONDS
                losses: list[jax.Array] = []
                reports: list[NonFiniteReport | None] = []
                for k in range(num_steps):
                    if stop_requested():
                        outcome = "interrupted"
                        break
                    if report is None:
                        state, loss = self._train_step(state, data, batches)
                    else:
                        state, report, loss = self._guarded_train_step(state, report, data, batches)
                    losses.append(loss)
                    reports = [*reports[-_IN_FLIGHT:], report]
                    if k >= _IN_FLIGHT:  # bound the queue: wait for an older step
                        losses[k - _IN_FLIGHT].block_until_ready()
                    if (bar is None and mode != "stop") or time.perf_counter() < next_look:
                        continue
                    # Look at the step before the last, while the device works on the last.
                    older = max(0, k - 1)
                    value, seen = jax.device_get((losses[older], reports[-2 if k else -1]))
                    next_look = time.perf_counter() + _LOOK_SECONDS
                    if bar is not None:
                        bar.update(older + 1, _postfix(float(value), seen))
                    if mode == "stop" and int(seen.count) > 0:
                        outcome = "nonfinite"
                        break
                epoch_losses = np.asarray(jax.device_get(losses))
                seen = jax.device_get(report)
                if mode == "stop" and int(seen.count) > 0:
                    outcome = "nonfinite"
                seconds = time.perf_counter() - start
                if losses:  # (none when interrupted before the epoch's first step)
                    all_losses.append(epoch_losses)
                if outcome != "finished":
                    if bar is not None:
                        bar.close()
                    break
                skipped = 0 if seen is None else int(seen.count) - skipped_before
                skipped_before += skipped
                finite = epoch_losses[np.isfinite(epoch_losses)] if skipped else epoch_losses
                mean_loss = float(finite.mean()) if finite.size else math.nan
                metrics = EpochMetrics(
                    epoch + 1, int(state.step), mean_loss, seconds, skipped=skipped
                )
                if val_data is not None:
                    m = self.evaluate(state, predict, *val_data, num_samples=num_eval_samples)
                    metrics = metrics._replace(
                        val_accuracy=m["accuracy"], val_nll=m["nll"], val_ece=m["ece"]
                    )
                history.append(metrics)
                if bar is not None:
                    bar.close(_postfix(float(epoch_losses[-1]), seen))
                if progress_bar:
                    write_line(_format_metrics(metrics))
                last = len(history) == num_epochs
                if checkpoint_dir is not None and (len(history) % checkpoint_every == 0 or last):
                    self.save_checkpoint(checkpoint_dir, state, keep=keep_checkpoints)

        losses_np = np.concatenate(all_losses) if all_losses else np.zeros((0,), np.float32)
        if outcome == "nonfinite":
            # The steps queued after the first non-finite one did not move the state.
            losses_np = losses_np[: int(seen.first_step) - start_step]
        result = TrainResult(state, self.svi.get_params(state), losses_np, history)
        self.last_result = result
        done = len(losses_np)
        if mode == "warn" and seen is not None and int(seen.count) > 0:
            message = seen.message("Trainer.fit", done, start_step)
            warnings.warn(message, NonFiniteWarning, stacklevel=2)
        if outcome == "nonfinite":
            raise NonFiniteError(
                seen.message("Trainer.fit", done, start_step, stopped=True),
                result,
                step=int(seen.first_step),
                sites=seen.bad_sites(),
            )
        if outcome == "interrupted":
            raise RunInterrupted(
                f"Trainer.fit interrupted after {done} of {total} steps ({len(history)} of "
                f"{num_epochs} epochs finished); err.result (also trainer.last_result) holds "
                f"them: trainer.fit(err.result.state, data, {num_epochs - len(history)}, ...) "
                "finishes the fit as if uninterrupted.",
                result,
                done=done,
                total=total,
            )
        return result

    # -- checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(
        self, directory: str | os.PathLike, state: SVIState, *, keep: int = 3
    ) -> str:
        """Write ``state`` to ``directory/step_<step>.npz`` atomically; keep the last ``keep``.

        A :mod:`jppl.checkpoint` file of kind ``"trainer"`` (arrays stored bitwise, structure
        as JSON, no pickle), written to a temporary file, fsynced and renamed: a crash leaves
        the previous checkpoints whole. With several processes every process calls it: a
        replicated state is written by process 0, a state split over the processes
        (``shard_state=True``) by every process, its own shards, into the Orbax directory
        ``step_<step>``.

        Returns:
            the checkpoint's path.
        """
        return checkpoint.save_step(directory, int(state.step), state, kind=_CKPT, keep=keep)

    def restore(self, path: str | os.PathLike, data: Sequence) -> SVIState:
        """Load a checkpoint written by :meth:`save_checkpoint`, checked against the structure
        of :meth:`init` on ``data`` and put on this trainer's mesh (which may differ from the
        one that saved it).

        Args:
            path: a checkpoint (with or without ``.npz``), or a directory of them: its newest
                readable one (a warning names each newer one skipped, e.g. a truncated file).
            data: the training data (as for :meth:`init`).

        Raises:
            FileNotFoundError: no checkpoint there. jppl.checkpoint.CheckpointError (a
            ValueError): unreadable, or it does not fit this trainer.
        """
        template = self.init(jax.random.key(0), data)  # on the mesh: the target shardings
        kinds = (_CKPT, "svi")
        if os.path.isdir(path) and not checkpoint.is_checkpoint_dir(path):
            return checkpoint.load_latest(path, kind=kinds, template=template).tree
        return checkpoint.load(path, kind=kinds, template=template).tree


def _format_metrics(m: EpochMetrics) -> str:
    line = f"epoch {m.epoch}: step {m.step}, loss {m.loss:.5g}, {m.seconds:.1f} s"
    if not math.isnan(m.val_accuracy):
        line += f", val acc {m.val_accuracy:.4f}, NLL {m.val_nll:.4f}, ECE {m.val_ece:.4f}"
    if m.skipped:
        line += f", {m.skipped} non-finite steps skipped"
    return line


def _postfix(loss: float, report: NonFiniteReport | None) -> str:
    """The bar's text: the loss of a recent step, and the non-finite steps skipped so far."""
    count = 0 if report is None else int(report.count)
    return f"loss {loss:.4g}" + (f", skipped (non-finite): {count}" if count else "")
