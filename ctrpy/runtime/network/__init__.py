"""Container networking: the built-in bridge driver, CNI plugins, port publishing, /etc files, leak pruning.

The task lifecycle calls three functions (ctrpy/runtime/tasks.py):

    etc_files(client, id, request, hostname)   before `create`: hosts/resolv.conf/hostname contents; for the
                                               built-in driver this reserves the address, so /etc/hosts can
                                               name it before the task exists
    attach(client, id, "/proc/PID/ns/net", request) -> NetworkResult
                                               after `create`, before `start`: veth pair on the bridge, eth0
                                               in the task's netns with its address and default route, lo up,
                                               published ports; or the CNI plugins' ADD
    detach(client, id)                         on task delete: unpublish, delete the veth if the netns did
                                               not take it along, release the address; or CNI DEL

Modes (`--network`): "bridge" (the default network: bridge ctrpy0, 10.4.0.0/24 from config.toml, created on
first use), "host" (the task stays in the host's netns: nothing to do), "none" (only lo, brought up), any
network made by `ctrpy network create`, or the name of a CNI conflist in `[network] cni_conf_dir`.

Only the standard library is imported on the per-task path: pyroute2 (~350 ms to import) is used for
bridge set-up, inspect and prune, never for a task whose bridge is already up.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors, timefmt

try:  # the builtin module: hashlib would load OpenSSL (~2.5 ms) on the run path
    from _sha256 import sha256
except ImportError:  # pragma: no cover - other interpreters
    from hashlib import sha256

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client
    from ctrpy.runtime.metadata.networks import NetworkStore
    from ctrpy.runtime.network.store import Attachment, Network

EXTENSION_KEY = "ctrpy.io/network"
IFNAME = "eth0"
MODES = ("bridge", "host", "none")
# Reservations (etc_files without attach) older than this belong to a create that failed.
RESERVATION_GRACE_SECONDS = 120

_PUBLISH_RE = re.compile(
    r"^(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):)?(?:(?P<host>\d*):)?(?P<cport>\d+)"
    r"(?:/(?P<proto>[a-zA-Z]+))?$")


@dataclass(frozen=True)
class PortMapping:
    """`-p [host_ip:][host_port:]container_port[/protocol]`."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = "0.0.0.0"

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}->{self.container_port}/{self.protocol}"


@dataclass(frozen=True)
class NetworkRequest:
    """What a container asked for, stored in its extensions under EXTENSION_KEY."""

    network: str = ""  # "" means [network] default from config.toml
    ip: str | None = None
    ports: tuple[PortMapping, ...] = ()
    add_hosts: tuple[tuple[str, str], ...] = ()
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ports"] = [asdict(p) for p in self.ports]
        data["add_hosts"] = [list(h) for h in self.add_hosts]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> NetworkRequest:
        data = dict(data or {})
        return cls(
            network=str(data.get("network") or ""),
            ip=data.get("ip") or None,
            ports=tuple(PortMapping(**p) for p in data.get("ports") or ()),
            add_hosts=tuple((str(h[0]), str(h[1])) for h in data.get("add_hosts") or ()),
            dns=tuple(data.get("dns") or ()),
            dns_search=tuple(data.get("dns_search") or ()),
            dns_options=tuple(data.get("dns_options") or ()),
        )


@dataclass(frozen=True)
class NetworkResult:
    """What attach did: the mode, and for bridge/CNI the interface, address and published ports."""

    mode: str  # "bridge" (built-in driver), "cni", "host", "none"
    network: str | None = None
    interface: str | None = None
    address: str | None = None
    prefixlen: int | None = None
    gateway: str | None = None
    host_interface: str | None = None
    ports: tuple[PortMapping, ...] = ()
    cni_result: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ports"] = [str(p) for p in self.ports]
        return data


# -- parsing of the command-line forms -------------------------------------------------------------------


