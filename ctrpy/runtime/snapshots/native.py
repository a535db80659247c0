"""The native snapshotter backend: full copies, works on any file system (containerd's plugins/snapshots/native).

prepare and view copy the parent's tree into the new snapshot (`cp -a --reflink=auto`, which keeps owners,
modes, hard links, device nodes, xattrs and times, and shares blocks where the file system can), and the
snapshot is mounted with a bind mount. Whiteouts never reach the disk: layers apply them as deletions.
"""

from __future__ import annotations

import subprocess

from ctrpy.runtime import errors
from ctrpy.runtime.mount import Mount
from ctrpy.runtime.snapshots import Kind
from ctrpy.runtime.snapshots.backend import Backend


class NativeBackend(Backend):
    name = "native"

    def create(self, sid: int, parents: list[int], kind: Kind) -> None:
        self._mkdirs(sid)
        if not parents:
            return
        src, dst = self.fs(parents[0]), self.fs(sid)
        proc = subprocess.run(
            ["cp", "-a", "--reflink=auto", "--", f"{src}/.", f"{dst}/"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise errors.Internal(f"cannot copy snapshot {parents[0]} into {sid}: {proc.stderr.strip()}")

    def mounts(self, sid: int, parents: list[int], kind: Kind) -> list[Mount]:
        return [Mount("bind", str(self.fs(sid)), options=("rbind", "ro" if kind == Kind.VIEW else "rw"))]

    def upper(self, sid: int) -> str:
        return str(self.fs(sid))
