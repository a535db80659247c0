"""Transfer progress for pull and push: rich bars on a terminal, plain lines otherwise, nothing with -q.

Events come from worker threads (runtime.pull.Progress); the renderers serialise them. Progress goes to
stderr, so stdout carries only the result line and stays scriptable.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import click

from ctrpy.commands._output import human_size

_FINAL = ("done", "exists", "mounted", "failed")


def _short(event: Any) -> str:
    digest = event.digest.split(":", 1)[-1][:12] if event.digest else ""
    return f"{event.kind or 'blob'} {digest}".strip()


class PlainProgress:
    """One line per state change (no bars): readable in logs and CI."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()
        self.seen: dict[str, str] = {}
        self.started = time.monotonic()

    def __call__(self, event: Any) -> None:
        with self.lock:
            if event.key.startswith("unpack-"):
                if event.status not in ("unpacked", "exists"):
                    return
                line = f"{_short(event)}: {event.status}"
            elif event.status in ("resolving", "unpacking"):
                line = f"{event.status} {event.key}"
            elif event.status == "resolved":
                line = f"resolved {event.key}: {event.kind} {event.digest}"
            elif event.status == "unpacked":
                line = f"unpacked {event.key}"
            elif event.status == "warning":
                line = f"warning: {event.message}"
            elif event.status in ("downloading", "uploading"):
                if self.seen.get(event.key) == event.status:
                    return  # only the first byte counts as news in plain mode
                line = f"{_short(event)}: {event.status} {human_size(event.total)}"
            elif event.status == "waiting":
                return
            elif event.status in _FINAL:
                extra = f" from {event.message}" if event.status == "mounted" and event.message else ""
                line = f"{_short(event)}: {event.status} {human_size(event.total)}{extra}"
            else:
                line = f"{event.key}: {event.status}"
            self.seen[event.key] = event.status
            click.echo(line, file=self.stream)

    def close(self) -> None:
        pass


class RichProgress:
    """A live table: one bar per blob with bytes, speed and its state."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TransferSpeedColumn)

        self.console = Console(stderr=True, highlight=False)
        self.progress = Progress(
            TextColumn("{task.fields[label]}", style="bold"),
            BarColumn(bar_width=30),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.progress.start()

    def __call__(self, event: Any) -> None:
        with self.lock:
            if event.key.startswith("unpack-"):
                if event.status in ("unpacked", "exists"):
                    self.console.print(f"{_short(event)}: {event.status}")
                return
            if event.status in ("resolving", "resolved", "unpacking", "unpacked", "warning"):
                text = event.message if event.status == "warning" else f"{event.status} {event.key}"
                self.console.print(text)
                return
            task = self.tasks.get(event.key)
            if task is None:
                task = self.progress.add_task("", total=event.total or None, label=_short(event), state="")
                self.tasks[event.key] = task
            state = {"exists": "exists", "done": "done", "mounted": "mounted"}.get(event.status, event.status)
            self.progress.update(task, completed=event.offset, total=event.total or None, state=state)

    def close(self) -> None:
        self.progress.stop()


class NoProgress:
    def __call__(self, event: Any) -> None:
        pass

    def close(self) -> None:
        pass


def make_progress(quiet: bool) -> Any:
    if quiet:
        return NoProgress()
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return RichProgress() if tty else PlainProgress()
