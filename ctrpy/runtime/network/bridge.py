"""Bridge set-up and tear-down for the built-in driver (management path: pyroute2 is fine here).

`ensure_ready()` is what the per-task path calls: when the state directory's marker for the network and
the bridge device both exist it returns at once (two stat calls), and only otherwise imports pyroute2 and
(re)creates what is missing, under a file lock so concurrent first `run`s set things up once. The marker
lives in the state directory (a tmpfs in production), so a reboot, which loses bridges and nft tables,
also loses the markers.

Host settings touched, all per bridge (never the host-wide net.ipv4.ip_forward):
  net.ipv4.conf.<bridge>.forwarding = 1      containers reach each other through published ports
  net.ipv4.conf.<bridge>.route_localnet = 1  127.0.0.1:<published port> may be DNATed out the bridge
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ctrpy.runtime import errors
from ctrpy.runtime.network import nft
from ctrpy.runtime.network.store import Network


def marker(state: Path, network: Network) -> Path:
    return state / "network" / f"{network.name}.ready"


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


@contextmanager
def setup_lock(state: Path) -> Iterator[None]:
    directory = state / "network"
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / "setup.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure_ready(root: Path, state: Path, network: Network) -> None:
    """Make sure the network's bridge and its sysctls exist (cheap when they do)."""
    mark = marker(state, network)
    if network.bridge and mark.exists() and link_exists(network.bridge):
        return
    with setup_lock(state):
        if network.bridge and mark.exists() and link_exists(network.bridge):
            return
        if not is_set_up(network):
            setup(root, network)
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.write_text(network.bridge or "")


def is_set_up(network: Network) -> bool:
    """Is the bridge already there as setup() leaves it (for example made by another root or state dir)?
    Checked with file reads and one netlink dump, so a new state directory does not pay pyroute2's import."""
    name = network.bridge or ""
    if not name or not os.path.isdir(f"/sys/class/net/{name}/bridge"):
        return False
    try:
        for key in ("forwarding", "route_localnet"):
            if Path(f"/proc/sys/net/ipv4/conf/{name}/{key}").read_text().strip() != "1":
                return False
        if not int(Path(f"/sys/class/net/{name}/flags").read_text(), 16) & 0x1:  # IFF_UP
            return False
    except (OSError, ValueError):
        return False
    from ctrpy.runtime.network import netlink

    prefixlen = ipaddress.IPv4Network(network.subnet or "0.0.0.0/0").prefixlen
    with netlink.Netlink() as nl:
        return (network.gateway, prefixlen) in nl.addresses(nl.link_index(name))


def _sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise errors.from_oserror(exc, f"cannot set {path}") from exc


def setup(root: Path, network: Network) -> None:
    """Create the bridge with its gateway address and set its sysctls."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    assert network.bridge and network.subnet and network.gateway
    prefixlen = ipaddress.IPv4Network(network.subnet).prefixlen
    try:
        with IPRoute() as ipr:
            found = ipr.link_lookup(ifname=network.bridge)
            if not found:
                try:
                    ipr.link("add", ifname=network.bridge, kind="bridge", mtu=network.mtu)
                except NetlinkError as exc:
                    if exc.code != 17:  # EEXIST: another process won the race
                        raise
                found = ipr.link_lookup(ifname=network.bridge)
            index = found[0]
            kind = _link_kind(ipr, index)
            if kind != "bridge":
                raise errors.FailedPrecondition(
                    f"cannot use {network.bridge} for network {network.name!r}: it is a {kind or 'non-bridge'} "
                    "device")
            have = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
            if (network.gateway, prefixlen) not in have:
                try:
                    ipr.addr("add", index=index, address=network.gateway, prefixlen=prefixlen)
                except NetlinkError as exc:
                    if exc.code != 17:
                        raise
            ipr.link("set", index=index, state="up")
    except NetlinkError as exc:
        raise errors.from_errno(exc.code, f"cannot set up bridge {network.bridge}") from exc
    _sysctl(f"/proc/sys/net/ipv4/conf/{network.bridge}/forwarding", "1")
    _sysctl(f"/proc/sys/net/ipv4/conf/{network.bridge}/route_localnet", "1")


def _link_kind(ipr: Any, index: int) -> str | None:
    link = ipr.get_links(index)[0]
    kind: str | None = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
    return kind


def teardown(root: Path, state: Path, network: Network) -> None:
    """Delete the bridge (and with it any veth still enslaved) and its nft registration."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    marker(state, network).unlink(missing_ok=True)
    if network.bridge and network.subnet:
        nft.remove_network(nft.table_name(str(Path(root).resolve())), network.bridge, network.subnet)
    if not network.bridge:
        return
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=network.bridge)
        if found and _link_kind(ipr, found[0]) == "bridge":
            try:
                ipr.link("del", index=found[0])
            except NetlinkError as exc:
                if exc.code != 19:  # ENODEV: already gone
                    raise errors.from_errno(exc.code, f"cannot delete bridge {network.bridge}") from exc


def link_info(name: str) -> dict[str, Any] | None:
    """State of a link for `network inspect`: operstate, mtu, ports (None if the device is absent)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return None
        link = ipr.get_links(found[0])[0]
        ports = [lk.get("ifname") for lk in ipr.get_links() if lk.get("master") == found[0]]
        return {"name": name, "state": link.get("operstate"), "mtu": link.get("mtu"),
                "mac": link.get("address"), "ports": sorted(p for p in ports if p)}


def veths_on(bridges: list[str], prefix: str) -> list[tuple[str, str]]:
    """(veth, bridge) pairs for veths named `prefix`* enslaved to one of `bridges` (leak checks)."""
    from pyroute2 import IPRoute

    out = []
    with IPRoute() as ipr:
        index_of = {}
        for name in bridges:
            found = ipr.link_lookup(ifname=name)
            if found:
                index_of[found[0]] = name
        for link in ipr.get_links():
            name = link.get("ifname") or ""
            if name.startswith(prefix) and link.get("master") in index_of:
                out.append((name, index_of[link.get("master")]))
    return out
