"""Walking images in the content store: index -> manifest for a platform -> config and layers.

Both OCI and Docker schema2 media types are understood (containerd's images package). Nothing here talks to
a registry: pull.py fetches, this module reads what was fetched.

    children(desc, data)            descriptors a manifest or index points at
    manifest_for(store, target, m)  the manifest descriptor for the best platform under `target`
    resolve(store, image, m)        ImageManifest(manifest desc, manifest, config, platform)
    resolve_platform(store, image, "linux/arm64")  the same for a platform asked for by name, strictly
    chain_ids(diff_ids)             snapshot chain: chain[0] = diff[0], chain[n] = sha256(chain[n-1] + " " + diff[n])
    check(store, image)             completeness per platform (ctr images check)
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors, platforms
from ctrpy.runtime.content import Descriptor

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

# OCI image-spec media types
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER + "+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
# Docker schema2 media types
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = DOCKER_LAYER + ".gzip"
DOCKER_LAYER_ZSTD = DOCKER_LAYER + ".zstd"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
# What a resolver asks registries for, best first (as containerd's docker resolver does).
ACCEPT = ", ".join([DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX, "*/*;q=0.8"])

MAX_MANIFEST_SIZE = 4 << 20  # manifests and configs are read into memory; refuse absurd ones

# containerd's GC label keys
GC_REF_CONTENT = "containerd.io/gc.ref.content"
DISTRIBUTION_SOURCE = "containerd.io/distribution.source"


def is_index(media_type: str) -> bool:
    return media_type in INDEX_TYPES


def is_manifest(media_type: str) -> bool:
    return media_type in MANIFEST_TYPES


def is_layer(media_type: str) -> bool:
    base = media_type.split("+")[0]
    return (base.startswith(OCI_LAYER) or base.startswith(OCI_LAYER_NONDIST) or media_type.startswith(DOCKER_LAYER)
            or media_type == DOCKER_FOREIGN)


def layer_compression(media_type: str) -> str:
    """gzip, zstd or none, from a layer media type."""
    if media_type.endswith(("+gzip", ".gzip")) or media_type == DOCKER_FOREIGN:
        return "gzip"
    if media_type.endswith(("+zstd", ".zstd")):
        return "zstd"
    if media_type.endswith(".tar"):
        return "none"
    raise errors.NotImplemented_(f"unsupported layer media type {media_type!r}")


def kind(media_type: str) -> str:
    """index, manifest, config, layer or blob: for messages and progress keys."""
    if is_index(media_type):
        return "index"
    if is_manifest(media_type):
        return "manifest"
    if media_type in CONFIG_TYPES:
        return "config"
    if is_layer(media_type):
        return "layer"
    return "blob"


def parse_json(data: bytes, desc: Descriptor) -> dict[str, Any]:
    """Parse a manifest/index/config blob, checking it is what the descriptor says."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.InvalidArgument(f"{kind(desc.media_type)} {desc.digest} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise errors.InvalidArgument(f"{kind(desc.media_type)} {desc.digest} is not a JSON object")
    if is_index(desc.media_type) and not isinstance(obj.get("manifests"), list):
        raise errors.InvalidArgument(f"index {desc.digest} has no manifests list")
    if is_manifest(desc.media_type):
        if not isinstance(obj.get("config"), dict) or not isinstance(obj.get("layers"), list):
            raise errors.InvalidArgument(f"manifest {desc.digest} lacks config or layers")
    if desc.media_type in CONFIG_TYPES:
        _check_config(obj, desc)
    declared = obj.get("mediaType")
    if declared and (is_index(desc.media_type) or is_manifest(desc.media_type)) and declared != desc.media_type:
        raise errors.InvalidArgument(
            f"{desc.digest}: media type {declared!r} in the document differs from {desc.media_type!r}"
        )
    return obj


