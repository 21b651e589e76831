"""Smoke test of benchmarks/import_time.py (the timings themselves are the benchmark's)."""

from benchmarks import import_time as bench


def test_one_round_measures_both_libraries():
    results = bench.run(repeats=1)
    for name in ("jppl", "numpyro"):
        r = results["results"][name]
        assert len(r["runs"]) == 1
        assert 0 < r["library_median_s"] < 60 and 0 < r["jax_median_s"] < 60
    assert results["ratio_jppl_over_numpyro"] > 0
    assert isinstance(results["target_met"], bool)
