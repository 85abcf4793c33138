"""Case builders, one module per function family (``core``: logsumexp, softmax,
log_softmax and the gradient of logsumexp).

Each module defines ``FAMILY`` (the name of its ``cases/<FAMILY>.json``) and
``cases() -> list[conformance.generate.CaseSpec]``; ``generate.py`` finds every
module of this package by itself, so a new family is one new module here.
"""
