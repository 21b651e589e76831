"""Generic checks over every distribution exported by ``jppl.distributions`` (issue 17).

An audit, not part of CI's steps (about 21 min on 2 shared cores, mostly compiling: 2 min for
the per-distribution checks, 12 for the numerical ones, 7 for the gradient checks): ``python -m
pytest -m audit tests/test_distributions_generic.py``. Every test here is marked ``audit``,
which the default suite and the long-test step leave out.

One example instance per exported ``Distribution`` subclass (``EXAMPLES``, batched where the
class allows). The default suite checks, per distribution in one compiled program, that it is a
pytree that crosses ``jit`` and ``vmap`` (leaves stacked along a new axis) and that ``expand``,
``to_event`` and ``mask`` give the log densities they must. The slow suite (float64) checks
``icdf(cdf(x)) = x`` and ``cdf(icdf(q)) = q``, ``entropy`` against quadrature (1-D continuous),
an exhaustive sum (1-D discrete, truncated with a mass bound) or a Monte Carlo z-test
(multivariate), and sample moments against ``mean``/``variance`` (z-tests, circular and
spherical supports by their directional moments).

Gradients (float64, one compiled program per distribution for both tests): ``jax.grad`` of
``log_prob(x).sum()`` in every float leaf of the distribution (a pytree) and, for continuous
supports, in the value ``x`` (a draw at a fixed key), and of ``sum(sample(key) * w)`` (fixed key
and weights) in every float leaf where ``has_rsample``, against central finite differences along
directions that keep each leaf in its constraint (``_directions``). Leaves left out are named
with their reasons in ``_GRAD_SKIPS`` (integer counts, masks, ...) and ``_RSAMPLE_SKIPS``
(draws through ``jax.random.gamma``'s implicit gradient, which a fixed key's path does not
follow; Gamma, Chi2 and InverseGamma check it against the quantile coupling instead).

Methods not implemented (the class does not override the base ``Distribution``'s; wrappers
such as ``ExpandedDistribution`` delegate and are tested where their base implements it).
NumPyro 0.22 implements none of these either, apart from the generic one-dimensional
``TransformedDistribution.cdf``/``icdf`` its multivariate and folded subclasses inherit, which
do not apply to them (BernoulliLogitGLM and HalfStudentT are not in NumPyro):

mean (10): DoublyTruncatedPowerLaw, EulerMaruyama, FoldedDistribution, ImproperUniform,
    IntervalCensoredDistribution, LKJCholesky, LeftCensoredDistribution,
    RightCensoredDistribution, TruncatedPolyaGamma, Unit
variance (16): CAR, DoublyTruncatedPowerLaw, EulerMaruyama, FoldedDistribution, Gompertz,
    ImproperUniform, IntervalCensoredDistribution, LKJ, LKJCholesky, LeftCensoredDistribution,
    ProjectedNormal, RightCensoredDistribution, SineBivariateVonMises, SineSkewed,
    TruncatedPolyaGamma, Unit
entropy (59): BernoulliLogitGLM, BetaBinomial, BetaNegativeBinomial, BinomialLogits,
    BinomialProbs, CAR, Dagum, DirichletMultinomial, DoublyTruncatedPowerLaw, EulerMaruyama,
    FoldedDistribution, GammaPoisson, GaussianCopula, GaussianCopulaBeta, GaussianRandomWalk,
    GaussianStateSpace, Gompertz, HalfStudentT, HurdleGamma, HurdleLogNormal, HurdleLogits,
    HurdlePoisson, HurdleProbs, ImproperUniform, IntervalCensoredDistribution, InverseWishart,
    InverseWishartCholesky, LKJ, LKJCholesky, LeftCensoredDistribution, LeftTruncatedGamma,
    LowerTruncatedPowerLaw, MaskedDistribution, MatrixNormal, MixtureGeneral, MixtureSameFamily,
    MultinomialLogits, MultinomialProbs, MultivariateStudentT, NegativeBinomial2,
    NegativeBinomialLogits, NegativeBinomialProbs, Poisson, ProjectedNormal,
    RelaxedBernoulliLogits, RightCensoredDistribution, RightTruncatedGamma,
    SineBivariateVonMises, SineSkewed, TransformedDistribution, TruncatedPolyaGamma,
    TwoSidedTruncatedGamma, Unit, VonMises, WishartCholesky, ZeroInflatedLogits,
    ZeroInflatedPoisson, ZeroInflatedProbs, ZeroSumNormal
cdf (56): BernoulliLogitGLM, BernoulliLogits, BernoulliProbs, BetaBinomial,
    BetaNegativeBinomial, BinomialLogits, BinomialProbs, CAR, CategoricalLogits,
    CategoricalProbs, CirculantNormal, Delta, Dirichlet, DirichletMultinomial, EulerMaruyama,
    ExpandedDistribution, GaussianCopula, GaussianCopulaBeta, GaussianRandomWalk,
    GaussianStateSpace, GeometricLogits, GeometricProbs, HurdleGamma, HurdleLogNormal,
    HurdleLogits, HurdlePoisson, HurdleProbs, ImproperUniform, Independent,
    IntervalCensoredDistribution, InverseWishart, InverseWishartCholesky, LKJ, LKJCholesky,
    LeftCensoredDistribution, LowRankMultivariateNormal, MaskedDistribution, MatrixNormal,
    MultinomialLogits, MultinomialProbs, MultivariateNormal, MultivariateStudentT,
    OrderedLogistic, ProjectedNormal, RightCensoredDistribution, SineBivariateVonMises,
    SineSkewed, TruncatedPolyaGamma, Unit, VonMises, Wishart, WishartCholesky,
    ZeroInflatedLogits, ZeroInflatedPoisson, ZeroInflatedProbs, ZeroSumNormal
icdf (65): BernoulliLogitGLM, BernoulliLogits, BernoulliProbs, BetaBinomial,
    BetaNegativeBinomial, BinomialLogits, BinomialProbs, CAR, CategoricalLogits,
    CategoricalProbs, CirculantNormal, Delta, Dirichlet, DirichletMultinomial, EulerMaruyama,
    ExpandedDistribution, FoldedDistribution, GammaPoisson, GaussianCopula, GaussianCopulaBeta,
    GaussianRandomWalk, GaussianStateSpace, GeometricLogits, GeometricProbs, HalfStudentT,
    HurdleGamma, HurdleLogNormal, HurdleLogits, HurdlePoisson, HurdleProbs, ImproperUniform,
    Independent, IntervalCensoredDistribution, InverseWishart, InverseWishartCholesky, LKJ,
    LKJCholesky, LeftCensoredDistribution, LowRankMultivariateNormal, MaskedDistribution,
    MatrixNormal, MixtureGeneral, MixtureSameFamily, MultinomialLogits, MultinomialProbs,
    MultivariateNormal, MultivariateStudentT, NegativeBinomial2, NegativeBinomialLogits,
    NegativeBinomialProbs, OrderedLogistic, Poisson, ProjectedNormal, RightCensoredDistribution,
    SineBivariateVonMises, SineSkewed, TruncatedPolyaGamma, Unit, VonMises, Wishart,
    WishartCholesky, ZeroInflatedLogits, ZeroInflatedPoisson, ZeroInflatedProbs, ZeroSumNormal
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jppl.distributions as D
from jppl.distributions import constraints
from jppl.distributions.transforms import biject_to

_R3 = np.array([[1.0, 0.3, 0.1], [0.3, 1.0, -0.2], [0.1, -0.2, 1.0]])
_S2 = np.array([[1.0, 0.3], [0.3, 0.5]])
_L2 = np.linalg.cholesky(_S2)
_W4 = np.array([[0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0]], float)


def _ou(y, t):
    return -0.7 * y, 0.5 * (1.0 + 0.1 * t)


a2 = lambda *v: jnp.array(v)
pytestmark = pytest.mark.audit

EXAMPLES: dict[str, Callable[[], D.Distribution]] = {
    "Delta": lambda: D.Delta(a2(0.5, -1.0), a2(0.1, 0.2)),
    "ExpandedDistribution": lambda: D.ExpandedDistribution(D.Normal(0.3, 1.2), (2,)),
    "ImproperUniform": lambda: D.ImproperUniform(constraints.positive, (2,), ()),
    "Independent": lambda: D.Independent(D.Normal(jnp.zeros((2, 3)), 1.5), 1),
    "MaskedDistribution": lambda: D.MaskedDistribution(
        D.Normal(a2(0.0, 1.0), 1.0), a2(True, False)
    ),
    "Unit": lambda: D.Unit(a2(-0.5, 0.3)),
    "Beta": lambda: D.Beta(a2(2.0, 0.8), a2(3.0, 1.5)),
    "Cauchy": lambda: D.Cauchy(a2(0.0, 1.0), a2(1.0, 2.0)),
    "Chi2": lambda: D.Chi2(a2(3.0, 5.5)),
    "Exponential": lambda: D.Exponential(a2(0.5, 2.0)),
    "Gamma": lambda: D.Gamma(a2(2.0, 0.7), a2(1.0, 3.0)),
    "Gumbel": lambda: D.Gumbel(a2(0.0, 1.0), a2(1.0, 2.0)),
    "HalfCauchy": lambda: D.HalfCauchy(a2(1.0, 2.0)),
    "HalfNormal": lambda: D.HalfNormal(a2(1.0, 2.0)),
    "HalfStudentT": lambda: D.HalfStudentT(a2(6.0, 9.0), a2(1.0, 2.0)),
    "InverseGamma": lambda: D.InverseGamma(a2(5.0, 6.0), a2(1.0, 2.0)),
    "Laplace": lambda: D.Laplace(a2(0.0, 1.0), a2(1.0, 2.0)),
    "LogNormal": lambda: D.LogNormal(a2(0.0, 0.5), a2(0.5, 0.3)),
    "Logistic": lambda: D.Logistic(a2(0.0, 1.0), a2(1.0, 2.0)),
    "Normal": lambda: D.Normal(a2(0.0, 1.0), a2(1.0, 2.0)),
    "StudentT": lambda: D.StudentT(a2(5.0, 9.0), a2(0.0, 1.0), a2(1.0, 2.0)),
    "TruncatedNormal": lambda: D.TruncatedNormal(
        a2(0.0, 1.0), a2(1.0, 2.0), a2(-1.0, 0.0), a2(2.0, 3.0)
    ),
    "Uniform": lambda: D.Uniform(a2(0.0, -1.0), a2(1.0, 3.0)),
    "VonMises": lambda: D.VonMises(a2(0.0, 1.0), a2(2.0, 0.5)),
    "Weibull": lambda: D.Weibull(a2(1.0, 2.0), a2(1.5, 3.0)),
    "AsymmetricLaplace": lambda: D.AsymmetricLaplace(a2(0.0, 1.0), a2(1.0, 2.0), a2(0.5, 2.0)),
    "AsymmetricLaplaceQuantile": lambda: D.AsymmetricLaplaceQuantile(
        a2(0.0, 1.0), a2(1.0, 2.0), a2(0.3, 0.8)
    ),
    "BetaProportion": lambda: D.BetaProportion(a2(0.3, 0.6), a2(5.0, 10.0)),
    "Dagum": lambda: D.Dagum(a2(2.0, 3.0), a2(5.0, 6.0), a2(1.0, 2.0)),
    "Gompertz": lambda: D.Gompertz(a2(1.0, 2.0), a2(1.0, 0.5)),
    "Kumaraswamy": lambda: D.Kumaraswamy(a2(2.0, 1.5), a2(3.0, 2.5)),
    "Levy": lambda: D.Levy(a2(0.0, 1.0), a2(1.0, 2.0)),
    "LogUniform": lambda: D.LogUniform(a2(0.5, 1.0), a2(2.0, 10.0)),
    "Pareto": lambda: D.Pareto(a2(1.0, 2.0), a2(5.0, 6.0)),
    "ProjectedNormal": lambda: D.ProjectedNormal(jnp.array([[1.0, 0.5, -0.3], [0.0, 2.0, 1.0]])),
    "SineBivariateVonMises": lambda: D.SineBivariateVonMises(
        a2(0.0, 1.0), a2(0.5, -1.0), a2(2.0, 1.0), a2(1.0, 3.0), a2(0.3, -0.5)
    ),
    "SineSkewed": lambda: D.SineSkewed(
        D.VonMises(
            jnp.array([[0.0, 1.0], [0.5, -1.0]]), jnp.array([[2.0, 1.0], [1.0, 3.0]])
        ).to_event(1),
        jnp.array([[0.3, -0.2], [0.1, 0.4]]),
    ),
    "SoftLaplace": lambda: D.SoftLaplace(a2(0.0, 1.0), a2(1.0, 2.0)),
    "GaussianCopula": lambda: D.GaussianCopula(
        D.Exponential(jnp.array([[0.5, 1.0, 2.0], [1.0, 1.5, 0.7]])), correlation_matrix=_R3
    ),
    "GaussianCopulaBeta": lambda: D.GaussianCopulaBeta(
        jnp.array([[2.0, 3.0, 1.5], [1.0, 2.0, 4.0]]),
        jnp.array([[3.0, 2.0, 2.5], [2.0, 1.5, 3.0]]),
        correlation_matrix=_R3,
    ),
    "BernoulliLogits": lambda: D.BernoulliLogits(a2(-0.5, 1.0)),
    "BernoulliProbs": lambda: D.BernoulliProbs(a2(0.3, 0.8)),
    "BetaBinomial": lambda: D.BetaBinomial(a2(2.0, 0.8), a2(3.0, 1.5), a2(5, 8)),
    "BinomialLogits": lambda: D.BinomialLogits(a2(-0.5, 1.0), a2(5, 8)),
    "BinomialProbs": lambda: D.BinomialProbs(a2(0.3, 0.8), a2(5, 8)),
    "CategoricalLogits": lambda: D.CategoricalLogits(
        jnp.array([[0.1, -0.5, 1.0], [0.0, 2.0, -1.0]])
    ),
    "CategoricalProbs": lambda: D.CategoricalProbs(jnp.array([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]])),
    "DiscreteUniform": lambda: D.DiscreteUniform(a2(0, -2), a2(4, 3)),
    "GammaPoisson": lambda: D.GammaPoisson(a2(2.0, 5.0), a2(1.0, 0.5)),
    "GeometricLogits": lambda: D.GeometricLogits(a2(-0.5, 1.0)),
    "GeometricProbs": lambda: D.GeometricProbs(a2(0.3, 0.8)),
    "MultinomialLogits": lambda: D.MultinomialLogits(
        jnp.array([[0.1, -0.5, 1.0], [0.0, 2.0, -1.0]]), a2(5, 8)
    ),
    "MultinomialProbs": lambda: D.MultinomialProbs(
        jnp.array([[0.2, 0.3, 0.5], [0.6, 0.1, 0.3]]), a2(5, 8)
    ),
    "NegativeBinomial2": lambda: D.NegativeBinomial2(a2(3.0, 1.5), a2(2.0, 5.0)),
    "NegativeBinomialLogits": lambda: D.NegativeBinomialLogits(a2(3.0, 5.0), a2(-0.5, 0.3)),
    "NegativeBinomialProbs": lambda: D.NegativeBinomialProbs(a2(3.0, 5.0), a2(0.3, 0.6)),
    "Poisson": lambda: D.Poisson(a2(1.5, 4.0)),
    "ZeroInflatedLogits": lambda: D.ZeroInflatedLogits(D.Poisson(a2(1.5, 4.0)), a2(-0.5, 0.5)),
    "ZeroInflatedPoisson": lambda: D.ZeroInflatedPoisson(a2(0.2, 0.4), a2(1.5, 4.0)),
    "ZeroInflatedProbs": lambda: D.ZeroInflatedProbs(D.Poisson(a2(1.5, 4.0)), a2(0.2, 0.4)),
    "BetaNegativeBinomial": lambda: D.BetaNegativeBinomial(
        a2(6.0, 8.0), a2(2.0, 3.0), a2(3.0, 5.0)
    ),
    "DirichletMultinomial": lambda: D.DirichletMultinomial(
        jnp.array([[1.0, 2.0, 0.5], [3.0, 1.0, 2.0]]), a2(5, 8)
    ),
    "HurdleGamma": lambda: D.HurdleGamma(a2(0.2, 0.4), a2(2.0, 3.0), a2(1.0, 2.0)),
    "HurdleLogNormal": lambda: D.HurdleLogNormal(a2(0.2, 0.4), a2(0.0, 0.5), a2(0.5, 0.3)),
    "HurdleLogits": lambda: D.HurdleLogits(D.Poisson(a2(1.5, 4.0)), a2(-0.5, 0.5)),
    "HurdlePoisson": lambda: D.HurdlePoisson(a2(0.2, 0.4), a2(1.5, 4.0)),
    "HurdleProbs": lambda: D.HurdleProbs(D.Poisson(a2(1.5, 4.0)), a2(0.2, 0.4)),
    "OrderedLogistic": lambda: D.OrderedLogistic(a2(-0.5, 1.0), jnp.array([-1.0, 0.0, 1.5])),
    "RelaxedBernoulliLogits": lambda: D.RelaxedBernoulliLogits(a2(0.5, 1.0), a2(-0.5, 1.0)),
    "BernoulliLogitGLM": lambda: D.BernoulliLogitGLM(
        jnp.array([[0.5, -1.0], [1.0, 0.3], [-0.2, 0.8]]), jnp.array(-0.4), a2(0.7, -1.2)
    ),
    "MixtureGeneral": lambda: D.MixtureGeneral(
        D.CategoricalProbs(jnp.array([0.3, 0.7])),
        [D.Normal(a2(0.0, 1.0), 1.0), D.Gumbel(a2(1.0, -1.0), 2.0)],
    ),
    "MixtureSameFamily": lambda: D.MixtureSameFamily(
        D.CategoricalProbs(jnp.array([[0.3, 0.7], [0.5, 0.5]])),
        D.Normal(jnp.array([[0.0, 2.0], [-1.0, 1.0]]), jnp.array([[1.0, 0.5], [0.7, 1.2]])),
    ),
    "Dirichlet": lambda: D.Dirichlet(jnp.array([[1.0, 2.0, 0.5], [3.0, 1.0, 2.0]])),
    "LKJ": lambda: D.LKJ(3, a2(1.0, 2.5)),
    "LKJCholesky": lambda: D.LKJCholesky(3, a2(1.0, 2.5)),
    "LowRankMultivariateNormal": lambda: D.LowRankMultivariateNormal(
        jnp.array([[0.0, 1.0, -1.0], [0.5, 0.0, 0.2]]),
        jnp.array([[[0.5], [0.3], [-0.2]], [[1.0], [0.0], [0.4]]]),
        jnp.array([[1.0, 0.5, 0.8], [0.3, 1.0, 0.6]]),
    ),
    "MultivariateNormal": lambda: D.MultivariateNormal(
        jnp.array([[0.0, 1.0], [1.0, -1.0]]),
        covariance_matrix=jnp.stack([_S2, 2.0 * _S2 + 0.1 * np.eye(2)]),
    ),
    "CAR": lambda: D.CAR(jnp.array([1.0, 0.0, -1.0, 0.5]), a2(0.2, 0.8), a2(1.5, 0.7), _W4),
    "CirculantNormal": lambda: D.CirculantNormal(
        jnp.array([[0.0, 1.0, 0.0, -1.0], [0.5, 0.5, 0.0, 0.0]]),
        covariance_row=jnp.array([1.0, 0.4, 0.1, 0.4]),
    ),
    "GaussianRandomWalk": lambda: D.GaussianRandomWalk(a2(1.0, 0.5), num_steps=4),
    "InverseWishart": lambda: D.InverseWishart(a2(5.0, 7.0), scale_matrix=_S2),
    "InverseWishartCholesky": lambda: D.InverseWishartCholesky(a2(5.0, 7.0), scale_matrix=_S2),
    "MatrixNormal": lambda: D.MatrixNormal(
        jnp.zeros((2, 2, 3)), jnp.broadcast_to(jnp.asarray(_L2), (2, 2, 2)), jnp.eye(3) * 0.7
    ),
    "MultivariateStudentT": lambda: D.MultivariateStudentT(
        a2(5.0, 8.0), jnp.array([[0.0, 1.0], [1.0, -1.0]]), scale_tril=_L2
    ),
    "Wishart": lambda: D.Wishart(a2(4.0, 6.0), scale_matrix=_S2),
    "WishartCholesky": lambda: D.WishartCholesky(a2(4.0, 6.0), scale_matrix=_S2),
    "ZeroSumNormal": lambda: D.ZeroSumNormal(a2(1.0, 2.0)[:, None], (3,)),
    "EulerMaruyama": lambda: D.EulerMaruyama(
        jnp.array([[0.0, 0.1, 0.3, 0.6], [0.0, 0.2, 0.4, 0.6]]), _ou, D.Normal(0.0, 1.0)
    ),
    "GaussianStateSpace": lambda: D.GaussianStateSpace(
        3,
        jnp.stack([jnp.array([[0.9, 0.1], [0.0, 0.8]]), jnp.array([[0.5, 0.0], [0.2, 0.7]])]),
        covariance_matrix=_S2,
    ),
    "TransformedDistribution": lambda: D.TransformedDistribution(
        D.Normal(a2(0.0, 1.0), a2(1.0, 0.5)), [D.AffineTransform(1.0, 2.0), D.ExpTransform()]
    ),
    "DoublyTruncatedPowerLaw": lambda: D.DoublyTruncatedPowerLaw(
        a2(-2.5, 1.5), a2(1.0, 0.5), a2(5.0, 3.0)
    ),
    "FoldedDistribution": lambda: D.FoldedDistribution(D.Normal(a2(0.5, -1.0), a2(1.0, 2.0))),
    "IntervalCensoredDistribution": lambda: D.IntervalCensoredDistribution(
        D.Normal(a2(0.5, -1.0), a2(1.0, 2.0)), a2(1, 0), a2(0, 0)
    ),
    "LeftCensoredDistribution": lambda: D.LeftCensoredDistribution(
        D.Normal(a2(0.5, -1.0), a2(1.0, 2.0)), a2(0, 1)
    ),
    "LeftTruncatedDistribution": lambda: D.LeftTruncatedDistribution(
        D.Normal(a2(0.5, -1.0), a2(1.0, 2.0)), a2(0.0, -2.0)
    ),
    "LeftTruncatedGamma": lambda: D.LeftTruncatedGamma(
        D.Gamma(a2(2.0, 3.0), a2(1.0, 2.0)), a2(0.5, 1.0)
    ),
    "LowerTruncatedPowerLaw": lambda: D.LowerTruncatedPowerLaw(a2(-2.5, -3.5), a2(1.0, 0.5)),
    "RightCensoredDistribution": lambda: D.RightCensoredDistribution(
        D.Normal(a2(0.5, -1.0), a2(1.0, 2.0)), a2(0, 1)
    ),
    "RightTruncatedDistribution": lambda: D.RightTruncatedDistribution(
        D.Normal(a2(0.5, -1.0), a2(1.0, 2.0)), a2(1.0, 0.0)
    ),
    "RightTruncatedGamma": lambda: D.RightTruncatedGamma(
        D.Gamma(a2(2.0, 3.0), a2(1.0, 2.0)), a2(2.0, 1.5)
    ),
    "TruncatedPolyaGamma": lambda: D.TruncatedPolyaGamma((2,)),
    "TwoSidedTruncatedDistribution": lambda: D.TwoSidedTruncatedDistribution(
        D.Normal(a2(0.5, -1.0), a2(1.0, 2.0)), a2(-1.0, -2.0), a2(1.5, 1.0)
    ),
    "TwoSidedTruncatedGamma": lambda: D.TwoSidedTruncatedGamma(
        D.Gamma(a2(2.0, 3.0), a2(1.0, 2.0)), a2(0.5, 0.2), a2(3.0, 2.0)
    ),
}


# Known failures: (test, distribution) -> the bug (strict, so a fix shows up as XPASS).
XFAILS: dict[tuple[str, str], str] = {}


def _names(test: str) -> list:
    """``sorted(EXAMPLES)`` as parameters, the known failures of ``test`` marked xfail."""
    return [
        pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=XFAILS[test, n]))
        if (test, n) in XFAILS
        else n
        for n in sorted(EXAMPLES)
    ]


def _exported() -> set[str]:
    """Every ``Distribution`` subclass named in ``jppl.distributions.__all__`` (minus the base)."""
    return {
        name
        for name in D.__all__
        if inspect.isclass(getattr(D, name))
        and issubclass(getattr(D, name), D.Distribution)
        and getattr(D, name) is not D.Distribution
    }


def _call(d: D.Distribution, method: str, *args):
    """``getattr(d, method)(*args)`` (or the property), ``None`` where it is not implemented."""
    try:
        attr = getattr(d, method)
        return attr(*args) if callable(attr) else attr
    except NotImplementedError:
        return None


def _value(d: D.Distribution, seed: int) -> jax.Array:
    """A valid value of shape ``batch_shape + event_shape`` without running ``d``'s sampler.

    Running the samplers eagerly (Gamma's rejection loop, ...) would cost seconds per
    distribution, so the default suite builds a point of the support instead: integer patterns
    for discrete supports, ``biject_to(support)`` of uniform noise for continuous ones.
    """
    shape = d.batch_shape + d.event_shape
    support = d.support
    if isinstance(d, (D.Delta, D.Unit)):  # a point mass / an empty event: its own draw
        return d.sample(jax.random.key(seed))
    pattern = (np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape) + seed) % 3
    if support is constraints.boolean:
        return jnp.asarray(pattern % 2, jnp.result_type(float))
    if isinstance(support, constraints.integer_interval):
        low = jnp.broadcast_to(support.lower_bound, shape)
        return jnp.minimum(low + pattern, support.upper_bound).astype(jnp.result_type(float))
    if isinstance(support, constraints.integer_greater_than):
        return (support.lower_bound + pattern).astype(jnp.result_type(float))
    if isinstance(support, constraints.multinomial):
        # total_count spread over the categories: each gets n // k, the remainder goes to one
        n = jnp.broadcast_to(jnp.asarray(support.upper_bound)[..., None], shape)
        k = shape[-1]
        x = jnp.broadcast_to(n // k, shape)
        return x.at[..., seed % k].add(n[..., 0] - k * (n[..., 0] // k)).astype(float)
    noise = jax.random.uniform(jax.random.key(seed), shape, minval=-1.5, maxval=1.5)
    if support is constraints.sphere:
        return noise / jnp.linalg.norm(noise, axis=-1, keepdims=True)
    transform = biject_to(support)
    noise = jax.random.uniform(
        jax.random.key(seed), transform.inverse_shape(shape), minval=-1.5, maxval=1.5
    )
    return transform(noise)


def _leaves_stacked(d: D.Distribution, n: int = 2) -> D.Distribution:
    """``n`` copies of ``d`` stacked along a new leading axis of every array leaf."""
    return jax.tree.map(lambda leaf: jnp.stack([jnp.asarray(leaf)] * n), d)


def test_every_distribution_has_an_example():
    assert set(EXAMPLES) == _exported()
    for name, make in EXAMPLES.items():
        assert type(make()).__name__ == name, name


@pytest.mark.parametrize("name", _names("pytree"))
def test_pytree_jit_vmap_expand_to_event_mask(name: str):
    d = EXAMPLES[name]()
    batch = d.batch_shape
    mask = (np.arange(int(np.prod(batch))) % 2 == 0).reshape(batch)
    big = d.expand((4, *batch))
    assert big.batch_shape == (4, *batch) and big.event_shape == d.event_shape
    if batch:
        ev = d.to_event(1)
        assert ev.batch_shape == batch[:-1] and ev.event_shape == batch[-1:] + d.event_shape

    @jax.jit
    def checks(d, mask):
        # One compiled program per distribution: the two values, then (a) jit, (b) vmap over
        # stacked leaves, (c) expand, (d) to_event, (e) mask; the distribution is a pytree
        # argument throughout.
        xs = jnp.stack([_value(d, 1), _value(d, 2)])
        out = {"xs": xs, "jit": d.log_prob(xs[0])}
        out["vmap"] = jax.vmap(lambda dd, xx: dd.log_prob(xx))(_leaves_stacked(d), xs)
        out["expand"] = d.expand((4, *d.batch_shape)).log_prob(xs[0])
        if d.batch_shape:
            out["to_event"] = d.to_event(1).log_prob(xs[0])
        out["mask"] = d.mask(mask).log_prob(xs[0])
        return out

    got = checks(d, mask)
    x, x2 = got["xs"]
    eager, eager2 = d.log_prob(x), d.log_prob(x2)
    assert eager.shape == batch and bool(jnp.all(jnp.isfinite(eager))), eager
    tol = {"rtol": 1e-5, "atol": 1e-5}
    np.testing.assert_allclose(got["jit"], eager, **tol)
    np.testing.assert_allclose(got["vmap"], np.stack([eager, eager2]), **tol)
    np.testing.assert_allclose(got["expand"], np.broadcast_to(eager, (4, *batch)), **tol)
    if batch:
        np.testing.assert_allclose(got["to_event"], np.sum(eager, -1), **tol)
    np.testing.assert_allclose(got["mask"], np.where(mask, eager, 0.0), **tol)


# -- slow: cdf/icdf, entropy, moments (float64) -------------------------------------------------

_N = 20_000  # draws for the moment and Monte Carlo entropy z-tests
# Fewer draws where drawing dominates the audit: GaussianCopulaBeta's draws go through
# Beta.icdf (an iterative betaincinv), 150 s for 20 000 on 2 cores. At 5 000 draws the 5-sigma
# moment test still flags a mean or variance off by 0.07 (mean) or 0.1 (variance) standard
# deviations, far below what a wrong marginal or copula gives (the marginals' moments are
# Beta's, checked at 20 000 draws under "Beta").
_N_MOMENTS: dict[str, int] = {"GaussianCopulaBeta": 5_000}
_Z = 5.0  # |z| bound of every z-test (fixed seeds)


def _implements(cls: type, method: str) -> bool:
    """Whether ``cls`` overrides ``method`` of the base ``Distribution`` (the docs table's rule)."""
    for klass in cls.__mro__:
        if klass is D.Distribution:
            return False
        if method in vars(klass):
            return True
    return False


def _univariate(d: D.Distribution) -> bool:
    return d.event_shape == ()


def _bounds(support: constraints.Constraint, batch: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Lower and upper ends of a 1-D support, broadcast to ``batch`` (infinite where open)."""
    low = getattr(support, "lower_bound", -np.inf)
    high = getattr(support, "upper_bound", np.inf)
    return np.broadcast_to(np.asarray(low, float), batch), np.broadcast_to(
        np.asarray(high, float), batch
    )


@pytest.mark.parametrize("name", _names("cdf"))
def test_cdf_icdf_round_trip(name: str):
    cls = getattr(D, name)
    if not (_implements(cls, "cdf") and _implements(cls, "icdf")):
        pytest.skip(f"{name} does not implement both cdf and icdf")
    with jax.enable_x64(True):
        d = EXAMPLES[name]()
        if d.support.is_discrete or not _univariate(d):
            pytest.skip(f"{name}: not a continuous univariate distribution")
        q_grid = jnp.linspace(0.02, 0.98, 25).reshape(-1, *[1] * len(d.batch_shape))
        q_grid = jnp.broadcast_to(q_grid, (25, *d.batch_shape))

        @jax.jit
        def round_trips(d):
            x = d.sample(jax.random.key(3), (200,))
            q = d.cdf(x)
            x_grid = d.icdf(q_grid)
            return x, q, d.icdf(q), x_grid, d.cdf(x_grid)

        try:
            x, q, x_back, x_grid, q_back = round_trips(d)
        except NotImplementedError:  # a wrapper whose base lacks one of them
            pytest.skip(f"{name}: the wrapped distribution lacks cdf or icdf")
        assert bool(jnp.all((q >= 0) & (q <= 1))), q
        np.testing.assert_allclose(x_back, x, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(q_back, q_grid, rtol=1e-6, atol=1e-9)


def _entropy_1d_quad(d: D.Distribution) -> np.ndarray:
    """``-int p log p`` per batch member by adaptive quadrature over the support."""
    from scipy import integrate

    batch = d.batch_shape
    low, high = _bounds(d.support, batch)
    lp = jax.jit(lambda t: d.log_prob(jnp.broadcast_to(t, batch)))
    out = np.empty(batch)
    for idx in np.ndindex(*batch):

        def integrand(t, idx=idx):
            logp = float(lp(t)[idx])
            return 0.0 if not np.isfinite(logp) else -np.exp(logp) * logp

        out[idx] = integrate.quad(integrand, low[idx], high[idx], limit=200, epsabs=1e-10)[0]
    return out


def _entropy_discrete_sum(d: D.Distribution) -> np.ndarray:
    """``-sum p log p`` over the support (truncated at 2000 values past the lower end)."""
    batch = d.batch_shape
    low, high = _bounds(d.support, batch)
    if d.support is constraints.boolean:
        low, high = np.zeros(batch), np.ones(batch)
    start = int(np.min(low))
    stop = int(min(np.max(high), start + 2000))
    grid = jnp.arange(start, stop + 1, dtype=float).reshape(-1, *[1] * len(batch))
    values = jnp.broadcast_to(grid, (grid.shape[0], *batch))
    inside = (values >= low) & (values <= high)
    logp = jnp.where(inside, d.log_prob(values), -jnp.inf)
    p = jnp.exp(logp)
    # tail bound: the truncated support must hold all but 1e-10 of the mass
    np.testing.assert_allclose(jnp.sum(p, 0), 1.0, atol=1e-10)
    return np.asarray(-jnp.sum(jnp.where(p > 0, p * logp, 0.0), 0))


@pytest.mark.parametrize("name", _names("entropy"))
def test_entropy_matches_numerical_integration(name: str):
    if not _implements(getattr(D, name), "entropy"):
        pytest.skip(f"{name} does not implement entropy")
    with jax.enable_x64(True):
        d = EXAMPLES[name]()
        h = _call(d, "entropy")
        if h is None:
            pytest.skip(f"{name} does not implement entropy")
        h = np.asarray(h)
        assert h.shape == d.batch_shape
        if isinstance(d, D.Delta):  # a point mass: -1 log 1
            np.testing.assert_allclose(h, 0.0, atol=1e-12)
        elif _univariate(d) and d.support.is_discrete:
            np.testing.assert_allclose(h, _entropy_discrete_sum(d), rtol=1e-8, atol=1e-10)
        elif _univariate(d):
            np.testing.assert_allclose(h, _entropy_1d_quad(d), rtol=1e-6, atol=1e-8)
        else:  # Monte Carlo: -E log p(X) with its standard error
            nlp = -np.asarray(jax.jit(lambda d: d.log_prob(d.sample(jax.random.key(4), (_N,))))(d))
            se = nlp.std(0) / np.sqrt(_N)
            z = (nlp.mean(0) - h) / np.where(se > 0, se, 1.0)
            assert np.all(np.abs(z) < _Z), (h, nlp.mean(0), se)


def _directional(d: D.Distribution) -> bool:
    """Circular or spherical support: ``mean``/``variance`` are the directional ones."""
    base = getattr(d.support, "base_constraint", d.support)
    return base is constraints.circular or d.support is constraints.sphere


def _check_directional_moments(d: D.Distribution, mean, var) -> None:
    """Angles: ``mean`` is the mean direction arg E[exp(i x)] (so E sin(x - mean) = 0) and
    ``variance`` the circular variance 1 - |E exp(i x)|; points on the sphere: ``mean`` is the
    direction of E[x] (so the part of E[x] orthogonal to it is 0)."""

    @jax.jit
    def stats(d):
        x = d.sample(jax.random.key(5), (_N,))
        if d.support is constraints.sphere:
            m = jnp.asarray(mean)
            r = x - jnp.sum(x * m, -1, keepdims=True) * m  # the part orthogonal to the mean
            return r.mean(0), r.std(0), None, None
        s = jnp.sin(x - mean)
        c = jnp.cos(x - jnp.arctan2(jnp.sin(x).mean(0), jnp.cos(x).mean(0)))
        return s.mean(0), s.std(0), 1.0 - c.mean(0), c.std(0)

    s_mean, s_sd, circ_var, c_sd = stats(d)
    z = np.asarray(s_mean) / np.asarray(s_sd) * np.sqrt(_N)
    assert np.all(np.abs(z[np.asarray(s_sd) > 0]) < _Z), (mean, s_mean)
    if var is not None and circ_var is not None:
        z = (np.asarray(circ_var) - np.asarray(var)) / np.asarray(c_sd) * np.sqrt(_N)
        assert np.all(np.abs(z) < _Z), (var, circ_var)


@pytest.mark.parametrize("name", _names("moments"))
def test_sample_moments_match_mean_and_variance(name: str):
    cls = getattr(D, name)
    if not (_implements(cls, "mean") or _implements(cls, "variance")):
        pytest.skip(f"{name} implements neither mean nor variance")
    with jax.enable_x64(True):
        d = EXAMPLES[name]()
        mean, var = _call(d, "mean"), _call(d, "variance")
        if mean is None and var is None:
            pytest.skip(f"{name} implements neither mean nor variance")
        shape = d.batch_shape + d.event_shape
        if _directional(d):
            _check_directional_moments(d, mean, var)
            return

        n = _N_MOMENTS.get(name, _N)

        @jax.jit
        def sample_moments(d):
            x = d.sample(jax.random.key(5), (n,)).astype(float)
            m = x.mean(0)
            return m, x.var(0), ((x - m) ** 2).var(0)

        m_hat, v_hat, v_var = map(np.asarray, sample_moments(d))
        if var is not None:
            var = np.broadcast_to(np.asarray(var, float), shape)
        sd = np.sqrt(var if var is not None and np.all(np.isfinite(var)) else v_hat)
        checked = 0
        if mean is not None:
            mean = np.broadcast_to(np.asarray(mean, float), shape)
            ok = np.isfinite(mean) & np.isfinite(sd)
            point = ok & (sd == 0)  # a degenerate coordinate: every draw equals the mean
            np.testing.assert_allclose(m_hat[point], mean[point], atol=1e-8)
            z = (m_hat - mean) / np.where(sd > 0, sd, 1.0) * np.sqrt(n)
            assert np.all(np.abs(z[ok & ~point]) < _Z), (mean, m_hat)
            checked += int(ok.sum())
        if var is not None:
            ok = np.isfinite(var)
            se = np.sqrt(v_var / n)
            point = ok & (se == 0)
            np.testing.assert_allclose(v_hat[point], var[point], atol=1e-8)
            z = (v_hat - var) / np.where(se > 0, se, 1.0)
            assert np.all(np.abs(z[ok & ~point]) < _Z), (var, v_hat)
            checked += int(ok.sum())
        if not checked:
            pytest.skip(f"{name}: mean and variance are infinite or undefined here")


# -- gradients against central finite differences (float64) ------------------------------------

_FD_STEP = 1e-6  # relative step of the central differences
# Tolerance, relative to the gradient's scale max(1, max |grad|): the central difference's
# truncation error is h^2 |f'''| / 6 ~ 1e-12 relative at h = 1e-6 (relative), and its rounding
# error is eps |f| / h ~ 1e-16 |f| / 1e-6 = 1e-10 |f|; both sit 1e4 below 1e-6 for the log
# densities and weighted sums of O(1..100) here, while a wrong derivative (a missing term, a
# wrong factor, a stop_gradient) is off by O(1) relative.
_FD_RTOL = 1e-6

# (distribution, leaf) -> why that leaf (or "value", log_prob's argument) is not
# differentiated. Float leaves not listed are all checked; every non-float leaf (integer counts,
# boolean masks) must be listed, so none is left out silently.
_GRAD_SKIPS: dict[tuple[str, str], str] = {
    ("BetaBinomial", "total_count"): "integer count",
    ("BinomialLogits", "total_count"): "integer count",
    ("BinomialProbs", "total_count"): "integer count",
    ("DirichletMultinomial", "total_count"): "integer count",
    ("MultinomialLogits", "total_count"): "integer count",
    ("MultinomialProbs", "total_count"): "integer count",
    ("DiscreteUniform", "low"): "integer bound of the support",
    ("DiscreteUniform", "high"): "integer bound of the support",
    ("IntervalCensoredDistribution", "left_censored"): "boolean censoring flag",
    ("IntervalCensoredDistribution", "right_censored"): "boolean censoring flag",
    ("LeftCensoredDistribution", "censored"): "boolean censoring flag",
    ("RightCensoredDistribution", "censored"): "boolean censoring flag",
    ("MaskedDistribution", "_mask"): "boolean mask",
    ("CAR", "adj_matrix"): "the 0/1 adjacency of the graph: structure, not a parameter",
    ("Delta", "v"): "the atom's location: log_prob is log_density at v and -inf elsewhere",
    ("Delta", "value"): "a point mass: log_prob is -inf off the atom",
}

# (distribution, leaf) -> why the reparameterized draw's gradient in that leaf is not compared
# with finite differences at a fixed key. These draws depend on the leaf through
# jax.random.gamma, whose gradient is the implicit one (d/da of the gamma quantile at a fixed
# uniform level), an unbiased coupling but not the rejection sampler's own path at a fixed key
# (a different, equally valid coupling). Where the draw is one monotone transform of one gamma
# draw (Gamma, Chi2, InverseGamma: _QUANTILE_COUPLED) the implicit gradient is checked instead
# against the quantile coupling's -dF(x; theta)/dtheta / p(x; theta), dF by central
# differences of the cdf; the composite samplers below (ratios, scale mixtures, Bartlett
# factors) have no such closed truth, so those leaves are skipped there.
_GAMMA_IMPLICIT = "draws depend on it through jax.random.gamma's implicit gradient"
_RSAMPLE_SKIPS: dict[tuple[str, str], str] = {
    ("Beta", "concentration0"): _GAMMA_IMPLICIT,
    ("Beta", "concentration1"): _GAMMA_IMPLICIT,
    ("BetaProportion", "concentration"): _GAMMA_IMPLICIT,
    ("BetaProportion", "concentration0"): _GAMMA_IMPLICIT,
    ("BetaProportion", "concentration1"): _GAMMA_IMPLICIT,
    ("Dirichlet", "concentration"): _GAMMA_IMPLICIT
    + " (and at key 13 a rejection step flips within the finite-difference step)",
    ("StudentT", "df"): _GAMMA_IMPLICIT,
    ("HalfStudentT", "df"): _GAMMA_IMPLICIT,
    ("MultivariateStudentT", "df"): _GAMMA_IMPLICIT,
    ("Wishart", "concentration"): _GAMMA_IMPLICIT + " (Bartlett's chi-square diagonal)",
    ("WishartCholesky", "concentration"): _GAMMA_IMPLICIT + " (Bartlett's chi-square diagonal)",
    ("InverseWishart", "concentration"): _GAMMA_IMPLICIT + " (Bartlett's chi-square diagonal)",
}
# Those skipped leaves are still checked in expectation: the Monte Carlo mean of the per-draw
# gradients over _N_GRAD_MC keys against the gradient of ``mean`` (a 5-sigma z-test, where
# ``mean`` is implemented): unbiasedness, the property the implicit gradient guarantees.
_N_GRAD_MC = 4_000
# univariate, drawn as a monotone function of one jax.random.gamma draw: the implicit gradient
# is the quantile coupling's, checked through the cdf
_QUANTILE_COUPLED = {"Gamma", "Chi2", "InverseGamma"}

# name -> (the value at which log_prob is differentiated, from the draw x; why not x itself)
_GRAD_VALUES: dict[str, tuple[Callable, str]] = {
    "IntervalCensoredDistribution": (
        lambda x: x + jnp.array([-0.3, 0.4]),
        "draws are point intervals (x, x), where log_prob is the density at x, discontinuous "
        "in upper - lower; a proper interval checks the censored likelihoods' gradients",
    ),
}
# name -> why log_prob's derivative in the value is checked only where the draw is not 0: an
# atom at 0 (log_prob there is the atom's log mass, -inf just below it)
_ATOM_AT_ZERO: dict[str, str] = {
    "HurdleGamma": "a point mass at 0 (the hurdle) next to a density on x > 0",
    "HurdleLogNormal": "a point mass at 0 (the hurdle) next to a density on x > 0",
}


def _named_leaves(d: D.Distribution) -> list[tuple[str, object, object]]:
    """``(path, leaf, constraint)`` for each leaf of ``d`` in ``jax.tree.leaves`` order.

    ``path`` joins attribute names (``base_dist.loc``); ``constraint`` is the owning
    distribution's ``arg_constraints`` entry for the leaf (``None`` where it has none).
    """
    from jppl.distributions.util import PyTreeObject

    out = []

    def walk(obj, path, constraint):
        if isinstance(obj, PyTreeObject):
            children, (keys, *_) = obj._tree_flatten()
            arg_constraints = getattr(obj, "arg_constraints", {})
            for key, child in zip(keys, children, strict=True):
                walk(child, f"{path}.{key}" if path else key, arg_constraints.get(key))
        elif isinstance(obj, (list, tuple)):
            for i, child in enumerate(obj):
                walk(child, f"{path}[{i}]", None)
        else:
            out.append((path, obj, constraint))

    walk(d, "", None)
    assert [leaf for _, leaf, _ in out] == jax.tree.leaves(d)  # same order as JAX's
    return out


def _directions(constraint, shape: tuple[int, ...]) -> np.ndarray:
    """Perturbation directions ``(m, *shape)`` that keep a point inside ``constraint``.

    Simplex and zero-sum points move along zero-sum directions, positive definite and
    correlation matrices along symmetric ones (off the diagonal for correlations), Cholesky
    factors in their lower triangle (strictly, for correlation Cholesky factors), circulant
    covariance rows symmetrically (lags k and n - k together); every other leaf coordinate by
    coordinate (the step is small enough to stay inside open bounds).
    """
    c = constraint
    while isinstance(c, constraints.independent):
        c = c.base_constraint
    size = int(np.prod(shape))
    eye = np.eye(size).reshape(size, *shape)
    if c is constraints.simplex or isinstance(c, constraints.zero_sum):
        for axis in range(1, getattr(c, "event_dim", 1) + 1):
            eye = eye - eye.mean(-axis, keepdims=True)
        return eye
    if c is constraints.positive_definite_circulant_vector:
        n = shape[-1]
        lag = np.arange(size) % n
        return (eye + np.roll(np.flip(eye, -1), 1, -1))[lag <= n // 2]
    if isinstance(c, (type(constraints.lower_cholesky), type(constraints.positive_definite))):
        i, j = np.unravel_index(np.arange(size), shape)[-2:]
        strict = c is constraints.corr_matrix or c is constraints.corr_cholesky
        if isinstance(c, type(constraints.positive_definite)):
            eye = eye + np.swapaxes(eye, -1, -2)
        return eye[i > j] if strict else eye[i >= j]
    return eye


def _block_directions(blocks: list[np.ndarray], labels: list[str]):
    """Directions ``(m, n)`` in the raveled concatenation of the blocks, labelled ``leaf[k]``."""
    sizes = [int(np.prod(b.shape[1:])) for b in blocks]
    total, start = sum(sizes), 0
    rows, names = [], []
    for block, size, label in zip(blocks, sizes, labels, strict=True):
        for k, v in enumerate(block.reshape(len(block), size)):
            row = np.zeros(total)
            row[start : start + size] = v
            rows.append(row)
            names.append(f"{label}[{k}]")
        start += size
    return (np.stack(rows) if rows else np.zeros((0, total))), names


def _steps(z0, directions: np.ndarray):
    """Per-direction steps ``h`` (relative to the coordinates moved, at least 0.1 of one) and
    the ``2m`` points ``z0 + h v``, ``z0 - h v``."""
    h = _FD_STEP * jnp.maximum(0.1, jnp.max(jnp.abs(z0) * (directions != 0), axis=1, initial=0.0))
    signed = jnp.concatenate([h, -h])[:, None] * jnp.concatenate([directions, directions])
    return h, z0 + signed


def _central(f_steps, h):
    m = h.shape[0]
    return (f_steps[:m] - f_steps[m:]) / (2 * h.reshape(m, *[1] * (f_steps.ndim - 1)))


@functools.cache
def _gradient_checks(name: str):
    """Both gradient checks of one example in one compiled program (float64).

    Returns ``{"log_prob": (ad, fd, labels), "rsample": (ad, fd, labels) or None}``, or the
    exception that building or running the program raised (each test re-raises it).
    """
    from jax.flatten_util import ravel_pytree

    try:
        with jax.enable_x64(True):
            d = EXAMPLES[name]()
            leaves, treedef = jax.tree.flatten(d)
            idx, blocks, labels = [], [], []
            for i, (path, leaf, constraint) in enumerate(_named_leaves(d)):
                if (name, path) in _GRAD_SKIPS:
                    continue
                assert jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.floating), (
                    f"{name}.{path} is not a float leaf: list it in _GRAD_SKIPS with a reason"
                )
                idx.append(i)
                blocks.append(_directions(constraint, np.shape(leaf)))
                labels.append(path)
            theta0, unravel = ravel_pytree([leaves[i] for i in idx])

            def rebuild(theta):
                new = list(leaves)
                for i, leaf in zip(idx, unravel(theta), strict=True):
                    new[i] = leaf
                return jax.tree.unflatten(treedef, new)

            key = jax.random.key(13)
            shape = d.batch_shape + d.event_shape
            weights = jax.random.normal(jax.random.key(12), shape)
            rsample = d.has_rsample and theta0.size > 0
            keep = [(name, label) not in _RSAMPLE_SKIPS for label in labels]
            rs_dirs, rs_names = _block_directions(
                [b if k else 0 * b for b, k in zip(blocks, keep, strict=True)], labels
            )
            mc_dirs, mc_names = _block_directions(
                [0 * b if k else b for b, k in zip(blocks, keep, strict=True)], labels
            )
            mc_rows = np.flatnonzero(np.any(mc_dirs != 0, axis=1))
            if _call(d, "mean") is None:
                mc_rows = mc_rows[:0]
            mc_dirs, mc_names = mc_dirs[mc_rows], [mc_names[k] for k in mc_rows]
            rs_rows = np.flatnonzero(np.any(rs_dirs != 0, axis=1))
            rs_dirs, rs_names = rs_dirs[rs_rows], [rs_names[k] for k in rs_rows]
            x0_shape = jax.eval_shape(lambda d: d.sample(key), d)
            with_value = (
                not d.support.is_discrete
                and (name, "value") not in _GRAD_SKIPS
                and int(np.prod(x0_shape.shape)) > 0
            )
            lp_dirs, lp_names = _block_directions(
                blocks + ([_directions(d.support, x0_shape.shape)] if with_value else []),
                labels + (["value"] if with_value else []),
            )
            to_value = _GRAD_VALUES.get(name, (lambda x: x, ""))[0]

            @jax.jit
            def program(theta0):
                out = {}
                if rsample:

                    def draw(theta):
                        return rebuild(theta).sample(key)

                    x0, vjp = jax.vjp(draw, theta0)
                    ad = rs_dirs @ vjp(weights.astype(x0.dtype))[0]
                    if name in _QUANTILE_COUPLED:  # x = F^-1(u; theta): dx = -dF / p
                        h, points = _steps(theta0, rs_dirs)
                        cdfs = jax.vmap(lambda t: rebuild(t).cdf(x0))(points)
                        dx = -_central(cdfs, h) / jnp.exp(d.log_prob(x0))
                        fd = jnp.sum(dx * weights, axis=tuple(range(1, dx.ndim)))
                    else:
                        h, points = _steps(theta0, rs_dirs)
                        draws = jax.vmap(draw)(points)
                        fd = _central(jnp.sum(draws * weights, range(1, draws.ndim)), h)
                    out["rsample"] = (ad, fd)
                    if len(mc_names):  # E[d/dtheta sum(x w)] against d/dtheta sum(mean w)
                        keys = jax.random.split(jax.random.key(14), _N_GRAD_MC)
                        w = weights.astype(x0.dtype)

                        def per_draw(k):
                            return jax.grad(lambda t: jnp.sum(rebuild(t).sample(k) * w))(theta0)

                        per = jax.vmap(per_draw)(keys) @ mc_dirs.T
                        truth = jax.grad(lambda t: jnp.sum(rebuild(t).mean * w))(theta0)
                        se = per.std(0) / np.sqrt(_N_GRAD_MC)
                        out["rsample_mean"] = (per.mean(0), se, mc_dirs @ truth)
                else:
                    x0 = d.sample(key)
                x0 = jax.lax.stop_gradient(to_value(x0))
                z0, unravel_z = ravel_pytree((theta0, x0 if with_value else None))

                def log_prob_sum(z):
                    theta, x = unravel_z(z)
                    return rebuild(theta).log_prob(x0 if x is None else x).sum()

                dirs = jnp.asarray(lp_dirs)
                if name in _ATOM_AT_ZERO and with_value:  # drop moves of a value at the atom
                    n_theta = theta0.size
                    off_atom = jnp.concatenate([jnp.ones(n_theta, bool), z0[n_theta:] != 0])
                    dirs = dirs * off_atom
                lp0, grad = jax.value_and_grad(log_prob_sum)(z0)
                h, points = _steps(z0, dirs)
                fd = _central(jax.vmap(log_prob_sum)(points), h)
                out["log_prob"] = (dirs @ grad, fd, lp0)
                return out

            got = jax.tree.map(np.asarray, program(theta0))
        lp_ad, lp_fd, lp0 = got["log_prob"]
        assert np.isfinite(lp0), f"{name}: log_prob at the draw is {lp0}"
        result = {"log_prob": (lp_ad, lp_fd, lp_names), "rsample": None}
        if rsample:
            result["rsample"] = (*got["rsample"], rs_names)
            if "rsample_mean" in got:
                result["rsample_mean"] = (*got["rsample_mean"], mc_names)
        return result
    except Exception as error:  # noqa: BLE001 (re-raised by each test)
        return error


def _assert_gradients_match(ad, fd, labels) -> None:
    scale = max(1.0, float(np.max(np.abs(ad), initial=0.0)))
    bad = ~(np.abs(ad - fd) <= _FD_RTOL * scale)
    assert not bad.any(), [(labels[k], ad[k], fd[k]) for k in np.flatnonzero(bad)]


@pytest.mark.parametrize("name", _names("log_prob_grad"))
def test_log_prob_gradients_match_finite_differences(name: str):
    """d/dtheta and d/dvalue of log_prob(draw).sum() against central differences."""
    got = _gradient_checks(name)
    if isinstance(got, Exception):
        raise got
    ad, fd, labels = got["log_prob"]
    if not labels:
        pytest.skip(f"{name}: nothing to differentiate")
    _assert_gradients_match(ad, fd, labels)


@pytest.mark.parametrize("name", _names("rsample_grad"))
def test_rsample_gradients_match_finite_differences(name: str):
    """d/dtheta of sum(sample(key, theta) * w) against central differences at the same key."""
    if not EXAMPLES[name]().has_rsample:
        pytest.skip(f"{name}: no reparameterized sampler")
    got = _gradient_checks(name)
    if isinstance(got, Exception):
        raise got
    if got["rsample"] is None:
        pytest.skip(f"{name}: no parameters")
    ad, fd, labels = got["rsample"]
    if "rsample_mean" in got:  # the leaves in _RSAMPLE_SKIPS, in expectation
        mc_mean, se, truth, mc_labels = got["rsample_mean"]
        z = (mc_mean - truth) / np.where(se > 0, se, 1.0)
        assert np.all(np.abs(z) < _Z), [
            (mc_labels[k], mc_mean[k], se[k], truth[k]) for k in np.flatnonzero(abs(z) >= _Z)
        ]
        np.testing.assert_allclose(mc_mean[se == 0], truth[se == 0], rtol=1e-6, atol=1e-9)
    elif not labels:
        pytest.skip(f"{name}: every parameter is in _RSAMPLE_SKIPS, and it has no mean")
    _assert_gradients_match(ad, fd, labels)
