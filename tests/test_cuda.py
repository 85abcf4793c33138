"""The Triton kernel for PyTorch on CUDA (``smoothmax._cuda``).

Where CUDA is present the kernel runs on the GPU; elsewhere Triton's interpreter
(``TRITON_INTERPRET=1``) runs the same kernel on CPU tensors, so CI checks its
arithmetic without a GPU. Compared with the generic kernel: float32 input with
the generic kernel's float64 values rounded (the kernel computes in float64),
float64 within one ulp of mpmath (two-part arithmetic inside); the special
values and the dominant term exactly; the chunked loops and the column layout
through a small ``tile``; rows split into segments (as rows longer than
65 536 are) through a small ``segment_length``. Triton's compiler, which the
interpreter never calls, compiles every branch for sm_90 in a subprocess
(``conformance.triton_compile``). On a GPU the public functions are checked to take
this path, stay on the device and keep the gradient of ``logsumexp`` bitwise
``softmax``.
"""

from __future__ import annotations

import itertools
import json
import math
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

import array_api_compat.torch as xp  # noqa: E402

import smoothmax  # noqa: E402
from smoothmax import _kernel  # noqa: E402

ON_GPU = torch.cuda.is_available()
DEVICE = "cuda" if ON_GPU else "cpu"
if not ON_GPU and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("no GPU, and Triton was not imported for its interpreter (tests/conftest.py)", allow_module_level=True)

from smoothmax import _cuda  # noqa: E402


ALL_OUTPUTS = ("lse", "q", "log_q")
INF = math.inf
NAN = math.nan

#: (shape, axis, tile, segment_length): rows in one chunk, several rows a
#: program, rows in chunks, columns in one chunk and in chunks, a 3-d middle
#: axis; tile None: the blocks :func:`launch` chooses itself.
LAYOUTS = [
    ((16,), 0, 4096, None),
    ((1000,), 0, 256, None),
    ((3, 1000), 1, None, None),
    ((2, 3000), 1, None, None),
    ((300, 3), 0, None, None),
    ((6, 37), 1, 4096, None),
    ((6, 37), 1, 16, None),
    ((37, 20), 0, 4096, None),
    ((37, 20), 0, 64, None),
    ((3, 37, 5), 1, 64, None),
    ((3, 5, 37), 2, 32, None),
]

#: Slices split into segments (as slices longer than LONGEST_SLICE are, two
#: launches): rows with several chunks a segment, one chunk a segment, a last
#: segment shorter than the others, one row and several; columns (4 a block,
#: 16 elements each at a time; 8 a block of a 3-d middle axis, 4 elements).
SEGMENTED = [
    ((3, 1000), 1, 64, 256),
    ((1, 1000), 1, 32, 32),
    ((2, 700), 1, 64, 128),
    ((300, 3), 0, 64, 64),
    ((3, 37, 5), 1, 32, 8),
]


#: Rows in one chunk and in chunks, columns in chunks, rows and columns in
#: segments: the layouts that run every variant of the arithmetic.
FEW_LAYOUTS = [LAYOUTS[0], LAYOUTS[6], LAYOUTS[8], SEGMENTED[2], SEGMENTED[3]]


def _ulps(actual, expected) -> float:
    """Largest distance in ulps of ``expected``'s dtype (NaN equal to NaN, equal infinities 0)."""
    actual = actual.cpu().double().numpy()
    expected_wide = expected.cpu().double().numpy()
    spacing = np.spacing(np.abs(expected.cpu().numpy())).astype(np.float64)
    same = (actual == expected_wide) | (np.isnan(actual) & np.isnan(expected_wide))
    with np.errstate(invalid="ignore"):
        distance = np.where(same, 0.0, np.abs(actual - expected_wide) / spacing)
    return float(np.nanmax(np.where(np.isnan(distance), np.inf, distance))) if distance.size else 0.0


def _float32_cases() -> list:
    """Every layout at ``t = 1`` and ``0.5``; ``t = 3`` on :data:`FEW_LAYOUTS`
    (off the GPU: the interpreter's launches are the suite's time)."""
    layouts = LAYOUTS + SEGMENTED
    cases = [(*layout, t) for t in (1.0, 0.5) for layout in layouts]
    return cases + [(*layout, 3.0) for layout in (layouts if ON_GPU else FEW_LAYOUTS)]


