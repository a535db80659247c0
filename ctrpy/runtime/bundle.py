"""The per-task state directory, `<state>/<namespace>/<id>/` (containerd's runtime v2 bundle, crun's status.c).

    config.json       the OCI spec (the directory is the bundle any OCI runtime can run)
    rootfs/           mount point of the container's snapshot (image-based containers)
    etc/              hosts, resolv.conf, hostname bind-mounted into the container
    task.json         what the supervisor needs: runtime, terminal/stdin, cgroup path, metadata root
    created           marker written once the supervisor reported the container created
    supervisor.pid    the supervisor's pid; supervisor.log its own diagnostics
    init.pid          the container init's host pid (written by the runtime)
    output.log        everything the init wrote (for `ctrpy logs`)
    exit.json         the init's exit status and time, written durably by the supervisor when it reaps it
    execs/<exec-id>/  pid and exit.json of each exec process
    restart.json      restart policy state (count, failures, back-off, next and last start); restart.log one each
    stop-requested    marker of an explicit stop: the supervisor restarts no more
    creating          "<pid> <start time>" of the command creating the task; launcher: the forked launcher
                      (which becomes the supervisor). A dir without `created` whose creator is gone is a
                      leftover of a killed command, repaired by `TaskManager.repair`.

Files the supervisor writes are named in ctrpy.runtime.supervisor, which must stay import-light.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ctrpy.runtime import supervisor as sup
from ctrpy.runtime.linux.proc import start_time


def write_json_durably(path: Path, data: Any) -> None:
    """Temp file, fsync, rename, fsync the directory: readers see the old or the new file, never half."""
    sup.write_durably(str(path), data)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return None


class TaskDir:
    """Paths and small readers of one task's state directory."""

    def __init__(self, state: Path, namespace: str, container_id: str) -> None:
        self.path = Path(state) / namespace / container_id
        self.id = container_id
        self.namespace = namespace

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    @property
    def etc(self) -> Path:
        return self.path / "etc"

    @property
    def task_file(self) -> Path:
        return self.path / sup.TASK_FILE

    @property
    def log(self) -> Path:
        return self.path / sup.LOG_FILE

    @property
    def pid_file(self) -> Path:
        return self.path / sup.PID_FILE

    def exec_dir(self, exec_id: str) -> Path:
        return self.path / sup.EXECS_DIR / exec_id

    def exit_file(self, exec_id: str = "") -> Path:
        return (self.exec_dir(exec_id) if exec_id else self.path) / sup.EXIT_FILE

    @property
    def created_marker(self) -> Path:
        return self.path / "created"

    def exists(self) -> bool:
        """True once the task is fully created (its supervisor answered): a task being set up by another
        process is invisible, so no reader can mistake it for a dead one."""
        return self.created_marker.exists()

    def task(self) -> dict[str, Any]:
        data = read_json(self.task_file)
        return data if isinstance(data, dict) else {}

    def exit(self, exec_id: str = "") -> dict[str, Any] | None:
        data = read_json(self.exit_file(exec_id))
        return data if isinstance(data, dict) else None

    def restart(self) -> dict[str, Any]:
        """The supervisor's restart-policy record (restart.json): {} when the task never exited under one."""
        data = read_json(self.path / sup.RESTART_FILE)
        return data if isinstance(data, dict) else {}

    def init_pid(self) -> int:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return 0

    def supervisor_pid(self) -> int | None:
        """The supervisor's pid if it is alive (checked by its command line, so a reused pid is not mistaken)."""
        try:
            pid = int((self.path / sup.SUPERVISOR_PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None
        if start_time(pid) is None:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if str(self.path).encode() not in cmdline:
            return None
        return pid

    def socket_address(self) -> str:
        return sup.socket_address(str(self.path))

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)
        try:
            os.rmdir(self.path.parent)  # the namespace directory, once empty
        except OSError:
            pass
