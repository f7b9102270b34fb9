"""Benchmarks: each prints a table and writes bench/results/<name>.json; they may import every package."""

import config  # noqa: F401 - first, so TensorFlow's C++ log lines are quiet (config/tensorflow_logging.py)
