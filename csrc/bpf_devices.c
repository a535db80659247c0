/* The cgroup v2 device controller (see bpf_devices.h).
 *
 * The program is runc's and crun's: load the request (type, access, major, minor) from struct
 * bpf_cgroup_dev_ctx into r2..r5, then one block per rule, last rule first, each a few compares that jump to
 * the next block on mismatch and otherwise return the rule's verdict; no rule matched: deny.  An allow rule
 * matches when the request asks for nothing the rule does not name (runc's semantics); a deny rule matches
 * when it names any of what is asked, so that an O_RDWR open is refused by "deny w" as v1 refuses it.  A rule
 * that matches everything ends the program, since the verifier rejects unreachable instructions.  */
#define _GNU_SOURCE
#include "bpf_devices.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ACC_ALL (CTRPY_DEV_MKNOD | CTRPY_DEV_READ | CTRPY_DEV_WRITE)
#define MAX_PROGS 64

static int
sys_bpf (int cmd, union bpf_attr *attr)
{
  return (int) syscall (__NR_bpf, cmd, attr, sizeof (*attr));
}

static struct bpf_insn
insn (uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
  struct bpf_insn i = { .code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm };
  return i;
}

/* Number of instructions of a rule's block (see emit_rule).  */
static int
rule_len (const ctrpy_dev_rule_t *r)
{
  int n = 2;
  if (r->type != 'a')
    n += 1 + (r->major >= 0) + (r->minor >= 0);
  if ((r->access & ACC_ALL) != ACC_ALL)
    n += 3;
  return n;
}

static int
rule_is_unconditional (const ctrpy_dev_rule_t *r)
{
  return rule_len (r) == 2;
}

static void
emit_rule (struct bpf_insn *p, const ctrpy_dev_rule_t *r)
{
  int n = rule_len (r), i = 0;
#define TO_NEXT ((int16_t) (n - i - 1))
  if (r->type != 'a')
    {
      int type = r->type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR;
      p[i] = insn (BPF_JMP | BPF_JNE | BPF_K, BPF_REG_2, 0, TO_NEXT, type), i++;
    }
  if ((r->access & ACC_ALL) != ACC_ALL)
    {
      p[i] = insn (BPF_ALU | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_3, 0, 0), i++;
      p[i] = insn (BPF_ALU | BPF_AND | BPF_K, BPF_REG_1, 0, 0, (int32_t) (r->access & ACC_ALL)), i++;
      if (r->allow) /* if ((access & rule) != access) goto next: it allows all that is asked, or nothing */
        p[i] = insn (BPF_JMP | BPF_JNE | BPF_X, BPF_REG_1, BPF_REG_3, TO_NEXT, 0), i++;
      else /* if ((access & rule) == 0) goto next: it denies any of what is asked */
        p[i] = insn (BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_1, 0, TO_NEXT, 0), i++;
    }
  if (r->type != 'a' && r->major >= 0)
    p[i] = insn (BPF_JMP | BPF_JNE | BPF_K, BPF_REG_4, 0, TO_NEXT, (int32_t) r->major), i++;
  if (r->type != 'a' && r->minor >= 0)
    p[i] = insn (BPF_JMP | BPF_JNE | BPF_K, BPF_REG_5, 0, TO_NEXT, (int32_t) r->minor), i++;
#undef TO_NEXT
  p[i] = insn (BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, r->allow ? 1 : 0), i++;
  p[i] = insn (BPF_JMP | BPF_EXIT, 0, 0, 0, 0), i++;
}

