"""Registered derivatives: the gradient of logsumexp IS softmax (bitwise), NaN-free
on masked and all -inf slices, and correct to second order on torch and jax."""

from __future__ import annotations

import math

import numpy as np
import pytest

from smoothmax import log_softmax, logsumexp, softmax

RNG = np.random.default_rng(20261125)


def mask_like(backend, shape, density=0.6, empty_row=True):
    mask = RNG.random(shape) < density
    if empty_row:
        mask[0, ...] = False
    return backend.asbool(mask)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "axis, temperature",
    [(-1, 1.0), (0, 1.0), ((0, 2), 1.0), (None, 1.0), (1, 0.25), ((1, 2), -2.0), (-1, 0.0)],
)
def test_gradient_is_softmax_bitwise(autodiff_xp, dtype, axis, temperature):
    x = autodiff_xp.asarray(RNG.standard_normal((3, 4, 5)) * 3, dtype)
    gradient = autodiff_xp.grad(lambda v: logsumexp(v, axis=axis, temperature=temperature), x)
    expected = softmax(x, axis=axis, temperature=temperature)
    np.testing.assert_array_equal(autodiff_xp.to_numpy(gradient), autodiff_xp.to_numpy(expected))
    assert gradient.dtype == expected.dtype


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradient_is_softmax_bitwise_with_where(autodiff_xp, dtype):
    values = RNG.standard_normal((4, 6))
    mask = mask_like(autodiff_xp, (4, 6))
    values[~autodiff_xp.to_numpy(mask).astype(bool)] = np.nan  # hidden NaNs never leak
    x = autodiff_xp.asarray(values, dtype)
    gradient = autodiff_xp.grad(lambda v: logsumexp(v, axis=1, where=mask), x)
    expected = softmax(x, axis=1, where=mask)
    got = autodiff_xp.to_numpy(gradient)
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(got[0], np.zeros(6))  # fully masked row
    np.testing.assert_array_equal(got, autodiff_xp.to_numpy(expected))


def test_gradient_with_zero_one_weights_is_masked_softmax_bitwise(autodiff_xp):
    values = RNG.standard_normal((3, 5))
    selected = RNG.random((3, 5)) < 0.7
    x = autodiff_xp.asarray(values)
    b = autodiff_xp.asarray(selected.astype(float))
    gradient = autodiff_xp.grad(lambda v: logsumexp(v, axis=1, b=b), x)
    expected = softmax(x, axis=1, where=autodiff_xp.asbool(selected))
    np.testing.assert_array_equal(autodiff_xp.to_numpy(gradient), autodiff_xp.to_numpy(expected))


def test_gradient_with_weights_is_weighted_softmax(autodiff_xp):
    values = RNG.standard_normal((3, 5))
    weights = RNG.uniform(-1, 2, (3, 5))
    x, b = autodiff_xp.asarray(values), autodiff_xp.asarray(weights)
    gradient = autodiff_xp.to_numpy(autodiff_xp.grad(lambda v: logsumexp(v, axis=1, b=b, return_sign=True)[0], x))
    terms = weights * np.exp(values)
    np.testing.assert_allclose(gradient, terms / terms.sum(axis=1, keepdims=True), rtol=1e-12)


@pytest.mark.parametrize("row", [[-math.inf] * 4, [math.inf, 1.0, math.inf, -math.inf], [-math.inf, 0.0, -math.inf, 2.0]])
def test_gradient_special_rows_are_nan_free(autodiff_xp, row):
    x = autodiff_xp.asarray(row)
    gradient = autodiff_xp.to_numpy(autodiff_xp.grad(logsumexp, x))
    assert not np.isnan(gradient).any()
    np.testing.assert_array_equal(gradient, autodiff_xp.to_numpy(softmax(x)))
    np.testing.assert_allclose(gradient.sum(), 0.0 if row[1] == -math.inf and row[3] == -math.inf else 1.0)


def test_empty_gradient(autodiff_xp):
    x = autodiff_xp.asarray(np.zeros((2, 0)))
    assert tuple(autodiff_xp.grad(lambda v: logsumexp(v, axis=1), x).shape) == (2, 0)


# ------------------------------------------------------------------ PyTorch
def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize(
    "function",
    [
        lambda v: logsumexp(v, axis=(0, 1), temperature=0.7),
        lambda v: logsumexp(v, axis=1, temperature=-0.3, keepdims=True),
        lambda v: softmax(v, axis=0, temperature=-0.5),
        lambda v: log_softmax(v, axis=1),
        lambda v: log_softmax(v, axis=(0, 1), temperature=2.0),
        lambda v: softmax(v, axis=1, where=_torch().tensor([True, False, True, True, True, False])),
    ],
    ids=["lse-tuple", "lse-neg-t", "softmax", "log_softmax", "log_softmax-tuple", "softmax-where"],
)
def test_torch_gradcheck_and_gradgradcheck(function):
    torch = _torch()
    x = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert torch.autograd.gradcheck(function, (x,))
    assert torch.autograd.gradgradcheck(function, (x,))


