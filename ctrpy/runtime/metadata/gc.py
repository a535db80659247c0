"""The garbage collector's view of the metadata tables (containerd's core/metadata/gc.go): everything it reads
to mark, and the deletes of its sweep, inside one transaction the collector holds (ctrpy.runtime.gc).

The collector itself decides what is live (roots, references, leases, grace periods) and removes files
through the stores' own walk/delete methods; it never writes SQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ctrpy.runtime.metadata.db import DB, load_json

Row = sqlite3.Row


def labels_of(text: str | None) -> dict[str, str]:
    """A row's labels; {} when absent or unreadable (the collector keeps going on a damaged row)."""
    try:
        value = load_json(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


@dataclass
class Tables:
    """Every row the collector judges, across all namespaces, read in one transaction."""

    content: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)  # (ns, digest) -> labels
    blobs: dict[str, int] = field(default_factory=dict)  # digest -> size
    snapshots: dict[tuple[str, str, str], Row] = field(default_factory=dict)  # (ns, snapshotter, key)
    backend_rows: dict[int, Row] = field(default_factory=dict)  # backend snapshot id -> row
    images: list[Row] = field(default_factory=list)
    containers: list[Row] = field(default_factory=list)
    leases: list[Row] = field(default_factory=list)
    resources: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)  # lease -> (type, id)
    ingests: dict[tuple[str, str], Row] = field(default_factory=dict)  # (ns, ref) -> row


class Transaction:
    """The collector's reads and deletes within one metadata transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._tx = conn

    def load(self) -> Tables:
        tx = self._tx
        t = Tables()
        t.content = {(r["namespace"], r["digest"]): labels_of(r["labels"])
                     for r in tx.execute("SELECT namespace, digest, labels FROM content")}
        t.blobs = {r["digest"]: int(r["size"]) for r in tx.execute("SELECT digest, size FROM blobs")}
        t.snapshots = {(r["namespace"], r["snapshotter"], r["key"]): r for r in tx.execute("SELECT * FROM snapshots")}
        t.backend_rows = {int(r["id"]): r for r in tx.execute("SELECT * FROM backend_snapshots")}
        t.images = list(tx.execute("SELECT namespace, name, target_digest, labels FROM images"))
        t.containers = list(tx.execute("SELECT namespace, id, image, snapshotter, snapshot_key, labels "
                                       "FROM containers"))
        t.leases = list(tx.execute("SELECT namespace, id, labels FROM leases"))
        for r in tx.execute("SELECT namespace, lease_id, type, resource FROM lease_resources"):
            t.resources.setdefault((r["namespace"], r["lease_id"]), []).append((r["type"], r["resource"]))
        t.ingests = {(r["namespace"], r["ref"]): r for r in tx.execute("SELECT * FROM ingests")}
        return t

    # -- what is recorded now (checked again under the lock before files go)

    def blob_digests(self) -> set[str]:
        return {str(r["digest"]) for r in self._tx.execute("SELECT digest FROM blobs")}

    def ingest_keys(self) -> set[tuple[str, str]]:
        return {(str(r["namespace"]), str(r["ref"])) for r in self._tx.execute("SELECT namespace, ref FROM ingests")}

    def backend_ids(self) -> set[tuple[str, int]]:
        return {(str(r["snapshotter"]), int(r["id"]))
                for r in self._tx.execute("SELECT id, snapshotter FROM backend_snapshots")}

    # -- the sweep

    def delete_lease(self, namespace: str, lease_id: str) -> None:
        self._tx.execute("DELETE FROM leases WHERE namespace = ? AND id = ?", (namespace, lease_id))

    def delete_content(self, namespace: str, digest: str) -> None:
        self._tx.execute("DELETE FROM content WHERE namespace = ? AND digest = ?", (namespace, digest))

    def delete_blob(self, digest: str) -> None:
        self._tx.execute("DELETE FROM blobs WHERE digest = ?", (digest,))

    def delete_snapshot(self, namespace: str, snapshotter: str, key: str) -> None:
        self._tx.execute("DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
                         (namespace, snapshotter, key))

    def delete_backend_snapshot(self, sid: int) -> None:
        self._tx.execute("DELETE FROM backend_snapshots WHERE id = ?", (sid,))

    def delete_ingest(self, namespace: str, ref: str) -> None:
        self._tx.execute("DELETE FROM ingests WHERE namespace = ? AND ref = ?", (namespace, ref))


@contextmanager
def transaction(db: DB, *, write: bool) -> Iterator[Transaction]:
    """A write transaction (BEGIN IMMEDIATE: nothing gains a reference while the collector judges), or a
    read-only one for a dry run."""
    with db.update() if write else db.view() as conn:
        yield Transaction(conn)


__all__ = ["Row", "Tables", "Transaction", "labels_of", "transaction"]
