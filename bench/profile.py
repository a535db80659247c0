"""Where ctrpy's time goes, for each figure where it is behind: strace -c, -X importtime and pyinstrument.

Full outputs go to .bench/profiles/<name>.*; the report quotes the top lines of each.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bench.images import REPO

PROFILES = REPO / ".bench" / "profiles"


def _strace_top(path: Path, n: int = 6) -> list[str]:
    """Top syscalls by time from an `strace -c` table: 'name calls time%'."""
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and re.match(r"^\d+\.\d+$", parts[0]) and parts[-1] != "total":
            rows.append((float(parts[0]), parts[-1], parts[3]))
    rows.sort(reverse=True)
    return [f"{name} {pct:.0f}% ({calls} calls)" for pct, name, calls in rows[:n]]


def _importtime_top(stderr: str, n: int = 6) -> tuple[float, list[str]]:
    """(total import ms, the `n` heaviest top-level imports by cumulative time)."""
    rows = []
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), len(m.group(3)), m.group(4)))
    top = [r for r in rows if r[1] <= 1]
    total = sum(r[0] for r in top) / 1000
    top.sort(reverse=True)
    return total, [f"{name} {us / 1000:.0f} ms" for us, _, name in top[:n]]


def _pyinstrument_top(path: Path, n: int = 16) -> list[str]:
    """Functions by total (inclusive) time from pyinstrument's flat text report, import machinery and
    Click's dispatch frames left out (they only wrap the interesting ones)."""
    skip = ("<frozen", "click/core.py", "click/decorators.py", "<module>  ctrpy/__main__.py")
    rows = []
    for line in path.read_text().splitlines():
        if re.match(r"^\s*[\d.]+\s", line) and not any(s in line for s in skip):
            rows.append(line.strip())
    return rows[:n]


def _startup_floor(python: str) -> str:
    """Best-of-5 wall time of a bare interpreter, with and without site (the venv's .pth hooks)."""
    out = []
    for flags in (["-c", "pass"], ["-I", "-S", "-c", "pass"]):
        best = min(_wall([python, *flags]) for _ in range(5))
        out.append(f"`python {' '.join(flags)}` {best * 1000:.0f} ms")
    return "interpreter floor (best of 5): " + ", ".join(out)


def _wall(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, capture_output=True)
    return time.perf_counter() - t0


def _execs(path: Path) -> str:
    """Which programs a command line ends up executing (children included), from `strace -e trace=execve`."""
    counts: dict[str, int] = {}
    for line in path.read_text().splitlines():
        m = re.search(r'execve\("([^"]+)", \[(.*?)\]', line)
        if m and "= 0" in line.rsplit(")", 1)[-1]:
            argv = re.findall(r'"([^"]*)"', m.group(2))
            prog = Path(m.group(1)).name
            if prog.startswith("python") and "-c" in argv:
                prog += " -c '" + argv[argv.index("-c") + 1][:60].replace("\n", "; ") + "...'"
            elif prog.startswith("python") and len(argv) > 1:
                script = next((a for a in argv[1:] if not a.startswith("-")), "")
                prog += f" {Path(script).name[:40]}" if script else ""
            counts[prog] = counts.get(prog, 0) + 1
    return ", ".join(f"{k} x{v}" if v > 1 else k for k, v in counts.items())


