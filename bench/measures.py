"""The five measures of issue 7, each returning Comparisons (see bench/stats.py).

A ctrpy side that cannot run yet reports "not available (<reason>)" and the others still run; sides always
alternate round by round.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.cleanup import log, stop_pid
from bench.env import REPO, Env, hugetlb_on_v1
from bench.services import NAMESPACE, cmdline, descendants
from bench.stats import Comparison, Side, Unavailable, interleave, one_line, rounds_note, run_checked, timed


# Seconds each slow comparison may take (rounds are cut, never below 3, so `make bench` stays under ~15 min).
PULL_BUDGET = 110
MEM_BUDGET = 45
MEM50_BUDGET = 120
PAR_RUN_BUDGET = 45
PAR_PULL_BUDGET = 90


# ------------------------------------------------------------------------------------------- ctrpy probing

class CtrpyRoot:
    """A ctrpy root with an image pulled into it, plus the `run` flags this ctrpy accepts."""

    def __init__(self, env: Env, name: str, image: str) -> None:
        self.env = env
        self.root, self.state = env.new_root(name)
        self.image = image
        self.pulled = False
        self.net_flags: list[str] = []
        self.notes: list[str] = []

    def cmd(self, *args: str) -> list[str]:
        return self.env.ctrpy(self.root, self.state, *args)

    def pull(self) -> None:
        if not self.pulled:
            run_checked(self.env.ctrpy_pull(self.root, self.state, self.image), env=self.env.env,
                        what="ctrpy pull")
            self.pulled = True

    def probe_run(self, cid: str, *extra: str) -> None:
        """Pull, then one `run --rm` to learn the flags; `--network none` matches ctr's default (loopback only)."""
        self.pull()
        self.net_flags = self.net_flags_for(self.env, self.root, self.state)
        if not self.net_flags:
            self.notes.append("ctrpy run has no --network flag yet: measured with its default (bridge) network")
        run_checked(self.run_rm(cid, *extra), env=self.env.env, what="ctrpy run --rm")

    @staticmethod
    def net_flags_for(env: Env, root: Path, state: Path) -> list[str]:
        """`--network none` when this ctrpy has it (ctr's default: loopback only). `run` passes unknown options
        through as positionals, so its help is the way to ask."""
        usage = subprocess.run(env.ctrpy(root, state, "run", "--help"), capture_output=True, text=True, env=env.env)
        return ["--network", "none"] if "--network" in usage.stdout else []

    def run_rm(self, cid: str, *extra: str) -> list[str]:
        return self.cmd("run", "--rm", *self.net_flags, *extra, "--name", cid, self.image, "true")


def _ctr_prepare_image(env: Env, ref: str) -> None:
    have = subprocess.run(env.ctr("images", "ls", "-q"), capture_output=True, text=True).stdout.split()
    if ref not in have:
        run_checked(env.ctr_pull(ref, ns=NAMESPACE), what="ctr pull")


# ------------------------------------------------------------------------------------------- 1. run --rm

SKIP_CRUN = False  # bench/run.py --skip-crun


