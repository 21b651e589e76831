"""What a warm-up scheme is, what it needs from a kernel, and how the two make a warm-up.

A scheme (:class:`AdaptationScheme`) is kernel-free: BlackJAX's ``(init, update, final)``
triple, with the update split around the transition into ``before`` (the step-size search,
where the schedule asks for it) and ``after`` (dual averaging, mass-matrix estimation), plus
the schedule those read. A kernel (:class:`TunableKernel`, e.g. :func:`nuts_kernel`) is passed
in; :func:`make_adaptation` joins both into an :class:`Adaptation` whose ``run`` is the loop
of :func:`jppl.mcmc.driver.scan_chain`, the one :class:`~jppl.mcmc.MCMC` runs too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jppl.mcmc import hmc, nuts
from jppl.mcmc.adaptation.step_size import (
    dual_averaging_final,
    dual_averaging_init,
    find_reasonable_step_size,
)
from jppl.mcmc.driver import LoopState, loop_inputs, scan_chain
from jppl.mcmc.hmc import LogDensityFn

__all__ = [
    "Adaptation",
    "AdaptationInfo",
    "AdaptationScheme",
    "AdaptationState",
    "TunableKernel",
    "hmc_kernel",
    "make_adaptation",
    "nuts_kernel",
    "search_restart",
    "tuned_parameters",
]


class AdaptationState(NamedTuple):
    """Carry of the warm-up.

    Attributes:
        chain: ``NUTSState`` (or ``HMCState``) of the chain.
        step_size: ``()`` step size used by the next transition.
        inverse_mass_matrix: ``(d,)`` or ``(d, d)`` used by the next transition.
        dual_averaging: :class:`~jppl.mcmc.adaptation.step_size.DualAveragingState`.
        estimator: mass-matrix estimator: a ``WelfordState`` (Stan), a
            ``NutpieEstimatorState`` (nutpie diagonal) or a ``LowRankBuffer`` (nutpie low
            rank).
    """

    chain: Any
    step_size: jax.Array
    inverse_mass_matrix: jax.Array
    dual_averaging: Any
    estimator: Any


class AdaptationInfo(NamedTuple):
    """Per-draw diagnostics of the warm-up (each with a leading ``num_warmup`` axis).

    Attributes:
        kernel_info: the stacked ``NUTSInfo`` / ``HMCInfo`` of the transitions.
        step_size: ``(num_warmup,)`` step size used by each transition.
    """

    kernel_info: Any
    step_size: jax.Array


class AdaptationScheme(NamedTuple):
    """A kernel-free warm-up scheme for ``num_warmup = len(schedule[0])`` transitions.

    Attributes:
        init: ``(chain, inverse_mass_matrix=None, step_size=None) -> AdaptationState`` from a
            kernel state ``chain`` (``position (d,)``, ``logdensity ()``,
            ``logdensity_grad (d,)``); no random numbers are used.
        before: ``(state, key, flags) -> state`` before a transition: searches the step size
            and restarts dual averaging where the schedule says so.
        after: ``(state, key, flags, chain, acceptance_rate ()) -> state`` after a transition
            to ``chain``: dual averaging, mass-matrix estimation and updates.
        final: ``state -> (step_size (), inverse_mass_matrix)``, the tuned parameters after the
            last transition.
        schedule: tuple of NumPy arrays of length ``num_warmup``; ``flags`` above is the tuple
            of their entries at the transition.
    """

    init: Callable[..., AdaptationState]
    before: Callable[..., AdaptationState]
    after: Callable[..., AdaptationState]
    final: Callable[[AdaptationState], tuple[jax.Array, jax.Array]]
    schedule: tuple[np.ndarray, ...]


class TunableKernel(NamedTuple):
    """A kernel bound to its target whose step size and inverse mass matrix are tuned.

    Attributes:
        init: ``position (d,) -> state``.
        step: ``(key, state, params) -> (state, info)``; ``info.acceptance_rate`` is the
            statistic the step size is tuned for.
        make_params: ``(step_size (), inverse_mass_matrix) -> params``.
    """

    init: Callable[[jax.Array], Any]
    step: Callable[[jax.Array, Any, Any], tuple[Any, Any]]
    make_params: Callable[[jax.Array, jax.Array], Any]


def nuts_kernel(
    logdensity_fn: LogDensityFn, *, max_tree_depth: int = 10, divergence_threshold: float = 1000.0
) -> TunableKernel:
    """NUTS (:mod:`jppl.mcmc.nuts`) on ``logdensity_fn: (d,) -> ()``, params ``NUTSParams``."""
    kernel = nuts.kernel(
        logdensity_fn, max_tree_depth=max_tree_depth, divergence_threshold=divergence_threshold
    )
    return TunableKernel(kernel.init, kernel.step, nuts.NUTSParams)


def hmc_kernel(
    logdensity_fn: LogDensityFn,
    *,
    num_integration_steps: int = 10,
    divergence_threshold: float = 1000.0,
) -> TunableKernel:
    """HMC (:mod:`jppl.mcmc.hmc`) with ``num_integration_steps`` leapfrog steps on
    ``logdensity_fn: (d,) -> ()``, params ``HMCParams``."""
    kernel = hmc.kernel(logdensity_fn, divergence_threshold=divergence_threshold)
    return TunableKernel(
        kernel.init,
        kernel.step,
        lambda step_size, inverse_mass_matrix: hmc.HMCParams(
            step_size, inverse_mass_matrix, num_integration_steps
        ),
    )


class Adaptation(NamedTuple):
    """A warm-up procedure bound to a target and a kernel.

    ``run`` is the whole warm-up as one ``lax.scan`` (:func:`jppl.mcmc.driver.scan_chain`).
    The scheme's pieces are exposed too, so that :func:`jppl.mcmc.driver.build_program` runs
    the same loop with the sampling transitions after the warm-up: for transition ``i``
    with the kernel and adaptation keys ``key_i``, ``key_adapt_i`` (the two halves of
    ``split(split(key, num_warmup)[i])``) and flags ``tuple(a[i] for a in schedule)``::

        state = before(state, key_adapt_i, flags)               # step-size search if due
        params = make_params(state.step_size, state.inverse_mass_matrix)
        chain, info = step(key_i, state.chain, params)
        state = after(state, key_adapt_i, flags, chain, info.acceptance_rate)

    and after the last transition ``make_params(*final(state))`` are the tuned parameters.

    Attributes:
        init: ``(position (d,), inverse_mass_matrix=None, step_size=None) ->
            AdaptationState``; no random numbers are used.
        run: ``(key, position_or_state) -> (chain_state, params, AdaptationInfo)``.
            ``position_or_state`` is a ``(d,)`` position, a kernel state or an
            :class:`AdaptationState`. ``params`` are the kernel's (``NUTSParams``,
            ``HMCParams``) with the final step size and inverse mass matrix.
        step: the kernel transition ``step(key, state, params) -> (state, info)``.
        make_params: ``(step_size, inverse_mass_matrix) -> params``.
        num_warmup: number of warm-up transitions.
        start: ``position_or_state -> AdaptationState`` (``init`` for a position or kernel
            state; an :class:`AdaptationState` is returned as is).
        schedule: tuple of NumPy arrays of length ``num_warmup``: the per-transition flags.
        before, after, final: the scheme's pieces (see :class:`AdaptationScheme`).
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
    final: Callable[[AdaptationState], tuple[jax.Array, jax.Array]]


