"""Image archives: images in and out of the store without a registry (containerd's images/archive, docker's
image/tarexport).

Export writes an OCI image layout as a tar stream, with docker's `manifest.json` and `repositories` beside it,
so one archive is read by `ctr images import`, `skopeo copy oci-archive:` and `docker-archive:`, docker load
and ctrpy itself::

    oci-layout                      {"imageLayoutVersion": "1.0.0"}
    index.json                      one descriptor per image, annotated io.containerd.image.name (full name)
                                    and org.opencontainers.image.ref.name (its tag); the index's own
                                    annotations say which platforms were exported (io.ctrpy.archive.platforms)
    manifest.json                   docker: [{Config, RepoTags, Layers}] with paths into blobs/
    repositories                    docker's legacy {repo: {tag: top layer id}}
    blobs/<alg>/<hex>               every blob, once, byte for byte as in the store (digests are kept)

A multi-platform image saved for some of its platforms is written as that platform's manifest (or a new index
of the chosen manifests), never as the original index with missing children; `--all-platforms` writes the
original index and fails when a platform's content is not in the store.

Import reads OCI layouts (directories), OCI archives and docker archives (docker save output, also the old
v1.2 layout with <id>/layer.tar directories and symlinked duplicate layers), plain or gzip/zstd/xz
compressed, as a stream: every file is spooled into a content-store ingest as it passes (hashed on the way),
so manifest.json may come after the blobs and a pipe from stdin works. Nothing is committed until the whole
archive has been read and every blob needed has matched its digest; then the blobs are committed inside a
lease, the images recorded, and the ingests of what was not needed (other platforms) aborted. A truncated or
corrupt archive thus leaves the content store, images and snapshots as they were.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import secrets
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from ctrpy.runtime import errors, images as _images, platforms as _platforms
from ctrpy.runtime.content import Descriptor

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"       # containerd: the full image name
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"  # OCI: the tag (containerd writes only the tag)
ANNOTATION_PLATFORMS = "io.ctrpy.archive.platforms"     # which platforms an export holds ("all" or a list)
ANNOTATION_SOURCE_INDEX = "io.ctrpy.image.source.index"  # the index a single-platform export was cut from
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
METADATA_FILES = ("oci-layout", "index.json", "manifest.json", "repositories")
MAX_METADATA = 16 << 20
BLOCK = 512
CHUNK = 1 << 20
# Magic numbers of the compressions an archive (or a layer) may use.
XZ_MAGIC = b"\xfd7zXZ\x00"


# ------------------------------------------------------------------------------------------------ export

@dataclass
class _Export:
    """One image to write: the descriptor index.json points at and the manifests below it."""

    name: str
    root: Descriptor
    manifests: list[_images.ImageManifest]
    indexes: list[Descriptor] = field(default_factory=list)
    extra_blobs: dict[str, bytes] = field(default_factory=dict)  # a new index of the chosen manifests
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class ExportReport:
    images: list[str]
    platforms: str
    blobs: int
    bytes: int


def _ref_name(name: str) -> str:
    """What containerd writes as org.opencontainers.image.ref.name: the tag (or digest) of the name."""
    from ctrpy.runtime.reference import parse

    try:
        ref = parse(name, default_tag=False)
    except errors.InvalidArgument:
        return name
    return ref.tag or ref.digest or name


def _familiar(name: str) -> tuple[str, str | None]:
    """(familiar repository, tag) for docker's RepoTags; tag None for a name without one."""
    from ctrpy.runtime.reference import parse

    try:
        ref = parse(name, default_tag=False)
    except errors.InvalidArgument:
        return name, None
    repo = ref.familiar().split("@")[0]
    if ref.tag:
        repo = repo[: -len(ref.tag) - 1]
    return repo, ref.tag


def _require_blobs(store: Any, name: str, im: _images.ImageManifest) -> None:
    for desc in [im.desc, im.config_desc, *im.layers]:
        if not store.exists(desc.digest):
            raise errors.FailedPrecondition(
                f"image {name!r} is incomplete: {_images.kind(desc.media_type)} {desc.digest} is not in the content "
                f"store (pull it again{' with --all-platforms' if im.platform else ''})")


