"""Leases: short-lived references that keep content, snapshots and ingests from garbage collection while
work is in progress (a pull, an unpack), as in containerd's leases.Manager.

A lease with an expiry carries the label `containerd.io/gc.expire` (RFC 3339); once past it, GC ignores the
lease. Resource types follow containerd: "content" (a digest), "snapshots/<snapshotter>" (a key),
"ingests" (a ref).
"""

from __future__ import annotations

import builtins
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ctrpy.runtime import errors, identifiers, timefmt
from ctrpy.runtime import filters as _filters
from ctrpy.runtime.metadata import dump_labels, ensure_namespace, load_json, now, validate_namespace

EXPIRE_LABEL = "containerd.io/gc.expire"
FLAT_LABEL = "containerd.io/gc.flat"



@dataclass
class Lease:
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: str = ""

    @property
    def expires_at(self) -> str | None:
        return self.labels.get(EXPIRE_LABEL)

    def expired(self, at: float | None = None) -> bool:
        stamp = self.expires_at
        if not stamp:
            return False
        return _parse_rfc3339(stamp) <= (time.time() if at is None else at)


@dataclass(frozen=True)
class Resource:
    type: str
    id: str


def _parse_rfc3339(stamp: str) -> float:
    try:
        return timefmt.parse(stamp)
    except ValueError:
        raise errors.InvalidArgument(f"invalid {EXPIRE_LABEL} time {stamp!r}") from None


def _validate_resource(rtype: str, resource: str) -> None:
    if rtype == "content":
        from ctrpy.runtime.content import parse_digest

        parse_digest(resource)
    elif rtype.startswith("snapshots/") and len(rtype) > len("snapshots/"):
        pass
    elif rtype != "ingests":
        raise errors.InvalidArgument(
            f"invalid lease resource type {rtype!r}: expected content, ingests or snapshots/<snapshotter>"
        )
    if not resource:
        raise errors.InvalidArgument("lease resource id must not be empty")


class LeaseManager:
    """One namespace's leases."""

    def __init__(self, db: Any, namespace: str) -> None:
        self.db = db
        self.namespace = validate_namespace(namespace)

    def create(self, id: str | None = None, labels: dict[str, str] | None = None,
               expire: float | None = None) -> Lease:
        """Create a lease; `expire` is a lifetime in seconds (sets containerd.io/gc.expire)."""
        lease_id = id or f"ctrpy-{time.time_ns()}-{os.urandom(4).hex()}"
        identifiers.validate(lease_id, "lease id")
        labels = dict(labels or {})
        if expire is not None:
            if expire <= 0:
                raise errors.InvalidArgument(f"lease expiry must be positive, not {expire}")
            labels[EXPIRE_LABEL] = timefmt.format(time.time() + expire)
        elif EXPIRE_LABEL in labels:
            _parse_rfc3339(labels[EXPIRE_LABEL])
        stamp = now()
        with self.db.update() as tx:
            ensure_namespace(tx, self.namespace)
            if tx.execute("SELECT 1 FROM leases WHERE namespace = ? AND id = ?", (self.namespace, lease_id)).fetchone():
                raise errors.AlreadyExists(f"lease {lease_id!r} already exists")
            tx.execute(
                "INSERT INTO leases (namespace, id, labels, created_at) VALUES (?, ?, ?, ?)",
                (self.namespace, lease_id, dump_labels(labels), stamp),
            )
        return Lease(lease_id, labels, stamp)

    def get(self, id: str) -> Lease:
        with self.db.view() as tx:
            row = tx.execute("SELECT * FROM leases WHERE namespace = ? AND id = ?", (self.namespace, id)).fetchone()
        if row is None:
            raise errors.NotFound(f"lease {id!r} not found in namespace {self.namespace!r}")
        return Lease(row["id"], dict(load_json(row["labels"])), row["created_at"])

    def list(self, filters: list[str] | None = None) -> list[Lease]:
        """Leases sorted by creation; filter fields: id, labels.<key>."""
        flt = _filters.parse(filters)
        with self.db.view() as tx:
            rows = tx.execute(
                "SELECT * FROM leases WHERE namespace = ? ORDER BY created_at, id", (self.namespace,)
            ).fetchall()
        leases = [Lease(r["id"], dict(load_json(r["labels"])), r["created_at"]) for r in rows]
        return [le for le in leases if flt.match(_filters.object_adaptor({"id": le.id}, le.labels))]

    def delete(self, id: str) -> None:
        """Delete the lease; its resources lose this protection (GC may then collect them)."""
        with self.db.update() as tx:
            cur = tx.execute("DELETE FROM leases WHERE namespace = ? AND id = ?", (self.namespace, id))
            if cur.rowcount == 0:
                raise errors.NotFound(f"lease {id!r} not found in namespace {self.namespace!r}")

    def add_resource(self, id: str, type: str, resource: str) -> None:
        _validate_resource(type, resource)
        with self.db.update() as tx:
            if not tx.execute("SELECT 1 FROM leases WHERE namespace = ? AND id = ?", (self.namespace, id)).fetchone():
                raise errors.NotFound(f"lease {id!r} not found in namespace {self.namespace!r}")
            tx.execute(
                "INSERT OR IGNORE INTO lease_resources (namespace, lease_id, type, resource) VALUES (?, ?, ?, ?)",
                (self.namespace, id, type, resource),
            )

    def delete_resource(self, id: str, type: str, resource: str) -> None:
        with self.db.update() as tx:
            if not tx.execute("SELECT 1 FROM leases WHERE namespace = ? AND id = ?", (self.namespace, id)).fetchone():
                raise errors.NotFound(f"lease {id!r} not found in namespace {self.namespace!r}")
            tx.execute(
                "DELETE FROM lease_resources WHERE namespace = ? AND lease_id = ? AND type = ? AND resource = ?",
                (self.namespace, id, type, resource),
            )

    def list_resources(self, id: str) -> builtins.list[Resource]:
        with self.db.view() as tx:
            if not tx.execute("SELECT 1 FROM leases WHERE namespace = ? AND id = ?", (self.namespace, id)).fetchone():
                raise errors.NotFound(f"lease {id!r} not found in namespace {self.namespace!r}")
            rows = tx.execute(
                "SELECT type, resource FROM lease_resources WHERE namespace = ? AND lease_id = ? "
                "ORDER BY type, resource",
                (self.namespace, id),
            ).fetchall()
        return [Resource(r["type"], r["resource"]) for r in rows]

    @contextmanager
    def lease(self, expire: float | None = 86400, labels: dict[str, str] | None = None,
              id: str | None = None) -> Iterator[str]:
        """`with manager.lease() as lease_id:` protect work in progress; the lease is deleted on exit."""
        created = self.create(id=id, labels=labels, expire=expire)
        try:
            yield created.id
        finally:
            try:
                self.delete(created.id)
            except errors.NotFound:
                pass
