"""PyTorch on CUDA: the kernel's forward as one Triton kernel a call.

The generic kernel (:mod:`smoothmax._kernel`) on CUDA tensors launches ~31 small
kernels, each a pass over the data or a few microseconds of launch (1.6-8.6x
``torch.logsumexp`` on an H200), and PyTorch's float32 ``exp`` there errs by up
to 2 ulp (CUDA's documented bound), which left ``softmax`` 2.0-3.7 ulp off on
conformance cases that the CPU passes. Here one program reduces a block of
slices in three passes over them (the first two, and the third where a
full-size output is asked for, read the same block; a slice that fits one
block is loaded once):

1. the maximum ``m`` and the pivot ``k``, the first index of the maximum;
2. ``rest = sum_{i != k} exp((x_i - m) / t)``, the pivot left out as in the
   generic kernel, so ``lse = m + t log1p(rest)`` keeps the dominant-term
   accuracy (``logsumexp([0, -40, -40]) = 8.5e-18``, not 0);
3. ``q = exp((x - m) / t) / (1 + rest)`` and ``log_q = (x - m) / t - log1p(rest)``.

The arithmetic is float64 for float32 input: each output is then one rounding
of a value good to ~1e-15, within 0.5 ulp but for the last bit of a tie, on
float32 (Triton's float32 ``exp`` is the approximate ``ex2``). float64 input
uses CUDA's float64 ``exp`` and ``log`` (1 ulp). The special values are the
generic kernel's: a NaN anywhere makes the slice NaN; ``+inf`` entries share the
weight (the rest get 0); an all ``-inf`` slice has ``lse = -inf``, ``q = 0``.

Slices longer than :data:`LONGEST_SLICE` (rows, and columns along an outer
axis) are split into segments, a program each, in two launches (each
segment's maximum and sum shifted by it, its own pivot left out; then the
slice's, every program reducing its slice's segment results itself, and the
outputs): a single long row keeps the whole GPU busy, not one multiprocessor.

Only plain contiguous float32/float64 CUDA tensors (NVIDIA: ROCm builds keep
the generic kernel, see ``_fastpaths._cuda_module``), ``t > 0``, the outputs
``lse``/``q``/``log_q`` and slices up to :data:`LONGEST_SPLIT_SLICE` take this
path (:func:`kernel` returns None elsewhere and the generic kernel runs); the
caller runs it where no gradient is recorded (the adapter's derivative rules read
``q``, which this kernel returns too). Triton is imported only when a CUDA
tensor arrives. Its interpreter (``TRITON_INTERPRET=1``) runs the same kernel on
CPU tensors, which is how the test suite checks it on machines without a GPU
(:func:`launch`).
"""

# No ``from __future__ import annotations``: Triton reads the kernel's parameter
# annotations (``tl.float64``, ``tl.constexpr``) as objects.

import functools
import math
from typing import Any, NamedTuple

import numpy as np
import triton
import triton.language as tl

#: Slices longer than this are not one program's: they are split into
#: segments (:func:`plan_segments`). (A single long row in one program would
#: keep one multiprocessor busy alone.)
LONGEST_SLICE = 1 << 16

#: The longest chunk of a row a program holds at once (longer rows are read in
#: chunks): float32 input, and float64, whose two-part values take twice the registers.
ROW_CHUNK = {"float32": 4096, "float64": 2048}

#: Elements a program takes of rows (several short rows a program), with 4 warps;
#: and of columns (neighbouring columns by a chunk of each), with 8. From a sweep
#: on an H200 (tile 1024-8192, 4 or 8 warps): rows of 256 and 1024 elements
#: 1.1-1.35x faster than at 4096 elements and 8 warps (softmax of (32, 8, 256,
#: 256) float32 80 -> 59 us), columns of float64 1.37x at 4096 and 8 warps
#: than at 2048 and 4 ((1024, 4096) along axis 0: 110 -> 80 us).
ROW_ELEMENTS = 1024
COLUMN_ELEMENTS = 4096

#: The names :func:`kernel` computes.
OUTPUTS = frozenset(("lse", "q", "log_q"))


@triton.jit
def _log1p(r):
    """``log(1 + r)`` from ``log(u)``, ``u = 1 + r`` rounded, plus ``e / u`` for
    the rounding error ``e`` of that sum: ~1 ulp where ``log`` is, and ``r``
    itself where ``1 + r`` rounds to 1 (Triton's interpreter has no libdevice
    ``log1p``, so both run this)."""
    u, error = _two_sum(1.0, r)
    return tl.log(u) + error / u


@triton.jit
def _two_sum(a, b):
    """``(s, e)``: ``s = a + b`` rounded and its error, ``a + b = s + e`` exactly
    (Knuth's TwoSum; no products, so contraction into FMA cannot change it)."""
    s = a + b
    b_part = s - a
    a_part = s - b_part
    return s, (a - a_part) + (b - b_part)


@triton.jit
def _add_two_sums(a_high, a_low, b_high, b_low):
    """Combine of the compensated reduction: the sum of two (high, low) pairs."""
    s, error = _two_sum(a_high, b_high)
    return s, error + (a_low + b_low)


@triton.jit
def _two_product(a, b, HARDWARE_FMA: tl.constexpr):
    """``(p, e)``: ``p = a b`` rounded and its error, ``a b = p + e`` exactly:
    ``fma(a, b, -p)`` on the GPU; in Triton's interpreter, whose ``fma`` rounds
    twice, Dekker's product of Veltkamp's halves (exact where nothing is
    contracted into FMA: the float64 kernel is compiled with
    ``enable_fp_fusion=False``). Both give the same two numbers."""
    p = a * b
    if HARDWARE_FMA:
        return p, tl.fma(a, b, -p)
    else:
        a_scaled = a * 134217729.0  # 2**27 + 1
        a_high = a_scaled - (a_scaled - a)
        a_low = a - a_high
        b_scaled = b * 134217729.0
        b_high = b_scaled - (b_scaled - b)
        b_low = b - b_high
        return p, ((a_high * b_high - p) + a_high * b_low + a_low * b_high) + a_low * b_low


