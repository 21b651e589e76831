"""Batched multivariate Normal guides and DAIS guides (jppl.vi.autoguide_extra).

Truth: scipy densities of the guide's own parameters, closed-form Gaussian posteriors and log
evidences (float64 numpy/scipy), and the identity ``E_q[w] = p(data)`` for the (extended)
importance weights ``w = p / q`` of a correct guide density.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

import jppl
import jppl.distributions as dist
from jppl.handlers import scale, seed, substitute, trace
from jppl.vi import SVI, Trace_ELBO
from jppl.vi.autoguide import AutoNormal
from jppl.vi.autoguide_extra import (
    AutoBatchedLowRankMultivariateNormal,
    AutoBatchedMultivariateNormal,
    AutoDAIS,
    AutoSemiDAIS,
    AutoSurrogateLikelihoodDAIS,
)

# ---------------------------------------------------------------------------------------------
# Models with closed forms
# ---------------------------------------------------------------------------------------------

G, R = 3, 4  # 3 independent 2-D blocks, 4 observations each
PRIOR_COV = np.array([[1.0, 0.6], [0.6, 1.5]])
LIK_COV = np.array([[0.5, -0.2], [-0.2, 0.4]])
Y_BLOCKS = np.random.RandomState(0).randn(R, G, 2) + np.array([1.0, -0.5])


def blocks_model(y):
    with jppl.plate("g", G, dim=-1):
        x = jppl.sample("x", dist.MultivariateNormal(jnp.zeros(2), jnp.asarray(PRIOR_COV)))
        with jppl.plate("r", R, dim=-2):
            jppl.sample("y", dist.MultivariateNormal(x, jnp.asarray(LIK_COV)), obs=y)


def blocks_posterior() -> tuple[np.ndarray, np.ndarray]:
    """Exact posterior of each block: means ``(G, 2)``, shared covariance ``(2, 2)``."""
    lik_prec = np.linalg.inv(LIK_COV)
    cov = np.linalg.inv(np.linalg.inv(PRIOR_COV) + R * lik_prec)
    means = (cov @ lik_prec @ Y_BLOCKS.sum(0).T).T
    return means, cov


def blocks_log_evidence() -> float:
    """``sum_g log N(y[:, g] (R*2,); 0, 1 1^T (x) prior + I (x) lik)``."""
    cov = np.kron(np.ones((R, R)), PRIOR_COV) + np.kron(np.eye(R), LIK_COV)
    return sum(
        stats.multivariate_normal(np.zeros(2 * R), cov).logpdf(Y_BLOCKS[:, g].reshape(-1))
        for g in range(G)
    )


def two_site_model():
    """Per block: ``x`` (2-D, real) and ``s`` (positive), sharing the leading batch dim."""
    with jppl.plate("g", G, dim=-1):
        jppl.sample("x", dist.MultivariateNormal(jnp.zeros(2), jnp.eye(2)))
        jppl.sample("s", dist.LogNormal(0.0, 1.0))


N1 = 5
SIGMA1 = 0.7
Y1 = np.random.RandomState(1).randn(N1) + 1.0


def normal_model():
    z = jppl.sample("z", dist.Normal(0.0, 1.0))
    with jppl.plate("n", N1):
        jppl.sample("y", dist.Normal(z, SIGMA1), obs=jnp.asarray(Y1))


def normal_log_evidence() -> float:
    cov = SIGMA1**2 * np.eye(N1) + np.ones((N1, N1))
    return float(stats.multivariate_normal(np.zeros(N1), cov).logpdf(Y1))


def normal_posterior() -> tuple[float, float]:
    prec = 1.0 + N1 / SIGMA1**2
    return Y1.sum() / SIGMA1**2 / prec, prec**-0.5


def log_weights(model, guide, params, n: int, seed_: int = 7) -> np.ndarray:
    """``n`` single-particle ELBO terms ``log p(x, z) - log q(z)`` (one key each)."""
    elbo = Trace_ELBO()
    one = lambda k: -elbo.loss(k, params, model, guide)  # noqa: E731
    keys = jax.random.split(jax.random.key(seed_), n)
    return np.asarray(jax.jit(jax.vmap(one))(keys), dtype=np.float64)


def check_unbiased_and_bound(logw: np.ndarray, log_z: float) -> None:
    """``E[w] = Z`` (z-test on the weights, relative to ``Z``) and ``E[log w] <= log Z``."""
    n = logw.size
    rel = np.exp(logw - log_z)  # w / Z: mean 1 for a correct guide density
    se = rel.std(ddof=1) / np.sqrt(n)
    assert abs(rel.mean() - 1.0) < 4.0 * se + 1e-3, (rel.mean(), se)
    se_log = logw.std(ddof=1) / np.sqrt(n)
    assert logw.mean() <= log_z + 3.0 * se_log, (logw.mean(), log_z, se_log)


def init_params(model, guide, *args) -> dict:
    """The guide's initial (constrained) parameters.

    The prototype run of the model is eager (once); the guide's own run is jitted.
    """
    del model
    guide._ensure_setup(jax.random.key(0), args, {})

    def run():
        tr = trace(seed(guide, rng_seed=0)).get_trace(*args)
        return {k: site["value"] for k, site in tr.items() if site["type"] == "param"}

    return jax.jit(run)()


# ---------------------------------------------------------------------------------------------
# Batched guides
# ---------------------------------------------------------------------------------------------


def _guide_log_q(guide, params, *args) -> tuple[float, dict]:
    """``log q`` of one draw of the guide (all its sample sites) and the draw's values."""

    def run(params):
        tr = trace(seed(substitute(guide, data=params), rng_seed=3)).get_trace(*args)
        log_q = sum(
            jnp.sum(site["fn"].log_prob(site["value"]))
            for site in tr.values()
            if site["type"] == "sample"
        )
        return log_q, {k: site["value"] for k, site in tr.items() if site["type"] == "sample"}

    log_q, values = jax.jit(run)(params)
    return float(log_q), {k: np.asarray(v, np.float64) for k, v in values.items()}