def _timeline(path: Path, detached: bool = False) -> list[str]:
    """The phases of one `run` from `strace -f -ttt` of its process tree (clone, execve, exit_group): the CLI's
    fork of the launcher, the container's clone (CLONE_NEWNS), the supervisor's execve, the command's execve
    and exit, the supervisor's and the CLI's exits. strace slows every process down: read the shares."""
    calls = []
    for line in path.read_text().splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and re.match(r"^\d+\.\d+$", parts[1]):
            calls.append((int(parts[0]), float(parts[1]), parts[2]))
    if not calls:
        return []
    cli, t0 = calls[0][0], calls[0][1]
    marks: dict[str, float] = {}
    init = sup = None
    for pid, t, call in calls:
        if pid == cli and call.startswith("clone(") and "CLONE_NEW" not in call and "fork" not in marks:
            marks["fork"] = t
        elif call.startswith("clone(") and "CLONE_NEWNS" in call and "clone" not in marks:
            marks["clone"] = t
            m = re.search(r"= (\d+)$", call)
            init = int(m.group(1)) if m else None
        elif call.startswith("execve(") and "ctrpy-supervisor" in call.split(",")[0] and "supervisor" not in marks:
            marks["supervisor"], sup = t, pid
        elif call.startswith("execve(") and pid == init and "exec" not in marks:
            marks["exec"] = t
        elif call.startswith("exit_group(") and pid == init:
            marks["exit"] = t
        elif call.startswith("exit_group(") and pid == sup:
            marks["supervisor exit"] = t
        elif call.startswith("exit_group(") and pid == cli:
            marks["end"] = t
    phases = [
        ("CLI start-up, imports, image lookup, container record, snapshot, rootfs mount", None, "fork"),
        ("runtime create in the forked child (helper import, spec, cgroups) up to the clone", "fork", "clone"),
        ("container set-up (namespaces, mounts, pivot_root, seccomp) until the supervisor execs", "clone",
         "supervisor"),
        ("start: supervisor ready, attach, exec.fifo, until the command execs", "supervisor", "exec"),
        ("the command itself", "exec", "exit"),
    ]
    teardown = "teardown in the CLI (task and container delete, unmount, snapshot and records)"
    if detached:  # run -d: the command may end before or after the CLI, which only starts it
        phases = phases[:4] + [("after the start, until the CLI exits (start returns, the ID is printed)", "exec",
                                "end")]
    elif marks.get("supervisor exit", 0) < marks.get("end", 0):
        phases += [("exit recorded (fsync), output drained, supervisor gone", "exit", "supervisor exit"),
                   (teardown, "supervisor exit", "end")]
    else:
        phases += [(f"exit recorded (fsync) and reported; {teardown}", "exit", "end")]
    total = marks.get("end", calls[-1][1]) - t0
    out = [f"timeline of one run under strace -f ({total * 1000:.0f} ms under strace; slower than unprofiled, "
           "read the shares):"]
    for what, a, b in phases:
        start = t0 if a is None else marks.get(a)
        stop = marks.get(b)
        if start is None or stop is None or stop < start:
            continue
        out.append(f"    {(stop - start) * 1000:6.1f} ms {100 * (stop - start) / total:4.0f}%  {what}")
    return out


# What the measured phases leave, and what would win it; printed under the profile of figures 1 and 3c.
WHAT_WOULD_WIN = {
    "run": [
        "what is left and what would win it (issue 11):",
        "    - The Python CLI itself: interpreter + imports (-X importtime above) and the image/record/snapshot "
        "work before the fork are more than half of a run (~80 of 134 ms unprofiled, 2026-11-29). A warm process (a daemon, which ctrpy chose not to "
        "have) or a C fast path for `run` would remove most of it; lazy imports of images/unpack/lifecycle "
        "on the hot path win a few ms each.",
        "    - The runtime create in the forked child: imports the cffi helper and builds the spec in Python; "
        "the clone and the container set-up are the C helper's (about crun's cost).",
        "    - Teardown: `--rm` unmounts a volatile overlay (no sync of the upper file system: it was 10-100 ms "
        "on this busy disk before), then deletes records and directories. SQLite's WAL is checkpointed, "
        "fsynced and deleted at every command's close (1-27 ms measured here); SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE "
        "would save that (not settable from Python 3.11's sqlite3).",
    ],
}
WHAT_WOULD_WIN["run-d"] = WHAT_WOULD_WIN["run"][:3]
# Figures 4b/4d (issue 17, measured 2026-11-29 on the loaded 2-core machine, medians of interleaved rounds).
WHAT_WOULD_WIN["images-ls-empty"] = [
    "where the time goes and what would win the rest (issue 17):",
    "    - The fast path (commands/_root.py) imports only config, client, metadata.db and metadata.listing: no "
    "typing, dataclasses, inspect, pathlib, re, json or copy (tests/test_startup.py fails if one comes back), "
    "and an empty store is answered by one `SELECT 1 ... LIMIT 1` without the image store's module. "
    "-X importtime (6 runs): ctrpy.commands 7.8-8.6 ms cumulative (was ~21-40 ms), of which sqlite3 with datetime "
    "~2.3 ms, threading 0.6 ms, functools + collections ~1.5 ms; the work (open the database, one query) under 1 ms.",
    "    - A config file used to cost ~8 ms more (tomllib imports typing, re, string, datetime): the last parsed "
    "file is cached by its bytes in /run/ctrpy/config.cache (marshal), so only a changed file pays it.",
    "    - Wall: 22.6 ms against 50.4 ms before these changes and `python -c pass` 9.7 ms (15 interleaved rounds, "
    "no config file); with the bench's config file 16.8 ms (11 rounds, `python -c pass` 8.3 ms). "
    "`bench/run.py --only 4 --reps 5` under load (CPU pressure 49-65%): 2.47x ctr (23.1 / 10.5 ms; 6.26x in "
    "wave 1, 3.45x last pass). The interpreter and site (~8-10 ms here) are the floor; what is left above it is "
    "sqlite3's import and the stdlib that threading and sqlite3 pull in.",
]
WHAT_WOULD_WIN["containers-ls"] = [
    "where the time goes and what would win the rest (issue 17):",
    "    - Start-up as for an empty `images ls` (see 4d); a plain `containers ls` reads tuples of the four printed "
    "columns (metadata.listing.container_rows), no record objects.",
    "    - In-process, 1,000 rows: open 0.35 ms, query 0.4 ms, ages 0.13 ms, table 0.5 ms; 10,000 rows: "
    "query 4.5 ms (16.7 ms before the covering index containers_listing of schema v2: created_at follows the "
    "spec in the table, so SQLite walked every spec's overflow pages), ages 1.2 ms (18.5 ms with a parse per row: "
    "now one per second of creation), table ~6 ms (9.5 ms a cell at a time).",
    "    - Wall: 1,000 containers 22.5 ms (was 54.3 ms), 10,000 containers 34.6 ms (was 118.8 ms), 11 and 5 "
    "interleaved rounds against the code before; with a config file 18.3 ms at 1,000 (empty `images ls` 16.8 ms): "
    "the rows cost ~1.5 ms per 1,000. `bench/run.py --only 4 --reps 5 --containers 10000` under load: 0.56x "
    "ctr at 1,000 (36 / 64 ms; 1.14x before the index, ages, table and config changes), 0.17x at 10,000 "
    "(37 / 221 ms).",
    "    - 0.25x of `ctr containers ls` with 1,000 containers (~12 ms of its ~50 ms on this machine) is below the "
    "interpreter's own start plus sqlite3's import (~12 ms): not reachable by a Python CLI. A resident process "
    "(a daemon, which ctrpy chose not to have) or a compiled listing command would be the change that wins it.",
]


