"""Issue 12: what the docker-shaped parsing of `run` costs at start-up (target: at most 5 ms).

Two comparisons, interleaved (A B A B ...) because the machine is shared:
  parse   a fresh interpreter imports the command module and parses a typical command line:
          `run` (docker's ~60 flags) against `containers run` (ctr's flags, what `run` was before)
  run     the whole `--rm` run of `true` on a busybox rootfs, no network, built-in runtime:
          `ctrpy run --name N --rootfs R true` against `ctrpy containers run --rootfs R N true`

    .venv/bin/python bench/run_parsing.py [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bench.stats import Side, interleave  # noqa: E402

PARSE = ("import time; t=time.perf_counter(); from ctrpy.commands.{mod} import {attr} as c; "
         "c.make_context('run', {args!r}); print(time.perf_counter()-t)")
NEW_ARGS = ["--rm", "--network", "none", "--name", "x", "-e", "A=1", "-v", "/tmp:/tmp", "-m", "64m", "busybox",
            "sh", "-c", "true"]
OLD_ARGS = ["--rm", "--network", "none", "-e", "A=1", "--mount", "type=bind,src=/tmp,dst=/tmp", "--memory-limit",
            "64m", "busybox", "x", "sh", "-c", "true"]


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    py = sys.executable
    ctrpy = str(Path(py).parent / "ctrpy")
    subprocess.run([py, "-m", "compileall", "-q", str(REPO / "ctrpy")], check=True)

    def parse(mod: str, attr: str, args: list[str]) -> float:
        out = subprocess.run([py, "-c", PARSE.format(mod=mod, attr=attr, args=args)], capture_output=True,
                             text=True, check=True).stdout
        return float(out) * 1000

    sides = [Side("run (docker flags)", lambda i: parse("run", "run", NEW_ARGS)),
             Side("containers run (ctr flags)", lambda i: parse("containers", "run", OLD_ARGS))]
    interleave(sides, rounds)
    report("import + parse, in-process (ms)", sides)

    from support.bundle import make_rootfs

    with tempfile.TemporaryDirectory(prefix="bench-i12-") as tmp:
        rootfs = make_rootfs(Path(tmp) / "rootfs")
        Path(tmp, "config.toml").write_text('[network]\ndefault = "none"\n')
        env = {**os.environ, "CTRPY_CONFIG": f"{tmp}/config.toml"}
        base = [ctrpy, "--root", f"{tmp}/root", "--state", f"{tmp}/state"]

        def timed(argv: list[str]) -> float:
            t = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True, env=env)
            return (time.perf_counter() - t) * 1000

        sides = [Side("ctrpy run --rm --name N --rootfs R true",
                      lambda i: timed(base + ["run", "--rm", "--name", f"n{i}", "--rootfs", str(rootfs), "true"])),
                 Side("ctrpy containers run --rm --rootfs R N true",
                      lambda i: timed(base + ["containers", "run", "--rm", "--rootfs", str(rootfs), f"c{i}", "true"]))]
        interleave(sides, rounds)
        report("whole run --rm of true (ms)", sides)
        subprocess.run(["umount", "-R", "-l", tmp], capture_output=True)


def report(title: str, sides: list[Side]) -> None:
    a, b = sides
    diffs = [x - y for x, y in zip(a.samples, b.samples)]
    print(f"{title}: {a.name} median {statistics.median(a.samples):.1f}, {b.name} median "
          f"{statistics.median(b.samples):.1f}, per-round difference median {statistics.median(diffs):+.1f} "
          f"({len(diffs)} interleaved rounds)")


if __name__ == "__main__":
    main()
