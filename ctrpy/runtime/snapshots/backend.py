"""What every snapshot backend shares: the directory layout, removal and disk usage.

    <root>/snapshots/<id>/fs      the snapshot's own layer (overlay upperdir; native: the whole tree)
    <root>/snapshots/<id>/work    overlay's workdir (overlay only)

Backends are told ids and parent chains by the metadata layer and keep no state of their own.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
from collections.abc import Iterator
import struct
import time
from pathlib import Path
from typing import Any

from ctrpy.runtime import errors
from ctrpy.runtime.mount import Mount
from ctrpy.runtime.snapshots import Kind, Usage

# <linux/fs.h>: chattr's flags ioctls and the Orlov allocator's "top of a directory hierarchy" flag (chattr +T).
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000


def spread_children(path: Path) -> bool:
    """Mark `path` as a top directory for ext4's Orlov allocator (chattr +T): a directory created in it is
    placed in the least used block group, chosen from the hash of its name, instead of beside its parent.

    Why: ext4 without a journal (this project's machines) skips, for every new inode, each free inode of the
    group freed in the last 60-360 s, one buffer-cache lookup each. A layer of 6,700 files applied where a
    removed image's snapshot was (the same group) costs 5-10 s of system time instead of 0.25 s (measured,
    bench figure 6b). False where the file system has no such flag (tmpfs, xfs, btrfs): nothing to gain."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        flags = struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 4))[0]
        if not flags & FS_TOPDIR_FL:
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", flags | FS_TOPDIR_FL))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


# CPU time of creating one file in a block group without recently freed inodes is 10-20 us; one where a removed
# tree's inodes are being skipped costs 100 us and more (each of the layer's files would pay it).
SLOW_CREATE = 60e-6


def _make_spread(parent: Path, final: Path) -> None:
    """Make `final` (mode 0755) in a block group where creating files is cheap: under a +T parent the group
    is the least used one after the hash of the new directory's name, so a random name, tried again (up to 3
    times) when a probe file shows a group full of recently freed inodes (a group just emptied by a removal
    is among the least used). The probe sees only the group's first free inodes: about 1 tree in 10 still
    lands where a removal freed some further on (measured), never worse than without. A crash before the rename leaves the attempt inside this snapshot's own
    directory, which goes with the snapshot (or as an orphan)."""
    for attempt in range(4):
        tmp = parent / f".fs-{os.urandom(8).hex()}"  # not secrets: it imports hashlib and random (12 ms)
        tmp.mkdir(mode=0o755)
        if attempt < 3:
            probe = tmp / ".probe"
            started = time.thread_time()  # CPU time: waiting for a CPU on a busy machine does not count
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
            slow = time.thread_time() - started > SLOW_CREATE
            os.unlink(probe)
            if slow:
                tmp.rmdir()
                continue
        os.rename(tmp, final)
        return


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
        fs = self.fs(sid)
        if spread_children(path):
            _make_spread(path, fs)
        else:
            fs.mkdir(mode=0o755)
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
        return _allocated(self.dir(sid)).size

    def ids_in_mount(self, fstype: str, options: str) -> tuple[set[int], set[int]]:
        """The ids a mount names in its options, as /proc/self/mountinfo gives them: (written, shown).
        A bind mount names none (the collector finds binds by device and root); overlay overrides this."""
        return set(), set()

    def usage(self, sid: int) -> Usage:
        """Inodes and allocated bytes below the snapshot's fs dir, each hard-linked inode counted once."""
        return _allocated(self.fs(sid))

    def close(self) -> None:
        pass


def _allocated(path: Path) -> Usage:
    """Inodes and allocated bytes below `path`, each inode once; what vanishes or cannot be read during the
    walk (a live container writes on) is skipped."""
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
    return Usage(inodes=len(seen), size=total)
