"""Log-sum-exp, softmax and log-softmax on any Array API namespace."""

from __future__ import annotations

import math
from typing import Any

from . import _kernel
from ._fastpaths import ENTRIES as _ENTRIES
from ._prepare import prepare

Axis = "int | tuple[int, ...] | None"


def _entry(name: str, x: Any, axis: Any, keepdims: bool, temperature: Any) -> Any:
    """The fast entry point's result (``smoothmax._fastpaths``) for a call at ``t = 1``
    with nothing but ``axis``/``keepdims``, or None where the full path must run."""
    if temperature.__class__ not in (float, int) or temperature != 1:
        return None
    entry = _ENTRIES.get(x.__class__)  # the hot path: a dict lookup
    return None if entry is None else entry(name, x, axis, keepdims)


def logsumexp(
    x: Any,
    /,
    *,
    axis: int | tuple[int, ...] | None = None,
    keepdims: bool = False,
    b: Any = None,
    return_sign: bool = False,
    where: Any = None,
    temperature: float = 1.0,
) -> Any:
    r"""Log-sum-exp, the smooth maximum: :math:`t \log \sum_i b_i \exp(x_i / t)`.

    .. math::

        \operatorname{LSE}(x) = \log \sum_i e^{x_i},
        \qquad \max_i x_i < \operatorname{LSE}(x) \le \max_i x_i + \log n .

    It is convex and increasing, its gradient is :func:`softmax`, and it is the
    addition of the log semiring. With temperature :math:`t > 0`,
    :math:`t\,\operatorname{LSE}(x/t)` tightens the bounds to
    :math:`\max x < \cdot \le \max x + t \log n`; :math:`t < 0` gives the smooth
    minimum, and :math:`t = 0` the exact maximum.

    The result is computed as :math:`m + t\,\operatorname{log1p}(\sum_{i\ne k} e^{(x_i-m)/t})`
    with :math:`m = x_k = \max x`, so it keeps full relative accuracy when one
    term dominates (``logsumexp([0, -40, -40])`` is ``8.5e-18``, not ``0``).

    Parameters
    ----------
    x : array
        Input of any Array API namespace (NumPy, PyTorch, JAX, array-api-strict,
        Dask). Integer and boolean inputs are promoted to the namespace's default
        floating dtype; float16 and bfloat16 are computed in float32.
    axis : int, tuple of ints or None, optional
        Axes to reduce; ``None`` (default) reduces all of them.
    keepdims : bool, optional
        Keep the reduced axes with size one.
    b : array or scalar, optional
        Weights broadcastable to ``x``: the result is
        :math:`\log |\sum_i b_i e^{x_i}|`. Entries with ``b == 0`` are absent.
    return_sign : bool, optional
        Also return the sign of the weighted sum. Without it a negative sum
        gives NaN.
    where : bool array, optional
        Broadcastable to ``x``; ``False`` entries are absent: their values never
        reach the result or its gradient.
    temperature : float, optional
        A finite Python number ``t`` (default 1).

    Returns
    -------
    lse : array
        Same namespace, floating dtype and device as ``x``. An empty (or fully
        masked) slice gives ``-inf``; any ``+inf`` gives ``+inf``; NaN gives NaN.
    sign : array
        Only with ``return_sign=True``: ``+1``, ``-1``, or ``0`` for an empty sum.

    Raises
    ------
    TypeError
        ``x`` is not an array, its dtype is complex or not numeric, ``b`` or
        ``where`` is of another namespace, ``where`` is not boolean.
    ValueError
        ``axis`` is out of range or repeated, ``b``/``where`` do not broadcast
        to ``x``, ``temperature`` is not finite.

    See Also
    --------
    softmax : the gradient of ``logsumexp``.
    scipy.special.logsumexp, torch.logsumexp, jax.nn.logsumexp

    Examples
    --------
    >>> import numpy as np
    >>> from smoothmax import logsumexp
    >>> float(logsumexp(np.log(np.array([1.0, 2.0, 3.0]))))  # log 6
    1.791759469228055
    >>> print(f"{float(logsumexp(np.array([0.0] + [-40.0] * 10))):.12e}")  # max-shift code gives 0
    4.248354255292e-17
    >>> float(logsumexp(np.array([1.0, 5.0, 3.0]), temperature=0))
    5.0
    """
    if b is None and where is None and not return_sign:
        value = _entry("lse", x, axis, keepdims, temperature)
        if value is not None:
            return value
    prepared = prepare(x, axis, b=b, where=where, temperature=temperature)
    names = ("lse", "sign") if (return_sign or b is not None) else ("lse",)
    values = prepared.run(names)
    xp = prepared.xp
    lse = values["lse"]
    if b is not None and not return_sign:
        lse = xp.where(values["sign"] < 0, _kernel._constant(xp, math.nan, lse), lse)
    if prepared.negate:
        lse = -lse
    lse = prepared.reduced(lse, keepdims)
    if return_sign:
        return lse, prepared.reduced(values["sign"], keepdims)
    return lse


