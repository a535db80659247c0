/* ctrpy helper: clone a container process, set up its filesystem and credentials, exec.
 *
 * The parent side (ctrpy_spawn, ctrpy_start) runs inside the Python process; the child side runs in the
 * cloned process and never returns: it ends in execve or in _exit after reporting an error.  Errors after
 * the clone travel as fixed-size `struct sync_msg` records (smaller than PIPE_BUF, so atomic) over a CLOEXEC
 * pipe: a successful execve closes the pipe, which is the parent's "it runs" signal.  */
#define _GNU_SOURCE
#include "helper.h"
#include "hooks.h"
#include "inroot.h"
#include "userns.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

#define UNUSED __attribute__ ((unused))
#define cleanup_close __attribute__ ((cleanup (close_fdp)))

static void
close_fdp (int *fd)
{
  if (*fd >= 0)
    {
      int saved = errno;
      close (*fd);
      errno = saved;
    }
}

enum
{
  MSG_WARNING = 1,
  MSG_PID = 2,
  MSG_READY = 3,
  MSG_ERROR = 4,
  MSG_HOOKS = 5, /* the child waits before pivot_root: run prestart/createRuntime, then write a byte */
};

struct sync_msg
{
  int type;
  int errno_;
  int pid;
  char text[256];
};

const char *
ctrpy_helper_version (void)
{
  return CTRPY_HELPER_VERSION;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Child side.  */

struct child_ctx
{
  const ctrpy_spec_t *spec;
  int sync_fd;    /* write end of the sync pipe */
  int fifo_fd;    /* O_PATH fd of exec.fifo, or -1 */
  int console_fd; /* connected console socket, or -1 */
  int hooks_fd;   /* read end of the hooks pipe, or -1 */
  int userns_fd;  /* with a new user namespace: our end of the socket the creator says "maps written" on */
};

static int child_rootfs_tree = -1;   /* the rootfs copy from the creator (idmapped or not), to move_mount */
static int child_rootfs_target = -1; /* where it goes: the rootfs, opened while still host root */
#define MAX_BIND_FDS 256
static int child_bind_fds[MAX_BIND_FDS]; /* in a user namespace: bind sources opened while still host root */
static int child_have_bind_fds;
/* The mount namespace was joined by path: the rootfs and bind sources are looked up there, not on the host.  */
static const char *child_joined_mnt;

static void
send_msg (int fd, int type, int errno_, int pid, const char *fmt, ...)
{
  struct sync_msg m;
  va_list ap;
  memset (&m, 0, sizeof (m));
  m.type = type;
  m.errno_ = errno_;
  m.pid = pid;
  if (fmt)
    {
      va_start (ap, fmt);
      vsnprintf (m.text, sizeof (m.text), fmt, ap);
      va_end (ap);
    }
  while (write (fd, &m, sizeof (m)) < 0 && errno == EINTR)
    ;
}

static int child_report_fd = -1;
static int child_sync_fd = -1; /* to the creator, for MSG_HOOKS */
static int child_hooks_fd = -1; /* from the creator: one byte once the runtime hooks ran */

/* Report an error to whoever waits for us (the creator, or `start` once we wait on the fifo) and die.  */
static void __attribute__ ((noreturn, format (printf, 2, 3)))
child_fail (int errno_, const char *fmt, ...)
{
  struct sync_msg m;
  va_list ap;
  memset (&m, 0, sizeof (m));
  m.type = MSG_ERROR;
  m.errno_ = errno_;
  va_start (ap, fmt);
  vsnprintf (m.text, sizeof (m.text), fmt, ap);
  va_end (ap);
  if (child_report_fd >= 0)
    while (write (child_report_fd, &m, sizeof (m)) < 0 && errno == EINTR)
      ;
  _exit (errno_ == ENOENT ? 127 : 126);
}

static int
write_file (const char *path, const char *data)
{
  cleanup_close int fd = open (path, O_WRONLY | O_CLOEXEC);
  size_t len = strlen (data);
  if (fd < 0)
    return -1;
  if (write (fd, data, len) != (ssize_t) len)
    return -1;
  return 0;
}

/* Open `dest` inside the root (see inroot.c), creating it as `create` says; dies on failure.  */
static int
open_in_root (int rootfd, const char *dest, int create, const char *what)
{
  int fd = inroot_open (rootfd, dest, create);
  if (fd < 0)
    child_fail (errno, "%s %s", what, dest);
  return fd;
}

static unsigned long
statvfs_to_ms (unsigned long f)
{
  unsigned long flags = 0;
  if (f & ST_NOSUID)
    flags |= MS_NOSUID;
  if (f & ST_NODEV)
    flags |= MS_NODEV;
  if (f & ST_NOEXEC)
    flags |= MS_NOEXEC;
  if (f & ST_NOATIME)
    flags |= MS_NOATIME;
  if (f & ST_NODIRATIME)
    flags |= MS_NODIRATIME;
  if (f & ST_RELATIME)
    flags |= MS_RELATIME;
  return flags;
}

/* Remount a bind mount read-only, keeping nosuid/nodev/noexec/atime flags it already has.  */
static int
remount_ro (const char *path, unsigned long extra)
{
  struct statvfs sv;
  unsigned long keep = 0;
  if (statvfs (path, &sv) == 0)
    keep = statvfs_to_ms (sv.f_flag);
  return mount (NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | keep | extra, NULL);
}

/* Mount `m` on its destination resolved inside the root.  The target is named through its fd
   ("/proc/self/fd/N"), never by a path the image could redirect between the check and the use; after
   mounting, the destination is opened again so that remounts act on the new mount.  */
static int
is_bind_mount (const ctrpy_mount_t *m)
{
  return (m->flags & MS_BIND) || (m->type && strcmp (m->type, "bind") == 0);
}

static void
do_mount (int rootfd, const ctrpy_mount_t *m, int index)
{
  char target[64], source_fd[64];
  int is_bind = is_bind_mount (m);
  unsigned long flags = m->flags;
  cleanup_close int fd = -1;

  if (is_bind)
    {
      struct stat st;
      const char *source = m->source;
      if (child_have_bind_fds && index < MAX_BIND_FDS && child_bind_fds[index] >= 0)
        source = inroot_fdpath (source_fd, sizeof (source_fd), child_bind_fds[index]);
      if (stat (source, &st) < 0)
        child_fail (errno, "bind mount source %s", m->source);
      fd = open_in_root (rootfd, m->dest, S_ISDIR (st.st_mode) ? INROOT_DIR : INROOT_FILE, "mount destination");
      if (mount (source, inroot_fdpath (target, sizeof (target), fd), NULL, MS_BIND | (flags & MS_REC), NULL) < 0)
        child_fail (errno, "bind mount %s on %s", m->source, m->dest);
      flags &= ~(MS_BIND | MS_REC);
      if (flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC))
        {
          close (fd);
          fd = open_in_root (rootfd, m->dest, INROOT_RESOLVE, "mount destination");
          inroot_fdpath (target, sizeof (target), fd);
        }
      if (flags & MS_RDONLY)
        {
          if (remount_ro (target, flags & ~MS_RDONLY) < 0)
            child_fail (errno, "remount %s read-only", m->dest);
        }
      else if (flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC))
        {
          if (mount (NULL, target, NULL, MS_BIND | MS_REMOUNT | flags, NULL) < 0)
            child_fail (errno, "remount %s", m->dest);
        }
    }
  else
    {
      const char *type = m->type ? m->type : "none";
      fd = open_in_root (rootfd, m->dest, INROOT_DIR, "mount destination");
      if (mount (m->source, inroot_fdpath (target, sizeof (target), fd), type, flags, m->data) < 0)
        {
          /* Without a private network or ipc namespace the kernel refuses a new sysfs or mqueue; runc
             falls back to binding the host's, and so do we.  */
          int e = errno;
          const char *host = NULL;
          if ((e == EPERM || e == EBUSY) && strcmp (type, "sysfs") == 0)
            host = "/sys";
          else if ((e == EPERM || e == EBUSY) && strcmp (type, "mqueue") == 0)
            host = "/dev/mqueue";
          if (host == NULL || mount (host, target, NULL, MS_BIND | MS_REC, NULL) < 0)
            child_fail (e, "mount %s (%s) on %s", m->source ? m->source : type, type, m->dest);
          if (flags & MS_RDONLY)
            {
              close (fd);
              fd = open_in_root (rootfd, m->dest, INROOT_RESOLVE, "mount destination");
              if (remount_ro (inroot_fdpath (target, sizeof (target), fd), 0) < 0)
                child_fail (errno, "remount %s read-only", m->dest);
            }
        }
    }
  if (m->propagation)
    {
      close (fd);
      fd = open_in_root (rootfd, m->dest, INROOT_RESOLVE, "mount destination");
      if (mount (NULL, inroot_fdpath (target, sizeof (target), fd), NULL, m->propagation, NULL) < 0)
        child_fail (errno, "set propagation of %s", m->dest);
    }
}

