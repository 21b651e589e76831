r"""Warm-up adaptation of the step size and the inverse mass matrix for HMC and NUTS.

Two schemes are provided. Both run the whole warm-up inside a single compiled ``lax.scan``
(one transition per scan step; every adaptation decision is driven by a precomputed schedule,
so under ``vmap`` the expensive updates stay real ``lax.cond`` branches instead of being
evaluated on every step), work on a flat position ``(d,)`` and return the final chain state,
the tuned kernel parameters and the per-step diagnostics.

**Stan's windowed adaptation** (:func:`window_adaptation`, the default, see
:data:`DEFAULT_ADAPTATION`), as in the Stan reference manual ("HMC algorithm parameters",
"Automatic parameter tuning"):

* the step size is tuned by Nesterov dual averaging of ``log(step_size)`` towards the target
  mean acceptance statistic (0.8 by default; ``gamma = 0.05``, ``t0 = 10``, ``kappa = 0.75``,
  shrinkage point ``mu = log(10 * step_size)``); the final step size is
  ``exp(log_step_size_avg)``;
* the warm-up is split into a fast initial buffer (75 draws), a series of slow windows whose
  size doubles (25, 50, 100, ...; the last one is stretched to reach the terminal buffer) and a
  fast terminal buffer (50 draws). When ``num_warmup < init_buffer + base_window +
  term_buffer`` (150 with the defaults) the three stages take 15% / 75% / 10% of the warm-up;
  below 20 warm-up draws only the step size is adapted (see :func:`build_schedule`);
* during each slow window a Welford estimator accumulates the draws; at the window end the
  inverse mass matrix becomes ``(n / (n + 5)) * var + 1e-3 * (5 / (n + 5))`` (times the
  identity for a dense metric), the estimator is reset, the step size is re-initialized by
  the doubling/halving heuristic (:func:`find_reasonable_step_size`) and dual averaging is
  restarted. The same heuristic sets the step size before the first draw.

**nutpie's adaptation** (:func:`nutpie_adaptation`; Seyboldt, Carlson & Carpenter, "nutpie"
(2026), and the 2023 nutpie note on mass-matrix adaptation). The diagonal inverse mass matrix
is chosen to minimize the Fisher divergence between the target and the affinely transformed
standard normal, which for a diagonal transform gives

    ``M^{-1}_ii = sqrt(Var(x_i) / Var(grad_i))``

using both the draws and their log-density gradients (exact for any Gaussian with diagonal
covariance; much less noisy than the draw variance alone for short windows):

* at initialization ``M^{-1}_ii = 1 / |grad_i|`` (gradient-only estimate at the initial
  point), then the step size is searched with the same heuristic as Stan;
* two estimators (a foreground and a background) both receive every draw; the mass matrix is
  recomputed from the foreground after every draw (``mass_matrix_update_freq``). Every
  ``early_switch_freq = 10`` draws during the first 30% of the warm-up, then every
  ``switch_freq = 80`` draws, the background replaces the foreground and a fresh background is
  started, so the estimate always uses only recent draws (between one and two windows' worth).
  No switch happens when a full new window would not fit before the final phase;
* the first time the mass matrix changes (once three draws are available) the step size is
  searched again and dual averaging restarted; afterwards dual averaging runs continuously;
* the last 15% of the warm-up only tunes the step size (final value ``exp(log_step_size_avg)``).
* draws at which the chain did not move (NUTS returned its starting point) are not added to
  the estimators, an approximation of nutpie's filter of draws close to the trajectory start.

With ``low_rank=True`` the foreground window of draws and gradients is kept in a ring buffer
and, after the diagonal scaling ``D = sqrt(Var(x) / Var(grad))`` (population variances), the
draws ``D^{-1/2}(x - mean)`` and gradients ``D^{1/2}(grad - mean)`` are projected onto the
subspace they span. There the SPD matrix ``S`` minimizing the sample Fisher divergence solves
``S C_grad S = C_draw``, i.e. the geometric mean
``S = C_g^{-1/2} (C_g^{1/2} C_x C_g^{1/2})^{1/2} C_g^{-1/2}`` of the regularized covariances
``C + n * gamma * I``. The eigenvalues of ``S`` outside ``[1 / cutoff, cutoff]`` (at most
``rank`` of them, the farthest from 1 in log scale) are kept, giving

    ``M^{-1} = D^{1/2} (I + U (Lambda - I) U^T) D^{1/2}``.

Until the early window (the first 30%) ends, and whenever that dense matrix is not positive
definite in floating point, only the diagonal ``D`` of the window is used: a chain still
drifting in from the tails gives a non-stationary window, and a correction fitted to it can
shrink the directions the chain has not explored by orders of magnitude and freeze it there
(seen on posteriordb's arma11 from uniform initial points).

The kernels accept only diagonal or dense metrics, so this matrix is returned as a dense
``(d, d)`` array: the kernel then pays ``O(d^2)`` per leapfrog step and a Cholesky
factorization (``O(d^3)``) per transition, and each low-rank update costs a few ``(m, m)``
eigendecompositions with ``m = min(d, 2 * window)``. This is fine for posteriordb-sized models
(``d`` up to a few hundred), not for very large ``d``.

Lower-level pieces are pure functions: :func:`dual_averaging_init` / ``_update`` / ``_final``,
:func:`welford_init` / ``_update`` / ``_final``, :func:`regularize_inverse_mass_matrix`,
:func:`find_reasonable_step_size`, :func:`build_schedule`, :func:`build_nutpie_schedule` and
:func:`low_rank_inverse_mass_matrix`.

Example::

    warmup = window_adaptation(logdensity_fn, num_warmup=1000)
    state, params, infos = jax.jit(warmup.run)(key, initial_position)
    state, info = warmup.step(key2, state, params)  # the tuned NUTS transition
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jppl.mcmc import hmc, nuts
from jppl.mcmc.integrators import IntegratorState, hamiltonian, velocity_verlet
from jppl.mcmc.metrics import gaussian_euclidean

__all__ = [
    "DEFAULT_ADAPTATION",
    "Adaptation",
    "AdaptationInfo",
    "AdaptationState",
    "DualAveragingState",
    "LowRankBuffer",
    "NutpieEstimatorState",
    "NutpieSchedule",
    "WelfordState",
    "WindowSchedule",
    "build_nutpie_schedule",
    "build_schedule",
    "dual_averaging_final",
    "dual_averaging_init",
    "dual_averaging_update",
    "find_reasonable_step_size",
    "low_rank_inverse_mass_matrix",
    "nutpie_adaptation",
    "regularize_inverse_mass_matrix",
    "welford_final",
    "welford_init",
    "welford_update",
    "window_adaptation",
]

#: Which warm-up scheme the inference front end uses unless told otherwise: ``"stan"``
#: (:func:`window_adaptation`) or ``"nutpie"`` (:func:`nutpie_adaptation`).
#:
#: Chosen by ``benchmarks/adaptation.py`` (all 21 posteriordb posteriors, 4 chains x 1000
#: draws, ``benchmarks/results/adaptation_cpu.md``): Stan's windows are the only scheme that
#: passes the reference check on all 21 with 1000 warm-up draws. nutpie's diagonal scheme
#: gives more ESS per gradient (median 1.29x with 1000 warm-up draws, 1.76x with 300, which
#: also passes 21/21), but with 1000 warm-up draws it fails gp_pois_regr (192 divergences).
#: The low-rank variant passes 21/21 too (median 8.2x ESS per gradient with 1000 warm-up
#: draws, 12.8x with 300), but it works with a dense ``(d, d)`` matrix (``O(d^2)`` per
#: leapfrog step and a Cholesky factorization per transition: not for models with thousands
#: of parameters) and gp_pois_regr gives 159 divergences with 300 warm-up draws. Stan's
#: scheme also handles dense and block-dense mass matrices, which nutpie's diagonal scheme
#: does not. ``NUTS(..., adaptation="nutpie")`` with ``num_warmup=300`` is the faster option
#: for diagonal metrics, ``"nutpie_low_rank"`` for small models with correlated posteriors.
DEFAULT_ADAPTATION = "stan"

LogDensityFn = Callable[[jax.Array], jax.Array]

# Bounds on the adapted diagonal of M^{-1} (nutpie uses 1e-20 .. 1e20 in float64; these keep
# float32 arithmetic finite).
_DIAG_LOWER = 1e-10
_DIAG_UPPER = 1e10
# Bounds of the step-size search.
_STEP_SIZE_MIN = 1e-10
_STEP_SIZE_MAX = 1e7


def _tree_where(pred: ArrayLike, on_true: Any, on_false: Any) -> Any:
    """Leaf-wise ``where(pred, a, b)`` over two pytrees of the same structure."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


