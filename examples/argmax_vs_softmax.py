"""Softmax is the smooth arg max, log-sum-exp the smooth max.

    python examples/argmax_vs_softmax.py [--small]

The story of the seed notes, in numbers (NumPy only):

1. ``softmax(x)`` is a probability vector close to the one-hot of ``argmax(x)``,
   and ``logsumexp(x)`` is a number close to ``max(x)``.
2. The bounds ``max(x) < LSE(x) <= max(x) + log n``, and with a temperature ``t``
   the tighter ``max(x) < t LSE(x / t) <= max(x) + t log n``.
3. The temperature sweep: as ``t -> 0+`` softmax tends to the one-hot of the arg
   max and LSE to the max; ``t = 0`` is the limit itself (uniform over ties);
   ``t < 0`` gives the smooth minimum.
4. The gradient of LSE is softmax (checked by central differences).

``--small`` (or ``SMOOTHMAX_EXAMPLES_SMALL=1``) only shortens the sweep.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np

from smoothmax import logsumexp, softmax

SMALL = "--small" in sys.argv[1:] or os.environ.get("SMOOTHMAX_EXAMPLES_SMALL") == "1"


def one_hot(index: int, n: int) -> np.ndarray:
    vector = np.zeros(n)
    vector[index] = 1.0
    return vector


def main() -> None:
    np.set_printoptions(precision=4, suppress=True)
    # Binary fractions, so that x - max(x) is exact and the printed excesses are exact too.
    x = np.array([1.0, 3.0, 2.5, 0.5, -1.0])
    n = x.size

    print("1. soft arg max and soft max")
    print(f"   x                  = {x}")
    print(f"   one_hot(argmax(x)) = {one_hot(int(np.argmax(x)), n)}")
    p = softmax(x)
    print(f"   softmax(x)         = {p}   (sums to {p.sum():.17g})")
    print(f"   max(x) = {x.max()},  logsumexp(x) = {float(logsumexp(x)):.6f}")
    assert np.argmax(p) == np.argmax(x) and math.isclose(p.sum(), 1.0, rel_tol=1e-15)

    print("\n2.-3. temperature sweep: max(x) < t LSE(x/t) <= max(x) + t log n")
    print(f"   {'t':>6}  {'t LSE(x/t)':>12}  {'excess over max':>15}  {'bound t log n':>13}  softmax(x, t)")
    temperatures = [4.0, 1.0, 0.25, 0.05] if SMALL else [16.0, 4.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.05, 0.01]
    previous_excess = math.inf
    for t in temperatures:
        lse = float(logsumexp(x, temperature=t))
        # LSE_t(x) - max(x) = t log(1 + sum_{i != k} exp((x_i - max) / t)): computed on the
        # shifted input, whose max is 0, it keeps full relative accuracy even when tiny.
        excess = float(logsumexp(x - x.max(), temperature=t))
        bound = t * math.log(n)
        p = softmax(x, temperature=t)
        print(f"   {t:>6}  {lse:>12.6f}  {excess:>15.3e}  {bound:>13.4f}  {p}")
        assert 0.0 < excess <= bound  # the strict lower bound, visible even at t = 0.01
        assert x.max() <= lse <= x.max() + bound
        assert excess < previous_excess  # the bounds tighten as t decreases
        previous_excess = excess
    np.testing.assert_allclose(softmax(x, temperature=temperatures[-1]), one_hot(1, n), atol=1e-4)

    print("\n   t = 0 is the limit itself: the exact max, one-hot (uniform over ties)")
    print(f"   logsumexp(x, temperature=0) = {float(logsumexp(x, temperature=0))}")
    print(f"   softmax(x, temperature=0)   = {softmax(x, temperature=0)}")
    ties = np.array([1.0, 3.0, 3.0, 0.5])
    print(f"   softmax({ties}, temperature=0) = {softmax(ties, temperature=0)}")
    assert float(logsumexp(x, temperature=0)) == x.max()
    np.testing.assert_array_equal(softmax(x, temperature=0), one_hot(1, n))
    np.testing.assert_array_equal(softmax(ties, temperature=0), [0.0, 0.5, 0.5, 0.0])

    print("\n   t < 0 is the smooth minimum: min(x) + t log n <= t LSE(x/t) < min(x)")
    for t in (-1.0, -0.1):
        smooth_min = float(logsumexp(x, temperature=t))
        print(f"   t = {t:>5}: {smooth_min:.6f}  (min(x) = {x.min()}),  softmax = {softmax(x, temperature=t)}")
        assert x.min() + t * math.log(n) <= smooth_min < x.min()

    print("\n4. the gradient of LSE is softmax (central differences)")
    h = 1e-6
    numeric = np.array(
        [(float(logsumexp(x + h * e)) - float(logsumexp(x - h * e))) / (2 * h) for e in np.eye(n)]
    )
    print(f"   (LSE(x + h e_i) - LSE(x - h e_i)) / 2h = {numeric}")
    print(f"   softmax(x)                             = {softmax(x)}")
    np.testing.assert_allclose(numeric, softmax(x), atol=1e-8)

    print("\nOK: softmax -> one-hot(argmax), LSE -> max, bounds hold at every temperature")


if __name__ == "__main__":
    main()
