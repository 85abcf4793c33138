"""Backend-agnostic primitives of the log-domain family and their derivative rules.

Like ``_kernel``, everything here uses the Array API standard only; the autodiff
adapters (``_torch``, ``_jax``) register these forwards with their framework and
call the rules below as their derivatives. Inputs are already validated, cast to
the compute dtype (float32 or float64) and laid out (same shapes, the reduced or
scanned axis last where that matters).

Numerical care shared by every function here: no branch of an ``xp.where``
ever computes ``inf - inf``, ``log(0)``, ``0 * inf`` or an overflowing ``exp``
(NumPy would warn, and autodiff would turn the unused branch into a NaN
gradient), so each branch gets inputs that are safe for it.

Primitives
----------
``logsubexp_forward``        log(e^a - e^b)
``logcumsumexp_forward``     inclusive log-cum-sum-exp along the last axis
``logmeanexp_forward``       log-mean-exp of one axis with a given count
``log_matmul_exp_forward``   log(exp(a) @ exp(b))
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ._kernel import _constant, axis_sum, shift_at_limits
from ._streaming import chunk_parts, finalize_parts, merge_parts

LOG_2 = math.log(2.0)


# ---------------------------------------------------------------------------
# logsubexp
# ---------------------------------------------------------------------------


def _difference(xp: Any, a: Any, b: Any) -> tuple[Any, Any]:
    """``(d, equal)`` with ``d = b - a`` (``-inf`` where ``b = -inf``), never
    computing ``inf - inf``."""
    zero = _constant(xp, 0.0, a)
    equal = a == b
    absent = b == -math.inf
    skip = equal | absent
    d = xp.where(skip, zero, b) - xp.where(skip, zero, a)
    return xp.where(absent, _constant(xp, -math.inf, a), d), equal


def logsubexp_forward(xp: Any, a: Any, b: Any) -> Any:
    """``log(e^a - e^b) = a + log1mexp(b - a)`` with Maechler's switch:
    ``log(-expm1(d))`` for ``d > -log 2``, ``log1p(-exp(d))`` below; both exact
    in their range. ``a < b`` gives NaN, ``a == b`` gives ``-inf`` (NaN for
    ``+inf == +inf``), ``b = -inf`` gives ``a``."""
    zero = _constant(xp, 0.0, a)
    minus_one = _constant(xp, -1.0, a)
    d, equal = _difference(xp, a, b)
    near = (d > -LOG_2) & (d < 0)
    d_near = xp.where(near, d, minus_one)
    d_far = xp.where(d <= -LOG_2, d, minus_one)
    log1mexp = xp.where(near, xp.log(-xp.expm1(d_near)), xp.log1p(-xp.exp(d_far)))
    value = a + xp.where((d == 0) | (d > 0), zero, log1mexp)
    value = xp.where(d == 0, _constant(xp, -math.inf, a), value)
    undefined = (d > 0) | (equal & (a == math.inf)) | xp.isnan(d)  # e^a < e^b, inf - inf, NaN
    return xp.where(undefined, _constant(xp, math.nan, a), value)


def logsubexp_partials(xp: Any, a: Any, b: Any) -> tuple[Any, Any]:
    """``(d/da, d/db)`` of ``logsubexp``: ``e^a / (e^a - e^b) = -1 / expm1(d)`` and
    ``-e^b / (e^a - e^b) = -1 / expm1(-d)`` with ``d = b - a``.

    ``b = -inf``: ``(1, 0)`` (``(0, 0)`` when ``a = -inf`` too, as the gradient
    of an all ``-inf`` ``logaddexp``); ``a == b``: ``(+inf, -inf)``; ``a < b``:
    NaN. Written with safe branches so that second derivatives stay NaN-free.
    """
    zero = _constant(xp, 0.0, a)
    one = _constant(xp, 1.0, a)
    inf = _constant(xp, math.inf, a)
    nan = _constant(xp, math.nan, a)
    d, equal = _difference(xp, a, b)
    regular = (d < 0) & (d > -math.inf)
    d_safe = xp.where(regular, d, -one)
    d_a = -one / xp.expm1(d_safe)
    d_b = -one / xp.expm1(-d_safe)
    absent = d == -math.inf
    both_absent = absent & (a == -math.inf)
    d_a = xp.where(absent, xp.where(both_absent, zero, one), d_a)
    d_b = xp.where(absent, zero, d_b)
    d_a = xp.where(d == 0, inf, d_a)
    d_b = xp.where(d == 0, -inf, d_b)
    undefined = (d > 0) | (equal & (a == math.inf)) | xp.isnan(d)
    return xp.where(undefined, nan, d_a), xp.where(undefined, nan, d_b)


# ---------------------------------------------------------------------------
# Associative scans (last axis)
# ---------------------------------------------------------------------------

Combine = Callable[[tuple[Any, ...], tuple[Any, ...]], tuple[Any, ...]]


def _interleave(xp: Any, even: Any, odd: Any) -> Any:
    """``[even[0], odd[0], even[1], odd[1], ...]`` along the last axis
    (``even`` is as long as ``odd`` or one longer)."""
    count = odd.shape[-1]
    pairs = xp.stack([even[..., :count], odd], axis=-1)
    merged = xp.reshape(pairs, tuple(odd.shape[:-1]) + (2 * count,))
    if even.shape[-1] > count:
        merged = xp.concat([merged, even[..., count:]], axis=-1)
    return merged


def associative_scan(xp: Any, combine: Combine, elements: tuple[Any, ...]) -> tuple[Any, ...]:
    """Inclusive scan of ``combine`` along the last axis of each array in ``elements``.

    The pairwise (Ladner-Fischer style) recursion: combine neighbours, scan the
    half as long sequence, then fill in the even positions. ``O(n)`` combines in
    ``O(log n)`` levels; each output is the combination of ``O(log n)`` partial
    results, so rounding errors grow like ``log n``, not ``n``. Static shapes
    only (traces under ``jax.jit`` and ``torch.compile``).
    """
    size = elements[0].shape[-1]
    if size < 2:
        return elements
    pairs = combine(
        tuple(e[..., 0 : size - 1 : 2] for e in elements), tuple(e[..., 1:size:2] for e in elements)
    )
    odd = associative_scan(xp, combine, pairs)  # results at positions 1, 3, 5, ...
    later = tuple(e[..., 2:size:2] for e in elements)
    if size % 2 == 0:
        filled = combine(tuple(o[..., :-1] for o in odd), later)
    else:
        filled = combine(odd, later)
    even = tuple(xp.concat([e[..., :1], f], axis=-1) for e, f in zip(elements, filled))
    return tuple(_interleave(xp, ev, od) for ev, od in zip(even, odd))


def affine_scan(xp: Any, coefficient: Any, value: Any, reverse: bool = False) -> Any:
    """``s_i = coefficient_i * s_{i-1} + value_i`` (``s_{-1} = 0``) along the last
    axis; with ``reverse``, ``s_i = coefficient_i * s_{i+1} + value_i``.

    Linear in ``value`` (only products with ``coefficient`` and sums), so JAX
    can transpose it: the JVP of ``logcumsumexp`` is such a scan, and its
    transpose (the VJP) is the reverse scan.
    """

    def compose(earlier: tuple[Any, ...], later: tuple[Any, ...]) -> tuple[Any, ...]:
        (c1, v1), (c2, v2) = earlier, later
        return c1 * c2, c2 * v1 + v2

    if reverse:
        coefficient, value = xp.flip(coefficient, axis=-1), xp.flip(value, axis=-1)
    _, result = associative_scan(xp, compose, (coefficient, value))
    return xp.flip(result, axis=-1) if reverse else result


# ---------------------------------------------------------------------------
# logcumsumexp (last axis)
# ---------------------------------------------------------------------------


def _merge_states(earlier: tuple[Any, ...], later: tuple[Any, ...], xp: Any) -> tuple[Any, ...]:
    return merge_parts(xp, earlier[0], earlier[1], later[0], later[1])


def logcumsumexp_forward(xp: Any, x: Any) -> Any:
    """``y_i = log sum_{j <= i} e^{x_j}`` along the last axis: an associative scan
    of the streaming states ``(maximum, rest)`` (the merge of ``_streaming``),
    so every prefix keeps the pivot form ``m + log1p(rest)``: no overflow, exact
    with ``-inf`` entries and dominant terms, ``O(n)`` work."""
    if x.shape[-1] == 0:
        return x
    return finalize_parts(xp, *prefix_states(xp, x))


def prefix_states(xp: Any, x: Any) -> tuple[Any, Any]:
    """``(maximum, rest)``: the streaming state of every prefix along the last axis
    (:func:`associative_scan` of the merge), not yet finalized."""
    return associative_scan(xp, lambda e, l: _merge_states(e, l, xp), (x, xp.zeros_like(x)))


def logcumsumexp_coefficients(xp: Any, x: Any, y: Any) -> tuple[Any, Any]:
    """``(alpha, beta)`` of the linear recurrence ``dy_i = beta_i dy_{i-1} + alpha_i dx_i``.

    ``alpha_i = e^{x_i - y_i}`` (the weight of the newest term in prefix ``i``)
    and ``beta_i = e^{y_{i-1} - y_i} = 1 - alpha_i``, both in ``[0, 1]``.
    Prefixes that are all ``-inf`` have ``alpha = beta = 0`` (zero gradient,
    never NaN); prefixes with ``k`` entries ``+inf`` weigh each ``1/k`` (the
    running mean: ``beta = (k-1)/k`` and ``alpha = 1/k`` on a ``+inf``, ``beta = 1``
    and ``alpha = 0`` on anything else); NaN prefixes give NaN.
    """
    zero = _constant(xp, 0.0, x)
    one = _constant(xp, 1.0, x)
    previous = xp.concat([xp.full_like(y[..., :1], -math.inf), y[..., :-1]], axis=-1)
    finite = (y > -math.inf) & (y < math.inf)
    y_safe = xp.where(finite, y, zero)
    alpha = xp.exp(xp.where(finite, x, zero) - y_safe)
    beta = xp.exp(xp.where(finite, previous, zero) - y_safe)

    is_inf = x == math.inf
    count = xp.cumulative_sum(xp.astype(is_inf, x.dtype), axis=-1)
    count = xp.where(count > 0, count, one)
    alpha = xp.where(y == math.inf, xp.where(is_inf, one / count, zero), alpha)
    beta = xp.where(y == math.inf, xp.where(is_inf, (count - one) / count, one), beta)
    alpha = xp.where(y == -math.inf, zero, alpha)
    beta = xp.where(y == -math.inf, zero, beta)
    nan = xp.isnan(y)
    return xp.where(nan, y, alpha), xp.where(nan, y, beta)


def logcumsumexp_jvp(xp: Any, x: Any, y: Any, x_tangent: Any) -> Any:
    """Forward mode: ``dy_i = sum_{j<=i} e^{x_j - y_i} dx_j`` as the stable
    recurrence ``dy_i = beta_i dy_{i-1} + alpha_i dx_i`` (one affine scan)."""
    alpha, beta = logcumsumexp_coefficients(xp, x, y)
    return affine_scan(xp, beta, alpha * x_tangent)


def logcumsumexp_vjp(xp: Any, x: Any, y: Any, cotangent: Any) -> Any:
    """Reverse mode, the transpose of the JVP: ``grad_j = alpha_j z_j`` with
    ``z_j = g_j + beta_{j+1} z_{j+1}`` (one reverse affine scan). Unlike
    ``sum_i g_i e^{x_j - y_i}`` evaluated in the log domain, it needs no
    ``log g`` (so no sign split) and has no ``-inf - (-inf)``."""
    alpha, beta = logcumsumexp_coefficients(xp, x, y)
    following = xp.concat([beta[..., 1:], xp.zeros_like(beta[..., :1])], axis=-1)
    return alpha * affine_scan(xp, following, cotangent, reverse=True)


# ---------------------------------------------------------------------------
# logmeanexp (one axis, keepdims)
# ---------------------------------------------------------------------------


def logmeanexp_forward(xp: Any, x: Any, count: Any, axis: int) -> Any:
    """``log((1/n) sum_i e^{x_i}) = m + log((1 + rest) / n)`` (keepdims shape).

    With ``mean = (1 + rest) / n`` in ``(0, 1]``: for ``mean >= 1/2`` the log is
    ``log1p(mean - 1)`` with ``n (mean - 1) = sum_i expm1(x_i - m)`` summed
    directly (:func:`mean_deficit`; ``rest - (n - 1)`` would keep the rounding
    of every ``exp`` near 1, up to 8.7e5 ulp of a result near 0 in float64), so
    ``[c] * n`` gives exactly ``c`` and near-equal inputs keep full accuracy
    (``LSE - log n`` loses ``log n / |result|`` ulps there); below ``1/2`` it is
    ``log(mean)``, well conditioned. ``n = 0`` or all ``-inf`` gives ``-inf``.
    """
    maximum, rest = chunk_parts(xp, x, axis)
    return finish_logmeanexp(xp, x, count, axis, maximum, rest)


def finish_logmeanexp(xp: Any, x: Any, count: Any, axis: int, maximum: Any, rest: Any) -> Any:
    """:func:`logmeanexp_forward` from the reduced state ``(maximum, rest)`` of ``x``
    (keepdims, in ``x``'s dtype); reads ``x`` once more only where a mean is at
    least 1/2 (always for arrays other than NumPy's: no data-dependent branch)."""
    one = _constant(xp, 1.0, rest)
    zero = _constant(xp, 0.0, rest)
    n = xp.where(count > 0, count, one)
    mean = (one + rest) / n
    near = mean >= 0.5
    finite = xp.isfinite(maximum)
    deficit = rest - (n - one)  # where the maximum is not finite (and not read where no mean is near 1)
    if x.__class__ is not np.ndarray or bool(np.any(near & finite)):
        deficit = xp.where(finite, mean_deficit(xp, x, maximum, n, axis), deficit)
    log_mean = xp.where(
        near,
        xp.log1p(xp.where(near, deficit / n, zero)),
        xp.log(xp.where(near, one, mean)),
    )
    return maximum + log_mean


def mean_deficit(xp: Any, x: Any, maximum: Any, count: Any, axis: int) -> Any:
    """``sum_i (e^{x_i - m} - 1)`` over the ``count`` present entries (keepdims;
    absent entries are ``-inf`` beyond the count): ``expm1`` of the finite
    differences, each ``-1`` of a present ``-inf`` added exactly as the count of
    them. Every term is ``<= 0``: no cancellation. Slices whose maximum is not
    finite give garbage (callers keep their own value there)."""
    zero = _constant(xp, 0.0, x)
    finite_maximum = xp.isfinite(maximum)
    finite = xp.isfinite(x) & finite_maximum
    shifted = xp.where(finite, x - xp.where(finite_maximum, maximum, zero), zero)
    present_infinite = count - axis_sum(xp, xp.astype(finite, x.dtype), axis)
    return axis_sum(xp, xp.expm1(shifted), axis) - present_infinite


# ---------------------------------------------------------------------------
# log_matmul_exp: (..., m, k) @ (..., k, n), same batch shape
# ---------------------------------------------------------------------------


def log_matmul_exp_shifts(xp: Any, a: Any, b: Any) -> tuple[Any, Any]:
    """Row maxima of ``a`` ``(..., m, 1)`` and column maxima of ``b`` ``(..., 1, n)``.

    The adapters compute them on values cut from the autodiff graph: the result
    does not depend on the shift, so its derivative must not either.
    """
    return xp.max(a, axis=-1, keepdims=True), xp.max(b, axis=-2, keepdims=True)


def _scaled_exp(xp: Any, values: Any, maximum: Any) -> Any:
    """``exp(values - maximum)`` per row/column with the kernel's limits
    (:func:`smoothmax._kernel.shift_at_limits`): a ``-inf`` maximum (all ``-inf``)
    shifts by 0 (all zeros), a ``+inf`` one keeps 1 on its ``+inf`` entries, NaN
    on NaN ones and 0 elsewhere (no overflow), a NaN one gives NaN. (NaN kept
    beside ``+inf``: XLA's CPU ``max`` skips NaN in arrays of more than a few
    hundred elements, where the maximum of ``[nan, inf]`` is ``+inf``.)"""
    values, shift = shift_at_limits(xp, values, maximum, keep_nan=True)
    return xp.exp(values - shift)


def log_matmul_exp_parts(
    xp: Any, a: Any, b: Any, row_max: Any, column_max: Any
) -> tuple[Any, Any, Any]:
    """``(P, Q, S)`` with ``P = exp(a - row_max)``, ``Q = exp(b - column_max)``
    and ``S = P @ Q``: the only full-size intermediates are ``m k + k n + m n``."""
    scaled_a = _scaled_exp(xp, a, row_max)
    scaled_b = _scaled_exp(xp, b, column_max)
    return scaled_a, scaled_b, xp.matmul(scaled_a, scaled_b)


def log_matmul_exp_forward(xp: Any, a: Any, b: Any) -> Any:
    """``out_ij = log sum_l e^{a_il + b_lj} = r_i + c_j + log S_ij`` with the row
    maxima ``r`` of ``a``, the column maxima ``c`` of ``b`` and ``S`` the product
    of the shifted exponentials (each entry ``<= 1``: no overflow).

    ``S_ij = 0`` (a row of ``a`` or a column of ``b`` all ``-inf``, or every term
    below the underflow threshold relative to ``r_i + c_j``) gives ``-inf``;
    ``+inf`` in row ``i`` or column ``j`` gives ``+inf`` (NaN where it meets only
    ``-inf``, as ``inf + -inf``); NaN propagates to its row/column.
    """
    row_max, column_max = log_matmul_exp_shifts(xp, a, b)
    _, _, total = log_matmul_exp_parts(xp, a, b, row_max, column_max)
    zero = _constant(xp, 0.0, total)
    row_shift = xp.where((row_max > -math.inf) & (row_max < math.inf), row_max, zero)
    column_shift = xp.where((column_max > -math.inf) & (column_max < math.inf), column_max, zero)
    inf = _constant(xp, math.inf, total)
    positive = total > 0
    log_total = xp.where(positive, xp.log(xp.where(positive, total, _constant(xp, 1.0, total))), -inf)
    log_total = xp.where(xp.isnan(total), total, log_total)
    value = (row_shift + column_shift) + log_total
    infinite = (row_max == math.inf) | (column_max == math.inf)
    return xp.where(infinite, xp.where(positive, inf, _constant(xp, math.nan, total)), value)


def _reciprocal_or_zero(xp: Any, total: Any) -> Any:
    """``1 / S`` where ``S != 0``, else 0: an empty sum (row or column all ``-inf``)
    gets zero gradient, never NaN; NaN stays NaN."""
    one = _constant(xp, 1.0, total)
    empty = total == 0
    return xp.where(empty, _constant(xp, 0.0, total), one / xp.where(empty, one, total))


def log_matmul_exp_jvp(
    xp: Any, a: Any, b: Any, row_max: Any, column_max: Any, a_tangent: Any, b_tangent: Any
) -> Any:
    """``d out_ij = sum_l w_ilj (da_il + db_lj)`` with ``w_ilj = P_il Q_lj / S_ij``:
    ``d out = ((P * da) @ Q + P @ (Q * db)) / S``, linear in the tangents."""
    scaled_a, scaled_b, total = log_matmul_exp_parts(xp, a, b, row_max, column_max)
    numerator = None
    if a_tangent is not None:
        numerator = xp.matmul(scaled_a * a_tangent, scaled_b)
    if b_tangent is not None:
        term = xp.matmul(scaled_a, scaled_b * b_tangent)
        numerator = term if numerator is None else numerator + term
    if numerator is None:
        return xp.zeros_like(total)
    return numerator * _reciprocal_or_zero(xp, total)


def log_matmul_exp_vjp(
    xp: Any, a: Any, b: Any, row_max: Any, column_max: Any, cotangent: Any
) -> tuple[Any, Any]:
    """``grad_a = P * ((g / S) @ Q^T)``, ``grad_b = Q * (P^T @ (g / S))``: the
    transpose of the JVP, again without an ``(m, k, n)`` intermediate."""
    scaled_a, scaled_b, total = log_matmul_exp_parts(xp, a, b, row_max, column_max)
    weighted = cotangent * _reciprocal_or_zero(xp, total)
    grad_a = scaled_a * xp.matmul(weighted, xp.matrix_transpose(scaled_b))
    grad_b = scaled_b * xp.matmul(xp.matrix_transpose(scaled_a), weighted)
    return grad_a, grad_b
