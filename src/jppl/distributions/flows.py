"""Normalizing flows: autoregressive transforms with neural-network conditioners.

* :class:`InverseAutoregressiveTransform` (IAF, Kingma et al. 2016):
  ``y = mean(x) + exp(log_scale(x)) * x`` with ``(mean, log_scale)`` from an autoregressive
  network (output ``i`` depends only on inputs before ``i`` in the network's order).
* :class:`BlockNeuralAutoregressiveTransform` (BNAF, De Cao et al. 2019): ``y = f(x)`` for a
  block neural autoregressive network ``f`` that also returns its log-Jacobian diagonal.

The transforms take any callable conditioner, as NumPyro's do. The networks here are Flax Linen
modules: :class:`AutoregressiveNN` (MADE: masked dense layers, :class:`MaskedDense`) and
:class:`BlockNeuralAutoregressiveNN` (:class:`BlockMaskedDense` layers with the monotone
activations :class:`Tanh` / :class:`LeakyTanh`). Bind a module to its parameters with
``functools.partial(module.apply, {"params": params})``.

Flax is the ``nn`` extra: this module imports it, so :mod:`jppl.distributions` does not import
this module; import ``jppl.distributions.flows`` explicitly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen
from jax import lax

from jppl.distributions import constraints
from jppl.distributions.transforms import Transform

__all__ = [
    "AutoregressiveNN",
    "BlockMaskedDense",
    "BlockNeuralAutoregressiveNN",
    "BlockNeuralAutoregressiveTransform",
    "InverseAutoregressiveTransform",
    "LeakyTanh",
    "MaskedDense",
    "Tanh",
    "create_mask",
]


# ---------------------------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------------------------


def _clip_keep_gradient(x: jax.Array, low: float, high: float) -> jax.Array:
    """``clip(x, low, high)`` in value with the identity's gradient (keeps learning signal)."""
    return x + lax.stop_gradient(jnp.clip(x, low, high) - x)


