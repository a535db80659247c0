"""Garbage collection: mark and sweep over labels and leases, like containerd's core/metadata/gc.go.

Deleting an image, a container or a lease only removes its record. What the record held (blobs, snapshots,
ingests) is reclaimed here, across ALL namespaces at once:

    mark   roots:  images -> their target content
                   containers -> their rootfs snapshot and their image
                   leases not yet expired (containerd.io/gc.expire) -> their resources
                     (content, snapshots/<snapshotter>, ingests; a containerd.io/gc.flat lease keeps only
                     the resources themselves, not what they reference)
                   content and snapshots labelled containerd.io/gc.root
                   active and view snapshots in use: mounted outside ROOT/tmpmounts, or created less than
                     ACTIVE_GRACE seconds ago (the moment between `prepare` and the container record)
                   ingests being written (their flock is held) or not yet expired
           refs:   containerd.io/gc.ref.content[.<anything>]      -> content (same namespace)
                   containerd.io/gc.ref.snapshot.<sn>[/<anything>] -> snapshot in snapshotter <sn>
                   a snapshot's parent
    sweep  expired leases, unmarked content rows, unmarked snapshot rows, unmarked ingests; then a blob
           file once no namespace holds it, a snapshot directory once no namespace's row points at it,
           stale mounts below ROOT/tmpmounts left by killed unpacks, and files that no row names at all
           (left by a crash between a file operation and its transaction).

The collector holds no SQL and knows no directory layout: it reads the tables and deletes rows through
ctrpy.runtime.metadata.gc, and sweeps files through the stores' own methods (the content store's walk_blobs,
trash_blob, walk_ingests; each snapshot backend's walk, remove, and ids_in_mount for the mounts that show it;
unpack.TempMounts' holds, release, leftovers and remove for what killed unpacks left in ROOT/tmpmounts).

Marking and every metadata delete happen in one write transaction, so nothing can gain a reference to an
object while it is being judged. Files go after that transaction commits (containerd's order: a crash leaves
an unreferenced file, never a row without its file). A blob leaves blobs/ under a second write lock, after
checking that no writer re-added its digest meanwhile, by a rename into content/.gc-trash; the slow unlink
(block freeing) follows unlocked. Snapshot directory ids are never reused once committed (AUTOINCREMENT), so
directories whose rows are gone are removed unlocked; directories without any row are removed under the lock.

An ingest without an explicit expiry expires INGEST_EXPIRY after its last write (containerd's clients hold
ingests in a 24 h lease); a pull or an unpack that was killed is thus reclaimed once its lease has expired.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors
from ctrpy.runtime.metadata.gc import Row, Transaction, labels_of, transaction

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client
    from ctrpy.runtime.config import Config
    from ctrpy.runtime.metadata.db import DB
    from ctrpy.runtime.snapshots.backend import Backend

GC_ROOT = "containerd.io/gc.root"
GC_REF_CONTENT = "containerd.io/gc.ref.content"
GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."
GC_EXPIRE = "containerd.io/gc.expire"
GC_FLAT = "containerd.io/gc.flat"

# An unreferenced active/view snapshot younger than this is left alone: `containers create` prepares the
# rootfs snapshot before it writes the container record that references it.
ACTIVE_GRACE = 300.0
# An ingest with no expiry of its own expires this long after its last write.
INGEST_EXPIRY = 86400.0

Node = tuple[str, ...]  # ("content", ns, digest) | ("snapshot", ns, snapshotter, key) | ("ingest", ns, ref)


@dataclass
class Removed:
    """One thing the collector removed (or would remove, in a dry run)."""

    type: str  # lease | content | blob | snapshot | snapshot-dir | ingest | mount | orphan | task
    namespace: str
    id: str
    size: int = 0

    @property
    def frees(self) -> bool:
        """Whether removing it freed disk space (rows only free their share of a blob or directory)."""
        return self.type in _FREEING

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "namespace": self.namespace, "id": self.id, "size": self.size}


_FREEING = ("blob", "snapshot-dir", "ingest", "orphan")


@dataclass
class GCReport:
    """What a collection removed, the bytes it freed and how long it took."""

    dry_run: bool = False
    removed: list[Removed] = field(default_factory=list)
    kept: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return sum(r.size for r in self.removed if r.frees)

    def of_type(self, kind: str) -> list[Removed]:
        return [r for r in self.removed if r.type == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "removed": [r.to_dict() for r in self.removed],
            "bytes_freed": self.bytes_freed,
            "kept": self.kept,
            "seconds": round(self.seconds, 4),
            "warnings": list(self.warnings),
        }


# ---------------------------------------------------------------------------------------------- helpers

def _epoch(stamp: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 UTC stamp; None when absent or unreadable."""
    if not stamp:
        return None
    from ctrpy.runtime import timefmt

    try:
        return timefmt.parse(stamp)
    except ValueError:
        return None


