"""Per-chain warm-up and sampling programs, and how they are mapped over chains.

Each phase is written for one chain (a ``lax.scan`` over transitions) and mapped over chains:

* ``"vectorized"``: ``jit(vmap(chain_fn))``;
* ``"sharded"``: ``jit(shard_map(vmap(chain_fn)))`` over a 1-d mesh with axis ``"chain"``:
  each device runs ``vmap`` over its own chains, with no communication between devices. If
  ``num_chains`` is not a multiple of the number of devices used, the chains are **padded**
  (the last chain's inputs are repeated) and the padding is dropped from the results;
* ``"sequential"``: one compiled single-chain program called in a Python loop.

The per-chain programs are the same in the three modes, so for the same keys they give the same
draws (checked to be bitwise equal in the tests).
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
    "build_sample_chain",
    "build_warmup_chain",
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


def build_warmup_chain(
    sampler: Any,
    target: Any,
    rebuild: Callable,
    num_warmup: int,
    reporter: Callable | None,
    block_mask: np.ndarray | None,
) -> Callable:
    """``warm(chain_in, shared) -> (MCMCState for one chain, num_divergent ())``.

    ``chain_in = (position (d,), warmup_key, sampling_key)``; ``shared = (dynamic_args,
    every)``: the model's array arguments and the progress reporting interval (traced, so the
    host can change it without recompiling).
    """

    def warm(chain_in, shared):
        dynamic_args, every = shared
        position, key_warm, key_sample = chain_in
        args, kwargs = rebuild(dynamic_args)
        logdensity = target.make_logdensity(args, kwargs)
        progress_fn = None
        if reporter is not None:

            def progress_fn(index, info):
                _, accept, steps = sampler.progress_info(info)
                reporter(every, index, None, jnp.nan, accept, steps)

        kstate, step_size, imm, n_div = sampler.warmup(
            logdensity, num_warmup, key_warm, position, progress_fn, block_mask
        )
        state = MCMCState(
            position=kstate.position,
            logdensity=kstate.logdensity,
            logdensity_grad=kstate.logdensity_grad,
            step_size=jnp.asarray(step_size, kstate.position.dtype),
            inverse_mass_matrix=jnp.asarray(imm, kstate.position.dtype),
            rng_key=key_sample,
            step=jnp.zeros((), jnp.int32),
        )
        return state, n_div

    return warm


def build_sample_chain(
    sampler: Any,
    target: Any,
    rebuild: Callable,
    num_draws: int,
    thinning: int,
    fields: tuple[str, ...],
    reporter: Callable | None,
) -> Callable:
    """``sample(state, shared) -> (state, samples, fields, counts)`` for one chain, with
    ``shared = (dynamic_args, every)`` as in :func:`build_warmup_chain`.

    Runs ``num_draws * thinning`` transitions in a ``lax.scan`` over kept draws (an inner scan
    of ``thinning`` transitions each), keeps the last state of each block, and maps the kept
    positions to constrained samples (with deterministic sites) by ``vmap`` after the scan.

    Returns:
        ``state``: the :class:`MCMCState` after the last transition (``step`` advanced);
        ``samples``: pytree of ``(num_draws, ...)`` constrained values;
        ``fields``: dict of ``(num_draws, ...)`` statistics of the kept transitions;
        ``counts``: dict with ``num_divergent`` and ``num_max_tree_depth`` over *all*
        transitions of the run (``()`` int32 each).
    """
    max_depth = sampler.max_tree_depth

    def sample(state: MCMCState, shared):
        dynamic_args, every = shared
        args, kwargs = rebuild(dynamic_args)
        logdensity = target.make_logdensity(args, kwargs)
        kstep = sampler.sampling_step(logdensity)
        kstate0 = sampler.state_type(state.position, state.logdensity, state.logdensity_grad)

        def transition(kstate, t):
            key = jax.random.fold_in(state.rng_key, t)
            return kstep.step(key, kstate, state.step_size, state.inverse_mass_matrix)

        def block(carry, j):
            kstate, n_div_so_far = carry
            ts = state.step + j * thinning + jnp.arange(thinning, dtype=jnp.int32)
            kstate, infos = jax.lax.scan(transition, kstate, ts)
            last = {k: v[-1] for k, v in infos.items()}
            n_div = jnp.sum(infos["diverging"], dtype=jnp.int32)
            n_depth = jnp.zeros((), jnp.int32)
            if max_depth is not None:
                n_depth = jnp.sum(infos["tree_depth"] >= max_depth, dtype=jnp.int32)
            n_div_so_far = n_div_so_far + n_div
            if reporter is not None:
                reporter(
                    every,
                    j * thinning + thinning - 1,
                    n_div_so_far,
                    state.step_size,
                    last["accept_prob"],
                    last["num_steps"],
                )
            record = {k: last[k] for k in fields if k in last}
            if "potential_energy" in fields:
                record["potential_energy"] = -kstate.logdensity
            if "step_size" in fields:
                record["step_size"] = state.step_size
            if "z_grad" in fields:
                record["z_grad"] = -kstate.logdensity_grad
            record["z"] = kstate.position
            return (kstate, n_div_so_far), (record, n_depth)

        init = (kstate0, jnp.zeros((), jnp.int32))
        (kstate, n_div), (records, n_depth) = jax.lax.scan(
            block, init, jnp.arange(num_draws, dtype=jnp.int32)
        )
        draws = records.pop("z")
        if "z" in fields:
            records["z"] = draws
        if "inverse_mass_matrix" in fields:
            records["inverse_mass_matrix"] = jnp.broadcast_to(
                state.inverse_mass_matrix, (num_draws,) + state.inverse_mass_matrix.shape
            )
        postprocess = target.make_postprocess(args, kwargs)
        samples = jax.vmap(lambda z: postprocess(target.unravel(z)))(draws)
        new_state = state._replace(
            position=kstate.position,
            logdensity=kstate.logdensity,
            logdensity_grad=kstate.logdensity_grad,
            step=state.step + num_draws * thinning,
        )
        counts = {"num_divergent": n_div, "num_max_tree_depth": jnp.sum(n_depth)}
        return new_state, samples, records, counts

    return sample


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
        return jax.jit(jax.vmap(chain_fn, in_axes=(0, None)))
    if method == "sequential":
        single = jax.jit(chain_fn)

        def run_sequential(chain_in, shared):
            outs = []
            for c in range(num_chains):
                one = jax.tree.map(lambda x, c=c: x[c], chain_in)
                if on_chain is None:
                    outs.append(single(one, shared))
                else:
                    with on_chain(c) as record:
                        outs.append(jax.block_until_ready(single(one, shared)))
                        record(outs[-1])
            return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

        return run_sequential
    if method == "sharded":
        devices = list(jax.devices() if devices is None else devices)
        used, padded = shard_plan(num_chains, len(devices))
        mesh = Mesh(np.asarray(devices[:used]), (AXIS,))
        if padded == used:
            # One chain per device: run the single-chain program itself (as "sequential").
            def local(chain_in, shared):
                one = jax.tree.map(lambda x: x[0], chain_in)
                return jax.tree.map(lambda x: x[None], chain_fn(one, shared))
        else:
            local = jax.vmap(chain_fn, in_axes=(0, None))
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
