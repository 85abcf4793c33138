"""Convex duality of log-sum-exp: ``entropy``, ``softmax_entropy``, ``fenchel_young_loss``.

* values against mpmath (60 digits) on every backend and dtype;
* the conjugacy ``sup_p <x, p> + H(p) = LSE(x)`` checked numerically with an
  optimiser that knows nothing of smoothmax, and the Fenchel-Young inequality
  ``<x, p> + H(p) <= LSE(x)`` on random points of the simplex;
* ``fenchel_young_loss >= 0``, ``= 0`` at ``y = softmax(x)``, equal to the
  softmax cross-entropy for one-hot ``y`` (hypothesis where natural);
* gradients: gradcheck / gradgradcheck, check_grads(order=2), closed forms, and
  NaN-free at ``-inf`` logits and zero probabilities.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import smoothmax as sm

mpmath.mp.dps = 60
INF, NAN = math.inf, math.nan
EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}

#: largest relative errors measured (read by the report script)
MEASURED: dict[tuple[str, str, str], float] = {}


def read(backend, array) -> np.ndarray:
    return np.asarray(backend.to_numpy(array), dtype=np.float64)


def rounded(backend, values, dtype):
    array = backend.asarray(np.asarray(values, dtype=np.float64), dtype)
    return array, read(backend, array)


def exact_lse(row) -> mpmath.mpf:
    finite = [mpmath.mpf(float(v)) for v in row if v != -INF]
    if not finite:
        return mpmath.mpf("-inf")
    top = max(finite)
    return top + mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in finite))


def exact_entropy(row) -> mpmath.mpf:
    return -mpmath.fsum(mpmath.mpf(float(p)) * mpmath.log(mpmath.mpf(float(p))) for p in row if p > 0)


def exact_softmax_entropy(row) -> mpmath.mpf:
    lse = exact_lse(row)
    return -mpmath.fsum(mpmath.exp(mpmath.mpf(float(v)) - lse) * (mpmath.mpf(float(v)) - lse)
                        for v in row if v != -INF)


def exact_fenchel_young(x_row, y_row) -> mpmath.mpf:
    lse = exact_lse(x_row)
    inner = mpmath.fsum(mpmath.mpf(float(y)) * mpmath.mpf(float(x)) for x, y in zip(x_row, y_row) if y != 0)
    return lse - inner - exact_entropy(y_row)


def relative_errors(got, exact, dtype):
    return [float(abs(mpmath.mpf(float(g)) - e) / max(abs(e), mpmath.mpf(1e-300))) / EPS[dtype]
            for g, e in zip(got, exact)]


def numpy_softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


# ------------------------------------------------------------------- values
def test_entropy_against_mpmath(xp_and_dtype):
    backend, dtype = xp_and_dtype
    rng = np.random.default_rng(3)
    rows = np.concatenate([rng.dirichlet(np.ones(6), 4), rng.dirichlet(np.full(6, 0.1), 4),
                           [[0.5, 0.5, 0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0]]])
    p, values = rounded(backend, rows, dtype)
    got = read(backend, sm.entropy(p))
    exact = [exact_entropy(row) for row in values]
    assert got[-1] == 0.0 and not np.signbit(got[-1])  # 0 log 0 = 0, and +0
    errors = relative_errors(got[:-1], exact[:-1], dtype)
    MEASURED[("entropy", backend.name, dtype)] = max(errors)
    # n terms each rounded in the compute dtype, then the sum: a few eps.
    assert max(errors) <= (8.0 if dtype in ("float32", "float64") else 2.0)


def test_entropy_special_values_and_axes(xp):
    p = xp.asarray([[0.25, 0.75], [-0.5, 1.5], [NAN, 1.0], [0.0, 0.0]])
    got = read(xp, sm.entropy(p))
    assert np.isnan(got[1]) and np.isnan(got[2]) and got[3] == 0.0
    table = np.array([[0.1, 0.2], [0.3, 0.4]])
    assert abs(float(read(xp, sm.entropy(xp.asarray(table), axis=None))) - float(exact_entropy(table.ravel()))) < 1e-15
    assert abs(float(read(xp, sm.entropy(xp.asarray(table), axis=(0, 1)))) - float(exact_entropy(table.ravel()))) < 1e-15
    np.testing.assert_allclose(read(xp, sm.entropy(xp.asarray(table), axis=0)),
                               [float(exact_entropy(table[:, j])) for j in range(2)], rtol=1e-15)


def test_softmax_entropy_against_mpmath(xp_and_dtype):
    backend, dtype = xp_and_dtype
    rng = np.random.default_rng(5)
    scale = 10.0 if dtype != "float16" else 4.0
    rows = np.concatenate([rng.normal(0, 1, (4, 7)), rng.normal(0, scale, (4, 7)),
                           [[0, 0, 0, 0, 0, 0, 0], [5, 0, 0, 0, 0, 0, 0], [0, -INF, -INF, 1, 2, -INF, 0.5]]])
    x, values = rounded(backend, rows, dtype)
    got = read(backend, sm.softmax_entropy(x))
    exact = [exact_softmax_entropy(row) for row in values]
    errors = relative_errors(got, exact, dtype)
    MEASURED[("softmax_entropy", backend.name, dtype)] = max(errors)
    assert max(errors) <= 8.0


def test_softmax_entropy_special_values(xp):
    x = xp.asarray([[INF, INF, INF, 0.0], [INF, 1.0, 2.0, 3.0], [-INF, -INF, -INF, -INF],
                    [NAN, 0.0, 0.0, 0.0], [0.0, -INF, -1000.0, -INF]])
    got = read(xp, sm.softmax_entropy(x))
    assert abs(got[0] - math.log(3)) < 1e-15  # three +inf: uniform over them
    assert got[1] == 0.0 and got[2] == 0.0 and np.isnan(got[3]) and got[4] == 0.0
    assert not np.any(np.signbit(got[[1, 2, 4]]))


def test_fenchel_young_against_mpmath(xp_and_dtype):
    backend, dtype = xp_and_dtype
    rng = np.random.default_rng(7)
    x, x_values = rounded(backend, rng.normal(0, 3, (6, 5)), dtype)
    y_raw = np.concatenate([rng.dirichlet(np.ones(5), 3), np.eye(5)[[0, 2]], [[0.5, 0.5, 0, 0, 0]]])
    y, y_values = rounded(backend, y_raw, dtype)
    got = read(backend, sm.fenchel_young_loss(x, y))
    exact = [exact_fenchel_young(a, b) for a, b in zip(x_values, y_values)]
    # Absolute error in units of eps * (LSE + sum |x y|): the loss is a difference of such terms.
    scale = [max(abs(exact_lse(a)), 1) + sum(abs(p * q) for p, q in zip(a, b)) for a, b in zip(x_values, y_values)]
    errors = [float(abs(mpmath.mpf(float(g)) - e) / s) / EPS[dtype] for g, e, s in zip(got, exact, scale)]
    MEASURED[("fenchel_young_loss", backend.name, dtype)] = max(errors)
    assert max(errors) <= 8.0


def test_fenchel_young_one_hot_is_cross_entropy(xp):
    rng = np.random.default_rng(9)
    x_values = rng.normal(0, 5, (4, 6))
    targets = [0, 3, 5, 2]
    y_values = np.eye(6)[targets]
    got = read(xp, sm.fenchel_young_loss(xp.asarray(x_values), xp.asarray(y_values)))
    expected = [float(exact_lse(row) - mpmath.mpf(row[t])) for row, t in zip(x_values, targets)]
    np.testing.assert_allclose(got, expected, rtol=4e-16 * 4, atol=0)


def test_fenchel_young_special_values(xp):
    x = xp.asarray([[0.0, -INF, 1.0], [0.0, -INF, 1.0], [0.0, 1.0, 2.0]])
    y = xp.asarray([[0.5, 0.0, 0.5], [0.5, 0.5, 0.0], [-0.5, 1.0, 0.5]])
    got = read(xp, sm.fenchel_young_loss(x, y))
    assert np.isfinite(got[0]) and got[1] == INF and np.isnan(got[2])


# ---------------------------------------------------------------- duality
def test_conjugacy_sup_equals_logsumexp():
    """sup over the simplex of <x, p> + H(p) = LSE(x): the optimiser (SLSQP on
    the simplex, no smoothmax inside) reaches LSE(x) from below, and the
    maximiser is softmax(x)."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(11)
    gaps = []
    for _ in range(5):
        x = rng.normal(0, 2, 6)

        def negative(p):
            p = np.clip(p, 1e-300, None)
            return -(x @ p - np.sum(p * np.log(p)))

        start = np.full(6, 1 / 6)
        result = minimize(negative, start, method="SLSQP", bounds=[(0, 1)] * 6,
                          constraints=[{"type": "eq", "fun": lambda p: p.sum() - 1}],
                          options={"ftol": 1e-15, "maxiter": 500})
        lse = float(exact_lse(x))
        sup = -result.fun
        gaps.append(lse - sup)
        assert -1e-12 <= lse - sup <= 1e-8
        # smoothmax's entropy at the maximiser gives the same value.
        value = float(x @ result.x + sm.entropy(result.x))
        assert abs(value - sup) <= 1e-12
        np.testing.assert_allclose(result.x, numpy_softmax(x), atol=1e-4)
    MEASURED[("conjugacy: max LSE - sup", "scipy", "float64")] = max(gaps)


