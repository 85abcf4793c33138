"""The one backend-agnostic log-sum-exp kernel and its derivative rules.

Everything here is written against the Array API standard only; the autodiff
adapters (``_torch``, ``_jax``) register :func:`kernel` with their framework and
call :func:`kernel_jvp` / :func:`kernel_vjp` as its derivative rules.

The kernel reduces one axis of an already prepared input:

* ``x`` is floating (float32 or float64), absent entries are ``-inf``;
* ``weights`` is ``None`` or an array of ``x``'s shape, zero where absent;
* ``temperature`` is a Python float ``t >= 0`` (negative temperatures are
  handled by the caller as ``-kernel(-x, |t|)``).

With ``m = max(x)`` taken at one pivot index ``k``, every term is scaled by
``e_i = exp((x_i - m) / t)``, so ``e_k == 1`` exactly, and

    LSE_t(x) = m + t * log1p(sum_{i != k} e_i)

keeps full relative accuracy when one term dominates (``[0, -40, -40]``), where
``m + t * log(sum_i e_i)`` rounds the sum to 1 and returns ``m``.
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import device

#: Names of the arrays the kernel can return.
#:
#: ``lse``    t * log|sum b_i exp(x_i / t)|, keepdims shape
#: ``sign``   sign of the sum (0 for an empty sum), keepdims shape
#: ``q``      d lse / dx = b_i e_i / sum(b e): the softmax when b is None
#: ``r``      d lse / db / t = e_i / sum(b e) (only with weights)
#: ``log_q``  log of ``q`` (only without weights): the log-softmax
OUTPUT_NAMES = ("lse", "sign", "q", "r", "log_q")


#: 0-d constants on PyTorch's accelerators (CUDA, MPS...), made once per value,
#: dtype and device: each one made anew is a host-to-device copy (~15 a call).
_DEVICE_CONSTANTS: dict[tuple[float, Any, Any], Any] = {}


def _constant(xp: Any, value: float, like: Any) -> Any:
    """``value`` as a 0-d array of ``like``'s dtype on its device (never written to)."""
    where = device(like)
    if getattr(where, "type", "cpu") == "cpu":  # only PyTorch's devices have a type
        return xp.asarray(value, dtype=like.dtype, device=where)
    key = (value, like.dtype, where)
    constant = _DEVICE_CONSTANTS.get(key)
    if constant is None:
        constant = xp.asarray(value, dtype=like.dtype, device=where)
        if type(constant).__name__ == "Tensor":  # not torch.compile's FakeTensor
            _DEVICE_CONSTANTS[key] = constant
    return constant


def _sign(xp: Any, value: Any) -> Any:
    """sign with NaN propagated, built from ``where`` (array-api-compat's torch
    ``sign`` indexes with a boolean mask, which ``torch.vmap`` cannot batch)."""
    one = _constant(xp, 1.0, value)
    zero = _constant(xp, 0.0, value)
    return xp.where(value > 0, one, xp.where(value < 0, -one, xp.where(value == 0, zero, value)))


def _pivot_mask(xp: Any, index: Any, axis: int, size: int, ndim: int) -> Any:
    """Boolean array, True at the one pivot position per slice (broadcastable)."""
    shape = [1] * ndim
    shape[axis] = size
    positions = xp.reshape(xp.arange(size, dtype=index.dtype, device=device(index)), tuple(shape))
    return positions == index


def _empty_outputs(xp: Any, x: Any, axis: int, outputs: tuple[str, ...]) -> tuple[Any, ...]:
    """Empty slices (a static shape): LSE is log(0) = -inf, the sum's sign 0."""
    reduced_shape = tuple(1 if i == axis else n for i, n in enumerate(x.shape))
    fills = {"lse": -math.inf, "sign": 0.0}
    return tuple(
        xp.full(reduced_shape, fills[name], dtype=x.dtype, device=device(x))
        if name in fills
        else xp.zeros_like(x)
        for name in outputs
    )


def axis_sum(xp: Any, values: Any, axis: int) -> Any:
    """``sum(values, axis, keepdims=True)``, added pairwise along an outer axis.

    Along the last axis (or one followed only by axes of length 1) ``xp.sum``:
    the backends sum a contiguous axis pairwise or in vectorized blocks already.
    Along an outer axis NumPy (and so array-api-strict) adds row after row, an
    error up to ``(n - 1) u`` of the sum (``logsumexp`` 62.7 ulp off in float32
    on 999 terms ``e^-40`` beside a 0): there :func:`pairwise_sum`, ``O(log2 n) u``
    and the same order on every backend.
    """
    if math.prod(values.shape[axis + 1 :]) <= 1:
        return xp.sum(values, axis=axis, keepdims=True)
    return pairwise_sum(xp, values, axis)


