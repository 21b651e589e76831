"""User-facing Hamiltonian samplers: :class:`NUTS` and :class:`HMC`.

A sampler binds a target (a jppl model, or a ``potential_fn`` on a pytree of unconstrained
values) to the pure kernels (:mod:`jppl.mcmc.nuts`, :mod:`jppl.mcmc.hmc`) and to a warm-up
scheme (:mod:`jppl.mcmc.adaptation`). It holds options only; :class:`jppl.mcmc.MCMC` drives it
through the :class:`Sampler` protocol, which a new sampler satisfies to be driven the same way.

With a model, :func:`jppl.infer.initialize_model` provides the potential energy on the
unconstrained space; the dict of unconstrained latent sites is flattened to one ``(d,)`` vector
with :func:`jax.flatten_util.ravel_pytree` (sites in sorted-name order, each raveled in C
order) and the kernels see ``logdensity = -potential``.

Mass matrix structure (``dense_mass``):

* ``False``: diagonal ``(d,)`` inverse mass matrix; ``True``: dense ``(d, d)``;
* a list of groups of site names, e.g. ``[("a", "b"), ("c",)]``: block diagonal, dense within
  each group and diagonal for the coordinates of sites in no group. It is implemented by
  *adapting a full dense matrix and masking it* to the block structure: the Stan warm-up runs
  with a dense metric for the first 90% of ``num_warmup`` (so the Welford covariance of each
  block is exactly what a per-block estimator would give), the estimate is masked, and the last
  10% of the warm-up re-tunes the step size (dual averaging) for the masked metric. The matrix
  is stored as a ``(d, d)`` array, so memory and leapfrog cost are those of a dense metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jppl.handlers import substitute
from jppl.mcmc import adaptation as adapt
from jppl.mcmc import hmc, nuts
from jppl.model.blocked import potential_with_blocks, sharded_sites
from jppl.model.density import (
    constrain_fn,
    enumerate_discrete,
    explain_invalid_init,
    find_valid_initial_params,
    forward_mode_gradient,
    initialize_model,
)
from jppl.model.initialization import init_to_uniform
from jppl.parallel.blocks import BlockPlan

__all__ = ["HMC", "NUTS", "KernelStep", "Sampler", "Target"]

ADAPTATIONS = ("stan", "nutpie", "nutpie_low_rank")
# Options of the kernels (not of the warm-up scheme) that ``adaptation_options`` may set.
_KERNEL_OPTIONS = ("max_tree_depth", "num_integration_steps", "divergence_threshold")


class Target(NamedTuple):
    """A sampler's target for one signature of the model arguments (built on the host).

    Attributes:
        dim: ``d``, size of the flat unconstrained position.
        dtype: dtype of the flat position.
        prototype: pytree of unconstrained values of one chain (the structure ``unravel``
            returns).
        unravel: ``(d,) -> pytree`` of unconstrained values.
        make_logdensity: ``(args, kwargs) -> ((d,) -> ())`` log density on the flat
            unconstrained space (``-potential``); called inside traced code with traced args.
        make_postprocess: ``(args, kwargs) -> (pytree -> dict)`` mapping unconstrained values to
            the constrained samples (with deterministic sites); identity for a potential_fn.
        make_init: ``(keys (C,), args, kwargs) -> (positions (C, d), is_valid (C,))`` initial
            positions drawn with the init strategy, or ``None`` (potential_fn: init_params
            required).
        site_names: names of the top-level entries of the pytree (dict keys), in flat order.
        site_index: ``(d,)`` int array, the entry of ``site_names`` each coordinate belongs to
            (``-1`` if the pytree is not a dict).
        deterministic_sites: names of the model's deterministic sites.
        blocks: the data-block plan the log density uses (see :mod:`jppl.model.blocked`), or
            ``None`` (plain).
        make_plain_logdensity: with ``blocks``, ``make_logdensity`` without them (used to
            check the blocked one once); else ``None``.
        explain_init: ``(key, args, kwargs) -> None`` with concrete arguments: raises the
            cause (naming the site) when no valid initial position was found, by running the
            model once eagerly (:func:`jppl.model.density.explain_invalid_init`); ``None`` for
            a potential_fn.
    """

    dim: int
    dtype: Any
    prototype: Any
    unravel: Callable[[jax.Array], Any]
    make_logdensity: Callable[[tuple, dict], Callable[[jax.Array], jax.Array]]
    make_postprocess: Callable[[tuple, dict], Callable[[Any], Any]]
    make_init: Callable | None
    site_names: tuple[str, ...]
    site_index: np.ndarray
    deterministic_sites: tuple[str, ...]
    blocks: BlockPlan | None = None
    make_plain_logdensity: Callable | None = None
    explain_init: Callable | None = None


class KernelStep(NamedTuple):
    """The kernel transition, normalized across NUTS and HMC.

    ``step(key, state, step_size (), inverse_mass_matrix, warming ()) -> (state, info)`` where
    ``warming`` (bool) tells whether the transition belongs to the warm-up (HMC derives its
    number of leapfrog steps differently there) and ``info`` is a dict with ``diverging``,
    ``accept_prob``, ``num_steps``, ``energy`` (and ``tree_depth`` for NUTS) plus the optional
    fields listed in ``optional``.
    """

    step: Callable
    optional: tuple[str, ...]


@runtime_checkable
class Sampler(Protocol):
    """What :class:`~jppl.mcmc.MCMC` needs from a sampler (:class:`NUTS` and :class:`HMC`
    satisfy it). ``d`` is the size of the flat unconstrained position.

    The host side (eager, once per signature of the model arguments) builds a
    :class:`Target` with :meth:`bind`; the traced side builds, inside the compiled per-chain
    program, the warm-up (:meth:`make_warmup`) and the transition (:meth:`transition`) for
    the target's log density.

    Attributes:
        model: the jppl model sampled, or ``None`` for a sampler built from a
            ``potential_fn`` (then ``MCMC.run`` needs ``init_params``, and the ArviZ export
            has no model groups).
        state_type: the kernel's state class, built as ``state_type(position (d,),
            logdensity (), logdensity_grad (d,))`` to continue a chain from an
            :class:`~jppl.mcmc.state.MCMCState`.
        optional_fields: the statistics besides the defaults that :meth:`transition`'s info
            holds and ``MCMC.run(..., extra_fields=...)`` may ask for (e.g. ``"momentum"``).
    """

    model: Callable | None
    state_type: Callable[[jax.Array, jax.Array, jax.Array], Any]
    optional_fields: tuple[str, ...]

    @property
    def max_tree_depth(self) -> int | None:
        """The trajectory's tree-depth limit: its transitions report ``tree_depth`` and
        ``MCMC`` counts those that hit it; ``None`` for a kernel without trees."""
        ...

    def config(self) -> dict:
        """JSON-serializable options that fix what a saved run can be continued with (stored
        by ``MCMC.save``, compared by ``MCMC.load``)."""
        ...

    def bind(
        self,
        rng_key: jax.Array,
        model_args: tuple,
        model_kwargs: dict,
        init_params: Any = None,
        blocks: BlockPlan | None = None,
    ) -> Target:
        """The :class:`Target` for these model arguments (host side, eager; ``rng_key`` a
        scalar key). ``init_params`` (one chain's pytree) defines the structure for a
        ``potential_fn``; ``blocks`` is a data-block plan for a model traced under a mesh
        (see :mod:`jppl.model.blocked`)."""
        ...

    def block_mask(self, target: Target) -> np.ndarray | None:
        """``(d, d)`` bool mask of a block-diagonal inverse mass matrix, or ``None``."""
        ...

    def make_warmup(
        self, logdensity: Callable, num_warmup: int, block_mask: np.ndarray | None = None
    ) -> adapt.Adaptation:
        """The warm-up of one chain (traced) for ``logdensity: (d,) -> ()``: an
        :class:`~jppl.mcmc.adaptation.Adaptation` whose ``start`` / ``before`` / ``after``
        pieces the per-chain loop embeds, with ``num_warmup`` (static) transitions."""
        ...

    def transition(self, logdensity: Callable) -> KernelStep:
        """The kernel transition of both phases (traced) for ``logdensity: (d,) -> ()``."""
        ...


def _site_index(prototype: Any) -> tuple[tuple[str, ...], np.ndarray]:
    """Names of the top-level dict entries (sorted, as ``ravel_pytree`` orders them) and the
    ``(d,)`` index of the entry each flat coordinate belongs to (``-1`` if not a dict)."""
    if isinstance(prototype, dict):
        names = tuple(sorted(prototype))
        sizes = [int(ravel_pytree(prototype[name])[0].shape[0]) for name in names]
        return names, np.repeat(np.arange(len(names)), sizes)
    flat, _ = ravel_pytree(prototype)
    return (), np.full(flat.shape, -1, np.int64)


def _plates_fixed(model: Callable, model_trace: dict) -> Callable:
    plates = {name: s["value"] for name, s in model_trace.items() if s["type"] == "plate"}
    return substitute(model, data=plates) if plates else model


class _HamiltonianSampler:
    """Options shared by :class:`NUTS` and :class:`HMC` (see their docstrings)."""

    kernel_name = "hmc"
    state_type: Any = hmc.HMCState
    optional_fields: tuple[str, ...] = ()

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        *,
        step_size: float = 1.0,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        dense_mass: bool | Sequence[Sequence[str]] = False,
        target_accept_prob: float = 0.8,
        init_strategy: Callable = init_to_uniform,
        adaptation: str = adapt.DEFAULT_ADAPTATION,
        divergence_threshold: float = 1000.0,
        adaptation_options: dict | None = None,
        find_heuristic_step_size: bool = True,
        forward_mode_differentiation: bool = False,
        regularize_mass_matrix: bool = True,
    ):
        if (model is None) == (potential_fn is None):
            raise ValueError("Give exactly one of `model` and `potential_fn`.")
        if adaptation not in ADAPTATIONS:
            raise ValueError(f"adaptation must be one of {ADAPTATIONS}, got {adaptation!r}")
        if not 0.0 < float(target_accept_prob) < 1.0:
            raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob}")
        if not float(step_size) > 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        if not isinstance(dense_mass, bool):
            groups = [tuple(g) for g in dense_mass]
            if adaptation != "stan":
                raise ValueError("dense_mass groups are only supported with adaptation='stan'.")
            seen: set[str] = set()
            for group in groups:
                if not group or not all(isinstance(n, str) for n in group):
                    raise ValueError(
                        f"dense_mass groups must be non-empty tuples of site names, got {group!r}"
                    )
                overlap = seen.intersection(group)
                if overlap:
                    raise ValueError(
                        f"Sites {sorted(overlap)} appear in several dense_mass groups."
                    )
                seen.update(group)
            dense_mass = groups
        elif dense_mass and adaptation == "nutpie":
            raise ValueError(
                "adaptation='nutpie' adapts a diagonal mass matrix; use "
                "adaptation='nutpie_low_rank' (or 'stan' with dense_mass=True) for correlations."
            )
        self.model = model
        self.potential_fn = potential_fn
        self.step_size = float(step_size)
        self.adapt_step_size = bool(adapt_step_size)
        self.adapt_mass_matrix = bool(adapt_mass_matrix)
        self.dense_mass = dense_mass
        self.target_accept_prob = float(target_accept_prob)
        self.init_strategy = init_strategy
        self.adaptation = adaptation
        self.divergence_threshold = float(divergence_threshold)
        self.adaptation_options = dict(adaptation_options or {})
        if adaptation != "stan" and not (find_heuristic_step_size and regularize_mass_matrix):
            raise ValueError(
                "find_heuristic_step_size=False and regularize_mass_matrix=False apply to "
                f"Stan's windowed warm-up (adaptation='stan'), not to adaptation={adaptation!r}."
            )
        self.find_heuristic_step_size = bool(find_heuristic_step_size)
        self.forward_mode_differentiation = bool(forward_mode_differentiation)
        self.regularize_mass_matrix = bool(regularize_mass_matrix)

    # -- description ---------------------------------------------------------------------------

    @property
    def max_tree_depth(self) -> int | None:
        """The NUTS tree-depth limit (``None`` for HMC)."""
        return None

    def config(self) -> dict:
        """JSON-serializable options (stored by :meth:`MCMC.save` to check compatibility)."""
        dense = self.dense_mass if isinstance(self.dense_mass, bool) else list(self.dense_mass)
        return {
            "kernel": self.kernel_name,
            "dense_mass": dense,
            "adaptation": self.adaptation,
        }

    def _differentiable(self, logdensity: Callable) -> Callable:
        """``logdensity`` with its gradient in forward mode if ``forward_mode_differentiation``."""
        if self.forward_mode_differentiation:
            return forward_mode_gradient(logdensity)
        return logdensity

    def _is_block_dense(self) -> bool:
        return not isinstance(self.dense_mass, bool)

    def _is_dense(self) -> bool:
        return (
            self._is_block_dense() or bool(self.dense_mass) or self.adaptation == "nutpie_low_rank"
        )

    # -- binding the target ---------------------------------------------------------------------

    def bind(
        self,
        rng_key: jax.Array,
        model_args: tuple,
        model_kwargs: dict,
        init_params: Any = None,
        blocks: BlockPlan | None = None,
    ) -> Target:
        """Build the :class:`Target` for these model arguments (host side, eager).

        Args:
            rng_key: key used for the one eager initialization of the model.
            model_args, model_kwargs: arguments of the model (ignored for a potential_fn).
            init_params: for a potential_fn, the initial pytree (possibly with a leading chain
                dim) that defines the structure; required there.
            blocks: a data-block plan (:func:`jppl.parallel.blocks.plan_blocks`) for a model
                traced under a mesh: the likelihood of its plates sharded over ``blocks.axis``
                is then added in fixed blocks (:mod:`jppl.model.blocked`) when the model allows
                it (every site there observed, no subsampling); ignored otherwise.

        A model with discrete latent sites is sampled with them summed out exactly
        (enumerated, as NumPyro does; :func:`jppl.model.discrete.enumerate_discrete`).

        Raises:
            ValueError: for a discrete latent site whose support cannot be enumerated.
        """
        if self.model is None:
            if init_params is None:
                raise ValueError(
                    "A sampler built from `potential_fn` needs `init_params` in MCMC.run (the "
                    "initial unconstrained values, with a leading num_chains dim for several "
                    "chains)."
                )
            return self._bind_potential(init_params)
        return self._bind_model(rng_key, model_args, model_kwargs, blocks)

    def _bind_model(self, rng_key, model_args, model_kwargs, blocks) -> Target:
        model = enumerate_discrete(self.model, rng_key, model_args, model_kwargs)
        if model is not self.model:
            blocks = None  # the blocked likelihood sums sites; enumeration must contract them
        init_strategy = self.init_strategy
        forward_mode = self.forward_mode_differentiation
        found: dict[str, Any] = {}

        def abstract_init(key):
            info = initialize_model(
                key,
                model,
                init_strategy=init_strategy,
                model_args=model_args,
                model_kwargs=model_kwargs,
                dynamic_args=True,
                forward_mode_differentiation=forward_mode,
            )
            sites = info.model_trace.items()
            found["deterministic"] = tuple(n for n, s in sites if s["type"] == "deterministic")
            found["subsampled"] = any(
                s["type"] == "plate" and s["args"][1] < s["args"][0] for _, s in sites
            )
            if blocks is not None:
                found["sharded"] = sharded_sites(info.model_trace, blocks.axis)
            return info.param_info.z

        # Tracing (no compilation, no eager op-by-op run) finds the latent structure and raises
        # the model's errors (e.g. discrete latent sites that need marginalizing).
        def explain_init(key, args, kwargs):
            explain_invalid_init(
                key, model, init_strategy=init_strategy, model_args=args, model_kwargs=kwargs
            )

        try:
            shapes = jax.eval_shape(abstract_init, rng_key)
        except (jax.errors.JAXTypeError, jax.errors.JAXIndexError):
            # e.g. a validation check that needs concrete values: the eager run names the cause
            explain_init(rng_key, model_args, model_kwargs)
            raise
        if blocks is not None:
            observed, latent = found["sharded"]
            if found["subsampled"] or latent or not observed:
                blocks = None
        if found["subsampled"]:
            # A subsampling plate: fix the minibatch of one concrete initial run for all chains.
            info = initialize_model(
                rng_key,
                model,
                init_strategy=init_strategy,
                model_args=model_args,
                model_kwargs=model_kwargs,
                dynamic_args=True,
                forward_mode_differentiation=forward_mode,
            )
            potential_gen, postprocess_gen = info.potential_fn, info.postprocess_fn
            fixed_model = _plates_fixed(model, info.model_trace)
        else:
            fixed_model = model
            potential_gen = potential_with_blocks(model, blocks)

            def postprocess_gen(*args, **kwargs):
                return partial(constrain_fn, model, args, kwargs, return_deterministic=True)

        prototype = jax.tree.map(lambda t: jnp.zeros(t.shape, t.dtype), shapes)
        flat, unravel = ravel_pytree(prototype)
        names, index = _site_index(prototype)

        def logdensity_maker(gen):
            def make(args, kwargs):
                potential = gen(*args, **kwargs)
                return lambda x: -potential(unravel(x))

            return make

        make_logdensity = logdensity_maker(potential_gen)
        make_plain_logdensity = None
        if blocks is not None:
            make_plain_logdensity = logdensity_maker(potential_with_blocks(model, None))

        def make_postprocess(args, kwargs):
            return postprocess_gen(*args, **kwargs)

        def make_init(keys, args, kwargs):
            (z, _, _), is_valid = find_valid_initial_params(
                keys,
                fixed_model,
                init_strategy=init_strategy,
                model_args=args,
                model_kwargs=kwargs,
                prototype_params=prototype,
                forward_mode_differentiation=forward_mode,
            )
            # axis_size: a model without latent sites has an empty z (d = 0)
            positions = jax.vmap(lambda t: ravel_pytree(t)[0], axis_size=keys.shape[0])(z)
            return positions, is_valid

        return Target(
            dim=int(flat.shape[0]),
            dtype=flat.dtype,
            prototype=prototype,
            unravel=unravel,
            make_logdensity=make_logdensity,
            make_postprocess=make_postprocess,
            make_init=make_init,
            site_names=names,
            site_index=index,
            deterministic_sites=found["deterministic"],
            blocks=blocks,
            make_plain_logdensity=make_plain_logdensity,
            explain_init=explain_init,
        )

    def _bind_potential(self, init_params) -> Target:
        potential_fn = self.potential_fn
        leaves = jax.tree.leaves(init_params)
        if not leaves:
            raise ValueError("init_params is empty.")
        prototype = jax.tree.map(lambda x: jnp.asarray(x), init_params)
        flat, unravel = ravel_pytree(prototype)
        names, index = _site_index(prototype)

        def make_logdensity(args, kwargs):
            return lambda x: -potential_fn(unravel(x))

        def make_postprocess(args, kwargs):
            return lambda z: z

        return Target(
            dim=int(flat.shape[0]),
            dtype=flat.dtype,
            prototype=prototype,
            unravel=unravel,
            make_logdensity=make_logdensity,
            make_postprocess=make_postprocess,
            make_init=None,
            site_names=names,
            site_index=index,
            deterministic_sites=(),
        )

    def block_mask(self, target: Target) -> np.ndarray | None:
        """``(d, d)`` bool mask of the block-diagonal inverse mass matrix, or ``None``."""
        if not self._is_block_dense():
            return None
        if not target.site_names:
            raise ValueError("dense_mass groups need the unconstrained values to be a dict.")
        known = set(target.site_names)
        group_of = np.full(len(target.site_names), -1, np.int64)
        for g, group in enumerate(self.dense_mass):
            unknown = [n for n in group if n not in known]
            if unknown:
                raise ValueError(
                    f"dense_mass refers to unknown latent site(s) {unknown}; the latent sites "
                    f"are {list(target.site_names)}."
                )
            for name in group:
                group_of[target.site_names.index(name)] = g
        coord_group = group_of[target.site_index]
        same = (coord_group[:, None] == coord_group[None, :]) & (coord_group[:, None] >= 0)
        return same | np.eye(target.dim, dtype=bool)

    # -- kernels (traced) -----------------------------------------------------------------------

    def _kernel_options(self, step_size: float) -> dict:
        return {}

    def _warmup_kernel_options(self) -> dict:
        """The kernel's options during warm-up: ``divergence_threshold`` and
        :meth:`_kernel_options`, each overridden by ``adaptation_options`` if set there."""
        options = {
            "divergence_threshold": self.divergence_threshold,
            **self._kernel_options(self.step_size),
        }
        options.update({k: v for k, v in self.adaptation_options.items() if k in _KERNEL_OPTIONS})
        return options

    def _warmup_kernel(self, logdensity: Callable, options: dict) -> adapt.TunableKernel:
        """The kernel the warm-up tunes, with :meth:`_warmup_kernel_options`."""
        raise NotImplementedError

    def make_warmup(
        self, logdensity: Callable, num_warmup: int, block_mask: np.ndarray | None = None
    ) -> adapt.Adaptation:
        """The warm-up of one chain (traced): an :class:`~jppl.mcmc.adaptation.Adaptation`
        with this sampler's options, whose ``start``/``before``/``after`` pieces the chain
        driver embeds in its loop.

        Args:
            logdensity: ``(d,) -> ()``.
            num_warmup: number of warm-up transitions (static).
            block_mask: ``(d, d)`` mask for block-dense mass matrices (see the module doc).
        """
        logdensity = self._differentiable(logdensity)
        options = dict(
            target_accept_prob=self.target_accept_prob,
            initial_step_size=self.step_size,
            adapt_step_size=self.adapt_step_size,
            adapt_mass_matrix=self.adapt_mass_matrix,
        )
        if self.adaptation == "stan":
            options.update(
                regularize_mass_matrix=self.regularize_mass_matrix,
                find_heuristic_step_size=self.find_heuristic_step_size,
            )
        options.update(
            {k: v for k, v in self.adaptation_options.items() if k not in _KERNEL_OPTIONS}
        )
        options["kernel"] = self._warmup_kernel(logdensity, self._warmup_kernel_options())
        if self.adaptation == "stan":
            return adapt.window_adaptation(
                logdensity,
                num_warmup,
                dense_mass=self._is_dense(),
                block_mask=block_mask,
                **options,
            )
        return adapt.nutpie_adaptation(
            logdensity, num_warmup, low_rank=self.adaptation == "nutpie_low_rank", **options
        )

    def transition(self, logdensity: Callable) -> KernelStep:
        """The kernel transition of both phases as a :class:`KernelStep`."""
        raise NotImplementedError


class NUTS(_HamiltonianSampler):
    """The No-U-Turn Sampler (multinomial, generalized U-turn; Stan's variant).

    Args:
        model: a jppl model (give this or ``potential_fn``).
        potential_fn: ``pytree -> ()`` negative log density on an unconstrained pytree; then
            ``MCMC.run`` needs ``init_params``.
        step_size: initial step size (the start of the step-size search when adapted).
        adapt_step_size: tune the step size by dual averaging during warm-up.
        adapt_mass_matrix: tune the inverse mass matrix during warm-up.
        dense_mass: ``False`` (diagonal), ``True`` (dense) or a list of tuples of site names
            (block diagonal: dense within each group; see the module docstring).
        target_accept_prob: target mean acceptance statistic of the step-size adaptation.
        max_tree_depth: maximum number of trajectory doublings (``2^depth - 1`` steps).
        init_strategy: an ``init_to_*`` strategy (models only).
        adaptation: ``"stan"`` (windowed adaptation), ``"nutpie"`` (gradient-based diagonal)
            or ``"nutpie_low_rank"`` (diagonal plus low-rank correction, dense matrix).
        divergence_threshold: energy error counted as a divergence.
        adaptation_options: extra keyword arguments for the adaptation function (e.g.
            ``init_buffer``, ``switch_freq``).
        trajectory_length: accepted for NumPyro compatibility; as in NumPyro it has no effect
            on NUTS (the trajectory length is chosen by the U-turn criterion).
        max_tree_depth: an int, or NumPyro's ``(warmup, sampling)`` pair of depths (the
            warm-up transitions use the first; the tree-depth counts and warnings the second).
        find_heuristic_step_size: (``adaptation="stan"``) search a step size with the
            doubling/halving heuristic before the first warm-up transition and after each
            mass-matrix update, as Stan's warm-up does (jppl's default, unlike NumPyro's
            ``False``); ``False``: NumPyro's default behaviour, dual averaging starts and
            restarts there from the current step size, unsearched.
        forward_mode_differentiation: compute the gradient of the log density in forward
            mode (``jax.jacfwd``), as NumPyro: for models that reverse mode cannot
            differentiate (e.g. with ``lax.while_loop``); costs one JVP per coordinate.
        regularize_mass_matrix: (``adaptation="stan"``) shrink each window's covariance
            estimate towards ``1e-3`` times the identity, ``(n / (n + 5)) * cov + 1e-3 * (5 /
            (n + 5))`` (Stan's and NumPyro's default); ``False``: the plain sample estimate.
    """

    kernel_name = "nuts"
    state_type = nuts.NUTSState
    optional_fields = ("momentum", "is_turning")

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        *,
        step_size: float = 1.0,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        dense_mass: bool | Sequence[Sequence[str]] = False,
        target_accept_prob: float = 0.8,
        trajectory_length: float | None = None,
        max_tree_depth: int | tuple[int, int] = 10,
        init_strategy: Callable = init_to_uniform,
        adaptation: str = adapt.DEFAULT_ADAPTATION,
        divergence_threshold: float = 1000.0,
        adaptation_options: dict | None = None,
        find_heuristic_step_size: bool = True,
        forward_mode_differentiation: bool = False,
        regularize_mass_matrix: bool = True,
    ):
        super().__init__(
            model,
            potential_fn,
            step_size=step_size,
            adapt_step_size=adapt_step_size,
            adapt_mass_matrix=adapt_mass_matrix,
            dense_mass=dense_mass,
            target_accept_prob=target_accept_prob,
            init_strategy=init_strategy,
            adaptation=adaptation,
            divergence_threshold=divergence_threshold,
            adaptation_options=adaptation_options,
            find_heuristic_step_size=find_heuristic_step_size,
            forward_mode_differentiation=forward_mode_differentiation,
            regularize_mass_matrix=regularize_mass_matrix,
        )
        self.trajectory_length = None if trajectory_length is None else float(trajectory_length)
        pair = tuple(max_tree_depth) if isinstance(max_tree_depth, (tuple, list)) else None
        if pair is not None and len(pair) != 2:
            raise ValueError(
                f"max_tree_depth must be an int or a (warmup, sampling) pair, got {max_tree_depth}"
            )
        depths = tuple(int(d) for d in (pair or (max_tree_depth, max_tree_depth)))
        for depth in depths:
            if not 1 <= depth <= 30:
                raise ValueError(f"max_tree_depth must be between 1 and 30, got {max_tree_depth}")
        self._depths = depths  # (warm-up, sampling)
        self._max_tree_depth = depths if pair is not None else depths[0]

    @property
    def max_tree_depth(self) -> int:
        """The sampling transitions' tree-depth limit (the second of a pair)."""
        return self._depths[1]

    def config(self) -> dict:
        depth = self._max_tree_depth
        saved = list(depth) if isinstance(depth, tuple) else depth  # JSON has no tuples
        return {**super().config(), "max_tree_depth": saved}

    def _kernel_options(self, step_size: float) -> dict:
        return {"max_tree_depth": self._depths[0]}

    def _warmup_kernel(self, logdensity: Callable, options: dict) -> adapt.TunableKernel:
        return adapt.nuts_kernel(
            logdensity,
            max_tree_depth=options["max_tree_depth"],
            divergence_threshold=options["divergence_threshold"],
        )

    def transition(self, logdensity: Callable) -> KernelStep:
        warm_depth, sample_depth = self._depths
        kernel = nuts.build_kernel(
            self._differentiable(logdensity),
            max_tree_depth=max(warm_depth, sample_depth),
            divergence_threshold=self.divergence_threshold,
        )

        def step(key, state, step_size, inverse_mass_matrix, warming):
            params = nuts.NUTSParams(step_size, inverse_mass_matrix)
            if warm_depth == sample_depth:
                state, info = kernel(key, state, params)
            else:  # the same kernel, its doublings stopped at the phase's depth
                depth = jnp.where(warming, warm_depth, sample_depth)
                state, info = kernel(key, state, params, depth_limit=depth)
            return state, {
                "diverging": info.is_divergent,
                "accept_prob": info.acceptance_rate,
                "num_steps": info.num_steps,
                "tree_depth": info.tree_depth,
                "energy": info.energy,
                "momentum": info.momentum,
                "is_turning": info.is_turning,
            }

        return KernelStep(step, self.optional_fields)


