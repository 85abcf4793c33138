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

Only plain contiguous float32/float64 CUDA tensors (NVIDIA: ROCm builds keep
the generic kernel, see ``_fastpaths._cuda_module``), ``t > 0``, the outputs
``lse``/``q``/``log_q`` and slices up to :data:`LONGEST_SLICE` take this path
(:func:`kernel` returns None elsewhere and the generic kernel runs); the caller
runs it where no gradient is recorded (the adapter's derivative rules read
``q``, which this kernel returns too). Triton is imported only when a CUDA
tensor arrives. Its interpreter (``TRITON_INTERPRET=1``) runs the same kernel on
CPU tensors, which is how the test suite checks it on machines without a GPU
(:func:`launch`).
"""

# No ``from __future__ import annotations``: Triton reads the kernel's parameter
# annotations (``tl.float64``, ``tl.constexpr``) as objects.

import functools
import math
from typing import Any

import numpy as np
import triton
import triton.language as tl

#: Slices longer than this take the generic kernel: one program reduces a
#: slice, and a single long row would keep one multiprocessor busy alone.
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
    ``EXTENDED``: float64 input, computed in two-part (double-double) arithmetic."""
    program = tl.program_id(0)
    if ROWS:
        index = program * BLOCK_S + tl.arange(0, BLOCK_S)
        slice_valid = index < slices
        first = index.to(tl.int64) * n
        reduced = index.to(tl.int64)
        element_stride = 1
    else:
        outer = program // inner_blocks
        column = (program % inner_blocks) * BLOCK_S + tl.arange(0, BLOCK_S)
        slice_valid = column < inner
        first = outer.to(tl.int64) * n * inner + column
        reduced = outer.to(tl.int64) * inner + column
        element_stride = inner

    # Pass 1: maximum and pivot (first index of the maximum), NaN noted apart.
    if ONE_CHUNK:
        values, positions, mask, offsets = _load(x_ptr, first, 0, n, element_stride, slice_valid, BLOCK_N)
        ordered = _without_nan(values)
        maximum = tl.max(ordered, 1)
        pivot = tl.argmax(ordered, 1)
        nan_seen = tl.max((values != values).to(tl.int32), 1)
    else:
        maximum = tl.full([BLOCK_S], float("-inf"), x_ptr.dtype.element_ty)
        pivot = tl.zeros([BLOCK_S], tl.int32)
        nan_seen = tl.zeros([BLOCK_S], tl.int32)
        for start in range(0, n, BLOCK_N):
            values, positions, mask, offsets = _load(x_ptr, first, start, n, element_stride, slice_valid, BLOCK_N)
            ordered = _without_nan(values)
            chunk_maximum = tl.max(ordered, 1)
            higher = chunk_maximum > maximum  # strictly: the first chunk's tie stays the pivot
            pivot = tl.where(higher, tl.argmax(ordered, 1) + start, pivot)
            maximum = tl.where(higher, chunk_maximum, maximum)
            nan_seen = tl.maximum(nan_seen, tl.max((values != values).to(tl.int32), 1))

    maximum = tl.where(nan_seen > 0, float("nan"), maximum.to(tl.float64))
    infinite_maximum = maximum == float("inf")
    # all -inf: shift 0, so exp gives 0 and not NaN; +inf: the ties at +inf are 0
    shift = tl.where((maximum == float("-inf")) | infinite_maximum, 0.0, maximum)

    # t from three float32 parts, exactly (float arguments are float32 in
    # Triton's interpreter whatever their annotation)
    temperature = ((tl.zeros([BLOCK_S], tl.float64) + temperature_1) + temperature_2) + temperature_3

    # Pass 2: the sum without the pivot.
    if ONE_CHUNK:
        shifted_high, shifted_low = _shifted(values, shift, infinite_maximum, temperature, TEMPERED, EXTENDED, HARDWARE_FMA)
        terms_high, terms_low = _terms(shifted_high, shifted_low, EXTENDED)
        rest_high, rest_low = _rest(terms_high, terms_low, positions, mask, pivot, EXTENDED)
    else:
        rest_high = tl.zeros([BLOCK_S], tl.float64)
        rest_low = tl.zeros([BLOCK_S], tl.float64)
        for start in range(0, n, BLOCK_N):
            values, positions, mask, offsets = _load(x_ptr, first, start, n, element_stride, slice_valid, BLOCK_N)
            shifted_high, shifted_low = _shifted(values, shift, infinite_maximum, temperature, TEMPERED, EXTENDED, HARDWARE_FMA)
            terms_high, terms_low = _terms(shifted_high, shifted_low, EXTENDED)
            chunk_high, chunk_low = _rest(terms_high, terms_low, positions, mask, pivot, EXTENDED)
            rest_high, rest_low = _add_two_sums(rest_high, rest_low, chunk_high, chunk_low)
    log_sum_high, log_sum_low = _log_sum(rest_high, rest_low, EXTENDED)

    if WANT_LSE:
        if EXTENDED:
            if TEMPERED:
                scaled, error = _two_product(temperature, log_sum_high, HARDWARE_FMA)
                scaled_low = error + temperature * log_sum_low
            else:
                scaled = log_sum_high
                scaled_low = log_sum_low
            # m + t L rounded once; an infinite or NaN m is the result itself
            finite = tl.abs(maximum) < float("inf")  # False on NaN too
            lse, error = _two_sum(tl.where(finite, maximum, 0.0), scaled)
            lse = tl.where(finite, lse + (error + scaled_low), maximum + scaled)
        else:
            if TEMPERED:
                lse = maximum + temperature * log_sum_high
            else:
                lse = maximum + log_sum_high
        tl.store(lse_ptr + reduced, lse.to(lse_ptr.dtype.element_ty), mask=slice_valid)

    # Pass 3: the full-size outputs.
    if WANT_Q or WANT_LOG_Q:
        inverse_high, inverse_low = _inverse(rest_high, rest_low, HARDWARE_FMA)
        if ONE_CHUNK:
            _store(shifted_high, shifted_low, terms_high, terms_low, offsets, mask, inverse_high, inverse_low,
                   log_sum_high, log_sum_low, q_ptr, log_q_ptr, WANT_Q, WANT_LOG_Q, EXTENDED, HARDWARE_FMA)
        else:
            for start in range(0, n, BLOCK_N):
                values, positions, mask, offsets = _load(x_ptr, first, start, n, element_stride, slice_valid, BLOCK_N)
                shifted_high, shifted_low = _shifted(
                    values, shift, infinite_maximum, temperature, TEMPERED, EXTENDED, HARDWARE_FMA
                )
                terms_high = shifted_high  # log_q alone needs no terms
                terms_low = shifted_low
                if WANT_Q:
                    terms_high, terms_low = _terms(shifted_high, shifted_low, EXTENDED)
                _store(shifted_high, shifted_low, terms_high, terms_low, offsets, mask, inverse_high, inverse_low,
                       log_sum_high, log_sum_low, q_ptr, log_q_ptr, WANT_Q, WANT_LOG_Q, EXTENDED, HARDWARE_FMA)


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

