"""Classification metrics of a predictive distribution: accuracy, NLL, calibration.

All functions take the predictive class probabilities ``probs`` of shape ``(N, K)`` (e.g.
:attr:`jppl.nn.PredictiveSummary.mean_probs`) and integer labels ``(N,)`` in ``0..K-1``; they
are pure and jit friendly.

Calibration follows Guo et al. (2017): the confidence of an input is its top class
probability, inputs are put in ``B`` equal-width bins of confidence (bin ``b`` holds
confidences in ``(b/B, (b+1)/B]``; the first bin also holds 0), and

    ECE = sum_b (n_b / N) |accuracy_b - confidence_b|

where ``accuracy_b`` and ``confidence_b`` are the mean correctness and mean confidence of
the ``n_b`` inputs in bin ``b``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "ReliabilityDiagram",
    "accuracy",
    "expected_calibration_error",
    "negative_log_likelihood",
    "reliability_diagram",
]


def _check(probs, labels, what: str) -> tuple[jax.Array, jax.Array]:
    probs, labels = jnp.asarray(probs), jnp.asarray(labels)
    if probs.ndim != 2:
        raise ValueError(f"{what}: probs must have shape (N, K), got {probs.shape}.")
    if labels.shape != probs.shape[:1]:
        raise ValueError(
            f"{what}: labels must have shape (N,) = {probs.shape[:1]}, got {labels.shape}."
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"{what}: labels must be integers, got dtype {labels.dtype}.")
    return probs, labels


def accuracy(probs: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of inputs whose most probable class is the label (scalar).

    ``probs`` may also be log-probabilities or logits (only the argmax is used).
    """
    probs, labels = _check(probs, labels, "accuracy")
    return jnp.mean(jnp.argmax(probs, axis=-1) == labels)


def negative_log_likelihood(log_probs: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean ``-log p(label)`` over inputs (scalar), from *log* class probabilities ``(N, K)``.

    Pass :attr:`~jppl.nn.PredictiveSummary.log_mean_probs` for the NLL of the posterior
    predictive (the log of the mean probability, not the mean of the per-sample logs).
    """
    log_probs, labels = _check(log_probs, labels, "negative_log_likelihood")
    picked = jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
    return -jnp.mean(picked)


class ReliabilityDiagram(NamedTuple):
    """Per-bin data of a reliability diagram with ``B`` equal-width confidence bins.

    Attributes:
        bin_edges: ``(B + 1,)`` ``0, 1/B, ..., 1``.
        confidence: ``(B,)`` mean top-class probability of the inputs in each bin (NaN if
            the bin is empty).
        accuracy: ``(B,)`` fraction of them classified correctly (NaN if empty).
        count: ``(B,)`` number of inputs in each bin.
    """

    bin_edges: jax.Array
    confidence: jax.Array
    accuracy: jax.Array
    count: jax.Array


def _bin_sums(probs, labels, num_bins: int):
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
    conf = jnp.max(probs, axis=-1)
    correct = (jnp.argmax(probs, axis=-1) == labels).astype(conf.dtype)
    # bin b holds (b/B, (b+1)/B]; the top class probability of K classes is >= 1/K > 0.
    idx = jnp.clip(jnp.ceil(conf * num_bins).astype(jnp.int32) - 1, 0, num_bins - 1)
    count = jnp.zeros(num_bins, jnp.int32).at[idx].add(1)
    conf_sum = jnp.zeros(num_bins, conf.dtype).at[idx].add(conf)
    correct_sum = jnp.zeros(num_bins, conf.dtype).at[idx].add(correct)
    return count, conf_sum, correct_sum


def reliability_diagram(
    probs: jax.Array, labels: jax.Array, num_bins: int = 15
) -> ReliabilityDiagram:
    """Confidence, accuracy and count per equal-width confidence bin (see module docstring)."""
    probs, labels = _check(probs, labels, "reliability_diagram")
    count, conf_sum, correct_sum = _bin_sums(probs, labels, num_bins)
    safe = jnp.maximum(count, 1)
    empty = count == 0
    return ReliabilityDiagram(
        bin_edges=jnp.linspace(0.0, 1.0, num_bins + 1, dtype=probs.dtype),
        confidence=jnp.where(empty, jnp.nan, conf_sum / safe),
        accuracy=jnp.where(empty, jnp.nan, correct_sum / safe),
        count=count,
    )


def expected_calibration_error(
    probs: jax.Array, labels: jax.Array, num_bins: int = 15
) -> jax.Array:
    """ECE with ``num_bins`` equal-width bins (Guo et al., 2017), a scalar in ``[0, 1]``."""
    probs, labels = _check(probs, labels, "expected_calibration_error")
    _, conf_sum, correct_sum = _bin_sums(probs, labels, num_bins)
    return jnp.sum(jnp.abs(correct_sum - conf_sum)) / probs.shape[0]
