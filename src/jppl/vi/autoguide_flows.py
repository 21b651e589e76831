"""Normalizing-flow autoguides: a standard Normal pushed through learned autoregressive flows.

* :class:`AutoIAFNormal`: ``num_flows`` inverse autoregressive flows
  (:class:`~jppl.distributions.flows.InverseAutoregressiveTransform`, MADE networks).
* :class:`AutoBNAFNormal`: ``num_flows`` block neural autoregressive flows
  (:class:`~jppl.distributions.flows.BlockNeuralAutoregressiveTransform`).

Both are :class:`~jppl.vi.autoguide.AutoContinuous` guides over the flat unconstrained latent
vector ``z`` (``latent_dim >= 2``). Between consecutive flows the order of ``z`` is reversed
(``PermuteTransform``), so every coordinate can depend on every other. The network of flow
``i`` is one ``param`` site ``"{prefix}_arn__{i}$params"`` holding its Flax parameter pytree
(the names NumPyro's ``numpyro.module`` gives), initialized with a key from the enclosing
``seed`` handler.

The guide's density of its own draws uses the flows' intermediate values (log-scales and
log-Jacobian diagonals), so neither flow is inverted during SVI (BNAF has no inverse).
``median`` and ``quantiles`` are not available (as in NumPyro: the marginals of a flow have no
closed form); use ``sample_posterior``. ``get_transform(params)`` is the composed flow
``eps -> z`` and ``get_posterior(params)`` the ``TransformedDistribution`` of ``z``.

Flax (the ``nn`` extra) is needed: this module imports :mod:`jppl.distributions.flows`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen

from jppl.distributions.distribution import Distribution
from jppl.distributions.flows import (
    AutoregressiveNN,
    BlockNeuralAutoregressiveNN,
    BlockNeuralAutoregressiveTransform,
    InverseAutoregressiveTransform,
)
from jppl.distributions.transformed import TransformedDistribution
from jppl.distributions.transforms import ComposeTransform, PermuteTransform, Transform
from jppl.distributions.util import PyTreeObject
from jppl.model.initialization import init_to_uniform
from jppl.primitives import lazy_param, prng_key
from jppl.vi.autoguide import AutoContinuous

__all__ = ["AutoBNAFNormal", "AutoIAFNormal"]

Params = dict[str, Any]


# Compiled once per (hashable) module and shapes: run eagerly (sample_posterior, first guide
# call) a Flax network would otherwise compile each of its many small operations separately.
@functools.partial(jax.jit, static_argnums=0)
def _apply(module: linen.Module, params: Any, x: jax.Array) -> Any:
    return module.apply({"params": params}, x)


@functools.partial(jax.jit, static_argnums=0)
def _init(module: linen.Module, key: jax.Array, x: jax.Array) -> Any:
    return module.init(key, x)["params"]


class _BoundModule(PyTreeObject):
    """A Linen module applied with fixed parameters: ``net(x) = module.apply(params, x)``.

    The parameter pytree is the pytree child (so transforms holding it cross ``jit``); the
    module is static.
    """

    def __init__(self, module: linen.Module, params: Any):
        self.module = module
        self.params = params

    def __call__(self, x: jax.Array) -> Any:
        return _apply(self.module, self.params, x)

    def _tree_flatten(self):
        return (self.params,), self.module

    @classmethod
    def _tree_unflatten(cls, aux_data, children):
        return cls(aux_data, children[0])


def _check_int(owner: str, name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{owner}: {name} must be an int >= {low}, got {value!r}")
    return int(value)


class _AutoFlow(AutoContinuous):
    """Shared machinery: ``num_flows`` networks, reversal permutations, parameter sites."""

    def __init__(self, model: Callable, *, prefix: str, init_loc_fn: Callable, num_flows: int):
        self.num_flows = _check_int(type(self).__name__, "num_flows", num_flows, 1)
        self._nets: list[linen.Module] | None = None
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    # -- subclasses -------------------------------------------------------------------------
    def _make_network(self, i: int) -> linen.Module:
        raise NotImplementedError

    def _make_transform(self, net: _BoundModule) -> Transform:
        raise NotImplementedError

    # -- flows ------------------------------------------------------------------------------
    def _networks(self) -> list[linen.Module]:
        if self.latent_dim < 2:
            raise ValueError(
                f"{type(self).__name__}: the model has latent dim {self.latent_dim}; a flow "
                "needs at least 2 (use AutoDiagonalNormal instead)."
            )
        if self._nets is None:
            self._nets = [self._make_network(i) for i in range(self.num_flows)]
        return self._nets

    def _net_param_name(self, i: int) -> str:
        return f"{self.prefix}_arn__{i}$params"

    def _flows(self, net_params: Sequence[Any]) -> list[Transform]:
        """The flows ``eps -> z`` for the given parameter pytrees, one per network."""
        reverse = PermuteTransform(np.arange(self.latent_dim)[::-1])
        flows: list[Transform] = []
        for i, (net, params) in enumerate(zip(self._networks(), net_params, strict=True)):
            if i > 0:
                flows.append(reverse)
            flows.append(self._make_transform(_BoundModule(net, params)))
        return flows

    def _get_posterior(self) -> Distribution:
        nets = self._networks()
        example = jnp.zeros((self.latent_dim,), dtype=self._init_latent.dtype)

        def initializer(i: int) -> Callable[[], Any]:
            def init() -> Any:
                key = prng_key()
                if key is None:
                    raise ValueError(
                        f"{type(self).__name__}: initialising '{self._net_param_name(i)}' needs "
                        "a PRNG key: run the guide under jppl.handlers.seed (SVI does this)."
                    )
                return _init(nets[i], key, example)

            return init

        params = [lazy_param(self._net_param_name(i), initializer(i)) for i in range(len(nets))]
        return TransformedDistribution(self.get_base_dist(), self._flows(params))

    def _params_of(self, params: Params, what: str) -> list[Any]:
        self._require_setup(what)
        names = [self._net_param_name(i) for i in range(self.num_flows)]
        missing = [n for n in names if n not in params]
        if missing:
            raise KeyError(
                f"{type(self).__name__}.{what}: params lacks {missing}; pass the guide's "
                "parameters, e.g. svi.get_params(state)."
            )
        return [params[n] for n in names]

    # -- posterior --------------------------------------------------------------------------
    def get_transform(self, params: Params) -> Transform:
        """The composed flow ``eps (..., latent_dim) -> z`` for standard Normal ``eps``."""
        return ComposeTransform(self._flows(self._params_of(params, "get_transform")))

    def get_posterior(self, params: Params) -> Distribution:
        """``TransformedDistribution(get_base_dist(), get_transform(params))`` over ``z``."""
        return TransformedDistribution(self.get_base_dist(), self.get_transform(params))

    def _median_latents(self, params: Params) -> dict[str, jax.Array]:
        raise NotImplementedError(
            f"{type(self).__name__} has no median (a flow's marginals have no closed form); "
            "use sample_posterior and summarize the draws."
        )

    def quantiles(self, params: Params, quantiles) -> dict[str, jax.Array]:
        raise NotImplementedError(
            f"{type(self).__name__} has no quantiles (a flow's marginals have no closed form); "
            "use sample_posterior and summarize the draws."
        )


class AutoIAFNormal(_AutoFlow):
    """Standard Normal over ``z`` pushed through ``num_flows`` inverse autoregressive flows.

    Args:
        model: the model.
        prefix: prefix of the parameter names (``"{prefix}_arn__{i}$params"``).
        init_loc_fn: initialization strategy for the prototype run (the flows start near
            the identity map of a standard Normal, not at this point, as in NumPyro).
        num_flows: number of flows (default 3).
        hidden_dims: hidden widths of each MADE network, each ``>= latent_dim``
            (default ``[latent_dim, latent_dim]``).
        skip_connections: add masked input-to-output connections in each network.
        nonlinearity: elementwise activation of the networks (default ``jax.nn.elu``; NumPyro
            takes a stax layer such as ``stax.Elu``, here a plain function).
    """

    def __init__(
        self,
        model: Callable,
        *,
        prefix: str = "auto",
        init_loc_fn: Callable = init_to_uniform,
        num_flows: int = 3,
        hidden_dims: Sequence[int] | None = None,
        skip_connections: bool = False,
        nonlinearity: Callable[[jax.Array], jax.Array] = jax.nn.elu,
    ):
        if hidden_dims is not None:
            if isinstance(hidden_dims, int) or len(hidden_dims) == 0:
                raise ValueError(
                    f"AutoIAFNormal: hidden_dims must be a non-empty list of ints, got "
                    f"{hidden_dims!r}"
                )
            hidden_dims = tuple(
                _check_int("AutoIAFNormal", "each of hidden_dims", h, 1) for h in hidden_dims
            )
        if isinstance(nonlinearity, tuple) or not callable(nonlinearity):
            raise TypeError(
                "AutoIAFNormal: nonlinearity must be an elementwise function such as "
                f"jax.nn.elu (not a stax layer pair), got {nonlinearity!r}"
            )
        self._hidden_dims = hidden_dims
        self._skip_connections = bool(skip_connections)
        self._nonlinearity = nonlinearity
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn, num_flows=num_flows)

    def _make_network(self, i: int) -> linen.Module:
        d = self.latent_dim
        hidden = (d, d) if self._hidden_dims is None else self._hidden_dims
        if min(hidden) < d:
            raise ValueError(
                f"AutoIAFNormal: each of hidden_dims must be >= latent_dim={d}, got {list(hidden)}"
            )
        return AutoregressiveNN(
            input_dim=d,
            hidden_dims=hidden,
            permutation=tuple(range(d)),
            skip_connections=self._skip_connections,
            nonlinearity=self._nonlinearity,
        )

    def _make_transform(self, net: _BoundModule) -> Transform:
        return InverseAutoregressiveTransform(net)


class AutoBNAFNormal(_AutoFlow):
    """Standard Normal over ``z`` pushed through ``num_flows`` block neural autoregressive
    flows (De Cao, Titov and Aziz, 2019).

    Args:
        model: the model.
        prefix: prefix of the parameter names (``"{prefix}_arn__{i}$params"``).
        init_loc_fn: initialization strategy for the prototype run (as for
            :class:`AutoIAFNormal`, the flows do not start at this point).
        num_flows: number of flows (default 1); all but the last have a gated residual
            connection.
        hidden_factors: hidden layer ``k`` of each network has ``hidden_factors[k]`` units per
            latent dimension (default ``[8, 8]``).
    """

    def __init__(
        self,
        model: Callable,
        *,
        prefix: str = "auto",
        init_loc_fn: Callable = init_to_uniform,
        num_flows: int = 1,
        hidden_factors: Sequence[int] = (8, 8),
    ):
        if isinstance(hidden_factors, int) or len(hidden_factors) == 0:
            raise ValueError(
                f"AutoBNAFNormal: hidden_factors must be a non-empty list of ints, got "
                f"{hidden_factors!r}"
            )
        self._hidden_factors = tuple(
            _check_int("AutoBNAFNormal", "each of hidden_factors", h, 1) for h in hidden_factors
        )
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn, num_flows=num_flows)

    def _make_network(self, i: int) -> linen.Module:
        return BlockNeuralAutoregressiveNN(
            input_dim=self.latent_dim,
            hidden_factors=self._hidden_factors,
            residual="gated" if i < self.num_flows - 1 else None,
        )

    def _make_transform(self, net: _BoundModule) -> Transform:
        return BlockNeuralAutoregressiveTransform(net)
