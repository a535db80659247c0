/* Seccomp filters: an OCI linux.seccomp profile, already flattened by Python, compiled with libseccomp to
 * a classic BPF program the container process loads right before execve.  */
#ifndef CTRPY_SECCOMP_PROFILE_H
#define CTRPY_SECCOMP_PROFILE_H

#include <stddef.h>
#include <stdint.h>

/* cffi:begin */
/* Action kinds (the OCI SCMP_ACT_* names); ERRNO and TRACE carry a value.  */
#define CTRPY_SCMP_ACT_KILL 0
#define CTRPY_SCMP_ACT_KILL_PROCESS 1
#define CTRPY_SCMP_ACT_TRAP 2
#define CTRPY_SCMP_ACT_ERRNO 3
#define CTRPY_SCMP_ACT_TRACE 4
#define CTRPY_SCMP_ACT_ALLOW 5
#define CTRPY_SCMP_ACT_LOG 6

/* Comparison operators (the OCI SCMP_CMP_* names), in libseccomp's order.  */
#define CTRPY_SCMP_CMP_NE 1
#define CTRPY_SCMP_CMP_LT 2
#define CTRPY_SCMP_CMP_LE 3
#define CTRPY_SCMP_CMP_EQ 4
#define CTRPY_SCMP_CMP_GE 5
#define CTRPY_SCMP_CMP_GT 6
#define CTRPY_SCMP_CMP_MASKED_EQ 7

/* The largest program the kernel loads (BPF_MAXINSNS instructions of 8 bytes).  */
#define CTRPY_SECCOMP_MAX_BYTES (4096 * 8)

typedef struct
{
  unsigned int index;
  int op;
  uint64_t value, value_two;
} ctrpy_seccomp_arg_t;

/* One syscall, one action, all conditions ANDed (Python splits OCI rules into these).  */
typedef struct
{
  const char *name;
  int action;
  uint32_t value; /* errno for ERRNO, message for TRACE */
  int n_args;
  const ctrpy_seccomp_arg_t *args;
} ctrpy_seccomp_rule_t;

struct ctrpy_seccomp_s
{
  int default_action;
  uint32_t default_value;
  int n_arches;
  const char **arches; /* libseccomp names: "x86_64", "x86", "x32", "aarch64"... */
  int n_rules;
  const ctrpy_seccomp_rule_t *rules;
};
/* cffi:end */

#endif
