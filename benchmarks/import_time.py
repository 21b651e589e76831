"""Import time of jppl beside NumPyro's: what a user waits for before the first line of a model.

Run from the repository root::

    .venv/bin/python -m benchmarks.import_time               # 15 rounds
    .venv/bin/python -m benchmarks.import_time --repeats 5   # quicker

Each measurement is a fresh interpreter that imports ``jax`` and then the library, and prints
(as JSON) the seconds each import took (``time.perf_counter`` around each import, so the
interpreter's own start-up is left out). Rounds alternate jppl and NumPyro, so a change of the
machine's load affects both alike. What counts is the time *after* ``import jax``, which every
JAX library pays anyway: the target is below 0.3 s (the ecosystem issue). Median and minimum
are reported; the ratio is jppl's median over NumPyro's.

Results: ``benchmarks/results/import_time_cpu.json`` and ``import_time_cpu.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run by path: import the package from the root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import statistics

from benchmarks.report import RESULTS_DIR, machine_info, markdown_table, ratio, write_results
from benchmarks.workers import run_python_json

TARGET_S = 0.3  # `import jppl` after `import jax`

#: What each library's user imports first.
IMPORTS = {
    "jppl": "import jppl, jppl.infer, jppl.distributions",
    "numpyro": "import numpyro, numpyro.infer, numpyro.distributions",
}

_PROBE = """
import time
t0 = time.perf_counter()
import jax
t1 = time.perf_counter()
{imports}
t2 = time.perf_counter()
import json
print(json.dumps({{"jax": t1 - t0, "library": t2 - t1}}))
"""


def one(name: str) -> dict[str, float]:
    """Seconds of ``import jax`` and of the library after it, in a fresh interpreter."""
    return run_python_json(_PROBE.format(imports=IMPORTS[name]))


def run(repeats: int) -> dict:
    one("jppl"), one("numpyro")  # warm the file-system cache, not recorded
    times: dict[str, list[dict[str, float]]] = {name: [] for name in IMPORTS}
    for r in range(repeats):
        for name in list(IMPORTS) if r % 2 == 0 else list(IMPORTS)[::-1]:
            times[name].append(one(name))
    summary = {}
    for name, runs in times.items():
        lib = [t["library"] for t in runs]
        summary[name] = {
            "library_median_s": statistics.median(lib),
            "library_min_s": min(lib),
            "jax_median_s": statistics.median(t["jax"] for t in runs),
            "runs": runs,
        }
    return {
        "machine": machine_info(),
        "imports": IMPORTS,
        "repeats": repeats,
        "results": summary,
        "ratio_jppl_over_numpyro": ratio(
            summary["jppl"]["library_median_s"], summary["numpyro"]["library_median_s"]
        ),
        "target_s": TARGET_S,
        "target_met": summary["jppl"]["library_median_s"] < TARGET_S,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    results = run(args.repeats)
    rows = [
        [name, IMPORTS[name], r["library_median_s"], r["library_min_s"], r["jax_median_s"]]
        for name, r in results["results"].items()
    ]
    m = results["machine"]
    text = "\n\n".join(
        [
            "# Import time (seconds after `import jax`, fresh interpreter each)",
            f"Python {m['python']}, JAX {m['jax']}, jppl {m['jppl']}, NumPyro {m['numpyro']}; "
            f"{m['cpu_model']}, load average {m['load_average']}; "
            f"{results['repeats']} alternating rounds; "
            f"command: `python benchmarks/import_time.py --repeats {results['repeats']}`.",
            markdown_table(
                ["library", "imports", "median s", "min s", "import jax, median s"], rows
            ),
            f"jppl / NumPyro (medians): {results['ratio_jppl_over_numpyro']:.2f}x. "
            f"Target: jppl below {TARGET_S} s after `import jax`: "
            f"{'met' if results['target_met'] else 'missed'}.",
        ]
    )
    write_results(RESULTS_DIR / "import_time_cpu", results, text)
    print(text)


if __name__ == "__main__":
    main()