def _check_config(obj: dict[str, Any], desc: Descriptor) -> None:
    """The parts of an image config ctrpy relies on (image-spec config.md): rootfs.diff_ids as digests, the
    platform fields and `config` of the right types. Everything else is passed through untouched."""
    from ctrpy.runtime.reference import validate_digest

    where = f"config {desc.digest}"
    rootfs = obj.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
        raise errors.InvalidArgument(f"{where}: rootfs.diff_ids must be a list of digests")
    for diff_id in rootfs["diff_ids"]:
        try:
            validate_digest(diff_id)
        except errors.InvalidArgument as exc:
            raise errors.InvalidArgument(f"{where}: rootfs.diff_ids: {exc}") from None
    for key in ("architecture", "os", "variant", "os.version"):
        if key in obj and not isinstance(obj[key], str):
            raise errors.InvalidArgument(f"{where}: {key} must be a string")
    if obj.get("config") is not None and not isinstance(obj["config"], dict):
        raise errors.InvalidArgument(f"{where}: config must be an object")


def children(desc: Descriptor, obj: dict[str, Any]) -> list[Descriptor]:
    """The descriptors an index (its manifests) or a manifest (config, then layers) references."""
    if is_index(desc.media_type):
        return [Descriptor.from_dict(m) for m in obj.get("manifests", [])]
    if is_manifest(desc.media_type):
        return [Descriptor.from_dict(obj["config"])] + [Descriptor.from_dict(layer) for layer in obj["layers"]]
    return []


def gc_labels(desc: Descriptor, kids: list[Descriptor]) -> dict[str, str]:
    """containerd's GC reference labels for a parent: `.m.<i>` on an index, `.config` and `.l.<i>` on a manifest."""
    labels: dict[str, str] = {}
    if is_index(desc.media_type):
        for i, child in enumerate(kids):
            labels[f"{GC_REF_CONTENT}.m.{i}"] = child.digest
    elif is_manifest(desc.media_type):
        for i, child in enumerate(kids):
            if i == 0:
                labels[f"{GC_REF_CONTENT}.config"] = child.digest
            else:
                labels[f"{GC_REF_CONTENT}.l.{i - 1}"] = child.digest
    return labels


def read_json(store: Any, desc: Descriptor) -> dict[str, Any]:
    if desc.size > MAX_MANIFEST_SIZE:
        raise errors.InvalidArgument(f"{kind(desc.media_type)} {desc.digest} is too large ({desc.size} bytes)")
    return parse_json(store.read_bytes(desc.digest), desc)


def chain_ids(diff_ids: list[str]) -> list[str]:
    """Identity of each layer stack: the snapshot names unpack uses (OCI image-spec, config.md)."""
    out: list[str] = []
    for diff in diff_ids:
        if not out:
            out.append(diff)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff}".encode()).hexdigest())
    return out


def chain_id(diff_ids: list[str]) -> str:
    ids = chain_ids(diff_ids)
    if not ids:
        raise errors.InvalidArgument("image has no layers")
    return ids[-1]


def platform_of(desc: Descriptor, config: dict[str, Any] | None = None) -> dict[str, str] | None:
    """The platform of a manifest: from its index entry, else from its config."""
    if desc.platform:
        return dict(desc.platform)
    if config and config.get("architecture"):
        out = {"os": str(config.get("os", "")), "architecture": str(config["architecture"])}
        if config.get("variant"):
            out["variant"] = str(config["variant"])
        return out
    return None


def format_platform(p: dict[str, Any] | None) -> str:
    if not p:
        return "unknown"
    return "/".join(str(x) for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)


def manifests(store: Any, target: Descriptor, *, depth: int = 0) -> list[Descriptor]:
    """Every manifest descriptor under `target` (nested indexes flattened), in document order."""
    if depth > 8:
        raise errors.InvalidArgument("index nesting too deep")
    if is_manifest(target.media_type):
        return [target]
    if not is_index(target.media_type):
        raise errors.InvalidArgument(f"{target.digest}: unsupported media type {target.media_type!r}")
    out: list[Descriptor] = []
    for child in children(target, read_json(store, target)):
        if is_manifest(child.media_type):
            out.append(child)
        elif is_index(child.media_type) and store.exists(child.digest):
            out.extend(manifests(store, child, depth=depth + 1))
    return out


