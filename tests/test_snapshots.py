"""Snapshotters: a conformance suite run against overlayfs and native, the mount layer, and the commands.

Every mount goes below the test's tmp dir; the `dirs` fixture unmounts whatever is left, also on failure.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ctrpy.runtime import errors
from ctrpy.runtime.client import Client
from ctrpy.runtime.mount import Mount, is_mount_point, mount_all, mount_points_under, unmount_all
from ctrpy.runtime.snapshots import Kind

SNAPSHOTTERS = ["overlayfs", "native"]


@pytest.fixture(params=SNAPSHOTTERS)
def sn(request: Any, client: Client) -> Any:
    return client.snapshotter(request.param)


@contextmanager
def mounted(mounts: list[Mount], where: Path) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    mount_all(mounts, where)
    try:
        yield where
    finally:
        unmount_all(where)


def write_tree(root: Path, files: dict[str, str]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data)


def read_tree(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = p.read_text()
    return out


def commit_layer(sn: Any, tmp: Path, name: str, parent: str, files: dict[str, str],
                 delete: tuple[str, ...] = ()) -> None:
    key = f"active-{name}"
    with mounted(sn.prepare(key, parent), tmp / "mnt") as root:
        write_tree(root, files)
        for d in delete:
            (root / d).unlink()
    sn.commit(name, key)


# ------------------------------------------------------------------------------------- conformance suite

def test_basic_lifecycle(sn: Any, tmp_path: Path) -> None:
    commit_layer(sn, tmp_path, "base", "", {"a": "1", "dir/b": "2"})
    commit_layer(sn, tmp_path, "top", "base", {"a": "changed", "c": "3"}, delete=("dir/b",))
    with mounted(sn.view("v", "top"), tmp_path / "view") as root:
        assert read_tree(root) == {"a": "changed", "c": "3"}
    with mounted(sn.view("v-base", "base"), tmp_path / "view") as root:
        assert read_tree(root) == {"a": "1", "dir/b": "2"}
    assert not mount_points_under(str(tmp_path / "view"))


def test_stat_kinds_parents_labels(sn: Any, tmp_path: Path) -> None:
    sn.prepare("a", "", labels={"x": "1"})
    info = sn.stat("a")
    assert (info.kind, info.name, info.parent, info.labels) == (Kind.ACTIVE, "a", "", {"x": "1"})
    assert info.created and info.updated
    sn.commit("base", "a", labels={"y": "2"})
    info = sn.stat("base")
    assert info.kind == Kind.COMMITTED and info.labels == {"x": "1", "y": "2"}
    with pytest.raises(errors.NotFound):
        sn.stat("a")
    sn.view("v", "base")
    assert sn.stat("v").kind == Kind.VIEW and sn.stat("v").parent == "base"


def test_transitivity_many_layers(sn: Any, tmp_path: Path) -> None:
    parent = ""
    for i in range(5):
        commit_layer(sn, tmp_path, f"l{i}", parent, {f"f{i}": str(i), "shared": str(i)})
        parent = f"l{i}"
    with mounted(sn.prepare("rw", parent), tmp_path / "rw") as root:
        assert read_tree(root) == {**{f"f{i}": str(i) for i in range(5)}, "shared": "4"}
        (root / "new").write_text("x")
    # Writes to the active snapshot never reach the committed parents.
    with mounted(sn.view("v", parent), tmp_path / "v") as root:
        assert not (root / "new").exists()


def test_errors(sn: Any, tmp_path: Path) -> None:
    sn.prepare("a")
    with pytest.raises(errors.AlreadyExists):
        sn.prepare("a")
    with pytest.raises(errors.FailedPrecondition, match="not committed"):
        sn.prepare("b", "a")
    with pytest.raises(errors.NotFound):
        sn.prepare("b", "missing")
    with pytest.raises(errors.InvalidArgument):
        sn.prepare("")
    sn.commit("base", "a")
    sn.view("v", "base")
    with pytest.raises(errors.FailedPrecondition, match="only active"):
        sn.commit("x", "v")
    sn.prepare("c", "base")
    with pytest.raises(errors.AlreadyExists):
        sn.commit("base", "c")
    with pytest.raises(errors.FailedPrecondition, match="committed and cannot be mounted"):
        sn.mounts("base")
    with pytest.raises(errors.NotFound):
        sn.remove("nope")
    # A failed prepare leaves nothing behind.
    assert {i.name for i in sn.list()} == {"base", "v", "c"}


def test_view_is_read_only(sn: Any, tmp_path: Path) -> None:
    commit_layer(sn, tmp_path, "base", "", {"a": "1"})
    with mounted(sn.view("v", "base"), tmp_path / "v") as root:
        with pytest.raises(OSError) as exc:
            (root / "new").write_text("x")
        assert exc.value.errno == errno.EROFS


def test_remove_refuses_children_and_containers(sn: Any, client: Client, tmp_path: Path) -> None:
    commit_layer(sn, tmp_path, "base", "", {"a": "1"})
    sn.prepare("child", "base")
    with pytest.raises(errors.FailedPrecondition, match=r"has 1 child snapshot \('child'\)"):
        sn.remove("base")
    from ctrpy.runtime.metadata.containers import Container

    client.containers.create(Container(id="c1", runtime_name="ctrpy", snapshotter=sn.name, snapshot_key="child"))
    with pytest.raises(errors.FailedPrecondition, match="root file system of container 'c1'"):
        sn.remove("child")
    path = Path(sn.backend_path("child")).parent
    assert path.is_dir()
    client.containers.delete("c1")
    sn.remove("child")
    assert not path.exists()
    base_dir = Path(sn.backend_path("base")).parent
    sn.remove("base")
    assert not base_dir.exists() and sn.list() == []


def test_walk_filters_and_labels(sn: Any, tmp_path: Path) -> None:
    sn.prepare("a", labels={"team": "x"})
    sn.commit("base", "a")
    sn.prepare("b", "base", labels={"team": "y"})
    sn.view("v", "base")
    assert [i.name for i in sn.list()] == ["b", "base", "v"]
    assert [i.name for i in sn.list("kind==committed")] == ["base"]
    assert [i.name for i in sn.list('labels."team"==y')] == ["b"]
    assert [i.name for i in sn.list("parent==base")] == ["b", "v"]
    seen: list[str] = []
    sn.walk(lambda info: seen.append(info.name), "kind==view", "kind==active")
    assert seen == ["b", "v"]
    info = sn.stat("b")
    from dataclasses import replace

    updated = sn.update(replace(info, labels={"team": "z", "new": "1"}), "labels.new")
    assert updated.labels == {"team": "y", "new": "1"}
    updated = sn.update(replace(info, labels={"k": "v"}))
    assert updated.labels == {"k": "v"}
    with pytest.raises(errors.InvalidArgument):
        sn.update(info, "parent")


def test_usage(sn: Any, tmp_path: Path) -> None:
    key = "a"
    with mounted(sn.prepare(key), tmp_path / "m") as root:
        (root / "big").write_bytes(os.urandom(1 << 20))
        (root / "d").mkdir()
        (root / "d" / "small").write_text("x")
        os.link(root / "big", root / "big-link")
    usage = sn.usage(key)
    assert usage.inodes == 4  # root, big (twice linked, counted once), d, d/small
    assert (1 << 20) <= usage.size < (1 << 20) + 64 * 1024


def test_committed_snapshots_shared_across_namespaces(client: Client, tmp_path: Path) -> None:
    a = client.snapshotter("overlayfs")
    b = client.with_namespace("other").snapshotter("overlayfs")
    l0, l1 = "sha256:" + "0" * 64, "sha256:" + "1" * 64
    commit_layer(a, tmp_path, l0, "", {"f": "a"})
    path = Path(a.backend_path(l0))
    assert b.share(l0, "") is True
    assert Path(b.backend_path(l0)) == path
    # A commit of the same name on the same parent in another namespace reuses the existing directory.
    c = client.with_namespace("third").snapshotter("overlayfs")
    commit_layer(c, tmp_path, l0, "", {"f": "c"})
    assert Path(c.backend_path(l0)) == path
    assert os.listdir(path.parent.parent) == [path.parent.name]  # c's own copy was dropped
    a.remove(l0)
    assert path.is_dir() and b.stat(l0).kind == Kind.COMMITTED
    b.remove(l0)
    assert path.is_dir()
    c.remove(l0)
    assert not path.exists()
    # Sharing needs a chain ID on the same parent directory.
    commit_layer(a, tmp_path, "p1", "", {"x": "1"})
    commit_layer(a, tmp_path, l1, "p1", {"y": "1"})
    commit_layer(b, tmp_path, "p1", "", {"x": "other"})  # user-named: never shared
    assert b.backend_path("p1") != a.backend_path("p1")
    assert b.share(l1, "p1") is False
    assert b.share("p1", "") is False


def test_many_layers_mount(sn: Any, tmp_path: Path) -> None:
    """containerd's 128LayersMount: long lowerdir lists exceed one page of mount data unless shortened."""
    parent = ""
    for i in range(128):
        key = f"k{i}"
        mounts = sn.prepare(key, parent)
        if i == 0 or sn.name == "native":
            with mounted(mounts, tmp_path / "m") as root:
                (root / f"f{i}").write_text(str(i))
        else:
            # Write straight into the upper dir: 127 mounts would only slow the test down.
            Path(sn.backend_path(key), f"f{i}").write_text(str(i))
        sn.commit(f"layer-{i:03d}-" + "x" * 40, key)
        parent = f"layer-{i:03d}-" + "x" * 40
    mounts = sn.view("top", parent)
    if sn.name == "overlayfs":
        assert mounts[0].type == "overlay" and len(",".join(mounts[0].options)) > os.sysconf("SC_PAGESIZE")
    with mounted(mounts, tmp_path / "top") as root:
        assert len(os.listdir(root)) == 128
        assert (root / "f0").read_text() == "0" and (root / "f127").read_text() == "127"


