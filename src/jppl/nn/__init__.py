"""Neural networks in jppl models: Flax (Linen and NNX) modules as parameters or latents.

* :mod:`jppl.nn.module`: ``flax_module`` (parameters as one ``param`` site) and
  ``random_flax_module`` (parameters as latent ``sample`` sites).
* :mod:`jppl.nn.bayesian`: ``BayesianModule``, a matched prior model and mean-field Gaussian
  guide for any Flax module, with a KL weight.
* :mod:`jppl.nn.priors`: ``normal_prior`` and the ``scale_mixture_prior`` of Blundell et al.
* :mod:`jppl.nn.predict`: M posterior draws of a network's output and the predictive
  uncertainty decomposition (entropy, expected entropy, mutual information).
* :mod:`jppl.nn.metrics`: accuracy, NLL, expected calibration error, reliability diagram.

Import it explicitly (``import jppl.nn``); ``import jppl`` does not load Flax. Flax is an
optional dependency: ``pip install 'jppl[nn]'``.
"""

try:
    import flax  # noqa: F401
except ImportError as e:  # only jppl.nn needs Flax
    raise ImportError(
        "jppl.nn needs Flax, an optional dependency of jppl: pip install 'jppl[nn]' "
        "(or pip install 'flax>=0.12,<0.13')."
    ) from e

from jppl.nn.bayesian import BayesianModule  # noqa: E402
from jppl.nn.metrics import (
    ReliabilityDiagram,
    accuracy,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_diagram,
)
from jppl.nn.module import flax_module, param_paths, random_flax_module
from jppl.nn.predict import (
    PredictiveSummary,
    sample_keys,
    sample_predictions,
    summarize_logits,
    summarize_probs,
)
from jppl.nn.priors import normal_prior, scale_mixture_prior
from jppl.nn.trainer import Trainer

__all__ = [
    "BayesianModule",
    "PredictiveSummary",
    "ReliabilityDiagram",
    "Trainer",
    "accuracy",
    "expected_calibration_error",
    "flax_module",
    "negative_log_likelihood",
    "normal_prior",
    "param_paths",
    "random_flax_module",
    "reliability_diagram",
    "sample_keys",
    "sample_predictions",
    "scale_mixture_prior",
    "summarize_logits",
    "summarize_probs",
]
