"""Running the same model on one device, many devices, or many hosts: only the mesh changes.

::

    from jppl import parallel
    mesh = parallel.make_mesh(sample=2, data=-1)          # e.g. 2 x 4 on 8 devices
    x, y = parallel.shard_along((x, y), mesh, "data")     # observations split over `data`

    def model(x, y):
        w = sample("w", dist.Normal(0, 1).expand([d]).to_event(1))
        with plate("N", n, shard="data"):                 # a no-op without a mesh
            sample("y", dist.BernoulliLogits(x @ w), obs=y)

    svi = SVI(model, guide, optax.adam(1e-2), Trace_ELBO(num_particles=8), mesh=mesh)

* :mod:`~jppl.parallel.mesh`: :func:`make_mesh` (axes ``chain, sample, data, model``),
  :func:`use_mesh` / :func:`current_mesh` (the mesh active while a front end traces).
* :mod:`~jppl.parallel.sharding`: :func:`shard_along`, :func:`replicate`,
  :func:`process_local_array` (multi-host data loading), :func:`pad_to_multiple`, and the
  annotations used while tracing: :func:`shard_log_prob` (sharded plates),
  :func:`split_leading` (a vmapped batch of particles or chains split over a mesh axis, with
  ``jax.vmap(..., spmd_axis_name=axis)``), :func:`take_sharded` (minibatches of sharded data).
* :mod:`~jppl.parallel.chains`: :func:`map_chains`, a per-chain function compiled for many
  chains (vectorized, sharded over the ``chain`` axis, or sequential; sharded chains without a
  mesh run on the trivial :func:`chain_mesh`), :func:`chain_program` (the same, not compiled,
  for callers that compile it with more around it), :func:`jit_replicated`.
* :mod:`~jppl.parallel.particles`: :func:`map_particles`, a per-particle function vmapped over
  a batch split along a mesh axis (ELBO particles, augmented minibatches, predictive draws);
  :func:`check_divisible` (a count that must split evenly over a mesh axis).
* :mod:`~jppl.parallel.state`: :func:`state_placement`, :func:`put_state`, :func:`pin_state`:
  a training state replicated or split over the mesh (``SVI(shard_state=...)``).
* :mod:`~jppl.parallel.blocks`: :func:`~jppl.parallel.blocks.plan_blocks` and
  :func:`~jppl.parallel.blocks.blockwise_sum`, a sum over data split across devices that is
  added in a fixed order (bitwise the same on every device count); ``MCMC`` uses it for its
  log density on a ``data`` mesh.
* :mod:`~jppl.parallel.hlo`: :func:`collectives` lists the all-reduces / all-gathers of a
  compiled program (to check what crosses devices).
* :mod:`~jppl.parallel.distributed`: :func:`initialize` (``jax.distributed``),
  :func:`is_coordinator`, :func:`gather`.

How it works: the model keeps seeing global shapes. Log-probabilities of sites in a plate with
``shard="data"`` carry a sharding constraint along the plate's dim, so XLA's SPMD partitioner
has each device compute its own rows and all-reduces the partial sums of the log density and
of its gradient (the data are never gathered). The ELBO's particle axis is split over
``sample`` the same way; particle ``i`` always uses ``fold_in(step_key, i)``, so draws, losses
and parameters do not depend on the mesh (up to the order of floating-point sums). For
NUTS, whose warm-up adaptation would amplify that rounding, ``MCMC`` adds the data-sharded
likelihood in fixed blocks instead, so its draws are bitwise the same on every mesh.
"""

from jppl.parallel.chains import (
    CHAIN_METHODS,
    chain_mesh,
    chain_program,
    check_chain_mesh,
    jit_replicated,
    map_chains,
    shard_plan,
)
from jppl.parallel.context import MeshContext, use_mesh
from jppl.parallel.distributed import (
    gather,
    initialize,
    is_coordinator,
    process_count,
    process_index,
)
from jppl.parallel.hlo import collectives, summarize_collectives
from jppl.parallel.mesh import AXES, axis_size, current_mesh, make_mesh
from jppl.parallel.particles import check_divisible, map_particles
from jppl.parallel.sharding import (
    constrain,
    dim_spec,
    pad_to_multiple,
    process_local_array,
    replicate,
    shard_along,
    shard_log_prob,
    split_leading,
    state_shardings,
    take_sharded,
)
from jppl.parallel.state import pin_state, put_state, state_placement

__all__ = [
    "AXES",
    "CHAIN_METHODS",
    "MeshContext",
    "axis_size",
    "check_divisible",
    "chain_mesh",
    "chain_program",
    "check_chain_mesh",
    "collectives",
    "constrain",
    "current_mesh",
    "dim_spec",
    "gather",
    "initialize",
    "is_coordinator",
    "jit_replicated",
    "make_mesh",
    "map_chains",
    "map_particles",
    "pad_to_multiple",
    "pin_state",
    "process_count",
    "process_index",
    "process_local_array",
    "put_state",
    "replicate",
    "shard_along",
    "shard_log_prob",
    "shard_plan",
    "split_leading",
    "state_placement",
    "state_shardings",
    "summarize_collectives",
    "take_sharded",
    "use_mesh",
]