class InverseAutoregressiveTransform(Transform):
    """Inverse autoregressive flow: ``y = mean(x) + exp(log_scale(x)) * x``.

    Args:
        autoregressive_nn: callable ``x (..., D) -> (mean (..., D), log_scale (..., D))``,
            autoregressive (``mean[i]``, ``log_scale[i]`` depend only on inputs that come
            before ``i`` in its order), e.g. a bound :class:`AutoregressiveNN`.
        log_scale_min_clip, log_scale_max_clip: ``log_scale`` is clipped to this range in the
            forward value (its gradient passes unclipped).

    ``log_abs_det_jacobian`` is ``sum(log_scale)`` over the last axis (shape ``x.shape[:-1]``).
    The inverse solves ``x = (y - mean(x)) / scale(x)`` by ``D`` fixed-point sweeps, which is
    exact for an autoregressive network (sweep ``k`` fixes the ``k``-th input in its order);
    it costs ``D`` network calls.
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector

    def __init__(
        self,
        autoregressive_nn: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
        log_scale_min_clip: float = -5.0,
        log_scale_max_clip: float = 3.0,
    ):
        if not callable(autoregressive_nn):
            raise TypeError(
                "InverseAutoregressiveTransform: autoregressive_nn must be a callable "
                f"x -> (mean, log_scale), got {autoregressive_nn!r}"
            )
        if not float(log_scale_min_clip) < float(log_scale_max_clip):
            raise ValueError(
                "InverseAutoregressiveTransform: log_scale_min_clip must be < log_scale_max_clip"
                f", got {log_scale_min_clip} and {log_scale_max_clip}"
            )
        self.arn = autoregressive_nn
        self.log_scale_min_clip = float(log_scale_min_clip)
        self.log_scale_max_clip = float(log_scale_max_clip)

    def _mean_log_scale(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, log_scale = self.arn(x)
        return mean, _clip_keep_gradient(
            log_scale, self.log_scale_min_clip, self.log_scale_max_clip
        )

    def __call__(self, x):
        return self.call_with_intermediates(x)[0]

    def call_with_intermediates(self, x):
        """``(y, log_scale)``; pass ``log_scale`` to ``log_abs_det_jacobian``."""
        mean, log_scale = self._mean_log_scale(x)
        return jnp.exp(log_scale) * x + mean, log_scale

    def _inverse(self, y):
        y = jnp.asarray(y)

        def sweep(_, x):
            mean, log_scale = self._mean_log_scale(x)
            return (y - mean) * jnp.exp(-log_scale)

        return lax.fori_loop(0, jnp.shape(y)[-1], sweep, jnp.zeros_like(y))

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        log_scale = self._mean_log_scale(x)[1] if intermediates is None else intermediates
        return jnp.sum(log_scale, axis=-1)

    def eq(self, other: object, static: bool = False):
        if self is other:
            return True
        return (
            type(other) is type(self)
            and self.arn is other.arn
            and self.log_scale_min_clip == other.log_scale_min_clip
            and self.log_scale_max_clip == other.log_scale_max_clip
        )

    def __repr__(self) -> str:
        return (
            f"InverseAutoregressiveTransform(log_scale_min_clip={self.log_scale_min_clip}, "
            f"log_scale_max_clip={self.log_scale_max_clip})"
        )


class BlockNeuralAutoregressiveTransform(Transform):
    """Block neural autoregressive flow: ``y = f(x)``.

    Args:
        bn_arn: callable ``x (..., D) -> (y (..., D), log_diag (..., D))`` where ``log_diag``
            is the log of the (positive) Jacobian diagonal of an autoregressive, monotone
            ``f``, e.g. a bound :class:`BlockNeuralAutoregressiveNN`.

    ``log_abs_det_jacobian`` is ``sum(log_diag)`` over the last axis. There is no inverse (as
    in NumPyro): use the forward direction only (sampling, and densities of its own samples
    through ``sample_with_intermediates``).
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector

    def __init__(self, bn_arn: Callable[[jax.Array], tuple[jax.Array, jax.Array]]):
        if not callable(bn_arn):
            raise TypeError(
                "BlockNeuralAutoregressiveTransform: bn_arn must be a callable "
                f"x -> (y, log_diag), got {bn_arn!r}"
            )
        self.bn_arn = bn_arn

    def __call__(self, x):
        return self.call_with_intermediates(x)[0]

    def call_with_intermediates(self, x):
        """``(y, log_diag)``; pass ``log_diag`` to ``log_abs_det_jacobian``."""
        return self.bn_arn(x)

    def _inverse(self, y):
        raise NotImplementedError(
            "BlockNeuralAutoregressiveTransform has no inverse (the network has no closed-form "
            "inverse). Densities are available only for its own samples, through the "
            "intermediates of sample_with_intermediates."
        )

    def log_abs_det_jacobian(self, x, y, intermediates=None):
        log_diag = self.bn_arn(x)[1] if intermediates is None else intermediates
        return jnp.sum(log_diag, axis=-1)

    def eq(self, other: object, static: bool = False):
        return self is other or (type(other) is type(self) and self.bn_arn is other.bn_arn)

    def __repr__(self) -> str:
        return "BlockNeuralAutoregressiveTransform()"


# ---------------------------------------------------------------------------------------------
# MADE: masked autoregressive network
# ---------------------------------------------------------------------------------------------


