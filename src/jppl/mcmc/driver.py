"""The per-chain program: warm-up and sampling in one compiled loop.

The program is written for one chain: one loop over all transitions, warm-up first, then
sampling, whose body calls the kernel **once** (the warm-up's adaptation steps run under
``lax.cond`` on the loop's precomputed schedule, which is the same for every chain, so they
stay real branches under ``vmap``). The NUTS step is thus traced and compiled once per run,
whatever the phases. :func:`jppl.parallel.chain_program` maps it over chains (vectorized,
sharded or sequential, on one device or a mesh).

:func:`scan_chain` is that loop as one ``lax.scan`` (the standalone warm-up,
:meth:`jppl.mcmc.adaptation.Adaptation.run`, runs it); :func:`build_program` splits a run of
:class:`~jppl.mcmc.MCMC` into ``start``, ``advance`` (any range of transitions: the host runs
them in chunks, for live progress and interrupts) and ``finish`` (draws and statistics).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jppl.mcmc.state import MCMCState

__all__ = [
    "DEFAULT_FIELDS",
    "FIELD_ALIASES",
    "ChainProgram",
    "LoopState",
    "Progress",
    "build_program",
    "loop_inputs",
    "scan_chain",
]

#: Per-draw statistics always collected (``tree_depth`` only for NUTS).
DEFAULT_FIELDS = (
    "diverging",
    "accept_prob",
    "num_steps",
    "tree_depth",
    "energy",
    "potential_energy",
    "step_size",
)
#: NumPyro names accepted in ``extra_fields`` and what they mean here.
FIELD_ALIASES = {
    "mean_accept_prob": "accept_prob",
    "adapt_state.step_size": "step_size",
    "adapt_state.inverse_mass_matrix": "inverse_mass_matrix",
}


class LoopState(NamedTuple):
    """Carry of :func:`scan_chain`.

    Attributes:
        kernel_state: the chain's kernel state (``NUTSState`` / ``HMCState``).
        params: ``(step_size (), inverse_mass_matrix (d,) or (d, d))`` of the next
            transition.
        adaptation_state: the warm-up's ``AdaptationState`` with ``chain=None`` (the chain
            lives in ``kernel_state``), or ``None`` without warm-up.
        aux: whatever the ``observe`` function of :func:`scan_chain` accumulates.
    """

    kernel_state: Any
    params: tuple[jax.Array, jax.Array]
    adaptation_state: Any
    aux: Any


def _pad_steps(a: np.ndarray, total: int) -> np.ndarray:
    """``a`` (``(n,)``) padded with zeros (``False``) to length ``total``."""
    return np.concatenate([a, np.zeros(total - len(a), a.dtype)])


def _concat_keys(a: jax.Array, b: jax.Array) -> jax.Array:
    """Two arrays of PRNG keys (typed or raw) joined along the first axis."""
    typed = jnp.issubdtype(a.dtype, jax.dtypes.prng_key)
    if not typed:
        return jnp.concatenate([a, b])
    data = jnp.concatenate([jax.random.key_data(a), jax.random.key_data(b)])
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))


def loop_inputs(
    num_warmup: int,
    key_warm: jax.Array | None,
    schedule: Sequence[np.ndarray] = (),
    sampling_keys: jax.Array | None = None,
) -> dict[str, Any]:
    """The per-transition inputs (``xs``) of :func:`scan_chain`.

    Every transition's key is drawn before the loop (one batched computation): warm-up
    transition ``i`` splits ``split(key_warm, num_warmup)[i]`` into its kernel and adaptation
    keys; the sampling transitions use ``sampling_keys``.

    Args:
        num_warmup: number of warm-up transitions ``W`` (static).
        key_warm: the warm-up's key, or ``None`` without warm-up.
        schedule: the warm-up's flag arrays, each ``(W,)``; padded with zeros over the
            sampling transitions.
        sampling_keys: ``(S,)`` keys of the sampling transitions, or ``None`` (``S = 0``).

    Returns:
        ``{"t": (W + S,) int32, "key": (W + S,) keys}``, with a warm-up also
        ``"key_adapt": (W + S,) keys`` and ``"flags"``: tuple of ``(W + S,)`` arrays.
    """
    num_sampling = 0 if sampling_keys is None else sampling_keys.shape[0]
    total = num_warmup + num_sampling
    xs: dict[str, Any] = {"t": jnp.arange(total, dtype=jnp.int32), "key": sampling_keys}
    if key_warm is None:
        return xs
    warm_keys = jax.vmap(jax.random.split)(jax.random.split(key_warm, num_warmup))
    keys, adapt_keys = warm_keys[:, 0], warm_keys[:, 1]
    if sampling_keys is not None:
        keys = _concat_keys(keys, sampling_keys)
        adapt_keys = _concat_keys(adapt_keys, sampling_keys)
    xs["key"] = keys
    xs["key_adapt"] = adapt_keys
    xs["flags"] = tuple(jnp.asarray(_pad_steps(a, total)) for a in schedule)
    return xs


def _loop_body(
    step: Callable,
    acceptance: Callable[[Any], jax.Array],
    warmup: Any | None,
    num_warmup: int,
    observe: Callable,
    warmup_only: bool = False,
) -> Callable:
    """The body ``(LoopState, x) -> (LoopState, out)`` of one transition (see
    :func:`scan_chain`); ``x`` holds the transition's entries of :func:`loop_inputs`."""

    def during_warmup(warming, fn, otherwise, operand):
        if warmup_only:
            return fn(operand)
        return jax.lax.cond(warming, fn, otherwise, operand)

    def body(carry: LoopState, x: dict[str, Any]) -> tuple[LoopState, Any]:
        kstate, params, astate, aux = carry
        t = x["t"]
        warming = t < num_warmup
        if warmup is not None:

            def before(astate):
                a = warmup.before(astate._replace(chain=kstate), x["key_adapt"], x["flags"])
                return a._replace(chain=None), (a.step_size, a.inverse_mass_matrix)

            astate, params = during_warmup(warming, before, lambda a: (a, params), astate)
        step_size = params[0]
        new_kstate, info = step(x["key"], kstate, *params, warming)
        if warmup is not None:

            def after(astate):
                a = astate._replace(chain=kstate)
                key, flags = x["key_adapt"], x["flags"]
                a = warmup.after(a, key, flags, new_kstate, acceptance(info))
                return a._replace(chain=None)

            astate = during_warmup(warming, after, lambda a: a, astate)
            if not warmup_only:
                last = t == num_warmup - 1
                params = jax.lax.cond(last, lambda: warmup.final(astate), lambda: params)
        aux, out = observe(aux, t, warming, new_kstate, info, step_size)
        return LoopState(new_kstate, params, astate, aux), out

    return body


