"""Benchmarks of stem-loop (acquisition throughput, ...)."""
