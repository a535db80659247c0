"""Images in and out without a registry: save/load against skopeo, ctr and umoci; corrupt archives; docker's
import/export; and the space commands (rmi, prune, system df/prune).

Each test loads the suite's images straight into its root (support.store), so only the commands under test
touch the archives. A second root (`other`) plays the machine the archive is carried to.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.containerd import containerd  # noqa: F401 - session fixture
from support.store import ingest_layout
from support.testimages import LayerBuilder, build_layout, busybox_layer, whiteout_layers

from ctrpy.runtime.client import Client

CTRPY = str(Path(sys.executable).parent / "ctrpy")
SKOPEO_ENV = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}


@pytest.fixture
def other(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run ctrpy on a second, empty root (under tmp_path, so the `dirs` teardown unmounts it too)."""
    root, state = tmp_path / "other-root", tmp_path / "other-state"
    root.mkdir()
    state.mkdir()

    def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([CTRPY, "--root", str(root), "--state", str(state), *args], input=stdin,
                              capture_output=True, timeout=120,
                              env={**os.environ, "CTRPY_CONFIG": str(tmp_path / "none.toml")})

    run.root = root  # type: ignore[attr-defined]
    return run


def out(r: Any) -> str:
    return r.stdout if isinstance(r.stdout, str) else r.stdout.decode()


def err(r: Any) -> str:
    text = r.stderr if isinstance(r.stderr, str) else r.stderr.decode()
    return text.strip()


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def skopeo(*args: str) -> None:
    r = subprocess.run(["skopeo", *args], capture_output=True, text=True, env=SKOPEO_ENV, timeout=120)
    assert r.returncode == 0, r.stderr


def layout_digest(layout: Path, tag: str | None = None) -> str:
    index = json.loads((layout / "index.json").read_text())
    entries = index["manifests"]
    if tag:
        entries = [e for e in entries if e.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    return str(entries[0]["digest"])


def config_of(layout: Path, digest: str) -> str:
    manifest = json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())
    return str(manifest["config"]["digest"])


def diff_ids_of(layout: Path, digest: str) -> list[str]:
    """The layers' uncompressed digests: what docker's format keeps when it rewrites manifests and configs."""
    config = json.loads((layout / "blobs" / "sha256" / config_of(layout, digest).split(":")[1]).read_bytes())
    return list(config["rootfs"]["diff_ids"])


def store_state(r: Callable[..., Any]) -> list[list[str]]:
    """Images, content, snapshots and ingests of a root, to show that a refused load committed nothing."""
    return [sorted(out(r(*cmd)).split()) for cmd in (("images", "ls", "-q"), ("content", "ls", "-q"),
                                                      ("snapshots", "ls", "-q"), ("content", "active", "-q"))]


# ---------------------------------------------------------------------------------------------- save / load

def test_save_writes_oci_and_docker_metadata_and_round_trips(ctrpy: Any, client: Client, test_images: Any,
                                                             other: Any, registry: Any, tmp_path: Path) -> None:
    ingest_layout(client, test_images.busybox, "docker.io/library/busybox:latest")
    ingest_layout(client, test_images.layered, "example.test/team/layered:v1")
    archive = tmp_path / "two.tar"
    r = ctrpy("save", "-o", str(archive), "busybox", "example.test/team/layered:v1")
    assert r.returncode == 0, r.stderr
    files = members(archive)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    names = [(m["annotations"]["io.containerd.image.name"], m["annotations"]["org.opencontainers.image.ref.name"],
              m["digest"]) for m in index["manifests"]]
    assert names == [("docker.io/library/busybox:latest", "latest", test_images.busybox_desc["digest"]),
                     ("example.test/team/layered:v1", "v1", test_images.layered_desc["digest"])]
    docker = json.loads(files["manifest.json"])
    assert [d["RepoTags"] for d in docker] == [["busybox:latest"], ["example.test/team/layered:v1"]]
    for entry in docker:
        assert entry["Config"] in files and all(layer in files for layer in entry["Layers"])
    assert set(json.loads(files["repositories"])) == {"busybox", "example.test/team/layered"}
    # Saving again gives the same bytes: archives are reproducible.
    again = tmp_path / "again.tar"
    assert ctrpy("images", "export", "-o", str(again), "busybox", "example.test/team/layered:v1").returncode == 0
    assert again.read_bytes() == archive.read_bytes()

    # Loaded elsewhere, unpacked, runnable content; pushed, the manifest digest is the original's.
    r = other("load", "-i", str(archive))
    assert r.returncode == 0, err(r)
    assert out(r).splitlines() == [f"Loaded image: docker.io/library/busybox:latest ({names[0][2]})",
                                   f"Loaded image: example.test/team/layered:v1 ({names[1][2]})"]
    assert len(out(other("snapshots", "ls", "-q")).split()) == 4  # layered shares busybox's base
    dest = f"{registry.host}/i13/layered:v1"
    r = other("push", "--plain-http", "-q", dest, "example.test/team/layered:v1")
    assert r.returncode == 0, err(r)
    skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{dest}")
    raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{dest}"],
                         capture_output=True, env=SKOPEO_ENV).stdout
    import hashlib

    assert "sha256:" + hashlib.sha256(raw).hexdigest() == test_images.layered_desc["digest"]


