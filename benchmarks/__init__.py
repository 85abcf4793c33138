"""Benchmarks of smoothmax against its peers (``python -m benchmarks --help``)."""
