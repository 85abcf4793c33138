"""Dask: single-pass ``smoothmax.logsumexp`` vs the textbook two-pass recipe.

    python benchmarks/dask_bench.py [--size 1e8] [--chunk 1e7] [--repeat 3] [--no-reference] [--json PATH]

The array is ``dask.array.random.default_rng(0).standard_normal(size, chunks=chunk)``
(float64): every chunk is *produced* when a task needs it, like a chunk read from
disk, and producing it costs about as much as reducing it.

* ``smoothmax``: ``smoothmax.logsumexp(x).compute()``: one ``dask.array.reduction``;
  each chunk is produced once, folded into a ``(maximum, rest)`` state and released.
* ``two-pass``: ``m = x.max().compute(); (log(exp(x - m).sum()) + m).compute()``:
  the textbook recipe; each chunk is produced twice.
* ``two-pass, one graph``: the same recipe in one graph. Dask then produces each chunk
  once, but must hold *every* chunk in memory until the maximum is known.

Each variant runs in its own process (so that its peak RSS is its own); the table
gives the best wall time of ``--repeat`` runs and the peak RSS above the process's
RSS before computing. The results are compared bit for bit (in ulps) with each other
and with a long-double reference computed chunk by chunk.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

VARIANTS = ("smoothmax", "two-pass", "two-pass, one graph")


def make_array(size: int, chunk: int):
    import dask.array as da

    return da.random.default_rng(0).standard_normal(size, chunks=chunk)


def run_variant(variant: str, size: int, chunk: int, repeat: int) -> dict:
    """Run one variant in this process; return its timings, memory and result."""
    import dask
    import dask.array as da
    import psutil

    import smoothmax

    x = make_array(size, chunk)
    dask.config.set(scheduler="threads")
    baseline = psutil.Process().memory_info().rss
    times, value = [], math.nan
    for _ in range(repeat):
        start = time.perf_counter()
        if variant == "smoothmax":
            value = float(smoothmax.logsumexp(x).compute())
        elif variant == "two-pass":
            m = x.max().compute()
            value = float((da.log(da.exp(x - m).sum()) + m).compute())
        else:
            m = x.max()
            value = float((da.log(da.exp(x - m).sum()) + m).compute())
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {"seconds": min(times), "all_seconds": times, "peak_above_baseline": peak - baseline, "value": value}


def reference(size: int, chunk: int) -> float:
    """LSE in long double (64-bit mantissa on x86), one chunk at a time."""
    import numpy as np

    x = make_array(size, chunk)
    blocks = [block for block in x.blocks]
    maximum = max(float(block.max().compute()) for block in blocks)
    total = np.longdouble(0)
    for block in blocks:
        values = block.compute().astype(np.longdouble)
        total += np.exp(values - np.longdouble(maximum)).sum()
    return float(np.longdouble(maximum) + np.log(total))


def ulps(a: float, b: float) -> float:
    return abs(a - b) / math.ulp(max(abs(a), abs(b)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=float, default=1e8)
    parser.add_argument("--chunk", type=float, default=1e7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # internal: one child run
    arguments = parser.parse_args()
    size, chunk = int(arguments.size), int(arguments.chunk)

    if arguments.variant:
        print(json.dumps(run_variant(arguments.variant, size, chunk, arguments.repeat)))
        return

    import dask

    print(f"logsumexp of {size:.0e} float64 (standard normal, dask.array.random), chunks of {chunk:.0e}"
          f" ({chunk * 8 / 2**20:.0f} MiB, {math.ceil(size / chunk)} chunks); dask {dask.__version__},"
          f" threaded scheduler, {os.cpu_count()} cores; best of {arguments.repeat}")
    results = {}
    for variant in VARIANTS:
        command = [sys.executable, __file__, "--size", str(size), "--chunk", str(chunk),
                   "--repeat", str(arguments.repeat), "--variant", variant]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results[variant] = json.loads(output.strip().splitlines()[-1])
    exact = None if arguments.no_reference else reference(size, chunk)

    single = results["smoothmax"]
    print(f"{'variant':<22} {'seconds':>8} {'speed-up':>9} {'peak RSS above start':>21}  result")
    for variant, result in results.items():
        error = "" if exact is None else f"  ({ulps(result['value'], exact):.2f} ulp from long double)"
        print(f"{variant:<22} {result['seconds']:>8.2f} {result['seconds'] / single['seconds']:>8.2f}x"
              f" {result['peak_above_baseline'] / 2**20:>17.0f} MiB  {result['value']!r}{error}")
    ratio = results["two-pass"]["seconds"] / single["seconds"]
    difference = ulps(single["value"], results["two-pass"]["value"])
    print(f"single pass is {ratio:.2f}x faster than the two-pass recipe; results differ by"
          f" {difference:.0f} ulp; peak memory {single['peak_above_baseline'] / (chunk * 8):.1f} chunks"
          f" (one graph two-pass: {results['two-pass, one graph']['peak_above_baseline'] / (chunk * 8):.1f} chunks)")
    if arguments.json:
        report = {
            "size": size,
            "chunk": chunk,
            "repeat": arguments.repeat,
            "cores": os.cpu_count(),
            "dask": dask.__version__,
            "variants": results,
            "long_double_reference": exact,
            "speedup_vs_two_pass": ratio,
            "ulps_single_vs_two_pass": difference,
            "peak_chunks_single_pass": single["peak_above_baseline"] / (chunk * 8),
        }
        with open(arguments.json, "w") as file:
            json.dump(report, file, indent=1)


if __name__ == "__main__":
    main()
