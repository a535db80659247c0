"""Test images built in code: OCI image layouts (and pushes of them) for the whole suite.

Everything is deterministic (fixed mtimes, owners and gzip headers), so the same inputs give the same digests
in every run: tests may compare digests across pulls, pushes and skopeo copies.

    busybox_layer()                    uncompressed tar of a usable busybox root filesystem
    build_layout(path, layers, ...)    an OCI layout holding one image; returns its manifest descriptor
    build_index_layout(path, {...})    an OCI layout holding a multi-platform index
    push_layout(layout, dest, ...)     skopeo copy oci:<layout>:<tag> docker://<dest>
    whiteout_layers()                  three layers where later ones delete files and replace a directory
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

BUSYBOX = "/bin/busybox"
MTIME = 1_700_000_000  # fixed so layers are reproducible

# Media types (OCI image-spec and Docker schema2).
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"

COMPRESSIONS = ("gzip", "zstd", "none")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------- layer tars

class LayerBuilder:
    """Builds one deterministic layer tar in memory."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name.lstrip("/"))
        info.type = kind
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.uname = info.gname = ""
        info.mtime = MTIME
        return info

    def dir(self, name: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> LayerBuilder:
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode, uid, gid))
        return self

    def file(self, name: str, data: bytes | str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> LayerBuilder:
        raw = data.encode() if isinstance(data, str) else data
        info = self._info(name, tarfile.REGTYPE, mode, uid, gid)
        info.size = len(raw)
        self.tar.addfile(info, io.BytesIO(raw))
        return self

    def symlink(self, name: str, target: str) -> LayerBuilder:
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)
        return self

    def hardlink(self, name: str, target: str) -> LayerBuilder:
        info = self._info(name, tarfile.LNKTYPE, 0o644)
        info.linkname = target.lstrip("/")
        self.tar.addfile(info)
        return self

    def whiteout(self, path: str) -> LayerBuilder:
        """Delete `path` from lower layers (OCI `.wh.<name>`)."""
        parent, _, base = path.strip("/").rpartition("/")
        return self.file(f"{parent}/.wh.{base}" if parent else f".wh.{base}", b"", mode=0o644)

    def opaque(self, directory: str) -> LayerBuilder:
        """Hide everything lower layers put in `directory` (OCI `.wh..wh..opq`)."""
        return self.file(f"{directory.strip('/')}/.wh..wh..opq", b"", mode=0o644)

    def bytes(self) -> bytes:
        self.tar.close()
        return self.buf.getvalue()


@functools.lru_cache(maxsize=1)
def busybox_layer() -> bytes:
    """Uncompressed tar: /bin/busybox (Debian's busybox-static) with its applet symlinks and a minimal /etc."""
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    b = LayerBuilder()
    for d in ("bin", "etc", "root", "proc", "sys", "dev", "home", "home/app", "var", "usr", "usr/bin"):
        b.dir(d, 0o700 if d == "root" else 0o755, *((1000, 1000) if d == "home/app" else (0, 0)))
    b.dir("tmp", 0o1777)
    b.file("bin/busybox", Path(BUSYBOX).read_bytes(), mode=0o755)
    for applet in sorted(set(applets)):
        if applet != "busybox" and "/" not in applet:
            b.symlink(f"bin/{applet}", "busybox")
    b.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                         "app:x:1000:1000:app:/home/app:/bin/sh\n"
                         "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    b.file("etc/group", "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n")
    b.file("etc/hostname", "busybox\n")
    return b.bytes()


def whiteout_layers() -> list[bytes]:
    """Layers 2..4 on top of busybox: files added, then deleted (whiteout), a directory replaced (opaque).

    After applying all of them:
      /data/keep.txt == "keep\\n";  /data/gone.txt absent (whiteout);  /data/dir/{old1,old2} absent and
      /data/dir/new.txt == "new\\n" (opaque dir);  /etc/motd == "v2\\n" (overwritten);  /data/link -> keep.txt;
      /opt/tree removed entirely (whiteout of a directory);  /data/hard == /data/keep.txt content (hardlink).
    """
    l2 = (LayerBuilder().dir("data").file("data/keep.txt", "keep\n").file("data/gone.txt", "gone\n")
          .dir("data/dir").file("data/dir/old1", "old1\n").file("data/dir/old2", "old2\n")
          .file("etc/motd", "v1\n").dir("opt").dir("opt/tree").file("opt/tree/a", "a\n")
          .hardlink("data/hard", "data/keep.txt").bytes())
    l3 = (LayerBuilder().dir("data").whiteout("data/gone.txt").file("etc/motd", "v2\n")
          .symlink("data/link", "keep.txt").bytes())
    l4 = (LayerBuilder().dir("data").dir("data/dir").opaque("data/dir").file("data/dir/new.txt", "new\n")
          .dir("opt").whiteout("opt/tree").bytes())
    return [l2, l3, l4]


# ---------------------------------------------------------------------------------------------- layouts

def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(data)
    if compression in ("none", "", None):
        return data
    raise ValueError(f"unknown compression {compression!r}")


