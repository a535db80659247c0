"""`ctrpy diff` and `ctrpy commit`: a container's changes against its image, and an image made of them.

Both read the container's writable layer: the upperdir of its overlayfs snapshot, where a deleted file is a
0/0 character device and a replaced directory carries trusted.overlay.opaque=y. `commit` turns that into an
OCI layer (whiteouts as `.wh.` entries, gzip), stores it with a new config (the base image's, plus the
layer's diff ID, a history entry and the `--change` instructions) and a new manifest, and names the image.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shlex
import stat
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctrpy.runtime import errors
from ctrpy.runtime.archive import WHITEOUT_OPAQUE, WHITEOUT_PREFIX

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

# Bind-mounted by every task: never part of a container's changes.
_MOUNTED = {"/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/sbin/docker-init"}


def _layers(client: Client, container: Any) -> tuple[Path, list[Path]]:
    """(upperdir, lowerdirs nearest first) of the container's overlay snapshot."""
    if not container.snapshot_key:
        raise errors.FailedPrecondition(f"container {container.id[:12]} has no image snapshot (it runs on --rootfs)")
    mounts = client.snapshotter(container.snapshotter).mounts(container.snapshot_key)
    for m in mounts:
        if m.type == "overlay":
            opts = dict(o.split("=", 1) for o in m.options if "=" in o)
            if "upperdir" in opts:
                return Path(opts["upperdir"]), [Path(p) for p in opts.get("lowerdir", "").split(":") if p]
    raise errors.NotImplemented_(f"diff/commit need the overlayfs snapshotter (container uses "
                                 f"{container.snapshotter!r})")


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque") == b"y"
    except OSError:
        return False


