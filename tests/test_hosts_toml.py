"""hosts.toml resolution is containerd's: each layout is tried with ctrpy and with `ctr --hosts-dir` on the same files.

`ctr content fetch-object` resolves and fetches a manifest through containerd's own resolver without a daemon,
so both tools meet the same TLS registry (support/registry.py: a CA of the tests' own, basic auth) through
the same hosts directory, and must agree on which layouts work. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from ctrpy.runtime import errors
from ctrpy.runtime.remotes import RegistryOptions
from ctrpy.runtime.remotes.hosts import registry_hosts
from support.registry import CA, PASSWORD, USER, Registry

pytestmark = pytest.mark.skipif(shutil.which("ctr") is None, reason="ctr (containerd) is not installed")


@pytest.fixture(scope="module")
def tls_busybox(registry_tls: Registry, test_images: Any) -> Registry:
    registry_tls.push(test_images.busybox, "busybox")
    return registry_tls


def ctr_fetch(hosts_dir: Path, ref: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ctr", "content", "fetch-object", "--hosts-dir", str(hosts_dir), "--user",
                           f"{USER}:{PASSWORD}", *flags, ref], capture_output=True, timeout=60)


# Each layout: (name, writer(hosts dir, registry, CA), CLI flags, works with ctr, works with ctrpy).
# Two containerd 1.6.20 quirks shape the layouts (later containerd releases fixed or changed both):
# - a hosts.toml without any [host] table fails to decode ("invalid `host` tree") and is ignored in favour of
#   the certificate files; so every layout here has a [host] table, and the file's `server` always matters;
# - a loopback registry's default server (no `server` key) is plain HTTP in ctr; ctrpy tries HTTPS first
#   (containerd 2's HTTP fallback), so with a certs.d layout ctrpy reaches this TLS registry and ctr does not.
Layout = Callable[[Path, Registry, CA], None]


def _write(d: Path, name: str, text: str) -> None:
    (d / name).mkdir(exist_ok=True)
    (d / name / "hosts.toml").write_text(text)


def _server_and_same_host_with_ca(d: Path, reg: Registry, ca: CA) -> None:
    _write(d, reg.host, f'server = "https://{reg.host}"\n\n[host."https://{reg.host}"]\n  ca = "{ca.cert}"\n')


def _server_and_same_host_skip_verify(d: Path, reg: Registry, ca: CA) -> None:
    _write(d, reg.host, f'server = "https://{reg.host}"\n\n[host."https://{reg.host}"]\n  skip_verify = true\n')


def _port_directory_form(d: Path, reg: Registry, ca: CA) -> None:
    host, port = reg.host.rsplit(":", 1)
    _write(d, f"{host}_{port}_", f'server = "https://{reg.host}"\n\n[host."https://{reg.host}"]\n  ca = "{ca.cert}"\n')


def _port_form_wins_over_plain_name(d: Path, reg: Registry, ca: CA) -> None:
    host, port = reg.host.rsplit(":", 1)
    _write(d, f"{host}_{port}_", f'server = "https://{reg.host}"\n\n[host."https://{reg.host}"]\n')  # no CA
    _server_and_same_host_with_ca(d, reg, ca)


def _certs_d_layout_without_hosts_toml(d: Path, reg: Registry, ca: CA) -> None:
    (d / reg.host).mkdir()
    shutil.copy(ca.cert, d / reg.host / "registry-ca.crt")


def _empty_host_dir_hides_default(d: Path, reg: Registry, ca: CA) -> None:
    (d / reg.host).mkdir()
    _write(d, "_default", f'server = "https://{reg.host}"\n\n[host."https://{reg.host}"]\n  ca = "{ca.cert}"\n')


def _default_dir(d: Path, reg: Registry, ca: CA) -> None:
    _write(d, "_default", f'server = "https://{reg.host}"\n\n[host."https://{reg.host}"]\n  ca = "{ca.cert}"\n')


def _same_host_without_ca_then_server_with_ca(d: Path, reg: Registry, ca: CA) -> None:
    # The [host] entry equal to the server fails its TLS check; the server entry after it, with the
    # top-level CA, is tried next and works.
    _write(d, reg.host, f'server = "https://{reg.host}"\nca = "{ca.cert}"\n\n'
                        f'[host."https://{reg.host}"]\n  capabilities = ["PULL", "Resolve"]\n')


def _explicit_skip_verify_false_beats_the_flag(d: Path, reg: Registry, ca: CA) -> None:
    _write(d, reg.host, f'server = "https://{reg.host}"\nskip_verify = false\n\n'
                        f'[host."https://{reg.host}"]\n  skip_verify = false\n')


def _skip_verify_flag_for_unset_hosts(d: Path, reg: Registry, ca: CA) -> None:
    _write(d, reg.host, f'server = "https://{reg.host}"\n\n[host."https://{reg.host}"]\n')


LAYOUTS: list[tuple[str, Layout, tuple[str, ...], bool, bool]] = [
    ("server-and-same-host-ca", _server_and_same_host_with_ca, (), True, True),
    ("server-and-same-host-skip-verify", _server_and_same_host_skip_verify, (), True, True),
    ("port-directory-form", _port_directory_form, (), True, True),
    ("port-form-wins", _port_form_wins_over_plain_name, (), False, False),
    ("certs.d-layout", _certs_d_layout_without_hosts_toml, (), False, True),
    ("empty-host-dir-hides-default", _empty_host_dir_hides_default, (), False, False),
    ("default-dir", _default_dir, (), True, True),
    ("same-host-then-server", _same_host_without_ca_then_server_with_ca, (), True, True),
    ("explicit-skip-verify-false", _explicit_skip_verify_false_beats_the_flag, ("--skip-verify",), False, False),
    ("skip-verify-flag", _skip_verify_flag_for_unset_hosts, ("--skip-verify",), True, True),
]


@pytest.mark.parametrize("name,layout,flags,ctr_works,works", LAYOUTS, ids=[entry[0] for entry in LAYOUTS])
def test_ctrpy_and_ctr_agree_on_hosts_toml(tls_busybox: Registry, test_ca: CA, ctrpy: Any, tmp_path: Path,
                                           name: str, layout: Layout, flags: tuple[str, ...], ctr_works: bool,
                                           works: bool) -> None:
    hosts_dir = tmp_path / "certs.d"
    hosts_dir.mkdir()
    layout(hosts_dir, tls_busybox, test_ca)
    ref = f"{tls_busybox.host}/busybox:latest"
    reference = ctr_fetch(hosts_dir, ref, *flags)
    assert (reference.returncode == 0) == ctr_works, f"ctr: {reference.stderr.decode()[-500:]}"
    assert b"invalid `host` tree" not in reference.stderr  # every file here is one ctr 1.6 reads
    r = ctrpy("pull", "--no-unpack", "-q", "--hosts-dir", str(hosts_dir), "-u", f"{USER}:{PASSWORD}", *flags, ref)
    assert (r.returncode == 0) == works, r.stderr
    if not works:
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "not trusted" in lines[0], r.stderr


def test_hosts_entries_in_order_and_flags(tmp_path: Path) -> None:
    d = tmp_path / "example.test"
    d.mkdir()
    (d / "hosts.toml").write_text(
        'server = "https://example.test"\ncapabilities = ["pull"]\n\n'
        '[host."https://example.test"]\n  ca = "ca.pem"\n  skip_verify = false\n\n'
        '[host."mirror.test:5000/base"]\n  override_path = true\n  client = ["one.pem", ["c.crt", "c.key"]]\n'
        '  [host."mirror.test:5000/base".header]\n    x-a = ["1", "2"]\n')
    hosts = registry_hosts("example.test", RegistryOptions(hosts_dirs=[str(tmp_path)], plain_http=True,
                                                           skip_verify=True))
    assert [h.base_url for h in hosts] == ["https://example.test/v2", "https://mirror.test:5000/base",
                                          "https://example.test/v2"]
    assert hosts[0].ca == [str(d / "ca.pem")] and hosts[0].skip_verify is False  # the file's false wins
    assert hosts[1].client_certs == [(str(d / "one.pem"), None), (str(d / "c.crt"), str(d / "c.key"))]
    assert hosts[1].headers == {"x-a": "1, 2"} and hosts[1].skip_verify is True
    assert hosts[2].capabilities == {"pull"} and not hosts[2].mirror
    # --plain-http changes only a scheme no URL gave: the default server of a directory without a server.
    (d / "hosts.toml").write_text('[host."https://m.test"]\n')
    hosts = registry_hosts("example.test", RegistryOptions(hosts_dirs=[str(tmp_path)], plain_http=True))
    assert [h.base_url for h in hosts] == ["https://m.test/v2", "http://example.test/v2"]
    assert hosts[1].capabilities == {"pull", "resolve", "push"}


@pytest.mark.parametrize("url,reason", [
    ("[", "Invalid IPv6 URL"),  # found by test_fuzz.py: urllib's ValueError escaped as a traceback
    ("https://[::1", "Invalid IPv6 URL"),
    ("https://r.test:99999", "Port out of range"),
    ("https://r.test:0", "invalid host 'r.test:0'"),
    ("https://user@r.test", "invalid host 'user@r.test'"),
    ("https://r test", "invalid host 'r test'"),
    ("https://r.test/v2?x=1", "must not have a query or fragment"),
    ("ftp://r.test", "the scheme must be http or https"),
])
def test_malformed_host_urls_are_one_line_errors(tmp_path: Path, url: str, reason: str) -> None:
    d = tmp_path / "example.test"
    d.mkdir()
    for text in (f'server = "{url}"\n', f'[host."{url}"]\n'):
        (d / "hosts.toml").write_text(text)
        with pytest.raises(errors.InvalidArgument) as info:
            registry_hosts("example.test", RegistryOptions(hosts_dirs=[str(tmp_path)]))
        message = str(info.value)
        assert reason in message and "\n" not in message and str(d / "hosts.toml") in message
