"""Parallel enumeration of discrete latent sites, checked against brute force.

Every marginal density here is compared with the sum over all discrete configurations
written as explicit loops (float64, to 1e-10); posterior draws of the discrete sites with the
exact posterior; MAP with the brute-force argmax.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

import jppl
import jppl.distributions as dist
from jppl.contrib.control_flow import scan
from jppl.contrib.funsor import config_enumerate, enum, infer_discrete, log_density, markov
from jppl.handlers import seed, substitute, trace
from jppl.infer import MCMC, NUTS, SVI, Predictive, TraceEnum_ELBO, initialize_model
from jppl.infer.autoguide import AutoDelta
from jppl.util import enable_x64


@pytest.fixture(autouse=True)
def x64():
    enable_x64(True)
    yield
    enable_x64(False)


def _density(model, first_available_dim, *args, params=None):
    run = enum(config_enumerate(model), first_available_dim=first_available_dim)
    return float(log_density(run, args, {}, params or {})[0])


# -- a two-component mixture ---------------------------------------------------------------------

MIX_X = np.array([0.1, 2.3, -1.0, 1.7, 0.4])


def mixture(x, weights, locs):
    with jppl.plate("N", x.shape[0]):
        z = jppl.sample("z", dist.Categorical(weights))
        jppl.sample("x", dist.Normal(locs[z], 1.0), obs=x)


def _mixture_brute(x, weights, locs):
    total = []
    for zs in itertools.product(range(len(weights)), repeat=len(x)):
        total.append(
            sum(
                np.log(weights[z]) + norm.logpdf(xi, locs[z], 1.0)
                for z, xi in zip(zs, x, strict=True)
            )
        )
    return logsumexp(total)


def test_mixture_density_matches_brute_force():
    weights, locs = np.array([0.3, 0.7]), np.array([-1.0, 2.0])
    got = _density(mixture, -2, jnp.asarray(MIX_X), jnp.asarray(weights), jnp.asarray(locs))
    np.testing.assert_allclose(got, _mixture_brute(MIX_X, weights, locs), rtol=0, atol=1e-10)


def test_mixture_gradient_matches_finite_differences():
    weights = jnp.array([0.3, 0.7])

    def f(locs):
        run = enum(config_enumerate(mixture), first_available_dim=-2)
        return log_density(run, (jnp.asarray(MIX_X), weights, locs), {}, {})[0]

    locs = jnp.array([-1.0, 2.0])
    grad = np.asarray(jax.grad(f)(locs))
    eps = 1e-6
    for i in range(2):
        step = np.zeros(2)
        step[i] = eps
        fd = (
            _mixture_brute(MIX_X, np.asarray(weights), np.asarray(locs) + step)
            - _mixture_brute(MIX_X, np.asarray(weights), np.asarray(locs) - step)
        ) / (2 * eps)
        np.testing.assert_allclose(grad[i], fd, rtol=1e-6)


# -- a 3-state HMM of length 6 -------------------------------------------------------------------

RNG = np.random.default_rng(0)
K, T = 3, 6
TRANS = RNG.dirichlet(np.ones(K), size=K)
INIT = RNG.dirichlet(np.ones(K))
MUS = np.array([-1.0, 0.0, 2.0])
YS = RNG.normal(size=T)


def hmm(ys, use_markov=True):
    z = jppl.sample("z_0", dist.Categorical(jnp.asarray(INIT)))
    jppl.sample("y_0", dist.Normal(jnp.asarray(MUS)[z], 1.0), obs=ys[0])
    steps = markov(range(1, len(ys))) if use_markov else range(1, len(ys))
    for t in steps:
        z = jppl.sample(f"z_{t}", dist.Categorical(jnp.asarray(TRANS)[z]))
        jppl.sample(f"y_{t}", dist.Normal(jnp.asarray(MUS)[z], 1.0), obs=ys[t])


def _hmm_joint(zs):
    lp = np.log(INIT[zs[0]]) + sum(np.log(TRANS[zs[t - 1], zs[t]]) for t in range(1, T))
    return lp + sum(norm.logpdf(YS[t], MUS[zs[t]], 1.0) for t in range(T))


HMM_CONFIGS = list(itertools.product(range(K), repeat=T))
HMM_JOINT = np.array([_hmm_joint(zs) for zs in HMM_CONFIGS])


def _forward_algorithm(ys):
    alpha = np.log(INIT) + norm.logpdf(ys[0], MUS, 1.0)
    for t in range(1, len(ys)):
        alpha = logsumexp(alpha[:, None] + np.log(TRANS), axis=0) + norm.logpdf(ys[t], MUS, 1.0)
    return logsumexp(alpha)


@pytest.mark.parametrize("use_markov", [True, False])
def test_hmm_density_matches_brute_force(use_markov):
    got = _density(lambda: hmm(YS, use_markov), -1)
    np.testing.assert_allclose(got, logsumexp(HMM_JOINT), rtol=0, atol=1e-10)


def test_markov_reuses_dims():
    run = enum(config_enumerate(lambda: hmm(YS)), first_available_dim=-1)
    tr = trace(run).get_trace()
    dims = {tr[f"z_{t}"]["infer"]["_enumerate_dim"] for t in range(T)}
    # z_0 (outside the chain) plus two alternating dims for the chain, whatever T is
    assert len(dims) == 3
    long = np.random.default_rng(1).normal(size=40)
    tr = trace(enum(config_enumerate(lambda: hmm(long)), first_available_dim=-1)).get_trace()
    assert (
        len({s["infer"]["_enumerate_dim"] for s in tr.values() if "_enumerate_dim" in s["infer"]})
        == 3
    )
    got = float(log_density(enum(config_enumerate(lambda: hmm(long)), first_available_dim=-1))[0])
    np.testing.assert_allclose(got, _forward_algorithm(long), rtol=0, atol=1e-9)


def test_hmm_map_and_posterior_draws():
    model = config_enumerate(lambda: hmm(YS))
    tr = trace(infer_discrete(model, first_available_dim=-1, temperature=0)).get_trace()
    best = HMM_CONFIGS[int(np.argmax(HMM_JOINT))]
    assert tuple(int(tr[f"z_{t}"]["value"]) for t in range(T)) == best

    post = np.exp(HMM_JOINT - logsumexp(HMM_JOINT))

    @jax.jit
    def draw(key):
        tr = trace(infer_discrete(model, first_available_dim=-1, rng_key=key)).get_trace()
        return jnp.stack([tr[f"z_{t}"]["value"] for t in range(T)])

    n = 3000
    draws = np.asarray(jax.vmap(draw)(jax.random.split(jax.random.key(0), n)))
    # Joint draws: the pair (z_2, z_3) and each marginal against the exact posterior.
    for t in (0, 2, 5):
        exact = np.array([post[[zs[t] == k for zs in HMM_CONFIGS]].sum() for k in range(K)])
        freq = np.bincount(draws[:, t], minlength=K) / n
        assert np.all(np.abs(freq - exact) <= 4 * np.sqrt(exact * (1 - exact) / n) + 1e-3)
    pair = np.array(
        [
            post[[zs[2] == a and zs[3] == b for zs in HMM_CONFIGS]].sum()
            for a in range(K)
            for b in range(K)
        ]
    )
    freq = np.bincount(draws[:, 2] * K + draws[:, 3], minlength=K * K) / n
    assert np.all(np.abs(freq - pair) <= 4 * np.sqrt(pair * (1 - pair) / n) + 1e-3)


# -- enumerated sites in nested plates -----------------------------------------------------------

G, M = 3, 4
X2 = np.random.default_rng(2).normal(size=(M, G))  # (obs, group): plate "obs" at dim -2
P_C = np.array([0.4, 0.6])
P_Z = np.array([[0.8, 0.2], [0.3, 0.7]])  # z | c
LOC = np.array([-1.0, 1.5])


def two_level(x):
    c = jppl.sample("c", dist.Categorical(jnp.asarray(P_C)))
    with jppl.plate("groups", G, dim=-1):
        z = jppl.sample("z", dist.Categorical(jnp.asarray(P_Z)[c]))
        with jppl.plate("obs", M, dim=-2):
            jppl.sample("x", dist.Normal(jnp.asarray(LOC)[z], 1.0), obs=x)


def test_nested_plates_density_matches_brute_force():
    total = []
    for c in range(2):
        for zs in itertools.product(range(2), repeat=G):
            lp = np.log(P_C[c]) + sum(np.log(P_Z[c, z]) for z in zs)
            lp += sum(norm.logpdf(X2[m, g], LOC[zs[g]], 1.0) for m in range(M) for g in range(G))
            total.append(lp)
    got = _density(two_level, -3, jnp.asarray(X2))
    np.testing.assert_allclose(got, logsumexp(total), rtol=0, atol=1e-10)


def test_nested_plates_posterior_of_the_global_site():
    logp = np.zeros(2)
    for c in range(2):
        per_group = [
            logsumexp(
                [np.log(P_Z[c, z]) + norm.logpdf(X2[:, g], LOC[z], 1.0).sum() for z in range(2)]
            )
            for g in range(G)
        ]
        logp[c] = np.log(P_C[c]) + sum(per_group)
    exact = np.exp(logp - logsumexp(logp))

    @jax.jit
    def draw(key):
        model = infer_discrete(config_enumerate(two_level), first_available_dim=-3, rng_key=key)
        tr = trace(model).get_trace(jnp.asarray(X2))
        return tr["c"]["value"], tr["z"]["value"]

    cs, zs = jax.vmap(draw)(jax.random.split(jax.random.key(3), 2000))
    assert zs.shape == (2000, G)
    freq = float(np.mean(np.asarray(cs) == 1))
    assert abs(freq - exact[1]) < 4 * np.sqrt(exact[1] * exact[0] / 2000) + 1e-3


# -- NUTS ----------------------------------------------------------------------------------------


def gmm(x):
    locs = jppl.sample("locs", dist.Normal(jnp.array([-2.0, 2.0]), 1.0).to_event(1))
    with jppl.plate("N", x.shape[0]):
        z = jppl.sample("z", dist.Categorical(jnp.array([0.3, 0.7])))
        jppl.sample("x", dist.Normal(locs[z], 1.0), obs=x)


def _gmm_grid_posterior(x):
    grid = np.linspace(-5.0, 5.0, 401)
    a, b = np.meshgrid(grid, grid, indexing="ij")
    logp = norm.logpdf(a, -2.0, 1.0) + norm.logpdf(b, 2.0, 1.0)
    for xi in x:
        logp += np.logaddexp(
            np.log(0.3) + norm.logpdf(xi, a, 1.0), np.log(0.7) + norm.logpdf(xi, b, 1.0)
        )
    p = np.exp(logp - logp.max())
    p /= p.sum()
    return np.array([(p * a).sum(), (p * b).sum()])


def test_nuts_on_an_enumerated_mixture_matches_the_exact_posterior():
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(-1.5, 1.0, 6), rng.normal(1.0, 1.0, 14)])
    mcmc = MCMC(NUTS(gmm), num_warmup=400, num_samples=1000, num_chains=2, progress_bar=False)
    mcmc.run(jax.random.key(0), jnp.asarray(x))
    locs = np.asarray(mcmc.get_samples(group_by_chain=True)["locs"])
    from jppl.diagnostics import effective_sample_size

    ess = np.asarray(effective_sample_size(locs))
    mcse = locs.reshape(-1, 2).std(0) / np.sqrt(ess)
    exact = _gmm_grid_posterior(x)
    assert np.all(np.abs(locs.reshape(-1, 2).mean(0) - exact) < 4 * mcse)


def test_initialize_model_enumerates_and_potential_is_the_marginal():
    x = jnp.asarray([0.3, -1.2, 2.0])
    info = initialize_model(jax.random.key(1), gmm, model_args=(x,))
    z = {"locs": jnp.array([-1.0, 1.0])}
    expected = norm.logpdf([-1.0, 1.0], [-2.0, 2.0], 1.0).sum() + sum(
        np.logaddexp(
            np.log(0.3) + norm.logpdf(xi, -1.0, 1.0), np.log(0.7) + norm.logpdf(xi, 1.0, 1.0)
        )
        for xi in np.asarray(x)
    )
    np.testing.assert_allclose(float(info.potential_fn(z)), -expected, rtol=1e-10)


def test_predictive_infer_discrete_draws_assignments_from_their_posterior():
    x = jnp.asarray([-4.0, 4.0, -3.5, 3.0])
    samples = {"locs": jnp.array([[-4.0, 4.0]] * 200)}
    out = Predictive(gmm, samples, infer_discrete=True)(jax.random.key(5), x)
    assert out["z"].shape == (200, 4)
    np.testing.assert_array_equal(np.asarray(out["z"]).mean(0), [0.0, 1.0, 0.0, 1.0])
    # An ambiguous point: its assignment follows the exact posterior.
    x = jnp.asarray([0.0])
    samples = {"locs": jnp.array([[-1.0, 1.0]] * 4000)}
    z = np.asarray(Predictive(gmm, samples, infer_discrete=True)(jax.random.key(6), x)["z"])
    p1 = (
        0.7
        * norm.pdf(0.0, 1.0, 1.0)
        / (0.7 * norm.pdf(0.0, 1.0, 1.0) + 0.3 * norm.pdf(0.0, -1.0, 1.0))
    )
    assert abs(z.mean() - p1) < 4 * np.sqrt(p1 * (1 - p1) / 4000)


# -- TraceEnum_ELBO ------------------------------------------------------------------------------


def test_trace_enum_elbo_with_a_point_guide_is_the_marginal_density():
    x = jnp.asarray(MIX_X)
    model = config_enumerate(gmm)
    guide = AutoDelta(model)
    svi = SVI(model, guide, optax.adam(0.01), TraceEnum_ELBO())
    state = svi.init(jax.random.key(0), x)
    params = svi.get_params(state)
    locs = np.asarray(params["locs_auto_loc"])
    loss = float(svi.evaluate(state, x))
    expected = norm.logpdf(locs, [-2.0, 2.0], 1.0).sum() + sum(
        np.logaddexp(
            np.log(0.3) + norm.logpdf(xi, locs[0], 1.0), np.log(0.7) + norm.logpdf(xi, locs[1], 1.0)
        )
        for xi in MIX_X
    )
    np.testing.assert_allclose(loss, -expected, rtol=1e-10)


def test_trace_enum_elbo_finds_the_map():
    rng = np.random.default_rng(4)
    x = jnp.asarray(np.concatenate([rng.normal(-1.5, 1.0, 6), rng.normal(1.0, 1.0, 14)]))
    model = config_enumerate(gmm)
    svi = SVI(model, AutoDelta(model), optax.adam(0.05), TraceEnum_ELBO(max_plate_nesting=1))
    result = svi.run(jax.random.key(0), 1500, x, progress_bar=False)
    got = np.asarray(result.params["locs_auto_loc"])
    grid = np.linspace(-5.0, 5.0, 1001)
    a, b = np.meshgrid(grid, grid, indexing="ij")
    logp = norm.logpdf(a, -2.0, 1.0) + norm.logpdf(b, 2.0, 1.0)
    for xi in np.asarray(x):
        logp += np.logaddexp(
            np.log(0.3) + norm.logpdf(xi, a, 1.0), np.log(0.7) + norm.logpdf(xi, b, 1.0)
        )
    i, j = np.unravel_index(np.argmax(logp), logp.shape)
    np.testing.assert_allclose(got, [grid[i], grid[j]], atol=0.02)


def test_subsampled_plate_scales_the_summed_out_density():
    x = jnp.asarray(MIX_X)
    weights, locs = jnp.array([0.3, 0.7]), jnp.array([-1.0, 2.0])

    def model(idx):
        with jppl.plate("N", 5, subsample_size=2) as i:
            z = jppl.sample("z", dist.Categorical(weights))
            jppl.sample("x", dist.Normal(locs[z], 1.0), obs=x[i])

    run = substitute(
        enum(config_enumerate(model), first_available_dim=-2), data={"N": jnp.array([1, 3])}
    )
    got = float(log_density(run, (None,), {}, {})[0])
    per_point = [
        logsumexp(np.log([0.3, 0.7]) + norm.logpdf(float(MIX_X[k]), [-1.0, 2.0], 1.0))
        for k in (1, 3)
    ]
    np.testing.assert_allclose(got, 2.5 * sum(per_point), rtol=1e-10)


# -- errors --------------------------------------------------------------------------------------


def test_unbounded_discrete_latent_is_a_clear_error():
    def model():
        n = jppl.sample("n_events", dist.Poisson(3.0))
        jppl.sample("y", dist.Normal(n, 1.0), obs=2.0)

    mcmc = MCMC(NUTS(model), num_warmup=5, num_samples=5, progress_bar=False)
    with pytest.raises(ValueError, match="n_events.*Poisson.*unbounded"):
        mcmc.run(jax.random.key(0))

    def marked():
        n = jppl.sample("n_events", dist.Poisson(3.0), infer={"enumerate": "parallel"})
        jppl.sample("y", dist.Normal(n, 1.0), obs=2.0)

    run = enum(marked, first_available_dim=-1)
    with pytest.raises(ValueError, match="n_events.*cannot be enumerated"):
        log_density(run, (), {}, {})


def test_too_small_max_plate_nesting_names_the_site():
    run = enum(config_enumerate(two_level), first_available_dim=-2)
    with pytest.raises(ValueError, match="'z'.*plate 'obs'|'x'.*plate 'obs'"):
        log_density(run, (jnp.asarray(X2),), {}, {})


def test_site_outside_the_plate_of_its_enumerated_parent_is_an_error():
    def model():
        with jppl.plate("N", 3):
            z = jppl.sample("z", dist.Bernoulli(0.5))
        jppl.sample("y", dist.Normal(z, 1.0), obs=jnp.ones(3))

    with pytest.raises(ValueError, match="'y'.*not a plate"):
        log_density(enum(config_enumerate(model), first_available_dim=-2), (), {}, {})


def test_infer_discrete_arguments():
    with pytest.raises(ValueError, match="temperature"):
        infer_discrete(gmm, temperature=0.5)
    with pytest.raises(ValueError, match="rng_key"):
        infer_discrete(gmm, temperature=1)


def test_enum_needs_first_available_dim():
    with pytest.raises(ValueError, match="first_available_dim"):
        enum(gmm)
    with pytest.raises(ValueError, match="negative"):
        enum(gmm, first_available_dim=1)


def test_seeded_run_of_a_configured_model_still_samples():
    # config_enumerate only marks sites: without `enum` the model runs as before.
    tr = trace(seed(config_enumerate(gmm), 0)).get_trace(jnp.zeros(3))
    assert tr["z"]["value"].shape == (3,)
    assert tr["z"]["infer"]["enumerate"] == "parallel"


# -- scan ----------------------------------------------------------------------------------------


def scanned_hmm(ys):
    z0 = jppl.sample("z0", dist.Categorical(jnp.asarray(INIT)))
    jppl.sample("y0", dist.Normal(jnp.asarray(MUS)[z0], 1.0), obs=ys[0])

    def step(z_prev, y):
        z = jppl.sample("z", dist.Categorical(jnp.asarray(TRANS)[z_prev]))
        jppl.sample("y", dist.Normal(jnp.asarray(MUS)[z], 1.0), obs=y)
        return z, z

    return scan(step, z0, ys[1:])


@pytest.mark.parametrize("length", [2, 3, 6, 60, 1000])
def test_scan_density_is_the_forward_algorithm(length):
    ys = np.random.default_rng(length).normal(size=length)
    run = enum(config_enumerate(scanned_hmm), first_available_dim=-1)
    got = jax.jit(lambda ys: log_density(run, (ys,), {}, {})[0])(jnp.asarray(ys))
    np.testing.assert_allclose(float(got), _forward_algorithm(ys), rtol=0, atol=1e-9)
    shapes = {}

    def record(ys):
        tr = trace(run).get_trace(ys)
        shapes.update({name: site["value"].shape for name, site in tr.items()})

    jax.eval_shape(record, jnp.asarray(ys))
    # NumPyro's layout: the first scanned step is '_PREV_z', the others stacked as 'z'.
    assert shapes["_PREV_z"][0] == K
    assert shapes["z"][0] == length - 2 if length > 2 else "z" not in shapes


def test_scan_with_plates_and_masks_matches_the_forward_algorithm():
    """NumPyro's hmm_enum model_1 layout: sequences plate around the scan, tones inside, and
    steps past each sequence's length masked (their variables still summed: log H each)."""
    rng = np.random.default_rng(0)
    S, T_, D, H = 3, 6, 4, 2
    seqs = (rng.random((S, T_, D)) < 0.4).astype(float)
    lengths = np.array([6, 4, 5])
    px, py = rng.dirichlet(np.ones(H), size=H), rng.beta(1, 1, size=(H, D))

    def model_1(sequences, lengths):
        def transition_fn(carry, y):
            x_prev, t = carry
            with jppl.handlers.mask(mask=(t < lengths)[..., None]):
                x = jppl.sample("x", dist.Categorical(jnp.asarray(px)[x_prev]))
                with jppl.plate("tones", D, dim=-1):
                    jppl.sample("y", dist.Bernoulli(jnp.asarray(py)[x.squeeze(-1)]), obs=y)
            return (x, t + 1), None

        x_init = jnp.zeros((S, 1), dtype=jnp.int32)
        with jppl.plate("sequences", S, dim=-2):
            scan(transition_fn, (x_init, 0), jnp.swapaxes(sequences, 0, 1))

    run = enum(config_enumerate(model_1), first_available_dim=-3)
    density = jax.jit(lambda *args: log_density(run, args, {}, {})[0])
    got = float(density(jnp.asarray(seqs), jnp.asarray(lengths)))
    total = 0.0
    for s in range(S):

        def emit(x, t, s=s):
            return np.sum(np.log(np.where(seqs[s, t] == 1, py[x], 1 - py[x])))

        alpha = np.log(px[0]) + np.array([emit(x, 0) for x in range(H)])
        for t in range(1, T_):
            if t < lengths[s]:
                alpha = logsumexp(alpha[:, None] + np.log(px), axis=0)
                alpha = alpha + np.array([emit(x, t) for x in range(H)])
            else:
                alpha = np.full(H, logsumexp(alpha))
        total += logsumexp(alpha)
    np.testing.assert_allclose(got, total, rtol=0, atol=1e-9)


