"""MCMC convergence diagnostics: R-hat, effective sample size, Monte Carlo standard errors.

The definitions follow Stan and ArviZ, i.e. Vehtari, Gelman, Simpson, Carpenter and Bürkner
(2021), "Rank-normalization, folding, and localization: an improved R-hat for assessing
convergence of MCMC", *Bayesian Analysis* 16(2). Diagnostics run on host (numpy) arrays after
sampling; every function is vectorized over the parameter dimensions.

Shapes: the diagnostic functions take draws shaped ``(num_chains, num_draws, *param_shape)``
and return arrays shaped ``param_shape`` (a 0-d array for a scalar parameter). A single chain
is fine: the split diagnostics split it in two halves. Fewer than 4 draws per chain raise a
``ValueError``. Parameters whose draws are all equal (or contain NaN) get ``nan`` for R-hat and
for the effective sample sizes (as Stan's ``posterior`` package reports ``NA``).

Main entry points:

* :func:`rank_normalized_split_rhat` (the default R-hat of Stan and ArviZ), :func:`split_rhat`;
* NumPyro's names: :func:`gelman_rubin`, :func:`split_gelman_rubin`, :func:`autocorrelation`,
  :func:`autocovariance`, :func:`effective_sample_size` (same signatures; the draws' layout
  is chains first, draws second);
* :func:`ess_bulk`, :func:`ess_tail`, :func:`effective_sample_size`;
* :func:`mcse_mean`, :func:`mcse_sd`, :func:`mcse_quantile`;
* :func:`summary`, :func:`format_summary`, :func:`print_summary` for a table over a dict of
  samples, and :func:`check_warnings` / :func:`warn_diagnostics` for post-sampling warnings.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "ConvergenceWarning",
    "autocorrelation",
    "autocovariance",
    "check_warnings",
    "effective_sample_size",
    "ess_bulk",
    "ess_tail",
    "format_summary",
    "gelman_rubin",
    "hpdi",
    "mcse_mean",
    "mcse_quantile",
    "mcse_sd",
    "print_summary",
    "rank_normalized_split_rhat",
    "split_gelman_rubin",
    "split_rhat",
    "summary",
    "warn_diagnostics",
]

MIN_DRAWS = 4
"""The fewest draws per chain the diagnostics accept."""


class ConvergenceWarning(UserWarning):
    """Warning emitted by :func:`warn_diagnostics` when MCMC diagnostics look problematic."""


# ------------------------------------------------------------------------------------------
# Helpers working on arrays flattened to (num_chains, num_draws, P).
# ------------------------------------------------------------------------------------------


def _as_draws(x: ArrayLike, min_draws: int = MIN_DRAWS) -> tuple[np.ndarray, tuple[int, ...]]:
    """Validate ``x`` (chains, draws, *param_shape); return float64 (chains, draws, P) and shape."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 2:
        raise ValueError(
            "Expected draws shaped (num_chains, num_draws, *param_shape) with at least two "
            f"dimensions, got an array of shape {arr.shape}. For a single chain use x[None]."
        )
    num_chains, num_draws = arr.shape[:2]
    if num_chains < 1:
        raise ValueError("Expected at least one chain, got 0.")
    if num_draws < min_draws:
        raise ValueError(
            f"MCMC diagnostics need at least {min_draws} draws per chain, got {num_draws} "
            f"(input shape {arr.shape})."
        )
    param_shape = arr.shape[2:]
    return arr.reshape(num_chains, num_draws, -1), param_shape


