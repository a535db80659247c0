"""Disk space you can see and take back: `system df`, the prune commands, and `images rm` that frees at once.

Sizes are honest: a blob or a snapshot counted once however many images share it, snapshot sizes measured on
disk (the snapshotter's `usage`, like `snapshots usage`). Per image, as docker's `system df -v`:

    Size        its blobs (compressed content) + its unpacked chain snapshots in the default snapshotter
    SharedSize  the part of Size that another image of the namespace also holds
    UniqueSize  Size - SharedSize (what removing only this image would free)

Removal goes through the stores (images.delete, containers.delete_container) and then one synchronous garbage
collection (gc.collect), like containerd's `images rm --sync`: records go first, the collector frees what
nothing references any more, across namespaces, under its own locking rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors, images as _images
from ctrpy.runtime.imageinfo import is_dangling, resolved, split_name, unpacked_chain

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client


@dataclass
class PruneReport:
    """What a prune removed and the bytes the collection that followed freed."""

    images: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "containers": self.containers, "volumes": self.volumes,
                "bytes_freed": self.bytes_freed, "notes": self.notes, "failures": self.failures}


def collect(client: Client) -> int:
    """One synchronous collection; returns the bytes it freed (warnings are not errors here)."""
    from ctrpy.runtime.gc import collect as gc_collect

    return int(gc_collect(client).bytes_freed)


def remove_images(client: Client, refs: list[str], *, sync: bool = True,
                  on_result: Callable[[str, errors.CtrpyError | None], None] | None = None) -> int:
    """Remove image names (each resolved like docker: short names and IDs), then collect once unless
    `sync` is False. `on_result(name, error)` is told about each; returns the bytes freed."""
    removed = 0
    for ref in refs:
        try:
            image = _images.find_image(client, ref)
            client.images.delete(image.name)
        except errors.CtrpyError as exc:
            if on_result:
                on_result(ref, exc)
            continue
        removed += 1
        if on_result:
            on_result(image.name, None)
    return collect(client) if sync and removed else 0


def images_in_use(client: Client) -> set[str]:
    """Names of the images some container of the namespace was created from."""
    return {c.image for c in client.containers.list() if c.image}


def prune_images(client: Client, *, all: bool = False) -> PruneReport:
    """Remove dangling images (names without a tag), or with `all` every image no container uses; then
    collect."""
    used = images_in_use(client)
    report = PruneReport()
    for image in client.images.list():
        if image.name in used:
            continue
        if all or is_dangling(image.name):
            try:
                client.images.delete(image.name)
                report.images.append(image.name)
            except errors.NotFound:
                continue
    report.bytes_freed = collect(client)
    return report


def _stopped(client: Client, container_id: str) -> bool:
    from ctrpy.runtime.tasks import TaskStatus

    tasks = client.tasks
    if not tasks.exists(container_id):
        return True
    try:
        return bool(tasks.state(container_id).status == TaskStatus.STOPPED)
    except errors.NotFound:
        return True


def prune_containers(client: Client, *, collect_after: bool = True) -> PruneReport:
    """Remove every container of the namespace whose task is stopped or absent (docker's container prune);
    then collect."""
    from ctrpy.runtime.lifecycle import remove

    report = PruneReport()
    for container in client.containers.list():
        if not _stopped(client, container.id):
            continue
        # The root file system goes with the container (not through gc): measure it first.
        size = _container_size(client, container)
        try:
            remove(client, container.id)  # with its saved logs and /etc/hosts peers, as `ctrpy rm`
            report.containers.append(container.id)
            report.bytes_freed += size
        except errors.CtrpyError as exc:
            report.failures.append(f"{container.id}: {exc}")
    if collect_after:
        report.bytes_freed += collect(client)
    return report


def _container_size(client: Client, container: Any) -> int:
    """Bytes of the container's own writable layer, measured on disk (0 when it has none)."""
    if not container.snapshot_key:
        return 0
    try:
        return int(client.snapshotter(container.snapshotter or None).usage(container.snapshot_key).size)
    except errors.CtrpyError:
        return 0


def system_prune(client: Client, *, all: bool = False, volumes: bool = False) -> PruneReport:
    """docker system prune: stopped containers, dangling (with `all`: unused) images, with `volumes` unused
    volumes; then one collection (which also takes expired leases, stale ingests and leftovers)."""
    report = prune_containers(client, collect_after=False)
    used = images_in_use(client)
    for image in client.images.list():
        if image.name not in used and (all or is_dangling(image.name)):
            try:
                client.images.delete(image.name)
                report.images.append(image.name)
            except errors.NotFound:
                continue
    if volumes:
        from ctrpy.runtime import volumes as _volumes

        report.volumes = _volumes.prune(client)
    report.bytes_freed += collect(client)
    return report


# ---------------------------------------------------------------------------------------------- df

@dataclass
class ImageUsage:
    name: str
    repository: str
    tag: str
    id: str
    created: str
    size: int
    shared_size: int
    unique_size: int
    containers: int

    def to_dict(self) -> dict[str, Any]:
        return {"Name": self.name, "Repository": self.repository, "Tag": self.tag, "ID": self.id,
                "CreatedAt": self.created, "Size": self.size, "SharedSize": self.shared_size,
                "UniqueSize": self.unique_size, "Containers": self.containers}


@dataclass
class ContainerUsage:
    id: str
    image: str
    status: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"ID": self.id, "Image": self.image, "Status": self.status, "Size": self.size}


