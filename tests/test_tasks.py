"""`ctrpy tasks ...`, `exec`, `logs`: the task lifecycle under every runtime, with real processes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from support.runtimes import CTRPY, cgroup_dirs, cleanup, rootfs, runtime  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("cleanup")


def tasks(ctrpy: Any) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in json.loads(ctrpy("tasks", "ls", "--format", "json").stdout)}


def wait_for(predicate: Any, timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def create(ctrpy: Any, runtime: str, rootfs: Path, cid: str, *cmd: str, flags: tuple[str, ...] = ()) -> None:
    r = ctrpy("containers", "create", "--runtime", runtime, "--rootfs", str(rootfs), *flags, cid, *cmd)
    assert r.returncode == 0, r.stderr


def test_lifecycle(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    create(ctrpy, runtime, rootfs, "life", "sh", "-c", "trap 'echo got-term; exit 42' TERM; echo up; "
           "while true; do sleep 0.1; done")
    assert ctrpy("tasks", "start", "-d", "life").returncode == 0
    t = tasks(ctrpy)["life"]
    assert t["status"] == "running" and t["pid"] > 0
    assert os.path.exists(f"/proc/{t['pid']}")
    assert cgroup_dirs("life"), "the task's cgroup exists while it runs"
    # A second start, or deleting a running task, is refused with a clear line.
    r = ctrpy("tasks", "rm", "life")
    assert r.returncode == 6 and r.stderr.startswith("ctrpy: ") and "running" in r.stderr
    r = ctrpy("containers", "rm", "life")
    assert r.returncode == 6 and "--force" in r.stderr
    wait_for(lambda: "up" in ctrpy("logs", "life").stdout, what="output")
    assert ctrpy("tasks", "kill", "life").returncode == 0  # SIGTERM by default
    assert ctrpy("tasks", "wait", "life").returncode == 42
    assert "got-term" in ctrpy("logs", "life").stdout
    t = tasks(ctrpy)["life"]
    assert (t["status"], t["exit_status"]) == ("stopped", 42)
    r = ctrpy("tasks", "rm", "life")
    assert r.returncode == 0 and r.stdout.split() == ["life", "42"]
    assert tasks(ctrpy) == {}
    assert cgroup_dirs("life") == []
    assert ctrpy("containers", "rm", "life").returncode == 0
    assert ctrpy("tasks", "kill", "life").returncode == 4  # not found


def test_kill_sigkill_and_all(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    create(ctrpy, runtime, rootfs, "k", "sleep", "60")
    ctrpy("tasks", "start", "-d", "k")
    assert ctrpy("tasks", "kill", "-s", "9", "--all", "k").returncode == 0
    assert ctrpy("tasks", "wait", "k").returncode == 137
    assert ctrpy("tasks", "kill", "-s", "NOPE", "k").returncode == 2  # usage error
    assert ctrpy("tasks", "kill", "k").returncode == 6  # not running any more


def test_exec_same_filesystem_and_exit_codes(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    create(ctrpy, runtime, rootfs, "ex", "sleep", "60")
    ctrpy("tasks", "start", "-d", "ex")
    r = ctrpy("exec", "ex", "sh", "-c", "echo shared > /tmp/file; echo pid=$$")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("pid=") and r.stdout.strip() != "pid=1"
    r = ctrpy("tasks", "exec", "--exec-id", "second", "ex", "cat", "/tmp/file")
    assert (r.returncode, r.stdout) == (0, "shared\n")
    r = ctrpy("exec", "ex", "sh", "-c", "echo oops >&2; exit 5")
    assert (r.returncode, r.stderr) == (5, "oops\n")
    r = ctrpy("exec", "ex", "sh", "-c", "tr a-z A-Z", stdin=io.StringIO("quiet\n"))
    assert r.stdout == "QUIET\n"
    r = ctrpy("exec", "ex", "no-such-binary")
    assert r.returncode in (126, 127) or r.returncode == 6, r.stderr
    assert r.stderr.startswith("ctrpy: ") and len(r.stderr.strip().splitlines()) == 1
    r = ctrpy("exec", "--exec-id", "bad id", "ex", "true")
    assert r.returncode == 3
    r = ctrpy("exec", "-d", "ex", "sleep", "1")
    assert r.returncode == 0 and r.stdout.startswith("exec-")  # an id is generated when none is given
    assert ctrpy("tasks", "wait", "--exec-id", r.stdout.strip(), "ex").returncode == 0
    r = ctrpy("exec", "-d", "--exec-id", "bg", "ex", "sleep", "30")
    assert r.returncode == 0 and r.stdout.strip() == "bg"
    assert ctrpy("tasks", "kill", "--exec-id", "bg", "-s", "KILL", "ex").returncode == 0
    assert ctrpy("tasks", "wait", "--exec-id", "bg", "ex").returncode == 137


def test_pause_resume(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    create(ctrpy, runtime, rootfs, "pz", "sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; "
           "usleep 20000; done")
    ctrpy("tasks", "start", "-d", "pz")
    counter = rootfs / "tmp/count"

    def value() -> int:
        try:
            return int(counter.read_text() or 0)
        except (OSError, ValueError):
            return 0

    wait_for(lambda: value() > 2, what="the counter")
    assert ctrpy("tasks", "pause", "pz").returncode == 0
    assert tasks(ctrpy)["pz"]["status"] == "paused"
    procs = json.loads(ctrpy("tasks", "ps", "--format", "json", "pz").stdout)
    assert procs
    if not Path("/sys/fs/cgroup/cgroup.controllers").exists():  # the v1 freezer parks tasks in D state
        assert {p["state"] for p in procs} == {"D"}
    frozen = value()
    time.sleep(0.3)
    assert value() == frozen
    assert ctrpy("tasks", "pause", "pz").returncode == 6  # already paused
    assert ctrpy("tasks", "resume", "pz").returncode == 0
    assert tasks(ctrpy)["pz"]["status"] == "running"
    wait_for(lambda: value() > frozen + 2, what="the counter to move again")


def test_ps_and_metrics(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    create(ctrpy, runtime, rootfs, "m", "sh", "-c", "sleep 60 & exec sleep 61",
           flags=("--memory-limit", "48m", "--pids-limit", "20", "--cpus", "0.5"))
    ctrpy("tasks", "start", "-d", "m")
    wait_for(lambda: len(json.loads(ctrpy("tasks", "ps", "--format", "json", "m").stdout)) == 2, what="2 procs")
    procs = json.loads(ctrpy("tasks", "ps", "--format", "json", "m").stdout)
    assert sorted(p["command"] for p in procs) == ["sleep 60", "sleep 61"]
    m = json.loads(ctrpy("tasks", "metrics", "--format", "json", "m").stdout)
    assert m["memory"]["limit"] == 48 << 20
    assert m["memory"]["usage"] > 0
    assert m["pids"] == {"current": 2, "limit": 20} or (m["pids"]["current"], m["pids"]["limit"]) == (2, 20)
    assert m["cpu"]["usage_ns"] > 0
    table = ctrpy("tasks", "metrics", "m").stdout
    assert "48.0 MiB" in table


def test_attach(ctrpy: Any, runtime: str, rootfs: Path, dirs: Any) -> None:
    create(ctrpy, runtime, rootfs, "at", "sh", "-c", "while read line; do echo got-$line; done; echo bye; exit 3")
    # Start attached in the background: its stdin is the task's stdin; a second client attaches too.
    env = {**os.environ, "CTRPY_CONFIG": str(dirs.root.parent / "config.toml")}
    proc = subprocess.Popen([CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "tasks", "start", "at"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        wait_for(lambda: tasks(ctrpy).get("at", {}).get("status") == "running", what="running")
        watcher = subprocess.Popen([CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "tasks",
                                    "attach", "at"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env)
        time.sleep(1.5)  # let the second client connect before the task can end
        out, err = proc.communicate(b"one\ntwo\n", timeout=20)  # closing stdin ends the loop
        assert proc.returncode == 3, err
        assert out == b"got-one\ngot-two\nbye\n"
        wout, _ = watcher.communicate(timeout=20)
        assert watcher.returncode == 3
        assert b"bye" in wout
    finally:
        for p in (proc,):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_supervisor_killed(ctrpy: Any, runtime: str, rootfs: Path, dirs: Any) -> None:
    create(ctrpy, runtime, rootfs, "sk", "sleep", "60")
    ctrpy("tasks", "start", "-d", "sk")
    task_dir = dirs.state / "default" / "sk"
    sup_pid = int((task_dir / "supervisor.pid").read_text())
    os.kill(sup_pid, 9)
    wait_for(lambda: not os.path.exists(f"/proc/{sup_pid}") or
             Path(f"/proc/{sup_pid}/stat").read_text().split()[2] == "Z", what="supervisor death")
    t = tasks(ctrpy)["sk"]
    assert t["status"] == "unknown"  # alive but unsupervised: never reported as plain RUNNING
    # kill starts a tracing supervisor first (ctrpy-supervisor --adopt), so the exit it causes is seen for real.
    assert ctrpy("tasks", "kill", "-s", "KILL", "sk").returncode == 0
    wait_for(lambda: tasks(ctrpy)["sk"]["status"] == "stopped", what="stopped")
    assert tasks(ctrpy)["sk"]["exit_status"] == 137
    assert ctrpy("tasks", "wait", "sk").returncode == 137
    assert ctrpy("tasks", "rm", "sk").returncode == 0
    assert cgroup_dirs("sk") == []


def test_container_killed(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    create(ctrpy, runtime, rootfs, "ck", "sleep", "60")
    ctrpy("tasks", "start", "-d", "ck")
    pid = tasks(ctrpy)["ck"]["pid"]
    os.kill(pid, 9)
    assert ctrpy("tasks", "wait", "ck").returncode == 137
    t = tasks(ctrpy)["ck"]
    assert (t["status"], t["exit_status"]) == ("stopped", 137)


@pytest.mark.slow
def test_twenty_concurrent(ctrpy: Any, runtime: str, rootfs: Path, dirs: Any) -> None:
    ids = [f"par{i}" for i in range(20)]

    def start(cid: str) -> Any:
        return ctrpy("run", "-d", "--runtime", runtime, "--rootfs", str(rootfs), cid, "sleep", "60")

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(start, ids))
    assert [r.returncode for r in results] == [0] * 20, [r.stderr for r in results if r.returncode]
    states = tasks(ctrpy)
    assert sorted(states) == sorted(ids)
    assert {t["status"] for t in states.values()} == {"running"}
    pids = [t["pid"] for t in states.values()]
    sups = [int((dirs.state / "default" / cid / "supervisor.pid").read_text()) for cid in ids]
    with ThreadPoolExecutor(max_workers=20) as pool:
        removed = list(pool.map(lambda cid: ctrpy("containers", "rm", "--force", cid), ids))
    assert [r.returncode for r in removed] == [0] * 20, [r.stderr for r in removed if r.returncode]
    assert ctrpy("containers", "ls", "-q").stdout == ""
    # Nothing left: processes, supervisors, cgroups, state directories, mounts.
    time.sleep(0.2)
    for pid in pids + sups:
        assert not os.path.exists(f"/proc/{pid}") or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    assert all(cgroup_dirs(cid) == [] for cid in ids)
    assert list((dirs.state).glob("default/*")) == []
    with open("/proc/self/mounts") as f:
        assert str(dirs.state) not in f.read()


def test_same_id_in_two_namespaces(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    for ns in ("default", "other"):
        r = ctrpy("run", "-d", "--runtime", runtime, "--rootfs", str(rootfs), "twin", "sh", "-c",
                  f"echo {ns}; sleep 60", namespace=ns)
        assert r.returncode == 0, r.stderr
    for ns in ("default", "other"):
        wait_for(lambda: ctrpy("logs", "twin", namespace=ns).stdout == f"{ns}\n", what=f"output in {ns}")
        t = json.loads(ctrpy("tasks", "ls", "--format", "json", namespace=ns).stdout)
        assert [(x["id"], x["status"]) for x in t] == [("twin", "running")]
    assert ctrpy("containers", "rm", "--force", "twin", namespace="other").returncode == 0
    assert tasks(ctrpy)["twin"]["status"] == "running"  # the other namespace's twin is untouched
    assert cgroup_dirs("twin", "other") == [] and cgroup_dirs("twin", "default") != []


def test_attach_tty_resize_and_exit(ctrpy: Any, runtime: str, rootfs: Path, dirs: Any) -> None:
    """A detached TTY task: attach from a terminal, type, resize the window, exit through the shell."""
    import fcntl
    import pty
    import select
    import signal
    import struct
    import termios

    r = ctrpy("run", "-d", "-t", "--runtime", runtime, "--rootfs", str(rootfs), "tt", "sh")
    assert r.returncode == 0, r.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 90, 0, 0))
    env = {**os.environ, "CTRPY_CONFIG": str(dirs.root.parent / "config.toml")}
    proc = subprocess.Popen([CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "tasks", "attach", "tt"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True, env=env)
    os.close(slave)
    seen = b""

    def expect(text: bytes, timeout: float = 15) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in seen:
            assert time.monotonic() < deadline, (text, seen)
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break

    try:
        time.sleep(0.5)
        os.write(master, b"echo hello-$((40+2))\n")
        expect(b"hello-42")
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 132, 0, 0))
        os.kill(proc.pid, signal.SIGWINCH)
        time.sleep(0.3)
        os.write(master, b"stty size\n")
        expect(b"50 132")
        os.write(master, b"exit 5\n")
        assert proc.wait(timeout=15) == 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert ctrpy("tasks", "wait", "tt").returncode == 5
    assert b"hello-42" in ctrpy("logs", "tt").stdout.encode()


def test_tasks_ls_asks_each_runtime_once(ctrpy: Any, runtime: str, rootfs: Path, tmp_path: Path) -> None:
    """`tasks ls` (and `ps`) take the runtime's states from one `list` per runtime instead of a `state` per
    task (for runc an exec each), with the same statuses as asking each task alone."""
    for cid, cmd in (("run1", "sleep 60"), ("run2", "sleep 60"), ("done", "exit 3")):
        create(ctrpy, runtime, rootfs, cid, "sh", "-c", cmd)
        assert ctrpy("tasks", "start", "-d", cid).returncode == 0
    assert ctrpy("tasks", "wait", "done").returncode == 3
    assert ctrpy("tasks", "pause", "run2").returncode == 0
    wrapper_dir = tmp_path / "bin"
    wrapper_dir.mkdir()
    calls = tmp_path / "calls"
    real = subprocess.run(["sh", "-c", f"command -v {runtime}"], capture_output=True, text=True).stdout.strip()
    env: dict[str, str] = {}
    if real:  # an exec'd runtime: count its verbs through a wrapper first on PATH
        wrapper = wrapper_dir / runtime
        wrapper.write_text(f'#!/bin/sh\nfor a; do case "$a" in list|state) echo "$a" >> {calls};; esac; done\n'
                           f'exec {real} "$@"\n')
        wrapper.chmod(0o755)
        env["PATH"] = f"{wrapper_dir}:{os.path.dirname(sys.executable)}:{os.environ['PATH']}"
    listed = {t["id"]: t for t in json.loads(ctrpy("tasks", "ls", "--format", "json", env=env).stdout)}
    assert {cid: (t["status"], t["exit_status"]) for cid, t in listed.items()} == {
        "run1": ("running", None), "run2": ("paused", None), "done": ("stopped", 3)}
    assert listed["run1"]["pid"] > 0 and os.path.exists(f"/proc/{listed['run1']['pid']}")
    if real:
        assert calls.read_text().split() == ["list"]  # not one `state` per task
    assert ctrpy("tasks", "resume", "run2").returncode == 0
    assert tasks(ctrpy)["run2"]["status"] == "running"
