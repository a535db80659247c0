/* Paths inside a container's root, resolved inside it (CVE-2021-30465): an image's symlinks never lead a
 * mount target, a device node or a created directory out of the rootfs.  */
#ifndef CTRPY_INROOT_H
#define CTRPY_INROOT_H

enum
{
  INROOT_RESOLVE = 0, /* the path must exist */
  INROOT_DIR = 1,     /* create missing components as directories (mkdir -p) */
  INROOT_FILE = 2,    /* create missing parents as directories, a missing last component as an empty file */
};

/* Open `path` (absolute or not, taken relative to `rootfd`) as an O_PATH fd, resolving every symlink and
   ".." as if `rootfd` were "/", and refusing /proc magic links.  openat2 (RESOLVE_IN_ROOT |
   RESOLVE_NO_MAGICLINKS) when the kernel has it, else a userspace walk with O_NOFOLLOW per component.
   Returns the fd, or -1 with errno set.  */
int inroot_open (int rootfd, const char *path, int create);

/* "/proc/self/fd/N": the name to give mount(2) and friends for an fd from inroot_open.  */
const char *inroot_fdpath (char *buf, unsigned long size, int fd);

/* cffi:begin */
/* 0: always use the userspace walk (tests run both paths); 1: openat2 where the kernel has it.  */
void ctrpy_inroot_set_openat2 (int enabled);
/* cffi:end */

#endif
