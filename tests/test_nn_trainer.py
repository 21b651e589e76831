"""Tests of jppl.nn.Trainer: mesh invariance, augmentation groups, exact mode, resume, OOD."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import log_softmax
from scipy.special import logsumexp as np_logsumexp

import jppl
import jppl.distributions as dist
from jppl import parallel
from jppl.distributions import constraints
from jppl.handlers import seed, substitute, trace
from jppl.nn import Trainer
from jppl.nn import trainer as trainer_module
from jppl.nn.trainer import latest_checkpoint
from jppl.vi import SamplingParallelLoss, Trace_ELBO, TraceMeanField_ELBO
from jppl.vi.sampling_parallel import AUGMENT_TAG

D, K = 5, 3


def softmax_model(x, y):
    """Multinomial logistic regression with w ~ N(0, 1): x (B, D), y (B,)."""
    w = jppl.sample("w", dist.Normal(0.0, 1.0).expand([D, K]).to_event(2))
    with jppl.plate("data", x.shape[0], shard="data"):
        jppl.sample("y", dist.CategoricalLogits(x @ w), obs=y)


def softmax_guide(x, y):
    loc = jppl.param("w_loc", 0.1 * jnp.ones((D, K)))
    scale = jppl.param("w_scale", 0.3 * jnp.ones((D, K)), constraint=constraints.positive)
    jppl.sample("w", dist.Normal(loc, scale).to_event(2))


def noise_augment(key, batch):
    """Add N(0, 0.5^2) noise to the inputs; labels unchanged."""
    x, y = batch
    return x + 0.5 * jax.random.normal(key, x.shape, x.dtype), y


def make_data(n, seed_=0):
    rng = np.random.default_rng(seed_)
    x = rng.normal(size=(n, D)).astype(np.float32)
    w = rng.normal(size=(D, K))
    y = np.array([rng.choice(K, p=np.exp(log_softmax(r))) for r in x @ w], np.int32)
    return x, y


# ---------------------------------------------------------------------------------------------
# The loss, checked against a second computation
# ---------------------------------------------------------------------------------------------


@jax.jit
def guide_draw(key, params, x, y):
    """The guide's w for particle key ``key`` (the guide runs with ``split(key)[0]``)."""
    guide_key = jax.random.split(key)[0]
    tr = trace(seed(substitute(softmax_guide, data=params), rng_seed=guide_key)).get_trace(x, y)
    return tr["w"]["value"]


def numpy_losses(step_key, params, x, y, num_particles, lik_scale):
    """(standard, exact) losses in float64 numpy: per-sample log-liks and the analytic KL."""
    loc = np.asarray(params["w_loc"], np.float64)
    sc = np.asarray(params["w_scale"], np.float64)
    kl = np.sum(-np.log(sc) + 0.5 * (sc**2 + loc**2) - 0.5)
    ll = []
    for i in range(num_particles):
        w = np.asarray(guide_draw(jax.random.fold_in(step_key, i), params, x, y), np.float64)
        ll.append(log_softmax(np.asarray(x, np.float64) @ w, axis=-1)[np.arange(len(y)), y])
    ll = np.stack(ll)  # (S, B)
    standard = -lik_scale * ll.sum(1).mean() + kl
    exact = -lik_scale * np.sum(np_logsumexp(ll, axis=0) - math.log(num_particles)) + kl
    return standard, exact


def trainer_for(exact, num_data=36, batch_size=12, num_particles=6, mesh=None, **kw):
    return Trainer(
        softmax_model,
        softmax_guide,
        optax.adam(0.05),
        num_data=num_data,
        batch_size=batch_size,
        num_particles=num_particles,
        exact=exact,
        mesh=mesh,
        **kw,
    )


@pytest.mark.parametrize("exact", [False, True])
def test_loss_matches_numpy(exact):
    x, y = make_data(12)
    trainer = trainer_for(exact)  # likelihood scale 36 / 12 = 3
    state = trainer.init(jax.random.key(1), (np.tile(x, (3, 1)), np.tile(y, 3)))
    params = trainer.svi.get_params(state)
    step_key = jax.random.key(7)
    loss = jax.jit(trainer.loss.loss, static_argnums=(2, 3))(
        step_key, params, trainer.svi.model, softmax_guide, x, y
    )
    standard, exact_ref = numpy_losses(step_key, params, x, y, 6, 3.0)
    np.testing.assert_allclose(float(loss), exact_ref if exact else standard, rtol=2e-6)
    assert exact_ref < standard  # Jensen: the exact loss is tighter


