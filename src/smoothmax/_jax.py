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

from . import _fastpaths, _refine
from ._fastpaths import _jax_any
from ._fastpaths import jax_kernel as _fast_jax_kernel
from ._kernel import kernel as _plain_kernel
from ._kernel import kernel_jvp, with_rule_inputs


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _logsumexp(x, weights, axis, temperature, outputs):
    # JAX may hand the rule raw NumPy constants (e.g. jax.test_util.check_grads).
    x = jnp.asarray(x)
    weights = None if weights is None else jnp.asarray(weights)
    # The generic kernel's results through XLA-friendly operations (smoothmax._fastpaths).
    refine = (
        weights is None
        and ("lse" in outputs or "log_q" in outputs)
        and x.shape[axis] > 1
        and _refine.applies(jnp, x, temperature)
    )
    if not refine:
        return _fast_jax_kernel(jnp, x, weights, axis, temperature, outputs)
    # small float32 arrays: lse and log_q from a float64 sum, refined without a
    # lax.cond (smoothmax._fastpaths.jax_refined_kernel)
    values = _fastpaths.jax_refined_kernel(x, axis, temperature, outputs, _kernel_then_refinement)
    if values is not None:
        return values
    return _kernel_then_refinement(x, axis, temperature, outputs)


def _kernel_then_refinement(x: Any, axis: int, temperature: float, outputs: tuple[str, ...]) -> tuple[Any, ...]:
    """The fast kernel's ``outputs`` (no weights) with ``lse`` and ``log_q``
    refined where one term dominates (smoothmax._refine); ``log_q`` alone asks
    for ``lse`` too, which the check reads. (Always traced: the kernel runs
    under jit, _logsumexp_compiled; the cond decides at run time.)"""
    asked = outputs if "lse" in outputs else outputs + ("lse",)
    values = dict(zip(asked, _fast_jax_kernel(jnp, x, None, axis, temperature, asked)))
    lse, dominated, maximum, log_sum = _refiner(axis, temperature)(x, values["lse"])
    values["lse"] = lse
    if "log_q" in values:
        values["log_q"] = _refine.refine_log_q(
            jnp, x, values["log_q"], dominated, maximum, log_sum, axis, temperature
        )
    return tuple(values[name] for name in outputs)


def _compensated_sum(xp: Any, high: Any, low: Any, axis: int, count: Any = None) -> tuple[Any, ...]:
    """``sum(high + low, axis=axis)`` (keepdims) as ``(high, low)``: one ``lax.reduce``
    whose combiner adds the TwoSum error of each addition into the low part, in
    whatever order XLA takes (the folds of the generic version compile ~3x slower).
    With ``count``, its plain sum too, in the same reduction: ``(high, low, count)``."""

    def combine(a: tuple[Any, ...], b: tuple[Any, ...]) -> tuple[Any, ...]:
        total = a[0] + b[0]
        summed = (total, a[1] + b[1] + _refine.two_sum_error(jnp, a[0], b[0], total))
        return summed if count is None else summed + (a[2] + b[2],)

    operands = (high, low) if count is None else (high, low, count)
    zero = jnp.zeros((), high.dtype)
    sums = jax.lax.reduce(operands, (zero,) * len(operands), combine, (axis,))
    return tuple(jnp.expand_dims(value, axis) for value in sums)


@functools.lru_cache(maxsize=None)
def _refiner(axis: int, temperature: float) -> Any:
    """``refine(x, lse)``: ``(lse, dominated, maximum, log_sum)`` of
    :func:`smoothmax._refine.refine_everywhere` (reduced arrays: ``lse`` with the
    slices where one term dominates recomputed in extended precision, and what
    :func:`smoothmax._refine.refine_log_q` needs), in a ``lax.cond`` taken only
    where some ``|lse|`` is small enough to need it; otherwise ``dominated`` is
    False everywhere."""

    def refine_all(x: Any, lse: Any) -> tuple[Any, ...]:
        return _refine.refine_everywhere(jnp, x, lse, axis, temperature, _compensated_sum)

    def keep(x: Any, lse: Any) -> tuple[Any, ...]:
        slices = lse.size  # one value a slice
        zeros = jnp.zeros((slices, 1), x.dtype)
        return lse, jnp.zeros((slices, 1), bool), zeros, zeros

    def refine(x: Any, lse: Any) -> tuple[Any, ...]:
        # under vmap the predicate is taken over the whole batch (_jax_any):
        # a batched one would turn the cond into a select computing the costly branch
        candidates = _jax_any(_refine.candidates(jnp, lse, temperature))
        return jax.lax.cond(candidates, refine_all, keep, x, lse)

    return refine


