"""Accuracy of logsumexp against mpmath at 50 digits (inputs taken as exact),
in every dtype of every backend, including the one-dominant-term cases where
max-shift code loses all relative accuracy."""

from __future__ import annotations

import functools
import math

import mpmath
import numpy as np
import pytest

from smoothmax import log_softmax, logsumexp

mpmath.mp.dps = 50

#: significand bits (incl. the implicit one) and smallest normal exponent
FORMATS = {"float16": (11, -14), "bfloat16": (8, -126), "float32": (24, -126), "float64": (53, -1022)}


def ulp(value: mpmath.mpf, dtype: str) -> mpmath.mpf:
    """Spacing of the ``dtype`` floats at ``value`` (subnormal spacing near 0)."""
    bits, min_exponent = FORMATS[dtype]
    exponent = max(int(mpmath.floor(mpmath.log(abs(value), 2))) if value != 0 else min_exponent, min_exponent)
    return mpmath.mpf(2) ** (exponent - bits + 1)


def round_to(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` rounded to ``dtype`` and returned as float64 (exactly representable)."""
    if dtype == "bfloat16":
        import ml_dtypes

        return values.astype(ml_dtypes.bfloat16).astype(np.float64)
    return values.astype(dtype).astype(np.float64)


@functools.cache
def exact_logsumexp(values: tuple[float, ...]) -> mpmath.mpf:
    return mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(v)) for v in values))


RNG = np.random.default_rng(3)
CASES = {
    "dominant [0]+[-40]*10": np.array([0.0] + [-40.0] * 10),
    "dominant [0,-20,-20,-30]": np.array([0.0, -20.0, -20.0, -30.0]),
    "dominant half [0]+[-12]*4": np.array([0.0] + [-12.0] * 4),
    # equal terms: the roundings of their exp and of the sum lean the same way (smoothmax._refine)
    "dominant [0]+[-40]*99": np.array([0.0] + [-40.0] * 99),
    "dominant [0]+[-15]*999": np.array([0.0] + [-15.0] * 999),
    "dominant [0]+[-7]*299": np.array([0.0] + [-7.0] * 299),
    "dominant [0]+[-40]*13": np.array([0.0] + [-40.0] * 13),
    "tiny max beside -5s": np.array([1.4757550987426855e-14, -5.0, -5.0]),
    "normal n=10": RNG.standard_normal(10),
    "normal n=1000": RNG.standard_normal(1000),
    "normal n=1e5": RNG.standard_normal(100_000),
    "uniform n=1e4": RNG.uniform(-5, 5, 10_000),
    "ties": np.full(9, 1.25),
    "ties and tail": np.array([3.0, 3.0, 3.0, -1.0, -2.0]),
    "large n constant": np.zeros(50_000),
}
WIDE = {"float64": 700.0, "float32": 80.0, "bfloat16": 80.0, "float16": 10.0}


def tolerance(backend: str, dtype: str) -> float:
    """../shared/semantics.md: 1 ulp (1.5 in float64); 2 where exp is only faithful."""
    if backend in ("torch", "jax"):
        return 2.0
    return 1.5 if dtype == "float64" else 1.0


@pytest.mark.parametrize("case", [*CASES, "wide"])
def test_logsumexp_within_ulps_of_exact(xp_and_dtype, case):
    xp, dtype = xp_and_dtype
    values = CASES[case] if case != "wide" else np.random.default_rng(4).uniform(-WIDE[dtype], WIDE[dtype], 2000)
    values = round_to(values, dtype)
    exact = exact_logsumexp(tuple(values.tolist()))
    got = float(xp.to_numpy(logsumexp(xp.asarray(values, dtype))))
    error = abs(mpmath.mpf(got) - exact) / ulp(exact, dtype)
    assert error <= tolerance(xp.name, dtype), f"{float(error):.3f} ulp (exact {mpmath.nstr(exact, 20)}, got {got!r})"


@pytest.mark.parametrize("case", [name for name in CASES if name.startswith("dominant")])
def test_log_softmax_within_ulps_of_exact(xp_and_dtype, case):
    """../shared/semantics.md: <= 2 ulp per entry where the differences ``x - max``
    are exact (here: a maximum of 0). The pivot's entry is ``-log1p(rest)`` itself,
    as small as ``lse``, with the same summation error to keep out."""
    xp, dtype = xp_and_dtype
    values = round_to(CASES[case], dtype)
    exact = exact_logsumexp(tuple(values.tolist()))
    got = xp.to_numpy(log_softmax(xp.asarray(values, dtype))).astype(np.float64)
    for index in sorted({0, 1, len(values) - 1}):
        expected = mpmath.mpf(float(values[index])) - exact
        error = abs(mpmath.mpf(float(got[index])) - expected) / ulp(expected, dtype)
        assert error <= 2.0, f"entry {index}: {float(error):.3f} ulp (exact {mpmath.nstr(expected, 20)})"


def test_dominant_term_is_not_zero(xp):
    """Where max-shift code returns 0 (1e7 ulp off in float32), we return 4.2e-17."""
    got = float(xp.to_numpy(logsumexp(xp.asarray([0.0] + [-40.0] * 10, "float32"))))
    assert got == pytest.approx(10 * math.exp(-40), rel=2.5e-7)


# --------------------------------------------------------------------------- the sum along an outer axis


def _axis_sum(xp, values, dtype, axis):
    import array_api_compat

    from smoothmax import _kernel

    array = xp.asarray(values, dtype)
    return xp.to_numpy(_kernel.axis_sum(array_api_compat.array_namespace(array), array, axis)).astype(np.float64)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [999, 1000, 1023, 1025])
def test_pairwise_sum_of_equal_terms_along_an_outer_axis(xp, dtype, n):
    """``_kernel.axis_sum`` along axis 0 (the kernel's sum of the terms ``e_i``):
    ``n`` equal terms ``e^-40``, the sum of a dominant term's slice, within 1 ulp
    of ``math.fsum`` on every backend (measured: at most 0.58 ulp in float32, 1.0
    in float64). NumPy's ``np.sum`` adds an outer axis row after row: 62 ulp in
    float32 for ``n = 999``."""
    term = float(np.exp(np.asarray(-40.0, dtype)))
    got = _axis_sum(xp, np.full((n, 4), term), dtype, 0)
    exact = math.fsum([term] * n)
    assert got.shape == (1, 4)
    error = np.abs(got - exact) / float(np.spacing(np.asarray(exact, dtype)))
    assert error.max() <= 1.0, f"{error.max():.3f} ulp"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape, axis", [((999, 3, 2), 0), ((5, 1025, 3), 1), ((3, 777), 0)])
def test_pairwise_sum_error_bound(xp, dtype, shape, axis):
    """The classical bound of a summation tree of depth ``d``: every term goes
    through at most ``log2 n`` folds and ``log2 n + 1`` additions of the rows set
    aside, so ``|error| <= (2 log2 n + 1) u sum|x|`` (``u = eps / 2``)."""
    values = np.random.default_rng(8).standard_normal(shape).astype(dtype).astype(np.float64)
    got = _axis_sum(xp, values, dtype, axis)
    exact = np.apply_along_axis(math.fsum, axis, values)
    n = shape[axis]
    bound = (2 * math.log2(n) + 1) * np.finfo(dtype).eps / 2 * np.sum(np.abs(values), axis=axis)
    assert np.all(np.abs(np.squeeze(got, axis) - exact) <= bound)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_large_array_path_within_ulps_of_exact(dtype, monkeypatch):
    """JAX's path for arrays above 2 MiB (one sum with the ties of the maximum in
    it; slices whose sum is below 2 summed again without the pivot), forced on
    every case: the bounds above, for ``logsumexp``, ``log_softmax`` and
    ``softmax`` (whose entries here all have exact ``x - max``)."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from smoothmax import _fastpaths, softmax

    monkeypatch.setattr(_fastpaths, "_JAX_SMALL_BYTES", 0)
    failures = []
    for case, values in CASES.items():
        values = round_to(values, dtype)
        exact = exact_logsumexp(tuple(values.tolist()))
        x = jnp.asarray(values, dtype)
        error = abs(mpmath.mpf(float(logsumexp(x))) - exact) / ulp(exact, dtype)
        if error > tolerance("jax", dtype):
            failures.append(f"{case}: logsumexp {float(error):.3f} ulp")
        if not case.startswith("dominant"):
            continue
        log_q = np.asarray(log_softmax(x), np.float64)
        q = np.asarray(softmax(x), np.float64)
        for index in sorted({0, 1, len(values) - 1}):
            expected = mpmath.mpf(float(values[index])) - exact
            for name, got, want in (("log_softmax", log_q[index], expected), ("softmax", q[index], mpmath.exp(expected))):
                error = abs(mpmath.mpf(float(got)) - want) / ulp(want, dtype)
                if error > 2.0:
                    failures.append(f"{case}: {name}[{index}] {float(error):.3f} ulp")
    assert not failures, "\n".join(failures)
