"""``python -m conformance.triton_interpreter [conformance options]``: the CUDA
kernel's arithmetic checked against the cases on a machine without a GPU.

Runs ``python -m conformance`` in a process where Triton's interpreter
(``TRITON_INTERPRET=1``) runs :mod:`smoothmax._cuda`'s kernel, and where the
``torch`` backend's CPU tensors take that kernel wherever a CUDA tensor would
(no weights, ``t > 0``, ``lse``/``q``/``log_q``), with nothing refined after it.
With ``--hardware-fma`` the kernel's GPU branch (TwoProduct as ``fma(a, b, -p)``)
runs, the interpreter's ``fma`` made exact as the GPU's; with ``--segments``
every slice is split into segments (rows of 64 entries; columns 256 entries a
block), as slices longer than 65 536 are (two launches). Slow (the interpreter runs each program in
NumPy): pick cases, e.g.

    python -m conformance.triton_interpreter --backend torch --case "softmax/*" --quiet

(2026-11-26, Triton 3.8 and 3.9: the ``logsumexp``, ``softmax``, ``log_softmax``
and ``logsumexp_gradient`` cases, float32 and float64, 283 of 283 pass, ~65 s;
Triton 3.9 with the segments: 283 of 283 with and without ``--segments`` and
``--hardware-fma``, ~6-14 min, ``n=100000`` going through the segments.)
"""

from __future__ import annotations

import os
import sys
from typing import Any


def exact_fma() -> Any:
    """A ``create_fma`` for Triton's interpreter builder that rounds once, as the
    GPU's ``fma`` (the interpreter's own computes ``x * y + z`` in two roundings)."""
    from fractions import Fraction
    import math

    import numpy as np
    import triton.runtime.interpreter as interpreter

    def exact(x: float, y: float, z: float) -> float:
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(z)):
            return x * y + z
        return float(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)))

    exact_ufunc = np.frompyfunc(exact, 3, 1)

    def create_fma(self, x, y, z):
        return interpreter.TensorHandle(exact_ufunc(x.data, y.data, z.data).astype(z.data.dtype), z.dtype.scalar)

    return create_fma


def _route_cpu_tensors_to_the_cuda_kernel() -> None:
    import torch

    from smoothmax import _cuda, _fastpaths, _torch

    original = _torch._forward_kernel

    def forward(x, weights, axis, temperature, outputs):
        if (
            weights is None
            and not torch._C._functorch.is_functorch_wrapped_tensor(x)
            and not _fastpaths._declines(x, weights, axis, temperature, outputs)
        ):
            values = _cuda.kernel(x, axis, temperature, outputs)
            if values is not None:
                return values
        return original(x, weights, axis, temperature, outputs)

    _torch._forward_kernel = forward
    _fastpaths._TORCH_NUMPY_LSE_ELEMENTS = 0  # lse alone would take NumPy's route first


def main(argv: list[str]) -> int:
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
    if "--hardware-fma" in argv:
        argv = [argument for argument in argv if argument != "--hardware-fma"]
        import triton.runtime.interpreter as interpreter

        interpreter.InterpreterBuilder.create_fma = exact_fma()
        from smoothmax import _cuda

        _cuda._INTERPRETED = False
    if "--segments" in argv:
        argv = [argument for argument in argv if argument != "--segments"]
        from smoothmax import _cuda

        # every slice split into segments (rows in chunks of 64, columns of 256
        # elements a block): the long slices' launches
        _cuda.LONGEST_SLICE = 1
        _cuda._SHORTEST_SEGMENT = 1
        _cuda.ROW_CHUNK = {"float32": 64, "float64": 64}
        _cuda.COLUMN_ELEMENTS = 256
    _route_cpu_tensors_to_the_cuda_kernel()
    from .__main__ import main as conformance_main

    return conformance_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
