"""The compositional Gibbs kernels at NumPyro's path ``jppl.infer.gibbs``; the code is
:mod:`jppl.mcmc.gibbs_blocks`."""

from jppl.mcmc.gibbs_blocks import (
    CustomGibbs,
    DiscreteGibbs,
    Gibbs,
    discrete_latent_sites,
    latent_sample_sites,
)

__all__ = [
    "CustomGibbs",
    "DiscreteGibbs",
    "Gibbs",
    "discrete_latent_sites",
    "latent_sample_sites",
]
