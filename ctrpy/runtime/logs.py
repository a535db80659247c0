"""A container's output for `ctrpy logs`: stdout and stderr apart, with times, --since/--until, rotation.

The supervisor writes every chunk of the init's output to `output.log` (all of it, for `tasks`-level
`ctrpy logs` of ctr-shaped containers) and, as docker's json-file driver does, one JSON line per line of
output to STREAM_LOG: {"log": text, "stream": "stdout"|"stderr", "time": RFC 3339 with nanoseconds}.
With `--log-opt max-size=S,max-file=N` (annotations on the spec) the supervisor rotates it to
STREAM_LOG.1 ... STREAM_LOG.<N-1>. Without STREAM_LOG (a supervisor that does not write it), the combined
output.log is shown on stdout.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors
from ctrpy.runtime.supervisor import STREAM_LOG

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

_REL = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def saved_dir(client: Client, container_id: str) -> Path:
    """Where the output of a container's finished tasks is kept until `rm` (docker keeps it too)."""
    return Path(client.root) / "logs" / client.namespace / container_id


def save(client: Client, container_id: str) -> None:
    """Append a stopped task's logs to the container's saved logs (before the task is deleted)."""
    from ctrpy.runtime.supervisor import LOG_FILE

    td = client.tasks.dir(container_id)
    dest = saved_dir(client, container_id)
    files = _files(td.path)
    if not files and not (td.path / LOG_FILE).exists():
        return
    dest.mkdir(parents=True, exist_ok=True)
    for name, sources in ((STREAM_LOG, files), (LOG_FILE, [td.path / LOG_FILE])):
        with open(dest / name, "ab") as out:
            for src in sources:
                try:
                    with open(src, "rb") as f:
                        while chunk := f.read(1 << 20):
                            out.write(chunk)
                except FileNotFoundError:
                    continue


def discard(client: Client, container_id: str) -> None:
    import shutil

    shutil.rmtree(saved_dir(client, container_id), ignore_errors=True)


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch from RFC 3339, a Unix time, or a duration before now (10m, 2h)."""
    if not text:
        return None
    m = _REL.match(text)
    if m:
        return time.time() - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    from ctrpy.runtime import timefmt

    try:
        return timefmt.parse(text)
    except ValueError:
        raise errors.InvalidArgument(f"invalid time {text!r}: use RFC 3339 (2024-01-02T15:04:05Z) "
                                     f"or a duration (10m, 1h)") from None


def _files(task_dir: Path) -> list[Path]:
    base = task_dir / STREAM_LOG
    rotated = sorted(task_dir.glob(STREAM_LOG + ".*"), key=lambda p: int(p.suffix[1:]) if p.suffix[1:].isdigit()
                     else 0, reverse=True)
    return [p for p in rotated if p.suffix[1:].isdigit()] + ([base] if base.exists() else [])


def _entries(path: Path) -> list[dict[str, Any]]:
    out = []
    try:
        text = path.read_bytes()
    except OSError:
        return []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _render(entry: dict[str, Any], timestamps: bool) -> tuple[int, bytes]:
    data = entry.get("log", "").encode("utf-8", "surrogateescape")
    if timestamps:
        data = entry.get("time", "").encode() + b" " + data
    return (2 if entry.get("stream") == "stderr" else 1), data


def read(client: Client, container_id: str, *, tail: int | None = None, follow: bool = False,
         timestamps: bool = False, since: str | None = None, until: str | None = None,
         combined: bool = False) -> Iterator[tuple[int, bytes]]:
    """(stream fd, bytes) of the container's output, as `logs` prints it; `combined` (ctr-shaped containers,
    as `ctr` shows a task's output) gives all of it on stdout unless times are asked for."""
    from ctrpy.runtime.supervisor import LOG_FILE

    td = client.tasks.dir(container_id)
    saved = saved_dir(client, container_id)
    live = td.exists()
    since_t, until_t = parse_time(since), parse_time(until)
    has_stream = (td.path / STREAM_LOG).exists() or (saved / STREAM_LOG).exists()
    if combined and not (timestamps or since or until) or not has_stream:
        if timestamps or since or until:
            raise errors.NotImplemented_("this task's supervisor keeps no per-line log: no -t/--since/--until")
        if (saved / LOG_FILE).exists() and (tail is None or not live):
            with open(saved / LOG_FILE, "rb") as f:
                from ctrpy.runtime.tasks import _tail_lines

                yield from ((1, c) for c in (_tail_lines(f, tail) if tail is not None else iter(f.read, b"")))
        if live:
            for chunk in client.tasks.logs(container_id, tail=tail, follow=follow):
                yield 1, chunk
        return

    def wanted(entry: dict[str, Any]) -> bool:
        if since_t is None and until_t is None:
            return True
        t = parse_time(entry.get("time"))
        return (since_t is None or (t or 0) >= since_t) and (until_t is None or (t or 0) <= until_t)

    entries = [e for p in [saved / STREAM_LOG] + (_files(td.path) if live else []) for e in _entries(p)
               if wanted(e)]
    if tail is not None:
        entries = entries[-tail:] if tail > 0 else []
    for entry in entries:
        yield _render(entry, timestamps)
    if not follow or not live:
        return
    path = td.path / STREAM_LOG
    with open(path, "rb") as f:
        f.seek(0, 2)
        pending = b""
        while True:
            chunk = f.read(65536)
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if wanted(entry):
                        yield _render(entry, timestamps)
                continue
            if until_t is not None and time.time() > until_t:
                return
            if td.exit() is not None or td.supervisor_pid() is None or not td.exists():
                return
            if path.stat().st_ino != __import__("os").fstat(f.fileno()).st_ino:  # rotated: reopen
                f.close()
                f = open(path, "rb")
            time.sleep(0.1)