def select(candidates: list[Descriptor], matcher: Any) -> list[Descriptor]:
    """The candidates the matcher accepts, best first (stable within a rank)."""
    ranked = [(matcher.rank(d.platform), i, d) for i, d in enumerate(candidates)
              if d.platform is None or matcher.match(d.platform)]
    # A manifest without a platform in an index cannot be chosen by platform; keep it last as containerd does.
    ranked = [(r if r is not None else 1 << 30, i, d) for r, i, d in ranked]
    return [d for _, _, d in sorted(ranked, key=lambda t: (t[0], t[1]))]


@dataclass
class ImageManifest:
    """One platform's manifest of an image, with its config."""

    desc: Descriptor
    manifest: dict[str, Any]
    config_desc: Descriptor
    config: dict[str, Any]
    platform: dict[str, str] | None = None
    layers: list[Descriptor] = field(default_factory=list)

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids", []))

    @property
    def chain_id(self) -> str:
        return chain_id(self.diff_ids)

    def descriptor(self) -> dict[str, Any]:
        """docker's ImageManifestDescriptor (API 1.48): this manifest, with its platform."""
        return {"mediaType": self.desc.media_type, "digest": self.desc.digest, "size": self.desc.size,
                **({"platform": dict(self.platform)} if self.platform else {})}

    @property
    def size(self) -> int:
        return self.desc.size + self.config_desc.size + sum(layer.size for layer in self.layers)


def manifest_for(store: Any, target: Descriptor, matcher: Any | None = None) -> Descriptor:
    """The manifest under `target` for the best matching platform present in the store."""
    matcher = matcher or platforms.Matcher(platforms.host())
    if is_manifest(target.media_type):
        return target
    all_manifests = manifests(store, target)
    for desc in select(all_manifests, matcher):
        if store.exists(desc.digest):
            return desc
    want = getattr(matcher, "want", None)
    wanted = platforms.format_platform(want) if want else "requested"
    # Only what is in the store is available: the index may name the wanted platform without its blobs.
    local = sorted({format_platform(d.platform) for d in all_manifests if store.exists(d.digest)})
    listed = select(all_manifests, matcher)
    hint = f"; the index lists {wanted} but it was not pulled (pull with --platform {wanted})" if (
        listed and want) else ""
    raise errors.NotFound(
        f"no manifest for platform {wanted} in {target.digest} (available locally: {', '.join(local) or 'none'})"
        f"{hint}"
    )


def load_manifest(store: Any, desc: Descriptor) -> ImageManifest:
    manifest = read_json(store, desc)
    config_desc = Descriptor.from_dict(manifest["config"])
    config = read_json(store, config_desc)
    layers = [Descriptor.from_dict(layer) for layer in manifest["layers"]]
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    if len(diff_ids) != len(layers):
        raise errors.InvalidArgument(
            f"manifest {desc.digest}: {len(layers)} layers but the config lists {len(diff_ids)} diff IDs"
        )
    return ImageManifest(desc, manifest, config_desc, config, platform_of(desc, config), layers)


def resolve(store: Any, image: Any, matcher: Any | None = None) -> ImageManifest:
    """The image's manifest and config for a platform (host by default)."""
    try:
        desc = manifest_for(store, image.target, matcher)
        return load_manifest(store, desc)
    except errors.NotFound as exc:
        raise errors.NotFound(f"image {image.name!r}: {exc}") from None


class PlatformNotPulled(errors.NotFound):
    """The image's index lists the platform, but its manifest was not pulled."""


def resolve_platform(store: Any, image: Any, spec: str) -> ImageManifest:
    """The manifest of the platform asked for by name (`run --platform`), strictly: a single-platform image
    must be of that platform (containerd's images.Manifest checks the config too). NotFound, naming the
    platforms the image provides, when it has none that matches; PlatformNotPulled when its index lists the
    platform but the manifest is not in the store."""
    want = platforms.parse(spec)
    matcher = platforms.Matcher(want)
    wanted = platforms.format_platform(want)
    target = image.target
    if is_manifest(target.media_type):
        im = load_manifest(store, target)
        if im.platform is None or matcher.match(im.platform):
            return im
        provides = [format_platform(im.platform)]
    else:
        listed = manifests(store, target)
        chosen = select([d for d in listed if d.platform is not None], matcher)
        for desc in chosen:
            if store.exists(desc.digest):
                return load_manifest(store, desc)
        if chosen:
            raise PlatformNotPulled(f"image {image.name!r}: platform {wanted} is not pulled "
                                    f"(`ctrpy pull --platform {wanted} {image.name}`)")
        provides = sorted({format_platform(d.platform) for d in listed if d.platform})
    raise errors.NotFound(f"image {image.name!r} does not provide the requested platform {wanted} "
                          f"(it provides {', '.join(provides) or 'no platform'})")


