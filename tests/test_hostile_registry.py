"""A registry must not be able to take the host down: every body read into memory is capped while it streams.

The registry here is the tests' own (support/hostile.py) on 127.0.0.1: it declares huge lengths, streams without
end, drips, sends HTML, redirects across hosts. Each pull ends in one `ctrpy:` line with a documented exit code,
quickly, and leaves nothing recorded.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Iterator

import pytest

from support.fulldisk import tmpfs_root  # noqa: F401 - fixture
from support.hostile import (HostileRegistry, endless_body, huge_declared_length, redirect, send, sha256, slow_drip,
                             wrong_type)
from support.testimages import LayerBuilder


@pytest.fixture
def hostile() -> Iterator[HostileRegistry]:
    reg = HostileRegistry()
    try:
        yield reg
    finally:
        reg.stop()


def small_layer() -> bytes:
    return LayerBuilder().dir("etc").file("etc/hello", "hi\n").bytes()


def pull(ctrpy: Any, ref: str, *extra: str, timeout: float = 60) -> tuple[Any, float]:
    started = time.monotonic()
    r = ctrpy("pull", "-q", "--plain-http", "--no-unpack", *extra, ref, timeout=timeout)
    return r, time.monotonic() - started


def one_error_line(r: Any) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("ctrpy: ") and not lines[0].startswith("ctrpy: ctrpy:"), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    return lines[0]


def assert_nothing_recorded(ctrpy: Any) -> None:
    r = ctrpy("images", "ls", "-q")
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout + r.stderr


def test_a_declared_huge_manifest_is_refused_before_reading(hostile: HostileRegistry, ctrpy: Any) -> None:
    hostile.behave["/v2/app/manifests/latest"] = huge_declared_length(10 << 30)
    r, took = pull(ctrpy, f"{hostile.host}/app:latest")
    assert r.returncode == 3
    line = one_error_line(r)
    assert "declared a body of 10737418240 bytes" in line and "refused without reading it" in line
    assert took < 15  # the old code read all 10 GiB first (58 s and 21 GB of RSS)
    assert_nothing_recorded(ctrpy)


def test_an_endless_chunked_manifest_is_cut_at_the_cap(hostile: HostileRegistry, ctrpy: Any) -> None:
    hostile.behave["/v2/app/manifests/latest"] = endless_body()
    r, took = pull(ctrpy, f"{hostile.host}/app:latest")
    assert r.returncode == 3
    assert "sent more than the 4194304 bytes allowed; stopped reading" in one_error_line(r)
    assert took < 15
    assert_nothing_recorded(ctrpy)


def test_endless_error_body_and_endless_auth_challenge_body_are_cut(hostile: HostileRegistry, ctrpy: Any) -> None:
    hostile.behave["/v2/app/manifests/latest"] = endless_body("application/json", status=404, seconds=60)
    r, took = pull(ctrpy, f"{hostile.host}/app:latest")
    assert r.returncode == 4 and "not found" in one_error_line(r)
    assert took < 20
    # A 401 whose challenge body never ends: the body is cut, the challenge (a realm that refuses) answered.
    hostile.behave["/v2/app/manifests/latest"] = endless_body(
        "application/json", status=401, seconds=60,
        headers={"WWW-Authenticate": f'Bearer realm="http://{hostile.host}/token",service="x"'})
    hostile.behave["/token"] = lambda req: send(req, 403, b"no", "text/plain")
    r, took = pull(ctrpy, f"{hostile.host}/app:latest")
    assert r.returncode == 8 and "refused an anonymous token (403)" in one_error_line(r)
    assert took < 20


def test_huge_and_endless_token_responses_are_capped(hostile: HostileRegistry, ctrpy: Any) -> None:
    challenge = {"WWW-Authenticate": f'Bearer realm="http://{hostile.host}/token",service="x"'}
    hostile.behave["/v2/app/manifests/latest"] = lambda req: send(req, 401, b"{}", "application/json", challenge)
    hostile.behave["/token"] = huge_declared_length(1 << 40, "application/json")
    r, took = pull(ctrpy, f"{hostile.host}/app:latest")
    assert r.returncode == 3 and "fetching a token" in one_error_line(r) and "refused without reading" in r.stderr
    assert took < 15
    hostile.behave["/token"] = endless_body("application/json")
    r, took = pull(ctrpy, f"{hostile.host}/app:latest")
    assert r.returncode == 3 and "fetching a token" in one_error_line(r) and "1048576 bytes" in r.stderr
    assert took < 15
    # A token response that is JSON but not an object is a clear error too.
    hostile.behave["/token"] = lambda req: send(req, 200, b'["token"]', "application/json")
    r, _ = pull(ctrpy, f"{hostile.host}/app:latest")
    assert r.returncode == 7 and "sent no token" in one_error_line(r)


def test_a_slow_drip_below_the_progress_timeout_still_ends(hostile: HostileRegistry, ctrpy: Any, dirs: Any) -> None:
    ref = hostile.add_image("app", [small_layer()])
    _, manifest = hostile.manifests["app:latest"]
    # One byte every 0.2 s never trips a 1 s read timeout; the whole small object must arrive within it.
    digest_path = f"/v2/app/manifests/{sha256(manifest)}"
    hostile.behave["/v2/app/manifests/latest"] = hostile.behave[digest_path] = slow_drip(manifest)
    r, took = pull(ctrpy, ref, "--progress-timeout", "1")
    assert r.returncode == 9, r.stderr
    assert "sending too slowly" in one_error_line(r)
    assert took < 10
    # A layer dripping slower than 1 KiB/s over a progress-timeout window fails as stalled (curl's
    # --speed-limit), and what arrived is kept for a resume.
    del hostile.behave["/v2/app/manifests/latest"], hostile.behave[digest_path]
    layer = json.loads(manifest)["layers"][0]
    blob = hostile.blobs[layer["digest"]]
    hostile.behave[f"/v2/app/blobs/{layer['digest']}"] = slow_drip(blob, "application/octet-stream", 0.1)
    r, took = pull(ctrpy, ref, "--progress-timeout", "1")
    assert r.returncode == 9, r.stderr
    assert "in 1s (stalled transfer)" in one_error_line(r)
    assert took < 10
    assert_nothing_recorded(ctrpy)


def test_wrong_content_types(hostile: HostileRegistry, ctrpy: Any) -> None:
    # A captive portal's HTML instead of a manifest.
    hostile.behave["/v2/app/manifests/latest"] = wrong_type(b"<html><body>log in first</body></html>")
    r, _ = pull(ctrpy, f"{hostile.host}/app:latest")
    assert r.returncode == 10 and "unsupported manifest media type 'text/html'" in one_error_line(r)
    # A real manifest labelled text/plain: the document's own mediaType decides; the pull works.
    ref = hostile.add_image("good", [small_layer()])
    media_type, manifest = hostile.manifests["good:latest"]
    hostile.behave["/v2/good/manifests/latest"] = wrong_type(manifest, "text/plain")
    r, _ = pull(ctrpy, ref)
    assert r.returncode == 0, r.stderr
    # A config whose bytes are not what its descriptor says (HTML again) is refused by digest.
    ref = hostile.add_image("cfg", [LayerBuilder().file("other", "x").bytes()])
    config = json.loads(hostile.manifests["cfg:latest"][1])["config"]
    hostile.behave[f"/v2/cfg/blobs/{config['digest']}"] = wrong_type(b"<html>" + b" " * (config["size"] - 6))
    r, _ = pull(ctrpy, ref)
    assert r.returncode == 6 and "digest mismatch" in one_error_line(r)


def test_a_redirect_to_another_host_and_back(hostile: HostileRegistry, ctrpy: Any) -> None:
    cdn = HostileRegistry()
    try:
        ref = hostile.add_image("app", [small_layer()])
        layer = json.loads(hostile.manifests["app:latest"][1])["layers"][0]
        path = f"/v2/app/blobs/{layer['digest']}"
        blob = hostile.blobs[layer["digest"]]

        def registry_side(req: Any) -> None:
            if "signed=1" in req.path:
                send(req, 200, blob, "application/octet-stream")
            else:
                redirect(f"http://{cdn.host}/cdn/{layer['digest']}")(req)

        hostile.behave[path] = registry_side
        cdn.behave[f"/cdn/{layer['digest']}"] = redirect(f"http://{hostile.host}{path}?signed=1")
        r, _ = pull(ctrpy, ref, "-u", "alice:s3cret")
        assert r.returncode == 0, r.stderr
        # The CDN was asked, and never saw the registry's credentials.
        assert [m for m, p, _ in cdn.log if p.startswith("/cdn/")] == ["GET"]
        assert all("Authorization" not in h and "authorization" not in h for _, _, h in cdn.log)
        # A redirect loop between the two ends with one line, not a hang.
        ref = hostile.add_image("loop", [LayerBuilder().file("loop", "x").bytes()])
        layer = json.loads(hostile.manifests["loop:latest"][1])["layers"][0]
        path = f"/v2/loop/blobs/{layer['digest']}"
        hostile.behave[path] = redirect(f"http://{cdn.host}/cdn/{layer['digest']}")
        cdn.behave[f"/cdn/{layer['digest']}"] = redirect(f"http://{hostile.host}{path}")
        r, took = pull(ctrpy, ref)
        assert r.returncode == 7 and "redirect" in one_error_line(r).lower(), r.stderr
        assert took < 15
    finally:
        cdn.stop()


def test_gzip_bomb_layer_stops_when_the_space_runs_out(hostile: HostileRegistry, ctrpy: Any, dirs: Any,
                                                       tmpfs_root: Any) -> None:
    # 64 MiB of zeros in one file: ~64 KiB gzipped (a 1000:1 bomb), on a 20 MiB root.
    bomb = gzip_bomb(64 << 20)
    ref = hostile.add_image("bomb", [bomb], compressed=True)
    r = tmpfs_root.ctrpy("pull", "-q", "--plain-http", "--snapshotter", "native", ref, timeout=120)
    assert r.returncode == 13, r.stderr
    line = one_error_line(r)
    assert "no space left on device" in line.lower() and "layer" in line
    # Nothing recorded, no half-applied snapshot left, and the store works at once.
    r = tmpfs_root.ctrpy("images", "ls", "-q")
    assert r.returncode == 0 and r.stdout.strip() == ""
    r = tmpfs_root.ctrpy("snapshots", "--snapshotter", "native", "ls")
    assert r.returncode == 0 and "extract-" not in r.stdout, r.stdout
    assert tmpfs_root.free() > 15 << 20
    good = hostile.add_image("good", [small_layer()])
    r = tmpfs_root.ctrpy("pull", "-q", "--plain-http", "--snapshotter", "native", good)
    assert r.returncode == 0, r.stderr
    assert tmpfs_root.ctrpy("images", "check").returncode == 0


def gzip_bomb(size: int) -> bytes:
    """A gzipped tar holding one file of `size` zero bytes, built without holding it in memory."""
    import io
    import tarfile
    import zlib

    header = tarfile.TarInfo("zeros")
    header.size = size
    header.mtime = 0
    head = header.tobuf(format=tarfile.PAX_FORMAT)
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = io.BytesIO()
    out.write(comp.compress(head))
    zeros = bytes(1 << 20)
    for _ in range(size >> 20):
        out.write(comp.compress(zeros))
    out.write(comp.compress(bytes(1024)))  # two zero blocks: end of archive
    out.write(comp.flush())
    return out.getvalue()


# ---------------------------------------------------------------------------------------------- descriptors

def test_an_uppercase_digest_is_an_invalid_argument_never_sent(hostile: HostileRegistry, ctrpy: Any) -> None:
    hostile.add_image("app", [small_layer()])
    _, manifest = hostile.manifests["app:latest"]
    upper = "sha256:" + sha256(manifest).split(":")[1].upper()
    r, _ = pull(ctrpy, f"{hostile.host}/app@{upper}")
    assert r.returncode == 3
    assert one_error_line(r) == f"ctrpy: invalid digest {upper!r}: hex digits must be lowercase"
    assert hostile.log == []  # refused before any request
    r = ctrpy("content", "get", upper)
    assert r.returncode == 3 and "lowercase" in r.stderr


BAD_LAYER_DESCRIPTORS = [
    ({"size": -1}, "size -1 is not a non-negative integer"),
    ({"size": "12"}, "size '12' is not a non-negative integer"),
    ({"size": True}, "size True is not a non-negative integer"),
    ({"digest": "sha256:abc"}, "sha256 needs 64 hex digits"),
    ({"digest": "md5:" + "0" * 32}, "unsupported digest algorithm 'md5'"),
    ({"mediaType": "not a media type"}, "media type 'not a media type'"),
    ({"mediaType": 7}, "media type 7"),
    ({"annotations": {"a": 1}}, "annotations must map strings to strings"),
]


@pytest.mark.parametrize("change,message", BAD_LAYER_DESCRIPTORS)
def test_every_descriptor_field_is_checked_before_use(hostile: HostileRegistry, ctrpy: Any, change: dict,
                                                      message: str) -> None:
    good = hostile.add_image("good", [small_layer()])
    assert pull(ctrpy, good)[0].returncode == 0  # the layer blob is stored already
    media_type, body = hostile.manifests["good:latest"]
    manifest = json.loads(body)
    manifest["layers"][0].update(change)
    bad = json.dumps(manifest).encode()
    r, _ = pull(ctrpy, hostile.add_manifest("bad", bad, media_type=media_type))
    assert r.returncode == 3, r.stderr
    line = one_error_line(r)
    assert "invalid OCI descriptor" in line and message in line, line
    assert ctrpy("images", "ls", "-q").stdout.split() == [good]


# ---------------------------------------------------------------------------------------------- failed unpacks

def test_a_pull_whose_unpack_fails_records_no_image(hostile: HostileRegistry, ctrpy: Any) -> None:
    escape = LayerBuilder().dir("etc").file("../../escaped", "x").bytes()
    cases = [
        (hostile.add_image("hostile", [escape]), "a layer may not reach outside its root"),
        (hostile.add_image("diffids", [small_layer()], diff_ids=[]), "1 layers but the config lists 0 diff IDs"),
    ]
    for ref, message in cases:
        r = ctrpy("pull", "-q", "--plain-http", "--snapshotter", "native", ref)
        assert r.returncode == 3, r.stderr
        assert message in one_error_line(r)
        r = ctrpy("images", "ls", "-q")
        assert r.stdout.strip() == "", f"{ref}: an image record survived a failed pull"
    r = ctrpy("images", "check")
    assert r.returncode == 0 and "complete" not in r.stdout
    # A good pull under a name keeps its record when a later pull of the same name fails.
    good = hostile.add_image("app", [small_layer()])
    assert ctrpy("pull", "-q", "--plain-http", "--snapshotter", "native", good).returncode == 0
    hostile.add_image("app", [escape])
    r = ctrpy("pull", "-q", "--plain-http", "--snapshotter", "native", good)
    assert r.returncode == 3
    r = ctrpy("images", "check")
    assert r.returncode == 0 and good in r.stdout and "complete" in r.stdout


def test_a_platform_missing_locally_is_not_listed_as_available(hostile: HostileRegistry, ctrpy: Any) -> None:
    from support.hostile import OCI_MANIFEST

    amd = json.loads(hostile.manifests[hostile.add_image("a", [small_layer()]).split("/", 1)[1]][1])
    arm_ref = hostile.add_image("b", [LayerBuilder().file("arm", "x").bytes()])
    arm = json.loads(hostile.manifests[arm_ref.split("/", 1)[1]][1])
    descs = []
    for manifest, arch in ((amd, "amd64"), (arm, "arm64")):
        body = json.dumps(manifest, sort_keys=True).encode()
        descs.append({"mediaType": OCI_MANIFEST, "digest": sha256(body), "size": len(body),
                      "platform": {"os": "linux", "architecture": arch}})
        hostile.add_manifest("multi", body, tag=arch)
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": descs}).encode()
    ref = hostile.add_manifest("multi", index, media_type="application/vnd.oci.image.index.v1+json")
    r = ctrpy("pull", "-q", "--plain-http", "--no-unpack", "--platform", "linux/arm64", ref)
    assert r.returncode == 0, r.stderr
    r = ctrpy("images", "inspect", "--mode", "native", "--platform", "linux/amd64", ref)
    assert "available locally: linux/arm64)" in json.loads(r.stdout)["manifest_error"]
    r = ctrpy("run", "--rm", ref, "true")  # this host is linux/amd64
    assert r.returncode == 4, r.stderr
    line = one_error_line(r)
    assert "no manifest for platform linux/amd64" in line and "available locally: linux/arm64)" in line, line
    assert "pull with --platform linux/amd64" in line
    for argv in (("images", "inspect", "--mode", "native", "--platform", "linux//", ref),
                 ("pull", "--platform", "linux//", ref)):
        r = ctrpy(*argv)
        assert r.returncode == 3 and "invalid platform" in one_error_line(r), (argv, r.stderr)


def test_gc_frees_the_partial_downloads_of_a_failed_pull(hostile: HostileRegistry, ctrpy: Any) -> None:
    from support.hostile import send as send_

    ref = hostile.add_image("cut", [LayerBuilder().file("big", os.urandom(1 << 20)).bytes()], compressed=False)
    layer = json.loads(hostile.manifests["cut:latest"][1])["layers"][0]
    blob = hostile.blobs[layer["digest"]]

    def truncated(req: Any) -> None:
        req.send_response(200)
        req.send_header("Content-Length", str(len(blob)))
        req.end_headers()
        req.wfile.write(blob[: len(blob) // 2])
        req.close_connection = True

    hostile.behave[f"/v2/cut/blobs/{layer['digest']}"] = truncated
    r, _ = pull(ctrpy, ref)
    assert r.returncode == 7 and "truncated body" in one_error_line(r)
    r = ctrpy("content", "active")
    assert f"layer-{layer['digest']}" in r.stdout  # visible, and resumable by the next pull
    r = ctrpy("gc", "--format", "json")
    assert r.returncode == 0, r.stderr
    removed = json.loads(r.stdout)["removed"]
    assert [(i["type"], i["id"]) for i in removed if i["type"] == "ingest"] == [("ingest", f"layer-{layer['digest']}")]
    assert f"layer-{layer['digest']}" not in ctrpy("content", "active").stdout
    # The same pull with the registry fixed works from scratch.
    hostile.behave[f"/v2/cut/blobs/{layer['digest']}"] = lambda req: send_(req, 200, blob, "application/octet-stream")
    assert pull(ctrpy, ref)[0].returncode == 0


def test_a_layer_declaring_more_than_its_descriptor_is_refused_unread(hostile: HostileRegistry, ctrpy: Any) -> None:
    ref = hostile.add_image("liar", [LayerBuilder().file("x", "x").bytes()])
    layer = json.loads(hostile.manifests["liar:latest"][1])["layers"][0]
    hostile.behave[f"/v2/liar/blobs/{layer['digest']}"] = huge_declared_length(1 << 40, "application/octet-stream")
    r, took = pull(ctrpy, ref)
    assert r.returncode == 6
    assert "declares 1099511627776 bytes" in one_error_line(r) and "refused without reading it" in r.stderr
    assert took < 15