def test_skopeo_reads_our_archives_and_we_read_skopeos(ctrpy: Any, client: Client, test_images: Any, other: Any,
                                                        tmp_path: Path) -> None:
    ingest_layout(client, test_images.busybox, "docker.io/library/busybox:latest")
    archive = tmp_path / "bb.tar"
    with open(archive, "wb") as f:  # stdout, redirected
        r = subprocess.run([CTRPY, "--root", str(client.root), "--state", str(client.state), "save", "busybox"],
                           stdout=f, stderr=subprocess.PIPE, env={**os.environ, "CTRPY_CONFIG": "/nonexistent"})
    assert r.returncode == 0, r.stderr
    digest = test_images.busybox_desc["digest"]
    # oci-archive: byte-exact; docker-archive: docker's format stores the same config (the image ID).
    skopeo("copy", "-q", f"oci-archive:{archive}:latest", f"oci:{tmp_path / 'viaoci'}:x")
    assert layout_digest(tmp_path / "viaoci") == digest
    skopeo("copy", "-q", f"docker-archive:{archive}:busybox:latest", f"oci:{tmp_path / 'viadocker'}:x")
    unpacked = tmp_path / "unpacked"  # the archive unpacked is an OCI layout directory skopeo reads too
    unpacked.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked)
    skopeo("copy", "-q", f"oci:{unpacked}:latest", f"oci:{tmp_path / 'viadir'}:x")
    assert layout_digest(tmp_path / "viadir") == digest
    image_id = config_of(test_images.busybox, digest)
    diff_ids = diff_ids_of(test_images.busybox, digest)
    assert diff_ids_of(tmp_path / "viadocker", layout_digest(tmp_path / "viadocker")) == diff_ids

    # The other way: skopeo's oci-archive, docker-archive (v1.2 layout with <id>/layer.tar) and oci layout dir.
    skopeo("copy", "-q", f"oci:{tmp_path / 'viaoci'}:x", f"oci-archive:{tmp_path / 'sk-oci.tar'}:x")
    skopeo("copy", "-q", f"oci:{tmp_path / 'viaoci'}:x", f"docker-archive:{tmp_path / 'sk-docker.tar'}:team/box:2")
    with tarfile.open(tmp_path / "sk-docker.tar") as tar:
        assert any(m.name.endswith("/layer.tar") for m in tar)  # the v1.2 layout (a symlink to the blob)
    r = other("load", "--base-name", "example.test/sk", "-i", str(tmp_path / "sk-oci.tar"))
    assert out(r).split()[:3] == ["Loaded", "image:", "example.test/sk:x"], err(r)
    r = other("load", str(tmp_path / "sk-docker.tar"))
    assert out(r).split()[:3] == ["Loaded", "image:", "docker.io/team/box:2"], err(r)
    r = other("load", "--digests", "-i", str(tmp_path / "viaoci"))  # a layout directory, named only "x"
    assert r.returncode == 0, err(r)
    assert out(r).split()[2].endswith(f"@{digest}")
    rows = {row["Name"]: row for row in json.loads(out(other("images", "--format", "json")))}
    assert rows["example.test/sk:x"]["ID"] == image_id
    (box,) = json.loads(out(other("image", "inspect", "team/box:2")))
    assert box["RootFS"]["Layers"] == diff_ids
    # skopeo reads docker's layout back from what we loaded: save again, copy to a layout, same config.
    r = other("save", "-o", str(tmp_path / "re.tar"), "team/box:2")
    assert r.returncode == 0, err(r)
    skopeo("copy", "-q", f"docker-archive:{tmp_path / 're.tar'}", f"oci:{tmp_path / 're'}:x")
    assert diff_ids_of(tmp_path / "re", layout_digest(tmp_path / "re")) == diff_ids


