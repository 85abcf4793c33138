"""The benchmark harness runs (tiny mode: a few seconds, no timing assertions)."""

from __future__ import annotations

import json
import math
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # the repository root
from benchmarks import run  # noqa: E402

pytest.importorskip("scipy")


def test_tiny_run_writes_a_complete_report(tmp_path):
    output = tmp_path / "result.json"
    result = run.main(["--tiny", "--backend", "numpy", "--output", str(output)])
    saved = json.loads(output.read_text())
    assert saved["mode"] == "tiny"
    peers = {row["peer"] for row in saved["ratios"]}
    assert peers == {"scipy.special.logsumexp", "two-pass", "limit max+exp+sum"}
    assert len(saved["ratios"]) == len(run.SHAPES_TINY) * len(run.DTYPES) * 3
    for row in saved["ratios"]:
        assert row["ratio_q1"] <= row["ratio_median"] <= row["ratio_q3"]
        assert math.isfinite(row["ratio_median"]) and row["ratio_median"] > 0
    assert [row["n"] for row in saved["scaling"]] == run.SCALING_TINY
    assert {row["function"] for row in saved["memory"]} >= {"smoothmax.logsumexp", "scipy.special.logsumexp"}
    assert "| numpy | logsumexp |" in run.report(result)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_tiny_run_of_autodiff_backends(backend):
    pytest.importorskip(backend)
    result = run.run("tiny", [backend], repeat=1, with_scaling=False)
    functions = {row["function"] for row in result["ratios"]}
    assert {"logsumexp", "softmax fwd+bwd", "log_softmax fwd+bwd"} <= functions
    assert all(row["target"] is not None for row in result["ratios"])
    run.report(result)


def test_cli_rejects_unknown_backend():
    with pytest.raises(SystemExit):
        run.main(["--tiny", "--backend", "cupy", "--no-save"])


def _tiny_rows(torch, module) -> list[dict]:
    """``module.main(["--tiny"])``'s rows (the caller's thread count kept), each a
    finite positive ratio."""
    threads = torch.get_num_threads()
    try:
        rows = module.main(["--tiny"])
    finally:
        torch.set_num_threads(threads)
    for row in rows:
        assert math.isfinite(row["ratio_median"]) and row["ratio_median"] > 0
    return rows


def test_tiny_masked_logits_run():
    torch = pytest.importorskip("torch")
    from benchmarks import masked_logits

    rows = _tiny_rows(torch, masked_logits)
    assert len(rows) == len(masked_logits.TINY_LAYOUTS) * 4 * 2  # layouts, fills, functions
    assert {row["peer"] for row in rows} == {"torch.logsumexp", "torch.softmax"}
    causal = masked_logits.masked_input(torch, "causal", (2, 8, 8), -math.inf)
    assert torch.equal(torch.isneginf(causal[0]), torch.ones(8, 8, dtype=torch.bool).triu(1))
    padded = masked_logits.masked_input(torch, "padded", (3, 100), -1e4)
    assert bool((padded[:, 68:] == -1e4).all()) and not bool((padded[:, :68] == -1e4).any())


def test_tiny_flat_logits_run():
    torch = pytest.importorskip("torch")
    from benchmarks import flat_logits

    rows = _tiny_rows(torch, flat_logits)
    assert len(rows) == len(flat_logits.TINY_INPUTS) * 5  # logsumexp, (log_)softmax, fwd and fwd+bwd
    assert {row["peer"] for row in rows} == {"torch.logsumexp", "torch.softmax", "torch.log_softmax"}
    x = flat_logits.flat_input(torch, (400, 500), 0.1)
    assert x.dtype == torch.float32 and 0.09 < float(x.std()) < 0.11

