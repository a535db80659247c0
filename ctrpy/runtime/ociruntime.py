"""The seam between tasks and OCI runtimes: one Protocol that mirrors the runc command line.

Every runtime keeps its own state under its own root directory (`<state>/runtime/<name>`) and is driven with
the same verbs as `runc`: create (init set up and waiting before exec), start, state, kill, delete, exec
(detached), pause, resume, ps. Two implementations:

- `OCICliRuntime`: runc, crun or any OCI runtime binary, run as `<binary> --root <dir> <verb> ...`;
- `BuiltinRuntime` (ctrpy.runtime.builtin): the C helper, imported lazily.

A runtime's own failure comes back as one line (`RuntimeFailure`), with the runtime's name and message, never
a traceback; a process that cannot be executed is classified (`ExecFailure`, exit 126 or 127 for `run`).
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ctrpy.runtime import errors


class RuntimeFailure(errors.Internal):
    """The OCI runtime refused or failed an operation; `run` maps it to exit 125."""

    run_exit_code = errors.EXIT_RUNTIME_FAILURE


class ExecFailure(errors.FailedPrecondition):
    """The container's process could not be executed: 127 when not found, 126 otherwise (as docker/podman)."""

    def __init__(self, message: str, *, not_found: bool) -> None:
        super().__init__(message)
        self.run_exit_code = errors.EXIT_COMMAND_NOT_FOUND if not_found else errors.EXIT_CANNOT_EXEC


def classify_failure(runtime: str, message: str) -> errors.CtrpyError:
    """Turn a runtime's error text into the right error class (exec problems are the user's, not ours)."""
    text = f"{runtime}: {message}"
    lowered = message.lower()
    if "exec" in lowered or "executable" in lowered or "starting container process" in lowered:
        if "not found" in lowered or "no such file" in lowered:
            return ExecFailure(text, not_found=True)
        if "permission denied" in lowered or "is a directory" in lowered or "exec format error" in lowered:
            return ExecFailure(text, not_found=False)
    if "does not exist" in lowered or "container not found" in lowered:
        return errors.NotFound(text)
    return RuntimeFailure(text)


def as_runtime_error(runtime: str, exc: BaseException) -> BaseException:
    """Classify an error a runtime raised: exec problems (by errno or text) become ExecFailure, other errors
    RuntimeFailure; errors already classified pass through."""
    import errno as _errno

    if isinstance(exc, (RuntimeFailure, ExecFailure)) or not isinstance(exc, Exception):
        return exc
    code = getattr(exc, "errno", None)
    text = str(exc)
    if "exec" in text.lower():
        if code == _errno.ENOENT:
            return ExecFailure(f"{runtime}: {text}", not_found=True)
        if code in (_errno.EACCES, _errno.ENOEXEC, _errno.EISDIR, _errno.EPERM):
            return ExecFailure(f"{runtime}: {text}", not_found=False)
        classified = classify_failure(runtime, text)
        if isinstance(classified, ExecFailure):
            return classified
    if isinstance(exc, (errors.NotFound, errors.InvalidArgument, errors.FailedPrecondition)):
        return exc
    return RuntimeFailure(f"{runtime}: {text}" if not text.startswith(runtime) else text)


@runtime_checkable
class OCIRuntime(Protocol):
    """An OCI runtime driven like runc. State lives under the runtime's own root directory."""

    name: str

    def create(self, container_id: str, bundle: Path, *, pid_file: Path, console_socket: Path | None = None,
               stdio: tuple[int, int, int] | None = None) -> None:
        """Set up the container from `bundle/config.json`; its init waits before exec until `start`.

        The init's pid is written to `pid_file`. With `console_socket`, the pty master is sent over that unix
        socket (SCM_RIGHTS, as runc does) and `stdio` is ignored; otherwise the init gets `stdio` (or the
        caller's own fds 0-2)."""
        ...

    def start(self, container_id: str) -> None:
        """Let a created container's init exec the user's process."""
        ...

    def state(self, container_id: str) -> dict[str, Any]:
        """runc-style state: ociVersion, id, pid, status (creating|created|running|stopped|paused), bundle,
        rootfs, created. Raises NotFound for an unknown container."""
        ...

    def kill(self, container_id: str, signal: int, all: bool = False) -> None:
        """Send `signal` to the init (or to every process of the container with `all`)."""
        ...

    def delete(self, container_id: str, force: bool = False) -> None:
        """Remove a stopped container's runtime state and cgroup (`force` kills a live one first)."""
        ...

    def exec(self, container_id: str, process: dict[str, Any], *, pid_file: Path,
             console_socket: Path | None = None, stdio: tuple[int, int, int] | None = None,
             privileged: bool = False) -> None:
        """Start `process` (an OCI process object) inside the running container; returns once it runs.
        `privileged` (exec --privileged): the process is also spared the container's seccomp filter where
        the runtime can do that (the built-in one); its capabilities come in `process`."""
        ...

    def pause(self, container_id: str) -> None:
        """Freeze every process of the container."""
        ...

    def resume(self, container_id: str) -> None:
        """Thaw a paused container."""
        ...

    def ps(self, container_id: str) -> list[int]:
        """Host pids of the container's processes."""
        ...

    # Last: a method named `list` shadows the builtin in the annotations of the methods after it.
    def list(self) -> list[dict[str, Any]]:
        """The state() of every container under this runtime's root, in one call (listings)."""
        ...