@triton.jit
def _power_of_two(k):
    """``2**k`` for integral float ``k`` in [-1022, 1023], built from its bits."""
    return ((k.to(tl.int64) + 1023) << 52).to(tl.float64, bitcast=True)


@triton.jit
def _exp_extended(a_high, a_low):
    """``exp(a_high + a_low)`` as ``(high, low)``, ``a_high < 709``, to ~2**-55
    relative: ``a = k log 2 + r``, ``|r| <= log(2) / 2``, with ``k log 2`` taken
    from fdlibm's two-part ``log 2`` (``k ln2_high`` exact, so ``a - k ln2_high``
    is exact, and ``k ln2_low`` added by TwoSum); ``exp(r)`` by its Taylor
    series to ``r**15 / 15!`` (4e-20; Horner's steps one FMA each on the GPU,
    two roundings each in the interpreter: ~1e-17 either way), the ``1 + r``
    and ``+ p`` additions kept exact by TwoSum, and ``a_low`` to first order.
    Below ``-746`` (underflow) 0; NaN stays NaN."""
    finite = a_high >= -746.0
    a = tl.where(finite, a_high, 0.0)
    k = tl.floor(a * 1.4426950408889634 + 0.5)
    # r = a - k log 2 in two parts: the first subtraction exact, the second's
    # part (up to 2e-7) folded in by TwoSum: only r_low (one ulp of r) is first order
    r, r_low = _two_sum(a - k * 6.93147180369123816490e-01, -k * 1.90821492927058770002e-10)
    r_low = r_low + tl.where(finite, a_low, 0.0)
    # float64 coefficients: tl.fma takes a Python float as float32
    zero = tl.zeros_like(r)
    p = zero + 1.0 / 1307674368000.0
    p = tl.fma(p, r, zero + 1.0 / 87178291200.0)
    p = tl.fma(p, r, zero + 1.0 / 6227020800.0)
    p = tl.fma(p, r, zero + 1.0 / 479001600.0)
    p = tl.fma(p, r, zero + 1.0 / 39916800.0)
    p = tl.fma(p, r, zero + 1.0 / 3628800.0)
    p = tl.fma(p, r, zero + 1.0 / 362880.0)
    p = tl.fma(p, r, zero + 1.0 / 40320.0)
    p = tl.fma(p, r, zero + 1.0 / 5040.0)
    p = tl.fma(p, r, zero + 1.0 / 720.0)
    p = tl.fma(p, r, zero + 1.0 / 120.0)
    p = tl.fma(p, r, zero + 1.0 / 24.0)
    p = tl.fma(p, r, zero + 1.0 / 6.0)
    p = tl.fma(p, r, zero + 0.5)
    p = p * r * r  # exp(r) - 1 - r
    one_plus_r, error = _two_sum(1.0, r)
    high, error_2 = _two_sum(one_plus_r, p)
    low = (error + error_2) + high * r_low
    # 2**k in two factors, each a normal number (k >= -1076 here)
    half = tl.floor(k * 0.5)
    scale_1 = _power_of_two(half)
    scale_2 = _power_of_two(k - half)
    high = high * scale_1 * scale_2
    low = low * scale_1 * scale_2
    underflow = tl.where(a_high != a_high, a_high, 0.0)  # NaN, else 0
    return tl.where(finite, high, underflow), tl.where(finite, low, 0.0)


@triton.jit
def _load(x_ptr, first, start, n, element_stride, slice_valid, BLOCK_N: tl.constexpr):
    """A chunk ``[start, start + BLOCK_N)`` of each slice of the block (``-inf``
    past the end), with its positions along the slice and its mask."""
    positions = start + tl.arange(0, BLOCK_N)
    mask = slice_valid[:, None] & (positions < n)[None, :]
    offsets = first[:, None] + positions.to(tl.int64)[None, :] * element_stride
    values = tl.load(x_ptr + offsets, mask=mask, other=float("-inf"))
    return values, positions, mask, offsets


@triton.jit
def _without_nan(values):
    """``values`` with NaN as ``-inf`` for the maximum and its index (NaN is
    noted apart; Triton's interpreter refuses the index of an all-NaN row)."""
    return tl.where(values != values, float("-inf"), values)


@triton.jit
def _shifted(values, shift, infinite_maximum, temperature,
             TEMPERED: tl.constexpr, EXTENDED: tl.constexpr, HARDWARE_FMA: tl.constexpr):
    """``(x - shift) / t`` in float64 as ``(high, low)``; on a slice whose maximum
    is ``+inf`` its ``+inf`` entries are 0 and the others ``-inf`` (the generic
    kernel's ``shift_at_limits``). ``low`` is the rounding error of ``high``
    where ``EXTENDED`` (float64 input), else 0 (float32 input: exact already,
    but for the division by ``t``, below float32's precision)."""
    wide = values.to(tl.float64)
    wide = tl.where(infinite_maximum[:, None], tl.where(wide == float("inf"), 0.0, float("-inf")), wide)
    if EXTENDED:
        absent = wide == float("-inf")
        high, low = _two_sum(tl.where(absent, 0.0, wide), -shift[:, None])  # no inf - inf inside
        if TEMPERED:
            quotient = high / temperature[:, None]
            product, error = _two_product(quotient, temperature[:, None], HARDWARE_FMA)
            low = (((high - product) - error) + low) / temperature[:, None]
            high = quotient
        high = tl.where(absent, wide - shift[:, None], high)  # -inf, or NaN with a NaN shift
        low = tl.where(absent, 0.0, low)
    else:
        high = wide - shift[:, None]
        if TEMPERED:
            high = high / temperature[:, None]
        low = tl.zeros_like(high)
    return high, low


@triton.jit
def _terms(shifted_high, shifted_low, EXTENDED: tl.constexpr):
    """``exp`` of the shifted values as ``(high, low)`` (low 0 on float32 input)."""
    if EXTENDED:
        return _exp_extended(shifted_high, shifted_low)
    else:
        terms = tl.exp(shifted_high)
        return terms, tl.zeros_like(terms)


