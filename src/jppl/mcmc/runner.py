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
compile anything again. The compiled warm-up and sampling programs are cached on the object.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jppl import diagnostics
from jppl.mcmc import chains as _chains
from jppl.mcmc.progress import ProgressBar, is_interactive, make_reporter
from jppl.mcmc.state import MCMCState, as_typed_key, chain_keys, split_model_args

__all__ = ["MCMC"]

_OPTIONAL_FIELDS = ("z", "z_grad", "inverse_mass_matrix")


def _flatten_chains(x: jax.Array) -> jax.Array:
    return jnp.reshape(x, (-1,) + tuple(x.shape[2:]))


def _summary(step_size: Any, num_divergent: Any) -> str:
    step = float(np.mean(np.asarray(step_size)))
    return f"step size {step:.2e}, {int(np.sum(np.asarray(num_divergent)))} divergences"


def _concat_name(path) -> str:
    return jax.tree_util.keystr(path).strip("[]'\"") or "z"


class MCMC:
    """Run Markov chains with a :class:`~jppl.mcmc.NUTS` or :class:`~jppl.mcmc.HMC` sampler.

    Args:
        sampler: the sampler (holds the model or potential_fn and the kernel options).
        num_warmup: warm-up (adaptation) transitions per chain.
        num_samples: post-warm-up transitions per chain; ``num_samples // thinning`` draws
            are kept (the last of each block of ``thinning`` transitions).
        num_chains: number of chains.
        thinning: keep one draw in ``thinning``.
        chain_method: ``"vectorized"`` (``vmap`` over chains), ``"sharded"`` (chains spread
            over the devices of a 1-d ``"chain"`` mesh with ``shard_map``; padded to a multiple
            of the devices used, the padding is dropped) or ``"sequential"`` (a Python loop
            over chains reusing one compiled single-chain program).
        progress_bar: show progress. On a terminal a tqdm bar per phase (phase, step size,
            acceptance, divergences so far), fed by throttled callbacks compiled into the
            loops; otherwise one line per phase after it ends (no callbacks compiled).
            ``False``: no output and no callbacks.
        jit_model_args: also trace Python ``int``/``float`` model arguments (array arguments
            are always traced, see :func:`jppl.mcmc.state.split_model_args`).
        warn: after ``run``, emit :class:`jppl.diagnostics.ConvergenceWarning`\\ s for
            divergences, maximum tree depth hits, R-hat > 1.01 and low bulk/tail ESS.
        devices: for ``chain_method="sharded"``, the devices to use (default: all of
            ``jax.devices()``); ``ceil(num_chains / len(devices))`` chains go to each device
            used.
    """

    def __init__(
        self,
        sampler: Any,
        *,
        num_warmup: int,
        num_samples: int,
        num_chains: int = 1,
        thinning: int = 1,
        chain_method: str = "vectorized",
        progress_bar: bool = True,
        jit_model_args: bool = False,
        warn: bool = True,
        devices: Sequence[Any] | None = None,
    ):
        if chain_method not in _chains.CHAIN_METHODS:
            raise ValueError(
                f"chain_method must be one of {_chains.CHAIN_METHODS}, got {chain_method!r}"
            )
        if int(num_chains) < 1:
            raise ValueError(f"num_chains must be >= 1, got {num_chains}")
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
        self.post_warmup_state: MCMCState | None = None
        self._last_state: MCMCState | None = None
        self._samples: Any = None
        self._fields: dict[str, jax.Array] | None = None
        self._counts: dict[str, int] = {}
        self._target = None
        self._args: tuple = ()
        self._kwargs: dict = {}
        self._targets: dict = {}
        self._compiled: dict = {}
        self._phase_seconds: dict = {}
        self._bar = ProgressBar()
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
    def sampler(self) -> Any:
        """The sampler (read-only: the compiled programs cached here are built from it)."""
        return self._sampler

    @property
    def last_state(self) -> MCMCState | None:
        """The :class:`~jppl.mcmc.state.MCMCState` after the last transition of the last run."""
        return self._last_state

    # -- compiled programs ---------------------------------------------------------------------

    def _live(self) -> bool:
        return self.progress_bar and is_interactive()

    def _reporter(self, total: int) -> Callable | None:
        if not self._live() or total == 0:
            return None
        axis = _chains.AXIS if self.chain_method == "sharded" else None
        return make_reporter(self._bar, total, axis_name=axis)

    def _call_phase(
        self,
        key: tuple,
        build: Callable,
        phase: str,
        total: int,
        unit: int,
        chain_in: Any,
        dynamic: list,
    ) -> tuple[Any, bool]:
        """Run the compiled program of a phase (compiled on first use, cached under ``key``),
        timing it; the progress interval is picked from the phase's last measured duration.

        Returns ``(outputs, whole)``; ``whole`` tells whether a phase-wide bar was opened."""
        cached = key in self._compiled
        fn = self._compiled_fn(key, build)
        every = ProgressBar.pick_every(total, self._phase_seconds.get(key), unit)
        whole = self.progress_bar and self.chain_method != "sequential" and total > 0
        if whole:
            self._bar.start(phase, total, self._live())
        start = time.perf_counter()
        out = jax.block_until_ready(fn(chain_in, (dynamic, jnp.asarray(every, jnp.int32))))
        elapsed = time.perf_counter() - start
        self.timings[phase] = elapsed
        if cached:
            self._phase_seconds[key] = elapsed
        return out, whole

    def _close_phase(self, key: tuple, whole: bool, summary: str) -> None:
        if whole:
            self._bar.close(summary)
            if key not in self._phase_seconds and self._bar.last_seconds is not None:
                self._phase_seconds[key] = self._bar.last_seconds

    def _on_chain(self, phase: str, total: int, summarize: Callable) -> Callable | None:
        if not self.progress_bar or self.chain_method != "sequential":
            return None

        @contextlib.contextmanager
        def on_chain(c: int):
            label = f" (chain {c + 1}/{self.num_chains})"
            self._bar.start(phase, total, self._live(), label)
            outputs = []
            yield outputs.append
            self._bar.close(summarize(outputs[0]) if outputs else "", label)

        return on_chain

    def _get_target(self, sig_key, rng_key, args, kwargs, init_params):
        if self.sampler.model is not None:
            if sig_key not in self._targets:
                self._targets[sig_key] = self.sampler.bind(rng_key, args, kwargs)
            return self._targets[sig_key]
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
            return jax.jit(lambda k, dyn: target.make_init(k, *sig.rebuild(dyn)))

        init_fn = self._compiled_fn(("init", sig.key, c), build)
        positions, valid = init_fn(keys, sig.dynamic)
        if not bool(np.all(np.asarray(valid))):
            bad = np.flatnonzero(~np.asarray(valid)).tolist()
            raise RuntimeError(
                f"Cannot find valid initial parameters for chain(s) {bad}: the potential energy "
                "or its gradient is not finite at every initial point drawn. Check the model, or "
                "try another init_strategy (init_to_value, init_to_median, ...)."
            )
        return positions

    def _run_warmup(self, target, sig, positions, key_warm, key_sample):
        n, c = self.num_warmup, self.num_chains
        live = self._live()
        block_mask = self.sampler.block_mask(target)

        def build():
            warm = _chains.build_warmup_chain(
                self.sampler, target, sig.rebuild, n, self._reporter(n), block_mask
            )
            on_chain = self._on_chain("warmup", n, lambda out: _summary(out[0].step_size, out[1]))
            return _chains.map_chains(warm, self.chain_method, c, on_chain, self.devices)

        key = ("warmup", sig.key, c, self.chain_method, self.devices, n, live)
        chain_in = (positions, key_warm, key_sample)
        (state, n_div), whole = self._call_phase(key, build, "warmup", n, 1, chain_in, sig.dynamic)
        self._close_phase(key, whole, _summary(state.step_size, n_div))
        self._counts["warmup_num_divergent"] = int(np.sum(np.asarray(n_div)))
        return state

    def _run_sampling(self, target, sig, state: MCMCState, fields: tuple[str, ...]):
        c, thin = self.num_chains, self.thinning
        draws = self.num_samples // thin
        total = draws * thin
        live = self._live()

        def build():
            sample = _chains.build_sample_chain(
                self.sampler, target, sig.rebuild, draws, thin, fields, self._reporter(total)
            )
            on_chain = self._on_chain(
                "sample", total, lambda out: _summary(out[0].step_size, out[3]["num_divergent"])
            )
            return _chains.map_chains(sample, self.chain_method, c, on_chain, self.devices)

        key = ("sample", sig.key, c, self.chain_method, self.devices, draws, thin, fields, live)
        key += (state.inverse_mass_matrix.ndim,)
        out, whole = self._call_phase(key, build, "sample", total, thin, state, sig.dynamic)
        new_state, samples, records, counts = out
        self._close_phase(key, whole, _summary(state.step_size, counts["num_divergent"]))
        return new_state, samples, records, counts

    def _field_names(self, extra_fields: Sequence[str]) -> tuple[tuple[str, ...], dict[str, str]]:
        if isinstance(extra_fields, str):
            extra_fields = (extra_fields,)
        names = [f for f in _chains.DEFAULT_FIELDS if f != "tree_depth"]
        if self.sampler.max_tree_depth is not None:
            names.append("tree_depth")
        optional = _OPTIONAL_FIELDS + tuple(self.sampler.optional_fields)
        aliases: dict[str, str] = {}
        for name in extra_fields:
            canonical = _chains.FIELD_ALIASES.get(name, name)
            if canonical not in names and canonical not in optional:
                raise ValueError(
                    f"Unknown extra field {name!r}; available: "
                    f"{sorted(set(names) | set(optional) | set(_chains.FIELD_ALIASES))}."
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

        ``extra_fields`` is accepted for NumPyro compatibility and ignored; collecting the
        warm-up draws (``collect_warmup=True``) is not supported.
        """
        if collect_warmup:
            raise NotImplementedError("collect_warmup=True is not supported.")
        self._prepare(rng_key, args, kwargs, init_params, sample=False)

    def run(
        self,
        rng_key: Any,
        *args: Any,
        extra_fields: Sequence[str] = (),
        init_params: Any = None,
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
        """
        self._prepare(rng_key, args, kwargs, init_params, sample=True, extra_fields=extra_fields)

    def _prepare(self, rng_key, args, kwargs, init_params, *, sample, extra_fields=()):
        fields, aliases = self._field_names(extra_fields)
        sig = split_model_args(args, kwargs, self.jit_model_args)
        resume = self.post_warmup_state
        bind_key = jax.random.key(0) if rng_key is None else as_typed_key(rng_key)
        if bind_key.ndim > 0:
            bind_key = bind_key[0]
        target = self._get_target(sig.key, bind_key, args, kwargs, init_params)
        self._target, self._args, self._kwargs = target, args, kwargs
        self._counts = {}
        self.timings = {}
        if resume is None:
            if rng_key is None:
                raise ValueError("rng_key is required unless post_warmup_state is set.")
            keys = chain_keys(rng_key, self.num_chains)
            split = jax.vmap(lambda k: jax.random.split(k, 3))(keys)
            positions = self._initial_positions(target, sig, split[:, 0], init_params)
            state = self._run_warmup(target, sig, positions, split[:, 1], split[:, 2])
        else:
            state = self._check_state(resume, target)
            if rng_key is not None:
                state = state._replace(rng_key=chain_keys(rng_key, self.num_chains))
            self._counts["warmup_num_divergent"] = 0
        if not sample:
            self.post_warmup_state = state
            self._last_state = state
            return
        state, samples, records, counts = self._run_sampling(target, sig, state, fields)
        for alias, canonical in aliases.items():
            records[alias] = records[canonical]
        self._last_state = state
        self._samples = samples
        self._fields = records
        self._counts.update({k: int(np.sum(np.asarray(v))) for k, v in counts.items()})
        if self.warn:
            self._warn_diagnostics()

    def _check_state(self, state: MCMCState, target) -> MCMCState:
        if not isinstance(state, MCMCState):
            raise TypeError(f"post_warmup_state must be an MCMCState, got {type(state).__name__}")
        if state.position.shape != (self.num_chains, target.dim):
            raise ValueError(
                f"post_warmup_state holds positions of shape {state.position.shape}, expected "
                f"(num_chains={self.num_chains}, d={target.dim}) for this model."
            )
        return state

    def _warn_diagnostics(self) -> None:
        samples = self._latent_samples(group_by_chain=True)
        diagnostics.warn_diagnostics(
            samples,
            num_divergent=self._counts.get("num_divergent", 0),
            num_max_treedepth_hits=self._counts.get("num_max_tree_depth", 0),
            max_tree_depth=self.sampler.max_tree_depth,
            stacklevel=5,
        )

    def _named_samples(self, samples: Any) -> dict[str, Any]:
        if isinstance(samples, dict):
            return dict(samples)
        flat = jax.tree_util.tree_flatten_with_path(samples)[0]
        return {_concat_name(path): leaf for path, leaf in flat}

    def _latent_samples(self, group_by_chain: bool = True) -> dict[str, Any]:
        samples = self._named_samples(self.get_samples(group_by_chain=group_by_chain))
        exclude = set(self._target.deterministic_sites) if self._target is not None else set()
        return {k: v for k, v in samples.items() if k not in exclude}

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
            samples = self._latent_samples(group_by_chain=True)
        else:
            samples = self._named_samples(self.get_samples(group_by_chain=True))
        extra = {"diverging": np.asarray(self._fields["diverging"])}
        diagnostics.print_summary(samples, prob=prob, group_by_chain=True, extra=extra)

    def save(self, path: Any, include_samples: bool = True) -> None:
        """Save the run state (and the samples) to an ``.npz`` file; see :mod:`jppl.mcmc.io`."""
        from jppl.mcmc import io

        io.save(self, path, include_samples=include_samples)

    @classmethod
    def load(cls, path: Any, sampler: Any, **overrides: Any) -> MCMC:
        """An :class:`MCMC` restored from :meth:`save`, ready to continue (its
        :attr:`post_warmup_state` is the saved last state); see :mod:`jppl.mcmc.io`."""
        from jppl.mcmc import io

        return io.load(path, sampler, **overrides)

    def to_arviz(self) -> Any:
        """The last run as an ``arviz.InferenceData``; see :func:`jppl.mcmc.io.to_arviz`."""
        from jppl.mcmc import io

        return io.to_arviz(self)
