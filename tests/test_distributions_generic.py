"""Generic checks over every distribution exported by ``jppl.distributions`` (issue 17).

An audit, not part of CI's steps (about 2 min for the per-distribution checks and 13 min for
the numerical ones on 2 cores, mostly compiling): ``python -m pytest -m audit
tests/test_distributions_generic.py``. Every test here is marked ``audit``, which the default
suite and the long-test step leave out.

One example instance per exported ``Distribution`` subclass (``EXAMPLES``, batched where the
class allows). The default suite checks, per distribution in one compiled program, that it is a
pytree that crosses ``jit`` and ``vmap`` (leaves stacked along a new axis) and that ``expand``,
``to_event`` and ``mask`` give the log densities they must. The slow suite (float64) checks
``icdf(cdf(x)) = x`` and ``cdf(icdf(q)) = q``, ``entropy`` against quadrature (1-D continuous),
an exhaustive sum (1-D discrete, truncated with a mass bound) or a Monte Carlo z-test
(multivariate), and sample moments against ``mean``/``variance`` (z-tests, circular and
spherical supports by their directional moments).

Methods not implemented (the class does not override the base ``Distribution``'s; wrappers
such as ``ExpandedDistribution`` delegate and are tested where their base implements it):

mean (10): DoublyTruncatedPowerLaw, EulerMaruyama, FoldedDistribution, ImproperUniform,
    IntervalCensoredDistribution, LKJCholesky, LeftCensoredDistribution,
    RightCensoredDistribution, TruncatedPolyaGamma, Unit
variance (16): CAR, DoublyTruncatedPowerLaw, EulerMaruyama, FoldedDistribution, Gompertz,
    ImproperUniform, IntervalCensoredDistribution, LKJ, LKJCholesky, LeftCensoredDistribution,
    ProjectedNormal, RightCensoredDistribution, SineBivariateVonMises, SineSkewed,
    TruncatedPolyaGamma, Unit
entropy (60): BernoulliLogitGLM, BetaBinomial, BetaNegativeBinomial, BinomialLogits,
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
    TwoSidedTruncatedGamma, Unit, VonMises, Wishart, WishartCholesky, ZeroInflatedLogits,
    ZeroInflatedPoisson, ZeroInflatedProbs, ZeroSumNormal
cdf (61): BernoulliLogitGLM, BernoulliLogits, BernoulliProbs, BetaBinomial,
    BetaNegativeBinomial, BinomialLogits, BinomialProbs, CAR, CategoricalLogits,
    CategoricalProbs, CirculantNormal, Delta, Dirichlet, DirichletMultinomial, DiscreteUniform,
    EulerMaruyama, ExpandedDistribution, GammaPoisson, GaussianCopula, GaussianCopulaBeta,
    GaussianRandomWalk, GaussianStateSpace, GeometricLogits, GeometricProbs, HurdleGamma,
    HurdleLogNormal, HurdleLogits, HurdlePoisson, HurdleProbs, ImproperUniform, Independent,
    IntervalCensoredDistribution, InverseWishart, InverseWishartCholesky, LKJ, LKJCholesky,
    LeftCensoredDistribution, LowRankMultivariateNormal, MaskedDistribution, MatrixNormal,
    MultinomialLogits, MultinomialProbs, MultivariateNormal, MultivariateStudentT,
    NegativeBinomial2, NegativeBinomialLogits, NegativeBinomialProbs, OrderedLogistic,
    ProjectedNormal, RightCensoredDistribution, SineBivariateVonMises, SineSkewed,
    TruncatedPolyaGamma, Unit, VonMises, Wishart, WishartCholesky, ZeroInflatedLogits,
    ZeroInflatedPoisson, ZeroInflatedProbs, ZeroSumNormal
icdf (72): BernoulliLogitGLM, BernoulliLogits, BernoulliProbs, Beta, BetaBinomial,
    BetaNegativeBinomial, BetaProportion, BinomialLogits, BinomialProbs, CAR, CategoricalLogits,
    CategoricalProbs, Chi2, CirculantNormal, Delta, Dirichlet, DirichletMultinomial,
    DiscreteUniform, EulerMaruyama, ExpandedDistribution, FoldedDistribution, Gamma,
    GammaPoisson, GaussianCopula, GaussianCopulaBeta, GaussianRandomWalk, GaussianStateSpace,
    GeometricLogits, GeometricProbs, HalfStudentT, HurdleGamma, HurdleLogNormal, HurdleLogits,
    HurdlePoisson, HurdleProbs, ImproperUniform, Independent, IntervalCensoredDistribution,
    InverseGamma, InverseWishart, InverseWishartCholesky, LKJ, LKJCholesky,
    LeftCensoredDistribution, LowRankMultivariateNormal, MaskedDistribution, MatrixNormal,
    MixtureGeneral, MixtureSameFamily, MultinomialLogits, MultinomialProbs, MultivariateNormal,
    MultivariateStudentT, NegativeBinomial2, NegativeBinomialLogits, NegativeBinomialProbs,
    OrderedLogistic, Poisson, ProjectedNormal, RightCensoredDistribution, SineBivariateVonMises,
    SineSkewed, StudentT, TruncatedPolyaGamma, Unit, VonMises, Wishart, WishartCholesky,
    ZeroInflatedLogits, ZeroInflatedPoisson, ZeroInflatedProbs, ZeroSumNormal
"""

from __future__ import annotations

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
XFAILS: dict[tuple[str, str], str] = {
    ("moments", "SineSkewed"): (
        "SineSkewed.mean returns the base distribution's mean (loc), not the circular mean of "
        "the skewed density, which moves towards loc + pi/2 by the skewness"
    ),
}


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

        @jax.jit
        def sample_moments(d):
            x = d.sample(jax.random.key(5), (_N,)).astype(float)
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
            z = (m_hat - mean) / np.where(sd > 0, sd, 1.0) * np.sqrt(_N)
            assert np.all(np.abs(z[ok & ~point]) < _Z), (mean, m_hat)
            checked += int(ok.sum())
        if var is not None:
            ok = np.isfinite(var)
            se = np.sqrt(v_var / _N)
            point = ok & (se == 0)
            np.testing.assert_allclose(v_hat[point], var[point], atol=1e-8)
            z = (v_hat - var) / np.where(se > 0, se, 1.0)
            assert np.all(np.abs(z[ok & ~point]) < _Z), (var, v_hat)
            checked += int(ok.sum())
        if not checked:
            pytest.skip(f"{name}: mean and variance are infinite or undefined here")