def test_plain_loss_equals_svi_elbo():
    """Without augmentation, the loss is the wrapped ELBO's (the trainer adds nothing)."""
    x, y = make_data(12)
    elbo = TraceMeanField_ELBO(4)
    params = {"w_loc": 0.2 * jnp.ones((D, K)), "w_scale": 0.5 * jnp.ones((D, K))}
    key = jax.random.key(3)
    ours = jax.jit(SamplingParallelLoss(elbo).loss, static_argnums=(2, 3))
    ref = jax.jit(elbo.loss, static_argnums=(2, 3))
    np.testing.assert_allclose(
        float(ours(key, params, softmax_model, softmax_guide, x, y)),
        float(ref(key, params, softmax_model, softmax_guide, x, y)),
        rtol=1e-6,
    )


def test_augmentation_groups():
    x, y = make_data(12)
    loss = SamplingParallelLoss(Trace_ELBO(8), num_groups=4, augment=noise_augment)
    key = jax.random.key(5)
    groups = loss.group_batches(key, (x, y))
    assert groups[0].shape == (4, 12, D) and groups[1].shape == (4, 12)
    again = loss.group_batches(key, (x, y))
    np.testing.assert_array_equal(np.asarray(groups[0]), np.asarray(again[0]))  # reproducible
    root = jax.random.fold_in(key, AUGMENT_TAG)
    for g in range(4):
        ref = noise_augment(jax.random.fold_in(root, g), (x, y))[0]
        np.testing.assert_array_equal(np.asarray(groups[0][g]), np.asarray(ref))
        np.testing.assert_array_equal(np.asarray(groups[1][g]), y)
        for h in range(g):
            assert np.min(np.abs(np.asarray(groups[0][g] - groups[0][h]))) > 0  # all differ
    other = loss.group_batches(jax.random.key(6), (x, y))[0]
    assert not np.allclose(np.asarray(other), np.asarray(groups[0]))

    # Particle i sees group i // 2: assemble the loss from single-particle ELBOs by hand.
    params = {"w_loc": 0.2 * jnp.ones((D, K)), "w_scale": 0.5 * jnp.ones((D, K))}
    total = jax.jit(loss.loss, static_argnums=(2, 3))(
        key, params, softmax_model, softmax_guide, x, y
    )

    @jax.jit
    def particle(i, group):
        batch = noise_augment(jax.random.fold_in(root, group), (x, y))
        key_i = jax.random.fold_in(key, i)
        return Trace_ELBO(1).particle_loss(key_i, params, softmax_model, softmax_guide, batch, {})

    by_hand = [float(particle(i, i // 2)[0]) for i in range(8)]
    np.testing.assert_allclose(float(total), -np.mean(by_hand), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Meshes and resume
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exact", [False, True])
def test_losses_do_not_depend_on_the_mesh(exact):
    x, y = make_data(64)
    meshes = {"1 device": None, "sample=2 x data=2": parallel.make_mesh(sample=2, data=2)}
    if not exact:  # (exact mode: the hybrid mesh covers both axes; saves a compilation)
        meshes["sample=4"] = parallel.make_mesh(sample=4)
    results = {}
    for name, mesh in meshes.items():
        trainer = trainer_for(exact, 64, 16, 8, mesh=mesh, num_groups=4, augment=noise_augment)
        state = trainer.init(jax.random.key(0), (x, y))
        results[name] = trainer.fit(state, (x, y), 1, progress_bar=False)
    ref = results["1 device"]
    assert ref.losses.shape == (4,) and np.all(np.isfinite(ref.losses))
    assert not np.allclose(np.asarray(ref.params["w_loc"]), 0.1)  # it trained
    for name, res in results.items():
        np.testing.assert_allclose(res.losses, ref.losses, rtol=2e-6, err_msg=name)
        for site in ("w_loc", "w_scale"):
            np.testing.assert_allclose(
                np.asarray(res.params[site]), np.asarray(ref.params[site]), atol=1e-5
            )


def test_resume_repeats_the_trajectory(tmp_path):
    x, y = make_data(48)
    trainer = trainer_for(False, 48, 16, 4, num_groups=2, augment=noise_augment)
    state0 = trainer.init(jax.random.key(2), (x, y))
    straight = trainer.fit(state0, (x, y), 2, progress_bar=False)
    first = trainer.fit(state0, (x, y), 1, progress_bar=False, checkpoint_dir=tmp_path)
    path = latest_checkpoint(tmp_path)
    assert path is not None and path.endswith("step_000000003.npz")
    restored = trainer.restore(tmp_path, (x, y))
    second = trainer.fit(restored, (x, y), 1, progress_bar=False)
    np.testing.assert_array_equal(np.concatenate([first.losses, second.losses]), straight.losses)
    for a, b in zip(
        jax.tree_util.tree_leaves((second.state.params, second.state.optim_state)),
        jax.tree_util.tree_leaves((straight.state.params, straight.state.optim_state)),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [m.epoch for m in straight.history] == [1, 2] and second.history[0].epoch == 2
    # Epochs are reshuffled, and one epoch visits distinct points.
    p0, p1 = (np.asarray(trainer.epoch_batches(state0, e)).ravel() for e in (0, 1))
    assert sorted(p0) == list(range(48)) and not np.array_equal(p0, p1)


def softmax_predict(x):
    """Logits ``(N, K)`` for one draw of w from the guide (params substituted by the caller)."""
    loc = jppl.param("w_loc", jnp.zeros((D, K)))
    scale = jppl.param("w_scale", jnp.ones((D, K)), constraint=constraints.positive)
    return x @ jppl.sample("w", dist.Normal(loc, scale).to_event(2))


def test_fit_reports_validation_metrics(capsys):
    from jppl.nn import sample_predictions

    x, y = make_data(32)
    x_val, y_val = make_data(40, seed_=1)
    trainer = trainer_for(False, 32, 16, 4)
    state = trainer.init(jax.random.key(4), (x, y))
    result = trainer.fit(
        state, (x, y), 1, val_data=(x_val, y_val), predict=softmax_predict, num_eval_samples=8
    )
    (metrics,) = result.history
    assert metrics.epoch == 1 and metrics.step == 2
    np.testing.assert_allclose(metrics.loss, result.losses.mean(), rtol=1e-6)
    # The same draws by hand: the predictive is the mean of the per-draw softmax.
    key = jax.random.fold_in(result.state.rng_key, trainer_module.SHUFFLE_TAG + 1)
    logits = sample_predictions(key, softmax_predict, result.params, x_val, num_samples=8)
    probs = np.exp(log_softmax(np.asarray(logits, np.float64), axis=-1)).mean(0)
    np.testing.assert_allclose(metrics.val_accuracy, np.mean(probs.argmax(-1) == y_val))
    nll = -np.mean(np.log(probs[np.arange(len(y_val)), y_val]))
    np.testing.assert_allclose(metrics.val_nll, nll, rtol=1e-4)
    conf, correct = probs.max(-1), probs.argmax(-1) == y_val
    bins = np.clip(np.ceil(conf * 15).astype(int) - 1, 0, 14)  # (b/15, (b+1)/15]
    ece = sum(abs(np.sum(correct[bins == b]) - np.sum(conf[bins == b])) for b in range(15))
    np.testing.assert_allclose(metrics.val_ece, ece / len(y_val), rtol=1e-4, atol=1e-6)
    assert "epoch 1: step 2, loss" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def test_bad_arguments_are_named():
    x, y = make_data(12)
    with pytest.raises(ValueError, match="num_groups=3 must divide num_particles=8"):
        SamplingParallelLoss(Trace_ELBO(8), num_groups=3, augment=noise_augment)
    with pytest.raises(ValueError, match="needs an augment function"):
        SamplingParallelLoss(Trace_ELBO(8), num_groups=2)
    with pytest.raises(ValueError, match="batch_size=6 is not divisible by the size 4"):
        trainer_for(False, 36, 6, 8, mesh=parallel.make_mesh(data=4))
    with pytest.raises(ValueError, match="num_particles=6 is not divisible by the size 4"):
        trainer_for(False, 36, 12, 6, mesh=parallel.make_mesh(sample=4))
    with pytest.raises(ValueError, match="num_data=36"):
        trainer_for(False).init(jax.random.key(0), (x, y))
    bad = SamplingParallelLoss(Trace_ELBO(2), augment=lambda k, b: (b[0][:, :2], b[1]))
    params = {"w_loc": jnp.zeros((D, K)), "w_scale": jnp.ones((D, K))}
    with pytest.raises(ValueError, match="augment\\(key, args\\) must return"):
        bad.loss(jax.random.key(0), params, softmax_model, softmax_guide, x, y)

    def unplated(x, y):
        w = jppl.sample("w", dist.Normal(0.0, 1.0).expand([D, K]).to_event(2))
        jppl.sample("y", dist.CategoricalLogits(x @ w).to_event(1), obs=y)

    exact = SamplingParallelLoss(Trace_ELBO(2), exact=True)
    with pytest.raises(ValueError, match="observed site 'y' is not inside the plate 'data'"):
        exact.loss(jax.random.key(0), params, unplated, softmax_guide, x, y)


# ---------------------------------------------------------------------------------------------
# A Bayesian MLP on digits: predictive uncertainty, and accuracy/calibration (slow)
# ---------------------------------------------------------------------------------------------


def digits_setup(hidden, prior_scale, init_scale, kl_weight, num_particles, batch_size, lr):
    """A Bayesian MLP on sklearn's 8x8 digits (pixels / 16), stratified 75/25 split."""
    from flax import nnx
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from jppl.nn import BayesianModule, normal_prior

    data = load_digits()
    x_tr, x_te, y_tr, y_te = train_test_split(
        (data.data / 16.0).astype(np.float32),
        data.target.astype(np.int32),
        test_size=0.25,
        stratify=data.target,
        random_state=0,
    )

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(64, hidden, rngs=rngs)
            self.out = nnx.Linear(hidden, 10, rngs=rngs)

        def __call__(self, x):
            return self.out(jax.nn.relu(self.hidden(x)))

    bnn = BayesianModule(
        "mlp",
        MLP(nnx.Rngs(0)),
        prior=normal_prior(prior_scale),
        init_scale=init_scale,
        kl_weight=kl_weight,
    )

    def model(x, y):
        logits = bnn.model()(x)
        with jppl.plate("data", x.shape[0], shard="data"):
            jppl.sample("y", dist.CategoricalLogits(logits), obs=y)

    def guide(x, y):
        bnn.guide()

    trainer = Trainer(
        model,
        guide,
        optax.adam(lr),
        num_data=len(y_tr),
        batch_size=batch_size,
        num_particles=num_particles,
    )
    return bnn, trainer, (x_tr, y_tr), (x_te, y_te)


@pytest.mark.slow  # moved out of the default suite's 15-min budget
def test_ood_entropy_is_higher_than_in_distribution():
    from jppl.nn import sample_predictions, summarize_logits

    bnn, trainer, train, test = digits_setup(32, 1.0, 1e-2, 1.0, 4, 64, 1e-2)
    state = trainer.init(jax.random.key(0), train)
    result = trainer.fit(state, train, 3, progress_bar=False)

    @jax.jit
    def uncertainty(x):
        logits = sample_predictions(
            jax.random.key(1), bnn.predict, result.params, x, num_samples=32
        )
        s = summarize_logits(logits)
        return s.predictive_entropy.mean(), s.mutual_information.mean()

    x_te = test[0]
    noise = np.random.default_rng(0).uniform(0.0, 1.0, size=x_te.shape).astype(np.float32)
    h_in, mi_in = uncertainty(x_te)
    for x_ood in (noise, 1.0 - x_te):  # uniform noise, inverted digits
        h_out, mi_out = uncertainty(x_ood)
        assert float(h_out) > float(h_in) + 0.2, (h_in, h_out)
        assert float(mi_out) > float(mi_in), (mi_in, mi_out)


@pytest.mark.slow
def test_digits_bnn_accuracy_and_calibration():
    """Digits BNN (64-100-10, S=16, KL weight 0.2): >= 95% accuracy, ECE <= 0.05."""
    bnn, trainer, train, test = digits_setup(100, 1.0, 1e-3, 0.2, 16, 128, 1e-2)
    state = trainer.init(jax.random.key(0), train)
    result = trainer.fit(state, train, 60, progress_bar=False)  # 600 steps
    m = trainer.evaluate(result.state, bnn.predict, *test, num_samples=100)
    assert m["accuracy"] >= 0.95, m
    assert m["ece"] <= 0.05, m
