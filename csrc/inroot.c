/* In-root path resolution, as runc and crun do since CVE-2021-30465.
 *
 * A rootfs comes from an image, so its symlinks are hostile: "/etc -> /host/dir" must not make us create
 * /host/dir/hostname.  Every path inside the root is opened here as an O_PATH fd, with symlinks and ".."
 * resolved as if the root were "/", and callers then act through that fd (mknodat, "/proc/self/fd/N" as a
 * mount target) so that nothing is resolved twice.  */
#define _GNU_SOURCE
#include "inroot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

#define MAX_LINKS 40

static int use_openat2 = 1;

void
ctrpy_inroot_set_openat2 (int enabled)
{
  use_openat2 = enabled;
}

const char *
inroot_fdpath (char *buf, unsigned long size, int fd)
{
  snprintf (buf, size, "/proc/self/fd/%d", fd);
  return buf;
}

static void
close_keep_errno (int fd)
{
  int saved = errno;
  if (fd >= 0)
    close (fd);
  errno = saved;
}

static int
same_inode (int a, const struct stat *b)
{
  struct stat st;
  return fstat (a, &st) == 0 && st.st_dev == b->st_dev && st.st_ino == b->st_ino;
}

/* Create the missing component `name` in `dir`: a directory, or an empty file when it is the last one
   and the caller asked for a file.  O_EXCL|O_NOFOLLOW: a symlink raced in is never followed.  */
static int
create_component (int dir, const char *name, int as_file)
{
  if (as_file)
    {
      int fd = openat (dir, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
      if (fd < 0)
        return errno == EEXIST ? 0 : -1;
      close (fd);
      return 0;
    }
  if (mkdirat (dir, name, 0755) < 0 && errno != EEXIST)
    return -1;
  return 0;
}

/* The userspace walk: one component at a time, each opened O_PATH|O_NOFOLLOW relative to the directory
   reached so far; a symlink's target is spliced in front of what remains (from the root if absolute).
   A /proc magic link reads as a plain path here, which is then resolved inside the root as well.  */
static int
walk (int rootfd, const char *path, int create)
{
  char rest[PATH_MAX];
  char comp[NAME_MAX + 1];
  struct stat root_st;
  int links = 0;
  int cur;
  char *p;

  if (fstat (rootfd, &root_st) < 0)
    return -1;
  if (strlen (path) >= sizeof (rest))
    {
      errno = ENAMETOOLONG;
      return -1;
    }
  strcpy (rest, path);
  cur = fcntl (rootfd, F_DUPFD_CLOEXEC, 3);
  if (cur < 0)
    return -1;
  p = rest;
  for (;;)
    {
      struct stat st;
      char *end, *next;
      size_t len;
      int last, fd;

      while (*p == '/')
        p++;
      if (*p == '\0')
        return cur;
      end = strchrnul (p, '/');
      len = end - p;
      if (len > NAME_MAX)
        {
          close (cur);
          errno = ENAMETOOLONG;
          return -1;
        }
      memcpy (comp, p, len);
      comp[len] = '\0';
      p = end;
      for (next = p; *next == '/'; next++)
        ;
      last = *next == '\0';

      if (strcmp (comp, ".") == 0)
        continue;
      if (strcmp (comp, "..") == 0)
        {
          if (same_inode (cur, &root_st))
            continue; /* ".." of the root is the root */
          fd = openat (cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
          close_keep_errno (cur);
          if (fd < 0)
            return -1;
          cur = fd;
          continue;
        }
      fd = openat (cur, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0 && errno == ENOENT && create != INROOT_RESOLVE)
        {
          if (create_component (cur, comp, last && create == INROOT_FILE) < 0)
            {
              close_keep_errno (cur);
              return -1;
            }
          fd = openat (cur, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        }
      if (fd < 0 || fstat (fd, &st) < 0)
        {
          close_keep_errno (fd);
          close_keep_errno (cur);
          return -1;
        }
      if (S_ISLNK (st.st_mode))
        {
          char target[PATH_MAX];
          char spliced[PATH_MAX];
          ssize_t n = readlinkat (fd, "", target, sizeof (target) - 1);
          close_keep_errno (fd);
          if (n < 0 || ++links > MAX_LINKS)
            {
              if (n >= 0)
                errno = ELOOP;
              close_keep_errno (cur);
              return -1;
            }
          target[n] = '\0';
          if ((size_t) snprintf (spliced, sizeof (spliced), "%s/%s", target, p) >= sizeof (spliced))
            {
              close (cur);
              errno = ENAMETOOLONG;
              return -1;
            }
          strcpy (rest, spliced);
          p = rest;
          if (target[0] == '/')
            {
              close (cur);
              cur = fcntl (rootfd, F_DUPFD_CLOEXEC, 3);
              if (cur < 0)
                return -1;
            }
          continue;
        }
      if (!last && !S_ISDIR (st.st_mode))
        {
          close (fd);
          close (cur);
          errno = ENOTDIR;
          return -1;
        }
      close (cur);
      cur = fd;
    }
}

static int
try_openat2 (int rootfd, const char *path)
{
  struct open_how how = { .flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
  for (int attempt = 0; attempt < 16; attempt++)
    {
      int fd = syscall (SYS_openat2, rootfd, path, &how, sizeof (how));
      /* EAGAIN: a rename or mount somewhere on the host raced with a ".." lookup; try again.  */
      if (fd >= 0 || errno != EAGAIN)
        return fd;
    }
  return -1;
}

int
inroot_open (int rootfd, const char *path, int create)
{
  if (use_openat2)
    {
      int fd = try_openat2 (rootfd, path);
      if (fd >= 0)
        return fd;
      if (errno == ENOSYS || errno == EPERM || errno == E2BIG || errno == EAGAIN)
        use_openat2 = errno == EAGAIN; /* no openat2 here (or a seccomp filter refuses it) */
      else if (errno != ENOENT || create == INROOT_RESOLVE)
        return -1;
    }
  /* Missing components to create (or no openat2): the walk is just as strict, one step at a time.  */
  return walk (rootfd, path, create);
}
