"""`ctrpy namespaces create/ls/rm/label` and the NamespaceStore."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import pytest

from ctrpy.runtime import errors


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_create_list_label_remove(ctrpy: Any) -> None:
    r = ctrpy("namespaces", "create", "team-a", "owner=alice", "tier=dev")
    assert r.returncode == 0, r.stderr
    assert ctrpy("namespaces", "create", "team.b").returncode == 0
    r = ctrpy("namespaces", "ls")
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "LABELS"]
    assert [ln.split() for ln in lines[1:]] == [["team-a", "owner=alice,tier=dev"], ["team.b"]]
    assert ctrpy("namespaces", "ls", "-q").stdout.split() == ["team-a", "team.b"]
    assert json.loads(ctrpy("namespaces", "ls", "--format", "json").stdout) == [
        {"name": "team-a", "labels": {"owner": "alice", "tier": "dev"}}, {"name": "team.b", "labels": {}}]

    r = ctrpy("namespaces", "label", "team-a", "owner=bob", "tier=")
    assert r.returncode == 0 and "owner=bob" in r.stdout
    assert json.loads(ctrpy("namespaces", "ls", "--format", "json").stdout)[0]["labels"] == {"owner": "bob"}
    # Labelling a namespace that does not exist creates it, as ctr does.
    assert ctrpy("namespaces", "label", "fresh", "k=v").returncode == 0
    assert "fresh" in ctrpy("namespaces", "ls", "-q").stdout.split()

    r = ctrpy("namespaces", "rm", "team-a", "team.b")
    assert r.returncode == 0 and r.stdout.split() == ["team-a", "team.b"]
    assert ctrpy("namespaces", "ls", "-q").stdout.split() == ["fresh"]


@pytest.mark.parametrize("group", ["namespaces", "namespace", "ns"])
@pytest.mark.parametrize("verbs", [("ls", "rm"), ("list", "remove")])
def test_aliases(ctrpy: Any, group: str, verbs: tuple[str, str]) -> None:
    assert ctrpy(group, "create", "x").returncode == 0
    assert ctrpy(group, verbs[0], "-q").stdout.split() == ["x"]
    assert ctrpy(group, verbs[1], "x").returncode == 0
    assert ctrpy(group, verbs[0], "-q").stdout == ""


def test_errors(ctrpy: Any) -> None:
    assert ctrpy("namespaces", "create", "dup").returncode == 0
    r = ctrpy("namespaces", "create", "dup")
    assert (r.returncode, r.stderr) == (5, "ctrpy: namespace 'dup' already exists\n")
    r = ctrpy("namespaces", "rm", "ghost")
    assert (r.returncode, r.stderr) == (4, "ctrpy: namespace 'ghost' not found\n")
    for bad in ["Bad Name", "-lead", "a..b", "x" * 77, "trail-"]:
        r = ctrpy("namespaces", "create", "--", bad)
        assert r.returncode == 3 and "invalid namespace name" in r.stderr, bad
    r = ctrpy("-n", "not valid!", "content", "ls")
    assert r.returncode == 3 and "invalid namespace name" in r.stderr
    r = ctrpy("namespaces", "create", "big", "k=" + "v" * 4096)
    assert r.returncode == 3 and "4096" in r.stderr
    assert "big" not in ctrpy("namespaces", "ls", "-q").stdout.split()
    r = ctrpy("namespaces", "label", "dup", "=v")
    assert r.returncode == 2


def test_namespace_created_implicitly_on_first_write(ctrpy: Any) -> None:
    assert ctrpy("namespaces", "ls", "-q").stdout == ""
    r = ctrpy("content", "ingest", "r", stdin=io.StringIO("data"), namespace="implicit")
    assert r.returncode == 0, r.stderr
    assert ctrpy("namespaces", "ls", "-q").stdout.split() == ["implicit"]


def test_rm_refused_when_not_empty_names_what_is_left(ctrpy: Any, dirs: Any) -> None:
    from ctrpy.runtime.client import Client
    from ctrpy.runtime.content import Descriptor
    from ctrpy.runtime.metadata.containers import Container
    from ctrpy.runtime.metadata.images import Image

    for i in range(3):
        r = ctrpy("content", "ingest", f"r{i}", stdin=io.StringIO(f"blob {i}"), namespace="busy")
        assert r.returncode == 0, r.stderr
    client = Client(dirs.root, dirs.state, "busy")
    try:
        target = Descriptor("application/vnd.oci.image.manifest.v1+json", digest_of(b"blob 0"), 6)
        client.images.create(Image("example.com/a:1", target))
        client.images.create(Image("example.com/b:1", target))
        client.containers.create(Container("c1", "runc"))
        sn = client.snapshotter("native")
        for i in range(4):
            sn.prepare(f"snap{i}")
        sn.close()
    finally:
        client.db.close()

    r = ctrpy("namespaces", "rm", "busy")
    assert r.returncode == 6
    assert r.stderr == ("ctrpy: namespace 'busy' is not empty: 2 images, 1 container, 3 content blobs, "
                        "4 snapshots\n")
    assert ctrpy("namespaces", "ls", "-q").stdout.split() == ["busy"]

    # Emptied, it can go.
    client = Client(dirs.root, dirs.state, "busy")
    try:
        client.images.delete("example.com/a:1")
        client.images.delete("example.com/b:1")
        client.containers.delete("c1")
        sn = client.snapshotter("native")
        for i in range(4):
            sn.remove(f"snap{i}")
        sn.close()
    finally:
        client.db.close()
    digests = ctrpy("content", "ls", "-q", namespace="busy").stdout.split()
    r = ctrpy("namespaces", "rm", "busy")
    assert r.stderr == "ctrpy: namespace 'busy' is not empty: 3 content blobs\n"
    assert ctrpy("content", "rm", *digests, namespace="busy").returncode == 0
    r = ctrpy("namespaces", "rm", "busy")
    assert r.returncode == 0, r.stderr
    assert ctrpy("namespaces", "ls", "-q").stdout == ""


def test_store_api(dirs: Any) -> None:
    from ctrpy.runtime.metadata import DB
    from ctrpy.runtime.metadata.namespaces import NamespaceStore

    db = DB(dirs.root)
    try:
        store = NamespaceStore(db)
        store.create("a", {"x": "1"})
        assert store.get("a") == ("a", {"x": "1"})
        name, labels = store.list()[0]
        assert (name, labels) == ("a", {"x": "1"})
        with pytest.raises(errors.NotFound):
            store.get("b")
        assert store.set_labels("a", {"x": "", "y": "2"}).labels == {"y": "2"}
        store.delete("a")
        assert store.list() == []
    finally:
        db.close()