def run_rm(env: Env, reps: int) -> list[Comparison]:
    img = env.images.busybox
    ctrpy = CtrpyRoot(env, "run", img)
    ctrpy_crun = CtrpyRoot(env, "runcrun", img)
    ctrpy_bridge = CtrpyRoot(env, "runbridge", img)

    def ctr_prepare() -> None:
        _ctr_prepare_image(env, img)
        run_checked(env.ctr_run("--rm", img, "bench-warm", "true"), what="ctr run --rm")

    def bare_prepare(runtime: str) -> None:
        run_checked(env.bare(runtime, f"bench-{runtime}-warm"), what=f"{runtime} run")

    def bridge_prepare() -> None:
        ctrpy_bridge.pull()
        run_checked(ctrpy_bridge.cmd("run", "--rm", "--name", "bridgewarm", img, "true"), env=env.env,
                    what="ctrpy run --rm (default network)")

    # Two interleaved groups: crun needs hugetlb moved off cgroup2, and that window is kept short because the
    # rest of the machine (the test suite) sees the extra hierarchy while it exists.
    main = [
        Side("ctrpy", lambda i: timed(ctrpy.run_rm(f"r{i}"), env=env.env, what="ctrpy run --rm"),
             prepare=lambda: ctrpy.probe_run("warm")),
        Side("ctr (containerd+runc)", lambda i: timed(env.ctr_run("--rm", img, f"bench-{i}", "true"),
                                                      what="ctr run --rm"), prepare=ctr_prepare),
        Side("runc run (bare bundle)", lambda i: timed(env.bare("runc", f"bench-runc-{i}"), what="runc run"),
             prepare=lambda: bare_prepare("runc")),
        Side("ctrpy (default bridge network)",
             lambda i: timed(ctrpy_bridge.cmd("run", "--rm", "--name", f"n{i}", img, "true"), env=env.env,
                             what="ctrpy run --rm (bridge)"), prepare=bridge_prepare),
    ]
    crun = [
        Side("ctrpy --runtime crun",
             lambda i: timed(ctrpy_crun.run_rm(f"c{i}", "--runtime", "crun"), env=env.env,
                             what="ctrpy run --rm --runtime crun"),
             prepare=lambda: ctrpy_crun.probe_run("warm", "--runtime", "crun"), group="crun"),
        Side("crun run (bare bundle)", lambda i: timed(env.bare("crun", f"bench-crun-{i}"), what="crun run"),
             prepare=lambda: bare_prepare("crun"), group="crun"),
    ]
    interleave(main, reps, label="run --rm")
    if SKIP_CRUN:
        # bench/run.py --skip-crun: no hugetlb remount (tests may be running); compare with a recorded figure.
        how = "not measured this run (--skip-crun)"
        for side in crun:
            side.reason = "not measured (--skip-crun: the hugetlb remount is not done while tests run)"
    else:
        # The ctrpy image is pulled before the window so that only runs happen inside it.
        try:
            ctrpy_crun.pull()
        except Unavailable as exc:
            crun[0].reason = str(exc)
        with hugetlb_on_v1(env.cleanup) as how:
            interleave(crun, reps, label="run --rm (crun)")
    sides = main[:2] + crun[1:] + main[2:3] + crun[:1] + main[3:]
    notes: list[str] = [
        f"crun sides: {how}, only while those two ran (crun 1.8.1 refuses hybrid cgroups otherwise); the other "
        "sides ran interleaved in the machine's own layout. Ratios across the two groups are ratios of medians."]
    notes += sorted(set(ctrpy.notes + ctrpy_crun.notes))
    comp = Comparison(
        "1. `run --rm busybox true`, end to end", "ms", sides,
        ratios=[("ctrpy", "ctr (containerd+runc)", "<= 0.4x"), ("ctrpy", "crun run (bare bundle)", "<= 4x"),
                ("ctrpy --runtime crun", "ctr (containerd+runc)", ""),
                ("ctrpy (default bridge network)", "ctrpy", "")],
        notes=notes,
        command=f"ctrpy run --rm --network none --name ID {img} true | ctr run --rm {img} ID true | "
                "crun/runc --root DIR run --bundle BUNDLE ID", key="run --rm")
    for r in (ctrpy, ctrpy_crun, ctrpy_bridge):
        env.drop_root(r.root)
    return [comp]


# ------------------------------------------------------------------------------------------- 2. pull

def pull(env: Env, reps: int) -> list[Comparison]:
    comps = []
    for key, ref in (("debian1", env.images.debian1), ("debian5", env.images.debian5)):
        layers = _layers(env, key)
        holder: dict[str, Any] = {}

        def ctrpy_fresh() -> None:
            if "root" in holder:
                env.drop_root(holder["root"])
            holder["root"], holder["state"] = env.new_root("pull")

        def ctr_prepare(ref: str = ref) -> None:
            env.ctr_rm_image_if_present(ref)

        tar_dir = env.work / "tar-floor"

        def tar_measure(i: int, layers: list[Path] = layers) -> float:
            tar_dir.mkdir()
            t0 = time.perf_counter()
            for layer in layers:
                run_checked(["tar", "-xzf", str(layer), "-C", str(tar_dir)], what="tar -xzf")
            return time.perf_counter() - t0

        sides = [
            Side("ctrpy pull", lambda i, ref=ref: timed(env.ctrpy_pull(holder["root"], holder["state"], ref),
                                                         env=env.env, what="ctrpy pull"),
                 prepare=ctrpy_fresh, between=ctrpy_fresh),
            Side("ctr pull", lambda i, ref=ref: timed(env.ctr_pull(ref), what="ctr pull"), prepare=ctr_prepare,
                 between=lambda ref=ref: env.ctr_rm_image(ref)),
            Side("tar -xzf (floor)", tar_measure, between=lambda: shutil.rmtree(tar_dir, ignore_errors=True)),
        ]
        done = interleave(sides, reps, label=f"pull {key}", budget=PULL_BUDGET)
        if "root" in holder:
            env.drop_root(holder["root"])
        n = len(layers)
        comps.append(Comparison(
            f"2{'a' if n == 1 else 'b'}. Cold pull + unpack of Debian minbase, {env.images.describe()[key]}",
            "s", sides,
            # Issue 17: a 5-layer pull unpacks while it downloads, so it must come close to the tar floor.
            ratios=[("ctrpy pull", "ctr pull", "<= 0.5x"),
                    ("ctrpy pull", "tar -xzf (floor)", "<= 1.5x" if n == 1 else "<= 1.1x")],
            notes=["cold: ctrpy gets a new empty --root each round; containerd's image is removed with "
                   "`ctr images rm --sync` (GC drops content and snapshots, checked) after each round; "
                   "tar extracts into a new directory each round. Registry blobs are in the page cache for all.",
                   *rounds_note(done, reps)], key=f"pull, {n} layer{'s' if n > 1 else ''}",
            command=f"ctrpy pull --plain-http {ref} | ctr images pull --plain-http {ref} | "
                    f"tar -xzf LAYER -C DIR (x{n})"))
    return comps


