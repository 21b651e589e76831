"""The potential energy of a model whose data-sharded plates are summed in fixed blocks.

With a mesh whose ``data`` axis splits the observations (``plate(..., shard="data")`` and
arrays placed by :func:`jppl.parallel.shard_along`), :func:`blocked_potential_energy` computes
the same potential as :func:`jppl.model.density.potential_energy` but adds the likelihood of the
sharded plates as ``V`` blocks of consecutive rows in a fixed order
(:func:`jppl.parallel.blocks.blockwise_sum`): its value and gradient are bitwise the same on
every number of data devices that divides ``V``. ``MCMC(..., mesh=...)`` uses it, so NUTS with
warm-up adaptation gives the same draws on 1, 2, 4 or 8 devices.

The model runs twice per evaluation: once on the whole data for the sites outside the sharded
plates (the prior, the log-Jacobians; XLA drops the unused whole-data likelihood), and once per
block, where each sharded plate has ``N / V`` entries and the split arrays have their block's
rows. Requirements, checked with clear errors:

* every sample site inside a sharded plate is observed (no per-row latent variables);
* a sharded plate is not subsampled;
* a split array is used only inside its plate (a whole-data statistic such as ``x.mean(0)``
  would be computed per block): ``MCMC`` compares the blocked and plain potentials at the
  initial points and raises if they disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jppl.handlers import substitute, trace
from jppl.model.density import (
    _unconstrained_substitute,
    log_density,
    potential_energy,
    site_log_prob,
)
from jppl.parallel.blocks import BlockPlan, blockwise_sum
from jppl.primitives import Message, Messenger

__all__ = ["blocked_potential_energy", "potential_with_blocks", "sharded_sites"]

_OFF = "pass data_blocks=0 to MCMC to let XLA reduce the likelihood instead"


class _blocked_plates(Messenger):
    """Run the plates sharded over ``plan.axis`` on one block of ``plan.block_size`` entries."""

    def __init__(self, fn: Callable | None = None, plan: BlockPlan | None = None):
        self.plan = plan
        self.names: set[str] = set()
        super().__init__(fn)

    def resize_plate(self, name: str, size: int, subsample_size: int, shard: str | None):
        plan = self.plan
        if shard != plan.axis:
            return size, subsample_size, shard
        if subsample_size != size:
            raise ValueError(
                f"plate '{name}' is sharded over '{plan.axis}' and subsampled "
                f"({subsample_size} of {size}); data blocks need the whole data: {_OFF}."
            )
        if size not in (plan.size, plan.block_size):
            raise ValueError(
                f"plate '{name}' is sharded over '{plan.axis}' with size {size}, but the arrays "
                f"split over '{plan.axis}' have {plan.size} rows; data blocks need them equal: "
                f"{_OFF}."
            )
        self.names.add(name)
        return plan.block_size, plan.block_size, None


def _in_sharded_plate(site: Message, axis: str) -> bool:
    return any(getattr(f, "shard", None) == axis for f in site["cond_indep_stack"])


def blocked_potential_energy(
    model: Callable,
    model_args: tuple,
    model_kwargs: dict | None,
    params: dict,
    plan: BlockPlan,
) -> jax.Array:
    """:func:`~jppl.model.density.potential_energy` with the sharded plates added block by block.

    Must be traced under :func:`jppl.parallel.use_mesh` with the mesh the plan was made for.

    Args:
        model, model_args, model_kwargs: the model and its arguments (split arrays placed as
            ``plan`` says, see :func:`jppl.parallel.blocks.plan_blocks` on
            ``(model_args, model_kwargs)``).
        params: ``{latent site name: unconstrained array}``.
        plan: the block plan.

    Returns:
        the scalar potential energy.

    Raises:
        ValueError: a latent sample site inside a sharded plate, or a sharded plate that is
            subsampled or whose size is not the split arrays' ``N``.
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    handler = _unconstrained_substitute(model, params=params)
    _, whole = log_density(handler, model_args, model_kwargs, {})
    rest = jnp.zeros(())
    latents = {}
    for name, site in whole.items():
        if site["type"] != "sample":
            continue
        sharded = _in_sharded_plate(site, plan.axis)
        if not site["is_observed"]:
            if sharded:
                raise ValueError(
                    f"Latent sample site '{name}' is inside a plate sharded over "
                    f"'{plan.axis}': data blocks need every site there observed; {_OFF}."
                )
            if jnp.issubdtype(jnp.result_type(site["value"]), jnp.inexact):
                latents[name] = site["value"]
        if not sharded:
            rest = rest + jnp.sum(site_log_prob(site))

    leaves, treedef = jax.tree.flatten((model_args, model_kwargs))

    def block_log_likelihood(values: dict, block_leaves: list) -> jax.Array:
        args, kwargs = jax.tree.unflatten(treedef, block_leaves)
        blocked = _blocked_plates(substitute(model, data=values), plan=plan)
        block_trace = trace(blocked).get_trace(*args, **kwargs)
        total = jnp.zeros(())
        for site in block_trace.values():
            if site["type"] == "sample" and any(
                f.name in blocked.names for f in site["cond_indep_stack"]
            ):
                total = total + jnp.sum(site_log_prob(site))
        return total

    likelihood = blockwise_sum(block_log_likelihood, plan, latents, leaves)
    return -(rest + handler.log_det + likelihood)


def sharded_sites(model_trace: dict, axis: str) -> tuple[bool, bool]:
    """``(any observed, any latent)`` sample site of ``model_trace`` in a plate sharded over
    ``axis``: blocks apply when there are observed ones and no latent one."""
    observed = latent = False
    for site in model_trace.values():
        if site["type"] == "sample" and _in_sharded_plate(site, axis):
            if site["is_observed"]:
                observed = True
            else:
                latent = True
    return observed, latent


def potential_with_blocks(model: Callable, plan: BlockPlan | None) -> Callable[..., Any]:
    """``(*args, **kwargs) -> (params -> potential)``: blocked if ``plan``, else plain."""

    def make(*args, **kwargs):
        if plan is None:
            return lambda params: potential_energy(model, args, kwargs, params)
        return lambda params: blocked_potential_energy(model, args, kwargs, params, plan)

    return make