def layer_media_type(media_types: str, compression: str) -> str:
    base = DOCKER_LAYER if media_types == "docker" else OCI_LAYER
    suffix = {"gzip": ".gzip" if media_types == "docker" else "+gzip",
              "zstd": ".zstd" if media_types == "docker" else "+zstd", "none": ""}[compression]
    return base + suffix


def _write_blob(layout: Path, data: bytes) -> str:
    digest = sha256(data)
    target = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.write_bytes(data)
    return digest


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _platform_dict(platform: tuple) -> dict[str, str]:
    os_, arch, variant = (tuple(platform) + (None, None, None))[:3]
    out = {"architecture": arch, "os": os_}
    if variant:
        out["variant"] = variant
    return out


def _init_layout(layout: Path) -> None:
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')


def write_image(layout: Path, layers: list[bytes], *, config: dict | None = None,
                compression: str | list[str] = "gzip", media_types: str = "oci",
                platform: tuple = ("linux", "amd64", None)) -> dict:
    """Write an image's blobs (layers, config, manifest) into `layout`; return the manifest descriptor."""
    _init_layout(layout)
    comps = [compression] * len(layers) if isinstance(compression, str) else list(compression)
    if len(comps) != len(layers):
        raise ValueError("one compression per layer")
    layer_descs = []
    for raw, comp in zip(layers, comps, strict=True):
        blob = compress(raw, comp)
        layer_descs.append({"mediaType": layer_media_type(media_types, comp), "digest": _write_blob(layout, blob),
                            "size": len(blob)})
    plat = _platform_dict(platform)
    cfg: dict[str, Any] = {
        **plat,
        "created": "2023-11-14T22:13:20Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [sha256(raw) for raw in layers]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": f"ctrpy test layer {i}"}
                    for i in range(len(layers))],
    }
    if config:
        for key, value in config.items():
            if key == "config" and isinstance(value, dict):
                cfg["config"] = {**cfg["config"], **value}
            else:
                cfg[key] = value
    cfg_blob = _canonical(cfg)
    cfg_desc = {"mediaType": DOCKER_CONFIG if media_types == "docker" else OCI_CONFIG,
                "digest": _write_blob(layout, cfg_blob), "size": len(cfg_blob)}
    manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST if media_types == "docker" else OCI_MANIFEST,
                "config": cfg_desc, "layers": layer_descs}
    man_blob = _canonical(manifest)
    return {"mediaType": manifest["mediaType"], "digest": _write_blob(layout, man_blob), "size": len(man_blob),
            "platform": plat}


def _write_index_json(layout: Path, descriptors: list[dict]) -> None:
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    (layout / "index.json").write_text(json.dumps(index, indent=1))


def _tagged(desc: dict, tag: str) -> dict:
    out = {k: v for k, v in desc.items() if k != "platform"}
    out["annotations"] = {"org.opencontainers.image.ref.name": tag}
    return out


def build_layout(path: Path, layers: list[bytes], *, config: dict | None = None,
                 compression: str | list[str] = "gzip", media_types: str = "oci", tag: str = "latest",
                 platform: tuple = ("linux", "amd64", None), extra_manifests: list | None = None) -> dict:
    """Write an OCI layout at `path` holding one image tagged `tag`; return its manifest descriptor dict.

    `compression` is "gzip", "zstd" or "none" (or one per layer); `media_types` "oci" or "docker" (schema2).
    `extra_manifests`: further descriptors (already written with write_image) to list in index.json.
    """
    path = Path(path)
    desc = write_image(path, layers, config=config, compression=compression, media_types=media_types,
                       platform=platform)
    _write_index_json(path, [_tagged(desc, tag)] + list(extra_manifests or []))
    return desc


DEFAULT_PLATFORMS = (("linux", "amd64", None), ("linux", "arm64", "v8"), ("linux", "arm", "v7"))


def build_index_layout(path: Path, per_platform: dict[tuple, list[bytes]], *, compression: str = "gzip",
                       media_types: str = "oci", tag: str = "latest", config: dict | None = None,
                       configs: dict[tuple, dict] | None = None) -> dict:
    """Write an OCI layout whose `tag` is an index with one manifest per platform; return the index descriptor.

    Each platform's config names its own os/architecture/variant; the layers may be the same bytes.
    `configs` gives a platform its own config (merged as `config` is), e.g. a different Cmd or Env.
    """
    path = Path(path)
    manifests = []
    for platform, layers in per_platform.items():
        desc = write_image(path, layers, config=(configs or {}).get(platform, config), compression=compression,
                           media_types=media_types, platform=platform)
        manifests.append(desc)
    index_type = DOCKER_LIST if media_types == "docker" else OCI_INDEX
    index = {"schemaVersion": 2, "mediaType": index_type, "manifests": manifests}
    blob = _canonical(index)
    desc = {"mediaType": index_type, "digest": _write_blob(path, blob), "size": len(blob)}
    _write_index_json(path, [_tagged(desc, tag)])
    return desc


