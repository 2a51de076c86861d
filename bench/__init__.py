"""Benchmarks (not part of the application; see bench/RESULTS.md)."""
