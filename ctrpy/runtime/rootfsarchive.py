"""docker's `import` and `export`: a root file system tarball in as a new one-layer image, a container's file
system out as a tarball. The image archives (save/load) are imagearchive.py's; this module shares its stream
helpers (decompression by magic number, the error test for damaged streams).
"""

from __future__ import annotations

import io
import json
import secrets
import tarfile
import time
from typing import TYPE_CHECKING, Any, BinaryIO

from ctrpy.runtime import errors, images as _images, platforms as _platforms, timefmt
from ctrpy.runtime.content import Descriptor
from ctrpy.runtime.imagearchive import BLOCK, CHUNK, peek, sha256_digest, is_stream_error, decompressed

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client


CHANGE_INSTRUCTIONS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "USER", "WORKDIR", "VOLUME", "STOPSIGNAL")


def _command_form(args: str) -> list[str]:
    """A Dockerfile CMD/ENTRYPOINT argument: JSON array (exec form) or a shell command (shell form)."""
    text = args.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return ["/bin/sh", "-c", text]


def _pairs(args: str, what: str) -> dict[str, str]:
    import shlex

    try:
        words = shlex.split(args)
    except ValueError as exc:
        raise errors.InvalidArgument(f"--change {what}: {exc}") from None
    if len(words) == 2 and "=" not in words[0] and what == "ENV":
        return {words[0]: words[1]}
    out = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise errors.InvalidArgument(f"--change {what} {args!r}: expected KEY=VALUE")
        out[key] = value
    return out


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """Apply docker import's --change Dockerfile instructions to an image config's `config` section."""
    out = dict(config)
    for change in changes:
        instruction, _, args = change.strip().partition(" ")
        instruction = instruction.upper()
        args = args.strip()
        if instruction not in CHANGE_INSTRUCTIONS:
            raise errors.InvalidArgument(f"--change {change!r}: {instruction or 'empty'} is not supported "
                                         f"(use one of {', '.join(CHANGE_INSTRUCTIONS)})")
        if instruction in ("CMD", "ENTRYPOINT"):
            out["Cmd" if instruction == "CMD" else "Entrypoint"] = _command_form(args)
        elif instruction == "ENV":
            env = {e.partition("=")[0]: e for e in out.get("Env") or []}
            for key, value in _pairs(args, "ENV").items():
                env[key] = f"{key}={value}"
            out["Env"] = list(env.values())
        elif instruction == "LABEL":
            out["Labels"] = {**(out.get("Labels") or {}), **_pairs(args, "LABEL")}
        elif instruction == "EXPOSE":
            ports = dict(out.get("ExposedPorts") or {})
            for port in args.split():
                ports[port if "/" in port else f"{port}/tcp"] = {}
            out["ExposedPorts"] = ports
        elif instruction == "VOLUME":
            paths = _command_form(args) if args.startswith("[") else args.split()
            out["Volumes"] = {**(out.get("Volumes") or {}), **{p: {} for p in paths}}
        else:
            out[{"USER": "User", "WORKDIR": "WorkingDir", "STOPSIGNAL": "StopSignal"}[instruction]] = args
    return out


