"""`ctrpy namespaces`: create, list, label and remove namespaces, like `ctr namespaces`."""

from __future__ import annotations

from typing import Any

import click

from ctrpy.commands._kinds import kind
from ctrpy.commands._output import (
    AliasGroup,
    emit_json,
    format_labels,
    format_option,
    parse_labels,
    quiet_option,
    remove_each,
    table,
)


@click.group(cls=AliasGroup)
def namespaces() -> None:
    """Manage namespaces.

    \b
    Examples:
      ctrpy namespaces create team-a owner=alice
      ctrpy ns ls -q
      ctrpy -n team-a images ls
    """


@namespaces.command("create")
@click.argument("name", shell_complete=kind())
@click.argument("labels", nargs=-1)
@click.pass_obj
def create(obj: Any, name: str, labels: tuple[str, ...]) -> None:
    """Create namespace NAME with optional KEY=VALUE labels.

    \b
    Examples:
      ctrpy namespaces create team-a
      ctrpy namespaces create team-b owner=bob env=dev
    """
    obj.client.namespaces.create(name, parse_labels(labels))


@namespaces.command("ls")
@quiet_option
@format_option
@click.pass_obj
def ls(obj: Any, quiet: bool, fmt: str) -> None:
    """List namespaces.

    \b
    Examples:
      ctrpy namespaces ls
      ctrpy namespaces ls -q
      ctrpy namespaces ls --format json
    """
    items = obj.client.namespaces.list()
    if quiet:
        for ns in items:
            click.echo(ns.name)
    elif fmt == "json":
        emit_json([{"name": ns.name, "labels": ns.labels} for ns in items])
    else:
        table(["NAME", "LABELS"], [(ns.name, format_labels(ns.labels) if ns.labels else "") for ns in items])


@namespaces.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Remove empty namespaces (refused, naming what is left, when not empty).

    \b
    Examples:
      ctrpy namespaces rm team-a
      ctrpy ns rm team-a team-b
    """
    remove_each(ctx, names, ctx.obj.client.namespaces.delete)


@namespaces.command("label")
@click.argument("name")
@click.argument("labels", nargs=-1)
@click.pass_obj
def label(obj: Any, name: str, labels: tuple[str, ...]) -> None:
    """Set labels on a namespace (KEY=VALUE; KEY= removes the label).

    \b
    Examples:
      ctrpy namespaces label team-a owner=carol
      ctrpy namespaces label team-a owner=
    """
    ns = obj.client.namespaces.set_labels(name, parse_labels(labels))
    click.echo(f"updated labels of {ns.name}: {format_labels(ns.labels)}")
