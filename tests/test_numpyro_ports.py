"""NumPyro-style models, ported by changing their imports only.

Every model and driver below is written as NumPyro's examples and documentation write it
(``numpyro.sample``, ``dist.*``, ``MCMC(NUTS(model), ...)``, ``numpyro.optim.Adam``,
``handlers.seed(model, rng_seed=0)``, ...). The only change from the NumPyro source is the
import block right below: ``import jppl as numpyro`` and ``jppl.*`` paths for NumPyro's. Each
test then checks the port against independent truth: a closed form, SciPy, or brute-force
enumeration; never against NumPyro's output.
"""

import itertools

import jax.numpy as jnp
import numpy as np
from jax import lax, random
from jax.example_libraries import stax
from jax.scipy.special import logsumexp
from scipy import integrate, optimize, special, stats

# --- the import change: NumPyro's names, jppl's modules ----------------------------------------
import jppl as numpyro
import jppl.distributions as dist
import jppl.optim as optim
from jppl import handlers
from jppl.diagnostics import effective_sample_size
from jppl.infer import MCMC, NUTS, SVI, Predictive, Trace_ELBO, init_to_median
from jppl.infer.autoguide import AutoDelta, AutoNormal
from jppl.infer.reparam import LocScaleReparam
from jppl.infer.util import log_density

# ----------------------------------------------------------------------------------------------


def _mcse_ok(draws: np.ndarray, truth: float, k: float = 5.0) -> None:
    """``|mean - truth| <= k`` Monte Carlo standard errors (ESS from the draws' autocorrelation)."""
    draws = np.asarray(draws, dtype=np.float64)
    ess = float(effective_sample_size(draws[None]))
    mcse = draws.std() / np.sqrt(ess)
    assert abs(draws.mean() - truth) <= k * mcse, (draws.mean(), truth, mcse)


# 1. Eight schools, non-centered by LocScaleReparam (NumPyro's README) -------------------------

J = 8
Y8 = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA8 = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(J, sigma, y=None):
    mu = numpyro.sample("mu", dist.Normal(0, 5))
    tau = numpyro.sample("tau", dist.HalfCauchy(5))
    with numpyro.plate("J", J):
        theta = numpyro.sample("theta", dist.Normal(mu, tau))
        numpyro.sample("obs", dist.Normal(theta, sigma), obs=y)


noncentered_eight_schools = handlers.reparam(
    eight_schools, config={"theta": LocScaleReparam(centered=0)}
)


def test_eight_schools_noncentered_density_and_draws():
    point = {"mu": 1.5, "tau": 2.0, "theta_decentered": np.linspace(-1, 1, J)}
    lp, _ = log_density(noncentered_eight_schools, (J, SIGMA8), {"y": Y8}, point)
    theta = 1.5 + 2.0 * point["theta_decentered"]
    expected = (
        stats.norm(0, 5).logpdf(1.5)
        + stats.halfcauchy(scale=5).logpdf(2.0)
        + stats.norm.logpdf(point["theta_decentered"]).sum()
        + stats.norm(theta, SIGMA8).logpdf(Y8).sum()
    )
    np.testing.assert_allclose(lp, expected, rtol=1e-5)

    mcmc = MCMC(
        NUTS(noncentered_eight_schools), num_warmup=300, num_samples=300, progress_bar=False
    )
    mcmc.run(random.PRNGKey(0), J, SIGMA8, y=Y8, extra_fields=("diverging",))
    s = mcmc.get_samples()
    np.testing.assert_allclose(
        s["theta"],
        s["mu"][:, None] + s["tau"][:, None] * s["theta_decentered"],
        rtol=1e-5,
        atol=1e-5,
    )
    assert int(mcmc.get_extra_fields()["diverging"].sum()) <= 3


# 2. Bayesian linear regression with a known noise scale: a conjugate posterior ---------------

N_REG, D_REG, NOISE = 50, 3, 0.5
X_REG = np.random.default_rng(0).normal(size=(N_REG, D_REG))
Y_REG = X_REG @ np.array([1.0, -2.0, 0.5]) + NOISE * np.random.default_rng(1).normal(size=N_REG)


def linear_regression(X, y=None):
    w = numpyro.sample("w", dist.Normal(jnp.zeros(X.shape[1]), 1.0).to_event(1))
    with numpyro.plate("data", X.shape[0]):
        numpyro.sample("y", dist.Normal(X @ w, NOISE), obs=y)


