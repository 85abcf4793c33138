"""The log-domain family: addition, subtraction, prefix sums, means and matrix
products of numbers held as their logarithms, on any Array API namespace.

``logaddexp``, ``logmeanexp`` and ``log1psumexp`` run on the log-sum-exp kernel
(so they inherit its special values and its registered derivatives);
``logsubexp``, ``logcumsumexp``, ``log_matmul_exp`` (and the value of
``logmeanexp``) are primitives of ``_logdomain_core`` whose derivative rules are
registered with PyTorch and JAX by ``_torch`` / ``_jax``.
"""

from __future__ import annotations

import functools
import importlib
import math
import numbers
import warnings
from typing import Any, Callable

from . import _backends
from . import _logdomain_core as _core
from ._prepare import floating_dtypes, normalize_axes, prepare

# ---------------------------------------------------------------------------
# Dispatch and argument handling
# ---------------------------------------------------------------------------

_PLAIN: dict[str, Callable[..., Any]] = {
    "logsubexp": _core.logsubexp_forward,
    "logcumsumexp": _core.logcumsumexp_forward,
    "logmeanexp": _core.logmeanexp_forward,
    "log_matmul_exp": _core.log_matmul_exp_forward,
}
_primitives: dict[tuple[str, str], Callable[..., Any]] = {}


def _primitive(xp: Any, name: str) -> Callable[..., Any]:
    """The primitive ``name`` for namespace ``xp``: the adapter's version with its
    derivative registered (torch, jax), else the plain backend-agnostic forward.
    A plain dict cache, as ``_backends.kernel_for``, so warm lookups trace."""
    key = (xp.__name__, name)
    found = _primitives.get(key)
    if found is None:
        adapter = _backends.AUTODIFF_ADAPTERS.get(xp.__name__)
        own = _backends.BACKEND_KERNELS.get(xp.__name__)  # e.g. Dask's single-pass logmeanexp
        if adapter is not None:
            found = getattr(importlib.import_module(adapter), name)
        elif own is not None and hasattr(importlib.import_module(own), name):
            found = getattr(importlib.import_module(own), name)
        else:
            found = functools.partial(_PLAIN[name], xp)
        _primitives[key] = found
    return found


def _check_real(xp: Any, value: Any, name: str) -> None:
    dtype = value.dtype
    if xp.isdtype(dtype, "complex floating"):
        raise TypeError(f"{name} has complex dtype {dtype}; only real inputs are supported")
    if not xp.isdtype(dtype, ("real floating", "integral", "bool")):
        raise TypeError(f"{name} has unsupported dtype {dtype}; expected a real or integer dtype")