def _random_tril(rng, k: int) -> np.ndarray:
    a = np.tril(rng.randn(k, k) * 0.3)
    a[np.diag_indices(k)] = np.exp(rng.randn(k) * 0.2)
    return a


def test_batched_mvn_density_factorizes_over_members_two_sites():
    guide = AutoBatchedMultivariateNormal(two_site_model)
    params = init_params(two_site_model, guide)
    assert params["auto_loc"].shape == (G, 3) and params["auto_scale_tril"].shape == (G, 3, 3)
    rng = np.random.RandomState(2)
    loc = rng.randn(G, 3)
    tril = np.stack([_random_tril(rng, 3) for _ in range(G)])
    params = {"auto_loc": jnp.asarray(loc), "auto_scale_tril": jnp.asarray(tril)}
    log_q, values = _guide_log_q(guide, params)
    x, s = values["x"], values["s"]
    expected = 0.0
    for b in range(G):
        u = np.concatenate([x[b], np.log(s[b : b + 1])])  # member b: [x_b, log s_b]
        cov = tril[b] @ tril[b].T
        expected += stats.multivariate_normal(loc[b], cov).logpdf(u) - np.log(s[b])
    np.testing.assert_allclose(log_q, expected, rtol=1e-5, atol=1e-4)


def test_batched_lowrank_density_factorizes_over_members():
    guide = AutoBatchedLowRankMultivariateNormal(two_site_model, rank=2)
    params = init_params(two_site_model, guide)
    assert params["auto_cov_factor"].shape == (G, 3, 2)
    rng = np.random.RandomState(3)
    loc, w, sc = rng.randn(G, 3), rng.randn(G, 3, 2) * 0.5, np.exp(rng.randn(G, 3) * 0.3)
    params = {
        "auto_loc": jnp.asarray(loc),
        "auto_cov_factor": jnp.asarray(w),
        "auto_scale": jnp.asarray(sc),
    }
    log_q, values = _guide_log_q(guide, params)
    expected = 0.0
    for b in range(G):
        f = sc[b][:, None] * w[b]
        cov = f @ f.T + np.diag(sc[b] ** 2)
        u = np.concatenate([values["x"][b], np.log(values["s"][b : b + 1])])
        expected += stats.multivariate_normal(loc[b], cov).logpdf(u) - np.log(values["s"][b])
    np.testing.assert_allclose(log_q, expected, rtol=1e-5, atol=1e-4)