@dataclass
class DiskUsage:
    images: list[ImageUsage]
    containers: list[ContainerUsage]
    images_size: int
    images_reclaimable: int
    volumes: list[dict[str, Any]] | None  # None: this ctrpy has no volumes
    build_cache: int = 0

    def summary(self) -> list[dict[str, Any]]:
        active_images = sum(1 for i in self.images if i.containers)
        running = [c for c in self.containers if c.status in ("running", "paused", "created")]
        csize = sum(c.size for c in self.containers)
        rows = [
            {"Type": "Images", "TotalCount": len(self.images), "Active": active_images, "Size": self.images_size,
             "Reclaimable": self.images_reclaimable},
            {"Type": "Containers", "TotalCount": len(self.containers), "Active": len(running), "Size": csize,
             "Reclaimable": sum(c.size for c in self.containers if c not in running)},
        ]
        volumes = self.volumes or []
        rows.append({"Type": "Local Volumes", "TotalCount": len(volumes),
                     "Active": sum(1 for v in volumes if v.get("Links")),
                     "Size": sum(int(v.get("Size", 0)) for v in volumes),
                     "Reclaimable": sum(int(v.get("Size", 0)) for v in volumes if not v.get("Links"))})
        rows.append({"Type": "Build Cache", "TotalCount": 0, "Active": 0, "Size": self.build_cache,
                     "Reclaimable": 0})
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"Summary": self.summary(), "Images": [i.to_dict() for i in self.images],
                "Containers": [c.to_dict() for c in self.containers],
                "Volumes": self.volumes, "BuildCache": []}


def _image_parts(client: Client, image: Any, im: _images.ImageManifest | None, sizes: dict[tuple[str, str], int],
                 measured: dict[str, int]) -> set[tuple[str, str]]:
    """The blobs (every platform present) and chain snapshots (`im`, the unpacked platform) an image holds;
    fills `sizes` (blob size from the store, snapshot size measured on disk, once per chain ID in `measured`)."""
    store = client.content
    parts: set[tuple[str, str]] = set()
    seen: set[str] = set()

    def walk(desc: Any, depth: int = 0) -> None:
        if desc.digest in seen or depth > 8 or not store.exists(desc.digest):
            return
        seen.add(desc.digest)
        parts.add(("blob", desc.digest))
        sizes[("blob", desc.digest)] = desc.size
        if _images.is_index(desc.media_type) or _images.is_manifest(desc.media_type):
            for child in _images.children(desc, _images.read_json(store, desc)):
                walk(child, depth + 1)

    walk(image.target)
    for chain_id in unpacked_chain(client, im, cache=measured):
        sizes[("snapshot", chain_id)] = measured[chain_id]
        parts.add(("snapshot", chain_id))
    return parts


def disk_usage(client: Client) -> DiskUsage:
    """Images, containers and volumes of the namespace with honest sizes (see the module docstring)."""
    sizes: dict[tuple[str, str], int] = {}
    used = images_in_use(client)
    containers = client.containers.list()
    holders: dict[tuple[str, str], int] = {}
    measured: dict[str, int] = {}
    per_image = []
    for image in client.images.list():
        im = resolved(client, image)
        per_image.append((image, im, _image_parts(client, image, im, sizes, measured)))
    # Names pointing at the same target are one image to docker: count their parts once for sharing.
    by_target: dict[str, set[tuple[str, str]]] = {}
    for image, _, parts in per_image:
        by_target.setdefault(image.target.digest, parts)
    for parts in by_target.values():
        for part in parts:
            holders[part] = holders.get(part, 0) + 1
    rows = []
    used_parts: set[tuple[str, str]] = set()
    all_parts: set[tuple[str, str]] = set()
    for image, im, parts in per_image:
        size = sum(sizes[p] for p in parts)
        shared = sum(sizes[p] for p in parts if holders.get(p, 0) > 1)
        repo, tag, _ = split_name(image.name)
        n = sum(1 for c in containers if c.image == image.name)
        all_parts |= parts
        if image.name in used:
            used_parts |= parts
        if im is not None:
            image_id, created = im.config_desc.digest, str(im.config.get("created", ""))
        else:
            image_id, created = image.target.digest, ""
        rows.append(ImageUsage(image.name, repo, tag, image_id, created, size, shared, size - shared, n))
    total = sum(sizes[p] for p in all_parts)
    reclaimable = total - sum(sizes[p] for p in used_parts)
    crow = []
    for container in containers:
        status = "stopped"
        try:
            if client.tasks.exists(container.id):
                status = client.tasks.state(container.id).status.value
        except errors.CtrpyError:
            status = "unknown"
        crow.append(ContainerUsage(container.id, container.image, status, _container_size(client, container)))
    from ctrpy.runtime import volumes as _volumes

    volumes = _volumes.usage(client)
    return DiskUsage(rows, crow, total, reclaimable, volumes)


__all__ = ["ContainerUsage", "DiskUsage", "ImageUsage", "PruneReport", "collect", "disk_usage", "images_in_use",
           "prune_containers", "prune_images", "remove_images", "system_prune"]
