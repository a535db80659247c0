"""A throwaway pure cgroup v2 guest: qemu (TCG) + a Debian 6.1 kernel + an initramfs, sharing the host's /usr.

The host is hybrid (v1 controllers, a cgroup2 mount holding only hugetlb), so ctrpy's v2 paths can only run
for real in a guest. Measured on these machines (see MACHINE.md in the shared folder beside the project): KVM runs no ordinary guest,
qemu's TCG boots the *uncompressed* vmlinux to /init in 3-5 s (the bzImage takes 9-11 s), and a long kernel
command line panics, so the command to run comes in over a read-only 9p share, not the command line.

Nothing here touches the host's /boot or module tree: the kernel package is downloaded with
`apt-get download` into a cache dir and unpacked there with `dpkg-deb -x`.
"""

from __future__ import annotations

import bz2
import lzma
import os
import re
import shutil
import stat
import subprocess
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Modules the guest loads, in the order insmod needs (dependencies are added from modules.dep).
# crc32c_generic is nobody's dependency in modinfo (libcrc32c asks the crypto API for "crc32c" at run time),
# so nf_tables fails to load without it being named here.
MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay", "veth", "bridge", "crc32c_generic", "nf_tables",
           "brd")
# brd gives the io checks a small block device (/dev/ram0, 1:0) to put io.max rules on.
MODULE_PARAMS = {"brd": "rd_nr=1 rd_size=1024"}

# Files of the host's /etc the guest gets a copy of (its /etc is a tmpfs directory, not the host's).
ETC_FILES = ("passwd", "group", "hosts", "nsswitch.conf", "ld.so.cache", "ld.so.conf")


class Unavailable(Exception):
    """qemu, the kernel package or something else the guest needs cannot be had here."""


# -- the kernel ------------------------------------------------------------------------------------------

def kernel_package() -> str:
    """The Debian 6.1 kernel package to boot: what linux-image-amd64 depends on (the standard flavour;
    the cloud flavour has no 9p)."""
    try:
        out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True,
                             check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise Unavailable(f"apt-cache cannot tell the kernel package: {exc}") from None
    names = re.findall(r"Depends: (linux-image-6\.1\.0-\d+-amd64)\b", out)
    if not names:
        raise Unavailable("apt knows no linux-image-6.1.0-*-amd64 package (run apt-get update)")
    return names[0]


def fetch_kernel(cache: Path) -> Path:
    """Download and unpack the kernel package into `cache` once; returns the unpacked tree."""
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob("linux-image-6.1.0-*-amd64_*.deb"))
    if not debs:
        try:
            name = kernel_package()
        except Unavailable:
            # a fresh machine may never have fetched the package lists
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
            name = kernel_package()
        proc = subprocess.run(["apt-get", "download", "-q", name], cwd=cache, capture_output=True, text=True,
                              timeout=600)
        debs = sorted(cache.glob("linux-image-6.1.0-*-amd64_*.deb"))
        if not debs:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise Unavailable(f"apt-get download {name} failed: {last}")
    deb = debs[-1]
    tree = cache / deb.name.removesuffix(".deb")
    if not (tree / ".unpacked").exists():
        shutil.rmtree(tree, ignore_errors=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True, timeout=300)
        (tree / ".unpacked").touch()
    return tree


# Compression formats a bzImage payload may use, as scripts/extract-vmlinux tries them: the magic that starts
# the stream, and how to decompress from there (trailing data after the stream is ignored).
def _gunzip(data: bytes) -> bytes:
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)


def _unxz(data: bytes) -> bytes:
    return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(data)


def _unlzma(data: bytes) -> bytes:
    return lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(data)


def _bunzip2(data: bytes) -> bytes:
    return bz2.BZ2Decompressor().decompress(data)


def _unzstd(data: bytes) -> bytes:
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        raise Unavailable("the kernel is zstd-compressed and the zstandard module is not installed") from None
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


