"""``MixedHMC`` at NumPyro's path ``jppl.infer.mixed_hmc``; the code is :mod:`jppl.mcmc.gibbs`."""

from jppl.mcmc.gibbs import MixedHMC

__all__ = ["MixedHMC"]
