"""JAX adapter: registers the kernel's derivative rules with ``jax.custom_jvp``.

Reverse mode (``jax.grad``) comes from JAX transposing the linear JVP, so the
gradient of ``logsumexp`` is ``q * 1``, the very array ``softmax`` returns. The
JVP rule calls the custom function itself, so ``jax.hessian`` (forward over
reverse) again uses the registered rule rather than differentiating ``argmax``
and ``where`` of the kernel.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from ._kernel import kernel as _plain_kernel
from ._kernel import kernel_jvp, with_rule_inputs


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _logsumexp(x, weights, axis, temperature, outputs):
    # JAX may hand the rule raw NumPy constants (e.g. jax.test_util.check_grads).
    x = jnp.asarray(x)
    weights = None if weights is None else jnp.asarray(weights)
    return _plain_kernel(jnp, x, weights, axis, temperature, outputs)


@_logsumexp.defjvp
def _logsumexp_jvp(axis, temperature, outputs, primals, tangents):
    x, weights = primals
    x_tangent, weights_tangent = tangents
    internal = with_rule_inputs(outputs, weights is not None)
    values = dict(zip(internal, _logsumexp(x, weights, axis, temperature, internal)))
    tangent_values = kernel_jvp(
        jnp,
        values["q"],
        values.get("r"),
        x_tangent,
        weights_tangent if weights is not None else None,
        axis,
        temperature,
        outputs,
    )
    return tuple(values[name] for name in outputs), tangent_values


def kernel(
    x: jax.Array,
    weights: jax.Array | None,
    axis: int,
    temperature: float,
    outputs: tuple[str, ...],
) -> tuple[Any, ...]:
    """The kernel with its JVP registered (traceable under jit, vmap, grad)."""
    return _logsumexp(x, weights, axis, temperature, outputs)
