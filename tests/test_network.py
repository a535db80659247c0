"""Built-in networking on real bridges, veths and nftables, with network namespaces from `ip netns add`
standing in for tasks (the `run` path is tested in test_network_run.py).

Traffic goes only to 127.0.0.1 and to this test's own namespaces (10.231.X.0/24).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ctrpy.runtime import errors
from ctrpy.runtime import network as net
from support.netenv import NetEnv, curl, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (bridges, veths, netns)")


@pytest.fixture
def env(dirs: Any) -> Any:
    e = NetEnv(dirs)
    try:
        yield e
    finally:
        e.cleanup()


def nft_elements(table: str) -> str:
    return run("nft", "list", "table", "ip", table, check=False).stdout


# -- flag parsing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("18080:80", net.PortMapping(18080, 80, "tcp", "0.0.0.0")),
    ("127.0.0.1:18080:80/udp", net.PortMapping(18080, 80, "udp", "127.0.0.1")),
    ("80", net.PortMapping(0, 80, "tcp", "0.0.0.0")),
    ("8080:80/TCP", net.PortMapping(8080, 80, "tcp", "0.0.0.0")),
])
def test_parse_publish(text: str, expected: net.PortMapping) -> None:
    assert net.parse_publish(text) == expected


@pytest.mark.parametrize("text", ["", "a:80", "70000:80", "80:0", "1.2.3:80:80", "80:80/sctp", "300.1.1.1:80:80"])
def test_parse_publish_rejects(text: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        net.parse_publish(text)


def test_parse_add_host() -> None:
    assert net.parse_add_host("db:10.1.2.3") == ("db", "10.1.2.3")
    assert net.parse_add_host("gw:host-gateway") == ("gw", "host-gateway")
    assert net.parse_add_host("v6:::1") == ("v6", "::1")
    for bad in ("db", "db:notanip", ":1.2.3.4", "bad_name!:1.2.3.4"):
        with pytest.raises(errors.InvalidArgument):
            net.parse_add_host(bad)


def test_request_roundtrips_through_extensions() -> None:
    req = net.request_from_options(network="mynet", ip="10.231.0.9", publish=("127.0.0.1:8080:80/udp",),
                                   add_host=("a:1.2.3.4",), dns=("9.9.9.9",), dns_search=("example.test",))
    again = net.NetworkRequest.from_dict(json.loads(json.dumps(req.to_dict())))
    assert again == req
    with pytest.raises(errors.InvalidArgument, match="cannot be used with --network host"):
        net.request_from_options(network="host", publish=("80:80",))
    with pytest.raises(errors.InvalidArgument, match="conflicts"):
        net.request_from_options(network="none", net_host=True)


def test_etc_files_content(tmp_path: Path) -> None:
    from ctrpy.runtime.network import etc

    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.53\nnameserver 10.9.8.7\nsearch corp.test\noptions ndots:2\n")
    text = etc.resolv_conf(host_network=False, host_resolv=str(resolv))
    assert "127.0.0.53" not in text and "nameserver 10.9.8.7" in text and "search corp.test" in text
    assert "127.0.0.53" in etc.resolv_conf(host_network=True, host_resolv=str(resolv))
    text = etc.resolv_conf(host_network=False, dns=("1.1.1.1",), dns_search=("a.test", "b.test"),
                           host_resolv=str(resolv))
    assert "nameserver 10.9.8.7" not in text and "nameserver 1.1.1.1" in text
    assert "search a.test b.test" in text and "corp.test" not in text and "options ndots:2" in text
    resolv.write_text("nameserver 127.0.0.53\nsearch corp.test\n")
    assert etc.resolv_conf(host_network=False, host_resolv=str(resolv)).splitlines() == [
        "search corp.test", "nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    hosts = etc.hosts(hostname="web", address="10.4.0.7", add_hosts=(("db", "10.0.0.5"), ("gw", "host-gateway")),
                      gateway="10.4.0.1")
    assert "127.0.0.1\tlocalhost" in hosts and "10.4.0.7\tweb" in hosts
    assert "10.0.0.5\tdb" in hosts and "10.4.0.1\tgw" in hosts


# -- network create / ls / inspect / rm (CLI) ------------------------------------------------------------


def test_network_cli_lifecycle(env: NetEnv, ctrpy: Any) -> None:
    bridge = f"ctpc{env.tag}"
    env.bridges.append(bridge)
    # The default network's subnet is env.subnet: a user network must not overlap it.
    r = ctrpy("network", "create", "web", "--subnet", env.subnet, "--bridge", bridge)
    assert r.returncode == 5 and "overlap" in r.stderr, r.stderr
    other = env.subnet.replace("10.231.", "10.232.")
    r = ctrpy("network", "create", "web", "--subnet", other, "--bridge", bridge, "--label", "team=a")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "web"
    gateway = other.replace(".0/24", ".1")
    addr = run("ip", "-4", "-o", "addr", "show", "dev", bridge).stdout
    assert f"{gateway}/24" in addr
    assert Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet").read_text().strip() == "1"

    r = ctrpy("network", "ls")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split()[:5] == ["NAME", "DRIVER", "BRIDGE", "SUBNET", "GATEWAY"]
    assert any(line.split()[:5] == ["web", "bridge", bridge, other, gateway] for line in lines)
    assert any(line.split()[:4] == ["bridge", "bridge", env.bridge, env.subnet] for line in lines)
    assert ctrpy("network", "ls", "-q").stdout.split() == ["bridge", "web"]

    r = ctrpy("network", "inspect", "web")
    data = json.loads(r.stdout)[0]
    assert data["subnet"] == other and data["labels"] == {"team": "a"} and data["link"]["name"] == bridge
    assert data["containers"] == []

    r = ctrpy("network", "create", "web", "--subnet", "10.233.0.0/24")
    assert r.returncode == 5 and r.stderr.strip() == "ctrpy: network 'web' already exists"
    r = ctrpy("network", "create", "bad", "--subnet", "10.0.0.1/33")
    assert r.returncode == 3 and r.stderr.startswith("ctrpy: invalid subnet") and len(r.stderr.splitlines()) == 1
    r = ctrpy("network", "create", "host")
    assert r.returncode == 3 and "reserved" in r.stderr
    r = ctrpy("network", "create", "gw", "--subnet", "10.234.0.0/24", "--gateway", "10.235.0.1")
    assert r.returncode == 3 and "not a host address" in r.stderr
    assert ctrpy("network", "ls", "-q").stdout.split() == ["bridge", "web"]  # nothing half-written

    r = ctrpy("network", "rm", "bridge")
    assert r.returncode == 6 and "default network" in r.stderr
    r = ctrpy("network", "rm", "nosuch")
    assert r.returncode == 4 and r.stderr.strip() == "ctrpy: network 'nosuch' not found"
    r = ctrpy("network", "rm", "web")
    assert r.returncode == 0 and r.stdout.strip() == "web"
    assert not Path(f"/sys/class/net/{bridge}").exists()
    assert ctrpy("network", "ls", "-q").stdout.split() == ["bridge"]


def test_network_rm_refused_while_in_use(env: NetEnv, ctrpy: Any) -> None:
    other = env.subnet.replace("10.231.", "10.232.")
    bridge = f"ctpc{env.tag}"
    env.bridges.append(bridge)
    assert ctrpy("network", "create", "busy", "--subnet", other, "--bridge", bridge).returncode == 0
    ns = env.add_netns()
    client = env.client()
    res = net.attach(client, "c1", env.path(ns), net.NetworkRequest(network="busy"))
    assert res.address == other.replace(".0/24", ".2")
    r = ctrpy("network", "rm", "busy")
    assert r.returncode == 6 and r.stderr.strip() == "ctrpy: network 'busy' is in use by container(s) default/c1"
    inspect = json.loads(ctrpy("network", "inspect", "busy").stdout)[0]
    assert inspect["containers"][0]["id"] == "c1" and inspect["containers"][0]["state"] == "running"
    net.detach(client, "c1")
    assert ctrpy("network", "rm", "busy").returncode == 0


# -- attach / detach on namespaces made by `ip netns add` ------------------------------------------------


def test_two_namespaces_reach_each_other(env: NetEnv) -> None:
    client = env.client()
    a, b = env.add_netns(), env.add_netns()
    ra = net.attach(client, "a", env.path(a), net.NetworkRequest())
    rb = net.attach(client, "b", env.path(b), net.NetworkRequest())
    assert (ra.mode, ra.network, ra.interface, ra.gateway) == ("bridge", "bridge", "eth0", env.gateway)
    assert ra.address != rb.address
    # eth0 carries the address and MTU, the default route goes via the bridge, lo is up.
    addr = env.exec_in(a, "ip", "-4", "-o", "addr").stdout
    assert f"inet {ra.address}/24" in addr and "lo" in addr
    assert env.exec_in(a, "ip", "route", "show", "default").stdout.split()[:5] == [
        "default", "via", env.gateway, "dev", "eth0"]
    assert "mtu 1500" in env.exec_in(a, "ip", "link", "show", "eth0").stdout
    assert "UP" in env.exec_in(a, "ip", "link", "show", "lo").stdout.split("<")[1].split(">")[0]
    env.httpd(a, "hello from a\n")
    assert curl(f"http://{ra.address}/", netns=b).stdout == "hello from a\n"
    ping = env.exec_in(b, "busybox", "ping", "-c", "1", "-W", "2", ra.address)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    net.detach(client, "a")
    net.detach(client, "b")
    assert env.links() == [env.bridge]
    assert net.network_store(client).allocations() == []


def test_published_port_from_host_and_containers(env: NetEnv) -> None:
    client = env.client()
    a, b = env.add_netns(), env.add_netns()
    req = net.request_from_options(publish=("18080:80",))
    ra = net.attach(client, "web", env.path(a), req)
    assert [str(p) for p in ra.ports] == ["0.0.0.0:18080->80/tcp"]
    net.attach(client, "cli", env.path(b), net.NetworkRequest())
    env.httpd(a, "published\n")
    assert curl("http://127.0.0.1:18080/").stdout == "published\n"  # OUTPUT DNAT + route_localnet
    assert curl(f"http://{env.gateway}:18080/").stdout == "published\n"
    assert curl(f"http://{env.gateway}:18080/", netns=b).stdout == "published\n"  # another container
    assert curl(f"http://{env.gateway}:18080/", netns=a).stdout == "published\n"  # hairpin

    net.detach(client, "web")
    assert "18080" not in nft_elements(env.table())
    assert curl("http://127.0.0.1:18080/", timeout=2).returncode != 0
    assert net.network_store(client).ports() == []
    net.detach(client, "cli")
    assert env.links() == [env.bridge]


def test_published_port_on_loopback_only(env: NetEnv) -> None:
    client = env.client()
    a = env.add_netns()
    net.attach(client, "web", env.path(a), net.request_from_options(publish=("127.0.0.1:18081:8080",)))
    env.httpd(a, "lo only\n", port=8080)
    assert curl("http://127.0.0.1:18081/").stdout == "lo only\n"
    assert curl(f"http://{env.gateway}:18081/", timeout=2).returncode != 0
    net.detach(client, "web")


def test_port_already_published_is_refused(env: NetEnv, ctrpy: Any) -> None:
    client = env.client()
    a, b = env.add_netns(), env.add_netns()
    net.attach(client, "first", env.path(a), net.request_from_options(publish=("18082:80",)))
    with pytest.raises(errors.AlreadyExists, match=r"port 0.0.0.0:18082/tcp is already published by container "
                                                    r"default/first"):
        net.attach(client, "second", env.path(b), net.request_from_options(publish=("127.0.0.1:18082:80",)))
    # The refused attach left nothing: no address, no veth, b's netns has no eth0.
    assert [a.container_id for a in net.network_store(client).attachments()] == ["first"]
    assert "eth0" not in env.exec_in(b, "ip", "link").stdout
    # udp on the same number is a different port.
    net.attach(client, "second", env.path(b), net.request_from_options(publish=("18082:53/udp",)))
    net.detach(client, "first")
    assert "udp . 18082" in nft_elements(env.table()) and "tcp . 18082" not in nft_elements(env.table())
    net.detach(client, "second")
    # The root's table lives only while it publishes something.
    assert run("nft", "list", "table", "ip", env.table(), check=False).returncode != 0


def test_port_used_by_a_host_process_is_refused(env: NetEnv) -> None:
    import socket

    client = env.client()
    a = env.add_netns()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(errors.AlreadyExists, match=f"cannot publish 0.0.0.0:{port}/tcp: address already in use"):
            net.attach(client, "c", env.path(a), net.request_from_options(publish=(f"{port}:80",)))
    assert net.network_store(client).allocations() == []


def test_static_ip_and_conflicts(env: NetEnv) -> None:
    client = env.client()
    a, b = env.add_netns(), env.add_netns()
    wanted = env.subnet.replace(".0/24", ".77")
    res = net.attach(client, "s1", env.path(a), net.request_from_options(ip=wanted))
    assert res.address == wanted
    assert f"inet {wanted}/24" in env.exec_in(a, "ip", "-4", "-o", "addr", "show", "eth0").stdout
    with pytest.raises(errors.AlreadyExists, match=f"address {wanted} is already in use"):
        net.attach(client, "s2", env.path(b), net.request_from_options(ip=wanted))
    with pytest.raises(errors.InvalidArgument, match="not a free host address"):
        net.attach(client, "s2", env.path(b), net.request_from_options(ip=env.gateway))
    with pytest.raises(errors.InvalidArgument):
        net.attach(client, "s2", env.path(b), net.request_from_options(ip="192.0.2.5"))
    net.detach(client, "s1")


def test_network_none_and_host(env: NetEnv) -> None:
    client = env.client()
    a = env.add_netns()
    res = net.attach(client, "n", env.path(a), net.request_from_options(network="none"))
    assert res.mode == "none"
    links = env.exec_in(a, "ip", "-o", "link").stdout.splitlines()
    assert len(links) == 1 and links[0].split(":")[1].strip() == "lo" and "UP" in links[0]
    assert net.attach(client, "h", "/proc/self/ns/net", net.request_from_options(network="host")).mode == "host"
    assert net.network_store(client).attachments() == []
    with pytest.raises(errors.NotFound, match="network 'nope' not found"):
        net.attach(client, "x", env.path(a), net.request_from_options(network="nope"))


def test_etc_files_reserve_the_address_attach_uses(env: NetEnv) -> None:
    client = env.client()
    a = env.add_netns()
    req = net.request_from_options(add_host=("gw:host-gateway",))
    files = net.etc_files(client, "named", req, "named")
    line = [ln for ln in files["hosts"].splitlines() if ln.endswith("\tnamed")][0]
    reserved = line.split("\t")[0]
    assert f"{env.gateway}\tgw" in files["hosts"] and files["hostname"] == "named\n"
    res = net.attach(client, "named", env.path(a), req)
    assert res.address == reserved
    net.detach(client, "named")
    # A reservation whose task was never created is released by detach too.
    net.etc_files(client, "never", req, "never")
    net.detach(client, "never")
    assert net.network_store(client).allocations() == []


CONCURRENT = textwrap.dedent("""
    import sys
    from ctrpy.runtime import network as net
    from ctrpy.runtime.client import Client
    from ctrpy.runtime.config import load_config
    root, state, config, cid, netns = sys.argv[1:]
    client = Client(root, state, "default", load_config(config))
    print(net.attach(client, cid, netns, net.NetworkRequest()).address)
