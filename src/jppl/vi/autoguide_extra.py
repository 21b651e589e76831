"""More automatic guides: batched multivariate Normals and annealed-importance-sampling guides.

* :class:`AutoBatchedMultivariateNormal` / :class:`AutoBatchedLowRankMultivariateNormal`: the
  latent sites share ``batch_ndim`` leading (plate) dims of shape ``batch_shape``; each batch
  member gets its own (low rank) multivariate Normal over its unconstrained values, and the
  members are independent: ``log q = sum over members of log N(z_b; loc_b, cov_b)``.
* :class:`AutoDAIS`: Differentiable Annealed Importance Sampling (Geffner & Domke, *MCMC
  Variational Inference via Uncorrected Hamiltonian Annealing*; Zhang et al.). A base Normal
  draw ``z_0`` is moved by ``K`` uncorrected underdamped Langevin (leapfrog + partial momentum
  refresh) steps whose target anneals from the base density to the model's posterior; the
  momentum density ratios enter the guide's density as a factor, so the ELBO stays a valid
  lower bound on ``log p(data)`` whatever the (learnable) step sizes.
* :class:`AutoSurrogateLikelihoodDAIS`: DAIS whose dynamics follow a cheap ``surrogate_model``
  (Jankowiak & Phan), so the model itself may subsample its data.
* :class:`AutoSemiDAIS`: a guide ``global_guide`` for the global latents, and DAIS per member
  of the (subsampled) plate for the local latents, starting from a per-member Normal or from
  ``local_guide``.

Parameter and site names and constructor arguments follow NumPyro (``batch_ndim``, ``K``,
``base_dist``, ``eta_init``, ``eta_max``, ``gamma_init``, ...). Differences: ``init_loc_fn``
defaults to ``init_to_median`` as for jppl's other autoguides; a batched guide's auxiliary site
``_{prefix}_latent`` keeps its ``batch_shape + (E,)`` shape, and a batch member holds exactly
its own elements of every site (also with several latent sites); the DAIS guides have no
``median``/``quantiles``/``get_posterior`` (their distribution is implicit: use
``sample_posterior``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri
from jax.scipy.stats import norm

from jppl.distributions import constraints
from jppl.distributions.continuous import Normal
from jppl.distributions.distribution import Delta, Distribution
from jppl.distributions.multivariate import MultivariateNormal
from jppl.distributions.transforms import Transform, biject_to
from jppl.distributions.util import sum_rightmost
from jppl.handlers import block, scale, seed, substitute, trace
from jppl.model.density import potential_energy
from jppl.model.initialization import init_to_median
from jppl.primitives import factor, get_mask, param, plate, prng_key, sample
from jppl.vi.autoguide import (
    AutoContinuous,
    AutoGuide,
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    _sample_callable,
)

__all__ = [
    "AutoBatchedLowRankMultivariateNormal",
    "AutoBatchedMultivariateNormal",
    "AutoDAIS",
    "AutoSemiDAIS",
    "AutoSurrogateLikelihoodDAIS",
]

Params = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Batched multivariate Normals
# ---------------------------------------------------------------------------------------------


class _AutoBatchedContinuous(AutoContinuous):
    """Base of guides whose latent vector is ``z`` of shape ``batch_shape + (event_size,)``.

    ``batch_shape`` is the leading ``batch_ndim`` dims shared by every latent site; member ``b``
    of the batch holds, concatenated, the flattened unconstrained values ``site[b]`` of all
    sites (in trace order). ``latent_dim = prod(batch_shape) * event_size``.
    """

    def __init__(self, model: Callable, *, batch_ndim: int, **kwargs):
        if isinstance(batch_ndim, bool) or not isinstance(batch_ndim, int) or batch_ndim < 0:
            raise ValueError(
                f"{type(self).__name__}: batch_ndim must be an int >= 0, got {batch_ndim!r}"
            )
        self.batch_ndim = batch_ndim
        self._batch_shape: tuple[int, ...] = ()
        self._event_size = 0
        super().__init__(model, **kwargs)

    def _setup_prototype(self, *args, **kwargs) -> None:
        super()._setup_prototype(*args, **kwargs)
        owner, n = type(self).__name__, self.batch_ndim
        if not self._sites:
            raise ValueError(f"{owner}: the model has no continuous latent sites to guide.")
        batch_shape: tuple[int, ...] | None = None
        for name, site in self._sites.items():
            n_batch = len(site.shape) - site.event_dim
            if n_batch < n:
                raise ValueError(
                    f"{owner}: batch_ndim={n}, but latent site '{name}' has shape {site.shape} "
                    f"with event_dim {site.event_dim}, so only {n_batch} batch dims; every "
                    f"latent site needs at least batch_ndim leading batch (plate) dims."
                )
            shape = tuple(site.shape[:n])
            if batch_shape is None:
                batch_shape = shape
            elif shape != batch_shape:
                raise ValueError(
                    f"{owner}: latent site '{name}' has leading batch shape {shape}, but an "
                    f"earlier site has {batch_shape}; with batch_ndim={n} all latent sites must "
                    "share the leading batch shape."
                )
        assert batch_shape is not None
        self._batch_shape = batch_shape
        # Per-member layout: site -> (start, stop) within the member's event vector.
        self._member_layout: dict[str, tuple[int, int]] = {}
        offset = 0
        for name, site in self._sites.items():
            size = math.prod(site.unconstrained_shape[n:])
            self._member_layout[name] = (offset, offset + size)
            offset += size
        self._event_size = offset
        self._init_latent = jnp.concatenate(
            [jnp.reshape(s.init_unconstrained, batch_shape + (-1,)) for s in self._sites.values()],
            axis=-1,
        )

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """The leading batch shape shared by the latent sites (after the first call)."""
        self._require_setup("batch_shape")
        return self._batch_shape

    @property
    def event_size(self) -> int:
        """Length of one member's unconstrained vector (after the first call)."""
        self._require_setup("event_size")
        return self._event_size

    def _unpack_latent(self, latent: jax.Array) -> dict[str, jax.Array]:
        """``(..., *batch_shape, event_size)`` -> ``{site: (...) + unconstrained site shape}``."""
        lead = jnp.shape(latent)[: jnp.ndim(latent) - self.batch_ndim - 1]
        return {
            name: jnp.reshape(latent[..., a:b], lead + self._sites[name].unconstrained_shape)
            for name, (a, b) in self._member_layout.items()
        }

    def _sample_latent(self) -> jax.Array:
        posterior = self._get_posterior().to_event(self.batch_ndim)
        return sample(f"_{self.prefix}_latent", posterior, infer={"is_auxiliary": True})

    def get_base_dist(self) -> Distribution:
        """Standard Normal over ``z``: event shape ``batch_shape + (event_size,)``."""
        self._require_setup("get_base_dist")
        return Normal(jnp.zeros(self._batch_shape + (self._event_size,)), 1.0).to_event(
            self.batch_ndim + 1
        )

    def quantiles(self, params: Params, quantiles) -> dict[str, jax.Array]:
        """Marginal quantiles of each coordinate, mapped into the supports.

        Returns ``{site name: array of shape q.shape + site shape}``.
        """
        self._require_setup("quantiles")
        q = jnp.asarray(quantiles)
        posterior = self.get_posterior(params)
        loc, sd = posterior.mean, jnp.sqrt(posterior.variance)
        z = loc + sd * jnp.reshape(ndtri(q), q.shape + (1,) * (self.batch_ndim + 1))
        return self._unpack_and_constrain(z)