def _layers(env: Env, key: str) -> list[Path]:
    from bench.images import layout_layers

    return layout_layers(env.images.layouts[key])


# ------------------------------------------------------------------------------------------- 3. memory

def _smaps(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes from /proc/PID/smaps_rollup."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


def _pss_by_mapping(pid: int, top: int = 5) -> str:
    """Where a process's PSS sits (heap, interpreter, libraries, anonymous), largest first."""
    totals: dict[str, int] = {}
    current = "?"
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split()
                if not head:
                    continue
                if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                    current = Path(head[5]).name if len(head) > 5 else "[anon]"
                elif head[0] == "Pss:":
                    totals[current] = totals.get(current, 0) + int(head[1])
    except OSError:
        return "?"
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])[:top]
    return ", ".join(f"{name} {kb / 1024:.1f} MB" for name, kb in ranked)


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _containers_with(marker: str) -> list[int]:
    """PIDs of container processes running `sleep <marker>` (our marker, so never anyone else's)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            argv = cmdline(int(entry))
            if len(argv) == 2 and argv[0].rsplit("/", 1)[-1] == "sleep" and argv[1] == marker:
                found.append(int(entry))
    return found


class Fleet:
    """N sleeping containers of one side: start them (timed), read the supervisors' memory, tear down."""

    def __init__(self, env: Env, side: str, n: int, marker: str) -> None:
        self.env, self.side, self.n, self.marker = env, side, n, marker
        self.root: Any = None
        self.mem: list[tuple[float, float]] = []  # (RSS per container, PSS per container)
        self.daemon_pss: list[float] = []
        self.supervisor_desc = ""
        self.tasks_ls: list[float] = []  # `tasks ls` with the fleet running (issue 17), one per round

    def start(self, rnd: int) -> float:
        env = self.env
        if self.side == "ctrpy":
            self.root = CtrpyRoot(env, "mem", env.images.busybox)
            self.root.probe_run("memwarm")
            argvs = [self.root.cmd("run", "-d", *self.root.net_flags, "--name", f"m{rnd}-{k}", env.images.busybox,
                                   "sleep", self.marker) for k in range(self.n)]
        else:
            _ctr_prepare_image(env, env.images.busybox)
            argvs = [env.ctr_run("-d", env.images.busybox, f"bench-m{rnd}-{k}", "sleep", self.marker)
                     for k in range(self.n)]
        t0 = time.perf_counter()
        for argv in argvs:
            run_checked(argv, env=env.env, what=f"{self.side} run -d", timeout=60)
        elapsed = time.perf_counter() - t0
        self._sample()
        if self.n > 1:
            if self.side == "ctrpy":
                self.tasks_ls.append(timed(self.root.cmd("tasks", "ls"), env=env.env, what="ctrpy tasks ls"))
            else:
                self.tasks_ls.append(timed(env.ctr("tasks", "ls"), what="ctr tasks ls"))
        return elapsed

    def _sample(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            pids = _containers_with(self.marker)
            if len(pids) >= self.n or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if len(pids) < self.n:
            raise Unavailable(f"{self.side}: only {len(pids)} of {self.n} containers are running")
        time.sleep(0.3)  # let supervisors finish their start-up allocations
        supervisors = sorted({_ppid(p) for p in pids})
        if supervisors == [1]:
            raise Unavailable(f"{self.side}: containers have no supervisor process (parent is pid 1)")
        rss = pss = 0
        for sup in supervisors:
            r, p = _smaps(sup)
            rss += r
            pss += p
        self.mem.append((rss / self.n, pss / self.n))
        argv = cmdline(supervisors[0])
        self.supervisor_desc = (f"{self.side}: {len(supervisors)} supervisor process(es) for {self.n} containers, "
                                f"e.g. `{' '.join(argv).replace(str(REPO) + '/', '')[:90]}`; "
                                f"PSS by mapping: {_pss_by_mapping(supervisors[0])}")
        if self.side == "ctr":
            self.daemon_pss.append(_smaps(self.env.containerd.proc.pid)[1])

    def teardown(self) -> None:
        env = self.env
        if self.side == "ctr":
            env.containerd.remove_all()
        elif self.root is not None:
            pids = _containers_with(self.marker)
            sups = {_ppid(p) for p in pids if os.path.exists(f"/proc/{p}")}
            ls = subprocess.run(self.root.cmd("tasks", "ls", "-q"), capture_output=True, text=True, env=env.env)
            ids = ls.stdout.split() if ls.returncode == 0 else []
            for cid in ids:
                subprocess.run(self.root.cmd("tasks", "kill", "-s", "SIGKILL", cid), capture_output=True,
                               env=env.env)
            if ids:
                subprocess.run(self.root.cmd("containers", "rm", "--force", *ids), capture_output=True, env=env.env)
            # Whatever the CLI did not stop: these are our containers and supervisors, stopped by PID.
            for pid in _containers_with(self.marker):
                stop_pid(pid, grace=0.2)
            for sup in sups - {1}:
                if cmdline(sup):
                    for kid in descendants(sup):
                        stop_pid(kid, grace=0.2)
                    stop_pid(sup, grace=1.0)
            env.drop_root(self.root.root)
            self.root = None
        left = _containers_with(self.marker)
        if left:
            raise Unavailable(f"{self.side}: {len(left)} containers survived teardown")


def memory(env: Env, reps1: int, reps50: int) -> list[Comparison]:
    comps = []
    for n, reps in ((1, reps1), (50, reps50)):
        fleets = {"ctrpy": Fleet(env, "ctrpy", n, str(86400 + n)), "ctr": Fleet(env, "ctr", n, str(86500 + n))}
        names = {"ctrpy": "ctrpy supervisor", "ctr": "containerd-shim-runc-v2"}
        sides = [Side(names[k], f.start, between=f.teardown) for k, f in fleets.items()]
        try:
            done = interleave(sides, reps, label=f"memory n={n}", budget=MEM_BUDGET if n == 1 else MEM50_BUDGET)
        finally:
            for f in fleets.values():
                try:
                    f.teardown()
                except Exception:
                    pass
        for what, idx in (("PSS", 1), ("RSS", 0)):
            mem_sides = []
            for k, f in fleets.items():
                s = Side(names[k], lambda i: 0.0)
                s.samples = [m[idx] for m in f.mem] if sides[list(fleets).index(k)].ok else []
                s.reason = sides[list(fleets).index(k)].reason
                mem_sides.append(s)
            notes = [f.supervisor_desc for f in fleets.values() if f.supervisor_desc]
            if what == "PSS" and fleets["ctr"].daemon_pss:
                daemon = statistics.median(fleets["ctr"].daemon_pss)
                notes.append(f"containerd daemon itself (not counted above): PSS {daemon / 1e6:.1f} MB with {n} "
                             f"running; ctrpy has no daemon")
                if mem_sides[1].ok:
                    shim = statistics.median(mem_sides[1].samples)
                    notes.append(f"containerd per container with its daemon's PSS shared over the {n}: "
                                 f"{(shim + daemon / n) / 1e6:.2f} MB")
            comps.append(Comparison(
                f"3{'a' if n == 1 else 'b'}. Memory per running container, {what}, {n} sleeping container(s)", "MB",
                mem_sides, ratios=[(names["ctrpy"], names["ctr"], "<= 0.1x" if what == "PSS" else "")],
                notes=notes + rounds_note(done, reps), key=f"{what} per container, {n} running",
                command="sum over the containers' parent processes of /proc/PID/smaps_rollup, divided by N"))
        if n == 50:
            starts = []
            for k, side in zip(fleets, sides):
                s = Side("ctrpy" if k == "ctrpy" else "ctr (containerd+runc)", side.measure)
                s.samples, s.reason = side.samples, side.reason
                starts.append(s)
            comps.append(Comparison(
                "3c. Time to start 50 sleeping containers (sequential `run -d`)", "s", starts,
                ratios=[("ctrpy", "ctr (containerd+runc)", "<= 0.4x")], key="start 50", notes=rounds_note(done, reps),
                command=f"50 x ctrpy run -d --network none --name ID {env.images.busybox} sleep N | "
                        f"50 x ctr run -d {env.images.busybox} ID sleep N"))
            lists = []
            for k, side in zip(fleets, sides):
                s = Side("ctrpy tasks ls" if k == "ctrpy" else "ctr tasks ls", side.measure)
                s.samples = fleets[k].tasks_ls if side.ok else []
                s.reason = side.reason
                lists.append(s)
            comps.append(Comparison(
                "3d. `tasks ls` with 50 running tasks", "ms", lists, ratios=[("ctrpy tasks ls", "ctr tasks ls", "")],
                key="tasks ls, 50 running", notes=["one listing per round, while the fleet of 3b runs (ctrpy's "
                                                   "tasks use its built-in runtime, containerd's runc shims)",
                                                   *rounds_note(done, reps)],
                command="ctrpy tasks ls | ctr tasks ls"))
    return comps


# ------------------------------------------------------------------------------------------- 4. listings

def _populate_ctrpy(root: Path, state: Path, image_ref: str, n: int, spec: dict[str, Any] | None = None) -> None:
    """1,000 images (tags of the pulled busybox, as `ctr images tag` makes) and 1,000 containers, through the
    runtime API in-process (the CLI would take minutes)."""
    import dataclasses

    from ctrpy.runtime.client import Client

    client = Client(root, state)
    base = client.images.get(image_ref)
    for k in range(n):
        client.images.create(dataclasses.replace(base, name=f"{image_ref.rsplit(':', 1)[0]}:t{k}"))
    from ctrpy.runtime.metadata import containers as cmod

    container_cls = getattr(cmod, "Container", None)
    if container_cls is None:
        raise Unavailable("ctrpy.runtime.metadata.containers has no Container type yet")
    fields = {f.name for f in dataclasses.fields(container_cls)}
    for k in range(n):
        kwargs: dict[str, Any] = {"id": f"c{k}"}
        if "image" in fields:
            kwargs["image"] = image_ref
        if "snapshotter" in fields:
            kwargs["snapshotter"] = "overlayfs"
        if "snapshot_key" in fields:
            kwargs["snapshot_key"] = f"c{k}"
        if "spec" in fields and spec:
            kwargs["spec"] = spec
        if "runtime" in fields:
            kwargs["runtime"] = "ctrpy"
        elif "runtime_name" in fields:
            kwargs["runtime_name"] = "ctrpy"
        client.containers.create(container_cls(**kwargs))


def listings(env: Env, reps: int, n: int = 1000, more: tuple[int, ...] = ()) -> list[Comparison]:
    img = env.images.busybox
    ctrpy = CtrpyRoot(env, "list", img)
    empty_root, empty_state = env.new_root("empty")
    # containerd: tags in batches (one ctr call takes many targets), containers in parallel.
    _ctr_prepare_image(env, img)
    repo = img.rsplit(":", 1)[0]
    have = set(subprocess.run(env.ctr("images", "ls", "-q"), capture_output=True, text=True).stdout.split())
    todo = [f"{repo}:t{k}" for k in range(n) if f"{repo}:t{k}" not in have]
    for i in range(0, len(todo), 100):
        run_checked(env.ctr("images", "tag", img, *todo[i:i + 100]), what="ctr images tag")
    existing = set(subprocess.run(env.ctr("containers", "ls", "-q"), capture_output=True, text=True).stdout.split())
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: run_checked(env.ctr("containers", "create", img, f"lc{k}"), what="ctr c create"),
                      [k for k in range(n) if f"lc{k}" not in existing]))
    # ctrpy's containers carry the same OCI spec containerd stores, so that rows are as large as real ones.
    spec = None
    info = subprocess.run(env.ctr("containers", "info", "--spec", "lc0"), capture_output=True, text=True)
    if info.returncode == 0:
        import json

        spec = json.loads(info.stdout)
    populate_error = None
    try:
        ctrpy.pull()
        _populate_ctrpy(ctrpy.root, ctrpy.state, img, n, spec)
    except Unavailable as exc:
        populate_error = str(exc)
    except Exception as exc:
        populate_error = f"populating 1,000 entries failed: {type(exc).__name__}: {one_line(str(exc))}"
    log("bench: listings populated")

    def ctrpy_side(name: str, argv: list[str], needs_population: bool = True) -> Side:
        def prepare() -> None:
            if needs_population and populate_error:
                raise Unavailable(populate_error)
            run_checked(argv, env=env.env, what=" ".join(argv[5:7]) or "ctrpy")
        return Side(name, lambda i: timed(argv, env=env.env, what="ctrpy " + " ".join(argv[5:7])), prepare=prepare)

    def ctr_side(name: str, argv: list[str]) -> Side:
        return Side(name, lambda i: timed(argv, what="ctr"), prepare=lambda: run_checked(argv, what="ctr"))

    pairs = [
        ("4a. `images ls` with 1,000 images", ctrpy_side("ctrpy images ls", ctrpy.cmd("images", "ls")),
         ctr_side("ctr images ls", env.ctr("images", "ls")), "<= 0.25x"),
        ("4b. `containers ls` with 1,000 containers", ctrpy_side("ctrpy containers ls", ctrpy.cmd("containers", "ls")),
         ctr_side("ctr containers ls", env.ctr("containers", "ls")), "<= 0.25x"),
        ("4b. `ps -a` with 1,000 containers", ctrpy_side("ctrpy ps -a", ctrpy.cmd("ps", "-a")),
         ctr_side("ctr containers ls", env.ctr("containers", "ls")), ""),
        ("4c. `--help` (start-up)", ctrpy_side("ctrpy --help", [env.ctrpy_bin, "--help"], False),
         ctr_side("ctr --help", ["ctr", "--help"]), "<= 3x"),
        ("4d. `images ls` on an empty store (start-up)",
         ctrpy_side("ctrpy images ls (empty)", env.ctrpy(empty_root, empty_state, "images", "ls"), False),
         ctr_side("ctr images ls (empty)", ["ctr", "--address", env.containerd.sock, "-n", "empty", "images", "ls"]),
         "<= 3x"),
        ("4e. shell completion of image refs with 1,000 images",
         ctrpy_side("ctrpy __complete image",
                    [env.ctrpy_bin, "__complete", "image", "--root", str(ctrpy.root), "--state", str(ctrpy.state)]),
         ctr_side("ctr images ls -q", env.ctr("images", "ls", "-q")), ""),
    ]
    commands = ["ctrpy images ls | ctr images ls", "ctrpy containers ls | ctr containers ls",
                "ctrpy ps -a | ctr containers ls (containerd has no docker-style ps: its closest listing)",
                "ctrpy --help | ctr --help", "ctrpy images ls | ctr -n empty images ls (nothing stored)",
                "ctrpy __complete image --root R (what the completion scripts run on Tab) | ctr images ls -q "
                "(what a ctr completion would have to run)"]
    comps = []
    for (title, a, b, target), command in zip(pairs, commands):
        interleave([a, b], reps, label=title)
        comps.append(Comparison(title, "ms", [a, b], ratios=[(a.name, b.name, target)], command=command,
                                key=title.split(" ", 1)[1].replace("`", "")))
    comps[0].notes.append("ctrpy's 1,000 images are tags of the pulled busybox created through the runtime API "
                          "(ImageStore.create); containerd's through `ctr images tag`. Both list sizes from the "
                          "manifests, as `ctr images ls` does.")
    comps[1].notes.append("ctrpy's containers are created through ContainerStore.create (metadata only, with the "
                          "OCI spec containerd generated for its own); containerd's through `ctr containers create` "
                          "(which also prepares a snapshot).")
    for big in more:
        comps.append(_containers_at(env, ctrpy, img, spec, n, big, reps))
    env.drop_root(ctrpy.root)
    env.drop_root(empty_root)
    env.containerd.remove_all()
    return comps