def scan_chain(
    step: Callable,
    acceptance: Callable[[Any], jax.Array],
    warmup: Any | None,
    num_warmup: int,
    observe: Callable,
    init: LoopState,
    xs: dict[str, Any],
    *,
    warmup_only: bool = False,
) -> tuple[LoopState, Any]:
    """The fused loop: warm-up transitions (``t < num_warmup``), then sampling transitions.

    Transition ``t`` of the warm-up runs, with the schedule's flags of ``t``::

        state = warmup.before(state, key_adapt, flags)   # step-size search if due
        chain, info = step(key, chain, state.step_size, state.inverse_mass_matrix, True)
        state = warmup.after(state, key_adapt, flags, chain, acceptance(info))

    under ``lax.cond(t < num_warmup)``, and after the last one the parameters become
    ``warmup.final(state)``. A sampling transition only calls ``step`` (``warming=False``)
    with the parameters in the carry.

    Args:
        step: ``(key, kernel_state, step_size, inverse_mass_matrix, warming) ->
            (kernel_state, info)``.
        acceptance: ``info -> ()`` the acceptance statistic the warm-up tunes for.
        warmup: anything with the warm-up pieces ``before``, ``after`` and ``final`` (an
            ``Adaptation`` or an ``AdaptationScheme``), or ``None`` without warm-up.
        num_warmup: number of warm-up transitions (static).
        observe: ``(aux, t, warming, kernel_state, info, step_size) -> (aux, out)`` after each
            transition (``kernel_state`` the new one, ``step_size`` the one it used); the
            ``out`` are stacked.
        init: the initial :class:`LoopState`.
        xs: :func:`loop_inputs`.
        warmup_only: every transition is a warm-up transition (the standalone warm-up): the
            warm-up steps run outside the phase branches and the parameters become
            ``warmup.final(state)`` after the loop. The values are the same but for XLA's
            rounding, which differs in the last bits between the two programs under ``vmap``;
            this keeps the standalone warm-up's results bitwise as they were.

    Returns:
        ``(final LoopState, stacked outs)``.
    """

    body = _loop_body(step, acceptance, warmup, num_warmup, observe, warmup_only)
    loop, outs = jax.lax.scan(body, init, xs)
    if warmup_only and warmup is not None:
        loop = loop._replace(params=warmup.final(loop.adaptation_state))
    return loop, outs


