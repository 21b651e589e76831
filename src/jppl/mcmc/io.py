"""Saving and resuming MCMC runs (:mod:`jppl.checkpoint` files) and export to ArviZ.

Checkpointing a long run in chunks, so that a killed job resumes where it was::

    if os.path.exists("ckpt.npz"):
        mcmc = MCMC.load("ckpt", NUTS(model))           # post_warmup_state = saved state
    else:
        mcmc = MCMC(NUTS(model), num_warmup=1000, num_samples=500)
        mcmc.warmup(jax.random.key(0), data)            # or run() a first chunk
        mcmc.save("ckpt")                               # writes ckpt.npz atomically
    while int(mcmc.post_warmup_state.step[0]) < 5000:
        mcmc.run(None, data)                            # continues the same key streams
        store(mcmc.get_samples(group_by_chain=True))    # e.g. append to disk
        mcmc.post_warmup_state = mcmc.last_state
        mcmc.save("ckpt")

Because each draw's key is ``fold_in(chain_key, global_draw_index)`` and the state carries the
index, the chunks concatenate bitwise to one uninterrupted run. A save replaces the file
atomically (a job killed while saving keeps its previous checkpoint), and a load checks the
state (a finite positive step size, a finite mass matrix, position and log density: see
:func:`jppl.checkpoint.check_mcmc_state`).

The functions here work on a run's arrays and settings, not on the
:class:`~jppl.mcmc.MCMC` object: its ``save``, ``load`` and ``to_arviz`` methods pass them in
from its public accessors (``last_state``, ``named_samples``, ``model_args``, ...).

A checkpoint of kind ``"mcmc"`` holds the tree ``{"state": MCMCState, "samples": {site:
(C, num_draws, ...)}, "fields": {name: (C, num_draws, ...)}}`` and the meta record
``{"settings": {...}, "sampler": sampler.config()}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jppl import checkpoint
from jppl.handlers import seed, substitute, trace
from jppl.inference_data import plate_dims, to_inference_data
from jppl.mcmc.state import MCMCState
from jppl.model import density
from jppl.parallel.distributed import gather

__all__ = [
    "SETTINGS",
    "Checkpoint",
    "read_checkpoint",
    "to_arviz",
    "to_inference_data",
    "write_checkpoint",
]

KIND = "mcmc"
"""The :mod:`jppl.checkpoint` kind of an MCMC checkpoint."""

#: The ``MCMC`` options a checkpoint stores (and ``MCMC.load`` uses unless overridden).
SETTINGS = ("num_warmup", "num_samples", "num_chains", "thinning", "chain_method")


class Checkpoint(NamedTuple):
    """What :func:`read_checkpoint` reads back.

    Attributes:
        state: the :class:`~jppl.mcmc.state.MCMCState` of the saved run (``C`` chains).
        settings: ``{option: value}`` for the names in :data:`SETTINGS`.
        samples: ``{site: (C, num_draws, ...)}`` saved samples (``{}`` if none were saved).
        extra_fields: ``{name: (C, num_draws, ...)}`` saved per-draw statistics.
    """

    state: MCMCState
    settings: dict[str, Any]
    samples: dict[str, jax.Array]
    extra_fields: dict[str, jax.Array]


def write_checkpoint(
    path: str | os.PathLike,
    state: MCMCState,
    *,
    settings: dict[str, Any],
    sampler_config: dict[str, Any],
    samples: dict[str, Any] | None = None,
    extra_fields: dict[str, Any] | None = None,
) -> str:
    """Write a run's last ``state`` (and its samples and statistics) to ``path`` atomically.

    Args:
        path: ``<stem>`` or ``<stem>.npz``: writes ``<stem>.npz`` (or, for chains split over
            the devices of several processes, the directory ``<stem>``; see
            :func:`jppl.checkpoint.save`).
        state: the :class:`~jppl.mcmc.state.MCMCState` after the run.
        settings: ``{option: value}`` for the names in :data:`SETTINGS` (JSON-serializable).
        sampler_config: the sampler's ``config()``, checked again on reading.
        samples: ``{site: (C, num_draws, ...)}`` arrays to store, or ``None``.
        extra_fields: ``{name: (C, num_draws, ...)}`` statistics to store with ``samples``.

    Returns:
        the path written.
    """
    if not isinstance(state, MCMCState):
        raise TypeError(f"write_checkpoint: state must be an MCMCState, got {type(state)}")
    keep = samples is not None and extra_fields is not None
    tree = {
        "state": state,
        "samples": dict(samples) if keep else {},
        "fields": dict(extra_fields) if keep else {},
    }
    meta = {
        "settings": {name: settings[name] for name in SETTINGS},
        "sampler": json.loads(json.dumps(sampler_config)),
    }
    return checkpoint.save(path, tree, kind=KIND, meta=meta)


def read_checkpoint(path: str | os.PathLike, sampler_config: dict[str, Any]) -> Checkpoint:
    """Read what :func:`write_checkpoint` wrote (``path`` with or without ``.npz``).

    Args:
        path: the checkpoint, as given to :func:`write_checkpoint`.
        sampler_config: the ``config()`` of the sampler that is to continue the run.

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        jppl.checkpoint.CheckpointError: (a ``ValueError``) not a jppl MCMC checkpoint,
            truncated or corrupt, or an invalid state (e.g. a NaN step size), naming the
            field.
        ValueError: if ``sampler_config`` (kernel, mass-matrix structure, adaptation, tree
            depth / trajectory) differs from the saved one.
    """
    loaded = checkpoint.load(path, kind=KIND)
    where, meta, tree = loaded.path, loaded.meta, loaded.tree
    if not (
        isinstance(tree, dict)
        and isinstance(tree.get("state"), MCMCState)
        and isinstance(tree.get("samples"), dict)
        and isinstance(tree.get("fields"), dict)
        and isinstance(meta.get("settings"), dict)
        and all(name in meta["settings"] for name in SETTINGS)
    ):
        raise checkpoint.CheckpointError(
            f"checkpoint {where}: not the layout of an MCMC checkpoint (state, samples, "
            "fields and the settings)."
        )
    checkpoint.check_mcmc_state(tree["state"], where)
    given = json.loads(json.dumps(sampler_config))
    if given != meta.get("sampler"):
        raise ValueError(
            f"The sampler does not match the checkpoint {where}: saved {meta.get('sampler')}, "
            f"given {given}."
        )
    settings = {name: meta["settings"][name] for name in SETTINGS}
    return Checkpoint(tree["state"], settings, tree["samples"], tree["fields"])


# ---------------------------------------------------------------------------------------------
# ArviZ
# ---------------------------------------------------------------------------------------------

#: ArviZ sample_stats name -> (jppl field name, transform).
_STAT_NAMES = {
    "diverging": ("diverging", None),
    "tree_depth": ("tree_depth", None),
    "energy": ("energy", None),
    "lp": ("potential_energy", np.negative),
    "step_size": ("step_size", None),
    "acceptance_rate": ("accept_prob", None),
    "n_steps": ("num_steps", None),
}


def _model_trace(
    model: Callable, samples: dict[str, Any], args: tuple, kwargs: dict
) -> dict[str, Any]:
    """The model's trace with the run's arguments at the first draw of ``samples``."""
    first = jax.tree.map(lambda x: x[0, 0], samples)
    return trace(substitute(seed(model, rng_seed=0), data=first)).get_trace(*args, **kwargs)


def _by_chain(
    group: str, values: dict[str, Any] | None, num_chains: int, num_draws: int
) -> dict[str, np.ndarray] | None:
    """``values`` as ``(chain, draw, ...)`` arrays: given so, or flat over the run's
    ``num_chains * num_draws`` draws (what ``Predictive`` returns for ``get_samples()``)."""
    if values is None:
        return None
    out = {}
    for name, value in values.items():
        arr = np.asarray(gather(value))
        if arr.shape[:2] == (num_chains, num_draws):
            out[name] = arr
        elif arr.ndim >= 1 and arr.shape[0] == num_chains * num_draws:
            out[name] = arr.reshape((num_chains, num_draws) + arr.shape[1:])
        else:
            raise ValueError(
                f"to_arviz: {group}[{name!r}] has shape {arr.shape}; expected a leading "
                f"({num_chains}, {num_draws}) (chain, draw) or ({num_chains * num_draws},) "
                "(the run's draws, as Predictive returns for mcmc.get_samples())."
            )
    return out


def to_arviz(
    samples: dict[str, Any],
    extra_fields: dict[str, Any],
    *,
    model: Callable | None = None,
    model_args: tuple = (),
    model_kwargs: dict[str, Any] | None = None,
    log_likelihood: bool = True,
    prior: dict[str, Any] | None = None,
    posterior_predictive: dict[str, Any] | None = None,
    predictions: dict[str, Any] | None = None,
    coords: dict[str, Any] | None = None,
    dims: dict[str, list[str | None]] | None = None,
) -> Any:
    """ArviZ results of an MCMC run: an ``arviz.InferenceData`` on ArviZ 0.x, an
    ``xarray.DataTree`` on ArviZ 1.x (see :func:`jppl.inference_data.to_inference_data`).

    Groups: ``posterior`` (all sites, with deterministic ones), ``sample_stats``
    (``diverging``, ``tree_depth`` for NUTS, ``energy``, ``lp`` = minus the potential energy,
    ``step_size``, ``acceptance_rate``, ``n_steps``), and for a model ``observed_data`` and
    ``log_likelihood`` (from :func:`jppl.infer.log_likelihood`, vectorized over all draws),
    plus the predictive groups given. A model's axes that a plate spans are named after the
    plate (``dims`` overrides), the others ``<site>_dim_<i>``.

    Args:
        samples: ``{name: (chain, draw, ...)}`` draws (``MCMC.named_samples``).
        extra_fields: ``{name: (chain, draw, ...)}`` per-draw statistics
            (``MCMC.get_extra_fields(group_by_chain=True)``).
        model: the model that was sampled (``None`` for a ``potential_fn``: no model groups).
        model_args, model_kwargs: the model arguments of the run.
        log_likelihood: add the ``log_likelihood`` group (one vectorized evaluation).
        prior: ``Predictive(model, num_samples=S)(...)`` draws ``{site: (S, ...)}``: the
            observed sites go to ``prior_predictive``, the others to ``prior`` (one chain).
        posterior_predictive: ``{site: (chain * draw, ...)}`` (``Predictive`` with
            ``mcmc.get_samples()``) or ``(chain, draw, ...)`` arrays.
        predictions: the same for new inputs (ArviZ's ``predictions`` group).
        coords: ``{dim: values}``, passed to ArviZ.
        dims: ``{site: [names of its axes after (chain, draw)]}`` (``None`` leaves one to the
            plates or unnamed).
    """
    model_kwargs = dict(model_kwargs or {})
    num_chains, num_draws = np.shape(next(iter(samples.values())))[:2]
    stats = {}
    for name, (field, transform) in _STAT_NAMES.items():
        if field in extra_fields:
            value = np.asarray(extra_fields[field])
            stats[name] = transform(value) if transform is not None else value
    observed, loglik, model_dims = None, None, {}
    if model is not None:
        model_trace = _model_trace(model, samples, model_args, model_kwargs)
        model_dims = plate_dims(model_trace)
        # gather: observations split over the devices of several processes are all-gathered.
        observed = gather(
            {
                name: site["value"]
                for name, site in model_trace.items()
                if site["type"] == "sample" and site["is_observed"]
            }
        )
        if log_likelihood and observed:
            flat = jax.tree.map(lambda x: jnp.reshape(x, (-1,) + x.shape[2:]), samples)
            values = density.log_likelihood(model, flat, *model_args, parallel=True, **model_kwargs)
            loglik = {
                k: v.reshape((num_chains, num_draws) + np.shape(v)[1:])
                for k, v in gather(values).items()
            }
    prior_group, prior_predictive = None, None
    if prior is not None:
        prior_arrays = {k: np.asarray(gather(v))[None] for k, v in prior.items()}
        observed_names = set(observed or ())
        prior_group = {k: v for k, v in prior_arrays.items() if k not in observed_names}
        prior_predictive = {k: v for k, v in prior_arrays.items() if k in observed_names}
    all_dims = {**model_dims}
    for name, names in (dims or {}).items():  # the user's names win, axis by axis
        plates = model_dims.get(name, [])
        all_dims[name] = [
            n if n is not None else (plates[i] if i < len(plates) else None)
            for i, n in enumerate(names)
        ] + list(plates[len(names) :])
    return to_inference_data(
        {k: np.asarray(v) for k, v in samples.items()},
        sample_stats=stats,
        log_likelihood=loglik,
        observed_data=observed,
        prior=prior_group,
        prior_predictive=prior_predictive,
        posterior_predictive=_by_chain(
            "posterior_predictive", posterior_predictive, num_chains, num_draws
        ),
        predictions=_by_chain("predictions", predictions, num_chains, num_draws),
        coords=coords,
        dims=all_dims,
    )
