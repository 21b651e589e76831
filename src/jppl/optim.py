"""NumPyro's optimizer names as ``optax.GradientTransformation`` constructors.

``numpyro.optim.Adam(1e-3)`` ports to ``jppl.optim.Adam(1e-3)``: the same names, arguments,
defaults and update formulas (those of ``jax.example_libraries.optimizers``, which NumPyro
wraps), built from optax pieces, so the result plugs into ``SVI(model, guide, optim, loss)``
like any optax optimizer. ``step_size`` is a float or a schedule ``step -> float`` (the step
counts from 0, as in NumPyro).

Where optax's ready-made optimizer differs from NumPyro's formula, the constructor composes
optax transformations to match:

* ``Adagrad``: accumulator starts at 0, no ``eps``, ``0`` where the accumulator is ``0``, and
  an (un-debiased) moving average with ``momentum`` (optax's ``adagrad`` starts at 0.1, adds
  ``eps`` and has no momentum).
* ``RMSProp``: ``eps`` inside the square root, second moment starting at 0.
* ``RMSPropMomentum``: the step size is applied before the momentum accumulates.
* ``ClippedAdam``: ``clip_norm`` clips each gradient *element* to ``[-clip_norm, clip_norm]``
  (as NumPyro does, despite the name).
* ``SM3``: ``optax.scale_by_sm3`` with no second-moment decay; scalar parameters (which optax's
  SM3 does not take) use the one-dimensional SM3 rule, i.e. Adagrad with momentum.

NumPyro's ``Minimize`` (a full BFGS run per step) needs the loss function, which an optax
transformation never sees; :class:`Minimize` is therefore not an optax transformation but a
marker that :class:`jppl.SVI` recognizes: each ``svi.update`` then minimizes the loss (with that
step's fixed PRNG key) over all the unconstrained params, flattened into one vector, with
``jax.scipy.optimize.minimize``, as NumPyro does. Meant for deterministic losses: ``AutoDelta``
(MAP), ``AutoLaplaceApproximation`` or a guide without latent sites (maximum likelihood).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from jax.scipy.optimize import minimize

__all__ = [
    "SGD",
    "SM3",
    "Adagrad",
    "Adam",
    "ClippedAdam",
    "Minimize",
    "MinimizeState",
    "Momentum",
    "RMSProp",
    "RMSPropMomentum",
    "optax_to_numpyro",
]

StepSize = float | Callable[[jax.Array], jax.Array]


def _check_step_size(name: str, step_size: StepSize) -> StepSize:
    if callable(step_size):
        return step_size
    try:
        value = float(step_size)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name}: step_size must be a positive float or a schedule (a callable of the step), "
            f"got {step_size!r}."
        ) from None
    if not value > 0:
        raise ValueError(f"{name}: step_size must be > 0, got {step_size}.")
    return step_size


def _check_unit(name: str, arg: str, value: float, closed: bool = True) -> None:
    """``value`` in [0, 1] (``closed``) or [0, 1): a decay rate."""
    ok = 0 <= float(value) <= 1 if closed else 0 <= float(value) < 1
    if not ok:
        raise ValueError(f"{name}: {arg} must be in [0, 1{']' if closed else ')'}, got {value}.")


def SGD(step_size: StepSize) -> optax.GradientTransformation:
    """Plain gradient descent: ``x <- x - step_size(i) * g``."""
    return optax.sgd(_check_step_size("SGD", step_size))


def Momentum(step_size: StepSize, mass: float) -> optax.GradientTransformation:
    """Heavy-ball momentum: ``v <- mass * v + g``; ``x <- x - step_size(i) * v`` (``v_0 = 0``)."""
    _check_unit("Momentum", "mass", mass)
    return optax.sgd(_check_step_size("Momentum", step_size), momentum=mass, nesterov=False)


def Adam(
    step_size: StepSize, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """Adam: ``x <- x - step_size(i) * m_hat / (sqrt(v_hat) + eps)`` with bias-corrected
    moments ``m_hat = m / (1 - b1^(i+1))``, ``v_hat = v / (1 - b2^(i+1))``."""
    _check_unit("Adam", "b1", b1, closed=False)
    _check_unit("Adam", "b2", b2, closed=False)
    return optax.adam(_check_step_size("Adam", step_size), b1=b1, b2=b2, eps=eps, eps_root=0.0)


def ClippedAdam(
    step_size: StepSize,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    clip_norm: float = 10.0,
) -> optax.GradientTransformation:
    """:func:`Adam` on gradients clipped elementwise to ``[-clip_norm, clip_norm]``."""
    if not clip_norm > 0:
        raise ValueError(f"ClippedAdam: clip_norm must be > 0, got {clip_norm}.")
    return optax.chain(optax.clip(clip_norm), Adam(step_size, b1=b1, b2=b2, eps=eps))


def _adagrad_momentum(momentum: float) -> optax.GradientTransformation:
    """``G <- G + g^2`` (``G_0 = 0``); ``m <- (1 - momentum) * g / sqrt(G) + momentum * m``
    with ``g / sqrt(G) = 0`` where ``G = 0``; returns ``m`` (no step size)."""
    return optax.chain(
        optax.scale_by_rss(initial_accumulator_value=0.0, eps=0.0),
        optax.ema(momentum, debias=False),
    )


def Adagrad(step_size: StepSize, momentum: float = 0.9) -> optax.GradientTransformation:
    """Adagrad with momentum, as NumPyro: ``G <- G + g^2`` (``G_0 = 0``),
    ``m <- (1 - momentum) * g / sqrt(G) + momentum * m`` (``0`` where ``G = 0``),
    ``x <- x - step_size(i) * m``."""
    _check_unit("Adagrad", "momentum", momentum)
    return optax.chain(
        _adagrad_momentum(momentum),
        optax.scale_by_learning_rate(_check_step_size("Adagrad", step_size)),
    )


def RMSProp(
    step_size: StepSize, gamma: float = 0.9, eps: float = 1e-8
) -> optax.GradientTransformation:
    """RMSProp: ``v <- gamma * v + (1 - gamma) * g^2`` (``v_0 = 0``),
    ``x <- x - step_size(i) * g / sqrt(v + eps)``."""
    _check_unit("RMSProp", "gamma", gamma)
    return optax.chain(
        optax.scale_by_rms(decay=gamma, eps=eps, initial_scale=0.0, eps_in_sqrt=True),
        optax.scale_by_learning_rate(_check_step_size("RMSProp", step_size)),
    )


def RMSPropMomentum(
    step_size: StepSize, gamma: float = 0.9, eps: float = 1e-8, momentum: float = 0.9
) -> optax.GradientTransformation:
    """RMSProp with momentum: ``v`` as in :func:`RMSProp`,
    ``mom <- momentum * mom + step_size(i) * g / sqrt(v + eps)``, ``x <- x - mom``."""
    _check_unit("RMSPropMomentum", "gamma", gamma)
    _check_unit("RMSPropMomentum", "momentum", momentum)
    return optax.chain(
        optax.scale_by_rms(decay=gamma, eps=eps, initial_scale=0.0, eps_in_sqrt=True),
        # The step size enters before the momentum (so a schedule weighs each step's
        # contribution, as in NumPyro), hence not optax.rmsprop(momentum=...).
        optax.scale_by_learning_rate(_check_step_size("RMSPropMomentum", step_size)),
        optax.trace(decay=momentum, nesterov=False),
    )


def SM3(step_size: StepSize, momentum: float = 0.9) -> optax.GradientTransformation:
    """SM3 (memory-efficient Adagrad) with momentum, as NumPyro.

    Per parameter array, one accumulator per axis; ``G = min_axes(acc) + g^2``,
    ``m <- (1 - momentum) * g / sqrt(G) + momentum * m`` (``0`` where ``G = 0``),
    ``x <- x - step_size(i) * m``; each axis keeps the max of ``G`` over the other axes.
    """
    _check_unit("SM3", "momentum", momentum)
    step_size = _check_step_size("SM3", step_size)

    def labels(params):
        # optax's SM3 needs at least one axis; for a scalar SM3 is Adagrad with momentum.
        return jax.tree.map(lambda p: "scalar" if jnp.ndim(p) == 0 else "array", params)

    return optax.chain(
        optax.partition(
            {
                "scalar": _adagrad_momentum(momentum),
                "array": optax.scale_by_sm3(b1=momentum, b2=1.0, eps=0.0),
            },
            labels,
        ),
        optax.scale_by_learning_rate(step_size),
    )


def optax_to_numpyro(transformation: optax.GradientTransformation) -> optax.GradientTransformation:
    """NumPyro's adapter for optax optimizers; jppl takes optax directly, so it is the identity."""
    if not (hasattr(transformation, "init") and hasattr(transformation, "update")):
        raise TypeError(
            f"optax_to_numpyro: expected an optax.GradientTransformation, got {transformation!r}."
        )
    return transformation