/* Split "/a/b/c" into its parent "/a/b" (in `parent`) and "c"; refuses names that are not a plain entry.  */
static const char *
split_parent (const char *path, char *parent, size_t size)
{
  const char *slash = strrchr (path, '/');
  const char *base = slash ? slash + 1 : path;
  if (*base == '\0' || strcmp (base, ".") == 0 || strcmp (base, "..") == 0)
    child_fail (EINVAL, "device path %s: not a file name", path);
  snprintf (parent, size, "%.*s", slash ? (int) (slash - path) : 0, path);
  if (parent[0] == '\0')
    snprintf (parent, size, "/");
  return base;
}

static void
make_device (int rootfd, const ctrpy_device_t *d)
{
  char parent[PATH_MAX], fdpath[64];
  mode_t kind = d->type == 'b' ? S_IFBLK : d->type == 'p' ? S_IFIFO : S_IFCHR;
  const char *base = split_parent (d->path, parent, sizeof (parent));
  cleanup_close int dir = open_in_root (rootfd, parent, INROOT_DIR, "device directory");
  cleanup_close int node = -1;

  /* Whatever the image has there (a symlink to a host file included) is replaced, never followed.  */
  if (unlinkat (dir, base, 0) < 0 && errno != ENOENT)
    child_fail (errno, "remove %s", d->path);
  if (mknodat (dir, base, kind | (d->mode & 07777), makedev (d->major, d->minor)) == 0)
    {
      node = openat (dir, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
      /* mknod applies the umask; the spec's mode is meant literally.  */
      if (node < 0 || chmod (inroot_fdpath (fdpath, sizeof (fdpath), node), d->mode & 07777) < 0
          || fchownat (node, "", d->uid, d->gid, AT_EMPTY_PATH) < 0)
        child_fail (errno, "chmod/chown device %s", d->path);
      return;
    }
  if (errno != EPERM)
    child_fail (errno, "mknod %s", d->path);
  /* No CAP_MKNOD (e.g. in a user namespace): bind the host's node instead.  */
  {
    int fd = openat (dir, base, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
      child_fail (errno, "create %s", d->path);
    close (fd);
    node = openat (dir, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (node < 0 || mount (d->path, inroot_fdpath (fdpath, sizeof (fdpath), node), NULL, MS_BIND, NULL) < 0)
      child_fail (errno, "bind device %s", d->path);
  }
}

static void
dev_symlinks (int rootfd)
{
  static const char *links[][2] = {
    { "/proc/self/fd", "fd" },       { "/proc/self/fd/0", "stdin" }, { "/proc/self/fd/1", "stdout" },
    { "/proc/self/fd/2", "stderr" }, { "pts/ptmx", "ptmx" },
  };
  cleanup_close int dev = open_in_root (rootfd, "/dev", INROOT_RESOLVE, "open");
  for (size_t i = 0; i < sizeof (links) / sizeof (links[0]); i++)
    {
      if (strcmp (links[i][1], "ptmx") == 0)
        unlinkat (dev, "ptmx", 0); /* a mknod'ed ptmx would talk to the host's devpts instance */
      if (symlinkat (links[i][0], dev, links[i][1]) < 0 && errno != EEXIST)
        child_fail (errno, "symlink /dev/%s", links[i][1]);
    }
}

static int
dev_is_mounted (const ctrpy_spec_t *s)
{
  for (int i = 0; i < s->n_mounts; i++)
    if (strcmp (s->mounts[i].dest, "/dev") == 0)
      return 1;
  return 0;
}

static void
pivot (int newroot)
{
  cleanup_close int oldroot = open ("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (oldroot < 0)
    child_fail (errno, "open /");
  if (fchdir (newroot) < 0)
    child_fail (errno, "chdir rootfs");
  /* pivot_root(".", ".") stacks the old root on top of the new one; unmounting "." then drops it
     without needing a put_old directory inside a possibly read-only rootfs.  */
  if (syscall (SYS_pivot_root, ".", ".") < 0)
    child_fail (errno, "pivot_root");
  if (fchdir (oldroot) < 0)
    child_fail (errno, "chdir old root");
  /* The old root must not propagate our unmount back to the host.  */
  if (mount (NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
    child_fail (errno, "make old root rslave");
  if (umount2 (".", MNT_DETACH) < 0)
    child_fail (errno, "unmount old root");
  if (chdir ("/") < 0)
    child_fail (errno, "chdir /");
}

/* Masked and read-only paths, after pivot_root: resolved inside the new root with magic links refused
   (a /proc/self/... link must not name something else); a path the container lacks is skipped.  */
static int
open_existing (int rootfd, const char *path, const char *what)
{
  int fd = inroot_open (rootfd, path, INROOT_RESOLVE);
  if (fd < 0 && errno != ENOENT)
    child_fail (errno, "%s %s", what, path);
  return fd;
}

static void
protect_paths (const ctrpy_spec_t *s)
{
  cleanup_close int rootfd = open ("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  char target[64];
  if (rootfd < 0)
    child_fail (errno, "open /");
  for (int i = 0; i < s->n_readonly; i++)
    {
      cleanup_close int fd = open_existing (rootfd, s->readonly[i], "readonly path");
      if (fd < 0)
        continue;
      inroot_fdpath (target, sizeof (target), fd);
      if (mount (target, target, NULL, MS_BIND | MS_REC, NULL) < 0)
        child_fail (errno, "bind readonly path %s", s->readonly[i]);
      close (fd);
      fd = open_existing (rootfd, s->readonly[i], "readonly path");
      if (fd < 0 || remount_ro (inroot_fdpath (target, sizeof (target), fd), MS_REC) < 0)
        child_fail (errno, "remount %s read-only", s->readonly[i]);
    }
  for (int i = 0; i < s->n_masked; i++)
    {
      cleanup_close int fd = open_existing (rootfd, s->masked[i], "masked path");
      struct stat st;
      int r;
      if (fd < 0)
        continue;
      if (fstat (fd, &st) < 0)
        child_fail (errno, "stat masked path %s", s->masked[i]);
      inroot_fdpath (target, sizeof (target), fd);
      if (S_ISDIR (st.st_mode))
        r = mount ("tmpfs", target, "tmpfs", MS_RDONLY, "size=0k");
      else
        r = mount ("/dev/null", target, NULL, MS_BIND, NULL);
      if (r < 0)
        child_fail (errno, "mask %s", s->masked[i]);
    }
}

/* Hooks inside the container process: a failure ends it (reported like any setup error).  */
static void
run_child_hooks (const ctrpy_hook_t *hooks, int n, const char *state, const char *kind)
{
  for (int i = 0; i < n; i++)
    {
      ctrpy_err_t err;
      if (ctrpy_run_hook (&hooks[i], state, getpid (), kind, &err) < 0)
        child_fail (err.errno_, "%s", err.msg);
    }
}

/* Let the creator run prestart and createRuntime hooks now that the namespaces and mounts exist.  */
static void
wait_for_runtime_hooks (const ctrpy_spec_t *s)
{
  char byte;
  ssize_t n;
  if (s->n_runtime_hooks <= 0)
    return;
  send_msg (child_sync_fd, MSG_HOOKS, 0, 0, NULL);
  do
    n = read (child_hooks_fd, &byte, 1);
  while (n < 0 && errno == EINTR);
  if (n != 1)
    _exit (126); /* a hook failed: the creator reports it and kills us */
}

/* The nearest mount point at or above `path` becomes private (in our namespace only): MS_PRIVATE fails
   with EINVAL on a directory that is not a mount point, so walk up until it succeeds.  */
static void
make_parent_mount_private (const char *path)
{
  char dir[PATH_MAX];
  if (snprintf (dir, sizeof (dir), "%s", path) >= (int) sizeof (dir))
    child_fail (ENAMETOOLONG, "rootfs path %s", path);
  for (;;)
    {
      if (mount (NULL, dir, NULL, MS_PRIVATE, NULL) == 0)
        return;
      if (errno != EINVAL || strcmp (dir, "/") == 0)
        child_fail (errno, "make the mount holding %s private", path);
      char *slash = strrchr (dir, '/');
      if (slash == dir)
        dir[1] = '\0';
      else
        *slash = '\0';
    }
}

static void
setup_rootfs (const ctrpy_spec_t *s)
{
  const char *rootfs = s->rootfs;
  unsigned long prop = s->rootfs_propagation;
  cleanup_close int rootfd = -1;

  /* Nothing we mount may leak back to the host: start from a slave (or private) copy of the tree, unless
     the spec asks for rshared (as runc: host and container then share mounts made below shared volumes).  */
  if (prop == 0)
    prop = MS_SLAVE | MS_REC;
  if (mount (NULL, "/", NULL, prop, NULL) < 0)
    child_fail (errno, "make / %s", (prop & MS_SHARED)    ? "rshared"
                                    : (prop & MS_PRIVATE) ? "rprivate"
                                                          : "rslave");
  if (child_rootfs_tree >= 0)
    {
      char path[64];
      /* In a user namespace: the creator's (idmapped) copy of the rootfs goes on the directory we opened
         before giving up host root (the path may cross directories only host root may search).  */
      if (syscall (SYS_move_mount, child_rootfs_tree, "", child_rootfs_target, "",
                   0x00000004 | 0x00000040 /* MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH */) < 0)
        child_fail (errno, "move the rootfs copy to %s", rootfs);
      rootfd = child_rootfs_tree;
      if (mount (NULL, inroot_fdpath (path, sizeof (path), rootfd), NULL, MS_PRIVATE, NULL) < 0)
        child_fail (errno, "make rootfs private");
    }
  else
    {
      /* With a shared tree the mount holding the rootfs goes private first (runc's
         rootfsParentMountPrivate): the bind below, and all mounted inside it, must not reach the host.  */
      if (prop & MS_SHARED)
        make_parent_mount_private (rootfs);
      if (mount (rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
        child_fail (errno, "bind rootfs %s%s%s%s", rootfs, child_joined_mnt ? " (in the mount namespace " : "",
                    child_joined_mnt ? child_joined_mnt : "", child_joined_mnt ? ")" : "");
      /* pivot_root refuses a shared new root.  */
      if (mount (NULL, rootfs, NULL, MS_PRIVATE, NULL) < 0)
        child_fail (errno, "make rootfs private");
      rootfd = open (rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
  if (rootfd < 0)
    child_fail (errno, "open rootfs %s", rootfs);

  for (int i = 0; i < s->n_mounts; i++)
    do_mount (rootfd, &s->mounts[i], i);
  for (int i = 0; i < s->n_devices; i++)
    make_device (rootfd, &s->devices[i]);
  if (dev_is_mounted (s))
    dev_symlinks (rootfd);

  wait_for_runtime_hooks (s);
  run_child_hooks (s->create_hooks, s->n_create_hooks, s->hook_state, "createContainer");
  pivot (rootfd);
  if (s->rootfs_propagation & MS_SHARED)
    if (mount (NULL, "/", NULL, s->rootfs_propagation, NULL) < 0)
      child_fail (errno, "set rootfs propagation");

  for (int i = 0; i < s->n_sysctl; i++)
    {
      char path[PATH_MAX];
      snprintf (path, sizeof (path), "/proc/sys/%s", s->sysctl_keys[i]);
      for (char *p = path + strlen ("/proc/sys/"); *p; p++)
        if (*p == '.')
          *p = '/';
      if (write_file (path, s->sysctl_values[i]) < 0)
        child_fail (errno, "sysctl %s", s->sysctl_keys[i]);
    }

  protect_paths (s);
  if (s->rootfs_readonly && remount_ro ("/", 0) < 0)
    child_fail (errno, "remount rootfs read-only");
}

static void
add_warning (int fd, int errno_, const char *fmt, ...)
{
  char text[256];
  va_list ap;
  va_start (ap, fmt);
  vsnprintf (text, sizeof (text), fmt, ap);
  va_end (ap);
  send_msg (fd, MSG_WARNING, errno_, 0, "%s", text);
}

/* This machine (and many CI runners) lack CAP_SYS_RESOURCE: raising a hard limit then fails.  Keep the
   current hard limit and say so, instead of failing the container.  */
static void
set_rlimits (const ctrpy_spec_t *s, int sync_fd)
{
  for (int i = 0; i < s->n_rlimits; i++)
    {
      struct rlimit rl = { .rlim_cur = s->rlimits[i].soft, .rlim_max = s->rlimits[i].hard };
      if (setrlimit (s->rlimits[i].resource, &rl) == 0)
        continue;
      if (errno != EPERM)
        child_fail (errno, "setrlimit %d", s->rlimits[i].resource);
      {
        struct rlimit cur;
        if (getrlimit (s->rlimits[i].resource, &cur) < 0)
          child_fail (errno, "getrlimit %d", s->rlimits[i].resource);
        rl.rlim_max = cur.rlim_max < rl.rlim_max ? cur.rlim_max : rl.rlim_max;
        rl.rlim_cur = rl.rlim_cur > rl.rlim_max ? rl.rlim_max : rl.rlim_cur;
        if (setrlimit (s->rlimits[i].resource, &rl) < 0)
          child_fail (errno, "setrlimit %d", s->rlimits[i].resource);
        add_warning (sync_fd, EPERM, "rlimit %d: hard limit %llu clamped to %llu (no CAP_SYS_RESOURCE)",
                     s->rlimits[i].resource, (unsigned long long) s->rlimits[i].hard,
                     (unsigned long long) rl.rlim_max);
      }
    }
}

static void
set_oom (const ctrpy_spec_t *s, int sync_fd)
{
  char buf[32];
  if (!s->set_oom)
    return;
  snprintf (buf, sizeof (buf), "%d", s->oom_score_adj);
  if (write_file ("/proc/self/oom_score_adj", buf) == 0)
    return;
  if (errno != EACCES && errno != EPERM)
    child_fail (errno, "set oom_score_adj %d", s->oom_score_adj);
  {
    char cur[32] = "";
    cleanup_close int fd = open ("/proc/self/oom_score_adj", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read (fd, cur, sizeof (cur) - 1) : -1;
    if (n > 0)
      cur[n - (cur[n - 1] == '\n')] = '\0';
    add_warning (sync_fd, EACCES, "oom_score_adj %d clamped to %s (no CAP_SYS_RESOURCE)", s->oom_score_adj,
                 n > 0 ? cur : "the current value");
  }
}

static int
send_fd (int sock, int fd)
{
  char byte = 0;
  struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
  union
  {
    char buf[CMSG_SPACE (sizeof (int))];
    struct cmsghdr align;
  } u;
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof (u.buf) };
  struct cmsghdr *cmsg = CMSG_FIRSTHDR (&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN (sizeof (int));
  memcpy (CMSG_DATA (cmsg), &fd, sizeof (int));
  return sendmsg (sock, &msg, 0) < 0 ? -1 : 0;
}

static void
setup_terminal (const ctrpy_spec_t *s, int console_fd)
{
  char name[64];
  cleanup_close int master = open ("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  int slave;
  if (master < 0)
    child_fail (errno, "open /dev/ptmx");
  if (unlockpt (master) < 0 || ptsname_r (master, name, sizeof (name)) != 0)
    child_fail (errno, "unlock pty");
  slave = open (name, O_RDWR | O_NOCTTY);
  if (slave < 0)
    child_fail (errno, "open %s", name);
  if (s->console_rows && s->console_cols)
    {
      struct winsize ws = { .ws_row = s->console_rows, .ws_col = s->console_cols };
      if (ioctl (master, TIOCSWINSZ, &ws) < 0)
        child_fail (errno, "set the console size");
    }
  if (fchown (slave, s->uid, -1) < 0 && errno != EPERM)
    child_fail (errno, "chown %s", name);
  if (console_fd >= 0 && send_fd (console_fd, master) < 0)
    child_fail (errno, "send the pty master to the console socket");
  if (setsid () < 0)
    child_fail (errno, "setsid");
  if (ioctl (slave, TIOCSCTTY, 0) < 0)
    child_fail (errno, "set controlling terminal");
  for (int i = 0; i < 3; i++)
    if (dup2 (slave, i) < 0)
      child_fail (errno, "dup2 pty");
  if (slave > 2)
    close (slave);
}

static void
set_credentials (const ctrpy_spec_t *s)
{
  struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
  struct __user_cap_data_struct data[2];

  if (s->set_caps)
    {
      for (int cap = 0; cap <= 63; cap++)
        if (!(s->cap_bounding & (1ULL << cap)) && prctl (PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
          {
            if (errno == EINVAL)
              break; /* past the kernel's last capability */
            child_fail (errno, "drop capability %d from the bounding set", cap);
          }
      /* Keep the permitted set across the uid change; capset below decides what stays.  */
      if (prctl (PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        child_fail (errno, "prctl PR_SET_KEEPCAPS");
    }
  if (setgroups (s->n_gids, (const gid_t *) s->gids) < 0)
    child_fail (errno, "setgroups");
  if (setresgid (s->gid, s->gid, s->gid) < 0)
    child_fail (errno, "setgid %u", s->gid);
  if (setresuid (s->uid, s->uid, s->uid) < 0)
    child_fail (errno, "setuid %u", s->uid);
  if (s->set_caps)
    {
      if (prctl (PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
        child_fail (errno, "prctl PR_SET_KEEPCAPS");
      memset (data, 0, sizeof (data));
      data[0].effective = (uint32_t) s->cap_effective;
      data[1].effective = (uint32_t) (s->cap_effective >> 32);
      data[0].permitted = (uint32_t) s->cap_permitted;
      data[1].permitted = (uint32_t) (s->cap_permitted >> 32);
      data[0].inheritable = (uint32_t) s->cap_inheritable;
      data[1].inheritable = (uint32_t) (s->cap_inheritable >> 32);
      if (syscall (SYS_capset, &hdr, data) < 0)
        child_fail (errno, "capset");
      if (prctl (PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
        child_fail (errno, "clear ambient capabilities");
      for (int cap = 0; cap <= 63; cap++)
        if ((s->cap_ambient & (1ULL << cap)) && prctl (PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
          {
            /* The kernel refuses an ambient cap not in permitted and inheritable; runc ignores it too.  */
            if (errno != EPERM && errno != EINVAL)
              child_fail (errno, "raise ambient capability %d", cap);
          }
    }
}

/* Load the compiled seccomp program.  */
static void
load_seccomp (const ctrpy_spec_t *s)
{
  struct sock_fprog prog = { .len = s->seccomp_len / sizeof (struct sock_filter),
                             .filter = (struct sock_filter *) s->seccomp_filter };
  if (s->seccomp_len <= 0)
    return;
  if (syscall (SYS_seccomp, SECCOMP_SET_MODE_FILTER, s->seccomp_flags, &prog) < 0)
    child_fail (errno, "load the seccomp filter");
}

/* The process environment, with HOME from the user's /etc/passwd entry (else "/") when it has none, as
   runc does.  Read in the container's root, before the uid change (passwd may not be world-readable).  */
static const char *const *
environment (const ctrpy_spec_t *s)
{
  static const char *env[1024];
  static char home[PATH_MAX + 8];
  static char passwd[65536];
  size_t n = 0;
  cleanup_close int fd = -1;
  ssize_t len = 0;

  for (; s->env && s->env[n]; n++)
    if (strncmp (s->env[n], "HOME=", 5) == 0)
      return s->env;
  if (n + 2 > sizeof (env) / sizeof (env[0]))
    return s->env;
  snprintf (home, sizeof (home), "HOME=/");
  fd = open ("/etc/passwd", O_RDONLY | O_CLOEXEC);
  if (fd >= 0)
    len = read (fd, passwd, sizeof (passwd) - 1);
  if (len > 0)
    {
      char *line, *save = NULL;
      passwd[len] = '\0';
      for (line = strtok_r (passwd, "\n", &save); line; line = strtok_r (NULL, "\n", &save))
        {
          /* name:password:uid:gid:gecos:home:shell */
          char *field[7] = { line };
          int k = 1;
          for (char *p = line; *p && k < 7; p++)
            if (*p == ':')
              {
                *p = '\0';
                field[k++] = p + 1;
              }
          if (k >= 6 && strtoul (field[2], NULL, 10) == s->uid && field[2][0] && field[5][0])
            {
              snprintf (home, sizeof (home), "HOME=%s", field[5]);
              break;
            }
        }
    }
  memcpy (env, s->env, n * sizeof (env[0]));
  env[n] = home;
  env[n + 1] = NULL;
  return env;
}

/* chdir to the process cwd resolved inside the root, as the container user: a magic link such as
   /proc/self/fd/N (an fd the runtime still holds, CVE-2024-21626) is refused.  */
static void
change_cwd (const char *cwd)
{
  cleanup_close int rootfd = open ("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  cleanup_close int fd = -1;
  if (rootfd < 0)
    child_fail (errno, "open /");
  fd = inroot_open (rootfd, cwd, INROOT_RESOLVE);
  if (fd < 0 || fchdir (fd) < 0)
    child_fail (errno, "chdir to cwd \"%s\"", cwd);
}

/* Find argv[0] the way execvp would, but with the container's PATH, and fail before `start` when it
   cannot be executed (as runc create does).  */
static const char *
lookup_exec (const ctrpy_spec_t *s, char *buf, size_t size)
{
  const char *name = s->argv[0];
  const char *path = NULL;
  int saw_eacces = 0;
  if (name == NULL || name[0] == '\0')
    child_fail (EINVAL, "no process arguments");
  if (strchr (name, '/'))
    {
      struct stat st;
      if (stat (name, &st) < 0)
        child_fail (errno, "exec \"%s\"", name);
      if (S_ISDIR (st.st_mode))
        child_fail (EACCES, "exec \"%s\" (a directory)", name);
      return name;
    }
  for (int i = 0; s->env && s->env[i]; i++)
    if (strncmp (s->env[i], "PATH=", 5) == 0)
      path = s->env[i] + 5;
  if (path == NULL)
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  while (*path)
    {
      const char *end = strchrnul (path, ':');
      size_t len = end - path;
      struct stat st;
      snprintf (buf, size, "%.*s/%s", (int) len, len ? path : ".", name);
      if (stat (buf, &st) == 0 && !S_ISDIR (st.st_mode))
        {
          if (access (buf, X_OK) == 0)
            return buf;
          saw_eacces = 1;
        }
      path = *end ? end + 1 : end;
    }
  child_fail (saw_eacces ? EACCES : ENOENT, "exec \"%s\"", name);
}

static void
reset_signals (void)
{
  sigset_t all;
  struct sigaction sa;
  memset (&sa, 0, sizeof (sa));
  sa.sa_handler = SIG_DFL;
  /* Python ignores SIGPIPE and SIGXFSZ; ignored signals survive execve, so put everything back.  glibc's
     sigaction refuses the signals it reserves for itself (32, 33), which a parent may still have ignored:
     reset those with the raw system call (the kernel's struct: handler, flags, restorer, mask).  */
  for (int sig = 1; sig < _NSIG; sig++)
    if (sigaction (sig, &sa, NULL) < 0 && errno == EINVAL && sig != SIGKILL && sig != SIGSTOP)
      {
        struct
        {
          void *handler;
          unsigned long flags;
          void *restorer;
          unsigned long mask[(_NSIG - 1) / (8 * sizeof (unsigned long))];
        } raw;
        memset (&raw, 0, sizeof (raw));
        syscall (SYS_rt_sigaction, sig, &raw, NULL, sizeof (raw.mask));
      }
  sigemptyset (&all);
  sigprocmask (SIG_SETMASK, &all, NULL);
}

/* Join the namespaces of s->ns_paths; returns an open fd for a pid namespace to join later (after the
   others, since it only applies to children), or -1.  */
static int
join_namespaces (const ctrpy_spec_t *s)
{
  int fds[16];
  int n = s->n_ns < 16 ? s->n_ns : 16;
  int pid_fd = -1;
  /* Open every path first: after joining the mount namespace the host's /proc is gone.  */
  for (int i = 0; i < n; i++)
    {
      fds[i] = open (s->ns_paths[i], O_RDONLY | O_CLOEXEC);
      if (fds[i] < 0)
        child_fail (errno, "open namespace %s", s->ns_paths[i]);
    }
  for (int i = 0; i < n; i++)
    {
      if (s->ns_types[i] == CLONE_NEWPID)
        {
          pid_fd = fds[i];
          continue;
        }
      if (setns (fds[i], s->ns_types[i]) < 0)
        child_fail (errno, "join namespace %s", s->ns_paths[i]);
      if (s->ns_types[i] == CLONE_NEWNS)
        child_joined_mnt = s->ns_paths[i];
      close (fds[i]);
    }
  return pid_fd;
}

static int
has_ns (const ctrpy_spec_t *s, int type)
{
  for (int i = 0; i < s->n_ns; i++)
    if (s->ns_types[i] == type)
      return 1;
  return 0;
}

/* Open what lies on host paths (the rootfs, bind sources) while we are still host root, which may search
   directories the namespace's root may not; then become that root.  In our final mount namespace.  */
static void
become_userns_root (const ctrpy_spec_t *s)
{
  if (s->rootfs)
    {
      child_rootfs_target = open (s->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (child_rootfs_target < 0)
        child_fail (errno, "open rootfs %s", s->rootfs);
      child_have_bind_fds = 1;
      for (int i = 0; i < s->n_mounts && i < MAX_BIND_FDS; i++)
        {
          child_bind_fds[i] = -1;
          if (is_bind_mount (&s->mounts[i]) && s->mounts[i].source)
            child_bind_fds[i] = open (s->mounts[i].source, O_PATH | O_CLOEXEC);
        }
    }
  if (setresgid (0, 0, 0) < 0 || setresuid (0, 0, 0) < 0)
    child_fail (errno, "become root in the user namespace (is 0 mapped in its uid and gid maps?)");
}

/* In a new user namespace we hold no id until the creator wrote the maps: wait for them (and the
   idmapped rootfs, if any), then become the namespace's root.  */
static void
wait_for_userns (int sock, const ctrpy_spec_t *s)
{
  char byte;
  struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
  union
  {
    char buf[CMSG_SPACE (sizeof (int))];
    struct cmsghdr align;
  } u;
  struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof (u.buf) };
  struct cmsghdr *cmsg;
  ssize_t n;
  do
    n = recvmsg (sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n != 1)
    _exit (126); /* the creator failed and reports why */
  cmsg = CMSG_FIRSTHDR (&msg);
  if (cmsg && cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS)
    memcpy (&child_rootfs_tree, CMSG_DATA (cmsg), sizeof (int));
  close (sock);
  if (s->userns_path == NULL)
    become_userns_root (s);
}

static int __attribute__ ((noreturn))
child_main (void *arg)
{
  struct child_ctx *ctx = arg;
  const ctrpy_spec_t *s = ctx->spec;
  char exe[PATH_MAX];
  const char *file;
  const char *const *env;
  int pid_ns;

  child_report_fd = ctx->sync_fd;
  child_sync_fd = ctx->sync_fd;
  child_hooks_fd = ctx->hooks_fd;
  reset_signals ();

  for (int i = 0; i < 3; i++)
    if (s->stdio[i] >= 0 && s->stdio[i] != i && dup2 (s->stdio[i], i) < 0)
      child_fail (errno, "dup2 stdio %d", i);

  /* Join the cgroup first, so every later allocation is charged to the container, and before a new
     cgroup namespace is made so that its root is the container's cgroup.  */
  for (int i = 0; i < s->n_cgroup_procs; i++)
    if (write_file (s->cgroup_procs[i], "0") < 0)
      child_fail (errno, "join cgroup %s", s->cgroup_procs[i]);

  if (ctx->userns_fd >= 0)
    wait_for_userns (ctx->userns_fd, s);

  pid_ns = join_namespaces (s);
  /* With a joined user namespace, the new namespaces are made now, so that they belong to it.  */
  if ((s->unshare_flags & ~CLONE_NEWPID) && unshare (s->unshare_flags & ~CLONE_NEWPID) < 0)
    child_fail (errno, "unshare namespaces");
  if (s->userns_path)
    become_userns_root (s);
  if (pid_ns >= 0 || (s->unshare_flags & CLONE_NEWPID))
    {
      /* setns into (or unshare of) a pid namespace only applies to children: fork once more; the middle
         process reports the real container pid and goes away, leaving it to the caller's subreaper.  */
      pid_t pid;
      if (pid_ns >= 0 && setns (pid_ns, CLONE_NEWPID) < 0)
        child_fail (errno, "join pid namespace");
      if (pid_ns < 0 && unshare (CLONE_NEWPID) < 0)
        child_fail (errno, "unshare pid namespace");
      if (pid_ns >= 0)
        close (pid_ns);
      /* Raw clone instead of fork(): glibc's fork takes locks (malloc's, via atfork) that another thread
         of the calling Python process may have held when we were cloned.  */
      pid = syscall (SYS_clone, SIGCHLD, 0, 0, 0, 0);
      if (pid < 0)
        child_fail (errno, "fork");
      if (pid > 0)
        {
          send_msg (ctx->sync_fd, MSG_PID, 0, pid, NULL);
          _exit (0);
        }
    }
  if ((s->clone_flags & CLONE_NEWCGROUP) && unshare (CLONE_NEWCGROUP) < 0)
    child_fail (errno, "unshare cgroup namespace");

  if (s->rootfs)
    setup_rootfs (s);
  if (s->hostname && sethostname (s->hostname, strlen (s->hostname)) < 0)
    child_fail (errno, "sethostname %s", s->hostname);
  if (s->domainname && setdomainname (s->domainname, strlen (s->domainname)) < 0)
    child_fail (errno, "setdomainname %s", s->domainname);

  if (s->terminal)
    setup_terminal (s, ctx->console_fd);
  else if (setsid () < 0 && errno != EPERM)
    child_fail (errno, "setsid");
  if (ctx->console_fd >= 0)
    close (ctx->console_fd);

  env = environment (s);
  set_rlimits (s, ctx->sync_fd);
  set_oom (s, ctx->sync_fd);
  /* Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we still have it (runc
     does the same; the profile then also applies to the few syscalls left before execve).  */
  if (!s->no_new_privs)
    load_seccomp (s);
  set_credentials (s);
  if (s->cwd && s->cwd[0])
    change_cwd (s->cwd);
  if (s->no_new_privs && prctl (PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    child_fail (errno, "prctl PR_SET_NO_NEW_PRIVS");
  file = lookup_exec (s, exe, sizeof (exe));

  /* Our fds must not leak into the container: everything above 2 closes on exec, including the pipes
     still needed until then.  */
  for (int fd = 3; fd < 3 + s->preserve_fds; fd++)
    {
      int flags = fcntl (fd, F_GETFD);
      if (flags >= 0 && fcntl (fd, F_SETFD, flags & ~FD_CLOEXEC) < 0)
        child_fail (errno, "preserve fd %d", fd);
    }
  if (syscall (SYS_close_range, 3 + (s->preserve_fds > 0 ? s->preserve_fds : 0), ~0U, CLOSE_RANGE_CLOEXEC) < 0)
    child_fail (errno, "close_range");
  if (s->umask >= 0)
    umask (s->umask & 0777);

  if (ctx->fifo_fd >= 0)
    {
      char path[64];
      int fd;
      send_msg (ctx->sync_fd, MSG_READY, 0, 0, NULL);
      close (ctx->sync_fd);
      child_report_fd = -1;
      snprintf (path, sizeof (path), "/proc/self/fd/%d", ctx->fifo_fd);
      /* Blocks until `start` opens the fifo for reading.  */
      fd = open (path, O_WRONLY | O_CLOEXEC);
      if (fd < 0)
        _exit (126);
      close (ctx->fifo_fd);
      child_report_fd = fd;
      send_msg (fd, MSG_READY, 0, 0, NULL);
    }
  run_child_hooks (s->start_hooks, s->n_start_hooks, s->hook_state_created, "startContainer");
  /* Last, so that none of the setup above is subject to the filter.  */
  if (s->no_new_privs)
    load_seccomp (s);
  execve (file, (char *const *) s->argv, (char *const *) env);
  child_fail (errno, "exec \"%s\"", s->argv[0]);
}

/* ------------------------------------------------------------------------------------------------------ */
/* Parent side.  */

static void
append_warning (ctrpy_result_t *res, const char *text)
{
  size_t used = strlen (res->warnings);
  snprintf (res->warnings + used, sizeof (res->warnings) - used, "%s%s", used ? "\n" : "", text);
}

static int
connect_console (const char *path, ctrpy_err_t *err)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  int fd;
  if (strlen (path) >= sizeof (addr.sun_path))
    return ctrpy_make_error (err, ENAMETOOLONG, "console socket %s", path);
  strcpy (addr.sun_path, path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return ctrpy_make_error (err, errno, "console socket");
  if (connect (fd, (struct sockaddr *) &addr, sizeof (addr)) < 0)
    {
      int e = errno;
      close (fd);
      return ctrpy_make_error (err, e, "connect to console socket %s", path);
    }
  return fd;
}

/* Write the new process's id maps, make its idmapped rootfs, and let it go on.  */
static int
release_userns (const ctrpy_spec_t *spec, int pid, int sock, ctrpy_err_t *err)
{
  cleanup_close int tree = -1;
  if (spec->userns_path == NULL && userns_write_maps (spec, pid, err) < 0)
    return -1;
  if (spec->rootfs)
    {
      char userns[64];
      const char *path = spec->userns_path;
      if (path == NULL)
        {
          snprintf (userns, sizeof (userns), "/proc/%d/ns/user", pid);
          path = userns;
        }
      tree = userns_rootfs_tree (spec->rootfs, spec->idmap_rootfs ? path : NULL, err);
      if (tree < 0)
        return -1;
    }
  if (tree >= 0 ? send_fd (sock, tree) < 0 : write (sock, "", 1) != 1)
    return ctrpy_make_error (err, errno, "release the container process");
  return 0;
}

int
ctrpy_spawn (const ctrpy_spec_t *spec, ctrpy_result_t *res, ctrpy_err_t *err)
{
  const size_t stack_size = 256 * 1024;
  struct child_ctx ctx = { .spec = spec, .sync_fd = -1, .fifo_fd = -1, .console_fd = -1, .hooks_fd = -1,
                           .userns_fd = -1 };
  cleanup_close int userns_parent = -1;
  cleanup_close int userns_child = -1;
  cleanup_close int rfd = -1;
  cleanup_close int hooks_rfd = -1;
  cleanup_close int hooks_wfd = -1;
  cleanup_close int fifo_fd = -1;
  cleanup_close int console_fd = -1;
  int fds[2];
  void *stack;
  pid_t pid, reported = 0, intermediate = 0;
  int ready = 0, failed = 0;

  memset (res, 0, sizeof (*res));
  if (spec->argv == NULL || spec->argv[0] == NULL)
    return ctrpy_make_error (err, EINVAL, "process args must not be empty");
  if (spec->terminal && spec->console_socket)
    {
      console_fd = connect_console (spec->console_socket, err);
      if (console_fd < 0)
        return -1;
    }
  if (spec->exec_fifo)
    {
      fifo_fd = open (spec->exec_fifo, O_PATH | O_CLOEXEC);
      if (fifo_fd < 0)
        return ctrpy_make_error (err, errno, "open exec fifo %s", spec->exec_fifo);
    }
  if (pipe2 (fds, O_CLOEXEC) < 0)
    return ctrpy_make_error (err, errno, "pipe");
  rfd = fds[0];
  ctx.sync_fd = fds[1];
  if (spec->n_runtime_hooks > 0)
    {
      int hfds[2];
      if (pipe2 (hfds, O_CLOEXEC) < 0)
        {
          close (fds[1]);
          return ctrpy_make_error (err, errno, "pipe");
        }
      hooks_rfd = hfds[0];
      hooks_wfd = hfds[1];
      ctx.hooks_fd = hooks_rfd;
    }
  if ((spec->clone_flags & CLONE_NEWUSER) || spec->userns_path)
    {
      int sp[2];
      if (socketpair (AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
        {
          close (fds[1]);
          return ctrpy_make_error (err, errno, "socketpair");
        }
      userns_parent = sp[0];
      userns_child = sp[1];
      ctx.userns_fd = userns_child;
    }
  ctx.fifo_fd = fifo_fd;
  ctx.console_fd = console_fd;

  stack = mmap (NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED)
    {
      close (fds[1]);
      return ctrpy_make_error (err, errno, "mmap clone stack");
    }
  /* A new cgroup namespace is made by the child after it joined its cgroup (see child_main).  */
  pid = clone (child_main, (char *) stack + stack_size, (spec->clone_flags & ~CLONE_NEWCGROUP) | SIGCHLD, &ctx);
  {
    int e = errno;
    munmap (stack, stack_size);
    close (fds[1]);
    errno = e;
  }
  if (pid < 0)
    return ctrpy_make_error (err, errno, "clone");
  if (userns_parent >= 0 && release_userns (spec, pid, userns_parent, err) < 0)
    {
      kill (pid, SIGKILL);
      while (waitpid (pid, NULL, 0) < 0 && errno == EINTR)
        ;
      return -1;
    }
  if (has_ns (spec, CLONE_NEWPID) || (spec->unshare_flags & CLONE_NEWPID))
    intermediate = pid;
  else
    reported = pid;

  for (;;)
    {
      struct sync_msg m;
      ssize_t n = read (rfd, &m, sizeof (m));
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      if (n != sizeof (m))
        {
          ctrpy_make_error (err, EIO, "short message from the container process");
          failed = 1;
          break;
        }
      m.text[sizeof (m.text) - 1] = '\0';
      if (m.type == MSG_WARNING)
        append_warning (res, m.text);
      else if (m.type == MSG_PID)
        reported = m.pid;
      else if (m.type == MSG_HOOKS)
        {
          /* prestart and createRuntime, in order, in our namespaces, with the container's host pid.  */
          for (int i = 0; !failed && i < spec->n_runtime_hooks; i++)
            if (ctrpy_run_hook (&spec->runtime_hooks[i], spec->hook_state, reported,
                                i < spec->n_prestart_hooks ? "prestart" : "createRuntime", err) < 0)
              failed = 1;
          if (failed)
            break;
          if (write (hooks_wfd, "", 1) != 1)
            {
              ctrpy_make_error (err, errno, "resume the container process after its hooks");
              failed = 1;
              break;
            }
        }
      else if (m.type == MSG_READY)
        {
          ready = 1;
          break;
        }
      else if (m.type == MSG_ERROR)
        {
          ctrpy_make_error (err, m.errno_, "%s", m.text);
          failed = 1;
          break;
        }
    }
  if (intermediate)
    while (waitpid (intermediate, NULL, 0) < 0 && errno == EINTR)
      ;
  if (!failed && spec->exec_fifo && !ready)
    {
      ctrpy_make_error (err, ECHILD, "container process exited during setup");
      failed = 1;
    }
  if (failed)
    {
      /* The init died (or will: it exits right after reporting); reap it if it is ours.  */
      if (reported > 0 && reported != intermediate)
        {
          kill (reported, SIGKILL);
          if (!intermediate)
            while (waitpid (reported, NULL, 0) < 0 && errno == EINTR)
              ;
        }
      return -1;
    }
  if (reported <= 0)
    return ctrpy_make_error (err, ECHILD, "container process exited before reporting its pid");
  res->pid = reported;
  return 0;
}

static int
pid_alive (int pid)
{
  char path[64], buf[512];
  cleanup_close int fd = -1;
  ssize_t n;
  char *p;
  snprintf (path, sizeof (path), "/proc/%d/stat", pid);
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  n = read (fd, buf, sizeof (buf) - 1);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  p = strrchr (buf, ')');
  return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

int
ctrpy_start (const char *fifo, int pid, ctrpy_err_t *err)
{
  /* Non-blocking open, so that an init that died before `start` cannot hang us; once the init has said it
     is about to exec, a blocking read ends exactly when execve closes its end (or carries its error).  */
  cleanup_close int fd = open (fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  int got_ready = 0;
  if (fd < 0)
    return ctrpy_make_error (err, errno, "open exec fifo %s", fifo);
  for (;;)
    {
      struct sync_msg m;
      ssize_t n;
      if (!got_ready)
        {
          struct pollfd p = { .fd = fd, .events = POLLIN };
          int r = poll (&p, 1, 100);
          if (r < 0 && errno == EINTR)
            continue;
          if (r < 0)
            return ctrpy_make_error (err, errno, "poll exec fifo");
          if (r == 0 || !(p.revents & POLLIN))
            {
              if (!pid_alive (pid))
                return ctrpy_make_error (err, ESRCH, "container process exited before start");
              continue;
            }
        }
      n = read (fd, &m, sizeof (m));
      if (n < 0 && (errno == EINTR || errno == EAGAIN))
        continue;
      if (n < 0)
        return ctrpy_make_error (err, errno, "read exec fifo");
      if (n == 0)
        {
          if (got_ready)
            return 0;
          if (!pid_alive (pid))
            return ctrpy_make_error (err, ESRCH, "container process exited before start");
          continue;
        }
      if (n != sizeof (m))
        return ctrpy_make_error (err, EIO, "short message from the container process");
      m.text[sizeof (m.text) - 1] = '\0';
      if (m.type == MSG_ERROR)
        return ctrpy_make_error (err, m.errno_, "%s", m.text);
      if (m.type == MSG_READY && !got_ready)
        {
          got_ready = 1;
          if (fcntl (fd, F_SETFL, 0) < 0)
            return ctrpy_make_error (err, errno, "fcntl exec fifo");
        }
    }
}

int
ctrpy_set_subreaper (ctrpy_err_t *err)
{
  if (prctl (PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
    return ctrpy_make_error (err, errno, "prctl PR_SET_CHILD_SUBREAPER");
  return 0;
}