class OCICliRuntime:
    """An OCI runtime binary (runc, crun, ...) driven through its command line.

    Errors are read from the runtime's JSON log (`--log-format json`), so the container's stderr never mixes
    with the runtime's own messages, and the last error-level entry becomes the one-line message.
    """

    def __init__(self, name: str, binary: str, root: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.name = name
        self.binary = binary
        self.root = Path(root)
        self.extra_args = tuple(extra_args)

    def _binary_path(self) -> str:
        found = _which(self.binary)
        if not found:
            raise errors.Unavailable(f"runtime {self.name!r}: binary {self.binary!r} not found in PATH")
        return found

    def _run(self, verb: str, *args: str, stdio: tuple[int, int, int] | None = None) -> str:
        """Run `<binary> --root R --log L --log-format json <verb> args...`; its stdout, or the error."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        log_path = str(self.root / f".{verb}-{os.getpid()}-{next(_counter)}.log")
        argv = [self._binary_path(), "--root", str(self.root), "--log", log_path, "--log-format", "json",
                *self.extra_args, verb, *args]
        try:
            code, out, err = _spawn(argv, stdio)
            if code != 0:
                message = _last_error(Path(log_path)) or _last_line(err) or f"{verb} failed (exit {code})"
                raise classify_failure(self.name, message)
            return out
        finally:
            try:
                os.unlink(log_path)
            except OSError:
                pass

    def create(self, container_id: str, bundle: Path, *, pid_file: Path, console_socket: Path | None = None,
               stdio: tuple[int, int, int] | None = None) -> None:
        args = ["--bundle", str(bundle), "--pid-file", str(pid_file)]
        if console_socket is not None:
            args += ["--console-socket", str(console_socket)]
        self._run("create", *args, container_id, stdio=stdio)

    def start(self, container_id: str) -> None:
        self._run("start", container_id)

    def state(self, container_id: str) -> dict[str, Any]:
        out = self._run("state", container_id)
        try:
            data: dict[str, Any] = json.loads(out)
        except ValueError as exc:
            raise RuntimeFailure(f"{self.name}: unreadable state for {container_id}: {out[:200]!r}") from exc
        return data

    def kill(self, container_id: str, signal: int, all: bool = False) -> None:
        self._run("kill", *(["--all"] if all else []), container_id, str(signal))

    def delete(self, container_id: str, force: bool = False) -> None:
        self._run("delete", *(["--force"] if force else []), container_id)

    def exec(self, container_id: str, process: dict[str, Any], *, pid_file: Path,
             console_socket: Path | None = None, stdio: tuple[int, int, int] | None = None,
             privileged: bool = False) -> None:
        # `privileged` changes nothing more here: runc/crun apply the container's seccomp filter to every
        # exec'd process and have no flag against it (docker's exec --privileged has the same limit,
        # moby/moby#21984); the full capabilities are in `process`.
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        process_path = str(self.root / f".process-{os.getpid()}-{next(_counter)}.json")
        with open(process_path, "w") as f:
            json.dump(process, f)
        try:
            args = ["--detach", "--process", process_path, "--pid-file", str(pid_file)]
            if console_socket is not None:
                args += ["--console-socket", str(console_socket)]
            self._run("exec", *args, container_id, stdio=stdio)
        finally:
            os.unlink(process_path)

    def pause(self, container_id: str) -> None:
        self._run("pause", container_id)

    def resume(self, container_id: str) -> None:
        self._run("resume", container_id)

    def ps(self, container_id: str) -> list[int]:
        out = self._run("ps", "--format", "json", container_id)
        try:
            pids = json.loads(out or "[]")
        except ValueError as exc:
            raise RuntimeFailure(f"{self.name}: unreadable ps output: {out[:200]!r}") from exc
        return [int(p) for p in pids or []]

    def list(self) -> list[dict[str, Any]]:  # last, as in OCIRuntime
        out = self._run("list", "--format", "json")
        try:
            data = json.loads(out or "null") or []  # runc prints `null` for no containers
        except ValueError as exc:
            raise RuntimeFailure(f"{self.name}: unreadable list: {out[:200]!r}") from exc
        if not isinstance(data, list):
            raise RuntimeFailure(f"{self.name}: unreadable list: {out[:200]!r}")
        return [d for d in data if isinstance(d, dict)]


_counter = itertools.count()
# Signals a runtime must not inherit as ignored (Python ignores SIGPIPE; the supervisor ignores the others).
_DEFAULT_SIGNALS = (1, 2, 13, 15, 17, 25)  # SIGHUP, SIGINT, SIGPIPE, SIGTERM, SIGCHLD, SIGXFSZ


def _which(binary: str) -> str | None:
    if "/" in binary:
        return binary if os.access(binary, os.X_OK) else None
    path = os.environ.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", binary)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _spawn(argv: list[str], stdio: tuple[int, int, int] | None) -> tuple[int, str, str]:
    """posix_spawn the runtime: no `subprocess` import and no fork of a big process on the hot path.

    With `stdio`, the runtime (and the container init it creates) gets those fds as 0-2; otherwise its stdout
    and stderr are captured. Returns (exit code, stdout, stderr)."""
    actions: list[tuple[Any, ...]] = []
    parent_ends: list[int] = []
    child_ends: list[int] = []
    if stdio is not None:
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(stdio)]
    else:
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        parent_ends, child_ends = [out_r, err_r], [devnull, out_w, err_w]
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(child_ends)]
    try:
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions, setsigdef=_DEFAULT_SIGNALS)
    except OSError as exc:
        for fd in parent_ends + child_ends:
            os.close(fd)
        raise errors.Unavailable(f"cannot run {argv[0]}: {exc.strerror}") from None
    for fd in child_ends:
        os.close(fd)
    captured: dict[int, bytes] = {fd: b"" for fd in parent_ends}
    if parent_ends:
        import select

        pending = list(parent_ends)
        while pending:
            ready, _, _ = select.select(pending, [], [])
            for fd in ready:
                chunk = os.read(fd, 65536)
                if chunk:
                    captured[fd] += chunk
                else:
                    pending.remove(fd)
                    os.close(fd)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    out, err = (captured[parent_ends[0]], captured[parent_ends[1]]) if parent_ends else (b"", b"")
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace"), err.decode(errors="replace")


def _last_error(log: Path) -> str:
    """The message of the last error/fatal entry of a runtime's JSON log."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    message = ""
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal", "panic"):
            message = str(entry.get("msg", "")).strip()
    return message


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# Names containerd users know, mapped to ctrpy's runtime entries.
RUNTIME_ALIASES = {
    "io.containerd.runc.v2": "runc",
    "io.containerd.runc.v1": "runc",
    "io.containerd.runtime.v1.linux": "runc",
    "io.containerd.crun.v2": "crun",
}


def runtime_entry(name: str, config: Any) -> tuple[str, dict[str, Any]]:
    """Resolve a runtime name to (canonical name, its config entry); InvalidArgument when unknown."""
    canonical = RUNTIME_ALIASES.get(name, name)
    runtimes = config["runtimes"] if config is not None else {}
    entry = runtimes.get(canonical)
    if entry is None:
        if canonical in ("runc", "crun"):
            entry = {"type": "oci", "binary": canonical, "root": ""}
        elif canonical == "ctrpy":
            entry = {"type": "builtin"}
        else:
            known = ", ".join(sorted(set(runtimes) | {"ctrpy", "runc", "crun"}))
            raise errors.InvalidArgument(f"unknown runtime {name!r} (known: {known})")
    return canonical, dict(entry)


def open_runtime_entry(name: str, entry: dict[str, Any], state_dir: Path) -> OCIRuntime:
    """Build a runtime from a resolved config entry (used by the supervisor, which never loads config)."""
    from ctrpy.runtime import plugins

    kind = str(entry.get("type", "oci"))
    try:
        registration = plugins.get(plugins.PluginType.RUNTIME, kind)
    except errors.InvalidArgument:
        known = ", ".join(repr(i) for i in plugins.ids(plugins.PluginType.RUNTIME))
        raise errors.InvalidArgument(f"runtime {name!r}: unknown type {kind!r} (expected {known})") from None
    runtime: OCIRuntime = registration.init(plugins.context(registration, "", state_dir, section=entry, name=name))
    return runtime


def open_runtime(name: str, config: Any, state_dir: Path) -> OCIRuntime:
    """The runtime called `name`: "ctrpy" (built-in), "runc", "crun", containerd-style aliases, or any
    [runtimes.<name>] entry of type "oci" with a binary."""
    canonical, entry = runtime_entry(name, config)
    return open_runtime_entry(canonical, entry, state_dir)
