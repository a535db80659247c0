"""`ctrpy containers ...`: metadata, the generated spec, flags, bad input; image-based containers."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from support.runtimes import cgroup_dirs, cleanup, rootfs, runtime  # noqa: F401 - fixtures
from support.tty import run_on_pty

pytestmark = pytest.mark.usefixtures("cleanup")


def spec_of(ctrpy: Any, cid: str) -> dict[str, Any]:
    r = ctrpy("containers", "info", "--spec", cid)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_create_ls_info_label_rm(ctrpy: Any, rootfs: Path) -> None:
    r = ctrpy("containers", "create", "--runtime", "runc", "--rootfs", str(rootfs), "--label", "app=web",
              "c1", "sh", "-c", "echo hi")
    assert r.returncode == 0, r.stderr
    assert ctrpy("c", "ls", "-q").stdout == "c1\n"
    table = ctrpy("containers", "ls").stdout.splitlines()
    assert table[0].split() == ["CONTAINER", "IMAGE", "RUNTIME", "CREATED"]
    assert table[1].split()[:3] == ["c1", "-", "runc"]
    info = json.loads(ctrpy("containers", "info", "c1").stdout)
    assert info["labels"] == {"app": "web"} and info["runtime"] == "runc"
    assert info["spec"]["process"]["args"] == ["sh", "-c", "echo hi"]
    assert ctrpy("containers", "label", "c1", "tier=front", "app=").returncode == 0
    assert json.loads(ctrpy("containers", "label", "c1").stdout) == {"tier": "front"}
    assert ctrpy("containers", "ls", "-q", "labels.tier==front").stdout == "c1\n"
    r = ctrpy("containers", "create", "--runtime", "runc", "--rootfs", str(rootfs), "c1", "true")
    assert r.returncode == 5 and "already exists" in r.stderr
    assert ctrpy("containers", "rm", "c1").returncode == 0
    assert ctrpy("containers", "rm", "c1").returncode == 4


def test_default_spec(ctrpy: Any, rootfs: Path) -> None:
    ctrpy("containers", "create", "--rootfs", str(rootfs), "d1", "true")
    spec = spec_of(ctrpy, "d1")
    proc = spec["process"]
    assert proc["noNewPrivileges"] is True
    assert proc["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert len(proc["capabilities"]["bounding"]) == 14 and "CAP_SYS_ADMIN" not in proc["capabilities"]["bounding"]
    assert {n["type"] for n in spec["linux"]["namespaces"]} == {"pid", "ipc", "uts", "mount", "network"}
    dests = {m["destination"]: m for m in spec["mounts"]}
    for path in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"):
        assert path in dests
    assert "ro" in dests["/sys"]["options"] and "ro" in dests["/sys/fs/cgroup"]["options"]
    assert "/proc/kcore" in spec["linux"]["maskedPaths"] and "/proc/sys" in spec["linux"]["readonlyPaths"]
    assert {d["path"] for d in spec["linux"]["devices"]} >= {"/dev/null", "/dev/zero", "/dev/urandom", "/dev/tty"}
    assert spec["linux"]["cgroupsPath"].endswith("/default-d1")
    assert spec["hostname"] == "d1"
    assert spec["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"  # containerd/moby default profile
    assert spec["root"]["path"] == str(rootfs)


def test_flags_reach_the_spec(ctrpy: Any, rootfs: Path, tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=1\n\nSHARED=file\n")
    r = ctrpy("containers", "create", "--rootfs", str(rootfs), "-e", "A=1", "--env-file", str(env_file),
              "-e", "SHARED=flag", "--cwd", "/tmp", "--user", "user", "--hostname", "h1", "--read-only",
              "--cap-add", "NET_ADMIN", "--cap-drop", "CAP_CHOWN", "--memory-limit", "64m", "--cpus", "1.5",
              "--cpu-shares", "512", "--pids-limit", "50", "--net-host", "--tty",
              "--mount", f"type=bind,src={tmp_path},dst=/data,options=ro", "f1", "sh")
    assert r.returncode == 0, r.stderr
    spec = spec_of(ctrpy, "f1")
    proc = spec["process"]
    assert "A=1" in proc["env"] and "FROM_FILE=1" in proc["env"] and "SHARED=flag" in proc["env"]
    assert "SHARED=file" not in proc["env"]
    assert proc["cwd"] == "/tmp" and proc["terminal"] is True
    assert proc["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [2000]}
    caps = proc["capabilities"]["bounding"]
    assert "CAP_NET_ADMIN" in caps and "CAP_CHOWN" not in caps
    assert spec["hostname"] == "h1" and spec["root"]["readonly"] is True
    res = spec["linux"]["resources"]
    assert res["memory"]["limit"] == 64 << 20
    assert res["cpu"] == {"period": 100000, "quota": 150000, "shares": 512}
    assert res["pids"] == {"limit": 50}
    assert "network" not in {n["type"] for n in spec["linux"]["namespaces"]}
    data = next(m for m in spec["mounts"] if m["destination"] == "/data")
    assert data["source"] == str(tmp_path) and "ro" in data["options"]


@pytest.mark.parametrize("args, code, text", [
    (["--rootfs", "/nonexistent", "x1", "true"], 4, "does not exist"),
    (["--rootfs", "ROOTFS", "bad id!", "true"], 3, "invalid container id"),
    (["--rootfs", "ROOTFS", "--runtime", "nosuch", "x2", "true"], 3, "unknown runtime"),
    (["--rootfs", "ROOTFS", "--user", "ghost", "x3", "true"], 4, "user 'ghost' not found"),
    (["--rootfs", "ROOTFS", "--mount", "type=bind,dst=/x", "x4", "true"], 3, "bind needs src"),
    (["--rootfs", "ROOTFS", "--cap-add", "CAP_NOPE", "x5", "true"], 3, "unknown capability"),
    (["--rootfs", "ROOTFS", "--memory-limit", "lots", "x6", "true"], 2, "invalid size"),
    (["--rootfs", "ROOTFS", "x7"], 3, "no command"),
    (["--rootfs", "ROOTFS", "--cwd", "relative", "x8", "true"], 3, "absolute"),
    (["no-such-image:latest", "x9", "true"], 4, "not found"),
])
def test_bad_input(ctrpy: Any, rootfs: Path, args: list[str], code: int, text: str) -> None:
    args = [str(rootfs) if a == "ROOTFS" else a for a in args]
    r = ctrpy("containers", "create", *args)
    assert r.returncode == code, r.stderr
    assert text in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 if code != 2 else True
    assert ctrpy("containers", "ls", "-q").stdout == ""  # nothing half-written


def test_user_flag_runs_as_that_user(ctrpy: Any, runtime: str, rootfs: Path) -> None:
    r = ctrpy("run", "--rm", "--runtime", runtime, "--rootfs", str(rootfs), "--user", "user", "u1",
              "sh", "-c", "id -u; id -g; id -G")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1000", "1000", "1000", "2000"]
    r = ctrpy("run", "--rm", "--runtime", runtime, "--rootfs", str(rootfs), "--user", "1234:5", "u2", "id")
    assert "uid=1234" in r.stdout and "gid=5" in r.stdout


def test_read_only_rootfs_and_bind_mount(ctrpy: Any, runtime: str, rootfs: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in").write_text("from-host\n")
    r = ctrpy("run", "--rm", "--runtime", runtime, "--rootfs", str(rootfs), "--read-only",
              "--mount", f"type=bind,src={data},dst=/data", "ro1", "sh", "-c",
              "touch /newfile 2>/dev/null && echo root-rw || echo root-ro; cat /data/in; echo out > /data/out")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["root-ro", "from-host"]
    assert (data / "out").read_text() == "out\n"
    assert not (rootfs / "newfile").exists()


def test_rm_live_task_needs_force(ctrpy: Any, runtime: str, rootfs: Path, dirs: Any) -> None:
    ctrpy("run", "-d", "--runtime", runtime, "--rootfs", str(rootfs), "live", "sleep", "60")
    pid = json.loads(ctrpy("tasks", "ls", "--format", "json").stdout)[0]["pid"]
    r = ctrpy("containers", "rm", "live")
    assert r.returncode == 6 and "--force" in r.stderr
    assert Path(f"/proc/{pid}").exists()
    assert ctrpy("containers", "rm", "--force", "live").returncode == 0
    assert ctrpy("containers", "ls", "-q").stdout == ""
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    assert cgroup_dirs("live") == []
    assert list(dirs.state.glob("default/*")) == []


def test_image_container(ctrpy: Any, runtime: str, seeded_registry: Any, dirs: Any) -> None:
    ref = f"{seeded_registry.host}/busybox:latest"
    r = ctrpy("pull", ref)
    assert r.returncode == 0, r.stderr
    r = ctrpy("containers", "create", "--runtime", runtime, ref, "img1")
    assert r.returncode == 0, r.stderr
    spec = spec_of(ctrpy, "img1")
    assert spec["process"]["args"] == ["sh"]  # the image's Cmd
    info = json.loads(ctrpy("containers", "info", "img1").stdout)
    assert info["image"] == ref and info["snapshot_key"] == "img1"
    assert ctrpy("containers", "rm", "img1").returncode == 0
    r = ctrpy("containers", "run", "--rm", "--runtime", runtime, "--user", "app", ref, "img2", "sh", "-c",
              "id -u; cat /etc/hostname; echo written > /tmp/x; cat /tmp/x")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1000", "img2", "written"]
    # The snapshot went with the container; nothing is left mounted.
    snaps = ctrpy("snapshots", "ls")
    assert "img2" not in snaps.stdout
    with open("/proc/self/mounts") as f:
        assert str(dirs.state) not in f.read()
    r = ctrpy("containers", "run", "--runtime", runtime, ref, "img3", "sh", "-c", "exit 3")
    assert r.returncode == 3
    assert ctrpy("containers", "ls", "-q").stdout == "img3\n"  # without --rm the container stays


def test_ps_fits_the_terminal(ctrpy: Any, rootfs: Path, dirs: Any) -> None:
    """Issue 12: on a terminal `ps` never wraps (widest cells cut with an ellipsis), `--no-trunc` shows
    everything, and without a terminal the columns are docker's, uncut."""
    command = ["sh", "-c", "echo " + "x" * 70]
    for cid, name in (("c1", "web"), ("a-container-with-a-rather-long-identifier", "x" * 30 + "-name")):
        r = ctrpy("containers", "create", "--runtime", "runc", "--rootfs", str(rootfs), "--label",
                  f"ctrpy.io/name={name}", cid, *command)
        assert r.returncode == 0, r.stderr
    argv = [str(Path(sys.executable).parent / "ctrpy"), "--root", str(dirs.root), "--state", str(dirs.state),
            "ps", "-a"]
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES") and not k.startswith("CTRPY_")}
    env.update(TERM="xterm", NO_COLOR="1", CTRPY_CONFIG=str(dirs.root.parent / "config.toml"))
    for columns in (60, 80):
        out = run_on_pty(argv, env, columns).decode().replace("\r", "")
        lines = [line for line in out.split("\n") if line.strip()]
        assert len(lines) == 3, out  # a header and one line per container
        assert max(len(line) for line in lines) <= columns, out
        assert "…" in out
        # IDs cut to 12 as docker, and (with the names) the last columns a narrow terminal cuts
        assert lines[0].startswith("CONTAINER ID   ") and lines[1].startswith("a-container-   "), out
        assert lines[2].endswith("   web"), out
    wide = run_on_pty(argv + ["--no-trunc"], env, 60).decode()
    assert "x" * 70 in wide and "a-container-with-a-rather-long-identifier" in wide and "x" * 30 + "-name" in wide
    plain = ctrpy("ps", "-a").stdout.splitlines()  # no terminal: nothing cut but docker's ID and COMMAND
    assert len(plain) == 3 and plain[1].endswith("x" * 30 + "-name") and plain[2].endswith(" web")
    assert f'"{" ".join(command)[:19]}…"' in plain[1]
