"""The slices where one term dominates, recomputed in extended precision
(``smoothmax._refine``): which slices are touched, the extended arithmetic
itself, and that autodiff and the transforms are unaffected."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import smoothmax as sm
from smoothmax import _fastpaths, _kernel, _refine

mpmath.mp.dps = 60


def exact_lse(row: np.ndarray, t: float = 1.0) -> mpmath.mpf:
    finite = [mpmath.mpf(float(v)) for v in row if v != -math.inf]
    top = max(finite)
    return top + t * mpmath.log(mpmath.fsum(mpmath.exp((v - top) / t) for v in finite))


def ulps(got: float, exact: mpmath.mpf, dtype: str) -> float:
    return float(abs(mpmath.mpf(got) - exact) / float(np.spacing(np.abs(np.asarray(float(exact), dtype)))))


def rows_mixed() -> np.ndarray:
    """Rows that need refining ([0] + equal small terms, a tiny maximum) between rows that do not."""
    rng = np.random.default_rng(11)
    rows = rng.standard_normal((6, 100)) * 3
    rows[1] = [0.0] + [-40.0] * 99
    rows[3] = [0.0] + [-7.0] * 99
    rows[4] = [-3.0] + [-43.0] * 99  # an offset maximum: log1p(rest) is far below an ulp of m
    rows[5] = [1.4757550987426855e-14] + [-5.0] * 99
    return rows


def _wide_on_jax(xp, rows) -> bool:
    """Whether JAX computes ``lse`` and ``log_q`` of ``rows`` from a float64 sum on
    every slice (small float32 arrays: ``_fastpaths.jax_refined_kernel``)."""
    return xp.name == "jax" and rows.dtype == np.float32 and _fastpaths._jax_wide_float32_takes(rows)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_only_dominated_slices_change(xp, dtype):
    """Slices outside the regime are bitwise the kernel's; the others within 1 ulp
    (float32) / 1.5 ulp (float64) of exact; on every backend (JAX in its
    ``lax.cond``, Dask unrefined: its chunked sum is within the bound here).
    JAX's small float32 arrays sum every slice in float64 (:func:`_wide_on_jax`):
    there every slice is within 1 ulp of exact instead."""
    import array_api_compat

    rows = rows_mixed().astype(dtype)
    array = xp.asarray(rows, dtype)
    got = xp.to_numpy(sm.logsumexp(array, axis=1)).astype(np.float64)
    namespace = array_api_compat.array_namespace(array)
    if _wide_on_jax(xp, rows):
        for row in (0, 2, 4):
            assert ulps(got[row], exact_lse(rows[row]), dtype) <= 1.0, row
    elif xp.name != "dask":
        if xp.name == "torch":  # its small-lse route: NumPy's kernel on the tensor's memory
            plain = _fastpaths._torch_small_lse(array, 1, 1.0)
        else:
            (plain,) = _kernel.kernel(namespace, array, None, 1, 1.0, ("lse",))
        plain = xp.to_numpy(plain)[:, 0].astype(np.float64) if xp.name != "torch" else plain[:, 0]
        for row in (0, 2, 4):
            assert got[row] == plain[row], row
    for row in (1, 3, 5):
        error = ulps(got[row], exact_lse(rows[row]), dtype)
        assert error <= (1.0 if dtype == "float32" else 1.5), (row, error)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dominated_slices_refined_along_a_middle_axis(xp, dtype):
    """The same slices along a middle axis (JAX refines every slice in place
    there, no transposed copy): ``lse`` and ``log_softmax``'s pivot entry within
    the bounds of the rows' tests."""
    rows = rows_mixed().astype(dtype)
    middle = np.moveaxis(rows.reshape(2, 3, 100), 2, 1)  # middle[i, :, j] is rows[3 i + j]
    array = xp.asarray(middle, dtype)
    lse = xp.to_numpy(sm.logsumexp(array, axis=1)).astype(np.float64).reshape(-1)
    log_q = np.moveaxis(xp.to_numpy(sm.log_softmax(array, axis=1)).astype(np.float64), 1, 2).reshape(6, 100)
    for row in (1, 3, 5):
        exact = exact_lse(rows[row])
        assert ulps(lse[row], exact, dtype) <= (1.0 if dtype == "float32" else 1.5), row
        pivot = int(np.argmax(rows[row]))
        expected = mpmath.mpf(float(rows[row][pivot])) - exact
        assert ulps(log_q[row][pivot], expected, dtype) <= (2.0 if xp.name in ("torch", "jax") else 1.0), row


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_log_softmax_refined_on_the_same_slices(xp, dtype):
    """``log_softmax`` takes the refined ``log1p(rest)`` on the slices where
    ``lse`` is refined: its pivot entry ``-log1p(rest)`` within 1 ulp of exact
    there (2 where ``exp`` is only faithful) (the kernel's sum of the 99 equal terms of ``[0] + [-40] * 99`` errs
    4.3 ulp in float32), every other slice bitwise the kernel's; on JAX's small
    float32 arrays (:func:`_wide_on_jax`, every slice's ``log1p(rest)`` from a
    float64 sum) within 1 ulp of the kernel's (measured: 1)."""
    import array_api_compat

    rows = rows_mixed().astype(dtype)
    array = xp.asarray(rows, dtype)
    got = xp.to_numpy(sm.log_softmax(array, axis=1))
    if xp.name != "dask":
        (plain,) = _kernel.kernel(array_api_compat.array_namespace(array), array, None, 1, 1.0, ("log_q",))
        plain = xp.to_numpy(plain)
        for row in (0, 2, 4):
            if _wide_on_jax(xp, rows):
                np.testing.assert_array_max_ulp(got[row].astype(dtype), plain[row].astype(dtype), maxulp=1)
            else:
                np.testing.assert_array_equal(got[row], plain[row], err_msg=str(row))
    got = got.astype(np.float64)
    for row in (1, 3, 5):
        pivot = int(np.argmax(rows[row]))
        exact = mpmath.mpf(float(rows[row][pivot])) - exact_lse(rows[row])
        # torch's and XLA's exp are only faithful: 1.28 ulp measured on row 3 (semantics.md: 2)
        assert ulps(got[row][pivot], exact, dtype) <= (2.0 if xp.name in ("torch", "jax") else 1.0), row