@pytest.mark.parametrize("shape,axis,tile,segment_length,temperature", _float32_cases())
def test_float32_is_the_float64_value_rounded(shape, axis, tile, segment_length, temperature):
    generator = torch.Generator().manual_seed(hash((shape, axis, tile)) % 2**31)
    x = (torch.randn(shape, generator=generator, dtype=torch.float64) * 4).float()
    x.view(-1)[1] = -INF  # an absent entry
    got = _cuda.launch(x.to(DEVICE), axis, temperature, ALL_OUTPUTS, tile=tile, segment_length=segment_length)
    wide = _kernel.kernel(xp, x.double(), None, axis, temperature, ALL_OUTPUTS)
    for name, value, reference in zip(ALL_OUTPUTS, got, wide):
        assert value.dtype == torch.float32 and value.device.type == DEVICE and value.shape == reference.shape
        # one rounding of a value good to ~1e-15: within half an ulp but for ties
        assert _ulps(value, reference.float()) <= (0.0 if not ON_GPU else 1.0), name


def _mpmath_outputs(x, axis, temperature):
    """``lse`` (keepdims), ``q`` and ``log_q`` of float64 ``x`` to 100 bits, rounded once."""
    import mpmath

    with mpmath.workprec(100):
        moved = np.moveaxis(x.numpy(), axis, -1)
        lse = np.empty(moved.shape[:-1] + (1,))
        q = np.empty(moved.shape)
        log_q = np.empty(moved.shape)
        t = mpmath.mpf(temperature)
        for index in np.ndindex(moved.shape[:-1]):
            row = moved[index]
            pivot = int(np.argmax(row))
            maximum = mpmath.mpf(float(row[pivot]))
            # shifted first and log1p of the rest: each output to 100 bits relative,
            # also log_q's pivot entry -log1p(rest), which is tiny where one term dominates
            shifted = [(mpmath.mpf(float(value)) - maximum) / t for value in row]
            log_sum = mpmath.log1p(mpmath.fsum(mpmath.exp(value) for i, value in enumerate(shifted) if i != pivot))
            lse[index] = float(maximum + t * log_sum)
            log_q[index] = [float(value - log_sum) for value in shifted]
            q[index] = [float(mpmath.exp(value - log_sum)) for value in shifted]
    return [torch.from_numpy(np.moveaxis(value, -1, axis).copy()) for value in (lse, q, log_q)]