class MinimizeState(NamedTuple):
    """The optimizer state of :class:`Minimize` (a pytree of scalars, so it checkpoints).

    Attributes:
        count: ``()`` int32, the number of minimizations run.
        success: ``()`` bool, whether the last one converged (``False`` before the first).
        status: ``()`` int32, its solver code (``jax.scipy.optimize.OptimizeResults.status``:
            0 converged, 1 maximum iterations, 3 line search (zoom) failed, 4 saddle point,
            5 maximum line search iterations; -1 before the first).
        nit: ``()`` int32, its number of iterations.
    """

    count: jax.Array
    success: jax.Array
    status: jax.Array
    nit: jax.Array


# The methods of jax.scipy.optimize.minimize, and the options each takes.
_MINIMIZE_OPTIONS = {
    "bfgs": ("maxiter", "norm", "gtol", "line_search_maxiter"),
    "l-bfgs-experimental-do-not-rely-on-this": (
        "maxiter",
        "norm",
        "maxcor",
        "ftol",
        "gtol",
        "maxfun",
        "maxgrad",
        "maxls",
    ),
}


class Minimize:
    """NumPyro's ``Minimize``: each SVI step runs a whole ``jax.scipy.optimize.minimize``.

    ``SVI(model, guide, Minimize(), loss)``: ``svi.update`` minimizes the loss as a function of
    all the unconstrained params (flattened with ``ravel_pytree`` into one ``(n,)`` vector), with
    the step's PRNG key held fixed, and returns the loss at the minimum. Use it with guides whose
    loss is deterministic (``AutoDelta``, ``AutoLaplaceApproximation``, a guide without latent
    sites): with sampled particles it minimizes one fixed Monte Carlo estimate per step.

    Args:
        method: ``"BFGS"`` (NumPyro's default and the method it supports; jax's experimental
            ``"l-bfgs-experimental-do-not-rely-on-this"`` is also accepted).
        **kwargs: passed to ``jax.scipy.optimize.minimize``: only ``options`` (a dict; for
            BFGS ``maxiter``, ``norm``, ``gtol``, ``line_search_maxiter``). ``tol`` is refused:
            jax accepts and ignores it (give ``options={"gtol": ...}``).
    """

    def __init__(self, method: str = "BFGS", **kwargs: Any) -> None:
        if not isinstance(method, str) or method.lower() not in _MINIMIZE_OPTIONS:
            raise ValueError(
                f"Minimize: method must be one of 'BFGS' or "
                f"'l-bfgs-experimental-do-not-rely-on-this' (those of "
                f"jax.scipy.optimize.minimize), got {method!r}."
            )
        if "tol" in kwargs:
            raise ValueError(
                "Minimize: jax.scipy.optimize.minimize ignores tol (the run would not change); "
                "give the gradient tolerance as options={'gtol': ...}."
            )
        unknown = sorted(set(kwargs) - {"options"})
        if unknown:
            raise TypeError(
                f"Minimize: unexpected keyword arguments {unknown}; jax.scipy.optimize.minimize "
                "takes options={...} (e.g. {'maxiter': 100, 'gtol': 1e-6})."
            )
        options = kwargs.get("options")
        options = {} if options is None else options
        if not isinstance(options, dict):
            raise TypeError(f"Minimize: options must be a dict, got {options!r}.")
        allowed = _MINIMIZE_OPTIONS[method.lower()]
        bad = sorted(set(options) - set(allowed))
        if bad:
            raise TypeError(
                f"Minimize: unknown options {bad} for method {method!r}; it takes {list(allowed)}."
            )
        self.method = method
        self.options = dict(options)

    def __repr__(self) -> str:
        return f"Minimize(method={self.method!r}, options={self.options!r})"

    def init(self, params: Any) -> MinimizeState:
        """The state before the first minimization (``params`` is not needed: SVI keeps it)."""
        del params
        return MinimizeState(
            count=jnp.zeros((), jnp.int32),
            success=jnp.zeros((), bool),
            status=jnp.full((), -1, jnp.int32),
            nit=jnp.zeros((), jnp.int32),
        )

    def update(self, updates: Any, state: Any, params: Any = None) -> Any:
        """Not available: :class:`Minimize` needs the loss function, not gradients."""
        raise TypeError(
            "Minimize is not a gradient transformation: it needs the loss itself. Use it as the "
            "optimizer of jppl.SVI (or call its minimize(loss_fn, params, state))."
        )

    def minimize(
        self, loss_fn: Callable[[Any], jax.Array], params: Any, state: MinimizeState
    ) -> tuple[Any, MinimizeState, jax.Array, Any]:
        """Minimize ``loss_fn`` from ``params``; pure (``jax.jit``-able).

        Args:
            loss_fn: ``params -> ()`` scalar loss (a pytree of arrays in, as ``params``).
            params: the starting point, a pytree of float arrays (flattened to ``(n,)``).
            state: the :class:`MinimizeState`.

        Returns:
            ``(new_params, new_state, loss, grads)``: the minimizer (same structure and dtypes
            as ``params``), the updated state, the loss there and its gradient there (a pytree
            like ``params``).
        """
        flat, unravel = ravel_pytree(params)

        def flat_loss(x):
            return loss_fn(unravel(x))

        result = minimize(flat_loss, flat, (), method=self.method, options=self.options)
        new_state = MinimizeState(
            count=state.count + 1,
            success=jnp.asarray(result.success, bool),
            status=jnp.asarray(result.status, jnp.int32),
            nit=jnp.asarray(result.nit, jnp.int32),
        )
        return unravel(result.x), new_state, result.fun, unravel(result.jac)
