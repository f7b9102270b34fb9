"""What this CPU is (its model name and flags, from /proc/cpuinfo): read without TensorFlow, by the
device report, the training precision and the benchmarks' machine record."""

from __future__ import annotations


def cpu_info() -> tuple[str | None, list[str]]:
    """(model name, flags) of the first CPU in /proc/cpuinfo; (None, []) where it cannot be read."""
    name, flags = None, []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name is None:
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    break
    except OSError:
        pass
    return name, flags
