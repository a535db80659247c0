"""Layers applied ahead of their parents: the overlay fix-up of a staged layer (issue 17).

The unpacker applies layer n+1 into an empty directory while layer n is still being applied
(archive.apply_layer(staged=True)); once layer n is committed, `finish` turns that directory into exactly the
upper dir the sequential apply through the mounted overlay would have left, looking at the layers below
through the new snapshot's (still empty) overlay mount:

- a directory made only as the parent of an entry takes the owner, mode and xattrs of the same directory
  below (containerd's `mkparent`); when the path below is not a directory (a symlink: `/lib -> usr/lib`),
  the sequential apply would have resolved through it, so the layer needs its parent (NeedsParent);
- a directory entry over a directory below keeps the xattrs below that the layer does not set (overlay's
  copy-up keeps them in the sequential apply);
- a whiteout of something below becomes overlay's 0:0 character device, of nothing below nothing;
- an opaque marker over a directory below becomes `trusted.overlay.opaque=y` (the directory made with the
  attributes below when the layer has nothing in it);
- without a `./` entry, the root takes its parent's owner, mode and times (as the snapshotter's prepare);
- directory times end as the sequential apply leaves them: the layer's own directories keep their entry's
  times through the fix-up, a directory copied up from below keeps the times below unless something was
  created or removed right in it (then "now", like the sequential apply's).
Any path below that resolves through a symlink or a non-directory raises NeedsParent: the caller then
applies the layer again, through the mount.
"""

from __future__ import annotations

import os
import stat

from ctrpy.runtime.archive import NeedsParent, Staged

_O_PATH = getattr(os, "O_PATH", 0o10000000)
OPAQUE_XATTR = "trusted.overlay.opaque"