def _expired(labels: dict[str, str], at: float) -> bool:
    """True once containerd.io/gc.expire lies in the past; an unreadable stamp never expires (keep, don't guess)."""
    when = _epoch(labels.get(GC_EXPIRE))
    return when is not None and when <= at


def _creator_gone(labels: dict[str, str]) -> bool:
    """A container rootfs snapshot whose creating command (ctrpy.io/creator: pid and start time) is gone."""
    from ctrpy.runtime.containers import CREATOR_LABEL
    from ctrpy.runtime.linux.proc import proc_alive

    creator = labels.get(CREATOR_LABEL)
    if not creator:
        return False

    return not proc_alive(creator)


def label_refs(namespace: str, labels: dict[str, str]) -> Iterator[Node]:
    """The nodes an object's gc.ref labels point at."""
    for key, value in labels.items():
        if not value:
            continue
        if key == GC_REF_CONTENT or key.startswith(GC_REF_CONTENT + "."):
            yield ("content", namespace, value)
        elif key.startswith(GC_REF_SNAPSHOT):
            snapshotter = key[len(GC_REF_SNAPSHOT):].split("/", 1)[0]
            if snapshotter:
                yield ("snapshot", namespace, snapshotter, value)


# ---------------------------------------------------------------------------------------------- mounts

@dataclass
class _Mount:
    point: str
    owned: set[tuple[str, int]]       # snapshot dirs written through this mount (upperdir, bind source)
    referenced: set[tuple[str, int]]  # every snapshot dir it shows (owned plus overlay lowerdirs)


def _scan_mounts(backends: dict[str, Backend]) -> list[_Mount]:
    """Mounts (of this mount namespace) that show a snapshot directory of one of `backends`.

    Each backend reads the mounts that name its directories in their options (overlay's upperdir and
    lowerdirs); bind mounts are recognised here by device and by their root within that device, as
    /proc/self/mountinfo gives them.
    """
    from ctrpy.runtime.linux import mountinfo

    try:
        parsed = [(m.device, m.root, m.mount_point, m.fstype, m.super_options) for m in mountinfo.read()]
    except OSError:
        return []

    # Where each backend's directory lives: (device, its path relative to that device's root).
    located: dict[str, tuple[str, str]] = {}
    for sn, backend in backends.items():
        real = os.path.realpath(backend.base)
        best = None
        for dev, root, point, _fstype, _opts in parsed:
            if real == point or real.startswith(point.rstrip("/") + "/"):
                if best is None or len(point) >= len(best[2]):
                    best = (dev, root, point)
        if best is not None:
            dev, root, point = best
            located[sn] = (dev, os.path.normpath(os.path.join(root, os.path.relpath(real, point))))

    out = []
    for dev, root, point, fstype, opts in parsed:
        owned: set[tuple[str, int]] = set()
        referenced: set[tuple[str, int]] = set()
        for sn, backend in backends.items():
            written, shown = backend.ids_in_mount(fstype, opts)
            owned.update((sn, sid) for sid in written)
            referenced.update((sn, sid) for sid in shown)
        if not referenced:
            for sn, (base_dev, base_root) in located.items():
                if dev == base_dev and root.startswith(base_root.rstrip("/") + "/"):
                    head = root[len(base_root.rstrip("/")) + 1:].split("/", 1)[0]
                    if head.isdigit():
                        owned.add((sn, int(head)))
                        referenced.add((sn, int(head)))
        if referenced:
            out.append(_Mount(point, owned, referenced))
    return out


# ---------------------------------------------------------------------------------------------- collector

