"""Hypothesis properties on every backend: bounds, shift invariance, softmax is a
probability vector equal to exp(log_softmax), monotonicity, temperature bounds,
convexity, and (autodiff backends) grad LSE == softmax bitwise."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from smoothmax import log_softmax, logsumexp, softmax

finite = st.floats(-300, 300, allow_nan=False, allow_infinity=False, width=64)
vectors = arrays(np.float64, st.integers(1, 40), elements=finite)
temperatures = st.floats(0.01, 100, allow_nan=False).flatmap(lambda t: st.sampled_from([t, -t]))

EPS = np.finfo(np.float64).eps


def lse(backend, values, **kwargs) -> float:
    return float(backend.to_numpy(logsumexp(backend.asarray(values), **kwargs)))


@given(values=vectors)
def test_bounds(xp, values):
    result = lse(xp, values)
    top = values.max()
    slack = 4 * EPS * max(abs(top), 1.0)
    assert top - slack <= result <= top + math.log(len(values)) + slack


@given(values=vectors, shift=st.integers(-200, 200))
def test_shift_invariance(xp, values, shift):
    shifted = values + shift
    slack = 8 * EPS * (abs(shifted).max() + abs(values).max() + 1.0)
    assert abs(lse(xp, shifted) - (lse(xp, values) + shift)) <= slack


@given(values=vectors)
def test_softmax_is_a_distribution_equal_to_exp_log_softmax(xp, values):
    x = xp.asarray(values)
    p = xp.to_numpy(softmax(x))
    assert (p >= 0).all() and abs(p.sum() - 1.0) <= 4 * EPS * len(values)
    np.testing.assert_allclose(np.exp(xp.to_numpy(log_softmax(x))), p, rtol=1e-13, atol=1e-300)


@given(values=vectors, index=st.integers(0, 39), increase=st.floats(0.0, 50.0))
def test_monotone(xp, values, index, increase):
    larger = values.copy()
    larger[index % len(values)] += increase
    assert lse(xp, larger) >= lse(xp, values) - 4 * EPS * (abs(values).max() + 1)


@given(values=vectors, temperature=temperatures)
def test_temperature_bounds(xp, values, temperature):
    result = lse(xp, values, temperature=temperature)
    # the rounding of the result and of the bounds themselves, ~|t| log n + |x| in size
    # (all equal entries: the result is the upper bound, which rounds in float64 too)
    slack = 8 * EPS * (abs(values).max() + abs(temperature) * math.log(len(values)) + 1.0)
    if temperature > 0:
        assert values.max() - slack <= result <= values.max() + temperature * math.log(len(values)) + slack
    else:
        assert values.min() + temperature * math.log(len(values)) - slack <= result <= values.min() + slack


@given(
    pair=st.integers(1, 30).flatmap(lambda n: st.tuples(*[arrays(np.float64, n, elements=finite)] * 2)),
    weight=st.floats(0, 1),
)
def test_convexity(xp, pair, weight):
    first, second = pair
    mixed = weight * first + (1 - weight) * second
    slack = 16 * EPS * (abs(first).max() + abs(second).max() + 1.0)
    assert lse(xp, mixed) <= weight * lse(xp, first) + (1 - weight) * lse(xp, second) + slack


@given(values=arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 12)), elements=finite), temperature=temperatures)
def test_gradient_is_softmax(autodiff_xp, values, temperature):
    x = autodiff_xp.asarray(values)
    gradient = autodiff_xp.grad(lambda v: logsumexp(v, axis=1, temperature=temperature), x)
    np.testing.assert_array_equal(
        autodiff_xp.to_numpy(gradient), autodiff_xp.to_numpy(softmax(x, axis=1, temperature=temperature))
    )
