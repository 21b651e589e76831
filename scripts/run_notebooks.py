"""Build, execute and check the notebooks in ``notebooks/``.

Each notebook ``notebooks/NAME.ipynb`` is generated from a plain-Python source
``notebooks/src/NAME.py`` in the "percent" format: cells start at lines ``# %%`` (code) or
``# %% [markdown]`` (markdown, every line written as a ``# `` comment).

Usage::

    python scripts/run_notebooks.py            # CI: check and execute every committed notebook
    python scripts/run_notebooks.py --write    # rebuild from the sources, execute, save outputs
    python scripts/run_notebooks.py 01_quickstart --timeout 300

The default (check) mode never writes a notebook. For each one it checks that the committed
``.ipynb`` holds exactly the cells of its source and that every code cell was executed (so the
outputs a reader sees on GitHub belong to the committed code), then executes a copy in a fresh
kernel. A notebook fails when a cell raises, when one cell runs longer than ``--timeout``
seconds, or when the whole notebook does. The exit status is 0 only if every notebook passed.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME, KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError
from traitlets import default

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
SOURCE_DIR = NOTEBOOK_DIR / "src"
CELL_MARKER = "# %%"
MARKDOWN_MARKER = "# %% [markdown]"
DEFAULT_TIMEOUT_S = 240


class OwnPythonKernelManager(KernelManager):
    """Starts this interpreter's own ipykernel, ignoring installed kernelspecs (a user-wide
    "python3" kernelspec could point at another Python, without jppl)."""

    @default("kernel_spec_manager")
    def _kernel_spec_manager_default(self) -> KernelSpecManager:
        specs = KernelSpecManager(data_dir=self.data_dir)
        specs.kernel_dirs = []
        return specs


@dataclass(frozen=True)
class Cell:
    """One notebook cell: ``kind`` is ``"code"`` or ``"markdown"``."""

    kind: str
    source: str


def parse_percent(text: str, name: str = "<source>") -> list[Cell]:
    """Split a percent-format source into cells (blank lines around each cell dropped).

    Raises:
        ValueError: if the text does not start with a cell marker, a markdown line is not a
            ``#`` comment, or a cell is empty.
    """
    lines = text.splitlines()
    if not lines or not lines[0].startswith(CELL_MARKER):
        raise ValueError(f"{name}: the first line must be a cell marker ('{CELL_MARKER}').")
    cells: list[Cell] = []
    kind, body, start = "", [], 0
    for lineno, line in enumerate([*lines, CELL_MARKER], start=1):
        if line.startswith(CELL_MARKER):
            if kind:
                cells.append(_make_cell(kind, body, f"{name}, cell at line {start}"))
            kind = "markdown" if line.strip() == MARKDOWN_MARKER else "code"
            if kind == "code" and line.strip() != CELL_MARKER:
                raise ValueError(f"{name}:{lineno}: unknown cell marker {line!r}.")
            body, start = [], lineno
        else:
            body.append(line)
    return cells


def _make_cell(kind: str, body: list[str], where: str) -> Cell:
    while body and not body[0].strip():
        body.pop(0)
    while body and not body[-1].strip():
        body.pop()
    if not body:
        raise ValueError(f"{where}: empty {kind} cell.")
    if kind == "markdown":
        text = []
        for line in body:
            if line != "#" and not line.startswith("# "):
                raise ValueError(f"{where}: markdown lines must start with '# ', got {line!r}.")
            text.append(line[2:])
        body = text
    return Cell(kind, "\n".join(body))


def build_notebook(cells: list[Cell]) -> nbformat.NotebookNode:
    """An unexecuted nbformat-4 notebook holding ``cells``, for the ``python3`` kernel."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(cells):
        make = nbformat.v4.new_code_cell if cell.kind == "code" else nbformat.v4.new_markdown_cell
        nb.cells.append(make(cell.source, id=f"cell-{i:02d}"))
    return nb


