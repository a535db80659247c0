"""The host-side pieces of the cgroup v2 guest tier (tests/cgroup2/): what can be checked without booting.

The tier itself (`make test-cgroup2`) boots the guest; these keep its building blocks honest in the main suite.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import subprocess
import sys
from pathlib import Path

import pytest

from cgroup2 import guest, run

FAKE_ELF = b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 64


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress, bz2.compress,
                                      lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE)],
                         ids=["gzip", "xz", "bzip2", "lzma"])
def test_extract_vmlinux_finds_the_compressed_kernel(compress: object) -> None:
    # a setup stub that contains a false start of every magic, then the payload, then trailing data
    stub = b"MZ" + b"\x00" * 100 + b"\x1f\x8b\x08 BZh \xfd7zXZ\x00 \x5d\x00\x00\x00 junk" + b"\x00" * 50
    image = stub + compress(FAKE_ELF) + b"\x00" * 33 + b"trailer"  # type: ignore[operator]
    assert guest.extract_vmlinux(image) == FAKE_ELF


def test_extract_vmlinux_refuses_an_image_without_a_kernel() -> None:
    with pytest.raises(guest.Unavailable):
        guest.extract_vmlinux(b"MZ" + gzip.compress(b"not an ELF file") + b"\x00" * 10)


def test_module_dependencies_and_load_order(tmp_path: Path) -> None:
    mods = tmp_path / "kernel"
    for name, deps in {"9p": "9pnet,netfs", "9pnet": "", "netfs": "", "9pnet_virtio": "9pnet,virtio",
                       "virtio": "virtio_ring", "virtio_ring": "", "unrelated": ""}.items():
        path = mods / ("net" if name.startswith("9pnet") else "fs") / f"{name}.ko"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x7fELF...\x00license=GPL\x00depends=" + deps.encode() + b"\x00name=" + name.encode()
                         + b"\x00")
    deps = guest.modules_dep(tmp_path)
    assert (tmp_path / "modules.dep").exists()
    assert sorted(deps["kernel/fs/9p.ko"]) == ["kernel/fs/netfs.ko", "kernel/net/9pnet.ko"]
    order = [Path(p).stem for p in guest.load_order(deps, ("9pnet_virtio", "9p", "builtin_one"))]
    assert sorted(order) == ["9p", "9pnet", "9pnet_virtio", "netfs", "virtio", "virtio_ring"]
    for mod, needs in (("9pnet_virtio", "9pnet"), ("9pnet_virtio", "virtio"), ("virtio", "virtio_ring"),
                       ("9p", "netfs")):
        assert order.index(needs) < order.index(mod)


def test_initramfs_archive_is_a_valid_newc_cpio(tmp_path: Path) -> None:
    archive = guest.cpio_newc([("bin", 0o40755, b""), ("bin/hello", 0o100755, b"#!/bin/sh\necho hi\n"),
                               ("sh", 0o120777, b"bin/hello")])
    (tmp_path / "a.cpio").write_bytes(archive)
    out = subprocess.run(["busybox", "cpio", "-i", "-d"], stdin=(tmp_path / "a.cpio").open("rb"),
                         cwd=tmp_path, capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "bin" / "hello").read_text() == "#!/bin/sh\necho hi\n"
    assert (tmp_path / "sh").is_symlink() and str((tmp_path / "sh").readlink()) == "bin/hello"


def test_summary_counts_the_guest_report() -> None:
    console = "[    1.0] boot noise\nPASS a\nFAIL b: why\n  PASS c\nPASSIVE noise\nctrpy-guest: exit 1\n"
    assert run.summary(console) == (2, 1, ["b: why"])


def test_checks_refuse_to_run_outside_the_guest(tmp_path: Path) -> None:
    # The guard comes first: on this (hybrid) host the script must stop before touching any cgroup.
    out = subprocess.run(["sh", str(Path(guest.__file__).with_name("checks.sh"))], capture_output=True, text=True,
                         cwd=tmp_path, timeout=30)
    assert out.returncode == 2
    assert out.stdout.startswith("FAIL guard: not in the ctrpy v2 guest")


def _fake_qemu(tmp_path: Path, script: str) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    qemu = bindir / "qemu-system-x86_64"
    qemu.write_text("#!/bin/sh\n" + script)
    qemu.chmod(0o755)
    return bindir


def test_boot_reports_the_guest_exit_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(_fake_qemu(tmp_path, "echo noise; echo 'ctrpy-guest: up'; echo PASS x; "
                                                         "echo 'ctrpy-guest: exit 3'\n")))
    seen: list[str] = []
    b = guest.boot(tmp_path, tmp_path, tmp_path, tmp_path, timeout=30, on_line=seen.append)
    assert (b.exit_status, b.timed_out) == (3, False)
    assert seen == ["noise", "ctrpy-guest: up", "PASS x", "ctrpy-guest: exit 3"]


def test_a_silent_boot_is_cut_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(_fake_qemu(tmp_path, "exec /bin/sleep 60\n")))
    b = guest.boot(tmp_path, tmp_path, tmp_path, tmp_path, timeout=60, up_timeout=0.5)
    assert b.timed_out and b.exit_status is None
    assert b.seconds < 10


def test_tier_skips_without_qemu(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(Path(run.__file__))], env={"PATH": str(tmp_path)},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cgroup2 tier SKIPPED: qemu-system-x86_64 is not installed " \
                                 "(apt-get install qemu-system-x86)"
