"""Distributions obtained by pushing a base distribution through bijective transforms."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from jppl.distributions import constraints
from jppl.distributions.distribution import Distribution
from jppl.distributions.transforms import ComposeTransform, Transform
from jppl.distributions.util import sum_rightmost, validate_sample_shape

__all__ = ["TransformedDistribution"]


class TransformedDistribution(Distribution):
    """The law of ``transforms[-1](...transforms[0](x))`` for ``x ~ base_distribution``.

    ``transforms``: one :class:`Transform` or a sequence of them. The event dims of the result
    are the larger of the base's event dims and what the transforms consume (e.g. a
    ``StickBreakingTransform`` turns a batch of scalars into a vector event); the base is
    expanded/reinterpreted (``to_event``) as needed. Its shape follows the transforms'
    ``forward_shape``.

    ``log_prob(y) = base.log_prob(x) - sum_k log|det J_k|`` with ``x`` obtained by inverting
    the transforms, each log-det summed over the event dims it does not already consume.
    """

    arg_constraints: dict = {}

    def __init__(
        self,
        base_distribution: Distribution,
        transforms: Transform | Sequence[Transform],
        *,
        validate_args: bool | None = None,
    ):
        if isinstance(transforms, Transform):
            transforms = [transforms]
        else:
            transforms = list(transforms)
            if not all(isinstance(t, Transform) for t in transforms):
                raise TypeError(
                    "TransformedDistribution: `transforms` must be a Transform or a list of them, "
                    f"got {transforms!r}"
                )
        if isinstance(base_distribution, TransformedDistribution):
            # flatten nested transformed distributions
            transforms = base_distribution.transforms + transforms
            base_distribution = base_distribution.base_dist

        base_shape = base_distribution.batch_shape + base_distribution.event_shape
        base_event_dim = len(base_distribution.event_shape)
        if transforms:
            compose = ComposeTransform(transforms)
            domain_event_dim = compose.domain.event_dim
            codomain_event_dim = compose.codomain.event_dim
        else:
            compose = None
            domain_event_dim = codomain_event_dim = 0
        if len(base_shape) < domain_event_dim:
            raise ValueError(
                f"TransformedDistribution: the transforms need inputs with at least "
                f"{domain_event_dim} event dims, but the base distribution has shape {base_shape}."
            )
        if compose is not None:
            shape = compose.forward_shape(base_shape)
            expanded_base_shape = compose.inverse_shape(shape)
        else:
            shape = expanded_base_shape = base_shape
        if tuple(expanded_base_shape) != tuple(base_shape):
            # transform parameters broadcast the batch: expand the base to match.
            n = len(expanded_base_shape) - base_event_dim
            base_distribution = base_distribution.expand(tuple(expanded_base_shape[:n]))
        extra = domain_event_dim - base_event_dim
        if extra > 0:
            base_distribution = base_distribution.to_event(extra)
        event_dim = codomain_event_dim + max(base_event_dim - domain_event_dim, 0)
        self.base_dist = base_distribution
        self.transforms = transforms
        cut = len(shape) - event_dim
        super().__init__(shape[:cut], shape[cut:], validate_args=validate_args)

    # -- properties ---------------------------------------------------------------------------
    @property
    def has_rsample(self):  # type: ignore[override]
        return self.base_dist.has_rsample

    @property
    def support(self):  # type: ignore[override]
        if not self.transforms:
            codomain = self.base_dist.support
        else:
            codomain = self.transforms[-1].codomain
        extra = self.event_dim - codomain.event_dim
        return constraints.independent(codomain, extra) if extra > 0 else codomain

    # -- sampling -------------------------------------------------------------------------------
    def sample_with_intermediates(self, key, sample_shape: Sequence[int] = ()):
        """``(y, intermediates)`` where ``intermediates[k] = (input_k, transform_k_inters)``.

        ``y``: ``sample_shape + batch_shape + event_shape``. Pass ``intermediates`` to
        ``log_prob`` to skip inverting the transforms.
        """
        x = self.base_dist.sample(key, validate_sample_shape(sample_shape))
        intermediates = []
        for t in self.transforms:
            x_in = x
            x, inter = t.call_with_intermediates(x)
            intermediates.append((x_in, inter))
        return x, intermediates

    def sample(self, key, sample_shape: Sequence[int] = ()):
        x = self.base_dist.sample(key, validate_sample_shape(sample_shape))
        for t in self.transforms:
            x = t(x)
        return x

    # -- density ----------------------------------------------------------------------------------
    def log_prob(self, value, intermediates=None):
        """Log density of ``value`` (``sample_shape + batch_shape + event_shape``);
        returns ``sample_shape + batch_shape``."""
        event_dim = self.event_dim
        y = value
        log_prob = 0.0
        if intermediates is None:
            intermediates = [None] * len(self.transforms)
        for t, inter in zip(reversed(self.transforms), reversed(intermediates), strict=True):
            if inter is None:
                x, t_inter = t.inv(y), None
            else:
                x, t_inter = inter
            ladj = t.log_abs_det_jacobian(x, y, t_inter)
            batch_ndim = event_dim - t.codomain.event_dim
            log_prob = log_prob - sum_rightmost(ladj, batch_ndim)
            event_dim = t.domain.event_dim + batch_ndim
            y = x
        base_lp = self.base_dist.log_prob(y)
        return log_prob + sum_rightmost(base_lp, event_dim - self.base_dist.event_dim)

    def cdf(self, value):
        """CDF for monotone scalar transforms (uses each transform's ``sign``)."""
        sign = 1
        x = value
        for t in reversed(self.transforms):
            x = t.inv(x)
            sign = sign * t.sign
        base_cdf = self.base_dist.cdf(x)
        return jnp.where(jnp.asarray(sign) > 0, base_cdf, 1.0 - base_cdf)

    def icdf(self, q):
        """Inverse CDF for monotone scalar transforms."""
        sign = 1
        for t in self.transforms:
            sign = sign * t.sign
        x = self.base_dist.icdf(jnp.where(jnp.asarray(sign) > 0, q, 1.0 - q))
        for t in self.transforms:
            x = t(x)
        return x

    @property
    def mean(self):
        raise NotImplementedError(
            f"{type(self).__name__}: the mean of a transformed distribution is not known in "
            "closed form in general."
        )

    @property
    def variance(self):
        raise NotImplementedError(
            f"{type(self).__name__}: the variance of a transformed distribution is not known in "
            "closed form in general."
        )

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} base={self.base_dist!r} transforms={self.transforms!r} "
            f"batch_shape={self.batch_shape} event_shape={self.event_shape}>"
        )