def _unflatten(values: np.ndarray, param_shape: tuple[int, ...]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(param_shape)


def _per_parameter(flat_fn: Callable[..., np.ndarray], x: ArrayLike, *args: Any) -> np.ndarray:
    """Apply ``flat_fn`` ((M, N, P) -> (P,)) to draws (M, N, *param_shape): ``param_shape``."""
    arr, shape = _as_draws(x)
    return _unflatten(flat_fn(arr, *args), shape)


def _split(x: np.ndarray) -> np.ndarray:
    """(M, N, P) -> (2M, N // 2, P); for odd N the middle draw is dropped (as Stan, ArviZ)."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half :]], axis=0)


def _invalid(x: np.ndarray) -> np.ndarray:
    """(M, N, P) -> (P,) bool: the parameter has NaN draws or all its draws are equal."""
    flat = x.reshape(-1, x.shape[-1])
    with np.errstate(invalid="ignore"):
        hi, lo = flat.max(axis=0), flat.min(axis=0)
        scale = np.maximum(1.0, np.maximum(np.abs(hi), np.abs(lo)))
        constant = (hi - lo) <= np.finfo(np.float64).resolution * scale
    return np.isnan(flat).any(axis=0) | constant


def _average_ranks(flat: np.ndarray) -> np.ndarray:
    """Ranks (1-based, ties get their average rank) of each column of a (S, P) array."""
    values = np.ascontiguousarray(flat.T)  # (P, S): sort along the contiguous axis
    size = values.shape[1]
    order = np.argsort(values, axis=1)  # tie order is irrelevant: ties share their mean rank
    ordered = np.take_along_axis(values, order, axis=1)
    positions = np.broadcast_to(np.arange(size), values.shape)
    new_group = np.ones(values.shape, dtype=bool)
    new_group[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group_start = np.maximum.accumulate(np.where(new_group, positions, 0), axis=1)
    ends_group = np.ones(values.shape, dtype=bool)
    ends_group[:, :-1] = new_group[:, 1:]
    group_end = np.minimum.accumulate(np.where(ends_group, positions, size - 1)[:, ::-1], axis=1)[
        :, ::-1
    ]
    ranks = np.empty(values.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, (group_start + group_end) / 2.0 + 1.0, axis=1)
    return ranks.T


def _rank_normalize(x: np.ndarray) -> np.ndarray:
    """Pool all chains, rank (average ties), map ranks to normal scores with Blom's offset."""
    m, n, p = x.shape
    ranks = _average_ranks(np.nan_to_num(x.reshape(m * n, p)))
    size = m * n
    from scipy import special  # here, not at the top: importing scipy costs `import jppl` 0.25 s

    return special.ndtri((ranks - 0.375) / (size + 0.25)).reshape(m, n, p)


def _fold(x: np.ndarray) -> np.ndarray:
    """Absolute deviation from the pooled median (computed before any splitting)."""
    m, n, p = x.shape
    med = np.median(x.reshape(m * n, p), axis=0)
    return np.abs(x - med)


def _rhat_core(x: np.ndarray) -> np.ndarray:
    """Classic potential scale reduction factor of (M, N, P) chains (no splitting), (P,)."""
    n = x.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        within = x.var(axis=1, ddof=1).mean(axis=0)
        between = n * x.mean(axis=1).var(axis=0, ddof=1)
        return np.sqrt((between / within + n - 1.0) / n)


def _ess_core(x: np.ndarray, bias: bool = True) -> np.ndarray:
    """Multi-chain ESS of (M, N, P) chains as in Stan (no splitting), shape (P,).

    ``bias`` picks the autocovariance estimator (see :func:`autocovariance`).

    The autocorrelation at lag t is combined over chains as
    ``rho_t = 1 - (W - mean_c acov_c(t)) / var_plus`` (Gelman et al., BDA3 eq. 11.7), and the
    sum is truncated with Geyer's initial positive sequence and made monotone (Geyer's initial
    monotone sequence) over pairs ``rho_{2k} + rho_{2k+1}``.
    """
    m, n, p = x.shape
    total = m * n
    acov = autocovariance(x, axis=1, bias=bias)  # (M, N, P); lag 0 is the same either way
    mean_var = acov[:, 0].mean(axis=0) * n / (n - 1.0)  # W: mean within-chain variance
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + x.mean(axis=1).var(axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (mean_var - acov.mean(axis=0)) / var_plus  # (N, P)
    rho[0] = 1.0

    # Pair k is rho[2k] + rho[2k+1]; pairs 1..max_pairs can be visited (Stan stops at lag N-3).
    max_pairs = max(0, (n - 1) // 2 - 1)
    pairs = rho[: 2 * (max_pairs + 1)].reshape(max_pairs + 1, 2, p).sum(axis=1)
    # Number of pairs kept: the sequence stops at the first non-positive pair.
    nonpos = pairs[:max_pairs] <= 0
    if max_pairs == 0:
        kept = np.zeros(p, dtype=np.intp)
    else:
        kept = np.where(nonpos.any(axis=0), nonpos.argmax(axis=0), max_pairs)  # (P,)
    # Initial monotone sequence: running minimum of the pair sums.
    monotone = np.minimum.accumulate(pairs, axis=0)
    csum = np.concatenate([np.zeros((1, p)), np.cumsum(monotone, axis=0)], axis=0)
    summed = np.take_along_axis(csum, kept[None], axis=0)[0]
    # Stan adds the even term of the first rejected pair when it is positive (or when the pair
    # itself was non-negative); this refines the truncation.
    even = np.take_along_axis(rho, (2 * kept)[None], axis=0)[0]
    odd = np.take_along_axis(rho, (2 * kept + 1)[None], axis=0)[0]
    last = np.where((even + odd >= 0) | (even > 0), even, 0.0)
    tau = -1.0 + 2.0 * summed + last
    tau = np.maximum(tau, 1.0 / math.log10(total))
    with np.errstate(invalid="ignore", divide="ignore"):
        ess = total / tau
    return np.where(_invalid(x), np.nan, ess)


def _quantile_indicator(x: np.ndarray, prob: float) -> np.ndarray:
    """Indicator ``x <= q_prob`` with the pooled (type 7) quantile; (M, N, P) float array."""
    m, n, p = x.shape
    q = np.quantile(x.reshape(m * n, p), prob, axis=0)
    return (x <= q).astype(np.float64)


def _ess_quantile(x: np.ndarray, prob: float) -> np.ndarray:
    return _ess_core(_split(_quantile_indicator(x, prob)))


def _split_rhat_flat(x: np.ndarray) -> np.ndarray:
    return np.where(_invalid(x), np.nan, _rhat_core(_split(x)))


def _rank_rhat_flat(x: np.ndarray) -> np.ndarray:
    bulk = _rhat_core(_rank_normalize(_split(x)))
    tail = _rhat_core(_rank_normalize(_split(_fold(x))))
    # fmax: when only one of the two is undefined (e.g. the folded draws are constant for a
    # symmetric two-valued parameter) report the other one.
    out = np.fmax(bulk, tail)
    return np.where(_invalid(x), np.nan, out)


def _ess_bulk_flat(x: np.ndarray) -> np.ndarray:
    return np.where(_invalid(x), np.nan, _ess_core(_rank_normalize(_split(x))))


def _ess_tail_flat(x: np.ndarray, prob: float | Sequence[float] = 0.05) -> np.ndarray:
    lo, hi = (prob, 1.0 - prob) if np.ndim(prob) == 0 else tuple(prob)
    out = np.fmin(_ess_quantile(x, lo), _ess_quantile(x, hi))
    return np.where(_invalid(x), np.nan, out)


def _mcse_mean_flat(x: np.ndarray) -> np.ndarray:
    m, n, p = x.shape
    sd = x.reshape(m * n, p).std(axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sd / np.sqrt(_ess_core(_split(x)))


def _mcse_sd_flat(x: np.ndarray) -> np.ndarray:
    m, n, p = x.shape
    flat = x.reshape(m * n, p)
    sims_c2 = (x - flat.mean(axis=0)) ** 2
    ess = _ess_core(_split(sims_c2))
    evar = sims_c2.reshape(m * n, p).mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        varvar = ((sims_c2**2).reshape(m * n, p).mean(axis=0) - evar**2) / ess
        return np.sqrt(varvar / evar / 4.0)


def _mcse_quantile_flat(x: np.ndarray, prob: float) -> np.ndarray:
    m, n, p = x.shape
    ess = _ess_quantile(x, prob)
    # A central 68.27% interval for the rank of the quantile from Beta(ess p + 1, ess (1-p) + 1).
    tail = np.array([0.1586553, 0.8413447])[:, None]
    with np.errstate(invalid="ignore"):
        from scipy import special

        bounds = special.betaincinv(ess * prob + 1.0, ess * (1.0 - prob) + 1.0, tail)  # (2, P)
    size = m * n
    idx = bounds * size - 1.0
    valid = np.isfinite(ess)
    lo_idx = np.floor(np.maximum(np.where(valid, idx[0], 0.0), 0.0)).astype(np.intp)
    hi_idx = np.ceil(np.minimum(np.where(valid, idx[1], size - 1.0), size - 1.0)).astype(np.intp)
    ordered = np.sort(x.reshape(size, p), axis=0)
    lo = np.take_along_axis(ordered, lo_idx[None], axis=0)[0]
    hi = np.take_along_axis(ordered, hi_idx[None], axis=0)[0]
    return np.where(valid, (hi - lo) / 2.0, np.nan)


# ------------------------------------------------------------------------------------------
# Public diagnostics.
# ------------------------------------------------------------------------------------------


def autocovariance(x: ArrayLike, axis: int = 0, bias: bool = True) -> np.ndarray:
    """Autocovariance at every lag along ``axis``, computed with an FFT (NumPyro's signature).

    With ``bias=True`` (default) the estimator is
    ``acov(t) = 1/N sum_{i<N-t} (x_i - mean)(x_{i+t} - mean)`` (the one Geyer's initial
    sequence estimators assume); ``bias=False`` divides lag ``t`` by ``N - t`` instead (the
    number of terms in its sum; it has large variance at long lags).

    Args:
        x: array of any shape; ``x.shape[axis] = N`` is the time dimension.
        axis: the time axis.
        bias: whether to use the biased estimator.

    Returns:
        Array of the same shape as ``x``; index ``t`` along ``axis`` holds lag ``t``.
    """
    arr = np.asarray(x, dtype=np.float64)
    axis = axis % arr.ndim
    n = arr.shape[axis]
    from scipy import fft

    size = fft.next_fast_len(2 * n, real=True)
    centered = arr - arr.mean(axis=axis, keepdims=True)
    spectrum = np.fft.rfft(centered, n=size, axis=axis)
    power = (spectrum * np.conjugate(spectrum)).real
    acov = np.fft.irfft(power, n=size, axis=axis)
    acov = np.take(acov, np.arange(n), axis=axis)
    if bias:
        return acov / n
    counts = np.arange(n, 0, -1, dtype=np.float64)  # N - t terms at lag t
    return acov / counts.reshape((n,) + (1,) * (arr.ndim - 1 - axis))


def autocorrelation(x: ArrayLike, axis: int = 0, bias: bool = True) -> np.ndarray:
    """Autocorrelation at every lag along ``axis`` (autocovariance divided by its lag 0).

    Args:
        x: array of any shape; ``x.shape[axis]`` is the time dimension.
        axis: the time axis.
        bias: whether to use the biased autocovariance (see :func:`autocovariance`; lag 0 is
            the same for both).

    Returns:
        Array of the same shape as ``x``; lag 0 is 1 (``nan`` for a constant series).
    """
    acov = autocovariance(x, axis=axis, bias=bias)
    axis = axis % acov.ndim
    lag0 = np.take(acov, [0], axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return acov / lag0


def effective_sample_size(x: ArrayLike, bias: bool = True, *, split: bool = False) -> np.ndarray:
    """Effective sample size of the mean, combining chains as Stan does (NumPyro's signature).

    The chain-combined autocorrelation is truncated with Geyer's initial monotone sequence.
    With ``split=False`` (default) the chains are used as they are (ArviZ
    ``ess(method="identity")``); with ``split=True`` every chain is first split in half
    (Stan's ``ess_mean``, ArviZ ``ess(method="mean")``). No rank normalization: see
    :func:`ess_bulk` for the recommended ESS.

    Args:
        x: draws ``(num_chains, num_draws, *param_shape)``.
        bias: whether to use the biased autocovariance estimator (see :func:`autocovariance`).
        split: whether to split chains in half first.

    Returns:
        ``param_shape`` array.
    """
    return _per_parameter(lambda arr: _ess_core(_split(arr) if split else arr, bias), x)


def gelman_rubin(x: ArrayLike) -> np.ndarray:
    """R-hat of Gelman and Rubin (1992) over whole chains, without splitting (NumPyro's name).

    ``sqrt(((N - 1) / N W + B / N) / W)`` with ``W`` the mean within-chain variance and ``B / N``
    the variance of the chain means (both with ``ddof=1``).

    Args:
        x: draws ``(num_chains, num_draws, *param_shape)`` with at least two chains and two
            draws per chain.

    Returns:
        ``param_shape`` array (``nan`` for constant draws).
    """
    arr, shape = _as_draws(x, min_draws=2)
    if arr.shape[0] < 2:
        raise ValueError(
            f"gelman_rubin needs at least two chains, got input of shape {np.shape(x)} "
            "(num_chains, num_draws, ...); for one chain use split_gelman_rubin."
        )
    return _unflatten(np.where(_invalid(arr), np.nan, _rhat_core(arr)), shape)


def split_gelman_rubin(x: ArrayLike) -> np.ndarray:
    """Split R-hat (NumPyro's name for :func:`split_rhat`): each chain is cut in two halves.

    Args:
        x: draws ``(num_chains, num_draws, *param_shape)`` with at least 4 draws per chain.

    Returns:
        ``param_shape`` array (``nan`` for constant draws).
    """
    return split_rhat(x)


def split_rhat(x: ArrayLike) -> np.ndarray:
    """Split-R-hat (Gelman et al., BDA3) on the raw draws, without rank normalization.

    Args:
        x: draws ``(num_chains, num_draws, *param_shape)``; one chain is split in two.

    Returns:
        ``param_shape`` array (``nan`` for constant draws).
    """
    return _per_parameter(_split_rhat_flat, x)


def rank_normalized_split_rhat(x: ArrayLike) -> np.ndarray:
    """Rank-normalized split-R-hat: the R-hat reported by Stan and ArviZ (``method="rank"``).

    The maximum of the split-R-hat of the rank-normalized draws (bulk) and of the
    rank-normalized draws folded around the pooled median (tails). Values above 1.01 indicate
    that the chains have not mixed.

    Args:
        x: draws ``(num_chains, num_draws, *param_shape)``; one chain is split in two.

    Returns:
        ``param_shape`` array (``nan`` for constant draws).
    """
    return _per_parameter(_rank_rhat_flat, x)


def ess_bulk(x: ArrayLike) -> np.ndarray:
    """Bulk effective sample size: ESS of the rank-normalized split chains.

    Args:
        x: draws ``(num_chains, num_draws, *param_shape)``.

    Returns:
        ``param_shape`` array (``nan`` for constant draws).
    """
    return _per_parameter(_ess_bulk_flat, x)


def ess_tail(x: ArrayLike, prob: float | Sequence[float] = 0.05) -> np.ndarray:
    """Tail effective sample size: the smaller ESS of the 5% and 95% quantile indicators.

    Args:
        x: draws ``(num_chains, num_draws, *param_shape)``.
        prob: the lower tail probability ``p`` (quantiles ``p`` and ``1 - p``), or a pair of
            probabilities.

    Returns:
        ``param_shape`` array (``nan`` for constant draws).
    """
    return _per_parameter(_ess_tail_flat, x, prob)


def mcse_mean(x: ArrayLike) -> np.ndarray:
    """Monte Carlo standard error of the posterior mean: ``sd / sqrt(ess_mean)``.

    ``sd`` is the pooled standard deviation (``ddof=1``) and ``ess_mean`` the split-chain ESS
    without rank normalization (as ArviZ 0.23 and Stan).

    Args:
        x: draws ``(num_chains, num_draws, *param_shape)``.

    Returns:
        ``param_shape`` array.
    """
    return _per_parameter(_mcse_mean_flat, x)


def mcse_sd(x: ArrayLike) -> np.ndarray:
    """Monte Carlo standard error of the posterior standard deviation (ArviZ 0.23 definition).

    With ``s = (x - mean)^2``: ``Var[s]/ess_mean(s)`` estimates the variance of the variance
    estimate, and the delta method gives ``mcse_sd = sqrt(Var[s] / ess_mean(s) / (4 E[s]))``.

    Args:
        x: draws ``(num_chains, num_draws, *param_shape)``.

    Returns:
        ``param_shape`` array.
    """
    return _per_parameter(_mcse_sd_flat, x)


def mcse_quantile(x: ArrayLike, prob: float) -> np.ndarray:
    """Monte Carlo standard error of the ``prob`` quantile (Vehtari et al. 2021, sec. 4.3).

    Half the width of the draws between the ranks bounding a central 68% interval of
    ``Beta(ess p + 1, ess (1 - p) + 1)``, with ``ess`` the split ESS of the quantile indicator.

    Args:
        x: draws ``(num_chains, num_draws, *param_shape)``.
        prob: the quantile level in (0, 1).

    Returns:
        ``param_shape`` array.
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must lie in (0, 1), got {prob}.")
    return _per_parameter(_mcse_quantile_flat, x, prob)


def hpdi(x: ArrayLike, prob: float = 0.9, axis: int = 0) -> np.ndarray:
    """Highest posterior density interval: the narrowest interval holding ``prob`` of the draws.

    Args:
        x: samples; ``axis`` indexes the draws (flatten chains first).
        prob: probability mass of the interval, in (0, 1).
        axis: the sample axis.

    Returns:
        Array with the sample axis replaced by a leading axis of size 2 (lower, upper):
        shape ``(2, *other_dims)``.
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must lie in (0, 1), got {prob}.")
    arr = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    n = arr.shape[0]
    if n == 0:
        raise ValueError("hpdi needs at least one sample.")
    ordered = np.sort(arr, axis=0)
    width = int(math.floor(prob * n))
    num_intervals = n - width
    widths = ordered[width:] - ordered[:num_intervals]
    start = np.argmin(widths, axis=0)
    lower = np.take_along_axis(ordered, start[None], axis=0)[0]
    upper = np.take_along_axis(ordered, (start + width)[None], axis=0)[0]
    return np.stack([lower, upper])


# ------------------------------------------------------------------------------------------
# Summary tables.
# ------------------------------------------------------------------------------------------

_DIAGNOSTIC_KEYS = ("mcse_mean", "mcse_sd", "ess_bulk", "ess_tail", "r_hat")
_DIVERGENCE_KEYS = ("diverging", "divergences", "num_divergent", "num_divergences")


def _quantile_label(q: float) -> str:
    return f"{100.0 * q:.6g}%"


def _grouped(value: ArrayLike, group_by_chain: bool) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not group_by_chain:
        arr = arr[None]
    if arr.ndim < 2:
        raise ValueError(
            "Expected samples shaped (num_chains, num_draws, ...) (or (num_draws, ...) with "
            f"group_by_chain=False), got shape {arr.shape}."
        )
    return arr


def summary(
    samples: Mapping[str, ArrayLike], prob: float = 0.9, group_by_chain: bool = True
) -> dict[str, dict[str, np.ndarray]]:
    """Posterior statistics and convergence diagnostics for every site in ``samples``.

    For each site the result holds, each shaped like the site's ``param_shape``:
    ``mean``, ``sd`` (``ddof=1``), ``median``, the equal-tailed quantiles ``(1 - prob) / 2``
    and ``(1 + prob) / 2`` (keys like ``"5%"`` and ``"95%"``), ``mcse_mean``, ``mcse_sd``,
    ``ess_bulk``, ``ess_tail`` and ``r_hat`` (:func:`rank_normalized_split_rhat`). With fewer
    than 4 draws per chain the diagnostics are ``nan`` (no error).

    Args:
        samples: site name -> draws shaped ``(num_chains, num_draws, *param_shape)``, or
            ``(num_draws, *param_shape)`` when ``group_by_chain=False``.
        prob: mass of the central interval.
        group_by_chain: whether the leading axis of each array indexes chains.

    Returns:
        ``{site: {statistic: array}}``, statistics in the order listed above.
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must lie in (0, 1), got {prob}.")
    q_lo, q_hi = (1.0 - prob) / 2.0, (1.0 + prob) / 2.0
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, value in samples.items():
        arr = _grouped(value, group_by_chain)
        m, n = arr.shape[:2]
        shape = arr.shape[2:]
        flat = arr.reshape(m * n, -1)
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            stats: dict[str, np.ndarray] = {
                "mean": flat.mean(axis=0),
                "sd": flat.std(axis=0, ddof=1) if m * n > 1 else np.full(flat.shape[1], np.nan),
                "median": np.median(flat, axis=0),
                _quantile_label(q_lo): np.quantile(flat, q_lo, axis=0),
                _quantile_label(q_hi): np.quantile(flat, q_hi, axis=0),
            }
            if n >= MIN_DRAWS:
                x = arr.reshape(m, n, -1)
                stats["mcse_mean"] = _mcse_mean_flat(x)
                stats["mcse_sd"] = _mcse_sd_flat(x)
                stats["ess_bulk"] = _ess_bulk_flat(x)
                stats["ess_tail"] = _ess_tail_flat(x)
                stats["r_hat"] = _rank_rhat_flat(x)
            else:
                for key in _DIAGNOSTIC_KEYS:
                    stats[key] = np.full(flat.shape[1], np.nan)
        out[name] = {key: _unflatten(val, shape) for key, val in stats.items()}
    return out


def _element_names(name: str, shape: tuple[int, ...]) -> list[str]:
    if not shape:
        return [name]
    return [f"{name}[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


def _format_value(key: str, value: float) -> str:
    if not np.isfinite(value):
        return str(value)
    if key.startswith("ess"):
        return f"{value:.0f}"
    if key.startswith("mcse"):
        return f"{value:.3f}"
    return f"{value:.2f}"


def _count(value: Any) -> int:
    return int(np.sum(np.asarray(value)))


def _format_extra(extra: Mapping[str, Any], group_by_chain: bool) -> list[str]:
    lines = []
    for key, value in extra.items():
        arr = np.asarray(value)
        if key in _DIVERGENCE_KEYS:
            line = f"Number of divergences: {_count(arr)}"
            per_chain = None
            if group_by_chain and arr.ndim == 2:  # (chains, draws) flags
                per_chain = arr.reshape(arr.shape[0], -1).sum(axis=1)
            elif group_by_chain and arr.ndim == 1 and arr.dtype != bool:  # per-chain counts
                per_chain = arr
            if per_chain is not None and len(per_chain) > 1:
                line += f" (per chain: {', '.join(str(int(c)) for c in per_chain)})"
            lines.append(line)
        elif arr.dtype == bool:
            lines.append(f"{key}: {_count(arr)}")
        else:
            lines.append(f"{key}: {value}")
    return lines


def format_summary(
    samples: Mapping[str, ArrayLike],
    prob: float = 0.9,
    group_by_chain: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Render :func:`summary` as an aligned text table, one row per scalar element.

    Rows are named ``site`` for scalars and ``site[i]``, ``site[i,j]`` for array sites.
    ``extra`` adds lines below the table: keys ``"diverging"`` / ``"num_divergent"`` (per-draw
    flags shaped ``(num_chains, num_draws)``, per-chain counts or a total) print as
    ``Number of divergences: N (per chain: ...)``; other keys print as ``key: value`` (boolean
    arrays are counted).

    Args:
        samples: as in :func:`summary`.
        prob: mass of the central interval.
        group_by_chain: as in :func:`summary`.
        extra: optional additional information to append.

    Returns:
        The table as a string (no trailing newline).
    """
    stats = summary(samples, prob=prob, group_by_chain=group_by_chain)
    columns: list[str] = []
    rows: list[list[str]] = []
    for name, site in stats.items():
        if not columns:
            columns = list(site)
        shape = np.shape(site["mean"])
        flat = {key: np.asarray(val).reshape(-1) for key, val in site.items()}
        for i, elem in enumerate(_element_names(name, shape)):
            rows.append([elem] + [_format_value(key, flat[key][i]) for key in columns])
    if not columns:  # no sites: still show the header
        columns = list(summary({"_": np.zeros((1, 1))}, prob=prob)["_"])
    header = [""] + columns
    widths = [max(len(row[j]) for row in [header, *rows]) for j in range(len(header))]
    lines = []
    for row in [header, *rows]:
        name = row[0].ljust(widths[0])
        cells = [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join([name, *cells]).rstrip())
    if extra:
        lines.append("")
        lines.extend(_format_extra(extra, group_by_chain))
    return "\n".join(lines)


def print_summary(
    samples: Mapping[str, ArrayLike],
    prob: float = 0.9,
    group_by_chain: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Print :func:`format_summary` (with a blank line around it).

    Args:
        samples: site name -> draws shaped ``(num_chains, num_draws, *param_shape)``, or
            ``(num_draws, *param_shape)`` when ``group_by_chain=False``.
        prob: mass of the central interval.
        group_by_chain: whether the leading axis of each array indexes chains.
        extra: e.g. ``{"diverging": flags}`` to report the number of divergences.
    """
    print()
    print(format_summary(samples, prob=prob, group_by_chain=group_by_chain, extra=extra))
    print()


# ------------------------------------------------------------------------------------------
# Warnings.
# ------------------------------------------------------------------------------------------


def _list_elements(items: list[tuple[str, float]], fmt: str, limit: int = 5) -> str:
    text = ", ".join(f"{name} ({value:{fmt}})" for name, value in items[:limit])
    if len(items) > limit:
        text += f" and {len(items) - limit} more"
    return text


def check_warnings(
    samples: Mapping[str, ArrayLike] | None,
    num_divergent: int | ArrayLike = 0,
    num_max_treedepth_hits: int | ArrayLike = 0,
    rhat_threshold: float = 1.01,
    min_ess_per_chain: float = 100,
    *,
    max_tree_depth: int | None = None,
    group_by_chain: bool = True,
) -> list[str]:
    """Messages describing problems with an MCMC run (an empty list when all looks fine).

    Checks, in order: divergent transitions after warmup, transitions that hit the maximum
    tree depth, rank-normalized split R-hat above ``rhat_threshold``, and bulk / tail ESS below
    ``min_ess_per_chain * num_chains`` (Vehtari et al. 2021 recommend 100 per chain). Sites
    with constant draws (``nan`` diagnostics) and runs with fewer than 4 draws per chain are
    not checked for R-hat and ESS.

    Args:
        samples: site name -> draws shaped ``(num_chains, num_draws, *param_shape)`` (or
            ``(num_draws, ...)`` with ``group_by_chain=False``); ``None`` to skip R-hat / ESS.
        num_divergent: number of divergent transitions after warmup; an array (per-chain counts
            or per-draw flags) is summed.
        num_max_treedepth_hits: number of post-warmup transitions that stopped at the maximum
            tree depth; arrays are summed.
        rhat_threshold: largest acceptable R-hat.
        min_ess_per_chain: smallest acceptable ESS per chain.
        max_tree_depth: the sampler's maximum tree depth, quoted in the message when given.
        group_by_chain: whether the leading axis of each sample array indexes chains.

    Returns:
        A list of human-readable warning messages.
    """
    messages: list[str] = []
    n_div = _count(num_divergent)
    if n_div > 0:
        s = "" if n_div == 1 else "s"
        messages.append(
            f"There {'was' if n_div == 1 else 'were'} {n_div} divergent transition{s} after "
            "warmup. The posterior may not have been explored fully and estimates may be "
            "biased; increase target_accept_prob or reparameterize the model (e.g. use a "
            "non-centered parameterization)."
        )
    n_tree = _count(num_max_treedepth_hits)
    if n_tree > 0:
        depth = "" if max_tree_depth is None else f" ({max_tree_depth})"
        s = "" if n_tree == 1 else "s"
        messages.append(
            f"{n_tree} transition{s} after warmup hit the maximum tree depth{depth}. This is an "
            "efficiency concern: increase max_tree_depth or reparameterize the model."
        )
    if not samples:
        return messages

    high_rhat: list[tuple[str, float]] = []
    low_bulk: list[tuple[str, float]] = []
    low_tail: list[tuple[str, float]] = []
    num_chains = None
    for name, value in samples.items():
        arr = _grouped(value, group_by_chain)
        m, n = arr.shape[:2]
        if n < MIN_DRAWS:
            continue
        num_chains = m if num_chains is None else max(num_chains, m)
        x = arr.reshape(m, n, -1)
        names = _element_names(name, arr.shape[2:])
        with np.errstate(invalid="ignore", divide="ignore"):
            rhat = _rank_rhat_flat(x)
            bulk = _ess_bulk_flat(x)
            tail = _ess_tail_flat(x)
        threshold = min_ess_per_chain * m
        for i, elem in enumerate(names):
            if rhat[i] > rhat_threshold:
                high_rhat.append((elem, rhat[i]))
            if bulk[i] < threshold:
                low_bulk.append((elem, bulk[i]))
            if tail[i] < threshold:
                low_tail.append((elem, tail[i]))

    if high_rhat:
        high_rhat.sort(key=lambda item: -item[1])
        messages.append(
            f"The rank-normalized split R-hat is above {rhat_threshold:g} for "
            f"{len(high_rhat)} parameter element{'s' if len(high_rhat) > 1 else ''}: "
            f"{_list_elements(high_rhat, '.3f')}. The chains have not mixed; do not trust the "
            "estimates. Run longer chains or reparameterize the model."
        )
    threshold_text = (
        f"{min_ess_per_chain * num_chains:g} ({min_ess_per_chain:g} per chain)"
        if num_chains is not None
        else ""
    )
    if low_bulk:
        low_bulk.sort(key=lambda item: item[1])
        messages.append(
            f"The bulk effective sample size is below {threshold_text} for {len(low_bulk)} "
            f"parameter element{'s' if len(low_bulk) > 1 else ''}: "
            f"{_list_elements(low_bulk, '.0f')}. Posterior means and medians may be "
            "unreliable; run more draws or reparameterize the model."
        )
    if low_tail:
        low_tail.sort(key=lambda item: item[1])
        messages.append(
            f"The tail effective sample size is below {threshold_text} for {len(low_tail)} "
            f"parameter element{'s' if len(low_tail) > 1 else ''}: "
            f"{_list_elements(low_tail, '.0f')}. Posterior quantiles and intervals may be "
            "unreliable; run more draws or reparameterize the model."
        )
    return messages


def warn_diagnostics(
    samples: Mapping[str, ArrayLike] | None,
    num_divergent: int | ArrayLike = 0,
    num_max_treedepth_hits: int | ArrayLike = 0,
    rhat_threshold: float = 1.01,
    min_ess_per_chain: float = 100,
    *,
    max_tree_depth: int | None = None,
    group_by_chain: bool = True,
    stacklevel: int = 2,
) -> list[str]:
    """Run :func:`check_warnings` and emit each message as a :class:`ConvergenceWarning`.

    Args:
        samples: as in :func:`check_warnings`, as are ``num_divergent``,
            ``num_max_treedepth_hits``, ``rhat_threshold``, ``min_ess_per_chain``,
            ``max_tree_depth`` and ``group_by_chain``.
        stacklevel: passed to :func:`warnings.warn` (2 points at the caller).

    Returns:
        The emitted messages.
    """
    messages = check_warnings(
        samples,
        num_divergent,
        num_max_treedepth_hits,
        rhat_threshold,
        min_ess_per_chain,
        max_tree_depth=max_tree_depth,
        group_by_chain=group_by_chain,
    )
    for message in messages:
        warnings.warn(message, ConvergenceWarning, stacklevel=stacklevel)
    return messages
