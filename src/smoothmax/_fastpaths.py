"""Backend-specific fast paths: the one place where smoothmax leaves the generic kernel.

Every function here has the signature of :func:`smoothmax._kernel.kernel`
(``xp, x, weights, axis, temperature, outputs``) and returns the generic
kernel's results: bitwise on NumPy and PyTorch (but for PyTorch's ``lse`` alone
on small and large inputs, and ``q`` with several threads: see below), and on JAX up to
one block (under ``jit``, as ``_jax`` runs it; up to one ulp in ``log_q`` at ``t != 1``;
JAX sums several ties, larger arrays and outer axes in another order, see below);
``tests/test_fastpaths.py`` checks each backend on the special values and on
random inputs. A fast path only takes the common
case (no weights, ``temperature > 0``, outputs ``lse``/``sign``/``q``/``log_q``,
finite maxima, one arg-max per slice; JAX's takes ties and non-finite maxima
too) and hands everything else, as a whole or per block, to the generic kernel. The pivot trick stays: the sum always
excludes exactly the one pivot term ``exp(0) = 1`` (but for PyTorch's large
``lse`` alone on slices whose result cannot be near 0, see below).

What the fast paths change is mostly how the same numbers are computed:

* NumPy: one scratch buffer of ~256 KiB reused across cache-sized blocks,
  in-place ufuncs, the pivot zeroed by index instead of a full ``where`` pass,
  the ``+inf``/``-inf`` fix-ups skipped when the (small) array of maxima is
  finite. Blocks follow the generic kernel's summation order (``np.sum``'s
  pairwise sum along a contiguous axis; along an outer axis, which ``np.sum``
  adds row after row, the generic kernel's own pairwise folds,
  :func:`smoothmax._kernel.pairwise_sum`, done in place within each block),
  so sums are bitwise those of the generic kernel over the whole array.
* PyTorch (CPU, eager, float32/float64, contiguous): ``x - m`` exponentiated
  in place and ``q`` divided in place, one full-size buffer where possible
  (fresh buffers cost page faults, more than a pass); an outer axis summed
  with the generic kernel's pairwise folds, in place (:func:`_torch_axis_sum`).
  ``lse`` alone of up to ``_TORCH_NUMPY_LSE_ELEMENTS`` elements along the last
  axis is NumPy's (above) on the tensor's memory, within 2 ulp of PyTorch's
  (each torch op costs ~1.5 us of dispatch, a ufunc ~0.5). Otherwise up to ``_TORCH_SMALL``
  elements the pivot comes from ``torch.max``'s index and is zeroed with
  ``scatter_``. Above, where index-returning reductions and boolean masks are
  many times slower than arithmetic on CPU, ``frac`` turns the pivot's
  ``exp(0) = 1`` into 0 (in place, or for ``q`` along the last axis into a
  block-sized scratch: with several threads those row sums may differ from the
  generic kernel's in the last bits), the ones checked to be one per slice by
  a rounding bound or, on long slices, counted; failing that
  ``-sum(exp(d) * sign(d))`` with ``d = x - m`` is the sum without the ties,
  and a slice with more than one tie sends the call to the generic kernel.
  ``log_q`` alone recomputes ``d`` into the buffer ``exp(d)`` took. ``lse``
  alone at ``t = 1`` above ``_TORCH_SMALL`` elements is ``m + log(S)`` with the
  pivot's 1 inside the sum ``S`` on slices with ``S >= 4`` (no result near 0
  to guard there: within one ulp of the generic kernel), saving
  the pass that removes the pivot; the other slices, copied out where they are
  few, take the exact path. The adapter's backward uses PyTorch's fused softmax
  and log-softmax backward kernels where only ``softmax``/``log_softmax`` have
  cotangents.
* JAX: no ``argmax``, no gather, no full-size pivot mask. Up to 2 MiB the
  sum leaves out every tie of the maximum, the ties are counted and their
  exact 1s added after it, the fix-ups of non-finite maxima inline. Above,
  one plain ``sum(exp(x - m))`` with the ties in it (what XLA runs fastest,
  on every core): the sum without the pivot is that sum less 1, and slices
  below 2 (one tie, maybe one dominant term) are summed again without the pivot
  in a ``lax.cond`` branch taken only where there are such slices that need it
  (all of them for ``q`` and ``log_q``; for ``lse`` alone those whose ``lse`` is
  below 16 t, where the sum's rounding may reach it); ``+inf`` maxima take the same
  formulas on ``x`` with their ``+inf`` entries set to 0 and the rest to
  ``-inf``, in a branch of their own.
  Under ``jit`` XLA compiles the two programs separately; ``log_q`` at
  ``t != 1`` may differ by one ulp.
* PyTorch on CUDA, where Triton is installed: one Triton kernel a call
  (:mod:`smoothmax._cuda`, imported at the first CUDA tensor) for ``lse``/``q``/
  ``log_q`` of slices up to 65 536 long, longer ones split into segments in
  two launches; not bitwise the generic kernel but
  more accurate (float32 computed in float64, float64 in two-part arithmetic:
  within one ulp of mpmath). The rest takes the generic kernel.
* Entry points (:data:`ENTRIES`): ``logsumexp``/``softmax``/``log_softmax``
  called with a float32/float64 NumPy array or tensor and only ``axis`` (an
  int, or None on 1-d input) and ``keepdims`` go straight to the kernel after
  one dict lookup on the array's type, skipping ``prepare``.

Set ``SMOOTHMAX_FASTPATHS=0`` in the environment, or :data:`ENABLED` to
``False``, to run the generic kernel everywhere. PyTorch's full-size buffers
from 32 MiB are advised to the kernel as huge-page memory (Linux, as NumPy
does for its own arrays; :func:`_torch_empty`):
``SMOOTHMAX_MADVISE_HUGEPAGE=0`` leaves them to the kernel's defaults, as
``NUMPY_MADVISE_HUGEPAGE=0`` does NumPy's.
"""

from __future__ import annotations

import functools
import math
import mmap
import os
import platform
import re
import sys
from typing import Any

import numpy as np
from array_api_compat import is_lazy_array

from . import _kernel, _refine


def _switched_on(variable: str) -> bool:
    """Whether the environment leaves ``variable`` on (unset, or not 0/false/no/off)."""
    return os.environ.get(variable, "1").strip().lower() not in ("0", "false", "no", "off")


#: Switch for every fast path (read at each call).
ENABLED: bool = _switched_on("SMOOTHMAX_FASTPATHS")

#: The outputs the fast paths compute themselves (no weights: ``r`` is never asked).
_FAST_OUTPUTS = frozenset(("lse", "sign", "q", "log_q"))

#: What JAX's kernel also returns for its JVP rule alone (``smoothmax._jax``):
#: ``exp``, the ``e = exp(d)`` that ``q = e / total`` divides, and ``total``
#: (``1 + rest``, at least 1), as the same arrays that ``q`` is computed from.
_JAX_RULE_OUTPUTS = frozenset(("exp", "total"))


def _without_rule_outputs(outputs: tuple[str, ...]) -> tuple[str, ...]:
    """``outputs`` less :data:`_JAX_RULE_OUTPUTS`: what a fast path must decline on."""
    return tuple(name for name in outputs if name not in _JAX_RULE_OUTPUTS)


#: ``q`` with or without the rule's outputs (:func:`_jax_q_alone`).
_JAX_Q_OUTPUTS = _JAX_RULE_OUTPUTS | {"q"}


def _jax_q_alone(outputs: tuple[str, ...]) -> bool:
    """Whether ``outputs`` are ``q``, with or without the rule's ``exp`` and ``total``."""
    return "q" in outputs and _JAX_Q_OUTPUTS.issuperset(outputs)

#: Scratch per block, in bytes: a block of ``x`` and its scratch stay in L2.
BLOCK_BYTES = 1 << 18


def _generic(xp: Any, x: Any, weights: Any, axis: int, temperature: float, outputs: tuple[str, ...]) -> tuple[Any, ...]:
    return _kernel.kernel(xp, x, weights, axis, temperature, outputs)


def _declines(x: Any, weights: Any, axis: int, temperature: float, outputs: tuple[str, ...]) -> bool:
    """True where no fast path applies: the generic kernel runs."""
    return (
        not ENABLED
        or weights is not None
        or not temperature > 0.0
        or not _FAST_OUTPUTS.issuperset(outputs)
        or x.shape[axis] == 0
    )


# --------------------------------------------------------------------------- NumPy


class _NumpyResults:
    """The output arrays of one call, in the working layout, and how blocks fill them."""

    def __init__(self, xp: Any, dtype: Any, temperature: float, outputs: tuple[str, ...],
                 reduced_shape: tuple[int, ...], full_shape: tuple[int, ...]) -> None:
        self.xp = xp
        self.outputs = outputs
        self.t = temperature
        self.t_array = np.asarray(temperature, dtype=dtype)
        self.one = np.asarray(1.0, dtype=dtype)
        self.arrays = {
            name: np.empty(reduced_shape if name in ("lse", "sign") else full_shape, dtype=dtype)
            for name in outputs
        }
        self.q = self.arrays.get("q")
        self.log_q = self.arrays.get("log_q")

    def store_generic(self, block: Any, index: Any) -> None:
        """The generic kernel on ``block`` (reduced along axis 1), stored at ``index``."""
        values = _generic(self.xp, block, None, 1, self.t, self.outputs)
        for name, value in zip(self.outputs, values):
            self.arrays[name][index] = value

    def store_reduced(self, index: Any, maximum: Any, rest: Any) -> tuple[Any, Any]:
        """``lse`` and ``sign`` from the pivot value and the rest of the sum, with the
        generic kernel's operations; returns ``(log_sum, total)``."""
        log_sum = np.log1p(rest)
        total = self.one + rest
        if "lse" in self.arrays:
            lse = self.arrays["lse"][index]
            np.add(maximum, log_sum if self.t == 1.0 else self.t_array * log_sum, out=lse)
        if "sign" in self.arrays:
            self.arrays["sign"][index] = _kernel._sign(self.xp, total)
        return log_sum, total

    def buffers(self, index: Any, scratch: Any) -> tuple[Any, Any]:
        """Where ``(x - m) / t`` and its ``exp`` go for the block at ``index``: the
        outputs themselves where they are asked for, else ``scratch``."""
        q = self.q[index] if self.q is not None else None
        log_q = self.log_q[index] if self.log_q is not None else None
        shifted = log_q if log_q is not None else (q if q is not None else scratch)
        scaled = q if q is not None else (scratch if log_q is not None else shifted)
        return shifted, scaled

    def needs_scratch(self) -> bool:
        return self.q is None or self.log_q is not None

    def divide_by_t(self, shifted: Any) -> None:
        if self.t != 1.0:
            np.divide(shifted, self.t_array, out=shifted)

    def finish(self, index: Any, scaled: Any, shifted: Any, log_sum: Any, total: Any) -> None:
        """The full-size outputs: ``q = exp / total`` and ``log_q = shifted - log_sum``."""
        if self.q is not None:
            np.divide(scaled, total, out=scaled)
        if self.log_q is not None:
            np.subtract(shifted, log_sum, out=shifted)


