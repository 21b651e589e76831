"""Gibbs within HMC: :class:`HMCGibbs`, :class:`DiscreteHMCGibbs` and :class:`MixedHMC`
(NumPyro's names, parameters and semantics).

Each :class:`HMCGibbs` / :class:`DiscreteHMCGibbs` transition is one Gibbs update of some
latent sites (the *Gibbs sites*) followed by one transition of an inner
:class:`~jppl.mcmc.NUTS` / :class:`~jppl.mcmc.HMC` on the other latent sites with the Gibbs
sites held fixed (conditioned on their current values); :class:`MixedHMC` interleaves the
discrete updates with one HMC trajectory. All are :class:`~jppl.mcmc.sampler.Sampler`\\ s, so
:class:`~jppl.mcmc.MCMC` drives them like NUTS: the whole step is inside the one compiled
per-chain loop, for every chain method.

The driver hands the sampler the target's log density unchanged: here a
:class:`GibbsDensity`, which also carries the model and its (traced) arguments, so that the
Gibbs update can condition the model on new values.

The chain's flat position ``(d,)`` holds every latent site: the inner kernel's sites
unconstrained and the Gibbs sites' constrained values (discrete ones as floats), in the
sorted-name order of ``ravel_pytree`` over the dict of all sites, so ``MCMCState`` (and hence
``MCMC.save`` / ``MCMC.load`` / ``post_warmup_state``) carries the Gibbs state too, and
``init_params`` is the dict of all latent sites (Gibbs sites constrained). The inner kernel's
warm-up adapts the step size and the mass matrix of its own coordinates; the state stores the
mass matrix padded to ``(d,)`` / ``(d, d)`` (ones / identity on the Gibbs coordinates, which
the kernel never uses).

A mesh over ``chain`` splits the chains over devices as for NUTS. Not supported (a clear
error): a ``potential_fn`` inner kernel, mesh axes other than ``chain`` (e.g. ``data``) and
models with subsampling plates.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core
from jax.flatten_util import ravel_pytree

from jppl.handlers import condition, seed, substitute, trace
from jppl.mcmc.integrators import IntegratorState, velocity_verlet
from jppl.mcmc.metrics import gaussian_euclidean
from jppl.mcmc.sampler import HMC, NUTS, KernelStep, Target
from jppl.model.density import forward_mode_gradient
from jppl.model.initialization import init_to_sample
from jppl.parallel.blocks import BlockPlan
from jppl.parallel.mesh import current_mesh

__all__ = [
    "DiscreteHMCGibbs",
    "GibbsState",
    "HMCGibbs",
    "MixedHMC",
    "discrete_sweep",
    "propose_discrete",
]

# The model keyword through which the inner kernel's model receives the Gibbs sites' values.
_GIBBS_KWARG = "_jppl_gibbs_values"


class GibbsState(NamedTuple):
    """The chain state of a Gibbs-within-HMC sampler.

    Attributes:
        position: ``(d,)`` all latent sites (inner sites unconstrained, Gibbs sites
            constrained), see the module docstring.
        logdensity: ``()`` the model's log joint (with the inner sites' log-Jacobians) there.
        logdensity_grad: ``(d,)`` its gradient in the inner coordinates, zero on the Gibbs
            coordinates.
    """

    position: jax.Array
    logdensity: jax.Array
    logdensity_grad: jax.Array


class _SiteInfo(NamedTuple):
    """What the sampler needs to know of a latent sample site (found by tracing once)."""

    name: str
    family: str
    is_discrete: bool
    has_enumerate_support: bool
    event_shape: tuple
    enumerate_parallel: bool


def _conditioned(model: Callable) -> Callable:
    """``model`` with the sites of the keyword ``_GIBBS_KWARG`` conditioned on its values."""

    def conditioned_model(*args, **kwargs):
        values = kwargs.pop(_GIBBS_KWARG, None) or {}
        return condition(model, data=values)(*args, **kwargs)

    return conditioned_model


def _prior_trace(model: Callable, key: jax.Array, args: tuple, kwargs: dict) -> dict:
    """A trace of ``model`` with its latent sites drawn from the prior (``init_to_sample``,
    which falls back to ``init_to_uniform`` for sites that cannot be sampled)."""
    init_model = substitute(seed(model, rng_seed=key), substitute_fn=init_to_sample)
    return trace(init_model).get_trace(*args, **kwargs)


def _inspect_model(model: Callable, rng_key: jax.Array, args: tuple, kwargs: dict):
    """Trace ``model`` abstractly (nothing computed): ``({latent site: ShapeDtypeStruct},
    {latent site: _SiteInfo}, subsampled)``."""
    found: dict[str, Any] = {}

    def run(key):
        tr = _prior_trace(model, key, args, kwargs)
        latent = {
            name: s for name, s in tr.items() if s["type"] == "sample" and not s["is_observed"]
        }
        found["sites"] = {
            name: _SiteInfo(
                name,
                type(s["fn"]).__name__,
                bool(s["fn"].is_discrete),
                bool(s["fn"].has_enumerate_support),
                tuple(s["fn"].event_shape),
                (s.get("infer") or {}).get("enumerate") == "parallel",
            )
            for name, s in latent.items()
        }
        found["subsampled"] = any(
            s["type"] == "plate" and s["args"][1] < s["args"][0] for s in tr.values()
        )
        return {name: s["value"] for name, s in latent.items()}

    shapes = jax.eval_shape(run, rng_key)
    return shapes, found["sites"], found["subsampled"]


def _outputs_depending_on(fn: Callable, first: Any, *rest: Any) -> list[bool]:
    """For each output leaf of ``fn(first, *rest)``, whether it depends on ``first`` (a forward
    pass over the jaxpr; a higher-order primitive counts all its inputs)."""
    closed = jax.make_jaxpr(fn)(first, *rest)
    num_first = len(jax.tree.leaves(first))
    marked = set(closed.jaxpr.invars[:num_first])
    for eqn in closed.jaxpr.eqns:
        if any(isinstance(v, jex_core.Var) and v in marked for v in eqn.invars):
            marked.update(eqn.outvars)
    return [isinstance(v, jex_core.Var) and v in marked for v in closed.jaxpr.outvars]


class GibbsLayout:
    """Where each site lives in the flat position, and the inner kernel's target.

    Called on a flat position ``(d,)`` it returns the dict of all latent sites (the
    ``unravel`` of the :class:`~jppl.mcmc.sampler.Target`: inner sites unconstrained, Gibbs
    sites constrained in their own dtypes).

    Attributes:
        inner_target: the inner sampler's :class:`Target` on its sites (``(d_h,)``).
        gibbs_sites: names of the Gibbs sites (sorted).
        gibbs_shapes: ``{name: ShapeDtypeStruct}`` of their values.
        hmc_index, gibbs_index: ``(d_h,)`` and ``(d_g,)`` NumPy int arrays, the coordinates of
            the inner and the Gibbs sites in the flat position.
        dim: ``d = d_h + d_g``.
    """

    def __init__(self, inner_target: Target, gibbs_shapes: dict[str, Any], dtype: Any):
        self.inner_target = inner_target
        self.gibbs_sites = tuple(sorted(gibbs_shapes))
        self.gibbs_shapes = dict(gibbs_shapes)
        self.dtype = dtype
        gibbs_proto = {n: jnp.zeros(s.shape, dtype) for n, s in gibbs_shapes.items()}
        _, self._unravel_gibbs = ravel_pytree(gibbs_proto)
        hmc_proto = inner_target.prototype
        self.prototype = {**hmc_proto, **gibbs_proto}
        flat, self._unravel = ravel_pytree(self.prototype)
        marks = {n: np.full(np.shape(v), n in gibbs_shapes) for n, v in self.prototype.items()}
        is_gibbs = np.concatenate([np.ravel(marks[n]) for n in sorted(marks)] or [np.zeros(0)])
        self.is_gibbs = is_gibbs.astype(bool)
        self.hmc_index = np.flatnonzero(~self.is_gibbs)
        self.gibbs_index = np.flatnonzero(self.is_gibbs)
        self.dim = int(flat.shape[0])

    def __call__(self, x: jax.Array) -> dict:
        z = self._unravel(x)
        for name in self.gibbs_sites:
            z[name] = z[name].astype(self.gibbs_shapes[name].dtype)
        return z

    def split(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(d,) -> ((d_h,) inner coordinates, (d_g,) Gibbs coordinates)``."""
        return x[self.hmc_index], x[self.gibbs_index]

    def join(self, x_h: jax.Array, g: jax.Array) -> jax.Array:
        """Inverse of :meth:`split`."""
        x = jnp.zeros(self.dim, x_h.dtype)
        return x.at[self.hmc_index].set(x_h).at[self.gibbs_index].set(g.astype(x_h.dtype))

    def gibbs_values(self, g: jax.Array) -> dict:
        """``(d_g,)`` -> ``{Gibbs site: value}`` in the sites' dtypes."""
        values = self._unravel_gibbs(g.astype(self.dtype))
        return {n: v.astype(self.gibbs_shapes[n].dtype) for n, v in values.items()}

    def ravel_gibbs(self, values: dict) -> jax.Array:
        """``{Gibbs site: value}`` -> ``(d_g,)``."""
        parts = [jnp.ravel(jnp.asarray(values[n])).astype(self.dtype) for n in self.gibbs_sites]
        return jnp.concatenate(parts) if parts else jnp.zeros(0, self.dtype)

    def embed_matrix(self, m: jax.Array) -> jax.Array:
        """The inner ``(d_h,)`` / ``(d_h, d_h)`` inverse mass matrix padded to ``d`` (ones /
        identity on the Gibbs coordinates)."""
        idx = self.hmc_index
        if m.ndim == 1:
            return jnp.ones(self.dim, m.dtype).at[idx].set(m)
        return jnp.eye(self.dim, dtype=m.dtype).at[idx[:, None], idx[None, :]].set(m)

    def slice_matrix(self, m: jax.Array) -> jax.Array:
        """Inverse of :meth:`embed_matrix`."""
        idx = self.hmc_index
        return m[idx] if m.ndim == 1 else m[idx[:, None], idx[None, :]]

    def embed_grad(self, grad_h: jax.Array) -> jax.Array:
        return jnp.zeros(self.dim, grad_h.dtype).at[self.hmc_index].set(grad_h)


