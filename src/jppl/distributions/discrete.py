"""Discrete (integer-valued) distributions.

Class and parameter names follow NumPyro. Families that can be parameterized either by
probabilities or by logits have one class per form (``BernoulliProbs``/``BernoulliLogits``, ...)
and a factory under the family name (``Bernoulli(probs=...)`` or ``Bernoulli(logits=...)``) that
picks the class. Every such instance exposes both ``.probs`` and ``.logits``; the one not given
is derived on access.

Dtypes: draws of every distribution here are ``int32`` arrays. ``log_prob`` accepts integer
or float values and returns ``-inf`` for values outside the support (negative or non-integer
counts, indices out of range, ...). Counts such as ``total_count`` given as a Python ``int``
stay static (so ``enumerate_support`` works under ``jit``); given as arrays they are pytree
leaves.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, xlog1py, xlogy

from jppl.distributions import constraints
from jppl.distributions.distribution import Distribution
from jppl.distributions.fused import bernoulli_logits_log_prob
from jppl.distributions.special import betainc
from jppl.distributions.util import (
    betaln,
    is_concrete,
    lazy_broadcast_shape,
    logits_to_probs,
    probs_to_logits,
    promote_shapes,
    validate_sample_shape,
)

__all__ = [
    "Bernoulli",
    "BernoulliLogits",
    "BernoulliProbs",
    "BetaBinomial",
    "Binomial",
    "BinomialLogits",
    "BinomialProbs",
    "Categorical",
    "CategoricalLogits",
    "CategoricalProbs",
    "DiscreteUniform",
    "GammaPoisson",
    "Geometric",
    "GeometricLogits",
    "GeometricProbs",
    "Multinomial",
    "MultinomialLogits",
    "MultinomialProbs",
    "NegativeBinomial",
    "NegativeBinomial2",
    "NegativeBinomialLogits",
    "NegativeBinomialProbs",
    "Poisson",
    "ZeroInflatedDistribution",
    "ZeroInflatedLogits",
    "ZeroInflatedPoisson",
    "ZeroInflatedProbs",
]

_INT = jnp.int32


# -- helpers ---------------------------------------------------------------------------------
def _to_float(x):
    """``x`` as a jnp array with a floating dtype (JAX's default float for ints/bools).

    The result is never weakly typed, so draws from parameters given as Python floats reuse
    the samplers compiled for array parameters.
    """
    x = jnp.asarray(x)
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.result_type(float)
    return jnp.asarray(x, dtype=dtype)


def _count_param(x):
    """A Python ``int`` stays static; anything else becomes a jnp array."""
    if isinstance(x, int | np.integer) and not isinstance(x, bool):
        return int(x)
    return jnp.asarray(x)


def _float_value(value, *params):
    """``value`` cast to the floating dtype used for the density computation."""
    value = jnp.asarray(value)
    dtype = jnp.result_type(float, *[p for p in params if not isinstance(p, int)])
    return value.astype(dtype)


def _is_integer(x):
    return x == jnp.floor(x)


def _neg_inf_outside(mask, log_prob):
    return jnp.where(mask, log_prob, -jnp.inf)


# jitted once per shape: eager calls of the scan inside `jax.random.multinomial` would
# otherwise recompile on every draw.
_multinomial = jax.jit(jax.random.multinomial)


def _check_one_of(name: str, probs, logits) -> None:
    if (probs is None) == (logits is None):
        raise ValueError(
            f"{name}: exactly one of `probs` or `logits` must be specified "
            f"(got {'neither' if probs is None else 'both'})."
        )


def _enumerate_counts(dist: Distribution, n, expand: bool):
    """``arange(n + 1)`` shaped ``(n + 1,) + (1,) * batch_ndim`` (or expanded to the batch)."""
    if not isinstance(n, int):
        if not is_concrete(n):
            raise NotImplementedError(
                f"{type(dist).__name__}.enumerate_support needs a concrete `total_count`; pass "
                "it as a Python int to enumerate under jit."
            )
        n_np = np.asarray(n)
        n_max = int(np.max(n_np)) if n_np.size else 0
        if not np.all(n_np == n_max):
            raise NotImplementedError(
                f"{type(dist).__name__}.enumerate_support: inhomogeneous `total_count` is not "
                "supported."
            )
        n = n_max
    values = jnp.arange(n + 1, dtype=_INT).reshape((-1,) + (1,) * len(dist.batch_shape))
    if expand:
        values = jnp.broadcast_to(values, values.shape[:1] + dist.batch_shape)
    return values


def _check_count_and_float(total_count, param):
    """Broadcast a count parameter (int or array) with a float parameter.

    Returns ``(total_count, param, batch_shape)``; a Python-int count is kept as is.
    """
    total_count = _count_param(total_count)
    if isinstance(total_count, int):
        param = _to_float(param)
        return total_count, param, jnp.shape(param)
    total_count, param = promote_shapes(total_count, param)
    param = _to_float(param)
    return total_count, param, lazy_broadcast_shape(jnp.shape(total_count), jnp.shape(param))


def _log_p_log_1mp_from_logits(logits):
    """``(log p, log(1 - p))`` for ``p = sigmoid(logits)``, computed stably."""
    return -jax.nn.softplus(-logits), -jax.nn.softplus(logits)


# -- the probs and logits forms ----------------------------------------------------------------
# A family given either by probabilities or by logits has a base class with everything that does
# not depend on the form, and one class per form: ``class FooProbs(_BinaryProbs, _FooBase)``.
# The mixin stores nothing; it derives the other form and the log-probabilities from the one
# that the class's ``__init__`` stores.
class _BinaryProbs:
    """Form of a binary family given by its success probability ``probs``."""

    probs: jax.Array

    @property
    def logits(self) -> jax.Array:
        return probs_to_logits(self.probs, is_binary=True)

    def _log_p_log_q(self) -> tuple[jax.Array, jax.Array]:
        """``(log p, log(1 - p))``, each shaped like ``probs``."""
        return jnp.log(self.probs), jnp.log1p(-self.probs)


class _BinaryLogits:
    """Form of a binary family given by its success log-odds ``logits``."""

    logits: jax.Array

    @property
    def probs(self) -> jax.Array:
        return logits_to_probs(self.logits, is_binary=True)

    def _log_p_log_q(self) -> tuple[jax.Array, jax.Array]:
        """``(log p, log(1 - p))``, each shaped like ``logits``."""
        return _log_p_log_1mp_from_logits(self.logits)


class _CategoryProbs:
    """Form of a categorical family given by ``probs``: ``batch_shape + (K,)`` on the simplex."""

    probs: jax.Array

    @property
    def _num_categories(self) -> int:
        return jnp.shape(self.probs)[-1]

    @property
    def logits(self) -> jax.Array:
        return probs_to_logits(self.probs)

    def _normalized_logits(self) -> jax.Array:
        """Log-probabilities of the K categories: ``batch_shape + (K,)``."""
        return jnp.log(self.probs)


class _CategoryLogits:
    """Form of a categorical family given by unnormalized ``logits``: ``batch_shape + (K,)``."""

    logits: jax.Array

    @property
    def _num_categories(self) -> int:
        return jnp.shape(self.logits)[-1]

    @property
    def probs(self) -> jax.Array:
        return logits_to_probs(self.logits)

    def _normalized_logits(self) -> jax.Array:
        """Log-probabilities of the K categories: ``batch_shape + (K,)``."""
        return jax.nn.log_softmax(self.logits, axis=-1)


def _category_param(owner: str, name: str, x) -> jax.Array:
    """``x`` as a float array with a last (category) axis; the error names ``owner.name``."""
    x = _to_float(x)
    if jnp.ndim(x) < 1:
        raise ValueError(
            f"{owner}: `{name}` must have at least one dimension (the categories), got a scalar."
        )
    return x


# -- Bernoulli -------------------------------------------------------------------------------
class _BernoulliBase(Distribution):
    support = constraints.boolean
    has_enumerate_support = True
    probs: jax.Array

    def sample(self, key, sample_shape=()):
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        return jax.random.bernoulli(key, self.probs, shape).astype(_INT)

    @property
    def mean(self):
        return self.probs

    @property
    def variance(self):
        p = self.probs
        return p * (1.0 - p)

    def enumerate_support(self, expand=True):
        return _enumerate_counts(self, 1, expand)


class BernoulliProbs(_BinaryProbs, _BernoulliBase):
    """Bernoulli over {0, 1} with success probability ``probs`` (shape ``batch_shape``)."""

    arg_constraints = {"probs": constraints.unit_interval}

    def __init__(self, probs, *, validate_args=None):
        self.probs = _to_float(probs)
        super().__init__(jnp.shape(self.probs), validate_args=validate_args)

    def log_prob(self, value):
        x = _float_value(value, self.probs)
        ok = (x == 0) | (x == 1)
        x = jnp.where(ok, x, 0.0)
        return _neg_inf_outside(ok, xlogy(x, self.probs) + xlog1py(1.0 - x, -self.probs))

    def entropy(self):
        p = self.probs
        return -xlogy(p, p) - xlog1py(1.0 - p, -p)


class BernoulliLogits(_BinaryLogits, _BernoulliBase):
    """Bernoulli over {0, 1} with success log-odds ``logits`` (shape ``batch_shape``)."""

    arg_constraints = {"logits": constraints.real}

    def __init__(self, logits, *, validate_args=None):
        self.logits = _to_float(logits)
        super().__init__(jnp.shape(self.logits), validate_args=validate_args)

    def log_prob(self, value):
        # x * l - softplus(l) with a hand-written derivative (jppl.distributions.fused): this
        # is the hot loop of logistic regressions.
        return bernoulli_logits_log_prob(self.logits, _float_value(value, self.logits))

    def entropy(self):
        return jax.nn.softplus(self.logits) - self.probs * self.logits


def Bernoulli(probs=None, logits=None, *, validate_args=None):
    """``BernoulliProbs(probs)`` or ``BernoulliLogits(logits)``; give exactly one."""
    _check_one_of("Bernoulli", probs, logits)
    if probs is not None:
        return BernoulliProbs(probs, validate_args=validate_args)
    return BernoulliLogits(logits, validate_args=validate_args)


# -- Categorical -----------------------------------------------------------------------------
class _CategoricalBase(Distribution):
    has_enumerate_support = True
    _num_categories: int

    def _normalized_logits(self) -> jax.Array:
        raise NotImplementedError

    @property
    def support(self):  # type: ignore[override]
        return constraints.integer_interval(0, self._num_categories - 1)

    def log_prob(self, value):
        value = _float_value(value)
        k = self._num_categories
        ok = (value >= 0) & (value <= k - 1) & _is_integer(value)
        idx = jnp.where(ok, value, 0).astype(_INT)
        logp = self._normalized_logits()
        shape = lazy_broadcast_shape(jnp.shape(idx), jnp.shape(logp)[:-1])
        idx = jnp.broadcast_to(idx, shape)
        logp = jnp.broadcast_to(logp, shape + (k,))
        lp = jnp.take_along_axis(logp, idx[..., None], axis=-1)[..., 0]
        return _neg_inf_outside(ok, lp)

    def _sample(self, key, sample_shape, log_weights: jax.Array) -> jax.Array:
        """Draws given log-weights of the categories (normalized or not): Gumbel-max."""
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        return jax.random.categorical(key, log_weights, shape=shape).astype(_INT)

    @property
    def mean(self):
        """Undefined for categories (NaN, as in NumPyro), shape ``batch_shape``."""
        return jnp.full_like(self._normalized_logits()[..., 0], jnp.nan)

    @property
    def variance(self):
        return jnp.full_like(self._normalized_logits()[..., 0], jnp.nan)

    def entropy(self):
        logp = self._normalized_logits()
        p = jnp.exp(logp)
        return -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)

    def enumerate_support(self, expand=True):
        values = jnp.arange(self._num_categories, dtype=_INT)
        values = values.reshape((-1,) + (1,) * len(self.batch_shape))
        if expand:
            values = jnp.broadcast_to(values, values.shape[:1] + self.batch_shape)
        return values


class CategoricalProbs(_CategoryProbs, _CategoricalBase):
    """Categorical over ``{0, ..., K-1}``; ``probs``: ``batch_shape + (K,)`` on the simplex."""

    arg_constraints = {"probs": constraints.simplex}

    def __init__(self, probs, *, validate_args=None):
        self.probs = _category_param("CategoricalProbs", "probs", probs)
        super().__init__(jnp.shape(self.probs)[:-1], validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        return self._sample(key, sample_shape, jnp.log(self.probs))

    def entropy(self):
        return -jnp.sum(xlogy(self.probs, self.probs), axis=-1)


class CategoricalLogits(_CategoryLogits, _CategoricalBase):
    """Categorical over ``{0, ..., K-1}``; ``logits``: ``batch_shape + (K,)``, unnormalized."""

    arg_constraints = {"logits": constraints.real_vector}

    def __init__(self, logits, *, validate_args=None):
        self.logits = _category_param("CategoricalLogits", "logits", logits)
        super().__init__(jnp.shape(self.logits)[:-1], validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        return self._sample(key, sample_shape, self.logits)


def Categorical(probs=None, logits=None, *, validate_args=None):
    """``CategoricalProbs(probs)`` or ``CategoricalLogits(logits)``; give exactly one."""
    _check_one_of("Categorical", probs, logits)
    if probs is not None:
        return CategoricalProbs(probs, validate_args=validate_args)
    return CategoricalLogits(logits, validate_args=validate_args)


# -- Binomial --------------------------------------------------------------------------------
class _BinomialBase(Distribution):
    has_enumerate_support = True
    total_count: int | jax.Array
    probs: jax.Array

    @property
    def support(self):  # type: ignore[override]
        return constraints.integer_interval(0, self.total_count)

    def _log_p_log_q(self) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError

    def sample(self, key, sample_shape=()):
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        n = jnp.broadcast_to(_to_float(self.total_count), shape)
        p = jnp.broadcast_to(self.probs, shape)
        return jax.random.binomial(key, n, p, shape).astype(_INT)

    def log_prob(self, value):
        n = self.total_count
        x = _float_value(value, self.probs)
        ok = (x >= 0) & (x <= n) & _is_integer(x)
        x = jnp.where(ok, x, 0.0)
        log_p, log_q = self._log_p_log_q()
        log_comb = gammaln(n + 1.0) - gammaln(x + 1.0) - gammaln(n - x + 1.0)
        lp = log_comb + jnp.where(x > 0, x * log_p, 0.0)
        lp = lp + jnp.where(n - x > 0, (n - x) * log_q, 0.0)
        return _neg_inf_outside(ok, lp)

    @property
    def mean(self):
        return self.total_count * self.probs

    @property
    def variance(self):
        p = self.probs
        return self.total_count * p * (1.0 - p)

    def enumerate_support(self, expand=True):
        return _enumerate_counts(self, self.total_count, expand)


class BinomialProbs(_BinaryProbs, _BinomialBase):
    """Number of successes in ``total_count`` trials with success probability ``probs``."""

    arg_constraints = {
        "total_count": constraints.nonnegative_integer,
        "probs": constraints.unit_interval,
    }

    def __init__(self, probs, total_count=1, *, validate_args=None):
        self.total_count, self.probs, batch_shape = _check_count_and_float(total_count, probs)
        super().__init__(batch_shape, validate_args=validate_args)


class BinomialLogits(_BinaryLogits, _BinomialBase):
    """Number of successes in ``total_count`` trials with success log-odds ``logits``."""

    arg_constraints = {
        "total_count": constraints.nonnegative_integer,
        "logits": constraints.real,
    }

    def __init__(self, logits, total_count=1, *, validate_args=None):
        self.total_count, self.logits, batch_shape = _check_count_and_float(total_count, logits)
        super().__init__(batch_shape, validate_args=validate_args)


def Binomial(total_count=1, probs=None, logits=None, *, validate_args=None):
    """``BinomialProbs`` or ``BinomialLogits``; give exactly one of ``probs``/``logits``."""
    _check_one_of("Binomial", probs, logits)
    if probs is not None:
        return BinomialProbs(probs, total_count, validate_args=validate_args)
    return BinomialLogits(logits, total_count, validate_args=validate_args)


# -- Multinomial -----------------------------------------------------------------------------
class _MultinomialBase(Distribution):
    total_count: int | jax.Array
    probs: jax.Array

    def __init__(self, param: jax.Array, total_count, validate_args):
        """Shapes from the category parameter ``param`` (``(..., K)``) and ``total_count``."""
        self.total_count = _count_param(total_count)
        batch_shape = lazy_broadcast_shape(jnp.shape(self.total_count), jnp.shape(param)[:-1])
        super().__init__(batch_shape, jnp.shape(param)[-1:], validate_args=validate_args)

    def _normalized_logits(self) -> jax.Array:
        raise NotImplementedError

    @property
    def support(self):  # type: ignore[override]
        return constraints.multinomial(self.total_count)

    def sample(self, key, sample_shape=()):
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        n = jnp.broadcast_to(_to_float(self.total_count), shape)
        p = jnp.broadcast_to(self.probs, shape + self.event_shape)
        return _multinomial(key, n, p).astype(_INT)

    def log_prob(self, value):
        n = self.total_count
        logp = self._normalized_logits()
        x = _float_value(value, logp)
        ok = jnp.all((x >= 0) & _is_integer(x), axis=-1) & (jnp.sum(x, axis=-1) == n)
        x = jnp.where(ok[..., None], x, 0.0)
        terms = jnp.where(x > 0, x * logp, 0.0)
        lp = gammaln(n + 1.0) - jnp.sum(gammaln(x + 1.0), axis=-1) + jnp.sum(terms, axis=-1)
        return _neg_inf_outside(ok, lp)

    @property
    def mean(self):
        n = jnp.asarray(self.total_count)[..., None]
        return n * self.probs

    @property
    def variance(self):
        n = jnp.asarray(self.total_count)[..., None]
        p = self.probs
        return n * p * (1.0 - p)


class MultinomialProbs(_CategoryProbs, _MultinomialBase):
    """Counts of ``total_count`` draws over K categories; ``probs``: ``batch_shape + (K,)``.

    Draws have shape ``sample_shape + batch_shape + (K,)`` and sum to ``total_count``.
    ``total_count_max`` is accepted for NumPyro compatibility and ignored.
    """

    arg_constraints = {
        "total_count": constraints.nonnegative_integer,
        "probs": constraints.simplex,
    }

    def __init__(self, probs, total_count=1, *, total_count_max=None, validate_args=None):
        self.probs = _category_param("MultinomialProbs", "probs", probs)
        super().__init__(self.probs, total_count, validate_args)


class MultinomialLogits(_CategoryLogits, _MultinomialBase):
    """Counts of ``total_count`` draws over K categories; ``logits``: ``batch_shape + (K,)``.

    ``total_count_max`` is accepted for NumPyro compatibility and ignored.
    """

    arg_constraints = {
        "total_count": constraints.nonnegative_integer,
        "logits": constraints.real_vector,
    }

    def __init__(self, logits, total_count=1, *, total_count_max=None, validate_args=None):
        self.logits = _category_param("MultinomialLogits", "logits", logits)
        super().__init__(self.logits, total_count, validate_args)


def Multinomial(
    total_count=1, probs=None, logits=None, *, total_count_max=None, validate_args=None
):
    """``MultinomialProbs`` or ``MultinomialLogits``; give exactly one of ``probs``/``logits``."""
    _check_one_of("Multinomial", probs, logits)
    if probs is not None:
        return MultinomialProbs(probs, total_count, validate_args=validate_args)
    return MultinomialLogits(logits, total_count, validate_args=validate_args)


# -- Geometric -------------------------------------------------------------------------------
class _GeometricBase(Distribution):
    support = constraints.nonnegative_integer
    probs: jax.Array

    def _log_p_log_q(self) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError

    def sample(self, key, sample_shape=()):
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        u = jax.random.uniform(key, shape, dtype=self.probs.dtype)
        _, log_q = self._log_p_log_q()
        # Inversion: the number of failures is floor(log(1 - u) / log(1 - p)).
        return jnp.floor(jnp.log1p(-u) / log_q).astype(_INT)

    def log_prob(self, value):
        log_p, log_q = self._log_p_log_q()
        x = _float_value(value, log_p)
        ok = (x >= 0) & _is_integer(x)
        x = jnp.where(ok, x, 0.0)
        return _neg_inf_outside(ok, log_p + jnp.where(x > 0, x * log_q, 0.0))

    @property
    def mean(self):
        p = self.probs
        return (1.0 - p) / p

    @property
    def variance(self):
        p = self.probs
        return (1.0 - p) / (p * p)

    def entropy(self):
        p = self.probs
        return -(xlog1py(1.0 - p, -p) + xlogy(p, p)) / p


class GeometricProbs(_BinaryProbs, _GeometricBase):
    """Number of failures before the first success; success probability ``probs``."""

    arg_constraints = {"probs": constraints.unit_interval}

    def __init__(self, probs, *, validate_args=None):
        self.probs = _to_float(probs)
        super().__init__(jnp.shape(self.probs), validate_args=validate_args)


class GeometricLogits(_BinaryLogits, _GeometricBase):
    """Number of failures before the first success; success log-odds ``logits``."""

    arg_constraints = {"logits": constraints.real}

    def __init__(self, logits, *, validate_args=None):
        self.logits = _to_float(logits)
        super().__init__(jnp.shape(self.logits), validate_args=validate_args)


def Geometric(probs=None, logits=None, *, validate_args=None):
    """``GeometricProbs`` or ``GeometricLogits``; give exactly one of ``probs``/``logits``."""
    _check_one_of("Geometric", probs, logits)
    if probs is not None:
        return GeometricProbs(probs, validate_args=validate_args)
    return GeometricLogits(logits, validate_args=validate_args)


# -- Poisson family --------------------------------------------------------------------------
class Poisson(Distribution):
    """Poisson counts with mean ``rate`` (shape ``batch_shape``).

    ``is_sparse`` is accepted for NumPyro compatibility and has no effect.
    """

    arg_constraints = {"rate": constraints.nonnegative}
    support = constraints.nonnegative_integer

    def __init__(self, rate, *, is_sparse: bool = False, validate_args=None):
        self.rate = _to_float(rate)
        self.is_sparse = bool(is_sparse)
        super().__init__(jnp.shape(self.rate), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        return jax.random.poisson(key, jnp.broadcast_to(self.rate, shape), shape, dtype=_INT)

    def log_prob(self, value):
        x = _float_value(value, self.rate)
        ok = (x >= 0) & _is_integer(x)
        x = jnp.where(ok, x, 0.0)
        return _neg_inf_outside(ok, xlogy(x, self.rate) - self.rate - gammaln(x + 1.0))

    def cdf(self, value):
        x = jnp.floor(_float_value(value, self.rate))
        cdf = jax.scipy.special.gammaincc(jnp.maximum(x, 0.0) + 1.0, self.rate)
        return jnp.where(x < 0, 0.0, cdf)

    @property
    def mean(self):
        return self.rate

    @property
    def variance(self):
        return self.rate


class GammaPoisson(Distribution):
    """Poisson with a ``Gamma(concentration, rate)`` distributed mean (negative binomial).

    ``P(k) = C(k + a - 1, k) (b / (1 + b))^a (1 / (1 + b))^k`` with ``a = concentration``,
    ``b = rate``; mean ``a / b``, variance ``a / b + a / b^2``.
    """

    arg_constraints = {
        "concentration": constraints.positive,
        "rate": constraints.positive,
    }
    support = constraints.nonnegative_integer

    def __init__(self, concentration, rate=1.0, *, validate_args=None):
        concentration, rate = promote_shapes(concentration, rate)
        self.concentration, self.rate = _to_float(concentration), _to_float(rate)
        batch_shape = lazy_broadcast_shape(jnp.shape(self.concentration), jnp.shape(self.rate))
        super().__init__(batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        key_gamma, key_poisson = jax.random.split(key)
        a = jnp.broadcast_to(self.concentration, shape)
        lam = jax.random.gamma(key_gamma, a, shape, dtype=a.dtype) / self.rate
        return jax.random.poisson(key_poisson, lam, shape, dtype=_INT)

    def _log_norm(self, x):
        a = self.concentration
        return gammaln(x + a) - gammaln(a) - gammaln(x + 1.0)

    def log_prob(self, value):
        a, b = self.concentration, self.rate
        x = _float_value(value, a, b)
        ok = (x >= 0) & _is_integer(x)
        x = jnp.where(ok, x, 0.0)
        lp = self._log_norm(x) + a * jnp.log(b) - (a + x) * jnp.log1p(b)
        return _neg_inf_outside(ok, lp)

    def _stop_prob(self):
        """``b / (1 + b)``: the probability of the event that ends the negative binomial
        count (written so that ``b = inf`` gives 1)."""
        return 1.0 / (1.0 + 1.0 / self.rate)

    def cdf(self, value):
        """``P(X <= value) = I_s(concentration, floor(value) + 1)`` (regularized incomplete
        beta, ``s = rate / (1 + rate)``); 0 below 0. Broadcasts ``value`` with
        ``batch_shape``. Differentiable in the rate (or probs / logits) and in
        ``concentration`` / ``total_count`` (``special.betainc``'s shape derivatives)."""
        a = self.concentration
        k = jnp.floor(_float_value(value, a, self.rate))
        cdf = betainc(a, jnp.maximum(k, 0.0) + 1.0, self._stop_prob())
        return jnp.where(k < 0, 0.0, cdf)

    @property
    def mean(self):
        return self.concentration / self.rate

    @property
    def variance(self):
        m = self.concentration / self.rate
        return m + m / self.rate


class NegativeBinomial2(GammaPoisson):
    """Negative binomial with ``mean`` and ``concentration`` (variance ``m + m^2 / c``).

    Equivalent to ``GammaPoisson(concentration, rate=concentration / mean)``. The density is
    written in ``mean`` (``mean = 0``, e.g. an underflowed ``exp``, is the point mass at 0
    with finite gradients, instead of ``inf - inf`` in the rate).
    """

    arg_constraints = {
        "mean": constraints.positive,
        "concentration": constraints.positive,
    }

    def __init__(self, mean, concentration, *, validate_args=None):
        mean, concentration = promote_shapes(_to_float(mean), _to_float(concentration))
        self._mean = mean
        super().__init__(concentration, concentration / mean, validate_args=validate_args)

    def log_prob(self, value):
        m, c = self._mean, self.concentration
        x = _float_value(value, m, c)
        ok = (x >= 0) & _is_integer(x)
        x = jnp.where(ok, x, 0.0)
        log_total = jnp.log(c + m)
        # x log m only where x > 0: at x = 0 the term (and its gradient in m) is 0, also at m = 0
        x_log_m = jnp.where(x > 0, x * jnp.log(jnp.where(x > 0, m, 1.0)), 0.0)
        lp = self._log_norm(x) + c * (jnp.log(c) - log_total) + x_log_m - x * log_total
        return _neg_inf_outside(ok, lp)

    @property
    def mean(self):
        return jnp.broadcast_to(self._mean, self.batch_shape)

    @property
    def variance(self):
        m = self.mean
        return m + m * m / self.concentration

    def _check_args(self) -> None:
        # `mean` is a property here (not an attribute), so check it from the stored arrays.
        super()._check_args()
        if self._invalid_args_message is not None:
            return
        if not is_concrete(self._mean):
            return
        mean = np.asarray(self._mean)
        if not np.all(mean > 0):
            self._report_invalid_args(
                f"{type(self).__name__}: parameter `mean` must satisfy the constraint positive, "
                f"but got invalid value(s) {np.ravel(mean[~(mean > 0)])[:5]}"
            )


class _NegativeBinomialBase(GammaPoisson):
    """``GammaPoisson(total_count, rate=(1 - p) / p)``, with the density written in ``p``."""

    total_count: jax.Array

    def _log_p_log_q(self) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError

    def log_prob(self, value):
        n = self.total_count
        log_p, log_q = self._log_p_log_q()
        x = _float_value(value, n, log_p)
        ok = (x >= 0) & _is_integer(x)
        x = jnp.where(ok, x, 0.0)
        lp = self._log_norm(x) + n * log_q + jnp.where(x > 0, x * log_p, 0.0)
        return _neg_inf_outside(ok, lp)

    def _stop_prob(self):
        # 1 - probs from the stored form, not from rate = 1 / probs - 1
        return jnp.exp(self._log_p_log_q()[1])


class NegativeBinomialProbs(_BinaryProbs, _NegativeBinomialBase):
    """Successes (each with probability ``probs``) before the ``total_count``-th failure.

    ``P(k) = C(k + n - 1, k) p^k (1 - p)^n`` with ``n = total_count``, ``p = probs``; mean
    ``n p / (1 - p)``. Equivalent to ``GammaPoisson(n, rate=(1 - p) / p)``.
    """

    arg_constraints = {
        "total_count": constraints.positive,
        "probs": constraints.unit_interval,
    }

    def __init__(self, total_count, probs, *, validate_args=None):
        total_count, probs = promote_shapes(_to_float(total_count), _to_float(probs))
        self.total_count, self.probs = total_count, probs
        super().__init__(total_count, 1.0 / probs - 1.0, validate_args=validate_args)


class NegativeBinomialLogits(_BinaryLogits, _NegativeBinomialBase):
    """As :class:`NegativeBinomialProbs` with ``probs = sigmoid(logits)``."""

    arg_constraints = {
        "total_count": constraints.positive,
        "logits": constraints.real,
    }

    def __init__(self, total_count, logits, *, validate_args=None):
        total_count, logits = promote_shapes(_to_float(total_count), _to_float(logits))
        self.total_count, self.logits = total_count, logits
        super().__init__(total_count, jnp.exp(-logits), validate_args=validate_args)


def NegativeBinomial(total_count, probs=None, logits=None, *, validate_args=None):
    """``NegativeBinomialProbs`` or ``NegativeBinomialLogits``; give exactly one form."""
    _check_one_of("NegativeBinomial", probs, logits)
    if probs is not None:
        return NegativeBinomialProbs(total_count, probs, validate_args=validate_args)
    return NegativeBinomialLogits(total_count, logits, validate_args=validate_args)


# -- BetaBinomial ----------------------------------------------------------------------------
class BetaBinomial(Distribution):
    """Binomial with a ``Beta(concentration1, concentration0)`` success probability."""

    arg_constraints = {
        "concentration1": constraints.positive,
        "concentration0": constraints.positive,
        "total_count": constraints.nonnegative_integer,
    }
    has_enumerate_support = True

    def __init__(self, concentration1, concentration0, total_count=1, *, validate_args=None):
        total_count = _count_param(total_count)
        if isinstance(total_count, int):
            c1, c0 = promote_shapes(concentration1, concentration0)
        else:
            c1, c0, total_count = promote_shapes(concentration1, concentration0, total_count)
        self.concentration1, self.concentration0 = _to_float(c1), _to_float(c0)
        self.total_count = total_count
        batch_shape = lazy_broadcast_shape(
            jnp.shape(self.concentration1), jnp.shape(self.concentration0), jnp.shape(total_count)
        )
        super().__init__(batch_shape, validate_args=validate_args)

    @property
    def support(self):  # type: ignore[override]
        return constraints.integer_interval(0, self.total_count)

    def sample(self, key, sample_shape=()):
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        key_beta, key_binom = jax.random.split(key)
        a = jnp.broadcast_to(self.concentration1, shape)
        b = jnp.broadcast_to(self.concentration0, shape)
        p = jax.random.beta(key_beta, a, b, shape, dtype=a.dtype)
        n = jnp.broadcast_to(_to_float(self.total_count), shape)
        return jax.random.binomial(key_binom, n, p, shape).astype(_INT)

    def log_prob(self, value):
        a, b, n = self.concentration1, self.concentration0, self.total_count
        x = _float_value(value, a, b)
        ok = (x >= 0) & (x <= n) & _is_integer(x)
        x = jnp.where(ok, x, 0.0)
        log_comb = gammaln(n + 1.0) - gammaln(x + 1.0) - gammaln(n - x + 1.0)
        lp = log_comb + betaln(x + a, n - x + b) - betaln(a, b)
        return _neg_inf_outside(ok, lp)

    @property
    def mean(self):
        a, b = self.concentration1, self.concentration0
        return self.total_count * a / (a + b)

    @property
    def variance(self):
        a, b, n = self.concentration1, self.concentration0, self.total_count
        s = a + b
        return n * a * b * (s + n) / (s * s * (s + 1.0))

    def enumerate_support(self, expand=True):
        return _enumerate_counts(self, self.total_count, expand)


# -- Zero inflation --------------------------------------------------------------------------
class _ZeroInflatedBase(Distribution):
    base_dist: Distribution

    def _init_base(self, base_dist: Distribution, gate_param, validate_args):
        if base_dist.event_shape != ():
            raise ValueError(
                f"{type(self).__name__}: base_dist must be univariate, got event_shape "
                f"{base_dist.event_shape}."
            )
        if not base_dist.is_discrete:
            raise ValueError(f"{type(self).__name__}: base_dist must be discrete.")
        self.base_dist = base_dist
        batch_shape = lazy_broadcast_shape(jnp.shape(gate_param), base_dist.batch_shape)
        Distribution.__init__(self, batch_shape, validate_args=validate_args)

    @property
    def support(self):  # type: ignore[override]
        return self.base_dist.support

    @property
    def has_enumerate_support(self):  # type: ignore[override]
        return self.base_dist.has_enumerate_support

    def enumerate_support(self, expand=True):
        # zero is in every base support here (a count), so the support is the base's
        base = self.base_dist
        if base.batch_shape != self.batch_shape:
            base = base.expand(self.batch_shape)
        return base.enumerate_support(expand=expand)

    def _log_gate(self):
        """``(log gate, log(1 - gate))``."""
        raise NotImplementedError

    def sample(self, key, sample_shape=()):
        sample_shape = validate_sample_shape(sample_shape)
        shape = sample_shape + self.batch_shape
        key_gate, key_base = jax.random.split(key)
        zero = jax.random.bernoulli(key_gate, self.gate, shape)
        base = self.base_dist
        if base.batch_shape != self.batch_shape:
            base = base.expand(self.batch_shape)
        x = base.sample(key_base, sample_shape)
        return jnp.where(zero, jnp.zeros((), x.dtype), x)

    def log_prob(self, value):
        log_gate, log_not_gate = self._log_gate()
        base_lp = self.base_dist.log_prob(value)
        lp_nonzero = log_not_gate + base_lp
        lp_zero = jnp.logaddexp(log_gate, lp_nonzero)
        return jnp.where(jnp.asarray(value) == 0, lp_zero, lp_nonzero)

    @property
    def mean(self):
        return (1.0 - self.gate) * self.base_dist.mean

    @property
    def variance(self):
        g = self.gate
        m, v = self.base_dist.mean, self.base_dist.variance
        return (1.0 - g) * (v + m * m) - ((1.0 - g) * m) ** 2


class ZeroInflatedProbs(_ZeroInflatedBase):
    """With probability ``gate`` a zero, otherwise a draw from the discrete ``base_dist``."""

    arg_constraints = {"gate": constraints.unit_interval}

    def __init__(self, base_dist: Distribution, gate, *, validate_args=None):
        self.gate = _to_float(gate)
        self._init_base(base_dist, self.gate, validate_args)

    @property
    def gate_logits(self):
        return probs_to_logits(self.gate, is_binary=True)

    def _log_gate(self):
        return jnp.log(self.gate), jnp.log1p(-self.gate)


class ZeroInflatedLogits(_ZeroInflatedBase):
    """As :class:`ZeroInflatedProbs` with ``gate = sigmoid(gate_logits)``."""

    arg_constraints = {"gate_logits": constraints.real}

    def __init__(self, base_dist: Distribution, gate_logits, *, validate_args=None):
        self.gate_logits = _to_float(gate_logits)
        self._init_base(base_dist, self.gate_logits, validate_args)

    @property
    def gate(self):
        return logits_to_probs(self.gate_logits, is_binary=True)

    def _log_gate(self):
        return _log_p_log_1mp_from_logits(self.gate_logits)


def ZeroInflatedDistribution(base_dist, *, gate=None, gate_logits=None, validate_args=None):
    """``ZeroInflatedProbs`` or ``ZeroInflatedLogits``; give exactly one of the gate forms."""
    if (gate is None) == (gate_logits is None):
        raise ValueError(
            "ZeroInflatedDistribution: exactly one of `gate` or `gate_logits` must be specified."
        )
    if gate is not None:
        return ZeroInflatedProbs(base_dist, gate, validate_args=validate_args)
    return ZeroInflatedLogits(base_dist, gate_logits, validate_args=validate_args)


class ZeroInflatedPoisson(ZeroInflatedProbs):
    """Zero with probability ``gate``, else ``Poisson(rate)``."""

    arg_constraints = {"gate": constraints.unit_interval, "rate": constraints.positive}
    support = constraints.nonnegative_integer

    def __init__(self, gate, rate=1.0, *, validate_args=None):
        gate, rate = promote_shapes(_to_float(gate), _to_float(rate))
        self.rate = rate
        super().__init__(Poisson(rate), gate, validate_args=validate_args)


# -- DiscreteUniform -------------------------------------------------------------------------
class DiscreteUniform(Distribution):
    """Uniform over the integers ``low, low + 1, ..., high`` (both ends included)."""

    arg_constraints = {"low": constraints.dependent, "high": constraints.dependent}
    has_enumerate_support = True

    def __init__(self, low=0, high=1, *, validate_args=None):
        low, high = _count_param(low), _count_param(high)
        if not (isinstance(low, int) and isinstance(high, int)):
            low, high = promote_shapes(low, high)
        self.low, self.high = low, high
        super().__init__(
            lazy_broadcast_shape(jnp.shape(low), jnp.shape(high)), validate_args=validate_args
        )

    @property
    def support(self):  # type: ignore[override]
        return constraints.integer_interval(self.low, self.high)

    def sample(self, key, sample_shape=()):
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        low = jnp.asarray(self.low).astype(_INT)
        high = jnp.asarray(self.high).astype(_INT)
        return jax.random.randint(key, shape, low, high + 1, dtype=_INT)

    def log_prob(self, value):
        x = _float_value(value)
        ok = (x >= self.low) & (x <= self.high) & _is_integer(x)
        width = _to_float(jnp.asarray(self.high) - jnp.asarray(self.low) + 1)
        return _neg_inf_outside(ok, -jnp.log(width))

    @property
    def mean(self):
        low, high = _to_float(self.low), _to_float(self.high)
        return (low + high) / 2.0

    @property
    def variance(self):
        width = _to_float(jnp.asarray(self.high) - jnp.asarray(self.low) + 1)
        return (width * width - 1.0) / 12.0

    def entropy(self):
        width = _to_float(jnp.asarray(self.high) - jnp.asarray(self.low) + 1)
        return jnp.log(width)

    def cdf(self, value):
        """``P(X <= value) = (floor(value) - low + 1) / (high - low + 1)``, clipped to
        ``[0, 1]``; broadcasts ``value`` with ``batch_shape``."""
        low, high = _to_float(self.low), _to_float(self.high)
        k = jnp.floor(_float_value(value, low, high))
        return jnp.clip((k - low + 1.0) / (high - low + 1.0), 0.0, 1.0)

    def icdf(self, q):
        """Smallest support point ``k`` with ``cdf(k) >= q``, as a float (``low + ceil(q n) -
        1``, ``n = high - low + 1``, corrected where ``q n`` rounds up past an integer);
        ``q = 0`` gives ``low`` (scipy's ``randint.ppf`` gives ``low - 1``), ``q`` outside
        ``[0, 1]`` gives ``nan``."""
        low, high = _to_float(self.low), _to_float(self.high)
        q = _float_value(q, low, high)
        n = high - low + 1.0
        k = jnp.maximum(jnp.ceil(q * n) - 1.0, 0.0)
        # q * n can round up past an integer (0.3 * 10 > 3): step back where k - 1 suffices
        k = jnp.where((k > 0) & (k / n >= q), k - 1.0, k)
        return jnp.where((q >= 0) & (q <= 1), low + k, jnp.nan)

    def enumerate_support(self, expand=True):
        low, high = self.low, self.high
        if not (isinstance(low, int) and isinstance(high, int)):
            if not (is_concrete(low) and is_concrete(high)):
                raise NotImplementedError(
                    "DiscreteUniform.enumerate_support needs concrete `low` and `high`; pass "
                    "them as Python ints to enumerate under jit."
                )
            low_np, high_np = np.asarray(low), np.asarray(high)
            if not (np.all(low_np == low_np.min()) and np.all(high_np == high_np.max())):
                raise NotImplementedError(
                    "DiscreteUniform.enumerate_support: inhomogeneous `low`/`high` are not "
                    "supported."
                )
            low, high = int(low_np.min()), int(high_np.max())
        values = jnp.arange(low, high + 1, dtype=_INT)
        values = values.reshape((-1,) + (1,) * len(self.batch_shape))
        if expand:
            values = jnp.broadcast_to(values, values.shape[:1] + self.batch_shape)
        return values
