"""The backends the suite runs on: the ONE place that knows about array libraries.

A :class:`Backend` says how to make arrays of a namespace from the case data
(float64 NumPy arrays holding values exactly representable in the dtype), how
to read results back, which dtypes it has, whether its vectorised ``exp`` is
only faithful (it then gets the looser tolerances of the contract) and, for
autodiff frameworks, how to take a gradient.

To add a backend, append one ``Backend(...)`` to :data:`BACKENDS` (see
``conformance/README.md``); the runner, the peers table and the pytest
module pick it up from here.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np


@dataclass
class Backend:
    """How the suite makes, reads and differentiates arrays of one namespace.

    Parameters
    ----------
    name
        Name used in tables, ``--backend`` and pytest ids.
    package
        Top-level module whose presence makes the backend available.
    dtypes
        Dtype names it supports, among ``conformance.floats.DTYPES``.
    load
        Imports and returns the namespace users call smoothmax with (and does
        any one-time setup, such as enabling float64 in JAX).
    asarray
        ``asarray(namespace, values, dtype)``: an array of ``dtype`` from a
        float64 NumPy array whose values ``dtype`` represents exactly.
    asbool
        ``asbool(namespace, values)``: a bool array from a NumPy bool array.
    to_numpy
        ``to_numpy(array)``: a float64 NumPy array (exact for every dtype).
    dtype_name
        ``dtype_name(array)``: the name of an array's dtype (``"bfloat16"``...).
    faithful_exp
        Its vectorised ``exp`` is only faithful (PyTorch, XLA CPU kernels).
    flushes_subnormals
        Its arithmetic flushes subnormal results to zero (XLA on CPU): a 0 where
        the exact result is subnormal in the compute dtype counts as exact.
    exp_from
        The backend whose ``exp`` kernels it runs, if another (array-api-strict
        wraps NumPy): its peers set the floor of the softmax peer bound.
    grad
        ``grad(function, x)``: gradient of ``sum(function(x))`` in ``x``, or None.
    usable
        ``usable()``: whether the installed package can run it here (a device
        present), where the package alone does not say; None: always.
    """

    name: str
    package: str
    dtypes: tuple[str, ...]
    load: Callable[[], Any]
    asarray: Callable[[Any, np.ndarray, str], Any]
    asbool: Callable[[Any, np.ndarray], Any]
    to_numpy: Callable[[Any], np.ndarray]
    dtype_name: Callable[[Any], str]
    faithful_exp: bool = False
    flushes_subnormals: bool = False
    exp_from: str | None = None
    grad: Callable[[Callable[[Any], Any], Any], Any] | None = None
    usable: Callable[[], bool] | None = None
    _namespace: Any = field(default=None, repr=False)

    @property
    def available(self) -> bool:
        """Whether its package is installed (without importing it) and, where
        ``usable`` says more, can run here."""
        if importlib.util.find_spec(self.package) is None:
            return False
        return self.usable is None or self.usable()

    @property
    def namespace(self) -> Any:
        if self._namespace is None:
            self._namespace = self.load()
        return self._namespace

    def array(self, values: np.ndarray, dtype: str) -> Any:
        return self.asarray(self.namespace, np.asarray(values, dtype=np.float64), dtype)

    def bool_array(self, values: np.ndarray) -> Any:
        return self.asbool(self.namespace, np.asarray(values, dtype=bool))


# ---------------------------------------------------------------- numpy
def _numpy_asarray(np_module: Any, values: np.ndarray, dtype: str) -> Any:
    return values.astype(dtype)


# ----------------------------------------------------- array_api_strict
def _strict_asarray(strict: Any, values: np.ndarray, dtype: str) -> Any:
    return strict.asarray(values.astype(dtype), dtype=getattr(strict, dtype))


def _strict_to_numpy(array: Any) -> np.ndarray:
    return np.asarray(np.from_dlpack(array), dtype=np.float64)


# ---------------------------------------------------------------- torch
def _torch_asarray(torch: Any, values: np.ndarray, dtype: str) -> Any:
    # float64 -> dtype is exact for representable values, whatever the rounding path.
    return torch.from_numpy(values.copy()).to(getattr(torch, dtype))


def _torch_asbool(torch: Any, values: np.ndarray) -> Any:
    return torch.from_numpy(values.copy())


def _torch_to_numpy(tensor: Any) -> np.ndarray:
    import torch

    return tensor.detach().to(torch.float64).numpy()


def _torch_grad(function: Callable[[Any], Any], x: Any) -> Any:
    leaf = x.detach().clone().requires_grad_(True)
    function(leaf).sum().backward()
    return leaf.grad


def _cuda_usable() -> bool:
    return importlib.import_module("torch").cuda.is_available()


def _torch_cuda_asarray(torch: Any, values: np.ndarray, dtype: str) -> Any:
    return _torch_asarray(torch, values, dtype).to("cuda")


def _torch_cuda_asbool(torch: Any, values: np.ndarray) -> Any:
    return _torch_asbool(torch, values).to("cuda")


def _torch_cuda_to_numpy(tensor: Any) -> np.ndarray:
    # a result must stay on its input's device: a CPU tensor here is a failure
    if not tensor.is_cuda:
        raise AssertionError(f"result on {tensor.device}, input on cuda")
    return _torch_to_numpy(tensor.cpu())


# ------------------------------------------------------------------ jax
def _load_jax() -> Any:
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 like the other backends
    import jax.numpy as jnp

    return jnp


def _jax_asarray(jnp: Any, values: np.ndarray, dtype: str) -> Any:
    # rounded on the host (the inputs are exact in dtype): astype on the device
    # compiles a conversion program for each shape (~0.1 s each on CPU)
    return jnp.asarray(values.astype(jnp.dtype(dtype)))


def _jax_asbool(jnp: Any, values: np.ndarray) -> Any:
    return jnp.asarray(values)


def _jax_to_numpy(array: Any) -> np.ndarray:
    return np.asarray(array).astype(np.float64)


def _jax_grad(function: Callable[[Any], Any], x: Any) -> Any:
    import jax

    return jax.grad(lambda value: function(value).sum())(x)


# ----------------------------------------------------------------- dask
def _load_dask() -> Any:
    import dask
    import dask.array as da

    dask.config.set(scheduler="synchronous")  # tiny case graphs: no thread pool overhead
    return da


def _dask_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    # every axis of length > 1 in two chunks: reductions merge the states of several chunks
    return tuple(max(1, (n + 1) // 2) for n in shape)


def _dask_asarray(da: Any, values: np.ndarray, dtype: str) -> Any:
    return da.from_array(values.astype(dtype), chunks=_dask_chunks(values.shape))


def _dask_asbool(da: Any, values: np.ndarray) -> Any:
    return da.from_array(values, chunks=_dask_chunks(values.shape))


def _dask_to_numpy(array: Any) -> np.ndarray:
    computed = array.compute() if hasattr(array, "compute") else array
    return np.asarray(computed, dtype=np.float64)


def _dtype_name(array: Any) -> str:
    return str(array.dtype).rsplit(".", 1)[-1]


_TORCH = Backend(
    name="torch",
    package="torch",
    dtypes=("float16", "bfloat16", "float32", "float64"),
    load=lambda: importlib.import_module("torch"),
    asarray=_torch_asarray,
    asbool=_torch_asbool,
    to_numpy=_torch_to_numpy,
    dtype_name=_dtype_name,
    faithful_exp=True,
    grad=_torch_grad,
)

#: Every registered backend, available or not (the pytest module skips the
#: ones whose package is missing).
BACKENDS: list[Backend] = [
    Backend(
        name="numpy",
        package="numpy",
        dtypes=("float16", "float32", "float64"),
        load=lambda: np,
        asarray=_numpy_asarray,
        asbool=lambda np_module, values: values,
        to_numpy=lambda array: np.asarray(array, dtype=np.float64),
        dtype_name=_dtype_name,
    ),
    Backend(
        name="array_api_strict",
        exp_from="numpy",
        package="array_api_strict",
        dtypes=("float32", "float64"),
        load=lambda: importlib.import_module("array_api_strict"),
        asarray=_strict_asarray,
        asbool=lambda strict, values: strict.asarray(values),
        to_numpy=_strict_to_numpy,
        dtype_name=_dtype_name,
    ),
    _TORCH,
    # the same on a GPU, where one is present (never on CI)
    replace(
        _TORCH,
        name="torch-cuda",
        asarray=_torch_cuda_asarray,
        asbool=_torch_cuda_asbool,
        to_numpy=_torch_cuda_to_numpy,
        usable=_cuda_usable,
    ),
    Backend(
        name="jax",
        package="jax",
        dtypes=("float16", "bfloat16", "float32", "float64"),
        load=_load_jax,
        asarray=_jax_asarray,
        asbool=_jax_asbool,
        to_numpy=_jax_to_numpy,
        dtype_name=_dtype_name,
        faithful_exp=True,
        flushes_subnormals=True,  # XLA's CPU kernels run with flush-to-zero
        grad=_jax_grad,
    ),
    Backend(
        name="dask",
        package="dask",
        dtypes=("float32", "float64"),
        load=_load_dask,
        asarray=_dask_asarray,
        asbool=_dask_asbool,
        to_numpy=_dask_to_numpy,
        dtype_name=_dtype_name,
    ),
]


def get_backend(name: str) -> Backend:
    for backend in BACKENDS:
        if backend.name == name:
            return backend
    raise KeyError(f"no backend named {name!r}; registered: {[b.name for b in BACKENDS]}")