def test_linear_regression_nuts_matches_the_conjugate_posterior():
    precision = np.eye(D_REG) + X_REG.T @ X_REG / NOISE**2
    cov = np.linalg.inv(precision)
    mean = cov @ X_REG.T @ Y_REG / NOISE**2
    mcmc = MCMC(NUTS(linear_regression), num_warmup=300, num_samples=600, progress_bar=False)
    mcmc.run(random.PRNGKey(1), X_REG, y=Y_REG)
    w = np.asarray(mcmc.get_samples()["w"])
    for d in range(D_REG):
        _mcse_ok(w[:, d], mean[d])
    np.testing.assert_allclose(w.std(0), np.sqrt(np.diag(cov)), rtol=0.15)


# 3. Logistic regression, MAP by SVI with AutoDelta and numpyro.optim.Adam --------------------

X_LOG = np.random.default_rng(2).normal(size=(200, 2))
Y_LOG = (
    np.random.default_rng(3).uniform(size=200) < special.expit(X_LOG @ np.array([1.5, -1.0]) + 0.3)
).astype(np.float32)


def logistic_regression(X, y=None):
    b = numpyro.sample("b", dist.Normal(0.0, 10.0))
    w = numpyro.sample("w", dist.Normal(jnp.zeros(X.shape[1]), 2.0).to_event(1))
    with numpyro.plate("N", X.shape[0]):
        numpyro.sample("y", dist.Bernoulli(logits=X @ w + b), obs=y)


def test_logistic_regression_map_by_svi_matches_scipy():
    guide = AutoDelta(logistic_regression)
    svi = SVI(logistic_regression, guide, optim.Adam(0.05), Trace_ELBO())
    result = svi.run(random.PRNGKey(0), 1500, X_LOG, y=Y_LOG, progress_bar=False)
    fit = guide.median(result.params)

    def neg_log_post(theta):
        b, w = theta[0], theta[1:]
        z = X_LOG @ w + b
        ll = np.sum(Y_LOG * z - np.logaddexp(0.0, z))
        return -(ll + stats.norm(0, 10).logpdf(b) + stats.norm(0, 2).logpdf(w).sum())

    ref = optimize.minimize(neg_log_post, np.zeros(3), method="BFGS").x
    np.testing.assert_allclose(fit["b"], ref[0], atol=2e-2)
    np.testing.assert_allclose(fit["w"], ref[1:], atol=2e-2)


# 4. Semi-supervised HMM with the forward algorithm in lax.scan (NumPyro's hmm example) -------


def forward_log_prob(init_log_prob, words, transition_log_prob, emission_log_prob):
    def scan_fn(log_prob, word):
        log_prob = logsumexp(log_prob[:, None] + transition_log_prob, axis=0)
        return log_prob + emission_log_prob[:, word], None

    log_prob, _ = lax.scan(scan_fn, init_log_prob, words)
    return log_prob


def semi_supervised_hmm(transition_prior, emission_prior, sup_categories, sup_words, unsup_words):
    K, V = transition_prior.shape[0], emission_prior.shape[0]
    transition_prob = numpyro.sample(
        "transition_prob", dist.Dirichlet(jnp.broadcast_to(transition_prior, (K, K)))
    )
    emission_prob = numpyro.sample(
        "emission_prob", dist.Dirichlet(jnp.broadcast_to(emission_prior, (K, V)))
    )
    numpyro.sample(
        "supervised_categories",
        dist.Categorical(transition_prob[sup_categories[:-1]]),
        obs=sup_categories[1:],
    )
    numpyro.sample(
        "supervised_words", dist.Categorical(emission_prob[sup_categories]), obs=sup_words
    )
    transition_log_prob = jnp.log(transition_prob)
    emission_log_prob = jnp.log(emission_prob)
    init_log_prob = emission_log_prob[:, unsup_words[0]]
    log_prob = forward_log_prob(
        init_log_prob, unsup_words[1:], transition_log_prob, emission_log_prob
    )
    numpyro.factor("forward_log_prob", logsumexp(log_prob, axis=0))


def test_hmm_forward_algorithm_density_equals_brute_force_enumeration():
    K, V = 3, 4
    rng = np.random.default_rng(4)
    T = rng.dirichlet(np.ones(K), size=K)
    E = rng.dirichlet(np.ones(V), size=K)
    sup_c, sup_w = np.array([0, 1, 1, 2, 0]), np.array([1, 3, 0, 2, 2])
    unsup = np.array([3, 1, 1, 0, 2, 3])
    args = (np.ones(K), np.full(V, 0.5), sup_c, sup_w, unsup)
    lp, _ = log_density(semi_supervised_hmm, args, {}, {"transition_prob": T, "emission_prob": E})
    # the unsupervised chain starts with a flat prior on its first state (as in the model)
    paths = [
        np.prod([T[a, b] for a, b in zip(z[:-1], z[1:], strict=True)]) * np.prod(E[list(z), unsup])
        for z in itertools.product(range(K), repeat=len(unsup))
    ]
    expected = (
        sum(stats.dirichlet(np.ones(K)).logpdf(row) for row in T)
        + sum(stats.dirichlet(np.full(V, 0.5)).logpdf(row) for row in E)
        + np.log(T[sup_c[:-1], sup_c[1:]]).sum()
        + np.log(E[sup_c, sup_w]).sum()
        + np.log(np.sum(paths))
    )
    np.testing.assert_allclose(lp, expected, rtol=1e-5)


