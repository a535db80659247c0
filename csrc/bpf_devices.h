/* The cgroup v2 device controller: an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) made from the OCI
 * `linux.resources.devices` rules, emitted instruction by instruction (crun's approach: no libbpf, no
 * compiler), loaded with bpf(BPF_PROG_LOAD) and attached to a container's cgroup with BPF_F_ALLOW_MULTI.
 *
 * The cffi binding is generated from the "cffi:begin" regions (csrc/cffi_cdef.py).  */
#ifndef CTRPY_BPF_DEVICES_H
#define CTRPY_BPF_DEVICES_H

#include <stdint.h>

#include "helper.h"

/* cffi:begin */
/* One rule, already parsed: type 'a' (all), 'b' or 'c'; major/minor -1 for "*"; access a mask of
   CTRPY_DEV_MKNOD | CTRPY_DEV_READ | CTRPY_DEV_WRITE (the kernel's BPF_DEVCG_ACC_* values).  */
typedef struct
{
  int allow;
  char type;
  int64_t major, minor;
  unsigned int access;
} ctrpy_dev_rule_t;

#define CTRPY_DEV_MKNOD 1
#define CTRPY_DEV_READ 2
#define CTRPY_DEV_WRITE 4

/* Replace the device program of the cgroup directory `cgroup_dir` with one made from `rules` (applied in
   order, the last matching rule wins; nothing matches: denied): the new program is attached first, then
   every program attached there before is detached, so the cgroup is never without one.  Returns the number
   of programs detached, < 0 on error.  */
int ctrpy_bpf_devices_set (const char *cgroup_dir, const ctrpy_dev_rule_t *rules, int n_rules,
                           ctrpy_err_t *err);

/* The ids of the device programs attached to `cgroup_dir` itself (up to `max`); returns their count.  */
int ctrpy_bpf_devices_query (const char *cgroup_dir, uint32_t *ids, int max, ctrpy_err_t *err);
/* cffi:end */

#endif
