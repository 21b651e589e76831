"""The suite runs with JAX's deprecation warnings as errors (pyproject's ``filterwarnings``).

A deprecated JAX API warns with the module of its caller (``stacklevel``), so the filters name
the callers that are ours (jppl, the tests) and JAX itself; these checks send a warning as each
of them would and expect an error, so a change to the filters cannot switch the guard off.
"""

import warnings

import jax
import pytest


@pytest.mark.parametrize(
    "module", ["jax.numpy", "jax._src.core", "jaxlib.xla_client", "jppl.mcmc.sampler", __name__]
)
def test_deprecation_warnings_from_jax_and_jppl_are_errors(module):
    with pytest.raises(DeprecationWarning, match="deprecated"):
        warnings.warn_explicit("this API is deprecated", DeprecationWarning, "f.py", 1, module)


def test_other_libraries_deprecations_stay_warnings():
    with pytest.warns(DeprecationWarning):
        warnings.warn_explicit("old", DeprecationWarning, "f.py", 1, "xarray.core")


def test_a_real_jax_deprecation_raises():
    # jax.core.pytype_aval_mappings is deprecated since JAX 0.10 (still served by 0.12).
    # JAX caches the attribute lookup, so a fresh getattr through the module's hook is used.
    hook = getattr(jax.core, "__getattr__", None)
    if hook is None or "pytype_aval_mappings" not in getattr(jax.core, "_deprecations", {}):
        pytest.skip(f"JAX {jax.__version__} has no deprecated jax.core attribute to try")
    hook.cache_clear()
    with pytest.raises(DeprecationWarning, match="pytype_aval_mappings"):
        jax.core.pytype_aval_mappings  # noqa: B018
