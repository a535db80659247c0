"""Namespaces: the top level of the metadata tree (containerd's v1/<namespace>).

A namespace exists once something is put in it (ensure_namespace) or once it is created explicitly; it can
be removed only when empty, and the refusal names what is left.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ctrpy.runtime import errors
from ctrpy.runtime.metadata import append_event, dump_labels, load_json, now, validate_labels, validate_namespace


class Namespace(NamedTuple):
    """A namespace and its labels; unpacks as (name, labels)."""

    name: str
    labels: dict[str, str]


# What a namespace can hold, in the order a refusal names them: (table, singular, plural).
_HOLDINGS = (
    ("images", "image", "images"),
    ("containers", "container", "containers"),
    ("content", "content blob", "content blobs"),
    ("snapshots", "snapshot", "snapshots"),
    ("leases", "lease", "leases"),
    ("ingests", "active ingest", "active ingests"),
)


class NamespaceStore:
    """Create, list, label and remove namespaces."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def create(self, name: str, labels: dict[str, str] | None = None) -> Namespace:
        validate_namespace(name)
        stamp = now()
        with self.db.update() as tx:
            if tx.execute("SELECT 1 FROM namespaces WHERE name = ?", (name,)).fetchone():
                raise errors.AlreadyExists(f"namespace {name!r} already exists")
            tx.execute(
                "INSERT INTO namespaces (name, labels, created_at, updated_at) VALUES (?, ?, ?, ?)",
                (name, dump_labels(labels), stamp, stamp),
            )
            append_event(tx, name, "/namespaces/create", {"name": name, "labels": dict(labels or {})})
        return Namespace(name, dict(labels or {}))

    def list(self) -> list[Namespace]:
        with self.db.view() as tx:
            rows = tx.execute("SELECT name, labels FROM namespaces ORDER BY name").fetchall()
        return [Namespace(r["name"], dict(load_json(r["labels"]))) for r in rows]

    def get(self, name: str) -> Namespace:
        validate_namespace(name)
        with self.db.view() as tx:
            row = tx.execute("SELECT name, labels FROM namespaces WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise errors.NotFound(f"namespace {name!r} not found")
        return Namespace(row["name"], dict(load_json(row["labels"])))

    def set_labels(self, name: str, labels: dict[str, str]) -> Namespace:
        """Merge labels into the namespace (a value "" removes a key), creating it if needed, as ctr does."""
        validate_namespace(name)
        validate_labels(labels)
        stamp = now()
        with self.db.update() as tx:
            row = tx.execute("SELECT labels FROM namespaces WHERE name = ?", (name,)).fetchone()
            current: dict[str, str] = dict(load_json(row["labels"])) if row else {}
            for key, value in labels.items():
                if value == "":
                    current.pop(key, None)
                else:
                    current[key] = value
            if row is None:
                tx.execute(
                    "INSERT INTO namespaces (name, labels, created_at, updated_at) VALUES (?, ?, ?, ?)",
                    (name, dump_labels(current), stamp, stamp),
                )
            else:
                tx.execute(
                    "UPDATE namespaces SET labels = ?, updated_at = ? WHERE name = ?",
                    (dump_labels(current), stamp, name),
                )
            append_event(tx, name, "/namespaces/update", {"name": name, "labels": current})
        return Namespace(name, current)

    def delete(self, name: str) -> None:
        """Remove an empty namespace; FailedPrecondition naming what it still holds."""
        validate_namespace(name)
        with self.db.update() as tx:
            if not tx.execute("SELECT 1 FROM namespaces WHERE name = ?", (name,)).fetchone():
                raise errors.NotFound(f"namespace {name!r} not found")
            left = []
            for table, one, many in _HOLDINGS:
                count = tx.execute(f"SELECT count(*) FROM {table} WHERE namespace = ?", (name,)).fetchone()[0]
                if count:
                    left.append(f"{count} {one if count == 1 else many}")
            if left:
                raise errors.FailedPrecondition(f"namespace {name!r} is not empty: {', '.join(left)}")
            tx.execute("DELETE FROM namespaces WHERE name = ?", (name,))
            append_event(tx, name, "/namespaces/delete", {"name": name})
