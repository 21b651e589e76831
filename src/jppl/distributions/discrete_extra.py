"""More count distributions: hurdles, compound (conjugate) counts, ordinal and relaxed binaries.

Names, argument order and defaults follow NumPyro 0.22:

- hurdles: ``HurdleProbs(base_dist, gate)``, ``HurdleLogits(base_dist, gate_logits)``, the
  factory ``HurdleDistribution(base_dist, *, gate=None, gate_logits=None)``,
  ``HurdlePoisson(gate, rate=1.0)``, ``HurdleNegativeBinomial2(gate, mean, concentration)``
  (a factory returning a ``HurdleProbs``), ``HurdleGamma(gate, concentration, rate=1.0)``,
  ``HurdleLogNormal(gate, loc=0.0, scale=1.0)``. ``gate`` is the probability of a zero.
- ``ZeroInflatedNegativeBinomial2(mean, concentration, *, gate=None, gate_logits=None)``;
- ``BetaNegativeBinomial(concentration1, concentration0, n)``;
- ``DirichletMultinomial(concentration, total_count=1, *, total_count_max=None)``;
- ``OrderedLogistic(predictor, cutpoints)`` (a ``CategoricalProbs``);
- ``RelaxedBernoulliLogits(temperature, logits)`` and the factory
  ``RelaxedBernoulli(temperature, probs=None, logits=None)`` (the binary Concrete law).

Integer draws are ``int32`` and ``log_prob`` is ``-inf`` off the support, as in
:mod:`jppl.distributions.discrete`.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from jppl.distributions import constraints
from jppl.distributions.continuous import Gamma, Logistic, LogNormal
from jppl.distributions.discrete import (
    CategoricalProbs,
    MultinomialProbs,
    NegativeBinomial2,
    Poisson,
    ZeroInflatedDistribution,
    _to_float,
)
from jppl.distributions.distribution import Distribution
from jppl.distributions.transformed import TransformedDistribution
from jppl.distributions.transforms import SigmoidTransform
from jppl.distributions.util import (
    betaln,
    is_concrete,
    lazy_broadcast_shape,
    logits_to_probs,
    probs_to_logits,
    validate_sample_shape,
)

__all__ = [
    "BetaNegativeBinomial",
    "DirichletMultinomial",
    "HurdleDistribution",
    "HurdleGamma",
    "HurdleLogNormal",
    "HurdleLogits",
    "HurdleNegativeBinomial2",
    "HurdlePoisson",
    "HurdleProbs",
    "OrderedLogistic",
    "RelaxedBernoulli",
    "RelaxedBernoulliLogits",
    "ZeroInflatedNegativeBinomial2",
]

_INT = jnp.int32
_LOG_2 = math.log(2.0)


def _broadcast_floats(*params) -> tuple[tuple[int, ...], list[jax.Array]]:
    """Float arrays of one dtype broadcast to their common shape, and that shape."""
    arrays = [_to_float(p) for p in params]
    dtype = jnp.result_type(*arrays)
    shape = lazy_broadcast_shape(*(jnp.shape(a) for a in arrays))
    return shape, [jnp.broadcast_to(a.astype(dtype), shape) for a in arrays]


def _log1mexp(x: jax.Array) -> jax.Array:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate near 0 and for very negative ``x``."""
    return jnp.where(
        x > -_LOG_2,
        jnp.log(-jnp.expm1(jnp.minimum(x, -0.0))),
        jnp.log1p(-jnp.exp(jnp.minimum(x, -_LOG_2))),
    )


def _count_value(value, *params) -> jax.Array:
    """A count ``value`` as a float array (the dtype of the density computation)."""
    dtype = jnp.result_type(float, *params)
    return jnp.asarray(value).astype(dtype)


