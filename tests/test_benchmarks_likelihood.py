"""Smoke run of ``benchmarks/likelihood_grad.py``: the three Bernoulli-logits versions (jppl's
hand-written derivative, autodiff of the same formula, NumPyro) match a float64 value and
gradient (checked inside the script), and the report holds positive timings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from benchmarks import likelihood_grad as bench


def test_likelihood_grad_benchmark_quick(tmp_path):
    out = tmp_path / "lik"
    report = bench.main(["--quick", "--out", str(out)])
    saved = json.loads(Path(str(out) + ".json").read_text())
    assert set(saved["microseconds_per_evaluation"]) == {"jppl", "autodiff", "numpyro"}
    for name, row in report["microseconds_per_evaluation"].items():
        assert np.isfinite(row["median"]) and row["median"] > 0, name
    assert np.isfinite(report["ratio_jppl_vs_numpyro"]) and report["ratio_jppl_vs_numpyro"] > 0
    assert "| jppl |" in Path(str(out) + ".md").read_text()