def parse_publish(text: str) -> PortMapping:
    """Parse `-p [hostip:][hostport:]containerport[/tcp|udp]`; a missing host port means "any free one"."""
    match = _PUBLISH_RE.match(text.strip())
    if not match:
        raise errors.InvalidArgument(
            f"invalid port mapping {text!r}: expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|udp]")
    proto = (match.group("proto") or "tcp").lower()
    if proto not in ("tcp", "udp"):
        raise errors.InvalidArgument(f"invalid port mapping {text!r}: protocol must be tcp or udp")
    host_ip = match.group("ip") or "0.0.0.0"
    if host_ip.startswith("["):
        raise errors.NotImplemented_(f"invalid port mapping {text!r}: IPv6 host addresses are not supported")
    try:
        socket.inet_aton(host_ip)
        if len(host_ip.split(".")) != 4 or any(int(x) > 255 for x in host_ip.split(".")):
            raise OSError
    except OSError:
        raise errors.InvalidArgument(f"invalid port mapping {text!r}: bad host address {host_ip!r}") from None
    cport = int(match.group("cport"))
    hport = int(match.group("host")) if match.group("host") else 0
    for value, what in ((cport, "container port"), (hport, "host port")):
        if not 0 <= value <= 65535 or (what == "container port" and value == 0):
            raise errors.InvalidArgument(f"invalid port mapping {text!r}: {what} {value} out of range 1-65535")
    return PortMapping(hport, cport, proto, host_ip)


