"""Applying layer tars: OCI layer semantics, decompression, and every malicious layer we know of.

The malicious cases each plant a sentinel directory outside the root ("host") and check that it is
untouched afterwards, and that the error (when the layer is rejected) names the layer and the entry.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from ctrpy.runtime import errors
from ctrpy.runtime.archive import LayerError, apply_layer, apply_layer_blob, clean_name

MTIME = 1_600_000_000


class Tar:
    """A layer tar built entry by entry (PAX format, so xattrs and long names work)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def add(self, name: str, kind: bytes = tarfile.REGTYPE, *, data: bytes = b"", mode: int = 0o644,
            uid: int = 0, gid: int = 0, linkname: str = "", mtime: float = MTIME, xattrs: dict | None = None,
            dev: tuple[int, int] = (0, 0)) -> Tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, mtime
        info.linkname = linkname
        info.devmajor, info.devminor = dev
        if xattrs:
            info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
        if kind == tarfile.REGTYPE:
            info.size = len(data)
            self.tar.addfile(info, io.BytesIO(data))
        else:
            self.tar.addfile(info)
        return self

    def dir(self, name: str, **kw: Any) -> Tar:
        return self.add(name, tarfile.DIRTYPE, mode=kw.pop("mode", 0o755), **kw)

    def file(self, name: str, data: bytes | str = b"", **kw: Any) -> Tar:
        return self.add(name, data=data.encode() if isinstance(data, str) else data, **kw)

    def symlink(self, name: str, target: str) -> Tar:
        return self.add(name, tarfile.SYMTYPE, linkname=target, mode=0o777)

    def hardlink(self, name: str, target: str) -> Tar:
        return self.add(name, tarfile.LNKTYPE, linkname=target)

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


def apply(root: Path, tar: Tar | bytes, layer: str = "sha256:test") -> Any:
    data = tar.bytes() if isinstance(tar, Tar) else tar
    return apply_layer(root, io.BytesIO(data), layer=layer)


