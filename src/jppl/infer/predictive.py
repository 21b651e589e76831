"""Running a model once per posterior draw: predictive distributions and log-likelihoods.

Both :class:`Predictive` and :func:`log_likelihood` map a single-draw computation over a batch
of draws: with ``parallel=True`` by ``jax.vmap`` (fast, memory grows with the batch), otherwise
by ``jax.lax.map`` (one draw at a time). Either way the model is traced once.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import jax
from jax.sharding import Mesh

from jppl.enumerate import config_enumerate
from jppl.handlers import seed, substitute, trace
from jppl.model.batch import batch_shape_of, flatten_batch, map_batch
from jppl.model.density import log_likelihood
from jppl.model.discrete import infer_discrete
from jppl.parallel.context import use_mesh
from jppl.parallel.mesh import axis_size
from jppl.primitives import Message

__all__ = ["Predictive", "log_likelihood"]  # log_likelihood lives in jppl.model


def _split_keys(rng_key, size: int):
    return jax.random.split(rng_key, size)


class Predictive:
    """Draw from the prior or posterior predictive distribution of a model.

    Args:
        model: the model.
        posterior_samples: dict ``{site name: array}`` with ``batch_ndims`` leading batch dims,
            e.g. from ``MCMC.get_samples()`` (one dim) or grouped by chain (two dims).
        guide: a guide to draw the latent sites from instead (with ``params`` substituted).
        params: values of ``param`` sites (e.g. from SVI), substituted into model and guide.
        num_samples: number of draws; required without ``posterior_samples`` (or with
            ``batch_ndims=0``), otherwise taken from the samples: a different value given
            here is ignored with a ``UserWarning`` (as in NumPyro).
        return_sites: names of the sites to return. Default: every sample site that is not in
            ``posterior_samples`` (so observed sites and new latent sites) plus every
            deterministic site.
        infer_discrete: draw the discrete latent sites that have ``enumerate_support`` from
            their posterior given each draw of the other sites (and the observations), as
            :func:`jppl.infer.infer_discrete` does, instead of from their prior. Use it with
            the draws of ``MCMC`` on a model whose discrete sites were summed out.
        parallel: map over the draws with ``jax.vmap`` (True) or ``jax.lax.map`` (False).
        batch_ndims: number of leading batch dims of ``posterior_samples`` (default 1), or,
            with a ``guide`` and no samples, of ``params`` (default 0: shared params).
        exclude_deterministic: recompute deterministic sites instead of taking their values
            from ``posterior_samples``.
        mesh: optional ``jax.sharding.Mesh`` (:func:`jppl.parallel.make_mesh`) activated while
            the model runs, so that plates with ``shard="data"`` split their sites over it;
            with ``parallel=True`` the draws are also split over its ``sample`` axis (their
            number must then be divisible by its size). The draws do not depend on the mesh.

    Calling ``predictive(rng_key, *args, **kwargs)`` runs the model with those arguments and
    returns ``{site name: array of shape batch_shape + site shape}``, where ``batch_shape`` is
    the samples' batch shape or ``(num_samples,)``. Each draw gets its own key.
    """

    def __init__(
        self,
        model: Callable,
        posterior_samples: dict[str, Any] | None = None,
        *,
        guide: Callable | None = None,
        params: dict[str, Any] | None = None,
        num_samples: int | None = None,
        return_sites: Iterable[str] | None = None,
        infer_discrete: bool = False,
        parallel: bool = False,
        batch_ndims: int | None = None,
        exclude_deterministic: bool = True,
        mesh: Mesh | None = None,
    ):
        if posterior_samples is not None and guide is not None:
            raise ValueError("Predictive: give either posterior_samples or a guide, not both.")
        if posterior_samples is not None and not isinstance(posterior_samples, dict):
            raise TypeError(
                "Predictive: posterior_samples must be a dict {site name: array}, got "
                f"{type(posterior_samples).__name__}."
            )
        if isinstance(return_sites, str):
            raise TypeError("Predictive: return_sites must be a list of site names, not a str.")
        if num_samples is not None and (not isinstance(num_samples, int) or num_samples < 1):
            raise ValueError(f"Predictive: num_samples must be a positive int, got {num_samples}")
        params = {} if params is None else dict(params)
        if batch_ndims is None:
            batch_ndims = 1 if posterior_samples is not None else 0
        if not isinstance(batch_ndims, int) or batch_ndims < 0:
            raise ValueError(f"Predictive: batch_ndims must be an int >= 0, got {batch_ndims}")

        # Which inputs carry the batch dims: the posterior samples, else (guide) the params.
        batched_samples = posterior_samples is not None and batch_ndims > 0
        batched_params = posterior_samples is None and guide is not None and batch_ndims > 0
        batch_shape = None
        if batched_samples:
            batch_shape = batch_shape_of(posterior_samples, batch_ndims, "posterior_samples")
        elif batched_params:
            batch_shape = batch_shape_of(params, batch_ndims, "params")
        if batch_shape is not None:
            if num_samples is not None and num_samples != math.prod(batch_shape):
                # NumPyro warns and uses the draws' number: a port keeps running the same way.
                source = "posterior_samples" if batched_samples else "params"
                warnings.warn(
                    f"Predictive: num_samples={num_samples} differs from the "
                    f"{math.prod(batch_shape)} draws in {source} (batch shape {batch_shape}); "
                    f"using {math.prod(batch_shape)}.",
                    UserWarning,
                    stacklevel=2,
                )
        else:
            if num_samples is None:
                raise ValueError(
                    "Predictive: num_samples is required when there are no batched "
                    "posterior_samples to infer it from."
                )
            batch_shape = (num_samples,)
            batched_samples = batched_params = False

        if mesh is not None and not isinstance(mesh, Mesh):
            raise TypeError(
                f"Predictive: mesh must be a jax.sharding.Mesh (see jppl.parallel.make_mesh), "
                f"got {mesh!r}"
            )
        n_dev = axis_size(mesh, "sample")
        if parallel and math.prod(batch_shape) % n_dev:
            raise ValueError(
                f"Predictive: {math.prod(batch_shape)} draws are not divisible by the size "
                f"{n_dev} of the mesh's 'sample' axis (parallel=True splits the draws over it)."
            )
        self.mesh = mesh
        self.model = model
        self.posterior_samples = {} if posterior_samples is None else posterior_samples
        self.guide = guide
        self.params = params
        self.num_samples = math.prod(batch_shape)
        self.return_sites = None if return_sites is None else list(return_sites)
        self.parallel = parallel
        self.batch_ndims = batch_ndims
        self.exclude_deterministic = exclude_deterministic
        self.infer_discrete = bool(infer_discrete)
        self._batch_shape = tuple(batch_shape)
        self._batched_samples = batched_samples
        self._batched_params = batched_params

    def _run(self, rng_key, samples: dict, params: dict, args, kwargs) -> dict[str, jax.Array]:
        """One draw: run the model with ``samples`` and ``params`` substituted."""
        if self.guide is not None:
            guide_key, rng_key = jax.random.split(rng_key)
            guide_trace = trace(
                seed(substitute(self.guide, data=params), rng_seed=guide_key)
            ).get_trace(*args, **kwargs)
            samples = {
                name: site["value"]
                for name, site in guide_trace.items()
                if site["type"] == "sample" and not site["is_observed"]
            }
        exclude = self.exclude_deterministic

        def substitute_fn(site: Message):
            if site["type"] == "param":
                return params.get(site["name"], samples.get(site["name"]))
            if site["type"] == "sample" or (site["type"] == "deterministic" and not exclude):
                return samples.get(site["name"])
            return None

        model = substitute(self.model, substitute_fn=substitute_fn)
        if self.infer_discrete:
            discrete_key, rng_key = jax.random.split(rng_key)
            model = infer_discrete(config_enumerate(model), rng_key=discrete_key)
        model_trace = trace(seed(model, rng_seed=rng_key)).get_trace(*args, **kwargs)
        if self.return_sites is not None:
            missing = [name for name in self.return_sites if name not in model_trace]
            if missing:
                available = [n for n, s in model_trace.items() if s["type"] != "plate"]
                raise ValueError(
                    f"Predictive: return_sites {missing} are not sites of the model "
                    f"(its sites: {available})."
                )
            names = self.return_sites
        else:
            names = [
                name
                for name, site in model_trace.items()
                if (site["type"] == "sample" and name not in samples)
                or site["type"] == "deterministic"
            ]
        return {name: model_trace[name]["value"] for name in names}

    def __call__(self, rng_key, *args, **kwargs) -> dict[str, jax.Array]:
        """Draw ``num_samples`` predictions; see the class docstring for the shapes."""
        size = self.num_samples
        keys = _split_keys(rng_key, size)
        samples = self.posterior_samples
        params = self.params
        if self._batched_samples:
            samples = flatten_batch(samples, self.batch_ndims, size)
        if self._batched_params:
            params = flatten_batch(params, self.batch_ndims, size)

        def one(inputs):
            key, draw_samples, draw_params = inputs
            draw_samples = draw_samples if self._batched_samples else samples
            draw_params = draw_params if self._batched_params else params
            return self._run(key, draw_samples, draw_params, args, kwargs)

        inputs = (
            keys,
            samples if self._batched_samples else None,
            params if self._batched_params else None,
        )
        with use_mesh(self.mesh):  # no mesh: a no-op
            return map_batch(one, inputs, self._batch_shape, self.parallel)
