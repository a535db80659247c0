"""`run --init` (ctrpy-init, csrc/init.c, as PID 1) and `run --group-add NAME`, through the real `ctrpy`.

The image is built here: Debian's busybox-static with no libc at all (so the init must be static), plus a
layer whose /etc/group is an absolute symlink to a file of that layer (resolved inside the rootfs, never on
the host, where Debian's own /etc/group also has an `audio` and a `video` group).
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctrpy.runtime.client import Client
from support.store import ingest_layout
from support.testimages import LayerBuilder, build_layout, busybox_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

GROUPS = "root:x:0:\naudio:x:29:\nbuilders:x:4242:\n"


@pytest.fixture(scope="module")
def layout(tmp_path_factory: Any) -> Path:
    path = tmp_path_factory.mktemp("init-layout") / "bb"
    groups = LayerBuilder().dir("etc").dir("etc/real").file("etc/real/group", GROUPS).symlink(
        "etc/group", "/etc/real/group").bytes()
    build_layout(path, [busybox_layer(), groups])
    return path


@pytest.fixture
def box(dirs: Any, ctrpy: Any, layout: Path) -> Iterator[Any]:
    (dirs.root.parent / "config.toml").write_text('[network]\ndefault = "none"\n')
    client = Client(dirs.root, dirs.state)
    ingest_layout(client, layout, "bb")
    client.db.close()

    class Box:
        @staticmethod
        def ok(*args: str, **kw: Any) -> Any:
            r = ctrpy(*args, **kw)
            assert r.returncode == 0, (args, r.returncode, r.stderr)
            return r

    try:
        yield Box
    finally:
        ids = ctrpy("ps", "-aq", "--no-trunc").stdout.split()
        if ids:
            ctrpy("rm", "-f", *ids)


def states(ctrpy: Any, name: str) -> dict[int, tuple[str, str]]:
    """PID -> (command, state) of every process in the container, read from its own /proc."""
    r = ctrpy("exec", name, "sh", "-c", "cat /proc/[0-9]*/stat")
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        match = re.match(r"(\d+) \((.*)\) (\S)", line)
        assert match, line
        out[int(match[1])] = (match[2], match[3])
    return out


def wait_for(check: Any, seconds: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("runtime", ["ctrpy", "runc"])
def test_init_reaps_orphans_and_is_pid_1(ctrpy: Any, box: Any, runtime: str) -> None:
    # Two orphans (their subshells exit at once) are re-parented to PID 1; the program then execs a program that
    # never waits. Without an init, PID 1 is that program and the orphans stay zombies (the control).
    orphans = "(sleep 0.1 &); (sleep 0.1 &); exec sleep 60"
    box.ok("run", "-d", "--runtime", runtime, "--name", "plain", "bb", "sh", "-c", orphans)
    box.ok("run", "-d", "--runtime", runtime, "--init", "--name", "reaped", "bb", "sh", "-c", orphans)
    time.sleep(0.5)
    wait_for(lambda: sum(s == "Z" for _, s in states(ctrpy, "plain").values()) == 2, what="the control's zombies")
    procs = states(ctrpy, "reaped")
    assert procs[1] == ("docker-init", "S") and ("sleep", "S") in procs.values()
    assert not [p for p, (_, s) in procs.items() if s == "Z"], procs
    # `top` lists the init first (host PIDs), the program under it.
    lines = box.ok("top", "reaped").stdout.splitlines()
    assert lines[1].split(None, 2)[2].startswith("/sbin/docker-init -- sh -c"), lines
    assert any(line.split(None, 2)[2] == "sleep 60" for line in lines[2:]), lines
    # `ps` and `inspect` show the command as given, as docker's do (the init is only in the OCI spec).
    assert box.ok("ps", "--format", "{{.Command}}", "--filter", "name=reaped").stdout.strip() == f"sh -c {orphans}"
    assert box.ok("inspect", "--format", "{{.Path}} {{json .Args}}", "reaped").stdout.strip() == \
        f'sh ["-c","{orphans}"]'
    box.ok("rm", "-f", "plain", "reaped")


def test_stop_signal_reaches_the_program_and_exit_codes_pass_through(ctrpy: Any, box: Any) -> None:
    # The program traps SIGTERM: `stop` returns well before its 20 s timeout, and the trap's status (7), not
    # the init's or a SIGKILL's, is the container's exit code.
    box.ok("run", "-d", "--init", "--name", "trap", "bb", "sh", "-c",
           "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done")
    wait_for(lambda: "ready" in ctrpy("logs", "trap").stdout, what="the trap")
    started = time.monotonic()
    box.ok("stop", "-t", "20", "trap")
    assert time.monotonic() - started < 10
    assert box.ok("logs", "trap").stdout == "ready\ngot-term\n"
    assert box.ok("inspect", "--format", "{{.State.ExitCode}}", "trap").stdout.strip() == "7"
    # Other signals go through too (`kill -s`), and a signalled program gives 128+N.
    box.ok("run", "-d", "--init", "--name", "usr1", "bb", "sh", "-c", "trap 'exit 9' USR1; while :; do sleep 0.1; done")
    box.ok("kill", "-s", "USR1", "usr1")
    assert box.ok("wait", "usr1").stdout.strip() == "9"
    assert ctrpy("run", "--rm", "--init", "bb", "sh", "-c", "exit 3").returncode == 3
    assert ctrpy("run", "--rm", "--init", "bb", "sh", "-c", "kill -USR1 $$").returncode == 128 + 10
    # With CTRPY_INIT_KILL_PROCESS_GROUP=1 (tini's -g) the whole group gets it: the shell traps SIGTERM (and runs
    # the trap only once its foreground `sleep` ends), the `sleep` of its group dies of it, so the shell goes on
    # at once; without it, only the shell gets SIGTERM and still waits for its `sleep`.
    ignoring = "trap 'echo trapped' TERM; echo ready; sleep 60; echo sleep-ended"
    box.ok("run", "-d", "--init", "-e", "CTRPY_INIT_KILL_PROCESS_GROUP=1", "--name", "group", "bb", "sh", "-c",
           ignoring)
    box.ok("run", "-d", "--init", "--name", "single", "bb", "sh", "-c", ignoring)
    for name in ("group", "single"):
        wait_for(lambda: "ready" in ctrpy("logs", name).stdout, what=name)
        box.ok("kill", "-s", "TERM", name)
    started = time.monotonic()
    assert box.ok("wait", "group").stdout.strip() == "0"
    assert time.monotonic() - started < 30  # not the 60 s of a `sleep` that missed the signal
    assert box.ok("logs", "group").stdout == "ready\ntrapped\nsleep-ended\n"
    time.sleep(0.5)
    assert box.ok("inspect", "--format", "{{.State.Running}}", "single").stdout.strip() == "true"
    box.ok("rm", "-f", "group", "single")
    # --rm: those two are gone once their exit status came back.
    assert set(box.ok("ps", "-a", "--format", "{{.Names}}").stdout.split()) == {"trap", "usr1"}


def test_init_runs_in_an_image_without_libc_and_reports_exec_errors(ctrpy: Any, box: Any) -> None:
    r = box.ok("run", "--rm", "--init", "bb", "sh", "-c", "ls /lib /lib64 /usr/lib 2>&1; readlink /proc/1/exe")
    assert "No such file or directory" in r.stdout and r.stdout.splitlines()[-1] == "/sbin/docker-init"
    # The init reports a program it cannot run in one line, with the shell's and docker's 127/126.
    r = ctrpy("run", "--rm", "--init", "bb", "/no/such")
    assert r.returncode == 127 and "ctrpy-init: exec /no/such: No such file or directory" in r.stderr
    r = ctrpy("run", "--rm", "--init", "bb", "/etc/real/group")
    assert r.returncode == 126 and "Permission denied" in r.stderr
    assert box.ok("ps", "-aq").stdout == ""


def test_init_on_a_terminal_gives_the_program_the_foreground_and_ctrl_c(dirs: Any, box: Any) -> None:
    argv = [str(Path(sys.executable).parent / "ctrpy"), "--root", str(dirs.root), "--state", str(dirs.state),
            "run", "-it", "--rm", "--init", "bb", "sh", "-c",
            "cut -d' ' -f5,8 /proc/self/stat | sed 's/^/pgrp,tpgid=/'; echo ready; sleep 60"]
    env = {**os.environ, "CTRPY_CONFIG": str(dirs.root.parent / "config.toml")}
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    out = b""
    try:
        deadline = time.monotonic() + 20
        while b"ready" not in out and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                out += os.read(master, 4096)
        match = re.search(rb"pgrp,tpgid=(\d+) (\d+)", out)
        assert match and match[1] == match[2] and match[1] != b"1", out  # the program's group owns the terminal
        os.write(master, b"\x03")  # ctrl-c, typed on the terminal: SIGINT to the foreground group
        assert proc.wait(timeout=15) == 128 + 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_group_add_resolves_names_in_the_image(ctrpy: Any, box: Any) -> None:
    r = box.ok("run", "--rm", "--group-add", "audio", "--group-add", "builders", "--group-add", "1234", "bb",
               "id", "-G")
    assert set(r.stdout.split()) == {"0", "29", "4242", "1234"}
    assert "29" in box.ok("run", "--rm", "-u", "1000:1000", "--group-add", "audio", "bb", "id", "-G").stdout.split()
    # `video` is in the host's /etc/group, not in the image's: unknown, one line naming it, docker's 125.
    r = ctrpy("run", "--rm", "--group-add", "video", "bb", "id", "-G")
    assert r.returncode == 125, r.stderr
    assert r.stderr.strip().splitlines() == ["ctrpy: group 'video' (--group-add) not found in the container's "
                                             "/etc/group"]
    assert ctrpy("create", "--group-add", "nosuch", "bb").returncode == 125
    assert box.ok("ps", "-aq").stdout == ""  # nothing half-made


def test_rootfs_reader_resolves_links_inside_the_root(tmp_path: Path) -> None:
    from ctrpy.runtime.oci import resolve_groups, rootfs_reader

    root = tmp_path / "rootfs"
    (root / "etc/real").mkdir(parents=True)
    (root / "etc/real/group").write_text(GROUPS)
    (root / "etc/group").symlink_to("/etc/real/group")  # absolute: the rootfs's, not the host's
    (root / "etc/rel").symlink_to("../etc/./real/../real/group")
    (root / "etc/up").symlink_to("../../../../../../etc/real/group")  # `..` stops at the root
    (root / "etc/passwd").symlink_to("/etc/passwd")  # a link to itself in the root: a loop, not the host's
    os.mkfifo(root / "etc/fifo")
    read = rootfs_reader(root)
    assert read("/etc/group") == read("etc/rel") == read("/etc/up") == GROUPS.encode()
    assert read("/etc/passwd") is None and read("/etc/fifo") is None and read("/etc") is None
    assert read("/etc/missing") is None and rootfs_reader(tmp_path / "none")("/etc/group") is None
    assert resolve_groups(["audio", "7", "builders"], read) == [29, 7, 4242]


def test_init_missing_from_the_install_is_a_clear_error(tmp_path: Path) -> None:
    from ctrpy.runtime import dockerrun, errors

    with pytest.raises(errors.Unavailable, match=r"--init needs .*/ctrpy-init, built with ctrpy"):
        dockerrun.with_init(str(tmp_path / "ctrpy-init"))
