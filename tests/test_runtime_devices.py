"""Devices: linux.devices nodes are created and allowed; the device cgroup ends up with the same rules as
runc gives the same bundle (the spec's, then mknod of anything, the default nodes, ptys, tun)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from support.bundle import RuntimeCLI, make_bundle, write_spec

V1_DEVICES = Path("/sys/fs/cgroup/devices")
FUSE = {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o640, "uid": 0, "gid": 5}
SCRIPT = ("ls -ln /dev/fuse | cut -c1-10; stat -c '%u:%g %t:%T' /dev/fuse; "
          "mknod /tmp/null c 1 3 && echo mknod=ok; head -c 0 /tmp/null && echo open=ok; "
          "mknod /tmp/mem c 1 1 && echo mknod2=ok; head -c 1 /tmp/mem >/dev/null 2>&1 || echo mem=denied; "
          "echo end")


@pytest.mark.skipif(not V1_DEVICES.is_dir(), reason="reads the v1 devices controller (this host's layout)")
def test_devices_created_allowed_and_rules_like_runc(tmp_path: Path) -> None:
    results = {}
    for name in ("ctrpy", "runc"):
        cid = "d" + uuid.uuid4().hex[:8]
        spec = make_bundle(tmp_path / cid, ["sh", "-c", SCRIPT + "; sleep 30"], cgroups_path=f"/ctrpy-test/{cid}")
        spec["linux"]["devices"] = [FUSE]
        write_spec(tmp_path / cid, spec)
        rt = RuntimeCLI(name, tmp_path / f"root-{name}")
        try:
            log = tmp_path / f"{cid}.log"
            assert rt.create(tmp_path / cid, cid, log=log).returncode == 0
            assert rt("start", cid).returncode == 0
            rules = set((V1_DEVICES / "ctrpy-test" / cid / "devices.list").read_text().split("\n")) - {""}
            for _ in range(200):
                if "end" in log.read_text().split():  # the script's last line: every result is in
                    break
                __import__("time").sleep(0.02)
            results[name] = (rules, log.read_text())
        finally:
            rt.cleanup()
    rules, out = results["ctrpy"]
    assert out.splitlines()[:2] == ["crw-r-----", "0:5 a:e5"]  # mode, owner, 10:229 in hex
    assert "mknod=ok" in out and "open=ok" in out  # c *:* m, then the rwm rule for 1:3
    assert "mknod2=ok" in out and "mem=denied" in out  # a node may be made, not opened
    assert {"c *:* m", "b *:* m", "c 10:229 rwm", "c 10:200 rwm", "c 136:* rwm"} <= rules
    assert out == results["runc"][1]
    # runc 1.1 leaves a linux.devices node out of the allow list (docker adds the rule to the spec); the
    # built-in runtime allows what it creates. Otherwise the same rules.
    assert rules == results["runc"][0] | {"c 10:229 rwm"}