# ---------------------------------------------------------------------------------------------
# Dual averaging
# ---------------------------------------------------------------------------------------------


class DualAveragingState(NamedTuple):
    """State of Nesterov dual averaging of ``log(step_size)`` (Hoffman & Gelman, 2014).

    Attributes:
        log_step_size: ``()`` current iterate ``x_t``; the step size used during warm-up is
            ``exp(x_t)``.
        log_step_size_avg: ``()`` weighted average ``x_bar_t``; its exponential is the final
            step size.
        gradient_avg: ``()`` running average ``H_bar_t`` of ``target - acceptance``.
        step: ``()`` int32, number of updates ``t`` since the last (re)start.
        mu: ``()`` shrinkage point, ``log(10 * step_size)`` at (re)start.
    """

    log_step_size: jax.Array
    log_step_size_avg: jax.Array
    gradient_avg: jax.Array
    step: jax.Array
    mu: jax.Array


def dual_averaging_init(step_size: ArrayLike) -> DualAveragingState:
    """Start (or restart) dual averaging from ``step_size`` (``()``), with
    ``mu = log(10 * step_size)``."""
    log_step_size = jnp.log(jnp.asarray(step_size))
    zero = jnp.zeros_like(log_step_size)
    return DualAveragingState(
        log_step_size=log_step_size,
        log_step_size_avg=zero,
        gradient_avg=zero,
        step=jnp.zeros((), jnp.int32),
        mu=jnp.log(10.0) + log_step_size,
    )


def dual_averaging_update(
    state: DualAveragingState,
    acceptance_rate: ArrayLike,
    *,
    target_accept_prob: float = 0.8,
    gamma: float = 0.05,
    t0: float = 10.0,
    kappa: float = 0.75,
) -> DualAveragingState:
    """One dual-averaging update with the acceptance statistic of the last transition.

    With ``t`` the update count, ``eta = 1 / (t + t0)``:
    ``H_bar = (1 - eta) H_bar + eta (target - min(acceptance, 1))``,
    ``x = mu - sqrt(t) / gamma * H_bar`` and ``x_bar = (1 - t^-kappa) x_bar + t^-kappa x``.
    A NaN acceptance statistic counts as 0.

    Args:
        state: current :class:`DualAveragingState`.
        acceptance_rate: ``()`` acceptance statistic in ``[0, 1]``.
        target_accept_prob: the acceptance statistic aimed at.
        gamma, t0, kappa: the dual-averaging constants (Stan's defaults).
    """
    dtype = state.log_step_size.dtype
    accept = jnp.asarray(acceptance_rate, dtype)
    accept = jnp.where(jnp.isnan(accept), 0.0, jnp.minimum(accept, 1.0))
    step = state.step + 1
    t = step.astype(dtype)
    eta = 1.0 / (t + t0)
    gradient_avg = (1.0 - eta) * state.gradient_avg + eta * (target_accept_prob - accept)
    log_step_size = state.mu - jnp.sqrt(t) / gamma * gradient_avg
    weight = t ** (-kappa)
    log_step_size_avg = (1.0 - weight) * state.log_step_size_avg + weight * log_step_size
    return DualAveragingState(
        log_step_size=log_step_size.astype(dtype),
        log_step_size_avg=log_step_size_avg.astype(dtype),
        gradient_avg=gradient_avg.astype(dtype),
        step=step,
        mu=state.mu,
    )


def dual_averaging_final(state: DualAveragingState) -> jax.Array:
    """The adapted step size ``exp(x_bar)`` (``()``); ``exp(x)`` if no update happened since
    the last restart (avoids Stan's step size of 1 after an empty terminal buffer)."""
    return jnp.exp(jnp.where(state.step > 0, state.log_step_size_avg, state.log_step_size))


# ---------------------------------------------------------------------------------------------
# Welford estimators
# ---------------------------------------------------------------------------------------------


class WelfordState(NamedTuple):
    """Running mean and sum of squared deviations (Welford's algorithm).

    Attributes:
        mean: ``(d,)`` running mean.
        m2: ``(d,)`` sum of squared deviations (diagonal) or ``(d, d)`` sum of outer products
            of deviations (dense).
        count: ``()`` int32, number of samples added.
    """

    mean: jax.Array
    m2: jax.Array
    count: jax.Array


def welford_init(dim: int, dense: bool = False, dtype: Any = None) -> WelfordState:
    """Empty estimator for ``(dim,)`` samples: variances (``dense=False``) or a covariance."""
    dtype = jnp.zeros((), dtype).dtype if dtype is not None else jnp.zeros(()).dtype
    m2_shape = (dim, dim) if dense else (dim,)
    return WelfordState(
        jnp.zeros((dim,), dtype), jnp.zeros(m2_shape, dtype), jnp.zeros((), jnp.int32)
    )


def welford_update(state: WelfordState, sample: ArrayLike) -> WelfordState:
    """Add one sample ``(d,)`` to the estimator (the diagonal/dense kind is read from
    ``state.m2``'s rank)."""
    sample = jnp.asarray(sample, state.mean.dtype)
    count = state.count + 1
    delta = sample - state.mean
    mean = state.mean + delta / count.astype(state.mean.dtype)
    if state.m2.ndim == 2:
        m2 = state.m2 + jnp.outer(sample - mean, delta)
    else:
        m2 = state.m2 + (sample - mean) * delta
    return WelfordState(mean, m2, count)


def welford_final(state: WelfordState) -> tuple[jax.Array, jax.Array]:
    """Unbiased sample variances ``(d,)`` or covariance ``(d, d)`` (``m2 / (n - 1)``) and the
    count ``n`` (``()`` int32). With fewer than two samples the estimate is zero."""
    n = state.count.astype(state.m2.dtype)
    cov = jnp.where(state.count > 1, state.m2 / jnp.maximum(n - 1.0, 1.0), 0.0)
    if cov.ndim == 2:
        cov = 0.5 * (cov + cov.T)
    return cov, state.count


