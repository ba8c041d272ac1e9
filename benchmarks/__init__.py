"""Benchmarks: python -m benchmarks.run prints every figure (README)."""