@triton.jit
def _rest(terms_high, terms_low, positions, mask, pivot, EXTENDED: tl.constexpr):
    """The sum of the chunk's terms, the pivot left out (compensated where ``EXTENDED``)."""
    keep = mask & (positions[None, :] != pivot[:, None])
    if EXTENDED:
        return tl.reduce((tl.where(keep, terms_high, 0.0), tl.where(keep, terms_low, 0.0)), 1, _add_two_sums)
    else:
        rest = tl.sum(tl.where(keep, terms_high, 0.0), 1)
        return rest, tl.zeros_like(rest)


@triton.jit
def _log_sum(rest_high, rest_low, EXTENDED: tl.constexpr):
    """``log1p(rest)`` as ``(high, low)``: where ``EXTENDED`` one Newton step on
    ``exp(L) = 1 + rest`` through :func:`_exp_extended` (additions only, each
    kept exact), so the result no longer depends on ``log``'s last bits."""
    log_sum = _log1p(rest_high)
    if EXTENDED:
        exp_high, exp_low = _exp_extended(log_sum, tl.zeros_like(log_sum))
        # exp(L) - (1 + rest), exactly but for its last rounding
        difference, error = _two_sum(exp_high, -1.0)
        difference, error_2 = _two_sum(difference, -rest_high)
        residual = difference + (((error + error_2) + exp_low) - rest_low)
        correction = -residual / exp_high
        return _two_sum(log_sum, correction)
    else:
        return log_sum, tl.zeros_like(log_sum)


@triton.jit
def _inverse(rest_high, rest_low, HARDWARE_FMA: tl.constexpr):
    """``1 / (1 + rest)`` as ``(high, low)``, to first order in the low parts."""
    denominator, denominator_low = _two_sum(1.0, rest_high)
    denominator_low = denominator_low + rest_low
    inverse = 1.0 / denominator
    product, error = _two_product(denominator, inverse, HARDWARE_FMA)
    # 1 - product is exact (product is within an ulp of 1)
    return inverse, (((1.0 - product) - error) - denominator_low * inverse) / denominator


