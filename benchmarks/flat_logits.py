"""PyTorch CPU on flat float32 logits: smoothmax / torch time ratios (no targets).

    python benchmarks/flat_logits.py [--repeat 7] [--tiny]

Logits with many entries near each slice's maximum (small scores: early training,
attention at small scale) make each slice's sum of ``exp(d)`` large. The fast
path leaves the pivot's ``exp(0) = 1`` out of that sum where each slice has
exactly one 1, which the two sums' rounding no longer shows on long float32
slices: the ones are counted there (before 2026-11-27 every such slice took the
generic kernel, 10-29x ``torch.softmax``). Inputs: normal logits of the standard
deviation given, along the last axis and axis 0, and one input of standard
deviation 3 for reference; ``logsumexp``, ``softmax`` and ``log_softmax`` forward
and forward+backward. Timed as ``python -m benchmarks`` times, one intra-op thread.
"""

from __future__ import annotations

import os
import sys
from typing import Any

if __package__ in (None, ""):  # run as a script: benchmarks/ is not a package on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.masked_logits import forward_backward, run_table
from benchmarks.run import Case

#: name: (shape, standard deviation, axis) in the full run; --tiny shrinks them.
INPUTS = {
    "rows N(0, 0.1)": ((2048, 2048), 0.1, -1),
    "rows N(0, 1)": ((512, 8192), 1.0, -1),
    "columns N(0, 0.1)": ((4096, 1024), 0.1, 0),
    "rows N(0, 3)": ((4096, 1024), 3.0, -1),
}
TINY_INPUTS = {
    "rows N(0, 0.1)": ((16, 2048), 0.1, -1),
    "columns N(0, 0.1)": ((2048, 16), 0.1, 0),
}


def flat_input(torch: Any, shape: tuple[int, ...], deviation: float) -> Any:
    """Normal float32 logits of standard deviation ``deviation`` (seed 0)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * deviation


def cases(inputs: dict[str, tuple[tuple[int, ...], float, int]]) -> list[Case]:
    import torch

    import smoothmax

    result = []
    for name, (shape, deviation, axis) in inputs.items():
        x = flat_input(torch, shape, deviation)
        leaf = x.clone().requires_grad_(True)
        cotangent = torch.randn(shape, generator=torch.Generator().manual_seed(1))
        result.append(
            Case("torch", f"logsumexp ({name})", shape, axis, "float32",
                 lambda x=x, axis=axis: smoothmax.logsumexp(x, axis=axis),
                 {"torch.logsumexp": lambda x=x, axis=axis: torch.logsumexp(x, axis)})
        )
        for function, peer in (("softmax", torch.softmax), ("log_softmax", torch.log_softmax)):
            ours = getattr(smoothmax, function)
            result.append(
                Case("torch", f"{function} ({name})", shape, axis, "float32",
                     lambda x=x, axis=axis, ours=ours: ours(x, axis=axis),
                     {f"torch.{function}": lambda x=x, axis=axis, peer=peer: peer(x, axis)})
            )
            result.append(
                Case("torch", f"{function} fwd+bwd ({name})", shape, axis, "float32",
                     forward_backward(lambda v, axis=axis, ours=ours: ours(v, axis=axis), leaf, cotangent),
                     {f"torch.{function}": forward_backward(lambda v, axis=axis, peer=peer: peer(v, axis), leaf, cotangent)})
            )
    return result


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    return run_table(argv, __doc__, lambda tiny: cases(TINY_INPUTS if tiny else INPUTS))


if __name__ == "__main__":
    main()
