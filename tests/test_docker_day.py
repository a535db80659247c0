"""A docker user's day, command by command, through the real `ctrpy` (issue 12's "Done when").

Real image from the test registry, runc, a bridge and subnet of the test's own (support/netenv.py);
traffic only to 127.0.0.1. The flags of `run`/`create` that change the stored spec are checked in the spec
(fast), the ones a user sees at run time by running containers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from support.netenv import NetEnv, curl

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc not installed"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def day(dirs: Any, ctrpy: Any, seeded_registry: Any) -> Any:
    env = NetEnv(dirs)  # this test's own bridge and subnet in config.toml

    class Day:
        image = f"{seeded_registry.host}/busybox:latest"
        net = env

        @staticmethod
        def ok(*args: str, **kw: Any) -> Any:
            r = ctrpy(*args, **kw)
            assert r.returncode == 0, (args, r.returncode, r.stderr)
            return r

    try:
        yield Day
    finally:
        ids = ctrpy("ps", "-aq", "--no-trunc").stdout.split()
        if ids:
            ctrpy("rm", "-f", *ids)
        env.cleanup()


def wait_for(check: Any, seconds: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_docker_users_day(ctrpy: Any, day: Any, tmp_path: Path) -> None:
    img = day.image
    rt = ("--runtime", "runc")
    # Morning: the first habit works, and the image is pulled with pull's progress on stderr.
    r = day.ok("run", "--rm", *rt, img, "echo", "hello")
    assert r.stdout == "hello\n"
    assert "busybox" in r.stderr  # pull progress went to stderr
    assert day.ok("ps", "-aq").stdout == ""  # --rm removed it
    # A typo gets a suggestion; an unknown option is a usage error naming it.
    r = ctrpy("imgaes")
    assert r.returncode == 2 and "images" in r.stderr
    r = ctrpy("run", "--bogus", img)
    assert r.returncode == 2 and "--bogus" in r.stderr

    # A web server on a named volume, published on the host.
    day.ok("volume", "create", "www")
    day.ok("run", "--rm", *rt, "--network", "none", "-v", "www:/www", img, "sh", "-c",
           "echo hi from the volume > /www/index.html")
    port = free_port()
    cidfile = tmp_path / "web.cid"
    r = day.ok("run", "-d", *rt, "--name", "web", "--cidfile", str(cidfile), "-p", f"127.0.0.1:{port}:80",
               "-v", "www:/www:ro", "-l", "tier=front", "--stop-timeout", "1", img, "httpd", "-f", "-p", "80",
               "-h", "/www")
    web_id = r.stdout.strip()
    assert len(web_id) == 64 and cidfile.read_text() == web_id
    wait_for(lambda: curl(f"http://127.0.0.1:{port}/").stdout == "hi from the volume\n", what="httpd")

    ps = day.ok("ps").stdout.splitlines()
    assert ps[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert ps[1].startswith(web_id[:12] + " ") and ps[1].endswith(" web")
    assert f"127.0.0.1:{port}->80/tcp" in ps[1] and "Up " in ps[1]
    assert day.ok("ps", "-q").stdout == web_id[:12] + "\n"
    assert day.ok("ps", "-q", "--no-trunc").stdout == web_id + "\n"
    assert day.ok("ps", "--format", "{{.Names}} {{.State}} {{.Labels}}").stdout == \
        "web running ctrpy.io/name=web,tier=front\n"
    assert day.ok("ps", "--filter", "label=tier=front", "-q").stdout == web_id[:12] + "\n"
    assert day.ok("ps", "--filter", "name=nomatch", "-q").stdout == ""
    # Name, full ID and a unique prefix all name it.
    for ref in ("web", web_id, web_id[:5]):
        got = day.ok("inspect", "--format", "{{.Name}} {{.State.Status}} {{.State.Running}}", ref).stdout
        assert got == "/web running true\n"
    info = json.loads(day.ok("inspect", "web").stdout)[0]
    assert info["Id"] == web_id and info["State"]["Pid"] > 0 and info["Config"]["Labels"]["tier"] == "front"
    assert info["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert info["NetworkSettings"]["IPAddress"].count(".") == 3
    assert [m["Name"] for m in info["Mounts"] if m["Type"] == "volume"] == ["www"]
    assert day.ok("port", "web", "80").stdout == f"127.0.0.1:{port}\n"
    assert day.ok("port", "web").stdout == f"80/tcp -> 127.0.0.1:{port}\n"

    # exec, with and without a terminal.
    assert day.ok("exec", "web", "cat", "/www/index.html").stdout == "hi from the volume\n"
    assert day.ok("exec", "-e", "GREETING=hey", "-w", "/www", "web", "sh", "-c", "echo $GREETING $PWD").stdout == \
        "hey /www\n"
    r = day.ok("exec", "-t", "web", "sh", "-c", "echo $TERM; tty")
    assert "/dev/pts/" in r.stdout and r.stdout.split()[0]
    r = ctrpy("exec", "-i", "web", "sh", "-c", "tr a-z A-Z", stdin=__import__("io").StringIO("quiet\n"))
    assert r.stdout == "QUIET\n"
    assert "httpd" in day.ok("top", "web").stdout
    stats = day.ok("stats", "--no-stream", "web").stdout.splitlines()
    assert stats[0].split()[:3] == ["CONTAINER", "ID", "NAME"] and " web " in stats[1]

    # Refusals name commands that exist.
    r = ctrpy("rm", "web")
    assert r.returncode == 6 and "ctrpy stop web" in r.stderr and r.stderr.count("ctrpy:") == 1

    # Lifecycle: pause, stop (then SIGKILL after --stop-timeout), start again, restart, rename.
    day.ok("pause", "web")
    assert "(Paused)" in day.ok("ps").stdout
    day.ok("unpause", "web")
    started = time.monotonic()
    day.ok("stop", "web")
    assert time.monotonic() - started < 8  # httpd ignores nothing, but the timeout bounds it anyway
    assert day.ok("ps", "-q").stdout == ""
    assert "Exited (" in day.ok("ps", "-a").stdout
    day.ok("start", "web")
    wait_for(lambda: curl(f"http://127.0.0.1:{port}/").stdout == "hi from the volume\n", what="httpd again")
    day.ok("restart", "-t", "1", "web")
    wait_for(lambda: curl(f"http://127.0.0.1:{port}/").returncode == 0, what="httpd after restart")
    day.ok("rename", "web", "frontend")
    assert day.ok("ps", "--format", "{{.Names}}").stdout == "frontend\n"
    r = ctrpy("inspect", "web")
    assert r.returncode == 4 and "web" in r.stderr

    # A batch job: exit codes, logs with stdout and stderr apart, timestamps, tail.
    day.ok("run", "-d", *rt, "--network", "none", "--name", "job", img, "sh", "-c",
           "echo out1; echo err1 >&2; sleep 0.2; echo out2; exit 3")
    assert day.ok("wait", "job").stdout == "3\n"
    r = day.ok("logs", "job")
    assert r.stdout == "out1\nout2\n" and r.stderr == "err1\n"
    assert day.ok("logs", "--tail", "1", "job").stdout == "out2\n"
    stamped = day.ok("logs", "-t", "job").stdout.splitlines()
    assert stamped[0].endswith(" out1") and stamped[0][:4].isdigit() and "T" in stamped[0]
    assert day.ok("logs", "--since", "1h", "job").stdout == "out1\nout2\n"
    assert day.ok("logs", "--until", "2000-01-01T00:00:00Z", "job").stdout == ""
    assert "Exited (3)" in day.ok("ps", "-a", "--filter", "status=exited").stdout
    r = ctrpy("start", "-a", "job")  # an exited container starts again, without `tasks rm`
    assert r.returncode == 3 and r.stdout == "out1\nout2\n"
    assert day.ok("logs", "job").stdout == "out1\nout2\nout1\nout2\n"
    assert day.ok("logs", "-f", "job").stdout == "out1\nout2\nout1\nout2\n"  # -f ends: it has exited
    image = json.loads(day.ok("inspect", "--type", "image", img).stdout)[0]
    assert image["RepoTags"] == [img] and image["Config"]["Cmd"] == ["sh"]
    assert "SIZE" in day.ok("ps", "-a", "-s").stdout.splitlines()[0]

    # create, then start attached; the foreground run keeps the exited container without --rm.
    r = day.ok("create", *rt, "--network", "none", "--name", "later", img, "echo", "created")
    assert day.ok("ps", "-a", "--filter", "status=created", "-q", "--no-trunc").stdout == r.stdout
    assert "Created" in day.ok("ps", "-a", "--filter", "name=later").stdout
    assert day.ok("start", "-a", "later").stdout == "created\n"
    r = ctrpy("run", *rt, "--network", "none", "--name", "once", img, "sh", "-c", "exit 7")
    assert r.returncode == 7
    assert day.ok("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "once").stdout == "exited 7\n"

    # Evening clean-up.
    day.ok("kill", "frontend")
    wait_for(lambda: "Exited" in day.ok("ps", "-a", "--filter", "name=frontend").stdout, what="kill")
    removed = [w for w in day.ok("container", "prune", "-f").stdout.split() if re.fullmatch(r"[0-9a-f]{64}", w)]
    assert len(removed) == 4 and web_id in removed
    assert day.ok("ps", "-aq").stdout == ""
    assert day.ok("volume", "ls", "-q").stdout == "www\n"
    assert day.ok("volume", "prune", "-f").stdout == "www\n"
    assert day.ok("volume", "ls", "-q").stdout == ""


def spec_of(ctrpy: Any, ref: str) -> dict[str, Any]:
    cid = json.loads(ctrpy("inspect", ref).stdout)[0]["Id"]
    return json.loads(ctrpy("containers", "info", "--spec", cid).stdout)


def test_create_flags_reach_the_spec(ctrpy: Any, day: Any, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=1\n")
    label_file = tmp_path / "labels"
    label_file.write_text("from.file=yes\n")
    host_dir = tmp_path / "data"
    host_dir.mkdir()
    r = day.ok("create", "--name", "flags", "--network", "none", "-e", "HOSTVAR", "-e", "X=y", "--env-file",
               str(env_file), "-v", f"{host_dir}:/data:ro", "-v", "named:/named", "--mount",
               f"type=bind,source={host_dir},target=/m1,readonly", "--mount",
               f"type=bind,src={host_dir},dst=/m2,options=rbind:ro", "--tmpfs", "/scratch:size=1m", "-w", "/tmp",
               "-u", "1000:1000", "--group-add", "44", "-h", "box", "--domainname", "example.org", "-l", "a=b",
               "--label-file", str(label_file), "--entrypoint", "/bin/sh", "-m", "64m", "--memory-swap", "128m",
               "--cpus", "0.5", "--cpu-shares", "512", "--cpuset-cpus", "0", "--pids-limit", "50", "--ulimit",
               "nofile=100:200", "--cap-add", "NET_ADMIN", "--cap-drop", "CHOWN", "--security-opt",
               "no-new-privileges", "--read-only", "--device", "/dev/null:/dev/mynull:r", "--init", "--pid", "host",
               "--ipc", "host", "--stop-signal", "SIGINT", "--stop-timeout", "3", "--restart",
               "on-failure:2", "--log-opt", "max-size=1k", "--log-opt", "max-file=2", "--runtime", "runc",
               "--snapshotter", "native", "--pull", "missing", day.image, "-c", "true",
               env={"HOSTVAR": "from-host"})
    spec = spec_of(ctrpy, "flags")
    proc, linux = spec["process"], spec["linux"]
    assert {"HOSTVAR=from-host", "X=y", "FROM_FILE=1"} <= set(proc["env"])
    assert proc["args"] == ["/sbin/docker-init", "--", "/bin/sh", "-c", "true"]
    assert proc["cwd"] == "/tmp" and proc["user"]["uid"] == 1000 and 44 in proc["user"]["additionalGids"]
    assert proc["noNewPrivileges"] is True
    assert {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200} in proc["rlimits"]
    assert "CAP_NET_ADMIN" in proc["capabilities"]["bounding"] and "CAP_CHOWN" not in proc["capabilities"]["bounding"]
    assert spec["hostname"] == "box" and spec["domainname"] == "example.org" and spec["root"]["readonly"] is True
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert mounts["/data"]["source"] == str(host_dir) and "ro" in mounts["/data"]["options"]
    assert mounts["/named"]["source"].endswith("/volumes/default/named/_data")
    assert "ro" in mounts["/m1"]["options"] and "ro" in mounts["/m2"]["options"]
    assert mounts["/scratch"]["type"] == "tmpfs" and "size=1m" in mounts["/scratch"]["options"]
    init = mounts["/sbin/docker-init"]
    assert init["source"].endswith("/ctrpy-init") and os.access(init["source"], os.X_OK) and "ro" in init["options"]
    res = linux["resources"]
    assert res["memory"] == {"limit": 64 << 20, "swap": 128 << 20}
    assert res["cpu"]["quota"] == 50000 and res["cpu"]["shares"] == 512 and res["cpu"]["cpus"] == "0"
    assert res["pids"] == {"limit": 50}
    assert any(d["path"] == "/dev/mynull" for d in linux["devices"])
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"} in res["devices"]
    kinds = {n["type"] for n in linux["namespaces"]}
    assert not kinds & {"pid", "ipc"} and {"mount", "uts"} <= kinds  # --uts host: test_runtime_namespaces.py
    assert spec["annotations"]["ctrpy.io/log.max-size"] == "1024"
    info = json.loads(day.ok("inspect", "flags").stdout)[0]
    assert info["Config"]["StopSignal"] == "SIGINT" and info["Config"]["StopTimeout"] == 3
    assert info["Config"]["Labels"]["containerd.io/restart.policy"] == "on-failure:2"
    assert info["Config"]["Labels"]["from.file"] == "yes" and info["Config"]["Labels"]["a"] == "b"
    assert info["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert info["HostConfig"]["Runtime"] == "runc" and info["Driver"] == "native"
    assert info["Config"]["Hostname"] == "box"
    # Without -h the host name is the ID's first 12 digits, as docker's.
    r = day.ok("create", "--network", "none", day.image)
    cid = r.stdout.strip()
    assert spec_of(ctrpy, cid[:12])["hostname"] == cid[:12]
    name = json.loads(day.ok("inspect", cid).stdout)[0]["Name"]
    assert name.startswith("/") and "_" in name  # a generated docker-like name


@pytest.mark.parametrize("argv, code, words", [
    (("run", "--cpus", "999", "IMG", "true"), 3, ["range of CPUs", "CPUs available"]),
    (("run", "--restart", "sometimes", "IMG"), 3, ["restart policy"]),
    (("run", "--pull", "never", "127.0.0.1:1/none:latest"), 4, ["--pull never"]),
    (("run", "--ulimit", "nofile=x", "IMG"), 3, ["--ulimit"]),
    (("run", "-v", "rel:dst", "IMG"), 3, ["absolute"]),
    (("run", "--mount", "type=bind,target=/x", "IMG"), 3, ["source"]),
    (("run", "--security-opt", "apparmor=strict", "IMG"), 3, ["--security-opt"]),
    (("run", "--log-opt", "max-size=huge", "IMG"), 3, ["max-size"]),
    (("run", "--no-such-flag", "IMG"), 2, ["--no-such-flag"]),
    (("create",), 2, ["Usage"]),
    (("stop", "nosuch"), 4, ["nosuch"]),
], ids=["cpus", "restart", "pull-never", "ulimit", "volume", "mount", "security-opt", "log-opt", "unknown",
        "missing-image", "stop-missing"])
def test_bad_flags(ctrpy: Any, day: Any, argv: tuple[str, ...], code: int, words: list[str]) -> None:
    argv = tuple(day.image if a == "IMG" else a for a in argv)
    r = ctrpy(*argv)
    assert r.returncode == code, (r.returncode, r.stderr)
    for word in words:
        assert word in r.stderr
    if code != 2:
        assert r.stderr.count("ctrpy:") == 1 and "Traceback" not in r.stderr
    assert ctrpy("ps", "-aq").stdout == ""  # nothing half-created


def test_names_are_unique_and_prefixes_must_be(ctrpy: Any, day: Any) -> None:
    day.ok("create", "--network", "none", "--name", "one", day.image)
    r = ctrpy("create", "--network", "none", "--name", "one", day.image)
    assert r.returncode == 5 and "already in use" in r.stderr
    ids = [day.ok("create", "--network", "none", day.image).stdout.strip() for _ in range(3)]
    r = ctrpy("inspect", "--type", "container", "")
    assert r.returncode != 0
    # An ambiguous prefix is refused, whatever the random IDs above look like: two fixed IDs share "feed".
    for cid in ("feed01", "feed02"):
        assert ctrpy("containers", "create", day.image, cid, "true").returncode == 0
    r = ctrpy("rm", "feed")
    assert r.returncode == 3 and "matches 2 containers" in r.stderr, r.stderr
    day.ok("rm", "feed01", "feed02")
    day.ok("rm", *[i[:12] for i in ids], "one")
    assert day.ok("ps", "-aq").stdout == ""


def test_what_runs_sees_the_flags(ctrpy: Any, day: Any, tmp_path: Path) -> None:
    img = day.image
    base = ("run", "--rm", "--runtime", "runc", "--network", "none")
    r = day.ok(*base, "--read-only", "--tmpfs", "/scratch", "--ulimit", "nofile=64:64", "-u", "1000", "-w", "/tmp",
               img, "sh", "-c", "touch /x 2>/dev/null || echo ro; touch /scratch/y && echo tmpfs; ulimit -n; id -u; pwd")
    assert r.stdout.split() == ["ro", "tmpfs", "64", "1000", "/tmp"]
    r = day.ok(*base, "--init", img, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '")
    assert r.stdout.startswith("/sbin/docker-init -- sh")
    # A new named volume is filled from the image at its mount point (docker's copy-up), once.
    r = day.ok(*base, "-v", "etcvol:/etc", img, "sh", "-c", "grep -c root /etc/passwd; echo mine > /etc/mine")
    assert r.stdout == "1\n"
    mountpoint = Path(json.loads(day.ok("volume", "inspect", "etcvol").stdout)[0]["Mountpoint"])
    assert (mountpoint / "passwd").exists() and (mountpoint / "mine").read_text() == "mine\n"
    day.ok("run", "--runtime", "runc", "--network", "none", "--name", "anon", "-v", "/cache", img, "true")
    anon = json.loads(day.ok("inspect", "anon").stdout)[0]["Mounts"][0]
    assert anon["Type"] == "volume" and len(anon["Name"]) == 64
    day.ok("rm", "-v", "anon")  # -v removes the anonymous volume, not the named ones
    assert day.ok("volume", "ls", "-q").stdout == "etcvol\n"
    r = day.ok(*base, "-t", img, "tty")
    assert r.stdout.strip().startswith("/dev/pts/")
    r = day.ok(*base, "--entrypoint", "echo", img, "via", "entrypoint")
    assert r.stdout == "via entrypoint\n"
    r = ctrpy(*base, "-i", img, "sh", "-c", "tr a-z A-Z", stdin=__import__("io").StringIO("piped\n"))
    assert r.returncode == 0 and r.stdout == "PIPED\n"
    r = ctrpy(*base, img, "sh", "-c", "cat; echo end", stdin=__import__("io").StringIO("not attached\n"))
    assert r.stdout == "end\n"  # without -i, stdin is not attached (docker)
    r = day.ok(*base, "-h", "myhost", "--add-host", "db:10.9.9.9", img, "sh", "-c", "hostname; grep db /etc/hosts")
    assert r.stdout.split() == ["myhost", "10.9.9.9", "db"]
    r = ctrpy(*base, "-m", "32m", "--memory-swap", "32m", img, "sh", "-c", "dd if=/dev/zero of=/dev/null bs=128M count=1")
    assert r.returncode == 137 and "OOM" in r.stderr


def test_log_rotation(ctrpy: Any, day: Any) -> None:
    day.ok("run", "--runtime", "runc", "--network", "none", "--name", "chatty", "--log-opt", "max-size=2k",
           "--log-opt", "max-file=2", day.image, "sh", "-c", "i=0; while [ $i -lt 200 ]; do echo line$i; "
           "i=$((i+1)); done")
    lines = day.ok("logs", "chatty").stdout.splitlines()
    assert lines[-1] == "line199"
    assert 10 < len(lines) < 200  # the oldest lines were rotated away


def _stream_logs(dirs: Any) -> dict[str, Path]:
    """The per-stream log files (container.log, .1, ...) of the test's one container, by name."""
    return {p.name: p for base in (dirs.root, dirs.state) for p in Path(base).rglob("container.log*")}