def read_blob(layout: Path, digest: str) -> bytes:
    return (Path(layout) / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()


def push_layout(layout: Path, dest: str, *, tag: str = "latest", creds: str | None = None,
                tls_verify: bool = False, cert_dir: str | None = None) -> None:
    """Publish an OCI layout's `tag` to `dest` (host:port/repo:tag) byte for byte, with skopeo.

    skopeo's oci: transport refuses Docker media types, so a layout whose tag is a Docker schema2 manifest
    (or list) is pushed by `push_raw` instead (plain HTTP registries only).
    """
    index = json.loads((Path(layout) / "index.json").read_text())
    for desc in index["manifests"]:
        if desc.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag and \
                desc["mediaType"] in (DOCKER_MANIFEST, DOCKER_LIST):
            return push_raw(layout, desc, dest, creds=creds)
    argv = ["skopeo", "copy", "-q", "--all", "--preserve-digests",
            f"--dest-tls-verify={'true' if tls_verify else 'false'}"]
    if creds:
        argv += ["--dest-creds", creds]
    if cert_dir:
        argv += ["--dest-cert-dir", cert_dir]
    argv += [f"oci:{layout}:{tag}", f"docker://{dest}"]
    env = dict(os.environ)
    # Never let a proxy setting of the environment divert traffic meant for 127.0.0.1.
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(key, None)
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo copy to {dest} failed: {result.stderr.strip()}")


def _blob_refs(layout: Path, desc: dict) -> list[tuple[dict, bool]]:
    """(descriptor, is_manifest) for everything reachable from desc, children first."""
    out: list[tuple[dict, bool]] = []
    if desc["mediaType"] in (DOCKER_LIST, OCI_INDEX):
        for child in json.loads(read_blob(layout, desc["digest"]))["manifests"]:
            out += _blob_refs(layout, child)
    else:
        manifest = json.loads(read_blob(layout, desc["digest"]))
        out += [(d, False) for d in [manifest["config"], *manifest["layers"]]]
    out.append((desc, True))
    return out


def push_raw(layout: Path, desc: dict, dest: str, *, creds: str | None = None) -> None:
    """Push `desc` and all it references from `layout` to a plain-HTTP registry with monolithic uploads."""
    import base64
    import urllib.error
    import urllib.request

    host, _, rest = dest.partition("/")
    repo, _, tag = rest.rpartition(":")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    headers = {"Authorization": "Basic " + base64.b64encode(creds.encode()).decode()} if creds else {}

    def call(method: str, url: str, data: bytes | None = None, extra: dict | None = None) -> Any:
        req = urllib.request.Request(url if url.startswith("http") else f"http://{host}{url}", data=data,
                                     method=method, headers={**headers, **(extra or {})})
        try:
            return opener.open(req, timeout=30)
        except urllib.error.HTTPError as exc:
            if method == "HEAD" and exc.code == 404:
                return None
            raise RuntimeError(f"{method} {url}: {exc.code} {exc.read()[:300]!r}") from None

    for child, is_manifest in _blob_refs(layout, desc):
        data = read_blob(layout, child["digest"])
        if is_manifest:
            ref = tag if child is desc else child["digest"]
            call("PUT", f"/v2/{repo}/manifests/{ref}", data, {"Content-Type": child["mediaType"]})
            continue
        if call("HEAD", f"/v2/{repo}/blobs/{child['digest']}") is not None:
            continue
        location = call("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
        sep = "&" if "?" in location else "?"
        call("PUT", f"{location}{sep}digest={child['digest']}", data, {"Content-Type": "application/octet-stream"})


def copy_layout(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)


# ---------------------------------------------------------------------------------------------- suite images

class TestImages:
    """The suite's standard images, built once per session into `base` (see the `test_images` fixture)."""

    def __init__(self, base: Path) -> None:
        self.base = Path(base)
        bb = busybox_layer()
        self.busybox = self.base / "busybox"                  # OCI, gzip, one layer
        self.busybox_desc = build_layout(self.busybox, [bb])
        self.layered = self.base / "layered"                  # OCI, 4 layers: gzip, zstd, none, gzip; whiteouts
        self.layered_desc = build_layout(self.layered, [bb] + whiteout_layers(),
                                         compression=["gzip", "zstd", "none", "gzip"])
        self.docker = self.base / "docker"                    # Docker schema2, gzip, busybox + 3 layers
        self.docker_desc = build_layout(self.docker, [bb] + whiteout_layers(), media_types="docker")
        self.multi = self.base / "multi"                      # OCI index: amd64, arm64/v8, arm/v7
        self.multi_desc = build_index_layout(self.multi, self._per_platform(bb))
        self.docker_multi = self.base / "docker-multi"        # Docker manifest list of the same
        self.docker_multi_desc = build_index_layout(self.docker_multi, self._per_platform(bb), media_types="docker")

    @staticmethod
    def _per_platform(bb: bytes) -> dict[tuple, list[bytes]]:
        out: dict[tuple, list[bytes]] = {}
        for platform in DEFAULT_PLATFORMS:
            marker = LayerBuilder().file("etc/platform", "/".join(p for p in platform if p) + "\n").bytes()
            out[platform] = [bb, marker]
        return out