# -- Hurdles ----------------------------------------------------------------------------------
class HurdleProbs(Distribution):
    """A zero with probability ``gate``; otherwise a strictly positive draw from ``base_dist``.

    For a discrete ``base_dist`` (``B`` its pmf) the positive part is zero-truncated:
    ``P(0) = gate`` and ``P(k) = (1 - gate) B(k) / (1 - B(0))`` for ``k >= 1``. For a
    continuous base on the positive reals, ``P(0) = gate`` and the density at ``x > 0`` is
    ``(1 - gate) b(x)``. Unlike zero inflation, every zero comes from the gate.

    ``base_dist``: univariate (event shape ``()``); ``gate``: in ``[0, 1]``, broadcastable with
    the base batch shape; ``batch_shape`` is their broadcast. The support is the base's; a
    base that enumerates its support (e.g. ``Binomial``) makes the hurdle enumerable too.
    Discrete draws of the positive part are by rejection (redraw zeros), so they slow down
    as ``B(0)`` nears 1.
    """

    arg_constraints = {"gate": constraints.unit_interval}
    has_rsample = False

    def __init__(self, base_dist: Distribution, gate, *, validate_args=None):
        gate = _to_float(gate)
        batch_shape = self._init_hurdle(base_dist, jnp.shape(gate))
        self.gate = jnp.broadcast_to(gate, batch_shape)
        super().__init__(batch_shape, validate_args=validate_args)

    def _init_hurdle(self, base_dist: Distribution, gate_shape: tuple[int, ...]):
        """Check and store ``base_dist``; return the batch shape."""
        name = type(self).__name__
        if not isinstance(base_dist, Distribution):
            raise TypeError(f"{name}: `base_dist` must be a Distribution, got {base_dist!r}.")
        if base_dist.event_shape != ():
            raise ValueError(
                f"{name}: `base_dist` must be univariate (event_shape ()), got event_shape "
                f"{base_dist.event_shape}."
            )
        if base_dist.support is None:
            raise ValueError(f"{name}: `base_dist` has no support.")
        self.base_dist = base_dist
        self._is_discrete = bool(base_dist.support.is_discrete)
        return lazy_broadcast_shape(gate_shape, base_dist.batch_shape)

    # -- support -----------------------------------------------------------------------------
    @property
    def support(self):  # type: ignore[override]
        return self.base_dist.support

    @property
    def has_enumerate_support(self):  # type: ignore[override]
        return self.base_dist.has_enumerate_support

    def enumerate_support(self, expand: bool = True):
        """The base's support values (zero included): ``(n,) + batch_shape`` if ``expand``."""
        return self._base().enumerate_support(expand=expand)

    # -- helpers -----------------------------------------------------------------------------
    def _base(self) -> Distribution:
        """``base_dist`` expanded to this batch shape."""
        base = self.base_dist
        return base if base.batch_shape == self.batch_shape else base.expand(self.batch_shape)

    def _log_gate(self) -> tuple[jax.Array, jax.Array]:
        """``(log gate, log(1 - gate))``, each ``batch_shape``."""
        return jnp.log(self.gate), jnp.log1p(-self.gate)

    def _base_log_p0(self) -> jax.Array:
        """``log B(0)`` of a discrete base, shape ``base batch_shape``."""
        return self.base_dist.log_prob(jnp.zeros((), _INT))

    # -- sampling and density ----------------------------------------------------------------
    def sample(self, key, sample_shape=()):
        sample_shape = validate_sample_shape(sample_shape)
        key_gate, key_base = jax.random.split(key)
        zero = jax.random.bernoulli(key_gate, self.gate, sample_shape + self.batch_shape)
        base = self._base()
        x = base.sample(key_base, sample_shape)
        if self._is_discrete:
            # zero-truncation by rejection; entries the gate zeroes need no redraw
            def redraw(state):
                k, cur = state
                k, sub = jax.random.split(k)
                return k, jnp.where(cur == 0, base.sample(sub, sample_shape), cur)

            _, x = jax.lax.while_loop(
                lambda state: jnp.any((state[1] == 0) & ~zero), redraw, (key_base, x)
            )
        return jnp.where(zero, jnp.zeros((), x.dtype), x)

    def log_prob(self, value):
        """``log gate`` at zero, else ``log(1 - gate) + log B(value) [- log(1 - B(0))]``.

        ``value``: ``sample_shape + batch_shape`` (broadcastable); returns that shape.
        """
        value = jnp.asarray(value)
        log_gate, log_not_gate = self._log_gate()
        is_zero = value == 0
        # the base density may be undefined at 0 (Gamma): evaluate it at 1 there instead
        safe = jnp.where(is_zero, jnp.ones((), value.dtype), value)
        lp = log_not_gate + self.base_dist.log_prob(safe)
        if self._is_discrete:
            lp = lp - _log1mexp(self._base_log_p0())
        return jnp.where(is_zero, log_gate, lp)

    @property
    def mean(self):
        m = self.base_dist.mean
        if self._is_discrete:
            m = m / -jnp.expm1(self._base_log_p0())
        return (1.0 - self.gate) * m

    @property
    def variance(self):
        base = self.base_dist
        second = base.variance + base.mean**2
        if self._is_discrete:
            second = second / -jnp.expm1(self._base_log_p0())
        return (1.0 - self.gate) * second - self.mean**2


