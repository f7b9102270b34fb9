"""TensorFlow's C++ log lines (CUDA probing, CPU features, oneDNN) stay out of every command unless
`--verbosity 3` or TF_CPP_MIN_LOG_LEVEL asks for them (config/tensorflow_logging.py)."""

import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import TestCase

from config.tensorflow_logging import QUIET_LEVEL, level_choose, line_dropped, verbosity_asked

ROOT = Path(__file__).resolve().parents[2]
TF_LINE = re.compile(
    r"^(?:[IWEF]\d{4} |\d{4}-\d\d-\d\d .*: [IWEF] )\S*.*\.cc:\d+\]|absl::InitializeLog|oneDNN|cuInit", re.M
)
LOADS_TENSORFLOW = "import tensorflow as tf; print('sum', float(tf.reduce_sum(tf.ones(3))))"


class LevelTests(TestCase):
    def test_the_level_chosen(self):
        self.assertEqual(level_choose({}, ["manage.py", "reindex"]), QUIET_LEVEL)
        for argv in (
            ["manage.py", "reindex", "--verbosity", "3"],
            ["manage.py", "reindex", "--verbosity=3"],
            ["manage.py", "reindex", "-v", "3"],
            ["manage.py", "shell", "-v3"],
            ["bench/indexing.py", "--verbosity", "3"],
        ):
            with self.subTest(argv=argv):
                env = {}
                self.assertEqual(level_choose(env, argv), "0")
                self.assertEqual(env, {"TF_CPP_MIN_LOG_LEVEL": "0"})  # children inherit it
        for argv in (["manage.py", "reindex", "--verbosity", "2"], ["celery", "-A", "config", "worker", "-v", "3"]):
            with self.subTest(argv=argv):
                self.assertEqual(level_choose({}, argv), QUIET_LEVEL)
        self.assertEqual(
            level_choose({"TF_CPP_MIN_LOG_LEVEL": "1"}, ["manage.py", "shell", "-v", "3"]), "1"
        )  # set by hand: wins
        self.assertTrue(verbosity_asked(["django-admin", "check", "-v", "3"]))

    def test_only_tensorflow_lines_below_the_level_are_dropped(self):
        info = b"I0000 00:00:1796407335.798860    3480 cudart_stub.cc:31] Could not find cuda drivers on your machine\n"
        error = (
            b"E0000 00:00:1796407304.067692    2550 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n"
        )
        old = b"2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not find cuda\n"
        notice = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        self.assertEqual([line_dropped(line, 3) for line in (info, error, old, notice)], [True, True, True, True])
        self.assertEqual([line_dropped(line, 2) for line in (info, error, old, notice)], [True, False, True, True])
        for kept in (
            b"Traceback (most recent call last):\n",
            b"CommandError: no such version\n",
            b"I0000 not a log line\n",
        ):
            self.assertFalse(line_dropped(kept, 3), kept)


class CommandOutputTests(TestCase):
    """A management command that loads TensorFlow and runs an op, in a real process."""

    def shell(self, *flags: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # this process set it
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            CACHE_URL="locmem://",
            CUDA_VISIBLE_DEVICES="",
            DATABASE_URL=os.environ.get("DATABASE_URL", "postgres://unused@127.0.0.1/unused"),
        )
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", *flags, "-c", LOADS_TENSORFLOW],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("sum 3.0", result.stdout)
        return result

    def test_quiet_by_default_and_shown_with_verbosity_3(self):
        quiet = self.shell()
        self.assertIsNone(TF_LINE.search(quiet.stderr + quiet.stdout), quiet.stderr)
        verbose = self.shell("--verbosity", "3")
        self.assertRegex(verbose.stderr, TF_LINE)
