"""The namespaced snapshotter: keys, parents, kinds and labels in the metadata DB over a backend.

Tables (ctrpy/runtime/metadata/schema.py):

    snapshots(namespace, snapshotter, key, parent, kind, backend_id, labels, created_at, updated_at)
        one row per snapshot a namespace sees; `parent` is the parent's key in the same namespace
    backend_snapshots(id, snapshotter, name, parent_id, kind, created_at)
        one row per directory ROOT/snapshots/<snapshotter>/snapshots/<id>; `name` is set only on a
        committed snapshot that other namespaces may share (same name and same parent directory)

A committed backend snapshot is reference-counted by the rows pointing at it: `remove` in one namespace
deletes only that namespace's row, and the directory goes with the last row. Directories are created
inside the write transaction (so a failure rolls both back) and removed after it commits (so a crash
leaves at worst an unreferenced directory, never a row without its directory).
"""

from __future__ import annotations

import builtins
import json
import os
import re
import sqlite3
from collections.abc import Callable

from ctrpy.runtime import errors
from ctrpy.runtime.metadata import DB, dump_labels, ensure_namespace, now, validate_labels
from ctrpy.runtime.mount import Mount
from ctrpy.runtime.snapshots import Info, Kind, Usage
from ctrpy.runtime.snapshots.backend import Backend

MAX_KEY_LEN = 1024
# Only content-addressed names (chain IDs) are shared between namespaces: the same chain ID on the same
# parent means the same bytes, while a user-chosen name like "base" may mean different trees.
_SHAREABLE = re.compile(r"^sha256:[a-f0-9]{64}$")


def _check_key(key: str, what: str = "key") -> str:
    if not key or not isinstance(key, str):
        raise errors.InvalidArgument(f"snapshot {what} must not be empty")
    if len(key) > MAX_KEY_LEN or "\x00" in key:
        raise errors.InvalidArgument(f"invalid snapshot {what} {key[:64]!r}")
    return key