def _containers_at(env: Env, ctrpy: CtrpyRoot, img: str, spec: dict[str, Any] | None, have: int, n: int,
                   reps: int) -> Comparison:
    """`containers ls` again with `n` containers on both sides (issue 17: the cost stays linear)."""
    from ctrpy.runtime.client import Client
    from ctrpy.runtime.metadata.containers import Container

    client = Client(ctrpy.root, ctrpy.state)
    for k in range(have, n):
        client.containers.create(Container(id=f"c{k}", runtime_name="ctrpy", image=img, snapshotter="overlayfs",
                                           snapshot_key=f"c{k}", spec=spec or {}))
    existing = set(subprocess.run(env.ctr("containers", "ls", "-q"), capture_output=True, text=True).stdout.split())
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: run_checked(env.ctr("containers", "create", img, f"lc{k}"), what="ctr c create"),
                      [k for k in range(n) if f"lc{k}" not in existing]))
    log(f"bench: {n} containers populated")
    a = Side("ctrpy containers ls", lambda i: timed(ctrpy.cmd("containers", "ls"), env=env.env, what="ctrpy c ls"))
    p = Side("ctrpy ps -a", lambda i: timed(ctrpy.cmd("ps", "-a"), env=env.env, what="ctrpy ps -a"))
    b = Side("ctr containers ls", lambda i: timed(env.ctr("containers", "ls"), what="ctr c ls"))
    interleave([a, p, b], reps, label=f"containers ls n={n}")
    return Comparison(f"4b. `containers ls` and `ps -a` with {n:,} containers", "ms", [a, p, b],
                      ratios=[(a.name, b.name, ""), (p.name, b.name, "")],
                      command="ctrpy containers ls | ctrpy ps -a | ctr containers ls",
                      key=f"containers ls with {n:,} containers")


