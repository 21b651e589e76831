"""The chaining of an enumerated ``scan``'s steps (``jppl.model.enum``): both implementations
(the backward recursion used on a CPU, the tree of log-space matrix products used elsewhere)
against brute-force enumeration of every path, values and gradients."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jppl.model.enum import _backward_sum, _chain_sum, _tree_sum

IMPLEMENTATIONS = {"backward": _backward_sum, "tree": _tree_sum, "dispatch": _chain_sum}


def _brute_force(steps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(log Z, d sum(log Z) / d steps)`` in float64 over all paths: ``log Z[b, s0] = log
    sum_{s_1..s_L} exp(sum_t steps[t, b, s_{t-1}, s_t])``; the gradient is the sum over ``s0``
    of the pairwise posterior marginals of each step."""
    length, batch, p, _ = steps.shape
    log_z = np.empty((batch, p))
    grad = np.zeros_like(steps)
    for b in range(batch):
        for s0 in range(p):
            paths = [(s0, *rest) for rest in itertools.product(range(p), repeat=length)]
            logs = np.array(
                [sum(steps[t, b, path[t], path[t + 1]] for t in range(length)) for path in paths]
            )
            top = logs.max()
            weights = np.exp(logs - top)
            total = weights.sum()
            log_z[b, s0] = top + np.log(total)
            for path, w in zip(paths, weights / total, strict=True):
                for t in range(length):
                    grad[t, b, path[t], path[t + 1]] += w
    return log_z, grad


@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("length", [1, 2, 5])
def test_chain_sum_is_the_sum_over_paths(name, length):
    rng = np.random.default_rng(length)
    steps = rng.normal(size=(length, 2, 3, 3))
    steps[:, 1] *= 150.0  # factors that disagree by hundreds of nats: no underflow allowed
    steps[0, 0, 1, 2] = -np.inf  # an impossible transition
    fn = IMPLEMENTATIONS[name]
    x = jnp.asarray(steps, jnp.float32)
    got = np.asarray(jax.jit(fn)(x), np.float64)
    grad = np.asarray(jax.jit(jax.grad(lambda s: jnp.sum(fn(s))))(x), np.float64)
    want, want_grad = _brute_force(np.asarray(x, np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, want_grad, atol=1e-4)