class AutoBatchedMultivariateNormal(_AutoBatchedContinuous, AutoMultivariateNormal):
    """Independent full-covariance Normals, one per member of the leading batch dims.

    For latent sites that all start with ``batch_ndim`` batch (plate) dims of shape
    ``batch_shape``, member ``b`` gets ``MultivariateNormal(loc[b], scale_tril[b])`` over its
    unconstrained values (all sites' ``site[b]`` flattened and concatenated, length ``E``).

    Parameters ``{prefix}_loc`` ``batch_shape + (E,)`` and ``{prefix}_scale_tril``
    ``batch_shape + (E, E)`` (``scaled_unit_lower_cholesky``, initialized to
    ``init_scale * I``). The auxiliary site ``_{prefix}_latent`` has shape
    ``batch_shape + (E,)``. The posterior and transform are
    :class:`~jppl.vi.autoguide.AutoMultivariateNormal`'s, with the batch shape.

    Args:
        model: the model.
        prefix: parameter name prefix.
        init_loc_fn: initialization strategy for the locations.
        init_scale: initial scale (> 0).
        batch_ndim: number of leading batch dims shared by the latent sites (default 1).
    """

    def __init__(
        self,
        model: Callable,
        *,
        prefix: str = "auto",
        init_loc_fn: Callable = init_to_median,
        init_scale: float = 0.1,
        batch_ndim: int = 1,
    ):
        super().__init__(
            model,
            batch_ndim=batch_ndim,
            prefix=prefix,
            init_loc_fn=init_loc_fn,
            init_scale=init_scale,
        )


class AutoBatchedLowRankMultivariateNormal(_AutoBatchedContinuous, AutoLowRankMultivariateNormal):
    """Independent low-rank-plus-diagonal Normals, one per member of the leading batch dims.

    As :class:`AutoBatchedMultivariateNormal`, with member ``b`` distributed as
    ``LowRankMultivariateNormal(loc[b], cov_factor[b] * scale[b][:, None], scale[b]**2)``.
    Parameters ``{prefix}_loc`` ``batch_shape + (E,)``, ``{prefix}_cov_factor``
    ``batch_shape + (E, rank)`` (initialized to zero) and ``{prefix}_scale``
    ``batch_shape + (E,)`` (positive, initialized to ``init_scale``). ``rank`` defaults to
    ``round(sqrt(E))``. The posterior and transform are
    :class:`~jppl.vi.autoguide.AutoLowRankMultivariateNormal`'s, with the batch shape.
    """

    def __init__(
        self,
        model: Callable,
        *,
        prefix: str = "auto",
        init_loc_fn: Callable = init_to_median,
        init_scale: float = 0.1,
        rank: int | None = None,
        batch_ndim: int = 1,
    ):
        super().__init__(
            model,
            batch_ndim=batch_ndim,
            prefix=prefix,
            init_loc_fn=init_loc_fn,
            init_scale=init_scale,
            rank=rank,
        )


