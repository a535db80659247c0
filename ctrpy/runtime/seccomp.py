"""Seccomp profiles: ctrpy's default (containerd's and moby's), profile files, and the flat form the helper
compiles.

    default_profile(bounding_caps)  linux.seccomp for a container with these bounding capabilities: the
                                    containerd/moby default (contrib/seccomp/seccomp_default.go): deny by
                                    EPERM, allow ~370 syscalls, more for CAP_SYS_ADMIN, CAP_SYS_PTRACE...,
                                    clone without namespace flags and clone3 -> ENOSYS for the others
    load_profile(path, caps)        a profile file: OCI linux.seccomp JSON, or docker's format (archMap,
                                    includes/excludes by caps, arch and kernel), made OCI
    flatten(seccomp)                OCI linux.seccomp -> helper.SeccompProfile (one rule per syscall with its
                                    conditions ANDed), refusing what the built-in runtime cannot do

Only `flatten` needs the C helper; the data is plain Python so that `oci.default_spec()` stays cheap.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctrpy.runtime import errors

_ALLOWED = """
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 clock_adjtime
clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep
clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 epoll_create epoll_create1
epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchown
fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64
fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat getcpu getcwd
getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer
getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32
getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid
getuid32 getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy
io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit io_uring_enter
io_uring_register io_uring_setup ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64
madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2
mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv msgsnd msync munlock munlockall munmap nanosleep
newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 poll ppoll ppoll_time64
prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read
readahead readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr
rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo
rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity
sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send sendfile
sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32
setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid
setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr
shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socket socketcall
socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs sysinfo tee
tgkill time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill
truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork
vmsplice wait4 waitid waitpid write writev
"""

# personality(2) values every container may set (PER_LINUX, PER_LINUX32, UNAME26 variants, query).
_PERSONALITIES = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)

# Machine -> (the OCI architectures a filter covers, syscalls only that machine has).
_ARCHES: dict[str, tuple[tuple[str, ...], str]] = {
    "x86_64": (("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"), "arch_prctl modify_ldt"),
    "aarch64": (("SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"),
                "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls"),
    "armv7l": (("SCMP_ARCH_ARM",),
               "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls"),
    "i686": ((), "modify_ldt"),
    "ppc64le": ((), "sync_file_range2 swapcontext"),
    "s390x": (("SCMP_ARCH_S390", "SCMP_ARCH_S390X"), "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr"),
    "riscv64": (("SCMP_ARCH_RISCV64",), "riscv_flush_icache"),
}

# Bounding capability -> the syscalls it unlocks.
_BY_CAP = {
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
    "CAP_SYS_ADMIN": "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount "
                     "mount_setattr move_mount name_to_handle_at open_tree perf_event_open quotactl quotactl_fd "
                     "setdomainname sethostname setns syslog umount umount2 unshare",
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "delete_module init_module finit_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
}

# CLONE_NEWNS | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWCGROUP: clone with none of these is allowed.
_CLONE_NS_FLAGS = 0x7E020000
ENOSYS = 38


def _allow(names: str) -> dict[str, Any]:
    return {"names": names.split(), "action": "SCMP_ACT_ALLOW"}


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        parts = os.uname().release.split(".")
        return (int(parts[0]), int(parts[1].split("-")[0])) >= (major, minor)
    except (ValueError, IndexError):
        return False


def default_profile(bounding_caps: Sequence[str], machine: str | None = None) -> dict[str, Any]:
    """The containerd/moby default profile (OCI linux.seccomp) for a container with `bounding_caps`."""
    machine = machine or os.uname().machine
    arches, arch_syscalls = _ARCHES.get(machine, ((), ""))
    syscalls = [_allow(_ALLOWED)]
    syscalls += [{"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]} for v in _PERSONALITIES]
    if _kernel_at_least(4, 8):
        syscalls.append(_allow("ptrace"))
    if arch_syscalls:
        syscalls.append(_allow(arch_syscalls))
    caps = set(bounding_caps)
    syscalls += [_allow(_BY_CAP[c]) for c in _BY_CAP if c in caps]
    if "CAP_SYS_ADMIN" not in caps:
        index = 1 if machine.startswith("s390") else 0
        syscalls.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                         "args": [{"index": index, "value": _CLONE_NS_FLAGS, "valueTwo": 0,
                                   "op": "SCMP_CMP_MASKED_EQ"}]})
        # glibc falls back to clone on ENOSYS, never on EPERM (moby#42681).
        syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return {"defaultAction": "SCMP_ACT_ERRNO", "architectures": list(arches), "syscalls": syscalls}


def _matches(cond: dict[str, Any], caps: set[str], arch: str) -> bool:
    """A docker profile's includes/excludes block: every listed criterion holds."""
    if cond.get("caps") and not set(cond["caps"]) & caps:
        return False
    if cond.get("arches") and arch not in cond["arches"]:
        return False
    if cond.get("minKernel"):
        major, _, minor = str(cond["minKernel"]).partition(".")
        if not _kernel_at_least(int(major), int(minor.split(".")[0] or 0)):
            return False
    return True


