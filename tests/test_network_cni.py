"""The CNI path with Debian's containernetworking-plugins (bridge + host-local + portmap + loopback), on
network namespaces from `ip netns add`: the same reachability as the built-in driver, CHECK, DEL on failure
and on detach, nothing left behind.

Host settings: the bridge plugin with isGateway turns on net.ipv4.ip_forward; portmap creates iptables nat
chains (and the empty `ip nat`/`ip6 nat` tables of iptables-nft). The fixture restores all of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ctrpy.runtime import errors
from ctrpy.runtime import network as net
from support.netenv import CNI_BIN, CniEnv, curl, host_guard, nat_rules as _nat_rules

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (bridges, veths, netns)"),
    pytest.mark.skipif(not os.path.exists(f"{CNI_BIN}/bridge"), reason="containernetworking-plugins not installed"),
]


@pytest.fixture
def cenv(dirs: Any) -> Any:
    with host_guard():
        e = CniEnv(dirs)
        try:
            yield e
        finally:
            e.cleanup()


def test_cni_reachability_ports_and_cleanup(cenv: CniEnv, ctrpy: Any) -> None:
    name = cenv.conflist(f"cni{cenv.tag}")
    client = cenv.client()
    a, b = cenv.add_netns(), cenv.add_netns()
    ra = net.attach(client, "a", cenv.path(a), net.request_from_options(network=name, publish=("18086:80",)))
    rb = net.attach(client, "b", cenv.path(b), net.request_from_options(network=name))
    assert ra.mode == "cni" and ra.address and ra.address != rb.address
    assert ra.gateway == cenv.cni_subnet.replace(".0/24", ".1")
    assert f"inet {ra.address}/24" in cenv.exec_in(a, "ip", "-4", "-o", "addr", "show", "eth0").stdout
    lo = cenv.exec_in(a, "ip", "-o", "link", "show", "lo").stdout
    assert "UP" in lo.split("<")[1].split(">")[0]  # the loopback plugin ran
    cenv.httpd(a, "via cni\n")
    assert curl(f"http://{ra.address}/", netns=b).stdout == "via cni\n"
    assert cenv.exec_in(b, "busybox", "ping", "-c", "1", "-W", "2", ra.address).returncode == 0
    assert curl("http://127.0.0.1:18086/").stdout == "via cni\n"  # portmap, from the host's loopback
    assert curl(f"http://{ra.gateway}:18086/", netns=b).stdout == "via cni\n"  # and from another container
    # `network ls` and `inspect` show the conflist and its attachments.
    listed = [line.split()[:2] for line in ctrpy("network", "ls").stdout.splitlines()]
    assert [name, "cni"] in listed
    inspect = json.loads(ctrpy("network", "inspect", name).stdout)[0]
    assert sorted(c["address"] for c in inspect["containers"]) == sorted([ra.address, rb.address])
    # A port already published (on any network of this root) is refused before any plugin runs.
    with pytest.raises(errors.AlreadyExists, match="18086/tcp is already published"):
        net.attach(client, "c", cenv.path(cenv.add_netns()), net.request_from_options(network=name,
                                                                                      publish=("18086:81",)))

    net.detach(client, "a")
    net.detach(client, "b")
    assert curl("http://127.0.0.1:18086/", timeout=2).returncode != 0
    assert not any("CNI-DN-" in r for r in _nat_rules())  # portmap's per-container chain is gone
    assert "eth0" not in cenv.exec_in(a, "ip", "link").stdout  # bridge DEL removed the veth pair
    assert not [n for n in os.listdir("/sys/class/net") if n.startswith("veth")
                and Path(f"/sys/class/net/{n}/master").resolve().name == cenv.cni_bridge]
    leases = [f for f in os.listdir(cenv.ipam_dir / name) if f[0].isdigit()]
    assert leases == [f for f in leases if f.startswith("last_reserved")]  # host-local released both
    assert net.network_store(client).attachments() == []
    assert ctrpy("network", "inspect", name).returncode == 0


def test_cni_check_detects_a_broken_interface(cenv: CniEnv, ctrpy: Any) -> None:
    # portmap 1.1.1's CHECK also probes ip6tables and fails on this iptables-nft host, so CHECK is shown on
    # a list without it.
    name = cenv.conflist(f"chk{cenv.tag}", portmap=False)
    client = cenv.client()
    a = cenv.add_netns()
    res = net.attach(client, "a", cenv.path(a), net.request_from_options(network=name))
    r = ctrpy("network", "check", "a")
    assert r.returncode == 0 and r.stdout.strip() == f"a: {name} ok", r.stderr
    cenv.exec_in(a, "ip", "addr", "flush", "dev", "eth0")
    r = ctrpy("network", "check", "a")
    assert r.returncode == 7
    assert r.stderr.strip() == (f"ctrpy: CNI plugin bridge CHECK failed for network {name!r}: Failed to match addr "
                                f"{res.address}/24 on interface eth0")
    net.detach(client, "a")


def test_cni_add_failure_runs_del_and_leaves_nothing(cenv: CniEnv) -> None:
    # The second plugin fails (a bad portmap conf): the bridge plugin's ADD must be undone by DEL.
    name = f"bad{cenv.tag}"
    good = {"type": "bridge", "bridge": cenv.cni_bridge, "isGateway": True, "ipMasq": False,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": cenv.cni_subnet}]], "dataDir": str(cenv.ipam_dir)}}
    cenv.conflist(name, plugins=[good, {"type": "nosuchplugin"}])
    client = cenv.client()
    a = cenv.add_netns()
    with pytest.raises(errors.NotFound, match="CNI plugin 'nosuchplugin' not found in /usr/lib/cni"):
        net.attach(client, "a", cenv.path(a), net.request_from_options(network=name))
    assert "eth0" not in cenv.exec_in(a, "ip", "link").stdout
    leases = [f for f in os.listdir(cenv.ipam_dir / name) if f[0].isdigit() and not f.startswith("last")]
    assert leases == []
    assert net.network_store(client).attachments() == []


def test_cni_plugin_error_is_one_line(cenv: CniEnv) -> None:
    name = f"err{cenv.tag}"
    cenv.conflist(name, plugins=[{"type": "bridge", "bridge": cenv.cni_bridge,
                                  "ipam": {"type": "host-local", "ranges": [[{"subnet": "not-a-subnet"}]],
                                           "dataDir": str(cenv.ipam_dir)}}])
    client = cenv.client()
    a = cenv.add_netns()
    with pytest.raises(errors.Unavailable) as info:
        net.attach(client, "a", cenv.path(a), net.request_from_options(network=name))
    assert str(info.value).startswith(f"CNI plugin bridge ADD failed for network {name!r}: ")
    assert "\n" not in str(info.value)
    assert net.network_store(client).attachments() == []
