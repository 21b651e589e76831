"""jppl.optim.Minimize: NumPyro's whole-BFGS-run-per-step optimizer in SVI.

Expected values are independent: the conjugate normal posterior mode in closed form, and for a
logistic regression the MAP from ``scipy.optimize.minimize`` on a hand-written NumPy log
posterior and the covariance from its Hessian written out in closed form.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import jppl
import jppl.distributions as dist
import jppl.optim as optim
from jppl.infer import SVI, Trace_ELBO
from jppl.primitives import mutable
from jppl.vi.autoguide import AutoDelta, AutoLaplaceApproximation

M0, S0, S = 1.0, 2.0, 0.5
X = np.array([0.3, 1.7, 2.2, 0.9, 1.4, 2.8], np.float32)


def normal_model(x):
    mu = jppl.sample("mu", dist.Normal(M0, S0))
    with jppl.plate("N", x.shape[0]):
        jppl.sample("x", dist.Normal(mu, S), obs=x)


def normal_map(x) -> float:
    """Posterior mode (= mean) of ``mu``: precision-weighted average of prior and data."""
    precision = 1 / S0**2 + len(x) / S**2
    return (M0 / S0**2 + np.sum(x) / S**2) / precision


def test_autodelta_minimize_reaches_exact_map_in_one_update():
    svi = SVI(normal_model, AutoDelta(normal_model), optim.Minimize(), Trace_ELBO())
    state = svi.init(jax.random.key(0), X)
    new_state, loss = jax.jit(svi.update)(state, X)
    mu = svi.get_params(new_state)["mu_auto_loc"]
    np.testing.assert_allclose(mu, normal_map(X), rtol=1e-5)
    # The returned loss is the loss at the minimum: -log p(x, mu_map).
    mu_map = normal_map(X)
    expected = -(
        -0.5 * ((mu_map - M0) / S0) ** 2
        - np.log(S0 * np.sqrt(2 * np.pi))
        + np.sum(-0.5 * ((X - mu_map) / S) ** 2 - np.log(S * np.sqrt(2 * np.pi)))
    )
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert int(new_state.optim_state.count) == 1
    assert bool(new_state.optim_state.success)
    assert int(new_state.step) == 1


def _logistic_data():
    rng = np.random.default_rng(0)
    n, d = 80, 3
    features = rng.normal(size=(n, d)).astype(np.float32)
    logits = features @ np.array([1.0, -2.0, 0.5]) + 0.3
    labels = (rng.uniform(size=n) < 1 / (1 + np.exp(-logits))).astype(np.float32)
    return features, labels


def logistic_model(features, labels):
    w = jppl.sample("w", dist.Normal(jnp.zeros(features.shape[1]), 1.0).to_event(1))
    b = jppl.sample("b", dist.Normal(0.0, 1.0))
    with jppl.plate("N", features.shape[0]):
        jppl.sample("y", dist.Bernoulli(logits=features @ w + b), obs=labels)


def _neg_log_post(theta, features, labels):
    """Hand-written ``-log p(w, b | y)`` (up to a constant) and its gradient; ``theta = (w, b)``."""
    design = np.hstack([features, np.ones((features.shape[0], 1))]).astype(np.float64)
    eta = design @ theta
    value = np.sum(np.logaddexp(0.0, eta) - labels * eta) + 0.5 * theta @ theta
    grad = design.T @ (1 / (1 + np.exp(-eta)) - labels) + theta
    return value, grad


def test_laplace_minimize_matches_scipy_map_and_inverse_hessian():
    features, labels = _logistic_data()
    guide = AutoLaplaceApproximation(logistic_model)
    svi = SVI(logistic_model, guide, optim.Minimize(), Trace_ELBO())
    state = svi.init(jax.random.key(1), features, labels)
    state, loss = svi.update(state, features, labels)
    params = svi.get_params(state)

    ref = scipy.optimize.minimize(
        _neg_log_post, np.zeros(4), args=(features, labels), jac=True, method="BFGS", tol=1e-8
    )
    assert np.max(np.abs(ref.jac)) < 1e-6  # a stationary point of the float64 objective
    median = guide.median(params)
    np.testing.assert_allclose(median["w"], ref.x[:3], atol=2e-4)
    np.testing.assert_allclose(median["b"], ref.x[3], atol=2e-4)

    # Laplace covariance: inverse of the Hessian of -log p at the MAP, in closed form
    # (X^T diag(p (1 - p)) X + I for the design with an intercept column).
    design = np.hstack([features, np.ones((features.shape[0], 1))]).astype(np.float64)
    p = 1 / (1 + np.exp(-design @ ref.x))
    hessian = design.T @ (design * (p * (1 - p))[:, None]) + np.eye(4)
    posterior = guide.get_posterior(params)
    np.testing.assert_allclose(posterior.covariance_matrix, np.linalg.inv(hessian), rtol=2e-3)
    # The loss is -log p(y, w, b) at the MAP (the hand-written one drops log(2 pi) / 2 per
    # prior dimension).
    np.testing.assert_allclose(loss, ref.fun + 2 * np.log(2 * np.pi), rtol=1e-5)


def test_run_with_minimize_keeps_the_minimum():
    svi = SVI(normal_model, AutoDelta(normal_model), optim.Minimize(), Trace_ELBO())
    result = svi.run(jax.random.key(0), 3, X, progress_bar=False)
    assert result.losses.shape == (3,)
    np.testing.assert_allclose(result.params["mu_auto_loc"], normal_map(X), rtol=1e-5)
    # Every step starts at the minimum: the same loss, and the count of minimizations.
    np.testing.assert_allclose(result.losses, result.losses[0], rtol=1e-6)
    assert int(result.state.optim_state.count) == 3
    # Guarded and unguarded steps agree; the state's pytree round-trips a checkpoint.
    ignored = svi.run(jax.random.key(0), 3, X, progress_bar=False, on_nonfinite="ignore")
    np.testing.assert_allclose(ignored.losses, result.losses)


def test_minimize_on_a_mesh_gives_the_same_map():
    from jppl import parallel

    mesh = parallel.make_mesh(data=2)
    svi = SVI(normal_model, AutoDelta(normal_model), optim.Minimize(), Trace_ELBO(), mesh=mesh)
    result = svi.run(jax.random.key(0), 2, X, progress_bar=False)
    np.testing.assert_allclose(result.params["mu_auto_loc"], normal_map(X), rtol=1e-5)


def test_minimize_state_checkpoints(tmp_path):
    svi = SVI(normal_model, AutoDelta(normal_model), optim.Minimize(), Trace_ELBO())
    state, _ = svi.update(svi.init(jax.random.key(0), X), X)
    path = svi.save(tmp_path / "state", state)
    loaded = svi.load_state(path, state)
    assert isinstance(loaded.optim_state, optim.MinimizeState)
    assert int(loaded.optim_state.count) == 1
    np.testing.assert_allclose(loaded.params["mu_auto_loc"], state.params["mu_auto_loc"])


def test_minimize_options_reach_the_solver():
    # One BFGS iteration on the (non-quadratic) logistic posterior stops short of the MAP.
    features, labels = _logistic_data()
    guide = AutoLaplaceApproximation(logistic_model)
    short = SVI(logistic_model, guide, optim.Minimize(options={"maxiter": 1}), Trace_ELBO())
    state, short_loss = short.update(
        short.init(jax.random.key(0), features, labels), features, labels
    )
    assert int(state.optim_state.nit) == 1
    assert not bool(state.optim_state.success)
    assert int(state.optim_state.status) == 1  # maximum iterations reached
    full_guide = AutoLaplaceApproximation(logistic_model)
    full = SVI(logistic_model, full_guide, optim.Minimize(), Trace_ELBO())
    _, full_loss = full.update(full.init(jax.random.key(0), features, labels), features, labels)
    assert float(short_loss) > float(full_loss) + 1e-3


def test_minimize_bad_arguments():
    with pytest.raises(ValueError, match="method must be one of"):
        optim.Minimize(method="Nelder-Mead")
    with pytest.raises(ValueError, match="ignores tol"):
        optim.Minimize(tol=1e-6)
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['maxiter'\]"):
        optim.Minimize(maxiter=10)
    with pytest.raises(TypeError, match=r"unknown options \['maxfun'\] for method 'BFGS'"):
        optim.Minimize(options={"maxfun": 10})
    with pytest.raises(TypeError, match="options must be a dict"):
        optim.Minimize(options=[("maxiter", 3)])
    with pytest.raises(TypeError, match="not a gradient transformation"):
        optim.Minimize().update({}, optim.Minimize().init({}))


def test_minimize_refuses_shard_state_and_mutable_sites():
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    with pytest.raises(ValueError, match="shard_state=True does not apply to optim=Minimize"):
        SVI(
            normal_model,
            AutoDelta(normal_model),
            optim.Minimize(),
            Trace_ELBO(),
            mesh=mesh,
            shard_state=True,
        )

    def model(x):
        count = mutable("count", {"n": jnp.zeros(())})
        count["n"] = count["n"] + 1.0
        normal_model(x)

    svi = SVI(model, AutoDelta(model), optim.Minimize(), Trace_ELBO())
    state = svi.init(jax.random.key(0), X)
    with pytest.raises(ValueError, match=r"Minimize\(\) does not support mutable sites"):
        svi.update(state, X)
