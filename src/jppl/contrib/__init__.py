"""NumPyro's ``numpyro.contrib`` paths.

* :mod:`jppl.contrib.module`: neural networks in models: :func:`~jppl.contrib.module.module`
  and :func:`~jppl.contrib.module.random_module` for ``jax.example_libraries.stax``
  ``(init_fn, apply_fn)`` pairs, and ``flax_module`` / ``random_flax_module`` (from
  :mod:`jppl.nn`, loaded only when used: Flax is optional).
"""