class HurdleLogits(HurdleProbs):
    """As :class:`HurdleProbs` with ``gate = sigmoid(gate_logits)`` (log-odds of a zero)."""

    arg_constraints = {"gate_logits": constraints.real}

    def __init__(self, base_dist: Distribution, gate_logits, *, validate_args=None):
        gate_logits = _to_float(gate_logits)
        batch_shape = self._init_hurdle(base_dist, jnp.shape(gate_logits))
        self.gate_logits = jnp.broadcast_to(gate_logits, batch_shape)
        self.gate = logits_to_probs(self.gate_logits, is_binary=True)
        Distribution.__init__(self, batch_shape, validate_args=validate_args)

    def _log_gate(self):
        return -jax.nn.softplus(-self.gate_logits), -jax.nn.softplus(self.gate_logits)


def HurdleDistribution(
    base_dist: Distribution, *, gate=None, gate_logits=None, validate_args=None
) -> HurdleProbs:
    """``HurdleProbs(base_dist, gate)`` or ``HurdleLogits(base_dist, gate_logits)``.

    Give exactly one of ``gate`` (probability of a zero) and ``gate_logits``.
    """
    if (gate is None) == (gate_logits is None):
        raise ValueError(
            "HurdleDistribution: exactly one of `gate` or `gate_logits` must be specified "
            f"(got {'neither' if gate is None else 'both'})."
        )
    if gate is not None:
        return HurdleProbs(base_dist, gate, validate_args=validate_args)
    return HurdleLogits(base_dist, gate_logits, validate_args=validate_args)


class HurdlePoisson(HurdleProbs):
    """Zero with probability ``gate``, else a zero-truncated ``Poisson(rate)``.

    ``P(k) = (1 - gate) rate^k e^{-rate} / (k! (1 - e^{-rate}))`` for ``k >= 1``.
    """

    arg_constraints = {"gate": constraints.unit_interval, "rate": constraints.positive}
    support = constraints.nonnegative_integer

    def __init__(self, gate, rate=1.0, *, validate_args=None):
        _, (gate, self.rate) = _broadcast_floats(gate, rate)
        super().__init__(Poisson(self.rate), gate, validate_args=validate_args)


def HurdleNegativeBinomial2(gate, mean, concentration, *, validate_args=None) -> HurdleProbs:
    """Zero with probability ``gate``, else a zero-truncated ``NegativeBinomial2(mean,
    concentration)`` (over-dispersed counts: variance ``mean + mean^2 / concentration``).

    Returns a :class:`HurdleProbs`; ``mean`` and ``concentration`` must be positive.
    """
    base = NegativeBinomial2(mean, concentration, validate_args=validate_args)
    return HurdleProbs(base, gate, validate_args=validate_args)


class HurdleGamma(HurdleProbs):
    """Zero with probability ``gate``, else ``Gamma(concentration, rate)``.

    Density ``(1 - gate) Gamma(x | concentration, rate)`` at ``x > 0``, mass ``gate`` at 0.
    """

    arg_constraints = {
        "gate": constraints.unit_interval,
        "concentration": constraints.positive,
        "rate": constraints.positive,
    }
    support = constraints.nonnegative

    def __init__(self, gate, concentration, rate=1.0, *, validate_args=None):
        _, (gate, self.concentration, self.rate) = _broadcast_floats(gate, concentration, rate)
        base = Gamma(self.concentration, self.rate)
        super().__init__(base, gate, validate_args=validate_args)


class HurdleLogNormal(HurdleProbs):
    """Zero with probability ``gate``, else ``LogNormal(loc, scale)``.

    Density ``(1 - gate) LogNormal(x | loc, scale)`` at ``x > 0``, mass ``gate`` at 0.
    """

    arg_constraints = {
        "gate": constraints.unit_interval,
        "loc": constraints.real,
        "scale": constraints.positive,
    }
    support = constraints.nonnegative

    def __init__(self, gate, loc=0.0, scale=1.0, *, validate_args=None):
        _, (gate, self.loc, self.scale) = _broadcast_floats(gate, loc, scale)
        super().__init__(LogNormal(self.loc, self.scale), gate, validate_args=validate_args)


