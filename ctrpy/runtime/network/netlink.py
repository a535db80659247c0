"""A minimal rtnetlink client over a raw socket: the per-task network path (veth, address, route, lo up).

Why not pyroute2 here: importing it costs ~350 ms, more than a whole `run`. Why not `ip -batch`: it needs
two process spawns (one on the host, one under nsenter for the task's netns), ~6 ms; these few messages
over one NETLINK_ROUTE socket cost well under 1 ms (see BENCHMARKS.md, "per-task network set-up").
Only `socket`, `struct` and `ctypes` (for setns(2), which Python 3.11's os module lacks) are imported.

Every request asks for an ACK; an NLMSG_ERROR with a negative errno becomes a CtrpyError through
errors.from_errno, so the errno survives (EEXIST -> AlreadyExists, ENODEV -> NotFound...).
"""

from __future__ import annotations

import errno as _errno
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager

from ctrpy.runtime import errors

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_GETADDR = 22
RTM_NEWROUTE = 24

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
NLA_F_NESTED = 0x8000

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
RTA_GATEWAY = 5
RTA_OIF = 4

IFF_UP = 0x1
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1
CLONE_NEWNET = 0x40000000

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute (header + payload, padded to 4 bytes)."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (_align(length) - length)


def attr_str(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def nested(kind: int, *parts: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(parts))


def ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = socket.AF_UNSPEC) -> bytes:
    return _IFINFOMSG.pack(family, 0, index, flags, change)


class Netlink:
    """One NETLINK_ROUTE socket, bound to the network namespace it was created in."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, msg_type: int, flags: int, body: bytes, what: str) -> list[bytes]:
        """Send one request with NLM_F_ACK; return the payloads of any non-error replies before the ACK."""
        self.seq += 1
        seq = self.seq
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags | NLM_F_REQUEST | NLM_F_ACK, seq, 0)
        self.sock.send(header + body)
        replies: list[bytes] = []
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, rtype, _flags, rseq, _pid = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    raise errors.Internal(f"{what}: malformed netlink reply")
                payload = data[offset + _NLMSGHDR.size: offset + length]
                offset += _align(length)
                if rseq != seq:
                    continue
                if rtype == NLMSG_ERROR:
                    code = struct.unpack_from("=i", payload)[0]
                    if code == 0:
                        return replies
                    raise errors.from_errno(-code, what)
                if rtype == NLMSG_DONE:
                    return replies
                replies.append(payload)

    # -- links ---------------------------------------------------------------------------------------

    def link_index(self, name: str) -> int:
        """The ifindex of `name` in this socket's namespace (NotFound if absent)."""
        replies = self.request(RTM_GETLINK, 0, ifinfo() + attr_str(IFLA_IFNAME, name), f"cannot find link {name}")
        if not replies:
            raise errors.NotFound(f"link {name} not found")
        return int(_IFINFOMSG.unpack_from(replies[0])[2])

    def set_up(self, index: int, mtu: int | None = None) -> None:
        body = ifinfo(index, IFF_UP, IFF_UP) + (attr_u32(IFLA_MTU, mtu) if mtu else b"")
        self.request(RTM_NEWLINK, 0, body, f"cannot set link {index} up")

    def delete_link(self, name: str) -> bool:
        """Delete a link by name; False if it did not exist."""
        try:
            self.request(RTM_DELLINK, 0, ifinfo() + attr_str(IFLA_IFNAME, name), f"cannot delete link {name}")
        except (errors.NotFound, errors.InvalidArgument) as exc:
            # ENODEV maps to Internal, ENOENT/EINVAL depend on the kernel; all mean "nothing to delete".
            if exc.errno in (_errno.ENODEV, _errno.ENOENT):
                return False
            raise
        except errors.Internal as exc:
            if exc.errno == _errno.ENODEV:
                return False
            raise
        return True

    def add_veth(self, host_name: str, peer_name: str, peer_netns_fd: int, *, mtu: int, master: int) -> None:
        """Create a veth pair: `host_name` here (enslaved to `master`, up), `peer_name` in the given netns.

        One RTM_NEWLINK does it all: the peer is created directly in the task's namespace with its final
        name, so no rename or move step is needed.
        """
        peer = ifinfo() + attr_str(IFLA_IFNAME, peer_name) + attr_u32(IFLA_MTU, mtu) + attr_u32(
            IFLA_NET_NS_FD, peer_netns_fd
        )
        linkinfo = nested(IFLA_LINKINFO, attr_str(IFLA_INFO_KIND, "veth"),
                          nested(IFLA_INFO_DATA, attr(VETH_INFO_PEER | NLA_F_NESTED, peer)))
        body = ifinfo(0, IFF_UP, IFF_UP) + attr_str(IFLA_IFNAME, host_name) + attr_u32(IFLA_MTU, mtu) + attr_u32(
            IFLA_MASTER, master) + linkinfo
        self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"cannot create veth {host_name}")

    # -- addresses and routes ------------------------------------------------------------------------

    def addresses(self, index: int) -> list[tuple[str, int]]:
        """IPv4 (address, prefixlen) pairs of link `index`."""
        out = []
        for payload in self.request(RTM_GETADDR, NLM_F_DUMP, _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0),
                                    "cannot list addresses"):
            family, prefixlen, _flags, _scope, ifindex = _IFADDRMSG.unpack_from(payload)
            if ifindex != index or family != socket.AF_INET:
                continue
            offset = _IFADDRMSG.size
            while offset + 4 <= len(payload):
                length, kind = struct.unpack_from("=HH", payload, offset)
                if length < 4:
                    break
                if kind == IFA_LOCAL:
                    out.append((socket.inet_ntoa(payload[offset + 4: offset + 8]), prefixlen))
                offset += _align(length)
        return out

    def add_address(self, index: int, address: str, prefixlen: int) -> None:
        packed = socket.inet_aton(address)
        host = struct.unpack("!I", packed)[0]
        mask = (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF
        broadcast = struct.pack("!I", (host & mask) | (~mask & 0xFFFFFFFF))
        body = _IFADDRMSG.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index) + attr(
            IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed) + attr(IFA_BROADCAST, broadcast)
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, f"cannot add address {address}/{prefixlen}")

    def add_default_route(self, gateway: str, index: int) -> None:
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE,
                           RTN_UNICAST, 0) + attr(RTA_GATEWAY, socket.inet_aton(gateway)) + attr_u32(RTA_OIF, index)
        self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body, f"cannot add default route via {gateway}")