@dataclass
class PlatformStatus:
    platform: str
    manifest: str
    present: int
    required: int
    size: int

    @property
    def complete(self) -> bool:
        return self.present == self.required

    @property
    def status(self) -> str:
        word = "complete" if self.complete else ("incomplete" if self.present else "missing")
        return f"{word} ({self.present}/{self.required})"


def check(store: Any, image: Any) -> list[PlatformStatus]:
    """Per platform: how many of manifest + config + layers are in the store (ctr images check)."""
    target = image.target
    if not store.exists(target.digest):
        return [PlatformStatus("unknown", target.digest, 0, 1, 0)]
    out = []
    for desc in manifests(store, target):
        present, required, size = 0, 1, 0
        plat = desc.platform
        if store.exists(desc.digest):
            present = 1
            size += desc.size
            manifest = read_json(store, desc)
            kids = children(desc, manifest)
            required += len(kids)
            for i, child in enumerate(kids):
                if store.exists(child.digest):
                    present += 1
                    size += child.size
                    if i == 0 and plat is None:
                        plat = platform_of(desc, read_json(store, child))
        else:
            required = 1
        out.append(PlatformStatus(format_platform(plat), desc.digest, present, required, size))
    return out


def image_size(store: Any, image: Any) -> int:
    """Bytes of all the image's content present in the store (every platform, compressed)."""
    seen: set[str] = set()
    total = 0

    def walk(desc: Descriptor, depth: int = 0) -> None:
        nonlocal total
        if desc.digest in seen or depth > 8 or not store.exists(desc.digest):
            return
        seen.add(desc.digest)
        total += desc.size
        if is_index(desc.media_type) or is_manifest(desc.media_type):
            for child in children(desc, read_json(store, desc)):
                walk(child, depth + 1)

    walk(image.target)
    return total


def image_platforms(store: Any, image: Any) -> list[str]:
    """Platforms of the image whose manifest is present (as "os/arch[/variant]")."""
    out = []
    try:
        for st in check(store, image):
            if st.present:
                out.append(st.platform)
    except errors.CtrpyError:
        return []
    return out


def image_id(store: Any, image: Any) -> str:
    """Docker's image ID: the config digest of the host platform's manifest (else the best one present),
    falling back to the target digest for an image whose content is missing."""
    try:
        return resolve(store, image).config_desc.digest
    except errors.CtrpyError:
        pass
    try:
        for desc in manifests(store, image.target):
            if store.exists(desc.digest):
                return Descriptor.from_dict(read_json(store, desc)["config"]).digest
    except errors.CtrpyError:
        pass
    return str(image.target.digest)


_SHORT_ID = re.compile(r"^(sha256:)?[0-9a-f]{3,64}$")


def find_image(client: Client, name: str) -> Any:
    """A local image by exact name, else by its normalised reference (busybox -> docker.io/library/...),
    else by a (short) image ID: a prefix of the config digest or of the target digest, as docker resolves."""
    from ctrpy.runtime.reference import parse

    try:
        return client.images.get(name)
    except errors.NotFound:
        pass
    try:
        normalised = str(parse(name))
    except errors.InvalidArgument:
        normalised = name
    try:
        return client.images.get(normalised)
    except errors.NotFound:
        pass
    if _SHORT_ID.match(name):
        prefix = name if name.startswith("sha256:") else "sha256:" + name
        found: dict[str, Any] = {}
        for image in client.images.list():
            for digest in {image_id(client.content, image), image.target.digest}:
                if digest.startswith(prefix):
                    found.setdefault(digest, image)
        if len(found) > 1:
            raise errors.InvalidArgument(f"image ID {name!r} is ambiguous: it matches {len(found)} images")
        if found:
            return next(iter(found.values()))
    raise errors.NotFound(f"image {name!r} not found in namespace {client.namespace!r}")