def _record(kstate: Any, info: dict, step_size: jax.Array, fields: tuple[str, ...]) -> dict:
    """The statistics of one transition that the run keeps (``"z"``: the position)."""
    record = {k: info[k] for k in fields if k in info}
    if "potential_energy" in fields:
        record["potential_energy"] = -kstate.logdensity
    if "step_size" in fields:
        record["step_size"] = step_size
    if "z_grad" in fields:
        record["z_grad"] = -kstate.logdensity_grad
    record["z"] = kstate.position
    return record


class Progress(NamedTuple):
    """What a chain's loop keeps for the host besides its draws (the ``aux`` of the carry).

    Attributes:
        divergences: ``(2,)`` int32, divergent transitions in warm-up and in sampling so far.
        max_depth_hits: ``()`` int32, sampling transitions that hit the maximum tree depth.
        records: dict of ``(num_draws, ...)`` buffers of the kept draws' statistics (``"z"``:
            the position), filled as the draws are made.
        last: ``(3,)`` float32, the step size, acceptance statistic and number of integration
            steps of the last transition (for the progress bar).
    """

    divergences: jax.Array
    max_depth_hits: jax.Array
    records: dict[str, jax.Array]
    last: jax.Array


class ChainProgram(NamedTuple):
    """A chain's run in three per-chain functions, so that the host can run the transitions
    in chunks (progress, interrupts) with one compiled loop:

    * ``start(chain_in, dynamic_args) -> (loop, xs, tail)``: the initial
      :class:`LoopState` (its ``aux`` a :class:`Progress`), the chain's keys of every
      transition ``xs`` (``"key"`` and, with a warm-up, ``"key_adapt"``, as
      :func:`loop_inputs` draws them) and ``tail = (sampling key, first step)``;
    * ``advance((loop, xs), (dynamic_args, t0, n)) -> loop``: transitions ``t0 .. t0 + n - 1``
      (``t0`` and ``n`` traced ``()`` int32, the same for all chains);
    * ``finish((loop, tail), (dynamic_args, done)) -> (state, samples, records, counts)``: the
      results after the first ``done`` transitions (``()`` int32, traced): see
      :func:`build_program`.
    """

    start: Callable
    advance: Callable
    finish: Callable