@pytest.fixture(params=["openat2", "walk"])
def root(request: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The layer's root; every test runs with openat2 and with the component-wise resolver (old kernels)."""
    from ctrpy.runtime import archive

    if request.param == "walk":
        monkeypatch.setattr(archive, "_have_openat2", False)
    else:
        assert archive.openat2_available(), "openat2 missing: kernel 5.6 or newer expected on this machine"
    r = tmp_path / "rootfs"
    r.mkdir()
    return r


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A directory outside the root standing for the host; checked untouched after each malicious layer."""
    h = tmp_path / "host"
    h.mkdir()
    (h / "victim").write_text("precious\n")
    return h


def host_untouched(host: Path) -> bool:
    return sorted(os.listdir(host)) == ["victim"] and (host / "victim").read_text() == "precious\n" \
        and os.stat(host / "victim").st_nlink == 1


# ------------------------------------------------------------------------------------- layer semantics

def test_file_types_owners_modes_times(root: Path) -> None:
    t = (Tar().dir("bin", mode=0o755).file("bin/tool", "x", mode=0o4755, uid=0, gid=0)
         .file("bin/sg", "y", mode=0o2711, uid=1000, gid=2000)
         .dir("tmp", mode=0o1777).dir("home/app", mode=0o750, uid=1000, gid=1000)
         .file("home/app/data", "z", mode=0o600, uid=1000, gid=1000, mtime=1_500_000_000.5)
         .symlink("bin/sh", "tool").hardlink("bin/tool2", "bin/tool")
         .add("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3))
         .add("dev/loop9", tarfile.BLKTYPE, mode=0o660, gid=6, dev=(7, 9))
         .add("run/fifo", tarfile.FIFOTYPE, mode=0o620))
    stats = apply(root, t)
    assert stats.entries == 11

    def st(p: str) -> os.stat_result:
        return os.lstat(root / p)

    assert stat.S_IMODE(st("bin/tool").st_mode) == 0o4755  # setuid survives chown
    assert stat.S_IMODE(st("bin/sg").st_mode) == 0o2711 and (st("bin/sg").st_uid, st("bin/sg").st_gid) == (1000, 2000)
    assert stat.S_IMODE(st("tmp").st_mode) == 0o1777 and stat.S_ISDIR(st("tmp").st_mode)
    assert (st("home/app").st_uid, stat.S_IMODE(st("home/app").st_mode)) == (1000, 0o750)
    assert st("home/app/data").st_mtime_ns == 1_500_000_000_500_000_000
    assert os.readlink(root / "bin/sh") == "tool" and stat.S_ISLNK(st("bin/sh").st_mode)
    assert st("bin/sh").st_mtime == MTIME
    assert st("bin/tool2").st_ino == st("bin/tool").st_ino and st("bin/tool").st_nlink == 2
    assert stat.S_ISCHR(st("dev/null").st_mode) and st("dev/null").st_rdev == os.makedev(1, 3)
    assert stat.S_ISBLK(st("dev/loop9").st_mode) and st("dev/loop9").st_rdev == os.makedev(7, 9)
    assert st("dev/loop9").st_gid == 6 and stat.S_IMODE(st("dev/loop9").st_mode) == 0o660
    assert stat.S_ISFIFO(st("run/fifo").st_mode) and stat.S_IMODE(st("run/fifo").st_mode) == 0o620
    # Directory times are set after their contents, implied parents are 0755 root-owned.
    assert st("bin").st_mtime == MTIME and st("home/app").st_mtime == MTIME
    assert stat.S_IMODE(st("dev").st_mode) == 0o755 and st("home").st_uid == 0


def test_xattrs_and_root_entry(root: Path) -> None:
    t = (Tar().dir("./", mode=0o711, mtime=1_234_567_890)
         .file("f", "x", xattrs={"user.test": "hello", "trusted.overlay.redirect": "/etc"})
         .dir("d", xattrs={"user.dir": "1"}))
    apply(root, t)
    assert os.getxattr(root / "f", "user.test") == b"hello"
    assert "trusted.overlay.redirect" not in os.listxattr(root / "f")  # layers may not forge overlay metadata
    assert os.getxattr(root / "d", "user.dir") == b"1"
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o711 and os.stat(root).st_mtime == 1_234_567_890


def test_replacements_between_layers(root: Path) -> None:
    apply(root, Tar().file("a", "file").dir("b").file("b/inner", "x").symlink("c", "a").dir("d", mode=0o700))
    apply(root, Tar().dir("a").file("b", "now a file").file("c", "regular").dir("d", mode=0o755, uid=5))
    assert (root / "a").is_dir() and (root / "b").read_text() == "now a file"
    assert not (root / "c").is_symlink() and (root / "c").read_text() == "regular"
    # An existing directory is kept and gets the new attributes.
    assert stat.S_IMODE(os.stat(root / "d").st_mode) == 0o755 and os.stat(root / "d").st_uid == 5


def test_rewriting_a_hardlinked_file_breaks_the_link(root: Path) -> None:
    apply(root, Tar().file("a", "one").hardlink("b", "a"))
    apply(root, Tar().file("a", "two"))
    assert (root / "a").read_text() == "two" and (root / "b").read_text() == "one"


def test_whiteouts_as_deletions(root: Path) -> None:
    apply(root, Tar().dir("d").file("d/x", "1").file("d/y", "2").dir("d/sub").file("d/sub/z", "3")
          .file("gone", "g").dir("tree").file("tree/deep", "t"))
    stats = apply(root, Tar().file(".wh.gone").file(".wh.tree").file("nothere/.wh.missing"))
    assert stats.whiteouts == 3
    assert not (root / "gone").exists() and not (root / "tree").exists()
    # Opaque directory: lower content hidden, this layer's own content kept (whatever the order).
    apply(root, Tar().dir("d").file("d/new-before", "b").file("d/.wh..wh..opq").file("d/new-after", "a"))
    assert sorted(os.listdir(root / "d")) == ["new-after", "new-before"]
    assert not any(name.startswith(".wh.") for _, _, files in os.walk(root) for name in files)


def test_whiteouts_never_hide_entries_of_their_own_layer(root: Path) -> None:
    """OCI: whiteouts apply to lower layers only, whatever the order of entries in the layer."""
    apply(root, Tar().file("y", "lower").dir("d").file("d/keep", "k").dir("d/sub").file("d/sub/old", "o")
          .dir("x").file("x/old", "o"))
    apply(root, Tar().file("n", "mine").file(".wh.n").file(".wh.y")
          .file("d/sub/new", "n").file("d/.wh..wh..opq")
          .file("x/new", "n").file(".wh.x"))
    assert (root / "n").read_text() == "mine" and not (root / "y").exists()
    assert read_all(root / "d") == {"sub/new": "n"}
    assert read_all(root / "x") == {"new": "n"}


def read_all(base: Path) -> dict[str, str]:
    return {str(p.relative_to(base)): p.read_text() for p in base.rglob("*") if p.is_file()}


def test_opaque_recreates_directory_with_its_attributes(root: Path) -> None:
    apply(root, Tar().dir("d", mode=0o750, uid=7, gid=8, mtime=1_111_111_111).file("d/old", "x"))
    apply(root, Tar().file("d/.wh..wh..opq"))
    st = os.stat(root / "d")
    assert os.listdir(root / "d") == []
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (0o750, 7, 8, 1_111_111_111)


def test_empty_and_broken_layers(root: Path) -> None:
    assert apply(root, b"").entries == 0
    assert apply(root, Tar()).entries == 0  # just the end-of-archive blocks
    good = Tar().file("a", "x" * 5000).file("b", "y").bytes()
    with pytest.raises(LayerError, match=r"^layer sha256:trunc: truncated or corrupt tar archive at entry 'a'"):
        apply(root, good[:3000], layer="sha256:trunc")
    with pytest.raises(LayerError, match="layer sha256:junk: "):
        apply(root, b"\x01" * 2048, layer="sha256:junk")


def test_clean_name() -> None:
    assert clean_name("./a//b/./c/") == "a/b/c"
    assert clean_name("/etc/passwd") == "etc/passwd"
    assert clean_name("./") == ""
    for bad in ("..", "../x", "a/../../x", "a/.."):
        with pytest.raises(ValueError):
            clean_name(bad)


# ------------------------------------------------------------------------------------- malicious layers

def test_dotdot_paths_rejected(root: Path, host: Path) -> None:
    for name in ("../host/victim", "a/../../host/pwned", "../../../../../../../../" + str(host)[1:] + "/pwned"):
        with pytest.raises(LayerError) as exc:
            apply(root, Tar().file(name, "evil"), layer="sha256:evil")
        assert str(exc.value) == f"layer sha256:evil: entry {name!r}: path contains '..': a layer may not reach outside its root"
    assert host_untouched(host) and os.listdir(root) == []


def test_absolute_paths_contained(root: Path, host: Path) -> None:
    apply(root, Tar().file(str(host / "victim"), "evil").file(str(host / "pwned"), "evil"))
    assert host_untouched(host)
    assert (root / str(host)[1:] / "victim").read_text() == "evil"


@pytest.mark.parametrize("target", ["/", "..", "../../../../../..", "/proc/self/root", "."])
def test_symlink_then_write_through_it_same_layer(root: Path, host: Path, target: str) -> None:
    rel = str(host)[1:]
    t = Tar().symlink("evil", target).file(f"evil/{rel}/pwned", "evil").file(f"evil/{rel}/victim", "evil")
    apply(root, t)
    assert host_untouched(host)
    assert os.readlink(root / "evil") == target  # the symlink itself is kept: it is data
    inside = f"proc/self/root/{rel}" if target == "/proc/self/root" else rel
    assert (root / inside / "pwned").read_text() == "evil" and (root / inside / "victim").read_text() == "evil"


def test_symlink_in_one_layer_write_in_the_next(root: Path, host: Path) -> None:
    apply(root, Tar().symlink("evil", str(host)).symlink("up", "../../../.."))
    apply(root, Tar().file("evil/pwned", "x").file("evil/victim", "x").dir("up/newdir").file("up/f", "x"))
    assert host_untouched(host)
    assert (root / str(host)[1:] / "pwned").exists() and (root / "newdir").is_dir() and (root / "f").exists()


def test_final_symlink_replaced_not_followed(root: Path, host: Path) -> None:
    apply(root, Tar().symlink("f", str(host / "victim")).symlink("d", str(host)))
    apply(root, Tar().file("f", "overwrite", mode=0o777).dir("d", mode=0o777).file("d/x", "x"))
    assert host_untouched(host)
    assert (root / "f").read_text() == "overwrite" and (root / "d").is_dir() and not (root / "d").is_symlink()
    assert stat.S_IMODE(os.stat(host).st_mode) == 0o755 and stat.S_IMODE(os.stat(host / "victim").st_mode) == 0o644


def test_hardlinks_to_host_files(root: Path, host: Path) -> None:
    cases = {
        str(host / "victim"): "does not exist in the layer's root",
        "../host/victim": "path contains '..'",
        f"evil/{str(host)[1:]}/victim": "does not exist in the layer's root",
    }
    apply(root, Tar().symlink("evil", "/"))
    for target, reason in cases.items():
        with pytest.raises(LayerError) as exc:
            apply(root, Tar().hardlink("h", target), layer="sha256:hl")
        assert str(exc.value).startswith("layer sha256:hl: entry 'h': hard link ") and reason in str(exc.value)
    assert host_untouched(host) and not (root / "h").exists()
    # A link to an absolute path that does exist inside the root links the root's file.
    apply(root, Tar().file("etc/passwd", "root-file").hardlink("h", "/etc/passwd"))
    assert os.stat(root / "h").st_ino == os.stat(root / "etc/passwd").st_ino


def test_hardlink_to_symlink_links_the_symlink(root: Path, host: Path) -> None:
    apply(root, Tar().symlink("s", str(host / "victim")).hardlink("h", "s"))
    assert os.readlink(root / "h") == str(host / "victim")
    apply(root, Tar().file("h", "overwrite"))
    assert host_untouched(host)


def test_whiteouts_cannot_escape(root: Path, host: Path, tmp_path: Path) -> None:
    (root / "sub").mkdir()
    for name in ("sub/.wh...", ".wh..", ".wh."):
        with pytest.raises(LayerError, match=r"^layer sha256:wh: entry '.*': whiteout of '\.{0,2}' is not allowed"):
            apply(root, Tar().file(name), layer="sha256:wh")
    with pytest.raises(LayerError, match="path contains '..'"):
        apply(root, Tar().file("../.wh.host"))
    # A whiteout through a symlink deletes inside the root only.
    rel = str(host)[1:]
    apply(root, Tar().symlink("evil", "/").file(f"evil/{rel}/.wh.victim").symlink("h", str(host))
          .file("h/.wh.victim"))
    assert host_untouched(host) and (root / "sub").is_dir() and tmp_path.is_dir()


def test_device_and_xattr_paths_through_symlink(root: Path, host: Path) -> None:
    apply(root, Tar().symlink("evil", str(host)))
    apply(root, Tar().add("evil/dev", tarfile.CHRTYPE, dev=(1, 3)).add("evil/fifo", tarfile.FIFOTYPE)
          .file("evil/x", "x", xattrs={"user.a": "b"}))
    assert host_untouched(host)


def test_corrupt_entry_type_rejected(root: Path) -> None:
    t = Tar()
    info = tarfile.TarInfo("vol")
    info.type = b"V"  # a GNU volume header: no meaning in a layer
    t.tar.addfile(info)
    with pytest.raises(LayerError, match=r"entry 'vol': unsupported tar entry type"):
        apply(root, t)


# ------------------------------------------------------------------------------------- blobs and streams

@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
@pytest.mark.parametrize("threaded", [True, False])
def test_blob_decompression_and_diff_id(root: Path, compression: str, threaded: bool) -> None:
    import hashlib

    import zstandard

    raw = Tar().file("a", os.urandom(300_000)).file("b", "x").bytes()
    blob = {"gzip": gzip.compress(raw), "zstd": zstandard.ZstdCompressor().compress(raw), "none": raw}[compression]
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    apply_layer_blob(root, io.BytesIO(blob), layer="sha256:l", diff_id=diff_id, threaded=threaded)
    assert (root / "a").stat().st_size == 300_000
    with pytest.raises(errors.FailedPrecondition, match=f"layer sha256:l: uncompressed digest {diff_id} does not match"):
        apply_layer_blob(root, io.BytesIO(blob), layer="sha256:l", diff_id="sha256:" + "0" * 64, threaded=threaded)


def test_blob_corrupt_compression(root: Path) -> None:
    blob = gzip.compress(Tar().file("a", "x" * 100_000).bytes())
    broken = blob[:40] + bytes(b ^ 0xFF for b in blob[40:80]) + blob[80:]
    with pytest.raises(errors.CtrpyError, match="layer sha256:bad"):
        apply_layer_blob(root, io.BytesIO(broken), layer="sha256:bad")
    with pytest.raises(errors.InvalidArgument, match="media type .*gzip but its data is none"):
        apply_layer_blob(root, io.BytesIO(b"x" * 100), media_type="application/vnd.oci.image.layer.v1.tar+gzip")


# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child of a big pytest
# process would report the parent's size.
_RSS_SCRIPT = r"""
import sys
from ctrpy.runtime.archive import apply_layer_blob
with open(sys.argv[1], "rb") as f:
    stats = apply_layer_blob(sys.argv[2], f, layer="big")
hwm = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(stats.bytes, hwm)
"""


@pytest.mark.slow
def test_big_layer_bounded_memory(tmp_path: Path) -> None:
    """A 160 MB layer (one 128 MiB file plus 2000 small ones) unpacks in a process that stays small."""
    layer = tmp_path / "big.tar.gz"
    chunk = os.urandom(1 << 16)
    with gzip.open(layer, "wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("huge")
        info.size = 128 << 20

        class Repeat(io.RawIOBase):
            left = info.size

            def readable(self) -> bool:
                return True

            def readinto(self, b: Any) -> int:
                n = min(len(b), self.left, len(chunk))
                b[:n] = chunk[:n]
                self.left -= n
                return n

        tar.addfile(info, io.BufferedReader(Repeat()))
        for i in range(2000):
            small = tarfile.TarInfo(f"many/{i:04d}")
            small.size = 16 << 10
            tar.addfile(small, io.BytesIO(chunk[: small.size]))
    root = tmp_path / "rootfs"
    root.mkdir()
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(layer), str(root)], capture_output=True,
                         text=True, check=True)
    written, max_rss_kib = map(int, out.stdout.split())
    assert written == (128 << 20) + 2000 * (16 << 10)
    assert (root / "huge").stat().st_size == 128 << 20 and len(os.listdir(root / "many")) == 2000
    assert max_rss_kib < 80 * 1024, f"peak RSS {max_rss_kib} KiB"
