"""`ctrpy pull` against real registries (docker-registry on 127.0.0.1), including the ways pulls fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ctrpy.runtime.client import Client
from support import testimages
from support.registry import FaultProxy, Registry, free_port

CTRPY = str(Path(sys.executable).parent / "ctrpy")
GC = "containerd.io/gc.ref.content"


def client_for(dirs: Any) -> Client:
    return Client(dirs.root, dirs.state)


def manifest_of(layout: Path, desc: dict) -> dict:
    return json.loads(testimages.read_blob(layout, desc["digest"]))


def err(r: Any) -> str:
    """The error line: the last line of stderr (progress lines come before it)."""
    lines = r.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def image_names(ctrpy: Any) -> list[str]:
    r = ctrpy("images", "ls", "-q")
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


# ---------------------------------------------------------------------------------------------- success paths

def test_pull_stores_every_blob_verified_byte_identical_with_gc_labels(seeded_registry: Registry, ctrpy: Any,
                                                                       dirs: Any, test_images: Any) -> None:
    ref = f"{seeded_registry.host}/layered:latest"
    r = ctrpy("pull", "--no-unpack", ref)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{ref} {test_images.layered_desc['digest']}"
    client = client_for(dirs)
    manifest = manifest_of(test_images.layered, test_images.layered_desc)
    # gzip, zstd, uncompressed and gzip layers, as the registry holds them
    assert [layer["mediaType"].rsplit(".", 1)[-1] for layer in manifest["layers"]] == \
        ["tar+gzip", "tar+zstd", "tar", "tar+gzip"]
    for desc in [test_images.layered_desc, manifest["config"], *manifest["layers"]]:
        stored = client.content.read_bytes(desc["digest"])
        assert stored == testimages.read_blob(test_images.layered, desc["digest"])
        labels = client.content.info(desc["digest"]).labels
        assert labels["containerd.io/distribution.source." + seeded_registry.host] == "layered"
    labels = client.content.info(test_images.layered_desc["digest"]).labels
    assert labels[f"{GC}.config"] == manifest["config"]["digest"]
    assert [labels[f"{GC}.l.{i}"] for i in range(4)] == [layer["digest"] for layer in manifest["layers"]]
    image = client.images.get(ref)
    assert image.target.digest == test_images.layered_desc["digest"]
    assert client.leases.list() == []  # the pull's lease is gone once the image record holds the content


def test_pull_docker_schema2_image(seeded_registry: Registry, ctrpy: Any, dirs: Any, test_images: Any) -> None:
    ref = f"{seeded_registry.host}/docker"
    r = ctrpy("pull", "--no-unpack", ref)
    assert r.returncode == 0, r.stderr
    image = client_for(dirs).images.get(ref + ":latest")
    assert image.target.media_type == testimages.DOCKER_MANIFEST
    r = ctrpy("images", "check")
    assert "complete (6/6)" in r.stdout


def test_pull_selects_the_host_platform_from_an_index(seeded_registry: Registry, ctrpy: Any, dirs: Any,
                                                     test_images: Any) -> None:
    r = ctrpy("pull", "--no-unpack", f"{seeded_registry.host}/multi:latest")
    assert r.returncode == 0, r.stderr
    client = client_for(dirs)
    index = manifest_of(test_images.multi, test_images.multi_desc)
    by_arch = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
    assert client.content.exists(by_arch["amd64"])
    assert not client.content.exists(by_arch["arm64"]) and not client.content.exists(by_arch["arm"])
    labels = client.content.info(test_images.multi_desc["digest"]).labels
    assert labels[f"{GC}.m.0"] == by_arch["amd64"]


@pytest.mark.parametrize("platform, arch", [("linux/arm64/v8", "arm64"), ("linux/arm/v7", "arm"),
                                            ("linux/arm64", "arm64")])
def test_pull_platform_flag_with_variants(seeded_registry: Registry, ctrpy: Any, dirs: Any, test_images: Any,
                                          platform: str, arch: str) -> None:
    r = ctrpy("pull", "--no-unpack", "--platform", platform, f"{seeded_registry.host}/docker-multi")
    assert r.returncode == 0, r.stderr
    index = manifest_of(test_images.docker_multi, test_images.docker_multi_desc)
    wanted = [m for m in index["manifests"] if m["platform"]["architecture"] == arch][0]
    client = client_for(dirs)
    assert [client.content.exists(m["digest"]) for m in index["manifests"]] == \
        [m is wanted for m in index["manifests"]]
    # The marker layer says which platform's content arrived.
    manifest = json.loads(client.content.read_bytes(wanted["digest"]))
    marker = client.content.read_bytes(manifest["layers"][1]["digest"])
    import gzip
    assert f"linux/{arch}".encode() in gzip.decompress(marker)


def test_pull_all_platforms_and_several_platform_flags(seeded_registry: Registry, ctrpy: Any, dirs: Any) -> None:
    ref = f"{seeded_registry.host}/multi:latest"
    r = ctrpy("pull", "--no-unpack", "--platform", "linux/arm64", "--platform", "linux/arm/v7", ref)
    assert r.returncode == 0, r.stderr
    r = ctrpy("images", "check", "--format", "json")
    status = {row["platform"]: row["complete"] for row in json.loads(r.stdout)}
    assert status == {"linux/amd64": False, "linux/arm64/v8": True, "linux/arm/v7": True}
    r = ctrpy("pull", "--no-unpack", "--all-platforms", ref)
    assert r.returncode == 0, r.stderr
    r = ctrpy("images", "check", "--format", "json")
    assert all(row["complete"] for row in json.loads(r.stdout))


def test_pull_unknown_platform_is_a_clear_error(seeded_registry: Registry, ctrpy: Any) -> None:
    r = ctrpy("pull", "--no-unpack", "--platform", "linux/s390x", f"{seeded_registry.host}/multi:latest")
    assert r.returncode == 4
    assert "no manifest for platform linux/s390x" in r.stderr and "linux/arm64/v8" in r.stderr
    r = ctrpy("pull", "--no-unpack", "--platform", "bogus/x/y/z", f"{seeded_registry.host}/multi:latest")
    assert r.returncode == 3 and err(r).startswith("ctrpy: invalid platform")


def test_pull_by_digest_and_by_tag_plus_digest(seeded_registry: Registry, ctrpy: Any, dirs: Any,
                                               test_images: Any) -> None:
    digest = test_images.busybox_desc["digest"]
    by_digest = f"{seeded_registry.host}/busybox@{digest}"
    r = ctrpy("pull", "--no-unpack", by_digest)
    assert r.returncode == 0, r.stderr
    both = f"{seeded_registry.host}/busybox:latest@{digest}"
    r = ctrpy("pull", "--no-unpack", both)
    assert r.returncode == 0, r.stderr
    assert set(image_names(ctrpy)) == {by_digest, both}
    wrong = f"{seeded_registry.host}/busybox@sha256:{'0' * 64}"
    r = ctrpy("pull", "--no-unpack", wrong)
    assert r.returncode == 4 and "not found" in r.stderr


def test_second_pull_downloads_nothing(fault_proxy: FaultProxy, ctrpy: Any, dirs: Any, test_images: Any) -> None:
    ref = f"{fault_proxy.host}/busybox:latest"
    assert ctrpy("pull", "--no-unpack", ref).returncode == 0
    layer = manifest_of(test_images.busybox, test_images.busybox_desc)["layers"][0]["digest"]
    assert len(fault_proxy.blob_gets(layer)) == 1
    r = ctrpy("pull", "--no-unpack", ref)
    assert r.returncode == 0, r.stderr
    assert len(fault_proxy.blob_gets(layer)) == 1
    assert f"layer {layer.split(':')[1][:12]}: exists" in r.stderr


def test_keep_alive_and_bounded_parallelism(fault_proxy: FaultProxy, ctrpy: Any, test_images: Any) -> None:
    r = ctrpy("pull", "--no-unpack", "--all-platforms", "--max-concurrent-downloads", "2",
              f"{fault_proxy.host}/multi:latest")
    assert r.returncode == 0, r.stderr
    requests = len(fault_proxy.log)
    assert requests >= 10  # HEAD, index, 3 manifests, 3 configs, 4 distinct layers
    # Connections are reused: one for the sequential part, at most two more for the two download workers.
    assert len(fault_proxy.connections) <= 3, (requests, fault_proxy.connections)


def test_progress_plain_lines_and_quiet(seeded_registry: Registry, ctrpy: Any, test_images: Any) -> None:
    ref = f"{seeded_registry.host}/busybox:latest"
    r = ctrpy("pull", "--no-unpack", "-q", ref)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    r = ctrpy("images", "rm", "--no-gc", ref)
    assert r.returncode == 0
    r = ctrpy("pull", "--no-unpack", ref)
    assert r.stderr.splitlines()[0] == f"resolving {ref}"
    assert "config" in r.stderr and "exists" in r.stderr


def test_progress_bars_on_a_terminal(seeded_registry: Registry, dirs: Any, fault_proxy: FaultProxy) -> None:
    import pty

    fault_proxy.delay = 0.05
    master, slave = pty.openpty()
    proc = subprocess.Popen([CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "pull", "--no-unpack",
                             f"{fault_proxy.host}/busybox:latest"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave, env={**os.environ, "COLUMNS": "120"})
    os.close(slave)
    output = b""
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            output += data
    finally:
        proc.wait(timeout=60)
        os.close(master)
    assert proc.returncode == 0
    text = output.decode(errors="replace")
    assert "━" in text and "layer" in text and "done" in text  # rich bars with per-layer state


# ---------------------------------------------------------------------------------------------- speed

def test_interrupted_pull_resumes_from_the_partial_ingest(fault_proxy: FaultProxy, ctrpy: Any, dirs: Any,
                                                          test_images: Any) -> None:
    layer = manifest_of(test_images.busybox, test_images.busybox_desc)["layers"][0]
    half = layer["size"] // 2
    fault_proxy.truncate[layer["digest"]] = half
    ref = f"{fault_proxy.host}/busybox:latest"
    r = ctrpy("pull", "--no-unpack", ref)
    assert r.returncode == 7
    assert r.stderr.splitlines()[-1].startswith("ctrpy: fetch layer") and "truncated" in r.stderr
    client = client_for(dirs)
    assert not client.content.exists(layer["digest"])
    assert image_names(ctrpy) == []
    [status] = [s for s in client.content.statuses() if layer["digest"] in s.ref]
    assert status.offset == half
    del fault_proxy.truncate[layer["digest"]]
    r = ctrpy("pull", "--no-unpack", ref)
    assert r.returncode == 0, r.stderr
    first, second = fault_proxy.blob_gets(layer["digest"])
    assert first[2] == "" and first[4] == half
    assert second[2] == f"bytes={half}-" and second[4] == layer["size"] - half
    assert client.content.read_bytes(layer["digest"]) == testimages.read_blob(test_images.busybox, layer["digest"])
    assert client.content.statuses() == []


@pytest.mark.slow
def test_concurrent_pulls_download_each_blob_once(fault_proxy: FaultProxy, dirs: Any, test_images: Any) -> None:
    fault_proxy.delay = 0.03  # ~0.5 s per busybox layer: the two pulls overlap
    ref = f"{fault_proxy.host}/layered:latest"
    argv = [CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "pull", "--no-unpack", ref]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], results
    manifest = manifest_of(test_images.layered, test_images.layered_desc)
    for layer in manifest["layers"]:
        assert len(fault_proxy.blob_gets(layer["digest"])) == 1, layer


# ---------------------------------------------------------------------------------------------- failures

def _nothing_committed(ctrpy: Any, dirs: Any, digest: str) -> None:
    assert image_names(ctrpy) == []
    assert not client_for(dirs).content.exists(digest)


def test_tampered_blob_is_refused_and_not_stored(fault_proxy: FaultProxy, ctrpy: Any, dirs: Any,
                                                 test_images: Any) -> None:
    layer = manifest_of(test_images.busybox, test_images.busybox_desc)["layers"][0]["digest"]
    fault_proxy.tamper.add(layer)
    r = ctrpy("pull", "--no-unpack", f"{fault_proxy.host}/busybox:latest")
    assert r.returncode == 6
    error = r.stderr.splitlines()[-1]
    assert error.startswith(f"ctrpy: layer {layer} failed verification") and "tampered" in error
    assert [line for line in r.stderr.splitlines() if line.startswith("ctrpy:")] == [error]
    _nothing_committed(ctrpy, dirs, layer)
    assert [s for s in client_for(dirs).content.statuses() if layer in s.ref] == []  # not resumable: discarded


def test_stalled_transfer_fails_after_the_progress_timeout(fault_proxy: FaultProxy, ctrpy: Any, dirs: Any,
                                                           test_images: Any) -> None:
    layer = manifest_of(test_images.busybox, test_images.busybox_desc)["layers"][0]["digest"]
    fault_proxy.stall[layer] = 1000
    # The timeout comes from the config file (registry.progress_timeout), as an operator would set it.
    (dirs.root.parent / "config.toml").write_text("[registry]\nprogress_timeout = 1\n")
    start = time.monotonic()
    r = ctrpy("pull", "--no-unpack", f"{fault_proxy.host}/busybox:latest")
    assert r.returncode == 9, r.stderr
    assert time.monotonic() - start < 15
    assert "no data" in r.stderr and "stalled" in r.stderr
    _nothing_committed(ctrpy, dirs, layer)


def test_overall_deadline(fault_proxy: FaultProxy, ctrpy: Any, dirs: Any, test_images: Any) -> None:
    fault_proxy.delay = 0.3  # a trickle: progress never stops, but the pull takes too long
    start = time.monotonic()
    r = ctrpy("pull", "--no-unpack", "--deadline", "1.5", f"{fault_proxy.host}/busybox:latest")
    assert r.returncode == 9, r.stderr
    assert "deadline of 1.5s exceeded" in r.stderr
    assert time.monotonic() - start < 15
    assert image_names(ctrpy) == []


def test_manifest_not_found(seeded_registry: Registry, ctrpy: Any) -> None:
    r = ctrpy("pull", "--no-unpack", f"{seeded_registry.host}/busybox:no-such-tag")
    assert r.returncode == 4
    assert err(r) == f"ctrpy: resolve {seeded_registry.host}/busybox:no-such-tag: manifest 'no-such-tag' not found " \
                     f"on {seeded_registry.host} (404)"
    r = ctrpy("pull", "--no-unpack", f"{seeded_registry.host}/no/such/repo")
    assert r.returncode == 4


def test_blob_not_found(seeded_registry: Registry, ctrpy: Any, dirs: Any, test_images: Any) -> None:
    import urllib.request

    seeded_registry.push(test_images.busybox, "broken")
    layer = manifest_of(test_images.busybox, test_images.busybox_desc)["layers"][0]["digest"]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(f"{seeded_registry.url}/v2/broken/blobs/{layer}", method="DELETE")
    assert opener.open(req, timeout=10).status == 202
    r = ctrpy("pull", "--no-unpack", f"{seeded_registry.host}/broken:latest")
    assert r.returncode == 4
    assert "fetch layer" in r.stderr and "not found" in r.stderr
    _nothing_committed(ctrpy, dirs, layer)


def test_connection_refused(ctrpy: Any) -> None:
    port = free_port()
    r = ctrpy("pull", "--no-unpack", "--plain-http", f"127.0.0.1:{port}/busybox:latest")
    assert r.returncode == 7
    assert err(r) == f"ctrpy: resolve 127.0.0.1:{port}/busybox:latest: connection refused by 127.0.0.1:{port}"


def test_unknown_host(dirs: Any) -> None:
    # A fresh network namespace has no route anywhere: name resolution fails at once and no DNS query leaves.
    probe = subprocess.run(["unshare", "-n", "getent", "hosts", "registry.test"], capture_output=True, timeout=10)
    assert probe.returncode != 0
    r = subprocess.run(["unshare", "-n", CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "pull",
                        "--no-unpack", "registry.test/app:1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 7
    assert err(r) == "ctrpy: resolve registry.test/app:1: cannot resolve registry host 'registry.test'"


def test_invalid_reference(ctrpy: Any) -> None:
    r = ctrpy("pull", "Not A Ref")
    assert r.returncode == 3
    assert err(r).startswith("ctrpy: invalid reference")


def test_self_signed_registry_without_its_ca_is_refused(registry_tls: Registry, test_images: Any,
                                                         ctrpy: Any) -> None:
    registry_tls.push(test_images.busybox, "busybox")
    r = ctrpy("pull", "--no-unpack", "-u", "alice:s3cret", f"{registry_tls.host}/busybox:latest")
    assert r.returncode == 7
    assert "TLS certificate of" in r.stderr and "not trusted" in r.stderr and "--tlscacert" in r.stderr


# ---------------------------------------------------------------------------------------------- hosts, proxies

def test_mirror_serves_another_registrys_names(seeded_registry: Registry, test_images: Any, ctrpy: Any,
                                               dirs: Any, tmp_path: Path) -> None:
    seeded_registry.push(test_images.busybox, "pause", tag="3.9")
    upstream = FaultProxy(seeded_registry)  # stands in for registry.k8s.io: it must see no request at all
    try:
        certs = tmp_path / "certs.d" / "registry.k8s.io"
        certs.mkdir(parents=True)
        (certs / "hosts.toml").write_text(
            f'server = "http://{upstream.host}"\n\n'
            f'[host."http://{seeded_registry.host}"]\n  capabilities = ["pull", "resolve"]\n')
        r = ctrpy("pull", "--no-unpack", "--hosts-dir", str(tmp_path / "certs.d"), "registry.k8s.io/pause:3.9")
        assert r.returncode == 0, r.stderr
        assert upstream.log == []
    finally:
        upstream.stop()
    image = client_for(dirs).images.get("registry.k8s.io/pause:3.9")
    assert image.target.digest == test_images.busybox_desc["digest"]
    labels = client_for(dirs).content.info(image.target.digest).labels
    assert labels["containerd.io/distribution.source.registry.k8s.io"] == "pause"
    assert seeded_registry.requests("GET", "/v2/pause/manifests/") >= 1


def test_mirror_config_from_the_config_file(seeded_registry: Registry, ctrpy: Any, dirs: Any,
                                            tmp_path: Path, test_images: Any) -> None:
    seeded_registry.push(test_images.busybox, "pause", tag="3.9")
    certs = tmp_path / "certs.d"
    (certs / "_default").mkdir(parents=True)
    (certs / "_default" / "hosts.toml").write_text(f'server = "http://{seeded_registry.host}"\n')
    (dirs.root.parent / "config.toml").write_text(f'[registry]\nconfig_path = "{certs}"\n')
    r = ctrpy("pull", "--no-unpack", "mirror.test/pause:3.9")
    assert r.returncode == 0, r.stderr


def test_http_proxy_environment_is_honoured(fault_proxy: FaultProxy, ctrpy: Any, dirs: Any) -> None:
    # registry.test is never resolved here: the proxy (on 127.0.0.1, in front of the seeded registry) gets
    # the absolute URL and serves it.
    env = {"HTTP_PROXY": f"http://{fault_proxy.host}", "http_proxy": f"http://{fault_proxy.host}",
           "NO_PROXY": "", "no_proxy": ""}
    r = ctrpy("pull", "--no-unpack", "--plain-http", "registry.test/busybox:latest", env=env)
    assert r.returncode == 0, r.stderr
    assert fault_proxy.log and all(entry[1].startswith("http://registry.test/v2/") for entry in fault_proxy.log)
    seen = len(fault_proxy.log)
    # Loopback registries never go through a proxy (Go's ProxyFromEnvironment, hence containerd, agree).
    r = ctrpy("pull", "--no-unpack", f"{fault_proxy.upstream.host}/busybox:latest", env=env)
    assert r.returncode == 0, r.stderr
    assert len(fault_proxy.log) == seen
    # NO_PROXY: a direct connection, which in an empty network namespace fails at name resolution.
    r = subprocess.run(["unshare", "-n", CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "pull",
                        "--no-unpack", "--plain-http", "registry.test/busybox:2"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, **env, "NO_PROXY": "registry.test", "no_proxy": "registry.test"})
    assert r.returncode == 7 and "cannot resolve registry host 'registry.test'" in r.stderr
    assert len(fault_proxy.log) == seen


# ---------------------------------------------------------------------------------------------- unpack

def test_pull_unpacks_by_default(seeded_registry: Registry, ctrpy: Any, dirs: Any, test_images: Any) -> None:
    r = ctrpy("pull", "--snapshotter", "native", f"{seeded_registry.host}/layered:latest")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(": unpacked") == 4  # one line per layer, then the image
    assert f"unpacked {seeded_registry.host}/layered:latest" in r.stderr
    from ctrpy.runtime import images as rt

    client = client_for(dirs)
    image = client.images.get(f"{seeded_registry.host}/layered:latest")
    chain = rt.resolve(client.content, image).chain_id
    info = client.snapshotter("native").stat(chain)
    assert info is not None


@pytest.mark.slow
def test_large_layer_streams_in_constant_memory(seeded_registry: Registry, dirs: Any, tmp_path: Path) -> None:
    size = 160 << 20
    layer = testimages.LayerBuilder().file("big.bin", os.urandom(size)).bytes()
    layout = tmp_path / "big"
    desc = testimages.build_layout(layout, [layer], compression="none")
    ref = seeded_registry.push(layout, "big")
    del layer
    # A wrapper measures the peak RSS of the ctrpy process alone (RUSAGE_CHILDREN of the wrapper).
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-c", wrapper, CTRPY, "--root", str(dirs.root), "--state", str(dirs.state),
                        "pull", "--no-unpack", "-q", ref], capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - start
    assert r.returncode == 0, r.stderr
    peak_kib = int(r.stdout.split()[-1])
    print(f"pulled a {size >> 20} MiB layer in {elapsed:.2f}s, peak RSS {peak_kib >> 10} MiB")
    assert peak_kib < 100 * 1024  # far below the layer's size: the body is streamed, never held
    client = client_for(dirs)
    assert client.images.get(ref).target.digest == desc["digest"]


def test_ctrl_c_mid_download_exits_130_and_the_next_pull_resumes(fault_proxy: FaultProxy, dirs: Any,
                                                                  ctrpy: Any, test_images: Any) -> None:
    import signal

    layer = manifest_of(test_images.busybox, test_images.busybox_desc)["layers"][0]
    fault_proxy.stall[layer["digest"]] = 300_000
    ref = f"{fault_proxy.host}/busybox:latest"
    proc = subprocess.Popen([CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "pull", "--no-unpack",
                             ref], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        client = client_for(dirs)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            statuses = [s for s in client.content.statuses() if layer["digest"] in s.ref]
            if statuses and statuses[0].offset >= 300_000:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the download never reached the stall point")
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert time.monotonic() - start < 5  # a stalled read does not hold Ctrl-C up
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "ctrpy: interrupted"
    del fault_proxy.stall[layer["digest"]]
    r = ctrpy("pull", "--no-unpack", ref)
    assert r.returncode == 0, r.stderr
    # (The stalled first request is logged only when the proxy gives up on it.)
    [resumed] = [entry for entry in fault_proxy.blob_gets(layer["digest"]) if entry[2]]
    assert resumed[2] == "bytes=300000-" and resumed[4] == layer["size"] - 300_000


@pytest.mark.slow
def test_make_demo_script() -> None:
    demo = Path(__file__).resolve().parent.parent / "scripts" / "demo.py"
    r = subprocess.run([sys.executable, str(demo)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ": done" in r.stderr and "resolving" in r.stderr  # plain progress lines (no terminal)
    assert "complete (3/3)" in r.stdout and r.stdout.rstrip().endswith("demo: done")