class _Tree:
    """Component-wise, never-following look-ups under one directory."""

    def __init__(self, root: str) -> None:
        self.fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.fd)

    def kind(self, rel: str) -> tuple[str, os.stat_result | None]:
        """('dir'|'missing'|'other'|'symlink'|'path', stat): 'path' when a parent component is not a directory."""
        parts = [p for p in rel.split("/") if p]
        fd = os.dup(self.fd)
        try:
            for i, part in enumerate(parts):
                try:
                    st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    return "missing", None
                last = i == len(parts) - 1
                if stat.S_ISDIR(st.st_mode):
                    if last:
                        return "dir", st
                    nfd = os.open(part, _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                    os.close(fd)
                    fd = nfd
                    continue
                if not last:
                    return "path", st
                return ("symlink" if stat.S_ISLNK(st.st_mode) else "other"), st
            return "dir", os.fstat(fd)
        finally:
            os.close(fd)

    def path(self, rel: str) -> str:
        return f"/proc/self/fd/{self.fd}/{rel}" if rel else f"/proc/self/fd/{self.fd}"


def _xattrs(path: str) -> dict[str, bytes]:
    return {name: os.getxattr(path, name, follow_symlinks=False)
            for name in os.listxattr(path, follow_symlinks=False) if not name.startswith("trusted.overlay.")}


def _take_attrs(upper: _Tree, lower: _Tree, rel: str, st: os.stat_result, *, times: bool = False) -> None:
    path = upper.path(rel)
    os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
    os.chmod(path, stat.S_IMODE(st.st_mode))
    for name, value in _xattrs(lower.path(rel)).items():
        os.setxattr(path, name, value, follow_symlinks=False)
    if times:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


class _Times:
    """The times of the layer's own directories, kept across the fix-up's changes in them: the sequential
    apply sets a directory entry's times after every entry of the layer, whiteouts included."""

    def __init__(self, upper: _Tree, staged: Staged) -> None:
        self.upper = upper
        self.staged = staged
        self.saved: dict[str, tuple[int, int]] = {}

    def changing(self, rel: str) -> None:
        """Something is about to be created in directory `rel` of the upper dir."""
        if rel in self.saved or not (rel in self.staged.dirs or (not rel and self.staged.root_entry)):
            return
        st = os.stat(self.upper.path(rel), follow_symlinks=False)
        self.saved[rel] = (st.st_atime_ns, st.st_mtime_ns)

    def restore(self) -> None:
        for rel, times in sorted(self.saved.items(), key=lambda item: item[0].count("/"), reverse=True):
            os.utime(self.upper.path(rel), ns=times, follow_symlinks=False)


def _make_parents(upper: _Tree, lower: _Tree, rel: str, times: _Times, copied: dict[str, os.stat_result]) -> None:
    """Create the missing directories of `rel` (itself included) in the upper dir, with the attributes below."""
    parts = [p for p in rel.split("/") if p]
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        kind, _ = upper.kind(sub)
        if kind == "dir":
            continue
        if kind != "missing":
            raise NeedsParent(f"{sub!r} is not a directory in the layer")
        lkind, lst = lower.kind(sub)
        if lkind != "dir" or lst is None:
            raise NeedsParent(f"{sub!r} is not a directory below the layer")
        times.changing(sub.rpartition("/")[0])
        os.mkdir(upper.path(sub), 0o700)
        _take_attrs(upper, lower, sub, lst, times=True)
        copied[sub] = lst


def finish(upper_dir: str, lower_dir: str, staged: Staged, root: os.stat_result) -> None:
    """Fix up the staged `upper_dir` against the merged layers below at `lower_dir` (see the module text);
    `root` is the attributes the snapshotter gave the new snapshot's root."""
    upper = _Tree(upper_dir)
    lower = _Tree(lower_dir)
    times = _Times(upper, staged)
    copied: dict[str, os.stat_result] = {}  # parent directories the sequential apply would have copied up

    def below(rel: str) -> tuple[str, os.stat_result | None]:
        # Below a directory the sequential apply re-created for an opaque marker (the marker came before any
        # entry of the layer in it), nothing of the lower layers is left to look at.
        parts = rel.split("/")
        if any("/".join(parts[:i]) in staged.recreated for i in range(1, len(parts))):
            return "missing", None
        return lower.kind(rel)

    try:
        for rel in sorted(staged.implicit - staged.dirs):
            ukind, _ = upper.kind(rel)
            if ukind != "dir":
                continue  # replaced by a later entry of the layer: nothing of it is a parent any more
            lkind, lst = below(rel)
            if lkind == "missing":
                continue  # a new directory: the sequential apply made it the same way (0755, root)
            if lkind != "dir" or lst is None:
                raise NeedsParent(f"parent directory {rel!r} is not a directory below the layer")
            _take_attrs(upper, lower, rel, lst)
            copied[rel] = lst
        for rel in sorted(staged.dirs):
            if upper.kind(rel)[0] != "dir" or below(rel)[0] != "dir":
                continue
            have = set(os.listxattr(upper.path(rel), follow_symlinks=False))
            for name, value in _xattrs(lower.path(rel)).items():
                if name not in have:
                    os.setxattr(upper.path(rel), name, value, follow_symlinks=False)
        for rel in sorted(staged.opaques):
            if not rel:
                raise NeedsParent("an opaque marker in the root")
            lkind, lst = below(rel)
            if lkind in ("path", "symlink"):
                raise NeedsParent(f"opaque directory {rel!r} resolves through a symlink below")
            if lkind != "dir":
                continue  # nothing below to hide
            if rel not in staged.recreated:
                # The marker came after entries of the layer in it: the sequential apply then prunes what is
                # below at that point, and what the layer puts there later depends on the order.
                raise NeedsParent(f"opaque marker of {rel!r} after entries of the layer in it")
            if upper.kind(rel)[0] == "missing":
                _make_parents(upper, lower, rel, times, copied)
            os.setxattr(upper.path(rel), OPAQUE_XATTR, b"y", follow_symlinks=False)
        for rel in sorted(staged.whiteouts):
            lkind, _ = below(rel)
            if lkind == "missing":
                continue
            if lkind == "path":
                raise NeedsParent(f"whiteout {rel!r} resolves through a symlink below")
            head, _, base = rel.rpartition("/")
            if head:
                _make_parents(upper, lower, head, times, copied)
            if upper.kind(rel)[0] != "missing":
                raise NeedsParent(f"whiteout {rel!r} meets an entry of the layer")
            times.changing(head)
            os.mknod(upper.path(rel), stat.S_IFCHR, os.makedev(0, 0))
        # A copied-up directory keeps the times below unless something was created or removed right in it
        # (copying up a directory below it, or a directory entry over one below, does not count; an opaque
        # directory the sequential apply re-creates does).
        def kept(child: str) -> bool:
            if child in staged.recreated and below(child)[0] == "dir":
                return False
            return child in copied or (child in staged.dirs and below(child)[0] == "dir")

        for rel in sorted(copied, key=lambda r: r.count("/"), reverse=True):
            prefix = f"{rel}/" if rel else ""
            if all(kept(prefix + name) for name in os.listdir(upper.path(rel))):
                st = copied[rel]
                os.utime(upper.path(rel), ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        for rel in staged.recreated - staged.dirs:
            # The sequential apply re-creates it with the times below, set after the layer's entries.
            lkind, lst = below(rel)
            if rel and lkind == "dir" and lst is not None and upper.kind(rel)[0] == "dir":
                os.utime(upper.path(rel), ns=(lst.st_atime_ns, lst.st_mtime_ns), follow_symlinks=False)
        if not staged.root_entry:
            os.chown(upper.path(""), root.st_uid, root.st_gid)
            os.chmod(upper.path(""), stat.S_IMODE(root.st_mode))
            if all(kept(name) for name in os.listdir(upper.path(""))):
                os.utime(upper.path(""), ns=(root.st_atime_ns, root.st_mtime_ns))
        times.restore()
    finally:
        upper.close()
        lower.close()
