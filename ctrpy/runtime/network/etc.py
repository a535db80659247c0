"""The per-container /etc/hosts, /etc/resolv.conf and /etc/hostname contents.

resolv.conf is the host's with loopback nameservers dropped (127.0.0.53 and friends mean nothing inside a
new network namespace; with --network host they are kept), and --dns / --dns-search / --dns-option replace
the host's entries of that kind. hosts maps localhost, the container's own name to its address (127.0.1.1
without one, as Debian does) and every --add-host; `host-gateway` as an address means the network's gateway
(docker's spelling). When no nameserver is left (the host only had loopback ones), docker's fallback
8.8.8.8/8.8.4.4 is written, as oci.prepare_etc_files does.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path

_LOOPBACK_NS = re.compile(r"^\s*nameserver\s+(\S+)")

DEFAULT_NAMESERVERS = ("8.8.8.8", "8.8.4.4")

BASE_HOSTS = ("127.0.0.1\tlocalhost\n"
              "::1\tlocalhost ip6-localhost ip6-loopback\n"
              "fe00::0\tip6-localnet\n"
              "ff00::0\tip6-mcastprefix\n"
              "ff02::1\tip6-allnodes\n"
              "ff02::2\tip6-allrouters\n")


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def resolv_conf(*, host_network: bool, dns: Sequence[str] = (), dns_search: Sequence[str] = (),
                dns_options: Sequence[str] = (), host_resolv: str = "/etc/resolv.conf") -> str:
    try:
        host_lines = Path(host_resolv).read_text().splitlines()
    except OSError:
        host_lines = []
    lines = []
    for line in host_lines:
        stripped = line.strip()
        ns = _LOOPBACK_NS.match(stripped)
        if ns and (dns or (not host_network and _is_loopback(ns.group(1)))):
            continue
        if dns_search and stripped.split()[:1] in (["search"], ["domain"]):
            continue
        if dns_options and stripped.startswith("options"):
            continue
        lines.append(line)
    lines += [f"nameserver {server}" for server in dns]
    if dns_search:
        lines.append("search " + " ".join(dns_search))
    if dns_options:
        lines.append("options " + " ".join(dns_options))
    if not any(line.split()[:1] == ["nameserver"] for line in lines):
        lines += [f"nameserver {server}" for server in DEFAULT_NAMESERVERS]
    return "\n".join(lines) + "\n"


def hosts(*, hostname: str, address: str | None, add_hosts: Sequence[tuple[str, str]] = (),
          gateway: str | None = None, host_network: bool = False, host_hosts: str = "/etc/hosts") -> str:
    if host_network:
        try:
            text = Path(host_hosts).read_text()
        except OSError:
            text = BASE_HOSTS
        if text and not text.endswith("\n"):
            text += "\n"
    else:
        text = BASE_HOSTS
        if hostname:
            text += f"{address or '127.0.1.1'}\t{hostname}\n"
    for name, target in add_hosts:
        if target == "host-gateway":
            target = gateway or "127.0.0.1"
        text += f"{target}\t{name}\n"
    return text
