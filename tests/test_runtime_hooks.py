"""OCI hooks: each kind runs at its point of the lifecycle with the state on stdin (compared with runc),
and fails as the runtime-spec says: prestart/createRuntime/createContainer/startContainer fail the
operation and leave nothing running; poststart/poststop only warn; a timeout kills the hook."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.bundle import RuntimeCLI, make_bundle, write_spec

from ctrpy.runtime.cgroups import Cgroup

KINDS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]
# Records the state and, for hooks outside the container, what the container's root is at that moment
# (the host's before pivot_root: the busybox rootfs has no /usr/lib). Inside the container after
# pivot_root (startContainer) the host's OUT is gone: /out is its bind mount.
SCRIPT = ('k=$1; if [ -d "$OUT" ]; then d=$OUT; else d=/out; fi; cat > $d/$k.json; echo $k >> $d/order; '
          'pid=$(sed -n \'s/.*"pid": *\\([0-9]*\\).*/\\1/p\' $d/$k.json); '
          'if [ -n "$pid" ] && [ "$pid" != 0 ] && [ -e /proc/$pid/root ]; '
          'then '
          'if [ -d /proc/$pid/root/usr/lib ]; then echo host; else echo container; fi > $d/$k.root; fi')


def hook(kind: str, out: Path, script: str = SCRIPT, timeout: int | None = None) -> dict[str, Any]:
    h: dict[str, Any] = {"path": "/bin/sh", "args": ["sh", "-c", script, "hook", kind],
                         "env": ["PATH=/usr/bin:/bin", f"OUT={out}"]}
    if timeout:
        h["timeout"] = timeout
    return h


def bundle(tmp_path: Path, hooks: dict[str, list[dict[str, Any]]], args: list[str]) -> tuple[Path, str, Path]:
    cid = "k" + uuid.uuid4().hex[:8]
    b = tmp_path / cid
    out = tmp_path / f"out-{cid}"
    out.mkdir()
    spec = make_bundle(b, args, cgroups_path=f"ctrpy-test/{cid}")
    spec["hooks"] = hooks
    spec["mounts"].append({"destination": "/out", "type": "bind", "source": str(out), "options": ["rbind"]})
    write_spec(b, spec)
    return b, cid, out


@pytest.mark.parametrize("runtime", ["ctrpy", "runc"])
def test_every_hook_runs_in_order_with_the_state(tmp_path: Path, runtime: str) -> None:
    out_holder: dict[str, Path] = {}
    b, cid, out = bundle(tmp_path, {}, ["sleep", "30"])
    spec = json.loads((b / "config.json").read_text())
    spec["hooks"] = {k: [hook(k, out)] for k in KINDS}
    write_spec(b, spec)
    out_holder["out"] = out
    rt = RuntimeCLI(runtime, tmp_path / "root")
    try:
        r = rt.create(b, cid)
        assert r.returncode == 0, r.stderr
        # runc 1.1 runs poststart hooks in `create` (runc#2458, fixed in 1.2): the spec is the reference.
        after_create = KINDS[:3] + (["poststart"] if runtime == "runc" else [])
        assert (out / "order").read_text().split() == after_create
        pid = rt.state(cid)["pid"]
        assert rt("start", cid).returncode == 0
        assert sorted((out / "order").read_text().split()) == sorted(KINDS[:5])
        assert rt("kill", cid, "KILL").returncode == 0
        deadline = time.monotonic() + 10
        while rt.state(cid).get("status") != "stopped" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert rt("delete", cid).returncode == 0
    finally:
        rt.cleanup()
    expected = KINDS if runtime == "ctrpy" else after_create + ["startContainer", "poststop"]
    assert (out / "order").read_text().split() == expected
    states = {k: json.loads((out / f"{k}.json").read_text()) for k in KINDS}
    for k in KINDS:
        assert states[k]["id"] == cid and states[k]["bundle"] == str(b), k
    assert [states[k]["status"] for k in KINDS] == [
        "creating", "creating", "creating", "created", "running" if runtime == "ctrpy" else "created", "stopped"]
    for k in ("prestart", "createRuntime", "poststart"):
        assert states[k]["pid"] == pid, k  # the container's pid as the host sees it
    # prestart and createRuntime run before pivot_root: the container's root is still the host's.
    assert (out / "prestart.root").read_text().strip() == "host"
    assert (out / "createRuntime.root").read_text().strip() == "host"
    assert (out / "poststart.root").read_text().strip() == "container"


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_create_hook_fails_create_and_leaves_nothing(tmp_path: Path, kind: str) -> None:
    b, cid, out = bundle(tmp_path, {}, ["sleep", "30"])
    spec = json.loads((b / "config.json").read_text())
    spec["hooks"] = {kind: [hook(kind, out, "exit 3")]}
    write_spec(b, spec)
    rt = RuntimeCLI("ctrpy", tmp_path / "root")
    try:
        r = rt.create(b, cid)
        assert r.returncode != 0
        assert f"{kind} hook /bin/sh exited with status 3" in r.stderr, r.stderr
        assert rt.ids() == [] and not Cgroup(f"ctrpy-test/{cid}").exists()
    finally:
        rt.cleanup()


def test_failing_start_container_hook_fails_start(tmp_path: Path) -> None:
    b, cid, out = bundle(tmp_path, {}, ["sh", "-c", "echo ran > /out/ran"])
    spec = json.loads((b / "config.json").read_text())
    spec["hooks"] = {"startContainer": [hook("startContainer", out, "exit 4")]}
    write_spec(b, spec)
    rt = RuntimeCLI("ctrpy", tmp_path / "root")
    try:
        assert rt.create(b, cid).returncode == 0
        r = rt("start", cid)
        assert r.returncode != 0 and "startContainer hook /bin/sh exited with status 4" in r.stderr, r.stderr
        assert rt.state(cid)["status"] == "stopped"
        assert not (out / "ran").exists()  # the user process never ran
    finally:
        rt.cleanup()


def test_post_hooks_failures_only_warn(tmp_path: Path) -> None:
    b, cid, out = bundle(tmp_path, {}, ["sleep", "30"])
    spec = json.loads((b / "config.json").read_text())
    spec["hooks"] = {"poststart": [hook("poststart", out, "exit 5"), hook("poststart2", out)],
                     "poststop": [hook("poststop", out, "exit 6"), hook("poststop2", out)]}
    write_spec(b, spec)
    rt = RuntimeCLI("ctrpy", tmp_path / "root")
    try:
        assert rt.create(b, cid).returncode == 0
        r = rt("start", cid)
        assert r.returncode == 0 and "poststart hook /bin/sh exited with status 5" in r.stderr, r.stderr
        assert rt.state(cid)["status"] == "running"
        r = rt("delete", "--force", cid)
        assert r.returncode == 0 and "poststop hook /bin/sh exited with status 6" in r.stderr, r.stderr
        assert rt.ids() == []
    finally:
        rt.cleanup()
    assert (out / "order").read_text().split() == ["poststart2", "poststop2"]  # the rest still ran


def test_hook_timeout_kills_it(tmp_path: Path) -> None:
    b, cid, out = bundle(tmp_path, {}, ["true"])
    spec = json.loads((b / "config.json").read_text())
    spec["hooks"] = {"createRuntime": [hook("createRuntime", out, "sleep 20", timeout=1)]}
    write_spec(b, spec)
    rt = RuntimeCLI("ctrpy", tmp_path / "root")
    try:
        started = time.monotonic()
        r = rt.create(b, cid)
        assert time.monotonic() - started < 10
        assert r.returncode != 0 and "createRuntime hook /bin/sh timed out after 1 s" in r.stderr, r.stderr
        assert rt.ids() == []
    finally:
        rt.cleanup()
    assert os.path.isdir(out)
