"""Network test environment: unique bridge names and subnets, netns made with `ip netns add`, and a teardown
that removes every bridge, veth, netns, nft table and process the test created, also when it failed.

Traffic in these tests only goes to 127.0.0.1 and to addresses inside the test's own 10.231.X.0/24 subnets,
which belong to network namespaces the test created.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ctrpy.runtime.client import Client
from ctrpy.runtime.config import load_config


def _routed() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    nets = []
    for line in out.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("default", "broadcast", "local", "unreachable"):
            continue
        try:
            nets.append(ipaddress.IPv4Network(first, strict=False))
        except ValueError:
            pass
    return nets


def free_subnet() -> str:
    """A 10.231.X.0/24 that no route on this host uses (test networks never collide with real ones)."""
    routed = _routed()
    for _ in range(200):
        cand = ipaddress.IPv4Network(f"10.231.{random.randint(1, 254)}.0/24")
        if not any(cand.overlaps(r) for r in routed):
            return str(cand)
    raise RuntimeError("no free 10.231.X.0/24 subnet")


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


class NetEnv:
    """One test's networking sandbox; `config_path` is where the `ctrpy` fixture reads config.toml."""

    def __init__(self, dirs: Any) -> None:
        self.dirs = dirs
        self.tag = "%06x" % random.getrandbits(24)
        self.bridge = f"ctpb{self.tag}"
        self.subnet = free_subnet()
        self.gateway = str(ipaddress.IPv4Network(self.subnet).network_address + 1)
        self.config_path = Path(dirs.root).parent / "config.toml"
        self.netns: list[str] = []
        self.procs: list[subprocess.Popen[Any]] = []
        self.bridges = [self.bridge]
        self.extra_config = ""
        self.write_config()

    def write_config(self, extra: str = "") -> None:
        self.extra_config += extra
        self.config_path.write_text(
            f'[network]\nbridge = "{self.bridge}"\nsubnet = "{self.subnet}"\nmtu = 1500\n' + self.extra_config)

    def client(self, namespace: str = "default") -> Client:
        return Client(self.dirs.root, self.dirs.state, namespace, load_config(str(self.config_path)))

    def add_netns(self) -> str:
        name = f"ctpn{self.tag}{len(self.netns)}"
        run("ip", "netns", "add", name)
        self.netns.append(name)
        return name

    @staticmethod
    def path(name: str) -> str:
        return f"/run/netns/{name}"

    def spawn(self, netns: str, *argv: str) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(["ip", "netns", "exec", netns, *argv], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def httpd(self, netns: str, text: str, port: int = 80) -> Path:
        """busybox httpd serving `text` at / inside `netns`; returns when it accepts connections."""
        www = Path(self.dirs.root).parent / f"www-{netns}"
        www.mkdir(exist_ok=True)
        (www / "index.html").write_text(text)
        self.spawn(netns, "busybox", "httpd", "-f", "-p", str(port), "-h", str(www))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            ok = run("ip", "netns", "exec", netns, "curl", "-s", "-o", "/dev/null", "-m", "1",
                     f"http://127.0.0.1:{port}/", check=False)
            if ok.returncode == 0:
                break
            time.sleep(0.05)
        return www

    def exec_in(self, netns: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, timeout=timeout)

    def links(self) -> list[str]:
        """Host links whose name carries this test's tag or its root's veth prefix."""
        from ctrpy.runtime.network import root_tag

        prefix = "vc" + root_tag(self.client())
        names = [p.name for p in Path("/sys/class/net").iterdir()]
        return sorted(n for n in names if n.startswith(prefix) or self.tag in n or n in self.bridges)

    def table(self) -> str:
        from ctrpy.runtime.network import nft

        return nft.table_name(str(Path(self.dirs.root).resolve()))

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        for name in self.netns:
            for pid in run("ip", "netns", "pids", name, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run("ip", "netns", "del", name, check=False)
        for link in self.links():
            run("ip", "link", "del", link, check=False)
        run("nft", "delete", "table", "ip", self.table(), check=False)


CNI_BIN = "/usr/lib/cni"
PORTMAP_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK")


def nat_rules() -> list[str]:
    return run("iptables", "-t", "nat", "-S", check=False).stdout.splitlines()


def _tables() -> set[str]:
    return set(run("nft", "list", "tables", check=False).stdout.splitlines())


class CniEnv(NetEnv):
    def __init__(self, dirs: Any) -> None:
        super().__init__(dirs)
        self.conf_dir = Path(dirs.root).parent / "cni-conf"
        self.conf_dir.mkdir()
        self.ipam_dir = Path(dirs.root).parent / "cni-ipam"
        self.cni_bridge = f"ctpq{self.tag}"
        self.bridges.append(self.cni_bridge)
        self.cni_subnet = free_subnet()
        self.write_config(f'cni_conf_dir = "{self.conf_dir}"\ncni_bin_dir = "{CNI_BIN}"\n')

    def conflist(self, name: str, *, portmap: bool = True, plugins: list[dict[str, Any]] | None = None) -> str:
        chain: list[dict[str, Any]] = plugins or [
            {"type": "bridge", "bridge": self.cni_bridge, "isGateway": True, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": self.cni_subnet}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(self.ipam_dir)}},
        ]
        if portmap and plugins is None:
            chain.append({"type": "portmap", "capabilities": {"portMappings": True}, "snat": True})
        if plugins is None:
            chain.append({"type": "loopback"})
        (self.conf_dir / f"10-{name}.conflist").write_text(
            json.dumps({"cniVersion": "1.0.0", "name": name, "plugins": chain}))
        return name


@contextmanager
def host_guard() -> Iterator[None]:
    """Undo what CNI plugins do to the host: portmap's nat chains (and the empty `ip nat`/`ip6 nat` tables
    iptables-nft creates for them) and the bridge plugin's net.ipv4.ip_forward=1."""
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    rules_before = set(nat_rules())
    tables_before = _tables()
    try:
        yield
    finally:
        for rule in nat_rules():
            if rule.startswith("-A ") and rule not in rules_before and "CNI-" in rule:
                subprocess.run(["iptables", "-t", "nat", "-D", *shlex.split(rule)[1:]], capture_output=True)
        for chain in PORTMAP_CHAINS:
            if f"-N {chain}" not in rules_before:
                run("iptables", "-t", "nat", "-F", chain, check=False)
                run("iptables", "-t", "nat", "-X", chain, check=False)
        for table in _tables() - tables_before:
            if table in ("table ip nat", "table ip6 nat"):
                listing = run("nft", "list", *table.split(), check=False).stdout
                if "jump" not in listing and "dnat" not in listing:
                    run("nft", "delete", *table.split(), check=False)
        Path("/proc/sys/net/ipv4/ip_forward").write_text(forward)


def curl(url: str, netns: str | None = None, timeout: int = 5) -> subprocess.CompletedProcess[str]:
    argv = ["curl", "-s", "-m", str(timeout), url]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    return subprocess.run(argv, capture_output=True, text=True)