def _scanned_locs_model(ys):
    locs = jppl.sample("locs", dist.Normal(jnp.asarray(MUS), 1.0).to_event(1))

    def step(z_prev, y):
        z = jppl.sample("z", dist.Categorical(jnp.asarray(TRANS)[z_prev]))
        jppl.sample("y", dist.Normal(locs[z], 1.0), obs=y)
        return z, None

    scan(step, 0, ys)


def test_scanned_hmm_density_and_gradient_are_exact():
    ys = jnp.asarray(np.random.default_rng(7).normal(size=30))

    run = enum(config_enumerate(_scanned_locs_model), first_available_dim=-1)

    @jax.jit
    def f(locs):
        return log_density(run, (ys,), {}, {"locs": locs})[0]

    def brute(locs):
        alpha = np.log(TRANS[0]) + norm.logpdf(float(ys[0]), locs, 1.0)
        for y in np.asarray(ys[1:]):
            alpha = logsumexp(alpha[:, None] + np.log(TRANS), axis=0) + norm.logpdf(y, locs, 1.0)
        return norm.logpdf(locs, MUS, 1.0).sum() + logsumexp(alpha)

    locs = np.array([-0.5, 0.3, 1.1])
    np.testing.assert_allclose(float(f(jnp.asarray(locs))), brute(locs), rtol=1e-10)
    grad = np.asarray(jax.jit(jax.grad(f))(jnp.asarray(locs)))
    for i in range(3):
        e = np.zeros(3)
        e[i] = 1e-6
        np.testing.assert_allclose(grad[i], (brute(locs + e) - brute(locs - e)) / 2e-6, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::jppl.diagnostics.ConvergenceWarning")  # a short run
def test_nuts_on_a_scanned_hmm_runs():
    ys = jnp.asarray(np.random.default_rng(7).normal(size=30))
    mcmc = MCMC(NUTS(_scanned_locs_model), num_warmup=100, num_samples=100, progress_bar=False)
    mcmc.run(jax.random.key(1), ys)
    assert mcmc.get_samples()["locs"].shape == (100, 3)
    assert np.isfinite(np.asarray(mcmc.get_samples()["locs"])).all()


def test_infer_discrete_of_a_scan_is_a_clear_error():
    model = infer_discrete(config_enumerate(scanned_hmm), first_available_dim=-1, temperature=0)
    with pytest.raises(NotImplementedError, match="inside a scan"):
        model(jnp.asarray(YS))


def test_enumerate_support_of_every_finite_discrete_distribution():
    """Each enumerable distribution's support sums its probabilities to one."""
    cases = [
        dist.Bernoulli(0.3),
        dist.Categorical(jnp.array([0.2, 0.5, 0.3])),
        dist.Binomial(4, 0.35),
        dist.BetaBinomial(2.0, 3.0, 5),
        dist.DiscreteUniform(-2, 3),
        dist.ZeroInflatedDistribution(dist.Binomial(3, 0.6), gate=0.25),
        dist.Bernoulli(0.3).expand([2]).mask(jnp.array([True, True])),
    ]
    for d in cases:
        assert d.has_enumerate_support, type(d).__name__
        support = d.enumerate_support(expand=False)
        total = jnp.exp(d.log_prob(support)).sum(0)
        np.testing.assert_allclose(np.asarray(total), 1.0, rtol=1e-10, err_msg=type(d).__name__)
    for d in (dist.Poisson(2.0), dist.Geometric(0.3), dist.NegativeBinomial2(2.0, 3.0)):
        assert not d.has_enumerate_support


def test_log_likelihood_sums_out_the_assignments_per_point():
    from jppl.infer import log_likelihood

    x = jnp.asarray(MIX_X)
    draws = jnp.array([[-1.0, 1.0], [-2.5, 0.5], [0.0, 3.0]])
    got = np.asarray(log_likelihood(gmm, {"locs": draws}, x)["x"])
    assert got.shape == (3, len(MIX_X))
    for s, locs in enumerate(np.asarray(draws)):
        want = np.logaddexp(
            np.log(0.3) + norm.logpdf(MIX_X, locs[0], 1.0),
            np.log(0.7) + norm.logpdf(MIX_X, locs[1], 1.0),
        )
        np.testing.assert_allclose(got[s], want, rtol=1e-10)
    # the nested-plates model: per (obs, group) entry, both levels summed out
    ll = np.asarray(log_likelihood(two_level, {"_": jnp.zeros((1,))}, jnp.asarray(X2))["x"])
    assert ll.shape == (1, M, G)
    want = np.zeros((M, G))
    for m in range(M):
        for g in range(G):
            want[m, g] = logsumexp(
                [
                    np.log(P_C[c]) + np.log(P_Z[c, z]) + norm.logpdf(X2[m, g], LOC[z], 1.0)
                    for c in range(2)
                    for z in range(2)
                ]
            )
    np.testing.assert_allclose(ll[0], want, rtol=1e-10)
