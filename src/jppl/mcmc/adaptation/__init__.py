"""Warm-up adaptation of the step size and the inverse mass matrix for HMC and NUTS.

Two schemes, each a kernel-free :class:`AdaptationScheme` (BlackJAX's ``(init, update,
final)`` triple, the update split into ``before`` / ``after`` the transition) driven by a
schedule computed before tracing (an array of flags per warm-up draw):

* Stan's windowed adaptation (:mod:`.window`: :func:`window_scheme`,
  :func:`window_adaptation`; the default, see :data:`DEFAULT_ADAPTATION`);
* nutpie's gradient-based diagonal, optionally low-rank, adaptation (:mod:`.nutpie`:
  :func:`nutpie_scheme`, :func:`nutpie_adaptation`).

Their pieces live in small modules: dual averaging and the step-size search
(:mod:`.step_size`), Welford estimators and diagonal estimates (:mod:`.mass_matrix`), the
low-rank estimate (:mod:`.low_rank`) and the schedules (:mod:`.schedules`). The kernel is
passed in (:func:`nuts_kernel`, :func:`hmc_kernel`, or any :class:`TunableKernel`), and
:func:`make_adaptation` joins a scheme and a kernel into an :class:`Adaptation`, whose ``run``
is the warm-up as one ``lax.scan`` (the loop of :mod:`jppl.mcmc.driver`, which
:class:`~jppl.mcmc.MCMC` runs with the sampling transitions after the warm-up). Each runs on a
flat position ``(d,)`` and returns the final chain state, the tuned kernel parameters and the
per-step diagnostics.

Example::

    warmup = window_adaptation(logdensity_fn, 1000, kernel=nuts_kernel(logdensity_fn))
    state, params, infos = jax.jit(warmup.run)(key, initial_position)
    state, info = warmup.step(key2, state, params)  # the tuned NUTS transition
"""

from jppl.mcmc.adaptation.base import (
    Adaptation,
    AdaptationInfo,
    AdaptationScheme,
    AdaptationState,
    TunableKernel,
    hmc_kernel,
    make_adaptation,
    nuts_kernel,
)
from jppl.mcmc.adaptation.low_rank import LowRankBuffer, low_rank_inverse_mass_matrix
from jppl.mcmc.adaptation.mass_matrix import (
    WelfordState,
    regularize_inverse_mass_matrix,
    welford_final,
    welford_init,
    welford_update,
)
from jppl.mcmc.adaptation.nutpie import NutpieEstimatorState, nutpie_adaptation, nutpie_scheme
from jppl.mcmc.adaptation.schedules import (
    NutpieSchedule,
    WindowSchedule,
    build_block_schedule,
    build_nutpie_schedule,
    build_schedule,
)
from jppl.mcmc.adaptation.step_size import (
    DualAveragingState,
    dual_averaging_final,
    dual_averaging_init,
    dual_averaging_update,
    find_reasonable_step_size,
)
from jppl.mcmc.adaptation.window import window_adaptation, window_scheme

__all__ = [
    "DEFAULT_ADAPTATION",
    "Adaptation",
    "AdaptationInfo",
    "AdaptationScheme",
    "AdaptationState",
    "DualAveragingState",
    "LowRankBuffer",
    "NutpieEstimatorState",
    "NutpieSchedule",
    "TunableKernel",
    "WelfordState",
    "WindowSchedule",
    "build_block_schedule",
    "build_nutpie_schedule",
    "build_schedule",
    "dual_averaging_final",
    "dual_averaging_init",
    "dual_averaging_update",
    "find_reasonable_step_size",
    "hmc_kernel",
    "low_rank_inverse_mass_matrix",
    "make_adaptation",
    "nutpie_adaptation",
    "nutpie_scheme",
    "nuts_kernel",
    "regularize_inverse_mass_matrix",
    "welford_final",
    "welford_init",
    "welford_update",
    "window_adaptation",
    "window_scheme",
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
