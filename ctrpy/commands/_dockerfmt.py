"""`--format` for the docker-shaped commands: `table` (default), `json`, or a Go template (`{{.ID}}`,
`table {{.ID}}\\t{{.Names}}`), rendered by ctrpy.runtime.gotemplate."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from ctrpy.commands._text import docker_table_lines


class FormatType(click.Choice):
    """table, json, or any Go template (the choices are what completion offers)."""

    name = "format"

    def __init__(self, choices: tuple[str, ...] = ("table", "json")) -> None:
        super().__init__(choices)

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, str) and ("{{" in value or value.startswith("table")):
            return value
        return super().convert(value, param, ctx)

    def get_metavar(self, param: Any, *args: Any, **kwargs: Any) -> str:
        return "table|json|TEMPLATE"


def template_format_option(default: str = "table") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    choices = ("table", "json") if default == "table" else ("json",)
    return click.option("--format", "fmt", type=FormatType(choices), default=default, show_default=True,
                        help="Output: table, json or a Go template ('{{.ID}} {{.Names}}', 'table {{.ID}}')")


def emit(rows: list[dict[str, Any]], fmt: str, headers: dict[str, str], columns: list[str],
         json_rows: list[Any] | None = None, fit: bool = True, keep: tuple[str, ...] = ()) -> None:
    """Print rows as a table of `columns`, as a JSON array (every ctrpy list command's contract), or through
    a Go template (one rendering per row, as docker)."""
    lines = render(rows, fmt, headers, columns, json_rows, fit=fit, keep=keep)
    if lines:
        click.echo("\n".join(lines))  # one write: per-line echo costs more than the rows of a long listing


def render(rows: list[dict[str, Any]], fmt: str, headers: dict[str, str], columns: list[str],
           json_rows: list[Any] | None = None, fit: bool = True, keep: tuple[str, ...] = ()) -> list[str]:
    """The lines `emit` prints (a live view redraws them in place); a table fits the terminal with `fit`."""
    from ctrpy.runtime.gotemplate import render_all

    if fmt == "json":
        return [json.dumps(json_rows if json_rows is not None else rows, indent=2, sort_keys=True, default=str)]
    if fmt == "table":
        return docker_table_lines(rows, headers, columns, fit=fit, keep=keep)
    lines = render_all(fmt, rows, headers)
    if lines and lines[-1] == "" and not fmt.startswith("table"):
        lines = lines[:-1]
    return lines
