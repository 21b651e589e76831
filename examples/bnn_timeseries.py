"""A Bayesian MLP forecaster for a time series: predictive intervals and their coverage.

Series (synthetic, so the truth is known): two seasonal components plus Gaussian noise,

    y_t = sin(2 pi t / 40) + 0.5 sin(2 pi t / 11 + 1) + 0.3 sin(2 pi t / 97) + eps_t,
    eps_t ~ Normal(0, 0.2^2),                                  t = 0, ..., 1499.

Task: one-step-ahead forecasting from the previous ``L = 24`` values. The first 75% of the
time steps are the training windows, the last 25% the test windows (strictly later in time).

Model: ``y_t ~ Normal(mlp(y_{t-L..t-1}; w), sigma)`` with a mean-field Gaussian
:class:`jppl.nn.BayesianModule` MLP (24-32-32-1, tanh, ``Normal(0, 1)`` prior) and the noise
scale ``sigma`` a point-estimated ``param`` site. Trained with :class:`jppl.nn.Trainer`
(S = 16 weight samples per step, minibatches of 64).

Prediction: for each of M = 500 weight draws ``w_m`` from the guide, ``y_m ~ Normal(mlp(x;
w_m), sigma)``; the central 50% and 90% predictive intervals are the empirical quantiles of
the ``y_m``. The script prints their empirical coverage on the test windows (the fraction of
true values inside; nominal 0.50 and 0.90), their mean width, and the RMSE of the predictive
mean next to the noise floor 0.2. For contrast, it also prints the coverage of the intervals
that ignore the weight uncertainty (``Normal(predictive mean, sigma)`` quantiles).

Run ``python examples/bnn_timeseries.py`` (``--help`` for options); about a minute on CPU.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from scipy.stats import norm

import jppl
import jppl.distributions as dist
from jppl.distributions import constraints
from jppl.nn import BayesianModule, Trainer, normal_prior, sample_predictions

NOISE = 0.2


def make_series(length: int = 1500, seed: int = 0) -> np.ndarray:
    """The synthetic series ``(length,)`` (see the module docstring)."""
    t = np.arange(length)
    signal = (
        np.sin(2 * np.pi * t / 40)
        + 0.5 * np.sin(2 * np.pi * t / 11 + 1.0)
        + 0.3 * np.sin(2 * np.pi * t / 97)
    )
    return signal + NOISE * np.random.default_rng(seed).normal(size=length)


def windows(series: np.ndarray, lags: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x (T - lags, lags), y (T - lags,))``: each value and the ``lags`` values before it."""
    idx = np.arange(lags)[None, :] + np.arange(len(series) - lags)[:, None]
    return series[idx].astype(np.float32), series[lags:].astype(np.float32)


class MLP(nnx.Module):
    """``x (N, lags) -> mean (N,)`` with two tanh hidden layers."""

    def __init__(self, lags: int, hidden: int, rngs: nnx.Rngs):
        self.l1 = nnx.Linear(lags, hidden, rngs=rngs)
        self.l2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(jnp.tanh(self.l2(jnp.tanh(self.l1(x)))))[..., 0]


def make_bnn(
    lags: int, hidden: int, init_scale: float, seed: int
) -> tuple[BayesianModule, Callable, Callable]:
    """``(bnn, model, guide)``; model and guide take ``(x (B, lags), y (B,))``."""
    bnn = BayesianModule(
        "mlp", MLP(lags, hidden, nnx.Rngs(seed)), prior=normal_prior(1.0), init_scale=init_scale
    )

    def model(x: jax.Array, y: jax.Array) -> None:
        mean = bnn.model()(x)
        sigma = jppl.param("sigma", jnp.asarray(0.5), constraint=constraints.positive)
        with jppl.plate("data", x.shape[0], shard="data"):
            jppl.sample("y", dist.Normal(mean, sigma), obs=y)

    def guide(x: jax.Array, y: jax.Array) -> None:
        bnn.guide()

    return bnn, model, guide


def coverage(lo: np.ndarray, hi: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(fraction of y in [lo, hi], mean width)``."""
    return float(np.mean((y >= lo) & (y <= hi))), float(np.mean(hi - lo))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lags", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--particles", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--init-scale", type=float, default=1e-3)
    parser.add_argument("--samples", type=int, default=500, help="predictive draws M")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    series = make_series(seed=args.seed)
    x, y = windows(series, args.lags)
    split = int(0.75 * len(series)) - args.lags
    x_tr, y_tr, x_te, y_te = x[:split], y[:split], x[split:], y[split:]

    bnn, model, guide = make_bnn(args.lags, args.hidden, args.init_scale, args.seed)
    steps = args.epochs * (len(y_tr) // args.batch_size)
    trainer = Trainer(
        model,
        guide,
        optax.adam(optax.cosine_decay_schedule(args.lr, steps, alpha=0.05)),
        num_data=len(y_tr),
        batch_size=args.batch_size,
        num_particles=args.particles,
    )
    start = time.perf_counter()
    state = trainer.init(jax.random.key(args.seed), (x_tr, y_tr))
    result = trainer.fit(state, (x_tr, y_tr), args.epochs, progress_bar=False)
    seconds = time.perf_counter() - start
    sigma = float(result.params["sigma"])

    key_w, key_y = jax.random.split(jax.random.key(args.seed + 1))
    means = np.asarray(
        jax.jit(
            lambda x: sample_predictions(
                key_w, bnn.predict, result.params, x, num_samples=args.samples
            )
        )(jnp.asarray(x_te))
    )  # (M, N)
    draws = means + sigma * np.asarray(jax.random.normal(key_y, means.shape))
    mean_pred = means.mean(0)
    rmse = float(np.sqrt(np.mean((mean_pred - y_te) ** 2)))
    print(
        f"{len(y_tr)} training / {len(y_te)} test windows (lags {args.lags}); {args.epochs} "
        f"epochs, {int(result.state.step)} steps, S={args.particles}, in {seconds:.1f} s"
    )
    print(
        f"test RMSE of the predictive mean {rmse:.4f} (noise floor {NOISE}); fitted sigma "
        f"{sigma:.4f}; mean weight-uncertainty std {float(means.std(0).mean()):.4f}"
    )
    header = f"{'interval':9s} {'nominal':>8s} {'coverage':>9s} {'width':>7s}"
    print(header + "   noise-only: coverage, width")
    for level in (0.5, 0.9):
        lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
        cov, width = coverage(lo, hi, y_te)
        half = norm.ppf((1 + level) / 2) * sigma
        cov0, width0 = coverage(mean_pred - half, mean_pred + half, y_te)
        print(
            f"{f'{level:.0%}':9s} {level:8.2f} {cov:9.3f} {width:7.3f}   {cov0:.3f}, {width0:.3f}"
        )


if __name__ == "__main__":
    main()
