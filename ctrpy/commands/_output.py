"""Rendering shared by every command: tables, -q, --format json, sizes and ages.

Human output is a rich table on a terminal and plain aligned columns (like ctr's tabwriter) otherwise, so
scripts that cut columns keep working; rich is imported only for a terminal. Colour is off with NO_COLOR.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

FORMATS = ("table", "json")


def format_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--format table|json."""
    return click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
                        help="Output format")(fn)


def json_format_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--format json for inspect commands whose nested records have JSON as their only form."""
    return click.option("--format", "fmt", type=click.Choice(["json"]), default="json", show_default=True,
                        help="Output format (nested data: JSON only)")(fn)


def quiet_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """-q/--quiet: print identifiers only, one per line."""
    return click.option("--quiet", "-q", is_flag=True, help="Print only identifiers, one per line")(fn)


def is_tty(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def use_color() -> bool:
    return is_tty() and "NO_COLOR" not in os.environ


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print rows under headers: rich on a terminal, tab-aligned plain text elsewhere."""
    rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
    if is_tty():
        from rich.console import Console
        from rich.table import Table

        console = Console(no_color=not use_color(), highlight=False)
        t = Table(box=None, pad_edge=False, show_edge=False, header_style="bold" if use_color() else "")
        for header in headers:
            t.add_column(header, overflow="fold")
        for row in rows:
            t.add_row(*row)
        console.print(t)
        return
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    out = []
    for row in [headers, *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]] if row else []
        out.append("    ".join(cells).rstrip())
    click.echo("\n".join(out))  # one write: a per-line echo costs more than the rows for long listings


def human_size(size: int | None) -> str:
    """1.2 MiB style, as ctr prints sizes."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def parse_timestamp(stamp: str) -> float:
    """Seconds since the epoch from the store's RFC 3339 timestamps."""
    import calendar

    main, _, frac = stamp.rstrip("Z").partition(".")
    try:
        # The store's own format, sliced: strptime costs more than the rest of a listing row.
        if len(main) != 19 or main[4] != "-" or main[10] != "T":
            raise ValueError(main)
        fields = (int(main[0:4]), int(main[5:7]), int(main[8:10]), int(main[11:13]), int(main[14:16]),
                  int(main[17:19]))
        seconds = calendar.timegm(fields + (0, 0, 0))
    except ValueError:
        seconds = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    return seconds + (float("0." + frac) if frac else 0.0)


def human_age(stamp: str | None) -> str:
    """'3 minutes ago' style relative time."""
    if not stamp:
        return "-"
    delta = max(0, int(time.time() - parse_timestamp(stamp)))
    for unit, secs in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if delta >= secs:
            n = delta // secs
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return f"{delta} second{'s' if delta != 1 else ''} ago"


def format_labels(labels: dict[str, str] | None) -> str:
    if not labels:
        return "-"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def parse_labels(pairs: Iterable[str]) -> dict[str, str]:
    """k=v arguments (a bare k means an empty value, which removes the label in `label` commands)."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not key:
            raise click.BadParameter(f"invalid label {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


class AliasGroup(click.Group):
    """A group whose verbs also answer to ctr's aliases (`ls`/`list`, `rm`/`remove`/`delete`)."""

    VERB_ALIASES = {"list": "ls", "remove": "rm", "delete": "rm", "del": "rm"}

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in self.VERB_ALIASES:
            command = super().get_command(ctx, self.VERB_ALIASES[name])
        return command


def remove_each(ctx: click.Context, names: Iterable[str], remove: Callable[[str], str | None]) -> None:
    """Remove several objects like ctr does: print each one removed, report each failure on one line, go on,
    and exit with the first failure's code. `remove` returns the name to print (None: the name as given)."""
    from ctrpy.runtime import errors

    failed: errors.CtrpyError | None = None
    for name in names:
        try:
            shown = remove(name)
        except errors.CtrpyError as exc:
            click.echo(f"ctrpy: {exc}", err=True)
            failed = failed or exc
            continue
        click.echo(shown or name)
    if failed:
        ctx.exit(failed.exit_code)
