"""Floating-point formats, the exact encodings of the case files, and ulp errors.

Only NumPy is needed here (no mpmath, no ml_dtypes): the runner imports this
module, ``generate.py`` adds the mpmath side in :mod:`conformance.exact`.

Array encodings in the case files (``decode_floats`` reads both):

* a list of strings, ``float.hex`` of each value (``"0x1.8p+0"``), or
  ``"inf"``, ``"-inf"``, ``"nan"``: used for small arrays, readable and exact;
* ``{"base64": ..., "dtype": "float32"}``: the little-endian bytes of the array
  in that dtype (bfloat16 as its 16-bit patterns): compact and exact, used for
  large arrays.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Arrays with more entries than this are stored as base64 rather than hex strings.
HEX_LIMIT = 256


@dataclass(frozen=True)
class FloatFormat:
    """A binary IEEE-style format: ``precision`` significand bits (with the
    implicit one), normal exponents ``min_exponent ..= max_exponent``, subnormals."""

    name: str
    precision: int
    min_exponent: int
    max_exponent: int

    @property
    def smallest_subnormal(self) -> float:
        return math.ldexp(1.0, self.min_exponent - self.precision + 1)

    @property
    def smallest_normal(self) -> float:
        return math.ldexp(1.0, self.min_exponent)

    @property
    def largest_finite(self) -> float:
        return math.ldexp(2.0 - math.ldexp(1.0, 1 - self.precision), self.max_exponent)

    @property
    def epsilon(self) -> float:
        """ulp(1)."""
        return math.ldexp(1.0, 1 - self.precision)


FORMATS: dict[str, FloatFormat] = {
    "float16": FloatFormat("float16", 11, -14, 15),
    "bfloat16": FloatFormat("bfloat16", 8, -126, 127),
    "float32": FloatFormat("float32", 24, -126, 127),
    "float64": FloatFormat("float64", 53, -1022, 1023),
}

#: Every dtype a case can apply to, narrowest first.
DTYPES: tuple[str, ...] = tuple(FORMATS)


# ----------------------------------------------------------------- encodings
def _hex(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float.hex(value)


def _bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """16-bit patterns of bfloat16-representable float64 values (exact)."""
    as_float32 = values.astype("<f4")  # exact: bfloat16 values are float32 values
    return (as_float32.view("<u4") >> 16).astype("<u2")


def encode_floats(values: Any, dtype: str) -> list[str] | dict[str, str]:
    """Encode ``values`` (float64 holding ``dtype``-representable values) exactly."""
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size <= HEX_LIMIT:
        return [_hex(float(value)) for value in array]
    if dtype == "bfloat16":
        raw = _bfloat16_bits(array).tobytes()
    else:
        typed = array.astype(np.dtype(dtype).newbyteorder("<"))
        if not np.array_equal(typed.astype(np.float64), array, equal_nan=True):
            raise ValueError(f"values are not exactly representable in {dtype}")
        raw = typed.tobytes()
    return {"base64": base64.b64encode(raw).decode("ascii"), "dtype": dtype}


def decode_floats(encoded: list[str] | dict[str, str], shape: tuple[int, ...]) -> np.ndarray:
    """The float64 array of ``shape`` an :func:`encode_floats` value stands for."""
    if isinstance(encoded, dict):
        raw = base64.b64decode(encoded["base64"])
        if encoded["dtype"] == "bfloat16":
            bits = np.frombuffer(raw, dtype="<u2").astype("<u4") << 16
            flat = bits.view("<f4").astype(np.float64)
        else:
            flat = np.frombuffer(raw, dtype=np.dtype(encoded["dtype"]).newbyteorder("<"))
            flat = flat.astype(np.float64)
    else:
        flat = np.array([float.fromhex(item) for item in encoded], dtype=np.float64)
    return flat.reshape(shape)


def encode_bools(values: Any) -> list[int]:
    return [int(item) for item in np.asarray(values, dtype=bool).ravel()]


def decode_bools(encoded: list[int], shape: tuple[int, ...]) -> np.ndarray:
    return np.asarray(encoded, dtype=bool).reshape(shape)


def is_representable(values: np.ndarray, dtype: str) -> bool:
    """Whether every float64 in ``values`` is exactly a ``dtype`` value (NaN counts)."""
    values = np.asarray(values, dtype=np.float64)
    if dtype == "float64":
        return True
    if dtype == "bfloat16":
        with np.errstate(over="ignore"):
            as_float32 = values.astype(np.float32)
        if not np.array_equal(as_float32.astype(np.float64), values, equal_nan=True):
            return False
        finite = np.isfinite(as_float32)
        return bool(np.all((as_float32[finite].view(np.uint32) & 0xFFFF) == 0))
    with np.errstate(over="ignore"):
        return bool(np.array_equal(values.astype(dtype).astype(np.float64), values, equal_nan=True))


# ----------------------------------------------------------------- ulp errors
def unit_in_last_place(rounded: np.ndarray, offset: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """ulp of the exact values in ``fmt``, given their correctly rounded values and
    ``offset = (exact - rounded) / ulp(exact)``.

    The offset only matters at a power of two: an exact value just below ``2**e``
    rounds up to it but has the finer ulp of the binade below.
    """
    rounded = np.asarray(rounded, dtype=np.float64)
    magnitude = np.abs(np.where(np.isfinite(rounded), rounded, 0.0))
    mantissa, exponent = np.frexp(magnitude)  # magnitude = mantissa * 2**exponent, mantissa in [0.5, 1)
    floor_log2 = exponent - 1
    below_power_of_two = (mantissa == 0.5) & (np.asarray(offset) * np.sign(rounded) < 0)
    floor_log2 = np.where(below_power_of_two, floor_log2 - 1, floor_log2)
    floor_log2 = np.maximum(floor_log2, fmt.min_exponent)  # subnormals share one ulp
    ulp = np.ldexp(1.0, (floor_log2 - (fmt.precision - 1)).astype(np.int64))
    return np.where(magnitude == 0, fmt.smallest_subnormal, ulp)


def ulp_errors(got: Any, rounded: Any, offset: Any, fmt: FloatFormat) -> np.ndarray:
    """``|got - exact| / ulp(exact)`` per entry, with ``exact = rounded + offset * ulp``.

    Non-finite expectations must match exactly (NaN where NaN is expected, the
    same signed infinity); a mismatch, or a non-finite ``got`` where a finite
    value is expected, is an infinite error.
    """
    got = np.asarray(got, dtype=np.float64)
    rounded = np.asarray(rounded, dtype=np.float64)
    offset = np.asarray(offset, dtype=np.float64)
    errors = np.zeros(rounded.shape, dtype=np.float64)
    expected_finite = np.isfinite(rounded)
    expected_nan = np.isnan(rounded)
    special_matches = np.where(expected_nan, np.isnan(got), got == rounded)
    errors[~expected_finite] = np.where(special_matches[~expected_finite], 0.0, math.inf)
    both_finite = expected_finite & np.isfinite(got)
    errors[expected_finite & ~np.isfinite(got)] = math.inf
    ulp = unit_in_last_place(rounded, offset, fmt)
    with np.errstate(over="ignore", invalid="ignore"):
        # got - rounded is exact when they are close (Sterbenz), and errors
        # that large need no precision.
        scaled = np.abs((got - rounded) / ulp - offset)
    errors[both_finite] = scaled[both_finite]
    return errors


def describe_mismatch(got: Any, rounded: Any) -> str | None:
    """A short label for the worst kind of special-value mismatch, or None."""
    got = np.asarray(got, dtype=np.float64)
    rounded = np.asarray(rounded, dtype=np.float64)
    if np.any(np.isnan(got) & ~np.isnan(rounded)):
        return "NaN"
    if np.any(np.isnan(rounded) & ~np.isnan(got)):
        return "not NaN"
    if np.any(np.isinf(got) & (got != rounded)):
        return "inf"
    if np.any(np.isinf(rounded) & (got != rounded)):
        return "finite"
    return None