class MetadataSnapshotter:
    """A Snapshotter for one namespace over one backend."""

    def __init__(self, db: DB, namespace: str, name: str, backend: Backend) -> None:
        self.db = db
        self.namespace = namespace
        self.name = name
        self.backend = backend

    # ------------------------------------------------------------------------------------------ helpers

    def _row(self, tx: sqlite3.Connection, key: str) -> sqlite3.Row:
        row: sqlite3.Row | None = tx.execute(
            "SELECT * FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
            (self.namespace, self.name, key),
        ).fetchone()
        if row is None:
            raise errors.NotFound(f"snapshot {key!r} does not exist (snapshotter {self.name})")
        return row

    def _exists(self, tx: sqlite3.Connection, key: str) -> bool:
        return (
            tx.execute(
                "SELECT 1 FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
                (self.namespace, self.name, key),
            ).fetchone()
            is not None
        )

    @staticmethod
    def _chain(tx: sqlite3.Connection, backend_id: int | None) -> list[int]:
        """Backend ids from `backend_id` up to the base layer, nearest first."""
        chain: list[int] = []
        while backend_id is not None:
            chain.append(backend_id)
            row = tx.execute("SELECT parent_id FROM backend_snapshots WHERE id = ?", (backend_id,)).fetchone()
            backend_id = row["parent_id"] if row else None
        return chain

    @staticmethod
    def _info(row: sqlite3.Row) -> Info:
        return Info(
            kind=Kind(row["kind"]),
            name=row["key"],
            parent=row["parent"] or "",
            labels=json.loads(row["labels"] or "{}"),
            created=row["created_at"],
            updated=row["updated_at"],
        )

    def _parent_chain_of(self, tx: sqlite3.Connection, row: sqlite3.Row) -> list[int]:
        parent_id = tx.execute("SELECT parent_id FROM backend_snapshots WHERE id = ?", (row["backend_id"],)).fetchone()
        return self._chain(tx, parent_id["parent_id"] if parent_id else None)

    # ------------------------------------------------------------------------------------------ reads

    def stat(self, key: str) -> Info:
        with self.db.view() as tx:
            return self._info(self._row(tx, key))

    def mounts(self, key: str) -> list[Mount]:
        with self.db.view() as tx:
            row = self._row(tx, key)
            if row["kind"] == Kind.COMMITTED.value:
                raise errors.FailedPrecondition(
                    f"snapshot {key!r} is committed and cannot be mounted: prepare or view a snapshot on top of it"
                )
            parents = self._parent_chain_of(tx, row)
            return self.backend.mounts(row["backend_id"], parents, Kind(row["kind"]))

    def usage(self, key: str) -> Usage:
        with self.db.view() as tx:
            row = self._row(tx, key)
        return self.backend.usage(row["backend_id"])

    def walk(self, fn: Callable[[Info], None], *filters: str) -> None:
        from ctrpy.runtime import filters as flt

        selector = flt.parse(filters)
        with self.db.view() as tx:
            rows = tx.execute(
                "SELECT * FROM snapshots WHERE namespace = ? AND snapshotter = ? ORDER BY key",
                (self.namespace, self.name),
            ).fetchall()
        for row in rows:
            info = self._info(row)
            fields = {"name": info.name, "key": info.name, "parent": info.parent, "kind": str(info.kind)}
            if selector.match(flt.object_adaptor(fields, info.labels)):
                fn(info)

    def list(self, *filters: str) -> list[Info]:
        out: list[Info] = []
        self.walk(out.append, *filters)
        return out

    def backend_path(self, key: str) -> str:
        """The directory holding the snapshot's own layer (for diagnostics and tests)."""
        with self.db.view() as tx:
            row = self._row(tx, key)
        return str(self.backend.fs(row["backend_id"]))

    # ------------------------------------------------------------------------------------------ writes

    def _create(self, kind: Kind, key: str, parent: str, labels: dict[str, str] | None) -> builtins.list[Mount]:
        _check_key(key)
        labels = validate_labels(dict(labels or {}))
        created_id: int | None = None
        try:
            with self.db.update() as tx:
                ensure_namespace(tx, self.namespace)
                if self._exists(tx, key):
                    raise errors.AlreadyExists(f"snapshot {key!r} already exists (snapshotter {self.name})")
                parent_backend: int | None = None
                if parent:
                    prow = self._row(tx, parent)
                    if prow["kind"] != Kind.COMMITTED.value:
                        raise errors.FailedPrecondition(
                            f"parent snapshot {parent!r} is {prow['kind']}, not committed: commit it first"
                        )
                    parent_backend = prow["backend_id"]
                stamp = now()
                cur = tx.execute(
                    "INSERT INTO backend_snapshots (snapshotter, name, parent_id, kind, created_at) "
                    "VALUES (?, NULL, ?, ?, ?)",
                    (self.name, parent_backend, kind.value, stamp),
                )
                sid = int(cur.lastrowid or 0)
                tx.execute(
                    "INSERT INTO snapshots (namespace, snapshotter, key, parent, kind, backend_id, labels, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (self.namespace, self.name, key, parent or None, kind.value, sid, dump_labels(labels),
                     stamp, stamp),
                )
                parents = self._chain(tx, parent_backend)
                created_id = sid
                self.backend.create(sid, parents, kind)
                return self.backend.mounts(sid, parents, kind)
        except BaseException:
            if created_id is not None:
                self.backend.remove(created_id)
            raise

    def prepare(self, key: str, parent: str = "", labels: dict[str, str] | None = None) -> builtins.list[Mount]:
        """Create an active snapshot `key` on top of committed `parent` ("" for an empty one); its mounts."""
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(self, key: str, parent: str = "", labels: dict[str, str] | None = None) -> builtins.list[Mount]:
        """Create a read-only view `key` of committed `parent`; its mounts."""
        return self._create(Kind.VIEW, key, parent, labels)

    def commit(self, name: str, key: str, labels: dict[str, str] | None = None) -> None:
        """Turn active snapshot `key` into committed `name`; `key` is gone afterwards.

        If another namespace already committed `name` on the same parent directory, this namespace shares
        that directory and the freshly written one is dropped.
        """
        _check_key(name, "name")
        drop: int | None = None
        with self.db.update() as tx:
            row = self._row(tx, key)
            if row["kind"] != Kind.ACTIVE.value:
                raise errors.FailedPrecondition(f"snapshot {key!r} is {row['kind']}: only active snapshots can be committed")
            if self._exists(tx, name):
                raise errors.AlreadyExists(f"snapshot {name!r} already exists (snapshotter {self.name})")
            merged = json.loads(row["labels"] or "{}")
            merged.update(validate_labels(dict(labels or {})))
            sid = row["backend_id"]
            parent_id = tx.execute("SELECT parent_id FROM backend_snapshots WHERE id = ?", (sid,)).fetchone()[0]
            shared = self._shared_backend(tx, name, parent_id)
            if shared is not None:
                drop = sid
                target = shared
            else:
                taken = tx.execute(
                    "SELECT 1 FROM backend_snapshots WHERE snapshotter = ? AND name = ?", (self.name, name)
                ).fetchone()
                tx.execute(
                    "UPDATE backend_snapshots SET kind = 'committed', name = ? WHERE id = ?",
                    (None if taken or not _SHAREABLE.match(name) else name, sid),
                )
                target = sid
            tx.execute(
                "DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
                (self.namespace, self.name, key),
            )
            if drop is not None:
                tx.execute("DELETE FROM backend_snapshots WHERE id = ?", (drop,))
            stamp = now()
            tx.execute(
                "INSERT INTO snapshots (namespace, snapshotter, key, parent, kind, backend_id, labels, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, 'committed', ?, ?, ?, ?)",
                (self.namespace, self.name, name, row["parent"], target, dump_labels(merged), stamp, stamp),
            )
        if drop is not None:
            self.backend.remove(drop)

    def _shared_backend(self, tx: sqlite3.Connection, name: str, parent_id: int | None) -> int | None:
        if not _SHAREABLE.match(name):
            return None
        row = tx.execute(
            "SELECT id, parent_id FROM backend_snapshots WHERE snapshotter = ? AND name = ? AND kind = 'committed'",
            (self.name, name),
        ).fetchone()
        if row is None or row["parent_id"] != parent_id:
            return None
        return int(row["id"])

    def share(self, name: str, parent: str = "", labels: dict[str, str] | None = None) -> bool:
        """Adopt committed `name` from another namespace when it sits on the same parent; True if adopted.

        This is how an image unpacked in one namespace costs nothing to unpack in another.
        """
        _check_key(name, "name")
        with self.db.update() as tx:
            ensure_namespace(tx, self.namespace)
            if self._exists(tx, name):
                return False
            parent_id: int | None = None
            if parent:
                prow = self._row(tx, parent)
                if prow["kind"] != Kind.COMMITTED.value:
                    return False
                parent_id = prow["backend_id"]
            shared = self._shared_backend(tx, name, parent_id)
            if shared is None:
                return False
            stamp = now()
            tx.execute(
                "INSERT INTO snapshots (namespace, snapshotter, key, parent, kind, backend_id, labels, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, 'committed', ?, ?, ?, ?)",
                (self.namespace, self.name, name, parent or None, shared, dump_labels(labels), stamp, stamp),
            )
            return True

    def remove(self, key: str) -> None:
        """Remove snapshot `key`; refused while it has children or a container uses it."""
        drop: int | None = None
        with self.db.update() as tx:
            row = self._row(tx, key)
            children = [
                r["key"]
                for r in tx.execute(
                    "SELECT key FROM snapshots WHERE namespace = ? AND snapshotter = ? AND parent = ? ORDER BY key",
                    (self.namespace, self.name, key),
                )
            ]
            if children:
                shown = ", ".join(repr(c) for c in children[:3]) + (", ..." if len(children) > 3 else "")
                raise errors.FailedPrecondition(
                    f"cannot remove snapshot {key!r}: it has {len(children)} child snapshot"
                    f"{'s' if len(children) != 1 else ''} ({shown}); remove them first"
                )
            users = [
                r["id"]
                for r in tx.execute(
                    "SELECT id FROM containers WHERE namespace = ? AND snapshotter = ? AND snapshot_key = ? "
                    "ORDER BY id",
                    (self.namespace, self.name, key),
                )
            ]
            if users:
                raise errors.FailedPrecondition(
                    f"cannot remove snapshot {key!r}: it is the root file system of container "
                    f"{', '.join(repr(u) for u in users)}; remove the container first"
                )
            tx.execute(
                "DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
                (self.namespace, self.name, key),
            )
            sid = row["backend_id"]
            others = tx.execute("SELECT COUNT(*) FROM snapshots WHERE backend_id = ?", (sid,)).fetchone()[0]
            if not others:
                tx.execute("DELETE FROM backend_snapshots WHERE id = ?", (sid,))
                drop = sid
        if drop is not None:
            self.backend.remove(drop)

    def update(self, info: Info, *fieldpaths: str) -> Info:
        """Update labels: all of them, or only `labels.<key>` fieldpaths (an absent key deletes it)."""
        with self.db.update() as tx:
            row = self._row(tx, info.name)
            labels = json.loads(row["labels"] or "{}")
            if not fieldpaths:
                labels = dict(info.labels)
            for path in fieldpaths:
                if path == "labels":
                    labels = dict(info.labels)
                elif path.startswith("labels."):
                    k = path[len("labels."):]
                    if k in info.labels:
                        labels[k] = info.labels[k]
                    else:
                        labels.pop(k, None)
                else:
                    raise errors.InvalidArgument(f"cannot update field {path!r} of a snapshot (only labels)")
            stamp = now()
            tx.execute(
                "UPDATE snapshots SET labels = ?, updated_at = ? WHERE namespace = ? AND snapshotter = ? AND key = ?",
                (dump_labels(labels), stamp, self.namespace, self.name, info.name),
            )
            return self._info(self._row(tx, info.name))

    def cleanup(self) -> builtins.list[int]:
        """Remove backend directories no row refers to (left by a crash); returns their ids.

        Like containerd's Cleanup: rows are written before directories are removed, so such a directory
        holds nothing anyone can reach. A directory being created right now already has its row
        (creation happens inside the write transaction), so it is never taken.
        """
        base = self.backend.root / "snapshots"
        if not base.is_dir():
            return []
        with self.db.update() as tx:
            known = {
                int(r["id"])
                for r in tx.execute("SELECT id FROM backend_snapshots WHERE snapshotter = ?", (self.name,))
            }
            orphans = sorted(int(n) for n in os.listdir(base) if n.isdigit() and int(n) not in known)
            for sid in orphans:
                self.backend.remove(sid)
        return orphans

    def close(self) -> None:
        self.backend.close()

    def __repr__(self) -> str:
        return f"<Snapshotter {self.name} namespace={self.namespace}>"