# ------------------------------------------------------------------------------------------- 5. concurrency

def _parallel(argvs: list[list[str]], env: dict[str, str] | None, what: str) -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              env=env, text=True) for a in argvs]
    errors = []
    for p in procs:
        _, err = p.communicate(timeout=600)
        if p.returncode != 0:
            errors.append(f"exit {p.returncode}: {one_line(err)}")
    elapsed = time.perf_counter() - t0
    if errors:
        raise Unavailable(f"{what}: {len(errors)} of {len(argvs)} failed, e.g. {errors[0]}")
    return elapsed


def concurrency(env: Env, reps: int, runs: int = 20, pulls: int = 5, *, with_runs: bool = True) -> list[Comparison]:
    comps = _parallel_runs(env, reps, runs) if with_runs else []
    return comps + _parallel_pulls(env, reps, pulls)


def _parallel_runs(env: Env, reps: int, runs: int) -> list[Comparison]:
    img = env.images.busybox
    ctrpy = CtrpyRoot(env, "par", img)
    sides = [
        Side("ctrpy", lambda i: _parallel([ctrpy.run_rm(f"p{i}-{k}") for k in range(runs)], env.env,
                                          f"{runs} x ctrpy run --rm"), prepare=lambda: ctrpy.probe_run("warm")),
        Side("ctr (containerd+runc)",
             lambda i: _parallel([env.ctr_run("--rm", img, f"bench-p{i}-{k}", "true") for k in range(runs)], None,
                                 f"{runs} x ctr run --rm"),
             prepare=lambda: _ctr_prepare_image(env, img)),
    ]
    done = interleave(sides, reps, label="parallel run", budget=PAR_RUN_BUDGET)
    comps = [Comparison(f"5a. {runs} parallel `run --rm busybox true`, wall time", "s", sides,
                        ratios=[("ctrpy", "ctr (containerd+runc)", "")], key=f"{runs} parallel run --rm",
                        notes=ctrpy.notes + rounds_note(done, reps),
                        command=f"{runs} at once: ctrpy run --rm --network none --name ID {img} true | ctr run --rm ...")]
    env.drop_root(ctrpy.root)
    return comps