def create_mask(
    input_dim: int,
    hidden_dims: Sequence[int],
    permutation: Sequence[int],
    output_dim_multiplier: int,
) -> tuple[list[np.ndarray], np.ndarray]:
    """MADE connectivity masks (Germain et al. 2015), as ``(in, out)`` boolean arrays.

    Input ``j`` gets degree ``order[j] + 1`` where ``permutation[k]`` is the input at position
    ``k`` of the autoregressive order; hidden units get degrees spread evenly over
    ``1..input_dim-1``; a unit connects to units of lower-or-equal degree, and an output of
    degree ``d`` only to units of degree ``< d``.

    Returns:
        ``(masks, mask_skip)``: one mask per dense layer (``(input_dim, hidden_dims[0])``, ...,
        ``(hidden_dims[-1], output_dim_multiplier * input_dim)``), and the input-to-output
        mask ``(input_dim, output_dim_multiplier * input_dim)``.
    """
    order = np.empty(input_dim, dtype=np.int64)
    order[np.asarray(permutation, dtype=np.int64)] = np.arange(input_dim)
    input_deg = order + 1
    hidden_deg = [np.round(np.linspace(1, input_dim - 1, num=h)) for h in hidden_dims]
    output_deg = np.tile(order + 1, output_dim_multiplier)
    masks = [hidden_deg[0][None, :] >= input_deg[:, None]]
    for prev, cur in zip(hidden_deg[:-1], hidden_deg[1:], strict=True):
        masks.append(cur[None, :] >= prev[:, None])
    masks.append(output_deg[None, :] > hidden_deg[-1][:, None])
    mask_skip = output_deg[None, :] > input_deg[:, None]
    return masks, mask_skip


class MaskedDense(linen.Module):
    """Dense layer ``x @ (W * mask) + b`` with a fixed ``(in, out)`` connectivity mask.

    Attributes:
        mask: tuple of tuples of bools, shape ``(in, out)`` (hashable, as Linen attributes must
            be; see :func:`create_mask`).
        use_bias: add a bias ``b`` (``(out,)``).
    """

    mask: tuple[tuple[bool, ...], ...]
    use_bias: bool = True

    @linen.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        mask = jnp.asarray(self.mask, dtype=jnp.result_type(x, float))
        kernel = self.param("kernel", jax.nn.initializers.glorot_normal(), mask.shape)
        out = jnp.dot(x, kernel * mask)
        if self.use_bias:
            out = out + self.param("bias", jax.nn.initializers.normal(), mask.shape[-1:])
        return out


def _as_mask(mask: np.ndarray) -> tuple[tuple[bool, ...], ...]:
    return tuple(tuple(bool(v) for v in row) for row in np.asarray(mask))


