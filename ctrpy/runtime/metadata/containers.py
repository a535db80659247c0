"""The container store: metadata of containers (containerd's v1/<ns>/containers/<id>), no processes.

get / list(filters) / create / update(obj, fieldpaths) / delete; events /containers/create|update|delete in
the same transaction. As in containerd, snapshotter and runtime name are immutable after create.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ctrpy.runtime import errors, identifiers
from ctrpy.runtime import filters as _filters
from ctrpy.runtime.metadata import append_event, dump_labels, ensure_namespace, load_json, now, validate_namespace



@dataclass
class Container:
    """A container record: what to run (spec, image, rootfs snapshot) and with which runtime."""

    id: str
    runtime_name: str
    image: str = ""
    snapshotter: str = ""
    snapshot_key: str = ""
    runtime_options: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""


def validate_id(container_id: str) -> str:
    """Container ids follow containerd's identifier rules."""
    return identifiers.validate(container_id, "container id")


def _from_row(row: sqlite3.Row) -> Container:
    return Container(
        id=row["id"],
        runtime_name=row["runtime_name"],
        image=row["image"],
        snapshotter=row["snapshotter"],
        snapshot_key=row["snapshot_key"],
        runtime_options=load_json(row["runtime_options"]),
        spec=load_json(row["spec"]),
        extensions=load_json(row["extensions"]),
        labels=dict(load_json(row["labels"])),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


@dataclass
class ContainerSummary:
    """A container's listing columns: everything but the JSON documents (spec, runtime options,
    extensions), which a table never prints and which cost most of a listing to parse."""

    id: str
    runtime_name: str
    image: str
    snapshotter: str
    snapshot_key: str
    labels: dict[str, str]
    created_at: str
    updated_at: str


_SUMMARY_COLUMNS = "id, runtime_name, image, snapshotter, snapshot_key, labels, created_at, updated_at"


class ContainerView(Container):
    """A container record holding only some paths of its spec and extensions (ContainerStore.views), for
    listings. Read-only: update() refuses it, since writing it back would drop everything it left out."""


def _json_path(path: Sequence[str]) -> str:
    if not path or any('"' in key for key in path):
        raise errors.InvalidArgument(f"invalid document path {list(path)!r}")
    return "$" + "".join(f'."{key}"' for key in path)


def _set_path(doc: dict[str, Any], path: Sequence[str], value: Any) -> None:
    for key in path[:-1]:
        doc = doc.setdefault(key, {})
    doc[path[-1]] = value


def _adaptor(c: Container | ContainerSummary) -> _filters.Adaptor:
    fields = {"id": c.id, "image": c.image, "snapshotter": c.snapshotter, "snapshotkey": c.snapshot_key,
              "runtime": c.runtime_name, "runtime.name": c.runtime_name}

    def adapt(path: list[str]) -> str | None:
        if path[0] == "labels":
            return _filters.labels_adaptor(c.labels, path)
        return fields.get(".".join(path).lower())

    return adapt


def _dump(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise errors.InvalidArgument(f"container {what} is not JSON-serialisable: {exc}") from None


class ContainerStore:
    """One namespace's containers."""

    def __init__(self, db: Any, namespace: str) -> None:
        self.db = db
        self.namespace = validate_namespace(namespace)

    def _get(self, tx: sqlite3.Connection, container_id: str) -> Container | None:
        row = tx.execute(
            "SELECT * FROM containers WHERE namespace = ? AND id = ?", (self.namespace, container_id)
        ).fetchone()
        return _from_row(row) if row else None

    def get(self, container_id: str) -> Container:
        with self.db.view() as tx:
            c = self._get(tx, container_id)
        if c is None:
            raise errors.NotFound(f"container {container_id!r} not found in namespace {self.namespace!r}")
        return c

    def list(self, filters: list[str] | None = None) -> list[Container]:
        """Containers sorted by id; filter fields: id, image, snapshotter, snapshotkey, runtime, labels.<key>."""
        flt = _filters.parse(filters)
        with self.db.view() as tx:
            rows = tx.execute("SELECT * FROM containers WHERE namespace = ? ORDER BY id", (self.namespace,)).fetchall()
        return [c for c in map(_from_row, rows) if flt.match(_adaptor(c))]

    def summaries(self, filters: builtins.list[str] | None = None) -> builtins.list[ContainerSummary]:
        """What listings print (`containers ls`, `ps`), sorted by id, with the same filters as list();
        only the listed columns are read, so the cost is linear in the rows and independent of spec size."""
        flt = _filters.parse(filters)
        with self.db.view() as tx:
            rows = tx.execute(f"SELECT {_SUMMARY_COLUMNS} FROM containers WHERE namespace = ? ORDER BY id",
                              (self.namespace,)).fetchall()
        out = []
        for row in rows:
            labels = row["labels"]
            summary = ContainerSummary(row["id"], row["runtime_name"], row["image"], row["snapshotter"],
                                       row["snapshot_key"], dict(load_json(labels)) if labels not in ("", "{}")
                                       else {}, row["created_at"], row["updated_at"])
            if not filters or flt.match(_adaptor(summary)):
                out.append(summary)
        return out

    def views(self, *, spec: Sequence[Sequence[str]] = (),
              extensions: Sequence[Sequence[str]] = ()) -> builtins.list[ContainerView]:
        """Containers sorted by id with only the parts of their JSON documents a listing reads (`ps`):
        `spec` and `extensions` are key paths (`("process", "args")`, `(DOCKER_EXT, "image")`). SQLite
        extracts them, so a row costs the same whatever the size of its spec; a missing path is left out."""
        paths = [("spec", p) for p in spec] + [("extensions", p) for p in extensions]
        extract = "".join(f", json_quote(json_extract({doc}, ?))" for doc, _ in paths)
        with self.db.view() as tx:
            rows = tx.execute(f"SELECT {_SUMMARY_COLUMNS}{extract} FROM containers WHERE namespace = ? ORDER BY id",
                              [_json_path(p) for _, p in paths] + [self.namespace]).fetchall()
        out = []
        width = len(_SUMMARY_COLUMNS.split(","))
        for row in rows:
            labels = row["labels"]
            view = ContainerView(id=row["id"], runtime_name=row["runtime_name"], image=row["image"],
                                 snapshotter=row["snapshotter"], snapshot_key=row["snapshot_key"],
                                 labels=dict(load_json(labels)) if labels not in ("", "{}") else {},
                                 created_at=row["created_at"], updated_at=row["updated_at"])
            for (doc, path), value in zip(paths, row[width:]):
                if value is not None and value != "null":
                    _set_path(view.spec if doc == "spec" else view.extensions, path, json.loads(value))
            out.append(view)
        return out

    def _write(self, tx: sqlite3.Connection, c: Container, created_at: str, stamp: str) -> None:
        tx.execute(
            "INSERT OR REPLACE INTO containers (namespace, id, image, snapshotter, snapshot_key, runtime_name, "
            "runtime_options, spec, extensions, labels, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (self.namespace, c.id, c.image, c.snapshotter, c.snapshot_key, c.runtime_name,
             _dump(c.runtime_options, "runtime options"), _dump(c.spec, "spec"),
             _dump(c.extensions, "extensions"), dump_labels(c.labels), created_at, stamp),
        )

    def create(self, container: Container) -> Container:
        validate_id(container.id)
        if isinstance(container, ContainerView):
            raise errors.InvalidArgument(f"container {container.id!r}: a listing view cannot be written back")
        if not container.runtime_name:
            raise errors.InvalidArgument(f"container {container.id!r}: runtime name must be set")
        stamp = now()
        with self.db.update() as tx:
            ensure_namespace(tx, self.namespace)
            if self._get(tx, container.id) is not None:
                raise errors.AlreadyExists(
                    f"container {container.id!r} already exists in namespace {self.namespace!r}"
                )
            self._write(tx, container, stamp, stamp)
            append_event(tx, self.namespace, "/containers/create",
                         {"id": container.id, "image": container.image, "runtime": container.runtime_name})
            created = self._get(tx, container.id)
        assert created is not None
        return created

    def update(self, container: Container, fieldpaths: builtins.list[str] | None = None) -> Container:
        """Full replace of the mutable fields, or only `fieldpaths`: labels, labels.<k>, spec, extensions,
        extensions.<k>, image, snapshotkey, runtime.options."""
        if isinstance(container, ContainerView):
            raise errors.InvalidArgument(f"container {container.id!r}: a listing view cannot be written back")
        stamp = now()
        with self.db.update() as tx:
            current = self._get(tx, container.id)
            if current is None:
                raise errors.NotFound(f"container {container.id!r} not found in namespace {self.namespace!r}")
            updated = self._apply(current, container, fieldpaths)
            self._write(tx, updated, current.created_at, stamp)
            append_event(tx, self.namespace, "/containers/update",
                         {"id": container.id, "image": updated.image, "labels": updated.labels})
            result = self._get(tx, container.id)
        assert result is not None
        return result

    @staticmethod
    def _apply(cur: Container, new: Container, fieldpaths: builtins.list[str] | None) -> Container:
        out = Container(**{k: v for k, v in cur.__dict__.items()})
        if not fieldpaths:
            if new.snapshotter != cur.snapshotter:
                raise errors.InvalidArgument(f"container {cur.id!r}: snapshotter is immutable")
            if new.runtime_name != cur.runtime_name:
                raise errors.InvalidArgument(f"container {cur.id!r}: runtime name is immutable")
            fieldpaths = ["labels", "spec", "extensions", "image", "snapshotkey"]
        for path in fieldpaths:
            if path == "labels":
                out.labels = dict(new.labels)
            elif path.startswith("labels."):
                key = path[len("labels."):]
                if new.labels.get(key):
                    out.labels = {**out.labels, key: new.labels[key]}
                else:
                    out.labels = {k: v for k, v in out.labels.items() if k != key}
            elif path == "spec":
                out.spec = new.spec
            elif path == "extensions":
                out.extensions = dict(new.extensions)
            elif path.startswith("extensions."):
                key = path[len("extensions."):]
                if key in new.extensions:
                    out.extensions = {**out.extensions, key: new.extensions[key]}
                else:
                    out.extensions = {k: v for k, v in out.extensions.items() if k != key}
            elif path == "image":
                out.image = new.image
            elif path == "snapshotkey":
                out.snapshot_key = new.snapshot_key
            elif path == "runtime.options":
                out.runtime_options = dict(new.runtime_options)
            else:
                raise errors.InvalidArgument(f"cannot update {path!r} field on container {cur.id!r}")
        return out

    def delete(self, container_id: str) -> None:
        with self.db.update() as tx:
            cur = tx.execute("DELETE FROM containers WHERE namespace = ? AND id = ?", (self.namespace, container_id))
            if cur.rowcount == 0:
                raise errors.NotFound(f"container {container_id!r} not found in namespace {self.namespace!r}")
            append_event(tx, self.namespace, "/containers/delete", {"id": container_id})
