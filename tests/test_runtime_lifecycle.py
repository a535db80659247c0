"""The runtime-spec's operations on each status (runtime.md), for the built-in runtime: `state` reports
creating/created/running/stopped, `kill` is an error unless created or running, `delete` is an error
(with no effect) unless stopped, a created container included (runc deletes one anyway: the spec wins)."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

from support.bundle import RuntimeCLI, make_bundle, write_spec

CTRPY = str(Path(sys.executable).with_name("ctrpy"))


def wait_status(rt: RuntimeCLI, cid: str, status: str) -> None:
    deadline = time.monotonic() + 10
    while rt.state(cid).get("status") != status:
        assert time.monotonic() < deadline, rt.state(cid)
        time.sleep(0.02)


def test_state_kill_delete_per_status(tmp_path: Path) -> None:
    cid = "l" + uuid.uuid4().hex[:8]
    root = tmp_path / "root"
    seen = tmp_path / "seen.json"
    spec = make_bundle(tmp_path / cid, ["sleep", "60"], cgroups_path=f"ctrpy-test/{cid}")
    # What `state` says while the container is being created: asked from a createRuntime hook.
    spec["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": [
        "sh", "-c", f"{CTRPY} runtime --root {root} state {cid} > {seen}"]}]}
    write_spec(tmp_path / cid, spec)
    rt = RuntimeCLI("ctrpy", root)
    try:
        assert rt.create(tmp_path / cid, cid).returncode == 0
        creating = json.loads(seen.read_text())
        assert creating["status"] == "creating" and creating["id"] == cid

        st = rt.state(cid)
        assert st["status"] == "created" and st["pid"] > 0
        pid = st["pid"]
        r = rt("delete", cid)
        assert r.returncode != 0 and "not stopped: created" in r.stderr, r.stderr
        assert rt.state(cid)["status"] == "created" and os.path.exists(f"/proc/{pid}")  # no effect

        assert rt("start", cid).returncode == 0
        st = rt.state(cid)
        assert st["status"] == "running" and st["pid"] == pid
        assert rt("delete", cid).returncode != 0 and rt.state(cid)["status"] == "running"

        assert rt("kill", cid, "KILL").returncode == 0
        wait_status(rt, cid, "stopped")
        st = rt.state(cid)
        assert st["pid"] == 0 and st["bundle"] == str(tmp_path / cid)
        r = rt("kill", cid, "TERM")
        assert r.returncode != 0 and "is stopped: cannot kill" in r.stderr, r.stderr
        assert rt("delete", cid).returncode == 0
        assert rt.state(cid)["status"] == "gone"
    finally:
        rt.cleanup()


def test_kill_of_a_created_container_stops_it(tmp_path: Path) -> None:
    cid = "l" + uuid.uuid4().hex[:8]
    make_bundle(tmp_path / cid, ["sleep", "60"], cgroups_path=f"ctrpy-test/{cid}")
    rt = RuntimeCLI("ctrpy", tmp_path / "root")
    try:
        assert rt.create(tmp_path / cid, cid).returncode == 0
        assert rt("kill", cid, "KILL").returncode == 0
        wait_status(rt, cid, "stopped")
        assert rt("start", cid).returncode != 0
        assert rt("delete", cid).returncode == 0
    finally:
        rt.cleanup()


def test_a_create_that_died_half_way_is_stopped_and_deletable(tmp_path: Path) -> None:
    """A creator killed before it recorded the init: `state` says stopped, `delete` removes it all."""
    import signal
    import subprocess

    cid = "l" + uuid.uuid4().hex[:8]
    root = tmp_path / "root"
    spec = make_bundle(tmp_path / cid, ["sleep", "60"], cgroups_path=f"ctrpy-test/{cid}")
    spec["hooks"] = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "3"]}]}
    write_spec(tmp_path / cid, spec)
    rt = RuntimeCLI("ctrpy", root)
    proc = subprocess.Popen(rt.argv + ["create", "--bundle", str(tmp_path / cid), cid],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while rt.state(cid).get("status") != "creating":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert rt.state(cid)["status"] == "stopped"
        assert rt("delete", cid).returncode == 0
        assert rt.ids() == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        rt.cleanup()
