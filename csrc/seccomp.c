/* Compile a flattened seccomp profile with libseccomp (as runc and crun do) into a BPF program.
 *
 * Compiling happens in the runtime's own process, before the container process is cloned, so that a bad
 * profile fails `create` with a clear error and the child only has to hand the finished program to
 * seccomp(2) right before execve (see helper.c).  Semantics follow runc: a syscall this libseccomp does
 * not know is skipped, a rule whose action is the default action is skipped.  */
#define _GNU_SOURCE
#include "helper.h"
#include "seccomp_profile.h"

#include <errno.h>
#include <seccomp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define cleanup_ctx __attribute__ ((cleanup (release_ctx)))

static void
release_ctx (scmp_filter_ctx *ctx)
{
  if (*ctx)
    seccomp_release (*ctx);
}

static int
to_action (int kind, uint32_t value, uint32_t *out)
{
  switch (kind)
    {
    case CTRPY_SCMP_ACT_KILL:
      *out = SCMP_ACT_KILL_THREAD;
      return 0;
    case CTRPY_SCMP_ACT_KILL_PROCESS:
      *out = SCMP_ACT_KILL_PROCESS;
      return 0;
    case CTRPY_SCMP_ACT_TRAP:
      *out = SCMP_ACT_TRAP;
      return 0;
    case CTRPY_SCMP_ACT_ERRNO:
      *out = SCMP_ACT_ERRNO (value);
      return 0;
    case CTRPY_SCMP_ACT_TRACE:
      *out = SCMP_ACT_TRACE (value);
      return 0;
    case CTRPY_SCMP_ACT_ALLOW:
      *out = SCMP_ACT_ALLOW;
      return 0;
    case CTRPY_SCMP_ACT_LOG:
      *out = SCMP_ACT_LOG;
      return 0;
    }
  return -1;
}

static int
add_rule (scmp_filter_ctx ctx, uint32_t default_action, const ctrpy_seccomp_rule_t *r, ctrpy_err_t *err)
{
  struct scmp_arg_cmp cmps[6];
  uint32_t action;
  int nr, ret;

  if (to_action (r->action, r->value, &action) < 0)
    return ctrpy_make_error (err, EINVAL, "seccomp: syscall %s: unknown action %d", r->name, r->action);
  if (action == default_action)
    return 0;
  nr = seccomp_syscall_resolve_name (r->name);
  if (nr == __NR_SCMP_ERROR)
    return 0; /* unknown to this libseccomp (a newer syscall): nothing to filter */
  if (r->n_args > 6)
    return ctrpy_make_error (err, EINVAL, "seccomp: syscall %s: more than 6 argument conditions", r->name);
  for (int i = 0; i < r->n_args; i++)
    {
      if (r->args[i].index > 5)
        return ctrpy_make_error (err, EINVAL, "seccomp: syscall %s: argument index %u out of range", r->name, r->args[i].index);
      if (r->args[i].op < CTRPY_SCMP_CMP_NE || r->args[i].op > CTRPY_SCMP_CMP_MASKED_EQ)
        return ctrpy_make_error (err, EINVAL, "seccomp: syscall %s: unknown operator %d", r->name, r->args[i].op);
      cmps[i].arg = r->args[i].index;
      cmps[i].op = (enum scmp_compare) r->args[i].op;
      cmps[i].datum_a = r->args[i].value;
      cmps[i].datum_b = r->args[i].value_two;
    }
  ret = seccomp_rule_add_array (ctx, action, nr, r->n_args, cmps);
  if (ret < 0)
    return ctrpy_make_error (err, -ret, "seccomp: add rule for syscall %s", r->name);
  return 0;
}

int
ctrpy_seccomp_compile (const ctrpy_seccomp_t *p, unsigned char *buf, size_t size, size_t *len,
                       ctrpy_err_t *err)
{
  cleanup_ctx scmp_filter_ctx ctx = NULL;
  uint32_t default_action;
  int fd, ret;
  ssize_t n;

  if (to_action (p->default_action, p->default_value, &default_action) < 0)
    return ctrpy_make_error (err, EINVAL, "seccomp: unknown default action %d", p->default_action);
  ctx = seccomp_init (default_action);
  if (ctx == NULL)
    return ctrpy_make_error (err, ENOMEM, "seccomp: init");
  /* The program is loaded by us with seccomp(2), which decides about no_new_privs itself.  */
  if ((ret = seccomp_attr_set (ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0)
    return ctrpy_make_error (err, -ret, "seccomp: attributes");
  for (int i = 0; i < p->n_arches; i++)
    {
      uint32_t arch = seccomp_arch_resolve_name (p->arches[i]);
      if (arch == 0)
        return ctrpy_make_error (err, EINVAL, "seccomp: unknown architecture %s", p->arches[i]);
      ret = seccomp_arch_add (ctx, arch);
      if (ret < 0 && ret != -EEXIST)
        return ctrpy_make_error (err, -ret, "seccomp: add architecture %s", p->arches[i]);
    }
  for (int i = 0; i < p->n_rules; i++)
    if (add_rule (ctx, default_action, &p->rules[i], err) < 0)
      return -1;

  fd = memfd_create ("ctrpy-seccomp", MFD_CLOEXEC);
  if (fd < 0)
    return ctrpy_make_error (err, errno, "seccomp: memfd_create");
  ret = seccomp_export_bpf (ctx, fd);
  if (ret < 0)
    {
      close (fd);
      return ctrpy_make_error (err, -ret, "seccomp: export the BPF program");
    }
  n = pread (fd, buf, size, 0);
  if (n >= 0 && (size_t) n == size)
    {
      unsigned char more;
      if (pread (fd, &more, 1, size) > 0)
        n = -2;
    }
  close (fd);
  if (n == -2)
    return ctrpy_make_error (err, E2BIG, "seccomp: the profile compiles to more than %zu bytes of BPF", size);
  if (n < 0)
    return ctrpy_make_error (err, errno, "seccomp: read the BPF program");
  *len = n;
  return 0;
}
