"""PyTorch CPU on masked logits: smoothmax / torch time ratios (no targets).

    python benchmarks/masked_logits.py [--repeat 7] [--tiny]

Attention scores and padded batches carry masked entries far below the others:
``-inf`` (``masked_fill(mask, -inf)``), ``torch.finfo(dtype).min`` (Hugging Face's
additive masks) or ``-1e4``. PyTorch's CPU ``exp`` takes ~12x its usual time on
arguments whose result is not a normal number and ~3.5x on ``-inf``;
``torch.softmax`` uses an ``exp`` of its own that does not. Inputs: normal logits
(standard deviation 3) with a causal mask at (32, 8, 256, 256) and the last 32% of
each row padded at (4096, 1024), float32, along the last axis; each fill, and no
mask. Timed as ``python -m benchmarks`` times (interleaved repetitions, the median
and IQR of the per-repetition ratio), one intra-op thread.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

if __package__ in (None, ""):  # run as a script: benchmarks/ is not a package on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.run import MODES, Case, Mode, format_table, measure

#: The shape of each mask layout in the full run; --tiny shrinks them.
LAYOUTS = {"causal": (32, 8, 256, 256), "padded": (4096, 1024)}
TINY_LAYOUTS = {"causal": (2, 64, 64), "padded": (64, 128)}


def masked_input(torch: Any, layout: str, shape: tuple[int, ...], fill: float | None) -> Any:
    """Normal logits (standard deviation 3, seed 0), masked causally or padded with ``fill``."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 3
    if fill is None:
        return x
    n = shape[-1]
    if layout == "causal":
        mask = torch.ones(n, n, dtype=torch.bool).triu(1)
    else:
        mask = torch.zeros(n, dtype=torch.bool)
        mask[int(n * 0.68) :] = True
    return x.masked_fill(mask, fill)


def forward_backward(function: Any, leaf: Any, cotangent: Any) -> Any:
    """A timed call of ``function(leaf)`` and its backward pass with ``cotangent``."""

    def run() -> None:
        leaf.grad = None
        function(leaf).backward(cotangent)

    return run


def cases(layouts: dict[str, tuple[int, ...]]) -> list[Case]:
    import torch

    import smoothmax

    fills = {"no mask": None, "-inf": -float("inf"), "finfo.min": float(torch.finfo(torch.float32).min), "-1e4": -1e4}
    result = []
    for layout, shape in layouts.items():
        for fill_name, fill in fills.items():
            x = masked_input(torch, layout, shape, fill)
            leaf = x.clone().requires_grad_(True)
            cotangent = torch.randn(shape, generator=torch.Generator().manual_seed(1))
            label = f"{layout}, {fill_name}"
            result.append(
                Case("torch", f"logsumexp ({label})", shape, -1, "float32",
                     lambda x=x: smoothmax.logsumexp(x, axis=-1), {"torch.logsumexp": lambda x=x: torch.logsumexp(x, -1)})
            )
            result.append(
                Case("torch", f"softmax fwd+bwd ({label})", shape, -1, "float32",
                     forward_backward(lambda v: smoothmax.softmax(v, axis=-1), leaf, cotangent),
                     {"torch.softmax": forward_backward(lambda v: torch.softmax(v, -1), leaf, cotangent)})
            )
    return result


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    return run_table(argv, __doc__, lambda tiny: cases(TINY_LAYOUTS if tiny else LAYOUTS))


def run_table(argv: list[str] | None, doc: str, make_cases: Any) -> list[dict[str, Any]]:
    """Parse ``--repeat``/``--tiny``, time ``make_cases(tiny)`` on one intra-op thread
    and print their table of ratios; the rows."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--tiny", action="store_true", help="small inputs, few repetitions (a smoke run)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    base = MODES["tiny" if args.tiny else "quick"]
    mode = Mode(base.shapes, 2 if args.tiny else args.repeat, base.min_time, base.scaling, base.scaling_repeat)
    rows = [row for case in make_cases(args.tiny) for row in measure(case, mode)]
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    main()
