"""Apply OCI image layers (tar change sets) onto a directory, exactly and safely.

Semantics (OCI image-spec, "Image Layer Filesystem Changeset"):
- entries are created with their type, mode (setuid/setgid/sticky included), numeric owner, xattrs
  (PAX `SCHILY.xattr.*`) and mtime; directory attributes are set after the whole layer, as tar does,
  since later entries change a directory's mtime;
- an existing directory met by a directory entry is kept (attributes updated); anything else in the way
  is removed first, so a regular file is always written into a fresh inode;
- `.wh.<name>` deletes <name> from the layers below; `.wh..wh..opq` hides everything the layers below
  put in its directory. Both are applied as deletions through the mounted snapshot: on overlayfs the
  kernel turns them into 0:0 character devices and a `trusted.overlay.opaque=y` directory (an opaque
  directory is re-created, so it gets the xattr), on native they are plain deletions.
  A staged apply (`staged=True`, an empty root that becomes an overlay upper dir) only records them, and
  the parent directories it makes on the way; ctrpy.runtime.layerstage writes them in overlay's format.

Safety: a layer can never write outside `root`.
- names are made relative (a leading `/` is dropped, as tar does); a `..` component is rejected;
- every parent directory is opened with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), so a symlink
  planted by this or an earlier layer (to `/`, to `..`, anywhere) resolves inside `root`;
- the last component is never followed (O_NOFOLLOW, *at calls relative to the parent fd);
- hard-link targets are resolved the same way, so a link can only point at a file inside `root`;
- `trusted.overlay.*` xattrs in a layer are dropped: they would let a layer forge overlay metadata.
Errors name the layer and the entry: ``layer sha256:...: entry 'a/b': ...``.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import io
import os
import queue
import shutil
import stat
import tarfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from collections.abc import Callable
from typing import IO, Any, TypeVar

from ctrpy.runtime import errors

T = TypeVar("T")

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"

_CHUNK = 1 << 20

# openat2(2)
_SYS_OPENAT2 = 437  # x86_64 and aarch64 alike (new syscalls share numbers)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_O_PATH = getattr(os, "O_PATH", 0o10000000)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc: Any = None
_have_openat2: bool | None = None


def _openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    how = _OpenHow(flags | os.O_CLOEXEC, 0, resolve)
    fd = _libc.syscall(_SYS_OPENAT2, ctypes.c_int(dirfd), os.fsencode(path), ctypes.byref(how),
                       ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def openat2_available() -> bool:
    global _have_openat2
    if _have_openat2 is None:
        try:
            os.close(_openat2(-100, "/", _O_PATH | os.O_DIRECTORY, _RESOLVE_IN_ROOT))
            _have_openat2 = True
        except OSError:
            _have_openat2 = False
    return _have_openat2


class LayerError(errors.InvalidArgument):
    """A layer that cannot be applied: malformed or trying to escape its root."""


class NeedsParent(Exception):
    """A layer staged on its own (apply_layer(staged=True)) whose result depends on the layers below it in a
    way staging does not reproduce (a hard link to a lower file, a whiteout of something this layer also
    writes, a path through this layer's symlinks): apply it through its parent's mount instead."""


@dataclass
class Staged:
    """What a staged apply left for the fix-up against the layers below (unpack.finish_staged)."""

    implicit: set[str]  # directories created only as parents of entries (their attributes come from below)
    dirs: set[str]  # directories the layer has entries for
    whiteouts: set[str]  # paths hidden from the layers below
    opaques: set[str]  # directories whose lower contents are hidden
    root_entry: bool
    recreated: set[str]  # opaque directories without entries of the layer yet when their marker came


@dataclass
class ApplyStats:
    entries: int = 0
    bytes: int = 0
    whiteouts: int = 0
    staged: Staged | None = None


def clean_name(name: str) -> str:
    """The entry's path relative to the root ('' for the root itself); ValueError on a `..` component."""
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise ValueError("path contains '..'")
        parts.append(part)
    return "/".join(parts)


class _Applier:
    def __init__(self, root: str, layer: str, staged: bool = False) -> None:
        self.root = root
        # Staged: the root is an empty directory that becomes the layer's overlay upper dir, without the
        # layers below in sight. Whiteouts and opaque directories are only recorded (unpack.finish_staged
        # writes them in overlay's format once the parent is known), and parent directories made on the way
        # are recorded so that they can take the attributes of the same directories below.
        self.staged = staged
        self.implicit: set[str] = set()
        self.dirs: set[str] = set()
        self.whiteouts: set[str] = set()
        self.opaques: set[str] = set()
        self.recreated: set[str] = set()
        self.root_entry = False
        self.layer = layer
        self.rootfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.proc_root = f"/proc/self/fd/{self.rootfd}"
        self.use_openat2 = openat2_available()
        self._fds: OrderedDict[str, int] = OrderedDict()
        self.written: set[str] = set()  # entries this layer created
        self.touched: set[str] = set()  # directories with something this layer created below them
        self.dir_times: list[tuple[str, int, int]] = []
        self.stats = ApplyStats()
        self.copybuf = memoryview(bytearray(_CHUNK))  # one buffer for every file: no per-file allocation

    def close(self) -> None:
        self._drop_cache()
        os.close(self.rootfd)

    # -- resolution

    def _drop_cache(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def dirfd(self, rel: str, *, create: bool = True) -> int:
        """An fd of directory `rel` resolved inside the root (created as 0755 dirs if missing)."""
        if not rel:
            return self.rootfd
        fd = self._fds.get(rel)
        if fd is not None:
            self._fds.move_to_end(rel)
            return fd
        try:
            fd = self._open_dir(rel)
        except FileNotFoundError:
            if not create:
                raise
            fd = self._walk(rel, create=True)
        self._fds[rel] = fd
        if len(self._fds) > 64:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def _open_dir(self, rel: str) -> int:
        if self.use_openat2:
            return _openat2(self.rootfd, rel, _O_PATH | os.O_DIRECTORY, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
        return self._walk(rel, create=False)

    def _open_canonical(self, parts: list[str]) -> int:
        fd = os.dup(self.rootfd)
        for part in parts:
            nfd = os.open(part, _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd

    def _walk(self, rel: str, *, create: bool) -> int:
        """Resolve `rel` component by component as if `root` were `/`, creating missing directories.

        The slow path, for parents that do not exist yet (mkdir -p), including through a symlink whose
        target is missing: the target is created inside the root, never outside. Also the whole resolver
        on kernels without openat2. Symlinks are read with readlink and re-walked from the root (absolute)
        or from the symlink's directory; `..` never climbs above the root.
        """
        todo = [p for p in rel.split("/") if p not in ("", ".")]
        todo.reverse()
        cur: list[str] = []
        fd = os.dup(self.rootfd)
        hops = 0
        try:
            while todo:
                part = todo.pop()
                if part == "..":
                    if cur:
                        cur.pop()
                    os.close(fd)
                    fd = self._open_canonical(cur)
                    continue
                try:
                    st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    if not create:
                        raise
                    os.mkdir(part, 0o755, dir_fd=fd)
                    st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                    self.implicit.add("/".join([*cur, part]))
                if stat.S_ISLNK(st.st_mode):
                    hops += 1
                    if hops > 40:
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel)
                    target = os.readlink(part, dir_fd=fd)
                    if target.startswith("/"):
                        cur = []
                        os.close(fd)
                        fd = os.dup(self.rootfd)
                    todo.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), rel)
                nfd = os.open(part, _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = nfd
                cur.append(part)
            return fd
        except BaseException:
            os.close(fd)
            raise

    def fail(self, entry: str, reason: str, cls: type[errors.CtrpyError] = LayerError) -> errors.CtrpyError:
        where = f"layer {self.layer}: " if self.layer else ""
        return cls(f"{where}entry {entry!r}: {reason}")

    # -- removal

    def _lstat(self, pfd: int, base: str) -> os.stat_result | None:
        try:
            return os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _invalidate(self, rel: str) -> None:
        """Forget cached directory fds at or below `rel` (which is being removed or replaced).

        Cached paths may resolve through a symlink at `rel`, so entries below it go too.
        """
        below = rel + "/"
        for key in [k for k in self._fds if k == rel or k.startswith(below) or not rel]:
            os.close(self._fds.pop(key))

    def _remove(self, pfd: int, base: str, st: os.stat_result, rel: str) -> None:
        self._invalidate(rel)
        if stat.S_ISDIR(st.st_mode):
            # rmtree with dir_fd never follows symlinks inside the tree.
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)

    # -- entries

    def apply(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        raw = member.name
        try:
            rel = clean_name(raw)
        except ValueError as exc:
            raise self.fail(raw, f"{exc}: a layer may not reach outside its root") from None
        parent, _, base = rel.rpartition("/")
        self.stats.entries += 1
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(raw, parent, base)
            return
        if not rel:
            self.root_entry = True
            self._root_attrs(member)
            return
        pfd = self.dirfd(parent)
        # Most entries are new: files, symlinks and directories are created first, and what is in the way is
        # looked at only when creating fails with EEXIST (O_EXCL|O_NOFOLLOW, symlink() and mkdir() never
        # follow a symlink there): one lstat less per entry.
        if member.isreg():
            self._mark_written(rel)
            self._regular(tf, member, self._replacing(pfd, base, rel, lambda: self._create(pfd, base)))
            return
        if member.issym():
            self._mark_written(rel)
            self._replacing(pfd, base, rel, lambda: os.symlink(member.linkname, base, dir_fd=pfd))
            self._attrs(pfd, base, member, is_dir=False, rel=rel)
            return
        if member.isdir():
            try:
                os.mkdir(base, 0o700, dir_fd=pfd)
            except FileExistsError:
                existing = self._lstat(pfd, base)
                if existing is None or not stat.S_ISDIR(existing.st_mode):  # an existing directory is kept
                    if existing is not None:
                        self._remove(pfd, base, existing, rel)
                    os.mkdir(base, 0o700, dir_fd=pfd)
            self._mark_written(rel)
            self.dirs.add(rel)
            self._attrs(pfd, base, member, is_dir=True, rel=rel)
            return
        existing = self._lstat(pfd, base)
        if existing is not None:
            self._remove(pfd, base, existing, rel)
        self._mark_written(rel)
        if member.islnk():
            self._hardlink(raw, member, pfd, base)
            return
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(base, kind | 0o600, os.makedev(member.devmajor, member.devminor), dir_fd=pfd)
        elif member.isfifo():
            os.mkfifo(base, 0o600, dir_fd=pfd)
        else:
            raise self.fail(raw, f"unsupported tar entry type {member.type!r}")
        self._attrs(pfd, base, member, is_dir=False, rel=rel)

    def _replacing(self, pfd: int, base: str, rel: str, make: Callable[[], T]) -> T:
        """make() the entry; when something is in the way (EEXIST), remove it and make the entry again."""
        try:
            return make()
        except FileExistsError:
            existing = self._lstat(pfd, base)
            if existing is not None:
                self._remove(pfd, base, existing, rel)
            return make()

    @staticmethod
    def _create(pfd: int, base: str) -> int:
        return os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pfd)

    def _regular(self, tf: tarfile.TarFile, member: tarfile.TarInfo, fd: int) -> None:
        """Fill the new file `fd` (closed here) with the entry's bytes and attributes."""
        try:
            src = tf.extractfile(member)
            if src is not None and member.size:
                view = self.copybuf
                while True:
                    n = src.readinto(view)  # type: ignore[attr-defined]
                    if not n:
                        break
                    os.write(fd, view[:n])
                    self.stats.bytes += n
            os.fchown(fd, member.uid, member.gid)
            os.fchmod(fd, member.mode & 0o7777)
            self._xattrs(f"/proc/self/fd/{fd}", member, follow=True)
            os.utime(fd, ns=_times(member))
        finally:
            os.close(fd)

    def _hardlink(self, raw: str, member: tarfile.TarInfo, pfd: int, base: str) -> None:
        try:
            target = clean_name(member.linkname)
        except ValueError as exc:
            raise self.fail(raw, f"hard link target {member.linkname!r}: {exc}") from None
        if not target:
            raise self.fail(raw, "hard link to the root directory")
        tparent, _, tbase = target.rpartition("/")
        try:
            tpfd = self.dirfd(tparent, create=False)
            os.link(tbase, base, src_dir_fd=tpfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            if self.staged:
                raise NeedsParent(f"hard link {raw!r} to {member.linkname!r}, not in this layer") from None
            raise self.fail(raw, f"hard link target {member.linkname!r} does not exist in the layer's root") from None
        except PermissionError as exc:
            raise self.fail(raw, f"hard link to {member.linkname!r}: {exc.strerror}") from None

    def _root_attrs(self, member: tarfile.TarInfo) -> None:
        if not member.isdir():
            raise self.fail(member.name, "the root of a layer must be a directory")
        os.chown(self.proc_root, member.uid, member.gid)
        os.chmod(self.proc_root, member.mode & 0o7777)
        self._xattrs(self.proc_root, member, follow=True)
        self.dir_times.append(("", *_times(member)))

    def _attrs(self, pfd: int, base: str, member: tarfile.TarInfo, *, is_dir: bool, rel: str) -> None:
        os.chown(base, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
        if not member.issym():
            # After chown, which clears setuid/setgid bits. The entry was just created by us and is not
            # a symlink, so following is safe.
            os.chmod(base, member.mode & 0o7777, dir_fd=pfd)
        self._xattrs(f"/proc/self/fd/{pfd}/{base}", member, follow=False)
        if is_dir:
            self.dir_times.append((rel, *_times(member)))
        else:
            os.utime(base, ns=_times(member), dir_fd=pfd, follow_symlinks=False)

    def _xattrs(self, path: str, member: tarfile.TarInfo, *, follow: bool) -> None:
        for key, value in member.pax_headers.items():
            if not key.startswith("SCHILY.xattr."):
                continue
            name = key[len("SCHILY.xattr."):]
            if name.startswith("trusted.overlay."):
                continue
            data = value.encode("utf-8", "surrogateescape")
            try:
                os.setxattr(path, name, data, follow_symlinks=follow)
            except OSError as exc:
                if member.issym() and exc.errno in (errno.EPERM, errno.EOPNOTSUPP):
                    continue  # user.* xattrs cannot be set on symlinks; GNU tar skips them too
                raise self.fail(member.name, f"cannot set xattr {name}: {exc.strerror}") from None

    # -- whiteouts

    def _whiteout(self, raw: str, parent: str, base: str) -> None:
        # Whiteouts hide what lower layers hold; entries of this same layer are never hidden (OCI image-spec).
        self.stats.whiteouts += 1
        if self.staged:
            self._record_whiteout(raw, parent, base)
            return
        try:
            pfd = self.dirfd(parent, create=False)
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing below to hide
        if base == WHITEOUT_OPAQUE:
            self._opaque(parent)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return  # aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): no meaning in OCI layers
        victim = base[len(WHITEOUT_PREFIX):]
        if victim in ("", ".", "..") or "/" in victim:
            raise self.fail(raw, f"whiteout of {victim!r} is not allowed")
        vrel = f"{parent}/{victim}" if parent else victim
        st = self._lstat(pfd, victim)
        if st is None or vrel in self.written:
            return
        if vrel in self.touched and stat.S_ISDIR(st.st_mode):
            self._prune(vrel)  # this layer put things below it: keep those, hide the rest
        else:
            self._remove(pfd, victim, st, vrel)

    def _record_whiteout(self, raw: str, parent: str, base: str) -> None:
        if base == WHITEOUT_OPAQUE:
            self.opaques.add(parent)
            if parent not in self.touched:
                self.recreated.add(parent)  # the sequential apply re-creates it (its parent's times change)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return
        victim = base[len(WHITEOUT_PREFIX):]
        if victim in ("", ".", "..") or "/" in victim:
            raise self.fail(raw, f"whiteout of {victim!r} is not allowed")
        self.whiteouts.add(f"{parent}/{victim}" if parent else victim)

    def staged_result(self) -> Staged:
        """The record of a staged apply, once every entry is in; NeedsParent where staging cannot stand in
        for the sequential apply."""
        for path in self.whiteouts | self.opaques:
            # The path must resolve to the same place without this layer's symlinks, and a whiteout of
            # something this layer also writes depends on the entries' order: both are left to the mount.
            head, _, last = path.rpartition("/")
            kind = self._staged_kind(head)
            if kind == "other" or (path in self.whiteouts and kind == "dir" and self._lexists(head, last)):
                raise NeedsParent(f"whiteout {path!r} meets an entry of the same layer")
            if path in self.opaques and kind == "dir" and self._lexists(head, last):
                st = os.stat(last, dir_fd=self.dirfd(head, create=False), follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise NeedsParent(f"opaque directory {path!r} is not a directory in the layer")
        return Staged(self.implicit, self.dirs, self.whiteouts, self.opaques, self.root_entry, self.recreated)

    def _staged_kind(self, rel: str) -> str:
        """'dir' when every component of `rel` is a real directory in the staged root, 'missing' when they
        are as far as they go, 'other' when one is a symlink or not a directory."""
        fd = os.dup(self.rootfd)
        try:
            for part in [p for p in rel.split("/") if p]:
                try:
                    st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    return "missing"
                if not stat.S_ISDIR(st.st_mode):
                    return "other"
                nfd = os.open(part, _O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = nfd
            return "dir"
        finally:
            os.close(fd)

    def _lexists(self, parent: str, base: str) -> bool:
        return self._lstat(self.dirfd(parent, create=False), base) is not None

    def _mark_written(self, rel: str) -> None:
        self.written.add(rel)
        parent = rel.rpartition("/")[0]
        while parent and parent not in self.touched:
            self.touched.add(parent)
            parent = parent.rpartition("/")[0]

    def _opaque(self, rel: str) -> None:
        """Hide everything lower layers put below directory `rel`, keeping what this layer wrote."""
        if rel and rel not in self.touched:
            # Nothing of this layer below it yet: re-create the directory. On overlayfs the kernel marks a
            # directory made over a deleted one opaque (trusted.overlay.opaque=y), hiding the lower layers
            # in one inode instead of one whiteout per entry.
            grand, _, base = rel.rpartition("/")
            gfd = self.dirfd(grand)
            st = os.stat(base, dir_fd=gfd, follow_symlinks=False)
            path = f"/proc/self/fd/{gfd}/{base}"
            xattrs = {
                name: os.getxattr(path, name, follow_symlinks=False)
                for name in os.listxattr(path, follow_symlinks=False)
                if not name.startswith("trusted.overlay.")
            }
            self._invalidate(rel)
            shutil.rmtree(base, dir_fd=gfd)
            os.mkdir(base, 0o700, dir_fd=gfd)
            os.chown(base, st.st_uid, st.st_gid, dir_fd=gfd, follow_symlinks=False)
            os.chmod(base, stat.S_IMODE(st.st_mode), dir_fd=gfd)
            for name, value in xattrs.items():
                os.setxattr(path, name, value, follow_symlinks=False)
            if rel not in self.written:
                self.dir_times.append((rel, st.st_atime_ns, st.st_mtime_ns))
            return
        self._prune(rel)

    def _prune(self, rel: str) -> None:
        """Remove every entry below directory `rel` that this layer did not write (recursively)."""
        pfd = self.dirfd(rel, create=False)
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
        try:
            names = os.listdir(fd)
            prefix = f"{rel}/" if rel else ""
            for name in names:
                child = prefix + name
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if child in self.written or child in self.touched:
                    if stat.S_ISDIR(st.st_mode):
                        self._prune(child)
                    continue
                self._invalidate(child)
                if stat.S_ISDIR(st.st_mode):
                    shutil.rmtree(name, dir_fd=fd)
                else:
                    os.unlink(name, dir_fd=fd)
        finally:
            os.close(fd)

    def finish(self) -> None:
        # Directory times last, deepest first, so setting one does not disturb another.
        self._drop_cache()
        for rel, atime, mtime in sorted(self.dir_times, key=lambda t: t[0].count("/"), reverse=True):
            try:
                fd = self._open_dir(rel) if rel else os.dup(self.rootfd)
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed by a later whiteout, or replaced by a later non-directory entry
            try:
                os.utime(f"/proc/self/fd/{fd}", ns=(atime, mtime))
            finally:
                os.close(fd)


class _Forward:
    """A forward-only stream that tarfile's seekable mode ("r:") accepts.

    tarfile's stream mode ("r|") re-buffers everything through bytes joins and slices, which costs more
    than decompression; in seekable mode it reads headers and file data straight from us. It only ever
    seeks forward (to the next header, or within the current member), which is done by reading.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.pos = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.pos += len(data)
        return data

    def readinto(self, b: Any) -> int:
        n = self.stream.readinto(b)  # type: ignore[attr-defined]
        self.pos += n or 0
        return n or 0

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self.pos
        elif whence != 0:
            raise io.UnsupportedOperation("seek from the end of a layer stream")
        if pos < self.pos:
            raise io.UnsupportedOperation("backward seek in a layer stream")
        while self.pos < pos:
            chunk = self.stream.read(min(_CHUNK, pos - self.pos))
            if not chunk:
                raise EOFError("unexpected end of data")
            self.pos += len(chunk)
        return self.pos


def _times(member: tarfile.TarInfo) -> tuple[int, int]:
    mtime = int(float(member.mtime) * 1_000_000_000)
    atime_s = member.pax_headers.get("atime")
    atime = int(float(atime_s) * 1_000_000_000) if atime_s else mtime
    return atime, mtime


def apply_layer(root: str | os.PathLike[str], stream: IO[bytes], *, layer: str = "",
                staged: Staged | bool = False) -> ApplyStats:
    """Apply the uncompressed tar `stream` onto directory `root`; `layer` names it in errors.

    staged=True: `root` is an empty directory that becomes the layer's overlay upper dir without its parents
    (see _Applier.staged); the stats then carry `.staged`, or NeedsParent is raised."""
    applier = _Applier(os.fspath(root), layer, staged=bool(staged))
    try:
        try:
            tf = tarfile.open(fileobj=_Forward(stream), mode="r:", errorlevel=2)  # type: ignore[call-overload]
        except tarfile.ReadError as exc:
            if "empty file" in str(exc):
                return applier.stats
            raise LayerError(f"layer {layer}: not a tar archive: {exc}") from None
        except (tarfile.TarError, ValueError, OverflowError) as exc:  # a malformed first (pax) header
            raise LayerError(f"layer {layer}: corrupt tar archive at its first entry: {exc}") from None
        member: tarfile.TarInfo | None = None
        try:
            while True:
                try:
                    member = tf.next()
                except (tarfile.TarError, ValueError, OverflowError) as exc:  # tarfile's pax parsing raises these
                    raise LayerError(f"layer {layer}: corrupt tar archive after entry "
                                     f"{member.name if member else '(start)'!r}: {exc}") from None
                if member is None:
                    break
                try:
                    applier.apply(tf, member)
                except errors.CtrpyError:
                    raise
                except (tarfile.TarError, EOFError, ValueError, OverflowError) as exc:
                    raise LayerError(f"layer {layer}: truncated or corrupt tar archive at entry "
                                     f"{member.name!r}: {exc}") from None
                except OSError as exc:
                    raise errors.from_errno(
                        exc.errno or 0, f"layer {layer}: entry {member.name!r}: cannot apply"
                    ) from exc
                # Stream mode keeps every header in tf.members; drop them so memory stays flat.
                tf.members.clear()
        except EOFError:
            raise LayerError(f"layer {layer}: truncated tar archive") from None
        applier.finish()
        if applier.staged:
            applier.stats.staged = applier.staged_result()
        return applier.stats
    finally:
        applier.close()


# ---------------------------------------------------------------------------------------------- streams

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def detect_compression(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def decompressor(raw: IO[bytes], compression: str) -> IO[bytes]:
    """A streaming reader of the uncompressed bytes of `raw`."""
    if compression == "gzip":
        from isal import igzip

        return igzip.IGzipFile(fileobj=raw, mode="rb")  # type: ignore[no-untyped-call, return-value]
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(raw, read_size=_CHUNK, read_across_frames=True)
    if compression == "none":
        return raw
    raise errors.NotImplemented_(f"unsupported layer compression {compression!r}")


class _Peek(io.RawIOBase):
    """Puts back the bytes read to sniff the compression."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self.head = head
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.head:
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        data = self.rest.read(len(b))
        b[: len(data)] = data
        return len(data)


class DecompressError(Exception):
    """The compressed stream is corrupt (raised by DigestingReader, named by apply_layer_blob)."""


class DigestingReader(io.RawIOBase):
    """Reads the uncompressed stream, hashing it; decompression runs in a worker thread when `threaded`.

    The worker fills a queue of at most `depth` chunks of 1 MiB, so memory stays bounded whatever the
    layer size. zlib/isal and zstd release the GIL while they work, so decompression overlaps with the
    file-system calls of the applier.
    """

    def __init__(self, source: IO[bytes], *, threaded: bool = True, depth: int = 8) -> None:
        self.source = source
        self.hasher = hashlib.sha256()
        self.size = 0
        self.threaded = threaded
        self._buf = memoryview(b"")
        self._eof = False
        self._error: BaseException | None = None
        if threaded:
            self._q: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._pump, name="layer-decompress", daemon=True)
            self._thread.start()

    def _pump(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._read_source()
                if not chunk:
                    break
                self.hasher.update(chunk)
                self.size += len(chunk)
                while not self._stop.is_set():
                    try:
                        self._q.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # handed to the reading thread
            self._error = exc
        finally:
            while True:
                try:
                    self._q.put(None, timeout=0.1)
                    break
                except queue.Full:
                    if self._stop.is_set():
                        break

    def readable(self) -> bool:
        return True

    def _read_source(self) -> bytes:
        try:
            return self.source.read(_CHUNK)
        except (OSError, EOFError, ValueError) as exc:
            raise DecompressError(str(exc) or type(exc).__name__) from None
        except Exception as exc:  # isal's IsalError, zstandard's ZstdError
            raise DecompressError(f"{type(exc).__name__}: {exc}") from None

    def _next_chunk(self) -> bytes:
        if self.threaded:
            chunk = self._q.get()
            if chunk is None:
                self._eof = True
                if self._error is not None:
                    raise self._error
                return b""
            return chunk
        chunk = self._read_source()
        if not chunk:
            self._eof = True
            return b""
        self.hasher.update(chunk)
        self.size += len(chunk)
        return chunk

    def readinto(self, b: Any) -> int:
        while not self._buf:
            if self._eof:
                return 0
            self._buf = memoryview(self._next_chunk())
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def drain(self) -> None:
        """Read to the end (tar padding after the end-of-archive marker counts for the digest)."""
        buf = bytearray(_CHUNK)
        while self.readinto(buf):
            pass

    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()

    def close(self) -> None:
        if self.threaded and not self._eof:
            self._stop.set()
            try:
                while True:
                    self._q.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=5)
        super().close()


def open_layer(raw: IO[bytes], media_type: str = "", *, threaded: bool = True) -> DigestingReader:
    """Uncompressed, digesting reader over a layer blob (compression sniffed from its first bytes)."""
    if "+encrypted" in media_type:
        raise errors.NotImplemented_(f"encrypted layers ({media_type}) are not supported")
    head = raw.read(4)
    compression = detect_compression(head)
    if media_type.endswith("+zstd") and compression != "zstd" or media_type.endswith("gzip") and compression != "gzip":
        raise LayerError(f"layer has media type {media_type} but its data is {compression}")
    source = decompressor(io.BufferedReader(_Peek(head, raw), _CHUNK), compression)
    return DigestingReader(source, threaded=threaded)


def apply_layer_blob(
    root: str | os.PathLike[str],
    raw: IO[bytes],
    *,
    media_type: str = "",
    layer: str = "",
    diff_id: str | None = None,
    threaded: bool = True,
    staged: bool = False,
) -> ApplyStats:
    """Decompress and apply a layer blob; when `diff_id` is given the uncompressed digest must match."""
    reader = open_layer(raw, media_type, threaded=threaded)
    try:
        buffered = io.BufferedReader(reader, _CHUNK)
        stats = apply_layer(root, buffered, layer=layer, staged=staged)
        while buffered.read(_CHUNK):
            pass
        if diff_id and reader.digest() != diff_id:
            raise errors.FailedPrecondition(
                f"layer {layer}: uncompressed digest {reader.digest()} does not match diff ID {diff_id}"
            )
        return stats
    except DecompressError as exc:
        raise LayerError(f"layer {layer}: cannot decompress: {exc}") from None
    finally:
        reader.close()

