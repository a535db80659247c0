"""Docker's view of images: IDs, repository/tag rows, `image inspect` JSON and `history` (nerdctl's
dockercompat). The ctr-shaped views (`images ls`, `images inspect --mode native`) stay in commands/images.py.

    image_rows(client)          one row per name: REPOSITORY, TAG, IMAGE ID, CREATED, PLATFORM, SIZE, BLOB SIZE
    image_inspect(client, ref)  docker-shaped dict (Id, RepoTags, RepoDigests, Config, RootFS, Created, Size...)
    history(client, ref)        the config's history, newest first, with each layer's size

SIZE is what the image's unpacked snapshots use on disk (snapshots usage; 0 when not unpacked), BLOB SIZE the
compressed content in the store, as nerdctl shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors, images as _images
from ctrpy.runtime.reference import parse

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client


def split_name(name: str) -> tuple[str, str, str]:
    """(familiar repository, tag or "<none>", digest or "") of an image name."""
    try:
        ref = parse(name, default_tag=False)
    except errors.InvalidArgument:
        return name, "<none>", ""
    familiar = ref.familiar().split("@")[0]
    if ref.tag:
        familiar = familiar[: -len(ref.tag) - 1]
    return familiar, ref.tag or "<none>", ref.digest or ""


def is_dangling(name: str) -> bool:
    """A name without a tag (only a digest, as unnamed imports get): docker's dangling images."""
    return split_name(name)[1] == "<none>"


def resolved(client: Client, image: Any) -> _images.ImageManifest | None:
    """The image's manifest and config for this host, or None when they are missing or unreadable."""
    try:
        return _images.resolve(client.content, image)
    except errors.CtrpyError:
        return None


def unpacked_chain(client: Client, im: _images.ImageManifest | None, snapshotter: str | None = None,
                   cache: dict[str, int] | None = None) -> list[str]:
    """The image's chain IDs unpacked in `snapshotter`, bottom up to the first one that is not; fills `cache`
    (chain ID -> bytes on disk), which spares measuring a layer shared by several images twice."""
    if im is None or not im.diff_ids:
        return []
    sn = client.snapshotter(snapshotter)
    cache = {} if cache is None else cache
    chain = []
    for chain_id in _images.chain_ids(im.diff_ids):
        if chain_id not in cache:
            try:
                cache[chain_id] = sn.usage(chain_id).size
            except errors.NotFound:
                break
        chain.append(chain_id)
    return chain


def unpacked_size(client: Client, im: _images.ImageManifest | None, snapshotter: str | None = None,
                  cache: dict[str, int] | None = None) -> int:
    """Bytes the image's chain snapshots use on disk in `snapshotter` (0 for the layers not unpacked)."""
    cache = {} if cache is None else cache
    return sum(cache[chain_id] for chain_id in unpacked_chain(client, im, snapshotter, cache))


@dataclass
class ImageRow:
    name: str
    repository: str
    tag: str
    id: str
    created: str
    platform: str
    size: int
    blob_size: int

    def to_dict(self) -> dict[str, Any]:
        return {"Name": self.name, "Repository": self.repository, "Tag": self.tag, "ID": self.id,
                "CreatedAt": self.created, "Platform": self.platform, "Size": self.size, "BlobSize": self.blob_size}


def image_rows(client: Client, filters: list[str] | None = None) -> list[ImageRow]:
    rows = []
    measured: dict[str, int] = {}
    for image in client.images.list(filters):
        im = resolved(client, image)
        repo, tag, _ = split_name(image.name)
        rows.append(ImageRow(
            name=image.name, repository=repo, tag=tag,
            id=im.config_desc.digest if im else _images.image_id(client.content, image),
            created=str(im.config.get("created") or "") if im else "",
            platform=_images.format_platform(im.platform) if im else "unknown",
            size=unpacked_size(client, im, cache=measured), blob_size=_images.image_size(client.content, image)))
    return rows


