"""Slices where one term dominates, recomputed in extended precision.

The kernel's ``lse = m + t log1p(rest)`` keeps the relative accuracy of ``rest``
when one term dominates, but ``rest`` itself carries the rounding of every
``exp`` and of the sum. Where the terms are equal (``[0] + [-40] * 99``) those
roundings all lean the same way: NumPy's blocked sum of the 99 terms errs by
4.3 ulp of the result in float32 and up to 2.8 ulp in float64 (``[0] + [-15] *
999``), against the 1 (float32) and 1.5 (float64) ulp of ``semantics.md``.

The error reaches the result in full only where ``t log1p(rest)`` is a large
part of it: ``0 < L < t log 2`` (``rest < 1``) with ``L = lse - m`` and
``-4 L <= m <= 2 L``. Those slices (rare in practice: their ``|lse|`` is below
``3 t log 2``, which the common case checks on the small reduced array alone)
are copied out and recomputed:

* float32 in float64: ``x - m`` exact, every ``exp``, the sum and ``log1p``
  to 1e-16, one rounding to float32 at the end (within 0.5 ulp + 1e-7);
* float64 in double-double arithmetic: ``x - m`` (and the division by
  ``t``) with its rounding error carried to first order, ``exp(d + e) ~ exp(d)
  (1 + e)``, the sum compensated (TwoSum at every addition) and
  ``log1p(hi + lo) ~ log1p(hi) + lo / (1 + hi)``: what is left is one rounding
  of ``exp`` and of ``log1p``.

Where: eager arrays (NumPy, array-api-strict, PyTorch on CPU) copy those
slices out after the check reads a value back (:func:`refine_lse`); JAX
recomputes every slice in a ``lax.cond`` taken only when that check passes
(:func:`refine_lse_everywhere`, see ``_jax``); Dask refines each NumPy block's
streaming state (:func:`refine_rest`). PyTorch under ``torch.compile`` or
``torch.func`` transforms (no data-dependent branch) and on other devices (a
device sync per call would cost more than it saves) keeps the kernel's result.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from array_api_compat import device

from . import _kernel

#: ``|lse| < 3 t log 2`` holds on every slice that needs refining (see above).
_CANDIDATE_BOUND = 3.0 * math.log(2.0)

#: Veltkamp's splitters ``2**ceil(p / 2) + 1`` (``p`` bits of precision): ``a = hi + lo``, half-width parts.
_SPLITTERS = {"float32": float(2**12 + 1), "float64": float(2**27 + 1)}


def refine_lse(xp: Any, x: Any, lse: Any, axis: int, temperature: float) -> Any:
    """``lse`` (the kernel's, keepdims, of the prepared unweighted ``x``) with the
    slices where one term dominates recomputed in extended precision.

    Returns ``lse`` itself when no slice needs it; otherwise a new array.
    """
    t = temperature
    candidates = _candidates_if_any(xp, lse, t)
    if candidates is False:
        return lse
    n = x.shape[axis]
    if n < 2 or x.dtype not in (xp.float32, xp.float64):
        return lse
    slices = xp.reshape(xp.moveaxis(x, axis, -1), (-1, n))
    flat = xp.reshape(lse, (-1,))
    if candidates is not None:
        candidates = xp.reshape(candidates, (-1,))
        slices = slices[candidates]
        values = flat[candidates]
    else:
        values = flat
    dominated = _dominated(xp, values, xp.max(slices, axis=1), t)
    if not bool(xp.any(dominated)):
        return lse
    refined = _extended_lse(xp, slices[dominated], t)
    values = xp.asarray(values, copy=True)
    values[dominated] = refined
    if candidates is None:
        flat = values
    else:
        flat = xp.asarray(flat, copy=True)
        flat[candidates] = values
    return xp.reshape(flat, lse.shape)


def refine_rest(xp: Any, x: Any, maximum: Any, rest: Any, axis: int, temperature: float = 1.0) -> Any:
    """A streaming state's ``rest`` (the sum of ``exp((x - m) / t)`` without the
    pivot; ``m`` the maximum of ``x``, keepdims) recomputed in extended precision
    on the slices where ``m + t log1p(rest)`` needs it (as :func:`refine_lse`),
    rounded once; eager arrays. Returns ``rest`` itself when no slice needs it."""
    t = temperature
    n = x.shape[axis]
    if n < 2 or x.dtype not in (xp.float32, xp.float64):
        return rest
    log_term = xp.log1p(rest)
    lse = maximum + (log_term if t == 1.0 else _kernel._constant(xp, t, log_term) * log_term)
    candidates = _candidates_if_any(xp, lse, t)
    if candidates is False:
        return rest
    dominated = _dominated(xp, xp.reshape(lse, (-1,)), xp.reshape(maximum, (-1,)), t)
    if candidates is not None:
        dominated = dominated & xp.reshape(candidates, (-1,))
    if not bool(xp.any(dominated)):
        return rest
    slices = xp.reshape(xp.moveaxis(x, axis, -1), (-1, n))
    _, high, low = _extended_rest(xp, slices[dominated], t)
    refined = high if low is None else high + low
    flat = xp.asarray(xp.reshape(rest, (-1,)), copy=True)
    flat[dominated] = xp.astype(refined[:, 0], rest.dtype)
    return xp.reshape(flat, rest.shape)


def refine_lse_everywhere(
    xp: Any, x: Any, lse: Any, axis: int, temperature: float, compensated_sum: Any = None
) -> Any:
    """:func:`refine_lse` without copying slices out (for traced arrays): every
    slice is recomputed, and kept where it needs refining. The caller runs it
    only where some ``|lse|`` is below the candidate bound (:func:`candidates`).
    ``compensated_sum(xp, high, low)``: as :func:`_compensated_pairwise_sum` (JAX
    passes one ``lax.reduce``, which compiles faster than the folds)."""
    n = x.shape[axis]
    slices = xp.reshape(xp.moveaxis(x, axis, -1), (-1, n))
    flat = xp.reshape(lse, (-1,))
    dominated = _dominated(xp, flat, xp.max(slices, axis=1), temperature)
    refined = _extended_lse(xp, slices, temperature, compensated_sum)
    return xp.reshape(xp.where(dominated, refined, flat), lse.shape)


def _candidates_if_any(xp: Any, lse: Any, t: float) -> Any:
    """False where no slice is a candidate (:func:`candidates`: the common case,
    checked in a fraction of a microsecond on one slice); else the candidates,
    or None for the one slice."""
    bound = _CANDIDATE_BOUND * t  # <= 0 for t <= 0: no candidates
    if math.prod(lse.shape) == 1:
        item = getattr(lse, "item", None)  # NumPy, PyTorch: one call
        value = item() if item is not None else float(lse[(0,) * lse.ndim])
        return None if abs(value) < bound else False
    if lse.__class__ is np.ndarray:  # NumPy's own any(): ~1 us less than the namespace's
        found = np.less(np.abs(lse), bound)
        return found if found.any() else False
    found = candidates(xp, lse, t)
    return found if bool(xp.any(found)) else False


def may_need_refining(xp: Any, lse: Any, temperature: float) -> bool:
    """Whether any slice of ``lse`` is a candidate (:func:`candidates`)."""
    return _candidates_if_any(xp, lse, temperature) is not False


def candidates(xp: Any, lse: Any, temperature: float) -> Any:
    """Where a slice may need refining: ``|lse| < 3 t log 2`` (False on NaN)."""
    return xp.abs(lse) < _CANDIDATE_BOUND * temperature


def applies(x: Any, temperature: float) -> bool:
    """Whether :func:`refine_lse` can change anything (static: dtype and ``t``)."""
    return temperature > 0.0 and str(x.dtype).endswith(("float32", "float64"))


def _dominated(xp: Any, lse: Any, maximum: Any, t: float) -> Any:
    """Slices whose ``lse`` is mostly ``t log1p(rest)`` with ``rest < 1``: ``L = lse - m``
    in ``(0, t log 2)`` and ``-4 L <= m <= 2 L`` (NaN: False)."""
    finite = xp.isfinite(maximum)  # an infinite maximum: log_term 0, and no inf - inf
    zero = _kernel._constant(xp, 0.0, lse)
    log_term = xp.where(finite, lse, zero) - xp.where(finite, maximum, zero)
    return (
        (log_term > 0)
        & (log_term < _kernel._constant(xp, t * math.log(2.0), log_term))
        & (maximum >= -4 * log_term)
        & (maximum <= 2 * log_term)
    )


def _extended_lse(xp: Any, slices: Any, t: float, compensated_sum: Any = None) -> Any:
    """``t * log(sum(exp(slices / t), axis=1))`` of float rows with finite maxima,
    to about one rounding: float32 through float64, float64 in double-double."""
    maximum, rest_high, rest_low = _extended_rest(xp, slices, t, compensated_sum)
    log_sum = xp.log1p(rest_high)
    if rest_low is not None:
        log_sum = log_sum + rest_low / (_kernel._constant(xp, 1.0, rest_high) + rest_high)
    value = maximum + (log_sum if t == 1.0 else _kernel._constant(xp, t, log_sum) * log_sum)
    return xp.astype(value[:, 0], slices.dtype)


def _extended_rest(xp: Any, slices: Any, t: float, compensated_sum: Any = None) -> tuple[Any, Any, Any]:
    """``(m, high, low)``: the maximum of each row and the sum of the other terms
    ``exp((x - m) / t)`` (the pivot's left out) as ``high + low`` (``low`` None), keepdims:
    in float64 for float32 rows, in double-double otherwise."""
    if slices.dtype == xp.float32 and _has_float64(xp, slices):
        wide = xp.astype(slices, xp.float64)
        maximum = xp.max(wide, axis=1, keepdims=True)
        shifted = wide - maximum  # exact: two float32 apart by a float64
        if t != 1.0:
            shifted = shifted / _kernel._constant(xp, t, wide)
        terms = _without_pivot(xp, wide, xp.exp(shifted))
        # any order: float64's rounding is 2**-29 of a float32 ulp per term
        return maximum, xp.sum(terms, axis=1, keepdims=True), None
    return _double_double_rest(xp, slices, t, compensated_sum or _compensated_pairwise_sum)


def _has_float64(xp: Any, like: Any) -> bool:
    """Whether float64 arrays can live beside ``like`` (not on Apple MPS, nor in
    JAX without ``jax_enable_x64``, which quietly makes float32)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            probe = xp.asarray(0.0, dtype=xp.float64, device=device(like))
        except Exception:
            return False
    return probe.dtype == xp.float64


def _without_pivot(xp: Any, slices: Any, terms: Any) -> Any:
    """``terms`` with the pivot's (first arg max of each row) set to 0."""
    index = xp.argmax(slices, axis=1, keepdims=True)
    pivot = _kernel._pivot_mask(xp, index, 1, slices.shape[1], 2)
    return xp.where(pivot, _kernel._constant(xp, 0.0, terms), terms)


def two_sum_error(xp: Any, a: Any, b: Any, total: Any) -> Any:
    """The rounding error of ``total = a + b`` of finite ``a``, ``b`` (Knuth's TwoSum)."""
    b_part = total - a
    return (a - (total - b_part)) + (b - b_part)


def _dtype_name(array: Any) -> str:
    """``"float32"`` or ``"float64"`` for an array of any namespace."""
    return str(array.dtype).rsplit(".", 1)[-1]


def _split(value: Any) -> tuple[Any, Any]:
    """Veltkamp's split: ``value = high + low``, each with half the bits."""
    scaled = _SPLITTERS[_dtype_name(value)] * value
    high = scaled - (scaled - value)
    return high, value - high


def _two_product_error(xp: Any, a: Any, b: float, product: Any) -> Any:
    """The rounding error of ``product = a * b`` of finite factors (Dekker's TwoProduct)."""
    a_high, a_low = _split(a)
    b_high, b_low = _split(_kernel._constant(xp, b, a))
    return ((a_high * b_high - product) + a_high * b_low + a_low * b_high) + a_low * b_low


def _double_double_rest(xp: Any, slices: Any, t: float, compensated_sum: Any) -> tuple[Any, Any, Any]:
    """:func:`_extended_rest` in the rows' own dtype, carrying each rounding error."""
    maximum = xp.max(slices, axis=1, keepdims=True)
    zero = _kernel._constant(xp, 0.0, slices)
    # -inf entries (exp gives 0) carry no error; finite stand-ins keep inf - inf out
    finite = xp.isfinite(slices)
    shifted = slices - maximum
    finite_shifted = xp.where(finite, shifted, zero)
    error = two_sum_error(xp, xp.where(finite, slices, maximum), -maximum, finite_shifted)
    if t != 1.0:
        # t = t_high + t_low with t_high in the dtype (t_low = 0 in float64)
        t_high = float(np.asarray(t, dtype=_dtype_name(slices)))
        t_low = t - t_high
        quotient = finite_shifted / _kernel._constant(xp, t_high, slices)
        # shifted + error = t * quotient + remainder: the remainder to first order
        product = t_high * quotient
        remainder = (finite_shifted - product) - _two_product_error(xp, quotient, t_high, product)
        if t_low != 0.0:
            remainder = remainder - t_low * quotient
        error = (remainder + error) / _kernel._constant(xp, t, slices)
        # a split that overflows (|d / t| beyond ~1e299, or ~1e34 in float32) has exp(d / t) = 0
        error = xp.where(xp.isfinite(error), error, zero)
        shifted = xp.where(finite, quotient, shifted)
    high = xp.exp(shifted)
    terms_high = _without_pivot(xp, slices, high)
    terms_low = _without_pivot(xp, slices, high * error)
    rest_high, rest_low = compensated_sum(xp, terms_high, terms_low)
    return maximum, rest_high, rest_low


def _compensated_pairwise_sum(xp: Any, high: Any, low: Any) -> tuple[Any, Any]:
    """``sum(high + low, axis=1)`` as ``(high, low)`` parts: the folds of
    :func:`smoothmax._kernel.pairwise_sum`, each addition's rounding error
    (TwoSum) added into the low parts."""

    def add(a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
        total = a[0] + b[0]
        return total, a[1] + b[1] + two_sum_error(xp, a[0], b[0], total)

    def rows(parts: tuple[Any, Any], start: int, stop: int) -> tuple[Any, Any]:
        return parts[0][:, start:stop], parts[1][:, start:stop]

    return _kernel.fold_in_halves((high, low), high.shape[1], rows, add)
