"""Port publishing and the bridge NAT rules, through nftables (one `nft -f -` call per change).

Why nftables rather than iptables: both are installed and iptables here is iptables-nft anyway, but native
nft gives ctrpy one table of its own that it can create, inspect and delete as a unit, atomic batches (a
failed batch changes nothing), and maps: publishing a port adds a map element instead of a rule, so no rule
ever has to be found again by matching its text to remove it, and lookup cost does not grow with the number
of published ports.

Each ctrpy root gets its own table (`ip ctrpy` for the default root, `ip ctrpy_<hash>` for others), so
test roots and real roots never touch each other's mappings, and `prune` on one root cannot remove another's.
The table exists only while the root publishes a port: the first `-p` declares it (publish(), idempotent
and atomic), and the detach or prune that removes the last published port deletes it.

    table ip ctrpy {
      set bridges   (ifname)            bridges of this root's networks
      set subnets   (ipv4 intervals)    their subnets
      map pub_any   proto . port        -> container ip . port   (-p PORT:CPORT, -p 0.0.0.0:...)
      map pub_ip    host ip . proto . port -> container ip . port (-p 127.0.0.1:PORT:CPORT)
      chain prerouting  (nat, dstnat)  local destination -> publish   (from other hosts and containers)
      chain output      (nat, -100)    local destination -> publish   (from this host, 127.0.0.1 included)
      chain postrouting (nat, srcnat)  published traffic from 127/8 or from a container subnet into a
                                       bridge is masqueraded, so the reply comes back through the host
    }

127.0.0.1 works as docker's does without its userland proxy: the OUTPUT DNAT, `route_localnet` on the
bridge (a 127/8 source may leave through it), and the masquerade above. Traffic between containers over a
published port needs `forwarding` on the bridge (set per bridge, not the host-wide ip_forward) and hairpin
mode on the veth port (netlink.py).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from ctrpy.runtime import errors
from ctrpy.paths import DEFAULT_ROOT

try:  # the builtin module: hashlib would load OpenSSL (~2.5 ms) on the run path
    from _sha256 import sha256
except ImportError:  # pragma: no cover - other interpreters
    from hashlib import sha256

@dataclass(frozen=True)
class Rule:
    """One published port as the kernel sees it."""

    protocol: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int

    def element(self) -> tuple[str, str]:
        """(map name, element text) for this mapping."""
        value = f"{self.container_ip} . {self.container_port}"
        if self.host_ip in ("", "0.0.0.0"):
            return "pub_any", f"{self.protocol} . {self.host_port} : {value}"
        return "pub_ip", f"{self.host_ip} . {self.protocol} . {self.host_port} : {value}"


def table_name(root: str) -> str:
    """The nft table of a ctrpy root: `ctrpy` for the default one, `ctrpy_<hash>` for any other."""
    root = str(root).rstrip("/") or "/"
    if root == DEFAULT_ROOT:
        return "ctrpy"
    digest: str = sha256(root.encode()).hexdigest()
    return "ctrpy_" + digest[:10]


def _nft(script: str, what: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    except FileNotFoundError:
        raise errors.Unavailable("nft not found: install the nftables package") from None
    if check and proc.returncode != 0:
        message = proc.stderr.strip().splitlines()
        detail = next((line for line in message if line.startswith("Error")), message[0] if message else "")
        if "File exists" in proc.stderr:
            raise errors.AlreadyExists(f"{what}: {detail}")
        raise errors.Internal(f"{what}: nft: {detail}")
    return proc


def table_exists(table: str) -> bool:
    proc = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True, text=True)
    return proc.returncode == 0


def _declare(table: str) -> str:
    """Idempotent declaration of the whole table: `add` is a no-op for what exists, and each chain is
    flushed and refilled in the same atomic batch, so running it twice never duplicates a rule."""
    chains = {
        "publish": ("", ["dnat ip addr . port to ip daddr . meta l4proto . th dport map @pub_ip",
                         "dnat ip addr . port to meta l4proto . th dport map @pub_any"]),
        "prerouting": ("type nat hook prerouting priority dstnat; policy accept;",
                       ["fib daddr type local jump publish"]),
        "output": ("type nat hook output priority -100; policy accept;", ["fib daddr type local jump publish"]),
        "postrouting": ("type nat hook postrouting priority srcnat; policy accept;",
                        ["ct status dnat oifname @bridges ip saddr 127.0.0.0/8 masquerade",
                         "ct status dnat oifname @bridges ip saddr @subnets masquerade"]),
    }
    lines = [f"add table ip {table}",
             f"add set ip {table} bridges {{ type ifname; }}",
             f"add set ip {table} subnets {{ type ipv4_addr; flags interval; }}",
             f"add map ip {table} pub_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}",
             f"add map ip {table} pub_ip {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}"]
    for name, (hook, rules) in chains.items():
        lines.append(f"add chain ip {table} {name} {{ {hook} }}" if hook else f"add chain ip {table} {name}")
        lines.append(f"flush chain ip {table} {name}")
        lines += [f"add rule ip {table} {name} {rule}" for rule in rules]
    return "\n".join(lines) + "\n"


def publish(table: str, bridge: str, subnet: str, rules: Iterable[Rule]) -> None:
    """Declare the table, register the bridge and publish `rules`: one atomic `nft -f` (all or nothing)."""
    script = _declare(table)
    script += f"add element ip {table} bridges {{ {json.dumps(bridge)} }}\n"
    script += f"add element ip {table} subnets {{ {subnet} }}\n"
    script += "".join(f"add element ip {table} {m} {{ {e} }}\n" for m, e in (r.element() for r in rules))
    _nft(script, "cannot publish ports")


def delete_table(table: str) -> bool:
    proc = _nft(f"delete table ip {table}\n", "delete table", check=False)
    return proc.returncode == 0


def remove_network(table: str, bridge: str, subnet: str) -> None:
    if not table_exists(table):
        return
    # Separate batches: a missing element fails its whole batch, and either may already be gone.
    _nft(f"delete element ip {table} bridges {{ {json.dumps(bridge)} }}\n", "unregister bridge", check=False)
    _nft(f"delete element ip {table} subnets {{ {subnet} }}\n", "unregister subnet", check=False)


def remove_rules(table: str, rules: Iterable[Rule]) -> None:
    """Unpublish ports; elements already gone are fine (a batch fails whole, so retry one by one)."""
    lines = [f"delete element ip {table} {m} {{ {e.split(' : ')[0]} }}" for m, e in (r.element() for r in rules)]
    if not lines:
        return
    if _nft("\n".join(lines) + "\n", "unpublish", check=False).returncode == 0:
        return
    for line in lines:
        _nft(line + "\n", "unpublish", check=False)


def list_rules(table: str) -> list[Rule]:
    """Every published port in the root's table (for prune and leak checks)."""
    out: list[Rule] = []
    for name in ("pub_any", "pub_ip"):
        proc = subprocess.run(["nft", "-j", "list", "map", "ip", table, name], capture_output=True, text=True)
        if proc.returncode != 0:
            continue
        for item in json.loads(proc.stdout).get("nftables", []):
            elems = item.get("map", {}).get("elem", [])
            for key, value in elems:
                parts = key["concat"]
                target = value["concat"]
                if name == "pub_any":
                    host_ip, proto, port = "0.0.0.0", parts[0], parts[1]
                else:
                    host_ip, proto, port = parts
                out.append(Rule(str(proto), str(host_ip), int(port), str(target[0]), int(target[1])))
    return out


def list_bridges(table: str) -> list[str]:
    proc = subprocess.run(["nft", "-j", "list", "set", "ip", table, "bridges"], capture_output=True, text=True)
    if proc.returncode != 0:
        return []
    for item in json.loads(proc.stdout).get("nftables", []):
        if "set" in item:
            return [str(e) for e in item["set"].get("elem", [])]
    return []
