"""Garbage collection through the real CLI: `images rm` + `gc` frees blobs and snapshots; what images,
containers, live leases, gc.root labels, other namespaces and mounts hold stays; dry runs change nothing;
a SIGKILLed unpack's leftovers (its mount below ROOT/tmpmounts, its extract snapshot) and an abandoned
ingest go once their lease or expiry has passed.

Images are OCI layouts built in code and ingested without a registry (tests/support). Leases and ingests
expire in real time, so the runs "a day later" execute the real `ctrpy gc` under libfaketime (Debian's
faketime package): the clock is the only thing changed.
"""

from __future__ import annotations

import glob
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from support.store import ingest_layout
from support.testimages import LayerBuilder, busybox_layer, build_layout, read_blob

from ctrpy.runtime.client import Client
from ctrpy.runtime.mount import mount_all, mount_points_under, unmount_all
from ctrpy.runtime.unpack import TempMounts, unpack_image

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: Any) -> dict[str, Any]:
    """bb: busybox (1 layer); app: busybox + one small layer (shares bb's base layer)."""
    base = tmp_path_factory.mktemp("gc-layouts")
    out: dict[str, Any] = {}
    for name, layers in (("bb", [busybox_layer()]),
                         ("app", [busybox_layer(), LayerBuilder().file("etc/app", "app\n").bytes()])):
        desc = build_layout(base / name, layers)
        manifest = json.loads(read_blob(base / name, desc["digest"]))
        out[name] = {"path": base / name, "manifest": desc["digest"], "config": manifest["config"]["digest"],
                     "layers": [layer["digest"] for layer in manifest["layers"]]}
    return out


def faketime_env(offset: str) -> dict[str, str]:
    """Environment that runs a process `offset` (e.g. "+25h") in the future, through libfaketime."""
    libs = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    assert libs, "libfaketime is missing: install the Debian package faketime (make apt)"
    return {"LD_PRELOAD": libs[0], "FAKETIME": offset, "DONT_FAKE_MONOTONIC": "1"}


