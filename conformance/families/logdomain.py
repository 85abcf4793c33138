"""Log-domain family: ``logaddexp``, ``logsubexp``, ``logcumsumexp``,
``logmeanexp``, ``log1psumexp``, ``log_matmul_exp``, and the duality functions
``entropy``, ``softmax_entropy``, ``fenchel_young_loss``.

Random inputs come from each case's own seeded Generator; per-dtype ranges
reach towards each format's exp overflow and underflow. Results computed as
``pivot + log_term`` may be near 0 by cancellation of the two; their tolerance
is then the rounding of the log term in the compute dtype
(:func:`pivot_bound`, with a written reason).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .. import exact, floats
from ..floats import DTYPES
from ..generate import CaseSpec

FAMILY = "logdomain"

INF, NAN = math.inf, math.nan
#: uniform ranges towards each format's exp overflow (float16: 11.09)
WIDE = {"float64": 700.0, "float32": 80.0, "bfloat16": 80.0, "float16": 10.0}
#: exp(x) far below 1 but normal in the compute dtype (XLA on CPU flushes
#: subnormals to zero: a backend property, not the algorithm's)
TAIL = {"float64": (-700.0, -650.0), "float32": (-85.0, -70.0),
        "bfloat16": (-85.0, -70.0), "float16": (-16.0, -10.0)}

Builder = Callable[[str, np.random.Generator], np.ndarray]
Pivots = Callable[[dict[str, np.ndarray], dict[str, Any]], np.ndarray]


# ------------------------------------------------------------------ builders
def fixed(values: Any) -> Builder:
    if isinstance(values, dict):
        return lambda dtype, rng: np.asarray(values[dtype], dtype=np.float64)
    array = np.asarray(values, dtype=np.float64)
    return lambda dtype, rng: array


def normal(shape: Any, scale: float = 1.0, mean: float = 0.0) -> Builder:
    return lambda dtype, rng: rng.normal(mean, scale, shape)


def wide(shape: Any) -> Builder:
    return lambda dtype, rng: rng.uniform(-WIDE[dtype], WIDE[dtype], shape)


def pair(first: Builder, difference: Builder) -> Callable[[str, np.random.Generator], dict[str, np.ndarray]]:
    """Inputs ``a`` and ``b = a + difference`` (rounded to the dtype separately)."""

    def inputs(dtype: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
        a = np.asarray(first(dtype, rng), dtype=np.float64)
        return {"a": a, "b": a + np.asarray(difference(dtype, rng), dtype=np.float64)}

    return inputs


def named(**builders: Builder) -> Callable[[str, np.random.Generator], dict[str, np.ndarray]]:
    def inputs(dtype: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {name: np.asarray(builder(dtype, rng), dtype=np.float64) for name, builder in builders.items()}

    return inputs


def dirichlet(shape: tuple[int, int], alpha: float = 1.0) -> Builder:
    return lambda dtype, rng: rng.dirichlet(np.full(shape[-1], alpha), shape[0])


# ----------------------------------------------------------------- tolerance
def _compute_format(dtype: str) -> floats.FloatFormat:
    return floats.FORMATS["float64" if dtype == "float64" else "float32"]


def pivot_bound(pivots: Pivots) -> Callable[..., tuple[float, str | None]]:
    """Tolerance floor for results ``pivot + log_term`` (the pivot exact, an
    input or a sum of two): the log term's own rounding, ``default`` ulps of
    ``|log_term|`` in the compute dtype, measured in ulps of the result. Above
    the default only where the result cancels the pivot against the log term."""

    def bound(dtype: str, inputs: dict[str, np.ndarray], outputs: tuple[np.ndarray, ...],
              keywords: dict[str, Any], default: float) -> tuple[float, str | None]:
        fmt, compute = floats.FORMATS[dtype], _compute_format(dtype)
        worst: tuple[float, str | None] = (0.0, None)
        centres = np.broadcast_to(pivots(inputs, keywords), outputs[0].shape)
        for result, pivot in zip(outputs[0].ravel(), centres.ravel()):
            if not exact.mpmath.isfinite(result) or not math.isfinite(pivot) or result == 0:
                continue
            log_term = abs(result - exact.mpf(pivot))
            if log_term == 0:
                continue
            floor = float(default * exact.ulp_of_exact(log_term, compute) / exact.ulp_of_exact(result, fmt))
            if floor > max(default, worst[0]):
                worst = (floor, f"the result {float(result):.3g} cancels the pivot {pivot:.3g} against the log "
                                f"term {float(log_term):.3g}, whose own rounding is {floor / default:.3g} ulp "
                                f"of the result")
        return worst

    return bound


def _pair_max(inputs: dict[str, np.ndarray], keywords: dict[str, Any]) -> np.ndarray:
    return np.maximum(inputs["a"], inputs["b"])


def _first(inputs: dict[str, np.ndarray], keywords: dict[str, Any]) -> np.ndarray:
    return np.broadcast_arrays(inputs["a"], inputs["b"])[0]


def _reduced_max(inputs: dict[str, np.ndarray], keywords: dict[str, Any]) -> np.ndarray:
    x = inputs["x"]
    where = inputs.get("where")
    masked = np.where(np.broadcast_to(where, x.shape), x, -INF) if where is not None else x
    axis = keywords.get("axis")
    axis = tuple(axis) if isinstance(axis, list) else axis
    if masked.size == 0:
        return np.full(np.shape(np.sum(masked, axis=axis, keepdims=keywords.get("keepdims", False))), NAN)
    return np.max(masked, axis=axis, keepdims=keywords.get("keepdims", False))


def _running_max(inputs: dict[str, np.ndarray], keywords: dict[str, Any]) -> np.ndarray:
    x = inputs["x"]
    axis = keywords.get("axis", -1)
    if keywords.get("reverse", False):
        return np.flip(np.maximum.accumulate(np.flip(x, axis), axis=axis), axis)
    return np.maximum.accumulate(x, axis=axis)


def _matmul_shift(inputs: dict[str, np.ndarray], keywords: dict[str, Any]) -> np.ndarray:
    a, b = inputs["a"], inputs["b"]
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    shift = np.max(a2, axis=-1)[..., :, None] + np.max(b2, axis=-2)[..., None, :]
    if b.ndim == 1:
        shift = shift[..., 0]
    if a.ndim == 1:
        shift = shift[..., 0, :] if b.ndim != 1 else shift[..., 0]
    return shift


def matmul_bound(dtype: str, inputs: dict[str, np.ndarray], outputs: tuple[np.ndarray, ...],
                 keywords: dict[str, Any], default: float) -> tuple[float, str | None]:
    """``out = (r_i + c_j) + log S_ij``: on top of the final rounding, ``r_i + c_j``
    rounds (half an ulp of it) and ``log S`` carries the k-term matmul's sum,
    ``(k - 1)/2`` eps, and the roundings of the two shifted exps and their
    product, ``2.5`` eps (faithful exp), all in the compute dtype."""
    fmt, compute = floats.FORMATS[dtype], _compute_format(dtype)
    k = inputs["a"].shape[-1]
    epsilon = exact.mpf(compute.epsilon)
    shifts = np.broadcast_to(_matmul_shift(inputs, keywords), outputs[0].shape)
    worst: tuple[float, str | None] = (0.0, None)
    for result, shift in zip(outputs[0].ravel(), shifts.ravel()):
        if not exact.mpmath.isfinite(result) or not math.isfinite(shift) or result == 0:
            continue
        log_s = abs(result - exact.mpf(shift))
        error = (default * exact.ulp_of_exact(log_s, compute) + exact.ulp_of_exact(shift, compute) / 2
                 + ((k - 1) / 2 + 2.5) * epsilon) if log_s != 0 else exact.ulp_of_exact(shift, compute) / 2
        floor = float(error / exact.ulp_of_exact(result, fmt))
        if floor > max(default, worst[0]):
            worst = (floor, f"out = (r + c) + log S = {float(result):.3g}: r + c = {shift:.3g} rounds and log S = "
                            f"{float(log_s):.3g} carries the {k}-term matmul's rounding, {floor:.3g} ulp of the result")
    return worst


def case(function: str, identifier: str, description: str, inputs: Any, *, dtypes: tuple[str, ...] = DTYPES,
         pivots: Pivots | None = None, bool_inputs: dict[str, Any] | None = None, **keywords: Any) -> CaseSpec:
    return CaseSpec(
        id=f"{function}/{identifier}",
        function=function,
        description=description,
        inputs=inputs,
        bool_inputs={name: np.asarray(value, dtype=bool) for name, value in (bool_inputs or {}).items()},
        keywords=keywords,
        dtypes=dtypes,
        tolerance=pivot_bound(pivots) if pivots is not None else None,
    )


# --------------------------------------------------------------------- cases
def _logaddexp_cases() -> list[CaseSpec]:
    def add(identifier: str, description: str, inputs: Any, **options: Any) -> CaseSpec:
        return case("logaddexp", identifier, description, inputs, pivots=_pair_max, **options)

    return [
        add("normal/n=64", "comparable terms", named(a=normal(64), b=normal(64))),
        add("normal-sigma10/n=64", "terms far apart and close", named(a=normal(64, 10.0), b=normal(64, 10.0))),
        add("wide/n=64", "uniform [-R, R], R towards exp's overflow in the dtype", named(a=wide(64), b=wide(64))),
        add("broadcast/4x1-and-5", "broadcasting (4, 1) with (5,)", named(a=normal((4, 1), 3.0), b=normal(5, 3.0))),
        add("ties", "a == b: a + log 2 exactly rounded", pair(normal(16, 5.0), fixed(np.zeros(16)))),
        add("dominant", "log1p(e^-d) far below an ulp of the max, and the result near e^-d",
            named(a=fixed([0.0, 0.0, 5.0, -3.0, 0.0]), b=fixed([-40.0, -20.0, -30.0, -50.0, -10.0]))),
        add("special-values", "(-inf, -inf) = -inf, (-inf, x) = x, +inf dominates, NaN propagates",
            named(a=fixed([-INF, -INF, INF, INF, NAN, 0.0, 1.0]), b=fixed([-INF, 0.5, INF, -INF, 0.0, NAN, INF]))),
    ]


#: relative error of XLA's float64 log1p (jax on CPU) on [-1/2, -1/5], in eps
#: (measured 126 on 3000 draws; NumPy's is 0.5)
XLA_LOG1P_EPS = 130.0


def xla_log1p(spec: CaseSpec) -> CaseSpec:
    """float64 tolerance for log1p of arguments in [-1/2, -1/5]: XLA's float64
    log1p on CPU errs there by up to ~126 eps of log1p(-e^d); a backend
    property, not the algorithm's (NumPy and torch stay within the default)."""
    pivot = spec.tolerance

    def bound(dtype: str, inputs: dict[str, np.ndarray], outputs: tuple[np.ndarray, ...],
              keywords: dict[str, Any], default: float) -> tuple[float, str | None]:
        floor, reason = pivot(dtype, inputs, outputs, keywords, default)
        if dtype != "float64":
            return floor, reason
        fmt = floats.FORMATS[dtype]
        for a, b, result in zip(inputs["a"].ravel(), inputs["b"].ravel(), outputs[0].ravel()):
            if not (math.isfinite(a) and math.isfinite(b)) or not exact.mpmath.isfinite(result) or result == 0:
                continue
            e = math.exp(b - a)
            if 0.2 <= e <= 0.5:
                term = abs(exact.mpmath.log1p(-exact.mpmath.exp(exact.mpf(b) - exact.mpf(a))))
                extra = float(XLA_LOG1P_EPS * exact.mpf(fmt.epsilon) * term / exact.ulp_of_exact(result, fmt))
                if extra + default > floor:
                    floor = extra + default
                    reason = ("XLA's float64 log1p (jax on CPU) errs by up to ~126 eps on [-1/2, -1/5]: "
                              f"{extra:.3g} ulp of the result here; NumPy and torch stay within the default")
        return floor, reason

    spec.tolerance = bound
    return spec


