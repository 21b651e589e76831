"""What a model's sites depend on, and a picture of the model (NumPyro's
``numpyro.infer.inspect``).

Dependencies are found by *provenance tracking*: the model is traced to a jaxpr (no array is
computed) with every site value as a separate input, and each equation's output is tagged
with the union of the input names its operands carry (calls such as ``jit`` are followed
inside; loops and conditionals tag all their outputs with all their inputs, which can only
add dependencies). A site depends on the sites whose names reach its log-probability (a
sample site) or its value (a deterministic site).

* :func:`get_model_relations`: site-to-site and site-to-param dependencies, distributions,
  plates and observed sites (what :func:`render_model` draws);
* :func:`get_dependencies`: prior and posterior dependencies among sample sites, with the
  plates that induce full dependencies;
* :func:`render_model`: a ``graphviz.Digraph`` of the model (``pip install 'jppl[graphviz]'``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from jax.extend.core import Literal

from jppl import distributions as dist
from jppl.handlers import seed, substitute, trace
from jppl.model.initialization import init_to_sample
from jppl.primitives import Message, Messenger

__all__ = ["get_dependencies", "get_model_relations", "render_model"]

# Primitives whose inner jaxpr is applied once to exactly the equation's operands: the
# provenance is followed inside them. Everything else (loops, conditionals, ...) is treated
# as opaque: all outputs depend on all inputs.
_CALL_PRIMITIVES = {
    "pjit",
    "jit",
    "closed_call",
    "core_call",
    "remat",
    "checkpoint",
    "custom_jvp_call",
    "custom_vjp_call",
    "custom_vjp_call_jaxpr",
}


# ---------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------


def _inner_jaxpr(eqn) -> Any:
    if eqn.primitive.name not in _CALL_PRIMITIVES:
        return None
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        inner = eqn.params.get(key)
        if inner is None:
            continue
        inner = getattr(inner, "jaxpr", inner)  # a ClosedJaxpr holds its Jaxpr
        if hasattr(inner, "eqns") and len(inner.invars) == len(eqn.invars):
            return inner
    return None


def _track(jaxpr, inputs: list[frozenset]) -> list[frozenset]:
    """Provenance of the outputs of ``jaxpr`` given that of its inputs."""
    env: dict[Any, frozenset] = {}

    def read(v) -> frozenset:
        return frozenset() if isinstance(v, Literal) else env.get(v, frozenset())

    for v, p in zip(jaxpr.invars, inputs, strict=True):
        env[v] = p
    for eqn in jaxpr.eqns:
        operands = [read(v) for v in eqn.invars]
        inner = _inner_jaxpr(eqn)
        if inner is not None:
            outputs = _track(inner, operands)
        else:
            outputs = [frozenset().union(*operands)] * len(eqn.outvars)
        for v, p in zip(eqn.outvars, outputs, strict=True):
            if not isinstance(v, Literal):
                env[v] = read(v) | p
    return [read(v) for v in jaxpr.outvars]


def eval_provenance(fn: Callable[..., Any], **kwargs) -> Any:
    """Which keyword arguments each output of ``fn(**kwargs)`` depends on.

    ``fn`` is traced to a jaxpr (``kwargs`` may be arrays or ``jax.ShapeDtypeStruct``; no
    array is computed). Returns ``fn``'s output pytree with each array replaced by the
    ``frozenset`` of the argument names it depends on.
    """
    leaves, in_tree = jax.tree.flatten(kwargs)
    out_tree = None

    def flat_fn(*flat):
        nonlocal out_tree
        out = fn(**jax.tree.unflatten(in_tree, flat))
        out_leaves, out_tree = jax.tree.flatten(out)
        return out_leaves

    closed = jax.make_jaxpr(flat_fn)(*leaves)
    names = {n: jax.tree.map(lambda _, n=n: frozenset({n}), v) for n, v in kwargs.items()}
    provenance = _track(closed.jaxpr, jax.tree.leaves(names))
    return jax.tree.unflatten(out_tree, provenance)


# ---------------------------------------------------------------------------------------------
# An abstract trace of the model
# ---------------------------------------------------------------------------------------------


def _dist_name(fn) -> str:
    while isinstance(fn, dist.Independent | dist.ExpandedDistribution | dist.MaskedDistribution):
        fn = fn.base_dist
    return type(fn).__name__


def _abstract_trace(model, model_args, model_kwargs) -> tuple[dict[str, dict], dict]:
    """``(meta, values)``: per site its type, distribution name, plates, whether observed and
    (params) constraint; and the shapes (``ShapeDtypeStruct``) of the sample, deterministic
    and param values. Runs the model under ``jax.eval_shape``: no array is computed."""
    meta: dict[str, dict] = {}

    def run():
        # init_to_sample: each latent gets a prior draw (also for an ImproperUniform).
        model_trace = trace(substitute(seed(model, 0), substitute_fn=init_to_sample)).get_trace(
            *model_args, **model_kwargs
        )
        values = {}
        for name, site in model_trace.items():
            kind = site["type"]
            info: dict[str, Any] = {"type": kind}
            if kind == "sample":
                info["fn_name"] = _dist_name(site["fn"])
                info["is_observed"] = bool(site["is_observed"])
            elif kind == "deterministic":
                info["fn_name"] = "Deterministic"
            elif kind == "param":
                constraint = site["kwargs"].get("constraint")
                info["constraint"] = "" if constraint is None else str(constraint)
            if kind in ("sample", "deterministic"):
                info["plates"] = [f.name for f in site["cond_indep_stack"]]
            meta[name] = info
            if kind in ("sample", "deterministic", "param"):
                values[name] = site["value"]
        return values

    values = jax.eval_shape(run)
    return meta, values


class _provenance_inputs(Messenger):
    """Give sample, param and deterministic sites the values in ``data`` (latent sample sites
    only: observations stay constants), and keep the value each deterministic site computed
    in ``self.computed`` (its provenance is that of its inputs)."""

    def __init__(self, fn=None, data: dict | None = None):
        self.data = {} if data is None else data
        self.computed: dict[str, Any] = {}
        super().__init__(fn)

    def process_message(self, msg: Message) -> None:
        name, kind = msg["name"], msg["type"]
        if name not in self.data:
            return
        if kind == "sample" and not msg["is_observed"]:
            msg["value"] = self.data[name]
        elif kind == "param":
            msg["value"] = self.data[name]
        elif kind == "deterministic":
            self.computed[name] = msg["value"]
            msg["value"] = self.data[name]


def _site_provenance(model, model_args, model_kwargs, values: dict) -> dict[str, frozenset]:
    """For each sample site the inputs its log-probability depends on; for each
    deterministic site the inputs of its computed value."""

    def outputs(**data):
        handler = _provenance_inputs(seed(model, 0), data=data)
        model_trace = trace(handler).get_trace(*model_args, **model_kwargs)
        out = {}
        for name, site in model_trace.items():
            if site["type"] == "sample":
                out[name] = site["fn"].log_prob(site["value"])
            elif site["type"] == "deterministic":
                out[name] = handler.computed.get(name, site["value"])
        return out

    provenance = eval_provenance(outputs, **values)
    return {
        name: frozenset().union(*jax.tree.leaves(p, is_leaf=lambda x: isinstance(x, frozenset)))
        for name, p in provenance.items()
    }


# ---------------------------------------------------------------------------------------------
# Relations and dependencies
# ---------------------------------------------------------------------------------------------


def _split_overlapping_plates(plate_samples: dict[str, set]) -> dict[str, set]:
    """Plates whose site sets overlap without nesting are split (``q`` keeps the shared
    sites, ``q__CLONE`` the others), so that the plates drawn nest."""
    for pv in plate_samples.values():
        for q, qv in plate_samples.items():
            if pv & qv and pv - qv and qv - pv:
                split = dict(plate_samples)
                split[q] = pv & qv
                split[q + "__CLONE"] = qv - pv
                return _split_overlapping_plates(split)
    return plate_samples


def get_model_relations(
    model: Callable, model_args: tuple | None = None, model_kwargs: dict | None = None
) -> dict[str, Any]:
    """The relations between the sites and plates of ``model``.

    Args:
        model: the model.
        model_args, model_kwargs: its arguments (e.g. the data).

    Returns:
        a dict with these keys:
        ``"sample_sample"``: ``{site: [upstream sample/deterministic sites]}`` for every
        sample and deterministic site (in model order);
        ``"sample_param"``: ``{site: [param sites it depends on]}``;
        ``"sample_dist"``: ``{site: distribution class name}`` (``Independent``,
        ``ExpandedDistribution`` and ``MaskedDistribution`` show their base; deterministic
        sites show ``"Deterministic"``);
        ``"param_constraint"``: ``{param site: str(constraint)}``;
        ``"plate_sample"``: ``{plate: [sites inside it]}`` (overlapping, non-nested plates
        are split, see :func:`render_model`);
        ``"observed"``: the observed sample sites.

    Example: for ``m ~ Normal(0, 1); sd ~ LogNormal(m, 1); obs ~ Normal(m, sd)`` in plate
    ``N``, ``sample_sample == {"m": [], "sd": ["m"], "obs": ["m", "sd"]}``.
    """
    model_args = () if model_args is None else model_args
    model_kwargs = {} if model_kwargs is None else model_kwargs
    meta, values = _abstract_trace(model, model_args, model_kwargs)
    sites = [n for n, m in meta.items() if m["type"] in ("sample", "deterministic")]
    params = [n for n, m in meta.items() if m["type"] == "param"]
    observed = [n for n in sites if meta[n].get("is_observed")]
    sample_dist = {n: meta[n]["fn_name"] for n in sites}
    plate_samples = {
        p: {n for n in sites if p in meta[n]["plates"]}
        for p, m in meta.items()
        if m["type"] == "plate"
    }
    plate_samples = _split_overlapping_plates(plate_samples)
    plate_sample = {p: [n for n in meta if n in v] for p, v in plate_samples.items()}

    inputs = {n: values[n] for n in sites + params}
    deps = _site_provenance(model, model_args, model_kwargs, inputs)
    sample_sample = {n: [u for u in sites if u != n and u in deps[n]] for n in sites}
    sample_param = {n: [p for p in params if p in deps[n]] for n in sites}
    param_constraint = {p: meta[p]["constraint"] for p in params}
    return {
        "sample_sample": sample_sample,
        "sample_param": sample_param,
        "sample_dist": sample_dist,
        "param_constraint": param_constraint,
        "plate_sample": plate_sample,
        "observed": observed,
    }


def get_dependencies(
    model: Callable, model_args: tuple | None = None, model_kwargs: dict | None = None
) -> dict[str, dict[str, dict[str, set[str]]]]:
    """Prior and posterior dependencies among the sample sites of a conditioned model.

    Returns ``{"prior_dependencies": ..., "posterior_dependencies": ...}``:

    * ``prior_dependencies[d][u]``: downstream site ``d`` (latent or observed) depends on
      latent site ``u`` in the prior (every site depends on itself), with the set of plates
      that make the dependence complete (all elements on all elements) rather than
      elementwise;
    * ``posterior_dependencies[u][d]``: the same reversed, for latent ``u``, plus the
      dependencies that conditioning creates among the latent parents of each site
      (moralization; e.g. ``a -> c <- b`` makes ``a`` and ``b`` dependent given ``c``).

    Deterministic sites and ``Delta`` sample sites are left out (their inputs are followed
    through them); ``factor`` sites are never upstream.

    Example::

        def model():
            a = sample("a", Normal(0, 1))
            sample("b", Normal(a, 1), obs=0.0)

        get_dependencies(model) == {
            "prior_dependencies": {"a": {"a": set()}, "b": {"a": set(), "b": set()}},
            "posterior_dependencies": {"a": {"a": set(), "b": set()}},
        }
    """
    model_args = () if model_args is None else model_args
    model_kwargs = {} if model_kwargs is None else model_kwargs
    meta, values = _abstract_trace(model, model_args, model_kwargs)
    sample_sites = [n for n, m in meta.items() if m["type"] == "sample" and m["fn_name"] != "Delta"]
    observed = {n for n in sample_sites if meta[n]["is_observed"]}
    plates = {n: set(meta[n]["plates"]) for n in sample_sites}
    latent = {
        n: values[n] for n, m in meta.items() if m["type"] == "sample" and not m["is_observed"]
    }
    deps = _site_provenance(model, model_args, model_kwargs, latent)

    prior: dict[str, dict[str, set]] = {n: {n: set()} for n in sample_sites}
    for i, d in enumerate(sample_sites):
        for u in sample_sites[:i]:
            if u not in observed and meta[u]["fn_name"] != "Unit" and u in deps[d]:
                prior[d][u] = set()

    posterior: dict[str, dict[str, set]] = {n: {} for n in sample_sites if n not in observed}
    for d, upstreams in prior.items():
        for u, p in upstreams.items():
            if u not in observed:
                posterior[u][d] = set(p)
    # Moralization: the latent parents of each site become dependent in the posterior.
    order = {n: i for i, n in enumerate(reversed(sample_sites))}
    for d, upstreams in prior.items():
        parents = {u: p for u, p in upstreams.items() if u not in observed}
        for u1, p1 in parents.items():
            for u2, p2 in parents.items():
                if order[u1] <= order[u2]:
                    p12 = posterior[u2].setdefault(u1, set())
                    p12 |= (plates[u1] & plates[u2]) - plates[d]
                    p12 |= plates[u2] & p1
                    p12 |= plates[u1] & p2
    return {"prior_dependencies": prior, "posterior_dependencies": posterior}


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _graph_specification(relations: dict[str, Any], render_params: bool) -> dict[str, Any]:
    """Nodes grouped by plate, plate nesting, node attributes and edges."""
    groups: dict[str | None, list[str]] = dict(relations["plate_sample"])
    in_plate = {n for names in groups.values() for n in names}
    groups[None] = [n for n in relations["sample_sample"] if n not in in_plate]
    node_data = {
        n: {
            "is_observed": n in relations["observed"],
            "distribution": relations["sample_dist"][n],
        }
        for n in relations["sample_sample"]
    }
    edges = [(u, d) for d, ups in relations["sample_sample"].items() for u in ups]
    if render_params:
        used = [
            p
            for p in relations["param_constraint"]
            if any(p in ps for ps in relations["sample_param"].values())
        ]
        groups[None].extend(used)
        for p, constraint in relations["param_constraint"].items():
            node_data[p] = {"is_observed": False, "constraint": constraint, "distribution": None}
        edges += [(p, d) for d, ps in relations["sample_param"].items() for p in ps]
    # A plate's parent is a plate whose sites strictly contain its own (first in order when
    # several do); equal site sets nest in trace order.
    parent: dict[str, str | None] = {}
    for p1, p2 in itertools.combinations([p for p in groups if p is not None], 2):
        s1, s2 = set(groups[p1]), set(groups[p2])
        if s1 < s2:
            parent[p1] = p2
        elif s1 >= s2:
            parent[p2] = p1
    for p in groups:
        if p is not None:
            parent.setdefault(p, None)
    return {"plate_groups": groups, "plate_parent": parent, "node_data": node_data, "edges": edges}


def _graphviz():
    try:
        import graphviz
    except ImportError as e:
        raise ImportError(
            "render_model needs the graphviz Python package, an optional dependency of jppl: "
            "pip install 'jppl[graphviz]' (writing image files also needs Graphviz's `dot` "
            "program, https://graphviz.org/download/)."
        ) from e
    return graphviz


def _render(spec: dict[str, Any], render_distributions: bool):
    graphviz = _graphviz()
    graph = graphviz.Digraph()
    subgraphs = {p: graphviz.Digraph(name=f"cluster_{p}") for p in spec["plate_groups"] if p}
    for p, sub in subgraphs.items():
        sub.attr(label=p.split("__CLONE")[0], labeljust="r", labelloc="b")
    targets: dict[str | None, Any] = {**subgraphs, None: graph}
    for p, names in spec["plate_groups"].items():
        for n in names:
            data = spec["node_data"][n]
            is_site = bool(data["distribution"])
            targets[p].node(
                n,
                label=n if is_site else n.replace("$params", ""),
                shape="ellipse" if is_site else "plain",
                style="filled,dashed" if data["distribution"] == "Deterministic" else "filled",
                fillcolor="grey" if data["is_observed"] else "white",
            )
    # Nest the plates from the innermost out: a subgraph is copied when added.
    parent = dict(spec["plate_parent"])
    while parent:
        leaf = next(p for p in parent if p not in parent.values())
        targets[parent.pop(leaf)].subgraph(targets[leaf])
    for u, d in spec["edges"]:
        graph.edge(u, d)
    if render_distributions:
        label = ""
        for n, data in spec["node_data"].items():
            if data["distribution"]:
                label += rf"{n} ~ {data['distribution']}\l"
            if data.get("constraint"):
                label += rf"{n} ∈ {data['constraint']}\l"
        graph.node("distribution_description_node", label=label, shape="plaintext")
    return graph


def render_model(
    model: Callable,
    model_args: tuple | None = None,
    model_kwargs: dict | None = None,
    filename: str | Path | None = None,
    render_distributions: bool = False,
    render_params: bool = False,
):
    """Draw ``model`` as a ``graphviz.Digraph``: a node per sample and deterministic site
    (grey if observed, dashed if deterministic), an edge per dependency
    (:func:`get_model_relations`), a box per plate.

    Args:
        model: the model.
        model_args, model_kwargs: its arguments.
        filename: also write the picture there, in the format of its suffix (``.png``,
            ``.pdf``, ``.svg``, ...; needs Graphviz's ``dot`` program).
        render_distributions: add a legend with each site's distribution (and param
            constraints).
        render_params: add the param sites and their edges.

    Returns:
        the ``graphviz.Digraph`` (Jupyter displays it).

    Raises:
        ImportError: the ``graphviz`` package is missing (``pip install 'jppl[graphviz]'``).
    """
    _graphviz()  # fail before tracing the model
    relations = get_model_relations(model, model_args, model_kwargs)
    graph = _render(_graph_specification(relations, render_params), render_distributions)
    if filename is not None:
        filename = Path(filename)
        graph.render(filename.with_suffix(""), view=False, cleanup=True, format=filename.suffix[1:])
    return graph
