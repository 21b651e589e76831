"""Packaging: optional dependencies stay optional and say how to install them."""

import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_jppl_loads_neither_flax_nor_arviz_nor_scipy():
    done = _run(
        "import sys, jppl, jppl.infer, jppl.diagnostics\n"
        "print(sorted(m for m in ('flax', 'arviz', 'arviz_base', 'scipy') if m in sys.modules))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_jppl_nn_without_flax_names_the_extra():
    # A None entry in sys.modules makes `import flax` raise ImportError, as if not installed.
    done = _run("import sys\nsys.modules['flax'] = None\nimport jppl\nimport jppl.nn")
    assert done.returncode != 0
    assert "jppl.nn needs Flax" in done.stderr and "pip install 'jppl[nn]'" in done.stderr


def test_export_without_arviz_names_the_extra():
    done = _run(
        "import sys\n"
        "sys.modules['arviz'] = None\nsys.modules['arviz_base'] = None\n"
        "import numpy as np\n"
        "from jppl.inference_data import to_inference_data\n"
        "to_inference_data({'a': np.zeros((2, 3))})"
    )
    assert done.returncode != 0
    assert "pip install 'jppl[arviz]'" in done.stderr
