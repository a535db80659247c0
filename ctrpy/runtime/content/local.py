"""The content store's disk layer, laid out like containerd's plugins/content/local.

    <root>/blobs/sha256/<hex>                 committed blobs, read-only (0444), shared by all namespaces
    <root>/ingest/<sha256(key)>/data          bytes received so far (resumable: offset = file size)
    <root>/ingest/<sha256(key)>/ref           the ingest key (namespace/ref) in clear
    <root>/ingest/<sha256(key)>/startedat     RFC 3339 time the ingest began
    <root>/ingest/<sha256(key)>/updatedat     RFC 3339 time of the last write session
    <root>/ingest/<sha256(key)>/total         expected total size, when known

An ingest is owned by whoever holds flock(LOCK_EX) on its directory; the lock dies with the process, so a
SIGKILLed writer leaves a resumable ingest and no stale lock. Commit is fsync, size and digest check, then an
atomic rename into blobs/: nothing is readable at the blob path before it is complete.
This module knows nothing about namespaces or the database; ctrpy.runtime.metadata.content adds those.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ctrpy.runtime import errors, timefmt

# hashlib (OpenSSL) and shutil (bz2, lzma) are imported where used: listing commands load this module
# only for its types, and their start-up is what users wait for (issue 17).

_DIGEST_RE = re.compile(r"^(sha256):([a-f0-9]{64})$|^(sha512):([a-f0-9]{128})$")
_CHUNK = 1 << 20


def parse_digest(digest: str) -> tuple[str, str]:
    """Split and validate an OCI digest ("sha256:<64 hex>"); InvalidArgument otherwise."""
    m = _DIGEST_RE.match(digest or "") if isinstance(digest, str) else None
    if not m:
        from ctrpy.runtime.reference import validate_digest

        validate_digest(digest)  # the specific reason (uppercase, length, algorithm)
        raise errors.InvalidArgument(f"invalid digest {digest!r}: expected sha256:<64 lowercase hex digits>")
    return (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))


def _stamp() -> str:
    from ctrpy.runtime.metadata import now

    return now()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    """Blobs and ingest directories under one root."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.ingest = self.root / "ingest"

    def blob_path(self, digest: str) -> Path:
        alg, hexd = parse_digest(digest)
        return self.blobs / alg / hexd

    def open_blob(self, digest: str) -> BinaryIO:
        """The committed blob for reading, whichever namespaces see it (callers check visibility)."""
        try:
            return open(self.blob_path(digest), "rb")
        except OSError as exc:
            raise errors.from_oserror(exc, "cannot open blob") from exc

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def ingest_dir(self, key: str) -> Path:
        import hashlib

        return self.ingest / hashlib.sha256(key.encode()).hexdigest()

    def ingest_status(self, key: str) -> dict[str, Any] | None:
        """What is on disk for an ingest (offset, times, total), or None when there is no ingest dir."""
        d = self.ingest_dir(key)
        try:
            st = (d / "data").stat()
            offset, mtime = st.st_size, st.st_mtime
        except FileNotFoundError:
            if not d.is_dir():
                return None
            offset, mtime = 0, None
        started = _read(d / "startedat") or ""
        updated = _read(d / "updatedat") or started
        if mtime is not None:
            from_mtime = timefmt.format(mtime)
            updated = max(updated, from_mtime)
        total_text = _read(d / "total")
        return {
            "offset": offset,
            "started_at": started,
            "updated_at": updated,
            "total": int(total_text) if total_text else None,
        }

    def open_ingest(self, key: str, *, total: int | None, wait: bool, algorithm: str = "sha256") -> LocalWriter:
        """Lock (creating if needed) the ingest for `key` and return a writer positioned at its end."""
        self.ingest.mkdir(parents=True, exist_ok=True)
        path = self.ingest_dir(key)
        while True:
            path.mkdir(exist_ok=True)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # removed by a committing writer between mkdir and open
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                raise errors.Unavailable(f"ref {key.split('/', 1)[-1]!r} is locked by another writer") from None
            # The previous holder may have committed or aborted and removed the directory while we waited:
            # then our lock is on an orphan inode, and we start again on a fresh directory.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            return LocalWriter(self, key, path, fd, total, algorithm)
        except BaseException:
            os.close(fd)
            raise

    def remove_ingest(self, key: str, *, wait: bool = False, before: Any = None) -> bool:
        """Delete an ingest dir under its lock. False if it did not exist; Unavailable if it is being written.
        `before()` runs once the lock is held, before the directory goes."""
        path = self.ingest_dir(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise errors.Unavailable(
                    f"ref {key.split('/', 1)[-1]!r} is locked by another writer"
                ) from None
            if before is not None:
                before()
            import shutil

            shutil.rmtree(path, ignore_errors=True)
            return True
        finally:
            os.close(fd)

    def commit_blob(self, data_path: Path, digest: str) -> bool:
        """Atomically move a verified, fsynced data file into place. False if the blob was already there
        (then the data file is left for the caller to discard, and the existing blob is not rewritten)."""
        target = self.blob_path(digest)
        if target.is_file():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(data_path, 0o444)
        os.rename(data_path, target)
        fsync_dir(target.parent)
        return True

    def remove_blob(self, digest: str) -> None:
        try:
            self.blob_path(digest).unlink()
        except FileNotFoundError:
            pass

    # -- for the garbage collector (ctrpy.runtime.gc): walk what is on disk, delete in two steps ------------

    @property
    def trash(self) -> Path:
        return self.root / ".gc-trash"

    def walk_blobs(self) -> Iterator[tuple[str, Path, int]]:
        """(name, path, size) of every blob file on disk, named "<algorithm>:<hex>" like a digest; a crash between
        a file operation and its transaction may leave one that no row names (or whose name is no digest)."""
        if not self.blobs.is_dir():
            return
        for alg in sorted(os.listdir(self.blobs)):
            if (self.blobs / alg).is_dir():
                for name in sorted(os.listdir(self.blobs / alg)):
                    try:
                        size = (self.blobs / alg / name).stat().st_size
                    except OSError:
                        size = 0
                    yield f"{alg}:{name}", self.blobs / alg / name, size

    def trash_blob(self, name: str) -> None:
        """Move blob `name` (as walk_blobs names it) out of blobs/: a cheap rename, made while the metadata
        write lock is held; empty_trash() frees its blocks later, unlocked."""
        alg, _, hexd = name.partition(":")
        if not alg or not hexd or "/" in name or alg.startswith("."):
            raise errors.InvalidArgument(f"invalid blob name {name!r}")
        self.trash.mkdir(exist_ok=True, mode=0o700)
        try:
            os.replace(self.blobs / alg / hexd, self.trash / f"{alg}-{hexd}")
        except FileNotFoundError:
            pass

    def empty_trash(self) -> None:
        """Unlink the trashed blobs (block freeing costs ~3 ms a file with online discard, hence unlocked);
        also what a collector killed between its rename and here left behind."""
        if not self.trash.is_dir():
            return
        for name in os.listdir(self.trash):
            try:
                (self.trash / name).unlink()
            except FileNotFoundError:
                pass

    def walk_ingests(self) -> Iterator[IngestDir]:
        """Every ingest directory on disk, with the key it was opened for ("" when unreadable)."""
        if not self.ingest.is_dir():
            return
        for name in sorted(os.listdir(self.ingest)):
            path = self.ingest / name
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:
                continue
            yield IngestDir(path, (_read(path / "ref") or "").strip(), mtime)

    def ingest_locked(self, path: Path) -> bool:
        """True while another process holds the flock of an ingest directory (it is being written)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops our shared lock at once
        return False

    def ingest_usage(self, path: Path) -> int:
        """Allocated bytes of one ingest directory (its files are flat)."""
        total = 0
        try:
            with os.scandir(path) as it:
                for entry in it:
                    try:
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
        except OSError:
            return 0
        return total

    def delete_ingest_dir(self, path: Path) -> None:
        """Remove an ingest directory no row names (left by a writer killed before its first transaction)."""
        if path.parent != self.ingest:
            raise errors.InvalidArgument(f"{path} is not an ingest directory of {self.root}")
        import shutil

        shutil.rmtree(path, ignore_errors=True)


@dataclass(frozen=True)
class IngestDir:
    """One ingest directory on disk, as walk_ingests finds it."""

    path: Path
    key: str  # "<namespace>/<ref>"
    mtime: float


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def _write_small(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class LocalWriter:
    """Appends to one locked ingest, hashing as it goes. Not thread-safe; one per ingest at a time."""

    def __init__(
        self, store: LocalStore, key: str, path: Path, lock_fd: int, total: int | None, algorithm: str = "sha256"
    ) -> None:
        self.store = store
        self.algorithm = algorithm
        self.key = key
        self.path = path
        self.data_path = path / "data"
        self._lock_fd = lock_fd
        if not (path / "ref").exists():
            _write_small(path / "ref", key)
        if not (path / "startedat").exists():
            _write_small(path / "startedat", _stamp())
        saved_total = _read(path / "total")
        restart = total is not None and saved_total is not None and int(saved_total) != total
        if total is not None:
            _write_small(path / "total", str(total))
        self.total = total if total is not None else (int(saved_total) if saved_total else None)
        f: BinaryIO = open(self.data_path, "ab+")
        self._file: BinaryIO | None = f
        import hashlib

        self._hash = hashlib.new(algorithm)
        self.offset = 0
        if restart:
            # The ref now names a blob of another size: what was received before is for something else.
            f.truncate(0)
        self._rehash(f)

    def _rehash(self, f: BinaryIO) -> None:
        # Resuming: the digest covers the whole blob, so the bytes already on disk are hashed again.
        f.seek(0)
        import hashlib

        self._hash = hashlib.new(self.algorithm)
        self.offset = 0
        while chunk := f.read(_CHUNK):
            self._hash.update(chunk)
            self.offset += len(chunk)

    def write(self, data: bytes) -> None:
        if self._file is None:
            raise errors.FailedPrecondition(f"ingest {self.key!r} is closed")
        self._file.write(data)
        self._hash.update(data)
        self.offset += len(data)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def truncate(self, size: int = 0) -> None:
        """Drop everything after `size` (0: start over, when a server ignored a Range request)."""
        if self._file is None:
            raise errors.FailedPrecondition(f"ingest {self.key!r} is closed")
        if size > self.offset:
            raise errors.InvalidArgument(f"cannot truncate ingest to {size}: only {self.offset} bytes written")
        self._file.flush()
        self._file.truncate(size)
        if size == 0:
            import hashlib

            self._hash = hashlib.new(self.algorithm)
            self.offset = 0
        else:
            self._rehash(self._file)

    def digest(self) -> str:
        return f"{self.algorithm}:{self._hash.hexdigest()}"

    def sync(self) -> None:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())

    def touch(self) -> None:
        try:
            _write_small(self.path / "updatedat", _stamp())
        except OSError:
            pass

    def discard(self) -> None:
        """Remove the ingest (after a commit or a failed verification); releases the lock."""
        try:
            self._close_file()
        except OSError:
            self._file = None  # a flush that failed (a full disk): the bytes go with the directory anyway
        import shutil  # off the listing path (issue 17)

        shutil.rmtree(self.path, ignore_errors=True)
        self.release()

    def _close_file(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise
            self._file = None

    def close(self) -> None:
        """Keep the ingest for a later resume and release the lock (kept on a failed flush: the caller
        decides, and discard() releases it)."""
        if self._file is not None:
            self._file.flush()
            self.touch()
        self._close_file()
        self.release()

    def release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    @property
    def closed(self) -> bool:
        return self._lock_fd < 0