def test_torch_gradcheck_weights():
    torch = _torch()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4, 6, dtype=torch.float64, generator=generator, requires_grad=True)
    b = torch.rand(4, 6, dtype=torch.float64, generator=generator).add(0.1).requires_grad_(True)
    function = lambda v, w: logsumexp(v, axis=1, b=w, temperature=0.8)  # noqa: E731
    assert torch.autograd.gradcheck(function, (x, b))
    assert torch.autograd.gradgradcheck(function, (x, b))


def test_torch_func_transforms():
    torch = _torch()
    from torch import func

    x = torch.randn(5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert torch.equal(func.grad(lambda v: logsumexp(v))(x), softmax(x, axis=None))
    batched = func.vmap(lambda row: logsumexp(row))(x)
    # within 2 ulp, not bitwise: the plain call on a small tensor is NumPy's exp
    # (smoothmax._fastpaths), vmap's the generic kernel's torch.exp
    torch.testing.assert_close(batched, logsumexp(x, axis=1), rtol=2 * torch.finfo(x.dtype).eps, atol=0)
    assert torch.equal(func.vmap(func.grad(lambda row: logsumexp(row)))(x), softmax(x, axis=1))
    p = softmax(x[0])
    hessian = func.hessian(lambda row: logsumexp(row))(x[0])
    torch.testing.assert_close(hessian, torch.diag(p) - torch.outer(p, p))
    jacobian = func.jacrev(lambda row: softmax(row, temperature=0.5))(x[0])
    torch.testing.assert_close(jacobian, (torch.diag(p.new_tensor(softmax(x[0], temperature=0.5))) - torch.outer(softmax(x[0], temperature=0.5), softmax(x[0], temperature=0.5))) / 0.5)
    tangent = torch.ones_like(x)
    _, forward = func.jvp(lambda v: logsumexp(v, axis=1), (x,), (tangent,))
    torch.testing.assert_close(forward, torch.ones(5, dtype=torch.float64))
    jacobian_forward = func.jacfwd(lambda row: log_softmax(row))(x[0])
    torch.testing.assert_close(jacobian_forward, torch.eye(7, dtype=torch.float64) - p.expand(7, 7))


@pytest.mark.parametrize("temperature", [1.0, -1.3])
@pytest.mark.parametrize(
    "outputs, squeeze",
    [(("lse",), True), (("lse",), False), (("q",), False), (("log_q",), False),
     (("lse", "sign"), True), (("lse", "q", "log_q"), False)],
)
@pytest.mark.parametrize("normalized", [False, True], ids=["dominant", "normalized"])
@pytest.mark.parametrize(
    "shape, axis", [((16,), 0), ((1, 16), 1), ((1, 9, 1), 1), ((5, 7), 0), ((40000, 3), 0)]
)
def test_torch_eager_function_is_the_full_function_bitwise(shape, axis, outputs, squeeze, temperature, normalized):
    """Plain eager calls with a gradient take the reverse-only Function with fewer
    Python steps (one small slice: smoothmax._fastpaths.eager_torch_one_slice,
    and its squeezed ``lse``'s cotangent used without ``axis``); its values,
    gradient and second derivative are the full Function's (the one for forward
    mode and torch.func) bit for bit, ``lse`` refined where one term dominates
    (``normalized``: log-probabilities, ``lse`` ~ 0) included."""
    torch = _torch()
    from smoothmax import _torch as adapter

    generator = torch.Generator().manual_seed(7)
    x = torch.randn(shape, dtype=torch.float64, generator=generator) * 3
    x.view(-1)[0] = 30.0  # one dominant term
    if normalized:
        x = x - torch.logsumexp(x, axis, keepdim=True)
    results, weights = [], None
    for function in ("eager", "full"):
        leaf = x.clone().requires_grad_(True)
        if function == "eager":
            names = adapter._rule_outputs(outputs, False, leaf, axis)
            values = adapter._apply_eager_reverse(leaf, axis, temperature, names, squeeze)[: len(outputs)]
        else:
            values = adapter._apply_eager(leaf, None, axis, temperature, outputs, squeeze)[: len(outputs)]
        if weights is None:  # the same cotangents for both
            weights = [torch.rand(value.shape, dtype=value.dtype, generator=generator) for value in values]
        loss = sum((value * w).sum() for name, value, w in zip(outputs, values, weights) if name != "sign")
        (gradient,) = torch.autograd.grad(loss, leaf, create_graph=True)
        (second,) = torch.autograd.grad((gradient * gradient).sum(), leaf)
        results.append([value.detach() for value in values] + [gradient.detach(), second])
    for eager, full in zip(*results):
        assert torch.equal(eager, full)
    leaf = x.clone().requires_grad_(True)
    (value,) = adapter.kernel(leaf, None, axis, temperature, ("q",))
    assert type(value.grad_fn).__name__ == "_LogSumExpEagerBackward"


def test_torch_forward_mode_dual_numbers():
    torch = _torch()
    import torch.autograd.forward_ad as forward_ad

    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    tangent = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(x, tangent)
        result = forward_ad.unpack_dual(logsumexp(dual, axis=1)).tangent
    torch.testing.assert_close(result, (softmax(x) * tangent).sum(dim=1))


def test_torch_forward_mode_dual_numbers_on_masked_rows_use_the_rule():
    """Dual tensors take the registered JVP: an all -inf row has tangent 0 (the
    plain operations alone would give 1 through the maximum), never NaN."""
    torch = _torch()
    import torch.autograd.forward_ad as forward_ad

    x = torch.tensor([[-math.inf] * 3, [0.0, 1.0, -math.inf]], dtype=torch.float64)
    tangent = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], dtype=torch.float64)
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(x, tangent)
        result = forward_ad.unpack_dual(logsumexp(dual, axis=1)).tangent
    expected = (softmax(x) * tangent).sum(dim=1)
    assert expected[0] == 0
    assert torch.equal(result, expected)


