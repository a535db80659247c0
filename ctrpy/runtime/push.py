"""Push: publish an image from the content store to a registry, byte for byte.

Order (containerd's remotes.PushContent): blobs first (configs and layers, in a bounded thread pool), then
child manifests by digest, the root last by tag, so a registry never holds a manifest whose blobs are
missing. A blob the registry already has (HEAD) is skipped; a blob whose distribution-source label names
another repository of the same registry is mounted from there (POST ?mount=&from=) instead of uploaded.
Uploads stream from the blob file (constant memory). After the push, pushed blobs get the distribution-source
label of the destination, so later pushes can mount them.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors, images as _images, platforms as _platforms
from ctrpy.runtime.content import Descriptor
from ctrpy.runtime.pull import Progress, ProgressFn, run_bounded
from ctrpy.runtime.reference import parse
from ctrpy.runtime.remotes import RegistryOptions, registry_options

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client


@dataclass
class PushOptions:
    registry: RegistryOptions = field(default_factory=RegistryOptions)
    platforms: list[str] = field(default_factory=list)
    credential: Any = None


def options_from_config(config: Any, **overrides: Any) -> PushOptions:
    opts = PushOptions(registry=registry_options(config, uploads=True))
    for key, value in overrides.items():
        setattr(opts, key, value)
    return opts


def _sources(labels: dict[str, str], domain: str) -> list[str]:
    value = labels.get(f"{_images.DISTRIBUTION_SOURCE}.{domain}", "")
    return [v for v in value.split(",") if v]


def push(client: Client, ref: str, local: str | None = None, opts: PushOptions | None = None,
         progress: ProgressFn | None = None) -> Descriptor:
    """Push the local image `local` (default: `ref` itself) to `ref`; returns the pushed root descriptor."""
    opts = opts or options_from_config(client.config)
    report = progress or (lambda event: None)
    target_ref = parse(ref)
    store = client.content
    image = _images.find_image(client, local or ref)
    root = image.target
    if not store.exists(root.digest):
        raise errors.NotFound(f"image {image.name!r}: its {_images.kind(root.media_type)} {root.digest} is not "
                              f"in the content store")

    manifests: list[Descriptor] = []
    if _images.is_index(root.media_type):
        all_manifests = _images.manifests(store, root)
        if opts.platforms:
            matcher = _platforms.matcher_for(opts.platforms)
            wanted = [m for m in all_manifests if matcher.match(m.platform)]
            best = [m for m in _images.select(wanted, matcher) if store.exists(m.digest)]
            if not best:
                raise errors.NotFound(f"image {image.name!r}: no content for platform {', '.join(opts.platforms)}")
            # Pushing one platform of an index publishes that platform's manifest itself.
            root = best[0]
            manifests = [root]
        else:
            missing = [m for m in all_manifests if not store.exists(m.digest)]
            if missing:
                plats = ", ".join(_images.format_platform(m.platform) for m in missing)
                raise errors.FailedPrecondition(
                    f"image {image.name!r}: content for {plats} is missing locally; pull it with "
                    f"--all-platforms or push one platform with --platform")
            manifests = all_manifests
    elif _images.is_manifest(root.media_type):
        manifests = [root]
    else:
        raise errors.NotImplemented_(f"cannot push media type {root.media_type!r}")

    blobs: dict[str, Descriptor] = {}
    for m in manifests:
        for child in _images.children(m, _images.read_json(store, m)):
            if not store.exists(child.digest):
                raise errors.FailedPrecondition(
                    f"image {image.name!r}: {_images.kind(child.media_type)} {child.digest} is missing locally "
                    f"(pull the image completely first)")
            blobs.setdefault(child.digest, child)

    from ctrpy.runtime.remotes.docker import Session, iter_file

    repo = target_ref.path
    domain = target_ref.domain
    cancel = threading.Event()

    with Session(domain, opts.registry, credential=opts.credential) as session:

        def push_blob(desc: Descriptor) -> None:
            key = f"{_images.kind(desc.media_type)}-{desc.digest}"
            kind = _images.kind(desc.media_type)
            if cancel.is_set():
                return
            if session.blob_exists(repo, desc):
                report(Progress(key, "exists", kind, desc.digest, desc.size, desc.size))
                return
            info = store.info(desc.digest)
            sources = [s for s in _sources(info.labels, domain) if s != repo]
            location = None
            for source in sources[:1]:
                location = session.start_upload(repo, desc, mount_from=source)
                if location is None:
                    report(Progress(key, "mounted", kind, desc.digest, desc.size, desc.size, message=source))
                    return
            if location is None:
                location = session.start_upload(repo, desc)
                if location is None:
                    report(Progress(key, "exists", kind, desc.digest, desc.size, desc.size))
                    return
            path = str(store.blob_path(desc.digest))
            report(Progress(key, "uploading", kind, desc.digest, 0, desc.size))
            session.finish_upload(repo, desc, location, lambda: iter_file(path))
            report(Progress(key, "done", kind, desc.digest, desc.size, desc.size))

        run_bounded(push_blob, list(blobs.values()), opts.registry.max_concurrent, cancel)

        # Children manifests by digest, the root last by tag (or by digest when the reference has none).
        for m in manifests:
            if m.digest == root.digest:
                continue
            key = f"manifest-{m.digest}"
            session.put_manifest(repo, m.digest, m, store.read_bytes(m.digest))
            report(Progress(key, "done", "manifest", m.digest, m.size, m.size))
        tag = target_ref.tag if target_ref.tag and not target_ref.digest else root.digest
        if target_ref.digest and target_ref.digest != root.digest:
            raise errors.InvalidArgument(f"{ref}: the digest does not match the local image ({root.digest})")
        session.put_manifest(repo, tag, root, store.read_bytes(root.digest))
        report(Progress(f"{_images.kind(root.media_type)}-{root.digest}", "done", _images.kind(root.media_type),
                        root.digest, root.size, root.size))

    # Remember where the content now lives, for cross-repository mounts of later pushes.
    label_key = f"{_images.DISTRIBUTION_SOURCE}.{domain}"
    for desc in list(blobs.values()) + manifests + ([root] if root not in manifests else []):
        with contextlib.suppress(errors.CtrpyError):
            current = _sources(store.info(desc.digest).labels, domain)
            if repo not in current:
                store.update_labels(desc.digest, {label_key: ",".join(current + [repo])})
    return Descriptor(root.media_type, root.digest, root.size)
