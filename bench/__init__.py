"""Benchmarks that print side-by-side tables (run each as a script: python bench/NAME.py)."""
