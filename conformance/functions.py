"""The functions under test: the ONE registry that says, per function name,

* how to call smoothmax with a case's arrays and keyword arguments (``call``),
* which mpmath reference ``generate.py`` computes the expected values with
  (``reference``, a ``"module:function"`` path so the runner never imports mpmath),
* which accuracy class (default tolerances) it belongs to,
* which peer libraries have it, and how to call them (``peers``).

To add a function, add one ``register(FunctionSpec(...))`` below (or in a module
imported at the end of this file) and a cases file; see ``conformance/README.md``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .backends import Backend

Arrays = dict[str, Any]
Keywords = dict[str, Any]


class NotApplicable(Exception):
    """A peer lacks an argument the case uses (reported as ``n/a``, never an error)."""


@dataclass(frozen=True)
class Accuracy:
    """Default tolerances in ulps, per dtype: ``default`` for backends with an
    accurate ``exp``, ``faithful_exp`` for those whose vectorised ``exp`` is only
    faithful (torch, XLA CPU); ``why`` says where the two differ."""

    default: dict[str, float]
    faithful_exp: dict[str, float]
    why: str = ""


#: Accuracy classes of ``/work/shared/semantics.md``.
ACCURACY: dict[str, Accuracy] = {
    "lse": Accuracy(
        default={"float16": 1.0, "bfloat16": 1.0, "float32": 1.0, "float64": 1.5},
        faithful_exp={"float16": 1.0, "bfloat16": 1.0, "float32": 2.0, "float64": 2.0},
        why="a faithful exp errs by up to 1 ulp per term (semantics.md: up to 2 ulp)",
    ),
    "softmax": Accuracy(
        default={"float16": 2.0, "bfloat16": 2.0, "float32": 2.0, "float64": 2.0},
        faithful_exp={"float16": 2.0, "bfloat16": 2.0, "float32": 2.0, "float64": 2.0},
    ),
}


@dataclass(frozen=True)
class PeerSpec:
    """A peer implementation: ``call(namespace, arrays, keywords)`` on arrays of
    ``backend``; raises :class:`NotApplicable` for arguments it does not have."""

    backend: str
    call: Callable[[Any, Arrays, Keywords], tuple[Any, ...]]


@dataclass(frozen=True)
class FunctionSpec:
    """One function of smoothmax under test.

    Parameters
    ----------
    name
        The ``function`` field of the cases.
    call
        ``call(smoothmax, backend, arrays, keywords)`` -> tuple of outputs, where
        ``arrays`` holds the case's arrays as ``backend`` arrays (``x``, ``b``,
        ``where``... as the cases name them) and ``keywords`` the other arguments.
    reference
        ``"module:function"`` of the mpmath reference (see ``conformance.exact``).
    accuracy
        Key of :data:`ACCURACY`.
    output_names
        ``output_names(keywords)``: names of the outputs, in order.
    needs_grad
        Only runs on backends with autodiff.
    extra_check
        ``extra_check(smoothmax, backend, arrays, keywords, outputs)`` -> a
        problem description or None (e.g. gradient bitwise equal to softmax).
    peers
        Peer name (``"scipy"``, ``"torch"``, ``"jax"``) -> :class:`PeerSpec`.
    """

    name: str
    call: Callable[[Any, Backend, Arrays, Keywords], tuple[Any, ...]]
    reference: str
    accuracy: str
    output_names: Callable[[Keywords], tuple[str, ...]]
    needs_grad: bool = False
    extra_check: Callable[[Any, Backend, Arrays, Keywords, tuple[Any, ...]], str | None] | None = None
    peers: dict[str, PeerSpec] = field(default_factory=dict)


FUNCTIONS: dict[str, FunctionSpec] = {}


def register(spec: FunctionSpec) -> FunctionSpec:
    if spec.accuracy not in ACCURACY:
        raise ValueError(f"{spec.name}: unknown accuracy class {spec.accuracy!r}")
    FUNCTIONS[spec.name] = spec
    return spec


# ------------------------------------------------------------------ helpers
def _optional(arrays: Arrays, keywords: Keywords, array_names: tuple[str, ...],
              keyword_names: tuple[str, ...]) -> dict[str, Any]:
    """The arguments among ``array_names``/``keyword_names`` that the case sets."""
    chosen = {name: arrays[name] for name in array_names if name in arrays}
    chosen.update({name: keywords[name] for name in keyword_names if name in keywords})
    return chosen


def _as_tuple(result: Any) -> tuple[Any, ...]:
    return tuple(result) if isinstance(result, tuple) else (result,)


def _unsupported(arrays: Arrays, keywords: Keywords, *, arrays_allowed: tuple[str, ...] = ("x",),
                 keywords_allowed: tuple[str, ...] = ("axis",)) -> None:
    """Raise NotApplicable if the case uses an argument the peer does not have
    (temperature 1 counts as absent)."""
    extra_arrays = set(arrays) - set(arrays_allowed)
    extra_keywords = {
        name for name, value in keywords.items()
        if name not in keywords_allowed and not (name == "temperature" and value == 1.0)
        and not (name in ("keepdims", "return_sign") and value is False)
    }
    if extra_arrays or extra_keywords:
        raise NotApplicable(", ".join(sorted(extra_arrays | extra_keywords)))


def _all_axes(axis: Any, ndim: int) -> Any:
    return tuple(range(ndim)) if axis is None else axis


# ---------------------------------------------------------------- logsumexp
def _call_logsumexp(smoothmax: Any, backend: Backend, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
    return _as_tuple(smoothmax.logsumexp(
        arrays["x"], **_optional(arrays, keywords, ("b", "where"),
                                 ("axis", "keepdims", "return_sign", "temperature"))))


def _scipy_logsumexp(np_module: Any, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
    from scipy import special

    _unsupported(arrays, keywords, arrays_allowed=("x", "b"),
                 keywords_allowed=("axis", "keepdims", "return_sign"))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return _as_tuple(special.logsumexp(arrays["x"], **_optional(
            arrays, keywords, ("b",), ("axis", "keepdims", "return_sign"))))


def _torch_logsumexp(torch: Any, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
    _unsupported(arrays, keywords, keywords_allowed=("axis", "keepdims"))
    x = arrays["x"]
    return (torch.logsumexp(x, dim=_all_axes(keywords.get("axis"), x.ndim),
                            keepdim=keywords.get("keepdims", False)),)


def _jax_logsumexp(jnp: Any, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
    import jax

    _unsupported(arrays, keywords, arrays_allowed=("x", "b", "where"),
                 keywords_allowed=("axis", "keepdims", "return_sign"))
    return _as_tuple(jax.nn.logsumexp(arrays["x"], **_optional(
        arrays, keywords, ("b", "where"), ("axis", "keepdims", "return_sign"))))


register(FunctionSpec(
    name="logsumexp",
    call=_call_logsumexp,
    reference="conformance.exact:logsumexp",
    accuracy="lse",
    output_names=lambda keywords: ("lse", "sign") if keywords.get("return_sign") else ("lse",),
    peers={
        "scipy": PeerSpec("numpy", _scipy_logsumexp),
        "torch": PeerSpec("torch", _torch_logsumexp),
        "jax": PeerSpec("jax", _jax_logsumexp),
    },
))


# ------------------------------------------------------ softmax, log_softmax
def _softmax_like(name: str) -> Callable[[Any, Backend, Arrays, Keywords], tuple[Any, ...]]:
    def call(smoothmax: Any, backend: Backend, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
        function = getattr(smoothmax, name)
        return (function(arrays["x"], **_optional(arrays, keywords, ("where",), ("axis", "temperature"))),)

    return call


def _as_peer_user_would(where: Callable[[Any, Any, float], Any], arrays: Arrays,
                        keywords: Keywords) -> tuple[Arrays, Keywords]:
    """What a user of a peer without ``where``/``temperature`` writes instead:
    masked entries set to ``-inf``, then ``x / t`` (``t = 0`` has no such spelling)."""
    x = arrays["x"]
    if "where" in arrays:
        x = where(arrays["where"], x, -math.inf)
    temperature = keywords.get("temperature", 1.0)
    if temperature == 0:
        raise NotApplicable("temperature 0")
    if temperature != 1.0:
        x = x / temperature
    rest = {name: value for name, value in keywords.items() if name != "temperature"}
    return {**{k: v for k, v in arrays.items() if k != "where"}, "x": x}, rest


def _scipy_softmax_like(name: str) -> Callable[[Any, Arrays, Keywords], tuple[Any, ...]]:
    def call(np_module: Any, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
        from scipy import special

        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            arrays, keywords = _as_peer_user_would(np_module.where, arrays, keywords)
            _unsupported(arrays, keywords)
            return (getattr(special, name)(arrays["x"], axis=keywords.get("axis", -1)),)

    return call


def _torch_softmax_like(name: str) -> Callable[[Any, Arrays, Keywords], tuple[Any, ...]]:
    def call(torch: Any, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
        arrays, keywords = _as_peer_user_would(
            lambda mask, x, fill: torch.where(mask, x, torch.tensor(fill, dtype=x.dtype)), arrays, keywords)
        _unsupported(arrays, keywords)
        axis = keywords.get("axis", -1)
        if not isinstance(axis, int):
            raise NotApplicable("axis must be one int")
        return (getattr(torch, name)(arrays["x"], dim=axis),)

    return call


def _jax_softmax_like(name: str) -> Callable[[Any, Arrays, Keywords], tuple[Any, ...]]:
    def call(jnp: Any, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
        import jax

        where = arrays.get("where")
        arrays, keywords = _as_peer_user_would(lambda mask, x, fill: x, arrays, keywords)  # where is native
        _unsupported(arrays, keywords)
        options = {"where": where} if where is not None else {}
        return (getattr(jax.nn, name)(arrays["x"], axis=keywords.get("axis", -1), **options),)

    return call


for _name in ("softmax", "log_softmax"):
    register(FunctionSpec(
        name=_name,
        call=_softmax_like(_name),
        reference=f"conformance.exact:{_name}",
        accuracy="softmax",
        output_names=lambda keywords, _name=_name: (_name,),
        peers={
            "scipy": PeerSpec("numpy", _scipy_softmax_like(_name)),
            "torch": PeerSpec("torch", _torch_softmax_like(_name)),
            "jax": PeerSpec("jax", _jax_softmax_like(_name)),
        },
    ))


# ------------------------------------------------------- grad of logsumexp
def _gradient_keywords(arrays: Arrays, keywords: Keywords) -> dict[str, Any]:
    # logsumexp reduces all axes by default, softmax only the last: be explicit.
    return {"axis": keywords.get("axis"), **_optional(arrays, keywords, ("where",), ("temperature",))}


def _call_logsumexp_gradient(smoothmax: Any, backend: Backend, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
    if backend.grad is None:
        raise NotApplicable(f"{backend.name} has no autodiff")
    options = _gradient_keywords(arrays, keywords)
    return (backend.grad(lambda x: smoothmax.logsumexp(x, **options), arrays["x"]),)


def _gradient_is_softmax(smoothmax: Any, backend: Backend, arrays: Arrays, keywords: Keywords,
                         outputs: tuple[Any, ...]) -> str | None:
    """The contract: grad of logsumexp equals ``smoothmax.softmax`` bit for bit."""
    probabilities = backend.to_numpy(smoothmax.softmax(arrays["x"], **_gradient_keywords(arrays, keywords)))
    gradient = backend.to_numpy(outputs[0])
    same = (gradient == probabilities) | (np.isnan(gradient) & np.isnan(probabilities))
    same &= np.signbit(gradient) == np.signbit(probabilities)
    if not np.all(same):
        return f"gradient differs from smoothmax.softmax in {int(np.sum(~same))} of {same.size} entries"
    return None


def _torch_logsumexp_gradient(torch: Any, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
    # grad of t LSE(x / t) is softmax(x / t): the gradient of LSE at x / t.
    arrays, keywords = _as_peer_user_would(
        lambda mask, x, fill: torch.where(mask, x, torch.tensor(fill, dtype=x.dtype)), arrays, keywords)
    _unsupported(arrays, keywords)
    leaf = arrays["x"].detach().clone().requires_grad_(True)
    torch.logsumexp(leaf, dim=_all_axes(keywords.get("axis"), leaf.ndim)).sum().backward()
    return (leaf.grad,)


def _jax_logsumexp_gradient(jnp: Any, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
    import jax

    where = arrays.get("where")
    arrays, keywords = _as_peer_user_would(lambda mask, x, fill: x, arrays, keywords)  # where is native
    _unsupported(arrays, keywords)
    options = {"axis": keywords.get("axis"), **({"where": where} if where is not None else {})}
    return (jax.grad(lambda x: jax.nn.logsumexp(x, **options).sum())(arrays["x"]),)


register(FunctionSpec(
    name="logsumexp_gradient",
    call=_call_logsumexp_gradient,
    reference="conformance.exact:logsumexp_gradient",
    accuracy="softmax",
    output_names=lambda keywords: ("grad",),
    needs_grad=True,
    extra_check=_gradient_is_softmax,
    peers={
        "torch": PeerSpec("torch", _torch_logsumexp_gradient),
        "jax": PeerSpec("jax", _jax_logsumexp_gradient),
    },
))


# ----------------------------------------------- log-domain family, duality
ACCURACY["entropy"] = Accuracy(
    default={"float16": 1.0, "bfloat16": 1.0, "float32": 4.0, "float64": 4.0},
    faithful_exp={"float16": 1.0, "bfloat16": 1.0, "float32": 4.0, "float64": 4.0},
    why="a sum of n terms p log p, each rounded, then the sum's own rounding (a few ulp)",
)


def _call_binary(name: str, first: str, second: str) -> Callable[[Any, Backend, Arrays, Keywords], tuple[Any, ...]]:
    def call(smoothmax: Any, backend: Backend, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
        return (getattr(smoothmax, name)(arrays[first], arrays[second], **keywords),)

    return call


def _call_unary(name: str, argument: str = "x", array_keywords: tuple[str, ...] = ()) -> Callable[..., tuple[Any, ...]]:
    def call(smoothmax: Any, backend: Backend, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
        extra = {key: arrays[key] for key in array_keywords if key in arrays}
        return (getattr(smoothmax, name)(arrays[argument], **keywords, **extra),)

    return call


def _numpy_logaddexp(np_module: Any, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
    with np.errstate(all="ignore"):
        return (np_module.logaddexp(arrays["a"], arrays["b"]),)


def _torch_logaddexp(torch: Any, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
    return (torch.logaddexp(arrays["a"], arrays["b"]),)


def _jax_logaddexp(jnp: Any, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
    return (jnp.logaddexp(arrays["a"], arrays["b"]),)


def _torch_logcumsumexp(torch: Any, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
    _unsupported(arrays, keywords)
    return (torch.logcumsumexp(arrays["x"], dim=keywords.get("axis", -1)),)


def _jax_logcumsumexp(jnp: Any, arrays: Arrays, keywords: Keywords) -> tuple[Any, ...]:
    import jax

    _unsupported(arrays, keywords, keywords_allowed=("axis", "reverse"))
    return (jax.lax.cumlogsumexp(arrays["x"], axis=keywords.get("axis", -1) % arrays["x"].ndim,
                                 reverse=keywords.get("reverse", False)),)


register(FunctionSpec(
    name="logaddexp", call=_call_binary("logaddexp", "a", "b"), reference="conformance.exact:logaddexp",
    accuracy="lse", output_names=lambda keywords: ("logaddexp",),
    peers={"numpy": PeerSpec("numpy", _numpy_logaddexp), "torch": PeerSpec("torch", _torch_logaddexp),
           "jax": PeerSpec("jax", _jax_logaddexp)},
))
register(FunctionSpec(
    name="logsubexp", call=_call_binary("logsubexp", "a", "b"), reference="conformance.exact:logsubexp",
    accuracy="lse", output_names=lambda keywords: ("logsubexp",),
))
register(FunctionSpec(
    name="logcumsumexp", call=_call_unary("logcumsumexp"), reference="conformance.exact:logcumsumexp",
    accuracy="lse", output_names=lambda keywords: ("logcumsumexp",),
    peers={"torch": PeerSpec("torch", _torch_logcumsumexp), "jax": PeerSpec("jax", _jax_logcumsumexp)},
))
register(FunctionSpec(
    name="logmeanexp", call=_call_unary("logmeanexp", array_keywords=("where",)),
    reference="conformance.exact:logmeanexp", accuracy="lse", output_names=lambda keywords: ("logmeanexp",),
))
register(FunctionSpec(
    name="log1psumexp", call=_call_unary("log1psumexp"), reference="conformance.exact:log1psumexp",
    accuracy="lse", output_names=lambda keywords: ("log1psumexp",),
))
register(FunctionSpec(
    name="log_matmul_exp", call=_call_binary("log_matmul_exp", "a", "b"),
    reference="conformance.exact:log_matmul_exp", accuracy="lse", output_names=lambda keywords: ("log_matmul_exp",),
))
register(FunctionSpec(
    name="entropy", call=_call_unary("entropy", argument="p"), reference="conformance.exact:entropy",
    accuracy="entropy", output_names=lambda keywords: ("entropy",),
))
register(FunctionSpec(
    name="softmax_entropy", call=_call_unary("softmax_entropy"), reference="conformance.exact:softmax_entropy",
    accuracy="entropy", output_names=lambda keywords: ("softmax_entropy",),
))
register(FunctionSpec(
    name="fenchel_young_loss", call=_call_binary("fenchel_young_loss", "x", "y"),
    reference="conformance.exact:fenchel_young_loss", accuracy="entropy",
    output_names=lambda keywords: ("fenchel_young_loss",),
))