@pytest.mark.parametrize("float64_available", [True, False], ids=["through-float64", "double-float"])
@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0, 0.1])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extended_lse_against_mpmath(monkeypatch, dtype, temperature, float64_available):
    """The extended arithmetic of ``refine_lse`` on rows of one dominant term and
    equal small ones (with a ``-inf``; every row needs refining): float32 through
    float64, or in double-float where float64 is missing (JAX without x64, Apple
    MPS), and float64 in double-double."""
    import array_api_compat.numpy as xp

    if not float64_available:
        monkeypatch.setattr(_refine, "_has_float64", lambda namespace, like: False)
    rows = np.array(
        [[0.0] + [-40.0 * temperature] * 99 + [-math.inf] * 1801,
         [0.0] + [-15.0 * temperature] * 999 + [-math.inf] * 901,
         [1e-9] + [1e-9 - 20.0 * temperature] * 1900],
        dtype=dtype,
    )
    (kernel_lse,) = _kernel.kernel(xp, rows, None, 1, temperature, ("lse",))
    got = _refine.refine_lse(xp, rows, kernel_lse, 1, temperature)[:, 0]
    assert got.dtype == rows.dtype
    for row, value in zip(rows, got):
        # the kernel's t is t rounded to the dtype; the reference takes t exactly
        assert ulps(float(value), exact_lse(row, temperature), dtype) <= 1.0


def test_no_warnings_and_specials_untouched(xp):
    """-inf entries, all -inf, +inf and NaN slices beside a slice that is refined go
    through without a floating-point warning (tests turn them into errors) and keep
    the kernel's special values (Dask: in one block with the refined slice)."""
    values = [[0.0, -np.inf, -40.0, -40.0], [-np.inf] * 4, [np.inf, 0.0, 1.0, 2.0], [np.nan, 0.0, 0.0, 0.0]]
    x = xp.asarray(values) if xp.name != "dask" else xp.module.from_array(np.array(values), chunks=(4, 4))
    got = xp.to_numpy(sm.logsumexp(x, axis=1))
    assert got[0] == pytest.approx(2 * math.exp(-40), rel=1e-15)
    assert got[1] == -np.inf and got[2] == np.inf and np.isnan(got[3])


