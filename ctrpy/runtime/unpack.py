"""Unpack an image's layers into snapshots (containerd's core/unpack).

For each layer, bottom up, with chain IDs as snapshot names (OCI image-spec config.md):

    chain already committed in this namespace      -> nothing to do
    committed by another namespace on same parent  -> share its directory (no bytes written)
    otherwise  prepare("extract-<random> <chain>", parent) -> mount -> apply the layer -> unmount
               -> commit(<chain>)

On overlayfs the next layer is staged meanwhile (containerd 2.2's concurrent unpacks, issue 17): while
layer n is applied, layer n+1 is applied in a thread into a parentless `stage-<random> <chain>` snapshot's
directory; once n is committed, layerstage.finish fixes that directory up against the layers below (through
the new snapshot's empty overlay mount) and it becomes the upper dir of `extract-... <chain>`, committed in
order. A layer that depends on the layers below in ways staging does not reproduce (archive.NeedsParent) or
whose staged apply failed is applied the sequential way. native copies its parent: always sequential.

All of it runs inside a lease (24 h expiry), so a concurrent GC never takes a half-unpacked chain.

One unpack per chain ID across processes (containerd 2.x's unpack lock): the prepare/apply/commit of a chain
runs under flock on `<root>/locks/unpack-<snapshotter>-<chain hex>`. A second process pulling an image with
the same layer waits there and then finds the chain committed (or shares it from another namespace); a
killed holder's lock dies with it. A pull streams layers into the unpacker through `opener` (pull.py): the
layer is applied while it downloads, and the snapshot is committed only once the blob's digest matched.
The unpacked state is recorded like containerd: the config blob gets the label
`containerd.io/gc.ref.snapshot.<snapshotter>=<top chain ID>`, which also keeps the snapshots alive for GC
while the image exists. Layers are checked against the config's diff IDs as they are applied.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors
from ctrpy.runtime.mount import Mount, is_mount_point, mount_all, unmount_all

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."
SNAPSHOT_REF_LABEL = "containerd.io/snapshot.ref"
LOCK_DIR = "locks"
TMPMOUNTS_DIR = "tmpmounts"


class TempMounts:
    """ROOT/tmpmounts: apply_to_mounts mounts a snapshot on a fresh directory here for each apply. A killed
    unpack leaves its directory behind, maybe still mounted: gc unmounts the stale mounts below (`holds` tells
    them from a user's mounts elsewhere; only gc knows which snapshots are still live, `release`) and then
    removes the idle directories (`leftovers`, `remove`)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.base = Path(root).absolute() / TMPMOUNTS_DIR
        # mountinfo shows resolved paths: a root reached through a symlink is matched both ways
        self._prefixes = tuple({str(self.base).rstrip("/") + "/", os.path.realpath(self.base).rstrip("/") + "/"})

    def new_dir(self) -> Path:
        self.base.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = self.base / os.urandom(8).hex()
        target.mkdir(mode=0o700)
        return target

    def holds(self, mount_point: str) -> bool:
        """Whether `mount_point` (as mountinfo shows it) is below ROOT/tmpmounts."""
        return mount_point.startswith(self._prefixes)

    def leftovers(self, idle_since: float) -> Iterator[Path]:
        """Entries unchanged since `idle_since` (epoch seconds) and not mounted on: a live apply mounts right
        after it creates its directory, so only an old and empty one is a killed apply's."""
        try:
            names = sorted(os.listdir(self.base))
        except FileNotFoundError:
            return
        for name in names:
            path = self.base / name
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            if st.st_mtime <= idle_since and not is_mount_point(path):
                yield path

    def release(self, mount_point: str) -> None:
        """Unmount a killed apply's mount point (detached when still busy: the kernel frees it once idle) and
        remove its directory."""
        if not self.holds(mount_point):
            raise errors.InvalidArgument(f"{mount_point} is not below {self.base}")
        try:
            unmount_all(mount_point)
        except errors.FailedPrecondition:
            unmount_all(mount_point, detach=True)
        os.rmdir(mount_point)

    def remove(self, path: Path) -> None:
        """Remove one leftover directory (OSError when it is not empty or no longer ours to remove)."""
        path.rmdir()


class RestartLayer(Exception):
    """Raised by a streaming layer source whose download started over (a server ignored a Range request):
    what was applied is discarded and the layer is applied again from the start."""


@dataclass
class LayerEvent:
    """Progress of one layer: status is 'exists', 'shared', 'applying' or 'applied'."""

    index: int
    total: int
    digest: str
    chain_id: str
    status: str
    seconds: float = 0.0
    bytes: int = 0


def _matcher(platform: Any) -> Any:
    if platform is None or not isinstance(platform, str):
        return platform
    from ctrpy.runtime import platforms

    return platforms.Matcher(platforms.parse(platform))


def _image(client: Client, image: Any) -> Any:
    return client.images.get(image) if isinstance(image, str) else image


def resolve_chain(client: Client, image: Any, platform: Any = None) -> tuple[Any, list[str]]:
    """(ImageManifest, chain IDs) of the image for `platform` (host by default)."""
    from ctrpy.runtime import images

    im = images.resolve(client.content, _image(client, image), _matcher(platform))
    return im, images.chain_ids(im.diff_ids)


def is_unpacked(client: Client, image: Any, *, snapshotter: str | None = None, platform: Any = None) -> bool:
    """True when the image's top chain ID is committed in the snapshotter (this namespace)."""
    name = snapshotter or client.config["default_snapshotter"]
    try:
        _, chain = resolve_chain(client, image, platform)
    except errors.NotFound:
        return False
    if not chain:
        return False
    try:
        client.snapshotter(name).stat(chain[-1])
        return True
    except errors.NotFound:
        return False


def _apply_dir(mounts: list[Mount]) -> str | None:
    """The directory to apply into without mounting anything (a plain writable bind), else None."""
    if len(mounts) == 1 and mounts[0].type == "bind" and "ro" not in mounts[0].options:
        return mounts[0].source
    return None


def _empty_dir(path: str) -> None:
    """Remove what `path` holds (best effort), keeping `path`: a failed apply gives its space back at once."""
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def apply_to_mounts(client: Client, mounts: list[Mount], fn: Callable[[str], Any]) -> Any:
    """Run fn(dir) with `mounts` mounted on a fresh directory under the root, unmounting afterwards."""
    direct = _apply_dir(mounts)
    if direct is not None:
        return fn(direct)
    target = TempMounts(client.root).new_dir()
    try:
        mount_all(mounts, target)
        try:
            return fn(str(target))
        finally:
            unmount_all(target, detach=False)
    finally:
        try:
            target.rmdir()
        except OSError:
            unmount_all(target, detach=True)
            if not is_mount_point(target):  # never delete through a mount (it would empty the snapshot)
                shutil.rmtree(target, ignore_errors=True)


@contextlib.contextmanager
def chain_lock(client: Client, snapshotter: str, chain_id: str,
               check: Callable[[], None] | None = None, *, blocking: bool = True) -> Iterator[None]:
    """Hold the cross-process unpack lock of one chain ID (flock: a killed holder releases it).

    The file is unlinked on release; a waiter that then wins the lock of the unlinked inode starts over
    on a fresh file, so two holders never overlap. `check()` runs while waiting (deadline, cancel)."""
    base = os.path.join(os.fspath(client.root), LOCK_DIR)
    os.makedirs(base, mode=0o700, exist_ok=True)
    path = os.path.join(base, f"unpack-{snapshotter}-{chain_id.split(':', 1)[-1]}")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            delay = 0.005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not blocking:
                        raise
                    if check is not None:
                        check()
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _store_opener(client: Client, layer: Any) -> Any:
    if not client.content.exists(layer.digest):
        raise errors.NotFound(f"layer {layer.digest} of image is not in the content store (pull it first)")
    return client.content.open(layer.digest)


def _freeing_on_full_disk(mounts: list[Mount], fn: Callable[[str], Any]) -> Callable[[str], Any]:
    """fn(dir), but when the disk fills up, first delete what the layer wrote so far: the metadata database
    lives on the same disk and needs room to forget the half-applied snapshot (i15: a full disk must not
    wedge the store)."""
    def run(directory: str) -> Any:
        try:
            return fn(directory)
        except errors.NoSpace:
            upper = [o.split("=", 1)[1] for m in mounts if m.type == "overlay" for o in m.options
                     if o.startswith("upperdir=")]
            _empty_dir(upper[0] if upper else directory)
            raise
    return run


def unpack_image(
    client: Client,
    image: Any,
    snapshotter: str | None = None,
    *,
    platform: Any = None,
    progress: Callable[[LayerEvent], None] | None = None,
    threaded: bool = True,
    opener: Callable[[Any], Any] | None = None,
    check: Callable[[], None] | None = None,
    concurrent: bool = True,
) -> str:
    """Unpack `image` (an Image or a name) into `snapshotter`; returns the top chain ID.

    `opener(layer)` returns a context manager yielding the layer blob's bytes (default: the content store);
    a pull passes one that streams the download. `check()` runs while waiting for another process.
    `concurrent`: on overlayfs, apply the next layer into a snapshot of its own while this one is applied,
    committing in order (see _Stager and layerstage); layers that need their parents are applied again
    through the mount."""
    name = snapshotter or client.config["default_snapshotter"]
    sn = client.snapshotter(name)
    im, chain = resolve_chain(client, image, platform)
    if not chain:
        raise errors.InvalidArgument(f"image {getattr(_image(client, image), 'name', image)!r} has no layers")
    total = len(chain)
    label = GC_REF_SNAPSHOT + name
    try:
        sn.stat(chain[-1])
    except errors.NotFound:
        pass
    else:
        # Fast path (every `run` of an unpacked image): no lease, no write unless the label is missing.
        if client.content.info(im.config_desc.digest).labels.get(label) != chain[-1]:
            client.content.update_labels(im.config_desc.digest, {label: chain[-1]})
        if progress:
            for index, (layer, chain_id) in enumerate(zip(im.layers, chain)):
                progress(LayerEvent(index, total, layer.digest, chain_id, "exists"))
        return chain[-1]
    source = opener or (lambda desc: _store_opener(client, desc))
    staging = concurrent and threaded and name == STAGING_SNAPSHOTTER and total > 1
    with client.leases.lease(expire=86400) as lease_id:
        parent = ""
        ahead: _Stager | None = None
        try:
            for index, (layer, diff_id, chain_id) in enumerate(zip(im.layers, im.diff_ids, chain)):
                event = LayerEvent(index, total, layer.digest, chain_id, "exists")
                resource_type = f"snapshots/{name}"
                # Lease the chain snapshot before looking at it: a concurrent GC must not take a layer between
                # our stat/commit and the lease (adding a resource does not require it to exist yet).
                client.leases.add_resource(lease_id, resource_type, chain_id)
                mine, ahead = ahead, None

                def stage_next(index: int = index) -> None:
                    # Only once this layer is known to need applying: when it was shared from another
                    # namespace or committed meanwhile, the next one most likely is too.
                    nonlocal ahead
                    if staging and index + 1 < total and ahead is None:
                        ahead = _Stager.start(client, sn, name, lease_id, im.layers[index + 1],
                                              im.diff_ids[index + 1], chain[index + 1], source)

                try:
                    if mine is not None:
                        # Ours to commit: its chain lock is held since staging began.
                        _unpack_layer(client, sn, name, lease_id, event, layer, diff_id, parent, progress,
                                      threaded, source, mine, stage_next)
                    else:
                        try:
                            sn.stat(chain_id)
                        except errors.NotFound:
                            with chain_lock(client, name, chain_id, check):
                                _unpack_layer(client, sn, name, lease_id, event, layer, diff_id, parent,
                                              progress, threaded, source, None, stage_next)
                finally:
                    if mine is not None:
                        mine.close()
                if progress:
                    progress(event)
                parent = chain_id
        finally:
            if ahead is not None:
                ahead.close()
        top = chain[-1]
        client.content.update_labels(im.config_desc.digest, {label: top})
    return top


# Layers are staged ahead (applied into their own upper dir while the layer below is still being applied)
# only on overlayfs, where a layer's diff is a directory of its own; native copies its parent.
STAGING_SNAPSHOTTER = "overlayfs"


class _Stop(Exception):
    """The staged apply was told to stop (the unpack failed below it)."""


class _Stoppable:
    """A blob reader that ends a staged apply when the unpack gives up."""

    def __init__(self, blob: Any, stop: threading.Event) -> None:
        self.blob = blob
        self.stop = stop

    def read(self, size: int = -1) -> bytes:
        if self.stop.is_set():
            raise _Stop()
        return bytes(self.blob.read(size))


class _Stager:
    """Layer n+1 applied in a thread into a parentless snapshot while layer n is applied (issue 17).

    It holds the chain's cross-process lock from the start (taken without waiting: when another process
    is unpacking that chain, nothing is staged and the layer goes the sequential way). The snapshot is
    leased like the sequential path's `extract-` snapshot, so a killed pull leaves nothing GC keeps."""

    def __init__(self, sn: Any, key: str, directory: str, lock: contextlib.ExitStack) -> None:
        self.sn = sn
        self.key = key
        self.directory = directory
        self.lock = lock
        self.stop = threading.Event()
        self.stats: Any = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    @classmethod
    def start(cls, client: Client, sn: Any, name: str, lease_id: str, layer: Any, diff_id: str, chain_id: str,
              source: Callable[[Any], Any]) -> _Stager | None:
        from ctrpy.runtime import archive

        client.leases.add_resource(lease_id, f"snapshots/{name}", chain_id)
        try:
            sn.stat(chain_id)
            return None
        except errors.NotFound:
            pass
        lock = contextlib.ExitStack()
        try:
            lock.enter_context(chain_lock(client, name, chain_id, blocking=False))
        except BlockingIOError:
            return None
        try:
            try:
                sn.stat(chain_id)
                lock.close()
                return None
            except errors.NotFound:
                pass
            key = f"stage-{os.urandom(6).hex()} {chain_id}"
            client.leases.add_resource(lease_id, f"snapshots/{name}", key)
            mounts = sn.prepare(key, "", labels={SNAPSHOT_REF_LABEL: chain_id})
            directory = _apply_dir(mounts)
            if directory is None:
                sn.remove(key)
                lock.close()
                return None
        except BaseException:
            lock.close()
            raise
        stager = cls(sn, key, directory, lock)

        def run() -> None:
            try:
                with source(layer) as blob:
                    stager.stats = archive.apply_layer_blob(
                        directory, _Stoppable(blob, stager.stop), media_type=layer.media_type,  # type: ignore[arg-type]
                        layer=layer.digest, diff_id=diff_id, threaded=True, staged=True)
            except BaseException as exc:  # noqa: BLE001 - the unpacking thread decides
                stager.error = exc
                # Free the space now (a full disk needs it back for the metadata database's clean-up).
                _empty_dir(directory)

        stager.thread = threading.Thread(target=run, name="layer-stage", daemon=True)
        stager.thread.start()
        return stager

    def wait(self, check: Callable[[], None] | None = None) -> bool:
        """Wait for the staged apply; True when it can be used (else the layer is applied sequentially)."""
        assert self.thread is not None
        while self.thread.is_alive():
            self.thread.join(0.1)
            if check is not None:
                try:
                    check()
                except BaseException:
                    self.stop.set()
                    raise
        return self.error is None and self.stats is not None and self.stats.staged is not None

    def close(self) -> None:
        """Stop the staged apply if still running, drop its snapshot, release the chain lock."""
        try:
            self.stop.set()
            if self.thread is not None:
                self.thread.join()
            with contextlib.suppress(errors.CtrpyError):
                self.sn.remove(self.key)  # its directory, when used, is another snapshot's upper dir now
        finally:
            self.lock.close()


def _use_staged(client: Client, sn: Any, stager: _Stager, key: str, mounts: list[Mount]) -> None:
    """Fix the staged directory up against the parent (through the new snapshot's empty overlay), then make
    it the new snapshot's upper dir."""
    from ctrpy.runtime import layerstage

    upper = [o.split("=", 1)[1] for m in mounts if m.type == "overlay" for o in m.options
             if o.startswith("upperdir=")]
    if len(upper) != 1:
        from ctrpy.runtime.archive import NeedsParent

        raise NeedsParent("the snapshot is not an overlay with an upper dir")
    root = os.stat(upper[0])
    apply_to_mounts(client, mounts, lambda d: layerstage.finish(stager.directory, d, stager.stats.staged, root))
    # The new snapshot's upper dir is empty (nothing was written through the mount): put the staged one there.
    os.rename(stager.directory, upper[0])


def _unpack_layer(client: Client, sn: Any, name: str, lease_id: str, event: LayerEvent, layer: Any, diff_id: str,
                  parent: str, progress: Callable[[LayerEvent], None] | None, threaded: bool,
                  opener: Callable[[Any], Any], staged: _Stager | None = None,
                  before_apply: Callable[[], None] | None = None) -> None:
    """Under the chain's lock: find it committed meanwhile, share it, or apply the layer and commit it
    (from `staged` when that apply succeeded and fits its parent)."""
    from ctrpy.runtime import archive  # only now: the fast path of unpack_image stays cheap for `run`

    chain_id = event.chain_id
    try:
        sn.stat(chain_id)
        return  # the holder before us committed it
    except errors.NotFound:
        pass
    if sn.share(chain_id, parent):
        event.status = "shared"
        return
    if progress:
        progress(LayerEvent(event.index, event.total, layer.digest, chain_id, "applying"))
    started = time.monotonic()
    if before_apply is not None:
        before_apply()
    if staged is not None and staged.wait():
        key = f"extract-{os.urandom(6).hex()} {chain_id}"
        client.leases.add_resource(lease_id, f"snapshots/{name}", key)
        mounts = sn.prepare(key, parent, labels={SNAPSHOT_REF_LABEL: chain_id})
        try:
            _use_staged(client, sn, staged, key, mounts)
            try:
                sn.commit(chain_id, key)
            except errors.AlreadyExists:
                sn.remove(key)
        except archive.NeedsParent:
            with contextlib.suppress(errors.CtrpyError):
                sn.remove(key)
        except BaseException:
            with contextlib.suppress(errors.CtrpyError):
                sn.remove(key)
            raise
        else:
            event.status = "applied"
            event.seconds = time.monotonic() - started
            event.bytes = staged.stats.bytes
            return
    for attempt in range(3):
        key = f"extract-{os.urandom(6).hex()} {chain_id}"
        client.leases.add_resource(lease_id, f"snapshots/{name}", key)
        mounts = sn.prepare(key, parent, labels={SNAPSHOT_REF_LABEL: chain_id})
        try:
            with opener(layer) as blob:
                stats = apply_to_mounts(
                    client,
                    mounts,
                    _freeing_on_full_disk(mounts, lambda d: archive.apply_layer_blob(
                        d, blob, media_type=layer.media_type, layer=layer.digest, diff_id=diff_id,
                        threaded=threaded,
                    )),
                )
            # Only now, with the blob's digest checked (the opener's stream ends at its commit) and the diff
            # ID matched, does the layer become visible.
            try:
                sn.commit(chain_id, key)
            except errors.AlreadyExists:
                sn.remove(key)  # another unpack of the same chain won the race: use its result
        except RestartLayer:
            with contextlib.suppress(errors.CtrpyError):
                sn.remove(key)
            if attempt == 2:
                raise errors.Unavailable(f"layer {layer.digest}: its download restarted too often") from None
            continue
        except BaseException:
            with contextlib.suppress(errors.CtrpyError):
                sn.remove(key)
            raise
        break
    event.status = "applied"
    event.seconds = time.monotonic() - started
    event.bytes = stats.bytes


__all__ = ["LayerEvent", "RestartLayer", "TempMounts", "chain_lock", "apply_to_mounts", "is_unpacked", "resolve_chain", "unpack_image"]