def image_inspect(client: Client, ref: str, platform: str = "") -> dict[str, Any]:
    """docker image inspect's object for `ref` (a name, short name or image ID), for this host's platform or
    the one named (strictly, as `run --platform`)."""
    image = _images.find_image(client, ref)
    im = _images.resolve_platform(client.content, image, platform) if platform else \
        _images.resolve(client.content, image)
    config = im.config
    names = [i for i in client.images.list() if i.target.digest == image.target.digest]
    repo_tags, repo_digests = [], []
    for other in names:
        repo, tag, digest = split_name(other.name)
        if tag != "<none>":
            repo_tags.append(f"{repo}:{tag}")
        entry = f"{repo}@{image.target.digest}"
        if entry not in repo_digests:
            repo_digests.append(entry)
    size = unpacked_size(client, im)
    return {
        "Id": im.config_desc.digest,
        "RepoTags": repo_tags,
        "RepoDigests": repo_digests,
        "Parent": "",
        "Comment": _comment(config),
        "Created": config.get("created", ""),
        "Author": config.get("author", ""),
        "Config": config.get("config") or {},
        "Architecture": config.get("architecture", ""),
        "Variant": config.get("variant", ""),
        "Os": config.get("os", ""),
        "Size": size,
        "BlobSize": _images.image_size(client.content, image),
        "GraphDriver": {"Name": client.config["default_snapshotter"],
                        "Data": {"Unpacked": bool(size) or _top_unpacked(client, im)}},
        "RootFS": {"Type": (config.get("rootfs") or {}).get("type", "layers"), "Layers": im.diff_ids},
        "Metadata": {"LastTagTime": image.updated_at},
        "Descriptor": image.target.to_dict(),
        "Manifest": im.desc.digest,
    }


def _top_unpacked(client: Client, im: _images.ImageManifest) -> bool:
    if not im.diff_ids:
        return False
    try:
        client.snapshotter().stat(im.chain_id)
        return True
    except errors.NotFound:
        return False


def _comment(config: dict[str, Any]) -> str:
    history = config.get("history") or []
    return str(history[-1].get("comment", "")) if history and isinstance(history[-1], dict) else ""


@dataclass
class HistoryRow:
    id: str
    created: str
    created_by: str
    size: int
    comment: str
    empty_layer: bool

    def to_dict(self) -> dict[str, Any]:
        return {"ID": self.id, "CreatedAt": self.created, "CreatedBy": self.created_by, "Size": self.size,
                "Comment": self.comment, "EmptyLayer": self.empty_layer}


def history(client: Client, ref: str) -> list[HistoryRow]:
    """The image's history, newest first; each non-empty entry gets its layer's size (unpacked on disk when
    the layer is unpacked, else compressed). Entries beyond the config's history are synthesised per layer."""
    image = _images.find_image(client, ref)
    im = _images.resolve(client.content, image)
    entries = [h for h in (im.config.get("history") or []) if isinstance(h, dict)]
    layer_count = len(im.layers)
    if sum(1 for h in entries if not h.get("empty_layer")) != layer_count:
        entries = [{"created": im.config.get("created", ""), "created_by": ""} for _ in range(layer_count)]
    chains = _images.chain_ids(im.diff_ids)
    sn = client.snapshotter()
    rows = []
    layer = 0
    for entry in entries:
        empty = bool(entry.get("empty_layer"))
        size = 0
        if not empty and layer < layer_count:
            try:
                size = sn.usage(chains[layer]).size
            except errors.NotFound:
                size = im.layers[layer].size
            layer += 1
        rows.append(HistoryRow("<missing>", str(entry.get("created", "")), str(entry.get("created_by", "")),
                               size, str(entry.get("comment", "")), empty))
    rows.reverse()
    if rows:
        rows[0].id = im.config_desc.digest
    return rows


__all__ = ["HistoryRow", "ImageRow", "history", "image_inspect", "image_rows", "is_dangling", "resolved",
           "split_name", "unpacked_chain", "unpacked_size"]
