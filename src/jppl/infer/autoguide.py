"""Automatic guides at NumPyro's path; the code is :mod:`jppl.vi.autoguide`,
:mod:`jppl.vi.autoguide_extra` (batched and DAIS guides) and :mod:`jppl.vi.autoguide_flows`
(normalizing-flow guides, which need Flax and are loaded on first use)."""

from typing import TYPE_CHECKING, Any

from jppl.vi.autoguide import (
    AutoContinuous,
    AutoDelta,
    AutoDiagonalNormal,
    AutoGuide,
    AutoGuideList,
    AutoLaplaceApproximation,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from jppl.vi.autoguide_extra import (
    AutoBatchedLowRankMultivariateNormal,
    AutoBatchedMultivariateNormal,
    AutoDAIS,
    AutoSemiDAIS,
    AutoSurrogateLikelihoodDAIS,
)

if TYPE_CHECKING:  # loaded on first use by __getattr__ below (Flax is optional)
    from jppl.vi.autoguide_flows import AutoBNAFNormal, AutoIAFNormal

__all__ = [
    "AutoBNAFNormal",
    "AutoBatchedLowRankMultivariateNormal",
    "AutoBatchedMultivariateNormal",
    "AutoContinuous",
    "AutoDAIS",
    "AutoDelta",
    "AutoDiagonalNormal",
    "AutoGuide",
    "AutoGuideList",
    "AutoIAFNormal",
    "AutoLaplaceApproximation",
    "AutoLowRankMultivariateNormal",
    "AutoMultivariateNormal",
    "AutoNormal",
    "AutoSemiDAIS",
    "AutoSurrogateLikelihoodDAIS",
]

_FLOW_GUIDES = ("AutoBNAFNormal", "AutoIAFNormal")


def __getattr__(name: str) -> Any:
    # The flow guides build Flax networks: import Flax only when they are asked for.
    if name in _FLOW_GUIDES:
        from jppl.vi import autoguide_flows

        return getattr(autoguide_flows, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