def regularize_inverse_mass_matrix(covariance: ArrayLike, count: ArrayLike) -> jax.Array:
    """Stan's shrinkage of a variance ``(d,)`` or covariance ``(d, d)`` estimate from ``count``
    draws: ``(n / (n + 5)) * cov + 1e-3 * (5 / (n + 5))`` (times the identity if dense)."""
    covariance = jnp.asarray(covariance)
    n = jnp.asarray(count, covariance.dtype)
    shrink = 1e-3 * (5.0 / (n + 5.0))
    scaled = (n / (n + 5.0)) * covariance
    if covariance.ndim == 2:
        return scaled + shrink * jnp.eye(covariance.shape[0], dtype=covariance.dtype)
    return scaled + shrink


# ---------------------------------------------------------------------------------------------
# Step-size search
# ---------------------------------------------------------------------------------------------


def find_reasonable_step_size(
    key: jax.Array,
    state: Any,
    logdensity_fn: LogDensityFn,
    inverse_mass_matrix: ArrayLike,
    step_size: ArrayLike,
    *,
    target_accept_prob: float = 0.8,
    max_iterations: int = 100,
) -> jax.Array:
    """Stan's step-size initialization heuristic.

    From ``step_size``, take one leapfrog step with a fresh momentum; if its acceptance
    probability ``min(1, exp(H0 - H1))`` exceeds ``target_accept_prob`` keep doubling the step
    size (fresh momentum each time) until it no longer does, otherwise keep halving until it
    does. The first step size at which the crossing happens is returned (as in Stan's
    ``init_stepsize``). Runs in one ``lax.while_loop`` (the leapfrog step is traced once)
    bounded by ``max_iterations`` and by the range ``[1e-10, 1e7]``; a non-finite or
    non-positive ``step_size`` is returned unchanged.

    Args:
        key: PRNG key.
        state: anything with ``position (d,)``, ``logdensity ()`` and ``logdensity_grad (d,)``
            (a ``NUTSState`` or ``HMCState``).
        logdensity_fn: ``(d,) -> ()`` log density.
        inverse_mass_matrix: ``(d,)`` or ``(d, d)``.
        step_size: ``()`` starting value.
        target_accept_prob: acceptance probability of a single step to cross (Stan: 0.8).
        max_iterations: bound on the number of doublings/halvings.

    Returns:
        ``()`` step size.
    """
    position = state.position
    dtype = position.dtype
    step_size = jnp.asarray(step_size, dtype)
    metric = gaussian_euclidean(inverse_mass_matrix)
    integrator = velocity_verlet(logdensity_fn, metric.velocity)
    log_target = jnp.log(jnp.asarray(target_accept_prob, dtype))

    def log_accept(step_key: jax.Array, eps: jax.Array) -> jax.Array:
        momentum = metric.sample_momentum(step_key, position)
        start = IntegratorState(position, momentum, state.logdensity, state.logdensity_grad)
        end = integrator(start, eps)
        delta = hamiltonian(metric.kinetic_energy, start) - hamiltonian(metric.kinetic_energy, end)
        return jnp.where(jnp.isnan(delta), -jnp.inf, delta)

    valid = jnp.isfinite(step_size) & (step_size > 0)

    def cond(carry):
        i, _, _, _, done = carry
        return (i <= max_iterations) & ~done

    def body(carry):
        # Iteration 0 fixes the direction at the starting step size; each later iteration
        # tries the doubled/halved step size and stops at the first crossing.
        i, loop_key, eps, going_up, _ = carry
        loop_key, step_key = jax.random.split(loop_key)
        above = log_accept(step_key, eps) > log_target
        going_up = jnp.where(i == 0, above, going_up)
        crossed = (i > 0) & jnp.where(going_up, ~above, above)
        new_eps = jnp.where(crossed, eps, jnp.where(going_up, 2.0 * eps, 0.5 * eps))
        out_of_range = (new_eps > _STEP_SIZE_MAX) | (new_eps < _STEP_SIZE_MIN)
        new_eps = jnp.clip(new_eps, _STEP_SIZE_MIN, _STEP_SIZE_MAX).astype(dtype)
        return i + 1, loop_key, new_eps, going_up, crossed | out_of_range

    safe_eps = jnp.where(valid, step_size, 1.0)
    init = (jnp.zeros((), jnp.int32), key, safe_eps, jnp.zeros((), bool), ~valid)
    _, _, eps, _, _ = jax.lax.while_loop(cond, body, init)
    return jnp.where(valid, eps, step_size)


# ---------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------


class WindowSchedule(NamedTuple):
    """Stan's warm-up schedule, one entry per warm-up draw (NumPy arrays of length
    ``num_warmup``).

    Attributes:
        window_index: int32, index ``0, 1, ...`` of the slow window the draw belongs to, ``-1``
            in the initial and terminal buffers.
        in_window: bool, the draw is added to the mass-matrix estimator.
        is_window_end: bool, the inverse mass matrix is updated after this draw (and the step
            size re-initialized, dual averaging restarted).
    """

    window_index: np.ndarray
    in_window: np.ndarray
    is_window_end: np.ndarray


def build_schedule(
    num_warmup: int, init_buffer: int = 75, term_buffer: int = 50, base_window: int = 25
) -> WindowSchedule:
    """Stan's windowed-adaptation schedule.

    Rules (Stan's ``windowed_adaptation``): with fewer than 20 warm-up draws there are no slow
    windows. If ``init_buffer + base_window + term_buffer > num_warmup`` the buffers become
    ``int(0.15 * num_warmup)`` and ``int(0.1 * num_warmup)`` and the single base window takes
    the rest. The first window ends at ``init_buffer + base_window - 1``; after each window
    end the size doubles, and if the window after the next one would not end before the
    terminal buffer, the next window is stretched to end right before it.

    For ``num_warmup=1000``: 75 | 25, 50, 100, 200, 500 | 50.
    """
    n = int(num_warmup)
    window_index = np.full(n, -1, np.int32)
    is_window_end = np.zeros(n, bool)
    if n < 20:
        return WindowSchedule(window_index, window_index >= 0, is_window_end)
    if init_buffer + base_window + term_buffer > n:
        init_buffer = int(0.15 * n)
        term_buffer = int(0.1 * n)
        base_window = n - (init_buffer + term_buffer)
    last = n - term_buffer - 1  # last draw of the last slow window
    start, size, index = init_buffer, base_window, 0
    end = init_buffer + base_window - 1
    while True:
        window_index[start : end + 1] = index
        is_window_end[end] = True
        if end >= last:
            break
        size *= 2
        next_end = end + size
        if next_end + 2 * size >= n - term_buffer:
            next_end = last
        start, end, index = end + 1, next_end, index + 1
    return WindowSchedule(window_index, window_index >= 0, is_window_end)