# ---------------------------------------------------------------------------------------------
# DAIS dynamics (plain jax: part of the guide's differentiable sampler)
# ---------------------------------------------------------------------------------------------


def _check_dais_args(
    owner: str, K: int, eta_init: float, eta_max: float, gamma_init: float, init_scale: float
) -> None:
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(
            f"{owner}: K (the number of annealing steps) must be an int >= 1, got {K!r}"
        )
    if not eta_max > 0:
        raise ValueError(f"{owner}: eta_max must be > 0, got {eta_max}")
    if not 0 < eta_init < eta_max:
        raise ValueError(
            f"{owner}: eta_init must satisfy 0 < eta_init < eta_max={eta_max}, got {eta_init}"
        )
    if not 0 < gamma_init < 1:
        raise ValueError(
            f"{owner}: gamma_init must be in the open interval (0, 1), got {gamma_init}"
        )
    if not init_scale > 0:
        raise ValueError(f"{owner}: init_scale must be > 0, got {init_scale}")


def _annealing_schedule(increments: jax.Array) -> jax.Array:
    """Positive increments ``(..., K)`` -> ``beta_1 < ... < beta_K = 1`` along the last axis."""
    betas = jnp.cumsum(increments, axis=-1)
    return betas / betas[..., -1:]


def _dais_chain(
    z0: jax.Array,
    noise: jax.Array,
    betas: jax.Array,
    eta0: jax.Array,
    eta_coeff: jax.Array,
    eta_max: float,
    gamma: jax.Array,
    mass: jax.Array,
    base_log_prob: Callable[[jax.Array], jax.Array],
    target_log_prob: Callable[[jax.Array], jax.Array],
    grad: Callable = jax.grad,
) -> tuple[jax.Array, jax.Array]:
    """Run ``K`` uncorrected annealed underdamped Langevin steps from ``z0``.

    Step ``k`` targets ``base^(1 - beta_k) * target^beta_k``: a leapfrog step (half drift
    ``z += eta/2 * v / mass``, kick ``v += eta * grad log density``, half drift) with step size
    ``eta = clip(eta0 + eta_coeff * beta_k, 0, eta_max)``, then a partial momentum refresh
    ``v = gamma * v + sqrt(1 - gamma^2) * noise_k``. Momenta are ``Normal(0, mass)``; ``v_0``
    is ``noise_{K-1}`` (the last refresh never affects ``z_K``). The leapfrog map is
    volume-preserving and reversible, so the importance weight is
    ``p(z_K) / q_0(z_0) * prod_k N(v_hat_k) / N(v_{k-1})``; this returns the guide-side term
    ``log_factor = sum_k log N(v_{k-1}) - log N(v_hat_k)``.

    Shapes (``...``: independent chains, e.g. plate members; ``D``: latent size):
        z0 ``(..., D)``; noise ``(K, ..., D)`` (already ``Normal(0, mass)``); betas
        ``(K, ...)``; eta0, eta_coeff, gamma ``(...)``; mass ``(..., D)``. The log densities
        map ``(..., D)`` to a scalar that is a sum over the independent chains.

    Returns:
        ``(z_K (..., D), log_factor (...))``.
    """
    base_grad, target_grad = grad(base_log_prob), grad(target_log_prob)
    half_inv_mass = 0.5 / mass
    g = gamma[..., None]
    refresh = jnp.sqrt(1.0 - g * g)

    def momentum_log_prob(v):
        return jnp.sum(norm.logpdf(v, 0.0, mass), axis=-1)

    def step(carry, inputs):
        z, v, log_factor = carry
        e, beta = inputs
        eta = jnp.clip(eta0 + eta_coeff * beta, 0.0, eta_max)[..., None]
        b = beta[..., None]
        z_half = z + eta * half_inv_mass * v
        v_hat = v + eta * ((1.0 - b) * base_grad(z_half) + b * target_grad(z_half))
        z_new = z_half + eta * half_inv_mass * v_hat
        v_new = g * v_hat + refresh * e
        log_factor = log_factor + momentum_log_prob(v) - momentum_log_prob(v_hat)
        return (z_new, v_new, log_factor), None

    log_factor0 = jnp.zeros(jnp.shape(z0)[:-1], dtype=jnp.result_type(z0))
    (z, _, log_factor), _ = jax.lax.scan(step, (z0, noise[-1], log_factor0), (noise, betas))
    return z, log_factor


def _register_params(prototype: dict) -> dict[str, jax.Array]:
    """Declare, in the current (guide) context, the ``param`` sites of a prototype trace.

    Returns ``{name: current constrained value}`` (SVI substitutes the learned values).
    """
    out = {}
    for name, site in prototype.items():
        if site["type"] == "param":
            out[name] = param(name, site["args"][0], **site["kwargs"])
    return out


def _trace_prototype(fn: Callable, args: tuple, kwargs: dict, init_loc_fn: Callable | None):
    """A blocked, seeded trace of ``fn`` (latents at ``init_loc_fn`` when given)."""
    key = prng_key()
    if key is None:
        key = jax.random.key(0)
    run = seed(fn, rng_seed=key)
    if init_loc_fn is not None:
        run = substitute(run, substitute_fn=init_loc_fn)
    with block():
        return trace(run).get_trace(*args, **kwargs)