# ------------------------------------------------------------------------------------- mount layer

def test_mount_all_rolls_back_on_failure(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    target = tmp_path / "t"
    target.mkdir()
    good = Mount("bind", str(src), options=("rbind", "ro"))
    bad = Mount("bind", str(tmp_path / "missing"), target="sub", options=("rbind",))
    (src / "sub").mkdir()
    with pytest.raises(errors.NotFound):
        mount_all([good, bad], target)
    assert not is_mount_point(target)
    mount_all([good], target)
    assert is_mount_point(target)
    assert unmount_all(target) == 1 and not is_mount_point(target)
    assert unmount_all(target) == 0


def test_mount_command_text() -> None:
    m = Mount("overlay", "overlay", options=("lowerdir=/a:/b", "upperdir=/u", "workdir=/w"))
    assert m.command("/mnt") == "mount -t overlay overlay /mnt -o lowerdir=/a:/b,upperdir=/u,workdir=/w"


def test_overlay_whiteout_is_kernel_char_device(client: Client, tmp_path: Path) -> None:
    sn = client.snapshotter("overlayfs")
    commit_layer(sn, tmp_path, "base", "", {"gone": "x", "d/f": "y"})
    with mounted(sn.prepare("a", "base"), tmp_path / "m") as root:
        (root / "gone").unlink()
    st = os.lstat(Path(sn.backend_path("a")) / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


# ------------------------------------------------------------------------------------- commands

@pytest.mark.parametrize("name", SNAPSHOTTERS)
def test_cli_lifecycle(ctrpy: Any, dirs: Any, name: str) -> None:
    opt = ["--snapshotter", name]
    r = ctrpy("snapshots", "prepare", "a", *opt, "--mounts", "--target", "/tmp/x")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("mount -t bind ") and r.stdout.rstrip().endswith("/tmp/x -o rbind,rw")
    assert ctrpy("snapshots", "commit", "base", "a", *opt).returncode == 0
    assert ctrpy("snapshots", "prepare", "b", "base", *opt).returncode == 0
    assert ctrpy("snapshots", *opt, "view", "v", "base").returncode == 0  # ctr's group-level position

    r = ctrpy("snapshots", "ls", *opt)
    assert r.returncode == 0
    lines = [line.split() for line in r.stdout.splitlines()]
    assert lines == [["KEY", "PARENT", "KIND"], ["b", "base", "active"], ["base", "committed"], ["v", "base", "view"]]
    assert ctrpy("snapshots", "ls", "-q", *opt).stdout.split() == ["b", "base", "v"]
    r = ctrpy("snapshots", "ls", *opt, "--format", "json", "kind==committed")
    assert [s["name"] for s in json.loads(r.stdout)] == ["base"]

    r = ctrpy("snapshots", "tree", *opt)
    assert r.stdout.splitlines() == ["base", "\\_ b", "\\_ v"]

    r = ctrpy("snapshots", "rm", "base", *opt)
    assert r.returncode == 6
    assert r.stderr.strip() == "ctrpy: cannot remove snapshot 'base': it has 2 child snapshots ('b', 'v'); remove them first"

    r = ctrpy("snapshots", "mounts", "/mnt/t", "b", *opt)
    assert r.returncode == 0
    expected_type = "overlay" if name == "overlayfs" else "bind"
    assert r.stdout.startswith(f"mount -t {expected_type} ") and " /mnt/t -o " in r.stdout
    r = ctrpy("snapshots", "mounts", "/mnt/t", "base", *opt)
    assert r.returncode == 6 and "is committed and cannot be mounted" in r.stderr

    r = ctrpy("snapshots", "label", "b", "team=x", "tier=1", *opt)
    assert r.returncode == 0 and r.stdout.strip() == "team=x,tier=1"
    r = ctrpy("snapshots", "label", "b", "tier=", *opt)
    assert r.stdout.strip() == "team=x"
    info = json.loads(ctrpy("snapshots", "info", "b", *opt).stdout)
    assert info["kind"] == "active" and info["parent"] == "base" and info["labels"] == {"team": "x"}

    r = ctrpy("snapshots", "usage", *opt, "--format", "json")
    assert {u["key"] for u in json.loads(r.stdout)} == {"b", "base", "v"}
    r = ctrpy("snapshots", "usage", "base", *opt)
    assert r.stdout.splitlines()[0].split() == ["KEY", "SIZE", "INODES"]
    assert r.stdout.splitlines()[1].split()[0] == "base"

    r = ctrpy("snapshots", "rm", "v", "b", "base", *opt)
    assert r.returncode == 0 and r.stdout.split() == ["v", "b", "base"]
    assert ctrpy("snapshots", "ls", "-q", *opt).stdout == ""
    assert os.listdir(dirs.root / "snapshots" / name / "snapshots") == []


def test_cli_errors(ctrpy: Any) -> None:
    r = ctrpy("snapshots", "ls", "--snapshotter", "bogus")
    assert r.returncode == 3
    assert r.stderr.strip() == "ctrpy: unknown snapshotter 'bogus': available snapshotters are native, overlayfs"
    r = ctrpy("snapshots", "info", "nope")
    assert r.returncode == 4 and r.stderr.strip() == "ctrpy: snapshot 'nope' does not exist (snapshotter overlayfs)"
    r = ctrpy("snapshots", "prepare", "a", "nope")
    assert r.returncode == 4
    assert ctrpy("snapshots", "prepare", "a").returncode == 0
    r = ctrpy("snapshots", "prepare", "a")
    assert r.returncode == 5 and "already exists" in r.stderr
    r = ctrpy("snapshots", "prepare", "b", "a")
    assert r.returncode == 6 and "not committed" in r.stderr
    r = ctrpy("snapshots", "label", "a", "=x")
    assert r.returncode == 2
    # Namespaces are separate.
    assert ctrpy("snapshots", "ls", "-q", namespace="other").stdout == ""


def test_cleanup_removes_orphan_directories(sn: Any, tmp_path: Path) -> None:
    commit_layer(sn, tmp_path, "base", "", {"a": "1"})
    kept = Path(sn.backend_path("base")).parent
    orphan = kept.parent / "999"
    (orphan / "fs").mkdir(parents=True)
    assert sn.cleanup() == [999]
    assert not orphan.exists() and kept.is_dir() and sn.cleanup() == []


def _dir_flags(path: Path) -> int | None:
    """chattr flags of a directory, None where the file system has none (tmpfs)."""
    import fcntl
    import struct

    from ctrpy.runtime.snapshots.backend import FS_IOC_GETFLAGS

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 4))[0])
    except OSError:
        return None
    finally:
        os.close(fd)


