"""Every ```python block of docs/user_guide.md and README.md runs.

Each block runs on its own, in a fresh namespace, in the order of the file; a
block whose framework (any module it imports) is not installed is skipped.
The blocks carry their own ``assert``s for what they claim.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCUMENTS = ("docs/user_guide.md", "README.md")
BLOCK = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
IMPORT = re.compile(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", re.M)


def python_blocks() -> list:
    cases = []
    for document in DOCUMENTS:
        path = ROOT / document
        if not path.exists():
            continue
        text = path.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 2  # the block's first code line
            cases.append(pytest.param(document, line, match.group(1), id=f"{document}:{line}"))
    return cases


def test_user_guide_has_python_blocks():
    assert len([case for case in python_blocks() if case.values[0] == "docs/user_guide.md"]) >= 5


@pytest.mark.parametrize("document, line, code", python_blocks())
def test_python_block_runs(document, line, code):
    missing = sorted({name for name in IMPORT.findall(code) if importlib.util.find_spec(name) is None})
    if missing:
        pytest.skip(f"{document}:{line} needs {', '.join(missing)}")
    # Pad with blank lines so that a traceback points at the line in the document.
    exec(compile("\n" * (line - 1) + code, str(ROOT / document), "exec"), {"__name__": "__docs__"})


def readme_sections() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    parts = re.split(r"^(#{2,3} .+)$", text, flags=re.M)
    return {title.lstrip("#").strip(): body for title, body in zip(parts[1::2], parts[2::2])}


def test_readme_has_a_tested_quick_start_per_framework():
    sections = readme_sections()
    for framework, module in (("PyTorch", "torch"), ("JAX", "jax"), ("NumPy", "numpy"), ("Dask", "dask")):
        blocks = BLOCK.findall(sections[framework] + "\n")
        assert blocks, f"README quick start {framework} has no python block"
        code = blocks[0]
        assert module in IMPORT.findall(code) and "assert" in code
        assert len([line for line in code.splitlines() if line.strip()]) <= 8


def test_readme_api_lists_every_public_name():
    import smoothmax

    api = readme_sections()["API"]
    listed = set(re.findall(r"^\| `([A-Za-z_]\w*)", api, re.M))
    assert listed == set(smoothmax.__all__)


def test_readme_has_accuracy_speed_and_backend_sections():
    sections = readme_sections()
    assert "python -m conformance --peers" in sections["Accuracy"]
    assert "python -m benchmarks" in sections["Speed"]
    assert "BACKEND_KERNELS" in sections["Adding a backend"] and "conformance/backends.py" in sections["Adding a backend"]
    assert "| empty (n = 0) |" in sections["Semantics"]
