"""Shared fixtures: one ``xp`` backend fixture parametrized over every installed backend."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough", max_examples=400, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    # CI (``CI`` set, as .ci/run's callers do): the same examples every run, so that a
    # submission's result does not depend on the draw; local runs keep exploring.
    "ci", parent=settings.get_profile("default"), derandomize=True, database=None
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default"))

# Without a GPU, Triton's kernels (smoothmax._cuda) run in Triton's interpreter
# on CPU tensors (tests/test_cuda.py). It must be chosen before triton is first
# imported: its own language functions are decorated for it then.
if importlib.util.find_spec("triton") is not None and importlib.util.find_spec("torch") is not None:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")

if importlib.util.find_spec("jax") is not None:
    # On GPUs XLA's reductions add in a run-dependent order unless asked not to:
    # the bitwise promises (the gradient of logsumexp is softmax) hold with this
    # flag there (README, Semantics). Set before jax reads XLA_FLAGS; no effect on CPU.
    if "--xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true").strip()
    import jax

    jax.config.update("jax_enable_x64", True)  # so jax has float64 like the others


@dataclass
class Backend:
    """How the tests make and read arrays of one namespace."""

    name: str
    module: Any  # the namespace users call (numpy, torch, jax.numpy, ...)
    dtypes: dict[str, Any]  # "float16"/"bfloat16"/"float32"/"float64" -> dtype
    to_numpy: Callable[[Any], np.ndarray]
    has_autodiff: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def asarray(self, values: Any, dtype: str = "float64") -> Any:
        array = np.asarray(values, dtype=np.float64 if dtype in ("float16", "bfloat16") else dtype)
        if self.name == "torch":
            tensor = self.module.from_numpy(array.copy())
            return tensor.to(self.dtypes[dtype])
        if self.name == "jax":  # rounded on the host: no conversion program compiled per shape
            return self.module.asarray(array.astype(self.module.dtype(self.dtypes[dtype])))
        if self.name == "dask":
            return self.module.from_array(array.astype(dtype), chunks=_two_chunks(array.shape))
        return self.module.asarray(array.astype(dtype) if dtype != "bfloat16" else array, dtype=self.dtypes[dtype])

    def asbool(self, values: Any) -> Any:
        array = np.asarray(values, dtype=bool)
        if self.name == "torch":
            return self.module.from_numpy(array.copy())
        if self.name == "dask":
            return self.module.from_array(array, chunks=_two_chunks(array.shape))
        return self.module.asarray(array)

    def grad(self, function: Callable[[Any], Any], x: Any) -> Any:
        """Gradient of ``sum(function(x))`` with respect to ``x`` through the backend's autodiff."""
        if self.name == "torch":
            leaf = x.detach().clone().requires_grad_(True)
            function(leaf).sum().backward()
            return leaf.grad
        if self.name == "jax":
            import jax

            return jax.grad(lambda value: function(value).sum())(x)
        raise NotImplementedError(f"{self.name} has no autodiff")

    def __repr__(self) -> str:
        return self.name


def _numpy_backend() -> Backend:
    return Backend(
        "numpy",
        np,
        {"float16": np.float16, "float32": np.float32, "float64": np.float64},
        np.asarray,
    )


def _strict_backend() -> Backend | None:
    if importlib.util.find_spec("array_api_strict") is None:
        return None
    import array_api_strict as strict

    return Backend(
        "array_api_strict",
        strict,
        {"float32": strict.float32, "float64": strict.float64},
        lambda a: np.asarray(a),
    )


def _torch_backend() -> Backend | None:
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return Backend(
        "torch",
        torch,
        {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64},
        lambda a: a.detach().to(torch.float64).numpy() if a.dtype.is_floating_point else a.numpy(),
        has_autodiff=True,
    )


def _jax_backend() -> Backend | None:
    if importlib.util.find_spec("jax") is None:
        return None
    import jax.numpy as jnp

    return Backend(
        "jax",
        jnp,
        {"float16": jnp.float16, "bfloat16": jnp.bfloat16, "float32": jnp.float32, "float64": jnp.float64},
        lambda a: np.asarray(a, dtype=np.float64) if jnp.issubdtype(a.dtype, jnp.floating) else np.asarray(a),
        has_autodiff=True,
    )


def _two_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Dask chunks that split every axis of length > 1 in two, so that each reduction
    merges states of several chunks (the single-pass path), not one block."""
    return tuple(max(1, (n + 1) // 2) for n in shape)


def _dask_to_numpy(array: Any) -> np.ndarray:
    computed = array.compute() if hasattr(array, "compute") else array
    return np.asarray(computed)


def _dask_backend() -> Backend | None:
    """Dask arrays (lazy; every axis in two chunks); ``to_numpy`` computes."""
    if importlib.util.find_spec("dask") is None:
        return None
    import dask
    import dask.array as da

    dask.config.set(scheduler="synchronous")  # tiny test graphs: no thread pool overhead
    return Backend("dask", da, {"float32": np.float32, "float64": np.float64}, _dask_to_numpy)


BACKENDS = [
    backend
    for backend in (_numpy_backend(), _strict_backend(), _torch_backend(), _jax_backend(), _dask_backend())
    if backend is not None
]


@pytest.fixture(params=BACKENDS, ids=[backend.name for backend in BACKENDS])
def xp(request: pytest.FixtureRequest) -> Backend:
    """Every installed backend, as a :class:`Backend`."""
    return request.param


BACKEND_DTYPES = [(backend, dtype) for backend in BACKENDS for dtype in backend.dtypes]


@pytest.fixture(params=BACKEND_DTYPES, ids=[f"{backend.name}-{dtype}" for backend, dtype in BACKEND_DTYPES])
def xp_and_dtype(request: pytest.FixtureRequest) -> tuple[Backend, str]:
    """Every installed backend with each floating dtype it has."""
    return request.param


@pytest.fixture(
    params=[b for b in BACKENDS if b.has_autodiff], ids=[b.name for b in BACKENDS if b.has_autodiff]
)
def autodiff_xp(request: pytest.FixtureRequest) -> Backend:
    """The installed backends with autodiff (torch, jax)."""
    return request.param
