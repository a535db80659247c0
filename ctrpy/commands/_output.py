"""Rendering shared by every command: tables, -q, --format json, sizes and ages.

The Click-dependent half (option decorators, AliasGroup, remove_each) lives here; tables, JSON, sizes and
ages are in _text.py, which needs no Click, and are re-exported from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import click

from ctrpy.commands._text import (  # noqa: F401 - re-exported: every command imports them from here
    emit_json, format_labels, human_age, human_size, is_tty, parse_timestamp, table, use_color,
)

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


def remove_each(ctx: click.Context, names: Iterable[str], remove: Callable[[str], str | None], *,
                echo: bool = True) -> None:
    """Remove several objects like ctr does: print each one removed, report each failure on one line, go on,
    and exit with the first failure's code. `remove` returns the name to print (None: the name as given);
    `echo=False` prints nothing for the successes."""
    from ctrpy.runtime import errors

    failed: errors.CtrpyError | None = None
    for name in names:
        try:
            shown = remove(name)
        except errors.CtrpyError as exc:
            click.echo(f"ctrpy: {exc}", err=True)
            failed = failed or exc
            continue
        if echo:
            click.echo(shown or name)
    if failed:
        ctx.exit(failed.exit_code)
