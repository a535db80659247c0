"""`ctrpy leases`: leases protecting work in progress from garbage collection, like `ctr leases`."""

from __future__ import annotations

import re
from typing import Any

import click

from ctrpy.commands._output import (
    AliasGroup,
    emit_json,
    format_labels,
    format_option,
    human_age,
    parse_labels,
    quiet_option,
    remove_each,
    table,
)

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")


def parse_duration(text: str) -> float:
    """Go-style duration ("24h", "1h30m", "90s") or plain seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise click.BadParameter(f"invalid duration {text!r} (examples: 24h, 1h30m, 90s)")
    return total


@click.group(cls=AliasGroup)
def leases() -> None:
    """Manage leases.

    \b
    Examples:
      ctrpy leases create --expires 1h
      ctrpy leases ls -q
    """


@leases.command("ls")
@click.argument("filters", nargs=-1)
@quiet_option
@format_option
@click.pass_obj
def ls(obj: Any, filters: tuple[str, ...], quiet: bool, fmt: str) -> None:
    """List leases.

    \b
    Examples:
      ctrpy leases ls
      ctrpy leases ls -q 'labels."owner"==ci'
      ctrpy leases ls --format json
    """
    items = obj.client.leases.list(list(filters))
    if quiet:
        for lease in items:
            click.echo(lease.id)
    elif fmt == "json":
        emit_json([lease.__dict__ for lease in items])
    else:
        table(["ID", "CREATED AT", "LABELS"],
              [(le.id, human_age(le.created_at), format_labels(le.labels)) for le in items])


@leases.command("create")
@click.option("--id", "lease_id", default=None, help="Lease id (generated when omitted)")
@click.option("--expires", "-x", default="24h", show_default=True, help="Expire after this duration (0: never)")
@click.argument("labels", nargs=-1)
@click.pass_obj
def create(obj: Any, lease_id: str | None, expires: str, labels: tuple[str, ...]) -> None:
    """Create a lease and print its id.

    \b
    Examples:
      ctrpy leases create
      ctrpy leases create --id build-42 --expires 1h30m owner=ci
      ctrpy leases create --expires 0 purpose=pin
    """
    seconds = parse_duration(expires)
    lease = obj.client.leases.create(lease_id, parse_labels(labels), seconds if seconds > 0 else None)
    click.echo(lease.id)


@leases.command("rm")
@click.argument("ids", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, ids: tuple[str, ...]) -> None:
    """Delete leases.

    \b
    Examples:
      ctrpy leases rm build-42
      ctrpy leases ls -q 'labels."owner"==ci' | xargs -r ctrpy leases rm
    """
    remove_each(ctx, ids, ctx.obj.client.leases.delete)
