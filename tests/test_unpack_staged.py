"""Layers applied ahead of their parents (issue 17): the concurrent unpack gives the rootfs the sequential one
gives, entry for entry (type, mode, owner, content, xattrs, hard links, whiteouts seen through the mounted
overlay), and layers whose result depends on the layers below (a path through a lower symlink, a hard link to
a lower file, a whiteout of something the layer re-creates) are applied through the mount instead.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from support.store import ingest_layout
from support.testimages import MTIME, LayerBuilder, build_layout

from ctrpy.runtime import unpack as unpack_mod
from ctrpy.runtime.client import Client
from ctrpy.runtime.mount import mount_all, unmount_all
from ctrpy.runtime.unpack import unpack_image


def _with_xattrs(b: LayerBuilder, kind: str, name: str, xattrs: dict[str, str], **kw: Any) -> LayerBuilder:
    import tarfile

    info = b._info(name, tarfile.DIRTYPE if kind == "dir" else tarfile.REGTYPE, kw.get("mode", 0o755),
                   kw.get("uid", 0), kw.get("gid", 0))
    info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    b.tar.addfile(info)
    return b


def layers() -> list[bytes]:
    base = LayerBuilder()
    for d in ("etc", "usr", "opt", "opt/x", "data", "data/dir", "var", "keep"):
        base.dir(d)
    _with_xattrs(base, "dir", "usr/lib", {"user.base": "1"}, mode=0o750, uid=5, gid=6)
    _with_xattrs(base, "dir", "srv", {"user.keep": "k"}, mode=0o711, uid=7, gid=8)
    base.symlink("lib", "usr/lib").file("usr/lib/libc.so", "libc\n").file("srv/f", "f\n")
    base.file("etc/passwd", "root:x:0:0::/:/bin/sh\n").file("etc/gone", "gone\n").file("opt/x/y", "y\n")
    base.file("data/dir/a", "a\n").file("data/dir/b", "b\n").dir("var/cache", 0o700, 3, 4)
    base.file("var/cache/old", "old\n").file("keep/k", "k\n").dir("keep2").dir("keep2/sub", 0o700, 9, 9)
    _with_xattrs(base, "dir", "keep2/e", {"user.e": "e"})
    # Staged as is: implicit parents take the attributes below, whiteouts of files and directories, an opaque
    # directory the layer has no entry for, a directory entry over a lower one with xattrs, hard links
    # within the layer, whiteouts and opaque markers of nothing.
    plain = (LayerBuilder().file("usr/lib/new.so", "new\n").whiteout("etc/gone").whiteout("opt/x")
             .opaque("data/dir").dir("srv", 0o755).file("new/f", "nf\n").hardlink("new/h", "new/f")
             .whiteout("etc/nothere").whiteout("nodir/x").opaque("nodir2").file("var/cache/fresh", "fresh\n"))
    # Needs its parent: the implicit `lib` is a symlink below (the sequential apply writes to usr/lib).
    through_symlink = LayerBuilder().file("lib/added", "added\n")
    # Needs its parent: a hard link to a file of a lower layer.
    lower_link = LayerBuilder().hardlink("etc/hard", "etc/passwd")
    # Needs its parent: a directory whited out and re-created in the same layer.
    recreate = LayerBuilder().whiteout("keep").file("keep/new", "n\n")
    # Staged again, above the fallbacks: an opaque directory with entries of the layer, a whiteout below an
    # implicit parent.
    last = (LayerBuilder().dir("var/cache", 0o755).opaque("var/cache").file("var/cache/only", "1\n")
            .whiteout("usr/lib/libc.so")
            # The marker first: the sequential apply re-creates keep2 empty, so nothing below shows through.
            .opaque("keep2").file("keep2/sub/x", "x\n").dir("keep2/e").whiteout("keep2/gone"))
    return [base.bytes(), plain.bytes(), through_symlink.bytes(), lower_link.bytes(), recreate.bytes(), last.bytes()]


def tree(root: Path) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = os.lstat(path)
            extra: Any = None
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(path.read_bytes()).hexdigest()
                inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(path)
            xattrs = {} if stat.S_ISLNK(st.st_mode) else {
                k: os.getxattr(path, k) for k in os.listxattr(path) if k.startswith("user.")}
            # A directory's time is the layer's when the layer has an entry for it (else "now", in both ways).
            times = st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else st.st_mtime_ns == MTIME * 10**9
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra,
                        sorted(xattrs.items()), times)
    rst = os.stat(root)
    out["<root>"] = (stat.S_IMODE(rst.st_mode), rst.st_uid, rst.st_gid, rst.st_mtime_ns == MTIME * 10**9)
    out["<hardlinks>"] = tuple(sorted(tuple(sorted(v)) for v in inodes.values() if len(v) > 1))
    return out


def _unpack(root: Path, state: Path, layout: Path, concurrent: bool, where: Path) -> dict[str, tuple]:
    client = Client(root, state)
    try:
        image = ingest_layout(client, layout, "test/staged:latest")
        top = unpack_image(client, image, snapshotter="overlayfs", concurrent=concurrent)
        sn = client.snapshotter("overlayfs")
        mounts = sn.view("view", top)
        where.mkdir()
        mount_all(mounts, where)
        try:
            return tree(where)
        finally:
            unmount_all(where)
            sn.remove("view")
    finally:
        client.db.close()


def test_concurrent_unpack_matches_sequential(dirs: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_layout(tmp_path / "layout", layers(), compression="gzip")
    used: list[str] = []
    real = unpack_mod._use_staged

    def counting(client: Client, sn: Any, stager: Any, key: str, mounts: Any) -> None:
        real(client, sn, stager, key, mounts)
        used.append(key.split()[1])

    monkeypatch.setattr(unpack_mod, "_use_staged", counting)
    seq = _unpack(tmp_path / "r1", tmp_path / "s1", tmp_path / "layout", False, tmp_path / "m1")
    assert used == []
    conc = _unpack(dirs.root, dirs.state, tmp_path / "layout", True, tmp_path / "m2")
    # Layers 2 and 6 went the staged way, layers 3-5 (each needing its parent) through the mount.
    client = Client(dirs.root, dirs.state)
    try:
        from ctrpy.runtime.unpack import resolve_chain

        _, chain = resolve_chain(client, "test/staged:latest")
        assert not [i for i in client.snapshotter("overlayfs").list() if i.name.startswith(("stage-", "extract-"))]
    finally:
        client.db.close()
    assert used == [chain[1], chain[5]]
    differ = {k: (conc.get(k), seq.get(k)) for k in set(conc) | set(seq) if conc.get(k) != seq.get(k)}
    assert differ == {}
    # The comparison is about the cases it claims to cover.
    assert conc["usr/lib"][1:4] == (0o750, 5, 6) and conc["usr/lib"][5] == [("user.base", b"1")]
    assert conc["srv"][1:4] == (0o755, 0, 0) and conc["srv"][5] == [("user.keep", b"k")]
    for gone in ("etc/gone", "opt/x", "data/dir/a", "nodir", "nodir2", "keep/k", "var/cache/old",
                 "var/cache/fresh", "usr/lib/libc.so"):
        assert gone not in conc
    assert {"usr/lib/new.so", "usr/lib/added", "new/h", "keep/new", "var/cache/only", "data/dir"} <= set(conc)
    assert ("etc/hard", "etc/passwd") in conc["<hardlinks>"] and ("new/f", "new/h") in conc["<hardlinks>"]
    assert stat.S_ISLNK(conc["lib"][0]) and conc["var/cache"][1] == 0o755
    assert conc["keep2/sub"][1:4] == (0o755, 0, 0) and conc["keep2/e"][5] == []


def test_failed_layers_leave_nothing_staged(client: Client, tmp_path: Path) -> None:
    """A layer failing while the next one is staged, and a staged layer failing its diff ID: the error is the
    sequential apply's, and only the layers below stay (no staged snapshot, lease or mount)."""
    import io
    import tarfile

    from ctrpy.runtime import errors
    from ctrpy.runtime.mount import mount_points_under
    from ctrpy.runtime.unpack import resolve_chain

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("../escape")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    good = [LayerBuilder().file(f"l{i}/f", str(i)).bytes() for i in range(3)]
    build_layout(tmp_path / "evil", [good[0], raw.getvalue(), good[1]])
    image = ingest_layout(client, tmp_path / "evil", "test/evil:latest")
    im, chain = resolve_chain(client, image)
    with pytest.raises(errors.InvalidArgument, match=f"^layer {im.layers[1].digest}: entry '../escape'"):
        unpack_image(client, image, snapshotter="overlayfs")
    assert [i.name for i in client.snapshotter("overlayfs").list()] == [chain[0]]
    assert client.leases.list() == [] and not mount_points_under(str(client.root))

    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in good]
    diff_ids[2] = "sha256:" + "0" * 64
    build_layout(tmp_path / "bad", good, config={"rootfs": {"type": "layers", "diff_ids": diff_ids}})
    image = ingest_layout(client, tmp_path / "bad", "test/bad:latest")
    _, chain = resolve_chain(client, image)
    with pytest.raises(errors.FailedPrecondition, match="does not match diff ID sha256:0000"):
        unpack_image(client, image, snapshotter="overlayfs")
    names = {i.name for i in client.snapshotter("overlayfs").list()}
    assert set(chain[:2]) <= names and chain[2] not in names
    assert not [n for n in names if n.startswith(("stage-", "extract-"))]
    assert client.leases.list() == [] and not mount_points_under(str(client.root))
    snapdir = client.root / "snapshots" / "overlayfs" / "snapshots"
    assert len(os.listdir(snapdir)) == len(names)