def search_restart(
    logdensity_fn: LogDensityFn,
    key: jax.Array,
    state: AdaptationState,
    due: ArrayLike,
    target_accept_prob: float,
) -> AdaptationState:
    """Under ``lax.cond(due)``: search a step size for ``state.chain`` and the current inverse
    mass matrix from ``state.step_size`` (:func:`find_reasonable_step_size`), and restart
    dual averaging from it."""

    def restart():
        step_size = find_reasonable_step_size(
            key,
            state.chain,
            logdensity_fn,
            state.inverse_mass_matrix,
            state.step_size,
            target_accept_prob=target_accept_prob,
        )
        return step_size, dual_averaging_init(step_size)

    step_size, da = jax.lax.cond(due, restart, lambda: (state.step_size, state.dual_averaging))
    return state._replace(step_size=step_size, dual_averaging=da)


def tuned_parameters(
    state: AdaptationState, adapt_step_size: bool = True
) -> tuple[jax.Array, jax.Array]:
    """``(step_size (), inverse_mass_matrix)`` after the last warm-up transition: the
    dual-averaged step size (the current one if it is not adapted) and the current matrix."""
    if adapt_step_size:
        return dual_averaging_final(state.dual_averaging), state.inverse_mass_matrix
    return state.step_size, state.inverse_mass_matrix


def make_adaptation(
    scheme: AdaptationScheme,
    kernel: TunableKernel,
    progress_fn: Callable[[jax.Array, AdaptationInfo], None] | None = None,
) -> Adaptation:
    """The :class:`Adaptation` of ``scheme`` with ``kernel``.

    Args:
        scheme: the warm-up scheme.
        kernel: the kernel it tunes.
        progress_fn: optional ``progress_fn(step_index, info)`` called inside the loop after
            each transition with the :class:`AdaptationInfo` of that transition.
    """
    if not all(callable(getattr(kernel, f, None)) for f in TunableKernel._fields):
        raise ValueError(
            f"kernel must provide {TunableKernel._fields} (e.g. nuts_kernel(logdensity_fn)), "
            f"got {kernel!r}"
        )
    num_warmup = len(scheme.schedule[0])

    def init(
        position: ArrayLike,
        inverse_mass_matrix: ArrayLike | None = None,
        step_size: ArrayLike | None = None,
    ) -> AdaptationState:
        return scheme.init(kernel.init(jnp.asarray(position)), inverse_mass_matrix, step_size)

    def start(position_or_state: Any) -> AdaptationState:
        if isinstance(position_or_state, AdaptationState):
            return position_or_state
        if hasattr(position_or_state, "logdensity_grad"):  # a kernel state
            return init(position_or_state.position)._replace(chain=position_or_state)
        return init(position_or_state)

    def step(key, state, step_size, inverse_mass_matrix, warming):
        return kernel.step(key, state, kernel.make_params(step_size, inverse_mass_matrix))

    def observe(aux, t, warming, chain, info, step_size):
        out = AdaptationInfo(info, jnp.asarray(step_size))
        if progress_fn is not None:
            progress_fn(t, out)
        return aux, out

    def run(key: jax.Array, position_or_state: Any) -> tuple[Any, Any, AdaptationInfo]:
        state = start(position_or_state)
        params = (state.step_size, state.inverse_mass_matrix)
        loop = LoopState(state.chain, params, state._replace(chain=None), None)
        xs = loop_inputs(num_warmup, key, scheme.schedule)
        acceptance = lambda info: info.acceptance_rate
        loop, infos = scan_chain(
            step, acceptance, scheme, num_warmup, observe, loop, xs, warmup_only=True
        )
        return loop.kernel_state, kernel.make_params(*loop.params), infos

    return Adaptation(
        init=init,
        run=run,
        step=kernel.step,
        make_params=kernel.make_params,
        num_warmup=num_warmup,
        start=start,
        schedule=scheme.schedule,
        before=scheme.before,
        after=scheme.after,
        final=scheme.final,
    )
