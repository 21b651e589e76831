"""Reparameterization strategies for the :class:`jppl.handlers.reparam` handler.

A strategy is called as ``strategy(name, fn, obs) -> (new_fn, value)``. It may add auxiliary
sample sites; when it returns ``new_fn=None`` and a ``value``, the original site becomes a
deterministic site holding ``value``.

``LocScaleReparam`` turns a centered hierarchical model into a non-centered one without
rewriting it::

    model_nc = reparam(model, config={"theta": LocScaleReparam(centered=0)})

Every strategy here reparameterizes latent sites only: an observed site raises.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jppl.distributions import constraints
from jppl.distributions.continuous import (
    Cauchy,
    Exponential,
    Gamma,
    Gumbel,
    InverseGamma,
    Laplace,
    Logistic,
    LogNormal,
    Normal,
    StudentT,
    Uniform,
)
from jppl.distributions.continuous_extra import LogUniform, Pareto, ProjectedNormal
from jppl.distributions.distribution import (
    Distribution,
    ExpandedDistribution,
    ImproperUniform,
    Independent,
)
from jppl.distributions.transformed import TransformedDistribution
from jppl.distributions.transforms import (
    AffineTransform,
    ComposeTransform,
    DiscreteCosineTransform,
    ExpTransform,
    HaarTransform,
    PowerTransform,
    Transform,
    biject_to,
)
from jppl.distributions.util import sum_rightmost
from jppl.handlers import reparam as reparam_handler
from jppl.primitives import factor, get_mask, param, sample

__all__ = [
    "CircularReparam",
    "DiscreteCosineReparam",
    "ExplicitReparam",
    "HaarReparam",
    "LocScaleReparam",
    "NeuTraReparam",
    "ProjectedNormalReparam",
    "Reparam",
    "TransformReparam",
    "UnitJacobianReparam",
]

# The location-scale families on the real line: ``x = loc + scale * z`` with ``z`` drawn
# from the same family at ``loc=0, scale=1`` and the same shape parameters. Membership is
# by exact type: a ``loc`` and a ``scale`` attribute do not make a family location-scale
# (``LogNormal(loc, scale)`` is ``exp`` of one). Values: the shape parameters the family
# needs, which the caller names in ``shape_params`` (as in NumPyro).
_LOC_SCALE_FAMILIES: dict[type, tuple[str, ...]] = {
    Normal: (),
    Cauchy: (),
    Laplace: (),
    Logistic: (),
    Gumbel: (),
    StudentT: ("df",),
}


class Reparam:
    """Base class of reparameterization strategies."""

    def __call__(self, name: str, fn: Distribution, obs):
        raise NotImplementedError


def _unwrap(fn: Distribution) -> tuple[Distribution, tuple[int, ...], int]:
    """Strip Expanded/Independent wrappers.

    Returns ``(base, batch_shape, event_dim)``: ``fn`` is ``base`` expanded to ``batch_shape``
    (``fn``'s batch shape plus its reinterpreted dims) with ``event_dim`` event dims.
    """
    shape = fn.batch_shape + fn.event_shape
    event_dim = len(fn.event_shape)
    while isinstance(fn, ExpandedDistribution | Independent):
        fn = fn.base_dist
    return fn, tuple(shape[: len(shape) - len(fn.event_shape)]), event_dim


def _rewrap(base: Distribution, batch_shape: tuple[int, ...], event_dim: int) -> Distribution:
    """Inverse of :func:`_unwrap`: expand ``base`` and reinterpret its extra batch dims."""
    base = base.expand(batch_shape)
    return base.to_event(event_dim - len(base.event_shape))


def _is_one(x) -> bool:
    """True for a Python or NumPy scalar equal to 1 (the 'leave it centered' shortcut)."""
    return isinstance(x, int | float | np.generic) and x == 1


class LocScaleReparam(Reparam):
    """Decenter a location-scale distribution (Normal, StudentT, Cauchy, Laplace, Logistic,
    Gumbel).

    With ``centered = c`` in [0, 1], draws ``{name}_decentered ~ D(c * loc, scale ** c)``
    and returns ``loc + scale ** (1 - c) * (x_decentered - c * loc)``, which has the original
    distribution ``D(loc, scale)``. ``c = 0`` is the fully non-centered form, ``c = 1`` leaves
    the site as it is.

    Args:
        centered: a float, or an array broadcastable to the site's batch shape (per-element
            centering), with values in [0, 1]; ``None`` learns it as a ``param`` site
            ``{name}_centered`` of the site's event shape, in [0, 1], initialized to 0.5.
        shape_params: names of the family's other parameters, passed unchanged to the
            decentered distribution (e.g. ``("df",)`` for ``StudentT``).

    A site whose distribution is not one of these families (e.g. ``LogNormal``, which has
    ``loc`` and ``scale`` but is not ``loc + scale * z``), or an observed site, raises.
    """

    def __init__(
        self,
        centered: float | jax.Array | np.ndarray | None = None,
        shape_params: Sequence[str] = (),
    ):
        if centered is not None:
            if not isinstance(centered, int | float | np.generic | np.ndarray | jax.Array):
                raise TypeError(
                    "LocScaleReparam: centered must be None, a float or an array, got "
                    f"{type(centered).__name__}."
                )
            if not isinstance(centered, jax.core.Tracer):
                c = np.asarray(centered)
                if not np.all((c >= 0) & (c <= 1)):
                    raise ValueError(
                        f"LocScaleReparam: centered must be in [0, 1] (elementwise), got {c}."
                    )
        if isinstance(shape_params, str) or not all(isinstance(p, str) for p in shape_params):
            raise TypeError(
                "LocScaleReparam: shape_params must be a tuple or list of parameter names, got "
                f"{shape_params!r}."
            )
        self.centered = centered
        self.shape_params = tuple(shape_params)

    def _check_family(self, name: str, base: Distribution) -> None:
        kind = type(base)
        family = type(base).__name__
        if kind not in _LOC_SCALE_FAMILIES:
            has = (
                " (it has `loc` and `scale` parameters, but a value is not `loc + scale * z` "
                "for a standard member `z`)"
                if hasattr(base, "loc") and hasattr(base, "scale")
                else ""
            )
            known = ", ".join(k.__name__ for k in _LOC_SCALE_FAMILIES)
            raise TypeError(
                f"LocScaleReparam at site '{name}': {family} is not a location-scale family "
                f"on the real line{has}. Supported: {known}. Reparameterize e.g. LogNormal as "
                "exp of a Normal site instead."
            )
        needed = _LOC_SCALE_FAMILIES[kind]
        missing = [p for p in needed if p not in self.shape_params]
        unknown = [p for p in self.shape_params if p not in needed]
        if missing or unknown:
            raise ValueError(
                f"LocScaleReparam at site '{name}': {family} has shape parameters {needed}, "
                f"but shape_params={self.shape_params}; pass "
                f"LocScaleReparam(..., shape_params={needed})."
            )

    def __call__(self, name: str, fn: Distribution, obs):
        if obs is not None:
            raise ValueError(f"LocScaleReparam cannot reparameterize observed site '{name}'.")
        base, batch_shape, event_dim = _unwrap(fn)
        self._check_family(name, base)
        centered = self.centered
        if _is_one(centered):
            return fn, None
        if centered is None:
            centered = param(
                f"{name}_centered",
                jnp.full(fn.event_shape, 0.5),
                constraint=constraints.unit_interval,
            )
        # A per-element `centered` must not change the site's shape.
        try:
            ok = jnp.broadcast_shapes(batch_shape, jnp.shape(centered)) == batch_shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"LocScaleReparam at site '{name}': centered of shape {jnp.shape(centered)} "
                f"does not broadcast to the site's shape {batch_shape}."
            )
        loc, scale = base.loc, base.scale
        others = {k: getattr(base, k) for k in self.shape_params}
        decentered = type(base)(loc=centered * loc, scale=scale**centered, **others)
        x = sample(f"{name}_decentered", _rewrap(decentered, batch_shape, event_dim))
        return None, loc + scale ** (1 - centered) * (x - centered * loc)


def _as_transformed(fn: Distribution) -> Distribution:
    """``fn`` as the transformed distribution it is defined as, for the families that jppl
    implements directly (closed-form densities) but that are a base and transforms by
    definition (as NumPyro builds them): TransformReparam samples that base."""
    if isinstance(fn, LogNormal):
        return TransformedDistribution(Normal(fn.loc, fn.scale), ExpTransform())
    if isinstance(fn, LogUniform):
        low, high = jnp.log(fn.low), jnp.log(fn.high)
        return TransformedDistribution(Uniform(low, high), ExpTransform())
    if isinstance(fn, Pareto):
        return TransformedDistribution(
            Exponential(fn.alpha), [ExpTransform(), AffineTransform(0.0, fn.scale)]
        )
    if isinstance(fn, InverseGamma):
        return TransformedDistribution(Gamma(fn.concentration, fn.rate), PowerTransform(-1.0))
    return fn


class TransformReparam(Reparam):
    """Sample a ``TransformedDistribution``'s base as ``{name}_base`` and apply its transforms.

    ``LogNormal``, ``LogUniform``, ``Pareto`` and ``InverseGamma`` count as the transformed
    distributions they are defined as (``Normal`` + exp; ``Uniform(log low, log high)`` + exp;
    ``Exponential(alpha)`` + exp + scale; ``Gamma`` + ``x ** -1``)."""

    def __call__(self, name: str, fn: Distribution, obs):
        if obs is not None:
            raise ValueError(f"TransformReparam cannot reparameterize observed site '{name}'.")
        base, batch_shape, event_dim = _unwrap(fn)
        base = _as_transformed(base)
        if not isinstance(base, TransformedDistribution):
            raise TypeError(
                f"TransformReparam at site '{name}': expected a TransformedDistribution (or "
                f"LogNormal, LogUniform, Pareto, InverseGamma), got {type(base).__name__}."
            )
        # The site's dims beyond the transformed distribution's own event are reinterpreted
        # batch dims; the base gets the same number on top of its own event (which the
        # transforms may reshape, e.g. StickBreaking (K-1,) -> (K,), CorrCholesky (K(K-1)/2,)
        # -> (K, K)).
        extra = event_dim - len(base.event_shape)
        x = sample(f"{name}_base", base.base_dist.expand(batch_shape).to_event(extra))
        for t in base.transforms:
            x = t(x)
        return None, x


def _observed_error(kind: str, name: str) -> ValueError:
    return ValueError(
        f"{kind} cannot reparameterize observed site '{name}': it changes the coordinates of "
        "a latent variable, and an observed value has none to change."
    )


def _base_constraint(support: constraints.Constraint) -> constraints.Constraint:
    """``support`` without its ``independent`` wrapper (the constraint of one element)."""
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support


def _safe_normalize(x: jax.Array) -> jax.Array:
    """``x / |x|`` along the last axis; a zero vector (no direction) maps to ``(1, 0, ..., 0)``."""
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    unit = x / jnp.maximum(norm, jnp.finfo(jnp.result_type(x, float)).tiny)
    is_zero = jnp.all(x == 0, axis=-1, keepdims=True)
    return jnp.where(is_zero, unit.at[..., 0].set(1.0), unit)


class CircularReparam(Reparam):
    """Sample an angle (a site with ``circular`` support, e.g. ``VonMises``) on the real line.

    Draws ``{name}_unwrapped`` from a flat (improper) density on the reals, of the site's shape,
    wraps it onto ``[-pi, pi)`` and adds the site's log density at the wrapped value as the
    factor ``{name}_factor``. The unwrapped density is periodic, so MCMC moves freely across
    the cut at ``+-pi`` instead of bouncing off it; every period holds the original law.

    The auxiliary site is improper: it cannot be drawn from the prior (``Predictive`` without
    posterior samples, or a ``seed``-ed run, gives a value whose weight is in the factor).
    """

    def __call__(self, name: str, fn: Distribution, obs):
        support = _base_constraint(fn.support)
        if support is not constraints.circular:
            raise TypeError(
                f"CircularReparam at site '{name}': expected a distribution with circular "
                f"support (e.g. VonMises), got {type(fn).__name__} with support {fn.support!r}."
            )
        if obs is not None:
            raise _observed_error("CircularReparam", name)
        flat = ImproperUniform(constraints.real, fn.batch_shape, fn.event_shape)
        unwrapped = sample(f"{name}_unwrapped", flat)
        value = jnp.remainder(unwrapped + math.pi, 2 * math.pi) - math.pi
        factor(f"{name}_factor", fn.log_prob(value))
        return None, value


class ExplicitReparam(Reparam):
    """Sample a latent ``x`` as ``y = transform(x)``, a space with better geometry.

    Draws ``{name}_base ~ TransformedDistribution(fn, transform)`` and returns
    ``transform.inv(y)``, which has the site's law. Unlike :class:`TransformReparam`, the model
    keeps its distribution and the coordinates are chosen from outside; e.g.
    ``ExplicitReparam(SoftplusTransform().inv)`` lets NUTS run on a positive site through
    ``softplus`` instead of ``exp``.

    Args:
        transform: a bijective :class:`~jppl.distributions.transforms.Transform` from the
            site's support to the new space, or a sequence of them (composed in order).
    """

    def __init__(self, transform: Transform | Iterable[Transform]):
        if not isinstance(transform, Transform):
            parts = list(transform) if isinstance(transform, Iterable) else None
            if not parts or not all(isinstance(t, Transform) for t in parts):
                raise TypeError(
                    "ExplicitReparam: transform must be a Transform or a non-empty sequence of "
                    f"Transforms, got {transform!r}."
                )
            transform = ComposeTransform(parts)
        self.transform = transform

    def __call__(self, name: str, fn: Distribution, obs):
        if obs is not None:
            raise _observed_error("ExplicitReparam", name)
        y = sample(f"{name}_base", TransformedDistribution(fn, self.transform))
        return None, self.transform.inv(y)


class ProjectedNormalReparam(Reparam):
    """Sample a ``ProjectedNormal(concentration)`` latent from parameter-free noise.

    Draws ``{name}_normal ~ Normal(0, 1)`` with the site's shape ``batch_shape + (d,)`` and
    returns ``(x + concentration) / |x + concentration|``, which is the definition of the
    ProjectedNormal law; the geometry of the auxiliary site does not depend on
    ``concentration``.
    """

    def __call__(self, name: str, fn: Distribution, obs):
        if obs is not None:
            raise _observed_error("ProjectedNormalReparam", name)
        base, batch_shape, event_dim = _unwrap(fn)
        if not isinstance(base, ProjectedNormal):
            raise TypeError(
                f"ProjectedNormalReparam at site '{name}': expected a ProjectedNormal, got "
                f"{type(base).__name__}."
            )
        concentration = base.concentration
        noise = Normal(jnp.zeros(jnp.shape(concentration), concentration.dtype), 1.0).to_event(1)
        x = sample(f"{name}_normal", _rewrap(noise, batch_shape, event_dim))
        return None, _safe_normalize(x + concentration)


class UnitJacobianReparam(Reparam):
    """Sample a latent in the coordinates ``y = transform(u)`` of its unconstrained value ``u``.

    ``u = biject_to(support).inv(x)``; the new site ``{name}_{suffix}`` has the law of ``y``
    (a ``TransformedDistribution`` of the site through ``biject_to(support).inv`` then
    ``transform``) and the site becomes ``x = biject_to(support)(transform.inv(y))``. With a
    transform of unit Jacobian determinant (a shift, a permutation, an orthogonal map, a
    Haar or DCT transform) the potential energy in ``y`` is that in ``u``: only the
    coordinates change (e.g. to decorrelate a time series). Another bijection stays correct
    (its Jacobian is in the new site's density); it then changes the geometry too.

    Meant for real or elementwise-constrained supports (positive, interval, ...). The axes the
    transform acts on must be event dims of the site (``.to_event(1)`` for a time axis); with
    fewer, the site's trailing batch dims are reinterpreted as event dims of the new site.

    Args:
        transform: a :class:`~jppl.distributions.transforms.Transform` on the unconstrained
            value, ideally with ``|det J| = 1``.
        suffix: the new site is ``f"{name}_{suffix}"``.
    """

    def __init__(self, transform: Transform, suffix: str = "transformed") -> None:
        if not isinstance(transform, Transform):
            raise TypeError(
                f"UnitJacobianReparam: transform must be a Transform, got {transform!r}."
            )
        if not isinstance(suffix, str) or not suffix:
            raise ValueError(
                f"UnitJacobianReparam: suffix must be a non-empty str, got {suffix!r}."
            )
        self.transform = transform
        self.suffix = suffix

    def __call__(self, name: str, fn: Distribution, obs):
        kind = type(self).__name__
        if obs is not None:
            raise _observed_error(kind, name)
        base, batch_shape, event_dim = _unwrap(fn)
        try:
            to_support = biject_to(base.support)
        except NotImplementedError as e:
            raise TypeError(
                f"{kind} at site '{name}': no bijection from the reals reaches the support "
                f"{base.support!r} of {type(base).__name__}."
            ) from e
        transform = ComposeTransform([to_support.inv, self.transform])
        # The transform's axes must be event dims of the new site.
        new_event_dim = max(event_dim, self.transform.domain.event_dim)
        if new_event_dim > len(batch_shape) + len(base.event_shape):
            raise ValueError(
                f"{kind} at site '{name}': the transform acts on {self.transform.domain.event_dim}"
                f" trailing dims, but the site's value has shape "
                f"{batch_shape + base.event_shape}."
            )
        y = sample(
            f"{name}_{self.suffix}",
            TransformedDistribution(_rewrap(base, batch_shape, new_event_dim), transform),
        )
        return None, transform.inv(y)


# What NeuTraReparam reads of a guide. The guide classes live above this module (jppl.vi), so
# an AutoContinuous guide is recognized by these members rather than by its class.
_NEUTRA_GUIDE_MEMBERS = (
    "get_transform",
    "get_base_dist",
    "site_names",
    "prototype_trace",
    "prefix",
)


class NeuTraReparam(Reparam):
    """Neural transport (Hoffman et al., 2019): MCMC in the base space of a fitted guide.

    A fitted guide over one flat unconstrained vector (``AutoDiagonalNormal``,
    ``AutoMultivariateNormal``, ``AutoLowRankMultivariateNormal``,
    ``AutoLaplaceApproximation``, ...) writes the latents as ``u = T(z)`` with ``z`` standard
    Normal. The reparameterized model draws ``z`` as the single site
    ``{prefix}_shared_latent`` (a flat density: the log density is in the factors) and turns
    every latent site of the guide into a deterministic site ``x = biject_to(support)(u)``, with
    factors ``_{name}_log_prob = log p(x) + log|det dx/du|`` and
    ``_{prefix}_shared_latent_log_det = log|det dT/dz|``. Its potential energy in ``z`` is
    ``U(T(z)) - log|det dT/dz|`` for the original potential ``U`` in the unconstrained space;
    where the guide fits the posterior well, ``z`` is close to standard Normal and NUTS
    mixes fast::

        neutra = NeuTraReparam(guide, svi_result.params)
        mcmc = MCMC(NUTS(neutra.reparam(model)), num_warmup=500, num_samples=500)
        mcmc.run(key, data)
        samples = neutra.transform_sample(mcmc.get_samples()["auto_shared_latent"])

    Use one instance for all sites, through :meth:`reparam`; the model must have the static
    structure the guide saw.

    Args:
        guide: a guide over one flat latent vector (an ``AutoContinuous`` guide) that has run
            once (e.g. through SVI); other guides raise ``TypeError``.
        params: the guide's fitted parameters (e.g. ``svi_result.params``).
    """

    def __init__(self, guide: Any, params: dict[str, Any]):
        missing = [m for m in _NEUTRA_GUIDE_MEMBERS if not hasattr(guide, m)]
        if missing:
            raise TypeError(
                "NeuTraReparam: guide must be an AutoContinuous guide (one flat latent vector, "
                f"e.g. AutoDiagonalNormal or AutoMultivariateNormal), got "
                f"{type(guide).__name__}, which lacks {missing}."
            )
        if guide.prototype_trace is None:
            raise RuntimeError(
                f"NeuTraReparam: the guide {type(guide).__name__} has not been run yet; fit it "
                "(e.g. with SVI) or call it once with the model's arguments first."
            )
        try:
            transform = guide.get_transform(params)
        except (NotImplementedError, TypeError) as e:
            raise ValueError(
                f"NeuTraReparam: {type(guide).__name__}.get_transform(params) failed ({e}); "
                "NeuTraReparam needs a guide whose get_transform depends on its parameters "
                "only."
            ) from e
        self.guide = guide
        self.params = params
        self.transform: Transform = transform
        # name -> (start, stop, unconstrained shape, bijection onto the support), in the
        # guide's order of its flat latent vector.
        self._layout: dict[str, tuple[int, int, tuple[int, ...], Transform]] = {}
        offset = 0
        for name in guide.site_names:
            site = guide.prototype_trace[name]
            to_support = biject_to(site["fn"].support)
            shape = tuple(to_support.inverse_shape(jnp.shape(site["value"])))
            self._layout[name] = (offset, offset + math.prod(shape), shape, to_support)
            offset += math.prod(shape)
        latent_dim = getattr(guide, "latent_dim", offset)
        if offset != latent_dim:
            raise ValueError(
                f"NeuTraReparam: the guide's latent sites have {offset} unconstrained entries, "
                f"but its latent_dim is {latent_dim}."
            )
        self._latent_dim = offset
        # The guide's latents of the current model run, popped site by site.
        self._x_unconstrained: dict[str, jax.Array] = {}

    def _unpack(self, x: jax.Array) -> dict[str, jax.Array]:
        """``(..., latent_dim)`` -> ``{site: (...) + unconstrained site shape}``."""
        batch = jnp.shape(x)[:-1]
        return {
            name: jnp.reshape(x[..., a:b], batch + shape)
            for name, (a, b, shape, _) in self._layout.items()
        }

    def _draw_shared(self) -> None:
        prefix = self.guide.prefix
        base = self.guide.get_base_dist()
        z = sample(f"{prefix}_shared_latent", base.mask(False))
        if jnp.shape(z) != (self._latent_dim,):
            raise ValueError(
                f"NeuTraReparam: the shared latent '{prefix}_shared_latent' has shape "
                f"{jnp.shape(z)}, expected ({self._latent_dim},); it was drawn inside a plate. "
                "Wrap the model with neutra.reparam(model), which draws it outside all plates."
            )
        x = self.transform(z)
        if get_mask() is False:
            log_det = jnp.zeros(())
        else:
            log_det = self.transform.log_abs_det_jacobian(z, x)
            log_det = sum_rightmost(log_det, jnp.ndim(log_det))
        factor(f"_{prefix}_shared_latent_log_det", log_det)
        self._x_unconstrained = self._unpack(x)

    def _config(self, site: dict) -> NeuTraReparam | None:
        return self if site["name"] in self._layout else None

    def reparam(self, fn: Callable | None = None):
        """The model ``fn`` with every latent site of the guide reparameterized.

        Without ``fn``, the ``reparam`` handler itself (a context manager); the shared latent is
        then drawn at the first site, which must not be inside a plate.
        """
        if fn is None:
            return reparam_handler(config=self._config)

        def reparameterized(*args, **kwargs):
            self._x_unconstrained = {}
            try:
                # Drawn here, outside the model's plates.
                self._draw_shared()
                with reparam_handler(config=self._config):
                    return fn(*args, **kwargs)
            finally:
                self._x_unconstrained = {}

        return reparameterized

    def __call__(self, name: str, fn: Distribution, obs):
        if name not in self._layout:
            return fn, None
        if obs is not None:
            raise _observed_error("NeuTraReparam", name)
        if not self._x_unconstrained:
            self._draw_shared()
        if name not in self._x_unconstrained:
            raise RuntimeError(
                f"NeuTraReparam: site '{name}' was reached twice in one model run; the model "
                "must have the static structure the guide saw."
            )
        u = self._x_unconstrained.pop(name)
        _, _, shape, to_support = self._layout[name]
        value = to_support(u)
        if get_mask() is False:
            log_density = jnp.zeros(())
        else:
            log_det = to_support.log_abs_det_jacobian(u, value)
            # Elementwise bijections give one term per entry: sum those of the event.
            log_det = sum_rightmost(log_det, jnp.ndim(log_det) - jnp.ndim(value) + fn.event_dim)
            log_density = fn.log_prob(value) + log_det
        factor(f"_{name}_log_prob", log_density)
        return None, value

    def transform_sample(self, latent: jax.Array) -> dict[str, jax.Array]:
        """Model latents from draws of the shared latent.

        ``latent``: ``(..., latent_dim)``, e.g. MCMC draws of ``{prefix}_shared_latent``.
        Returns ``{site name: (...) + site shape}`` in the supports.
        """
        x = self.transform(jnp.asarray(latent))
        return {name: self._layout[name][3](u) for name, u in self._unpack(x).items()}


class HaarReparam(UnitJacobianReparam):
    """:class:`UnitJacobianReparam` with a ``HaarTransform`` along ``dim``; new site
    ``{name}_haar``.

    For a time series with local coupling along a time axis (a banded precision), the Haar
    wavelet coefficients are closer to independent than the values, which suits a diagonal
    guide in SVI or a diagonal mass matrix in HMC. The time axis must be an event dim of the
    site (e.g. ``.to_event(1)``).

    Args:
        dim: the (negative) axis to transform, counted from the right of the value.
        flip: reverse the time axis before the transform.
    """

    def __init__(self, dim: int = -1, flip: bool = False) -> None:
        super().__init__(HaarTransform(dim=dim, flip=flip), suffix="haar")


class DiscreteCosineReparam(UnitJacobianReparam):
    """:class:`UnitJacobianReparam` with a ``DiscreteCosineTransform`` along ``dim``; new site
    ``{name}_dct``.

    For a time series with local coupling along a time axis, the DCT coefficients are closer
    to independent than the values. ``smooth`` weights each coefficient by its frequency to
    the power ``smooth`` (normalized so that ``|det J|`` stays one): 0 maps white noise to
    white noise, 1 Brownian noise (a continuous series, e.g. a random walk) to white noise, 2 a
    continuously differentiable series, -1 violet noise; any real is allowed. The time axis
    must be an event dim of the site (e.g. ``.to_event(1)``).

    Args:
        dim: the (negative) axis to transform, counted from the right of the value.
        smooth: the smoothness exponent.
    """

    def __init__(self, dim: int = -1, smooth: float = 0.0) -> None:
        super().__init__(DiscreteCosineTransform(dim=dim, smooth=smooth), suffix="dct")
