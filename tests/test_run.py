"""`ctrpy run`: isolation, exit codes, signals, stdio, TTY, limits, under every runtime (real containers)."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import struct
import subprocess
import termios
import fcntl
import time
from pathlib import Path
from typing import Any

import pytest

from support.runtimes import CTRPY, cleanup, rootfs, runtime  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("cleanup")


def run(ctrpy: Any, runtime: str, rootfs: Path, cid: str, *cmd: str, flags: tuple[str, ...] = (),
        **kw: Any) -> Any:
    return ctrpy("run", "--rm", "--runtime", runtime, "--rootfs", str(rootfs), *flags, cid, *cmd, **kw)


def test_exit_code_and_streams(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    r = run(ctrpy, runtime, rootfs, "c1", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3, r.stderr
    assert r.stdout == "out\n"
    assert r.stderr == "err\n"
    assert ctrpy("containers", "ls", "-q").stdout == ""  # --rm removed it


def test_isolation(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    script = (
        "echo pid=$$; echo host=$(hostname); echo procs=$(ls /proc | grep -c '^[0-9]');"
        "echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo sys=rw || echo sys=ro;"
        "echo kcore=$(head -c 16 /proc/kcore 2>/dev/null | wc -c); echo timers=$(head -c 16 /proc/timer_list | wc -c);"
        "mkdir -p /mnt; mount -t tmpfs tmpfs /mnt 2>/dev/null && echo mount=ok || echo mount=denied;"
        "echo user=$(id -u); echo nofile=$(ulimit -n)"
    )
    r = run(ctrpy, runtime, rootfs, "iso", "sh", "-c", script, flags=("--hostname", "box1"))
    assert r.returncode == 0, r.stderr
    out = dict(line.split("=", 1) for line in r.stdout.split())
    assert out["pid"] == "1"  # the container's process is pid 1
    assert out["host"] == "box1"
    assert int(out["procs"]) <= 4  # sh, its subshell, ls, grep: no host process is visible
    assert out["sys"] == "ro"
    assert out["kcore"] == "0" and out["timers"] == "0"  # masked (this host may have no /proc/kcore at all)
    assert out["mount"] == "denied"  # no CAP_SYS_ADMIN
    assert out["user"] == "0"
    assert out["nofile"] == "1024"


def test_privileged_can_mount(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    r = run(ctrpy, runtime, rootfs, "priv", "sh", "-c", "mkdir -p /mnt && mount -t tmpfs tmpfs /mnt && echo mounted",
            flags=("--privileged",))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "mounted\n"
    r = run(ctrpy, runtime, rootfs, "capadd", "sh", "-c", "mkdir -p /mnt && mount -t tmpfs tmpfs /mnt && echo mounted",
            flags=("--cap-add", "SYS_ADMIN"))
    assert r.returncode == 0 and r.stdout == "mounted\n", r.stderr


def test_default_hostname_etc_files(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    r = run(ctrpy, runtime, rootfs, "web-1", "sh", "-c",
            "hostname; cat /etc/hostname; grep -c web-1 /etc/hosts; grep -c '^nameserver 127' /etc/resolv.conf")
    assert r.returncode == 1 or r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[:3] == ["web-1", "web-1", "1"]
    assert lines[3] == "0"  # loopback nameservers dropped


def test_exec_failures_map_to_docker_codes(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    r = run(ctrpy, runtime, rootfs, "nf", "no-such-command")
    assert r.returncode == 127, (r.stdout, r.stderr)
    assert r.stderr.startswith("ctrpy: ") and len(r.stderr.strip().splitlines()) == 1
    r = run(ctrpy, runtime, rootfs, "noexec", "/etc/passwd")
    assert r.returncode == 126, r.stderr
    assert ctrpy("containers", "ls", "-q").stdout == ""  # nothing half-written


def test_runtime_failure_is_125(ctrpy: Any, dirs: Any, rootfs: Path) -> None:
    with open(dirs.root.parent / "config.toml", "a") as f:
        f.write('[runtimes.broken]\ntype = "oci"\nbinary = "false"\n')
    r = ctrpy("run", "--rm", "--runtime", "broken", "--rootfs", str(rootfs), "b1", "true")
    assert r.returncode == 125, r.stderr
    assert r.stderr.startswith("ctrpy: broken:")
    assert ctrpy("containers", "ls", "-q").stdout == ""


def test_killed_by_signal(ctrpy: Any, dirs: Any, runtime: str, rootfs: Path) -> None:
    """A foreground `run` exits 137 when its task is SIGKILLed (pid 1 ignores signals from inside)."""
    args = [CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "run", "--rm", "--runtime", runtime,
            "--rootfs", str(rootfs), "k9", "sleep", "30"]
    env = {**os.environ, "CTRPY_CONFIG": str(dirs.root.parent / "config.toml")}
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    try:
        deadline = time.monotonic() + 20
        while "RUNNING" not in ctrpy("tasks", "ls").stdout:
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert ctrpy("tasks", "kill", "-s", "SIGKILL", "k9").returncode == 0
        assert proc.wait(timeout=20) == 137
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stdin_is_forwarded(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    r = run(ctrpy, runtime, rootfs, "cat", "sh", "-c", "tr a-z A-Z; echo done", stdin=io.StringIO("hello\n"))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "HELLO\ndone\n"


def _pty_run(args: list[str], rows: int = 33, cols: int = 111, timeout: float = 30) -> tuple[int, str]:
    """Run a command on a fresh pseudo-terminal of the given size; returns (exit code, output)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, out.decode(errors="replace")