COMPRESSIONS: tuple[tuple[str, bytes, Callable[[bytes], bytes]], ...] = (
    ("gzip", b"\x1f\x8b\x08", _gunzip),
    ("xz", b"\xfd7zXZ\x00", _unxz),
    ("bzip2", b"BZh", _bunzip2),
    ("lzma", b"\x5d\x00\x00", _unlzma),
    ("zstd", b"\x28\xb5\x2f\xfd", _unzstd),
)


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The uncompressed ELF kernel inside a bzImage (the logic of the kernel's scripts/extract-vmlinux):
    try every offset where a known compression magic occurs until one decompresses to an ELF file."""
    if bzimage.startswith(b"\x7fELF"):
        return bzimage
    for _name, magic, decompress in COMPRESSIONS:
        start = bzimage.find(magic)
        while start >= 0:
            try:
                out = decompress(bzimage[start:])
            except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error):
                out = b""
            if out.startswith(b"\x7fELF"):
                return out
            start = bzimage.find(magic, start + 1)
    raise Unavailable("no compressed ELF kernel found in the bzImage")


def vmlinux(tree: Path, cache: Path) -> Path:
    """The uncompressed kernel of an unpacked kernel package (extracted once, kept in the cache)."""
    images = sorted((tree / "boot").glob("vmlinuz-*"))
    if not images:
        raise Unavailable(f"{tree}: no boot/vmlinuz-*")
    out = cache / (images[0].name.replace("vmlinuz", "vmlinux"))
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(extract_vmlinux(images[0].read_bytes()))
        os.replace(tmp, out)
    return out


# -- modules ---------------------------------------------------------------------------------------------

def module_depends(ko: bytes) -> list[str]:
    """The `depends=` entry of a module's .modinfo (what depmod turns into modules.dep)."""
    m = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", ko)
    return [d for d in m.group(1).decode().split(",") if d] if m else []


def modules_dep(moddir: Path) -> dict[str, list[str]]:
    """modules.dep of a module tree: {relative path: [relative paths it needs]}, written next to the modules
    (the package ships none: Debian's postinst runs depmod, and this host has no kmod)."""
    dep_file = moddir / "modules.dep"
    if not dep_file.exists():
        paths = {p.name.removesuffix(".ko").replace("-", "_"): p for p in moddir.rglob("*.ko")}
        lines = []
        for name, path in sorted(paths.items()):
            deps = [paths[d.replace("-", "_")] for d in module_depends(path.read_bytes())
                    if d.replace("-", "_") in paths]
            lines.append(f"{path.relative_to(moddir)}: " + " ".join(str(d.relative_to(moddir)) for d in deps))
        tmp = dep_file.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, dep_file)
    deps: dict[str, list[str]] = {}
    for line in dep_file.read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    return deps


def load_order(deps: dict[str, list[str]], wanted: tuple[str, ...]) -> list[str]:
    """The modules to insmod, each after its dependencies (relative paths)."""
    by_name = {Path(p).name.removesuffix(".ko").replace("-", "_"): p for p in deps}
    order: list[str] = []

    def visit(path: str, stack: tuple[str, ...]) -> None:
        if path in order or path in stack:
            return
        for d in deps.get(path, []):
            visit(d, stack + (path,))
        order.append(path)

    for name in wanted:
        path = by_name.get(name.replace("-", "_"))
        if path is None:
            continue  # built into this kernel
        visit(path, ())
    return order


# -- initramfs -------------------------------------------------------------------------------------------

def cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """An uncompressed newc cpio archive of (name, mode, data) entries (data is the target for symlinks)."""
    out = bytearray()
    ino = 1
    for name, mode, data in entries + [("TRAILER!!!", 0, b"")]:
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0)
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\x00"
        out += b"\x00" * (-len(out) % 4)
        out += data
        out += b"\x00" * (-len(out) % 4)
        ino += 1
    return bytes(out)


INIT = r"""#!/.bb/sh
# ctrpy's v2 guest: assemble a tmpfs root from read-only 9p shares, run /job/run.sh, report, power off.
export PATH=/.bb
if [ ! -e /.tmpfs-root ]; then
    # pivot_root (every container runtime's first step) refuses the initramfs's rootfs: move to a tmpfs.
    mount -t tmpfs -o mode=755 root /mnt
    for e in /* /.bb /.tmpfs-root; do [ "$e" = /mnt ] || cp -a "$e" /mnt/ 2>/dev/null; done
    touch /mnt/.tmpfs-root
    exec switch_root /mnt /init
fi
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs shm /dev/shm
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
while read -r m params; do insmod /modules/$m $params || echo "ctrpy-guest: insmod $m failed"; done < /modules.order
o=trans=virtio,version=9p2000.L,msize=512000,ro
mount -t 9p -o $o,cache=loose usr /usr || { echo "ctrpy-guest: cannot mount /usr"; poweroff -f; }
mkdir -p "$(cat /project.path)"
mount -t 9p -o $o,cache=loose project "$(cat /project.path)"
mount -t 9p -o $o job /job
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
echo "+cpu +memory +pids +io +cpuset" > /sys/fs/cgroup/cgroup.subtree_control
ip link set lo up 2>/dev/null
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/.bb HOME=/root TMPDIR=/tmp LANG=C.UTF-8
mkdir -p /root
echo "ctrpy-guest: up"
cd /tmp
/usr/bin/sh /job/run.sh
echo "ctrpy-guest: exit $?"
sync
poweroff -f
"""


