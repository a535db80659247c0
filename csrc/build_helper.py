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
typedef struct {
  int clone_flags;
  int n_ns; const char **ns_paths; const int *ns_types;
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
  const void *seccomp_filter; int seccomp_len;
  int stdio[3]; int preserve_fds; int terminal; unsigned short console_rows, console_cols;
  const char *console_socket; const char *exec_fifo;
} ctrpy_spec_t;
typedef struct { int pid; char warnings[1024]; } ctrpy_result_t;

const char *ctrpy_helper_version (void);
int ctrpy_spawn (const ctrpy_spec_t *spec, ctrpy_result_t *res, ctrpy_err_t *err);
int ctrpy_start (const char *fifo, int pid, ctrpy_err_t *err);
int ctrpy_set_subreaper (ctrpy_err_t *err);
void ctrpy_inroot_set_openat2 (int enabled);

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


_require_compiler()

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "ctrpy._helper",
    '#define _GNU_SOURCE\n#include <sched.h>\n#include "helper.h"\n#include "inroot.h"\n',
    sources=[os.path.relpath(os.path.join(HERE, name)) for name in ("helper.c", "inroot.c")],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-O2", "-Wall", "-fvisibility=hidden", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
