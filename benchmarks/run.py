"""smoothmax vs its peers: a table of time ratios (smoothmax / peer), per backend.

    python -m benchmarks [--quick | --tiny] [--backend numpy,torch,jax,torch-cuda] [--repeat N]
                         [--output benchmarks/results/latest.json] [--no-scaling] [--no-save]

Everything runs in one process. For each case (backend, function, shape, axis,
dtype) the callables of smoothmax and of every peer are timed in **interleaved
repetitions** (rep 1: smoothmax, peer A, peer B; rep 2: reversed; ...), each
timing being a loop of ``number`` calls sized to last a few milliseconds. The
table gives, per peer, the **median and interquartile range of the
per-repetition ratio** ``t(smoothmax) / t(peer)``: both sides of a ratio were
measured within the same repetition, so slow phases of a shared machine hit both.
Below 1 means smoothmax is faster.

Peers:

* NumPy: ``scipy.special.logsumexp``; the textbook two-pass ``m + log(sum(exp(x - m)))``;
  the *limit* ``max(x)``, ``exp(x - m, out=buffer)``, ``sum(buffer)`` with a
  preallocated buffer (three raw passes, nothing else).
* PyTorch CPU: ``torch.logsumexp`` (forward, forward+backward),
  ``torch.softmax`` / ``torch.log_softmax`` (forward+backward).
* JAX (``jax.jit``, on its default device): ``jax.nn.logsumexp`` (forward, ``jax.grad``),
  ``jax.nn.softmax`` / ``jax.nn.log_softmax`` (forward+backward through ``jax.grad``).
* ``torch-cuda`` (only when asked for, where CUDA is present): the PyTorch cases on the GPU,
  each timing's loop of calls followed by ``torch.cuda.synchronize()``; no targets (those
  are the CPU's).

Also: peak extra memory of one ``logsumexp`` call relative to the input's size
(NumPy through ``tracemalloc``, PyTorch through the profiler's allocator
events), and the NumPy scaling check (time per element for n = 1e3 ... 1e8).
Results go to a JSON file (``benchmarks/results/latest.json`` by default).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUTPUT = os.path.join(HERE, "results", "latest.json")

#: (shape, axis) of the full run.
SHAPES_FULL: list[tuple[tuple[int, ...], int]] = [
    ((16,), -1),
    ((1000,), -1),
    ((10_000_000,), -1),
    ((4096, 1024), -1),
    ((1024, 4096), 0),
    ((32, 8, 256, 256), -1),
]
#: --quick: small and medium shapes only (under a minute with every backend).
SHAPES_QUICK: list[tuple[tuple[int, ...], int]] = [
    ((16,), -1),
    ((1000,), -1),
    ((512, 1024), -1),
    ((1024, 512), 0),
]
#: --tiny: a smoke run for the test suite (no timing claims at all).
SHAPES_TINY: list[tuple[tuple[int, ...], int]] = [((16,), -1), ((8, 32), 0)]

DTYPES = ("float32", "float64")
SCALING_FULL = [10**k for k in range(3, 9)]
SCALING_QUICK = [10**k for k in range(3, 7)]
SCALING_TINY = [10**3, 10**4]

#: "large" shapes for the NumPy limit target: at least this many elements.
LARGE = 1_000_000


@dataclass
class Mode:
    shapes: list[tuple[tuple[int, ...], int]]
    repeat: int  # interleaved repetitions per case
    min_time: float  # seconds one timing (a loop of `number` calls) should last
    scaling: list[int]
    scaling_repeat: int


MODES = {
    "full": Mode(SHAPES_FULL, 15, 0.02, SCALING_FULL, 7),
    "quick": Mode(SHAPES_QUICK, 7, 0.005, SCALING_QUICK, 5),
    "tiny": Mode(SHAPES_TINY, 3, 0.0, SCALING_TINY, 2),
}


@dataclass
class Case:
    """One row group of the table: smoothmax and its peers on the same input."""

    backend: str
    function: str  # "logsumexp", "logsumexp fwd+bwd", "softmax fwd+bwd", ...
    shape: tuple[int, ...]
    axis: int
    dtype: str
    smoothmax: Callable[[], Any]
    peers: dict[str, Callable[[], Any]]
    targets: dict[str, float] = field(default_factory=dict)  # peer -> max ratio
    sync: Callable[[], Any] | None = None  # waits for the device's queued work (CUDA)


# --------------------------------------------------------------------------- timing


def _calibrate(function: Callable[[], Any], min_time: float, sync: Callable[[], Any] | None = None) -> int:
    """Calls per timing so that one timing lasts about ``min_time``."""
    function()  # warm-up (JIT compilation, caches, lazy imports)
    if min_time <= 0:
        return 1
    number = 1
    while True:
        elapsed = _time(function, number, sync) * number
        if elapsed >= min_time or number >= 1 << 16:
            return number
        number = max(number * 2, int(number * min_time / max(elapsed, 1e-9) * 1.2))


def _time(function: Callable[[], Any], number: int, sync: Callable[[], Any] | None = None) -> float:
    """Seconds a call, over a loop of ``number`` calls (and the device's queue, where ``sync``)."""
    if sync is not None:
        sync()
    start = time.perf_counter()
    for _ in range(number):
        function()
    if sync is not None:
        sync()
    return (time.perf_counter() - start) / number


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def measure(case: Case, mode: Mode) -> list[dict[str, Any]]:
    """Interleaved repetitions of smoothmax and every peer; one result per peer."""
    callables = {"smoothmax": case.smoothmax, **case.peers}
    numbers = {name: _calibrate(function, mode.min_time, case.sync) for name, function in callables.items()}
    times: dict[str, list[float]] = {name: [] for name in callables}
    order = list(callables)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for repetition in range(mode.repeat):
            for name in order if repetition % 2 == 0 else reversed(order):
                times[name].append(_time(callables[name], numbers[name], case.sync))
    finally:
        if gc_was_enabled:
            gc.enable()
    rows = []
    for peer in case.peers:
        ratios = [a / b for a, b in zip(times["smoothmax"], times[peer])]
        q1, median, q3 = _quartiles(ratios)
        target = case.targets.get(peer)
        rows.append(
            {
                "backend": case.backend,
                "function": case.function,
                "shape": list(case.shape),
                "axis": case.axis,
                "dtype": case.dtype,
                "peer": peer,
                "ratio_median": median,
                "ratio_q1": q1,
                "ratio_q3": q3,
                "smoothmax_s": statistics.median(times["smoothmax"]),
                "peer_s": statistics.median(times[peer]),
                "repeat": mode.repeat,
                "target": target,
                "met": None if target is None else bool(median <= target),
            }
        )
    return rows


# --------------------------------------------------------------------------- inputs


def _input(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal(shape, dtype=np.float64) * 3.0).astype(dtype)


# --------------------------------------------------------------------------- NumPy


def numpy_cases(mode: Mode) -> list[Case]:
    import scipy.special

    import smoothmax

    cases = []
    for shape, axis in mode.shapes:
        for dtype in DTYPES:
            x = _input(shape, dtype)
            buffer = np.empty_like(x)

            def limit(x=x, axis=axis, buffer=buffer):
                m = np.max(x, axis=axis, keepdims=True)
                np.subtract(x, m, out=buffer)
                np.exp(buffer, out=buffer)
                return np.sum(buffer, axis=axis)

            def two_pass(x=x, axis=axis):
                m = np.max(x, axis=axis, keepdims=True)
                return np.squeeze(m, axis) + np.log(np.sum(np.exp(x - m), axis=axis))

            large = x.size >= LARGE
            cases.append(
                Case(
                    "numpy",
                    "logsumexp",
                    shape,
                    axis,
                    dtype,
                    lambda x=x, axis=axis: smoothmax.logsumexp(x, axis=axis),
                    {
                        "scipy.special.logsumexp": lambda x=x, axis=axis: scipy.special.logsumexp(x, axis=axis),
                        "two-pass": two_pass,
                        "limit max+exp+sum": limit,
                    },
                    {"scipy.special.logsumexp": 1 / 3, **({"limit max+exp+sum": 1.3} if large else {})},
                )
            )
    return cases


def numpy_memory(mode: Mode) -> list[dict[str, Any]]:
    """Peak memory allocated during one call, relative to the input's size."""
    import scipy.special

    import smoothmax

    rows = []
    for shape, axis in mode.shapes:
        for dtype in DTYPES:
            x = _input(shape, dtype)
            for name, function in (
                ("smoothmax.logsumexp", lambda: smoothmax.logsumexp(x, axis=axis)),
                ("smoothmax.softmax", lambda: smoothmax.softmax(x, axis=axis)),
                ("scipy.special.logsumexp", lambda: scipy.special.logsumexp(x, axis=axis)),
            ):
                function()
                tracemalloc.start()
                try:
                    function()
                    _, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
                rows.append(_memory_row("numpy", name, shape, axis, dtype, peak, x.nbytes))
    return rows


def _memory_row(backend, name, shape, axis, dtype, peak, nbytes) -> dict[str, Any]:
    relative = peak / nbytes
    row = {
        "backend": backend,
        "function": name,
        "shape": list(shape),
        "axis": axis,
        "dtype": dtype,
        "peak_bytes": int(peak),
        "input_bytes": int(nbytes),
        "relative": relative,
    }
    if name == "smoothmax.logsumexp":
        # Target: at most one input-sized buffer; small inputs are dominated by
        # fixed-size scratch and bookkeeping, so judge the large ones only.
        row["target"] = 1.0
        row["met"] = bool(relative <= 1.0) if nbytes >= LARGE * 4 else None
    return row


def scaling(mode: Mode) -> list[dict[str, Any]]:
    """NumPy float64 time per element of smoothmax.logsumexp and of the limit."""
    import smoothmax

    rows = []
    for n in mode.scaling:
        x = _input((n,), "float64")
        buffer = np.empty_like(x)

        def limit(x=x, buffer=buffer):
            m = np.max(x)
            np.subtract(x, m, out=buffer)
            np.exp(buffer, out=buffer)
            return np.sum(buffer)

        functions = {"smoothmax": lambda x=x: smoothmax.logsumexp(x), "limit": limit}
        number = {name: _calibrate(f, min(mode.min_time, 0.01)) for name, f in functions.items()}
        times: dict[str, list[float]] = {name: [] for name in functions}
        for repetition in range(mode.scaling_repeat):
            for name in functions:
                times[name].append(_time(functions[name], number[name]))
        row = {"n": n}
        for name, values in times.items():
            row[f"{name}_ns_per_element"] = statistics.median(values) / n * 1e9
        rows.append(row)
        del x, buffer
    return rows


# --------------------------------------------------------------------------- PyTorch


def torch_cases(mode: Mode, device: str = "cpu") -> list[Case]:
    """The PyTorch cases on ``device``; targets (the issue's, CPU ones) on the CPU only."""
    import torch

    import smoothmax

    backend = "torch" if device == "cpu" else f"torch-{device}"
    sync = torch.cuda.synchronize if device == "cuda" else None
    on_cpu = device == "cpu"
    cases = []
    for shape, axis in mode.shapes:
        for dtype in DTYPES:
            x = torch.from_numpy(_input(shape, dtype)).to(device)
            leaf = x.clone().requires_grad_(True)
            g_reduced = torch.ones(
                tuple(n for i, n in enumerate(shape) if i != axis % len(shape)), dtype=x.dtype, device=device
            )
            g_full = torch.from_numpy(_input(shape, dtype)[::-1].copy()).to(device)
            small = math.prod(shape) <= 16

            def fwd_bwd(function, g, leaf=leaf):
                def run():
                    (grad,) = torch.autograd.grad(function(leaf), leaf, g)
                    return grad

                return run

            cases.append(
                Case(
                    backend,
                    "logsumexp",
                    shape,
                    axis,
                    dtype,
                    lambda x=x, axis=axis: smoothmax.logsumexp(x, axis=axis),
                    {"torch.logsumexp": lambda x=x, axis=axis: torch.logsumexp(x, dim=axis)},
                    {"torch.logsumexp": 1.5 if small else 1.1} if on_cpu else {},
                    sync,
                )
            )
            cases.append(
                Case(
                    backend,
                    "logsumexp fwd+bwd",
                    shape,
                    axis,
                    dtype,
                    fwd_bwd(lambda v, axis=axis: smoothmax.logsumexp(v, axis=axis), g_reduced),
                    {"torch.logsumexp": fwd_bwd(lambda v, axis=axis: torch.logsumexp(v, dim=axis), g_reduced)},
                    {"torch.logsumexp": 1.0} if on_cpu else {},
                    sync,
                )
            )
            for name, ours, theirs in (
                ("softmax", smoothmax.softmax, torch.softmax),
                ("log_softmax", smoothmax.log_softmax, torch.log_softmax),
            ):
                cases.append(
                    Case(
                        backend,
                        f"{name} fwd+bwd",
                        shape,
                        axis,
                        dtype,
                        fwd_bwd(lambda v, axis=axis, ours=ours: ours(v, axis=axis), g_full),
                        {f"torch.{name}": fwd_bwd(lambda v, axis=axis, theirs=theirs: theirs(v, dim=axis), g_full)},
                        {f"torch.{name}": 1.1} if on_cpu else {},
                        sync,
                    )
                )
    return cases


class _quiet_stderr:
    """Silence file descriptor 2 (the profiler's C++ start/stop log lines)."""

    def __enter__(self) -> None:
        sys.stderr.flush()
        self.saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc: Any) -> None:
        os.dup2(self.saved, 2)
        os.close(self.saved)


