"""Neural networks in jppl models: Flax (Linen and NNX) modules as parameters or latents.

Import it explicitly (``import jppl.nn``); ``import jppl`` does not load Flax.
"""

from jppl.nn.module import flax_module, param_paths, random_flax_module

__all__ = ["flax_module", "param_paths", "random_flax_module"]
