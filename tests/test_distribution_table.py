"""The docs' table of distributions is generated from ``jppl.distributions.__all__`` and kept
up to date."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jppl.distributions as dist

ROOT = Path(__file__).resolve().parents[1]


def test_table_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "distribution_table.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_table_lists_every_exported_distribution():
    text = (ROOT / "docs" / "distributions-table.md").read_text()
    names = [
        name
        for name in dist.__all__
        if isinstance(getattr(dist, name), type)
        and issubclass(getattr(dist, name), dist.Distribution)
        and getattr(dist, name) is not dist.Distribution
    ]
    assert len(names) > 50
    for name in names:
        assert f"| `{name}` |" in text, name


def test_all_names_resolve_and_are_unique():
    assert len(dist.__all__) == len(set(dist.__all__))
    for name in dist.__all__:
        assert hasattr(dist, name), name
