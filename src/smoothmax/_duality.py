"""Convex duality of log-sum-exp: Shannon entropy, the entropy of a softmax, and
the Fenchel-Young loss.

The convex conjugate of ``LSE`` restricted to the simplex is the negative
entropy, so for every probability vector ``p``

    <x, p> + H(p) <= LSE(x),   with equality iff p = softmax(x),

and the gap ``LSE(x) - <x, y> - H(y)`` is the Fenchel-Young loss (the KL
divergence from ``softmax(x)`` to ``y``). Everything here is a composition of the
kernel's outputs (``lse``, ``q = softmax``, ``log_q = log_softmax``), whose
derivatives are registered, with ordinary Array API operations: no new rules.
"""

from __future__ import annotations

import math
from typing import Any

from . import _backends
from ._logdomain import _binary, _namespace
from ._prepare import floating_dtypes, normalize_axes, prepare


def entropy(p: Any, /, *, axis: int | tuple[int, ...] | None = -1) -> Any:
    r"""Shannon entropy :math:`H(p) = -\sum_i p_i \log p_i` (nats), with :math:`0 \log 0 = 0`.

    .. math::

        H(p) = -\sum_i p_i \log p_i, \qquad
        \max_{p \in \Delta} \langle x, p\rangle + H(p) = \operatorname{LSE}(x) .

    ``p`` is not normalised or checked: the formula is applied as written (a
    negative entry gives NaN). The gradient :math:`-(\log p_i + 1)` is ``+inf``
    at :math:`p_i = 0` mathematically; there autodiff returns 0 (the entry is
    treated as absent, as ``-inf`` logits are in :func:`softmax`), so that
    ``entropy(softmax(x))`` has NaN-free gradients with ``-inf`` logits. Prefer
    :func:`softmax_entropy` for that composition: it is computed from the logits.

    Parameters
    ----------
    p : array
        Probabilities of any Array API namespace.
    axis : int, tuple of ints or None, optional
        Axes that form one distribution (default ``-1``).

    Returns
    -------
    array
        The reduced shape, in ``p``'s floating dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothmax import entropy
    >>> float(entropy(np.array([0.5, 0.5, 0.0])))  # log 2
    0.6931471805599453
    >>> entropy(np.array([[1.0, 0.0], [0.25, 0.75]]))
    array([0.        , 0.56233514])
    """
    xp = _namespace(p, "p")
    output, compute = floating_dtypes(xp, p)
    axes = normalize_axes(axis, p.ndim)
    values = p if p.dtype == compute else xp.astype(p, compute)
    where = _backends.device(values)
    zero = xp.asarray(0.0, dtype=compute, device=where)
    one = xp.asarray(1.0, dtype=compute, device=where)
    nan = xp.asarray(math.nan, dtype=compute, device=where)
    positive = values > 0
    terms = xp.where(
        positive,
        values * xp.log(xp.where(positive, values, one)),
        xp.where(values == 0, zero, nan),  # 0 log 0 = 0; negative (or NaN) p: NaN
    )
    result = zero - xp.sum(terms, axis=axes)  # 0 - 0 is +0, -(0) would be -0
    return result if result.dtype == output else xp.astype(result, output)


def softmax_entropy(x: Any, /, *, axis: int | tuple[int, ...] | None = -1) -> Any:
    r"""Entropy of the softmax of logits: :math:`H(\sigma(x)) = \operatorname{LSE}(x) - \langle \sigma(x), x\rangle`.

    .. math::

        H(\sigma(x)) = -\sum_i \sigma_i \log \sigma_i, \qquad
        \log \sigma_i = x_i - \operatorname{LSE}(x),

    computed from the kernel's ``softmax`` and ``log_softmax`` of ``x`` (one
    pass), so it never takes ``log`` of an underflowed probability and does not
    cancel ``LSE(x)`` against :math:`\langle \sigma, x\rangle` (all terms are
    non-negative). Between 0 (one dominant entry) and :math:`\log n` (uniform).
    ``-inf`` logits are absent; ``k`` entries ``+inf`` give :math:`\log k`; NaN
    gives NaN. Gradient :math:`-\sigma_i(\log \sigma_i + H)`, NaN-free with
    ``-inf`` logits.

    Parameters
    ----------
    x : array
        Logits of any Array API namespace.
    axis : int, tuple of ints or None, optional
        Axes that form one distribution (default ``-1``).

    Returns
    -------
    array
        The reduced shape, in ``x``'s floating dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothmax import softmax_entropy
    >>> float(softmax_entropy(np.zeros(4)))  # log 4
    1.3862943611198906
    >>> float(softmax_entropy(np.array([0.0, -np.inf, -1000.0])))
    0.0
    """
    prepared = prepare(x, axis)
    xp = prepared.xp
    outputs = prepared.run(("q", "log_q"))
    q, log_q = outputs["q"], outputs["log_q"]
    zero = xp.zeros_like(q)
    absent = log_q == -math.inf
    terms = xp.where(absent, zero, q * xp.where(absent, zero, log_q))
    total = xp.sum(terms, axis=prepared.axis, keepdims=True)
    return prepared.reduced(xp.zeros_like(total) - total, keepdims=False)  # +0, not -0