def softmax(
    x: Any,
    /,
    *,
    axis: int | tuple[int, ...] | None = -1,
    where: Any = None,
    temperature: float = 1.0,
) -> Any:
    r"""Softmax, the smooth arg max: :math:`\exp((x_i - \operatorname{LSE}_t(x)) / t)`.

    .. math::

        \sigma(x)_i = \frac{e^{x_i}}{\sum_j e^{x_j}} = \nabla_x \operatorname{LSE}(x)_i .

    A probability vector over ``axis`` that tends to the one-hot of the arg max
    as :math:`t \to 0^+` (uniform over ties at ``t = 0``). It is the gradient
    of :func:`logsumexp` on the same input, bit for bit, on every autodiff
    backend, and the forward map from natural to mean parameters of the
    multinomial.

    Special values (per slice): fully masked or all ``-inf`` gives all zeros
    (not NaN); ``k`` entries ``+inf`` give ``1/k`` on each; any NaN gives NaN on
    the whole slice.

    Parameters
    ----------
    x : array
        Input of any Array API namespace.
    axis : int, tuple of ints or None, optional
        Axes that form one distribution (default ``-1``).
    where : bool array, optional
        ``False`` entries are absent: probability 0, zero gradient.
    temperature : float, optional
        A finite Python number ``t``; ``softmax(x, temperature=t) = softmax(x / t)``.

    Returns
    -------
    array
        Same shape, namespace, floating dtype and device as ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothmax import softmax
    >>> softmax(np.array([1.0, 2.0, 3.0])).round(4)
    array([0.09  , 0.2447, 0.6652])
    >>> softmax(np.array([1.0, 3.0, 3.0]), temperature=0)
    array([0. , 0.5, 0.5])
    >>> softmax(np.array([-np.inf, -np.inf]))
    array([0., 0.])
    """
    if where is None:
        value = _entry("q", x, axis, False, temperature)
        if value is not None:
            return value
    prepared = prepare(x, axis, where=where, temperature=temperature)
    return prepared.full(prepared.run(("q",))["q"])


def log_softmax(
    x: Any,
    /,
    *,
    axis: int | tuple[int, ...] | None = -1,
    where: Any = None,
    temperature: float = 1.0,
) -> Any:
    r"""Log-softmax: :math:`(x_i - \operatorname{LSE}_t(x)) / t = \log \sigma(x / t)_i`.

    Computed as :math:`(x_i - m)/t - \operatorname{log1p}(\sum_{j\ne k} e^{(x_j - m)/t})`,
    exact where the differences :math:`x_i - m` are, and never ``log(0)`` of an
    underflowed softmax: ``log_softmax([0, -1000])`` is ``[0, -1000]``.

    Absent entries (``where=False``) and ``-inf`` entries give ``-inf``; a
    fully masked slice gives all ``-inf``.

    Parameters
    ----------
    x : array
        Input of any Array API namespace.
    axis : int, tuple of ints or None, optional
        Axes that form one distribution (default ``-1``).
    where : bool array, optional
        ``False`` entries are absent.
    temperature : float, optional
        A finite Python number ``t``.

    Returns
    -------
    array
        Same shape, namespace, floating dtype and device as ``x``.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothmax import log_softmax
    >>> log_softmax(np.array([0.0, -1000.0]))
    array([    0., -1000.])
    >>> np.exp(log_softmax(np.array([1.0, 2.0, 3.0]))).round(4)
    array([0.09  , 0.2447, 0.6652])
    """
    if where is None:
        value = _entry("log_q", x, axis, False, temperature)
        if value is not None:
            return value
    prepared = prepare(x, axis, where=where, temperature=temperature)
    return prepared.full(prepared.run(("log_q",))["log_q"])
