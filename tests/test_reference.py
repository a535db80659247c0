"""References, platforms, chain IDs, hosts.toml and auth challenges: the pure parsing parts of pulling."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ctrpy.runtime import errors, images, platforms
from ctrpy.runtime.reference import normalize, parse, registry_host
from ctrpy.runtime.remotes import RegistryOptions
from ctrpy.runtime.remotes.auth import parse_challenges
from ctrpy.runtime.remotes.hosts import registry_hosts

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("given, expected", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("user/app", "docker.io/user/app:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/user/app:v1", "docker.io/user/app:v1"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/app", "localhost:5000/app:latest"),
    ("127.0.0.1:5000/a/b/c:t-1.0_x", "127.0.0.1:5000/a/b/c:t-1.0_x"),
    ("ghcr.io/o/app@" + D, "ghcr.io/o/app@" + D),
    ("app:1.0@" + D, "docker.io/library/app:1.0@" + D),
    ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
    ("[::1]:5000/app", "[::1]:5000/app:latest"),
    ("a__b/c-d/e.f:TAG", "docker.io/a__b/c-d/e.f:TAG"),
])
def test_normalisation_like_docker(given: str, expected: str) -> None:
    assert normalize(given) == expected


@pytest.mark.parametrize("bad, reason", [
    ("", "non-empty"),
    ("Busybox", "lowercase"),
    ("busybox:", "invalid tag"),
    ("busybox:-x", "invalid tag"),
    ("busybox@sha256:abc", "invalid digest"),
    ("busybox@md5:" + "a" * 64, "unsupported digest"),
    ("a" * 64, "ambiguous"),
    ("host:5000/", "missing repository name"),
    ("bad//path", "invalid repository name"),
    ("-x/y", "invalid"),
    (" busybox", "without spaces"),
    ("a/" + "b" * 260, "longer than 255"),
])
def test_invalid_references_are_rejected_with_the_reason(bad: str, reason: str) -> None:
    with pytest.raises(errors.InvalidArgument) as info:
        parse(bad)
    assert reason in str(info.value)


def test_reference_parts_and_registry_host() -> None:
    ref = parse("app:1.0@" + D)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("docker.io", "library/app", "1.0", D)
    assert ref.object == D  # the digest wins over the tag when fetching
    assert parse("busybox").familiar() == "busybox:latest"
    assert registry_host("docker.io") == "registry-1.docker.io"
    assert registry_host("127.0.0.1:5000") == "127.0.0.1:5000"


@pytest.mark.parametrize("spec, expected", [
    ("linux/amd64", "linux/amd64"),
    ("linux/x86_64", "linux/amd64"),
    ("linux/aarch64", "linux/arm64"),
    ("linux/arm64/v8", "linux/arm64"),
    ("linux/arm", "linux/arm/v7"),
    ("linux/armhf", "linux/arm/v7"),
    ("linux/armel", "linux/arm/v6"),
    ("arm64", "linux/arm64"),
    ("linux/arm/7", "linux/arm/v7"),
])
def test_platform_normalisation_like_containerd(spec: str, expected: str) -> None:
    assert platforms.format_platform(platforms.parse(spec)) == expected


@pytest.mark.parametrize("bad", ["", "linux/", "plan10/amd64", "linux/amd64/v3/x", "nonsense"])
def test_invalid_platforms(bad: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        platforms.parse(bad)


def test_platform_matching_with_variants() -> None:
    arm64 = platforms.Matcher(platforms.parse("linux/arm64/v8"))
    assert arm64.match({"os": "linux", "architecture": "arm64", "variant": "v8"})
    assert arm64.match({"os": "linux", "architecture": "arm64"})
    assert not arm64.match({"os": "linux", "architecture": "amd64"})
    armv7 = platforms.Matcher(platforms.parse("linux/arm/v7"))
    assert armv7.rank({"os": "linux", "architecture": "arm", "variant": "v7"}) == 0
    assert armv7.rank({"os": "linux", "architecture": "arm", "variant": "v6"}) == 1
    assert not armv7.match({"os": "linux", "architecture": "arm", "variant": "v8"})
    assert not armv7.match({"os": "windows", "architecture": "arm", "variant": "v7"})
    host = platforms.Matcher(platforms.host())
    assert host.match(platforms.host().to_dict())


def test_select_prefers_the_exact_variant() -> None:
    from ctrpy.runtime.content import Descriptor

    v6 = Descriptor(images.OCI_MANIFEST, "sha256:" + "6" * 64, 1, platform={"os": "linux", "architecture": "arm",
                                                                         "variant": "v6"})
    v7 = Descriptor(images.OCI_MANIFEST, "sha256:" + "7" * 64, 1, platform={"os": "linux", "architecture": "arm",
                                                                         "variant": "v7"})
    chosen = images.select([v6, v7], platforms.Matcher(platforms.parse("linux/arm/v7")))
    assert chosen == [v7, v6]


def test_chain_ids_follow_the_image_spec() -> None:
    d1, d2, d3 = ("sha256:" + c * 64 for c in "123")
    c2 = "sha256:" + hashlib.sha256(f"{d1} {d2}".encode()).hexdigest()
    c3 = "sha256:" + hashlib.sha256(f"{c2} {d3}".encode()).hexdigest()
    assert images.chain_ids([d1, d2, d3]) == [d1, c2, c3]
    with pytest.raises(errors.InvalidArgument):
        images.chain_id([])


def test_hosts_toml_mirrors_capabilities_and_tls(tmp_path: Path) -> None:
    d = tmp_path / "certs.d" / "registry.k8s.io"
    d.mkdir(parents=True)
    (d / "ca.crt").write_text("x")
    (d / "hosts.toml").write_text('''
server = "https://registry.k8s.io"

[host."http://127.0.0.1:5000"]
  capabilities = ["pull", "resolve"]

[host."https://mirror.example:8443/base"]
  capabilities = ["pull"]
  ca = "ca.crt"
  client = [["/c.crt", "/c.key"]]
  skip_verify = true
  [host."https://mirror.example:8443/base".header]
    x-test = "1"
''')
    hosts = registry_hosts("registry.k8s.io", RegistryOptions(hosts_dirs=[str(tmp_path / "certs.d")]))
    assert [h.base_url for h in hosts] == ["http://127.0.0.1:5000/v2", "https://mirror.example:8443/base/v2",
                                          "https://registry.k8s.io/v2"]
    assert hosts[0].capabilities == {"pull", "resolve"} and hosts[0].mirror
    assert hosts[1].ca == [str(d / "ca.crt")] and hosts[1].client_certs == [("/c.crt", "/c.key")]
    assert hosts[1].skip_verify and hosts[1].headers == {"x-test": "1"}
    assert hosts[2].capabilities == {"pull", "resolve", "push"} and not hosts[2].mirror


def test_hosts_defaults_without_a_file(tmp_path: Path) -> None:
    [hub] = registry_hosts("docker.io", RegistryOptions(hosts_dirs=[str(tmp_path)]))
    assert hub.base_url == "https://registry-1.docker.io/v2" and not hub.http_fallback
    [local] = registry_hosts("127.0.0.1:5000", RegistryOptions())
    assert local.scheme == "https" and local.http_fallback  # loopback: HTTPS, then plain HTTP if no TLS
    [plain] = registry_hosts("example.test:5000", RegistryOptions(plain_http=True))
    assert plain.base_url == "http://example.test:5000/v2"
    default = tmp_path / "_default"
    default.mkdir()
    (default / "hosts.toml").write_text('server = "http://127.0.0.1:1"\n')
    [fallback] = registry_hosts("other.test", RegistryOptions(hosts_dirs=[str(tmp_path)]))
    assert fallback.base_url == "http://127.0.0.1:1/v2"


def test_bad_hosts_toml_is_a_clear_error(tmp_path: Path) -> None:
    d = tmp_path / "example.test"
    d.mkdir()
    (d / "hosts.toml").write_text('[host."http://m"]\ncapabilities = ["fly"]\n')
    with pytest.raises(errors.InvalidArgument, match="capabilities"):
        registry_hosts("example.test", RegistryOptions(hosts_dirs=[str(tmp_path)]))
    (d / "hosts.toml").write_text('server = [1\n')
    with pytest.raises(errors.InvalidArgument, match="invalid TOML"):
        registry_hosts("example.test", RegistryOptions(hosts_dirs=[str(tmp_path)]))


def test_www_authenticate_challenges() -> None:
    [bearer] = parse_challenges(['Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                 'scope="repository:library/busybox:pull"'])
    assert bearer.scheme == "bearer"
    assert bearer.params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                             "scope": "repository:library/busybox:pull"}
    [basic] = parse_challenges(['Basic realm="Registry Realm"'])
    assert basic.scheme == "basic" and basic.params["realm"] == "Registry Realm"
