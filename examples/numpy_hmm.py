"""The HMM forward algorithm in the log semiring (NumPy).

    python examples/numpy_hmm.py [--small]

A hidden Markov model with ``S`` states, transition matrix ``A`` (``A[i, j]`` =
P(next state j | state i)), emission matrix ``B`` (``B[i, o]`` = P(symbol o | state i))
and initial distribution ``pi``. The likelihood of observations ``o_1 .. o_T`` is the
sum over all ``S**T`` hidden paths of the product of their probabilities. The
forward algorithm computes it in ``O(T S**2)``:

    alpha_1 = pi * B[:, o_1],    alpha_t = (alpha_{t-1} @ A) * B[:, o_t],    P(o) = sum(alpha_T)

In the log semiring (``+`` becomes ``logaddexp``, ``*`` becomes ``+``) that is

    log alpha_t = log_matmul_exp(log alpha_{t-1}, log A) + log B[:, o_t],
    log P(o)    = logsumexp(log alpha_T).

1. On a short sequence the result equals brute-force enumeration of every path.
2. On a long sequence the probability-domain recursion underflows to 0
   (log P = -inf) after a few hundred steps; the log-domain recursion does not,
   and agrees with the classical scaled forward algorithm (Rabiner's per-step
   normalisation, an independent method).
3. ``log_matmul_exp`` and ``logsumexp`` agree: one step written with
   ``logsumexp(log alpha[:, None] + log A, axis=0)`` gives the same values.

``--small`` (or ``SMOOTHMAX_EXAMPLES_SMALL=1``) uses a shorter long sequence.
"""

from __future__ import annotations

import itertools
import math
import os
import sys

import numpy as np

from smoothmax import log_matmul_exp, logsumexp

SMALL = "--small" in sys.argv[1:] or os.environ.get("SMOOTHMAX_EXAMPLES_SMALL") == "1"


def random_hmm(rng: np.random.Generator, states: int, symbols: int):
    """A random HMM: rows of A and B and pi are probability vectors."""
    A = rng.dirichlet(np.ones(states), size=states)
    B = rng.dirichlet(np.ones(symbols) * 0.5, size=states)
    pi = rng.dirichlet(np.ones(states))
    return pi, A, B


def sample(rng: np.random.Generator, pi, A, B, length: int) -> np.ndarray:
    state = rng.choice(len(pi), p=pi)
    observations = []
    for _ in range(length):
        observations.append(rng.choice(B.shape[1], p=B[state]))
        state = rng.choice(len(pi), p=A[state])
    return np.array(observations)


def forward_log(pi, A, B, observations) -> float:
    """log P(observations) by the forward algorithm in the log semiring (smoothmax)."""
    log_A, log_B = np.log(A), np.log(B)
    log_alpha = np.log(pi) + log_B[:, observations[0]]
    for o in observations[1:]:
        log_alpha = log_matmul_exp(log_alpha, log_A) + log_B[:, o]
    return float(logsumexp(log_alpha))


def forward_probability(pi, A, B, observations) -> float:
    """log P(observations) by the textbook probability-domain recursion (underflows)."""
    alpha = pi * B[:, observations[0]]
    for o in observations[1:]:
        alpha = (alpha @ A) * B[:, o]
    with np.errstate(divide="ignore"):
        return float(np.log(alpha.sum()))


def forward_scaled(pi, A, B, observations) -> float:
    """log P(observations) by the scaled forward algorithm: normalise alpha at each
    step and add up the logs of the normalisers (no logsumexp anywhere)."""
    alpha = pi * B[:, observations[0]]
    log_likelihood = 0.0
    for t, o in enumerate(observations):
        if t > 0:
            alpha = (alpha @ A) * B[:, o]
        scale = alpha.sum()
        log_likelihood += math.log(scale)
        alpha = alpha / scale
    return log_likelihood


def brute_force(pi, A, B, observations) -> float:
    """log P(observations) as the sum over all S**T hidden paths, in plain NumPy."""
    states, length = len(pi), len(observations)
    total = 0.0
    for path in itertools.product(range(states), repeat=length):
        probability = pi[path[0]] * B[path[0], observations[0]]
        for t in range(1, length):
            probability *= A[path[t - 1], path[t]] * B[path[t], observations[t]]
        total += probability
    return math.log(total)


def main() -> None:
    rng = np.random.default_rng(7)
    pi, A, B = random_hmm(rng, states=3, symbols=4)

    print("1. short sequence: forward algorithm in the log semiring vs brute force")
    short = sample(rng, pi, A, B, length=8)
    exact = brute_force(pi, A, B, short)
    log_domain = forward_log(pi, A, B, short)
    print(f"   observations {short.tolist()}, {len(pi)}**{len(short)} = {len(pi) ** len(short)} paths")
    print(f"   brute force over all paths: log P = {exact:.15f}")
    print(f"   log_matmul_exp forward:     log P = {log_domain:.15f}  (difference {abs(log_domain - exact):.1e})")
    assert math.isclose(log_domain, exact, rel_tol=1e-13, abs_tol=1e-13)

    print("\n2. long sequence: the probability domain underflows, the log semiring does not")
    length = 3_000 if SMALL else 20_000
    long = sample(rng, pi, A, B, length=length)
    plain = forward_probability(pi, A, B, long)
    scaled = forward_scaled(pi, A, B, long)
    log_domain = forward_log(pi, A, B, long)
    print(f"   T = {length}: probability domain log P = {plain}  (alpha underflowed to 0)")
    print(f"   scaled forward (Rabiner)     log P = {scaled:.10f}")
    print(f"   log_matmul_exp forward       log P = {log_domain:.10f}  (relative difference"
          f" {abs(log_domain - scaled) / abs(scaled):.1e})")
    assert plain == -math.inf  # the plain recursion underflows ...
    assert math.isfinite(log_domain) and log_domain < math.log(np.finfo(np.float64).tiny)  # ... below float64's range
    assert math.isclose(log_domain, scaled, rel_tol=1e-10)

    print("\n3. one forward step: log_matmul_exp == logsumexp over the previous state")
    log_alpha = np.log(pi) + np.log(B[:, long[0]]) - 800.0  # far below exp's range
    by_matmul = log_matmul_exp(log_alpha, np.log(A))
    by_logsumexp = logsumexp(log_alpha[:, None] + np.log(A), axis=0)
    print(f"   log_matmul_exp: {by_matmul}")
    print(f"   logsumexp:      {by_logsumexp}")
    np.testing.assert_allclose(by_matmul, by_logsumexp, rtol=1e-14)

    print("\nOK: the log-semiring forward algorithm matches brute force and does not underflow")


if __name__ == "__main__":
    main()
