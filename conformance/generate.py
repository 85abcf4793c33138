"""Generate ``conformance/cases/<family>.json`` from the case builders in
``conformance/families/`` with mpmath references (``python -m conformance.generate``).

Deterministic: every case draws from its own ``numpy`` Generator seeded with
the case id, so adding or reordering cases changes no other case. Inputs are
drawn in float64, then rounded per dtype with :func:`conformance.exact.round_to_format`;
the reference is computed from the rounded inputs taken as exact, at two mpmath
precisions (:data:`PRECISIONS`), and both must round to the same values.

``--check`` regenerates in memory and fails if the checked-in files differ.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import pkgutil
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import mpmath
import numpy as np

from . import exact, families, floats
from .cases import CASES_DIRECTORY
from .functions import ACCURACY, FUNCTIONS

#: mpmath working precisions in bits (>= 50 decimal digits; 256 bits is 77 digits).
PRECISIONS = (256, 512)
#: Base seed of every case's Generator.
SEED = 20_251_125

InputBuilder = Callable[[str, np.random.Generator], dict[str, Any]]
#: ``bound(dtype, inputs, exact_outputs, keywords, default)`` -> ``(tolerance floor in ulps,
#: reason or None)``; see ``conformance.bounds``.
ToleranceBound = Callable[[str, dict[str, np.ndarray], tuple[np.ndarray, ...], dict[str, Any], float],
                          tuple[float, "str | None"]]


@dataclass
class CaseSpec:
    """What a family module says about one case; ``generate`` adds the rest.

    Parameters
    ----------
    id
        Unique, ``function/what/detail``.
    function
        A key of ``conformance.functions.FUNCTIONS``.
    description
        One line: what the case checks.
    inputs
        ``inputs(dtype, rng)`` -> float arrays by name (``"x"``, ``"b"``...):
        float64 values, rounded to ``dtype`` by the generator. ``rng`` is a fresh
        Generator seeded with the case id: the same draws for every dtype.
    bool_inputs
        Boolean arrays by name (``"where"``), the same for every dtype.
    keywords
        The other arguments (``axis``, ``keepdims``, ``return_sign``, ``temperature``).
    dtypes
        The dtypes the case applies to.
    tolerance
        Optional ``bound(dtype, inputs, exact_outputs, keywords, default)`` ->
        ``(floor, reason)`` (see ``conformance.bounds``): the case's tolerance is
        ``max(default, floor)``, and a floor above the default needs a reason.
    why
        One line: why this case needs more than the default tolerance; overrides
        the bound's own reason.
    """

    id: str
    function: str
    description: str
    inputs: InputBuilder
    bool_inputs: dict[str, Any] = field(default_factory=dict)
    keywords: dict[str, Any] = field(default_factory=dict)
    dtypes: tuple[str, ...] = floats.DTYPES
    tolerance: ToleranceBound | None = None
    why: str | None = None


def rng_for(case_id: str) -> np.random.Generator:
    """The case's own Generator (the draws depend on the id only)."""
    return np.random.default_rng(np.random.SeedSequence([SEED, zlib.crc32(case_id.encode())]))


def _resolve(path: str) -> Callable[..., tuple[np.ndarray, ...]]:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _round_up(value: float) -> float:
    """Tolerances are written with one decimal, rounded up."""
    return math.ceil(value * 10 - 1e-9) / 10


