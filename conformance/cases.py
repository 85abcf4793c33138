"""Reading the case files ``conformance/cases/*.json`` (written by ``generate.py``).

One file per function family, ``{"family": ..., "cases": [...]}``; each case::

    {
      "id": "logsumexp/dominant/0-and-10x-40",
      "function": "logsumexp",                 # key of conformance.functions.FUNCTIONS
      "description": "...",
      "keywords": {"axis": [0, 2], "keepdims": true, "temperature": 0.5, ...},
      "shapes": {"x": [3, 4, 5], "b": [1, 4, 5], "where": [3, 4, 5]},
      "dtypes": ["float16", "bfloat16", "float32", "float64"],
      "bool_inputs": {"where": [1, 0, ...]},   # same for every dtype
      "inputs": {"float32": {"x": [hex...] or {"base64": ...}, "b": ...}, ...},
      "expected": {"float32": [{"shape": [], "rounded": [hex...],
                                "offset_ulps": [0.21, ...]}, ...], ...},
      "tolerance_ulps": {"float32": 1.0, ...},               # accurate-exp backends
      "faithful_exp_tolerance_ulps": {"float32": 2.0, ...},  # torch, jax
      "why": null or "one line: why a tolerance is above the default"
    }

``rounded`` is the exact result correctly rounded to the dtype; ``offset_ulps``
is ``(exact - rounded) / ulp(exact)`` (6 significant digits), so errors can be
measured in fractions of an ulp without mpmath.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import floats
from .functions import ACCURACY, FUNCTIONS

CASES_DIRECTORY = Path(__file__).parent / "cases"


@dataclass(frozen=True)
class Expected:
    """One expected output in one dtype."""

    rounded: np.ndarray  # float64 holding the correctly rounded values
    offset_ulps: np.ndarray  # (exact - rounded) / ulp(exact)


@dataclass
class Case:
    """One reference case, decoded lazily (large inputs are base64)."""

    family: str
    raw: dict[str, Any]
    _decoded: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return self.raw["id"]

    @property
    def function(self) -> str:
        return self.raw["function"]

    @property
    def dtypes(self) -> tuple[str, ...]:
        return tuple(self.raw["dtypes"])

    @property
    def why(self) -> str | None:
        return self.raw.get("why")

    @property
    def keywords(self) -> dict[str, Any]:
        """Keyword arguments with JSON lists turned back into tuples (``axis``)."""
        return {name: tuple(value) if isinstance(value, list) else value
                for name, value in self.raw.get("keywords", {}).items()}

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.raw["shapes"][name])

    def inputs(self, dtype: str) -> dict[str, np.ndarray]:
        """The case's arrays for ``dtype``: float64 arrays of ``dtype`` values, and bools."""
        key = ("inputs", dtype)
        if key not in self._decoded:
            arrays: dict[str, np.ndarray] = {
                name: floats.decode_floats(encoded, self.shape(name))
                for name, encoded in self.raw["inputs"][dtype].items()
            }
            for name, encoded in self.raw.get("bool_inputs", {}).items():
                arrays[name] = floats.decode_bools(encoded, self.shape(name))
            self._decoded[key] = arrays
        return self._decoded[key]

    def expected(self, dtype: str) -> list[Expected]:
        key = ("expected", dtype)
        if key not in self._decoded:
            self._decoded[key] = [
                Expected(
                    rounded=floats.decode_floats(output["rounded"], tuple(output["shape"])),
                    offset_ulps=np.asarray(output["offset_ulps"], dtype=np.float64).reshape(output["shape"]),
                )
                for output in self.raw["expected"][dtype]
            ]
        return self._decoded[key]

    def tolerance(self, dtype: str, faithful_exp: bool) -> float:
        table = "faithful_exp_tolerance_ulps" if faithful_exp else "tolerance_ulps"
        return float(self.raw[table][dtype])

    def validate(self) -> list[str]:
        """Problems with this case's data (empty when it is well formed)."""
        problems = []
        spec = FUNCTIONS.get(self.function)
        if spec is None:
            return [f"{self.id}: unknown function {self.function!r}"]
        accuracy = ACCURACY[spec.accuracy]
        for dtype in self.dtypes:
            if dtype not in floats.FORMATS:
                problems.append(f"{self.id}: unknown dtype {dtype}")
                continue
            above_default = (self.tolerance(dtype, False) > accuracy.default[dtype]
                             or self.tolerance(dtype, True) > accuracy.faithful_exp[dtype])
            if above_default and not self.why:
                problems.append(f"{self.id}: tolerance above the default in {dtype} without a why")
            for name, values in self.inputs(dtype).items():
                if values.dtype != bool and not floats.is_representable(values, dtype):
                    problems.append(f"{self.id}: input {name} not exactly representable in {dtype}")
        return problems


def load_cases(directory: Path = CASES_DIRECTORY) -> list[Case]:
    """Every case of every ``*.json`` file in ``directory`` (files in name order)."""
    cases = []
    for path in sorted(directory.glob("*.json")):
        content = json.loads(path.read_text())
        cases.extend(Case(content["family"], raw) for raw in content["cases"])
    identifiers = [case.id for case in cases]
    duplicates = {identifier for identifier in identifiers if identifiers.count(identifier) > 1}
    if duplicates:
        raise ValueError(f"duplicate case ids: {sorted(duplicates)}")
    return cases


def select(cases: list[Case], patterns: list[str] | None) -> list[Case]:
    """Cases whose id matches any pattern: a glob (``*``, ``?``, ``[``) or a substring."""
    if not patterns:
        return cases

    def matches(identifier: str, pattern: str) -> bool:
        if any(character in pattern for character in "*?["):
            return fnmatch.fnmatchcase(identifier, pattern)
        return pattern in identifier

    return [case for case in cases if any(matches(case.id, pattern) for pattern in patterns)]
