"""Streaming log-sum-exp (``LSEState``, ``lse_init/update/merge/finalize``).

* any chunking and any merge order gives ``logsumexp`` of the concatenation
  (hypothesis on the chunk boundaries and on the merge tree), checked against
  mpmath at 50 digits and against ``logsumexp`` itself;
* merge is commutative bit for bit, has the empty state as identity, and is
  associative up to rounding;
* special values per ``semantics.md`` (+inf dominates, NaN poisons, -inf and
  empty chunks are absent); dtypes (half types keep a float32 ``rest``);
* works under ``jax.jit`` / ``vmap`` / ``lax.scan`` and ``torch.compile``.
"""

from __future__ import annotations

import functools
import math

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import BACKEND_DTYPES
from smoothmax import LSEState, logsumexp, lse_finalize, lse_init, lse_merge, lse_update

mpmath.mp.dps = 50


#: significand bits, smallest normal exponent
FORMATS = {"float16": (11, -14), "bfloat16": (8, -126), "float32": (24, -126), "float64": (53, -1022)}


def ulp(value: float, dtype: str = "float64") -> float:
    bits, min_exponent = FORMATS[dtype]
    exponent = max(math.frexp(abs(value))[1] - 1 if value != 0 else min_exponent, min_exponent)
    return math.ldexp(1.0, exponent - bits + 1)


def exact_lse(values: np.ndarray) -> mpmath.mpf:
    """m + log1p(sum of the others' exp(x - m)) at 50 digits: relative accuracy
    also for results far below 1 (log(exp(1e-177)) would need 177 digits)."""
    finite = sorted((mpmath.mpf(float(v)) for v in values if v > -math.inf), reverse=True)
    if not finite:
        return mpmath.mpf("-inf")
    top = finite[0]
    return top + mpmath.log1p(mpmath.fsum(mpmath.exp(v - top) for v in finite[1:]))


def scaled_error(got: float, exact: mpmath.mpf, values: np.ndarray, dtype: str = "float64") -> float:
    """|got - exact| in ulps of max(|exact|, |max x|): the unit in which any
    ``m + log1p(rest)`` algorithm rounds (a result near 0 by cancellation of
    ``m`` and ``log1p(rest)`` is only known to that absolute accuracy)."""
    if exact == -math.inf:
        return 0.0 if got == -math.inf else math.inf
    scale = max(abs(float(exact)), float(np.max(values[values > -math.inf])))
    scale = max(scale, abs(float(np.max(values))))
    return float(abs(mpmath.mpf(got) - exact)) / ulp(scale, dtype)


def fold(backend, values: np.ndarray, cuts: list[int], dtype: str = "float64") -> LSEState:
    x = backend.asarray(values, dtype)
    state = lse_init((), like=x)
    bounds = [0, *cuts, len(values)]
    for start, stop in zip(bounds[:-1], bounds[1:]):
        state = lse_update(state, x[start:stop])
    return state


def value(backend, array) -> float:
    return float(backend.to_numpy(array))


entries = st.one_of(
    # no subnormals: XLA on CPU flushes them to zero (a backend property, not ours)
    st.floats(-300, 300, allow_nan=False, allow_subnormal=False, width=64),
    st.sampled_from([-math.inf, 0.0, -40.0, 1.0]),
)
vectors = st.lists(entries, min_size=0, max_size=40).map(lambda v: np.array(v, dtype=np.float64))


@st.composite
def chunked(draw):
    values = draw(vectors)
    cuts = sorted(draw(st.lists(st.integers(0, len(values)), max_size=8)))
    return values, cuts


# ---------------------------------------------------------------------------
# Chunking and merge order
# ---------------------------------------------------------------------------


