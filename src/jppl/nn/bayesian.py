"""Mean-field Gaussian Bayesian versions of any Flax module: a matched model and guide.

:class:`BayesianModule` lifts every parameter leaf of a Flax module (Linen or NNX) to a latent
weight, as :func:`~jppl.nn.random_flax_module` does, and pairs that model side with a
mean-field Gaussian guide over the same sites::

    bnn = BayesianModule("net", MLP(rngs=nnx.Rngs(0)), prior=normal_prior(1.0), init_scale=1e-2)

    def model(x, y=None):
        logits = bnn.model()(x)                 # weights ~ prior (sample sites "net/<path>")
        with jppl.plate("data", x.shape[0]):
            jppl.sample("y", dist.CategoricalLogits(logits), obs=y)

    def guide(x, y=None):
        bnn.guide()                             # weights ~ N(loc, scale), same site names

    svi = SVI(model, guide, optax.adam(1e-3), TraceMeanField_ELBO(num_particles=4))

Every layer type is covered by lifting rather than by a dedicated layer class: ``nnx.Linear``
/ ``linen.Dense``, ``Conv``, ``Embed``, ``MultiHeadAttention`` and any composition of them
become Bayesian the same way (their leaves are just arrays). A separate local-
reparameterization or Flipout layer is not provided: those tricks need the layer to see the
weight *distribution* while the model here only sees sampled weights (which is what makes the
model/guide pair generic), and with jppl's ELBO every particle already draws its own weights
(particles are vmapped over independent keys, so they can be sharded over a ``sample`` mesh
axis later).

Sites
    Model: ``f"{name}/{path}"`` ``sample`` sites with the prior broadcast to the leaf shape (all
    dims are event dims), exactly those of :func:`random_flax_module`. Guide: the same sample
    sites with ``Normal(loc, scale).to_event(ndim)``, and for each the ``param`` sites
    ``f"{name}/{path}$loc"`` (initialized from the Flax initialization) and
    ``f"{name}/{path}$scale"`` (constraint ``softplus_positive``, initialized to
    ``init_scale``). Leaves that a dict prior does not cover stay deterministic: both sides use
    the ``param`` site ``f"{name}$params"``.

KL weight (tempering)
    ``kl_weight = beta`` multiplies the log densities of the weight sites, and only those, in
    both model and guide (a :class:`~jppl.handlers.scale` handler around them). The network's
    outputs and the likelihood are untouched, so the ELBO loss becomes
    ``-E_q[log p(y | x, w)] + beta * KL(q(w) || p(w))``. With ``TraceMeanField_ELBO`` the KL of
    a Normal prior is analytic (the model and guide weight sites carry the same scale); a
    scale-mixture prior falls back to Monte Carlo. ``beta`` must be > 0; use the same value (the
    same Python float, or the same traced array object) on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen, nnx

from jppl.distributions import constraints
from jppl.distributions.continuous import Normal
from jppl.handlers import scale
from jppl.nn.module import (
    Prior,
    _adapter,
    _BoundModule,
    _check_prior,
    _LinenAdapter,
    _path_name,
    _prior_for,
    random_flax_module,
)
from jppl.nn.priors import normal_prior
from jppl.primitives import lazy_param, param, prng_key, sample

__all__ = ["BayesianModule"]

PyTree = Any
InitScale = float | Callable[[str, tuple[int, ...]], float]


def _check_kl_weight(beta, where: str):
    if isinstance(beta, jax.core.Tracer):
        return beta
    if isinstance(beta, bool) or not (
        isinstance(beta, int | float) or (hasattr(beta, "shape") and jnp.shape(beta) == ())
    ):
        raise TypeError(f"{where}: kl_weight must be a positive scalar, got {beta!r}")
    if not (math.isfinite(float(beta)) and float(beta) > 0):
        raise ValueError(f"{where}: kl_weight must be finite and > 0, got {beta!r}")
    return beta


def _weight_scale(beta) -> AbstractContextManager:
    """``scale(beta)`` around the weight sites, or nothing when ``beta`` is the number 1."""
    if isinstance(beta, int | float) and beta == 1:
        return nullcontext()
    return scale(scale=beta)


class BayesianModule:
    """A Flax module with mean-field Gaussian weights: matched :meth:`model` and :meth:`guide`.

    Args:
        name: site name prefix (sites ``f"{name}/{path}"``, see the module docstring).
        module: a ``flax.linen.Module`` or ``flax.nnx.Module`` instance without non-parameter
            variables (no batch statistics).
        prior: the weight prior, as for :func:`~jppl.nn.random_flax_module`: a Distribution
            for every leaf, a dict ``{path or leaf name: Distribution}`` (uncovered leaves stay
            deterministic), or a callable ``(path, shape) -> Distribution``. Default
            ``normal_prior(1.0)``. See :mod:`jppl.nn.priors`.
        init_scale: initial posterior standard deviation of every weight (> 0), or a callable
            ``(path, shape) -> float``.
        kl_weight: default tempering factor ``beta > 0`` of the weight sites' log densities.
        input_shape, apply_rng, **init_kwargs: as in :func:`~jppl.nn.flax_module` (Linen needs
            ``input_shape`` or example inputs for ``init``).

    Raises:
        TypeError/ValueError: bad module, prior, ``init_scale`` or ``kl_weight``, naming which.
    """

    def __init__(
        self,
        name: str,
        module: linen.Module | nnx.Module,
        prior: Prior | None = None,
        *,
        init_scale: InitScale = 1e-2,
        kl_weight: float = 1.0,
        input_shape: Sequence[int] | None = None,
        apply_rng: Sequence[str] | None = None,
        **init_kwargs,
    ):
        self.name = name
        self.module = module
        self.prior = normal_prior(1.0) if prior is None else prior
        self.kl_weight = _check_kl_weight(kl_weight, f"BayesianModule '{name}'")
        self._input_shape = input_shape
        self._apply_rng = apply_rng
        self._init_kwargs = init_kwargs
        adapter = self._make_adapter()
        shapes, state_shapes = adapter.shapes()
        if state_shapes is not None:
            raise ValueError(
                f"BayesianModule '{name}': the module has non-parameter variables "
                f"({sorted(state_shapes)}), e.g. batch statistics; BayesianModule supports "
                "modules whose variables are all parameters."
            )
        flat, self._treedef = jax.tree_util.tree_flatten_with_path(shapes)
        self.paths: list[str] = [_path_name(p) for p, _ in flat]
        self.shapes: list[tuple[int, ...]] = [tuple(leaf.shape) for _, leaf in flat]
        self._dtypes = [leaf.dtype for _, leaf in flat]
        if not self.paths:
            raise ValueError(f"BayesianModule '{name}': the module has no parameters.")
        self._check_prior()
        self._random = [
            _prior_for(self.prior, p, s) is not None
            for p, s in zip(self.paths, self.shapes, strict=True)
        ]
        self._init_scales = [self._resolve_init_scale(init_scale, p, s) for p, s in self._leaves()]

    # -- construction helpers -----------------------------------------------------------------
    def _make_adapter(self):
        return _adapter(
            self.name, self.module, self._input_shape, self._apply_rng, None, self._init_kwargs
        )

    def _leaves(self):
        return zip(self.paths, self.shapes, strict=True)

    def _check_prior(self) -> None:
        # random_flax_module checks again when it runs; checking here gives an early error.
        _check_prior(self.prior, self.paths, f"BayesianModule '{self.name}'")

    def _resolve_init_scale(self, init_scale: InitScale, path: str, shape) -> float:
        value = init_scale(path, shape) if callable(init_scale) else init_scale
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(
                f"BayesianModule '{self.name}': init_scale for '{path}' must be a float > 0, "
                f"got {value!r}."
            )
        if not (math.isfinite(value) and value > 0):
            raise ValueError(
                f"BayesianModule '{self.name}': init_scale for '{path}' must be finite and > 0, "
                f"got {value!r}."
            )
        return float(value)

    def _beta(self, kl_weight):
        if kl_weight is None:
            return self.kl_weight
        return _check_kl_weight(kl_weight, f"BayesianModule '{self.name}'")

    # -- names --------------------------------------------------------------------------------
    @property
    def site_names(self) -> list[str]:
        """Names of the latent weight sites (shared by model and guide), in leaf order."""
        return [f"{self.name}/{p}" for p, r in zip(self.paths, self._random, strict=True) if r]

    def loc_name(self, path: str) -> str:
        """``param`` site of the posterior mean of leaf ``path``."""
        return f"{self.name}/{path}$loc"

    def scale_name(self, path: str) -> str:
        """``param`` site of the posterior standard deviation of leaf ``path``."""
        return f"{self.name}/{path}$scale"

    # -- model and guide ----------------------------------------------------------------------
    def model(self, *, kl_weight=None) -> Callable[..., Any]:
        """Model side (call inside a model): sample the weights from the prior.

        Returns:
            ``net(*inputs, **kwargs)`` applying the module with the sampled weights.
        """
        with _weight_scale(self._beta(kl_weight)):
            return random_flax_module(
                self.name,
                self.module,
                self.prior,
                input_shape=self._input_shape,
                apply_rng=self._apply_rng,
                **self._init_kwargs,
            )

    def guide(self, *, kl_weight=None) -> Callable[..., Any]:
        """Guide side (call inside a guide): weights ``~ Normal(loc, scale)``, independently.

        Returns:
            ``net(*inputs, **kwargs)`` applying the module with the sampled weights (e.g. for
            predictions from the guide alone, see :func:`jppl.nn.sample_predictions`).
        """
        adapter = self._make_adapter()
        key = prng_key() if isinstance(adapter, _LinenAdapter) else None
        cache: list = []

        def init_leaves() -> list:
            if not cache:
                cache.extend(jax.tree_util.tree_leaves(adapter.initial_params(key)))
            return cache

        fixed = None
        if not all(self._random):
            fixed = jax.tree_util.tree_leaves(
                lazy_param(f"{self.name}$params", lambda: adapter.initial_params(key))
            )
        leaves = []
        with _weight_scale(self._beta(kl_weight)):
            for i, (path, shape) in enumerate(self._leaves()):
                if not self._random[i]:
                    leaves.append(fixed[i])
                    continue
                loc = lazy_param(self.loc_name(path), lambda i=i: init_leaves()[i])
                std = param(
                    self.scale_name(path),
                    jnp.full(shape, self._init_scales[i], dtype=self._dtypes[i]),
                    constraint=constraints.softplus_positive,
                )
                leaves.append(sample(f"{self.name}/{path}", Normal(loc, std).to_event(len(shape))))
        params = jax.tree_util.tree_unflatten(self._treedef, leaves)
        return _BoundModule(adapter, params, None)

    def predict(self, *inputs, **kwargs):
        """One draw of the network output from the guide: ``self.guide()(*inputs, **kwargs)``.

        Needs the guide's parameters substituted and a ``seed`` handler; use it through
        :func:`jppl.nn.sample_predictions`.
        """
        return self.guide()(*inputs, **kwargs)

    # -- reading fitted parameters -------------------------------------------------------------
    def posterior(self, params: dict[str, Any]) -> dict[str, tuple[jax.Array, jax.Array]]:
        """``{path: (loc, scale)}`` of the lifted leaves from (constrained) guide params.

        Raises:
            KeyError: ``params`` lacks a loc/scale site of this module.
        """
        out = {}
        for path, random in zip(self.paths, self._random, strict=True):
            if not random:
                continue
            names = (self.loc_name(path), self.scale_name(path))
            missing = [n for n in names if n not in params]
            if missing:
                raise KeyError(f"BayesianModule '{self.name}': params lack the sites {missing}.")
            out[path] = (params[names[0]], params[names[1]])
        return out

    def __repr__(self) -> str:
        return f"BayesianModule('{self.name}', {len(self.site_names)} weight sites)"
