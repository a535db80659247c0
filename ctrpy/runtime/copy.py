"""`ctrpy cp`: copy files between a container and the host, as `docker cp` does.

Paths inside the container are resolved with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) against the
container's root (the running init's /proc/PID/root, which includes its volumes; else the container's
snapshot, mounted for the copy by unpack.apply_to_mounts), so a symbolic link in the container can never lead the copy out of it.
The copy itself is `cp -a` (owners, modes, times, links and xattrs kept) through the resolved descriptor.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ctrpy.runtime import errors
from ctrpy.runtime.archive import _O_PATH, _RESOLVE_IN_ROOT, _RESOLVE_NO_MAGICLINKS, _openat2

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

T = TypeVar("T")


def with_root(client: Client, container_id: str, fn: Callable[[int], T]) -> T:
    """fn(an O_PATH descriptor of the container's root directory)."""
    tasks = client.tasks
    if tasks.exists(container_id):
        st = tasks.state(container_id)
        if st.pid and st.status.value in ("running", "paused", "created"):
            return _with_dir(f"/proc/{st.pid}/root", fn)
    container = client.containers.get(container_id)
    if container.snapshot_key:
        from ctrpy.runtime.unpack import apply_to_mounts

        mounts = client.snapshotter(container.snapshotter).mounts(container.snapshot_key)
        return apply_to_mounts(client, mounts, lambda directory: _with_dir(directory, fn))  # type: ignore[no-any-return]
    root = (container.spec.get("root") or {}).get("path", "")
    if not root or not os.path.isabs(root):
        raise errors.FailedPrecondition(f"container {container_id[:12]} has no root file system to copy from")
    return _with_dir(root, fn)


def _with_dir(path: str, fn: Callable[[int], T]) -> T:
    fd = os.open(path, _O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return fn(fd)
    finally:
        os.close(fd)


def _resolve(rootfd: int, path: str) -> int:
    rel = path.lstrip("/") or "."
    try:
        return _openat2(rootfd, rel, _O_PATH, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    except OSError as exc:
        raise errors.from_oserror(exc, f"{path} in the container") from None


def _cp(src: str, dst: str, fds: tuple[int, ...]) -> None:
    # -H: follow only the command-line /proc/self/fd/N links, never links inside the copied tree.
    r = subprocess.run(["cp", "-a", "-H", "--", src, dst], capture_output=True, text=True, pass_fds=fds)
    if r.returncode != 0:
        raise errors.Internal(f"copy failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")


def copy_out(client: Client, container_id: str, src: str, dest: str) -> None:
    """Container path `src` to host path `dest` (into it when it is a directory)."""
    def work(rootfd: int) -> None:
        fd = _resolve(rootfd, src)
        try:
            is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
            name = os.path.basename(src.rstrip("/")) or "root"
            target = os.path.join(dest, name) if os.path.isdir(dest) else dest
            if src.endswith("/.") and is_dir:  # docker's SRC/. copies the content
                os.makedirs(dest, exist_ok=True)
                _cp(f"/proc/self/fd/{fd}/.", dest, (fd,))
            else:
                _cp(f"/proc/self/fd/{fd}", target, (fd,))
        finally:
            os.close(fd)

    with_root(client, container_id, work)


def copy_in(client: Client, container_id: str, src: str, dest: str) -> None:
    """Host path `src` to container path `dest` (into it when it is a directory)."""
    if not os.path.lexists(src):
        raise errors.NotFound(f"{src}: no such file or directory")

    def work(rootfd: int) -> None:
        try:
            fd = _openat2(rootfd, dest.lstrip("/") or ".", _O_PATH, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
        except FileNotFoundError:
            fd = -1
        if fd >= 0 and stat.S_ISDIR(os.fstat(fd).st_mode):
            parent, name = fd, os.path.basename(os.path.abspath(src)) if not src.endswith("/.") else ""
        else:
            if fd >= 0:
                os.close(fd)
            parent = _resolve(rootfd, os.path.dirname(dest.rstrip("/")) or "/")
            name = os.path.basename(dest.rstrip("/"))
            if not stat.S_ISDIR(os.fstat(parent).st_mode):
                os.close(parent)
                raise errors.InvalidArgument(f"{os.path.dirname(dest)} in the container is not a directory")
        if name:
            # What is at the target is replaced, never written through: it may be a link leading anywhere.
            dirfd = os.open(f"/proc/self/fd/{parent}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                if not (stat.S_ISDIR(st.st_mode) and os.path.isdir(src)):
                    if stat.S_ISDIR(st.st_mode):
                        raise errors.InvalidArgument(f"cannot overwrite directory {dest} with a file")
                    os.unlink(name, dir_fd=dirfd)
            except FileNotFoundError:
                pass
            finally:
                os.close(dirfd)
        try:
            if not name:
                _cp(f"{src}", f"/proc/self/fd/{parent}/", (parent,))
            else:
                _cp(src, f"/proc/self/fd/{parent}/{name}", (parent,))
        finally:
            os.close(parent)

    with_root(client, container_id, work)