def ZeroInflatedNegativeBinomial2(
    mean, concentration, *, gate=None, gate_logits=None, validate_args=None
):
    """``NegativeBinomial2(mean, concentration)`` with extra zeros: a zero with probability
    ``gate`` (or ``sigmoid(gate_logits)``), else a draw from the negative binomial (which may
    be zero too). Returns a ``ZeroInflatedProbs`` or ``ZeroInflatedLogits``.
    """
    base = NegativeBinomial2(mean, concentration, validate_args=validate_args)
    return ZeroInflatedDistribution(
        base, gate=gate, gate_logits=gate_logits, validate_args=validate_args
    )


# -- Compound counts --------------------------------------------------------------------------
class BetaNegativeBinomial(Distribution):
    """Negative binomial counts whose success probability is ``Beta(concentration1,
    concentration0)``.

    ``P(k) = C(n + k - 1, k) B(a + k, b + n) / B(a, b)`` for ``k = 0, 1, ...`` with
    ``a = concentration1``, ``b = concentration0``, ``n > 0``; heavy-tailed: the mean
    ``n a / (b - 1)`` is finite only for ``b > 1`` and the variance only for ``b > 2`` (``inf``
    otherwise). Parameters broadcast to ``batch_shape``.
    """

    arg_constraints = {
        "concentration1": constraints.positive,
        "concentration0": constraints.positive,
        "n": constraints.positive,
    }
    support = constraints.nonnegative_integer

    def __init__(self, concentration1, concentration0, n, *, validate_args=None):
        batch_shape, (a, b, n) = _broadcast_floats(concentration1, concentration0, n)
        self.concentration1, self.concentration0, self.n = a, b, n
        super().__init__(batch_shape, validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        # p / (1 - p) for p ~ Beta(a, b) is G_a / G_b (independent gammas), and the negative
        # binomial given p is Poisson(G_n p / (1 - p)): no division by a tiny 1 - p.
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        k_a, k_b, k_n, k_p = jax.random.split(key, 4)
        dtype = self.n.dtype
        g_a = jax.random.gamma(k_a, jnp.broadcast_to(self.concentration1, shape), dtype=dtype)
        g_b = jax.random.gamma(k_b, jnp.broadcast_to(self.concentration0, shape), dtype=dtype)
        g_n = jax.random.gamma(k_n, jnp.broadcast_to(self.n, shape), dtype=dtype)
        return jax.random.poisson(k_p, g_n * g_a / g_b, shape, dtype=_INT)

    def log_prob(self, value):
        a, b, n = self.concentration1, self.concentration0, self.n
        x = _count_value(value, a)
        ok = (x >= 0) & (x == jnp.floor(x))
        x = jnp.where(ok, x, 0.0)
        lp = gammaln(n + x) - gammaln(n) - gammaln(x + 1.0) + betaln(a + x, b + n) - betaln(a, b)
        return jnp.where(ok, lp, -jnp.inf)

    @property
    def mean(self):
        a, b, n = self.concentration1, self.concentration0, self.n
        return jnp.where(b > 1, n * a / jnp.where(b > 1, b - 1.0, 1.0), jnp.inf)

    @property
    def variance(self):
        a, b, n = self.concentration1, self.concentration0, self.n
        safe_b = jnp.where(b > 2, b, 3.0)
        var = n * a * (n + safe_b - 1.0) * (a + safe_b - 1.0) / ((safe_b - 1.0) ** 2 * (safe_b - 2))
        return jnp.where(b > 2, var, jnp.inf)


class DirichletMultinomial(Distribution):
    """Multinomial counts of ``total_count`` trials whose category probabilities are
    ``Dirichlet(concentration)``.

    ``concentration``: ``batch_shape + (K,)``, positive; ``total_count``: nonnegative integer
    broadcastable to ``batch_shape`` (a Python ``int`` stays static, so
    ``enumerate_support`` works under ``jit``). Draws: ``sample_shape + batch_shape + (K,)``,
    summing to ``total_count``.
    ``P(x) = n! G(A) / G(n + A) prod_k G(x_k + a_k) / (G(a_k) x_k!)``, ``A = sum_k a_k``.
    ``total_count_max`` is accepted for NumPyro compatibility and ignored.
    """

    arg_constraints = {
        "concentration": constraints.independent(constraints.positive, 1),
        "total_count": constraints.nonnegative_integer,
    }
    has_enumerate_support = True

    def __init__(self, concentration, total_count=1, *, total_count_max=None, validate_args=None):
        concentration = _to_float(concentration)
        if jnp.ndim(concentration) < 1:
            raise ValueError(
                "DirichletMultinomial: `concentration` must have at least one dimension (the "
                "categories), got a scalar."
            )
        if isinstance(total_count, int | np.integer) and not isinstance(total_count, bool):
            total_count = int(total_count)
        else:
            total_count = jnp.asarray(total_count)
        batch_shape = lazy_broadcast_shape(jnp.shape(concentration)[:-1], jnp.shape(total_count))
        self.concentration = jnp.broadcast_to(
            concentration, batch_shape + jnp.shape(concentration)[-1:]
        )
        if not isinstance(total_count, int):
            total_count = jnp.broadcast_to(total_count, batch_shape)
        self.total_count = total_count
        self.total_count_max = total_count_max
        super().__init__(batch_shape, jnp.shape(concentration)[-1:], validate_args=validate_args)

    @property
    def support(self):  # type: ignore[override]
        return constraints.multinomial(self.total_count)

    def sample(self, key, sample_shape=()):
        shape = validate_sample_shape(sample_shape) + self.batch_shape
        key_dir, key_mult = jax.random.split(key)
        alpha = jnp.broadcast_to(self.concentration, shape + self.event_shape)
        probs = jax.random.dirichlet(key_dir, alpha, dtype=alpha.dtype)
        n = self.total_count
        if not isinstance(n, int):
            n = jnp.broadcast_to(n, shape)
        return MultinomialProbs(probs, n).sample(key_mult)

    def log_prob(self, value):
        alpha = self.concentration
        n = self.total_count
        x = _count_value(value, alpha)
        ok = jnp.all((x >= 0) & (x == jnp.floor(x)), axis=-1) & (jnp.sum(x, axis=-1) == n)
        x = jnp.where(ok[..., None], x, 0.0)
        a_sum = jnp.sum(alpha, axis=-1)
        lp = (
            gammaln(n + 1.0)
            + gammaln(a_sum)
            - gammaln(n + a_sum)
            + jnp.sum(gammaln(x + alpha) - gammaln(alpha) - gammaln(x + 1.0), axis=-1)
        )
        return jnp.where(ok, lp, -jnp.inf)

    @property
    def mean(self):
        alpha = self.concentration
        n = jnp.asarray(self.total_count)[..., None]
        return n * alpha / jnp.sum(alpha, axis=-1, keepdims=True)

    @property
    def variance(self):
        alpha = self.concentration
        n = jnp.asarray(self.total_count)[..., None]
        a_sum = jnp.sum(alpha, axis=-1, keepdims=True)
        p = alpha / a_sum
        return n * p * (1.0 - p) * (n + a_sum) / (1.0 + a_sum)

    def enumerate_support(self, expand: bool = True):
        """Every count vector summing to ``total_count``: ``(N,) + (1,) * batch_ndim + (K,)``
        (``(N,) + batch_shape + (K,)`` if ``expand``), ``N = C(n + K - 1, K - 1)``."""
        n = self.total_count
        if not isinstance(n, int):
            if not is_concrete(n):
                raise NotImplementedError(
                    "DirichletMultinomial.enumerate_support needs a concrete `total_count`; "
                    "pass it as a Python int to enumerate under jit."
                )
            n_np = np.asarray(n)
            if n_np.size and not np.all(n_np == n_np.flat[0]):
                raise NotImplementedError(
                    "DirichletMultinomial.enumerate_support: inhomogeneous `total_count` is "
                    "not supported."
                )
            n = int(n_np.flat[0]) if n_np.size else 0
        k = self.event_shape[0]
        # stars and bars: K - 1 bar positions among n + K - 1 slots
        rows = []
        for bars in itertools.combinations(range(n + k - 1), k - 1):
            edges = (-1,) + bars + (n + k - 1,)
            rows.append([edges[i + 1] - edges[i] - 1 for i in range(k)])
        values = jnp.asarray(np.asarray(rows, dtype=np.int32).reshape(-1, k))
        values = values.reshape(values.shape[:1] + (1,) * len(self.batch_shape) + (k,))
        if expand:
            values = jnp.broadcast_to(values, values.shape[:1] + self.batch_shape + (k,))
        return values


# -- Ordinal ----------------------------------------------------------------------------------
class OrderedLogistic(CategoricalProbs):
    """Ordered categories ``{0, ..., K-1}`` from a latent logistic variable cut at
    ``cutpoints``.

    ``P(Y <= k) = sigmoid(cutpoints[k] - predictor)`` for ``k < K - 1``, so
    ``P(Y = k) = sigmoid(c_k - eta) - sigmoid(c_{k-1} - eta)`` (``c_{-1} = -inf``,
    ``c_{K-1} = +inf``). ``predictor``: real, broadcastable with ``cutpoints.shape[:-1]``;
    ``cutpoints``: ``(..., K - 1)``, increasing. ``batch_shape`` is the broadcast of the two;
    ``probs``: ``batch_shape + (K,)``.
    """

    arg_constraints = {
        "predictor": constraints.real,
        "cutpoints": constraints.ordered_vector,
    }

    def __init__(self, predictor, cutpoints, *, validate_args=None):
        predictor, cutpoints = _to_float(predictor), _to_float(cutpoints)
        if jnp.ndim(cutpoints) < 1:
            raise ValueError(
                "OrderedLogistic: `cutpoints` must have at least one dimension (K - 1 cut "
                "points), got a scalar."
            )
        dtype = jnp.result_type(predictor, cutpoints)
        batch_shape = lazy_broadcast_shape(jnp.shape(predictor), jnp.shape(cutpoints)[:-1])
        self.predictor = jnp.broadcast_to(predictor.astype(dtype), batch_shape)
        self.cutpoints = jnp.broadcast_to(
            cutpoints.astype(dtype), batch_shape + jnp.shape(cutpoints)[-1:]
        )
        cum = jax.nn.sigmoid(self.cutpoints - self.predictor[..., None])
        # last category as sigmoid(eta - c) rather than 1 - sigmoid(c - eta): no cancellation
        last = jax.nn.sigmoid(self.predictor[..., None] - self.cutpoints[..., -1:])
        probs = jnp.concatenate([cum[..., :1], jnp.diff(cum, axis=-1), last], axis=-1)
        super().__init__(probs, validate_args=validate_args)


# -- Relaxed Bernoulli ------------------------------------------------------------------------
class RelaxedBernoulliLogits(TransformedDistribution):
    """The binary Concrete law on (0, 1): ``sigmoid((logits + L) / temperature)`` with ``L``
    standard logistic; reparameterized.

    Density ``T a x^{-T-1} (1-x)^{-T-1} / (a x^{-T} + (1-x)^{-T})^2`` with ``a = exp(logits)``,
    ``T = temperature`` (> 0). As ``T -> 0`` it approaches ``Bernoulli(logits=logits)``.
    ``temperature`` and ``logits`` broadcast to ``batch_shape``.
    """

    arg_constraints = {"temperature": constraints.positive, "logits": constraints.real}

    def __init__(self, temperature, logits, *, validate_args=None):
        _, (self.temperature, self.logits) = _broadcast_floats(temperature, logits)
        base = Logistic(self.logits / self.temperature, 1.0 / self.temperature)
        super().__init__(base, [SigmoidTransform()], validate_args=validate_args)

    @property
    def support(self):  # type: ignore[override]
        return constraints.unit_interval

    @property
    def probs(self) -> jax.Array:
        return logits_to_probs(self.logits, is_binary=True)


def RelaxedBernoulli(temperature, probs=None, logits=None, *, validate_args=None):
    """``RelaxedBernoulliLogits(temperature, logits)``, with ``logits = logit(probs)`` if
    ``probs`` is given; give exactly one of ``probs`` and ``logits``."""
    if (probs is None) == (logits is None):
        raise ValueError(
            "RelaxedBernoulli: exactly one of `probs` or `logits` must be specified "
            f"(got {'neither' if probs is None else 'both'})."
        )
    if probs is not None:
        logits = probs_to_logits(_to_float(probs), is_binary=True)
    return RelaxedBernoulliLogits(temperature, logits, validate_args=validate_args)
