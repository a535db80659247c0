"""The process as runc sets it up: HOME from the user's passwd entry when the spec has none, groups,
and the image's /etc/group memberships for the default user."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from support.bundle import RuntimeCLI, make_bundle, write_spec

from ctrpy.runtime import oci

SHOW = "echo HOME=$HOME; id -G"


def run(name: str, tmp_path: Path, user: dict[str, Any], env: list[str] | None = None) -> str:
    cid = "p" + uuid.uuid4().hex[:8]
    spec = make_bundle(tmp_path / cid, ["sh", "-c", SHOW], cgroups_path=f"ctrpy-test/{cid}")
    spec["process"]["user"] = user
    if env is not None:
        spec["process"]["env"] = env
    write_spec(tmp_path / cid, spec)
    rt = RuntimeCLI(name, tmp_path / f"root-{name}")
    try:
        r = rt("run", "--bundle", str(tmp_path / cid), cid)
    finally:
        rt.cleanup()
    assert r.returncode == 0, r.stderr
    return r.stdout


PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.mark.parametrize("user,env,home", [
    ({"uid": 1000, "gid": 1000}, [PATH], "/home/user"),
    ({"uid": 0, "gid": 0}, [PATH], "/root"),
    ({"uid": 4242, "gid": 4242}, [PATH], "/"),  # no passwd entry
    ({"uid": 1000, "gid": 1000}, [PATH, "HOME=/srv"], "/srv"),  # the spec's own wins
    ({"uid": 1000, "gid": 1000, "additionalGids": [2000, 3000]}, [PATH], "/home/user"),
])
def test_home_and_groups_like_runc(tmp_path: Path, user: dict[str, Any], env: list[str], home: str) -> None:
    ours = run("ctrpy", tmp_path, user, env)
    assert ours.splitlines()[0] == f"HOME={home}"
    assert ours == run("runc", tmp_path, user, env)


def test_default_user_gets_the_images_groups() -> None:
    files = {"/etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
             "/etc/group": b"root:x:0:\nwheel:x:10:root\nadm:x:4:daemon,root\nusers:x:100:\n"}
    spec = oci.generate_spec(oci.with_image_config({"config": {"Cmd": ["sh"]}}, files.get))
    assert spec["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": [4, 10]}
