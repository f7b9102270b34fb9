"""Benchmark scripts: each prints a table and writes bench/results/<name>.json (helpers in common.py).
May import every layer (config, catalog, ml, search); nothing imports bench."""

import config  # noqa: F401 - first, so TensorFlow's C++ log lines are quiet (config/tensorflow_logging.py)