class _Collector:
    def __init__(self, db: DB, root: Path, config: Config | None, at: float) -> None:
        self.db = db
        self.root = Path(root).absolute()
        self.config = config
        self.at = at
        from ctrpy.runtime.unpack import TempMounts

        self.tmpmounts = TempMounts(self.root)
        from ctrpy.runtime.content.local import LocalStore

        self.local = LocalStore(self.root / "content")
        self._backends: dict[str, Backend | None] = {}

    def backend(self, name: str) -> Backend | None:
        """The backend of snapshotter `name` (directories only), or None for an unknown snapshotter."""
        if name in self._backends:
            return self._backends[name]
        from ctrpy.runtime import plugins
        from ctrpy.runtime.snapshots import open_backend

        backend: Backend | None = None
        if name in plugins.ids(plugins.PluginType.SNAPSHOTTER):
            backend = open_backend(name, self.root, "", self.config)
        self._backends[name] = backend
        return backend

    def backends(self) -> dict[str, Backend]:
        """Every snapshotter a row names or the registry knows, with its backend."""
        from ctrpy.runtime import plugins

        names = ({k[1] for k in self.snapshots} | {str(r["snapshotter"]) for r in self.backend_rows.values()}
                 | set(plugins.ids(plugins.PluginType.SNAPSHOTTER)))
        found = {sn: self.backend(sn) for sn in sorted(names)}
        return {sn: b for sn, b in found.items() if b is not None}

    # -- loading -----------------------------------------------------------------------------------------

    def load(self, tx: Transaction) -> None:
        t = tx.load()
        self.content = t.content
        self.blobs = t.blobs
        self.snapshots = t.snapshots
        self.backend_rows = t.backend_rows
        self.images = t.images
        self.containers = t.containers
        self.leases = t.leases
        self.resources = t.resources
        self.ingests = t.ingests

    # -- marking -----------------------------------------------------------------------------------------

    def exists(self, node: Node) -> bool:
        kind = node[0]
        if kind == "content":
            return (node[1], node[2]) in self.content
        if kind == "snapshot":
            return (node[1], node[2], node[3]) in self.snapshots
        return (node[1], node[2]) in self.ingests

    def refs(self, node: Node) -> Iterable[Node]:
        if node[0] == "content":
            yield from label_refs(node[1], self.content[(node[1], node[2])])
        elif node[0] == "snapshot":
            row = self.snapshots[(node[1], node[2], node[3])]
            if row["parent"]:
                yield ("snapshot", node[1], node[2], row["parent"])
            yield from label_refs(node[1], labels_of(row["labels"]))

    def mark(self, roots: Iterable[Node], flat: Iterable[Node] = ()) -> None:
        """Add roots to the live set and follow references from them (flat roots are kept, not followed)."""
        for node in flat:
            if self.exists(node):
                self.marked.add(node)
        queue = deque(n for n in roots if self.exists(n))
        while queue:
            node = queue.popleft()
            self.marked.add(node)
            if node in self.explored:
                continue
            self.explored.add(node)
            for ref in self.refs(node):
                if ref not in self.explored and self.exists(ref):
                    queue.append(ref)

    def _parent_id(self, sid: int) -> int | None:
        row = self.backend_rows.get(sid)
        return None if row is None or row["parent_id"] is None else int(row["parent_id"])

    def by_backend(self, ids: Iterable[tuple[str, int]]) -> list[Node]:
        wanted = set(ids)
        return [("snapshot", ns, sn, key) for (ns, sn, key), row in self.snapshots.items()
                if (sn, int(row["backend_id"])) in wanted]

    def roots(self) -> tuple[list[Node], list[Node]]:
        roots: list[Node] = []
        flat: list[Node] = []
        image_targets = {}
        for r in self.images:
            labels = labels_of(r["labels"])
            if _expired(labels, self.at):
                continue
            image_targets[(r["namespace"], r["name"])] = r["target_digest"]
            roots.append(("content", r["namespace"], r["target_digest"]))
            roots.extend(label_refs(r["namespace"], labels))
        for r in self.containers:
            ns = r["namespace"]
            if r["snapshot_key"]:
                roots.append(("snapshot", ns, r["snapshotter"], r["snapshot_key"]))
            if r["image"] and (ns, r["image"]) in image_targets:
                roots.append(("content", ns, image_targets[(ns, r["image"])]))
            roots.extend(label_refs(ns, labels_of(r["labels"])))
        self.expired_leases = []
        for r in self.leases:
            labels = labels_of(r["labels"])
            if _expired(labels, self.at):
                self.expired_leases.append((r["namespace"], r["id"]))
                continue
            target = flat if GC_FLAT in labels else roots
            for rtype, resource in self.resources.get((r["namespace"], r["id"]), []):
                if rtype == "content":
                    target.append(("content", r["namespace"], resource))
                elif rtype == "ingests":
                    target.append(("ingest", r["namespace"], resource))
                elif rtype.startswith("snapshots/"):
                    target.append(("snapshot", r["namespace"], rtype[len("snapshots/"):], resource))
        for (ns, digest), labels in self.content.items():
            if GC_ROOT in labels:
                roots.append(("content", ns, digest))
        for (ns, sn, key), row in self.snapshots.items():
            if GC_ROOT in labels_of(row["labels"]):
                roots.append(("snapshot", ns, sn, key))
            elif row["kind"] != "committed":
                created = _epoch(row["created_at"])
                if _creator_gone(labels_of(row["labels"])):
                    continue  # prepared by a `run`/`create` that was killed: no grace to wait for
                if created is None or self.at - created < ACTIVE_GRACE:
                    roots.append(("snapshot", ns, sn, key))
        for (ns, ref), row in self.ingests.items():
            if self.ingest_live(ns, ref, row):
                roots.append(("ingest", ns, ref))
        return roots, flat

    def ingest_live(self, ns: str, ref: str, row: Row) -> bool:
        path = self.local.ingest_dir(f"{ns}/{ref}")
        if self.local.ingest_locked(path):
            return True
        expires = _epoch(row["expires_at"])
        if expires is None:
            last = _epoch(row["updated_at"]) or 0.0
            status = self.local.ingest_status(f"{ns}/{ref}")
            if status is not None:
                last = max(last, _epoch(status["updated_at"]) or 0.0)
            expires = last + INGEST_EXPIRY
        return expires > self.at

    def mark_all(self) -> None:
        self.marked: set[Node] = set()
        self.explored: set[Node] = set()
        roots, flat = self.roots()
        self.mark(roots, flat)
        mounts = _scan_mounts(self.backends())
        outside = [m for m in mounts if not self.tmpmounts.holds(m.point)]
        # Anything mounted outside ROOT/tmpmounts is in use (a user's `snapshots mount`, a rootfs). A view
        # of one layer is a bind of its parent's directory: a mounted parent keeps its views too.
        shown = {id_ for m in outside for id_ in m.referenced}
        views: list[Node] = [("snapshot", ns, sn, key) for (ns, sn, key), row in self.snapshots.items()
                 if row["kind"] == "view" and (sn, self._parent_id(int(row["backend_id"]))) in shown]
        self.mark(self.by_backend(shown) + views)
        # A mount below ROOT/tmpmounts belongs to a live unpack while the snapshot it writes is still held
        # (by the unpack's lease); once that is gone it is the leftover of a killed process.
        inside = [m for m in mounts if m not in outside]
        while True:
            live_ids = {(sn, int(self.snapshots[(ns, sn, key)]["backend_id"]))
                        for (_kind, ns, sn, key) in (n for n in self.marked if n[0] == "snapshot")}
            # A mount that writes no snapshot shows only committed layers: not an unpack's, leave it be.
            kept = [m for m in inside if not m.owned or m.owned & live_ids]
            before = len(self.marked)
            self.mark(self.by_backend(id_ for m in kept for id_ in m.referenced))
            if len(self.marked) == before:
                break
        self.stale_mounts = [m.point for m in inside if m.owned and not (m.owned & live_ids)]
        self.stale_mounts.sort(key=len, reverse=True)

    # -- sweeping metadata ---------------------------------------------------------------------------------

    def sweep(self, tx: Transaction, report: GCReport, dry_run: bool) -> None:
        removed = report.removed
        for ns, lease_id in self.expired_leases:
            removed.append(Removed("lease", ns, lease_id))
            if not dry_run:
                tx.delete_lease(ns, lease_id)

        gone_content = sorted(k for k in self.content if ("content", *k) not in self.marked)
        held = {d for (ns, d) in self.content if ("content", ns, d) in self.marked}
        for ns, digest in gone_content:
            removed.append(Removed("content", ns, digest, self.blobs.get(digest, 0)))
            if not dry_run:
                tx.delete_content(ns, digest)
        self.gone_blobs = {d for d in self.blobs if d not in held}
        for digest in sorted(self.gone_blobs):
            removed.append(Removed("blob", "", digest, self.blobs[digest]))
            if not dry_run:
                tx.delete_blob(digest)

        gone_snaps = sorted(k for k in self.snapshots if ("snapshot", *k) not in self.marked)
        refcount: dict[int, int] = {}
        for (ns, sn, key), row in self.snapshots.items():
            if ("snapshot", ns, sn, key) in self.marked:
                refcount[int(row["backend_id"])] = refcount.get(int(row["backend_id"]), 0) + 1
        for ns, sn, key in gone_snaps:
            removed.append(Removed("snapshot", ns, f"{sn}/{key}"))
            if not dry_run:
                tx.delete_snapshot(ns, sn, key)
        # Backend directories go with their last row, children before parents (the parent_id foreign key).
        children: dict[int, int] = {}
        for row in self.backend_rows.values():
            if row["parent_id"] is not None:
                children[int(row["parent_id"])] = children.get(int(row["parent_id"]), 0) + 1
        self.gone_dirs: list[tuple[str, int]] = []
        pending = {sid for sid in self.backend_rows if not refcount.get(sid)}
        progress = True
        while progress:
            progress = False
            for sid in sorted(pending, reverse=True):
                if children.get(sid):
                    continue
                pending.discard(sid)
                progress = True
                parent = self.backend_rows[sid]["parent_id"]
                if parent is not None:
                    children[int(parent)] -= 1
                self.gone_dirs.append((str(self.backend_rows[sid]["snapshotter"]), sid))
                if not dry_run:
                    tx.delete_backend_snapshot(sid)

        self.gone_ingests = sorted(k for k in self.ingests if ("ingest", *k) not in self.marked)
        for ns, ref in self.gone_ingests:
            status = self.local.ingest_status(f"{ns}/{ref}")
            removed.append(Removed("ingest", ns, ref, int(status["offset"]) if status else 0))
            if not dry_run:
                tx.delete_ingest(ns, ref)

    # -- sweeping files ------------------------------------------------------------------------------------

    def unmount_stale(self, report: GCReport, dry_run: bool) -> None:
        for point in self.stale_mounts:
            report.removed.append(Removed("mount", "", point))
            if dry_run:
                continue
            try:
                self.tmpmounts.release(point)
            except (OSError, errors.CtrpyError) as exc:
                report.warnings.append(f"cannot remove stale mount {point}: {exc}")

    def remove_files(self, report: GCReport, dry_run: bool) -> None:
        """Blobs, ingest dirs and orphans, under the write lock (see the module docstring)."""
        with transaction(self.db, write=not dry_run) as tx:
            known_blobs = tx.blob_digests()
            if not dry_run:
                for digest in self.gone_blobs:
                    if digest not in known_blobs:
                        self.local.trash_blob(digest)
            for name, path, size in self.local.walk_blobs():
                if name in known_blobs or name in self.gone_blobs:
                    continue
                report.removed.append(Removed("orphan", "", str(path), size))
                if not dry_run:
                    self.local.trash_blob(name)
            rows = tx.ingest_keys()
            for ns, ref in self.gone_ingests:
                if not dry_run and (ns, ref) not in rows:
                    self._remove_ingest(f"{ns}/{ref}", report)
            self._orphan_ingests(rows, report, dry_run)
            known_ids = tx.backend_ids()
            gone = set(self.gone_dirs)
            for sn, backend in self.backends().items():
                for sid in backend.walk():
                    if (sn, sid) in known_ids or (sn, sid) in gone:
                        continue
                    # Inside the write lock: an id whose creating transaction rolled back may be reused.
                    report.removed.append(Removed("orphan", "", str(backend.dir(sid)), backend.disk_usage(sid)))
                    if not dry_run:
                        self._remove_dir(backend, sid, report)
        stale = set(self.stale_mounts)
        for path in self.tmpmounts.leftovers(idle_since=self.at - ACTIVE_GRACE):
            if str(path) in stale:
                continue
            report.removed.append(Removed("orphan", "", str(path)))
            if not dry_run:
                try:
                    self.tmpmounts.remove(path)
                except OSError as exc:
                    report.warnings.append(f"cannot remove {path}: {exc}")

    def empty_trash(self) -> None:
        # Unlinking is what costs, so it runs unlocked, after the transaction.
        self.local.empty_trash()

    @staticmethod
    def _remove_dir(backend: Backend, sid: int, report: GCReport) -> None:
        try:
            backend.remove(sid)
        except errors.CtrpyError as exc:
            report.warnings.append(str(exc))

    def _remove_ingest(self, key: str, report: GCReport) -> bool:
        try:
            return self.local.remove_ingest(key, wait=False)
        except errors.Unavailable:
            return False  # a writer took it up again since marking: it is live
        except OSError as exc:
            report.warnings.append(f"cannot remove ingest {key!r}: {exc}")
            return False

    def _orphan_ingests(self, rows: set[tuple[str, str]], report: GCReport, dry_run: bool) -> None:
        """Ingest directories that no row names (a writer killed before its first transaction)."""
        gone = {f"{ns}/{ref}" for ns, ref in self.gone_ingests}
        for entry in self.local.walk_ingests():
            if entry.key in gone:
                continue
            ns, _, ref = entry.key.partition("/")
            if entry.key and (ns, ref) in rows:
                continue
            if self.at - entry.mtime < ACTIVE_GRACE or self.local.ingest_locked(entry.path):
                continue
            report.removed.append(Removed("orphan", ns, str(entry.path), self.local.ingest_usage(entry.path)))
            if not dry_run:
                self.local.delete_ingest_dir(entry.path)

    def remove_snapshot_dirs(self, report: GCReport, dry_run: bool) -> None:
        # Children were listed first, and their rows are already gone: no one can reach these any more.
        for sn, sid in self.gone_dirs:
            backend = self.backend(sn)
            size = backend.disk_usage(sid) if backend is not None else 0
            report.removed.append(Removed("snapshot-dir", "", f"{sn}/{sid}", size))
            if dry_run or backend is None:
                continue
            self._remove_dir(backend, sid, report)


