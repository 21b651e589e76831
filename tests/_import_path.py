"""Import a Python file by path (``benchmarks/`` and ``examples/`` are not packages)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def import_by_path(path: Path, name: str) -> ModuleType:
    """Import ``path`` as module ``name`` once (later calls return the same module)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # registered first: dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module
