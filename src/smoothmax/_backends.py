"""Namespace dispatch: the one place that knows about individual backends.

``namespace(x)`` is ``array_api_compat.array_namespace(x)`` cached per array
type, so the hot path costs one dict lookup. ``kernel_for(xp)`` returns the
kernel with the namespace's autodiff rules registered (PyTorch, JAX), a
backend's own kernel (Dask: lazy single-pass reductions) or the plain kernel
(NumPy, array-api-strict, ...). Adapters are imported only
when an array of their framework is seen, so NumPy users never import torch.
"""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Any, Callable

import array_api_compat

from . import _fastpaths, _kernel

#: namespace name -> module with a ``kernel(x, weights, axis, temperature, outputs)``
#: that registers the derivative rules with that framework's autodiff.
AUTODIFF_ADAPTERS = {
    "array_api_compat.torch": "smoothmax._torch",
    "jax.numpy": "smoothmax._jax",
}

#: namespace name -> module with its own ``kernel(...)`` (same signature and
#: outputs) for backends that need another execution strategy.
BACKEND_KERNELS = {
    "array_api_compat.dask.array": "smoothmax._dask",
}

_namespace_by_type: dict[type, Any] = {}


def namespace(x: Any) -> Any:
    """The Array API namespace of the array ``x`` (TypeError if it is not one)."""
    kind = type(x)
    xp = _namespace_by_type.get(kind)
    if xp is None:
        try:
            xp = array_api_compat.array_namespace(x)
        except TypeError:
            raise TypeError(
                f"x must be an array of an Array API namespace (numpy, torch, jax, "
                f"array_api_strict, dask, ...); got {kind.__name__}"
            ) from None
        if not isinstance(x, (bool, int, float, complex)):
            _namespace_by_type[kind] = xp
            _fastpaths.entry_for(kind, xp.__name__)
    return xp


def device(x: Any) -> Any:
    return array_api_compat.device(x)


def default_float(xp: Any, x: Any) -> Any:
    """The namespace's default real floating dtype on ``x``'s device."""
    info = xp.__array_namespace_info__()
    return info.default_dtypes(device=device(x))["real floating"]


_kernel_by_namespace: dict[str, Callable[..., tuple[Any, ...]]] = {}


def kernel_for(xp: Any) -> Callable[..., tuple[Any, ...]]:
    """The kernel for namespace ``xp``: ``kernel(x, weights, axis, temperature, outputs)``.

    A plain dict cache (not ``functools.cache``) so that ``torch.compile`` traces
    a warm lookup without graph breaks.
    """
    found = _kernel_by_namespace.get(xp.__name__)
    if found is None:
        adapter = AUTODIFF_ADAPTERS.get(xp.__name__) or BACKEND_KERNELS.get(xp.__name__)
        if adapter is not None:
            found = importlib.import_module(adapter).kernel
        else:
            # The generic kernel, or its fast path for this namespace (smoothmax._fastpaths).
            found = functools.partial(_fastpaths.plain_kernel(xp), xp)
        _kernel_by_namespace[xp.__name__] = found
    return found


def preload_adapters() -> None:
    """Load the adapters of frameworks that are already imported (never imports
    a framework), so a first call inside ``torch.compile`` finds them cached."""
    for framework, namespace_name in (("torch", "array_api_compat.torch"), ("jax", "jax.numpy")):
        if framework in sys.modules:
            module = importlib.import_module(namespace_name)
            kernel_for(module)
