"""rootfsPropagation and mount propagation, the built-in runtime side by side with runc (critest's
"mount with 'rshared' should support propagation from host to container and vice versa")."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import unmount_all_under
from support.bundle import ALL_CAPS, RuntimeCLI, make_bundle, write_spec

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts, namespaces)")


def _shared_volume(tmp_path: Path) -> Path:
    vol = tmp_path / "vol"
    vol.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "vol", str(vol)], check=True)
    subprocess.run(["mount", "--make-shared", str(vol)], check=True)
    return vol


def _bundle(tmp_path: Path, name: str, vol: Path, rshared: bool) -> Path:
    bundle = tmp_path / name
    spec = make_bundle(bundle, ["sh", "-c", "mkdir -p /vol/inner && mount -t tmpfs inner /vol/inner && "
                                            "touch /vol/inner/made-inside && cat /vol/from-host/seen"])
    caps = spec["process"]["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        caps[kind] = list(ALL_CAPS)
    spec["mounts"].append({"destination": "/vol", "type": "bind", "source": str(vol),
                           "options": ["rbind", "rw"] + (["rshared"] if rshared else [])})
    if rshared:
        spec["linux"]["rootfsPropagation"] = "rshared"
    write_spec(bundle, spec)
    return bundle


@pytest.mark.parametrize("runtime", ["ctrpy", "runc"])
@pytest.mark.parametrize("rshared", [True, False], ids=["rshared", "default"])
def test_mounts_propagate_both_ways_only_when_asked(tmp_path: Path, runtime: str, rshared: bool) -> None:
    vol = _shared_volume(tmp_path)
    rt = RuntimeCLI(runtime, tmp_path / "root")
    try:
        # host -> container: a mount made on the host before the container starts is seen inside
        (vol / "from-host").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "fromhost", str(vol / "from-host")], check=True)
        (vol / "from-host" / "seen").write_text("host mount seen\n")
        r = rt("run", "--bundle", str(_bundle(tmp_path, "b", vol, rshared)), f"prop-{runtime}-{rshared}")
        assert r.returncode == 0, r.stderr
        assert r.stdout == "host mount seen\n"
        # container -> host: only with rshared does the container's mount reach the host
        assert (vol / "inner" / "made-inside").exists() is rshared
        assert os.path.ismount(vol / "inner") is rshared
    finally:
        rt.cleanup()
        unmount_all_under(tmp_path)
