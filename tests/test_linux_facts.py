"""The kernel facts of ctrpy.runtime.linux and ctrpy.runtime.timefmt, each read in one place. Unit tests:
no root, no containers (the modules read /proc and parse text; the callers' behaviour is tested elsewhere)."""

from __future__ import annotations

import os
import time

import pytest

from ctrpy.runtime import errors, identifiers
from ctrpy.runtime.linux import caps, mountflags, mountinfo, proc
from ctrpy.runtime.linux.mountflags import (
    MS_BIND,
    MS_NOATIME,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_SHARED,
    MS_SLAVE,
)


def test_start_time_tells_a_live_process_from_a_zombie_and_a_dead_one() -> None:
    mine = proc.start_time(os.getpid())
    assert isinstance(mine, int) and mine > 0
    child = os.fork()
    if child == 0:  # pragma: no cover - exits at once
        os._exit(0)
    # Not reaped yet: a zombie, which no longer counts as the process that was started.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{child}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.001)
    assert proc.start_time(child) is None
    os.waitpid(child, 0)
    assert proc.start_time(child) is None


def test_start_time_reads_past_a_command_name_with_spaces_and_parentheses() -> None:
    # The comm field is ours to choose: a process named ") 1 2 (" must not shift the fields.
    r, w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child sets its name and waits to be killed
        os.close(r)
        with open("/proc/self/comm", "w") as f:
            f.write(") Z 1 2 (")
        os.write(w, b"x")
        os.pause()
    try:
        os.close(w)
        os.read(r, 1)
        with open(f"/proc/{child}/comm") as f:
            assert f.read().strip() == ") Z 1 2 ("
        assert isinstance(proc.start_time(child), int)
        st = proc.stat(child)
        assert st is not None and (st.comm, st.ppid) == (") Z 1 2 (", os.getpid()) and st.state != "Z"
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)
        os.close(r)


def test_proc_id_survives_only_while_the_same_process_runs() -> None:
    ident = proc.proc_id(os.getpid())
    assert ident.startswith(f"{os.getpid()} ") and proc.proc_alive(ident)
    pid, start = ident.split()
    assert not proc.proc_alive(f"{pid} {int(start) + 1}")  # the pid, reused by a later process
    child = os.fork()
    if child == 0:  # pragma: no cover
        os._exit(0)
    os.waitpid(child, 0)
    assert proc.proc_id(child) == f"{child} 0"
    assert not proc.proc_alive(proc.proc_id(child))
    for bad in ("", "12", "a b", "1 2 3"):
        assert not proc.proc_alive(bad)


# ------------------------------------------------------------------------------------------ mount flags

@pytest.mark.parametrize("options,expected", [
    # Flags apply in order: the last of a pair wins, as in mount(8).
    (["ro", "rw"], (0, 0, "")),
    (["rw", "ro"], (MS_RDONLY, 0, "")),
    (["rbind", "ro", "nosuid", "nodev", "noexec"], (MS_BIND | MS_REC | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                                     0, "")),
    (["noatime", "atime"], (0, 0, "")),
    (["noatime"], (MS_NOATIME, 0, "")),
    # Propagation is one type: the last one given is assigned, never ORed with the one before (which would
    # ask mount(2) for private and shared at once: EINVAL).
    (["rprivate", "shared"], (0, MS_SHARED, "")),
    (["bind", "rslave"], (MS_BIND, MS_SLAVE | MS_REC, "")),
    (["private"], (0, MS_PRIVATE, "")),
    # `defaults` and the mount_setattr words are neither flags nor file-system data.
    (["defaults"], (0, 0, "")),
    (["defaults", "ro", "rro", "recursive", "idmap"], (MS_RDONLY, 0, "")),
    # Everything else is the file system's, in order.
    (["nosuid", "size=64m", "mode=755"], (MS_NOSUID, 0, "size=64m,mode=755")),
    (["lowerdir=/a:/b", "upperdir=/u", "workdir=/w", "ro"], (MS_RDONLY, 0, "lowerdir=/a:/b,upperdir=/u,workdir=/w")),
    ([], (0, 0, "")),
])
def test_mount_options_to_flags(options: list[str], expected: tuple[int, int, str]) -> None:
    assert mountflags.parse(options) == expected