def _namespace(value: Any, name: str) -> Any:
    try:
        return _backends.namespace(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an array of an Array API namespace (numpy, torch, jax, "
            f"array_api_strict, dask, ...); got {type(value).__name__}"
        ) from None


def _to_floating(xp: Any, value: Any) -> Any:
    output, _ = floating_dtypes(xp, value)
    return value if value.dtype == output else xp.astype(value, output)


def _broadcast_shapes(first: tuple[int, ...], second: tuple[int, ...], message: str) -> tuple[int, ...]:
    ndim = max(len(first), len(second))
    first = (1,) * (ndim - len(first)) + first
    second = (1,) * (ndim - len(second)) + second
    shape = []
    for m, n in zip(first, second):
        if m != n and 1 not in (m, n):
            raise ValueError(message)
        shape.append(n if m == 1 else m)
    return tuple(shape)


def _binary(a: Any, b: Any, names: tuple[str, str] = ("a", "b")) -> tuple[Any, Any, Any, Any]:
    """``(xp, a, b, output_dtype)``: ``a`` and ``b`` as floating arrays of one
    namespace and dtype, broadcast to one shape. One of them may be a Python
    number (it takes the other's dtype)."""
    first, second = names
    a_is_number = isinstance(a, numbers.Real) and not isinstance(a, bool)
    b_is_number = isinstance(b, numbers.Real) and not isinstance(b, bool)
    if a_is_number and b_is_number:
        raise TypeError(f"{first} and {second} are both Python numbers; at least one must be an array")
    if a_is_number:
        xp = _namespace(b, second)
        _check_real(xp, b, second)
        b = _to_floating(xp, b)
        a = xp.asarray(float(a), dtype=b.dtype, device=_backends.device(b))
    elif b_is_number:
        xp = _namespace(a, first)
        _check_real(xp, a, first)
        a = _to_floating(xp, a)
        b = xp.asarray(float(b), dtype=a.dtype, device=_backends.device(a))
    else:
        xp = _namespace(a, first)
        other = _namespace(b, second)
        if other is not xp:
            raise TypeError(
                f"{second} is an array of namespace {other.__name__} but {first} is of namespace "
                f"{xp.__name__}: mixed namespaces are not supported"
            )
        _check_real(xp, a, first)
        _check_real(xp, b, second)
        a, b = _to_floating(xp, a), _to_floating(xp, b)
    output = xp.result_type(a.dtype, b.dtype)
    a = a if a.dtype == output else xp.astype(a, output)
    b = b if b.dtype == output else xp.astype(b, output)
    if tuple(a.shape) != tuple(b.shape):
        shape = _broadcast_shapes(
            tuple(a.shape),
            tuple(b.shape),
            f"{first} of shape {tuple(a.shape)} and {second} of shape {tuple(b.shape)} do not broadcast",
        )
        a, b = xp.broadcast_to(a, shape), xp.broadcast_to(b, shape)
    return xp, a, b, output


def _compute_dtype(xp: Any, dtype: Any) -> Any:
    return dtype if dtype in (xp.float32, xp.float64) else xp.float32


def _cast(xp: Any, value: Any, dtype: Any) -> Any:
    return value if value.dtype == dtype else xp.astype(value, dtype)


def _wide_dtype(xp: Any, dtype: Any, where: Any) -> Any:
    """float64 for computing a float32 (or half) elementwise result, where the
    namespace has float64 on that device (not jax without x64, not torch on
    MPS); else None. The result then rounds once to ``dtype``: <= 1 ulp, where
    three float32 roundings (exp, log1p, the sum) can reach 1.3 ulp."""
    if dtype == xp.float64:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probe = xp.zeros((), dtype=xp.float64, device=where)
    except Exception:  # no float64 on this device
        return None
    return xp.float64 if probe.dtype == xp.float64 else None


# ---------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------


def logaddexp(a: Any, b: Any, /) -> Any:
    r"""Logarithm of the sum of exponentials, elementwise: :math:`\log(e^a + e^b)`.

    .. math::

        \operatorname{logaddexp}(a, b) = m + \operatorname{log1p}(e^{-|a - b|}),
        \qquad m = \max(a, b),

    the addition of the log semiring and the two-term :func:`logsumexp`. It runs
    on the log-sum-exp kernel, so the special values are those of
    ``semantics.md`` (``logaddexp(-inf, -inf) = -inf`` with gradient ``(0, 0)``,
    never NaN; a ``+inf`` dominates; ``(+inf, +inf)`` has gradient
    ``(1/2, 1/2)``; NaN propagates), and the gradient is the two-term softmax
    :math:`(e^{a - out}, e^{b - out})`. Accurate to 1 ulp: float32 and the half
    types are computed in float64 where the namespace has it (three float32
    roundings, of ``exp``, ``log1p`` and the sum, can reach 1.3 ulp).

    Parameters
    ----------
    a, b : array or Python number
        Broadcastable arrays of one namespace (at most one may be a Python
        number). Integer and boolean arrays are promoted to the default floating
        dtype; float16 and bfloat16 are computed in float32.

    Returns
    -------
    array
        The broadcast shape, in the promoted floating dtype of ``a`` and ``b``.

    Raises
    ------
    TypeError
        Not arrays, mixed namespaces, complex or non-numeric dtypes.
    ValueError
        ``a`` and ``b`` do not broadcast.

    See Also
    --------
    logsubexp, logsumexp, numpy.logaddexp

    Examples
    --------
    >>> import numpy as np
    >>> from smoothmax import logaddexp
    >>> logaddexp(np.log(np.array([1.0, 2.0])), np.log(3.0))  # log 4, log 5
    array([1.38629436, 1.60943791])
    >>> logaddexp(np.array([-np.inf, 0.0]), -np.inf)
    array([-inf,   0.])
    """
    xp, a, b, output = _binary(a, b)
    wide = _wide_dtype(xp, output, _backends.device(a))
    if wide is not None:
        a, b = xp.astype(a, wide), xp.astype(b, wide)
    stacked = xp.stack([a, b], axis=-1)  # exact in any dtype: no arithmetic yet
    prepared = prepare(stacked, -1)
    return _cast(xp, prepared.reduced(prepared.run(("lse",))["lse"], keepdims=False), output)


def logsubexp(a: Any, b: Any, /) -> Any:
    r"""Logarithm of the difference of exponentials: :math:`\log(e^a - e^b)`.

    .. math::

        \operatorname{logsubexp}(a, b) = a + \log\bigl(1 - e^{d}\bigr), \qquad d = b - a \le 0,

    with :math:`\log(1 - e^d)` evaluated as ``log(-expm1(d))`` for
    :math:`d > -\log 2` and ``log1p(-exp(d))`` below (Mächler's switch; each is
    exact where it is used). Accurate to about 1 ulp wherever the result is not
    near zero by cancellation of ``a`` and the correction.

    Special values: ``a < b`` gives NaN (the difference is negative);
    ``a == b`` gives ``-inf`` (but ``+inf, +inf`` gives NaN, ``inf - inf``);
    ``b = -inf`` gives ``a``. The gradient
    :math:`(\frac{e^a}{e^a - e^b}, \frac{-e^b}{e^a - e^b}) = (-1/\operatorname{expm1}(d), -1/\operatorname{expm1}(-d))`
    is registered with PyTorch and JAX; it is ``(1, 0)`` for ``b = -inf``,
    ``(0, 0)`` for ``a = b = -inf`` (as ``logaddexp``), ``(+inf, -inf)`` for
    ``a == b`` and NaN for ``a < b``.

    Parameters
    ----------
    a, b : array or Python number
        Broadcastable arrays of one namespace (at most one may be a Python number).

    Returns
    -------
    array
        The broadcast shape, in the promoted floating dtype of ``a`` and ``b``.

    Raises
    ------
    TypeError
        Not arrays, mixed namespaces, complex or non-numeric dtypes.
    ValueError
        ``a`` and ``b`` do not broadcast.

    See Also
    --------
    logaddexp

    Examples
    --------
    >>> import numpy as np
    >>> from smoothmax import logsubexp
    >>> np.exp(logsubexp(np.log(np.array([5.0, 3.0])), np.log(2.0))).round(12)
    array([3., 1.])
    >>> float(logsubexp(np.array(1e-20), 0.0))  # log(e^1e-20 - 1) = log(1e-20)
    -46.051701859880914
    >>> logsubexp(np.array([0.0, 0.0, 2.0]), np.array([0.0, 1.0, -np.inf]))
    array([-inf,  nan,   2.])
    """
    xp, a, b, output = _binary(a, b)
    compute = _wide_dtype(xp, output, _backends.device(a)) or _compute_dtype(xp, output)
    result = _primitive(xp, "logsubexp")(_cast(xp, a, compute), _cast(xp, b, compute))
    return _cast(xp, result, output)


def _single_axis(axis: Any, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an int; got {axis!r}")
    (normalized,) = normalize_axes(int(axis), max(ndim, 1)) or (0,)
    return normalized


def logcumsumexp(x: Any, /, *, axis: int = -1, reverse: bool = False) -> Any:
    r"""Cumulative log-sum-exp: :math:`y_i = \log \sum_{j \le i} e^{x_j}` along ``axis``.

    .. math::

        y_i = \operatorname{logaddexp}(y_{i-1}, x_i), \qquad
        \frac{\partial y_i}{\partial x_j} = e^{x_j - y_i} \ (j \le i).

    Computed as an associative scan of the streaming states
    :math:`(m, r)` (value :math:`m + \operatorname{log1p}(r)`, see
    :func:`lse_merge`): :math:`O(n)` work in :math:`O(\log n)` levels, no
    overflow, every prefix exact to a few ulp in float64 (rounding grows like
    :math:`\log n`, not :math:`n`); float32 and the half types are computed in
    float64 where the namespace has it, so they are correctly rounded but for
    about 1 ulp. ``-inf`` entries are absent (a prefix of
    ``-inf`` gives ``-inf``), ``+inf`` and NaN propagate forwards.

    The derivative is registered with PyTorch and JAX as the linear recurrence
    :math:`\dot y_i = (1 - \alpha_i)\,\dot y_{i-1} + \alpha_i \dot x_i`,
    :math:`\alpha_i = e^{x_i - y_i} \in [0, 1]` (one more scan; the gradient is its
    reverse scan). It needs no :math:`\log` of the cotangent and is NaN-free with
    ``-inf`` entries, where ``torch.logcumsumexp`` has given NaN gradients.

    Parameters
    ----------
    x : array
        Input of any Array API namespace; integers promote to the default float.
    axis : int, optional
        The axis to accumulate along (default ``-1``).
    reverse : bool, optional
        Accumulate from the end: :math:`y_i = \log \sum_{j \ge i} e^{x_j}`.

    Returns
    -------
    array
        Same shape, namespace, floating dtype and device as ``x``.

    Raises
    ------
    TypeError
        ``x`` is not an array, has a complex or non-numeric dtype, or ``axis``
        is not an int.
    ValueError
        ``axis`` is out of range.

    See Also
    --------
    lse_merge, torch.logcumsumexp, jax.lax.cumlogsumexp

    Examples
    --------
    >>> import numpy as np
    >>> from smoothmax import logcumsumexp
    >>> np.exp(logcumsumexp(np.log(np.array([1.0, 2.0, 3.0]))))
    array([1., 3., 6.])
    >>> logcumsumexp(np.array([-np.inf, -1000.0, 0.0])).tolist()
    [-inf, -1000.0, 0.0]
    >>> np.exp(logcumsumexp(np.log(np.array([1.0, 2.0, 3.0])), reverse=True))
    array([6., 5., 3.])
    """
    xp = _namespace(x, "x")
    output, compute = floating_dtypes(xp, x)
    compute = _wide_dtype(xp, output, _backends.device(x)) or compute
    ndim = x.ndim
    axis = _single_axis(axis, ndim)
    shape = tuple(x.shape)
    value = _cast(xp, x, compute)
    if ndim == 0:
        value = xp.reshape(value, (1,))
    permutation = None
    if ndim > 1 and axis != ndim - 1:
        permutation = tuple(i for i in range(ndim) if i != axis) + (axis,)
        value = xp.permute_dims(value, permutation)
    if reverse:
        value = xp.flip(value, axis=-1)
    value = _primitive(xp, "logcumsumexp")(value)
    if reverse:
        value = xp.flip(value, axis=-1)
    if permutation is not None:
        inverse = [0] * ndim
        for position, original in enumerate(permutation):
            inverse[original] = position
        value = xp.permute_dims(value, tuple(inverse))
    if ndim == 0:
        value = xp.reshape(value, shape)
    return _cast(xp, value, output)


def _widened(x: Any) -> tuple[Any, Any]:
    """``(x, output dtype)``: float32 and half inputs cast to float64 where the
    namespace has it (the result then rounds once, <= 1 ulp), else unchanged;
    validation stays with ``prepare``."""
    try:
        xp = _backends.namespace(x)
        output, _ = floating_dtypes(xp, x)
    except TypeError:
        return x, None  # prepare raises the error that names the argument
    wide = _wide_dtype(xp, output, _backends.device(x))
    return (x if wide is None else xp.astype(x, wide)), output


def logmeanexp(
    x: Any,
    /,
    *,
    axis: int | tuple[int, ...] | None = None,
    keepdims: bool = False,
    where: Any = None,
) -> Any:
    r"""Log-mean-exp: :math:`\log \frac{1}{n} \sum_i e^{x_i} = \operatorname{LSE}(x) - \log n`.

    .. math::

        \operatorname{LME}(x) = m + \log \frac{1 + r}{n}, \qquad
        m = \max_i x_i, \quad r = \sum_{i \ne k} e^{x_i - m},

    where :math:`n` counts the entries that are present (``where=True``; a
    ``-inf`` entry is present and counts). The log of the mean
    :math:`(1 + r)/n \in (0, 1]` is taken as
    :math:`\operatorname{log1p}(\frac{1}{n} \sum_i \operatorname{expm1}(x_i - m))`
    when the mean is at least 1/2 (terms of one sign: no cancellation), so
    ``logmeanexp([c] * n)`` is exactly ``c`` and results near 0 keep their
    relative accuracy, where ``logsumexp(x) - log(n)`` is off by up to
    :math:`\log n / |c|` ulps. All masked (:math:`n = 0`) or all ``-inf`` gives
    ``-inf``; other special values as :func:`logsumexp`. float32 and the half
    types are computed in float64 where the namespace has it. The gradient is
    :func:`softmax` (the ``-log n`` is a constant), registered with PyTorch and
    JAX; masked entries get 0.

    Parameters
    ----------
    x : array
        Input of any Array API namespace.
    axis : int, tuple of ints or None, optional
        Axes to average over; ``None`` (default) all of them.
    keepdims : bool, optional
        Keep the reduced axes with size one.
    where : bool array, optional
        Broadcastable to ``x``; ``False`` entries are absent (not counted, never
        read, zero gradient).

    Returns
    -------
    array
        The reduced shape, in ``x``'s floating dtype.

    Raises
    ------
    TypeError, ValueError
        As :func:`logsumexp`.

    See Also
    --------
    logsumexp

    Examples
    --------
    >>> import numpy as np
    >>> from smoothmax import logmeanexp
    >>> float(logmeanexp(np.array([0.0, -np.inf])))  # log(1/2): -inf counts
    -0.6931471805599453
    >>> float(logmeanexp(np.full(1000, 0.001)))  # exactly 0.001
    0.001
    >>> logmeanexp(np.array([[0.0, 5.0], [1.0, 7.0]]), axis=1, where=np.array([True, False]))
    array([0., 1.])
    """
    x, output = _widened(x)
    prepared = prepare(x, axis, where=where)
    xp = prepared.xp
    working = prepared.x
    if where is None:
        count = xp.full(
            tuple(1 if i == prepared.axis else n for i, n in enumerate(working.shape)),
            float(working.shape[prepared.axis]),
            dtype=working.dtype,
            device=_backends.device(working),
        )
    else:
        # `prepare` has checked `where`; lay a 0/1 array of x's shape out the same way.
        if isinstance(where, bool):
            where = xp.asarray(where, device=_backends.device(working))
        present = xp.astype(xp.broadcast_to(where, prepared.shape), working.dtype)
        count = xp.sum(prepare(present, axis).x, axis=prepared.axis, keepdims=True)
    value = _primitive(xp, "logmeanexp")(working, count, prepared.axis)
    return _cast(xp, prepared.reduced(value, keepdims), output)


def log1psumexp(
    x: Any, /, *, axis: int | tuple[int, ...] | None = None, keepdims: bool = False
) -> Any:
    r"""Log-sum-exp with an extra zero: :math:`\log(1 + \sum_i e^{x_i})`.

    .. math::

        \operatorname{LSE}_0(x) = \operatorname{LSE}(0, x_1, \dots, x_n), \qquad
        \nabla \operatorname{LSE}_0(x)_i = e^{x_i - \operatorname{LSE}_0(x)} .

    Unlike :func:`logsumexp` it is strictly convex (a Bregman generator): the
    log-partition function of the multinomial with a reference class, whose
    gradient maps natural to mean parameters. With one entry it is the softplus
    :math:`\log(1 + e^x)`. It is the kernel applied to ``x`` with a 0 prepended,
    so it keeps the kernel's pivot form: :math:`\operatorname{log1p}(\sum_i e^{x_i})`
    when every :math:`x_i < 0` (:math:`\approx \sum_i e^{x_i}` to 1 ulp as
    :math:`x \to -\infty`), :math:`m + \operatorname{log1p}(e^{-m} + \dots)` for
    large :math:`m = \max x`; gradient registered through the kernel. float32
    and the half types are computed in float64 where the namespace has it
    (NumPy's float32 ``log1p`` alone can be 2 ulp off). An empty
    or all ``-inf`` input gives ``0``.

    Parameters
    ----------
    x : array
        Input of any Array API namespace.
    axis : int, tuple of ints or None, optional
        Axes to reduce; ``None`` (default) all of them.
    keepdims : bool, optional
        Keep the reduced axes with size one.

    Returns
    -------
    array
        The reduced shape, in ``x``'s floating dtype.

    See Also
    --------
    logsumexp, logaddexp

    Examples
    --------
    >>> import numpy as np
    >>> from smoothmax import log1psumexp
    >>> float(log1psumexp(np.log(np.array([1.0, 2.0]))))  # log 4
    1.3862943611198906
    >>> float(log1psumexp(np.array([-40.0, -40.0])))  # 2 e^-40
    8.496708510583178e-18
    >>> log1psumexp(np.array([[-1.0], [800.0]]), axis=1).tolist()  # softplus
    [0.31326168751822286, 800.0]
    """
    x, output = _widened(x)
    prepared = prepare(x, axis)
    xp = prepared.xp
    working = prepared.x
    zero_shape = tuple(1 if i == prepared.axis else n for i, n in enumerate(working.shape))
    zeros = xp.zeros(zero_shape, dtype=working.dtype, device=_backends.device(working))
    # The 0 goes first: on ties argmax picks it as the pivot, so the sum of the
    # e^{x_i} is never rounded against a 1 it did not need.
    extended = xp.concat([zeros, working], axis=prepared.axis)
    (lse,) = prepared.kernel(extended, None, prepared.axis, 1.0, ("lse",))
    return _cast(xp, prepared.reduced(lse, keepdims), output)


def log_matmul_exp(a: Any, b: Any, /) -> Any:
    r"""Matrix product in the log domain: :math:`\log(e^{a} @ e^{b})`.

    .. math::

        \operatorname{out}_{ij} = \log \sum_l e^{a_{il} + b_{lj}}
        = r_i + c_j + \log \sum_l e^{a_{il} - r_i}\, e^{b_{lj} - c_j},

    with the row maxima :math:`r_i` of ``a`` and column maxima :math:`c_j` of
    ``b``: one ordinary matrix product of numbers in :math:`[0, 1]`, so memory is
    :math:`O(mk + kn + mn)` per batch (no :math:`(m, k, n)` intermediate) and the
    speed is that of ``matmul``. A row of ``a`` or a column of ``b`` that is all
    ``-inf`` gives ``-inf`` and a zero gradient (never NaN); ``+inf`` gives
    ``+inf``; NaN spreads over its row/column.

    Accuracy: a few ulp of :math:`\max(|out|, |r_i + c_j|)` plus the rounding of
    the product's sums, up to :math:`k \epsilon` in :math:`\log S_{ij}`: where one
    term dominates a sum, its small companions round against it in whatever
    order ``matmul`` adds them (``[0] + [-40] * 999`` against columns spanning
    ``[-2, 2]``, float64: 21 ulp of :math:`|r_i + c_j| = 2` as one row, 5 among
    64; ``logsumexp`` of each entry's terms keeps them). The shift is per
    row and per column, not per output entry, so an entry whose every term
    :math:`a_{il} + b_{lj}` lies below :math:`r_i + c_j` by more than the
    underflow range of ``exp`` (about 708 in float64, 87 in float32) gives
    ``-inf``; the exact per-entry shift would need the :math:`(m, k, n)` tensor.

    The gradient is registered with PyTorch and JAX:
    :math:`\partial L/\partial a = P \odot ((G / S) Q^\top)` and
    :math:`\partial L/\partial b = Q \odot (P^\top (G / S))` with
    :math:`P = e^{a - r}`, :math:`Q = e^{b - c}`, :math:`S = PQ`, i.e.
    :math:`\partial \operatorname{out}_{ij} / \partial a_{il} = e^{a_{il} + b_{lj} - \operatorname{out}_{ij}}`.

    Parameters
    ----------
    a : array
        Shape ``(..., m, k)`` (or ``(k,)``: a row vector, dropped from the result).
    b : array
        Shape ``(..., k, n)`` (or ``(k,)``: a column vector), same namespace;
        batch dimensions broadcast.

    Returns
    -------
    array
        Shape ``(..., m, n)``, in the promoted floating dtype of ``a`` and ``b``.

    Raises
    ------
    TypeError
        Not arrays, mixed namespaces, complex or non-numeric dtypes.
    ValueError
        0-d inputs, inner dimensions that differ, batch shapes that do not broadcast.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothmax import log_matmul_exp
    >>> a = np.log(np.array([[1.0, 2.0], [3.0, 4.0]]))
    >>> b = np.log(np.array([[5.0, 6.0], [7.0, 8.0]]))
    >>> np.exp(log_matmul_exp(a, b))
    array([[19., 22.],
           [43., 50.]])
    >>> log_matmul_exp(np.array([[-np.inf, -np.inf], [0.0, 0.0]]), np.zeros((2, 1)))
    array([[      -inf],
           [0.69314718]])
    """
    xp = _namespace(a, "a")
    other = _namespace(b, "b")
    if other is not xp:
        raise TypeError(
            f"b is an array of namespace {other.__name__} but a is of namespace {xp.__name__}: "
            "mixed namespaces are not supported"
        )
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("a and b must have at least one dimension (matmul of 0-d arrays)")
    _check_real(xp, a, "a")
    _check_real(xp, b, "b")
    a, b = _to_floating(xp, a), _to_floating(xp, b)
    output = xp.result_type(a.dtype, b.dtype)
    compute = _compute_dtype(xp, output)
    a, b = _cast(xp, a, compute), _cast(xp, b, compute)
    vector_a, vector_b = a.ndim == 1, b.ndim == 1
    if vector_a:
        a = xp.reshape(a, (1, a.shape[0]))
    if vector_b:
        b = xp.reshape(b, (b.shape[0], 1))
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(
            f"a of shape {tuple(a.shape)} and b of shape {tuple(b.shape)}: the inner "
            f"dimensions {a.shape[-1]} and {b.shape[-2]} differ"
        )
    batch = _broadcast_shapes(
        tuple(a.shape[:-2]),
        tuple(b.shape[:-2]),
        f"the batch shapes of a {tuple(a.shape[:-2])} and b {tuple(b.shape[:-2])} do not broadcast",
    )
    if tuple(a.shape[:-2]) != batch:
        a = xp.broadcast_to(a, batch + tuple(a.shape[-2:]))
    if tuple(b.shape[:-2]) != batch:
        b = xp.broadcast_to(b, batch + tuple(b.shape[-2:]))
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    if k == 0:  # the empty sum
        result = xp.full(batch + (m, n), -math.inf, dtype=compute, device=_backends.device(a))
    else:
        result = _primitive(xp, "log_matmul_exp")(a, b)
    if vector_b:
        result = result[..., 0]
    if vector_a:
        result = result[..., 0, :] if not vector_b else result[..., 0]
    return _cast(xp, result, output)
