"""Benchmarks (commands, not timed tests): attention time and memory against sequence length."""

from .attention import KERNELS, BenchSpec, Measurement, run_suite

__all__ = ["KERNELS", "BenchSpec", "Measurement", "run_suite"]
