"""Parallel enumeration of discrete latent sites: ``enum``, ``config_enumerate``, ``markov``.

A site marked ``infer={"enumerate": "parallel"}`` (``config_enumerate`` marks every discrete
latent site that has ``enumerate_support``) takes as value its whole support, laid out along a
new batch dim to the left of all plates: with ``first_available_dim = -(max_plate_nesting +
1)``, the first enumerated site gets that dim, the next one the dim to its left, and so on
(NumPyro's allocation, so models that index with enumerated values port unchanged). Every
site downstream then carries these dims in its log-probability; the marginal density sums
them out (:mod:`jppl.model.enum`).

``markov`` marks the steps of a Markov chain: a variable allocated in a step stays live for
``history`` further steps, after which its dim is reused. A chain of length ``T`` thus needs
``history + 1`` dims rather than ``T``, and the sum over its variables costs ``O(T)``.

Each enumerated site records in ``site["infer"]``:

* ``"_enumerate_dim"``: its dim (negative int);
* ``"_enum_names"``: for every sample site, ``{dim: enumerated site name}`` of the variables
  live when it ran, which names the enumerated dims of its log-probability;
* ``"_enum_first_dim"``: ``first_available_dim``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import jax.numpy as jnp

from jppl.handlers import infer_config
from jppl.primitives import Message, Messenger
from jppl.stack import HANDLER_STACK, innermost

__all__ = ["config_enumerate", "enum", "markov"]


def config_enumerate(fn: Callable | None = None, default: str = "parallel") -> Callable:
    """Mark every discrete latent site of ``fn`` that has ``enumerate_support`` for
    enumeration (``infer["enumerate"] = default``), unless the site says otherwise.

    Usable as ``config_enumerate(model)`` or ``@config_enumerate``.
    """
    if default not in ("parallel", None):
        raise ValueError(
            f"config_enumerate: default must be 'parallel' (or None to unmark), got {default!r}; "
            "jppl enumerates in parallel only ('sequential' is not supported)."
        )
    if fn is None:
        return lambda f: config_enumerate(f, default=default)

    def config_fn(site: Message) -> dict:
        if (
            site["type"] == "sample"
            and not site["is_observed"]
            and site["fn"].has_enumerate_support
            and "enumerate" not in site["infer"]
        ):
            return {"enumerate": default}
        return {}

    return infer_config(fn, config_fn=config_fn)


class _Chain:
    """The recent steps of one Markov chain: a list of ``{name: dim}`` frames, newest last."""

    def __init__(self, history: int):
        self.history = history
        self.steps: list[dict[str, int]] = []


class enum(Messenger):
    """Enumerate the sites marked ``infer={"enumerate": "parallel"}`` in parallel.

    Args:
        fn: the model.
        first_available_dim: the rightmost dim enumeration may use (negative), i.e.
            ``-(max_plate_nesting + 1)``; every plate of the model must lie to its right.
        live_dims: ``{name: dim}`` of variables enumerated outside this handler whose values
            reach the model (a guide's enumerated sites, replayed into the model by
            ``TraceEnum_ELBO``): their dims are not reused, and they name those dims of the
            sites that depend on them.

    A marked site must be latent, discrete and have ``enumerate_support``; its value becomes
    ``fn.enumerate_support(expand=False)`` with the support along its allocated dim. A site
    whose value some other handler set (e.g. ``substitute``) is not enumerated.
    """

    def __init__(
        self,
        fn: Callable | None = None,
        first_available_dim: int | None = None,
        live_dims: dict[str, int] | None = None,
    ):
        if first_available_dim is None:
            raise ValueError(
                "enum: first_available_dim is required: -(max_plate_nesting + 1), where "
                "max_plate_nesting is the number of nested plates of the model (e.g. -2 for a "
                "model with one plate)."
            )
        if not isinstance(first_available_dim, int) or first_available_dim >= 0:
            raise ValueError(
                "enum: first_available_dim must be a negative int (-(max_plate_nesting + 1)), "
                f"got {first_available_dim!r}"
            )
        self.first_available_dim = first_available_dim
        self._live = dict(live_dims or {})
        self._global: dict[str, int] = dict(self._live)
        self._chains: dict[Any, _Chain] = {}
        self._open_steps: list[tuple[Any, dict[str, int]]] = []
        super().__init__(fn)

    def __enter__(self):
        self._global = dict(self._live)
        self._chains = {}
        self._open_steps = []
        return super().__enter__()

    # -- dims --------------------------------------------------------------------------------

    def live_names(self) -> dict[int, str]:
        """``{dim: site name}`` of the enumerated variables live now."""
        live = {dim: name for name, dim in self._global.items()}
        for chain in self._chains.values():
            for step in chain.steps:
                live.update({dim: name for name, dim in step.items()})
        return live

    def _allocate(self, name: str) -> int:
        frame = self._open_steps[-1][1] if self._open_steps else self._global
        if name in frame:
            return frame[name]  # the same site traced again (e.g. a `lax.scan` body)
        used = set(self.live_names())
        dim = self.first_available_dim
        while dim in used:
            dim -= 1
        frame[name] = dim
        return dim

    # -- markov steps (called by `markov`) ----------------------------------------------------

    def markov_enter(self, history: int) -> Any:
        """Start a step of the chain of the current context; frees the dims of variables more
        than ``history`` steps old. Returns a token for :meth:`markov_exit`."""
        parent = self._open_steps[-1][0] if self._open_steps else None
        chain = self._chains.setdefault(parent, _Chain(history))
        chain.history = history
        frame: dict[str, int] = {}
        chain.steps.append(frame)
        # The newest step plus the `history` before it stay live.
        del chain.steps[: max(0, len(chain.steps) - history - 1)]
        token = (parent, len(self._open_steps), id(frame))
        self._open_steps.append((token, frame))
        return token

    def step_frames(self) -> tuple[dict[str, int], dict[str, int]]:
        """``({name: dim} of the previous step, of the current step)`` of the innermost open
        markov step's chain (the previous one empty for a first step)."""
        token, frame = self._open_steps[-1]
        parent = self._open_steps[-2][0] if len(self._open_steps) > 1 else None
        steps = self._chains[parent].steps
        previous = steps[-2] if len(steps) > 1 and steps[-1] is frame else {}
        return previous, frame

    def markov_exit(self, token: Any) -> None:
        while self._open_steps and self._open_steps[-1][0] is not token:
            self._open_steps.pop()
        if self._open_steps:
            self._open_steps.pop()
        # A chain nested in the finished step is over: its variables are out of scope.
        self._chains.pop(token, None)

    # -- messages ----------------------------------------------------------------------------

    def process_message(self, msg: Message) -> None:
        if msg["type"] != "sample" or "_enum_names" in msg["infer"]:
            return  # already seen by an enumeration handler (e.g. per step of a `scan`)
        for frame in msg["cond_indep_stack"]:
            if frame.dim <= self.first_available_dim:
                raise ValueError(
                    f"Sample site '{msg['name']}' is in plate '{frame.name}' at dim "
                    f"{frame.dim}, but enumeration starts at dim {self.first_available_dim} "
                    f"(max_plate_nesting={-self.first_available_dim - 1}): raise "
                    "max_plate_nesting to the number of nested plates of the model."
                )
        if (
            msg["infer"].get("enumerate") != "parallel"
            or msg["is_observed"]
            or msg["value"] is not None
        ):
            msg["infer"]["_enum_names"] = self.live_names()
            msg["infer"]["_enum_first_dim"] = self.first_available_dim
            return
        fn = msg["fn"]
        if not fn.has_enumerate_support:
            raise ValueError(
                f"Sample site '{msg['name']}' is marked for enumeration, but "
                f"{type(fn).__name__} has unbounded or continuous support and cannot be "
                "enumerated. Marginalize it by hand (e.g. a mixture or a truncated support "
                "such as Categorical over 0..K-1), sample it with DiscreteHMCGibbs / MixedHMC, "
                "or give it a value (condition / substitute)."
            )
        if msg["kwargs"].get("sample_shape"):
            raise ValueError(
                f"Sample site '{msg['name']}': an enumerated site cannot have a sample_shape "
                f"{msg['kwargs']['sample_shape']}; put it in a plate instead."
            )
        support = fn.enumerate_support(expand=False)
        size = support.shape[0]
        dim = self._allocate(msg["name"])
        event_shape = tuple(fn.event_shape)
        msg["value"] = jnp.reshape(support, (size,) + (1,) * (-dim - 1) + event_shape)
        msg["infer"]["_enumerate_dim"] = dim
        msg["infer"]["_enum_names"] = self.live_names()
        msg["infer"]["_enum_first_dim"] = self.first_available_dim


