"""cffi build script for ctrpy's C helper (out-of-line API mode), run by `pip install` via setup.py.

The cdef below is the whole C surface Python sees; keep it in step with csrc/helper.h.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

CDEF = """
typedef struct { int errno_; char msg[256]; } ctrpy_err_t;
typedef struct {
  const char *type; const char *source; const char *dest; const char *data;
  unsigned long flags; unsigned long propagation;
} ctrpy_mount_t;
typedef struct { const char *path; int type; unsigned int major, minor, mode, uid, gid; } ctrpy_device_t;
typedef struct { int resource; uint64_t soft, hard; } ctrpy_rlimit_t;
typedef struct { const char *path; const char **argv; const char **env; int timeout; } ctrpy_hook_t;
typedef struct { uint32_t container_id, host_id, size; } ctrpy_idmap_t;
typedef struct {
  int clone_flags;
  int n_ns; const char **ns_paths; const int *ns_types;
  int n_uid_maps; const ctrpy_idmap_t *uid_maps; int n_gid_maps; const ctrpy_idmap_t *gid_maps; int idmap_rootfs;
  const char *userns_path; int unshare_flags;
  const char *rootfs; int rootfs_readonly; unsigned long rootfs_propagation;
  int n_mounts; const ctrpy_mount_t *mounts;
  int n_devices; const ctrpy_device_t *devices;
  int n_masked; const char **masked;
  int n_readonly; const char **readonly;
  int n_sysctl; const char **sysctl_keys; const char **sysctl_values;
  const char *hostname; const char *domainname;
  int n_rlimits; const ctrpy_rlimit_t *rlimits;
  int set_oom; int oom_score_adj;
  int set_caps; uint64_t cap_effective, cap_permitted, cap_inheritable, cap_bounding, cap_ambient;
  int no_new_privs;
  uint32_t uid, gid; int umask; int n_gids; const uint32_t *gids;
  const char *cwd; const char **env; const char **argv;
  int n_cgroup_procs; const char **cgroup_procs;
  const void *seccomp_filter; int seccomp_len; unsigned int seccomp_flags;
  int stdio[3]; int preserve_fds; int terminal; unsigned short console_rows, console_cols;
  const char *console_socket; const char *exec_fifo;
  int n_runtime_hooks; const ctrpy_hook_t *runtime_hooks; int n_prestart_hooks;
  int n_create_hooks; const ctrpy_hook_t *create_hooks;
  int n_start_hooks; const ctrpy_hook_t *start_hooks;
  const char *hook_state; const char *hook_state_created;
} ctrpy_spec_t;
typedef struct { int pid; char warnings[1024]; } ctrpy_result_t;
typedef struct { unsigned int index; int op; uint64_t value, value_two; } ctrpy_seccomp_arg_t;
typedef struct {
  const char *name; int action; uint32_t value; int n_args; const ctrpy_seccomp_arg_t *args;
} ctrpy_seccomp_rule_t;
typedef struct ctrpy_seccomp_s {
  int default_action; uint32_t default_value;
  int n_arches; const char **arches;
  int n_rules; const ctrpy_seccomp_rule_t *rules;
} ctrpy_seccomp_t;

const char *ctrpy_helper_version (void);
int ctrpy_spawn (const ctrpy_spec_t *spec, ctrpy_result_t *res, ctrpy_err_t *err);
int ctrpy_start (const char *fifo, int pid, ctrpy_err_t *err);
int ctrpy_set_subreaper (ctrpy_err_t *err);
/* csrc/pause.c (CRI pod sandboxes) */
int ctrpy_pause_spawn (int clone_flags, const char *hostname, int *pid_out, ctrpy_err_t *err);

/* cgroup v2 device controller (csrc/bpf_devices.h) */
typedef struct { int allow; char type; int64_t major, minor; unsigned int access; } ctrpy_dev_rule_t;
int ctrpy_bpf_devices_set (const char *cgroup_dir, const ctrpy_dev_rule_t *rules, int n_rules, ctrpy_err_t *err);
int ctrpy_bpf_devices_query (const char *cgroup_dir, uint32_t *ids, int max, ctrpy_err_t *err);
void ctrpy_inroot_set_openat2 (int enabled);
int ctrpy_run_hook (const ctrpy_hook_t *hook, const char *state_fmt, int pid, const char *kind, ctrpy_err_t *err);
int ctrpy_seccomp_compile (const ctrpy_seccomp_t *profile, unsigned char *buf, size_t size, size_t *len,
                           ctrpy_err_t *err);

#define CTRPY_SCMP_ACT_KILL ...
#define CTRPY_SCMP_ACT_KILL_PROCESS ...
#define CTRPY_SCMP_ACT_TRAP ...
#define CTRPY_SCMP_ACT_ERRNO ...
#define CTRPY_SCMP_ACT_TRACE ...
#define CTRPY_SCMP_ACT_ALLOW ...
#define CTRPY_SCMP_ACT_LOG ...
#define CTRPY_SCMP_CMP_NE ...
#define CTRPY_SCMP_CMP_LT ...
#define CTRPY_SCMP_CMP_LE ...
#define CTRPY_SCMP_CMP_EQ ...
#define CTRPY_SCMP_CMP_GE ...
#define CTRPY_SCMP_CMP_GT ...
#define CTRPY_SCMP_CMP_MASKED_EQ ...
#define CTRPY_SECCOMP_MAX_BYTES ...
#define SECCOMP_FILTER_FLAG_TSYNC ...
#define SECCOMP_FILTER_FLAG_LOG ...
#define SECCOMP_FILTER_FLAG_SPEC_ALLOW ...

#define CLONE_NEWNS ...
#define CLONE_NEWUTS ...
#define CLONE_NEWIPC ...
#define CLONE_NEWUSER ...
#define CLONE_NEWPID ...
#define CLONE_NEWNET ...
#define CLONE_NEWCGROUP ...
#define CLONE_NEWTIME ...
"""


def _require_compiler() -> None:
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        sys.stderr.write(
            f"error: ctrpy needs a C compiler to build its helper, and {cc!r} was not found.\n"
            "       On Debian/Ubuntu: apt-get install gcc python3-dev\n"
        )
        raise SystemExit(1)


def _require_libseccomp() -> None:
    """libseccomp compiles the seccomp profiles: without its header and library (as the compiler sees
    them), say which package to install instead of failing half way through the build."""
    import subprocess
    import tempfile

    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(cc + ["-x", "c", "-", "-lseccomp", "-o", os.path.join(tmp, "probe")],
                           input="#include <seccomp.h>\nint main (void) { return seccomp_api_get () < 0; }\n",
                           capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(
            "error: ctrpy's helper applies seccomp profiles with libseccomp, and the compiler cannot find it\n"
            "       (seccomp.h, -lseccomp). On Debian/Ubuntu: apt-get install libseccomp-dev\n"
        )
        raise SystemExit(1)


_require_compiler()
_require_libseccomp()

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "ctrpy._helper",
    '#define _GNU_SOURCE\n#include <sched.h>\n#include <linux/seccomp.h>\n#include "helper.h"\n'
    '#include "hooks.h"\n#include "inroot.h"\n#include "seccomp_profile.h"\n#include "bpf_devices.h"\n',
    sources=[os.path.relpath(os.path.join(HERE, name))
             for name in ("helper.c", "error.c", "hooks.c", "inroot.c", "seccomp.c", "userns.c", "pause.c",
                         "bpf_devices.c")],
    libraries=["seccomp"],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-O2", "-Wall", "-fvisibility=hidden", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
