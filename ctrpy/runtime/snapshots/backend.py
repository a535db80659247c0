"""What every snapshot backend shares: the directory layout, removal and disk usage.

    <root>/snapshots/<id>/fs      the snapshot's own layer (overlay upperdir; native: the whole tree)
    <root>/snapshots/<id>/work    overlay's workdir (overlay only)

Backends are told ids and parent chains by the metadata layer and keep no state of their own.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ctrpy.runtime import errors
from ctrpy.runtime.mount import Mount
from ctrpy.runtime.snapshots import Kind, Usage


class Backend:
    """Base class: directories under ROOT/snapshots/<name>/snapshots/<id>."""

    name = ""

    def __init__(self, root: str | os.PathLike[str], **options: Any) -> None:
        self.root = Path(root)
        self.options = options

    def dir(self, sid: int) -> Path:
        return self.root / "snapshots" / str(sid)

    def fs(self, sid: int) -> Path:
        return self.dir(sid) / "fs"

    def _mkdirs(self, sid: int) -> Path:
        (self.root / "snapshots").mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.dir(sid)
        if path.exists():
            # A leftover of a crash between creating the directory and committing the row.
            shutil.rmtree(path)
        path.mkdir(mode=0o700)
        # The fs dir is the root directory of the container: 0755 like any root file system.
        self.fs(sid).mkdir(mode=0o755)
        return path

    def create(self, sid: int, parents: list[int], kind: Kind) -> None:
        """Make the directories of snapshot `sid`; `parents` are backend ids, nearest first."""
        raise NotImplementedError

    def mounts(self, sid: int, parents: list[int], kind: Kind) -> list[Mount]:
        raise NotImplementedError

    def remove(self, sid: int) -> None:
        path = self.dir(sid)
        if not path.exists():
            return
        try:
            shutil.rmtree(path)
        except OSError as exc:
            raise errors.from_oserror(exc, f"cannot remove snapshot directory {path}") from exc

    # -- for the garbage collector (ctrpy.runtime.gc) -------------------------------------------------------

    @property
    def base(self) -> Path:
        """The directory holding one directory per snapshot id."""
        return self.root / "snapshots"

    def walk(self) -> Iterator[int]:
        """The ids of the snapshot directories on disk, whether or not a row names them (a crash between
        creating a directory and committing its row leaves one)."""
        try:
            names = os.listdir(self.base)
        except (FileNotFoundError, NotADirectoryError):
            return
        yield from sorted(int(name) for name in names if name.isdigit())

    def disk_usage(self, sid: int) -> int:
        """Allocated bytes of everything of snapshot `sid` (what removing it frees), each inode once."""
        return _allocated(self.dir(sid))

    def ids_in_mount(self, fstype: str, options: str) -> tuple[set[int], set[int]]:
        """The ids a mount names in its options, as /proc/self/mountinfo gives them: (written, shown).
        A bind mount names none (the collector finds binds by device and root); overlay overrides this."""
        return set(), set()

    def usage(self, sid: int) -> Usage:
        """Inodes and allocated bytes below the snapshot's fs dir, each hard-linked inode counted once."""
        seen: set[tuple[int, int]] = set()
        size = 0
        stack = [str(self.fs(sid))]
        while stack:
            path = stack.pop()
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                size += st.st_blocks * 512
            if stat.S_ISDIR(st.st_mode):
                try:
                    with os.scandir(path) as it:
                        stack.extend(entry.path for entry in it)
                except FileNotFoundError:
                    continue
        return Usage(inodes=len(seen), size=size)

    def close(self) -> None:
        pass


def _allocated(path: Path) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [str(path)]
    while stack:
        p = stack.pop()
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
        if stat.S_ISDIR(st.st_mode):
            try:
                with os.scandir(p) as it:
                    stack.extend(e.path for e in it)
            except OSError:
                continue
    return total