def _torch_peak(function: Callable[[], Any]) -> int | None:
    """Peak of the live CPU allocations during ``function()``, from the profiler's
    allocator events (None where this torch does not expose them)."""
    from torch.profiler import ProfilerActivity, profile

    try:
        with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            function()
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
        events.sort(key=lambda e: e.start_ns())
        live = peak = 0
        for event in events:
            live += event.nbytes()
            peak = max(peak, live)
        return peak
    except Exception:  # noqa: BLE001 - a private profiler API; report n/a
        return None


def torch_memory(mode: Mode) -> list[dict[str, Any]]:
    import torch

    import smoothmax

    rows = []
    for shape, axis in mode.shapes:
        for dtype in DTYPES:
            x = torch.from_numpy(_input(shape, dtype))
            for name, function in (
                ("smoothmax.logsumexp", lambda: smoothmax.logsumexp(x, axis=axis)),
                ("torch.logsumexp", lambda: torch.logsumexp(x, dim=axis)),
            ):
                function()
                peak = _torch_peak(function)
                if peak is not None:
                    rows.append(_memory_row("torch", name, shape, axis, dtype, peak, x.numel() * x.element_size()))
    return rows


# --------------------------------------------------------------------------- JAX


def jax_cases(mode: Mode) -> list[Case]:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    import smoothmax

    cases = []
    for shape, axis in mode.shapes:
        for dtype in DTYPES:
            x = jnp.asarray(_input(shape, dtype))
            g_full = jnp.asarray(_input(shape, dtype)[::-1].copy())

            def block(function, x=x):
                return lambda: jax.block_until_ready(function(x))

            ours_lse = jax.jit(lambda v, axis=axis: smoothmax.logsumexp(v, axis=axis))
            their_lse = jax.jit(lambda v, axis=axis: jax.nn.logsumexp(v, axis=axis))
            cases.append(
                Case("jax", "logsumexp", shape, axis, dtype, block(ours_lse),
                     {"jax.nn.logsumexp": block(their_lse)}, {"jax.nn.logsumexp": 1.05})
            )
            ours_grad = jax.jit(jax.grad(lambda v, axis=axis: jnp.sum(smoothmax.logsumexp(v, axis=axis))))
            their_grad = jax.jit(jax.grad(lambda v, axis=axis: jnp.sum(jax.nn.logsumexp(v, axis=axis))))
            cases.append(
                Case("jax", "logsumexp grad", shape, axis, dtype, block(ours_grad),
                     {"jax.nn.logsumexp": block(their_grad)}, {"jax.nn.logsumexp": 1.05})
            )
            for name, ours, theirs in (
                ("softmax", smoothmax.softmax, jax.nn.softmax),
                ("log_softmax", smoothmax.log_softmax, jax.nn.log_softmax),
            ):
                ours_fb = jax.jit(jax.grad(lambda v, axis=axis, f=ours, g=g_full: jnp.sum(f(v, axis=axis) * g)))
                their_fb = jax.jit(jax.grad(lambda v, axis=axis, f=theirs, g=g_full: jnp.sum(f(v, axis=axis) * g)))
                cases.append(
                    Case("jax", f"{name} fwd+bwd", shape, axis, dtype, block(ours_fb),
                         {f"jax.nn.{name}": block(their_fb)}, {f"jax.nn.{name}": 1.1})
                )
    return cases