def test_mount_flags_match_the_kernel_headers() -> None:
    # <sys/mount.h> values, spelled out: a typo in the table would mount something else.
    assert (MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC) == (1, 2, 4, 8, 4096, 16384)
    assert (MS_PRIVATE, MS_SLAVE, MS_SHARED) == (262144, 524288, 1048576)
    for word, (set_, clear) in mountflags.FLAGS.items():
        assert bool(set_) != bool(clear), word


# ------------------------------------------------------------------------------------------ capabilities

def test_capability_names_follow_the_kernel_numbering() -> None:
    assert caps.NUMBERS["CAP_CHOWN"] == 0 and caps.NUMBERS["CAP_SYS_ADMIN"] == 21
    assert caps.NUMBERS["CAP_AUDIT_READ"] == 37 and caps.NUMBERS["CAP_CHECKPOINT_RESTORE"] == 40
    assert len(set(caps.NAMES)) == len(caps.NAMES)
    # The kernel knows no capability the table lacks (a newer kernel would need the table extended).
    assert caps.last_cap() <= len(caps.NAMES) - 1


def test_bounding_set_is_this_process_capbnd() -> None:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("CapBnd:"))
    assert caps.bounding_set() == int(line.split()[1], 16)


def test_host_capabilities_are_the_bounding_set_by_name() -> None:
    from ctrpy.runtime import oci

    names = oci.host_capabilities()
    bounding = caps.bounding_set()
    assert names == [n for n in caps.NAMES[:caps.last_cap() + 1] if bounding >> caps.NUMBERS[n] & 1]
    assert "CAP_CHOWN" in names


# ------------------------------------------------------------------------------------------ mountinfo

MOUNTINFO = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro\n"
    "36 22 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n"
    "40 22 0:35 / /run/x\\134y rw - tmpfs tmp\\040fs rw,size=64k\n"
    "41 22 0:36 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n"
    "garbage line\n"
    "42 22 0:37 / /no-separator rw\n"
    "43 22 0:38 / /o rw - overlay overlay\n"
)


def test_mountinfo_fields_optional_fields_and_escapes() -> None:
    mounts = mountinfo.parse(MOUNTINFO)
    assert [m.mount_id for m in mounts] == [22, 36, 40, 41, 43]
    root, spaced, tmp, cg, overlay = mounts
    assert root == mountinfo.MountInfo(22, 1, "8:1", "/", "/", "rw,relatime", "ext4", "/dev/sda1",
                                       "rw,errors=remount-ro")
    # Two optional fields before the separator do not shift the fields after it.
    assert (spaced.root, spaced.mount_point, spaced.fstype, spaced.source) == \
        ("/mnt1", "/mnt/with space", "ext3", "/dev/root")
    assert (tmp.mount_point, tmp.source, tmp.super_options) == ("/run/x\\y", "tmp fs", "rw,size=64k")
    assert (cg.fstype, cg.super_options.split(",")) == ("cgroup", ["rw", "memory"])
    assert overlay.super_options == ""


def test_mountinfo_of_this_process_has_its_root() -> None:
    mounts = mountinfo.read()
    assert any(m.mount_point == "/" for m in mounts)
    assert mountinfo.unescape("a\\040b\\011c") == "a b\tc" and mountinfo.unescape("plain") == "plain"


# ------------------------------------------------------------------------------------------ identifiers

@pytest.mark.parametrize("name", ["a", "web-1", "a.b_c-d", "A9", "x" * 76])
def test_identifiers_accepted(name: str) -> None:
    assert identifiers.validate(name, "container id") == name


@pytest.mark.parametrize("name", ["", "-a", "a-", "a..b", "a/b", "a b", "é", "x" * 77, "a--b", ".", "web\n",
                                  "\nweb"])
def test_identifiers_refused_with_what_they_are(name: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="invalid lease id"):
        identifiers.validate(name, "lease id")


def test_runtime_ids_are_runc_s_wider_rule() -> None:
    assert identifiers.RUNTIME_ID_PATTERN.match("a--b+c")
    assert not identifiers.RUNTIME_ID_PATTERN.match("a/b")
    assert not identifiers.RUNTIME_ID_PATTERN.match("x" * 129)
    # A trailing newline would end up in state paths and cgroup names: refused, by both rules.
    assert not identifiers.RUNTIME_ID_PATTERN.match("abc\n")
    assert not identifiers.PATTERN.match("abc\n")


