"""The per-chain program (warm-up and sampling in one loop), and how it is mapped over chains.

The program is written for one chain: one ``lax.scan`` over all transitions, warm-up first,
then sampling, whose body calls the kernel **once** (the warm-up's adaptation steps run under
``lax.cond`` on the scan's precomputed schedule, which is the same for every chain, so they
stay real branches under ``vmap``). The NUTS step is thus traced and compiled once per run,
whatever the phases. It is mapped over chains:

* ``"vectorized"``: ``jit(vmap(chain_fn))``, or ``jit(chain_fn)`` for a single chain;
* ``"sharded"``: ``jit(shard_map(...))`` over a 1-d mesh with axis ``"chain"``, no
  communication between devices. With one chain per device each device runs the single-chain
  program itself, otherwise ``vmap`` over its own chains. If ``num_chains`` is not a multiple
  of the number of devices used, the chains are **padded** (the last chain's inputs are
  repeated) and the padding is dropped from the results;
* ``"sequential"``: one compiled single-chain program called in a Python loop.

For the same keys ``sharded`` (one chain per device) and ``sequential`` give the same draws
bitwise (checked in the tests); ``vectorized`` may round the batched arithmetic differently.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jppl.mcmc.state import MCMCState

__all__ = [
    "CHAIN_METHODS",
    "DEFAULT_FIELDS",
    "build_chain",
    "map_chains",
    "shard_plan",
]

CHAIN_METHODS = ("vectorized", "sharded", "sequential")
AXIS = "chain"

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


def build_chain(
    sampler: Any,
    target: Any,
    rebuild: Callable,
    *,
    fresh: bool,
    num_warmup: int,
    num_draws: int,
    thinning: int,
    fields: tuple[str, ...],
    reporter: Callable | None,
    block_mask: np.ndarray | None,
) -> Callable:
    """``chain(chain_in, shared) -> (state, samples, records, counts)`` for one chain.

    Runs ``num_warmup`` warm-up transitions then ``num_draws * thinning`` sampling
    transitions in one ``lax.scan`` (one kernel call in its body), keeps the last state of
    each block of ``thinning`` sampling transitions, and maps the kept positions to
    constrained samples (with deterministic sites) by ``vmap`` after the scan.

    Args:
        sampler, target: the sampler and its bound :class:`~jppl.mcmc.sampler.Target`.
        rebuild: ``dynamic_args -> (args, kwargs)`` of the model.
        fresh: ``chain_in = (position (d,), warmup_key, sampling_key)``: start from a position
            (the warm-up's initial state; with ``num_warmup = 0`` nothing is adapted).
            Otherwise ``chain_in`` is an :class:`MCMCState` to continue (``num_warmup`` must
            be 0).
        num_warmup, num_draws, thinning: static lengths.
        fields: statistics to keep per draw (see :data:`DEFAULT_FIELDS`; ``"z"``: position).
        reporter: progress reporting function (:func:`jppl.mcmc.progress.make_reporter`) or
            ``None``; phase 0 is the warm-up, phase 1 the sampling.
        block_mask: ``(d, d)`` mask for block-dense mass matrices, or ``None``.

    ``shared = (dynamic_args, every)``: the model's array arguments and the ``(2,)`` progress
    reporting intervals of the two phases (traced, so the host can change them without
    recompiling).

    Returns:
        ``state``: the :class:`MCMCState` after the last transition (``step`` counts the
        sampling transitions since the warm-up);
        ``samples``: pytree of ``(num_draws, ...)`` constrained values (``{}`` if none);
        ``records``: dict of ``(num_draws, ...)`` statistics of the kept transitions;
        ``counts``: ``()`` int32 ``num_divergent`` and ``num_max_tree_depth`` over *all*
        sampling transitions, and ``warmup_num_divergent``.
    """
    if not fresh and num_warmup:
        raise ValueError("a continued chain has no warm-up")
    max_depth = sampler.max_tree_depth
    num_sampling = num_draws * thinning
    total = num_warmup + num_sampling

    def chain(chain_in, shared):
        dynamic_args, every = shared
        args, kwargs = rebuild(dynamic_args)
        logdensity = target.make_logdensity(args, kwargs)
        kstep = sampler.transition(logdensity)
        warm = None
        if fresh:
            position, key_warm, key_sample = chain_in
            adaptation = sampler.make_warmup(logdensity, num_warmup, block_mask)
            astate = adaptation.start(position)
            kstate = astate.chain
            params = (astate.step_size, astate.inverse_mass_matrix)
            first_step = jnp.zeros((), jnp.int32)
            if num_warmup:
                warm = adaptation
                astate = astate._replace(chain=None)
        else:
            state = chain_in
            kstate = sampler.state_type(state.position, state.logdensity, state.logdensity_grad)
            params = (state.step_size, state.inverse_mass_matrix)
            key_sample, first_step = state.rng_key, state.step

        # Every transition's key, drawn before the loop (as one batched computation): the
        # warm-up's as in ``Adaptation.run`` (split per step into kernel and adaptation keys),
        # the sampling transitions' as ``fold_in(sampling key, step)``.
        steps = first_step + jnp.arange(num_sampling, dtype=jnp.int32)
        keys = jax.vmap(lambda i: jax.random.fold_in(key_sample, i))(steps)
        xs: dict[str, Any] = {"t": jnp.arange(total, dtype=jnp.int32)}
        if warm is not None:
            warm_keys = jax.vmap(jax.random.split)(jax.random.split(key_warm, num_warmup))
            keys = _concat_keys(warm_keys[:, 0], keys)
            xs["key_adapt"] = _concat_keys(warm_keys[:, 1], keys[num_warmup:])
            xs["flags"] = tuple(jnp.asarray(_pad_steps(a, total)) for a in warm.schedule)
        xs["key"] = keys

        def body(carry, x):
            kstate, params, astate, n_div, n_depth, records = carry
            t = x["t"]
            warming = t < num_warmup
            sample_index = t - num_warmup
            if warm is not None:

                def before(astate):
                    a = warm.before(astate._replace(chain=kstate), x["key_adapt"], x["flags"])
                    return a._replace(chain=None), (a.step_size, a.inverse_mass_matrix)

                astate, params = jax.lax.cond(warming, before, lambda a: (a, params), astate)
            step_size = params[0]
            new_kstate, info = kstep.step(x["key"], kstate, *params, warming)
            if warm is not None:

                def after(astate):
                    a = astate._replace(chain=kstate)
                    key, flags = x["key_adapt"], x["flags"]
                    a = warm.after(a, key, flags, new_kstate, info["accept_prob"])
                    return a._replace(chain=None)

                astate = jax.lax.cond(warming, after, lambda a: a, astate)
                params = jax.lax.cond(
                    t == num_warmup - 1,
                    lambda: (warm.final_step_size(astate), astate.inverse_mass_matrix),
                    lambda: params,
                )
            divergent = info["diverging"].astype(jnp.int32)
            n_div = n_div + jnp.stack([divergent * warming, divergent * ~warming])
            if max_depth is not None:
                hit = (info["tree_depth"] >= max_depth) & ~warming
                n_depth = n_depth + hit.astype(jnp.int32)
            if reporter is not None:
                phase = (~warming).astype(jnp.int32)
                reporter(
                    every,
                    phase,
                    jnp.where(warming, t, sample_index),
                    n_div[phase],
                    step_size,
                    info["accept_prob"],
                    info["num_steps"],
                )
            if num_draws:
                keep = ~warming & (sample_index % thinning == thinning - 1)
                j = jnp.clip(sample_index // thinning, 0, num_draws - 1)
                new = _record(new_kstate, info, step_size, fields)
                records = jax.tree.map(
                    lambda buf, v: buf.at[j].set(jnp.where(keep, v, buf[j])), records, new
                )
            return (new_kstate, params, astate, n_div, n_depth, records), None

        records = {}
        if num_draws:
            template = jax.eval_shape(
                lambda: _record(
                    kstate, kstep.step(key_sample, kstate, *params, False)[1], params[0], fields
                )
            )
            records = jax.tree.map(lambda s: jnp.zeros((num_draws,) + s.shape, s.dtype), template)
        zeros = jnp.zeros((), jnp.int32)
        carry = (kstate, params, astate if warm is not None else None, jnp.zeros(2, jnp.int32))
        carry = carry + (zeros, records)
        (kstate, params, _, n_div, n_depth, records), _ = jax.lax.scan(body, carry, xs)

        samples: Any = {}
        if num_draws:
            draws = records.pop("z")
            if "z" in fields:
                records["z"] = draws
            if "inverse_mass_matrix" in fields:
                records["inverse_mass_matrix"] = jnp.broadcast_to(
                    params[1], (num_draws,) + params[1].shape
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
            step=first_step + num_sampling,
        )
        counts = {
            "num_divergent": n_div[1],
            "num_max_tree_depth": n_depth,
            "warmup_num_divergent": n_div[0],
        }
        return new_state, samples, records, counts

    return chain


def shard_plan(num_chains: int, num_devices: int) -> tuple[int, int]:
    """``(devices used, padded number of chains)`` for sharded chains.

    Uses ``ceil(num_chains / devices)`` chains per device and as few devices as that load
    needs, so at most ``chains_per_device - 1`` padding chains are added.
    """
    per_device = math.ceil(num_chains / min(num_chains, num_devices))
    used = math.ceil(num_chains / per_device)
    return used, used * per_device


def _pad(tree: Any, size: int) -> Any:
    def pad(x):
        extra = size - x.shape[0]
        if extra == 0:
            return x
        return jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)], axis=0)

    return jax.tree.map(pad, tree)


def _single(chain_fn: Callable) -> Callable:
    """``chain_fn`` on inputs and outputs with a leading chain dim of 1 (no ``vmap``)."""

    def run(chain_in, shared):
        one = jax.tree.map(lambda x: x[0], chain_in)
        return jax.tree.map(lambda x: x[None], chain_fn(one, shared))

    return run


def run_each_chain(
    single: Callable, chain_in: Any, shared: Any, num_chains: int, on_chain: Callable | None
) -> list:
    """Outputs of ``single(chain_c, shared)`` for each chain ``c`` in turn (``chain_in``'s
    leaves have a leading ``num_chains`` dim); ``on_chain`` as in :func:`map_chains`."""
    outs = []
    for c in range(num_chains):
        one = jax.tree.map(lambda x, c=c: x[c], chain_in)
        if on_chain is None:
            outs.append(single(one, shared))
        else:
            with on_chain(c) as record:
                outs.append(jax.block_until_ready(single(one, shared)))
                record(outs[-1])
    return outs


def map_chains(
    chain_fn: Callable,
    method: str,
    num_chains: int,
    on_chain: Callable | None = None,
    devices: Sequence[Any] | None = None,
) -> Callable:
    """Compile ``chain_fn(chain_in, shared)`` for ``num_chains`` chains.

    Args:
        chain_fn: the per-chain program.
        method: one of :data:`CHAIN_METHODS`.
        num_chains: number of chains ``C``.
        on_chain: for ``"sequential"``, ``on_chain(c)`` is called before chain ``c`` runs; it
            returns a context manager, closed after the chain, whose value is called with the
            chain's outputs (used for per-chain progress bars).
        devices: for ``"sharded"``, the devices to spread the chains over (default: all of
            ``jax.devices()``).

    Returns:
        ``run(chain_in, shared)`` where every leaf of ``chain_in`` has a leading ``C`` dim
        (``shared`` is the same for all chains); every output leaf has a leading ``C`` dim.
    """
    if method == "vectorized":
        if num_chains == 1:
            return jax.jit(_single(chain_fn))
        return jax.jit(jax.vmap(chain_fn, in_axes=(0, None)))
    if method == "sequential":
        single = jax.jit(chain_fn)

        def run_sequential(chain_in, shared):
            outs = run_each_chain(single, chain_in, shared, num_chains, on_chain)
            return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

        return run_sequential
    if method == "sharded":
        devices = list(jax.devices() if devices is None else devices)
        used, padded = shard_plan(num_chains, len(devices))
        mesh = Mesh(np.asarray(devices[:used]), (AXIS,))
        # One chain per device: run the single-chain program itself (as "sequential").
        local = _single(chain_fn) if padded == used else jax.vmap(chain_fn, in_axes=(0, None))
        mapped = jax.jit(
            jax.shard_map(
                local,
                mesh=mesh,
                in_specs=(P(AXIS), P()),
                out_specs=P(AXIS),
                check_vma=False,
            )
        )

        def run_sharded(chain_in, shared):
            out = mapped(_pad(chain_in, padded), shared)
            if padded == num_chains:
                return out
            return jax.tree.map(lambda x: x[:num_chains], out)

        return run_sharded
    raise ValueError(f"chain_method must be one of {CHAIN_METHODS}, got {method!r}")
