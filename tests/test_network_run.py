"""Networking through `ctrpy run` (issue 6, "Done when"): real containers (runc, a busybox rootfs) on a test
bridge and subnet from config.toml. Traffic goes only to 127.0.0.1 and to the test's own containers.

Skipped while `run` has no --network flag (the tasks side of the integration is not in yet).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ctrpy.runtime import network as net
from support.bundle import make_rootfs
from support.netenv import CNI_BIN, CniEnv, NetEnv, curl, host_guard, nat_rules, run


def _run_has_network() -> bool:
    try:
        from ctrpy.commands.run import run as run_command
    except ImportError:
        return False
    return any(p.name == "network" for p in run_command.params)


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc not installed"),
    pytest.mark.skipif(not _run_has_network(), reason="`ctrpy run` has no --network yet (tasks integration)"),
]


class RunEnv(NetEnv):
    def __init__(self, dirs: Any, ctrpy: Any) -> None:
        super().__init__(dirs)
        self.ctrpy = ctrpy
        self.rootfs = make_rootfs(Path(dirs.root).parent / "rootfs")
        self.www = Path(dirs.root).parent / "www"
        self.www.mkdir()
        (self.www / "index.html").write_text("hello from httpd\n")
        self.ids: list[str] = []

    def cid(self, name: str) -> str:
        return f"{name}-{self.tag}"

    def run(self, *args: str, cid: str, timeout: float = 60) -> Any:
        self.ids.append(cid)
        split = list(args).index("--") if "--" in args else len(args)
        flags, command = list(args[:split]), list(args[split + 1:])
        return self.ctrpy("run", "--runtime", "runc", "--rootfs", str(self.rootfs), *flags, cid, *command,
                          timeout=timeout)

    def httpd(self, cid: str, *flags: str) -> Any:  # type: ignore[override]
        r = self.run("-d", "--mount", f"type=bind,src={self.www},dst=/www,options=ro", *flags, "--",
                     "httpd", "-f", "-p", "80", "-h", "/www", cid=cid)
        assert r.returncode == 0, r.stderr
        return r

    def address(self, cid: str, network: str = "bridge") -> str:
        data = json.loads(self.ctrpy("network", "inspect", network).stdout)[0]
        return [c["address"] for c in data["containers"] if c["id"] == cid][0]

    def remove(self, cid: str) -> None:
        self.ctrpy("tasks", "rm", "--force", cid)
        self.ctrpy("containers", "rm", "--force", cid)

    def veths(self) -> list[str]:
        prefix = "vc" + net.root_tag(self.client())
        return sorted(n for n in os.listdir("/sys/class/net") if n.startswith(prefix))

    def wait_no_veths(self, seconds: float = 5) -> list[str]:
        # A task's netns is freed asynchronously by the kernel, taking its veth pair along.
        deadline = time.monotonic() + seconds
        while self.veths() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.veths()

    def cleanup(self) -> None:
        left = set(self.ctrpy("containers", "ls", "-q").stdout.split())
        for cid in self.ids:
            if cid in left:
                self.remove(cid)
            # A task whose state was removed (the crash test) leaves its empty cgroups to us.
            for cg in Path("/sys/fs/cgroup").glob(f"*/ctrpy/default-{cid}"):
                try:
                    cg.rmdir()
                except OSError:
                    pass
        super().cleanup()


@pytest.fixture
def renv(dirs: Any, ctrpy: Any) -> Any:
    e = RunEnv(dirs, ctrpy)
    try:
        yield e
    finally:
        e.cleanup()


def test_two_containers_reach_each_other(renv: RunEnv) -> None:
    renv.httpd(renv.cid("web"))
    ip = renv.address(renv.cid("web"))
    assert ip.startswith(renv.subnet.rsplit(".", 1)[0] + ".")
    r = renv.run("--rm", "--", "sh", "-c", f"wget -q -O- http://{ip}/ && ping -c 1 -W 2 {ip}", cid=renv.cid("client"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("hello from httpd\n") and "1 packets received" in r.stdout


def test_published_port_answers_on_localhost_and_goes_away(renv: RunEnv) -> None:
    renv.httpd(renv.cid("web"), "-p", "18080:80")
    assert curl("http://127.0.0.1:18080/").stdout == "hello from httpd\n"
    # From another container, through the host's side of the bridge.
    r = renv.run("--rm", "--", "wget", "-q", "-O-", f"http://{renv.gateway}:18080/", cid=renv.cid("other"))
    assert r.stdout == "hello from httpd\n", r.stderr
    # The same port again: one clear line, nothing half-made.
    r = renv.run("-d", "-p", "18080:80", "--", "sleep", "30", cid=renv.cid("clash"))
    # `run` reports a failure before the command starts as 125 (docker's code for this very case); the
    # error class's own code (AlreadyExists: 5) is what other commands return.
    assert r.returncode in (125, 5), r.stderr
    assert r.stderr.strip() == f"ctrpy: port 0.0.0.0:18080/tcp is already published by container default/{renv.cid('web')}"
    renv.remove(renv.cid("clash"))
    renv.remove(renv.cid("web"))
    assert curl("http://127.0.0.1:18080/", timeout=2).returncode != 0
    client = renv.client()
    store = net.network_store(client)
    assert store.attachments() == [] and store.allocations() == [] and store.ports() == []
    assert "18080" not in run("nft", "list", "table", "ip", renv.table(), check=False).stdout
    assert renv.wait_no_veths() == []


def test_network_none_has_only_lo(renv: RunEnv) -> None:
    r = renv.run("--rm", "--network", "none", "--", "cat", "/proc/net/dev", cid=renv.cid("none"))
    assert r.returncode == 0, r.stderr
    names = [line.split(":")[0].strip() for line in r.stdout.splitlines()[2:]]
    assert names == ["lo"]


def test_network_host_sees_the_host_interfaces(renv: RunEnv) -> None:
    r = renv.run("--rm", "--network", "host", "--", "cat", "/proc/net/dev", cid=renv.cid("host"))
    assert r.returncode == 0, r.stderr
    names = sorted(line.split(":")[0].strip() for line in r.stdout.splitlines()[2:])
    assert names == sorted(os.listdir("/sys/class/net"))
    assert net.network_store(renv.client()).attachments() == []


def test_etc_files(renv: RunEnv) -> None:
    r = renv.run("--rm", "--hostname", "box1", "--add-host", "db:10.9.9.9", "--add-host", "gw:host-gateway",
                 "--dns", "10.53.0.1", "--dns-search", "corp.test", "--",
                 "sh", "-c", "cat /etc/hosts; echo ---; cat /etc/resolv.conf; echo ---; cat /etc/hostname; "
                 "ip -4 -o addr show eth0", cid=renv.cid("etc"))
    assert r.returncode == 0, r.stderr
    hosts, resolv, rest = r.stdout.split("---\n")
    own = rest.split("inet ")[1].split("/")[0]
    assert "127.0.0.1\tlocalhost" in hosts and f"{own}\tbox1" in hosts
    assert "10.9.9.9\tdb" in hosts and f"{renv.gateway}\tgw" in hosts
    assert resolv.splitlines() == ["nameserver 10.53.0.1", "search corp.test"] or (
        "nameserver 10.53.0.1" in resolv and "search corp.test" in resolv)
    assert rest.startswith("box1\n")


def test_unknown_network_is_one_line(renv: RunEnv) -> None:
    r = renv.run("--rm", "--network", "nosuch", "--", "true", cid=renv.cid("bad"))
    assert r.returncode in (125, 4)  # NotFound; `run` reports it as 125 like docker
    assert r.stderr.strip().splitlines()[-1] == "ctrpy: network 'nosuch' not found"


@pytest.mark.slow
def test_twenty_concurrent_runs_get_unique_addresses(renv: RunEnv) -> None:
    def one(i: int) -> Any:
        return renv.run("--rm", "--", "ip", "-4", "-o", "addr", "show", "eth0", cid=renv.cid(f"p{i}"), timeout=180)

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    for r in results:
        assert r.returncode == 0, r.stderr
    addresses = [r.stdout.split("inet ")[1].split("/")[0] for r in results]
    assert len(set(addresses)) == 20
    store = net.network_store(renv.client())
    assert store.allocations() == [] and store.attachments() == []  # all reclaimed
    assert renv.wait_no_veths() == []


def test_prune_after_supervisor_killed_and_state_lost(renv: RunEnv, dirs: Any) -> None:
    r = renv.run("-d", "-p", "18087:80", "--", "sleep", "300", cid=renv.cid("crash"))
    assert r.returncode == 0, r.stderr
    att = net.network_store(renv.client()).attachments()[0]
    init_pid = int(att.netns.split("/")[2])
    supervisor = Path(dirs.state) / "default" / renv.cid("crash") / "supervisor.pid"
    if supervisor.exists():
        os.kill(int(supervisor.read_text()), signal.SIGKILL)
    os.kill(init_pid, signal.SIGKILL)
    # A reboot, as far as ctrpy can tell: the state directory (tmpfs in production) is gone.
    for _ in range(100):
        if not Path(f"/proc/{init_pid}").exists():
            break
        time.sleep(0.05)
    shutil.rmtree(dirs.state)
    Path(dirs.state).mkdir()
    r = renv.ctrpy("network", "prune")
    assert r.returncode == 0, r.stderr
    assert f"detached default/{renv.cid('crash')}" in r.stdout
    store = net.network_store(renv.client())
    assert store.allocations() == [] and store.ports() == []
    assert "18087" not in run("nft", "list", "table", "ip", renv.table(), check=False).stdout
    assert renv.wait_no_veths() == []


def test_run_on_the_bridge_never_imports_pyroute2(renv: RunEnv) -> None:
    first = renv.run("--rm", "--", "true", cid=renv.cid("first"))  # sets the bridge up (pyroute2 allowed here)
    assert first.returncode == 0, first.stderr
    # Even from a state directory that has not seen the bridge yet (it checks the bridge, not a marker).
    fresh = Path(renv.dirs.root).parent / "state2"
    fresh.mkdir()
    r = renv.ctrpy("--state", str(fresh), "run", "--rm", "--runtime", "runc", "--rootfs", str(renv.rootfs),
                   "-p", "18088:80", renv.cid("second"), "true", env={"PYTHONPROFILEIMPORTTIME": "1"})
    renv.ids.append(renv.cid("second"))
    assert r.returncode == 0, r.stderr
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "ctrpy.runtime.network.netlink" in imported  # the test sees the run path's imports
    assert not {m for m in imported if m.split(".")[0] in ("pyroute2", "httpx", "rich")}


def test_cni_network_through_run(renv: RunEnv, dirs: Any) -> None:
    """The same reachability through a CNI conflist (bridge + host-local + portmap + loopback)."""
    if not os.path.exists(f"{CNI_BIN}/portmap"):
        pytest.skip("containernetworking-plugins not installed")
    with host_guard():
        try:
            helper = CniEnv.__new__(CniEnv)  # only its conflist writer; renv owns the config and cleanup
            helper.tag, helper.conf_dir = renv.tag, Path(dirs.root).parent / "cni-conf"
            helper.ipam_dir, helper.cni_bridge = Path(dirs.root).parent / "cni-ipam", f"ctpq{renv.tag}"
            from support.netenv import free_subnet

            helper.cni_subnet = free_subnet()
            helper.conf_dir.mkdir()
            renv.bridges.append(helper.cni_bridge)
            name = helper.conflist(f"cni{renv.tag}")
            renv.write_config(f'cni_conf_dir = "{helper.conf_dir}"\ncni_bin_dir = "{CNI_BIN}"\n')
            web = renv.cid("web")
            renv.httpd(web, "--network", name, "-p", "18092:80")
            ip = renv.address(web, name)
            assert ip.startswith(helper.cni_subnet.rsplit(".", 1)[0] + ".")
            assert curl("http://127.0.0.1:18092/").stdout == "hello from httpd\n"
            r = renv.run("--rm", "--network", name, "--", "sh", "-c",
                         f"wget -q -O- http://{ip}/ && ping -c 1 -W 2 {ip}", cid=renv.cid("client"))
            assert r.returncode == 0, r.stderr
            assert r.stdout.startswith("hello from httpd\n") and "1 packets received" in r.stdout
            renv.remove(web)
            assert curl("http://127.0.0.1:18092/", timeout=2).returncode != 0
            assert not any("CNI-DN-" in rule for rule in nat_rules())
            leases = [f for f in os.listdir(helper.ipam_dir / name) if f[0].isdigit() and not f.startswith("last")]
            assert leases == []
            assert net.network_store(renv.client()).attachments() == []
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and os.listdir(f"/sys/class/net/{helper.cni_bridge}/brif"):
                time.sleep(0.05)
            assert os.listdir(f"/sys/class/net/{helper.cni_bridge}/brif") == []
        finally:
            renv.cleanup()
