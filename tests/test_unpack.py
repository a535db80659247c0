"""Unpacking images into snapshots: reference comparison with umoci, compressions, 40 layers, sharing, failures.

Images are OCI layouts built in code (tests/support/testimages.py) and ingested without a registry
(tests/support/store.py). Every mount is below the test's tmp dir and is undone by the `dirs` fixture.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from support.store import ingest_layout
from support.testimages import LayerBuilder, busybox_layer, build_layout, whiteout_layers

from ctrpy.runtime import errors
from ctrpy.runtime.client import Client
from ctrpy.runtime.mount import Mount, mount_all, mount_points_under, unmount_all
from ctrpy.runtime.unpack import GC_REF_SNAPSHOT, TempMounts, is_unpacked, resolve_chain, unpack_image

SNAPSHOTTERS = ["overlayfs", "native"]


def special_layer() -> bytes:
    """Ownership, setuid/setgid/sticky, device nodes, a fifo, hard links across layers, symlink chains."""
    b = LayerBuilder()
    b.dir("srv", 0o2775, 1000, 1000).file("srv/suid", "s", mode=0o4755).file("srv/owned", "o", uid=1000, gid=50)
    b.dir("srv/sticky", 0o1777).symlink("srv/abs", "/etc/passwd").symlink("srv/rel", "../etc/hostname")
    b.hardlink("srv/passwd-hard", "etc/passwd")  # hard link to a file of a lower layer
    for name, kind, dev in (("dev/null", tarfile.CHRTYPE, (1, 3)), ("dev/loop0", tarfile.BLKTYPE, (7, 0))):
        info = b._info(name, kind, 0o666)
        info.devmajor, info.devminor = dev
        b.tar.addfile(info)
    b.tar.addfile(b._info("srv/fifo", tarfile.FIFOTYPE, 0o640))
    return b.bytes()


def opaque_layer() -> bytes:
    """umoci never writes opaque whiteouts: this hand-made layer replaces /data/dir's lower content."""
    return LayerBuilder().dir("data").dir("data/dir", 0o700).opaque("data/dir").file("data/dir/only", "1\n").bytes()


def reference_layers() -> list[bytes]:
    return [busybox_layer(), *whiteout_layers(), special_layer(), opaque_layer()]


def snapshot_tree(root: Path) -> dict[str, tuple]:
    """path -> (type, mode, uid, gid, content digest / link target / device), plus hard-link groups."""
    out: dict[str, tuple] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = os.lstat(path)
            fmt = stat.S_IFMT(st.st_mode)
            if stat.S_ISREG(st.st_mode):
                extra: Any = hashlib.sha256(path.read_bytes()).hexdigest()
                inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                extra = None
            out[rel] = (fmt, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra)
    out["<hardlinks>"] = tuple(sorted(tuple(sorted(v)) for v in inodes.values() if len(v) > 1))
    return out


@contextmanager
def mounted_view(client: Client, snapshotter: str, top: str, where: Path, key: str = "view") -> Iterator[Path]:
    sn = client.snapshotter(snapshotter)
    mounts = sn.view(key, top)
    where.mkdir(parents=True, exist_ok=True)
    mount_all(mounts, where)
    try:
        yield where
    finally:
        unmount_all(where)
        sn.remove(key)