# 5. Gaussian process regression (NumPyro's gp example) ---------------------------------------


def kernel(X, Z, var, length, noise, jitter=1.0e-6, include_noise=True):
    deltaXsq = jnp.power((X[:, None] - Z) / length, 2.0)
    k = var * jnp.exp(-0.5 * deltaXsq)
    if include_noise:
        k += (noise + jitter) * jnp.eye(X.shape[0])
    return k


def gp_model(X, Y):
    var = numpyro.sample("kernel_var", dist.LogNormal(0.0, 10.0))
    noise = numpyro.sample("kernel_noise", dist.LogNormal(0.0, 10.0))
    length = numpyro.sample("kernel_length", dist.LogNormal(0.0, 10.0))
    k = kernel(X, X, var, length, noise)
    numpyro.sample(
        "Y",
        dist.MultivariateNormal(loc=jnp.zeros(X.shape[0]), covariance_matrix=k),
        obs=Y,
    )


def test_gp_density_matches_scipy():
    X = np.linspace(-1, 1, 7)
    Y = np.sin(3 * X)
    point = {"kernel_var": 1.3, "kernel_noise": 0.1, "kernel_length": 0.7}
    lp, _ = log_density(gp_model, (X, Y), {}, point)
    K = 1.3 * np.exp(-0.5 * ((X[:, None] - X) / 0.7) ** 2) + (0.1 + 1e-6) * np.eye(7)
    expected = stats.multivariate_normal(np.zeros(7), K).logpdf(Y) + sum(
        stats.lognorm(s=10.0).logpdf(v) for v in point.values()
    )
    np.testing.assert_allclose(lp, expected, rtol=1e-5)


# 6. Neal's funnel, reparameterized (NumPyro's funnel example) --------------------------------


def funnel(dim=10):
    y = numpyro.sample("y", dist.Normal(0, 3))
    numpyro.sample("x", dist.Normal(jnp.zeros(dim - 1), jnp.exp(y / 2)))


reparam_funnel = handlers.reparam(funnel, config={"x": LocScaleReparam(0)})


def test_reparameterized_funnel_recovers_the_prior_of_y():
    mcmc = MCMC(NUTS(reparam_funnel), num_warmup=300, num_samples=800, progress_bar=False)
    mcmc.run(random.PRNGKey(2), extra_fields=("diverging",))
    y = np.asarray(mcmc.get_samples()["y"])
    _mcse_ok(y, 0.0)
    np.testing.assert_allclose(y.std(), 3.0, rtol=0.15)
    assert int(mcmc.get_extra_fields()["diverging"].sum()) == 0
    # NumPyro's example then rebuilds x's draws from the decentered ones with Predictive
    pred = Predictive(reparam_funnel, mcmc.get_samples(), return_sites=["x"])(random.PRNGKey(3))
    expected = np.asarray(mcmc.get_samples()["x_decentered"]) * np.exp(y / 2)[:, None]
    np.testing.assert_allclose(pred["x"], expected, rtol=1e-4, atol=1e-5)


# 7. Subsampled likelihood: plate(size, subsample_size) scales by size / subsample_size --------


def subsampled_model(data):
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("N", data.shape[0], subsample_size=5) as idx:
        numpyro.sample("obs", dist.Normal(mu, 1.0), obs=data[idx])


def test_subsample_plate_scales_the_likelihood():
    data = np.arange(20.0) / 10
    seeded = handlers.seed(subsampled_model, rng_seed=0)
    tr = handlers.trace(seeded).get_trace(data)
    idx = np.asarray(tr["N"]["value"])
    assert idx.shape == (5,) and len(set(idx.tolist())) == 5
    lp, _ = log_density(seeded, (data,), {}, {"mu": 0.3})
    expected = stats.norm(0, 1).logpdf(0.3) + 20 / 5 * stats.norm(0.3, 1).logpdf(data[idx]).sum()
    np.testing.assert_allclose(lp, expected, rtol=1e-5)


