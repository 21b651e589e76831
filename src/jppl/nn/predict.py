"""Posterior predictive of a Bayesian network over M weight samples, and its uncertainties.

Two steps, both pure and jit/vmap friendly:

1. :func:`sample_predictions` draws M outputs ``fn(*args)`` of a guide-side function (e.g.
   :meth:`jppl.nn.BayesianModule.predict`, which samples weights from the guide and applies the
   network) with ``jax.vmap`` over M keys. Draw ``m`` uses ``jax.random.fold_in(rng_key, m)``,
   so a subset of ``indices`` (e.g. one device's share of a ``sample`` mesh axis) gives
   exactly those draws of the full set.
2. :func:`summarize_logits` / :func:`summarize_probs` reduce per-sample class probabilities
   ``(M, N, K)`` to the predictive mean and the uncertainty decomposition (Depeweg et al.,
   2018; Gal, 2016)::

       predictive entropy  H[ mean_m p_m ]          total uncertainty
       expected entropy    mean_m H[ p_m ]          aleatoric part
       mutual information  H[mean p] - mean H[p]    epistemic part, >= 0, 0 iff all p_m agree

   With ``axis_name``, the M samples are split over that mapped axis (``shard_map``/``vmap``
   with equal shares) and the means over samples use collectives, so the result equals the
   unsharded one.

Entropies are in nats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import logsumexp, xlogy

from jppl.handlers import seed, substitute
from jppl.vi import particle_keys

__all__ = [
    "PredictiveSummary",
    "sample_keys",
    "sample_predictions",
    "summarize_logits",
    "summarize_probs",
]


def sample_keys(rng_key: jax.Array, indices: jax.Array) -> jax.Array:
    """Keys of the draws ``indices`` (int ``(M,)``): ``fold_in(rng_key, m)`` each, ``(M,)``;
    the keys of ELBO particles (:func:`jppl.vi.particle_keys`)."""
    return particle_keys(rng_key, indices)


def sample_predictions(
    rng_key: jax.Array,
    fn: Callable[..., Any],
    params: dict[str, Any],
    *args,
    num_samples: int | None = None,
    indices: jax.Array | None = None,
    **kwargs,
) -> Any:
    """Draw ``fn(*args, **kwargs)`` M times with the guide ``params`` substituted.

    Args:
        rng_key: PRNG key; draw ``m`` runs ``fn`` under ``seed(fold_in(rng_key, m))``.
        fn: a function using jppl primitives that returns the network output for one weight
            draw, e.g. ``bnn.predict`` of a :class:`~jppl.nn.BayesianModule`, or any
            ``lambda x: ...`` that runs a guide and applies a network.
        params: constrained ``{param site name: value}`` (e.g. ``svi.get_params(state)``).
        *args, **kwargs: inputs of ``fn`` (shared by all draws), e.g. ``x`` of shape ``(N, D)``.
        num_samples: M; draws ``0..M-1``. Give this or ``indices``.
        indices: int array ``(M,)`` of the draws to make (e.g. one device's share).

    Returns:
        ``fn``'s output pytree with a leading axis M, e.g. logits ``(M, N, K)``.

    Raises:
        ValueError: neither or both of ``num_samples`` and ``indices``, or ``num_samples < 1``.
    """
    if (num_samples is None) == (indices is None):
        raise ValueError("sample_predictions: give exactly one of num_samples= or indices=.")
    if num_samples is not None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(
                f"sample_predictions: num_samples must be a positive int, got {num_samples!r}"
            )
        indices = jnp.arange(num_samples)
    if not isinstance(params, dict):
        raise TypeError(
            f"sample_predictions: params must be a dict {{site name: value}}, got "
            f"{type(params).__name__}."
        )

    def one(key):
        return seed(substitute(fn, data=params), rng_seed=key)(*args, **kwargs)

    return jax.vmap(one)(sample_keys(rng_key, indices))


class PredictiveSummary(NamedTuple):
    """Posterior predictive over M samples for N inputs and K classes.

    Attributes:
        mean_probs: ``(N, K)`` ``mean_m p_m``.
        log_mean_probs: ``(N, K)`` its log (computed stably from logits when available).
        predictive_entropy: ``(N,)`` ``H[mean_m p_m]``.
        expected_entropy: ``(N,)`` ``mean_m H[p_m]``.
        mutual_information: ``(N,)`` their difference (epistemic uncertainty).
    """

    mean_probs: jax.Array
    log_mean_probs: jax.Array
    predictive_entropy: jax.Array
    expected_entropy: jax.Array
    mutual_information: jax.Array


def _check_3d(x: jax.Array, what: str) -> jax.Array:
    x = jnp.asarray(x)
    if x.ndim != 3:
        raise ValueError(
            f"{what}: expected per-sample predictions of shape (M, N, K) (samples, inputs, "
            f"classes), got shape {x.shape}."
        )
    return x


def _mean_over_samples(x: jax.Array, axis_name: str | None) -> jax.Array:
    mean = jnp.mean(x, axis=0)
    return mean if axis_name is None else lax.pmean(mean, axis_name)


def _log_mean_exp_over_samples(log_x: jax.Array, axis_name: str | None) -> jax.Array:
    shift = lax.stop_gradient(jnp.max(log_x, axis=0))
    if axis_name is not None:
        shift = lax.pmax(shift, axis_name)
    shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
    mean = _mean_over_samples(jnp.exp(log_x - shift), axis_name)
    return jnp.log(mean) + shift


def _entropy(p: jax.Array, log_p: jax.Array) -> jax.Array:
    return -jnp.sum(jnp.where(p > 0, p * log_p, 0.0), axis=-1)


def _summary(mean_p, log_mean_p, expected_entropy) -> PredictiveSummary:
    pred_entropy = _entropy(mean_p, log_mean_p)
    mi = jnp.maximum(pred_entropy - expected_entropy, 0.0)
    return PredictiveSummary(mean_p, log_mean_p, pred_entropy, expected_entropy, mi)


def summarize_logits(logits: jax.Array, axis_name: str | None = None) -> PredictiveSummary:
    """Predictive summary from per-sample logits ``(M, N, K)`` (log-space, stable).

    Args:
        logits: unnormalized log class probabilities, one row per weight sample.
        axis_name: mapped axis over which the M samples are split (equal shares), or ``None``.

    Returns:
        a :class:`PredictiveSummary`; mutual information is clipped at 0 (round-off).
    """
    logits = _check_3d(logits, "summarize_logits")
    log_p = jax.nn.log_softmax(logits, axis=-1)
    p = jnp.exp(log_p)
    expected_entropy = _mean_over_samples(_entropy(p, log_p), axis_name)
    log_mean_p = _log_mean_exp_over_samples(log_p, axis_name)
    log_mean_p = log_mean_p - logsumexp(log_mean_p, axis=-1, keepdims=True)  # exact norm.
    return _summary(jnp.exp(log_mean_p), log_mean_p, expected_entropy)


def summarize_probs(probs: jax.Array, axis_name: str | None = None) -> PredictiveSummary:
    """Predictive summary from per-sample class probabilities ``(M, N, K)``.

    ``0 log 0`` is taken as 0; a class with zero mean probability has ``log_mean_probs`` -inf.
    Prefer :func:`summarize_logits` when logits are available.
    """
    probs = _check_3d(probs, "summarize_probs")
    expected_entropy = _mean_over_samples(-jnp.sum(xlogy(probs, probs), axis=-1), axis_name)
    mean_p = _mean_over_samples(probs, axis_name)
    return _summary(mean_p, jnp.log(mean_p), expected_entropy)
