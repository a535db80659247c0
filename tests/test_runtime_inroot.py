"""Hostile root filesystems: symlinks in the image must never make the runtime write outside the rootfs.

Each rootfs is built here with links pointing at a host directory of the test (`host`), then `ctrpy run`
runs it; afterwards `host` must be exactly as it was (CVE-2021-30465's class of bugs). The built-in runtime
runs twice: with openat2(RESOLVE_IN_ROOT) and with the userspace walk that replaces it on old kernels; runc
is the reference.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from support.runtimes import cleanup, rootfs, unusable  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("cleanup")

VARIANTS = ["ctrpy", "ctrpy-walk", "runc"]
BUILTIN = ["ctrpy", "ctrpy-walk"]


def _variant(name: str) -> tuple[str, dict[str, str]]:
    runtime = name.split("-")[0]
    reason = unusable(runtime)
    if reason:
        pytest.skip(reason)
    return runtime, ({"CTRPY_INROOT_NO_OPENAT2": "1"} if name.endswith("-walk") else {})


@pytest.fixture(params=VARIANTS)
def variant(request: Any) -> tuple[str, dict[str, str]]:
    return _variant(str(request.param))


def snapshot(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def run(ctrpy: Any, variant: tuple[str, dict[str, str]], rootfs: Path, cid: str, *cmd: str,
        flags: tuple[str, ...] = ()) -> Any:
    runtime, env = variant
    return ctrpy("run", "--rm", "--runtime", runtime, "--rootfs", str(rootfs), *flags, cid, *cmd, env=env)


def test_bind_mount_through_an_absolute_link_stays_inside(ctrpy: Any, variant: Any, rootfs: Path,
                                                          tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    src = tmp_path / "src"
    src.mkdir()
    (src / "data").write_text("payload\n")
    os.symlink(str(host), rootfs / "link")
    r = run(ctrpy, variant, rootfs, "bindlink", "cat", "/link/pwn/data",
            flags=("--mount", f"type=bind,src={src},dst=/link/pwn"))
    assert snapshot(host) == [], "the runtime created files on the host through the image's symlink"
    assert r.returncode == 0, r.stderr
    assert r.stdout == "payload\n"
    # The link was followed inside the root: the mount point is rootfs/<host path>/pwn.
    assert (rootfs / str(host).lstrip("/") / "pwn").is_dir()


def test_bind_file_through_a_dangling_link_stays_inside(ctrpy: Any, variant: Any, rootfs: Path,
                                                        tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    src = tmp_path / "file"
    src.write_text("file\n")
    os.symlink(str(host / "target"), rootfs / "etc" / "planted")
    r = run(ctrpy, variant, rootfs, "bindfile", "cat", "/etc/planted",
            flags=("--mount", f"type=bind,src={src},dst=/etc/planted"))
    assert snapshot(host) == []
    assert r.returncode == 0, r.stderr
    assert r.stdout == "file\n"


# runc 1.1.5 itself creates /dev/fd, /dev/stdin... on the host when the image's /dev is such a link.
@pytest.mark.parametrize("name,top", [(v, top) for v in VARIANTS for top in ("etc", "dev", "proc", "sys", "mnt", "run")
                                      if (v, top) != ("runc", "dev")])
def test_top_level_dir_linked_to_the_host_is_contained(ctrpy: Any, rootfs: Path, tmp_path: Path, name: str,
                                                       top: str) -> None:
    variant = _variant(name)
    host = tmp_path / "host"
    host.mkdir()
    (host / "keep").write_text("host file\n")
    before = snapshot(host)
    target = rootfs / top
    if target.exists():
        os.rename(target, rootfs / f"{top}.orig")
    os.symlink(str(host), target)
    if top == "etc":
        os.symlink("/etc.orig/passwd", rootfs / "etc.orig" / "passwd.link")
    src = tmp_path / "vol"
    src.mkdir()
    r = run(ctrpy, variant, rootfs, f"top-{top}", "sh", "-c", "echo ran",
            flags=("--mount", f"type=bind,src={src},dst=/mnt/vol/deep"))
    assert snapshot(host) == before, f"{top} -> host dir: files appeared on the host"
    assert (host / "keep").read_text() == "host file\n"
    runtime, _ = variant
    if runtime == "ctrpy":
        assert r.returncode == 0, r.stderr
        assert r.stdout == "ran\n"


@pytest.mark.parametrize("name", BUILTIN)
def test_device_node_over_a_planted_link_replaces_the_link(tmp_path: Path, name: str) -> None:
    """A spec without a /dev tmpfs creates the nodes in the image's own /dev: a planted symlink there is
    replaced, not followed (mknod through it would create a device node on the host)."""
    _, env = _variant(name)
    from support.bundle import RuntimeCLI, make_bundle, write_spec

    host = tmp_path / "host"
    host.mkdir()
    bundle = tmp_path / "bundle"
    spec = make_bundle(bundle, ["sh", "-c", "test -c /dev/null && echo char"])
    os.symlink(str(host / "null"), bundle / "rootfs/dev/null")
    os.symlink(str(host), bundle / "rootfs/dev/sub")
    spec["mounts"] = [m for m in spec["mounts"] if not m["destination"].startswith("/dev")]
    spec["linux"]["devices"] = [
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666},
        {"path": "/dev/sub/zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o666},
    ]
    write_spec(bundle, spec)
    rt = RuntimeCLI("ctrpy", tmp_path / "rtroot")
    try:
        r = rt("run", "--bundle", str(bundle), "devlink", env={**os.environ, **env})
    finally:
        rt.cleanup()
    assert snapshot(host) == []
    assert r.returncode == 0, r.stderr
    assert r.stdout == "char\n"


def test_hostile_image_from_a_registry(ctrpy: Any, registry: Any, tmp_path: Path) -> None:
    """The issue's two images, pulled like any other: `/link -> <host dir>` with a bind mount below it, and
    `/etc -> <host dir>` (the /etc files ctrpy writes for every container). The host sees nothing new."""
    from support.testimages import LayerBuilder, build_layout, busybox_layer

    host_link, host_etc = tmp_path / "host-link", tmp_path / "host-etc"
    host_link.mkdir()
    host_etc.mkdir()
    top = (LayerBuilder().symlink("link", str(host_link)).whiteout("etc").symlink("etc", str(host_etc)).bytes())
    layout = tmp_path / "layout"
    build_layout(layout, [busybox_layer(), top])
    ref = registry.push(layout, f"hostile-{uuid.uuid4().hex[:8]}")
    assert ctrpy("pull", ref).returncode == 0
    src = tmp_path / "src"
    src.mkdir()
    r = ctrpy("containers", "run", "--rm", "--mount", f"type=bind,src={src},dst=/link/pwn", ref, "hostile",
              "sh", "-c", "cat /etc/hostname; ls -d /link/pwn")
    assert snapshot(host_link) == [] and snapshot(host_etc) == []
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["hostile", "/link/pwn"]
