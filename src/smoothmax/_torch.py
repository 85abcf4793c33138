"""PyTorch autograd adapter: registers the kernel's derivative rules.

One ``torch.autograd.Function`` with ``setup_context`` (so ``torch.func``
transforms work), a ``jvp`` (forward mode), a generated vmap rule, and a
``backward`` that is itself differentiable (double backward): it only uses the
saved outputs ``q``/``r`` of the same Function, so autograd differentiates it
through this Function again.

When no gradient can be asked for, the plain kernel runs with no
``autograd.Function`` overhead.
"""

from __future__ import annotations

from typing import Any

import torch
from array_api_compat import torch as xp

from ._kernel import kernel as _plain_kernel
from ._kernel import kernel_jvp, kernel_vjp, with_rule_inputs


class _LogSumExpReverse(torch.autograd.Function):
    """Reverse mode only: the variant ``torch.compile`` can trace (Dynamo does not
    support Functions that define ``jvp``)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, weights, axis, temperature, outputs):  # type: ignore[override]
        internal = with_rule_inputs(outputs, weights is not None)
        return _plain_kernel(xp, x, weights, axis, temperature, internal)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[override]
        x, weights, axis, temperature, outputs = inputs
        internal = with_rule_inputs(outputs, weights is not None)
        named = dict(zip(internal, output))
        ctx.names = internal
        ctx.axis = axis
        ctx.temperature = temperature
        ctx.has_weights = weights is not None
        ctx.save_for_backward(named["q"], named.get("r"))
        ctx.save_for_forward(named["q"], named.get("r"))
        if "sign" in named:
            ctx.mark_non_differentiable(named["sign"])
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        q, r = ctx.saved_tensors
        cotangents = dict(zip(ctx.names, grads))
        grad_x, grad_weights = kernel_vjp(xp, q, r, cotangents, ctx.axis, ctx.temperature)
        return grad_x, (grad_weights if ctx.has_weights else None), None, None, None



class _LogSumExp(_LogSumExpReverse):
    """Reverse and forward mode, for eager autograd and ``torch.func``."""

    @staticmethod
    def jvp(ctx, x_tangent, weights_tangent, *_):  # type: ignore[override]
        q, r = ctx.saved_tensors
        return kernel_jvp(
            xp, q, r, x_tangent, weights_tangent, ctx.axis, ctx.temperature, ctx.names
        )


def _may_need_derivative(x: torch.Tensor, weights: torch.Tensor | None) -> bool:
    if torch._C._functorch.is_functorch_wrapped_tensor(x):  # torch.func transforms
        return True
    if torch.is_grad_enabled() and (
        x.requires_grad or (weights is not None and weights.requires_grad)
    ):
        return True
    return torch._C._forward_ad_enabled() if hasattr(torch._C, "_forward_ad_enabled") else False


def kernel(
    x: torch.Tensor,
    weights: torch.Tensor | None,
    axis: int,
    temperature: float,
    outputs: tuple[str, ...],
) -> tuple[Any, ...]:
    """The kernel, through autograd when a derivative may be asked for."""
    if torch.compiler.is_compiling():
        values = _LogSumExpReverse.apply(x, weights, axis, temperature, outputs)
    elif _may_need_derivative(x, weights):
        values = _LogSumExp.apply(x, weights, axis, temperature, outputs)
    else:
        return _plain_kernel(xp, x, weights, axis, temperature, outputs)
    return tuple(values[: len(outputs)])