class NutpieSchedule(NamedTuple):
    """nutpie's warm-up schedule, one entry per warm-up draw (NumPy arrays of length
    ``num_warmup``). Draw ``i`` has sample number ``i + 1``; the initial point is sample 0.

    Attributes:
        adapt_mass: bool, the draw goes to the estimators and the mass matrix may change
            (false in the final step-size-only phase).
        switch: bool, after adding this draw the background estimator replaces the foreground.
        foreground_start: int32, sample number of the oldest draw in the foreground window
            after this draw (used by the low-rank ring buffer).
        update: bool, the mass matrix is recomputed after this draw (every
            ``update_freq`` draws once three samples are available, and at every switch).
        first_update: bool, the first update: the step size is searched again and dual
            averaging restarted.
        capacity: ``()`` int, the largest foreground window (ring-buffer size for low rank).
        early_end: ``()`` int, sample number of the last draw of the early window (short
            switch frequency; the low-rank variant uses only the diagonal until then).
    """

    adapt_mass: np.ndarray
    switch: np.ndarray
    foreground_start: np.ndarray
    update: np.ndarray
    first_update: np.ndarray
    capacity: int
    early_end: int


def build_nutpie_schedule(
    num_warmup: int,
    *,
    early_window: float = 0.3,
    step_size_window: float = 0.15,
    switch_freq: int = 80,
    early_switch_freq: int = 10,
    update_freq: int = 1,
) -> NutpieSchedule:
    """nutpie's schedule (see the module docstring); switches and updates are decided from the
    draw index (as if every draw were kept), so they are the same for all chains."""
    n = int(num_warmup)
    early_end = int(early_window * n)
    final_start = n - int(step_size_window * n)
    adapt_mass = np.zeros(n, bool)
    switch = np.zeros(n, bool)
    foreground_start = np.zeros(n, np.int32)
    update = np.zeros(n, bool)
    first_update = np.zeros(n, bool)
    fg_start, bg_start = 0, 0  # sample numbers; the initial point (0) is in both
    fg_count, bg_count = 1, 1
    changed = False
    last_update = -1
    capacity = 1
    for i in range(n):
        sample = i + 1
        if i < final_start:
            adapt_mass[i] = True
            fg_count += 1
            bg_count += 1
            freq = early_switch_freq if i < early_end else switch_freq
            is_late = freq + i > final_start
            if bg_count >= freq and not is_late:
                switch[i] = True
                fg_start, fg_count = bg_start, bg_count
                bg_start, bg_count = sample + 1, 0
            if fg_count >= 3 and (switch[i] or i - last_update >= update_freq):
                update[i] = True
                last_update = i
                if not changed:
                    first_update[i] = True
                    changed = True
            capacity = max(capacity, sample - fg_start + 1)
        foreground_start[i] = fg_start
    return NutpieSchedule(
        adapt_mass, switch, foreground_start, update, first_update, capacity, early_end
    )


# ---------------------------------------------------------------------------------------------
# nutpie estimators
# ---------------------------------------------------------------------------------------------


def _diag_from_gradient(grad: jax.Array) -> jax.Array:
    """nutpie's initial diagonal ``1 / |grad|`` ``(d,)`` (1 where the gradient is 0 or not
    finite), clipped to ``[1e-10, 1e10]``."""
    inv = 1.0 / jnp.abs(grad)
    inv = jnp.where(jnp.isfinite(inv) & (inv > 0), inv, 1.0)
    return jnp.clip(inv, _DIAG_LOWER, _DIAG_UPPER).astype(grad.dtype)


def _diag_from_variances(
    draw_var: jax.Array, grad_var: jax.Array, fallback: jax.Array
) -> jax.Array:
    """``sqrt(draw_var / grad_var)`` ``(d,)``, ``fallback`` where it is not finite/positive."""
    diag = jnp.sqrt(draw_var / grad_var)
    diag = jnp.where(jnp.isfinite(diag) & (diag > 0), diag, fallback)
    return jnp.clip(diag, _DIAG_LOWER, _DIAG_UPPER)


class NutpieEstimatorState(NamedTuple):
    """Foreground and background Welford estimators of the draws and gradients (diagonal
    nutpie adaptation); each field is a :class:`WelfordState` over ``(d,)`` samples."""

    draws: WelfordState
    grads: WelfordState
    draws_background: WelfordState
    grads_background: WelfordState


class LowRankBuffer(NamedTuple):
    """Ring buffer of recent draws and gradients (low-rank nutpie adaptation).

    Attributes:
        draws: ``(capacity, d)``.
        grads: ``(capacity, d)``.
        sample: ``(capacity,)`` int32, sample number stored in each slot (``-1``: empty).
        good: ``(capacity,)`` bool, the slot holds a draw that counts (the chain moved).
    """

    draws: jax.Array
    grads: jax.Array
    sample: jax.Array
    good: jax.Array


