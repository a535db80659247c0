"""Streaming unpack and one unpack per chain ID (issue 17): layers are applied while they download, the
snapshot is committed only once the blob verified, and concurrent pulls apply each shared layer once."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ctrpy.runtime.client import Client
from support import testimages
from support.registry import FaultProxy, Registry

CTRPY = str(Path(sys.executable).parent / "ctrpy")


def _layer(test_images: Any) -> dict:
    manifest = json.loads(testimages.read_blob(test_images.busybox, test_images.busybox_desc["digest"]))
    return manifest["layers"][0]


def _busybox_chain() -> str:
    # One layer: its chain ID is its diff ID, the digest of the uncompressed tar.
    return "sha256:" + hashlib.sha256(testimages.busybox_layer()).hexdigest()


def _lock_path(dirs: Any, chain_id: str, snapshotter: str = "native") -> Path:
    return dirs.root / "locks" / f"unpack-{snapshotter}-{chain_id.split(':', 1)[1]}"


def _is_locked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _pull(dirs: Any, ref: str, *extra: str, snapshotter: str = "native") -> subprocess.Popen:
    return subprocess.Popen([CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "pull",
                             "--snapshotter", snapshotter, *extra, ref],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(what: str, cond: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _finish(procs: list[subprocess.Popen], timeout: float = 120) -> list[tuple[str, str]]:
    try:
        return [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _snapshots(dirs: Any, snapshotter: str = "native") -> list[tuple[str, str]]:
    """(kind, name) of every snapshot in `snapshotter`, as `snapshots ls` shows them."""
    client = Client(dirs.root, dirs.state)
    out: list[tuple[str, str]] = []
    client.snapshotter(snapshotter).walk(lambda info: out.append((info.kind, info.name)))
    return out


def test_layer_is_applied_while_it_downloads(fault_proxy: FaultProxy, dirs: Any, test_images: Any) -> None:
    layer = _layer(test_images)
    fault_proxy.stall[layer["digest"]] = layer["size"] * 9 // 10
    proc = _pull(dirs, f"{fault_proxy.host}/busybox:latest")
    try:
        client = Client(dirs.root, dirs.state)
        sn = client.snapshotter("native")

        def applied_so_far() -> bool:
            active = [name for kind, name in _snapshots(dirs) if kind == "active"]
            if not active:
                return False
            source = Path(sn.mounts(active[0])[0].source)
            return (source / "home" / "app").is_dir() and (source / "bin" / "busybox").exists()

        # The download is stuck at 90%: the layer's first entries are on disk already, nothing is committed.
        _wait_for("the first entries of the stalled layer", applied_so_far)
        assert proc.poll() is None
        assert [kind for kind, _ in _snapshots(dirs)] == ["active"]
        assert not client.content.exists(layer["digest"])
        assert client.images.list() == []
        fault_proxy.release.set()  # the proxy then closes the connection: the body is truncated
        [(_, err)] = _finish([proc])
    finally:
        fault_proxy.release.set()
    assert proc.returncode == 7 and "truncated" in err, err
    assert _snapshots(dirs) == []  # what was applied of an unverified layer is discarded
    del fault_proxy.stall[layer["digest"]]
    proc = _pull(dirs, f"{fault_proxy.host}/busybox:latest")
    [(_, err)] = _finish([proc])
    assert proc.returncode == 0, err
    assert _snapshots(dirs) == [("committed", _busybox_chain())]
    assert client.content.exists(layer["digest"])  # the blob is committed to the content store too


def test_tampered_layer_streamed_leaves_no_snapshot(fault_proxy: FaultProxy, dirs: Any, test_images: Any) -> None:
    layer = _layer(test_images)
    fault_proxy.tamper.add(layer["digest"])
    proc = _pull(dirs, f"{fault_proxy.host}/busybox:latest")
    [(_, err)] = _finish([proc])
    assert proc.returncode == 6, err
    assert err.splitlines()[-1].startswith(f"ctrpy: layer {layer['digest']} failed verification")
    assert _snapshots(dirs) == []  # applied while downloading, discarded when the digest did not match
    client = Client(dirs.root, dirs.state)
    assert not client.content.exists(layer["digest"])
    assert client.images.list() == []


def test_resumed_download_applies_the_whole_layer(fault_proxy: FaultProxy, dirs: Any, test_images: Any) -> None:
    layer = _layer(test_images)
    half = layer["size"] // 2
    fault_proxy.truncate[layer["digest"]] = half
    ref = f"{fault_proxy.host}/busybox:latest"
    [(_, err)] = _finish([_pull(dirs, ref)])
    assert "truncated" in err and _snapshots(dirs) == []
    del fault_proxy.truncate[layer["digest"]]
    proc = _pull(dirs, ref)
    [(_, err)] = _finish([proc])
    assert proc.returncode == 0, err
    [(_, first), (rng, second)] = [(e[2], e[4]) for e in fault_proxy.blob_gets(layer["digest"])]
    assert rng == f"bytes={half}-" and second == layer["size"] - half
    # The apply read the ingest from its first byte: the file spanning the resume point is whole.
    sn = Client(dirs.root, dirs.state).snapshotter("native")
    mounts = sn.view("check", _busybox_chain())
    try:
        busybox = Path(mounts[0].source) / "bin" / "busybox"
        assert busybox.read_bytes() == Path(testimages.BUSYBOX).read_bytes()
    finally:
        sn.remove("check")


@pytest.mark.slow
@pytest.mark.parametrize("snapshotter", ["native", "overlayfs"])  # overlayfs: layers staged ahead too
def test_concurrent_pulls_apply_each_shared_layer_once(seeded_registry: Registry, dirs: Any,
                                                      test_images: Any, snapshotter: str) -> None:
    # `layered` (OCI: gzip, zstd, none, gzip) and `docker` (schema2, all gzip) hold the same four layers as
    # different blobs: the same four chain IDs. The test holds the first chain's lock so both pulls queue.
    lock = _lock_path(dirs, _busybox_chain(), snapshotter)
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        procs = [_pull(dirs, f"{seeded_registry.host}/{name}:latest", snapshotter=snapshotter)
                 for name in ("layered", "docker")]
        time.sleep(1.5)
        assert [p.poll() for p in procs] == [None, None]  # both wait for the first layer
    finally:
        os.unlink(lock)
        os.close(fd)
    results = _finish(procs)
    assert [p.returncode for p in procs] == [0, 0], results
    applied = sum(err.count(": unpacked") for _, err in results)
    assert applied == 4, results  # each of the 4 chains applied by one pull; the other found it committed
    assert sorted(kind for kind, _ in _snapshots(dirs, snapshotter)) == ["committed"] * 4
    assert not list((dirs.root / "locks").iterdir())  # released locks are removed


@pytest.mark.slow
def test_sigkilled_unpacker_does_not_block_the_next(fault_proxy: FaultProxy, seeded_registry: Registry,
                                                   dirs: Any, test_images: Any) -> None:
    layer = _layer(test_images)
    fault_proxy.stall[layer["digest"]] = layer["size"] // 2
    lock = _lock_path(dirs, _busybox_chain())
    first = _pull(dirs, f"{fault_proxy.host}/busybox:latest")
    second = None
    try:
        _wait_for("the first pull to hold the chain's unpack lock", lambda: _is_locked(lock))
        # The same layer through another registry name: another image, the same chain ID.
        second = _pull(dirs, f"{seeded_registry.host}/busybox:latest")
        time.sleep(1.0)
        assert second.poll() is None  # waiting for the holder
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        [(_, err)] = _finish([second])
    finally:
        fault_proxy.release.set()
        _finish([p for p in (first, second) if p is not None])
    assert second.returncode == 0, err
    assert "layer" in err and ": unpacked" in err
    committed = [name for kind, name in _snapshots(dirs) if kind == "committed"]
    assert committed == [_busybox_chain()]