def test_ctr_imports_our_archive_and_we_import_ctrs(ctrpy: Any, client: Client, test_images: Any, other: Any,
                                                     containerd: Any, tmp_path: Path) -> None:
    ingest_layout(client, test_images.layered, "example.test/i13/layered:v1")
    archive = tmp_path / "layered.tar"
    assert ctrpy("save", "-o", str(archive), "example.test/i13/layered:v1").returncode == 0
    r = containerd.ctr("images", "import", str(archive), check=True)
    assert "example.test/i13/layered:v1" in r.stdout
    listed = containerd.ctr("images", "ls", check=True).stdout
    assert f"example.test/i13/layered:v1 application/vnd.oci.image.manifest.v1+json " \
           f"{test_images.layered_desc['digest']}" in " ".join(listed.split())
    exported = tmp_path / "from-ctr.tar"
    containerd.ctr("images", "export", str(exported), "example.test/i13/layered:v1", check=True)
    containerd.ctr("images", "rm", "example.test/i13/layered:v1")
    r = other("images", "import", str(exported))
    assert r.returncode == 0, err(r)
    assert out(r).split()[2:] == ["example.test/i13/layered:v1", f"({test_images.layered_desc['digest']})"]
    assert len(out(other("snapshots", "ls", "-q")).split()) == 4


