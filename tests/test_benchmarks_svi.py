"""The SVI benchmark (``benchmarks/svi.py``) compares the same work in jppl and NumPyro.

For each benchmark problem: (a) the jppl and NumPyro versions of the model have the same log
density at the same latent values; (b) after ``svi.init`` with the benchmark's ``init_params``
both SVI objects hold the same guide parameters (names, shapes, values); (c) the two
``Trace_ELBO`` losses at those parameters agree within Monte Carlo error (many particles, so
the guides are the same distributions too); (d) a couple of ``svi.update`` steps run in both
libraries and give finite losses.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from benchmarks import svi as bench

PROBLEMS = ["logreg", "bnn"]
# Particles of the ELBO comparison (the BNN's are more expensive and less noisy per particle).
NUM_ELBO_PARTICLES = {"logreg": 256, "bnn": 128}


def _run_compiled(fn, *args):
    """``jax.jit(fn)(*args)`` compiled without LLVM optimizations (the BNN's gradient takes
    several seconds to compile otherwise; the values are the same)."""
    compiled = jax.jit(fn).lower(*args).compile({"xla_backend_optimization_level": 0})
    return compiled(*args)


@pytest.fixture(scope="module")
def backends():
    return bench.backends()


@pytest.fixture(scope="module", params=PROBLEMS)
def setup(request, backends):
    """``(problem, {library: (svi, state after init, losses of 2 updates)})``.

    ``svi.init`` and two ``svi.update`` steps run in one compiled function per library (eager
    ``init`` would compile each sampling op on its own, which takes longer).
    """
    problem = bench.PROBLEMS[request.param](quick=True)
    built = {}
    for backend in backends:
        svi, _, _ = bench.build_svi(backend, problem)

        def init_and_update(key, data, svi=svi):
            state = svi.init(key, *data, init_params=problem.init_params())

            def body(s, _):
                return svi.update(s, *data)

            _, losses = jax.lax.scan(body, state, None, length=2)
            return state, losses

        state, losses = _run_compiled(init_and_update, jax.random.key(0), problem.data)
        built[backend.name] = (svi, state, losses)
    return problem, built


def _latent_values(problem, seed: int = 0) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    return {
        name: jnp.asarray(loc + 0.3 * rng.normal(size=np.shape(loc)), jnp.float32)
        for name, loc in problem.latent_init.items()
    }


def test_same_log_density(setup, backends):
    problem, _ = setup
    values = _latent_values(problem)
    logps = []
    for backend in backends:
        model = problem.make_model(backend.pp, backend.dist)
        log_joint = _run_compiled(
            lambda v, model=model, backend=backend: backend.log_density(model, problem.data, {}, v)[
                0
            ],
            values,
        )
        logps.append(float(log_joint))
    assert np.isfinite(logps).all()
    np.testing.assert_allclose(logps[0], logps[1], rtol=1e-5)


def test_same_initial_params(setup):
    problem, built = setup
    init_params = problem.init_params()
    for name, (svi, state, _) in built.items():
        params = svi.get_params(state)
        # Same parameter names, shapes and values in both libraries: init_params took effect.
        assert set(params) == set(init_params), name
        for site, value in init_params.items():
            np.testing.assert_allclose(
                params[site], value, rtol=1e-5, atol=1e-6, err_msg=f"{name} {site}"
            )


def test_same_elbo(setup, backends):
    problem, _ = setup
    params = problem.init_params()
    n = NUM_ELBO_PARTICLES[problem.name]
    key = jax.random.key(3)
    losses, particle_sd = {}, None
    for backend in backends:
        _, model, guide = bench.build_svi(backend, problem)
        elbo = backend.Trace_ELBO(num_particles=n)

        def loss_and_particles(key, params, elbo=elbo, model=model, guide=guide, jppl=False):
            # The guide's first call (its prototype) happens here, inside the compiled function.
            loss = elbo.loss(key, params, model, guide, *problem.data)
            if not jppl:
                return loss, jnp.zeros(n)
            keys = jax.random.split(key, n)
            particles, _ = elbo.loss_from_particles(keys, params, model, guide, problem.data, {})
            return loss, particles

        loss, particles = _run_compiled(
            partial(loss_and_particles, jppl=backend.name == "jppl"), key, params
        )
        losses[backend.name] = float(loss)
        if backend.name == "jppl":
            particle_sd = float(jnp.std(particles))
    # Independent estimates of the same mean: difference within 5 standard errors.
    se = particle_sd * np.sqrt(2.0 / n)
    diff = abs(losses["jppl"] - losses["numpyro"])
    assert np.isfinite(list(losses.values())).all()
    assert diff < 5 * se + 1e-3 * abs(losses["jppl"]), (losses, se)


def test_a_few_updates_run(setup):
    _, built = setup
    for name, (_, _, losses) in built.items():
        assert losses.shape == (2,)
        assert np.isfinite(np.asarray(losses)).all(), name
