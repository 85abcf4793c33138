"""benchmarks/dask_bench.py runs (a small size: no timing assertions) and its
single-pass result equals the two-pass recipe's and the long-double reference."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("dask")
pytest.importorskip("psutil")

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "dask_bench.py"


def test_small_dask_bench_agrees_within_one_ulp(tmp_path):
    output = tmp_path / "dask.json"
    command = [sys.executable, str(BENCH), "--size", "1e6", "--chunk", "1e5", "--repeat", "1", "--json", str(output)]
    printed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    assert "single pass is" in printed
    report = json.loads(output.read_text())
    assert set(report["variants"]) == {"smoothmax", "two-pass", "two-pass, one graph"}
    assert report["ulps_single_vs_two_pass"] <= 1.0
    exact = report["long_double_reference"]
    single = report["variants"]["smoothmax"]["value"]
    assert abs(single - exact) <= 1.5 * abs(exact) * 2.0**-52
    assert report["speedup_vs_two_pass"] > 0 and report["peak_chunks_single_pass"] >= 0