class AutoregressiveNN(linen.Module):
    """MADE-style autoregressive network: ``x (..., D) -> parameters (..., D)``.

    Output ``i`` depends only on inputs that come before input ``i`` in the order given by
    ``permutation`` (the ``k``-th input of the order is ``x[permutation[k]]``).

    Attributes:
        input_dim: ``D``.
        hidden_dims: hidden layer widths, each ``>= input_dim``.
        param_dims: sizes of the returned parameters: the output is split into one array per
            entry, ``(..., D)`` when all entries are 1, else ``(..., p, D)``; a single entry
            returns the array itself. Default ``(1, 1)`` (mean and log scale, as IAF needs).
        permutation: the autoregressive order (default ``0..D-1``).
        skip_connections: add masked direct connections from the inputs to the outputs.
        nonlinearity: elementwise activation between layers (default ReLU).
    """

    input_dim: int
    hidden_dims: Sequence[int]
    param_dims: Sequence[int] = (1, 1)
    permutation: Sequence[int] | None = None
    skip_connections: bool = False
    nonlinearity: Callable[[jax.Array], jax.Array] = jax.nn.relu

    def __post_init__(self):
        if not isinstance(self.input_dim, int | np.integer) or self.input_dim < 1:
            raise ValueError(
                f"AutoregressiveNN: input_dim must be an int >= 1, got {self.input_dim}"
            )
        if len(self.hidden_dims) == 0:
            raise ValueError("AutoregressiveNN: hidden_dims must hold at least one width.")
        for h in self.hidden_dims:
            if int(h) < self.input_dim:
                raise ValueError(
                    f"AutoregressiveNN: each of hidden_dims must be >= input_dim={self.input_dim}"
                    f" (else some outputs cannot be connected), got {list(self.hidden_dims)}"
                )
        if len(self.param_dims) == 0 or any(int(p) < 1 for p in self.param_dims):
            raise ValueError(
                f"AutoregressiveNN: param_dims must be positive ints, got {self.param_dims}"
            )
        if self.permutation is not None and sorted(int(i) for i in self.permutation) != list(
            range(self.input_dim)
        ):
            raise ValueError(
                f"AutoregressiveNN: permutation must be a permutation of 0..{self.input_dim - 1}"
                f", got {self.permutation}"
            )
        if not callable(self.nonlinearity):
            raise TypeError(
                "AutoregressiveNN: nonlinearity must be an elementwise callable (e.g. "
                f"jax.nn.relu), got {self.nonlinearity!r}"
            )
        super().__post_init__()

    @linen.compact
    def __call__(self, x: jax.Array) -> Any:
        """``x``: ``(..., input_dim)``; see the class docstring for the outputs."""
        if jnp.shape(x)[-1] != self.input_dim:
            raise ValueError(
                f"AutoregressiveNN: expected inputs with last dim {self.input_dim}, got shape "
                f"{jnp.shape(x)}"
            )
        d = self.input_dim
        mult = sum(int(p) for p in self.param_dims)
        perm = np.arange(d) if self.permutation is None else np.asarray(self.permutation)
        masks, mask_skip = create_mask(d, [int(h) for h in self.hidden_dims], perm, mult)
        h = x
        for i, mask in enumerate(masks):
            h = MaskedDense(_as_mask(mask), name=f"MaskedDense_{i}")(h)
            if i < len(masks) - 1:
                h = self.nonlinearity(h)
        if self.skip_connections:
            h = h + MaskedDense(_as_mask(mask_skip), use_bias=False, name="skip")(x)
        # (..., mult * D) -> (mult, ..., D): one row per parameter, output i in column i
        out = jnp.moveaxis(jnp.reshape(h, jnp.shape(x)[:-1] + (mult, d)), -2, 0)
        if all(int(p) == 1 for p in self.param_dims):
            parts = tuple(out[i] for i in range(mult))
        else:
            ends = np.cumsum([int(p) for p in self.param_dims])
            starts = ends - np.asarray([int(p) for p in self.param_dims])
            parts = tuple(jnp.moveaxis(out[s:e], 0, -2) for s, e in zip(starts, ends, strict=True))
        return parts[0] if len(parts) == 1 else parts


# ---------------------------------------------------------------------------------------------
# BNAF: block neural autoregressive network
# ---------------------------------------------------------------------------------------------


def _log_matmul_exp(a: jax.Array, b: jax.Array) -> jax.Array:
    """``log(exp(a) @ exp(b))`` over the last two dims, stably."""
    return jax.nn.logsumexp(a[..., :, :, None] + b[..., None, :, :], axis=-2)


