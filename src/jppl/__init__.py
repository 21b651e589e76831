"""jppl: probabilistic programming for JAX."""

__version__ = "0.1.0.dev0"

from jppl.distributions.distribution import enable_validation, validation_enabled  # noqa: E402

__all__ = ["__version__", "enable_validation", "validation_enabled"]
