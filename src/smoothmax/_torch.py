"""PyTorch autograd adapter: registers the kernel's derivative rules.

One ``torch.autograd.Function`` with ``setup_context`` (so ``torch.func``
transforms work), a ``jvp`` (forward mode), a generated vmap rule, and a
``backward`` that is itself differentiable (double backward): it only uses the
saved outputs ``q``/``r`` (or ``log_q`` for the log-softmax alone) of the same
Function, so autograd differentiates it through this Function again.

When no gradient can be asked for, the plain kernel runs with no
``autograd.Function`` overhead; plain eager calls that record a gradient (no
weights, no forward mode, no ``torch.func``, no ``torch.compile``) take a
reverse-only variant with fewer Python steps (:class:`_LogSumExpEager`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.autograd.forward_ad as _forward_ad
from array_api_compat import torch as xp

from ._fastpaths import _torch_out
from ._fastpaths import eager_torch_kernel as _eager_torch_kernel
from ._fastpaths import eager_torch_one_slice as _eager_one_slice
from ._fastpaths import refined as _refined
from ._fastpaths import torch_kernel as _fast_torch_kernel
from ._kernel import kernel as _plain_kernel
from ._kernel import kernel_jvp, kernel_vjp, with_rule_inputs


def _forward_kernel(x, weights, axis, temperature, outputs):
    """The kernel's forward on tensors: the CPU fast path (smoothmax._fastpaths),
    which hands every case it does not take to the generic kernel; ``lse`` and
    ``log_q`` refined where one term dominates (smoothmax._refine) on eager CPU tensors."""
    if torch.compiler.is_compiling() or torch._C._functorch.is_functorch_wrapped_tensor(x):
        return _fast_torch_kernel(xp, x, weights, axis, temperature, outputs)
    return _eager_forward_kernel(x, weights, axis, temperature, outputs)


def _eager_forward_kernel(x, weights, axis, temperature, outputs, squeeze=False):
    """:func:`_forward_kernel` where the caller has ruled out ``torch.compile``
    and ``torch.func`` transforms; with ``squeeze``, ``lse`` and ``sign``
    without ``axis``. A small CPU tensor that is one slice goes straight to its
    route (smoothmax._fastpaths.eager_torch_one_slice: the same values, made
    without ``axis`` there, not squeezed after)."""
    if x.is_cpu:
        if weights is None:
            values = _eager_one_slice(xp, x, axis, temperature, outputs, not squeeze)
            if values is not None:
                return values
        values = _refined(_eager_torch_kernel, xp, x, weights, axis, temperature, outputs)
    else:
        values = _eager_torch_kernel(xp, x, weights, axis, temperature, outputs)
    return _without_axis(values, outputs, axis) if squeeze else values


def _fused_vjp(saved, q_from_log, cotangents, axis, temperature):
    """``grad_x`` through PyTorch's fused softmax backward kernels where only the
    softmax (or only the log-softmax) has a cotangent, and ``q g`` where only
    ``lse`` has one; None elsewhere.

    ``saved`` is ``q``, or ``log_q`` where ``q_from_log``. Same formulas as
    :func:`kernel_vjp` (``q (g - <q, g>) / t`` and ``(g - q <1, g>) / t``), one
    pass instead of four; the ops are differentiable, so double backward still
    works. CPU and CUDA (one fused kernel there too); not under ``torch.func`` transforms."""
    if (
        torch.compiler.is_compiling()
        or torch._C._functorch.is_functorch_wrapped_tensor(saved)
        or saved.device.type not in ("cpu", "cuda")
    ):
        return None
    return _fused_grad(saved, q_from_log, cotangents, axis, temperature)


#: The outputs whose cotangent alone :func:`_fused_one` takes.
_FUSED = ("q", "log_q", "lse")


def _fused_grad(saved, q_from_log, cotangents, axis, temperature):
    """:func:`_fused_vjp` where the caller has ruled out ``torch.compile``,
    ``torch.func`` transforms and devices other than CPU and CUDA."""
    names = [name for name, value in cotangents.items() if value is not None]
    if len(names) != 1 or names[0] not in _FUSED:
        return None
    return _fused_one(saved, q_from_log, names[0], cotangents[names[0]], axis, temperature)


def _fused_one(saved, q_from_log, name, g, axis, temperature):
    """:func:`_fused_grad` where ``name`` (``q``, ``log_q`` or ``lse``) alone has
    a cotangent, ``g``; None for ``lse`` with ``log_q`` saved."""
    if name == "lse" and q_from_log:
        return None
    # Into a buffer of huge pages (smoothmax._fastpaths._torch_out) where no graph
    # of the backward is recorded (out= records none): large fresh buffers cost
    # their page faults.
    recorded = torch.is_grad_enabled()
    out = None if recorded or not saved.is_cpu or not saved.is_contiguous() else _torch_out(torch, saved)
    if name == "lse":
        return torch.mul(saved, g, out=out)  # q * g, as kernel_vjp: q itself where g = 1
    if name == "q":
        grad = torch._softmax_backward_data(g, saved, axis, saved.dtype, grad_input=out)
    elif q_from_log:
        grad = torch._log_softmax_backward_data(g, saved, axis, saved.dtype, out=out)
    else:
        grad = torch.addcmul(g, saved, torch.sum(g, axis, keepdim=True), value=-1.0, out=out)
    if temperature == 1.0:
        return grad
    return grad / temperature if recorded else grad.div_(temperature)


def _rule_outputs(outputs, has_weights, x, axis):
    """The Function's outputs: ``outputs`` and what the derivative rules read
    (:func:`with_rule_inputs`), except for ``log_q`` alone along the last axis:
    its rules take ``q = exp(log_q)``, as PyTorch's own log-softmax does, and the
    fused backward reads ``log_q`` itself, so the forward computes no ``q``.
    (Along other axes PyTorch's fused log-softmax backward runs ~6x slower than
    the two passes of :func:`_fused_vjp` with ``q``.)"""
    if outputs == ("log_q",) and axis == x.ndim - 1:
        return outputs
    return with_rule_inputs(outputs, has_weights)


def _saved_rule_inputs(ctx):
    """``(q, r)`` for :func:`kernel_vjp` / :func:`kernel_jvp` (differentiable)."""
    saved, r = ctx.saved_tensors
    return _rule_q(saved, ctx.q_from_log), r


def _rule_q(saved, q_from_log):
    """``q`` from the saved ``q``, or ``log_q`` where ``q_from_log`` (differentiable)."""
    return torch.exp(saved) if q_from_log else saved


def _cotangents(ctx, grads):
    """The Function's output cotangents by name, ``lse``'s with ``axis`` back
    where the Function returned it squeezed; not on one slice, whose cotangent
    (one element) broadcasts against ``q`` as it is, to the same products (an
    ``unsqueeze`` there costs ~4 us of a 16-element forward+backward in a loop)."""
    cotangents = dict(zip(ctx.names, grads))
    if cotangents.get("lse") is not None:
        cotangents["lse"] = _lse_cotangent(ctx, cotangents["lse"])
    return cotangents


def _lse_cotangent(ctx, g):
    """``lse``'s cotangent ``g`` with ``axis`` back where :func:`_cotangents` puts it."""
    return g.unsqueeze(ctx.axis) if ctx.squeeze and g.numel() != 1 else g


