"""`ctrpy push` to the three fixture registries; what was pushed pulls back byte-identical with skopeo."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from support.registry import CA, PASSWORD, USER, Registry


def pull(ctrpy: Any, ref: str, *extra: str) -> None:
    r = ctrpy("pull", "--no-unpack", *extra, ref)
    assert r.returncode == 0, r.stderr


def err(r: Any) -> str:
    lines = r.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def remote_digest(ref: str, *, creds: str | None = None, ca: CA | None = None, tmp: Path | None = None) -> str:
    """sha256 of the manifest skopeo fetches for ref (what any client pulling it gets)."""
    argv = ["skopeo", "inspect", "--raw", f"--tls-verify={'true' if ca else 'false'}"]
    if creds:
        argv += ["--creds", creds]
    if ca:
        assert tmp is not None
        certs = tmp / "skopeo-certs"
        certs.mkdir(exist_ok=True)
        (certs / "ca.crt").write_bytes(ca.cert.read_bytes())
        argv += ["--cert-dir", str(certs)]
    r = subprocess.run(argv + [f"docker://{ref}"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return "sha256:" + hashlib.sha256(r.stdout).hexdigest()


def test_push_to_plain_registry_round_trips_byte_identical(seeded_registry: Registry, ctrpy: Any,
                                                           test_images: Any, tmp_path: Path) -> None:
    pull(ctrpy, f"{seeded_registry.host}/layered:latest")
    dest = f"{seeded_registry.host}/pushed/layered:v1"
    r = ctrpy("push", dest, f"{seeded_registry.host}/layered:latest")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{dest} {test_images.layered_desc['digest']}"
    assert remote_digest(dest) == test_images.layered_desc["digest"]
    # Every layer byte-identical: skopeo copies it back into an OCI layout with digests preserved.
    out = tmp_path / "back"
    subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", "--preserve-digests", f"docker://{dest}",
                    f"oci:{out}:v1"], check=True, capture_output=True, timeout=60)
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == test_images.layered_desc["digest"]
    manifest = json.loads((test_images.layered / "blobs/sha256" /
                           test_images.layered_desc["digest"].split(":")[1]).read_bytes())
    for layer in manifest["layers"]:
        hexd = layer["digest"].split(":")[1]
        assert (out / "blobs/sha256" / hexd).read_bytes() == (test_images.layered / "blobs/sha256" / hexd).read_bytes()


def test_second_push_skips_blobs_the_registry_has(seeded_registry: Registry, ctrpy: Any) -> None:
    pull(ctrpy, f"{seeded_registry.host}/busybox:latest")
    dest = f"{seeded_registry.host}/skip/busybox:1"
    assert ctrpy("push", dest, f"{seeded_registry.host}/busybox:latest").returncode == 0
    uploads = seeded_registry.requests("PUT", "/v2/skip/busybox/blobs/uploads/")
    r = ctrpy("push", dest, f"{seeded_registry.host}/busybox:latest")
    assert r.returncode == 0, r.stderr
    assert seeded_registry.requests("PUT", "/v2/skip/busybox/blobs/uploads/") == uploads
    assert r.stderr.count(": exists") == 2  # config and layer


def test_push_mounts_blobs_from_the_source_repository(seeded_registry: Registry, ctrpy: Any) -> None:
    pull(ctrpy, f"{seeded_registry.host}/docker:latest")
    dest = f"{seeded_registry.host}/mounted/docker:latest"
    r = ctrpy("push", dest, f"{seeded_registry.host}/docker:latest")
    assert r.returncode == 0, r.stderr
    assert "mounted" in r.stderr and "from docker" in r.stderr
    assert seeded_registry.requests("PUT", "/v2/mounted/docker/blobs/uploads/") == 0
    assert seeded_registry.requests("POST", "/v2/mounted/docker/blobs/uploads/?from=docker") + \
        seeded_registry.requests("POST", "/v2/mounted/docker/blobs/uploads/?mount=") >= 4


def test_push_index_needs_all_platforms_or_one(seeded_registry: Registry, ctrpy: Any, test_images: Any) -> None:
    src = f"{seeded_registry.host}/multi:latest"
    pull(ctrpy, src)
    r = ctrpy("push", f"{seeded_registry.host}/partial/multi:1", src)
    assert r.returncode == 6
    assert "missing locally" in err(r) and "--all-platforms" in err(r)
    r = ctrpy("push", "--platform", "linux/amd64", f"{seeded_registry.host}/partial/multi:1", src)
    assert r.returncode == 0, r.stderr
    index = json.loads((test_images.multi / "blobs/sha256" /
                        test_images.multi_desc["digest"].split(":")[1]).read_bytes())
    amd64 = [m for m in index["manifests"] if m["platform"]["architecture"] == "amd64"][0]
    assert remote_digest(f"{seeded_registry.host}/partial/multi:1") == amd64["digest"]
    pull(ctrpy, src, "--all-platforms")
    r = ctrpy("push", f"{seeded_registry.host}/whole/multi:1", src)
    assert r.returncode == 0, r.stderr
    assert remote_digest(f"{seeded_registry.host}/whole/multi:1") == test_images.multi_desc["digest"]


def test_push_to_tls_registry_with_basic_auth(registry_tls: Registry, seeded_registry: Registry, ctrpy: Any,
                                              test_ca: CA, test_images: Any, tmp_path: Path) -> None:
    pull(ctrpy, f"{seeded_registry.host}/busybox:latest")
    dest = f"{registry_tls.host}/pushed/busybox:tls"
    local = f"{seeded_registry.host}/busybox:latest"
    r = ctrpy("push", "--tlscacert", str(test_ca.cert), dest, local)
    assert r.returncode == 8
    assert "requires authentication" in err(r)
    r = ctrpy("push", "--tlscacert", str(test_ca.cert), "-u", f"{USER}:{PASSWORD}", dest, local)
    assert r.returncode == 0, r.stderr
    assert remote_digest(dest, creds=f"{USER}:{PASSWORD}", ca=test_ca, tmp=tmp_path) == \
        test_images.busybox_desc["digest"]


def test_push_to_token_registry(registry_token: Registry, seeded_registry: Registry, ctrpy: Any,
                                test_images: Any, token_issuer: Any) -> None:
    pull(ctrpy, f"{seeded_registry.host}/docker-multi:latest", "--all-platforms")
    dest = f"{registry_token.host}/pushed/docker-multi:1"
    local = f"{seeded_registry.host}/docker-multi:latest"
    r = ctrpy("push", dest, local)
    assert r.returncode == 8, r.stderr  # an anonymous token grants pull only
    r = ctrpy("push", "-u", f"{USER}:{PASSWORD}", dest, local)
    assert r.returncode == 0, r.stderr
    assert any(account == USER and "repository:pushed/docker-multi:pull,push" in scopes
               for account, scopes in token_issuer.requests)
    assert remote_digest(dest, creds=f"{USER}:{PASSWORD}") == test_images.docker_multi_desc["digest"]


def test_push_unknown_local_image(ctrpy: Any, seeded_registry: Registry) -> None:
    r = ctrpy("push", f"{seeded_registry.host}/x:1", "nothing-here")
    assert r.returncode == 4
    assert err(r) == "ctrpy: image 'nothing-here' not found in namespace 'default'"