@pytest.fixture(scope="module")
def umoci_reference(tmp_path_factory: Any) -> dict[str, tuple]:
    """umoci's rootfs of the reference image (same layout the tests unpack)."""
    base = tmp_path_factory.mktemp("umoci")
    build_layout(base / "layout", reference_layers(), compression="gzip")
    subprocess.run(["umoci", "unpack", "--image", f"{base / 'layout'}:latest", str(base / "bundle")], check=True,
                   capture_output=True)
    return snapshot_tree(base / "bundle" / "rootfs")


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_matches_umoci_file_for_file(client: Client, tmp_path: Path, snapshotter: str,
                                     umoci_reference: dict[str, tuple]) -> None:
    build_layout(tmp_path / "layout", reference_layers(), compression="gzip")
    image = ingest_layout(client, tmp_path / "layout", "test/reference:latest")
    top = unpack_image(client, image, snapshotter=snapshotter)
    with mounted_view(client, snapshotter, top, tmp_path / "rootfs") as rootfs:
        ours = snapshot_tree(rootfs)
        # The image runs: busybox from the unpacked tree answers.
        r = subprocess.run(["chroot", str(rootfs), "/bin/sh", "-c", "cat /data/keep.txt; ls /data/dir"],
                           capture_output=True, text=True)
        assert r.stdout == "keep\nonly\n", r.stderr
    missing = sorted(set(umoci_reference) - set(ours))
    extra = sorted(set(ours) - set(umoci_reference))
    differ = sorted(k for k in set(ours) & set(umoci_reference) if ours[k] != umoci_reference[k])
    assert (missing, extra, [(k, ours[k], umoci_reference[k]) for k in differ]) == ([], [], [])
    # Sanity: the comparison covers what the issue lists.
    kinds = {v[0] for k, v in ours.items() if k != "<hardlinks>"}
    assert {stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO} <= kinds
    assert ("data/hard", "data/keep.txt") in ours["<hardlinks>"]
    assert ("etc/passwd", "srv/passwd-hard") in ours["<hardlinks>"]
    assert "data/gone.txt" not in ours and "opt/tree" not in ours and "data/dir/new.txt" not in ours
    assert ours["srv/suid"][1] == 0o4755 and ours["srv/owned"][2:4] == (1000, 50)


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_compressions_and_docker_media_types(dirs: Any, tmp_path: Path, compression: str) -> None:
    layers = reference_layers()
    trees = []
    for media_types in ("oci", "docker"):
        client = Client(dirs.root / media_types, dirs.state)
        build_layout(tmp_path / media_types, layers, compression=compression, media_types=media_types)
        image = ingest_layout(client, tmp_path / media_types, "test/c:latest")
        events: list[Any] = []
        top = unpack_image(client, image, snapshotter="overlayfs", progress=events.append)
        assert [e.status for e in events if e.status != "applying"] == ["applied"] * len(layers)
        with mounted_view(client, "overlayfs", top, tmp_path / f"m-{media_types}") as rootfs:
            trees.append(snapshot_tree(rootfs))
        client.db.close()
    assert trees[0] == trees[1] and len(trees[0]) > 300


def test_overlay_upper_dirs_hold_kernel_whiteouts(client: Client, tmp_path: Path) -> None:
    build_layout(tmp_path / "layout", reference_layers())
    image = ingest_layout(client, tmp_path / "layout", "test/wh:latest")
    unpack_image(client, image, snapshotter="overlayfs")
    _, chain = resolve_chain(client, image)
    sn = client.snapshotter("overlayfs")
    l3 = Path(sn.backend_path(chain[2]))  # deletes data/gone.txt
    st = os.lstat(l3 / "data" / "gone.txt")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    l4 = Path(sn.backend_path(chain[3]))  # opaque data/dir, whiteout of the opt/tree directory
    assert os.getxattr(l4 / "data" / "dir", "trusted.overlay.opaque") == b"y"
    assert stat.S_ISCHR(os.lstat(l4 / "opt" / "tree").st_mode)
    assert not any(n.startswith(".wh.") for _, _, files in os.walk(l4) for n in files)


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_root_directory_attributes_survive_upper_layers(client: Client, tmp_path: Path, snapshotter: str) -> None:
    base = LayerBuilder().dir("./", 0o750, 5, 6).file("a", "1").bytes()
    build_layout(tmp_path / "layout", [base, LayerBuilder().file("b", "2").bytes(), LayerBuilder().file("c", "3").bytes()])
    image = ingest_layout(client, tmp_path / "layout", "test/root:latest")
    top = unpack_image(client, image, snapshotter=snapshotter)
    with mounted_view(client, snapshotter, top, tmp_path / "rootfs") as rootfs:
        st = os.stat(rootfs)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o750, 5, 6)
        assert sorted(os.listdir(rootfs)) == ["a", "b", "c"]


