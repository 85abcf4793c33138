"""The backend fast paths (``smoothmax._fastpaths``) return the generic kernel's results.

Each fast kernel is called directly and compared with ``smoothmax._kernel.kernel``
bit for bit (NaN compared as NaN) on random inputs, ties, ``+-inf``, NaN, all
``-inf`` slices and the dominant term ``[0] + [-40] * 10``, for every output set
the fast paths take, several temperatures, both float dtypes, contiguous and
outer axes, and shapes that cross NumPy's block size (PyTorch's ``lse`` alone
on large inputs is within one ulp instead: tested on its own). JAX is compared under
``jax.jit``, as the public functions run it (one compiled program a shape): XLA
may round a fused program differently from the same program op by op, so each
side runs the same way (``log_q`` at ``t != 1`` may still differ by one ulp: see there);
JAX sums several ties, arrays larger than one block and outer axes in another
order: on those inputs the results agree within a few ulp.
Then the public functions: fast paths on and off give the same arrays, the
entry points (which skip ``prepare``) agree with the full path, and the gradient
of ``logsumexp`` is still bitwise ``softmax``.
"""

from __future__ import annotations

import functools
import logging
import math
import mmap
import os
import subprocess
import sys

import numpy as np
import pytest

import smoothmax
from smoothmax import _fastpaths, _kernel

OUTPUT_SETS = [("lse",), ("lse", "sign"), ("q",), ("log_q",), ("lse", "q"), ("log_q", "q")]
TEMPERATURES = [1.0, 0.5, 3.0]
INF = float("inf")
NAN = float("nan")


def _inputs() -> list[tuple[str, np.ndarray, int]]:
    """(name, float64 values, axis) covering the paths and the special values."""
    rng = np.random.default_rng(1234)
    cases = []
    for shape, axis in [
        ((1,), 0),
        ((16,), 0),
        ((7, 33), 1),
        ((33, 7), 0),
        ((4, 5, 6), 1),
        ((3, 2000), 1),
        ((70_000,), 0),  # longer than a NumPy block: pairwise leaves
        ((300, 300), 0),  # outer axis, slice larger than a block: folded in pieces, rows set aside
        ((2, 40, 40), 1),
    ]:
        values = rng.standard_normal(shape) * 5
        cases.append((f"random{shape}/{axis}", values, axis))
        cases.append((f"ties{shape}/{axis}", np.round(values), axis))
    # an outer axis with rows set aside by the folds and columns split across
    # NumPy's blocks (its own Generator: the draws above stay as they were)
    values = np.random.default_rng(4321).standard_normal((37, 3000)) * 5
    cases += [("random(37, 3000)/0", values, 0), ("ties(37, 3000)/0", np.round(values), 0)]
    # exp(x - m) rounds to 1 off the maximum (m tiny), and sums too large to
    # count the ones from: the torch path falls back from its frac count
    near = np.zeros((200, 100))
    near[:, 7] = 1e-20
    cases.append(("near-ties-large", near, 1))
    cases.append(("flat-large", rng.uniform(0.0, 1e-3, 70_000), 0))
    cases.append(("dominant", np.array([0.0] + [-40.0] * 10), 0))
    cases.append(("dominant-rows", np.array([[0.0] + [-40.0] * 10, [-40.0] * 10 + [0.0]]), 1))
    cases.append(
        (
            "special-rows",
            np.array(
                [
                    [1.0, INF, INF, 0.0],
                    [-INF] * 4,
                    [1.0, NAN, 2.0, 0.0],
                    [NAN, INF, 0.0, 1.0],  # NaN beside +inf: NaN
                    [3.0, 2.0, 1.0, -INF],
                    [-INF, 5.0, -INF, 4.0],
                    [2.0, 2.0, 2.0, 2.0],
                ]
            ),
            1,
        )
    )
    special = rng.standard_normal((64, 50))
    special[3, 7] = INF
    cases.append(("one-inf-in-a-block", special, 1))
    special = rng.standard_normal((50, 64))
    special[:, 5] = -INF
    cases.append(("minus-inf-column", special, 0))
    return cases


INPUTS = _inputs()


def _same(a, b) -> bool:
    a = np.asarray(a)
    b = np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)


def _ulps_apart(a, b) -> float:
    """The largest distance of ``a`` from ``b`` in ulps of ``b`` (finite entries; inf
    where the shapes, dtypes or non-finite entries differ): for failure messages."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return math.inf
    finite = np.isfinite(b)
    if not (np.array_equal(np.isfinite(a), finite) and np.array_equal(a[~finite], b[~finite], equal_nan=True)):
        return math.inf
    if not finite.any():
        return 0.0
    spacing = np.spacing(np.abs(b[finite]).astype(b.dtype))
    return float(np.max(np.abs(a[finite] - b[finite]) / spacing))


def _within_ulps(a, b, ulps) -> bool:
    """Same shape, dtype and non-finite entries; finite entries within ``ulps``."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    finite = np.isfinite(b)
    if not (np.array_equal(np.isfinite(a), finite) and np.array_equal(a[~finite], b[~finite], equal_nan=True)):
        return False
    spacing = np.spacing(np.abs(b[finite]).astype(b.dtype))
    return bool(np.all(np.abs(a[finite] - b[finite]) <= ulps * spacing))


def _check(
    fast, generic, to_numpy, make, dtype, output_sets=OUTPUT_SETS, temperatures=TEMPERATURES, inputs=INPUTS, ulps=None
):
    """Bitwise, or where ``ulps(name, values, output)`` gives a number, within that many ulps."""
    failures = []
    for name, values, axis in inputs:
        x = make(values, dtype)
        for outputs in output_sets:
            for t in temperatures:
                got = fast(x, axis, t, outputs)
                want = generic(x, axis, t, outputs)
                for output, a, b in zip(outputs, got, want):
                    a, b = to_numpy(a), to_numpy(b)
                    allowed = ulps(name, values, output) if ulps else None
                    if not (_same(a, b) if allowed is None else _within_ulps(a, b, allowed)):
                        failures.append(f"{name} {dtype} {outputs} t={t}: {output} differs")
    assert not failures, "\n".join(failures[:20])


# --------------------------------------------------------------------------- NumPy


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_fast_path_is_bitwise_generic(dtype):
    import array_api_compat.numpy as xp

    _check(
        lambda x, axis, t, outputs: _fastpaths.numpy_kernel(xp, x, None, axis, t, outputs),
        lambda x, axis, t, outputs: _kernel.kernel(xp, x, None, axis, t, outputs),
        np.asarray,
        lambda values, dtype: values.astype(dtype),
        dtype,
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_one_row_is_bitwise_generic(dtype):
    """One small row, 1-d or a ``(1, n)`` array, takes scalar arithmetic after the
    sum (``_small_row_lse``; ``small_rows`` for ``q`` and ``log_q``): bitwise the
    generic kernel, a dominant term and non-finite maxima (the generic fix-ups)
    included."""
    import array_api_compat.numpy as xp

    rows = np.random.default_rng(5).standard_normal((5, 300)) * 5
    rows[1] = [0.0] + [-40.0] * 299
    rows[2, 7] = INF
    rows[3] = -INF
    rows[4, 3] = NAN
    for row in rows.astype(dtype):
        for x, axis in ((row, 0), (row[None, :], 1), (row[:1], 0)):
            for t in TEMPERATURES:
                for outputs in (("lse",), ("q",), ("log_q", "lse"), ("lse", "q", "log_q")):
                    got = _fastpaths.numpy_kernel(xp, x, None, axis, t, outputs)
                    want = _kernel.kernel(xp, x, None, axis, t, outputs)
                    for a, b in zip(got, want):
                        assert _same(a, b), (row[:3], x.shape, t, outputs)


def test_numpy_fast_path_takes_non_contiguous_input_through_the_generic_kernel():
    import array_api_compat.numpy as xp

    x = np.random.default_rng(0).standard_normal((40, 30)).T
    got = _fastpaths.numpy_kernel(xp, x, None, 1, 1.0, ("lse", "q"))
    want = _kernel.kernel(xp, x, None, 1, 1.0, ("lse", "q"))
    assert all(_same(a, b) for a, b in zip(got, want))


# --------------------------------------------------------------------------- PyTorch


@pytest.fixture(params=[False, True], ids=["whole-passes", "blocks"])
def in_blocks(request, monkeypatch):
    """PyTorch's large inputs along the last axis or axis 0 in whole passes
    (``_torch_exact``, ``_torch_lse``) or in blocks of slices (``_torch_blocks``,
    which only inputs of 8 MiB and more take by default: here every input above
    ``_TORCH_SMALL`` elements, so that small test inputs cover them)."""
    monkeypatch.setattr(_fastpaths, "_TORCH_BLOCKS_FROM", 0 if request.param else math.inf)
    # blocks of a few slices, so that test inputs span several
    monkeypatch.setattr(_fastpaths, "_TORCH_SLICES_BLOCK_BYTES", 1 << 15)
    monkeypatch.setattr(_fastpaths, "_TORCH_Q_BLOCK_BYTES", 1 << 14)
    # and every full-size buffer advised huge, as large inputs' are (_torch_empty)
    monkeypatch.setattr(_fastpaths, "_TORCH_HUGE_PAGES_FROM", 0)
    return request.param


def _flat_inputs(rng: np.random.Generator) -> list[tuple[str, np.ndarray, int]]:
    """Flat logits, many terms near each slice's maximum, where the bound on the
    sums' rounding cannot tell one 1 among the ``exp(d)`` from two in float32
    (``_fastpaths._torch_bound_settles``): the ones are counted. Rows and
    columns, one of each with a second tie of its maximum."""
    rows = rng.standard_normal((40, 3000)) * 0.1
    rows[7, [10, 2000]] = 1.0
    columns = rng.standard_normal((3000, 40)) * 0.1
    columns[[5, 2500], 3] = 1.0
    return [("flat-rows", rows, 1), ("flat-columns", columns, 0)]


def test_torch_flat_slices_count_their_ones(in_blocks):
    """On flat float32 slices the ones are counted: only the slices with a second
    tie take the generic kernel, not all of them (each row of (2048, 2048) at
    ``N(0, 0.1)`` did: ``softmax`` 10x ``torch.softmax``)."""
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xp

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (columns with q take the blocks on one thread only)
    try:
        _check_flat_slices(torch, xp, in_blocks)
    finally:
        torch.set_num_threads(threads)


def _check_flat_slices(torch, xp, in_blocks):
    rng = np.random.default_rng(12)
    for name, values, axis in _flat_inputs(rng):
        x = torch.from_numpy(values.astype("float32"))
        (q,) = _fastpaths.torch_kernel(xp, x, None, axis, 1.0, ("q",))
        with_ones = torch.exp(x - torch.amax(x, axis, keepdim=True)).sum(axis, keepdim=True)
        assert not _fastpaths._torch_bound_settles(torch, with_ones, x.shape[axis]), name
        handed = []

        def generic(xp, slices, *arguments, handed=handed):
            handed.append(slices.shape)
            return _kernel.kernel(xp, slices, *arguments)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_fastpaths, "_generic", generic)
            for outputs in [("q",), ("log_q",), ("lse", "q")]:
                handed.clear()
                values_fast = _fastpaths.torch_kernel(xp, x, None, axis, 1.0, outputs)
                values_generic = _kernel.kernel(xp, x, None, axis, 1.0, outputs)
                assert all(_same(a.numpy(), b.numpy()) for a, b in zip(values_fast, values_generic)), (name, outputs)
                # in blocks the one slice with two ties (a column twice: see
                # _torch_blocks), in whole passes the call
                lone = (3000, 2) if axis == 0 else (1, 3000)
                blocks = _fastpaths._torch_in_blocks(x, axis, outputs)
                assert blocks or not in_blocks or (axis == 0 and "log_q" in outputs)
                assert handed == ([lone] if blocks else [x.shape]), (name, outputs, handed)
                # without the second tie, nothing is handed over
                untied = values.copy()
                untied[np.nonzero(untied == 1.0)[0][0], np.nonzero(untied == 1.0)[1][0]] = 0.9
                handed.clear()
                _fastpaths.torch_kernel(xp, torch.from_numpy(untied.astype("float32")), None, axis, 1.0, outputs)
                assert handed == [], (name, outputs, handed)
        assert q.shape == x.shape