def _status(r: subprocess.CompletedProcess[str], what: str) -> list[str]:
    if r.returncode == 0:
        return []
    tail = (r.stderr or r.stdout or "").strip().splitlines()[-1:] or ["no output"]
    return [f"({what} exited {r.returncode}: {tail[0][:150]})"]


def profile(name: str, make_argv: Callable[[], list[str]], env: dict[str, str], python: str,
            execs: bool = False) -> list[str]:
    """Profile one ctrpy command line; returns report lines.

    `make_argv()` returns a new command line (argv[0] the ctrpy script) for each tool, so that every profiled
    run does the same work: a cold pull gets a new root, a run a new container ID."""
    PROFILES.mkdir(parents=True, exist_ok=True)
    out: list[str] = []
    # 1. system calls, children included (the supervisor and the runtime show up here too).
    if shutil.which("strace"):
        trace = PROFILES / f"{name}.strace"
        r = subprocess.run(["strace", "-f", "-c", "-o", str(trace), *make_argv()], capture_output=True, text=True,
                           env=env, timeout=300)
        if trace.exists():
            out.append("strace -c -f, top syscalls by time: " + "; ".join(_strace_top(trace)))
        out += _status(r, "under strace -c")
    if execs and shutil.which("strace"):
        trace = PROFILES / f"{name}.execve"
        r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-o", str(trace),
                            *make_argv()], capture_output=True, text=True, env=env, timeout=300)
        if trace.exists():
            out.append("programs executed: " + _execs(trace))
        out += _status(r, "under strace -e execve")
        trace = PROFILES / f"{name}.timeline"
        r = subprocess.run(["strace", "-f", "-ttt", "-qq", "-e", "trace=clone,clone3,execve,exit_group", "-e",
                            "signal=none", "-o", str(trace), *make_argv()], capture_output=True, text=True, env=env,
                           timeout=300)
        if trace.exists():
            out += _timeline(trace, detached=name.endswith("-d"))
        out += _status(r, "under strace -ttt")
    # 2. imports.
    imp_env = dict(env, PYTHONPROFILEIMPORTTIME="1")
    r = subprocess.run([python, "-m", "ctrpy", *make_argv()[1:]], capture_output=True, text=True, env=imp_env,
                       timeout=300)
    (PROFILES / f"{name}.importtime").write_text(r.stderr)
    total, top = _importtime_top(r.stderr)
    out.append(f"python -X importtime: {total:.0f} ms of imports; heaviest: " + "; ".join(top))
    out += _status(r, "with importtime")
    out.append(_startup_floor(python))
    # 3. Python call tree (the CLI process only).
    check = subprocess.run([python, "-c", "import pyinstrument"], capture_output=True)
    if check.returncode == 0:
        prof = PROFILES / f"{name}.pyinstrument.txt"
        r = subprocess.run([python, "-m", "pyinstrument", "-r", "text", "-p", "flat=true", "-p", "flat_time=total",
                            "-o", str(prof), "-m", "ctrpy", *make_argv()[1:]], capture_output=True, text=True,
                           env=env, timeout=300)
        if prof.exists():
            out.append("pyinstrument (CLI process only), functions by inclusive time in seconds:")
            out += ["    " + ln for ln in _pyinstrument_top(prof)]
        out += _status(r, "under pyinstrument")
    else:
        out.append("pyinstrument: not installed (pip install pyinstrument; `make bench` does)")
    return out + WHAT_WOULD_WIN.get(name, [])
