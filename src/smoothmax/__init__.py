"""smoothmax: exact, fast log-sum-exp and softmax on every Array API backend.

``logsumexp`` is the smooth maximum, ``softmax`` its gradient and the smooth
arg max, ``log_softmax`` its log. One backend-agnostic core runs on NumPy,
PyTorch, JAX, array-api-strict and Dask; derivatives are registered with
PyTorch autograd and JAX so that the gradient of ``logsumexp`` *is* ``softmax``.
"""

from ._backends import preload_adapters as _preload_adapters
from ._prepare import AxisError
from ._reductions import log_softmax, logsumexp, softmax
from ._streaming import LSEState, lse_finalize, lse_init, lse_merge, lse_update
from ._logdomain import log1psumexp, log_matmul_exp, logaddexp, logcumsumexp, logmeanexp, logsubexp
from ._duality import entropy, fenchel_young_loss, softmax_entropy

__all__ = ["AxisError", "log_softmax", "logsumexp", "softmax"]
__all__ += ["LSEState", "lse_finalize", "lse_init", "lse_merge", "lse_update"]
__all__ += ["log1psumexp", "log_matmul_exp", "logaddexp", "logcumsumexp", "logmeanexp", "logsubexp"]
__all__ += ["entropy", "fenchel_young_loss", "softmax_entropy"]
__version__ = "0.1.0"

_preload_adapters()
