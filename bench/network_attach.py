"""Per-task network set-up, three ways, side by side (issue 6: choose the mechanism by measurement).

    .venv/bin/python bench/network_attach.py [ROUNDS]

Each round makes a fresh network namespace (`ip netns add`, not timed) and times, for the same work (veth
pair on a bridge, the peer as eth0 in the netns with address, MTU, default route, lo up, hairpin on the
bridge port):
  netlink   ctrpy.runtime.network.netlink (raw NETLINK_ROUTE socket from Python; what ctrpy uses)
  ip-batch  one `ip -batch -` on the host + one `nsenter --net=... ip -batch -` inside the netns
  pyroute2  pyroute2's IPRoute/NetNS (import cost reported separately: it is paid once per CLI process)
plus `attach()` as a whole (address reservation in the metadata store + netlink), `detach()` after the
netns is gone (as at task delete) and an explicit `ip link del` of a veth whose netns is alive. Only test namespaces and a
test bridge (10.231.250.0/24) are touched; everything is removed at the end.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

BRIDGE = "ctpbench0"
SUBNET = "10.231.250"


def sh(*argv: str, stdin: str | None = None) -> None:
    subprocess.run(list(argv), input=stdin, text=True, check=True, capture_output=True)


def netns(name: str) -> str:
    sh("ip", "netns", "add", name)
    return f"/run/netns/{name}"


def way_netlink(path: str, veth: str, address: str) -> None:
    from ctrpy.runtime.network import netlink

    netlink.setup_task_interface(path, veth, BRIDGE, address, 24, f"{SUBNET}.1", 1500)


def way_ip_batch(path: str, veth: str, address: str) -> None:
    sh("ip", "-batch", "-", stdin=(
        f"link add {veth} mtu 1500 master {BRIDGE} up type veth peer name eth0 mtu 1500 netns {path}\n"
        f"link set dev {veth} type bridge_slave hairpin on\n"))
    sh("nsenter", f"--net={path}", "ip", "-batch", "-", stdin=(
        "link set lo up\n"
        f"addr add {address}/24 dev eth0\n"
        "link set eth0 up\n"
        f"route add default via {SUBNET}.1 dev eth0\n"))


def way_pyroute2(path: str, veth: str, address: str) -> None:
    from pyroute2 import IPRoute, NetNS

    with IPRoute() as ipr:
        master = ipr.link_lookup(ifname=BRIDGE)[0]
        ipr.link("add", ifname=veth, kind="veth", peer={"ifname": "eth0", "net_ns_fd": path}, mtu=1500)
        index = ipr.link_lookup(ifname=veth)[0]
        ipr.link("set", index=index, master=master, state="up")
    with open(f"/sys/class/net/{veth}/brport/hairpin_mode", "w") as f:
        f.write("1")
    with NetNS(path) as ns:
        ns.link("set", index=1, state="up")
        eth0 = ns.link_lookup(ifname="eth0")[0]
        ns.addr("add", index=eth0, address=address, prefixlen=24)
        ns.link("set", index=eth0, state="up")
        ns.route("add", dst="default", gateway=f"{SUBNET}.1")


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    t0 = time.perf_counter()
    import pyroute2

    del pyroute2  # imported only to time it
    pyroute2_import = (time.perf_counter() - t0) * 1000
    import tempfile

    from ctrpy.runtime import network as net
    from ctrpy.runtime.client import Client
    from ctrpy.runtime.config import default_config

    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "addr", "add", f"{SUBNET}.1/24", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")
    made: list[str] = []
    results: dict[str, list[float]] = {"netlink": [], "ip-batch": [], "pyroute2": [], "attach()": [],
                                       "detach()": [], "veth delete": []}
    tmp = tempfile.mkdtemp(prefix="ctrpy-netbench-")
    config = default_config()
    config.data["network"].update({"bridge": BRIDGE, "subnet": f"{SUBNET}.0/24"})
    client = Client(f"{tmp}/root", f"{tmp}/state", "default", config)
    try:
        for i in range(rounds + 1):  # round 0 warms caches and the bridge set-up; not counted
            for j, (name, way) in enumerate((("netlink", way_netlink), ("ip-batch", way_ip_batch),
                                             ("pyroute2", way_pyroute2))):
                ns = f"ctpbn{i}x{j}"
                path = netns(ns)
                made.append(ns)
                veth = f"ctpbv{i}x{j}"
                t = time.perf_counter()
                way(path, veth, f"{SUBNET}.{10 + j}")
                if i:
                    results[name].append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                sh("ip", "link", "del", veth)
                if i:
                    results["veth delete"].append((time.perf_counter() - t) * 1000)
            ns = f"ctpbn{i}xa"
            path = netns(ns)
            made.append(ns)
            t = time.perf_counter()
            net.attach(client, f"c{i}", path, net.NetworkRequest())
            if i:
                results["attach()"].append((time.perf_counter() - t) * 1000)
            # As after a task's exit: the netns is gone (the kernel takes the veth pair with it).
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            made.remove(ns)
            t = time.perf_counter()
            net.detach(client, f"c{i}")
            if i:
                results["detach()"].append((time.perf_counter() - t) * 1000)
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        from ctrpy.runtime.network import nft

        nft.delete_table(nft.table_name(f"{tmp}/root"))
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'mechanism':<12} {'median ms':>10} {'min ms':>8} {'max ms':>8}   ({rounds} rounds)")
    for name, values in results.items():
        print(f"{name:<12} {statistics.median(values):>10.2f} {min(values):>8.2f} {max(values):>8.2f}")
    print(f"{'import pyroute2':<12} {pyroute2_import:>8.1f} ms (once per process)")


if __name__ == "__main__":
    main()