def _plan_one(client: Client, ref: str, platforms: list[str], all_platforms: bool) -> _Export:
    store = client.content
    image = _images.find_image(client, ref)
    target = image.target
    if not store.exists(target.digest):
        raise errors.FailedPrecondition(f"image {image.name!r}: its {_images.kind(target.media_type)} "
                                        f"{target.digest} is not in the content store")
    if _images.is_manifest(target.media_type):
        im = _images.load_manifest(store, target)
        if platforms and not all_platforms:
            matcher = _platforms.matcher_for(platforms)
            if im.platform and not matcher.match(im.platform):
                raise errors.NotFound(f"image {image.name!r} is {_images.format_platform(im.platform)}, not "
                                      f"{', '.join(platforms)}")
        _require_blobs(store, image.name, im)
        return _Export(image.name, target, [im])
    if not _images.is_index(target.media_type):
        raise errors.NotImplemented_(f"image {image.name!r}: cannot export media type {target.media_type!r}")
    candidates = _images.manifests(store, target)
    if all_platforms:
        missing = [d for d in candidates if not store.exists(d.digest)]
        if missing:
            raise errors.FailedPrecondition(
                f"image {image.name!r} lacks platform(s) "
                f"{', '.join(_images.format_platform(d.platform) for d in missing)} in the content store: pull it "
                f"with --all-platforms, or save only what is here with --platform")
        ims = [_images.load_manifest(store, d) for d in candidates]
        for im in ims:
            _require_blobs(store, image.name, im)
        return _Export(image.name, target, ims, indexes=_index_blobs(store, target),
                       annotations={})
    matcher = _platforms.matcher_for(platforms)
    matchers = matcher.matchers if isinstance(matcher, _platforms.Exact) else [matcher]
    chosen: list[Descriptor] = []
    for m in matchers:
        present = [d for d in _images.select(candidates, m) if store.exists(d.digest)]
        if not present:
            want = _platforms.format_platform(m.want)
            available = ", ".join(_images.format_platform(d.platform) for d in candidates if store.exists(d.digest))
            raise errors.NotFound(f"image {image.name!r} has no {want} manifest in the store "
                                  f"(present: {available or 'none'})")
        if present[0] not in chosen:
            chosen.append(present[0])
    ims = [_images.load_manifest(store, d) for d in chosen]
    for im in ims:
        _require_blobs(store, image.name, im)
    source = {ANNOTATION_SOURCE_INDEX: target.digest}
    if len(chosen) == 1:
        d = chosen[0]
        return _Export(image.name, Descriptor(d.media_type, d.digest, d.size, platform=d.platform), ims,
                       annotations=source)
    # Several (not all) platforms: a new index of exactly those, so the archive never claims more.
    index = {"schemaVersion": 2, "mediaType": _images.OCI_INDEX, "manifests": [d.to_dict() for d in chosen]}
    data = json.dumps(index, separators=(",", ":")).encode()
    desc = Descriptor(_images.OCI_INDEX, sha256_digest(data), len(data))
    return _Export(image.name, desc, ims, extra_blobs={desc.digest: data}, annotations=source)


def _index_blobs(store: Any, target: Descriptor, depth: int = 0) -> list[Descriptor]:
    out = [target]
    if depth < 8:
        for child in _images.children(target, _images.read_json(store, target)):
            if _images.is_index(child.media_type):
                out += _index_blobs(store, child, depth + 1)
    return out


def sha256_digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blob_path(digest: str) -> str:
    alg, _, hexd = digest.partition(":")
    return f"blobs/{alg}/{hexd}"


def plan_export(client: Client, refs: list[str], *, platforms: list[str] | None = None,
                all_platforms: bool = False) -> list[_Export]:
    """Resolve what `save` would write, failing before any byte is written."""
    if not refs:
        raise errors.InvalidArgument("no image to save")
    for spec in platforms or []:
        _platforms.parse(spec)
    return [_plan_one(client, ref, list(platforms or []), all_platforms) for ref in refs]


def _docker_manifest(plan: list[_Export], platforms: list[str], all_platforms: bool
                     ) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """docker's manifest.json entries (one per manifest, tags on the best platform) and `repositories`."""
    entries: dict[str, dict[str, Any]] = {}
    repositories: dict[str, dict[str, str]] = {}
    host = _platforms.matcher_for(platforms if platforms and not all_platforms else None)
    for item in plan:
        def rank(im: _images.ImageManifest) -> int:
            if not im.platform:
                return 0
            r = host.rank(im.platform)
            return r if r is not None else 1 << 20

        ranked = sorted(item.manifests, key=rank)
        repo, tag = _familiar(item.name)
        for i, im in enumerate(ranked):
            entry = entries.setdefault(im.desc.digest, {
                "Config": _blob_path(im.config_desc.digest), "RepoTags": [],
                "Layers": [_blob_path(layer.digest) for layer in im.layers]})
            if i == 0 and tag and f"{repo}:{tag}" not in entry["RepoTags"]:
                entry["RepoTags"].append(f"{repo}:{tag}")
                if im.diff_ids:
                    top = _images.chain_id(im.diff_ids).split(":", 1)[1]
                    repositories.setdefault(repo, {})[tag] = top
    return list(entries.values()), repositories


