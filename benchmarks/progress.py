"""Cost of MCMC's live progress bar (issue 3: below 2% of a run).

Run from the repository root (it starts 4 fake CPU devices)::

    .venv/bin/python -m benchmarks.progress
    .venv/bin/python -m benchmarks.progress --repeats 3     # quicker

For eight schools and the radon-like model of ``benchmarks/nuts.py`` (4 chains x 1000
warm-up / 1000 draws, the same initial points), with ``chain_method="vectorized"`` and
``"sharded"`` (4 fake devices): the same ``MCMC.run`` with the live tqdm bar and without it
(``progress_bar=False``, no callbacks compiled). The bar is drawn only on a terminal, so
``jppl.mcmc.runner.is_interactive`` is patched to ``True`` and stderr goes to ``os.devnull``
while the runs are timed: what is measured is the cost of the throttled host callbacks
compiled into the loop and of tqdm's bookkeeping, not of a terminal redrawing.

Each variant is compiled by a first run (not timed); then ``repeats`` rounds alternate the two
variants (new key each run). The overhead is ``min(with bar) / min(without) - 1``: the fastest
of many runs is the one least disturbed by the rest of the machine, which is what a fixed
per-run cost needs (medians are reported too).
Results: ``benchmarks/results/progress_cpu.json`` and ``progress_cpu.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run by path: import the package from the root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

if __name__ == "__main__":
    from benchmarks.workers import force_host_devices

    force_host_devices(4)

import argparse
import contextlib
import os
import statistics
import time
from typing import Any

import jax

from benchmarks.problems import eight_schools_problem, radon_problem
from benchmarks.report import RESULTS_DIR, machine_info, markdown_table, write_results

TARGET = 0.02  # the live bar costs at most 2% of a run


@contextlib.contextmanager
def _live_bar_to_devnull():
    """Make jppl draw its live bar (as on a terminal) into ``os.devnull``."""
    import jppl.mcmc.runner as runner

    original, stderr = runner.is_interactive, sys.stderr
    with open(os.devnull, "w") as null:
        runner.is_interactive = lambda: True
        sys.stderr = null
        try:
            yield
        finally:
            runner.is_interactive, sys.stderr = original, stderr


def _mcmc(problem, chain_method: str, progress_bar: bool):
    import jppl
    import jppl.distributions as dist
    from jppl.mcmc import MCMC, NUTS

    return MCMC(
        NUTS(problem.make_model(jppl, dist)),
        num_warmup=problem.num_warmup,
        num_samples=problem.num_samples,
        num_chains=problem.num_chains,
        chain_method=chain_method,
        progress_bar=progress_bar,
        warn=False,
    )


def bench(problem, chain_method: str, repeats: int) -> dict[str, Any]:
    """Median run seconds with and without the live bar, and the overhead."""
    runs = {bar: _mcmc(problem, chain_method, bar) for bar in (True, False)}
    init = problem.init_for()

    def run(bar: bool, seed: int) -> float:
        mcmc = runs[bar]
        start = time.perf_counter()
        with _live_bar_to_devnull() if bar else contextlib.nullcontext():
            mcmc.run(jax.random.key(seed), *problem.args, init_params=init, **problem.kwargs)
            jax.block_until_ready(mcmc.get_samples())
        return time.perf_counter() - start

    first = {bar: run(bar, 0) for bar in (True, False)}  # compiles
    times: dict[bool, list[float]] = {True: [], False: []}
    for r in range(repeats):
        for bar in (True, False) if r % 2 == 0 else (False, True):
            times[bar].append(run(bar, r + 1))
    with_bar, without = min(times[True]), min(times[False])
    return {
        "model": problem.name,
        "chain_method": chain_method,
        "first_run_s": {"bar": first[True], "no_bar": first[False]},
        "with_bar_s": times[True],
        "without_bar_s": times[False],
        "min_with_bar_s": with_bar,
        "min_without_bar_s": without,
        "median_with_bar_s": statistics.median(times[True]),
        "median_without_bar_s": statistics.median(times[False]),
        "median_overhead": statistics.median(times[True]) / statistics.median(times[False]) - 1,
        "overhead": with_bar / without - 1.0,
        "pass": bool(with_bar / without - 1.0 <= TARGET),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=21, help="timed runs per variant")
    args = parser.parse_args(argv)
    rows = []
    for make in (eight_schools_problem, radon_problem):
        problem = make(False)
        for chain_method in ("vectorized", "sharded"):
            row = bench(problem, chain_method, args.repeats)
            rows.append(row)
            print(
                f"{row['model']:14s} {chain_method:10s} with bar {row['min_with_bar_s']:.3f} s"
                f"  without {row['min_without_bar_s']:.3f} s  overhead "
                f"{100 * row['overhead']:+.1f}%",
                flush=True,
            )
    results = {"machine": machine_info(), "target": TARGET, "repeats": args.repeats, "runs": rows}
    table = markdown_table(
        ["model", "chain method", "with bar s", "without s", "overhead", "<= 2%", "median ovh."],
        [
            [
                r["model"],
                r["chain_method"],
                r["min_with_bar_s"],
                r["min_without_bar_s"],
                f"{100 * r['overhead']:+.1f}%",
                "yes" if r["pass"] else "NO",
                f"{100 * r['median_overhead']:+.1f}%",
            ]
            for r in rows
        ],
    )
    machine = results["machine"]
    text = f"""# Cost of the live MCMC progress bar (CPU)

Generated by `benchmarks/progress.py` ({machine["time"]}, jax {machine["jax"]},
{machine["cpu_count"]} CPUs, load average {machine["load_average"]}). 4 chains x 1000 warm-up /
1000 draws; the same compiled `MCMC.run` with the live bar (callbacks compiled in, tqdm into
`os.devnull`) and with `progress_bar=False`; fastest of {args.repeats} interleaved runs each
(compilation excluded; the medians' overhead is shown for reference). Without a terminal (CI
logs) jppl compiles no callbacks at all and prints one line per phase.

{table}
"""
    write_results(RESULTS_DIR / "progress_cpu", results, text)
    print(text)


if __name__ == "__main__":
    main()