@pytest.fixture(params=["native", "hardware-fma"] if not ON_GPU else ["native"])
def fma(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Off the GPU, also the kernel's GPU branch (``HARDWARE_FMA``: TwoProduct as
    ``fma(a, b, -p)``) with the interpreter's ``fma`` made exact, as the GPU's
    (the interpreter's own rounds ``a b`` first)."""
    if request.param == "hardware-fma":
        import triton.runtime.interpreter as interpreter

        from conformance.triton_interpreter import exact_fma

        monkeypatch.setattr(interpreter.InterpreterBuilder, "create_fma", exact_fma())
        monkeypatch.setattr(_cuda, "_INTERPRETED", False)
    return request.param


def _float64_cases() -> list:
    """Every layout at ``t = 0.1``; ``t = 1`` on :data:`FEW_LAYOUTS` off the GPU:
    ``t != 1`` is a compile-time branch of the kernel (``TEMPERED``), its layout
    code the same either way, and the interpreter takes 1-6 s a launch in
    two-part float64 (on 2 cores). Off the GPU also the GPU's TwoProduct
    (``fma``: only the arithmetic differs), which only ``t != 1`` runs."""
    layouts = LAYOUTS + SEGMENTED[2:]
    cases = [pytest.param(*layout, "native", 0.1) for layout in layouts]
    cases += [pytest.param(*layout, "native", 1.0) for layout in (layouts if ON_GPU else FEW_LAYOUTS)]
    if not ON_GPU:
        cases += [pytest.param(*layout, "hardware-fma", 0.1) for layout in FEW_LAYOUTS]
    return cases


@pytest.mark.parametrize("shape,axis,tile,segment_length,fma,temperature", _float64_cases(), indirect=["fma"])
def test_float64_is_within_one_ulp(shape, axis, tile, segment_length, temperature, fma):
    # float64 input runs in two-part arithmetic with its own exp: one rounding
    # at the end (the generic kernel's q errs by ~|x - m| u, up to 15 ulp here)
    generator = torch.Generator().manual_seed(7 + hash((shape, axis, tile)) % 2**31)
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * 4
    got = _cuda.launch(x.to(DEVICE), axis, temperature, ALL_OUTPUTS, tile=tile, segment_length=segment_length)
    for name, value, reference in zip(ALL_OUTPUTS, got, _mpmath_outputs(x, axis, temperature)):
        assert _ulps(value, reference) <= 1.0, name


SPECIAL_ROWS = [
    [0.0, -40.0, -40.0, -40.0, -40.0],  # one dominant term
    [-INF] * 5,  # absent everywhere: lse -inf, q 0
    [1.0, INF, 2.0, INF, -INF],  # +inf ties share the weight
    [1.0, NAN, 2.0, 3.0, 4.0],
    [INF, NAN, 0.0, 0.0, -INF],
    [3.0, 3.0, 3.0, -1.0, 3.0],  # ties of the maximum
    [-INF, -INF, 5.0, -INF, -INF],
]


#: (axis, tile, segment_length) of the special-value tests: rows and columns,
#: in one chunk and in chunks of 2; and rows and columns split into segments of
#: 2, where the ties of [3, 3, 3, -1, 3] span three segments (the pivot is the
#: first) and NaN and +inf sit in later segments.
SPECIAL_LAYOUTS = [(1, 4096, None), (1, 2, None), (0, 4096, None), (0, 2, None), (1, 2, 2), (0, 8, 2)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("axis,tile,segment_length", SPECIAL_LAYOUTS)
def test_special_values_are_the_generic_kernels(dtype, axis, tile, segment_length, fma):
    x = torch.tensor(SPECIAL_ROWS, dtype=dtype)
    if axis == 0:
        x = x.T.contiguous()
    got = _cuda.launch(x.to(DEVICE), axis, 1.0, ALL_OUTPUTS, tile=tile, segment_length=segment_length)
    generic = _kernel.kernel(xp, x.double(), None, axis, 1.0, ALL_OUTPUTS)
    for name, value, reference in zip(ALL_OUTPUTS, got, generic):
        value = value.cpu()
        reference = reference.to(dtype)
        assert torch.equal(value.isnan(), reference.isnan()), name
        assert _ulps(value, reference) <= 1.0, (name, value, reference)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
# tile 32: 32 chunks one after another (tile 8's 125 took 4-7 s each in the interpreter)
@pytest.mark.parametrize("tile,segment_length,position", [(4096, None, 0), (32, None, 0), (64, 128, 700)])
def test_one_dominant_term_keeps_its_relative_accuracy(dtype, tile, segment_length, position, fma):
    # LSE([0, -40 x 999]) = log1p(999 e^-40): 4.2e-15; log(sum) would give 0.
    # In segments: the dominant term in a later one, the pivot left out of
    # its own segment's sum only
    x = torch.full((1000,), -40.0, dtype=dtype)
    x[position] = 0.0
    lse, log_q = _cuda.launch(x.to(DEVICE), 0, 1.0, ("lse", "log_q"), tile=tile, segment_length=segment_length)
    expected = math.log1p(999 * math.exp(-40.0))  # itself ~1.5 ulp off in float64
    # float64: exp(-40)'s rounding and the sum's (one chunk after another at tile 32)
    bound = 1.0 if dtype == torch.float32 else 8.0
    assert _ulps(lse, torch.tensor([expected], dtype=dtype)) <= bound
    assert _ulps(log_q[position : position + 1], torch.tensor([-expected], dtype=dtype)) <= bound


def test_the_path_declines_what_it_does_not_compute(monkeypatch):
    x = torch.randn(4, 8, device=DEVICE)
    assert _cuda.kernel(x, 1, 1.0, ("lse", "sign")) is None
    assert _cuda.kernel(x, 1, 0.0, ("lse",)) is None
    assert _cuda.kernel(x.half(), 1, 1.0, ("lse",)) is None
    # long slices, rows and columns, are split into segments up to LONGEST_SPLIT_SLICE
    monkeypatch.setattr(_cuda, "LONGEST_SLICE", 8)
    monkeypatch.setattr(_cuda, "LONGEST_SPLIT_SLICE", 12)
    assert _cuda.kernel(torch.randn(13, 2, device=DEVICE), 0, 1.0, ("lse",)) is None
    assert _cuda.kernel(torch.randn(2, 13, device=DEVICE), 1, 1.0, ("lse",)) is None
    assert _cuda.kernel(torch.randn(2, 12, device=DEVICE), 1, 1.0, ("lse",)) is not None
    assert _cuda.kernel(torch.randn(12, 2, device=DEVICE), 0, 1.0, ("lse",)) is not None


# -- slices split into segments (longer than LONGEST_SLICE): two launches --


def test_segments_give_the_values_of_one_program_a_row():
    # float64 through both layouts: the same sums in another order, within an ulp
    x = torch.randn(2, 1500, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 3
    split = _cuda.launch(x.to(DEVICE), 1, 1.0, ALL_OUTPUTS, tile=256, segment_length=512)
    whole = _cuda.launch(x.to(DEVICE), 1, 1.0, ALL_OUTPUTS, tile=256)
    for name, value, reference in zip(ALL_OUTPUTS, split, whole):
        assert _ulps(value, reference) <= 1.0, name


def test_long_rows_take_the_segments(monkeypatch):
    planned = []
    plan_segments = _cuda.plan_segments
    monkeypatch.setattr(_cuda, "plan_segments", lambda *args, **kwargs: planned.append(args) or plan_segments(*args, **kwargs))
    monkeypatch.setattr(_cuda, "LONGEST_SLICE", 64)
    x = torch.randn(3, 300, dtype=torch.float32, generator=torch.Generator().manual_seed(3)) * 5
    (lse,) = _cuda.kernel(x.to(DEVICE), 1, 1.0, ("lse",))
    assert planned and planned[0][:2] == ((3, 300), 1)
    (wide,) = _kernel.kernel(xp, x.double(), None, 1, 1.0, ("lse",))
    assert _ulps(lse, wide.float()) <= (0.0 if not ON_GPU else 1.0)


@pytest.mark.parametrize("outer", [1, 3, 8, 1000, 100_000])
@pytest.mark.parametrize("n", [65_537, 100_000, 1_000_000, 10_000_000, 1 << 30])
@pytest.mark.parametrize("inner", [1, 3, 64])
@pytest.mark.parametrize("extended", [False, True])
def test_segment_plans_cover_each_slice_once(outer, n, inner, extended):
    shape = (outer, n, inner)
    sums, outputs = _cuda.plan_segments(shape, 1, extended, 1.0, ("lse", "q"))
    assert sums.scalars[0] == outer
    inner_blocks, length, segments = sums.scalars[3:6]
    block, chunk = sums.constants["BLOCK_S"], sums.constants["BLOCK_N"]
    assert length % chunk == 0 and (segments - 1) * length < n <= segments * length
    assert (inner_blocks - 1) * block < inner <= inner_blocks * block
    assert segments * block <= _cuda._MOST_SEGMENTS  # a block's segment results read at once
    assert segments <= outputs.constants["BLOCK_SEGMENTS"] < 2 * segments
    assert sums.grid == outputs.grid == (outer * inner_blocks * segments, 1, 1)
    lse_alone = _cuda.plan_segments(shape, 1, extended, 1.0, ("lse",))[1]
    assert lse_alone.grid == (outer * inner_blocks, 1, 1)  # a program a block of slices


def test_run_keeps_compiled_kernels_by_what_triton_specializes(monkeypatch):
    # _run's direct launches (GPU only) on stand-ins for a JITFunction and its
    # CompiledKernel: the first launch of a kind goes through function[grid]
    # with the constants by name, the next through the kept kernel with them in order
    calls = []

    class Compiled:
        def __getitem__(self, grid):
            return lambda *arguments: calls.append(("kept", grid, arguments))

    class Function:
        def __getitem__(self, grid):
            return lambda *arguments, **named: calls.append(("jit", grid, arguments, named)) or Compiled()

    class Tensor:
        def __init__(self, address):
            self.address, self.device, self.dtype = address, torch.device("cpu"), torch.float32

        def data_ptr(self):
            return self.address

    monkeypatch.setattr(_cuda, "_INTERPRETED", False)
    monkeypatch.setattr(_cuda, "_COMPILED", {})
    plan = _cuda._launch(Function(), (3, 1, 1), (7, 32, 0.5), {"A": 1, "B": True}, {"num_warps": 4})
    aligned, misaligned = Tensor(64), Tensor(68)
    _cuda._run(plan, (aligned,))
    _cuda._run(plan, (Tensor(128),))  # the same specialization
    _cuda._run(plan, (misaligned,))  # another one: compiled apart
    assert calls == [
        ("jit", (3, 1, 1), (aligned, 7, 32, 0.5), {"A": 1, "B": True, "num_warps": 4}),
        ("kept", (3, 1, 1), (calls[1][2][0], 7, 32, 0.5, 1, True)),
        ("jit", (3, 1, 1), (misaligned, 7, 32, 0.5), {"A": 1, "B": True, "num_warps": 4}),
    ]
    assert len(_cuda._COMPILED) == 2


def test_segment_sweep_runs(tmp_path):
    # benchmarks.cuda_segments (a tuning run on a GPU), here a dry run: the
    # rows through the segments and through launch's own choice, against torch
    from benchmarks import cuda_segments

    output = tmp_path / "sweep.json"
    rows = cuda_segments.main(["--shape", "2,300", "--dtype", "float32", "--segments", "0,3", "--warps", "0",
                               "--outputs", "lse", "--repeat", "1", "--min-time", "0", "--output", str(output)])
    assert [row["segments"] for row in rows] == [0, 1]  # 3 segments of 100: one of a whole chunk
    assert all(row["peer"] == "torch.logsumexp" and row["ratio_median"] > 0 for row in rows)
    assert json.loads(output.read_text()) == rows


def test_the_kernels_compile_for_gpus_without_one():
    # Triton's compiler (PTX, then ptxas's cubin for sm_90) on every branch: the
    # interpreter above runs the Python code but compiles nothing
    import subprocess
    import sys

    environment = {name: value for name, value in os.environ.items() if name != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-m", "conformance.triton_compile", "--capability", "90"],
        cwd=root, env=environment, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "FAIL" not in result.stdout and " compiled" in result.stdout


gpu_only = pytest.mark.skipif(not ON_GPU, reason="the public functions route CUDA tensors only")


@gpu_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "shape,axis", [((16,), 0), ((64, 1000), 1), ((300, 40), 0), ((4, 8, 33), 1), ((2, 100_000), 1), ((70_000, 3), 0)]
)
def test_public_functions_take_the_kernel_on_cuda(monkeypatch, dtype, shape, axis):
    calls = []
    launch = _cuda.launch
    monkeypatch.setattr(_cuda, "launch", lambda *args, **kwargs: calls.append(args[3]) or launch(*args, **kwargs))
    x = torch.randn(shape, dtype=dtype, device="cuda") * 3
    for function in (smoothmax.logsumexp, smoothmax.softmax, smoothmax.log_softmax):
        value = function(x, axis=axis)
        assert value.device == x.device and value.dtype == dtype
        reference = function(x.cpu(), axis=axis)
        torch.testing.assert_close(value.cpu(), reference, rtol=1e-5 if dtype == torch.float32 else 1e-13, atol=0)
    assert len(calls) == 3

    # the gradient of logsumexp is softmax, bit for bit, through this kernel
    leaf = x.clone().requires_grad_()
    smoothmax.logsumexp(leaf, axis=axis).sum().backward()
    assert torch.equal(leaf.grad, smoothmax.softmax(x, axis=axis))
    # and softmax's backward is PyTorch's on the same q
    leaf = x.clone().requires_grad_()
    cotangent = torch.randn_like(x)
    smoothmax.softmax(leaf, axis=axis).backward(cotangent)
    q = smoothmax.softmax(x, axis=axis)
    expected = q * (cotangent - (q * cotangent).sum(axis, keepdim=True))
    torch.testing.assert_close(leaf.grad, expected, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-6 if dtype == torch.float32 else 1e-15)


@gpu_only
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_kernels_launched_again_give_the_same_values(monkeypatch, dtype):
    # lengths and addresses that do and do not meet Triton's specializations
    # (multiples of 16, 16-byte alignment), each launched through JITFunction.run
    # and through the kept compiled kernel; in one program a row and in segments
    base = torch.randn(4 * 1037, dtype=dtype, device="cuda") * 3
    for n in (16, 17, 32, 1000, 1024):
        for offset in (0, 1, 2, 4):
            x = base[offset : offset + 4 * n].view(4, n)
            for outputs, segment_length in itertools.product((("lse",), ("lse", "q"), ("log_q",)), (None, 256)):
                monkeypatch.setattr(_cuda, "FAST_LAUNCH", False)
                fresh = _cuda.launch(x, 1, 1.0, outputs, segment_length=segment_length)
                monkeypatch.setattr(_cuda, "FAST_LAUNCH", True)
                first = _cuda.launch(x, 1, 1.0, outputs, segment_length=segment_length)
                again = _cuda.launch(x, 1, 1.0, outputs, segment_length=segment_length)
                for values in zip(fresh, first, again):
                    assert torch.equal(values[0], values[1]) and torch.equal(values[0], values[2])
    assert _cuda._COMPILED


@gpu_only
def test_fully_masked_gradient_is_zero_on_cuda():
    x = torch.full((3, 5), -INF, device="cuda", requires_grad=True)
    smoothmax.logsumexp(x, axis=1).sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