def exact_outputs(spec: CaseSpec, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """The reference at the lowest of :data:`PRECISIONS` (checked against the others)."""
    reference = _resolve(FUNCTIONS[spec.function].reference)
    keywords = dict(spec.keywords)
    results = []
    for bits in PRECISIONS:
        with mpmath.workprec(bits):
            results.append(reference(arrays, keywords))
    return results[0], results[1:]


def build_case(spec: CaseSpec) -> dict[str, Any]:
    """The JSON object of one case (inputs, expected values, tolerances per dtype)."""
    if spec.function not in FUNCTIONS:
        raise KeyError(f"{spec.id}: function {spec.function!r} is not registered in conformance.functions")
    function = FUNCTIONS[spec.function]
    accuracy = ACCURACY[function.accuracy]
    bool_arrays = {name: np.asarray(values, dtype=bool) for name, values in spec.bool_inputs.items()}
    case: dict[str, Any] = {
        "id": spec.id,
        "function": spec.function,
        "description": spec.description,
        "keywords": {name: _jsonable(value) for name, value in spec.keywords.items()},
        "shapes": {},
        "dtypes": list(spec.dtypes),
        "bool_inputs": {name: floats.encode_bools(values) for name, values in bool_arrays.items()},
        "inputs": {},
        "expected": {},
        "tolerance_ulps": {},
        "faithful_exp_tolerance_ulps": {},
        "why": None,
    }
    for name, values in bool_arrays.items():
        case["shapes"][name] = list(values.shape)
    reasons: list[tuple[float, str | None]] = []  # (floor / default, reason) above the default
    for dtype in spec.dtypes:
        with mpmath.workprec(PRECISIONS[0]):  # offsets and bounds need the exact values
            _build_dtype(spec, dtype, case, bool_arrays, accuracy, reasons)
    if reasons:
        why = spec.why or max(reasons, key=lambda pair: pair[0])[1]
        if not why:
            raise ValueError(f"{spec.id}: tolerance above the default needs a why")
        case["why"] = why
    return case


def _build_dtype(spec: CaseSpec, dtype: str, case: dict[str, Any], bool_arrays: dict[str, np.ndarray],
                 accuracy: Any, reasons: list[tuple[float, str | None]]) -> None:
    """Fill ``case`` with the inputs, expected values and tolerances of one dtype."""
    fmt = floats.FORMATS[dtype]
    drawn = spec.inputs(dtype, rng_for(spec.id))
    float_arrays = {}
    for name, values in drawn.items():
        values = np.asarray(values, dtype=np.float64)
        float_arrays[name] = values if dtype == "float64" else exact.round_array(values, fmt)
        shape = list(values.shape)
        if case["shapes"].setdefault(name, shape) != shape:
            raise ValueError(f"{spec.id}: input {name} changes shape with the dtype")
    arrays = {**float_arrays, **bool_arrays}
    outputs, others = exact_outputs(spec, arrays)
    expected = []
    for position, output in enumerate(outputs):
        pairs = [exact.rounded_and_offset(value, fmt) for value in output.ravel()]
        for other in others:
            check_pairs = [exact.rounded_and_offset(value, fmt) for value in other[position].ravel()]
            for (rounded, offset), (rounded_again, offset_again) in zip(pairs, check_pairs):
                same = (rounded == rounded_again or (math.isnan(rounded) and math.isnan(rounded_again)))
                if not same or abs(offset - offset_again) > 1e-9:
                    raise ArithmeticError(f"{spec.id} {dtype}: reference not stable across precisions")
        rounded = np.asarray([pair[0] for pair in pairs], dtype=np.float64)
        expected.append({
            "shape": list(output.shape),
            "rounded": floats.encode_floats(rounded, dtype),
            "offset_ulps": [float(f"{pair[1]:.6g}") for pair in pairs],
        })
    case["inputs"][dtype] = {name: floats.encode_floats(values, dtype) for name, values in float_arrays.items()}
    case["expected"][dtype] = expected
    for table, defaults in (("tolerance_ulps", accuracy.default), ("faithful_exp_tolerance_ulps", accuracy.faithful_exp)):
        floor, reason = (spec.tolerance(dtype, arrays, outputs, dict(spec.keywords), defaults[dtype])
                         if spec.tolerance else (0.0, None))
        value = max(defaults[dtype], _round_up(floor))
        case[table][dtype] = value
        if value > defaults[dtype]:
            reasons.append((value / defaults[dtype], reason))


# ------------------------------------------------------------------ families
def family_modules() -> dict[str, Any]:
    """``conformance/families/*.py``: each defines ``FAMILY`` and ``cases()``."""
    modules = {}
    for info in pkgutil.iter_modules(families.__path__):
        module = importlib.import_module(f"{families.__name__}.{info.name}")
        modules[module.FAMILY] = module
    return modules


def build_family(module: Any, patterns: Sequence[str] | None = None, progress: bool = False) -> dict[str, Any]:
    specs = module.cases()
    identifiers = [spec.id for spec in specs]
    if len(set(identifiers)) != len(identifiers):
        raise ValueError(f"duplicate ids in family {module.FAMILY}")
    built = []
    for spec in specs:
        if patterns and not any(pattern in spec.id for pattern in patterns):
            continue
        started = time.perf_counter()
        built.append(build_case(spec))
        if progress:
            print(f"  {spec.id} ({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return {
        "family": module.FAMILY,
        "generated_by": "python -m conformance.generate",
        "mpmath_precision_bits": list(PRECISIONS),
        "seed": SEED,
        "cases": built,
    }


def dumps(content: dict[str, Any]) -> str:
    """JSON with one key per line and every list of scalars on one line (diffable)."""

    def encode(value: Any, indent: int) -> str:
        pad = " " * indent
        if isinstance(value, dict) and value:
            inner = ",\n".join(f"{pad} {json.dumps(key)}: {encode(item, indent + 1)}" for key, item in value.items())
            return "{\n" + inner + "\n" + pad + "}"
        if isinstance(value, list) and value and any(isinstance(item, (dict, list)) for item in value):
            inner = ",\n".join(f"{pad} {encode(item, indent + 1)}" for item in value)
            return "[\n" + inner + "\n" + pad + "]"
        return json.dumps(value, separators=(", ", ": "))

    return encode(content, 0) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", action="append", help="only this family (repeatable)")
    parser.add_argument("--check", action="store_true", help="regenerate in memory; exit 1 if the files differ")
    parser.add_argument("--case", action="append", metavar="SUBSTRING",
                        help="with --check: only compare these cases (faster)")
    parser.add_argument("--output", type=Path, default=CASES_DIRECTORY, help="directory of the case files")
    options = parser.parse_args(argv)
    modules = family_modules()
    chosen = options.family or sorted(modules)
    status = 0
    for name in chosen:
        module = modules[name]
        path = options.output / f"{name}.json"
        if options.check:
            content = build_family(module, options.case)
            stored = json.loads(path.read_text())
            stored_cases = {case["id"]: case for case in stored["cases"]}
            regenerated = json.loads(dumps(content))["cases"]
            for case in regenerated:
                if stored_cases.get(case["id"]) != case:
                    print(f"{path.name}: {case['id']} differs from a fresh generation")
                    status = 1
            if not options.case and len(stored_cases) != len(regenerated):
                print(f"{path.name}: {len(stored_cases)} stored cases, {len(regenerated)} generated")
                status = 1
        else:
            print(f"generating {path}", file=sys.stderr)
            content = build_family(module, progress=True)
            options.output.mkdir(parents=True, exist_ok=True)
            path.write_text(dumps(content))
            print(f"{len(content['cases'])} cases, {path.stat().st_size / 1e6:.2f} MB", file=sys.stderr)
    if options.check and status == 0:
        print("case files are up to date")
    return status


if __name__ == "__main__":
    sys.exit(main())