""")


@pytest.mark.slow
def test_twenty_concurrent_attaches_get_unique_addresses(env: NetEnv) -> None:
    client = env.client()
    names = [env.add_netns() for _ in range(20)]
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(env.dirs.root), str(env.dirs.state),
                               str(env.config_path), f"c{i}", env.path(ns)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i, ns in enumerate(names)]
    addresses = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        addresses.append(out.strip())
    assert len(set(addresses)) == 20
    for ns, address in zip(names, addresses):
        assert f"inet {address}/24" in env.exec_in(ns, "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert sorted(a["address"] for a in net.network_store(client).allocations()) == sorted(addresses)
    for i in range(20):
        net.detach(client, f"c{i}")
    assert net.network_store(client).allocations() == []
    assert env.links() == [env.bridge]


def test_prune_releases_what_a_crash_left(env: NetEnv, ctrpy: Any) -> None:
    client = env.client()
    a, b = env.add_netns(), env.add_netns()
    dead = net.attach(client, "dead", env.path(a), net.request_from_options(publish=("18083:80",)))
    live = net.attach(client, "live", env.path(b), net.NetworkRequest())
    # The task dies without `delete` (its netns goes away: the kernel removes the veth pair with it).
    run("ip", "netns", "del", a)
    env.netns.remove(a)
    # And a veth of this root that no attachment knows about (a crash between link creation and commit).
    stray = "vc" + net.root_tag(client) + "deadbeef"
    run("ip", "link", "add", stray, "type", "veth", "peer", "name", f"ctpx{env.tag}")
    run("ip", "link", "set", stray, "master", env.bridge)
    r = ctrpy("network", "prune")
    assert r.returncode == 0, r.stderr
    assert "detached default/dead" in r.stdout and f"deleted veth {stray}" in r.stdout
    assert "live" not in r.stdout
    store = net.network_store(client)
    assert [x["address"] for x in store.allocations()] == [live.address]
    assert store.ports() == [] and "18083" not in nft_elements(env.table())
    assert not Path(f"/sys/class/net/{stray}").exists()
    assert dead.address not in [x["address"] for x in store.allocations()]
    # Pruning again finds nothing; the live task keeps working.
    assert ctrpy("network", "prune").stdout == ""
    assert f"inet {live.address}/24" in env.exec_in(b, "ip", "-4", "-o", "addr").stdout
    net.detach(client, "live")


def test_default_network_created_on_first_use(env: NetEnv, ctrpy: Any) -> None:
    assert not Path(f"/sys/class/net/{env.bridge}").exists()
    inspect = json.loads(ctrpy("network", "inspect", "bridge").stdout)[0]
    assert inspect["bridge"] == env.bridge and inspect["link"] is None
    client = env.client()
    a = env.add_netns()
    res = net.attach(client, "first", env.path(a), net.NetworkRequest())
    assert res.address == env.subnet.replace(".0/24", ".2")
    assert Path(f"/sys/class/net/{env.bridge}").exists()
    inspect = json.loads(ctrpy("network", "inspect", "bridge").stdout)[0]
    assert inspect["link"]["ports"] == [res.host_interface]
    assert inspect["containers"][0]["address"] == res.address
    net.detach(client, "first")


UDP_ECHO = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", int(sys.argv[1])))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(b"echo:" + data, peer)
""")