class BlockMaskedDense(linen.Module):
    """Block lower-triangular dense layer with positive diagonal blocks and weight norm.

    Maps ``(x (..., B * in_factor), logdet)`` to ``(y (..., B * out_factor), logdet')``: output
    block ``j`` depends on input blocks ``<= j`` (the diagonal blocks through ``exp(W)`` so
    positive, the others through ``W``); each output column is normalized and rescaled by
    ``exp(ws)`` (Salimans and Kingma 2016). ``logdet`` holds the log of the Jacobian's
    diagonal blocks, ``(..., B, 1, in_factor)`` after the first layer (``None`` on input to the
    first layer), and is composed in log space.
    """

    num_blocks: int
    in_factor: int
    out_factor: int
    use_bias: bool = True

    def _masks(self) -> tuple[np.ndarray, np.ndarray]:
        b, i, o = self.num_blocks, self.in_factor, self.out_factor
        block = np.ones((i, o))
        mask_d = np.kron(np.eye(b), block)
        mask_o = np.kron(np.triu(np.ones((b, b)), k=1), block)
        return mask_d, mask_o

    def _init_kernel(self, key: jax.Array, shape: tuple[int, int], dtype=None) -> jax.Array:
        # Glorot-uniform over the allowed rows of each column block (input blocks 0..j for
        # output block j: fan_in (j + 1) * in_factor), zero elsewhere; one draw for all blocks.
        b, i, o = self.num_blocks, self.in_factor, self.out_factor
        dtype = jnp.result_type(float) if dtype is None else dtype
        fan_in = np.repeat((np.arange(b) + 1) * i, o)
        limit = np.sqrt(6.0 / (fan_in + o))
        allowed = np.kron(np.triu(np.ones((b, b))), np.ones((i, o)))
        u = jax.random.uniform(key, shape, dtype, minval=-1.0, maxval=1.0)
        return u * jnp.asarray(limit * allowed, dtype)

    @linen.compact
    def __call__(self, inputs: tuple[jax.Array, jax.Array | None]):
        x, logdet = inputs
        b, i, o = self.num_blocks, self.in_factor, self.out_factor
        in_dim, out_dim = b * i, b * o
        mask_d, mask_o = self._masks()
        kernel = self.param("kernel", self._init_kernel, (in_dim, out_dim))
        ws = self.param(
            "weight_scale",
            lambda k, s: jnp.log(jax.random.uniform(k, s, minval=0.0, maxval=1.0)),
            (out_dim,),
        )
        w = jnp.exp(kernel) * mask_d + kernel * mask_o
        w_norm = jnp.linalg.norm(w, axis=-2, keepdims=True)
        w = jnp.exp(ws) * w / w_norm
        out = jnp.dot(x, w)
        if self.use_bias:
            bias = self.param(
                "bias",
                lambda k, s: (jax.random.uniform(k, s) - 0.5) * (2.0 / np.sqrt(out_dim)),
                (out_dim,),
            )
            out = out + bias
        # log of the diagonal blocks of the weight: log(exp(ws) exp(W) / |w|)
        dense_logdet = ws + kernel - jnp.log(w_norm)
        rows, cols = np.nonzero(mask_d)
        dense_logdet = jnp.reshape(dense_logdet[rows, cols], (b, i, o))
        if logdet is None:
            logdet = jnp.broadcast_to(dense_logdet, jnp.shape(x)[:-1] + dense_logdet.shape)
        else:
            logdet = _log_matmul_exp(logdet, dense_logdet)
        return out, logdet


def _log_tanh_grad(x: jax.Array) -> jax.Array:
    """``log(1 - tanh(x)^2) = -2 (x + softplus(-2x) - log 2)``, stable for large ``|x|``."""
    return -2.0 * (x + jax.nn.softplus(-2.0 * x) - jnp.log(2.0))


def _add_to_blocks(logdet: jax.Array, log_grad: jax.Array) -> jax.Array:
    # log_grad (..., B * out) is the log-derivative of each output unit: add it to the
    # matching column of the block log-Jacobian (..., B, in, out).
    return logdet + jnp.reshape(log_grad, logdet.shape[:-2] + (1, logdet.shape[-1]))