def test_umoci_reads_our_layout_and_we_read_umocis(ctrpy: Any, client: Client, test_images: Any, other: Any,
                                                    tmp_path: Path) -> None:
    ingest_layout(client, test_images.busybox, "docker.io/library/busybox:latest")
    archive = tmp_path / "bb.tar"
    assert ctrpy("save", "-o", str(archive), "busybox").returncode == 0
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(layout)
    bundle = tmp_path / "bundle"
    r = subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{layout}:latest", str(bundle)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (bundle / "rootfs" / "bin" / "busybox").is_file()
    (bundle / "rootfs" / "etc" / "umoci-was-here").write_text("yes\n")
    r = subprocess.run(["umoci", "repack", "--image", f"{layout}:v2", str(bundle)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    v2 = layout_digest(layout, "v2")
    assert v2 != test_images.busybox_desc["digest"]
    # umoci copies our io.containerd.image.name onto the new entry: --digests names each one by digest too.
    r = other("load", "--digests", "--base-name", "example.test/umoci", "-i", str(layout))
    assert r.returncode == 0, err(r)
    assert f"example.test/umoci@{v2}" in out(r).split()
    (inspect,) = json.loads(out(other("image", "inspect", f"example.test/umoci@{v2}")))
    assert len(inspect["RootFS"]["Layers"]) == 2


def test_multi_platform_save_and_load(ctrpy: Any, client: Client, test_images: Any, other: Any,
                                      tmp_path: Path) -> None:
    ingest_layout(client, test_images.multi, "docker.io/library/multi:latest")
    one = tmp_path / "one.tar"
    assert ctrpy("save", "-o", str(one), "multi").returncode == 0
    index = json.loads(members(one)["index.json"])
    assert index["annotations"]["io.ctrpy.archive.platforms"] == "linux/amd64"
    (entry,) = index["manifests"]
    assert entry["mediaType"].endswith("manifest.v1+json") and entry["platform"]["architecture"] == "amd64"
    assert entry["annotations"]["io.ctrpy.image.source.index"] == test_images.multi_desc["digest"]
    two = tmp_path / "two.tar"
    r = ctrpy("save", "-o", str(two), "--platform", "linux/amd64", "--platform", "linux/arm64/v8", "multi")
    assert r.returncode == 0, r.stderr
    sub = json.loads(members(two)["index.json"])["manifests"][0]
    assert sub["mediaType"].endswith("index.v1+json") and sub["digest"] != test_images.multi_desc["digest"]
    every = tmp_path / "all.tar"
    assert ctrpy("save", "--all-platforms", "-o", str(every), "multi").returncode == 0
    assert json.loads(members(every)["index.json"])["manifests"][0]["digest"] == test_images.multi_desc["digest"]

    # Loading the full archive for the host platform keeps the index as the image, commits only amd64's content.
    r = other("load", "--no-unpack", "-i", str(every))
    assert r.returncode == 0, err(r)
    assert out(r).split()[-1] == f"({test_images.multi_desc['digest']})"
    content = out(other("content", "ls", "-q")).split()
    assert len(content) == 1 + 4  # index + amd64's manifest, config, 2 layers
    assert json.loads(members(every)["index.json"])["annotations"]["io.ctrpy.archive.platforms"] == "all"
    r = other("load", "--all-platforms", "--no-unpack", "-i", str(every))
    assert r.returncode == 0 and len(out(other("content", "ls", "-q")).split()) == 1 + 3 * 3 + 1
    r = other("load", "--no-unpack", "--index-name", "example.test/all:idx", "-i", str(every))
    assert "Loaded image: example.test/all:idx" in out(r), err(r)
    native = json.loads(out(other("images", "inspect", "--mode", "native", "example.test/all:idx")))
    assert native["target"]["mediaType"].endswith("index.v1+json")
    assert [m["digest"] for m in native["index"]["manifests"]] == [test_images.multi_desc["digest"]]
    # A partial multi-platform image cannot be saved as if it were complete.
    other("rmi", "--no-gc", "multi")
    other("load", "--no-unpack", "-i", str(one))
    partial = Client(other.root, other.root.parent / "other-state")  # type: ignore[attr-defined]
    assert partial.images.get("docker.io/library/multi:latest")
    r = ctrpy("save", "--platform", "linux/s390x", "-o", str(tmp_path / "x.tar"), "multi")
    assert r.returncode == 4 and "no linux/s390x manifest" in err(r) and not (tmp_path / "x.tar").exists()


def test_partial_index_refused_for_all_platforms(ctrpy: Any, client: Client, test_images: Any, other: Any,
                                                 tmp_path: Path) -> None:
    ingest_layout(client, test_images.multi, "docker.io/library/multi:latest")
    every = tmp_path / "all.tar"
    assert ctrpy("save", "--all-platforms", "-o", str(every), "multi").returncode == 0
    assert other("load", "--no-unpack", "-i", str(every)).returncode == 0  # host platform only
    r = other("save", "--all-platforms", "-o", str(tmp_path / "p.tar"), "multi")
    assert r.returncode == 6 and "lacks platform(s) linux/arm64/v8, linux/arm/v7" in err(r)
    assert not (tmp_path / "p.tar").exists()
    r = other("save", "-o", str(tmp_path / "p.tar"), "multi")
    assert r.returncode == 0 and (tmp_path / "p.tar").stat().st_size > 0


def _docker_archive_manifest_last(src: Path, compress: str) -> bytes:
    """skopeo's docker-archive re-ordered so manifest.json comes last, as a stream reader may meet it."""
    buf = io.BytesIO()
    with tarfile.open(src) as tin, tarfile.open(fileobj=buf, mode="w") as tout:
        entries = list(tin)
        entries.sort(key=lambda m: m.name in ("manifest.json", "repositories"))
        for m in entries:
            tout.addfile(m, tin.extractfile(m) if m.isreg() else None)
    data = buf.getvalue()
    if compress == "gzip":
        return gzip.compress(data)
    import zstandard

    return zstandard.ZstdCompressor().compress(data)


@pytest.mark.parametrize("compress", ["gzip", "zstd"])
def test_compressed_docker_archive_from_stdin(client: Client, test_images: Any, other: Any, tmp_path: Path,
                                              compress: str) -> None:
    layout = tmp_path / "layout"
    desc = build_layout(layout, [busybox_layer()] + whiteout_layers())  # gzip: docker's format has no zstd
    skopeo("copy", "-q", f"oci:{layout}:latest", f"docker-archive:{tmp_path / 'd.tar'}:team/app:1")
    data = _docker_archive_manifest_last(tmp_path / "d.tar", compress)
    r = other("load", stdin=data)
    assert r.returncode == 0, err(r)
    assert out(r).split()[2] == "docker.io/team/app:1"
    assert len(out(other("snapshots", "ls", "-q")).split()) == 4
    (inspect,) = json.loads(out(other("image", "inspect", "team/app:1")))
    assert inspect["RootFS"]["Layers"] == diff_ids_of(layout, desc["digest"])


# ---------------------------------------------------------------------------------------------- bad archives

@pytest.mark.parametrize("damage", ["truncated", "truncated-gzip", "flipped-byte", "not-a-tar", "missing-blob"])
def test_corrupt_archive_is_refused_and_commits_nothing(ctrpy: Any, client: Client, test_images: Any, other: Any,
                                                        tmp_path: Path, damage: str) -> None:
    ingest_layout(client, test_images.busybox, "docker.io/library/busybox:latest")
    archive = tmp_path / "bb.tar"
    assert ctrpy("save", "-o", str(archive), "busybox").returncode == 0
    data = bytearray(archive.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "truncated-gzip":
        packed = gzip.compress(bytes(data))
        data = bytearray(packed[: len(packed) // 2])
    elif damage == "flipped-byte":
        data[len(data) // 2] ^= 0xFF
    elif damage == "not-a-tar":
        data = bytearray(b"hello, this is not an archive\n" * 40)
    else:
        buf = io.BytesIO()
        with tarfile.open(fileobj=io.BytesIO(bytes(data))) as tin, tarfile.open(fileobj=buf, mode="w") as tout:
            for m in tin:
                if m.isreg() and m.size > 100_000:
                    continue
                tout.addfile(m, tin.extractfile(m) if m.isreg() else None)
        data = bytearray(buf.getvalue())
    # Something already in the target store must stay exactly as it was.
    keep = tmp_path / "keep"
    build_layout(keep, [LayerBuilder().file("etc/keep", "keep\n").bytes()])
    assert other("load", "--no-unpack", "-i", str(keep), "--base-name", "example.test/keep").returncode == 0
    before = store_state(other)
    bad = tmp_path / "bad.tar"
    bad.write_bytes(bytes(data))
    for r in (other("load", "-i", str(bad)), other("load", stdin=gzip.compress(bytes(data)))):
        assert r.returncode == 3, err(r)
        assert len(err(r).splitlines()) == 1 and err(r).startswith("ctrpy: "), err(r)
        assert "Traceback" not in err(r)
        assert store_state(other) == before
    assert ctrpy("images", "ls", "-q").stdout.split() == ["docker.io/library/busybox:latest"]


# ---------------------------------------------------------------------------------------------- import/export

def test_docker_import_and_export(ctrpy: Any, client: Client, test_images: Any, tmp_path: Path) -> None:
    ingest_layout(client, test_images.layered, "docker.io/library/layered:latest")
    r = ctrpy("containers", "create", "layered", "c1", "sh")
    assert r.returncode == 0, r.stderr
    rootfs = tmp_path / "c1.tar"
    r = ctrpy("export", "-o", str(rootfs), "c1")
    assert r.returncode == 0, r.stderr
    with tarfile.open(rootfs) as tar:
        names = {m.name.lstrip("./") for m in tar}
        assert tar.extractfile("./data/dir/new.txt").read() == b"new\n"  # type: ignore[union-attr]
    assert "bin/busybox" in names and "data/gone.txt" not in names and "opt/tree" not in names
    r = ctrpy("import", "-c", 'CMD ["/bin/sh", "-c", "echo hi"]', "-c", "ENV A=1", "-c", "WORKDIR /data",
              "-m", "from c1", str(rootfs), "flat:1")
    assert r.returncode == 0, r.stderr
    image_id = r.stdout.strip()
    assert image_id.startswith("sha256:")
    (inspect,) = json.loads(ctrpy("image", "inspect", image_id.split(":")[1][:12]).stdout)
    assert inspect["RepoTags"] == ["flat:1"] and inspect["Id"] == image_id
    assert inspect["Config"]["Cmd"] == ["/bin/sh", "-c", "echo hi"] and "A=1" in inspect["Config"]["Env"]
    assert inspect["Config"]["WorkingDir"] == "/data" and len(inspect["RootFS"]["Layers"]) == 1
    assert inspect["Comment"] == "from c1" and inspect["Size"] > 1_000_000
    hist = json.loads(ctrpy("history", "--format", "json", "flat:1").stdout)
    assert [h["CreatedBy"] for h in hist] == ["ctrpy import"]
    # From stdin, unnamed: a dangling image.
    def piped(data: bytes) -> subprocess.CompletedProcess:
        return subprocess.run([CTRPY, "--root", str(client.root), "--state", str(client.state), "import", "-"],
                              input=data, capture_output=True, env={**os.environ, "CTRPY_CONFIG": "/nonexistent"})

    r = piped(rootfs.read_bytes())
    assert r.returncode == 0, r.stderr
    assert any(row["Tag"] == "<none>" for row in json.loads(ctrpy("images", "--format", "json").stdout))
    r = piped(b"this is not a tarball" * 100)
    assert r.returncode == 3 and b"not a root file system tarball" in r.stderr
    r = ctrpy("import", "-c", "RUN make", str(rootfs))
    assert r.returncode == 3 and "RUN is not supported" in r.stderr


# ---------------------------------------------------------------------------------------------- space

def test_images_listing_ids_rmi_tag_and_history(ctrpy: Any, client: Client, test_images: Any) -> None:
    ingest_layout(client, test_images.busybox, "docker.io/library/busybox:latest")
    ingest_layout(client, test_images.docker, "localhost:5000/team/docker:v1")
    r = ctrpy("images")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "PLATFORM", "SIZE", "BLOB", "SIZE"]
    bb_id = config_of(test_images.busybox, test_images.busybox_desc["digest"])
    assert lines[1].split()[:3] == ["busybox", "latest", bb_id.split(":")[1][:12]]
    assert lines[2].split()[:2] == ["localhost:5000/team/docker", "v1"]
    assert ctrpy("images", "-q").stdout.split()[0] == bb_id.split(":")[1][:12]
    # Short IDs and short names resolve everywhere an image is named.
    r = ctrpy("tag", bb_id.split(":")[1][:8], "mybox:2")
    assert r.returncode == 0 and r.stdout.strip() == "docker.io/library/mybox:2"
    (inspect,) = json.loads(ctrpy("image", "inspect", "mybox:2").stdout)
    assert sorted(inspect["RepoTags"]) == ["busybox:latest", "mybox:2"] and inspect["Id"] == bb_id
    assert inspect["RepoDigests"][0] == f"busybox@{test_images.busybox_desc['digest']}"
    assert inspect["Architecture"] == "amd64" and inspect["Os"] == "linux" and inspect["Created"]
    hist = ctrpy("history", "busybox").stdout.splitlines()
    assert hist[0].split()[:2] == ["IMAGE", "CREATED"] and hist[1].split()[0] == bb_id.split(":")[1][:12]
    r = ctrpy("rmi", "mybox:2", "busybox")
    assert r.returncode == 0 and r.stdout.split() == ["docker.io/library/mybox:2", "docker.io/library/busybox:latest"]
    assert "freed" in r.stderr
    assert not client.content.exists(test_images.busybox_desc["digest"])  # freed at once, no `gc` needed
    r = ctrpy("rmi", "0000000000")
    assert r.returncode == 4


def test_prune_and_system_df(ctrpy: Any, client: Client, test_images: Any) -> None:
    ingest_layout(client, test_images.busybox, "docker.io/library/busybox:latest")
    ingest_layout(client, test_images.layered, "docker.io/library/layered:latest")   # shares busybox's layer
    ingest_layout(client, test_images.docker, "import-2026-01-01@" + test_images.docker_desc["digest"])
    assert ctrpy("images", "unpack", "busybox").returncode == 0
    assert ctrpy("images", "unpack", "layered").returncode == 0
    assert ctrpy("containers", "create", "layered", "c1", "sh").returncode == 0
    assert ctrpy("volume", "create", "v1").returncode == 0  # used by no container
    (client.root / "volumes" / "default" / "v1" / "_data" / "blob").write_bytes(b"x" * 20000)
    df = json.loads(ctrpy("system", "df", "-v", "--format", "json").stdout)
    images = {i["Name"]: i for i in df["Images"]}
    bb, layered = images["docker.io/library/busybox:latest"], images["docker.io/library/layered:latest"]
    assert bb["SharedSize"] > 3_000_000 and bb["UniqueSize"] < 2000  # its layer blob and snapshot are shared
    assert layered["SharedSize"] >= bb["SharedSize"] and layered["UniqueSize"] == layered["Size"] - \
        layered["SharedSize"] and layered["Containers"] == 1
    summary = {row["Type"]: row for row in df["Summary"]}
    # Counted once: the total is every blob plus every image snapshot, measured independently.
    blobs = sum(row["size"] for row in json.loads(ctrpy("content", "ls", "--format", "json").stdout))
    snaps = sum(row["size"] for row in json.loads(ctrpy("snapshots", "usage", "--format", "json").stdout)
                if row["key"] != "c1")
    assert summary["Images"]["Size"] == blobs + snaps < sum(i["Size"] for i in df["Images"])
    assert summary["Images"]["TotalCount"] == 3 and summary["Images"]["Active"] == 1
    assert summary["Containers"]["TotalCount"] == 1 and summary["Build Cache"]["Size"] == 0
    vols = summary["Local Volumes"]
    assert (vols["TotalCount"], vols["Active"]) == (1, 0) and vols["Size"] == vols["Reclaimable"] >= 20000
    r = ctrpy("system", "df")
    assert r.returncode == 0 and r.stdout.split()[:5] == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]

    # images prune: only the dangling one; -a: every image no container uses.
    r = ctrpy("images", "prune", "-f")
    assert r.returncode == 0 and r.stdout.splitlines()[0].startswith("deleted: import-2026-01-01@")
    r = ctrpy("images", "prune", "-a", "-f", "--format", "json")
    assert json.loads(r.stdout)["images"] == ["docker.io/library/busybox:latest"]
    assert ctrpy("images", "ls", "-q").stdout.split() == ["docker.io/library/layered:latest"]
    # container prune takes the stopped (never started) container; then system prune -a takes the image.
    r = ctrpy("containers", "prune", "-f")
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "c1"
    r = ctrpy("system", "prune", "-a", "--volumes", "-f")
    assert r.returncode == 0 and "deleted image: docker.io/library/layered:latest" in r.stdout
    assert "deleted volume: v1" in r.stdout and ctrpy("volume", "ls", "-q").stdout == ""
    assert ctrpy("content", "ls", "-q").stdout == "" and ctrpy("snapshots", "ls", "-q").stdout == ""


def test_load_streams_a_large_archive_from_a_pipe(other: Any, tmp_path: Path) -> None:
    """A 96 MiB layer through stdin: the loader's peak memory stays far below the archive's size."""
    layout = tmp_path / "big"
    desc = build_layout(layout, [os.urandom(96 << 20)], compression="none")
    tar = subprocess.Popen(["tar", "-C", str(layout), "-cf", "-", "."], stdout=subprocess.PIPE)
    r = subprocess.run(["/usr/bin/time", "-f", "maxrss=%M", CTRPY, "--root", str(other.root),  # type: ignore[attr-defined]
                        "--state", str(other.root.parent / "other-state"), "load", "--no-unpack",  # type: ignore[attr-defined]
                        "--base-name", "example.test/big"], stdin=tar.stdout, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "CTRPY_CONFIG": "/nonexistent"})
    tar.stdout.close()  # type: ignore[union-attr]
    assert tar.wait() == 0 and r.returncode == 0, r.stderr
    assert r.stdout.split()[2:] == ["example.test/big:latest", f"({desc['digest']})"]
    maxrss_kib = int(r.stderr.strip().splitlines()[-1].split("=")[1])
    assert maxrss_kib < 80 * 1024, f"peak RSS {maxrss_kib} KiB for a 96 MiB archive"


def test_load_into_a_second_namespace_reuses_the_stored_blobs(ctrpy: Any, client: Client, test_images: Any,
                                                              other: Any, tmp_path: Path) -> None:
    # The second load receives no blob: each is committed already (by the first namespace), and the import
    # reads the stored manifest and config through the writer before its commit makes them visible.
    ingest_layout(client, test_images.busybox, "docker.io/library/busybox:latest")
    archive = tmp_path / "one.tar"
    assert ctrpy("save", "-o", str(archive), "busybox").returncode == 0
    for namespace in ("default", "second"):
        r = other("--namespace", namespace, "load", "-i", str(archive))
        assert r.returncode == 0, err(r)
        assert out(r).split()[:3] == ["Loaded", "image:", "docker.io/library/busybox:latest"]
    first, second = (sorted(out(other("--namespace", ns, "content", "ls", "-q")).split())
                     for ns in ("default", "second"))
    assert first == second and len(first) == 3  # manifest, config, layer
    r = other("--namespace", "second", "image", "inspect", "busybox")
    assert r.returncode == 0 and json.loads(out(r))[0]["RootFS"]["Layers"], err(r)
