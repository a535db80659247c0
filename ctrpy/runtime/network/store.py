"""Networks and attachments as values, and the checks of a network's name and subnet.

They are stored by ctrpy.runtime.metadata.networks.NetworkStore (the metadata layer owns the SQL).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from ctrpy.runtime import errors

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
RESERVED_NAMES = ("host", "none")
DEFAULT_NETWORK = "bridge"


@dataclass(frozen=True)
class Network:
    """A built-in bridge network (driver "bridge") or a CNI conflist (driver "cni")."""

    name: str
    driver: str
    bridge: str | None = None
    subnet: str | None = None
    gateway: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    created_at: str = ""

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet or "0.0.0.0/0").prefixlen

    @property
    def mtu(self) -> int:
        return int(self.options.get("mtu", 1500))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "driver": self.driver, "bridge": self.bridge, "subnet": self.subnet,
                "gateway": self.gateway, "options": self.options, "labels": self.labels,
                "created_at": self.created_at}


@dataclass(frozen=True)
class Attachment:
    """One container's interface on one network, as detach and prune need it."""

    namespace: str
    container_id: str
    network: str
    driver: str
    ifname: str
    host_ifname: str | None
    address: str | None
    netns: str
    result: dict[str, Any]
    created_at: str


def validate_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise errors.InvalidArgument(
            f"invalid network name {name!r}: use letters, digits, '.', '_' and '-' (at most 64, starting with "
            "a letter or digit)")
    if name in RESERVED_NAMES:
        raise errors.InvalidArgument(f"network name {name!r} is reserved")
    return name


def parse_subnet(subnet: str, gateway: str | None = None) -> tuple[str, str]:
    """Check an IPv4 subnet (and gateway) and return them normalised; the gateway defaults to the first host."""
    try:
        net = ipaddress.IPv4Network(subnet, strict=True)
    except ValueError as exc:
        raise errors.InvalidArgument(f"invalid subnet {subnet!r}: {exc}") from None
    if net.prefixlen > 30:
        raise errors.InvalidArgument(f"subnet {subnet} is too small: at most /30")
    if gateway is None:
        gw = net.network_address + 1
    else:
        try:
            gw = ipaddress.IPv4Address(gateway)
        except ValueError:
            raise errors.InvalidArgument(f"invalid gateway {gateway!r}") from None
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise errors.InvalidArgument(f"gateway {gateway} is not a host address of subnet {net}")
    return str(net), str(gw)
