"""Tuning run for the CUDA kernel's long rows (``smoothmax._cuda.plan_segments``).

    python -m benchmarks.cuda_segments [--shape 10000000] [--dtype float32,float64]
                                       [--segments 0,132,264,528,1024] [--warps 0,4,8,16]
                                       [--outputs lse,q,log_q] [--repeat 7] [--compile-only]
                                       [--output FILE.json]

Rows longer than 65 536 are split into segments, a program each, in two launches.
How many segments a row and how many warps a program are choices this run varies:
for each dtype and output (``lse`` against ``torch.logsumexp``, ``q`` against
``torch.softmax``, ``log_q`` against ``torch.log_softmax``, forward only), every
combination is timed in interleaved repetitions with the peer (each timing a loop of
calls, then ``torch.cuda.synchronize()``, as ``python -m benchmarks`` times), and
the table gives the median time and the median ratio to the peer. Segments 0 is
the plan's own choice, warps 0 likewise (rows up to 65 536 long then take one
program a row: segments 0 in the table). ``--compile-only`` launches each
combination once (Triton's cache on disk then holds the kernels for a timed run in
another process). Needs CUDA and Triton (or, as a dry run, Triton's interpreter).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
from typing import Any

from benchmarks.run import _calibrate, _input, _quartiles, _time

PEERS = {"lse": "logsumexp", "q": "softmax", "log_q": "log_softmax"}


def _integers(text: str) -> list[int]:
    return [int(value) for value in text.split(",")]


def configurations(n: int, segments: list[int], warps: list[int]) -> list[tuple[int | None, int | None]]:
    """``(segment_length, num_warps)`` pairs; None: the plan's own choice."""
    lengths = [None if count == 0 else -(-n // count) for count in segments]
    return [(length, warp or None) for length in lengths for warp in warps]


def sweep(shape: tuple[int, ...], dtype: str, outputs: list[str], segments: list[int], warps: list[int],
          repeat: int, min_time: float, compile_only: bool) -> list[dict[str, Any]]:
    import torch

    from smoothmax import _cuda

    # off a GPU only as a dry run in Triton's interpreter (TRITON_INTERPRET=1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else None
    x = torch.from_numpy(_input(shape, dtype)).to(device)
    n = shape[-1]
    results = []
    for output in outputs:
        peer = getattr(torch, PEERS[output])
        callables = {f"torch.{PEERS[output]}": lambda peer=peer: peer(x, -1)}
        for length, warp in configurations(n, segments, warps):
            def ours(length=length, warp=warp, output=output):
                return _cuda.launch(x, x.ndim - 1, 1.0, (output,), num_warps=warp, segment_length=length)

            callables[(length, warp)] = ours
        if compile_only:
            for function in callables.values():
                function()
            continue
        numbers = {name: _calibrate(function, min_time, sync) for name, function in callables.items()}
        times: dict[Any, list[float]] = {name: [] for name in callables}
        order = list(callables)
        gc.disable()
        try:
            for repetition in range(repeat):
                for name in order if repetition % 2 == 0 else reversed(order):
                    times[name].append(_time(callables[name], numbers[name], sync))
        finally:
            gc.enable()
        peer_name = order[0]
        for name in order[1:]:
            length, warp = name
            plan = _cuda.plan_segments(x.shape, x.ndim - 1, x.dtype == torch.float64, 1.0, (output,), length, None,
                                       warp)
            split = length is not None or n > _cuda.LONGEST_SLICE  # else launch takes one program a row
            ratios = [a / b for a, b in zip(times[name], times[peer_name])]
            q1, median, q3 = _quartiles(ratios)
            results.append(
                {
                    "shape": list(shape),
                    "dtype": dtype,
                    "output": output,
                    "peer": peer_name,
                    "segments": plan[0].scalars[5] if split else 0,
                    "segment_length": plan[0].scalars[4] if split else n,
                    "num_warps": plan[0].options["num_warps"],
                    "default_segments": length is None,
                    "default_warps": warp is None,
                    "smoothmax_s": statistics.median(times[name]),
                    "peer_s": statistics.median(times[peer_name]),
                    "ratio_median": median,
                    "ratio_q1": q1,
                    "ratio_q3": q3,
                }
            )
    return results


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| shape | dtype | output | segments | length | warps | us | peer us | ratio (IQR) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        mark = " (default)" if row["default_segments"] and row["default_warps"] else ""
        lines.append(
            f"| {tuple(row['shape'])} | {row['dtype']} | {row['output']} | {row['segments']}{mark} | "
            f"{row['segment_length']} | {row['num_warps']} | {row['smoothmax_s'] * 1e6:.1f} | "
            f"{row['peer_s'] * 1e6:.1f} | {row['ratio_median']:.2f} ({row['ratio_q1']:.2f}-{row['ratio_q3']:.2f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="10000000", help="comma-separated sizes; the last axis is reduced")
    parser.add_argument("--dtype", default="float32,float64")
    parser.add_argument("--segments", default="0,132,264,528,1024", help="segments a row; 0: the plan's choice")
    parser.add_argument("--warps", default="0,4,8,16", help="warps a program; 0: the plan's choice")
    parser.add_argument("--outputs", default="lse,q,log_q")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--min-time", type=float, default=0.005, help="seconds a timing lasts")
    parser.add_argument("--compile-only", action="store_true")
    parser.add_argument("--output", help="JSON file for the rows")
    arguments = parser.parse_args(argv)
    shape = tuple(_integers(arguments.shape))
    rows: list[dict[str, Any]] = []
    for dtype in arguments.dtype.split(","):
        rows += sweep(shape, dtype, arguments.outputs.split(","), _integers(arguments.segments),
                      _integers(arguments.warps), arguments.repeat, arguments.min_time, arguments.compile_only)
        if rows:
            print(format_table([row for row in rows if row["dtype"] == dtype]), flush=True)
    if arguments.output:
        with open(arguments.output, "w") as file:
            json.dump(rows, file, indent=1)
    return rows


if __name__ == "__main__":
    main()