@_logsumexp.defjvp
def _logsumexp_jvp(axis, temperature, outputs, primals, tangents):
    x, weights = primals
    x_tangent, weights_tangent = tangents
    internal = with_rule_inputs(outputs, weights is not None)
    scaled = _scaled_tangent(x, weights, axis, temperature, outputs)
    if scaled:
        internal += tuple(name for name in ("exp", "total") if name not in internal)
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
        scaled=(values["exp"], values["total"]) if scaled else None,
    )
    return tuple(values[name] for name in outputs), tangent_values


#: Along the last axis, slices up to this long keep ``q``'s usual tangent
#: (:func:`_scaled_tangent`).
_SCALED_TANGENT_LONGER_THAN = 1024


def _scaled_tangent(x: Any, weights: Any, axis: int, temperature: float, outputs: tuple[str, ...]) -> bool:
    """Whether the rule writes ``q``'s tangent from ``e = exp(d)`` and ``total``
    (``scaled`` of :func:`smoothmax._kernel.kernel_jvp`), which JAX's kernel
    returns beside ``q`` (``smoothmax._fastpaths._JAX_RULE_OUTPUTS``): where its
    fast path runs (no weights, ``t > 0``, float32/float64, fast paths on),
    except along a last axis of at most ``_SCALED_TANGENT_LONGER_THAN``.

    The usual tangent ``q (dx - <q, dx>)`` transposes into ``u - q <1, u>`` with
    ``u = q g``, which XLA:CPU writes out as a full-size array for its two
    consumers (a pass more to write and one to read); the scaled one reduces
    ``e g``, fused into the reduction from the ``e`` the forward wrote, as
    ``jax.nn.softmax``'s gradient does. ``softmax`` forward+backward under
    ``jit``, time of the scaled form over the usual (one process, nine
    interleaved rounds): (10_000_000,) 0.68 float32 / 0.76 float64,
    (16, 625_000) 0.68, (64, 65_536) 0.53, (1024, 4096) 0.57 / 0.74,
    (2048, 2048) 0.70, along axis 1 of (16, 4096, 64) 0.55, along axis 0 of
    (16384, 256) 0.55 and (4096, 1024) 0.92; along the first axis of 4096
    slices, against the form ``q dx - q a`` kept there before, 0.95-0.99. Rows
    of 256-1024 along the last axis measured 1.01-1.07 ((4096, 1024),
    (8192, 512), (32, 8, 256, 256)): they keep the usual form. On an H200 (seven
    rounds): 0.80 at (1024, 4096), 0.96 at (10_000_000,) float32 and float64,
    0.97-1.00 along axis 0 of (1024, 4096) and (16384, 256) and at (64, 65_536);
    rows of 256 and 1024 there 0.99-1.03."""
    return (
        "q" in outputs
        and weights is None
        and temperature > 0.0
        and _fastpaths.ENABLED
        and x.dtype in (jnp.float32, jnp.float64)
        and x.shape[axis] > 0
        and not (axis == x.ndim - 1 and x.shape[axis] <= _SCALED_TANGENT_LONGER_THAN)
    )


def kernel(
    x: jax.Array,
    weights: jax.Array | None,
    axis: int,
    temperature: float,
    outputs: tuple[str, ...],
) -> tuple[Any, ...]:
    """The kernel with its JVP registered (traceable under jit, vmap, grad), as
    one compiled program per shape (:data:`_logsumexp_compiled`)."""
    return _logsumexp_compiled(x, weights, axis, temperature, outputs)


# Eager calls run the kernel as one program, compiled once per shape, dtype and
# static arguments; op by op, JAX would compile and dispatch each of its dozens
# of operations (and the lax.cond branches) on every call: measured 5 ms a call
# at 16 elements and 0.7 s at (4096, 1024), against 0.1 and 2 ms compiled
# (jax.nn.logsumexp eagerly: 0.35 and 10 ms). jit of a custom_jvp function keeps
# the rule for grad, jvp and vmap; inside a user's jit it is inlined.
_logsumexp_compiled = jax.jit(_logsumexp, static_argnums=(2, 3, 4))


