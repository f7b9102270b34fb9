"""Every Celery worker says which device it embeds and trains on.

At start (Celery's worker_init, before the pool forks) a worker detects its device in a fresh
interpreter (ml.devices.device_probe: the main process stays free of TensorFlow and CUDA), logs it,
and refuses to start when WORKER_REQUIRE_GPU=1 and no GPU is usable: it exits with status 3 and says
why. Once it consumes (worker_ready) it records the device under its host name in the Django cache,
refreshed every HEARTBEAT_SECONDS, removed at a clean shutdown; the admin's model dashboard lists
the records (`worker_devices`). Connected in MlConfig.ready(), so `celery -A config worker` gets them.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache

from ml.devices import ComputeDevice, DeviceProbeError, device_detect, device_probe

__all__ = [
    "EXIT_NO_GPU",
    "RegistryBusy",
    "WorkerDevice",
    "connect",
    "worker_device_forget",
    "queue_workers_missing",
    "worker_device_record",
    "worker_devices",
]

logger = logging.getLogger(__name__)

REGISTRY_KEY = "lookalike:worker-devices"
HEARTBEAT_SECONDS = 60
STALE_AFTER = 3 * HEARTBEAT_SECONDS  # a record not refreshed for this long: the worker is gone
KEEP_SECONDS = 7 * 24 * 3600  # how long the registry outlives its last write
EXIT_NO_GPU = 3

_state: dict = {"device": None, "error": "", "stop": None}


def gpu_required() -> bool:
    return os.environ.get("WORKER_REQUIRE_GPU", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class WorkerDevice:
    hostname: str
    queues: list[str]
    device: ComputeDevice | None
    error: str
    pid: int
    started_at: float
    seen_at: float

    @property
    def alive(self) -> bool:
        return time.time() - self.seen_at <= STALE_AFTER

    @property
    def seen_at_datetime(self) -> datetime:
        return datetime.fromtimestamp(self.seen_at, tz=timezone.utc)

    @property
    def describe(self) -> str:
        return self.device.describe() if self.device else f"unknown ({self.error})"


# --- the registry in the cache (one key: the cache API lists no keys) ----------------------------


LOCK_KEY = f"{REGISTRY_KEY}:lock"
LOCK_TTL_MS = 10_000  # a holder that dies keeps others out this long; an update takes milliseconds
LOCK_WAIT_SECONDS = 15  # then give up: the heartbeat records again HEARTBEAT_SECONDS later

# Lua, so each check and its action are one step in Redis: only the lock's holder (its token)
# deletes the lock or writes the registry; a holder whose lock expired meanwhile does neither.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_SET_IF_HELD = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "redis.call('set', KEYS[2], ARGV[2], 'EX', ARGV[3]) return 1 end return 0"
)
_process_lock = threading.Lock()


class RegistryBusy(Exception):
    """The registry lock was not obtained (or expired before the write): nothing was written."""


def _registry_update(change) -> None:
    """Read-modify-write the registry under a lock, so two workers starting at once do not drop
    each other's record.

    On Redis (every deployment: the workers and the web share it) the lock is SET NX PX with a
    token of this call's own; the registry is written, and the lock released, only while that
    token still holds it. Raises RegistryBusy when the lock is not obtained within
    LOCK_WAIT_SECONDS. Another cache backend is one process's own (locmem), so a process lock does.
    """
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        with _process_lock:
            registry = backend.get(REGISTRY_KEY) or {}
            change(registry)
            backend.set(REGISTRY_KEY, registry, timeout=KEEP_SECONDS)
        return
    # Django's Redis backend has no lock or compare-and-delete: its client and serializer are used
    # directly, with its own key names, so cache.get(REGISTRY_KEY) reads what is written here.
    client = backend._cache.get_client(write=True)
    lock, key = backend.make_and_validate_key(LOCK_KEY), backend.make_and_validate_key(REGISTRY_KEY)
    token = uuid.uuid4().hex
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while not client.set(lock, token, nx=True, px=LOCK_TTL_MS):
        if time.monotonic() >= deadline:
            raise RegistryBusy(f"The worker registry lock was held for over {LOCK_WAIT_SECONDS} s: nothing written.")
        time.sleep(0.05)
    try:
        registry = backend.get(REGISTRY_KEY) or {}
        change(registry)
        value = backend._cache._serializer.dumps(registry)
        if not client.eval(_SET_IF_HELD, 2, lock, key, token, value, KEEP_SECONDS):
            raise RegistryBusy(
                f"The worker registry lock expired after {LOCK_TTL_MS} ms, before the write: nothing written."
            )
    finally:
        client.eval(_RELEASE, 1, lock, token)


def worker_device_record(
    *, hostname: str, queues: list[str], device: ComputeDevice | None, error: str = "", started_at: float | None = None
) -> None:
    """Record (or refresh) a worker's device under its host name."""
    now = time.time()

    def change(registry: dict) -> None:
        previous = registry.get(hostname) or {}
        registry[hostname] = {
            "queues": sorted(queues),
            "device": device.to_dict() if device else None,
            "error": error,
            "pid": os.getpid(),
            "started_at": started_at or previous.get("started_at") or now,
            "seen_at": now,
        }

    _registry_update(change)


def worker_device_forget(*, hostname: str) -> None:
    _registry_update(lambda registry: registry.pop(hostname, None))


