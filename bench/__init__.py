"""Benchmark scripts: each prints a table and writes bench/results/<name>.json (helpers in common.py).
May import every layer (config, catalog, ml, search); nothing imports bench."""
