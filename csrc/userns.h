/* User namespaces: the creator writes the id maps of a new container process and, where the filesystem
 * supports it, makes an idmapped copy of the rootfs for it (mount_setattr MOUNT_ATTR_IDMAP).  */
#ifndef CTRPY_USERNS_H
#define CTRPY_USERNS_H

#include "helper.h"

/* Write /proc/<pid>/{uid_map,gid_map} from the spec.  */
int userns_write_maps (const ctrpy_spec_t *spec, int pid, ctrpy_err_t *err);

/* A detached, recursive clone of `rootfs` (an fd for move_mount), idmapped for the user namespace at
   `userns_path` unless NULL; -1 with err set ("idmapped rootfs: ..." when the filesystem or kernel cannot).  */
int userns_rootfs_tree (const char *rootfs, const char *userns_path, ctrpy_err_t *err);

#endif