def _masked_inputs(rng: np.random.Generator) -> list[tuple[str, np.ndarray, int]]:
    """Logits with masks (a causal one, ``-1e30`` and ``-inf``; ``-1e30`` and ``-1e4`` fills), whose
    ``exp`` the torch fast path takes by its masked route (:func:`_fastpaths._torch_exp`),
    and rows where ``d`` meets that route's bounds: their ``exp`` subnormal (the
    route must fall back to ``torch.exp``), at ``normal_from`` and the float below it,
    at ``zero_below``. Along the last axis and axis 0."""
    causal = rng.standard_normal((300, 300)) * 3
    causal[np.triu_indices(300, 1)] = -1e30
    causal[np.triu_indices(300, 150)] = -INF  # with -inf beside the finite fill
    filled = rng.standard_normal((240, 400)) * 3
    filled[:, 300:] = -1e30  # padding (finite in float32 too)
    filled[100:, 150:200] = -1e4
    bounds = np.zeros((200, 50))
    for row, (normal_from, zero_below) in enumerate(_fastpaths._TORCH_EXP_BOUNDS.values()):
        below_normal_from = np.nextafter(np.float32(normal_from), -np.inf)  # a float32, so a float64 too
        bounds[row, 1:6] = [normal_from, below_normal_from, zero_below, -95.0, -720.0]  # d, as row maxima are 0
    bounds[2:, 1:] = -1e4  # masked rows first, so that the sample sees the mask
    bounds[40:, 1:10] = rng.standard_normal((160, 9))
    return [
        ("masked-causal", causal, 1),
        ("masked-filled", filled, 1),
        ("masked-columns", filled.T.copy(), 0),  # the padding last
        ("masked-columns-first", filled[:, ::-1].T.copy(), 0),
        ("masked-bounds", bounds, 1),
    ]


