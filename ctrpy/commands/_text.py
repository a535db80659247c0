"""The click-free half of command output: tables, JSON, sizes and ages (re-exported by _output).

Listing commands print through these on their fast path (commands/_root.py), where Click is never imported.
Human output is a rich table on a terminal and plain aligned columns (like ctr's tabwriter) otherwise, so
scripts that cut columns keep working; rich is imported only for a terminal. Colour is off with NO_COLOR.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False  # typing, collections.abc and json cost more than an empty listing (issue 17)
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any


def echo(text: str) -> None:
    """One line (or several joined) to stdout, as click.echo does for text."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def is_tty(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def use_color() -> bool:
    return is_tty() and "NO_COLOR" not in os.environ


def emit_json(data: Any) -> None:
    import json

    echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print rows under headers: rich on a terminal, tab-aligned plain text elsewhere."""
    rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
    if is_tty():
        from rich.console import Console
        from rich.table import Table

        console = Console(no_color=not use_color(), highlight=False)
        t = Table(box=None, pad_edge=False, show_edge=False, header_style="bold" if use_color() else "")
        # Never wrap a cell onto a second line (a wrapped ref or digest cannot be copied): cut the widest
        # columns first, to fit the terminal.
        for header, width in zip(headers, fit_widths(headers, rows, console.width, gap=2)):
            t.add_column(header, overflow="ellipsis", no_wrap=True, width=width)
        for row in rows:
            t.add_row(*row)
        console.print(t)
        return
    if headers and all(len(row) == len(headers) for row in rows):
        # Column by column and one format per row: half the cost of a cell at a time (10,000 rows: ~5 ms).
        widths = [max(map(len, column)) for column in zip(headers, *rows)]
        line = "    ".join([f"{{:<{w}}}" for w in widths[:-1]] + ["{}"])
        echo("\n".join([line.format(*row).rstrip() for row in [headers, *rows]]))
        return
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    out = []
    for row in [headers, *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]] if row else []
        out.append("    ".join(cells).rstrip())
    echo("\n".join(out))  # one write: a per-line echo costs more than the rows for long listings


def fit_widths(headers: Sequence[str], rows: Sequence[Sequence[str]], total: int, gap: int = 2,
               keep: Sequence[int] = ()) -> list[int]:
    """Column widths that fit `total` characters with `gap` between columns: each column's natural width,
    then the widest cut one character at a time, first never below its header or 8 characters, then (a
    very narrow terminal) down to 3 characters, headers included, the columns in `keep` (what users copy:
    IDs, names) last, until the row fits."""
    widths = [max([len(h)] + [len(r[i]) for r in rows if i < len(r)]) for i, h in enumerate(headers)]
    budget = total - gap * (len(headers) - 1)
    first = [min(w, max(len(h), 8)) for w, h in zip(widths, headers)]
    for floors in (first, [f if i in keep else min(w, 3) for i, (f, w) in enumerate(zip(first, widths))],
                   [min(w, 3) for w in widths]):
        while sum(widths) > budget:
            i = max(range(len(widths)), key=lambda k: widths[k] - floors[k])
            if widths[i] <= floors[i]:
                break
            widths[i] -= 1
    return widths


def cut(cell: str, width: int) -> str:
    """`cell` in at most `width` characters, an ellipsis marking a cut."""
    return cell if len(cell) <= width else cell[:max(width - 1, 0)] + "…"


def terminal_width() -> int:
    """The terminal's width (COLUMNS wins, as for rich and shutil)."""
    import shutil

    return shutil.get_terminal_size().columns


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
    from ctrpy.runtime import timefmt

    return timefmt.parse(stamp)


def human_age(stamp: str | None) -> str:
    """'3 minutes ago' style relative time."""
    if not stamp:
        return "-"
    return _age_text(max(0, int(time.time() - parse_timestamp(stamp))))


def human_ages(stamps: Iterable[str | None]) -> list[str]:
    """human_age() of each stamp, for a listing's rows: the store's stamps (`...:SS.fffffffffZ`) of one
    second are parsed once, when their fraction cannot change the text (the same at both ends of the
    second); a parse per row was the largest per-row cost of `containers ls` (issue 17)."""
    now = time.time()
    known: dict[str, str | None] = {}
    out = []
    for stamp in stamps:
        if not stamp:
            out.append("-")
            continue
        text = None
        if len(stamp) >= 20 and stamp[-1] == "Z" and stamp[19] in ".Z":  # UTC, so within [second, second + 1)
            key = stamp[:19]
            if key in known:
                text = known[key]
            else:
                second = parse_timestamp(key + "Z")
                latest = _age_text(max(0, int(now - second)))
                text = known[key] = latest if _age_text(max(0, int(now - (second + 0.999999999)))) == latest \
                    else None
        out.append(text if text is not None else _age_text(max(0, int(now - parse_timestamp(stamp)))))
    return out


def _age_text(delta: int) -> str:
    for unit, secs in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if delta >= secs:
            n = delta // secs
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return f"{delta} second{'s' if delta != 1 else ''} ago"


def format_labels(labels: dict[str, str] | None) -> str:
    if not labels:
        return "-"
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def docker_table(rows: Sequence[dict[str, Any]], headers: dict[str, str], columns: Sequence[str], *,
                 fit: bool = True, keep: Sequence[str] = ()) -> None:
    """Print docker_table_lines() at once."""
    echo("\n".join(docker_table_lines(rows, headers, columns, fit=fit, keep=keep)))


def docker_table_lines(rows: Sequence[dict[str, Any]], headers: dict[str, str], columns: Sequence[str], *,
                       fit: bool = True, keep: Sequence[str] = ()) -> list[str]:
    """A docker-shaped table (Go's tabwriter, padding 3); on a terminal with `fit`, the widest cells are cut
    to its width (never wrapped), the `keep` columns last."""
    from ctrpy.runtime.gotemplate import tabwrite

    head = [headers.get(c, c.upper()) for c in columns]
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    if fit and is_tty():
        widths = fit_widths(head, cells, terminal_width(), gap=3, keep=[i for i, c in enumerate(columns) if c in keep])
        head = [cut(h, w) for h, w in zip(head, widths)]
        cells = [[cut(cell, w) for cell, w in zip(row, widths)] for row in cells]
    return tabwrite(["\t".join(head)] + ["\t".join(row) for row in cells])