def worker_devices() -> list[WorkerDevice]:
    """The workers that recorded their device, the ones still alive first, then by host name."""
    try:
        registry = cache.get(REGISTRY_KEY) or {}
    except Exception:  # noqa: BLE001 - the admin page still renders without the cache
        logger.warning("The worker registry could not be read from the cache", exc_info=True)
        return []
    rows = [
        WorkerDevice(
            hostname=host,
            queues=list(r.get("queues") or []),
            device=ComputeDevice.from_dict(r["device"]) if r.get("device") else None,
            error=r.get("error", ""),
            pid=int(r.get("pid") or 0),
            started_at=float(r.get("started_at") or 0),
            seen_at=float(r.get("seen_at") or 0),
        )
        for host, r in registry.items()
    ]
    return sorted(rows, key=lambda w: (not w.alive, w.hostname))


def queue_workers_missing(*, queue: str = "embeddings") -> str | None:
    """None when a worker consuming `queue` has recorded itself within STALE_AFTER seconds; else
    what to tell whoever waits for that queue's work: none seen (or which went quiet, and when), and
    how to start one."""
    seen = [w for w in worker_devices() if queue in w.queues]
    if any(w.alive for w in seen):
        return None
    last = max(seen, key=lambda w: w.seen_at, default=None)
    quiet = ""
    if last is not None:
        minutes = max(1, round((time.time() - last.seen_at) / 60))
        quiet = f" (the last, {last.hostname}, {minutes} minute{'s' if minutes != 1 else ''} ago)"
    return (
        f"No {queue} worker has been seen in the last {STALE_AFTER // 60} minutes{quiet}: the job waits in the "
        f"queue until one runs. Start one with `make worker`, or `celery -A config worker -Q {queue}`."
    )


# --- Celery signal receivers ---------------------------------------------------------------------


def _detect() -> ComputeDevice:
    if "tensorflow" in sys.modules:
        # TensorFlow is already here (a test worker in a test process): nothing left to protect.
        return device_detect()
    return device_probe()


def on_worker_init(sender=None, **kwargs) -> None:
    """Detect the device before the pool starts; refuse to start without a GPU when one is required."""
    hostname = getattr(sender, "hostname", "?")
    _state["pool"] = str(getattr(sender, "pool_cls", "") or "").lower()
    try:
        device, error = _detect(), ""
    except DeviceProbeError as exc:
        device, error = None, str(exc)
    _state.update(device=device, error=error)
    if device is not None:
        logger.info("Worker %s embeds and trains on %s", hostname, device.describe())
    else:
        logger.error("Worker %s could not detect its compute device: %s", hostname, error)
    if gpu_required() and (device is None or not device.is_gpu):
        why = device.note if device is not None else error
        message = (
            f"Worker {hostname} refuses to start: WORKER_REQUIRE_GPU=1 but no GPU is usable ({why}). "
            "Start it on a machine with an NVIDIA GPU and the GPU image (Dockerfile target gpu, compose "
            "device reservation), or unset WORKER_REQUIRE_GPU to run on the CPU."
        )
        logger.critical(message)
        print(message, file=sys.stderr, flush=True)
        raise SystemExit(EXIT_NO_GPU)  # not an Exception: Celery's signal dispatch does not swallow it


def on_worker_ready(sender=None, **kwargs) -> None:
    """Record the device under the host name, and keep the record fresh while the worker runs."""
    hostname = getattr(sender, "hostname", None) or "?"
    try:
        queues = sorted(sender.app.amqp.queues.consume_from)
    except AttributeError:
        queues = []
    started = time.time()

    def record() -> None:
        try:
            worker_device_record(
                hostname=hostname, queues=queues, device=_state["device"], error=_state["error"], started_at=started
            )
        except Exception:  # noqa: BLE001 - the cache being down must not stop the worker
            logger.warning("Could not record the device of worker %s in the cache", hostname, exc_info=True)

    record()
    stop = threading.Event()
    _state["stop"] = stop

    def heartbeat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            record()

    threading.Thread(target=heartbeat, name="device-heartbeat", daemon=True).start()
    _state["hostname"] = hostname
    if "thread" in _state.get("pool", ""):
        on_worker_process_init()  # the threads pool sends no worker_process_init: its one process warms here


def on_worker_process_init(sender=None, **kwargs) -> None:
    """A pool process (after the fork) imports TensorFlow and Keras in the background at once, so
    its first batch or training run does not wait for the import (seconds on a busy CPU)."""

    def warm() -> None:
        started = time.monotonic()
        try:
            import ml.inference  # noqa: F401 - TensorFlow, Keras and the custom layers
        except Exception:  # noqa: BLE001 - the first task then reports the error itself
            logger.warning("Importing TensorFlow in a pool process failed", exc_info=True)
            return
        logger.info("Pool process %s: TensorFlow ready in %.1f s", os.getpid(), time.monotonic() - started)

    threading.Thread(target=warm, name="tensorflow-import", daemon=True).start()


def on_worker_shutdown(sender=None, **kwargs) -> None:
    stop = _state.get("stop")
    if stop is not None:
        stop.set()
    hostname = _state.get("hostname")
    if hostname:
        try:
            worker_device_forget(hostname=hostname)
        except Exception:  # noqa: BLE001
            logger.warning("Could not remove the device record of worker %s", hostname, exc_info=True)


def connect() -> None:
    from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown

    worker_init.connect(on_worker_init, dispatch_uid="ml.workers.on_worker_init")
    worker_process_init.connect(on_worker_process_init, dispatch_uid="ml.workers.on_worker_process_init")
    worker_ready.connect(on_worker_ready, dispatch_uid="ml.workers.on_worker_ready")
    worker_shutdown.connect(on_worker_shutdown, dispatch_uid="ml.workers.on_worker_shutdown")
