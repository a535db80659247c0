"""Dynamic shell completion: `ctrpy __complete KIND [--root DIR] [--state DIR] [-n NS] [--config FILE]
[--snapshotter NAME]` prints the names of one kind of object, one per line.

The shell scripts in completions/ call this on every <Tab> that wants an image, container, task, snapshot,
namespace, network, lease or blob, so it is answered before Click, rich or the runtime are imported (the hook
at the top of ctrpy/commands/__init__.py): only sqlite3 and, when no root is given, tomllib for the config
file. The metadata file is opened read-only (SQLite may leave the usual -wal/-shm files beside it, as any
reader of a WAL database does), so a completion never creates a store, migrates or takes a write lock, and a
missing or unreadable store just completes nothing. Tasks come from the state directory (the files
ctrpy.runtime.bundle describes), read without asking the runtime.

Exit status: 0 (even when nothing matched, so the shell stays quiet), 2 for an unknown kind or bad flags.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from ctrpy.paths import DEFAULT_CONFIG_PATH as DEFAULT_CONFIG
from ctrpy.paths import DEFAULT_ROOT, DEFAULT_STATE


# Mirrors ctrpy.runtime.supervisor's file names (not imported: that module is not free to import).
TASK_FILE = "task.json"
EXIT_FILE = "exit.json"
PID_FILE = "init.pid"

USAGE = ("usage: ctrpy __complete KIND [--root DIR] [--state DIR] [-n NS] [--config FILE] [--snapshotter NAME]\n"
         "KIND: " + " ".join(sorted(["image", "container", "task", "running-task", "paused-task", "snapshot",
                                     "name", "running-name",
                                     "namespace", "network", "lease", "content"])))


class Where:
    """The global options as the completion script passes them (already split into words)."""

    def __init__(self) -> None:
        self.root: str | None = None
        self.state: str | None = None
        self.namespace: str | None = None
        self.config: str | None = None
        self.snapshotter: str | None = None
        self._file_config: dict[str, object] | None = None

    def _from_config(self, key: str) -> str | None:
        # Read only when --root/--state are not given: the config file may move them.
        if self._file_config is None:
            self._file_config = {}
            path = self.config or os.environ.get("CTRPY_CONFIG") or DEFAULT_CONFIG
            try:
                with open(_expand(path), "rb") as f:
                    import tomllib

                    self._file_config = tomllib.load(f)
            except (OSError, ValueError):
                pass
        value = self._file_config.get(key)
        return value if isinstance(value, str) else None

    def root_dir(self) -> str:
        return _expand(self.root or os.environ.get("CTRPY_ROOT") or self._from_config("root") or DEFAULT_ROOT)

    def state_dir(self) -> str:
        return _expand(self.state or os.environ.get("CTRPY_STATE") or self._from_config("state") or DEFAULT_STATE)

    def ns(self) -> str:
        return self.namespace or os.environ.get("CTRPY_NAMESPACE") or "default"


def _expand(path: str) -> str:
    # The shell hands over words as typed (`--root ~/r`), before its own expansion.
    return os.path.expandvars(os.path.expanduser(path))


def _names(kind: str) -> Callable[[Where], list[str]]:
    def complete(where: Where) -> list[str]:
        from ctrpy.runtime.metadata import lookup

        return lookup.names(where.root_dir(), kind, where.ns(), where.snapshotter)

    complete.__name__ = kind
    return complete


def _task_dirs(where: Where) -> list[tuple[str, str]]:
    base = os.path.join(where.state_dir(), where.ns())
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    return [(name, os.path.join(base, name)) for name in names if os.path.exists(os.path.join(base, name, TASK_FILE))]


def _live_pid(task_dir: str) -> int:
    """The init's pid while the task has not exited, else 0."""
    if os.path.exists(os.path.join(task_dir, EXIT_FILE)):
        return 0
    try:
        with open(os.path.join(task_dir, PID_FILE)) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return 0
    return pid if pid > 0 and os.path.exists(f"/proc/{pid}") else 0


