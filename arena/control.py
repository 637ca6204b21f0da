"""One daemon per queue, and how other processes talk to it.

The queue lock is an ``flock`` on ``DIR/daemon.lock``: the kernel releases it when the daemon
dies, however it dies, so a crashed daemon never leaves a stale lock. Pause is a flag file in
``DIR/control/`` that the daemon checks every loop; stop is SIGTERM to the pid in the lock file.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from pathlib import Path
from typing import IO

LOCK_FILE = "daemon.lock"
PAUSE_FLAG = "paused"


class QueueBusy(Exception):
    def __init__(self, queue: Path, pid: int | None):
        self.pid = pid
        owner = f"pid {pid}" if pid else "another process"
        super().__init__(f"another daemon ({owner}) is already running on {queue}; stop it with --stop first")


def read_pid(queue: Path) -> int | None:
    try:
        return int((queue / LOCK_FILE).read_text().strip() or 0) or None
    except (FileNotFoundError, ValueError):
        return None


def acquire_queue_lock(queue: Path) -> IO[str]:
    """Hold the queue for this process; raises :class:`QueueBusy` when another daemon has it."""
    queue.mkdir(parents=True, exist_ok=True)
    handle = (queue / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise QueueBusy(queue, read_pid(queue)) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def is_running(queue: Path) -> bool:
    """Whether some process holds the queue lock right now."""
    path = queue / LOCK_FILE
    if not path.exists():
        return False
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def wait_for_lock(path: Path, timeout: float, stop: threading.Event | None = None) -> bool:
    """Wait until nobody holds an flock on ``path`` (e.g. a job's old runner has exited);
    False on timeout or when ``stop`` is set."""
    if not path.exists():
        return True
    deadline = time.monotonic() + timeout
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle, fcntl.LOCK_UN)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                    return False
                time.sleep(0.2)


def set_paused(queue: Path, paused: bool) -> None:
    flag = queue / "control" / PAUSE_FLAG
    flag.parent.mkdir(parents=True, exist_ok=True)
    if paused:
        flag.touch()
    else:
        flag.unlink(missing_ok=True)


def is_paused(queue: Path) -> bool:
    return (queue / "control" / PAUSE_FLAG).exists()


def request_stop(queue: Path, timeout: float) -> bool:
    """SIGTERM the daemon and wait for it to release the queue; True if it stopped."""
    pid = read_pid(queue)
    if pid is None or not is_running(queue):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_running(queue):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
