#!/usr/bin/env python3
"""`make bench`: ctrpy side by side with containerd, runc and crun (issue 7); results go to BENCHMARKS.md.

Starts its own containerd and registry, publishes busybox and Debian minbase (1 and 5 layers), runs the five
measures with the sides interleaved, profiles ctrpy where it is behind, and rewrites the results section of
BENCHMARKS.md (between the bench:results markers; the hand-written analysis around it is kept).

    .venv/bin/python bench/run.py [--reps N] [--reps50 N] [--only 1,2,3,4,5,6,7] [--no-profile] [--output FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import cri_podstart, measures  # noqa: E402
from bench.cleanup import Cleanup, log  # noqa: E402
from bench.env import Env, cgroup_mode  # noqa: E402
from bench.stats import Comparison, as_dict, meets, render  # noqa: E402

BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"

# Which ctrpy command to profile when a comparison shows ctrpy behind (title prefix -> profile name).
# The first matching prefix wins: the more specific ones come first.
PROFILE_FOR = {"1.": "run", "3c": "run-d", "5a": "run", "2a": "pull", "2b": "pull5", "5b": "pull",
               "4a": "images-ls", "4b. `ps": "ps", "4b": "containers-ls", "4c": "help", "4d": "images-ls-empty",
               "6b": "load"}


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()
        return out[0] if out else "?"
    except OSError:
        return "not installed"


def load() -> str:
    """Load average and CPU pressure: the run's absolute times depend on what else the machine did."""
    la = open("/proc/loadavg").read().split()[:3]
    text = f"load average {' '.join(la)}"
    try:
        some = open("/proc/pressure/cpu").readline().split()
        text += f", CPU pressure {some[3].split('=')[1]}% (avg300)"
    except (OSError, IndexError):
        pass
    return text


def machine() -> list[str]:
    mem = "?"
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "ctrpy", "csrc"],
                           capture_output=True, text=True).stdout.strip()
    return [
        f"- Date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {os.cpu_count()} cores ({cpu}), {mem} memory, kernel {platform.release()}, "
        f"{platform.machine()}; cgroups {cgroup_mode()}",
        f"- Versions: {_version(['containerd', '--version'])}; {_version(['runc', '--version'])}; "
        f"{_version(['crun', '--version'])}; Python {platform.python_version()}; ctrpy at git {head}"
        f"{' plus uncommitted changes' if dirty else ''}",
    ]


def write_report(path: Path, comps: list[Comparison], failures: list[str], profiles: dict[str, list[str]],
                 header: list[str], command: str, elapsed: float, images: dict[str, str], complete: bool,
                 load_start: str) -> None:
    lines = [BEGIN, "## Results of the last full run", ""]
    lines += header
    lines += [f"- Load: at start {load_start}; at end {load()}",
              f"- Command: `{command}` (through `make bench`); took {elapsed / 60:.1f} min"
              f"{'' if complete else ' (INCOMPLETE: interrupted or failed)'}",
              "- ctrpy runs from the venv (`.venv/bin/ctrpy`, editable install) after `python -m compileall ctrpy`: "
              "PYTHONDONTWRITEBYTECODE=1 is set in this environment, so without it every run would recompile.",
              "- Images: " + "; ".join(f"{k}: {v}" for k, v in images.items()), ""]
    lines += ["### Summary (ratios are medians of per-round ratios; lower is better for ctrpy)", "",
              "| figure | ratio | target | |", "|---|---:|---|---|"]
    for comp in comps:
        for num, den, target in comp.ratios:
            r = comp.ratio(num, den)
            verdict = "" if r is None or not target else ("meets" if meets(r, target) else "misses")
            lines.append(f"| {comp.title.split(' ', 1)[0]} {comp.key}: {num} / {den} | "
                         f"{f'{r:.2f}x' if r is not None else 'n/a'} | {target or '-'} | {verdict} |")
    lines.append("")
    for failure in failures:
        lines.append(f"- measure failed: {failure}")
    lines.append("")
    for comp in comps:
        lines += render(comp)
    if profiles:
        lines += ["### Where ctrpy's time goes (profiles of the figures where it is behind)", ""]
        for name, plines in profiles.items():
            lines.append(f"**{name}** (full output in .bench/profiles/{name}.*)")
            lines.append("")
            lines += ["```"] + plines + ["```", ""]
    lines.append(END)
    block = "\n".join(lines) + "\n"
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        pre, rest = text.split(BEGIN, 1)
        post = rest.split(END, 1)[1]
        text = pre + block.rstrip("\n") + post
    else:
        text = (text or "# Benchmarks\n\n") + "\n" + block
    path.write_text(text)


