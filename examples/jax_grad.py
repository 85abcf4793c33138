"""``jax.grad``, ``jit`` and ``vmap`` through smoothmax.

    python examples/jax_grad.py [--small]

1. The gradient of ``logsumexp`` is ``softmax``, bit for bit, also under ``jit``.
2. Smooth max: the minimax problem ``min_p max_i |p - c_i|^2`` (the centre of the
   smallest circle around the points ``c_i``) is not smooth; replace the max by
   ``t LSE(f / t)`` and follow a temperature schedule ``t -> 0``. Each stage is
   one ``jit``-compiled gradient-descent loop (``temperature`` is a static Python
   float in smoothmax, so each temperature is its own compiled function).
3. Smooth min: ``temperature < 0``. ``vmap`` runs the descent on the soft-min of
   the distances from many starting points at once: each falls into its nearest
   centre.

``--small`` (or ``SMOOTHMAX_EXAMPLES_SMALL=1``) runs fewer steps and starting points.
"""

from __future__ import annotations

import functools
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from smoothmax import logsumexp, softmax

SMALL = "--small" in sys.argv[1:] or os.environ.get("SMOOTHMAX_EXAMPLES_SMALL") == "1"

# An acute triangle: its smallest enclosing circle is its circumcircle.
CENTRES = jnp.array([[0.0, 0.0], [4.0, 0.0], [1.0, 3.0]])


def squared_distances(p: jax.Array) -> jax.Array:
    return jnp.sum((p - CENTRES) ** 2, axis=-1)


def smooth_max_objective(p: jax.Array, temperature: float) -> jax.Array:
    return logsumexp(squared_distances(p), temperature=temperature)


@functools.partial(jax.jit, static_argnames=("temperature", "steps"))
def descend(p: jax.Array, temperature: float, steps: int, learning_rate: float) -> jax.Array:
    """``steps`` of gradient descent on ``t LSE(f(p) / t)``, compiled once per temperature."""
    grad = jax.grad(smooth_max_objective)

    def step(_, point):
        return point - learning_rate * grad(point, temperature)

    return jax.lax.fori_loop(0, steps, step, p)


def circumcentre(points: np.ndarray) -> np.ndarray:
    (ax, ay), (bx, by), (cx, cy) = points
    d = 2 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
    ux = ((ax**2 + ay**2) * (by - cy) + (bx**2 + by**2) * (cy - ay) + (cx**2 + cy**2) * (ay - by)) / d
    uy = ((ax**2 + ay**2) * (cx - bx) + (bx**2 + by**2) * (ax - cx) + (cx**2 + cy**2) * (bx - ax)) / d
    return np.array([ux, uy])


def main() -> None:
    print("1. jax.grad(logsumexp) is softmax, bit for bit (also under jit)")
    x = jax.random.normal(jax.random.key(0), (6,)) * 3
    gradient = jax.grad(logsumexp)(x)
    jitted_grad = jax.jit(jax.grad(lambda v: logsumexp(v, temperature=0.5)))(x)
    jitted_softmax = jax.jit(lambda v: softmax(v, temperature=0.5))(x)
    print(f"   grad  = {np.asarray(gradient)}")
    print(f"   equal to softmax(x): {bool(jnp.all(gradient == softmax(x)))}; "
          f"at t = 0.5 under jit: {bool(jnp.all(jitted_grad == jitted_softmax))}")
    assert bool(jnp.all(gradient == softmax(x)))
    assert bool(jnp.all(jitted_grad == jitted_softmax))

    print("\n2. smooth max: min_p max_i |p - c_i|^2 with a temperature schedule")
    exact = circumcentre(np.asarray(CENTRES))
    radius2 = float(np.sum((exact - np.asarray(CENTRES[0])) ** 2))
    schedule = [4.0, 1.0, 0.25] if SMALL else [4.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.05]
    steps = 200 if SMALL else 1000
    p = jnp.array([3.0, 3.0])
    print(f"   {'t':>5}  {'p':>22}  {'max_i f_i(p)':>12}  {'t LSE(f/t)':>10}  weights softmax(f/t)")
    for t in schedule:
        # The step size follows the curvature, ~ 1/t for the smooth max.
        p = descend(p, temperature=t, steps=steps, learning_rate=min(0.05, 0.05 * t))
        f = squared_distances(p)
        print(f"   {t:>5}  {np.array2string(np.asarray(p), precision=5):>22}  {float(f.max()):>12.5f}"
              f"  {float(smooth_max_objective(p, t)):>10.5f}  {np.asarray(softmax(f, temperature=t)).round(3)}")
    error = float(np.linalg.norm(np.asarray(p) - exact))
    print(f"   exact minimax point (circumcentre) {exact}, value {radius2:.5f}; distance {error:.2e}")
    assert error < (0.05 if SMALL else 0.01)
    assert abs(float(squared_distances(p).max()) - radius2) < (0.2 if SMALL else 0.02)

    print("\n3. smooth min (temperature < 0) under vmap: each start falls into its nearest centre")
    count = 8 if SMALL else 64
    starts = jax.random.uniform(jax.random.key(1), (count, 2), minval=-1.0, maxval=5.0)

    def soft_min_descent(p):
        grad = jax.grad(lambda q: logsumexp(squared_distances(q), temperature=-0.5))
        return jax.lax.fori_loop(0, 300, lambda _, q: q - 0.1 * grad(q), p)

    ends = jax.jit(jax.vmap(soft_min_descent))(starts)
    nearest = np.argmin(np.asarray(jax.vmap(squared_distances)(starts)), axis=1)
    landed = np.argmin(np.asarray(jax.vmap(squared_distances)(ends)), axis=1)
    distance = np.linalg.norm(np.asarray(ends) - np.asarray(CENTRES)[landed], axis=1)
    print(f"   {count} starts; landed on their nearest centre: {int((nearest == landed).sum())}/{count};"
          f" largest distance to it {distance.max():.1e}")
    assert (nearest == landed).all() and distance.max() < 1e-3

    print("\nOK: grad == softmax, the smooth max schedule reaches the hard minimax point")


if __name__ == "__main__":
    main()
