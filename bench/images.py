"""The benchmark images: busybox (from busybox-static) and a Debian minbase rootfs as 1 and 5 layers.

The Debian rootfs comes from `debootstrap --variant=minbase bookworm` against the apt mirror this machine is
configured with, and is cached under .bench/cache with the OCI layouts built from it, so reruns only push.
Layouts are written with tests/support/testimages.py (the suite's image builder) when it is importable.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

from bench.cleanup import log

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".bench" / "cache"
LAYOUT_VERSION = "1"  # bump to rebuild cached layouts when the way they are built changes
MTIME = 1_700_000_000

# Left out like the official debian images do: apt's binary caches, downloaded lists and debs, /dev nodes.
EXCLUDE = re.compile(r"^(dev/.+|proc/.+|sys/.+|var/cache/apt/.+\.bin|var/cache/apt/archives/.+\.deb"
                     r"|var/lib/apt/lists/[^/]+|debootstrap(/.*)?)$")


def _testimages() -> Any:
    try:
        from tests.support import testimages  # the suite's builder: one way of making images for everyone

        return testimages
    except Exception:
        return None


def apt_mirror() -> str:
    """The Debian mirror from /etc/apt/sources.list.d/debian.sources (first `URIs:` of the main archive)."""
    try:
        text = Path("/etc/apt/sources.list.d/debian.sources").read_text()
    except OSError:
        return "http://deb.debian.org/debian"
    for uri in re.findall(r"^URIs:\s*(\S+)", text, re.M):
        if not uri.rstrip("/").endswith("-security"):
            return uri
    return "http://deb.debian.org/debian"


def debian_rootfs() -> Path:
    """A cached `debootstrap --variant=minbase bookworm` tree (built once, ~1-2 min)."""
    rootfs = CACHE / "debian-rootfs"
    done = CACHE / "debian-rootfs.done"
    if done.exists() and rootfs.is_dir():
        return rootfs
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (make apt installs it)")
    tmp = CACHE / "debian-rootfs.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(rootfs, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    mirror = apt_mirror()
    log(f"bench: debootstrap --variant=minbase bookworm from {mirror} (cached in {rootfs})")
    t0 = time.monotonic()
    result = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(tmp), mirror],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"debootstrap failed: {(result.stderr or result.stdout).strip().splitlines()[-1:]}")
    tmp.rename(rootfs)
    done.write_text(f"built in {time.monotonic() - t0:.0f}s from {mirror}\n")
    return rootfs


def _entries(rootfs: Path) -> list[tuple[str, os.stat_result]]:
    """(relative path, lstat) for everything to pack, parents before children."""
    out = []
    for dirpath, dirnames, filenames in os.walk(rootfs):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, rootfs)
        for name in dirnames + sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if not EXCLUDE.match(rel):
                out.append((rel, os.lstat(os.path.join(dirpath, name))))
        dirnames[:] = [d for d in dirnames if not EXCLUDE.match(d if rel_dir == "." else f"{rel_dir}/{d}")]
    return out


def _pack(rootfs: Path, names: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in names:
            full = rootfs / rel
            info = tar.gettarinfo(str(full), arcname=rel)
            info.uname = info.gname = ""
            if info.isreg():
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


def debian_layers(rootfs: Path, count: int) -> list[bytes]:
    """The rootfs as `count` layer tars: regular files split by size; every directory, link and special file in
    the first layer, each layer repeating the directories its files need (as real image builds do).
    Hard links stay in one layer with their first name so that every link target exists."""
    entries = _entries(rootfs)
    if count == 1:
        return [_pack(rootfs, [rel for rel, _ in entries])]
    total = sum(st.st_size for _, st in entries if _isreg(st))
    chunk_of_inode: dict[tuple[int, int], int] = {}
    chunks: list[list[str]] = [[] for _ in range(count)]
    done = 0
    for rel, st in entries:
        if not _isreg(st):
            chunks[0].append(rel)
            continue
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in chunk_of_inode:
            chunk = chunk_of_inode[key]
        else:
            chunk = min(count - 1, done * count // max(total, 1))
            chunk_of_inode[key] = chunk
        done += st.st_size
        chunks[chunk].append(rel)
    layers = []
    for i, names in enumerate(chunks):
        if i:
            parents = {os.path.dirname(n) for n in names}
            needed: set[str] = set()
            for p in parents:
                while p and p not in needed:
                    needed.add(p)
                    p = os.path.dirname(p)
            names = sorted(needed) + names
            names.sort(key=lambda n: n.split("/"))
        layers.append(_pack(rootfs, names))
    return layers


def _isreg(st: os.stat_result) -> bool:
    import stat

    return stat.S_ISREG(st.st_mode)


def busybox_layer() -> bytes:
    ti = _testimages()
    if ti is not None and hasattr(ti, "busybox_layer"):
        return bytes(ti.busybox_layer())
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname, info.size = kind, mode, MTIME, link, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
        for d in ("bin", "etc", "root", "proc", "sys", "dev", "tmp", "var", "usr", "usr/bin"):
            add(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755)
        add("bin/busybox", tarfile.REGTYPE, 0o755, Path("/bin/busybox").read_bytes())
        for applet in sorted(set(applets) - {"busybox"}):
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644, b"root:x:0:0:root:/root:/bin/sh\n")
        add("etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\n")
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_layout(path: Path, layers: list[bytes], cmd: list[str], tag: str = "latest") -> None:
    """An OCI image layout at `path` with gzip layers (via testimages.build_layout when available)."""
    ti = _testimages()
    if ti is not None and hasattr(ti, "build_layout"):
        ti.build_layout(path, layers, config={"config": {"Cmd": cmd}}, compression="gzip", tag=tag)
        return
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')

    def put(data: bytes) -> str:
        digest = _sha(data)
        (blobs / digest[7:]).write_bytes(data)
        return digest

    descs = []
    for raw in layers:
        blob = gzip.compress(raw, compresslevel=6, mtime=0)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(blob),
                      "size": len(blob)})
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                                    "Cmd": cmd},
                         "rootfs": {"type": "layers", "diff_ids": [_sha(raw) for raw in layers]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": put(config), "size": len(config)},
                           "layers": descs}).encode()
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest),
         "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": tag}}]}))


def layout_layers(path: Path) -> list[Path]:
    """The layer blobs of the (single) image in an OCI layout, base first."""
    index = json.loads((path / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    manifest = json.loads((path / "blobs" / "sha256" / digest.split(":", 1)[1]).read_text())
    return [path / "blobs" / "sha256" / d["digest"].split(":", 1)[1] for d in manifest["layers"]]


def push(layout: Path, dest: str, tag: str = "latest") -> None:
    """skopeo copy the layout byte for byte to a plain-HTTP registry on 127.0.0.1."""
    argv = ["skopeo", "copy", "-q", "--insecure-policy", "--preserve-digests", "--dest-tls-verify=false",
            f"oci:{layout}:{tag}", f"docker://{dest}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo copy to {dest} failed: {result.stderr.strip()}")


class Images:
    """Build (or reuse from the cache) the layouts, then publish them to `registry_host`."""

    def __init__(self, registry_host: str, with_debian: bool = True) -> None:
        self.busybox = f"{registry_host}/bench/busybox:latest"
        self.debian1 = f"{registry_host}/bench/debian:1layer"
        self.debian5 = f"{registry_host}/bench/debian:5layer"
        self.layouts: dict[str, Path] = {}
        t0 = time.monotonic()
        self.layouts["busybox"] = self._layout("busybox", lambda: [busybox_layer()], ["sh"])
        push(self.layouts["busybox"], self.busybox)
        if with_debian:
            rootfs = debian_rootfs()
            self.layouts["debian1"] = self._layout("debian1", lambda: debian_layers(rootfs, 1), ["bash"])
            self.layouts["debian5"] = self._layout("debian5", lambda: debian_layers(rootfs, 5), ["bash"])
            push(self.layouts["debian1"], self.debian1)
            push(self.layouts["debian5"], self.debian5)
        log(f"bench: images ready and published in {time.monotonic() - t0:.1f}s")

    def _layout(self, name: str, make_layers: Any, cmd: list[str]) -> Path:
        path = CACHE / "layouts" / name
        marker = CACHE / "layouts" / f"{name}.done"
        if marker.exists() and marker.read_text() == LAYOUT_VERSION and (path / "index.json").exists():
            return path
        shutil.rmtree(path, ignore_errors=True)
        log(f"bench: building the {name} image layout")
        build_layout(path, make_layers(), cmd)
        marker.write_text(LAYOUT_VERSION)
        return path

    def describe(self) -> dict[str, str]:
        """One line per image: layers and sizes, for the report."""
        out = {}
        for name, path in self.layouts.items():
            layers = layout_layers(path)
            size = sum(p.stat().st_size for p in layers)
            out[name] = f"{len(layers)} layer(s), {size / 1e6:.1f} MB compressed"
        return out
