"""Benchmarks that print figures and write bench/results/*.json: run each as ``python -m bench.NAME``."""