@given(st.integers(0, 2**32 - 1))
def test_fenchel_young_inequality_on_random_points(seed):
    """<x, p> + H(p) <= LSE(x) for random p (smoothmax's entropy, mpmath LSE),
    with equality at p = softmax(x); the gap is fenchel_young_loss(x, p)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 9))
    x = rng.normal(0, 3, n)
    lse = float(exact_lse(x))
    for p in rng.dirichlet(np.full(n, 0.5), 5):
        value = float(x @ p + sm.entropy(p))
        assert value <= lse + 1e-13 * max(1.0, abs(lse))
        gap = float(sm.fenchel_young_loss(x, p))
        assert gap >= 0.0
        assert abs(gap - (lse - value)) <= 1e-12 * max(1.0, abs(lse), float(np.abs(x) @ p))
    at_softmax = numpy_softmax(x)
    assert abs(float(x @ at_softmax + sm.entropy(at_softmax)) - lse) <= 1e-13 * max(1.0, abs(lse))
    assert abs(float(sm.fenchel_young_loss(x, at_softmax))) <= 1e-13 * max(1.0, abs(lse))


@given(st.lists(st.floats(-50, 50, allow_nan=False), min_size=2, max_size=8), st.integers(0, 7))
def test_fenchel_young_nonnegative_and_zero_only_at_softmax(values, target):
    x = np.array(values)
    y = np.eye(len(x))[target % len(x)]
    loss = float(sm.fenchel_young_loss(x, y))
    assert loss >= 0.0
    assert abs(loss - float(exact_lse(x) - mpmath.mpf(x[target % len(x)]))) <= 1e-14 * max(1.0, abs(loss), float(np.max(np.abs(x))))
    mixed = 0.5 * y + 0.5 * numpy_softmax(x)
    if np.max(np.abs(mixed - numpy_softmax(x))) > 1e-6:
        assert float(sm.fenchel_young_loss(x, mixed)) > 0.0


# --------------------------------------------------------------- gradients
CASES = [
    ("entropy", lambda p: sm.entropy(p * p + 0.1), [(3, 4)]),
    ("softmax_entropy", lambda x: sm.softmax_entropy(x), [(3, 4)]),
    ("softmax_entropy-axis0", lambda x: sm.softmax_entropy(x, axis=0), [(4, 2)]),
    ("fenchel_young_loss", lambda x, y: sm.fenchel_young_loss(x, y * y + 0.05), [(3, 4), (3, 4)]),
]


@pytest.mark.parametrize("name,function,shapes", CASES, ids=[c[0] for c in CASES])
def test_torch_gradcheck_and_gradgradcheck(name, function, shapes):
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(13)
    inputs = tuple(torch.randn(shape, dtype=torch.float64, generator=generator, requires_grad=True)
                   for shape in shapes)
    assert torch.autograd.gradcheck(function, inputs, check_forward_ad=True)
    assert torch.autograd.gradgradcheck(function, inputs)


@pytest.mark.parametrize("name,function,shapes", CASES, ids=[c[0] for c in CASES])
def test_jax_check_grads_order_2(name, function, shapes):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from jax.test_util import check_grads

    rng = np.random.default_rng(17)
    inputs = tuple(jnp.asarray(rng.normal(size=shape)) for shape in shapes)
    check_grads(jax.jit(function), inputs, order=2, modes=("fwd", "rev"))


def test_softmax_entropy_gradient_closed_form_and_nan_free(autodiff_xp):
    x_values = np.array([[0.5, -INF, 1.0, -2.0], [-INF, -INF, 0.0, -INF]])
    gradient = read(autodiff_xp, autodiff_xp.grad(sm.softmax_entropy, autodiff_xp.asarray(x_values)))
    assert np.all(np.isfinite(gradient))
    expected = []
    for row in x_values:
        lse, h = exact_lse(row), exact_softmax_entropy(row)
        expected.append([0.0 if v == -INF else float(-mpmath.exp(mpmath.mpf(v) - lse) * (mpmath.mpf(v) - lse + h))
                         for v in row])
    np.testing.assert_allclose(gradient, expected, rtol=1e-14, atol=1e-16)


def test_fenchel_young_gradient_is_softmax_minus_y(autodiff_xp):
    x_values = np.array([[0.5, -1.0, 2.0], [1.0, -INF, 0.0]])
    y_values = np.array([[0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    y = autodiff_xp.asarray(y_values)
    gradient = read(autodiff_xp, autodiff_xp.grad(lambda v: sm.fenchel_young_loss(v, y), autodiff_xp.asarray(x_values)))
    expected = [[float(mpmath.exp(mpmath.mpf(v) - exact_lse(row))) - t if v != -INF else 0.0
                 for v, t in zip(row, targets)] for row, targets in zip(x_values, y_values)]
    np.testing.assert_allclose(gradient, expected, rtol=1e-14, atol=1e-16)


def test_entropy_gradient_zero_probabilities(autodiff_xp):
    p_values = np.array([0.5, 0.0, 0.25, 0.25])
    gradient = read(autodiff_xp, autodiff_xp.grad(sm.entropy, autodiff_xp.asarray(p_values)))
    np.testing.assert_allclose(gradient, [-(math.log(p) + 1) if p > 0 else 0.0 for p in p_values], rtol=1e-15)


# ---------------------------------------------------- dtypes, namespaces, errors
@pytest.mark.parametrize("name", ["entropy", "softmax_entropy", "fenchel_young_loss"])
def test_dtype_and_namespace_preserved(xp_and_dtype, name):
    backend, dtype = xp_and_dtype
    x = backend.asarray([[0.25, 0.75], [0.5, 0.5]], dtype)
    result = sm.fenchel_young_loss(x, x) if name == "fenchel_young_loss" else getattr(sm, name)(x)
    assert type(result) is type(x) and result.dtype == x.dtype and tuple(result.shape) == (2,)


def test_errors_name_the_argument(xp):
    x = xp.asarray([[0.25, 0.75]])
    with pytest.raises(TypeError, match=r"\bp\b"):
        sm.entropy([0.5, 0.5])
    with pytest.raises(TypeError, match=r"\by\b"):
        sm.fenchel_young_loss(x, [[0.5, 0.5]])
    with pytest.raises(ValueError, match="broadcast"):
        sm.fenchel_young_loss(x, xp.asarray([0.2, 0.3, 0.5]))
    with pytest.raises(ValueError, match="axis"):
        sm.entropy(x, axis=3)
    with pytest.raises(ValueError, match="axis"):
        sm.softmax_entropy(x, axis=3)
    with pytest.raises(TypeError, match="complex"):
        sm.entropy(np.array([1j]))
