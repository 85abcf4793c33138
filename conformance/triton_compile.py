"""``python -m conformance.triton_compile [--capability 90 80] [--all]``: the CUDA
kernels of :mod:`smoothmax._cuda` compiled for NVIDIA GPUs on a machine without one.

Triton's interpreter (``conformance.triton_interpreter``, ``tests/test_cuda.py``)
checks the kernels' arithmetic but not that Triton's compiler takes them: it runs
the Python code in NumPy. Triton compiles to PTX, and with the ``ptxas`` its wheel
ships to a cubin, for any compute capability without a GPU present. This compiles
the launches :func:`smoothmax._cuda.plan_slices` and
:func:`smoothmax._cuda.plan_segments` make (a few covering every branch, or with
``--all`` every distinct one of the benchmark's shapes, each output set, float32
and float64, ``t = 1`` and not), each once a configuration, through the GPU
branch (``HARDWARE_FMA``), and prints each kernel's registers and local memory
(spills) as ``cuobjdump`` reads them from the cubin. Exit status 1 if any
configuration fails to compile.

(2026-11-26, Triton 3.9: the few 34 of 34 for sm_90; ``--all --capability 90
80`` 400 of 400, ~7 min on two cores. A few spill 8-32 bytes: columns in chunks
with all outputs, some segment kernels (8-16), float64 at sm_80's 128
registers of 8 warps. Columns' segments combined 16 x 256 at once spilled up
to 512 bytes in float64: a block combines at most 1024 segment results since.)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

#: Output sets the library asks for (the autograd adapter adds ``q`` to ``lse``).
OUTPUT_SETS = (("lse",), ("q",), ("log_q",), ("lse", "q"), ("q", "log_q"), ("lse", "q", "log_q"))

#: The benchmark's shapes and axes, and rows long enough to be split into segments.
ALL_SHAPES = (
    ((16,), 0),
    ((1000,), 0),
    ((10_000_000,), 0),
    ((4096, 1024), 1),
    ((1024, 4096), 0),
    ((32, 8, 256, 256), 3),
    ((100_000,), 0),
    ((8, 1_000_000), 1),
    ((100_000, 64), 0),
)

#: A few shapes that reach every branch: rows in one chunk, rows in chunks,
#: columns in one chunk and in chunks, and rows and columns split into segments.
FEW_SHAPES = (
    ((64, 1000), 1),
    ((4, 50_000), 1),
    ((300, 40), 0),
    ((9000, 40), 0),
    ((200_000,), 0),
    ((70_000, 4), 0),
)

#: Pointer arguments that are not of the input's dtype.
_POINTER_TYPES = {"sums_ptr": "*fp64"}


def plans(shapes: Any, output_sets: Any, temperatures: Any) -> dict[tuple[Any, ...], tuple[bool, Any]]:
    """Every distinct launch of ``shapes`` (float32 and float64) by what Triton compiles:
    ``key -> (extended, launch)``."""
    from smoothmax import _cuda

    found: dict[tuple[Any, ...], tuple[bool, Any]] = {}
    for shape, axis in shapes:
        split = shape[axis] > _cuda.LONGEST_SLICE
        for extended in (False, True):
            for temperature in temperatures:
                for outputs in output_sets:
                    if split:
                        launches = _cuda.plan_segments(shape, axis, extended, temperature, outputs)
                    else:
                        launches = (_cuda.plan_slices(shape, axis, extended, temperature, outputs),)
                    for launch in launches:
                        key = (launch.function.__name__, extended, tuple(launch.constants.items()),
                               tuple(launch.options.items()))
                        found.setdefault(key, (extended, launch))
    return found


def signature(launch: Any, extended: bool) -> dict[str, str]:
    """Triton's signature of ``launch``'s arguments: pointers, then its scalars."""
    parameters = [parameter for parameter in launch.function.params if not parameter.is_constexpr]
    pointers = [parameter.name for parameter in parameters if parameter.name.endswith("_ptr")]
    types = {name: _POINTER_TYPES.get(name, "*fp64" if extended else "*fp32") for name in pointers}
    scalars = [parameter.name for parameter in parameters if not parameter.name.endswith("_ptr")]
    for name, value in zip(scalars, launch.scalars, strict=True):
        types[name] = "fp32" if isinstance(value, float) else ("i32" if abs(value) < 2**31 else "i64")
    return {**types, **{name: "constexpr" for name in launch.constants}}


def compile_launch(launch: Any, extended: bool, capability: int) -> bytes:
    """The cubin of ``launch`` for compute capability ``capability`` (e.g. 90)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    source = ASTSource(fn=launch.function, signature=signature(launch, extended), constexprs=dict(launch.constants))
    compiled = triton.compile(source, target=GPUTarget("cuda", capability, 32), options=dict(launch.options))
    return compiled.asm["cubin"]


def resource_usage(cubin: bytes) -> str:
    """``REG:.. LOCAL:..`` of the cubin's kernel (``cuobjdump -res-usage``), or ''."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(tool):
        return ""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        report = subprocess.run([tool, "-res-usage", file.name], capture_output=True, text=True).stdout
    return " ".join(re.findall(r"(?:REG|LOCAL|STACK):\d+", report))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.triton_compile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--capability", type=int, nargs="+", default=[90], help="compute capabilities (90: H100/H200)")
    parser.add_argument("--all", action="store_true", help="every launch of the benchmark's shapes, not a few")
    arguments = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("TRITON_INTERPRET=1: the interpreter compiles nothing; run without it", file=sys.stderr)
        return 2
    if arguments.all:
        found = plans(ALL_SHAPES, OUTPUT_SETS, (1.0, 0.5))
    else:  # every branch: each kernel with all outputs and with lse alone, t = 1 and not
        found = plans(FEW_SHAPES, (("lse",), ("lse", "q", "log_q")), (0.5,))
        found.update(plans(FEW_SHAPES[:1] + FEW_SHAPES[-2:], (("q",),), (1.0,)))
    failures = 0
    for capability in arguments.capability:
        for key, (extended, launch) in found.items():
            name = f"sm{capability} {key[0]} {'float64' if extended else 'float32'} " + " ".join(
                f"{constant}={value}" for constant, value in launch.constants.items() if constant != "HARDWARE_FMA"
            ) + f" warps={launch.options['num_warps']}"
            start = time.perf_counter()
            try:
                usage = resource_usage(compile_launch(launch, extended, capability))
            except Exception as error:  # noqa: BLE001 - report every configuration that fails
                failures += 1
                print(f"FAIL {name}: {type(error).__name__}: {error}")
                continue
            print(f"ok   {name}: {usage} ({time.perf_counter() - start:.1f} s)")
    print(f"{len(found) * len(arguments.capability) - failures} of {len(found) * len(arguments.capability)} compiled")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