# --------------------------------------------------------------------------- report

BACKENDS = {
    "numpy": numpy_cases,
    "torch": torch_cases,
    "jax": jax_cases,
    "torch-cuda": lambda mode: torch_cases(mode, device="cuda"),
}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        info["load_average_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    for module in ("scipy", "torch", "jax"):
        if module in sys.modules:
            info[module] = sys.modules[module].__version__
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():  # what the torch-cuda rows ran on
            info["gpu"] = torch.cuda.get_device_name(0)
            if "triton" in sys.modules:
                info["triton"] = sys.modules["triton"].__version__
    except ImportError:
        pass
    return info


def _shape_text(row: dict[str, Any]) -> str:
    shape = "(" + ", ".join(f"{n:_}" for n in row["shape"]) + ("," if len(row["shape"]) == 1 else "") + ")"
    return f"{shape} ax {row['axis']}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the ratios, target and verdict per row."""
    lines = [
        "| backend | function | shape, axis | dtype | vs peer | ratio (median) | IQR | target | met |",
        "|---|---|---|---|---|---:|---|---:|---|",
    ]
    for row in rows:
        target = "" if row["target"] is None else f"<= {row['target']:.3g}"
        met = "" if row["met"] is None else ("yes" if row["met"] else "**no**")
        lines.append(
            f"| {row['backend']} | {row['function']} | {_shape_text(row)} | {row['dtype']} | {row['peer']} "
            f"| {row['ratio_median']:.3f} | {row['ratio_q1']:.3f}-{row['ratio_q3']:.3f} | {target} | {met} |"
        )
    return "\n".join(lines)


def format_memory(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| backend | function | shape, axis | dtype | peak extra / input | target | met |",
        "|---|---|---|---|---:|---:|---|",
    ]
    for row in rows:
        target = "" if "target" not in row else f"<= {row['target']:.3g}"
        met = "" if row.get("met") is None else ("yes" if row["met"] else "**no**")
        lines.append(
            f"| {row['backend']} | {row['function']} | {_shape_text(row)} | {row['dtype']} "
            f"| {row['relative']:.3f} | {target} | {met} |"
        )
    return "\n".join(lines)


def format_scaling(rows: list[dict[str, Any]]) -> str:
    lines = ["| n | smoothmax ns/element | limit ns/element | ratio |", "|---:|---:|---:|---:|"]
    for row in rows:
        ours, limit = row["smoothmax_ns_per_element"], row["limit_ns_per_element"]
        lines.append(f"| {row['n']:.0e} | {ours:.3f} | {limit:.3f} | {ours / limit:.2f} |")
    return "\n".join(lines)


def run(mode_name: str, backends: list[str], repeat: int | None = None, with_scaling: bool = True,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    mode = MODES[mode_name]
    if repeat is not None:
        mode = Mode(mode.shapes, repeat, mode.min_time, mode.scaling, mode.scaling_repeat)
    started = time.time()
    rows: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    for backend in backends:
        for case in BACKENDS[backend](mode):
            result = measure(case, mode)
            rows.extend(result)
            if progress is not None:
                for row in result:
                    progress(
                        f"{row['backend']:6} {row['function']:18} {_shape_text(row):24} {row['dtype']:8} "
                        f"vs {row['peer']:24} {row['ratio_median']:.3f}"
                    )
        if backend == "numpy":
            memory.extend(numpy_memory(mode))
        elif backend == "torch":
            memory.extend(torch_memory(mode))
    scaling_rows = scaling(mode) if with_scaling and "numpy" in backends else []
    return {
        "mode": mode_name,
        "repeat": mode.repeat,
        "machine": machine(),
        "fastpaths_enabled": _fastpaths_enabled(),
        "seconds": time.time() - started,
        "ratios": rows,
        "memory": memory,
        "scaling": scaling_rows,
    }


def _fastpaths_enabled() -> bool:
    from smoothmax import _fastpaths

    return bool(_fastpaths.ENABLED)


def report(result: dict[str, Any]) -> str:
    parts = [
        f"smoothmax / peer time ratios ({result['mode']} run, {result['repeat']} interleaved repetitions, "
        f"median and IQR of the per-repetition ratio; < 1: smoothmax faster)",
        "",
        format_table(result["ratios"]),
    ]
    if result["memory"]:
        parts += ["", "Peak extra memory of one call / input size", "", format_memory(result["memory"])]
    if result["scaling"]:
        parts += ["", "Scaling (NumPy float64, logsumexp of all n elements)", "", format_scaling(result["scaling"])]
    targets = [row for row in result["ratios"] if row["met"] is not None]
    missed = [row for row in targets if not row["met"]]
    parts += ["", f"targets met: {len(targets) - len(missed)} / {len(targets)}; run took {result['seconds']:.0f} s"]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small shapes, few repetitions (under a minute)")
    size.add_argument("--tiny", action="store_true", help="smoke run (a few seconds, no meaningful timings)")
    parser.add_argument("--backend", default="numpy,torch,jax",
                        help="comma-separated subset of numpy,torch,jax,torch-cuda (the last only where asked)")
    parser.add_argument("--repeat", type=int, default=None, help="interleaved repetitions per case")
    parser.add_argument("--output", default=None, help=f"JSON file (default {os.path.relpath(DEFAULT_OUTPUT)})")
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON file")
    parser.add_argument("--no-scaling", action="store_true", help="skip the NumPy scaling check")
    parser.add_argument("--progress", action="store_true", help="print each row as it is measured")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch.set_num_threads for the run (both sides of every ratio run with it)")
    args = parser.parse_args(argv)
    if args.torch_threads is not None:
        import torch

        torch.set_num_threads(args.torch_threads)

    backends = [name.strip() for name in args.backend.split(",") if name.strip()]
    unknown = [name for name in backends if name not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; choose from {sorted(BACKENDS)}")
    available = []
    for name in backends:
        try:
            module = __import__({"numpy": "scipy", "torch": "torch", "jax": "jax", "torch-cuda": "torch"}[name])
        except ImportError:
            print(f"skipping {name}: not installed", file=sys.stderr)
            continue
        if name == "torch-cuda" and not module.cuda.is_available():
            print(f"skipping {name}: no CUDA device", file=sys.stderr)
            continue
        available.append(name)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    result = run(mode, available, args.repeat, not args.no_scaling,
                 progress=(lambda line: print(line, file=sys.stderr, flush=True)) if args.progress else None)
    print(report(result))
    if not args.no_save:
        output = args.output or DEFAULT_OUTPUT
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        with open(output, "w") as handle:
            json.dump(result, handle, indent=1)
        print(f"\nsaved {output}")
    return result


if __name__ == "__main__":
    main()
