"""The cgroup v2 test tier, host side: `make test-cgroup2` (or `.venv/bin/python tests/cgroup2/run.py`).

Boots a pure cgroup v2 guest (tests/cgroup2/guest.py) that runs tests/cgroup2/checks.sh through the real
`ctrpy`, prints the guest's PASS/FAIL lines and a pytest-like summary ("N passed, N failed in S s").
Exit status: 0 all passed (or skipped: no qemu / no kernel package, said in one line), 1 a check failed,
2 the guest never reported (after one retry of a boot that printed nothing).

Options: --only "ctrpy runc" limits the runtimes; --timeout S per boot; -v shows the whole console.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent.parent
sys.path.insert(0, str(HERE))

import guest  # noqa: E402

CACHE = PROJECT / "build" / "guest"
# The pytest files checks.sh runs in the guest.
GUEST_PYTEST_FILES = ("tests/test_cgroups.py", "tests/test_builtin_runtime.py", "tests/test_tasks.py")


def summary(output: str) -> tuple[int, int, list[str]]:
    """(passed, failed, failure lines) from the guest's console output."""
    passed = failed = 0
    failures = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("PASS "):
            passed += 1
        elif line.startswith("FAIL "):
            failed += 1
            failures.append(line[5:])
    return passed, failed, failures


def prepare() -> tuple[Path, Path]:
    """The kernel and the initramfs (cached in build/guest; the initramfs is rebuilt every run: it is cheap
    and carries this project's path)."""
    guest.qemu_binary()
    tree = guest.fetch_kernel(CACHE)
    kernel = guest.vmlinux(tree, CACHE)
    initrd = guest.build_initramfs(tree, CACHE / "initrd.cpio", PROJECT)
    return kernel, initrd


def compile_bytecode() -> None:
    """Byte-compile the project, its venv and the guest's pytest files here, where it is 30-100x cheaper:
    the guest sees them read-only and would otherwise compile every module in every process."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    py = str(PROJECT / ".venv" / "bin" / "python")
    site = sorted((PROJECT / ".venv" / "lib").glob("python3*/site-packages"))
    subprocess.run([py, "-m", "compileall", "-q", "-j", "0", str(PROJECT / "ctrpy"), str(PROJECT / "tests"),
                    *map(str, site)], env=env, capture_output=True, timeout=600)
    # pytest's assertion rewriting keeps its own cache files: a collection run writes them
    subprocess.run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", *GUEST_PYTEST_FILES],
                   cwd=PROJECT, env=env, capture_output=True, timeout=600)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="runtimes to check (default: ctrpy runc crun)")
    ap.add_argument("--timeout", type=float, default=840.0, help="seconds per boot")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the whole guest console")
    args = ap.parse_args(argv)
    start = time.monotonic()
    if os.geteuid() != 0:
        print("cgroup2 tier SKIPPED: needs root (qemu's 9p shares of /usr and the project)")
        return 0
    try:
        kernel, initrd = prepare()
    except guest.Unavailable as exc:
        print(f"cgroup2 tier SKIPPED: {exc}")
        return 0
    if not (PROJECT / ".venv" / "bin" / "ctrpy").exists():
        print("cgroup2 tier: the project's venv is not built (make venv)")
        return 2
    compile_bytecode()
    print(f"cgroup2 tier: booting {kernel.name} under qemu (TCG), pure cgroup v2; prepared in "
          f"{time.monotonic() - start:.1f} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="ctrpy-cgroup2-") as tmp:
        job = Path(tmp)
        shutil.copy(HERE / "checks.sh", job / "run.sh")
        (job / "env").write_text(f"PROJECT={PROJECT}\nONLY='{args.only}'\n")

        def show(line: str) -> None:
            if args.verbose or line.startswith(("PASS ", "FAIL ", "ctrpy-guest:", "checks done")):
                print(f"  [{time.monotonic() - start:5.0f}s] {line}", flush=True)

        result = None
        for attempt in (1, 2):
            result = guest.boot(kernel, initrd, PROJECT, job, timeout=args.timeout, on_line=show)
            if guest.UP in result.output:
                break
            # A boot that prints nothing happens about once in 25 under heavy load: retry once.
            print(f"cgroup2 tier: boot {attempt} printed nothing in {result.seconds:.0f} s"
                  + (", retrying" if attempt == 1 else ""), flush=True)
    assert result is not None
    passed, failed, failures = summary(result.output)
    elapsed = time.monotonic() - start
    if result.exit_status is None:
        tail = "\n".join(result.output.splitlines()[-30:])
        print(f"cgroup2 tier: the guest never reported an exit status"
              f"{' (timed out after %.0f s)' % args.timeout if result.timed_out else ''}; console tail:\n{tail}")
        failed += 1
        failures.append("guest: no exit status")
    if failures:
        print("=" * 20 + " failures " + "=" * 20)
        for f in failures:
            print(f"FAILED {f}")
    print(f"{passed} passed, {failed} failed in {elapsed:.1f} s (cgroup v2 guest)")
    if result.exit_status is None:
        return 2
    return 1 if failed or result.exit_status != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