_CONSTANT_NAMES = ("ROWS", "BLOCK_S", "BLOCK_N", "ONE_CHUNK", "TEMPERED", "EXTENDED", "HARDWARE_FMA",
                   "WANT_LSE", "WANT_Q", "WANT_LOG_Q")


def _run(grid: tuple[int, int, int], arguments: tuple[Any, ...], constants: tuple[Any, ...], options: dict) -> None:
    """Launch :func:`_slices_kernel`. ``JITFunction.run`` binds and specializes
    the arguments on every call; the kernel it compiled is kept here under a key holding all it
    was specialized on (the constants and options, the device, and for each
    integer whether it is 1 or a multiple of 16, for each tensor whether its
    address is 16-byte aligned: Triton's specializations, or finer) and then
    launched directly (``CompiledKernel[grid](*arguments)``, Triton's own API for
    compiled kernels): on an H200, :func:`launch` at 16 elements 26.9 -> 19.2 us,
    ``smoothmax.softmax`` 37.0 -> 26.1 us (``torch.softmax`` 9.6)."""
    if _INTERPRETED or not FAST_LAUNCH:
        _slices_kernel[grid](*arguments, **dict(zip(_CONSTANT_NAMES, constants)), **options)
        return
    tensors, integers = arguments[:4], arguments[4:8]
    key = (
        tensors[0].device.index,
        tensors[0].dtype,
        constants,
        tuple(options.values()),
        tuple((value == 1, value % 16 == 0) for value in integers),
        tuple(tensor.data_ptr() % 16 == 0 for tensor in tensors),
    )
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _slices_kernel[grid](*arguments, **dict(zip(_CONSTANT_NAMES, constants)), **options)
        if compiled is not None:
            _COMPILED[key] = compiled
    else:
        compiled[grid](*arguments, *constants)


