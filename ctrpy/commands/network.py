"""`ctrpy network`: create, list, inspect, remove and prune networks, like `nerdctl network`."""

from __future__ import annotations

from typing import Any

import click

from ctrpy.commands._kinds import kind
from ctrpy.commands._output import AliasGroup, emit_json, format_labels, format_option, json_format_option, parse_labels, quiet_option, remove_each, table


@click.group(cls=AliasGroup)
def network() -> None:
    """Manage networks (built-in bridge networks and CNI conflists).

    \b
    Examples:
      ctrpy network create --subnet 10.4.7.0/24 backend
      ctrpy net ls
    """


@network.command("create")
@click.argument("name", shell_complete=kind())
@click.option("--subnet", default=None, metavar="CIDR", help="IPv4 subnet (default: a free 10.4.N.0/24)")
@click.option("--gateway", default=None, metavar="IP", help="Gateway address (default: the subnet's first host)")
@click.option("--bridge", "bridge_name", default=None, metavar="IFNAME", help="Bridge device name (default br-<hash>)")
@click.option("--mtu", type=int, default=None, help="MTU of the bridge and the containers' interfaces")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="Set a label (repeatable)")
@click.pass_obj
def create(obj: Any, name: str, subnet: str | None, gateway: str | None, bridge_name: str | None, mtu: int | None,
           labels: tuple[str, ...]) -> None:
    """Create bridge network NAME.

    \b
    Examples:
      ctrpy network create backend
      ctrpy network create --subnet 10.4.7.0/24 --gateway 10.4.7.1 --mtu 1400 --label team=web frontend
    """
    from ctrpy.runtime.network import create_network

    net = create_network(obj.client, name, subnet=subnet, gateway=gateway, bridge_name=bridge_name, mtu=mtu,
                         labels=parse_labels(labels))
    click.echo(net.name)


@network.command("ls")
@quiet_option
@format_option
@click.pass_obj
def ls(obj: Any, quiet: bool, fmt: str) -> None:
    """List networks.

    \b
    Examples:
      ctrpy network ls
      ctrpy network ls -q
      ctrpy network ls --format json
    """
    from ctrpy.runtime.network import list_networks

    items = list_networks(obj.client)
    if quiet:
        for item in items:
            click.echo(item["name"])
    elif fmt == "json":
        emit_json(items)
    else:
        table(["NAME", "DRIVER", "BRIDGE", "SUBNET", "GATEWAY", "LABELS"],
              [(n["name"], n["driver"], n["bridge"] or "-", n["subnet"] or "-", n["gateway"] or "-",
                format_labels(n["labels"])) for n in items])


@network.command("inspect")
@click.argument("names", nargs=-1, required=True)
@json_format_option
@click.pass_obj
def inspect(obj: Any, names: tuple[str, ...], fmt: str) -> None:
    """Show networks as JSON: settings, bridge state, attached containers, published ports.

    \b
    Examples:
      ctrpy network inspect bridge
      ctrpy network inspect --format json backend frontend
    """
    from ctrpy.runtime.network import inspect_network

    emit_json([inspect_network(obj.client, name) for name in names])


@network.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Remove networks (refused while containers are attached).

    \b
    Examples:
      ctrpy network rm backend
      ctrpy network rm backend frontend
    """
    from ctrpy.runtime.network import remove_network

    remove_each(ctx, names, lambda name: remove_network(ctx.obj.client, name))


@network.command("prune")
@format_option
@click.pass_obj
def prune(obj: Any, fmt: str) -> None:
    """Release addresses, ports and veths that belong to no live task (after a crash).

    \b
    Examples:
      ctrpy network prune
      ctrpy network prune --format json
    """
    from ctrpy.runtime.network import prune as prune_leaks

    report = prune_leaks(obj.client)
    if fmt == "json":
        emit_json(report.to_dict())
        return
    for what, items in (("detached", report.detached), ("released address", report.addresses),
                        ("removed port", report.ports), ("deleted veth", report.veths)):
        for item in items:
            click.echo(f"{what} {item}")
    for problem in report.errors:
        click.echo(f"ctrpy: warning: {problem}", err=True)


@network.command("check")
@click.argument("container_id", shell_complete=kind("@container"))
@click.pass_obj
def check(obj: Any, container_id: str) -> None:
    """Check a running container's networking (CNI CHECK for CNI networks).

    \b
    Examples:
      ctrpy network check web
    """
    from ctrpy.runtime.network import check as check_network

    for name in check_network(obj.client, container_id):
        click.echo(f"{container_id}: {name} ok")
