"""GPU ratios: smoothmax / the framework's own function on CUDA (PyTorch) and on
JAX's default device, interleaved (the two alternate their order each round),
median of the per-round ratio. Not part of the CPU targets of ``python -m
benchmarks``; needs a GPU.

    python benchmarks/gpu.py [--backend torch,jax] [--rounds 15] [--inner 20] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable

import numpy as np

SHAPES = [((16,), -1), ((1000,), -1), ((4096, 1024), -1), ((1024, 4096), 0), ((32, 8, 256, 256), -1), ((10_000_000,), -1)]


def ratio(ours: Callable[[], Any], theirs: Callable[[], Any], sync: Callable[[], None], rounds: int, inner: int) -> tuple[float, float, float]:
    """(median ratio, median us of ours, median us of theirs)."""
    for function in (ours, theirs):
        for _ in range(5):
            function()
    sync()
    ratios, ours_us, theirs_us = [], [], []
    for index in range(rounds):
        pair = (("ours", ours), ("theirs", theirs))
        seconds = {}
        for name, function in pair if index % 2 == 0 else pair[::-1]:
            sync()
            start = time.perf_counter()
            for _ in range(inner):
                function()
            sync()
            seconds[name] = (time.perf_counter() - start) / inner
        ratios.append(seconds["ours"] / seconds["theirs"])
        ours_us.append(seconds["ours"] * 1e6)
        theirs_us.append(seconds["theirs"] * 1e6)
    return float(np.median(ratios)), float(np.median(ours_us)), float(np.median(theirs_us))


def torch_rows(shapes: list, rounds: int, inner: int) -> None:
    import torch

    import smoothmax

    print("torch", torch.__version__, torch.cuda.get_device_name(0), flush=True)
    for shape, axis in shapes:
        for dtype in (torch.float32, torch.float64):
            x = torch.randn(shape, dtype=dtype, device="cuda") * 3
            g = torch.randn(shape, dtype=dtype, device="cuda")
            leaf = x.clone().requires_grad_()
            assert smoothmax.logsumexp(x, axis=axis).device == x.device
            cases = {
                "logsumexp": (lambda: smoothmax.logsumexp(x, axis=axis), lambda: torch.logsumexp(x, axis)),
                "logsumexp fwd+bwd": (lambda: smoothmax.logsumexp(leaf, axis=axis).sum().backward(),
                                      lambda: torch.logsumexp(leaf, axis).sum().backward()),
                "softmax fwd+bwd": (lambda: smoothmax.softmax(leaf, axis=axis).backward(g),
                                    lambda: torch.softmax(leaf, axis).backward(g)),
                "log_softmax fwd+bwd": (lambda: smoothmax.log_softmax(leaf, axis=axis).backward(g),
                                        lambda: torch.log_softmax(leaf, axis).backward(g)),
            }
            for name, (ours, theirs) in cases.items():
                r, ours_us, theirs_us = ratio(ours, theirs, torch.cuda.synchronize, rounds, inner)
                print(f"torch {name:20s} {str(shape):18s} ax {axis:2d} {str(dtype)[6:]:8s} ratio {r:6.2f}"
                      f"  smoothmax {ours_us:10.1f} us  torch {theirs_us:10.1f} us", flush=True)


def jax_rows(shapes: list, rounds: int, inner: int) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import smoothmax

    print("jax", jax.__version__, jax.devices(), flush=True)
    for shape, axis in shapes:
        for dtype in ("float32", "float64"):
            x = jnp.asarray(np.random.default_rng(0).normal(0, 3, shape).astype(dtype))
            g = jnp.asarray(np.random.default_rng(1).normal(0, 1, shape).astype(dtype))
            assert smoothmax.logsumexp(x, axis=axis).devices() == x.devices()
            jit, grad = jax.jit, jax.grad
            pairs = {
                "logsumexp": (jit(lambda v: smoothmax.logsumexp(v, axis=axis)), jit(lambda v: jax.nn.logsumexp(v, axis=axis))),
                "logsumexp grad": (jit(grad(lambda v: jnp.sum(smoothmax.logsumexp(v, axis=axis)))),
                                   jit(grad(lambda v: jnp.sum(jax.nn.logsumexp(v, axis=axis))))),
                "softmax fwd+bwd": (jit(grad(lambda v: jnp.sum(smoothmax.softmax(v, axis=axis) * g))),
                                    jit(grad(lambda v: jnp.sum(jax.nn.softmax(v, axis=axis) * g)))),
                "log_softmax fwd+bwd": (jit(grad(lambda v: jnp.sum(smoothmax.log_softmax(v, axis=axis) * g))),
                                        jit(grad(lambda v: jnp.sum(jax.nn.log_softmax(v, axis=axis) * g)))),
            }
            for name, (ours, theirs) in pairs.items():
                r, ours_us, theirs_us = ratio(lambda: ours(x).block_until_ready(), lambda: theirs(x).block_until_ready(),
                                              lambda: None, rounds, inner)
                print(f"jax   {name:20s} {str(shape):18s} ax {axis:2d} {dtype:8s} ratio {r:6.2f}"
                      f"  smoothmax {ours_us:10.1f} us  jax.nn {theirs_us:10.1f} us", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="torch,jax")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--inner", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="the two small shapes, 3 rounds")
    options = parser.parse_args(argv)
    shapes = SHAPES[:2] if options.quick else SHAPES
    rounds = 3 if options.quick else options.rounds
    backends = options.backend.split(",")
    if "torch" in backends:
        torch_rows(shapes, rounds, options.inner)
    if "jax" in backends:
        jax_rows(shapes, rounds, options.inner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