# ------------------------------------------------------------------------------------------ registry options

def test_registry_options_come_from_config_defaults_then_file_then_flags() -> None:
    from ctrpy.runtime.config import DEFAULTS, Config, default_config
    from ctrpy.runtime.remotes import pull_deadline, registry_options

    reg = registry_options(default_config())
    assert reg.hosts_dirs == DEFAULTS["registry"]["config_path"].split(":")
    assert (reg.progress_timeout, reg.max_concurrent) == (DEFAULTS["registry"]["progress_timeout"],
                                                          DEFAULTS["registry"]["max_concurrent_downloads"])
    assert pull_deadline(default_config()) == DEFAULTS["registry"]["deadline"]
    # A config that lacks the section still gets the defaults (nothing repeated at the call sites).
    assert registry_options(Config({})).max_concurrent == DEFAULTS["registry"]["max_concurrent_downloads"]
    config = Config({"registry": {"config_path": "/a:/b", "max_concurrent_uploads": 7, "progress_timeout": 5,
                                  "deadline": 30}})
    up = registry_options(config, uploads=True)
    assert (up.hosts_dirs, up.max_concurrent, up.progress_timeout) == (["/a", "/b"], 7, 5.0)
    assert pull_deadline(config) == 30.0
    # Flags win where given; None and empty lists are "not given".
    flagged = registry_options(config, hosts_dirs=("/c",), progress_timeout=None, tlscacert=(), plain_http=True)
    assert (flagged.hosts_dirs, flagged.progress_timeout, flagged.tlscacert, flagged.plain_http) == \
        (["/c"], 5.0, [], True)
    with pytest.raises(TypeError):
        registry_options(config, no_such_flag=1)


# ------------------------------------------------------------------------------------------ RFC 3339

def test_rfc3339_round_trip_and_the_store_format() -> None:
    import re
    import time

    from ctrpy.runtime import timefmt

    stamp = timefmt.now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", stamp)
    assert abs(timefmt.parse(stamp) - time.time()) < 5
    assert timefmt.format_ns(1_000_000_001) == "1970-01-01T00:00:01.000000001Z"
    assert timefmt.parse_ns("1970-01-01T00:00:01.000000001Z") == 1_000_000_001
    assert timefmt.format(1704207845.5) == "2024-01-02T15:04:05.500000000Z"
    assert timefmt.format_seconds(1704207845.9) == "2024-01-02T15:04:05Z"


@pytest.mark.parametrize("stamp,seconds", [
    ("2024-01-02T15:04:05Z", 1704207845.0),
    ("2024-01-02T15:04:05", 1704207845.0),                  # no zone: UTC, as the store never omits it
    ("2024-01-02T15:04:05.25Z", 1704207845.25),            # fewer fraction digits than nanoseconds
    ("2024-01-02T15:04:05.123456789123Z", 1704207845.123456789),  # more: cut at nanoseconds
    ("2024-01-02T16:04:05+01:00", 1704207845.0),           # offsets, as image configs may carry
    ("2024-01-02T10:04:05.5-05:00", 1704207845.5),
    ("2024-02-29T00:00:00Z", 1709164800.0),                # leap day
    ("1970-01-01T00:00:00Z", 0.0),
])
def test_rfc3339_parse(stamp: str, seconds: float) -> None:
    from ctrpy.runtime import timefmt

    assert timefmt.parse(stamp) == pytest.approx(seconds, abs=1e-9)


@pytest.mark.parametrize("stamp", ["", "yesterday", "2024-01-02", "2024-13-02T15:04:05Z", "2024-01-02T25:04:05Z",
                                   "2024-01-02T15:04:05.Z", "2024-01-02T15:04:05+0100", "2024-01-02T15:04:05ZZ",
                                   "2024-01-02X15:04:05Z"])
def test_rfc3339_refuses_what_is_not(stamp: str) -> None:
    from ctrpy.runtime import timefmt

    with pytest.raises(ValueError):
        timefmt.parse(stamp)
