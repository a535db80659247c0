"""Mounts as data, and the two functions that turn them into real mounts.

`Mount(type, source, target, options)` is what snapshotters hand out and what tasks take as their root
filesystem; neither side imports the other (containerd's core/mount). `mount_all(mounts, target)` mounts
them in order below `target`, `unmount_all(target)` undoes every mount stacked on `target`.

Mounting goes straight to mount(2) through ctypes: about 16 times cheaper than running mount(8) (see
BENCH_NOTES at the bottom). The data argument of mount(2) is limited to one page, so an overlay of many
layers with long absolute lowerdir paths does not fit (containerd hits this near 30 layers). When the
options are too long, the lower/upper/work paths are rewritten relative to their common parent and the
mount is done with that parent as the working directory, which is what containerd does too.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from ctrpy.runtime import errors
from ctrpy.runtime.linux import mountflags, mountinfo
from ctrpy.runtime.linux.mountflags import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REMOUNT,
    UMOUNT_NOFOLLOW,
)

PAGE_SIZE = os.sysconf("SC_PAGESIZE")

# Overlay options that name directories; rewritten relative to a common parent when the data is too long.
_PATH_OPTIONS = ("lowerdir", "upperdir", "workdir")

_libc: ctypes.CDLL | None = None
_cwd_lock = threading.Lock()


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        # The process's own symbols include libc; find_library would run ldconfig (milliseconds).
        lib = ctypes.CDLL(None, use_errno=True)
        lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
        lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc = lib
    return _libc


@dataclass(frozen=True)
class Mount:
    """One mount: `type` (overlay, bind, tmpfs...), `source`, optional `target` below the mount root, options."""

    type: str
    source: str
    target: str | None = None
    options: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"type": self.type, "source": self.source, "options": list(self.options)}
        if self.target:
            out["target"] = self.target
        return out

    def command(self, target: str) -> str:
        """The mount(8) command line doing this mount (what `ctr snapshots mounts` prints)."""
        opts = ",".join(self.options)
        return f"mount -t {self.type} {self.source} {target}" + (f" -o {opts}" if opts else "")

    @property
    def read_only(self) -> bool:
        return "ro" in self.options


def _sys_mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    lib = _lib()
    rc = lib.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        hint = ""
        if fstype == "overlay" and err == _errno.EINVAL:
            # The usual cause: the root directory sits on a file system that cannot hold an overlay upper
            # layer (overlayfs itself, some network file systems).
            hint = " (if the root directory's file system cannot back overlayfs, use --snapshotter native)"
        exc = errors.from_errno(err, f"mount {fstype or 'bind'} {source} on {target}")
        exc.message += hint
        raise exc


def _shorten(data: str) -> tuple[str, str | None]:
    """Rewrite overlay directory options relative to their common parent: (new data, directory to chdir to)."""
    parts = data.split(",")
    paths: list[str] = []
    for part in parts:
        key, _, value = part.partition("=")
        if key in _PATH_OPTIONS:
            paths.extend(p for p in value.split(":") if p)
    if not paths or not all(os.path.isabs(p) for p in paths):
        return data, None
    common = os.path.commonpath(paths)
    if common in paths:
        common = os.path.dirname(common)
    out = []
    for part in parts:
        key, sep, value = part.partition("=")
        if key in _PATH_OPTIONS:
            value = ":".join(os.path.relpath(p, common) if p else p for p in value.split(":"))
        out.append(key + sep + value)
    return ",".join(out), common


VOLATILE = "volatile"


def volatile(mounts: Sequence[Mount]) -> list[Mount]:
    """`mounts` with overlayfs's `volatile` on each writable overlay, for a root filesystem thrown away when
    its container exits (`run --rm`, as podman does): overlayfs then never syncs the upper layer's file
    system, neither for the container's fsyncs nor at unmount, where a plain overlay syncs the whole file
    system holding the upper layer (10-100 ms on a busy disk, the largest single cost of `run --rm`)."""
    return [Mount(m.type, m.source, m.target, (*m.options, VOLATILE))
            if m.type == "overlay" and any(o.startswith("upperdir=") for o in m.options) else m for m in mounts]


def _clear_volatile_marker(data: str) -> None:
    """A volatile overlay leaves a marker behind (`incompat/volatile` in the `work` directory of its
    workdir), and the kernel refuses to mount that upper layer again while it exists (its content may be torn
    after a crash). The upper layer of a volatile mount is disposable by definition, so a second mount of it
    (a restarted task) clears it."""
    for part in data.split(","):
        key, _, value = part.partition("=")
        if key == "workdir" and value:
            marker = os.path.join(value, "work", "incompat", VOLATILE)
            for directory, dirs, files in os.walk(marker, topdown=False):
                for name in files:
                    os.unlink(os.path.join(directory, name))
                for name in dirs:
                    os.rmdir(os.path.join(directory, name))
            if os.path.isdir(marker):
                os.rmdir(marker)


def mount(m: Mount, target: str) -> None:
    """Mount one Mount on `target` (an existing directory)."""
    if m.type == "overlay" and VOLATILE in m.options:
        _clear_volatile_marker(mountflags.parse(m.options)[2])
        try:
            _mount(m, target)
            return
        except errors.InvalidArgument:
            # A kernel older than 5.10 does not know the option: the plain mount is as correct, only slower.
            m = Mount(m.type, m.source, m.target, tuple(o for o in m.options if o != VOLATILE))
    _mount(m, target)


def _mount(m: Mount, target: str) -> None:
    flags, propagation, data = mountflags.parse(m.options)
    target = os.path.abspath(target)
    if flags & MS_BIND:
        # A bind mount ignores MS_RDONLY and friends on creation: remount the bind to apply them.
        _sys_mount(m.source, target, None, flags, None)
        if flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC):
            _sys_mount("", target, None, flags | MS_REMOUNT, None)
    elif len(data) + 1 > PAGE_SIZE and m.type == "overlay":
        short, chdir_to = _shorten(data)
        if chdir_to is None or len(short) + 1 > PAGE_SIZE:
            raise errors.InvalidArgument(
                f"mount options of {m.type} on {target} are {len(data)} bytes, over the {PAGE_SIZE}-byte limit"
            )
        # The working directory is per process: hold a lock so no other thread of ours mounts meanwhile.
        with _cwd_lock:
            saved = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.chdir(chdir_to)
                _sys_mount(m.source, target, m.type, flags, short)
            finally:
                os.fchdir(saved)
                os.close(saved)
    else:
        _sys_mount(m.source, target, m.type, flags, data or None)
    if propagation:
        _sys_mount("", target, None, propagation, None)


def mount_all(mounts: Sequence[Mount], target: str | os.PathLike[str]) -> None:
    """Mount `mounts` in order on `target` (each at its own `target` below it, if set).

    On failure every mount done so far is undone, so a failed call leaves nothing mounted.
    """
    root = os.fspath(target)
    done: list[str] = []
    try:
        for m in mounts:
            where = os.path.join(root, m.target.lstrip("/")) if m.target else root
            mount(m, where)
            done.append(where)
    except BaseException:
        for where in reversed(done):
            unmount(where, detach=True)
        raise


def unmount(target: str | os.PathLike[str], *, detach: bool = False) -> bool:
    """Unmount the top mount on `target`; False if nothing was mounted there."""
    flags = UMOUNT_NOFOLLOW | (MNT_DETACH if detach else 0)
    rc = _lib().umount2(os.fsencode(os.fspath(target)), flags)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (_errno.EINVAL, _errno.ENOENT):
        return False
    if err == _errno.EBUSY and not detach:
        raise errors.FailedPrecondition(f"cannot unmount {os.fspath(target)}: it is busy (a process uses it)")
    raise errors.from_errno(err, f"unmount {os.fspath(target)}")


def unmount_all(target: str | os.PathLike[str], *, detach: bool = False) -> int:
    """Unmount everything stacked on and below `target`; returns how many mounts were removed."""
    count = 0
    for point in sorted(mount_points_under(os.fspath(target)), key=len, reverse=True):
        while unmount(point, detach=detach):
            count += 1
    return count


def mount_points_under(path: str) -> list[str]:
    """Mount points at or below `path`, from /proc/self/mountinfo (unique, in mount order). mountinfo shows
    resolved paths, so `path` is resolved first: a --root reached through a symlink must still find its mounts
    (else apply_to_mounts' cleanup took a live overlay for an empty directory and emptied the layer)."""
    path = os.path.realpath(path)
    prefix = path.rstrip("/") + "/"
    seen: list[str] = []
    for m in mountinfo.read():
        point = m.mount_point
        if (point == path or point.startswith(prefix)) and point not in seen:
            seen.append(point)
    return seen


def is_mount_point(path: str | os.PathLike[str]) -> bool:
    real = os.path.realpath(os.fspath(path))
    return real in mount_points_under(real)


# BENCH_NOTES (this machine, 2026-11, tmp dirs on ext4, machine shared with other test runs):
#   bind mount + remount ro + umount2 through ctypes:   0.25 ms per pair (300 pairs)
#   the same with mount(8) --bind -o ro + umount(8):      3.9 ms per pair (50 pairs), about 16x slower
#   overlay (3 lowers) mount + umount through ctypes:    1.4 ms per pair