@pytest.mark.parametrize("piece_bytes", [None, 4096], ids=["one-piece", "pieces"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_masked_exp_is_torch_exp_bitwise(dtype, piece_bytes, monkeypatch):
    """:func:`_fastpaths._torch_exp`'s masked route gives ``torch.exp`` bit for bit,
    in place and into a buffer, on masked shifts, on shifts between its bounds (where it
    falls back: in pieces, only the last piece, which holds them), at them, and with
    NaN; and its bounds hold for ``torch.exp``."""
    torch = pytest.importorskip("torch")
    if piece_bytes is not None:
        monkeypatch.setattr(_fastpaths, "_TORCH_EXP_PIECE_BYTES", piece_bytes)
    torch_dtype = getattr(torch, dtype)
    normal_from, zero_below = _fastpaths._TORCH_EXP_BOUNDS[torch.empty((), dtype=torch_dtype).element_size()]
    below_normal_from = float(np.nextafter(getattr(np, dtype)(normal_from), -np.inf))
    tiny = torch.finfo(torch_dtype).tiny
    assert torch.exp(torch.tensor(normal_from, dtype=torch_dtype)).item() >= tiny
    below = -np.geomspace(-zero_below, torch.finfo(torch_dtype).max / 2, 100_000)
    below = torch.tensor(np.concatenate([below, [zero_below, -INF]]), dtype=torch_dtype)
    assert torch.equal(torch.exp(below), torch.zeros_like(below))
    rng = np.random.default_rng(11)
    normal = -rng.exponential(5.0, 5000)
    between = -95.0 if dtype == "float32" else -720.0  # exp subnormal
    just_below = float(np.nextafter(getattr(np, dtype)(zero_below), -np.inf))
    # name: (shifts, whether the masked route computes them; else torch.exp does)
    cases = {
        "normal": (normal, True),
        "-inf": (np.where(rng.random(5000) < 0.5, -INF, normal), True),
        "finfo.min": (np.where(rng.random(5000) < 0.5, float(torch.finfo(torch_dtype).min), normal), True),
        "edges": (np.concatenate([normal, [normal_from, just_below, -1e4, -INF]]), True),
        "below normal_from": (np.concatenate([normal, [below_normal_from, -1e4]]), False),
        "at zero_below": (np.concatenate([normal, [zero_below, -1e4]]), False),
        "between": (np.concatenate([normal, [-1e4, between]]), False),
        "nan": (np.concatenate([normal, [-1e4, NAN]]), False),
    }

    class Spy:
        """torch, counting its ``exp`` calls (the route calls ``Tensor.exp_``)."""

        calls = 0

        def __getattr__(self, name):
            return getattr(torch, name)

        def exp(self, *args, **kwargs):
            Spy.calls += 1
            return torch.exp(*args, **kwargs)

    for name, (values, by_route) in cases.items():
        d = torch.tensor(values, dtype=torch_dtype)
        want = torch.exp(d)
        in_place = d.clone()
        Spy.calls = 0
        for got in (
            _fastpaths._torch_exp(Spy(), d, None, True),
            _fastpaths._torch_exp(Spy(), d.clone(), torch.empty_like(d), True),
            _fastpaths._torch_exp(Spy(), in_place, in_place, True),
        ):
            assert _same(got, want), name
        assert Spy.calls == (0 if by_route else 3), name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_fast_path_is_bitwise_generic(dtype, in_blocks, monkeypatch):
    """Everything but ``lse`` alone at ``t = 1`` on large inputs (see below)."""
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xp

    def fast(x, axis, t, outputs):
        if outputs == ("lse",) and (
            (t == 1.0 and x.numel() > _fastpaths._TORCH_SMALL) or _fastpaths._torch_small_lse(x, axis, t) is not None
        ):
            # the exact path the large lse takes on slices where log(S) is not
            # enough, and the one the small lse would take without NumPy
            return _fastpaths._torch_exact(torch, xp, x, axis, t, outputs)
        return _fastpaths.torch_kernel(xp, x, None, axis, t, outputs)

    rng = np.random.default_rng(5)
    # above _TORCH_SMALL with rows that fit one or several row blocks (bitwise
    # with one thread: see test_torch_blocks_with_threads)
    rows = [(f"rows{shape}", rng.standard_normal(shape) * 3, 1) for shape in [(40, 1000), (700, 30), (5, 40_000)]]
    # row blocks with the slices they hand to the generic kernel: +inf, all -inf,
    # NaN, several ties of the maximum, a dominant term; in the first block and the last
    special = rng.standard_normal((600, 100)) * 3
    for row in (3, 597):
        special[row, 5] = INF
        special[row + 1] = -INF
        special[row + 2, 7] = NAN
    special[10, [4, 9, 40]] = 20.0
    special[11] = [0.0] + [-40.0] * 99
    special[12, 1:4] = INF
    rows.append(("special-rows-large", special, 1))
    # rows longer than a row block: the pivot found a piece at a time (float32
    # pieces of 4096 entries, float64 2048): maximum in the tail, ties across
    # pieces (the first is the pivot), many ties, two in one float32 piece; and
    # one long 1-d row
    long_rows = rng.standard_normal((4, 300_000)) * 3
    long_rows[0, -3] = 40.0
    long_rows[1, [5, 200_000, 290_000]] = 40.0
    long_rows[2] = np.round(long_rows[2])
    long_rows[3, [4100, 4200]] = 40.0
    rows += [("long-rows", long_rows, 1), ("long-row-1d", long_rows[1].copy(), 0)]
    rows += _flat_inputs(rng)
    masked = _masked_inputs(rng)
    rows += masked
    # every input looked at for masked logits (_torch_looks_masked), not only large
    # ones, and their exp taken in pieces of 4096 float32 (2048 float64) entries
    monkeypatch.setattr(_fastpaths, "_TORCH_MASKED_FROM", 0)
    monkeypatch.setattr(_fastpaths, "_TORCH_EXP_PIECE_BYTES", 1 << 14)
    for name, values, _ in masked:
        assert _fastpaths._torch_looks_masked(torch, torch.from_numpy(values.astype(dtype))), name
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check(
            fast,
            lambda x, axis, t, outputs: _kernel.kernel(xp, x, None, axis, t, outputs),
            lambda value: value.numpy(),
            lambda values, dtype: torch.from_numpy(values.astype(dtype)),
            dtype,
            inputs=INPUTS + rows,
        )
    finally:
        torch.set_num_threads(threads)


def _one_slice_layout(n: int, case: int) -> tuple[tuple[int, ...], int]:
    """``(shape, axis)`` of a tensor that is one slice of ``n``: four layouts in turn."""
    return [((n,), 0), ((1, n), 1), ((n, 1), 0), ((1, n, 1), 1)][case % 4]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_one_slice_takes_numpy_steps_bitwise(dtype):
    """A small tensor that is one slice takes :func:`_torch_one_slice` (NumPy for
    the library-independent steps, PyTorch's ``exp``, sum and ``log1p``): bitwise
    the generic kernel on PyTorch for every output but ``log_q`` (which keeps the
    torch path), ties and dominant terms included, and the gradient of
    ``logsumexp`` under ``torch.func`` (the generic kernel) bitwise ``softmax``."""
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xp
    from torch import func

    rng = np.random.default_rng(17)
    combos = [("q",), ("lse", "q"), ("lse", "sign"), ("lse", "sign", "q"), ("sign", "q")]
    taken = 0
    for case in range(240):
        n = int(rng.integers(1, 3000))
        shape, axis = _one_slice_layout(n, case)
        values = rng.standard_normal(n) * rng.choice([0.1, 1.0, 3.0, 10.0, 40.0])
        if case % 5 == 0:
            values[rng.integers(n)] = values.max()  # a second tie
        if case % 7 == 0:
            values[0] = 60.0  # one dominant term
        x = torch.from_numpy(values.astype(dtype)).reshape(shape)
        t = TEMPERATURES[case % len(TEMPERATURES)]
        outputs = combos[case % len(combos)]
        if t <= 0:
            continue
        got = _fastpaths.torch_kernel(xp, x, None, axis, t, outputs)
        taken += _fastpaths._torch_one_slice(torch, x, axis, t, outputs) is not None
        for value, expected in zip(got, _kernel.kernel(xp, x, None, axis, t, outputs)):
            assert value.shape == expected.shape and value.dtype == expected.dtype
            assert torch.equal(value, expected), (n, shape, t, outputs)
        if case % 8 == 0:
            row = x.reshape(-1)
            assert torch.equal(func.grad(lambda v: smoothmax.logsumexp(v))(row), smoothmax.softmax(row))
    assert taken >= 150
    # not taken: log_q (the torch path), non-finite maxima, transposed memory, negative-bit views, subclasses
    assert _fastpaths._torch_one_slice(torch, torch.ones(4, dtype=getattr(torch, dtype)), 0, 1.0, ("log_q", "lse")) is None
    for special in ([1.0, INF, 0.0], [-INF] * 3, [NAN, 0.0, 1.0]):
        x = torch.tensor(special, dtype=getattr(torch, dtype))
        assert _fastpaths._torch_one_slice(torch, x, 0, 1.0, ("q",)) is None
        assert _same(smoothmax.softmax(x).numpy(), _kernel.kernel(xp, x, None, 0, 1.0, ("q",))[0].numpy())
    column = torch.arange(8, dtype=getattr(torch, dtype)).reshape(2, 4)[:, 1]
    assert _fastpaths._torch_one_slice(torch, column, 0, 1.0, ("q",)) is None
    assert _fastpaths._torch_one_slice(torch, torch._neg_view(torch.ones(4)), 0, 1.0, ("q",)) is None

    class Logged(torch.Tensor):  # a subclass: its __torch_function__ must see the ops
        pass

    assert _fastpaths._torch_one_slice(torch, torch.ones(4).as_subclass(Logged), 0, 1.0, ("q",)) is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_eager_one_slice_is_the_refined_generic_kernel_bitwise(dtype):
    """:func:`eager_torch_one_slice` (the eager Functions' route on one small
    slice) is the generic kernel followed by the refinement where one term
    dominates, bit for bit, with ``lse`` and ``sign`` made without ``axis``
    where asked: log-probabilities (``lse`` ~ 0, refined), dominant terms and
    plain rows, every output combination it takes."""
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xp

    rng = np.random.default_rng(23)
    combos = [("lse", "q"), ("q",), ("lse", "sign"), ("lse", "sign", "q")]
    changed = 0
    for case in range(160):
        n = int(rng.integers(2, 2000))
        shape, axis = _one_slice_layout(n, case)
        values = rng.standard_normal(n) * rng.choice([0.3, 3.0, 10.0])
        if case % 3 == 0:
            values[rng.integers(n)] = 40.0  # one dominant term
        if case % 2 == 0:
            values = values - np.logaddexp.reduce(values)  # log-probabilities: lse ~ 0
        x = torch.from_numpy(values.astype(dtype)).reshape(shape)
        t = [1.0, 0.5, 2.0][case % 3]
        outputs = combos[case % len(combos)]
        keepdims = case % 5 != 0
        got = _fastpaths.eager_torch_one_slice(xp, x, axis, t, outputs, keepdims)
        expected = _fastpaths.refined(_kernel.kernel, xp, x, None, axis, t, outputs)
        for name, value, want in zip(outputs, got, expected):
            if not keepdims and name in ("lse", "sign"):
                want = want.squeeze(axis)
            assert value.shape == want.shape and value.dtype == want.dtype
            assert torch.equal(value, want), (case, n, shape, t, outputs, name)
        plain = _kernel.kernel(xp, x, None, axis, t, outputs)
        changed += any(not torch.equal(a, b) for a, b in zip(expected, plain))  # the refinement did something
    assert changed >= 5
    # lse alone and log_q keep eager_torch_kernel's routes (NumPy's kernel, _torch_exact)
    x = torch.from_numpy(rng.standard_normal(16).astype(dtype))
    assert _fastpaths.eager_torch_one_slice(xp, x, 0, 1.0, ("lse",), True) is None
    assert _fastpaths.eager_torch_one_slice(xp, x, 0, 1.0, ("log_q",), True) is None


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_small_lse_is_numpys(dtype):
    """``lse`` alone of a small tensor along its last axis is NumPy's fast path on
    the tensor's memory: bitwise the generic kernel on NumPy, within 2 ulp of it on
    PyTorch (the two libraries' ``exp`` differ in the last bit; measured 2.0 on
    ``[0] + [-40] * 10`` at ``t = 0.5``), special values the same."""
    torch = pytest.importorskip("torch")
    import array_api_compat.numpy as np_xp
    import array_api_compat.torch as xp

    rng = np.random.default_rng(11)
    mid = rng.standard_normal((60, 1000)) * 3  # above _TORCH_SMALL, up to _TORCH_NUMPY_LSE_ELEMENTS
    mid[7] = [0.0] + [-40.0] * 999
    taken = mid_taken = 0
    for name, values, axis in INPUTS + [("mid-size", mid, 1), ("one-long-row", mid.reshape(-1), 0)]:
        x = torch.from_numpy(values.astype(dtype))
        for t in TEMPERATURES:
            (got,) = _fastpaths.torch_kernel(xp, x, None, axis, t, ("lse",))
            if _fastpaths._torch_small_lse(x, axis, t) is None:
                continue
            taken += 1
            mid_taken += name in ("mid-size", "one-long-row")
            (numpy_generic,) = _kernel.kernel(np_xp, x.numpy(), None, axis, t, ("lse",))
            (torch_generic,) = _kernel.kernel(xp, x, None, axis, t, ("lse",))
            assert isinstance(got, torch.Tensor) and got.dtype == x.dtype
            assert _same(got.numpy(), numpy_generic), (name, t)
            assert _within_ulps(got.numpy(), torch_generic.numpy(), 2), (name, t)
    assert taken >= 10 * len(TEMPERATURES) and mid_taken == 2 * len(TEMPERATURES)
    # not taken: outer axes, gradients, transposed (non-contiguous) memory, negative-bit views
    x = torch.arange(12, dtype=getattr(torch, dtype)).reshape(3, 4)
    assert _fastpaths._torch_small_lse(x, 0, 1.0) is None
    assert _fastpaths._torch_small_lse(x.T, 1, 1.0) is None
    assert smoothmax.logsumexp(x.clone().requires_grad_(True), axis=1).grad_fn is not None
    negated = torch._neg_view(x)
    assert _fastpaths._torch_small_lse(negated, 1, 1.0) is None
    # (the torch kernel's exp there, NumPy's on -x)
    assert _within_ulps(smoothmax.logsumexp(negated, axis=1).numpy(), smoothmax.logsumexp(-x, axis=1).numpy(), 2)
    class Logged(torch.Tensor):  # a subclass: its __torch_function__ must see the ops
        pass

    assert _fastpaths._torch_small_lse(x.as_subclass(Logged), 1, 1.0) is None
    # taken under inference mode and no_grad, with the same values
    expected = smoothmax.logsumexp(x, axis=1)
    with torch.inference_mode():
        assert torch.equal(smoothmax.logsumexp(x, axis=1), expected)
    with torch.no_grad():
        assert torch.equal(smoothmax.logsumexp(torch.nn.Parameter(x), axis=1), expected)


def test_torch_blocks_take_inputs_from_8_mib_along_the_last_axis_or_axis_0():
    torch = pytest.importorskip("torch")

    def takes(shape, axis=-1, outputs=("q",), dtype=torch.float32):
        x = torch.empty(shape, dtype=dtype)
        return _fastpaths._torch_in_blocks(x, axis % x.ndim, outputs)

    assert takes((2048, 1024)) and takes((1024, 1024), dtype=torch.float64) and takes((32, 8, 256, 256))
    assert takes((8, 262_144)) and takes((8192, 256), outputs=("lse",))
    assert takes((64, 32, 1024), axis=0, outputs=("lse",))  # columns
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert takes((2048, 1024), axis=0)
        torch.set_num_threads(2)
        assert not takes((2048, 1024), axis=0) and takes((2048, 1024), axis=0, outputs=("lse", "sign"))
    finally:
        torch.set_num_threads(threads)
    assert not takes((2047, 1024))  # under 8 MiB: whole passes
    assert not takes((8, 262_145))  # rows over 1 MiB
    assert not takes((16385, 128), axis=0)  # columns over 1/16 MiB
    assert not takes((2048, 1024), axis=0, outputs=("log_q",))  # log_q along axis 0
    assert not takes((32, 64, 1024), axis=1)  # another axis
    assert not takes((2048, 1024), outputs=("log_q", "q"))  # two full-size outputs


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_blocks_with_threads(dtype, monkeypatch):
    """With several threads the block-by-block sums of the rows may round
    differently from one ``torch.sum`` (PyTorch splits the work by the shape):
    ``lse`` then stays within 1 ulp, ``q`` and ``log_q`` within 2 ulp of the
    generic kernel, and the gradient of ``logsumexp`` is still bitwise ``softmax``."""
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xp

    monkeypatch.setattr(_fastpaths, "_TORCH_BLOCKS_FROM", 0)
    rng = np.random.default_rng(6)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    try:
        for shape in [(5, 30_000), (40, 1000), (3, 20_000), (2, 120_000)]:
            x = torch.from_numpy((rng.standard_normal(shape) * 3).astype(dtype))
            for outputs, bounds in ((("lse", "q"), (1, 2)), (("log_q", "lse"), (2, 1))):
                assert _fastpaths._torch_in_blocks(x, 1, outputs)
                got = _fastpaths.torch_kernel(xp, x, None, 1, 1.0, outputs)
                want = _kernel.kernel(xp, x, None, 1, 1.0, outputs)
                for value, expected, ulps in zip(got, want, bounds):
                    spacing = torch.from_numpy(np.spacing(np.abs(expected.numpy())))
                    assert bool(((value - expected).abs() <= ulps * spacing).all()), (shape, outputs)
            leaf = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(smoothmax.logsumexp(leaf, axis=1).sum(), leaf)
            assert torch.equal(grad, smoothmax.softmax(x, axis=1))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_large_lse_from_the_full_sum(dtype, in_blocks):
    """``lse`` alone at ``t = 1`` above ``_TORCH_SMALL`` elements, in whole passes
    or in row blocks, is ``m + log(S)``
    (the pivot's 1 inside ``S``) on slices with ``S >= 4``: within
    one ulp of the generic ``m + log1p(rest)``, not bitwise; the other slices
    (dominant terms near 0, near-ties, special values) get the generic kernel's
    value, bitwise, whether a few rows are copied out or the whole call goes on."""
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xp

    rng = np.random.default_rng(7)
    mixed = rng.standard_normal((400, 100)) * 3 + 20
    mixed[::50] = [0.0] + [-40.0] * 99  # a few dominant rows near 0 among large maxima
    mixed[::7, 3] = 30.0  # and rows that sum below 4 with |m| >= 8 (exact there too)
    special = rng.standard_normal((400, 100)) * 3 + 50  # only the non-finite rows fail
    special[3, 5], special[9], special[11, 7] = INF, -INF, NAN  # few non-finite rows
    cases = list(INPUTS) + [
        ("wide", rng.standard_normal((40, 5000)) * 3 + 50, 1),
        ("tall", rng.standard_normal((5000, 40)) * 3 - 50, 0),
        ("long", rng.standard_normal(1_000_000) * 10, 0),
        ("few-dominant", mixed, 1),
        ("few-dominant-outer", np.ascontiguousarray(mixed.T), 0),
        ("few-special", special, 1),
        ("few-special-outer", np.ascontiguousarray(special.T), 0),
    ]
    # rows longer than a row block (1 MiB), one of nine dominated: copied out
    long_rows = rng.standard_normal((9, 300_000)) * 3 + 20
    long_rows[4] = -40.0
    long_rows[4, 7] = 0.0
    cases.append(("long-rows-one-dominant", long_rows, 1))
    with np.errstate(divide="ignore"):  # some probabilities underflow to 0: -inf entries
        cases.append(("log-probabilities", np.log(rng.dirichlet(np.full(200, 0.05), 300)), 1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bitwise sums of the copied-out slices
    try:
        for name, values, axis in cases:
            x = torch.from_numpy(values.astype(dtype))
            if x.numel() <= _fastpaths._TORCH_SMALL or _fastpaths._torch_small_lse(x, axis, 1.0) is not None:
                continue  # (NumPy's kernel: test_torch_small_lse_is_numpys)
            (got,) = _fastpaths.torch_kernel(xp, x, None, axis, 1.0, ("lse",))
            (want,) = _kernel.kernel(xp, x, None, axis, 1.0, ("lse",))
            maximum = torch.amax(x, axis, keepdim=True)
            # one ulp of the result; where m + log(S) cancels to near 0 (log-probabilities)
            # each formula is within an ulp of its log term from the exact value: two apart
            finite = np.isfinite(want.numpy())
            result, log_term = np.abs(want.numpy()[finite]), np.abs((want - maximum).numpy()[finite])
            tolerance = np.where(result >= log_term, np.spacing(result), 2 * np.spacing(log_term))
            assert np.all(np.abs(got.numpy()[finite] - want.numpy()[finite]) <= tolerance), name
            assert _same(got.numpy()[~finite], want.numpy()[~finite]), name
            total = torch.exp(x - maximum).sum(axis, keepdim=True)
            generic = ~(total >= 4)
            assert _same(got[generic].numpy(), want[generic].numpy()), name
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("dtype, small, tolerance", [("float32", -5.5, 1.0), ("float64", -27.0, 1.5)])
def test_torch_large_lse_leaves_the_pivot_out_beside_many_small_terms(dtype, small, tolerance, in_blocks, monkeypatch):
    """``[10] + [small] * 19999`` (``S`` just above 1): added to the pivot's 1 the
    small terms round at its scale, 1.36 ulp of the result in float32 and 2.0 in
    float64 when ``m + log(S)`` was taken wherever ``|m| >= 8``; the contract's
    1 and 1.5 ulp against the exact value, in whole passes and in blocks."""
    torch = pytest.importorskip("torch")
    mpmath = pytest.importorskip("mpmath")
    import array_api_compat.torch as xp

    monkeypatch.setattr(_fastpaths, "_TORCH_NUMPY_LSE_ELEMENTS", 0)  # PyTorch's own path, not NumPy's
    row = np.full(20_000, small, dtype=dtype)
    row[0] = 10.0
    (got,) = _fastpaths.torch_kernel(xp, torch.from_numpy(np.tile(row, (3, 1))), None, 1, 1.0, ("lse",))
    mpmath.mp.dps = 50
    exact = mpmath.mpf(10) + mpmath.log1p(19_999 * mpmath.exp(mpmath.mpf(small) - 10))
    spacing = float(np.spacing(np.array(float(exact), dtype=dtype)))
    errors = [float(abs(mpmath.mpf(float(value)) - exact)) / spacing for value in got.numpy().ravel()]
    assert max(errors) <= tolerance, errors


def test_torch_long_float32_rows_count_their_ones():
    """Rows longer than 2^22 float32 elements, where the frac path's rounding
    bound cannot decide, count the entries equal to 1 exactly: log_q bitwise the
    generic kernel's, and a near-tie (two ones) still falls back."""
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xp

    values = np.random.default_rng(8).standard_normal((1 << 22) + 3) * 3
    near_tie = values.copy()
    near_tie[5] = near_tie.max() - 1e-9
    for row in (values, near_tie):
        x = torch.from_numpy(row.astype("float32"))
        for outputs in (("log_q",), ("lse", "log_q")):
            got = _fastpaths.torch_kernel(xp, x, None, 0, 1.0, outputs)
            want = _kernel.kernel(xp, x, None, 0, 1.0, outputs)
            assert all(_same(a.numpy(), b.numpy()) for a, b in zip(got, want)), outputs


def test_torch_fast_path_does_not_modify_its_input():
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xp

    x = torch.randn(8, 9, dtype=torch.float64)
    before = x.clone()
    for outputs in OUTPUT_SETS:
        _fastpaths.torch_kernel(xp, x, None, 1, 1.0, outputs)
    assert torch.equal(x, before)


def test_torch_full_size_buffers_are_advised_huge_from_32_mib(monkeypatch):
    torch = pytest.importorskip("torch")
    advised = []
    def madvise(start, length, advice):
        advised.append((start, length, advice))
        return 0

    monkeypatch.setattr(_fastpaths, "_madvise", lambda: madvise)
    small = _fastpaths._torch_empty(torch, torch.empty((8191, 1024), dtype=torch.float32))
    assert not advised and small.shape == (8191, 1024) and small.dtype == torch.float32
    assert _fastpaths._torch_out(torch, small) is None  # below: the operation allocates
    large = _fastpaths._torch_empty(torch, torch.empty((4, 1024, 1024), dtype=torch.float64))
    assert large.shape == (4, 1024, 1024) and large.dtype == torch.float64 and large.is_contiguous()
    ((start, length, advice),) = advised
    page = mmap.PAGESIZE
    # whole pages within the buffer, all of them but the partial ones at its ends
    assert advice == mmap.MADV_HUGEPAGE and start % page == 0 and length % page == 0
    assert large.data_ptr() <= start < large.data_ptr() + page
    assert large.data_ptr() + (32 << 20) - page < start + length <= large.data_ptr() + (32 << 20)


def test_torch_huge_page_advice_is_taken_where_offered():
    """On Linux with transparent huge pages in ``madvise`` mode the kernel takes the
    advice (whether it then finds free huge pages is its business)."""
    torch = pytest.importorskip("torch")
    if _fastpaths._madvise() is None:
        pytest.skip("no transparent huge pages in madvise mode here")
    buffer = torch.empty(1 << 20, dtype=torch.float64)
    assert _fastpaths._advise_huge_pages(buffer.data_ptr(), 8 << 20)


def test_no_huge_page_advice_before_linux_4_6(monkeypatch):
    """As NumPy: older kernels could stall on defragmenting memory for huge pages."""
    import platform

    monkeypatch.setattr(platform, "release", lambda: "4.4.0-210-generic")
    assert _fastpaths._madvise.__wrapped__() is None


@pytest.mark.parametrize("enabled", [True, False])
def test_torch_results_stay_on_the_input_device_whatever_the_default(enabled, monkeypatch):
    """``torch.set_default_device`` (e.g. "cuda" in a training script) must not
    move the buffers and constants made for CPU inputs: every path's, the blocks
    and long rows taken here by small inputs."""
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(_fastpaths, "ENABLED", enabled)
    monkeypatch.setattr(_fastpaths, "_TORCH_BLOCKS_FROM", 0)
    monkeypatch.setattr(_fastpaths, "_TORCH_HUGE_PAGES_FROM", 0)
    monkeypatch.setattr(_fastpaths, "_TORCH_BLOCK_BYTES", 1 << 12)  # rows of 2000 are long
    _fastpaths._TORCH_ONES.clear()  # (made anew under the default device below)
    generator = torch.Generator().manual_seed(9)
    inputs = [torch.randn(shape, generator=generator, dtype=dtype) for shape in [(16,), (40, 300), (3, 2000), (20_000,)]
              for dtype in (torch.float32, torch.float64)]
    default = torch.get_default_device()
    torch.set_default_device("meta")
    try:
        for x in inputs:
            leaf = x.clone().requires_grad_(True)
            results = [
                smoothmax.logsumexp(x, axis=-1),
                smoothmax.logsumexp(x, axis=0, temperature=0.5),
                smoothmax.logsumexp(x, axis=-1, b=-torch.ones(x.shape, device="cpu", dtype=x.dtype)),
                smoothmax.softmax(x, axis=-1),
                smoothmax.softmax(x, axis=0, temperature=3.0),
                smoothmax.log_softmax(x, axis=-1),
                torch.autograd.grad(smoothmax.logsumexp(leaf, axis=-1).sum(), leaf)[0],
                torch.autograd.grad(smoothmax.softmax(leaf, axis=-1), leaf, torch.ones_like(x))[0],
            ]
            assert all(result.device.type == "cpu" for result in results), tuple(x.shape)
    finally:
        torch.set_default_device(default)
        _fastpaths._TORCH_ONES.clear()




# --------------------------------------------------------------------------- JAX


def _jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    return jax, jnp


#: Inputs reduced along an outer axis (one followed by axes longer than 1).
OUTER_AXIS_INPUTS = frozenset(name for name, values, axis in INPUTS if math.prod(values.shape[axis + 1 :]) > 1)


def _jax_ulps(name, values, output, large=False):
    """The JAX fast path adds the ties of the maximum after the sum (the generic
    kernel sums them in order), and sums an outer axis with XLA's reduction
    where the generic kernel adds pairwise (``_kernel.pairwise_sum``): on the
    random and tied inputs and along outer axes the sums of tens to thousands
    of terms then agree to a few ulp (measured: lse 1, q 5, log_q 5; accuracy
    against the exact values is the conformance suite's). Other special
    values, the dominant term and ``sign``: bitwise. Above ``_JAX_SMALL_BYTES``
    (``large``) every slice whose sum with the ties is at least 2 takes that
    sum less 1 as its sum without the pivot, again a few ulp from the generic
    kernel's: only the dominant term (a sum below 2, summed without the pivot)
    and ``sign`` stay bitwise there."""
    random_rows = name.startswith(("random", "ties")) or (large and not name.startswith("dominant"))
    if output == "sign" or not (random_rows or name in OUTER_AXIS_INPUTS):
        return None
    return 2 if output == "lse" else 8


#: Both JAX paths: in one piece (arrays up to 2 MiB, all of INPUTS) and the
#: large-array path (sum with the ties, lax.cond branches), the latter with
#: ``exp(d)`` computed once for the sums and ``q`` as the layout decides
#: (``_fastpaths._jax_exp_once``), on every layout and on none, and as GPUs
#: take it (both sums in one pass, no float64 total), here on the CPU.
JAX_PATHS = pytest.mark.parametrize(
    "one_piece_bytes, sums_in_one_pass, exp_once",
    [(_fastpaths._JAX_SMALL_BYTES, False, None), (0, False, None), (0, False, True), (0, False, False), (0, True, None)],
    ids=["one-piece", "large", "large-exp-once", "large-exp-twice", "large-one-pass"],
)


@functools.lru_cache(maxsize=None)
def _jax_jitted(kernel, key, outputs):
    """``kernel(jnp, x, None, axis, t, outputs)`` under ``jit`` with ``axis`` and
    ``t`` static, made once per ``key``: jit then compiles each shape, axis and
    temperature once for every test that asks for the same key."""
    jax, jnp = _jax()
    return jax.jit(lambda x, axis, t: kernel(jnp, x, None, axis, t, outputs), static_argnums=(1, 2))


#: One input of each layout (one slice, rows, columns, a middle axis) and the
#: special values: :func:`test_jax_fast_path_matches_generic_under_jit` runs
#: these at ``t = 3`` too.
JAX_TEMPERATURE_INPUTS = frozenset(
    ("dominant", "ties(7, 33)/1", "random(33, 7)/0", "random(2, 40, 40)/1", "special-rows", "one-inf-in-a-block",
     "minus-inf-column", "random(3, 2000)/1")
)


@JAX_PATHS
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_fast_path_matches_generic_under_jit(dtype, one_piece_bytes, sums_in_one_pass, exp_once, monkeypatch):
    """Under ``jit`` the two are different XLA programs, and XLA fuses
    ``(x - m) / t - log_sum`` differently in each: ``log_q`` at ``t != 1`` may
    differ by one ulp there. Everything else is bitwise, except as
    :func:`_jax_ulps` says."""
    jax, jnp = _jax()
    monkeypatch.setattr(_fastpaths, "_JAX_SMALL_BYTES", one_piece_bytes)
    # the large path's sums as GPUs take them (both sums in one pass), here on the CPU too
    monkeypatch.setattr(_fastpaths, "_JAX_SUMS_IN_ONE_PASS", sums_in_one_pass)
    monkeypatch.setattr(_fastpaths, "_JAX_EXP_ONCE", exp_once)
    outputs = ("lse", "sign", "log_q", "q")
    # one program per axis and temperature, which jit keeps for each shape (the
    # random and tied inputs share theirs): the fast one traced anew for this
    # path, the generic one shared by both (compile time is this test's cost)
    fast = _jax_jitted(_fastpaths.jax_kernel, ("fast", one_piece_bytes, sums_in_one_pass, exp_once), outputs)
    generic = _jax_jitted(_kernel.kernel, ("generic",), outputs)
    failures = []
    for name, values, axis in INPUTS:
        x = jnp.asarray(values.astype(dtype))
        # t only scales d = (x - m) / t, the same code on every layout and dtype:
        # t = 3 on one input of each layout, in float64 (suite time: each is two programs)
        temperatures = (1.0, 3.0) if dtype == "float64" and name in JAX_TEMPERATURE_INPUTS else (1.0,)
        for t in temperatures:
            for output, a, b in zip(outputs, fast(x, axis, t), generic(x, axis, t)):
                allowed = _jax_ulps(name, values, output, large=one_piece_bytes == 0)
                if _same(a, b) or (allowed is not None and _within_ulps(a, b, allowed)):
                    continue
                if output == "log_q" and t != 1.0:
                    a, b = np.asarray(a), np.asarray(b)
                    finite = np.isfinite(b)
                    if np.array_equal(np.isfinite(a), finite) and np.array_equal(a[~finite], b[~finite], equal_nan=True):
                        np.testing.assert_array_max_ulp(a[finite], b[finite], maxulp=1)
                        continue
                failures.append(f"{name} {dtype} t={t}: {output} differs ({_ulps_apart(a, b):.3g} ulp)")
    assert not failures, "\n".join(failures[:20])


@JAX_PATHS
def test_jax_fast_path_under_vmap(one_piece_bytes, sums_in_one_pass, exp_once, monkeypatch):
    jax, jnp = _jax()
    monkeypatch.setattr(_fastpaths, "_JAX_SMALL_BYTES", one_piece_bytes)
    monkeypatch.setattr(_fastpaths, "_JAX_SUMS_IN_ONE_PASS", sums_in_one_pass)
    monkeypatch.setattr(_fastpaths, "_JAX_EXP_ONCE", exp_once)
    x = jnp.asarray(np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 0.0], [-INF, -INF, -INF]]))
    fast = jax.vmap(lambda v: _fastpaths.jax_kernel(jnp, v, None, 0, 1.0, ("lse", "q")))(x)
    generic = jax.vmap(lambda v: _kernel.kernel(jnp, v, None, 0, 1.0, ("lse", "q")))(x)
    for a, b in zip(fast, generic):
        assert _same(a, b)


def test_jax_public_functions_run_one_compiled_program(caplog):
    """Eager calls reach the kernel (and the log-domain primitives) through one
    ``jit``: one compiled program per shape, not dozens of operations each
    compiled and dispatched on its own (5 ms a call at 16 elements measured
    op by op, 0.1 ms compiled). The custom JVP survives the jit: the gradient
    is ``softmax``, bitwise, and a second call of the same shape compiles nothing."""
    jax, jnp = _jax()
    x, below, other = (jnp.asarray(np.random.default_rng(3).standard_normal((3, 5)) - shift) for shift in (0, 1, 2))
    calls = [
        lambda v: smoothmax.logsumexp(v, axis=1, keepdims=True),
        lambda v: smoothmax.softmax(v, axis=1),
        lambda v: smoothmax.log_softmax(v, axis=0, temperature=2.0),
        lambda v: smoothmax.logsubexp(v, below),
        lambda v: smoothmax.logmeanexp(v, axis=1, keepdims=True),
        lambda v: smoothmax.log_matmul_exp(v, v.T),
        lambda v: smoothmax.logcumsumexp(v, axis=1),
    ]
    # beside the program only layout (broadcasts of the arguments, v.T above), and on
    # jax 0.11 an 'empty' f64[0], a zero-size array, no computation (seen beside
    # logsubexp's jit on an H200, on every trace in this test, on the first alone in a
    # script, whose stack was array-api-compat's namespace lookup: jnp.empty(0))
    layout = {"jit", "broadcast_in_dim", "reshape", "transpose", "empty"}
    for index, call in enumerate(calls):
        names = [equation.primitive.name for equation in jax.make_jaxpr(call)(x).jaxpr.eqns]
        assert names.count("jit") == 1 and set(names) <= layout, (index, names)
    gradient = jax.grad(lambda v: smoothmax.logsumexp(v, axis=1).sum())(x)
    assert _same(gradient, smoothmax.softmax(x, axis=1))
    smoothmax.logsumexp(x, axis=1)
    caplog.clear()
    with jax.log_compiles(), caplog.at_level(logging.WARNING, logger="jax"):
        smoothmax.logsumexp(other, axis=1)
    assert not [record for record in caplog.records if "Compiling" in record.getMessage()], caplog.records


@pytest.mark.parametrize("sums_in_one_pass", [False, True])
def test_jax_large_path_under_vmap_keeps_its_conds(sums_in_one_pass, monkeypatch):
    """Under ``vmap`` the large-array path's ``lax.cond`` predicates are taken
    over the whole batch: the conds stay conds (a batched predicate would make
    selects computing every branch, 16x ``jax.nn`` measured), and the batched
    results are the unbatched ones, with the rows that need each branch in
    different batch members (one dominant term; a ``+inf``). With the sums in
    one pass (GPUs) only the ``+inf`` branch's cond is left."""
    jax, jnp = _jax()
    monkeypatch.setattr(_fastpaths, "_JAX_SMALL_BYTES", 0)
    monkeypatch.setattr(_fastpaths, "_JAX_SUMS_IN_ONE_PASS", sums_in_one_pass)
    rows = np.array([[0.0] + [-40.0] * 5, [1.0, 2.0, 3.0, 3.0, 0.5, -1.0], [1.0, INF, INF, 0.0, 2.0, 3.0]])
    batch = jnp.asarray(np.stack([rows[[0, 1]], rows[[1, 1]], rows[[1, 2]]]))

    def kernel(v):
        return _fastpaths.jax_kernel(jnp, v, None, 1, 1.0, ("lse", "q", "log_q"))

    program = str(jax.make_jaxpr(jax.vmap(kernel))(batch))
    conds = program.count("cond[")
    assert (conds == 1 if sums_in_one_pass else conds >= 2) and "select_n" not in program.split("cond[", 1)[0][-200:]
    for batched in (jax.vmap(kernel)(batch), jax.jit(jax.vmap(kernel))(batch)):
        for index in range(batch.shape[0]):
            for a, b in zip((value[index] for value in batched), kernel(batch[index])):
                assert _same(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_sums_in_one_pass_each_take_their_own_exp(dtype):
    """With both sums in one pass (GPUs), ``sum(exp(d))`` and the sum of
    ``frac(exp(d))`` each compute ``exp(d)`` (``_jax_total_and_sum_below``): XLA
    merges neither the two ``d`` nor the two ``exp`` (one ``exp`` of two
    consumers, float64 on a GPU, was written to memory between two passes),
    and each ``d`` is ``(x - shift) / t`` bitwise. On a GPU no full-size array
    is written between the program's kernels."""
    jax, jnp = _jax()
    x = jnp.asarray(np.random.default_rng(6).standard_normal((8, 1000)).astype(dtype) * 3)
    shift = jnp.max(x, axis=1, keepdims=True)

    def shared(v, shift, t):
        scaled = jnp.exp(_fastpaths._jax_shifted(jnp, v, shift, t))
        return jnp.sum(scaled, axis=1, keepdims=True), jnp.sum(scaled - jnp.floor(scaled), axis=1, keepdims=True)

    for t in (1.0, 3.0):
        program = jax.jit(lambda v, shift: _fastpaths._jax_total_and_sum_below(jnp, v, shift, 1, t)).lower(x, shift).compile()
        text = program.as_text()
        assert text.count(" exponential(") >= 2, text  # one would be shared
        entry = text.split("ENTRY", 1)[1]
        if jax.default_backend() != "cpu":
            assert not [line for line in entry.splitlines() if " fusion(" in line and "[8,1000]" in line.split(" fusion(")[0]]
        both = jax.jit(lambda v, shift: (_fastpaths._jax_shifted(jnp, v, shift, t), _fastpaths._jax_divided(jnp, -(shift - v), t)))
        d, negated = both(x, shift)
        assert _same(d, negated)
        # the sums of one shared exp, within XLA's order of summation
        for a, b in zip(program(x, shift), jax.jit(shared, static_argnums=2)(x, shift, t)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=4 * np.finfo(dtype).eps)


def test_jax_exp_once_by_layout(monkeypatch):
    """On the CPU the large-array path computes ``exp(d)`` once for the sums and
    ``q`` (``_fastpaths._jax_exp_once``) along any axis but a last one of at most
    ``_JAX_EXP_ONCE_LONGER_THAN`` (there twice but beside ``log_q``), and only
    where ``q`` (or the rule's ``exp``) is asked for: the one ``exp`` outside the ``lax.cond``s is
    read by the sum and by ``q``, else by ``q`` alone. On such a layout the special slices keep the table (NaN beside ``+inf``
    is NaN, ``+inf`` entries share the mass, an all ``-inf`` slice gives 0)
    and the gradient of ``logsumexp`` is ``softmax`` bitwise."""
    jax, jnp = _jax()
    monkeypatch.setattr(_fastpaths, "_JAX_SMALL_BYTES", 0)
    longest = _fastpaths._JAX_EXP_ONCE_LONGER_THAN
    short_rows, long_rows = jnp.zeros((4, longest)), jnp.zeros((4, longest + 1))
    assert not _fastpaths._jax_exp_once(short_rows, 1, ("q",))
    assert _fastpaths._jax_exp_once(long_rows, 1, ("q",)) and _fastpaths._jax_exp_once(long_rows, 1, ("lse", "q"))
    assert _fastpaths._jax_exp_once(short_rows, 0, ("q",)) and _fastpaths._jax_exp_once(jnp.zeros((3, 4, 5)), 1, ("exp", "total"))
    assert not _fastpaths._jax_exp_once(long_rows, 1, ("lse",)) and not _fastpaths._jax_exp_once(long_rows, 1, ("log_q",))
    assert _fastpaths._jax_exp_once(short_rows, 1, ("log_q", "q"))  # log_softmax's rule reads q

    def readers_of_exp(jaxpr):
        # the top-level equations that read the one top-level exp (through the
        # optimization_barrier that keeps it one array): the sums' and q's
        (exp,) = [equation for equation in jaxpr.eqns if equation.primitive.name == "exp"]
        values = {id(value) for value in exp.outvars}  # (variables by identity: literals do not hash)
        readers = []
        for equation in jaxpr.eqns:
            if any(id(value) in values for value in equation.invars):
                if equation.primitive.name == "optimization_barrier":
                    values |= {id(value) for value in equation.outvars}
                else:
                    readers.append(equation.primitive.name)
        return readers

    for x, axis, once in ((long_rows, 1, True), (short_rows, 0, True), (short_rows, 1, False)):
        closed = jax.make_jaxpr(lambda v: _fastpaths.jax_kernel(jnp, v, None, axis, 1.0, ("lse", "q")))(x)
        readers = readers_of_exp(closed.jaxpr)
        # once: read by the sum (in float32 rows through a conversion to float64) and by q;
        # twice: the sums' exp in the +inf cond's branches, q's read by q alone
        assert (len(readers) >= 2) == once and ("cond" not in readers), (x.shape, axis, readers)

    rows = np.random.default_rng(8).standard_normal((6, longest + 7)) * 3
    rows[0, 5], rows[0, 9] = NAN, INF  # NaN beside +inf
    rows[1, [3, 40]] = INF  # two +inf entries
    rows[2] = -INF  # no entries
    rows[3, 11] = NAN
    rows[4, 0] = 60.0  # one dominant term
    for dtype in ("float32", "float64"):
        for values, axis in ((rows, 1), (rows.T.copy(), 0)):
            x = jnp.asarray(values.astype(dtype))
            q = np.asarray(jax.jit(lambda v: smoothmax.softmax(v, axis=axis))(x))
            gradient = jax.jit(jax.grad(lambda v: jnp.sum(smoothmax.logsumexp(v, axis=axis))))(x)
            assert _same(gradient, q)
            q = q if axis == 1 else q.T
            assert np.isnan(q[0]).all() and np.isnan(q[3]).all()
            assert q[1, 3] == q[1, 40] == 0.5 and (np.delete(q[1], [3, 40]) == 0).all()
            assert (q[2] == 0).all()
            np.testing.assert_allclose(q[[4, 5]].sum(axis=1), 1.0, rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize(
    "dtype, layout", [("float32", "rows"), ("float64", "rows"), ("float32", "columns"), ("float32", "middle")]
)
def test_jax_large_path_sums_only_the_dominated_slices_again(dtype, layout, monkeypatch):
    """Along the last axis, along axis 0 and along a middle axis (on CPU), the large-array path sums
    again only the slices whose sum with the ties is below 2
    (``_jax_rest_of_slices``): gathered a block at a time (here one or three
    slices a block: several blocks, the last one part padding), summed without
    the pivot and scattered back; with most slices dominated, every slice in one
    pass. Those slices are the generic kernel's bitwise (columns: within the
    few ulp of XLA's order of summation, ``_jax_ulps``); the slices between them
    keep ``total - 1`` (a few ulp from it, ``_jax_ulps``), ties, NaN, ``-inf``
    and ``+inf`` slices their limits; and under ``vmap`` (rows: the batch folded
    into the rows; columns and a middle axis: one pass) the results are the same."""
    jax, jnp = _jax()
    if jax.default_backend() != "cpu":
        pytest.skip("the blocks are the CPU path; other devices take both sums in one pass")
    monkeypatch.setattr(_fastpaths, "_JAX_SMALL_BYTES", 0)
    # float32 rows sum their total in float64 and rarely need the blocks
    # (test_jax_wide_total_rows); here they take the float32 total
    monkeypatch.setattr(_fastpaths, "_JAX_WIDE_TOTAL_LONGEST", 0)
    rng = np.random.default_rng(7)
    dominated = [[0.0] + [-40.0] * 7, [5.0, 1.0, -3.0, 0.5, 2.0, -1.0, 0.0, 1.5], [-2.0] + [-30.0] * 7]
    others = [
        list(rng.standard_normal(8)),
        [3.0, 3.0, 0.0, -1.0, 1.0, 2.0, -5.0, 0.0],  # two ties: a sum above 2
        [NAN] + [0.0] * 7,
        [-INF] * 8,
        [1.0, INF, 0.0, INF, -INF, 2.0, 3.0, 4.0],
        [2.0, -INF, INF, 1.0, 0.0, -1.0, 3.0, 0.5],  # one +inf: counted, its rest 0
        [NAN, INF, 0.0, 1.0, -INF, 2.0, 0.0, 1.0],
    ]
    rows = np.array(dominated[:1] + others[:2] + dominated[1:2] + others[2:] + dominated[2:] + dominated[:1] + others[:1])
    mostly_dominated = np.array(dominated * 3 + others[:1])
    three_slices = 3 * 8 * np.dtype(dtype).itemsize
    cases = [  # (block bytes, slices as rows, the dominated ones, temperatures, under vmap too)
        (1, rows, [0, 3, 9, 10], (1.0, 3.0), True),
        (three_slices, rows, [0, 3, 9, 10], (1.0,), False),
        (1, mostly_dominated, list(range(9)), (3.0,), True),
    ]
    outputs = ("lse", "q", "log_q")
    columns = layout != "rows"  # the slices as columns: of a matrix, or of 2 matrices stacked (middle)
    if columns:  # the blocks' bookkeeping is the rows': one block size (suite time)
        cases = [case for case in cases if case[0] == 1]
    if layout == "middle":  # gathered from slices of 8 on, where at most a quarter need it
        monkeypatch.setattr(_fastpaths, "_JAX_MIDDLE_GATHER_FROM", 8)
        four_more = np.concatenate([rows, rng.standard_normal((4, 8)) * 0.1])  # sums near 8
        cases = [(1, four_more, [0, 3, 9, 10], (1.0, 3.0), True), cases[-1]]
    axis = 1 if layout != "columns" else 0

    def in_layout(rows):  # the slices (rows of 8) in the layout tested
        if layout == "middle":
            return np.moveaxis(rows.reshape(2, -1, 8), 2, 1)
        return rows.T if columns else rows

    def as_rows(value):  # a result back in the layout of the slices as rows
        value = np.asarray(value)
        if layout == "middle":
            return np.moveaxis(value, 1, 2).reshape(-1, value.shape[1])
        return value.T if columns else value

    for block_bytes, values, is_dominated, temperatures, with_vmap in cases:
        monkeypatch.setattr(_fastpaths, "_JAX_GATHER_BYTES", block_bytes)
        _fastpaths._jax_rest_of_slices.cache_clear()
        x = jnp.asarray(in_layout(values).astype(dtype))
        assert "while[" in str(jax.make_jaxpr(lambda v: _fastpaths.jax_kernel(jnp, v, None, axis, 1.0, ("lse",)))(x))
        for t in temperatures:

            def kernel(v, t=t):
                return _fastpaths.jax_kernel(jnp, v, None, axis, t, outputs)

            fast = jax.jit(kernel)(x)
            for output, a, b in zip(outputs, fast, _kernel.kernel(jnp, x, None, axis, t, outputs)):
                a, b = as_rows(a), as_rows(b)
                # (x - m) / t - log_sum fuses differently in the two programs: 1 ulp;
                # columns are summed in XLA's order, not pairwise (_jax_ulps)
                dominated_ulps = 1 if output == "log_q" and t != 1.0 else 0
                if columns:  # the generic kernel's own order differs there
                    dominated_ulps = 2 if output == "lse" else 8
                assert _within_ulps(a[is_dominated], b[is_dominated], dominated_ulps), output
                assert _within_ulps(a, b, 8), output
            if with_vmap:
                half = values.shape[0] // 2
                if layout == "middle":  # members: x twice
                    batched = [value[1] for value in jax.jit(jax.vmap(kernel))(jnp.stack([x, x]))]
                elif columns:  # members (8, half): the columns of x in two halves
                    batch = jnp.moveaxis(x.reshape(8, 2, half), 1, 0)
                    batched = [jnp.moveaxis(value, 0, 1) for value in jax.jit(jax.vmap(kernel))(batch)]
                else:
                    batched = jax.jit(jax.vmap(kernel))(x.reshape(2, half, 8))
                for a, b in zip(batched, fast):
                    assert _same(np.asarray(a).reshape(b.shape), b)
    _fastpaths._jax_rest_of_slices.cache_clear()


def test_jax_wide_total_rows(monkeypatch):
    """float32 rows (up to ``_JAX_WIDE_TOTAL_LONGEST``) on the large-array path
    sum their ``total`` in float64 (``_jax_wide_total``): every output is within
    one ulp more of the exact value (the generic kernel in float64 on the same
    inputs) than the generic kernel's float32 one; ``q`` alone is ``q``
    beside ``lse`` bitwise (``softmax`` and the gradient of ``logsumexp``), and
    ``sign`` and the non-finite slices are the generic kernel's. Rows whose
    ``rest`` is below ``n 2**-27`` are summed again for ``log_q`` (and whose
    ``lse`` is below ``t n 2**-27`` for ``lse``): from ``total - 1`` their
    pivot's ``log_q`` and ``lse`` would be 0."""
    jax, jnp = _jax()
    if jax.default_backend() != "cpu":
        pytest.skip("the float64 total is the CPU path")
    monkeypatch.setattr(_fastpaths, "_JAX_SMALL_BYTES", 0)
    rng = np.random.default_rng(11)
    tiny = [[0.0] + [-40.0] * 7, [-2.0] + [-60.0] * 7, [30.0] + [-30.0] * 7]  # rest < 8 2**-27
    one_tie = [[5.0, 1.0, -3.0, 0.5, 2.0, -1.0, 0.0, 1.5], [0.5] + [-12.0] * 7, [-0.5, -3.0] + [-9.0] * 6]
    # |lse| < 2**-24 (m + log(1 + rest) cancels: not compared), one tie: lse summed
    # again, while 1 + rest rounds apart from the float64 total (q must divide by
    # the total either way, as q alone does)
    cancelling = [
        [-0.5484150648117065, -3.254904270172119, -4.172997951507568, -4.348231315612793, -2.3683106899261475,
         -2.2660937309265137, -2.6213183403015137, -2.4633102416992188],
        [-0.5804957151412964, -4.2610578536987305, -2.338639736175537, -2.6701126098632812, -2.1588714122772217,
         -3.928811550140381, -2.247039556503296, -3.925388813018799],
        [-0.5604768395423889, -2.4521584510803223, -2.4832091331481934, -2.670940637588501, -2.5479652881622314,
         -3.545875310897827, -3.8962807655334473, -2.766331672668457],
    ]
    special = [[3.0, 3.0, 0.0, -1.0, 1.0, 2.0, -5.0, 0.0], [NAN] + [0.0] * 7, [-INF] * 8,
               [1.0, INF, 0.0, INF, -INF, 2.0, 3.0, 4.0], [2.0, -INF, INF, 1.0, 0.0, -1.0, 3.0, 0.5]]
    rows = np.array(tiny + one_tie + special + list(rng.standard_normal((5, 8)) * 3) + cancelling).astype("float32")
    x = jnp.asarray(rows)
    assert _fastpaths._jax_wide_total(x, 1)
    outputs = ("lse", "q", "log_q", "sign")
    finite_rows = np.all(np.isfinite(rows), axis=1)
    compared = finite_rows & (np.arange(len(rows)) < len(rows) - len(cancelling))
    for t in (1.0, 3.0):
        fast = jax.jit(lambda v, t=t: _fastpaths.jax_kernel(jnp, v, None, 1, t, outputs))(x)
        generic = _kernel.kernel(jnp, x, None, 1, t, outputs)
        exact = _kernel.kernel(np, rows.astype(np.float64), None, 1, t, outputs)
        for name, a, b, e in zip(outputs, fast, generic, exact):
            a, b = np.asarray(a), np.asarray(b)
            assert _same(a[~finite_rows], b[~finite_rows]), name
            if name == "sign":
                assert _same(a, b)
                continue
            a, b, e = a[compared], b[compared], e[compared]
            spacing = np.spacing(np.abs(e).astype(np.float32)).astype(np.float64)
            error, generic_error = (np.abs(v.astype(np.float64) - e) / spacing for v in (a, b))
            assert np.all(error <= generic_error + 1.0), (name, t, error.max(), generic_error.max())
        # the tiny rows' pivots: summed again, not total - 1
        assert np.all(np.asarray(fast[2])[:3, 0] < 0) and np.asarray(fast[0])[0, 0] > 0
        (q_alone,) = jax.jit(lambda v, t=t: _fastpaths.jax_kernel(jnp, v, None, 1, t, ("q",)))(x)
        assert _same(q_alone, fast[1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_large_path_makes_no_full_size_temporary(dtype):
    """XLA sizes one temporary buffer for all of a program's ``lax.cond`` branches,
    taken or not; from 32 MiB glibc maps it afresh for every call, and each of
    its pages a call touches faults (535-1510 faults a call measured before at
    (4096, 1024) and (32, 8, 256, 256): up to a quarter of ``logsumexp``'s time). So no
    branch of the large path (the count of ``+inf`` entries, the refinement in
    float64, the slices summed again) holds a full-size temporary: the
    programs' temporaries stay well below the input's size (the gathered blocks;
    the refinement along a middle axis had a transposed copy: 1.0x the input)."""
    jax, jnp = _jax()
    if jax.default_backend() != "cpu":
        pytest.skip("the temporaries measured are the CPU program's")
    cases = [  # 8 MiB float32 (above _JAX_SMALL_BYTES): rows, columns and a middle axis
        ("logsumexp", (2048, 1024), -1),
        ("logsumexp", (1024, 2048), 0),
        ("logsumexp", (16, 1024, 128), 1),
    ]
    for name, shape, axis in cases:
        x = jnp.zeros(shape, dtype)
        stats = jax.jit(lambda v: getattr(smoothmax, name)(v, axis=axis)).lower(x).compile().memory_analysis()
        if stats is None:
            pytest.skip("this jaxlib reports no memory analysis")
        assert stats.temp_size_in_bytes <= x.nbytes // 4, (name, shape, stats.temp_size_in_bytes)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_large_path_sums_again_for_lse_alone_only_where_lse_is_small(dtype, monkeypatch):
    """The large-array path sums a one-tie row again without its tie where ``q``
    or ``log_q`` is asked for (both need every digit of the sum: ``q`` divides
    by it), and for ``lse`` alone only where the rounding of the sum with the
    tie may reach ``lse`` (``|lse| < T``, ``_jax_lse_keeps_total``), under ``jit``
    and ``vmap``: there the generic kernel's values, bitwise (what the
    refinement reads); a dominant term beside a larger ``lse`` keeps
    ``total - 1`` for ``lse`` alone (a few ulp from the generic kernel, as every
    other row). Through ``smoothmax.logsumexp`` (the refinement after the kernel)
    the dominant rows' ``lse`` is within one ulp of mpmath, and its gradient is
    ``softmax``, bitwise.

    float32 rows sum their ``total`` in float64 (``_jax_wide_total``): ``T`` is
    then far smaller (``_jax_lse_keeps_wide_total``), and the kernel's ``lse``
    alone is within one ulp of mpmath on every one-tie row at ``t = 1`` (two at
    ``t = 3``), the last of which (``lse`` ~ 1e-25 at ``t = 1``, 4e-8 at
    ``t = 3``) lies below ``T``: from ``total - 1`` it would be 0."""
    jax, jnp = _jax()
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60
    monkeypatch.setattr(_fastpaths, "_JAX_SMALL_BYTES", 0)
    maxima = [0.0, 1e-3, 0.5, -0.5, -2.0, 5.0, 40.0, 100.0]
    dominated = [[m] + [m - 30.0] * 5 + [m - 12.0, m - 9.0] for m in maxima]  # one tie each
    dominated.append([0.0] + [-60.0] * 7)
    others = [[3.0, 3.0, 0.0, -1.0, 1.0, 2.0, -5.0, 0.0], [NAN] + [0.0] * 7, [-INF] * 8, [1.0, INF, 0.0, INF] * 2]
    rows = np.array(dominated + others + list(np.random.default_rng(3).standard_normal((2, 8))))
    x = jnp.asarray(rows.astype(dtype))
    one_tie = np.arange(len(rows)) < len(dominated)
    wide = dtype == "float32" and jax.default_backend() == "cpu"
    assert _fastpaths._jax_wide_total(x, 1) == wide
    for t in (1.0, 3.0):

        def kernel(v, outputs, t=t):
            return _fastpaths.jax_kernel(jnp, v, None, v.ndim - 1, t, outputs)

        (lse_alone,) = jax.jit(lambda v: kernel(v, ("lse",)))(x)
        generic_lse, generic_q = _kernel.kernel(jnp, x, None, 1, t, ("lse", "q"))
        bound = _fastpaths._jax_lse_keeps_wide_total(t, 8) if wide else _fastpaths._jax_lse_keeps_total(t)
        small = (np.abs(np.asarray(lse_alone)) < bound)[:, 0] & one_tie
        assert small.any() and not small[one_tie].all()
        if wide:
            assert small[len(dominated) - 1] and small.sum() == 1
            exact = [
                float(mpmath.mpf(t) * mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v)) / t) for v in row)))
                for row in rows[one_tie].astype(dtype)
            ]
            # at t = 3 also d = (x - m) / t rounds in float32 (so it does in the generic kernel)
            assert _within_ulps(np.asarray(lse_alone)[one_tie, 0], np.asarray(exact, dtype=dtype), 1 if t == 1.0 else 2)
        else:
            assert _same(np.asarray(lse_alone)[small], np.asarray(generic_lse)[small])
        assert _within_ulps(lse_alone, generic_lse, 2)
        lse, q = jax.jit(lambda v: kernel(v, ("lse", "q")))(x)
        if wide:  # the same second sums as lse alone; q divides by the total (test_jax_wide_total_rows)
            assert _same(lse, lse_alone)
        else:
            assert _same(np.asarray(lse)[one_tie], np.asarray(generic_lse)[one_tie])
            assert _same(np.asarray(q)[one_tie], np.asarray(generic_q)[one_tie])
        assert _within_ulps(lse, generic_lse, 2) and _within_ulps(q, generic_q, 8)
        assert _same(jax.jit(lambda v: kernel(v, ("q",)))(x)[0], q)
        for outputs, expected in ((("lse",), lse_alone), (("lse", "q"), lse)):
            batched = jax.jit(jax.vmap(lambda v, outputs=outputs: kernel(v, outputs)))(x.reshape(3, -1, 8))
            assert _same(np.asarray(batched[0]).reshape(expected.shape), expected)
    exact = rows[: len(dominated)].astype(dtype)
    expected = [float(mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row))) for row in exact]
    found = np.asarray(jax.jit(lambda v: smoothmax.logsumexp(v, axis=1))(x))[: len(dominated)]
    assert _within_ulps(found, np.asarray(expected, dtype=dtype), 1), (found, expected)
    lse_gradient = jax.jit(jax.grad(lambda v: jnp.sum(smoothmax.logsumexp(v, axis=1))))(x)
    assert _same(lse_gradient, jax.jit(lambda v: smoothmax.softmax(v, axis=1))(x))