class _TarWriter:
    """A minimal ustar writer that copies blob files with sendfile (no Python-level copy of layer bytes)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.written = 0
        try:
            self.fd: int | None = out.fileno()
            out.flush()
        except (AttributeError, OSError, io.UnsupportedOperation):
            self.fd = None

    def _write(self, data: bytes) -> None:
        if self.fd is None:
            self.out.write(data)
        else:
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        self.written += len(data)

    def _header(self, name: str, size: int, kind: bytes, mode: int) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.type, info.mode, info.mtime = size, kind, mode, 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._write(info.tobuf(format=tarfile.USTAR_FORMAT))

    def dir(self, name: str) -> None:
        self._header(name.rstrip("/") + "/", 0, tarfile.DIRTYPE, 0o755)

    def data(self, name: str, data: bytes) -> None:
        self._header(name, len(data), tarfile.REGTYPE, 0o644)
        self._write(data)
        self._pad(len(data))

    def _pad(self, size: int) -> None:
        if size % BLOCK:
            self._write(b"\0" * (BLOCK - size % BLOCK))

    def file(self, name: str, path: Path, size: int) -> None:
        self._header(name, size, tarfile.REGTYPE, 0o644)
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size != size:
                raise errors.Internal(f"blob {path} has {os.fstat(f.fileno()).st_size} bytes, expected {size}")
            left = size
            if self.fd is not None:
                offset = 0
                while left:
                    n = os.sendfile(self.fd, f.fileno(), offset, min(left, 1 << 30))
                    if n == 0:
                        raise errors.Internal(f"blob {path} shrank while it was being written")
                    offset += n
                    left -= n
            else:
                while left:
                    chunk = f.read(min(left, CHUNK))
                    if not chunk:
                        raise errors.Internal(f"blob {path} shrank while it was being written")
                    self.out.write(chunk)
                    left -= len(chunk)
        self.written += size
        self._pad(size)

    def close(self) -> None:
        # Two zero blocks end the archive; pad to tar's 10 KiB record as tar(1) does.
        end = self.written + 2 * BLOCK
        self._write(b"\0" * (2 * BLOCK + (-end) % tarfile.RECORDSIZE))
        if self.fd is None:
            self.out.flush()


def export(client: Client, refs: list[str], out: BinaryIO, *, platforms: list[str] | None = None,
           all_platforms: bool = False, plan: list[_Export] | None = None) -> ExportReport:
    """Write the images `refs` to `out` as one archive (see the module docstring); `plan` is plan_export's
    result when the caller resolved it already (to fail before opening the output)."""
    if plan is None:
        plan = plan_export(client, refs, platforms=platforms, all_platforms=all_platforms)
    platforms = list(platforms or [])
    recorded = "all" if all_platforms else ",".join(platforms) or _platforms.format_platform(_platforms.host())
    descriptors = []
    blobs: dict[str, Descriptor] = {}
    extra: dict[str, bytes] = {}
    for item in plan:
        root = item.root.to_dict()
        annotations = dict(root.get("annotations") or {})
        annotations.update(item.annotations)
        annotations[ANNOTATION_IMAGE_NAME] = item.name
        annotations[ANNOTATION_REF_NAME] = _ref_name(item.name)
        root["annotations"] = annotations
        descriptors.append(root)
        for d in item.indexes:
            blobs.setdefault(d.digest, d)
        for im in item.manifests:
            for d in [im.desc, im.config_desc, *im.layers]:
                blobs.setdefault(d.digest, d)
        extra.update(item.extra_blobs)
    index = {"schemaVersion": 2, "mediaType": _images.OCI_INDEX, "manifests": descriptors,
             "annotations": {ANNOTATION_PLATFORMS: recorded}}
    docker_manifest, repositories = _docker_manifest(plan, platforms, all_platforms)
    tar = _TarWriter(out)
    tar.data("oci-layout", OCI_LAYOUT)
    tar.data("index.json", json.dumps(index, separators=(",", ":")).encode())
    tar.data("manifest.json", json.dumps(docker_manifest, separators=(",", ":")).encode())
    tar.data("repositories", json.dumps(repositories, separators=(",", ":")).encode())
    tar.dir("blobs")
    algs = sorted({d.split(":", 1)[0] for d in [*blobs, *extra]})
    for alg in algs:
        tar.dir(f"blobs/{alg}")
    total = 0
    for digest, data in extra.items():
        tar.data(_blob_path(digest), data)
        total += len(data)
    for digest, desc in blobs.items():
        if digest in extra:
            continue
        tar.file(_blob_path(digest), client.content.blob_path(digest), desc.size)
        total += desc.size
    tar.close()
    return ExportReport([item.name for item in plan], recorded, len(blobs) + len(extra), total)


# ------------------------------------------------------------------------------------------------ import

@dataclass
class ImportOptions:
    platforms: list[str] = field(default_factory=list)
    all_platforms: bool = False
    digests: bool = False          # also name each image <base>@<digest> (containerd's --digests)
    index_name: str | None = None  # name the archive's whole index (containerd's --index-name)
    base_name: str | None = None   # prefix for images named only by a tag (containerd's --base-name)
    unpack: bool = True
    snapshotter: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


class _Prefixed(io.RawIOBase):
    """A reader whose first bytes were already peeked (for compression detection on a pipe)."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head = head
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self.head:
            n = min(len(buf), len(self.head))
            buf[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        read = getattr(self.rest, "readinto", None)
        if read is not None:
            return read(buf) or 0
        data = self.rest.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def peek(stream: BinaryIO, n: int) -> tuple[bytes, BinaryIO]:
    head = b""
    while len(head) < n:
        chunk = stream.read(n - len(head))
        if not chunk:
            break
        head += chunk
    return head, io.BufferedReader(_Prefixed(head, stream), CHUNK)


def compression_of(head: bytes) -> str:
    """The layers' compressions (the unpack path's sniffing), and xz, which a whole archive may also be in."""
    from ctrpy.runtime.archive import detect_compression

    return "xz" if head.startswith(XZ_MAGIC) else detect_compression(head)


def decompressed(stream: BinaryIO) -> BinaryIO:
    """`stream` decompressed according to its magic number (gzip, zstd, xz) or as it is."""
    head, stream = peek(stream, 6)
    kind = compression_of(head)
    if kind == "xz":
        import lzma

        return lzma.LZMAFile(stream)  # type: ignore[return-value]
    from ctrpy.runtime.archive import decompressor

    return decompressor(stream, kind)  # type: ignore[return-value]


@dataclass
class _Entry:
    """One file of the archive as it passes."""

    path: str
    size: int
    reader: IO[bytes] | None = None  # None for a symlink or hardlink
    link: str | None = None


def _clean(path: str) -> str:
    path = posixpath.normpath("/" + path.replace("\\", "/")).lstrip("/")
    return path


def _tar_entries(stream: BinaryIO) -> Iterator[_Entry]:
    try:
        tar = tarfile.open(fileobj=stream, mode="r|")
    except tarfile.ReadError as exc:
        raise errors.InvalidArgument(f"not an image archive (tar): {exc}") from None
    for member in tar:
        name = _clean(member.name)
        if member.isreg():
            yield _Entry(name, member.size, tar.extractfile(member))
        elif member.issym():
            yield _Entry(name, 0, None, _clean(posixpath.join(posixpath.dirname(name), member.linkname)))
        elif member.islnk():
            yield _Entry(name, 0, None, _clean(member.linkname))


def _dir_entries(root: Path) -> Iterator[_Entry]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fname in sorted(filenames):
            full = Path(dirpath) / fname
            rel = full.relative_to(root).as_posix()
            if full.is_symlink() and not full.exists():
                continue
            with open(full, "rb") as f:
                yield _Entry(rel, os.fstat(f.fileno()).st_size, f)


@dataclass
class _Spooled:
    """A file of the archive received into an ingest (or found already in the store)."""

    path: str
    digest: str
    size: int
    head: bytes = b""
    small: bytes | None = None  # kept in memory when it may be JSON (manifests, indexes, configs)
    writer: Any = None          # the open ingest writer, None when the blob is already in the store
    ref: str = ""


class _OtherPlatform(Exception):
    """A single-platform image of the archive that --platform does not ask for (skipped, as containerd does)."""


class _Importer:
    def __init__(self, client: Client, opts: ImportOptions) -> None:
        self.client = client
        self.store = client.content
        self.opts = opts
        self.token = secrets.token_hex(4)
        self.meta: dict[str, bytes] = {}
        self.files: dict[str, _Spooled] = {}   # archive path -> spooled file
        self.by_digest: dict[str, _Spooled] = {}
        self.links: dict[str, str] = {}
        self.virtual: dict[str, bytes] = {}    # blobs made here (docker-archive manifests, the named index)
        self.count = 0

    # -- reading -----------------------------------------------------------------------------------------

    def read(self, entries: Iterator[_Entry]) -> None:
        try:
            for entry in entries:
                self._take(entry)
        except errors.CtrpyError:
            raise
        except Exception as exc:
            if is_stream_error(exc):
                raise errors.InvalidArgument(f"archive is truncated or corrupt: {exc}") from None
            raise

    def _take(self, entry: _Entry) -> None:
        if entry.link is not None:
            self.links[entry.path] = entry.link
            return
        assert entry.reader is not None
        base = posixpath.basename(entry.path)
        if entry.path in METADATA_FILES:
            if entry.size > MAX_METADATA:
                raise errors.InvalidArgument(f"{entry.path} in the archive is too large ({entry.size} bytes)")
            data = entry.reader.read()
            if len(data) != entry.size:
                raise errors.InvalidArgument(f"archive is truncated: {entry.path} is cut short")
            self.meta[entry.path] = data
            return
        if "/" in entry.path and base in ("json", "VERSION") and not entry.path.startswith("blobs/"):
            return  # docker's legacy per-layer v1 metadata: not needed
        self._spool(entry)

    def _expected(self, path: str) -> str | None:
        parts = path.split("/")
        if len(parts) == 3 and parts[0] == "blobs":
            digest = f"{parts[1]}:{parts[2]}"
            try:
                from ctrpy.runtime.content import parse_digest

                parse_digest(digest)
            except errors.InvalidArgument:
                return None
            return digest
        return None

    def _spool(self, entry: _Entry) -> None:
        assert entry.reader is not None
        expected = self._expected(entry.path)
        reader = entry.reader
        if expected and expected in self.by_digest:
            self.files[entry.path] = self.by_digest[expected]
            return
        if expected and self.store.exists(expected):
            # Already here: nothing to receive (the stored copy was verified when it was committed).
            head = b""
            small = None
            if entry.size <= _images.MAX_MANIFEST_SIZE:
                small = self.store.read_bytes(expected)
                head = small[:8]
            spooled = _Spooled(entry.path, expected, entry.size, head, small if _json_like(head) else None)
            self._record(spooled)
            return
        self.count += 1
        ref = f"import-{self.token}-{self.count}"
        w = self.store.writer(ref, expected=expected, total=entry.size)
        spooled = _Spooled(entry.path, expected or "", entry.size, writer=w, ref=ref)
        self._record(spooled)
        if w.committed_already:
            # Another namespace has it: commit will only make it visible here.
            if entry.size <= _images.MAX_MANIFEST_SIZE and expected:
                with w.open_committed() as f:
                    spooled.small = f.read()
                spooled.head = spooled.small[:8]
                if not _json_like(spooled.head):
                    spooled.small = None
            return
        if w.offset:
            w.truncate(0)
        first = True
        keep: list[bytes] | None = None
        received = 0
        while True:
            chunk = reader.read(CHUNK)
            if not chunk:
                break
            if first:
                spooled.head = chunk[:8]
                first = False
                if entry.size <= _images.MAX_MANIFEST_SIZE and _json_like(chunk[:8]):
                    keep = []
            if keep is not None:
                keep.append(chunk)
            w.write(chunk)
            received += len(chunk)
        if received != entry.size:
            raise errors.InvalidArgument(f"archive is truncated: {entry.path} has {received} of {entry.size} bytes")
        if keep is not None:
            spooled.small = b"".join(keep)
        actual = w.digest()
        if expected and actual != expected:
            raise errors.InvalidArgument(f"archive is corrupt: {entry.path} does not match its digest "
                                         f"(got {actual}); nothing imported")
        spooled.digest = actual
        self.by_digest.setdefault(actual, spooled)

    def _record(self, spooled: _Spooled) -> None:
        self.files[spooled.path] = spooled
        if spooled.digest:
            self.by_digest.setdefault(spooled.digest, spooled)

    def abort(self) -> None:
        for spooled in {id(s): s for s in self.files.values()}.values():
            if spooled.writer is not None:
                with contextlib.suppress(errors.CtrpyError, OSError):
                    spooled.writer.close()
                with contextlib.suppress(errors.CtrpyError, OSError):
                    self.store.abort(spooled.ref)
                spooled.writer = None

    # -- resolving ---------------------------------------------------------------------------------------

    def _file(self, path: str) -> _Spooled:
        seen = 0
        path = _clean(path)
        while path in self.links and seen < 16:
            path, seen = self.links[path], seen + 1
        spooled = self.files.get(path)
        if spooled is None:
            raise errors.InvalidArgument(f"archive is incomplete: {path} is missing")
        return spooled

    def bytes_of(self, desc: Descriptor) -> bytes:
        if desc.digest in self.virtual:
            return self.virtual[desc.digest]
        spooled = self.by_digest.get(desc.digest)
        if spooled is not None and spooled.small is not None:
            return spooled.small
        if spooled is None and self.store.exists(desc.digest):
            return self.store.read_bytes(desc.digest)
        if spooled is None:
            raise errors.InvalidArgument(f"archive is incomplete: {_images.kind(desc.media_type)} {desc.digest} "
                                         f"is missing")
        raise errors.InvalidArgument(f"{_images.kind(desc.media_type)} {desc.digest} in the archive is not JSON")

    def have(self, desc: Descriptor, what: str) -> None:
        if desc.digest in self.virtual:
            return
        spooled = self.by_digest.get(desc.digest)
        if spooled is None:
            if self.store.exists(desc.digest):
                return
            raise errors.InvalidArgument(f"archive is incomplete: {what} {desc.digest} is missing")
        if spooled.size != desc.size:
            raise errors.InvalidArgument(f"archive is corrupt: {what} {desc.digest} has {spooled.size} bytes, "
                                         f"its descriptor says {desc.size}")

    def json_of(self, desc: Descriptor) -> dict[str, Any]:
        if desc.size > _images.MAX_MANIFEST_SIZE:
            raise errors.InvalidArgument(f"{_images.kind(desc.media_type)} {desc.digest} is too large")
        self.have(desc, _images.kind(desc.media_type))
        return _images.parse_json(self.bytes_of(desc), desc)

    def roots(self) -> list[tuple[Descriptor, list[str]]]:
        """(root descriptor, names) for every image of the archive."""
        if "index.json" in self.meta:
            return self._oci_roots()
        if "manifest.json" in self.meta:
            return self._docker_roots()
        raise errors.InvalidArgument("not an image archive: it has neither index.json (OCI) nor manifest.json "
                                     "(docker)")

    def _load_meta(self, name: str) -> Any:
        try:
            return json.loads(self.meta[name])
        except (ValueError, UnicodeDecodeError) as exc:
            raise errors.InvalidArgument(f"{name} in the archive is not valid JSON: {exc}") from None

    def _oci_roots(self) -> list[tuple[Descriptor, list[str]]]:
        index = self._load_meta("index.json")
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise errors.InvalidArgument("index.json in the archive has no manifests list")
        out = []
        for raw in index["manifests"]:
            try:
                desc = Descriptor.from_dict(raw)
            except (KeyError, TypeError, ValueError, errors.CtrpyError) as exc:
                raise errors.InvalidArgument(f"index.json in the archive has an invalid descriptor: {exc}") from None
            annotations = raw.get("annotations") or {}
            names = []
            if annotations.get(ANNOTATION_IMAGE_NAME):
                names.append(annotations[ANNOTATION_IMAGE_NAME])
            elif annotations.get(ANNOTATION_REF_NAME):
                names.append(self._from_ref_name(annotations[ANNOTATION_REF_NAME]))
            names = [n for n in names if n] or self._docker_tags(desc)
            out.append((desc, names))
        return out

    def _from_ref_name(self, ref_name: str) -> str:
        from ctrpy.runtime.reference import _TAG_RE

        if self.opts.base_name and _TAG_RE.match(ref_name):
            return f"{self.opts.base_name}:{ref_name}"
        if _TAG_RE.match(ref_name) and ":" not in ref_name and "/" not in ref_name and not self.opts.base_name:
            # Only a tag (skopeo's oci-archive:FILE:latest): no repository to name it by.
            return ""
        return ref_name

    def _docker_tags(self, desc: Descriptor) -> list[str]:
        """RepoTags that docker's manifest.json (beside index.json) gives the manifest `desc`, matched on the
        config path."""
        if "manifest.json" not in self.meta or not _images.is_manifest(desc.media_type):
            return []
        try:
            config = Descriptor.from_dict(self.json_of(desc)["config"])
            items = self._load_meta("manifest.json")
            return [str(tag) for item in items if _clean(str(item.get("Config", ""))) == _blob_path(config.digest)
                    for tag in item.get("RepoTags") or []]
        except (AttributeError, TypeError, KeyError, errors.CtrpyError):
            return []

    def _docker_roots(self) -> list[tuple[Descriptor, list[str]]]:
        items = self._load_meta("manifest.json")
        if not isinstance(items, list):
            raise errors.InvalidArgument("manifest.json in the archive is not a list")
        out = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("Config"), str) or \
                    not isinstance(item.get("Layers"), list):
                raise errors.InvalidArgument("manifest.json in the archive has an entry without Config or Layers")
            cfg = self._file(item["Config"])
            if cfg.small is None:
                raise errors.InvalidArgument(f"{item['Config']} in the archive is not an image config")
            cfg_desc = Descriptor(_images.DOCKER_CONFIG, cfg.digest, cfg.size)
            config = _images.parse_json(cfg.small, cfg_desc)
            diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
            if len(diff_ids) != len(item["Layers"]):
                raise errors.InvalidArgument(f"archive is corrupt: {item['Config']} lists {len(diff_ids)} layers, "
                                             f"manifest.json {len(item['Layers'])}")
            layers = []
            for path, diff_id in zip(item["Layers"], diff_ids):
                spooled = self._file(path)
                comp = compression_of(spooled.head)
                if comp == "none" and spooled.digest != diff_id:
                    raise errors.InvalidArgument(f"archive is corrupt: layer {path} does not match its diff ID "
                                                 f"{diff_id}; nothing imported")
                media = {"gzip": _images.DOCKER_LAYER_GZIP, "zstd": _images.DOCKER_LAYER_ZSTD,
                         "none": _images.DOCKER_LAYER}.get(comp)
                if media is None:
                    raise errors.InvalidArgument(f"layer {path}: {comp} compressed layers are not supported")
                layers.append({"mediaType": media, "size": spooled.size, "digest": spooled.digest})
            manifest = {"schemaVersion": 2, "mediaType": _images.DOCKER_MANIFEST,
                        "config": {"mediaType": _images.DOCKER_CONFIG, "size": cfg.size, "digest": cfg.digest},
                        "layers": layers}
            data = json.dumps(manifest, indent=3).encode()  # docker's own indentation for schema2 manifests
            digest = sha256_digest(data)
            self.virtual[digest] = data
            platform = _images.platform_of(Descriptor(_images.DOCKER_MANIFEST, digest, len(data)), config)
            desc = Descriptor(_images.DOCKER_MANIFEST, digest, len(data), platform=platform)
            out.append((desc, [str(t) for t in item.get("RepoTags") or []]))
        return out

    # -- choosing and committing -------------------------------------------------------------------------

    def wanted(self, root: Descriptor, matcher: Any) -> tuple[list[Descriptor], list[Descriptor]]:
        """(parents, leaves) to commit under `root`: indexes and manifests, then configs and layers."""
        parents: list[Descriptor] = []
        leaves: list[Descriptor] = []
        pending = [(root, 0, True)]
        while pending:
            desc, depth, is_root = pending.pop(0)
            if depth > 8:
                raise errors.InvalidArgument("index nesting too deep")
            if _images.is_index(desc.media_type):
                obj = self.json_of(desc)
                kids = _images.children(desc, obj)
                chosen = self._select(kids, matcher, root)
                parents.append(desc)
                self.labels[desc.digest] = _images.gc_labels(desc, kids) if chosen == kids else \
                    {f"{_images.GC_REF_CONTENT}.m.{kids.index(k)}": k.digest for k in chosen}
                pending += [(k, depth + 1, False) for k in chosen]
            elif _images.is_manifest(desc.media_type):
                obj = self.json_of(desc)
                kids = _images.children(desc, obj)
                if is_root and self.explicit and kids:
                    config = self.json_of(kids[0])
                    plat = _images.platform_of(desc, config)
                    if plat and not matcher.match(plat):
                        raise _OtherPlatform(f"{_images.format_platform(plat)}")
                parents.append(desc)
                self.labels[desc.digest] = _images.gc_labels(desc, kids)
                for i, kid in enumerate(kids):
                    self.have(kid, "config" if i == 0 else "layer")
                    leaves.append(kid)
            else:
                raise errors.NotImplemented_(f"archive root {desc.digest}: unsupported media type {desc.media_type!r}")
        return parents, leaves

    def _select(self, kids: list[Descriptor], matcher: Any, root: Descriptor) -> list[Descriptor]:
        nested = [k for k in kids if _images.is_index(k.media_type)]
        manifests = [k for k in kids if _images.is_manifest(k.media_type)]
        if isinstance(matcher, _platforms.Any_):
            return kids
        available = [m for m in manifests if m.digest in self.by_digest or m.digest in self.virtual
                     or self.store.exists(m.digest)]
        matchers = matcher.matchers if isinstance(matcher, _platforms.Exact) else [matcher]
        chosen: list[Descriptor] = []
        for m in matchers:
            best = _images.select(available, m)
            if best and best[0] not in chosen:
                chosen.append(best[0])
        if not chosen and not nested:
            have = ", ".join(_images.format_platform(m.platform) for m in available) or "none"
            raise errors.NotFound(f"archive image {root.digest[:19]} has no manifest for the platform asked for "
                                  f"(in the archive: {have})")
        return chosen + [n for n in nested if n.digest in self.by_digest or self.store.exists(n.digest)]

    def run(self, entries: Iterator[_Entry]) -> list[Any]:
        from ctrpy.runtime.metadata.images import Image
        from ctrpy.runtime.reference import normalize

        opts = self.opts
        self.labels: dict[str, dict[str, str]] = {}
        self.explicit = bool(opts.platforms) and not opts.all_platforms
        matcher = _platforms.matcher_for(opts.platforms, opts.all_platforms)
        try:
            self.read(entries)
            roots = self.roots()
            if not roots:
                raise errors.InvalidArgument("the archive holds no image")
            plan: list[tuple[Descriptor, list[str]]] = []
            commit: dict[str, Descriptor] = {}
            skipped: list[str] = []
            for root, names in roots:
                try:
                    parents, leaves = self.wanted(root, matcher)
                except _OtherPlatform as exc:
                    skipped.append(str(exc))
                    continue
                for d in leaves + parents:
                    commit.setdefault(d.digest, d)
                plan.append((root, names))
            if not plan:
                raise errors.NotFound(f"no image in the archive is for {', '.join(opts.platforms)} "
                                      f"(the archive has {', '.join(sorted(set(skipped)))})")
            stamp = time.strftime("%Y-%m-%d", time.gmtime())
            base = opts.base_name or f"import-{stamp}"
            records: list[tuple[str, Descriptor]] = []
            for root, names in plan:
                for name in names:
                    try:
                        records.append((normalize(name), root))
                    except errors.InvalidArgument:
                        records.append((name, root))
                if opts.digests or not names:
                    records.append((f"{base}@{root.digest}", root))
            if opts.index_name:
                index = {"schemaVersion": 2, "mediaType": _images.OCI_INDEX,
                         "manifests": [{k: v for k, v in r.to_dict().items()} for r, _ in plan]}
                data = json.dumps(index, separators=(",", ":")).encode()
                desc = Descriptor(_images.OCI_INDEX, sha256_digest(data), len(data))
                self.virtual[desc.digest] = data
                self.labels[desc.digest] = _images.gc_labels(desc, [r for r, _ in plan])
                commit[desc.digest] = desc
                records.append((normalize(opts.index_name), desc))
        except BaseException:
            self.abort()
            raise
        created = []
        try:
            with self.client.leases.lease(expire=86400) as lease_id:
                for digest, desc in commit.items():
                    self.client.leases.add_resource(lease_id, "content", digest)
                    self._commit(desc)
                for name, target in records:
                    created.append(self.client.images.upsert(
                        Image(name=name, target=Descriptor(target.media_type, target.digest, target.size),
                              labels=dict(opts.labels))))
        finally:
            self.abort()  # what was not needed (other platforms, duplicates) and anything left on failure
        return created

    def _commit(self, desc: Descriptor) -> None:
        labels = self.labels.get(desc.digest) or None
        if desc.digest in self.virtual:
            data = self.virtual[desc.digest]
            if self.store.exists(desc.digest):
                if labels:
                    self.store.update_labels(desc.digest, labels)
                return
            with self.store.writer(f"import-{self.token}-{desc.digest}", expected=desc.digest,
                                   total=len(data)) as w:
                if not w.committed_already:
                    w.truncate(0)
                    w.write(data)
                w.commit(len(data), desc.digest, labels)
            return
        spooled = self.by_digest.get(desc.digest)
        if spooled is None or spooled.writer is None:
            if self.store.exists(desc.digest):
                if labels:
                    self.store.update_labels(desc.digest, labels)
                return
            raise errors.InvalidArgument(f"archive is incomplete: {desc.digest} is missing")
        try:
            spooled.writer.commit(desc.size, desc.digest, labels)
        except errors.FailedPrecondition as exc:
            raise errors.InvalidArgument(f"archive is corrupt: {exc}") from None
        spooled.writer = None