def import_rootfs(client: Client, source: BinaryIO, ref: str | None = None, *, changes: list[str] | None = None,
                  message: str = "", platform: str | None = None, unpack: bool = True) -> Any:
    """docker import: a root file system tarball (plain or gzip/zstd/xz) becomes a new one-layer image.

    The layer is stored uncompressed (its digest is its diff ID). Returns the Image; without `ref` it is named
    import-<date>@<manifest digest> (dangling, like docker's <none>:<none>)."""
    from ctrpy.runtime.metadata.images import Image
    from ctrpy.runtime.reference import normalize

    name = normalize(ref) if ref else None
    plat = _platforms.parse(platform) if platform else _platforms.host()
    container_config = apply_changes({}, list(changes or []))
    stream = decompressed(source)
    head, stream = peek(stream, BLOCK)
    try:
        tarfile.TarInfo.frombuf(head, tarfile.ENCODING, "surrogateescape")
    except (tarfile.TarError, ValueError):
        raise errors.InvalidArgument("not a root file system tarball (no tar header at its start)") from None
    store = client.content
    token = secrets.token_hex(4)
    with client.leases.lease(expire=86400) as lease_id:
        ref_id = f"import-rootfs-{token}"
        with store.writer(ref_id) as w:
            try:
                while chunk := stream.read(CHUNK):
                    w.write(chunk)
            except Exception as exc:
                if not is_stream_error(exc):
                    raise
                w.truncate(0)
                raise errors.InvalidArgument(f"tarball is truncated or corrupt: {exc}") from None
            layer_digest = w.digest()
            size = w.offset
            client.leases.add_resource(lease_id, "content", layer_digest)
            w.commit(size, layer_digest)
        created = timefmt.format_seconds()
        config = {"architecture": plat.architecture, "os": plat.os, "created": created,
                  "config": container_config,
                  "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
                  "history": [{"created": created, "created_by": "ctrpy import", "comment": message or "Imported "
                               "from tarball"}]}
        if plat.variant:
            config["variant"] = plat.variant
        blobs: list[tuple[bytes, str, dict[str, str]]] = []
        cfg = json.dumps(config, separators=(",", ":")).encode()
        cfg_desc = Descriptor(_images.OCI_CONFIG, sha256_digest(cfg), len(cfg))
        layer_desc = Descriptor(_images.OCI_LAYER, layer_digest, size)
        manifest = {"schemaVersion": 2, "mediaType": _images.OCI_MANIFEST, "config": cfg_desc.to_dict(),
                    "layers": [layer_desc.to_dict()]}
        man = json.dumps(manifest, separators=(",", ":")).encode()
        man_desc = Descriptor(_images.OCI_MANIFEST, sha256_digest(man), len(man))
        blobs.append((cfg, cfg_desc.digest, {}))
        blobs.append((man, man_desc.digest, _images.gc_labels(man_desc, [cfg_desc, layer_desc])))
        for data, digest, labels in blobs:
            client.leases.add_resource(lease_id, "content", digest)
            with store.writer(f"import-rootfs-{token}-{digest}", expected=digest, total=len(data)) as w:
                if not w.committed_already:
                    w.truncate(0)
                    w.write(data)
                w.commit(len(data), digest, labels or None)
        stamp = time.strftime("%Y-%m-%d", time.gmtime())
        image = client.images.upsert(Image(name=name or f"import-{stamp}@{man_desc.digest}", target=man_desc))
    if unpack:
        from ctrpy.runtime.unpack import unpack_image

        try:
            unpack_image(client, image)
        except errors.CtrpyError as exc:
            client.images.delete(image.name)
            raise errors.InvalidArgument(f"not a usable root file system tarball: {exc}") from None
    return image


def _read_only(mounts: list[Any]) -> list[Any]:
    """The same file system, read-only, mountable beside the container's own mount (an overlay's upper
    directory becomes its top lower layer, so no upper/work directory is shared)."""
    from ctrpy.runtime.mount import Mount

    out = []
    for m in mounts:
        if m.type == "overlay":
            opts = {o.partition("=")[0]: o.partition("=")[2] for o in m.options if "=" in o}
            lower = opts.get("lowerdir", "")
            if opts.get("upperdir"):
                lower = f"{opts['upperdir']}:{lower}" if lower else opts["upperdir"]
            rest = [o for o in m.options if o.partition("=")[0] not in ("lowerdir", "upperdir", "workdir")
                    and o not in ("rw", "ro")]
            out.append(Mount("overlay", m.source, m.target, (*rest, "ro", f"lowerdir={lower}")))
        else:
            out.append(Mount(m.type, m.source, m.target, tuple(o for o in m.options if o not in ("rw",)) + ("ro",)))
    return out


def export_container(client: Client, container_id: str, out: BinaryIO) -> None:
    """docker export: a tar of the container's root file system view (image layers plus its changes)."""
    import subprocess

    from ctrpy.runtime.unpack import apply_to_mounts

    container = client.containers.get(container_id)
    if not container.snapshot_key:
        raise errors.FailedPrecondition(f"container {container_id!r} has no root file system snapshot")
    sn = client.snapshotter(container.snapshotter or None)
    mounts = sn.mounts(container.snapshot_key)
    if len(mounts) == 1 and mounts[0].type == "bind":
        view = mounts  # a plain directory: read it in place
        direct: str | None = mounts[0].source
    else:
        view, direct = _read_only(mounts), None
    try:
        out.flush()
        fd = out.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd = None

    def tar(directory: str) -> None:
        argv = ["tar", "--numeric-owner", "--xattrs", "--sort=name", "-C", directory, "-cf", "-", "."]
        proc = subprocess.run(argv, stdout=fd if fd is not None else subprocess.PIPE, stderr=subprocess.PIPE)
        if proc.returncode not in (0, 1):  # 1: a file changed while it was read (a running container)
            raise errors.Internal(f"export {container_id}: tar failed: {proc.stderr.decode(errors='replace')}")
        if fd is None:
            out.write(proc.stdout)

    if direct is not None:
        tar(direct)
    else:
        apply_to_mounts(client, view, tar)


__all__ = ["CHANGE_INSTRUCTIONS", "apply_changes", "export_container", "import_rootfs"]
