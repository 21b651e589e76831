"""Live progress bars in Jupyter: a cell run by a real kernel (nbclient, as
``scripts/run_notebooks.py`` runs the notebooks) shows the bar updating while it runs.

In a kernel stderr is not a terminal; ``jppl.runloop.is_interactive`` recognizes the kernel,
and the bar (tqdm's text bar without ipywidgets) is redrawn between the compiled chunks of the
run. Every redraw reaches the notebook as its own stderr stream message, so the cell's outputs
hold the intermediate states of the bar. Needs the ``notebooks`` extra (the main CI leg).
"""

import re

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from scripts.run_notebooks import OwnPythonKernelManager  # noqa: E402

CELL = """
import jax, jax.numpy as jnp, numpy as np
import jppl, jppl.distributions as dist
from jppl.infer import MCMC, NUTS

rng = np.random.default_rng(0)
X = jnp.asarray(rng.normal(size=(5000, 50)), jnp.float32)
y = jnp.asarray(rng.random(5000) < 0.5, jnp.float32)

def model(X, y):
    w = jppl.sample("w", dist.Normal(jnp.zeros(50), 1.0).to_event(1))
    with jppl.plate("n", X.shape[0]):
        jppl.sample("y", dist.Bernoulli(logits=X @ w), obs=y)

mcmc = MCMC(NUTS(model), num_warmup=300, num_samples=3000, warn=False)
mcmc.run(jax.random.key(0), X, y)
"""

SVI_CELL = """
import optax
from jppl.infer import SVI, Trace_ELBO
from jppl.infer.autoguide import AutoNormal

svi = SVI(model, AutoNormal(model), optax.adam(1e-2), Trace_ELBO())
result = svi.run(jax.random.key(1), 8000, X, y)
"""


def test_bars_update_live_in_a_kernel(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CELL), nbformat.v4.new_code_cell(SVI_CELL)]
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_manager_class=OwnPythonKernelManager,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    for cell in nb.cells:
        assert all(o.output_type != "error" for o in cell.outputs), cell.outputs
    text = _stderr(nb.cells[0])
    # each redraw: "\rsample:  46%|████▌     | 918/3000 [...]"
    shown = [int(n) for n in re.findall(r"\rsample: +\d+%\|[^|]*\| *(\d+)/3000", text)]
    between = sorted(set(n for n in shown if 0 < n < 3000))
    assert len(between) >= 3, text  # several updates while it ran, not only before and after
    assert shown[-1] == 3000 and "divergences" in text
    assert re.search(r"\rwarmup: 100%\|.*300/300", text)

    text = _stderr(nb.cells[1])
    shown = [int(n) for n in re.findall(r"\rSVI: +\d+%\|[^|]*\| *(\d+)/8000", text)]
    assert len(sorted(set(n for n in shown if 0 < n < 8000))) >= 3, text
    assert shown[-1] == 8000 and "loss" in text


def _stderr(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stderr")
