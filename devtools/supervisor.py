"""Start processes and stop every one of them together: on Ctrl-C, SIGTERM or SIGHUP, on a step that
fails, or when one that should keep running exits.

Each child runs in its own session (its own process group), so Ctrl-C reaches only the supervisor,
which then stops the children in the reverse order of their start: SIGTERM to each whole group
(Celery's pool processes and gunicorn's workers included), SIGKILL to what is left after the grace
period, or at once on a second Ctrl-C. On Linux each child also gets SIGTERM if the supervisor
itself dies without cleaning up (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_SECONDS = 20.0  # a Celery worker's warm shutdown finishes its current batch first
POLL_SECONDS = 0.2
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class Stopped(Exception):
    """A stop signal arrived."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StepFailed(Exception):
    def __init__(self, name: str, returncode: int):
        super().__init__(f"{name} failed (exit status {returncode})")
        self.name = name
        self.returncode = returncode


@dataclass
class Child:
    name: str
    process: subprocess.Popen


def _child_setup() -> None:
    """In the child between fork and exec: die with the supervisor."""
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """`with Supervisor() as sv:` ... `sv.start(...)`, `sv.run(...)`, `sv.wait()`; leaving the block
    (normally or by an exception, Stopped and StepFailed included) stops everything started."""

    def __init__(self, *, grace_seconds: float = GRACE_SECONDS):
        self.grace_seconds = grace_seconds
        self.children: list[Child] = []
        self._previous: dict[int, object] = {}
        self._pending: int | None = None  # a signal that arrived while a child was being started
        self._starting = False
        self._stopping = False
        self._hurry = False

    # Signals -------------------------------------------------------------------------------------

    def _on_signal(self, signum, frame) -> None:
        if self._stopping:
            self._hurry = True  # a second Ctrl-C: kill now instead of waiting
            return
        if self._starting:
            self._pending = signum  # raised once the new child is on the list, so it is stopped too
            return
        raise Stopped(signum)

    def __enter__(self) -> Supervisor:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc) -> bool:
        try:
            self.stop()
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
        return False

    # Children ------------------------------------------------------------------------------------

    def start(self, name: str, argv: list[str], **popen) -> subprocess.Popen:
        """Start a process that runs until the supervisor stops it."""
        self._starting = True
        try:
            process = subprocess.Popen(
                argv, start_new_session=True, preexec_fn=_child_setup, stdin=subprocess.DEVNULL, **popen
            )
            self.children.append(Child(name, process))
        finally:
            self._starting = False
        if self._pending is not None:
            signum, self._pending = self._pending, None
            raise Stopped(signum)
        return process

    def run(self, name: str, argv: list[str], *, check: bool = True, **popen) -> int:
        """Run a step to its end; a stop meanwhile stops it too. check: a non-zero exit raises StepFailed."""
        process = self.start(name, argv, **popen)
        returncode = process.wait()
        self.children = [child for child in self.children if child.process is not process]
        if check and returncode != 0:
            raise StepFailed(name, returncode)
        return returncode

    def wait(self) -> Child:
        """Block until one of the children exits; returns it (the caller then leaves the block)."""
        while True:
            for child in self.children:
                if child.process.poll() is not None:
                    return child
            time.sleep(POLL_SECONDS)

    def stop(self) -> None:
        """SIGTERM to every child's process group, last started first; SIGKILL after the grace period."""
        self._stopping = True
        try:
            for child in reversed(self.children):
                _signal_group(child.process, signal.SIGTERM)
                deadline = time.monotonic() + self.grace_seconds
                while child.process.poll() is None and time.monotonic() < deadline and not self._hurry:
                    time.sleep(POLL_SECONDS / 2)
            for child in self.children:
                # What is left of each group (the leader may have exited before its own children).
                _signal_group(child.process, signal.SIGKILL)
                try:
                    child.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            self.children = []
        finally:
            self._stopping = False
            self._hurry = False


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # start_new_session: the group's id is the child's pid
    except (ProcessLookupError, PermissionError):
        pass
