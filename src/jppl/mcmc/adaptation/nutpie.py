r"""nutpie's warm-up: a gradient-informed diagonal (optionally low-rank) mass matrix.

Seyboldt, Carlson & Carpenter, "nutpie" (2026), and the 2023 nutpie note on mass-matrix
adaptation. The diagonal inverse mass matrix is chosen to minimize the Fisher divergence
between the target and the affinely transformed standard normal, which for a diagonal
transform gives

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
and the matrix is :func:`~jppl.mcmc.adaptation.low_rank.low_rank_inverse_mass_matrix` of it
(dense ``(d, d)``). Until the early window (the first 30%) ends, and whenever that dense matrix
is not positive definite in floating point, only the diagonal of the window is used: a chain
still drifting in from the tails gives a non-stationary window, and a correction fitted to it
can shrink the directions the chain has not explored by orders of magnitude and freeze it
there (seen on posteriordb's arma11 from uniform initial points).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jppl.mcmc.adaptation.base import (
    Adaptation,
    AdaptationInfo,
    AdaptationScheme,
    AdaptationState,
    TunableKernel,
    make_adaptation,
    nuts_kernel,
    search_restart,
    tuned_parameters,
)
from jppl.mcmc.adaptation.low_rank import LowRankBuffer, low_rank_inverse_mass_matrix
from jppl.mcmc.adaptation.mass_matrix import (
    WelfordState,
    diag_from_gradient,
    diag_from_variances,
    welford_final,
    welford_init,
    welford_update,
)
from jppl.mcmc.adaptation.schedules import build_nutpie_schedule, search_flags
from jppl.mcmc.adaptation.step_size import (
    dual_averaging_init,
    dual_averaging_update,
)
from jppl.mcmc.hmc import LogDensityFn

__all__ = ["NutpieEstimatorState", "nutpie_adaptation", "nutpie_scheme"]


class NutpieEstimatorState(NamedTuple):
    """Foreground and background Welford estimators of the draws and gradients (diagonal
    nutpie adaptation); each field is a :class:`WelfordState` over ``(d,)`` samples."""

    draws: WelfordState
    grads: WelfordState
    draws_background: WelfordState
    grads_background: WelfordState


def _tree_where(pred: ArrayLike, on_true: Any, on_false: Any) -> Any:
    """Leaf-wise ``where(pred, a, b)`` over two pytrees of the same structure."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def nutpie_scheme(
    logdensity_fn: LogDensityFn,
    num_warmup: int,
    *,
    low_rank: bool = False,
    rank: int = 10,
    target_accept_prob: float = 0.8,
    initial_step_size: float = 0.1,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = True,
    early_window: float = 0.3,
    step_size_window: float = 0.15,
    switch_freq: int = 80,
    early_switch_freq: int = 10,
    mass_matrix_update_freq: int = 1,
    gamma: float = 1e-5,
    eigval_cutoff: float = 2.0,
) -> AdaptationScheme:
    """nutpie's warm-up as a kernel-free :class:`AdaptationScheme`; the diagonal case tunes a
    ``(d,)`` inverse mass matrix, the low-rank case a dense ``(d, d)`` one.

    Args:
        logdensity_fn: ``(d,) -> ()`` unnormalized log density (for the step-size search).
        num_warmup: number of warm-up transitions (static).
        low_rank: add the low-rank correction (tunes a dense matrix).
        rank: maximum number of eigen-directions of the correction.
        target_accept_prob, initial_step_size, adapt_step_size, adapt_mass_matrix: as in
            :func:`~jppl.mcmc.adaptation.window.window_scheme`.
        early_window: fraction of the warm-up with the short switch frequency (with
            ``low_rank``, also the part that uses only the diagonal, see the module docstring).
        step_size_window: final fraction of the warm-up that only tunes the step size.
        switch_freq, early_switch_freq: draws between estimator switches (late / early).
        mass_matrix_update_freq: draws between mass-matrix recomputations.
        gamma, eigval_cutoff: regularization and eigenvalue cutoff of the low-rank estimate.
    """
    num_warmup = int(num_warmup)
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

    def init(chain, inverse_mass_matrix=None, step_size=None) -> AdaptationState:
        dim = chain.position.shape[0]
        dtype = chain.position.dtype
        if inverse_mass_matrix is None:
            if adapt_mass_matrix:
                inverse_mass_matrix = diag_from_gradient(chain.logdensity_grad)
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

    search = lambda key, state, due: search_restart(
        logdensity_fn, key, state, due, target_accept_prob
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
        new_inverse = diag_from_variances(draw_var, grad_var, inverse)
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

    search_before, search_after = search_flags(schedule.first_update, adapt_step_size)
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
        return search(key, state, flags[4])

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
            state = search(jax.random.fold_in(key, 1), state, search_now)
        return state

    final = functools.partial(tuned_parameters, adapt_step_size=adapt_step_size)
    return AdaptationScheme(init=init, before=before, after=after, final=final, schedule=flags)


def nutpie_adaptation(
    logdensity_fn: LogDensityFn,
    num_warmup: int,
    *,
    kernel: TunableKernel | None = None,
    progress_fn: Callable[[jax.Array, AdaptationInfo], None] | None = None,
    **options,
) -> Adaptation:
    """nutpie's warm-up of ``kernel`` (see the module docstring).

    The interface is that of :func:`~jppl.mcmc.adaptation.window_adaptation`; ``options`` are
    those of :func:`nutpie_scheme` (``low_rank``, ``rank``, ``target_accept_prob``,
    ``initial_step_size``, ``adapt_step_size``, ``adapt_mass_matrix``, ``early_window``,
    ``step_size_window``, ``switch_freq``, ``early_switch_freq``,
    ``mass_matrix_update_freq``, ``gamma``, ``eigval_cutoff``).

    Returns:
        An :class:`Adaptation`; the diagonal case returns a ``(d,)`` inverse mass matrix, the
        low-rank case a dense ``(d, d)`` one.
    """
    scheme = nutpie_scheme(logdensity_fn, num_warmup, **options)
    kernel = nuts_kernel(logdensity_fn) if kernel is None else kernel
    return make_adaptation(scheme, kernel, progress_fn)