def collect(client_or_db: Client | DB, *, dry_run: bool = False, at: float | None = None) -> GCReport:
    """Mark and sweep every namespace of the root; returns what was removed (see the module docstring).

    `client_or_db` is a Client (its config supplies snapshotter options) or a metadata DB. With `dry_run`
    nothing changes: the report lists what a real run would remove. `at` is the time leases and ingests are
    judged against (default: now).
    """
    started = time.monotonic()
    from ctrpy.runtime.client import Client

    client = client_or_db if isinstance(client_or_db, Client) else None
    db = client_or_db.db if isinstance(client_or_db, Client) else client_or_db
    config = client.config if client is not None else None
    repaired = [] if dry_run or client is None else _repair_tasks(client)
    collector = _Collector(db, db.root, config, time.time() if at is None else at)
    report = GCReport(dry_run=dry_run)
    report.removed.extend(repaired)
    with transaction(db, write=not dry_run) as tx:
        collector.load(tx)
        collector.mark_all()
        collector.sweep(tx, report, dry_run)
    report.kept = len(collector.marked)
    collector.unmount_stale(report, dry_run)
    collector.remove_files(report, dry_run)
    if not dry_run:
        collector.empty_trash()
    collector.remove_snapshot_dirs(report, dry_run)
    report.seconds = time.monotonic() - started
    return report


def _repair_tasks(client: Client) -> list[Removed]:
    """Task directories left half-made by a killed command (with their processes, cgroups and rootfs mount)."""
    out: list[Removed] = []
    base = Path(client.state)
    for ns_dir in sorted(base.iterdir()) if base.is_dir() else []:
        if ns_dir.is_dir() and ns_dir.name != "runtime":
            try:
                repaired = client.with_namespace(ns_dir.name).tasks.repair_all()
            except errors.CtrpyError:  # not a namespace directory
                continue
            out.extend(Removed("task", ns_dir.name, cid) for cid in repaired)
    return out


__all__ = ["ACTIVE_GRACE", "GCReport", "INGEST_EXPIRY", "Removed", "collect", "label_refs"]