@triton.jit
def _store(shifted_high, shifted_low, terms_high, terms_low, offsets, mask, inverse_high, inverse_low,
           log_sum_high, log_sum_low, q_ptr, log_q_ptr,
           WANT_Q: tl.constexpr, WANT_LOG_Q: tl.constexpr, EXTENDED: tl.constexpr, HARDWARE_FMA: tl.constexpr):
    """``q = exp(d) / (1 + rest)`` and ``log_q = d - log1p(rest)`` of the chunk
    (``d = (x - m) / t``): where ``EXTENDED`` from their two-part values, one
    rounding each; else in float64, rounded to float32."""
    if WANT_Q:
        if EXTENDED:
            q, error = _two_product(terms_high, inverse_high[:, None], HARDWARE_FMA)
            q = q + (error + (terms_high * inverse_low[:, None] + terms_low * inverse_high[:, None]))
        else:
            q = terms_high * inverse_high[:, None]
        tl.store(q_ptr + offsets, q.to(q_ptr.dtype.element_ty), mask=mask)
    if WANT_LOG_Q:
        if EXTENDED:
            absent = shifted_high == float("-inf")
            difference, error = _two_sum(tl.where(absent, 0.0, shifted_high), -log_sum_high[:, None])
            low = error + (shifted_low - log_sum_low[:, None])
            log_q = tl.where(absent, shifted_high - log_sum_high[:, None], difference + low)
        else:
            log_q = shifted_high - log_sum_high[:, None]
        tl.store(log_q_ptr + offsets, log_q.to(log_q_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _maximum_and_pivot(x_ptr, first, start, stop, element_stride, slice_valid,
                       BLOCK_S: tl.constexpr, BLOCK_N: tl.constexpr):
    """Pass 1 over positions ``[start, stop)`` of each slice, a chunk at a time:
    the maximum (NaN left out; in the input's dtype), the first index of it
    (``start`` where there is none) and whether a NaN was seen."""
    maximum = tl.full([BLOCK_S], float("-inf"), x_ptr.dtype.element_ty)
    pivot = tl.zeros([BLOCK_S], tl.int32) + start
    nan_seen = tl.zeros([BLOCK_S], tl.int32)
    for chunk in range(start, stop, BLOCK_N):
        values, positions, mask, offsets = _load(x_ptr, first, chunk, stop, element_stride, slice_valid, BLOCK_N)
        ordered = _without_nan(values)
        chunk_maximum = tl.max(ordered, 1)
        higher = chunk_maximum > maximum  # strictly: an earlier chunk's tie stays the pivot
        pivot = tl.where(higher, tl.argmax(ordered, 1) + chunk, pivot)
        maximum = tl.where(higher, chunk_maximum, maximum)
        nan_seen = tl.maximum(nan_seen, tl.max((values != values).to(tl.int32), 1))
    return maximum, pivot, nan_seen


@triton.jit
def _shift_of(maximum, nan_seen):
    """``(maximum, infinite_maximum, shift)`` in float64 from pass 1: the maximum
    NaN where a NaN was seen; the shift 0 where the maximum is infinite (all
    ``-inf``: ``exp`` then gives 0, not NaN; ``+inf``: the ties at ``+inf``
    become 0, see :func:`_shifted`), else the maximum."""
    maximum = tl.where(nan_seen > 0, float("nan"), maximum.to(tl.float64))
    infinite_maximum = maximum == float("inf")
    shift = tl.where((maximum == float("-inf")) | infinite_maximum, 0.0, maximum)
    return maximum, infinite_maximum, shift


@triton.jit
def _temperature(temperature_1, temperature_2, temperature_3, BLOCK_S: tl.constexpr):
    """``t`` in float64 from its three float32 parts, exactly (float arguments are
    float32 in Triton's interpreter whatever their annotation)."""
    return ((tl.zeros([BLOCK_S], tl.float64) + temperature_1) + temperature_2) + temperature_3


@triton.jit
def _sum_without_pivot(x_ptr, first, start, stop, element_stride, slice_valid, pivot, shift, infinite_maximum,
                       temperature, BLOCK_S: tl.constexpr, BLOCK_N: tl.constexpr, TEMPERED: tl.constexpr,
                       EXTENDED: tl.constexpr, HARDWARE_FMA: tl.constexpr):
    """Pass 2 over positions ``[start, stop)``, a chunk at a time: the sum of the
    terms ``exp((x - shift) / t)`` without the pivot, as ``(high, low)``."""
    rest_high = tl.zeros([BLOCK_S], tl.float64)
    rest_low = tl.zeros([BLOCK_S], tl.float64)
    for chunk in range(start, stop, BLOCK_N):
        values, positions, mask, offsets = _load(x_ptr, first, chunk, stop, element_stride, slice_valid, BLOCK_N)
        shifted_high, shifted_low = _shifted(values, shift, infinite_maximum, temperature, TEMPERED, EXTENDED, HARDWARE_FMA)
        terms_high, terms_low = _terms(shifted_high, shifted_low, EXTENDED)
        chunk_high, chunk_low = _rest(terms_high, terms_low, positions, mask, pivot, EXTENDED)
        rest_high, rest_low = _add_two_sums(rest_high, rest_low, chunk_high, chunk_low)
    return rest_high, rest_low


@triton.jit
def _lse(maximum, log_sum_high, log_sum_low, temperature,
         TEMPERED: tl.constexpr, EXTENDED: tl.constexpr, HARDWARE_FMA: tl.constexpr):
    """``lse = m + t log1p(rest)`` in float64 from ``log1p(rest)`` as ``(high, low)``:
    where ``EXTENDED`` rounded once (an infinite or NaN ``m`` is the result itself)."""
    if EXTENDED:
        if TEMPERED:
            scaled, error = _two_product(temperature, log_sum_high, HARDWARE_FMA)
            scaled_low = error + temperature * log_sum_low
        else:
            scaled = log_sum_high
            scaled_low = log_sum_low
        finite = tl.abs(maximum) < float("inf")  # False on NaN too
        lse, error = _two_sum(tl.where(finite, maximum, 0.0), scaled)
        return tl.where(finite, lse + (error + scaled_low), maximum + scaled)
    else:
        if TEMPERED:
            return maximum + temperature * log_sum_high
        else:
            return maximum + log_sum_high


@triton.jit
def _store_outputs(x_ptr, first, start, stop, element_stride, slice_valid, shift, infinite_maximum, temperature,
                   inverse_high, inverse_low, log_sum_high, log_sum_low, q_ptr, log_q_ptr,
                   BLOCK_N: tl.constexpr, TEMPERED: tl.constexpr, EXTENDED: tl.constexpr,
                   HARDWARE_FMA: tl.constexpr, WANT_Q: tl.constexpr, WANT_LOG_Q: tl.constexpr):
    """Pass 3 over positions ``[start, stop)``, a chunk at a time: ``q`` and ``log_q``."""
    for chunk in range(start, stop, BLOCK_N):
        values, positions, mask, offsets = _load(x_ptr, first, chunk, stop, element_stride, slice_valid, BLOCK_N)
        shifted_high, shifted_low = _shifted(values, shift, infinite_maximum, temperature, TEMPERED, EXTENDED, HARDWARE_FMA)
        terms_high = shifted_high  # log_q alone needs no terms
        terms_low = shifted_low
        if WANT_Q:
            terms_high, terms_low = _terms(shifted_high, shifted_low, EXTENDED)
        _store(shifted_high, shifted_low, terms_high, terms_low, offsets, mask, inverse_high, inverse_low,
               log_sum_high, log_sum_low, q_ptr, log_q_ptr, WANT_Q, WANT_LOG_Q, EXTENDED, HARDWARE_FMA)


@triton.jit
def _slice_block(block, slices, n, inner, inner_blocks, ROWS: tl.constexpr, BLOCK_S: tl.constexpr):
    """The slices of block ``block``: each one's first element, its index among
    the reduced outputs and its validity, and the stride along the slices.
    ``ROWS``: ``BLOCK_S`` of the ``slices`` contiguous rows; else ``BLOCK_S``
    neighbouring columns of one ``outer`` of an ``(outer, n, inner)`` array."""
    if ROWS:
        index = block * BLOCK_S + tl.arange(0, BLOCK_S)
        slice_valid = index < slices
        first = index.to(tl.int64) * n
        reduced = index.to(tl.int64)
        element_stride = 1
    else:
        outer = block // inner_blocks
        column = (block % inner_blocks) * BLOCK_S + tl.arange(0, BLOCK_S)
        slice_valid = column < inner
        first = outer.to(tl.int64) * n * inner + column
        reduced = outer.to(tl.int64) * inner + column
        element_stride = inner
    return first, reduced, slice_valid, element_stride


@triton.jit
def _slices_kernel(
    x_ptr,
    lse_ptr,
    q_ptr,
    log_q_ptr,
    slices,
    n,
    inner,
    inner_blocks,
    temperature_1,
    temperature_2,
    temperature_3,
    ROWS: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_N: tl.constexpr,
    ONE_CHUNK: tl.constexpr,
    TEMPERED: tl.constexpr,
    EXTENDED: tl.constexpr,
    HARDWARE_FMA: tl.constexpr,
    WANT_LSE: tl.constexpr,
    WANT_Q: tl.constexpr,
    WANT_LOG_Q: tl.constexpr,
):
    """Reduce ``BLOCK_S`` slices of length ``n``. ``ROWS``: the slices are rows
    (contiguous, ``slices`` of them); else columns of an ``(outer, n, inner)``
    array, a program taking ``BLOCK_S`` neighbouring columns of one ``outer``.
    ``EXTENDED``: float64 input, computed in two-part (double-double) arithmetic.
    ``ONE_CHUNK``: the slices fit one chunk, loaded once for all three passes."""
    first, reduced, slice_valid, element_stride = _slice_block(tl.program_id(0), slices, n, inner, inner_blocks,
                                                               ROWS, BLOCK_S)

    # Pass 1: maximum and pivot (first index of the maximum), NaN noted apart.
    if ONE_CHUNK:
        values, positions, mask, offsets = _load(x_ptr, first, 0, n, element_stride, slice_valid, BLOCK_N)
        ordered = _without_nan(values)
        maximum = tl.max(ordered, 1)
        pivot = tl.argmax(ordered, 1)
        nan_seen = tl.max((values != values).to(tl.int32), 1)
    else:
        maximum, pivot, nan_seen = _maximum_and_pivot(x_ptr, first, 0, n, element_stride, slice_valid, BLOCK_S, BLOCK_N)
    maximum, infinite_maximum, shift = _shift_of(maximum, nan_seen)
    temperature = _temperature(temperature_1, temperature_2, temperature_3, BLOCK_S)

    # Pass 2: the sum without the pivot.
    if ONE_CHUNK:
        shifted_high, shifted_low = _shifted(values, shift, infinite_maximum, temperature, TEMPERED, EXTENDED, HARDWARE_FMA)
        terms_high, terms_low = _terms(shifted_high, shifted_low, EXTENDED)
        rest_high, rest_low = _rest(terms_high, terms_low, positions, mask, pivot, EXTENDED)
    else:
        rest_high, rest_low = _sum_without_pivot(x_ptr, first, 0, n, element_stride, slice_valid, pivot, shift,
                                                 infinite_maximum, temperature, BLOCK_S, BLOCK_N, TEMPERED,
                                                 EXTENDED, HARDWARE_FMA)
    log_sum_high, log_sum_low = _log_sum(rest_high, rest_low, EXTENDED)
    if WANT_LSE:
        lse = _lse(maximum, log_sum_high, log_sum_low, temperature, TEMPERED, EXTENDED, HARDWARE_FMA)
        tl.store(lse_ptr + reduced, lse.to(lse_ptr.dtype.element_ty), mask=slice_valid)

    # Pass 3: the full-size outputs.
    if WANT_Q or WANT_LOG_Q:
        inverse_high, inverse_low = _inverse(rest_high, rest_low, HARDWARE_FMA)
        if ONE_CHUNK:
            _store(shifted_high, shifted_low, terms_high, terms_low, offsets, mask, inverse_high, inverse_low,
                   log_sum_high, log_sum_low, q_ptr, log_q_ptr, WANT_Q, WANT_LOG_Q, EXTENDED, HARDWARE_FMA)
        else:
            _store_outputs(x_ptr, first, 0, n, element_stride, slice_valid, shift, infinite_maximum, temperature,
                           inverse_high, inverse_low, log_sum_high, log_sum_low, q_ptr, log_q_ptr,
                           BLOCK_N, TEMPERED, EXTENDED, HARDWARE_FMA, WANT_Q, WANT_LOG_Q)


# Slices longer than LONGEST_SLICE (rows, and columns along an outer axis):
# each split into segments, one program a segment of a block of slices (one
# row; BLOCK_S neighbouring columns), in two launches (the passes above, each
# over a segment):
# 1. each segment's maximum m_s (NaN where a NaN was seen) and the sum of its
#    terms shifted by its own maximum, its own pivot left out: rest_s;
# 2. the slice's maximum m and the sum without the slice's pivot (every program
#    reduces the slice's segment results itself, in the same order: the same
#    value in each): rest_s of the first segment holding m, plus
#    (1 + rest_s) exp((m_s - m) / t) of every other; then lse (the first
#    segment's program) and the segment's q / log_q.
# The slice is read once to sum it (a segment's second pass hits the cache),
# and a long slice costs two launches and one scratch tensor (each ~5-20 us of
# host time on an H200, where a 10M-element lse takes ~40 us on the GPU).


@triton.jit
def _segment(program, slices, n, inner, inner_blocks, segment_length, segments,
             ROWS: tl.constexpr, BLOCK_S: tl.constexpr):
    """The segment of a program, its positions ``[start, stop)`` and its block of
    slices (:func:`_slice_block`)."""
    segment = program % segments
    start = segment * segment_length
    stop = tl.minimum(start + segment_length, n)
    first, reduced, slice_valid, element_stride = _slice_block(program // segments, slices, n, inner, inner_blocks,
                                                               ROWS, BLOCK_S)
    return segment, start, stop, first, reduced, slice_valid, element_stride


@triton.jit
def _segment_sums_kernel(x_ptr, sums_ptr, slices, n, inner, inner_blocks, segment_length, segments,
                         temperature_1, temperature_2, temperature_3,
                         ROWS: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_N: tl.constexpr, TEMPERED: tl.constexpr,
                         EXTENDED: tl.constexpr, HARDWARE_FMA: tl.constexpr):
    """A program a segment: each slice's ``(m_s, rest_high, rest_low)`` into
    ``sums`` (float64, a slice's segments side by side)."""
    program = tl.program_id(0)
    segment, start, stop, first, reduced, slice_valid, element_stride = _segment(
        program, slices, n, inner, inner_blocks, segment_length, segments, ROWS, BLOCK_S
    )
    maximum, pivot, nan_seen = _maximum_and_pivot(x_ptr, first, start, stop, element_stride, slice_valid,
                                                  BLOCK_S, BLOCK_N)
    maximum, infinite_maximum, shift = _shift_of(maximum, nan_seen)
    temperature = _temperature(temperature_1, temperature_2, temperature_3, BLOCK_S)
    rest_high, rest_low = _sum_without_pivot(x_ptr, first, start, stop, element_stride, slice_valid, pivot, shift,
                                             infinite_maximum, temperature, BLOCK_S, BLOCK_N, TEMPERED, EXTENDED,
                                             HARDWARE_FMA)
    at = 3 * (reduced * segments + segment)
    tl.store(sums_ptr + at, maximum, mask=slice_valid)
    tl.store(sums_ptr + at + 1, rest_high, mask=slice_valid)
    tl.store(sums_ptr + at + 2, rest_low, mask=slice_valid)


@triton.jit
def _slice_sum(sums_ptr, reduced, slice_valid, segments, temperature, BLOCK_SEGMENTS: tl.constexpr,
               TEMPERED: tl.constexpr, EXTENDED: tl.constexpr, HARDWARE_FMA: tl.constexpr):
    """Each slice's ``(maximum, infinite_maximum, shift)`` (as :func:`_shift_of`'s)
    and its sum without the pivot as ``(high, low)``, from its segments'
    (:func:`_segment_sums_kernel`). Every other segment's ``1 + rest_s`` is
    scaled by ``exp((m_s - m) / t)``, the shift of its maximum computed as the
    entries' (:func:`_shifted`: ``+inf`` maxima and absent segments too)."""
    index = tl.arange(0, BLOCK_SEGMENTS)
    mask = slice_valid[:, None] & (index < segments)[None, :]
    at = 3 * (reduced[:, None] * segments + index[None, :])
    maxima = tl.load(sums_ptr + at, mask=mask, other=float("-inf"))
    rest_high = tl.load(sums_ptr + at + 1, mask=mask, other=0.0)
    rest_low = tl.load(sums_ptr + at + 2, mask=mask, other=0.0)
    ordered = _without_nan(maxima)
    best = tl.argmax(ordered, 1)  # the first on ties: it holds the slice's pivot
    nan_seen = tl.max((maxima != maxima).to(tl.int32), 1)
    maximum, infinite_maximum, shift = _shift_of(tl.max(ordered, 1), nan_seen)
    shifted_high, shifted_low = _shifted(maxima, shift, infinite_maximum, temperature, TEMPERED, EXTENDED, HARDWARE_FMA)
    scale_high, scale_low = _terms(shifted_high, shifted_low, EXTENDED)
    is_best = index[None, :] == best[:, None]
    if EXTENDED:
        whole_high, whole_low = _two_sum(1.0, rest_high)
        whole_low = whole_low + rest_low
        scaled_high, scaled_low = _two_product(whole_high, scale_high, HARDWARE_FMA)
        scaled_low = scaled_low + (whole_high * scale_low + whole_low * scale_high)
        total_high, total_low = tl.reduce((tl.where(is_best, rest_high, scaled_high),
                                           tl.where(is_best, rest_low, scaled_low)), 1, _add_two_sums)
    else:
        total_high = tl.sum(tl.where(is_best, rest_high, (1.0 + rest_high) * scale_high), 1)
        total_low = tl.zeros_like(total_high)
    return maximum, infinite_maximum, shift, total_high, total_low


@triton.jit
def _segment_outputs_kernel(x_ptr, sums_ptr, lse_ptr, q_ptr, log_q_ptr,
                            slices, n, inner, inner_blocks, segment_length, segments,
                            temperature_1, temperature_2, temperature_3,
                            ROWS: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_SEGMENTS: tl.constexpr,
                            BLOCK_N: tl.constexpr, TEMPERED: tl.constexpr,
                            EXTENDED: tl.constexpr, HARDWARE_FMA: tl.constexpr,
                            WANT_LSE: tl.constexpr, WANT_Q: tl.constexpr, WANT_LOG_Q: tl.constexpr):
    """A program a segment where ``q`` or ``log_q`` is asked for, else a program a block of slices."""
    program = tl.program_id(0)
    if not (WANT_Q or WANT_LOG_Q):
        program = program * segments
    segment, start, stop, first, reduced, slice_valid, element_stride = _segment(
        program, slices, n, inner, inner_blocks, segment_length, segments, ROWS, BLOCK_S
    )
    temperature = _temperature(temperature_1, temperature_2, temperature_3, BLOCK_S)
    maximum, infinite_maximum, shift, rest_high, rest_low = _slice_sum(
        sums_ptr, reduced, slice_valid, segments, temperature, BLOCK_SEGMENTS, TEMPERED, EXTENDED, HARDWARE_FMA
    )
    log_sum_high, log_sum_low = _log_sum(rest_high, rest_low, EXTENDED)
    if WANT_LSE:
        lse = _lse(maximum, log_sum_high, log_sum_low, temperature, TEMPERED, EXTENDED, HARDWARE_FMA)
        # each slice's lse from one program, its first segment's
        first_segment = tl.zeros([BLOCK_S], tl.int32) + segment == 0
        tl.store(lse_ptr + reduced, lse.to(lse_ptr.dtype.element_ty), mask=slice_valid & first_segment)
    if WANT_Q or WANT_LOG_Q:
        inverse_high, inverse_low = _inverse(rest_high, rest_low, HARDWARE_FMA)
        _store_outputs(x_ptr, first, start, stop, element_stride, slice_valid, shift, infinite_maximum, temperature,
                       inverse_high, inverse_low, log_sum_high, log_sum_low, q_ptr, log_q_ptr,
                       BLOCK_N, TEMPERED, EXTENDED, HARDWARE_FMA, WANT_Q, WANT_LOG_Q)


#: Whether Triton's interpreter runs the kernel (``TRITON_INTERPRET=1`` at import).
_INTERPRETED = type(_slices_kernel).__name__ == "InterpretedFunction"


def _power_of_two_at_least(value: int) -> int:
    return 1 << max(0, (value - 1).bit_length())


#: Programs below which the columns are split into blocks of 16 rather than 32
#: (about two per multiprocessor on the H100 and H200: 132 of them).
_ENOUGH_PROGRAMS = 264


@functools.lru_cache(maxsize=64)
def _float32_parts(value: float) -> tuple[float, float, float]:
    """Three float32 numbers that add up to ``value`` exactly (1e-30 < value < 1e30)."""
    first = float(np.float32(value))
    second = float(np.float32(value - first))
    return first, second, float(np.float32(value - first - second))


#: Compiled kernels by what Triton compiled them for (:func:`_run`).
_COMPILED: dict[tuple[Any, ...], Any] = {}

#: Switch for :func:`_run`'s direct launch of a compiled kernel (off: every call
#: through ``JITFunction.run``).
FAST_LAUNCH = True


class Launch(NamedTuple):
    """One launch of a kernel, without its tensors: what Triton compiles it for
    (``constants``, ``options``) and how many programs run it. ``scalars`` are
    the integer and float arguments that follow the tensors; :func:`plan_slices`
    and :func:`plan_segments` make them, ``conformance.triton_compile`` compiles
    them for GPUs this machine may not have."""

    function: Any
    grid: tuple[int, int, int]
    scalars: tuple[Any, ...]
    constants: dict[str, Any]
    options: dict[str, Any]
    #: What Triton specializes on, of all this (:func:`_run`), made once.
    key: tuple[Any, ...]


def _launch(function: Any, grid: tuple[int, int, int], scalars: tuple[Any, ...], constants: dict[str, Any],
            options: dict[str, Any]) -> Launch:
    key = (
        function,
        tuple(constants.values()),
        tuple(options.values()),
        tuple((value == 1, value % 16 == 0) for value in scalars if isinstance(value, int)),
    )
    return Launch(function, grid, scalars, constants, options, key)


def _run(plan: Launch, tensors: tuple[Any, ...]) -> None:
    """Launch ``plan`` on ``tensors`` (its pointer arguments, in order).
    ``JITFunction.run`` binds and specializes the arguments on every call; the
    kernel it compiled is kept here under a key holding all it was specialized
    on (the kernel, constants and options, the device, and for each integer
    whether it is 1 or a multiple of 16, for each tensor whether its address is
    16-byte aligned: Triton's specializations, or finer) and then launched
    directly (``CompiledKernel[grid](*arguments)``, Triton's own API for
    compiled kernels): on an H200, :func:`launch` at 16 elements 26.9 -> 19.2
    us, ``smoothmax.softmax`` 37.0 -> 26.1 us (``torch.softmax`` 9.6)."""
    arguments = tensors + plan.scalars
    if _INTERPRETED or not FAST_LAUNCH:
        plan.function[plan.grid](*arguments, **plan.constants, **plan.options)
        return
    key = (
        plan.key,
        tensors[0].device.index,
        tensors[0].dtype,
        tuple(tensor.data_ptr() % 16 == 0 for tensor in tensors),
    )
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = plan.function[plan.grid](*arguments, **plan.constants, **plan.options)
        if compiled is not None:
            _COMPILED[key] = compiled
    else:
        compiled[plan.grid](*arguments, *plan.constants.values())


def plan_slices(
    shape: tuple[int, ...],
    axis: int,
    extended: bool,
    temperature: float,
    outputs: tuple[str, ...],
    tile: int | None = None,
    num_warps: int | None = None,
) -> Launch:
    """The launch of :func:`_slices_kernel` for an input of ``shape`` (float64
    where ``extended``, else float32) along ``axis``; ``tile`` and ``num_warps``
    as in :func:`launch`. Kept for the next call of the same kind: small calls
    are bound by what a launch costs on the host."""
    return _plan_slices(tuple(shape), axis, extended, temperature, outputs, tile, num_warps, not _INTERPRETED)


@functools.lru_cache(maxsize=1024)
def _plan_slices(
    shape: tuple[int, ...],
    axis: int,
    extended: bool,
    temperature: float,
    outputs: tuple[str, ...],
    tile: int | None,
    num_warps: int | None,
    hardware_fma: bool,
) -> Launch:
    n = shape[axis]
    inner = math.prod(shape[axis + 1 :])
    outer = math.prod(shape[:axis])
    if inner == 1:  # rows
        block_n = _row_chunk(n, extended, tile)
        block_s = min(max(1, min(ROW_ELEMENTS, tile or ROW_ELEMENTS) // block_n), _power_of_two_at_least(outer))
        programs = -(-outer // block_s)
        inner_blocks = 1
        warps = 4 if block_s * block_n >= 1024 else max(1, block_s * block_n // 256)
    else:
        block_s, block_n, warps = _column_blocks(n, inner, outer, tile)
        inner_blocks = -(-inner // block_s)
        programs = outer * inner_blocks
    constants = {
        "ROWS": inner == 1,
        "BLOCK_S": block_s,
        "BLOCK_N": block_n,
        "ONE_CHUNK": n <= block_n,
        **_arithmetic(temperature, extended, hardware_fma),
        **_wanted(outputs),
    }
    scalars = (outer, n, inner, inner_blocks, *_float32_parts(temperature))
    return _launch(_slices_kernel, (programs, 1, 1), scalars, constants, _options(num_warps or warps, extended))


def _column_blocks(n: int, inner: int, outer: int, tile: int | None) -> tuple[int, int, int]:
    """Columns a program takes, elements of each at once, and warps: neighbours
    in memory side by side, loads of 64-128 bytes."""
    block_s = min(_power_of_two_at_least(inner), 32)
    if outer * -(-inner // block_s) < _ENOUGH_PROGRAMS:
        block_s = min(block_s, 16)
    block_n = min(_power_of_two_at_least(n), max(1, (tile or COLUMN_ELEMENTS) // block_s))
    return block_s, block_n, max(1, min(8, block_s * block_n // 512))


def _row_chunk(n: int, extended: bool, tile: int | None) -> int:
    """Elements of a row a program holds at once (``tile`` bounds it where given)."""
    return min(_power_of_two_at_least(n), tile or ROW_CHUNK["float64" if extended else "float32"])


def _arithmetic(temperature: float, extended: bool, hardware_fma: bool) -> dict[str, bool]:
    return {"TEMPERED": temperature != 1.0, "EXTENDED": extended, "HARDWARE_FMA": hardware_fma}


def _wanted(outputs: tuple[str, ...]) -> dict[str, bool]:
    return {"WANT_LSE": "lse" in outputs, "WANT_Q": "q" in outputs, "WANT_LOG_Q": "log_q" in outputs}


def _options(num_warps: int, extended: bool) -> dict[str, Any]:
    # the two-part arithmetic relies on each product and sum rounded apart
    return {"num_warps": num_warps, "enable_fp_fusion": not extended}


#: Slices split into segments (:func:`plan_segments`): about this many
#: programs in all, segments of at least ``_SHORTEST_SEGMENT`` elements (a
#: block of columns' together), at most ``_MOST_SEGMENTS`` segment results a
#: block of slices (each program reads all of its block's). From a sweep on an
#: H200 (``benchmarks.cuda_segments``, 10M elements, 130-1024 segments, 4-16
#: warps): float64 ``lse`` 125 -> 104 us and ``q`` 216 -> 186 us at ~1000
#: segments of 10 240 rather than ~540 of 18 432; float32 the same from 245 to
#: 814 segments (bound by the host's launches).
_SEGMENT_PROGRAMS = 1024
_SHORTEST_SEGMENT = 1 << 13
_MOST_SEGMENTS = 1024

#: Longest slice the segments take: positions are 32-bit, a chunk past the end included.
LONGEST_SPLIT_SLICE = (1 << 31) - (1 << 16)


def plan_segments(
    shape: tuple[int, ...],
    axis: int,
    extended: bool,
    temperature: float,
    outputs: tuple[str, ...],
    segment_length: int | None = None,
    tile: int | None = None,
    num_warps: int | None = None,
) -> tuple[Launch, Launch]:
    """The two launches that reduce the slices of an input of ``shape`` along
    ``axis`` split into segments (:func:`_segment_sums_kernel`,
    :func:`_segment_outputs_kernel`); ``segment_length`` (rounded up to a
    multiple of the chunk), ``tile`` and ``num_warps`` replace the choices below
    (tests make the first two small, ``benchmarks.cuda_segments`` varies them).
    Kept for the next call of the same kind, as :func:`plan_slices`'s."""
    return _plan_segments(tuple(shape), axis, extended, temperature, tuple(outputs), segment_length, tile, num_warps,
                          not _INTERPRETED)


@functools.lru_cache(maxsize=256)
def _plan_segments(
    shape: tuple[int, ...],
    axis: int,
    extended: bool,
    temperature: float,
    outputs: tuple[str, ...],
    segment_length: int | None,
    tile: int | None,
    num_warps: int | None,
    hardware_fma: bool,
) -> tuple[Launch, Launch]:
    n = shape[axis]
    inner = math.prod(shape[axis + 1 :])
    outer = math.prod(shape[:axis])
    if inner == 1:  # a row a block
        block_s, block_n = 1, _row_chunk(n, extended, tile)
        # 8 warps from chunks of 2048: at 4 the compiler spilled (cuobjdump of
        # sm_90 cubins, conformance.triton_compile)
        warps = 8 if block_n >= 2048 else max(1, block_n // 256)
    else:
        block_s, block_n, warps = _column_blocks(n, inner, outer, tile)
    inner_blocks = -(-inner // block_s)
    blocks = outer * inner_blocks
    # a program combines its block's segment results at once: at most
    # _MOST_SEGMENTS in all (16 columns of 256 spilled up to 512 bytes in float64)
    most = _MOST_SEGMENTS // block_s
    if segment_length is None:
        segments = max(1, min(most, -(-_SEGMENT_PROGRAMS // blocks), n * block_s // _SHORTEST_SEGMENT))
        segment_length = -(-n // segments)
    segment_length = -(-segment_length // block_n) * block_n
    segments = -(-n // segment_length)
    if segments > most:
        raise ValueError(f"segment_length={segment_length} splits slices of {n} into more than {most} segments")
    programs = blocks * segments
    options = _options(num_warps or warps, extended)
    constants = {"ROWS": inner == 1, "BLOCK_S": block_s}
    arithmetic = _arithmetic(temperature, extended, hardware_fma)
    scalars = (outer, n, inner, inner_blocks, segment_length, segments, *_float32_parts(temperature))
    full_size = "q" in outputs or "log_q" in outputs
    return (
        _launch(_segment_sums_kernel, (programs, 1, 1), scalars, {**constants, "BLOCK_N": block_n, **arithmetic},
                options),
        _launch(
            _segment_outputs_kernel,
            (programs if full_size else blocks, 1, 1),
            scalars,
            {**constants, "BLOCK_SEGMENTS": _power_of_two_at_least(segments), "BLOCK_N": block_n, **arithmetic,
             **_wanted(outputs)},
            options,
        ),
    )


def launch(
    x: Any,
    axis: int,
    temperature: float,
    outputs: tuple[str, ...],
    tile: int | None = None,
    num_warps: int | None = None,
    segment_length: int | None = None,
) -> tuple[Any, ...]:
    """Run the kernel on contiguous ``x`` (float32 or float64, ``n >= 1``) along
    ``axis``: the named ``outputs`` (``lse`` keepdims). No checks of the device:
    Triton's interpreter runs it on CPU tensors. Slices longer than
    :data:`LONGEST_SLICE` (or any, where ``segment_length`` is given) are
    split into segments (:func:`plan_segments`), other slices one program a
    block of them (:func:`plan_slices`). ``tile`` (a power of two), where given,
    bounds the elements a program holds at once (tests make it small to run the
    chunked loops), and ``num_warps`` replaces the plans' choice (a
    tuning run varies it, and ``segment_length``)."""
    import torch

    extended = x.dtype == torch.float64
    n = x.shape[axis]
    lse = torch.empty(x.shape[:axis] + (1,) + x.shape[axis + 1 :], dtype=x.dtype, device=x.device) if "lse" in outputs else None
    q = torch.empty_like(x) if "q" in outputs else None
    log_q = torch.empty_like(x) if "log_q" in outputs else None
    # unused pointers: any tensor
    results = tuple(x if value is None else value for value in (lse, q, log_q))
    if n > LONGEST_SLICE or segment_length is not None:
        sums, outputs_step = plan_segments(x.shape, axis, extended, temperature, outputs, segment_length, tile,
                                           num_warps)
        segments = sums.scalars[5]
        segment_sums = torch.empty((x.numel() // n, segments, 3), dtype=torch.float64, device=x.device)
        _run(sums, (x, segment_sums))
        _run(outputs_step, (x, segment_sums) + results)
    else:
        _run(plan_slices(x.shape, axis, extended, temperature, outputs, tile, num_warps), (x,) + results)
    named = {"lse": lse, "q": q, "log_q": log_q}
    return tuple(named[name] for name in outputs)


def kernel(x: Any, axis: int, temperature: float, outputs: tuple[str, ...]) -> tuple[Any, ...] | None:
    """The kernel's ``outputs`` for a CUDA tensor ``x`` along ``axis``, or None
    where this path does not apply (the caller runs the generic kernel)."""
    import torch

    n = x.shape[axis]
    if (
        x.dtype not in (torch.float32, torch.float64)
        or not OUTPUTS.issuperset(outputs)
        or not 1e-30 < temperature < 1e30  # t as three float32 parts (_float32_parts)
        or not 0 < n <= LONGEST_SPLIT_SLICE
        or x.numel() == 0
        or type(x) not in (torch.Tensor, torch.nn.Parameter)  # a subclass must see its ops
        or x.is_neg()
    ):
        return None
    x = x.contiguous()
    if x.device.index is not None and x.device.index != torch.cuda.current_device():
        with torch.cuda.device(x.device):
            return launch(x, axis, temperature, outputs)
    return launch(x, axis, temperature, outputs)
