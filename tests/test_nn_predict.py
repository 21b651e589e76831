"""Tests of jppl.nn.predict and jppl.nn.metrics against numpy computations and hand cases."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import Mesh, PartitionSpec

import jppl
import jppl.distributions as dist
from jppl.nn import (
    BayesianModule,
    accuracy,
    expected_calibration_error,
    negative_log_likelihood,
    normal_prior,
    reliability_diagram,
    sample_keys,
    sample_predictions,
    summarize_logits,
    summarize_probs,
)
from jppl.vi import SVI, TraceMeanField_ELBO

# ---------------------------------------------------------------------------------------------
# Independent numpy references
# ---------------------------------------------------------------------------------------------


def np_softmax(logits):
    z = np.exp(logits - logits.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def np_entropy(p):
    p = np.asarray(p, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=-1)


def np_ece_and_bins(probs, labels, num_bins):
    """Guo et al. (2017) ECE with explicit (lo, hi] bin masks, plus per-bin data."""
    conf = probs.max(-1)
    correct = probs.argmax(-1) == labels
    ece, confs, accs, counts = 0.0, [], [], []
    for b in range(num_bins):
        lo, hi = b / num_bins, (b + 1) / num_bins
        in_bin = (conf > lo) & (conf <= hi) if b > 0 else (conf <= hi)
        n = int(in_bin.sum())
        counts.append(n)
        if n == 0:
            confs.append(np.nan)
            accs.append(np.nan)
            continue
        confs.append(conf[in_bin].mean())
        accs.append(correct[in_bin].mean())
        ece += n / len(labels) * abs(accs[-1] - confs[-1])
    return ece, np.array(confs), np.array(accs), np.array(counts)


def random_logits(key, m=7, n=11, k=4, spread=2.0):
    return spread * jax.random.normal(jax.random.key(key), (m, n, k))


# ---------------------------------------------------------------------------------------------
# Uncertainty decomposition
# ---------------------------------------------------------------------------------------------


def test_summary_matches_numpy():
    logits = random_logits(0)
    p = np_softmax(np.asarray(logits, np.float64))
    mean_p = p.mean(0)
    h = np_entropy(mean_p)
    eh = np_entropy(p).mean(0)
    for s in (summarize_logits(logits), summarize_probs(jax.nn.softmax(logits, -1))):
        np.testing.assert_allclose(s.mean_probs, mean_p, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(s.log_mean_probs, np.log(mean_p), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s.predictive_entropy, h, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s.expected_entropy, eh, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s.mutual_information, h - eh, rtol=1e-4, atol=1e-6)
    assert np.all(h - eh > 0)  # the samples disagree, so MI is strictly positive


def test_mutual_information_is_zero_when_samples_agree():
    one = random_logits(1, m=1)
    s = summarize_logits(jnp.repeat(one, 5, axis=0))
    np.testing.assert_allclose(s.mutual_information, 0.0, atol=1e-6)
    np.testing.assert_allclose(s.predictive_entropy, s.expected_entropy, atol=1e-6)
    np.testing.assert_allclose(s.predictive_entropy, np_entropy(np_softmax(np.asarray(one[0]))))


def test_hand_case_two_confident_disagreeing_samples():
    # Two samples, one sure of class 0, the other of class 1: mean (1/2, 1/2), H = log 2,
    # each sample has entropy 0, so all of the uncertainty is epistemic.
    probs = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    s = summarize_probs(probs)
    np.testing.assert_allclose(s.mean_probs, [[0.5, 0.5]])
    np.testing.assert_allclose(s.predictive_entropy, [math.log(2)], rtol=1e-6)
    np.testing.assert_allclose(s.expected_entropy, [0.0], atol=1e-7)
    np.testing.assert_allclose(s.mutual_information, [math.log(2)], rtol=1e-6)
    s = summarize_logits(jnp.array([[[60.0, -60.0]], [[-60.0, 60.0]]]))
    np.testing.assert_allclose(s.mutual_information, [math.log(2)], rtol=1e-6)


def test_summarize_logits_is_stable_for_extreme_logits():
    logits = jnp.array([[[1000.0, 0.0, -1000.0]], [[1000.0, -5.0, 0.0]]])
    s = summarize_logits(logits)
    assert np.all(np.isfinite(np.asarray(s.log_mean_probs)[:, :2]))
    np.testing.assert_allclose(
        s.log_mean_probs[0, 1], math.log(0.5) - 1000.0 + math.log1p(math.exp(-5.0)), rtol=1e-6
    )


def test_sharded_summary_equals_unsharded():
    devices = np.array(jax.devices()[:4])
    mesh = Mesh(devices, ("sample",))
    logits = random_logits(2, m=8)

    def local(lg):
        return summarize_logits(lg, axis_name="sample")

    sharded = jax.jit(
        jax.shard_map(local, mesh=mesh, in_specs=PartitionSpec("sample"), out_specs=PartitionSpec())
    )(logits)
    full = summarize_logits(logits)
    for a, b in zip(sharded, full, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_summary_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"summarize_logits: expected .*\(M, N, K\)"):
        summarize_logits(jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match="summarize_probs"):
        summarize_probs(jnp.zeros((3,)))


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def test_accuracy_and_nll_match_numpy():
    rng = np.random.default_rng(0)
    probs = np_softmax(rng.normal(size=(50, 5)) * 2)
    labels = rng.integers(0, 5, size=50)
    np.testing.assert_allclose(accuracy(probs, labels), np.mean(probs.argmax(-1) == labels))
    np.testing.assert_allclose(
        negative_log_likelihood(np.log(probs), labels),
        -np.mean(np.log(probs[np.arange(50), labels])),
        rtol=1e-5,
    )


def test_ece_and_reliability_match_numpy_loop():
    rng = np.random.default_rng(1)
    probs = np_softmax(rng.normal(size=(400, 3)) * 3).astype(np.float32)
    labels = rng.integers(0, 3, size=400)
    for num_bins in (1, 10, 15):
        ece, confs, accs, counts = np_ece_and_bins(probs, labels, num_bins)
        np.testing.assert_allclose(
            expected_calibration_error(probs, labels, num_bins=num_bins), ece, rtol=1e-5
        )
        diag = reliability_diagram(probs, labels, num_bins=num_bins)
        np.testing.assert_array_equal(diag.count, counts)
        np.testing.assert_allclose(diag.confidence, confs, rtol=1e-5)
        np.testing.assert_allclose(diag.accuracy, accs, rtol=1e-6)
        np.testing.assert_allclose(diag.bin_edges, np.linspace(0, 1, num_bins + 1), atol=1e-7)


def test_ece_hand_cases():
    # A predictor that is always 100% sure but right 70% of the time: ECE = 0.3.
    labels = np.array([0] * 7 + [1] * 3)
    probs = np.tile([1.0, 0.0], (10, 1))
    np.testing.assert_allclose(expected_calibration_error(probs, labels), 0.3, rtol=1e-6)
    # Bin edges: confidence exactly 0.6 belongs to (0.5, 0.6] with 10 bins.
    diag = reliability_diagram(np.array([[0.6, 0.4], [0.61, 0.39]]), np.array([0, 1]), 10)
    np.testing.assert_array_equal(diag.count, [0, 0, 0, 0, 0, 1, 1, 0, 0, 0])
    np.testing.assert_allclose(diag.accuracy[5:7], [1.0, 0.0])
    assert np.all(np.isnan(np.asarray(diag.confidence)[:5]))


def test_perfectly_calibrated_predictor_has_small_ece():
    # Labels drawn from the predicted probabilities: calibrated by construction. The ECE of
    # N = 40000 draws with 15 bins is a sum of O(1/sqrt(N_b)) sampling errors.
    rng = np.random.default_rng(2)
    n = 40_000
    probs = np_softmax(rng.normal(size=(n, 4)) * 1.5)
    u = rng.random(n)[:, None]
    labels = np.minimum((u > np.cumsum(probs, -1)).sum(-1), 3)  # inverse CDF: y ~ Cat(probs)
    assert float(expected_calibration_error(probs, labels)) < 0.01
    # ... while a sharpened (overconfident) version of it is clearly miscalibrated.
    sharp = np_softmax(np.log(probs) * 3)
    assert float(expected_calibration_error(sharp, labels)) > 0.1


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match=r"accuracy: probs must have shape \(N, K\)"):
        accuracy(np.zeros(3), np.zeros(3, int))
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\)"):
        expected_calibration_error(np.zeros((3, 2)), np.zeros(4, int))
    with pytest.raises(TypeError, match="labels must be integers"):
        negative_log_likelihood(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="num_bins must be a positive int"):
        reliability_diagram(np.full((3, 2), 0.5), np.zeros(3, int), num_bins=0)


# ---------------------------------------------------------------------------------------------
# Drawing predictions from a guide
# ---------------------------------------------------------------------------------------------


def _draw_normal(shape=(3,)):
    loc = jppl.param("loc", jnp.zeros(shape))
    return jppl.sample("w", dist.Normal(loc, 1.0).to_event(1))


def test_sample_predictions_draws_are_indexed_and_independent():
    params = {"loc": jnp.array([1.0, -2.0, 3.0])}
    key = jax.random.key(0)
    full = sample_predictions(key, _draw_normal, params, num_samples=2000)
    assert full.shape == (2000, 3)
    # Draws are iid N(loc, 1): moments (5 sigma) and decorrelation between draws.
    np.testing.assert_allclose(full.mean(0), params["loc"], atol=5 / math.sqrt(2000))
    np.testing.assert_allclose(full.std(0), 1.0, atol=0.08)
    lag = np.corrcoef(np.asarray(full[:-1, 0]), np.asarray(full[1:, 0]))[0, 1]
    assert abs(lag) < 5 / math.sqrt(2000)
    # A subset of indices gives exactly those rows (what a sharded sample axis relies on).
    part = sample_predictions(key, _draw_normal, params, indices=jnp.array([5, 17, 1999]))
    np.testing.assert_array_equal(part, full[jnp.array([5, 17, 1999])])
    np.testing.assert_array_equal(
        jax.random.key_data(sample_keys(key, jnp.array([3]))),
        jax.random.key_data(jax.random.fold_in(key, 3))[None],
    )


def test_sample_predictions_bad_arguments():
    with pytest.raises(ValueError, match="exactly one of num_samples= or indices="):
        sample_predictions(jax.random.key(0), _draw_normal, {})
    with pytest.raises(ValueError, match="num_samples must be a positive int"):
        sample_predictions(jax.random.key(0), _draw_normal, {}, num_samples=0)
    with pytest.raises(TypeError, match="params must be a dict"):
        sample_predictions(jax.random.key(0), _draw_normal, [1.0], num_samples=2)


# ---------------------------------------------------------------------------------------------
# Out-of-distribution entropy on digits
# ---------------------------------------------------------------------------------------------


class SmallMLP(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(64, 32, rngs=rngs)
        self.l2 = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        return self.l2(jax.nn.relu(self.l1(x)))


@pytest.mark.slow  # moved out of the default suite's 15-min budget
def test_ood_entropy_is_higher_than_in_distribution_entropy():
    from sklearn.datasets import load_digits

    data = load_digits()
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(data.target))
    train, test = perm[:1200], perm[1200:1500]
    mean, std = data.data[train].mean(0), data.data[train].std(0)
    std = np.where(std > 0, std, 1.0)

    def standardize(raw):
        return jnp.asarray((raw - mean) / std, jnp.float32)

    x_tr, y_tr = standardize(data.data[train]), jnp.asarray(data.target[train], jnp.int32)
    x_te, y_te = standardize(data.data[test]), data.target[test]
    bnn = BayesianModule("mlp", SmallMLP(nnx.Rngs(0)), prior=normal_prior(0.5), init_scale=1e-3)

    def model(x, y=None):
        logits = bnn.model()(x)
        with jppl.plate("data", x.shape[0]):
            jppl.sample("y", dist.CategoricalLogits(logits), obs=y)

    def guide(x, y=None):
        bnn.guide()

    svi = SVI(model, guide, optax.adam(1e-2), TraceMeanField_ELBO(num_particles=2))
    params = svi.run(jax.random.key(0), 400, x_tr, y_tr, progress_bar=False).params

    @jax.jit
    def summarize(x):
        logits = sample_predictions(jax.random.key(1), bnn.predict, params, x, num_samples=32)
        return summarize_logits(logits)

    s_in = summarize(x_te)
    assert float(accuracy(s_in.mean_probs, y_te)) > 0.85  # it did learn the digits
    noise = summarize(standardize(rng.uniform(0, 16, size=(300, 64))))
    inverted = summarize(standardize(16.0 - data.data[test]))
    h_in = float(s_in.predictive_entropy.mean())
    for s_out in (noise, inverted):
        assert float(s_out.predictive_entropy.mean()) > 2 * h_in
        assert float(s_out.mutual_information.mean()) > 2 * float(s_in.mutual_information.mean())
