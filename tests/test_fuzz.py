"""Property-based tests (hypothesis): whatever the input, ctrpy ends in a documented exit code with one line on
stderr (never a traceback), and the store passes its own checks afterwards.

Inputs: references, platforms, label sets, hosts.toml, config files, manifests/indexes/configs (structure-aware:
mostly-valid documents with one field gone wrong), tar headers (names, links, modes, sizes, pax records) and the
supervisor's frame protocol. CLI cases run `ctrpy.commands.main` in-process (the same error ladder as the console
script, without a process per example); example counts stay modest so the file runs in well under a minute.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import socket
import tarfile
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from ctrpy.commands import main
from ctrpy.runtime import errors, platforms, reference
from ctrpy.runtime import supervisor as sup
from ctrpy.runtime.client import Client
from ctrpy.runtime.config import DEFAULTS, load_config, to_toml
from ctrpy.runtime.content import Descriptor
from ctrpy.runtime.metadata import DB
from ctrpy.runtime.remotes import RegistryOptions
from ctrpy.runtime.remotes.hosts import registry_hosts

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])
DOCUMENTED = {c for code in errors.EXIT_CODES for c in (code if isinstance(code, tuple) else (code,))}
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------- helpers

class Store:
    """One root/state pair for a whole test (hypothesis reuses it across examples)."""

    def __init__(self, base: Path) -> None:
        self.root, self.state = base / "root", base / "state"
        self.root.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        self.config = base / "config.toml"

    def cli(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        os.environ["CTRPY_CONFIG"] = str(self.config)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(["--root", str(self.root), "--state", str(self.state), *argv])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        return code, out.getvalue(), err.getvalue()

    def client(self) -> Client:
        return Client(self.root, self.state)

    def sound(self) -> None:
        assert DB(self.root).integrity_check() == []
        code, out, err = self.cli("images", "check")
        assert code == 0, err


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    saved = os.environ.get("CTRPY_CONFIG")
    yield Store(tmp_path)
    if saved is None:
        os.environ.pop("CTRPY_CONFIG", None)
    else:
        os.environ["CTRPY_CONFIG"] = saved


def one_documented_line(code: int, err: str) -> None:
    assert code in DOCUMENTED, (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    if code not in (0, 2):  # Click's usage errors print usage plus the error
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("ctrpy: "), err


def one_line_error(exc: BaseException) -> None:
    assert isinstance(exc, errors.CtrpyError), repr(exc)
    assert exc.exit_code in DOCUMENTED
    assert "\n" not in str(exc) and str(exc).strip(), repr(str(exc))


def parsed_or_rejected(parse: Callable[[Any], T], value: Any) -> T | None:
    """parse(value), or None when it refused the value with a one-line InvalidArgument."""
    try:
        return parse(value)
    except errors.CtrpyError as exc:
        one_line_error(exc)
        assert isinstance(exc, errors.InvalidArgument)
        return None


# ---------------------------------------------------------------------------------------------- references

HEX = "0123456789abcdef"
name_part = st.from_regex(r"[a-z0-9]+([._-][a-z0-9]+){0,2}", fullmatch=True).filter(lambda s: len(s) <= 30)
domains = st.sampled_from(["", "docker.io/", "localhost:5000/", "127.0.0.1:5000/", "registry.example.com/",
                           "[::1]:5000/", "Example.COM/"])
tags = st.one_of(st.just(""), st.from_regex(r":[\w][\w.-]{0,20}", fullmatch=True))
digests = st.one_of(st.just(""), st.text(HEX, min_size=64, max_size=64).map(lambda h: "@sha256:" + h),
                    st.text(HEX + "ABCDEF", min_size=60, max_size=66).map(lambda h: "@sha256:" + h))
structured_refs = st.builds(lambda d, parts, t, g: d + "/".join(parts) + t + g, domains,
                            st.lists(name_part, min_size=1, max_size=3), tags, digests)
any_refs = st.one_of(structured_refs, st.text(max_size=80))


@FAST
@given(any_refs)
def test_reference_parse_is_total_and_round_trips(text: str) -> None:
    ref = parsed_or_rejected(reference.parse, text)
    if ref is None:
        return
    assert reference.parse(str(ref)) == ref
    if ref.digest:
        reference.validate_digest(ref.digest)  # only lowercase, full-length digests get through


@SLOW
@given(any_refs)
def test_reference_through_the_cli(store: Store, text: str) -> None:
    code, _, err = store.cli("images", "inspect", "--", text)
    one_documented_line(code, err)
    assert code in (3, 4), err


# ---------------------------------------------------------------------------------------------- platforms

platform_words = st.sampled_from(["linux", "windows", "darwin", "amd64", "arm64", "arm", "x86_64", "aarch64",
                                  "v7", "v8", "386", "s390x", "ppc64le", "riscv64", "", "LINUX", "bogus", "v1"])
platform_specs = st.one_of(st.lists(platform_words, min_size=1, max_size=4).map("/".join), st.text(max_size=30))


@FAST
@given(platform_specs)
def test_platform_parse_is_total_and_round_trips(spec: str) -> None:
    p = parsed_or_rejected(platforms.parse, spec)
    if p is None:
        return
    assert platforms.parse(platforms.format_platform(p)) == p
    assert platforms.Matcher(p).match(p)


@SLOW
@given(platform_specs)
def test_platform_through_the_cli(store: Store, spec: str) -> None:
    code, _, err = store.cli("pull", "-q", "--platform", spec, "127.0.0.1:1/x")
    one_documented_line(code, err)
    assert code in (2, 3, 7), err  # 7: a valid platform gets as far as the (closed) registry port


# ---------------------------------------------------------------------------------------------- labels

label_keys = st.one_of(st.text(min_size=0, max_size=20), st.from_regex(r"[a-z.]{1,10}/[a-z-]{1,10}", fullmatch=True),
                       st.text(min_size=4000, max_size=4100, alphabet="k"))
label_sets = st.dictionaries(label_keys, st.text(max_size=40), max_size=4)


@SLOW
@given(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True), label_sets)
def test_label_sets_through_the_cli(store: Store, ns: str, labels: dict[str, str]) -> None:
    args = [f"{k}={v}" for k, v in labels.items()]
    code, _, err = store.cli("namespaces", "create", "--", f"fz{ns}", *args)
    one_documented_line(code, err)
    store.cli("namespaces", "rm", f"fz{ns}")
    assert DB(store.root).integrity_check() == []


# ---------------------------------------------------------------------------------------------- hosts.toml

toml_scalars = st.one_of(st.booleans(), st.integers(-5, 5), st.text(max_size=12),
                         st.lists(st.text(max_size=8), max_size=3),
                         st.lists(st.lists(st.text(max_size=8), max_size=3), max_size=2))
host_tables = st.dictionaries(
    st.sampled_from(["capabilities", "ca", "client", "skip_verify", "override_path", "header"]),
    st.one_of(toml_scalars, st.lists(st.sampled_from(["pull", "resolve", "push", "PULL", "fly"]), max_size=3),
              st.dictionaries(st.text(min_size=1, max_size=5), st.one_of(st.text(max_size=5), st.integers()),
                              max_size=2)),
    max_size=4)
host_urls = st.one_of(st.sampled_from(["https://127.0.0.1:5000", "http://127.0.0.1:5001/base", "mirror.test",
                                       "https://r.test/v2", "ftp://x", "http://", "https://r.test/a/../b",
                                       "https://[::1]:5000", "[", "https://r.test:70000", "u@r.test",
                                       "https://r.test/?q#f"]),
                      st.text(max_size=20))


def hosts_toml(server: Any, top: dict[str, Any], hosts: dict[str, dict[str, Any]]) -> str:
    data: dict[str, Any] = dict(top)
    if server is not None:
        data["server"] = server
    if hosts:
        data["host"] = hosts
    return to_toml(data)


@FAST
@given(st.one_of(st.none(), host_urls, st.integers()), host_tables,
       st.dictionaries(host_urls, host_tables, max_size=3), st.booleans(), st.booleans())
@example(server="[", top={}, hosts={}, plain=False, skip=False)  # urllib's "Invalid IPv6 URL" once escaped
@example(server=None, top={}, hosts={"https://r.test:99999": {}}, plain=False, skip=False)
def test_hosts_toml_is_total(tmp_path_factory: Any, server: Any, top: dict[str, Any],
                             hosts: dict[str, dict[str, Any]], plain: bool, skip: bool) -> None:
    base = tmp_path_factory.mktemp("hosts")
    (base / "example.test").mkdir()
    try:
        text = hosts_toml(server, top, hosts)
    except Exception:  # noqa: BLE001 - our tiny TOML writer cannot spell every key; not what is tested
        assume(False)
    (base / "example.test" / "hosts.toml").write_text(text)
    try:
        result = registry_hosts("example.test", RegistryOptions(hosts_dirs=[str(base)], plain_http=plain,
                                                                skip_verify=skip))
    except errors.CtrpyError as exc:
        one_line_error(exc)
        return
    assert result and not result[-1].mirror  # the server comes last
    for h in result:
        assert h.scheme in ("http", "https") and h.host and h.capabilities <= {"pull", "resolve", "push"}


@FAST
@given(st.binary(max_size=200))
def test_hosts_toml_bytes_are_total(tmp_path_factory: Any, data: bytes) -> None:
    base = tmp_path_factory.mktemp("hosts")
    (base / "example.test").mkdir()
    (base / "example.test" / "hosts.toml").write_bytes(data)
    try:
        registry_hosts("example.test", RegistryOptions(hosts_dirs=[str(base)]))
    except errors.CtrpyError as exc:
        one_line_error(exc)


# ---------------------------------------------------------------------------------------------- config files

def _mutations() -> Any:
    paths = []

    def walk(node: dict[str, Any], prefix: tuple[str, ...]) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, prefix + (key,))
            else:
                paths.append(prefix + (key,))
    walk(DEFAULTS, ())
    paths += [("runtimes", "x"), ("runtimes", "x", "type"), ("plugins", "p", "q"), ("network",), ("nope",)]
    values = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.booleans(), st.text(max_size=10),
                       st.lists(st.integers(), max_size=2), st.dictionaries(st.text(min_size=1, max_size=4),
                                                                            st.integers(), max_size=2))
    return st.dictionaries(st.sampled_from(paths), values, max_size=4)


@FAST
@given(_mutations())
def test_config_files_are_total(tmp_path_factory: Any, changes: dict[tuple[str, ...], Any]) -> None:
    data: dict[str, Any] = {}
    for path, value in changes.items():
        node = data
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
    try:
        text = to_toml(data)
    except Exception:  # noqa: BLE001 - values the tiny writer cannot spell
        assume(False)
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_text(text)
    config = parsed_or_rejected(lambda p: load_config(p, required=True), str(path))
    if config is None:
        return
    # What loads is usable: the numbers the pull path turns into floats and ints are in range.
    assert int(config.get("registry.max_concurrent_downloads")) >= 1
    assert float(config.get("registry.progress_timeout")) > 0
    assert 68 <= int(config.get("network.mtu")) <= 65535


@SLOW
@given(st.binary(max_size=300))
def test_config_bytes_through_the_cli(store: Store, data: bytes) -> None:
    store.config.write_bytes(data)
    code, _, err = store.cli("config", "dump")
    one_documented_line(code, err)
    assert code in (0, 3), err


# ---------------------------------------------------------------------------------------------- manifests

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


bad_values = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=8), st.just([]), st.just({}),
                       st.just("sha256:" + "A" * 64), st.just("sha256:abc"), st.just(-1), st.just(True))


@st.composite
def image_documents(draw: Any) -> tuple[bytes, bytes, bytes, str]:
    """(index or manifest bytes, manifest bytes, config bytes, root media type), with at most a few fields
    replaced by something wrong."""
    layers = draw(st.integers(0, 3))
    diff_ids = [_digest(os.urandom(8)) for _ in range(draw(st.sampled_from([layers, layers, layers + 1])))]
    config: dict[str, Any] = {"architecture": draw(st.sampled_from(["amd64", "arm64", 7])), "os": "linux",
                              "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {"Cmd": ["sh"]}}
    if draw(st.booleans()):
        config[draw(st.sampled_from(["rootfs", "config", "os"]))] = draw(bad_values)
    config_bytes = json.dumps(config).encode()
    layer_descs = [{"mediaType": OCI_LAYER, "digest": _digest(os.urandom(8)), "size": draw(st.integers(0, 99))}
                   for _ in range(layers)]
    manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                "config": {"mediaType": OCI_CONFIG, "digest": _digest(config_bytes),
                                           "size": len(config_bytes)}, "layers": layer_descs}
    if draw(st.booleans()):
        target = draw(st.sampled_from(["config", "layers", "mediaType", "schemaVersion"]))
        if target == "config" and draw(st.booleans()):
            manifest["config"][draw(st.sampled_from(["mediaType", "digest", "size"]))] = draw(bad_values)
        elif target == "layers" and layer_descs and draw(st.booleans()):
            layer_descs[0][draw(st.sampled_from(["mediaType", "digest", "size", "annotations"]))] = draw(bad_values)
        else:
            manifest[target] = draw(bad_values)
    manifest_bytes = json.dumps(manifest).encode()
    if not draw(st.booleans()):
        return manifest_bytes, manifest_bytes, config_bytes, OCI_MANIFEST
    entry: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": _digest(manifest_bytes),
                             "size": len(manifest_bytes),
                             "platform": {"os": "linux", "architecture": draw(st.sampled_from(["amd64", "arm64"]))}}
    if draw(st.booleans()):
        entry[draw(st.sampled_from(["platform", "size", "digest", "mediaType"]))] = draw(bad_values)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": draw(st.sampled_from([[entry], [], "x"]))}
    return json.dumps(index).encode(), manifest_bytes, config_bytes, OCI_INDEX


@SLOW
@given(image_documents())
def test_manifests_indexes_and_configs_are_total(store: Store, docs: tuple[bytes, bytes, bytes, str]) -> None:
    from ctrpy.runtime.metadata.images import Image

    root, manifest, config, media_type = docs
    client = store.client()
    for blob in {root, manifest, config}:
        client.content.write_blob(f"fuzz-{_digest(blob)}", io.BytesIO(blob), expected=_digest(blob), size=len(blob))
    name = "fuzz.test/image:latest"
    client.images.upsert(Image(name=name, target=Descriptor(media_type, _digest(root), len(root))))
    for argv in (("images", "check"), ("images", "inspect", name), ("images", "ls"),
                 ("images", "unpack", "--snapshotter", "native", name), ("images", "rm", name)):
        code, _, err = store.cli(*argv)
        one_documented_line(code, err)
    assert DB(store.root).integrity_check() == []
    code, _, err = store.cli("images", "check")
    assert code == 0, err


@FAST
@given(st.dictionaries(st.sampled_from(["mediaType", "digest", "size", "annotations", "platform", "urls"]),
                       st.one_of(bad_values, st.text(max_size=70), st.integers()), max_size=6))
def test_descriptor_from_dict_is_total(d: dict[str, Any]) -> None:
    try:
        desc = Descriptor.from_dict(d)
    except errors.CtrpyError as exc:
        one_line_error(exc)
        return
    assert desc.size >= 0 and isinstance(desc.size, int)
    reference.validate_digest(desc.digest)
    assert Descriptor.from_dict(desc.to_dict()) == desc


# ---------------------------------------------------------------------------------------------- tar headers

entry_names = st.one_of(
    st.sampled_from(["a", "a/b", "./a", "../a", "/abs", "a/../../b", ".", "", "a/", "dev/null", ".wh.a",
                     "a/.wh..wh..opq", ".wh..wh..opq", "a/.wh.b", "x" * 300, "a//b", "proc/self", "é/ü"]),
    st.text(max_size=20))
entry_types = st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                               tarfile.BLKTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE, b"Z"])
entries = st.lists(st.tuples(entry_names, entry_types, entry_names, st.integers(0, 0o7777),
                             st.integers(0, 2048), st.dictionaries(
                                 st.sampled_from(["path", "linkpath", "size", "uid", "mtime", "SCHILY.xattr.user.a",
                                                  "SCHILY.xattr.security.capability", "GNU.sparse.map", "x"]),
                                 st.text(max_size=12), max_size=2)),
                   max_size=6)


def build_tar(spec: list[tuple[str, bytes, str, int, int, dict[str, str]]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, link, mode, size, pax in spec:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = mode
            info.linkname = link
            info.pax_headers = pax
            data = b""
            if kind in (tarfile.REGTYPE, tarfile.CONTTYPE):
                info.size = size
                data = bytes(size)
            try:
                tf.addfile(info, io.BytesIO(data) if data else None)
            except (ValueError, UnicodeError, tarfile.TarError):
                continue  # a header tarfile itself cannot write
    return buf.getvalue()


@SLOW
@given(entries, st.booleans())
def test_tar_headers_are_total_and_contained(tmp_path_factory: Any, spec: list[Any], truncate: bool) -> None:
    from ctrpy.runtime import archive

    base = tmp_path_factory.mktemp("tar")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "keep").write_text("keep")
    data = build_tar(spec)
    if truncate and data:
        data = data[: len(data) // 2]
    before = sorted(os.listdir(base))
    try:
        archive.apply_layer(root, io.BytesIO(data), layer="fuzz")
    except errors.CtrpyError as exc:
        one_line_error(exc)
    assert sorted(os.listdir(base)) == before
    assert os.listdir(outside) == ["keep"] and (outside / "keep").read_text() == "keep"
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            assert os.path.realpath(path).startswith(str(root) + "/")


# ---------------------------------------------------------------------------------------------- supervisor frames

json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63), st.text(max_size=10),
                                     st.floats(allow_nan=False, allow_infinity=False)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                           max_leaves=10)
frames = st.lists(st.tuples(st.binary(min_size=1, max_size=1), st.binary(max_size=300)), max_size=8)


@FAST
@given(json_values)
def test_frame_json_round_trips(value: Any) -> None:
    kind, payload = decode_one(sup.jframe(sup.F_OK, value))
    assert kind == sup.F_OK and json.loads(payload) == value


def decode_one(data: bytes) -> tuple[bytes, bytes]:
    kind, length = sup.HEADER.unpack_from(data)
    assert len(data) == sup.HEADER.size + length
    return kind, data[sup.HEADER.size:]


@FAST
@given(frames, st.lists(st.integers(1, 64), min_size=1, max_size=10))
def test_frame_stream_parsers_split_anywhere(items: list[tuple[bytes, bytes]], cuts: list[int]) -> None:
    """The client's reader (attach.Attachment.read_frame) gets the frames back whole and in order however the
    stream is cut. (The C supervisor's own reader is driven through real sockets in test_supervisor*.py.)"""
    from ctrpy.runtime import attach

    stream = b"".join(sup.frame(k, p) for k, p in items)
    # Client side: through a real socketpair, in pieces.
    a, b = socket.socketpair()
    try:
        reader = object.__new__(attach.Attachment)
        reader.sock, reader._buf = a, b""
        pos, i = 0, 0
        got: list[tuple[bytes, bytes]] = []
        while pos < len(stream):
            step = cuts[i % len(cuts)]
            b.sendall(stream[pos:pos + step])
            pos += step
            i += 1
            while reader.has_buffered_frame():
                got.append(reader.read_frame())
        b.shutdown(socket.SHUT_WR)
        while True:
            kind, payload = reader.read_frame()
            if not kind:
                break
            got.append((kind, payload))
        assert got == items
    finally:
        a.close()
        b.close()