def _exact_lowrank_params(means: np.ndarray, cov: np.ndarray) -> dict:
    """``D (W W^T + I) D = cov`` with ``D = c I``, ``c^2 < lambda_min(cov)``."""
    c = 0.5 * np.sqrt(np.linalg.eigvalsh(cov).min())
    w = np.linalg.cholesky(cov / c**2 - np.eye(2))
    return {
        "auto_loc": jnp.asarray(means, jnp.float32),
        "auto_cov_factor": jnp.asarray(np.broadcast_to(w, (G, 2, 2)), jnp.float32),
        "auto_scale": jnp.full((G, 2), c, jnp.float32),
    }


@pytest.mark.parametrize("kind", ["mvn", pytest.param("lowrank", marks=pytest.mark.slow)])
def test_batched_exact_posterior_elbo_draws_median_quantiles(kind):
    means, cov = blocks_posterior()
    y = jnp.asarray(Y_BLOCKS, jnp.float32)
    if kind == "mvn":
        guide = AutoBatchedMultivariateNormal(blocks_model)
        params = {
            "auto_loc": jnp.asarray(means, jnp.float32),
            "auto_scale_tril": jnp.asarray(
                np.broadcast_to(np.linalg.cholesky(cov), (G, 2, 2)), jnp.float32
            ),
        }
    else:
        guide = AutoBatchedLowRankMultivariateNormal(blocks_model, rank=2)
        params = _exact_lowrank_params(means, cov)
    init = init_params(blocks_model, guide, y)
    assert {k: v.shape for k, v in init.items()} == {k: v.shape for k, v in params.items()}
    assert guide.batch_shape == (G,) and guide.event_size == 2
    # With q the exact posterior, log p(y, x) - log q(x) = log p(y) for every draw.
    elbo3 = Trace_ELBO(num_particles=3)
    loss = jax.jit(lambda p: elbo3.loss(jax.random.key(1), p, blocks_model, guide, y))
    elbo = -float(loss(params))
    np.testing.assert_allclose(elbo, blocks_log_evidence(), rtol=0, atol=2e-3)

    draws = jax.jit(lambda p: guide.sample_posterior(jax.random.key(0), p, sample_shape=(1000, 2)))(
        params
    )
    assert draws["x"].shape == (1000, 2, G, 2)
    flat = np.asarray(draws["x"], np.float64).reshape(-1, G, 2)
    se = np.sqrt(np.diag(cov)) / np.sqrt(flat.shape[0])  # z-test of each mean
    assert np.all(np.abs(flat.mean(0) - means) < 4.5 * se)
    np.testing.assert_allclose(np.asarray(guide.median(params)["x"]), means, rtol=1e-5, atol=1e-6)
    qs = [0.1, 0.5, 0.9]
    quant = np.asarray(guide.quantiles(params, qs)["x"])
    assert quant.shape == (3, G, 2)
    expected = stats.norm.ppf(np.reshape(qs, (3, 1, 1)), means, np.sqrt(np.diag(cov)))
    np.testing.assert_allclose(quant, expected, rtol=1e-4, atol=1e-4)


def test_batched_errors():
    with pytest.raises(ValueError, match="batch_ndim"):
        AutoBatchedMultivariateNormal(blocks_model, batch_ndim=-1)
    with pytest.raises(ValueError, match="rank"):
        AutoBatchedLowRankMultivariateNormal(blocks_model, rank=0)
    with pytest.raises(ValueError, match="init_scale"):
        AutoBatchedMultivariateNormal(blocks_model, init_scale=0.0)
    y = jnp.asarray(Y_BLOCKS, jnp.float32)
    guide = AutoBatchedMultivariateNormal(blocks_model, batch_ndim=2)
    with pytest.raises(ValueError, match="batch_ndim=2.*'x'"):
        seed(guide, rng_seed=0)(y)

    def mixed():
        with jppl.plate("a", 3):
            jppl.sample("u", dist.Normal(0.0, 1.0))
        with jppl.plate("b", 4):
            jppl.sample("v", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="leading batch shape"):
        seed(AutoBatchedMultivariateNormal(mixed), rng_seed=0)()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mvn", "lowrank"])