@dataclasses.dataclass(frozen=True)
class Tanh:
    """``tanh`` activation: ``(x, logdet) -> (tanh(x), logdet + log tanh'(x))``."""

    def __call__(self, inputs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        x, logdet = inputs
        return jnp.tanh(x), _add_to_blocks(logdet, _log_tanh_grad(x))


@dataclasses.dataclass(frozen=True)
class LeakyTanh:
    """``tanh(x) + min_grad * x``: maps onto all of R (unlike ``tanh``); adds its
    log-derivative ``log(1 - tanh(x)^2 + min_grad)`` to the running block log-Jacobian."""

    min_grad: float = 0.01

    def __post_init__(self):
        if not self.min_grad > 0:
            raise ValueError(f"LeakyTanh: min_grad must be > 0, got {self.min_grad}")

    def __call__(self, inputs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        x, logdet = inputs
        log_grad = jnp.logaddexp(_log_tanh_grad(x), jnp.log(self.min_grad))
        return jnp.tanh(x) + self.min_grad * x, _add_to_blocks(logdet, log_grad)


class BlockNeuralAutoregressiveNN(linen.Module):
    """Block neural autoregressive network: ``x (..., D) -> (y (..., D), log_diag (..., D))``.

    ``y_i`` is a strictly increasing function of ``x_i`` given ``x_{<i}`` and does not depend
    on ``x_{>i}``; ``log_diag[i] = log dy_i/dx_i``.

    Attributes:
        input_dim: ``D``.
        hidden_factors: hidden layer ``k`` has ``hidden_factors[k]`` units per input dimension.
        residual: ``None``, ``"normal"`` (``y = f(x) + x``) or ``"gated"``
            (``y = g f(x) + (1 - g) x`` with a learned ``g = sigmoid(gate)`` in (0, 1)).
        activation: a hashable callable mapping ``(x, logdet)`` to ``(act(x), logdet')`` for
            a strictly increasing ``act`` (:class:`Tanh`, :class:`LeakyTanh`); default
            ``LeakyTanh()`` (so that ``y`` ranges over all of R).
    """

    input_dim: int
    hidden_factors: Sequence[int] = (8, 8)
    residual: str | None = None
    activation: Callable | None = None

    def __post_init__(self):
        if not isinstance(self.input_dim, int | np.integer) or self.input_dim < 1:
            raise ValueError(
                f"BlockNeuralAutoregressiveNN: input_dim must be an int >= 1, got {self.input_dim}"
            )
        if any(not isinstance(h, int | np.integer) or h < 1 for h in self.hidden_factors):
            raise ValueError(
                "BlockNeuralAutoregressiveNN: hidden_factors must be positive ints, got "
                f"{list(self.hidden_factors)}"
            )
        if self.residual not in (None, "normal", "gated"):
            raise ValueError(
                "BlockNeuralAutoregressiveNN: residual must be None, 'normal' or 'gated', got "
                f"{self.residual!r}"
            )
        if self.activation is not None and not callable(self.activation):
            raise TypeError(
                "BlockNeuralAutoregressiveNN: activation must be a callable (x, logdet) -> "
                f"(act(x), logdet') such as LeakyTanh(), got {self.activation!r}"
            )
        super().__post_init__()

    @linen.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x``: ``(..., input_dim)``; returns ``(y, log_diag)``, both of ``x``'s shape."""
        if jnp.shape(x)[-1] != self.input_dim:
            raise ValueError(
                f"BlockNeuralAutoregressiveNN: expected inputs with last dim {self.input_dim}, "
                f"got shape {jnp.shape(x)}"
            )
        h, logdet = x, None
        in_factor = 1
        for k, factor in enumerate(self.hidden_factors):
            h, logdet = BlockMaskedDense(
                self.input_dim, in_factor, int(factor), name=f"BlockMaskedDense_{k}"
            )((h, logdet))
            act = LeakyTanh() if self.activation is None else self.activation
            h, logdet = act((h, logdet))
            in_factor = int(factor)
        h, logdet = BlockMaskedDense(
            self.input_dim, in_factor, 1, name=f"BlockMaskedDense_{len(self.hidden_factors)}"
        )((h, logdet))
        logdet = jnp.reshape(logdet, jnp.shape(x))
        if self.residual == "normal":
            # y = f(x) + x: dy_i/dx_i = f'_i + 1
            return h + x, jax.nn.softplus(logdet)
        if self.residual == "gated":
            gate = self.param("gate", jax.nn.initializers.normal(1.0), ())
            g = jax.nn.sigmoid(gate)
            # log(g f' + 1 - g) = softplus(logdet + gate) - softplus(gate)
            return g * h + (1 - g) * x, jax.nn.softplus(logdet + gate) - jax.nn.softplus(gate)
        return h, logdet
