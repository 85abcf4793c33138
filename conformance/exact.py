"""Exact references with mpmath (used by ``generate.py`` only, never by the runner).

* :func:`round_to_format` rounds an mpmath number (or a float) correctly, to
  nearest with ties to even, into a :class:`~conformance.floats.FloatFormat`,
  subnormals and overflow included: the one helper behind every input and
  expected value of the case files.
* :func:`logsumexp`, :func:`softmax`, :func:`log_softmax` compute the contract
  of ``/work/shared/semantics.md`` from inputs taken as exact, at the current
  ``mpmath.mp.prec``; ``generate.py`` runs them at two precisions and checks
  that the rounded results agree.

A reference takes ``arrays`` (name -> float64 or bool NumPy array, the case's
inputs for one dtype) and the case's keyword arguments, and returns a tuple of
NumPy object arrays of ``mpmath.mpf``, one per output of the function.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Callable, Sequence

import mpmath
import numpy as np
from mpmath import mpf

from .floats import FloatFormat

INF = mpf("inf")
NEG_INF = mpf("-inf")
NAN = mpf("nan")


# ------------------------------------------------------------------ rounding
def _as_fraction(value: Any) -> Fraction:
    if isinstance(value, float):
        return Fraction(value)
    sign, mantissa, exponent, _ = mpf(value)._mpf_  # binary, exact; man_exp drops the sign
    return (-1) ** sign * Fraction(mantissa) * Fraction(2) ** exponent


def round_to_format(value: Any, fmt: FloatFormat) -> float:
    """``value`` rounded to nearest, ties to even, in ``fmt``, as a Python float.

    Below the smallest normal the quantum stays ``2**(min_exponent - precision + 1)``
    (gradual underflow); magnitudes that round beyond the largest finite value
    give an infinity; signed zeros keep the sign of ``value``.
    """
    value = mpf(value) if not isinstance(value, float) else value
    if mpmath.isnan(value):
        return math.nan
    if mpmath.isinf(value):
        return math.inf if value > 0 else -math.inf
    if value == 0:
        return math.copysign(0.0, float(value)) if isinstance(value, float) else 0.0
    exact = _as_fraction(value)
    floor_log2 = int(mpmath.frexp(mpf(value))[1]) - 1  # |value| in [2**e, 2**(e+1))
    quantum_exponent = max(floor_log2, fmt.min_exponent) - (fmt.precision - 1)
    scaled = exact / Fraction(2) ** quantum_exponent
    integer = round(scaled)  # Fraction.__round__: ties to even
    if integer == 0:
        return math.copysign(0.0, float(exact))
    magnitude = Fraction(abs(integer)) * Fraction(2) ** quantum_exponent
    if magnitude > Fraction(fmt.largest_finite):
        return math.copysign(math.inf, float(exact))
    return math.ldexp(float(integer), quantum_exponent)


def ulp_of_exact(value: Any, fmt: FloatFormat) -> mpf:
    """ulp of the exact ``value`` in ``fmt``: ``2**(max(floor(log2|v|), emin) - p + 1)``."""
    value = mpf(value)
    if value == 0:
        return mpf(fmt.smallest_subnormal)
    floor_log2 = int(mpmath.frexp(value)[1]) - 1
    return mpmath.ldexp(mpf(1), max(floor_log2, fmt.min_exponent) - fmt.precision + 1)


def rounded_and_offset(value: Any, fmt: FloatFormat) -> tuple[float, float]:
    """``(rounded, (value - rounded) / ulp(value))``; the offset is 0 for NaN and
    for infinite results (overflow), which must then match exactly."""
    rounded = round_to_format(value, fmt)
    if not math.isfinite(rounded):
        return rounded, 0.0
    offset = (mpf(value) - mpf(rounded)) / ulp_of_exact(value, fmt)
    return rounded, float(offset)


def round_array(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Round every entry of a float64 (or mpf object) array into ``fmt``; float64 result."""
    flat = [round_to_format(value, fmt) for value in np.asarray(values).ravel()]
    return np.asarray(flat, dtype=np.float64).reshape(np.shape(values))


# ------------------------------------------------------------- slice layout
def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    return tuple(sorted(int(item) % ndim for item in items)) if ndim else ()