def numpy_kernel(
    xp: Any, x: Any, weights: Any, axis: int, temperature: float, outputs: tuple[str, ...]
) -> tuple[Any, ...]:
    """The kernel for NumPy arrays: cache-sized blocks, in place, the generic kernel's results."""
    if (
        _declines(x, weights, axis, temperature, outputs)
        or type(x) is not np.ndarray
        or x.size == 0
        or x.dtype not in (np.float32, np.float64)
    ):
        return _generic(xp, x, weights, axis, temperature, outputs)
    if not x.flags.c_contiguous:
        # The generic kernel's temporaries (and so its summation order) depend on
        # the layout; the blocks below follow the C-contiguous one.
        return _generic(xp, x, weights, axis, temperature, outputs)

    shape = x.shape
    n = shape[axis]
    # At least 1024 elements: NumPy's pairwise sum splits only above 128.
    block = max(1024, BLOCK_BYTES // x.itemsize)
    outer = math.prod(shape[:axis])
    inner = math.prod(shape[axis + 1 :])
    if inner == 1 and x.size <= block:
        keep_shape = shape[:axis] + (1,) + shape[axis + 1 :]
        if outputs == ("lse",):
            value = small_rows_lse(x if x.ndim == 1 else x.reshape(outer, n), temperature)
            if value is not None:
                return (value.reshape(keep_shape),)
        elif _SMALL_ROWS_OUTPUTS.issuperset(outputs):
            values = small_rows(x.reshape(outer, n), temperature, outputs)
            if values is not None:
                return tuple(value.reshape(keep_shape if name == "lse" else shape) for name, value in zip(outputs, values))
    if inner == 1:
        results = _NumpyResults(xp, x.dtype, temperature, outputs, (outer, 1), (outer, n))
        _numpy_last_axis(results, x.reshape(outer, n), block)
    else:
        results = _NumpyResults(xp, x.dtype, temperature, outputs, (outer, 1, inner), (outer, n, inner))
        _numpy_outer_axis(results, x.reshape(outer, n, inner), block)
    keep_shape = shape[:axis] + (1,) + shape[axis + 1 :]
    return tuple(
        results.arrays[name].reshape(keep_shape if name in ("lse", "sign") else shape) for name in outputs
    )


def small_rows_lse(x2: Any, temperature: float) -> Any:
    """``lse`` (rows, 1) of the rows of a small C-contiguous float array ``x2``
    (rows, n), where the call overhead dominates: :func:`_numpy_rows`'s
    operations without its bookkeeping, bitwise the generic kernel's. None where
    a maximum is not finite (the generic fix-ups run). A 1-d ``x2`` is one row,
    and its ``lse`` a NumPy scalar (:func:`_small_row_lse`). (Out arrays passed
    positionally: the keyword costs ~0.4 us a call.)"""
    if x2.ndim == 1:
        return _small_row_lse(x2, temperature)
    rows = x2.shape[0]
    if rows == 1:
        value = _small_row_lse(x2[0], temperature)
        return None if value is None else value.reshape(1, 1)
    positions = np.arange(rows)
    index = np.argmax(x2, axis=1)
    maximum = x2[positions, index][:, None]
    if not np.isfinite(maximum).all():
        return None
    scaled = np.subtract(x2, maximum)
    if temperature != 1.0:
        np.divide(scaled, np.asarray(temperature, dtype=x2.dtype), scaled)
    np.exp(scaled, scaled)
    scaled[positions, index] = 0.0  # the pivot's exp(0) = 1 stays out of the sum
    log_sum = np.log1p(np.add.reduce(scaled, 1))
    if temperature != 1.0:
        np.multiply(np.asarray(temperature, dtype=x2.dtype), log_sum, log_sum)
    return np.add(log_sum, maximum[:, 0], log_sum).reshape(rows, 1)


#: The outputs :func:`small_rows` computes.
_SMALL_ROWS_OUTPUTS = frozenset(("lse", "q", "log_q"))


def small_rows(x2: Any, temperature: float, outputs: tuple[str, ...]) -> tuple[Any, ...] | None:
    """The named ``outputs`` (of ``lse``, ``q``, ``log_q``; ``lse`` as ``(rows, 1)``)
    of the rows of a small C-contiguous float array ``x2`` (rows, n):
    :func:`_numpy_rows`'s operations on one block without its bookkeeping, so
    bitwise the same; one row with scalar indexing. Measured against the block
    path in one process: ``softmax`` of 16 and 1000 elements 19-21 -> 8-11 us,
    ``log_softmax`` 20-24 -> 11-14 us; (32, 100) and (8, 4096) 0.87-1.0x.
    (``lse`` alone keeps :func:`small_rows_lse`: this function's generality
    costs it ~4 us.) None where a maximum is not finite (the generic fix-ups run)."""
    rows = x2.shape[0]
    if rows == 1:
        # one row: the pivot as an int, the maximum a NumPy scalar (fancy
        # indexing costs ~1 us a use)
        x2 = x2[0]
        pivots = int(x2.argmax())
        maximum = x2[pivots]
        if not math.isfinite(maximum):
            return None
    else:
        pivots = (np.arange(rows), np.argmax(x2, axis=1))
        maximum = x2[pivots][:, None]
        if not np.isfinite(maximum).all():
            return None
    t = np.asarray(temperature, dtype=x2.dtype)
    shifted = np.subtract(x2, maximum)
    if temperature != 1.0:
        np.divide(shifted, t, shifted)
    scaled = np.exp(shifted)
    scaled[pivots] = 0.0  # the pivot's exp(0) = 1 stays out of the sum
    # (one row: the sum of the 1-d row is its sum along axis 1, bitwise)
    rest = np.add.reduce(scaled) if rows == 1 else np.sum(scaled, axis=1, keepdims=True)
    log_sum = np.log1p(rest)
    values = {}
    if "lse" in outputs:
        values["lse"] = np.reshape(np.add(maximum, log_sum if temperature == 1.0 else t * log_sum), (rows, 1))
    if "q" in outputs:
        scaled[pivots] = 1.0
        values["q"] = np.divide(scaled, np.asarray(1.0, dtype=x2.dtype) + rest, scaled)
    if "log_q" in outputs:
        values["log_q"] = np.subtract(shifted, log_sum, shifted)
    return tuple(values[name] for name in outputs)


def _small_row_lse(row: Any, temperature: float) -> Any:
    """:func:`small_rows_lse` of one row (1-d), as a NumPy scalar of its dtype
    (None where the maximum is not finite): scalar arithmetic after the sum,
    ~1.3 us less than one-element arrays on 1000 elements; the same float
    operations, so bitwise the same value."""
    pivot = int(row.argmax())
    maximum = row[pivot]  # a NumPy scalar of row's dtype
    if not math.isfinite(maximum):
        return None
    scaled = np.subtract(row, maximum)
    if temperature != 1.0:
        np.divide(scaled, np.asarray(temperature, dtype=row.dtype), scaled)
    np.exp(scaled, scaled)
    scaled[pivot] = 0.0  # the pivot's exp(0) = 1 stays out of the sum
    log_sum = np.log1p(np.add.reduce(scaled))
    if temperature != 1.0:
        log_sum = np.asarray(temperature, dtype=row.dtype) * log_sum
    return log_sum + maximum


def _numpy_last_axis(results: _NumpyResults, x2: Any, block: int) -> None:
    """Reduce the contiguous axis of ``x2`` (rows, n): blocks of whole rows, or, for
    rows longer than a block, leaves of NumPy's pairwise summation tree."""
    rows, n = x2.shape
    if n > block:
        scratch = np.empty(block, dtype=x2.dtype) if results.needs_scratch() else None
        for row in range(rows):
            _numpy_long_row(results, x2, row, block, scratch)
        return
    per_block = min(rows, max(1, block // n))
    scratch = np.empty((per_block, n), dtype=x2.dtype) if results.needs_scratch() else None
    positions = np.arange(per_block)
    for start in range(0, rows, per_block):
        stop = min(start + per_block, rows)
        k = stop - start
        _numpy_rows(results, x2, slice(start, stop), None if scratch is None else scratch[:k], positions[:k])


def _numpy_rows(results: _NumpyResults, x2: Any, rows: slice, scratch: Any, positions: Any) -> None:
    xb = x2[rows]
    index = np.argmax(xb, axis=1)
    maximum = xb[positions, index][:, None]
    if not np.isfinite(maximum).all():
        results.store_generic(xb, rows)  # +inf, -inf (all absent) or NaN: the generic fix-ups
        return
    shifted, scaled = results.buffers(rows, scratch)
    np.subtract(xb, maximum, out=shifted)
    results.divide_by_t(shifted)
    np.exp(shifted, out=scaled)
    scaled[positions, index] = 0.0  # the pivot's exp(0) = 1 stays out of the sum
    rest = np.sum(scaled, axis=1, keepdims=True)
    log_sum, total = results.store_reduced(rows, maximum, rest)
    if results.q is not None:
        scaled[positions, index] = 1.0
    results.finish(rows, scaled, shifted, log_sum, total)


def _numpy_long_row(results: _NumpyResults, x2: Any, row: int, block: int, scratch: Any) -> None:
    x1 = x2[row]
    pivot = int(np.argmax(x1))
    maximum = x1[pivot : pivot + 1]
    rows = slice(row, row + 1)
    if not math.isfinite(maximum[0]):
        results.store_generic(x2[rows], rows)
        return
    shifted_row, scaled_row = results.buffers(row, scratch)

    def leaf(start: int, stop: int) -> Any:
        shifted = shifted_row[: stop - start] if shifted_row is scratch else shifted_row[start:stop]
        scaled = scaled_row[: stop - start] if scaled_row is scratch else scaled_row[start:stop]
        np.subtract(x1[start:stop], maximum, out=shifted)
        results.divide_by_t(shifted)
        np.exp(shifted, out=scaled)
        if start <= pivot < stop:
            scaled[pivot - start] = 0.0
        total = np.sum(scaled)
        if start <= pivot < stop and results.q is not None:
            scaled[pivot - start] = 1.0
        return total

    def pairwise(start: int, stop: int) -> Any:
        # NumPy's pairwise_sum: halves rounded down to a multiple of 8, down to
        # blocks it sums itself, so the leaves' sums add up as np.sum's do.
        size = stop - start
        if size <= block:
            return leaf(start, stop)
        half = size // 2
        half -= half % 8
        return pairwise(start, start + half) + pairwise(start + half, stop)

    rest = np.asarray(pairwise(0, x1.shape[0]), dtype=x1.dtype).reshape(1, 1)
    log_sum, total = results.store_reduced(rows, maximum.reshape(1, 1), rest)
    results.finish(row, scaled_row, shifted_row, log_sum[0], total[0])


#: NumPy's ufunc buffer size (elements) while :func:`_numpy_long_slice` runs.
_PIECES_BUFSIZE = 1024


def _numpy_outer_axis(results: _NumpyResults, x3: Any, block: int) -> None:
    """Reduce axis 1 of ``x3`` (outer, n, inner) with the generic kernel's pairwise
    sum (:func:`smoothmax._kernel.pairwise_sum`): blocks of whole slices
    (:func:`_numpy_slices`), or, for slices larger than a block,
    :func:`_numpy_long_slice`."""
    outer, n, inner = x3.shape
    if n * inner <= block:
        per_block = min(outer, max(1, block // (n * inner)))
        size = per_block * n * inner
        terms_buffer, ties_buffer = np.empty(size, dtype=x3.dtype), np.empty(size, dtype=bool)
        for start in range(0, outer, per_block):
            _numpy_slices(results, x3, slice(start, min(start + per_block, outer)), terms_buffer, ties_buffer)
        return
    plan = _FoldPlan(x3, block)
    with np.errstate():  # restores the buffer size on exit
        # The pieces are strided runs of 2048+ elements: with its default 8192
        # NumPy copies them through its buffers (float64 (1024, 4096): 9% slower).
        np.setbufsize(min(np.getbufsize(), _PIECES_BUFSIZE))
        for index in range(outer):
            _numpy_long_slice(results, x3, index, plan)


def _numpy_fold(rows: Any, carry: Any = None) -> Any:
    """:func:`smoothmax._kernel.pairwise_sum` along axis 1 of ``rows`` (k, n, inner),
    in place: the same additions in the same order, so bitwise the same sums.

    Returns a (k, 1, inner) view of ``rows``. ``rows`` is overwritten, and so is
    ``carry`` (the rows set aside before, or None) where given. The first odd
    row out serves as the carry in place: no fold reads or writes it again.
    Fastest with ``k == 1``: each fold is then one contiguous ``np.add``
    (contiguous halves: no overlap, so no copy inside the ufunc)."""
    return _kernel.fold_in_halves(rows, rows.shape[1], _numpy_rows_of, _numpy_add_into, carry)


def _numpy_rows_of(array: Any, start: int, stop: int) -> Any:
    return array[:, start:stop]


def _numpy_add_into(a: Any, b: Any) -> Any:
    return np.add(a, b, out=a)


def _numpy_slices(results: _NumpyResults, x3: Any, where: slice, terms_buffer: Any, ties_buffer: Any) -> None:
    """Slices ``where`` of ``x3``, held whole in one block. Their terms are laid out
    (n, k, inner) in ``terms_buffer`` (flat scratch), where each fold of the sum
    is one contiguous ``np.add`` (on (k, n, inner), ``k > 1``, NumPy would copy
    the halves through its buffers); one elementwise pass moves them there from
    the (k, n, inner) layout of ``x3`` and the outputs."""
    xb = x3[where]
    k, n, inner = xb.shape
    maximum = np.max(xb, axis=1, keepdims=True)
    if not np.isfinite(maximum).all():
        results.store_generic(xb, where)
        return
    folded = terms_buffer[: k * n * inner].reshape(n, k, inner)
    terms = folded.transpose(1, 0, 2)  # (k, n, inner), as xb
    q = results.q[where] if results.q is not None else None
    log_q = results.log_q[where] if results.log_q is not None else None
    if q is None and log_q is None:  # lse, sign: x - m straight into the sum's layout
        shifted = scaled = terms
        tie = ties_buffer[: folded.size].reshape(folded.shape).transpose(1, 0, 2)
    else:
        shifted = log_q if log_q is not None else q
        scaled = q if q is not None else terms
        tie = ties_buffer[: folded.size].reshape(xb.shape)
    np.subtract(xb, maximum, out=shifted)
    # x - m == 0 exactly on the arg-maxes; one per slice makes it the pivot.
    np.equal(shifted, 0.0, out=tie)
    if np.count_nonzero(tie) != k * inner:
        results.store_generic(xb, where)  # ties: the generic kernel takes the first
        return
    results.divide_by_t(shifted)
    np.exp(shifted, out=scaled)
    if scaled is not terms:
        np.copyto(terms, scaled)  # q keeps exp(0) = 1 on the pivot
    np.copyto(terms, 0.0, where=tie)  # the pivot's exp(0) = 1 stays out of the sum
    rest = _numpy_fold(folded.reshape(1, n, k * inner)).reshape(k, 1, inner)
    log_sum, total = results.store_reduced(where, maximum, rest)
    results.finish(where, scaled, shifted, log_sum, total)


class _FoldPlan:
    """How :func:`_numpy_long_slice` folds a slice of ``n`` rows of ``inner`` (more
    than a block) as :func:`smoothmax._kernel.pairwise_sum` does, and its scratch.

    The first ``len(halves)`` folds (halves ``h_0, h_1, ...``) make each of the
    ``rows`` rows left the tree of the ``2**len(halves)`` rows ``i + sum of a
    subset of the halves``: a strided view of axes of length 2 (strides ``h_0``
    rows, ``h_1`` rows, ...; see :func:`_numpy_pieces`) holds them in the order
    in which folding the view in half repeats those folds. The rows the folds
    set aside are ``leftovers``, ``(row, folds before it)``, in the order they
    join the carry. So the sum's first levels run in cache, block by block, and
    the rest on the ``rows`` partial sums (1/16 of the slice). A block holds the
    pieces of ``width`` rows and ``columns`` columns.
    """

    #: Folds done in cache: the partial sums left are 1/16 of the slice.
    FOLDS = 4

    def __init__(self, x3: Any, block: int) -> None:
        _, n, inner = x3.shape
        self.halves: list[int] = []
        self.leftovers: list[tuple[int, int]] = []
        size = n
        for folds in range(min(self.FOLDS, n.bit_length() - 1)):
            if size % 2:
                self.leftovers.append((size - 1, folds))
            size //= 2
            self.halves.append(size)
        self.rows = size
        budget = max(1, block >> len(self.halves))  # elements per piece
        self.columns = min(inner, budget)
        self.width = max(1, min(size, budget // self.columns))
        self.chunk = max(1, block // inner)  # rows per block of the elementwise outputs
        self.work = np.empty((self.width * self.columns) << len(self.halves), dtype=x3.dtype)
        self.ties = np.empty(self.work.shape, dtype=bool)
        self._blocks: dict[tuple[int, ...], _PiecesBlock] = {}
        # the views of every slice's pieces, made once per call
        self.pieces = _numpy_pieces(x3, self.halves, 0, size)
        self.leftover_pieces = [_numpy_pieces(x3, self.halves[:folds], row, 1) for row, folds in self.leftovers]

    def block(self, shape: tuple[int, ...]) -> _PiecesBlock:
        """The scratch for pieces of ``shape`` (a few shapes per call: made once)."""
        found = self._blocks.get(shape)
        if found is None:
            found = self._blocks[shape] = _PiecesBlock(self.work, self.ties, shape)
        return found


class _PiecesBlock:
    """Scratch views for one shape of pieces ``(2, ..., 2, width, columns)``: the
    terms, their ties, and the pairs of halves each fold adds (made once: the
    fold of a block is then one ``np.add`` per level)."""

    def __init__(self, work: Any, ties: Any, shape: tuple[int, ...]) -> None:
        count = math.prod(shape[:-2])
        size = math.prod(shape[-2:])
        self.terms = work[: count * size].reshape(shape)
        self.ties = ties[: count * size].reshape(shape)
        rows = self.terms.reshape(count, size)
        self.folds = []
        while count > 1:  # a power of two: no row set aside
            count //= 2
            self.folds.append((rows[:count], rows[count : 2 * count]))
        self.total = rows[0].reshape(shape[-2:])

    def fold(self, results: _NumpyResults, pieces: Any, maximum: Any) -> int:
        """The terms of the rows in ``pieces`` (:func:`_numpy_pieces`) folded into
        :attr:`total`; returns the number of ties of the maximum among them."""
        terms, ties = self.terms, self.ties
        np.subtract(pieces, maximum, out=terms)
        np.equal(terms, 0.0, out=ties)
        results.divide_by_t(terms)
        np.exp(terms, out=terms)
        np.copyto(terms, 0.0, where=ties)  # the pivot's exp(0) = 1 stays out of the sum
        for low, high in self.folds:
            np.add(low, high, out=low)
        return int(np.count_nonzero(ties))


def _numpy_pieces(x3: Any, halves: list[int], row: int, width: int) -> Any:
    """The view ``[o, b_0, b_1, ..., i, :] = x3[o, row + i + b_0 h_0 + b_1 h_1 + ...]``
    (each ``b`` 0 or 1): the rows that :class:`_FoldPlan`'s folds add up, for
    every slice ``o``. Every row it reaches is a row of ``x3`` (the folds' own pairs)."""
    outer_step, step, column_step = x3.strides
    return np.lib.stride_tricks.as_strided(
        x3[:, row:],
        shape=(x3.shape[0],) + (2,) * len(halves) + (width, x3.shape[2]),
        strides=(outer_step,) + tuple(half * step for half in halves) + (step, column_step),
        writeable=False,
    )


def _numpy_long_slice(results: _NumpyResults, x3: Any, index: int, plan: _FoldPlan) -> None:
    """One slice larger than a block: its maximum, then the pairwise sum of its
    terms block by block as :class:`_FoldPlan` says, then ``q``/``log_q``
    elementwise in chunks of rows (a second pass over ``x``)."""
    xs = x3[index]
    n, inner = xs.shape
    here = slice(index, index + 1)
    maximum = np.max(xs, axis=0, keepdims=True)
    if not np.isfinite(maximum).all():
        results.store_generic(x3[here], here)
        return
    found = 0
    carry = np.empty((1, 1, inner), dtype=xs.dtype) if plan.leftovers else None
    for number, leftover in enumerate(plan.leftover_pieces):
        for column in range(0, inner, plan.columns):
            columns = slice(column, column + plan.columns)
            part = leftover[index][..., columns]
            block = plan.block(part.shape)
            found += block.fold(results, part, maximum[:, columns])
            if number == 0:
                carry[0, :, columns] = block.total
            else:
                np.add(carry[0, :, columns], block.total, out=carry[0, :, columns])
    partial = np.empty((1, plan.rows, inner), dtype=xs.dtype)
    pieces = plan.pieces[index]
    for row in range(0, plan.rows, plan.width):
        rows = slice(row, row + plan.width)
        for column in range(0, inner, plan.columns):
            columns = slice(column, column + plan.columns)
            part = pieces[..., rows, columns]
            block = plan.block(part.shape)
            found += block.fold(results, part, maximum[:, columns])
            partial[0, rows, columns] = block.total
    if found != inner:
        results.store_generic(x3[here], here)  # ties: the generic kernel takes the first
        return
    rest = _numpy_fold(partial, carry)[0]
    log_sum, total = results.store_reduced(index, maximum, rest)
    if results.q is None and results.log_q is None:
        return
    for start in range(0, n, plan.chunk):
        rows = slice(start, start + plan.chunk)
        q = results.q[index, rows] if results.q is not None else None
        shifted = results.log_q[index, rows] if results.log_q is not None else q
        np.subtract(xs[rows], maximum, out=shifted)
        results.divide_by_t(shifted)
        if q is not None:
            np.exp(shifted, out=q)  # exp(0) = 1 on the pivot, as in the generic kernel
        results.finish((index, rows), q, shifted, log_sum, total)


# --------------------------------------------------------------------------- PyTorch

#: Up to this many elements the torch fast path finds the pivot with torch.max's index.
_TORCH_SMALL = 1 << 14

#: ``lse`` alone of up to this many elements along the last axis runs NumPy's kernel on a CPU
#: tensor's memory (:func:`_torch_small_lse`): at 20 000-65 536 elements 1.5-2x faster than the
#: torch path on one intra-op thread, 1.03-1.8x on two; from 131 072 on two threads the torch
#: path's parallel operations win.
_TORCH_NUMPY_LSE_ELEMENTS = 1 << 16

#: ``lse`` is ``m + log(S)``, ``S`` the sum with the pivot's 1, on slices with ``S`` at least
#: this (see :func:`_torch_lse`).
_TORCH_LOG_SUM_FROM = 4.0


def torch_kernel(
    xp: Any, x: Any, weights: Any, axis: int, temperature: float, outputs: tuple[str, ...]
) -> tuple[Any, ...]:
    """The kernel for eager CPU tensors: fewer passes, the generic kernel's accuracy;
    on CUDA tensors one Triton kernel (:mod:`smoothmax._cuda`) where Triton is installed.

    Inputs of 8 MiB and more along the last axis or axis 0 take :func:`_torch_blocks`
    where their slices fit a block; ``lse`` alone at ``t = 1`` on other large inputs
    :func:`_torch_lse`; small tensors that are one slice, without ``log_q``,
    :func:`_torch_one_slice`; everything else :func:`_torch_exact` (bitwise the
    generic kernel, and so are the one slice and the blocks on one thread). Non-finite maxima
    (``+inf``, all ``-inf``, NaN), non-contiguous inputs, other devices,
    ``torch.compile`` and ``torch.func`` transforms take the generic kernel. Callers run it where no gradient is
    recorded (the adapter's no-derivative path, ``autograd.Function.forward``):
    it works in place.
    """
    import torch

    if torch.compiler.is_compiling() or torch._C._functorch.is_functorch_wrapped_tensor(x):
        return _generic(xp, x, weights, axis, temperature, outputs)
    return eager_torch_kernel(xp, x, weights, axis, temperature, outputs)


def eager_torch_kernel(
    xp: Any, x: Any, weights: Any, axis: int, temperature: float, outputs: tuple[str, ...]
) -> tuple[Any, ...]:
    """:func:`torch_kernel` for callers that have ruled out ``torch.compile`` and
    ``torch.func`` transforms (``x`` a plain tensor): the same results without
    checking those again (each check ~0.1-0.5 us, a 16-element call ~20 us)."""
    import torch

    if _declines(x, weights, axis, temperature, outputs):
        return _generic(xp, x, weights, axis, temperature, outputs)
    if not x.is_cpu:
        cuda = _cuda_module() if x.device.type == "cuda" else None
        values = None if cuda is None else cuda.kernel(x, axis, temperature, outputs)
        return _generic(xp, x, weights, axis, temperature, outputs) if values is None else values
    if x.dtype not in (torch.float32, torch.float64) or not x.is_contiguous() or x.numel() == 0:
        return _generic(xp, x, weights, axis, temperature, outputs)
    if outputs == ("lse",):
        value = _torch_small_lse(x, axis, temperature)
        if value is not None:
            return (torch.from_numpy(value.reshape(x.shape[:axis] + (1,))),)
    if x.numel() > _TORCH_SMALL and _torch_in_blocks(x, axis, outputs):
        return _torch_blocks(torch, xp, x, axis, temperature, outputs)
    if temperature == 1.0 and outputs == ("lse",) and x.numel() > _TORCH_SMALL:
        return (_torch_lse(torch, xp, x, axis),)
    if x.numel() == x.shape[axis] <= _TORCH_SMALL:
        values = _torch_one_slice(torch, x, axis, temperature, outputs)
        if values is not None:
            return values
    return _torch_exact(torch, xp, x, axis, temperature, outputs)


_CUDA_MODULE: list[Any] = []


def _cuda_module() -> Any:
    """:mod:`smoothmax._cuda` (the Triton kernel for CUDA tensors), imported at
    the first CUDA tensor; None where Triton is not installed, and on ROCm builds
    of PyTorch (whose GPUs are ``cuda`` devices too): the kernel was measured and
    checked on NVIDIA GPUs only."""
    if not _CUDA_MODULE:
        import torch

        _cuda = None
        if torch.version.hip is None:
            try:
                from . import _cuda
            except ImportError:
                pass
        _CUDA_MODULE.append(_cuda)
    return _CUDA_MODULE[0]


#: Slices of at most this many bytes are reduced a block of whole slices at a time
#: (:func:`_torch_blocks`); longer rows are searched for their maximum and summed in
#: pieces of this size.
_TORCH_BLOCK_BYTES = 1 << 20

#: The size of a block of slices (:func:`_torch_blocks`), and of one of rows with
#: ``q``, whose block of ``x``, share of ``q`` and scratch are three blocks where
#: ``lse`` alone touches two. Each operation on a block costs ~2-5 us beside its
#: work (~20 a block; more with two intra-op threads, which each operation wakes),
#: so blocks larger than one core's L2 (1 MiB on the AMD EPYC measured) took
#: 0.91-0.97x the time of 1 MiB and 512 KiB blocks at (4096, 1024), (32, 8, 256,
#: 256) and along axis 0 of (1024, 4096), ``logsumexp``, ``softmax`` and
#: ``log_softmax``, on one thread, 0.59-1.05x (most 0.85-0.95) on two (4 MiB no
#: faster than 2). Rows longer than ``_TORCH_BLOCK_BYTES`` stay out of the blocks:
#: one a block, they measured up to 1.4x slower on two threads. (An Intel Xeon,
#: 2 MiB L2, measured 512 KiB blocks of rows with ``q`` 0.89-0.95x the time of 1 MiB
#: in an earlier session.)
_TORCH_SLICES_BLOCK_BYTES = 2 << 20
_TORCH_Q_BLOCK_BYTES = 1 << 20

#: ... on inputs of at least this many bytes: below, where a whole pass stays in the
#: caches, the blocks' bookkeeping (~40 us a call, more a block) costs more than they
#: save (measured 1.05-1.4x at 0.1-4 MiB, 0.4-1.0x from 8 MiB, one thread).
_TORCH_BLOCKS_FROM = 8 << 20


#: What every output is on a slice with no entries (all ``-inf``), as in the generic kernel.
_TORCH_EMPTY_SLICE = {"lse": -math.inf, "sign": 0.0, "q": 0.0, "log_q": -math.inf}


def _torch_in_blocks(x: Any, axis: int, outputs: tuple[str, ...]) -> bool:
    """Whether a call takes :func:`_torch_blocks`: at least ``_TORCH_BLOCKS_FROM``
    bytes, along the last axis (rows that fit a block, at most one full-size
    output) or axis 0 (columns of which 16 fit a block, a cache line of float32
    a row; no ``log_q``, and ``q`` only on one intra-op thread)."""
    slice_bytes = x.shape[axis] * x.element_size()
    if axis == x.ndim - 1:
        fits = slice_bytes <= _TORCH_BLOCK_BYTES and not ("q" in outputs and "log_q" in outputs)
    else:
        # Columns measured 1.05-1.23x the whole passes for log_q, and for q with
        # several threads up to 2x (the whole passes spread over the threads, the
        # columns' many small folds do not); lse alone 0.4-1.0x either way.
        fits = (
            axis == 0
            and 16 * slice_bytes <= _TORCH_BLOCK_BYTES
            and "log_q" not in outputs
            and ("q" not in outputs or _torch_threads() == 1)
        )
    return fits and x.numel() * x.element_size() >= _TORCH_BLOCKS_FROM


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _torch_blocks(
    torch: Any, xp: Any, x: Any, axis: int, temperature: float, outputs: tuple[str, ...]
) -> tuple[Any, ...]:
    """:func:`_torch_exact`'s results along the last axis or axis 0, computed a
    block of whole slices at a time (the rows, or the columns, of ``x`` as a
    matrix): a block's ``x - m``, ``exp``, sums and its share of ``q`` or
    ``log_q`` are done while it is in cache, so the full-size arrays are read and
    written once each (~8 passes over memory before: ``log_softmax`` 10-22%
    faster, ``softmax`` 7-14%, at (4096, 1024) and (32, 8, 256, 256); along
    axis 0 of (1024, 4096) ``softmax`` 25-32%).

    Per slice the values are the generic kernel's, element for element: the
    pivot's 1 is left out of the sum by ``frac`` in a block-sized scratch, and
    the number of ones, ``with_ones - rest``, must be 1 beyond the sums' rounding
    (:func:`_torch_rest_without_ones`). The slices where it is not (several
    ties) and those with a non-finite maximum (NaN doubt) are copied out at the
    end and take the generic kernel, but for the all ``-inf`` ones (masked out),
    which are set to its limits: padded rows cost little. Rows are summed by
    ``torch.sum`` (with several threads PyTorch may split a block's rows
    differently from the whole array's: the last bits may then differ from the
    generic kernel's; see the threads case of ``tests/test_fastpaths.py``),
    columns pairwise as the generic kernel sums them (:func:`_torch_axis_sum`).

    ``lse`` alone at ``t = 1`` is :func:`_torch_lse`'s: ``m + log(S)``, the pivot's
    1 in ``S``, on slices with ``S >= 4``, within one ulp of the
    generic kernel; a block's ``frac`` sum is taken only where one of its
    slices falls short (then the generic value, bitwise). No full-size buffer:
    ``logsumexp`` 0.38x the time before at (32, 8, 256, 256), whose ``exp(x -
    m)`` in full cost its page faults."""
    n = x.shape[axis]
    last = axis == x.ndim - 1
    matrix = x.view(-1, n) if last else x.view(n, -1)  # slices as rows, or as columns (axis 0)
    along = 1 if last else 0  # the matrix's reduced dimension
    across = 1 - along  # the one blocks are cut along
    count = matrix.shape[across]
    block_bytes = _TORCH_Q_BLOCK_BYTES if last and "q" in outputs else _TORCH_SLICES_BLOCK_BYTES
    per_block = max(1, block_bytes // (n * x.element_size()))
    reduced_shape = (count, 1) if last else (1, count)

    def reduced(dtype: Any = x.dtype) -> Any:
        return torch.empty(reduced_shape, dtype=dtype, device=x.device)

    def part(array: Any, start: int, size: int) -> Any:
        return array.narrow(across, start, size)

    maximum, with_ones, rest = reduced(), reduced(), reduced()
    full_name = "q" if "q" in outputs else "log_q" if "log_q" in outputs else None
    full = _torch_empty(torch, matrix) if full_name is not None else None
    log_sum = reduced() if full_name == "log_q" else None
    scratch = torch.empty(
        (min(per_block, count), n) if last else (n, min(per_block, count)), dtype=x.dtype, device=x.device
    )
    one = _torch_one(torch, x.dtype)
    # lse alone at t = 1: m + log(S) as in _torch_lse, the pivot left out only where needed
    short = reduced(torch.bool) if outputs == ("lse",) and temperature == 1.0 else None
    any_short = False
    ones = floors = None  # per slice, its count of ones where the bound cannot settle it
    masked = _torch_looks_masked(torch, x)
    steps = torch.empty_like(scratch) if masked else None  # _torch_exp's masked route
    for start in range(0, count, per_block):
        size = min(per_block, count - start)
        block, work = part(matrix, start, size), part(scratch, 0, size)
        step_scratch = part(steps, 0, size) if masked else None
        block_maximum = torch.amax(block, along, keepdim=True, out=part(maximum, start, size))
        if full_name == "q":
            # d in the scratch, exp(d) from it into q (the pivot's 1 kept), frac into
            # the scratch: q's memory first written by exp, whose arithmetic hides
            # the fetch (0.91-1.0x the time of d written into q, one thread or two)
            shifted = _torch_shifted(torch, block, block_maximum, temperature, work)
            scaled = _torch_exp(torch, shifted, part(full, start, size), masked, step_scratch)
            fractions = torch.frac(scaled, out=work)
        else:
            # d in log_q (or the scratch), exp(d) in the scratch
            shifted = _torch_shifted(
                torch, block, block_maximum, temperature, part(full, start, size) if full_name else work
            )
            scaled = fractions = _torch_exp(torch, shifted, work if full_name else shifted, masked, step_scratch)
        block_with_ones = torch.sum(scaled, along, keepdim=True, out=part(with_ones, start, size))
        if short is not None:
            # lse alone: the slices where m + log(S) will not do (see _torch_lse), NaN too
            block_short = _torch_log_sum_short(torch, block_with_ones, part(short, start, size))
            if not bool(block_short.any()):
                continue  # (their rest is never read)
            any_short = True
        if not _torch_bound_settles(torch, block_with_ones, n):
            # the ones counted, before frac takes them (see _torch_rest_without_ones)
            if ones is None:
                ones = torch.full(reduced_shape, -1.0, dtype=x.dtype, device=x.device)  # -1: not counted
                floors = torch.empty_like(scratch)
            torch.sum(torch.floor(scaled, out=part(floors, 0, size)), along, keepdim=True, out=part(ones, start, size))
        if fractions is scaled:
            fractions.frac_()
        block_rest = part(rest, start, size)
        if last:
            torch.sum(fractions, 1, keepdim=True, out=block_rest)
        else:
            # pairwise as the generic kernel sums the columns (one alone in a block too)
            block_rest.copy_(_torch_axis_sum(torch, fractions, 0, in_place=True, pairwise=count > 1))
        if full_name == "q":
            scaled.div_(torch.add(one, block_rest))
        elif full_name == "log_q":
            shifted.sub_(torch.log1p(block_rest, out=part(log_sum, start, size)))
    keepdims_shape = x.shape[:axis] + (1,) + x.shape[axis + 1 :]
    if short is not None and not any_short:
        return (with_ones.log_().add_(maximum).view(keepdims_shape),)  # the common case
    if log_sum is None and ("lse" in outputs):
        log_sum = torch.log1p(rest)
    results: dict[str, Any] = {}
    if short is not None:
        results["lse"] = torch.where(short, log_sum, torch.log(with_ones)).add_(maximum)
    elif "lse" in outputs:
        results["lse"] = _torch_lse_from(torch, maximum, log_sum, temperature)
    if "sign" in outputs:
        results["sign"] = _kernel._sign(xp, torch.add(one, rest))
    if full_name is not None:
        results[full_name] = full
    doubt = _torch_doubt(torch, with_ones, rest, n)
    if ones is not None:
        doubt = torch.where(ones.ge(0.0), ones.sub(1.0).abs_(), doubt)  # counted: exactly one 1, or not
    redo = torch.lt(doubt, 0.5).logical_not_()  # NaN too
    redo = (redo if short is None else redo.logical_and_(short)).view(-1)
    if bool(redo.any()):
        empty = torch.eq(maximum, -math.inf).view(-1)
        if bool(empty.any()):
            # all -inf (masked out): the generic kernel's limits, without its cost
            # (index_fill_ writes those slices alone; a boolean mask would scan every entry)
            slices_empty = torch.nonzero(empty).squeeze(1)
            for name in outputs:
                results[name].index_fill_(across, slices_empty, _TORCH_EMPTY_SLICE[name])
            redo.logical_and_(empty.logical_not_())
        index = torch.nonzero(redo).squeeze(1)
        if index.numel():
            # a lone column the generic kernel would sum by torch.sum (its order for
            # one column), not pairwise as it sums it among others: handed over twice
            lone_column = not last and index.numel() == 1
            slices = matrix.index_select(across, index.repeat(2) if lone_column else index)
            for name, value in zip(outputs, _generic(xp, slices, None, along, temperature, outputs)):
                results[name].index_copy_(across, index, value.narrow(across, 0, 1) if lone_column else value)
    return tuple(results[name].view(x.shape if name == full_name else keepdims_shape) for name in outputs)


#: The tensor types whose memory the small-lse route reads with NumPy (not subclasses).
_TORCH_PLAIN_TYPES: set[Any] = set()


def _torch_small_lse(x: Any, axis: int, temperature: float) -> Any:
    """``lse`` along the last axis of a small contiguous CPU tensor, computed by
    NumPy on the tensor's own memory (no copy), as a ``(rows, 1)`` ndarray (a
    NumPy scalar for a 1-d tensor); None where this route does not apply. Each
    torch op costs ~1.5 us of dispatch, a NumPy ufunc ~0.5 us:
    :func:`small_rows_lse` takes half the time of :func:`_torch_exact` here. (Only ``lse``: ``q`` comes from PyTorch's ``exp``
    everywhere, so that the gradient of ``logsumexp`` stays bitwise ``softmax``;
    NumPy's ``exp`` differs from it in the last bit.)"""
    if (
        not ENABLED
        or axis != x.ndim - 1
        or not 0 < x.numel() <= _TORCH_NUMPY_LSE_ELEMENTS
        or not _torch_numpy_readable(x)
    ):
        return None
    array = (x.detach() if x.requires_grad else x).numpy()
    return small_rows_lse(array if x.ndim == 1 else array.reshape(-1, x.shape[axis]), temperature)


def _torch_numpy_readable(x: Any) -> bool:
    """Whether NumPy may read a tensor's memory for it: a plain tensor (a
    subclass's ``__torch_function__`` must see its operations), on the CPU,
    contiguous, without a lazy negation."""
    if not _TORCH_PLAIN_TYPES:
        import torch

        _TORCH_PLAIN_TYPES.update((torch.Tensor, torch.nn.Parameter))
    # (``x.is_cpu``: ``device.type`` costs ~0.3 us more)
    return type(x) in _TORCH_PLAIN_TYPES and x.is_cpu and x.is_contiguous() and not x.is_neg()


def _torch_one_slice(
    torch: Any, x: Any, axis: int, t: float, outputs: tuple[str, ...], keepdims: bool = True
) -> Any:
    """:func:`_torch_exact` on a small tensor that is one slice (``x.numel() ==
    x.shape[axis]``, at most ``_TORCH_SMALL`` elements), bitwise, with NumPy
    doing the steps whose results do not depend on the library (the maximum and
    its first index, ``x - m``, ``/ t``, the pivot's zeroing, ``1 + rest``, the
    division, the additions: exact or correctly rounded) on the tensor's memory
    and PyTorch the rest: ``exp``, the sum and ``log1p``, whose last bits must
    be the generic kernel's torch operations' (under ``torch.func``, where it
    runs, the gradient of ``logsumexp`` stays ``softmax`` bitwise). A NumPy
    ufunc costs ~0.5 us, a torch operation ~1.5 us: ``q`` of 16 float32 in 9.8
    us against 23.4 for :func:`_torch_exact`; forward+backward in a loop 2-7%
    faster for ``softmax`` and ``logsumexp``. Not for ``log_q``: computed so
    (``exp`` into a second buffer, ``d - log1p(rest)`` in NumPy) its forward
    took 20 us against 23, but ``log_softmax`` forward+backward in a loop 4-6 us
    more (85-91 against 80-87 us at 16 and 1000 elements), unexplained. Without
    ``keepdims``, ``lse`` and ``sign`` come without ``axis``. None where this
    route does not apply (a plain contiguous CPU tensor, a finite maximum, no
    ``log_q``)."""
    if "log_q" in outputs or not _torch_numpy_readable(x):
        return None
    array = (x.detach() if x.requires_grad else x).numpy()
    one_dimensional = array.ndim == 1
    if not one_dimensional:
        array = array.reshape(-1)
    index = int(array.argmax())  # the first maximum, as the generic kernel's argmax
    maximum = array[index]
    if not math.isfinite(maximum):
        return None
    scaled = np.subtract(array, maximum)  # d = (x - m) / t, then exp(d) in place
    if t != 1.0:
        np.divide(scaled, np.asarray(t, dtype=array.dtype), out=scaled)
    # one tensor on scaled's memory for exp, the sum and q (each call counts:
    # in a training loop each distinct operation runs ~3x its time alone)
    scaled_tensor = torch.from_numpy(scaled).exp_()
    scaled[index] = 0.0  # the pivot's exp(0) = 1 stays out of the sum
    rest = torch.sum(scaled_tensor)
    reduced_shape = x.shape[:axis] + ((1,) if keepdims else ()) + x.shape[axis + 1 :]
    results: dict[str, Any] = {}
    if "lse" in outputs:
        log_sum = torch.log1p(rest).numpy()
        scaled_log_sum = log_sum if t == 1.0 else np.multiply(np.asarray(t, dtype=array.dtype), log_sum)
        results["lse"] = _torch_of_numpy(torch, np.add(maximum, scaled_log_sum), reduced_shape)
    if "sign" in outputs or "q" in outputs:
        total = 1 + rest.numpy()  # the dtype's 1 + rest (a weak Python 1)
        if "sign" in outputs:
            results["sign"] = _torch_of_numpy(torch, np.sign(total), reduced_shape)  # total >= 1
        if "q" in outputs:
            scaled[index] = 1.0
            np.divide(scaled, total, out=scaled)
            # (a NumPy reshape and a second tensor on it: a torch view costs 2.4 us, these 1)
            results["q"] = scaled_tensor if one_dimensional else torch.from_numpy(scaled.reshape(x.shape))
    return tuple(results[name] for name in outputs)


def _torch_of_numpy(torch: Any, value: Any, shape: tuple[int, ...]) -> Any:
    """A tensor of ``shape`` on the memory of ``value``, a NumPy array or scalar
    of one element (a scalar reshaped to ``()`` stays a scalar)."""
    return torch.from_numpy(value.reshape(shape) if shape else np.asarray(value))


def eager_torch_one_slice(
    xp: Any, x: Any, axis: int, temperature: float, outputs: tuple[str, ...], keepdims: bool
) -> tuple[Any, ...] | None:
    """``refined(eager_torch_kernel, ...)`` (:func:`refined`) on a small CPU tensor
    that is one slice, straight to :func:`_torch_one_slice`: the same values
    in fewer steps, for PyTorch's eager calls (smoothmax._torch), where each step
    counts, the more so with a gradient: in a training loop the backward pass
    evicts the caches, and each distinct operation after it runs ~3x its time
    alone (8 distinct NumPy or torch operations on 16 elements: +19-29 us a
    step). Without ``keepdims``, ``lse`` and ``sign`` are made without ``axis``
    here, not squeezed by the Function (a view of a tensor made in ``forward``:
    ~3 us more a step). None where the route does not apply
    (:func:`_torch_one_slice`, and the dtypes, outputs and temperatures
    :func:`eager_torch_kernel` takes there: not ``lse`` alone, which it takes
    to NumPy's kernel, nor ``log_q``)."""
    import torch

    if (
        outputs == ("lse",)  # eager_torch_kernel's NumPy route (_torch_small_lse) first
        or "log_q" in outputs
        or x.numel() != x.shape[axis]
        or x.numel() > _TORCH_SMALL
        or x.dtype not in (torch.float32, torch.float64)
        or _declines(x, None, axis, temperature, outputs)
    ):
        return None
    values = _torch_one_slice(torch, x, axis, temperature, outputs, keepdims)
    if values is None or "lse" not in outputs:
        return values
    lse = values[outputs.index("lse")]
    if not _refine.may_need_refining(xp, lse, temperature):
        return values  # the common case: one check
    named = dict(zip(outputs, values))
    if not keepdims:
        named["lse"] = xp.expand_dims(lse, axis=axis)
    refined_lse = _refine.refine_outputs(xp, x, named, axis, temperature)["lse"]
    if not keepdims:
        refined_lse = xp.squeeze(refined_lse, axis=axis)
    return tuple(refined_lse if name == "lse" else value for name, value in zip(outputs, values))


def _numpy_refined_small_lse(x: Any, axis: int, lse: Any) -> Any:
    """:func:`_torch_small_lse`'s ``lse`` (an ndarray or a NumPy scalar) refined
    with NumPy on the tensor's memory, as the route computed it; the same shape."""
    if not _refine.may_need_refining(np, lse, 1.0):  # before the tensor's .numpy() view
        return lse
    array = (x.detach() if x.requires_grad else x).numpy()
    refined = _refine.refine_lse(_numpy_namespace(), array, np.reshape(lse, array.shape[:axis] + (1,)), axis, 1.0)
    return np.reshape(refined, np.shape(lse))  # a NumPy scalar's: ()


def _least(torch: Any, reduced: Any) -> float:
    """The smallest entry of a reduced array (NaN if any is NaN), as a Python float."""
    return (reduced if reduced.numel() == 1 else torch.amin(reduced)).item()


def _torch_lse(torch: Any, xp: Any, x: Any, axis: int) -> Any:
    """``lse`` of more than ``_TORCH_SMALL`` elements at ``t = 1``: ``m + log(S)``
    with ``S = sum(exp(x - m))``, the pivot's ``exp(0) = 1`` included, on slices
    with ``S >= 4``; the pivot left out on the others.

    Where ``S >= 4`` the other terms add up to 3 or more, so the generic
    kernel's own sum ``rest`` already runs through values of the order of 1:
    ``S`` carries about the same rounding, and ``log(S)`` errs about as much as
    ``log1p(rest)`` does, within about one ulp of ``log(S) >= log 4 > 1``.
    Below, ``S`` is mostly the pivot's 1, and each small term added to it
    rounds at the scale of 1 where the generic kernel's ``rest`` keeps them
    exact: ``[10] + [-5.5] * 19999`` measured 1.36 ulp of the result in
    float32 and ``[10] + [-27] * 19999`` 2.0 in float64, whatever ``|m|``
    (a rule that took ``m + log(S)`` wherever ``|m| >= 8`` failed there; now
    conformance cases). There the pivot must be left out: a few such rows
    (along the last axis) are copied out and take :func:`_torch_exact`; more
    than one in eight, or the only one, or slices along an outer axis, and the
    sum just computed goes on with the ones removed by ``frac``
    (:func:`_torch_rest_without_ones`), or the whole call takes
    :func:`_torch_exact`. Within one ulp of the generic kernel
    (tested). (On few elements the sum would have to be redone whenever a
    slice fails: they take :func:`_torch_exact` directly.) From
    ``_TORCH_BLOCKS_FROM`` bytes, rows longer than a block along the last axis
    are summed a piece at a time (:func:`_torch_sum_exp_by_pieces`): no
    full-size temporary, 0.75-0.85x the time at 32-80 MB (1.0-1.2x at 3.6 MB).
    """
    maximum = torch.amax(x, axis, keepdim=True)
    masked = _torch_looks_masked(torch, x)  # (once: the fallbacks below take it)
    if (
        axis == x.ndim - 1
        and x.shape[axis] * x.element_size() > _TORCH_BLOCK_BYTES
        and x.numel() * x.element_size() >= _TORCH_BLOCKS_FROM
    ):
        scaled, total = None, _torch_sum_exp_by_pieces(torch, x, maximum, masked)
    else:
        shifted = _torch_shifted(torch, x, maximum, 1.0)
        scaled = _torch_exp(torch, shifted, shifted, masked)
        total = torch.sum(scaled, axis, keepdim=True)
    outside = _torch_log_sum_short(torch, total)
    count = int(outside.sum().item())
    if count == 0:
        return total.log_().add_(maximum)
    if 8 * count <= total.numel() and total.numel() > 1 and axis == x.ndim - 1:
        # (along an outer axis a copied-out slice would be summed in another order)
        return _torch_lse_slices(torch, xp, x, axis, total.log_().add_(maximum), outside)
    if scaled is None:
        return _torch_exact(torch, xp, x, axis, 1.0, ("lse",), masked)[0]
    rest = _torch_rest_without_ones(torch, scaled, axis, x.shape[axis], total)
    if rest is not None:
        return torch.log1p(rest).add_(maximum)
    return _torch_exact(torch, xp, x, axis, 1.0, ("lse",), masked)[0]


def _torch_sum_exp_by_pieces(torch: Any, x: Any, maximum: Any, masked: bool) -> Any:
    """``sum(exp(x - m))`` along the last axis (keepdims) of a contiguous ``x`` whose
    rows are longer than a block: each row a piece of ``_TORCH_BLOCK_BYTES`` at a
    time, ``x - m`` and ``exp`` in a piece-sized scratch in cache, the pieces'
    sums added at the end. (A row of 10_000_000 float32: ~0.03 of the input
    held instead of all of it.) ``masked``: :func:`_torch_looks_masked`'s answer."""
    n = x.shape[-1]
    rows, row_maxima = x.view(-1, n), maximum.view(-1, 1)
    piece = _TORCH_BLOCK_BYTES // x.element_size()
    pieces = -(-n // piece)
    sums = torch.empty((rows.shape[0], pieces), dtype=x.dtype, device=x.device)
    scratch = torch.empty(piece, dtype=x.dtype, device=x.device)
    for row in range(rows.shape[0]):
        values, row_maximum = rows[row], row_maxima[row]
        for index, start in enumerate(range(0, n, piece)):
            part = values[start : start + piece]
            work = torch.sub(part, row_maximum, out=scratch[: part.numel()])
            work = _torch_exp(torch, work, work, masked)
            torch.sum(work, 0, out=sums[row, index])
    return torch.sum(sums, 1, keepdim=True).view(maximum.shape)


def _torch_log_sum_short(torch: Any, total: Any, out: Any = None) -> Any:
    """Per slice, whether ``m + log(S)`` (``S = total``, the pivot's 1 in it) will
    not do for ``lse``: ``S`` under ``_TORCH_LOG_SUM_FROM`` (see
    :func:`_torch_lse`); a NaN sum (a non-finite maximum) is short too."""
    return torch.ge(total, _TORCH_LOG_SUM_FROM, out=out).logical_not_()


def _torch_lse_slices(torch: Any, xp: Any, x: Any, axis: int, lse: Any, where: Any) -> Any:
    """``lse`` with its slices at ``where`` (a boolean array of its shape) replaced
    by :func:`_torch_exact` on a copy of just those slices of ``x``."""
    n = x.shape[axis]
    outer = math.prod(x.shape[:axis])
    inner = math.prod(x.shape[axis + 1 :])
    flat = torch.nonzero(where.reshape(-1)).squeeze(1)
    rows, columns = torch.div(flat, inner, rounding_mode="floor"), torch.remainder(flat, inner)
    slices = x.reshape(outer, n, inner)[rows, :, columns]  # (count, n)
    (exact,) = _torch_exact(torch, xp, slices, 1, 1.0, ("lse",))
    lse.view(outer, inner)[rows, columns] = exact.reshape(-1)
    return lse


def _torch_exact(
    torch: Any, xp: Any, x: Any, axis: int, temperature: float, outputs: tuple[str, ...], masked: bool | None = None
) -> tuple[Any, ...]:
    """The generic kernel's results, bitwise, in fewer passes (``masked``:
    :func:`_torch_looks_masked`'s answer where the caller has it).

    No ``argmax``, ``take_along_axis`` or boolean masks above ``_TORCH_SMALL``
    elements (all slow on CPU, the index-returning reductions ~15x an
    ``amax``): the pivot is excluded from the sum through ``frac`` or
    ``sign(x - m)`` (see below), ``x - m`` is exponentiated and ``q`` divided in
    place. The values summed and divided are the generic kernel's, element for
    element and in the same layout; slices with several ties of the maximum take
    the generic kernel. Rows longer than a block (1 MiB) along the last
    axis find the generic kernel's pivot itself a piece at a time
    (:func:`_torch_pivot_by_pieces`) and zero it with ``scatter_``, as small
    inputs do: ``softmax`` of (10_000_000,) 0.58x the time of the ``sign`` path,
    ``log_softmax`` 0.85-0.91x, ties included. (The same search on every large
    input measured 1.1-2.5x slower at 0.1-4 MiB and no faster along outer axes.)
    """
    n = x.shape[axis]
    small = x.numel() <= _TORCH_SMALL
    # rows too long for a block: the pivot found a piece at a time (see below)
    long_rows = not small and axis == x.ndim - 1 and n * x.element_size() > _TORCH_BLOCK_BYTES
    if small:
        # Few elements: the fewest operations. max with its index in one call,
        # the pivot zeroed (and for q put back) with scatter_.
        maximum, index = torch.max(x, axis, keepdim=True)
    elif long_rows:
        maximum, piece_maxima = _torch_maximum_by_pieces(torch, x)
    else:
        maximum = torch.amax(x, axis, keepdim=True)
    if not math.isfinite((maximum if maximum.numel() == 1 else maximum.sum()).item()):
        # +inf, -inf (all absent) or NaN somewhere: the generic fix-ups
        # (a finite overflowing sum only sends finite maxima there too).
        return _generic(xp, x, None, axis, temperature, outputs)
    t = temperature
    shifted = _torch_shifted(torch, x, maximum, t)
    if masked is None:
        masked = _torch_looks_masked(torch, x)
    if small or long_rows:
        if long_rows:
            index = _torch_pivot_by_pieces(torch, x, maximum, piece_maxima)
        # log_q alone on long rows: exp in place and d once more below (one
        # full-size buffer: allocations cost page faults)
        recompute = long_rows and "log_q" in outputs and "q" not in outputs
        scaled = _torch_exp(torch, shifted, None if "log_q" in outputs and not recompute else shifted, masked)
        scaled.scatter_(axis, index, 0.0)  # the pivot's exp(0) = 1 stays out of the sum
        rest = _torch_axis_sum(torch, scaled, axis, in_place="q" not in outputs)
        if "q" in outputs:
            scaled.scatter_(axis, index, 1.0)
        if recompute:
            shifted = _torch_shifted(torch, x, maximum, t, scaled)  # bitwise the same d
    else:
        rest = None
        # frac in place where q is not asked for, else (rows that fit a block
        # along the last axis) frac into a block-sized scratch: q keeps its ones
        keep = _torch_sums_rows_apart(x, axis, outputs)
        if "q" not in outputs or keep:
            scaled = _torch_exp(torch, shifted, shifted, masked)  # one full-size buffer: allocations cost page faults
            rest = _torch_rest_without_ones(torch, scaled, axis, n, torch.sum(scaled, axis, keepdim=True), keep)
            if rest is None or "log_q" in outputs:
                # d once more, bitwise the same, where exp(d) took its place
                shifted = _torch_shifted(torch, x, maximum, t, scaled)
    if not small and rest is None:
        # Large: index-returning reductions run ~15x slower than amax on CPU and
        # boolean masks ~6x slower than arithmetic. sign(d) is -1 off the ties of
        # the maximum and +0.0 on them, so -sum(exp(d) * sign(d)) is the sum
        # without the ties, bitwise (negation is exact and commutes with
        # rounding); it is the generic kernel's sum without the pivot when every
        # slice has exactly one tie, i.e. n - 1 non-ties.
        if n > 1 << 24:
            return _generic(xp, x, None, axis, temperature, outputs)  # counts exact in float32
        off_ties = torch.sign(shifted, out=_torch_out(torch, shifted))
        fewest, most = torch.aminmax(torch.sum(off_ties, axis))
        if fewest.item() != 1 - n or most.item() != 1 - n:
            return _generic(xp, x, None, axis, temperature, outputs)  # ties: the first is the pivot
        scaled = _torch_exp(torch, shifted, None if "log_q" in outputs else shifted, masked)
        negative_rest = _torch_axis_sum(torch, off_ties.mul_(scaled), axis, in_place=True)
        rest = torch.sub(0.0, negative_rest)  # 0 - s, not -s: a sum of nothing stays +0.0
    log_sum = torch.log1p(rest) if "lse" in outputs or "log_q" in outputs else None
    results: dict[str, Any] = {}
    if outputs == ("lse",) and t == 1.0:
        return (log_sum.add_(maximum),)  # maximum + log_sum, in place
    if "lse" in outputs:
        results["lse"] = _torch_lse_from(torch, maximum, log_sum, t)
    if "sign" in outputs or "q" in outputs:
        # 1 + rest, bitwise; a 0-d tensor, not the Python 1.0: wrapping a scalar costs ~1.5 us
        total = torch.add(_torch_one(torch, x.dtype), rest)
        if "sign" in outputs:
            results["sign"] = _kernel._sign(xp, total)
        if "q" in outputs:
            results["q"] = scaled.div_(total)  # exp(0) = 1 on the pivot, as in the generic kernel
    if "log_q" in outputs:
        results["log_q"] = shifted.sub_(log_sum)
    return tuple(results[name] for name in outputs)


def _torch_maximum_by_pieces(torch: Any, x: Any) -> tuple[Any, Any]:
    """The maximum of the last axis (keepdims) of a contiguous ``x`` whose rows are
    longer than a piece of ``_TORCH_BLOCK_BYTES``, and each row's maxima of its
    whole pieces of ``_TORCH_PIVOT_PIECE_BYTES``, ``(rows, pieces)`` (for
    :func:`_torch_pivot_by_pieces`)."""
    n = x.shape[-1]
    rows = x.view(-1, n)
    piece = _TORCH_PIVOT_PIECE_BYTES // x.element_size()
    whole = n - n % piece
    piece_maxima = torch.amax(rows[:, :whole].view(rows.shape[0], -1, piece), 2)
    maximum = torch.amax(piece_maxima, 1, keepdim=True)
    if whole < n:
        maximum = torch.maximum(maximum, torch.amax(rows[:, whole:], 1, keepdim=True))
    return maximum.view(x.shape[:-1] + (1,)), piece_maxima


def _torch_pivot_by_pieces(torch: Any, x: Any, maximum: Any, piece_maxima: Any) -> Any:
    """The index of the first maximum of each row (keepdims, as ``torch.max`` and
    the generic kernel's ``argmax`` give it) of :func:`_torch_maximum_by_pieces`'s
    long rows: ``argmax`` within the first piece that holds the maximum (or the
    tail after the last whole piece). Index-returning reductions run ~15x slower
    than ``amax`` on CPU: here one piece a row pays it, not the whole row."""
    n = x.shape[-1]
    rows = x.view(-1, n)
    count, pieces = piece_maxima.shape
    piece = _TORCH_PIVOT_PIECE_BYTES // x.element_size()
    hits = torch.eq(piece_maxima, maximum.view(count, 1))
    first = torch.argmax(hits.to(torch.uint8), 1)  # the first True (0 where none)
    holding = rows[:, : pieces * piece].view(count, pieces, piece)[torch.arange(count, device=rows.device), first]
    index = torch.argmax(holding, 1).add_(first * piece)
    if pieces * piece < n:  # rows whose maximum is only in the tail
        in_tail = hits.any(1).logical_not_()
        if bool(in_tail.any()):
            tail = torch.argmax(rows[:, pieces * piece :], 1).add_(pieces * piece)
            index = torch.where(in_tail, tail, index)
    return index.view(x.shape[:-1] + (1,))


#: Long rows' maxima are taken a piece of this many bytes at a time, and the pivot
#: (``argmax``) found within the first piece holding the maximum
#: (:func:`_torch_pivot_by_pieces`): a piece of ``_TORCH_BLOCK_BYTES`` made the
#: search ~3-4x an ``exp`` of the rows ((16, 400_000) float32: ``argmax`` and the
#: gather of the pieces 9 of 20 ms a ``softmax``).
_TORCH_PIVOT_PIECE_BYTES = 1 << 14


_TORCH_ONES: dict[Any, Any] = {}


def _torch_one(torch: Any, dtype: Any) -> Any:
    """A 0-d CPU tensor 1 of ``dtype``, made once (never written to)."""
    one = _TORCH_ONES.get(dtype)
    if one is None:
        one = _TORCH_ONES[dtype] = torch.ones((), dtype=dtype, device="cpu")  # (not the default device)
    return one


def _torch_lse_from(torch: Any, maximum: Any, log_sum: Any, t: float) -> Any:
    """``m + t log1p(rest)`` from ``log_sum = log1p(rest)``, a new tensor (``t`` a
    0-d tensor on the operands' device, not the default one)."""
    if t == 1.0:
        return maximum + log_sum
    return maximum + torch.tensor(t, dtype=log_sum.dtype, device=log_sum.device) * log_sum


def _torch_shifted(torch: Any, x: Any, maximum: Any, t: float, out: Any = None) -> Any:
    """``(x - m) / t``, into ``out`` where given, else as :func:`_torch_out` has it."""
    shifted = torch.sub(x, maximum, out=_torch_out(torch, x) if out is None else out)
    if t != 1.0:
        shifted.div_(torch.tensor(t, dtype=x.dtype, device=x.device))
    return shifted


#: Full-size buffers of at least this many bytes have their pages advised huge
#: (:func:`_torch_empty`): the requests glibc maps afresh on every call (its
#: largest ``mmap`` threshold); never where ``SMOOTHMAX_MADVISE_HUGEPAGE=0``.
_TORCH_HUGE_PAGES_FROM: float = 32 << 20 if _switched_on("SMOOTHMAX_MADVISE_HUGEPAGE") else math.inf


def _torch_empty(torch: Any, like: Any) -> Any:
    """An uninitialized contiguous CPU tensor of ``like``'s shape and dtype, for a
    full-size output or buffer: from ``_TORCH_HUGE_PAGES_FROM`` bytes its pages
    are advised huge before anything touches them (:func:`_advise_huge_pages`).

    A large fresh buffer costs its page faults when first written, one per 4 KiB
    (glibc maps requests of 32 MiB and more afresh on every call): writing a
    fresh 40 MB buffer measured 21 ms here, 6.5 ms with 2 MiB pages. NumPy
    advises its own arrays the same way from 4 MiB, PyTorch only where
    ``THP_MEM_ALLOC_ENABLE`` is set. Smaller buffers come from glibc's heap,
    mostly reused without faults: advice there measured no faster at 16 MiB,
    and once, while the heap grew, 5x slower (huge pages faulted in and split
    again as the heap shrank), so it starts at 32 MiB."""
    out = torch.empty(like.shape, dtype=like.dtype, device=like.device)
    nbytes = out.numel() * out.element_size()
    if nbytes >= _TORCH_HUGE_PAGES_FROM:
        _advise_huge_pages(out.data_ptr(), nbytes)
    return out


def _torch_out(torch: Any, like: Any) -> Any:
    """The ``out=`` tensor for a new full-size result of ``like``'s shape and
    dtype: :func:`_torch_empty` from ``_TORCH_HUGE_PAGES_FROM`` bytes, else None
    (the operation allocates: an ``out=`` costs small calls ~1-4 us more)."""
    if like.numel() * like.element_size() < _TORCH_HUGE_PAGES_FROM:
        return None
    return _torch_empty(torch, like)


def _torch_exp(torch: Any, values: Any, out: Any = None, masked: bool = False, scratch: Any = None) -> Any:
    """``exp(values)`` (``values`` a shift ``d <= 0``, or NaN) into ``out``: a new
    tensor (:func:`_torch_out`) where None, ``values`` itself for in place;
    bitwise ``torch.exp``.

    PyTorch's CPU ``exp`` takes ~12x its usual time on arguments whose result
    is not a normal number (float32 and float64: below ~-87.3 and ~-708.4, as
    masked logits are: ``-1e4``, ``finfo.min``) and ~3.5x on ``-inf``. Where
    the caller found the input ``masked`` (:func:`_torch_looks_masked`), a
    piece of ``_TORCH_EXP_PIECE_BYTES`` at a time (contiguous ``values`` and
    ``out``; else all at once, the step in ``scratch`` where given):
    :func:`_torch_exp_masked`."""
    if out is None:
        out = _torch_out(torch, values)
    if not masked:
        return torch.exp(values, out=out)
    if out is None:  # _torch_out leaves small results to the operation: the route needs one
        out = torch.empty_like(values)
    in_place = out is values
    piece = _TORCH_EXP_PIECE_BYTES // values.element_size()
    if values.numel() <= piece or not (values.is_contiguous() and out.is_contiguous()):
        step = torch.empty_like(values) if scratch is None else scratch
        return _torch_exp_masked(torch, values, out, step, torch.empty_like(values) if in_place else out)
    # piece-sized scratch, not full-size temporaries
    flat_values, flat_out, n = values.view(-1), out.view(-1), values.numel()
    steps = torch.empty(piece, dtype=values.dtype, device=values.device)
    pushed = torch.empty(piece, dtype=values.dtype, device=values.device) if in_place else flat_out
    for start in range(0, n, piece):
        size = min(piece, n - start)
        part = slice(start, start + size)
        _torch_exp_masked(
            torch, flat_values[part], flat_out[part], steps[:size], pushed[:size] if in_place else pushed[part]
        )
    return out


def _torch_exp_masked(torch: Any, values: Any, out: Any, step: Any, pushed: Any) -> Any:
    """:func:`_torch_exp` of masked logits: where no ``d`` lies between the bounds
    of ``_TORCH_EXP_BOUNDS`` (the exp of each ``d`` below them is exactly 0), the
    exp is taken of ``max(d, normal_from)`` and multiplied by a step that is 0
    below it and 1 elsewhere: arithmetic, as boolean masks run 4-13x slower.
    Anything else (NaN, arguments between the two bounds) takes ``torch.exp``.
    ``step`` and ``pushed`` are scratch of ``values``' shape, not sharing its memory
    (``pushed`` may be ``out``, which is written over after it)."""
    normal_from, zero_below = _TORCH_EXP_BOUNDS[values.element_size()]
    # step: 1 where d >= normal_from, 0 below it, on -inf and on NaN (a comparison
    # into a float tensor: one vectorized pass, where a boolean result takes ~4x)
    torch.ge(values, normal_from, out=step)
    # the largest d below normal_from: the entries at or above it pushed below all others
    largest_below = torch.amax(torch.addcmul(values, step, _torch_huge(torch, values), out=pushed)).item()
    if not largest_below < zero_below:  # NaN too
        return torch.exp(values, out=out)
    return torch.clamp(values, min=normal_from, out=out).exp_().mul_(step)


#: :func:`_torch_exp` takes masked logits a piece of this many bytes at a time.
_TORCH_EXP_PIECE_BYTES = 1 << 20


#: ``(normal_from, zero_below)`` by bytes an element (the fast paths take float32 and float64
#: only): ``exp(d)`` is a normal number from ``normal_from`` on, and exactly 0 below
#: ``zero_below`` (under half the smallest subnormal below -103.9721 and -745.1332).
#: Checked against ``torch.exp`` in tests/test_fastpaths.py.
_TORCH_EXP_BOUNDS = {4: (-87.0, -104.0), 8: (-708.0, -746.0)}

#: Inputs of at least this many elements are looked at for masked logits
#: (:func:`_torch_looks_masked`): there its ~7 us is about 1% of a call or less.
_TORCH_MASKED_FROM = 1 << 18

#: ... in their first and their last this many entries.
_TORCH_MASKED_SAMPLE = 4096


def _torch_looks_masked(torch: Any, x: Any) -> bool:
    """Whether a contiguous float32/float64 ``x`` of at least ``_TORCH_MASKED_FROM``
    elements looks like logits masked by a finite fill (``-1e4``, ``finfo.min``):
    among its first and its last ``_TORCH_MASKED_SAMPLE`` entries some finite
    ones lie further below the largest than ``exp`` keeps a normal number. A
    guess that only picks :func:`_torch_exp`'s route: both give the same values.
    (A causal mask shows in the first rows, padding in the first or the last;
    the ``amin`` of every ``d`` cost 3-8% of a call.) Masks of ``-inf`` do not
    count: ``exp(-inf)`` costs ~3.5x an ``exp`` in runs of them, and the route
    ~2x: it measured slower up to 60% of ``-inf`` padding (10%: 1.37x the time)."""
    if x.numel() < _TORCH_MASKED_FROM:
        return False
    flat = x.view(-1)
    sample = torch.cat((flat[:_TORCH_MASKED_SAMPLE], flat[-_TORCH_MASKED_SAMPLE:]))
    normal_from = _TORCH_EXP_BOUNDS[x.element_size()][0]
    largest = torch.amax(sample).item()
    smallest_finite = torch.amin(torch.nan_to_num(sample, neginf=largest)).item()  # -inf entries as the largest
    return smallest_finite < largest + normal_from  # NaN: False


def _torch_huge(torch: Any, like: Any) -> Any:
    """``-1e30`` as a 0-d tensor of ``like``'s dtype and device: added to a ``d`` at or
    above ``normal_from``, a sum below ``zero_below`` (a float32 too)."""
    return torch.tensor(-1e30, dtype=like.dtype, device=like.device)


def _advise_huge_pages(address: int, nbytes: int) -> bool:
    """``madvise(MADV_HUGEPAGE)`` on the whole pages of ``nbytes`` at ``address``,
    where the kernel takes that advice (:func:`_madvise`); whether it was taken.
    Advice only: the memory and its contents are the same either way, and a
    refusal changes nothing."""
    madvise = _madvise()
    start = -(-address // mmap.PAGESIZE) * mmap.PAGESIZE
    end = (address + nbytes) // mmap.PAGESIZE * mmap.PAGESIZE
    return madvise is not None and end > start and madvise(start, end - start, mmap.MADV_HUGEPAGE) == 0


@functools.lru_cache(maxsize=None)
def _madvise() -> Any:
    """The C library's ``madvise`` where transparent huge pages are on in
    ``madvise`` mode (Linux; in ``always`` mode the kernel needs no advice, in
    ``never`` it takes none), else None; as NumPy, not before Linux 4.6, whose
    huge-page faults could stall on defragmentation."""
    if not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_HUGEPAGE"):
        return None
    release = re.match(r"(\d+)\.(\d+)", platform.release())
    if release is None or (int(release[1]), int(release[2])) < (4, 6):
        return None
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as settings:
            if "[madvise]" not in settings.read():
                return None
        import ctypes

        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


def _torch_axis_sum(torch: Any, values: Any, axis: int, in_place: bool, pairwise: bool | None = None) -> Any:
    """``torch.sum(values, axis, keepdim=True)`` as the generic kernel sums
    (:func:`smoothmax._kernel.axis_sum`), bitwise: ``torch.sum`` along the last
    axis, the pairwise sum along an outer axis, folded in place where
    ``in_place`` (``values`` is then overwritten), else in a copy; the sum is
    a new tensor either way. ``pairwise`` decides for a part of an array (a block
    of its columns, maybe a lone one) as the generic kernel does for the whole.

    Each fold is one in-place ``add_`` of two halves; the first odd row out
    serves as the carry in place (no fold touches it again). (``torch.sum``
    along an outer axis: ``logsumexp`` 2.36 ulp off in float64 on the
    conformance case ``dominant/rows-70x1000-axis0``; pairwise 0.57.)"""
    if pairwise is None:
        pairwise = math.prod(values.shape[axis + 1 :]) > 1
    if not pairwise:
        return torch.sum(values, axis, keepdim=True)
    if not in_place:
        values = values.clone()
    folded = _kernel.fold_in_halves(
        values, values.shape[axis], lambda array, start, stop: array.narrow(axis, start, stop - start), _torch_add_into
    )
    return folded.clone()  # a new tensor: callers may reuse the buffer that was folded


def _torch_add_into(a: Any, b: Any) -> Any:
    return a.add_(b)


def _torch_sums_rows_apart(x: Any, axis: int, outputs: tuple[str, ...]) -> bool:
    """Whether a large call sums ``q``'s rows in blocks (:func:`_torch_frac_sum_by_rows`):
    ``q`` without ``log_q``, along the last axis, rows that fit a block."""
    return (
        "q" in outputs
        and "log_q" not in outputs
        and axis == x.ndim - 1
        and x.shape[axis] * x.element_size() <= BLOCK_BYTES
    )


def _torch_frac_sum_by_rows(torch: Any, scaled: Any, n: int) -> Any:
    """``sum(frac(scaled))`` along the last axis, keepdims, ``scaled`` left as it
    is: blocks of whole rows through a scratch of ``BLOCK_BYTES`` (a full-size
    buffer would cost its page faults). Each row is summed by ``torch.sum``, but
    with several threads PyTorch may split a block's rows differently from the
    whole array's: the sums (and so ``q``, ``lse``) may then differ from the
    generic kernel's in the last bits. ``logsumexp``'s gradient and ``softmax``
    take this same path, so they stay bitwise equal."""
    rows = scaled.view(-1, n)
    per_block = max(1, BLOCK_BYTES // (n * scaled.element_size()))
    scratch = torch.empty((min(per_block, rows.shape[0]), n), dtype=scaled.dtype, device=scaled.device)
    sums = torch.empty((rows.shape[0], 1), dtype=scaled.dtype, device=scaled.device)
    for start in range(0, rows.shape[0], per_block):
        stop = min(start + per_block, rows.shape[0])
        block = torch.frac(rows[start:stop], out=scratch[: stop - start])
        torch.sum(block, 1, keepdim=True, out=sums[start:stop])
    return sums.view(scaled.shape[:-1] + (1,))


def _torch_count_ones(torch: Any, scaled: Any) -> float:
    """How many entries of ``scaled = exp(d) <= 1`` are 1: ``floor`` is 1 there and
    0 elsewhere (:func:`_torch_sum_of_each`); NaN where ``scaled`` holds NaN."""
    return _torch_sum_of_each(torch, scaled, torch.floor)


def _torch_count_zeros(torch: Any, values: Any) -> float:
    """How many entries of ``values`` in ``[0, 1)`` are 0: ``ceil`` is 0 there and
    1 elsewhere, on the smallest subnormal too (:func:`_torch_sum_of_each`); NaN
    where ``values`` holds NaN."""
    return values.numel() - _torch_sum_of_each(torch, values, torch.ceil)


def _torch_sum_of_each(torch: Any, values: Any, operation: Any) -> float:
    """The sum of ``operation(values)`` (``floor`` or ``ceil``: 0 or 1 on each entry of
    ``[0, 1]``) over every entry, a block at a time through a scratch of
    ``BLOCK_BYTES`` (counts of at most 2^16 per block: exact in any float dtype)."""
    flat = values.view(-1)
    per_block = BLOCK_BYTES // values.element_size()
    scratch = torch.empty(min(per_block, flat.numel()), dtype=values.dtype, device=values.device)
    total = 0.0
    for start in range(0, flat.numel(), per_block):
        block = flat[start : start + per_block]
        total += operation(block, out=scratch[: block.numel()]).sum().item()
    return total


def _torch_rest_without_ones(
    torch: Any, scaled: Any, axis: int, n: int, with_ones: Any, keep: bool = False
) -> Any:
    """The sum of ``scaled = exp(d)`` without its one entry equal to 1 per slice
    (the pivot: exp(0) = 1), or None where that is not certain; ``with_ones`` is
    the sum of ``scaled`` as it is, which is left with 0 in place of its ones
    (unless ``keep``: the last axis then, see :func:`_torch_frac_sum_by_rows`).

    ``frac`` maps exp(d) in [0, 1) to itself and 1 to 0: the summed values are
    the generic kernel's (the pivot zeroed) when exactly one entry of each slice
    is 1 (a near-tie whose exp rounds to 1 makes two). The number of ones,
    ``with_ones - rest``, is known up to the rounding of the two sums, at most
    ``(n - 1) u (with_ones + rest)`` whatever the summation order; the answer is
    taken where that bound leaves no doubt that it is 1. Where it leaves doubt
    (long float32 slices of many terms near their maximum, flat logits: rows of
    2048 at ``N(0, 0.1)`` already) the ones are counted: with ``keep`` in ``scaled``
    (:func:`_torch_count_ones`), along the last axis as the zeros ``frac`` left
    (:func:`_torch_count_zeros`: one a slice, or there were ties or ``exp``
    underflowed, and the answer is None), along an outer axis, whose pairwise
    sum overwrites ``scaled``, before ``frac`` wherever the bound may not settle
    it (:func:`_torch_bound_settles`).
    """
    slices = with_ones.numel()  # every slice holds its pivot's 1
    last = axis == scaled.ndim - 1
    if not keep and not last and not _torch_bound_settles(torch, with_ones, n):
        if _torch_count_ones(torch, scaled) != slices:
            return None  # several ties somewhere (or NaN)
        return _torch_axis_sum(torch, scaled.frac_(), axis, in_place=True)
    rest = _torch_frac_sum_by_rows(torch, scaled, n) if keep else _torch_axis_sum(torch, scaled.frac_(), axis, True)
    if (_torch_doubt(torch, with_ones, rest, n) < 0.5).all().item():
        return rest
    if keep:
        return rest if _torch_count_ones(torch, scaled) == slices else None
    return rest if last and _torch_count_zeros(torch, scaled) == slices else None


def _torch_bound_settles(torch: Any, with_ones: Any, n: int) -> bool:
    """Whether :func:`_torch_doubt`'s bound, on slices of ``n`` terms whose sums
    with their ones are ``with_ones``, is below 1/2 wherever a slice has exactly
    one 1: its two terms are then each at most ``(n - 1) eps (with_ones + rest)
    <= 2 (n - 1) eps with_ones``. Else the bound could send slices with one tie
    to the generic kernel (every row of (2048, 2048) float32 at ``N(0, 0.1)``:
    ``softmax`` 10x ``torch.softmax``), and the ones are counted. Always where
    ``with_ones <= n`` cannot reach that (float32 slices of up to 1024, float64
    of up to 2^24), without reading it; NaN: True (the bound then sends the
    slice on)."""
    scale = 4 * (n - 1) * torch.finfo(with_ones.dtype).eps
    return scale * n < 0.5 or not scale * torch.amax(with_ones).item() >= 0.5


def _torch_doubt(torch: Any, with_ones: Any, rest: Any, n: int) -> Any:
    """Per slice, how far the number of ones ``with_ones - rest`` may be from 1
    (below 1/2: exactly one; NaN where the maximum is not finite); see
    :func:`_torch_rest_without_ones`."""
    bound = (with_ones + rest).mul_((n - 1) * torch.finfo(with_ones.dtype).eps)
    return torch.sub(with_ones, rest).sub_(1.0).abs_().add_(bound)


# --------------------------------------------------------------------------- JAX


def jax_kernel(
    xp: Any, x: Any, weights: Any, axis: int, temperature: float, outputs: tuple[str, ...]
) -> tuple[Any, ...]:
    """The kernel for JAX arrays: the generic kernel's results in the reductions
    XLA runs fastest on CPU.

    No ``argmax`` (a variadic reduction XLA runs slowly on CPU), no gather, no
    pivot mask. Up to ``_JAX_SMALL_BYTES`` (under ``vmap``: of the whole batch,
    :func:`_jax_small_unless_batched`), :func:`_jax_small`: with
    ``d = (x - m) / t`` the terms with ``d == 0`` are the ``k`` ties of the
    maximum, so ``sum(exp(d) * (d < 0))`` is the generic kernel's sum without
    the pivot (the summed values are the same, element for element) less the
    ``k - 1`` other ties, each exactly ``exp(0) = 1``, which are added back.

    Above, where a mask, a select or a second reduction (the count of ties)
    in the reduction's loop keeps XLA from vectorizing it and from running it
    on every core (2-6x ``jax.nn.logsumexp`` measured on two cores), the
    common case is one plain reduction, ``total = sum(exp(d))`` with the ties
    in it, as in ``jax.nn``. The sum without the pivot is ``total - 1``
    (:func:`_jax_rest_from_total`; ``1 + rest`` is ``total`` again, exactly).
    Where ``total < 2`` (one tie) its error is the roundings of the small
    terms added to 1, ~eps absolute rather than relative to ``rest``: a
    dominant term's ``rest`` may lose every digit. ``log_q`` needs them all (its
    pivot entry is ``-log1p(rest)``; measured 7 ulps of ``q``'s maximum entry
    on ``[0] + [-40] * 10`` at ``t = 3`` from ``total``), and so does ``q``,
    which divides by ``total`` (up to 4 eps off on such slices, ~1 eps on those
    with ``total >= 2``: float32 rows of 1024 and 4096 with ``lse`` 20-30 and
    one dominant term measured up to 7.1 ulp from the exact ``q`` against the
    generic kernel's 4.6), so with ``q`` or ``log_q`` every such slice is summed
    again without its tie; ``lse`` alone only where ``|lse|`` is below
    :func:`_jax_lse_keeps_total` (16 at ``t = 1``), where the sum's rounding
    may reach it (above it is at most a quarter of an ulp). The second sum
    runs in a ``lax.cond`` taken only where there are such slices (on GPUs in
    the same pass as the first, for every slice: :func:`_jax_sums_in_one_pass`). float32
    rows up to 2048 long sum ``total`` in float64 instead, good enough that
    such slices are rare (:func:`_jax_wide_total`). Slices with
    no entries (all ``-inf``: shifted by 0, ``total = 0``) and NaN take the
    same formulas, and so do ``+inf`` maxima, with their ``+inf`` entries set
    to 0 and the rest to ``-inf`` (the generic kernel's limit) in a
    ``lax.cond`` branch of their own. The full-size outputs ``q``, ``log_q``
    are computed elementwise after the reduction, where XLA fuses them into
    what consumes them; on the CPU, but for rows of up to 1024 along the last
    axis, ``q`` divides an ``exp(d)`` computed once for the sums and for it
    (:func:`_jax_exp_once`), the ``+inf`` maxima's limit taken in it.
    """
    if _declines(x, weights, axis, temperature, _without_rule_outputs(outputs)) or x.dtype not in _jax_floats():
        return _generic(xp, x, weights, axis, temperature, outputs)
    if x.size * x.dtype.itemsize <= _JAX_SMALL_BYTES:
        return _jax_small_unless_batched(axis, temperature, outputs)(x)
    import jax

    one_pass = _jax_sums_in_one_pass()  # (GPUs, whose total is never wide)
    wide = not one_pass and _jax_wide_total(x, axis)

    def sums(x: Any, shift: Any, positive_inf: bool = False, terms: Any = None) -> Any:
        # total = k + sum(exp(d) for d < 0) >= k: each tie adds exactly 1 and
        # rounding is monotone, so a slice with 0 < total < 2 has one tie.
        # A slice with no entries has total = 0, NaN stays NaN. ``terms``: exp(d)
        # with d at the generic kernel's limits (_jax_exp_once), whose total on
        # a slice with +inf is already the count of its +inf entries.
        counted = terms is not None
        if one_pass:
            total, below = _jax_total_and_sum_below(xp, x, shift, axis, temperature)
        else:
            if not counted:
                terms = xp.exp(_jax_shifted(xp, x, shift, temperature))
            total = xp.sum(xp.astype(terms, xp.float64) if wide else terms, axis=axis, keepdims=True)
        if positive_inf or counted:
            infinite = maximum == math.inf
        if positive_inf:
            # Slices with +inf: the generic kernel's limit takes their +inf entries
            # as 0 (its new maximum) and the rest as -inf, so total is the count of
            # +inf entries, each exp(0) = 1, and rest = count - 1 exactly: not
            # summed again. (Not summed from x with at_positive_inf applied: XLA
            # fuses no select into the reduction, and a full-size temporary in
            # this branch is one in every call's buffer; see below.)
            total = xp.where(infinite, xp.astype(_jax_count_positive_inf(xp, x, axis), total.dtype), total)
        rest = _jax_rest_from_total(xp, total)
        again = _jax_one_tie(total)
        if positive_inf or counted:
            again = again & ~infinite
        if one_pass:
            # (see _jax_sums_in_one_pass) the one-tie slices' sum without the pivot
            return xp.where(again, below, rest)
        if wide:
            # q divides by total itself; lse and log_q take total - 1 where its
            # rounding cannot reach them (_jax_lse_keeps_wide_total)
            n = x.shape[axis]
            reached = xp.zeros_like(again)
            if "lse" in outputs:
                lse = _jax_lse(xp, xp.astype(maximum, rest.dtype), xp.log1p(rest), temperature)
                bound = _kernel._constant(xp, _jax_lse_keeps_wide_total(temperature, n), lse)
                reached = reached | (xp.abs(lse) < bound)
            if "log_q" in outputs:
                reached = reached | (rest < _kernel._constant(xp, _jax_log_q_keeps_wide_total(n), rest))
            again = again & reached
        elif "log_q" not in outputs and "q" not in outputs:
            # lse alone: only where total's rounding may reach lse (_jax_lse_keeps_total)
            lse = _jax_lse(xp, maximum, xp.log1p(rest), temperature)
            again = again & (xp.abs(lse) < _kernel._constant(xp, _jax_lse_keeps_total(temperature), lse))

        def sum_below(x: Any, shift: Any, rest: Any, again: Any) -> Any:
            n = x.shape[axis]
            slices = x.size // n if n else 0
            if slices <= 1 or jax.default_backend() != "cpu":
                return _jax_rest_in_one_pass(xp, x, shift, rest, again, axis, temperature)
            # the slices as the rows of a matrix (the last axis), its columns
            # (nothing before axis), or the columns of a stack of matrices
            before = math.prod(x.shape[:axis])
            if axis == x.ndim - 1:
                layout, stacked = "rows", (slices, n)
            elif before == 1:
                layout, stacked = "columns", (n, slices)
            elif n >= _JAX_MIDDLE_GATHER_FROM:
                layout, stacked = "middle", (before, n, slices // before)
            else:
                return _jax_rest_in_one_pass(xp, x, shift, rest, again, axis, temperature)
            shift, rest, again = (xp.reshape(value, (slices,)) for value in (shift, rest, again))
            rest = _jax_rest_of_slices(temperature, layout)(xp.reshape(x, stacked), shift, rest, again)
            return xp.reshape(rest, maximum.shape)

        def keep(x: Any, shift: Any, rest: Any, again: Any) -> Any:
            return rest

        if wide and _jax_q_alone(outputs):
            return rest, rest
        summed = jax.lax.cond(_jax_any(again), sum_below, keep, x, shift, rest, again)
        return (summed, rest) if wide else summed

    def at_positive_inf(x: Any, maximum: Any) -> Any:
        # A slice with +inf: uniform on its +inf entries, as the generic kernel's
        # limit; they become 0 (its new maximum) and the rest -inf, LSE still +inf.
        neg_inf = _kernel._constant(xp, -math.inf, x)
        zero = _kernel._constant(xp, 0.0, x)
        return xp.where(maximum == math.inf, xp.where(x == math.inf, zero, neg_inf), x)

    def positive_inf_sums(x: Any, shift: Any) -> Any:
        return sums(x, shift, positive_inf=True)

    maximum = xp.max(x, axis=axis, keepdims=True)
    # shifted by 0 where there are no entries (all -inf: exp gives 0, not NaN)
    # and where the maximum is +inf (0 is the maximum at_positive_inf leaves)
    shift = xp.where(xp.isinf(maximum), _kernel._constant(xp, 0.0, x), maximum)
    # +inf maxima (rare) in a branch of their own, which keeps their count out
    # of the common path's sum. The branches take full-size operands and return
    # reduced arrays only (a full-size array in or out of a lax.cond that a
    # branch does not compute is copied), and make no full-size temporaries:
    # XLA sizes one buffer for every branch's, and from 32 MiB glibc maps it
    # afresh for each call, whose pages then fault where they are used (the
    # blocks of _jax_rest_of_slices: 535-1510 faults a call at (4096, 1024) and
    # (32, 8, 256, 256), up to a quarter of logsumexp's time there).
    exponential = None
    if not one_pass and _jax_exp_once(x, axis, outputs):
        # exp(d) once, at the generic kernel's limits, for the sums and q (see
        # _jax_exp_once); NaN kept (XLA's maximum may have skipped it for +inf)
        at_limits, _ = _kernel.shift_at_limits(xp, x, maximum, keep_nan=True)
        difference = at_limits - shift
        exponential = jax.lax.optimization_barrier(xp.exp(_jax_divided(xp, difference, temperature)))
        rest = sums(x, shift, terms=exponential)
    else:
        rest = jax.lax.cond(_jax_any(maximum == math.inf), positive_inf_sums, sums, x, shift)
    total = None
    if wide:
        # the float64 sums in x's dtype, each rounded once: q divides by the total
        # itself, so that softmax and the gradient of logsumexp share its bits
        rest, rest_of_total = rest
        total = xp.astype(_kernel._constant(xp, 1.0, rest_of_total) + rest_of_total, x.dtype)
    if exponential is not None:
        return _jax_outputs(xp, x, maximum, shift, rest, temperature, outputs, difference, total, exponential)
    if _jax_q_alone(outputs) and maximum.size > 1:
        # softmax: see _jax_difference_at_limits
        difference = _jax_difference_at_limits(xp, x, maximum, shift)
        return _jax_outputs(xp, x, maximum, shift, rest, temperature, outputs, difference, total)
    x = at_positive_inf(x, maximum)  # elementwise, fused into the outputs that read x
    return _jax_outputs(xp, x, maximum, shift, rest, temperature, outputs, total=total)


#: Along the last axis, slices up to this long compute ``exp(d)`` twice
#: (:func:`_jax_exp_once`).
_JAX_EXP_ONCE_LONGER_THAN = 1024

#: Whether JAX's large-array path on the CPU computes ``exp(d)`` once for the
#: sums and ``q`` wherever ``q`` is asked for (:func:`_jax_exp_once`); None: by
#: the slices' layout.
_JAX_EXP_ONCE: bool | None = None


def _jax_exp_once(x: Any, axis: int, outputs: tuple[str, ...]) -> bool:
    """Whether :func:`jax_kernel`'s large-array path (CPU) computes ``exp(d)``
    once, written to memory, and reads it for the sums and for ``q`` (and the
    JVP rule's ``exp``), as ``jax.nn.softmax`` does, rather than once in the
    sums' pass and again in ``q``'s: where ``q`` or ``exp`` is asked for, along
    any axis but a last one of at most ``_JAX_EXP_ONCE_LONGER_THAN`` (as
    ``smoothmax._jax._scaled_tangent``, whose rule reads that ``exp``), and
    along those too beside ``log_q`` (the rule of ``log_softmax`` reads ``q``).

    The ``+inf`` maxima take their limit in the one ``exp`` (a select there,
    NaN kept: XLA's maximum may have skipped it), so no ``lax.cond`` sends them
    to a branch of their own; ``q`` divides the ``exp`` it sums, and the
    gradient of ``logsumexp`` stays ``softmax`` bitwise (both take this path).
    Along the last axis the values measured bitwise those of two passes; along
    axis 0 of (1024, 4096) 1-6% of ``q``'s entries one ulp apart (XLA's ``exp``
    fused into a column sum rounds differently from its elementwise one: the
    sum is now of the very terms ``q`` divides). JAX's conformance suite with
    the large path forced on every array and this on every layout: 754 of 754.
    Time against two passes (JAX 0.10, two
    cores, one process, nine interleaved rounds; ``softmax``, ``softmax``
    forward+backward, gradient of ``logsumexp``, float32 then float64):
    (10_000_000,) 0.95/0.92/0.93, 0.94/0.92/0.91; (1_000_000,) 0.61/0.69/0.49,
    0.67/0.66/0.68; (16, 625_000) 0.76/0.86/0.83, 0.75/0.86/0.81; (64, 65_536)
    0.56/0.94/0.61, 0.70/0.93/0.68; (512, 8192) 0.73-0.95/0.73-0.81/0.82-1.15;
    (2048, 2048) 0.88/0.81/0.92, 0.86/0.95/0.94; axis 0 of (1024, 4096)
    0.71-0.98/0.89-1.14/0.80-0.99 (five runs), 0.89/0.94/0.94; axis 0 of
    (16384, 256) 0.84-0.87/0.87-0.90/0.91-1.11, 0.88/0.95/0.95; axis 1 of
    (16, 4096, 64) 0.81/0.78/0.79, 0.88/0.98/0.92. ``log_softmax``
    forward+backward, whose rule reads ``q``: (10_000_000,) 0.87/0.94, axis 0
    of (1024, 4096) 0.89-1.07/0.89, and on rows of 256-1024 too: (4096, 1024)
    1.01-1.05/0.88-1.00, (8192, 512) 0.99/0.80, (32, 8, 256, 256) 0.91-0.92/
    0.88-0.89 (two runs). For ``q`` without ``log_q`` rows of 256-1024 lose:
    forward+backward 1.13-1.85 and the gradient 1.15-1.23 at (4096, 1024),
    (8192, 512) and (32, 8, 256, 256), whether the rule takes the scaled
    tangent or not (``exp(d)`` is a full-size temporary more, 16-64 MiB,
    whose pages fault on every call: 2868 more faults a call at (4096, 1024)
    float32, none before)."""
    if "q" not in outputs and "exp" not in outputs:
        return False
    if _JAX_EXP_ONCE is not None:
        return _JAX_EXP_ONCE
    return "log_q" in outputs or axis != x.ndim - 1 or x.shape[axis] > _JAX_EXP_ONCE_LONGER_THAN


#: Whether JAX's large-array path sums ``frac(exp(d))`` beside ``exp(d)`` in its
#: one pass (:func:`_jax_sums_in_one_pass`); None: on devices other than the CPU.
_JAX_SUMS_IN_ONE_PASS: bool | None = None


def _jax_sums_in_one_pass() -> bool:
    """Whether :func:`jax_kernel`'s large-array path takes the one-tie slices'
    sum without the pivot (:func:`_jax_sum_below`) from the pass that sums
    ``exp(d)`` with the ties, for every slice, instead of a second pass in a
    ``lax.cond`` (on a GPU over every slice: no gather there) where some slice
    needs it: on devices other than the CPU. The values are those of the
    second pass: the slices with one tie (``0 < total < 2``) sum
    ``frac(exp(d))``, every other term exactly, the others keep ``total - 1``
    (bitwise the second pass's results on the 24 programs timed below).

    On an H200 (JAX 0.11.2, one process, 7 interleaved rounds, time against
    the second pass): float32 (4096, 1024) ``logsumexp`` 0.80, its gradient
    0.56, ``softmax`` and ``log_softmax`` forward+backward 0.75 and 0.45;
    (32, 8, 256, 256) 0.60-0.76; axis 0 of (1024, 4096) 0.55-0.84; one row of
    10M 0.78-0.83; float64 (4096, 1024) 0.53-0.94; float64 (32, 8, 256, 256)
    1.03-1.05, where the two sums shared one ``exp`` that XLA wrote to memory
    (now each takes its own, :func:`_jax_total_and_sum_below`: 0.74-0.90x the
    time, bitwise the same). Against ``jax.nn``, float32: 1.00-1.36 (before
    1.33-2.54), but (32, 8, 256, 256) ``softmax``/``log_softmax``
    forward+backward 2.23/1.57 (before 2.93/2.17): ``jax.nn``'s is one fused
    kernel a row, smoothmax's four passes (maximum, sums, the backward's sum,
    the output). XLA:CPU does not fuse the two reductions into one loop
    (both sums measured 3.7-4x ``jax.nn.logsumexp`` at (4096, 1024) float64,
    the ``frac`` sum alone 1.2x), so the CPU keeps its second pass over the
    slices that need it (:func:`_jax_rest_of_slices`)."""
    if _JAX_SUMS_IN_ONE_PASS is not None:
        return _JAX_SUMS_IN_ONE_PASS
    import jax

    return jax.default_backend() != "cpu"


#: Up to this many bytes JAX's kernel runs in one piece, fix-ups inline
#: (:func:`_jax_small`): measured faster than the large-array path up to 2 MiB
#: (jit, two cores, normal inputs with standard deviation 3: (256, 1024) float32
#: lse 204 vs 319 us, softmax forward+backward 323 vs 448 us; (512, 1024) 354
#: vs 397 and 502 vs 964 us).
_JAX_SMALL_BYTES = 1 << 21


@functools.lru_cache(maxsize=None)
def _jax_small_unless_batched(axis: int, t: float, outputs: tuple[str, ...]) -> Any:
    """:func:`_jax_small` on one array; under ``vmap``, :func:`jax_kernel` on the
    whole batch (batch axis first), which takes the large-array path where the
    batch is above ``_JAX_SMALL_BYTES`` (the one-piece path's two reductions
    over a large batch: 10x ``jax.nn`` measured)."""
    import jax
    import jax.numpy as jnp

    @jax.custom_batching.custom_vmap
    def small(x: Any) -> tuple[Any, ...]:
        return _jax_small(jnp, x, axis, t, outputs)

    @small.def_vmap
    def _batched(axis_size: int, in_batched: list[bool], x: Any) -> tuple[tuple[Any, ...], tuple[bool, ...]]:
        return jax_kernel(jnp, x, None, axis + 1, t, outputs), (True,) * len(outputs)

    return small


def _jax_small(xp: Any, x: Any, axis: int, t: float, outputs: tuple[str, ...]) -> tuple[Any, ...]:
    """:func:`jax_kernel` on up to ``_JAX_SMALL_BYTES``: in one piece, with the
    generic kernel's fix-ups of non-finite maxima inline (selects over a few
    elements cost less than a ``lax.cond``, which also keeps XLA from fusing the
    softmax's backward with its forward). The ties are counted by arithmetic
    that keeps NaN (:func:`_jax_ties`): the maximum may have skipped it."""
    x, maximum, shift, shifted, below, ties = _jax_small_terms(xp, x, axis, t)
    rest = xp.sum(xp.exp(shifted) * below, axis=axis, keepdims=True)
    return _jax_outputs(xp, x, maximum, shift, _jax_add_other_ties(xp, maximum, rest, ties), t, outputs)


def _jax_small_terms(xp: Any, x: Any, axis: int, t: float) -> tuple[Any, ...]:
    """What :func:`_jax_small` and :func:`_jax_wide_float32` sum: ``(x, maximum,
    shift, d, below, ties)``, ``x`` at the generic kernel's limits
    (``_kernel.shift_at_limits`` keeping NaN), ``d = (x - shift) / t``, ``below`` 1 where
    ``d < 0`` and 0 on the ties (in ``x``'s dtype), ``ties`` their count (:func:`_jax_ties`)."""
    maximum = xp.max(x, axis=axis, keepdims=True)
    x, shift = _kernel.shift_at_limits(xp, x, maximum, keep_nan=True)
    shifted = _jax_shifted(xp, x, shift, t)
    return x, maximum, shift, shifted, xp.astype(shifted < 0, x.dtype), _jax_ties(xp, shifted, axis)


#: float32 arrays of up to this many elements (the whole batch under ``vmap``)
#: take ``lse`` and ``log_q`` from a float64 sum (:func:`jax_refined_kernel`)
#: instead of the float32 kernel followed by the refinement's ``lax.cond``, whose
#: untaken branch alone costs 5-12 us a call there (XLA:CPU prepares each of its
#: kernels on every call: 17 more allocations a call at 16 elements, 1 for a
#: trivial branch). Under ``jit``, ratio to ``jax.nn.logsumexp`` (float32, two
#: cores): 1000 elements 1.05 against 1.25 with the cond, 4096 1.24 against 1.22
#: (float64's ``exp`` costs more per element than the cond saves from there on),
#: (32, 1000) 4.3 against 1.3.
_JAX_WIDE_FLOAT32_ELEMENTS = 2048


def jax_refined_kernel(
    x: Any, axis: int, temperature: float, outputs: tuple[str, ...], refined_kernel: Any
) -> tuple[Any, ...] | None:
    """The kernel's ``outputs`` with ``lse`` and ``log_q`` refined where one term
    dominates (:mod:`smoothmax._refine`), for the small float32 arrays that
    :func:`_jax_wide_float32` computes so (``refined_kernel(x, axis, t,
    outputs)``, the kernel followed by the refinement, takes batches above
    ``_JAX_WIDE_FLOAT32_ELEMENTS`` under ``vmap``); None elsewhere (float64,
    larger arrays, ``jax_enable_x64`` off, the cases the fast path declines)."""
    import jax
    import jax.numpy as jnp

    if (
        x.dtype != jnp.float32
        or not _jax_wide_float32_takes(x)
        or not jax.config.jax_enable_x64
        or _declines(x, None, axis, temperature, _without_rule_outputs(outputs))
    ):
        return None
    return _jax_wide_float32_unless_batched(axis, temperature, outputs, refined_kernel)(x)


def _jax_wide_float32_takes(x: Any) -> bool:
    """Whether a float32 array (a whole batch under ``vmap``) is small enough for
    :func:`_jax_wide_float32` (and for the one-piece path, which tests may shrink)."""
    return x.size <= _JAX_WIDE_FLOAT32_ELEMENTS and x.size * x.dtype.itemsize <= _JAX_SMALL_BYTES


@functools.lru_cache(maxsize=None)
def _jax_wide_float32_unless_batched(axis: int, t: float, outputs: tuple[str, ...], refined_kernel: Any) -> Any:
    """:func:`_jax_wide_float32` on one array; under ``vmap`` on the whole batch
    while it has at most ``_JAX_WIDE_FLOAT32_ELEMENTS`` elements, above that
    ``refined_kernel`` on it (float64's ``exp`` over a large batch: 4.3x
    ``jax.nn`` measured at (32, 1000))."""
    import jax
    import jax.numpy as jnp

    @jax.custom_batching.custom_vmap
    def wide(x: Any) -> tuple[Any, ...]:
        return _jax_wide_float32(jnp, x, axis, t, outputs)

    @wide.def_vmap
    def _batched(axis_size: int, in_batched: list[bool], x: Any) -> tuple[tuple[Any, ...], tuple[bool, ...]]:
        if _jax_wide_float32_takes(x):
            values = _jax_wide_float32(jnp, x, axis + 1, t, outputs)
        else:
            values = refined_kernel(x, axis + 1, t, outputs)
        return tuple(values), (True,) * len(outputs)

    return wide


def _jax_wide_float32(xp: Any, x: Any, axis: int, t: float, outputs: tuple[str, ...]) -> tuple[Any, ...]:
    """:func:`_jax_small` on a float32 array, with ``lse`` and ``log_q`` from
    ``log1p(rest)`` summed in float64, as the refinement computes float32 slices
    (:func:`smoothmax._refine._extended_log_sum`: ``x - m`` exact, every ``exp``,
    the sum and ``log1p`` to ~1e-16, one rounding to float32): on every slice,
    so no slice needs refining afterwards, and no ``lax.cond`` decides it. ``q``
    and ``sign`` keep :func:`_jax_small`'s float32 sum, bitwise, so that the
    gradient of ``logsumexp`` (which asks for ``lse`` and ``q``) stays bitwise
    ``softmax`` (which asks for ``q`` alone); ``log_q`` asked with ``q`` takes the
    float64 sum on the slices that the refinement refines only, as before, and
    the float32 one with ``q`` elsewhere (``softmax_entropy`` of 6 x 8 float32
    measured 2.58 ulp with the float64 ``log_q`` beside the float32 ``q``, 1.34 so)."""
    wide = "lse" in outputs or "log_q" in outputs
    narrow_outputs = tuple(name for name in outputs if name in ("q", "sign", "exp", "total"))
    x, maximum, shift, shifted, below, ties = _jax_small_terms(xp, x, axis, t)
    results: dict[str, Any] = {}
    rest = None
    if narrow_outputs:
        rest = _jax_add_other_ties(xp, maximum, xp.sum(xp.exp(shifted) * below, axis=axis, keepdims=True), ties)
        results.update(zip(narrow_outputs, _jax_outputs(xp, x, maximum, shift, rest, t, narrow_outputs)))
    if wide:
        # the same terms (the pivot and the other ties left out by the float32
        # mask) from x - shift in float64, exact: two float32 apart
        float64 = xp.float64
        wide_maximum = xp.astype(maximum, float64)
        wide_shifted = _jax_shifted(xp, xp.astype(x, float64), xp.astype(shift, float64), t)
        wide_rest = xp.sum(xp.exp(wide_shifted) * xp.astype(below, float64), axis=axis, keepdims=True)
        wide_rest = _jax_add_other_ties(xp, wide_maximum, wide_rest, xp.astype(ties, float64))
        log_sum = xp.log1p(wide_rest)
        lse = xp.astype(_jax_lse(xp, wide_maximum, log_sum, t), x.dtype)
        if "lse" in outputs:
            results["lse"] = lse
        if "log_q" in outputs:
            difference = _jax_divided(xp, x - shift, t)
            log_q = difference - xp.astype(log_sum, x.dtype)
            if rest is not None:
                # with q (softmax_entropy reads both): log_q from the float32 sum as q,
                # but on the slices the refinement refines (smoothmax._refine.refine_log_q)
                dominated = _refine._dominated(xp, lse, maximum, t)
                log_q = xp.where(dominated, log_q, difference - xp.log1p(rest))
            results["log_q"] = log_q
    return tuple(results[name] for name in outputs)


def _jax_ties(xp: Any, shifted: Any, axis: int) -> Any:
    """The number of ``d == 0`` (the ties of the maximum) along ``axis`` (keepdims)
    of ``d = (x - shift) / t <= 0``, NaN where a ``d`` is NaN: ``n - sum(-sign(d))``,
    exact (fewer than 2**24 terms). Arithmetic, so that NaN reaches it: XLA's
    CPU maximum may skip NaN (JAX 0.10's YNNPACK fusions of more than a few hundred
    elements; so may its ``maximum(nan, 0)``), and XLA turns
    the sum ``exp(d) * (d < 0)`` into a select, which drops it. (The sum keeps
    that mask: with ``-sign(d)`` there XLA fuses it into its consumers differently
    in different programs, and ``softmax`` measured one ulp from the gradient of
    ``logsumexp`` at ``t = 2``.)"""
    return shifted.shape[axis] - xp.sum(-xp.sign(shifted), axis=axis, keepdims=True)


def _jax_any(values: Any) -> Any:
    """``any(values)``; under ``vmap``, over the whole batch (unbatched), so that
    a ``lax.cond`` on it stays a cond: a batched predicate turns it into a
    select that computes both branches (measured 16x ``jax.nn`` under ``vmap``).
    The branches it chooses between give the same results either way."""
    return _jax_any_over_batch()(values)


@functools.lru_cache(maxsize=None)
def _jax_any_over_batch() -> Any:
    """The ``custom_vmap`` function behind :func:`_jax_any`, made once."""
    import jax
    import jax.numpy as jnp

    @jax.custom_batching.custom_vmap
    def any_over_batch(values: Any) -> Any:
        return jnp.any(values)

    @any_over_batch.def_vmap
    def _batched(axis_size: int, in_batched: list[bool], values: Any) -> tuple[Any, bool]:
        return jnp.any(values), False

    return any_over_batch


#: The slices that :func:`_jax_rest_of_slices` sums again are gathered this many
#: bytes at a time (at most an eighth of the slices): a block that stays in cache.
_JAX_GATHER_BYTES = 1 << 22


#: A middle axis's slices are gathered (:func:`_jax_rest_of_slices`) from this
#: length on: gathering 512-element ones measured 1.2-1.3x a pass over all of
#: them at (64, 512, 64) (0.6-0.8x at (16, 512, 128) and (16, 512, 512): no
#: rule found in the time), 1024 and longer 0.49-1.00x on every shape tried.
_JAX_MIDDLE_GATHER_FROM = 1024


@functools.lru_cache(maxsize=None)
def _jax_rest_of_slices(t: float, layout: str = "rows") -> Any:
    """``rest(x, shift, rest, again)`` on the slices of ``x``: the rows of a
    matrix ``(count, n)`` (``layout`` ``"rows"``), its columns ``(n, count)``
    (``"columns"``), or the columns of a stack of matrices ``(before, n,
    after)`` (``"middle"``, ``count = before * after`` in C order), with their
    shifts, their sums without the pivot from the sums with the ties
    (:func:`_jax_rest_from_total`) and the slices to sum again, each
    ``(count,)``: ``rest``, but on the slices ``again`` (one tie) the sum of
    ``exp(d)`` over ``d < 0`` again (:func:`_jax_sum_below`), the generic kernel's values.

    Only those slices are read again: their indices are gathered into a list
    (a prefix sum of the flags), and a ``lax.fori_loop`` takes them a block
    at a time (``_JAX_GATHER_BYTES``), gathers the block, sums it, and
    scatters the sums back; where more than half the slices need it, all are
    summed again in one pass (measured 1.1-1.2x faster than gathering them all).
    On normal rows with standard deviation 3, 11-22% of the slices have a sum
    below 2; summing every row again (the large-array path on other layouts)
    cost 1.7-2.2x ``jax.nn.logsumexp`` at (4096, 1024) and (32, 8, 256, 256),
    the blocks 1.2-1.7x. Columns (``logsumexp`` along axis 0 of (1024, 4096))
    are gathered into a block of their own before they are summed (an
    ``optimization_barrier``): XLA's gather fused into the reduction read
    512 of the 4096 columns in 5.5 ms, 2x a pass over all of them, the block
    1.1 ms; so are the columns of a middle axis (``(before, n, after)``), each
    picked by its matrix and column, a row of the block read from one matrix row
    at a time, where at most a quarter of them need it and they are at least
    ``_JAX_MIDDLE_GATHER_FROM`` long: ``logsumexp`` along axis 1 of (64, 1024,
    64), (32, 1024, 64), (4, 1024, 1024), (8, 1024, 512), (64, 2048, 32) and
    axis 2 of (8, 4, 1024, 128) 0.49-0.82x the time of summing every slice again
    (2.0-2.5x ``jax.nn`` before, 1.1-1.7x after), (256, 1024, 16) 1.00x.
    Under ``vmap`` the batch is folded into the rows (a batched loop predicate
    would run every block for every member); batched columns and middle axes
    take the one pass. Measured on CPU, and taken there only: on a GPU each
    step of a ``lax.while_loop`` waits on the device for its predicate, and
    both sums run in the first pass there (:func:`_jax_sums_in_one_pass`)."""
    import jax
    import jax.numpy as jnp

    columns = layout != "rows"
    along = 0 if columns else 1  # the reduced dimension of a matrix

    def rest_of_slices(x: Any, shift: Any, rest: Any, again: Any) -> Any:
        count, n = shift.shape[0], x.shape[-2 if columns else -1]
        per_block = max(1, min(count // 8, _JAX_GATHER_BYTES // (n * x.dtype.itemsize)))
        found = jnp.sum(again, dtype=jnp.int32)

        def by_blocks(x: Any, shift: Any, rest: Any, again: Any) -> Any:
            positions = jax.lax.associative_scan(jnp.add, again.astype(jnp.int32)) - 1
            # indices of the slices that need it, in order; padded with slice 0
            order = jnp.zeros(count + per_block, jnp.int32).at[jnp.where(again, positions, count + per_block)].set(
                jnp.arange(count, dtype=jnp.int32), mode="drop"
            )
            blocks = (found + per_block - 1) // per_block
            return jax.lax.fori_loop(0, blocks, functools.partial(sum_block, x, shift, order), rest)

        def sum_block(x: Any, shift: Any, order: Any, block: Any, rest: Any) -> Any:
            start = block * per_block
            indices = jax.lax.dynamic_slice(order, (start,), (per_block,))
            block_shift = shift.at[indices].get(mode="promise_in_bounds")
            if columns:  # (n, per_block), read a row of x at a time
                if layout == "middle":  # each slice by its matrix and column
                    after = x.shape[2]
                    starts = jnp.stack([indices // after, indices % after], axis=1)
                    numbers = jax.lax.GatherDimensionNumbers(
                        offset_dims=(0,), collapsed_slice_dims=(0, 2), start_index_map=(0, 2)
                    )
                    gathered = jax.lax.gather(x, starts, numbers, (1, n, 1), mode="promise_in_bounds")
                else:
                    gathered = x.at[:, indices].get(mode="promise_in_bounds")
                gathered, block_shift = jax.lax.optimization_barrier((gathered, block_shift[None, :]))
            else:
                gathered = x.at[indices].get(mode="promise_in_bounds", indices_are_sorted=True)
                block_shift = block_shift[:, None]
            below = _jax_sum_below(jnp, _jax_shifted(jnp, gathered, block_shift, t), along)
            valid = start + jnp.arange(per_block, dtype=jnp.int32) < found
            return rest.at[jnp.where(valid, indices, count)].set(below.reshape(per_block), mode="drop")

        # most slices: one pass over all of them costs less than gathering them
        # (nor is the list of them made then: a scan and a scatter over every slice);
        # a middle axis's gather costs more per element: the one pass from a quarter on
        share = 4 if layout == "middle" else 2
        return jax.lax.cond(share * found > count, one_pass, by_blocks, x, shift, rest, again)

    def one_pass(x: Any, shift: Any, rest: Any, again: Any) -> Any:
        # x (..., count, n), (..., n, count) or (..., before, n, after), the others (..., count)
        if layout == "middle":
            kept = x.shape[:-3] + (x.shape[-3], 1, x.shape[-1])
            reduced = [jnp.reshape(value, kept) for value in (shift, rest, again)]
            below = _jax_rest_in_one_pass(jnp, x, *reduced, x.ndim - 2, t)
            return jnp.reshape(below, shift.shape)
        reduced = [jnp.expand_dims(value, value.ndim - 1 + along) for value in (shift, rest, again)]
        below = _jax_rest_in_one_pass(jnp, x, *reduced, x.ndim - 2 + along, t)
        return jnp.squeeze(below, below.ndim - 2 + along)

    @jax.custom_batching.custom_vmap
    def batchable(x: Any, shift: Any, rest: Any, again: Any) -> Any:
        return rest_of_slices(x, shift, rest, again)

    @batchable.def_vmap
    def _batched(axis_size: int, in_batched: list[bool], *values: Any) -> tuple[Any, bool]:
        x, shift, rest, again = (
            value if batched else jnp.broadcast_to(value, (axis_size,) + value.shape)
            for value, batched in zip(values, in_batched)
        )
        if columns:
            return one_pass(x, shift, rest, again), True
        rows = axis_size * x.shape[1]
        folded = batchable(x.reshape(rows, x.shape[2]), *(value.reshape(rows) for value in (shift, rest, again)))
        return folded.reshape(axis_size, -1), True

    return batchable


def _jax_count_positive_inf(xp: Any, x: Any, axis: int) -> Any:
    """The number of ``+inf`` entries along ``axis`` (keepdims; NaN where there is
    a NaN): ``floor((sign(x - M) + 1) / 2)`` is 1 on ``+inf``, 0 on every other
    number (``M`` the largest finite one; ``sign`` is -1 below it, 0 on it) and NaN
    on NaN, arithmetic that XLA fuses into the reduction (a compare, a convert or
    a select there makes a full-size temporary). Not ``max(sign(x - M), 0)``: XLA's
    CPU fusions (JAX 0.10) take the maximum of NaN and 0 as 0."""
    largest = _kernel._constant(xp, float(np.finfo(x.dtype).max), x)
    half = _kernel._constant(xp, 0.5, x)
    return xp.sum(xp.floor((xp.sign(x - largest) + 1) * half), axis=axis, keepdims=True)


def _jax_one_tie(total: Any) -> Any:
    """Per slice, from its sum with the ties ``total = k + sum(exp(d) for d < 0)``:
    whether it has one tie and so may need its sum without the pivot again
    (``0 < total < 2``; a slice with no entries sums to 0, NaN to NaN)."""
    return (total > 0) & (total < 2)


def _jax_rest_from_total(xp: Any, total: Any) -> Any:
    """The sum without the pivot from the sum with the ties: ``total - 1``, at
    least 0 (a slice with no entries), NaN where NaN. Where ``total >= 2``
    it is the generic kernel's sum but for rounding (``1 + rest`` is ``total``
    again, exactly); where ``total < 2`` (one tie) its error is absolute,
    ~eps, not relative to ``rest``.

    ``max(total - 1, 0)`` by :func:`_jax_positive_part`: this maximum ran in a
    loop fusion that keeps NaN, which a change of XLA's fusion choices need not keep."""
    return _jax_positive_part(xp, total - _kernel._constant(xp, 1.0, total))


def _jax_positive_part(xp: Any, values: Any) -> Any:
    """``max(values, 0)`` in arithmetic, ``(a + |a|) / 2`` (exact), NaN on NaN: XLA's
    CPU fusions may take the maximum of NaN and 0 as 0 (see :func:`_jax_ties`)."""
    return (values + xp.abs(values)) * _kernel._constant(xp, 0.5, values)


def _jax_lse_keeps_total(t: float) -> float:
    """The power of two ``T`` from which a one-tie slice's ``lse``, asked for
    without ``q`` and ``log_q`` (both need every digit, see :func:`jax_kernel`),
    may take ``total - 1`` as its ``rest``: ``ulp(lse) >= 16 t eps`` for ``|lse| >= T``.

    XLA's sum of ``exp(d)`` over a slice with one tie (the 1 and small terms;
    ``n`` = 256 ... 10**6, float32, CPU) measured within 4.04 eps of the exact
    sum, relative, so ``lse = m + t log(total)`` errs by up to ``4.04 t eps``
    beyond its own rounding: a quarter of an ulp from ``T`` on (peaked rows
    with ``lse`` 16-40: within 0.62 ulp of mpmath), up to 1.9 ulp measured below
    (``lse`` 2.2-9), where the slice is summed again."""
    return 2.0 ** math.ceil(math.log2(16.0 * t))


#: float32 rows up to this long sum ``exp(d)`` in float64 on JAX's large-array
#: path, for every output (:func:`_jax_wide_total`).
_JAX_WIDE_TOTAL_LONGEST = 2048


def _jax_wide_total(x: Any, axis: int) -> bool:
    """Whether the large-array path sums float32 ``exp(d)`` in float64: along a
    last axis up to ``_JAX_WIDE_TOTAL_LONGEST``, on CPU, with ``jax_enable_x64``.
    ``total - 1`` is then good to ``2 (n - 1)`` float64 eps, so the one-tie rows
    that a float32 total sends to a second sum (every one for ``q`` and
    ``log_q``, those with ``|lse| < 16 t`` for ``lse`` alone: 11% and 22% of the
    rows of (4096, 1024) and (32, 8, 256, 256) at standard deviation 3),
    gathered and summed again (:func:`_jax_rest_of_slices`), keep it: ``q``
    divides by the total itself, rounded once (no row is summed again for it),
    ``lse`` and ``log_q`` take ``log1p(total - 1)`` rounded once, summed again
    only where its rounding may reach them (:func:`_jax_lse_keeps_wide_total`,
    :func:`_jax_log_q_keeps_wide_total`: rows whose ``lse`` or ``rest`` is below
    ``~ t n 2**-27``, rare), as accurate as the generic kernel (or more).

    ``logsumexp`` under ``jit``, ratio to ``jax.nn`` before -> after (one
    process, interleaved rounds): (4096, 1024) 1.89 -> 1.39, (32, 8, 256, 256)
    1.61 -> 1.37, (1024, 1024) 1.80 -> 1.39, (2048, 2048) 1.53 -> 1.41, (8192,
    512) 1.64 -> 1.37, (16384, 256) 2.15 -> 1.62, (65536, 64) 2.21 -> 1.16. Time
    of the gradient of ``logsumexp``, ``softmax`` and ``log_softmax`` forward +
    backward, after / before: (4096, 1024) 0.80, 0.92, 0.83; (32, 8, 256, 256)
    0.93, 0.99, 0.92; (16384, 256) 1.05 (noisy), 0.94, 0.63; (65536, 64) 0.55,
    0.70, 0.61; (1024, 1024) and (2048, 2048) 0.81-1.01. Longer rows have fewer
    one-tie rows, and XLA's converting sum of them ran erratically (``lse``
    alone: (1024, 4096) 1.37 -> 1.36, (256, 16384) 1.47 -> 1.33, but (64, 65536)
    1.05 -> 1.50 and (128, 32768) 1.98 -> 14.4). Not along an outer axis (the
    converting column sum alone measured 1.54x ``jax.nn`` at (1024, 4096) axis 0,
    the float32 total with its second sum 1.37x)."""
    import jax

    return (
        x.dtype == np.float32
        and axis == x.ndim - 1
        and x.shape[axis] <= _JAX_WIDE_TOTAL_LONGEST
        and jax.config.jax_enable_x64
        and jax.default_backend() == "cpu"
    )


def _jax_lse_keeps_wide_total(t: float, n: int) -> float:
    """:func:`_jax_lse_keeps_total` for a float64 ``total`` of float32 terms: its
    rounding is below ``2 (n - 1)`` float64 eps (any order of summation, ``total
    < 2``), ``t`` times that in ``lse``: a quarter of a float32 ulp from
    ``T = t n 2**-27`` on (a power of two)."""
    return 2.0 ** math.ceil(math.log2(t * n * 2.0**-27))


def _jax_log_q_keeps_wide_total(n: int) -> float:
    """The ``rest`` from which ``log_q`` may take a float64 ``total - 1`` of float32
    terms: its rounding (``2 (n - 1)`` float64 eps, :func:`_jax_lse_keeps_wide_total`)
    is a quarter of a float32 ulp of ``log(1 + rest) ~ rest`` from ``n 2**-27`` on,
    and so of every ``log_q = d / t - log(1 + rest)`` (``d <= 0``)."""
    return n * 2.0**-27


def _jax_lse(xp: Any, maximum: Any, log_sum: Any, t: float) -> Any:
    """``lse = m + t log_sum``."""
    return maximum + log_sum if t == 1.0 else maximum + _kernel._constant(xp, t, log_sum) * log_sum


def _jax_rest_in_one_pass(xp: Any, x: Any, shift: Any, rest: Any, again: Any, axis: int, t: float) -> Any:
    """The sum without the pivot from one more pass over every slice (keepdims
    ``shift``, ``rest`` and ``again``): ``sum(exp(d) for d < 0)`` where ``again``,
    ``rest`` elsewhere."""
    below = _jax_sum_below(xp, _jax_shifted(xp, x, shift, t), axis)
    return xp.where(again, below, rest)


def _jax_total_and_sum_below(xp: Any, x: Any, shift: Any, axis: int, t: float) -> tuple[Any, Any]:
    """``sum(exp(d))`` and :func:`_jax_sum_below` along ``axis`` (keepdims), each
    from its own ``exp``: the second's ``d`` from ``-(shift - x)``, bitwise
    ``x - shift``, which XLA does not merge with the first. With one ``exp`` of
    two consumers, XLA on GPUs does not copy a float64 ``exp`` (an expensive op
    there) into both reductions, and writes ``exp(d)`` to memory between two
    passes (float64 ``logsumexp`` at (32, 8, 256, 256): 2.06x ``jax.nn`` on an
    H200); as two, each fuses into its reduction and the two into one pass."""
    total = xp.sum(xp.exp(_jax_shifted(xp, x, shift, t)), axis=axis, keepdims=True)
    return total, _jax_sum_below(xp, _jax_divided(xp, -(shift - x), t), axis)


def _jax_sum_below(xp: Any, shifted: Any, axis: int) -> Any:
    """``sum(exp(d) for d < 0)`` along ``axis`` (keepdims) on slices whose sum
    with the ties is below 2 (:func:`_jax_one_tie`): their only ``exp(d)``
    equal to 1 is the pivot's (two would sum to 2 or more, near-ties whose
    ``exp`` rounds to 1 too), so ``frac(exp(d)) = exp(d) - floor(exp(d))``
    is every other term exactly, and 0 in the pivot's place. Arithmetic that
    XLA vectorizes in the fused reduction: at (4096, 1024) and along axis 0 of
    (1024, 4096) the pass measured 1.20-1.31x a plain sum of ``exp(d)``, against
    1.26-1.45x with the mask as ``sign(-d)`` and 1.4-3.9x as a select."""
    scaled = xp.exp(shifted)
    return xp.sum(scaled - xp.floor(scaled), axis=axis, keepdims=True)


def _jax_add_other_ties(xp: Any, maximum: Any, rest: Any, ties: Any) -> Any:
    """The sum without the pivot from the sum without the ties: their count but
    one, each exactly ``exp(0) = 1`` (none on a slice without entries). NaN stays
    NaN: the count carries it (:func:`_jax_ties`), and so does a NaN maximum."""
    rest = rest + _jax_positive_part(xp, ties - 1)  # max(k - 1, 0), NaN kept
    return xp.where(xp.isnan(maximum), maximum, rest)


def _jax_shifted(xp: Any, x: Any, shift: Any, t: float) -> Any:
    """``d = (x - shift) / t``."""
    return _jax_divided(xp, x - shift, t)


def _jax_divided(xp: Any, difference: Any, t: float) -> Any:
    return difference if t == 1.0 else difference / _kernel._constant(xp, t, difference)


def _jax_difference_at_limits(xp: Any, x: Any, maximum: Any, shift: Any) -> Any:
    """``x - shift`` with the generic kernel's limit on slices whose maximum is
    ``+inf`` (0 on their ``+inf`` entries, ``-inf`` elsewhere), in arithmetic:
    ``min(((x - s) - f) * c, 0)`` with ``s, f, c = F, 1, inf`` there (``F`` the
    largest float: ``+inf`` entries give ``+inf``, finite ones at most ``-1``
    before the scaling by ``inf``) and ``shift, 0, 1`` elsewhere, where it is
    ``x - shift`` bitwise (``x - shift <= 0``; NaN stays NaN).

    The selects of ``at_positive_inf`` are computed on the reduced arrays only:
    on the full-size array they keep XLA (CPU) from fusing the softmax's
    forward with a backward that reduces ``q``. ``softmax`` forward+backward
    under ``jit`` (one process, both versions, 20 repeats alternating their
    order, ratio to ``jax.nn.softmax``): (4096, 1024) 2.35 -> 2.02 (float32),
    2.21 -> 1.63 (float64); (32, 8, 256, 256) 1.94 -> 1.42, 1.85 -> 1.44;
    (1024, 4096) axis 0 float32 3.05 -> 2.62. The forward alone pays the three
    extra operations: 1-5% slower (1.45-2.47x either way). Only for ``q`` alone:
    ``log_softmax`` forward+backward measured the same either way, and the
    gradient of ``lse`` fuses the selects (3-6% slower with the arithmetic);
    and only with several slices: with one XLA fuses the selects (the
    arithmetic measured 6-9% slower at (10_000_000,)).
    """
    positive_inf = maximum == math.inf
    largest = _kernel._constant(xp, float(np.finfo(x.dtype).max), x)
    flag = xp.astype(positive_inf, x.dtype)
    scale = xp.where(positive_inf, _kernel._constant(xp, math.inf, x), _kernel._constant(xp, 1.0, x))
    difference = ((x - xp.where(positive_inf, largest, shift)) - flag) * scale
    return xp.minimum(difference, _kernel._constant(xp, 0.0, x))


def _jax_outputs(
    xp: Any,
    x: Any,
    maximum: Any,
    shift: Any,
    rest: Any,
    t: float,
    outputs: tuple[str, ...],
    difference: Any = None,
    total: Any = None,
    exponential: Any = None,
) -> tuple[Any, ...]:
    """The named outputs from the maximum, the shift (the maximum where finite) and
    the sum without the pivot, with the generic kernel's formulas; ``difference``:
    ``x - shift`` where the caller has it. A wider ``rest`` (float64 for float32
    ``x``) gives ``lse`` and ``log(1 + rest)`` each rounded once to ``x``'s dtype;
    ``total``, where given, is the sum ``q`` divides by (else ``1 + rest``); the
    JVP rule's ``exp`` and ``total`` (:data:`_JAX_RULE_OUTPUTS`) are the very
    arrays ``q = exp / total`` is computed from."""
    one = _kernel._constant(xp, 1.0, x)
    if difference is None and ("q" in outputs or "log_q" in outputs or "exp" in outputs):
        difference = x - shift
    if total is None:
        total = one + rest
    if exponential is None and ("q" in outputs or "exp" in outputs):
        exponential = xp.exp(_jax_divided(xp, difference, t))
    log_sum = xp.log1p(rest)
    results: dict[str, Any] = {}
    for name in outputs:
        if name == "lse":
            lse = _jax_lse(xp, xp.astype(maximum, rest.dtype), log_sum, t)
            results[name] = xp.astype(lse, x.dtype)
        elif name == "sign":
            # the sum of a slice with no entries is 0
            results[name] = xp.where(maximum == -math.inf, _kernel._constant(xp, 0.0, x), _kernel._sign(xp, total))
        elif name == "q":
            results[name] = exponential / total
        elif name == "exp":
            results[name] = exponential
        elif name == "total":
            results[name] = total
        else:  # log_q
            results[name] = _jax_divided(xp, difference, t) - xp.astype(log_sum, x.dtype)
    return tuple(results[name] for name in outputs)


@functools.lru_cache(maxsize=None)
def _jax_floats() -> tuple[Any, ...]:
    """The floating dtypes the JAX kernel takes (others: the generic kernel)."""
    import jax.numpy as jnp

    return (jnp.float32, jnp.float64)


# --------------------------------------------------------------------------- entry points

#: Floating dtypes the entry points take (others go through ``prepare``).
_ENTRY_DTYPES: dict[str, tuple[Any, ...]] = {}


def _entry_axis(axis: Any, ndim: int) -> int | None:
    """``axis`` as a non-negative int where it is a plain in-range int (or None on
    1-d input), else None: the full path (with its validation and errors) runs."""
    if axis is None:
        return 0 if ndim == 1 else None
    if type(axis) is int and -ndim <= axis < ndim:
        return axis + ndim if axis < 0 else axis
    return None


def _torch_entry(name: str, x: Any, axis: Any, keepdims: bool) -> Any:
    """The public functions' hot path for float32/float64 tensors with only ``axis``
    (and ``keepdims``) given: straight to the adapter's kernel, skipping ``prepare``.
    Returns None where the full path must run."""
    dtypes = _ENTRY_DTYPES.get("torch")
    if dtypes is None:
        import torch

        dtypes = _ENTRY_DTYPES["torch"] = (torch.float32, torch.float64)
    if x.dtype not in dtypes:
        return None
    working = _entry_axis(axis, x.ndim)
    if working is None:
        return None
    _torch = _TORCH_ADAPTER[0]
    if _torch is None:
        from . import _torch

        _TORCH_ADAPTER[0] = _torch
    if name == "lse" and _torch.plain_forward(x):
        small = _torch_small_lse(x, working, 1.0)
        if small is not None:
            small = _numpy_refined_small_lse(x, working, small)
            if x.ndim == 1 and not keepdims:  # a NumPy scalar (its reshape to () stays one)
                return _torch.torch.from_numpy(np.asarray(small))
            return _torch.torch.from_numpy(small.reshape(x.shape[:working] + ((1,) if keepdims else ())))
    (value,) = _torch.kernel(x, None, working, 1.0, (name,), squeeze=name == "lse" and not keepdims)
    return value


def _numpy_entry(name: str, x: Any, axis: Any, keepdims: bool) -> Any:
    """As :func:`_torch_entry`, for float32/float64 ``numpy.ndarray``."""
    if x.dtype not in (np.float32, np.float64):
        return None
    working = _entry_axis(axis, x.ndim)
    if working is None:
        return None
    xp = _numpy_namespace()
    (value,) = refined(numpy_kernel, xp, x, None, working, 1.0, (name,))
    if name == "lse" and not keepdims:
        value = value.reshape(x.shape[:working] + x.shape[working + 1 :])
    return value


def _numpy_namespace() -> Any:
    """``array_api_compat.numpy``, imported once."""
    xp = _NUMPY_NAMESPACE[0]
    if xp is None:
        import array_api_compat.numpy as xp

        _NUMPY_NAMESPACE[0] = xp
    return xp


_NUMPY_NAMESPACE: list[Any] = [None]
_TORCH_ADAPTER: list[Any] = [None]

#: Array type -> entry point, filled by :func:`entry_for` (a plain dict: one lookup).
ENTRIES: dict[type, Any] = {}


def entry_for(kind: type, namespace_name: str) -> None:
    """Register the entry point of array type ``kind`` of namespace ``namespace_name``."""
    if namespace_name == "array_api_compat.numpy" and kind is np.ndarray:
        ENTRIES[kind] = _numpy_entry  # not subclasses (matrix, masked arrays)
    elif namespace_name == "array_api_compat.torch" and f"{kind.__module__}.{kind.__qualname__}" in (
        "torch.Tensor",
        "torch.nn.parameter.Parameter",
    ):
        ENTRIES[kind] = _torch_entry


# --------------------------------------------------------------------------- dispatch

#: Namespace name -> fast kernel, for the namespaces without an autodiff adapter
#: (the adapters in ``_torch``/``_jax`` call :func:`torch_kernel`/:func:`jax_kernel`).
_PLAIN_FAST_KERNELS = {
    "array_api_compat.numpy": numpy_kernel,
}


def plain_kernel(xp: Any) -> Any:
    """The kernel ``f(xp, x, weights, axis, temperature, outputs)`` for namespace ``xp``:
    its fast path where it has one, else the generic kernel; on eager arrays its
    ``lse`` and ``log_q`` refined where one term dominates (:func:`refined`)."""
    kernel = _PLAIN_FAST_KERNELS.get(xp.__name__, _kernel.kernel)

    def refined_kernel(
        xp: Any, x: Any, weights: Any, axis: int, temperature: float, outputs: tuple[str, ...]
    ) -> tuple[Any, ...]:
        if is_lazy_array(x):
            return kernel(xp, x, weights, axis, temperature, outputs)
        return refined(kernel, xp, x, weights, axis, temperature, outputs)

    return refined_kernel


def refined(
    kernel: Any, xp: Any, x: Any, weights: Any, axis: int, temperature: float, outputs: tuple[str, ...]
) -> tuple[Any, ...]:
    """``kernel(xp, x, weights, axis, temperature, outputs)`` (eager arrays) with
    ``lse`` and ``log_q`` refined where one term dominates
    (:func:`smoothmax._refine.refine_outputs`); ``log_q`` without ``lse`` asks
    the kernel for ``lse`` too (a reduced array: what the check reads)."""
    asks = "lse" in outputs or "log_q" in outputs
    if weights is not None or not asks or not _refine.applies(xp, x, temperature):
        return kernel(xp, x, weights, axis, temperature, outputs)
    asked = outputs if "lse" in outputs else outputs + ("lse",)
    values = kernel(xp, x, weights, axis, temperature, asked)
    if not _refine.may_need_refining(xp, values[asked.index("lse")], temperature):
        return values[: len(outputs)]  # the common case: one check on the reduced array
    refined = _refine.refine_outputs(xp, x, dict(zip(asked, values)), axis, temperature)
    return tuple(refined[name] for name in outputs)
