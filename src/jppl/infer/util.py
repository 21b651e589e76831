"""NumPyro's ``numpyro.infer.util`` path: log densities, the unconstrained space, Predictive.

The code lives in :mod:`jppl.model.density` and :mod:`jppl.infer.predictive`; this module
keeps ``from jppl.infer.util import log_density`` (a NumPyro import) working, and adds
NumPyro's :func:`get_potential_fn` on top of them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from jppl.infer.predictive import Predictive
from jppl.model.density import (
    ModelInfo,
    ParamInfo,
    compute_log_probs,
    constrain_fn,
    enumerated,
    find_valid_initial_params,
    get_model_transforms,
    initialize_model,
    log_density,
    log_likelihood,
    potential_energy,
    site_log_prob,
    transform_fn,
    unconstrain_fn,
)

__all__ = [
    "ModelInfo",
    "ParamInfo",
    "Predictive",
    "compute_log_probs",
    "constrain_fn",
    "find_valid_initial_params",
    "get_model_transforms",
    "get_potential_fn",
    "initialize_model",
    "log_density",
    "log_likelihood",
    "potential_energy",
    "site_log_prob",
    "transform_fn",
    "unconstrain_fn",
]


def get_potential_fn(
    model: Callable,
    inv_transforms: dict,
    *,
    enum: bool = False,
    replay_model: bool = False,
    dynamic_args: bool = False,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
) -> tuple[Callable, Callable]:
    """The potential energy of ``model`` and the map back to constrained values.

    Args:
        model: the model.
        inv_transforms: ``{site name: transform}`` from the unconstrained to the constrained
            space (e.g. the first output of :func:`get_model_transforms`).
        enum: sum out the model's discrete latent sites (those with ``enumerate_support``)
            exactly: the potential is the marginal of the continuous sites (what ``MCMC``
            and ``initialize_model`` do for a model with discrete latent sites).
        replay_model: make ``postprocess_fn`` run the model (:func:`constrain_fn`), so that
            it also returns the ``deterministic`` sites; otherwise it only applies
            ``inv_transforms``.
        dynamic_args: return functions of the model arguments instead:
            ``potential_fn(*args, **kwargs)`` and ``postprocess_fn(*args, **kwargs)`` give the
            functions below for those arguments.
        model_args, model_kwargs: the model's arguments (when ``dynamic_args`` is False).

    Returns:
        ``(potential_fn, postprocess_fn)``: ``potential_fn(z) -> ()`` is
        :func:`potential_energy` at unconstrained values ``z`` (a dict by site name), and
        ``postprocess_fn(z) -> dict`` the constrained values.

    """
    if enum:
        model = enumerated(model)
    if dynamic_args:

        def potential_fn(*args, **kwargs):
            return partial(potential_energy, model, args, kwargs)

        if replay_model:

            def postprocess_fn(*args, **kwargs):
                return partial(constrain_fn, model, args, kwargs, return_deterministic=True)

        else:

            def postprocess_fn(*args, **kwargs):
                return partial(transform_fn, inv_transforms)

        return potential_fn, postprocess_fn
    model_kwargs = {} if model_kwargs is None else model_kwargs
    potential_fn = partial(potential_energy, model, model_args, model_kwargs)
    if replay_model:
        postprocess_fn = partial(
            constrain_fn, model, model_args, model_kwargs, return_deterministic=True
        )
    else:
        postprocess_fn = partial(transform_fn, inv_transforms)
    return potential_fn, postprocess_fn
