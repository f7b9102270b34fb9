"""TensorFlow's C++ log lines (CUDA probing, CPU features, oneDNN): quiet in every command unless asked for.

`quiet()` runs when the `config` package is first imported, which every entry point does before
TensorFlow (manage.py, the Celery app, the WSGI app, pytest's plugin, bench/ through Django):

- TF_CPP_MIN_LOG_LEVEL set by hand wins; else `--verbosity 3` on the command line shows everything
  (level 0); else level 3: only FATAL lines. An error that matters reaches Python as an exception
  anyway; on a CPU host TensorFlow's ERROR lines say only that no CUDA device answered.
- Some lines come out before TensorFlow's logging has read that variable (the CUDA stubs as the
  library loads, absl's "All log messages before absl::InitializeLog()"): while `tensorflow` is
  first imported, stderr passes through a filter that drops such lines below the level.
Nothing here imports TensorFlow: it is still imported only where it is used.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Sequence

QUIET_LEVEL = "3"  # TensorFlow's levels: 0 INFO, 1 WARNING, 2 ERROR, 3 FATAL only
VERBOSE_LEVEL = "0"
VERBOSITY_FLAG = re.compile(r"^--verbosity(?:=(\d+))?$")
# absl / glog lines ("I0000 00:00:1796407269.745229    2550 cudart_stub.cc:31] ...") and TensorFlow's
# older format ("2025-09-17 14:44:05.157831: I external/.../cudart_stub.cc:32] ...").
LOG_LINE = re.compile(
    rb"^(?:([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF]) )\S+:\d+\] "
)
ABSL_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}


def verbosity_asked(argv: Sequence[str]) -> bool:
    """`--verbosity 3` / `--verbosity=3`, and manage.py's `-v 3` / `-v3`."""
    program = os.path.basename(argv[0]) if argv else ""
    short = program in ("manage.py", "django-admin")
    for i, arg in enumerate(argv[1:], start=1):
        following = argv[i + 1] if i + 1 < len(argv) else ""
        match = VERBOSITY_FLAG.match(arg)
        if match and (match.group(1) or following) == "3":
            return True
        if short and (arg == "-v3" or (arg == "-v" and following == "3")):
            return True
    return False


def level_choose(environ=os.environ, argv: Sequence[str] = sys.argv) -> str:
    """Sets TF_CPP_MIN_LOG_LEVEL in environ (so child processes inherit it) and returns it."""
    if environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip():
        return environ["TF_CPP_MIN_LOG_LEVEL"].strip()
    environ["TF_CPP_MIN_LOG_LEVEL"] = VERBOSE_LEVEL if verbosity_asked(argv) else QUIET_LEVEL
    return environ["TF_CPP_MIN_LOG_LEVEL"]


def line_dropped(line: bytes, level: int) -> bool:
    if line.rstrip(b"\r\n") == ABSL_NOTICE:
        return level >= 1
    match = LOG_LINE.match(line)
    return bool(match) and SEVERITY[match.group(1) or match.group(2)] < level


class _FilteredStderr:
    """File descriptor 2 through a pipe; a thread copies each line to the real stderr unless dropped."""

    def __init__(self, level: int):
        self.level = level

    def __enter__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self.thread = threading.Thread(target=self._copy, args=(read_end,), daemon=True)
        self.thread.start()
        return self

    def _copy(self, read_end: int) -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if not line_dropped(line, self.level):
                    os.write(self.saved, line)

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self.saved, 2)  # closes the pipe's last write end: the thread sees its end
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            os.close(self.saved)
        return False


class _FilteredImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs the first `import tensorflow` with stderr filtered, then steps aside."""

    def __init__(self, level: int):
        self.level = level
        self.loader = None

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        self.loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader
        try:
            filtered = _FilteredStderr(self.level).__enter__()
        except OSError:  # no usable file descriptor 2 (a daemon): import unfiltered
            filtered = None
        try:
            self.loader.exec_module(module)
        finally:
            if filtered is not None:
                filtered.__exit__(None, None, None)


def quiet(environ=os.environ, argv: Sequence[str] = sys.argv) -> None:
    level = level_choose(environ, argv)
    if "tensorflow" in sys.modules or not level.isdigit() or int(level) == 0:
        return
    if not any(isinstance(finder, _FilteredImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _FilteredImport(int(level)))
