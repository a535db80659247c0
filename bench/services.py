"""The reference daemons the harness starts for itself: a registry on 127.0.0.1 and a private containerd.

Neither touches a system instance: containerd gets its own root, state, sockets and opt dir in a temp dir and
runs with the CRI plugin off; the registry stores into a temp dir and listens on a free loopback port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from bench.cleanup import Cleanup, log, pid_alive, stop_pid

NAMESPACE = "ctrpybench"
# Pull measures use a namespace of their own, so "nothing left after images rm" can be checked exactly.
PULL_NAMESPACE = "ctrpybench-pull"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc, since no process-tree library is assumed)."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            kids.append(int(entry))
    return kids


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        for kid in _children(todo.pop()):
            out.append(kid)
            todo.append(kid)
    return out


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [p.decode(errors="replace") for p in f.read().split(b"\0") if p]
    except OSError:
        return []


class Registry:
    """Debian's docker-registry (CNCF distribution) serving plain HTTP on 127.0.0.1."""

    def __init__(self, cleanup: Cleanup, workdir: Path) -> None:
        self.dir = workdir / "registry"
        self.dir.mkdir()
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = self.dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        logf = open(self.dir / "registry.log", "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=logf, stderr=logf,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()
        cleanup.pid(self.proc.pid, "registry")
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"registry did not start: {(self.dir / 'registry.log').read_text()[-500:]}")
            time.sleep(0.05)


CONTAINERD_CONFIG = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = "{debug}"
  level = "warn"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[plugins."io.containerd.monitor.v1.cgroups"]
  no_prometheus = true
"""


class Containerd:
    """A private containerd 1.6 (Debian's) with ctr pointed at it through `self.ctr(...)`."""

    def __init__(self, cleanup: Cleanup, workdir: Path) -> None:
        self.dir = workdir / "containerd"
        self.dir.mkdir()
        self.sock = str(self.dir / "containerd.sock")
        # containerd 1.6 puts shim sockets under /run/containerd/s whatever the configured state dir; remove
        # what it leaves there only if the directory did not exist before.
        self._run_containerd_existed = os.path.exists("/run/containerd")
        self.started = time.time()
        config = self.dir / "config.toml"
        config.write_text(CONTAINERD_CONFIG.format(root=self.dir / "root", state=self.dir / "state", sock=self.sock,
                                                   debug=self.dir / "debug.sock", opt=self.dir / "opt"))
        logf = open(self.dir / "containerd.log", "wb")
        self.proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=logf, stderr=logf,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()
        cleanup.push("stop containerd and its shims", self.stop)
        deadline = time.monotonic() + 20
        while True:
            if os.path.exists(self.sock) and subprocess.run(self.ctr("version"), capture_output=True).returncode == 0:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not start: {(self.dir / 'containerd.log').read_text()[-800:]}")
            time.sleep(0.05)

    def ctr(self, *args: str, ns: str = NAMESPACE) -> list[str]:
        return ["ctr", "--address", self.sock, "--namespace", ns, *args]

    def shims(self) -> list[int]:
        """containerd-shim-runc-v2 processes serving this containerd (matched on our private socket path)."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                argv = cmdline(int(entry))
                if argv and argv[0].endswith("containerd-shim-runc-v2") and self.sock in argv:
                    found.append(int(entry))
        return found

    def remove_all(self) -> None:
        """Delete every task and container in the benchmark namespace through ctr."""
        out = subprocess.run(self.ctr("tasks", "ls", "-q"), capture_output=True, text=True).stdout.split()
        for task in out:
            subprocess.run(self.ctr("tasks", "kill", "-s", "SIGKILL", task), capture_output=True)
        for task in out:
            for _ in range(50):
                if subprocess.run(self.ctr("tasks", "rm", "-f", task), capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
        containers = subprocess.run(self.ctr("containers", "ls", "-q"), capture_output=True, text=True).stdout.split()
        for i in range(0, len(containers), 200):
            subprocess.run(self.ctr("containers", "rm", *containers[i:i + 200]), capture_output=True)

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.remove_all()
        finally:
            stop_pid(self.proc.pid)
            # Shims outlive containerd by design; they and their containers were started by us.
            for shim in self.shims():
                for pid in reversed(descendants(shim)):
                    stop_pid(pid, grace=0.5)
                stop_pid(shim, grace=1.0)
            if not self._run_containerd_existed:
                # A shim killed above leaves its socket behind; with no containerd before ours, those are ours.
                sockets = Path("/run/containerd/s")
                if sockets.is_dir():
                    for entry in sockets.iterdir():
                        try:
                            if entry.is_socket() and entry.stat().st_mtime >= self.started - 1:
                                entry.unlink()
                        except OSError:
                            pass
                for sub in ("s", "fifo", f"runc/{NAMESPACE}", "runc", ""):
                    try:
                        os.rmdir(os.path.join("/run/containerd", sub))
                    except OSError:
                        pass
            if pid_alive(self.proc.pid):
                log(f"bench: containerd {self.proc.pid} still alive")
