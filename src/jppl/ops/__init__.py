"""Array operations for models: :mod:`jppl.ops.indexing` (``Vindex`` / ``vindex``)."""

from jppl.ops import indexing
from jppl.ops.indexing import Vindex, vindex

__all__ = ["Vindex", "indexing", "vindex"]
