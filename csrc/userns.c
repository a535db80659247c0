/* User namespaces, the creator's side (it holds the privileges the container process gave up).  */
#define _GNU_SOURCE
#include "userns.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef MOUNT_ATTR_IDMAP
#define MOUNT_ATTR_IDMAP 0x00100000
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

/* Kept local: linux/mount.h of older headers lacks it.  */
struct ctrpy_mount_attr
{
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};

static int
write_map (int pid, const char *name, int n, const ctrpy_idmap_t *maps, ctrpy_err_t *err)
{
  char path[64], text[4096];
  size_t used = 0;
  int fd;
  for (int i = 0; i < n; i++)
    {
      int w = snprintf (text + used, sizeof (text) - used, "%u %u %u\n", maps[i].container_id, maps[i].host_id,
                        maps[i].size);
      if (w < 0 || (size_t) w >= sizeof (text) - used)
        return ctrpy_make_error (err, E2BIG, "%s: too many mappings", name);
      used += w;
    }
  snprintf (path, sizeof (path), "/proc/%d/%s", pid, name);
  fd = open (path, O_WRONLY | O_CLOEXEC);
  if (fd < 0)
    return ctrpy_make_error (err, errno, "open %s", path);
  if (write (fd, text, used) != (ssize_t) used)
    {
      int e = errno;
      close (fd);
      return ctrpy_make_error (err, e, "write %s (linux.%s)", path, strcmp (name, "uid_map") == 0 ? "uidMappings"
                                                                                       : "gidMappings");
    }
  close (fd);
  return 0;
}

int
userns_write_maps (const ctrpy_spec_t *s, int pid, ctrpy_err_t *err)
{
  if (write_map (pid, "uid_map", s->n_uid_maps, s->uid_maps, err) < 0)
    return -1;
  return write_map (pid, "gid_map", s->n_gid_maps, s->gid_maps, err);
}

int
userns_rootfs_tree (const char *rootfs, const char *userns_path, ctrpy_err_t *err)
{
  struct ctrpy_mount_attr attr = { .attr_set = MOUNT_ATTR_IDMAP };
  const char *path = userns_path;
  int userns, tree;

  tree = syscall (SYS_open_tree, AT_FDCWD, rootfs, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
  if (tree < 0)
    return ctrpy_make_error (err, errno, "rootfs: open_tree %s", rootfs);
  if (path == NULL)
    return tree;
  userns = open (path, O_RDONLY | O_CLOEXEC);
  if (userns < 0)
    {
      int e = errno;
      close (tree);
      return ctrpy_make_error (err, e, "open %s", path);
    }
  attr.userns_fd = userns;
  if (syscall (SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof (attr)) < 0)
    {
      int e = errno;
      close (userns);
      close (tree);
      return ctrpy_make_error (err, e, "idmapped rootfs: mount_setattr %s", rootfs);
    }
  close (userns);
  return tree;
}
