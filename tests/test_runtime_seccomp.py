"""Seccomp: profiles in a bundle applied by the built-in runtime exactly as runc applies them, and the
default profile (containerd's/moby's) that `ctrpy run` gives every container unless told otherwise.

The bundle tests run each profile under both runtimes and compare what the container prints and its exit
status, so a difference in semantics (actions, errnoRet, conditions, arches, flags) is a failing test.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.bundle import RuntimeCLI, make_bundle, write_spec
from support.runtimes import cleanup, rootfs, unusable  # noqa: F401 - fixtures

from ctrpy.runtime import oci, seccomp

ALLOW_ALL = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]}


def run_both(tmp_path: Path, profile: dict[str, Any], script: str) -> dict[str, tuple[int, str, str]]:
    """Run `sh -c script` with `profile` under the built-in runtime and runc: name -> (status, out, err)."""
    results = {}
    for name in ("ctrpy", "runc"):
        reason = unusable(name)
        assert reason is None, reason
        cid = "s" + uuid.uuid4().hex[:8]
        bundle = tmp_path / f"{name}-{cid}"
        spec = make_bundle(bundle, ["sh", "-c", script], cgroups_path=f"ctrpy-test/{cid}")
        spec["linux"]["seccomp"] = profile
        write_spec(bundle, spec)
        rt = RuntimeCLI(name, tmp_path / f"root-{name}")
        try:
            r = rt("run", "--bundle", str(bundle), cid)
        finally:
            rt.cleanup()
        results[name] = (r.returncode, r.stdout, r.stderr)
    return results


def deny(names: list[str], action: str = "SCMP_ACT_ERRNO", **extra: Any) -> dict[str, Any]:
    return {**copy.deepcopy(ALLOW_ALL), "syscalls": [{"names": names, "action": action, **extra}]}


def test_errno_rule_denies_mkdir_like_runc(tmp_path: Path) -> None:
    res = run_both(tmp_path, deny(["mkdir", "mkdirat"]), "mkdir /tmp/x; echo rc=$?; ls /tmp")
    code, out, err = res["ctrpy"]
    assert code == 0, err
    assert "rc=1" in out and "Operation not permitted" in err
    assert res["ctrpy"][:2] == res["runc"][:2]


def test_errno_ret_and_default_errno_ret(tmp_path: Path) -> None:
    eacces = deny(["mkdir", "mkdirat"], errnoRet=13)
    res = run_both(tmp_path, eacces, "mkdir /tmp/x 2>&1; echo rc=$?")
    assert "Permission denied" in res["ctrpy"][1], res["ctrpy"]
    assert res["ctrpy"][:2] == res["runc"][:2]
    # The default action's errno: the default profile without mkdir, EROFS (30) as the default errno.
    profile = seccomp.default_profile(oci.DEFAULT_CAPS)
    profile["syscalls"][0]["names"] = [n for n in profile["syscalls"][0]["names"] if n not in ("mkdir", "mkdirat")]
    profile["defaultErrnoRet"] = 30
    res = run_both(tmp_path, profile, "mkdir /tmp/x 2>&1; echo rc=$?")
    assert "Read-only file system" in res["ctrpy"][1], res["ctrpy"]
    assert res["ctrpy"][:2] == res["runc"][:2]


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP",
                                    "SCMP_ACT_TRACE", "SCMP_ACT_LOG", "SCMP_ACT_ALLOW"])
def test_actions_match_runc(tmp_path: Path, action: str) -> None:
    res = run_both(tmp_path, deny(["mkdir", "mkdirat"], action), "mkdir /tmp/x 2>&1; echo rc=$?; ls /tmp")
    assert res["ctrpy"][:2] == res["runc"][:2], res
    if action in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"):
        assert "rc=159" in res["ctrpy"][1], res  # the mkdir applet (a child of sh) got SIGSYS
    elif action == "SCMP_ACT_TRACE":
        assert "rc=1" in res["ctrpy"][1]  # no tracer: ENOSYS
    else:
        assert res["ctrpy"][1].endswith("rc=0\nx\n")


@pytest.mark.parametrize("op,value,value_two", [
    ("SCMP_CMP_EQ", 0o77, 0), ("SCMP_CMP_NE", 0o77, 0), ("SCMP_CMP_LT", 0o70, 0), ("SCMP_CMP_LE", 0o77, 0),
    ("SCMP_CMP_GE", 0o77, 0), ("SCMP_CMP_GT", 0o70, 0), ("SCMP_CMP_MASKED_EQ", 0o700, 0o000),
])
def test_argument_conditions_match_runc(tmp_path: Path, op: str, value: int, value_two: int) -> None:
    """umask(2)'s argument decides; busybox's `umask M; umask` shows which calls the filter let through."""
    profile = deny(["umask"], args=[{"index": 0, "op": op, "value": value, "valueTwo": value_two}])
    res = run_both(tmp_path, profile, "umask 0077; umask; umask 0027; umask")
    assert res["ctrpy"][:2] == res["runc"][:2], res
    if op == "SCMP_CMP_EQ":
        assert res["ctrpy"][1] == "0022\n0027\n"  # umask(077) refused, umask(027) let through


def test_same_argument_twice_is_either_condition(tmp_path: Path) -> None:
    profile = deny(["umask"], args=[{"index": 0, "op": "SCMP_CMP_EQ", "value": 0o77},
                                    {"index": 0, "op": "SCMP_CMP_EQ", "value": 0o27}])
    res = run_both(tmp_path, profile, "umask 0077; umask; umask 0027; umask; umask 0007; umask")
    assert res["ctrpy"][1] == "0022\n0022\n0007\n"
    assert res["ctrpy"][:2] == res["runc"][:2]


def test_unknown_syscalls_are_skipped_like_runc(tmp_path: Path) -> None:
    res = run_both(tmp_path, deny(["mkdir", "mkdirat", "no_such_syscall_anywhere"]),
                   "mkdir /tmp/x 2>/dev/null; echo rc=$?; grep -E '^Seccomp:' /proc/self/status")
    assert res["ctrpy"][:2] == (0, "rc=1\nSeccomp:\t2\n")  # mode 2: a filter is installed
    assert res["ctrpy"][:2] == res["runc"][:2]


def test_filter_flags(tmp_path: Path) -> None:
    """runc 1.1 refuses every flag ("not yet supported"): the built-in runtime passes them to seccomp(2)."""
    bundle = tmp_path / "b"
    spec = make_bundle(bundle, ["sh", "-c", "mkdir /tmp/x 2>/dev/null; echo rc=$?"])
    rt = RuntimeCLI("ctrpy", tmp_path / "root")
    try:
        for i, flags in enumerate((["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                                   ["SECCOMP_FILTER_FLAG_TSYNC"], ["SECCOMP_FILTER_FLAG_NEW_LISTENER"])):
            spec["linux"]["seccomp"] = {**deny(["mkdir", "mkdirat"]), "flags": flags}
            write_spec(bundle, spec)
            r = rt("run", "--bundle", str(bundle), f"flags{i}")
            if "SECCOMP_FILTER_FLAG_NEW_LISTENER" in flags:
                assert r.returncode != 0 and "SECCOMP_FILTER_FLAG_NEW_LISTENER" in r.stderr, r.stderr
            else:
                assert (r.returncode, r.stdout) == (0, "rc=1\n"), r.stderr
    finally:
        rt.cleanup()


@pytest.mark.parametrize("field,value", [("listenerPath", "/run/agent.sock"), ("listenerMetadata", "x")])
def test_seccomp_agent_is_refused_by_name(tmp_path: Path, field: str, value: str) -> None:
    bundle = tmp_path / "b"
    spec = make_bundle(bundle, ["true"])
    spec["linux"]["seccomp"] = {**ALLOW_ALL, field: value}
    write_spec(bundle, spec)
    rt = RuntimeCLI("ctrpy", tmp_path / "root")
    try:
        r = rt("run", "--bundle", str(bundle), "agent")
        assert r.returncode != 0
        assert field in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert rt.ids() == []
    finally:
        rt.cleanup()


def test_bad_profile_fails_create_cleanly(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    spec = make_bundle(bundle, ["true"])
    spec["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_NOPE"]}
    write_spec(bundle, spec)
    rt = RuntimeCLI("ctrpy", tmp_path / "root")
    try:
        r = rt("create", "--bundle", str(bundle), "badarch")
        assert r.returncode != 0 and "architecture" in r.stderr, r.stderr
        assert rt.ids() == []
    finally:
        rt.cleanup()


# --- `ctrpy run`: the default profile, --security-opt, --privileged --------------------------------------

USERNS = "unshare -U true && echo userns=ok || echo userns=denied"


@pytest.mark.usefixtures("cleanup")
@pytest.mark.parametrize("runtime", ["ctrpy", "runc"])
def test_default_profile_blocks_namespace_creation(ctrpy: Any, rootfs: Path, runtime: str) -> None:
    """Creating a user namespace needs no capability: only the default seccomp profile stops it."""
    r = ctrpy("run", "--rm", "--runtime", runtime, "--rootfs", str(rootfs), "dflt", "sh", "-c", USERNS)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "userns=denied\n"
    r = ctrpy("run", "--rm", "--runtime", runtime, "--security-opt", "seccomp=unconfined", "--rootfs", str(rootfs),
              "unconf", "sh", "-c", USERNS)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "userns=ok\n"
    r = ctrpy("run", "--rm", "--runtime", runtime, "--privileged", "--rootfs", str(rootfs), "priv", "sh", "-c", USERNS)
    assert r.stdout == "userns=ok\n", r.stderr


@pytest.mark.usefixtures("cleanup")
def test_security_opt_profile_files(ctrpy: Any, rootfs: Path, tmp_path: Path) -> None:
    oci_profile = tmp_path / "oci.json"
    oci_profile.write_text(json.dumps(deny(["mkdir", "mkdirat"])))
    docker_profile = tmp_path / "docker.json"
    docker_profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["rmdir"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        ],
    }))
    script = "mkdir /tmp/d 2>/dev/null; echo mkdir=$?; rmdir /tmp/d 2>/dev/null; echo rmdir=$?"
    for i, path in enumerate((oci_profile, docker_profile)):
        r = ctrpy("run", "--rm", "--security-opt", f"seccomp={path}", "--rootfs", str(rootfs), f"f{i}",
                  "sh", "-c", script)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "mkdir=1\nrmdir=1\n", path  # rmdir fails: there is nothing to remove
    r = ctrpy("run", "--rm", "--security-opt", "seccomp=/nonexistent.json", "--rootfs", str(rootfs), "nf", "true")
    assert r.returncode != 0 and "/nonexistent.json" in r.stderr
    r = ctrpy("run", "--rm", "--security-opt", "bogus", "--rootfs", str(rootfs), "bogus", "true")
    assert r.returncode != 0 and "--security-opt" in r.stderr
    assert ctrpy("containers", "ls", "-q").stdout == ""


@pytest.mark.usefixtures("cleanup")
def test_security_opt_systempaths_and_confinement(ctrpy: Any, rootfs: Path) -> None:
    script = "grep -c -E ' /proc/(sys|keys) ' /proc/self/mountinfo"
    r = ctrpy("run", "--rm", "--rootfs", str(rootfs), "sp0", "sh", "-c", script)
    assert r.stdout == "2\n", r.stderr  # /proc/sys read-only, /proc/keys masked
    r = ctrpy("run", "--rm", "--security-opt", "systempaths=unconfined", "--rootfs", str(rootfs), "sp1",
              "sh", "-c", script)
    assert r.stdout == "0\n", r.stderr
    r = ctrpy("run", "--rm", "--security-opt", "apparmor=unconfined", "--security-opt", "label=disable",
              "--rootfs", str(rootfs), "sp2", "true")
    assert r.returncode == 0, r.stderr
    for value in ("apparmor=strict", "label=type:svirt_t", "systempaths=strict"):
        r = ctrpy("run", "--rm", "--security-opt", value, "--rootfs", str(rootfs), "sp3", "true")
        assert r.returncode == 3 and f"invalid --security-opt '{value}'" in r.stderr, (value, r.stderr)
    assert ctrpy("containers", "ls", "-q").stdout == ""


def test_default_profile_follows_capabilities() -> None:
    plain = oci.generate_spec()["linux"]["seccomp"]
    admin = oci.generate_spec(oci.with_capabilities(add=["CAP_SYS_ADMIN"]))["linux"]["seccomp"]
    allowed = {n for rule in plain["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args")
               for n in rule["names"]}
    admin_allowed = {n for rule in admin["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args")
                     for n in rule["names"]}
    assert "unshare" not in allowed and "mount" not in allowed and "keyctl" not in allowed
    assert {"unshare", "mount", "setns"} <= admin_allowed
    assert "seccomp" not in oci.generate_spec(oci.with_privileged())["linux"]
    assert os.uname().machine != "x86_64" or "SCMP_ARCH_X86_64" in plain["architectures"]


def test_compiled_programs_are_cached_per_profile_and_helper_build(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from ctrpy.runtime import helper
    from ctrpy.runtime.builtin import BuiltinRuntime

    rt = BuiltinRuntime(tmp_path)
    mkdir, rmdir = deny(["mkdir"]), deny(["rmdir"])
    program, _ = rt._seccomp_program(mkdir)
    assert [p.read_bytes().endswith(program) for p in tmp_path.glob(".seccomp-*.bpf")] == [True]
    assert rt._seccomp_program(copy.deepcopy(mkdir))[0] == program  # the same profile: the same file
    assert len(list(tmp_path.glob(".seccomp-*.bpf"))) == 1
    assert rt._seccomp_program(rmdir)[0] != program
    assert len(list(tmp_path.glob(".seccomp-*.bpf"))) == 2
    monkeypatch.setattr(helper, "build_id", lambda: "another build")  # a rebuilt helper compiles again
    assert rt._seccomp_program(mkdir)[0] == program
    assert len(list(tmp_path.glob(".seccomp-*.bpf"))) == 3
    assert not list(tmp_path.glob("*.tmp"))
    # A hit gives the flags back with the program; a file that does not hold this exact profile is no hit.
    logged = {**mkdir, "flags": ["SECCOMP_FILTER_FLAG_LOG"]}
    first = rt._seccomp_program(logged)
    assert first[1] != 0 and rt._seccomp_program(copy.deepcopy(logged)) == first
    for p in tmp_path.glob(".seccomp-*.bpf"):
        p.write_bytes(p.read_bytes()[:40] + b"x" * 64)
    assert rt._seccomp_program(logged) == first


@pytest.mark.parametrize("runtime", ["ctrpy", "runc"])
def test_exec_gets_the_containers_filter(tmp_path: Path, runtime: str) -> None:
    cid = "e" + uuid.uuid4().hex[:8]
    spec = make_bundle(tmp_path / cid, ["sleep", "60"], cgroups_path=f"ctrpy-test/{cid}")
    spec["linux"]["seccomp"] = deny(["mkdir", "mkdirat"])
    write_spec(tmp_path / cid, spec)
    rt = RuntimeCLI(runtime, tmp_path / "root")
    try:
        assert rt.create(tmp_path / cid, cid).returncode == 0
        assert rt("start", cid).returncode == 0
        r = rt("exec", cid, "sh", "-c", "mkdir /tmp/e 2>/dev/null; echo rc=$?; grep -E '^Seccomp:' /proc/self/status")
        assert (r.returncode, r.stdout) == (0, "rc=1\nSeccomp:\t2\n"), r.stderr
    finally:
        rt.cleanup()
