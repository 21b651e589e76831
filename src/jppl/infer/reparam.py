"""Reparameterizations at NumPyro's path ``jppl.infer.reparam``; the code is :mod:`jppl.reparam`."""

from jppl.reparam import (
    CircularReparam,
    DiscreteCosineReparam,
    ExplicitReparam,
    HaarReparam,
    LocScaleReparam,
    NeuTraReparam,
    ProjectedNormalReparam,
    Reparam,
    TransformReparam,
    UnitJacobianReparam,
)

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