class markov(Messenger):
    """Steps of a Markov chain, for enumeration (without ``enum`` it changes nothing).

    ``for t in markov(range(T)):`` makes each iteration a step; ``with markov():`` blocks
    called one after another in the same context are consecutive steps. A variable
    enumerated in a step is live in the ``history`` steps after it (variables may only depend
    on those); then its dim is reused.

    Args:
        fn: a callable (each call is one step) or an iterable (each item is one step).
        history: how many past steps a step may depend on (``>= 0``).
        keep: accepted for NumPyro's signature; only ``False`` is supported.
    """

    def __init__(self, fn: Callable | Iterable | None = None, history: int = 1, keep: bool = False):
        if not isinstance(history, int) or isinstance(history, bool) or history < 0:
            raise ValueError(f"markov: history must be an int >= 0, got {history!r}")
        if keep:
            raise NotImplementedError(
                "markov(keep=True) is not supported: jppl frees the dims of variables more "
                "than `history` steps old."
            )
        self.history = history
        self._token = None
        self._iterable = None
        if fn is not None and not callable(fn):
            self._iterable, fn = fn, None
        super().__init__(fn)

    def __enter__(self):
        allocator = innermost("markov_enter")
        self._allocator = allocator
        self._token = allocator.markov_enter(self.history) if allocator is not None else None
        return super().__enter__()

    def __exit__(self, exc_type, exc_value, traceback):
        result = super().__exit__(exc_type, exc_value, traceback)
        if self._allocator is not None and self._allocator in HANDLER_STACK:
            self._allocator.markov_exit(self._token)
        return result

    def __iter__(self) -> Iterator:
        if self._iterable is None:
            raise TypeError("markov: iterate over markov(iterable), e.g. markov(range(T)).")
        for item in self._iterable:
            with self:
                yield item