def test_batched_svi_recovers_exact_posterior(kind):
    means, cov = blocks_posterior()
    y = jnp.asarray(Y_BLOCKS, jnp.float32)
    if kind == "mvn":
        guide = AutoBatchedMultivariateNormal(blocks_model)
    else:
        guide = AutoBatchedLowRankMultivariateNormal(blocks_model, rank=2)
    schedule = optax.exponential_decay(0.05, 1500, 0.02)
    svi = SVI(blocks_model, guide, optax.adam(schedule), Trace_ELBO(num_particles=16))
    params = svi.run(jax.random.key(0), 1500, y, progress_bar=False).params
    post = guide.get_posterior(params)
    np.testing.assert_allclose(np.asarray(post.mean), means, atol=0.03)
    for b in range(G):
        np.testing.assert_allclose(np.asarray(post.covariance_matrix[b]), cov, atol=0.015)


# ---------------------------------------------------------------------------------------------
# DAIS
# ---------------------------------------------------------------------------------------------


def _tuned_dais_params(params: dict, base_dist: str) -> dict:
    """A base Normal a little wider than the posterior, and real moves (eta near eta_max)."""
    mean, sd = normal_posterior()
    out = dict(params)
    out["auto_z_0_loc"] = jnp.asarray([mean + 0.3 * sd], jnp.float32)
    if base_dist == "diagonal":
        out["auto_z_0_scale"] = jnp.asarray([1.3 * sd], jnp.float32)
    else:
        out["auto_z_0_scale_tril"] = jnp.asarray([[1.3 * sd]], jnp.float32)
    out["auto_eta0"] = jnp.asarray(0.08, jnp.float32)
    out["auto_gamma"] = jnp.asarray(0.5, jnp.float32)
    return out


@pytest.mark.parametrize(
    "K,base_dist", [pytest.param(1, "diagonal", marks=pytest.mark.slow), (4, "cholesky")]
)
def test_dais_weights_unbiased_and_bound_valid(K, base_dist):
    guide = AutoDAIS(normal_model, K=K, base_dist=base_dist)
    params = _tuned_dais_params(init_params(normal_model, guide), base_dist)
    check_unbiased_and_bound(log_weights(normal_model, guide, params, 4000), normal_log_evidence())


def test_dais_sample_posterior_shapes_and_unavailable_summaries():
    guide = AutoDAIS(normal_model, K=2)
    params = init_params(normal_model, guide)
    assert params["auto_beta_increments"].shape == (2,)
    assert params["auto_mass_matrix"].shape == (1,)
    draws = guide.sample_posterior(jax.random.key(0), params, sample_shape=(3,))
    assert draws["z"].shape == (3,)
    with pytest.raises(NotImplementedError, match="sample_posterior"):
        guide.median(params)
    with pytest.raises(NotImplementedError, match="sample_posterior"):
        guide.quantiles(params, [0.5])


def test_dais_errors():
    for kwargs, match in [
        ({"K": 0}, "K"),
        ({"K": 2.0}, "K"),
        ({"base_dist": "full"}, "base_dist"),
        ({"eta_init": 0.2}, "eta_init"),
        ({"eta_max": -1.0}, "eta_max"),
        ({"gamma_init": 1.0}, "gamma_init"),
        ({"init_scale": 0.0}, "init_scale"),
    ]:
        with pytest.raises(ValueError, match=match):
            AutoDAIS(normal_model, **kwargs)
    with pytest.raises(ValueError, match="K"):
        AutoSemiDAIS(normal_model, normal_model, K=0)

    def subsampled():
        z = jppl.sample("z", dist.Normal(0.0, 1.0))
        with jppl.plate("n", 10, subsample_size=2):
            jppl.sample("y", dist.Normal(z, 1.0), obs=jnp.zeros(2))

    with pytest.raises(NotImplementedError, match="subsample"):
        seed(AutoDAIS(subsampled), rng_seed=0)()

    def other_surrogate():
        jppl.sample("w", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="surrogate_model"):
        seed(AutoSurrogateLikelihoodDAIS(normal_model, other_surrogate), rng_seed=0)()


# ---------------------------------------------------------------------------------------------
# AutoSemiDAIS: global theta, local z_i, data y_i
# ---------------------------------------------------------------------------------------------

N2 = 6
Y2 = np.random.RandomState(4).randn(N2) + 1.0
LOCAL_SD, OBS_SD = 1.0, 0.5


def global_model():
    return jppl.sample("theta", dist.Normal(0.0, 1.0))


