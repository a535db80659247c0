"""Undo everything the harness did, in reverse order, also on Ctrl-C, SIGTERM or a crash.

Every process the harness starts is registered by PID and stopped by PID; mounts are found under the harness's
own temporary directories only; nothing is ever matched by name across the whole machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def mounts_under(prefix: str | Path) -> list[str]:
    prefix = str(prefix).rstrip("/")
    points = []
    with open("/proc/self/mounts") as f:
        for line in f:
            target = line.split()[1].replace("\\040", " ")
            if target == prefix or target.startswith(prefix + "/"):
                points.append(target)
    return points


def unmount_under(path: str | Path) -> None:
    """Unmount everything below `path`, deepest first; lazy so that a busy mount cannot wedge the cleanup."""
    for target in sorted(set(mounts_under(path)), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def stop_pid(pid: int, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; reaps it when it is our child."""
    if not pid_alive(pid):
        _reap(pid)
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for _ in range(40):
        _reap(pid)
        if not pid_alive(pid):
            return
        time.sleep(0.05)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class Cleanup:
    """A LIFO stack of undo actions; each runs even when an earlier one fails."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], Any]]] = []
        self._done = False

    def push(self, what: str, action: Callable[[], Any]) -> None:
        self._actions.append((what, action))

    def run_now(self, action: Callable[[], Any]) -> None:
        """Run one registered undo action early and drop it from the stack."""
        for i in range(len(self._actions) - 1, -1, -1):
            if self._actions[i][1] is action:
                del self._actions[i]
                break
        action()

    def pid(self, pid: int, what: str = "process") -> None:
        self.push(f"stop {what} {pid}", lambda: stop_pid(pid))

    def tempdir(self, prefix: str, base: str | None = None) -> Path:
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))

        def remove() -> None:
            unmount_under(path)
            shutil.rmtree(path, ignore_errors=True)

        self.push(f"remove {path}", remove)
        return path

    def run(self) -> None:
        if self._done:
            return
        self._done = True
        # A second Ctrl-C during cleanup must not abandon mounts and processes half-way.
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while self._actions:
                what, action = self._actions.pop()
                try:
                    action()
                except Exception as exc:  # keep going: the next undo is independent
                    log(f"bench: cleanup: {what}: {exc}")
        finally:
            signal.signal(signal.SIGINT, old)

    def __enter__(self) -> Cleanup:
        def on_term(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGHUP, on_term)
        # Even when started with SIGINT ignored (a background job of a non-interactive shell).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.run()