def _walk(upper: Path) -> list[tuple[str, Path, os.stat_result]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(upper):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            rel = "/" + str(full.relative_to(upper))
            if rel in _MOUNTED:
                continue
            out.append((rel, full, os.lstat(full)))
    return sorted(out, key=lambda t: t[0])


def diff(client: Client, container: Any) -> list[tuple[str, str]]:
    """docker's `diff`: (kind, path) with kind A (added), C (changed) or D (deleted), sorted by path."""
    upper, lowers = _layers(client, container)

    def in_lower(rel: str) -> bool:
        return any(os.path.lexists(str(low) + rel) for low in lowers)

    out = []
    for rel, _full, st in _walk(upper):
        if _is_whiteout(st):
            out.append(("D", rel))
        else:
            out.append(("C" if in_lower(rel) else "A", rel))
    return out


def layer_tar(client: Client, container: Any) -> bytes:
    """The container's changes as an uncompressed OCI layer tar."""
    upper, _ = _layers(client, container)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, full, st in _walk(upper):
            name = rel.lstrip("/")
            if _is_whiteout(st):
                head, tail = os.path.split(name)
                info = tarfile.TarInfo(os.path.join(head, WHITEOUT_PREFIX + tail))
                info.mtime = int(st.st_mtime)
                tar.addfile(info)
                continue
            info = tar.gettarinfo(str(full), arcname=name)
            info.uname = info.gname = ""
            if info.isreg():
                with open(full, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            if stat.S_ISDIR(st.st_mode) and _opaque(full):
                opq = tarfile.TarInfo(os.path.join(name, WHITEOUT_OPAQUE))
                opq.mtime = int(st.st_mtime)
                tar.addfile(opq)
    return buf.getvalue()


def apply_changes(config: dict[str, Any], changes: list[str]) -> None:
    """Dockerfile instructions allowed by `commit --change`: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE,
    VOLUME, STOPSIGNAL (JSON or shell form)."""
    cfg = config.setdefault("config", {})
    for change in changes:
        word, _, rest = change.strip().partition(" ")
        word, rest = word.upper(), rest.strip()
        if word in ("CMD", "ENTRYPOINT"):
            try:
                value = json.loads(rest) if rest.startswith("[") else ["/bin/sh", "-c", rest]
            except ValueError:
                raise errors.InvalidArgument(f"invalid --change {change!r}: bad JSON array") from None
            cfg["Cmd" if word == "CMD" else "Entrypoint"] = value
        elif word == "ENV":
            key, sep, val = rest.partition("=")
            if not sep:
                key, _, val = rest.partition(" ")
            env = [e for e in cfg.get("Env") or [] if e.split("=", 1)[0] != key]
            cfg["Env"] = env + [f"{key}={val.strip()}"]
        elif word == "WORKDIR":
            cfg["WorkingDir"] = rest
        elif word == "USER":
            cfg["User"] = rest
        elif word == "LABEL":
            for item in shlex.split(rest):
                key, _, val = item.partition("=")
                cfg.setdefault("Labels", {})[key] = val
        elif word == "EXPOSE":
            for port in rest.split():
                cfg.setdefault("ExposedPorts", {})[port if "/" in port else f"{port}/tcp"] = {}
        elif word == "VOLUME":
            paths = json.loads(rest) if rest.startswith("[") else rest.split()
            for path in paths:
                cfg.setdefault("Volumes", {})[path] = {}
        elif word == "STOPSIGNAL":
            cfg["StopSignal"] = rest
        else:
            raise errors.InvalidArgument(f"invalid --change {change!r}: use CMD, ENTRYPOINT, ENV, WORKDIR, USER, "
                                         f"LABEL, EXPOSE, VOLUME or STOPSIGNAL")


def commit(client: Client, container: Any, name: str, *, changes: list[str] | None = None, message: str = "",
           author: str = "") -> Any:
    """Store a new image `name` whose layers are the base image's plus the container's changes."""
    from ctrpy.runtime.content import Descriptor
    from ctrpy.runtime.dockerrun import docker_config
    from ctrpy.runtime.images import find_image, gc_labels, load_manifest
    from ctrpy.runtime.metadata import now
    from ctrpy.runtime.metadata.images import Image
    from ctrpy.runtime.reference import parse
    from ctrpy.runtime.tasks import MANIFEST_EXTENSION
    from ctrpy.runtime.unpack import resolve_chain

    ref = str(parse(name))
    config_changes = list(changes or [])
    apply_changes({}, config_changes)  # reject bad instructions before any work
    if not container.image:
        raise errors.FailedPrecondition(f"container {container.id[:12]} was not made from an image")
    recorded = container.extensions.get(MANIFEST_EXTENSION)
    if recorded and client.content.exists(recorded["digest"]):
        base = load_manifest(client.content, Descriptor.from_dict(recorded))  # the platform it runs (--platform)
    else:
        base = resolve_chain(client, find_image(client, container.image))[0]
    raw = layer_tar(client, container)
    diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    blob = gzip.compress(raw, compresslevel=6, mtime=0)
    oci = base.desc.media_type.startswith("application/vnd.oci")
    layer_type = ("application/vnd.oci.image.layer.v1.tar+gzip" if oci
                  else "application/vnd.docker.image.rootfs.diff.tar.gzip")
    store = client.content
    layer_digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    store.write_blob(f"commit-layer-{layer_digest}", io.BytesIO(blob), expected=layer_digest, size=len(blob))
    config = json.loads(json.dumps(base.config))
    cfg = config.setdefault("config", {})
    spec = (container.spec or {}).get("process") or {}
    docker = docker_config(container)
    if docker.get("cmd") or docker.get("entrypoint") is not None:
        cfg["Cmd"] = list(docker.get("cmd") or [])
        if docker.get("entrypoint") is not None:
            cfg["Entrypoint"] = [docker["entrypoint"]] if docker["entrypoint"] else None
    if spec.get("env"):
        cfg["Env"] = list(spec["env"])
    apply_changes(config, config_changes)
    config["created"] = now()
    if author:
        config["author"] = author
    config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"] = base.diff_ids + [diff_id]
    config.setdefault("history", []).append(
        {"created": config["created"], "created_by": "ctrpy commit", **({"comment": message} if message else {}),
         **({"author": author} if author else {})})
    config_blob = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
    config_digest = "sha256:" + hashlib.sha256(config_blob).hexdigest()
    config_desc = Descriptor(base.config_desc.media_type, config_digest, len(config_blob))
    store.write_blob(f"commit-config-{config_digest}", io.BytesIO(config_blob), expected=config_digest,
                     size=len(config_blob))
    layers = list(base.layers) + [Descriptor(layer_type, layer_digest, len(blob))]
    manifest = {"schemaVersion": 2, "mediaType": base.desc.media_type, "config": config_desc.to_dict(),
                "layers": [d.to_dict() for d in layers]}
    manifest_blob = json.dumps(manifest, separators=(",", ":")).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest_blob).hexdigest()
    manifest_desc = Descriptor(base.desc.media_type, manifest_digest, len(manifest_blob))
    store.write_blob(f"commit-manifest-{manifest_digest}", io.BytesIO(manifest_blob), expected=manifest_digest,
                     size=len(manifest_blob), labels=gc_labels(manifest_desc, [config_desc] + layers))
    return client.images.upsert(Image(name=ref, target=manifest_desc))
