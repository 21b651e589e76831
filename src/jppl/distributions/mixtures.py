"""Finite mixtures."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from jppl.distributions.discrete import CategoricalLogits, CategoricalProbs
from jppl.distributions.distribution import Distribution
from jppl.distributions.util import lazy_broadcast_shape, validate_sample_shape

__all__ = ["MixtureSameFamily"]


class MixtureSameFamily(Distribution):
    """A mixture of K components from one family, batched along the last batch dim.

    ``mixing_distribution``: a categorical over ``{0, ..., K-1}`` (event shape ``()``), batch
    shape broadcastable to ``B``. ``component_distribution``: batch shape ``B + (K,)`` (``B``
    broadcastable with the mixing batch shape), any event shape ``E``. The mixture has batch
    shape ``B`` and event shape ``E``; its support is the components' support.
    """

    arg_constraints = {}

    def __init__(
        self,
        mixing_distribution: Distribution,
        component_distribution: Distribution,
        *,
        validate_args=None,
    ):
        if mixing_distribution.event_shape != () or not mixing_distribution.is_discrete:
            raise ValueError(
                "MixtureSameFamily: mixing_distribution must be a categorical distribution "
                f"(discrete, event_shape ()), got {mixing_distribution!r}."
            )
        if len(component_distribution.batch_shape) < 1:
            raise ValueError(
                "MixtureSameFamily: component_distribution needs at least one batch dim (the "
                f"mixture dim), got batch_shape {component_distribution.batch_shape}."
            )
        k = component_distribution.batch_shape[-1]
        if isinstance(mixing_distribution, CategoricalProbs | CategoricalLogits):
            n_cat = mixing_distribution._num_categories
            if n_cat != k:
                raise ValueError(
                    f"MixtureSameFamily: the mixing distribution has {n_cat} categories but the "
                    f"component distribution has {k} components (last batch dim)."
                )
        self.mixing_distribution = mixing_distribution
        self.component_distribution = component_distribution
        self._mixture_size = int(k)
        batch_shape = lazy_broadcast_shape(
            mixing_distribution.batch_shape, component_distribution.batch_shape[:-1]
        )
        super().__init__(batch_shape, component_distribution.event_shape, validate_args=False)

    @property
    def mixture_size(self) -> int:
        """The number of components K."""
        return self._mixture_size

    @property
    def mixture_dim(self) -> int:
        """The (negative) axis of the component dim in component-shaped arrays."""
        return -self.event_dim - 1

    @property
    def support(self):  # type: ignore[override]
        return self.component_distribution.support

    @property
    def is_discrete(self) -> bool:
        return self.component_distribution.is_discrete

    def _log_weights(self):
        """Normalized log mixing weights, shape ``mixing.batch_shape + (K,)``."""
        mix = self.mixing_distribution
        if isinstance(mix, CategoricalProbs | CategoricalLogits):
            return mix._normalized_logits()
        values = jnp.arange(self._mixture_size).reshape((-1,) + (1,) * len(mix.batch_shape))
        return jnp.moveaxis(mix.log_prob(values), 0, -1)

    def _expand_weights(self, w):
        """Append ``event_dim`` singleton dims so ``w`` lines up with component arrays."""
        return w.reshape(w.shape + (1,) * self.event_dim)

    def component_log_probs(self, value):
        """Joint log density of ``value`` and each component: ``value_batch + B + (K,)``."""
        value = jnp.expand_dims(jnp.asarray(value), self.mixture_dim)
        return self.component_distribution.log_prob(value) + self._log_weights()

    def log_prob(self, value):
        """``logsumexp_k [log w_k + log p_k(value)]``; shape ``sample_shape + B``."""
        return logsumexp(self.component_log_probs(value), axis=-1)

    def sample(self, key, sample_shape=()):
        """Draw every component, then keep the one picked by the mixing distribution."""
        sample_shape = validate_sample_shape(sample_shape)
        key_mix, key_comp = jax.random.split(key)
        comp = self.component_distribution
        full_batch = self.batch_shape + (self._mixture_size,)
        if comp.batch_shape != full_batch:
            comp = comp.expand(full_batch)
        mix = self.mixing_distribution
        if mix.batch_shape != self.batch_shape:
            mix = mix.expand(self.batch_shape)
        xs = comp.sample(key_comp, sample_shape)  # S + B + (K,) + E
        idx = jnp.asarray(mix.sample(key_mix, sample_shape)).astype(jnp.int32)  # S + B
        idx = idx.reshape(idx.shape + (1,) * (1 + self.event_dim))
        picked = jnp.take_along_axis(xs, idx, axis=self.mixture_dim)
        return jnp.squeeze(picked, axis=self.mixture_dim)

    @property
    def mean(self):
        w = self._expand_weights(jnp.exp(self._log_weights()))
        return jnp.sum(w * self.component_distribution.mean, axis=self.mixture_dim)

    @property
    def variance(self):
        """Law of total variance: ``E[Var(X | k)] + Var(E[X | k])``."""
        w = self._expand_weights(jnp.exp(self._log_weights()))
        comp_mean = self.component_distribution.mean
        comp_var = self.component_distribution.variance
        mean = jnp.sum(w * comp_mean, axis=self.mixture_dim, keepdims=True)
        return jnp.sum(w * (comp_var + (comp_mean - mean) ** 2), axis=self.mixture_dim)

    def cdf(self, value):
        """``sum_k w_k F_k(value)`` (univariate components only)."""
        if self.event_dim != 0:
            raise NotImplementedError("MixtureSameFamily.cdf needs univariate components.")
        value = jnp.expand_dims(jnp.asarray(value), -1)
        w = jnp.exp(self._log_weights())
        return jnp.sum(w * self.component_distribution.cdf(value), axis=-1)