def test_torch_compile_fullgraph():
    torch = _torch()
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(5))
    compiled = torch.compile(lambda v: logsumexp(v, axis=-1), fullgraph=True)
    torch.testing.assert_close(compiled(x), logsumexp(x, axis=-1))
    leaf = x.clone().requires_grad_(True)
    compiled(leaf).sum().backward()
    torch.testing.assert_close(leaf.grad, softmax(x))
    compiled_softmax = torch.compile(lambda v: softmax(v, where=v > 0), fullgraph=True)
    torch.testing.assert_close(compiled_softmax(x), softmax(x, where=x > 0))


def test_torch_no_autograd_function_without_gradient(monkeypatch):
    torch = _torch()
    from smoothmax import _torch as adapter

    def forbidden(*args, **kwargs):
        raise AssertionError("autograd.Function used although no gradient can be asked for")

    monkeypatch.setattr(adapter._LogSumExp, "apply", forbidden)
    x = torch.randn(3, 4)
    logsumexp(x, axis=1)
    with torch.no_grad():
        logsumexp(x.requires_grad_(True), axis=1)


# ------------------------------------------------------------------ JAX
def test_jax_check_grads_order_two():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from jax.test_util import check_grads

    x = jnp.asarray(RNG.standard_normal((4, 6)))
    b = jnp.asarray(RNG.uniform(0.1, 2.0, (4, 6)))
    mask = jnp.asarray(RNG.random((4, 6)) < 0.7).at[:, 0].set(True)
    for function, arguments in [
        (lambda v: logsumexp(v, axis=1, temperature=-0.7), (x,)),
        (lambda v: logsumexp(v, axis=(0, 1), temperature=3.0), (x,)),
        (lambda v: softmax(v, axis=0), (x,)),
        (lambda v: log_softmax(v, axis=0, temperature=0.5), (x,)),
        # check_grads feeds NumPy arrays for finite differences; mixing them with a
        # jax mask is a TypeError by contract, so convert first.
        (lambda v: softmax(jnp.asarray(v), axis=1, where=mask), (x,)),
        (lambda v, w: logsumexp(v, axis=1, b=w), (x, b)),
    ]:
        check_grads(function, arguments, order=2, modes=("fwd", "rev"))
    assert jax.config.jax_enable_x64


