"""Tests for NumPyro's further transforms and constraints: CatTransform, ComplexTransform,
DiscreteCosineTransform, HaarTransform, L1BallTransform, (Pack)RealFastFourier transforms,
RecursiveLinearTransform, SimplexToOrderedTransform; ``cat``, ``complex``,
``positive_semidefinite``, ``positive_definite_circulant_vector``, ``is_dependent``.

Truth comes from scipy/numpy (DCT, FFT, circulant matrices, eigenvalues), textbook definitions
written out in numpy, and ``log|det|`` of ``jax.jacobian`` in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft
import scipy.linalg
import scipy.special

from jppl.distributions import constraints
from jppl.distributions import transforms as T
from jppl.distributions.transforms import biject_to


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _rng(seed=0):
    return np.random.default_rng(seed)


# Transforms are pytrees: applying them under one jit compiles once, instead of once per
# primitive in eager mode (the DCT alone is dozens of primitives).
_fwd = jax.jit(lambda t, x: t(x))
_inv = jax.jit(lambda t, y: t.inv(y))
_fwd_inv = jax.jit(lambda t, x, y: (t(x), t.inv(y)))
_check = jax.jit(lambda c, v: c(v))


@jax.jit
def _round_trip(t, x):
    """Everything the round-trip test needs, in one compiled call per transform."""
    y = t(x)
    x_back = t.inv(y)
    return y, x_back, t(x_back), t.log_abs_det_jacobian(x, y), t.inv.log_abs_det_jacobian(y, x)


# ------------------------------------------------------------------------------------------
# Jacobians in float64
# ------------------------------------------------------------------------------------------
def _ladj_vs_jacobian(t, x, event_ndim, out=None, unpack=None, pack=None):
    """``(y, ladj, inverse's ladj at (y, x), numeric ladj)``, in one compiled call.

    The numeric one is ``log|det|`` of ``jax.jacfwd`` per event, of the square map
    ``pack(x_event) -> out(t(unpack(.)))`` (``pack``/``unpack`` pick an input event's free
    coordinates, ``out`` an output event's; default: flatten).
    """
    out = out or _flat
    pack = pack or _flat

    @jax.jit
    def run(t, x):
        y = t(x)
        events = x.reshape((-1,) + x.shape[x.ndim - event_ndim :])

        def one(xe):
            def f(v):
                return out(t(unpack(v) if unpack else v.reshape(xe.shape)))

            # forward mode: jit(vmap(jacrev)) of an FFT hits an XLA CPU layout check
            # (fft_thunk.cc IsMonotonicWithDim0Major) in JAX 0.10 and 0.11
            jac = jax.jacfwd(f)(pack(xe))
            assert jac.shape[0] == jac.shape[1], jac.shape
            return jnp.linalg.slogdet(jac)[1]

        numeric = jax.vmap(one)(events).reshape(x.shape[: x.ndim - event_ndim])
        return y, t.log_abs_det_jacobian(x, y), t.inv.log_abs_det_jacobian(y, x), numeric

    return run(t, x)


def _flat(v):
    return jnp.reshape(v, (-1,))


def _rfft_free(y, event_shape):
    """The free real coordinates of ``rfftn`` output ``y`` (one event): of each pair of
    conjugate frequencies keep one, its real part, and its imaginary part unless the frequency
    is its own conjugate. Written from Hermitian symmetry, independently of the transforms."""
    ns = event_shape
    reals, imags = [], []
    for idx in np.ndindex(*y.shape):
        full = tuple(int(i) for i in idx)
        conj = tuple((-k) % n for k, n in zip(full, ns, strict=True))
        # the conjugate is also stored when its last index lies in the rfft half
        conj_stored = conj[-1] <= ns[-1] // 2
        if conj_stored and conj < full:
            continue  # keep the first of the pair
        reals.append(full)
        if conj != full:
            imags.append(full)
    return jnp.concatenate(
        [jnp.stack([y[i].real for i in reals]), jnp.stack([y[i].imag for i in imags])]
    )


def test_l1_ball_log_det_vs_jacobian(x64):
    t = T.L1BallTransform()
    x = jnp.asarray(_rng(1).normal(size=(2, 3, 4)) * 1.5)
    _, ladj, inv_ladj, numeric = _ladj_vs_jacobian(t, x, 1)
    assert ladj.shape == (2, 3) and ladj.dtype == jnp.float64
    np.testing.assert_allclose(ladj, numeric, rtol=1e-10)
    np.testing.assert_allclose(inv_ladj, -ladj, rtol=1e-12)


def test_simplex_to_ordered_log_det_vs_jacobian(x64):
    t = T.SimplexToOrderedTransform(0.7)
    p = jnp.asarray(_rng(2).dirichlet(np.ones(5), size=(2, 3)))
    # square map: the first K - 1 simplex coordinates -> cutpoints (the last is 1 - sum)
    _, ladj, inv_ladj, numeric = _ladj_vs_jacobian(
        t,
        p,
        1,
        unpack=lambda v: jnp.concatenate([v, 1.0 - jnp.sum(v, keepdims=True)]),
        pack=lambda pe: pe[:-1],
    )
    assert ladj.shape == (2, 3)
    np.testing.assert_allclose(ladj, numeric, rtol=1e-10)
    np.testing.assert_allclose(inv_ladj, -ladj, rtol=1e-12)


@pytest.mark.parametrize(
    "t,shape",
    [
        (T.DiscreteCosineTransform(dim=-2, smooth=1.5), (2, 5, 3)),
        (T.HaarTransform(), (3, 7)),
        (T.RecursiveLinearTransform(np.array([[0.9, 1.0], [-0.4, 0.5]])), (2, 4, 2)),
        pytest.param(T.DiscreteCosineTransform(), (2, 7), marks=pytest.mark.slow),
        pytest.param(T.HaarTransform(), (2, 8), marks=pytest.mark.slow),
        pytest.param(T.HaarTransform(dim=-2, flip=True), (2, 6, 2), marks=pytest.mark.slow),
    ],
    ids=["dct_dim2_smooth", "haar7", "recursive", "dct", "haar8", "haar_dim2_flip"],
)
def test_volume_preserving_log_det_is_zero(x64, t, shape):
    x = jnp.asarray(_rng(3).normal(size=shape))
    ev = t.domain.event_dim
    _, ladj, _, numeric = _ladj_vs_jacobian(t, x, ev)
    assert ladj.shape == shape[: len(shape) - ev]
    np.testing.assert_array_equal(ladj, 0.0)
    np.testing.assert_allclose(numeric, 0.0, atol=1e-12)


@pytest.mark.parametrize(
    "event_shape",
    [
        (6,),
        (3, 5),
        pytest.param((5,), marks=pytest.mark.slow),
        pytest.param((4, 6), marks=pytest.mark.slow),
    ],
    ids=str,
)
def test_rfft_log_det_vs_jacobian(x64, event_shape):
    k = len(event_shape)
    t = T.RealFastFourierTransform(transform_ndims=k)
    x = jnp.asarray(_rng(7).normal(size=(2,) + event_shape))
    _, ladj, _, numeric = _ladj_vs_jacobian(t, x, k, out=lambda y: _rfft_free(y, event_shape))
    assert ladj.shape == (2,)
    np.testing.assert_allclose(ladj, numeric, rtol=1e-10)


@pytest.mark.parametrize("n", [6, pytest.param(5, marks=pytest.mark.slow)])
def test_pack_rfft_is_a_relabelling(x64, n):
    t = T.PackRealFastFourierCoefficientsTransform((n,))
    x = jnp.asarray(_rng(8).normal(size=(2, 3, n)))
    y, ladj, _, numeric = _ladj_vs_jacobian(t, x, 1, out=lambda y: _rfft_free(y, (n,)))
    assert y.shape == (2, 3, n // 2 + 1) and jnp.iscomplexobj(y)
    np.testing.assert_array_equal(ladj, np.zeros((2, 3)))
    np.testing.assert_allclose(numeric, 0.0, atol=1e-12)


def test_complex_log_det_vs_jacobian(x64):
    t = T.ComplexTransform()
    x = jnp.asarray(_rng(9).normal(size=(3, 2)))
    y, ladj, _, numeric = _ladj_vs_jacobian(t, x, 1, out=lambda z: jnp.stack([z.real, z.imag]))
    np.testing.assert_array_equal(y, x[:, 0] + 1j * x[:, 1])
    assert ladj.shape == (3,)
    np.testing.assert_allclose(ladj, numeric, atol=1e-12)


def test_cat_log_det_vs_jacobian(x64):
    scale = jnp.array([2.0, -0.5])
    t = T.CatTransform(
        [T.ExpTransform(), T.AffineTransform(1.0, scale), T.SigmoidTransform()],
        dim=-1,
        lengths=(2, 2, 1),
    )
    x = jnp.asarray(_rng(10).normal(size=(2, 3, 5)))
    # elementwise parts along a batch axis: one log-det per element, joined along dim; the
    # Jacobian of a whole row is diagonal, so its log-det is the row's sum
    _, ladj, inv_ladj, numeric = _ladj_vs_jacobian(t, x, 1)
    assert ladj.shape == (2, 3, 5)
    np.testing.assert_allclose(ladj.sum(-1), numeric, rtol=1e-12)
    np.testing.assert_allclose(inv_ladj, -ladj, rtol=1e-12)
    np.testing.assert_allclose(ladj[..., 2:4], np.broadcast_to(np.log([2.0, 0.5]), (2, 3, 2)))


@pytest.mark.slow
def test_cat_event_axis_log_det_vs_jacobian(x64):
    # vector parts along an event axis: one log-det per batch element
    tv = T.CatTransform([T.L1BallTransform(), T.OrderedTransform()], dim=-2, lengths=(1, 2))
    xv = jnp.asarray(_rng(11).normal(size=(2, 3, 4)))
    assert tv.domain.event_dim == 1
    _, ladj_v, _, numeric_v = _ladj_vs_jacobian(tv, xv, 2)
    assert ladj_v.shape == (2, 3)
    np.testing.assert_allclose(ladj_v.sum(-1), numeric_v, rtol=1e-10)


# ------------------------------------------------------------------------------------------
# definitions: scipy / numpy references
# ------------------------------------------------------------------------------------------
def test_dct_vs_scipy(x64):
    x = _rng(12).normal(size=(3, 7, 4))
    for dim in (-1, -2):
        t = T.DiscreteCosineTransform(dim=dim)
        expected = scipy.fft.dct(x, type=2, norm="ortho", axis=dim)
        y, x_back = _fwd_inv(t, jnp.asarray(x), jnp.asarray(expected))
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(x_back, x, rtol=1e-12, atol=1e-12)
    # smooth: coefficient k scaled by (k + 1/2) ** smooth, weights of geometric mean one
    n, smooth = 7, 1.5
    w = (np.arange(n) + 0.5) ** smooth
    w = w / np.exp(np.mean(np.log(w)))
    t = T.DiscreteCosineTransform(dim=-2, smooth=smooth)
    expected = scipy.fft.dct(x, type=2, norm="ortho", axis=-2) * w[:, None]
    y, x_back = _fwd_inv(t, jnp.asarray(x), jnp.asarray(expected))
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x_back, x, rtol=1e-12, atol=1e-12)


def _haar_matrix(n):
    """The textbook orthonormal Haar matrix for ``n = 2**m``: the constant row, then for each
    scale (coarse to fine) and position the wavelet +1 on the first half of its support and
    -1 on the second, normalized."""
    rows = [np.full(n, 1.0 / np.sqrt(n))]
    width = n
    while width >= 2:
        for start in range(0, n, width):
            row = np.zeros(n)
            row[start : start + width // 2] = 1.0
            row[start + width // 2 : start + width] = -1.0
            rows.append(row / np.sqrt(width))
        width //= 2
    return np.stack(rows)


def test_haar_vs_matrix(x64):
    for n in (2, 4, 8, 16):
        x = _rng(13).normal(size=(3, n))
        y = _fwd(T.HaarTransform(), jnp.asarray(x))
        np.testing.assert_allclose(y, x @ _haar_matrix(n).T, rtol=1e-12, atol=1e-12)
    # flip reverses time first; dim moves the axis
    x = _rng(14).normal(size=(8, 2))
    y = _fwd(T.HaarTransform(dim=-2, flip=True), jnp.asarray(x))
    np.testing.assert_allclose(y, _haar_matrix(8) @ x[::-1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [1, 6, pytest.param(5, marks=pytest.mark.slow), 12])
def test_haar_other_lengths_orthonormal(x64, n):
    h = np.asarray(_fwd(T.HaarTransform(), jnp.eye(n))).T  # column j is the image of e_j
    np.testing.assert_allclose(h @ h.T, np.eye(n), atol=1e-12)
    # the first coefficient is a normalized average of the leading power-of-two block
    m = 2 ** int(np.floor(np.log2(n)))
    expected_first = np.r_[np.full(m, 1 / np.sqrt(m)), np.zeros(n - m)]
    np.testing.assert_allclose(h[0], expected_first, atol=1e-12)


def test_rfft_vs_numpy(x64):
    x = _rng(15).normal(size=(2, 4, 6))
    t = T.RealFastFourierTransform()
    np.testing.assert_allclose(_fwd(t, jnp.asarray(x)), np.fft.rfft(x), rtol=1e-12, atol=1e-12)
    t2 = T.RealFastFourierTransform(transform_ndims=2)
    y2, x_back, _, _, _ = _round_trip(t2, jnp.asarray(x))
    np.testing.assert_allclose(y2, np.fft.rfftn(x, axes=(-2, -1)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x_back, x, atol=1e-12)
    # odd lengths need transform_shape for the inverse
    x5 = _rng(16).normal(size=(3, 5))
    t5 = T.RealFastFourierTransform(transform_shape=(5,))
    np.testing.assert_allclose(_round_trip(t5, jnp.asarray(x5))[1], x5, atol=1e-12)
    assert t5.inverse_shape((3, 3)) == (3, 5) and t.inverse_shape((3, 4)) == (3, 6)


def test_pack_rfft_vs_definition(x64):
    x = _rng(17).normal(size=(2, 6))
    y = _fwd(T.PackRealFastFourierCoefficientsTransform(), jnp.asarray(x))
    expected = x[:, :4].astype(complex)
    expected[:, 1:3] += 1j * x[:, 4:]
    np.testing.assert_array_equal(y, expected)
    # packed coefficients of x are the rfft of the real signal they describe
    c = np.fft.rfft(_rng(18).normal(size=7))
    packed = np.r_[c.real, c.imag[1:4]]
    t = T.PackRealFastFourierCoefficientsTransform((7,))
    y, packed_back = _fwd_inv(t, jnp.asarray(packed), jnp.asarray(c))
    np.testing.assert_allclose(y, c, rtol=1e-12)
    np.testing.assert_allclose(packed_back, packed, rtol=1e-12)


def test_simplex_to_ordered_vs_definition(x64):
    p = _rng(19).dirichlet(np.ones(4), size=(3,))
    anchor = np.array([0.5, -1.0, 0.0])
    t = T.SimplexToOrderedTransform(jnp.asarray(anchor))
    y, p_back, _, _, _ = _round_trip(t, jnp.asarray(p))
    expected = scipy.special.logit(np.cumsum(p[:, :-1], -1)) + anchor[:, None]
    np.testing.assert_allclose(y, expected, rtol=1e-10)
    assert np.all(np.diff(np.asarray(y), axis=-1) > 0)
    np.testing.assert_allclose(p_back, p, rtol=1e-10)


def test_recursive_linear_vs_loop(x64):
    rng = _rng(20)
    a = rng.normal(size=(3, 3)) * 0.6
    y0 = rng.normal(size=(2, 3))  # batched initial values
    x = rng.normal(size=(2, 5, 3))
    t = T.RecursiveLinearTransform(jnp.asarray(a), jnp.asarray(y0))
    y, x_back, _, _, _ = _round_trip(t, jnp.asarray(x))
    expected = np.empty_like(x)
    for b in range(2):
        prev = y0[b]
        for step in range(5):
            prev = a @ prev + x[b, step]
            expected[b, step] = prev
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x_back, x, rtol=1e-12, atol=1e-12)
    # default initial value is zero; the forward pass is a scan over time
    t0 = T.RecursiveLinearTransform(jnp.asarray(a))
    assert not np.any(np.asarray(t0.initial_value))
    assert "scan" in str(jax.make_jaxpr(t0)(jnp.asarray(x)))


def test_l1_ball_vs_definition(x64):
    x = _rng(21).normal(size=(4, 5)) * 2.0
    t = T.L1BallTransform()
    y, _, y_again, _, _ = _round_trip(t, jnp.asarray(x))
    expected = np.empty_like(x)
    for b in range(4):
        left = 1.0
        for i in range(5):
            expected[b, i] = np.tanh(x[b, i]) * left
            left -= abs(expected[b, i])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-15)
    assert np.all(np.abs(y).sum(-1) < 1)
    # arctanh near +-1 amplifies rounding, so the round trip is checked on the ball's side
    np.testing.assert_allclose(y_again, y, rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------------------------------
# round trips and shapes (float32 defaults, batch shapes)
# ------------------------------------------------------------------------------------------
def _round_trip_cases():
    return [
        ("cat", T.CatTransform([T.ExpTransform(), T.IdentityTransform()], -1, (2, 3)), (2, 3, 5)),
        ("complex", T.ComplexTransform(), (2, 3, 2)),
        pytest.param("dct", T.DiscreteCosineTransform(), (2, 3, 6), marks=pytest.mark.slow),
        ("dct_smooth", T.DiscreteCosineTransform(-2, smooth=1.0), (2, 6, 3)),
        ("haar", T.HaarTransform(), (2, 3, 11)),
        pytest.param(
            "haar_flip", T.HaarTransform(-2, flip=True), (2, 6, 3), marks=pytest.mark.slow
        ),
        ("l1_ball", T.L1BallTransform(), (2, 3, 4)),
        pytest.param(
            "pack",
            T.PackRealFastFourierCoefficientsTransform((6,)),
            (2, 3, 6),
            marks=pytest.mark.slow,
        ),
        pytest.param("rfft", T.RealFastFourierTransform(), (2, 3, 6), marks=pytest.mark.slow),
        ("rfft2", T.RealFastFourierTransform((4, 5), transform_ndims=2), (2, 4, 5)),
        pytest.param(
            "recursive",
            T.RecursiveLinearTransform(0.5 * jnp.eye(3)),
            (2, 4, 3),
            marks=pytest.mark.slow,
        ),
        (
            "recursive_batched_a",
            T.RecursiveLinearTransform(0.3 * jnp.ones((2, 1, 3, 3))),
            (3, 4, 3),
        ),
    ]


@pytest.mark.parametrize(
    "name,t,shape", _round_trip_cases(), ids=lambda c: str(c)[:20] if isinstance(c, str) else None
)
def test_round_trip_and_shapes(name, t, shape):
    x = jnp.asarray(_rng(3).normal(size=shape), jnp.float32)
    y, x_back, y_again, ladj, inv_ladj = _round_trip(t, x)
    assert y.shape == t.forward_shape(shape)
    if name == "recursive_batched_a":  # the transition matrices' batch broadcasts the input's
        assert y.shape == (2, 3, 4, 3) and x_back.shape == y.shape
        x = jnp.broadcast_to(x, y.shape)
    else:
        assert t.inverse_shape(y.shape) == shape
    if name == "l1_ball":
        # arctanh near +-1 amplifies float32 rounding; x round trips in float64 (see
        # test_l1_ball_vs_definition), here y does
        np.testing.assert_allclose(y_again, y, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(x_back, x, rtol=1e-5, atol=1e-5)
    assert bool(jnp.all(_check(t.codomain, y)))
    ev = t.domain.event_dim
    if name != "cat":  # cat along a batch axis keeps that axis
        assert ladj.shape == x.shape[: x.ndim - ev]
    np.testing.assert_allclose(inv_ladj, -ladj, rtol=1e-6)


def test_simplex_to_ordered_shapes():
    t = T.SimplexToOrderedTransform(jnp.zeros((2, 1)))
    p = jnp.asarray(_rng(24).dirichlet(np.ones(5), size=3), jnp.float32)
    y, p_back, _, ladj, _ = _round_trip(t, p)
    assert y.shape == t.forward_shape(p.shape) == (2, 3, 4)
    assert t.inverse_shape(y.shape) == p_back.shape == (2, 3, 5)
    np.testing.assert_allclose(p_back, jnp.broadcast_to(p, (2, 3, 5)), atol=1e-6)
    assert ladj.shape == (2, 3)


def test_domains_and_codomains():
    assert T.ComplexTransform().codomain is constraints.complex
    assert T.L1BallTransform().codomain is constraints.l1_ball
    assert T.SimplexToOrderedTransform().domain is constraints.simplex
    assert T.HaarTransform(-2).domain == constraints.independent(constraints.real, 2)
    assert T.RealFastFourierTransform(transform_ndims=2).codomain == constraints.independent(
        constraints.complex, 2
    )
    cat = T.CatTransform([T.ExpTransform(), T.SigmoidTransform()], dim=-1, lengths=(1, 2))
    assert cat.codomain == constraints.cat(
        [constraints.positive, constraints.unit_interval], dim=-1, lengths=(1, 2)
    )
    assert cat.inv.inv == cat and cat.length == 3


# ------------------------------------------------------------------------------------------
# constraints
# ------------------------------------------------------------------------------------------
def test_positive_semidefinite_vs_eigenvalues():
    rng = _rng(22)
    mats = []
    for rank in (3, 2, 1):  # full rank and singular PSD matrices
        b = rng.normal(size=(3, rank))
        mats.append(b @ b.T)
    mats.append(mats[0] - 5.0 * np.eye(3))  # indefinite
    mats.append(mats[0] + np.triu(np.ones((3, 3)), 1))  # not symmetric
    mats = np.stack(mats)
    expected = [
        np.allclose(m, m.T) and np.linalg.eigvalsh(m).min() >= -1e-10 * np.abs(m).max()
        for m in mats
    ]
    assert expected == [True, True, True, False, False]
    mats = np.concatenate([mats, np.eye(3)[None]])  # and the feasible point
    c = constraints.positive_semidefinite
    np.testing.assert_array_equal(_check(c, jnp.asarray(mats)), expected + [True])
    assert c.event_dim == 2
    np.testing.assert_array_equal(
        c.feasible_like(jnp.zeros((2, 3, 3))), np.broadcast_to(np.eye(3), (2, 3, 3))
    )


def test_positive_definite_circulant_vector_vs_circulant_matrix():
    rng = _rng(23)
    c = constraints.positive_definite_circulant_vector
    for n in (5, 6):
        spec = rng.exponential(size=n // 2 + 1)
        vectors = [np.fft.irfft(spec, n)]  # symmetric with nonnegative spectrum
        spec[1] = -0.5
        vectors.append(np.fft.irfft(spec, n))  # one negative eigenvalue
        vectors.append(rng.normal(size=n))  # generally not symmetric
        vectors.append(np.asarray(c.feasible_like(jnp.zeros(n))))
        expected = []
        for v in vectors:
            m = scipy.linalg.circulant(v)
            expected.append(
                np.allclose(m, m.T, atol=1e-6) and np.linalg.eigvalsh((m + m.T) / 2).min() > -1e-6
            )
        assert expected == [True, False, False, True]
        got = _check(c, jnp.asarray(np.stack(vectors), jnp.float32))
        np.testing.assert_array_equal(got, expected)


def test_complex_constraint():
    z = jnp.array([1.0 + 2.0j, jnp.inf + 0j, complex(0.0, np.nan), -3.0])
    np.testing.assert_array_equal(_check(constraints.complex, z), [True, False, False, True])
    assert constraints.complex.event_dim == 0 and not constraints.complex.is_discrete


def test_cat_constraint():
    c = constraints.cat([constraints.positive, constraints.real], dim=-1, lengths=(2, 1))
    x = jnp.array([[1.0, 2.0, -3.0], [1.0, -2.0, 3.0]])
    np.testing.assert_array_equal(_check(c, x), [[True, True, True], [True, False, True]])
    assert c.event_dim == 0 and not c.is_discrete
    # along an event axis: one verdict per vector
    cv = constraints.cat([constraints.simplex, constraints.real_vector], dim=-2, lengths=(1, 2))
    xv = jnp.array([[[0.5, 0.5], [1.0, 2.0], [3.0, 4.0]], [[0.5, 0.6], [1.0, 2.0], [3.0, 4.0]]])
    assert cv.event_dim == 1
    np.testing.assert_array_equal(_check(cv, xv), [[True, True, True], [False, True, True]])
    # discrete if any part is
    assert constraints.cat([constraints.boolean, constraints.real]).is_discrete
    np.testing.assert_array_equal(_check(c, c.feasible_like(x)), np.ones((2, 3), bool))


def test_is_dependent():
    assert constraints.is_dependent(constraints.dependent)
    assert not constraints.is_dependent(constraints.real)
    assert not constraints.is_dependent(T.ExpTransform())


@pytest.mark.parametrize(
    "c,value",
    [
        (constraints.cat([constraints.positive, constraints.real], -1, (2, 1)), [0.5, 2.0, -1.0]),
        (constraints.complex, [1.0 + 2.0j, -0.5j]),
        (constraints.positive_definite_circulant_vector, [2.0, 0.5, 0.0, 0.5]),
        (constraints.positive_semidefinite, [[1.0, 1.0], [1.0, 1.0]]),
    ],
    ids=repr,
)
def test_new_constraints_are_pytrees(c, value):
    c2 = jax.jit(lambda con: con)(c)
    assert type(c2) is type(c) and c2 == c and c2.event_dim == c.event_dim
    ok = jax.jit(lambda con, v: con(v))(c, jnp.asarray(value))
    assert bool(jnp.all(ok))
    if not isinstance(c, constraints._Cat):
        assert c2 is c  # parameter-free singletons stay the same object


# ------------------------------------------------------------------------------------------
# biject_to
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "c,shape",
    [
        (constraints.l1_ball, (2, 3, 4)),
        pytest.param(constraints.complex, (2, 3, 2), marks=pytest.mark.slow),
        (constraints.positive_semidefinite, (2, 6)),
        (
            constraints.cat([constraints.positive, constraints.interval(-1.0, 2.0)], -1, (2, 3)),
            (2, 5),
        ),
        pytest.param(
            constraints.cat([constraints.ordered_vector, constraints.real_vector], -2, (1, 2)),
            (3, 4),
            marks=pytest.mark.slow,
        ),
    ],
    ids=repr,
)
def test_biject_to_lands_in_support(c, shape):
    t = biject_to(c)
    x = 2.0 * jnp.asarray(_rng(5).normal(size=shape), jnp.float32)
    y, x_back, y_again, _, _ = _round_trip(t, x)
    assert y.shape == t.forward_shape(shape)
    assert bool(jnp.all(_check(c, y))), (c, y)
    np.testing.assert_allclose(y_again, y, rtol=1e-4, atol=1e-4)


def test_biject_to_types():
    assert isinstance(biject_to(constraints.l1_ball), T.L1BallTransform)
    assert isinstance(biject_to(constraints.complex), T.ComplexTransform)
    assert isinstance(biject_to(constraints.positive_semidefinite), T.PositiveDefiniteTransform)
    t = biject_to(constraints.cat([constraints.positive, constraints.real], dim=-1))
    assert isinstance(t, T.CatTransform)
    assert isinstance(t.transforms[0], T.ExpTransform) and t.lengths == (1, 1)
    # NumPyro 0.22 registers no bijection for these
    for c in (constraints.sphere, constraints.positive_definite_circulant_vector):
        with pytest.raises(NotImplementedError, match="no transform is registered"):
            biject_to(c)


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------
def test_bad_input_errors():
    with pytest.raises(ValueError, match="dim must be a negative int"):
        T.HaarTransform(dim=0)
    with pytest.raises(ValueError, match="dim must be a negative int"):
        T.DiscreteCosineTransform(dim=1)
    with pytest.raises(ValueError, match="needs at least 2 dims"):
        T.HaarTransform(dim=-2)(jnp.zeros(4))
    with pytest.raises(ValueError, match="last axis must have size 2"):
        T.ComplexTransform()(jnp.zeros((3, 3)))
    with pytest.raises(ValueError, match="transform_ndims is 1"):
        T.RealFastFourierTransform((4, 4))
    with pytest.raises(ValueError, match="needs transform_shape"):
        T.PackRealFastFourierCoefficientsTransform().inv(jnp.zeros(4, jnp.complex64))
    with pytest.raises(ValueError, match="transition_matrix"):
        T.RecursiveLinearTransform(jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="initial_value"):
        T.RecursiveLinearTransform(jnp.eye(2), jnp.zeros(3))
    with pytest.raises(TypeError, match="tseq"):
        T.CatTransform([])
    with pytest.raises(ValueError, match="lengths"):
        T.CatTransform([T.ExpTransform()], lengths=(1, 2))
    with pytest.raises(ValueError, match="sum to 3"):
        T.CatTransform([T.ExpTransform(), T.ExpTransform()], -1, (1, 2))(jnp.zeros(4))
    with pytest.raises(ValueError, match="changes its slice's shape"):
        T.CatTransform([T.StickBreakingTransform()], -2, (1,))(jnp.zeros((1, 3)))
    with pytest.raises(TypeError, match="cseq"):
        constraints.cat([1.0])