def pairwise_sum(xp: Any, values: Any, axis: int) -> Any:
    """Sum ``axis`` of ``values`` (keepdims) by folding it in half: a balanced tree.

    Each fold adds row ``i + h`` to row ``i`` (``h = n // 2``, contiguous halves);
    an odd row out, the last, is set aside and added to the ones set aside
    before (the *carry*), which joins the one row left at the end. Every term
    goes through at most ``2 log2 n + 1`` additions. Each folded row sums
    exactly ``2**k`` terms, so equal terms (the many small ones beside a
    dominant term) fold without rounding and only the carry rounds: 999 terms
    ``e^-40`` within 1 ulp (padding with zero rows to ``2**k`` instead, which
    adds unequal counts at every level: ``logsumexp`` 1.64 ulp off in float64
    on the conformance case ``dominant/rows-70x1000-axis0``, 0.57 here). The
    order depends on ``n`` alone, not on the backend; the NumPy and PyTorch
    fast paths (``_fastpaths``) add the same pairs in place, for bitwise the
    same sums.
    """

    if values.shape[axis] == 0:
        return xp.sum(values, axis=axis, keepdims=True)  # zeros of the reduced shape

    def rows(array: Any, start: int, stop: int) -> Any:
        # a full index: the standard leaves indexing fewer axes than ndim unspecified
        return array[(slice(None),) * axis + (slice(start, stop),) + (...,)]

    return fold_in_halves(values, values.shape[axis], rows, lambda a, b: a + b)


def fold_in_halves(values: Any, n: int, rows: Any, add: Any, carry: Any = None) -> Any:
    """The folds of :func:`pairwise_sum` over ``n >= 1`` rows of ``values``:
    ``rows(values, start, stop)`` slices them (keeping the axis), ``add(a, b)``
    adds two slices (any representation of a sum: compensated pairs too; the
    fast paths add in place into ``a``). ``carry``: the rows set aside before
    (a sum continued over pieces), else None."""
    while n > 1:
        half = n // 2
        if n % 2:
            last = rows(values, n - 1, n)
            carry = last if carry is None else add(carry, last)
        values = add(rows(values, 0, half), rows(values, half, 2 * half))
        n = half
    return values if carry is None else add(values, carry)


def shift_at_limits(xp: Any, x: Any, maximum: Any, keep_nan: bool = False) -> tuple[Any, Any]:
    """``(x, shift)`` such that ``exp(x - shift)`` are the kernel's terms for any
    ``maximum`` (keepdims) of ``x``: the maximum itself where finite; on a slice
    with ``k`` entries ``+inf`` (the limit is uniform weight on them) those become
    0 and the rest ``-inf``, shifted by 0; on an all ``-inf`` slice (empty after
    masking) a shift of 0, so that ``exp`` gives 0, not NaN. NaN stays NaN; with
    ``keep_nan`` also on a ``+inf`` slice, for a ``maximum`` that may have skipped
    NaN (XLA's CPU reductions, see ``smoothmax._fastpaths._jax_ties``)."""
    zero = _constant(xp, 0.0, x)
    positive_inf = maximum == math.inf
    others = _constant(xp, -math.inf, x)
    if keep_nan:
        others = xp.where(xp.isnan(x), x, others)
    x = xp.where(positive_inf, xp.where(x == math.inf, zero, others), x)
    return x, xp.where((maximum == -math.inf) | positive_inf, zero, maximum)