class GibbsDensity:
    """The log density the driver hands to a Gibbs sampler: the model's log joint on the
    flat position ``(d,) -> ()``, with what the Gibbs update needs (the model arguments).

    Attributes:
        layout: the :class:`GibbsLayout`.
        model: the user's model; ``args``, ``kwargs`` its (possibly traced) arguments.
    """

    def __init__(self, layout: GibbsLayout, model: Callable, args: tuple, kwargs: dict):
        self.layout, self.model, self.args, self.kwargs = layout, model, args, kwargs

    def _inner_kwargs(self, g: jax.Array) -> dict:
        return {**self.kwargs, _GIBBS_KWARG: self.layout.gibbs_values(g)}

    def conditional(self, g: jax.Array) -> Callable[[jax.Array], jax.Array]:
        """The inner sites' log density ``(d_h,) -> ()`` with the Gibbs sites at ``g``
        ``(d_g,)`` (the model's log joint as a function of the inner sites)."""
        return self.layout.inner_target.make_logdensity(self.args, self._inner_kwargs(g))

    def __call__(self, x: jax.Array) -> jax.Array:
        x_h, g = self.layout.split(x)
        return self.conditional(g)(x_h)

    def inner_constrained(self, g: jax.Array, x_h: jax.Array) -> dict:
        """Constrained values of the inner sites (no deterministic sites)."""
        post = self.layout.inner_target.make_postprocess(self.args, self._inner_kwargs(g))
        values = post(self.layout.inner_target.unravel(x_h))
        return {k: values[k] for k in self.layout.inner_target.prototype}

    def support_table(
        self, who: str = "DiscreteHMCGibbs", sites: Sequence[str] | None = None
    ) -> tuple[jax.Array, np.ndarray]:
        """``(values (K, d_g), sizes (d_g,))``: the support of each Gibbs coordinate (padded
        with its last value to the largest support ``K``) and its size (static). With
        ``sites`` (a subset of the Gibbs sites), only their coordinates, in flat order.

        The supports are read from one run of the model with its sites drawn from the prior
        (once per compiled program, outside the loop), so they must not depend on latent
        values, and bounds such as ``DiscreteUniform``'s or ``Binomial``'s ``total_count``
        must be concrete (Python ints)."""
        tr = _prior_trace(self.model, jax.random.key(0), self.args, self.kwargs)
        columns = []
        chosen = self.layout.gibbs_sites if sites is None else sorted(sites)
        for name in chosen:
            fn = tr[name]["fn"]
            shape = self.layout.gibbs_shapes[name].shape
            try:
                support = fn.enumerate_support(expand=True)
            except (NotImplementedError, jax.errors.ConcretizationTypeError) as e:
                raise ValueError(
                    f"{who}: the support of discrete site '{name}' "
                    f"({type(fn).__name__}) cannot be enumerated inside the compiled loop ({e}). "
                    "Its support must be fixed: give its bounds as Python ints, not depending "
                    "on other latent sites or on traced model arguments."
                ) from e
            k = support.shape[0]
            batch = support.shape[1:]
            lead = len(shape) - len(batch)
            support = jnp.broadcast_to(support.reshape((k,) + (1,) * lead + batch), (k, *shape))
            columns.append(support.reshape(k, -1))
        k_max = max(c.shape[0] for c in columns)
        sizes = np.concatenate([np.full(c.shape[1], c.shape[0], np.int32) for c in columns])
        padded = [
            jnp.concatenate([c, jnp.broadcast_to(c[-1:], (k_max - c.shape[0], c.shape[1]))])
            for c in columns
        ]
        return jnp.concatenate(padded, axis=1).astype(self.layout.dtype), sizes