def _logsubexp_cases() -> list[CaseSpec]:
    def sub(identifier: str, description: str, inputs: Any, **options: Any) -> CaseSpec:
        return case("logsubexp", identifier, description, inputs, pivots=_first, **options)

    return [
        sub("near/d-in-(-log2,0)", "b - a in (-log 2, 0): the log(-expm1(d)) branch",
            pair(normal(48, 5.0), lambda dtype, rng: -rng.uniform(0.05, 0.69, 48))),
        sub("switch/d-near--log2", "b - a around -log 2, where the two branches meet",
            pair(normal(32, 5.0), lambda dtype, rng: -rng.uniform(0.6, 0.8, 32))),
        sub("far/d<-log5", "b - a far below -log 2: the log1p(-exp(d)) branch",
            pair(normal(48, 5.0), lambda dtype, rng: -rng.exponential(8.0, 48) - math.log(5.0))),
        xla_log1p(sub("far/d-in-(-log5,-log2)", "b - a in (-log 5, -log 2): log1p(-exp(d)) of an argument in "
                      "[-1/2, -1/5]", pair(normal(48, 5.0), lambda dtype, rng: -rng.uniform(0.7, 1.6, 48)))),
        sub("tiny-difference", "b one or a few ulps below a: log(e^a - e^b) = a + log(-expm1(d))",
            named(a=fixed({"float64": [1.0, 100.0, 0.5], "float32": [1.0, 100.0, 0.5],
                           "bfloat16": [1.0, 100.0, 0.5], "float16": [1.0, 8.0, 0.5]}),
                  b=fixed({"float64": [1.0 - 2.0**-52, 100.0 - 2.0**-46, 0.5 - 2.0**-50],
                           "float32": [1.0 - 2.0**-23, 100.0 - 2.0**-17, 0.5 - 2.0**-21],
                           "bfloat16": [1.0 - 2.0**-7, 100.0 - 2.0**-1, 0.5 - 2.0**-5],
                           "float16": [1.0 - 2.0**-10, 8.0 - 2.0**-7, 0.5 - 2.0**-8]}))),
        sub("special-values", "a < b NaN, a == b -inf, b = -inf gives a, (inf, inf) NaN, NaN propagates",
            named(a=fixed([0.0, 1.0, 2.0, -INF, INF, INF, NAN, 1.0, 0.0]),
                  b=fixed([1.0, 1.0, -INF, -INF, INF, 0.0, 0.0, NAN, -1e4]))),
    ]