def run_profiles(env: Env, names: list[str]) -> dict[str, list[str]]:
    from bench.profile import profile

    out: dict[str, list[str]] = {}
    img = env.images.busybox
    for name in names:
        try:
            root, state = env.new_root(f"prof-{name}")
            if name in ("run", "run-d", "run-bridge", "images-ls", "containers-ls", "ps"):
                subprocess.run(env.ctrpy_pull(root, state, img), capture_output=True, env=env.env)
            if name in ("images-ls", "containers-ls", "ps"):
                measures._populate_ctrpy(root, state, img, 1000)
            seq = iter(range(1000))
            net = measures.CtrpyRoot.net_flags_for(env, root, state)

            def make_argv(name: str = name, root: Path = root, state: Path = state) -> list[str]:
                if name == "run":
                    return env.ctrpy(root, state, "run", "--rm", *net, "--name", f"prof{next(seq)}", img, "true")
                if name == "run-d":
                    # `true`: the container exits by itself, nothing is left running when the root is dropped.
                    return env.ctrpy(root, state, "run", "-d", *net, "--name", f"profd{next(seq)}", img, "true")
                if name == "run-bridge":
                    return env.ctrpy(root, state, "run", "--rm", "--name", f"profbr{next(seq)}", img, "true")
                if name in ("pull", "pull5"):
                    # A pull must be cold for each tool: each gets its own new root.
                    fresh_root, fresh_state = env.new_root("prof-pull")
                    ref = env.images.debian5 if name == "pull5" else env.images.debian1
                    return env.ctrpy_pull(fresh_root, fresh_state, ref)
                if name == "load":
                    # Cold like the figure's rounds: a new root each time, the archive measure 6 saved.
                    fresh_root, fresh_state = env.new_root("prof-load")
                    return env.ctrpy(fresh_root, fresh_state, "load", "-q", "-i", str(measures.load_archive(env)))
                return {"images-ls": env.ctrpy(root, state, "images", "ls"),
                        "containers-ls": env.ctrpy(root, state, "containers", "ls"),
                        "ps": env.ctrpy(root, state, "ps", "-a"),
                        "help": [env.ctrpy_bin, "--help"],
                        "images-ls-empty": env.ctrpy(root, state, "images", "ls")}[name]

            out[name] = profile(name, make_argv, env.env, env.python, execs=name.startswith("run"))
            env.drop_root(root)
        except Exception as exc:
            out[name] = [f"profile failed: {type(exc).__name__}: {exc}"]
    return out