def test_forty_layer_image(dirs: Any, tmp_path: Path) -> None:
    """Past overlay's one-page mount-data limit: the root path is long enough that 40 lowerdirs exceed it."""
    root = dirs.root / ("deep-" + "x" * 60) / "root"
    client = Client(root, dirs.state)
    layers = [busybox_layer()]
    for i in range(1, 40):
        b = LayerBuilder().dir("layers").file(f"layers/{i:02d}", f"{i}\n").file("etc/top", f"{i}\n")
        if i > 1:
            b.whiteout(f"layers/{i - 1:02d}")
        layers.append(b.bytes())
    build_layout(tmp_path / "layout", layers, compression="gzip")
    image = ingest_layout(client, tmp_path / "layout", "test/forty:latest")
    top = unpack_image(client, image, snapshotter="overlayfs")
    mounts = client.snapshotter("overlayfs").view("forty", top)
    assert len(",".join(mounts[0].options)) > os.sysconf("SC_PAGESIZE")
    client.snapshotter("overlayfs").remove("forty")
    with mounted_view(client, "overlayfs", top, tmp_path / "rootfs") as rootfs:
        assert os.listdir(rootfs / "layers") == ["39"]
        assert (rootfs / "etc" / "top").read_text() == "39\n"
        r = subprocess.run(["chroot", str(rootfs), "/bin/cat", "/layers/39"], capture_output=True, text=True)
        assert r.stdout == "39\n"
    assert len(client.snapshotter("overlayfs").list()) == 40
    client.db.close()


def test_unpack_is_idempotent_and_shares_bases(client: Client, tmp_path: Path) -> None:
    base = [busybox_layer(), *whiteout_layers()]
    build_layout(tmp_path / "a", base)
    build_layout(tmp_path / "b", base + [LayerBuilder().file("extra", "x").bytes()])
    a = ingest_layout(client, tmp_path / "a", "test/a:latest")
    b = ingest_layout(client, tmp_path / "b", "test/b:latest")
    assert not is_unpacked(client, a)
    top_a = unpack_image(client, a, snapshotter="overlayfs")
    assert is_unpacked(client, a, snapshotter="overlayfs") and not is_unpacked(client, a, snapshotter="native")
    snapdir = client.root / "snapshots" / "overlayfs" / "snapshots"
    before = sorted(os.listdir(snapdir))
    events: list[Any] = []
    assert unpack_image(client, a, snapshotter="overlayfs", progress=events.append) == top_a
    assert [e.status for e in events] == ["exists"] * 4 and sorted(os.listdir(snapdir)) == before
    events.clear()
    unpack_image(client, b, snapshotter="overlayfs", progress=events.append)
    assert [e.status for e in events if e.status != "applying"] == ["exists"] * 4 + ["applied"]
    # The unpacked state is recorded on the config blob, as containerd does (and keeps snapshots from GC).
    im, chain = resolve_chain(client, a)
    assert client.content.info(im.config_desc.digest).labels[GC_REF_SNAPSHOT + "overlayfs"] == top_a == chain[-1]
    # No lease and no extraction snapshot is left behind.
    assert client.leases.list() == []
    assert not [i for i in client.snapshotter("overlayfs").list() if i.name.startswith("extract-")]
    # Another namespace gets the same chain without writing a byte: the directories are shared.
    other = client.with_namespace("other")
    ingest_layout(other, tmp_path / "a", "test/a:latest")
    events.clear()
    unpack_image(other, "test/a:latest", snapshotter="overlayfs", progress=events.append)
    assert [e.status for e in events] == ["shared"] * 4
    assert sorted(os.listdir(snapdir)) == sorted(set(before) | set(os.listdir(snapdir))) and \
        len(os.listdir(snapdir)) == len(before) + 1


def _malicious_image(client: Client, tmp_path: Path, evil: bytes, name: str = "test/evil:latest") -> Any:
    build_layout(tmp_path / "evil-layout", [busybox_layer(), evil])
    return ingest_layout(client, tmp_path / "evil-layout", name)