def examples_for(backend):
    """The profile's examples on eager backends, a quarter of them on JAX and Dask:
    the merge code is the same on every backend, and there each example's new
    slice lengths compile programs (JAX) or build and run graphs (Dask), 6-16 s
    a test at the full count."""
    examples = settings.default.max_examples
    return settings(max_examples=max(1, examples // 4) if backend.name in ("jax", "dask") else examples)


def test_any_chunking_equals_logsumexp_of_the_concatenation(xp):
    @examples_for(xp)
    @given(case=chunked())
    def check(case):
        chunking_equals_logsumexp_of_the_concatenation(xp, case)

    check()


def chunking_equals_logsumexp_of_the_concatenation(xp, case):
    values, cuts = case
    got = value(xp, lse_finalize(fold(xp, values, cuts)))
    whole = value(xp, logsumexp(xp.asarray(values)))
    exact = exact_lse(values)
    if exact == -math.inf:
        assert got == whole == -math.inf
        return
    # Exact to 1.5 ulp (2 where exp is only faithful); logsumexp itself is within
    # 1.5 ulp of exact, so the two may differ by 2.
    limit = 1.5 if xp.name in ("numpy", "array_api_strict") else 2.0
    assert scaled_error(got, exact, values) <= limit
    assert abs(got - whole) <= 2 * ulp(max(abs(whole), float(values.max())))


def test_any_merge_tree_gives_the_same_value(xp):
    @examples_for(xp)
    @given(case=chunked(), order=st.randoms(use_true_random=False))
    def check(case, order):
        merge_tree_gives_the_same_value(xp, case, order)

    check()


def merge_tree_gives_the_same_value(xp, case, order):
    values, cuts = case
    x = xp.asarray(values)
    empty = lse_init((), like=x)
    bounds = [0, *cuts, len(values)]
    states = [lse_update(empty, x[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    while len(states) > 1:  # merge random neighbours-or-not pairs: any tree
        i, j = sorted(order.sample(range(len(states)), 2))
        merged = lse_merge(states[i], states[j]) if order.random() < 0.5 else lse_merge(states[j], states[i])
        states = [s for k, s in enumerate(states) if k not in (i, j)] + [merged]
    got = value(xp, lse_finalize(states[0]))
    exact = exact_lse(values)
    limit = 1.5 if xp.name in ("numpy", "array_api_strict") else 2.0
    assert scaled_error(got, exact, values) <= limit


def test_dominant_term_accuracy_survives_chunking(xp):
    """[0] + [-40]*10 in one-element chunks: 4.248e-17, not 0 (the pivot is kept)."""
    values = np.array([0.0] + [-40.0] * 10)
    state = fold(xp, values, list(range(1, 11)))
    got = value(xp, lse_finalize(state))
    exact = exact_lse(values)
    assert float(abs(mpmath.mpf(got) - exact)) <= 1.5 * ulp(float(exact))
    # rest is the sum without the pivot: 10 e^-40, the maximum is exactly 0
    assert value(xp, state.maximum) == 0.0
    assert value(xp, state.rest) == pytest.approx(10 * math.exp(-40), rel=1e-15)


# ---------------------------------------------------------------------------
# Merge algebra
# ---------------------------------------------------------------------------

SPECIAL = [0.0, 1.5, -2.0, 700.0, -math.inf, math.inf, math.nan]


def states_grid(backend):
    """Every pair of single-value states from SPECIAL, plus multi-term states."""
    x = backend.asarray(np.array(SPECIAL))
    empty = lse_init((len(SPECIAL),), like=x)
    single = lse_update(empty, backend.asarray(np.array(SPECIAL)[:, None]), axis=1)
    pairs = backend.asarray(np.array([[a, b] for a in SPECIAL for b in SPECIAL]))
    double = lse_update(lse_init((len(SPECIAL) ** 2,), like=x), pairs, axis=1)
    return single, double


def fields(backend, state):
    return backend.to_numpy(state.maximum), backend.to_numpy(state.rest)


def test_merge_is_commutative_bitwise_and_empty_is_identity(xp):
    single, double = states_grid(xp)
    n = len(SPECIAL)
    # all pairs (a, b) of single states by broadcasting: shapes (n, 1) and (1, n)
    a = LSEState(*(xp.module.reshape(f, (n, 1)) for f in single))
    b = LSEState(*(xp.module.reshape(f, (1, n)) for f in single))
    ab, ba = fields(xp, lse_merge(a, b)), fields(xp, lse_merge(b, a))
    for first, second in zip(ab, ba):
        np.testing.assert_array_equal(first, second)  # NaNs in the same places too
    empty = lse_init((n * n,), like=double.maximum)
    for merged in (lse_merge(empty, double), lse_merge(double, empty)):
        for got, expected in zip(fields(xp, merged), fields(xp, double)):
            np.testing.assert_array_equal(got, expected)
    # the empty state merged with itself stays (−inf, 0)
    twice = fields(xp, lse_merge(empty, empty))
    assert np.all(twice[0] == -np.inf) and np.all(twice[1] == 0)


def test_special_values(xp):
    cases = {
        (0.0, math.inf): math.inf,
        (math.inf, math.inf): math.inf,
        (-math.inf, math.inf): math.inf,
        (math.nan, math.inf): math.nan,
        (math.inf, math.nan): math.nan,
        (-math.inf, -math.inf): -math.inf,
        (-math.inf, 3.0): 3.0,
        (2.0, math.nan): math.nan,
    }
    for (first, second), expected in cases.items():
        for cuts in ([], [1]):
            got = value(xp, lse_finalize(fold(xp, np.array([first, second]), cuts)))
            np.testing.assert_equal(got, expected, err_msg=f"{first}, {second} cut {cuts}")
    # +inf: rest counts the further +inf entries; NaN poisons both fields
    state = fold(xp, np.array([math.inf, 1.0, math.inf, math.inf]), [1, 2, 3])
    assert fields(xp, state) == (math.inf, 2.0)
    poisoned = fold(xp, np.array([1.0, math.nan, 3.0]), [1, 2])
    assert all(np.isnan(f) for f in fields(xp, poisoned))


def test_empty_chunks_and_empty_input_are_identities(xp):
    x = xp.asarray(np.array([1.0, 2.0]))
    empty = lse_init((), like=x)
    assert value(xp, lse_finalize(empty)) == -math.inf
    assert fields(xp, lse_update(empty, x[0:0])) == (-math.inf, 0.0)
    state = lse_update(empty, x)
    again = lse_update(state, x[1:1])
    for got, expected in zip(fields(xp, again), fields(xp, state)):
        np.testing.assert_array_equal(got, expected)


def test_associative_to_rounding(xp):
    rng = np.random.default_rng(7)
    values = rng.standard_normal((3, 200)) * 20
    x = xp.asarray(values)
    empty = lse_init((200,), like=x)
    a, b, c = (lse_update(empty, x[i : i + 1, ...], axis=0) for i in range(3))
    left = xp.to_numpy(lse_finalize(lse_merge(lse_merge(a, b), c)))
    right = xp.to_numpy(lse_finalize(lse_merge(a, lse_merge(b, c))))
    scale = np.maximum(np.abs(left), values.max(axis=0))
    assert np.all(np.abs(left - right) <= 2 * np.spacing(scale))


# ---------------------------------------------------------------------------
# Shapes, axes, dtypes
# ---------------------------------------------------------------------------


def test_axes_and_broadcasting_state(xp):
    rng = np.random.default_rng(3)
    values = rng.standard_normal((4, 5, 6))
    x = xp.asarray(values)
    state = lse_init((5,), like=x)
    for chunk in (x[:, :, :2], x[:, :, 2:]):
        state = lse_update(state, chunk, axis=(0, 2))
    expected = xp.to_numpy(logsumexp(x, axis=(0, 2)))
    np.testing.assert_allclose(xp.to_numpy(lse_finalize(state)), expected, rtol=4e-16)
    # a () state broadcasts against the chunk's reduced shape
    broadcast = lse_update(lse_init((), like=x), x, axis=-1)
    assert tuple(broadcast.maximum.shape) == (4, 5)
    np.testing.assert_allclose(
        xp.to_numpy(lse_finalize(broadcast)), xp.to_numpy(logsumexp(x, axis=-1)), rtol=4e-16
    )
    with pytest.raises(ValueError, match="state"):
        lse_update(lse_init((3,), like=x), x, axis=0)


@pytest.mark.parametrize(
    "xp, dtype",
    [pytest.param(backend, dtype, id=f"{backend.name}-{dtype}")
     for backend, dtype in BACKEND_DTYPES if dtype != "float64"],
)
def test_low_precision_keeps_a_float32_rest(xp, dtype):
    rng = np.random.default_rng(5)
    values = rng.standard_normal(300) * 4
    x = xp.asarray(values, dtype)
    rounded = xp.to_numpy(x).astype(np.float64)
    state = lse_init((), like=x)
    for start in range(0, 300, 64):
        state = lse_update(state, x[start : min(start + 64, 300)])
    assert state.maximum.dtype == x.dtype
    assert state.rest.dtype == xp.dtypes["float32"]
    result = lse_finalize(state)
    assert result.dtype == x.dtype
    error = scaled_error(value(xp, result), exact_lse(rounded), rounded, dtype)
    assert error <= (1.0 if dtype != "float32" or xp.name in ("numpy", "array_api_strict") else 2.0)


def test_integer_chunks_promote_and_chunks_take_the_state_dtype(xp):
    ints = xp.module.asarray(np.arange(4)) if xp.name != "torch" else xp.module.arange(4)
    state = lse_update(lse_init((), like=ints), ints)
    assert state.maximum.dtype == logsumexp(ints).dtype  # the namespace's default float
    assert value(xp, lse_finalize(state)) == pytest.approx(math.log(sum(math.exp(i) for i in range(4))))
    float32_state = lse_init((), like=xp.asarray(np.zeros(1), "float32"))
    updated = lse_update(float32_state, xp.asarray(np.array([1.0, 2.0])))
    assert updated.maximum.dtype == xp.dtypes["float32"]


def test_errors_name_the_argument(xp):
    x = xp.asarray(np.zeros(3))
    state = lse_init((), like=x)
    with pytest.raises(TypeError, match="state"):
        lse_update((x, x), x)
    with pytest.raises(TypeError, match="x"):
        lse_update(state, [1.0, 2.0])
    with pytest.raises(TypeError, match="shape"):
        lse_init(2.5, like=x)
    with pytest.raises(TypeError, match="b"):
        lse_merge(state, "not a state")
    other = np.zeros(3) if xp.name != "numpy" else __import__("torch").zeros(3)
    with pytest.raises(TypeError, match="namespace"):
        lse_update(state, other)
    with pytest.raises(TypeError, match="complex"):
        lse_update(state, xp.module.asarray(np.zeros(2, dtype=complex)))


# ---------------------------------------------------------------------------
# Compiled
# ---------------------------------------------------------------------------


def test_jax_jit_vmap_and_scan():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    rng = np.random.default_rng(11)
    values = rng.standard_normal((8, 3, 16)) * 30
    values[2, 1, :] = -np.inf
    chunks = jnp.asarray(values)  # 8 chunks of shape (3, 16), reduced along axis 1

    @jax.jit
    def stream(chunks):
        def step(state, chunk):
            return lse_update(state, chunk, axis=1), None

        state, _ = jax.lax.scan(step, lse_init((3,), like=chunks), chunks)
        return lse_finalize(state)

    expected = np.asarray(logsumexp(jnp.asarray(np.moveaxis(values, 0, 1).reshape(3, -1)), axis=1))
    np.testing.assert_allclose(np.asarray(stream(chunks)), expected, rtol=4e-16)

    merge = jax.jit(lse_merge)
    a = lse_update(lse_init((3,), like=chunks), chunks[0], axis=1)
    b = lse_update(lse_init((3,), like=chunks), chunks[1], axis=1)
    for got, want in zip(merge(a, b), lse_merge(a, b)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    per_row = jax.vmap(lambda row: lse_finalize(lse_update(lse_init((), like=row), row)))(chunks[0])
    np.testing.assert_allclose(np.asarray(per_row), np.asarray(logsumexp(chunks[0], axis=1)), rtol=4e-16)


def test_torch_compile():
    torch = pytest.importorskip("torch")

    @torch.compile(fullgraph=True, dynamic=False)
    def stream(first, second):
        state = lse_init((3,), like=first)
        state = lse_update(state, first, axis=1)
        state = lse_merge(state, lse_update(lse_init((3,), like=second), second, axis=1))
        return lse_finalize(state)

    rng = np.random.default_rng(12)
    first = torch.from_numpy(rng.standard_normal((3, 5)) * 20)
    second = torch.from_numpy(rng.standard_normal((3, 7)) * 20)
    second[1] = -math.inf
    expected = logsumexp(torch.cat([first, second], dim=1), axis=1)
    np.testing.assert_allclose(stream(first, second).numpy(), expected.numpy(), rtol=4e-16)
