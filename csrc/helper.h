/* ctrpy helper: the small C part of ctrpy (namespaces, mounts, pivot_root, exec).
 *
 * Conventions (crun's in miniature): every fallible function is `int f (..., ctrpy_err_t *err)` and returns
 * >= 0 on success, < 0 on failure with err->errno_ and err->msg set.  Python passes flat structs, no JSON:
 * policy (which mounts, which caps, clamping decisions it can make up front) stays in Python, mechanism
 * stays here.  Errors raised after the clone come back over a CLOEXEC pipe as {errno, msg}.
 *
 * What Python sees lies between "cffi:begin" and "cffi:end" comment lines: the cffi binding is generated
 * from these regions (csrc/cffi_cdef.py), so each declaration lives here only.  */
#ifndef CTRPY_HELPER_H
#define CTRPY_HELPER_H

#include <stddef.h>
#include <stdint.h>

#define CTRPY_HELPER_VERSION "0.2.0"

/* cffi:begin */
typedef struct
{
  int errno_;
  char msg[256];
} ctrpy_err_t;
/* cffi:end */

/* Fill *err (errno and a formatted message) and return -1 (csrc/error.c).  */
int ctrpy_make_error (ctrpy_err_t *err, int errno_, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));

/* cffi:begin */
/* One mount of the OCI spec, already translated: `flags` are MS_* without propagation bits,
   `propagation` is MS_SHARED/MS_SLAVE/MS_PRIVATE/MS_UNBINDABLE (+MS_REC) applied after mounting.  */
typedef struct
{
  const char *type; /* NULL or "bind" for bind mounts */
  const char *source;
  const char *dest; /* absolute, inside the container */
  const char *data;
  unsigned long flags;
  unsigned long propagation;
} ctrpy_mount_t;

typedef struct
{
  const char *path; /* absolute, inside the container */
  int type;         /* 'c', 'b', 'p' (fifo) */
  unsigned int major, minor, mode, uid, gid;
} ctrpy_device_t;

typedef struct
{
  int resource;
  uint64_t soft, hard;
} ctrpy_rlimit_t;

/* One OCI hook: path, argv (NULL: just the path), env (NULL: empty), timeout in seconds (0: none).  */
typedef struct
{
  const char *path;
  const char **argv;
  const char **env;
  int timeout;
} ctrpy_hook_t;

/* One line of a uid_map/gid_map.  */
typedef struct
{
  uint32_t container_id, host_id, size;
} ctrpy_idmap_t;

typedef struct
{
  int clone_flags; /* CLONE_NEW* namespaces to create */
  int n_ns;        /* namespaces to join (setns) */
  const char **ns_paths;
  const int *ns_types;

  /* With CLONE_NEWUSER: the maps the creator writes, and whether it gives the process an idmapped
     copy of the rootfs (else the rootfs is expected to be owned by the mapped ids already).  */
  int n_uid_maps;
  const ctrpy_idmap_t *uid_maps;
  int n_gid_maps;
  const ctrpy_idmap_t *gid_maps;
  int idmap_rootfs;
  /* A user namespace joined by path (it is also in ns_paths, first): then the namespaces to create are
     unshare_flags, made after joining it so that they belong to it; clone_flags keeps only NEWCGROUP.  */
  const char *userns_path;
  int unshare_flags;

  const char *rootfs; /* NULL: no filesystem setup (exec into a running container) */
  int rootfs_readonly;
  unsigned long rootfs_propagation; /* 0: MS_SLAVE|MS_REC, as runc */
  int n_mounts;
  const ctrpy_mount_t *mounts;
  int n_devices;
  const ctrpy_device_t *devices;
  int n_masked;
  const char **masked;
  int n_readonly;
  const char **readonly;
  int n_sysctl;
  const char **sysctl_keys;
  const char **sysctl_values;
  const char *hostname;
  const char *domainname;

  int n_rlimits;
  const ctrpy_rlimit_t *rlimits;
  int set_oom;
  int oom_score_adj;
  int set_caps;
  uint64_t cap_effective, cap_permitted, cap_inheritable, cap_bounding, cap_ambient;
  int no_new_privs;
  uint32_t uid, gid;
  int umask; /* -1: leave it */
  int n_gids;
  const uint32_t *gids;
  const char *cwd;
  const char **env;  /* NULL-terminated */
  const char **argv; /* NULL-terminated */

  int n_cgroup_procs; /* cgroup.procs files to join before anything else */
  const char **cgroup_procs;
  /* A seccomp BPF program (struct sock_filter[], from ctrpy_seccomp_compile) and its seccomp(2)
     SECCOMP_FILTER_FLAG_* flags; loaded right before execve (with no_new_privs), else before the
     capabilities are dropped, as runc does.  */
  const void *seccomp_filter;
  int seccomp_len; /* bytes; 0: no filter */
  unsigned int seccomp_flags;

  int stdio[3]; /* -1: inherit the caller's */
  int preserve_fds; /* fds 3 .. 3+preserve_fds-1 stay open in the container (runc --preserve-fds) */
  int terminal;
  unsigned short console_rows, console_cols; /* initial pty size; 0: leave the kernel's default */
  const char *console_socket; /* with terminal: the pty master is sent here (SCM_RIGHTS) */
  const char *exec_fifo;      /* create: wait here until `start`; NULL: exec right away */

  /* OCI hooks, each with the state JSON on stdin ("%d": the pid, "%%": a "%").  prestart + createRuntime
     run from ctrpy_spawn in the runtime's namespaces while the container process waits before pivot_root;
     createContainer run in the container process before pivot_root; startContainer after `start`, right
     before execve.  A failing one fails the spawn (or the start).  */
  int n_runtime_hooks;
  const ctrpy_hook_t *runtime_hooks; /* the first n_prestart_hooks are prestart, the rest createRuntime */
  int n_prestart_hooks;
  int n_create_hooks;
  const ctrpy_hook_t *create_hooks;
  int n_start_hooks;
  const ctrpy_hook_t *start_hooks;
  const char *hook_state;         /* status "creating" */
  const char *hook_state_created; /* status "created", for startContainer */
} ctrpy_spec_t;

typedef struct
{
  int pid; /* host pid of the container process */
  char warnings[1024]; /* newline-separated; settings clamped instead of failing */
} ctrpy_result_t;

const char *ctrpy_helper_version (void);

/* Clone the container process from `spec`.  With spec->exec_fifo, return once it is set up and waiting on
   the fifo (runc create); without, return once it has exec'd (runc exec -d) or failed to.  */
int ctrpy_spawn (const ctrpy_spec_t *spec, ctrpy_result_t *res, ctrpy_err_t *err);

/* Release a process waiting on `fifo` (runc start) and report whether its execve worked.  `pid` is watched
   so that a process that died before being started does not block us forever.  */
int ctrpy_start (const char *fifo, int pid, ctrpy_err_t *err);

/* Compile a flattened seccomp profile into a BPF program in buf (at most `size` bytes); *len gets its size.  */
typedef struct ctrpy_seccomp_s ctrpy_seccomp_t;
int ctrpy_seccomp_compile (const ctrpy_seccomp_t *profile, unsigned char *buf, size_t size, size_t *len,
                           ctrpy_err_t *err);

/* Make the caller the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER).  */
int ctrpy_set_subreaper (ctrpy_err_t *err);
/* cffi:end */

#endif
