"""Reparameterizations at NumPyro's path ``jppl.infer.reparam``; the code is :mod:`jppl.reparam`."""

from jppl.reparam import (
    LocScaleReparam,
    Reparam,
    TransformReparam,
)

__all__ = [
    "LocScaleReparam",
    "Reparam",
    "TransformReparam",
]