def make_local_model(sub: int):
    def local_model(theta):
        with jppl.plate("data", N2, subsample_size=sub) as idx:
            z = jppl.sample("z", dist.Normal(theta, LOCAL_SD))
            jppl.sample("y", dist.Normal(z, OBS_SD), obs=jnp.asarray(Y2)[idx])

    return local_model


def make_semi_model(sub: int):
    local = make_local_model(sub)

    def model():
        local(global_model())

    return model


def semi_log_evidence() -> float:
    cov = (LOCAL_SD**2 + OBS_SD**2) * np.eye(N2) + np.ones((N2, N2))
    return float(stats.multivariate_normal(np.zeros(N2), cov).logpdf(Y2))


def _semi_tuned_params(params: dict, with_base: bool) -> dict:
    # theta | y exactly; z_i | theta, y_i has mean (theta + 4 y_i) / 5 and sd sqrt(1/5).
    cov = (LOCAL_SD**2 + OBS_SD**2) * np.eye(N2) + np.ones((N2, N2))
    k = np.ones(N2) @ np.linalg.inv(cov)
    th_var = 1.0 - k @ np.ones(N2)
    th_mean = k @ Y2
    out = dict(params)
    out["theta_auto_loc"] = jnp.asarray(th_mean, jnp.float32)
    out["theta_auto_scale"] = jnp.asarray(1.2 * np.sqrt(th_var), jnp.float32)
    if with_base:
        out["auto_z_0_loc"] = jnp.asarray(((th_mean + 4 * Y2) / 5)[:, None], jnp.float32)
        out["auto_z_0_scale"] = jnp.full((N2, 1), 0.6, jnp.float32)
    out["auto_eta0"] = jnp.full((N2,), 0.08, jnp.float32)
    return out


def _local_guide(theta):
    loc = jppl.param("lg_loc", jnp.asarray((Y2 * 4 + 1) / 5, jnp.float32))
    with jppl.plate("data", N2):
        jppl.sample("z", dist.Normal(loc, 0.6))


@pytest.mark.slow
@pytest.mark.parametrize("use_local_guide", [False, True])
def test_semi_dais_full_data_weights_unbiased(use_local_guide):
    model = make_semi_model(N2)
    guide = AutoSemiDAIS(
        model,
        make_local_model(N2),
        AutoNormal(global_model),
        _local_guide if use_local_guide else None,
        K=3,
    )
    params = _semi_tuned_params(init_params(model, guide), not use_local_guide)
    if use_local_guide:
        assert "lg_loc" in params and "auto_z_0_loc" not in params
    check_unbiased_and_bound(log_weights(model, guide, params, 2000), semi_log_evidence())


@pytest.mark.slow
def test_semi_dais_subsampled_bound_and_shapes():
    model = make_semi_model(3)
    guide = AutoSemiDAIS(model, make_local_model(3), AutoNormal(global_model), K=2)
    params = init_params(model, guide)
    assert params["auto_eta0"].shape == (N2,) and params["auto_z_0_loc"].shape == (N2, 1)
    params = _semi_tuned_params(params, True)
    logw = log_weights(model, guide, params, 3000)
    se = logw.std(ddof=1) / np.sqrt(logw.size)
    assert logw.mean() <= semi_log_evidence() + 3.0 * se
    draws = guide.sample_posterior(jax.random.key(0), params, sample_shape=(4,))
    assert draws["theta"].shape == (4,) and draws["z"].shape == (4, 3)

    shared = AutoSemiDAIS(
        model, make_local_model(3), AutoNormal(global_model), K=2, use_global_dais_params=True
    )
    shared_params = init_params(model, shared)
    assert shared_params["auto_eta0"].shape == () and shared_params["auto_mass_matrix"].shape == (
        1,
    )


def test_semi_dais_errors():
    with pytest.raises(ValueError, match="no latent site"):
        seed(AutoSemiDAIS(normal_model, normal_model), rng_seed=0)()
    model = make_semi_model(N2)
    with pytest.raises(ValueError, match="global_guide"):
        seed(AutoSemiDAIS(model, make_local_model(N2)), rng_seed=0)()
    with pytest.raises(ValueError, match="subsample_plate"):
        seed(AutoSemiDAIS(model, make_local_model(N2), subsample_plate="nope"), rng_seed=0)()


# ---------------------------------------------------------------------------------------------
# AutoSurrogateLikelihoodDAIS
# ---------------------------------------------------------------------------------------------