@pytest.mark.parametrize("snapshotter", SNAPSHOTTERS)
def test_malicious_layer_rejected_and_nothing_left(client: Client, tmp_path: Path, snapshotter: str) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "victim").write_text("precious\n")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("ok", f"../../../../../../../..{host}/victim"):
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    image = _malicious_image(client, tmp_path, raw.getvalue())
    im, chain = resolve_chain(client, image)
    with pytest.raises(errors.InvalidArgument) as exc:
        unpack_image(client, image, snapshotter=snapshotter)
    assert str(exc.value).startswith(f"layer {im.layers[1].digest}: entry '../../")
    assert "path contains '..'" in str(exc.value)
    assert (host / "victim").read_text() == "precious\n" and os.listdir(host) == ["victim"]
    # The good base layer stays committed; the failed one leaves no snapshot, lease or mount.
    assert [i.name for i in client.snapshotter(snapshotter).list()] == [chain[0]]
    assert client.leases.list() == []
    assert not mount_points_under(str(client.root))


def test_symlink_escape_across_layers_contained(client: Client, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "victim").write_text("precious\n")
    l2 = LayerBuilder().symlink("evil", str(host)).symlink("up", "../../../../../..").bytes()
    l3 = LayerBuilder().file("evil/victim", "evil").file("evil/pwned", "evil").file("up/x", "x").bytes()
    build_layout(tmp_path / "layout", [busybox_layer(), l2, l3])
    image = ingest_layout(client, tmp_path / "layout", "test/escape:latest")
    top = unpack_image(client, image, snapshotter="overlayfs")
    assert (host / "victim").read_text() == "precious\n" and os.listdir(host) == ["victim"]
    with mounted_view(client, "overlayfs", top, tmp_path / "rootfs") as rootfs:
        assert (rootfs / str(host)[1:] / "pwned").read_text() == "evil" and (rootfs / "x").exists()


def test_diff_id_mismatch_and_missing_blob(client: Client, tmp_path: Path) -> None:
    layers = [busybox_layer(), LayerBuilder().file("a", "1").bytes()]
    wrong = {"rootfs": {"type": "layers", "diff_ids": [hashlib.sha256(layers[0]).hexdigest(), "0" * 64]}}
    wrong["rootfs"]["diff_ids"] = ["sha256:" + d for d in wrong["rootfs"]["diff_ids"]]
    build_layout(tmp_path / "layout", layers, config=wrong)
    image = ingest_layout(client, tmp_path / "layout", "test/bad:latest")
    with pytest.raises(errors.FailedPrecondition, match="does not match diff ID sha256:0000"):
        unpack_image(client, image, snapshotter="native")
    assert len(client.snapshotter("native").list()) == 1 and client.leases.list() == []
    im, _ = resolve_chain(client, image)
    client.content.delete(im.layers[1].digest)
    with pytest.raises(errors.NotFound, match="not in the content store"):
        unpack_image(client, image, snapshotter="native")


def test_container_snapshot_on_unpacked_image(client: Client, tmp_path: Path) -> None:
    """The container's path: prepare on the image's top chain ID, write, and the image stays pristine."""
    build_layout(tmp_path / "layout", [busybox_layer()])
    image = ingest_layout(client, tmp_path / "layout", "test/bb:latest")
    top = unpack_image(client, image)  # default snapshotter from config: overlayfs
    sn = client.snapshotter()
    mounts = sn.prepare("ctr-1", top)
    (tmp_path / "c").mkdir()
    mount_all(mounts, tmp_path / "c")
    try:
        r = subprocess.run(["chroot", str(tmp_path / "c"), "/bin/sh", "-c", "echo hi > /root/note; cat /root/note"],
                           capture_output=True, text=True)
        assert r.stdout == "hi\n"
    finally:
        unmount_all(tmp_path / "c")
    with mounted_view(client, "overlayfs", top, tmp_path / "v") as rootfs:
        assert not (rootfs / "root" / "note").exists()
    with pytest.raises(errors.FailedPrecondition, match="child"):
        sn.remove(top)