def is_stream_error(exc: BaseException) -> bool:
    """Whether `exc` says the archive's bytes are bad (tar, gzip, zstd, xz), not that the machine failed."""
    import lzma
    import zlib

    if isinstance(exc, (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, UnicodeDecodeError)):
        return True
    if isinstance(exc, OSError):
        return exc.errno is None  # gzip's BadGzipFile and friends carry no errno; disk errors do
    module = type(exc).__module__ or ""
    return module.startswith(("zstd", "isal")) or type(exc).__name__ in ("ZstdError", "error")


def _json_like(head: bytes) -> bool:
    return head.lstrip()[:1] in (b"{", b"[")


def import_archive(client: Client, source: BinaryIO | str | os.PathLike[str], opts: ImportOptions | None = None,
                   ) -> list[Any]:
    """Import every image of an archive stream, an archive file or an OCI layout directory; returns the
    Images created (see the module docstring). Unpacks each into the default snapshotter unless
    opts.unpack is False."""
    opts = opts or ImportOptions()
    for spec in opts.platforms:
        _platforms.parse(spec)
    _raise_fd_limit()  # every blob's ingest stays open (locked, hashed) until the whole archive is read
    importer = _Importer(client, opts)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            if not (path / "index.json").is_file() and not (path / "manifest.json").is_file():
                raise errors.InvalidArgument(f"{path} is not an OCI image layout (no index.json)")
            images = importer.run(_dir_entries(path))
        else:
            try:
                f = open(path, "rb")
            except OSError as exc:
                raise errors.from_oserror(exc, f"cannot open {path}") from None
            with f:
                images = importer.run(_tar_entries(decompressed(f)))
    else:
        images = importer.run(_tar_entries(decompressed(source)))
    if opts.unpack:
        from ctrpy.runtime.unpack import unpack_image

        platform = opts.platforms[0] if opts.platforms else None
        done: set[str] = set()
        for image in images:
            if image.target.digest in done or image.name == (opts.index_name and _normal(opts.index_name)):
                continue
            done.add(image.target.digest)
            try:
                unpack_image(client, image, opts.snapshotter, platform=platform)
            except errors.NotFound:
                if not opts.all_platforms:
                    raise
    return images


def _raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))


def _normal(name: str) -> str:
    from ctrpy.runtime.reference import normalize

    return normalize(name)


__all__ = ["ExportReport", "ImportOptions", "compression_of", "decompressed", "export", "import_archive",
           "is_stream_error", "peek", "plan_export", "sha256_digest"]
