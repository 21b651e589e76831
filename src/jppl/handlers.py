"""Effect handlers: composable transformations of models.

Each handler wraps a callable (``trace(model).get_trace(*args)``, ``seed(model, 0)(*args)``,
or ``seed(rng_seed=0)(model)``) or works as a context manager (``with seed(rng_seed=0): ...``).
They compose in any order; the innermost (the one closest to the model) sees each message
first.

To write your own, subclass :class:`Messenger` and override ``process_message`` and/or
``postprocess_message``::

    class print_sites(Messenger):
        def postprocess_message(self, msg):
            if msg["type"] == "sample":
                print(msg["name"], msg["value"])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from jppl.distributions import (
    BernoulliProbs,
    Beta,
    BinomialProbs,
    CategoricalProbs,
    Dirichlet,
    Gamma,
    MultinomialProbs,
    Normal,
    Poisson,
)
from jppl.distributions.distribution import (
    Distribution,
    ExpandedDistribution,
    Independent,
    MaskedDistribution,
)
from jppl.distributions.util import betaln
from jppl.primitives import (
    Message,
    Messenger,
    apply_stack,
    check_obs,
    factor,
    plate,
    prng_key,
)
from jppl.stack import HANDLER_STACK

__all__ = [
    "Messenger",
    "block",
    "collapse",
    "condition",
    "do",
    "infer_config",
    "lift",
    "mask",
    "reparam",
    "replay",
    "scale",
    "scope",
    "seed",
    "substitute",
    "trace",
    "uncondition",
]

_RECORDED_TYPES = ("sample", "param", "deterministic", "plate", "mutable")


class trace(Messenger):
    """Record every site into an ordered dict ``name -> site`` (the final messages).

    Examples:
        >>> tr = trace(seed(model, 0)).get_trace(x)
        >>> tr["mu"]["value"]
    """

    def __enter__(self):
        super().__enter__()
        self.trace: OrderedDict[str, Message] = OrderedDict()
        return self.trace

    def postprocess_message(self, msg: Message) -> None:
        if msg["type"] not in _RECORDED_TYPES:
            return
        name = msg["name"]
        if name in self.trace and msg["type"] in ("sample", "deterministic", "param"):
            previous = self.trace[name]["type"]
            raise ValueError(
                f"Site name '{name}' is used twice (a {previous} site and a {msg['type']} "
                "site); every site in a model must have a unique name."
            )
        self.trace[name] = msg.copy()

    def get_trace(self, *args, **kwargs) -> OrderedDict[str, Message]:
        """Run the wrapped function and return its trace."""
        self(*args, **kwargs)
        return self.trace


def _as_key(rng_seed):
    if isinstance(rng_seed, int | np.integer) and not isinstance(rng_seed, bool):
        return jax.random.key(int(rng_seed))
    if isinstance(rng_seed, jax.Array | np.ndarray):
        if jnp.issubdtype(rng_seed.dtype, jax.dtypes.prng_key):
            return rng_seed
        if rng_seed.dtype == jnp.uint32 and rng_seed.shape == (2,):
            return rng_seed
        if rng_seed.shape == () and jnp.issubdtype(rng_seed.dtype, jnp.integer):
            return jax.random.key(rng_seed)
    raise TypeError(
        f"seed: rng_seed must be an int or a JAX PRNG key, got {type(rng_seed).__name__}"
    )


class seed(Messenger):
    """Give each latent sample site (and ``prng_key()``, subsampling plates) a fresh key.

    ``rng_seed``: an int or a JAX PRNG key. Keys are split in site order, so the same seed
    and model always give the same draws. Observed sites consume no key.
    """

    def __init__(self, fn: Callable | None = None, rng_seed=None):
        if rng_seed is None:
            raise ValueError("seed: rng_seed is required (an int or a PRNG key).")
        self._initial_key = _as_key(rng_seed)
        self.rng_key = self._initial_key
        super().__init__(fn)

    def __enter__(self):
        # Each entry starts from the same key: a seeded model is a pure function of its seed.
        self.rng_key = self._initial_key
        return super().__enter__()

    def _next_key(self):
        self.rng_key, subkey = jax.random.split(self.rng_key)
        return subkey

    def process_message(self, msg: Message) -> None:
        kind = msg["type"]
        if kind == "sample":
            if msg["is_observed"] or msg["value"] is not None:
                return
            if msg["kwargs"].get("rng_key") is None:
                msg["kwargs"]["rng_key"] = self._next_key()
        elif kind == "prng_key":
            if msg["value"] is None:
                msg["value"] = self._next_key()
        elif kind == "plate":
            if msg["kwargs"].get("rng_key") is None and msg["args"][1] < msg["args"][0]:
                msg["kwargs"]["rng_key"] = self._next_key()


class _SetValues(Messenger):
    """Shared logic of ``condition``/``substitute``: a dict of values or a function."""

    _types: tuple[str, ...] = ()
    _handler_name = ""

    def __init__(self, fn=None, data: dict | None = None, value_fn: Callable | None = None):
        if (data is None) == (value_fn is None):
            raise ValueError(
                f"{self._handler_name}: give exactly one of data= (a dict) or a function of "
                "the site."
            )
        if data is not None and not isinstance(data, dict):
            raise TypeError(f"{self._handler_name}: data must be a dict, got {type(data)}")
        self.data = data
        self.value_fn = value_fn
        super().__init__(fn)

    def _lookup(self, msg: Message):
        if self.data is not None:
            return self.data.get(msg["name"])
        return self.value_fn(msg)


class condition(_SetValues):
    """Observe sample sites: ``condition(model, data={"y": y})`` (or ``condition_fn=``).

    A conditioned site becomes observed: its value is fixed and it contributes its
    log-probability to the joint. Compare :class:`do`.
    """

    _handler_name = "condition"

    def __init__(self, fn=None, data: dict | None = None, condition_fn: Callable | None = None):
        super().__init__(fn, data, condition_fn)

    def process_message(self, msg: Message) -> None:
        if msg["type"] != "sample":
            return
        value = self._lookup(msg)
        if value is None:
            return
        msg["value"] = check_obs(msg["name"], value)
        msg["is_observed"] = True


class substitute(_SetValues):
    """Set the values of sites without making them observed.

    ``substitute(model, data={"w": w})`` or ``substitute(model, substitute_fn=f)`` where
    ``f(site) -> value or None``. Applies to sample, param, deterministic, plate and mutable
    sites (a mutable site's dict is copied, so the model's in-place updates do not reach it).
    """

    _handler_name = "substitute"

    def __init__(self, fn=None, data: dict | None = None, substitute_fn: Callable | None = None):
        super().__init__(fn, data, substitute_fn)

    def process_message(self, msg: Message) -> None:
        if msg["type"] not in ("sample", "param", "deterministic", "plate", "mutable"):
            return
        value = self._lookup(msg)
        if value is not None:
            if msg["type"] == "mutable" and isinstance(value, dict):
                # The model updates its state in place; leave the caller's dict as it was.
                value = value.copy()
            msg["value"] = value


class replay(Messenger):
    """Reuse the values of latent sample sites (and plate indices) from ``trace``."""

    def __init__(self, fn=None, trace: dict | None = None):
        if trace is None:
            raise ValueError("replay: a trace (dict of sites) is required.")
        self.trace = trace
        super().__init__(fn)

    def process_message(self, msg: Message) -> None:
        if msg["type"] not in ("sample", "plate") or msg["name"] not in self.trace:
            return
        if msg["type"] == "sample" and msg["is_observed"]:
            return
        guide_site = self.trace[msg["name"]]
        if guide_site["type"] == "sample" and guide_site["is_observed"] and msg["type"] == "sample":
            return
        msg["value"] = guide_site["value"]


class block(Messenger):
    """Hide sites from the handlers outside this one.

    A hidden site that needs a key (a latent sample site, a subsampling plate) still gets one
    from a ``seed`` handler outside. By default every site is hidden. ``hide=[names]`` /
    ``expose=[names]``, ``expose_types=[types]`` or ``hide_fn(site) -> bool`` select which.
    """

    def __init__(
        self,
        fn=None,
        hide_fn: Callable | None = None,
        hide: Iterable[str] | None = None,
        expose_types: Iterable[str] | None = None,
        expose: Iterable[str] | None = None,
    ):
        if hide_fn is not None:
            self.hide_fn = hide_fn
        elif hide is not None:
            hidden = set(hide)
            self.hide_fn = lambda msg: msg["name"] in hidden
        elif expose_types is not None:
            types = set(expose_types)
            self.hide_fn = lambda msg: msg["type"] not in types
        elif expose is not None:
            exposed = set(expose)
            self.hide_fn = lambda msg: msg["name"] not in exposed
        else:
            self.hide_fn = lambda msg: True
        super().__init__(fn)

    def process_message(self, msg: Message) -> None:
        if msg["type"] == "prng_key" or not self.hide_fn(msg):
            return  # keys always reach the seed handlers outside
        msg["stop"] = True
        # A hidden site that still needs a key (a latent draw, a minibatch) takes one from
        # the handlers outside, as in NumPyro: hiding a site does not make it unrunnable.
        if (
            msg["type"] in ("sample", "plate")
            and msg["value"] is None
            and msg["kwargs"].get("rng_key") is None
        ):
            msg["kwargs"]["rng_key"] = prng_key()


def _check_positive_scale(value, where: str):
    if not isinstance(value, jax.core.Tracer) and not np.all(np.asarray(value) > 0):
        raise ValueError(f"{where}: scale must be positive, got {value!r}")


class scale(Messenger):
    """Multiply the log-probability of every sample site by ``scale`` (> 0)."""

    def __init__(self, fn=None, scale=1.0):
        _check_positive_scale(scale, "scale handler")
        self.scale = scale
        super().__init__(fn)

    def process_message(self, msg: Message) -> None:
        if msg["type"] != "sample":
            return
        msg["scale"] = self.scale if msg["scale"] is None else self.scale * msg["scale"]


class mask(Messenger):
    """Zero the log-probability of sample sites where ``mask`` (bool, batch-shaped) is False."""

    def __init__(self, fn=None, mask=True):
        if not isinstance(mask, bool | np.bool_):
            arr = jnp.asarray(mask)
            if arr.dtype != jnp.bool_:
                raise TypeError(f"mask handler: mask must be boolean, got dtype {arr.dtype}")
        self.mask = mask
        super().__init__(fn)

    def process_message(self, msg: Message) -> None:
        if msg["type"] == "mask":
            msg["mask"] = self.mask if msg["mask"] is None else msg["mask"] & self.mask
            return
        if msg["type"] != "sample":
            return
        msg["fn"] = msg["fn"].mask(self.mask)
        msg["mask"] = self.mask if msg["mask"] is None else msg["mask"] & self.mask


class do(Messenger):
    """Intervene: ``do(model, data={"x": x0})`` sets x to x0 for everything downstream.

    A site whose value in ``data`` is ``None`` is left alone (no intervention).

    Unlike :class:`condition`, the intervened site is not observed: the site ``x`` is still
    drawn from its distribution (and recorded), while the model's code receives ``x0``. The
    intervention itself is recorded as an observed site ``x__CF`` that is hidden from
    handlers outside ``do``, so it adds nothing to the log density.
    """

    def __init__(self, fn=None, data: dict | None = None):
        if not isinstance(data, dict):
            raise TypeError("do: data must be a dict of interventions {site name: value}.")
        self.data = data
        super().__init__(fn)

    def process_message(self, msg: Message) -> None:
        # A value of None means "no intervention" on that site.
        if msg["type"] != "sample" or self.data.get(msg["name"]) is None:
            return
        if msg.get("_intervener_id") == id(self):
            return
        original = msg.copy()
        original["_intervener_id"] = id(self)
        original["kwargs"] = dict(msg["kwargs"])
        # Handlers inside `do` already processed `msg`; the copy goes through the whole stack
        # again, so reset what they accumulate (plate frames, scales, masks).
        original["cond_indep_stack"] = []
        original["scale"] = None
        original["mask"] = None
        apply_stack(original)
        msg["name"] = msg["name"] + "__CF"
        msg["value"] = jnp.asarray(self.data[original["name"]])
        msg["is_observed"] = True
        msg["stop"] = True


class scope(Messenger):
    """Prefix site names: ``scope(model, prefix="enc")`` renames ``w`` to ``enc/w``.

    Plates are renamed too, both their sites and the frames in the ``cond_indep_stack`` of
    the sites inside them. ``hide_types``: site types (e.g. ``["plate"]``) left unrenamed.
    """

    def __init__(
        self,
        fn=None,
        prefix: str = "",
        divider: str = "/",
        hide_types: Iterable[str] | None = None,
    ):
        if not isinstance(prefix, str) or not prefix:
            raise ValueError("scope: prefix must be a non-empty str.")
        if not isinstance(divider, str):
            raise TypeError(f"scope: divider must be a str, got {divider!r}")
        if isinstance(hide_types, str):
            raise TypeError(f"scope: hide_types must be a list of site types, got {hide_types!r}")
        self.prefix = prefix
        self.divider = divider
        self.hide_types = [] if hide_types is None else list(hide_types)
        super().__init__(fn)

    def _scoped(self, name: str) -> str:
        return f"{self.prefix}{self.divider}{name}"

    def process_message(self, msg: Message) -> None:
        if msg["type"] in _RECORDED_TYPES and msg["type"] not in self.hide_types:
            msg["name"] = self._scoped(msg["name"])
        # Only the plates inside this scope have added their frames so far.
        if msg.get("cond_indep_stack") and "plate" not in self.hide_types:
            msg["cond_indep_stack"] = [
                frame._replace(name=self._scoped(frame.name)) for frame in msg["cond_indep_stack"]
            ]


class lift(Messenger):
    """Turn ``param`` sites into latent ``sample`` sites drawn from a prior.

    ``prior`` is a Distribution (used for every param) or a dict ``name -> Distribution``;
    params without a prior are left alone. The prior is broadcast to the param's shape.
    Put ``seed`` outside ``lift`` so the new sample sites get keys.
    """

    def __init__(self, fn=None, prior: Distribution | dict | None = None):
        if prior is None:
            raise ValueError("lift: prior is required (a Distribution or a dict of them).")
        self.prior = prior
        self._samples: dict[str, Message] = {}
        super().__init__(fn)

    def __enter__(self):
        # One draw per lifted param and per run.
        self._samples = {}
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        self._samples = {}
        return super().__exit__(exc_type, exc_value, traceback)

    def process_message(self, msg: Message) -> None:
        if msg["type"] != "param":
            return
        if isinstance(self.prior, dict):
            prior = self.prior.get(msg["name"])
            if prior is None:
                return
        else:
            prior = self.prior
        first = self._samples.get(msg["name"])
        if first is not None:
            # The same param read again: reuse the run's draw, as a site hidden from the
            # handlers further out (it is already in the trace and the log density).
            msg["type"] = "sample"
            msg["fn"] = first["fn"]
            msg["args"] = ()
            msg["kwargs"] = {"rng_key": None, "sample_shape": ()}
            msg["value"] = first["value"]
            msg["is_observed"] = True
            msg["stop"] = True
            return
        init_value = msg["args"][0]
        if callable(init_value):
            init_value = init_value(*msg["args"][1:])
        shape = jnp.shape(init_value)
        if msg["value"] is not None:
            shape = jnp.shape(msg["value"])
        batch_ndim = len(shape) - prior.event_dim
        prior_shape = prior.batch_shape + prior.event_shape
        if tuple(shape) != tuple(prior_shape):
            prior = prior.expand(shape[:batch_ndim])
        msg["type"] = "sample"
        msg["fn"] = prior
        msg["args"] = ()
        msg["kwargs"] = {"rng_key": None, "sample_shape": ()}
        msg["is_observed"] = False
        msg["value"] = None
        msg["infer"] = {}
        self._samples[msg["name"]] = msg


class infer_config(Messenger):
    """Merge ``config_fn(site)`` (a dict) into the ``infer`` dict of each sample site.

    E.g. ``infer_config(model, lambda site: {"enumerate": "parallel"})``. The site's own
    ``infer`` dict (the one given to ``sample``) is not modified in place.
    """

    def __init__(self, fn=None, config_fn: Callable | None = None):
        if config_fn is None or not callable(config_fn):
            raise ValueError(
                f"infer_config: config_fn must be a function site -> dict, got {config_fn!r}"
            )
        self.config_fn = config_fn
        super().__init__(fn)

    def process_message(self, msg: Message) -> None:
        if msg["type"] != "sample":
            return
        config = self.config_fn(msg)
        if not isinstance(config, dict):
            raise TypeError(
                f"infer_config: config_fn must return a dict for site '{msg['name']}', got "
                f"{type(config).__name__}."
            )
        msg["infer"] = {**msg["infer"], **config}


class uncondition(Messenger):
    """Make observed sample sites latent again: they are drawn from their distribution.

    The observation is kept in the site's ``infer`` dict: ``infer["was_observed"] = True`` and
    ``infer["obs"]`` (the observed value). Such a site needs a PRNG key: put ``seed`` around
    or inside this handler.
    """

    def process_message(self, msg: Message) -> None:
        if msg["type"] != "sample" or not msg["is_observed"]:
            return
        msg["infer"] = {**msg["infer"], "was_observed": True, "obs": msg["value"]}
        msg["is_observed"] = False
        msg["value"] = None
        if msg["kwargs"].get("rng_key") is None:
            # A `seed` inside this handler skipped the site while it was observed.
            msg["kwargs"] = {**msg["kwargs"], "rng_key": prng_key()}


class reparam(Messenger):
    """Reparameterize sample sites with :mod:`jppl.reparam` strategies.

    ``config``: dict ``name -> Reparam``, or a function ``site -> Reparam or None``. A
    reparameterized site becomes a deterministic site holding its value; the strategy adds
    the auxiliary sample sites it needs (e.g. ``x_decentered``).
    """

    def __init__(self, fn=None, config: dict | Callable | None = None):
        if config is None:
            raise ValueError("reparam: config is required (a dict or a function).")
        self.config = config
        super().__init__(fn)

    def process_message(self, msg: Message) -> None:
        if msg["type"] != "sample":
            return
        if isinstance(self.config, dict):
            reparameterizer = self.config.get(msg["name"])
        else:
            reparameterizer = self.config(msg)
        if reparameterizer is None:
            return
        obs = msg["value"] if msg["is_observed"] else None
        new_fn, value = reparameterizer(msg["name"], msg["fn"], obs)
        if value is None:
            msg["fn"] = new_fn
            return
        if new_fn is not None:
            # The strategy kept a site: observe `value` under the new distribution.
            msg["fn"] = new_fn
            msg["value"] = value
            msg["is_observed"] = True
            return
        msg["type"] = "deterministic"
        msg["value"] = value
        msg["fn"] = None
        msg["is_observed"] = False
        msg["intermediates"] = []


# -- collapse ----------------------------------------------------------------------------------
# A collapsed latent's value is a placeholder: a concrete array inside the prior's support whose
# entries come from this private generator, so that a parameter of a later site can be told to
# *be* the latent (equal entries) even under `jit`, and a computed value practically never is.
_PLACEHOLDER_RNG = np.random.default_rng(0x5EED_C011A95E)
_PRIOR_FAMILIES = {
    Beta: "Beta",
    Gamma: "Gamma",
    Normal: "Normal",
    Dirichlet: "Dirichlet",
}
# (prior family, likelihood class) -> the likelihood parameter that is the latent.
_CONJUGATE = {
    ("Beta", BernoulliProbs): "probs",
    ("Beta", BinomialProbs): "probs",
    ("Gamma", Poisson): "rate",
    ("Normal", Normal): "loc",
    ("Dirichlet", CategoricalProbs): "probs",
    ("Dirichlet", MultinomialProbs): "probs",
}
_SUPPORTED = (
    "Beta-Bernoulli(probs), Beta-Binomial(probs), Gamma-Poisson(rate), Normal-Normal(loc, known "
    "scale), Dirichlet-Categorical(probs), Dirichlet-Multinomial(probs)"
)


def _placeholder(family: str, shape: tuple[int, ...]) -> jax.Array:
    """A concrete value of ``shape`` strictly inside the support of ``family``."""
    dtype = jnp.result_type(float)
    if family == "Beta":
        value = _PLACEHOLDER_RNG.uniform(0.1, 0.9, shape)
    elif family == "Gamma":
        value = _PLACEHOLDER_RNG.uniform(0.5, 2.0, shape)
    elif family == "Normal":
        value = _PLACEHOLDER_RNG.uniform(-2.0, 2.0, shape)
    else:  # Dirichlet: positive entries summing to one along the last axis
        value = _PLACEHOLDER_RNG.uniform(0.5, 1.5, shape)
        value = value / value.sum(-1, keepdims=True)
    return jnp.asarray(value.astype(dtype))


def _unwrap(fn: Distribution) -> Distribution:
    """The distribution under ``expand``/``to_event``/``mask`` wrappers."""
    while isinstance(fn, ExpandedDistribution | Independent | MaskedDistribution):
        fn = fn.base_dist
    return fn


def _mentions(value, placeholders: dict[str, jax.Array]) -> str | None:
    """Name of a collapsed latent some entry of the concrete ``value`` is taken from, if any."""
    if value is None or isinstance(value, jax.core.Tracer) or callable(value):
        return None
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        return None
    if arr.dtype.kind != "f" or arr.size == 0:
        return None
    for name, placeholder in placeholders.items():
        if np.isin(arr, np.asarray(placeholder)).any():
            return name
    return None


def _is_placeholder(param, placeholder: jax.Array) -> bool:
    """Whether the concrete ``param`` equals ``placeholder`` broadcast to its shape."""
    if param is None or isinstance(param, jax.core.Tracer):
        return False
    arr, ph = np.asarray(param), np.asarray(placeholder)
    try:
        if np.broadcast_shapes(arr.shape, ph.shape) != arr.shape:
            return False
    except ValueError:
        return False
    return bool(np.array_equal(arr, np.broadcast_to(ph, arr.shape)))


def _to_full(x, shape: tuple[int, ...]) -> jax.Array:
    """Right-align ``x`` with ``shape`` and broadcast it there."""
    x = jnp.asarray(x)
    return jnp.broadcast_to(jnp.reshape(x, (1,) * (len(shape) - x.ndim) + x.shape), shape)


def _reduce_to(stat: jax.Array, elem: tuple[int, ...], tail: int) -> jax.Array:
    """Sum ``stat`` (``full + tail dims``) over the dims that replicate one latent element.

    ``elem``: the latent's element shape, right-aligned with the full (observation) shape.
    """
    full = stat.shape[: stat.ndim - tail]
    lead = len(full) - len(elem)
    stat = jnp.sum(stat, axis=tuple(range(lead)))
    axes = tuple(i for i, (e, f) in enumerate(zip(elem, full[lead:], strict=True)) if e == 1 != f)
    stat = jnp.sum(stat, axis=axes, keepdims=True)
    return jnp.reshape(stat, elem + stat.shape[len(elem) :])


def _prior_params(prior: Distribution, family: str, elem: tuple[int, ...]) -> tuple:
    """The prior's parameters broadcast to the latent's element shape (+ event shape)."""
    if family == "Beta":
        params = (prior.concentration1, prior.concentration0)
    elif family == "Gamma":
        params = (prior.concentration, prior.rate)
    elif family == "Normal":
        params = (prior.loc, prior.scale)
    else:
        params = (prior.concentration,)
    return tuple(_to_full(p, elem + prior.event_shape) for p in params)


def _stats(family: str, like: Distribution, x, w, prior_params, full) -> tuple:
    """Sufficient statistics of one observed site, per observation (shape ``full`` [+ (K,)]).

    ``x``: the observations (``full + event``), ``w``: their 0/1 weights (masks, ``full``).
    Each family's statistics end with a constant (the terms free of the latent).
    """
    if family == "Beta":
        n = 1.0 if isinstance(like, BernoulliProbs) else _to_full(like.total_count, full)
        const = 0.0
        if isinstance(like, BinomialProbs):
            const = gammaln(n + 1.0) - gammaln(x + 1.0) - gammaln(n - x + 1.0)
        return w * x, w * (n - x), w * const
    if family == "Gamma":
        return w * x, w * jnp.ones(full), -w * gammaln(x + 1.0)
    if family == "Normal":
        loc0 = _to_full(prior_params[0], full)
        prec = 1.0 / jnp.square(_to_full(like.scale, full))
        dev = x - loc0
        const = w * (0.5 * jnp.log(prec) - 0.5 * jnp.log(2.0 * jnp.pi))
        return w * prec, w * prec * dev, w * prec * jnp.square(dev), const
    # Dirichlet: category counts (full + (K,)) and the multinomial coefficient
    k = prior_params[0].shape[-1]
    if isinstance(like, CategoricalProbs):
        counts = jax.nn.one_hot(x, k, dtype=jnp.result_type(float))
        return w[..., None] * counts, jnp.zeros(full)
    n = _to_full(like.total_count, full)
    const = gammaln(n + 1.0) - jnp.sum(gammaln(x + 1.0), axis=-1)
    return w[..., None] * x, w * const


def _log_marginal(family: str, prior_params: tuple, stats: tuple) -> jax.Array:
    """Log marginal likelihood per latent element, from the summed statistics."""
    if family == "Beta":
        (a, b), (succ, fail, const) = prior_params, stats
        return const + betaln(a + succ, b + fail) - betaln(a, b)
    if family == "Gamma":
        (a, b), (total, count, const) = prior_params, stats
        return (
            const
            + a * jnp.log(b)
            - (a + total) * jnp.log(b + count)
            + gammaln(a + total)
            - gammaln(a)
        )
    if family == "Normal":
        # Precision-weighted update around the prior mean: with t0 = 1/s0^2 and T = sum t_i,
        # log p(x) = sum(log N consts) + log(t0 / (t0 + T)) / 2 - (V - U^2 / (t0 + T)) / 2.
        (_, scale0), (prec, lin, quad, const) = prior_params, stats
        prec0 = 1.0 / jnp.square(scale0)
        post = prec0 + prec
        return const + 0.5 * jnp.log(prec0 / post) - 0.5 * (quad - jnp.square(lin) / post)
    (alpha,), (counts, const) = prior_params, stats
    return (
        const
        + gammaln(jnp.sum(alpha, -1))
        - gammaln(jnp.sum(alpha + counts, -1))
        + jnp.sum(gammaln(alpha + counts) - gammaln(alpha), -1)
    )


def _check_unit_scale(msg: Message) -> None:
    value = msg["scale"]
    if value is None:
        return
    if isinstance(value, jax.core.Tracer) or not np.all(np.asarray(value) == 1):
        raise ValueError(
            f"handlers.collapse: sample site '{msg['name']}' has a log-probability scale "
            f"{value!r} (from a scale handler or a subsampled plate inside the collapse "
            "block); a scaled likelihood has no conjugate marginal, so only scale 1 is "
            "supported."
        )


class collapse(Messenger):
    """Integrate latent sample sites out of a block by conjugacy (NumPyro's ``collapse``).

    Inside ``with handlers.collapse():`` latent sample sites are not drawn, and neither they
    nor the observed sites that use them reach the handlers outside. On exit the block
    becomes one ``factor`` site, named after the first latent, holding the log marginal
    likelihood of the block's observations with the latents integrated out in closed form.
    Supported (prior, likelihood parameter) pairs: Beta-Bernoulli(probs),
    Beta-Binomial(probs), Gamma-Poisson(rate), Normal-Normal(loc, with a scale that is not a
    function of the latent), Dirichlet-Categorical(probs), Dirichlet-Multinomial(probs).
    A non-latent parameter (a Binomial's ``total_count``, a Normal's ``scale``) that is
    traced under ``jit`` cannot be inspected and is taken to be free of the latents. Any
    number of observed sites, each with any number of observations (e.g. a plate inside the
    block), may share a latent; their marginal is joint. A latent with a batch shape (inside
    a plate) is collapsed elementwise; plates entered outside the block stay as batch dims of
    the factor, the others are summed.

    Unlike NumPyro (whose latents are lazy Funsors), the value ``sample`` returns for a latent
    here is a *placeholder*: a concrete array of the site's shape inside its support. Pass it,
    unchanged, as the parameter of the block's observed sites (``Binomial(n, probs=p)``).
    Anything else raises a ``ValueError`` naming the site: an observed site whose parameter is
    a *function* of the latent (``Normal(2 * mu, 1)``), a latent used by two parameters or as
    a parameter of another prior, a pair without a known conjugacy, an observed site that uses
    no latent, a ``deterministic`` site in the block, a ``scale`` other than 1 (from a
    ``scale`` handler or a subsampled plate inside the block). Masks (``handlers.mask``)
    drop observations.

    Examples:
        >>> def model(data):
        ...     a = param("a", 1.0, constraint=constraints.positive)
        ...     with handlers.collapse():
        ...         p = sample("p", dist.Beta(a, 1.0))
        ...         with plate("N", len(data)):
        ...             sample("obs", dist.Bernoulli(p), obs=data)
    """

    def __enter__(self):
        self.trace: OrderedDict[str, Message] = OrderedDict()
        self._latents: OrderedDict[str, tuple[str, jax.Array]] = OrderedDict()
        self._uses: list[tuple[Message, str]] = []
        # Plates entered outside the block: the block's sites belong to them too (they are
        # hidden from those plates, so collapse applies their batch dims itself).
        self._outer_plates = [h for h in HANDLER_STACK if isinstance(h, plate)]
        super().__enter__()
        # Code in the block computes with placeholders eagerly, even under `jit`, so that a
        # likelihood's parameter can be compared with them (traced values stay traced).
        self._eager = jax.ensure_compile_time_eval()
        self._eager.__enter__()
        return self.trace

    def __exit__(self, exc_type, exc_value, traceback):
        self._eager.__exit__(exc_type, exc_value, traceback)
        result = super().__exit__(exc_type, exc_value, traceback)
        if exc_type is not None:
            return result
        if not self._latents:
            raise ValueError(
                "handlers.collapse: the block has no latent sample site to integrate out."
            )
        factor(next(iter(self._latents)), self._log_marginal())
        return result

    def process_message(self, msg: Message) -> None:
        kind = msg["type"]
        if kind == "deterministic":
            raise ValueError(
                f"handlers.collapse: deterministic site '{msg['name']}' inside the collapse "
                "block. Values of latent sample sites there are placeholders (see "
                "handlers.collapse), so a deterministic site could record one; move it out of "
                "the block."
            )
        if kind == "param":
            used = _mentions(msg["args"][0] if msg["args"] else None, self._placeholders())
            if used is not None:
                raise ValueError(
                    f"handlers.collapse: param site '{msg['name']}' reads the collapsed latent "
                    f"'{used}', whose value inside the block is a placeholder."
                )
            return
        if kind != "sample":
            return
        msg["stop"] = True
        scale = msg["scale"]
        for outer in reversed(self._outer_plates):
            outer.process_message(msg)
        # A subsampled outer plate scales the factor instead (it is in that plate too).
        msg["scale"] = scale
        _check_unit_scale(msg)
        self.trace[msg["name"]] = msg
        if msg["is_observed"]:
            self._match(msg)
        else:
            self._collapse_latent(msg)

    def _placeholders(self) -> dict[str, jax.Array]:
        return {name: value for name, (_, value) in self._latents.items()}

    def _collapse_latent(self, msg: Message) -> None:
        name, fn = msg["name"], msg["fn"]
        if msg["value"] is not None:
            raise ValueError(
                f"handlers.collapse: latent site '{name}' was given a value by a handler inside "
                "the collapse block; it cannot be both set and integrated out."
            )
        if msg["mask"] is not None or any(isinstance(d, MaskedDistribution) for d in _wrappers(fn)):
            raise ValueError(f"handlers.collapse: latent site '{name}' is masked; unsupported.")
        prior = _unwrap(fn)
        family = _PRIOR_FAMILIES.get(type(prior))
        if family is None:
            raise ValueError(
                f"handlers.collapse: no conjugacy is known for latent site '{name}' with prior "
                f"{type(prior).__name__}. Supported: {_SUPPORTED}."
            )
        for param_name in type(prior).arg_constraints:
            used = _mentions(getattr(prior, param_name, None), self._placeholders())
            if used is not None:
                raise ValueError(
                    f"handlers.collapse: the prior of latent site '{name}' uses the collapsed "
                    f"latent '{used}' as `{param_name}`; hierarchies of collapsed latents are "
                    "not supported (collapse only the innermost one)."
                )
        shape = tuple(msg["kwargs"].get("sample_shape", ())) + fn.batch_shape + fn.event_shape
        msg["value"] = _placeholder(family, shape)
        self._latents[name] = (family, msg["value"])

    def _match(self, msg: Message) -> None:
        name = msg["name"]
        like = _unwrap(msg["fn"])
        if msg["mask"] is None and any(
            isinstance(d, MaskedDistribution) for d in _wrappers(msg["fn"])
        ):
            raise ValueError(
                f"handlers.collapse: observed site '{name}' has a distribution masked with "
                "Distribution.mask(); inside collapse use the handlers.mask handler instead."
            )
        placeholders = self._placeholders()
        matches = [
            (param, latent)
            for param in type(like).arg_constraints
            for latent, value in placeholders.items()
            if _is_placeholder(getattr(like, param, None), value)
        ]
        if len(matches) != 1:
            what = (
                "none of its parameters is a collapsed latent (a function of one, such as "
                "2 * p or p[idx], is not supported)"
                if not matches
                else "several of its parameters are collapsed latents: "
                + ", ".join(f"{p}={lat!r}" for p, lat in matches)
            )
            raise ValueError(
                f"handlers.collapse: observed site '{name}' ({type(like).__name__}): {what}. "
                "Every sample site in a collapse block must be a latent or an observation "
                f"whose parameter is exactly one latent, for the pairs {_SUPPORTED}."
            )
        param, latent = matches[0]
        family = self._latents[latent][0]
        if _CONJUGATE.get((family, type(like))) != param:
            raise ValueError(
                f"handlers.collapse: no conjugacy is known for latent site '{latent}' "
                f"({family} prior) used as `{param}` of {type(like).__name__} at site "
                f"'{name}'. Supported: {_SUPPORTED}."
            )
        for other in type(like).arg_constraints:
            if other == param:
                continue
            used = _mentions(getattr(like, other, None), placeholders)
            if used is not None:
                raise ValueError(
                    f"handlers.collapse: observed site '{name}' uses the collapsed latent "
                    f"'{used}' in its parameter `{other}` as well; only `{param}` may be a "
                    "latent."
                )
        self._uses.append((msg, latent))

    def _log_marginal(self) -> jax.Array:
        """The factor: the sum over latents of their log marginals, summed over the dims that
        are not plates entered outside the block."""
        outer_names = {p.name for p in self._outer_plates}
        total = jnp.zeros(())
        for latent, (family, _) in self._latents.items():
            msg = self.trace[latent]
            prior = _unwrap(msg["fn"])
            value = msg["value"]
            elem = value.shape[: value.ndim - len(prior.event_shape)]
            prior_params = _prior_params(prior, family, elem)
            summed = None
            for obs_msg, used in self._uses:
                if used != latent:
                    continue
                stats = self._site_stats(obs_msg, family, prior_params, elem)
                summed = stats if summed is None else tuple(map(jnp.add, summed, stats))
            if summed is None:
                continue  # a latent nothing observes integrates to one
            log_marginal = _log_marginal(family, prior_params, summed)
            # Keep the dims of plates outside the block (right-aligned as batch dims).
            tail = len(msg["fn"].event_shape) - len(prior.event_shape)
            keep = {
                len(elem) - tail + f.dim for f in msg["cond_indep_stack"] if f.name in outer_names
            }
            axes = tuple(i for i in range(len(elem)) if i not in keep)
            log_marginal = jnp.sum(log_marginal, axis=axes, keepdims=True)
            log_marginal = jnp.reshape(log_marginal, log_marginal.shape[: len(elem) - tail])
            total = total + log_marginal
        # Drop leading size-1 dims: the factor's batch shape is that of the outer plates.
        while total.ndim and total.shape[0] == 1:
            total = total[0]
        return total

    def _site_stats(self, msg: Message, family: str, prior_params: tuple, elem) -> tuple:
        fn = msg["fn"]
        like = _unwrap(fn)
        event = like.event_shape
        tail = len(fn.event_shape) - len(event)
        x = jnp.asarray(msg["value"])
        full = tuple(
            np.broadcast_shapes(
                x.shape[: x.ndim - len(event)], fn.batch_shape + fn.event_shape[:tail]
            )
        )
        x = jnp.broadcast_to(x, full + event).astype(jnp.result_type(float))
        if family == "Dirichlet" and isinstance(like, CategoricalProbs):
            x = x.astype(jnp.int32)
        w = jnp.ones(full)
        if msg["mask"] is not None:
            mask = jnp.asarray(msg["mask"])
            w = _to_full(jnp.reshape(mask, mask.shape + (1,) * tail), full).astype(w.dtype)
        # Observations outside the likelihood's support make the marginal -inf, as their
        # log-probability would (they are replaced by a valid value for the statistics).
        ok = jnp.broadcast_to(like.support(x), full)
        x = jnp.where(jnp.reshape(ok, full + (1,) * len(event)), x, jnp.zeros((), x.dtype))
        stats = list(_stats(family, like, x, w, prior_params, full))
        stats[-1] = stats[-1] + jnp.where((w > 0) & ~ok, -jnp.inf, 0.0)
        reduced = []
        for stat in stats:
            tail_k = jnp.shape(stat)[-1:] if jnp.ndim(stat) > len(full) else ()
            reduced.append(_reduce_to(_to_full(stat, full + tail_k), elem, len(tail_k)))
        return tuple(reduced)


def _wrappers(fn: Distribution) -> list[Distribution]:
    chain = []
    while isinstance(fn, ExpandedDistribution | Independent | MaskedDistribution):
        chain.append(fn)
        fn = fn.base_dist
    return chain