def _logcumsumexp_cases() -> list[CaseSpec]:
    def scan(identifier: str, description: str, x: Builder, **options: Any) -> CaseSpec:
        return case("logcumsumexp", identifier, description, named(x=x), pivots=_running_max, **options)

    return [
        scan("normal/n=64", "every prefix of a standard normal row", normal(64)),
        scan("normal/n=1000", "long rows: the scan's rounding grows like log n, not n", normal(1000)),
        scan("wide/3x50", "uniform [-R, R] towards exp's overflow", wide((3, 50))),
        scan("axis0/20x3", "along axis 0", normal((20, 3), 3.0), axis=0),
        scan("reverse/4x30", "suffix sums (reverse=True)", normal((4, 30), 3.0), reverse=True),
        scan("reverse-axis0/30x2", "suffix sums along axis 0", normal((30, 2), 3.0), axis=0, reverse=True),
        scan("dominant/0-then-40x-40", "a dominant first term: prefixes 0 + log1p(k e^-40)",
             fixed([0.0] + [-40.0] * 40)),
        scan("dominant/tiny-max-then-x-5", "the running max 1.48e-14 and then -5: the gap -5 - 1.48e-14 "
             "rounds, which exp turns into 2.6 ulp of the prefix 0.0067 (float64) unless carried",
             fixed([1.4757550987426855e-14, -5.0, -5.0, -6.0])),
        scan("special-values", "-inf entries absent, +inf and NaN carry forward",
             fixed([[-INF, -INF, 0.0, -INF, 1.0], [0.0, INF, 1.0, INF, -INF], [0.0, 1.0, NAN, 2.0, 3.0],
                    [-INF, -INF, -INF, -INF, -INF]])),
    ]