def _parallel_pulls(env: Env, reps: int, pulls: int) -> list[Comparison]:
    comps: list[Comparison] = []
    ref = env.images.debian1
    holder: dict[str, Any] = {}

    def fresh() -> None:
        if "root" in holder:
            env.drop_root(holder["root"])
        holder["root"], holder["state"] = env.new_root("ppull")

    def ctr_prepare() -> None:
        env.ctr_rm_image_if_present(ref)

    psides = [
        Side("ctrpy pull", lambda i: _parallel([env.ctrpy_pull(holder["root"], holder["state"], ref)] * pulls,
                                               env.env, f"{pulls} x ctrpy pull"), prepare=fresh, between=fresh),
        Side("ctr pull", lambda i: _parallel([env.ctr_pull(ref)] * pulls, None, f"{pulls} x ctr pull"),
             prepare=ctr_prepare, between=lambda: env.ctr_rm_image(ref)),
    ]
    done = interleave(psides, reps, label="parallel pull", budget=PAR_PULL_BUDGET)
    if "root" in holder:
        env.drop_root(holder["root"])
    comps.append(Comparison(f"5b. {pulls} parallel cold pulls of the same image (Debian, 1 layer), wall time", "s",
                            psides, ratios=[("ctrpy pull", "ctr pull", "<= 0.5x")], key=f"{pulls} parallel pulls",
                            notes=rounds_note(done, reps),
                            command=f"{pulls} at once: ctrpy pull --plain-http {ref} | ctr images pull --plain-http {ref}"))
    return comps