def kernel(
    xp: Any,
    x: Any,
    weights: Any | None,
    axis: int,
    temperature: float,
    outputs: tuple[str, ...],
) -> tuple[Any, ...]:
    """Reduce ``axis`` of the prepared ``x``; return the named ``outputs`` in order.

    Three passes over the data: arg max, ``exp`` with the sum, and (only when a
    full-size output such as ``q`` is asked for) one scaling pass.
    """
    t = temperature
    neg_inf = _constant(xp, -math.inf, x)
    zero = _constant(xp, 0.0, x)
    one = _constant(xp, 1.0, x)
    if weights is not None:
        x = xp.where(weights == 0, neg_inf, x)  # b = 0 is absent, like where=False

    size = x.shape[axis]
    if size == 0:
        return _empty_outputs(xp, x, axis, outputs)
    index = xp.argmax(x, axis=axis, keepdims=True)
    maximum = xp.take_along_axis(x, index, axis=axis)
    x, shift = shift_at_limits(xp, x, maximum)

    shifted = x - shift
    if t == 0.0:
        # The limit t -> 0+: weight 1 on every tie of the max, 0 elsewhere;
        # NaN anywhere still poisons the slice.
        scaled = xp.where(shifted == 0, one, xp.where(xp.isnan(shifted), shifted, zero))
    else:
        if t != 1.0:
            shifted = shifted / _constant(xp, t, x)
        scaled = xp.exp(shifted)

    pivot = _pivot_mask(xp, index, axis, size, x.ndim)
    terms = scaled if weights is None else weights * scaled
    rest = axis_sum(xp, xp.where(pivot, zero, terms), axis)
    empty = maximum == -math.inf

    if weights is None:
        log_sum = xp.log1p(rest)
        total = one + rest
        sign = xp.where(empty, zero, _sign(xp, total))
    else:
        pivot_weight = xp.take_along_axis(weights, index, axis=axis)
        # pivot weight 0 only on an empty slice, where maximum = -inf decides
        safe_pivot_weight = xp.where(pivot_weight == 0, one, pivot_weight)
        ratio = rest / safe_pivot_weight
        one_plus_ratio = one + ratio
        # log|w_k + rest| = log|w_k| + log|1 + rest / w_k|; log1p keeps the
        # dominant-term accuracy while 1 + ratio > 0.
        magnitude = xp.abs(one_plus_ratio)
        log_sum = xp.log(xp.abs(safe_pivot_weight)) + xp.where(
            ratio > -1,
            xp.log1p(xp.where(ratio > -1, ratio, zero)),
            xp.where(magnitude == 0, neg_inf, xp.log(xp.where(magnitude == 0, one, magnitude))),
        )
        total = pivot_weight + rest
        # An empty slice (all -inf) sums to 0 whatever its weights: sign 0.
        sign = xp.where(empty, zero, _sign(xp, pivot_weight) * _sign(xp, one_plus_ratio))

    results: dict[str, Any] = {}
    if "lse" in outputs:
        if t == 0.0:
            # Exact max; 0 * log_sum carries NaN from elsewhere in the slice.
            results["lse"] = maximum + zero * xp.where(xp.isinf(log_sum), zero, log_sum)
        else:
            results["lse"] = maximum + _constant(xp, t, x) * log_sum if t != 1.0 else maximum + log_sum
    if "sign" in outputs:
        results["sign"] = sign
    if "q" in outputs or "r" in outputs:
        denominator = xp.where(empty, one, total)
        if "q" in outputs:
            results["q"] = terms / denominator
        if "r" in outputs:
            results["r"] = scaled / denominator
    if "log_q" in outputs:
        if t == 0.0:
            weight = scaled / xp.where(empty, one, total)  # exactly 1/k on the ties
            results["log_q"] = xp.where(
                weight > 0,
                xp.log(xp.where(weight > 0, weight, one)),
                xp.where(xp.isnan(weight), weight, neg_inf),
            )
        else:
            results["log_q"] = shifted - log_sum
    return tuple(results[name] for name in outputs)


def with_rule_inputs(outputs: tuple[str, ...], has_weights: bool) -> tuple[str, ...]:
    """``outputs`` plus what the derivative rules read: ``q``, and ``r`` with weights."""
    needed = ("q", "r") if has_weights else ("q",)
    return outputs + tuple(name for name in needed if name not in outputs)


def _sum(xp: Any, value: Any, axis: int) -> Any:
    return xp.sum(value, axis=axis, keepdims=True)


