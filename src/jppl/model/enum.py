"""Summing out enumerated discrete sites: variable elimination over plates, in log space.

A trace run under :class:`jppl.enumerate.enum` gives, per sample site, a log-probability
whose dims are either *plate* dims (named by the site's ``cond_indep_stack``) or
*enumerated* dims (left of ``first_available_dim``, named by the enumerated variable live at
that dim when the site ran). Each becomes a :class:`Factor` with named axes.

The log marginal ``log sum_z prod_f exp(f)`` is computed as in Pyro's tensor-tree
contraction (Obermeyer et al. 2019, *Tensor variable elimination for plated factor graphs*):
each enumerated variable lives at the intersection of the plates of the factors that mention
it; starting from the deepest set of plates, the variables living there are eliminated
(``logsumexp`` of the broadcast sum of the factors that mention them, one variable at a time
in a greedy smallest-result order), then the plates that no remaining variable needs are
multiplied out (a sum of logs) and the result moves to the parent set of plates. The cost
is linear in the length of a chain of ``markov`` steps.

Written here rather than taken from a library: funsor (NumPyro's route) is a large
dependency for this ~200-line algorithm, and ``opt_einsum`` contracts sums of products, not
``logsumexp`` with per-plate products; the broadcast ``logsumexp`` used here is exact in log
space where a shifted ``einsum`` can underflow when factors disagree strongly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from jppl.primitives import Message

__all__ = [
    "Elimination",
    "Factor",
    "PREV",
    "align",
    "chain_product",
    "contract",
    "contract_keeping",
    "enum_log_joint",
    "enumerated_sites",
    "group_scale",
    "is_enumerated",
    "marginal",
    "plates_of",
    "pointwise_log_likelihood",
    "sample_eliminations",
    "scalar_scale",
    "scan_factor",
    "site_factor",
    "tied_groups",
    "trace_factors",
]

Trace = dict[str, Message]


class Factor(NamedTuple):
    """A log-potential with named axes.

    Attributes:
        log: array with one axis per entry of ``names``.
        names: the name of each axis: a plate name or an enumerated site name.
        plates: the plates the factor lies in; their names are exactly its plate axes.
    """

    log: jax.Array
    names: tuple[str, ...]
    plates: frozenset[str]


class Elimination(NamedTuple):
    """One eliminated variable, kept to sample it afterwards (:func:`sample_eliminations`).

    ``log`` (axes ``names``) is the sum of the factors that mentioned ``var`` when it was
    eliminated; ``var``'s conditional given the later-eliminated variables is proportional to
    its ``exp``.
    """

    var: str
    log: jax.Array
    names: tuple[str, ...]


def is_enumerated(site: Message) -> bool:
    """Whether ``site`` is a sample site enumerated by :class:`jppl.enumerate.enum`."""
    return site["type"] == "sample" and "_enumerate_dim" in site["infer"]


def enumerated_sites(model_trace: Trace) -> dict[str, Message]:
    """The enumerated sites of a trace, in order."""
    return {name: site for name, site in model_trace.items() if is_enumerated(site)}


def plates_of(site: Message) -> set[str]:
    """Names of the plates a site lies in."""
    return {frame.name for frame in site["cond_indep_stack"]}


def site_factor(site: Message, log_prob: jax.Array, first_available_dim: int) -> Factor:
    """The :class:`Factor` of a sample site from its (scaled) log-probability.

    Plate dims are broadcast to the plate's size (a log-probability constant along a plate
    still counts once per entry); other batch dims right of ``first_available_dim`` are
    summed (independent entries); size-1 dims are dropped.

    Raises:
        ValueError: for a dim left of ``first_available_dim`` that no enumerated variable
            owns (too few ``max_plate_nesting`` for the model's batch dims).
    """
    frames = {frame.dim: frame for frame in site["cond_indep_stack"]}
    enum_names: dict[int, str] = site["infer"].get("_enum_names", {})
    # A site of a `scan` body: its log-probability has a leading time axis, then one step's.
    time = site["infer"].get("_scan_time")
    lead = 0 if time is None else 1
    shape = jnp.shape(log_prob)
    step_ndim = len(shape) - lead
    rank = max([step_ndim] + [-dim for dim in frames])
    log = jnp.reshape(log_prob, shape[:lead] + (1,) * (rank - step_ndim) + shape[lead:])
    names: list[str] = [time] if time is not None else []
    sizes: list[int] = list(log.shape[:lead])
    summed: list[int] = []
    dropped: list[int] = []
    for axis in range(rank):
        size = log.shape[lead + axis]
        dim = axis - rank
        if dim in frames:
            names.append(frames[dim].name)
            sizes.append(frames[dim].size)
        elif size == 1:
            dropped.append(lead + axis)
        elif dim > first_available_dim:
            summed.append(lead + axis)
        elif dim in enum_names:
            names.append(enum_names[dim])
            sizes.append(size)
        else:
            raise ValueError(
                f"Sample site '{site['name']}': its log-probability of shape "
                f"{tuple(log.shape)} has a dim {dim} of size {size} left of the plates "
                f"(first_available_dim={first_available_dim}) that no enumerated site owns. "
                "Set max_plate_nesting to the number of nested plates of the model, and keep "
                "batch dims of distributions inside plates."
            )
    enum_axes = [n for n in names if n not in plates_of(site) and n != time]
    if summed and enum_axes:
        raise ValueError(
            f"Sample site '{site['name']}' depends on enumerated sites and has a batch dim "
            f"{summed[0] - lead - rank} of size {log.shape[summed[0]]} that is not a plate: put "
            "the site in a plate over that dim (a site that depends on a variable of a plate "
            "must lie in that plate)."
        )
    if summed:
        log = jnp.sum(log, axis=tuple(summed), keepdims=True)
    log = jnp.squeeze(log, axis=tuple(sorted(dropped + summed)))
    log = jnp.broadcast_to(log, tuple(sizes))
    plates = frozenset(frame.name for frame in frames.values())
    return Factor(log, tuple(names), plates)


def trace_factors(
    model_trace: Trace, log_probs: dict[str, jax.Array]
) -> tuple[list[Factor], dict[str, frozenset[str]]]:
    """The factors of the sample sites of an enumerated trace (from ``log_probs``), and the
    enumerated variables with the plates of their own sites."""
    sites = enumerated_sites(model_trace)
    first = next(iter(sites.values()))["infer"]["_enum_first_dim"]
    factors = [
        site_factor(site, log_probs[name], first)
        for name, site in model_trace.items()
        if site["type"] == "sample"
    ]
    homes = {
        name: frozenset(frame.name for frame in site["cond_indep_stack"])
        for name, site in sites.items()
    }
    return factors, homes


def scalar_scale(site: Message) -> float:
    """The scale of a site tied to enumerated sites, as a Python float.

    Raises:
        ValueError: for an array or traced scale (enumeration needs a constant scalar).
    """
    scale = site["scale"]
    if scale is None:
        return 1.0
    try:
        return float(scale)
    except (TypeError, jax.errors.ConcretizationTypeError) as e:
        raise ValueError(
            f"Sample site '{site['name']}' depends on enumerated sites and has a scale that "
            "is an array or traced; enumeration needs a constant scalar scale (e.g. the "
            "plate's size / subsample_size)."
        ) from e


def group_scale(model_trace: Trace, members: list[str]) -> float:
    """The one scale of a group of sites tied by enumerated variables.

    Raises:
        ValueError: for sites of the group with different scales.
    """
    scales = {name: scalar_scale(model_trace[name]) for name in members}
    if len(set(scales.values())) > 1:
        detail = ", ".join(f"'{n}': {v:g}" for n, v in scales.items())
        raise ValueError(
            "Sites tied together by enumerated sites must share one scale, so that the "
            f"scale applies to their summed-out density; got {detail}. Put them in the "
            "same subsampled plates (or use the same scale handler)."
        )
    return next(iter(scales.values()))


def tied_groups(
    names: list[str], factors: dict[str, Factor], homes: dict[str, frozenset[str]]
) -> list[list[str]]:
    """The sites ``names`` grouped by the enumerated variables (keys of ``homes``) their
    factors share (union-find), each group in trace order."""
    parent = {name: name for name in names}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for name in names:
        for var in factors[name].names:
            if var in homes:
                parent[find(name)] = find(var)
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(find(name), []).append(name)
    return list(groups.values())


def _group_log_joint(
    factors: list[Factor], homes: dict[str, frozenset[str]], model_trace: Trace, names: list[str]
) -> jax.Array:
    """The summed-out log joint of one group of tied sites (chaining ``scan`` steps first)."""
    by_time: dict[str, list[Factor]] = {}
    plain: list[Factor] = []
    for name, factor in zip(names, factors, strict=True):
        time = model_trace[name]["infer"].get("_scan_time")
        if time is None:
            plain.append(factor)
        else:
            by_time.setdefault(time, []).append(factor)
    total = jnp.zeros(())
    for time, scanned in by_time.items():
        step_vars = {
            name
            for name, site in model_trace.items()
            if name in homes and site["infer"].get("_scan_time") == time
        }
        log, chain = scan_factor(scanned, homes, time, step_vars)
        total = total + log
        plain.extend(chain)
    return total + contract(plain, homes)


def enum_log_joint(model_trace: Trace, log_probs: dict[str, jax.Array]) -> jax.Array:
    """The log joint of an enumerated trace with its enumerated sites summed out.

    ``log_probs``: unscaled log-probabilities of the sample sites. The sites tied together by
    enumerated variables are summed out together and then scaled by their common scale (so a
    subsampled plate scales ``log sum_z``, not the terms inside it); they must share one.

    Raises:
        ValueError: for sites of one such group with different scales.
    """
    factors, homes = trace_factors(model_trace, log_probs)
    names = [name for name, site in model_trace.items() if site["type"] == "sample"]
    by_name = dict(zip(names, factors, strict=True))
    total = jnp.zeros(())
    for members in tied_groups(names, by_name, homes):
        if not any(name in homes for name in members):
            (name,) = members
            site = model_trace[name]
            scale = site["scale"]
            log_prob = log_probs[name] if scale is None else scale * log_probs[name]
            total = total + jnp.sum(log_prob)
            continue
        scale = group_scale(model_trace, members)
        log = _group_log_joint([by_name[name] for name in members], homes, model_trace, members)
        total = total + (log if scale == 1.0 else scale * log)
    return total


def _aligned(factor_log: jax.Array, names: tuple[str, ...], target: tuple[str, ...]):
    """``factor_log`` (axes ``names``, all in ``target``) transposed and reshaped to broadcast
    over the axes ``target``."""
    perm = [names.index(n) for n in target if n in names]
    if perm != list(range(len(perm))):
        factor_log = jnp.transpose(factor_log, perm)
    shape = [factor_log.shape[perm.index(names.index(n))] if n in names else 1 for n in target]
    return jnp.reshape(factor_log, shape)


def align(factor: Factor, target: tuple[str, ...]) -> jax.Array:
    """``factor.log`` transposed and reshaped to broadcast over the axes ``target`` (which
    include all of the factor's)."""
    return _aligned(factor.log, factor.names, target)


def _sum_factors(factors: list[Factor]) -> tuple[jax.Array, tuple[str, ...]]:
    names: list[str] = []
    for factor in factors:
        names.extend(n for n in factor.names if n not in names)
    target = tuple(names)
    total = None
    for factor in factors:
        log = _aligned(factor.log, factor.names, target)
        total = log if total is None else total + log
    return total, target


def _eliminate(
    factors: list[Factor],
    local: set[str],
    sizes: dict[str, int],
    reduce: Callable,
    records: list | None,
) -> list[Factor]:
    """Sum (``reduce``) out the variables ``local`` (all of whose factors are in ``factors``)."""
    factors = list(factors)
    local = set(local)
    while local:
        # Greedy: the variable whose elimination builds the smallest tensor.
        def cost(var: str, factors: list[Factor] = factors) -> tuple[int, str]:
            axes = set().union(*(set(f.names) for f in factors if var in f.names))
            size = 1
            for axis in axes:
                size *= sizes[axis]
            return size, var

        var = min(local, key=cost)
        local.discard(var)
        group = [f for f in factors if var in f.names]
        factors = [f for f in factors if var not in f.names]
        log, names = _sum_factors(group)
        if records is not None:
            records.append(Elimination(var, log, names))
        axis = names.index(var)
        factors.append(
            Factor(reduce(log, axis=axis), names[:axis] + names[axis + 1 :], group[0].plates)
        )
    return factors


def _contract_tree(
    factors: list[Factor],
    homes: dict[str, frozenset[str]],
    keep: frozenset[str] = frozenset(),
    maximize: bool = False,
    records: list[Elimination] | None = None,
) -> tuple[jax.Array, list[Factor]]:
    """Eliminate the variables of ``homes`` not in ``keep``, and the plates, from ``factors``.

    Axes named neither by a variable nor by a plate (a ``scan``'s time axis) are batch axes:
    kept as they are. Returns ``(scalar, rest)``: the log of everything that reduced to a
    number, and the factors left with kept variables or batch axes (at the plates of their
    kept variables; a factor with batch axes only has no plates).
    """
    sizes: dict[str, int] = {}
    for factor in factors:
        sizes.update(zip(factor.names, factor.log.shape, strict=True))
    # Each variable lives at the plates of its own site; factors mentioning it lie within.
    home: dict[str, frozenset[str]] = {}
    for factor in factors:
        for name in factor.names:
            if name in homes:
                home[name] = home.get(name, factor.plates) & factor.plates
    for var, plates in home.items():
        if var in keep:
            # A kept variable is only carried along: it may be absent from the factors of its
            # own plates (e.g. a guide's variable, whose own factor is not among these).
            home[var] = homes[var]
        elif plates != homes[var]:
            raise ValueError(
                f"Enumerated site '{var}' lies in plates {sorted(homes[var])} but a site "
                f"outside plates {sorted(homes[var] - plates)} depends on it; a site that "
                "depends on a variable of a plate must lie in that plate."
            )
    tree: dict[frozenset[str], list[Factor]] = {}
    for factor in factors:
        tree.setdefault(factor.plates, []).append(factor)
    reduce = jnp.max if maximize else logsumexp
    total = jnp.zeros(())
    rest_factors: list[Factor] = []
    while tree:
        leaf = max(tree, key=lambda plates: (len(plates), sorted(plates)))
        leaf_factors = tree.pop(leaf)
        local = {
            n
            for f in leaf_factors
            for n in f.names
            if n in home and home[n] == leaf and n not in keep
        }
        for factor in _eliminate(leaf_factors, local, sizes, reduce, records):
            rest = [n for n in factor.names if n in home]
            parent = frozenset().union(*(home[n] for n in rest))
            if rest and parent == leaf:
                free = [n for n in rest if n not in keep]
                if free:
                    raise ValueError(
                        "Cannot sum out the enumerated sites exactly: "
                        + ", ".join(f"'{n}' (in plates {sorted(home[n])})" for n in rest)
                        + f" meet in a site in plates {sorted(leaf)} without one's plates "
                        "containing the other's. Restructure the plates, or do not enumerate "
                        "one of them."
                    )
                rest_factors.append(factor)
                continue
            drop = tuple(i for i, n in enumerate(factor.names) if n in leaf and n not in parent)
            log = jnp.sum(factor.log, axis=drop) if drop else factor.log
            names = tuple(n for n in factor.names if not (n in leaf and n not in parent))
            if not names:
                total = total + log
            elif not rest:
                rest_factors.append(Factor(log, names, frozenset()))
            else:
                tree.setdefault(parent, []).append(Factor(log, names, parent))
    return total, rest_factors


def contract_keeping(
    factors: list[Factor], homes: dict[str, frozenset[str]], keep: frozenset[str]
) -> tuple[jax.Array, list[Factor]]:
    """Sum out the variables of ``homes`` not in ``keep``.

    Returns ``(scalar, rest)``: the log of what reduced to a number, and the factors left over
    kept variables (axes: kept variables and the plates they lie in).
    """
    return _contract_tree(factors, homes, keep=keep)


def marginal(
    factors: list[Factor], homes: dict[str, frozenset[str]], keep: frozenset[str]
) -> Factor:
    """``log sum_{other vars} prod_factors exp(factor)`` as a function of the variables
    ``keep``: one :class:`Factor` whose axes are the kept variables and the plates they lie in
    (the product over every other plate taken).

    For the factors of a normalized distribution over the variables (e.g. a guide's
    enumerated sites), this is the log marginal probability of the kept ones, per entry of
    their plates.

    Raises:
        ValueError: as :func:`contract`, or if a kept variable is in none of the factors.
    """
    missing = sorted(keep - {n for f in factors for n in f.names})
    if missing:
        raise ValueError(f"marginal: kept variables {missing} are in none of the factors")
    total, rest = _contract_tree(factors, homes, keep=keep)
    log, names = _sum_factors(rest)
    plates = frozenset().union(*(homes[v] for v in keep))
    return Factor(total + log, names, plates)


def contract(
    factors: list[Factor],
    homes: dict[str, frozenset[str]],
    records: list[Elimination] | None = None,
    maximize: bool = False,
) -> jax.Array:
    """``log sum_{enumerated vars} prod_factors exp(factor)``, a scalar.

    Args:
        factors: the factors; axes named by plates and by the keys of ``homes``.
        homes: ``{variable: the plates of its own site}``.
        records: if a list, the :class:`Elimination` of each variable is appended to it.
        maximize: take the max over the variables instead of the sum (``log max_z prod
            exp(factor)``: the MAP's log joint; its records give the MAP by backtracking).

    Raises:
        ValueError: if the plated factor graph cannot be summed exactly this way (a factor
            mentions variables of two different plates, neither containing the other).
    """
    total, rest = _contract_tree(factors, homes, maximize=maximize, records=records)
    for factor in rest:  # only batch axes left: products over them
        total = total + jnp.sum(factor.log)
    return total


PREV = "_PREV_"
"""Prefix of the sites of a ``scan``'s first step, which the later steps depend on."""


def _log_matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """``log(exp(a) @ exp(b))`` over the last two axes, batched over the others."""
    return logsumexp(a[..., :, :, None] + b[..., None, :, :], axis=-2)


def chain_product(steps: jax.Array) -> jax.Array:
    """The log-space product of the matrices ``steps (L, *batch, P, C)`` in time order, by a
    balanced tree of pairwise products (``log2 L`` depth): ``(*batch, P, C)``."""
    while steps.shape[0] > 1:
        odd = steps.shape[0] % 2
        last = steps[-1:]
        even = steps[: steps.shape[0] - odd]
        steps = _log_matmul(even[0::2], even[1::2])
        if odd:
            steps = jnp.concatenate([steps, last])
    return steps[0]


def _backward_sum(steps: jax.Array) -> jax.Array:
    """``logsumexp(chain_product(steps), axis=-1)``: for each state of the first step, the
    log-sum over all later states of the chain ``steps (L, *batch, P, P)``, ``(*batch, P)``.

    The backward recursion ``beta_{t-1}(p) = log sum_c exp(steps[t, p, c] + beta_t(c))``, one
    ``lax.scan`` step per time step: ``L P^2`` work (the tree of matrix products does
    ``L P^3``), without the tree's strided slices and concatenations per level. Each step
    subtracts its row maxima before ``exp``, so the largest term is 1: no underflow.
    """

    def step(beta: jax.Array, log: jax.Array) -> tuple[jax.Array, None]:
        return logsumexp(log + beta[..., None, :], axis=-1), None

    beta, _ = jax.lax.scan(step, jnp.zeros(steps.shape[1:-1], steps.dtype), steps, reverse=True)
    return beta


def _tree_sum(steps: jax.Array) -> jax.Array:
    """:func:`_backward_sum` by the balanced tree of :func:`chain_product` (``log2 L`` deep)."""
    return logsumexp(chain_product(steps), axis=-1)


def _chain_sum(steps: jax.Array) -> jax.Array:
    """``logsumexp(chain_product(steps), axis=-1)``, ``(*batch, P)``, chosen per platform when
    lowered: on a CPU the sequential backward recursion (:func:`_backward_sum`; T=499, K=3,
    2 cores: about 70 us for its gradient against 200 us for the tree's), elsewhere the tree,
    whose ``log2 L`` depth suits accelerators, where each sequential step costs a launch."""
    return jax.lax.platform_dependent(steps, cpu=_backward_sum, default=_tree_sum)


def scan_factor(
    factors: list[Factor], homes: dict[str, frozenset[str]], time: str, step_vars: set[str]
) -> tuple[jax.Array, list[Factor]]:
    """Sum the factors of an enumerated ``scan``'s later steps over time and their variables.

    ``factors`` have the time axis ``time``; ``step_vars`` are the variables of the body (one
    per step, named by the body site). A variable ``v`` whose first-step site ``_PREV_v`` the
    factors mention is carried from step to step; the others are summed out within their
    step. The per-step factors ``G_t(v_{t-1}, v_t)`` are chained along time with the later
    steps' variables summed out (:func:`_chain_sum`: a backward recursion on a CPU, a tree of
    log-space matrix products elsewhere); what is left is one factor of the first step's
    variables (and of global variables), at the plates of the chain.

    Returns ``(scalar, factors)``: the part that reduced to a number, and the chain's factor.
    """
    mentioned = {n for f in factors for n in f.names}
    carried = sorted(v for v in step_vars if PREV + v in mentioned)
    prevs = [PREV + v for v in carried]
    keep = frozenset(n for n in mentioned if n in homes and n not in step_vars) | set(carried)
    total, rest = _contract_tree(factors, homes, keep=keep)
    chained = []
    for factor in rest:
        if any(n in homes for n in factor.names):
            chained.append(factor)
        else:  # independent across time: a product
            total = total + jnp.sum(factor.log)
    if not chained:
        return total, []
    if not carried:
        raise NotImplementedError(
            "scan with enumeration: the steps share enumerated global sites but carry no "
            "enumerated state from step to step; sum them outside the scan."
        )
    plates = {f.plates for f in chained}
    if len(plates) > 1:
        raise NotImplementedError(
            "scan with enumeration: the per-step factors lie in different plates "
            f"({sorted(sorted(p) for p in plates)}); the chain over time would couple the "
            "plates' entries. Keep the enumerated state and what depends on it in the same "
            "plates."
        )
    (chain_plates,) = plates
    log, names = _sum_factors(chained)
    sizes = dict(zip(names, log.shape, strict=True))
    for prev, curr in zip(prevs, carried, strict=True):
        sizes.setdefault(prev, sizes[curr])
    batch = sorted(n for n in names if n not in prevs and n not in carried and n != time)
    target = (time, *batch, *prevs, *carried)
    log = _aligned(log, names, target)
    log = jnp.broadcast_to(log, tuple(sizes[n] for n in target))
    p = math.prod(sizes[n] for n in prevs)
    steps = jnp.reshape(log, (log.shape[0], *log.shape[1 : 1 + len(batch)], p, p))
    final = _chain_sum(steps)  # the later steps' states summed, per first-step state
    final = jnp.reshape(final, final.shape[:-1] + tuple(sizes[n] for n in prevs))
    return total, [Factor(final, (*batch, *prevs), chain_plates)]


def pointwise_log_likelihood(
    model_trace: Trace, log_probs: dict[str, jax.Array]
) -> dict[str, jax.Array]:
    """``log p(y_s | continuous sites)`` of each observed site ``s`` of an enumerated trace,
    per entry of its plates, with the enumerated sites summed out.

    For each observed site: its factor and the factors of the latent sites that mention an
    enumerated variable (their priors and transitions), with the site's plates kept as batch
    axes, summed over the enumerated variables: for a mixture, ``log sum_k p(z_i = k)
    p(y_i | k)`` per data point. Other batch dims of the site are summed (as for the log
    density). ``log_probs``: unscaled log-probabilities of the sample sites.

    Returns:
        ``{observed site: array with the site's plates at their dims}``.
    """
    factors, homes = trace_factors(model_trace, log_probs)
    names = [name for name, site in model_trace.items() if site["type"] == "sample"]
    by_name = dict(zip(names, factors, strict=True))
    latent = [
        by_name[n]
        for n in names
        if not model_trace[n]["is_observed"] and any(a in homes for a in by_name[n].names)
    ]
    out = {}
    for name in names:
        site = model_trace[name]
        if not site["is_observed"]:
            continue
        if "_scan_time" in site["infer"]:
            raise NotImplementedError(
                f"log_likelihood: observed site '{name}' is inside an enumerated scan; its "
                "pointwise likelihood is not supported."
            )
        kept = frozenset(frame.name for frame in site["cond_indep_stack"])
        group = [Factor(f.log, f.names, f.plates - kept) for f in [*latent, by_name[name]]]
        local_homes = {v: h - kept for v, h in homes.items()}
        total, rest = _contract_tree(group, local_homes)
        log = jnp.zeros(())
        axes: tuple[str, ...] = ()
        for factor in rest:
            if not axes:
                log, axes = factor.log, factor.names
            else:
                log, axes = _sum_factors([Factor(log, axes, frozenset()), factor])
        dims = {frame.name: frame for frame in site["cond_indep_stack"]}
        ordered = sorted(dims, key=lambda n: dims[n].dim)
        log = _aligned(log, axes, tuple(ordered)) if axes else log
        log = jnp.broadcast_to(log, tuple(dims[n].size for n in ordered)) if ordered else log
        rank = -dims[ordered[0]].dim if ordered else 0
        shape = [1] * rank
        for n in ordered:
            shape[rank + dims[n].dim] = dims[n].size
        out[name] = jnp.reshape(log, tuple(shape)) + total
    return out


def _take(log: jax.Array, names: tuple[str, ...], var: str, index: jax.Array, index_names):
    """``log`` with the axis ``var`` indexed by ``index`` (axes ``index_names``, which are
    plates among ``names``); the result has the axes ``names`` without ``var``."""
    axis = names.index(var)
    rest = names[:axis] + names[axis + 1 :]
    moved = jnp.moveaxis(log, axis, 0)
    idx = _aligned(index, index_names, rest)
    idx = jnp.broadcast_to(idx, moved.shape[1:])
    return jnp.take_along_axis(moved, idx[None], axis=0)[0], rest


def sample_eliminations(
    records: list[Elimination], rng_key: jax.Array | None, temperature: float
) -> dict[str, tuple[jax.Array, tuple[str, ...]]]:
    """Draw the eliminated variables from their joint posterior, backwards.

    Args:
        records: the eliminations of :func:`contract`, in order (with ``maximize=True`` for
            ``temperature=0``).
        rng_key: key for the draws (unused when ``temperature == 0``).
        temperature: 1 draws from the posterior (forward filtering, backward sampling); 0
            backtracks the joint MAP (Viterbi).

    Returns:
        ``{variable: (indices into its support, the plate names of their axes)}``.
    """
    if temperature not in (0, 1):
        raise ValueError(f"infer_discrete: temperature must be 0 or 1, got {temperature!r}")
    draws: dict[str, tuple[jax.Array, tuple[str, ...]]] = {}
    keys = jax.random.split(rng_key, max(len(records), 1)) if rng_key is not None else None
    for i, record in reversed(list(enumerate(records))):
        log, names = record.log, record.names
        for other in [n for n in names if n in draws]:
            index, index_names = draws[other]
            log, names = _take(log, names, other, index, index_names)
        axis = names.index(record.var)
        if temperature == 0:
            index = jnp.argmax(log, axis=axis)
        else:
            index = jax.random.categorical(keys[i], log, axis=axis)
        draws[record.var] = (index, names[:axis] + names[axis + 1 :])
    return draws
