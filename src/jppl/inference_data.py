"""Results in ArviZ's format, on either ArviZ line.

ArviZ has two lines that users meet in the wild:

* **0.x** (``arviz<1``, e.g. 0.23 on Python 3.11): results are an ``arviz.InferenceData``
  built by ``arviz.from_dict``;
* **1.x** (``arviz>=1``, which pip resolves on Python 3.12+; the ``arviz-base``,
  ``arviz-stats`` and ``arviz-plots`` packages): results are an ``xarray.DataTree`` built by
  ``arviz_base.from_dict``.

:func:`to_inference_data` calls whichever converter is installed, so the object a user gets is
the one the rest of their ArviZ works with, with the same groups, variables, dims and coords on
both lines. Front ends (``MCMC.to_arviz``) go through it; nothing else in jppl imports ArviZ.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jppl.version import __version__

__all__ = ["arviz_line", "plate_dims", "to_inference_data"]

#: The groups whose variables carry no ``(chain, draw)`` sample dimensions.
_DATA_GROUPS = ("observed_data", "constant_data", "predictions_constant_data")
_GROUPS = (
    "posterior",
    "posterior_predictive",
    "predictions",
    "sample_stats",
    "log_likelihood",
    "prior",
    "prior_predictive",
    "sample_stats_prior",
    *_DATA_GROUPS,
)


def _major(module: Any) -> int:
    return int(str(getattr(module, "__version__", "0")).split(".")[0])


def arviz_line() -> int | None:
    """The ArviZ line that :func:`to_inference_data` uses: ``0``, ``1`` or ``None``.

    ``0`` when ``arviz<1`` is installed, ``1`` when ``arviz>=1`` or ``arviz-base`` alone is,
    ``None`` when neither imports.
    """
    try:
        arviz = importlib.import_module("arviz")
    except ImportError:
        arviz = None
    if arviz is not None and _major(arviz) == 0:
        return 0
    try:
        importlib.import_module("arviz_base")
    except ImportError:
        return None
    return 1


def _require_line() -> int:
    line = arviz_line()
    if line is None:
        raise ImportError(
            "Export to ArviZ needs ArviZ: pip install 'jppl[arviz]' (or pip install arviz; "
            "either line works: 0.x gives an InferenceData, 1.x an xarray.DataTree)."
        )
    return line


def _dims_for(
    name: str,
    value: np.ndarray,
    num_sample_dims: int,
    dims: Mapping[str, Sequence[str | None]],
    truncate: bool = False,
) -> list[str]:
    """The event dims of ``name``: the given names where there are some (``None`` leaves one
    unnamed), else ``<name>_dim_<i>`` with ``i`` the axis (as both ArviZ lines name them), so
    the two lines name every dim the same. ``truncate`` keeps the leading names only."""
    given = list(dims.get(name, ()))
    event_ndim = value.ndim - num_sample_dims
    if truncate:
        given = given[:event_ndim]
    if len(given) > event_ndim:
        raise ValueError(
            f"dims[{name!r}] names {len(given)} dimensions, but {name!r} has {event_ndim} "
            f"beyond the sample dimensions (shape {value.shape})."
        )
    given += [None] * (event_ndim - len(given))
    return [d if d is not None else f"{name}_dim_{i}" for i, d in enumerate(given)]


def plate_dims(model_trace: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str | None]]:
    """Dim names of each site's value from its enclosing plates (``None`` where no plate
    names an axis), so that ArviZ's dims are the model's plates, as NumPyro names them.

    A sample site's value has shape ``batch_shape + event_shape``; a plate of batch dim ``d``
    (negative) names axis ``len(batch_shape) + d``. A deterministic site has no event shape to
    go by: its axes are named only where they line up with the plates from the right and have
    the plates' sizes.
    """
    out: dict[str, list[str | None]] = {}
    for name, site in model_trace.items():
        if site.get("type") not in ("sample", "deterministic"):
            continue
        frames = site.get("cond_indep_stack") or ()
        shape = tuple(np.shape(site["value"]))
        fn = site.get("fn")
        event_ndim = len(getattr(fn, "event_shape", ())) if site["type"] == "sample" else 0
        batch_ndim = len(shape) - event_ndim
        names: list[str | None] = [None] * len(shape)
        for frame in frames:
            axis = batch_ndim + frame.dim
            if 0 <= axis < batch_ndim and shape[axis] == frame.size:
                names[axis] = frame.name
        if any(n is not None for n in names):
            out[name] = names
    return out


def to_inference_data(
    posterior: Mapping[str, Any] | None = None,
    *,
    coords: Mapping[str, Any] | None = None,
    dims: Mapping[str, Sequence[str]] | None = None,
    **groups: Mapping[str, Any] | None,
) -> Any:
    """ArviZ results from arrays: an ``arviz.InferenceData`` on ArviZ 0.x, an
    ``xarray.DataTree`` on ArviZ 1.x.

    Args:
        posterior: ``{name: array of shape (chain, draw, *event)}``.
        coords: ``{dim: values}`` for any named dim.
        dims: ``{variable: [dim names of its axes after (chain, draw)]}``, ``None`` for an
            unnamed one; unnamed axes are called ``<variable>_dim_<i>`` on both lines. In
            ``log_likelihood`` a variable may have fewer axes than elsewhere (an observed
            site's event axes): it takes the leading names.
        **groups: more groups by ArviZ's names: ``sample_stats``, ``log_likelihood``,
            ``posterior_predictive``, ``predictions``, ``prior``, ``prior_predictive``,
            ``sample_stats_prior`` (all shaped ``(chain, draw, ...)``), and
            ``observed_data``, ``constant_data``, ``predictions_constant_data`` (any shape).
            ``None`` or empty groups are left out.

    Raises:
        ImportError: if no ArviZ line is installed.
        ValueError: on an unknown group name or ``dims`` longer than a variable's event axes.
    """
    data = {"posterior": posterior, **groups}
    unknown = sorted(set(data) - set(_GROUPS))
    if unknown:
        raise ValueError(f"Unknown ArviZ group(s) {unknown}; expected some of {list(_GROUPS)}.")
    data = {
        group: {name: np.asarray(value) for name, value in values.items()}
        for group, values in data.items()
        if values
    }
    if not data:
        raise ValueError("to_inference_data needs at least one non-empty group.")
    line = _require_line()
    user_dims = dict(dims or {})
    all_dims: dict[str, list[str]] = {}
    # log_likelihood last: its variables may lack the event axes that ArviZ then drops.
    for group in sorted(data, key=lambda g: g == "log_likelihood"):
        num_sample_dims = 0 if group in _DATA_GROUPS else 2
        for name, value in data[group].items():
            if value.ndim < num_sample_dims:
                raise ValueError(
                    f"{group}[{name!r}] has shape {value.shape}; expected (chain, draw, ...)."
                )
            named = _dims_for(
                name, value, num_sample_dims, user_dims, truncate=group == "log_likelihood"
            )
            known = all_dims.setdefault(name, named)
            fits = known[: len(named)] == named if group == "log_likelihood" else known == named
            if not fits:
                # ArviZ takes one dims list per variable name, shared by all groups.
                raise ValueError(
                    f"{group}[{name!r}] has event dims {named}, but another group's "
                    f"{name!r} has {known}: a name must have the same event dimensions in "
                    "every group."
                )
    coords = dict(coords or {})
    attrs = {"inference_library": "jppl", "inference_library_version": _version()}
    if line == 0:
        import arviz

        out = arviz.from_dict(
            **data, coords=coords, dims=all_dims, pred_coords=coords, pred_dims=all_dims
        )
        for group in data:  # 0.x's from_dict takes attrs for some groups only
            getattr(out, group).attrs.update(attrs)
        return out
    import arviz_base

    return arviz_base.from_dict(
        data,
        coords=coords,
        dims=all_dims,
        pred_coords=coords,
        pred_dims=all_dims,
        attrs={group: dict(attrs) for group in data},
    )


def _version() -> str:
    return __version__