# ------------------------------------------------------------------------------------------- 6. save / load

SAVE_LOAD_BUDGET = 120
# Where a load's time goes (measured for issue 13 on 2026-11-29 at load average 6-26 on 2 cores, perf, strace -c
# -f, pyinstrument of `ctrpy load`, CPU of ctr + containerd from /proc): quoted under figure 6b.
LOAD_WHERE_TIME_GOES = [
    "where the time goes: `ctrpy load` uses ~1.0 s of CPU (0.5 s user, 0.25-0.3 s system), `ctr images import` "
    "2.1-3.9 s (ctr + containerd, growing round after round): CPU ratio 0.29x. On a busy machine wall time follows "
    "the CPU share each side gets, and containerd's many threads get more of it than ctrpy's two (wall 0.46x at "
    "load average 20). In the load, spooling the archive into the content store (read, sha256, write, fsync of "
    "the blob, like containerd's commit) is 0.2-0.3 s; applying the 6.7k-entry layer is the rest: Python's tar "
    "header (pax) parsing ~1/3, creating and writing files ~1/2.",
    "before (main at ad89150): 3.3 s of CPU, 5 s of system time in slow rounds; perf put 50-60% of the samples "
    "in ext4's inode allocator (find_inode_bit, recently_deleted, find_get_block): this file system has no "
    "journal, and then ext4 skips each free inode of a block group freed in the last 60-360 s, one buffer "
    "lookup each, for every inode it allocates. The rounds before had just removed 6.7k inodes in that group "
    "(and the other engineers' tests churn /tmp). Each new snapshot tree now goes to the least used block group "
    "(snapshots/backend.py: chattr +T on the snapshot's directory, `fs` made under a random name, another one "
    "when a probe file costs > 60 us of CPU, as in a group a removal just emptied): same load 0.8-1.1 s, 0.25-0.3 s "
    "system; about 1 load in 10 still lands where a removal freed inodes (the probe sees only the group's first free "
    "inodes) and takes 2-3 s. ctr still pays that scan: containerd puts each snapshot beside the removed ones. This figure, "
    "`--only 6 --reps 5` at load average 6-10: 0.84x / 0.68x before, 0.44x and 0.30x (per-round medians) after.",
    "not worth it, measured: skipping the lstat before each exclusive create (-2% of the apply's CPU); teeing "
    "the archive into the blob and the unpacker in one pass would overlap the 0.2-0.3 s spool with the apply "
    "on an idle machine, nothing when both cores are busy; one 1-layer image has nothing to apply in "
    "parallel. What would go further: tar parsing and file creation out of Python (the C helper).",
]
LOAD_NAMESPACE = "ctrpybench-load"


