"""NumPyro's ``numpyro.contrib.funsor`` names, without funsor: discrete enumeration.

``from jppl.contrib.funsor import config_enumerate, enum, markov, infer_discrete, log_density``
ports NumPyro code unchanged. The code lives in :mod:`jppl.enumerate` (the handlers) and
:mod:`jppl.model` (the exact sum over enumerated sites, :mod:`jppl.model.enum`, and
:func:`~jppl.model.discrete.infer_discrete`); jppl needs no funsor.

``log_density(model, model_args, model_kwargs, params)`` is :func:`jppl.infer.log_density`:
for a model run under ``enum`` it returns the density with the enumerated sites summed out.
"""

from jppl.enumerate import config_enumerate, enum, markov
from jppl.handlers import infer_config, trace
from jppl.model.density import log_density
from jppl.model.discrete import infer_discrete
from jppl.primitives import plate

__all__ = [
    "config_enumerate",
    "enum",
    "infer_config",
    "infer_discrete",
    "log_density",
    "markov",
    "plate",
    "trace",
]
