"""The metadata database: transactions over one SQLite file under the root directory.

Writers use ``with db.update() as tx:`` (BEGIN IMMEDIATE, so concurrent CLI processes queue on the busy
timeout instead of failing with "database is locked" when a read would have to upgrade to a write);
readers use ``with db.view() as tx:``. The file is in WAL mode: a process killed mid-transaction leaves the
last committed state, and readers never block the writer.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager

from ctrpy.runtime import errors, identifiers, timefmt
from ctrpy.runtime.metadata import lookup, schema

# No typing or pathlib at run time (every listing opens the database: issue 17's start-up budget).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from typing import Any

BUSY_TIMEOUT_MS = 60_000
DB_FILENAME = lookup.DB_FILENAME
# Space kept in reserve beside the database (allocated, not sparse). When the disk fills up, SQLite cannot
# even open a WAL database (its -shm file) or write the WAL of a DELETE, so the commands that free space
# (`gc`, `content abort`, `leases rm`, `images rm`) would fail too: on the first SQLITE_FULL the reserve is
# released and the write retried, and it is allocated again once the disk has room.
RESERVE_FILENAME = "meta.db.reserve"
RESERVE_BYTES = 512 << 10

MAX_LABEL_BYTES = 4096


# The format of every timestamp in the store (RFC 3339 UTC with nanoseconds).
now = timefmt.now


def validate_namespace(name: str) -> str:
    """Check a namespace name the way containerd's identifiers package does."""
    return identifiers.validate(name, "namespace name")


def validate_labels(labels: dict[str, str]) -> dict[str, str]:
    """Check labels as containerd does: non-empty keys, key plus value at most 4096 bytes."""
    for key, value in labels.items():
        if not isinstance(key, str) or not key:
            raise errors.InvalidArgument("label key must not be empty")
        if not isinstance(value, str):
            raise errors.InvalidArgument(f"label {key!r}: value must be a string")
        if len(key.encode()) + len(value.encode()) > MAX_LABEL_BYTES:
            raise errors.InvalidArgument(
                f"label {key!r}: key and value together exceed {MAX_LABEL_BYTES} bytes"
            )
    return labels


def dump_labels(labels: dict[str, str] | None) -> str:
    import json  # json brings re: not imported for a listing that parses no document

    return json.dumps(validate_labels(dict(labels or {})), sort_keys=True, separators=(",", ":"))


def load_json(text: str | None) -> Any:
    if not text:
        return {}
    import json

    return json.loads(text)


