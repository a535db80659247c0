"""The seams the garbage collector and shell completion go through (issue 16 section 3), without root:
the content store's and the snapshot backends' walk/delete methods, overlay's reading of its own mount
options, the collector's metadata transaction, and completion's read-only lookups."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from ctrpy.runtime import errors
from ctrpy.runtime.content.local import LocalStore
from ctrpy.runtime.metadata import DB, lookup
from ctrpy.runtime.metadata import gc as gc_tables
from ctrpy.runtime.snapshots import Kind
from ctrpy.runtime.snapshots.native import NativeBackend
from ctrpy.runtime.snapshots.overlay import OverlayBackend

DIGEST = "sha256:" + "ab" * 32


def test_blobs_are_walked_trashed_and_freed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "content")
    assert list(store.walk_blobs()) == []  # no blobs/ directory yet
    (tmp_path / "content" / "blobs" / "sha256").mkdir(parents=True)
    store.blob_path(DIGEST).write_bytes(b"x" * 10)
    (tmp_path / "content" / "blobs" / "sha256" / "not-a-digest").write_bytes(b"y")
    walked = list(store.walk_blobs())
    assert walked == [(DIGEST, store.blob_path(DIGEST), 10),
                      ("sha256:not-a-digest", tmp_path / "content" / "blobs" / "sha256" / "not-a-digest", 1)]
    store.trash_blob(DIGEST)
    store.trash_blob("sha256:not-a-digest")
    store.trash_blob(DIGEST)  # gone already: nothing to do
    assert list(store.walk_blobs()) == [] and not store.has_blob(DIGEST)
    assert sorted(os.listdir(store.trash)) == ["sha256-" + "ab" * 32, "sha256-not-a-digest"]
    store.empty_trash()
    assert os.listdir(store.trash) == []


@pytest.mark.parametrize("name", ["../x", "sha256:../../etc", ".gc-trash:x", "nocolon", "sha256:"])
def test_trash_refuses_names_outside_blobs(tmp_path: Path, name: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        LocalStore(tmp_path).trash_blob(name)


def test_ingests_are_walked_with_their_key_and_lock(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "content")
    writer = store.open_ingest("default/layer-1", total=None, wait=False)
    try:
        (entry,) = list(store.walk_ingests())
        assert entry.key == "default/layer-1" and entry.path == store.ingest_dir("default/layer-1")
        assert store.ingest_locked(entry.path)  # its writer holds the flock
    finally:
        writer.close()
    (entry,) = list(store.walk_ingests())
    assert not store.ingest_locked(entry.path)
    with pytest.raises(errors.InvalidArgument):
        store.delete_ingest_dir(tmp_path)  # not an ingest directory of this store
    store.delete_ingest_dir(entry.path)
    assert list(store.walk_ingests()) == []


def test_an_ingest_locked_elsewhere_is_seen_as_locked(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    path = store.ingest / "orphan"
    path.mkdir(parents=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert store.ingest_locked(path)
    finally:
        os.close(fd)
    assert not store.ingest_locked(path)
    assert [e.key for e in store.walk_ingests()] == [""]  # no ref file: a writer killed before writing it


def test_backend_walks_its_snapshot_directories(tmp_path: Path) -> None:
    backend = NativeBackend(tmp_path / "snapshots" / "native")
    assert list(backend.walk()) == []
    backend.create(3, [], Kind.ACTIVE)
    backend.create(12, [], Kind.ACTIVE)
    (backend.fs(12) / "file").write_bytes(b"z" * 8192)
    (backend.base / "not-an-id").mkdir()
    assert list(backend.walk()) == [3, 12]
    assert backend.disk_usage(12) >= backend.disk_usage(3) + 8192 > 8192
    assert backend.ids_in_mount("overlay", f"upperdir={backend.fs(3)}") == (set(), set())  # binds only
    backend.remove(3)
    assert list(backend.walk()) == [12]


def test_overlay_names_the_snapshots_its_mounts_use(tmp_path: Path) -> None:
    backend = OverlayBackend(tmp_path / "snapshots" / "overlayfs")
    base = backend.base
    opts = f"rw,lowerdir={base}/4/fs:{base}/2/fs,upperdir={base}/7/fs,workdir={base}/7/work,index=off"
    assert backend.ids_in_mount("overlay", opts) == ({7}, {2, 4, 7})
    # ctrpy.runtime.mount shortens long lowerdir lists to paths relative to the base.
    assert backend.ids_in_mount("overlay", "ro,lowerdir=9/fs:8/fs") == (set(), {8, 9})
    # Another snapshotter's directories, and other file systems, are not ours.
    assert backend.ids_in_mount("overlay", f"lowerdir={tmp_path}/snapshots/native/snapshots/5/fs") == (set(), set())
    assert backend.ids_in_mount("ext4", "rw,relatime") == (set(), set())


def test_collector_transaction_reads_and_deletes_rows(tmp_path: Path) -> None:
    db = DB(tmp_path)
    with db.update() as tx:  # a lease and a blob as their stores would write them
        tx.execute("INSERT INTO namespaces (name, labels, created_at, updated_at) VALUES ('a', '{}', '', '')")
        tx.execute("INSERT INTO leases (namespace, id, labels, created_at) VALUES ('a', 'l1', '{\"k\":\"v\"}', '')")
        tx.execute("INSERT INTO blobs (digest, size, created_at) VALUES (?, 5, '')", (DIGEST,))
    with gc_tables.transaction(db, write=False) as t:
        tables = t.load()
        assert [(r["namespace"], r["id"], gc_tables.labels_of(r["labels"])) for r in tables.leases] == \
            [("a", "l1", {"k": "v"})]
        assert tables.blobs == {DIGEST: 5} and t.blob_digests() == {DIGEST}
    with gc_tables.transaction(db, write=True) as t:
        t.delete_lease("a", "l1")
        t.delete_blob(DIGEST)
    with gc_tables.transaction(db, write=False) as t:
        tables = t.load()
        assert tables.leases == [] and tables.blobs == {}
    assert gc_tables.labels_of("not json") == {} and gc_tables.labels_of(None) == {}
    db.close()


def test_completion_lookups_read_without_creating(tmp_path: Path) -> None:
    assert lookup.names(str(tmp_path), "image", "default") == []
    assert not (tmp_path / lookup.DB_FILENAME).exists()
    db = DB(tmp_path)
    with db.update() as tx:
        for ns in ("default", "other"):
            tx.execute("INSERT INTO namespaces (name, labels, created_at, updated_at) VALUES (?, '{}', '', '')", (ns,))
    db.close()
    assert lookup.names(str(tmp_path), "namespace", "ignored") == ["default", "other"]
    assert lookup.names(str(tmp_path), "lease", "default") == []
    assert lookup.container_names(str(tmp_path), "default") == {}
    assert set(lookup.KINDS) == {"image", "container", "snapshot", "namespace", "network", "lease", "content"}
