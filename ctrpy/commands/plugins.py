"""`ctrpy plugins`: the registered plugins and whether they work on this host, like `ctr plugins ls`."""

from __future__ import annotations

from typing import Any

import click

from ctrpy.commands._output import AliasGroup, emit_json, format_option, quiet_option, table


@click.group(cls=AliasGroup)
def plugins() -> None:
    """Show the plugins: snapshotters, runtimes, network drivers, content stores.

    \b
    Examples:
      ctrpy plugins ls
      ctrpy plugin ls --format json
    """


@plugins.command("ls")
@quiet_option
@format_option
@click.pass_obj
def ls(obj: Any, quiet: bool, fmt: str) -> None:
    """List plugins with their status (ok, skip, error) and the error of one that failed.

    \b
    Examples:
      ctrpy plugins ls
      ctrpy plugins ls -q
      ctrpy plugins ls --format json
    """
    from ctrpy.runtime.plugins import list_plugins

    items = list_plugins(obj.root, obj.state, obj.config)
    if quiet:
        for p in items:
            click.echo(f"{p.type}.{p.id}")
    elif fmt == "json":
        emit_json([p.to_dict() for p in items])
    else:
        headers = ["TYPE", "ID", "PLATFORMS", "STATUS"]
        rows = [[p.type, p.id, ",".join(p.platforms) or "-", p.status] for p in items]
        if any(p.error for p in items):
            headers.append("ERROR")
            rows = [row + [p.error] for row, p in zip(rows, items)]
        table(headers, rows)