def load_archive(env: Env) -> Path:
    """Where measure 6 saves the Debian archive that both loads read (and the `load` profile too)."""
    return env.work / "archives" / "debian1.tar"


def save_load(env: Env, reps: int) -> list[Comparison]:
    """Issue 13: `ctrpy save` / `ctrpy load` of the Debian minbase image against `ctr images export/import`.

    save: both write the same image (pulled beforehand) to a new file each round. load: ctrpy loads into a new
    empty root each round and unpacks; ctr imports into a namespace of its own and unpacks, and the image is
    removed with `ctr images rm --sync` (content and snapshots collected) after each round. Both load the
    same archive (the one ctrpy saved; ctr reads it, which the test suite also checks)."""
    ref = env.images.debian1
    holder = CtrpyRoot(env, "save", ref)
    files = load_archive(env).parent
    files.mkdir(exist_ok=True)

    def ctrpy_save_prepare() -> None:
        holder.pull()

    def ctr_save_prepare() -> None:
        _ctr_prepare_image(env, ref)

    def drop(path: Path) -> None:
        path.unlink(missing_ok=True)

    save_sides = [
        Side("ctrpy save", lambda i: timed(holder.cmd("save", "-o", str(files / f"ctrpy-{i}.tar"), ref), env=env.env,
                                           what="ctrpy save"),
             prepare=ctrpy_save_prepare, between=lambda: [drop(p) for p in files.glob("ctrpy-*.tar")]),
        Side("ctr images export", lambda i: timed(env.ctr("images", "export", str(files / f"ctr-{i}.tar"), ref),
                                                  what="ctr images export"),
             prepare=ctr_save_prepare, between=lambda: [drop(p) for p in files.glob("ctr-*.tar")]),
    ]
    done_save = interleave(save_sides, reps, label="save debian1", budget=SAVE_LOAD_BUDGET)
    archive = load_archive(env)
    size = 0
    try:
        run_checked(holder.cmd("save", "-o", str(archive), ref), env=env.env, what="ctrpy save")
        size = archive.stat().st_size
    except Exception as exc:  # the load sides report it
        log(f"bench: cannot save the archive to load: {exc}")
    fresh: dict[str, Any] = {}

    def ctrpy_fresh() -> None:
        if "root" in fresh:
            env.drop_root(fresh["root"])
        fresh["root"], fresh["state"] = env.new_root("load")

    def ctr_clean() -> None:
        env.ctr_rm_image_if_present(ref, ns=LOAD_NAMESPACE)

    load_sides = [
        Side("ctrpy load", lambda i: timed(env.ctrpy(fresh["root"], fresh["state"], "load", "-q", "-i", str(archive)),
                                           env=env.env, what="ctrpy load"),
             prepare=ctrpy_fresh, between=ctrpy_fresh),
        Side("ctr images import", lambda i: timed(env.ctr("images", "import", str(archive), ns=LOAD_NAMESPACE),
                                                  what="ctr images import"),
             prepare=ctr_clean, between=ctr_clean),
    ]
    done_load = interleave(load_sides, reps, label="load debian1", budget=SAVE_LOAD_BUDGET)
    if "root" in fresh:
        env.drop_root(fresh["root"])
    env.drop_root(holder.root)
    what = env.images.describe().get("debian1", "")
    return [
        Comparison(f"6a. save of Debian minbase ({what}) to an archive file", "s", save_sides,
                   ratios=[("ctrpy save", "ctr images export", "<= 0.5x")],
                   notes=["the image is in the store (pulled once before the rounds); each round writes a new file",
                          *rounds_note(done_save, reps)],
                   command=f"ctrpy save -o FILE {ref} | ctr images export FILE {ref}", key="save"),
        Comparison(f"6b. load (import + unpack) of the Debian minbase archive ({size / 1e6:.1f} MB)", "s",
                   load_sides, ratios=[("ctrpy load", "ctr images import", "<= 0.5x")],
                   notes=["cold: ctrpy gets a new empty --root each round; ctr's image is removed with "
                          "`ctr images rm --sync` after each round. Both read the archive ctrpy saved (in the page "
                          "cache) and unpack it to overlayfs (`ctr images import` unpacks unless --no-unpack).",
                          *rounds_note(done_load, reps), *LOAD_WHERE_TIME_GOES],
                   command="ctrpy load -q -i FILE | ctr images import FILE", key="load"),
    ]
