"""Core family: ``logsumexp``, ``softmax``, ``log_softmax`` and the gradient of
``logsumexp`` (expected: the softmax), covering every row of the semantics table.

Inputs are written in float64 and rounded to each dtype by the generator;
``per_dtype`` gives dtype-specific inputs (ranges near each format's overflow
and underflow). Random inputs come from the case's own seeded Generator.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .. import bounds
from ..floats import DTYPES, FORMATS
from ..generate import CaseSpec

FAMILY = "core"

INF, NAN = math.inf, math.nan
HALF_AND_SINGLE = ("float16", "bfloat16", "float32")
FLOAT32_AND_64 = ("float32", "float64")
#: dtypes with a float32 exponent range or wider.
WIDE_EXPONENT = ("bfloat16", "float32", "float64")

Values = Any  # list / array of float64, or a builder (dtype, rng) -> array
Builder = Callable[[str, np.random.Generator], np.ndarray]


# ------------------------------------------------------------------ builders
def _builder(values: Values) -> Builder:
    if callable(values):
        return values
    if isinstance(values, dict):  # dtype -> values
        return lambda dtype, rng: np.asarray(values[dtype], dtype=np.float64)
    fixed = np.asarray(values, dtype=np.float64)
    return lambda dtype, rng: fixed


def normal(shape: Any, scale: float = 1.0, mean: float = 0.0) -> Builder:
    return lambda dtype, rng: rng.normal(mean, scale, shape)


def uniform(low: float, high: float, shape: Any) -> Builder:
    return lambda dtype, rng: rng.uniform(low, high, shape)


def per_dtype(builders: dict[str, Builder]) -> Builder:
    """A different builder per dtype (each still draws from the case's Generator)."""
    return lambda dtype, rng: builders[dtype](dtype, rng)


def exact_differences(builder: Builder) -> Builder:
    """Snap the draws to a grid ``2**g`` so that every difference ``x_i - x_j`` is
    exact in the dtype itself (and so in its compute dtype): the condition under
    which the contract promises 2 ulp for softmax/log_softmax."""

    def build(dtype: str, rng: np.random.Generator) -> np.ndarray:
        values = np.asarray(builder(dtype, rng), dtype=np.float64)
        finite = values[np.isfinite(values)]
        largest = float(np.max(np.abs(finite))) if finite.size else 1.0
        exponent = math.ceil(math.log2(largest)) + 2 - FORMATS[dtype].precision
        step = math.ldexp(1.0, exponent)
        return np.where(np.isfinite(values), np.round(values / step) * step, values)

    return build


def with_entries(builder: Builder, positions: dict[Any, float]) -> Builder:
    """Draw with ``builder``, then set some entries (index -> value)."""

    def build(dtype: str, rng: np.random.Generator) -> np.ndarray:
        values = np.array(builder(dtype, rng), dtype=np.float64)
        for index, value in positions.items():
            values[index] = value
        return values

    return build


def rows_with_dominant(rows: int, n: int, dominant: int, scale: float = 3.0) -> Builder:
    """``rows`` slices of ``n`` draws from N(0, scale^2), the last ``dominant`` of them
    replaced by one 0 (at a different place in each) among ``-40``s: large enough
    for the backends' large-input fast paths, with a few slices that need the pivot."""

    def build(dtype: str, rng: np.random.Generator) -> np.ndarray:
        values = rng.normal(0.0, scale, (rows, n))
        for row in range(rows - dominant, rows):
            values[row] = -40.0
            values[row, (17 * row) % n] = 0.0
        return values

    return build


def _inputs(**arrays: Values) -> Builder:
    built = {name: _builder(values) for name, values in arrays.items() if values is not None}

    def inputs(dtype: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {name: builder(dtype, rng) for name, builder in built.items()}

    return inputs


def _spec(function: str, identifier: str, description: str, x: Values, *, b: Values = None,
          where: Any = None, dtypes: tuple[str, ...] = DTYPES, tolerance: Any = None,
          why: str | None = None, **keywords: Any) -> CaseSpec:
    return CaseSpec(
        id=identifier,
        function=function,
        description=description,
        inputs=_inputs(x=x, b=b),
        bool_inputs={} if where is None else {"where": np.asarray(where, dtype=bool)},
        keywords=keywords,
        dtypes=dtypes,
        tolerance=tolerance,
        why=why,
    )


def lse(identifier: str, description: str, x: Values, **options: Any) -> CaseSpec:
    options.setdefault("tolerance", bounds.logsumexp_bound)
    return _spec("logsumexp", "logsumexp/" + identifier, description, x, **options)


def softmax(identifier: str, description: str, x: Values, **options: Any) -> CaseSpec:
    options.setdefault("tolerance", bounds.probability_bound)
    return _spec("softmax", "softmax/" + identifier, description, x, **options)


def log_softmax(identifier: str, description: str, x: Values, **options: Any) -> CaseSpec:
    options.setdefault("tolerance", bounds.log_probability_bound)
    return _spec("log_softmax", "log_softmax/" + identifier, description, x, **options)


def gradient(identifier: str, description: str, x: Values, **options: Any) -> CaseSpec:
    options.setdefault("tolerance", bounds.probability_bound)
    return _spec("logsumexp_gradient", "logsumexp_gradient/" + identifier, description, x, **options)


# ------------------------------------------------------- per-dtype constants
#: Uniform ranges reaching towards each format's exp overflow / underflow
#: (float16 and bfloat16 are computed in float32, but a naive float16 exp
#: overflows at 11.09).
WIDE_RANGE = {"float64": 700.0, "float32": 80.0, "bfloat16": 80.0, "float16": 10.0}
#: max(x) beyond where exp(x) overflows in the dtype: naive code returns inf.
BEYOND_OVERFLOW = {
    "float64": [710.0, 709.5, 700.0, 0.0],
    "float32": [100.0, 95.0, 90.0, 0.0],
    "bfloat16": [100.0, 95.0, 90.0, 0.0],
    "float16": [12.0, 11.5, 10.0, 0.0],
}
#: Every exp(x_i) underflows to zero (or subnormal) in the dtype: naive code returns -inf.
UNDERFLOW_RANGE = {"float64": (-745.0, -700.0), "float32": (-104.0, -88.0),
                   "bfloat16": (-104.0, -88.0), "float16": (-17.0, -10.0)}
#: LSE = log1p(exp(-a)) ~ exp(-a) is subnormal in the dtype.
SUBNORMAL_RESULT = {"float64": [0.0, -713.0], "float32": [0.0, -95.0],
                    "bfloat16": [0.0, -95.0], "float16": [0.0, -12.0]}
SUBNORMAL_RESULT_MANY = {
    "float64": [0.0] + [-720.0] * 50,
    "float32": [0.0] + [-100.0] * 50,
    "bfloat16": [0.0] + [-100.0] * 50,
    "float16": [0.0] + [-14.0] * 50,
}
#: LSE - max underflows below the smallest subnormal: the exact result rounds to 0.
ROUNDS_TO_ZERO = {"float64": [0.0, -800.0, -800.0], "float32": [0.0, -110.0, -110.0],
                  "bfloat16": [0.0, -110.0, -110.0], "float16": [0.0, -20.0, -20.0]}
#: Largest magnitudes: x - max and the result must not overflow.
NEAR_MAX_FINITE = {
    "float64": [1.7e308, 1.7e308, 1.0e308],
    "float32": [3.3e38, 3.3e38, 1.0e38],
    "bfloat16": [3.3e38, 3.3e38, 1.0e38],
    "float16": [65000.0, 65000.0, 60000.0],
}
#: softmax entries exp(x_i - max) / sum that are subnormal in the dtype.
SUBNORMAL_PROBABILITIES = {
    "float64": [0.0, -720.0, -740.0, -1.0],
    "float32": [0.0, -100.0, -103.0, -1.0],
    "bfloat16": [0.0, -100.0, -103.0, -1.0],
    "float16": [0.0, -16.0, -17.0, -1.0],
}
#: log_softmax of [0, -a] with exp(-a) underflowing: must stay [~0, -a], never log(0).
FAR_BELOW = {"float64": [0.0, -1000.0], "float32": [0.0, -200.0],
             "bfloat16": [0.0, -200.0], "float16": [0.0, -30.0]}

#: Rows of the semantics table, one slice each (reduced along the last axis).
SEMANTICS_ROWS = [
    [1.0, 2.0, 3.0, 0.5],          # finite values
    [-INF, -INF, -INF, -INF],      # all -inf
    [-INF, 0.5, -INF, 1.0],        # some -inf
    [INF, 1.0, -INF, 5.0],         # one +inf
    [INF, INF, 2.0, INF],          # three +inf
    [NAN, 1.0, 2.0, 3.0],          # NaN
    [NAN, INF, -INF, 1.0],         # NaN with infinities
]
#: where masks for the "masked-out NaN/inf" rows: the hidden entries never matter.
MASKED_SPECIALS_X = [[NAN, 1.0, 2.0, -1.0], [INF, 1.0, 2.0, -1.0], [-INF, 1.0, 2.0, -1.0],
                     [NAN, INF, 0.5, 0.25], [NAN, INF, -INF, 3.0]]
MASKED_SPECIALS_WHERE = [[False, True, True, True], [False, True, True, True], [False, True, True, True],
                         [False, False, True, True], [False, False, False, False]]


def _mask(shape: tuple[int, ...], fraction_true: float, seed: int) -> np.ndarray:
    """A fixed boolean mask (its own seed: the same for every dtype)."""
    return np.random.default_rng(seed).random(shape) < fraction_true


def _fully_masked_row_mask(shape: tuple[int, int], seed: int) -> np.ndarray:
    mask = _mask(shape, 0.7, seed)
    mask[1, :] = False
    return mask


# ---------------------------------------------------------------- logsumexp
def _logsumexp_cases() -> list[CaseSpec]:
    dominant_10 = [0.0] + [-40.0] * 10
    cases = [
        # Random inputs.
        lse("normal/n=1", "a single entry: LSE(x) = x exactly", normal(1)),
        lse("uniform-0-1/n=2", "two entries", uniform(0.0, 1.0, 2)),
        lse("normal/n=10", "standard normal", normal(10)),
        lse("normal/n=1000", "standard normal", normal(1000)),
        lse("normal/n=100000", "large n: summation error must not grow with n", normal(100_000)),
        lse("normal-sigma10/n=1000", "normal with standard deviation 10", normal(1000, scale=10.0)),
        lse("uniform-0-1/n=10000", "uniform [0, 1): all terms comparable", uniform(0.0, 1.0, 10_000)),
        lse("uniform-1-2/n=100", "uniform [1, 2)", uniform(1.0, 2.0, 100)),
        lse("uniform-wide/n=1000",
            "uniform [-R, R] with R near log(max finite): [-700, 700] f64, [-80, 80] f32/bf16, [-10, 10] f16",
            per_dtype({dtype: uniform(-r, r, 1000) for dtype, r in WIDE_RANGE.items()})),
        lse("beyond-naive-overflow", "exp(max x) overflows in the dtype: the max shift must avoid it",
            BEYOND_OVERFLOW),
        lse("all-underflow/n=100", "every exp(x_i) underflows in the dtype: naive code gives -inf",
            per_dtype({dtype: uniform(low, high, 100) for dtype, (low, high) in UNDERFLOW_RANGE.items()})),
        lse("near-max-finite", "largest finite inputs: no overflow in x - max or in the result",
            NEAR_MAX_FINITE),
        lse("negative-huge", "[-1e30, -1e30]: the result is -1e30 + log 2",
            [-1e30, -1e30], dtypes=WIDE_EXPONENT),
        lse("subnormal-inputs", "inputs around the float64 subnormal range: LSE ~ log 3",
            [5e-324, -5e-324, 1e-310], dtypes=("float64",)),
        # One dominant term: log1p keeps the relative accuracy.
        lse("dominant/0-and-10x-40", "LSE([0] + [-40]*10) ~ 4.248e-17: plain max-shift code returns 0",
            dominant_10),
        lse("dominant/0-20-20-30", "LSE([0, -20, -20, -30]) ~ 4.12e-9", [0.0, -20.0, -20.0, -30.0]),
        lse("dominant/0-and-4x-12", "LSE([0] + [-12]*4) ~ 2.46e-5, subnormal in float16",
            [0.0] + [-12.0] * 4),
        lse("dominant/0-and-9999x-30", "one dominant term and many small ones: ~9.4e-10 (torch.sum of "
            "the 9999 equal terms errs 2.07 ulp in float64 by itself)", [0.0] + [-30.0] * 9_999),
        # Equal small terms: the roundings of their exp and of the sum all lean the same way.
        lse("dominant/0-and-13x-40", "[0] + [-40]*13: NumPy's sum of the 13 equal terms errs 2.5 ulp of "
            "the result in float64", [0.0] + [-40.0] * 13),
        lse("dominant/tiny-max-and-x-5", "a maximum of 1.48e-14 beside -5s: x - m rounds, which exp turns "
            "into 2.6 ulp of the result 0.0067 in float64 unless the rounding is carried",
            [1.4757550987426855e-14, -5.0, -5.0, -6.0]),
        lse("dominant/0-and-99x-40", "[0] + [-40]*99 ~ 4.2e-16: NumPy's blocked sum of the 99 equal terms "
            "errs 4.3 ulp of the result in float32 by itself", [0.0] + [-40.0] * 99),
        lse("dominant/0-and-999x-15", "[0] + [-15]*999 ~ 3.1e-4: the sum of the equal terms errs 2.8 ulp "
            "in float64 (NumPy)", [0.0] + [-15.0] * 999),
        lse("dominant/0-and-299x-7", "[0] + [-7]*299 ~ 0.24: the terms are not small, the result is still "
            "mostly their sum (2.1 ulp in float32 from NumPy's sum)", [0.0] + [-7.0] * 299),
        lse("dominant/0-and-4095x-40", "[0] + [-40]*4095 ~ 1.7e-14: 2.6 ulp in float64 from NumPy's sum",
            [0.0] + [-40.0] * 4095),
        lse("dominant/rows-70x1000-last-axis", "the 70 slices of 1000 of dominant/rows-70x1000 reduced "
            "along the last axis: the fast paths' row sums (1.7 ulp in float32 from NumPy's)",
            rows_with_dominant(70, 1000, 7), axis=-1, dtypes=FLOAT32_AND_64),
        lse("dominant/rows-70x1000", "70 slices of 1000 (the large-input fast paths): 63 drawn from "
            "N(0, 3^2), 7 of [0] + [-40]*999", rows_with_dominant(70, 1000, 7), dtypes=FLOAT32_AND_64),
        lse("dominant/rows-70x1000-axis0", "the same 70 slices of 1000 as columns, reduced along axis 0 "
            "(an outer axis: NumPy sums it row after row, so a plain sum of the 999 terms e^-40 errs ~60 ulp "
            "in float32)", lambda dtype, rng: rows_with_dominant(70, 1000, 7)(dtype, rng).T, axis=0,
            dtypes=FLOAT32_AND_64),
        lse("dominant/offset-max", "dominant term at -3: the result rounds to about -3",
            [-3.0] + [-43.0] * 10),
        # A large maximum does not excuse the pivot: summed with its 1, small terms round at the scale of 1.
        lse("dominant/10-and-19999x-5.5", "[10] + [-5.5]*19999 ~ 10.0037: summed with the pivot's 1 the "
            "19999 terms round at its scale (1.36 ulp in float32 when PyTorch's lse took m + log(S) for "
            "|m| >= 8)", [10.0] + [-5.5] * 19_999, dtypes=("float32",)),
        lse("dominant/10-and-19999x-27", "[10] + [-27]*19999 ~ 10 + 3.7e-8: the same in float64 (2.0 ulp "
            "then)", [10.0] + [-27.0] * 19_999, dtypes=("float64",)),
        lse("subnormal-result", "LSE = log1p(exp(-a)) is subnormal in the dtype", SUBNORMAL_RESULT),
        lse("subnormal-result/many", "a sum of many underflowing terms, subnormal result",
            SUBNORMAL_RESULT_MANY),
        lse("rounds-to-zero", "the exact result is below half the smallest subnormal: 0", ROUNDS_TO_ZERO),
        # Ties.
        lse("ties/4-equal", "LSE([3, 3, 3, 3]) = 3 + log 4", [3.0] * 4),
        lse("ties/1000-equal", "1000 equal entries: 1.5 + log 1000", [1.5] * 1000),
        lse("ties/two-zeros", "LSE([0, 0]) = log 2", [0.0, 0.0]),
        lse("ties/two-max-and-rest", "two tied maxima and smaller entries", [2.0, -1.0, 2.0, 0.5]),
        lse("cancellation/minus-log-2", "LSE([-log 2, -log 2]) ~ 0: the result is the rounding of log 2",
            [-math.log(2.0)] * 2),
        # Axes and shapes.
        lse("axis/0-2-of-3d", "axis=(0, 2) of a (3, 4, 5) array", normal((3, 4, 5)), axis=(0, 2)),
        lse("axis/0-2-of-3d-keepdims", "axis=(0, 2), keepdims", normal((3, 4, 5)), axis=(0, 2), keepdims=True),
        lse("axis/none-keepdims", "axis=None, keepdims: shape (1, 1)", normal((4, 5)), axis=None, keepdims=True),
        lse("axis/1-of-3d", "axis=1 of a (2, 3, 4) array", normal((2, 3, 4)), axis=1),
        lse("axis/negative-tuple", "axis=(-1, -2) of a (2, 3, 4) array", normal((2, 3, 4)), axis=(-1, -2)),
        lse("axis/0-d", "a 0-d input: LSE(x) = x", normal(()), axis=None),
        # Weights.
        lse("b/positive/n=100", "positive weights b in [0.1, 2)", normal(100), b=uniform(0.1, 2.0, 100)),
        lse("b/mixed-positive-sum", "weights of both signs, positive sum, return_sign",
            normal(50), b=with_entries(uniform(-0.5, 1.0, 50), {0: 3.0}), return_sign=True),
        lse("b/mixed-negative-sum", "weights of both signs, negative sum, return_sign: sign -1",
            normal(50), b=with_entries(uniform(-1.0, 0.5, 50), {0: -3.0}), return_sign=True),
        lse("b/negative-sum-without-sign", "a negative weighted sum without return_sign is NaN",
            [0.0, 1.0, 2.0], b=[1.0, -1.0, -1.0]),
        lse("b/cancel-to-zero", "weights that cancel exactly: (-inf, 0)", [0.5, 0.5, 1.0], b=[1.0, -1.0, 0.0],
            return_sign=True),
        lse("b/zero-weight-hides-specials", "b = 0 entries are absent, also NaN and inf ones",
            [NAN, INF, 1.0, 2.0], b=[0.0, 0.0, 1.0, 1.0]),
        lse("b/broadcast-rows", "b of shape (1, 30) against x of (4, 30), axis=1, return_sign",
            normal((4, 30)), b=with_entries(uniform(0.1, 1.0, (1, 30)), {(0, 3): -0.5}), axis=1,
            return_sign=True),
        lse("b/rows-of-both-signs", "per-row sums of either sign, return_sign",
            normal((3, 20)), b=np.array([[1.0] * 20, [-1.0] * 20, [1.0, -0.25] * 10]), axis=-1,
            return_sign=True),
        lse("b/with-where", "weights and a where mask together", normal((3, 16)),
            b=uniform(0.5, 1.5, (3, 16)), where=_mask((3, 16), 0.6, 11), axis=1),
        lse("b/empty-return-sign", "an empty slice with weights: (-inf, 0)", np.zeros((0,)), b=np.zeros((0,)),
            return_sign=True),
        # where masks.
        lse("where/partial", "where with 70% True, axis=1", normal((5, 40)), where=_mask((5, 40), 0.7, 1), axis=1),
        lse("where/fully-masked-row", "a fully masked row gives -inf", normal((3, 4)),
            where=_fully_masked_row_mask((3, 4), 2), axis=1),
        lse("where/masked-specials", "masked-out NaN/+inf/-inf never reach the result; all masked: -inf",
            MASKED_SPECIALS_X, where=MASKED_SPECIALS_WHERE, axis=1),
        lse("where/broadcast", "where of shape (1, 30) against x of (3, 30)", normal((3, 30)),
            where=_mask((1, 30), 0.5, 3), axis=-1),
        # Temperature.
        lse("temperature/0.5", "t = 0.5: t LSE(x / t)", normal(100), temperature=0.5),
        lse("temperature/2", "t = 2", normal(100), temperature=2.0),
        lse("temperature/0.1", "t = 0.1 (not a power of two)", normal(100), temperature=0.1),
        lse("temperature/-1", "t = -1: the smooth minimum", normal(100), temperature=-1.0),
        lse("temperature/-0.25", "t = -0.25", normal((4, 25)), axis=1, temperature=-0.25),
        lse("temperature/0-ties", "t = 0: the exact max", [1.0, 5.0, 3.0, 5.0], temperature=0.0),
        lse("temperature/0-rows", "t = 0 over rows", normal((3, 50)), axis=1, temperature=0.0),
        lse("temperature/0-specials", "t = 0 over the semantics rows: NaN, +inf, all -inf",
            SEMANTICS_ROWS, axis=1, temperature=0.0),
        lse("temperature/-1-specials", "t = -1 over the semantics rows (the min of each)",
            SEMANTICS_ROWS, axis=1, temperature=-1.0),
        lse("temperature/0.5-with-b", "t = 0.5 with positive weights", normal(40), b=uniform(0.5, 2.0, 40),
            temperature=0.5),
        # Semantics table.
        lse("special/empty", "n = 0: -inf (log of the empty sum)", np.zeros((0,))),
        lse("special/empty-rows", "(3, 0) over axis 1: three -inf", np.zeros((3, 0)), axis=1),
        lse("special/no-rows", "(0, 3) over axis 1: an empty result", np.zeros((0, 3)), axis=1),
        lse("special/all-neg-inf", "all -inf: -inf", [-INF, -INF, -INF]),
        lse("special/some-neg-inf", "-inf entries are ignored", [-INF, 0.0, 1.0, -INF]),
        lse("special/pos-inf-one", "one +inf: +inf", [INF, 0.0, 1.0]),
        lse("special/pos-inf-three", "three +inf: +inf", [INF, INF, -INF, 2.0, INF]),
        lse("special/nan", "NaN poisons the slice", [NAN, 0.0, 1.0]),
        lse("special/semantics-rows", "one slice per row of the semantics table", SEMANTICS_ROWS, axis=1),
        lse("special/semantics-rows-return-sign", "the semantics rows with unit weights and return_sign",
            SEMANTICS_ROWS, b=np.ones((1, 4)), axis=1, return_sign=True),
    ]
    return cases


# ---------------------------------------------------------- softmax family
def _probability_cases(make: Callable[..., CaseSpec], name: str) -> list[CaseSpec]:
    """Cases shared by softmax and log_softmax."""
    return [
        make("normal-exact-differences/n=10", "standard normal on a grid: x_i - max exact",
             exact_differences(normal(10))),
        make("normal-exact-differences/n=2000", "standard normal on a grid, large n",
             exact_differences(normal(2000))),
        make("normal/n=1000", "standard normal, x_i - max not exact: the tolerance accounts for it",
             normal(1000)),
        make("uniform-wide-exact-differences/n=500",
             "uniform [-R, R] (R as for logsumexp) on a grid: probabilities far into the subnormals",
             exact_differences(per_dtype({dtype: uniform(-r, r, 500) for dtype, r in WIDE_RANGE.items()}))),
        make("beyond-naive-overflow", "exp(max x) overflows in the dtype", BEYOND_OVERFLOW),
        make("subnormal-probabilities", "probabilities that are subnormal in the dtype", SUBNORMAL_PROBABILITIES),
        make("dominant/0-and-10x-40", f"{name}([0] + [-40]*10): the dominant entry is 1 - 4.2e-17",
             [0.0] + [-40.0] * 10),
        make("dominant/0-20-20-30", "one dominant term", [0.0, -20.0, -20.0, -30.0]),
        # Equal small terms: the sum's roundings lean the same way, and log_softmax's
        # dominant entry -log1p(rest) carries them in full (as LSE does).
        make("dominant/0-and-99x-40", f"{name}([0] + [-40]*99): the dominant log-probability ~ -4.2e-16 "
             "(NumPy's sum of the 99 equal terms errs 4.3 ulp of it in float32)", [0.0] + [-40.0] * 99),
        make("dominant/0-and-999x-15", f"{name}([0] + [-15]*999): the dominant log-probability ~ -3.1e-4 "
             "(2.8 ulp in float64 from NumPy's sum, 6.8 from XLA's)", [0.0] + [-15.0] * 999),
        make("dominant/rows-70x1000", "70 slices of 1000 on a grid (the large-input fast paths), 7 of "
             "them one dominant term", exact_differences(rows_with_dominant(70, 1000, 7)), dtypes=("float32",)),
        make("ties/3-equal", "three equal entries: 1/3 each", [1.0, 1.0, 1.0]),
        make("axis/0-of-2d", "axis=0 of a (4, 6) array", exact_differences(normal((4, 6))), axis=0),
        make("axis/0-2-of-3d", "axis=(0, 2) of a (3, 4, 5) array", exact_differences(normal((3, 4, 5))),
             axis=(0, 2)),
        make("axis/none", "axis=None: one distribution over a (4, 5) array",
             exact_differences(normal((4, 5))), axis=None),
        make("where/partial", "where with 70% True", exact_differences(normal((4, 30))),
             where=_mask((4, 30), 0.7, 4)),
        make("where/fully-masked-row", "a fully masked row", exact_differences(normal((3, 5))),
             where=_fully_masked_row_mask((3, 5), 5)),
        make("where/masked-specials", "masked-out NaN/+inf/-inf never reach the output",
             MASKED_SPECIALS_X, where=MASKED_SPECIALS_WHERE),
        make("temperature/0.5", "t = 0.5", exact_differences(normal(50)), temperature=0.5),
        make("temperature/-1", "t = -1: the smooth arg min", exact_differences(normal(50)), temperature=-1.0),
        make("temperature/0.1", "t = 0.1: (x - max)/t rounds", normal(50), temperature=0.1),
        make("temperature/0-ties", "t = 0: uniform over the arg-max ties, one-hot when unique",
             [[1.0, 3.0, 3.0, 2.0], [5.0, 0.0, 0.0, 0.0], [2.0, 2.0, 2.0, 2.0]], temperature=0.0),
        make("temperature/0-specials", "t = 0 over the semantics rows", SEMANTICS_ROWS, temperature=0.0),
        make("special/empty", "n = 0: an empty result", np.zeros((0,))),
        make("special/empty-rows", "(2, 0): an empty result", np.zeros((2, 0))),
        make("special/semantics-rows", "one slice per row of the semantics table", SEMANTICS_ROWS),
        make("special/pos-inf-three", "three +inf entries: 1/3 each", [INF, 1.0, INF, -INF, INF]),
    ]


def _softmax_cases() -> list[CaseSpec]:
    return _probability_cases(softmax, "softmax")


def _log_softmax_cases() -> list[CaseSpec]:
    return _probability_cases(log_softmax, "log_softmax") + [
        log_softmax("far-below", "[0, -a] with exp(-a) underflowing: [~0, -a], never log(0)", FAR_BELOW),
    ]


def _gradient_cases() -> list[CaseSpec]:
    return [
        gradient("normal-exact-differences/n=1000", "grad of logsumexp = softmax",
                 exact_differences(normal(1000))),
        gradient("axis/0-2-of-3d", "axis=(0, 2) of a (3, 4, 5) array", exact_differences(normal((3, 4, 5))),
                 axis=(0, 2)),
        gradient("axis/1-of-2d", "axis=1 of a (3, 8) array", exact_differences(normal((3, 8))), axis=1),
        gradient("dominant/0-and-10x-40", "one dominant term", [0.0] + [-40.0] * 10),
        gradient("where/masked-specials", "masked-out NaN/inf get gradient 0, never NaN",
                 MASKED_SPECIALS_X, where=MASKED_SPECIALS_WHERE, axis=1),
        gradient("where/fully-masked-row", "a fully masked row: gradient 0",
                 exact_differences(normal((3, 5))), where=_fully_masked_row_mask((3, 5), 6), axis=1),
        gradient("special/semantics-rows", "all -inf: 0; k x +inf: 1/k; NaN: NaN", SEMANTICS_ROWS, axis=1),
        gradient("special/empty", "n = 0: an empty gradient", np.zeros((0,))),
        gradient("temperature/0.5", "t = 0.5: softmax(x / t)", exact_differences(normal(40)), temperature=0.5),
        gradient("temperature/-1", "t = -1: softmax(-x)", exact_differences(normal(40)), temperature=-1.0),
        gradient("temperature/0-ties", "t = 0: uniform over the ties",
                 [[1.0, 3.0, 3.0, 2.0], [5.0, 0.0, 0.0, 0.0]], axis=1, temperature=0.0),
    ]


def cases() -> list[CaseSpec]:
    """Every case of the core family."""
    return _logsumexp_cases() + _softmax_cases() + _log_softmax_cases() + _gradient_cases()
