"""The :class:`MCMC` driver: warm-up, sampling, results, diagnostics.

Mirrors ``numpyro.infer.MCMC``::

    mcmc = MCMC(NUTS(model), num_warmup=1000, num_samples=1000, num_chains=4)
    mcmc.run(jax.random.key(0), x, y=y)
    mcmc.print_summary()
    samples = mcmc.get_samples()          # {site: (num_chains * num_samples, ...)}

    # continue the same chains (no warm-up), bitwise as one longer run:
    mcmc.post_warmup_state = mcmc.last_state
    mcmc.run(mcmc.post_warmup_state.rng_key, x, y=y)

Compilation happens once per signature of the model arguments (tree structure, static
leaves, shapes and dtypes of the array leaves): array arguments are passed to the compiled
functions as arguments, so a second ``run`` with new data of the same shapes does not trace or
compile anything again. ``run`` compiles **one** loop for warm-up and sampling (the kernel
step appears once in it, see :mod:`jppl.mcmc.driver`), mapped over the chains by
:func:`jppl.parallel.chain_program`, plus two small programs that set the chains up and
gather the draws; ``warmup`` alone and the continuation of adapted chains compile their own
once. The compiled programs are cached on the object.

The loop runs in **chunks** of transitions (about 0.25 s each once the speed is known,
:class:`jppl.runloop.Pacer`; a chunk ends where the warm-up does), reusing the chains' buffers
from one to the next: between chunks the host updates the progress bar and checks for Ctrl-C.
The draws do not depend on the chunks. Ctrl-C (also Jupyter's interrupt) stops the run after
the current chunk and raises :class:`jppl.runloop.RunInterrupted`, keeping what is done:
``last_state``, the draws made (``get_samples()``), ``post_warmup_state`` once the warm-up is
over; ``mcmc.resume()`` goes on to the results of the uninterrupted run, bitwise.

Saving and exporting (:meth:`MCMC.save`, :meth:`MCMC.load`, :meth:`MCMC.to_arviz`) hand the run's
public accessors (:attr:`MCMC.last_state`, :attr:`MCMC.named_samples`, :attr:`MCMC.model_args`,
...) to :mod:`jppl.mcmc.io`, which knows nothing of this class.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh

from jppl import diagnostics
from jppl.handlers import seed
from jppl.mcmc import io
from jppl.mcmc.driver import DEFAULT_FIELDS, FIELD_ALIASES, build_program
from jppl.mcmc.progress import ProgressBar, summary_line
from jppl.mcmc.sampler import Sampler, Target
from jppl.mcmc.state import MCMCState, as_typed_key, chain_keys, split_model_args
from jppl.parallel.blocks import BlockPlan, plan_blocks
from jppl.parallel.chains import (
    CHAIN_AXIS,
    CHAIN_METHODS,
    chain_mesh,
    chain_program,
    check_chain_mesh,
    jit_replicated,
)
from jppl.parallel.context import use_mesh
from jppl.parallel.mesh import axis_size
from jppl.parallel.sharding import replicate
from jppl.parallel.state import pin_state, put_state
from jppl.runloop import Pacer, RunInterrupted, interruptible, is_interactive

__all__ = ["MCMC"]

_OPTIONAL_FIELDS = ("z", "z_grad", "inverse_mass_matrix")
_PHASES = ("warmup", "sample")


def _flatten_chains(x: jax.Array) -> jax.Array:
    return jnp.reshape(x, (-1,) + tuple(x.shape[2:]))


def _concat_name(path) -> str:
    return jax.tree_util.keystr(path).strip("[]'\"") or "z"


def _traced_under(mesh: Mesh | None, fn: Callable) -> Callable:
    """``fn`` traced under ``use_mesh(mesh)``, so that the model's sharded plates see the mesh
    (a no-op without one)."""

    def traced(*args):
        with use_mesh(mesh):
            return fn(*args)

    return traced


_CONCRETE_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.NonConcreteBooleanIndexError,
)


def _concrete_error(model: Callable, sig, mesh: Mesh | None) -> Exception | None:
    """The error raised when ``model`` runs (seeded, abstractly: nothing is computed) on
    traced array arguments because it needs their concrete values, or ``None``. Other errors
    are left for the run itself to raise."""

    def run(dynamic):
        args, kwargs = sig.rebuild(dynamic)
        with use_mesh(mesh):
            seed(model, rng_seed=0)(*args, **kwargs)

    try:
        jax.eval_shape(run, sig.dynamic)
    except _CONCRETE_ERRORS as e:
        return e
    except Exception:  # noqa: BLE001 - reported by the run, with its own context
        return None
    return None


def _jit(fn: Callable, name: str, donate: bool = False) -> Callable:
    """``jax.jit(fn)`` named ``jit_<name>``, donating its first argument if ``donate``."""

    def named(*args):
        return fn(*args)

    named.__name__ = named.__qualname__ = name
    return jax.jit(named, donate_argnums=(0,) if donate else ())


def _stack_groups(outputs: list) -> Any:
    """The outputs of the chain groups (each with a leading chain dim) joined along it."""
    if len(outputs) == 1:
        return outputs[0]
    return jax.tree.map(lambda *v: jnp.concatenate(v), *outputs)


class _Programs(NamedTuple):
    """The compiled programs of a run (:meth:`MCMC._programs`)."""

    key: tuple
    start: Callable
    advance: Callable
    finish: Callable
    mesh: Mesh | None


@dataclasses.dataclass
class _Group:
    """Chains that advance together (all of them; one for sequential chains) and where they
    are: their carry, inputs and transitions done."""

    loop: Any
    xs: Any
    tail: Any
    t: int = 0
    divergences: list = dataclasses.field(default_factory=lambda: [0, 0])
    last: list = dataclasses.field(default_factory=lambda: [float("nan")] * 3)
    warm_state: MCMCState | None = None


@dataclasses.dataclass
class _Run:
    """A run in progress: what :meth:`MCMC.resume` continues after an interrupt."""

    programs: _Programs
    sig: Any
    target: Any
    groups: list[_Group]
    num_warmup: int
    total: int
    sample: bool
    fresh: bool
    aliases: dict[str, str]
    args: tuple
    kwargs: dict
    compiled: bool = False
    warmup_draws: int = 0


class _Stopped(Exception):
    """Ctrl-C stopped :meth:`MCMC._execute`; ``outputs`` are those of the chains so far."""

    def __init__(self, outputs: Any):
        super().__init__("stopped")
        self.outputs = outputs


class MCMC:
    """Run Markov chains with a :class:`~jppl.mcmc.NUTS` or :class:`~jppl.mcmc.HMC` sampler.

    Args:
        sampler: the sampler (holds the model or potential_fn and the kernel options): a
            :class:`~jppl.mcmc.NUTS`, an :class:`~jppl.mcmc.HMC` or anything else that
            satisfies the :class:`~jppl.mcmc.sampler.Sampler` protocol.
        num_warmup: warm-up (adaptation) transitions per chain.
        num_samples: post-warm-up transitions per chain; ``num_samples // thinning`` draws
            are kept (the last of each block of ``thinning`` transitions).
        num_chains: number of chains.
        thinning: keep one draw in ``thinning``.
        chain_method: ``"parallel"`` (NumPyro's name: ``"sharded"``, one chain per device;
            with fewer devices than chains it warns and runs them ``"sequential"``), a callable
            transform such as ``jax.vmap`` applied to the per-chain program (no mesh; a single
            chain runs without it), ``"vectorized"`` (``vmap`` over chains; a single chain runs
            without ``vmap``), ``"sharded"`` (chains spread over the devices of a 1-d
            ``"chain"`` mesh, :func:`jppl.parallel.chain_mesh`, with ``shard_map``; padded to a
            multiple of the devices used, the padding is dropped) or ``"sequential"`` (a
            Python loop over chains reusing one compiled single-chain program). Default (``None``):
            ``"sharded"`` when there are at least as many devices (``jax.devices()``) as
            chains and more than one chain (each device then runs one chain with the
            single-chain program, faster than the batched one on CPU), otherwise
            ``"vectorized"``.
        progress_bar: show progress. On a terminal or in a Jupyter kernel a live tqdm bar per
            phase (step size, acceptance, trajectory length, divergences so far, rate),
            updated between the compiled chunks; otherwise one line per phase after it ends.
            ``False``: no output. The compiled programs are the same either way.
        jit_model_args: ``False`` (NumPyro's default): the model arguments are constants of
            the compiled programs when the model needs their values (e.g. ``np.unique(data)``,
            ``int(data.max())``: found by tracing the model once with abstract arguments), and
            then a ``run`` with other values compiles again; otherwise array arguments are
            traced, so new data of the same shapes reuses the compiled programs. ``True``:
            array and Python ``int``/``float`` arguments are always traced (new values of the
            same shapes never compile again; a model that needs concrete argument values
            raises). See :func:`jppl.mcmc.state.split_model_args`.
        warn: after ``run``, emit :class:`jppl.diagnostics.ConvergenceWarning`\\ s for
            divergences, maximum tree depth hits, R-hat > 1.01 and low bulk/tail ESS.
        devices: deprecated, to be removed after one release; choose devices with ``mesh``
            (``jppl.parallel.make_mesh(chain=k, devices=...)``). Without a mesh, sharded
            chains use ``jax.devices()``. Until removed: the devices the no-mesh sharded
            chains use.
        mesh: a ``jax.sharding.Mesh`` from :func:`jppl.parallel.make_mesh` (instead of
            ``devices``). The chains are split over its ``chain`` axis (``num_chains`` must be
            a multiple of its size) and the model is traced under
            :func:`jppl.parallel.use_mesh`, so the observations of ``plate(..., shard="data")``
            are split over ``data`` (each device computes the log density and gradient of its
            rows, one all-reduce sums them). With a mesh, ``chain_method`` is ``"sharded"`` by
            default (``shard_map`` manual over ``chain`` only, ``data`` left to XLA's
            partitioner; on a ``chain``-only mesh the draws are bitwise those without a mesh),
            ``"vectorized"`` (``vmap`` with ``spmd_axis_name="chain"``) or ``"sequential"``
            (one chain at a time on the whole mesh; needs ``chain=1``). Results are replicated
            on every device, so every process of a multi-host run can read them. See
            :mod:`jppl.parallel.chains`.
        data_blocks: with a ``mesh`` whose ``data`` axis splits the observations (arrays
            placed by :func:`jppl.parallel.shard_along`, ``plate(..., shard="data")``), the
            likelihood of the sharded plates is added as this many blocks of consecutive rows
            in a fixed order (:mod:`jppl.model.blocked`), so the log density, its gradient and
            therefore the draws (warm-up adaptation included) are bitwise the same on every
            number of ``data`` devices that divides it. Default (``None``): ``lcm(8, data axis
            size)``, falling back with a warning to XLA's own reduction when ``N`` is not a
            multiple of it. ``0``: XLA's reduction (draws then differ across device counts in
            the last bits, which warm-up adaptation amplifies). Blocks apply when every site in
            the sharded plates is observed and no plate is subsampled. The first run checks the
            blocked log density against the plain one at the initial points and raises if they
            disagree (a split array used outside its plate).
    """

    def __init__(
        self,
        sampler: Sampler,
        *,
        num_warmup: int,
        num_samples: int,
        num_chains: int = 1,
        thinning: int = 1,
        chain_method: str | Callable | None = None,
        progress_bar: bool = True,
        jit_model_args: bool = False,
        warn: bool = True,
        devices: Sequence[Any] | None = None,
        mesh: Mesh | None = None,
        data_blocks: int | None = None,
    ):
        if int(num_chains) < 1:
            raise ValueError(f"num_chains must be >= 1, got {num_chains}")
        if mesh is not None and devices is not None:
            raise ValueError("MCMC: give `mesh` or `devices`, not both.")
        if devices is not None:
            # One way to choose devices: the mesh ("no mesh" is the trivial chain mesh).
            warnings.warn(
                "MCMC(devices=...) is deprecated: pass mesh=jppl.parallel.make_mesh(chain=k, "
                "devices=...) (k dividing num_chains); without a mesh, sharded chains use "
                "jax.devices().",
                DeprecationWarning,
                stacklevel=2,
            )
        available = len(devices) if devices is not None else jax.device_count()
        if chain_method == "parallel":  # NumPyro's name for one chain per device
            chain_method = "sharded"
            if mesh is None and available < int(num_chains):
                warnings.warn(
                    f"chain_method='parallel' needs a device per chain: {num_chains} chains but "
                    f"{available} device(s), so the chains run sequentially. On CPU, expose more "
                    "devices before JAX starts (XLA_FLAGS=--xla_force_host_platform_device_count"
                    f"={num_chains}); check with jax.device_count().",
                    UserWarning,
                    stacklevel=2,
                )
                chain_method = "sequential"
        if callable(chain_method):
            if mesh is not None:
                raise ValueError(
                    "MCMC: a callable chain_method (e.g. jax.vmap) runs without a mesh; with a "
                    f"mesh use one of {CHAIN_METHODS}."
                )
        elif mesh is not None:
            chain_method = check_chain_mesh(mesh, int(num_chains), chain_method, what="MCMC")
        elif chain_method is None:
            many = 1 < int(num_chains) <= available
            chain_method = "sharded" if many else "vectorized"
        if not callable(chain_method) and chain_method not in CHAIN_METHODS:
            raise ValueError(
                f"chain_method must be one of {CHAIN_METHODS}, 'parallel' or a callable "
                f"transform such as jax.vmap, got {chain_method!r}"
            )
        self._sampler = sampler
        self.num_warmup = num_warmup
        self.num_samples = num_samples
        self.thinning = thinning
        self.num_chains = int(num_chains)
        self.chain_method = chain_method
        self.progress_bar = bool(progress_bar)
        self.jit_model_args = bool(jit_model_args)
        self.warn = bool(warn)
        self.devices = None if devices is None else tuple(devices)
        self.mesh = mesh
        if data_blocks is not None and (
            isinstance(data_blocks, bool) or not isinstance(data_blocks, int) or data_blocks < 0
        ):
            raise ValueError(f"data_blocks must be None or an int >= 0, got {data_blocks!r}")
        self.data_blocks = data_blocks
        self.post_warmup_state: MCMCState | None = None
        self._last_state: MCMCState | None = None
        self._samples: Any = None
        self._warmup_draws = 0  # leading warm-up draws in _samples (collect_warmup)
        self._fields: dict[str, jax.Array] | None = None
        self._counts: dict[str, int] = {}
        self._target: Target | None = None
        self._args: tuple = ()
        self._kwargs: dict = {}
        self._targets: dict = {}
        # signature key -> the error of the model on traced arguments (None: it traces)
        self._needs_constants: dict = {}
        self._compiled: dict = {}
        self._rates: dict = {}  # measured seconds per transition of each compiled program
        self._interrupted: _Run | None = None
        self._bar = ProgressBar()
        #: wall seconds of the last compiled run, keyed by its phases (``"warmup+sample"``,
        #: ``"warmup"`` or ``"sample"``); includes compilation on the first call
        self.timings: dict[str, float] = {}

    # -- validated settings --------------------------------------------------------------------

    @property
    def num_warmup(self) -> int:
        return self._num_warmup

    @num_warmup.setter
    def num_warmup(self, value: int) -> None:
        if int(value) < 0:
            raise ValueError(f"num_warmup must be >= 0, got {value}")
        self._num_warmup = int(value)

    @property
    def num_samples(self) -> int:
        return self._num_samples

    @num_samples.setter
    def num_samples(self, value: int) -> None:
        if int(value) < 0:
            raise ValueError(f"num_samples must be >= 0, got {value}")
        self._num_samples = int(value)

    @property
    def thinning(self) -> int:
        return self._thinning

    @thinning.setter
    def thinning(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"thinning must be >= 1, got {value}")
        self._thinning = int(value)

    @property
    def sampler(self) -> Sampler:
        """The sampler (read-only: the compiled programs cached here are built from it)."""
        return self._sampler

    @property
    def model_args(self) -> tuple:
        """The positional model arguments of the last ``run`` or ``warmup``."""
        return self._args

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """The keyword model arguments of the last ``run`` or ``warmup`` (a copy)."""
        return dict(self._kwargs)

    @property
    def block_plan(self) -> BlockPlan | None:
        """The data blocks the last run added the likelihood in (see ``data_blocks``), or
        ``None`` when it used no blocks."""
        return None if self._target is None else self._target.blocks

    @property
    def last_state(self) -> MCMCState | None:
        """The :class:`~jppl.mcmc.state.MCMCState` after the last transition of the last run."""
        return self._last_state

    # -- compiled programs ---------------------------------------------------------------------

    def _live(self) -> bool:
        return self.progress_bar and is_interactive()

    def _chain_mesh(self) -> Mesh | None:
        """The mesh the chains run on: ``mesh``, or for sharded chains without one the trivial
        chain-only mesh over ``devices`` (so both run the same code)."""
        if self.mesh is None and self.chain_method == "sharded":
            return chain_mesh(self.num_chains, self.devices)
        return self.mesh

    def _block_plan(self, args: tuple, kwargs: dict) -> BlockPlan | None:
        """The data-block plan of these arguments on the mesh (see ``data_blocks``)."""
        if self.mesh is None or self.data_blocks == 0:
            return None
        try:
            return plan_blocks((args, kwargs), self.mesh, "data", self.data_blocks)
        except ValueError as e:
            if self.data_blocks is not None:
                raise ValueError(f"MCMC: {e}") from e
            warnings.warn(
                f"MCMC: {e} Falling back to XLA's reduction of the data-sharded likelihood.",
                stacklevel=4,
            )
            return None

    def _get_target(self, sig_key, rng_key, args, kwargs, init_params):
        if self.sampler.model is not None:
            blocks = self._block_plan(args, kwargs)
            key = (sig_key, blocks)
            if key not in self._targets:
                target = self.sampler.bind(rng_key, args, kwargs, blocks=blocks)
                if self.data_blocks and target.blocks is None:
                    warnings.warn(
                        f"MCMC: data_blocks={self.data_blocks} is not used: blocks need every "
                        "sample site of the sharded plates observed and no subsampled plate; "
                        "the likelihood is reduced by XLA instead.",
                        stacklevel=3,
                    )
                self._targets[key] = target
            return self._targets[key]
        # potential_fn: the structure comes from init_params (leading chain dim if C > 1).
        if init_params is None:
            if self.post_warmup_state is not None and self._target is not None:
                return self._target
            return self.sampler.bind(rng_key, args, kwargs, None)  # raises a clear error
        one = init_params
        if self.num_chains > 1:
            one = jax.tree.map(lambda x: jnp.asarray(x)[0], init_params)
        shapes = tuple(np.shape(x) for x in jax.tree.leaves(one))
        key = (sig_key, jax.tree.structure(one), shapes)
        if key not in self._targets:
            self._targets[key] = self.sampler.bind(rng_key, args, kwargs, one)
        return self._targets[key]

    def _compiled_fn(self, key: tuple, build: Callable[[], Callable]) -> Callable:
        if key not in self._compiled:
            self._compiled[key] = build()
        return self._compiled[key]

    # -- phases --------------------------------------------------------------------------------

    def _initial_positions(self, target, sig, keys, init_params) -> jax.Array:
        c = self.num_chains
        if init_params is not None:
            if isinstance(init_params, dict) and isinstance(target.prototype, dict):
                missing = sorted(set(target.prototype) - set(init_params))
                unknown = sorted(set(init_params) - set(target.prototype))
                if missing or unknown:
                    raise ValueError(
                        f"init_params must give every latent site's unconstrained value: "
                        f"missing site(s) {missing}, unknown site(s) {unknown}; the latent "
                        f"sites are {sorted(target.prototype)}."
                    )
            proto_shapes = [np.shape(x) for x in jax.tree.leaves(target.prototype)]
            leaves = [jnp.asarray(x) for x in jax.tree.leaves(init_params)]
            if [x.shape for x in leaves] == proto_shapes:
                batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (c,) + x.shape), init_params)
            elif [x.shape for x in leaves] == [(c,) + s for s in proto_shapes]:
                batched = init_params
            else:
                raise ValueError(
                    "init_params must match the unconstrained latent values "
                    f"(shapes {proto_shapes}), optionally with a leading num_chains={c} dim; "
                    f"got shapes {[x.shape for x in leaves]}."
                )
            treedef = jax.tree.structure(target.prototype)
            if jax.tree.structure(batched) != treedef:
                raise ValueError(
                    f"init_params must have the structure of the latent values: {treedef}."
                )
            flat = jax.vmap(lambda t: ravel_pytree(t)[0])(batched)
            return flat.astype(target.dtype)
        if target.make_init is None:
            raise ValueError("init_params is required for a sampler built from potential_fn.")

        def build():
            def init(k, dyn):
                return target.make_init(k, *sig.rebuild(dyn))

            return jit_replicated(_traced_under(self.mesh, init), self.mesh, "mcmc_init")

        init_fn = self._compiled_fn(("init", sig.key, c, self.mesh), build)
        if self.mesh is not None:
            keys = replicate(keys, self.mesh)
        positions, valid = init_fn(keys, sig.dynamic)
        if not bool(np.all(np.asarray(valid))):
            bad = np.flatnonzero(~np.asarray(valid)).tolist()
            if target.explain_init is not None:  # raises the cause, naming the site, if found
                target.explain_init(keys[bad[0]], *sig.rebuild(sig.dynamic))
            raise RuntimeError(
                f"Cannot find valid initial parameters for chain(s) {bad}: the potential energy "
                "or its gradient is not finite at every initial point drawn. Check the model, or "
                "try another init_strategy (init_to_value, init_to_median, ...)."
            )
        if target.blocks is not None:
            self._check_blocks(target, sig, positions)
        return positions

    def _check_blocks(self, target, sig, positions: jax.Array) -> None:
        """Compare the blocked log density with the plain one at ``positions`` (once)."""
        key = ("check_blocks", sig.key, target.blocks, self.mesh)
        if key in self._compiled:
            return

        def check(positions, dyn):
            args, kwargs = sig.rebuild(dyn)
            blocked = jax.vmap(target.make_logdensity(args, kwargs))(positions)
            plain = jax.vmap(target.make_plain_logdensity(args, kwargs))(positions)
            return blocked, plain

        fn = jit_replicated(_traced_under(self.mesh, check), self.mesh, "mcmc_check_blocks")
        blocked, plain = (np.asarray(x) for x in fn(replicate(positions, self.mesh), sig.dynamic))
        self._compiled[key] = None
        bad = ~(np.abs(blocked - plain) <= 1e-4 * np.maximum(1.0, np.abs(plain)))
        if np.any(bad):
            plan = target.blocks
            raise ValueError(
                f"MCMC: the log density summed in {plan.num_blocks} data blocks ({blocked[bad]}) "
                f"differs from the plain one ({plain[bad]}) at the initial point(s). The model "
                f"seems to use an array split over '{plan.axis}' outside its sharded plate (e.g. "
                "a whole-data statistic such as x.mean(0), which blocks would compute per "
                "block): compute such statistics before calling MCMC.run and pass them in, or "
                "pass data_blocks=0."
            )

    def _programs(
        self, target, sig, *, fresh: bool, num_warmup: int, num_draws: int, fields, warmup_draws=0
    ):
        """The compiled ``start``, ``advance`` and ``finish`` of a run (see
        :class:`~jppl.mcmc.driver.ChainProgram`), compiled on first use and cached."""
        c, thin = self.num_chains, self.thinning
        group = 1 if self.chain_method == "sequential" else c
        method, mesh = self.chain_method, self._chain_mesh()
        if target.dim == 0 and self.mesh is None and method == "sharded":
            # No latent site: nothing to spread. XLA:CPU (JAX 0.11) also crashes compiling
            # shard_map over the zero-size positions, so such chains are vectorized.
            method, mesh = "vectorized", None
        key = ("chain", sig.key, c, method, self.devices, fresh, num_warmup)
        key += (num_draws, thin, fields, self.mesh, warmup_draws)

        def build() -> _Programs:
            program = build_program(
                self.sampler,
                target,
                sig.rebuild,
                fresh=fresh,
                num_warmup=num_warmup,
                num_draws=num_draws,
                thinning=thin,
                fields=fields,
                block_mask=self.sampler.block_mask(target) if fresh else None,
                warmup_draws=warmup_draws,
            )

            def mapped(fn):
                traced = _traced_under(self.mesh, fn)
                return chain_program(traced, method, group, mesh, spmd=target.blocks is None)

            start, advance, finish = (mapped(fn) for fn in program)

            def step(loop, xs, shared):
                loop = advance((loop, xs), shared)
                # what the host shows after a chunk, summed / averaged over the chains
                stats = (jnp.sum(loop.aux.divergences, 0), jnp.mean(loop.aux.last, 0))
                return loop, pin_state(stats, mesh)  # replicated: readable on every process

            # The carry's buffers (draws included) are reused from chunk to chunk, unless
            # padding chains (sharded chains not filling the devices) copies them anyway.
            padded = method == "sharded" and c % axis_size(mesh, CHAIN_AXIS)
            return _Programs(
                key,
                _jit(start, "mcmc_start"),
                _jit(step, "mcmc_chains", donate=not padded),
                jit_replicated(finish, mesh, "mcmc_finish"),
                mesh,
            )

        return self._compiled_fn(key, build)

    def _execute(self, run: _Run) -> tuple:
        """Run ``run``'s remaining transitions, chunk by chunk; returns the stacked outputs
        ``(state, samples, records, counts)`` of ``finish``. On Ctrl-C, stops after the current
        chunk and raises :class:`_Stopped` with the outputs so far (``run`` holds where each
        chain group is, for :meth:`resume`)."""
        programs, mesh = run.programs, run.programs.mesh
        dyn = run.sig.dynamic
        warm, total = run.num_warmup, run.total
        live = self._live()
        start_time = time.perf_counter()
        outputs: list = [None] * len(run.groups)

        def finish(g: _Group, done: int):
            shared = (dyn, put_state(jnp.asarray(done, jnp.int32), mesh))
            return programs.finish((g.loop, g.tail), shared)

        stopped = False
        with interruptible() as stop_requested:
            for i, g in enumerate(run.groups):
                label = f" (chain {i + 1}/{len(run.groups)})" if len(run.groups) > 1 else ""
                show = self.progress_bar and g.t < total
                if show:
                    phases = list(zip(_PHASES, (warm, total - warm), strict=True))
                    self._bar.start(phases, live, label)
                    if g.t:
                        self._bar.update(g.t, g.divergences, g.last)
                pacer = Pacer(total, seconds_per_step=self._rates.get(programs.key))
                pacer.done = g.t
                while g.t < total and not stopped:
                    n = pacer.next()
                    if g.t < warm:  # chunks end at the end of warm-up (its state is kept)
                        n = min(n, warm - g.t)
                    shared = (dyn, *put_state((np.int32(g.t), np.int32(n)), mesh))
                    first = programs.key not in self._rates and not run.compiled
                    tick = time.perf_counter()
                    g.loop, stats = programs.advance(g.loop, g.xs, shared)
                    g.divergences, g.last = (np.asarray(x).tolist() for x in stats)
                    pacer.record(n, time.perf_counter() - tick, compiled=first)
                    run.compiled = True
                    g.t += n
                    summary = None
                    if g.t == warm and warm and total > warm:
                        g.warm_state = finish(g, warm)[0]
                        summary = summary_line(g.warm_state.step_size, g.divergences[0])
                    if show:
                        self._bar.update(g.t, g.divergences, g.last, summary)
                    stopped = stop_requested()
                if stopped:
                    break
                outputs[i] = finish(g, total)
                if show:
                    state, _, _, counts = outputs[i]
                    self._bar.close(
                        [
                            summary_line(state.step_size, counts["warmup_num_divergent"]),
                            summary_line(state.step_size, counts["num_divergent"]),
                        ]
                    )
            if pacer.rate is not None:
                self._rates[programs.key] = pacer.rate
        names = [name for name, n in zip(_PHASES, (warm, total - warm), strict=True) if n > 0]
        self.timings = {"+".join(names) or "none": time.perf_counter() - start_time}
        if not stopped:
            return _stack_groups(outputs)
        if self.progress_bar:
            self._bar.close(None)
        for i, g in enumerate(run.groups):
            if outputs[i] is None:
                outputs[i] = finish(g, g.t)
        raise _Stopped(_stack_groups(outputs))

    def _field_names(self, extra_fields: Sequence[str]) -> tuple[tuple[str, ...], dict[str, str]]:
        if isinstance(extra_fields, str):
            extra_fields = (extra_fields,)
        names = [f for f in DEFAULT_FIELDS if f != "tree_depth"]
        if self.sampler.max_tree_depth is not None:
            names.append("tree_depth")
        optional = _OPTIONAL_FIELDS + tuple(self.sampler.optional_fields)
        aliases: dict[str, str] = {}
        for name in extra_fields:
            canonical = FIELD_ALIASES.get(name, name)
            if canonical not in names and canonical not in optional:
                raise ValueError(
                    f"Unknown extra field {name!r}; available: "
                    f"{sorted(set(names) | set(optional) | set(FIELD_ALIASES))}."
                )
            if canonical != name:
                aliases[name] = canonical
            if canonical not in names:
                names.append(canonical)
        return tuple(names), aliases

    # -- public API ----------------------------------------------------------------------------

    def warmup(
        self,
        rng_key: Any,
        *args: Any,
        extra_fields: Sequence[str] = (),
        collect_warmup: bool = False,
        init_params: Any = None,
        **kwargs: Any,
    ) -> None:
        """Run only the warm-up and set :attr:`post_warmup_state` (and :attr:`last_state`),
        so that the next :meth:`run` samples from the adapted chains.

        With ``collect_warmup=True`` the warm-up draws are kept as NumPyro does:
        :meth:`get_samples` returns ``num_warmup // thinning`` draws per chain (the last
        transition of each block of ``thinning``) and :meth:`get_extra_fields` their
        statistics (with ``extra_fields`` as in :meth:`run`); they are draws of a chain being
        adapted, not of the posterior. Without it, ``extra_fields`` is ignored.
        """
        if collect_warmup:
            self._prepare(
                rng_key,
                args,
                kwargs,
                init_params,
                sample=False,
                extra_fields=extra_fields,
                collect_warmup=True,
            )
            return
        self._prepare(rng_key, args, kwargs, init_params, sample=False)

    def run(
        self,
        rng_key: Any,
        *args: Any,
        extra_fields: Sequence[str] = (),
        init_params: Any = None,
        collect_warmup: bool = False,
        **kwargs: Any,
    ) -> None:
        """Run warm-up (unless :attr:`post_warmup_state` is set) and sampling.

        Args:
            rng_key: a PRNG key (typed or raw), or a batch of ``num_chains`` keys. When
                :attr:`post_warmup_state` is set it replaces the chains' sampling keys (pass
                ``mcmc.post_warmup_state.rng_key`` or ``None`` to continue the same streams).
            *args, **kwargs: model arguments.
            extra_fields: statistics to collect besides the defaults (``diverging``,
                ``accept_prob``, ``num_steps``, ``tree_depth``, ``energy``,
                ``potential_energy``, ``step_size``): ``"z"`` (flat unconstrained draws),
                ``"z_grad"`` (gradient of the potential), ``"momentum"``, ``"is_turning"``
                (NUTS), ``"is_accepted"`` (HMC), ``"inverse_mass_matrix"``, and the NumPyro
                aliases ``"mean_accept_prob"``, ``"adapt_state.step_size"``.
            init_params: initial unconstrained values (dict of latent sites for a model, the
                potential_fn's pytree otherwise), optionally with a leading ``num_chains`` dim.
                Ignored when :attr:`post_warmup_state` is set.
            collect_warmup: also keep the warm-up draws: :meth:`get_samples` then holds
                ``num_warmup // thinning`` warm-up draws followed by the ``num_samples //
                thinning`` draws per chain (the convergence warnings look at the latter only).
                NumPyro's own way, ``warmup(..., collect_warmup=True)``, works too. No effect
                when :attr:`post_warmup_state` is set (no warm-up).

        Raises:
            jppl.runloop.RunInterrupted: on Ctrl-C, after the current chunk; the draws made
                so far, ``last_state`` and (after the warm-up) ``post_warmup_state`` are kept,
                and :meth:`resume` finishes the run.
        """
        self._prepare(
            rng_key,
            args,
            kwargs,
            init_params,
            sample=True,
            extra_fields=extra_fields,
            collect_warmup=collect_warmup,
        )

    def _signature(self, args: tuple, kwargs: dict):
        """The :class:`~jppl.mcmc.state.ArgSignature` of the model arguments: traced array
        leaves, or (``jit_model_args=False`` and a model that needs their values) constants.

        Raises:
            ValueError: ``jit_model_args=True`` and the model needs concrete argument values.
        """
        sig = split_model_args(args, kwargs, self.jit_model_args)
        model = self.sampler.model
        if model is None or not sig.dynamic:
            return sig
        if sig.key not in self._needs_constants:
            self._needs_constants[sig.key] = _concrete_error(model, sig, self.mesh)
        error = self._needs_constants[sig.key]
        if error is None:
            return sig
        if self.jit_model_args:
            raise ValueError(
                "MCMC(jit_model_args=True) traces the model arguments, but the model needs "
                f"their concrete values ({type(error).__name__}: "
                f"{str(error).splitlines()[0]}); pass jit_model_args=False (NumPyro's default) "
                "to make them constants of the compiled programs."
            ) from error
        return split_model_args(args, kwargs, constants=True)

    def _prepare(
        self, rng_key, args, kwargs, init_params, *, sample, extra_fields=(), collect_warmup=False
    ):
        fields, aliases = self._field_names(extra_fields)
        sig = self._signature(args, kwargs)
        resume = self.post_warmup_state
        bind_key = jax.random.key(0) if rng_key is None else as_typed_key(rng_key)
        if bind_key.ndim > 0:
            bind_key = bind_key[0]
        target = self._get_target(sig.key, bind_key, args, kwargs, init_params)
        self._target, self._args, self._kwargs = target, args, kwargs
        self._counts = {}
        self.timings = {}
        self._interrupted = None
        draws = self.num_samples // self.thinning if sample else 0
        if resume is None:
            if rng_key is None:
                raise ValueError("rng_key is required unless post_warmup_state is set.")
            keys = chain_keys(rng_key, self.num_chains)
            split = jax.vmap(lambda k: jax.random.split(k, 3))(keys)
            positions = self._initial_positions(target, sig, split[:, 0], init_params)
            chain_in = (positions, split[:, 1], split[:, 2])
            fresh, num_warmup = True, self.num_warmup
        else:
            chain_in = self._check_state(resume, target)
            if rng_key is not None:
                chain_in = chain_in._replace(rng_key=chain_keys(rng_key, self.num_chains))
            fresh, num_warmup = False, 0
        warmup_draws = num_warmup // self.thinning if collect_warmup else 0
        programs = self._programs(
            target,
            sig,
            fresh=fresh,
            num_warmup=num_warmup,
            num_draws=draws,
            fields=fields,
            warmup_draws=warmup_draws,
        )
        chain_in = put_state(chain_in, programs.mesh)
        if self.chain_method == "sequential":
            parts = [
                jax.tree.map(lambda x, c=c: x[c : c + 1], chain_in) for c in range(self.num_chains)
            ]
        else:
            parts = [chain_in]
        groups = [_Group(*programs.start(part, sig.dynamic)) for part in parts]
        run = _Run(
            programs,
            sig,
            target,
            groups,
            num_warmup,
            num_warmup + draws * self.thinning,
            sample,
            fresh,
            aliases,
            args,
            kwargs,
            warmup_draws=warmup_draws,
        )
        self._continue(run, "run" if sample else "warmup", stacklevel=6)

    def _continue(self, run: _Run, what: str, stacklevel: int) -> None:
        """Run (or go on with) ``run`` and store its results; on Ctrl-C store what is done and
        raise :class:`~jppl.runloop.RunInterrupted`. Warnings point ``stacklevel`` frames up
        from here (at the user's call)."""
        try:
            outputs = self._execute(run)
        except _Stopped as stop:
            self._interrupted = run
            self._store(run, stop.outputs, interrupted=True)
            raise RunInterrupted(
                self._interrupt_message(run, what),
                done=sum(g.t for g in run.groups),
                total=run.total * len(run.groups),
            ) from None
        self._interrupted = None
        self._store(run, outputs, interrupted=False)
        if self.warn and run.sample:
            self._warn_diagnostics(stacklevel)

    def _interrupt_message(self, run: _Run, what: str) -> str:
        done = min(g.t for g in run.groups)
        warm = min(done, run.num_warmup)
        collected = run.sample or run.warmup_draws
        drawn = self.get_samples(group_by_chain=True) if collected else {}
        num = int(np.shape(jax.tree.leaves(drawn)[0])[1]) if jax.tree.leaves(drawn) else 0
        kept = (
            "post_warmup_state (the adapted chains), "
            if run.fresh and done >= run.num_warmup and run.num_warmup
            else ""
        )
        return (
            f"MCMC.{what} interrupted after {warm}/{run.num_warmup} warm-up and "
            f"{done - warm}/{run.total - run.num_warmup} sampling transitions: kept "
            f"{kept}last_state and the {num} draws made (get_samples()); mcmc.resume() "
            "continues the run, bitwise as if it had not stopped."
        )

    def _store(self, run: _Run, outputs, *, interrupted: bool) -> None:
        state, samples, records, counts = outputs
        self._counts = {
            "warmup_num_divergent": int(np.sum(np.asarray(counts.pop("warmup_num_divergent"))))
        }
        self._last_state = state
        self._warmup_draws = run.warmup_draws
        if interrupted:
            warmed = all(g.t >= run.num_warmup for g in run.groups)
            if run.fresh and run.num_warmup and warmed:
                # the state at the end of the warm-up (kept when the chunk reached it)
                if run.total > run.num_warmup:
                    self.post_warmup_state = _stack_groups([g.warm_state for g in run.groups])
                else:
                    self.post_warmup_state = state
            done = min(g.t for g in run.groups)
            kept = max(0, done - run.num_warmup) // self.thinning
            if run.warmup_draws:
                kept = min(done, run.num_warmup) // self.thinning + kept
            samples = jax.tree.map(lambda x: x[:, :kept], samples)
            records = {k: v[:, :kept] for k, v in records.items()}
        elif not run.sample:
            self.post_warmup_state = state
            if not run.warmup_draws:
                return
        if not (run.sample or run.warmup_draws):
            return
        for alias, canonical in run.aliases.items():
            records[alias] = records[canonical]
        self._samples = samples
        self._fields = records
        self._counts.update({k: int(np.sum(np.asarray(v))) for k, v in counts.items()})

    def resume(self) -> None:
        """Go on with a run (``run`` or ``warmup``) that Ctrl-C interrupted, with the same model
        arguments, to the same results as if it had not stopped (bitwise).

        Raises:
            RuntimeError: no interrupted run to resume.
        """
        run = self._interrupted
        if run is None:
            raise RuntimeError(
                "MCMC.resume: no interrupted run (it resumes a run stopped by Ctrl-C)."
            )
        self._target, self._args, self._kwargs = run.target, run.args, run.kwargs
        self._continue(run, "resume", stacklevel=5)

    def _check_state(self, state: MCMCState, target) -> MCMCState:
        if not isinstance(state, MCMCState):
            raise TypeError(f"post_warmup_state must be an MCMCState, got {type(state).__name__}")
        if state.position.shape != (self.num_chains, target.dim):
            raise ValueError(
                f"post_warmup_state holds positions of shape {state.position.shape}, expected "
                f"(num_chains={self.num_chains}, d={target.dim}) for this model."
            )
        return state

    def _warn_diagnostics(self, stacklevel: int) -> None:
        samples = {k: v[:, self._warmup_draws :] for k, v in self._latent_samples().items()}
        diagnostics.warn_diagnostics(
            samples,
            num_divergent=self._counts.get("num_divergent", 0),
            num_max_treedepth_hits=self._counts.get("num_max_tree_depth", 0),
            max_tree_depth=self.sampler.max_tree_depth,
            stacklevel=stacklevel,
        )

    def _latent_samples(self) -> dict[str, Any]:
        exclude = set(self._target.deterministic_sites) if self._target is not None else set()
        return {k: v for k, v in self.named_samples.items() if k not in exclude}

    def _require_run(self) -> None:
        if self._samples is None:
            raise RuntimeError("No samples yet: call run() first.")

    def get_samples(self, group_by_chain: bool = False) -> Any:
        """Constrained samples (with deterministic sites) of the last run.

        Returns:
            ``{site: (num_chains * num_draws, ...)}``, or ``(num_chains, num_draws, ...)``
            arrays with ``group_by_chain=True`` (a pytree like the potential_fn's input for a
            sampler built from ``potential_fn``).
        """
        self._require_run()
        if group_by_chain:
            return self._samples
        return jax.tree.map(_flatten_chains, self._samples)

    @property
    def named_samples(self) -> dict[str, Any]:
        """The samples of the last run by name, grouped by chain: ``{name: (num_chains,
        num_draws, ...)}``. For a model the sites (with deterministic ones); for a sampler
        built from ``potential_fn`` the leaves of its pytree, named by their key paths
        (``"z"`` for a bare array)."""
        samples = self.get_samples(group_by_chain=True)
        if isinstance(samples, dict):
            return dict(samples)
        flat = jax.tree_util.tree_flatten_with_path(samples)[0]
        return {_concat_name(path): leaf for path, leaf in flat}

    def get_extra_fields(self, group_by_chain: bool = False) -> dict[str, jax.Array]:
        """Per-draw statistics of the last run: ``{name: (num_chains * num_draws, ...)}`` (or
        ``(num_chains, num_draws, ...)``). Always present: ``diverging``, ``accept_prob``,
        ``num_steps``, ``energy``, ``potential_energy``, ``step_size`` and (NUTS)
        ``tree_depth``; plus those asked for with ``run(..., extra_fields=...)``."""
        self._require_run()
        if group_by_chain:
            return dict(self._fields)
        return {k: _flatten_chains(v) for k, v in self._fields.items()}

    @property
    def num_divergent(self) -> int:
        """Divergent transitions after warm-up in the last run (all transitions, thinned or
        not)."""
        return self._counts.get("num_divergent", 0)

    def print_summary(self, prob: float = 0.9, exclude_deterministic: bool = True) -> None:
        """Print a table of posterior statistics and diagnostics per site (grouped by chain)."""
        self._require_run()
        if exclude_deterministic:
            samples = self._latent_samples()
        else:
            samples = self.named_samples
        extra = {"diverging": np.asarray(self._fields["diverging"])}
        diagnostics.print_summary(samples, prob=prob, group_by_chain=True, extra=extra)

    def save(self, path: str | os.PathLike, include_samples: bool = True) -> str:
        """Save the run state (and the samples) atomically: a :mod:`jppl.checkpoint` file,
        ``<path>.npz`` (``.npz`` appended if missing; the previous file at that path survives
        a crash during the save). See :mod:`jppl.mcmc.io`.

        Args:
            path: destination file.
            include_samples: also store the last run's samples (only for a dict of arrays)
                and per-draw statistics.

        Returns:
            the path written.
        """
        if self.last_state is None:
            raise RuntimeError("Nothing to save: call run() or warmup() first.")
        samples, fields = None, None
        if include_samples and isinstance(self._samples, dict):
            samples = self.get_samples(group_by_chain=True)
            fields = self.get_extra_fields(group_by_chain=True)
        return io.write_checkpoint(
            path,
            self.last_state,
            settings={name: self._setting(name) for name in io.SETTINGS},
            sampler_config=self.sampler.config(),
            samples=samples,
            extra_fields=fields,
        )

    def _setting(self, name: str) -> Any:
        """The saved value of a setting: a callable chain_method is saved as "vectorized"."""
        value = getattr(self, name)
        if name == "chain_method" and callable(value):
            return "vectorized"
        return value

    @classmethod
    def load(cls, path: str | os.PathLike, sampler: Sampler, **overrides: Any) -> MCMC:
        """An :class:`MCMC` restored from :meth:`save`, ready to continue (see :meth:`restore`).

        The saved settings (``num_warmup``, ``num_samples``, ``num_chains``, ``thinning``,
        ``chain_method``) are used unless overridden by keyword (any ``MCMC`` option, e.g.
        ``progress_bar=False``).

        Args:
            path: the file written by :meth:`save`, with or without its ``.npz``.

        Raises:
            FileNotFoundError: no checkpoint at ``path``.
            jppl.checkpoint.CheckpointError: (a ``ValueError``) the file is not a jppl
                checkpoint or is incomplete, or its state is invalid (e.g. a NaN step size),
                naming the field.
            ValueError: if ``sampler``'s options (kernel, mass-matrix structure, adaptation,
                tree depth / trajectory) differ from the saved ones, or the checkpoint holds
                another number of chains than ``num_chains``.
        """
        checkpoint = io.read_checkpoint(path, sampler.config())
        mcmc = cls(sampler, **{**checkpoint.settings, **overrides})
        mcmc.restore(checkpoint.state, checkpoint.samples, checkpoint.extra_fields)
        return mcmc

    def restore(
        self,
        state: MCMCState,
        samples: dict[str, jax.Array] | None = None,
        extra_fields: dict[str, jax.Array] | None = None,
    ) -> None:
        """Continue from a saved run: ``state`` becomes both :attr:`last_state` and
        :attr:`post_warmup_state` (so ``run(None, ...)`` continues the chains' key streams).

        Args:
            state: an :class:`~jppl.mcmc.state.MCMCState` with ``num_chains`` chains.
            samples: ``{site: (num_chains, num_draws, ...)}`` samples of that run, returned by
                :meth:`get_samples` until the next run (ignored if empty or ``None``).
            extra_fields: ``{name: (num_chains, num_draws, ...)}`` statistics of that run,
                returned by :meth:`get_extra_fields` with ``samples``.
        """
        if not isinstance(state, MCMCState):
            raise TypeError(f"restore: state must be an MCMCState, got {type(state).__name__}")
        if state.num_chains != self.num_chains:
            raise ValueError(
                f"The checkpoint holds {state.num_chains} chains, num_chains={self.num_chains}."
            )
        self._last_state = state
        self.post_warmup_state = state
        if samples:
            self._warmup_draws = 0
            self._samples = samples
            self._fields = dict(extra_fields or {})

    def to_arviz(
        self,
        log_likelihood: bool = True,
        *,
        prior: dict[str, Any] | None = None,
        posterior_predictive: dict[str, Any] | None = None,
        predictions: dict[str, Any] | None = None,
        coords: dict[str, Any] | None = None,
        dims: dict[str, list[str | None]] | None = None,
    ) -> Any:
        """The last run in ArviZ's format: an ``arviz.InferenceData`` on ArviZ 0.x, an
        ``xarray.DataTree`` on ArviZ 1.x, dims named after the model's plates; see
        :func:`jppl.mcmc.io.to_arviz` for the arguments."""
        return io.to_arviz(
            self.named_samples,
            self.get_extra_fields(group_by_chain=True),
            model=self.sampler.model,
            model_args=self.model_args,
            model_kwargs=self.model_kwargs,
            log_likelihood=log_likelihood,
            prior=prior,
            posterior_predictive=posterior_predictive,
            predictions=predictions,
            coords=coords,
            dims=dims,
        )