def _frozen(pid: int) -> bool:
    """Whether the process's cgroup is frozen (v1 freezer.state, or v2 cgroup.freeze)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    for line in lines:
        _, controllers, path = line.split(":", 2)
        candidates: list[tuple[str, tuple[str, ...]]] = []
        if "freezer" in controllers.split(","):
            candidates.append((f"/sys/fs/cgroup/freezer{path}/freezer.state", ("FROZEN", "FREEZING")))
        elif controllers == "":
            for mount in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                candidates.append((f"{mount}{path}/cgroup.freeze", ("1",)))
        for file, values in candidates:
            try:
                with open(file) as f:
                    if f.read().strip() in values:
                        return True
            except OSError:
                continue
    return False


def tasks(where: Where) -> list[str]:
    return [name for name, _ in _task_dirs(where)]


def running_tasks(where: Where) -> list[str]:
    out = []
    for name, path in _task_dirs(where):
        pid = _live_pid(path)
        if pid and not _frozen(pid):
            out.append(name)
    return out


def paused_tasks(where: Where) -> list[str]:
    out = []
    for name, path in _task_dirs(where):
        pid = _live_pid(path)
        if pid and _frozen(pid):
            out.append(name)
    return out


def _names_by_id(where: Where) -> dict[str, str]:
    """Container ID -> the name docker-shaped commands accept (the ctrpy.io/name label, else the ID)."""
    from ctrpy.runtime.metadata import lookup

    return lookup.container_names(where.root_dir(), where.ns())


def container_names(where: Where) -> list[str]:
    """Names, and the short IDs of named containers (what `ctrpy stop <Tab>` offers)."""
    names = _names_by_id(where) or {}
    return sorted(set(names.values()) | {cid[:12] for cid, name in names.items() if name != cid})


def running_names(where: Where) -> list[str]:
    running = set(running_tasks(where))
    return sorted(name for cid, name in (_names_by_id(where) or {}).items() if cid in running)


KINDS: dict[str, Callable[[Where], list[str]]] = {
    "name": container_names,
    "running-name": running_names,
    "image": _names("image"),
    "container": _names("container"),
    "task": tasks,
    "running-task": running_tasks,
    "paused-task": paused_tasks,
    "snapshot": _names("snapshot"),
    "namespace": _names("namespace"),
    "network": _names("network"),
    "lease": _names("lease"),
    "content": _names("content"),
}

_FLAGS = {"--root": "root", "--state": "state", "-n": "namespace", "--namespace": "namespace",
          "--config": "config", "--snapshotter": "snapshotter"}


def parse(argv: list[str]) -> tuple[str, Where]:
    """KIND and the options; raises ValueError on anything else."""
    if not argv or argv[0] not in KINDS:
        raise ValueError(f"unknown kind {argv[0]!r}" if argv else "missing KIND")
    where = Where()
    rest = argv[1:]
    i = 0
    while i < len(rest):
        word = rest[i]
        name, eq, value = word.partition("=")
        if name not in _FLAGS:
            raise ValueError(f"unknown option {word!r}")
        if not eq:
            i += 1
            if i >= len(rest):
                raise ValueError(f"{word} needs a value")
            value = rest[i]
        setattr(where, _FLAGS[name], value)
        i += 1
    return argv[0], where


def fast_main(argv: list[str]) -> None:
    """Print the completions for `argv` (the words after `__complete`) and exit."""
    try:
        kind, where = parse(argv)
    except ValueError as exc:
        sys.stderr.write(f"ctrpy: {exc}\n{USAGE}\n")
        sys.exit(2)
    try:
        names = KINDS[kind](where)
        if names:
            sys.stdout.write("\n".join(names) + "\n")
            sys.stdout.flush()
    except BrokenPipeError:
        # The shell stopped reading; nothing to report.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)