def behind(comp: Comparison) -> bool:
    """ctrpy slower/heavier than the reference it is compared with first (or not measured at all)."""
    if not comp.ratios:
        return False
    num, den, _ = comp.ratios[0]
    r = comp.ratio(num, den)
    return r is not None and r > 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=10, help="rounds per comparison (default 10)")
    parser.add_argument("--reps50", type=int, default=3, help="rounds of the 50-container start (default 3)")
    parser.add_argument("--only", default="1,2,3,4,5,6,7",
                        help="measures to run, e.g. 1,4 (default all); 5b: of measure 5 only the parallel pulls")
    parser.add_argument("--containers", default="",
                        help="measure 4: also `containers ls` with these many containers, e.g. 10000")
    parser.add_argument("--no-profile", action="store_true", help="skip profiling where ctrpy is behind")
    parser.add_argument("--skip-crun", action="store_true",
                        help="measure 1 without the crun sides (no hugetlb remount: safe while tests run)")
    parser.add_argument("--output", default=None,
                        help="report file (default: BENCHMARKS.md for a full run, .bench/subset.md with --only)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: must run as root (containers, mounts, cgroups)", file=sys.stderr)
        return 1
    tokens = [x.strip() for x in args.only.split(",") if x.strip()]
    only = {int(x[0]) for x in tokens}
    runs5 = "5b" not in tokens or "5" in tokens
    measures.SKIP_CRUN = args.skip_crun
    if args.output is None:
        # Only a full run may replace the results in BENCHMARKS.md.
        args.output = str(REPO / "BENCHMARKS.md") if only >= {1, 2, 3, 4, 5, 6, 7} else str(REPO / ".bench" / "subset.md")
    command = " ".join([".venv/bin/python bench/run.py", *(shlex.quote(a) for a in sys.argv[1:])])
    # Registry traffic is for 127.0.0.1 only: no proxy may divert it.
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        os.environ.pop(key, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost,::1"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "ctrpy")], capture_output=True)

    started = time.monotonic()
    comps: list[Comparison] = []
    failures: list[str] = []
    profiles: dict[str, list[str]] = {}
    header = machine()
    load_start = load()
    images: dict[str, str] = {}
    complete = False
    try:
        with Cleanup() as cleanup:
            env = Env(cleanup, with_debian=bool(only & {2, 5, 6}))
            images = env.images.describe()
            plan = [(1, lambda: measures.run_rm(env, args.reps)),
                    (2, lambda: measures.pull(env, args.reps)),
                    (3, lambda: measures.memory(env, args.reps, args.reps50)),
                    (4, lambda: measures.listings(env, args.reps,
                                                 more=tuple(int(x) for x in args.containers.split(",") if x))),
                    (5, lambda: measures.concurrency(env, args.reps, with_runs=runs5)),
                    (6, lambda: measures.save_load(env, args.reps)),
                    (7, lambda: cri_podstart.pod_start(cleanup, args.reps))]  # CRI pod start (issue 14)
            for number, fn in plan:
                if number not in only:
                    continue
                t0 = time.monotonic()
                log(f"bench: measure {number} ...")
                try:
                    got = fn()
                except Exception as exc:
                    failures.append(f"{number}: {type(exc).__name__}: {exc}")
                    log(f"bench: measure {number} failed: {exc}")
                    continue
                for comp in got:
                    print("\n".join(render(comp)), flush=True)
                comps += got
                log(f"bench: measure {number} took {time.monotonic() - t0:.0f}s")
            if not args.no_profile:
                wanted: list[str] = []
                for comp in comps:
                    key = next((v for k, v in PROFILE_FOR.items() if comp.title.startswith(k)), None)
                    if key and behind(comp) and key not in wanted:
                        wanted.append(key)
                    # Issue 6: the default network should cost only a few ms over --network none.
                    bridge = comp.ratio("ctrpy (default bridge network)", "ctrpy")
                    if comp.title.startswith("1.") and bridge is not None and bridge > 1.05:
                        wanted.append("run-bridge")
                if wanted:
                    log(f"bench: profiling ctrpy for: {', '.join(wanted)}")
                    profiles = run_profiles(env, wanted)
            complete = True
    except KeyboardInterrupt:
        log("bench: interrupted; cleaned up")
    finally:
        elapsed = time.monotonic() - started
        if comps or complete:
            # An interrupted run must not replace the last full run's results: it goes beside them.
            output = Path(args.output) if complete else REPO / ".bench" / "partial.md"
            output.parent.mkdir(exist_ok=True)
            write_report(output, comps, failures, profiles, header, command, elapsed, images, complete, load_start)
            results = REPO / ".bench" / "results.json"
            results.parent.mkdir(exist_ok=True)
            results.write_text(json.dumps({"header": header, "comparisons": [as_dict(c) for c in comps],
                                           "failures": failures, "profiles": profiles}, indent=1))
            log(f"bench: wrote {output} ({elapsed / 60:.1f} min)")
    return 0 if complete else 130


if __name__ == "__main__":
    sys.exit(main())