CHILD_UNPACK = """
import sys
sys.path.insert(0, sys.argv[3])
from ctrpy.runtime.client import Client
from ctrpy.runtime.unpack import unpack_image
unpack_image(Client(sys.argv[1], sys.argv[2]), "big", "overlayfs")
"""


@pytest.mark.slow
def test_killed_while_staging_leaves_only_leased_leftovers(ctrpy: Any, client: Client, dirs: Any,
                                                            tmp_path: Path) -> None:
    """A pull killed while a layer is staged leaves a leased `stage-` snapshot that GC sweeps once the lease
    expires, and the image unpacks from scratch afterwards."""
    import glob
    import json
    import random
    import signal
    import subprocess
    import sys
    import time

    from support.testimages import busybox_layer

    rnd = random.Random(7)
    big = LayerBuilder().dir("data")
    for i in range(2000):
        big.file(f"data/f{i}", rnd.randbytes(16384))
    build_layout(tmp_path / "big", [busybox_layer(), big.bytes(), LayerBuilder().file("top", "t").bytes()],
                 compression="none")
    ingest_layout(client, tmp_path / "big", "big")
    base = dirs.root / "snapshots" / "overlayfs" / "snapshots"
    proc = subprocess.Popen([sys.executable, "-c", CHILD_UNPACK, str(dirs.root), str(dirs.state),
                             str(Path(__file__).parent.parent)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            staged = glob.glob(f"{base}/*/fs/data")
            if staged and len(os.listdir(staged[0])) > 50:
                break
            time.sleep(0.002)
        assert proc.poll() is None, f"the unpack ended before it could be killed: {proc.stderr.read()!r}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def out(*args: str, env: dict[str, str] | None = None) -> str:
        r = ctrpy(*args, env=env)
        assert r.returncode == 0, r.stderr
        return str(r.stdout)

    keys = out("snapshots", "ls", "-q").splitlines()
    assert any(k.startswith("stage-") for k in keys), keys
    assert len(out("leases", "ls", "-q").splitlines()) == 1
    assert json.loads(out("gc", "--format", "json"))["removed"] == []  # the lease still protects it
    libs = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    assert libs, "libfaketime is missing: install the Debian package faketime (make apt)"
    report = json.loads(out("gc", "--format", "json",
                            env={"LD_PRELOAD": libs[0], "FAKETIME": "+25h", "DONT_FAKE_MONOTONIC": "1"}))
    assert {i["id"] for i in report["removed"] if i["type"] == "snapshot"} == {f"overlayfs/{k}" for k in keys}
    assert os.listdir(base) == [] and out("leases", "ls", "-q") == ""
    top = unpack_image(client, "big")
    assert out("snapshots", "ls", "-q", f"name=={top}").splitlines() == [top]


@pytest.mark.slow
def test_streamed_pull_matches_sequential_unpack(seeded_registry: Any, dirs: Any, tmp_path: Path,
                                                 test_images: Any) -> None:
    """`ctrpy pull` on overlayfs (layers applied while they download, the next one staged) leaves the rootfs
    a sequential unpack of the same image from the content store gives (gzip, zstd and plain layers with
    whiteouts, an opaque directory and a hard link)."""
    import subprocess
    import sys

    from ctrpy.runtime.unpack import resolve_chain

    ref = f"{seeded_registry.host}/layered:latest"
    r = subprocess.run([str(Path(sys.executable).parent / "ctrpy"), "--root", str(dirs.root), "--state",
                        str(dirs.state), "pull", "--snapshotter", "overlayfs", ref],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr

    def view(root: Path, state: Path, name: str, where: Path) -> dict[str, tuple]:
        client = Client(root, state)
        try:
            _, chain = resolve_chain(client, name)
            sn = client.snapshotter("overlayfs")
            assert not [i for i in sn.list() if i.name.startswith(("stage-", "extract-"))]
            mounts = sn.view("view", chain[-1])
            where.mkdir()
            mount_all(mounts, where)
            try:
                return tree(where)
            finally:
                unmount_all(where)
                sn.remove("view")
        finally:
            client.db.close()

    pulled = view(dirs.root, dirs.state, ref, tmp_path / "m1")
    client = Client(tmp_path / "r2", tmp_path / "s2")
    try:
        unpack_image(client, ingest_layout(client, test_images.layered, "seq"), snapshotter="overlayfs",
                     concurrent=False)
    finally:
        client.db.close()
    assert pulled == view(tmp_path / "r2", tmp_path / "s2", "seq", tmp_path / "m2")
    assert "data/gone.txt" not in pulled and "data/dir/new.txt" in pulled and "opt/tree" not in pulled


def test_opaque_marker_after_entries_goes_through_the_mount(dirs: Any, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """An opaque marker after entries of the layer in its directory (the sequential apply prunes at that point,
    so what comes later depends on the order): that layer is applied through the mount, same rootfs."""
    base = LayerBuilder().dir("d").dir("d/sub", 0o700, 9, 9).file("d/sub/old", "o").file("d/old", "o").bytes()
    top = LayerBuilder().file("d/a", "a").opaque("d").file("d/sub/x", "x").bytes()
    build_layout(tmp_path / "layout", [base, top, LayerBuilder().file("z", "z").bytes()], compression="gzip")
    used: list[str] = []
    real = unpack_mod._use_staged

    def counting(client: Client, sn: Any, stager: Any, key: str, mounts: Any) -> None:
        real(client, sn, stager, key, mounts)
        used.append(key.split()[1])

    monkeypatch.setattr(unpack_mod, "_use_staged", counting)
    seq = _unpack(tmp_path / "r1", tmp_path / "s1", tmp_path / "layout", False, tmp_path / "m1")
    conc = _unpack(dirs.root, dirs.state, tmp_path / "layout", True, tmp_path / "m2")
    assert len(used) == 1  # only the last layer was staged
    assert conc == seq
    assert "d/old" not in conc and "d/sub/old" not in conc and conc["d/sub"][1:4] == (0o755, 0, 0)