def propose_discrete(
    key: jax.Array,
    g: jax.Array,
    pe: jax.Array,
    j: jax.Array,
    potential: Callable[[jax.Array], jax.Array],
    table: jax.Array,
    sizes: jax.Array,
    random_walk: bool,
    modified: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A proposal for Gibbs coordinate ``j`` and its Metropolis-Hastings log ratio.

    Args:
        key: PRNG key.
        g: ``(d_g,)`` current Gibbs coordinates, ``pe`` ``()`` the potential energy there.
        j: ``()`` int, the coordinate to move.
        potential: ``(d_g,) -> ()`` potential energy (minus the log joint) of the coordinates.
        table, sizes: :meth:`GibbsDensity.support_table`'s ``(K, d_g)`` support values and
            ``(d_g,)`` support sizes.
        random_walk, modified: the proposal (see :class:`DiscreteHMCGibbs`).

    Returns:
        ``(proposal (d_g,), its potential energy (), log acceptance ratio ())``: accepting
        with probability ``min(1, exp(log ratio))`` leaves the conditional of ``j`` invariant
        (the ratio is 0 for the exact conditional draw, ``-inf`` for a coordinate with one
        value under a modified proposal).
    """
    size, values = sizes[j], table[:, j]
    slots = jnp.arange(table.shape[0])
    current = jnp.argmax(values == g[j])

    def energy(candidate):
        e = potential(candidate)
        return jnp.where(jnp.isnan(e), jnp.inf, e)

    if random_walk:
        if modified:
            k = jax.random.randint(key, (), 0, jnp.maximum(size - 1, 1))
            k = k + (k >= current)
        else:
            k = jax.random.randint(key, (), 0, size)
        proposal = g.at[j].set(values[k])
        pe_new = energy(proposal)
        log_ratio = pe - pe_new
    else:
        energies = jax.vmap(lambda v: energy(g.at[j].set(v)))(values)
        logp = jnp.where(slots < size, -energies, -jnp.inf)
        if modified:
            others = jnp.where(slots == current, -jnp.inf, logp)
            k = jax.random.categorical(key, others)
            rest = jnp.where(slots == k, -jnp.inf, logp)
            # (1 - p(current)) / (1 - p(new)) under the conditional of coordinate j
            log_ratio = jax.nn.logsumexp(others) - jax.nn.logsumexp(rest)
        else:
            k = jax.random.categorical(key, logp)
            log_ratio = jnp.zeros((), pe.dtype)
        proposal = g.at[j].set(values[k])
        pe_new = energies[k]
    if modified:  # a coordinate with a single value cannot move
        log_ratio = jnp.where(size > 1, log_ratio, -jnp.inf)
    return proposal, pe_new, log_ratio.astype(pe.dtype)


def discrete_sweep(
    key: jax.Array,
    g0: jax.Array,
    pe0: jax.Array,
    potential: Callable[[jax.Array], jax.Array],
    table: jax.Array,
    sizes: jax.Array,
    random_walk: bool,
    modified: bool,
) -> tuple[jax.Array, jax.Array]:
    """One Metropolis-within-Gibbs sweep over the discrete coordinates ``g0`` ``(d_g,)``:
    each coordinate visited once in a random order, moved by :func:`propose_discrete` and
    accepted with its Metropolis-Hastings ratio.

    Args:
        key: PRNG key.
        g0: ``(d_g,)`` current coordinates; ``pe0`` ``()`` the potential energy there.
        potential: ``(d_g,) -> ()`` potential energy of the coordinates (others fixed).
        table, sizes, random_walk, modified: as for :func:`propose_discrete`.

    Returns:
        ``(new coordinates (d_g,), their potential energy ())``.
    """

    def visit(i, carry):
        g, pe, key = carry
        key, key_prop, key_accept = jax.random.split(key, 3)
        proposal, pe_new, log_ratio = propose_discrete(
            key_prop, g, pe, order[i], potential, table, sizes, random_walk, modified
        )
        accept = jax.random.exponential(key_accept, dtype=pe.dtype) > -log_ratio
        accept = accept & jnp.isfinite(pe_new)
        return jnp.where(accept, proposal, g), jnp.where(accept, pe_new, pe), key

    key_order, key_visit = jax.random.split(key)
    order = jax.random.permutation(key_order, g0.shape[0])
    g, pe, _ = jax.lax.fori_loop(0, g0.shape[0], visit, (g0, pe0, key_visit))
    return g, pe


def _gibbs_target(
    name: str,
    layout: GibbsLayout,
    inner_target: Target,
    dtype: Any,
    draw_gibbs: Callable[[jax.Array, tuple, dict], dict],
    make_density: Callable[[tuple, dict], Any],
) -> Target:
    """The :class:`Target` of a Gibbs sampler over all latent sites (``layout``): the inner
    target's sites with the Gibbs sites' values (``draw_gibbs(key, args, kwargs)`` at
    initialization) appended; ``make_density(args, kwargs)`` builds the log density handed
    to the sampler. Shared by the samplers here and :mod:`jppl.mcmc.gibbs_blocks`."""

    def make_logdensity(args, kwargs):
        mesh = current_mesh()
        if mesh is not None and any(
            size > 1 for axis, size in dict(mesh.shape).items() if axis != "chain"
        ):
            raise NotImplementedError(
                f"{name} supports a mesh over 'chain' only (MCMC(mesh=make_mesh(chain=k))); "
                f"got axes {dict(mesh.shape)}."
            )
        return make_density(args, kwargs)

    def make_postprocess(args, kwargs):
        def postprocess(z):
            g = {n: z[n] for n in layout.gibbs_sites}
            inner_kwargs = {**kwargs, _GIBBS_KWARG: g}
            z_h = {k: v for k, v in z.items() if k not in g}
            return {**inner_target.make_postprocess(args, inner_kwargs)(z_h), **g}

        return postprocess

    def make_init(keys, args, kwargs):
        def one(key):
            key_g, key_h = jax.random.split(key)
            g = draw_gibbs(key_g, args, kwargs)
            inner_kwargs = {**kwargs, _GIBBS_KWARG: g}
            x_h, valid = inner_target.make_init(key_h[None], args, inner_kwargs)
            return layout.join(x_h[0].astype(dtype), layout.ravel_gibbs(g)), valid[0]

        return jax.lax.map(one, keys)

    def explain_init(key, args, kwargs):
        key_g, key_h = jax.random.split(key)
        g = draw_gibbs(key_g, args, kwargs)
        inner_target.explain_init(key_h, args, {**kwargs, _GIBBS_KWARG: g})

    names = tuple(sorted(layout.prototype))
    sizes = [int(np.size(layout.prototype[n])) for n in names]
    return Target(
        dim=layout.dim,
        dtype=dtype,
        prototype=layout.prototype,
        unravel=layout,
        make_logdensity=make_logdensity,
        make_postprocess=make_postprocess,
        make_init=make_init,
        site_names=names,
        site_index=np.repeat(np.arange(len(names)), sizes),
        deterministic_sites=inner_target.deterministic_sites,
        explain_init=explain_init,
    )


class _GibbsWarmup(NamedTuple):
    """The inner sampler's warm-up seen through the Gibbs layout (the pieces the driver
    embeds: see :class:`jppl.mcmc.adaptation.Adaptation`)."""

    start: Callable
    before: Callable
    after: Callable
    final: Callable
    schedule: tuple


class _GibbsBase:
    """The :class:`~jppl.mcmc.sampler.Sampler` of a Gibbs update of some sites followed by an
    inner NUTS/HMC transition of the others. Subclasses choose the Gibbs sites
    (:meth:`_select_sites`) and the update (:meth:`_gibbs_update`)."""

    kernel_name = "gibbs"
    state_type = GibbsState

    def __init__(self, inner_kernel: Any):
        name = type(self).__name__
        if not isinstance(inner_kernel, (NUTS, HMC)):
            raise ValueError(f"{name}: inner_kernel must be an HMC or NUTS sampler.")
        if inner_kernel.model is None:
            raise ValueError(f"{name} does not support models specified via a potential function.")
        self.inner_kernel = inner_kernel
        self._inner = copy.copy(inner_kernel)
        self._inner.model = _conditioned(inner_kernel.model)

    # -- description ---------------------------------------------------------------------------

    @property
    def model(self) -> Callable:
        return self.inner_kernel.model

    @property
    def optional_fields(self) -> tuple[str, ...]:
        return self.inner_kernel.optional_fields

    @property
    def max_tree_depth(self) -> int | None:
        return self.inner_kernel.max_tree_depth

    def config(self) -> dict:
        return {"kernel": self.kernel_name, "inner": self.inner_kernel.config()}

    # -- binding ---------------------------------------------------------------------------------

    def _select_sites(self, sites: dict[str, _SiteInfo]) -> tuple[str, ...]:
        raise NotImplementedError

    def _check_layout(self, layout: GibbsLayout, args: tuple, kwargs: dict) -> None:
        """Raise for a model this sampler cannot handle (host side, once per target)."""

    def bind(
        self,
        rng_key: jax.Array,
        model_args: tuple,
        model_kwargs: dict,
        init_params: Any = None,
        blocks: BlockPlan | None = None,
    ) -> Target:
        """The :class:`Target` on all latent sites (see the module docstring)."""
        name = type(self).__name__
        if blocks is not None:
            raise NotImplementedError(f"{name} does not support MCMC(mesh=...).")
        model = self.inner_kernel.model
        shapes, sites, subsampled = _inspect_model(model, rng_key, model_args, model_kwargs)
        if subsampled:
            raise NotImplementedError(
                f"{name} does not support models with subsampling plates (plate(..., "
                "subsample_size=...))."
            )
        gibbs = self._select_sites(sites)
        gibbs_shapes = {n: shapes[n] for n in gibbs}
        placeholder = {n: jnp.zeros(s.shape, s.dtype) for n, s in gibbs_shapes.items()}
        inner_target = self._inner.bind(
            rng_key, model_args, {**model_kwargs, _GIBBS_KWARG: placeholder}
        )
        dtype = inner_target.dtype
        if not jnp.issubdtype(dtype, jnp.floating):  # no continuous site: a float position
            dtype = jnp.zeros(()).dtype
        layout = GibbsLayout(inner_target, gibbs_shapes, dtype)
        self._check_layout(layout, model_args, model_kwargs)
        init_strategy = self.inner_kernel.init_strategy

        def draw_gibbs(key, args, kwargs):
            """Initial Gibbs values: the init strategy (continuous sites), else the prior."""
            init_model = substitute(seed(model, rng_seed=key), substitute_fn=init_strategy)
            tr = trace(init_model).get_trace(*args, **kwargs)
            return {n: tr[n]["value"] for n in layout.gibbs_sites}

        return _gibbs_target(
            name,
            layout,
            inner_target,
            dtype,
            draw_gibbs,
            lambda args, kwargs: GibbsDensity(layout, model, args, kwargs),
        )

    def block_mask(self, target: Target) -> np.ndarray | None:
        """The inner sampler's ``(d_h, d_h)`` block mask (``dense_mass`` groups of its sites),
        or ``None``."""
        return self._inner.block_mask(target.unravel.inner_target)

    # -- kernels (traced) -----------------------------------------------------------------------

    def _inner_warmup(self, density: GibbsDensity, g, num_warmup, block_mask):
        return self._inner.make_warmup(density.conditional(g), num_warmup, block_mask)

    def make_warmup(
        self, logdensity: GibbsDensity, num_warmup: int, block_mask: np.ndarray | None = None
    ) -> _GibbsWarmup:
        """The inner sampler's warm-up on its coordinates, the Gibbs sites at their current
        values in each piece (see :class:`jppl.mcmc.adaptation.Adaptation`)."""
        layout = logdensity.layout
        inner_state = self.inner_kernel.state_type

        def to_inner(astate, chain):
            x_h = chain.position[layout.hmc_index]
            grad_h = chain.logdensity_grad[layout.hmc_index]
            return astate._replace(
                chain=inner_state(x_h, chain.logdensity, grad_h),
                inverse_mass_matrix=layout.slice_matrix(astate.inverse_mass_matrix),
            )

        def from_inner(astate, chain):
            return astate._replace(
                chain=chain, inverse_mass_matrix=layout.embed_matrix(astate.inverse_mass_matrix)
            )

        def warmup_at(chain):
            g = jnp.zeros(len(layout.gibbs_index), layout.dtype)
            if chain is not None:
                g = chain.position[layout.gibbs_index]
            return self._inner_warmup(logdensity, g, num_warmup, block_mask)

        def start(position):
            x_h, g = layout.split(position)
            a = self._inner_warmup(logdensity, g, num_warmup, block_mask).start(x_h)
            chain = GibbsState(
                position, a.chain.logdensity, layout.embed_grad(a.chain.logdensity_grad)
            )
            return from_inner(a, chain)

        def before(astate, key, flags):
            chain = astate.chain
            a = warmup_at(chain).before(to_inner(astate, chain), key, flags)
            return from_inner(a, chain)

        def after(astate, key, flags, new_chain, acceptance_rate):
            inner_new = to_inner(astate, new_chain).chain
            a = warmup_at(new_chain).after(
                to_inner(astate, astate.chain), key, flags, inner_new, acceptance_rate
            )
            return from_inner(a, new_chain)

        def final(astate):
            inner = astate._replace(
                chain=None, inverse_mass_matrix=layout.slice_matrix(astate.inverse_mass_matrix)
            )
            step_size, matrix = warmup_at(None).final(inner)
            return step_size, layout.embed_matrix(matrix)

        return _GibbsWarmup(start, before, after, final, warmup_at(None).schedule)

    def _gibbs_update(
        self, key: jax.Array, density: GibbsDensity, state: GibbsState, context: Any
    ) -> jax.Array:
        """The new Gibbs coordinates ``(d_g,)`` (traced)."""
        raise NotImplementedError

    def _gibbs_context(self, density: GibbsDensity) -> Any:
        """Loop-invariant values the update needs, computed once per compiled program."""
        return None

    def transition(self, logdensity: GibbsDensity) -> KernelStep:
        """One Gibbs update of the Gibbs sites, then one inner transition of the others."""
        layout = logdensity.layout
        context = self._gibbs_context(logdensity)
        inner_state = self.inner_kernel.state_type
        forward = self.inner_kernel.forward_mode_differentiation

        def step(key, state, step_size, inverse_mass_matrix, warming):
            key_gibbs, key_inner = jax.random.split(key)
            g = self._gibbs_update(key_gibbs, logdensity, state, context)
            x_h = state.position[layout.hmc_index]
            conditional = logdensity.conditional(g)
            # the Gibbs sites moved: the inner state's log density and gradient at them
            fn = forward_mode_gradient(conditional) if forward else conditional
            ld, grad = jax.value_and_grad(fn)(x_h)
            kernel = self._inner.transition(conditional)
            matrix = layout.slice_matrix(inverse_mass_matrix)
            new, info = kernel.step(
                key_inner, inner_state(x_h, ld, grad), step_size, matrix, warming
            )
            position = layout.join(new.position, g)
            return (
                GibbsState(position, new.logdensity, layout.embed_grad(new.logdensity_grad)),
                info,
            )

        return KernelStep(step, self.optional_fields)


class HMCGibbs(_GibbsBase):
    """HMC-within-Gibbs: a user Gibbs update of some sites, then NUTS/HMC on the others.

    Each transition draws new values of ``gibbs_sites`` with ``gibbs_fn``, then runs one
    transition of ``inner_kernel`` on the other latent sites with the Gibbs sites conditioned
    on their new values. The inner kernel's warm-up (step size, mass matrix) adapts as for
    plain NUTS. It is the user's responsibility that ``gibbs_fn`` samples from the
    conditional distribution of the Gibbs sites given the others.

    Args:
        inner_kernel: a :class:`~jppl.mcmc.NUTS` or :class:`~jppl.mcmc.HMC` built from a model.
        gibbs_fn: ``gibbs_fn(rng_key, gibbs_sites, hmc_sites) -> {site: value}`` (called with
            keywords): ``gibbs_sites`` the current values of the Gibbs sites, ``hmc_sites`` the
            constrained values of the inner kernel's sites; returns new (constrained) values of
            exactly the Gibbs sites, each of its site's shape. Traced (jit-compiled).
        gibbs_sites: names of the latent sites updated by ``gibbs_fn`` (continuous or
            discrete).

    Samples (``MCMC.get_samples()``) hold every latent site, Gibbs sites included.
    ``init_params`` of ``MCMC.run`` gives every latent site: inner sites unconstrained, Gibbs
    sites constrained. Without it, continuous Gibbs sites start from the inner kernel's
    ``init_strategy`` and discrete ones from a prior draw.
    """

    kernel_name = "hmc_gibbs"

    def __init__(self, inner_kernel: Any, gibbs_fn: Callable, gibbs_sites: Sequence[str]):
        super().__init__(inner_kernel)
        if not callable(gibbs_fn):
            raise ValueError("HMCGibbs: gibbs_fn must be a callable")
        if isinstance(gibbs_sites, str):
            gibbs_sites = [gibbs_sites]
        gibbs_sites = tuple(gibbs_sites)
        if not gibbs_sites or not all(isinstance(n, str) for n in gibbs_sites):
            raise ValueError(
                f"HMCGibbs: gibbs_sites must be a non-empty list of site names, got {gibbs_sites}"
            )
        if len(set(gibbs_sites)) != len(gibbs_sites):
            raise ValueError(f"HMCGibbs: gibbs_sites has repeated names: {list(gibbs_sites)}")
        self._gibbs_fn = gibbs_fn
        self._gibbs_sites = gibbs_sites

    @property
    def gibbs_fn(self) -> Callable:
        return self._gibbs_fn

    @property
    def gibbs_sites(self) -> tuple[str, ...]:
        return self._gibbs_sites

    def config(self) -> dict:
        return {**super().config(), "gibbs_sites": sorted(self._gibbs_sites)}

    def _check_layout(self, layout: GibbsLayout, args: tuple, kwargs: dict) -> None:
        """Raise if the support of an inner site depends on the Gibbs sites: the chain holds
        the inner sites unconstrained, so a new Gibbs value would move their constrained
        values, and ``gibbs_fn`` (a draw given the constrained values) would be wrong."""
        density = GibbsDensity(layout, self.model, args, kwargs)
        g = jnp.zeros(len(layout.gibbs_index), layout.dtype)
        x_h = jnp.zeros(len(layout.hmc_index), layout.dtype)
        moved = _outputs_depending_on(lambda g, x: density.inner_constrained(g, x), g, x_h)
        names = sorted(layout.inner_target.prototype)
        dynamic = [n for n, m in zip(names, moved, strict=True) if m]
        if dynamic:
            raise ValueError(
                f"HMCGibbs: the support of site(s) {dynamic} depends on the Gibbs sites "
                f"{list(layout.gibbs_sites)}; HMCGibbs does not support supports that change "
                "with the Gibbs sites (use DiscreteHMCGibbs for discrete sites, or "
                "reparameterize)."
            )

    def _select_sites(self, sites: dict[str, _SiteInfo]) -> tuple[str, ...]:
        unknown = [n for n in self._gibbs_sites if n not in sites]
        if unknown:
            raise ValueError(
                f"HMCGibbs: gibbs_sites {unknown} are not latent sample sites of the model; its "
                f"latent sites are {sorted(sites)}."
            )
        return self._gibbs_sites

    def _gibbs_update(self, key, density, state, context):
        layout = density.layout
        x_h, g = layout.split(state.position)
        current = layout.gibbs_values(g)
        hmc_sites = density.inner_constrained(g, x_h)
        new = self._gibbs_fn(rng_key=key, gibbs_sites=current, hmc_sites=hmc_sites)
        if not isinstance(new, dict) or set(new) != set(layout.gibbs_sites):
            got = sorted(new) if isinstance(new, dict) else type(new).__name__
            raise ValueError(
                f"HMCGibbs: gibbs_fn must return a dict with exactly the sites "
                f"{sorted(layout.gibbs_sites)}, got {got}."
            )
        for n in layout.gibbs_sites:
            expected = layout.gibbs_shapes[n].shape
            if jnp.shape(new[n]) != expected:
                raise ValueError(
                    f"HMCGibbs: gibbs_fn returned a value of shape {jnp.shape(new[n])} for site "
                    f"'{n}'; expected {expected}."
                )
        return layout.ravel_gibbs(new)


class DiscreteHMCGibbs(_GibbsBase):
    """Metropolis-within-Gibbs updates of the discrete latent sites, then NUTS/HMC on the
    continuous ones.

    Every latent site whose distribution is discrete (``fn.is_discrete``, with an enumerable
    support, ``has_enumerate_support``) is a Gibbs site, except those marked
    ``infer={"enumerate": "parallel"}`` (left to the inner kernel's log density). Each
    transition visits every coordinate of the discrete sites once, in a random order, and for
    each proposes a new value from its support and accepts it with the Metropolis-Hastings
    ratio computed from the model's log joint with every other site fixed:

    * ``random_walk=False, modified=False``: a draw from the exact conditional of the
      coordinate (always accepted: Gibbs sampling);
    * ``random_walk=False, modified=True``: a draw from the conditional restricted to the
      other values, accepted with probability ``min(1, (1 - p(current)) / (1 - p(new)))``
      (Liu's modified, "Metropolised" Gibbs sampler, 1996);
    * ``random_walk=True, modified=False``: a value drawn uniformly from the support
      (possibly the current one), accepted with the ratio of the joint densities;
    * ``random_walk=True, modified=True``: a value drawn uniformly among the other values.

    Then one transition of ``inner_kernel`` updates the continuous sites.

    Args:
        inner_kernel: a :class:`~jppl.mcmc.NUTS` or :class:`~jppl.mcmc.HMC` built from a model.
        random_walk: propose uniformly from the support instead of the conditional.
        modified: never propose the current value (see above).

    The supports of the discrete sites must not depend on latent values or traced model
    arguments (give e.g. ``DiscreteUniform`` bounds as Python ints); the support is taken
    from ``enumerate_support`` (so e.g. ``DiscreteUniform(3, 6)`` proposes 3..6).
    """

    kernel_name = "discrete_hmc_gibbs"

    def __init__(self, inner_kernel: Any, random_walk: bool = False, modified: bool = False):
        super().__init__(inner_kernel)
        self._random_walk = bool(random_walk)
        self._modified = bool(modified)

    @property
    def random_walk(self) -> bool:
        return self._random_walk

    @property
    def modified(self) -> bool:
        return self._modified

    def config(self) -> dict:
        return {**super().config(), "random_walk": self._random_walk, "modified": self._modified}

    def _select_sites(self, sites: dict[str, _SiteInfo]) -> tuple[str, ...]:
        chosen = []
        for info in sites.values():
            if not info.is_discrete or info.enumerate_parallel:
                continue
            if not info.has_enumerate_support:
                raise ValueError(
                    f"{type(self).__name__}: discrete latent site '{info.name}' ({info.family}) "
                    "has no enumerable support (has_enumerate_support is False), so it cannot be "
                    "updated by Gibbs; use a distribution with a finite support (e.g. "
                    "Categorical, Bernoulli, Binomial, DiscreteUniform) or marginalize it."
                )
            if info.event_shape:
                raise ValueError(
                    f"{type(self).__name__}: discrete latent site '{info.name}' ({info.family}) "
                    f"has event shape {info.event_shape}; only sites with scalar events are "
                    "updated coordinate by coordinate (use e.g. Categorical instead of "
                    "OneHotCategorical)."
                )
            chosen.append(info.name)
        if not chosen:
            raise ValueError(
                f"{type(self).__name__}: cannot detect any discrete latent site in the model."
            )
        return tuple(chosen)

    def _gibbs_context(self, density):
        values, sizes = density.support_table(type(self).__name__)
        return values, jnp.asarray(sizes)

    def _gibbs_update(self, key, density, state, context):
        table, sizes = context
        layout = density.layout
        x_h, g0 = layout.split(state.position)

        def potential(g):
            return -density.conditional(g)(x_h)

        g, _ = discrete_sweep(
            key,
            g0,
            -state.logdensity,
            potential,
            table,
            sizes,
            self._random_walk,
            self._modified,
        )
        return g


class MixedHMC(DiscreteHMCGibbs):
    """Mixed Hamiltonian Monte Carlo (Zhou, 2020) for models with discrete and continuous
    latent sites: discrete updates interleaved with the HMC trajectory of the continuous ones.

    Each transition draws a momentum for the continuous sites, an exponential kinetic energy
    for each discrete coordinate and a random arrival time for each; it then runs
    ``num_discrete_updates`` times: a leapfrog segment of the continuous sites (the discrete
    ones fixed) up to the next arrival time, then a proposal for the coordinate that arrived
    (as in :class:`DiscreteHMCGibbs`: ``random_walk``, ``modified``), taken when its kinetic
    energy pays for the log acceptance ratio (the energy is then reduced by it; "refraction")
    and refused otherwise. The whole trajectory, whose total integration time is the inner
    HMC's ``trajectory_length``, is accepted with the Metropolis-Hastings ratio of the total
    energy. The warm-up adapts the step size (to the acceptance probability of the whole
    transition) and the mass matrix of the continuous sites as for plain HMC.

    Args:
        inner_kernel: an :class:`~jppl.mcmc.HMC` (not NUTS) built from a model. Each segment
            takes ``ceil(segment length / step_size)`` leapfrog steps (at most
            ``max_num_steps``); with a fixed ``num_steps`` the total integration time is
            ``num_steps * step_size``.
        num_discrete_updates: discrete updates per transition; default: the number of
            discrete coordinates.
        random_walk, modified: the discrete proposal, as for :class:`DiscreteHMCGibbs`.

    ``extra_fields``: ``num_steps`` is the number of leapfrog steps of the whole transition,
    ``accept_prob`` its acceptance probability; ``momentum`` and ``is_accepted`` as for HMC.
    """

    kernel_name = "mixed_hmc"

    def __init__(
        self,
        inner_kernel: Any,
        num_discrete_updates: int | None = None,
        random_walk: bool = False,
        modified: bool = False,
    ):
        if isinstance(inner_kernel, NUTS):
            raise ValueError(
                "MixedHMC: inner_kernel must be an HMC sampler; NUTS is not supported."
            )
        if not isinstance(inner_kernel, HMC):
            raise ValueError("MixedHMC: inner_kernel must be an HMC sampler.")
        super().__init__(inner_kernel, random_walk=random_walk, modified=modified)
        if num_discrete_updates is not None and (
            isinstance(num_discrete_updates, bool)
            or not isinstance(num_discrete_updates, (int, np.integer))
            or num_discrete_updates < 1
        ):
            raise ValueError(
                f"MixedHMC: num_discrete_updates must be None or an int >= 1, got "
                f"{num_discrete_updates!r}"
            )
        self._num_discrete_updates = (
            None if num_discrete_updates is None else int(num_discrete_updates)
        )

    @property
    def num_discrete_updates(self) -> int | None:
        return self._num_discrete_updates

    def config(self) -> dict:
        return {**super().config(), "num_discrete_updates": self._num_discrete_updates}

    def transition(self, logdensity: GibbsDensity) -> KernelStep:
        """One Mixed HMC transition (Zhou 2020, Algorithm 1, with ``n_D = 1``)."""
        density = logdensity
        layout = density.layout
        table, sizes = self._gibbs_context(density)
        num = len(layout.gibbs_index)
        updates = self._num_discrete_updates or num
        inner = self.inner_kernel
        forward = inner.forward_mode_differentiation
        max_steps = inner.max_num_steps
        threshold = inner.divergence_threshold

        def value_and_grad(g):
            fn = density.conditional(g)
            return jax.value_and_grad(forward_mode_gradient(fn) if forward else fn)

        def step(key, state, step_size, inverse_mass_matrix, warming):
            dtype = state.position.dtype
            metric = gaussian_euclidean(layout.slice_matrix(inverse_mass_matrix))
            x0, g0 = layout.split(state.position)
            grad0 = state.logdensity_grad[layout.hmc_index]
            key_ke, key_time, key_momentum, key_accept, key_loop = jax.random.split(key, 5)
            kinetic = jax.random.exponential(key_ke, (num,), dtype)
            arrival = jax.random.uniform(key_time, (num,), dtype)
            # the integration time of `updates` arrivals, scaled to the trajectory length
            total = (updates - 1) // num + jnp.sort(arrival)[(updates - 1) % num]
            length = inner.trajectory_length
            if inner.num_steps is not None:
                length = inner.num_steps * step_size
            time_unit = length / total
            momentum0 = metric.sample_momentum(key_momentum, x0)
            energy0 = -state.logdensity + metric.kinetic_energy(momentum0)

            def segment(carry, _):
                key, x, p, ld, grad, g, kinetic, delta_pe, arrival, steps = carry
                key, key_prop = jax.random.split(key)
                idx = jnp.argmin(arrival)
                span = arrival[idx] * time_unit
                arrival = (arrival - arrival[idx]).at[idx].set(1.0)
                # continuous sites: leapfrog with the discrete ones fixed
                integrator = velocity_verlet(density.conditional(g), metric.velocity)
                n = jnp.clip(jnp.ceil(span / step_size), 1, max_steps).astype(jnp.int32)
                start = IntegratorState(x, p, ld, grad)
                end = jax.lax.fori_loop(0, n, lambda _, s: integrator(s, step_size), start)
                x, p, ld = end.position, end.momentum, end.logdensity

                # discrete coordinate idx: refract if its kinetic energy pays the ratio
                def potential(candidate):
                    return -density.conditional(candidate)(x)

                pe = jnp.where(jnp.isnan(ld), jnp.inf, -ld)
                proposal, _, log_ratio = propose_discrete(
                    key_prop, g, pe, idx, potential, table, sizes, self._random_walk, self._modified
                )
                new_kinetic = kinetic[idx] + log_ratio
                refract = new_kinetic > 0
                ld_new, grad_new = value_and_grad(proposal)(x)
                refract = refract & jnp.isfinite(ld_new)
                g = jnp.where(refract, proposal, g)
                delta_pe = delta_pe + jnp.where(refract, ld - ld_new, 0.0)
                ld = jnp.where(refract, ld_new, ld)
                grad = jnp.where(refract, grad_new, end.logdensity_grad)
                kinetic = kinetic.at[idx].set(jnp.where(refract, new_kinetic, kinetic[idx]))
                return (key, x, p, ld, grad, g, kinetic, delta_pe, arrival, steps + n), None

            zero = jnp.zeros((), dtype)
            carry = (key_loop, x0, momentum0, state.logdensity, grad0, g0, kinetic, zero)
            carry = carry + (arrival, jnp.zeros((), jnp.int32))
            carry, _ = jax.lax.scan(segment, carry, None, length=updates)
            _, x, p, ld, grad, g, _, delta_pe, _, steps = carry
            energy = -ld + metric.kinetic_energy(p)
            delta = energy - energy0 - delta_pe
            delta = jnp.where(jnp.isnan(delta), jnp.inf, delta)
            accept_prob = jnp.exp(jnp.minimum(-delta, 0.0)).astype(dtype)
            accepted = jax.random.uniform(key_accept, dtype=dtype) < accept_prob
            proposal = GibbsState(layout.join(x, g), ld, layout.embed_grad(grad))
            new_state = jax.tree.map(lambda a, b: jnp.where(accepted, a, b), proposal, state)
            info = {
                "diverging": ~(delta <= threshold),
                "accept_prob": accept_prob,
                "num_steps": steps,
                "energy": jnp.where(accepted, energy, energy0).astype(dtype),
                "momentum": momentum0,
                "is_accepted": accepted,
            }
            return new_state, info

        return KernelStep(step, self.optional_fields)
