"""The metadata content store: namespaces, labels, sizes and ingests of blobs in the metadata database, over
the local blob store (containerd's core/metadata/content.go over plugins/content/local).

The disk layer (ctrpy.runtime.content.local) holds each blob once; table `content` records which namespaces
hold it (labels there) and table `blobs` its size. A blob becomes visible only at commit, after its size and
digest were checked. The interface callers use is ctrpy.runtime.content.Store; the module docstring there
walks the lifecycle of a write.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ctrpy.runtime import errors
from ctrpy.runtime import filters as _filters
from ctrpy.runtime.content import Info, Status
from ctrpy.runtime.content.local import LocalStore, LocalWriter, parse_digest
from ctrpy.runtime.metadata.db import DB

__all__ = ["ContentStore", "Writer"]


def _labels(text: str) -> dict[str, str]:
    from ctrpy.runtime.metadata import load_json

    return dict(load_json(text))


def _info(row: sqlite3.Row | None) -> Info:
    if row is None:  # read back inside the transaction that wrote it
        raise errors.Internal("content row missing right after it was written")
    return Info(row["digest"], row["size"], _labels(row["labels"]), row["created_at"], row["updated_at"])


class ContentStore:
    """One namespace's view of the content store; blobs are shared on disk across namespaces."""

    def __init__(self, db: DB, root: str | os.PathLike[str], namespace: str) -> None:
        from ctrpy.runtime.metadata import validate_namespace

        self.db = db
        self.local = LocalStore(root)
        self.namespace = validate_namespace(namespace)

    # -- reading -------------------------------------------------------------------------------------------

    def _row(self, tx: sqlite3.Connection, digest: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = tx.execute(
            "SELECT c.digest, b.size, c.labels, c.created_at, c.updated_at FROM content c "
            "JOIN blobs b ON b.digest = c.digest WHERE c.namespace = ? AND c.digest = ?",
            (self.namespace, digest),
        ).fetchone()
        return row

    def info(self, digest: str) -> Info:
        parse_digest(digest)
        with self.db.view() as tx:
            row = self._row(tx, digest)
        if row is None:
            raise errors.NotFound(f"content {digest} not found in namespace {self.namespace!r}")
        return _info(row)

    def exists(self, digest: str) -> bool:
        try:
            self.info(digest)
        except errors.NotFound:
            return False
        return True

    def list(self, filters: builtins.list[str] | None = None) -> builtins.list[Info]:
        """Visible blobs, sorted by digest; filter fields: digest, size, labels.<key>."""
        flt = _filters.parse(filters)
        with self.db.view() as tx:
            rows = tx.execute(
                "SELECT c.digest, b.size, c.labels, c.created_at, c.updated_at FROM content c "
                "JOIN blobs b ON b.digest = c.digest WHERE c.namespace = ? ORDER BY c.digest",
                (self.namespace,),
            ).fetchall()
        infos = [_info(r) for r in rows]
        return [i for i in infos if flt.match(_filters.object_adaptor({"digest": i.digest, "size": i.size}, i.labels))]

    def walk(self, fn: Callable[[Info], None], filters: builtins.list[str] | None = None) -> None:
        """containerd's Walk: call fn(info) for every visible blob matching the filters."""
        for info in self.list(filters):
            fn(info)

    def blob_path(self, digest: str) -> Path:
        self.info(digest)
        path = self.local.blob_path(digest)
        if not path.is_file():
            raise errors.Internal(f"content {digest} is recorded but its blob {path} is missing")
        return path

    def open(self, digest: str) -> BinaryIO:
        self.blob_path(digest)  # visible here, and on disk
        return self.local.open_blob(digest)

    def read_bytes(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def iter_chunks(self, digest: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        with self.open(digest) as f:
            while chunk := f.read(chunk_size):
                yield chunk

    # -- changing ------------------------------------------------------------------------------------------

    def update_labels(self, digest: str, labels: dict[str, str], replace: bool = False) -> Info:
        """Merge labels (a value "" removes the key), or replace them all."""
        from ctrpy.runtime.metadata import dump_labels, now

        parse_digest(digest)
        with self.db.update() as tx:
            row = self._row(tx, digest)
            if row is None:
                raise errors.NotFound(f"content {digest} not found in namespace {self.namespace!r}")
            current = {} if replace else _labels(row["labels"])
            for key, value in labels.items():
                if value == "":
                    current.pop(key, None)
                else:
                    current[key] = value
            tx.execute(
                "UPDATE content SET labels = ?, updated_at = ? WHERE namespace = ? AND digest = ?",
                (dump_labels(current), now(), self.namespace, digest),
            )
            row = self._row(tx, digest)
        return _info(row)

    def delete(self, digest: str) -> None:
        """Remove the blob from this namespace; the file goes once no namespace holds it."""
        from ctrpy.runtime.metadata import append_event

        parse_digest(digest)
        with self.db.update() as tx:
            cur = tx.execute("DELETE FROM content WHERE namespace = ? AND digest = ?", (self.namespace, digest))
            if cur.rowcount == 0:
                raise errors.NotFound(f"content {digest} not found in namespace {self.namespace!r}")
            append_event(tx, self.namespace, "/content/delete", {"digest": digest})
            held = tx.execute("SELECT 1 FROM content WHERE digest = ? LIMIT 1", (digest,)).fetchone()
            if held is None:
                tx.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
                # Inside the write transaction, so a concurrent commit of the same digest (which checks the
                # file under the same lock) cannot see the file and then lose it.
                self.local.remove_blob(digest)

    def add_existing(self, digest: str, labels: dict[str, str] | None = None) -> Info:
        """Make a blob already present on disk (in another namespace) visible in this one."""
        parse_digest(digest)
        with self.db.update() as tx:
            row = tx.execute("SELECT size FROM blobs WHERE digest = ?", (digest,)).fetchone()
            if row is None or not self.local.has_blob(digest):
                raise errors.NotFound(f"content {digest} is not in the store")
            self._record(tx, digest, row["size"], labels)
            info = self._row(tx, digest)
        return _info(info)

    def _record(self, tx: sqlite3.Connection, digest: str, size: int, labels: dict[str, str] | None) -> None:
        """Insert the blob and this namespace's visibility row (merging labels if already visible)."""
        from ctrpy.runtime.metadata import dump_labels, ensure_namespace, now

        stamp = now()
        ensure_namespace(tx, self.namespace)
        tx.execute("INSERT OR IGNORE INTO blobs (digest, size, created_at) VALUES (?, ?, ?)", (digest, size, stamp))
        row = self._row(tx, digest)
        if row is None:
            tx.execute(
                "INSERT INTO content (namespace, digest, labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                (self.namespace, digest, dump_labels(labels), stamp, stamp),
            )
        elif labels:
            merged = _labels(row["labels"])
            merged.update(labels)
            tx.execute(
                "UPDATE content SET labels = ?, updated_at = ? WHERE namespace = ? AND digest = ?",
                (dump_labels(merged), stamp, self.namespace, digest),
            )

    # -- ingests -------------------------------------------------------------------------------------------

    def _key(self, ref: str) -> str:
        if not ref or "\0" in ref:
            raise errors.InvalidArgument(f"invalid ingest ref {ref!r}")
        return f"{self.namespace}/{ref}"

    def writer(
        self, ref: str, *, expected: str | None = None, total: int | None = None, wait: bool = True
    ) -> Writer:
        """Open (or resume) the ingest `ref`, exclusively. See the module docstring."""
        from ctrpy.runtime.metadata import ensure_namespace, now

        algorithm = parse_digest(expected)[0] if expected else "sha256"
        if total is not None and total < 0:
            raise errors.InvalidArgument(f"invalid expected size {total}")
        key = self._key(ref)
        try:
            local = self.local.open_ingest(key, total=total, wait=wait, algorithm=algorithm)
        except OSError as exc:
            if errors.is_no_space(exc):
                raise errors.no_space(f"content ingest {ref!r}", self.local.ingest) from exc
            raise errors.from_oserror(exc, f"cannot open ingest {ref!r}") from exc
        try:
            committed = bool(expected) and self._globally_present(expected)  # type: ignore[arg-type]
            stamp = now()
            with self.db.update() as tx:
                ensure_namespace(tx, self.namespace)
                row = tx.execute(
                    "SELECT expected_digest FROM ingests WHERE namespace = ? AND ref = ?", (self.namespace, ref)
                ).fetchone()
                if expected and row is not None and row["expected_digest"] not in (None, expected) and local.offset:
                    # The ref was reused for another blob: the bytes on disk cannot be part of this one.
                    local.truncate(0)
                tx.execute(
                    "INSERT INTO ingests (namespace, ref, expected_digest, expected_size, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (namespace, ref) DO UPDATE SET "
                    "expected_digest = excluded.expected_digest, expires_at = NULL, "
                    "expected_size = coalesce(excluded.expected_size, expected_size), updated_at = excluded.updated_at",
                    (self.namespace, ref, expected, total, stamp, stamp),
                )
        except BaseException:
            local.close()
            raise
        return Writer(self, ref, local, expected, total, committed)

    def write_blob(
        self, ref: str, reader: BinaryIO, *, expected: str | None = None, size: int | None = None,
        labels: dict[str, str] | None = None, chunk_size: int = 1 << 20,
    ) -> Info:
        """containerd's content.WriteBlob: store everything `reader` yields under ingest `ref` and commit.

        Resuming an interrupted ingest of the same ref skips (or seeks past) the bytes already stored, so
        the caller always passes the whole blob from its start.
        """
        with self.writer(ref, expected=expected, total=size) as w:
            if not w.committed_already:
                _skip(reader, w.offset)
                read = getattr(reader, "read1", reader.read)
                while chunk := read(chunk_size):
                    w.write(chunk)
            return w.commit(size, expected, labels)

    def _globally_present(self, digest: str) -> bool:
        with self.db.view() as tx:
            row = tx.execute("SELECT 1 FROM blobs WHERE digest = ?", (digest,)).fetchone()
        return row is not None and self.local.has_blob(digest)

    def statuses(self) -> builtins.list[Status]:
        with self.db.view() as tx:
            rows = tx.execute(
                "SELECT ref, expected_digest, expected_size, created_at, updated_at FROM ingests "
                "WHERE namespace = ? ORDER BY ref",
                (self.namespace,),
            ).fetchall()
        out: builtins.list[Status] = []
        for row in rows:
            disk = self.local.ingest_status(self._key(row["ref"]))
            if disk is None:
                continue  # the row outlived its directory (killed between rmtree and the row delete)
            out.append(
                Status(
                    ref=row["ref"],
                    offset=disk["offset"],
                    total=disk["total"] if disk["total"] is not None else row["expected_size"],
                    expected=row["expected_digest"],
                    started_at=disk["started_at"] or row["created_at"],
                    updated_at=disk["updated_at"] or row["updated_at"],
                )
            )
        return out

    def status(self, ref: str) -> Status:
        self._key(ref)
        for st in self.statuses():
            if st.ref == ref:
                return st
        raise errors.NotFound(f"ingest {ref!r} not found in namespace {self.namespace!r}")

    def abort(self, ref: str) -> None:
        """Discard an ingest; Unavailable while another process writes it."""
        key = self._key(ref)
        forgotten: builtins.list[int] = []

        def forget() -> None:
            with self.db.update() as tx:
                cur = tx.execute("DELETE FROM ingests WHERE namespace = ? AND ref = ?", (self.namespace, ref))
                forgotten.append(cur.rowcount)

        # The row goes while the lock is held, so it cannot be a newer writer's row.
        removed = self.local.remove_ingest(key, before=forget)
        if not removed:
            forget()
        if not removed and not forgotten[-1]:
            raise errors.NotFound(f"ingest {ref!r} not found in namespace {self.namespace!r}")

    def abandon(self, refs: builtins.list[str]) -> None:
        """Mark ingests as given up by their writer (a failed pull): they stay resumable until the next `gc`,
        which frees them (containerd: an ingest no lease holds is garbage)."""
        from ctrpy.runtime.metadata import now

        if not refs:
            return
        stamp = now()
        with self.db.update() as tx:
            tx.executemany("UPDATE ingests SET expires_at = ? WHERE namespace = ? AND ref = ?",
                           [(stamp, self.namespace, ref) for ref in refs])

    def _forget_ingest(self, ref: str) -> None:
        with self.db.update() as tx:
            tx.execute("DELETE FROM ingests WHERE namespace = ? AND ref = ?", (self.namespace, ref))


def _skip(reader: BinaryIO, count: int) -> None:
    if not count:
        return
    try:
        if reader.seekable():
            reader.seek(count, os.SEEK_CUR)
            return
    except (AttributeError, OSError):
        pass
    while count:
        chunk = reader.read(min(count, 1 << 20))
        if not chunk:
            return  # shorter than what is stored: commit will report the size or digest mismatch
        count -= len(chunk)


class Writer:
    """An exclusive, resumable writer for one ingest. A context manager: leaving without commit keeps the
    ingest for a later resume and releases the lock."""

    def __init__(
        self, store: ContentStore, ref: str, local: LocalWriter, expected: str | None, total: int | None,
        committed_already: bool,
    ) -> None:
        self.store = store
        self.ref = ref
        self._local = local
        self.expected = expected
        self.total = total if total is not None else local.total
        self.committed_already = committed_already
        self._done = False

    @property
    def offset(self) -> int:
        return self._local.offset

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open_committed(self) -> BinaryIO:
        if not (self.committed_already and self.expected):
            raise errors.FailedPrecondition(f"ingest {self.ref!r} has no committed blob to read")
        return self.store.local.open_blob(self.expected)

    def write(self, data: bytes) -> None:
        self._check_open()
        try:
            self._local.write(data)
        except OSError as exc:
            if errors.is_no_space(exc):
                raise self._out_of_space() from exc
            raise errors.from_oserror(exc, f"cannot write ingest {self.ref!r}") from exc

    def _out_of_space(self) -> errors.NoSpace:
        """A full disk while receiving: drop the partial bytes at once, so that the space comes back and the
        next command (or pull) works; the row goes too when the database can still be written."""
        where = self.store.local.ingest
        self._local.discard()
        self._done = True
        try:
            self.store._forget_ingest(self.ref)
        except errors.CtrpyError:
            pass  # the database is on the full disk too; `content active` skips rows without a directory
        return errors.no_space(f"content ingest {self.ref!r}: partial download removed", where)

    def truncate(self, size: int = 0) -> None:
        self._check_open()
        self._local.truncate(size)

    # -- for a streaming unpack (issue 17), which reads the ingest file while it is written
    def flush(self) -> None:
        """Hand buffered bytes to the OS, so a reader of `data_path` sees everything written so far."""
        self._check_open()
        self._local.flush()

    @property
    def data_path(self) -> Path:
        return self._local.data_path

    def digest(self) -> str:
        return self._local.digest()

    def status(self) -> Status:
        return self.store.status(self.ref)

    def _check_open(self) -> None:
        if self._done or self._local.closed:
            raise errors.FailedPrecondition(f"writer for {self.ref!r} is closed")

    def commit(
        self, size: int | None = None, expected: str | None = None, labels: dict[str, str] | None = None
    ) -> Info:
        """Verify and publish the blob; see the module docstring. Idempotent for an existing blob."""
        from ctrpy.runtime.metadata import validate_labels

        self._check_open()
        validate_labels(dict(labels or {}))
        expected = expected or self.expected
        size = size if size is not None else self.total
        if expected:
            parse_digest(expected)
        store = self.store
        if self.committed_already and expected and store._globally_present(expected):
            # Forget the row while still holding the lock, so a new writer's row cannot be the one deleted.
            store._forget_ingest(self.ref)
            self._local.discard()
            self._done = True
            return store.add_existing(expected, labels)
        try:
            self._local.sync()
        except OSError as exc:
            if errors.is_no_space(exc):
                raise self._out_of_space() from exc
            raise errors.from_oserror(exc, f"cannot sync ingest {self.ref!r}") from exc
        actual = self._local.digest()
        problem = None
        if size is not None and size > 0 and self._local.offset != size:
            problem = f"unexpected commit size {self._local.offset}, expected {size}"
        elif expected and actual != expected:
            problem = f"unexpected commit digest {actual}, expected {expected}"
        if problem:
            # A corrupt or wrong download must not be resumed: discard it so the next try starts clean.
            # Forget the row while still holding the lock, so a new writer's row cannot be the one deleted.
            store._forget_ingest(self.ref)
            self._local.discard()
            self._done = True
            raise errors.FailedPrecondition(f"commit of {self.ref!r} failed: {problem}")
        with store.db.update() as tx:
            try:
                store.local.commit_blob(self._local.data_path, actual)
            except OSError as exc:
                raise errors.from_oserror(exc, f"cannot commit blob {actual}") from exc
            store._record(tx, actual, self._local.offset, labels)
            tx.execute("DELETE FROM ingests WHERE namespace = ? AND ref = ?", (store.namespace, self.ref))
            row = store._row(tx, actual)
        self._local.discard()
        self._done = True
        return _info(row)

    def close(self) -> None:
        """Release the ingest, keeping its data for a resume (an empty ingest is simply removed)."""
        if self._done:
            return
        self._done = True
        if self._local.offset == 0:
            self.store._forget_ingest(self.ref)
            self._local.discard()
            return
        try:
            self._local.close()
        except OSError as exc:
            if not errors.is_no_space(exc):
                raise errors.from_oserror(exc, f"cannot close ingest {self.ref!r}") from exc
            # The last buffered bytes did not fit: what is on disk is not a prefix we can trust to resume.
            raise self._out_of_space() from exc
