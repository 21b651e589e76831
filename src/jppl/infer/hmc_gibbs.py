"""Gibbs within HMC at NumPyro's path ``jppl.infer.hmc_gibbs``; the code is
:mod:`jppl.mcmc.gibbs`."""

from jppl.mcmc.gibbs import DiscreteHMCGibbs, HMCGibbs

__all__ = ["DiscreteHMCGibbs", "HMCGibbs"]
