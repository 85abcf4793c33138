"""Out-of-core log-sum-exp and softmax with Dask.

    python examples/dask_large.py [--small]

A lazy ``dask.array`` of standard normal values, many times larger than one chunk,
each row spread over several chunks. smoothmax takes Dask arrays like any other
and returns lazy Dask arrays:

1. ``logsumexp(x, axis=1)`` and ``logsumexp(x)`` are single pass: one
   ``dask.array.reduction`` that folds each chunk into a streaming
   ``(maximum, rest)`` state. A counter in the chunk producer shows that each
   chunk is produced (read) exactly once, where the textbook two-pass recipe
   (``m = max(x)``, then ``log(sum(exp(x - m))) + m``) produces it twice.
2. The results agree with NumPy: a sample of rows is computed into memory and
   reduced by smoothmax's NumPy path (the same values within 1 ulp).
3. ``softmax(x, axis=1)`` is lazy too; its rows sum to 1, and the sampled rows
   agree with NumPy's softmax to a few ulp per entry.
4. ``logmeanexp(x)``, the log of the mean of ``exp(x)``, is close to the exact
   ``log E[exp(X)] = 1/2`` of a standard normal variable.

``--small`` (or ``SMOOTHMAX_EXAMPLES_SMALL=1``) uses a smaller array.
"""

from __future__ import annotations

import math
import os
import sys
import threading

import dask
import dask.array as da
import numpy as np

import smoothmax

SMALL = "--small" in sys.argv[1:] or os.environ.get("SMOOTHMAX_EXAMPLES_SMALL") == "1"


class ChunkCounter:
    """Counts how many chunks a computation produced (threaded scheduler)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, block: np.ndarray) -> np.ndarray:
        with self._lock:
            self.count += 1
        return block


def ulps(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.spacing(np.maximum(np.abs(a), np.abs(b)))))


def main() -> None:
    dask.config.set(scheduler="threads")
    rows, columns = (16, 250_000) if SMALL else (64, 1_000_000)
    chunks = (8, 50_000) if SMALL else (16, 200_000)
    counter = ChunkCounter()
    # map_blocks(counter) runs once each time a chunk is produced: the stand-in for a read from disk
    x = da.random.default_rng(0).standard_normal((rows, columns), chunks=chunks).map_blocks(counter)
    chunk_count = math.prod(x.numblocks)
    print(f"x: {rows} x {columns} float64 ({x.nbytes / 2**20:.0f} MiB), chunks of {chunks[0]} x {chunks[1]}"
          f" ({x.chunksize[0] * x.chunksize[1] * 8 / 2**20:.1f} MiB), {chunk_count} chunks;"
          f" each row spans {x.numblocks[1]} chunks")

    print("\n1. single pass: logsumexp reads each chunk once")
    row_lse = smoothmax.logsumexp(x, axis=1)  # lazy
    assert isinstance(row_lse, da.Array)
    counter.count = 0
    row_lse, total_lse = dask.compute(row_lse, smoothmax.logsumexp(x))
    single_reads = counter.count
    counter.count = 0
    maximum = x.max(axis=1, keepdims=True).compute()
    two_pass = (da.log(da.exp(x - maximum).sum(axis=1)) + maximum[:, 0]).compute()
    two_pass_reads = counter.count
    print(f"   smoothmax.logsumexp(x, axis=1) and logsumexp(x): {single_reads} chunk reads"
          f" ({single_reads / chunk_count:.0f} per chunk)")
    print(f"   two-pass recipe, max then sum:                    {two_pass_reads} chunk reads"
          f" ({two_pass_reads / chunk_count:.0f} per chunk)")
    print(f"   rows 0-2: {row_lse[:3]}; whole array: {float(total_lse):.15f}")
    assert single_reads == chunk_count  # the two reductions shared one read of each chunk
    assert two_pass_reads == 2 * chunk_count
    assert ulps(row_lse, two_pass) <= 2.0

    print("\n2. compared with NumPy on a sample of rows")
    rng = np.random.default_rng(1)
    sample = np.sort(rng.choice(rows, size=4, replace=False))
    in_memory = x[sample].compute()  # a NumPy array
    assert isinstance(in_memory, np.ndarray)
    numpy_lse = smoothmax.logsumexp(in_memory, axis=1)
    print(f"   rows {sample.tolist()}: Dask {row_lse[sample]}")
    print(f"   {'':>{len(str(sample.tolist())) + 5}} NumPy {numpy_lse}  (largest difference {ulps(row_lse[sample], numpy_lse):.0f} ulp)")
    assert ulps(row_lse[sample], numpy_lse) <= 1.0

    print("\n3. softmax over rows that span several chunks")
    p = smoothmax.softmax(x, axis=1)  # lazy, same shape as x
    row_sums = p.sum(axis=1).compute()
    sampled = p[sample].compute()
    numpy_p = smoothmax.softmax(in_memory, axis=1)
    print(f"   row sums: min {row_sums.min():.17g}, max {row_sums.max():.17g}")
    # Both compute exp(x_i - m) / (1 + rest); only the order of the sum `rest` differs
    # (chunk by chunk here). Each entry carries the rounding of x_i - m amplified by
    # exp's condition number |x_i - m| (~10 here), so a few ulp apart is expected.
    print(f"   sampled rows vs NumPy: largest difference {ulps(sampled, numpy_p):.0f} ulp per entry")
    np.testing.assert_allclose(row_sums, 1.0, rtol=1e-12)
    assert ulps(sampled, numpy_p) <= 8.0

    print("\n4. logmeanexp(x) estimates log E[exp(X)] = 1/2 for X ~ N(0, 1)")
    estimate = float(smoothmax.logmeanexp(x).compute())
    # the standard error of the mean of exp(X) is sqrt((e^2 - e) / n), relative to e^{1/2}
    standard_error = math.sqrt((math.e**2 - math.e) / x.size) / math.exp(0.5)
    print(f"   logmeanexp(x) = {estimate:.6f}; exact 0.5; standard error {standard_error:.1e}")
    assert abs(estimate - 0.5) < 5 * standard_error

    print("\nOK: single pass over each chunk, results equal to NumPy's on the sample")


if __name__ == "__main__":
    main()