def build_initramfs(tree: Path, out: Path, project: Path) -> Path:
    """busybox-static, the modules and their dependencies, a few /etc files and the init script."""
    moddirs = sorted((tree / "lib" / "modules").iterdir())
    moddir = moddirs[-1]
    order = load_order(modules_dep(moddir), MODULES)
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise Unavailable("busybox-static is not installed (/bin/busybox)")
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    d, x, lnk = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o755, stat.S_IFLNK | 0o777
    entries: list[tuple[str, int, bytes]] = []
    for name in ("proc", "sys", "dev", "tmp", "run", "usr", "job", "etc", "root", "modules", ".bb", "mnt",
                 "var", "var/lib"):
        entries.append((name, d, b""))
    for name in ("bin", "sbin", "lib", "lib64"):
        entries.append((name, lnk, f"usr/{name}".encode()))
    entries.append(("var/tmp", lnk, b"/tmp"))
    entries.append((".bb/busybox", x, busybox.read_bytes()))
    entries += [(f".bb/{a}", lnk, b"busybox") for a in applets if a != "busybox"]
    for name in ETC_FILES:
        src = Path("/etc") / name
        if src.is_file():
            entries.append((f"etc/{name}", stat.S_IFREG | 0o644, src.read_bytes()))
    names = []
    for rel in order:
        base = Path(rel).name
        names.append(f"{base} {MODULE_PARAMS.get(base.removesuffix('.ko'), '')}".strip())
        entries.append((f"modules/{base}", stat.S_IFREG | 0o644, (moddir / rel).read_bytes()))
    entries.append(("modules.order", stat.S_IFREG | 0o644, ("\n".join(names) + "\n").encode()))
    entries.append(("project.path", stat.S_IFREG | 0o644, str(project).encode()))
    entries.append(("init", x, INIT.encode()))
    entries.append(("ctrpy-guest", stat.S_IFREG | 0o644, b"the ctrpy cgroup v2 test guest\n"))
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(cpio_newc(entries))
    os.replace(tmp, out)
    return out


# -- running it ------------------------------------------------------------------------------------------

def qemu_binary() -> str:
    path = shutil.which("qemu-system-x86_64")
    if path is None:
        raise Unavailable("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    return path


@dataclass
class Boot:
    output: str
    exit_status: int | None  # the job's exit status, None if the guest never reported one
    seconds: float
    timed_out: bool


UP = "ctrpy-guest: up"


def boot(kernel: Path, initrd: Path, project: Path, job: Path, *, timeout: float, up_timeout: float = 120.0,
         memory_mb: int = 1536, on_line: Callable[[str], None] | None = None) -> Boot:
    """Boot the guest once, running job/run.sh; returns its console output and the job's exit status.

    A guest that has not printed UP after `up_timeout` seconds (its whole boot takes 3-5 s) is killed: under
    heavy load about one boot in 25 prints nothing at all, and the caller retries rather than wait `timeout`.
    """
    shares = [("usr", "/usr"), ("project", str(project)), ("job", str(job))]
    cmd = [qemu_binary(), "-nodefaults", "-no-user-config", "-machine", "pc", "-accel", "tcg,thread=single",
           "-cpu", "max", "-smp", "2", "-m", str(memory_mb), "-display", "none", "-serial", "stdio",
           "-monitor", "none", "-no-reboot", "-kernel", str(kernel), "-initrd", str(initrd),
           "-append", "console=ttyS0 panic=-1 quiet loglevel=3"]
    for i, (tag, path) in enumerate(shares):
        cmd += ["-fsdev", f"local,id=fs{i},path={path},security_model=none,readonly=on",
                "-device", f"virtio-9p-pci,fsdev=fs{i},mount_tag={tag}"]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    up = threading.Event()
    assert proc.stdout is not None

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            lines.append(line)
            if line.strip() == UP:
                up.set()
            if on_line is not None:
                on_line(line)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    timed_out = False
    try:
        if not up.wait(min(up_timeout, timeout)) and proc.poll() is None:
            raise subprocess.TimeoutExpired(cmd, up_timeout)
        proc.wait(timeout=max(0.0, timeout - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        timed_out = True
        proc.kill()
        proc.wait()
    t.join(timeout=5)
    status = None
    for line in lines:
        m = re.match(r"ctrpy-guest: exit (\d+)", line.strip())
        if m:
            status = int(m.group(1))
    return Boot("\n".join(lines), status, time.monotonic() - start, timed_out)
