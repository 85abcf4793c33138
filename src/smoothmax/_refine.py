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

``log_q`` (the log-softmax) takes the refined ``log1p(rest)`` on the same
slices: ``(x - m) / t - log1p(rest)``, whose pivot entry ``-log1p(rest)`` is as
small as ``lse`` there and carried the same error (4.3 ulp in float32 on
``[0] + [-40] * 99``; the contract's 2 ulp). Being shift-invariant, it carries
that error wherever ``rest < 1``, whatever ``m``; refining all those slices
(every confident prediction of a classifier) measured 8-20x slower on such
rows, so only ``lse``'s slices are refined and the others keep the kernel's sum.

Where: eager arrays (NumPy, array-api-strict, PyTorch on CPU) copy those
slices out after the check reads a value back (:func:`refine_outputs`); JAX
recomputes every slice in a ``lax.cond`` taken only when that check passes
(:func:`refine_everywhere`, see ``_jax``); Dask refines each NumPy block's
streaming state (:func:`refine_rest`) and runs the eager refinement on blocks
that hold whole slices. PyTorch under ``torch.compile`` or ``torch.func``
transforms (no data-dependent branch) and on other devices (a device sync per
call would cost more than it saves) keeps the kernel's result; on CUDA with
Triton, :mod:`smoothmax._cuda` computes every float64 slice in two-part
arithmetic (and float32 in float64) inside its kernel, which needs none of this.
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
    return refine_outputs(xp, x, {"lse": lse}, axis, temperature)["lse"]


def refine_outputs(xp: Any, x: Any, values: dict[str, Any], axis: int, temperature: float) -> dict[str, Any]:
    """The kernel's outputs by name (``lse`` among them, keepdims; ``x`` prepared
    and unweighted, eager) with ``lse`` and, where asked, ``log_q`` recomputed on
    the slices where one term dominates (:func:`_dominated`). ``log_q = (x - m) / t
    - log1p(rest)`` there takes ``log1p(rest)`` rounded once from extended
    precision (its pivot entry is ``-log1p(rest)`` itself). Returns ``values``
    itself when no slice needs it."""
    t = temperature
    found = _dominated_slices(xp, x, values["lse"], axis, t)
    if found is None:
        return values
    dominated, slices = found
    slices = slices[dominated]
    maximum, log_sum = _extended_log_sum(xp, slices, t)
    refined = dict(values)
    value = _lse_from(xp, maximum, log_sum, t)
    refined["lse"] = _scatter(xp, values["lse"], dominated, xp.astype(value, x.dtype))
    if "log_q" in values:
        # the kernel's x - m and / t, then one rounding of log1p(rest)
        log_q = _shifted(xp, slices, xp.astype(maximum, x.dtype), t) - xp.astype(log_sum, x.dtype)
        refined["log_q"] = _scatter(xp, values["log_q"], dominated, log_q, axis)
    return refined


def refine_rest(xp: Any, x: Any, maximum: Any, rest: Any, axis: int, temperature: float = 1.0) -> Any:
    """A streaming state's ``rest`` (the sum of ``exp((x - m) / t)`` without the
    pivot; ``m`` the maximum of ``x``, keepdims) recomputed in extended precision
    on the slices where ``m + t log1p(rest)`` needs it (as :func:`refine_lse`),
    rounded once; eager arrays. Returns ``rest`` itself when no slice needs it."""
    t = temperature
    if not _refinable(xp, x, axis):
        return rest
    log_term = xp.log1p(rest)
    lse = _lse_from(xp, maximum, log_term, t)
    found = _dominated_slices(xp, x, lse, axis, t, maximum)
    if found is None:
        return rest
    dominated, slices = found
    _, high, low = _extended_rest(xp, slices[dominated], t)
    refined = high if low is None else high + low
    return _scatter(xp, rest, dominated, xp.astype(refined, rest.dtype))


def refine_everywhere(
    xp: Any, x: Any, lse: Any, axis: int, temperature: float, compensated_sum: Any = None
) -> tuple[Any, Any, Any, Any]:
    """:func:`refine_outputs` without copying slices out (for traced arrays): every
    slice is recomputed, and kept where it needs refining. The caller runs it
    only where some ``|lse|`` is below the candidate bound (:func:`candidates`).
    ``compensated_sum(xp, high, low, axis)``: as :func:`_compensated_pairwise_sum` (JAX
    passes one ``lax.reduce``, which compiles faster than the folds).

    Returns reduced arrays only (one value a slice, in the slices' order, shape
    ``(slices, 1)`` but ``lse``): ``(lse, dominated, maximum, log_sum)``, the last
    two in ``x``'s dtype for :func:`refine_log_q`, which patches ``log_q``
    elementwise outside the caller's branch."""
    t = temperature
    kept = xp.reshape(lse, (-1, 1))
    # along axis in place: the slices as rows (_slices) would transpose a middle
    # axis into a full-size temporary, which in a lax.cond branch costs every call
    # (smoothmax._fastpaths.jax_kernel); the reduced results are in the slices' order
    maximum, log_sum = _extended_log_sum(xp, x, t, compensated_sum, axis)
    maximum, log_sum = (xp.reshape(value, (-1, 1)) for value in (maximum, log_sum))
    narrow_maximum = xp.astype(maximum, x.dtype)
    dominated = _dominated(xp, kept, narrow_maximum, t)
    value = _lse_from(xp, maximum, log_sum, t)
    lse = xp.reshape(xp.where(dominated, xp.astype(value, x.dtype), kept), lse.shape)
    return lse, dominated, narrow_maximum, xp.astype(log_sum, x.dtype)


def refine_log_q(
    xp: Any, x: Any, log_q: Any, dominated: Any, maximum: Any, log_sum: Any, axis: int, temperature: float
) -> Any:
    """``log_q`` with the slices that :func:`refine_everywhere` found dominated
    recomputed from its ``maximum`` and refined ``log_sum``, elementwise."""
    shape = x.shape[:axis] + x.shape[axis + 1 :] + (1,)
    dominated, maximum, log_sum = (
        xp.moveaxis(xp.reshape(value, shape), -1, axis) for value in (dominated, maximum, log_sum)
    )
    zero = _kernel._constant(xp, 0.0, x)
    # where(..., x, 0): slices with no finite maximum (not dominated) keep no inf - inf
    refined = _shifted(xp, xp.where(dominated, x, zero), maximum, temperature) - log_sum
    return xp.where(dominated, refined, log_q)


def _lse_from(xp: Any, maximum: Any, log_sum: Any, t: float) -> Any:
    """``m + t log_sum``, as the kernel forms ``lse``."""
    return maximum + (log_sum if t == 1.0 else _kernel._constant(xp, t, log_sum) * log_sum)


def _refinable(xp: Any, x: Any, axis: int) -> bool:
    return x.shape[axis] >= 2 and x.dtype in (xp.float32, xp.float64)


def _dominated_slices(xp: Any, x: Any, lse: Any, axis: int, t: float, maximum: Any = None) -> Any:
    """``(dominated, slices)``: which slices need refining (a boolean vector) and the
    slices of ``x`` as rows (:func:`_slices`); None where no slice does (the common
    case, decided on ``lse`` alone)."""
    candidates = _candidates_if_any(xp, lse, t)
    if candidates is False or not _refinable(xp, x, axis):
        return None
    flat = xp.reshape(lse, (-1,))
    slices = _slices(xp, x, axis)
    if candidates is None:  # one slice
        slice_maximum = xp.max(slices, axis=1) if maximum is None else xp.reshape(maximum, (-1,))
        dominated = _dominated(xp, flat, slice_maximum, t)
    else:
        candidates = xp.reshape(candidates, (-1,))
        if maximum is None:  # the maxima of the few candidate slices only
            slice_maximum = xp.max(slices[candidates], axis=1)
        else:
            slice_maximum = xp.reshape(maximum, (-1,))[candidates]
        found = _dominated(xp, flat[candidates], slice_maximum, t)
        if not bool(xp.any(found)):
            return None
        dominated = xp.zeros(flat.shape, dtype=xp.bool, device=device(flat))
        dominated[candidates] = found
    return (dominated, slices) if bool(xp.any(dominated)) else None


def _slices(xp: Any, array: Any, axis: int) -> Any:
    """``array``'s slices along ``axis`` as the rows of a 2-d array."""
    return xp.reshape(xp.moveaxis(array, axis, -1), (-1, array.shape[axis]))


def _unslice(xp: Any, rows: Any, shape: tuple[int, ...], axis: int) -> Any:
    """The inverse of :func:`_slices`: rows back to an array of ``shape``."""
    moved = shape[:axis] + shape[axis + 1 :] + (shape[axis],)
    return xp.moveaxis(xp.reshape(rows, moved), -1, axis)


def _scatter(xp: Any, array: Any, where: Any, rows: Any, axis: int | None = None) -> Any:
    """A copy of ``array`` with its slices along ``axis`` picked by ``where``
    replaced by ``rows``; ``axis`` None: ``array`` holds one value a slice (a
    reduction, any shape: its C order is the slices' order)."""
    if axis is None:
        updated = xp.asarray(xp.reshape(array, (-1, 1)), copy=True)
        updated[where] = rows
        return xp.reshape(updated, array.shape)
    updated = xp.asarray(_slices(xp, array, axis), copy=True)
    updated[where] = rows
    return _unslice(xp, updated, array.shape, axis)


def _shifted(xp: Any, slices: Any, maximum: Any, t: float) -> Any:
    """``(x - m) / t`` as the kernel computes it."""
    shifted = slices - maximum
    return shifted if t == 1.0 else shifted / _kernel._constant(xp, t, shifted)


def _candidates_if_any(xp: Any, lse: Any, t: float) -> Any:
    """False where no slice is a candidate (:func:`candidates`: the common case,
    checked in a fraction of a microsecond on one slice); else the candidates,
    or None for the one slice."""
    bound = _CANDIDATE_BOUND * t  # <= 0 for t <= 0: no candidates
    if isinstance(lse, np.generic):  # a NumPy scalar (one row's, smoothmax._fastpaths)
        return None if abs(lse) < bound else False
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


def applies(xp: Any, x: Any, temperature: float) -> bool:
    """Whether :func:`refine_outputs` can change anything (static: dtype and ``t``)."""
    return temperature > 0.0 and x.dtype in (xp.float32, xp.float64)


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


def _extended_log_sum(
    xp: Any, slices: Any, t: float, compensated_sum: Any = None, axis: int = 1
) -> tuple[Any, Any]:
    """``(m, log(sum(exp((x - m) / t))))`` of float rows (slices along ``axis``) with
    finite maxima (keepdims), to about one rounding: float32 rows in float64,
    float64 in double-double (the sum's low part to first order:
    ``log1p(hi + lo) ~ log1p(hi) + lo / (1 + hi)``)."""
    maximum, rest_high, rest_low = _extended_rest(xp, slices, t, compensated_sum, axis)
    log_sum = xp.log1p(rest_high)
    if rest_low is not None:
        log_sum = log_sum + rest_low / (_kernel._constant(xp, 1.0, rest_high) + rest_high)
    return maximum, log_sum


def _extended_rest(
    xp: Any, slices: Any, t: float, compensated_sum: Any = None, axis: int = 1
) -> tuple[Any, Any, Any]:
    """``(m, high, low)``: the maximum of each row (slice along ``axis``) and the sum
    of the other terms ``exp((x - m) / t)`` (the pivot's left out) as ``high +
    low`` (``low`` None), keepdims: in float64 for float32 rows, in double-double
    otherwise. ``compensated_sum`` is passed by traced callers (JAX, every slice
    at once, any ``axis``) and None from eager ones (rows: ``axis`` 1)."""
    if slices.dtype == xp.float32 and _has_float64(xp, slices):
        wide = xp.astype(slices, xp.float64)
        maximum = xp.astype(xp.max(slices, axis=axis, keepdims=True), xp.float64)
        shifted = wide - maximum  # exact: two float32 apart by a float64
        if t != 1.0:
            shifted = shifted / _kernel._constant(xp, t, wide)
        scaled = xp.exp(shifted)
        if compensated_sum is None:
            # eager callers (the candidate slices copied out): the argmax and one sum;
            # any order: float64's rounding is 2**-29 of a float32 ulp per term
            return maximum, xp.sum(_without_pivot(xp, wide, scaled, axis), axis=axis, keepdims=True), None
        # Traced (JAX, every slice): the pivot's exp(0) = 1 left out by arithmetic:
        # frac(e) = e - floor(e) is every term below 1 and 0 on the ones, floor(e)
        # counts the ones (the ties of the maximum, and near-ties whose exp rounds
        # to 1), one of which is the pivot. Both summed in one compensated pass,
        # the counts in the low part (each addition's error joins them there): XLA
        # fuses it into one reduction, where the argmax's select, or two sums of one
        # exp, made a full-size float64 temporary (32 MiB at (2048, 1024)), which
        # costs every call its page faults (smoothmax._fastpaths.jax_kernel). On
        # NumPy the compensated folds took 2x the argmax and sum: eager keeps those.
        ones = xp.floor(scaled)
        below, count = compensated_sum(xp, scaled - ones, ones, axis)
        return maximum, below + (count - _kernel._constant(xp, 1.0, count)), None
    traced = compensated_sum is not None
    return _double_double_rest(xp, slices, t, compensated_sum or _compensated_pairwise_sum, axis, traced)


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


def _without_pivot(xp: Any, slices: Any, terms: Any, axis: int = 1) -> Any:
    """``terms`` with the pivot's (first arg max of each slice along ``axis``) set to 0."""
    index = xp.argmax(slices, axis=axis, keepdims=True)
    pivot = _kernel._pivot_mask(xp, index, axis, slices.shape[axis], slices.ndim)
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


def _double_double_rest(
    xp: Any, slices: Any, t: float, compensated_sum: Any, axis: int, traced: bool = False
) -> tuple[Any, Any, Any]:
    """:func:`_extended_rest` in the rows' own dtype, carrying each rounding error;
    ``traced`` (JAX, every slice at once): the pivot left out by arithmetic, and
    ``compensated_sum`` takes the count of ones as a third operand."""
    maximum = xp.max(slices, axis=axis, keepdims=True)
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
    if traced:
        # The pivot left out by arithmetic, as in the float32 branch: floor(high) is 1
        # on the ties (their error is 0) and on near-ties whose exp rounds to 1, one
        # of which is the pivot, and 0 elsewhere. No argmax: on XLA:CPU its kernel
        # costs ~1.7 us a call even in a lax.cond branch not taken (16 elements).
        # The count is summed in the same reduction (a second one would make XLA
        # keep exp's terms in a full-size temporary).
        ones = xp.floor(high)
        rest_high, rest_low, count = compensated_sum(xp, high - ones, high * error, axis, ones)
        return maximum, rest_high + (count - _kernel._constant(xp, 1.0, count)), rest_low
    terms_high = _without_pivot(xp, slices, high, axis)
    terms_low = _without_pivot(xp, slices, high * error, axis)
    rest_high, rest_low = compensated_sum(xp, terms_high, terms_low, axis)
    return maximum, rest_high, rest_low


def _compensated_pairwise_sum(xp: Any, high: Any, low: Any, axis: int) -> tuple[Any, Any]:
    """``sum(high + low, axis=axis)`` (keepdims) as ``(high, low)`` parts: the folds of
    :func:`smoothmax._kernel.pairwise_sum`, each addition's rounding error
    (TwoSum) added into the low parts."""

    def add(a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
        total = a[0] + b[0]
        return total, a[1] + b[1] + two_sum_error(xp, a[0], b[0], total)

    def rows(parts: tuple[Any, Any], start: int, stop: int) -> tuple[Any, Any]:
        where = (slice(None),) * axis + (slice(start, stop),)
        return parts[0][where], parts[1][where]

    return _kernel.fold_in_halves((high, low), high.shape[axis], rows, add)