def _from_docker(profile: dict[str, Any], caps: set[str], machine: str) -> dict[str, Any]:
    go_arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)
    native = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}.get(machine, "")
    arches: list[str] = []
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            arches = [native] + list(entry.get("subArchitectures") or [])
    out: dict[str, Any] = {k: v for k, v in profile.items()
                           if k in ("defaultAction", "defaultErrnoRet", "flags", "listenerPath", "listenerMetadata")}
    out["architectures"] = arches or list(profile.get("architectures") or [])
    out["syscalls"] = []
    for rule in profile.get("syscalls") or []:
        if rule.get("includes") and not _matches(rule["includes"], caps, go_arch):
            continue
        excludes = rule.get("excludes") or {}
        if excludes and any(_matches({k: v}, caps, go_arch) for k, v in excludes.items() if v):
            continue
        names = list(rule.get("names") or ([rule["name"]] if rule.get("name") else []))
        out["syscalls"].append({k: v for k, v in {**rule, "names": names}.items()
                                if k not in ("includes", "excludes", "comment", "name")})
    return out


def load_profile(path: str | os.PathLike[str], bounding_caps: Sequence[str] = ()) -> dict[str, Any]:
    """A profile file as OCI linux.seccomp (docker's format is converted for `bounding_caps`)."""
    try:
        profile = json.loads(Path(path).read_text())
    except OSError as exc:
        raise errors.from_oserror(exc, f"seccomp profile {path}") from None
    except ValueError as exc:
        raise errors.InvalidArgument(f"seccomp profile {path} is not valid JSON: {exc}") from None
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise errors.InvalidArgument(f"seccomp profile {path}: no defaultAction")
    if "archMap" in profile or any("includes" in r or "excludes" in r for r in profile.get("syscalls") or []):
        return _from_docker(profile, set(bounding_caps), os.uname().machine)
    return profile


# --- the flat form the helper compiles -----------------------------------------------------------------

_FLAGS = ("SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW")


def _action(name: Any, errno_ret: Any, default_errno: int, where: str) -> tuple[int, int]:
    from ctrpy.runtime import helper

    kinds = helper.seccomp_actions()
    if name == "SCMP_ACT_NOTIFY":
        raise errors.NotImplemented_(f"seccomp: {where}: SCMP_ACT_NOTIFY (a seccomp agent) is not supported "
                                     "by the built-in runtime")
    if name not in kinds:
        raise errors.InvalidArgument(f"seccomp: {where}: unknown action {name!r}")
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        return kinds[name], int(errno_ret) if errno_ret is not None else default_errno
    if errno_ret is not None:
        raise errors.InvalidArgument(f"seccomp: {where}: errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE")
    return kinds[name], 0


def flatten(seccomp: dict[str, Any]) -> Any:
    """OCI linux.seccomp -> helper.SeccompProfile, with runc's semantics: each name becomes its own rule;
    conditions on distinct arguments are ANDed, several on one argument become one rule each (ORed)."""
    from ctrpy.runtime import helper

    eperm = 1
    for key in ("listenerPath", "listenerMetadata"):
        if seccomp.get(key):
            raise errors.NotImplemented_(f"seccomp: {key} (a seccomp agent) is not supported by the built-in runtime")
    default_errno = int(seccomp.get("defaultErrnoRet") or eperm)
    default = _action(seccomp.get("defaultAction"), None, default_errno, "defaultAction")
    flags = 0
    for flag in seccomp.get("flags") or []:
        if flag not in _FLAGS:
            raise errors.NotImplemented_(f"seccomp: flag {flag!r} is not supported by the built-in runtime")
        flags |= helper.seccomp_flag(flag)
    arches = []
    for arch in seccomp.get("architectures") or []:
        if not str(arch).startswith("SCMP_ARCH_"):
            raise errors.InvalidArgument(f"seccomp: unknown architecture {arch!r}")
        arches.append(str(arch)[len("SCMP_ARCH_"):].lower())
    ops = helper.seccomp_operators()
    rules = []
    for i, rule in enumerate(seccomp.get("syscalls") or []):
        names = rule.get("names") or []
        where = f"syscalls[{i}] ({', '.join(names[:3])}{'...' if len(names) > 3 else ''})"
        kind, value = _action(rule.get("action"), rule.get("errnoRet"), eperm, where)
        args = []
        for arg in rule.get("args") or []:
            if arg.get("op") not in ops:
                raise errors.InvalidArgument(f"seccomp: {where}: unknown operator {arg.get('op')!r}")
            args.append((int(arg.get("index", 0)), ops[arg["op"]], int(arg.get("value", 0)),
                         int(arg.get("valueTwo", 0))))
        distinct = len({a[0] for a in args}) == len(args)
        groups = [args] if distinct else [[a] for a in args]
        for name in names:
            for group in groups:
                rules.append(helper.SeccompRule(str(name), kind, value, group))
    return helper.SeccompProfile(default[0], default[1], arches, rules, flags)
