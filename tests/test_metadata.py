"""The metadata database and its stores: durability, concurrency, migrations, images/containers/leases/events."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ctrpy.runtime import errors
from ctrpy.runtime.content import Descriptor
from ctrpy.runtime.metadata import DB, schema

CTRPY = str(Path(sys.executable).parent / "ctrpy")
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _env(dirs: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CTRPY_NAMESPACE", None)
    env["CTRPY_CONFIG"] = str(dirs.root.parent / "config.toml")
    return env


def test_database_settings(client: Any) -> None:
    with client.db.view() as tx:
        assert tx.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert tx.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert tx.execute("PRAGMA busy_timeout").fetchone()[0] >= 10_000
        assert tx.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION


# --- durability -------------------------------------------------------------------------------------------

_KILLED_WRITER = """
import sys
from ctrpy.runtime.metadata import DB
from ctrpy.runtime.metadata.namespaces import NamespaceStore
db = DB(sys.argv[1])
NamespaceStore(db).create("committed", {"state": "last"})
with db.update() as tx:
    # A small page cache makes SQLite spill uncommitted pages into the WAL while the transaction runs.
    tx.execute("PRAGMA cache_size = 4")
    tx.execute("INSERT INTO namespaces (name, labels, created_at, updated_at) VALUES ('uncommitted', '{}', 'x', 'x')")
    i = 0
    while True:
        tx.execute(
            "INSERT INTO events (timestamp, namespace, topic, payload) VALUES ('t', 'uncommitted', '/x', ?)",
            ("p" * 500 + str(i),),
        )
        i += 1
        if i == 20000:
            print("writing", flush=True)