@pytest.mark.parametrize(
    "shape, axis", [((6, 5, 4), 0), ((6, 5, 4), 1), ((6, 5, 4), -1), ((3, 64, 64), 0), ((3, 1100), -1)]
)
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_jax_softmax_vector_jacobian_product_on_every_axis(shape, axis, temperature):
    # the rule's two written forms of q's tangent (smoothmax._jax._scaled_tangent
    # picks the one from e = exp(d) and total except along last axes up to 1024)
    # give q (g - <q, g>) / t
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from smoothmax import _jax

    x = jnp.asarray(RNG.standard_normal(shape) * 3)
    g = jnp.asarray(RNG.standard_normal(shape))
    scaled = _jax._scaled_tangent(x, None, axis % x.ndim, temperature, ("q",))
    assert scaled == (axis % x.ndim != x.ndim - 1 or shape[axis] > 1024)
    gradient = jax.jit(jax.grad(lambda v: jnp.sum(softmax(v, axis=axis, temperature=temperature) * g)))(x)
    q = np.asarray(softmax(x, axis=axis, temperature=temperature))
    g = np.asarray(g)
    expected = q * (g - np.sum(q * g, axis=axis, keepdims=True)) / temperature
    # within a few roundings of the terms subtracted (q g and q <q, g>): the
    # difference may cancel, so the bound is on their scale, not the result's
    scale = q * (np.abs(g) + np.sum(q * np.abs(g), axis=axis, keepdims=True)) / temperature
    _, tangent = jax.jvp(lambda v: softmax(v, axis=axis, temperature=temperature), (x,), (jnp.asarray(g),))
    for value in (gradient, tangent):  # J is symmetric
        assert np.all(np.abs(np.asarray(value) - expected) <= 16 * np.finfo(np.float64).eps * scale)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_scaled_softmax_tangent_at_the_limits(dtype):
    # the scaled form (e = exp(d), total = 1 + rest >= 1) on slices with no
    # entries (e = 0, total = 1), with +inf entries (e = 1 on them, total = their
    # count) and with NaN, one-piece and large-array paths: the usual rule's values
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from smoothmax import _fastpaths, _jax

    for columns in (5, _fastpaths._JAX_SMALL_BYTES // 8 // 4 + 1):  # (8, columns) along axis 0: both paths
        x = RNG.standard_normal((8, columns)) * 3
        x[:, 0] = -np.inf
        x[[1, 4], 1] = np.inf
        x[2, 2] = np.nan
        x[:, 3] = np.where(np.arange(8) % 2, -np.inf, 1.0)
        x = jnp.asarray(x.astype(dtype))
        g = jnp.asarray(RNG.standard_normal((8, columns)).astype(dtype))
        assert _jax._scaled_tangent(x, None, 0, 1.0, ("q",))
        gradient = np.asarray(jax.jit(jax.grad(lambda v: jnp.sum(softmax(v, axis=0) * g)))(x), np.float64)
        _, tangent = jax.jvp(lambda v: softmax(v, axis=0), (x,), (g,))
        q = np.asarray(softmax(x, axis=0), np.float64)
        g = np.asarray(g, np.float64)
        expected = q * (g - np.sum(q * g, axis=0, keepdims=True))
        tolerance = {"float32": 1e-6, "float64": 1e-14}[dtype]
        for value in (gradient, np.asarray(tangent, np.float64)):
            np.testing.assert_array_equal(np.isnan(value), np.isnan(expected))  # column 2 only
            assert np.isnan(value[:, 2]).all() and not np.isnan(np.delete(value, 2, axis=1)).any()
            np.testing.assert_allclose(value, expected, rtol=tolerance, atol=tolerance)
            np.testing.assert_array_equal(value[:, 0], 0.0)


def test_jax_scaled_softmax_tangent_third_order():
    # differentiated twice more, the rule asks for tangents of its own exp and total
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from jax.test_util import check_grads

    from smoothmax import _jax

    x = jnp.asarray(RNG.standard_normal((3, 4)))
    assert _jax._scaled_tangent(x, None, 0, 1.0, ("q",))
    check_grads(lambda v: softmax(v, axis=0, temperature=0.7), (x,), order=3, modes=("fwd", "rev"))


def test_jax_transforms():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    x = jnp.asarray(RNG.standard_normal((5, 7)))
    jitted_grad = jax.jit(jax.grad(lambda v: logsumexp(v, axis=(0, 1))))(x)
    jitted_softmax = jax.jit(lambda v: softmax(v, axis=(0, 1)))(x)
    assert bool(jnp.array_equal(jitted_grad, jitted_softmax))
    assert bool(jnp.array_equal(jax.vmap(jax.grad(logsumexp))(x), softmax(x, axis=1)))
    p = softmax(x[0])
    np.testing.assert_allclose(jax.hessian(logsumexp)(x[0]), jnp.diag(p) - jnp.outer(p, p), atol=1e-15)
    _, tangent = jax.jvp(lambda v: logsumexp(v, axis=1), (x,), (jnp.ones_like(x),))
    np.testing.assert_allclose(tangent, np.ones(5), rtol=1e-15)
    hidden = jnp.asarray([1.0, jnp.nan, 2.0])
    keep = jnp.asarray([True, False, True])
    gradient = jax.jit(jax.grad(lambda v: logsumexp(v, where=keep)))(hidden)
    np.testing.assert_array_equal(np.asarray(gradient)[1], 0.0)
    assert not bool(jnp.isnan(gradient).any())
