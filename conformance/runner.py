"""Running cases on backends and measuring ulp errors (shared by the CLI,
the peers table and ``tests/test_conformance.py``)."""

from __future__ import annotations

import math
import traceback
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import floats
from .backends import Backend
from .cases import Case, Expected
from .functions import FUNCTIONS, NotApplicable

PASS, FAIL, ERROR, SKIP = "pass", "fail", "error", "skip"


@dataclass
class CheckResult:
    """The outcome of one case on one backend in one dtype."""

    case: str
    backend: str
    dtype: str
    status: str  # pass, fail (too large an error), error (raised / wrong shape or dtype), skip
    max_ulps: float | None = None
    tolerance: float | None = None
    detail: str | None = None  # why it failed, what mismatched, or why it was skipped
    label: str | None = None  # short special-value mismatch label ("NaN", "inf", ...)
    via_peer_bound: bool = False  # passed by the contract's best-peer + 1 ulp bound (cell marked ~)

    @property
    def ok(self) -> bool:
        return self.status in (PASS, SKIP)

    def cell(self) -> str:
        """Short table cell: the max ulp error, a mismatch label, ``raise`` or ``n/a``."""
        if self.status == SKIP:
            return "n/a"
        if self.status == ERROR:
            return "raise!" if self.detail and self.detail.startswith("raised") else "wrong!"
        text = self.label or format_ulps(self.max_ulps)
        return text + ("~" if self.via_peer_bound else "") + ("!" if self.status == FAIL else "")


