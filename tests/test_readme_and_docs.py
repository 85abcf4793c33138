"""The README's two commands, .ci/run running the same test command, the
``python -m smoothmax`` tour, lazy imports, and every docstring example."""

from __future__ import annotations

import doctest
import importlib
import pathlib
import re
import subprocess
import sys

import pytest

import smoothmax

ROOT = pathlib.Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README must open with a bash block of the two commands"
    assert text.index(block.group(0)) < text.index("\n## ") if "\n## " in text else True
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_commands():
    commands = readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("python -m smoothmax")
    assert "pytest" in commands[1]
    assert all("torch==2.13.0" in command for command in commands)


def test_ci_runs_the_readme_test_command():
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert readme_commands()[1] in ci_lines


def test_tour_runs_and_reports_bitwise_gradients():
    result = subprocess.run(
        [sys.executable, "-m", "smoothmax"], capture_output=True, text=True, timeout=120, check=True
    )
    assert "bounds: max(x)" in result.stdout
    assert "one dominant term" in result.stdout
    for backend in ("torch", "jax"):
        if importlib.util.find_spec(backend):
            line = next(line for line in result.stdout.splitlines() if line.strip().startswith(backend + " ("))
            assert "DIFFERS" not in line and line.count("bitwise") == 2


def test_import_does_not_import_torch_or_jax():
    code = "import sys, numpy, smoothmax; smoothmax.logsumexp(numpy.ones(3)); print('torch' in sys.modules, 'jax' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["False", "False"]


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_cpu_tensors_do_not_import_triton():
    # Triton (smoothmax._cuda) is imported at the first CUDA tensor only
    code = (
        "import sys, torch, smoothmax; x = torch.randn(4, 8, requires_grad=True); "
        "smoothmax.logsumexp(x, axis=1).sum().backward(); smoothmax.softmax(x.detach(), axis=0); "
        "print('triton' in sys.modules, 'smoothmax._cuda' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.split() == ["False", "False"]


PUBLIC_MODULES = sorted(
    {
        importlib.import_module(getattr(smoothmax, name).__module__).__name__
        for name in smoothmax.__all__
        if callable(getattr(smoothmax, name)) and not isinstance(getattr(smoothmax, name), type)
    }
)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    failures, attempted = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert attempted > 0 and failures == 0


def test_every_public_function_documents_math_and_example():
    for name in smoothmax.__all__:
        function = getattr(smoothmax, name)
        if isinstance(function, type) or not callable(function):
            continue
        doc = function.__doc__ or ""
        assert ">>>" in doc, f"{name} has no doctest example"
        assert "math" in doc or "=" in doc, f"{name} has no math in its docstring"
        assert function.__annotations__, f"{name} has no type hints"