def _blocked_log_density(
    model: Callable, args: tuple, kwargs: dict, model_params: dict, unconstrained: dict
) -> jax.Array:
    """``log p`` (with Jacobians) of ``model`` at unconstrained latents, hidden from the guide."""
    with block():
        run = seed(substitute(model, data=model_params), rng_seed=0)
        return -potential_energy(run, args, kwargs, unconstrained)


# ---------------------------------------------------------------------------------------------
# AutoDAIS
# ---------------------------------------------------------------------------------------------


class AutoDAIS(AutoContinuous):
    """Differentiable Annealed Importance Sampling over the flat unconstrained latent vector.

    A draw is ``z_0 ~ q_0`` (a diagonal or full-covariance Normal) moved by ``K`` annealed
    uncorrected Langevin steps towards the posterior (see :func:`_dais_chain`); the guide's
    density is ``q_0(z_0)`` times the momentum ratio factor, so ``Trace_ELBO`` estimates the
    DAIS lower bound on ``log p(data)``. Not usable with data subsampling (the dynamics use the
    full model); see :class:`AutoSurrogateLikelihoodDAIS` and :class:`AutoSemiDAIS`.

    Parameters (NumPyro's names): ``{prefix}_eta0`` (step size, in ``(0, eta_max)``),
    ``{prefix}_eta_coeff`` (step size slope in ``beta``), ``{prefix}_gamma`` (momentum
    damping, in ``(0, 1)``), ``{prefix}_beta_increments`` ``(K,)`` (positive; their
    normalized cumulative sum is the annealing schedule), ``{prefix}_mass_matrix``
    ``(latent_dim,)`` (positive momentum scales), ``{prefix}_z_0_loc`` ``(latent_dim,)`` and
    ``{prefix}_z_0_scale`` ``(latent_dim,)`` (``base_dist="diagonal"``) or
    ``{prefix}_z_0_scale_tril`` ``(latent_dim, latent_dim)`` (``base_dist="cholesky"``).
    Auxiliary sites ``{prefix}_z_0`` and ``{prefix}_momentum`` ``(K, latent_dim)``; factor
    ``{prefix}_factor``.

    Args:
        model: the model.
        K: number of annealing steps (>= 1).
        base_dist: ``"diagonal"`` or ``"cholesky"``.
        eta_init: initial step size, ``0 < eta_init < eta_max``.
        eta_max: largest step size.
        gamma_init: initial momentum damping in ``(0, 1)``.
        prefix: parameter name prefix.
        init_loc_fn: initialization strategy for ``z_0_loc``.
        init_scale: initial scale of the base Normal (> 0).
        forward_mode_differentiation: take the dynamics' gradients with ``jax.jacfwd``.

    ``sample_posterior`` runs the dynamics; ``median``/``quantiles``/``get_posterior`` are not
    available (the distribution is implicit).
    """

    def __init__(
        self,
        model: Callable,
        *,
        K: int = 4,
        base_dist: str = "diagonal",
        eta_init: float = 0.01,
        eta_max: float = 0.1,
        gamma_init: float = 0.9,
        prefix: str = "auto",
        init_loc_fn: Callable = init_to_median,
        init_scale: float = 0.1,
        forward_mode_differentiation: bool = False,
    ):
        owner = type(self).__name__
        _check_dais_args(owner, K, eta_init, eta_max, gamma_init, init_scale)
        if base_dist not in ("diagonal", "cholesky"):
            raise ValueError(
                f"{owner}: base_dist must be 'diagonal' or 'cholesky', got {base_dist!r}"
            )
        self.K = K
        self.base_dist = base_dist
        self.eta_init = eta_init
        self.eta_max = eta_max
        self.gamma_init = gamma_init
        self._init_scale = init_scale
        self._grad = jax.jacfwd if forward_mode_differentiation else jax.grad
        self._call_args: tuple[tuple, dict] = ((), {})
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    def _setup_prototype(self, *args, **kwargs) -> None:
        super()._setup_prototype(*args, **kwargs)
        for name, site in self.prototype_trace.items():
            if site["type"] == "plate" and int(site["args"][1]) < int(site["args"][0]):
                raise NotImplementedError(
                    f"{type(self).__name__}: plate '{name}' subsamples its data "
                    f"({site['args'][1]} of {site['args'][0]}); the DAIS dynamics need the "
                    "full model. Use AutoSurrogateLikelihoodDAIS or AutoSemiDAIS."
                )
        self._model_param_sites = {
            k: s for k, s in self.prototype_trace.items() if s["type"] == "param"
        }

    def __call__(self, *args, **kwargs) -> dict[str, jax.Array]:
        self._call_args = (args, kwargs)
        return super().__call__(*args, **kwargs)

    def _target_log_prob(self) -> Callable[[jax.Array], jax.Array]:
        """``z (latent_dim,) -> log p(z, data)`` (unconstrained, with Jacobians)."""
        args, kwargs = self._call_args
        model_params = _register_params(self._model_param_sites)

        def log_prob(z):
            return _blocked_log_density(
                self.model, args, kwargs, model_params, self._unpack_latent(z)
            )

        return log_prob

    def _sample_latent(self) -> jax.Array:
        p, d = self.prefix, self.latent_dim
        dtype = self._init_latent.dtype
        eta0 = param(
            f"{p}_eta0",
            jnp.asarray(self.eta_init, dtype),
            constraint=constraints.interval(0.0, self.eta_max),
        )
        eta_coeff = param(f"{p}_eta_coeff", jnp.zeros((), dtype))
        gamma = param(
            f"{p}_gamma", jnp.asarray(self.gamma_init, dtype), constraint=constraints.interval(0, 1)
        )
        increments = param(
            f"{p}_beta_increments", jnp.ones(self.K, dtype), constraint=constraints.positive
        )
        mass = param(f"{p}_mass_matrix", jnp.ones(d, dtype), constraint=constraints.positive)
        loc = param(f"{p}_z_0_loc", self._init_latent)
        if self.base_dist == "diagonal":
            scale_ = param(
                f"{p}_z_0_scale",
                jnp.full(d, self._init_scale, dtype),
                constraint=constraints.positive,
            )
            base: Distribution = Normal(loc, scale_).to_event(1)
        else:
            scale_tril = param(
                f"{p}_z_0_scale_tril",
                jnp.eye(d, dtype=dtype) * self._init_scale,
                constraint=constraints.scaled_unit_lower_cholesky,
            )
            base = MultivariateNormal(loc, scale_tril=scale_tril)
        target = self._target_log_prob()
        z0 = sample(f"{p}_z_0", base, infer={"is_auxiliary": True})
        # The momentum draws' density is in the factor below (masked here: no double count).
        noise = sample(
            f"{p}_momentum",
            Normal(jnp.zeros(d, dtype), mass).expand((self.K, d)).to_event(2).mask(False),
            infer={"is_auxiliary": True},
        )
        z, log_factor = _dais_chain(
            z0,
            noise,
            _annealing_schedule(increments),
            eta0,
            eta_coeff,
            self.eta_max,
            gamma,
            mass,
            base.log_prob,
            target,
            self._grad,
        )
        factor(f"{p}_factor", log_factor)
        return z

    def sample_posterior(
        self, rng_key, params: Params, *args, sample_shape: Sequence[int] = (), **kwargs
    ) -> dict[str, jax.Array]:
        """Draws of the latent sites (run through the learned dynamics) and the model's
        deterministic sites; ``sample_shape + site shape`` each."""
        self._ensure_setup(rng_key, args, kwargs)
        if not args and not kwargs:
            args, kwargs = self._model_args, self._model_kwargs
        sample_shape = tuple(sample_shape)
        latents = _sample_callable(self, rng_key, params, args, kwargs, sample_shape)
        return self._add_deterministic(params, latents, args, kwargs, sample_shape)

    def _sample_latents(
        self, rng_key, params: Params, sample_shape: tuple[int, ...]
    ) -> dict[str, jax.Array]:
        args, kwargs = self._model_args, self._model_kwargs
        return _sample_callable(self, rng_key, params, args, kwargs, sample_shape)

    def _unavailable(self, what: str):
        return NotImplementedError(
            f"{type(self).__name__}.{what}: the DAIS guide's distribution is implicit (no closed "
            "form); use sample_posterior() and summarize the draws."
        )

    def _median_latents(self, params: Params) -> dict[str, jax.Array]:
        raise self._unavailable("median")

    def quantiles(self, params: Params, quantiles) -> dict[str, jax.Array]:
        raise self._unavailable("quantiles")

    def get_posterior(self, params: Params) -> Distribution:
        raise self._unavailable("get_posterior")

    def get_transform(self, params: Params) -> Transform:
        raise self._unavailable("get_transform")


