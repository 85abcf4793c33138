"""Tolerance bounds for cases where no working-precision algorithm can meet the
default tolerance (generate time only; uses mpmath).

Each bound is ``bound(dtype, inputs, exact_outputs, keywords, default) ->
(tolerance floor in ulps, reason)`` for one dtype: the case's tolerance becomes
``max(default, floor)`` and the reason its ``why``. A bound returns at most
``default`` (and no reason) when the case is well conditioned, so it can be
attached to every case of a function without loosening anything else:

* :func:`logsumexp_bound`: the result is near zero through cancellation of the
  pivot ``max(x)`` and the log term, or the weighted sum ``sum b e^x`` cancels,
  or a temperature that is not a power of two makes ``(x - max) / t`` and ``t``
  itself round in the compute dtype;
* :func:`probability_bound` (softmax, log_softmax, gradient): ``x - max`` (or its
  scaling by ``1/t``) is not exact in the compute dtype, which ``exp`` amplifies
  by up to ``|x - max|`` ulps; the contract's 2 ulp hold only for exact differences.

The compute dtype is float32 for float16/bfloat16/float32 and float64 for
float64 (the half types are computed in float32, as the contract says).
"""

from __future__ import annotations

import math
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf

from . import exact, floats

Bound = tuple[float, str | None]

#: Extra error below this (in ulps) is not worth a tolerance above the default.
NEGLIGIBLE_ULPS = 0.05


def compute_dtype(dtype: str) -> type[np.floating]:
    return np.float64 if dtype == "float64" else np.float32


def _compute_format(dtype: str) -> floats.FloatFormat:
    return floats.FORMATS["float64" if dtype == "float64" else "float32"]


def _is_power_of_two(value: float) -> bool:
    return value != 0 and math.frexp(abs(value))[0] == 0.5


def _slices(inputs: dict[str, np.ndarray], keywords: dict[str, Any], default_axis: Any):
    """Per slice: (x values, weights) of the present entries (where True, b != 0)."""
    _, _, _, x_rows, weight_rows, where_rows = exact._slices(inputs, keywords, keywords.get("axis", default_axis))
    for index, (x_row, w_row, p_row) in enumerate(zip(x_rows, weight_rows, where_rows)):
        keep = p_row & (w_row != 0)
        yield index, x_row, w_row, keep


def _rounded_scaled_differences(x: np.ndarray, temperature: float, dtype: str) -> np.ndarray:
    """``(x - max) / |t|`` as the kernel computes it in the compute dtype (x negated for t < 0)."""
    working = compute_dtype(dtype)
    values = (x if temperature > 0 else -x).astype(working)
    shifted = values - values.max()
    if abs(temperature) != 1.0:
        shifted = shifted / working(abs(temperature))
    return shifted.astype(np.float64)


def logsumexp_bound(dtype: str, inputs: dict[str, np.ndarray], outputs: tuple[np.ndarray, ...],
                    keywords: dict[str, Any], default: float) -> Bound:
    """See the module docstring; per slice, the absolute error budget is

    ``default * ulp_c(|L - pivot|)`` (the log term's own rounding)
    ``+ default * |t| (kappa - 1) ulp_c(1)`` (cancellation in ``sum b e^x``)
    ``+ |t_c - t| * dL/dt`` (the temperature rounded to the compute dtype)
    ``+ |t| sum q_i |delta y_i|`` (the rounded ``(x - max)/t``, only for t not a power of two)

    measured in ulps of the exact ``L`` in ``dtype``.
    """
    temperature = float(keywords.get("temperature", 1.0))
    if temperature == 0:
        return 0.0, None
    fmt, compute = floats.FORMATS[dtype], _compute_format(dtype)
    lse = outputs[0].ravel()
    worst: Bound = (0.0, None)
    rounded_temperature = float(compute_dtype(dtype)(temperature))
    for index, x_row, w_row, keep in _slices(inputs, keywords, None):
        x, weights = x_row[keep], w_row[keep]
        if x.size == 0 or not np.all(np.isfinite(x)) or not np.all(np.isfinite(weights)):
            continue  # special values must match exactly: no tolerance involved
        result = lse[index]
        if not mpmath.isfinite(result):
            continue
        pivot = float(x.max() if temperature > 0 else x.min())
        t = mpf(temperature)
        # Weights of the terms need only a few digits: NumPy; the cancelling
        # total comes exactly from the reference, |total| = exp((L - pivot) / t).
        scaled = (x - pivot) / temperature
        magnitudes = np.abs(weights) * np.exp(scaled)
        magnitude = float(magnitudes.sum())
        q = magnitudes / magnitude
        total = mpmath.exp((result - pivot) / t)
        kappa = mpf(magnitude) / total
        log_term = abs(result - pivot)
        ulp_result = exact.ulp_of_exact(result, fmt)
        cancellation = default * exact.ulp_of_exact(log_term, compute)
        # Only negative weights can cancel (kappa is 1 up to rounding otherwise).
        weighted = (default * abs(t) * max(kappa - 1, 0) * mpf(compute.epsilon)
                    if np.any(weights < 0) else mpf(0))
        slope = math.log(magnitude) - float(np.sum(q * scaled))  # d(t LSE(x/t))/dt
        temperature_rounding = abs(mpf(rounded_temperature) - t) * abs(slope)
        scaling = mpf(0)
        if not _is_power_of_two(temperature):
            rounded = _rounded_scaled_differences(x, temperature, dtype)
            deltas = [abs(mpf(float(r)) - (mpf(float(value)) - mpf(pivot)) / t) for r, value in zip(rounded, x)]
            scaling = abs(t) * mpmath.fsum(mpf(float(qi)) * d for qi, d in zip(q, deltas))
        # Terms exp((x_i - max)/t) below the smallest normal keep only an absolute
        # accuracy of half a subnormal quantum each, which a subnormal (or tiny)
        # result feels directly: LSE ~ t * sum of those terms.
        subnormal_terms = int(np.count_nonzero((magnitudes > 0) & (magnitudes < compute.smallest_normal)))
        subnormal = abs(t) * subnormal_terms * mpf(compute.smallest_subnormal) / 2
        parts = {
            "subnormal terms": subnormal / ulp_result,
            "cancellation": cancellation / ulp_result,
            "weights": weighted / ulp_result,
            "temperature": (temperature_rounding + scaling) / ulp_result,
        }
        floor = float(sum(parts.values()))
        if floor <= default or floor <= worst[0]:
            continue
        largest = max(parts, key=lambda name: parts[name])
        if largest == "cancellation":
            reason = (f"LSE = {float(result):.3g} cancels the pivot {float(pivot):.3g} against the log term "
                      f"{float(log_term):.3g}, whose own rounding is {float(parts[largest]) / default:.3g} ulp of the result")
        elif largest == "subnormal terms":
            reason = (f"{subnormal_terms} terms exp(x - max) are subnormal in {compute.name}, each rounded "
                      f"to half a subnormal quantum, and the result {float(result):.3g} is their sum")
        elif largest == "weights":
            reason = (f"sum b*exp(x) cancels (kappa = {float(kappa):.3g}): each exp's rounding is amplified "
                      f"kappa times")
        else:
            reason = (f"t = {temperature} is not a power of two: t and (x - max)/t round in "
                      f"{compute.name} (t -> {rounded_temperature!r})")
        worst = (floor, reason)
    return worst


