"""Benchmarks, run by hand (`./run bench NAME`); results are reported in docs/benchmarks.md."""