def gc(ctrpy: Any, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    r = ctrpy("gc", "--format", "json", *args, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def removed(report: dict[str, Any], kind: str) -> set[str]:
    return {item["id"] for item in report["removed"] if item["type"] == kind}


def blob_file(dirs: Any, digest: str) -> Path:
    return dirs.root / "content" / "blobs" / "sha256" / digest.split(":", 1)[1]


def snapshot_dirs(dirs: Any, snapshotter: str = "overlayfs") -> set[str]:
    base = dirs.root / "snapshots" / snapshotter / "snapshots"
    return set(os.listdir(base)) if base.is_dir() else set()


def lines(r: Any) -> list[str]:
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def tree(root: Path) -> list[tuple[str, int]]:
    """Every path below `root` with its size: what a dry run must leave exactly as it was."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            out.append((str(p.relative_to(root)), p.lstat().st_size if name in filenames else 0))
    return sorted(o for o in out if not o[0].startswith("meta.db"))


# ---------------------------------------------------------------------------------------------- basics

def test_images_rm_then_gc_frees_blobs_and_snapshots(ctrpy: Any, client: Client, dirs: Any,
                                                      layouts: dict[str, Any]) -> None:
    bb = layouts["bb"]
    ingest_layout(client, bb["path"], "bb")
    top = unpack_image(client, "bb")
    digests = [bb["manifest"], bb["config"], *bb["layers"]]

    assert gc(ctrpy)["removed"] == []  # the image holds everything
    assert all(blob_file(dirs, d).is_file() for d in digests)
    assert lines(ctrpy("snapshots", "ls", "-q")) == [top]

    assert ctrpy("images", "rm", "--no-gc", "bb").returncode == 0
    assert all(blob_file(dirs, d).is_file() for d in digests), "images rm must remove only the name"
    layer_size = blob_file(dirs, bb["layers"][0]).stat().st_size

    r = ctrpy("gc")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ["TYPE", "NAMESPACE", "ID", "SIZE"]
    for digest in digests:
        assert digest in r.stdout
    assert f"overlayfs/{top}" in r.stdout
    summary = r.stdout.splitlines()[-1]
    assert summary.startswith("freed ") and "items removed" in summary, summary

    assert not any(blob_file(dirs, d).exists() for d in digests)
    assert lines(ctrpy("content", "ls", "-q")) == []
    assert lines(ctrpy("snapshots", "ls", "-q")) == []
    assert snapshot_dirs(dirs) == set()
    again = gc(ctrpy)
    assert again["removed"] == [] and again["bytes_freed"] == 0
    assert layer_size > 0


def test_shared_base_kept_while_another_image_or_namespace_uses_it(ctrpy: Any, client: Client, dirs: Any,
                                                                   layouts: dict[str, Any]) -> None:
    bb, app = layouts["bb"], layouts["app"]
    other = client.with_namespace("other")
    ingest_layout(client, bb["path"], "bb")
    ingest_layout(client, app["path"], "app")
    ingest_layout(other, bb["path"], "bb")
    base = unpack_image(client, "bb")
    app_top = unpack_image(client, "app")
    assert unpack_image(other, "bb") == base
    base_layer = bb["layers"][0]
    assert app["layers"][0] == base_layer
    dirs_before = snapshot_dirs(dirs)
    assert len(dirs_before) == 2  # the base directory is shared by both images and both namespaces

    assert ctrpy("images", "rm", "--no-gc", "bb").returncode == 0
    report = gc(ctrpy)
    # Only what bb alone held in `default` goes; every file stays (namespace `other` holds bb too).
    assert removed(report, "content") == {bb["manifest"], bb["config"]}
    assert removed(report, "blob") == set() and removed(report, "snapshot") == set()
    assert report["bytes_freed"] == 0
    assert blob_file(dirs, base_layer).is_file()
    assert sorted(lines(ctrpy("snapshots", "ls", "-q"))) == sorted([base, app_top])

    assert ctrpy("images", "rm", "--no-gc", "app").returncode == 0
    report = gc(ctrpy)
    assert removed(report, "content") == {app["manifest"], app["config"], *app["layers"]}
    assert removed(report, "blob") == {app["manifest"], app["config"], app["layers"][1]}
    assert removed(report, "snapshot") == {f"overlayfs/{app_top}", f"overlayfs/{base}"}
    assert len(removed(report, "snapshot-dir")) == 1  # the base directory is still `other`'s
    assert blob_file(dirs, base_layer).is_file() and blob_file(dirs, bb["manifest"]).is_file()
    assert lines(ctrpy("snapshots", "ls", "-q", namespace="other")) == [base]
    assert lines(ctrpy("images", "ls", "-q", namespace="other")) == ["bb"]

    assert ctrpy("images", "rm", "--no-gc", "bb", namespace="other").returncode == 0
    report = gc(ctrpy)
    assert removed(report, "blob") == {bb["manifest"], bb["config"], base_layer}
    assert snapshot_dirs(dirs) == set()
    assert os.listdir(dirs.root / "content" / "blobs" / "sha256") == []


# ---------------------------------------------------------------------------------------------- leases and roots

def test_live_lease_protects_and_expired_lease_does_not(ctrpy: Any, client: Client, dirs: Any,
                                                         layouts: dict[str, Any]) -> None:
    bb = layouts["bb"]
    layer = bb["layers"][0]
    ingest_layout(client, bb["path"], "bb")
    assert ctrpy("leases", "create", "--id", "keep", "--expires", "1h").returncode == 0
    r = ctrpy("leases", "create", "--id", "old", "--expires", "0", "containerd.io/gc.expire=2020-01-01T00:00:00Z")
    assert r.returncode == 0, r.stderr
    client.leases.add_resource("keep", "content", layer)
    client.leases.add_resource("old", "content", bb["config"])
    assert ctrpy("images", "rm", "--no-gc", "bb").returncode == 0

    report = gc(ctrpy)
    assert removed(report, "lease") == {"old"}
    assert removed(report, "blob") == {bb["manifest"], bb["config"]}
    assert lines(ctrpy("leases", "ls", "-q")) == ["keep"]
    assert lines(ctrpy("content", "ls", "-q")) == [layer]
    assert blob_file(dirs, layer).is_file()

    # An hour and a bit later the lease has expired too: it goes, and so does what it held.
    report = gc(ctrpy, env=faketime_env("+2h"))
    assert removed(report, "lease") == {"keep"} and removed(report, "blob") == {layer}
    assert not blob_file(dirs, layer).exists()


@pytest.mark.parametrize("how", ["gc.root", "lease", "flat-lease"])
def test_roots_by_label_and_lease_follow_refs(ctrpy: Any, client: Client, layouts: dict[str, Any],
                                              how: str) -> None:
    bb = layouts["bb"]
    ingest_layout(client, bb["path"], "bb")
    if how == "gc.root":
        r = ctrpy("content", "label", bb["manifest"], "containerd.io/gc.root=2026-01-01T00:00:00Z")
        assert r.returncode == 0, r.stderr
    else:
        labels = ["containerd.io/gc.flat=2026-01-01T00:00:00Z"] if how == "flat-lease" else []
        assert ctrpy("leases", "create", "--id", "hold", *labels).returncode == 0
        client.leases.add_resource("hold", "content", bb["manifest"])
    assert ctrpy("images", "rm", "--no-gc", "bb").returncode == 0
    report = gc(ctrpy)
    kept = set(lines(ctrpy("content", "ls", "-q")))
    if how == "flat-lease":
        # A flat lease keeps its own resources only; the manifest's gc.ref labels are not followed.
        assert kept == {bb["manifest"]}
        assert removed(report, "blob") == {bb["config"], *bb["layers"]}
    else:
        assert kept == {bb["manifest"], bb["config"], *bb["layers"]}
        assert report["removed"] == []


def test_container_snapshot_kept_until_the_container_goes(ctrpy: Any, client: Client, dirs: Any,
                                                          layouts: dict[str, Any]) -> None:
    bb = layouts["bb"]
    ingest_layout(client, bb["path"], "bb")
    r = ctrpy("containers", "create", "bb", "c1", "sh")
    assert r.returncode == 0, r.stderr
    base = unpack_image(client, "bb")
    assert ctrpy("images", "rm", "--no-gc", "bb").returncode == 0

    # Even a day later: the container still holds its rootfs and the image layers under it.
    report = gc(ctrpy, env=faketime_env("+25h"))
    assert removed(report, "blob") == {bb["manifest"], bb["config"], *bb["layers"]}
    assert removed(report, "snapshot") == set()
    assert sorted(lines(ctrpy("snapshots", "ls", "-q"))) == sorted(["c1", base])
    assert len(snapshot_dirs(dirs)) == 2

    assert ctrpy("containers", "rm", "c1").returncode == 0
    report = gc(ctrpy)
    assert removed(report, "snapshot") == {f"overlayfs/{base}"}
    assert snapshot_dirs(dirs) == set()


@pytest.mark.parametrize("snapshotter", ["overlayfs", "native"])
def test_active_snapshot_kept_while_mounted_or_new(ctrpy: Any, client: Client, dirs: Any, tmp_path: Path,
                                                   layouts: dict[str, Any], snapshotter: str) -> None:
    ingest_layout(client, layouts["bb"]["path"], "bb")
    base = unpack_image(client, "bb", snapshotter)
    sn = client.snapshotter(snapshotter)
    targets = {"work": tmp_path / "work", "look": tmp_path / "look"}
    mounted = {"work": sn.prepare("work", base), "look": sn.view("look", base)}
    sn.prepare("idle", base)
    try:
        for key, target in targets.items():
            target.mkdir()
            mount_all(mounted[key], target)
        assert gc(ctrpy)["removed"] == []  # all three are younger than the grace period
        # Later, `idle` is garbage (nothing refers to it, nothing mounts it); the mounted ones are in use.
        report = gc(ctrpy, env=faketime_env("+1h"))
        assert removed(report, "snapshot") == {f"{snapshotter}/idle"}
        assert all((target / "bin" / "busybox").is_file() for target in targets.values())
    finally:
        for target in targets.values():
            unmount_all(target)
    report = gc(ctrpy, env=faketime_env("+1h"))
    assert removed(report, "snapshot") == {f"{snapshotter}/work", f"{snapshotter}/look"}
    assert lines(ctrpy("snapshots", "--snapshotter", snapshotter, "ls", "-q")) == [base]  # still the image's


def test_dry_run_changes_nothing(ctrpy: Any, client: Client, dirs: Any, layouts: dict[str, Any]) -> None:
    ingest_layout(client, layouts["app"]["path"], "app")
    unpack_image(client, "app")
    assert ctrpy("leases", "create", "--id", "old", "--expires", "0",
                 "containerd.io/gc.expire=2020-01-01T00:00:00Z").returncode == 0
    assert ctrpy("images", "rm", "--no-gc", "app").returncode == 0
    files = tree(dirs.root)
    listings = [ctrpy(*argv).stdout for argv in (("content", "ls", "-q"), ("snapshots", "ls", "-q"),
                                                 ("leases", "ls", "-q"))]

    r = ctrpy("gc", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].startswith("would free ")
    planned = gc(ctrpy, "--dry-run")
    assert planned["dry_run"] is True and planned["bytes_freed"] > 1_000_000
    assert tree(dirs.root) == files
    assert [ctrpy(*argv).stdout for argv in (("content", "ls", "-q"), ("snapshots", "ls", "-q"),
                                             ("leases", "ls", "-q"))] == listings

    done = gc(ctrpy)
    key = lambda rep: sorted((i["type"], i["namespace"], i["id"]) for i in rep["removed"])  # noqa: E731
    assert key(done) == key(planned)
    assert done["bytes_freed"] == planned["bytes_freed"]
    assert tree(dirs.root) != files


# ---------------------------------------------------------------------------------------------- leftovers

CHILD_UNPACK = """
import sys
sys.path.insert(0, sys.argv[3])
from ctrpy.runtime.client import Client
from ctrpy.runtime.unpack import unpack_image
unpack_image(Client(sys.argv[1], sys.argv[2]), "big", "overlayfs", concurrent=sys.argv[4] == "1")
"""


@pytest.mark.slow
def test_killed_unpack_leftovers_swept_after_lease_expires(ctrpy: Any, client: Client, dirs: Any,
                                                           tmp_path: Path) -> None:
    rnd = random.Random(7)
    big = LayerBuilder().dir("data")
    for i in range(2000):  # ~32 MiB in 2000 files: the apply takes long enough to be killed half way
        big.file(f"data/f{i}", rnd.randbytes(16384))
    build_layout(tmp_path / "big", [busybox_layer(), big.bytes()], compression="none")
    ingest_layout(client, tmp_path / "big", "big")
    tmpmounts = str(TempMounts(dirs.root).base)

    # Sequential: the layer is applied through a mount (a staged layer's kill is in test_unpack_staged.py).
    proc = subprocess.Popen([sys.executable, "-c", CHILD_UNPACK, str(dirs.root), str(dirs.state), str(TESTS.parent),
                             "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not mount_points_under(tmpmounts) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert proc.poll() is None, f"the unpack ended before it could be killed: {proc.stderr.read()!r}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    leftovers = mount_points_under(tmpmounts)
    assert len(leftovers) == 1
    keys = lines(ctrpy("snapshots", "ls", "-q"))
    assert any(k.startswith("extract-") for k in keys), keys
    assert len(lines(ctrpy("leases", "ls", "-q"))) == 1

    # While the unpack's lease lives (24 h), nothing of it is touched: it might still be running.
    assert gc(ctrpy)["removed"] == []
    assert mount_points_under(tmpmounts) == leftovers

    report = gc(ctrpy, env=faketime_env("+25h"))
    assert len(removed(report, "lease")) == 1
    assert removed(report, "mount") == set(leftovers)
    assert removed(report, "snapshot") == {f"overlayfs/{k}" for k in keys}
    assert mount_points_under(str(dirs.root)) == []
    assert os.listdir(tmpmounts) == []
    assert snapshot_dirs(dirs) == set()
    assert lines(ctrpy("leases", "ls", "-q")) == []
    assert lines(ctrpy("images", "ls", "-q")) == ["big"]  # the image and its content stay

    # The store is consistent: the same image unpacks from scratch.
    top = unpack_image(client, "big")
    assert lines(ctrpy("snapshots", "ls", "-q", f"name=={top}")) == [top]


def test_abandoned_ingest_swept_after_expiry_unless_leased(ctrpy: Any, client: Client, dirs: Any) -> None:
    data = os.urandom(1 << 20)
    for ref in ("abandoned", "leased"):
        with client.content.writer(ref, total=len(data)) as w:
            w.write(data[: len(data) // 2])  # left without commit: resumable, like a killed download
    assert ctrpy("leases", "create", "--id", "dl", "--expires", "0").returncode == 0
    client.leases.add_resource("dl", "ingests", "leased")
    r = ctrpy("content", "active")
    assert "abandoned" in r.stdout and "leased" in r.stdout

    assert gc(ctrpy)["removed"] == []  # fresh: it may be resumed
    with client.content.writer("abandoned") as w:  # a writer resumed it: in use, however old
        assert w.offset == len(data) // 2
        assert gc(ctrpy, env=faketime_env("+25h"))["removed"] == []
    report = gc(ctrpy, env=faketime_env("+25h"))
    assert [(i["type"], i["id"], i["size"]) for i in report["removed"]] == [("ingest", "abandoned", len(data) // 2)]
    r = ctrpy("content", "active")
    assert "abandoned" not in r.stdout and "leased" in r.stdout
    assert len(os.listdir(dirs.root / "content" / "ingest")) == 1


def test_crash_leftovers_without_rows_are_swept(ctrpy: Any, dirs: Any) -> None:
    # What a crash between a file operation and its transaction leaves: files that no row names.
    assert ctrpy("namespaces", "create", "default").returncode == 0
    blob = dirs.root / "content" / "blobs" / "sha256" / ("ab" * 32)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"x" * 5000)
    orphan_dir = dirs.root / "snapshots" / "overlayfs" / "snapshots" / "77"
    (orphan_dir / "fs").mkdir(parents=True)
    (orphan_dir / "fs" / "file").write_bytes(b"y" * 9000)
    # A writer killed before its first transaction, and an apply killed before it mounted: both may
    # belong to a process that is just starting, so they go only once they are old.
    ingest = dirs.root / "content" / "ingest" / ("cd" * 32)
    ingest.mkdir(parents=True)
    (ingest / "ref").write_text("default/killed-early")
    (ingest / "data").write_bytes(b"z" * 3000)
    empty_mount_dir = TempMounts(dirs.root).base / "0123456789abcdef"
    empty_mount_dir.mkdir(parents=True)

    planned = gc(ctrpy, "--dry-run")
    assert removed(planned, "orphan") == {str(blob), str(orphan_dir)}
    assert blob.exists() and orphan_dir.exists()
    report = gc(ctrpy)
    assert removed(report, "orphan") == {str(blob), str(orphan_dir)}
    assert report["bytes_freed"] >= 14000
    assert not blob.exists() and not orphan_dir.exists()
    assert ingest.exists() and empty_mount_dir.exists()

    report = gc(ctrpy, env=faketime_env("+1h"))
    assert removed(report, "orphan") == {str(ingest), str(empty_mount_dir)}
    assert not ingest.exists() and not empty_mount_dir.exists()


# ---------------------------------------------------------------------------------------------- CLI

@pytest.mark.parametrize("argv", [("gc", "extra"), ("gc", "--format", "xml"), ("gc", "--nope")])
def test_bad_input_is_a_usage_error(ctrpy: Any, argv: tuple[str, ...]) -> None:
    r = ctrpy(*argv)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stdout == ""