M3 = 12
Y3 = np.random.RandomState(5).randn(M3) + 0.5


def make_big_model(sub: int):
    def model():
        z = jppl.sample("z", dist.Normal(0.0, 1.0))
        with jppl.plate("n", M3, subsample_size=sub) as idx:
            jppl.sample("y", dist.Normal(z, 1.0), obs=jnp.asarray(Y3)[idx])

    return model


def surrogate_model():
    z = jppl.sample("z", dist.Normal(0.0, 1.0))
    omegas = jppl.param("omegas", 3.0 * jnp.ones(4), constraint=dist.constraints.positive)
    with jppl.plate("s", 4), scale(scale=omegas):
        jppl.sample("ys", dist.Normal(z, 1.0), obs=jnp.asarray(Y3[:4]))


def surrogate_log_evidence() -> float:
    return float(stats.multivariate_normal(np.zeros(M3), np.eye(M3) + np.ones((M3, M3))).logpdf(Y3))


def _surrogate_tuned(params: dict) -> dict:
    prec = 1.0 + M3
    out = dict(params)
    out["auto_z_0_loc"] = jnp.asarray([Y3.sum() / prec], jnp.float32)
    out["auto_z_0_scale"] = jnp.asarray([1.3 / np.sqrt(prec)], jnp.float32)
    out["auto_eta0"] = jnp.asarray(0.08, jnp.float32)
    return out


def test_surrogate_dais_full_data_weights_unbiased():
    full = make_big_model(M3)
    guide = AutoSurrogateLikelihoodDAIS(full, surrogate_model, K=3)
    params = init_params(full, guide)
    assert params["omegas"].shape == (4,)
    params = _surrogate_tuned(params)
    check_unbiased_and_bound(log_weights(full, guide, params, 2000), surrogate_log_evidence())


@pytest.mark.slow
def test_surrogate_dais_subsampled_bound():
    sub = make_big_model(4)
    guide = AutoSurrogateLikelihoodDAIS(sub, surrogate_model, K=3)
    params = _surrogate_tuned(init_params(sub, guide))
    logw = log_weights(sub, guide, params, 3000)
    se = logw.std(ddof=1) / np.sqrt(logw.size)
    assert logw.mean() <= surrogate_log_evidence() + 3.0 * se


# ---------------------------------------------------------------------------------------------
# Training (slow)
# ---------------------------------------------------------------------------------------------

J = 8
Y8 = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA8 = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools():
    mu = jppl.sample("mu", dist.Normal(0.0, 5.0))
    tau = jppl.sample("tau", dist.HalfCauchy(5.0))
    with jppl.plate("J", J):
        theta = jppl.sample("theta", dist.Normal(mu, tau))
        jppl.sample("obs", dist.Normal(theta, jnp.asarray(SIGMA8)), obs=jnp.asarray(Y8))


def _fit_and_elbo(model, guide, steps: int) -> float:
    svi = SVI(model, guide, optax.adam(0.01), Trace_ELBO(num_particles=8))
    params = svi.run(jax.random.key(0), steps, progress_bar=False).params
    logw = log_weights(model, guide, params, 2000, seed_=11)
    return float(logw.mean()), float(logw.std(ddof=1) / np.sqrt(logw.size))


@pytest.mark.slow
def test_dais_beats_autonormal_on_eight_schools():
    normal, se_n = _fit_and_elbo(eight_schools, AutoNormal(eight_schools), 800)
    dais, se_d = _fit_and_elbo(eight_schools, AutoDAIS(eight_schools, K=4), 800)
    assert dais - normal > 3.0 * np.hypot(se_n, se_d), (dais, normal, se_n, se_d)


@pytest.mark.slow
def test_dais_training_stays_below_log_evidence():
    guide = AutoDAIS(normal_model, K=4)
    svi = SVI(normal_model, guide, optax.adam(0.01), Trace_ELBO(num_particles=8))
    params = svi.run(jax.random.key(0), 800, progress_bar=False).params
    logw = log_weights(normal_model, guide, params, 4000)
    check_unbiased_and_bound(logw, normal_log_evidence())
    # Trained from init_scale=0.1, the bound is within 0.05 nats of log p(y).
    assert logw.mean() > normal_log_evidence() - 0.05