def test_concurrent_unpacks_of_one_image(dirs: Any, tmp_path: Path) -> None:
    """Two unpacks racing on the same chain: both succeed, one directory per layer survives."""
    import threading

    build_layout(tmp_path / "layout", [busybox_layer(), *whiteout_layers()])
    setup = Client(dirs.root, dirs.state)
    ingest_layout(setup, tmp_path / "layout", "test/race:latest")
    results: list[Any] = []

    def worker() -> None:
        c = Client(dirs.root, dirs.state)
        try:
            results.append(unpack_image(c, "test/race:latest", snapshotter="overlayfs"))
        except Exception as exc:  # reported by the assertion below
            results.append(exc)
        finally:
            c.db.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    _, chain = resolve_chain(setup, "test/race:latest")
    assert results == [chain[-1], chain[-1]]
    sn = setup.snapshotter("overlayfs")
    assert sorted(i.name for i in sn.list()) == sorted(chain)
    assert len(os.listdir(dirs.root / "snapshots" / "overlayfs" / "snapshots")) == 4
    assert setup.leases.list() == []
    setup.db.close()


def test_images_unpack_command(client: Client, ctrpy: Any, tmp_path: Path) -> None:
    build_layout(tmp_path / "layout", [busybox_layer()])
    ingest_layout(client, tmp_path / "layout", "test/busybox:latest")
    client.db.close()
    r = ctrpy("snapshots", "--snapshotter", "native", "ls", "-q")
    assert r.returncode == 0 and r.stdout.strip() == "", r.stderr
    r = ctrpy("images", "unpack", "--snapshotter", "native", "test/busybox:latest")
    assert r.returncode == 0, r.stderr
    top = r.stdout.strip()
    assert top.startswith("sha256:")
    r = ctrpy("snapshots", "--snapshotter", "native", "ls", "-q")
    assert top in r.stdout.split()
    r = ctrpy("images", "unpack", "test/busybox:nope")
    assert r.returncode == 4 and r.stderr.startswith("ctrpy: ") and r.stderr.count("\n") == 1


def test_tmpmounts_owner_tells_leftovers_from_live_applies(tmp_path: Path) -> None:
    real = tmp_path / "real-root"
    real.mkdir()
    (tmp_path / "link-root").symlink_to(real)
    tmp = TempMounts(tmp_path / "link-root")  # mountinfo shows the resolved path: both must match
    target = tmp.new_dir()
    assert stat.S_IMODE(target.stat().st_mode) == 0o700 and target.parent == tmp.base
    assert tmp.holds(f"{tmp.base}/x") and tmp.holds(f"{real}/tmpmounts/x")
    assert not tmp.holds(f"{real}/tmpmounts-other/x") and not tmp.holds(str(real))
    source = tmp_path / "src"
    source.mkdir()
    mount_all([Mount("bind", str(source), options=("bind",))], target)
    try:
        assert list(tmp.leftovers(idle_since=os.stat(target).st_mtime - 1)) == []  # too young
        assert list(tmp.leftovers(idle_since=9e9)) == []  # mounted on: a live apply
        with pytest.raises(errors.InvalidArgument):
            tmp.release(str(source))  # never anything outside ROOT/tmpmounts
        tmp.release(str(target))
    finally:
        unmount_all(real, detach=True)  # the resolved path: found even if the owner's lookup is broken
    assert not target.exists()
    idle = tmp.new_dir()
    assert list(tmp.leftovers(idle_since=9e9)) == [idle]
    tmp.remove(idle)
    assert list(tmp.leftovers(idle_since=9e9)) == []


def test_root_through_a_symlink_unpacks_intact_and_leaves_no_mount(tmp_path: Path) -> None:
    # mountinfo shows resolved paths: apply_to_mounts once missed its own overlay below a symlinked root, took
    # it for a plain directory and rmtree'd through it (every layer above the first became whiteouts).
    real = tmp_path / "real-root"
    real.mkdir()
    (tmp_path / "root").symlink_to(real)
    client = Client(tmp_path / "root", tmp_path / "state")
    try:
        build_layout(tmp_path / "layout", [busybox_layer(), *whiteout_layers()])
        image = ingest_layout(client, tmp_path / "layout", "test/symlinked:1")
        top = unpack_image(client, image, snapshotter="overlayfs")
        assert mount_points_under(str(real)) == [] and os.listdir(real / "tmpmounts") == []
        with mounted_view(client, "overlayfs", top, tmp_path / "view") as view:
            assert (view / "bin" / "busybox").is_file() and (view / "data" / "keep.txt").read_text() == "keep\n"
            assert (view / "etc" / "motd").read_text() == "v2\n"
    finally:
        unmount_all(real, detach=True)
        client.db.close()
