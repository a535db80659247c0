"""The network flags shared by `run` and `containers create` (like nerdctl's): apply `@network_options`.

The decorated command receives `network, ip, publish, add_host, dns, dns_search, dns_option` and turns them
into a NetworkRequest with `network_request(...)` (validated: bad input is one `ctrpy:` line, exit 3), which
the container stores in its extensions under ctrpy.runtime.network.EXTENSION_KEY. `--net-host` (ctr's alias
for `--network host`) stays where the command already defines it; pass it as `net_host=`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

_OPTIONS = [
    click.option("--network", "--net", "network", default=None, metavar="MODE|NAME",
                 help="Network: bridge (default), host, none, a `network create` name or a CNI conflist name"),
    click.option("--ip", default=None, metavar="IPV4", help="Static IPv4 address on the network"),
    click.option("--publish", "-p", "publish", multiple=True, metavar="[HOSTIP:]HOSTPORT:PORT[/PROTO]",
                 help="Publish a container port on the host (tcp or udp; repeatable)"),
    click.option("--add-host", "add_host", multiple=True, metavar="NAME:IP",
                 help="Add a line to /etc/hosts (IP may be host-gateway; repeatable)"),
    click.option("--dns", multiple=True, metavar="IP", help="Nameserver for /etc/resolv.conf (repeatable)"),
    click.option("--dns-search", "dns_search", multiple=True, metavar="DOMAIN",
                 help="Search domain for /etc/resolv.conf (repeatable)"),
    click.option("--dns-option", "dns_option", multiple=True, metavar="OPT",
                 help="Option line entry for /etc/resolv.conf (repeatable)"),
]


def network_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add --network/--net, --ip, -p/--publish, --add-host, --dns, --dns-search, --dns-option."""
    for option in reversed(_OPTIONS):
        fn = option(fn)
    return fn


def network_request(*, network: str | None = None, ip: str | None = None, publish: tuple[str, ...] = (),
                    add_host: tuple[str, ...] = (), dns: tuple[str, ...] = (), dns_search: tuple[str, ...] = (),
                    dns_option: tuple[str, ...] = (), net_host: bool = False) -> Any:
    """The NetworkRequest for the flags (raises InvalidArgument on bad values)."""
    from ctrpy.runtime.network import request_from_options

    return request_from_options(network=network, ip=ip, publish=tuple(publish), add_host=tuple(add_host),
                                dns=tuple(dns), dns_search=tuple(dns_search), dns_option=tuple(dns_option),
                                net_host=net_host)
