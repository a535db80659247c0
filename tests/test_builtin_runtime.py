"""The built-in runtime, driven through `ctrpy runtime` (runc's command line), side by side with runc (and crun
where it can run): the same bundle must behave the same under each.

Everything is real: namespaces, mounts, cgroups, processes. Each test uses its own runtime root and cgroup
path, and the `rt` fixture force-deletes whatever a test left, so a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from support.bundle import ALL_CAPS, RuntimeCLI, base_spec, make_bundle, write_spec

from ctrpy.runtime.cgroups import Cgroup

RUNTIMES = ["ctrpy", "runc", "crun"]
_probe_cache: dict[str, str | None] = {}


def _probe(name: str, tmp: Path) -> str | None:
    """None when `name` can run a container here, else the reason (its own one-line error)."""
    if name in _probe_cache:
        return _probe_cache[name]
    reason = None
    if name != "ctrpy":
        bundle = tmp / f"probe-{name}"
        make_bundle(bundle, ["true"])
        r = RuntimeCLI(name, tmp / f"probe-root-{name}")("run", "--bundle", str(bundle), "probe")
        if r.returncode != 0:
            lines = [line for line in r.stderr.splitlines() if line.strip()]
            reason = f"{name} cannot run here: {lines[-1] if lines else r.returncode}"
            RuntimeCLI(name, tmp / f"probe-root-{name}")("delete", "--force", "probe")
    _probe_cache[name] = reason
    return reason


@pytest.fixture(params=RUNTIMES)
def rt(request: Any, tmp_path: Path) -> Iterator[RuntimeCLI]:
    reason = _probe(request.param, tmp_path)
    if reason:
        pytest.skip(reason)
    cli = RuntimeCLI(request.param, tmp_path / "rtroot")
    try:
        yield cli
    finally:
        cli.cleanup()


@pytest.fixture
def ctrpy_rt(tmp_path: Path) -> Iterator[RuntimeCLI]:
    cli = RuntimeCLI("ctrpy", tmp_path / "rtroot")
    try:
        yield cli
    finally:
        cli.cleanup()


def new_id() -> str:
    return "t" + uuid.uuid4().hex[:10]


def bundle_with(tmp_path: Path, args: list[str], **edit: Any) -> tuple[Path, str, dict[str, Any]]:
    """A busybox bundle running `args`, in its own cgroup; `edit` maps dotted spec keys to values."""
    cid = new_id()
    bundle = tmp_path / cid
    spec = make_bundle(bundle, args, cgroups_path=f"ctrpy-test/{cid}", hostname="box-" + cid[:4])
    for dotted, value in edit.items():
        node = spec
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    write_spec(bundle, spec)
    return bundle, cid, spec


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_pid1_hostname_and_host_processes_invisible(rt: RuntimeCLI, tmp_path: Path) -> None:
    script = "echo pid=$$; hostname; ls /proc | grep -c '^[0-9]'; test -e /proc/%d && echo HOSTPID; true" % os.getpid()
    bundle, cid, spec = bundle_with(tmp_path, ["sh", "-c", script])
    r = rt("run", "--bundle", str(bundle), cid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[0] == "pid=1"
    assert lines[1] == spec["hostname"]
    # sh, ls and grep at most: nothing of the host
    assert int(lines[2]) <= 3
    assert "HOSTPID" not in r.stdout


def test_proc_sys_readonly_and_kcore_masked(rt: RuntimeCLI, tmp_path: Path) -> None:
    masked = ["/proc/kcore", "/proc/keys", "/proc/timer_list"]
    script = ("echo x > /proc/sys/kernel/domainname && echo WROTE; touch /sys/x 2>/dev/null && echo SYSRW; "
              "for f in %s; do if [ -e $f ]; then cat $f | wc -c; else echo absent; fi; done" % " ".join(masked))
    bundle, cid, _ = bundle_with(tmp_path, ["sh", "-c", script])
    r = rt("run", "--bundle", str(bundle), cid)
    assert r.returncode == 0, r.stderr
    assert "WROTE" not in r.stdout and "SYSRW" not in r.stdout
    assert "Read-only file system" in r.stderr
    sizes = r.stdout.split()
    for path, size in zip(masked, sizes, strict=True):
        # this kernel may lack /proc/kcore; what exists is masked (empty), though the host's is not
        assert size == ("0" if os.path.exists(path) else "absent")
    assert Path("/proc/timer_list").read_text()


def test_mount_needs_cap_sys_admin(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle, cid, _ = bundle_with(tmp_path, ["sh", "-c", "mkdir -p /mnt/t && mount -t tmpfs t /mnt/t && echo MOUNTED"])
    r = rt("run", "--bundle", str(bundle), cid)
    assert r.returncode != 0
    assert "MOUNTED" not in r.stdout
    assert "denied" in r.stderr.lower() or "not permitted" in r.stderr.lower()

    caps = {k: list(ALL_CAPS) for k in ("bounding", "effective", "permitted")}
    bundle, cid, _ = bundle_with(tmp_path, ["sh", "-c", "mkdir -p /mnt/t && mount -t tmpfs t /mnt/t && echo MOUNTED"],
                                 **{"process.capabilities": caps})
    r = rt("run", "--bundle", str(bundle), cid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "MOUNTED"


def test_capabilities_match_containerd_defaults(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle, cid, _ = bundle_with(tmp_path, ["sh", "-c", "grep -E '^(Cap|NoNewPrivs)' /proc/self/status"])
    r = rt("run", "--bundle", str(bundle), cid)
    assert r.returncode == 0, r.stderr
    fields = dict(line.split(":\t") for line in r.stdout.strip().splitlines())
    # the 14 capabilities of containerd's default set, no inheritable or ambient ones
    assert fields == {"CapInh": "0000000000000000", "CapPrm": "00000000a80425fb", "CapEff": "00000000a80425fb",
                      "CapBnd": "00000000a80425fb", "CapAmb": "0000000000000000", "NoNewPrivs": "1"}


def test_user_and_groups(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle, cid, _ = bundle_with(tmp_path, ["sh", "-c", "id -u; id -g; id -G; touch /root/x && echo ROOTWRITE"],
                                 **{"process.user": {"uid": 1000, "gid": 1000, "additionalGids": [2000]}})
    (bundle / "rootfs/root").chmod(0o700)
    r = rt("run", "--bundle", str(bundle), cid)
    lines = r.stdout.split("\n")
    assert lines[0] == "1000" and lines[1] == "1000"
    assert "2000" in lines[2].split()
    assert "ROOTWRITE" not in r.stdout


def test_exit_status_and_not_found(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle, cid, _ = bundle_with(tmp_path, ["sh", "-c", "exit 7"])
    assert rt("run", "--bundle", str(bundle), cid).returncode == 7

    bundle, cid, _ = bundle_with(tmp_path, ["nosuchcmd"])
    r = rt.create(bundle, cid)
    assert r.returncode != 0
    if rt.name == "ctrpy":
        assert r.stderr == 'ctrpy: exec "nosuchcmd": No such file or directory\n'
        # nothing half-made: no state, no cgroup
        assert rt.ids() == []
        assert not Cgroup(f"ctrpy-test/{cid}").exists()


def test_lifecycle_states_kill_delete_clean_up(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle, cid, _ = bundle_with(tmp_path, ["sleep", "1000"])
    assert rt.create(bundle, cid).returncode == 0
    st = rt.state(cid)
    assert st["status"] == "created" and st["pid"] > 0 and st["bundle"] == str(bundle)
    pid = st["pid"]
    assert rt("start", cid).returncode == 0
    assert wait_for(lambda: rt.state(cid)["status"] == "running", what="running")
    assert json.loads(rt("ps", "--format", "json", cid).stdout) == [pid]
    r = rt("delete", cid)
    assert r.returncode != 0 and rt.state(cid)["status"] == "running"  # refused without --force
    assert rt("kill", cid, "KILL").returncode == 0
    wait_for(lambda: rt.state(cid)["status"] == "stopped", what="stopped")
    assert rt("delete", cid).returncode == 0
    assert rt.state(cid)["status"] == "gone"
    assert not os.path.exists(f"/proc/{pid}/stat") or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    assert not Cgroup(f"ctrpy-test/{cid}").exists()
    assert str(bundle) not in Path("/proc/self/mountinfo").read_text()


def test_delete_force_kills_running_container(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle, cid, _ = bundle_with(tmp_path, ["sh", "-c", "sleep 1000 & sleep 1000"])
    assert rt.create(bundle, cid).returncode == 0
    assert rt("start", cid).returncode == 0
    wait_for(lambda: len(json.loads(rt("ps", "--format", "json", cid).stdout or "[]")) == 2, what="2 processes")
    pids = json.loads(rt("ps", "--format", "json", cid).stdout)
    assert rt("delete", "--force", cid).returncode == 0
    for pid in pids:
        wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
                 Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z", what=f"pid {pid} gone")
    assert not Cgroup(f"ctrpy-test/{cid}").exists()


def test_exec_sees_the_same_filesystem(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle, cid, _ = bundle_with(tmp_path, ["sh", "-c", "echo from-init > /tmp/marker; sleep 1000"])
    assert rt.create(bundle, cid).returncode == 0
    assert rt("start", cid).returncode == 0
    wait_for(lambda: (bundle / "rootfs/tmp/marker").exists(), what="marker")
    r = rt("exec", cid, "sh", "-c", "cat /tmp/marker; echo from-exec > /tmp/back; echo $$; hostname")
    assert r.returncode == 0, r.stderr
    out = r.stdout.split()
    assert out[0] == "from-init"
    assert int(out[1]) > 1  # in the container's pid namespace, not pid 1
    assert (bundle / "rootfs/tmp/back").read_text() == "from-exec\n"
    assert rt("exec", cid, "sh", "-c", "exit 4").returncode == 4


def test_exec_detached_shows_in_ps(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle, cid, _ = bundle_with(tmp_path, ["sleep", "1000"])
    assert rt.create(bundle, cid).returncode == 0
    assert rt("start", cid).returncode == 0
    pid_file = tmp_path / "exec.pid"
    r = rt("exec", "--detach", "--pid-file", str(pid_file), cid, "sleep", "999", stdout=subprocess.DEVNULL,
           stderr=subprocess.DEVNULL, capture_output=False)
    assert r.returncode == 0
    exec_pid = int(pid_file.read_text())
    # runc writes the pid file while its `runc init` child is still on the way to execve: wait for it.
    deadline = time.monotonic() + 5
    cmdline = Path(f"/proc/{exec_pid}/cmdline")
    while cmdline.read_bytes().split(b"\0")[:2] != [b"sleep", b"999"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cmdline.read_bytes().split(b"\0")[:2] == [b"sleep", b"999"]
    pids = json.loads(rt("ps", "--format", "json", cid).stdout)
    assert exec_pid in pids and rt.state(cid)["pid"] in pids


def _freezer_state(pid: int) -> str:
    """"frozen" or "thawed", as the kernel reports the cgroup of `pid` (v2 cgroup.events, v1 freezer.state)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if ctrls == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            events = Path(f"/sys/fs/cgroup{path}/cgroup.events").read_text().splitlines()
            return "frozen" if "frozen 1" in events else "thawed"
        if "freezer" in ctrls.split(","):
            state = Path(f"/sys/fs/cgroup/freezer{path}/freezer.state").read_text().strip()
            return "frozen" if state == "FROZEN" else "thawed"
    raise AssertionError(f"no freezer for pid {pid}")


