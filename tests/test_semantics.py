"""One test per row of ../shared/semantics.md (special values, masks, weights,
temperature, dtypes, errors), on every installed backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

import smoothmax
from smoothmax import log_softmax, logsumexp, softmax

INF = math.inf
NAN = math.nan


def check(backend, got, expected) -> None:
    np.testing.assert_array_equal(backend.to_numpy(got), np.asarray(expected, dtype=np.float64))


# ---------------------------------------------------------------- value rows
def test_finite_values(xp):
    x = xp.asarray([1.0, 2.0, 3.0])
    np.testing.assert_allclose(xp.to_numpy(logsumexp(x)), math.log(math.exp(1) + math.exp(2) + math.exp(3)), rtol=1e-15)
    p = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    np.testing.assert_allclose(xp.to_numpy(softmax(x)), p, rtol=1e-15)
    np.testing.assert_allclose(xp.to_numpy(log_softmax(x)), np.log(p), rtol=1e-15)


def test_empty_slice(xp):
    x = xp.asarray(np.zeros((3, 0)))
    check(xp, logsumexp(x, axis=1), [-INF] * 3)
    check(xp, logsumexp(xp.asarray(np.zeros((0,)))), -INF)
    assert tuple(softmax(x, axis=1).shape) == (3, 0)
    assert tuple(log_softmax(x, axis=1).shape) == (3, 0)


def test_all_negative_infinity(xp):
    x = xp.asarray([[-INF, -INF, -INF], [0.0, -INF, 1.0]])
    lse = xp.to_numpy(logsumexp(x, axis=1))
    assert lse[0] == -INF and lse[1] == pytest.approx(math.log(1 + math.e))
    check(xp, softmax(x, axis=1)[0, ...], [0.0, 0.0, 0.0])
    check(xp, log_softmax(x, axis=1)[0, ...], [-INF, -INF, -INF])


def test_fully_masked_slice(xp):
    x = xp.asarray([[1.0, 2.0], [3.0, 4.0]])
    where = xp.asbool([[False, False], [True, False]])
    check(xp, logsumexp(x, axis=1, where=where), [-INF, 3.0])
    check(xp, softmax(x, axis=1, where=where), [[0.0, 0.0], [1.0, 0.0]])
    check(xp, log_softmax(x, axis=1, where=where), [[-INF, -INF], [0.0, -INF]])


def test_some_negative_infinity_ignored(xp):
    x = xp.asarray([0.0, -INF, 0.0])
    np.testing.assert_allclose(xp.to_numpy(logsumexp(x)), math.log(2.0), rtol=1e-15)
    check(xp, softmax(x), [0.5, 0.0, 0.5])


@pytest.mark.parametrize("count", [1, 2, 3])
def test_positive_infinity_entries(xp, count):
    values = [INF] * count + [1.0, -INF, 5.0]
    x = xp.asarray(values)
    check(xp, logsumexp(x), INF)
    check(xp, softmax(x), [1.0 / count] * count + [0.0, 0.0, 0.0])
    check(xp, log_softmax(x), [-math.log(count)] * count + [-INF, -INF, -INF])


def test_nan_poisons_slice(xp):
    x = xp.asarray([[1.0, NAN, 2.0], [1.0, 2.0, 3.0], [INF, NAN, -INF]])
    lse = xp.to_numpy(logsumexp(x, axis=1))
    assert math.isnan(lse[0]) and math.isfinite(lse[1]) and math.isnan(lse[2])
    p = xp.to_numpy(softmax(x, axis=1))
    assert np.isnan(p[0]).all() and np.isfinite(p[1]).all() and np.isnan(p[2]).all()
    assert np.isnan(xp.to_numpy(log_softmax(x, axis=1))[0]).all()


@pytest.mark.parametrize("hidden", [NAN, INF, -INF])
def test_masked_out_special_values_never_reach_output(xp, hidden):
    x = xp.asarray([1.0, hidden, 2.0])
    where = xp.asbool([True, False, True])
    expected = math.log(math.e + math.e**2)
    np.testing.assert_allclose(xp.to_numpy(logsumexp(x, where=where)), expected, rtol=1e-15)
    p = xp.to_numpy(softmax(x, where=where))
    assert p[1] == 0.0 and np.isfinite(p).all()


def test_where_broadcasts(xp):
    x = xp.asarray(np.arange(6.0).reshape(2, 3))
    where = xp.asbool([True, False, True])
    expected = [np.log(np.exp(0) + np.exp(2)), np.log(np.exp(3) + np.exp(5))]
    np.testing.assert_allclose(xp.to_numpy(logsumexp(x, axis=1, where=where)), expected, rtol=1e-15)


# ---------------------------------------------------------------- weights
def test_weights_mixed_signs_and_return_sign(xp):
    x = xp.asarray([1.0, 2.0, 3.0])
    b = xp.asarray([1.0, -2.0, 0.5])
    total = math.e - 2 * math.e**2 + 0.5 * math.e**3
    lse, sign = logsumexp(x, b=b, return_sign=True)
    np.testing.assert_allclose(xp.to_numpy(lse), math.log(abs(total)), rtol=1e-14)
    assert float(xp.to_numpy(sign)) == math.copysign(1.0, total)


def test_negative_weighted_sum_without_sign_is_nan(xp):
    x = xp.asarray([1.0, 2.0])
    b = xp.asarray([1.0, -1.0])
    assert math.isnan(float(xp.to_numpy(logsumexp(x, b=b))))
    lse, sign = logsumexp(x, b=b, return_sign=True)
    assert float(xp.to_numpy(sign)) == -1.0
    np.testing.assert_allclose(xp.to_numpy(lse), math.log(math.e**2 - math.e), rtol=1e-14)


def test_zero_weighted_sum_gives_negative_infinity_and_sign_zero(xp):
    x = xp.asarray([1.0, 1.0])
    b = xp.asarray([1.0, -1.0])
    lse, sign = logsumexp(x, b=b, return_sign=True)
    assert float(xp.to_numpy(lse)) == -INF and float(xp.to_numpy(sign)) == 0.0
    lse, sign = logsumexp(xp.asarray(np.zeros(0)), return_sign=True)
    assert float(xp.to_numpy(lse)) == -INF and float(xp.to_numpy(sign)) == 0.0


def test_zero_weights_are_absent(xp):
    x = xp.asarray([1.0, NAN, 2.0, INF])
    b = xp.asarray([1.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(xp.to_numpy(logsumexp(x, b=b)), math.log(math.e + math.e**2), rtol=1e-15)


def test_weights_broadcast(xp):
    x = xp.asarray(np.zeros((2, 3)))
    b = xp.asarray([1.0, 2.0, 3.0])
    np.testing.assert_allclose(xp.to_numpy(logsumexp(x, axis=1, b=b)), [math.log(6)] * 2, rtol=1e-15)


# ---------------------------------------------------------------- temperature
def test_temperature_positive_tightens_bounds(xp):
    values = np.array([0.3, 1.2, -0.7, 1.1])
    x = xp.asarray(values)
    for t in (2.0, 1.0, 0.1, 0.01):
        got = float(xp.to_numpy(logsumexp(x, temperature=t)))
        expected = t * math.log(np.exp(values / t).sum())
        assert got == pytest.approx(expected, rel=1e-14)
        assert values.max() < got <= values.max() + t * math.log(len(values)) + 1e-15


def test_temperature_negative_is_smooth_minimum(xp):
    values = np.array([0.3, 1.2, -0.7, 1.1])
    x = xp.asarray(values)
    got = float(xp.to_numpy(logsumexp(x, temperature=-0.5)))
    assert got == pytest.approx(-0.5 * math.log(np.exp(values / -0.5).sum()), rel=1e-14)
    assert values.min() + -0.5 * math.log(len(values)) - 1e-15 <= got < values.min()
    np.testing.assert_allclose(xp.to_numpy(softmax(x, temperature=-0.5)), xp.to_numpy(softmax(xp.asarray(-values / 0.5))), rtol=1e-15)


def test_temperature_zero_is_exact_max_and_uniform_over_ties(xp):
    x = xp.asarray([[1.0, 3.0, 3.0, -INF], [2.0, 0.0, 1.0, 1.5]])
    check(xp, logsumexp(x, axis=1, temperature=0), [3.0, 2.0])
    check(xp, softmax(x, axis=1, temperature=0), [[0.0, 0.5, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0]])
    check(xp, log_softmax(x, axis=1, temperature=0.0), [[-INF, -math.log(2), -math.log(2), -INF], [0.0, -INF, -INF, -INF]])
    nan_row = xp.asarray([1.0, NAN, 3.0])
    assert math.isnan(float(xp.to_numpy(logsumexp(nan_row, temperature=0))))
    assert np.isnan(xp.to_numpy(softmax(nan_row, temperature=0))).all()


# ---------------------------------------------------------------- dtypes and layout
def test_dtype_is_preserved(xp_and_dtype):
    xp, dtype = xp_and_dtype
    x = xp.asarray([[0.5, 1.0, -2.0], [3.0, 0.0, 1.0]], dtype)
    for result in (logsumexp(x, axis=1), softmax(x), log_softmax(x), logsumexp(x, axis=1, return_sign=True)[1]):
        assert result.dtype == xp.dtypes[dtype]


def test_integer_and_bool_promote_to_default_float(xp):
    module = xp.module
    if xp.name == "torch":
        integers, booleans = module.tensor([1, 2, 3]), module.tensor([True, False])
        default = module.get_default_dtype()
    else:
        integers, booleans = module.asarray([1, 2, 3]), module.asarray([True, False])
        default = module.asarray(1.0).dtype
    assert logsumexp(integers).dtype == default
    assert softmax(booleans).dtype == default
    np.testing.assert_allclose(xp.to_numpy(logsumexp(integers)), math.log(math.e + math.e**2 + math.e**3), rtol=1e-6)


def test_device_is_preserved(xp):
    from array_api_compat import device

    x = xp.asarray([1.0, 2.0])
    for result in (logsumexp(x), softmax(x), log_softmax(x)):
        assert device(result) == device(x)


def test_input_never_modified(xp):
    values = np.array([[1.0, INF, -INF, 2.0], [NAN, 0.0, 1.0, 5.0]])
    x = xp.asarray(values)
    b = xp.asarray(np.ones(4))
    where = xp.asbool([True, True, False, True])
    for call in (
        lambda: logsumexp(x, axis=1, b=b, where=where, temperature=-0.5),
        lambda: softmax(x, where=where, temperature=0),
        lambda: log_softmax(x, axis=0),
    ):
        call()
        np.testing.assert_array_equal(xp.to_numpy(x), values)
        np.testing.assert_array_equal(xp.to_numpy(b), np.ones(4))


@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1, (0, 2), (2, 0), (0, 1, 2), ()])
@pytest.mark.parametrize("keepdims", [False, True])
def test_axes_and_keepdims_match_numpy(xp, axis, keepdims):
    values = np.random.default_rng(7).standard_normal((2, 3, 4))
    x = xp.asarray(values)
    # reducing no axes is the identity (log(exp(x)) in NumPy is not exact)
    expected = values if axis == () else np.log(np.sum(np.exp(values), axis=axis, keepdims=keepdims))
    got = xp.to_numpy(logsumexp(x, axis=axis, keepdims=keepdims))
    assert got.shape == expected.shape
    # atol: a result near 0 (here 0.00375 = m + log1p(rest) with m ~ -1.1) comes from
    # cancellation and is defined only to ulps of m; the naive reference itself is
    # 59 ulp off there (Dask's long-double merge gives the exact value).
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-15)
    if axis != ():
        p = xp.to_numpy(softmax(x, axis=axis))
        np.testing.assert_allclose(p, np.exp(values) / np.sum(np.exp(values), axis=axis, keepdims=True), rtol=1e-14)


def test_zero_dimensional_input(xp):
    x = xp.asarray(2.5)
    assert float(xp.to_numpy(logsumexp(x))) == 2.5
    assert float(xp.to_numpy(softmax(x, axis=None))) == 1.0


# ---------------------------------------------------------------- errors
def test_error_not_an_array():
    with pytest.raises(TypeError, match="x must be an array"):
        logsumexp([1.0, 2.0])
    with pytest.raises(TypeError, match="x must be an array"):
        softmax("abc")


def test_error_mixed_namespaces(xp):
    from conftest import BACKENDS

    other = next(backend for backend in BACKENDS if backend.name != xp.name)
    x = xp.asarray([1.0, 2.0])
    with pytest.raises(TypeError, match="b is an array of namespace"):
        logsumexp(x, b=other.asarray([1.0, 1.0]))
    with pytest.raises(TypeError, match="where is an array of namespace"):
        softmax(x, where=other.asbool([True, False]))


def test_error_complex_dtype(xp):
    if xp.name == "torch":
        x = xp.module.tensor([1 + 1j, 2.0])
    else:
        x = xp.module.asarray(np.array([1 + 1j, 2.0]))
    with pytest.raises(TypeError, match="complex"):
        logsumexp(x)


def test_error_string_dtype():
    with pytest.raises(TypeError):
        logsumexp(np.array(["a", "b"]))


@pytest.mark.parametrize("axis", [2, -3, (0, 0), (1, -1)])
def test_error_axis_out_of_range_or_repeated(xp, axis):
    x = xp.asarray(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="axis"):
        logsumexp(x, axis=axis)
    with pytest.raises(smoothmax.AxisError):
        softmax(x, axis=axis)


def test_error_axis_not_integer(xp):
    with pytest.raises(TypeError, match="axis"):
        logsumexp(xp.asarray([1.0]), axis=0.5)


def test_error_b_and_where_do_not_broadcast(xp):
    x = xp.asarray(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="b of shape"):
        logsumexp(x, b=xp.asarray(np.ones(4)))
    with pytest.raises(ValueError, match="where of shape"):
        logsumexp(x, where=xp.asbool(np.ones((3, 2), dtype=bool)))


def test_error_where_not_bool(xp):
    with pytest.raises(TypeError, match="where must be a boolean"):
        logsumexp(xp.asarray([1.0, 2.0]), where=xp.asarray([1.0, 0.0]))


@pytest.mark.parametrize("temperature", [INF, -INF, NAN])
def test_error_non_finite_temperature(xp, temperature):
    with pytest.raises(ValueError, match="temperature"):
        logsumexp(xp.asarray([1.0]), temperature=temperature)


def test_error_temperature_not_a_number(xp):
    with pytest.raises(TypeError, match="temperature"):
        softmax(xp.asarray([1.0]), temperature="hot")


def test_all_zero_weights_are_an_empty_sum(xp):
    lse, sign = logsumexp(xp.asarray([[1.0, 2.0], [3.0, 4.0]]), axis=1, b=xp.asarray([[0.0, 0.0], [0.0, 1.0]]), return_sign=True)
    check(xp, lse, [-INF, 4.0])
    check(xp, sign, [0.0, 1.0])


# ------------------------------------------- the same rows at the fast paths' sizes
# Backends' fast paths take over by size (the JAX one-piece and large-array paths,
# PyTorch's NumPy kernel, blocks and long-row pieces, NumPy's blocks), and the
# tests above run arrays of a few elements. A backend's own reductions can differ
# by size too: this XLA:CPU's maximum skips NaN in arrays of more than a few
# hundred elements. So every special slice of the table again, among ordinary
# ones, at sizes and layouts where each path runs.

#: (slices, n): the slices' count and length; layout: where the reduced axis lies;
#: temperature: the fast paths divide ``x - m`` by it (a power of two: the
#: reference's ``x / t`` is exact).
SIZED_CASES = {
    "900x8": ((900, 8), "last", 1.0),  # JAX one piece, in XLA's vectorized fusions
    "64x1000": ((64, 1000), "last", 1.0),
    "64x1000-axis0": ((64, 1000), "first", 1.0),
    "64x1000-t0.5": ((64, 1000), "last", 0.5),
    "2200x1024": ((2200, 1024), "last", 1.0),  # > 8 MiB: JAX large path, PyTorch blocks
    "2200x1024-axis0": ((2200, 1024), "first", 1.0),
    "2200x1024-middle": ((2200, 1024), "middle", 1.0),  # (20, 1024, 110), axis 1
    "2200x1024-t4": ((2200, 1024), "last", 4.0),
    "9x70000": ((9, 70_000), "last", 1.0),  # slices past PyTorch's NumPy kernel
    "9x300000": ((9, 300_000), "last", 1.0),  # slices longer than a block
}

#: Dask and array-api-strict run the generic kernel (Dask chunk by chunk): the smaller cases say enough.
SIZED_LARGE_CASES = {case for case, ((count, n), _, _) in SIZED_CASES.items() if count * n > 100_000}
#: Long slices are PyTorch's and NumPy's thresholds; JAX's large path runs at 2200 x 1024 already.
SIZED_LONG_CASES = {"9x70000", "9x300000"}


def _special_slices(count: int, n: int, dtype: str) -> tuple[np.ndarray, list[str]]:
    """``count`` slices of ``n``: one of each special kind of the table first,
    then ordinary ones (normal, standard deviation 3, as the benchmark's)."""
    rows = (3.0 * np.random.default_rng(count + n).standard_normal((count, n))).astype(dtype)
    kinds = ["nan", "nan and +inf", "+inf", "two +inf", "all -inf", "some -inf", "one dominant", "ties"]
    rows[0, n // 2] = NAN
    rows[1, 0], rows[1, -1] = NAN, INF
    rows[2, 1] = INF
    rows[3, 1] = rows[3, -1] = INF
    rows[4] = -INF
    rows[5, ::3] = -INF
    rows[6] = -40.0
    rows[6, n // 3] = 0.0
    rows[7] = 2.5
    return rows, kinds + ["ordinary"] * (count - len(kinds))


def _laid_out(rows: np.ndarray, layout: str) -> tuple[np.ndarray, int]:
    """The slices as a contiguous array and the axis that holds them."""
    if layout == "last":
        return rows, 1
    if layout == "first":
        return np.ascontiguousarray(rows.T), 0
    before = 20  # (20, n, slices / 20): slice (i, :, j) is rows[i * after + j]
    after = rows.shape[0] // before
    return np.ascontiguousarray(rows.reshape(before, after, -1).transpose(0, 2, 1)), 1


def _slices_of(values: np.ndarray, layout: str, count: int) -> np.ndarray:
    """An output laid out as :func:`_laid_out` back as ``(count, n)`` slices."""
    if layout == "last":
        return values
    if layout == "first":
        return values.T
    return values.transpose(0, 2, 1).reshape(count, -1)


def _expected_slice(row: np.ndarray, kind: str, t: float) -> tuple[float, np.ndarray]:
    """``lse`` and ``softmax`` of one slice at temperature ``t`` by the table
    (``t LSE(x / t)``, ``softmax(x / t)``), the finite ones in long double from
    the (exactly representable) inputs: not through smoothmax."""
    n = row.size
    if kind in ("nan", "nan and +inf"):
        return NAN, np.full(n, NAN)
    if kind in ("+inf", "two +inf"):
        positive_infinity = row == INF
        return INF, positive_infinity / positive_infinity.sum()
    if kind == "all -inf":
        return -INF, np.zeros(n)
    values = row.astype(np.longdouble) / t
    largest = values.max()
    below = values < largest
    # the terms without one maximum's 1, summed apart: 1 + 4e-17 is 1 even in long double
    rest = np.exp(values[below] - largest).sum() + (np.count_nonzero(~below) - 1)
    lse = largest + np.log1p(rest)
    return float(t * lse), np.asarray(np.exp(values - lse), dtype=np.float64)


def _sized_functions(xp, axis: int, t: float) -> dict:
    """``logsumexp``, ``softmax``, ``log_softmax`` and (with autodiff) the
    gradient of ``logsumexp`` along ``axis`` at temperature ``t``; jitted on
    JAX, as user code runs them."""
    named = {
        "logsumexp": lambda v: logsumexp(v, axis=axis, temperature=t),
        "softmax": lambda v: softmax(v, axis=axis, temperature=t),
        "log_softmax": lambda v: log_softmax(v, axis=axis, temperature=t),
    }
    if xp.has_autodiff:
        named["gradient"] = lambda v: xp.grad(lambda w: logsumexp(w, axis=axis, temperature=t), v)
    if xp.name == "jax":
        import jax

        named = {name: jax.jit(function) for name, function in named.items()}
    return named


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(SIZED_CASES))
def test_special_slices_among_many_keep_the_table(xp, case, dtype):
    """Each special slice of the table, among ordinary ones, at one of ``SIZED_CASES``:
    ``logsumexp``, ``softmax`` and ``log_softmax`` as the table says (the finite
    ones against long double from the inputs), the gradient bitwise ``softmax``.
    The kind of bug it catches: JAX's fast paths on this XLA:CPU dropped NaN
    at 900 x 8 and 64 x 1000 and gave ``+inf`` for NaN beside ``+inf`` on the
    large path (fixed 2026-11-27; the code before fails every JAX case here)."""
    (count, n), layout, t = SIZED_CASES[case]
    if xp.name in ("dask", "array_api_strict") and case in SIZED_LARGE_CASES:
        pytest.skip("the generic kernel: the smaller cases cover it")
    if xp.name == "jax" and case in SIZED_LONG_CASES:
        pytest.skip("JAX's large-array path runs at 2200 x 1024 (each case compiles for ~3 s)")
    if xp.name == "jax" and case in SIZED_LARGE_CASES and (dtype == "float64" or case == "2200x1024-t4"):
        # suite time: each JAX case here compiles four large-path programs (~8 s)
        pytest.skip("JAX's large path in float32 at t = 1 (its t = 3 and float64: test_jax_fast_path_matches_generic_under_jit)")
    rows, kinds = _special_slices(count, n, dtype)
    values, axis = _laid_out(rows, layout)
    x = xp.asarray(values, dtype)
    outputs = {name: xp.to_numpy(function(x)) for name, function in _sized_functions(xp, axis, t).items()}
    lse = outputs["logsumexp"].reshape(-1)
    q = _slices_of(outputs["softmax"], layout, count)
    log_q = _slices_of(outputs["log_softmax"], layout, count)
    eps = float(np.finfo(dtype).eps)
    for index in sorted(set(range(8)) | {count - 1, count // 2}):
        kind, where = kinds[index], f"{case} {dtype} slice {index} ({kinds[index]})"
        expected_lse, expected_q = _expected_slice(rows[index], kind, t)
        found_lse = lse[index]
        if math.isfinite(expected_lse):
            assert found_lse == pytest.approx(expected_lse, rel=8 * eps, abs=0), where
        else:
            assert (math.isnan(found_lse) and math.isnan(expected_lse)) or found_lse == expected_lse, (where, found_lse)
        # x - max rounds at the scale of the inputs: exp of it then errs by that much, relatively
        finite = rows[index][np.isfinite(rows[index])] / t
        scale = 8 * eps * (1 + (np.abs(finite).max() if finite.size else 0))
        np.testing.assert_allclose(q[index], expected_q, rtol=scale, atol=0, err_msg=where)
        with np.errstate(divide="ignore"):
            expected_log_q = np.log(expected_q)
        if kind in ("nan", "nan and +inf"):
            assert np.isnan(log_q[index]).all(), where
        else:
            np.testing.assert_allclose(log_q[index], expected_log_q, rtol=8 * eps, atol=scale, err_msg=where)
    if "gradient" in outputs:
        # the gradient of logsumexp is softmax, bitwise, special slices included (all -inf: 0, not NaN)
        np.testing.assert_array_equal(outputs["gradient"], outputs["softmax"], err_msg=f"{case} {dtype}")


#: The test below runs float32 only (suite time): the size-dependent NaN of JAX's
#: ``max`` showed in both dtypes alike.
FAMILY_DTYPE = "float32"

#: The rest of the family, each reducing the last axis (log_matmul_exp: the rows of
#: ``a`` against a fixed ``b``), for the test below.
FAMILY_AT_SIZE = {
    "weighted logsumexp": lambda xp, v: logsumexp(v, axis=1, b=xp.module.ones_like(v)),
    "logsumexp with where": lambda xp, v: logsumexp(v, axis=1, where=xp.asbool(np.ones(tuple(v.shape), bool))),
    "logmeanexp": lambda xp, v: smoothmax.logmeanexp(v, axis=1),
    "log1psumexp": lambda xp, v: smoothmax.log1psumexp(v, axis=1),
    "logcumsumexp": lambda xp, v: smoothmax.logcumsumexp(v, axis=1),
    "softmax_entropy": lambda xp, v: smoothmax.softmax_entropy(v, axis=1),
    "log_matmul_exp": lambda xp, v: smoothmax.log_matmul_exp(
        v, xp.asarray(np.linspace(-2.0, 2.0, v.shape[1] * 3).reshape(-1, 3), FAMILY_DTYPE)
    ),
}


@pytest.mark.parametrize("shape", [(900, 8), (64, 1000)], ids=["900x8", "64x1000"])
@pytest.mark.parametrize("name", list(FAMILY_AT_SIZE))
def test_family_at_size_gives_each_special_slice_its_value_alone(xp, name, shape):
    """Each special slice of ``_special_slices`` among many ordinary ones gives
    what it gives alone (where the tests above and the conformance suite check
    it): the same NaN, the same infinities, the finite values within a few ulps.
    A backend whose reductions change with the array's size (this XLA:CPU drops
    NaN from ``max`` in arrays of more than a few hundred elements) shows here."""
    if xp.name == "dask" and name in ("logcumsumexp", "log_matmul_exp"):
        pytest.skip("Dask runs the generic code chunk by chunk: covered by the reductions")
    if xp.name == "jax" and name == "logcumsumexp" and shape[1] > 8:
        pytest.skip("JAX compiles the 1000-long scan and its gradient for ~15 s: 900 x 8 (7200 elements) shows size")
    count, n = shape
    dtype = FAMILY_DTYPE
    rows, kinds = _special_slices(count, n, dtype)
    function = FAMILY_AT_SIZE[name]
    if xp.name == "jax":
        import jax

        jitted = jax.jit(lambda v: function(xp, v))
    else:
        jitted = lambda v: function(xp, v)  # noqa: E731
    gradient = None
    if xp.has_autodiff:
        gradient = lambda v: xp.grad(lambda w: function(xp, w), v)  # noqa: E731
        if xp.name == "jax":
            gradient = jax.jit(gradient)
    many = xp.to_numpy(jitted(xp.asarray(rows, dtype)))
    many_gradients = None if gradient is None else xp.to_numpy(gradient(xp.asarray(rows, dtype)))
    eps = float(np.finfo(dtype).eps)
    for index in sorted(set(range(8)) | {count - 1}):
        if many_gradients is not None:
            # the gradient too (a slice's gradient is its own: every function here
            # reduces or scans within a row of x)
            found = many_gradients[index]
            alone = xp.to_numpy(gradient(xp.asarray(rows[index : index + 1], dtype)))[0]
            where = f"gradient of {name} {shape} {dtype} slice {index} ({kinds[index]})"
            assert np.array_equal(np.isnan(found), np.isnan(alone)), where
            assert np.array_equal(found[np.isinf(alone)], alone[np.isinf(alone)]), where
            finite = np.isfinite(alone)
            # entries that cancel to ~0 (softmax_entropy's on ties) carry rounding
            # noise of the terms' size, eps (1 + log n) at most
            noise = 32 * eps * (1 + math.log(n))
            np.testing.assert_allclose(found[finite], alone[finite], rtol=64 * eps, atol=noise, err_msg=where)
        alone = xp.to_numpy(jitted(xp.asarray(rows[index : index + 1], dtype)))[0]
        found = many[index]
        where = f"{name} {shape} {dtype} slice {index} ({kinds[index]}): {found} alone {alone}"
        assert np.array_equal(np.isnan(found), np.isnan(alone)), where
        finite = np.isfinite(alone)
        assert np.array_equal(found[~finite & ~np.isnan(alone)], alone[~finite & ~np.isnan(alone)]), where
        tolerance = 16 * eps
        if name == "log_matmul_exp":
            # BLAS sums S = P Q in an order that depends on the number of rows, and a
            # dominant term's small companions round against it: within its documented
            # error, k eps of log S on the scale |r_i + c_j| (the row's maximum and 2, b's)
            row = rows[index][np.isfinite(rows[index])]
            tolerance = n * eps * (2.0 + (np.abs(row).max() if row.size else 0.0))
        np.testing.assert_allclose(found[finite], alone[finite], rtol=16 * eps, atol=tolerance, err_msg=where)
