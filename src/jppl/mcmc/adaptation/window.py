"""Stan's windowed warm-up (the Stan reference manual, "HMC algorithm parameters",
"Automatic parameter tuning").

* The step size is tuned by Nesterov dual averaging of ``log(step_size)`` towards the target
  mean acceptance statistic (0.8 by default; ``gamma = 0.05``, ``t0 = 10``, ``kappa = 0.75``,
  shrinkage point ``mu = log(10 * step_size)``); the final step size is
  ``exp(log_step_size_avg)``.
* The warm-up is split into a fast initial buffer (75 draws), a series of slow windows whose
  size doubles (25, 50, 100, ...; the last one is stretched to reach the terminal buffer) and a
  fast terminal buffer (50 draws). When ``num_warmup < init_buffer + base_window +
  term_buffer`` (150 with the defaults) the three stages take 15% / 75% / 10% of the warm-up;
  below 20 warm-up draws only the step size is adapted (see
  :func:`~jppl.mcmc.adaptation.schedules.build_schedule`).
* During each slow window a Welford estimator accumulates the draws; at the window end the
  inverse mass matrix becomes ``(n / (n + 5)) * var + 1e-3 * (5 / (n + 5))`` (times the
  identity for a dense metric), the estimator is reset, the step size is re-initialized by
  the doubling/halving heuristic
  (:func:`~jppl.mcmc.adaptation.step_size.find_reasonable_step_size`) and dual averaging is
  restarted. The same heuristic sets the step size before the first draw.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

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
from jppl.mcmc.adaptation.mass_matrix import (
    regularize_inverse_mass_matrix,
    welford_final,
    welford_init,
    welford_update,
)
from jppl.mcmc.adaptation.schedules import (
    build_block_schedule,
    build_schedule,
    no_windows,
    search_flags,
)
from jppl.mcmc.adaptation.step_size import (
    dual_averaging_final,
    dual_averaging_init,
    dual_averaging_update,
)
from jppl.mcmc.hmc import LogDensityFn

__all__ = ["window_adaptation", "window_scheme"]


def window_scheme(
    logdensity_fn: LogDensityFn,
    num_warmup: int,
    *,
    dense_mass: bool = False,
    target_accept_prob: float = 0.8,
    initial_step_size: float = 1.0,
    adapt_step_size: bool = True,
    adapt_mass_matrix: bool = True,
    init_buffer: int = 75,
    term_buffer: int = 50,
    base_window: int = 25,
    block_mask: ArrayLike | None = None,
    regularize_mass_matrix: bool = True,
    find_heuristic_step_size: bool = True,
) -> AdaptationScheme:
    """Stan's windowed warm-up as a kernel-free :class:`AdaptationScheme`.

    Args:
        logdensity_fn: ``(d,) -> ()`` unnormalized log density (for the step-size search).
        num_warmup: number of warm-up transitions (static).
        dense_mass: adapt a dense ``(d, d)`` inverse mass matrix instead of a diagonal.
        target_accept_prob: target of dual averaging.
        initial_step_size: where the initial step-size search starts.
        adapt_step_size: tune the step size (otherwise ``initial_step_size`` is kept).
        adapt_mass_matrix: tune the inverse mass matrix (otherwise it stays as initialized,
            and dual averaging runs over the whole warm-up without restarts).
        init_buffer, term_buffer, base_window: Stan's schedule parameters.
        block_mask: optional ``(d, d)`` bool mask (static, NumPy) of a block-diagonal dense
            metric (requires ``dense_mass``). The dense matrix is adapted with the Stan
            schedule of the first ``num_warmup - n_tune`` draws (``n_tune = max(1,
            round(0.1 * num_warmup))``), so each block's estimate is what a per-block
            estimator would give; then it is masked, and the last ``n_tune`` draws re-tune the
            step size (search from the dual-averaged step size, then dual averaging) for the
            masked metric. The initial matrix is masked too.
        regularize_mass_matrix: Stan's shrinkage of each window's estimate, ``(n / (n + 5)) *
            cov + 1e-3 * (5 / (n + 5))``; ``False``: the plain sample (co)variance (NumPyro's
            ``regularize_mass_matrix=False``).
        find_heuristic_step_size: search a step size (doubling/halving heuristic) before the
            first transition and after each change of the metric (Stan); ``False``: dual
            averaging restarts there from the current step size, unsearched (NumPyro's
            ``find_heuristic_step_size=False``).
    """
    num_warmup = int(num_warmup)
    mask = None
    if block_mask is not None:
        if not dense_mass:
            raise ValueError("block_mask needs dense_mass=True.")
        mask = np.asarray(block_mask, bool)
    apply_mask = np.zeros(num_warmup, bool)
    if adapt_mass_matrix and mask is not None:
        schedule, apply_mask = build_block_schedule(
            num_warmup, init_buffer, term_buffer, base_window
        )
    elif adapt_mass_matrix:
        schedule = build_schedule(num_warmup, init_buffer, term_buffer, base_window)
    else:
        schedule = no_windows(num_warmup)
    search_before, search_after = search_flags(schedule.is_window_end | apply_mask, adapt_step_size)
    flags = (schedule.in_window, schedule.is_window_end, apply_mask, search_before, search_after)
    da_options = dict(target_accept_prob=target_accept_prob)

    def init(chain, inverse_mass_matrix=None, step_size=None) -> AdaptationState:
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

    def search(key, state, due):
        if find_heuristic_step_size:
            # Stan searches with its own fixed target of 0.8, whatever dual averaging aims at.
            return search_restart(logdensity_fn, key, state, due, 0.8)
        da = jax.lax.cond(
            due,
            lambda: dual_averaging_init(state.step_size),
            lambda: state.dual_averaging,
        )
        return state._replace(dual_averaging=da)

    def before(state: AdaptationState, key: jax.Array, flags) -> AdaptationState:
        if not adapt_step_size:
            return state
        return search(key, state, flags[3])

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
                new_inverse = (
                    regularize_inverse_mass_matrix(cov, count) if regularize_mass_matrix else cov
                )
                inverse_mass_matrix = jnp.where(count > 1, new_inverse, inverse_mass_matrix)
                return jax.tree.map(jnp.zeros_like, estimator), inverse_mass_matrix

            estimator, inverse_mass_matrix = jax.lax.cond(
                is_window_end,
                end_window,
                lambda operands: operands,
                (estimator, inverse_mass_matrix),
            )
        if mask is not None and apply_mask.any():
            final_step_size = dual_averaging_final(da) if adapt_step_size else step_size
            inverse_mass_matrix, step_size = jax.lax.cond(
                masking,
                lambda: (jnp.where(mask, inverse_mass_matrix, 0.0), final_step_size),
                lambda: (inverse_mass_matrix, step_size),
            )
        state = AdaptationState(chain, step_size, inverse_mass_matrix, da, estimator)
        if search_after.any():  # a window ends at the last transition (term_buffer=0)
            state = search(jax.random.fold_in(key, 1), state, search_now)
        return state

    final = functools.partial(tuned_parameters, adapt_step_size=adapt_step_size)
    return AdaptationScheme(init=init, before=before, after=after, final=final, schedule=flags)


def window_adaptation(
    logdensity_fn: LogDensityFn,
    num_warmup: int,
    *,
    kernel: TunableKernel | None = None,
    progress_fn: Callable[[jax.Array, AdaptationInfo], None] | None = None,
    **options,
) -> Adaptation:
    """Stan's windowed warm-up of ``kernel`` (see the module docstring).

    Args:
        logdensity_fn: ``(d,) -> ()`` unnormalized log density.
        num_warmup: number of warm-up transitions (static).
        kernel: the kernel to tune, e.g. :func:`~jppl.mcmc.adaptation.nuts_kernel` or
            :func:`~jppl.mcmc.adaptation.hmc_kernel`; default ``nuts_kernel(logdensity_fn)``.
        progress_fn: optional ``progress_fn(step_index, info)`` called inside the loop after
            each transition with the :class:`AdaptationInfo` of that transition (kernel info
            and the step size it used), e.g. to emit a throttled host callback.
        **options: the options of :func:`window_scheme` (``dense_mass``,
            ``target_accept_prob``, ``initial_step_size``, ``adapt_step_size``,
            ``adapt_mass_matrix``, ``init_buffer``, ``term_buffer``, ``base_window``,
            ``block_mask``).

    Returns:
        An :class:`Adaptation`; ``run(key, position_or_state) -> (state, params, infos)``.
    """
    scheme = window_scheme(logdensity_fn, num_warmup, **options)
    kernel = nuts_kernel(logdensity_fn) if kernel is None else kernel
    return make_adaptation(scheme, kernel, progress_fn)
