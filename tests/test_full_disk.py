"""A full disk is an error, not a wedged store: ENOSPC anywhere is one line, exit 13, and the next command works.

Each test runs ctrpy with its root (or state) on a 20 MiB tmpfs of its own (support/fulldisk.py), unmounted in
teardown. Images come from the tests' own registry (support/hostile.py).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from ctrpy.runtime.client import Client
from ctrpy.runtime.metadata import DB
from support.fulldisk import CTRPY, TmpfsRoot, tmpfs_root  # noqa: F401 - fixture
from support.hostile import HostileRegistry
from support.testimages import LayerBuilder

NO_SPACE = 13


@pytest.fixture
def hostile() -> Iterator[HostileRegistry]:
    reg = HostileRegistry()
    try:
        yield reg
    finally:
        reg.stop()


def error_line(r: Any) -> str:
    lines = [line for line in r.stderr.strip().splitlines() if line.startswith("ctrpy:")]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    return lines[0]


def store_is_sound(small: TmpfsRoot) -> None:
    assert DB(small.root).integrity_check() == []
    r = small.ctrpy("images", "check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "incomplete" not in r.stdout and "missing" not in r.stdout, r.stdout


def test_download_that_fills_the_disk(hostile: HostileRegistry, tmpfs_root: TmpfsRoot) -> None:
    # 24 MiB that gzip cannot shrink, on a 20 MiB root: the content ingest runs out of space.
    big = hostile.add_image("big", [LayerBuilder().file("noise", os.urandom(24 << 20)).bytes()])
    small = hostile.add_image("small", [LayerBuilder().file("hello", "hi\n").bytes()])
    r = tmpfs_root.ctrpy("pull", "-q", "--plain-http", "--no-unpack", big)
    assert r.returncode == NO_SPACE, r.stderr
    line = error_line(r)
    assert line.startswith("ctrpy: content ingest 'layer-sha256:") and \
        line.endswith(f"partial download removed ({tmpfs_root.root}/content/ingest): no space left on device"), line
    # The partial ingest is gone (not a hidden 20 MiB), nothing is recorded, and the space is back.
    r = tmpfs_root.ctrpy("content", "active")
    assert r.returncode == 0 and "layer-" not in r.stdout, r.stdout
    assert tmpfs_root.ctrpy("images", "ls", "-q").stdout.strip() == ""
    assert tmpfs_root.free() > 18 << 20
    # The next commands work at once.
    r = tmpfs_root.ctrpy("pull", "-q", "--plain-http", "--no-unpack", small)
    assert r.returncode == 0, r.stderr
    r = tmpfs_root.ctrpy("gc")
    assert r.returncode == 0, r.stderr
    r = tmpfs_root.ctrpy("leases", "ls")
    assert r.returncode == 0 and r.stdout.strip().count("\n") == 0, r.stdout  # the pull's lease went too
    store_is_sound(tmpfs_root)


def test_full_disk_under_the_metadata_database(tmpfs_root: TmpfsRoot) -> None:
    assert tmpfs_root.ctrpy("namespaces", "create", "before").returncode == 0
    reserve = tmpfs_root.root / "meta.db.reserve"
    assert reserve.stat().st_blocks * 512 >= 512 << 10  # allocated, not sparse
    # A download killed on a full disk leaves its partial ingest behind (resumable).
    client = Client(tmpfs_root.root, tmpfs_root.state)
    with client.content.writer("killed-download", total=30 << 20) as w:
        w.write(os.urandom(8 << 20))
    client.db.close()
    tmpfs_root.fill()
    # The disk is full, yet the commands that free space still work: the database's reserve is given back.
    r = tmpfs_root.ctrpy("content", "active")
    assert r.returncode == 0 and "killed-download" in r.stdout, r.stderr
    r = tmpfs_root.ctrpy("content", "abort", "killed-download")
    assert r.returncode == 0, r.stderr
    assert not reserve.exists() and tmpfs_root.free() > 7 << 20
    # With no reserve left and the disk full again, every command says so in one line, exit 13.
    tmpfs_root.fill()
    for argv in (("namespaces", "create", "during"), ("leases", "create", "--id", "l1"), ("namespaces", "ls"),
                 ("gc",)):
        r = tmpfs_root.ctrpy(*argv)
        assert r.returncode == NO_SPACE, (argv, r.stderr)
        assert error_line(r) == (f"ctrpy: metadata database {tmpfs_root.root}/meta.db: no space left on device "
                                 "(free space and retry; `ctrpy gc` removes abandoned downloads)")
    tmpfs_root.unfill()
    # Not wedged: the same commands work as soon as space is free, nothing was half-written, and the reserve
    # is back.
    assert tmpfs_root.ctrpy("namespaces", "create", "during").returncode == 0
    assert tmpfs_root.ctrpy("leases", "create", "--id", "l1").returncode == 0
    r = tmpfs_root.ctrpy("namespaces", "ls", "-q")
    assert {"before", "during"} <= set(r.stdout.split())
    assert reserve.exists()
    store_is_sound(tmpfs_root)


def test_unpack_that_fills_the_disk(hostile: HostileRegistry, tmpfs_root: TmpfsRoot) -> None:
    # 12 MiB of noise fits as a blob (12 MiB) but not twice (blob + unpacked file) on 20 MiB.
    big = hostile.add_image("big", [LayerBuilder().file("noise", os.urandom(12 << 20)).bytes()])
    r = tmpfs_root.ctrpy("pull", "-q", "--plain-http", "--snapshotter", "native", big)
    assert r.returncode == NO_SPACE, r.stderr
    line = error_line(r)
    # The layer is applied while it downloads (issue 17), so the disk fills either in the unpack (the file it
    # was writing) or in the download (the ingest): either way the line names the layer and the cause.
    assert "no space left on device" in line.lower(), line
    assert ("layer sha256:" in line and "'noise'" in line) or "content ingest 'layer-sha256:" in line, line
    # No image claims to be complete, no half-applied snapshot is left, the space is back.
    assert tmpfs_root.ctrpy("images", "ls", "-q").stdout.strip() == ""
    r = tmpfs_root.ctrpy("snapshots", "--snapshotter", "native", "ls")
    assert r.returncode == 0 and "extract-" not in r.stdout, r.stdout
    # `gc` frees the blobs of the failed pull (its lease is gone), so a smaller image fits again.
    r = tmpfs_root.ctrpy("gc")
    assert r.returncode == 0, r.stderr
    assert tmpfs_root.free() > 18 << 20
    small = hostile.add_image("small", [LayerBuilder().file("hello", "hi\n").bytes()])
    assert tmpfs_root.ctrpy("pull", "-q", "--plain-http", "--snapshotter", "native", small).returncode == 0
    store_is_sound(tmpfs_root)


def test_full_state_directory(tmp_path: Path) -> None:
    mountpoint = tmp_path / "state"
    mountpoint.mkdir()
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "busybox").write_bytes(Path("/bin/busybox").read_bytes())
    (rootfs / "bin" / "busybox").chmod(0o755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)], check=True)
    try:
        argv = [CTRPY, "--root", str(tmp_path / "root"), "--state", str(mountpoint / "s")]
        env = {**os.environ, "CTRPY_CONFIG": str(tmp_path / "none.toml")}
        run = argv + ["run", "--rm", "--net", "none", "--rootfs", str(rootfs), "c1", "/bin/busybox", "true"]
        filler = mountpoint / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
        r = subprocess.run(run, capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == NO_SPACE, r.stderr
        assert error_line(r) == (f"ctrpy: create task 'c1': state directory ({mountpoint}/s/default/c1): no space "
                                 "left on device")
        r = subprocess.run(argv + ["containers", "ls", "-q"], capture_output=True, text=True, env=env)
        assert r.stdout.strip() == ""  # --rm cleaned up
        filler.unlink()
        r = subprocess.run(run, capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_ingest_writes_that_do_not_fit_in_process(tmpfs_root: TmpfsRoot) -> None:
    """The content store's writer on a full disk, small writes that sit in a buffer included."""
    from ctrpy.runtime import errors

    client = Client(tmpfs_root.root, tmpfs_root.state)
    assert client.namespaces.list() is not None
    tmpfs_root.fill(leave=64 << 10)
    for chunk in (1 << 20, 1000):  # one big write; many small buffered ones
        with pytest.raises(errors.NoSpace) as info:
            with client.content.writer(f"w{chunk}", total=8 << 20) as w:
                for _ in range((8 << 20) // chunk):
                    w.write(os.urandom(chunk))
        assert "partial download removed" in str(info.value) and "\n" not in str(info.value)
        assert [s.ref for s in client.content.statuses()] == []
    client.db.close()
    tmpfs_root.unfill()
    store_is_sound(tmpfs_root)
