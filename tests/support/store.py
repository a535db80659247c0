"""Put an OCI image layout into a ctrpy store without a registry (test helper; no `images import` yet).

    ingest_layout(client, layout, name, desc=None)   copy every blob reachable from the layout's image into
                                                     the content store (with containerd's gc.ref labels)
                                                     and create the image `name`; returns the Image
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ctrpy.runtime.content import Descriptor

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")


def _blob(layout: Path, digest: str) -> Path:
    algo, _, hexd = digest.partition(":")
    return layout / "blobs" / algo / hexd


def _ingest(client: Any, layout: Path, desc: dict, labels: dict[str, str] | None = None) -> None:
    digest = desc["digest"]
    if client.content.exists(digest):
        if labels:
            client.content.update_labels(digest, labels)
        return
    with client.content.writer(f"test-import-{digest}", expected=digest, total=desc["size"]) as w:
        with open(_blob(layout, digest), "rb") as f:
            while chunk := f.read(1 << 20):
                w.write(chunk)
        w.commit(desc["size"], digest, labels=labels or None)


def _walk(client: Any, layout: Path, desc: dict) -> None:
    data = _blob(layout, desc["digest"]).read_bytes()
    labels: dict[str, str] = {}
    if desc["mediaType"] in INDEX_TYPES:
        kids = json.loads(data)["manifests"]
        for i, child in enumerate(kids):
            _walk(client, layout, child)
            labels[f"containerd.io/gc.ref.content.m.{i}"] = child["digest"]
    else:
        manifest = json.loads(data)
        _ingest(client, layout, manifest["config"])
        labels["containerd.io/gc.ref.content.config"] = manifest["config"]["digest"]
        for i, layer in enumerate(manifest["layers"]):
            _ingest(client, layout, layer)
            labels[f"containerd.io/gc.ref.content.l.{i}"] = layer["digest"]
    _ingest(client, layout, desc, labels)


def ingest_layout(client: Any, layout: Path | str, name: str, desc: dict | None = None) -> Any:
    """Ingest the image of `layout` (its only index.json entry, or `desc`) and name it `name`."""
    from ctrpy.runtime.metadata.images import Image

    layout = Path(layout)
    if desc is None:
        entries = json.loads((layout / "index.json").read_text())["manifests"]
        desc = entries[0]
    _walk(client, layout, desc)
    target = Descriptor(desc["mediaType"], desc["digest"], desc["size"])
    return client.images.upsert(Image(name=name, target=target))


@pytest.fixture(scope="module", name="layout")
def busybox_layout(tmp_path_factory: Any) -> Path:
    """A one-layer busybox image layout, built once per module (import `layout` and `image` as fixtures)."""
    from support.testimages import build_layout, busybox_layer

    path = tmp_path_factory.mktemp("bb-layout") / "bb"
    build_layout(path, [busybox_layer()])
    return path


@pytest.fixture(name="image")
def busybox_image(dirs: Any, layout: Path) -> Iterator[str]:
    """`layout` ingested into the test's own root as image "bb"."""
    from ctrpy.runtime.client import Client

    client = Client(dirs.root, dirs.state)
    ingest_layout(client, layout, "bb")
    client.db.close()
    yield "bb"
