"""Named volumes (docker's `local` driver): directories under the root that outlive containers.

    ROOT/volumes/<namespace>/<name>/
        _data/          what containers see at the mount point (`-v NAME:/path`)
        volume.json     {"name", "created_at", "labels", "copied"}

A new volume is filled from the image's content at the mount point on its first use (docker's copy-up), once:
`copied` records that it happened. A volume is in use while a container's record names it.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors
from ctrpy.runtime.metadata import now
from ctrpy.runtime.names import NAME_RE

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client
# The extension of a container record that lists its named volumes (written by ctrpy.runtime.dockerrun).
VOLUMES_KEY = "volumes"


def is_volume_name(text: str) -> bool:
    return bool(NAME_RE.match(text)) and len(text) <= 255


class VolumeStore:
    """One namespace's named volumes."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.base = Path(client.root) / "volumes" / client.namespace

    def path(self, name: str) -> Path:
        return self.base / name

    def data(self, name: str) -> Path:
        return self.base / name / "_data"

    def _meta(self, name: str) -> dict[str, Any] | None:
        try:
            meta: dict[str, Any] = json.loads((self.path(name) / "volume.json").read_text())
            return meta
        except (OSError, ValueError):
            return None

    def exists(self, name: str) -> bool:
        return self._meta(name) is not None

    def create(self, name: str | None = None, labels: dict[str, str] | None = None,
               exist_ok: bool = False) -> dict[str, Any]:
        name = name or os.urandom(32).hex()
        if not is_volume_name(name):
            raise errors.InvalidArgument(f"invalid volume name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        meta = self._meta(name)
        if meta is not None:
            if exist_ok:
                return self.inspect(name)
            raise errors.AlreadyExists(f"volume {name!r} already exists")
        self.base.mkdir(parents=True, exist_ok=True)
        tmp = self.base / f".{name}.{os.getpid()}.tmp"
        (tmp / "_data").mkdir(parents=True, exist_ok=True)
        (tmp / "volume.json").write_text(json.dumps({"name": name, "created_at": now(), "labels": labels or {},
                                                     "copied": False}))
        try:
            os.rename(tmp, self.path(name))
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if exist_ok and self.exists(name):
                return self.inspect(name)
            raise errors.AlreadyExists(f"volume {name!r} already exists") from None
        return self.inspect(name)

    def inspect(self, name: str) -> dict[str, Any]:
        meta = self._meta(name)
        if meta is None:
            raise errors.NotFound(f"no such volume: {name}")
        return {"Name": name, "Driver": "local", "Mountpoint": str(self.data(name)),
                "CreatedAt": meta.get("created_at", ""), "Labels": meta.get("labels") or {},
                "Scope": "local", "Options": {}}

    def list(self) -> list[dict[str, Any]]:
        if not self.base.is_dir():
            return []
        return [self.inspect(p.name) for p in sorted(self.base.iterdir())
                if not p.name.startswith(".") and self._meta(p.name) is not None]

    def users(self, name: str) -> builtins.list[str]:
        """IDs of the containers whose record names the volume."""
        from ctrpy.runtime.dockerrun import DOCKER_EXT

        out: builtins.list[str] = []
        for c in self.client.containers.list():
            vols = c.extensions.get(DOCKER_EXT, {}).get(VOLUMES_KEY, [])
            if name in vols:
                out.append(c.id)
        return out

    def remove(self, name: str, force: bool = False) -> None:
        if self._meta(name) is None:
            raise errors.NotFound(f"no such volume: {name}")
        users = self.users(name)
        if users and not force:
            raise errors.FailedPrecondition(
                f"volume {name!r} is in use by container {users[0][:12]}: remove it first (`ctrpy rm {users[0][:12]}`)")
        trash = self.base / f".{name}.{os.getpid()}.rm"
        os.rename(self.path(name), trash)
        shutil.rmtree(trash, ignore_errors=True)

    def prune(self) -> builtins.list[str]:
        removed: builtins.list[str] = []
        for vol in self.list():
            if not self.users(vol["Name"]):
                self.remove(vol["Name"])
                removed.append(vol["Name"])
        return removed

    def copy_up(self, name: str, source: Path) -> None:
        """Fill a volume from `source` (the image's directory at the mount point) on its first use only."""
        meta = self._meta(name)
        if meta is None or meta.get("copied"):
            return
        data = self.data(name)
        if source.is_dir() and not any(data.iterdir()):
            import subprocess

            # cp -a keeps owners, modes, links, xattrs, as docker's copy-up does.
            subprocess.run(["cp", "-a", "--", f"{source}/.", str(data)], check=True, capture_output=True)
        meta["copied"] = True
        tmp = self.path(name) / "volume.json.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self.path(name) / "volume.json")


def prune(client: Client) -> list[str]:
    """Remove the namespace's volumes that no container names; returns their names (system prune --volumes)."""
    return VolumeStore(client).prune()


def usage(client: Client) -> list[dict[str, Any]]:
    """[{Name, Size, Links}] of the namespace's volumes: bytes on disk and how many containers name each."""
    store = VolumeStore(client)
    out = []
    for vol in store.list():
        size = 0
        for dirpath, _dirnames, filenames in os.walk(store.data(vol["Name"])):
            for name in filenames:
                try:
                    size += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
                except OSError:
                    pass
        out.append({"Name": vol["Name"], "Size": size, "Links": len(store.users(vol["Name"]))})
    return out