def test_new_snapshot_trees_are_spread_over_block_groups(sn: Any, tmp_path: Path) -> None:
    """Each snapshot's dir is an Orlov top directory (chattr +T) on ext4, so its `fs` tree goes to the least
    used block group rather than to the group where a removed snapshot's inodes were just freed; the tree
    itself is an ordinary directory, and the temporary name it was made under is gone."""
    from ctrpy.runtime.snapshots.backend import FS_TOPDIR_FL

    commit_layer(sn, tmp_path, "base", "", {"a": "1"})
    sn.prepare("work", "base")
    for key in ("base", "work"):
        fs = Path(sn.backend_path(key))
        snap = fs.parent
        assert fs.name == "fs" and stat.S_IMODE(fs.stat().st_mode) == 0o755
        assert not [n for n in os.listdir(snap) if n.startswith(".fs-")]
        flags = _dir_flags(snap)
        if flags is not None:  # ext4 (this machine); tmpfs has no flags to set
            assert flags & FS_TOPDIR_FL, f"{snap} is not +T"
            assert not (_dir_flags(fs) or 0) & FS_TOPDIR_FL, "the flag must not reach the layer's own tree"
    assert read_tree(Path(sn.backend_path("base"))) == {"a": "1"}


def test_spread_tries_other_groups_when_file_creation_is_slow(client: Client, tmp_path: Path,
                                                               monkeypatch: Any) -> None:
    """A probe that says "slow group" makes the snapshot's tree under new names, at most three times, then
    takes the fourth; nothing of the attempts is left and the tree is whole."""
    from ctrpy.runtime.snapshots import backend

    made: list[str] = []
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: Any, **kwargs: Any) -> None:
        made.append(self.name)
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(backend, "SLOW_CREATE", -1.0)  # every probe is "slow"
    sn = client.snapshotter("overlayfs")
    commit_layer(sn, tmp_path, "base", "", {"a": "1"})
    fs = Path(sn.backend_path("base"))
    if _dir_flags(fs.parent) is None:
        assert not [n for n in made if n.startswith(".fs-")]  # no flags here: a plain mkdir
    else:
        assert len([n for n in made if n.startswith(".fs-")]) == 4
    assert sorted(os.listdir(fs.parent)) == ["fs", "work"]
    assert read_tree(fs) == {"a": "1"} and stat.S_IMODE(fs.stat().st_mode) == 0o755
