"""Automatic guides, importable as ``jppl.infer.autoguide`` (as ``numpyro.infer.autoguide``).

The implementation lives in :mod:`jppl.vi.autoguide`.
"""

from jppl.vi.autoguide import *  # noqa: F403
from jppl.vi.autoguide import __all__  # noqa: F401
