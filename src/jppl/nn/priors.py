"""Weight priors for Bayesian neural networks.

Both priors are scalar (batch and event shape ``()``) distributions; :func:`random_flax_module`
and :class:`jppl.nn.BayesianModule` broadcast them to each parameter leaf. Use one prior for
every leaf, a dict ``{path or leaf name: prior}``, or a callable ``(path, shape) -> prior``.

* :func:`normal_prior`: ``Normal(0, scale)``. ``KL(Normal || Normal)`` is registered, so
  ``TraceMeanField_ELBO`` uses the analytic KL for a mean-field Gaussian guide.
* :func:`scale_mixture_prior`: the two-component scale mixture of zero-mean Normals of
  Blundell et al. (2015), ``pi N(0, scale1^2) + (1 - pi) N(0, scale2^2)``, built as a
  :class:`~jppl.distributions.MixtureSameFamily` (no new distribution class is needed). Its KL
  to a Gaussian has no closed form, so ``TraceMeanField_ELBO`` falls back to the Monte Carlo
  term ``log p(w) - log q(w)`` at the sampled weights for these sites.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from jppl.distributions.continuous import Normal
from jppl.distributions.discrete import CategoricalProbs
from jppl.distributions.mixtures import MixtureSameFamily

__all__ = ["normal_prior", "scale_mixture_prior"]


def _positive(value: float, what: str, where: str) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: {what} must be a finite number > 0, got {value!r}")
    return float(value)


def normal_prior(scale: float = 1.0) -> Normal:
    """``Normal(0, scale)`` for every weight (batch shape ``()``).

    Raises:
        ValueError: ``scale`` is not a finite positive number.
    """
    return Normal(0.0, _positive(scale, "scale", "normal_prior"))


def scale_mixture_prior(
    mix: float = 0.5, scale1: float = 1.0, scale2: float = math.exp(-6.0)
) -> MixtureSameFamily:
    """``mix * N(0, scale1^2) + (1 - mix) * N(0, scale2^2)`` (Blundell et al., 2015).

    The defaults are the paper's (``pi = 1/2``, ``-log sigma1 = 0``, ``-log sigma2 = 6``): a
    wide component and a narrow one that pulls many weights towards zero.

    Args:
        mix: weight ``pi`` of the first component, in ``(0, 1)``.
        scale1: standard deviation of the first component (> 0).
        scale2: standard deviation of the second component (> 0).

    Returns:
        a scalar :class:`~jppl.distributions.MixtureSameFamily` (batch and event shape ``()``).

    Raises:
        ValueError: ``mix`` outside ``(0, 1)`` or a non-positive scale.
    """
    if not (isinstance(mix, int | float) and 0.0 < mix < 1.0):
        raise ValueError(f"scale_mixture_prior: mix must be in (0, 1), got {mix!r}")
    s1 = _positive(scale1, "scale1", "scale_mixture_prior")
    s2 = _positive(scale2, "scale2", "scale_mixture_prior")
    weights = CategoricalProbs(jnp.array([mix, 1.0 - mix]))
    return MixtureSameFamily(weights, Normal(jnp.zeros(2), jnp.array([s1, s2])))
