"""The content store, through `ctrpy content ...` and through the ContentStore API other modules use."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ctrpy.runtime import errors

CTRPY = str(Path(sys.executable).parent / "ctrpy")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_file(dirs: Any, digest: str) -> Path:
    return dirs.root / "content" / "blobs" / "sha256" / digest.split(":", 1)[1]


def run_bytes(dirs: Any, *args: str, stdin: bytes | None = None, namespace: str | None = None) -> Any:
    """Run the console script with binary stdin/stdout (the `ctrpy` fixture is text-only)."""
    argv = [CTRPY, "--root", str(dirs.root), "--state", str(dirs.state)]
    if namespace:
        argv += ["-n", namespace]
    r = subprocess.run(argv + list(args), input=stdin, capture_output=True, env=_env(dirs), timeout=120)
    r.stdout_bytes = r.stdout
    r.stdout = r.stdout.decode(errors="replace")
    r.stderr = r.stderr.decode(errors="replace")
    return r


def ingest(ctrpy: Any, data: bytes, ref: str = "ref1", *, expected: bool = True, namespace: str | None = None,
           extra: tuple[str, ...] = ()) -> Any:
    args = ["content", "ingest", ref, *extra]
    if expected:
        args += ["--expected-digest", digest_of(data), "--expected-size", str(len(data))]
    return run_bytes(ctrpy.dirs, *args, stdin=data, namespace=namespace)


@pytest.fixture
def ctrpy(ctrpy: Any, dirs: Any) -> Any:
    ctrpy.dirs = dirs
    return ctrpy


def test_ingest_ls_get_roundtrip(ctrpy: Any, dirs: Any) -> None:
    data = os.urandom(300_000)
    r = ingest(ctrpy, data)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == digest_of(data)
    path = blob_file(dirs, digest_of(data))
    assert path.read_bytes() == data
    assert path.stat().st_mode & 0o777 == 0o444

    r = ctrpy("content", "ls")
    assert r.returncode == 0
    header, row = r.stdout.splitlines()
    assert header.split() == ["DIGEST", "SIZE", "AGE", "LABELS"]
    assert row.split()[0] == digest_of(data)
    assert "293.0 KiB" in row and "seconds ago" in row

    assert ctrpy("content", "ls", "-q").stdout.split() == [digest_of(data)]
    listed = json.loads(ctrpy("content", "ls", "--format", "json").stdout)
    assert [(i["digest"], i["size"], i["labels"]) for i in listed] == [(digest_of(data), len(data), {})]

    got = run_bytes(dirs, "content", "get", digest_of(data))
    assert got.returncode == 0 and got.stdout_bytes == data
    # Nothing left in the ingest area.
    assert ctrpy("content", "active", "-q").stdout == ""
    assert list((dirs.root / "content" / "ingest").iterdir()) == []


def _env(dirs: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CTRPY_NAMESPACE", None)
    env["CTRPY_CONFIG"] = str(dirs.root.parent / "config.toml")
    return env


def test_ingest_without_expectations_commits_computed_digest(ctrpy: Any) -> None:
    r = ingest(ctrpy, b"free form\n", expected=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == digest_of(b"free form\n")


def test_commit_existing_blob_is_not_rewritten(ctrpy: Any, dirs: Any) -> None:
    data = b"same bytes" * 1000
    assert ingest(ctrpy, data, "a").returncode == 0
    before = blob_file(dirs, digest_of(data)).stat()
    time.sleep(0.02)
    r = ingest(ctrpy, data, "b")
    assert r.returncode == 0, r.stderr
    after = blob_file(dirs, digest_of(data)).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert ctrpy("content", "ls", "-q").stdout.split() == [digest_of(data)]


def test_wrong_expected_digest_commits_nothing(ctrpy: Any, dirs: Any) -> None:
    data = b"the real data"
    wrong = digest_of(b"something else")
    r = run_bytes(dirs, "content", "ingest", "ref1", "--expected-digest", wrong, stdin=data)
    assert r.returncode == 6
    assert r.stderr.startswith("ctrpy: ") and "unexpected commit digest" in r.stderr and wrong in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert ctrpy("content", "ls", "-q").stdout == ""
    assert not blob_file(dirs, digest_of(data)).exists()
    assert not blob_file(dirs, wrong).exists()
    # The bad ingest is discarded, not left to be resumed.
    assert ctrpy("content", "active", "-q").stdout == ""


def test_wrong_expected_size_commits_nothing(ctrpy: Any, dirs: Any) -> None:
    data = b"12345"
    r = run_bytes(dirs, "content", "ingest", "ref1", "--expected-digest", digest_of(data), "--expected-size", "6",
                  stdin=data)
    assert r.returncode == 6
    assert "unexpected commit size 5, expected 6" in r.stderr
    assert ctrpy("content", "ls", "-q").stdout == ""
    assert not blob_file(dirs, digest_of(data)).exists()


@pytest.mark.parametrize("digest", ["sha256:xyz", "md5:" + "0" * 32, "sha256:" + "A" * 64, ""])
def test_invalid_digest_is_invalid_argument(ctrpy: Any, digest: str) -> None:
    r = ctrpy("content", "get", digest)
    assert r.returncode == 3
    assert "invalid digest" in r.stderr


def test_get_and_rm_unknown_digest(ctrpy: Any) -> None:
    missing = digest_of(b"never stored")
    r = ctrpy("content", "get", missing)
    assert r.returncode == 4 and "not found" in r.stderr
    r = ctrpy("content", "rm", missing)
    assert r.returncode == 4 and "not found" in r.stderr


def test_rm_several_reports_each_and_fails_on_missing(ctrpy: Any, dirs: Any) -> None:
    a, b = b"aaa", b"bbb"
    ingest(ctrpy, a, "a")
    ingest(ctrpy, b, "b")
    missing = digest_of(b"zzz")
    r = ctrpy("content", "rm", digest_of(a), missing, digest_of(b))
    assert r.returncode == 4
    assert r.stdout.split() == [digest_of(a), digest_of(b)]
    assert missing in r.stderr
    assert ctrpy("content", "list", "-q").stdout == ""
    assert not blob_file(dirs, digest_of(a)).exists()


def test_blobs_are_shared_but_visible_per_namespace(ctrpy: Any, dirs: Any) -> None:
    data = b"shared layer" * 100
    d = digest_of(data)
    assert ingest(ctrpy, data, namespace="one").returncode == 0
    assert ctrpy("content", "ls", "-q", namespace="two").stdout == ""
    assert ctrpy("content", "get", d, namespace="two").returncode == 4
    inode = blob_file(dirs, d).stat().st_ino

    assert ingest(ctrpy, data, namespace="two").returncode == 0
    assert blob_file(dirs, d).stat().st_ino == inode  # one file on disk

    assert ctrpy("content", "rm", d, namespace="one").returncode == 0
    assert blob_file(dirs, d).exists()
    assert ctrpy("content", "get", d, namespace="two").stdout == data.decode()
    assert ctrpy("content", "rm", d, namespace="two").returncode == 0
    assert not blob_file(dirs, d).exists()


def test_label_set_remove_and_filter(ctrpy: Any) -> None:
    data = b"labelled"
    d = digest_of(data)
    other = b"other"
    ingest(ctrpy, data, "a")
    ingest(ctrpy, other, "b")
    r = ctrpy("content", "label", d, "containerd.io/gc.root=yes", "a.b=c")
    assert r.returncode == 0, r.stderr
    info = json.loads(ctrpy("content", "ls", "--format", "json").stdout)
    labels = {i["digest"]: i["labels"] for i in info}
    assert labels[d] == {"containerd.io/gc.root": "yes", "a.b": "c"}
    assert ctrpy("content", "ls", "-q", 'labels."containerd.io/gc.root"==yes').stdout.split() == [d]
    assert ctrpy("content", "ls", "-q", "labels.a.b").stdout.split() == [d]
    assert set(ctrpy("content", "ls", "-q", "labels.a.b!=c").stdout.split()) == {digest_of(other)}
    assert ctrpy("content", "ls", "-q", f"digest~=^{d[:15]}").stdout.split() == [d]
    assert ctrpy("content", "ls", "-q", "size==5").stdout.split() == [digest_of(other)]
    bad = ctrpy("content", "ls", "labels.x=~y")
    assert bad.returncode == 3 and "invalid filter" in bad.stderr

    assert ctrpy("content", "label", d, "a.b=").returncode == 0
    info = json.loads(ctrpy("content", "ls", "--format", "json", "labels.a.b").stdout)
    assert info == []


def test_label_over_4096_bytes_is_rejected_and_nothing_changes(ctrpy: Any) -> None:
    data = b"x"
    d = digest_of(data)
    ingest(ctrpy, data)
    ctrpy("content", "label", d, "keep=1")
    r = ctrpy("content", "label", d, "k=" + "v" * 4096, "other=1")
    assert r.returncode == 3
    assert "4096" in r.stderr
    labels = json.loads(ctrpy("content", "ls", "--format", "json").stdout)[0]["labels"]
    assert labels == {"keep": "1"}
    # key + value exactly 4096 bytes is allowed.
    assert ctrpy("content", "label", d, "kk=" + "v" * 4094).returncode == 0
    # and an ingest with a too-large label commits nothing.
    other = b"y"
    r = run_bytes(ctrpy.dirs, "content", "ingest", "r", "--label", "k=" + "v" * 5000, stdin=other)
    assert r.returncode == 3
    assert digest_of(other) not in ctrpy("content", "ls", "-q").stdout


def _active(dirs: Any) -> list[dict[str, Any]]:
    r = subprocess.run([CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "content", "active",
                        "--format", "json"], capture_output=True, text=True, env=_env(dirs))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_ingest_killed_half_way_resumes_and_commits(ctrpy: Any, dirs: Any) -> None:
    data = os.urandom(4 << 20)
    d = digest_of(data)
    half = len(data) // 2
    proc = subprocess.Popen(
        [CTRPY, "--root", str(dirs.root), "--state", str(dirs.state), "content", "ingest", "big",
         "--expected-digest", d, "--expected-size", str(len(data))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(dirs),
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(data[:half])
        proc.stdin.flush()
        # Feed slowly and wait until the writer has put the first half on disk.
        deadline = time.monotonic() + 30
        offset = 0
        while time.monotonic() < deadline:
            active = _active(dirs)
            offset = active[0]["offset"] if active else 0
            if offset >= half - 65536:
                break
            time.sleep(0.05)
        assert offset >= half - 65536, f"ingest never got half way (offset {offset})"
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    # No partial blob is visible anywhere.
    assert ctrpy("content", "ls", "-q").stdout == ""
    assert not blob_file(dirs, d).exists()
    assert ctrpy("content", "get", d).returncode == 4
    active = _active(dirs)
    assert len(active) == 1
    st = active[0]
    assert st["ref"] == "big" and st["expected"] == d and st["total"] == len(data)
    assert 0 < st["offset"] <= half
    r = ctrpy("content", "active")
    assert "big" in r.stdout and str(st["offset"]) in r.stdout

    # The same ref resumes from its offset (the CLI skips the bytes already stored) and commits.
    r = ingest(ctrpy, data, "big")
    assert r.returncode == 0, r.stderr
    assert blob_file(dirs, d).read_bytes() == data
    assert _active(dirs) == []


def test_corrupted_resumed_ingest_fails_and_is_discarded(ctrpy: Any, dirs: Any, client: Any) -> None:
    data = os.urandom(100_000)
    with client.content.writer("r", expected=digest_of(data), total=len(data)) as w:
        w.write(b"\0" * 50_000)  # wrong first half, then leave: kept for resume
    r = ingest(ctrpy, data, "r")
    assert r.returncode == 6 and "unexpected commit digest" in r.stderr
    assert ctrpy("content", "ls", "-q").stdout == "" and _active(dirs) == []


# --- API used by pull/import/unpack ----------------------------------------------------------------------


def test_writer_resume_truncate_and_status(client: Any) -> None:
    store = client.content
    data = b"0123456789" * 1000
    with store.writer("layer", expected=digest_of(data), total=len(data)) as w:
        assert (w.offset, w.committed_already) == (0, False)
        w.write(data[:3000])
    st = store.status("layer")
    assert (st.offset, st.total, st.expected) == (3000, len(data), digest_of(data))
    assert st.started_at and st.updated_at >= st.started_at
    with store.writer("layer", expected=digest_of(data)) as w:
        assert w.offset == 3000
        w.truncate(0)  # the server ignored Range: start over
        assert w.offset == 0
        w.write(data)
        info = w.commit()
    assert (info.digest, info.size) == (digest_of(data), len(data))
    assert store.read_bytes(info.digest) == data
    assert store.statuses() == []
    with pytest.raises(errors.NotFound):
        store.status("layer")


def test_writer_is_exclusive_per_ref(client: Any) -> None:
    store = client.content
    with store.writer("ref") as w:
        w.write(b"abc")
        with pytest.raises(errors.Unavailable, match="locked"):
            store.writer("ref", wait=False)
        with pytest.raises(errors.Unavailable):
            store.abort("ref")
        # A writer on another ref is independent.
        with store.writer("other", wait=False) as w2:
            w2.write(b"x")
    store.abort("ref")
    store.abort("other")
    assert store.statuses() == []
    with pytest.raises(errors.NotFound):
        store.abort("ref")


def test_second_writer_waits_then_sees_committed_blob(dirs: Any, client: Any) -> None:
    data = os.urandom(1000)
    d = digest_of(data)
    code = (
        "import sys, time\n"
        "from ctrpy.runtime.client import Client\n"
        f"c = Client({str(dirs.root)!r}, {str(dirs.state)!r})\n"
        f"w = c.content.writer('shared', expected={d!r}, total={len(data)})\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
        f"w.write(bytes.fromhex({data.hex()!r})); w.commit()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        import threading

        result: dict[str, Any] = {}

        def second() -> None:
            with client.content.writer("shared", expected=d, total=len(data)) as w:
                result["committed_already"] = w.committed_already
                result["info"] = w.commit()

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        assert t.is_alive(), "second writer did not wait for the lock"
        assert holder.stdin is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        t.join(30)
        assert not t.is_alive()
        assert holder.wait(30) == 0
    finally:
        holder.kill()
        holder.wait()
    assert result["committed_already"] is True
    assert result["info"].digest == d
    assert client.content.statuses() == []


def test_committed_already_across_namespaces(client: Any) -> None:
    data = b"base layer"
    d = digest_of(data)
    with client.content.writer("l", expected=d) as w:
        w.write(data)
        w.commit(labels={"a": "1"})
    other = client.with_namespace("other").content
    assert not other.exists(d)
    with other.writer("l", expected=d, total=len(data)) as w:
        assert w.committed_already
        with w.open_committed() as f:  # readable before the commit makes it visible here (an import needs it)
            assert f.read() == data
        assert not other.exists(d)
        info = w.commit(labels={"b": "2"})
    with other.writer("fresh", expected=digest_of(b"new")) as w, pytest.raises(errors.FailedPrecondition):
        w.open_committed()  # nothing committed to read
    assert info.labels == {"b": "2"} and other.exists(d)
    assert client.content.info(d).labels == {"a": "1"}
    # add_existing: the cheap path when the caller already knows the blob is there.
    third = client.with_namespace("third").content
    assert third.add_existing(d, {"c": "3"}).labels == {"c": "3"}
    with pytest.raises(errors.NotFound):
        third.add_existing(digest_of(b"absent"))


def test_update_labels_replace_and_blob_path(client: Any) -> None:
    with client.content.writer("x") as w:
        w.write(b"blob")
        info = w.commit(labels={"a": "1", "b": "2"})
    store = client.content
    assert store.update_labels(info.digest, {"a": "", "c": "3"}).labels == {"b": "2", "c": "3"}
    assert store.update_labels(info.digest, {"z": "9"}, replace=True).labels == {"z": "9"}
    assert store.blob_path(info.digest).read_bytes() == b"blob"
    with store.open(info.digest) as f:
        assert f.read() == b"blob"
    with pytest.raises(errors.NotFound):
        client.with_namespace("elsewhere").content.blob_path(info.digest)


def test_descriptor_json_round_trip() -> None:
    from ctrpy.runtime.content import Descriptor

    d = Descriptor("application/vnd.oci.image.manifest.v1+json", digest_of(b"m"), 7,
                   platform={"architecture": "amd64", "os": "linux"})
    assert d.to_dict() == {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest_of(b"m"),
                           "size": 7, "platform": {"architecture": "amd64", "os": "linux"}}
    assert Descriptor.from_dict(d.to_dict()) == d
    with pytest.raises(errors.InvalidArgument):
        Descriptor.from_dict({"mediaType": "x"})


def test_abort_cli(ctrpy: Any, dirs: Any, client: Any) -> None:
    with client.content.writer("partial", total=100) as w:
        w.write(b"x" * 40)
    assert ctrpy("content", "active", "-q").stdout.split() == ["partial"]
    r = ctrpy("content", "abort", "partial")
    assert r.returncode == 0 and r.stdout.strip() == "partial"
    assert ctrpy("content", "active", "-q").stdout == ""
    assert list((dirs.root / "content" / "ingest").iterdir()) == []
    r = ctrpy("content", "abort", "partial")
    assert r.returncode == 4 and "ingest 'partial' not found" in r.stderr


def test_write_blob_resumes_from_a_seekable_reader(client: Any) -> None:
    import io

    data = os.urandom(200_000)
    with client.content.writer("w", expected=digest_of(data), total=len(data)) as w:
        w.write(data[:70_000])
    reader = io.BytesIO(data)
    info = client.content.write_blob("w", reader, expected=digest_of(data), size=len(data), labels={"k": "v"})
    assert (info.digest, info.size, info.labels) == (digest_of(data), len(data), {"k": "v"})
    assert client.content.read_bytes(info.digest) == data
    # A ref reused for a different blob (other size) starts over instead of mixing bytes.
    other = os.urandom(1000)
    with client.content.writer("w2", total=5000) as w:
        w.write(b"z" * 300)
    info = client.content.write_blob("w2", io.BytesIO(other), expected=digest_of(other), size=len(other))
    assert client.content.read_bytes(info.digest) == other