def build_program(
    sampler: Any,  # a jppl.mcmc.sampler.Sampler; not imported: the samplers import the
    target: Any,  # adaptation, which runs scan_chain of this module (a Target, likewise)
    rebuild: Callable,
    *,
    fresh: bool,
    num_warmup: int,
    num_draws: int,
    thinning: int,
    fields: tuple[str, ...],
    block_mask: np.ndarray | None,
    warmup_draws: int = 0,
) -> ChainProgram:
    """The per-chain program of an MCMC run, as a :class:`ChainProgram`.

    A run is ``T = num_warmup + num_draws * thinning`` transitions: the warm-up, then the
    sampling, in one loop whose body calls the kernel once (:func:`scan_chain`'s body); it
    keeps the last state of each block of ``thinning`` sampling transitions and maps the kept
    positions to constrained samples (with deterministic sites) by ``vmap`` at the end. Running
    the transitions in any number of chunks gives the same numbers: each transition's inputs
    are fixed in ``xs`` before the first.

    Args:
        sampler, target: the sampler and its bound :class:`~jppl.mcmc.sampler.Target`.
        rebuild: ``dynamic_args -> (args, kwargs)`` of the model.
        fresh: ``chain_in = (position (d,), warmup_key, sampling_key)``: start from a position
            (the warm-up's initial state; with ``num_warmup = 0`` nothing is adapted).
            Otherwise ``chain_in`` is an :class:`MCMCState` to continue (``num_warmup`` must
            be 0).
        num_warmup, num_draws, thinning: static lengths.
        fields: statistics to keep per draw (see :data:`DEFAULT_FIELDS`; ``"z"``: position).
        block_mask: ``(d, d)`` mask for block-dense mass matrices, or ``None``.
        warmup_draws: also keep this many warm-up draws (NumPyro's ``collect_warmup``; at most
            ``num_warmup // thinning``, the last transition of each block of ``thinning``),
            stored before the ``num_draws`` sampling draws.

    ``finish`` returns, after ``done`` transitions:
        ``state``: the :class:`MCMCState` after the last of them (``step`` counts the sampling
        transitions since the warm-up; during the warm-up the step size and mass matrix are
        those being adapted);
        ``samples``: pytree of ``(num_draws, ...)`` constrained values (``{}`` if none; the
        draws not made yet are those of the zero position);
        ``records``: dict of ``(num_draws, ...)`` statistics of the kept transitions;
        ``counts``: ``()`` int32 ``num_divergent`` and ``num_max_tree_depth`` over *all*
        sampling transitions done, and ``warmup_num_divergent``.
    """
    if not fresh and num_warmup:
        raise ValueError("a continued chain has no warm-up")
    max_depth = sampler.max_tree_depth
    num_sampling = num_draws * thinning
    if not 0 <= warmup_draws <= num_warmup // thinning:
        raise ValueError(f"warmup_draws must be in [0, num_warmup // thinning], got {warmup_draws}")
    num_kept = warmup_draws + num_draws
    num_transitions = num_warmup + num_sampling

    def kernel(dynamic_args):
        args, kwargs = rebuild(dynamic_args)
        logdensity = target.make_logdensity(args, kwargs)
        warm = sampler.make_warmup(logdensity, num_warmup, block_mask) if fresh else None
        return args, kwargs, sampler.transition(logdensity), warm

    def start(chain_in, dynamic_args):
        _, _, kstep, adaptation = kernel(dynamic_args)
        astate = key_warm = None
        if fresh:
            position, key_warm, key_sample = chain_in
            astate = adaptation.start(position)
            kstate = astate.chain
            params = (astate.step_size, astate.inverse_mass_matrix)
            first_step = jnp.zeros((), jnp.int32)
            if num_warmup:
                astate = astate._replace(chain=None)
            else:
                astate = key_warm = None
        else:
            state = chain_in
            kstate = sampler.state_type(state.position, state.logdensity, state.logdensity_grad)
            params = (state.step_size, state.inverse_mass_matrix)
            key_sample, first_step = state.rng_key, state.step

        # The sampling transitions' keys are ``fold_in(sampling key, step)``.
        steps = first_step + jnp.arange(num_sampling, dtype=jnp.int32)
        keys = jax.vmap(lambda i: jax.random.fold_in(key_sample, i))(steps)
        schedule = adaptation.schedule if astate is not None else ()
        xs = loop_inputs(num_warmup, key_warm, schedule, keys)
        # Only the keys are the chain's own; the index and the schedule's flags are the same
        # for every chain and are rebuilt as constants in ``advance``: batched (as outputs of
        # a vmapped ``start`` would be), the warm-up's conds would become selects that run
        # both branches on every transition.
        xs = {k: xs[k] for k in ("key", "key_adapt") if xs.get(k) is not None}
        records = {}
        if num_kept:
            template = jax.eval_shape(
                lambda: _record(
                    kstate, kstep.step(key_sample, kstate, *params, False)[1], params[0], fields
                )
            )
            records = jax.tree.map(lambda s: jnp.zeros((num_kept,) + s.shape, s.dtype), template)
        zeros = jnp.zeros((), jnp.int32)
        aux = Progress(jnp.zeros(2, jnp.int32), zeros, records, jnp.zeros(3, jnp.float32))
        return LoopState(kstate, params, astate, aux), xs, (key_sample, first_step)

    def observe(aux: Progress, t, warming, new_kstate, info, step_size):
        n_div, n_depth, records, _ = aux
        sample_index = t - num_warmup
        divergent = info["diverging"].astype(jnp.int32)
        n_div = n_div + jnp.stack([divergent * warming, divergent * ~warming])
        if max_depth is not None:
            hit = (info["tree_depth"] >= max_depth) & ~warming
            n_depth = n_depth + hit.astype(jnp.int32)
        if warmup_draws:
            # warm-up draws first (transitions t < num_warmup), then the sampling draws
            index = jnp.where(warming, t, sample_index)
            keep = index % thinning == thinning - 1
            keep = keep & (~warming | (t // thinning < warmup_draws))
            j = jnp.where(warming, t // thinning, warmup_draws + sample_index // thinning)
            j = jnp.clip(j, 0, num_kept - 1)
        elif num_draws:
            keep = ~warming & (sample_index % thinning == thinning - 1)
            j = jnp.clip(sample_index // thinning, 0, num_draws - 1)
        if num_kept:
            new = _record(new_kstate, info, step_size, fields)
            records = jax.tree.map(
                lambda buf, v: buf.at[j].set(jnp.where(keep, v, buf[j])), records, new
            )
        last = jnp.stack([step_size, info["accept_prob"], info["num_steps"]]).astype(jnp.float32)
        return Progress(n_div, n_depth, records, last), None

    def advance(chain_in, shared):
        loop, xs = chain_in
        dynamic_args, t0, n = shared
        _, _, kstep, warm = kernel(dynamic_args)
        accept_prob = lambda info: info["accept_prob"]
        warm = warm if num_warmup else None
        body = _loop_body(kstep.step, accept_prob, warm, num_warmup, observe)

        flags = ()
        if warm is not None:
            flags = tuple(jnp.asarray(_pad_steps(a, num_transitions)) for a in warm.schedule)

        def one(t, loop):
            x = {k: v[t] for k, v in xs.items()}
            x["t"] = t
            if warm is not None:
                x["flags"] = tuple(f[t] for f in flags)
            return body(loop, x)[0]

        return jax.lax.fori_loop(t0, t0 + n, one, loop)

    def finish(chain_in, shared):
        loop, (key_sample, first_step) = chain_in
        dynamic_args, done = shared
        args, kwargs, _, _ = kernel(dynamic_args)
        kstate, params = loop.kernel_state, loop.params
        n_div, n_depth, records, _ = loop.aux
        samples: Any = {}
        records = dict(records)
        if num_kept:
            draws = records.pop("z")
            if "z" in fields:
                records["z"] = draws
            if "inverse_mass_matrix" in fields:
                records["inverse_mass_matrix"] = jnp.broadcast_to(
                    params[1], (num_kept,) + params[1].shape
                )
            postprocess = target.make_postprocess(args, kwargs)
            samples = jax.vmap(lambda z: postprocess(target.unravel(z)))(draws)
        dtype = kstate.position.dtype
        new_state = MCMCState(
            position=kstate.position,
            logdensity=kstate.logdensity,
            logdensity_grad=kstate.logdensity_grad,
            step_size=jnp.asarray(params[0], dtype),
            inverse_mass_matrix=jnp.asarray(params[1], dtype),
            rng_key=key_sample,
            step=first_step + jnp.maximum(done - num_warmup, 0).astype(jnp.int32),
        )
        counts = {
            "num_divergent": n_div[1],
            "num_max_tree_depth": n_depth,
            "warmup_num_divergent": n_div[0],
        }
        return new_state, samples, records, counts

    return ChainProgram(start, advance, finish)