#: The outputs of one value a slice, which the Function may return without ``axis``.
_REDUCED = ("lse", "sign")


def _without_axis(values, names, axis):
    """``values`` (named ``names``) with ``axis`` squeezed out of the reduced ones:
    inside the Function, where a squeeze records no autograd node of its own
    (outside, one costs ~7 us forward and ~9 us backward at 16 elements)."""
    return tuple(value.squeeze(axis) if name in _REDUCED else value for name, value in zip(names, values))


class _LogSumExpReverse(torch.autograd.Function):
    """Reverse mode only: the variant ``torch.compile`` can trace (Dynamo does not
    support Functions that define ``jvp``)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weights, axis, temperature, outputs, squeeze):  # type: ignore[override]
        internal = _rule_outputs(outputs, weights is not None, x, axis)
        values = _forward_kernel(x, weights, axis, temperature, internal)
        return _without_axis(values, internal, axis) if squeeze else values

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        x, weights, axis, temperature, outputs, squeeze = inputs
        internal = _rule_outputs(outputs, weights is not None, x, axis)
        named = dict(zip(internal, output))
        ctx.names = internal
        ctx.squeeze = squeeze
        ctx.axis = axis
        ctx.temperature = temperature
        ctx.has_weights = weights is not None
        ctx.q_from_log = "q" not in named
        saved = named["log_q"] if ctx.q_from_log else named["q"]
        ctx.save_for_backward(saved, named.get("r"))
        ctx.save_for_forward(saved, named.get("r"))
        if "sign" in named:
            ctx.mark_non_differentiable(named["sign"])
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        cotangents = _cotangents(ctx, grads)
        if not ctx.has_weights and ctx.temperature != 0.0:
            fused = _fused_vjp(ctx.saved_tensors[0], ctx.q_from_log, cotangents, ctx.axis, ctx.temperature)
            if fused is not None:
                return fused, None, None, None, None, None
        q, r = _saved_rule_inputs(ctx)
        grad_x, grad_weights = kernel_vjp(xp, q, r, cotangents, ctx.axis, ctx.temperature)
        return grad_x, (grad_weights if ctx.has_weights else None), None, None, None, None



class _LogSumExp(_LogSumExpReverse):
    """Reverse and forward mode, for eager autograd and ``torch.func``."""

    @staticmethod
    def jvp(ctx, x_tangent, weights_tangent, *_):  # type: ignore[override]
        q, r = _saved_rule_inputs(ctx)
        tangents = kernel_jvp(
            xp, q, r, x_tangent, weights_tangent, ctx.axis, ctx.temperature, ctx.names
        )
        return _without_axis(tangents, ctx.names, ctx.axis) if ctx.squeeze else tangents


class _LogSumExpEager(torch.autograd.Function):
    """Eager reverse mode without weights at ``t != 0`` on CPU and CUDA tensors
    (an ``nn.Module``'s training step): the rules of :class:`_LogSumExpReverse`
    in fewer Python steps. The caller (:func:`kernel`) has ruled out
    ``torch.compile``, ``torch.func`` transforms and forward mode and passes the
    Function's outputs (:func:`_rule_outputs`) as ``names``: nothing is saved
    for forward mode, and the backward goes to the fused kernels without
    checking again: each check costs ~0.3-1 us, and forward+backward of 16 and
    1000 elements measured 5-12% faster than through :class:`_LogSumExp`
    (``softmax`` of 16 float32 ~89 -> ~72 us; ``torch.softmax`` ~25 us)."""

    @staticmethod
    def forward(x, axis, temperature, names, squeeze):  # type: ignore[override]
        return _eager_forward_kernel(x, None, axis, temperature, names, squeeze)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        _, ctx.axis, ctx.temperature, names, ctx.squeeze = inputs
        ctx.names = names
        ctx.q_from_log = "q" not in names
        ctx.save_for_backward(output[0] if ctx.q_from_log else output[names.index("q")])
        if "sign" in names:
            ctx.mark_non_differentiable(output[names.index("sign")])
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        (saved,) = ctx.saved_tensors
        name, first = ctx.names[0], grads[0]
        if first is not None and name in _FUSED and all(g is None for g in grads[1:]):
            # the first output's cotangent alone (softmax or log_softmax, or
            # logsumexp's lse with q unused): no cotangent dict, each step counts
            if name == "lse":
                first = _lse_cotangent(ctx, first)
            grad = _fused_one(saved, ctx.q_from_log, name, first, ctx.axis, ctx.temperature)
            if grad is not None:
                return grad, None, None, None, None
        cotangents = _cotangents(ctx, grads)
        grad = _fused_grad(saved, ctx.q_from_log, cotangents, ctx.axis, ctx.temperature)
        if grad is None:
            q = _rule_q(saved, ctx.q_from_log)
            grad, _ = kernel_vjp(xp, q, None, cotangents, ctx.axis, ctx.temperature)
        return grad, None, None, None, None


#: ``_LogSumExpEager.apply`` without the binding of ``Function.apply`` (see below).
_apply_eager_reverse = super(torch.autograd.Function, _LogSumExpEager).apply


#: ``_LogSumExp.apply`` outside ``torch.func`` transforms: the C++ ``apply`` that
#: ``Function.apply`` ends in, without the ``inspect.signature`` binding of the
#: arguments it does first (~20 us a call; every argument here is positional).
_apply_eager = super(torch.autograd.Function, _LogSumExp).apply


def _may_need_derivative(x: torch.Tensor, weights: torch.Tensor | None) -> bool:
    if torch._C._functorch.is_functorch_wrapped_tensor(x):  # torch.func transforms
        return True
    if torch.is_grad_enabled() and (
        x.requires_grad or (weights is not None and weights.requires_grad)
    ):
        return True
    # Inside ``torch.autograd.forward_ad.dual_level()`` tensors may carry
    # tangents: take the registered JVP rule (the plain ops would give a tangent
    # of 1, not 0, on an all -inf slice).
    return _forward_ad._current_level >= 0


def plain_forward(x: torch.Tensor) -> bool:
    """Whether :func:`kernel` on ``x`` alone (no weights) runs the plain forward:
    no ``torch.compile``, no ``torch.func`` transform, no derivative to record."""
    return not (
        torch.compiler.is_compiling()
        or torch._C._are_functorch_transforms_active()
        or _may_need_derivative(x, None)
    )


def kernel(
    x: torch.Tensor,
    weights: torch.Tensor | None,
    axis: int,
    temperature: float,
    outputs: tuple[str, ...],
    squeeze: bool = False,
) -> tuple[Any, ...]:
    """The kernel, through autograd when a derivative may be asked for; with
    ``squeeze``, ``lse`` and ``sign`` without ``axis`` (not keepdims)."""
    if torch.compiler.is_compiling():
        values = _LogSumExpReverse.apply(x, weights, axis, temperature, outputs, squeeze)
    elif torch._C._are_functorch_transforms_active() or torch._C._functorch.is_functorch_wrapped_tensor(x):
        values = _LogSumExp.apply(x, weights, axis, temperature, outputs, squeeze)
    elif _may_need_derivative(x, weights):
        if weights is None and temperature != 0.0 and _forward_ad._current_level < 0 and (x.is_cpu or x.is_cuda):
            names = _rule_outputs(outputs, False, x, axis)
            values = _apply_eager_reverse(x, axis, temperature, names, squeeze)
        else:
            values = _apply_eager(x, weights, axis, temperature, outputs, squeeze)
    else:
        return _eager_forward_kernel(x, weights, axis, temperature, outputs, squeeze)
    return tuple(values[: len(outputs)])


# ---------------------------------------------------------------------------
# The log-domain family (``_logdomain_core``): the same pattern as above, one
# reverse-only Function for ``torch.compile`` and one with ``jvp``; every
# ``backward`` uses only differentiable operations on saved inputs and outputs
# of its own Function, so double backward works.
# ---------------------------------------------------------------------------

from . import _logdomain_core as _core  # noqa: E402
from ._kernel import kernel_jvp as _kernel_jvp  # noqa: E402


def _apply(reverse: Any, full: Any, plain: Any, *inputs: Any) -> Any:
    """``plain(*inputs)`` unless a derivative may be asked for of a tensor input."""
    if torch.compiler.is_compiling():
        return reverse.apply(*inputs)
    tensors = [value for value in inputs if isinstance(value, torch.Tensor)]
    if any(_may_need_derivative(value, None) for value in tensors):
        return full.apply(*inputs)
    return plain(*inputs)


class _LogSubExpReverse(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(a, b):  # type: ignore[override]
        return _core.logsubexp_forward(xp, a, b)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        a, b = ctx.saved_tensors
        d_a, d_b = _core.logsubexp_partials(xp, a, b)
        return grad * d_a, grad * d_b


class _LogSubExp(_LogSubExpReverse):
    @staticmethod
    def jvp(ctx, a_tangent, b_tangent):  # type: ignore[override]
        a, b = ctx.saved_tensors
        d_a, d_b = _core.logsubexp_partials(xp, a, b)
        terms = [d * t for d, t in ((d_a, a_tangent), (d_b, b_tangent)) if t is not None]
        return sum(terms[1:], terms[0]) if terms else torch.zeros_like(a)


def logsubexp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log(e^a - e^b)`` of same-shape tensors, with its derivative registered."""
    return _apply(_LogSubExpReverse, _LogSubExp, lambda a, b: _core.logsubexp_forward(xp, a, b), a, b)


class _LogCumSumExpReverse(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x):  # type: ignore[override]
        return _core.logcumsumexp_forward(xp, x)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        ctx.save_for_backward(inputs[0], output)
        ctx.save_for_forward(inputs[0], output)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, y = ctx.saved_tensors
        return _core.logcumsumexp_vjp(xp, x, y, grad)


class _LogCumSumExp(_LogCumSumExpReverse):
    @staticmethod
    def jvp(ctx, x_tangent):  # type: ignore[override]
        x, y = ctx.saved_tensors
        return _core.logcumsumexp_jvp(xp, x, y, x_tangent)


def logcumsumexp(x: torch.Tensor) -> torch.Tensor:
    """Log-cum-sum-exp along the last axis, with its derivative registered."""
    return _apply(
        _LogCumSumExpReverse, _LogCumSumExp, lambda x: _core.logcumsumexp_forward(xp, x), x
    )


class _LogMeanExpReverse(torch.autograd.Function):
    """Outputs ``(logmeanexp, q)``: the derivative is that of log-sum-exp (the
    ``- log n`` is constant), so the rules are the kernel's with ``q = softmax``,
    saved as an output so that double backward goes through this Function."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, count, axis):  # type: ignore[override]
        value = _core.logmeanexp_forward(xp, x, count, axis)
        (q,) = _plain_kernel(xp, x, None, axis, 1.0, ("q",))
        return value, q

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        ctx.axis = inputs[2]
        ctx.save_for_backward(output[1])
        ctx.save_for_forward(output[1])
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad_value, grad_q):  # type: ignore[override]
        (q,) = ctx.saved_tensors
        grad_x, _ = kernel_vjp(xp, q, None, {"lse": grad_value, "q": grad_q}, ctx.axis, 1.0)
        return grad_x, None, None


class _LogMeanExp(_LogMeanExpReverse):
    @staticmethod
    def jvp(ctx, x_tangent, *_):  # type: ignore[override]
        (q,) = ctx.saved_tensors
        return _kernel_jvp(xp, q, None, x_tangent, None, ctx.axis, 1.0, ("lse", "q"))


def logmeanexp(x: torch.Tensor, count: torch.Tensor, axis: int) -> torch.Tensor:
    """Log-mean-exp of ``axis`` (keepdims) with ``count`` entries, derivative registered."""
    if torch.compiler.is_compiling():
        return _LogMeanExpReverse.apply(x, count, axis)[0]
    if _may_need_derivative(x, None):
        return _LogMeanExp.apply(x, count, axis)[0]
    return _core.logmeanexp_forward(xp, x, count, axis)


def _matmul_shifts(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Cut from the graph: the result does not depend on the shift.
    return _core.log_matmul_exp_shifts(xp, a.detach(), b.detach())


class _LogMatmulExpReverse(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(a, b):  # type: ignore[override]
        return _core.log_matmul_exp_forward(xp, a, b)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        a, b = ctx.saved_tensors
        return _core.log_matmul_exp_vjp(xp, a, b, *_matmul_shifts(a, b), grad)


class _LogMatmulExp(_LogMatmulExpReverse):
    @staticmethod
    def jvp(ctx, a_tangent, b_tangent):  # type: ignore[override]
        a, b = ctx.saved_tensors
        return _core.log_matmul_exp_jvp(xp, a, b, *_matmul_shifts(a, b), a_tangent, b_tangent)


def log_matmul_exp(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``log(exp(a) @ exp(b))`` of same-batch tensors, with its derivative registered."""
    return _apply(
        _LogMatmulExpReverse, _LogMatmulExp, lambda a, b: _core.log_matmul_exp_forward(xp, a, b), a, b
    )