def test_udp_port_and_network_mtu(env: NetEnv, ctrpy: Any) -> None:
    import socket

    other = env.subnet.replace("10.231.", "10.232.")
    bridge = f"ctpc{env.tag}"
    env.bridges.append(bridge)
    assert ctrpy("network", "create", "small", "--subnet", other, "--bridge", bridge, "--mtu", "1400").returncode == 0
    client = env.client()
    a = env.add_netns()
    net.attach(client, "udp", env.path(a), net.request_from_options(network="small", publish=("127.0.0.1:18089:5353/udp",)))
    assert "mtu 1400" in env.exec_in(a, "ip", "link", "show", "eth0").stdout
    env.spawn(a, sys.executable, "-c", UDP_ECHO, "5353")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        reply = None
        for _ in range(20):  # the echo server may still be starting
            s.sendto(b"ping", ("127.0.0.1", 18089))
            try:
                reply = s.recvfrom(2048)[0]
                break
            except socket.timeout:
                continue
    assert reply == b"echo:ping"
    net.detach(client, "udp")
    assert ctrpy("network", "rm", "small").returncode == 0


def test_publish_without_host_port_picks_a_free_one(env: NetEnv) -> None:
    client = env.client()
    a = env.add_netns()
    res = net.attach(client, "any", env.path(a), net.request_from_options(publish=("80",)))
    port = res.ports[0].host_port
    assert port > 0 and [str(p) for p in res.ports] == [f"0.0.0.0:{port}->80/tcp"]
    env.httpd(a, "random port\n")
    assert curl(f"http://127.0.0.1:{port}/").stdout == "random port\n"
    assert net.network_store(client).ports()[0]["host_port"] == port
    net.detach(client, "any")
