"""Restart policies without a daemon (issue 12): the C supervisor restarts the process in place with docker's
back-off; an explicit kill stops it; `ctrpy system boot` brings containers back after a (simulated) reboot."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from support.runtimes import cleanup, rootfs  # noqa: F401 - fixtures

RUNTIME = "ctrpy"


def task_dir(dirs: Any, cid: str) -> Path:
    return dirs.state / "default" / cid


def _stamp(text: str) -> float:
    import calendar

    main, _, frac = text.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S")) + float("0." + (frac or "0"))


def wait_for(predicate: Any, timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.usefixtures("cleanup")
def test_on_failure_count_and_backoff(ctrpy: Any, rootfs: Path, dirs: Any) -> None:
    r = ctrpy("run", "-d", "--restart", "on-failure:3", "--runtime", RUNTIME, "--rootfs", str(rootfs), "of",
              "sh", "-c", "echo run; exit 5")
    assert r.returncode == 0, r.stderr
    assert ctrpy("tasks", "wait", "of").returncode == 5
    state = json.loads((task_dir(dirs, "of") / "restart.json").read_text())
    assert (state["restart_count"], state["failure_count"], state["restarting"]) == (3, 3, False)
    # restart.log: restart number, the exit that caused it, the back-off in ms (docker's: 100 ms doubling).
    lines = [line.split() for line in (task_dir(dirs, "of") / "restart.log").read_text().splitlines()]
    assert lines == [["1", "5", "100"], ["2", "5", "200"], ["3", "5", "400"]]
    assert ctrpy("logs", "of").stdout == "run\n" * 4
    record = json.loads((task_dir(dirs, "of") / "exit.json").read_text())
    assert (record["exit_status"], record["restart_count"]) == (5, 3)


@pytest.mark.usefixtures("cleanup")
def test_backoff_resets_after_uptime(ctrpy: Any, rootfs: Path, dirs: Any) -> None:
    """docker resets the back-off once a run lasted 10 s; the test hook shortens that to 0.3 s."""
    env = {"CTRPY_TEST_RESTART_RESET_MS": "300"}
    r = ctrpy("run", "-d", "--restart", "on-failure:3", "--runtime", RUNTIME, "--rootfs", str(rootfs), "rs",
              "sh", "-c", "sleep 0.5; exit 1", env=env)
    assert r.returncode == 0, r.stderr
    assert ctrpy("tasks", "wait", "rs").returncode == 1
    lines = [line.split() for line in (task_dir(dirs, "rs") / "restart.log").read_text().splitlines()]
    assert [delay for _, _, delay in lines] == ["100", "100", "100"]


@pytest.mark.usefixtures("cleanup")
def test_on_failure_does_not_restart_success(ctrpy: Any, rootfs: Path, dirs: Any) -> None:
    r = ctrpy("run", "-d", "--restart", "on-failure", "--runtime", RUNTIME, "--rootfs", str(rootfs), "ok",
              "true")
    assert r.returncode == 0, r.stderr
    assert ctrpy("tasks", "wait", "ok").returncode == 0
    assert not (task_dir(dirs, "ok") / "restart.log").exists()


@pytest.mark.usefixtures("cleanup")
def test_always_restarts_until_killed(ctrpy: Any, rootfs: Path, dirs: Any) -> None:
    r = ctrpy("run", "-d", "--restart", "always", "--runtime", RUNTIME, "--rootfs", str(rootfs), "al",
              "sh", "-c", "echo run; sleep 0.2")
    assert r.returncode == 0, r.stderr
    log = task_dir(dirs, "al") / "restart.log"
    wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 2, what="two restarts")
    assert ctrpy("tasks", "kill", "al").returncode == 0
    ctrpy("tasks", "wait", "al")
    count = len(log.read_text().splitlines())
    time.sleep(1.0)  # more than the next back-off: nothing restarts after an explicit kill
    assert len(log.read_text().splitlines()) == count
    assert json.loads(ctrpy("tasks", "ls", "--format", "json").stdout)[0]["status"] == "stopped"
    labels = json.loads(ctrpy("containers", "label", "al").stdout)
    assert labels.get("ctrpy.io/restart.stopped") == "true"


@pytest.mark.usefixtures("cleanup")
def test_restarting_state_in_inspect_ps_and_stop(ctrpy: Any, rootfs: Path) -> None:
    """docker's Restarting state: seen in inspect (Restarting, RestartCount), ps and --filter while the
    supervisor is in its back-off; `stop` during the back-off ends it cleanly."""
    r = ctrpy("run", "-d", "--restart", "always", "--runtime", RUNTIME, "--rootfs", str(rootfs), "--name", "rr",
              "sh", "-c", "exit 3")
    assert r.returncode == 0, r.stderr
    fmt = "{{.State.Status}} {{.State.Restarting}} {{.State.Running}} {{.State.ExitCode}} {{.RestartCount}}"
    seen: list[tuple[str, ...]] = []

    def restarting_twice() -> bool:
        seen.append(tuple(ctrpy("inspect", "--format", fmt, "rr").stdout.split()))
        return any(s[:4] == ("restarting", "true", "true", "3") and int(s[4]) >= 2 for s in seen)

    wait_for(restarting_twice, what=f"restarting with a growing RestartCount (seen {seen})")
    counts = [int(s[4]) for s in seen if len(s) == 5]
    assert counts == sorted(counts)  # it only grows
    # StartedAt moves with each restart (the first run began at the container's creation, 0.3 s+ earlier).
    created, started = ctrpy("inspect", "--format", "{{.Created}} {{.State.StartedAt}}", "rr").stdout.split()
    assert _stamp(started) - _stamp(created) > 0.25, (created, started)
    # The back-off doubles (0.8 s, 1.6 s, ...): ps catches it between two runs (ps without -a shows it).
    wait_for(lambda: ctrpy("ps", "--filter", "status=restarting", "-q").stdout.strip() != "",
             what="ps --filter status=restarting")
    rows: list[list[str]] = []

    def ps_restarting() -> bool:
        rows.append(ctrpy("ps", "--format", "{{.Names}}|{{.State}}|{{.Status}}").stdout.splitlines())
        return len(rows[-1]) == 1 and rows[-1][0].startswith("rr|restarting|Restarting (3) ") and \
            rows[-1][0].endswith(" ago")

    wait_for(ps_restarting, what=f"ps showing Restarting (3) (seen {rows})")
    r = ctrpy("stats", "--no-stream", "--format", "{{.Name}}", "rr")  # between runs too
    assert (r.returncode, r.stdout) == (0, "rr\n"), r.stderr
    r = ctrpy("rm", "rr")
    assert r.returncode == 6 and "stop it first" in r.stderr  # as a running one
    assert ctrpy("start", "rr").returncode == 0  # a no-op, as for a running one
    assert ctrpy("stop", "rr").returncode == 0
    after = ctrpy("inspect", "--format", fmt, "rr").stdout.split()
    assert after[:4] == ["exited", "false", "false", "3"], after
    time.sleep(1.0)  # longer than the back-off was: nothing restarts it
    assert ctrpy("inspect", "--format", fmt, "rr").stdout.split() == after
    assert ctrpy("ps", "-q").stdout == ""
    assert ctrpy("ps", "-a", "--format", "{{.Status}}").stdout.startswith("Exited (3) ")


def test_bad_policies_are_refused(ctrpy: Any, rootfs: Path) -> None:
    r = ctrpy("run", "-d", "--restart", "sometimes", "--rootfs", str(rootfs), "bad", "true")
    assert r.returncode != 0 and "invalid restart policy" in r.stderr
    r = ctrpy("run", "--rm", "--restart", "always", "--rootfs", str(rootfs), "bad", "true")
    assert r.returncode == 2 and "--restart" in r.stderr
    assert ctrpy("containers", "ls", "-q").stdout == ""


# ---- a simulated reboot, with published ports ------------------------------------------------------------

from test_network_run import RunEnv, renv  # noqa: E402,F401 - the bridge environment and its fixture
from support.netenv import curl  # noqa: E402


def test_system_boot_after_reboot(renv: RunEnv, dirs: Any) -> None:
    port = 18000 + int(renv.tag, 16) % 1000
    web, stopped, plain = renv.cid("web"), renv.cid("stopped"), renv.cid("plain")
    renv.httpd(web, "--restart", "always", "-p", f"{port}:80")
    assert renv.run("-d", "--restart", "unless-stopped", "--", "sleep", "300", cid=stopped).returncode == 0
    assert renv.run("-d", "--", "sleep", "300", cid=plain).returncode == 0
    # Stopped by hand (pid 1 ignores SIGTERM: KILL): boot leaves it alone.
    assert renv.ctrpy("tasks", "kill", "-s", "KILL", stopped).returncode == 0
    assert renv.ctrpy("tasks", "wait", stopped).returncode == 137
    wait_for(lambda: curl(f"http://127.0.0.1:{port}/").stdout == "hello from httpd\n", what="httpd")
    # The reboot: every supervisor and init killed by pid, the state directory (tmpfs) wiped.
    for cid in (web, stopped, plain):
        tdir = Path(dirs.state) / "default" / cid
        for name in ("supervisor.pid", "init.pid"):
            try:
                os.kill(int((tdir / name).read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    time.sleep(0.3)
    shutil.rmtree(dirs.state)
    Path(dirs.state).mkdir()
    assert curl(f"http://127.0.0.1:{port}/", timeout=1).stdout == ""
    r = renv.ctrpy("system", "boot", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert [(b["id"], b["started"]) for b in json.loads(r.stdout)] == [(web, True)]
    tasks = {t["id"]: t for t in json.loads(renv.ctrpy("tasks", "ls", "--format", "json").stdout)}
    assert list(tasks) == [web] and tasks[web]["status"] == "running"
    wait_for(lambda: curl(f"http://127.0.0.1:{port}/").stdout == "hello from httpd\n", what="httpd after boot")
    # The process dies on its own (killed by pid, not through ctrpy): its supervisor restarts it in place, in a
    # new network namespace connected again, with its port.
    os.kill(tasks[web]["pid"], signal.SIGKILL)
    wait_for(lambda: (Path(dirs.state) / "default" / web / "restart.log").exists(), what="a restart")
    wait_for(lambda: curl(f"http://127.0.0.1:{port}/").stdout == "hello from httpd\n", what="httpd after restart")
    # A second boot finds it running and starts nothing.
    r = renv.ctrpy("system", "boot", "--format", "json")
    assert (r.returncode, json.loads(r.stdout)) == (0, [])
