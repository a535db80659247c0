"""mount(2) and umount2(2) flags, and the mount(8)/OCI option words that map to them (runc's and crun's
tables): one parser for the snapshot mounts (ctrpy.runtime.mount) and the OCI spec's mounts (builtin)."""

from __future__ import annotations

from collections.abc import Iterable

# <sys/mount.h>
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

# option -> (flags it sets, flags it clears), applied in order: "ro,rw" is read-write.
FLAGS: dict[str, tuple[int, int]] = {
    "ro": (MS_RDONLY, 0), "rw": (0, MS_RDONLY),
    "nosuid": (MS_NOSUID, 0), "suid": (0, MS_NOSUID),
    "nodev": (MS_NODEV, 0), "dev": (0, MS_NODEV),
    "noexec": (MS_NOEXEC, 0), "exec": (0, MS_NOEXEC),
    "sync": (MS_SYNCHRONOUS, 0), "async": (0, MS_SYNCHRONOUS),
    "dirsync": (MS_DIRSYNC, 0),
    "remount": (MS_REMOUNT, 0),
    "mand": (MS_MANDLOCK, 0), "nomand": (0, MS_MANDLOCK),
    "atime": (0, MS_NOATIME), "noatime": (MS_NOATIME, 0),
    "diratime": (0, MS_NODIRATIME), "nodiratime": (MS_NODIRATIME, 0),
    "relatime": (MS_RELATIME, 0), "norelatime": (0, MS_RELATIME),
    "strictatime": (MS_STRICTATIME, 0), "nostrictatime": (0, MS_STRICTATIME),
    "bind": (MS_BIND, 0), "rbind": (MS_BIND | MS_REC, 0),
}
# Propagation is a separate mount(2) call, and one type at a time: the last word given wins.
PROPAGATION: dict[str, int] = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}
# Words that are neither flags nor file-system data: `defaults` changes nothing (runc's table), and the
# mount_setattr(2) options (recursive read-only, idmapped mounts) are for a caller that looks for them
# itself; passed on as data they would make mount(2) fail with EINVAL.
IGNORED = frozenset({"defaults", "recursive", "rro", "rrw", "idmap", "ridmap"})


def parse(options: Iterable[str]) -> tuple[int, int, str]:
    """(MS_* flags, propagation flags, file-system data) from mount(8)/OCI options, in order; words not in
    the tables are the file system's own options (`size=64m`, `lowerdir=...`), joined with commas."""
    flags = propagation = 0
    data: list[str] = []
    for opt in options:
        if opt in FLAGS:
            set_, clear = FLAGS[opt]
            flags = (flags | set_) & ~clear
        elif opt in PROPAGATION:
            propagation = PROPAGATION[opt]
        elif opt not in IGNORED:
            data.append(opt)
    return flags, propagation, ",".join(data)