class DB:
    """One SQLite metadata file, one connection per thread."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = _pure(root)
        self._path = os.path.join(self._root, DB_FILENAME)
        self._local = threading.local()
        self._initialised = False
        self._reserve_checked = False

    @property
    def root(self) -> Path:
        from pathlib import Path

        return Path(self._root)

    @property
    def path(self) -> Path:
        from pathlib import Path

        return Path(self._path)

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = self._open()
        except errors.NoSpace:
            if not self._release_reserve():
                raise
            conn = self._open()
        if not self._reserve_checked:
            self._reserve_checked = True
            self._keep_reserve()
        return conn

    def _keep_reserve(self) -> None:
        path = os.path.join(self._root, RESERVE_FILENAME)
        if os.path.exists(path):
            return
        try:
            st = os.statvfs(self._root)
            if st.f_bavail * st.f_frsize < 16 * RESERVE_BYTES:
                return  # short of space already: do not take what is left
            tmp = os.path.join(self._root, f".{RESERVE_FILENAME}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError:
            try:
                os.unlink(os.path.join(self._root, f".{RESERVE_FILENAME}.{os.getpid()}"))
            except OSError:
                pass

    def _release_reserve(self) -> bool:
        """Give the reserve back to the file system; False when it was already gone."""
        try:
            os.unlink(os.path.join(self._root, RESERVE_FILENAME))
            return True
        except FileNotFoundError:
            return False

    def _open(self) -> sqlite3.Connection:
        try:
            os.makedirs(self._root, mode=0o711, exist_ok=True)
            conn = sqlite3.connect(
                self._path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=True
            )
        except sqlite3.Error as exc:
            raise errors.Unavailable(f"cannot open metadata database {self._path}: {exc}") from exc
        except OSError as exc:
            raise errors.from_oserror(exc, "cannot create root directory") from exc
        conn.row_factory = sqlite3.Row
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys = ON")
            # NORMAL in WAL mode: a killed process never loses a committed transaction, and the file never
            # corrupts on power loss (only the newest transactions may be lost); FULL would fsync every commit.
            conn.execute("PRAGMA synchronous = NORMAL")
            if not self._initialised:
                self._initialise(conn)
                self._initialised = True
        except sqlite3.OperationalError as exc:
            conn.close()
            if self._full(exc):
                raise _no_space(self._path) from exc
            raise
        except sqlite3.DatabaseError as exc:  # "file is not a database", "database disk image is malformed"
            conn.close()
            raise errors.Internal(f"metadata database {self._path} is damaged: {exc}") from exc
        self._local.conn = conn
        return conn

    def _full(self, exc: BaseException) -> bool:
        """SQLITE_FULL, or an I/O error while the disk is full: opening a WAL database creates its -shm and
        -wal files, and SQLite reports a failure there as "disk I/O error", without the errno."""
        if errors.is_no_space(exc):
            return True
        if "disk I/O error" not in str(exc):
            return False
        try:
            st = os.statvfs(self._root)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < (1 << 20) or st.f_favail == 0

    def _initialise(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == schema.SCHEMA_VERSION:
            return
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        self._retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > schema.SCHEMA_VERSION:
                raise errors.FailedPrecondition(
                    f"metadata database {self._path} has schema version {version}, newer than this ctrpy "
                    f"understands ({schema.SCHEMA_VERSION}); upgrade ctrpy"
                )
            if version == 0:
                schema.create(conn)
            else:
                for migrate in schema.MIGRATIONS[version - 1 :]:
                    migrate(conn)
            conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise

    def _retry_busy(self, fn: Any) -> Any:
        # journal_mode changes and BEGIN IMMEDIATE can return SQLITE_BUSY before the busy handler applies
        # (for example while another process holds the WAL recovery lock); retry for the busy timeout.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        delay = 0.001
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if self._full(exc):
                    raise _no_space(self._path) from exc
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise errors.Unavailable(f"metadata database is busy: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    @contextmanager
    def update(self) -> Iterator[sqlite3.Connection]:
        """A write transaction. Commits on success, rolls back on any exception."""
        conn = self._connect()
        self._retry_busy(lambda: conn.execute("BEGIN IMMEDIATE"))
        try:
            yield conn
        except sqlite3.OperationalError as exc:
            self._rollback(conn)
            if self._full(exc):
                self._release_reserve()  # the next command (gc, content abort, ...) can then write
                raise _no_space(self._path) from exc
            raise
        except BaseException:
            self._rollback(conn)
            raise
        try:
            self._retry_busy(lambda: conn.execute("COMMIT"))
        except errors.NoSpace:
            # SQLITE_FULL at COMMIT leaves the transaction open: with the reserve given back it can finish.
            if not (conn.in_transaction and self._release_reserve()):
                self._rollback(conn)
                raise
            try:
                self._retry_busy(lambda: conn.execute("COMMIT"))
            except BaseException:
                self._rollback(conn)
                raise
        except BaseException:
            self._rollback(conn)
            raise

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        # SQLITE_FULL (and a few other errors) roll the transaction back by themselves; a second ROLLBACK
        # would then fail and hide the real error. The connection stays usable either way.
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    @contextmanager
    def view(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot of the database."""
        conn = self._connect()
        try:
            conn.execute("BEGIN")
        except sqlite3.OperationalError as exc:
            if self._full(exc):
                raise _no_space(self._path) from exc
            raise
        try:
            yield conn
        except sqlite3.OperationalError as exc:
            if self._full(exc):
                raise _no_space(self._path) from exc
            raise
        finally:
            conn.execute("ROLLBACK")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def integrity_check(self) -> list[str]:
        """Run SQLite's integrity check; an empty list means the file is sound."""
        rows = self._connect().execute("PRAGMA integrity_check").fetchall()
        problems = [row[0] for row in rows]
        return [] if problems == ["ok"] else problems


def _pure(path: str | os.PathLike[str]) -> str:
    """str(pathlib.PurePosixPath(path)) without importing pathlib: the same spelling in messages."""
    text = os.fspath(path)
    head = "//" if text.startswith("//") and not text.startswith("///") else "/" if text.startswith("/") else ""
    return head + "/".join(p for p in text.split("/") if p not in ("", ".")) or "."


def _no_space(path: str | Path) -> errors.NoSpace:
    return errors.NoSpace(f"metadata database {path}: no space left on device (free space and retry; "
                          "`ctrpy gc` removes abandoned downloads)")


def ensure_namespace(tx: sqlite3.Connection, namespace: str) -> None:
    """Create the namespace row if missing: like containerd, a namespace exists once something is put in it."""
    validate_namespace(namespace)
    stamp = now()
    tx.execute(
        "INSERT OR IGNORE INTO namespaces (name, labels, created_at, updated_at) VALUES (?, '{}', ?, ?)",
        (namespace, stamp, stamp),
    )


def append_event(tx: sqlite3.Connection, namespace: str, topic: str, payload: dict[str, Any]) -> None:
    """Record an event (topic like containerd's: /images/create, /tasks/exit) in the same transaction."""
    import json

    tx.execute(
        "INSERT INTO events (timestamp, namespace, topic, payload) VALUES (?, ?, ?, ?)",
        (now(), namespace, topic, json.dumps(payload, sort_keys=True)),
    )