_libc = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        import ctypes

        err = ctypes.get_errno()
        raise errors.from_errno(err, "setns")


@contextmanager
def in_netns(netns_path: str) -> Iterator[Netlink]:
    """A Netlink socket inside the network namespace at `netns_path` (for example /proc/PID/ns/net).

    The calling thread enters the namespace only long enough to create the socket: a netlink socket stays
    bound to the namespace it was created in, so everything after runs back in the original namespace.
    """
    try:
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise errors.from_oserror(exc, f"cannot open network namespace {netns_path}") from exc
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target)
        try:
            nl = Netlink()
        finally:
            try:
                _setns(own)
            except errors.CtrpyError as exc:  # pragma: no cover - would leave this thread in the task's netns
                raise errors.Internal(f"cannot return to the original network namespace: {exc}") from exc
    finally:
        os.close(target)
        os.close(own)
    try:
        yield nl
    finally:
        nl.close()


def setup_task_interface(netns_path: str, host_name: str, bridge: str, address: str, prefixlen: int,
                         gateway: str | None, mtu: int, ifname: str = "eth0") -> None:
    """The whole per-task path: veth pair on `bridge`, `ifname` in the task's netns with address, route, lo up."""
    netns_fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with Netlink() as host:
            master = host.link_index(bridge)
            try:
                host.add_veth(host_name, ifname, netns_fd, mtu=mtu, master=master)
            except errors.AlreadyExists:
                # A veth left by a crashed task with the same id: it belongs to no live task, replace it.
                host.delete_link(host_name)
                host.add_veth(host_name, ifname, netns_fd, mtu=mtu, master=master)
    finally:
        os.close(netns_fd)
    _set_hairpin(host_name)
    with in_netns(netns_path) as inner:
        inner.set_up(1)  # lo is always ifindex 1 in a fresh network namespace
        index = inner.link_index(ifname)
        inner.add_address(index, address, prefixlen)
        inner.set_up(index)
        if gateway:
            inner.add_default_route(gateway, index)


def _set_hairpin(host_name: str) -> None:
    # A container reaching its own published port comes back through the same bridge port: with
    # br_netfilter the DNATed frame is bridged, not routed, so the port must allow hairpin forwarding.
    try:
        with open(f"/sys/class/net/{host_name}/brport/hairpin_mode", "w") as f:
            f.write("1")
    except OSError as exc:
        raise errors.from_oserror(exc, f"cannot enable hairpin mode on {host_name}") from exc


def loopback_up(netns_path: str) -> None:
    """Bring lo up in a task's netns (for --network none)."""
    with in_netns(netns_path) as inner:
        inner.set_up(1)


def delete_link(name: str) -> bool:
    with Netlink() as nl:
        return nl.delete_link(name)