def _to_rows(array: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
    """Move ``axes`` last and flatten them: a 2-D (kept, reduced) array, and the
    permuted shape to undo it."""
    kept = tuple(i for i in range(array.ndim) if i not in axes)
    permuted = np.transpose(array, kept + axes)
    kept_shape = tuple(array.shape[i] for i in kept)
    reduced_size = math.prod(array.shape[i] for i in axes)
    return permuted.reshape(math.prod(kept_shape), reduced_size), permuted.shape


def _from_rows(rows: np.ndarray, permuted_shape: tuple[int, ...], axes: tuple[int, ...], ndim: int) -> np.ndarray:
    kept = tuple(i for i in range(ndim) if i not in axes)
    order = kept + axes
    inverse = [order.index(i) for i in range(ndim)]
    return rows.reshape(permuted_shape).transpose(inverse)


def _reduced_shape(shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> tuple[int, ...]:
    if keepdims:
        return tuple(1 if i in axes else n for i, n in enumerate(shape))
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def _slices(arrays: dict[str, np.ndarray], kwargs: dict[str, Any], default_axis: Any):
    """Per-slice (values, weights, present) lists for a reduction over ``axis``."""
    x = np.asarray(arrays["x"], dtype=np.float64)
    axes = _axes(kwargs.get("axis", default_axis), x.ndim)
    weights = arrays.get("b")
    where = arrays.get("where")
    weights = np.broadcast_to(np.ones(()) if weights is None else weights, x.shape)
    where = np.broadcast_to(np.ones((), dtype=bool) if where is None else where, x.shape)
    x_rows, permuted_shape = _to_rows(x, axes)
    weight_rows, _ = _to_rows(np.asarray(weights, dtype=np.float64), axes)
    where_rows, _ = _to_rows(np.asarray(where, dtype=bool), axes)
    return x, axes, permuted_shape, x_rows, weight_rows, where_rows


# ---------------------------------------------------------------- one slice
def _divide(value: mpf, temperature: mpf) -> mpf:
    return value / temperature if temperature != 0 else value


def _slice_logsumexp(values: Sequence[float], weights: Sequence[float], present: Sequence[bool],
                     temperature: mpf) -> tuple[mpf, mpf]:
    """``(t log|sum b exp(x / t)|, sign of the sum)`` of one slice, per the contract."""
    terms = [(mpf(x), mpf(b)) for x, b, keep in zip(values, weights, present) if keep and b != 0]
    if any(mpmath.isnan(x) or mpmath.isnan(b) for x, b in terms):
        return NAN, NAN
    if temperature == 0:
        # The limit t -> 0+: the exact max over the present entries.
        if not terms:
            return NEG_INF, mpf(0)
        top = max(x for x, _ in terms)
        weight_of_ties = sum(b for x, b in terms if x == top)
        if weight_of_ties == 0:
            raise NotImplementedError("t = 0 with weights cancelling on the ties")
        return top, mpmath.sign(weight_of_ties)
    scaled = [(x / temperature, b) for x, b in terms]
    infinite = [b for y, b in scaled if y == INF]
    if infinite:
        total_weight = sum(infinite)
        if total_weight == 0:
            raise NotImplementedError("+inf entries whose weights cancel")
        return temperature * INF, mpmath.sign(total_weight)
    live = [(y, b) for y, b in scaled if y != NEG_INF]
    if not live:
        return NEG_INF if temperature > 0 else INF, mpf(0)
    pivot, log_one_plus_rest, sign = _log_sum_about_pivot(live)
    if sign == 0:
        return NEG_INF if temperature > 0 else INF, mpf(0)
    return temperature * (pivot + log_one_plus_rest), sign


def _log_sum_about_pivot(terms: Sequence[tuple[mpf, mpf]]) -> tuple[mpf, mpf, mpf]:
    """``log|sum b e^y|`` of finite terms as ``(y_k + log|b_k|, log|1 + rest|, sign)``.

    Factoring out the largest term ``k`` keeps the relative accuracy of results
    near zero: ``log(fsum(...))`` at 50 digits rounds ``1 + 1e-310`` to 1 and
    returns 0 for ``LSE([0, -713])``, whose exact value is ``~2.2e-310``.
    """
    k = max(range(len(terms)), key=lambda i: terms[i][0])
    y_k, b_k = terms[k]
    rest = mpmath.fsum((b / b_k) * mpmath.exp(y - y_k) for i, (y, b) in enumerate(terms) if i != k)
    one_plus_rest = 1 + rest
    if one_plus_rest == 0:
        return y_k, NEG_INF, mpf(0)
    log_one_plus_rest = mpmath.log1p(rest) if rest > -1 else mpmath.log(abs(one_plus_rest))
    return y_k + mpmath.log(abs(b_k)), log_one_plus_rest, mpmath.sign(b_k) * mpmath.sign(one_plus_rest)


def _slice_log_softmax(values: Sequence[float], present: Sequence[bool], temperature: mpf) -> list[mpf]:
    """``log softmax(x / t)`` of one slice; absent entries give ``-inf``."""
    xs = [mpf(x) if keep else NEG_INF for x, keep in zip(values, present)]
    if any(mpmath.isnan(x) for x, keep in zip(xs, present) if keep):
        return [NAN] * len(xs)
    if temperature == 0:
        live = [x for x, keep in zip(xs, present) if keep]
        top = max(live) if live else NEG_INF
        if top == NEG_INF:
            return [NEG_INF] * len(xs)
        ties = sum(1 for x in xs if x == top)
        return [-mpmath.log(ties) if x == top else NEG_INF for x in xs]
    ys = [x / temperature if keep else NEG_INF for x, keep in zip(xs, present)]
    infinite = sum(1 for y in ys if y == INF)
    if infinite:
        return [-mpmath.log(infinite) if y == INF else NEG_INF for y in ys]
    finite = [y for y in ys if y != NEG_INF]
    if not finite:
        return [NEG_INF] * len(ys)
    pivot, log_one_plus_rest, _ = _log_sum_about_pivot([(y, mpf(1)) for y in finite])
    # (y - pivot) first: exact, and the dominant entry's value is -log1p(rest).
    return [(y - pivot) - log_one_plus_rest if y != NEG_INF else NEG_INF for y in ys]


def _slice_softmax(values: Sequence[float], present: Sequence[bool], temperature: mpf) -> list[mpf]:
    return [mpmath.exp(value) if not mpmath.isnan(value) else NAN
            for value in _slice_log_softmax(values, present, temperature)]


# ----------------------------------------------------------------- functions
def logsumexp(arrays: dict[str, np.ndarray], kwargs: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """Reference of ``smoothmax.logsumexp``: ``(lse,)`` or ``(lse, sign)`` with ``return_sign``.

    Without ``return_sign`` a negative weighted sum gives NaN (the contract).
    """
    temperature = mpf(kwargs.get("temperature", 1.0))
    x, axes, _, x_rows, weight_rows, where_rows = _slices(arrays, kwargs, None)
    results = [_slice_logsumexp(x_row, w_row, p_row, temperature)
               for x_row, w_row, p_row in zip(x_rows, weight_rows, where_rows)]
    shape = _reduced_shape(x.shape, axes, bool(kwargs.get("keepdims", False)))
    lse = np.empty(len(results), dtype=object)
    sign = np.empty(len(results), dtype=object)
    for i, (value, value_sign) in enumerate(results):
        lse[i] = value
        sign[i] = value_sign
    lse, sign = lse.reshape(shape), sign.reshape(shape)
    if kwargs.get("return_sign", False):
        return lse, sign
    if "b" in arrays:
        lse = np.where(np.vectorize(lambda s: s < 0, otypes=[bool])(sign), NAN, lse) if lse.size else lse
    return (lse,)


def _full_size(slice_function: Callable[..., list[mpf]]) -> Callable[..., tuple[np.ndarray]]:
    def reference(arrays: dict[str, np.ndarray], kwargs: dict[str, Any]) -> tuple[np.ndarray]:
        temperature = mpf(kwargs.get("temperature", 1.0))
        x, axes, permuted_shape, x_rows, _, where_rows = _slices(arrays, kwargs, -1)
        rows = np.empty(x_rows.shape, dtype=object)
        for i, (x_row, p_row) in enumerate(zip(x_rows, where_rows)):
            rows[i, :] = slice_function(x_row, p_row, temperature) if x_row.size else []
        return (_from_rows(rows, permuted_shape, axes, x.ndim),)

    reference.__doc__ = f"Reference of ``smoothmax.{slice_function.__name__[7:]}`` (one output)."
    return reference


softmax = _full_size(_slice_softmax)
log_softmax = _full_size(_slice_log_softmax)


def logsumexp_gradient(arrays: dict[str, np.ndarray], kwargs: dict[str, Any]) -> tuple[np.ndarray]:
    """Gradient of ``sum(logsumexp(x, axis))`` in ``x``: the softmax over the same axes."""
    return softmax(arrays, {**kwargs, "axis": kwargs.get("axis", None)})


# ------------------------------------------------------- log-domain family
def _pivot_lse(values: Sequence[Any]) -> mpf:
    """``log sum exp`` of exact values in the pivot form ``m + log1p(rest)``
    (relative accuracy also for results far below 1); NaN poisons, ``+inf``
    dominates, ``-inf`` entries are absent, none left gives ``-inf``."""
    values = [mpf(value) for value in values]
    if any(mpmath.isnan(value) for value in values):
        return NAN
    if any(value == INF for value in values):
        return INF
    finite = sorted((value for value in values if value != NEG_INF), reverse=True)
    if not finite:
        return NEG_INF
    top = finite[0]
    return top + mpmath.log1p(mpmath.fsum(mpmath.exp(value - top) for value in finite[1:]))


def _elementwise(function: Callable[..., mpf], *arrays: np.ndarray) -> np.ndarray:
    broadcast = np.broadcast_arrays(*(np.asarray(array, dtype=np.float64) for array in arrays))
    result = np.empty(broadcast[0].shape, dtype=object)
    for index in np.ndindex(result.shape):
        result[index] = function(*(float(array[index]) for array in broadcast))
    return result


def logaddexp(arrays: dict[str, np.ndarray], kwargs: dict[str, Any]) -> tuple[np.ndarray]:
    """Reference of ``smoothmax.logaddexp(a, b)``: the two-term LSE, elementwise."""
    return (_elementwise(lambda a, b: _pivot_lse([a, b]), arrays["a"], arrays["b"]),)


def _logsubexp_one(a: float, b: float) -> mpf:
    if math.isnan(a) or math.isnan(b) or b > a or (a == b == math.inf):
        return NAN
    if a == b:
        return NEG_INF
    if b == -math.inf or a == math.inf:
        return mpf(a)
    return mpf(a) + mpmath.log(-mpmath.expm1(mpf(b) - mpf(a)))


def logsubexp(arrays: dict[str, np.ndarray], kwargs: dict[str, Any]) -> tuple[np.ndarray]:
    """Reference of ``smoothmax.logsubexp(a, b)`` = log(e^a - e^b): NaN for a < b
    (and for inf - inf), -inf for a == b, a for b = -inf."""
    return (_elementwise(_logsubexp_one, arrays["a"], arrays["b"]),)


def logcumsumexp(arrays: dict[str, np.ndarray], kwargs: dict[str, Any]) -> tuple[np.ndarray]:
    """Reference of ``smoothmax.logcumsumexp(x, axis=-1, reverse=False)``: every
    prefix (suffix with ``reverse``) summed exactly; NaN and +inf carry forward."""
    x = np.asarray(arrays["x"], dtype=np.float64)
    if x.ndim == 0:
        x = x.reshape(1)
    axis = int(kwargs.get("axis", -1)) % x.ndim
    moved = np.moveaxis(x, axis, -1)
    result = np.empty(moved.shape, dtype=object)
    for index in np.ndindex(moved.shape[:-1]):
        row = list(moved[index])
        if kwargs.get("reverse", False):
            row = row[::-1]
        prefixes = [_pivot_lse(row[: i + 1]) for i in range(len(row))]
        if kwargs.get("reverse", False):
            prefixes = prefixes[::-1]
        for position, value in enumerate(prefixes):
            result[index + (position,)] = value
    return (np.moveaxis(result, -1, axis).reshape(np.shape(arrays["x"])),)


def logmeanexp(arrays: dict[str, np.ndarray], kwargs: dict[str, Any]) -> tuple[np.ndarray]:
    """Reference of ``smoothmax.logmeanexp(x, axis=None, keepdims=False, where=None)``:
    ``LSE - log n`` with ``n`` the present entries (``-inf`` entries count); none
    present gives ``-inf``."""
    x, axes, _, x_rows, _, where_rows = _slices(arrays, kwargs, None)
    values = np.empty(len(x_rows), dtype=object)
    for i, (row, present) in enumerate(zip(x_rows, where_rows)):
        kept = [value for value, keep in zip(row, present) if keep]
        lse = _pivot_lse(kept)
        values[i] = lse if not kept or not mpmath.isfinite(lse) else lse - mpmath.log(len(kept))
    return (values.reshape(_reduced_shape(x.shape, axes, bool(kwargs.get("keepdims", False)))),)


def log1psumexp(arrays: dict[str, np.ndarray], kwargs: dict[str, Any]) -> tuple[np.ndarray]:
    """Reference of ``smoothmax.log1psumexp(x, axis=None, keepdims=False)`` =
    LSE(0, x_1, ..., x_n): log1p of the exact sum below 1, pivot form above."""
    x, axes, _, x_rows, _, _ = _slices(arrays, kwargs, None)
    values = np.empty(len(x_rows), dtype=object)
    for i, row in enumerate(x_rows):
        values[i] = _pivot_lse([0.0, *row])
    return (values.reshape(_reduced_shape(x.shape, axes, bool(kwargs.get("keepdims", False)))),)


def log_matmul_exp(arrays: dict[str, np.ndarray], kwargs: dict[str, Any]) -> tuple[np.ndarray]:
    """Reference of ``smoothmax.log_matmul_exp(a, b)``: every entry
    ``log sum_l exp(a_il + b_lj)`` by brute force (sums exact in mpmath)."""
    a = np.asarray(arrays["a"], dtype=np.float64)
    b = np.asarray(arrays["b"], dtype=np.float64)
    vector_a, vector_b = a.ndim == 1, b.ndim == 1
    a = a[None, :] if vector_a else a
    b = b[:, None] if vector_b else b
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, batch + a.shape[-2:])
    b = np.broadcast_to(b, batch + b.shape[-2:])
    result = np.empty(batch + (a.shape[-2], b.shape[-1]), dtype=object)
    for index in np.ndindex(result.shape):
        *outer, i, j = index
        row, column = a[tuple(outer) + (i,)], b[tuple(outer) + (slice(None), j)]
        terms = []
        for p, q in zip(row, column):
            if math.isnan(p) or math.isnan(q):
                terms.append(NAN)
            elif -math.inf in (p, q):
                terms.append(NAN if math.inf in (p, q) else NEG_INF)
            else:
                terms.append(mpf(p) + mpf(q))
        result[index] = _pivot_lse(terms)
    if vector_b:
        result = result[..., 0]
    if vector_a:
        result = result[..., 0, :] if not vector_b else result[..., 0]
    return (result,)


def _entropy_of(row: Sequence[float]) -> mpf:
    if any(math.isnan(p) or p < 0 for p in row):
        return NAN
    return -mpmath.fsum(mpf(p) * mpmath.log(mpf(p)) for p in row if p > 0)


def entropy(arrays: dict[str, np.ndarray], kwargs: dict[str, Any]) -> tuple[np.ndarray]:
    """Reference of ``smoothmax.entropy(p, axis=-1)``: -sum p log p, 0 log 0 = 0,
    a negative or NaN entry gives NaN."""
    p, axes, _, rows, _, _ = _slices({"x": arrays["p"]}, kwargs, -1)
    values = np.empty(len(rows), dtype=object)
    for i, row in enumerate(rows):
        values[i] = _entropy_of(list(row))
    return (values.reshape(_reduced_shape(p.shape, axes, False)),)


def softmax_entropy(arrays: dict[str, np.ndarray], kwargs: dict[str, Any]) -> tuple[np.ndarray]:
    """Reference of ``smoothmax.softmax_entropy(x, axis=-1)`` = H(softmax(x)) from
    the exact log-probabilities; k entries +inf give log k."""
    x, axes, _, rows, _, where_rows = _slices(arrays, kwargs, -1)
    values = np.empty(len(rows), dtype=object)
    for i, (row, present) in enumerate(zip(rows, where_rows)):
        logs = _slice_log_softmax(row, present, mpf(1))
        if any(mpmath.isnan(value) for value in logs):
            values[i] = NAN
            continue
        values[i] = -mpmath.fsum(mpmath.exp(value) * value for value in logs if value != NEG_INF)
        if values[i] == 0:
            values[i] = mpf(0)  # +0
    return (values.reshape(_reduced_shape(x.shape, axes, False)),)


def fenchel_young_loss(arrays: dict[str, np.ndarray], kwargs: dict[str, Any]) -> tuple[np.ndarray]:
    """Reference of ``smoothmax.fenchel_young_loss(x, y, axis=-1)`` =
    ``sum y (log y - log softmax(x)) + (1 - sum y) LSE(x)``: KL(y || softmax x)
    for a distribution y; y_i > 0 where x_i = -inf gives +inf, y < 0 NaN."""
    x, y = np.broadcast_arrays(np.asarray(arrays["x"], dtype=np.float64), np.asarray(arrays["y"], dtype=np.float64))
    _, axes, _, x_rows, _, _ = _slices({"x": x}, kwargs, -1)
    _, _, _, y_rows, _, _ = _slices({"x": y}, kwargs, -1)
    values = np.empty(len(x_rows), dtype=object)
    for i, (x_row, y_row) in enumerate(zip(x_rows, y_rows)):
        if any(math.isnan(v) for v in x_row) or any(math.isnan(t) or t < 0 for t in y_row):
            values[i] = NAN
            continue
        lse = _pivot_lse(list(x_row))
        logs = [mpf(v) - lse if v != -math.inf else NEG_INF for v in x_row]
        total = mpmath.fsum(mpf(t) for t in y_row)
        terms = [mpf(t) * (mpmath.log(mpf(t)) - log) for t, log in zip(y_row, logs) if t > 0]
        values[i] = mpmath.fsum(terms) + (1 - total) * lse if total != 1 else mpmath.fsum(terms)
    return (values.reshape(_reduced_shape(x.shape, axes, False)),)