def test_pause_freezes_and_resume_continues(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle, cid, _ = bundle_with(tmp_path, ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/tick; done"])
    assert rt.create(bundle, cid).returncode == 0
    assert rt("start", cid).returncode == 0
    tick = bundle / "rootfs/tmp/tick"
    wait_for(tick.exists, what="tick")
    pid = rt.state(cid)["pid"]
    assert rt("pause", cid).returncode == 0
    assert rt.state(cid)["status"] == "paused"
    # the kernel reports the task's cgroup frozen (its state letter is D on v1 but S on v2), and it makes
    # no progress
    assert _freezer_state(pid) == "frozen"
    before = tick.read_text()
    time.sleep(0.2)
    assert tick.read_text() == before
    assert rt("resume", cid).returncode == 0
    assert rt.state(cid)["status"] == "running"
    wait_for(lambda: tick.read_text() not in ("", before), what="progress after resume")


def test_memory_limit_oom_kills_an_allocator(rt: RuntimeCLI, tmp_path: Path) -> None:
    # command substitution keeps the whole 64 MB output in the shell's memory
    script = "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo survived ${#x}"
    bundle, cid, _ = bundle_with(tmp_path, ["sh", "-c", script],
                                 **{"linux.resources.memory": {"limit": 32 * 1024 * 1024}})
    assert rt.create(bundle, cid).returncode == 0
    cgroup = Cgroup(f"ctrpy-test/{cid}")
    same_paths = rt.name != "crun"  # crun places a relative cgroupsPath elsewhere
    if same_paths:
        assert cgroup.stats()["memory"]["limit"] == 32 * 1024 * 1024
    assert rt("start", cid).returncode == 0
    wait_for(lambda: rt.state(cid)["status"] == "stopped", timeout=30, what="stopped")
    assert "survived" not in (bundle / "out.log").read_text()
    if same_paths:
        assert cgroup.oom_killed()


def test_pids_limit_stops_a_fork_bomb(rt: RuntimeCLI, tmp_path: Path) -> None:
    # Only shell builtins once the bomb went off: a full cgroup cannot fork `ls` or `cat`.
    script = ("(for i in $(seq 1 60); do sleep 1000 & done) 2>/tmp/err; set -- /proc/[0-9]*; echo $#; "
              "kill -9 -1; wait; cat /tmp/err")
    bundle, cid, _ = bundle_with(tmp_path, ["sh", "-c", script], **{"linux.resources.pids": {"limit": 16}})
    r = rt("run", "--bundle", str(bundle), cid)
    assert r.returncode == 0, r.stderr
    count, *err = r.stdout.splitlines()
    # the shell plus at most 15 sleeps; the 16th fork and on were refused
    assert 10 <= int(count) <= 16
    assert "can't fork" in " ".join(err) or "Resource temporarily unavailable" in " ".join(err)


def _with_console(argv: list[str], sock_path: Path) -> int:
    """Run `argv` (which gets --console-socket sock_path) and return the pty master it sends us."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server.settimeout(20)
        conn, _ = server.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 16, 1)
        assert proc.wait(timeout=20) == 0
        return fds[0]
    finally:
        server.close()


def _read_until(master: int, marker: bytes, timeout: float = 10) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while marker not in out and time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        out += chunk
    return out


def test_terminal_over_console_socket(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle, cid, _ = bundle_with(tmp_path, ["sh", "-c", "tty; stty size; echo done"],
                                 **{"process.terminal": True, "process.consoleSize": {"height": 33, "width": 111}})
    master = _with_console(rt.argv + ["create", "--bundle", str(bundle), "--console-socket",
                                      str(tmp_path / "c.sock"), cid], tmp_path / "c.sock")
    try:
        assert rt("start", cid).returncode == 0
        out = _read_until(master, b"done")
        assert b"/dev/pts/0" in out and b"done" in out
        assert b"33 111" in out
    finally:
        os.close(master)


def test_exec_with_a_terminal(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle, cid, _ = bundle_with(tmp_path, ["sleep", "1000"])
    assert rt.create(bundle, cid).returncode == 0
    assert rt("start", cid).returncode == 0
    master = _with_console(rt.argv + ["exec", "--detach", "--tty", "--console-socket", str(tmp_path / "e.sock"),
                                      cid, "sh", "-c", "tty; [ -t 0 ] && echo stdin-is-tty; echo done"],
                           tmp_path / "e.sock")
    try:
        out = _read_until(master, b"done")
        assert b"/dev/pts/" in out and b"stdin-is-tty" in out
    finally:
        os.close(master)


def test_kill_all_signals_every_process(rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle, cid, _ = bundle_with(tmp_path, ["sh", "-c", "sleep 1000 & sleep 1000 & wait"])
    assert rt.create(bundle, cid).returncode == 0
    assert rt("start", cid).returncode == 0
    wait_for(lambda: len(json.loads(rt("ps", "--format", "json", cid).stdout or "[]")) == 3, what="3 processes")
    assert rt("kill", "--all", cid, "KILL").returncode == 0
    wait_for(lambda: rt.state(cid)["status"] == "stopped", what="stopped")


# -- built-in only: what runc does differently or not at all ---------------------------------------------


def test_rlimit_and_oom_score_adj_are_clamped_with_a_warning(ctrpy_rt: RuntimeCLI, tmp_path: Path) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    current_oom = int(Path("/proc/self/oom_score_adj").read_text())
    bundle, cid, _ = bundle_with(
        tmp_path, ["sh", "-c", "ulimit -Hn; ulimit -n; cat /proc/self/oom_score_adj"],
        **{"process.rlimits": [{"type": "RLIMIT_NOFILE", "soft": hard * 4, "hard": hard * 4}],
           "process.oomScoreAdj": current_oom - 100})
    r = ctrpy_rt("run", "--bundle", str(bundle), cid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(hard), str(hard), str(current_oom)]
    warnings = [line for line in r.stderr.splitlines() if line.startswith("ctrpy: warning:")]
    assert len(warnings) == 2 and all("clamped" in w for w in warnings), r.stderr


def test_bad_bundle_is_one_line_and_leaves_nothing(ctrpy_rt: RuntimeCLI, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = ctrpy_rt("create", "--bundle", str(empty), "x1")
    assert r.returncode == 4
    assert r.stderr == f"ctrpy: bundle {empty}: config.json does not exist\n"
    (empty / "config.json").write_text("{not json")
    r = ctrpy_rt("create", "--bundle", str(empty), "x1")
    assert r.returncode == 3 and r.stderr.count("\n") == 1 and "not valid JSON" in r.stderr
    spec = base_spec()
    write_spec(empty, spec)
    r = ctrpy_rt("create", "--bundle", str(empty), "x1")
    assert r.returncode == 4 and "rootfs" in r.stderr and r.stderr.count("\n") == 1
    assert ctrpy_rt.ids() == []
    r = ctrpy_rt("start", "nosuch")
    assert r.returncode == 4 and r.stderr == "ctrpy: container nosuch does not exist\n"
    r = ctrpy_rt("create", "--bundle", str(empty), "bad/id")
    assert r.returncode == 3 and "invalid container id" in r.stderr


def test_duplicate_id_refused(ctrpy_rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle, cid, _ = bundle_with(tmp_path, ["sleep", "1000"])
    assert ctrpy_rt.create(bundle, cid).returncode == 0
    r = ctrpy_rt.create(bundle, cid)
    assert r.returncode == 5 and r.stderr == f"ctrpy: container {cid} already exists\n"
    assert ctrpy_rt.state(cid)["status"] == "created"


def test_exec_failure_after_start_reports_errno(ctrpy_rt: RuntimeCLI, tmp_path: Path) -> None:
    # The file exists at create time (lookup passes) but is not executable by the time start execs it.
    bundle, cid, _ = bundle_with(tmp_path, ["/bin/prog"])
    (bundle / "rootfs/bin/prog").write_text("#!/bin/sh\necho hi\n")
    (bundle / "rootfs/bin/prog").chmod(0o755)
    assert ctrpy_rt.create(bundle, cid).returncode == 0
    (bundle / "rootfs/bin/prog").write_bytes(b"\x7fELF garbage")
    r = ctrpy_rt("start", cid)
    assert r.returncode != 0
    assert r.stderr == 'ctrpy: exec "/bin/prog": Exec format error\n'


def test_in_process_api_matches_protocol(tmp_path: Path) -> None:
    from ctrpy.runtime.builtin import BuiltinRuntime

    bundle, cid, _ = bundle_with(tmp_path, ["sh", "-c", "echo out; echo err >&2; read line; echo got $line"])
    rt = BuiltinRuntime(tmp_path / "rtroot", warn=lambda m: None)
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    pid_file = tmp_path / "init.pid"
    try:
        rt.create(cid, bundle, pid_file=pid_file, stdio=(r_in, w_out, w_out))
        os.close(r_in)
        os.close(w_out)
        pid = int(pid_file.read_text())
        assert rt.state(cid)["status"] == "created" and rt.state(cid)["pid"] == pid
        rt.start(cid)
        os.write(w_in, b"ping\n")
        os.close(w_in)
        _, status = os.waitpid(pid, 0)  # the init is our child, as for the supervisor
        assert os.WEXITSTATUS(status) == 0
        with os.fdopen(r_out) as f:
            assert f.read().split("\n") == ["out", "err", "got ping", ""]
        assert rt.state(cid)["status"] == "stopped"
        rt.delete(cid)
        assert rt.list() == []
    finally:
        for cid_left in [p.name for p in (tmp_path / "rtroot").iterdir()] if (tmp_path / "rtroot").exists() else []:
            rt.delete(cid_left, force=True)


def test_readonly_rootfs_and_bind_mount(ctrpy_rt: RuntimeCLI, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("hello\n")
    mounts = base_spec()["mounts"] + [
        {"destination": "/data", "type": "bind", "source": str(shared), "options": ["rbind", "rw"]},
        {"destination": "/ro", "type": "bind", "source": str(shared), "options": ["rbind", "ro"]},
    ]
    bundle, cid, _ = bundle_with(
        tmp_path, ["sh", "-c", "touch /x 2>/dev/null || echo ROOT-RO; cat /data/in.txt; echo w > /data/out.txt; "
                               "touch /ro/y 2>/dev/null || echo BIND-RO"],
        **{"root.readonly": True, "mounts": mounts})
    r = ctrpy_rt("run", "--bundle", str(bundle), cid)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ROOT-RO", "hello", "BIND-RO"]
    assert (shared / "out.txt").read_text() == "w\n"
    assert str(shared) not in Path("/proc/self/mountinfo").read_text()  # nothing leaked to the host


def test_concurrent_containers(ctrpy_rt: RuntimeCLI, tmp_path: Path) -> None:
    import concurrent.futures

    bundles = [bundle_with(tmp_path, ["sh", "-c", "echo $$; hostname"]) for _ in range(10)]
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda b: ctrpy_rt("run", "--bundle", str(b[0]), b[1]), bundles))
    for (bundle, cid, spec), r in zip(bundles, results):
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["1", spec["hostname"]]
        assert not Cgroup(f"ctrpy-test/{cid}").exists()
    assert ctrpy_rt.ids() == []


def test_signal_forwarded_by_foreground_run(ctrpy_rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle, cid, _ = bundle_with(tmp_path, ["sh", "-c", "trap 'echo TERM; exit 9' TERM; echo ready; "
                                                         "while true; do sleep 0.05; done"])
    proc = subprocess.Popen(ctrpy_rt.argv + ["run", "--bundle", str(bundle), cid], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 9
        assert "TERM" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_unsupported_settings_are_refused_or_warned(ctrpy_rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle, cid, spec = bundle_with(tmp_path, ["true"], **{"hooks": {"prestart": [{"path": "bin/true"}]}})
    r = ctrpy_rt.create(bundle, cid)
    assert r.returncode != 0 and r.stderr == "ctrpy: hooks.prestart[0].path 'bin/true' must be absolute\n"
    assert ctrpy_rt.ids() == [] and not Cgroup(f"ctrpy-test/{cid}").exists()

    bundle, cid, spec = bundle_with(tmp_path, ["true"], **{"linux.seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}})
    r = ctrpy_rt("run", "--bundle", str(bundle), cid)
    assert (r.returncode, r.stderr) == (0, "")  # applied (tests/test_runtime_seccomp.py), no warning


def test_sysctl_and_mount_propagation(rt: RuntimeCLI, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    mounts = base_spec()["mounts"] + [
        {"destination": "/shared", "type": "bind", "source": str(shared), "options": ["rbind", "rshared"]},
        {"destination": "/private", "type": "bind", "source": str(shared), "options": ["rbind", "rprivate"]},
    ]
    host_value = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    wanted = "0" if host_value == "1" else "1"
    script = ("cat /proc/sys/net/ipv4/ip_forward; "
              "grep -E ' /(shared|private) ' /proc/self/mountinfo | cut -d' ' -f5,7")
    bundle, cid, _ = bundle_with(tmp_path, ["sh", "-c", script],
                                 **{"mounts": mounts, "linux.sysctl": {"net.ipv4.ip_forward": wanted}})
    r = rt("run", "--bundle", str(bundle), cid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == wanted
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == host_value  # the container's netns only
    props = dict(line.split(" ", 1) for line in lines[1:])
    assert props["/shared"].startswith("shared:")
    assert not props["/private"].startswith(("shared:", "master:"))


def test_driven_as_an_oci_binary_by_the_generic_driver(tmp_path: Path) -> None:
    """`ctrpy runtime` behind a one-line wrapper is an OCI runtime binary like runc: ctrpy's own runc driver
    (global --root/--log/--log-format json, then the verb) runs the whole lifecycle and reads errors from the log."""
    import sys

    from ctrpy.runtime import errors
    from ctrpy.runtime.ociruntime import OCICliRuntime

    wrapper = tmp_path / "ctrpy-oci"
    wrapper.write_text(f'#!/bin/sh\nexec {Path(sys.executable).with_name("ctrpy")} runtime "$@"\n')
    wrapper.chmod(0o755)
    oci = OCICliRuntime("wrapped", str(wrapper), tmp_path / "wroot")
    bundle, cid, _ = bundle_with(tmp_path, ["sleep", "1000"])
    out = os.open(bundle / "out.log", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        oci.create(cid, bundle, pid_file=tmp_path / "p.pid", stdio=(out, out, out))
        assert oci.state(cid)["status"] == "created"
        oci.start(cid)
        assert oci.state(cid)["status"] == "running"
        assert oci.ps(cid) == [int((tmp_path / "p.pid").read_text())]
        oci.pause(cid)
        assert oci.state(cid)["status"] == "paused"
        oci.resume(cid)
        oci.kill(cid, signal.SIGKILL)
        wait_for(lambda: oci.state(cid)["status"] == "stopped", what="stopped")
        oci.delete(cid)
        with pytest.raises(errors.NotFound) as info:
            oci.state(cid)
        assert "does not exist" in str(info.value)
    finally:
        os.close(out)
        RuntimeCLI("ctrpy", tmp_path / "wroot").cleanup()
    assert not Cgroup(f"ctrpy-test/{cid}").exists()


def test_umask_and_preserved_fds(ctrpy_rt: RuntimeCLI, tmp_path: Path) -> None:
    bundle, cid, _ = bundle_with(tmp_path, ["sh", "-c", "umask; cat <&3; cat <&4 || echo fd4-closed"],
                                 **{"process.user": {"uid": 0, "gid": 0, "umask": 0o077}})
    passed = tmp_path / "passed.txt"
    passed.write_text("through fd 3\n")
    # fd 3 and 4 are open in the runtime; only 3 is handed on
    cmd = " ".join(ctrpy_rt.argv + ["run", "--preserve-fds", "1", "--bundle", str(bundle), cid])
    r = subprocess.run(["sh", "-c", f"exec 3<{passed} 4<{passed}; exec {cmd}"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["0077", "through fd 3", "fd4-closed"]