class AutoSurrogateLikelihoodDAIS(AutoDAIS):
    """:class:`AutoDAIS` whose dynamics follow ``surrogate_model`` instead of the model.

    ``surrogate_model()`` (no arguments) has the model's latent sites (same names, supports
    and shapes) with the same prior and a cheap likelihood ansatz, e.g. the likelihood of a
    fixed data subset scaled by learnable weights (its ``param`` sites are learned with the
    guide). The bound stays valid for any surrogate (the dynamics only change the proposal),
    and the model may subsample its data; its latent sites must be global.

    Parameters as :class:`AutoDAIS` (``{prefix}_z_0_scale_tril`` for ``base_dist="cholesky"``),
    plus the surrogate model's own ``param`` sites.
    """

    def __init__(
        self,
        model: Callable,
        surrogate_model: Callable,
        *,
        K: int = 4,
        eta_init: float = 0.01,
        eta_max: float = 0.1,
        gamma_init: float = 0.9,
        prefix: str = "auto",
        base_dist: str = "diagonal",
        init_loc_fn: Callable = init_to_median,
        init_scale: float = 0.1,
        forward_mode_differentiation: bool = False,
    ):
        if not callable(surrogate_model):
            raise TypeError(
                "AutoSurrogateLikelihoodDAIS: surrogate_model must be callable, got "
                f"{surrogate_model!r}"
            )
        self.surrogate_model = surrogate_model
        super().__init__(
            model,
            K=K,
            base_dist=base_dist,
            eta_init=eta_init,
            eta_max=eta_max,
            gamma_init=gamma_init,
            prefix=prefix,
            init_loc_fn=init_loc_fn,
            init_scale=init_scale,
            forward_mode_differentiation=forward_mode_differentiation,
        )

    def _setup_prototype(self, *args, **kwargs) -> None:
        AutoContinuous._setup_prototype(self, *args, **kwargs)
        owner = type(self).__name__
        surrogate = _trace_prototype(self.surrogate_model, (), {}, self.init_loc_fn)
        latent = {
            k: s for k, s in surrogate.items() if s["type"] == "sample" and not s["is_observed"]
        }
        if set(latent) != set(self._sites):
            raise ValueError(
                f"{owner}: surrogate_model's latent sites {sorted(latent)} differ from the "
                f"model's {sorted(self._sites)}; it must have the same latent sites."
            )
        for name, site in self._sites.items():
            shape = tuple(jnp.shape(latent[name]["value"]))
            if shape != site.shape:
                raise ValueError(
                    f"{owner}: latent site '{name}' has shape {shape} in surrogate_model but "
                    f"{site.shape} in the model."
                )
        self._surrogate_param_sites = {k: s for k, s in surrogate.items() if s["type"] == "param"}

    def _target_log_prob(self) -> Callable[[jax.Array], jax.Array]:
        surrogate_params = _register_params(self._surrogate_param_sites)

        def log_prob(z):
            return _blocked_log_density(
                self.surrogate_model, (), {}, surrogate_params, self._unpack_latent(z)
            )

        return log_prob


