"""The overlayfs snapshotter backend (the default), like containerd's plugins/snapshots/overlay.

Each snapshot owns `fs` (its layer: overlay's upperdir while active, a lowerdir once committed) and `work`.
Mounts, by kind and number of parents:

    active, no parent     bind <id>/fs rw
    active, parents       overlay lowerdir=<parent fs, nearest first...>,upperdir=<id>/fs,workdir=<id>/work
    view, no parent       bind <id>/fs ro (empty)
    view, one parent      bind <parent>/fs ro
    view, parents         overlay lowerdir=<parent fs...> ro

Whiteouts and opaque directories are overlay's own: a file deleted through the mount becomes a 0:0
character device in the upper layer, a directory re-created over a deleted one gets
trusted.overlay.opaque=y. Long lowerdir lists are shortened by ctrpy.runtime.mount.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from ctrpy.runtime import errors
from ctrpy.runtime.mount import Mount
from ctrpy.runtime.snapshots import Kind
from ctrpy.runtime.snapshots.backend import Backend

# The kernel refuses more lower layers than this (OVL_MAX_STACK).
MAX_LOWER = 500


def _index_off() -> bool:
    # With index=on, an upper dir is tied to the lower dirs it was first mounted with; committed layers
    # are shared by many overlays, so turn it off where the kernel knows the option (as containerd does).
    return os.path.exists("/sys/module/overlay/parameters/index")


class OverlayBackend(Backend):
    name = "overlayfs"

    def __init__(self, root: str | os.PathLike[str], **options: Any) -> None:
        super().__init__(root, **options)
        self._extra = ("index=off",) if _index_off() else ()

    def create(self, sid: int, parents: list[int], kind: Kind) -> None:
        if len(parents) > MAX_LOWER:
            raise errors.InvalidArgument(f"overlayfs supports at most {MAX_LOWER} layers, this chain has {len(parents)}")
        path = self._mkdirs(sid)
        if kind == Kind.ACTIVE:
            (path / "work").mkdir(mode=0o711)
        if parents:
            # The merged root takes its owner, mode and times from the upper (or topmost) layer's root:
            # start from the parent's, so a base layer's "./" entry survives the layers above it.
            st = os.stat(self.fs(parents[0]))
            fs = self.fs(sid)
            os.chown(fs, st.st_uid, st.st_gid)
            os.chmod(fs, stat.S_IMODE(st.st_mode))
            os.utime(fs, ns=(st.st_atime_ns, st.st_mtime_ns))

    def mounts(self, sid: int, parents: list[int], kind: Kind) -> list[Mount]:
        ro = kind == Kind.VIEW
        if not parents:
            return [Mount("bind", str(self.fs(sid)), options=("rbind", "ro" if ro else "rw"))]
        if ro and len(parents) == 1:
            return [Mount("bind", str(self.fs(parents[0])), options=("rbind", "ro"))]
        lower = "lowerdir=" + ":".join(str(self.fs(p)) for p in parents)
        if ro:
            return [Mount("overlay", "overlay", options=(*self._extra, lower))]
        return [
            Mount(
                "overlay",
                "overlay",
                options=(*self._extra, f"workdir={self.dir(sid) / 'work'}", f"upperdir={self.fs(sid)}", lower),
            )
        ]

    def ids_in_mount(self, fstype: str, options: str) -> tuple[set[int], set[int]]:
        """Snapshots an overlay mount writes (upperdir, workdir) and shows (those and its lowerdirs); paths are
        absolute, or `<id>/fs` when ctrpy.runtime.mount shortened a long lowerdir list."""
        written: set[int] = set()
        shown: set[int] = set()
        if fstype != "overlay":
            return written, shown
        prefixes = {str(self.base).rstrip("/") + "/", os.path.realpath(self.base).rstrip("/") + "/"}
        for opt in options.split(","):
            key, _, value = opt.partition("=")
            if key not in ("upperdir", "lowerdir", "workdir"):
                continue
            for path in value.split(":"):
                head = ""
                if not os.path.isabs(path):
                    head = path.split("/", 1)[0]
                else:
                    for prefix in prefixes:
                        if path.startswith(prefix):
                            head = path[len(prefix):].split("/", 1)[0]
                if head.isdigit():
                    shown.add(int(head))
                    if key != "lowerdir":
                        written.add(int(head))
        return written, shown

    def upper(self, sid: int) -> str:
        return str(self.fs(sid))
