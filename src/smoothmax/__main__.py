"""``python -m smoothmax``: a plain-text tour of what the library does on every installed backend."""

from __future__ import annotations

import decimal
import importlib
import importlib.util
import math
import time
from typing import Any, Callable

import numpy as np

import smoothmax
from smoothmax import logsumexp, softmax

VECTOR = [1.0, 2.0, 3.0, 0.5]
DOMINANT = [0.0] + [-40.0] * 10


def _jit_if_jax(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Eager JAX compiles every primitive per new shape; one jitted program is faster."""
    if name != "jax":
        return function
    import jax

    return jax.jit(function)


def _installed_backends() -> list[tuple[str, str, Any]]:
    """(name, version, make-array function) for every installed backend."""
    found: list[tuple[str, str, Any]] = [("numpy", np.__version__, lambda v, d: np.asarray(v, dtype=d))]
    if importlib.util.find_spec("array_api_strict"):
        import array_api_strict as strict

        found.append(
            ("array_api_strict", strict.__version__, lambda v, d: strict.asarray(v, dtype=getattr(strict, d)))
        )
    if importlib.util.find_spec("torch"):
        import torch

        found.append(("torch", torch.__version__, lambda v, d: torch.tensor(v, dtype=getattr(torch, d))))
    if importlib.util.find_spec("jax"):
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        found.append(("jax", jax.__version__, lambda v, d: jnp.asarray(v, dtype=getattr(jnp, d))))
    if importlib.util.find_spec("dask"):
        import dask
        import dask.array as da

        found.append(("dask", dask.__version__, lambda v, d: da.from_array(np.asarray(v, dtype=d), chunks=2)))
    return found


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "compute"):
        value = value.compute()
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    return np.asarray(value, dtype=np.float64)


def _exact_dominant() -> float:
    """LSE([0] + [-40]*10) to 50 digits with the standard library's decimal."""
    with decimal.localcontext() as context:
        context.prec = 50
        total = sum((decimal.Decimal(v).exp() for v in DOMINANT), decimal.Decimal(0))
        return float(total.ln())


def _ulps(got: float, exact: float, dtype: str) -> float:
    if got == exact:
        return 0.0
    spacing = float(np.spacing(np.asarray(abs(exact), dtype=dtype)))
    return abs(got - exact) / spacing


def _format_vector(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in values) + "]"


def _gradient_checks() -> list[str]:
    lines = []
    if importlib.util.find_spec("torch"):
        import torch

        verdicts = []
        for dtype in (torch.float32, torch.float64):
            x = torch.randn(8, 16, dtype=dtype, generator=torch.Generator().manual_seed(0)) * 5
            leaf = x.clone().requires_grad_(True)
            logsumexp(leaf, axis=1).sum().backward()
            verdicts.append(f"{str(dtype)[6:]} {'bitwise' if torch.equal(leaf.grad, softmax(x, axis=1)) else 'DIFFERS'}")
        lines.append(f"  torch (.backward()) : grad LSE == softmax: {', '.join(verdicts)}")
    if importlib.util.find_spec("jax"):
        import jax
        import jax.numpy as jnp

        verdicts = []
        for dtype in (jnp.float32, jnp.float64):
            x = jax.random.normal(jax.random.key(0), (8, 16), dtype=dtype) * 5
            gradient = jax.jit(jax.grad(lambda v: logsumexp(v, axis=1).sum()))(x)
            same = bool(jnp.array_equal(gradient, jax.jit(lambda v: softmax(v, axis=1))(x)))
            verdicts.append(f"{jnp.dtype(dtype).name} {'bitwise' if same else 'DIFFERS'}")
        lines.append(f"  jax (jit(grad))     : grad LSE == softmax: {', '.join(verdicts)}")
    return lines


def _native_dominant(name: str, array: Any) -> tuple[str, Callable[[], Any]] | None:
    """Each backend's own logsumexp on the dominant-term case."""
    if name == "numpy" and importlib.util.find_spec("scipy"):
        from scipy.special import logsumexp as scipy_logsumexp

        return "scipy.special.logsumexp", lambda: scipy_logsumexp(array)
    if name == "torch":
        import torch

        return "torch.logsumexp", lambda: torch.logsumexp(array, dim=0)
    if name == "jax":
        import jax

        return "jax.nn.logsumexp", lambda: jax.jit(jax.nn.logsumexp)(array)
    if name == "numpy":
        return "max-shift recipe", lambda: array.max() + np.log(np.exp(array - array.max()).sum())
    return None


def main() -> None:
    started = time.perf_counter()
    backends = _installed_backends()
    print(f"smoothmax {smoothmax.__version__}: log-sum-exp, the smooth max, and softmax, the smooth arg max")
    print("backends: " + ", ".join(f"{name} {version}" for name, version, _ in backends))

    x = np.asarray(VECTOR)
    print(f"\nx = {VECTOR}")
    print(f"  {'backend':18} {'logsumexp(x)':>20}   softmax(x)")
    for name, _, make in backends:
        array = make(VECTOR, "float64")
        value = _to_numpy(_jit_if_jax(name, logsumexp)(array))
        probabilities = _to_numpy(_jit_if_jax(name, softmax)(array))
        print(f"  {name:18} {float(value):20.16f}   {_format_vector(probabilities)}")

    value = float(logsumexp(x))
    print(
        f"\nbounds: max(x) = {x.max():g} < LSE(x) = {value:.6f} <= max(x) + log n = {x.max() + math.log(len(x)):.6f}"
    )

    print("\ntemperature t: t*LSE(x/t) -> max(x) and softmax(x/t) -> one-hot arg max as t -> 0+")
    print(f"  {'t':>6} {'t*LSE(x/t)':>12}   softmax(x/t)")
    for t in (10.0, 1.0, 0.3, 0.1, 0.01, 0.0, -0.1):
        note = "  (exact max)" if t == 0 else ("  (smooth min)" if t < 0 else "")
        lse_t = float(logsumexp(x, temperature=t))
        print(f"  {t:6g} {lse_t:12.6f}   {_format_vector(softmax(x, temperature=t))}{note}")

    print("\nregistered derivatives (gradient of logsumexp vs softmax of the same input):")
    for line in _gradient_checks() or ["  (no autodiff backend installed: pip install torch or jax)"]:
        print(line)

    exact = _exact_dominant()
    print(f"\none dominant term: LSE([0] + [-40]*10) = {exact:.17g} (exact)")
    print(f"  {'backend':18} {'dtype':8} {'smoothmax':>24} {'ulp':>8}   {'the backend own':<24} {'result':>24} {'ulp':>12}")
    for name, _, make in backends:
        for dtype in ("float32", "float64"):
            array = make(DOMINANT, dtype)
            ours = float(_to_numpy(_jit_if_jax(name, logsumexp)(array)))
            native = _native_dominant(name, array)
            native_text = ""
            if native is not None:
                label, call = native
                theirs = float(_to_numpy(call()))
                native_text = f"{label:<24} {theirs:24.17g} {_ulps(theirs, exact, dtype):12.4g}"
            print(f"  {name:18} {dtype:8} {ours:24.17g} {_ulps(ours, exact, dtype):8.2f}   {native_text}")
    print(f"\n(tour took {time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
