"""``jppl.infer.inspect``: model relations, dependencies and the graphviz picture, against
dicts and graph sources written by hand."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

import jppl
import jppl.distributions as dist
from jppl.infer.inspect import (
    eval_provenance,
    get_dependencies,
    get_model_relations,
    render_model,
)

graphviz = pytest.importorskip("graphviz")


# ---------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------


def test_eval_provenance_follows_calls_and_ignores_constants():
    const = jnp.ones(3)

    @jax.jit
    def inner(a, b):
        return a * 2.0, b + const

    def fn(x, y, z):
        u, v = inner(x, y)
        return {"u": u, "v": v, "w": jnp.sin(z) + x, "c": const * 3.0}

    out = eval_provenance(fn, x=jnp.ones(3), y=jnp.ones(3), z=jnp.ones(3))
    # Inside the jit, u depends on x only and v on y only.
    assert out == {
        "u": frozenset({"x"}),
        "v": frozenset({"y"}),
        "w": frozenset({"x", "z"}),
        "c": frozenset(),
    }


# ---------------------------------------------------------------------------------------------
# get_model_relations on three small models
# ---------------------------------------------------------------------------------------------


def plates_model(data):
    m = jppl.sample("m", dist.Normal(0.0, 1.0))
    sd = jppl.sample("sd", dist.LogNormal(m, 1.0))
    with jppl.plate("N", data.shape[0]):
        jppl.sample("obs", dist.Normal(m, sd), obs=data)


def nested_plates_model():
    n_plate = jppl.plate("N", 10, dim=-2)
    m_plate = jppl.plate("M", 5, dim=-1)
    with n_plate:
        x = jppl.sample("x", dist.Normal(0.0, 1.0))
        with m_plate:
            jppl.sample("y", dist.Normal(x, 1.0))


def deterministic_model(x, y):
    w = jppl.param("w", jnp.ones(2), constraint=dist.constraints.positive)
    scale = jppl.sample("scale", dist.HalfNormal(1.0))
    z = jppl.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    mu = jppl.deterministic("mu", jax.jit(lambda a, b: a * b)(z, w))
    with jppl.plate("N", x.shape[0]):
        jppl.sample("y", dist.Normal(x @ mu, scale), obs=y)


X = jnp.ones((4, 2))
Y = jnp.zeros(4)


def test_relations_plates_and_observed():
    relations = get_model_relations(plates_model, model_args=(jnp.ones(10),))
    assert relations == {
        "sample_sample": {"m": [], "sd": ["m"], "obs": ["m", "sd"]},
        "sample_param": {"m": [], "sd": [], "obs": []},
        "sample_dist": {"m": "Normal", "sd": "LogNormal", "obs": "Normal"},
        "param_constraint": {},
        "plate_sample": {"N": ["obs"]},
        "observed": ["obs"],
    }


def test_relations_nested_plates():
    relations = get_model_relations(nested_plates_model)
    assert relations["sample_sample"] == {"x": [], "y": ["x"]}
    assert relations["plate_sample"] == {"N": ["x", "y"], "M": ["y"]}
    assert relations["observed"] == []


def test_relations_deterministic_and_params():
    relations = get_model_relations(deterministic_model, model_kwargs={"x": X, "y": Y})
    assert relations == {
        "sample_sample": {"scale": [], "z": [], "mu": ["z"], "y": ["scale", "mu"]},
        "sample_param": {"scale": [], "z": [], "mu": ["w"], "y": []},
        "sample_dist": {
            "scale": "HalfNormal",
            "z": "Normal",  # Independent(Expanded(Normal)) shows its base
            "mu": "Deterministic",
            "y": "Normal",
        },
        "param_constraint": {"w": str(dist.constraints.positive)},
        "plate_sample": {"N": ["y"]},
        "observed": ["y"],
    }


def test_relations_split_overlapping_plates():
    def model():
        p = jppl.plate("p", 2, dim=-1)
        q = jppl.plate("q", 3, dim=-2)
        with p:
            jppl.sample("a", dist.Normal(0.0, 1.0))
            with q:
                jppl.sample("b", dist.Normal(0.0, 1.0))
        with q:
            jppl.sample("c", dist.Normal(0.0, 1.0))

    relations = get_model_relations(model)
    # q holds b and c, p holds a and b: q is split into q (b) and q__CLONE (c).
    assert relations["plate_sample"] == {"p": ["a", "b"], "q": ["b"], "q__CLONE": ["c"]}


# ---------------------------------------------------------------------------------------------
# get_dependencies
# ---------------------------------------------------------------------------------------------


def test_dependencies_chain():
    def model():
        a = jppl.sample("a", dist.Normal(0.0, 1.0))
        jppl.sample("b", dist.Normal(a, 1.0), obs=0.0)

    assert get_dependencies(model) == {
        "prior_dependencies": {"a": {"a": set()}, "b": {"a": set(), "b": set()}},
        "posterior_dependencies": {"a": {"a": set(), "b": set()}},
    }


def test_dependencies_collider_is_moralized():
    def model():
        a = jppl.sample("a", dist.Normal(0.0, 1.0))
        b = jppl.sample("b", dist.LogNormal(0.0, 1.0))
        c = jppl.sample("c", dist.Normal(a, b))
        jppl.sample("d", dist.Normal(c, 1.0), obs=0.0)

    assert get_dependencies(model) == {
        "prior_dependencies": {
            "a": {"a": set()},
            "b": {"b": set()},
            "c": {"a": set(), "b": set(), "c": set()},
            "d": {"c": set(), "d": set()},
        },
        "posterior_dependencies": {
            "a": {"a": set(), "b": set(), "c": set()},
            "b": {"b": set(), "c": set()},
            "c": {"c": set(), "d": set()},
        },
    }


def test_dependencies_plate_makes_self_dependence_and_skips_deterministic():
    def model():
        with jppl.plate("p", 5):
            a = jppl.sample("a", dist.Normal(0.0, 1.0))
        total = jppl.deterministic("total", a.sum())
        jppl.sample("b", dist.Normal(total, 1.0), obs=0.0)

    assert get_dependencies(model) == {
        "prior_dependencies": {"a": {"a": set()}, "b": {"a": set(), "b": set()}},
        "posterior_dependencies": {"a": {"a": {"p"}, "b": set()}},
    }


# ---------------------------------------------------------------------------------------------
# render_model
# ---------------------------------------------------------------------------------------------


def test_render_model_source():
    graph = render_model(plates_model, model_args=(jnp.ones(10),))
    assert isinstance(graph, graphviz.Digraph)
    expected = "\n".join(
        [
            "digraph {",
            "\tm [label=m fillcolor=white shape=ellipse style=filled]",
            "\tsd [label=sd fillcolor=white shape=ellipse style=filled]",
            "\tsubgraph cluster_N {",
            "\t\tlabel=N labeljust=r labelloc=b",
            "\t\tobs [label=obs fillcolor=grey shape=ellipse style=filled]",
            "\t}",
            "\tm -> sd",
            "\tm -> obs",
            "\tsd -> obs",
            "}",
            "",
        ]
    )
    assert graph.source == expected


def test_render_model_distributions_params_and_nested_plates():
    graph = render_model(
        deterministic_model,
        model_kwargs={"x": X, "y": Y},
        render_distributions=True,
        render_params=True,
    )
    source = graph.source
    assert '\tmu [label=mu fillcolor=white shape=ellipse style="filled,dashed"]' in source
    assert "\tw [label=w fillcolor=white shape=plain style=filled]" in source
    assert "\tw -> mu" in source and "\tz -> mu" in source and "\tmu -> y" in source
    legend = (
        r'distribution_description_node [label="scale ~ HalfNormal\lz ~ Normal\l'
        r"mu ~ Deterministic\ly ~ Normal\lw ∈ " + str(dist.constraints.positive) + r'\l"'
    )
    assert legend in source

    nested = render_model(nested_plates_model).source
    # M's box sits inside N's box.
    assert nested.index("subgraph cluster_N") < nested.index("subgraph cluster_M")
    assert "\t\tsubgraph cluster_M {" in nested


def test_render_model_without_graphviz_names_the_extra():
    code = (
        "import sys\nsys.modules['graphviz'] = None\n"
        "import jppl, jppl.distributions as dist\n"
        "jppl.render_model(lambda: jppl.sample('a', dist.Normal(0., 1.)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "pip install 'jppl[graphviz]'" in done.stderr


def test_render_model_to_file_needs_dot(tmp_path):
    try:
        graphviz.version()
    except graphviz.ExecutableNotFound:
        with pytest.raises(graphviz.ExecutableNotFound):
            render_model(plates_model, (jnp.ones(3),), filename=tmp_path / "m.svg")
        return
    render_model(plates_model, (jnp.ones(3),), filename=tmp_path / "m.svg")
    assert (tmp_path / "m.svg").read_text().lstrip().startswith("<?xml")
