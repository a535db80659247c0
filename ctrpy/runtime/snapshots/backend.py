"""What every snapshot backend shares: the directory layout, removal and disk usage.

    <root>/snapshots/<id>/fs      the snapshot's own layer (overlay upperdir; native: the whole tree)
    <root>/snapshots/<id>/work    overlay's workdir (overlay only)

Backends are told ids and parent chains by the metadata layer and keep no state of their own.
"""

from __future__ import annotations

import os
import shutil
import stat
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