# 8. UCBadmit-style binomial regression: prior predictive against quadrature -----------------


def binomial_model(applications, admit=None):
    a = numpyro.sample("a", dist.Normal(0.0, 1.5))
    with numpyro.plate("dept", applications.shape[0]):
        numpyro.sample("admit", dist.Binomial(applications, logits=a), obs=admit)


def test_binomial_prior_predictive_mean_matches_quadrature():
    apps = np.array([20, 50, 80])
    pred = Predictive(binomial_model, num_samples=20000)(random.PRNGKey(4), apps)
    p_mean, _ = integrate.quad(
        lambda a: special.expit(a) * stats.norm(0, 1.5).pdf(a), -np.inf, np.inf
    )
    p_sq, _ = integrate.quad(
        lambda a: special.expit(a) ** 2 * stats.norm(0, 1.5).pdf(a), -np.inf, np.inf
    )
    draws = np.asarray(pred["admit"], dtype=np.float64)
    # Var[admit] = n p (1 - p) averaged, plus n^2 Var[p]
    var = apps * (p_mean - p_sq) + apps**2 * (p_sq - p_mean**2)
    se = np.sqrt(var / draws.shape[0])
    assert np.all(np.abs(draws.mean(0) - apps * p_mean) <= 5 * se)


# 9. Handlers as NumPyro's docs use them: seed, trace, condition, substitute ------------------


def coin_model():
    p = numpyro.sample("p", dist.Beta(2.0, 2.0))
    with numpyro.plate("flips", 4):
        numpyro.sample("flip", dist.Bernoulli(p))


def test_handler_composition_log_joint_matches_scipy():
    flips = np.array([1.0, 0.0, 1.0, 1.0])
    conditioned = handlers.condition(coin_model, data={"flip": flips})
    substituted = handlers.substitute(conditioned, data={"p": 0.7})
    exec_trace = handlers.trace(handlers.seed(substituted, rng_seed=0)).get_trace()
    log_joint = sum(
        site["fn"].log_prob(site["value"]).sum()
        for site in exec_trace.values()
        if site["type"] == "sample"
    )
    expected = stats.beta(2, 2).logpdf(0.7) + stats.bernoulli(0.7).logpmf(flips).sum()
    np.testing.assert_allclose(log_joint, expected, rtol=1e-5)
    assert exec_trace["flip"]["is_observed"] and not exec_trace["p"]["is_observed"]


# 10. A marginalized Gaussian mixture (MixtureSameFamily), NUTS from init_to_median -----------


def mixture_model(data):
    weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(2)))
    locs = numpyro.sample("locs", dist.Normal(jnp.array([-2.0, 2.0]), 1.0).to_event(1))
    mix = dist.MixtureSameFamily(dist.Categorical(weights), dist.Normal(locs, 0.5))
    with numpyro.plate("data", data.shape[0]):
        numpyro.sample("obs", mix, obs=data)


def test_mixture_density_matches_scipy_and_nuts_runs():
    data = np.array([-2.2, -1.9, 2.1, 2.4, 1.8])
    point = {"weights": np.array([0.4, 0.6]), "locs": np.array([-2.0, 2.1])}
    lp, _ = log_density(mixture_model, (data,), {}, point)
    lik = np.log(0.4 * stats.norm(-2.0, 0.5).pdf(data) + 0.6 * stats.norm(2.1, 0.5).pdf(data)).sum()
    expected = (
        stats.dirichlet(np.ones(2)).logpdf(point["weights"])
        + stats.norm([-2.0, 2.0], 1.0).logpdf(point["locs"]).sum()
        + lik
    )
    np.testing.assert_allclose(lp, expected, rtol=1e-5)
    mcmc = MCMC(
        NUTS(mixture_model, init_strategy=init_to_median),
        num_warmup=200,
        num_samples=200,
        progress_bar=False,
    )
    mcmc.run(random.PRNGKey(5), data)
    locs = np.asarray(mcmc.get_samples()["locs"])
    assert locs.shape == (200, 2) and np.all(locs[:, 0] < locs[:, 1])


# 11. A normal-normal model fitted with SVI and AutoNormal: the exact posterior ----------------


def normal_normal(data):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    with numpyro.plate("N", data.shape[0]):
        numpyro.sample("obs", dist.Normal(mu, 1.0), obs=data)