/* The program for `rules`; *len gets its instruction count.  NULL with errno set on failure.  */
static struct bpf_insn *
build_program (const ctrpy_dev_rule_t *rules, int n_rules, int *len)
{
  int cap = 8 + 2;
  for (int k = 0; k < n_rules; k++)
    cap += rule_len (&rules[k]);
  struct bpf_insn *p = calloc ((size_t) cap, sizeof (*p));
  if (p == NULL)
    return NULL;
  int i = 0;
  /* r2 = type, r3 = access, r4 = major, r5 = minor  */
  p[i++] = insn (BPF_LDX | BPF_W | BPF_MEM, BPF_REG_2, BPF_REG_1, 0, 0);
  p[i++] = insn (BPF_ALU | BPF_AND | BPF_K, BPF_REG_2, 0, 0, 0xFFFF);
  p[i++] = insn (BPF_LDX | BPF_W | BPF_MEM, BPF_REG_3, BPF_REG_1, 0, 0);
  p[i++] = insn (BPF_ALU | BPF_RSH | BPF_K, BPF_REG_3, 0, 0, 16);
  p[i++] = insn (BPF_LDX | BPF_W | BPF_MEM, BPF_REG_4, BPF_REG_1, 4, 0);
  p[i++] = insn (BPF_LDX | BPF_W | BPF_MEM, BPF_REG_5, BPF_REG_1, 8, 0);
  int terminated = 0;
  for (int k = n_rules - 1; k >= 0 && !terminated; k--)
    {
      emit_rule (p + i, &rules[k]);
      i += rule_len (&rules[k]);
      terminated = rule_is_unconditional (&rules[k]);
    }
  if (!terminated)
    {
      p[i++] = insn (BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0);
      p[i++] = insn (BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    }
  *len = i;
  return p;
}

static int
load_program (const struct bpf_insn *prog, int len, ctrpy_err_t *err)
{
  static char log[4096];
  union bpf_attr attr;
  memset (&attr, 0, sizeof (attr));
  attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  attr.insns = (uint64_t) (uintptr_t) prog;
  attr.insn_cnt = (uint32_t) len;
  attr.license = (uint64_t) (uintptr_t) "GPL";
  int fd = sys_bpf (BPF_PROG_LOAD, &attr);
  if (fd >= 0)
    return fd;
  int saved = errno;
  /* Again with the verifier's log, for the message.  */
  log[0] = '\0';
  attr.log_buf = (uint64_t) (uintptr_t) log;
  attr.log_size = sizeof (log);
  attr.log_level = 1;
  fd = sys_bpf (BPF_PROG_LOAD, &attr);
  if (fd >= 0)
    return fd;
  size_t l = strlen (log);
  while (l > 0 && log[l - 1] == '\n')
    log[--l] = '\0';
  const char *last = strrchr (log, '\n');
  return ctrpy_make_error (err, saved, "bpf: load the device program (%d instructions): %s%s%s", len, strerror (saved),
                    l ? ": " : "", last ? last + 1 : log);
}

static int
query (int cgfd, uint32_t *ids, uint32_t max)
{
  union bpf_attr attr;
  memset (&attr, 0, sizeof (attr));
  attr.query.target_fd = (uint32_t) cgfd;
  attr.query.attach_type = BPF_CGROUP_DEVICE;
  attr.query.prog_ids = (uint64_t) (uintptr_t) ids;
  attr.query.prog_cnt = max;
  if (sys_bpf (BPF_PROG_QUERY, &attr) < 0)
    return -1;
  return (int) (attr.query.prog_cnt < max ? attr.query.prog_cnt : max);
}

int
ctrpy_bpf_devices_query (const char *cgroup_dir, uint32_t *ids, int max, ctrpy_err_t *err)
{
  int cgfd = open (cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cgfd < 0)
    return ctrpy_make_error (err, errno, "bpf: open cgroup %s: %s", cgroup_dir, strerror (errno));
  int n = query (cgfd, ids, max < 0 ? 0 : (uint32_t) max);
  int saved = errno;
  close (cgfd);
  if (n < 0)
    return ctrpy_make_error (err, saved, "bpf: query the device programs of %s: %s", cgroup_dir, strerror (saved));
  return n;
}

int
ctrpy_bpf_devices_set (const char *cgroup_dir, const ctrpy_dev_rule_t *rules, int n_rules, ctrpy_err_t *err)
{
  for (int k = 0; k < n_rules; k++)
    if (rules[k].type != 'a' && rules[k].type != 'b' && rules[k].type != 'c')
      return ctrpy_make_error (err, EINVAL, "bpf: device rule %d: type %c is not a, b or c", k, rules[k].type);
  int len = 0;
  struct bpf_insn *prog = build_program (rules, n_rules, &len);
  if (prog == NULL)
    return ctrpy_make_error (err, errno, "bpf: %s", strerror (errno));
  int progfd = load_program (prog, len, err);
  free (prog);
  if (progfd < 0)
    return -1;
  int ret = -1, cgfd = open (cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cgfd < 0)
    {
      ctrpy_make_error (err, errno, "bpf: open cgroup %s: %s", cgroup_dir, strerror (errno));
      goto out;
    }
  uint32_t old[MAX_PROGS];
  int n_old = query (cgfd, old, MAX_PROGS);
  if (n_old < 0)
    {
      ctrpy_make_error (err, errno, "bpf: query the device programs of %s: %s", cgroup_dir, strerror (errno));
      goto out;
    }
  union bpf_attr attr;
  memset (&attr, 0, sizeof (attr));
  attr.target_fd = (uint32_t) cgfd;
  attr.attach_bpf_fd = (uint32_t) progfd;
  attr.attach_type = BPF_CGROUP_DEVICE;
  attr.attach_flags = BPF_F_ALLOW_MULTI;
  if (sys_bpf (BPF_PROG_ATTACH, &attr) < 0)
    {
      ctrpy_make_error (err, errno, "bpf: attach the device program to %s: %s", cgroup_dir, strerror (errno));
      goto out;
    }
  /* Only now the old ones go: in between both apply, and a device is allowed only if both allow it.  */
  ret = 0;
  for (int k = 0; k < n_old; k++)
    {
      memset (&attr, 0, sizeof (attr));
      attr.prog_id = old[k];
      int oldfd = sys_bpf (BPF_PROG_GET_FD_BY_ID, &attr);
      if (oldfd < 0)
        continue; /* detached meanwhile */
      memset (&attr, 0, sizeof (attr));
      attr.target_fd = (uint32_t) cgfd;
      attr.attach_bpf_fd = (uint32_t) oldfd;
      attr.attach_type = BPF_CGROUP_DEVICE;
      int r = sys_bpf (BPF_PROG_DETACH, &attr);
      int saved = errno;
      close (oldfd);
      if (r < 0 && saved != ENOENT)
        {
          ret = ctrpy_make_error (err, saved, "bpf: detach the old device program %u from %s: %s", old[k], cgroup_dir,
                           strerror (saved));
          break;
        }
      if (r == 0)
        ret++;
    }
out:
  if (cgfd >= 0)
    close (cgfd);
  close (progfd);
  return ret;
}