def test_gradient_is_still_softmax_bitwise(autodiff_xp):
    """Refining changes ``lse`` only: its gradient is ``q``, ``softmax`` bit for bit."""
    x = autodiff_xp.asarray(rows_mixed(), "float64")
    gradient = autodiff_xp.grad(lambda value: sm.logsumexp(value, axis=1), x)
    np.testing.assert_array_equal(autodiff_xp.to_numpy(gradient), autodiff_xp.to_numpy(sm.softmax(x, axis=1)))


def test_jax_vmap_keeps_the_cond():
    """Under ``vmap`` the batching rule takes the ``lax.cond`` once for the whole
    batch (a batched predicate would turn it into a select computing both
    branches); the batched result equals the unbatched one."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    x = jnp.asarray(rows_mixed())
    program = str(jax.make_jaxpr(jax.vmap(sm.logsumexp))(x))
    assert "cond[" in program and "select_n" not in program.split("cond[", 1)[0][-200:]
    np.testing.assert_array_equal(np.asarray(jax.vmap(sm.logsumexp)(x)), np.asarray(sm.logsumexp(x, axis=1)))
    nested = jax.jit(jax.vmap(jax.vmap(sm.logsumexp)))(jnp.stack([x, x[::-1]]))
    np.testing.assert_array_equal(np.asarray(nested[0]), np.asarray(sm.logsumexp(x, axis=1)))


def test_jax_log_softmax_under_vmap_and_jit():
    """JAX's ``log_softmax`` refines in the same ``lax.cond`` as ``lse``: eager,
    ``jit`` and ``vmap`` agree bitwise."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    x = jnp.asarray(rows_mixed())
    eager = np.asarray(sm.log_softmax(x, axis=1))
    np.testing.assert_array_equal(np.asarray(jax.jit(lambda v: sm.log_softmax(v, axis=1))(x)), eager)
    np.testing.assert_array_equal(np.asarray(jax.vmap(sm.log_softmax)(x)), eager)
    assert ulps(eager[1][0], -exact_lse(rows_mixed()[1]), "float64") <= 1.0


def test_torch_transforms_run_unrefined():
    """``torch.func.vmap`` (no data-dependent Python branch allowed) takes the
    kernel's result: it runs, and stays within a few ulp of the refined one."""
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(rows_mixed())
    batched = torch.func.vmap(sm.logsumexp)(x)
    torch.testing.assert_close(batched, sm.logsumexp(x, axis=1), rtol=8 * 2.0**-52, atol=0.0)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_dask_blocks_refine_their_state(temperature):
    """Dask: each NumPy block's streaming state is refined (here the whole axis in
    one block, where no merge of several states helps: NumPy's float64 sum of the
    999 equal terms alone errs 2.8 ulp of the result)."""
    da = pytest.importorskip("dask.array")
    rows = np.array([[0.0] + [-15.0] * 999, [0.0] + [-7.0] * 999, [-1.0] * 1000]) * temperature
    got = sm.logsumexp(da.from_array(rows, chunks=(1, 1000)), axis=1, temperature=temperature).compute()
    for row in (0, 1):
        assert ulps(float(got[row]), exact_lse(rows[row], temperature), "float64") <= 1.5, row


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dask_block_of_whole_slices_refines_log_softmax(dtype):
    """Dask: a block that holds whole slices runs the eager NumPy kernel, refined
    (several blocks along the axis take the refined streaming state instead)."""
    da = pytest.importorskip("dask.array")
    rows = np.array([[0.0] + [-40.0] * 99, [0.0] + [-7.0] * 99, [-1.0] * 100], dtype=dtype)
    got = sm.log_softmax(da.from_array(rows, chunks=(1, 100)), axis=1).compute()
    for row in (0, 1):
        assert ulps(float(got[row][0]), -exact_lse(rows[row]), dtype) <= 1.0, row
