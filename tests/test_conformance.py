"""The conformance suite inside pytest: one test per case x backend x dtype.

The same checks as ``python -m conformance`` (``conformance.runner.check``):
the case's inputs on the backend, the max ulp error against the mpmath
reference within the case's tolerance, special values matched exactly, output
dtype preserved, and for the gradient cases the gradient bitwise equal to
``smoothmax.softmax``. Backends that are not installed are not collected.
"""

from __future__ import annotations

import pytest

from conformance import generate
from conformance.backends import BACKENDS
from conformance.cases import load_cases
from conformance.functions import FUNCTIONS
from conformance.runner import PASS, SKIP, check

CASES = load_cases()
INSTALLED = [backend for backend in BACKENDS if backend.available]


def _parameters() -> list:
    parameters = []
    for case in CASES:
        for backend in INSTALLED:
            if FUNCTIONS[case.function].needs_grad and backend.grad is None:
                continue  # a gradient case on a backend without autodiff
            for dtype in case.dtypes:
                if dtype in backend.dtypes:
                    parameters.append(pytest.param(case, backend, dtype, id=f"{case.id}[{backend.name}-{dtype}]"))
    return parameters


@pytest.mark.parametrize("case, backend, dtype", _parameters())
def test_case(case, backend, dtype):
    result = check(case, backend, dtype)
    assert result.status != SKIP, result.detail
    assert result.status == PASS, (
        f"{result.max_ulps} ulp (tolerance {result.tolerance}): {result.detail}"
    )


def test_every_installed_backend_is_collected():
    names = {backend.name for backend in INSTALLED}
    assert {"numpy", "array_api_strict"} <= names
    assert len(CASES) >= 80


@pytest.mark.parametrize(
    "pattern", ["logsumexp/dominant/0-and-10x-40", "softmax/special/semantics-rows", "logsumexp/subnormal-result"]
)
def test_case_files_match_the_generator(pattern):
    """The checked-in expected values are what ``generate.py`` computes now."""
    pytest.importorskip("mpmath")
    assert generate.main(["--check", "--family", "core", "--case", pattern]) == 0


def test_jax_large_path_passes_every_float32_case():
    """JAX's large-array path (above ``_JAX_SMALL_BYTES``, which the cases' small
    inputs never reach: their float32 rows would sum in float64 there, columns
    and middle axes take the float32 sum with its second sums) run on every
    float32 case, forced by a threshold of 0: all within their tolerances.
    A process of its own, so that no program compiled for the one-piece path is
    reused (jit keys on shapes, not on the threshold)."""
    pytest.importorskip("jax")
    pytest.importorskip("mpmath")
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from smoothmax import _fastpaths\n"
        "_fastpaths._JAX_SMALL_BYTES = 0\n"
        "from conformance.__main__ import main\n"
        "sys.exit(main(['--backend', 'jax', '--dtype', 'float32', '--quiet']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " 0 failed" in result.stdout, result.stdout[-3000:]
