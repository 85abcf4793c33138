"""Streaming log-sum-exp: fold chunks into a small state, merge states, finalize.

A state holds, per output element, the running maximum ``m`` and

    rest = sum_i exp(x_i - m)   over every term seen *except one instance of m*,

so that the value is ``m + log1p(rest)``: the same pivot form the kernel uses,
which keeps full relative accuracy when one term dominates. Merging two states
with ``m1 >= m2`` is

    m = m1,   rest = rest1 + (1 + rest2) * exp(m2 - m1)

(the pivot of the smaller state becomes an ordinary term), and with ``m1 == m2``
``rest = (rest1 + rest2) + 1``, written symmetrically so that merging is
commutative bit for bit. The empty state ``(-inf, 0)`` is the identity.

Special values follow ``semantics.md``: ``+inf`` dominates (``rest`` then counts
the other ``+inf`` entries), NaN poisons (a NaN state has NaN in both fields),
``-inf`` entries are absent.

Dtypes: ``maximum`` keeps the input's floating dtype (it is always one of the
inputs, so that is exact), ``rest`` is held in the compute dtype (float32 for
float16/bfloat16), and :func:`lse_finalize` returns the ``maximum`` dtype.

:func:`chunk_parts` (the state of one slice, backend-agnostic) is shared with
``logmeanexp`` and ``logcumsumexp``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np
from array_api_compat import device

from ._kernel import _constant, _pivot_mask, axis_sum, shift_at_limits
from ._backends import namespace
from ._prepare import floating_dtypes, prepare
from ._refine import refine_rest, two_sum_error


class LSEState(NamedTuple):
    """Streaming log-sum-exp state; the value is ``maximum + log1p(rest)``.

    A ``NamedTuple``, so it is a JAX pytree (it passes through ``jit``,
    ``vmap`` and ``lax.scan``) and immutable.

    Attributes
    ----------
    maximum : array
        Largest entry seen so far, in the output dtype (``-inf`` when empty,
        ``+inf`` if any entry was ``+inf``, NaN if any was NaN).
    rest : array
        :math:`\\sum_i e^{x_i - m}` over the entries seen, leaving out one
        instance of the maximum, in the compute dtype (float32 for half types).
        ``0`` for the empty state; the number of further ``+inf`` entries when
        ``maximum`` is ``+inf``.
    """

    maximum: Any
    rest: Any


# --------------------------------------------------------------------------
# Backend-agnostic core (arrays of the compute dtype)
# --------------------------------------------------------------------------


def chunk_parts(xp: Any, x: Any, axis: int) -> tuple[Any, Any]:
    """``(maximum, rest)`` of each slice along ``axis`` of the prepared ``x``
    (floating compute dtype, absent entries ``-inf``), keepdims shape."""
    size = x.shape[axis]
    if size == 0:
        reduced = tuple(1 if i == axis else n for i, n in enumerate(x.shape))
        return (
            xp.full(reduced, -math.inf, dtype=x.dtype, device=device(x)),
            xp.zeros(reduced, dtype=x.dtype, device=device(x)),
        )
    zero = _constant(xp, 0.0, x)
    index = xp.argmax(x, axis=axis, keepdims=True)
    maximum = xp.max(x, axis=axis, keepdims=True)  # the value at `index` (Dask has no take_along_axis)
    # +inf slices: rescale so that the +inf entries are 0 and the rest -inf;
    # `rest` then counts the further +inf entries (the 1/k of the softmax).
    x, shift = shift_at_limits(xp, x, maximum)
    scaled = xp.exp(x - shift)
    pivot = _pivot_mask(xp, index, axis, size, x.ndim)
    rest = axis_sum(xp, xp.where(pivot, zero, scaled), axis)
    if x.__class__ is np.ndarray:  # Dask's blocks, NumPy streams: eager
        rest = refine_rest(xp, x, maximum, rest, axis)
    # NaN anywhere poisons both fields, whichever index argmax picked.
    maximum = xp.where(xp.isnan(rest), rest, maximum)
    return maximum, rest


def merge_parts(xp: Any, m_a: Any, r_a: Any, m_b: Any, r_b: Any) -> tuple[Any, Any]:
    """Merge two states given as arrays of one compute dtype (broadcasting)."""
    zero = _constant(xp, 0.0, r_a)
    one = _constant(xp, 1.0, r_a)
    nan = _constant(xp, math.nan, r_a)
    a_high = m_a >= m_b
    high = xp.where(a_high, m_a, m_b)
    low = xp.where(a_high, m_b, m_a)
    rest_high = xp.where(a_high, r_a, r_b)
    rest_low = xp.where(a_high, r_b, r_a)
    tie = m_a == m_b
    # Ties (also +inf with +inf, -inf with -inf) never subtract: no inf - inf.
    low = xp.where(tie, zero, low)
    high_or_zero = xp.where(tie, zero, high)
    gap = low - high_or_zero
    # exp(gap + error) ~ exp(gap) (1 + error): the rounding of the gap, which exp
    # would turn into |gap| times more relative error (exp(-5 - 1.5e-14): 2.6 ulp)
    finite = xp.isfinite(gap)
    error = two_sum_error(xp, xp.where(finite, low, zero), -xp.where(finite, high_or_zero, zero),
                          xp.where(finite, gap, zero))
    scaled = xp.exp(gap) * (one + rest_low)
    untied = rest_high + (scaled + scaled * error)
    tied = (r_a + r_b) + one  # symmetric in a and b: commutative bit for bit
    rest = xp.where(tie, tied, untied)
    rest = xp.where(high == -math.inf, zero, rest)  # empty merged with empty
    poisoned = xp.isnan(m_a) | xp.isnan(m_b)
    return xp.where(poisoned, nan, high), xp.where(poisoned, nan, rest)


def finalize_parts(xp: Any, maximum: Any, rest: Any) -> Any:
    """``maximum + log1p(rest)`` in the compute dtype."""
    return maximum + xp.log1p(rest)


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def _namespace_of_state(state: Any, argument: str) -> Any:
    if not isinstance(state, LSEState):
        raise TypeError(f"{argument} must be an LSEState; got {type(state).__name__}")
    xp = namespace(state.maximum)
    if namespace(state.rest) is not xp:
        raise TypeError(f"{argument}.maximum and {argument}.rest are of different namespaces")
    return xp


def lse_init(shape: int | tuple[int, ...], *, like: Any) -> LSEState:
    r"""The empty streaming log-sum-exp state (value :math:`-\infty`).

    Parameters
    ----------
    shape : int or tuple of ints
        Shape of the result: one state per output element.
    like : array
        Gives the namespace, floating dtype and device. Integer and boolean
        arrays give the namespace's default floating dtype.

    Returns
    -------
    LSEState
        ``maximum`` full of ``-inf`` (``like``'s floating dtype) and ``rest``
        zeros (the compute dtype: float32 for float16 and bfloat16).

    Examples
    --------
    >>> import numpy as np
    >>> from smoothmax import lse_init, lse_finalize
    >>> state = lse_init((2,), like=np.zeros(1))
    >>> lse_finalize(state)
    array([-inf, -inf])
    """
    xp = namespace(like)
    output, compute = floating_dtypes(xp, like)
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (int(shape),)
    if not isinstance(shape, tuple) or not all(
        isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise TypeError(f"shape must be an int or a tuple of non-negative ints; got {shape!r}")
    where = device(like)
    return LSEState(
        xp.full(shape, -math.inf, dtype=output, device=where),
        xp.zeros(shape, dtype=compute, device=where),
    )


def lse_update(
    state: LSEState, x: Any, *, axis: int | tuple[int, ...] | None = None
) -> LSEState:
    r"""Fold the chunk ``x`` into ``state``, reducing ``axis`` of ``x``.

    .. math::

        \operatorname{finalize}(\operatorname{update}(s, x))
        = \log\bigl(e^{\operatorname{finalize}(s)} + \textstyle\sum_i e^{x_i}\bigr).

    The chunk's own state (its maximum :math:`m_x` and
    :math:`\sum_{i \ne k} e^{x_i - m_x}`, one pass as in :func:`logsumexp`) is
    merged into ``state`` with :func:`lse_merge`.

    Parameters
    ----------
    state : LSEState
        Shape must broadcast with ``x``'s shape without the ``axis`` dimensions.
    x : array
        A chunk, same namespace as ``state``; converted to the state's dtype.
    axis : int, tuple of ints or None, optional
        Axes of ``x`` to fold in; ``None`` (default) folds all of them.

    Returns
    -------
    LSEState
        A new state (``state`` is not modified).

    Examples
    --------
    >>> import numpy as np
    >>> from smoothmax import lse_init, lse_update, lse_finalize, logsumexp
    >>> x = np.array([[0.0, 1.0, 2.0], [-40.0, -40.0, 0.0]])
    >>> state = lse_init((2,), like=x)
    >>> for chunk in (x[:, :2], x[:, 2:]):
    ...     state = lse_update(state, chunk, axis=1)
    >>> bool(np.all(lse_finalize(state) == logsumexp(x, axis=1)))
    True
    """
    xp = _namespace_of_state(state, "state")
    if _namespace_or_none(x) is not xp:
        raise TypeError(
            f"x must be an array of the state's namespace ({xp.__name__}); got {type(x).__name__}"
        )
    floating_dtypes(xp, x)  # TypeError for complex or non-numeric x
    if x.dtype != state.maximum.dtype:
        x = xp.astype(x, state.maximum.dtype)
    prepared = prepare(x, axis)
    maximum, rest = chunk_parts(xp, prepared.x, prepared.axis)
    reduced_shape = tuple(n for i, n in enumerate(prepared.shape) if i not in prepared.axes)
    maximum = prepared.cast(xp.reshape(maximum, reduced_shape))  # exact: one of the inputs
    rest = xp.reshape(rest, reduced_shape)
    if not _broadcastable(tuple(state.maximum.shape), reduced_shape):
        raise ValueError(
            f"state of shape {tuple(state.maximum.shape)} does not broadcast with the shape "
            f"{reduced_shape} of x without its axis {axis!r}"
        )
    return _merge(xp, state, LSEState(maximum, rest))


def _namespace_or_none(value: Any) -> Any:
    try:
        return namespace(value)
    except TypeError:
        return None


def _broadcastable(first: tuple[int, ...], second: tuple[int, ...]) -> bool:
    return all(m == n or m == 1 or n == 1 for m, n in zip(reversed(first), reversed(second)))


def _merge(xp: Any, a: LSEState, b: LSEState) -> LSEState:
    output = xp.result_type(a.maximum.dtype, b.maximum.dtype)
    compute = xp.result_type(a.rest.dtype, b.rest.dtype)
    m_a, m_b = (m if m.dtype == compute else xp.astype(m, compute) for m in (a.maximum, b.maximum))
    r_a, r_b = (r if r.dtype == compute else xp.astype(r, compute) for r in (a.rest, b.rest))
    maximum, rest = merge_parts(xp, m_a, r_a, m_b, r_b)
    if maximum.dtype != output:
        maximum = xp.astype(maximum, output)  # exact: it is one of the inputs
    return LSEState(maximum, rest)


def lse_merge(a: LSEState, b: LSEState) -> LSEState:
    r"""Merge two streaming states: the state of the union of their entries.

    For :math:`m_a > m_b`

    .. math::

        m = m_a, \qquad r = r_a + (1 + r_b)\, e^{m_b - m_a},

    and for :math:`m_a = m_b`, :math:`r = (r_a + r_b) + 1`. Commutative bit for
    bit, associative up to rounding, with the empty state as identity; ``+inf``
    dominates and NaN poisons. Shapes broadcast.

    Parameters
    ----------
    a, b : LSEState
        States of the same namespace (dtypes are promoted).

    Returns
    -------
    LSEState

    Examples
    --------
    >>> import numpy as np
    >>> from smoothmax import lse_init, lse_update, lse_merge, lse_finalize
    >>> empty = lse_init((), like=np.zeros(()))
    >>> a = lse_update(empty, np.array([0.0, -40.0]))
    >>> b = lse_update(empty, np.array([-40.0, -40.0]))
    >>> float(lse_finalize(lse_merge(a, b)))  # 3 e^-40
    1.2745062765874767e-17
    """
    xp = _namespace_of_state(a, "a")
    if _namespace_of_state(b, "b") is not xp:
        raise TypeError("a and b are states of different namespaces")
    return _merge(xp, a, b)


def lse_finalize(state: LSEState) -> Any:
    r"""The log-sum-exp a state represents: :math:`m + \operatorname{log1p}(r)`.

    Parameters
    ----------
    state : LSEState

    Returns
    -------
    array
        ``state.maximum``'s shape and dtype; ``-inf`` for the empty state.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothmax import LSEState, lse_finalize
    >>> float(lse_finalize(LSEState(np.float64(0.0), np.float64(1.0))))  # log 2
    0.6931471805599453
    """
    xp = _namespace_of_state(state, "state")
    maximum = state.maximum
    compute = state.rest.dtype
    value = finalize_parts(xp, maximum if maximum.dtype == compute else xp.astype(maximum, compute), state.rest)
    return value if value.dtype == maximum.dtype else xp.astype(value, maximum.dtype)
