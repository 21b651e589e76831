"""NumPyro's ``numpyro.contrib`` paths.

* :mod:`jppl.contrib.module`: neural networks in models: :func:`~jppl.contrib.module.module`
  and :func:`~jppl.contrib.module.random_module` for ``jax.example_libraries.stax``
  ``(init_fn, apply_fn)`` pairs, and ``flax_module`` / ``random_flax_module`` (from
  :mod:`jppl.nn`, loaded only when used: Flax is optional).
* :mod:`jppl.contrib.control_flow`: :func:`~jppl.contrib.control_flow.scan` and
  :func:`~jppl.contrib.control_flow.cond`, :func:`jax.lax.scan` / :func:`jax.lax.cond` whose
  bodies may call jppl primitives; a ``scan`` body may hold enumerated sites (an HMM's
  state), summed out along time at linear cost.
* :mod:`jppl.contrib.funsor`: NumPyro's ``numpyro.contrib.funsor`` names (``enum``,
  ``config_enumerate``, ``markov``, ``infer_discrete``, ``log_density``), without funsor.
"""