def test_autonormal_recovers_the_exact_gaussian_posterior():
    data = np.array([0.5, 1.5, 1.0, 2.0])
    post_var = 1.0 / (1 / 4.0 + len(data))
    post_mean = post_var * data.sum()
    guide = AutoNormal(normal_normal)
    # a decaying step size: a constant-step Adam jitters around the optimum by ~0.05 here
    svi = SVI(normal_normal, guide, optim.Adam(lambda i: 0.05 * 0.998**i), Trace_ELBO(16))
    result = svi.run(random.PRNGKey(6), 3000, data, progress_bar=False)
    np.testing.assert_allclose(guide.median(result.params)["mu"], post_mean, atol=0.03)
    # NumPyro's parameter names for AutoNormal: <site>_auto_loc, <site>_auto_scale
    np.testing.assert_allclose(result.params["mu_auto_scale"], np.sqrt(post_var), atol=0.03)


# 12. Missing observations imputed by obs_mask (NumPyro's bayesian_imputation idiom) ---------


def imputation_model(y):
    mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
    with numpyro.plate("N", y.shape[0]):
        numpyro.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=~np.isnan(y))


def test_obs_mask_imputes_the_missing_entries():
    y = np.array([0.5, np.nan, 1.5, np.nan, 1.0])
    observed = ~np.isnan(y)
    tr = handlers.trace(handlers.seed(imputation_model, rng_seed=0)).get_trace(y)
    assert tr["y_unobserved"]["type"] == "sample" and not tr["y_unobserved"]["is_observed"]
    filled = np.asarray(tr["y"]["value"])
    np.testing.assert_array_equal(filled[observed], y[observed])
    np.testing.assert_array_equal(
        filled[~observed], np.asarray(tr["y_unobserved"]["value"])[~observed]
    )
    # the imputed entries' posterior is the posterior predictive: N(m, v + 1)
    v = 1.0 / (1 / 4.0 + observed.sum())
    m = v * np.nansum(y)
    mcmc = MCMC(NUTS(imputation_model), num_warmup=300, num_samples=1000, progress_bar=False)
    mcmc.run(random.PRNGKey(8), y)
    imputed = np.asarray(mcmc.get_samples()["y_unobserved"])[:, ~observed]
    for j in range(imputed.shape[1]):
        _mcse_ok(imputed[:, j], m)
    np.testing.assert_allclose(imputed.std(0), np.sqrt(v + 1.0), rtol=0.15)


# 13. A stax network as a module (numpyro.module) ---------------------------------------------


def stax_regression(X, y=None):
    net = numpyro.module(
        "net", stax.serial(stax.Dense(4), stax.Relu, stax.Dense(1)), input_shape=(-1, X.shape[1])
    )
    with numpyro.plate("N", X.shape[0]):
        numpyro.sample("y", dist.Normal(net(X).squeeze(-1), 0.3), obs=y)


def test_stax_module_density_uses_its_parameters():
    X, y = X_REG[:10], Y_REG[:10]
    tr = handlers.trace(handlers.seed(stax_regression, rng_seed=0)).get_trace(X, y)
    (w1, b1), _, (w2, b2) = tr["net$params"]["value"]
    hidden = np.maximum(X @ np.asarray(w1) + np.asarray(b1), 0.0)
    mean = (hidden @ np.asarray(w2) + np.asarray(b2)).squeeze(-1)
    lp, _ = log_density(stax_regression, (X, y), {}, {"net$params": tr["net$params"]["value"]})
    np.testing.assert_allclose(lp, stats.norm(mean, 0.3).logpdf(y).sum(), rtol=1e-5)
    guide = AutoDelta(stax_regression)
    svi = SVI(stax_regression, guide, optim.Adam(0.01), Trace_ELBO())
    losses = svi.run(random.PRNGKey(9), 300, X, y, progress_bar=False).losses
    assert float(losses[-1]) < float(losses[0])


# 14. NumPy on the data inside the model (NumPyro's jit_model_args=False default) ------------


def grouped_means(group, y=None):
    n_groups = len(np.unique(group))  # concrete NumPy on a data argument
    with numpyro.plate("groups", n_groups):
        mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    with numpyro.plate("N", group.shape[0]):
        numpyro.sample("y", dist.Normal(mu[group], 1.0), obs=y)


def test_numpy_on_data_arguments_runs_and_matches_the_conjugate_posterior():
    group = np.array([0, 0, 1, 1, 1, 2])
    y = np.array([1.0, 2.0, -1.0, 0.0, -0.5, 3.0])
    mcmc = MCMC(NUTS(grouped_means), num_warmup=300, num_samples=800, progress_bar=False)
    mcmc.run(random.PRNGKey(10), group, y=y)
    mu = np.asarray(mcmc.get_samples()["mu"])
    for g in range(3):
        n = (group == g).sum()
        _mcse_ok(mu[:, g], y[group == g].sum() / (1 + n))