def fenchel_young_loss(x: Any, y: Any, /, *, axis: int | tuple[int, ...] | None = -1) -> Any:
    r"""Fenchel-Young loss of log-sum-exp: :math:`\operatorname{LSE}(x) - \langle x, y\rangle - H(y)`.

    .. math::

        L(x; y) = \operatorname{LSE}(x) - \langle x, y\rangle - H(y)
                = \sum_i y_i (\log y_i - \log \sigma(x)_i) + (1 - \textstyle\sum_i y_i)\operatorname{LSE}(x),

    the gap in the Fenchel-Young inequality for :math:`\operatorname{LSE}` and its
    conjugate, the negative entropy on the simplex. For a probability vector
    ``y`` it is :math:`\operatorname{KL}(y \,\|\, \sigma(x)) \ge 0`, zero iff
    :math:`y = \sigma(x)`; for a one-hot ``y`` it is the softmax cross-entropy
    :math:`-\log \sigma(x)_t`. Its gradient in ``x`` is :math:`\sigma(x) - y`.

    It is evaluated in the second form, from ``log_softmax`` (no cancellation of
    a large ``LSE(x)`` against :math:`\langle x, y\rangle`); the last term is
    dropped when ``sum(y) == 1`` exactly. Entries with :math:`y_i = 0` contribute
    nothing (also where :math:`x_i = -\infty`); :math:`y_i > 0` where
    :math:`x_i = -\infty` gives ``+inf``; a negative :math:`y_i` gives NaN.

    Parameters
    ----------
    x : array
        Logits of any Array API namespace.
    y : array
        Target distribution, same namespace, broadcastable with ``x``.
    axis : int, tuple of ints or None, optional
        Axes that form one distribution (default ``-1``).

    Returns
    -------
    array
        The reduced broadcast shape, in the promoted floating dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from smoothmax import fenchel_young_loss, log_softmax, softmax
    >>> x = np.array([1.0, 2.0, 3.0])
    >>> bool(fenchel_young_loss(x, np.array([0.0, 0.0, 1.0])) == -log_softmax(x)[2])
    True
    >>> abs(float(fenchel_young_loss(x, softmax(x)))) < 1e-15
    True
    """
    xp, x, y, _ = _binary(x, y, names=("x", "y"))
    prepared = prepare(x, axis)
    target = prepare(y, axis).x  # the same layout as x
    outputs = prepared.run(("lse", "log_q"))
    lse, log_q = outputs["lse"], outputs["log_q"]
    zero = xp.zeros_like(target)
    one = xp.ones_like(target)
    nan = xp.full_like(target, math.nan)
    positive = target > 0
    terms = xp.where(
        positive,
        target * (xp.log(xp.where(positive, target, one)) - xp.where(positive, log_q, zero)),
        xp.where(target < 0, nan, zero),
    )
    total = xp.sum(target, axis=prepared.axis, keepdims=True)
    normalized = total == 1
    correction = xp.where(
        normalized, xp.zeros_like(lse), (1 - total) * xp.where(normalized, xp.zeros_like(lse), lse)
    )
    loss = xp.sum(terms, axis=prepared.axis, keepdims=True) + correction
    return prepared.reduced(loss, keepdims=False)
