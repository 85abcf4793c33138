"""Peer comparison: the same cases through scipy, torch and jax's own functions,
side by side with smoothmax on the same backend (``python -m conformance --peers``).

A peer is only run where the case's arguments exist for it (else ``n/a``); peers
failing is reported, never an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import floats
from .backends import Backend, get_backend
from .cases import Case
from .functions import FUNCTIONS, NotApplicable
from .runner import ERROR, FAIL, PASS, SKIP, CheckResult, _run_guarded, backend_arrays, check, compare, format_ulps


@dataclass
class PeerRow:
    """One case in one dtype: smoothmax and each peer, per peer backend."""

    case: str
    dtype: str
    results: dict[str, CheckResult]  # column name -> result

    def interesting(self, threshold: float = 1.0) -> bool:
        """A peer exceeds ``threshold`` ulps, returns a wrong special value or raises;
        or smoothmax is worse than the best peer + 1 ulp."""
        for column, result in self.results.items():
            if column.startswith("smoothmax") or result.status == SKIP:
                continue
            if result.status == ERROR or result.label or (result.max_ulps or 0.0) > threshold:
                return True
        return self.smoothmax_behind_best_peer()

    def smoothmax_behind_best_peer(self) -> bool:
        peer_errors = [r.max_ulps for c, r in self.results.items()
                       if not c.startswith("smoothmax") and r.status != SKIP and r.max_ulps is not None]
        ours = [r.max_ulps for c, r in self.results.items()
                if c.startswith("smoothmax") and r.status != SKIP and r.max_ulps is not None]
        if not peer_errors or not ours:
            return False
        return max(ours) > min(peer_errors) + 1.0


def _peer_check(case: Case, peer_name: str, backend: Backend, dtype: str) -> CheckResult:
    spec = FUNCTIONS[case.function].peers[peer_name]
    result = CheckResult(case.id, peer_name, dtype, SKIP, tolerance=case.tolerance(dtype, backend.faithful_exp))
    try:
        arrays = backend_arrays(case, backend, dtype)
        outputs = _run_guarded(lambda: spec.call(backend.namespace, arrays, case.keywords))
    except NotApplicable as reason:
        result.detail = f"n/a: {reason}"
        return result
    except Exception as error:  # noqa: BLE001 - a peer raising is a finding, not a crash
        result.status, result.label = ERROR, "raise"
        result.detail = f"raised {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return result
    values = []
    notes = []
    for output in outputs:
        value = backend.to_numpy(output)
        if backend.dtype_name(output) != dtype:
            # e.g. scipy upcasting float16: compare what a user gets back in dtype.
            notes.append(f"returned {backend.dtype_name(output)}")
            value = value.astype(dtype).astype(np.float64)
        values.append(value)
    expected = case.expected(dtype)
    if len(values) > len(expected):
        values = values[: len(expected)]
    result.max_ulps, result.label, detail = compare(values, expected, dtype, backend.flushes_subnormals)
    result.detail = "; ".join(notes + ([detail] if detail else []))
    if result.label == "shape":
        result.status = ERROR
    else:
        result.status = PASS if result.max_ulps <= result.tolerance else FAIL
    return result


def best_peer_error(case: Case, dtype: str, backend_name: str) -> tuple[str, float] | None:
    """``(peer, max ulps)`` of the most accurate installed peer on ``case`` in
    ``dtype`` among those running on ``backend_name`` (its ``exp`` is the floor
    for every code on that backend), or None where no peer applies."""
    best = None
    for peer_name, peer in FUNCTIONS[case.function].peers.items():
        backend = get_backend(peer.backend)
        if peer.backend != backend_name or not backend.available or dtype not in backend.dtypes:
            continue
        outcome = _peer_check(case, peer_name, backend, dtype)
        if outcome.status == SKIP or outcome.max_ulps is None or outcome.status == ERROR:
            continue
        if best is None or outcome.max_ulps < best[1]:
            best = (peer_name, outcome.max_ulps)
    return best


def peer_columns(backends: Sequence[Backend]) -> list[tuple[str, str, str]]:
    """``(column name, peer name or "smoothmax", backend name)`` in display order."""
    names = {backend.name for backend in backends}
    peer_backends: dict[str, list[str]] = {}
    for spec in FUNCTIONS.values():
        for peer_name, peer in spec.peers.items():
            if peer.backend in names and peer_name not in peer_backends.setdefault(peer.backend, []):
                peer_backends[peer.backend].append(peer_name)
    columns = []
    for backend in backends:
        if backend.name in peer_backends:
            columns.append((f"smoothmax[{backend.name}]", "smoothmax", backend.name))
            columns.extend((peer, peer, backend.name) for peer in peer_backends[backend.name])
    return columns


def run_peers(cases: Sequence[Case], backends: Sequence[Backend], dtypes: Sequence[str] | None = None,
              smoothmax: Any = None) -> list[PeerRow]:
    columns = peer_columns(backends)
    rows = []
    for case in cases:
        spec = FUNCTIONS[case.function]
        for dtype in floats.DTYPES:
            if dtype not in case.dtypes or (dtypes and dtype not in dtypes):
                continue
            results: dict[str, CheckResult] = {}
            for column, peer_name, backend_name in columns:
                backend = get_backend(backend_name)
                if dtype not in backend.dtypes:
                    continue
                if peer_name == "smoothmax":
                    if any(p.backend == backend_name for p in spec.peers.values()):
                        results[column] = check(case, backend, dtype, smoothmax)
                elif peer_name in spec.peers and spec.peers[peer_name].backend == backend_name:
                    results[column] = _peer_check(case, peer_name, backend, dtype)
            if any(not c.startswith("smoothmax") and r.status != SKIP for c, r in results.items()):
                rows.append(PeerRow(case.id, dtype, results))
    return rows


def _cell(result: CheckResult | None) -> str:
    if result is None or result.status == SKIP:
        return "n/a"
    if result.status == ERROR:
        return "raise" if result.label == "raise" else "wrong"
    if result.label:
        return result.label
    return format_ulps(result.max_ulps)


def format_peers(rows: Sequence[PeerRow], backends: Sequence[Backend], only_interesting: bool = True) -> str:
    """The side-by-side table (max ulp error, or NaN / inf / raise / n/a per cell)."""
    columns = [name for name, _, _ in peer_columns(backends)]
    shown = [row for row in rows if row.interesting() or not only_interesting]
    id_width = max([len("case")] + [len(row.case) for row in shown])
    widths = [max(len(name), 7) for name in columns]
    header = f"{'case':<{id_width}} {'dtype':<9}" + "".join(f"{name:>{width + 1}}" for name, width in zip(columns, widths))
    lines = [header, "-" * len(header)]
    for row in shown:
        cells = "".join(f"{_cell(row.results.get(name)):>{width + 1}}" for name, width in zip(columns, widths))
        marker = "  <- smoothmax > best peer + 1 ulp" if row.smoothmax_behind_best_peer() else ""
        lines.append(f"{row.case:<{id_width}} {row.dtype:<9}{cells}{marker}")
    if only_interesting:
        lines.append(f"({len(shown)} of {len(rows)} case x dtype rows shown: those where a peer exceeds "
                     f"1 ulp, returns a wrong special value (NaN, inf, ...) or raises; --all-rows for all)")
    return "\n".join(lines)


def peer_summary(rows: Sequence[PeerRow]) -> str:
    """Per column: rows run, worst ulps, rows > 1 ulp, wrong special values, raises."""
    columns: dict[str, list[CheckResult]] = {}
    for row in rows:
        for name, result in row.results.items():
            columns.setdefault(name, []).append(result)
    lines = [f"{'implementation':<24}{'run':>6}{'> 1 ulp':>9}{'wrong':>7}{'raise':>7}{'worst finite':>14}"]
    for name, results in columns.items():
        run = [r for r in results if r.status != SKIP]
        finite = [r.max_ulps for r in run if r.max_ulps is not None and math.isfinite(r.max_ulps)]
        lines.append(
            f"{name:<24}{len(run):>6}"
            f"{sum(1 for r in run if r.max_ulps is not None and math.isfinite(r.max_ulps) and r.max_ulps > 1):>9}"
            f"{sum(1 for r in run if r.label and r.label != 'raise'):>7}"
            f"{sum(1 for r in run if r.label == 'raise'):>7}"
            f"{format_ulps(max(finite)) if finite else '-':>14}"
        )
    return "\n".join(lines)
