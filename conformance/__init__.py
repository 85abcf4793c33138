"""Conformance suite for smoothmax: exact reference cases, run on every backend.

``python -m conformance`` runs ``cases/*.json`` on every installed backend and
dtype and prints max ulp errors against mpmath references; ``--peers`` compares
scipy, torch and jax's own functions; ``python -m conformance.generate``
rebuilds the case files. See ``conformance/README.md``.
"""
