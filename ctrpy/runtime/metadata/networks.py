"""Networks, address allocations, port mappings and attachments in the metadata store.

Everything that must not be shared (an address, a host port) is claimed inside one `with db.update()`
transaction (BEGIN IMMEDIATE): concurrent `run`s queue on the write lock, so two can never read the same free
address. Addresses are handed out round-robin after the network's `last_address` (like CNI's host-local), so
an address just released is not reused at once while neighbours may still cache its old MAC.
"""

from __future__ import annotations

import builtins
import ipaddress
import json
import sqlite3
from typing import Any

from ctrpy.runtime import errors
from ctrpy.runtime.metadata.db import DB, dump_labels, load_json, now
from ctrpy.runtime.network.store import Attachment, Network

__all__ = ["NetworkStore"]


def _network(row: sqlite3.Row) -> Network:
    return Network(row["name"], row["driver"], row["bridge"], row["subnet"], row["gateway"],
                   load_json(row["options"]), load_json(row["labels"]), row["created_at"])


def _attachment(row: sqlite3.Row) -> Attachment:
    return Attachment(row["namespace"], row["container_id"], row["network"], row["driver"], row["ifname"],
                      row["host_ifname"], row["address"], row["netns"], load_json(row["result"]),
                      row["created_at"])


class NetworkStore:
    """The networks of one ctrpy root (networks are not namespaced, like nerdctl's)."""

    def __init__(self, db: DB) -> None:
        self.db = db

    # -- networks ------------------------------------------------------------------------------------

    def get(self, name: str) -> Network:
        with self.db.view() as tx:
            row = tx.execute("SELECT * FROM networks WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise errors.NotFound(f"network {name!r} not found")
        return _network(row)

    def find(self, name: str) -> Network | None:
        try:
            return self.get(name)
        except errors.NotFound:
            return None

    def list(self) -> list[Network]:
        with self.db.view() as tx:
            rows = tx.execute("SELECT * FROM networks ORDER BY name").fetchall()
        return [_network(r) for r in rows]

    def create(self, network: Network, *, exist_ok: bool = False) -> Network:
        """Insert a bridge network; its subnet and bridge must not overlap another network's."""
        stamp = now()
        new = ipaddress.IPv4Network(network.subnet or "")
        with self.db.update() as tx:
            existing = tx.execute("SELECT * FROM networks WHERE name = ?", (network.name,)).fetchone()
            if existing is not None:
                if exist_ok:
                    return _network(existing)
                raise errors.AlreadyExists(f"network {network.name!r} already exists")
            for row in tx.execute("SELECT * FROM networks").fetchall():
                if row["subnet"] and ipaddress.IPv4Network(row["subnet"]).overlaps(new):
                    raise errors.AlreadyExists(
                        f"subnet {new} overlaps network {row['name']!r} ({row['subnet']})")
                if row["bridge"] and row["bridge"] == network.bridge:
                    raise errors.AlreadyExists(f"bridge {network.bridge} is used by network {row['name']!r}")
            tx.execute(
                "INSERT INTO networks (name, driver, bridge, subnet, gateway, last_address, options, labels, "
                "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (network.name, network.driver, network.bridge, network.subnet, network.gateway, network.gateway,
                 json.dumps(network.options, sort_keys=True), dump_labels(network.labels), stamp, stamp))
        return Network(network.name, network.driver, network.bridge, network.subnet, network.gateway,
                       network.options, network.labels, stamp)

    def delete(self, name: str) -> Network:
        """Remove a network's record; refused while any container is attached to it."""
        with self.db.update() as tx:
            row = tx.execute("SELECT * FROM networks WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise errors.NotFound(f"network {name!r} not found")
            users = [f"{r['namespace']}/{r['container_id']}" for r in tx.execute(
                "SELECT namespace, container_id FROM network_attachments WHERE network = ? ORDER BY 1, 2",
                (name,))]
            if users:
                raise errors.FailedPrecondition(
                    f"network {name!r} is in use by container(s) {', '.join(users)}")
            tx.execute("DELETE FROM ip_allocations WHERE network = ?", (name,))
            tx.execute("DELETE FROM networks WHERE name = ?", (name,))
        return _network(row)

    # -- attachments, addresses, ports ---------------------------------------------------------------

    def attach(self, namespace: str, container_id: str, network: Network, *, ifname: str,
               host_ifname: str | None, netns: str, static_ip: str | None, ports: builtins.list[dict[str, Any]],
               allocate: bool = True, result: dict[str, Any] | None = None) -> Attachment:
        """Claim an address (unless `allocate` is False) and the host ports, and record the attachment.

        `ports` are dicts with protocol/host_ip/host_port/container_port; each conflict is an AlreadyExists
        naming the port and its owner. Either everything is claimed or nothing.
        """
        stamp = now()
        with self.db.update() as tx:
            old = tx.execute("SELECT 1 FROM network_attachments WHERE namespace=? AND container_id=? AND network=?",
                             (namespace, container_id, network.name)).fetchone()
            if old is not None:
                raise errors.AlreadyExists(
                    f"container {container_id!r} is already attached to network {network.name!r}")
            address = self._allocate(tx, network, namespace, container_id, static_ip, stamp) if allocate else None
            for port in ports:
                self._claim_port(tx, port, network.name, namespace, container_id, address or "", stamp)
            tx.execute(
                "INSERT INTO network_attachments (namespace, container_id, network, driver, ifname, host_ifname, "
                "address, netns, result, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (namespace, container_id, network.name, network.driver, ifname, host_ifname, address, netns,
                 json.dumps(result or {}, sort_keys=True), stamp))
        return Attachment(namespace, container_id, network.name, network.driver, ifname, host_ifname, address,
                          netns, result or {}, stamp)

    def update_attachment(self, namespace: str, container_id: str, network: str, *, address: str | None = None,
                          result: dict[str, Any] | None = None, ports_ip: str | None = None,
                          netns: str | None = None) -> None:
        with self.db.update() as tx:
            if netns is not None:
                tx.execute("UPDATE network_attachments SET netns=? WHERE namespace=? AND container_id=? AND "
                           "network=?", (netns, namespace, container_id, network))
            if address is not None:
                tx.execute("UPDATE network_attachments SET address=? WHERE namespace=? AND container_id=? AND "
                           "network=?", (address, namespace, container_id, network))
            if result is not None:
                tx.execute("UPDATE network_attachments SET result=? WHERE namespace=? AND container_id=? AND "
                           "network=?", (json.dumps(result, sort_keys=True), namespace, container_id, network))
            if ports_ip is not None:
                tx.execute("UPDATE port_mappings SET container_ip=? WHERE namespace=? AND container_id=? AND "
                           "network=?", (ports_ip, namespace, container_id, network))

    def _allocate(self, tx: sqlite3.Connection, network: Network, namespace: str, container_id: str,
                  static_ip: str | None, stamp: str) -> str:
        net = ipaddress.IPv4Network(network.subnet or "")
        gateway = ipaddress.IPv4Address(network.gateway) if network.gateway else None
        taken = {r[0] for r in tx.execute("SELECT address FROM ip_allocations WHERE network = ?", (network.name,))}
        if static_ip:
            try:
                wanted = ipaddress.IPv4Address(static_ip)
            except ValueError:
                raise errors.InvalidArgument(f"invalid IP address {static_ip!r}") from None
            if wanted not in net or wanted in (net.network_address, net.broadcast_address, gateway):
                raise errors.InvalidArgument(
                    f"address {static_ip} is not a free host address of network {network.name!r} ({net})")
            if str(wanted) in taken:
                owner = tx.execute("SELECT namespace, container_id FROM ip_allocations WHERE network=? AND "
                                   "address=?", (network.name, str(wanted))).fetchone()
                raise errors.AlreadyExists(
                    f"address {static_ip} is already in use on network {network.name!r} by container "
                    f"{owner['namespace']}/{owner['container_id']}")
            chosen = wanted
        else:
            row = tx.execute("SELECT last_address FROM networks WHERE name = ?", (network.name,)).fetchone()
            first = int(net.network_address) + 1
            last = int(net.broadcast_address) - 1
            size = last - first + 1
            start = int(ipaddress.IPv4Address(row["last_address"])) + 1 if row and row["last_address"] else first
            chosen = None
            for step in range(size):
                candidate = ipaddress.IPv4Address(first + (start - first + step) % size)
                if candidate != gateway and str(candidate) not in taken:
                    chosen = candidate
                    break
            if chosen is None:
                raise errors.Unavailable(f"no free address left in network {network.name!r} ({net})")
            tx.execute("UPDATE networks SET last_address = ? WHERE name = ?", (str(chosen), network.name))
        tx.execute("INSERT INTO ip_allocations (network, address, namespace, container_id, created_at) "
                   "VALUES (?,?,?,?,?)", (network.name, str(chosen), namespace, container_id, stamp))
        return str(chosen)

    @staticmethod
    def _claim_port(tx: sqlite3.Connection, port: dict[str, Any], network: str, namespace: str,
                    container_id: str, address: str, stamp: str) -> None:
        # 0.0.0.0:P clashes with every a.b.c.d:P of the same protocol and the other way round.
        host_ip = port["host_ip"] or "0.0.0.0"
        clash = tx.execute(
            "SELECT * FROM port_mappings WHERE protocol=? AND host_port=? AND (host_ip=? OR host_ip='0.0.0.0' "
            "OR ?='0.0.0.0')", (port["protocol"], port["host_port"], host_ip, host_ip)).fetchone()
        if clash is not None:
            raise errors.AlreadyExists(
                f"port {clash['host_ip']}:{clash['host_port']}/{clash['protocol']} is already published by "
                f"container {clash['namespace']}/{clash['container_id']}")
        tx.execute(
            "INSERT INTO port_mappings (protocol, host_ip, host_port, network, namespace, container_id, "
            "container_ip, container_port, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (port["protocol"], host_ip, port["host_port"], network, namespace, container_id, address,
             port["container_port"], stamp))

    def attachments(self, namespace: str | None = None, container_id: str | None = None,
                    network: str | None = None) -> builtins.list[Attachment]:
        query, args = "SELECT * FROM network_attachments WHERE 1=1", []
        for column, value in (("namespace", namespace), ("container_id", container_id), ("network", network)):
            if value is not None:
                query += f" AND {column} = ?"
                args.append(value)
        with self.db.view() as tx:
            return [_attachment(r) for r in tx.execute(query + " ORDER BY created_at", args)]

    def ports(self, namespace: str | None = None, container_id: str | None = None) -> builtins.list[dict[str, Any]]:
        query, args = "SELECT * FROM port_mappings WHERE 1=1", []
        if namespace is not None:
            query += " AND namespace = ?"
            args.append(namespace)
        if container_id is not None:
            query += " AND container_id = ?"
            args.append(container_id)
        with self.db.view() as tx:
            return [dict(r) for r in tx.execute(query + " ORDER BY host_port", args)]

    def allocations(self, network: str | None = None) -> builtins.list[dict[str, Any]]:
        with self.db.view() as tx:
            if network is None:
                rows = tx.execute("SELECT * FROM ip_allocations ORDER BY network, address").fetchall()
            else:
                rows = tx.execute("SELECT * FROM ip_allocations WHERE network=? ORDER BY address",
                                  (network,)).fetchall()
        return [dict(r) for r in rows]

    def release(self, namespace: str, container_id: str, network: str | None = None) -> None:
        """Forget a container's attachments, addresses and ports (all its networks unless `network`)."""
        extra, args = ("", [namespace, container_id]) if network is None else (
            " AND network = ?", [namespace, container_id, network])
        with self.db.update() as tx:
            tx.execute("DELETE FROM port_mappings WHERE namespace=? AND container_id=?" + extra, args)
            tx.execute("DELETE FROM ip_allocations WHERE namespace=? AND container_id=?" + extra, args)
            tx.execute("DELETE FROM network_attachments WHERE namespace=? AND container_id=?" + extra, args)

    def orphans(self) -> tuple[builtins.list[dict[str, Any]], builtins.list[dict[str, Any]]]:
        """Addresses and ports whose container has no attachment (left by a crash between two writes)."""
        with self.db.view() as tx:
            ips = [dict(r) for r in tx.execute(
                "SELECT * FROM ip_allocations a WHERE NOT EXISTS (SELECT 1 FROM network_attachments n WHERE "
                "n.namespace=a.namespace AND n.container_id=a.container_id AND n.network=a.network)")]
            ports = [dict(r) for r in tx.execute(
                "SELECT * FROM port_mappings p WHERE NOT EXISTS (SELECT 1 FROM network_attachments n WHERE "
                "n.namespace=p.namespace AND n.container_id=p.container_id AND n.network=p.network)")]
        return ips, ports

    def delete_orphans(self, ips: builtins.list[dict[str, Any]], ports: builtins.list[dict[str, Any]]) -> None:
        with self.db.update() as tx:
            for ip in ips:
                tx.execute("DELETE FROM ip_allocations WHERE network=? AND address=?", (ip["network"], ip["address"]))
            for p in ports:
                tx.execute("DELETE FROM port_mappings WHERE protocol=? AND host_ip=? AND host_port=?",
                           (p["protocol"], p["host_ip"], p["host_port"]))