"""


def test_sigkill_in_the_middle_of_a_write_keeps_last_committed_state(ctrpy: Any, dirs: Any) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(dirs.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "writing"
        wal = dirs.root / "meta.db-wal"
        assert wal.stat().st_size > 1 << 20, "the transaction should have spilled into the WAL"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # The database opens through the real CLI and shows exactly the last committed state.
    r = ctrpy("namespaces", "ls", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [{"name": "committed", "labels": {"state": "last"}}]
    conn = sqlite3.connect(dirs.root / "meta.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT count(*) FROM events WHERE namespace = 'uncommitted'").fetchone()[0] == 0
    finally:
        conn.close()
    # And it takes writes again.
    assert ctrpy("namespaces", "create", "after").returncode == 0


# --- concurrency ------------------------------------------------------------------------------------------


def test_twenty_concurrent_writers_lose_nothing(ctrpy: Any, dirs: Any) -> None:
    ctrpy("namespaces", "create", "warm")  # create the database first, like a running system
    base = [CTRPY, "--root", str(dirs.root), "--state", str(dirs.state)]
    blobs = [os.urandom(20_000) + bytes([i]) for i in range(10)]
    procs = []
    for i in range(20):
        if i % 2 == 0:
            data = blobs[i // 2]
            argv = base + ["content", "ingest", f"ref{i}", "--expected-digest", digest_of(data),
                           "--expected-size", str(len(data))]
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=_env(dirs))
            procs.append((p, data))
        else:
            p = subprocess.Popen(base + ["namespaces", "create", f"ns{i}", f"n={i}"], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(dirs))
            procs.append((p, None))
    for p, data in procs:
        out, err = p.communicate(input=data, timeout=120)
        assert b"locked" not in err and b"busy" not in err, err
        assert p.returncode == 0, err
    listed = ctrpy("content", "ls", "-q").stdout.split()
    assert sorted(listed) == sorted(digest_of(b) for b in blobs)
    names = json.loads(ctrpy("namespaces", "ls", "--format", "json").stdout)
    assert {n["name"]: n["labels"] for n in names if n["name"].startswith("ns")} == {
        f"ns{i}": {"n": str(i)} for i in range(1, 20, 2)
    }
    assert ctrpy("content", "active", "-q").stdout == ""


# --- schema versions and migrations ----------------------------------------------------------------------


def test_newer_schema_version_is_refused_clearly(ctrpy: Any, dirs: Any) -> None:
    assert ctrpy("namespaces", "create", "x").returncode == 0
    conn = sqlite3.connect(dirs.root / "meta.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    r = ctrpy("namespaces", "ls")
    assert r.returncode == 6
    assert r.stderr.strip().splitlines() == [
        f"ctrpy: metadata database {dirs.root / 'meta.db'} has schema version 99, newer than this ctrpy "
        f"understands ({schema.SCHEMA_VERSION}); upgrade ctrpy"
    ]
    assert "Traceback" not in r.stderr


def test_migration_runs_in_order_and_a_failing_one_rolls_back(dirs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A database at the current version with content in it, made by the real code.
    current = schema.SCHEMA_VERSION
    db = DB(dirs.root)
    from ctrpy.runtime.metadata.namespaces import NamespaceStore

    NamespaceStore(db).create("kept", {"a": "1"})
    db.close()

    def next_one(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE namespaces ADD COLUMN note TEXT NOT NULL DEFAULT 'migrated'")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("migration bug")

    real = list(schema.MIGRATIONS)
    monkeypatch.setattr(schema, "MIGRATIONS", real + [next_one, broken])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", current + 2)
    with pytest.raises(RuntimeError, match="migration bug"):
        DB(dirs.root).view().__enter__()
    conn = sqlite3.connect(dirs.root / "meta.db")
    try:
        # All or nothing: neither migration's change survived, the version is unchanged.
        assert conn.execute("PRAGMA user_version").fetchone()[0] == current
        cols = [r[1] for r in conn.execute("PRAGMA table_info(namespaces)")]
        assert "note" not in cols
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchone() is None
    finally:
        conn.close()

    monkeypatch.setattr(schema, "MIGRATIONS", real + [next_one])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", current + 1)
    db = DB(dirs.root)
    with db.view() as tx:
        assert tx.execute("PRAGMA user_version").fetchone()[0] == current + 1
        assert [tuple(r) for r in tx.execute("SELECT name, labels, note FROM namespaces")] == [
            ("kept", '{"a":"1"}', "migrated")
        ]
    db.close()


def test_v1_database_gains_the_containers_listing_index(ctrpy: Any, dirs: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # A version 1 database (before the index) holding a container, then opened by this ctrpy.
    from ctrpy.runtime.metadata.containers import Container, ContainerStore

    with monkeypatch.context() as m:
        m.setattr(schema, "MIGRATIONS", [])
        m.setattr(schema, "SCHEMA_VERSION", 1)
        db = DB(dirs.root)
        ContainerStore(db, "default").create(Container(id="old1", runtime_name="ctrpy", image="img:1"))
        with db.view() as tx:
            assert tx.execute("SELECT 1 FROM sqlite_master WHERE name = 'containers_listing'").fetchone() is None
        db.close()
    r = ctrpy("containers", "ls")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].split()[:3] == ["old1", "img:1", "ctrpy"]
    conn = sqlite3.connect(dirs.root / "meta.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        plan = " ".join(str(row) for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT id, image, runtime_name, created_at FROM containers WHERE namespace = ? "
            "ORDER BY id", ("default",)))
        assert "COVERING INDEX containers_listing" in plan
    finally:
        conn.close()


def test_fresh_database_gets_current_version_without_migrations(dirs: Any) -> None:
    db = DB(dirs.root)
    with db.view() as tx:
        assert tx.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
        tables = {r[0] for r in tx.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"namespaces", "images", "containers", "content", "blobs", "ingests", "snapshots", "leases",
            "lease_resources", "events"} <= tables
    assert db.integrity_check() == []
    db.close()


# --- images -----------------------------------------------------------------------------------------------


def _image(name: str, data: bytes = b"manifest", labels: dict[str, str] | None = None) -> Any:
    from ctrpy.runtime.metadata.images import Image

    return Image(name, Descriptor(MANIFEST, digest_of(data), len(data)), labels or {})


def test_image_store(client: Any) -> None:
    images = client.images
    created = images.create(_image("docker.io/library/busybox:latest", labels={"a": "1"}))
    assert created.created_at and created.created_at == created.updated_at
    with pytest.raises(errors.AlreadyExists):
        images.create(_image("docker.io/library/busybox:latest"))
    images.create(_image("docker.io/library/alpine:3", b"other"))
    assert [i.name for i in images.list()] == ["docker.io/library/alpine:3", "docker.io/library/busybox:latest"]
    assert [i.name for i in images.list(["name~=busy"])] == ["docker.io/library/busybox:latest"]
    assert [i.name for i in images.list(['labels."a"==1'])] == ["docker.io/library/busybox:latest"]
    assert [i.name for i in images.list(["name~=busy", "name~=alp"])] == [
        "docker.io/library/alpine:3", "docker.io/library/busybox:latest"]
    assert images.get("docker.io/library/alpine:3").target.digest == digest_of(b"other")

    # update by fieldpath touches only that field.
    changed = images.update(_image("docker.io/library/busybox:latest", b"new", {"b": "2"}), ["labels.b"])
    assert changed.labels == {"a": "1", "b": "2"} and changed.target.digest == digest_of(b"manifest")
    assert changed.created_at == created.created_at and changed.updated_at > created.updated_at
    changed = images.update(_image("docker.io/library/busybox:latest", b"new"), ["target"])
    assert changed.target.digest == digest_of(b"new") and changed.labels == {"a": "1", "b": "2"}
    with pytest.raises(errors.InvalidArgument):
        images.update(_image("docker.io/library/busybox:latest"), ["name"])
    with pytest.raises(errors.NotFound):
        images.update(_image("nope"))
    up = images.upsert(_image("docker.io/library/alpine:3", b"v2"))
    assert up.target.digest == digest_of(b"v2")

    images.delete("docker.io/library/alpine:3")
    with pytest.raises(errors.NotFound):
        images.get("docker.io/library/alpine:3")
    with pytest.raises(errors.NotFound):
        images.delete("docker.io/library/alpine:3")
    # Namespaced.
    assert client.with_namespace("other").images.list() == []
    topics = [e.topic for e in client.events.list()]
    assert topics == ["/images/create", "/images/create", "/images/update", "/images/update", "/images/update",
                      "/images/delete"]


def test_image_validation(client: Any) -> None:
    from ctrpy.runtime.metadata.images import Image

    with pytest.raises(errors.InvalidArgument):
        client.images.create(_image("has space"))
    with pytest.raises(errors.InvalidArgument):
        client.images.create(Image("x", Descriptor(MANIFEST, "sha256:bad", 1)))
    with pytest.raises(errors.InvalidArgument, match="4096"):
        client.images.create(_image("x", labels={"k": "v" * 4096}))
    assert client.images.list() == []
    assert client.events.list() == []


# --- containers -------------------------------------------------------------------------------------------


def test_container_store(client: Any) -> None:
    from ctrpy.runtime.metadata.containers import Container

    cs = client.containers
    c = cs.create(Container("web", "ctrpy", image="docker.io/library/busybox:latest", snapshotter="overlayfs",
                            snapshot_key="web", spec={"ociVersion": "1.1.0", "process": {"args": ["sh"]}},
                            labels={"app": "web"}))
    assert c.spec["process"]["args"] == ["sh"] and c.created_at
    with pytest.raises(errors.AlreadyExists):
        cs.create(Container("web", "ctrpy"))
    with pytest.raises(errors.InvalidArgument):
        cs.create(Container("bad id!", "ctrpy"))
    with pytest.raises(errors.InvalidArgument):
        cs.create(Container("norun", ""))

    new = Container("web", "ctrpy", image="img2", snapshotter="overlayfs", snapshot_key="web",
                    spec={"ociVersion": "1.1.0"}, labels={"app": "web2", "x": "y"})
    updated = cs.update(new, ["labels.x"])
    assert updated.labels == {"app": "web", "x": "y"} and updated.image == "docker.io/library/busybox:latest"
    updated = cs.update(new)
    assert updated.image == "img2" and updated.spec == {"ociVersion": "1.1.0"} and updated.labels["app"] == "web2"
    with pytest.raises(errors.InvalidArgument, match="immutable"):
        cs.update(Container("web", "runc", snapshotter="overlayfs"))
    with pytest.raises(errors.InvalidArgument, match="immutable"):
        cs.update(Container("web", "ctrpy", snapshotter="native"))
    cs.create(Container("db", "runc", labels={"app": "db"}))
    assert [x.id for x in cs.list()] == ["db", "web"]
    assert [x.id for x in cs.list(["labels.app==db"])] == ["db"]
    assert [x.id for x in cs.list(["runtime==runc"])] == ["db"]
    cs.delete("db")
    with pytest.raises(errors.NotFound):
        cs.get("db")
    with pytest.raises(errors.NotFound):
        cs.delete("db")
    assert [e.topic for e in client.events.list(topic_prefix="/containers/")] == [
        "/containers/create", "/containers/update", "/containers/update", "/containers/create",
        "/containers/delete"]


def test_container_views_hold_only_the_listed_paths(client: Any) -> None:
    from ctrpy.runtime.metadata.containers import Container

    cs = client.containers
    big = {"process": {"args": ["sh", "-c", "x"], "env": ["A=1"] * 500}, "mounts": [{"destination": "/d"}] * 100}
    cs.create(Container("b", "ctrpy", image="img", spec=big, labels={"k": "v"},
                        extensions={"ctrpy.io/docker": {"image": "busybox", "auto_remove": False,
                                                        "env": ["B=2"] * 500}, "other": {"x": 1}}))
    cs.create(Container("a", "runc"))
    views = cs.views(spec=[("process", "args"), ("linux", "missing")],
                     extensions=[("ctrpy.io/docker", "image"), ("ctrpy.io/docker", "auto_remove"),
                                 ("ctrpy.io/network", "ports")])
    assert [v.id for v in views] == ["a", "b"]
    a, b = views
    assert a.spec == {} and a.extensions == {} and a.runtime_name == "runc"
    assert b.spec == {"process": {"args": ["sh", "-c", "x"]}}
    assert b.extensions == {"ctrpy.io/docker": {"image": "busybox", "auto_remove": False}}
    assert (b.image, b.labels, b.created_at) == ("img", {"k": "v"}, cs.get("b").created_at)
    with pytest.raises(errors.InvalidArgument, match="view"):
        cs.update(b)  # writing a view back would drop the rest of the spec
    with pytest.raises(errors.InvalidArgument, match="view"):
        cs.create(b)
    assert cs.get("b").spec == big
    with pytest.raises(errors.InvalidArgument):
        cs.views(spec=[("process", 'a"b')])


# --- leases -----------------------------------------------------------------------------------------------


def test_lease_manager(client: Any) -> None:
    from ctrpy.runtime.metadata.leases import EXPIRE_LABEL

    lm = client.leases
    lease = lm.create("pull-1", {"x": "1"}, expire=3600)
    assert EXPIRE_LABEL in lease.labels and not lease.expired()
    assert lease.expired(at=time.time() + 7200)
    with pytest.raises(errors.AlreadyExists):
        lm.create("pull-1")
    d = digest_of(b"layer")
    lm.add_resource("pull-1", "content", d)
    lm.add_resource("pull-1", "snapshots/overlayfs", "extract-1 sha256:abc")
    lm.add_resource("pull-1", "ingests", "layer-ref")
    lm.add_resource("pull-1", "content", d)  # idempotent
    assert [(r.type, r.id) for r in lm.list_resources("pull-1")] == [
        ("content", d), ("ingests", "layer-ref"), ("snapshots/overlayfs", "extract-1 sha256:abc")]
    with pytest.raises(errors.InvalidArgument):
        lm.add_resource("pull-1", "bogus", "x")
    with pytest.raises(errors.InvalidArgument):
        lm.add_resource("pull-1", "content", "not-a-digest")
    with pytest.raises(errors.NotFound):
        lm.add_resource("missing", "content", d)
    lm.delete_resource("pull-1", "ingests", "layer-ref")
    assert len(lm.list_resources("pull-1")) == 2

    with lm.lease(expire=60) as lid:
        assert lid in [le.id for le in lm.list()]
        lm.add_resource(lid, "content", d)
    assert [le.id for le in lm.list()] == ["pull-1"]
    assert [le.id for le in lm.list(["labels.x==1"])] == ["pull-1"]
    lm.delete("pull-1")
    with pytest.raises(errors.NotFound):
        lm.delete("pull-1")
    with client.db.view() as tx:
        assert tx.execute("SELECT count(*) FROM lease_resources").fetchone()[0] == 0  # cascaded


def test_leases_cli(ctrpy: Any) -> None:
    r = ctrpy("leases", "create", "--id", "mylease", "--expires", "1h30m", "purpose=test")
    assert r.returncode == 0 and r.stdout.strip() == "mylease"
    generated = ctrpy("leases", "create", "--expires", "0").stdout.strip()
    assert generated.startswith("ctrpy-")
    listed = json.loads(ctrpy("leases", "ls", "--format", "json").stdout)
    by_id = {le["id"]: le for le in listed}
    assert by_id["mylease"]["labels"]["purpose"] == "test"
    assert "containerd.io/gc.expire" in by_id["mylease"]["labels"]
    assert "containerd.io/gc.expire" not in by_id[generated]["labels"]
    assert set(ctrpy("lease", "list", "-q").stdout.split()) == {"mylease", generated}
    table = ctrpy("leases", "ls").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "CREATED", "AT"]
    assert ctrpy("leases", "create", "--id", "mylease").returncode == 5
    assert ctrpy("leases", "create", "--expires", "soon").returncode == 2
    r = ctrpy("leases", "rm", "mylease", "ghost")
    assert r.returncode == 4 and r.stdout.split() == ["mylease"] and "ghost" in r.stderr
    assert ctrpy("leases", "ls", "-q").stdout.split() == [generated]


# --- events -----------------------------------------------------------------------------------------------


def test_events_cli_and_store(ctrpy: Any, client: Any) -> None:
    assert ctrpy("namespaces", "create", "evt").returncode == 0
    client.events.publish("/tasks/exit", {"id": "c1", "exit_status": 3})
    client.events.publish("/tasks/oom", {"id": "c1"})
    with pytest.raises(errors.InvalidArgument):
        client.events.publish("no-slash", {})
    r = ctrpy("events", "--format", "json")
    assert r.returncode == 0, r.stderr
    evs = json.loads(r.stdout)
    assert [(e["namespace"], e["topic"], e["payload"]) for e in evs] == [
        ("default", "/tasks/exit", {"id": "c1", "exit_status": 3}), ("default", "/tasks/oom", {"id": "c1"})]
    assert evs[0]["seq"] < evs[1]["seq"] and evs[0]["timestamp"].endswith("Z")
    every = json.loads(ctrpy("events", "-A", "--format", "json").stdout)
    assert [e["topic"] for e in every] == ["/namespaces/create", "/tasks/exit", "/tasks/oom"]
    assert [e["topic"] for e in json.loads(ctrpy("events", "--topic", "/tasks/o", "--format", "json").stdout)] == [
        "/tasks/oom"]
    assert [e["topic"] for e in json.loads(ctrpy("events", "--limit", "1", "--format", "json").stdout)] == [
        "/tasks/oom"]
    since = json.loads(ctrpy("events", "--since", str(evs[0]["seq"]), "--format", "json").stdout)
    assert [e["topic"] for e in since] == ["/tasks/oom"]
    lines = ctrpy("events").stdout.splitlines()
    assert lines[0].split() == ["SEQ", "TIMESTAMP", "NAMESPACE", "TOPIC", "EVENT"]
    assert "/tasks/exit" in lines[1] and '"exit_status": 3' in lines[1]


def test_runtime_never_imports_click_or_rich() -> None:
    code = (
        "import sys\n"
        "for name in ('click', 'rich', 'httpx', 'pyroute2'):\n"
        "    sys.modules[name] = None\n"
        "import ctrpy.runtime.content, ctrpy.runtime.content.local, ctrpy.runtime.filters\n"
        "import ctrpy.runtime.metadata.namespaces, ctrpy.runtime.metadata.images\n"
        "import ctrpy.runtime.metadata.containers, ctrpy.runtime.metadata.leases, ctrpy.runtime.metadata.events\n"
        "import ctrpy.runtime.system, ctrpy.runtime.client, ctrpy.runtime.config\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
