"""Validation and layout shared by the public reductions.

``prepare`` checks the arguments (raising errors that name them), finds the
namespace and the backend's kernel, casts to the compute dtype, masks absent
entries with ``-inf`` and moves the reduced axes into one working axis.
``Prepared.reduced`` / ``Prepared.full`` undo the layout on the kernel's outputs.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

from . import _backends


class AxisError(ValueError, IndexError):
    """``axis`` out of range or repeated (a ``ValueError``, as NumPy's ``AxisError``)."""


def namespace_of(x: Any, **others: Any) -> Any:
    """The Array API namespace of ``x``; every other array argument must share it."""
    xp = _backends.namespace(x)
    for name, value in others.items():
        if value is None or isinstance(value, (bool, int, float)):
            continue
        try:
            other = _backends.namespace(value)
        except TypeError:
            raise TypeError(
                f"{name} must be an array of the same namespace as x ({xp.__name__}) or a "
                f"Python scalar; got {type(value).__name__}"
            ) from None
        if other is not xp:
            raise TypeError(
                f"{name} is an array of namespace {other.__name__} but x is of namespace "
                f"{xp.__name__}: mixed namespaces are not supported"
            )
    return xp


def normalize_axes(axis: Any, ndim: int, argument: str = "axis") -> tuple[int, ...]:
    """``axis`` (None, int or tuple of ints, negative allowed) as sorted non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    items = axis if isinstance(axis, tuple) else (axis,)
    normalized = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise TypeError(f"{argument} must be None, an int or a tuple of ints; got {axis!r}")
        if not -ndim <= item < ndim or (ndim == 0 and item not in (0, -1)):
            raise AxisError(f"{argument} {item} is out of bounds for an array of dimension {ndim}")
        normalized.append(int(item) % ndim if ndim else 0)
    if len(set(normalized)) != len(normalized):
        raise AxisError(f"{argument} {axis!r} repeats an axis")
    if ndim == 0:
        return ()
    return tuple(sorted(normalized))


def check_temperature(temperature: Any) -> float:
    """``temperature`` as a finite Python float."""
    if isinstance(temperature, (str, bytes)):
        raise TypeError(f"temperature must be a real number; got {type(temperature).__name__}")
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        try:
            temperature = float(temperature)  # 0-d arrays
        except (TypeError, ValueError):
            raise TypeError(
                f"temperature must be a real number; got {type(temperature).__name__}"
            ) from None
    value = float(temperature)
    if not math.isfinite(value):
        raise ValueError(f"temperature must be finite; got {value}")
    return value


def floating_dtypes(xp: Any, x: Any) -> tuple[Any, Any]:
    """``(output dtype, compute dtype)`` for ``x``: ints and bools promote to the
    default floating dtype; float16 and bfloat16 are computed in float32."""
    dtype = x.dtype
    if xp.isdtype(dtype, "real floating"):
        output = dtype
    elif xp.isdtype(dtype, ("bool", "integral")):
        output = _backends.default_float(xp, x)
    elif xp.isdtype(dtype, "complex floating"):
        raise TypeError(f"x has complex dtype {dtype}; only real inputs are supported")
    else:
        raise TypeError(f"x has unsupported dtype {dtype}; expected a real or integer dtype")
    compute = output if output in (xp.float32, xp.float64) else xp.float32
    return output, compute


def _broadcast(xp: Any, value: Any, x: Any, name: str) -> Any:
    try:
        return xp.broadcast_to(value, x.shape)
    except (ValueError, RuntimeError, TypeError) as error:
        raise ValueError(
            f"{name} of shape {tuple(value.shape)} does not broadcast to x of shape {tuple(x.shape)}"
        ) from error


@dataclass
class Prepared:
    """An input ready for the kernel, with what is needed to undo the layout."""

    xp: Any
    kernel: Callable[..., tuple[Any, ...]]
    x: Any
    weights: Any | None
    axis: int
    temperature: float
    negate: bool
    output_dtype: Any
    shape: tuple[int, ...]
    axes: tuple[int, ...]
    permutation: tuple[int, ...] | None

    def run(self, outputs: tuple[str, ...]) -> dict[str, Any]:
        values = self.kernel(self.x, self.weights, self.axis, self.temperature, outputs)
        return dict(zip(outputs, values))

    def reduced(self, value: Any, keepdims: bool) -> Any:
        """Kernel output of keepdims shape back to the caller's reduced shape."""
        xp = self.xp
        if keepdims:
            shape = tuple(1 if i in self.axes else n for i, n in enumerate(self.shape))
        else:
            shape = tuple(n for i, n in enumerate(self.shape) if i not in self.axes)
        if tuple(value.shape) != shape:
            value = xp.reshape(value, shape)
        return self.cast(value)

    def full(self, value: Any) -> Any:
        """Kernel output of the working shape back to ``x``'s shape."""
        xp = self.xp
        if self.permutation is not None:
            kept = [self.shape[i] for i in self.permutation[: len(self.shape) - len(self.axes)]]
            value = xp.reshape(value, tuple(kept) + tuple(self.shape[i] for i in self.axes))
            inverse = [0] * len(self.permutation)
            for position, axis in enumerate(self.permutation):
                inverse[axis] = position
            value = xp.permute_dims(value, tuple(inverse))
        elif tuple(value.shape) != self.shape:
            value = xp.reshape(value, self.shape)
        return self.cast(value)

    def cast(self, value: Any) -> Any:
        if value.dtype != self.output_dtype:
            value = self.xp.astype(value, self.output_dtype)
        return value


def prepare(
    x: Any,
    axis: Any,
    *,
    b: Any = None,
    where: Any = None,
    temperature: Any = 1.0,
) -> Prepared:
    """Validate the arguments and lay ``x`` out for the kernel."""
    xp = namespace_of(x, b=b, where=where)
    t = check_temperature(temperature)
    output_dtype, compute_dtype = floating_dtypes(xp, x)
    shape = tuple(x.shape)
    axes = normalize_axes(axis, len(shape))

    if x.dtype != compute_dtype:
        x = xp.astype(x, compute_dtype)
    if t < 0:
        x = -x  # t LSE(x / t) = -|t| LSE(-x / |t|): the smooth minimum
    if where is not None:
        if isinstance(where, bool):
            where = xp.asarray(where, device=_backends.device(x))
        if where.dtype != xp.bool:
            raise TypeError(f"where must be a boolean array; got dtype {where.dtype}")
        where = _broadcast(xp, where, x, "where")
        x = xp.where(where, x, xp.asarray(-math.inf, dtype=compute_dtype, device=_backends.device(x)))
    weights = None
    if b is not None:
        weights = xp.asarray(b, device=_backends.device(x)) if isinstance(b, (int, float)) else b
        if not (xp.isdtype(weights.dtype, ("real floating", "integral", "bool"))):
            raise TypeError(f"b must be a real array; got dtype {weights.dtype}")
        if weights.dtype != compute_dtype:
            weights = xp.astype(weights, compute_dtype)
        weights = _broadcast(xp, weights, x, "b")
        if where is not None:
            weights = xp.where(where, weights, xp.zeros_like(weights))

    permutation = None
    if len(axes) == 1:
        working_axis = axes[0]
    else:
        # Several (or no) reduced axes: move them to the end and flatten them
        # into one working axis; `Prepared.full` undoes this.
        kept = tuple(i for i in range(len(shape)) if i not in axes)
        if kept + axes != tuple(range(len(shape))):
            permutation = kept + axes
            x = xp.permute_dims(x, permutation)
            weights = None if weights is None else xp.permute_dims(weights, permutation)
        working_shape = tuple(shape[i] for i in kept) + (math.prod(shape[i] for i in axes),)
        x = xp.reshape(x, working_shape)
        weights = None if weights is None else xp.reshape(weights, working_shape)
        working_axis = len(working_shape) - 1

    return Prepared(
        xp=xp,
        kernel=_backends.kernel_for(xp),
        x=x,
        weights=weights,
        axis=working_axis,
        temperature=abs(t),
        negate=t < 0,
        output_dtype=output_dtype,
        shape=shape,
        axes=axes,
        permutation=permutation,
    )
