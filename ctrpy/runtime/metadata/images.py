"""The image store: names pointing at a target descriptor (containerd's v1/<ns>/images/<name>).

Shape shared by every store: get, list(filters), create, update(obj, fieldpaths), delete. Each change appends
its event (/images/create|update|delete) in the same transaction.
"""

from __future__ import annotations

import builtins
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from ctrpy.runtime import errors
from ctrpy.runtime import filters as _filters
from ctrpy.runtime.content import Descriptor, parse_digest
from ctrpy.runtime.metadata import append_event, dump_labels, ensure_namespace, load_json, now, validate_namespace


@dataclass
class Image:
    """A named image: its target is an index or a manifest in the content store."""

    name: str
    target: Descriptor
    labels: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""


def _validate(image: Image) -> None:
    if not image.name or any(ch.isspace() or ord(ch) < 32 for ch in image.name):
        raise errors.InvalidArgument(f"invalid image name {image.name!r}")
    if not isinstance(image.target, Descriptor):
        raise errors.InvalidArgument(f"image {image.name!r}: target must be a Descriptor")
    if not image.target.media_type:
        raise errors.InvalidArgument(f"image {image.name!r}: target has no media type")
    parse_digest(image.target.digest)
    if image.target.size < 0:
        raise errors.InvalidArgument(f"image {image.name!r}: target size must not be negative")


def _from_row(row: sqlite3.Row) -> Image:
    return Image(
        name=row["name"],
        target=Descriptor(row["target_media_type"], row["target_digest"], row["target_size"]),
        labels=dict(load_json(row["labels"])),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _adaptor(image: Image) -> _filters.Adaptor:
    fields = {
        "name": image.name,
        "target.digest": image.target.digest,
        "target.mediatype": image.target.media_type,
        "target.size": image.target.size,
    }

    def adapt(path: list[str]) -> str | None:
        if path[0] == "labels":
            return _filters.labels_adaptor(image.labels, path)
        value = fields.get(".".join(p.lower() if i else p for i, p in enumerate(path)))
        return None if value is None else str(value)

    return adapt


class ImageStore:
    """One namespace's images."""

    def __init__(self, db: Any, namespace: str) -> None:
        self.db = db
        self.namespace = validate_namespace(namespace)

    def _get(self, tx: sqlite3.Connection, name: str) -> Image | None:
        row = tx.execute("SELECT * FROM images WHERE namespace = ? AND name = ?", (self.namespace, name)).fetchone()
        return _from_row(row) if row else None

    def get(self, name: str) -> Image:
        with self.db.view() as tx:
            image = self._get(tx, name)
        if image is None:
            raise errors.NotFound(f"image {name!r} not found in namespace {self.namespace!r}")
        return image

    def list(self, filters: list[str] | None = None) -> list[Image]:
        """Images sorted by name; filter fields: name, target.digest, target.mediatype, labels.<key>."""
        flt = _filters.parse(filters)
        with self.db.view() as tx:
            rows = tx.execute("SELECT * FROM images WHERE namespace = ? ORDER BY name", (self.namespace,)).fetchall()
        return [img for img in map(_from_row, rows) if flt.match(_adaptor(img))]

    def _write(self, tx: sqlite3.Connection, image: Image, created_at: str, stamp: str) -> None:
        tx.execute(
            "INSERT OR REPLACE INTO images (namespace, name, target_media_type, target_digest, target_size, labels, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (self.namespace, image.name, image.target.media_type, image.target.digest, image.target.size,
             dump_labels(image.labels), created_at, stamp),
        )

    def create(self, image: Image) -> Image:
        _validate(image)
        stamp = now()
        with self.db.update() as tx:
            ensure_namespace(tx, self.namespace)
            if self._get(tx, image.name) is not None:
                raise errors.AlreadyExists(f"image {image.name!r} already exists in namespace {self.namespace!r}")
            self._write(tx, image, stamp, stamp)
            append_event(tx, self.namespace, "/images/create", {"name": image.name, "labels": image.labels})
            created = self._get(tx, image.name)
        assert created is not None
        return created

    def update(self, image: Image, fieldpaths: builtins.list[str] | None = None) -> Image:
        """Replace target and labels, or only the named fields: "labels", "labels.<key>", "target"."""
        stamp = now()
        with self.db.update() as tx:
            current = self._get(tx, image.name)
            if current is None:
                raise errors.NotFound(f"image {image.name!r} not found in namespace {self.namespace!r}")
            updated = self._apply(current, image, fieldpaths)
            _validate(updated)
            self._write(tx, updated, current.created_at, stamp)
            append_event(tx, self.namespace, "/images/update", {"name": image.name, "labels": updated.labels})
            result = self._get(tx, image.name)
        assert result is not None
        return result

    @staticmethod
    def _apply(current: Image, new: Image, fieldpaths: builtins.list[str] | None) -> Image:
        if not fieldpaths:
            return Image(current.name, new.target, dict(new.labels))
        target, labels = current.target, dict(current.labels)
        for path in fieldpaths:
            if path == "labels":
                labels = dict(new.labels)
            elif path.startswith("labels."):
                key = path[len("labels."):]
                if new.labels.get(key):
                    labels[key] = new.labels[key]
                else:
                    labels.pop(key, None)
            elif path == "target":
                target = new.target
            elif path == "annotations":
                continue  # annotations live on the target descriptor, which the row does not keep
            else:
                raise errors.InvalidArgument(f"cannot update {path!r} field on image {current.name!r}")
        return Image(current.name, target, labels)

    def upsert(self, image: Image) -> Image:
        """Create the image, or point an existing one at the new target and labels (pull, import, tag -f)."""
        _validate(image)
        stamp = now()
        with self.db.update() as tx:
            ensure_namespace(tx, self.namespace)
            current = self._get(tx, image.name)
            self._write(tx, image, current.created_at if current else stamp, stamp)
            topic = "/images/update" if current else "/images/create"
            append_event(tx, self.namespace, topic, {"name": image.name, "labels": image.labels})
            result = self._get(tx, image.name)
        assert result is not None
        return result

    def delete(self, name: str) -> None:
        with self.db.update() as tx:
            cur = tx.execute("DELETE FROM images WHERE namespace = ? AND name = ?", (self.namespace, name))
            if cur.rowcount == 0:
                raise errors.NotFound(f"image {name!r} not found in namespace {self.namespace!r}")
            append_event(tx, self.namespace, "/images/delete", {"name": name})
