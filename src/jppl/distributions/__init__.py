"""Probability distributions, constraints and bijective transforms.

Names and parameterizations follow NumPyro (and so scipy/PyTorch), so models port by changing
imports: ``import jppl.distributions as dist``; ``dist.Normal(loc, scale)``.
"""

from jppl.distributions import (
    constraints,
    continuous,
    continuous_extra,
    copula,
    discrete,
    discrete_extra,
    glm,
    kl,
    mixtures,
    multivariate,
    multivariate_extra,
    timeseries,
    transformed,
    transforms,
    truncated,
)
from jppl.distributions.continuous import *  # noqa: F403
from jppl.distributions.continuous_extra import *  # noqa: F403
from jppl.distributions.copula import *  # noqa: F403
from jppl.distributions.discrete import *  # noqa: F403
from jppl.distributions.discrete_extra import *  # noqa: F403
from jppl.distributions.distribution import (
    Delta,
    Distribution,
    ExpandedDistribution,
    ImproperUniform,
    Independent,
    MaskedDistribution,
    Unit,
    enable_validation,
    validation_enabled,
)
from jppl.distributions.glm import *  # noqa: F403
from jppl.distributions.kl import *  # noqa: F403
from jppl.distributions.mixtures import *  # noqa: F403
from jppl.distributions.multivariate import *  # noqa: F403
from jppl.distributions.multivariate_extra import *  # noqa: F403
from jppl.distributions.timeseries import *  # noqa: F403
from jppl.distributions.transformed import *  # noqa: F403
from jppl.distributions.transforms import *  # noqa: F403
from jppl.distributions.truncated import *  # noqa: F403

__all__ = [
    "Delta",
    "Distribution",
    "ExpandedDistribution",
    "ImproperUniform",
    "Independent",
    "MaskedDistribution",
    "Unit",
    "constraints",
    "enable_validation",
    "transforms",
    "validation_enabled",
]
# Every name the submodules export (`from jppl.distributions import *` and the docs' table).
__all__ += continuous.__all__
__all__ += continuous_extra.__all__
__all__ += copula.__all__
__all__ += discrete.__all__
__all__ += discrete_extra.__all__
__all__ += glm.__all__
__all__ += kl.__all__
__all__ += mixtures.__all__
__all__ += multivariate.__all__
__all__ += multivariate_extra.__all__
__all__ += timeseries.__all__
__all__ += transformed.__all__
__all__ += transforms.__all__
__all__ += truncated.__all__
