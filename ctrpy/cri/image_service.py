"""ImageService: the images of namespace k8s.io as the CRI sees them.

A CRI image is an image config: its id is the config digest, and every image record (name) whose manifest
has that config is one of its repo tags (`name:tag`) or repo digests (`repo@sha256:<manifest digest>`), as in
containerd's CRI image store. uid/username come from the config's User. Pulls go through ctrpy's pull with the
server's registry settings ([registry] config_path hosts.toml mirrors included).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ctrpy.cri.proto import api_pb2 as api
from ctrpy.cri.proto import api_pb2_grpc
from ctrpy.cri.server import guard_all
from ctrpy.runtime import errors

if TYPE_CHECKING:
    from ctrpy.runtime.client import Client

_ID_RE = re.compile(r"^(?:sha256:)?([0-9a-f]{64})$")


@dataclass
class CRIImage:
    id: str
    config: dict[str, Any]
    records: list[Any] = field(default_factory=list)
    manifest_digests: set[str] = field(default_factory=set)
    size: int = 0

    def repo_tags(self) -> list[str]:
        return sorted(r.name for r in self.records if "@" not in r.name)

    def repo_digests(self) -> list[str]:
        from ctrpy.runtime.reference import parse

        out = set()
        for r in self.records:
            try:
                repo = parse(r.name, default_tag=False).name
            except errors.InvalidArgument:
                continue
            for digest in self.manifest_digests:
                out.add(f"{repo}@{digest}")
        return sorted(out)

    def user(self) -> tuple[int | None, str]:
        user = str((self.config.get("config") or {}).get("User") or "").split(":", 1)[0]
        if not user:
            return 0, ""
        if user.isdigit():
            return int(user), ""
        return None, user

    def to_proto(self) -> Any:
        uid, username = self.user()
        img = api.Image(id=self.id, repo_tags=self.repo_tags(), repo_digests=self.repo_digests(), size=self.size,
                        username=username, spec=api.ImageSpec(image=self.id))
        if uid is not None:
            img.uid.value = uid
        return img


@guard_all
class ImageService(api_pb2_grpc.ImageServiceServicer):
    def __init__(self, client: Client) -> None:
        self.client = client
        self.lock = threading.Lock()
        # (name, target digest) -> (config digest, config, size, manifest digest)
        self._cache: dict[tuple[str, str], tuple[str, dict[str, Any], int, str]] = {}

    # ---- lookup ------------------------------------------------------------------------------------------

    def _resolve(self, record: Any) -> tuple[str, dict[str, Any], int, str] | None:
        """(config digest, config, size) of a record's image for this platform, cached by target digest."""
        from ctrpy.runtime import images

        key = (record.name, record.target.digest)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        try:
            im = images.resolve(self.client.content, record)
        except errors.CtrpyError:
            return None
        value = (im.config_desc.digest, im.config, images.image_size(self.client.content, record), im.desc.digest)
        self._cache[key] = value
        return value

    def all_images(self) -> dict[str, CRIImage]:
        out: dict[str, CRIImage] = {}
        for record in self.client.images.list():
            resolved = self._resolve(record)
            if resolved is None:
                continue
            config_digest, config, size, manifest_digest = resolved
            img = out.setdefault(config_digest, CRIImage(config_digest, config, size=size))
            img.records.append(record)
            img.manifest_digests.add(manifest_digest)
            if record.target.digest.startswith("sha256:"):
                img.manifest_digests.add(record.target.digest)
        return out

    def find(self, ref: str) -> CRIImage | None:
        """An image by id (full or short), name, normalised name, or repo@digest."""
        from ctrpy.runtime.reference import parse

        if not ref:
            raise errors.InvalidArgument("no image given")
        imgs = self.all_images()
        m = _ID_RE.match(ref)
        if m:
            hit = imgs.get("sha256:" + m.group(1))
            if hit is not None:
                return hit
        names = {ref}
        try:
            parsed = parse(ref)
            names.add(str(parsed))
        except errors.InvalidArgument:
            parsed = None
        for img in imgs.values():
            if any(r.name in names for r in img.records):
                return img
        if parsed is not None and parsed.digest:
            for img in imgs.values():
                if parsed.digest in img.manifest_digests and any(
                        _repo(r.name) == parsed.name for r in img.records):
                    return img
        if re.match(r"^[0-9a-f]{12,63}$", ref):
            matches = [i for i in imgs.values() if i.id[len("sha256:"):].startswith(ref)]
            if len(matches) == 1:
                return matches[0]
        return None

    def get(self, ref: str) -> CRIImage:
        img = self.find(ref)
        if img is None:
            raise errors.NotFound(f"image {ref!r} not found")
        return img

    # ---- RPCs --------------------------------------------------------------------------------------------

    def ListImages(self, request: Any, context: Any) -> Any:
        imgs = list(self.all_images().values())
        want = request.filter.image.image if request.HasField("filter") else ""
        if want:
            one = self.find(want)
            imgs = [one] if one is not None else []
        return api.ListImagesResponse(images=[i.to_proto() for i in imgs])

    def ImageStatus(self, request: Any, context: Any) -> Any:
        img = self.find(request.image.image)
        if img is None:
            return api.ImageStatusResponse()
        info = {}
        if request.verbose:
            info["info"] = json.dumps({"id": img.id, "imageSpec": img.config,
                                       "names": [r.name for r in img.records]})
        return api.ImageStatusResponse(image=img.to_proto(), info=info)

    def PullImage(self, request: Any, context: Any) -> Any:
        from ctrpy.runtime.pull import options_from_config, pull
        from ctrpy.runtime.reference import parse

        ref = request.image.image
        if not ref:
            raise errors.InvalidArgument("no image given")
        name = str(parse(ref))
        credential = None
        auth = request.auth
        username, password = auth.username, auth.password
        if auth.auth and not username:
            import base64

            try:
                username, _, password = base64.b64decode(auth.auth).decode().partition(":")
            except ValueError:
                raise errors.InvalidArgument("auth is not base64 of user:password") from None
        if username or password or auth.identity_token:
            from ctrpy.runtime.remotes.auth import Credential

            credential = (Credential(username, auth.identity_token, identity_token=True) if auth.identity_token
                          else Credential(username, password))
        opts = options_from_config(self.client.config, credential=credential,
                                   snapshotter=self.client.config.get("cri.snapshotter") or None)
        image = pull(self.client, name, opts)
        self._cache.pop((image.name, image.target.digest), None)
        img = self.get(image.name)
        return api.PullImageResponse(image_ref=img.id)

    def RemoveImage(self, request: Any, context: Any) -> Any:
        img = self.find(request.image.image)
        if img is None:
            return api.RemoveImageResponse()
        for record in img.records:
            try:
                self.client.images.delete(record.name)
            except errors.NotFound:
                pass
            self._cache.pop((record.name, record.target.digest), None)
        return api.RemoveImageResponse()

    def ImageFsInfo(self, request: Any, context: Any) -> Any:
        root = str(self.client.root)
        used = inodes = 0
        for top in ("snapshots", "content"):
            for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
                for name in filenames + dirnames:
                    try:
                        st = os.lstat(os.path.join(dirpath, name))
                    except OSError:
                        continue
                    used += st.st_blocks * 512
                    inodes += 1
        usage = api.FilesystemUsage(timestamp=time.time_ns(), fs_id=api.FilesystemIdentifier(
            mountpoint=os.path.join(root, "snapshots")))
        usage.used_bytes.value = used
        usage.inodes_used.value = inodes
        return api.ImageFsInfoResponse(image_filesystems=[usage])


def _repo(name: str) -> str:
    from ctrpy.runtime.reference import parse

    try:
        return parse(name, default_tag=False).name
    except errors.InvalidArgument:
        return name