def _logmeanexp_cases() -> list[CaseSpec]:
    def mean(identifier: str, description: str, x: Builder, **options: Any) -> CaseSpec:
        return case("logmeanexp", identifier, description, named(x=x), pivots=_reduced_max, **options)

    mask = np.random.default_rng(101).random((6, 10)) < 0.6
    mask[2, :] = False
    return [
        mean("normal/n=100", "standard normal, all axes", normal(100)),
        mean("normal/5x40/axis=1", "per row", normal((5, 40), 5.0), axis=1),
        mean("wide/keepdims", "uniform [-R, R], keepdims", wide((3, 30)), axis=1, keepdims=True),
        mean("constant/n=1000", "[c] * n: exactly c (LSE - log n is not)", fixed(np.full(1000, 0.001))),
        mean("near-constant/n=64", "a mean near 1: log1p of an exact difference",
             normal(64, 0.001, 3.0)),
        mean("near-zero/0-and-9x-1e-6", "[0] + [-1e-6]*9 ~ -9e-7: log1p(sum expm1(x - m) / n) (1 + rest - n "
             "kept every exp's rounding near 1: 8.7e5 ulp in float64)", fixed([0.0] + [-1e-6] * 9)),
        mean("near-zero/0-and-99x-1e-3", "[0] + [-1e-3]*99 ~ -9.9e-4, a result near 0 from entries of one sign",
             fixed([0.0] + [-1e-3] * 99)),
        mean("where/6x10", "where mask: n counts the present entries; a fully masked row gives -inf",
             normal((6, 10), 2.0), axis=1, bool_inputs={"where": mask}),
        mean("special-values", "-inf counts as present; all -inf -inf; +inf; NaN",
             fixed([[0.0, -INF], [-INF, -INF], [INF, 0.0], [NAN, 0.0]]), axis=1),
    ]