def probability_bound(dtype: str, inputs: dict[str, np.ndarray], outputs: tuple[np.ndarray, ...],
                      keywords: dict[str, Any], default: float, log_output: bool = False) -> Bound:
    """Extra ulps of softmax (or log_softmax, ``log_output=True``) entries from the
    rounding of ``y_i = (x_i - max)/t`` in the compute dtype: with ``delta_i`` that
    error and ``T = sum q_j delta_j``, an entry may be off by ``(delta_i + T) q_i``
    (softmax) or ``delta_i + T`` (log_softmax), on top of the default."""
    temperature = float(keywords.get("temperature", 1.0))
    if temperature == 0:
        return 0.0, None
    fmt = floats.FORMATS[dtype]
    compute = _compute_format(dtype)
    values = outputs[0]
    _, axes, permuted_shape, _, _, _ = exact._slices(inputs, keywords, keywords.get("axis", -1))
    value_rows, _ = exact._to_rows(values, axes)
    worst_extra, worst_delta = mpf(0), mpf(0)
    for index, x_row, _, keep in _slices(inputs, keywords, -1):
        x = x_row[keep]
        if x.size == 0 or not np.all(np.isfinite(x)):
            continue
        t = mpf(temperature)
        pivot = mpf(float(x.max() if temperature > 0 else x.min()))
        exact_y = [(mpf(float(value)) - pivot) / t for value in x]
        rounded_y = _rounded_scaled_differences(x, temperature, dtype)
        deltas = [abs(mpf(float(r)) - e) for r, e in zip(rounded_y, exact_y)]
        if not _is_power_of_two(temperature):
            # A backend may divide as (x - max) * (1/t) (XLA rewrites division by a
            # constant so): the reciprocal's rounding, eps/2 relative, scales with |y|.
            half_epsilon = mpf(compute.epsilon) / 2
            deltas = [max(d, abs(e) * half_epsilon + exact.ulp_of_exact(e, compute) / 2)
                      for d, e in zip(deltas, exact_y)]
        if not any(deltas):
            continue
        results = value_rows[index][keep]
        q = [mpmath.exp(v) for v in results] if log_output else list(results)
        total_shift = mpmath.fsum(qi * d for qi, d in zip(q, deltas))
        for qi, vi, d in zip(q, results, deltas):
            error = (d + total_shift) * (1 if log_output else qi)
            extra = error / exact.ulp_of_exact(vi, fmt)
            if extra > worst_extra:
                worst_extra, worst_delta = extra, max(deltas)
    if worst_extra < NEGLIGIBLE_ULPS:
        return 0.0, None
    floor = default + float(worst_extra)
    operation = ("x - max" if temperature == 1.0 else
                 f"(x - max)/t (t = {temperature}, possibly as (x - max) * (1/t))")
    reason = (f"{operation} is not exact in working precision: exp turns its rounding into up to "
              f"{float(worst_extra):.2g} more ulp ({dtype})")
    return floor, reason


def log_probability_bound(dtype: str, inputs: dict[str, np.ndarray], outputs: tuple[np.ndarray, ...],
                          keywords: dict[str, Any], default: float) -> Bound:
    return probability_bound(dtype, inputs, outputs, keywords, default, log_output=True)