def test_tty(ctrpy: Any, dirs: Any, runtime: str, rootfs: Path) -> None:
    args = [CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "run", "--rm", "-t", "--runtime",
            runtime, "--rootfs", str(rootfs), "tty1", "sh", "-c", "tty; stty size; test -t 1 && exit 7"]
    code, out = _pty_run(args)
    assert code == 7, out
    assert "/dev/pts/" in out or "/dev/console" in out
    assert "33 111" in out  # the terminal size reached the container


def test_detached_logs(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    r = ctrpy("run", "-d", "--runtime", runtime, "--rootfs", str(rootfs), "d1", "sh", "-c",
              "for i in 1 2 3 4 5; do echo line$i; done; sleep 0.5; echo last")
    assert r.returncode == 0, r.stderr
    r = ctrpy("logs", "-f", "d1")
    assert r.stdout == "line1\nline2\nline3\nline4\nline5\nlast\n"
    assert ctrpy("logs", "--tail", "2", "d1").stdout == "line5\nlast\n"
    w = ctrpy("tasks", "wait", "d1")
    assert w.returncode == 0
    ls = json.loads(ctrpy("tasks", "ls", "--format", "json").stdout)
    assert [(t["id"], t["status"], t["exit_status"]) for t in ls] == [("d1", "stopped", 0)]


def test_memory_limit_oom(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    r = ctrpy("run", "-d", "--runtime", runtime, "--rootfs", str(rootfs), "--memory-limit", "32m", "oom",
              "sh", "-c", "dd if=/dev/zero of=/dev/null bs=128M count=1")
    assert r.returncode == 0, r.stderr
    assert ctrpy("tasks", "wait", "oom").returncode == 137
    state = json.loads(ctrpy("tasks", "ls", "--format", "json").stdout)[0]
    assert state["status"] == "stopped" and state["exit_status"] == 137 and state["oom_killed"] is True
    assert "OOM killed" in ctrpy("tasks", "ls").stdout
    topics = [e["topic"] for e in json.loads(ctrpy("events", "--format", "json").stdout)]
    assert "/tasks/oom" in topics and topics.index("/tasks/oom") < topics.index("/tasks/exit")


def test_pids_limit_stops_fork_bomb(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    r = ctrpy("run", "-d", "--runtime", runtime, "--rootfs", str(rootfs), "--pids-limit", "8", "--memory-limit",
              "64m", "bomb", "sh", "-c",
              "sh -c 'for i in $(seq 40); do sleep 30 & done'; echo spawned; exec sleep 30")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 10
    while "spawned" not in ctrpy("logs", "bomb").stdout and time.monotonic() < deadline:
        time.sleep(0.1)
    metrics = json.loads(ctrpy("tasks", "metrics", "--format", "json", "bomb").stdout)
    assert metrics["pids"]["limit"] == 8
    assert metrics["pids"]["current"] <= 8
    assert metrics["memory"]["limit"] == 64 << 20
    procs = json.loads(ctrpy("tasks", "ps", "--format", "json", "bomb").stdout)
    assert 1 < len(procs) <= 8
    assert "can't fork" in ctrpy("logs", "bomb").stdout
    assert "RUNNING" in ctrpy("tasks", "ls").stdout  # the bomb failed, the container lives on


def test_run_rm_speed(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    """The hot path stays fast (measured, loose bound so a busy CI machine does not flake)."""
    best = 10.0
    for i in range(3):
        t0 = time.monotonic()
        r = run(ctrpy, runtime, rootfs, f"fast{i}", "true")
        best = min(best, time.monotonic() - t0)
        assert r.returncode == 0, r.stderr
    assert best < 2.0


def test_net_host_shares_interfaces(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    names = "sed -n 's/^ *\\([^:]*\\):.*/\\1/p' /proc/net/dev"
    own = run(ctrpy, runtime, rootfs, "net1", "sh", "-c", names)
    host = run(ctrpy, runtime, rootfs, "net2", "sh", "-c", names, flags=("--net-host",))
    assert own.returncode == 0 and host.returncode == 0, (own.stderr, host.stderr)
    assert own.stdout.split() == ["lo"]  # a new network namespace has only lo
    with open("/proc/net/route") as f:  # the host's default-route interface is visible with --net-host
        default = [line.split()[0] for line in f if line.split()[1:2] == ["00000000"]]
    assert "lo" in host.stdout.split() and set(default) <= set(host.stdout.split())
    assert len(host.stdout.split()) >= 2 or not default


def test_exec_tty(ctrpy: Any, dirs: Any, runtime: str, rootfs: Path) -> None:
    r = ctrpy("run", "-d", "--runtime", runtime, "--rootfs", str(rootfs), "et", "sleep", "60")
    assert r.returncode == 0, r.stderr
    args = [CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "exec", "-t", "et", "sh", "-c",
            "tty; stty size; exit 4"]
    code, out = _pty_run(args, rows=20, cols=70)
    assert code == 4, out
    assert "/dev/pts/" in out
    assert "20 70" in out
    assert "et" in ctrpy("ps").stdout  # top-level `ps` lists tasks
