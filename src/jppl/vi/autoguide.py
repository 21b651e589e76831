"""Automatic guides: variational families built from a model's latent sites.

An autoguide is a callable object ``guide(*args, **kwargs)`` that, like a hand-written guide,
declares its variational parameters with :func:`jppl.param` and draws every latent sample site
of the model with :func:`jppl.sample`, so it plugs into ``SVI(model, guide, optimizer, loss)``.

On its first call an autoguide runs the model once (with a key from the enclosing ``seed``
handler, inside ``block`` so none of the model's sites leak out) to record each latent site's
shape, support and plates, and to find an initial point with ``init_loc_fn``. Inference then
works in the *unconstrained* space: a site with support ``S`` is drawn as
``biject_to(S)(u)`` with ``u`` real, and the guide density includes the log-Jacobian of that
map, so ELBO estimates are correct for constrained sites.

Families (parameter names as in NumPyro; ``prefix`` defaults to ``"auto"``):

* :class:`AutoNormal`: an independent Normal per site, parameters ``{site}_{prefix}_loc`` and
  ``{site}_{prefix}_scale``; respects plates, so subsampling works.
* :class:`AutoDelta`: a point estimate (MAP) per site, ``{site}_{prefix}_loc`` (constrained).
* :class:`AutoDiagonalNormal`: one flat vector over all latents with a diagonal Normal,
  ``{prefix}_loc`` and ``{prefix}_scale``.
* :class:`AutoMultivariateNormal`: full-covariance Normal, ``{prefix}_loc`` and
  ``{prefix}_scale_tril``.
* :class:`AutoLowRankMultivariateNormal`: low rank plus diagonal covariance, ``{prefix}_loc``,
  ``{prefix}_cov_factor`` and ``{prefix}_scale``.
* :class:`AutoLaplaceApproximation`: the MAP point ``{prefix}_loc`` during SVI, then a Normal
  whose covariance is the inverse Hessian of the potential energy there.
* :class:`AutoGuideList`: concatenates guides for disjoint sets of sites.

The flat guides draw an auxiliary site ``_{prefix}_latent`` (``infer={"is_auxiliary": True}``)
holding the unconstrained vector, and then each model site as a ``Delta`` at its constrained
value whose ``log_density`` is ``-log|det J|`` of the map from the unconstrained value, so the
guide's log density counts the Jacobian exactly once.

As in NumPyro, ``median(params)`` and ``sample_posterior(...)`` return the latent sites and
also the model's deterministic sites computed from them, including the sites that a
``reparam`` handler rebuilds (e.g. ``x`` from ``x_decentered`` under ``LocScaleReparam``): the
model runs with the latent values substituted and every plate at its full size.
``quantiles`` returns the latent sites only (a function of quantiles is not a quantile).

Only continuous latent sites are supported; a discrete latent site raises a ``ValueError``
naming it (marginalize it out, or hide it with ``block`` and guide it by hand).

Supports are taken from the prototype run. A support whose bounds depend on other latent
variables (e.g. ``Uniform(0, x)``) is therefore frozen at its initial bounds, as in NumPyro.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

from jppl.distributions import constraints
from jppl.distributions.continuous import Normal
from jppl.distributions.distribution import Delta, Distribution
from jppl.distributions.multivariate import LowRankMultivariateNormal, MultivariateNormal
from jppl.distributions.transformed import TransformedDistribution
from jppl.distributions.transforms import (
    AffineTransform,
    IdentityTransform,
    IndependentTransform,
    LowerCholeskyAffine,
    Transform,
    biject_to,
)
from jppl.distributions.util import sum_rightmost
from jppl.handlers import block, seed, substitute, trace
from jppl.model.density import potential_energy
from jppl.model.initialization import init_to_median
from jppl.primitives import (
    CondIndepStackFrame,
    Messenger,
    get_mask,
    param,
    plate,
    prng_key,
    sample,
    subsample,
)

__all__ = [
    "AutoContinuous",
    "AutoDelta",
    "AutoDiagonalNormal",
    "AutoGuide",
    "AutoGuideList",
    "AutoLaplaceApproximation",
    "AutoLowRankMultivariateNormal",
    "AutoMultivariateNormal",
    "AutoNormal",
]

Params = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Prototype information
# ---------------------------------------------------------------------------------------------


@dataclass
class _LatentSite:
    """What an autoguide records about one latent sample site of the model.

    Shapes are *full* shapes: a dim of a subsampled plate has the plate's full size.
    """

    name: str
    support: constraints.Constraint
    transform: Transform  # unconstrained -> support
    event_dim: int  # event dims of the constrained value
    unconstrained_event_dim: int  # event dims of the unconstrained value
    shape: tuple[int, ...]  # constrained value
    unconstrained_shape: tuple[int, ...]
    frames: tuple[CondIndepStackFrame, ...]  # enclosing plates, outermost first
    init_value: jax.Array  # constrained, ``shape``
    init_unconstrained: jax.Array  # ``unconstrained_shape``

    @property
    def is_identity(self) -> bool:
        """True when the support is the real space (no transform needed)."""
        t = self.transform
        while isinstance(t, IndependentTransform):
            t = t.base_transform
        return isinstance(t, IdentityTransform)


def _repeat_to(x: jax.Array, axis: int, size: int) -> jax.Array:
    """Tile ``x`` periodically along ``axis`` to length ``size``."""
    n = jnp.shape(x)[axis]
    if n == size:
        return x
    return jnp.take(x, jnp.arange(size) % n, axis=axis)


def _strong(x) -> jax.Array:
    """``x`` as an array that is not weakly typed.

    Parameter initial values must not be weakly typed: the optimizer's updates are not, and a
    state whose types change between steps makes ``jit`` compile the step again.
    """
    x = jnp.asarray(x)
    return jnp.asarray(x, dtype=x.dtype)


def _transform_for(site: dict, owner: str) -> Transform:
    try:
        return biject_to(site["fn"].support)
    except NotImplementedError as e:
        raise NotImplementedError(
            f"{owner}: latent site '{site['name']}' has support {site['fn'].support!r}, which no "
            f"bijection from the real space reaches, so no autoguide can cover it. ({e})"
        ) from e


def _discrete_error(owner: str, site: dict) -> ValueError:
    name = site["name"]
    return ValueError(
        f"{owner}: latent site '{name}' is discrete ({type(site['fn']).__name__}); autoguides "
        "only cover continuous latent sites. Enumerate it (config_enumerate(model) with "
        "TraceEnum_ELBO: the guide then leaves it out), marginalize it out of the model (e.g. "
        "with a mixture distribution), observe it, or hide it from the autoguide with "
        f"block(model, hide=['{name}']) and guide it by hand (combine guides with "
        "AutoGuideList)."
    )


class _full_plates(Messenger):
    """Run every plate at its full size (no minibatch), to rebuild sites from full-size latents."""

    def resize_plate(self, name: str, size: int, subsample_size: int, shard: str | None):
        return size, size, shard


def _with_deterministic(
    model: Callable,
    params: Params,
    latents: dict[str, jax.Array],
    args: tuple,
    kwargs: dict,
    sample_shape: tuple[int, ...],
) -> dict[str, jax.Array]:
    """``latents`` plus the model's deterministic sites computed from them.

    The deterministic sites include the sites a ``reparam`` handler rebuilds from auxiliary
    latents (e.g. ``x`` from ``x_decentered``). The model runs with its latent sites
    substituted by ``latents`` (``sample_shape + site shape`` each, full plate sizes) and its
    ``param`` sites by ``params``, every plate at its full size.

    Returns ``{site name: array of shape sample_shape + site shape}``.
    """

    def one(values):
        def value_of(site):
            # Only sample and param sites: a guide parameter never overrides another site.
            if site["type"] == "param":
                return params.get(site["name"])
            return values.get(site["name"]) if site["type"] == "sample" else None

        with block():
            model_trace = trace(
                _full_plates(seed(substitute(model, substitute_fn=value_of), rng_seed=0))
            ).get_trace(*args, **kwargs)
        return {
            name: site["value"]
            for name, site in model_trace.items()
            if site["type"] == "deterministic" and name not in latents
        }

    if not sample_shape:
        return {**latents, **one(latents)}
    n = math.prod(sample_shape)
    flat = {k: jnp.reshape(v, (n,) + jnp.shape(v)[len(sample_shape) :]) for k, v in latents.items()}
    out = jax.vmap(one)(flat)
    out = {k: jnp.reshape(v, sample_shape + jnp.shape(v)[1:]) for k, v in out.items()}
    return {**latents, **out}


# ---------------------------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------------------------


class AutoGuide:
    """Base class of automatic guides.

    Args:
        model: the model (a callable using jppl primitives).
        prefix: prefix of the names of the guide's parameters (and auxiliary sites).
        init_loc_fn: an initialization strategy (:mod:`jppl.model.initialization`) giving the
            initial location of each latent site.
        create_plates: optional ``create_plates(*args, **kwargs) -> plate or list of plates``
            giving the guide's plates (e.g. to choose their ``subsample_size``); plates of the
            model that it does not return are created with the model's sizes.

    Calling the guide with the model's arguments draws every latent site it covers and returns
    ``{site name: constrained value}``. After the first call, ``prototype_trace`` holds the
    model's trace from the prototype run.
    """

    def __init__(
        self,
        model: Callable,
        *,
        prefix: str = "auto",
        init_loc_fn: Callable = init_to_median,
        create_plates: Callable | None = None,
    ):
        if not callable(model):
            raise TypeError(f"{type(self).__name__}: model must be callable, got {model!r}")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"{type(self).__name__}: prefix must be a non-empty str.")
        self.model = model
        self.prefix = prefix
        self.init_loc_fn = init_loc_fn
        self.create_plates = create_plates
        self.prototype_trace: dict | None = None
        self._sites: dict[str, _LatentSite] = {}
        # plate name -> (size, subsample_size, dim) for plates enclosing latent sites
        self._plates: dict[str, tuple[int, int, int]] = {}
        self._plate_shards: dict[str, str | None] = {}
        self._model_args: tuple = ()
        self._model_kwargs: dict = {}

    # -- names ------------------------------------------------------------------------------
    def _site_param_name(self, site: str, suffix: str) -> str:
        """Name of a per-site parameter, e.g. ``"{site}_auto_loc"`` (as NumPyro)."""
        return f"{site}_{self.prefix}_{suffix}"

    def _param_name(self, suffix: str) -> str:
        """Name of a guide-wide parameter, e.g. ``"auto_loc"``."""
        return f"{self.prefix}_{suffix}"

    @property
    def site_names(self) -> list[str]:
        """Names of the latent sites this guide covers (after the first call)."""
        return list(self._sites)

    # -- prototype --------------------------------------------------------------------------
    def _setup_prototype(self, *args, **kwargs) -> None:
        """Run the model once and record its latent sites; see the class docstring."""
        owner = type(self).__name__
        key = prng_key()
        if key is None:
            key = jax.random.key(0)
        with block():
            model_trace = trace(
                substitute(seed(self.model, rng_seed=key), substitute_fn=self.init_loc_fn)
            ).get_trace(*args, **kwargs)
        plate_sizes = {
            name: (int(site["args"][0]), int(site["args"][1]))
            for name, site in model_trace.items()
            if site["type"] == "plate"
        }
        sites: dict[str, _LatentSite] = {}
        plates: dict[str, tuple[int, int, int]] = {}
        shards: dict[str, str | None] = {}
        for name, site in model_trace.items():
            if site["type"] != "sample" or site["is_observed"]:
                continue
            if site["infer"].get("is_auxiliary"):
                continue
            if site["fn"].is_discrete:
                if site["infer"].get("enumerate") == "parallel":
                    continue  # summed out of the model by TraceEnum_ELBO
                raise _discrete_error(owner, site)
            transform = _transform_for(site, owner)
            value = jnp.asarray(site["value"])
            unconstrained = transform.inv(value)
            event_dim = site["fn"].event_dim
            u_event_dim = event_dim + jnp.ndim(unconstrained) - jnp.ndim(value)
            frames = tuple(reversed(site["cond_indep_stack"]))
            for frame in frames:
                size, sub = plate_sizes.get(frame.name, (frame.size, frame.size))
                plates[frame.name] = (size, sub, frame.dim)
                shards[frame.name] = frame.shard
                if size != sub:
                    # Parameters cover the full plate: repeat the minibatch's initial values.
                    value = _repeat_to(value, jnp.ndim(value) - event_dim + frame.dim, size)
                    unconstrained = _repeat_to(
                        unconstrained, jnp.ndim(unconstrained) - u_event_dim + frame.dim, size
                    )
            sites[name] = _LatentSite(
                name=name,
                support=site["fn"].support,
                transform=transform,
                event_dim=event_dim,
                unconstrained_event_dim=int(u_event_dim),
                shape=tuple(jnp.shape(value)),
                unconstrained_shape=tuple(jnp.shape(unconstrained)),
                frames=frames,
                init_value=_strong(value),
                init_unconstrained=_strong(unconstrained),
            )
        self.prototype_trace = model_trace
        self._sites = sites
        self._plates = plates
        self._plate_shards = shards
        self._model_args, self._model_kwargs = args, dict(kwargs)

    def _ensure_setup(self, rng_key, args: tuple, kwargs: dict) -> None:
        """Set up the prototype outside a guide call (e.g. in ``sample_posterior``)."""
        if self.prototype_trace is not None:
            return
        with seed(rng_seed=jax.random.key(0) if rng_key is None else rng_key):
            self._setup_prototype(*args, **kwargs)

    def _require_setup(self, what: str) -> None:
        if self.prototype_trace is None:
            raise RuntimeError(
                f"{type(self).__name__}.{what}: the guide has not been run yet; call it once "
                "with the model's arguments (e.g. through SVI) first."
            )

    # -- plates -----------------------------------------------------------------------------
    def _draw_plate_indices(self, *args, **kwargs) -> dict[str, tuple[int, int, int, Any]]:
        """Enter each plate that encloses a latent site once, recording its indices.

        Returns ``{plate name: (size, subsample_size, dim, indices)}``; the indices of a
        subsampled plate are drawn with a key from the enclosing ``seed`` handler (and the
        model, replayed against the guide's trace, uses the same minibatch).
        """
        user: dict[str, plate] = {}
        if self.create_plates is not None:
            made = self.create_plates(*args, **kwargs)
            if isinstance(made, plate):
                made = [made]
            for p in made:
                if not isinstance(p, plate):
                    raise TypeError(
                        f"{type(self).__name__}: create_plates must return jppl.plate objects, "
                        f"got {type(p).__name__}."
                    )
                user[p.name] = p
        drawn = {}
        for name, (size, sub, dim) in self._plates.items():
            p = user.get(name)
            if p is None:
                p = plate(name, size, subsample_size=sub, dim=dim, shard=self._plate_shards[name])
            elif p.size != size:
                raise ValueError(
                    f"{type(self).__name__}: create_plates gave plate '{name}' of size {p.size}, "
                    f"but the model's plate has size {size}."
                )
            with p as indices:
                pass
            drawn[name] = (size, p.subsample_size, dim, indices)
        return drawn

    @contextmanager
    def _site_plates(self, site: _LatentSite, drawn: dict) -> Iterator[None]:
        """Enter the plates of ``site`` with the minibatch indices recorded in ``drawn``."""
        if not site.frames:
            yield
            return
        with ExitStack() as stack:
            stack.enter_context(substitute(data={f.name: drawn[f.name][3] for f in site.frames}))
            for frame in site.frames:
                size, sub, dim, _ = drawn[frame.name]
                stack.enter_context(
                    plate(frame.name, size, subsample_size=sub, dim=dim, shard=frame.shard)
                )
            yield

    # -- interface --------------------------------------------------------------------------
    def __call__(self, *args, **kwargs) -> dict[str, jax.Array]:
        """Draw the latent sites; returns ``{site name: constrained value}``."""
        raise NotImplementedError

    def sample_posterior(
        self, rng_key, params: Params, *args, sample_shape: Sequence[int] = (), **kwargs
    ) -> dict[str, jax.Array]:
        """Draw from the fitted guide.

        Args:
            rng_key: a PRNG key.
            params: the guide's (constrained) parameters, e.g. ``svi.get_params(state)``.
            *args, **kwargs: the model's arguments (default: those of the guide's first
                call); they set up the guide if it was never run, and the model runs with
                them to compute its deterministic sites.
            sample_shape: leading shape of the draws.

        Returns:
            ``{site name: array of shape sample_shape + site shape}`` (full plate sizes) for
            the latent sites and, as in NumPyro, the model's deterministic sites (including
            sites rebuilt by ``reparam``, e.g. ``x`` from ``x_decentered``) computed from them.
        """
        self._ensure_setup(rng_key, args, kwargs)
        sample_shape = tuple(sample_shape)
        latents = self._sample_latents(rng_key, params, sample_shape)
        return self._add_deterministic(params, latents, args, kwargs, sample_shape)

    def median(self, params: Params) -> dict[str, jax.Array]:
        """The posterior median of each latent site: ``{site name: array of site shape}``,
        plus the model's deterministic sites (including sites rebuilt by ``reparam``) at it,
        computed with the model arguments of the guide's first call."""
        self._require_setup("median")
        return self._add_deterministic(params, self._median_latents(params), (), {}, ())

    def _sample_latents(
        self, rng_key, params: Params, sample_shape: tuple[int, ...]
    ) -> dict[str, jax.Array]:
        """Draws of the latent sites only: ``sample_shape + site shape`` each."""
        raise NotImplementedError(f"{type(self).__name__} does not implement sample_posterior().")

    def _median_latents(self, params: Params) -> dict[str, jax.Array]:
        """The median of the latent sites only."""
        raise NotImplementedError(f"{type(self).__name__} does not implement median().")

    def _add_deterministic(
        self,
        params: Params,
        latents: dict[str, jax.Array],
        args: tuple,
        kwargs: dict,
        sample_shape: tuple[int, ...],
    ) -> dict[str, jax.Array]:
        """``latents`` plus the model's deterministic sites (none to compute: ``latents``)."""
        if not any(s["type"] == "deterministic" for s in self.prototype_trace.values()):
            return latents
        if not args and not kwargs:
            args, kwargs = self._model_args, self._model_kwargs
        return _with_deterministic(self.model, params, latents, args, kwargs, sample_shape)

    def quantiles(self, params: Params, quantiles) -> dict[str, jax.Array]:
        """Marginal posterior quantiles: ``{site name: array of shape q.shape + site shape}``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement quantiles().")

    def get_transform(self, params: Params) -> Transform:
        raise NotImplementedError(f"{type(self).__name__} does not implement get_transform().")

    def get_posterior(self, params: Params) -> Distribution:
        raise NotImplementedError(f"{type(self).__name__} does not implement get_posterior().")


def _minibatch(value: jax.Array, full_shape: tuple[int, ...], event_dim: int) -> jax.Array:
    """The minibatch slice of a full-size parameter inside the site's plates.

    A ``param`` with an ``event_dim`` inside a subsampled plate comes back already sliced
    where the plates slice params (as NumPyro's do); otherwise slice it here.
    """
    if tuple(jnp.shape(value)) != tuple(full_shape):
        return value
    return subsample(value, event_dim=event_dim)


def _split_keys(rng_key, n: int):
    return jax.random.split(rng_key, n)


# ---------------------------------------------------------------------------------------------
# Per-site guides
# ---------------------------------------------------------------------------------------------


class AutoNormal(AutoGuide):
    """Mean-field Normal guide in the unconstrained space, one Normal per latent site.

    Site ``x`` gets parameters ``{x}_{prefix}_loc`` and ``{x}_{prefix}_scale`` (positive,
    initialized to ``init_scale``), of the unconstrained shape of ``x`` with plate dims at full
    size; inside a subsampled plate the guide uses the minibatch slice of them. ``x`` is drawn
    as ``biject_to(support)(u)``, ``u ~ Normal(loc, scale)`` (reparameterized), with the
    Jacobian in the guide's density.
    """

    scale_constraint = constraints.softplus_positive

    def __init__(
        self,
        model: Callable,
        *,
        prefix: str = "auto",
        init_loc_fn: Callable = init_to_median,
        init_scale: float = 0.1,
        create_plates: Callable | None = None,
    ):
        if not init_scale > 0:
            raise ValueError(f"AutoNormal: init_scale must be > 0, got {init_scale}")
        self._init_scale = init_scale
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn, create_plates=create_plates)

    def __call__(self, *args, **kwargs) -> dict[str, jax.Array]:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        drawn = self._draw_plate_indices(*args, **kwargs)
        result = {}
        for name, site in self._sites.items():
            event_dim = site.unconstrained_event_dim
            with self._site_plates(site, drawn):
                loc = param(
                    self._site_param_name(name, "loc"),
                    site.init_unconstrained,
                    event_dim=event_dim,
                )
                scale = param(
                    self._site_param_name(name, "scale"),
                    jnp.full(
                        site.unconstrained_shape,
                        self._init_scale,
                        dtype=site.init_unconstrained.dtype,
                    ),
                    constraint=self.scale_constraint,
                    event_dim=event_dim,
                )
                loc = _minibatch(loc, site.unconstrained_shape, event_dim)
                scale = _minibatch(scale, site.unconstrained_shape, event_dim)
                fn: Distribution = Normal(loc, scale).to_event(event_dim)
                if not site.is_identity:
                    fn = TransformedDistribution(fn, site.transform)
                result[name] = sample(name, fn)
        return result

    def _locs_scales(self, params: Params) -> tuple[dict, dict]:
        locs = {k: params[self._site_param_name(k, "loc")] for k in self._sites}
        scales = {k: params[self._site_param_name(k, "scale")] for k in self._sites}
        return locs, scales

    def _sample_latents(
        self, rng_key, params: Params, sample_shape: tuple[int, ...]
    ) -> dict[str, jax.Array]:
        locs, scales = self._locs_scales(params)
        keys = _split_keys(rng_key, max(len(locs), 1))
        out = {}
        for key, (name, site) in zip(keys, self._sites.items(), strict=False):
            loc, scale = locs[name], scales[name]
            eps = jax.random.normal(key, sample_shape + jnp.shape(loc), jnp.result_type(loc))
            out[name] = site.transform(loc + scale * eps)
        return out

    def _median_latents(self, params: Params) -> dict[str, jax.Array]:
        locs, _ = self._locs_scales(params)
        return {name: site.transform(locs[name]) for name, site in self._sites.items()}

    def quantiles(self, params: Params, quantiles) -> dict[str, jax.Array]:
        """Quantiles of each coordinate (exact for elementwise monotone supports).

        Returns ``{site name: array of shape q.shape + site shape}``.
        """
        self._require_setup("quantiles")
        q = jnp.asarray(quantiles)
        locs, scales = self._locs_scales(params)
        out = {}
        for name, site in self._sites.items():
            loc, scale = locs[name], scales[name]
            z = jnp.reshape(ndtri(q), q.shape + (1,) * jnp.ndim(loc))
            out[name] = site.transform(loc + scale * z)
        return out


class AutoDelta(AutoGuide):
    """Point-estimate guide: each latent site is a ``Delta`` at a learned value (MAP).

    Site ``x`` gets a parameter ``{x}_{prefix}_loc`` holding its constrained value (the
    optimizer works on it through ``biject_to(support)``), initialized by ``init_loc_fn``.
    As for any point mass, the estimate is the mode in the constrained space (no Jacobian).
    """

    def __call__(self, *args, **kwargs) -> dict[str, jax.Array]:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        drawn = self._draw_plate_indices(*args, **kwargs)
        result = {}
        for name, site in self._sites.items():
            with self._site_plates(site, drawn):
                value = param(
                    self._site_param_name(name, "loc"),
                    site.init_value,
                    constraint=site.support,
                    event_dim=site.event_dim,
                )
                value = _minibatch(value, site.shape, site.event_dim)
                result[name] = sample(name, Delta(value, event_dim=site.event_dim))
        return result

    def _sample_latents(
        self, rng_key, params: Params, sample_shape: tuple[int, ...]
    ) -> dict[str, jax.Array]:
        out = {}
        for name in self._sites:
            value = jnp.asarray(params[self._site_param_name(name, "loc")])
            out[name] = jnp.broadcast_to(value, sample_shape + value.shape)
        return out

    def _median_latents(self, params: Params) -> dict[str, jax.Array]:
        return {name: params[self._site_param_name(name, "loc")] for name in self._sites}

    def quantiles(self, params: Params, quantiles) -> dict[str, jax.Array]:
        """Every quantile of a point mass is the point: ``q.shape + site shape``."""
        self._require_setup("quantiles")
        q = jnp.asarray(quantiles)
        return {
            name: jnp.broadcast_to(v, q.shape + jnp.shape(v))
            for name, v in self._median_latents(params).items()
        }


# ---------------------------------------------------------------------------------------------
# Guides over one flat unconstrained vector
# ---------------------------------------------------------------------------------------------


class AutoContinuous(AutoGuide):
    """Base of guides over a single flat vector ``z`` of all latents in the unconstrained space.

    ``z`` has length ``latent_dim`` (the sum of the sizes of the sites' unconstrained values,
    in the order of the model's trace). Subclasses implement :meth:`_get_posterior` (declares
    the parameters, returns the distribution of ``z``) and :meth:`get_posterior`.
    Sites inside subsampled plates are not supported (their parameters would need the full
    data size in one vector; use :class:`AutoNormal`).
    """

    def _setup_prototype(self, *args, **kwargs) -> None:
        super()._setup_prototype(*args, **kwargs)
        for name, site in self._sites.items():
            for frame in site.frames:
                size, sub, _ = self._plates[frame.name]
                if size != sub:
                    raise ValueError(
                        f"{type(self).__name__}: latent site '{name}' is in the subsampled "
                        f"plate '{frame.name}' ({sub} of {size}); guides over one flat vector "
                        "cannot subsample. Use AutoNormal (or AutoDelta) for local latent "
                        "sites, e.g. combined with AutoGuideList."
                    )
        self._layout: dict[str, tuple[int, int]] = {}
        offset = 0
        for name, site in self._sites.items():
            size = math.prod(site.unconstrained_shape)
            self._layout[name] = (offset, offset + size)
            offset += size
        self.latent_dim = offset
        if self._sites:
            self._init_latent = jnp.concatenate(
                [jnp.reshape(s.init_unconstrained, (-1,)) for s in self._sites.values()]
            )
        else:
            self._init_latent = jnp.zeros((0,), dtype=jnp.result_type(float))

    # -- packing ----------------------------------------------------------------------------
    def _unpack_latent(self, latent: jax.Array) -> dict[str, jax.Array]:
        """``(..., latent_dim)`` -> ``{site name: (...) + unconstrained site shape}``."""
        batch = jnp.shape(latent)[:-1]
        return {
            name: jnp.reshape(latent[..., a:b], batch + self._sites[name].unconstrained_shape)
            for name, (a, b) in self._layout.items()
        }

    def _unpack_and_constrain(self, latent: jax.Array) -> dict[str, jax.Array]:
        """``(..., latent_dim)`` -> ``{site name: (...) + site shape}`` in the supports."""
        return {
            name: self._sites[name].transform(u) for name, u in self._unpack_latent(latent).items()
        }

    # -- guide ------------------------------------------------------------------------------
    def _get_posterior(self) -> Distribution:
        """Declare the parameters; return the distribution of ``z`` (event shape (latent_dim,))."""
        raise NotImplementedError

    def _sample_latent(self) -> jax.Array:
        return sample(f"_{self.prefix}_latent", self._get_posterior(), infer={"is_auxiliary": True})

    def __call__(self, *args, **kwargs) -> dict[str, jax.Array]:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        latent = self._sample_latent()
        masked_out = get_mask() is False
        result = {}
        for name, u in self._unpack_latent(latent).items():
            site = self._sites[name]
            value = site.transform(u)
            if masked_out:
                log_density = jnp.zeros(())
            else:
                ladj = site.transform.log_abs_det_jacobian(u, value)
                ladj = sum_rightmost(ladj, jnp.ndim(ladj) - jnp.ndim(value) + site.event_dim)
                # q(x) = q(u) / |det dx/du|: the Delta carries -log|det J|.
                log_density = -ladj
            result[name] = sample(
                name, Delta(value, log_density=log_density, event_dim=site.event_dim)
            )
        return result

    # -- posterior --------------------------------------------------------------------------
    def get_base_dist(self) -> Distribution:
        """Standard Normal over ``z``: event shape ``(latent_dim,)``."""
        self._require_setup("get_base_dist")
        return Normal(jnp.zeros(self.latent_dim), 1.0).to_event(1)

    def _loc(self, params: Params) -> jax.Array:
        return params[self._param_name("loc")]

    def _sample_latents(
        self, rng_key, params: Params, sample_shape: tuple[int, ...]
    ) -> dict[str, jax.Array]:
        latent = self.get_posterior(params).sample(rng_key, sample_shape)
        return self._unpack_and_constrain(latent)

    def _median_latents(self, params: Params) -> dict[str, jax.Array]:
        return self._unpack_and_constrain(self._loc(params))

    def quantiles(self, params: Params, quantiles) -> dict[str, jax.Array]:
        """Quantiles of each coordinate of ``z``'s marginals, mapped into the supports.

        Returns ``{site name: array of shape q.shape + site shape}``.
        """
        self._require_setup("quantiles")
        q = jnp.asarray(quantiles)
        posterior = self.get_posterior(params)
        loc, sd = posterior.mean, jnp.sqrt(posterior.variance)
        z = loc + sd * jnp.reshape(ndtri(q), q.shape + (1,))
        return self._unpack_and_constrain(z)


class AutoDiagonalNormal(AutoContinuous):
    """Diagonal Normal over the flat unconstrained latent vector.

    Parameters ``{prefix}_loc`` and ``{prefix}_scale`` (positive), both ``(latent_dim,)``.
    """

    scale_constraint = constraints.softplus_positive

    def __init__(
        self,
        model: Callable,
        *,
        prefix: str = "auto",
        init_loc_fn: Callable = init_to_median,
        init_scale: float = 0.1,
    ):
        if not init_scale > 0:
            raise ValueError(f"AutoDiagonalNormal: init_scale must be > 0, got {init_scale}")
        self._init_scale = init_scale
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _get_posterior(self) -> Distribution:
        loc = param(self._param_name("loc"), self._init_latent)
        scale = param(
            self._param_name("scale"),
            jnp.full(self.latent_dim, self._init_scale, dtype=self._init_latent.dtype),
            constraint=self.scale_constraint,
        )
        return Normal(loc, scale).to_event(1)

    def get_transform(self, params: Params) -> Transform:
        """``z = loc + scale * eps`` for a standard Normal ``eps`` of shape ``(latent_dim,)``."""
        return AffineTransform(
            params[self._param_name("loc")],
            params[self._param_name("scale")],
            domain=constraints.real_vector,
        )

    def get_posterior(self, params: Params) -> Distribution:
        """``Normal(loc, scale).to_event(1)`` over ``z``."""
        return Normal(params[self._param_name("loc")], params[self._param_name("scale")]).to_event(
            1
        )


class AutoMultivariateNormal(AutoContinuous):
    """Full-covariance Normal over the flat unconstrained latent vector.

    Parameters ``{prefix}_loc`` ``(latent_dim,)`` and ``{prefix}_scale_tril``
    ``(latent_dim, latent_dim)``, the Cholesky factor of the covariance (constraint
    ``scaled_unit_lower_cholesky``; initialized to ``init_scale * I``). (The parameters follow
    the shape of the initial latent, so the batched guide reuses this class with a leading
    batch shape.)
    """

    scale_tril_constraint = constraints.scaled_unit_lower_cholesky

    def __init__(
        self,
        model: Callable,
        *,
        prefix: str = "auto",
        init_loc_fn: Callable = init_to_median,
        init_scale: float = 0.1,
    ):
        if not init_scale > 0:
            raise ValueError(f"{type(self).__name__}: init_scale must be > 0, got {init_scale}")
        self._init_scale = init_scale
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _get_posterior(self) -> Distribution:
        loc = param(self._param_name("loc"), self._init_latent)  # batch_shape + (E,)
        shape, dtype = self._init_latent.shape, self._init_latent.dtype
        eye = jnp.eye(shape[-1], dtype=dtype) * self._init_scale
        scale_tril = param(
            self._param_name("scale_tril"),
            jnp.broadcast_to(eye, shape[:-1] + eye.shape),
            constraint=self.scale_tril_constraint,
        )
        return MultivariateNormal(loc, scale_tril=scale_tril)

    def get_transform(self, params: Params) -> Transform:
        """``z = loc + scale_tril @ eps``."""
        return LowerCholeskyAffine(
            params[self._param_name("loc")], params[self._param_name("scale_tril")]
        )

    def get_posterior(self, params: Params) -> Distribution:
        """``MultivariateNormal(loc, scale_tril=scale_tril)`` over ``z``."""
        return MultivariateNormal(
            params[self._param_name("loc")], scale_tril=params[self._param_name("scale_tril")]
        )


class AutoLowRankMultivariateNormal(AutoContinuous):
    """Normal with covariance ``W W^T + diag(d)`` over the flat unconstrained latent vector.

    Parameters ``{prefix}_loc`` ``(latent_dim,)``, ``{prefix}_cov_factor``
    ``(latent_dim, rank)`` (initialized to zero) and ``{prefix}_scale`` ``(latent_dim,)``
    (positive, initialized to ``init_scale``); as in NumPyro the distribution is
    ``LowRankMultivariateNormal(loc, cov_factor * scale[:, None], scale**2)``. ``rank``
    defaults to ``round(sqrt(latent_dim))``.
    """

    scale_constraint = constraints.softplus_positive

    def __init__(
        self,
        model: Callable,
        *,
        prefix: str = "auto",
        init_loc_fn: Callable = init_to_median,
        init_scale: float = 0.1,
        rank: int | None = None,
    ):
        if not init_scale > 0:
            raise ValueError(f"{type(self).__name__}: init_scale must be > 0, got {init_scale}")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            raise ValueError(f"{type(self).__name__}: rank must be an int >= 1, got {rank!r}")
        self._init_scale = init_scale
        self.rank = rank
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _rank(self) -> int:
        size = self._init_latent.shape[-1]  # of one batch member
        return max(int(round(size**0.5)), 1) if self.rank is None else self.rank

    @staticmethod
    def _make(loc, cov_factor, scale) -> LowRankMultivariateNormal:
        return LowRankMultivariateNormal(loc, cov_factor * scale[..., None], scale * scale)

    def _get_posterior(self) -> Distribution:
        loc = param(self._param_name("loc"), self._init_latent)  # batch_shape + (E,)
        shape, dtype = self._init_latent.shape, self._init_latent.dtype
        cov_factor = param(
            self._param_name("cov_factor"), jnp.zeros(shape + (self._rank(),), dtype=dtype)
        )
        scale = param(
            self._param_name("scale"),
            jnp.full(shape, self._init_scale, dtype=dtype),
            constraint=self.scale_constraint,
        )
        return self._make(loc, cov_factor, scale)

    def get_posterior(self, params: Params) -> Distribution:
        """``LowRankMultivariateNormal`` over ``z``."""
        return self._make(
            params[self._param_name("loc")],
            params[self._param_name("cov_factor")],
            params[self._param_name("scale")],
        )

    def get_transform(self, params: Params) -> Transform:
        """``z = loc + L @ eps`` with ``L`` the Cholesky factor of the covariance."""
        posterior = self.get_posterior(params)
        return LowerCholeskyAffine(posterior.loc, posterior.scale_tril)


def _cholesky_of_inverse(precision: jax.Array) -> jax.Array:
    """Lower Cholesky factor of ``precision^{-1}`` for a ``(k, k)`` matrix (NaN if singular)."""
    cov = jnp.linalg.inv(precision)
    cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    return jnp.linalg.cholesky(cov)


class AutoLaplaceApproximation(AutoContinuous):
    """Laplace approximation: fit the MAP point, then a Normal with the local curvature.

    During SVI the guide is a point mass at ``{prefix}_loc`` ``(latent_dim,)`` in the
    unconstrained space (with the Jacobian in its density, so SVI maximizes the log density
    in the unconstrained space, i.e. minimizes the potential energy). :meth:`get_posterior`
    returns ``MultivariateNormal(loc, covariance = H^{-1})`` with ``H`` the Hessian of the
    potential energy at ``loc`` (``hessian_fn(f, x)``, default ``jax.hessian(f)(x)``), using
    the model arguments of the guide's first call.
    """

    def __init__(
        self,
        model: Callable,
        *,
        prefix: str = "auto",
        init_loc_fn: Callable = init_to_median,
        create_plates: Callable | None = None,
        hessian_fn: Callable | None = None,
    ):
        self._hessian_fn = (
            hessian_fn if hessian_fn is not None else (lambda f, x: jax.hessian(f)(x))
        )
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn, create_plates=create_plates)

    def _get_posterior(self) -> Distribution:
        loc = param(self._param_name("loc"), self._init_latent)
        return Delta(loc, event_dim=1)

    def _potential_fn(self, params: Params, args: tuple, kwargs: dict) -> Callable:
        """``z -> potential energy`` of the model (with its own params from ``params``)."""
        model = seed(substitute(self.model, data=params), rng_seed=0)

        def fn(z):
            return potential_energy(model, args, kwargs, self._unpack_latent(z))

        return fn

    def get_transform(self, params: Params, *args, **kwargs) -> Transform:
        """``z = loc + L @ eps`` with ``L L^T`` the inverse Hessian of the potential at ``loc``.

        ``*args, **kwargs``: the model's arguments (default: those of the guide's first call).
        """
        self._require_setup("get_transform")
        if not args and not kwargs:
            args, kwargs = self._model_args, self._model_kwargs
        loc = params[self._param_name("loc")]
        precision = self._hessian_fn(self._potential_fn(params, args, kwargs), loc)
        scale_tril = _cholesky_of_inverse(precision)
        if not isinstance(scale_tril, jax.core.Tracer) and bool(jnp.any(jnp.isnan(scale_tril))):
            warnings.warn(
                "AutoLaplaceApproximation: the Hessian of the potential energy at the MAP point "
                "is not positive definite (is it a maximum?); the posterior is degenerate "
                "(draws equal the MAP point). Consider AutoNormal or AutoMultivariateNormal.",
                stacklevel=2,
            )
        scale_tril = jnp.where(jnp.isnan(scale_tril), 0.0, scale_tril)
        return LowerCholeskyAffine(loc, scale_tril)

    def get_posterior(self, params: Params, *args, **kwargs) -> Distribution:
        """``MultivariateNormal`` over ``z``: mean ``loc``, covariance = inverse Hessian."""
        transform = self.get_transform(params, *args, **kwargs)
        return MultivariateNormal(transform.loc, scale_tril=transform.scale_tril)

    def sample_posterior(
        self, rng_key, params: Params, *args, sample_shape: Sequence[int] = (), **kwargs
    ) -> dict[str, jax.Array]:
        self._ensure_setup(rng_key, args, kwargs)
        sample_shape = tuple(sample_shape)
        posterior = self.get_posterior(params, *args, **kwargs)
        latents = self._unpack_and_constrain(posterior.sample(rng_key, sample_shape))
        return self._add_deterministic(params, latents, args, kwargs, sample_shape)

    def _sample_latents(
        self, rng_key, params: Params, sample_shape: tuple[int, ...]
    ) -> dict[str, jax.Array]:
        posterior = self.get_posterior(params)
        return self._unpack_and_constrain(posterior.sample(rng_key, sample_shape))


# ---------------------------------------------------------------------------------------------
# Combining guides
# ---------------------------------------------------------------------------------------------


class AutoGuideList(AutoGuide):
    """A guide made of parts, each covering its own set of latent sites.

    ``guide.append(part)`` adds an autoguide (typically of a ``block``-ed model) or any guide
    callable. Use ``block(seed(model, 0), hide=[...])`` / ``expose=[...]`` so that each part
    sees only its sites (the ``seed`` inside ``block`` gives the hidden sites values while the
    part runs the model). Calling the list calls every part and merges their results.

    Example::

        guide = AutoGuideList(model)
        guide.append(AutoDelta(block(seed(model, 0), expose=["sigma"])))
        guide.append(AutoNormal(block(seed(model, 0), hide=["sigma"])))
    """

    def __init__(
        self,
        model: Callable,
        *,
        prefix: str = "auto",
        init_loc_fn: Callable = init_to_median,
        create_plates: Callable | None = None,
    ):
        self._guides: list[Callable] = []
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn, create_plates=create_plates)

    def append(self, part: Callable) -> None:
        """Add a guide (an :class:`AutoGuide` or any callable guide) to the list."""
        if not callable(part):
            raise TypeError(f"AutoGuideList.append: expected a guide (callable), got {part!r}")
        self._guides.append(part)

    def __getitem__(self, i: int) -> Callable:
        return self._guides[i]

    def __len__(self) -> int:
        return len(self._guides)

    def __call__(self, *args, **kwargs) -> dict[str, jax.Array]:
        if not self._guides:
            raise ValueError("AutoGuideList: no guides were appended.")
        if self.prototype_trace is None:
            # The model's own arguments, for the deterministic sites of `median`.
            self._model_args, self._model_kwargs = args, dict(kwargs)
            self.prototype_trace = {}
        result: dict[str, jax.Array] = {}
        for part in self._guides:
            out = part(*args, **kwargs)
            if isinstance(out, dict):
                clash = sorted(set(out) & set(result))
                if clash:
                    raise ValueError(
                        f"AutoGuideList: sites {clash} are covered by more than one part; hide "
                        "them from all but one (block(model, hide=[...]))."
                    )
                result.update(out)
        return result

    def sample_posterior(
        self, rng_key, params: Params, *args, sample_shape: Sequence[int] = (), **kwargs
    ) -> dict[str, jax.Array]:
        """Draws of every part's latent sites, and the deterministic sites of the whole model
        (including sites rebuilt by ``reparam``) computed from them."""
        sample_shape = tuple(sample_shape)
        keys = _split_keys(rng_key, max(len(self._guides), 1))
        latents: dict[str, jax.Array] = {}
        for key, part in zip(keys, self._guides, strict=False):
            if isinstance(part, AutoGuide):
                part._ensure_setup(key, args, kwargs)
                latents.update(part._sample_latents(key, params, sample_shape))
            else:
                latents.update(_sample_callable(part, key, params, args, kwargs, sample_shape))
        return self._add_deterministic(params, latents, args, kwargs, sample_shape)

    def _add_deterministic(
        self,
        params: Params,
        latents: dict[str, jax.Array],
        args: tuple,
        kwargs: dict,
        sample_shape: tuple[int, ...],
    ) -> dict[str, jax.Array]:
        # Each part sees only its (blocked) view of the model: the deterministic sites come
        # from the whole model, with the latents of all parts.
        if not args and not kwargs:
            args, kwargs = self._model_args, self._model_kwargs
        return _with_deterministic(self.model, params, latents, args, kwargs, sample_shape)

    def _auto_parts(self, what: str) -> list[AutoGuide]:
        for part in self._guides:
            if not isinstance(part, AutoGuide):
                raise NotImplementedError(
                    f"AutoGuideList.{what}: part {part!r} is not an AutoGuide, so it has no "
                    f"{what}()."
                )
        return self._guides  # type: ignore[return-value]

    def median(self, params: Params) -> dict[str, jax.Array]:
        """Every part's median, and the whole model's deterministic sites at it."""
        latents: dict[str, jax.Array] = {}
        for part in self._auto_parts("median"):
            part._require_setup("median")
            latents.update(part._median_latents(params))
        return self._add_deterministic(params, latents, (), {}, ())

    def quantiles(self, params: Params, quantiles) -> dict[str, jax.Array]:
        out: dict[str, jax.Array] = {}
        for part in self._auto_parts("quantiles"):
            out.update(part.quantiles(params, quantiles))
        return out


def _sample_callable(
    guide: Callable, rng_key, params: Params, args: tuple, kwargs: dict, sample_shape: tuple
) -> dict[str, jax.Array]:
    """Latent sample-site values of a plain guide: ``sample_shape + site shape`` each."""

    def draw(key):
        guide_trace = trace(seed(substitute(guide, data=params), rng_seed=key)).get_trace(
            *args, **kwargs
        )
        return {
            name: site["value"]
            for name, site in guide_trace.items()
            if site["type"] == "sample"
            and not site["is_observed"]
            and not site["infer"].get("is_auxiliary")
        }

    if not sample_shape:
        return draw(rng_key)
    n = math.prod(sample_shape)
    out = jax.vmap(draw)(jax.random.split(rng_key, n))
    return {k: jnp.reshape(v, sample_shape + jnp.shape(v)[1:]) for k, v in out.items()}