def launch(
    x: Any, axis: int, temperature: float, outputs: tuple[str, ...], tile: int | None = None, num_warps: int | None = None
) -> tuple[Any, ...]:
    """Run the kernel on contiguous ``x`` (float32 or float64, ``n >= 1``) along
    ``axis``: the named ``outputs`` (``lse`` keepdims). No checks of the device:
    Triton's interpreter runs it on CPU tensors. ``tile`` (a power of two), where
    given, bounds the elements a program holds at once (tests make it small to run
    the chunked loops), and ``num_warps`` replaces the choice above (a tuning run
    varies both)."""
    import torch

    extended = x.dtype == torch.float64
    n = x.shape[axis]
    inner = math.prod(x.shape[axis + 1 :])
    outer = math.prod(x.shape[:axis])
    lse = torch.empty(x.shape[:axis] + (1,) + x.shape[axis + 1 :], dtype=x.dtype, device=x.device) if "lse" in outputs else None
    q = torch.empty_like(x) if "q" in outputs else None
    log_q = torch.empty_like(x) if "log_q" in outputs else None
    if inner == 1:  # rows
        block_n = min(_power_of_two_at_least(n), tile or ROW_CHUNK["float64" if extended else "float32"])
        block_s = min(max(1, min(ROW_ELEMENTS, tile or ROW_ELEMENTS) // block_n), _power_of_two_at_least(outer))
        programs = -(-outer // block_s)
        inner_blocks = 1
        warps = 4 if block_s * block_n >= 1024 else max(1, block_s * block_n // 256)
    else:  # columns: neighbours in memory side by side, loads of 64-128 bytes
        block_s = min(_power_of_two_at_least(inner), 32)
        if outer * -(-inner // block_s) < _ENOUGH_PROGRAMS:
            block_s = min(block_s, 16)
        block_n = min(_power_of_two_at_least(n), max(1, (tile or COLUMN_ELEMENTS) // block_s))
        inner_blocks = -(-inner // block_s)
        programs = outer * inner_blocks
        warps = max(1, min(8, block_s * block_n // 512))
    arguments = (
        x,
        lse if lse is not None else x,  # unused pointers: any tensor
        q if q is not None else x,
        log_q if log_q is not None else x,
        outer,
        n,
        inner,
        inner_blocks,
        *_float32_parts(temperature),
    )
    constants = (
        inner == 1,  # ROWS
        block_s,
        block_n,
        n <= block_n,  # ONE_CHUNK
        temperature != 1.0,  # TEMPERED
        extended,
        not _INTERPRETED,  # HARDWARE_FMA
        lse is not None,
        q is not None,
        log_q is not None,
    )
    # the two-part arithmetic relies on each product and sum rounded apart
    options = {"num_warps": num_warps or warps, "enable_fp_fusion": not extended}
    _run((programs, 1, 1), arguments, constants, options)
    named = {"lse": lse, "q": q, "log_q": log_q}
    return tuple(named[name] for name in outputs)


def kernel(x: Any, axis: int, temperature: float, outputs: tuple[str, ...]) -> tuple[Any, ...] | None:
    """The kernel's ``outputs`` for a CUDA tensor ``x`` along ``axis``, or None
    where this path does not apply (the caller runs the generic kernel)."""
    import torch

    if (
        x.dtype not in (torch.float32, torch.float64)
        or not OUTPUTS.issuperset(outputs)
        or not 1e-30 < temperature < 1e30  # t as three float32 parts (_float32_parts)
        or not 0 < x.shape[axis] <= LONGEST_SLICE
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