def test_jax_small_float32_refines_without_a_cond():
    """Small float32 arrays (``_JAX_WIDE_FLOAT32_ELEMENTS``) take ``lse`` and
    ``log_q`` from a float64 sum on every slice, with no ``lax.cond`` in the
    program (its untaken branch costs 5-12 us a call there); float64 keeps the
    refinement's cond. Under ``vmap`` a batch still that small takes the same
    route, a larger one the kernel and the refinement: either way the dominant
    rows' ``lse`` is within one ulp of mpmath, ``log_softmax``'s pivot entry
    within two (where the refinement runs: on the slices it refines), the
    special rows keep ``semantics.md``'s values, and the gradient of
    ``logsumexp`` is bitwise ``softmax``."""
    jax, jnp = _jax()
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60

    def program(dtype, n):
        x = jnp.zeros((n,), dtype)
        return str(jax.make_jaxpr(jax.jit(lambda v: smoothmax.logsumexp(v)))(x))

    assert "cond[" not in program("float32", 16) and "cond[" not in program("float32", 1000)
    assert "cond[" in program("float64", 16) and "cond[" in program("float32", 4096)
    maxima = [0.0, 1e-3, 0.5, -0.5, -2.0, 5.0]
    dominant = [[m] + [m - 30.0] * 5 + [m - 12.0, m - 9.0] for m in maxima]
    special = [[NAN] + [0.0] * 7, [-INF] * 8, [1.0, INF, 0.0, INF] * 2]
    rows = np.array(dominant + special, dtype=np.float32)
    exact = [mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row)) for row in rows[: len(maxima)]]
    expected = np.asarray([float(value) for value in exact], np.float32)
    expected_pivot = np.asarray([float(mpmath.mpf(float(row[0])) - value) for row, value in zip(rows, exact)], np.float32)
    lse = jax.jit(jax.vmap(lambda v: smoothmax.logsumexp(v)))
    log_softmax = jax.jit(jax.vmap(lambda v: smoothmax.log_softmax(v)))
    gradient = jax.jit(jax.vmap(jax.grad(lambda v: smoothmax.logsumexp(v))))
    softmax = jax.jit(jax.vmap(lambda v: smoothmax.softmax(v)))
    for copies in (1, 300):  # 72 elements (the float64 sum) and 21 600 (kernel and refinement)
        x = jnp.asarray(np.tile(rows, (copies, 1)))
        found = np.asarray(lse(x)).reshape(copies, len(rows))
        assert _within_ulps(found[:, : len(maxima)], np.tile(expected, (copies, 1)), 1)
        assert np.isnan(found[:, -3]).all() and (found[:, -2] == -INF).all() and (found[:, -1] == INF).all()
        # every slice on the float64 route; the refinement, the dominated ones (m = 0 here)
        refined = len(maxima) if copies == 1 else 1
        pivot = np.asarray(log_softmax(x))[:refined, 0]
        assert _within_ulps(pivot, expected_pivot[:refined], 2), (copies, pivot, expected_pivot)
        assert _same(gradient(x), softmax(x))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_softmax_takes_the_positive_inf_limit_in_arithmetic(dtype, monkeypatch):
    """With ``q`` alone (``softmax``) the large-array path under ``jit`` builds
    ``x - m`` with the ``+inf`` limit in arithmetic (``_jax_difference_at_limits``),
    not with selects: bitwise what the same path gives with ``lse`` asked for too
    (the selects), and the limits of ``semantics.md`` on the special rows (the
    largest float beside ``+inf`` included). The gradient of ``logsumexp`` (which
    asks for ``lse``) stays bitwise ``softmax``."""
    jax, jnp = _jax()
    monkeypatch.setattr(_fastpaths, "_JAX_SMALL_BYTES", 0)
    largest = float(np.finfo(dtype).max)
    rows = np.array(
        [
            [1.0, INF, INF, 0.0, 2.0, largest],
            [largest, INF, -INF, -largest, 0.0, 1e-30],
            [NAN, 1.0, INF, 0.0, 0.0, 0.0],
            [-INF] * 6,
            [0.0] + [-40.0] * 5,
            [1.0, 2.0, 3.0, 3.0, 0.5, -1.0],
            [largest, largest, -INF, 0.0, 1.0, 2.0],
        ]
    )
    x = jnp.asarray(rows.astype(dtype))
    for t in (1.0, 3.0):
        for axis, values in ((1, x), (0, x.T)):

            def kernel(v, outputs, axis=axis, t=t):
                return _fastpaths.jax_kernel(jnp, v, None, axis, t, outputs)

            (q_alone,) = jax.jit(lambda v: kernel(v, ("q",)))(values)
            assert _same(q_alone, jax.jit(lambda v: kernel(v, ("lse", "q")))(values)[1])
            q = np.moveaxis(np.asarray(q_alone), axis, 1)
            np.testing.assert_array_equal(q[0], [0.0, 0.5, 0.5, 0.0, 0.0, 0.0])
            np.testing.assert_array_equal(q[1], [0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
            assert np.isnan(q[2]).all()
            np.testing.assert_array_equal(q[3], np.zeros(6))
    lse_gradient = jax.jit(jax.grad(lambda v: jnp.sum(smoothmax.logsumexp(v, axis=1))))(x)
    assert _same(lse_gradient, jax.jit(lambda v: smoothmax.softmax(v, axis=1))(x))


def test_jax_small_examples_under_vmap_choose_by_the_batch(monkeypatch):
    """Under ``vmap`` the one-piece path hands the whole batch to the kernel,
    which takes the large-array path where the batch is above the limit (its
    two reductions over a large batch ran 10x ``jax.nn``); one example alone
    stays one piece. The results agree to the few ulp of the two summation
    orders, non-finite entries exactly."""
    jax, jnp = _jax()
    rows = np.array([[0.0] + [-40.0] * 5, [1.0, 2.0, 3.0, 3.0, 0.5, -1.0], [1.0, INF, INF, 0.0, 2.0, 3.0]])
    batch = jnp.asarray(np.stack([rows, rows[::-1], rows[[1, 0, 2]]]))
    monkeypatch.setattr(_fastpaths, "_JAX_SMALL_BYTES", rows.nbytes)  # one example fits, three do not

    def kernel(v):
        return _fastpaths.jax_kernel(jnp, v, None, 1, 1.0, ("lse", "q", "log_q"))

    assert "cond[" not in str(jax.make_jaxpr(kernel)(batch[0]))
    assert "cond[" in str(jax.make_jaxpr(jax.vmap(kernel))(batch))
    for batched in (jax.vmap(kernel)(batch), jax.jit(jax.vmap(kernel))(batch)):
        for index in range(batch.shape[0]):
            for a, b in zip((value[index] for value in batched), kernel(batch[index])):
                assert _within_ulps(a, b, 8)


# --------------------------------------------------------------------------- public functions


def _backends():
    found = [("numpy", np, lambda v: np.asarray(v), lambda v: v)]
    try:
        import torch

        found.append(("torch", torch, lambda v: torch.from_numpy(v.copy()), lambda v: v.detach().numpy()))
    except ImportError:
        pass
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        found.append(("jax", jnp, jnp.asarray, np.asarray))
    except ImportError:
        pass
    try:
        import array_api_strict

        found.append(("array_api_strict", array_api_strict, array_api_strict.asarray, np.asarray))
    except ImportError:
        pass
    return found


BACKENDS = _backends()


def _public_results(make):
    """(label, value) pairs; the label ``lse`` marks ``logsumexp`` at ``t = 1``."""
    results = []
    for _, values, axis in INPUTS:
        for dtype in ("float32", "float64"):
            x = make(values.astype(dtype))
            results.append(("lse", smoothmax.logsumexp(x, axis=axis)))
            results.append(("lse-t", smoothmax.logsumexp(x, axis=axis, keepdims=True, temperature=0.5)))
            results.append(("softmax", smoothmax.softmax(x, axis=axis)))
            results.append(("log_softmax", smoothmax.log_softmax(x, axis=axis)))
    return results


@pytest.mark.parametrize("backend", BACKENDS, ids=[b[0] for b in BACKENDS])
def test_public_functions_same_with_fast_paths_on_and_off(backend, monkeypatch):
    name, _, make, to_numpy = backend
    if name == "jax":
        pytest.skip("JAX compiles the fast path and the fallback into one program; covered above")
    on = _public_results(make)
    monkeypatch.setattr(_fastpaths, "ENABLED", False)
    off = _public_results(make)
    for (label, a), (_, b) in zip(on, off):
        if name == "torch" and label in ("lse", "lse-t"):
            # large inputs: m + log(S) where no cancellation is possible (see
            # _torch_lse); small ones along the last axis: NumPy's exp
            assert _within_ulps(to_numpy(a), to_numpy(b), 2 if label == "lse-t" else 1), label
        else:
            assert _same(to_numpy(a), to_numpy(b)), label


@pytest.mark.parametrize("backend", BACKENDS, ids=[b[0] for b in BACKENDS])
def test_entry_points_agree_with_the_full_path(backend):
    """``axis=k`` takes the entry point, ``axis=(k,)`` the full path (``prepare``)."""
    name, _, make, to_numpy = backend
    rng = np.random.default_rng(5)
    for dtype in ("float32", "float64"):
        x = make(rng.standard_normal((6, 7, 8)).astype(dtype))
        for axis in (0, 1, 2, -1, -3):
            for keepdims in (False, True):
                a = smoothmax.logsumexp(x, axis=axis, keepdims=keepdims)
                b = smoothmax.logsumexp(x, axis=(axis,), keepdims=keepdims)
                assert _same(to_numpy(a), to_numpy(b))
            assert _same(to_numpy(smoothmax.softmax(x, axis=axis)), to_numpy(smoothmax.softmax(x, axis=(axis,))))
            assert _same(
                to_numpy(smoothmax.log_softmax(x, axis=axis)), to_numpy(smoothmax.log_softmax(x, axis=(axis,)))
            )
        v = make(rng.standard_normal(9).astype(dtype))
        assert _same(to_numpy(smoothmax.logsumexp(v)), to_numpy(smoothmax.logsumexp(v, axis=(0,))))
        assert _same(
            to_numpy(smoothmax.logsumexp(v, keepdims=True)), to_numpy(smoothmax.logsumexp(v, axis=0, keepdims=True))
        )


@pytest.mark.parametrize("backend", BACKENDS, ids=[b[0] for b in BACKENDS])
def test_entry_points_keep_the_errors(backend):
    name, _, make, _ = backend
    x = make(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="axis"):
        smoothmax.logsumexp(x, axis=2)
    with pytest.raises(ValueError, match="axis"):
        smoothmax.softmax(x, axis=-3)
    with pytest.raises(TypeError, match="axis"):
        smoothmax.logsumexp(x, axis=True)


def test_environment_switch():
    code = "from smoothmax import _fastpaths; print(_fastpaths.ENABLED)"
    env = dict(os.environ, SMOOTHMAX_FASTPATHS="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    env["SMOOTHMAX_FASTPATHS"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
    code = "from smoothmax import _fastpaths; print(_fastpaths._TORCH_HUGE_PAGES_FROM)"
    for value, want in (("0", "inf"), ("off", "inf"), ("1", str(32 << 20))):
        env["SMOOTHMAX_MADVISE_HUGEPAGE"] = value
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == want


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_gradient_of_logsumexp_is_bitwise_softmax(enabled, dtype, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(_fastpaths, "ENABLED", enabled)
    monkeypatch.setattr(_fastpaths, "_TORCH_HUGE_PAGES_FROM", 0)  # the gradient's buffer advised too
    for _, values, axis in INPUTS:
        x = torch.from_numpy(values.astype(dtype)).requires_grad_(True)
        (grad,) = torch.autograd.grad(smoothmax.logsumexp(x, axis=axis).sum(), x)
        assert _same(grad.numpy(), smoothmax.softmax(x.detach(), axis=axis).numpy())


def test_torch_fused_softmax_backward_matches_the_generic_rule(monkeypatch):
    torch = pytest.importorskip("torch")
    from smoothmax import _torch

    monkeypatch.setattr(_fastpaths, "_TORCH_HUGE_PAGES_FROM", 0)  # the output buffers advised too
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, 7, dtype=torch.float64)
    for function, name in ((smoothmax.softmax, "q"), (smoothmax.log_softmax, "log_q")):
        # axis 1: the fused kernels; axis 0: log_softmax's two passes with q
        for axis, t in ((1, 1.0), (1, 0.5), (0, 1.0), (0, 0.5)):
            (grad,) = torch.autograd.grad(function(x, axis=axis, temperature=t), x, g)
            (q,) = _kernel.kernel(_torch.xp, x.detach(), None, axis, t, ("q",))
            want, _ = _kernel.kernel_vjp(_torch.xp, q, None, {name: g}, axis, t)
            torch.testing.assert_close(grad, want, rtol=1e-13, atol=1e-15)
            # a recorded backward (no out= buffer) gives the same values
            (recorded,) = torch.autograd.grad(function(x, axis=axis, temperature=t), x, g, create_graph=True)
            assert recorded.requires_grad and _same(recorded.detach().numpy(), grad.numpy())
        assert torch.autograd.gradcheck(lambda v: function(v, axis=1), (x,))
        assert torch.autograd.gradgradcheck(lambda v: function(v, axis=1), (x,))
    assert torch.autograd.gradgradcheck(lambda v: smoothmax.logsumexp(v, axis=0), (x,))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_gradient_of_logsumexp_is_bitwise_softmax(dtype):
    jax, jnp = _jax()
    # one pair of jitted functions an axis: the inputs of one shape (random and
    # tied values) share their compiled programs (suite time)
    functions = {}
    for _, values, axis in INPUTS:
        if values.size > 20_000:
            continue
        if axis not in functions:
            functions[axis] = (
                jax.jit(jax.grad(lambda v, axis=axis: jnp.sum(smoothmax.logsumexp(v, axis=axis)))),
                jax.jit(lambda v, axis=axis: smoothmax.softmax(v, axis=axis)),
            )
        gradient, softmax = functions[axis]
        x = jnp.asarray(values.astype(dtype))
        assert _same(gradient(x), softmax(x))


def test_constants_on_accelerators_are_made_once():
    """On PyTorch's accelerators every constant made anew is a host-to-device copy:
    ``_kernel._constant`` keeps them per value, dtype and device (the ``meta``
    device stands in for CUDA here); on the CPU it makes them each call."""
    torch = pytest.importorskip("torch")
    from array_api_compat import array_namespace

    xp = array_namespace(torch.zeros(1))
    like = torch.zeros(3, device="meta")
    one = _kernel._constant(xp, 1.0, like)
    assert one is _kernel._constant(xp, 1.0, like)
    assert one.device == like.device and one.dtype == like.dtype and one.ndim == 0
    assert _kernel._constant(xp, 1.0, like.double()).dtype == torch.float64
    assert _kernel._constant(xp, 2.0, like) is not one
    cpu = torch.zeros(3)
    assert _kernel._constant(xp, 1.0, cpu) is not _kernel._constant(xp, 1.0, cpu)


def test_cuda_kernel_module_is_not_taken_on_rocm(monkeypatch):
    # ROCm builds report their GPUs as ``cuda`` devices; the Triton kernel was
    # checked on NVIDIA GPUs only, so they keep the generic kernel
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.version, "hip", "6.0")
    monkeypatch.setattr(_fastpaths, "_CUDA_MODULE", [])
    assert _fastpaths._cuda_module() is None
