"""Every script in examples/ runs (in its small size) and prints what it claims.

Each example also asserts its own claims; here each runs in a fresh interpreter
with ``--small`` and the key lines of its output are checked.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *arguments: str, timeout: float = 120) -> str:
    environment = dict(os.environ, SMOOTHMAX_EXAMPLES_SMALL="1", PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--small", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    assert result.stdout.rstrip().splitlines()[-1].startswith("OK"), result.stdout
    return result.stdout


def needs(*modules: str):
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)}")


def test_every_example_is_tested():
    tested = {"argmax_vs_softmax.py", "jax_grad.py", "pytorch_model.py", "numpy_hmm.py", "dask_large.py"}
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested


def test_argmax_vs_softmax():
    output = run_example("argmax_vs_softmax.py")
    assert "one_hot(argmax(x)) = [0. 1. 0. 0. 0.]" in output
    assert "softmax(x, temperature=0)   = [0. 1. 0. 0. 0.]" in output
    assert "softmax([1.  3.  3.  0.5], temperature=0) = [0.  0.5 0.5 0. ]" in output
    # the excess LSE_t(x) - max(x) is positive and shrinks with t
    excesses = [float(value) for value in re.findall(r"^\s+[\d.]+\s+[\d.]+\s+([\d.e+-]+)", output, re.M)]
    assert len(excesses) >= 3 and all(value > 0 for value in excesses)
    assert excesses == sorted(excesses, reverse=True)


@needs("jax")
def test_jax_grad():
    output = run_example("jax_grad.py")
    assert "equal to softmax(x): True; at t = 0.5 under jit: True" in output
    distance = float(re.search(r"distance ([\d.e+-]+)", output).group(1))
    assert distance < 0.05
    assert re.search(r"landed on their nearest centre: (\d+)/\1;", output)


@needs("torch")
def test_pytorch_model():
    output = run_example("pytorch_model.py", timeout=240)
    eager_gap = float(re.search(r"largest loss difference over \d+ steps: ([\d.e+-]+);", output).group(1))
    compiled_gap = float(re.search(r"vs eager [\d.]+; largest difference ([\d.e+-]+)", output).group(1))
    assert eager_gap < 1e-4 and compiled_gap < 1e-4, output
    assert "torch.compile(model, fullgraph=True)" in output


def test_numpy_hmm():
    output = run_example("numpy_hmm.py")
    assert "brute force" in output
    assert "underflow" in output


@needs("dask")
def test_dask_large():
    output = run_example("dask_large.py")
    assert "single pass" in output
