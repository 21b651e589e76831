"""NumPyro's functional HMC/NUTS interface: ``init_kernel, sample_kernel = hmc(potential_fn)``.

``sample_kernel`` is one pure transition ``HMCState -> HMCState``, warm-up included: during
the first ``num_warmup`` calls it also adapts the step size and the inverse mass matrix. It
is built on jppl's pure kernels (:mod:`jppl.mcmc.nuts`, :mod:`jppl.mcmc.hmc`) and Stan's
windowed warm-up scheme (:func:`jppl.mcmc.adaptation.window_scheme`), which is driven one
transition at a time here exactly as :mod:`jppl.mcmc.driver` drives it in ``MCMC``::

    state = before(state, key_adapt, flags[i])       # step-size search where due
    chain, info = kernel(key, chain, params(state))
    state = after(state, key_adapt, flags[i], chain, info.acceptance_rate)
    # after the last warm-up transition: params = final(state)

Example::

    init_kernel, sample_kernel = hmc(potential_fn, algo="NUTS")
    state = init_kernel(jnp.zeros(3), num_warmup=500, rng_key=jax.random.key(0))
    draws = fori_collect(500, 1500, sample_kernel, state, transform=lambda s: s.z)

Prefer :class:`~jppl.infer.MCMC` with :class:`~jppl.infer.NUTS`: it runs chains in parallel,
reports progress and diagnostics, and is what the rest of jppl supports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jppl.mcmc import HMC, NUTS
from jppl.mcmc import hmc as hmc_kernel
from jppl.mcmc import nuts as nuts_kernel
from jppl.mcmc.adaptation import AdaptationState, dual_averaging_init, window_scheme
from jppl.mcmc.metrics import gaussian_euclidean
from jppl.model.density import ParamInfo, forward_mode_gradient

# HMC and NUTS: `from numpyro.infer.hmc import NUTS` is a NumPyro import path too.
__all__ = ["HMC", "NUTS", "HMCState", "hmc"]

#: Energy error above which a transition is divergent (NumPyro's ``max_delta_energy``).
_DIVERGENCE_THRESHOLD = 1000.0


class HMCState(NamedTuple):
    """State of :func:`hmc`'s chain (NumPyro's field names).

    Attributes:
        i: ``()`` int, number of transitions done (warm-up included; not reset after it).
        z: the unconstrained position, with the pytree structure of ``init_params``.
        z_grad: gradient of the potential energy at ``z`` (same structure).
        potential_energy: ``()`` potential energy at ``z``.
        energy: ``()`` potential plus kinetic energy of the last transition's selected state.
        r: always ``None``: a fresh momentum is drawn at each transition.
        trajectory_length: ``()`` integration time of an HMC transition (unused by NUTS).
        num_steps: ``()`` int, leapfrog steps of the last transition.
        accept_prob: ``()`` acceptance statistic of the last transition.
        mean_accept_prob: ``()`` mean of ``accept_prob`` over the warm-up so far, then over
            the sampling transitions so far.
        diverging: ``()`` bool, whether the last transition diverged.
        adapt_state: the warm-up's
            :class:`~jppl.mcmc.adaptation.AdaptationState` (with ``chain=None``):
            ``step_size`` ``()`` and ``inverse_mass_matrix`` ``(d,)`` or ``(d, d)`` are those
            of the next transition (the tuned ones after the warm-up), ``dual_averaging`` and
            ``estimator`` the adaptation's running state.
        rng_key: the key of the next transition.
    """

    i: jax.Array
    z: Any
    z_grad: Any
    potential_energy: jax.Array
    energy: jax.Array
    r: Any
    trajectory_length: Any
    num_steps: jax.Array
    accept_prob: jax.Array
    mean_accept_prob: jax.Array
    diverging: jax.Array
    adapt_state: AdaptationState
    rng_key: jax.Array


def _block_mask(z: Any, dense_mass: Sequence[Sequence[str]]) -> np.ndarray:
    """``(d, d)`` bool mask of a block-diagonal inverse mass matrix over a dict ``z``."""
    if not isinstance(z, dict):
        raise ValueError(
            "dense_mass as a list of site-name groups needs init_params to be a dict of sites."
        )
    names = sorted(z)  # ravel_pytree's order for a dict
    sizes = [int(np.size(z[n])) for n in names]
    site_of = np.repeat(np.arange(len(names)), sizes)
    group_of_site = np.full(len(names), -1)
    for g, group in enumerate(dense_mass):
        for name in group:
            if name not in z:
                raise ValueError(
                    f"dense_mass refers to unknown site {name!r}; the sites are {names}."
                )
            group_of_site[names.index(name)] = g
    coord = group_of_site[site_of]
    same = (coord[:, None] == coord[None, :]) & (coord[:, None] >= 0)
    return same | np.eye(len(site_of), dtype=bool)


def hmc(
    potential_fn: Callable | None = None,
    potential_fn_gen: Callable | None = None,
    kinetic_fn: Callable | None = None,
    algo: str = "NUTS",
) -> tuple[Callable, Callable]:
    """NumPyro's functional HMC / NUTS: ``(init_kernel, sample_kernel)``.

    Args:
        potential_fn: ``z -> ()`` potential energy (negative log density) on a pytree ``z``
            with the structure of ``init_params``.
        potential_fn_gen: instead of ``potential_fn``, ``(*model_args, **model_kwargs) ->
            potential_fn``, so the same compiled ``sample_kernel`` serves changing data.
        kinetic_fn: a custom kinetic energy; not supported: jppl's kernels use the Gaussian
            kinetic energy ``p^T M^{-1} p / 2`` (NumPyro's default).
        algo: ``"NUTS"`` (adaptive path length) or ``"HMC"`` (fixed trajectory length).

    Returns:
        ``init_kernel(init_params, num_warmup, ...) -> HMCState`` and
        ``sample_kernel(hmc_state, model_args=(), model_kwargs=None) -> HMCState`` (see their
        docstrings). ``sample_kernel`` uses the options of the last ``init_kernel`` call.

    Raises:
        ValueError: an unknown ``algo``.
        NotImplementedError: a ``kinetic_fn``.
    """
    if algo not in ("HMC", "NUTS"):
        raise ValueError(f"hmc: algo must be 'HMC' or 'NUTS', got {algo!r}.")
    if kinetic_fn is not None:
        raise NotImplementedError(
            "hmc(kinetic_fn=...): jppl's kernels use the Gaussian kinetic energy "
            "p^T M^{-1} p / 2 (NumPyro's default); a custom kinetic energy is not supported."
        )
    if potential_fn is not None and potential_fn_gen is not None:
        raise ValueError("hmc: give only one of `potential_fn` and `potential_fn_gen`.")
    config: dict[str, Any] = {}

    def make_logdensity(unravel: Callable, pe_fn: Callable) -> Callable:
        def logdensity(x):
            return -pe_fn(unravel(x))

        return forward_mode_gradient(logdensity) if config["forward_mode"] else logdensity

    def make_parts(pe_fn: Callable):
        """The scheme and the kernel step(s) for the potential ``pe_fn``."""
        logdensity = make_logdensity(config["unravel"], pe_fn)
        scheme = None
        if config["num_warmup"] > 0:
            scheme = window_scheme(logdensity, config["num_warmup"], **config["scheme_options"])
        if algo == "NUTS":
            # One kernel for the larger depth; a transition may stop earlier (depth_limit).
            kernel = nuts_kernel.build_kernel(
                logdensity,
                max_tree_depth=max(config["max_tree_depth"]),
                divergence_threshold=_DIVERGENCE_THRESHOLD,
            )
        else:
            kernel = hmc_kernel.build_kernel(logdensity, divergence_threshold=_DIVERGENCE_THRESHOLD)
        return logdensity, scheme, kernel

    def init_kernel(
        init_params,
        num_warmup,
        step_size=1.0,
        inverse_mass_matrix=None,
        adapt_step_size=True,
        adapt_mass_matrix=True,
        dense_mass=False,
        target_accept_prob=0.8,
        *,
        num_steps=None,
        trajectory_length=2 * math.pi,
        max_tree_depth=10,
        find_heuristic_step_size=False,
        forward_mode_differentiation=False,
        regularize_mass_matrix=True,
        model_args=(),
        model_kwargs=None,
        rng_key=None,
    ) -> HMCState:
        """Initialize the chain at ``init_params`` and set the sampler's options.

        Args:
            init_params: the initial unconstrained position (any pytree of arrays), or a
                :class:`~jppl.infer.ParamInfo` ``(z, potential_energy, z_grad)``.
            num_warmup: number of warm-up transitions (the first calls of
                ``sample_kernel``; their draws are to be discarded).
            step_size: initial step size.
            inverse_mass_matrix: initial ``(d,)`` or ``(d, d)`` inverse mass matrix over the
                flattened position (``jax.flatten_util.ravel_pytree`` order); identity if
                ``None``.
            adapt_step_size: tune the step size by dual averaging during warm-up.
            adapt_mass_matrix: tune the inverse mass matrix in Stan's windows.
            dense_mass: ``False`` (diagonal), ``True`` (dense) or a list of tuples of site
                names of a dict ``init_params`` (block diagonal).
            target_accept_prob: target of the step-size adaptation.
            num_steps: HMC: a fixed number of leapfrog steps (with ``trajectory_length=None``).
            trajectory_length: HMC: the integration time; each transition takes
                ``ceil(trajectory_length / step_size)`` steps of size ``trajectory_length /
                num_steps``.
            max_tree_depth: NUTS: the tree-depth limit, or ``(warm-up, sampling)`` limits.
            find_heuristic_step_size: search a step size (Stan's doubling/halving) before
                the first transition and after each window end; ``False``: dual averaging
                restarts there from the current step size.
            forward_mode_differentiation: compute gradients in forward mode (``jax.jacfwd``),
                e.g. for a potential with a ``lax.while_loop``.
            regularize_mass_matrix: Stan's shrinkage of each window's estimate of the inverse
                mass matrix; ``False``: the plain sample (co)variance.
            model_args, model_kwargs: arguments of ``potential_fn_gen``.
            rng_key: PRNG key (default ``jax.random.key(0)``).

        Returns:
            the initial :class:`HMCState`.

        Raises:
            ValueError: no potential, bad options (HMC with both ``num_steps`` and
                ``trajectory_length``; ``dense_mass`` naming unknown sites).
            NotImplementedError: a dict ``inverse_mass_matrix``.
        """
        model_kwargs = {} if model_kwargs is None else model_kwargs
        if potential_fn_gen is not None:
            pe_fn = potential_fn_gen(*model_args, **model_kwargs)
        elif potential_fn is not None:
            pe_fn = potential_fn
        else:
            raise ValueError("hmc: give `potential_fn` or `potential_fn_gen`.")
        num_warmup = int(num_warmup)
        if num_warmup < 0:
            raise ValueError(f"init_kernel: num_warmup must be >= 0, got {num_warmup}.")
        if algo == "HMC" and num_steps is not None and trajectory_length is not None:
            raise ValueError(
                "init_kernel: with num_steps given, pass trajectory_length=None too. NumPyro "
                "then silently uses the step size trajectory_length / num_steps and ignores "
                "the adapted one."
            )
        if algo == "HMC" and num_steps is None and trajectory_length is None:
            raise ValueError("init_kernel: algo='HMC' needs num_steps or trajectory_length.")
        if isinstance(inverse_mass_matrix, dict):
            raise NotImplementedError(
                "init_kernel: a dict inverse_mass_matrix (per block of sites) is not "
                "supported; pass a (d,) or (d, d) array over the flattened position."
            )
        if isinstance(max_tree_depth, tuple):
            depths = (int(max_tree_depth[0]), int(max_tree_depth[1]))
        else:
            depths = (int(max_tree_depth), int(max_tree_depth))

        if isinstance(init_params, ParamInfo):
            z, pe, z_grad = init_params
        else:
            z, pe, z_grad = init_params, None, None
        z = jax.tree.map(jnp.asarray, z)
        flat, unravel = ravel_pytree(z)

        block_mask = None
        dense = dense_mass
        if not isinstance(dense_mass, bool):
            groups = [tuple(g) for g in dense_mass]
            dense = bool(groups)
            if groups:
                block_mask = _block_mask(z, groups)
                if block_mask.all():
                    block_mask = None
        scheme_options = dict(
            dense_mass=dense,
            target_accept_prob=float(target_accept_prob),
            initial_step_size=float(step_size),
            adapt_step_size=bool(adapt_step_size),
            adapt_mass_matrix=bool(adapt_mass_matrix),
            block_mask=block_mask,
            find_heuristic_step_size=bool(find_heuristic_step_size),
            regularize_mass_matrix=bool(regularize_mass_matrix),
        )
        config.update(
            num_warmup=num_warmup,
            unravel=unravel,
            forward_mode=bool(forward_mode_differentiation),
            max_tree_depth=depths,
            num_steps=None if num_steps is None else int(num_steps),
            scheme_options=scheme_options,
        )
        logdensity, scheme, _ = make_parts(pe_fn)

        rng_key = jax.random.key(0) if rng_key is None else rng_key
        key_hmc, _, key_momentum = jax.random.split(rng_key, 3)
        if pe is None or z_grad is None:
            logdensity_value, grad = jax.value_and_grad(logdensity)(flat)
        else:
            logdensity_value, grad = -jnp.asarray(pe), -ravel_pytree(z_grad)[0]
        chain = nuts_kernel.NUTSState(flat, logdensity_value, grad)
        dtype = flat.dtype
        if scheme is not None:
            adapt_state = scheme.init(chain, inverse_mass_matrix, step_size)
        else:
            imm = inverse_mass_matrix
            if imm is None:
                dim = flat.shape[0]
                imm = jnp.eye(dim, dtype=dtype) if dense else jnp.ones(dim, dtype)
            size = jnp.asarray(step_size, dtype)
            adapt_state = AdaptationState(
                None, size, jnp.asarray(imm, dtype), dual_averaging_init(size), None
            )
        metric = gaussian_euclidean(adapt_state.inverse_mass_matrix)
        momentum = metric.sample_momentum(key_momentum, flat)
        energy = -logdensity_value + metric.kinetic_energy(momentum)
        zero = jnp.zeros((), jnp.result_type(int))
        if trajectory_length is not None:
            trajectory_length = jnp.asarray(trajectory_length, dtype)
        return HMCState(
            i=zero,
            z=z,
            z_grad=jax.tree.map(lambda g: -g, unravel(grad)),
            potential_energy=-logdensity_value,
            energy=energy,
            r=None,
            trajectory_length=trajectory_length,
            num_steps=zero,
            accept_prob=jnp.zeros((), dtype),
            mean_accept_prob=jnp.zeros((), dtype),
            diverging=jnp.array(False),
            adapt_state=adapt_state._replace(chain=None),
            rng_key=key_hmc,
        )

    def sample_kernel(hmc_state: HMCState, model_args=(), model_kwargs=None) -> HMCState:
        """One transition (with adaptation while ``hmc_state.i < num_warmup``).

        Args:
            hmc_state: the current state.
            model_args, model_kwargs: arguments of ``potential_fn_gen`` (if given).

        Returns:
            the next :class:`HMCState`.
        """
        if not config:
            raise RuntimeError("hmc: call init_kernel before sample_kernel.")
        if hmc_state.r is not None:
            raise NotImplementedError(
                "sample_kernel: a persistent momentum (hmc_state.r not None) is not "
                "supported; jppl draws a fresh momentum at each transition."
            )
        model_kwargs = {} if model_kwargs is None else model_kwargs
        pe_fn = (
            potential_fn
            if potential_fn_gen is None
            else potential_fn_gen(*model_args, **model_kwargs)
        )
        _, scheme, kernel = make_parts(pe_fn)
        num_warmup = config["num_warmup"]
        unravel = config["unravel"]
        rng_key, key_step, key_adapt = jax.random.split(hmc_state.rng_key, 3)
        position = ravel_pytree(hmc_state.z)[0]
        chain = nuts_kernel.NUTSState(
            position, -hmc_state.potential_energy, -ravel_pytree(hmc_state.z_grad)[0]
        )
        i = hmc_state.i
        warming = i < num_warmup
        adapt_state = hmc_state.adapt_state
        flags = None
        if scheme is not None:
            t = jnp.clip(i, 0, num_warmup - 1)
            flags = tuple(jnp.asarray(a)[t] for a in scheme.schedule)
            adapt_state = jax.lax.cond(
                warming,
                lambda a: scheme.before(a._replace(chain=chain), key_adapt, flags)._replace(
                    chain=None
                ),
                lambda a: a,
                adapt_state,
            )
        step_size, imm = adapt_state.step_size, adapt_state.inverse_mass_matrix

        if algo == "NUTS":
            warm_depth, depth = config["max_tree_depth"]
            params = nuts_kernel.NUTSParams(step_size, imm)
            depth_limit = None if warm_depth == depth else jnp.where(warming, warm_depth, depth)
            new_chain, info = kernel(key_step, chain, params, depth_limit)
            num_steps = info.num_steps
        else:
            trajectory_length = hmc_state.trajectory_length
            if config["num_steps"] is not None:
                num_steps = jnp.asarray(config["num_steps"], jnp.int32)
            elif position.shape[0] == 0:
                num_steps = jnp.ones((), jnp.int32)
            else:
                num_steps = jnp.ceil(trajectory_length / step_size).astype(jnp.int32)
            if trajectory_length is not None:
                # A constant integration time, not step_size * num_steps.
                step_size = trajectory_length / num_steps
            params = hmc_kernel.HMCParams(step_size, imm, num_steps)
            hmc_chain = hmc_kernel.HMCState(*chain)
            new_chain, info = kernel(key_step, hmc_chain, params)
            new_chain = nuts_kernel.NUTSState(*new_chain)
            num_steps = info.num_integration_steps

        if scheme is not None:

            def adapt(a):
                a = a._replace(chain=chain)
                a = scheme.after(a, key_adapt, flags, new_chain, info.acceptance_rate)
                final_step_size, final_imm = scheme.final(a)
                last = i == num_warmup - 1
                return a._replace(
                    chain=None,
                    step_size=jnp.where(last, final_step_size, a.step_size),
                    inverse_mass_matrix=jnp.where(last, final_imm, a.inverse_mass_matrix),
                )

            adapt_state = jax.lax.cond(warming, adapt, lambda a: a, adapt_state)

        itr = i + 1
        n = jnp.where(warming, itr, itr - num_warmup).astype(hmc_state.mean_accept_prob.dtype)
        accept_prob = jnp.asarray(info.acceptance_rate, hmc_state.mean_accept_prob.dtype)
        mean_accept_prob = (
            hmc_state.mean_accept_prob + (accept_prob - hmc_state.mean_accept_prob) / n
        )
        return HMCState(
            i=itr,
            z=unravel(new_chain.position),
            z_grad=jax.tree.map(lambda g: -g, unravel(new_chain.logdensity_grad)),
            potential_energy=-new_chain.logdensity,
            energy=info.energy,
            r=None,
            trajectory_length=hmc_state.trajectory_length,
            num_steps=jnp.asarray(num_steps, hmc_state.num_steps.dtype),
            accept_prob=accept_prob,
            mean_accept_prob=mean_accept_prob,
            diverging=info.is_divergent,
            adapt_state=adapt_state,
            rng_key=rng_key,
        )

    return init_kernel, sample_kernel
