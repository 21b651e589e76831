"""Compositional Gibbs: :class:`Gibbs`, :class:`DiscreteGibbs` and :class:`CustomGibbs`
(NumPyro's names, parameters and semantics).

A :class:`Gibbs` sampler updates the latent sites of a model block by block: each block is a
``(kernel, sites)`` pair whose kernel (:class:`~jppl.mcmc.NUTS`, :class:`~jppl.mcmc.HMC`,
:class:`DiscreteGibbs` or :class:`CustomGibbs`) moves its own sites with every other latent
site held at its current value; the blocks are visited in order once per MCMC transition.
``sites`` is a list of site names, a selector called on a trace of the model (e.g.
:func:`discrete_latent_sites`), or ``None`` for the latent sites no other block owns.

Layout (the same as :class:`~jppl.mcmc.gibbs.HMCGibbs`'s, see :mod:`jppl.mcmc.gibbs`): the
chain's flat position ``(d,)`` holds every latent site in the sorted-name order of
``ravel_pytree``, the sites of the Hamiltonian (NUTS/HMC) blocks unconstrained and the others
constrained (discrete ones as floats). One :class:`~jppl.mcmc.gibbs.GibbsDensity` gives the
model's log joint on that position (with the Jacobians of the unconstrained sites); each block
sees it as a function of its own coordinates, the others fixed, which is the block's exact
conditional in this parameterization. The state's log density and gradient (on all
Hamiltonian coordinates) are those at the end of the sweep, so ``MCMC.save`` / ``load`` and
``post_warmup_state`` carry everything.

Warm-up: each Hamiltonian block runs its own warm-up (its sampler's ``adaptation``,
``dense_mass``, ``target_accept_prob``, ...) on its own coordinates, tuned to its own
acceptance statistic, against its conditional at the current values of the other sites. The
driver keeps one step size ``()`` and one inverse mass matrix ``(d,)`` / ``(d, d)`` per chain,
so the per-block pairs are stored folded: a leapfrog step of size ``e_k`` with ``M_k^{-1}``
is exactly a step of size ``e`` with ``(e_k / e)^2 M_k^{-1}`` (same trajectory, energies and
U-turn decisions). The state's ``step_size`` is ``e`` of the *reference* block (the HMC block
whose number of steps comes from ``trajectory_length``, else the first Hamiltonian block), and
its coordinates of ``inverse_mass_matrix`` hold that block's matrix unscaled; coordinates of
non-Hamiltonian blocks hold ones (identity). Hence at most one HMC block may derive its number
of leapfrog steps from ``trajectory_length`` (the others need ``num_steps``).

Supports that depend on another block's sites are allowed between NUTS/HMC and
:class:`DiscreteGibbs` blocks (each block's conditional is the joint on the flat position,
Jacobians included), not for sites a :class:`CustomGibbs` block owns (its ``gibbs_fn`` draws
given constrained values): a clear error at ``MCMC.run``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jppl.handlers import seed, substitute, trace
from jppl.mcmc.gibbs import (
    _GIBBS_KWARG,
    GibbsDensity,
    GibbsLayout,
    _conditioned,
    _gibbs_target,
    _outputs_depending_on,
    _prior_trace,
    discrete_sweep,
)
from jppl.mcmc.sampler import HMC, NUTS, KernelStep, Target
from jppl.model.density import forward_mode_gradient
from jppl.model.initialization import init_to_sample
from jppl.parallel.blocks import BlockPlan

__all__ = [
    "CustomGibbs",
    "DiscreteGibbs",
    "Gibbs",
    "GibbsBlocksState",
    "discrete_latent_sites",
    "latent_sample_sites",
]


# -- selectors (NumPyro's helpers, on a trace dict) ---------------------------------------------


def _infer(site: dict) -> dict:
    return site.get("infer") or {}


def latent_sample_sites(model_trace: dict) -> tuple[str, ...]:
    """Names of the unobserved ``sample`` sites of a model trace, in trace order."""
    return tuple(
        name
        for name, site in model_trace.items()
        if site["type"] == "sample" and not site["is_observed"]
    )


def discrete_latent_sites(model_trace: dict) -> tuple[str, ...]:
    """Unobserved ``sample`` sites whose distribution has an enumerable support and that are
    not marked ``infer={"enumerate": "parallel"}``, in trace order (a ``sites`` selector for
    :class:`Gibbs`)."""
    return tuple(
        name
        for name, site in model_trace.items()
        if site["type"] == "sample"
        and not site["is_observed"]
        and site["fn"].has_enumerate_support
        and _infer(site).get("enumerate") != "parallel"
    )


# -- block kernels -------------------------------------------------------------------------------


class CustomGibbs:
    """A block of :class:`Gibbs` updated by a user function (only usable as a block).

    Args:
        gibbs_fn: called with keywords ``gibbs_fn(rng_key=..., gibbs_sites=...,
            hmc_sites=...)``: ``gibbs_sites`` the current (constrained) values of the block's
            sites, ``hmc_sites`` the constrained values of *every other* latent site (NumPyro's
            name, kept for compatibility with ``HMCGibbs``). It returns new values of exactly
            the block's sites, each of its site's shape, and must draw them from their
            conditional distribution given the others (the user's responsibility). Traced.
    """

    kernel_name = "custom_gibbs"
    model = None
    # what MCMC reads of a sampler before binding; binding raises (see ``bind``)
    max_tree_depth = None
    optional_fields: tuple[str, ...] = ()

    def __init__(self, gibbs_fn: Callable) -> None:
        if not callable(gibbs_fn):
            raise ValueError("CustomGibbs: gibbs_fn must be a callable")
        self.gibbs_fn = gibbs_fn

    def block_config(self) -> dict:
        return {"kernel": self.kernel_name}

    def config(self) -> dict:
        return self.block_config()

    def bind(self, *args: Any, **kwargs: Any) -> Target:
        raise ValueError(
            "CustomGibbs has no model and is only usable as a block of Gibbs, e.g. "
            "MCMC(Gibbs([(CustomGibbs(gibbs_fn), ['y']), (NUTS(model), None)]))."
        )


class DiscreteGibbs:
    """Metropolis-within-Gibbs updates of discrete latent sites: each transition visits every
    coordinate of the block's sites once, in a random order, and proposes a new value from its
    support, accepted with the Metropolis-Hastings ratio of the model's joint (every other site
    fixed); the proposals are :class:`~jppl.mcmc.gibbs.DiscreteHMCGibbs`'s.

    A block of :class:`Gibbs`, or a sampler on its own for a model whose latent sites are all
    discrete (``MCMC(DiscreteGibbs(model))``, i.e. ``Gibbs([(DiscreteGibbs(model), None)])``).
    Sites marked ``infer={"enumerate": "parallel"}`` are summed out of the joint.

    Args:
        model: the model.
        random_walk: propose uniformly from the support instead of the exact conditional.
        modified: never propose the current value (Liu's modified Gibbs sampler, 1996).

    The supports must not depend on latent values or traced model arguments (give e.g.
    ``DiscreteUniform`` bounds as Python ints); sites need scalar events.
    """

    kernel_name = "discrete_gibbs"

    def __init__(self, model: Callable, *, random_walk: bool = False, modified: bool = False):
        if not callable(model):
            raise ValueError(f"DiscreteGibbs: model must be a callable, got {model!r}")
        self.model = model
        self.random_walk = bool(random_walk)
        self.modified = bool(modified)
        self._alone: Gibbs | None = None

    def block_config(self) -> dict:
        return {
            "kernel": self.kernel_name,
            "random_walk": self.random_walk,
            "modified": self.modified,
        }

    # The Sampler protocol on its own: the one-block Gibbs sampler.
    def _standalone(self) -> Gibbs:
        if self._alone is None:
            self._alone = Gibbs([(self, None)])
        return self._alone

    @property
    def state_type(self) -> Callable:
        return self._standalone().state_type

    @property
    def optional_fields(self) -> tuple[str, ...]:
        return ()

    @property
    def max_tree_depth(self) -> None:
        return None

    def config(self) -> dict:
        return self._standalone().config()

    def bind(self, *args: Any, **kwargs: Any) -> Target:
        return self._standalone().bind(*args, **kwargs)

    def block_mask(self, target: Target) -> None:
        return None

    def make_warmup(self, logdensity: Any, num_warmup: int, block_mask: Any = None) -> Any:
        return self._standalone().make_warmup(logdensity, num_warmup, block_mask)

    def transition(self, logdensity: Any) -> KernelStep:
        return self._standalone().transition(logdensity)


_BLOCK_TYPES = (NUTS, HMC, DiscreteGibbs, CustomGibbs)


# -- the composite -------------------------------------------------------------------------------


class GibbsBlocksState(NamedTuple):
    """The chain state of a :class:`Gibbs` sampler.

    Attributes:
        position: ``(d,)`` all latent sites (Hamiltonian blocks' sites unconstrained, others
            constrained), see the module docstring.
        logdensity: ``()`` the model's log joint there (with the Jacobians).
        logdensity_grad: ``(d,)`` its gradient on the Hamiltonian coordinates, zero elsewhere.
        block_accept_prob: ``(H,)`` the acceptance statistic of each Hamiltonian block's last
            transition (what each block's warm-up tunes its step size to).
    """

    position: jax.Array
    logdensity: jax.Array
    logdensity_grad: jax.Array
    block_accept_prob: jax.Array


class _Block(NamedTuple):
    """A resolved block (host side, static)."""

    kernel: Any
    sites: tuple[str, ...]  # sorted
    index: np.ndarray  # coordinates in the flat position, flat order
    hamiltonian: bool
    dense: bool  # its own inverse mass matrix is (n, n)
    mask: np.ndarray | None  # (n, n) dense_mass groups mask


class _Plan(NamedTuple):
    blocks: tuple[_Block, ...]
    hamiltonian: tuple[int, ...]  # indices of the non-empty Hamiltonian blocks
    reference: int | None  # index into ``blocks`` of the reference block
    dense: bool  # stored matrix is (d, d)
    custom_sites: tuple[str, ...]
    slots: dict  # block index -> its entry of ``block_accept_prob`` (Hamiltonian blocks)
    num_hamiltonian: int  # Hamiltonian blocks, empty ones included


class _BlocksDensity(GibbsDensity):
    """The :class:`GibbsDensity` of a :class:`Gibbs` sampler, with its resolved blocks."""

    def __init__(self, layout: GibbsLayout, model, args, kwargs, plan: _Plan):
        super().__init__(layout, model, args, kwargs)
        self.plan = plan


class _BlocksAdaptation(NamedTuple):
    """The composite warm-up state: the driver reads ``chain``, ``step_size`` and
    ``inverse_mass_matrix`` (folded, see the module docstring); ``blocks`` holds each
    Hamiltonian block's own ``AdaptationState`` (``chain=None``)."""

    chain: Any
    step_size: jax.Array
    inverse_mass_matrix: jax.Array
    blocks: tuple


class _Warmup(NamedTuple):
    start: Callable
    before: Callable
    after: Callable
    final: Callable
    schedule: tuple


def _spec_name(spec: Any) -> Any:
    if spec is None:
        return None
    if callable(spec):
        return getattr(spec, "__qualname__", repr(spec))
    return list(spec)


class Gibbs:
    """Gibbs sampling by blocks of latent sites, each updated by its own kernel.

    Args:
        blocks: a sequence of ``(kernel, sites)`` pairs, visited in order once per transition.
            ``kernel`` is a :class:`~jppl.mcmc.NUTS` or :class:`~jppl.mcmc.HMC` built from the
            model, a :class:`DiscreteGibbs` or a :class:`CustomGibbs`; the model-based ones
            must share one model. ``sites`` is a non-empty list of site names, a callable
            mapping a trace of the model (a dict of its sites) to site names (e.g.
            :func:`discrete_latent_sites`), or ``None``: the latent sites no other block owns
            (for at most one block; it may own none).

    Each block's kernel moves its own sites with every other latent site fixed at its current
    value. Every latent site must be owned by exactly one block, except sites marked
    ``infer={"enumerate": "parallel"}``, which are summed out. Discrete sites must belong to a
    :class:`DiscreteGibbs` or :class:`CustomGibbs` block, and a :class:`DiscreteGibbs` block
    owns discrete sites only. Each NUTS/HMC block adapts its own step size and mass matrix
    during warm-up (see the module docstring).

    ``init_params`` of ``MCMC.run`` gives every latent site: the NUTS/HMC blocks' sites
    unconstrained, the others constrained. Without it, the NUTS/HMC blocks' sites start from
    the first such block's ``init_strategy`` and the others from a prior draw.

    ``extra_fields``: ``accept_prob`` is the mean over the NUTS/HMC blocks, ``num_steps`` their
    total, ``diverging`` whether any diverged, ``tree_depth`` the deepest NUTS tree (counted as
    hitting the limit when a block hits its own), ``energy`` the reference block's.

    The state's ``step_size`` and ``inverse_mass_matrix`` hold the blocks' adapted pairs
    folded (see the module docstring). Not supported (a clear error): nested composites
    (``Gibbs``, ``HMCGibbs``, ... as blocks), kernels built from a ``potential_fn``,
    subsampling plates, mesh axes other than ``chain``, ``extra_fields`` such as ``momentum``.

    Example::

        def model(probs, locs):
            c = jppl.sample("c", dist.Categorical(probs))
            x = jppl.sample("x", dist.Normal(locs[c], 0.5))
            y = jppl.sample("y", dist.Normal(0.0, 2.0))
            jppl.sample("obs", dist.Normal(x + y, 1.0), obs=jnp.array([1.0]))

        def gibbs_fn(rng_key, gibbs_sites, hmc_sites):  # y | x, obs (conjugate)
            x = hmc_sites["x"]
            return {"y": dist.Normal(0.8 * (1 - x), jnp.sqrt(0.8)).sample(rng_key)}

        kernel = Gibbs([
            (DiscreteGibbs(model), discrete_latent_sites),
            (CustomGibbs(gibbs_fn), ["y"]),
            (NUTS(model), None),
        ])
        MCMC(kernel, num_warmup=100, num_samples=100).run(jax.random.key(0), probs, locs)
    """

    kernel_name = "gibbs"
    optional_fields: tuple[str, ...] = ()

    def __init__(self, blocks: Sequence[tuple[Any, Any]]):
        blocks = list(blocks)
        if not blocks:
            raise ValueError("Gibbs requires at least one block.")
        kernels, specs = [], []
        for i, block in enumerate(blocks):
            if not (isinstance(block, tuple) and len(block) == 2):
                raise ValueError(f"Gibbs: block {i} must be a (kernel, sites) pair, got {block!r}")
            kernel, spec = block
            if not isinstance(kernel, _BLOCK_TYPES):
                raise ValueError(
                    f"Gibbs: the kernel of block {i} ({type(kernel).__name__}) is not supported; "
                    "blocks are NUTS, HMC, DiscreteGibbs or CustomGibbs (nested composites such "
                    "as Gibbs or HMCGibbs are not)."
                )
            if isinstance(kernel, (NUTS, HMC)) and kernel.model is None:
                raise ValueError(
                    f"Gibbs: block {i}: kernels built from a potential function cannot be blocks "
                    "of Gibbs."
                )
            if isinstance(spec, str):
                raise ValueError(
                    f"Gibbs: the sites of block {i} must be a list of site names, got the "
                    f"string {spec!r} (write [{spec!r}])."
                )
            if spec is not None and not callable(spec):
                spec = tuple(spec)
                if not spec or not all(isinstance(s, str) for s in spec):
                    raise ValueError(
                        f"Gibbs: the sites of block {i} must be a non-empty sequence of site "
                        f"names, a callable or None; got {spec!r}."
                    )
                if len(set(spec)) != len(spec):
                    raise ValueError(f"Gibbs: the sites of block {i} repeat a name: {list(spec)}")
            kernels.append(kernel)
            specs.append(spec)
        if sum(spec is None for spec in specs) > 1:
            raise ValueError("Gibbs: at most one block can use None for its sites.")
        models = [k.model for k in kernels if k.model is not None]
        if not models:
            raise ValueError("Gibbs requires at least one block built on a model.")
        if any(m is not models[0] and m != models[0] for m in models[1:]):
            raise ValueError("Gibbs: all model-based blocks must share the same model.")
        self.model = models[0]
        self._kernels = tuple(kernels)
        self._specs = tuple(specs)
        trajectory = [
            i for i, k in enumerate(kernels) if isinstance(k, HMC) and k.num_steps is None
        ]
        if len(trajectory) > 1:
            raise ValueError(
                f"Gibbs: blocks {trajectory} are HMC kernels that derive their number of steps "
                "from trajectory_length; at most one block may (the per-block step sizes are "
                "stored relative to it), give the others num_steps=."
            )

    # -- description ---------------------------------------------------------------------------

    @property
    def blocks(self) -> tuple[tuple[Any, Any], ...]:
        """The ``(kernel, sites)`` pairs."""
        return tuple(zip(self._kernels, self._specs, strict=True))

    @property
    def state_type(self) -> Callable:
        """``(position, logdensity, logdensity_grad) -> GibbsBlocksState`` (the per-block
        acceptance statistics start at zero)."""
        count = sum(isinstance(k, (NUTS, HMC)) for k in self._kernels)

        def make(position, logdensity, logdensity_grad):
            return GibbsBlocksState(
                position, logdensity, logdensity_grad, jnp.zeros(count, position.dtype)
            )

        return make

    @property
    def max_tree_depth(self) -> int | None:
        depths = [k.max_tree_depth for k in self._kernels if isinstance(k, NUTS)]
        return max(depths) if depths else None

    def config(self) -> dict:
        blocks = []
        for kernel, spec in self.blocks:
            kind = kernel.config() if isinstance(kernel, (NUTS, HMC)) else kernel.block_config()
            blocks.append({"kernel": kind, "sites": _spec_name(spec)})
        return {"kernel": self.kernel_name, "blocks": blocks}

    # -- binding -------------------------------------------------------------------------------

    def _inspect(self, rng_key, args, kwargs):
        """Trace the model abstractly: ``(shapes, sites, subsampled, selected)`` where
        ``selected[i]`` are the names a callable ``sites`` of block ``i`` picked."""
        found: dict[str, Any] = {}
        model, specs = self.model, self._specs

        def run(key):
            tr = _prior_trace(model, key, args, kwargs)
            latent = {n: s for n, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}
            found["sites"] = {
                n: (
                    bool(s["fn"].is_discrete),
                    bool(s["fn"].has_enumerate_support),
                    tuple(s["fn"].event_shape),
                    _infer(s).get("enumerate") == "parallel",
                    type(s["fn"]).__name__,
                )
                for n, s in latent.items()
            }
            found["subsampled"] = any(
                s["type"] == "plate" and s["args"][1] < s["args"][0] for s in tr.values()
            )
            found["selected"] = {
                i: tuple(spec(tr)) for i, spec in enumerate(specs) if callable(spec)
            }
            return {n: s["value"] for n, s in latent.items()}

        shapes = jax.eval_shape(run, rng_key)
        return shapes, found["sites"], found["subsampled"], found["selected"]

    def _resolve(self, sites: dict, selected: dict) -> list[tuple[str, ...]]:
        latent = [n for n, info in sites.items() if not info[3]]
        marked = [n for n, info in sites.items() if info[3]]
        resolved: list[tuple[str, ...] | None] = []
        for i, spec in enumerate(self._specs):
            if spec is None:
                resolved.append(None)
                continue
            names = selected[i] if callable(spec) else spec
            unknown = [n for n in names if n not in latent]
            if unknown:
                hint = f" (marked enumerate='parallel': {marked})" if marked else ""
                raise ValueError(
                    f"Gibbs: sites {unknown} of block {i} are not latent sample sites of the "
                    f"model; its latent sites are {latent}{hint}."
                )
            if not names:
                raise ValueError(
                    f"Gibbs: block {i} ({type(self._kernels[i]).__name__}) owns no sites (its "
                    f"selector {_spec_name(spec)} picked none)."
                )
            resolved.append(tuple(names))
        owned = [n for names in resolved if names for n in names]
        shared = sorted({n for n in owned if owned.count(n) > 1})
        if shared:
            raise ValueError(f"Gibbs: sites {shared} are owned by more than one block.")
        remainder = tuple(n for n in latent if n not in owned)
        if None in resolved:
            resolved[resolved.index(None)] = remainder
        elif remainder:
            raise ValueError(
                f"Gibbs: latent sites {list(remainder)} are not owned by any block; add a block "
                "or use None as the sites of one block."
            )
        for i, (kernel, names) in enumerate(zip(self._kernels, resolved, strict=True)):
            name = type(kernel).__name__
            if isinstance(kernel, (NUTS, HMC)):
                discrete = [n for n in names if sites[n][0]]
                if discrete:
                    raise ValueError(
                        f"Gibbs: discrete latent sites {discrete} cannot be sampled by the {name} "
                        f"block {i}; give them to a DiscreteGibbs block (sites="
                        "discrete_latent_sites) or mark them infer={'enumerate': 'parallel'}."
                    )
            elif isinstance(kernel, DiscreteGibbs):
                for n in names:
                    is_discrete, enumerable, event, _, family = sites[n]
                    if not is_discrete:
                        raise ValueError(
                            f"Gibbs: DiscreteGibbs block {i} owns the continuous site '{n}' "
                            f"({family}); it updates discrete sites only."
                        )
                    if not enumerable:
                        raise ValueError(
                            f"Gibbs: discrete latent site '{n}' ({family}) has no enumerable "
                            "support (has_enumerate_support is False), so DiscreteGibbs cannot "
                            "update it; use a distribution with a finite support or a "
                            "CustomGibbs block."
                        )
                    if event:
                        raise ValueError(
                            f"Gibbs: discrete latent site '{n}' ({family}) has event shape "
                            f"{event}; DiscreteGibbs updates sites with scalar events only."
                        )
        return [tuple(names) for names in resolved]

    def bind(
        self,
        rng_key: jax.Array,
        model_args: tuple,
        model_kwargs: dict,
        init_params: Any = None,
        blocks: BlockPlan | None = None,
    ) -> Target:
        """The :class:`Target` on all latent sites (see the module docstring)."""
        if blocks is not None:
            raise NotImplementedError("Gibbs does not support MCMC(mesh=...) with a data axis.")
        model = self.model
        shapes, sites, subsampled, selected = self._inspect(rng_key, model_args, model_kwargs)
        if subsampled:
            raise NotImplementedError(
                "Gibbs does not support models with subsampling plates (plate(..., "
                "subsample_size=...))."
            )
        resolved = self._resolve(sites, selected)
        is_ham = [isinstance(k, (NUTS, HMC)) for k in self._kernels]
        other = sorted(n for names, h in zip(resolved, is_ham, strict=True) if not h for n in names)
        gibbs_shapes = {n: shapes[n] for n in other}
        placeholder = {n: jnp.zeros(s.shape, s.dtype) for n, s in gibbs_shapes.items()}
        ham_kernels = [k for k, h in zip(self._kernels, is_ham, strict=True) if h]
        # one target on every Hamiltonian site (its bind enumerates marked sites); its options
        # (init_strategy, forward mode) are the first Hamiltonian block's
        inner = copy.copy(ham_kernels[0] if ham_kernels else NUTS(model))
        inner.model = _conditioned(model)
        inner_target = inner.bind(rng_key, model_args, {**model_kwargs, _GIBBS_KWARG: placeholder})
        dtype = inner_target.dtype
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.zeros(()).dtype
        layout = GibbsLayout(inner_target, gibbs_shapes, dtype)
        plan = self._plan(layout, resolved, is_ham)
        if plan.custom_sites:
            self._check_custom(layout, plan, model_args, model_kwargs)

        def draw_others(key, args, kwargs):
            """Initial values of the non-Hamiltonian sites: a prior draw (init_to_sample)."""
            init_model = substitute(seed(model, rng_seed=key), substitute_fn=init_to_sample)
            tr = trace(init_model).get_trace(*args, **kwargs)
            return {n: tr[n]["value"] for n in layout.gibbs_sites}

        return _gibbs_target(
            "Gibbs",
            layout,
            inner_target,
            dtype,
            draw_others,
            lambda args, kwargs: _BlocksDensity(layout, model, args, kwargs, plan),
        )

    def _plan(self, layout: GibbsLayout, resolved, is_ham) -> _Plan:
        names = sorted(layout.prototype)
        sizes = [int(np.size(layout.prototype[n])) for n in names]
        starts = dict(zip(names, np.cumsum([0] + sizes[:-1]).tolist(), strict=True))
        size_of = dict(zip(names, sizes, strict=True))
        blocks = []
        for i, (kernel, sites, ham) in enumerate(zip(self._kernels, resolved, is_ham, strict=True)):
            sites = tuple(sorted(sites))
            index = np.concatenate(
                [np.arange(starts[n], starts[n] + size_of[n]) for n in sites] or [np.zeros(0)]
            ).astype(np.int64)
            dense, mask = False, None
            if ham:
                dense = kernel._is_dense()
                if kernel._is_block_dense():
                    site_of = np.concatenate(
                        [np.full(size_of[n], j) for j, n in enumerate(sites)] or [np.zeros(0)]
                    ).astype(np.int64)
                    group_of = np.full(len(sites), -1, np.int64)
                    for g, group in enumerate(kernel.dense_mass):
                        unknown = [n for n in group if n not in sites]
                        if unknown:
                            raise ValueError(
                                f"Gibbs: dense_mass of block {i} refers to site(s) {unknown} "
                                f"outside the block; its sites are {list(sites)}."
                            )
                        for n in group:
                            group_of[sites.index(n)] = g
                    coord = group_of[site_of]
                    mask = (coord[:, None] == coord[None, :]) & (coord[:, None] >= 0)
                    mask = mask | np.eye(len(coord), dtype=bool)
            blocks.append(_Block(kernel, sites, index, ham, dense, mask))
        hamiltonian = tuple(i for i, b in enumerate(blocks) if b.hamiltonian and b.index.size)
        reference = None
        for i in hamiltonian:
            kernel = blocks[i].kernel
            if isinstance(kernel, HMC) and kernel.num_steps is None:
                reference = i
        if reference is None and hamiltonian:
            reference = hamiltonian[0]
        dense = any(blocks[i].dense for i in hamiltonian)
        custom = tuple(n for b in blocks if isinstance(b.kernel, CustomGibbs) for n in b.sites)
        ham_all = [i for i, b in enumerate(blocks) if b.hamiltonian]
        slots = {i: j for j, i in enumerate(ham_all)}
        return _Plan(tuple(blocks), hamiltonian, reference, dense, custom, slots, len(ham_all))

    def _check_custom(self, layout, plan, args, kwargs) -> None:
        """Raise if the support of a Hamiltonian site depends on a CustomGibbs site: the chain
        holds it unconstrained, so a new custom value would move its constrained value, and
        ``gibbs_fn`` (a draw given the constrained values) would not be the conditional."""
        density = GibbsDensity(layout, self.model, args, kwargs)
        custom = np.concatenate([b.index for b in plan.blocks if isinstance(b.kernel, CustomGibbs)])
        where = np.searchsorted(layout.gibbs_index, custom)
        g0 = jnp.zeros(len(layout.gibbs_index), layout.dtype)
        x_h = jnp.zeros(len(layout.hmc_index), layout.dtype)

        def constrained(c, x):
            return density.inner_constrained(g0.at[where].set(c), x)

        c0 = jnp.zeros(len(custom), layout.dtype)
        moved = _outputs_depending_on(constrained, c0, x_h)
        names = sorted(layout.inner_target.prototype)
        dynamic = [n for n, m in zip(names, moved, strict=True) if m]
        if dynamic:
            raise ValueError(
                f"Gibbs: the support of site(s) {dynamic} depends on the CustomGibbs sites "
                f"{list(plan.custom_sites)}; a CustomGibbs block cannot own a site that sets "
                "the support of a NUTS/HMC block's site (give both to the NUTS/HMC block, or "
                "reparameterize)."
            )

    def block_mask(self, target: Target) -> None:
        """``None``: each block builds its own ``dense_mass`` mask."""
        return None

    # -- folding the per-block parameters --------------------------------------------------------

    @staticmethod
    def _fold(plan: _Plan, dim: int, dtype, pairs: dict) -> tuple[jax.Array, jax.Array]:
        """``{block: (step_size, inverse_mass_matrix)}`` -> the stored ``(step_size (),
        matrix (d,) or (d, d))`` (see the module docstring)."""
        if plan.reference is None:
            eye = jnp.eye(dim, dtype=dtype) if plan.dense else jnp.ones(dim, dtype)
            return jnp.ones((), dtype), eye
        ref = pairs[plan.reference][0]
        full = jnp.eye(dim, dtype=dtype) if plan.dense else jnp.ones(dim, dtype)
        for i in plan.hamiltonian:
            step_size, m = pairs[i]
            idx = plan.blocks[i].index
            m = (step_size / ref) ** 2 * m
            if not plan.dense:
                full = full.at[idx].set(m.astype(dtype))
            elif m.ndim == 1:
                full = full.at[idx, idx].set(m.astype(dtype))
            else:
                full = full.at[idx[:, None], idx[None, :]].set(m.astype(dtype))
        return jnp.asarray(ref, dtype), full

    @staticmethod
    def _unfold(plan: _Plan, block: _Block, matrix: jax.Array) -> jax.Array:
        """The block's (folded) inverse mass matrix from the stored one."""
        idx = block.index
        if matrix.ndim == 1:
            return matrix[idx]
        sub = matrix[idx[:, None], idx[None, :]]
        return sub if block.dense else jnp.diagonal(sub)

    # -- kernels (traced) ----------------------------------------------------------------------

    @staticmethod
    def _conditional(density: _BlocksDensity, x: jax.Array, block: _Block) -> Callable:
        """Block ``block``'s log density on its coordinates, the others fixed at ``x``."""
        idx = block.index
        return lambda y: density(x.at[idx].set(y))

    @staticmethod
    def _hamiltonian_grad(density: _BlocksDensity, x: jax.Array, forward: bool):
        """``(log joint (), its gradient (d,) on the Hamiltonian coordinates)`` at ``x``."""
        layout = density.layout
        x_h, g = layout.split(x)
        fn = density.conditional(g)
        fn = forward_mode_gradient(fn) if forward else fn
        ld, grad = jax.value_and_grad(fn)(x_h)
        return ld, layout.embed_grad(grad)

    def _forward(self) -> bool:
        return any(
            isinstance(k, (NUTS, HMC)) and k.forward_mode_differentiation for k in self._kernels
        )

    def _block_warmup(self, density, x, block: _Block, num_warmup: int):
        kernel = block.kernel
        return kernel.make_warmup(self._conditional(density, x, block), num_warmup, block.mask)

    def make_warmup(
        self, logdensity: _BlocksDensity, num_warmup: int, block_mask: Any = None
    ) -> _Warmup:
        """Each Hamiltonian block's warm-up on its own coordinates, the other sites at their
        current values in each piece; the driver sees the folded parameters."""
        density = logdensity
        plan = density.plan
        layout = density.layout
        dim, dtype = layout.dim, layout.dtype
        forward = self._forward()
        ham = plan.hamiltonian
        zero = jnp.zeros(dim, dtype)
        counts = [
            len(self._block_warmup(density, zero, plan.blocks[i], num_warmup).schedule) for i in ham
        ]
        schedule = tuple(
            a
            for i in ham
            for a in self._block_warmup(density, zero, plan.blocks[i], num_warmup).schedule
        )
        bounds = np.cumsum([0] + counts).tolist()

        def split_flags(flags):
            return [tuple(flags[bounds[j] : bounds[j + 1]]) for j in range(len(ham))]

        def inner(chain, block):
            idx = block.index
            return block.kernel.state_type(
                chain.position[idx], chain.logdensity, chain.logdensity_grad[idx]
            )

        def folded(states):
            pairs = {
                i: (s.step_size, s.inverse_mass_matrix) for i, s in zip(ham, states, strict=True)
            }
            return self._fold(plan, dim, dtype, pairs)

        def start(position):
            ld, grad = self._hamiltonian_grad(density, position, forward)
            chain = self.state_type(position, ld, grad)
            states = tuple(
                self._block_warmup(density, position, plan.blocks[i], num_warmup)
                .start(position[plan.blocks[i].index])
                ._replace(chain=None)
                for i in ham
            )
            step_size, matrix = folded(states)
            return _BlocksAdaptation(chain, step_size, matrix, states)

        def before(astate, key, flags):
            chain = astate.chain
            keys = jax.random.split(key, max(len(ham), 1))
            states = []
            for j, (i, s, f) in enumerate(zip(ham, astate.blocks, split_flags(flags), strict=True)):
                block = plan.blocks[i]
                w = self._block_warmup(density, chain.position, block, num_warmup)
                a = w.before(s._replace(chain=inner(chain, block)), keys[j], f)
                states.append(a._replace(chain=None))
            step_size, matrix = folded(states)
            return astate._replace(
                step_size=step_size, inverse_mass_matrix=matrix, blocks=tuple(states)
            )

        def after(astate, key, flags, new_chain, acceptance_rate):
            old = astate.chain
            keys = jax.random.split(key, max(len(ham), 1))
            states = []
            for j, (i, s, f) in enumerate(zip(ham, astate.blocks, split_flags(flags), strict=True)):
                block = plan.blocks[i]
                w = self._block_warmup(density, new_chain.position, block, num_warmup)
                a = w.after(
                    s._replace(chain=inner(old, block)),
                    keys[j],
                    f,
                    inner(new_chain, block),
                    new_chain.block_accept_prob[plan.slots[i]],
                )
                states.append(a._replace(chain=None))
            step_size, matrix = folded(states)
            return _BlocksAdaptation(new_chain, step_size, matrix, tuple(states))

        def final(astate):
            pairs = {}
            for i, s in zip(ham, astate.blocks, strict=True):
                w = self._block_warmup(density, zero, plan.blocks[i], num_warmup)
                pairs[i] = w.final(s)
            return self._fold(plan, dim, dtype, pairs)

        return _Warmup(start, before, after, final, schedule)

    def transition(self, logdensity: _BlocksDensity) -> KernelStep:
        """One sweep over the blocks, in order."""
        density = logdensity
        plan = density.plan
        forward = self._forward()
        tables = {}
        for i, block in enumerate(plan.blocks):
            if isinstance(block.kernel, DiscreteGibbs) and block.index.size:
                table, sizes = density.support_table("DiscreteGibbs", block.sites)
                tables[i] = (table, jnp.asarray(sizes))
        depths = {
            i: plan.blocks[i].kernel.max_tree_depth
            for i in plan.hamiltonian
            if isinstance(plan.blocks[i].kernel, NUTS)
        }
        deepest = self.max_tree_depth  # over every NUTS block, empty ones included

        def step(key, state, step_size, inverse_mass_matrix, warming):
            x = state.position
            ld = state.logdensity  # the log joint at x, or None when unknown
            keys = jax.random.split(key, len(plan.blocks))
            accepts = [jnp.ones((), x.dtype)] * plan.num_hamiltonian  # empty blocks: 1
            infos = {}
            for i, block in enumerate(plan.blocks):
                if not block.index.size:
                    continue
                kernel, idx = block.kernel, block.index
                if block.hamiltonian:
                    f = self._conditional(density, x, block)
                    fn = forward_mode_gradient(f) if kernel.forward_mode_differentiation else f
                    y = x[idx]
                    ld_y, grad_y = jax.value_and_grad(fn)(y)
                    matrix = self._unfold(plan, block, inverse_mass_matrix)
                    new, info = kernel.transition(f).step(
                        keys[i], kernel.state_type(y, ld_y, grad_y), step_size, matrix, warming
                    )
                    x = x.at[idx].set(new.position)
                    ld = new.logdensity
                    accepts[plan.slots[i]] = info["accept_prob"]
                    infos[i] = info
                elif isinstance(kernel, DiscreteGibbs):
                    table, sizes = tables[i]
                    pe0 = -(density(x) if ld is None else ld)

                    def potential(g, x=x, idx=idx):
                        return -density(x.at[idx].set(g))

                    g, pe = discrete_sweep(
                        keys[i],
                        x[idx],
                        pe0,
                        potential,
                        table,
                        sizes,
                        kernel.random_walk,
                        kernel.modified,
                    )
                    x = x.at[idx].set(g)
                    ld = -pe
                else:
                    x = x.at[idx].set(self._custom_update(keys[i], density, x, block))
                    ld = None
            ld, grad = self._hamiltonian_grad(density, x, forward)
            dtype = x.dtype
            accept = jnp.stack(accepts).astype(dtype) if accepts else jnp.zeros(0, dtype)
            new_state = GibbsBlocksState(x, ld, grad, accept)
            used = [accepts[plan.slots[i]] for i in plan.hamiltonian]
            out = {
                "diverging": jnp.zeros((), bool),
                "accept_prob": jnp.mean(jnp.stack(used)).astype(dtype)
                if used
                else jnp.ones((), dtype),
                "num_steps": jnp.zeros((), jnp.int32),
                "energy": -ld,
            }
            for info in infos.values():
                out["diverging"] = out["diverging"] | info["diverging"]
                out["num_steps"] = out["num_steps"] + jnp.asarray(info["num_steps"], jnp.int32)
            if plan.reference is not None:
                out["energy"] = infos[plan.reference]["energy"]
            if deepest is not None:
                # a block at its own limit reads as the deepest limit (the driver's count)
                levels = [
                    jnp.asarray(infos[i]["tree_depth"], jnp.int32) + (deepest - d)
                    for i, d in depths.items()
                ]
                out["tree_depth"] = (
                    jnp.max(jnp.stack(levels)) if levels else jnp.zeros((), jnp.int32)
                )
            return new_state, out

        return KernelStep(step, self.optional_fields)

    @staticmethod
    def _custom_update(key, density: _BlocksDensity, x: jax.Array, block: _Block) -> jax.Array:
        """The new coordinates of a CustomGibbs block (``gibbs_fn``'s draw)."""
        layout = density.layout
        x_h, g = layout.split(x)
        values = {**layout.gibbs_values(g), **density.inner_constrained(g, x_h)}
        current = {n: values.pop(n) for n in block.sites}
        new = block.kernel.gibbs_fn(rng_key=key, gibbs_sites=current, hmc_sites=values)
        if not isinstance(new, dict) or set(new) != set(block.sites):
            got = sorted(new) if isinstance(new, dict) else type(new).__name__
            raise ValueError(
                f"CustomGibbs: gibbs_fn must return a dict with exactly the sites "
                f"{list(block.sites)}, got {got}."
            )
        parts = []
        for n in block.sites:
            expected = layout.gibbs_shapes[n].shape
            if jnp.shape(new[n]) != expected:
                raise ValueError(
                    f"CustomGibbs: gibbs_fn returned a value of shape {jnp.shape(new[n])} for "
                    f"site '{n}'; expected {expected}."
                )
            parts.append(jnp.ravel(jnp.asarray(new[n])).astype(x.dtype))
        return jnp.concatenate(parts)
