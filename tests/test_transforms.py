"""Tests for transforms, ``biject_to`` and ``TransformedDistribution``."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jppl.distributions as dist
from jppl.distributions import constraints
from jppl.distributions import transforms as T
from jppl.distributions.transformed import TransformedDistribution
from jppl.distributions.transforms import biject_to
from jppl.distributions.util import tril_matrix_to_vec, vec_to_tril_matrix

needs_normal = pytest.mark.skipif(
    not hasattr(dist, "Normal"), reason="jppl.distributions.Normal not available yet"
)


def _normal(key, shape, scale=1.0):
    return scale * jax.random.normal(key, shape)


def _sym_from_tril(v):
    low = vec_to_tril_matrix(v)
    return low + jnp.swapaxes(jnp.tril(low, -1), -1, -2)


def _corr_from_offdiag(v):
    low = vec_to_tril_matrix(v, diagonal=-1)
    n = low.shape[-1]
    return jnp.eye(n) + low + jnp.swapaxes(low, -1, -2)


def _random_pd(key, batch, n):
    a = jax.random.normal(key, batch + (n, n))
    return a @ jnp.swapaxes(a, -1, -2) + n * jnp.eye(n)


def _random_corr(key, batch, n):
    return T.CorrMatrixCholeskyTransform().inv(
        T.CorrCholeskyTransform()(jax.random.normal(key, batch + (n * (n - 1) // 2,)))
    )


def _identity(v):
    return v


def _tril(v):
    return tril_matrix_to_vec(v)


def _strict_tril(v):
    return tril_matrix_to_vec(v, diagonal=-1)


def _drop_last(v):
    return v[..., :-1]


# ---------------------------------------------------------------------------------------------
# Jacobian cases: (name, transform, make_x(key), input event ndim, pack_in, unpack_in, out_free)
# pack_in/unpack_in map one input event to/from its free coordinates; out_free maps one output
# event to its free coordinates, so that x_free -> y_free is square.
# ---------------------------------------------------------------------------------------------
BATCH = (2, 3)


def _pos(key, shape):
    return jnp.exp(0.5 * jax.random.normal(key, shape))


JAC_CASES = [
    ("identity", T.IdentityTransform(), lambda k: _normal(k, BATCH), 0, None, None, None),
    (
        "affine",
        T.AffineTransform(jnp.array([1.0, -2.0, 0.5]), jnp.array([2.0, -0.5, 3.0])),
        lambda k: _normal(k, BATCH),
        0,
        None,
        None,
        None,
    ),
    (
        "affine_vector",
        T.AffineTransform(0.3, jnp.array([2.0, -0.5, 3.0]), domain=constraints.real_vector),
        lambda k: _normal(k, BATCH),
        1,
        None,
        None,
        None,
    ),
    ("exp", T.ExpTransform(), lambda k: _normal(k, BATCH), 0, None, None, None),
    ("sigmoid", T.SigmoidTransform(), lambda k: _normal(k, BATCH, 2.0), 0, None, None, None),
    ("softplus", T.SoftplusTransform(), lambda k: _normal(k, BATCH, 2.0), 0, None, None, None),
    ("tanh", T.TanhTransform(), lambda k: _normal(k, BATCH), 0, None, None, None),
    ("power", T.PowerTransform(2.5), lambda k: _pos(k, BATCH), 0, None, None, None),
    ("power_neg", T.PowerTransform(-0.5), lambda k: _pos(k, BATCH), 0, None, None, None),
    ("circular", T.CircularTransform(), lambda k: _normal(k, BATCH), 0, None, None, None),
    (
        "compose",
        T.ComposeTransform([T.AffineTransform(1.0, 2.0), T.ExpTransform(), T.PowerTransform(2.0)]),
        lambda k: _normal(k, BATCH, 0.5),
        0,
        None,
        None,
        None,
    ),
    (
        "independent_exp",
        T.IndependentTransform(T.ExpTransform(), 1),
        lambda k: _normal(k, BATCH),
        1,
        None,
        None,
        None,
    ),
    (
        "independent_2",
        T.IndependentTransform(T.SigmoidTransform(), 2),
        lambda k: _normal(k, BATCH),
        2,
        None,
        None,
        None,
    ),
    (
        "stick_breaking",
        T.StickBreakingTransform(),
        lambda k: _normal(k, BATCH, 2.0),
        1,
        None,
        None,
        _drop_last,
    ),
    ("ordered", T.OrderedTransform(), lambda k: _normal(k, BATCH), 1, None, None, None),
    (
        "corr_cholesky",
        T.CorrCholeskyTransform(),
        lambda k: _normal(k, (2, 6)),
        1,
        None,
        None,
        _strict_tril,
    ),
    (
        "lower_cholesky",
        T.LowerCholeskyTransform(),
        lambda k: _normal(k, (2, 6)),
        1,
        None,
        None,
        _tril,
    ),
    (
        "softplus_lower_cholesky",
        T.SoftplusLowerCholeskyTransform(),
        lambda k: _normal(k, (2, 6)),
        1,
        None,
        None,
        _tril,
    ),
    (
        "scaled_unit_lower_cholesky",
        T.ScaledUnitLowerCholeskyTransform(),
        lambda k: _normal(k, (2, 6)),
        1,
        None,
        None,
        _tril,
    ),
    (
        "positive_definite",
        T.PositiveDefiniteTransform(),
        lambda k: _normal(k, (2, 6), 0.5),
        1,
        None,
        None,
        _tril,
    ),
    (
        "cholesky",
        T.CholeskyTransform(),
        lambda k: _random_pd(k, (2,), 3),
        2,
        _tril,
        _sym_from_tril,
        _tril,
    ),
    (
        "corr_matrix_cholesky",
        T.CorrMatrixCholeskyTransform(),
        lambda k: _random_corr(k, (2,), 3),
        2,
        _strict_tril,
        _corr_from_offdiag,
        _strict_tril,
    ),
    (
        "lower_cholesky_affine",
        T.LowerCholeskyAffine(
            jnp.array([1.0, 2.0, 3.0]),
            jnp.array([[2.0, 0.0, 0.0], [0.5, 1.5, 0.0], [-1.0, 0.3, 0.7]]),
        ),
        lambda k: _normal(k, BATCH),
        1,
        None,
        None,
        None,
    ),
    (
        "stick_breaking_inv",
        T.StickBreakingTransform().inv,
        lambda k: T.StickBreakingTransform()(_normal(k, BATCH)),
        1,
        _drop_last,
        lambda v: jnp.concatenate([v, 1 - jnp.sum(v, -1, keepdims=True)], -1),
        None,
    ),
    ("exp_inv", T.ExpTransform().inv, lambda k: _pos(k, BATCH), 0, None, None, None),
    (
        "reshape",
        T.ReshapeTransform((2, 3), (6,)),
        lambda k: _normal(k, (2, 6)),
        1,
        None,
        None,
        lambda v: v.reshape(-1),
    ),
    ("permute", T.PermuteTransform([2, 0, 1]), lambda k: _normal(k, BATCH), 1, None, None, None),
]


def _numeric_ladj(t, x, in_event_dim, pack_in, unpack_in, out_free):
    """log|det| of the square map between free coordinates, per batch element, via jacfwd."""
    # one compiled graph is much cheaper than dispatching each op eagerly
    return jax.jit(lambda x: _numeric_ladj_impl(t, x, in_event_dim, pack_in, unpack_in, out_free))(
        x
    )


def _numeric_ladj_impl(t, x, in_event_dim, pack_in, unpack_in, out_free):
    pack_in = pack_in or _identity
    unpack_in = unpack_in or _identity
    out_free = out_free or _identity
    batch = x.shape[: x.ndim - in_event_dim]
    if in_event_dim == 0:
        # elementwise (possibly with batched parameters): the full Jacobian is diagonal.
        jac = jax.jacfwd(lambda v: jnp.reshape(t(v.reshape(x.shape)), (-1,)))(x.reshape(-1))
        return jnp.log(jnp.abs(jnp.diagonal(jac))).reshape(batch)
    events = x.reshape((-1,) + x.shape[x.ndim - in_event_dim :])

    def one(xe):
        v = jnp.reshape(pack_in(xe), (-1,))

        def f(v):
            return jnp.reshape(out_free(t(unpack_in(v.reshape(jnp.shape(pack_in(xe)))))), (-1,))

        jac = jax.jacfwd(f)(v)
        assert jac.shape[0] == jac.shape[1], jac.shape
        return jnp.linalg.slogdet(jac)[1]

    return jax.vmap(one)(events).reshape(batch)


@pytest.mark.parametrize(
    "name,t,make_x,ev,pack_in,unpack_in,out_free", JAC_CASES, ids=[c[0] for c in JAC_CASES]
)
def test_log_abs_det_jacobian(name, t, make_x, ev, pack_in, unpack_in, out_free):
    x = make_x(jax.random.key(1))
    y = t(x)
    ladj = t.log_abs_det_jacobian(x, y)
    batch = x.shape[: x.ndim - ev]
    assert jnp.shape(ladj) == batch
    expected = _numeric_ladj(t, x, ev, pack_in, unpack_in, out_free)
    np.testing.assert_allclose(ladj, expected, rtol=2e-3, atol=2e-3)
    # intermediates path agrees
    y2, inter = t.call_with_intermediates(x)
    np.testing.assert_allclose(t.log_abs_det_jacobian(x, y2, inter), ladj, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "name,t,make_x,ev,pack_in,unpack_in,out_free",
    [c for c in JAC_CASES if c[0] not in ("circular",)],
    ids=[c[0] for c in JAC_CASES if c[0] not in ("circular",)],
)
def test_round_trip_and_shapes(name, t, make_x, ev, pack_in, unpack_in, out_free):
    x = make_x(jax.random.key(2))
    y = t(x)
    np.testing.assert_allclose(t.inv(y), x, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(t(t.inv(y)), y, rtol=1e-3, atol=1e-3)
    assert t.forward_shape(x.shape) == y.shape
    assert t.inverse_shape(y.shape) == x.shape
    assert t.inv.inv is t or type(t.inv.inv) is type(t)
    assert t.inv.domain is t.codomain or repr(t.inv.domain) == repr(t.codomain)
    # inverse log-det is the negated forward one
    np.testing.assert_allclose(
        t.inv.log_abs_det_jacobian(y, x), -t.log_abs_det_jacobian(x, y), rtol=1e-5, atol=1e-5
    )
    assert bool(jnp.all(t.codomain(y)))


def test_circular_wraps():
    t = T.CircularTransform()
    x = jnp.array([0.0, 3.0, 4.0, -4.0, 10.0])
    y = t(x)
    assert bool(jnp.all(constraints.circular(y)))
    np.testing.assert_allclose(jnp.cos(y), jnp.cos(x), atol=1e-5)
    np.testing.assert_allclose(jnp.sin(y), jnp.sin(x), atol=1e-5)
    np.testing.assert_allclose(t(t.inv(y)), y, atol=1e-6)


def test_abs_transform():
    t = T.AbsTransform()
    y = jnp.array([0.0, 1.5, 3.0])
    np.testing.assert_allclose(t(t.inv(y)), y)
    np.testing.assert_allclose(t(jnp.array([-2.0, 2.0])), jnp.array([2.0, 2.0]))


def test_zero_sum_isometry():
    t = T.ZeroSumTransform()
    x = jax.random.normal(jax.random.key(3), (2, 4))
    y = t(x)
    assert y.shape == (2, 5)
    assert bool(jnp.all(constraints.zero_sum(event_dim=1)(y)))
    np.testing.assert_allclose(t.inv(y), x, atol=1e-5)
    jac = jax.jit(jax.jacfwd(t))(x[0])
    np.testing.assert_allclose(jac.T @ jac, jnp.eye(4), atol=1e-5)
    assert t.log_abs_det_jacobian(x, y).shape == (2,)
    # two-dimensional version: zero sums along both axes
    t2 = T.ZeroSumTransform(2)
    x2 = jax.random.normal(jax.random.key(4), (3, 2, 4))
    y2 = t2(x2)
    assert y2.shape == (3, 3, 5) == t2.forward_shape(x2.shape)
    np.testing.assert_allclose(jnp.sum(y2, -1), 0.0, atol=1e-5)
    np.testing.assert_allclose(jnp.sum(y2, -2), 0.0, atol=1e-5)
    np.testing.assert_allclose(t2.inv(y2), x2, atol=1e-5)


def test_stick_breaking_centre_and_extremes():
    t = T.StickBreakingTransform()
    np.testing.assert_allclose(t(jnp.zeros(4)), jnp.full(5, 0.2), rtol=1e-6)
    y = t(jnp.array([80.0, -80.0, 50.0]))
    assert bool(jnp.all(jnp.isfinite(y)))
    np.testing.assert_allclose(jnp.sum(y), 1.0, rtol=1e-6)
    ladj = t.log_abs_det_jacobian(jnp.array([80.0, -80.0, 50.0]), y)
    assert bool(jnp.isfinite(ladj))
    g = jax.jit(jax.grad(lambda x: t(x)[1]))(jnp.array([80.0, -80.0, 5.0]))
    assert bool(jnp.all(jnp.isfinite(g)))


def test_corr_cholesky_extremes():
    t = T.CorrCholeskyTransform()
    x = jnp.array([30.0, -30.0, 0.5])
    y = t(x)
    assert bool(jnp.all(jnp.isfinite(y)))
    np.testing.assert_allclose(jnp.sum(y**2, -1), 1.0, atol=1e-5)
    assert bool(jnp.isfinite(t.log_abs_det_jacobian(x, y)))
    np.testing.assert_allclose(t(jnp.zeros(3)), jnp.eye(3), atol=1e-7)


def test_compose_event_dims():
    t = T.ComposeTransform([T.ExpTransform(), T.StickBreakingTransform()])
    assert t.domain.event_dim == 1 and t.codomain.event_dim == 1
    x = jax.random.normal(jax.random.key(5), (2, 3))
    assert t.log_abs_det_jacobian(x, t(x)).shape == (2,)
    expected = jnp.sum(x, -1) + T.StickBreakingTransform().log_abs_det_jacobian(jnp.exp(x), t(x))
    np.testing.assert_allclose(t.log_abs_det_jacobian(x, t(x)), expected, rtol=1e-5)
    # nested composes are flattened; an empty compose is the identity
    assert len(T.ComposeTransform([t, T.ExpTransform()]).parts) == 3
    assert T.ComposeTransform([])(x) is x
    assert T.ComposeTransform([T.AffineTransform(0.0, -2.0), T.ExpTransform()]).sign == -1


# ---------------------------------------------------------------------------------------------
# biject_to
# ---------------------------------------------------------------------------------------------
BIJECT_CASES = [
    (constraints.real, BATCH),
    (constraints.real_vector, BATCH),
    (constraints.real_matrix, BATCH),
    (constraints.positive, BATCH),
    (constraints.nonnegative, BATCH),
    (constraints.softplus_positive, BATCH),
    (constraints.greater_than(2.0), BATCH),
    (constraints.greater_than(jnp.array([-1.0, 0.0, 5.0])), BATCH),
    (constraints.greater_than_eq(-3.0), BATCH),
    (constraints.less_than(1.5), BATCH),
    (constraints.interval(-2.0, 3.0), BATCH),
    (constraints.interval(jnp.array([0.0, 1.0, 2.0]), jnp.array([1.0, 5.0, 2.5])), BATCH),
    (constraints.open_interval(-1.0, 1.0), BATCH),
    (constraints.unit_interval, BATCH),
    (constraints.circular, BATCH),
    (constraints.simplex, BATCH),
    (constraints.ordered_vector, BATCH),
    (constraints.positive_ordered_vector, BATCH),
    (constraints.corr_cholesky, (2, 6)),
    (constraints.corr_matrix, (2, 6)),
    (constraints.lower_cholesky, (2, 6)),
    (constraints.scaled_unit_lower_cholesky, (2, 6)),
    (constraints.softplus_lower_cholesky, (2, 6)),
    (constraints.positive_definite, (2, 6)),
    (constraints.zero_sum(event_dim=1), BATCH),
    (constraints.zero_sum(event_dim=2), (2, 3, 4)),
    (constraints.independent(constraints.positive, 1), BATCH),
    (constraints.independent(constraints.simplex, 1), BATCH),
    (constraints.independent(constraints.interval(0.0, 2.0), 2), BATCH),
]


@pytest.mark.parametrize("c,shape", BIJECT_CASES, ids=[repr(c) for c, _ in BIJECT_CASES])
def test_biject_to(c, shape):
    t = biject_to(c)
    x = jax.random.normal(jax.random.key(6), shape)
    y = t(x)
    assert y.shape == t.forward_shape(shape)
    assert t.inverse_shape(y.shape) == shape
    assert bool(jnp.all(c(y))), f"{c!r}: {y}"
    assert t.codomain.event_dim == c.event_dim
    if c is not constraints.circular:
        np.testing.assert_allclose(t.inv(y), x, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(t(t.inv(y)), y, rtol=1e-4, atol=1e-4)
    ladj = t.log_abs_det_jacobian(x, y)
    assert ladj.shape == shape[: len(shape) - t.domain.event_dim]
    assert bool(jnp.all(jnp.isfinite(ladj)))
    # jit with the transform passed as an argument (a pytree)
    y_jit = jax.jit(lambda tr, v: tr(v))(t, x)
    np.testing.assert_allclose(y_jit, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "c,ev",
    [
        (constraints.greater_than(1.0), 0),
        (constraints.less_than(1.0), 0),
        (constraints.interval(-1.0, 2.0), 0),
        (constraints.positive_ordered_vector, 1),
        (constraints.corr_matrix, 1),
    ],
    ids=repr,
)
def test_biject_to_log_det(c, ev):
    t = biject_to(c)
    x = jax.random.normal(jax.random.key(7), (2, 3) if ev == 0 else (2, 3))
    out_free = None
    if c is constraints.corr_matrix:
        out_free = _strict_tril
    expected = _numeric_ladj(t, x, ev, None, None, out_free)
    np.testing.assert_allclose(t.log_abs_det_jacobian(x, t(x)), expected, rtol=2e-3, atol=2e-3)


def test_biject_to_codomains():
    assert isinstance(biject_to(constraints.less_than(2.0)).codomain, constraints._LessThan)
    cod = biject_to(constraints.interval(1.0, 3.0)).codomain
    assert isinstance(cod, constraints._Interval)
    np.testing.assert_allclose([cod.lower_bound, cod.upper_bound], [1.0, 3.0])
    assert isinstance(
        biject_to(constraints.open_interval(0.0, 2.0)).codomain, constraints._OpenInterval
    )
    cod = biject_to(constraints.greater_than(-1.0)).codomain
    assert isinstance(cod, constraints._GreaterThan)
    np.testing.assert_allclose(cod.lower_bound, -1.0)
    assert biject_to(constraints.simplex).codomain is constraints.simplex
    assert biject_to(constraints.real).domain is constraints.real


@pytest.mark.parametrize(
    "c",
    [
        constraints.boolean,
        constraints.nonnegative_integer,
        constraints.integer_interval(0, 3),
        constraints.multinomial(5),
        constraints.independent(constraints.boolean, 1),
    ],
    ids=repr,
)
def test_biject_to_discrete_raises(c):
    with pytest.raises(NotImplementedError, match="discrete") as info:
        biject_to(c)
    assert repr(c) in str(info.value)
    assert "marginaliz" in str(info.value) and "enumerat" in str(info.value)


def test_biject_to_dependent_raises():
    with pytest.raises(NotImplementedError, match="dependent"):
        biject_to(constraints.dependent)


def test_biject_to_register():
    class _Weird(constraints.Constraint):
        def __call__(self, x):
            return x > 10.0

    weird = _Weird()
    with pytest.raises(NotImplementedError, match="no transform is registered"):
        biject_to(weird)

    @biject_to.register(_Weird)
    def _factory(c):
        return T.ComposeTransform([T.ExpTransform(), T.AffineTransform(10.0, 1.0)])

    try:
        assert bool(jnp.all(weird(biject_to(weird)(jnp.zeros(3)))))
    finally:
        del biject_to._registry[_Weird]

    # an instance stands for its class
    class _Weird2(_Weird):
        pass

    w2 = _Weird2()
    biject_to.register(w2, lambda c: T.AffineTransform(11.0, 1.0))
    try:
        np.testing.assert_allclose(biject_to(w2)(0.0), 11.0)
    finally:
        del biject_to._registry[_Weird2]


# ---------------------------------------------------------------------------------------------
# jit / vmap with traced parameters
# ---------------------------------------------------------------------------------------------
def test_vmap_traced_bounds():
    out = jax.vmap(lambda lo: biject_to(constraints.interval(lo, lo + 1))(0.0))(jnp.arange(3.0))
    np.testing.assert_allclose(out, [0.5, 1.5, 2.5], rtol=1e-6)
    out = jax.vmap(lambda lb: biject_to(constraints.greater_than(lb))(0.0))(jnp.arange(3.0))
    np.testing.assert_allclose(out, [1.0, 2.0, 3.0], rtol=1e-6)
    out = jax.vmap(lambda ub: biject_to(constraints.less_than(ub)).inv(ub - 1.0))(jnp.arange(3.0))
    np.testing.assert_allclose(out, [0.0, 0.0, 0.0], atol=1e-6)

    def ladj(lo, hi, x):
        t = biject_to(constraints.interval(lo, hi))
        return t.log_abs_det_jacobian(x, t(x))

    got = jax.jit(jax.vmap(ladj))(jnp.zeros(3), jnp.array([1.0, 2.0, 4.0]), jnp.zeros(3))
    np.testing.assert_allclose(got, jnp.log(jnp.array([1.0, 2.0, 4.0]) / 4.0), rtol=1e-5)


def test_transforms_are_pytrees():
    t = T.AffineTransform(jnp.ones(3), 2 * jnp.ones(3))
    assert len(jax.tree_util.tree_leaves(t)) == 2
    c = T.ComposeTransform([T.ExpTransform(), t])
    assert len(jax.tree_util.tree_leaves(c)) == 2
    assert len(jax.tree_util.tree_leaves(c.inv)) == 2
    doubled = jax.tree_util.tree_map(lambda v: 2 * v, c)
    np.testing.assert_allclose(doubled(jnp.zeros(3)), 6.0)
    # vmap over a batch of transforms
    batch = T.AffineTransform(jnp.arange(4.0), jnp.ones(4))
    out = jax.vmap(lambda tr: tr(1.0))(batch)
    np.testing.assert_allclose(out, jnp.arange(4.0) + 1.0)
    # jit through inverse and log-det with a LowerCholeskyAffine argument
    lca = T.LowerCholeskyAffine(jnp.zeros(2), jnp.array([[2.0, 0.0], [1.0, 3.0]]))
    y = jax.jit(lambda tr, v: tr.inv(tr(v)))(lca, jnp.ones((5, 2)))
    np.testing.assert_allclose(y, jnp.ones((5, 2)), rtol=1e-5)
    assert jax.jit(lambda tr, v: tr.log_abs_det_jacobian(v, tr(v)))(
        lca, jnp.ones((5, 2))
    ).shape == (5,)
    perm = T.PermuteTransform([1, 2, 0])
    v = jnp.arange(3.0)
    np.testing.assert_allclose(jax.jit(lambda tr, v: tr.inv(tr(v)))(perm, v), v)


def test_grad_through_biject_to():
    def f(x):
        t = biject_to(constraints.simplex)
        y = t(x)
        return jnp.sum(y * jnp.arange(4.0)) + t.log_abs_det_jacobian(x, y)

    g = jax.grad(f)(jnp.array([0.1, -0.3, 0.2]))
    assert bool(jnp.all(jnp.isfinite(g)))


def test_improper_uniform_sample_uses_inverse_shape():
    d = dist.ImproperUniform(constraints.simplex, (2,), (4,))
    s = d.sample(jax.random.key(0), (3,))
    assert s.shape == (3, 2, 4)
    assert bool(jnp.all(constraints.simplex(s)))
    d = dist.ImproperUniform(constraints.corr_cholesky, (), (3, 3))
    assert bool(constraints.corr_cholesky(d.sample(jax.random.key(1))))


# ---------------------------------------------------------------------------------------------
# TransformedDistribution
# ---------------------------------------------------------------------------------------------
@needs_normal
def test_lognormal_vs_scipy():
    loc, scale = jnp.array([0.0, 0.5, -1.0]), jnp.array([1.0, 0.3, 2.0])
    d = TransformedDistribution(dist.Normal(loc, scale), T.ExpTransform())
    assert d.batch_shape == (3,) and d.event_shape == ()
    assert d.support is constraints.positive
    assert d.has_rsample
    x = jnp.array([[0.5, 1.0, 2.0], [3.0, 0.1, 7.0]])
    expected = scipy.stats.lognorm.logpdf(
        np.asarray(x), s=np.asarray(scale), scale=np.exp(np.asarray(loc))
    )
    np.testing.assert_allclose(d.log_prob(x), expected, rtol=1e-5, atol=1e-5)
    samples = d.sample(jax.random.key(0), (1000,))
    assert samples.shape == (1000, 3)
    assert bool(jnp.all(d.support(samples)))
    np.testing.assert_allclose(jnp.median(samples, 0), jnp.exp(loc), rtol=0.2)
    with pytest.raises(NotImplementedError):
        _ = d.mean
    with pytest.raises(NotImplementedError):
        _ = d.variance


@needs_normal
def test_affine_normal_vs_scipy_and_cdf():
    d = TransformedDistribution(dist.Normal(0.0, 1.0), [T.AffineTransform(2.0, -3.0)])
    x = jnp.linspace(-5.0, 5.0, 7)
    np.testing.assert_allclose(
        d.log_prob(x), scipy.stats.norm.logpdf(np.asarray(x), 2.0, 3.0), rtol=1e-5, atol=1e-5
    )
    try:
        cdf = d.cdf(x)
    except NotImplementedError:
        return
    np.testing.assert_allclose(cdf, scipy.stats.norm.cdf(np.asarray(x), 2.0, 3.0), atol=1e-5)


@needs_normal
def test_transformed_shapes_broadcast_params():
    # transform parameters broadcast the base batch: (2,) -> (3, 2)
    base = dist.Normal(jnp.zeros(2), 1.0)
    d = TransformedDistribution(base, T.AffineTransform(jnp.zeros((3, 1)), jnp.ones((3, 2))))
    assert d.batch_shape == (3, 2) and d.event_shape == ()
    s = d.sample(jax.random.key(0), (4,))
    assert s.shape == (4, 3, 2)
    assert d.log_prob(s).shape == (4, 3, 2)


@needs_normal
def test_transformed_event_dims():
    # a batch of normals pushed through stick-breaking becomes a simplex-valued event
    base = dist.Normal(jnp.zeros((2, 3)), 1.0)
    t = T.StickBreakingTransform()
    d = TransformedDistribution(base, t)
    assert d.batch_shape == (2,) and d.event_shape == (4,)
    assert d.support is constraints.simplex
    y = d.sample(jax.random.key(1), (5,))
    assert y.shape == (5, 2, 4)
    assert bool(jnp.all(d.support(y)))
    lp = d.log_prob(y)
    assert lp.shape == (5, 2)
    x = t.inv(y)
    expected = jnp.sum(scipy.stats.norm.logpdf(np.asarray(x)), -1) - t.log_abs_det_jacobian(x, y)
    np.testing.assert_allclose(lp, expected, rtol=1e-4, atol=1e-4)

    # an elementwise transform on a vector-event base: log-det summed over the event
    base = dist.Normal(jnp.zeros(3), 1.0).to_event(1)
    d = TransformedDistribution(base, [T.AffineTransform(1.0, 2.0), T.ExpTransform()])
    assert d.batch_shape == () and d.event_shape == (3,)
    assert isinstance(d.support, constraints._Independent)
    assert d.support.event_dim == 1
    y = jnp.array([0.5, 2.0, 4.0])
    x = (jnp.log(y) - 1.0) / 2.0
    expected = np.sum(scipy.stats.norm.logpdf(np.asarray(x)) - np.log(2.0) - np.log(np.asarray(y)))
    np.testing.assert_allclose(d.log_prob(y), expected, rtol=1e-5)

    # a matrix-valued event from a vector base via the LKJ-style transform
    d = TransformedDistribution(dist.Normal(jnp.zeros(3), 1.0), T.CorrCholeskyTransform())
    assert d.event_shape == (3, 3) and d.batch_shape == ()
    s = d.sample(jax.random.key(2), (6,))
    assert s.shape == (6, 3, 3)
    assert bool(jnp.all(constraints.corr_cholesky(s)))
    assert d.log_prob(s).shape == (6,)


@needs_normal
def test_transformed_intermediates_and_nesting():
    base = dist.Normal(jnp.zeros(3), 1.0)
    d = TransformedDistribution(base, [T.AffineTransform(0.5, 2.0), T.SigmoidTransform()])
    y, inter = d.sample_with_intermediates(jax.random.key(3), (4,))
    assert len(inter) == 2
    np.testing.assert_allclose(d.log_prob(y, inter), d.log_prob(y), rtol=1e-4, atol=1e-4)
    nested = TransformedDistribution(d, T.AffineTransform(1.0, 3.0))
    assert len(nested.transforms) == 3 and nested.base_dist is base
    assert nested.support is constraints.real  # the last transform's codomain
    np.testing.assert_allclose(
        nested.log_prob(1.0 + 3.0 * y), d.log_prob(y) - math.log(3.0), rtol=1e-4, atol=1e-4
    )


@needs_normal
def test_transformed_under_jit_and_vmap():
    def logp(loc, scale, v):
        return TransformedDistribution(
            dist.Normal(loc, 1.0), T.AffineTransform(0.0, scale)
        ).log_prob(v)

    got = jax.jit(jax.vmap(logp))(jnp.arange(3.0), jnp.array([1.0, 2.0, 0.5]), jnp.ones(3))
    expected = scipy.stats.norm.logpdf(1.0, np.arange(3.0) * [1.0, 2.0, 0.5], [1.0, 2.0, 0.5])
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    d = TransformedDistribution(dist.Normal(0.0, 1.0), biject_to(constraints.interval(1.0, 2.0)))
    lp = jax.jit(lambda dd, v: dd.log_prob(v))(d, jnp.array([1.2, 1.7]))
    np.testing.assert_allclose(lp, d.log_prob(jnp.array([1.2, 1.7])), rtol=1e-5)
