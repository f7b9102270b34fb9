"""The worker registry's lock (ml.workers), between two real processes on the shared Redis cache:
a writer waits for the lock another process holds, never writes without it, and never deletes it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

from django.conf import settings
from django.core.cache import cache, caches
from django.test import SimpleTestCase

from ml import workers

ROOT = Path(settings.BASE_DIR)

# Another process's registry update: it takes the lock, reads the registry, says so, then holds the
# lock for argv[1] seconds before it writes its own record.
HOLDER = """
import os, sys, time
import django
django.setup()
from ml import workers

def change(registry):
    registry["holder@box"] = {"queues": ["embeddings"], "pid": os.getpid(), "seen_at": time.time()}
    print("locked", flush=True)
    time.sleep(float(sys.argv[1]))

workers._registry_update(change)
print("written", flush=True)
"""


def lock_key() -> str:
    return caches["default"].make_and_validate_key(f"{workers.REGISTRY_KEY}:lock")


class RegistryLockTests(SimpleTestCase):
    def setUp(self):
        self.client = caches["default"]._cache.get_client(write=True)
        self.cleanup()
        self.addCleanup(self.cleanup)

    def cleanup(self):
        cache.delete(workers.REGISTRY_KEY)
        self.client.delete(lock_key())

    def holder(self, seconds: float) -> subprocess.Popen:
        """A second process holding the registry lock for `seconds` once it prints "locked"."""
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test", "PYTHONUNBUFFERED": "1"}
        child = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(seconds)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.addCleanup(lambda: child.poll() is None and child.kill())
        line = child.stdout.readline()
        self.assertEqual(
            line.strip(), "locked", line + child.stdout.read()[-2000:] if child.poll() is not None else line
        )
        return child

    def test_a_record_waits_for_the_lock_another_process_holds_and_neither_record_is_lost(self):
        child = self.holder(6)  # longer than the old code's 5 s before it went ahead without the lock
        with mock.patch.object(workers, "LOCK_WAIT_SECONDS", 30, create=True):
            workers.worker_device_record(hostname="waiter@box", queues=["embeddings"], device=None, error="test")
        self.assertEqual(child.wait(timeout=30), 0)
        self.assertIn("written", child.stdout.read())
        self.assertEqual(set(cache.get(workers.REGISTRY_KEY)), {"holder@box", "waiter@box"})
        self.assertIsNone(self.client.get(lock_key()))  # each released its own lock

    def test_a_lock_not_obtained_in_time_writes_nothing_and_leaves_the_holders_lock(self):
        child = self.holder(8)
        held = self.client.get(lock_key())
        self.assertIsNotNone(held)
        started = time.monotonic()
        with (
            mock.patch.object(workers, "LOCK_WAIT_SECONDS", 1, create=True),
            self.assertRaises(getattr(workers, "RegistryBusy", LookupError)),
        ):
            workers.worker_device_record(hostname="waiter@box", queues=["embeddings"], device=None)
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(self.client.get(lock_key()), held)  # still the holder's
        self.assertIsNone(cache.get(workers.REGISTRY_KEY))  # nothing written without the lock
        self.assertEqual(child.wait(timeout=30), 0)
        self.assertEqual(set(cache.get(workers.REGISTRY_KEY)), {"holder@box"})

    def test_a_writer_whose_lock_expired_writes_nothing_and_keeps_the_new_holders_lock(self):
        def slow(registry):
            registry["slow@box"] = {"seen_at": time.time()}
            time.sleep(0.4)  # past the lock's lifetime: another writer takes the lock meanwhile
            self.assertTrue(self.client.set(lock_key(), "someone-else", nx=True, px=10_000))

        with (
            mock.patch.object(workers, "LOCK_TTL_MS", 200, create=True),
            self.assertRaises(getattr(workers, "RegistryBusy", LookupError)),
        ):
            workers._registry_update(slow)
        self.assertIsNone(cache.get(workers.REGISTRY_KEY))
        self.assertEqual(self.client.get(lock_key()), b"someone-else")
