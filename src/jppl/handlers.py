"""Effect handlers: composable transformations of models.

Each handler wraps a callable (``trace(model).get_trace(*args)``, ``seed(model, 0)(*args)``)
or works as a context manager (``with seed(rng_seed=0): ...``). They compose in any order;
the innermost (the one closest to the model) sees each message first.

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

from jppl.distributions.distribution import Distribution
from jppl.primitives import Message, Messenger, apply_stack, check_obs

__all__ = [
    "Messenger",
    "block",
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
]

_RECORDED_TYPES = ("sample", "param", "deterministic", "plate")


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
    ``f(site) -> value or None``. Applies to sample, param, deterministic and plate sites.
    """

    _handler_name = "substitute"

    def __init__(self, fn=None, data: dict | None = None, substitute_fn: Callable | None = None):
        super().__init__(fn, data, substitute_fn)

    def process_message(self, msg: Message) -> None:
        if msg["type"] not in ("sample", "param", "deterministic", "plate"):
            return
        value = self._lookup(msg)
        if value is not None:
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

    By default every site is hidden. ``hide=[names]`` / ``expose=[names]``,
    ``expose_types=[types]`` or ``hide_fn(site) -> bool`` select which.
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
        if self.hide_fn(msg):
            msg["stop"] = True


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
        if msg["type"] != "sample" or msg["name"] not in self.data:
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
    """Prefix site names: ``scope(model, prefix="enc")`` renames ``w`` to ``enc/w``."""

    def __init__(self, fn=None, prefix: str = "", divider: str = "/"):
        if not isinstance(prefix, str) or not prefix:
            raise ValueError("scope: prefix must be a non-empty str.")
        self.prefix = prefix
        self.divider = divider
        super().__init__(fn)

    def process_message(self, msg: Message) -> None:
        if msg["type"] in _RECORDED_TYPES:
            msg["name"] = f"{self.prefix}{self.divider}{msg['name']}"


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
        super().__init__(fn)

    def process_message(self, msg: Message) -> None:
        if msg["type"] != "param":
            return
        if isinstance(self.prior, dict):
            prior = self.prior.get(msg["name"])
            if prior is None:
                return
        else:
            prior = self.prior
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


class infer_config(Messenger):
    """Update each site's ``infer`` dict with ``config_fn(site)``."""

    def __init__(self, fn=None, config_fn: Callable | None = None):
        if config_fn is None:
            raise ValueError("infer_config: config_fn is required.")
        self.config_fn = config_fn
        super().__init__(fn)

    def process_message(self, msg: Message) -> None:
        if msg["type"] in ("sample", "param"):
            msg["infer"] = {**msg["infer"], **(self.config_fn(msg) or {})}


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