def _log1psumexp_cases() -> list[CaseSpec]:
    def l1p(identifier: str, description: str, x: Builder, **options: Any) -> CaseSpec:
        return case("log1psumexp", identifier, description, named(x=x), **options)

    return [
        l1p("normal/8x6", "per row", normal((8, 6), 3.0), axis=1),
        l1p("softplus/n=1", "one entry per row: softplus log(1 + e^x)",
            lambda dtype, rng: np.concatenate([np.linspace(-WIDE[dtype], WIDE[dtype], 41), [-1e-3, 0.0, 1e-3]])[:, None],
            axis=1),
        l1p("tail/x-to--inf", "every x far below 0: the result is sum e^x (relative accuracy)",
            lambda dtype, rng: rng.uniform(*TAIL[dtype], (4, 5)), axis=1),
        l1p("large-x", "max x near exp's overflow: max + log1p(e^-max + ...)",
            lambda dtype, rng: np.stack([np.full(4, WIDE[dtype]), rng.uniform(0, WIDE[dtype], 4)]), axis=1),
        l1p("special-values", "all -inf gives 0; +inf; NaN",
            fixed([[-INF, -INF], [INF, 0.0], [NAN, 0.0], [-1.0, -INF]]), axis=1),
    ]


def _log_matmul_exp_cases() -> list[CaseSpec]:
    def lme(identifier: str, description: str, inputs: Any, **options: Any) -> CaseSpec:
        spec = case("log_matmul_exp", identifier, description, inputs, **options)
        spec.tolerance = matmul_bound
        return spec

    rows_neg_inf = np.random.default_rng(103).normal(0, 2, (4, 6))
    rows_neg_inf[1, :] = -INF
    rows_neg_inf[3, ::2] = -INF
    return [
        lme("normal/5x7@7x4", "standard normal", named(a=normal((5, 7)), b=normal((7, 4)))),
        lme("batched/2x3x4@4x5", "batch broadcast against a matrix", named(a=normal((2, 3, 4), 3.0), b=normal((4, 5), 3.0))),
        lme("k=256", "longer inner dimension", named(a=normal((3, 256), 2.0), b=normal((256, 2), 2.0))),
        lme("vectors", "(k,) @ (k, n)", named(a=normal(6, 2.0), b=normal((6, 3), 2.0))),
        lme("rows-of-neg-inf", "a row of a all -inf gives -inf; partly -inf rows ignore those terms",
            named(a=fixed(rows_neg_inf), b=normal((6, 3), 2.0))),
        lme("offset", "large common offsets: r_i + c_j carries the magnitude",
            named(a=lambda dtype, rng: rng.normal(0, 1, (3, 4)) + WIDE[dtype] / 2,
                  b=lambda dtype, rng: rng.normal(0, 1, (4, 3)) - WIDE[dtype] / 4)),
    ]


def _duality_cases() -> list[CaseSpec]:
    return [
        case("entropy", "dirichlet/8x6", "random distributions", named(p=dirichlet((8, 6)))),
        case("entropy", "sparse-dirichlet/8x6", "peaked distributions (alpha = 0.1)", named(p=dirichlet((8, 6), 0.1))),
        case("entropy", "zeros", "0 log 0 = 0; a point mass gives +0",
             named(p=fixed([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.25, 0.0, 0.75]]))),
        case("softmax_entropy", "normal/6x8", "logits, standard normal", named(x=normal((6, 8)))),
        case("softmax_entropy", "normal-sigma5/6x8", "logits with sigma 5", named(x=normal((6, 8), 5.0))),
        case("softmax_entropy", "special-values", "-inf logits absent, k +inf give log k",
             named(x=fixed([[0.0, -INF, 1.0, -INF], [INF, INF, 0.0, 1.0], [-INF, 0.0, -INF, -INF]]))),
        case("fenchel_young_loss", "dirichlet/6x5", "KL(y || softmax(x)) for random y",
             named(x=normal((6, 5), 2.0), y=dirichlet((6, 5)))),
        case("fenchel_young_loss", "one-hot", "one-hot y: the softmax cross-entropy",
             named(x=normal((5, 5), 2.0), y=fixed(np.eye(5)))),
    ]


def cases() -> list[CaseSpec]:
    return (_logaddexp_cases() + _logsubexp_cases() + _logcumsumexp_cases() + _logmeanexp_cases()
            + _log1psumexp_cases() + _log_matmul_exp_cases() + _duality_cases())
