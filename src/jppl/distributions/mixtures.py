"""Finite mixtures."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from jppl.distributions import constraints
from jppl.distributions.discrete import CategoricalLogits, CategoricalProbs
from jppl.distributions.distribution import Distribution
from jppl.distributions.util import lazy_broadcast_shape, validate_sample_shape

__all__ = ["Mixture", "MixtureGeneral", "MixtureSameFamily"]


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


def Mixture(mixing_distribution, component_distributions, *, validate_args=None):
    """A finite mixture: ``MixtureSameFamily`` when ``component_distributions`` is one
    distribution (the components along its last batch dim), ``MixtureGeneral`` when it is a
    list of distributions."""
    if isinstance(component_distributions, Distribution):
        return MixtureSameFamily(
            mixing_distribution, component_distributions, validate_args=validate_args
        )
    return MixtureGeneral(mixing_distribution, component_distributions, validate_args=validate_args)


class MixtureGeneral(Distribution):
    """A mixture of K components given as a list of distributions (of any families).

    ``mixing_distribution``: a ``Categorical`` over ``{0, ..., K-1}``;
    ``component_distributions``: K distributions with one event shape ``E`` and batch shapes
    broadcastable with the mixing batch shape. The mixture's batch shape ``B`` is the broadcast
    of all of them; its event shape is ``E``. ``support``: the mixture's support; by default
    the first component's (then every component's support must be of the same kind). Given
    explicitly, each component's log density is set to ``-inf`` off its own support, so
    components with different supports (e.g. ``Normal`` and ``HalfNormal``) can be mixed.
    """

    arg_constraints = {}
    has_rsample = False

    def __init__(
        self,
        mixing_distribution: Distribution,
        component_distributions,
        *,
        support: constraints.Constraint | None = None,
        validate_args=None,
    ):
        if not isinstance(mixing_distribution, CategoricalProbs | CategoricalLogits):
            raise ValueError(
                "MixtureGeneral: mixing_distribution must be a Categorical (CategoricalProbs "
                f"or CategoricalLogits), got {type(mixing_distribution).__name__}."
            )
        if isinstance(component_distributions, Distribution):
            raise ValueError(
                "MixtureGeneral: component_distributions must be a list of distributions; "
                "for one batched distribution use MixtureSameFamily (or Mixture)."
            )
        try:
            components = list(component_distributions)
        except TypeError as e:
            raise ValueError(
                "MixtureGeneral: component_distributions must be a list of distributions, got "
                f"{component_distributions!r}."
            ) from e
        for i, d in enumerate(components):
            if not isinstance(d, Distribution):
                raise ValueError(
                    f"MixtureGeneral: component_distributions[{i}] must be a Distribution, got "
                    f"{type(d).__name__}."
                )
        k = mixing_distribution._num_categories
        if len(components) != k:
            raise ValueError(
                f"MixtureGeneral: the mixing distribution has {k} categories but "
                f"{len(components)} component distributions were given."
            )
        event_shape = components[0].event_shape
        for i, d in enumerate(components[1:], start=1):
            if d.event_shape != event_shape:
                raise ValueError(
                    "MixtureGeneral: all components must have one event shape; component 0 "
                    f"has {event_shape}, component {i} has {d.event_shape}."
                )
        if support is None:
            kind = type(components[0].support)
            for i, d in enumerate(components[1:], start=1):
                if type(d.support) is not kind:
                    raise ValueError(
                        "MixtureGeneral: all components must have the same support (component "
                        f"0: {components[0].support!r}, component {i}: {d.support!r}); pass "
                        "`support=` to mix components with different supports."
                    )
        elif not isinstance(support, constraints.Constraint):
            raise TypeError(f"MixtureGeneral: `support` must be a Constraint, got {support!r}.")
        self._mixing_distribution = mixing_distribution
        self._component_distributions = components
        self._support = support
        self._mixture_size = int(k)
        batch_shape = lazy_broadcast_shape(
            mixing_distribution.batch_shape, *(d.batch_shape for d in components)
        )
        super().__init__(batch_shape, event_shape, validate_args=False)

    @classmethod
    def _tree_unflatten(cls, aux_data, children):
        obj = super()._tree_unflatten(aux_data, children)
        # the components are a list (no shape of their own): recompute the batch shape from
        # the rebuilt distributions when they carry real shapes
        mix = obj.__dict__.get("_mixing_distribution")
        comps = obj.__dict__.get("_component_distributions")
        if isinstance(mix, Distribution) and all(isinstance(d, Distribution) for d in comps):
            try:
                obj.__dict__["_batch_shape"] = lazy_broadcast_shape(
                    mix.batch_shape, *(d.batch_shape for d in comps)
                )
            except ValueError:
                pass
        return obj

    # -- structure ------------------------------------------------------------------------------
    @property
    def mixing_distribution(self) -> Distribution:
        """The categorical over components."""
        return self._mixing_distribution

    @property
    def component_distributions(self) -> list[Distribution]:
        """The K component distributions."""
        return self._component_distributions

    @property
    def mixture_size(self) -> int:
        """The number of components K."""
        return self._mixture_size

    @property
    def mixture_dim(self) -> int:
        """The (negative) axis of the component dim in component-stacked arrays."""
        return -self.event_dim - 1

    @property
    def support(self):  # type: ignore[override]
        if self._support is not None:
            return self._support
        return self._component_distributions[0].support

    @property
    def is_discrete(self) -> bool:
        return self._component_distributions[0].is_discrete

    def _stack(self, arrays, shape):
        """Broadcast each array to ``shape`` and stack them along ``mixture_dim``."""
        return jnp.stack([jnp.broadcast_to(a, shape) for a in arrays], axis=self.mixture_dim)

    # -- per component --------------------------------------------------------------------------
    @property
    def component_mean(self):
        """``B + (K,) + E``."""
        return self._stack([d.mean for d in self._component_distributions], self.shape())

    @property
    def component_variance(self):
        """``B + (K,) + E``."""
        return self._stack([d.variance for d in self._component_distributions], self.shape())

    def component_log_probs(self, value):
        """``log w_k + log p_k(value)``: ``sample_shape + B + (K,)``."""
        value = jnp.asarray(value)
        lps = []
        for d in self._component_distributions:
            lp = d.log_prob(value)
            if self._support is not None:
                ok = d.validate_sample(value)
                lp = jnp.where(ok, lp, -jnp.inf)
            lps.append(lp)
        shape = lazy_broadcast_shape(*(jnp.shape(lp) for lp in lps))
        lps = jnp.stack([jnp.broadcast_to(lp, shape) for lp in lps], axis=-1)
        return lps + self._mixing_distribution._normalized_logits()

    def component_sample(self, key, sample_shape=()):
        """A draw from every component: ``sample_shape + B + (K,) + E``."""
        sample_shape = validate_sample_shape(sample_shape)
        keys = jax.random.split(key, self._mixture_size)
        xs = [
            d.expand(sample_shape + self.batch_shape).sample(k)
            for k, d in zip(keys, self._component_distributions, strict=True)
        ]
        return jnp.stack(xs, axis=self.mixture_dim)

    # -- distribution ---------------------------------------------------------------------------
    def sample_with_intermediates(self, key, sample_shape=()):
        """``(draws, [component indices])``; indices have shape ``sample_shape + B``."""
        sample_shape = validate_sample_shape(sample_shape)
        key_comp, key_mix = jax.random.split(key)
        xs = self.component_sample(key_comp, sample_shape)
        mix = self._mixing_distribution.expand(sample_shape + self.batch_shape)
        idx = jnp.asarray(mix.sample(key_mix)).astype(jnp.int32)
        picked = jnp.take_along_axis(
            xs, idx.reshape(idx.shape + (1,) * (1 + self.event_dim)), axis=self.mixture_dim
        )
        return jnp.squeeze(picked, axis=self.mixture_dim), [idx]

    def sample(self, key, sample_shape=()):
        return self.sample_with_intermediates(key, sample_shape)[0]

    def log_prob(self, value, intermediates=None):
        """``logsumexp_k [log w_k + log p_k(value)]``: ``sample_shape + B``."""
        lps = self.component_log_probs(value)
        # a value-preserving where: no gradient flows through -inf terms (zero weights)
        lps = jnp.where(jnp.isneginf(lps), -jnp.inf, lps)
        return logsumexp(lps, axis=-1)

    def _weights(self):
        """Mixing probabilities with ``event_dim`` trailing singleton dims."""
        w = jnp.exp(self._mixing_distribution._normalized_logits())
        return w.reshape(w.shape + (1,) * self.event_dim)

    @property
    def mean(self):
        return jnp.sum(self._weights() * self.component_mean, axis=self.mixture_dim)

    @property
    def variance(self):
        """Law of total variance: ``E[Var(X | k)] + Var(E[X | k])``."""
        w = self._weights()
        comp_mean = self.component_mean
        mean = jnp.sum(w * comp_mean, axis=self.mixture_dim, keepdims=True)
        return jnp.sum(
            w * (self.component_variance + (comp_mean - mean) ** 2), axis=self.mixture_dim
        )

    def cdf(self, value):
        """``sum_k w_k F_k(value)`` (univariate components only)."""
        if self.event_dim != 0:
            raise NotImplementedError("MixtureGeneral.cdf needs univariate components.")
        value = jnp.asarray(value)
        cdfs = [d.cdf(value) for d in self._component_distributions]
        shape = lazy_broadcast_shape(*(jnp.shape(c) for c in cdfs))
        cdfs = jnp.stack([jnp.broadcast_to(c, shape) for c in cdfs], axis=-1)
        w = jnp.exp(self._mixing_distribution._normalized_logits())
        return jnp.sum(w * cdfs, axis=-1)