def _spd_geometric_mean_eigh(
    draws: jax.Array, grads: jax.Array, n: jax.Array, reg: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Eigen-decomposition ``(values (m,), vectors (m, m))`` of the SPD ``S`` solving
    ``S B S = A`` for ``A = draws^T draws / n + reg I`` and ``B = grads^T grads / n + reg I``
    (``draws``, ``grads``: ``(N, m)``, centred and masked rows).

    ``S = A # B^{-1}`` is computed from factors only, so the condition number is never squared
    (forming ``B^{1/2} A B^{1/2}`` would lose everything below ``reg^2`` in float32):
    ``B = R^T R`` from the QR factorization of ``[grads / sqrt(n); sqrt(reg) I]``; the SVD of
    ``K = [draws / sqrt(n); sqrt(reg) I] R^T`` gives ``(R A R^T)^{1/2} = V Sigma V^T``; then
    ``S = G G^T`` with ``G = R^{-1} V Sigma^{1/2}``, and the SVD of ``G`` yields the
    eigenvalues of ``S`` as squared singular values (positive by construction).
    """
    m = draws.shape[1]
    dtype = draws.dtype
    root_reg = jnp.sqrt(reg) * jnp.eye(m, dtype=dtype)
    root_n = jnp.sqrt(n)
    factor_a = jnp.concatenate([draws / root_n, root_reg], axis=0)
    factor_b = jnp.concatenate([grads / root_n, root_reg], axis=0)
    r = jnp.linalg.qr(factor_b, mode="r")[:m, :m]
    _, sigma, vt = jnp.linalg.svd(factor_a @ r.T, full_matrices=False)
    g = jax.scipy.linalg.solve_triangular(r, vt.T * jnp.sqrt(sigma), lower=False)
    vecs, singular, _ = jnp.linalg.svd(g, full_matrices=False)
    vals = jnp.clip(singular**2, 1e-12, 1e12).astype(dtype)
    return vals, vecs


def low_rank_inverse_mass_matrix(
    draws: ArrayLike,
    grads: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    rank: int = 10,
    gamma: float = 1e-5,
    cutoff: float = 2.0,
    fallback: ArrayLike | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """nutpie's low-rank modified inverse mass matrix from a window of draws and gradients.

    Args:
        draws: ``(n, d)`` positions.
        grads: ``(n, d)`` log-density gradients at those positions.
        weights: ``(n,)`` 0/1 mask of the rows to use (all by default).
        rank: maximum number ``k`` of eigen-directions kept (static).
        gamma: regularization; the covariances in the scaled space get ``n * gamma`` added to
            their diagonal (nutpie's convention).
        cutoff: eigenvalues in ``[1 / cutoff, cutoff]`` are treated as 1 (dropped).
        fallback: ``(d,)`` diagonal used for the coordinates where ``sqrt(Var(x) /
            Var(grad))`` is not finite and positive (e.g. a coordinate that did not move in
            float32); ones by default.

    Returns:
        ``(inverse_mass_matrix (d, d), diag (d,), eigenvalues (k,), eigenvectors (d, k))``
        where ``diag = sqrt(Var(x) / Var(grad))`` and
        ``inverse_mass_matrix = D^{1/2} (I + U (Lambda - I) U^T) D^{1/2}``; eigenvalues that
        were not kept are reported as 1. ``k = min(rank, m)`` with ``m`` the subspace
        dimension ``min(d, 2 n)``.
    """
    draws = jnp.asarray(draws)
    grads = jnp.asarray(grads, draws.dtype)
    dtype = draws.dtype
    num_rows, dim = draws.shape
    w = jnp.ones((num_rows,), dtype) if weights is None else jnp.asarray(weights, dtype)
    n = jnp.maximum(jnp.sum(w), 1.0)

    def moments(values):
        mean = (w @ values) / n
        centered = (values - mean) * w[:, None]
        return centered, jnp.sum(centered**2, axis=0) / n

    draws_c, draw_var = moments(draws)
    grads_c, grad_var = moments(grads)
    fallback = jnp.ones((dim,), dtype) if fallback is None else jnp.asarray(fallback, dtype)
    diag = _diag_from_variances(draw_var, grad_var, fallback)
    scale = jnp.sqrt(diag)
    draws_s = draws_c / scale  # D^{-1/2} (x - mean)
    grads_s = grads_c * scale  # D^{1/2} (grad - mean)

    if dim <= 2 * num_rows:
        basis = None
        draws_p, grads_p = draws_s, grads_s
        m = dim
    else:
        # The covariances are the identity (times the regularization) outside the span of
        # the data, so the computation reduces to that subspace (orthonormal basis by QR).
        basis, _ = jnp.linalg.qr(jnp.concatenate([draws_s.T, grads_s.T], axis=1))
        draws_p, grads_p = draws_s @ basis, grads_s @ basis
        m = basis.shape[1]

    vals, vecs = _spd_geometric_mean_eigh(draws_p, grads_p, n, n * gamma)

    k = min(int(rank), m)
    log_vals = jnp.log(vals)
    eligible = (vals > cutoff) | (vals < 1.0 / cutoff)
    score = jnp.where(eligible, jnp.abs(log_vals), -1.0)
    _, index = jax.lax.top_k(score, k)
    kept = eligible[index]
    eigenvalues = jnp.where(kept, vals[index], 1.0)
    eigenvectors = vecs[:, index]
    if basis is not None:
        eigenvectors = basis @ eigenvectors
    correction = (eigenvectors * (eigenvalues - 1.0)) @ eigenvectors.T
    inverse_mass_matrix = (jnp.eye(dim, dtype=dtype) + correction) * jnp.outer(scale, scale)
    inverse_mass_matrix = 0.5 * (inverse_mass_matrix + inverse_mass_matrix.T)
    return inverse_mass_matrix, diag, eigenvalues, eigenvectors


# ---------------------------------------------------------------------------------------------
# Adaptation drivers
# ---------------------------------------------------------------------------------------------


class AdaptationState(NamedTuple):
    """Carry of the warm-up scan.

    Attributes:
        chain: ``NUTSState`` (or ``HMCState``) of the chain.
        step_size: ``()`` step size used by the next transition.
        inverse_mass_matrix: ``(d,)`` or ``(d, d)`` used by the next transition.
        dual_averaging: :class:`DualAveragingState`.
        estimator: mass-matrix estimator: a :class:`WelfordState` (Stan), a
            :class:`NutpieEstimatorState` (nutpie diagonal) or a :class:`LowRankBuffer`
            (nutpie low rank).
    """

    chain: Any
    step_size: jax.Array
    inverse_mass_matrix: jax.Array
    dual_averaging: DualAveragingState
    estimator: Any


class AdaptationInfo(NamedTuple):
    """Per-draw diagnostics of the warm-up (each with a leading ``num_warmup`` axis).

    Attributes:
        kernel_info: the stacked ``NUTSInfo`` / ``HMCInfo`` of the transitions.
        step_size: ``(num_warmup,)`` step size used by each transition.
    """

    kernel_info: Any
    step_size: jax.Array


class Adaptation(NamedTuple):
    """A warm-up procedure bound to a target.

    ``run`` is the whole warm-up as one ``lax.scan``. Its scan body is also exposed in pieces,
    so that a driver can embed the warm-up in a larger loop that calls the kernel once per
    iteration (:mod:`jppl.mcmc.chains` fuses warm-up and sampling this way): for transition
    ``i`` with per-step key ``key_i`` and flags ``tuple(a[i] for a in schedule)``::

        key_step, key_adapt = jax.random.split(key_i)
        state = before(state, key_adapt, flags)                 # step-size search if due
        params = make_params(state.step_size, state.inverse_mass_matrix)
        chain, info = step(key_step, state.chain, params)
        state = after(state, key_adapt, flags, chain, info.acceptance_rate)

    and after the last transition ``make_params(final_step_size(state),
    state.inverse_mass_matrix)`` are the tuned parameters.

    Attributes:
        init: ``(position (d,), inverse_mass_matrix=None, step_size=None) ->
            AdaptationState``; no random numbers are used.
        run: ``(key, position_or_state) -> (chain_state, params, AdaptationInfo)``.
            ``position_or_state`` is a ``(d,)`` position, a ``NUTSState``/``HMCState`` or an
            :class:`AdaptationState`. ``params`` is a ``NUTSParams`` (or ``HMCParams``) with the
            final step size and inverse mass matrix.
        step: the kernel transition ``step(key, state, params) -> (state, info)``.
        make_params: ``(step_size, inverse_mass_matrix) -> NUTSParams | HMCParams``.
        num_warmup: number of warm-up transitions.
        start: ``position_or_state -> AdaptationState`` (``init`` for a position or kernel
            state; an :class:`AdaptationState` is returned as is).
        schedule: tuple of NumPy arrays of length ``num_warmup``: the per-transition flags.
        before: ``(state, key, flags) -> state``: before a transition (searches the step size
            and restarts dual averaging where the schedule says so).
        after: ``(state, key, flags, chain, acceptance_rate ()) -> state`` after a transition
            to ``chain``: dual averaging, mass-matrix estimation and updates.
        final_step_size: ``state -> ()``: the tuned step size after the last transition.
    """

    init: Callable[..., AdaptationState]
    run: Callable[[jax.Array, Any], tuple[Any, Any, AdaptationInfo]]
    step: Callable
    make_params: Callable
    num_warmup: int
    start: Callable[[Any], AdaptationState]
    schedule: tuple[np.ndarray, ...]
    before: Callable[..., AdaptationState]
    after: Callable[..., AdaptationState]
    final_step_size: Callable[[AdaptationState], jax.Array]


def _build_kernel(
    logdensity_fn: LogDensityFn,
    kernel: str,
    max_tree_depth: int,
    divergence_threshold: float,
    num_integration_steps: int,
) -> tuple[Callable, Callable, Callable]:
    """``(init_fn, step_fn, make_params)`` for ``kernel`` in ``{"nuts", "hmc"}``."""
    if kernel == "nuts":
        step = nuts.build_kernel(
            logdensity_fn, max_tree_depth=max_tree_depth, divergence_threshold=divergence_threshold
        )
        return (
            lambda position: nuts.init(position, logdensity_fn),
            step,
            lambda step_size, inverse_mass_matrix: nuts.NUTSParams(step_size, inverse_mass_matrix),
        )
    if kernel == "hmc":
        step = hmc.build_kernel(logdensity_fn, divergence_threshold=divergence_threshold)
        return (
            lambda position: hmc.init(position, logdensity_fn),
            step,
            lambda step_size, inverse_mass_matrix: hmc.HMCParams(
                step_size, inverse_mass_matrix, num_integration_steps
            ),
        )
    raise ValueError(f"kernel must be 'nuts' or 'hmc', got {kernel!r}")


def _coerce_state(init: Callable[..., AdaptationState], position_or_state: Any) -> AdaptationState:
    if isinstance(position_or_state, AdaptationState):
        return position_or_state
    if isinstance(position_or_state, (nuts.NUTSState, hmc.HMCState)):
        state = init(position_or_state.position)
        return state._replace(chain=position_or_state)
    return init(position_or_state)


def _search_flags(restart: np.ndarray, adapt_step_size: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(search_before, search_after)`` flags of the step-size search for a schedule whose
    transitions in ``restart`` change the mass matrix: the search runs before the first
    transition and before the transition following each change (so that the warm-up program
    holds one search, next to the kernel step). A change at the last transition can only be
    followed by a search after it (``search_after``, all false otherwise)."""
    n = len(restart)
    before = np.zeros(n, bool)
    after = np.zeros(n, bool)
    if adapt_step_size and n > 0:
        before[0] = True
        before[1:] = restart[:-1]
        after[-1] = restart[-1]
    return before, after


def _search_restart(
    search: Callable, key: jax.Array, state: AdaptationState, due: jax.Array
) -> AdaptationState:
    """Under ``lax.cond(due)``: search a step size for ``state.chain`` and the current inverse
    mass matrix from ``state.step_size``, and restart dual averaging from it."""

    def restart():
        step_size = search(key, state.chain, state.inverse_mass_matrix, state.step_size)
        return step_size, dual_averaging_init(step_size)

    step_size, da = jax.lax.cond(due, restart, lambda: (state.step_size, state.dual_averaging))
    return state._replace(step_size=step_size, dual_averaging=da)


def _make_run(
    start: Callable[[Any], AdaptationState],
    step: Callable,
    make_params: Callable,
    before: Callable,
    after: Callable,
    final_step_size: Callable,
    schedule: tuple[np.ndarray, ...],
    progress_fn: Callable | None,
) -> Callable:
    """``run(key, position_or_state)``: the warm-up as one ``lax.scan`` (see
    :class:`Adaptation` for the body)."""
    num_steps = len(schedule[0])

    def body(state: AdaptationState, xs):
        index, key, *flags = xs
        key_step, key_adapt = jax.random.split(key)
        state = before(state, key_adapt, flags)
        params = make_params(state.step_size, state.inverse_mass_matrix)
        chain, info = step(key_step, state.chain, params)
        state = after(state, key_adapt, flags, chain, info.acceptance_rate)
        out = AdaptationInfo(info, jnp.asarray(params.step_size))
        if progress_fn is not None:
            progress_fn(index, out)
        return state, out

    def run(key: jax.Array, position_or_state: Any):
        state = start(position_or_state)
        keys = jax.random.split(key, num_steps)
        flags = tuple(jnp.asarray(s) for s in schedule)
        xs = (jnp.arange(num_steps, dtype=jnp.int32), keys) + flags
        state, infos = jax.lax.scan(body, state, xs)
        params = make_params(final_step_size(state), state.inverse_mass_matrix)
        return state.chain, params, infos

    return run


def _assemble(
    init: Callable,
    step: Callable,
    make_params: Callable,
    before: Callable,
    after: Callable,
    adapt_step_size: bool,
    num_warmup: int,
    flags: Any,
    progress_fn: Callable | None,
) -> Adaptation:
    """The :class:`Adaptation` of a warm-up scheme from its scan-body pieces."""

    def final_step_size(state: AdaptationState) -> jax.Array:
        if adapt_step_size:
            return dual_averaging_final(state.dual_averaging)
        return state.step_size

    start = lambda position_or_state: _coerce_state(init, position_or_state)
    run = _make_run(start, step, make_params, before, after, final_step_size, flags, progress_fn)
    return Adaptation(
        init=init,
        run=run,
        step=step,
        make_params=make_params,
        num_warmup=num_warmup,
        start=start,
        schedule=flags,
        before=before,
        after=after,
        final_step_size=final_step_size,
    )


def window_adaptation(
    logdensity_fn: LogDensityFn,
    num_warmup: int,
    *,
    kernel: str = "nuts",
    dense_mass: bool = False,
    target_accept_prob: float = 0.8,
    initial_step_size: float = 1.0,
    max_tree_depth: int = 10,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = True,
    progress_fn: Callable[[jax.Array, AdaptationInfo], None] | None = None,
    init_buffer: int = 75,
    term_buffer: int = 50,
    base_window: int = 25,
    divergence_threshold: float = 1000.0,
    num_integration_steps: int = 10,
    block_mask: ArrayLike | None = None,
) -> Adaptation:
    """Stan's windowed warm-up (see the module docstring).

    Args:
        logdensity_fn: ``(d,) -> ()`` unnormalized log density.
        num_warmup: number of warm-up transitions (static).
        kernel: ``"nuts"`` or ``"hmc"`` (fixed ``num_integration_steps``).
        dense_mass: adapt a dense ``(d, d)`` inverse mass matrix instead of a diagonal.
        target_accept_prob: target of dual averaging.
        initial_step_size: where the initial step-size search starts.
        max_tree_depth: NUTS tree-depth limit.
        adapt_step_size: tune the step size (otherwise ``initial_step_size`` is kept).
        adapt_mass_matrix: tune the inverse mass matrix (otherwise it stays as initialized,
            and dual averaging runs over the whole warm-up without restarts).
        progress_fn: optional ``progress_fn(step_index, info)`` called inside the scan body
            after each transition with the :class:`AdaptationInfo` of that transition (kernel
            info and the step size it used), e.g. to emit a throttled host callback.
        init_buffer, term_buffer, base_window: Stan's schedule parameters.
        divergence_threshold: energy error counted as a divergence.
        num_integration_steps: leapfrog steps of the HMC kernel.
        block_mask: optional ``(d, d)`` bool mask (static, NumPy) of a block-diagonal dense
            metric (requires ``dense_mass``). The dense matrix is adapted with the Stan
            schedule of the first ``num_warmup - n_tune`` draws (``n_tune = max(1,
            round(0.1 * num_warmup))``), so each block's estimate is what a per-block
            estimator would give; then it is masked, and the last ``n_tune`` draws re-tune the
            step size (search from the dual-averaged step size, then dual averaging) for the
            masked metric. The initial matrix is masked too.

    Returns:
        An :class:`Adaptation`; ``run(key, position_or_state) -> (state, params, infos)``.
    """
    num_warmup = int(num_warmup)
    init_chain, step, make_params = _build_kernel(
        logdensity_fn, kernel, max_tree_depth, divergence_threshold, num_integration_steps
    )
    mask = None
    if block_mask is not None:
        if not dense_mass:
            raise ValueError("block_mask needs dense_mass=True.")
        mask = np.asarray(block_mask, bool)
    apply_mask = np.zeros(num_warmup, bool)
    if adapt_mass_matrix and mask is not None and num_warmup >= 20:
        n_tune = max(1, int(round(0.1 * num_warmup)))
        dense_part = build_schedule(num_warmup - n_tune, init_buffer, term_buffer, base_window)
        pad = lambda a, value: np.concatenate([a, np.full(n_tune, value, a.dtype)])
        schedule = WindowSchedule(
            pad(dense_part.window_index, -1),
            pad(dense_part.in_window, False),
            pad(dense_part.is_window_end, False),
        )
        apply_mask[num_warmup - n_tune - 1] = True
    elif adapt_mass_matrix:
        schedule = build_schedule(num_warmup, init_buffer, term_buffer, base_window)
    else:
        schedule = WindowSchedule(
            np.full(num_warmup, -1, np.int32),
            np.zeros(num_warmup, bool),
            np.zeros(num_warmup, bool),
        )
    search_before, search_after = _search_flags(
        schedule.is_window_end | apply_mask, adapt_step_size
    )
    flags = (schedule.in_window, schedule.is_window_end, apply_mask, search_before, search_after)
    da_options = dict(target_accept_prob=target_accept_prob)

    def init(
        position: ArrayLike,
        inverse_mass_matrix: ArrayLike | None = None,
        step_size: ArrayLike | None = None,
    ) -> AdaptationState:
        chain = init_chain(jnp.asarray(position))
        dim = chain.position.shape[0]
        dtype = chain.position.dtype
        if inverse_mass_matrix is None:
            inverse_mass_matrix = jnp.eye(dim, dtype=dtype) if dense_mass else jnp.ones(dim, dtype)
        inverse_mass_matrix = jnp.asarray(inverse_mass_matrix, dtype)
        if mask is not None:
            inverse_mass_matrix = jnp.where(mask, inverse_mass_matrix, 0.0)
        step_size = jnp.asarray(initial_step_size if step_size is None else step_size, dtype)
        return AdaptationState(
            chain=chain,
            step_size=step_size,
            inverse_mass_matrix=inverse_mass_matrix,
            dual_averaging=dual_averaging_init(step_size),
            estimator=welford_init(dim, dense=inverse_mass_matrix.ndim == 2, dtype=dtype),
        )

    def search(key, chain, inverse_mass_matrix, step_size):
        return find_reasonable_step_size(
            key,
            chain,
            logdensity_fn,
            inverse_mass_matrix,
            step_size,
            target_accept_prob=0.8,
        )

    def before(state: AdaptationState, key: jax.Array, flags) -> AdaptationState:
        if not adapt_step_size:
            return state
        return _search_restart(search, key, state, flags[3])

    def after(state: AdaptationState, key: jax.Array, flags, chain, acceptance_rate):
        in_window, is_window_end, masking, _, search_now = flags
        da, step_size = state.dual_averaging, state.step_size
        if adapt_step_size:
            da = dual_averaging_update(da, acceptance_rate, **da_options)
            step_size = jnp.exp(da.log_step_size)
        estimator, inverse_mass_matrix = state.estimator, state.inverse_mass_matrix
        if adapt_mass_matrix:
            estimator = jax.lax.cond(
                in_window, lambda e: welford_update(e, chain.position), lambda e: e, estimator
            )

            def end_window(operands):
                estimator, inverse_mass_matrix = operands
                cov, count = welford_final(estimator)
                new_inverse = regularize_inverse_mass_matrix(cov, count)
                inverse_mass_matrix = jnp.where(count > 1, new_inverse, inverse_mass_matrix)
                return jax.tree.map(jnp.zeros_like, estimator), inverse_mass_matrix

            estimator, inverse_mass_matrix = jax.lax.cond(
                is_window_end,
                end_window,
                lambda operands: operands,
                (estimator, inverse_mass_matrix),
            )
        if mask is not None and apply_mask.any():
            final = dual_averaging_final(da) if adapt_step_size else step_size
            inverse_mass_matrix, step_size = jax.lax.cond(
                masking,
                lambda: (jnp.where(mask, inverse_mass_matrix, 0.0), final),
                lambda: (inverse_mass_matrix, step_size),
            )
        state = AdaptationState(chain, step_size, inverse_mass_matrix, da, estimator)
        if search_after.any():  # a window ends at the last transition (term_buffer=0)
            state = _search_restart(search, jax.random.fold_in(key, 1), state, search_now)
        return state

    return _assemble(
        init, step, make_params, before, after, adapt_step_size, num_warmup, flags, progress_fn
    )


def nutpie_adaptation(
    logdensity_fn: LogDensityFn,
    num_warmup: int,
    *,
    low_rank: bool = False,
    rank: int = 10,
    kernel: str = "nuts",
    target_accept_prob: float = 0.8,
    initial_step_size: float = 0.1,
    max_tree_depth: int = 10,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = True,
    progress_fn: Callable[[jax.Array, Any], None] | None = None,
    early_window: float = 0.3,
    step_size_window: float = 0.15,
    switch_freq: int = 80,
    early_switch_freq: int = 10,
    mass_matrix_update_freq: int = 1,
    gamma: float = 1e-5,
    eigval_cutoff: float = 2.0,
    divergence_threshold: float = 1000.0,
    num_integration_steps: int = 10,
) -> Adaptation:
    """nutpie's warm-up: gradient-informed diagonal (optionally low-rank) mass matrix.

    See the module docstring for the algorithm. The interface is that of
    :func:`window_adaptation`; the diagonal case returns a ``(d,)`` inverse mass matrix, the
    low-rank case a dense ``(d, d)`` one.

    Args:
        logdensity_fn: ``(d,) -> ()`` unnormalized log density.
        num_warmup: number of warm-up transitions (static).
        low_rank: add the low-rank correction (returns a dense matrix).
        rank: maximum number of eigen-directions of the correction.
        kernel: as in :func:`window_adaptation`, as are ``target_accept_prob``,
            ``initial_step_size``, ``max_tree_depth``, ``adapt_step_size``,
            ``adapt_mass_matrix``, ``progress_fn``, ``divergence_threshold`` and
            ``num_integration_steps``.
        early_window: fraction of the warm-up with the short switch frequency (with
            ``low_rank``, also the part that uses only the diagonal, see the module docstring).
        step_size_window: final fraction of the warm-up that only tunes the step size.
        switch_freq, early_switch_freq: draws between estimator switches (late / early).
        mass_matrix_update_freq: draws between mass-matrix recomputations.
        gamma, eigval_cutoff: regularization and eigenvalue cutoff of the low-rank estimate.

    Returns:
        An :class:`Adaptation`.
    """
    num_warmup = int(num_warmup)
    init_chain, step, make_params = _build_kernel(
        logdensity_fn, kernel, max_tree_depth, divergence_threshold, num_integration_steps
    )
    schedule = build_nutpie_schedule(
        num_warmup,
        early_window=early_window,
        step_size_window=step_size_window,
        switch_freq=switch_freq,
        early_switch_freq=early_switch_freq,
        update_freq=mass_matrix_update_freq,
    )
    if not adapt_mass_matrix:
        off = np.zeros(num_warmup, bool)
        schedule = schedule._replace(adapt_mass=off, switch=off, update=off, first_update=off)
    capacity = int(schedule.capacity)
    early_end = int(schedule.early_end)
    da_options = dict(target_accept_prob=target_accept_prob)

    def init(
        position: ArrayLike,
        inverse_mass_matrix: ArrayLike | None = None,
        step_size: ArrayLike | None = None,
    ) -> AdaptationState:
        chain = init_chain(jnp.asarray(position))
        dim = chain.position.shape[0]
        dtype = chain.position.dtype
        if inverse_mass_matrix is None:
            if adapt_mass_matrix:
                inverse_mass_matrix = _diag_from_gradient(chain.logdensity_grad)
            else:
                inverse_mass_matrix = jnp.ones(dim, dtype)
            if low_rank:
                inverse_mass_matrix = jnp.diag(inverse_mass_matrix)
        inverse_mass_matrix = jnp.asarray(inverse_mass_matrix, dtype)
        if low_rank and inverse_mass_matrix.ndim == 1:
            inverse_mass_matrix = jnp.diag(inverse_mass_matrix)
        step_size = jnp.asarray(initial_step_size if step_size is None else step_size, dtype)
        if low_rank:
            slot = 0  # the initial point is sample 0
            estimator = LowRankBuffer(
                draws=jnp.zeros((capacity, dim), dtype).at[slot].set(chain.position),
                grads=jnp.zeros((capacity, dim), dtype).at[slot].set(chain.logdensity_grad),
                sample=jnp.full((capacity,), -1, jnp.int32).at[slot].set(0),
                good=jnp.zeros((capacity,), bool).at[slot].set(True),
            )
        else:
            empty = welford_init(dim, dtype=dtype)
            draws = welford_update(empty, chain.position)
            grads = welford_update(empty, chain.logdensity_grad)
            estimator = NutpieEstimatorState(draws, grads, draws, grads)
        return AdaptationState(
            chain=chain,
            step_size=step_size,
            inverse_mass_matrix=inverse_mass_matrix,
            dual_averaging=dual_averaging_init(step_size),
            estimator=estimator,
        )

    def search(key, chain, inverse_mass_matrix, step_size):
        return find_reasonable_step_size(
            key,
            chain,
            logdensity_fn,
            inverse_mass_matrix,
            step_size,
            target_accept_prob=target_accept_prob,
        )

    def diag_update(estimator: NutpieEstimatorState, chain, good, switch, update, inverse):
        def add(e: WelfordState, value):
            return _tree_where(good, welford_update(e, value), e)

        estimator = NutpieEstimatorState(
            add(estimator.draws, chain.position),
            add(estimator.grads, chain.logdensity_grad),
            add(estimator.draws_background, chain.position),
            add(estimator.grads_background, chain.logdensity_grad),
        )
        empty = jax.tree.map(jnp.zeros_like, estimator.draws)
        switched = NutpieEstimatorState(
            estimator.draws_background, estimator.grads_background, empty, empty
        )
        estimator = _tree_where(switch, switched, estimator)
        draw_var, count = welford_final(estimator.draws)
        grad_var, _ = welford_final(estimator.grads)
        new_inverse = _diag_from_variances(draw_var, grad_var, inverse)
        inverse = jnp.where(update & (count >= 3), new_inverse, inverse)
        return estimator, inverse

    def low_rank_update(buffer: LowRankBuffer, chain, good, sample, fg_start, update, inverse):
        slot = sample % capacity
        buffer = LowRankBuffer(
            draws=buffer.draws.at[slot].set(chain.position),
            grads=buffer.grads.at[slot].set(chain.logdensity_grad),
            sample=buffer.sample.at[slot].set(sample),
            good=buffer.good.at[slot].set(good),
        )
        weights = (buffer.sample >= fg_start) & (buffer.sample <= sample) & buffer.good

        def recompute(inverse):
            new_inverse, diag, *_ = low_rank_inverse_mass_matrix(
                buffer.draws,
                buffer.grads,
                weights,
                rank=rank,
                gamma=gamma,
                cutoff=eigval_cutoff,
                fallback=jnp.diag(inverse),
            )
            # During the early window the chain may still be drifting in from the tails: the
            # draws are not stationary, and a correction fitted to them can shrink the
            # directions not yet explored by orders of magnitude and freeze the chain there.
            # Use the diagonal of the same window until the early window ends (as the
            # diagonal scheme does throughout), or when the dense matrix is not positive
            # definite in floating point.
            positive = jnp.all(jnp.isfinite(jnp.linalg.cholesky(new_inverse)))
            use_low_rank = (sample > early_end) & positive
            new_inverse = jnp.where(use_low_rank, new_inverse, jnp.diag(diag))
            return jnp.where(jnp.sum(weights) >= 3, new_inverse, inverse)

        inverse = jax.lax.cond(update, recompute, lambda inverse: inverse, inverse)
        return buffer, inverse

    search_before, search_after = _search_flags(schedule.first_update, adapt_step_size)
    flags = (
        schedule.adapt_mass,
        schedule.switch,
        schedule.foreground_start,
        schedule.update,
        search_before,
        search_after,
        np.arange(1, num_warmup + 1, dtype=np.int32),  # sample number of each draw
    )

    def before(state: AdaptationState, key: jax.Array, flags) -> AdaptationState:
        if not adapt_step_size:
            return state
        return _search_restart(search, key, state, flags[4])

    def after(state: AdaptationState, key: jax.Array, flags, chain, acceptance_rate):
        adapt_mass, switch, fg_start, update, _, search_now, sample = flags
        da, step_size = state.dual_averaging, state.step_size
        if adapt_step_size:
            da = dual_averaging_update(da, acceptance_rate, **da_options)
            step_size = jnp.exp(da.log_step_size)
        estimator, inverse = state.estimator, state.inverse_mass_matrix
        if adapt_mass_matrix:
            moved = jnp.any(chain.position != state.chain.position)
            finite = jnp.all(jnp.isfinite(chain.position)) & jnp.all(
                jnp.isfinite(chain.logdensity_grad)
            )
            good = moved & finite
            if low_rank:
                update_fn = lambda e, inv: low_rank_update(
                    e, chain, good, sample, fg_start, update, inv
                )
            else:
                update_fn = lambda e, inv: diag_update(e, chain, good, switch, update, inv)
            estimator, inverse = jax.lax.cond(
                adapt_mass, update_fn, lambda e, inv: (e, inv), estimator, inverse
            )
        state = AdaptationState(chain, step_size, inverse, da, estimator)
        if search_after.any():  # the first update happens at the last transition
            state = _search_restart(search, jax.random.fold_in(key, 1), state, search_now)
        return state

    return _assemble(
        init, step, make_params, before, after, adapt_step_size, num_warmup, flags, progress_fn
    )