def notebook_cells(nb: nbformat.NotebookNode) -> list[Cell]:
    """The cells of a notebook as :class:`Cell` s (outputs ignored)."""
    return [Cell(c.cell_type, c.source) for c in nb.cells]


def execute(nb: nbformat.NotebookNode, timeout_s: float) -> float:
    """Execute ``nb`` in place in a fresh kernel, with ``notebooks/`` as working directory.

    Returns:
        The wall time in seconds.

    Raises:
        CellExecutionError: a cell raised.
        CellTimeoutError: a cell ran longer than ``timeout_s``.
        TimeoutError: the notebook as a whole ran longer than ``timeout_s``.
    """
    client = NotebookClient(
        nb,
        kernel_manager_class=OwnPythonKernelManager,
        kernel_name=NATIVE_KERNEL_NAME,
        timeout=int(timeout_s),
        record_timing=False,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    if seconds > timeout_s:
        raise TimeoutError(f"the notebook took {seconds:.0f} s, over its {timeout_s:.0f} s limit")
    return seconds


def staleness(name: str, committed: nbformat.NotebookNode) -> str | None:
    """Why the committed notebook does not match its source (``None`` if it does)."""
    source = SOURCE_DIR / f"{name}.py"
    if not source.exists():
        return f"no source {source.relative_to(ROOT)}"
    if notebook_cells(committed) != parse_percent(source.read_text(), str(source)):
        return f"its cells differ from {source.relative_to(ROOT)}"
    unexecuted = [
        i for i, c in enumerate(committed.cells) if c.cell_type == "code" and not c.execution_count
    ]
    if unexecuted:
        return f"code cells {unexecuted} have no outputs"
    return None


def run_one(name: str, write: bool, timeout_s: float) -> tuple[bool, float, str]:
    """Check (or rebuild) and execute one notebook; returns ``(ok, seconds, message)``."""
    path = NOTEBOOK_DIR / f"{name}.ipynb"
    source = SOURCE_DIR / f"{name}.py"
    try:
        if write:
            nb = build_notebook(parse_percent(source.read_text(), str(source)))
        else:
            nb = nbformat.read(path, as_version=4)
            stale = staleness(name, nb)
            if stale is not None:
                return False, 0.0, f"stale: {stale} (rebuild with run_notebooks.py --write)"
    except (OSError, ValueError) as err:
        return False, 0.0, f"cannot read it: {err}"
    start = time.perf_counter()
    ok, message = False, ""
    try:
        execute(nb, timeout_s)
        ok, message = True, "written" if write else "ok"
    except CellExecutionError as err:
        message = f"a cell raised:\n{err}"
    except (CellTimeoutError, TimeoutError) as err:
        message = f"timed out: {err}"
    seconds = time.perf_counter() - start
    if write:  # a failed notebook is written too, to show the error; check mode rejects it
        nbformat.validate(nb)
        nbformat.write(nb, path)
    return ok, seconds, message


def discover(names: list[str], write: bool) -> list[str]:
    """Notebook names to run: the given ones, else every source (``--write``) or notebook."""
    if names:
        return [Path(n).stem for n in names]
    folder, pattern = (SOURCE_DIR, "*.py") if write else (NOTEBOOK_DIR, "*.ipynb")
    return sorted(p.stem for p in folder.glob(pattern))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook names (default: all)")
    parser.add_argument("--write", action="store_true", help="rebuild from sources and save")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds allowed per notebook and per cell (default {DEFAULT_TIMEOUT_S})",
    )
    args = parser.parse_args(argv)
    names = discover(args.names, args.write)
    if not names:
        print("ERROR: no notebooks found.", file=sys.stderr)
        return 1
    failures = 0
    for name in names:
        ok, seconds, message = run_one(name, args.write, args.timeout)
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'} {name}.ipynb {seconds:6.1f} s  {message}", flush=True)
    print(f"{len(names) - failures} of {len(names)} notebooks passed.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
