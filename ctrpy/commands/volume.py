"""`ctrpy volume` (alias volumes): named volumes, as `docker volume` and `nerdctl volume`."""

from __future__ import annotations

from typing import Any

import click

from ctrpy.commands._dockerfmt import emit, template_format_option
from ctrpy.commands._output import AliasGroup, quiet_option


@click.group("volume", cls=AliasGroup)
def volume() -> None:
    """Manage named volumes (directories under the root that outlive containers).

    \b
    Examples:
      ctrpy volume create data
      ctrpy run --rm -v data:/data busybox ls /data
      ctrpy volume rm data
    """


@volume.command("create")
@click.argument("name", required=False)
@click.option("--label", "-l", "labels", multiple=True, metavar="KEY=VALUE", help="Set a label")
@click.pass_obj
def create(obj: Any, name: str | None, labels: tuple[str, ...]) -> None:
    """Create a volume (a generated name when none is given) and print its name.

    \b
    Examples:
      ctrpy volume create data
    """
    from ctrpy.runtime.dockerrun import parse_label_args
    from ctrpy.runtime.volumes import VolumeStore

    click.echo(VolumeStore(obj.client).create(name, parse_label_args(list(labels), []))["Name"])


@volume.command("ls")
@quiet_option
@template_format_option()
@click.pass_obj
def ls(obj: Any, quiet: bool, fmt: str) -> None:
    """List volumes.

    \b
    Examples:
      ctrpy volume ls
      ctrpy volume ls --format '{{.Name}} {{.Mountpoint}}'
    """
    from ctrpy.runtime.volumes import VolumeStore

    vols = VolumeStore(obj.client).list()
    if quiet:
        for v in vols:
            click.echo(v["Name"])
        return
    emit(vols, fmt, {"Driver": "DRIVER", "Name": "VOLUME NAME"}, ["Driver", "Name"])


@volume.command("inspect")
@click.argument("names", nargs=-1, required=True)
@template_format_option(default="json")
@click.pass_obj
def inspect(obj: Any, names: tuple[str, ...], fmt: str) -> None:
    """Show volumes as JSON.

    \b
    Examples:
      ctrpy volume inspect data
    """
    import json

    from ctrpy.runtime.volumes import VolumeStore

    store = VolumeStore(obj.client)
    found = [store.inspect(n) for n in names]
    if fmt == "json":
        click.echo(json.dumps(found, indent=4))
    else:
        emit(found, fmt, {}, [])


@volume.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.option("--force", "-f", is_flag=True, help="Remove even while containers use it")
@click.pass_context
def rm(ctx: click.Context, names: tuple[str, ...], force: bool) -> None:
    """Remove volumes (refused while a container uses one).

    \b
    Examples:
      ctrpy volume rm data
    """
    from ctrpy.commands._output import remove_each
    from ctrpy.runtime.volumes import VolumeStore

    store = VolumeStore(ctx.obj.client)
    remove_each(ctx, names, lambda n: store.remove(n, force=force))


@volume.command("prune")
@click.option("--force", "-f", is_flag=True, help="Do not ask (ctrpy never asks; accepted for docker's scripts)")
@click.pass_obj
def prune(obj: Any, force: bool) -> None:
    """Remove every volume no container uses.

    \b
    Examples:
      ctrpy volume prune -f
    """
    from ctrpy.runtime.volumes import VolumeStore

    for name in VolumeStore(obj.client).prune():
        click.echo(name)