def test_logs_keep_bytes_and_streams_apart(ctrpy: Any, day: Any, dirs: Any) -> None:
    # Quotes, a backslash, control bytes, UTF-8 (2 and 4 bytes), invalid UTF-8 (stray bytes, an encoded
    # surrogate, an overlong), a line longer than docker's 16 KiB records, and on stderr an unfinished last line.
    script = (r"""printf 'out "q" \\ \t\001\177\303\251 \360\237\231\202 \377\376 \355\240\200 \300\257\n'; """
              r"""printf 'line2\n'; head -c 40000 /dev/zero | tr '\0' x; echo; printf 'err1\nhalf' >&2""")
    day.ok("run", "-d", "--runtime", "runc", "--network", "none", "--name", "bytes", day.image, "sh", "-c", script)
    assert day.ok("wait", "bytes").stdout == "0\n"
    out = (b'out "q" \\ \t\x01\x7f\xc3\xa9 \xf0\x9f\x99\x82 \xff\xfe \xed\xa0\x80 \xc0\xaf\nline2\n'
           + b"x" * 40000 + b"\n")
    r = subprocess.run([sys.executable, "-m", "ctrpy", "--root", str(dirs.root), "--state", str(dirs.state),
                        "logs", "bytes"], capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == out and r.stderr == b"err1\nhalf"
    text = _stream_logs(dirs)["container.log"].read_bytes().decode("ascii")  # non-ASCII is escaped
    records = [json.loads(line) for line in text.splitlines()]
    assert [e["log"] for e in records if e["stream"] == "stderr"] == ["err1\n", "half"]
    stdout = [e["log"].encode("utf-8", "surrogateescape") for e in records if e["stream"] == "stdout"]
    assert stdout[:2] == out.splitlines(keepends=True)[:2] and b"".join(stdout) == out
    assert len(stdout) == 5 and all(len(e) <= 16384 for e in stdout)  # the long line in 3 records
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", e["time"]) for e in records)


@pytest.mark.parametrize("max_file", [3, 1])
def test_log_rotation_keeps_max_file_files_under_max_size(ctrpy: Any, day: Any, dirs: Any, max_file: int) -> None:
    # Still running when looked at: the files of a finished task are merged into the container's saved log.
    day.ok("run", "-d", "--runtime", "runc", "--network", "none", "--name", "rot", "--log-opt", "max-size=1k",
           "--log-opt", f"max-file={max_file}", day.image, "sh", "-c",
           "i=0; while [ $i -lt 100 ]; do echo line$i; i=$((i+1)); done; exec sleep 60")
    wait_for(lambda: day.ok("logs", "--tail", "1", "rot").stdout == "line99\n", what="the last line")
    files = _stream_logs(dirs)
    names = ["container.log"] + [f"container.log.{i}" for i in range(1, max_file)]
    assert sorted(files) == sorted(names)
    assert all(0 < files[n].stat().st_size <= 1024 for n in names)
    kept = [json.loads(line)["log"] for n in reversed(names) for line in files[n].read_text().splitlines()]
    assert kept == [f"line{i}\n" for i in range(100 - len(kept), 100)]  # the newest, in order, none lost
    assert day.ok("logs", "rot").stdout == "".join(kept)


def _pty_session(argv: list[str], env: dict[str, str]) -> int:
    """Run `argv` on a terminal, type a command until its output shows, then ctrl-p ctrl-q; its exit code."""
    import pty
    import select
    import subprocess

    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 20
    next_try = 0.0
    try:
        while b"attached-42" not in out and time.monotonic() < deadline:
            # Typed again until seen: input typed before the client switched the terminal to raw mode is flushed.
            if time.monotonic() >= next_try:
                os.write(master, b"echo attached-$((40+2))\n")
                next_try = time.monotonic() + 2
            if select.select([master], [], [], 0.5)[0]:
                out += os.read(master, 4096)
        assert b"attached-42" in out, out
        os.write(master, b"\x10\x11")  # ctrl-p ctrl-q
        return proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_attach_detach_keys(ctrpy: Any, day: Any, dirs: Any) -> None:
    ctrpy_bin = str(Path(__import__("sys").executable).parent / "ctrpy")
    base = [ctrpy_bin, "--root", str(dirs.root), "--state", str(dirs.state)]
    env = {**os.environ, "CTRPY_CONFIG": str(day.net.config_path)}
    code = _pty_session(base + ["run", "-it", "--runtime", "runc", "--network", "none", "--name", "tty", day.image,
                                "sh"], env)
    assert code == 0
    assert "Up " in day.ok("ps", "--filter", "name=tty").stdout  # still running after detaching
    assert _pty_session(base + ["attach", "tty"], env) == 0
    assert "Up " in day.ok("ps", "--filter", "name=tty").stdout


def test_cp_both_ways_stays_inside(ctrpy: Any, day: Any, tmp_path: Path) -> None:
    day.ok("run", "-d", "--runtime", "runc", "--network", "none", "--name", "box", day.image, "sh", "-c",
           "mkdir -p /data && ln -s /etc /data/esc && echo inside > /data/f && chown 1000:1000 /data/f && sleep 60")
    wait_for(lambda: ctrpy("exec", "box", "test", "-f", "/data/f").returncode == 0, what="setup")
    out = tmp_path / "out"
    out.mkdir()
    day.ok("cp", "box:/data/f", str(out))
    assert (out / "f").read_text() == "inside\n" and (out / "f").stat().st_uid == 1000  # owner kept
    # A link in the container resolves inside it: this is the container's passwd, not the host's.
    day.ok("cp", "box:/data/esc/passwd", str(out / "pw"))
    assert (out / "pw").read_text() != Path("/etc/passwd").read_text()
    host = tmp_path / "hostfile"
    host.write_text("from host\n")
    day.ok("cp", str(host), "box:/data/esc/new")  # written at the container's /etc/new
    assert day.ok("exec", "box", "cat", "/etc/new").stdout == "from host\n"
    assert not Path("/etc/new").exists()
    day.ok("cp", "box:/data/.", str(out / "all"))
    assert sorted(p.name for p in (out / "all").iterdir()) == ["esc", "f"]
    assert (out / "all" / "esc").is_symlink()
    day.ok("stop", "-t", "0", "box")  # a stopped container: its snapshot is mounted for the copy
    day.ok("cp", "box:/data/f", str(out / "f2"))
    assert (out / "f2").read_text() == "inside\n"
    r = ctrpy("cp", str(host), str(out))
    assert r.returncode == 2  # neither side names a container
    r = ctrpy("cp", "box:/no/such", str(out))
    assert r.returncode == 4 and r.stderr.count("ctrpy:") == 1


def test_events_follow_filter_format(ctrpy: Any, day: Any, dirs: Any) -> None:
    import subprocess
    import sys

    argv = [str(Path(sys.executable).parent / "ctrpy"), "--root", str(dirs.root), "--state", str(dirs.state),
            "events", "-f", "--filter", "type=task", "--filter", "event=start", "--format", "{{.Topic}}"]
    env = {**os.environ, "CTRPY_CONFIG": str(day.net.config_path)}
    day.ok("create", "--network", "none", "--runtime", "runc", "--name", "before", day.image, "true")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(1.0)  # -f shows only what happens from now on
        day.ok("run", "--rm", "--runtime", "runc", "--network", "none", "--name", "ev", day.image, "true")
        time.sleep(1.0)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert out.splitlines() == ["/tasks/start"], (out, err)
    r = day.ok("events", "--filter", "container=before", "--format", "{{.Topic}}")
    assert r.stdout.splitlines() == ["/containers/create"]


def test_more_flags_at_run_time(ctrpy: Any, day: Any) -> None:
    img = day.image
    base = ("run", "--rm", "--runtime", "runc")
    r = day.ok(*base, "--pull", "always", "--platform", "linux/amd64", "--network", "none", img, "true")
    assert "busybox" in r.stderr  # pulled again, with progress
    r = day.ok(*base, "--network", "none", "--privileged", img, "sh", "-c", "mkdir -p /mnt && mount -t tmpfs t /mnt && echo mounted")
    assert r.stdout == "mounted\n"
    r = ctrpy(*base, "--network", "none", img, "sh", "-c", "mkdir -p /mnt; mount -t tmpfs t /mnt 2>/dev/null || echo refused")
    assert r.stdout == "refused\n"
    day.ok("run", "-d", "--runtime", "runc", "--network", "none", "--name", "base", "-P", img, "sleep", "60")
    assert day.ok("inspect", "--format", "{{.HostConfig.PublishAllPorts}}", "base").stdout == "true\n"
    own = day.ok("exec", "base", "readlink", "/proc/self/ns/net").stdout
    shared = day.ok(*base, "--network", "container:base", img, "readlink", "/proc/self/ns/net").stdout
    assert own == shared and own.startswith("net:[")
    r = day.ok(*base, "--network", "none", "--dns", "10.0.0.53", "--dns-search", "corp.example", img,
               "cat", "/etc/resolv.conf")
    assert "nameserver 10.0.0.53" in r.stdout and "corp.example" in r.stdout
    assert day.ok("exec", "-u", "1000", "base", "id", "-u").stdout == "1000\n"
    # exec --privileged: every capability; runc still applies the container's (default) seccomp filter to
    # exec'd processes, as docker does (moby/moby#21984), so mounting is checked on the built-in runtime.
    host_caps = next(line for line in open("/proc/self/status") if line.startswith("CapBnd:")).split()[1]
    caps = day.ok("exec", "--privileged", "base", "grep", "CapEff", "/proc/self/status").stdout.split()
    assert caps == ["CapEff:", host_caps]
    day.ok("run", "-d", "--network", "none", "--name", "own", img, "sleep", "60")
    mount = "mkdir -p /mnt && mount -t tmpfs t /mnt 2>/dev/null && echo ok || echo refused"
    assert day.ok("exec", "--privileged", "own", "sh", "-c", mount).stdout == "ok\n"
    assert day.ok("exec", "own", "sh", "-c", mount).stdout == "refused\n"
    assert day.ok("exec", "-d", "base", "sh", "-c", "echo bg > /tmp/bg").stdout == ""
    wait_for(lambda: ctrpy("exec", "base", "cat", "/tmp/bg").stdout == "bg\n", what="exec -d")
    r = day.ok(*base, "--network", "none", "-d", "--name", "gone", img, "sh", "-c", "exit 4")
    assert day.ok("wait", "gone").stdout == "4\n"
    assert day.ok("ps", "-aq", "--filter", "name=gone").stdout == ""  # -d --rm: removed once it exited
    day.ok(*base, "--network", "none", "-d", "--name", "gone2", img, "true")
    wait_for(lambda: day.ok("ps", "-aq", "--filter", "name=gone2").stdout == "", what="auto-remove on ps")


def test_peers_find_each_other_by_name(ctrpy: Any, day: Any) -> None:
    from support.netenv import free_subnet

    day.net.bridges.append(f"ctpa{day.net.tag}")  # removed by the fixture even if the test fails
    subnet = free_subnet()
    day.ok("network", "create", "--subnet", subnet, "--bridge", f"ctpa{day.net.tag}", f"app{day.net.tag}")
    fixed = subnet.rsplit(".", 1)[0] + ".77"
    net = ("--runtime", "runc", "--network", f"app{day.net.tag}")
    day.ok("run", "-d", *net, "--name", "db", "--ip", fixed, day.image, "sleep", "60")
    day.ok("run", "-d", *net, "--name", "api", day.image, "sleep", "60")
    db_ip = day.ok("inspect", "--format", "{{.NetworkSettings.IPAddress}}", "db").stdout.strip()
    assert db_ip == fixed
    hosts = day.ok("exec", "api", "cat", "/etc/hosts").stdout
    assert f"{db_ip}\tdb " in hosts
    assert "api" in day.ok("exec", "db", "cat", "/etc/hosts").stdout  # updated when api attached
    r = day.ok("exec", "api", "ping", "-c", "1", "-W", "3", "db")
    assert "1 packets received" in r.stdout
    day.ok("rm", "-f", "db")
    assert "db" not in day.ok("exec", "api", "cat", "/etc/hosts").stdout.split()  # removed on detach
    day.ok("rm", "-f", "api")
    day.ok("network", "rm", f"app{day.net.tag}")


def test_diff_and_commit(ctrpy: Any, day: Any) -> None:
    img = day.image
    base = ("--runtime", "runc", "--network", "none")
    day.ok("run", *base, "--name", "work", img, "sh", "-c",
           "echo new > /added; echo x >> /etc/passwd; rm /bin/vi; mkdir -p /opt/app && echo app > /opt/app/f")
    changes = day.ok("diff", "work").stdout.splitlines()
    assert {"A /added", "C /etc/passwd", "D /bin/vi", "A /opt/app/f", "C /etc"} <= set(changes)
    assert changes == sorted(changes, key=lambda line: line[2:])
    r = day.ok("commit", "-c", 'CMD ["cat", "/added"]', "-c", "ENV MODE=prod", "-m", "first commit", "work",
               "example.test/mine:v1")
    assert r.stdout.startswith("docker.io/") is False and "example.test/mine:v1 sha256:" in r.stdout
    r = day.ok("run", "--rm", *base, "example.test/mine:v1")
    assert r.stdout == "new\n"  # the committed CMD, on the committed layer
    r = day.ok("run", "--rm", *base, "example.test/mine:v1", "sh", "-c",
               "echo $MODE; test -e /bin/vi || echo no-vi; cat /opt/app/f")
    assert r.stdout.split() == ["prod", "no-vi", "app"]
    r = ctrpy("commit", "-c", "FROBNICATE x", "work", "example.test/mine:v2")
    assert r.returncode == 3 and "FROBNICATE" in r.stderr
    # -P publishes what the image exposes, on a free host port.
    day.ok("commit", "-c", "EXPOSE 80", "-c", 'CMD ["httpd", "-f", "-p", "80", "-h", "/opt/app"]', "work",
           "example.test/mine:web")
    day.ok("run", "-d", "--runtime", "runc", "-P", "--name", "pub", "example.test/mine:web")
    host = day.ok("port", "pub", "80").stdout.strip()
    assert host.startswith("0.0.0.0:") and int(host.rsplit(":", 1)[1]) > 0
    wait_for(lambda: curl(f"http://127.0.0.1:{host.rsplit(':', 1)[1]}/f").stdout == "app\n", what="-P httpd")


def test_one_name_wins_a_race(ctrpy: Any, day: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: ctrpy("create", "--network", "none", "--name", "race", day.image),
                                range(4)))
    assert sorted(r.returncode for r in results) == [0, 5, 5, 5]
    assert len(day.ok("ps", "-aq").stdout.split()) == 1
