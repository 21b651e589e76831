"""NumPyro fidelity of constraints, transforms and TruncatedNormal (issue 15).

Truths are independent of jppl and NumPyro: scipy.stats.truncnorm, numerical integration,
Jacobians from jax.jacfwd, hand-written formulas.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import jppl
import jppl.distributions as dist
from jppl.distributions import constraints
from jppl.distributions import transforms as T
from jppl.distributions.transforms import biject_to
from jppl.infer import MCMC, NUTS


# ---------------------------------------------------------------------------------------------
# TruncatedNormal
# ---------------------------------------------------------------------------------------------
def _scipy_tn(loc, scale, low, high):
    a = -np.inf if low is None else (low - loc) / scale
    b = np.inf if high is None else (high - loc) / scale
    return stats.truncnorm(a, b, loc=loc, scale=scale)


@pytest.mark.parametrize(
    "low,high,kind",
    [
        (0.0, None, constraints._GreaterThan),
        (None, 2.0, constraints._LessThan),
        (0.0, 2.0, constraints._Interval),
        (-jnp.inf, 2.0, constraints._LessThan),  # an explicit infinite bound is no bound
    ],
)
def test_truncated_normal_support_kind_and_finite_bijection(low, high, kind):
    d = dist.TruncatedNormal(loc=1.0, scale=0.5, low=low, high=high)
    assert type(d.support) is kind
    t = biject_to(d.support)
    y = t(jnp.linspace(-5.0, 5.0, 11))
    assert bool(jnp.all(jnp.isfinite(y))), y
    assert bool(jnp.all(d.support(y)))
    # strictly monotone: distinct unconstrained points stay distinct
    steps = jnp.diff(y)
    assert bool(jnp.all(steps > 0) | jnp.all(steps < 0)), y
    assert bool(jnp.all(jnp.isfinite(d.log_prob(y))))


def test_truncated_normal_jit_keeps_support_kind():
    d = dist.TruncatedNormal(loc=1.0, scale=0.5, low=0.0)
    d2 = jax.jit(lambda d: d)(d)
    assert type(d2.support) is constraints._GreaterThan
    lp = jax.jit(lambda loc: dist.TruncatedNormal(loc, 0.5, low=0.0).log_prob(0.3))(1.0)
    np.testing.assert_allclose(lp, _scipy_tn(1.0, 0.5, 0.0, None).logpdf(0.3), rtol=1e-6)


def test_biject_to_rejects_infinite_bounds():
    with pytest.raises(ValueError, match="finite"):
        biject_to(constraints.interval(0.0, jnp.inf))
    with pytest.raises(ValueError, match="greater_than"):
        biject_to(constraints.greater_than(-np.inf))


TN_CASES = [
    (1.0, 0.5, 0.0, None),  # the one-sided case
    (0.0, 1.0, 8.0, None),  # far lower bound
    (0.0, 1.0, None, -8.0),  # far upper bound
    (2.0, 3.0, None, 1.0),
    (0.0, 1.0, -1.0, 2.0),
    (0.0, 1.0, 8.0, 9.0),  # two-sided, far out
]


@pytest.mark.parametrize("loc,scale,low,high", TN_CASES)
def test_truncated_normal_matches_scipy_float64(loc, scale, low, high):
    ref = _scipy_tn(loc, scale, low, high)
    q = np.array([1e-6, 0.01, 0.3, 0.5, 0.9, 0.999])
    xs = ref.ppf(q)
    with jax.enable_x64(True):
        d = dist.TruncatedNormal(jnp.float64(loc), jnp.float64(scale), low=low, high=high)
        lp = np.asarray(d.log_prob(jnp.asarray(xs)))
        cdf = np.asarray(d.cdf(jnp.asarray(xs)))
        icdf = np.asarray(d.icdf(jnp.asarray(q)))
        mean, var = float(d.mean), float(d.variance)
    np.testing.assert_allclose(lp, ref.logpdf(xs), rtol=1e-10)
    np.testing.assert_allclose(cdf, ref.cdf(xs), rtol=1e-9)  # relative, small levels too
    np.testing.assert_allclose(icdf, ref.ppf(q), rtol=1e-10, atol=1e-12 * ref.std())
    np.testing.assert_allclose(mean, ref.mean(), rtol=1e-11)
    np.testing.assert_allclose(var, ref.var(), rtol=1e-8)


@pytest.mark.parametrize("loc,scale,low,high", TN_CASES)
def test_truncated_normal_float32_moments_and_cdf(loc, scale, low, high):
    ref = _scipy_tn(loc, scale, low, high)
    d = dist.TruncatedNormal(loc, scale, low=low, high=high)
    # the closed forms 1 + (a phi(a) - b phi(b)) / Z - m^2 lost ~0.5% of the variance at 8 sd
    np.testing.assert_allclose(float(d.variance), ref.var(), rtol=2e-5)
    assert abs(float(d.mean) - ref.mean()) < 1e-5 * ref.std() + 1e-6 * abs(ref.mean())
    # small cdf levels stay relatively accurate (not computed as 1 - (1 - cdf))
    x = jnp.float32(ref.ppf(0.01))
    np.testing.assert_allclose(float(d.cdf(x)), ref.cdf(float(x)), rtol=2e-3)


def _tail_moments_by_quadrature(u):
    """Mean and variance of N(0, 1) truncated to [u, inf), by integrating the density ratio
    phi(u + t) / phi(u) = exp(-u t - t^2 / 2) over t >= 0 in float64."""
    w = lambda t, k: t**k * math.exp(-u * t - 0.5 * t * t)  # noqa: E731
    m0, m1, m2 = (
        integrate.quad(w, 0, np.inf, args=(k,), epsabs=0, epsrel=1e-13)[0] for k in range(3)
    )
    e1 = m1 / m0
    return u + e1, m2 / m0 - e1 * e1


@pytest.mark.parametrize("u", [8.0, 30.0])
def test_truncated_normal_far_tail_moments_by_quadrature(u):
    mean, var = _tail_moments_by_quadrature(u)
    with jax.enable_x64(True):
        d = dist.TruncatedNormal(0.0, 1.0, low=u)
        np.testing.assert_allclose(float(d.mean), mean, rtol=1e-13)
        np.testing.assert_allclose(float(d.variance), var, rtol=1e-10)
        d = dist.TruncatedNormal(0.0, 1.0, high=-u)
        np.testing.assert_allclose(float(d.mean), -mean, rtol=1e-13)
        np.testing.assert_allclose(float(d.variance), var, rtol=1e-10)
    d = dist.TruncatedNormal(0.0, 1.0, low=u)  # float32
    np.testing.assert_allclose(float(d.variance), var, rtol=1e-5)


@pytest.mark.parametrize("loc,scale,low,high", TN_CASES[:3])
def test_truncated_normal_samples_follow_scipy(loc, scale, low, high):
    ref = _scipy_tn(loc, scale, low, high)
    d = dist.TruncatedNormal(loc, scale, low=low, high=high)
    x = np.asarray(d.sample(jax.random.key(11), (20_000,)), np.float64)
    assert bool(np.all(np.asarray(d.support(jnp.asarray(x)))))
    assert stats.kstest(x, ref.cdf).pvalue > 1e-3


def test_nuts_on_one_sided_truncated_normal_latent():
    def model():
        jppl.sample("x", dist.TruncatedNormal(loc=1.0, scale=0.5, low=0.0))

    mcmc = MCMC(NUTS(model), num_warmup=500, num_samples=4000, progress_bar=False)
    mcmc.run(jax.random.key(0))
    x = np.asarray(mcmc.get_samples()["x"], np.float64)
    ref = _scipy_tn(1.0, 0.5, 0.0, None)
    assert np.all(np.isfinite(x)) and np.all(x > 0)
    # 4000 draws, ESS >= ~1000 for this easy target: standard error <= 0.015
    assert abs(x.mean() - ref.mean()) < 0.05, (x.mean(), ref.mean())
    assert abs(x.std() - ref.std()) < 0.05, (x.std(), ref.std())


# ---------------------------------------------------------------------------------------------
# constraints and transforms as pytrees, and eq
# ---------------------------------------------------------------------------------------------
_LO = jnp.array([0.0, 1.0, -2.0])
_HI = jnp.array([1.0, 4.0, 0.5])
_L = jnp.array([[1.0, 0.0], [0.6, 0.8]])  # a correlation Cholesky factor

# (name in constraints.__all__, instance, a feasible value)
CONSTRAINTS = [
    ("boolean", constraints.boolean, jnp.array([0.0, 1.0])),
    (
        "cat",
        constraints.cat([constraints.positive, constraints.real], dim=-1, lengths=(2, 1)),
        jnp.array([0.5, 2.0, -1.0]),
    ),
    ("complex", constraints.complex, jnp.array([1.0 + 2.0j, -0.5j])),
    ("circular", constraints.circular, jnp.array([0.5, -3.0])),
    ("corr_cholesky", constraints.corr_cholesky, _L),
    ("corr_matrix", constraints.corr_matrix, _L @ _L.T),
    ("dependent", constraints.dependent, None),
    ("greater_than", constraints.greater_than(_LO), _LO + 1.0),
    ("greater_than", constraints.greater_than(2.0), jnp.array([3.0])),
    ("greater_than_eq", constraints.greater_than_eq(_LO), _LO),
    ("independent", constraints.independent(constraints.interval(_LO, _HI), 1), _LO),
    ("integer_interval", constraints.integer_interval(0, 5), jnp.array([0.0, 3.0])),
    ("integer_greater_than", constraints.integer_greater_than(2), jnp.array([2.0, 7.0])),
    ("interval", constraints.interval(_LO, _HI), (_LO + _HI) / 2),
    ("interval", constraints.interval(-1.0, 1.0), jnp.array([0.0])),
    ("less_than", constraints.less_than(_HI), _HI - 1.0),
    ("less_than_eq", constraints.less_than_eq(_HI), _HI),
    ("l1_ball", constraints.l1_ball, jnp.array([0.2, -0.5, 0.3])),
    ("lower_cholesky", constraints.lower_cholesky, _L),
    ("multinomial", constraints.multinomial(4), jnp.array([1.0, 3.0])),
    ("nonnegative", constraints.nonnegative, jnp.array([0.0, 2.0])),
    ("nonnegative_integer", constraints.nonnegative_integer, jnp.array([0.0, 2.0])),
    ("open_interval", constraints.open_interval(_LO, _HI), (_LO + _HI) / 2),
    ("ordered_vector", constraints.ordered_vector, jnp.array([-1.0, 0.0, 3.0])),
    ("positive", constraints.positive, jnp.array([0.1, 2.0])),
    ("positive_definite", constraints.positive_definite, _L @ _L.T + jnp.eye(2)),
    (
        "positive_definite_circulant_vector",
        constraints.positive_definite_circulant_vector,
        jnp.array([2.0, 0.5, 0.0, 0.5]),
    ),
    ("positive_semidefinite", constraints.positive_semidefinite, jnp.ones((2, 2))),
    ("positive_integer", constraints.positive_integer, jnp.array([1.0, 2.0])),
    ("positive_ordered_vector", constraints.positive_ordered_vector, jnp.array([0.5, 1.0])),
    ("real", constraints.real, jnp.array([-1.0, 2.0])),
    ("real_matrix", constraints.real_matrix, _L),
    ("real_vector", constraints.real_vector, _LO),
    ("scaled_unit_lower_cholesky", constraints.scaled_unit_lower_cholesky, _L),
    ("simplex", constraints.simplex, jnp.array([0.2, 0.3, 0.5])),
    ("softplus_positive", constraints.softplus_positive, jnp.array([0.1, 2.0])),
    ("softplus_lower_cholesky", constraints.softplus_lower_cholesky, _L),
    ("sphere", constraints.sphere, jnp.array([0.6, 0.0, -0.8])),
    ("unit_interval", constraints.unit_interval, jnp.array([0.0, 0.4])),
    ("zero_sum", constraints.zero_sum(event_dim=1), jnp.array([1.0, -3.0, 2.0])),
    ("zero_sum", constraints.zero_sum(event_dim=2), jnp.array([[1.0, -1.0], [-1.0, 1.0]])),
]


def test_constraint_list_is_complete():
    public = set(constraints.__all__) - {"Constraint", "is_dependent"}  # a function
    assert public <= {name for name, _, _ in CONSTRAINTS}, public - {n for n, _, _ in CONSTRAINTS}


def _identity(tree):
    return tree


@pytest.mark.parametrize("name,c,value", CONSTRAINTS, ids=[repr(c) for _, c, _ in CONSTRAINTS])
def test_constraint_jit_round_trip(name, c, value):
    leaves, treedef = jax.tree_util.tree_flatten(c)
    # array parameters are the leaves; static config (floats, event_dim) is aux data
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)
    c2 = jax.jit(_identity)(c)
    assert type(c2) is type(c)
    assert c2.eq(c) and c.eq(c2) and c2 == c
    assert c2.event_dim == c.event_dim and c2.is_discrete == c.is_discrete
    if not leaves:  # parameter-free module singletons stay the same object
        assert jax.tree_util.tree_unflatten(treedef, leaves) == c
    if c in (constraints.real, constraints.positive, constraints.dependent):
        assert c2 is c
    # NumPyro's explicit flatten/unflatten methods
    params, aux = c.tree_flatten()
    assert type(c).tree_unflatten(aux, params) == c
    if value is not None:
        ok = jax.jit(lambda con, v: con(v))(c, value)
        np.testing.assert_array_equal(ok, c(value))
        assert bool(jnp.all(ok)), (c, value)


def test_constraint_vmap_over_array_parameters():
    c = constraints.interval(_LO, _HI)
    x = jnp.array([0.5, 5.0, 0.0])
    out = jax.vmap(lambda con, v: con(v))(c, x)
    np.testing.assert_array_equal(out, [True, False, True])
    # returned from vmap with a batched leaf
    lows = jax.vmap(lambda lo: constraints.greater_than(lo))(_LO)
    assert isinstance(lows, constraints._GreaterThan)
    np.testing.assert_array_equal(lows.lower_bound, _LO)


def test_constraint_eq_semantics():
    assert constraints.interval(0.0, 1.0).eq(constraints.interval(0.0, 1.0))
    assert not constraints.interval(0.0, 1.0).eq(constraints.interval(0.0, 2.0))
    assert constraints.interval(_LO, _HI).eq(constraints.interval(_LO + 0.0, _HI * 1.0))
    assert constraints.unit_interval == constraints.interval(0.0, 1.0)
    assert constraints.positive == constraints.greater_than(0.0)
    assert constraints.greater_than(0.0) != constraints.greater_than_eq(0.0)
    assert constraints.real_vector == constraints.independent(constraints.real, 1)
    assert constraints.real_vector != constraints.independent(constraints.real, 2)
    assert constraints.zero_sum(1) == constraints.zero_sum(event_dim=1)
    assert constraints.zero_sum(1) != constraints.zero_sum(2)
    assert constraints.positive != constraints.real and not constraints.real.eq(1.0)
    assert hash(constraints.real_vector) == hash(constraints.independent(constraints.real, 1))
    # traced parameters: an array result
    out = jax.jit(lambda lo: constraints.greater_than(lo).eq(constraints.greater_than(0.0)))
    assert isinstance(out(0.0), jax.Array)
    assert bool(out(0.0)) and not bool(out(1.0))


def _tril_vec(n):
    return jnp.linspace(-0.5, 0.5, n)


# (class name, instance, an input in its domain)
TRANSFORMS = [
    ("AbsTransform", T.AbsTransform(), jnp.array([-1.0, 2.0])),
    (
        "CatTransform",
        T.CatTransform([T.ExpTransform(), T.IdentityTransform()], dim=-1, lengths=(1, 2)),
        jnp.array([0.1, -1.0, 2.0]),
    ),
    ("ComplexTransform", T.ComplexTransform(), jnp.array([[0.1, -1.0], [2.0, 0.5]])),
    (
        "DiscreteCosineTransform",
        T.DiscreteCosineTransform(smooth=1.0),
        jnp.array([0.1, -1.0, 2.0]),
    ),
    ("HaarTransform", T.HaarTransform(flip=True), jnp.array([0.1, -1.0, 2.0, 0.5, 1.5])),
    ("L1BallTransform", T.L1BallTransform(), jnp.array([0.1, -1.0, 2.0])),
    (
        "PackRealFastFourierCoefficientsTransform",
        T.PackRealFastFourierCoefficientsTransform((4,)),
        jnp.array([0.1, -1.0, 2.0, 0.5]),
    ),
    (
        "RealFastFourierTransform",
        T.RealFastFourierTransform((4,)),
        jnp.array([0.1, -1.0, 2.0, 0.5]),
    ),
    (
        "RecursiveLinearTransform",
        T.RecursiveLinearTransform(jnp.array([[0.5, 1.0], [0.0, 0.5]]), jnp.array([1.0, -1.0])),
        jnp.ones((3, 2)),
    ),
    (
        "SimplexToOrderedTransform",
        T.SimplexToOrderedTransform(jnp.array(0.5)),
        jnp.array([0.2, 0.3, 0.5]),
    ),
    ("AffineTransform", T.AffineTransform(_LO, _HI + 2.0), jnp.array([0.3, -1.0, 2.0])),
    ("AffineTransform", T.AffineTransform(1.0, 2.0), jnp.array([0.3])),
    ("CholeskyTransform", T.CholeskyTransform(), _L @ _L.T + jnp.eye(2)),
    ("CircularTransform", T.CircularTransform(), jnp.array([0.3, 5.0])),
    (
        "ComposeTransform",
        T.ComposeTransform([T.ExpTransform(), T.AffineTransform(_LO, 2.0)]),
        jnp.array([0.1, 0.2, 0.3]),
    ),
    ("CorrCholeskyTransform", T.CorrCholeskyTransform(), _tril_vec(3)),
    ("CorrMatrixCholeskyTransform", T.CorrMatrixCholeskyTransform(), _L @ _L.T),
    ("ExpTransform", T.ExpTransform(), jnp.array([0.1, -1.0])),
    ("IdentityTransform", T.IdentityTransform(), jnp.array([0.1, -1.0])),
    ("IndependentTransform", T.IndependentTransform(T.AffineTransform(_LO, 3.0), 1), _HI),
    ("LowerCholeskyAffine", T.LowerCholeskyAffine(jnp.array([1.0, 2.0]), _L), _HI[:2]),
    ("LowerCholeskyTransform", T.LowerCholeskyTransform(), _tril_vec(3)),
    ("OrderedTransform", T.OrderedTransform(), jnp.array([0.1, -1.0, 0.5])),
    ("PermuteTransform", T.PermuteTransform(jnp.array([2, 0, 1])), _LO),
    ("PositiveDefiniteTransform", T.PositiveDefiniteTransform(), _tril_vec(3)),
    ("PowerTransform", T.PowerTransform(jnp.array([2.0, 0.5])), jnp.array([1.5, 4.0])),
    ("ReshapeTransform", T.ReshapeTransform((2, 3), (6,)), jnp.arange(6.0)),
    ("ScaledUnitLowerCholeskyTransform", T.ScaledUnitLowerCholeskyTransform(), _tril_vec(3)),
    ("SigmoidTransform", T.SigmoidTransform(), jnp.array([0.1, -1.0])),
    ("SoftplusLowerCholeskyTransform", T.SoftplusLowerCholeskyTransform(), _tril_vec(3)),
    ("SoftplusTransform", T.SoftplusTransform(), jnp.array([0.1, -1.0])),
    ("StickBreakingTransform", T.StickBreakingTransform(), jnp.array([0.1, -1.0])),
    ("TanhTransform", T.TanhTransform(), jnp.array([0.1, -1.0])),
    (
        "UnpackTransform",
        T.UnpackTransform(lambda v: {"a": v[..., :1], "b": v[..., 1:]}),
        jnp.array([0.1, -1.0, 2.0]),
    ),
    ("ZeroSumTransform", T.ZeroSumTransform(2), jnp.ones((2, 3))),
    ("_InverseTransform", T.AffineTransform(_LO, 2.0).inv, _HI),
]


def test_transform_list_is_complete():
    public = {
        name
        for name in T.__all__
        if isinstance(getattr(T, name), type) and issubclass(getattr(T, name), T.Transform)
    } - {"Transform"}
    listed = {name for name, _, _ in TRANSFORMS}
    assert public <= listed, public - listed
    for name, t, _ in TRANSFORMS:
        assert type(t).__name__ == name


@pytest.mark.parametrize("name,t,x", TRANSFORMS, ids=[n for n, _, _ in TRANSFORMS])
def test_transform_jit_round_trip(name, t, x):
    leaves, _ = jax.tree_util.tree_flatten(t)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)
    t2 = jax.jit(_identity)(t)
    assert type(t2) is type(t)
    assert t2.eq(t) and t.eq(t2) and t2 == t
    params, aux = t.tree_flatten()
    assert type(t).tree_unflatten(aux, params) == t
    y = t(x)
    y_jit = jax.jit(lambda tr, v: tr(v))(t, x)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), y_jit, y
    )


def test_transform_vmap_and_eq_semantics():
    t = T.AffineTransform(_LO, _HI)
    out = jax.vmap(lambda tr, v: tr(v))(t, jnp.ones(3))
    np.testing.assert_allclose(out, _LO + _HI)
    assert T.AffineTransform(1.0, 2.0) == T.AffineTransform(1.0, 2.0)
    assert T.AffineTransform(1.0, 2.0) != T.AffineTransform(1.0, 3.0)
    assert T.ExpTransform() == T.ExpTransform() and T.ExpTransform() != T.SigmoidTransform()
    assert T.ExpTransform().inv == T.ExpTransform().inv
    assert biject_to(constraints.interval(0.0, 2.0)) == biject_to(constraints.interval(0.0, 2.0))
    assert biject_to(constraints.interval(0.0, 2.0)) != biject_to(constraints.interval(0.0, 3.0))
    assert T.ZeroSumTransform(1) != T.ZeroSumTransform(2)
    assert T.PermuteTransform([1, 0]) == T.PermuteTransform(np.array([1, 0]))
    traced = jax.jit(lambda s: T.AffineTransform(0.0, s).eq(T.AffineTransform(0.0, 2.0)))
    assert isinstance(traced(2.0), jax.Array)
    assert bool(traced(2.0)) and not bool(traced(3.0))


# ---------------------------------------------------------------------------------------------
# zero_sum
# ---------------------------------------------------------------------------------------------
def test_zero_sum_constraint_event_dim():
    rows_only = jnp.array([[1.0, -1.0], [2.0, -2.0]])  # rows sum to 0, columns do not
    assert constraints.zero_sum().event_dim == 1
    assert bool(constraints.zero_sum(event_dim=1)(rows_only).all())
    assert constraints.zero_sum(event_dim=1)(rows_only).shape == (2,)
    assert not bool(constraints.zero_sum(event_dim=2)(rows_only))
    both = jnp.array([[1.0, -1.0], [-1.0, 1.0]])
    assert bool(constraints.zero_sum(event_dim=2)(both))
    assert not bool(constraints.zero_sum(event_dim=1)(jnp.array([1.0, 0.5])))
    with pytest.raises(ValueError, match="event_dim"):
        constraints.zero_sum(event_dim=0)
    with pytest.raises(TypeError, match="zero_sum\\(event_dim\\)\\(value\\)"):
        constraints.zero_sum(jnp.zeros(3))


def _zero_sum_by_hand(x):
    """The PyMC / NumPyro map along the last axis, written out: with n = len(x) + 1 and
    s = sum(x), y = [x - s / (sqrt(n) (1 + sqrt(n))), -s / sqrt(n)]."""
    x = np.asarray(x, np.float64)
    rn = math.sqrt(x.shape[-1] + 1)
    s = x.sum(-1, keepdims=True)
    return np.concatenate([x - s / (rn * (1 + rn)), -s / rn], axis=-1)


@pytest.mark.parametrize("event_dim", [1, 2])
def test_zero_sum_biject_to(event_dim):
    c = constraints.zero_sum(event_dim=event_dim)
    t = biject_to(c)
    assert isinstance(t, T.ZeroSumTransform) and t.transform_ndims == event_dim
    assert t.codomain == c and t.domain.event_dim == event_dim
    shape = (4, 3, 5) if event_dim == 2 else (4, 5)
    x = jax.random.normal(jax.random.key(0), shape)
    y = t(x)
    assert y.shape == t.forward_shape(shape)
    for axis in range(-event_dim, 0):
        np.testing.assert_allclose(jnp.sum(y, axis=axis), 0.0, atol=1e-5)
    assert bool(jnp.all(c(y)))
    np.testing.assert_allclose(t.inv(y), x, atol=1e-5)
    # the unconstrained parameterization is NumPyro's (PyMC's), axis by axis
    expected = np.asarray(x, np.float64)
    for axis in range(-event_dim, 0):
        expected = np.moveaxis(_zero_sum_by_hand(np.moveaxis(expected, axis, -1)), -1, axis)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    # log-det (NumPyro's convention: 0) is the volume factor onto the zero-sum subspace,
    # 1/2 log det(J^T J) with J from jacfwd over one event, flattened
    ladj = t.log_abs_det_jacobian(x, y)
    assert ladj.shape == shape[: len(shape) - event_dim]
    one = x[(0,) * (len(shape) - event_dim)]
    jac = jax.jacfwd(lambda v: t(v.reshape(one.shape)).ravel())(one.ravel())
    _, logdet = np.linalg.slogdet(np.asarray(jac.T @ jac, np.float64))
    np.testing.assert_allclose(ladj, 0.5 * logdet, atol=1e-5)
