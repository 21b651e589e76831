"""NumPyro models with enumerated discrete sites, ported by changing their imports only.

The models and drivers are written as NumPyro's examples and documentation write them (the
annotation example's Dawid-Skene model, the Gaussian mixture of the enumeration tutorial with
``TraceEnum_ELBO``, the Viterbi decoder of ``infer_discrete``'s docstring, the HMM example's
``scan`` model). The only change from NumPyro is the import block right below. Each port is
checked against brute-force sums written as explicit loops, never against NumPyro's output.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import norm

# --- the import change: NumPyro's names, jppl's modules ----------------------------------------
import jppl as numpyro
import jppl.distributions as dist
from jppl import handlers
from jppl.contrib.control_flow import scan
from jppl.contrib.funsor import config_enumerate, enum, infer_discrete, markov
from jppl.infer import MCMC, NUTS, SVI, Predictive, TraceEnum_ELBO
from jppl.infer.autoguide import AutoDelta
from jppl.infer.util import log_density
from jppl.ops.indexing import Vindex
from jppl.optim import Adam

# ----------------------------------------------------------------------------------------------

pytestmark = pytest.mark.filterwarnings("ignore::jppl.diagnostics.ConvergenceWarning")


# -- NumPyro's examples/annotation.py: Dawid-Skene ------------------------------------------------


def dawid_skene(positions, annotations):
    """This model corresponds to the plate diagram in Figure 2 of the annotation example."""
    num_annotators = int(np.max(positions)) + 1
    num_classes = int(np.max(annotations)) + 1
    num_items, num_positions = annotations.shape

    with numpyro.plate("annotator", num_annotators, dim=-2):
        with numpyro.plate("class", num_classes):
            beta = numpyro.sample("beta", dist.Dirichlet(jnp.ones(num_classes)))

    pi = numpyro.sample("pi", dist.Dirichlet(jnp.ones(num_classes)))

    with numpyro.plate("item", num_items, dim=-2):
        c = numpyro.sample("c", dist.Categorical(pi), infer={"enumerate": "parallel"})

        with numpyro.plate("position", num_positions):
            numpyro.sample("y", dist.Categorical(Vindex(beta)[positions, c, :]), obs=annotations)


def _annotation_data(seed=0, num_items=6, num_classes=3):
    rng = np.random.default_rng(seed)
    positions = np.array([0, 1, 2, 0])  # annotator of each annotation slot
    truth = rng.integers(num_classes, size=num_items)
    annotations = np.where(
        rng.random((num_items, 4)) < 0.8,
        truth[:, None],
        rng.integers(num_classes, size=(num_items, 4)),
    )
    return positions, annotations, truth


def test_dawid_skene_density_is_the_sum_over_true_classes():
    positions, annotations, _ = _annotation_data()
    rng = np.random.default_rng(1)
    beta = rng.dirichlet(np.ones(3), size=(3, 3))
    pi = rng.dirichlet(np.ones(3))
    model = enum(config_enumerate(dawid_skene), first_available_dim=-3)
    got, _ = log_density(
        model, (positions, annotations), {}, {"beta": jnp.asarray(beta), "pi": jnp.asarray(pi)}
    )
    from scipy.stats import dirichlet

    expected = sum(dirichlet(np.ones(3)).logpdf(beta[a, k]) for a in range(3) for k in range(3))
    expected += dirichlet(np.ones(3)).logpdf(pi)
    for i in range(annotations.shape[0]):
        expected += logsumexp(
            [
                np.log(pi[c])
                + sum(np.log(beta[positions[j], c, annotations[i, j]]) for j in range(4))
                for c in range(3)
            ]
        )
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


@pytest.mark.slow
def test_dawid_skene_nuts_and_the_true_classes():
    positions, annotations, truth = _annotation_data(num_items=30)
    mcmc = MCMC(NUTS(dawid_skene), num_warmup=200, num_samples=200, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), positions, annotations)
    samples = mcmc.get_samples()
    assert set(samples) == {"beta", "pi"}
    # The classes' posterior, drawn given each draw (NumPyro: Predictive(infer_discrete=True)).
    pred = Predictive(dawid_skene, samples, infer_discrete=True)(
        jax.random.PRNGKey(1), positions, annotations
    )
    c = np.asarray(pred["c"]).reshape(200, -1)
    majority = np.array([np.bincount(col, minlength=3).argmax() for col in c.T])
    # The classes are identified up to a relabelling (the model is symmetric in them).
    accuracy = max(
        np.mean(np.asarray(perm)[majority] == truth) for perm in itertools.permutations(range(3))
    )
    assert accuracy >= 0.9


# -- the enumeration tutorial's Gaussian mixture, by SVI ---------------------------------------


@config_enumerate
def gmm(data):
    weights = numpyro.sample("weights", dist.Dirichlet(0.5 * jnp.ones(2)))
    scale = numpyro.sample("scale", dist.LogNormal(0.0, 2.0))
    with numpyro.plate("components", 2):
        locs = numpyro.sample("locs", dist.Normal(0.0, 10.0))
    with numpyro.plate("data", len(data)):
        assignment = numpyro.sample("assignment", dist.Categorical(weights))
        numpyro.sample("obs", dist.Normal(locs[assignment], scale), obs=data)


def test_gmm_map_by_trace_enum_elbo_then_infer_discrete():
    data = jnp.array([0.0, 1.0, 10.0, 11.0, 12.0])
    guide = AutoDelta(
        handlers.block(gmm, hide=["assignment"]),
        init_loc_fn=lambda site: {"locs": jnp.array([0.5, 11.0]), "scale": jnp.array(1.0)}.get(
            site["name"]
        ),
    )
    svi = SVI(gmm, guide, Adam(0.05), TraceEnum_ELBO(max_plate_nesting=1))
    result = svi.run(jax.random.PRNGKey(0), 1000, data, progress_bar=False)
    params = result.params
    locs = np.asarray(params["locs_auto_loc"])
    np.testing.assert_allclose(np.sort(locs), [0.5, 11.0], atol=0.05)

    # The MAP assignments given the fitted globals (NumPyro's tutorial does the same).
    fitted = {
        "weights": params["weights_auto_loc"],
        "scale": params["scale_auto_loc"],
        "locs": params["locs_auto_loc"],
    }
    trained = handlers.substitute(gmm, data=fitted)
    tr = handlers.trace(infer_discrete(trained, temperature=0, first_available_dim=-2)).get_trace(
        data
    )
    assignment = np.asarray(tr["assignment"]["value"])
    first = int(np.argmin(np.abs(locs - 0.5)))
    assert list(assignment == first) == [True, True, False, False, False]


# -- infer_discrete's docstring: the Viterbi decoder ---------------------------------------------


@infer_discrete(first_available_dim=-1, temperature=0)
@config_enumerate
def viterbi_decoder(data, hidden_dim=10):
    transition = 0.3 / hidden_dim + 0.7 * jnp.eye(hidden_dim)
    means = jnp.arange(float(hidden_dim))
    states = [0]
    for t in markov(range(len(data))):
        states.append(numpyro.sample(f"states_{t}", dist.Categorical(transition[states[-1]])))
        numpyro.sample(f"obs_{t}", dist.Normal(means[states[-1]], 1.0), obs=data[t])
    return states  # returns maximum likelihood states


def test_viterbi_decoder_finds_the_brute_force_map():
    hidden_dim, data = 3, np.array([0.2, 2.1, 1.9, 0.1, 2.2])
    transition = 0.3 / hidden_dim + 0.7 * np.eye(hidden_dim)

    def joint(states):
        prev, lp = 0, 0.0
        for t, s in enumerate(states):
            lp += np.log(transition[prev, s]) + norm.logpdf(data[t], s, 1.0)
            prev = s
        return lp

    best = max(itertools.product(range(hidden_dim), repeat=len(data)), key=joint)
    states = viterbi_decoder(jnp.asarray(data), hidden_dim=hidden_dim)
    assert tuple(int(s) for s in states[1:]) == best


# -- NumPyro's examples/hmm_enum.py, model_2 (two dependent chains ... here model_1 + NUTS) --------


def model_1(sequences, lengths, hidden_dim=2):
    num_sequences, max_length, data_dim = sequences.shape
    with handlers.mask(mask=False):
        probs_x = numpyro.sample(
            "probs_x", dist.Dirichlet(0.9 * jnp.eye(hidden_dim) + 0.1).to_event(1)
        )
    probs_y = numpyro.sample(
        "probs_y", dist.Beta(0.1, 0.9).expand([hidden_dim, data_dim]).to_event(2)
    )

    def transition_fn(carry, y):
        x_prev, t = carry
        with numpyro.plate("sequences", num_sequences, dim=-2):
            with handlers.mask(mask=(t < lengths)[..., None]):
                x = numpyro.sample("x", dist.Categorical(probs_x[x_prev]))
                with numpyro.plate("tones", data_dim, dim=-1):
                    numpyro.sample("y", dist.Bernoulli(probs_y[x.squeeze(-1)]), obs=y)
        return (x, t + 1), None

    x_init = jnp.zeros((num_sequences, 1), dtype=jnp.int32)
    scan(transition_fn, (x_init, 0), jnp.swapaxes(sequences, 0, 1))


def test_hmm_enum_model_1_density():
    rng = np.random.default_rng(3)
    S, T, D = 2, 8, 3
    sequences = (rng.random((S, T, D)) < 0.3).astype(np.float32)
    lengths = np.array([8, 6])
    px = np.array([[0.9, 0.1], [0.2, 0.8]])
    py = np.array([[0.1, 0.7, 0.3], [0.6, 0.2, 0.5]])
    model = enum(config_enumerate(model_1), first_available_dim=-3)
    density = jax.jit(lambda *args, **params: log_density(model, args, {}, params)[0])
    got = density(
        jnp.asarray(sequences),
        jnp.asarray(lengths),
        probs_x=jnp.asarray(px),
        probs_y=jnp.asarray(py),
    )
    from scipy.stats import beta as beta_dist

    expected = beta_dist(0.1, 0.9).logpdf(py).sum()  # probs_x's prior is masked out
    for s in range(S):

        def emit(x, t, s=s):
            return np.sum(np.log(np.where(sequences[s, t] == 1, py[x], 1 - py[x])))

        alpha = np.log(px[0]) + np.array([emit(x, 0) for x in range(2)])
        for t in range(1, T):
            if t < lengths[s]:
                alpha = logsumexp(alpha[:, None] + np.log(px), axis=0)
                alpha = alpha + np.array([emit(x, t) for x in range(2)])
            else:  # masked steps: factors of 1, the variable still summed
                alpha = np.full(2, logsumexp(alpha))
        expected += logsumexp(alpha)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


@pytest.mark.slow
def test_hmm_enum_model_1_nuts_runs():
    rng = np.random.default_rng(3)
    sequences = (rng.random((2, 8, 3)) < 0.3).astype(np.float32)
    lengths = np.array([8, 6])
    mcmc = MCMC(NUTS(model_1), num_warmup=50, num_samples=50, progress_bar=False)
    mcmc.run(jax.random.PRNGKey(2), jnp.asarray(sequences), jnp.asarray(lengths))
    assert mcmc.get_samples()["probs_y"].shape == (50, 2, 3)