# ---------------------------------------------------------------------------
# The log-domain family (``_logdomain_core``): each JVP rule calls its own
# custom function for the primal output, so higher derivatives use the rule
# again; every tangent enters linearly, so ``jax.grad`` transposes it.
# ---------------------------------------------------------------------------

from . import _logdomain_core as _core  # noqa: E402


@jax.custom_jvp
def logsubexp(a: jax.Array, b: jax.Array) -> jax.Array:
    """``log(e^a - e^b)`` of same-shape arrays, with its JVP registered."""
    return _core.logsubexp_forward(jnp, jnp.asarray(a), jnp.asarray(b))


@logsubexp.defjvp
def _logsubexp_jvp(primals, tangents):
    a, b = primals
    a_tangent, b_tangent = tangents
    d_a, d_b = _core.logsubexp_partials(jnp, jnp.asarray(a), jnp.asarray(b))
    return logsubexp(a, b), d_a * a_tangent + d_b * b_tangent


@jax.custom_jvp
def logcumsumexp(x: jax.Array) -> jax.Array:
    """Log-cum-sum-exp along the last axis, with its JVP registered."""
    return _core.logcumsumexp_forward(jnp, jnp.asarray(x))


@logcumsumexp.defjvp
def _logcumsumexp_jvp(primals, tangents):
    (x,) = primals
    (x_tangent,) = tangents
    x = jnp.asarray(x)
    y = logcumsumexp(x)
    return y, _core.logcumsumexp_jvp(jnp, x, y, x_tangent)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def logmeanexp(x: jax.Array, count: jax.Array, axis: int) -> jax.Array:
    """Log-mean-exp of ``axis`` (keepdims) with ``count`` entries, JVP registered:
    the derivative is log-sum-exp's, ``<softmax(x), dx>``."""
    return _core.logmeanexp_forward(jnp, jnp.asarray(x), jnp.asarray(count), axis)


@logmeanexp.defjvp
def _logmeanexp_jvp(axis, primals, tangents):
    x, count = primals
    x_tangent, _ = tangents  # the count of entries is not differentiable
    (q,) = _logsumexp(jnp.asarray(x), None, axis, 1.0, ("q",))
    return logmeanexp(x, count, axis), jnp.sum(q * x_tangent, axis=axis, keepdims=True)


# The matrix products at the full precision of their dtype: JAX's default on
# GPUs multiplies float32 in TensorFloat-32 (10-bit mantissa), 177 ulps off on
# the conformance suite's log_matmul_exp/k=256 (an H200).
_MATMUL_PRECISION = "highest"


@jax.custom_jvp
def log_matmul_exp(a: jax.Array, b: jax.Array) -> jax.Array:
    """``log(exp(a) @ exp(b))`` of same-batch arrays, with its JVP registered."""
    with jax.default_matmul_precision(_MATMUL_PRECISION):
        return _core.log_matmul_exp_forward(jnp, jnp.asarray(a), jnp.asarray(b))


@log_matmul_exp.defjvp
def _log_matmul_exp_jvp(primals, tangents):
    a, b = (jnp.asarray(value) for value in primals)
    a_tangent, b_tangent = tangents
    # Shifts cut from the graph: the result does not depend on them.
    row_max, column_max = _core.log_matmul_exp_shifts(
        jnp, jax.lax.stop_gradient(a), jax.lax.stop_gradient(b)
    )
    with jax.default_matmul_precision(_MATMUL_PRECISION):
        tangent = _core.log_matmul_exp_jvp(jnp, a, b, row_max, column_max, a_tangent, b_tangent)
    return log_matmul_exp(a, b), tangent


# As the kernel (_logsumexp_compiled): one compiled program per shape for eager
# calls, the custom JVP rules kept (each rule calls the compiled function).
# logcumsumexp's scan alone is many small operations: seconds per new shape op by op.
logsubexp = jax.jit(logsubexp)
logcumsumexp = jax.jit(logcumsumexp)
logmeanexp = jax.jit(logmeanexp, static_argnums=(2,))
log_matmul_exp = jax.jit(log_matmul_exp)