def format_ulps(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    if value >= 1e4:
        return f"{value:.1e}"
    return f"{value:.2f}"


def compare(outputs: Sequence[np.ndarray], expected: Sequence[Expected], dtype: str,
            flushes_subnormals: bool = False) -> tuple[float, str | None, str | None]:
    """``(max ulp error, mismatch label, detail)`` of ``outputs`` (float64 NumPy) against ``expected``.

    With ``flushes_subnormals`` (a backend whose arithmetic flushes subnormal
    results to zero, as XLA on CPU does), a 0 where the exact result is below the
    smallest normal of the compute dtype counts as exact.
    """
    fmt = floats.FORMATS[dtype]
    compute_format = floats.FORMATS["float64" if dtype == "float64" else "float32"]
    worst, label, detail = 0.0, None, None
    if len(outputs) != len(expected):
        return math.inf, "wrong", f"{len(outputs)} outputs, expected {len(expected)}"
    for position, (got, want) in enumerate(zip(outputs, expected)):
        if tuple(got.shape) != tuple(want.rounded.shape):
            return math.inf, "shape", f"output {position} has shape {tuple(got.shape)}, expected {tuple(want.rounded.shape)}"
        if got.size == 0:
            continue
        errors = floats.ulp_errors(got, want.rounded, want.offset_ulps, fmt)
        if flushes_subnormals:
            flushed = (got == 0) & (np.abs(want.rounded) < compute_format.smallest_normal)
            errors = np.where(flushed, 0.0, errors)
        largest = float(np.max(errors))
        if largest > worst or (largest == worst and label is None and math.isinf(largest)):
            worst = largest
            if math.isinf(largest):
                label = floats.describe_mismatch(got, want.rounded) or "inf"
            where = np.unravel_index(int(np.argmax(errors)), errors.shape)
            detail = (f"output {position} at {tuple(int(i) for i in where)}: got {got[where]!r}, "
                      f"expected {want.rounded[where]!r} (+{want.offset_ulps[where]:.3g} ulp)")
    return worst, label, detail


def backend_arrays(case: Case, backend: Backend, dtype: str) -> dict[str, Any]:
    """The case's inputs as ``backend`` arrays of ``dtype`` (bools stay bool)."""
    arrays = {}
    for name, values in case.inputs(dtype).items():
        if values.dtype == bool:
            arrays[name] = backend.bool_array(values)
        else:
            arrays[name] = backend.array(values, dtype)
            round_trip = backend.to_numpy(arrays[name])
            if not np.array_equal(round_trip, values, equal_nan=True):
                raise ValueError(f"input {name} did not survive the conversion to {backend.name} {dtype}")
    return arrays


def _run_guarded(function: Callable[[], Any]) -> Any:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return function()


def check(case: Case, backend: Backend, dtype: str, smoothmax: Any = None) -> CheckResult:
    """Run ``case`` through smoothmax on ``backend`` in ``dtype`` and measure it."""
    if smoothmax is None:
        import smoothmax
    spec = FUNCTIONS[case.function]
    result = CheckResult(case.id, backend.name, dtype, SKIP)
    if dtype not in case.dtypes or dtype not in backend.dtypes:
        result.detail = f"{backend.name} has no {dtype}" if dtype in case.dtypes else f"case not in {dtype}"
        return result
    if spec.needs_grad and backend.grad is None:
        result.detail = f"{backend.name} has no autodiff"
        return result
    result.tolerance = case.tolerance(dtype, backend.faithful_exp)
    keywords = case.keywords
    try:
        arrays = backend_arrays(case, backend, dtype)
        outputs = _run_guarded(lambda: spec.call(smoothmax, backend, arrays, keywords))
    except NotApplicable as reason:
        result.detail = str(reason)
        return result
    except Exception as error:  # noqa: BLE001 - any exception is a conformance failure
        result.status = ERROR
        result.detail = f"raised {type(error).__name__}: {error}"
        result.label = "raise"
        return result
    problems = [
        f"output {position} has dtype {backend.dtype_name(output)}, expected {dtype}"
        for position, output in enumerate(outputs)
        if backend.dtype_name(output) != dtype
    ]
    try:
        values = [backend.to_numpy(output) for output in outputs]
    except Exception as error:  # noqa: BLE001
        result.status, result.detail = ERROR, f"raised {type(error).__name__} reading outputs: {error}"
        return result
    result.max_ulps, result.label, result.detail = compare(values, case.expected(dtype), dtype,
                                                           backend.flushes_subnormals)
    if spec.extra_check is not None:
        try:
            problem = _run_guarded(lambda: spec.extra_check(smoothmax, backend, arrays, keywords, outputs))
        except Exception as error:  # noqa: BLE001
            problem = f"extra check raised {type(error).__name__}: {error}"
        if problem:
            problems.append(problem)
    if result.label == "shape" or problems:
        result.status = ERROR
        result.detail = "; ".join(problems + ([result.detail] if result.label == "shape" else []))
        return result
    result.status = PASS if result.max_ulps <= result.tolerance else FAIL
    if result.status == FAIL and spec.accuracy == "softmax":
        _apply_peer_bound(result, case, backend, dtype)
    return result


def _apply_peer_bound(result: CheckResult, case: Case, backend: Backend, dtype: str) -> None:
    """The contract's second bound for softmax-like outputs: never worse than the
    best of scipy/torch/jax + 1 ulp. The 2 ulp bound presumes a correctly rounded
    ``exp``; vectorised ``exp`` kernels err by up to 2 ulp by themselves (NumPy's
    float32 SIMD ``exp`` and XLA's float64 ``exp`` included), so where smoothmax
    is above 2 ulp it still passes if it is within 1 ulp of the best peer running
    on the same backend (same ``exp``), case and dtype. Peers without ``where`` or
    ``temperature`` get the inputs a user would give them (masked to ``-inf``,
    divided by ``t``)."""
    from .peers import best_peer_error  # peers imports this module

    best = best_peer_error(case, dtype, backend.exp_from or backend.name)
    if best is None:
        return
    peer_name, peer_ulps = best
    if result.max_ulps <= peer_ulps + 1.0:
        result.status = PASS
        result.via_peer_bound = True
        result.tolerance = peer_ulps + 1.0
        result.detail = f"above 2 ulp but within the best peer + 1 ulp ({peer_name}: {format_ulps(peer_ulps)} ulp)"


def run_checks(cases: Iterable[Case], backends: Sequence[Backend], dtypes: Sequence[str] | None = None,
               smoothmax: Any = None, progress: Callable[[CheckResult], None] | None = None) -> list[CheckResult]:
    """Every case on every backend in every dtype both have (skips recorded too)."""
    results = []
    for case in cases:
        for backend in backends:
            for dtype in floats.DTYPES:
                if dtype not in case.dtypes or (dtypes and dtype not in dtypes):
                    continue
                if dtype not in backend.dtypes:
                    continue
                try:
                    outcome = check(case, backend, dtype, smoothmax)
                except Exception:  # a bug in the suite itself: report, keep going
                    outcome = CheckResult(case.id, backend.name, dtype, ERROR,
                                          detail="suite error: " + traceback.format_exc(limit=3))
                results.append(outcome)
                if progress is not None:
                    progress(outcome)
    return results


# ------------------------------------------------------------------- tables
def columns_of(backends: Sequence[Backend], dtypes: Sequence[str] | None = None) -> list[tuple[str, str]]:
    return [(backend.name, dtype) for backend in backends for dtype in floats.DTYPES
            if dtype in backend.dtypes and (not dtypes or dtype in dtypes)]


_SHORT_DTYPE = {"float16": "f16", "bfloat16": "bf16", "float32": "f32", "float64": "f64"}
_SHORT_BACKEND = {"array_api_strict": "strict"}


def format_matrix(results: Sequence[CheckResult], columns: Sequence[tuple[str, str]], case_ids: Sequence[str]) -> str:
    """Cases as rows, backend x dtype as columns, max ulp error per cell (``!`` = fail)."""
    by_key = {(r.case, r.backend, r.dtype): r for r in results}
    width = 7
    id_width = max([len("case")] + [len(identifier) for identifier in case_ids])
    header1 = " " * id_width + " " + "".join(
        f"{_SHORT_BACKEND.get(backend, backend)[:width]:>{width}}" for backend, _ in columns)
    header2 = f"{'case':<{id_width}} " + "".join(f"{_SHORT_DTYPE[dtype]:>{width}}" for _, dtype in columns)
    lines = [header1, header2, "-" * len(header2)]
    for identifier in case_ids:
        cells = []
        for backend, dtype in columns:
            result = by_key.get((identifier, backend, dtype))
            cells.append(f"{(result.cell() if result else ''):>{width}}")
        lines.append(f"{identifier:<{id_width}} " + "".join(cells))
    return "\n".join(lines)


def format_summary(results: Sequence[CheckResult], columns: Sequence[tuple[str, str]]) -> str:
    """Per backend x dtype: checks run, passed, failed, worst ulp error and its case."""
    lines = [f"{'backend':<17}{'dtype':<10}{'checks':>7}{'pass':>6}{'fail':>6}{'skip':>6}  {'worst ulps':>10}  worst case"]
    for backend, dtype in columns:
        group = [r for r in results if r.backend == backend and r.dtype == dtype]
        if not group:
            continue
        measured = [r for r in group if r.max_ulps is not None and r.status != SKIP]
        worst = max(measured, key=lambda r: r.max_ulps, default=None)
        lines.append(
            f"{backend:<17}{dtype:<10}{len(group):>7}"
            f"{sum(r.status == PASS for r in group):>6}"
            f"{sum(r.status in (FAIL, ERROR) for r in group):>6}"
            f"{sum(r.status == SKIP for r in group):>6}  "
            f"{format_ulps(worst.max_ulps) if worst else '-':>10}  {worst.case if worst else ''}"
        )
    return "\n".join(lines)


def format_failures(results: Sequence[CheckResult]) -> str:
    failed = [r for r in results if not r.ok]
    return "\n".join(
        f"FAIL {r.case} [{r.backend} {r.dtype}]: {format_ulps(r.max_ulps)} ulp > {r.tolerance} -- {r.detail}"
        if r.status == FAIL else f"ERROR {r.case} [{r.backend} {r.dtype}]: {r.detail}"
        for r in failed
    )


def as_json(results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    rows = []
    for result in results:
        row = asdict(result)
        if row["max_ulps"] is not None and not math.isfinite(row["max_ulps"]):
            row["max_ulps"] = "inf"
        rows.append(row)
    return rows