class HMC(_HamiltonianSampler):
    """Hamiltonian Monte Carlo with a fixed trajectory length.

    Args:
        model: as for :class:`NUTS`, as are ``potential_fn``, ``step_size``,
            ``adapt_step_size``, ``adapt_mass_matrix``, ``dense_mass``, ``target_accept_prob``,
            ``init_strategy``, ``adaptation``, ``divergence_threshold`` and
            ``adaptation_options``.
        num_steps: number of leapfrog steps per transition. If ``None``, it is
            ``ceil(trajectory_length / step_size)`` (at most ``max_num_steps``): computed from
            the initial ``step_size`` during warm-up (the adaptation needs a fixed number) and
            from each chain's adapted step size during sampling.
        trajectory_length: integration time used when ``num_steps`` is ``None``.
        max_num_steps: upper bound on the derived number of leapfrog steps.
        find_heuristic_step_size, forward_mode_differentiation, regularize_mass_matrix: as
            for :class:`NUTS`.
    """

    kernel_name = "hmc"
    state_type = hmc.HMCState
    optional_fields = ("momentum", "is_accepted")

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        *,
        step_size: float = 1.0,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        dense_mass: bool | Sequence[Sequence[str]] = False,
        target_accept_prob: float = 0.8,
        num_steps: int | None = None,
        trajectory_length: float = 2.0 * math.pi,
        max_num_steps: int = 1024,
        init_strategy: Callable = init_to_uniform,
        adaptation: str = adapt.DEFAULT_ADAPTATION,
        divergence_threshold: float = 1000.0,
        adaptation_options: dict | None = None,
        find_heuristic_step_size: bool = True,
        forward_mode_differentiation: bool = False,
        regularize_mass_matrix: bool = True,
    ):
        super().__init__(
            model,
            potential_fn,
            step_size=step_size,
            adapt_step_size=adapt_step_size,
            adapt_mass_matrix=adapt_mass_matrix,
            dense_mass=dense_mass,
            target_accept_prob=target_accept_prob,
            init_strategy=init_strategy,
            adaptation=adaptation,
            divergence_threshold=divergence_threshold,
            adaptation_options=adaptation_options,
            find_heuristic_step_size=find_heuristic_step_size,
            forward_mode_differentiation=forward_mode_differentiation,
            regularize_mass_matrix=regularize_mass_matrix,
        )
        if num_steps is not None and int(num_steps) < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        if not float(trajectory_length) > 0:
            raise ValueError(f"trajectory_length must be positive, got {trajectory_length}")
        self.num_steps = None if num_steps is None else int(num_steps)
        self.trajectory_length = float(trajectory_length)
        self.max_num_steps = int(max_num_steps)

    def config(self) -> dict:
        return {
            **super().config(),
            "num_steps": self.num_steps,
            "trajectory_length": self.trajectory_length,
        }

    def _num_steps(self, step_size):
        if self.num_steps is not None:
            return self.num_steps
        n = jnp.ceil(self.trajectory_length / step_size)
        return jnp.clip(n, 1, self.max_num_steps).astype(jnp.int32)

    def _kernel_options(self, step_size: float) -> dict:
        n = self.num_steps
        if n is None:
            n = int(min(max(1, math.ceil(self.trajectory_length / step_size)), self.max_num_steps))
        return {"num_integration_steps": n}

    def _warmup_kernel(self, logdensity: Callable, options: dict) -> adapt.TunableKernel:
        return adapt.hmc_kernel(
            logdensity,
            num_integration_steps=options["num_integration_steps"],
            divergence_threshold=options["divergence_threshold"],
        )

    def transition(self, logdensity: Callable) -> KernelStep:
        kernel = hmc.build_kernel(
            self._differentiable(logdensity), divergence_threshold=self.divergence_threshold
        )
        warmup_steps = self._warmup_kernel_options()["num_integration_steps"]

        def step(key, state, step_size, inverse_mass_matrix, warming):
            num_steps = jnp.where(warming, warmup_steps, self._num_steps(step_size))
            params = hmc.HMCParams(step_size, inverse_mass_matrix, num_steps)
            state, info = kernel(key, state, params)
            return state, {
                "diverging": info.is_divergent,
                "accept_prob": info.acceptance_rate,
                "num_steps": info.num_integration_steps,
                "energy": info.energy,
                "momentum": info.momentum,
                "is_accepted": info.is_accepted,
            }

        return KernelStep(step, self.optional_fields)