def parse_add_host(text: str) -> tuple[str, str]:
    """`--add-host NAME:IP` (also NAME=IP; IP may be `host-gateway`)."""
    for sep in ("=", ":"):
        name, found, address = text.partition(sep)
        if found and name and address:
            break
    else:
        raise errors.InvalidArgument(f"invalid --add-host {text!r}: expected NAME:IP")
    if address != "host-gateway":
        import ipaddress

        try:
            ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            raise errors.InvalidArgument(f"invalid --add-host {text!r}: {address!r} is not an IP address") from None
        address = address.strip("[]")
    if not re.match(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$", name):
        raise errors.InvalidArgument(f"invalid --add-host {text!r}: bad host name {name!r}")
    return name, address


def request_from_options(*, network: str | None = None, ip: str | None = None, publish: tuple[str, ...] = (),
                         add_host: tuple[str, ...] = (), dns: tuple[str, ...] = (), dns_search: tuple[str, ...] = (),
                         dns_option: tuple[str, ...] = (), net_host: bool = False) -> NetworkRequest:
    """Build (and validate) a NetworkRequest from the `network_options` flags."""
    name = network or ""
    if net_host:
        if name and name != "host":
            raise errors.InvalidArgument(f"--net-host conflicts with --network {name}")
        name = "host"
    if name in ("host", "none"):
        if publish:
            raise errors.InvalidArgument(f"-p/--publish cannot be used with --network {name}")
        if ip:
            raise errors.InvalidArgument(f"--ip cannot be used with --network {name}")
    import ipaddress

    if ip:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise errors.InvalidArgument(f"invalid --ip {ip!r}: not an IPv4 address") from None
    for server in dns:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise errors.InvalidArgument(f"invalid --dns {server!r}: not an IP address") from None
    return NetworkRequest(network=name, ip=ip or None, ports=tuple(parse_publish(p) for p in publish),
                          add_hosts=tuple(parse_add_host(h) for h in add_host), dns=tuple(dns),
                          dns_search=tuple(dns_search), dns_options=tuple(dns_option))


# -- resolution ---------------------------------------------------------------------------------------------


def network_store(client: Client) -> NetworkStore:
    from ctrpy.runtime.metadata.networks import NetworkStore

    cached = client.__dict__.get("_network_store")
    if cached is None:
        cached = client.__dict__["_network_store"] = NetworkStore(client.db)
    return cached


def default_network(client: Client) -> Network:
    """The record of the default "bridge" network from config.toml (not yet stored)."""
    from ctrpy.runtime.network.store import Network, parse_subnet

    cfg = client.config.get("network") or {}
    subnet, gateway = parse_subnet(str(cfg.get("subnet", "10.4.0.0/24")))
    return Network("bridge", "bridge", str(cfg.get("bridge", "ctrpy0")), subnet, gateway,
                   {"mtu": int(cfg.get("mtu", 1500))})


def cni_conflists(client: Client) -> dict[str, Any]:
    from ctrpy.runtime.network import cni

    return cni.load_conflists(str(client.config.get("network.cni_conf_dir", "") or ""))


def resolve(client: Client, name: str) -> tuple[str, Any]:
    """("host"|"none", None), ("bridge", Network) or ("cni", ConfList) for a --network value."""
    name = name or str(client.config.get("network.default", "bridge") or "bridge")
    if name in ("host", "none"):
        return name, None
    netstore = network_store(client)
    found = netstore.find(name)
    if found is not None:
        return "bridge", found
    if name == "bridge":
        return "bridge", netstore.create(default_network(client), exist_ok=True)
    conflists = cni_conflists(client)
    if name in conflists:
        return "cni", conflists[name]
    raise errors.NotFound(f"network {name!r} not found")


def host_ifname(client: Client, namespace: str, container_id: str) -> str:
    """The host end of a task's veth: `vc` + 4 hex of the root + 8 of the container, so prune on one root
    can tell its own veths from another root's on a shared bridge."""
    digest: str = sha256(f"{namespace}/{container_id}".encode()).hexdigest()
    return "vc" + root_tag(client) + digest[:8]


def root_tag(client: Client) -> str:
    digest: str = sha256(str(Path(client.root).resolve()).encode()).hexdigest()
    return digest[:4]


def _table(client: Client) -> str:
    from ctrpy.runtime.network import nft

    return nft.table_name(str(Path(client.root).resolve()))


def _ns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _alive(att: Attachment) -> bool:
    """Is the netns this attachment was made in still the same live namespace?"""
    # The built-in driver records it at the top of its result; others beside their plugin's result, in _ctrpy.
    inode = att.result.get("netns_inode", att.result.get("_ctrpy", {}).get("netns_inode"))
    return bool(att.netns) and inode is not None and _ns_inode(att.netns) == inode


def _check_host_ports(ports: tuple[PortMapping, ...]) -> tuple[PortMapping, ...]:
    """Refuse ports a host process listens on (our DNAT would hide it); pick free ones for `-p CPORT`."""
    out = []
    for p in ports:
        kind = socket.SOCK_STREAM if p.protocol == "tcp" else socket.SOCK_DGRAM
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((p.host_ip, p.host_port))
            except OSError as exc:
                raise errors.AlreadyExists(
                    f"cannot publish {p.host_ip}:{p.host_port}/{p.protocol}: {(exc.strerror or str(exc)).lower()} "
                    "on the host"
                ) from None
            port = s.getsockname()[1]
        out.append(PortMapping(port, p.container_port, p.protocol, p.host_ip))
    return tuple(out)


def _port_rows(ports: tuple[PortMapping, ...]) -> list[dict[str, Any]]:
    return [{"protocol": p.protocol, "host_ip": p.host_ip, "host_port": p.host_port,
             "container_port": p.container_port} for p in ports]


def _ports_of(netstore: NetworkStore, namespace: str, container_id: str, network: str) -> tuple[PortMapping, ...]:
    return tuple(PortMapping(r["host_port"], r["container_port"], r["protocol"], r["host_ip"])
                 for r in netstore.ports(namespace, container_id) if r["network"] == network)


# -- the task lifecycle ---------------------------------------------------------------------------------


def reserve(client: Client, container_id: str, spec: NetworkRequest) -> NetworkResult:
    """Claim the address and host ports of a built-in bridge attachment without touching the kernel.

    attach() completes a reservation; detach() releases it. For host/none/CNI nothing is reserved (a CNI
    address is known only after ADD).
    """
    mode, target = resolve(client, spec.network)
    result: NetworkResult = driver(client, mode).reserve(client, container_id, spec, target)
    return result


def _reserve_bridge(client: Client, container_id: str, spec: NetworkRequest, target: Any) -> NetworkResult:
    netstore = network_store(client)
    existing = [a for a in netstore.attachments(client.namespace, container_id) if a.network == target.name]
    if existing and (existing[0].netns == "" or _alive(existing[0])):
        att = existing[0]
    else:
        if existing:
            detach(client, container_id)
        ports = _check_host_ports(spec.ports)
        att = netstore.attach(client.namespace, container_id, target, ifname=IFNAME,
                              host_ifname=host_ifname(client, client.namespace, container_id), netns="",
                              static_ip=spec.ip, ports=_port_rows(ports))
    return NetworkResult("bridge", target.name, IFNAME, att.address, target.prefixlen, target.gateway,
                         att.host_ifname, _ports_of(netstore, client.namespace, container_id, target.name))


def attach(client: Client, container_id: str, netns_path: str, spec: NetworkRequest) -> NetworkResult:
    """Connect the task whose network namespace is `netns_path` as `spec` asks (see the module doc)."""
    mode, target = resolve(client, spec.network)
    result: NetworkResult = driver(client, mode).attach(client, container_id, netns_path, spec, target)
    return result


def driver(client: Client, name: str) -> Any:
    """The network driver plugin `name` (ctrpy.runtime.network.plugin registers bridge, cni, host, none)."""
    from ctrpy.runtime import plugins

    return plugins.init(plugins.PluginType.NETWORK, name, client.root, client.state, client.config, client)


def _attach_bridge(client: Client, container_id: str, netns_path: str, spec: NetworkRequest,
                   target: Any) -> NetworkResult:
    from ctrpy.runtime.network import bridge, netlink, nft

    bridge.ensure_ready(client.root, client.state, target)
    netstore = network_store(client)
    existing = [a for a in netstore.attachments(client.namespace, container_id) if a.network == target.name]
    if existing and existing[0].netns:
        if existing[0].netns == netns_path and _alive(existing[0]):
            raise errors.AlreadyExists(f"container {container_id!r} is already attached to {target.name!r}")
        detach(client, container_id)  # left by a task that died without delete
        existing = []
    res = reserve(client, container_id, spec)
    try:
        netlink.setup_task_interface(netns_path, res.host_interface or "", target.bridge or "", res.address or "",
                                     target.prefixlen, target.gateway, target.mtu, IFNAME)
        if res.ports:
            with bridge.setup_lock(client.state):
                nft.publish(_table(client), target.bridge or "", target.subnet or "",
                            [nft.Rule(p.protocol, p.host_ip, p.host_port, res.address or "", p.container_port)
                             for p in res.ports])
        netstore.update_attachment(client.namespace, container_id, target.name, netns=netns_path,
                                   result={"netns_inode": _ns_inode(netns_path)})
    except BaseException as exc:
        try:
            detach(client, container_id)
        except errors.CtrpyError:
            pass
        if isinstance(exc, errors.AlreadyExists) and res.ports:
            raise errors.AlreadyExists(f"a published port of {container_id!r} is already in use: "
                                       f"{', '.join(str(p) for p in res.ports)}") from exc
        raise
    return res


def _attach_cni(client: Client, container_id: str, netns_path: str, spec: NetworkRequest, conflist: Any) -> NetworkResult:
    from ctrpy.runtime.network import cni

    netstore = network_store(client)
    stale = [a for a in netstore.attachments(client.namespace, container_id) if a.network == conflist.name]
    if stale:
        detach(client, container_id)
    runtime_config = _cni_runtime_config(conflist, spec)
    ports = _check_host_ports(spec.ports)
    if ports != spec.ports:
        runtime_config = _cni_runtime_config(conflist, NetworkRequest(ports=ports, ip=spec.ip))
    from ctrpy.runtime.network.store import Network

    pseudo = Network(conflist.name, "cni")
    netstore.attach(client.namespace, container_id, pseudo, ifname=IFNAME, host_ifname=None, netns=netns_path,
                    static_ip=None, ports=_port_rows(ports), allocate=False,
                    result={"_ctrpy": {"netns_inode": _ns_inode(netns_path), "runtime_config": runtime_config}})
    plugin = cni.CNI(conflist, str(client.config.get("network.cni_bin_dir", "/usr/lib/cni")))
    try:
        result = plugin.add(container_id, netns_path, IFNAME, runtime_config)
    except BaseException:
        netstore.release(client.namespace, container_id, conflist.name)
        raise
    address, prefixlen, gateway = cni.primary_address(result, IFNAME)
    stored = dict(result)
    stored["_ctrpy"] = {"netns_inode": _ns_inode(netns_path), "runtime_config": runtime_config}
    netstore.update_attachment(client.namespace, container_id, conflist.name, address=address or "",
                               result=stored, ports_ip=address or "")
    return NetworkResult("cni", conflist.name, IFNAME, address, prefixlen, gateway, None, ports, result)


def _cni_runtime_config(conflist: Any, spec: NetworkRequest) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if spec.ports:
        if not conflist.capability("portMappings"):
            raise errors.InvalidArgument(
                f"CNI network {conflist.name!r} cannot publish ports: no plugin with the portMappings capability")
        config["portMappings"] = [{"hostPort": p.host_port, "containerPort": p.container_port,
                                   "protocol": p.protocol, "hostIP": "" if p.host_ip == "0.0.0.0" else p.host_ip}
                                  for p in spec.ports]
    if spec.ip:
        if not conflist.capability("ips"):
            raise errors.InvalidArgument(
                f"CNI network {conflist.name!r} cannot take --ip: no plugin with the ips capability")
        config["ips"] = [spec.ip]
    return config


def detach(client: Client, container_id: str) -> None:
    """Undo attach (and any reservation) for every network of the container; safe to call twice.

    Kernel state goes first and the records last, so a failure leaves records that prune can retry.
    """
    netstore = network_store(client)
    problems: list[str] = []
    unpublished = False
    for att in netstore.attachments(client.namespace, container_id):
        try:
            unpublished = driver(client, att.driver).detach(client, netstore, att) or unpublished
        except errors.CtrpyError as exc:
            problems.append(str(exc))
            continue
        netstore.release(client.namespace, container_id, att.network)
    if unpublished:
        _drop_table_if_unused(client)
    if problems:
        raise errors.Unavailable(f"cannot detach {container_id!r} from its networks: {'; '.join(problems)}")


def _drop_table_if_unused(client: Client) -> None:
    """Delete the root's nft table once no port of the root is published (checked under the lock that
    publishing holds, so a concurrent `-p` never loses its rules)."""
    from ctrpy.runtime.network import bridge, nft

    with bridge.setup_lock(client.state):
        if not network_store(client).ports():
            nft.delete_table(_table(client))


def _detach_bridge(client: Client, netstore: NetworkStore, att: Attachment) -> bool:
    """Undo the kernel side of a built-in attachment; True if it had published ports."""
    from ctrpy.runtime.network import netlink, nft

    ports = _ports_of(netstore, att.namespace, att.container_id, att.network)
    if ports:
        nft.remove_rules(_table(client), [nft.Rule(p.protocol, p.host_ip, p.host_port, att.address or "",
                                                   p.container_port) for p in ports])
    # Deleting a veth is synchronous in the kernel (~20 ms of RCU grace periods). When the task's netns is
    # already gone the kernel is removing the pair with it, so only a live (or unknown) netns needs it;
    # one kept alive elsewhere leaves a veth that prune's sweep finds.
    if att.host_ifname and (not att.netns or _alive(att)) and os.path.exists(f"/sys/class/net/{att.host_ifname}"):
        netlink.delete_link(att.host_ifname)
    return bool(ports)


def _detach_cni(client: Client, att: Attachment) -> None:
    from ctrpy.runtime.network import cni

    conflists = cni_conflists(client)
    conflist = conflists.get(att.network)
    if conflist is None:
        raise errors.NotFound(f"CNI network {att.network!r} is no longer configured; cannot run DEL")
    extra = att.result.get("_ctrpy", {})
    result = {k: v for k, v in att.result.items() if k != "_ctrpy"}
    # A netns that is gone (or whose path now names another process's) must not be entered: pass "" so the
    # plugins release only host-side state, as the spec allows.
    netns = att.netns if _alive(att) else ""
    plugin = cni.CNI(conflist, str(client.config.get("network.cni_bin_dir", "/usr/lib/cni")))
    plugin.delete(att.container_id, netns, att.ifname, result, extra.get("runtime_config", {}))


def check(client: Client, container_id: str) -> list[str]:
    """Verify a container's networking is as attach left it: CNI CHECK, or the veth for the built-in driver."""
    netstore = network_store(client)
    atts = netstore.attachments(client.namespace, container_id)
    if not atts:
        raise errors.NotFound(f"container {container_id!r} has no network attachment")
    checked = []
    for att in atts:
        if not _alive(att):
            raise errors.FailedPrecondition(f"the network namespace of {container_id!r} is gone")
        driver(client, att.driver).check(client, att)
        checked.append(att.network)
    return checked


def _check_cni(client: Client, att: Attachment) -> None:
    from ctrpy.runtime.network import cni

    conflist = cni_conflists(client).get(att.network)
    if conflist is None:
        raise errors.NotFound(f"CNI network {att.network!r} is no longer configured")
    extra = att.result.get("_ctrpy", {})
    result = {k: v for k, v in att.result.items() if k != "_ctrpy"}
    cni.CNI(conflist, str(client.config.get("network.cni_bin_dir", "/usr/lib/cni"))).check(
        att.container_id, att.netns, att.ifname, result, extra.get("runtime_config", {}))


def _check_bridge(client: Client, att: Attachment) -> None:
    if att.host_ifname and not os.path.exists(f"/sys/class/net/{att.host_ifname}"):
        raise errors.FailedPrecondition(f"veth {att.host_ifname} of {att.container_id!r} is missing")


def etc_files(client: Client, container_id: str, spec: NetworkRequest, hostname: str) -> dict[str, str]:
    """Contents of the container's /etc/hosts, /etc/resolv.conf and /etc/hostname.

    For the built-in driver this reserves the address first (see reserve()), so the hosts file maps the
    container's name to its real address; the caller must detach() if the task is never created.
    """
    from ctrpy.runtime.network import etc

    mode, target = resolve(client, spec.network)
    res = driver(client, mode).reserve(client, container_id, spec, target)
    address, gateway = res.address, res.gateway
    host_network = mode == "host"
    return {
        "hosts": etc.hosts(hostname=hostname, address=address, add_hosts=spec.add_hosts, gateway=gateway,
                           host_network=host_network),
        "resolv.conf": etc.resolv_conf(host_network=host_network, dns=spec.dns, dns_search=spec.dns_search,
                                       dns_options=spec.dns_options),
        "hostname": (hostname or os.uname().nodename) + "\n",  # none: the host's uts namespace
    }


def write_etc_files(directory: str | os.PathLike[str], files: dict[str, str]) -> None:
    """Write etc_files() output into `directory`, in place: a file already bind-mounted into a container
    keeps its inode, so rewriting it (not renaming over it) is what the container sees."""
    for name, content in files.items():
        path = Path(directory) / name
        with open(path, "a+") as f:
            f.seek(0)
            f.truncate()
            f.write(content)


# -- leaks ------------------------------------------------------------------------------------------------


@dataclass
class PruneReport:
    detached: list[str] = field(default_factory=list)  # namespace/container of dead attachments
    addresses: list[str] = field(default_factory=list)  # network/address released without an attachment
    ports: list[str] = field(default_factory=list)  # published ports removed from nft or the store
    veths: list[str] = field(default_factory=list)  # veth devices deleted
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return asdict(self)


def prune(client: Client) -> PruneReport:
    """Release what belongs to no live task: attachments whose netns is gone, addresses and ports without
    an attachment, nft elements with no record, and this root's veths with no attachment."""
    import time

    from ctrpy.runtime.network import bridge, nft

    report = PruneReport()
    netstore: NetworkStore = network_store(client)
    now = time.time()
    for att in netstore.attachments():
        if att.netns == "":
            if now - timefmt.parse(att.created_at) < RESERVATION_GRACE_SECONDS:
                continue
        elif _alive(att):
            continue
        other = client.with_namespace(att.namespace) if att.namespace != client.namespace else client
        try:
            detach(other, att.container_id)
            report.detached.append(f"{att.namespace}/{att.container_id}")
        except errors.CtrpyError as exc:
            report.errors.append(str(exc))
    ips, ports = netstore.orphans()
    netstore.delete_orphans(ips, ports)
    report.addresses += [f"{i['network']}/{i['address']}" for i in ips]
    table = _table(client)
    known = {(p["protocol"], p["host_ip"], p["host_port"]) for p in netstore.ports()}
    stray = [r for r in nft.list_rules(table) if (r.protocol, r.host_ip, r.host_port) not in known]
    nft.remove_rules(table, stray)
    report.ports += [f"{r.host_ip}:{r.host_port}/{r.protocol}" for r in stray]
    if stray or ports or report.detached:
        _drop_table_if_unused(client)
    report.ports += [f"{p['host_ip']}:{p['host_port']}/{p['protocol']} (record)" for p in ports]
    live = {a.host_ifname for a in netstore.attachments() if a.host_ifname}
    bridges = sorted({n.bridge for n in netstore.list() if n.bridge})
    if bridges:
        from ctrpy.runtime.network import netlink

        for veth, _bridge in bridge.veths_on(bridges, "vc" + root_tag(client)):
            if veth not in live:
                netlink.delete_link(veth)
                report.veths.append(veth)
    return report


# -- management (network create/ls/inspect/rm) -------------------------------------------------------------

AUTO_SUBNETS = tuple(f"10.4.{i}.0/24" for i in range(1, 255))


def _host_routes() -> list[Any]:
    """IPv4 destinations routed on this host (from /proc/net/route), to refuse overlapping subnets."""
    import ipaddress

    out: list[Any] = []
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest = socket.inet_ntoa(int(fields[1], 16).to_bytes(4, "little"))
        mask = socket.inet_ntoa(int(fields[7], 16).to_bytes(4, "little"))
        net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
        if net.prefixlen > 0:
            out.append((fields[0], net))
    return out


def create_network(client: Client, name: str, *, subnet: str | None = None, gateway: str | None = None,
                   bridge_name: str | None = None, mtu: int | None = None,
                   labels: dict[str, str] | None = None) -> Network:
    """`network create`: record a bridge network and set up its bridge now (like docker/nerdctl)."""
    import ipaddress

    from ctrpy.runtime.network import bridge
    from ctrpy.runtime.network.store import Network, parse_subnet, validate_name

    validate_name(name)
    if name == "bridge":
        raise errors.AlreadyExists("network 'bridge' is the predefined default network (see [network] in "
                                   "config.toml)")
    if name in cni_conflists(client):
        raise errors.AlreadyExists(f"network {name!r} already exists as a CNI configuration")
    netstore = network_store(client)
    if netstore.find(name) is not None:
        raise errors.AlreadyExists(f"network {name!r} already exists")
    if bridge_name is None:
        bridge_name = "br-" + sha256(name.encode()).hexdigest()[:12]
    if not re.match(r"^[A-Za-z0-9_.-]{1,15}$", bridge_name):
        raise errors.InvalidArgument(f"invalid bridge name {bridge_name!r}: 1-15 letters, digits, '.', '_', '-'")
    if bridge_name == (client.config.get("network.bridge") or "ctrpy0"):
        raise errors.AlreadyExists(f"bridge {bridge_name} belongs to the default network")
    routes = [(dev, net) for dev, net in _host_routes() if dev != bridge_name]
    taken = [ipaddress.IPv4Network(n.subnet) for n in netstore.list() if n.subnet]
    taken.append(ipaddress.IPv4Network(default_network(client).subnet or ""))
    if subnet is None:
        if gateway is not None:
            raise errors.InvalidArgument("--gateway needs --subnet")
        for candidate in AUTO_SUBNETS:
            cand = ipaddress.IPv4Network(candidate)
            if not any(cand.overlaps(t) for t in taken) and not any(cand.overlaps(n) for _, n in routes):
                subnet = candidate
                break
        else:
            raise errors.Unavailable("no free subnet left in 10.4.0.0/16: pass --subnet")
    subnet, gw = parse_subnet(subnet, gateway)
    default = default_network(client)
    if ipaddress.IPv4Network(subnet).overlaps(ipaddress.IPv4Network(default.subnet or "")):
        raise errors.AlreadyExists(f"subnet {subnet} overlaps network 'bridge' ({default.subnet})")
    for dev, routed in routes:
        if routed.overlaps(ipaddress.IPv4Network(subnet)):
            raise errors.AlreadyExists(f"subnet {subnet} overlaps {routed} routed on {dev}")
    if mtu is not None and not 68 <= mtu <= 65535:
        raise errors.InvalidArgument(f"invalid MTU {mtu}: must be 68-65535")
    net = Network(name, "bridge", bridge_name, subnet, gw,
                  {"mtu": int(mtu or client.config.get("network.mtu", 1500))}, dict(labels or {}))
    created = netstore.create(net)
    try:
        bridge.ensure_ready(client.root, client.state, created)
    except BaseException:
        netstore.delete(name)
        try:
            bridge.teardown(client.root, client.state, created)
        except errors.CtrpyError:
            pass
        raise
    return created


def list_networks(client: Client) -> list[dict[str, Any]]:
    """All networks: the default one (even before first use), created ones, CNI conflists."""
    netstore = network_store(client)
    stored = {n.name: n for n in netstore.list()}
    stored.setdefault("bridge", default_network(client))
    out = [dict(n.to_dict(), source="builtin") for n in sorted(stored.values(), key=lambda n: n.name)]
    for name, conflist in sorted(cni_conflists(client).items()):
        if name in stored:
            continue
        out.append({"name": name, "driver": "cni", "bridge": None, "subnet": None, "gateway": None,
                    "options": {"plugins": [p.get("type") for p in conflist.plugins],
                                "cniVersion": conflist.cni_version}, "labels": {}, "created_at": "",
                    "source": conflist.path})
    return out


def inspect_network(client: Client, name: str) -> dict[str, Any]:
    """One network with its live bridge state, attached containers and published ports."""
    mode, target = resolve_existing(client, name)
    netstore = network_store(client)
    if mode == "cni":
        data: dict[str, Any] = {"name": target.name, "driver": "cni", "cniVersion": target.cni_version,
                                "source": target.path, "plugins": target.plugins}
    else:
        from ctrpy.runtime.network import bridge

        data = target.to_dict()
        data["link"] = bridge.link_info(target.bridge) if target.bridge else None
    data["containers"] = [{"namespace": a.namespace, "id": a.container_id, "address": a.address,
                           "interface": a.ifname, "host_interface": a.host_ifname,
                           "state": "reserved" if not a.netns else ("running" if _alive(a) else "stale")}
                          for a in netstore.attachments(network=target.name)]
    data["ports"] = [f"{p['host_ip']}:{p['host_port']}->{p['container_ip']}:{p['container_port']}/{p['protocol']}"
                     for p in netstore.ports() if p["network"] == target.name]
    return data


def resolve_existing(client: Client, name: str) -> tuple[str, Any]:
    """Like resolve() but without creating the default network's record."""
    if name in ("host", "none"):
        raise errors.InvalidArgument(f"{name!r} is a network mode, not a network")
    found = network_store(client).find(name)
    if found is not None:
        return "bridge", found
    if name == "bridge":
        return "bridge", default_network(client)
    conflists = cni_conflists(client)
    if name in conflists:
        return "cni", conflists[name]
    raise errors.NotFound(f"network {name!r} not found")


def remove_network(client: Client, name: str) -> None:
    """`network rm`: refused for the default network, for CNI conflists and while containers are attached."""
    from ctrpy.runtime.network import bridge

    if name == "bridge":
        raise errors.FailedPrecondition("network 'bridge' is the predefined default network and cannot be removed")
    mode, target = resolve_existing(client, name)
    if mode == "cni":
        raise errors.FailedPrecondition(
            f"network {name!r} is a CNI configuration ({target.path}): remove the file instead")
    removed = network_store(client).delete(name)
    bridge.teardown(client.root, client.state, removed)
