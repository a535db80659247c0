"""The content store interface: blobs addressed by digest, visible per namespace, written through resumable
ingests (containerd's core/content). `Store` is what callers use (Client.content); the implementation is the
metadata layer's view (ctrpy.runtime.metadata.content, which owns the SQL) over the local blob store
(ctrpy.runtime.content.local, the disk layer, registered as the content plugin "local").

Lifecycle of a write::

    with store.writer("layer-sha256:ab..", expected="sha256:ab..", total=1234) as w:
        if not w.committed_already:          # some namespace already has it: skip the download
            http_get(range_start=w.offset)   # resume where the last (killed) attempt stopped
            for chunk in body: w.write(chunk)
        w.commit(labels={...})               # fsync, verify, rename, record (one transaction)

Leaving the block without commit keeps the ingest (resumable) and releases the lock.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from ctrpy.runtime import errors
from ctrpy.runtime.content.local import parse_digest

__all__ = ["Descriptor", "Info", "Status", "Store", "Writer", "parse_digest"]


# RFC 6838 type/subtype (with +suffixes), as the OCI image-spec's descriptor.md restricts mediaType.
_MEDIA_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] | None = None
    platform: dict[str, Any] | None = None
    urls: list[str] | None = None

    def __hash__(self) -> int:
        # The generated hash would fail on the dict fields; digest, size and type identify the content.
        return hash((self.media_type, self.digest, self.size))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations is not None:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = dict(self.platform)
        if self.urls is not None:
            out["urls"] = list(self.urls)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Descriptor:
        """A descriptor from its JSON form, every field checked (OCI image-spec descriptor.md): a media
        type as RFC 6838 spells it, a digest of a known algorithm in lowercase hex of the right length, a size
        that is a non-negative integer. A descriptor that fails is refused before anything uses it."""
        if not isinstance(d, dict):
            raise errors.InvalidArgument(f"invalid OCI descriptor: expected an object, not {type(d).__name__}")
        media_type, digest, size = d.get("mediaType"), d.get("digest"), d.get("size")
        if not isinstance(media_type, str) or not _MEDIA_TYPE_RE.match(media_type):
            raise errors.InvalidArgument(f"invalid OCI descriptor: media type {media_type!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise errors.InvalidArgument(f"invalid OCI descriptor {digest!r}: size {size!r} is not a non-negative "
                                         f"integer")
        try:
            parse_digest(digest)  # type: ignore[arg-type]
        except errors.InvalidArgument as exc:
            raise errors.InvalidArgument(f"invalid OCI descriptor: {exc}") from None
        for key, kind in (("annotations", dict), ("platform", dict), ("urls", list)):
            if d.get(key) is not None and not isinstance(d[key], kind):
                raise errors.InvalidArgument(f"invalid OCI descriptor {digest}: {key} must be a JSON "
                                             f"{'object' if kind is dict else 'array'}")
        annotations = d.get("annotations")
        if annotations is not None and not all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in annotations.items()):
            raise errors.InvalidArgument(f"invalid OCI descriptor {digest}: annotations must map strings to strings")
        return cls(
            media_type=media_type,
            digest=digest,  # type: ignore[arg-type]
            size=size,
            annotations=dict(annotations) if annotations is not None else None,
            platform=dict(d["platform"]) if d.get("platform") is not None else None,
            urls=list(d["urls"]) if d.get("urls") is not None else None,
        )


@dataclass
class Info:
    """A committed blob as one namespace sees it."""

    digest: str
    size: int
    labels: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""


@dataclass
class Status:
    """An ingest in progress (or interrupted and resumable)."""

    ref: str
    offset: int
    total: int | None
    expected: str | None
    started_at: str
    updated_at: str


class Writer(Protocol):
    """An exclusive, resumable writer for one ingest (containerd's content.Writer). A context manager:
    leaving without commit keeps the ingest for a later resume and releases its lock."""

    ref: str
    expected: str | None
    total: int | None
    committed_already: bool  # the expected blob is already in the store: skip the download, just commit

    @property
    def offset(self) -> int: ...

    @property
    def data_path(self) -> Path: ...

    def __enter__(self) -> Writer: ...

    def open_committed(self) -> BinaryIO:
        """When committed_already: the stored blob the expected digest names, readable before commit makes it
        visible in this namespace (an import reads a small manifest or config it will not receive again)."""
        ...

    def __exit__(self, *exc: object) -> None: ...

    def write(self, data: bytes) -> None: ...

    def flush(self) -> None: ...

    def truncate(self, size: int = 0) -> None: ...

    def digest(self) -> str: ...

    def status(self) -> Status: ...

    def commit(
        self, size: int | None = None, expected: str | None = None, labels: dict[str, str] | None = None
    ) -> Info: ...

    def close(self) -> None: ...


class Store(Protocol):
    """The content store of one namespace, containerd's content.Store in snake_case: Provider (open,
    read_bytes, iter_chunks, blob_path), Manager (info, update_labels, walk, list, delete), Ingester (writer,
    write_blob) and IngestManager (status, statuses, abort). Blobs are shared on disk across namespaces.
    The lifecycle of a write is in the module docstring."""

    namespace: str

    # -- Manager
    def info(self, digest: str) -> Info: ...

    def exists(self, digest: str) -> bool: ...

    def list(self, filters: builtins.list[str] | None = None) -> builtins.list[Info]: ...

    def walk(self, fn: Callable[[Info], None], filters: builtins.list[str] | None = None) -> None: ...

    def update_labels(self, digest: str, labels: dict[str, str], replace: bool = False) -> Info: ...

    def delete(self, digest: str) -> None: ...

    def add_existing(self, digest: str, labels: dict[str, str] | None = None) -> Info: ...

    # -- Provider
    def blob_path(self, digest: str) -> Path: ...

    def open(self, digest: str) -> BinaryIO: ...

    def read_bytes(self, digest: str) -> bytes: ...

    def iter_chunks(self, digest: str, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...

    # -- Ingester and IngestManager
    def writer(self, ref: str, *, expected: str | None = None, total: int | None = None,
               wait: bool = True) -> Writer: ...

    def write_blob(
        self, ref: str, reader: BinaryIO, *, expected: str | None = None, size: int | None = None,
        labels: dict[str, str] | None = None, chunk_size: int = 1 << 20,
    ) -> Info: ...

    def status(self, ref: str) -> Status: ...

    def statuses(self) -> builtins.list[Status]: ...

    def abort(self, ref: str) -> None: ...

    def abandon(self, refs: builtins.list[str]) -> None: ...