def kernel_jvp(
    xp: Any,
    q: Any,
    r: Any | None,
    x_tangent: Any | None,
    weights_tangent: Any | None,
    axis: int,
    temperature: float,
    outputs: tuple[str, ...],
    scaled: tuple[Any, Any] | None = None,
) -> tuple[Any, ...]:
    """Forward-mode rule: tangents of the named ``outputs`` of :func:`kernel`.

    With ``a = <q, dx>`` and ``c = <r, db>``:
    ``d lse = a + t c``, ``d q = q (dx - a) / t + r db - q c``,
    ``d r = r (dx - a) / t - r c``, ``d log_q = (dx - a) / t``.
    At ``t = 0`` the weights are piecewise constant in ``x``: only ``a`` remains.

    ``scaled = (e, total)``, the arrays ``q = e / total`` was computed from
    (``e = exp(d)``, ``total >= 1``; JAX's kernel, no weights, ``t > 0``), writes
    ``d q = (q dx - e <e, dx> / total**2) / t``: the same value up to rounding,
    whose transpose (reverse mode, as JAX forms it) reduces ``e g`` rather than
    ``q g``, so that XLA fuses the product into the reduction instead of writing
    it out for the reduction and ``q g - q <q, g>`` to share (see
    ``smoothmax._jax._scaled_tangent``). ``e`` and ``total`` themselves, where
    asked (the rule differentiated again), have the tangents ``e dx / t`` and
    ``<e, dx> / t``: the shift is a constant of ``d``, and ``q = e / total``
    has its tangent above.
    """
    t = temperature
    if x_tangent is None:
        x_tangent = xp.zeros_like(q)
    weighted = q * x_tangent
    a = _sum(xp, weighted, axis)
    c = None if weights_tangent is None or r is None else _sum(xp, r * weights_tangent, axis)
    centred = None if t == 0.0 else (x_tangent - a)
    if centred is not None and t != 1.0:  # dividing by 1 is a full-size pass for nothing
        centred = centred / _constant(xp, t, q)
    tangents: dict[str, Any] = {}
    if "lse" in outputs:
        tangents["lse"] = a if c is None else a + _constant(xp, t, q) * c
    if "sign" in outputs:
        tangents["sign"] = xp.zeros_like(a)
    if scaled is not None:
        e, total = scaled
        e_tangent = e * x_tangent
        e_dot = _sum(xp, e_tangent, axis)
        value = weighted - e * (e_dot / (total * total))
        own = {"q": value, "exp": e_tangent, "total": e_dot}
        for name in own.keys() & set(outputs):
            tangents[name] = own[name] if t == 1.0 else own[name] / _constant(xp, t, q)
    elif "q" in outputs:
        value = q * centred if centred is not None else xp.zeros_like(q)
        if c is not None:
            value = value + r * weights_tangent - q * c
        tangents["q"] = value
    if "r" in outputs:
        value = r * centred if centred is not None else xp.zeros_like(r)
        if c is not None:
            value = value - r * c
        tangents["r"] = value
    if "log_q" in outputs:
        tangents["log_q"] = centred if centred is not None else xp.zeros_like(q)
    return tuple(tangents[name] for name in outputs)


def kernel_vjp(
    xp: Any,
    q: Any,
    r: Any | None,
    cotangents: dict[str, Any | None],
    axis: int,
    temperature: float,
) -> tuple[Any | None, Any | None]:
    """Reverse-mode rule: ``(grad_x, grad_weights)`` from the outputs' cotangents.

    ``grad_x = q g_lse + [q (g_q - <q, g_q>) + r g_r - q <r, g_r> + g_lq - q <1, g_lq>] / t``
    ``grad_b = r (t g_lse + g_q - <q, g_q> - <r, g_r>)``.
    With only ``g_lse`` (the gradient of ``logsumexp``), ``grad_x = q * g_lse``:
    for ``g_lse = 1`` that is ``q`` bit for bit, the same array ``softmax`` returns.
    """
    t = temperature
    g_lse = cotangents.get("lse")
    g_q = cotangents.get("q")
    g_r = cotangents.get("r")
    g_log_q = cotangents.get("log_q")

    grad_x = q * g_lse if g_lse is not None else None
    inner = None
    q_dot_g_q = _sum(xp, q * g_q, axis) if g_q is not None else None
    r_dot_g_r = _sum(xp, r * g_r, axis) if g_r is not None and r is not None else None
    if t != 0.0:
        if g_q is not None:
            inner = q * (g_q - q_dot_g_q)
        if r_dot_g_r is not None:
            term = r * g_r - q * r_dot_g_r
            inner = term if inner is None else inner + term
        if g_log_q is not None:
            term = g_log_q - q * _sum(xp, g_log_q, axis)
            inner = term if inner is None else inner + term
        if inner is not None:
            if t != 1.0:
                inner = inner / _constant(xp, t, q)
            grad_x = inner if grad_x is None else grad_x + inner
    if grad_x is None:
        grad_x = xp.zeros_like(q)

    grad_weights = None
    if r is not None:
        scale = None
        if g_lse is not None:
            scale = _constant(xp, t, q) * g_lse if t != 1.0 else g_lse
        for term in (
            (g_q - q_dot_g_q) if g_q is not None else None,
            -r_dot_g_r if r_dot_g_r is not None else None,
        ):
            if term is not None:
                scale = term if scale is None else scale + term
        grad_weights = r * scale if scale is not None else xp.zeros_like(r)
    return grad_x, grad_weights