# ---------------------------------------------------------------------------------------------
# AutoSemiDAIS
# ---------------------------------------------------------------------------------------------


class AutoSemiDAIS(AutoGuide):
    """A guide for the global latents, and DAIS for the local latents of each plate member.

    The model is ``local_model(global_model(...))``-shaped: ``global_guide`` (e.g. an
    :class:`~jppl.vi.autoguide.AutoNormal` of the global part, whose ``.model`` returns what
    ``local_model`` takes) covers the global latents; the local latents are those in the
    (one) data plate, possibly subsampled. For each member ``i`` of the minibatch, its local
    latents (flattened, length ``D``) start at ``z_0[i] ~ Normal(z_0_loc[i], z_0_scale[i])``
    (or at a draw of ``local_guide(*local_args)``) and take ``K`` annealed Langevin steps
    towards ``p(local_i | globals, data_i)``; the result is a valid lower bound (a "locally
    enhanced bound"), unbiased under subsampling.

    Parameters: ``{prefix}_eta0`` ``(N,)``, ``{prefix}_eta_coeff`` ``(N,)``,
    ``{prefix}_gamma`` ``(N,)``, ``{prefix}_beta_increments`` ``(N, K)``,
    ``{prefix}_mass_matrix`` ``(N, D)`` (scalars / ``(K,)`` / ``(D,)`` with
    ``use_global_dais_params=True``); ``{prefix}_z_0_loc`` and ``{prefix}_z_0_scale``
    ``(N, D)`` without ``local_guide``; plus the parameters of ``global_guide``,
    ``local_guide`` and ``local_model``.

    Args:
        model: the full model.
        local_model: the local part; called as ``local_model(global_outputs)`` when
            ``global_guide`` is given (``global_outputs = global_guide.model(*args)``), else
            with the model's arguments.
        global_guide: guide of the global latents (with a ``.model`` attribute), or ``None``
            when the model has no global latents.
        local_guide: optional guide of the local latents giving the DAIS starting point;
            called like ``local_model``.
        prefix, K, eta_init, eta_max, gamma_init, init_scale: as :class:`AutoDAIS`.
        subsample_plate: name of the data plate when it is not subsampled (or to choose it).
        use_global_dais_params: share the dynamics' parameters across plate members.
    """

    def __init__(
        self,
        model: Callable,
        local_model: Callable,
        global_guide: Callable | None = None,
        local_guide: Callable | None = None,
        *,
        prefix: str = "auto",
        K: int = 4,
        eta_init: float = 0.01,
        eta_max: float = 0.1,
        gamma_init: float = 0.9,
        init_scale: float = 0.1,
        subsample_plate: str | None = None,
        use_global_dais_params: bool = False,
        init_loc_fn: Callable = init_to_median,
    ):
        owner = "AutoSemiDAIS"
        _check_dais_args(owner, K, eta_init, eta_max, gamma_init, init_scale)
        if not callable(local_model):
            raise TypeError(f"{owner}: local_model must be callable, got {local_model!r}")
        if global_guide is not None and not hasattr(global_guide, "model"):
            raise TypeError(
                f"{owner}: global_guide must be a guide with a .model attribute (e.g. an "
                f"autoguide of the global part of the model), got {global_guide!r}"
            )
        if local_guide is not None and not callable(local_guide):
            raise TypeError(f"{owner}: local_guide must be callable, got {local_guide!r}")
        self.local_model = local_model
        self.global_guide = global_guide
        self.local_guide = local_guide
        self.K = K
        self.eta_init = eta_init
        self.eta_max = eta_max
        self.gamma_init = gamma_init
        self._init_scale = init_scale
        self.subsample_plate = subsample_plate
        self.use_global_dais_params = use_global_dais_params
        super().__init__(model, prefix=prefix, init_loc_fn=init_loc_fn)

    # -- prototype --------------------------------------------------------------------------
    def _setup_prototype(self, *args, **kwargs) -> None:
        super()._setup_prototype(*args, **kwargs)
        owner = type(self).__name__
        tr = self.prototype_trace
        plates = {k: s for k, s in tr.items() if s["type"] == "plate"}
        if self.subsample_plate is not None:
            if self.subsample_plate not in plates:
                raise ValueError(
                    f"{owner}: subsample_plate='{self.subsample_plate}' is not a plate of the "
                    f"model (plates: {sorted(plates)})."
                )
            chosen = [self.subsample_plate]
        else:
            chosen = [k for k, s in plates.items() if int(s["args"][1]) < int(s["args"][0])]
            if not chosen:
                chosen = list(plates)
        if len(chosen) != 1:
            raise ValueError(
                f"{owner}: expected exactly one data plate (the subsampled one, or the one "
                f"named by subsample_plate), found {sorted(chosen)}; pass subsample_plate."
            )
        name = chosen[0]
        size, sub = (int(a) for a in plates[name]["args"][:2])
        local, plate_dim = [], None
        for site_name, site in self._sites.items():
            for frame in site.frames:
                if frame.name == name:
                    local.append(site_name)
                    plate_dim = frame.dim
        if not local:
            raise ValueError(
                f"{owner}: no latent site lies in the plate '{name}'; AutoSemiDAIS is for "
                "models with local latent variables (use AutoDAIS otherwise)."
            )
        global_sites = [k for k in self._sites if k not in local]
        if global_sites and self.global_guide is None:
            raise ValueError(
                f"{owner}: the model has global latent sites {global_sites} outside the plate "
                f"'{name}'; pass a global_guide covering them."
            )
        self._local_names = local
        self._plate = (name, size, sub, plate_dim)
        # Member layout: each local site's plate axis (in its unconstrained value) moves to
        # the front; one member's values are flattened and concatenated (length D).
        self._local_axes: dict[str, int] = {}
        self._local_rest: dict[str, tuple[int, ...]] = {}
        self._local_layout: dict[str, tuple[int, int]] = {}
        offset = 0
        for site_name in local:
            site = self._sites[site_name]
            nd = len(site.unconstrained_shape)
            axis = nd - site.unconstrained_event_dim + plate_dim
            rest = tuple(d for i, d in enumerate(site.unconstrained_shape) if i != axis)
            self._local_axes[site_name] = axis
            self._local_rest[site_name] = rest
            self._local_layout[site_name] = (offset, offset + math.prod(rest))
            offset += math.prod(rest)
        self.local_latent_dim = offset
        self._init_local = self._pack_local(
            {k: self._sites[k].init_unconstrained for k in local}
        )  # (N, D)

        local_args, local_kwargs = self._prototype_local_inputs(args, kwargs)
        self._local_model_param_sites = {
            k: s
            for k, s in _trace_prototype(self.local_model, local_args, local_kwargs, None).items()
            if s["type"] == "param"
        }
        self._local_guide_param_sites = {}
        if self.local_guide is not None:
            self._local_guide_param_sites = {
                k: s
                for k, s in _trace_prototype(
                    self.local_guide, local_args, local_kwargs, None
                ).items()
                if s["type"] == "param"
            }

    def _pack_local(self, values: dict[str, jax.Array]) -> jax.Array:
        """``{local site: unconstrained value (plate axis of size M)}`` -> ``(M, D)``."""
        parts = []
        for k in self._local_names:
            v = jnp.moveaxis(values[k], self._local_axes[k], 0)
            parts.append(jnp.reshape(v, (v.shape[0], -1)))
        return jnp.concatenate(parts, axis=-1)

    def _unpack_local(self, z: jax.Array) -> dict[str, jax.Array]:
        """``(M, D)`` -> ``{local site: unconstrained value with the plate axis of size M}``."""
        out = {}
        for k, (a, b) in self._local_layout.items():
            v = jnp.reshape(z[:, a:b], (z.shape[0],) + self._local_rest[k])
            out[k] = jnp.moveaxis(v, 0, self._local_axes[k])
        return out

    def _prototype_local_inputs(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """The local model's arguments at setup: ``(global_guide.model(*args),)`` or the
        model's own (the global latents drawn from their priors, for shapes only)."""
        if self.global_guide is None:
            return args, dict(kwargs)
        with block():
            return (seed(self.global_guide.model, rng_seed=0)(*args, **kwargs),), {}

    # -- guide ------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs) -> dict[str, jax.Array]:
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        p = self.prefix
        plate_name, size, sub, plate_dim = self._plate
        n_local, K = self.local_latent_dim, self.K
        dtype = self._init_local.dtype

        result: dict[str, jax.Array] = {}
        if self.global_guide is not None:
            global_latents = self.global_guide(*args, **kwargs)
            result.update(global_latents)
            with block():
                run = seed(substitute(self.global_guide.model, data=global_latents), rng_seed=0)
                local_args, local_kwargs = (run(*args, **kwargs),), {}
        else:
            local_args, local_kwargs = args, dict(kwargs)

        with plate(plate_name, size, subsample_size=sub, dim=plate_dim) as idx:
            pass
        m = int(jnp.shape(idx)[0])
        take = lambda x: jnp.take(x, idx, axis=0)  # noqa: E731

        if self.use_global_dais_params:
            shape0, take0 = (), (lambda x: jnp.broadcast_to(x, (m,) + jnp.shape(x)))
        else:
            shape0, take0 = (size,), take
        eta0 = take0(
            param(
                f"{p}_eta0",
                jnp.full(shape0, self.eta_init, dtype),
                constraint=constraints.interval(0.0, self.eta_max),
            )
        )
        eta_coeff = take0(param(f"{p}_eta_coeff", jnp.zeros(shape0, dtype)))
        gamma = take0(
            param(
                f"{p}_gamma",
                jnp.full(shape0, self.gamma_init, dtype),
                constraint=constraints.interval(0, 1),
            )
        )
        increments = take0(
            param(
                f"{p}_beta_increments",
                jnp.ones(shape0 + (K,), dtype),
                constraint=constraints.positive,
            )
        )  # (m, K)
        mass = take0(
            param(
                f"{p}_mass_matrix",
                jnp.ones(shape0 + (n_local,), dtype),
                constraint=constraints.positive,
            )
        )  # (m, D)

        weight = size / m  # the minibatch's scale in the bound
        local_model_params = _register_params(self._local_model_param_sites)
        plate_data = {plate_name: idx}

        with scale(scale=weight):
            if self.local_guide is None:
                loc = take(param(f"{p}_z_0_loc", self._init_local))
                scale_ = take(
                    param(
                        f"{p}_z_0_scale",
                        jnp.full((size, n_local), self._init_scale, dtype),
                        constraint=constraints.positive,
                    )
                )
                base = Normal(loc, scale_).to_event(2)
                z0 = sample(f"{p}_z_0", base, infer={"is_auxiliary": True})

                def base_log_prob(z):
                    return base.log_prob(z)

            else:
                guide_params = _register_params(self._local_guide_param_sites)
                guide_fn = substitute(self.local_guide, data={**guide_params, **plate_data})
                with block():
                    guide_tr = trace(guide_fn).get_trace(*local_args, **local_kwargs)
                z0 = self._pack_local(
                    {
                        k: biject_to(guide_tr[k]["fn"].support).inv(guide_tr[k]["value"])
                        for k in self._local_names
                    }
                )

                def base_log_prob(z):
                    # The local guide's density in the unconstrained space, without the
                    # plate's minibatch scale (applied once, by the handler around the factor).
                    return (
                        _blocked_log_density(
                            guide_fn, local_args, local_kwargs, {}, self._unpack_local(z)
                        )
                        / weight
                    )

                factor(f"{p}_z_0_factor", base_log_prob(z0))

            def target_log_prob(z):
                # Sum over the minibatch of log p(local_i, data_i | globals) (unscaled).
                model = substitute(self.local_model, data=plate_data)
                return (
                    _blocked_log_density(
                        model, local_args, local_kwargs, local_model_params, self._unpack_local(z)
                    )
                    / weight
                )

            noise = sample(
                f"{p}_momentum",
                Normal(jnp.zeros((m, n_local), dtype), mass)
                .expand((K, m, n_local))
                .to_event(3)
                .mask(False),
                infer={"is_auxiliary": True},
            )
            z, log_factor = _dais_chain(
                z0,
                noise,
                jnp.moveaxis(_annealing_schedule(increments), -1, 0),
                eta0,
                eta_coeff,
                self.eta_max,
                gamma,
                mass,
                base_log_prob,
                target_log_prob,
            )
            factor(f"{p}_local_dais_factor", jnp.sum(log_factor))

        masked_out = get_mask() is False
        for name, u in self._unpack_local(z).items():
            site = self._sites[name]
            value = site.transform(u)
            if masked_out:
                log_density = jnp.zeros(())
            else:
                ladj = site.transform.log_abs_det_jacobian(u, value)
                log_density = -sum_rightmost(
                    ladj, jnp.ndim(ladj) - jnp.ndim(value) + site.event_dim
                )
            with (
                substitute(data=plate_data),
                plate(plate_name, size, subsample_size=sub, dim=plate_dim),
            ):
                result[name] = sample(
                    name, Delta(value, log_density=log_density, event_dim=site.event_dim)
                )
        return result

    def sample_posterior(
        self, rng_key, params: Params, *args, sample_shape: Sequence[int] = (), **kwargs
    ) -> dict[str, jax.Array]:
        """Draws of the global latents and of the local latents of a minibatch (choose it by
        substituting the plate's indices, ``substitute(data={plate: idx})``);
        ``sample_shape + site shape`` each (the plate's dim has the minibatch size)."""
        self._ensure_setup(rng_key, args, kwargs)
        if not args and not kwargs:
            args, kwargs = self._model_args, self._model_kwargs
        return _sample_callable(self, rng_key, params, args, kwargs, tuple(sample_shape))
