/* ctrpy-supervisor: the per-task supervisor (containerd's shim, podman's conmon), a small C executable.
 *
 * The CLI forks; the child becomes a subreaper, runs the OCI runtime's `create` with Python (already
 * imported, so no second interpreter starts), and execs this program with the init's pid and its stdio
 * fds.  The init stays our child across the exec.  From then on this process:
 *   - writes the init's output to TASK_DIR/output.log, or for a CRI container (--log-path) to kubelet's log
 *     path in the CRI format (`RFC3339NANO STREAM F|P LINE`), and to every attached client;
 *   - without a CRI log, also writes it to TASK_DIR/container.log as docker's json-file driver does (one
 *     JSON record per line, with its stream and time: `ctrpy logs` keeps stdout and stderr apart and
 *     filters by time), rotated by the bundle's log.max-size / log.max-file annotations (`run --log-opt`);
 *   - serves clients on an abstract unix socket speaking ctrpy's frames (ctrpy/runtime/supervisor.py):
 *       client -> us: A attach, X exec, I stdin, C close stdin, R resize, S stop (no more restarts),
 *                     O reopen the CRI log (kubelet rotated it)
 *       us -> client: K ok, E error, 1 stdout, 2 stderr, Z exit
 *     The socket is abstract (no file permissions, its name public in /proc/net/unix): only peers running
 *     as our own user (SO_PEERCRED) are served, or any local user could exec as root in the container.
 *     A request that is not a well-formed JSON object (or nests deeper than JSON_MAX_DEPTH) is answered
 *     with E "bad request"; a frame longer than MAX_FRAME drops the client.
 *   - starts exec processes through a short-lived Python child (`supervisor.py` exec mode) that hands
 *     back the process's pid and stdio fds over a socketpair (SCM_RIGHTS);
 *   - reaps the init and exec processes and records each exit durably (temp file, fsync, rename, fsync
 *     of the directory) the moment it is reaped, before draining output, so killing us later loses no
 *     status;
 *   - restarts the init in place under a restart policy (docker's back-off: 100 ms doubling, reset after
 *     10 s of uptime), recording the back-off in TASK_DIR/restart.json;
 *   - publishes /tasks/exit (and /tasks/oom) in the metadata store through libsqlite3, loaded with dlopen
 *     only then, and exits once the init is gone for good.
 *
 * `ctrpy-supervisor --adopt PID TASK_DIR ...` is the fallback for a task whose supervisor was killed: it
 * traces the orphaned init (PTRACE_SEIZE + PTRACE_O_TRACEEXIT), so the real exit status is still recorded.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ctype.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <stddef.h>
#include <time.h>
#include <unistd.h>

#define UNKNOWN_EXIT 255
#define DRAIN_MS 2000
#define SEND_TIMEOUT_S 10
#define MAX_PROCS 256
#define MAX_CLIENTS 256
#define RESET_AFTER_MS 10000
#define MAX_DELAY_MS 60000
#define CRI_MAX_LINE 16384 /* a longer line is split into partial (P) records, as containerd's CRI does */
#define MAX_FRAME (16 << 20)
#define JSON_MAX_DEPTH 64

typedef struct
{
  int used;
  char exec_id[96];
  char record_dir[PATH_MAX];
  pid_t pid;
  int out_fd, err_fd, stdin_fd, master;
  int tty, logs;
  char *in_buf;
  size_t in_len;
  int stdin_closing;
  int status; /* -1 while running */
  char exited_at[48];
  int64_t drain_until;
  int finished;
} proc_t;

typedef struct
{
  int fd;
  char *buf;
  size_t len, cap;
  int proc; /* index in procs, or -1 */
} client_t;

static struct
{
  const char *dir, *id, *ns, *root, *cgroup, *python, *pkgroot, *policy;
  const char *log_path; /* the CRI log (kubelet's path), or NULL: output.log, raw */
  int log_fd, listen_fd, sig_fd;
  int oom_killed;
  /* restart policy */
  int restart_always, restart_on_failure, restart_max, stop_requested;
  int restart_count, failures;
  int64_t delay_ms, restart_at, started_at;
  int last_status;
  char last_start[48]; /* wall time of the last restart (docker's StartedAt moves with each one) */
} S = { .log_fd = -1, .listen_fd = -1, .sig_fd = -1, .restart_at = -1 };

static proc_t procs[MAX_PROCS];
static client_t clients[MAX_CLIENTS];
static int n_clients;
static pid_t unclaimed_pid[64];
static int unclaimed_status[64];
static int n_unclaimed;

/* ---- small utilities --------------------------------------------------------------------------- */

static void
logmsg (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  fputs ("supervisor: ", stderr);
  vfprintf (stderr, fmt, ap);
  fputc ('\n', stderr);
  va_end (ap);
}

static int64_t
mono_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
rfc3339_now (char *out, size_t n)
{
  struct timespec ts;
  struct tm tm;
  char base[32];
  clock_gettime (CLOCK_REALTIME, &ts);
  gmtime_r (&ts.tv_sec, &tm);
  strftime (base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf (out, n, "%s.%09ldZ", base, ts.tv_nsec);
}

static int
status_code (int status)
{
  if (WIFSIGNALED (status))
    return 128 + WTERMSIG (status);
  if (WIFEXITED (status))
    return WEXITSTATUS (status);
  return UNKNOWN_EXIT;
}

static void
set_nonblock (int fd)
{
  int fl = fcntl (fd, F_GETFL);
  if (fl >= 0)
    fcntl (fd, F_SETFL, fl | O_NONBLOCK);
}

static void
set_cloexec (int fd)
{
  int fl = fcntl (fd, F_GETFD);
  if (fl >= 0)
    fcntl (fd, F_SETFD, fl | FD_CLOEXEC);
}

static int
write_all (int fd, const void *buf, size_t len)
{
  const char *p = buf;
  while (len > 0)
    {
      ssize_t n = write (fd, p, len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return -1;
      p += n;
      len -= n;
    }
  return 0;
}

/* JSON text of `s` as a quoted string, into a static growable buffer appended to `out`.  */
typedef struct
{
  char *p;
  size_t len, cap;
} buf_t;

static void
buf_add (buf_t *b, const char *s, size_t n)
{
  if (b->len + n + 1 > b->cap)
    {
      size_t cap = b->cap ? b->cap * 2 : 256;
      while (cap < b->len + n + 1)
        cap *= 2;
      b->p = realloc (b->p, cap);
      if (b->p == NULL)
        abort ();
      b->cap = cap;
    }
  memcpy (b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = 0;
}

static void
buf_printf (buf_t *b, const char *fmt, ...)
{
  char tmp[1024];
  va_list ap;
  va_start (ap, fmt);
  int n = vsnprintf (tmp, sizeof tmp, fmt, ap);
  va_end (ap);
  if (n > 0)
    buf_add (b, tmp, (size_t) n < sizeof tmp ? (size_t) n : sizeof tmp - 1);
}

static void
buf_str (buf_t *b, const char *s)
{
  buf_add (b, "\"", 1);
  for (; *s; s++)
    {
      unsigned char c = (unsigned char) *s;
      if (c == '"' || c == '\\')
        {
          char e[2] = { '\\', (char) c };
          buf_add (b, e, 2);
        }
      else if (c < 0x20 || c >= 0x7f)
        buf_printf (b, "\\u%04x", c);
      else
        buf_add (b, (const char *) &c, 1);
    }
  buf_add (b, "\"", 1);
}

/* ---- a minimal JSON reader: the value of one top-level key of a flat request object ------------- */

static const char *
skip_ws (const char *p, const char *end)
{
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    p++;
  return p;
}

static const char *
skip_string (const char *p, const char *end)
{
  p++; /* opening quote */
  while (p < end && *p != '"')
    p += (*p == '\\') ? 2 : 1;
  return p < end ? p + 1 : end;
}

static const char *
skip_value (const char *p, const char *end)
{
  int depth = 0;
  p = skip_ws (p, end);
  do
    {
      if (p >= end)
        return end;
      if (*p == '"')
        {
          p = skip_string (p, end);
          continue;
        }
      if (*p == '{' || *p == '[')
        depth++;
      else if (*p == '}' || *p == ']')
        depth--;
      else if (depth == 0)
        {
          while (p < end && *p != ',' && *p != '}' && *p != ']')
            p++;
          return p;
        }
      p++;
    }
  while (depth > 0);
  return p;
}

/* Pointer to the raw value of `key` in the top-level object `json`, or NULL.  */
static const char *
json_find (const char *json, size_t len, const char *key)
{
  const char *p = json, *end = json + len;
  size_t klen = strlen (key);
  p = skip_ws (p, end);
  if (p >= end || *p != '{')
    return NULL;
  p++;
  for (;;)
    {
      p = skip_ws (p, end);
      if (p >= end || *p != '"')
        return NULL;
      const char *k = p + 1;
      const char *after = skip_string (p, end);
      int match = (size_t) (after - 1 - k) == klen && memcmp (k, key, klen) == 0;
      p = skip_ws (after, end);
      if (p >= end || *p != ':')
        return NULL;
      p = skip_ws (p + 1, end);
      if (match)
        return p;
      p = skip_ws (skip_value (p, end), end);
      if (p >= end || *p != ',')
        return NULL;
      p++;
    }
}

static long
json_int (const char *json, size_t len, const char *key, long dflt)
{
  const char *v = json_find (json, len, key);
  if (v == NULL || !((*v >= '0' && *v <= '9') || *v == '-'))
    return dflt;
  return strtol (v, NULL, 10);
}

static int
json_bool (const char *json, size_t len, const char *key)
{
  const char *v = json_find (json, len, key);
  return v != NULL && strncmp (v, "true", 4) == 0;
}

/* A simple string value (escapes other than \" and \\ refused): ids are plain.  */
static int
json_string (const char *json, size_t len, const char *key, char *out, size_t n)
{
  const char *v = json_find (json, len, key), *end = json + len;
  size_t i = 0;
  out[0] = 0;
  if (v == NULL || *v != '"')
    return -1;
  for (v++; v < end && *v != '"'; v++)
    {
      if (*v == '\\')
        {
          if (v + 1 >= end || (v[1] != '"' && v[1] != '\\'))
            return -1;
          v++;
        }
      if (i + 1 >= n)
        return -1;
      out[i++] = *v;
    }
  out[i] = 0;
  return 0;
}

/* ---- request validation: every JSON request is checked whole before any field is read -------------- */

/* Past the string starting at `p` (its opening quote), or NULL if it is malformed.  */
static const char *
scan_string (const char *p, const char *end)
{
  for (p++; p < end; p++)
    {
      unsigned char c = (unsigned char) *p;
      if (c == '"')
        return p + 1;
      if (c < 0x20)
        return NULL;
      if (c != '\\')
        continue;
      if (++p >= end)
        return NULL;
      if (*p == 'u')
        {
          for (int i = 0; i < 4; i++)
            if (++p >= end || !isxdigit ((unsigned char) *p))
              return NULL;
        }
      else if (*p == 0 || strchr ("\"\\/bfnrt", *p) == NULL)
        return NULL;
    }
  return NULL;
}

static const char *
scan_digits (const char *p, const char *end)
{
  const char *start = p;
  while (p < end && isdigit ((unsigned char) *p))
    p++;
  return p > start ? p : NULL;
}

static const char *
scan_number (const char *p, const char *end)
{
  if (p < end && *p == '-')
    p++;
  if (p < end && *p == '0')
    p++;
  else if (p >= end || *p < '1' || *p > '9' || (p = scan_digits (p, end)) == NULL)
    return NULL;
  if (p < end && *p == '.' && (p = scan_digits (p + 1, end)) == NULL)
    return NULL;
  if (p < end && (*p == 'e' || *p == 'E'))
    {
      p++;
      if (p < end && (*p == '+' || *p == '-'))
        p++;
      p = scan_digits (p, end);
    }
  return p;
}

static const char *
scan_scalar (const char *p, const char *end)
{
  static const char *const words[] = { "true", "false", "null" };
  if (*p == '"')
    return scan_string (p, end);
  for (int i = 0; i < 3; i++)
    {
      size_t n = strlen (words[i]);
      if ((size_t) (end - p) >= n && memcmp (p, words[i], n) == 0)
        return p + n;
    }
  return scan_number (p, end);
}

/* Whether `json` is one well-formed JSON object nesting at most JSON_MAX_DEPTH deep.  Iterative, with a
   bounded stack: a frame of "[[[[..." is a bad request, never a crash.  */
static int
json_valid_object (const char *json, size_t len)
{
  const char *p = json, *end = json + len;
  char open[JSON_MAX_DEPTH];
  int depth = 0;
  enum { VALUE, AFTER, KEY } want = VALUE;
  p = skip_ws (p, end);
  if (p >= end || *p != '{')
    return 0;
  for (;;)
    {
      p = skip_ws (p, end);
      switch (want)
        {
        case VALUE:
          if (p >= end)
            return 0;
          if (*p == '{' || *p == '[')
            {
              if (depth == JSON_MAX_DEPTH)
                return 0;
              open[depth++] = *p;
              p = skip_ws (p + 1, end);
              if (p < end && *p == (open[depth - 1] == '{' ? '}' : ']'))
                {
                  depth--;
                  p++;
                  want = AFTER;
                }
              else
                want = open[depth - 1] == '{' ? KEY : VALUE;
              break;
            }
          if ((p = scan_scalar (p, end)) == NULL)
            return 0;
          want = AFTER;
          break;
        case AFTER:
          if (depth == 0)
            return p == end;
          if (p >= end)
            return 0;
          if (*p == ',')
            want = open[depth - 1] == '{' ? KEY : VALUE;
          else if (*p == (open[depth - 1] == '{' ? '}' : ']'))
            depth--;
          else
            return 0;
          p++;
          break;
        case KEY:
          if (p >= end || *p != '"' || (p = scan_string (p, end)) == NULL)
            return 0;
          p = skip_ws (p, end);
          if (p >= end || *p != ':')
            return 0;
          p++;
          want = VALUE;
          break;
        }
    }
}

/* ---- durable records ----------------------------------------------------------------------------- */

static int
write_durably (const char *path, const char *data)
{
  char tmp[PATH_MAX + 8], dir[PATH_MAX];
  snprintf (tmp, sizeof tmp, "%s.tmp", path);
  int fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return -1;
  if (write_all (fd, data, strlen (data)) < 0 || fsync (fd) < 0)
    {
      close (fd);
      return -1;
    }
  close (fd);
  if (rename (tmp, path) < 0)
    return -1;
  snprintf (dir, sizeof dir, "%s", path);
  char *slash = strrchr (dir, '/');
  if (slash)
    *slash = 0;
  fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0)
    {
      fsync (fd);
      close (fd);
    }
  return 0;
}

static void
write_durably_text (const char *path, const char *text)
{
  if (write_durably (path, text) < 0)
    logmsg ("cannot write %s: %s", path, strerror (errno));
}

static void
exit_record (buf_t *b, proc_t *p)
{
  buf_printf (b, "{\"exit_status\": %d, \"exited_at\": ", p->status);
  buf_str (b, p->exited_at);
  buf_printf (b, ", \"pid\": %d", (int) p->pid);
  if (p->exec_id[0] == 0)
    buf_printf (b, ", \"oom_killed\": %s", S.oom_killed ? "true" : "false");
  if (p->exec_id[0] == 0 && S.restart_count)
    buf_printf (b, ", \"restart_count\": %d", S.restart_count);
  buf_add (b, "}", 1);
}

static void
record_exit (proc_t *p)
{
  buf_t b = { 0 };
  char path[PATH_MAX + 32];
  mkdir (p->record_dir, 0755);
  snprintf (path, sizeof path, "%s/exit.json", p->record_dir);
  exit_record (&b, p);
  if (write_durably (path, b.p) < 0)
    logmsg ("cannot record exit of %s: %s", p->exec_id[0] ? p->exec_id : "init", strerror (errno));
  free (b.p);
}

static void
record_restart (int restarting)
{
  buf_t b = { 0 };
  char path[PATH_MAX], next[48] = "";
  if (restarting)
    {
      struct timespec ts;
      clock_gettime (CLOCK_REALTIME, &ts);
      ts.tv_sec += S.delay_ms / 1000;
      ts.tv_nsec += (S.delay_ms % 1000) * 1000000;
      if (ts.tv_nsec >= 1000000000)
        {
          ts.tv_sec++;
          ts.tv_nsec -= 1000000000;
        }
      struct tm tm;
      char base[32];
      gmtime_r (&ts.tv_sec, &tm);
      strftime (base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
      snprintf (next, sizeof next, "%s.%09ldZ", base, ts.tv_nsec);
    }
  buf_printf (&b, "{\"policy\": ");
  buf_str (&b, S.policy ? S.policy : "no");
  buf_printf (&b, ", \"restart_count\": %d, \"failure_count\": %d, \"restarting\": %s, \"delay_ms\": %lld, "
              "\"last_exit_status\": %d, \"next_start_at\": ",
              S.restart_count, S.failures, restarting ? "true" : "false", (long long) S.delay_ms, S.last_status);
  buf_str (&b, next);
  if (S.last_start[0])
    {
      buf_printf (&b, ", \"started_at\": ");
      buf_str (&b, S.last_start);
    }
  buf_add (&b, "}", 1);
  snprintf (path, sizeof path, "%s/restart.json", S.dir);
  if (write_durably (path, b.p) < 0)
    logmsg ("cannot record restart state: %s", strerror (errno));
  /* The history of back-off delays, one line per restart (what `restart.json` summarises).  */
  snprintf (path, sizeof path, "%s/restart.log", S.dir);
  if (restarting)
    {
      int fd = open (path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd >= 0)
        {
          char line[128];
          int n = snprintf (line, sizeof line, "%d %d %lld\n", S.restart_count + 1, S.last_status,
                            (long long) S.delay_ms);
          write_all (fd, line, n);
          close (fd);
        }
    }
  free (b.p);
}

static int
read_oom_killed (void)
{
  char path[PATH_MAX], line[256];
  const char *cg = S.cgroup;
  if (cg == NULL || !*cg)
    return 0;
  while (*cg == '/')
    cg++;
  const char *cands[2] = { "/sys/fs/cgroup/memory/%s/memory.oom_control", "/sys/fs/cgroup/%s/memory.events" };
  for (int i = 0; i < 2; i++)
    {
      snprintf (path, sizeof path, cands[i], cg);
      FILE *f = fopen (path, "re");
      if (f == NULL)
        continue;
      while (fgets (line, sizeof line, f))
        if (strncmp (line, "oom_kill ", 9) == 0 && atol (line + 9) > 0)
          {
            fclose (f);
            return 1;
          }
      fclose (f);
    }
  return 0;
}

/* /tasks/exit (and /tasks/oom) in the metadata store, as ctrpy.runtime.metadata.append_event writes them
   (payload: json.dumps(sort_keys=True)).  libsqlite3 is loaded only now: while the task runs we never pay
   for it.  Best effort: the exit file is the truth.  */
static void
publish_events (proc_t *init)
{
  if (S.root == NULL || S.ns == NULL)
    return;
  void *lib = dlopen ("libsqlite3.so.0", RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL)
    {
      logmsg ("cannot record events: %s", dlerror ());
      return;
    }
  int (*open_v2) (const char *, void **, int, const char *) = dlsym (lib, "sqlite3_open_v2");
  int (*busy) (void *, int) = dlsym (lib, "sqlite3_busy_timeout");
  int (*exec) (void *, const char *, void *, void *, char **) = dlsym (lib, "sqlite3_exec");
  int (*prepare) (void *, const char *, int, void **, const char **) = dlsym (lib, "sqlite3_prepare_v2");
  int (*bind_text) (void *, int, const char *, int, void (*) (void *)) = dlsym (lib, "sqlite3_bind_text");
  int (*step) (void *) = dlsym (lib, "sqlite3_step");
  int (*finalize) (void *) = dlsym (lib, "sqlite3_finalize");
  int (*close_db) (void *) = dlsym (lib, "sqlite3_close");
  const char *(*errmsg) (void *) = dlsym (lib, "sqlite3_errmsg");
  if (!open_v2 || !busy || !exec || !prepare || !bind_text || !step || !finalize || !close_db || !errmsg)
    return;
  char path[PATH_MAX], ts[48];
  void *db = NULL;
  snprintf (path, sizeof path, "%s/meta.db", S.root);
  if (open_v2 (path, &db, 0x2 /* READWRITE */, NULL) != 0)
    {
      logmsg ("cannot record events: cannot open %s", path);
      if (db)
        close_db (db);
      return;
    }
  busy (db, 10000);
  exec (db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
  if (exec (db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != 0)
    {
      logmsg ("cannot record events: %s", errmsg (db));
      close_db (db);
      return;
    }
  for (int pass = 0; pass < 2; pass++)
    {
      buf_t b = { 0 };
      const char *topic;
      if (pass == 0)
        {
          if (!S.oom_killed)
            continue;
          topic = "/tasks/oom";
          buf_add (&b, "{\"container_id\": ", 17);
          buf_str (&b, S.id);
          buf_add (&b, "}", 1);
        }
      else
        {
          topic = "/tasks/exit";
          buf_add (&b, "{\"container_id\": ", 17);
          buf_str (&b, S.id);
          buf_printf (&b, ", \"exit_status\": %d, \"exited_at\": ", init->status);
          buf_str (&b, init->exited_at);
          buf_add (&b, ", \"id\": ", 8);
          buf_str (&b, S.id);
          buf_printf (&b, ", \"pid\": %d}", (int) init->pid);
        }
      void *stmt = NULL;
      rfc3339_now (ts, sizeof ts);
      if (prepare (db, "INSERT INTO events (timestamp, namespace, topic, payload) VALUES (?, ?, ?, ?)", -1,
                   &stmt, NULL)
          == 0)
        {
          bind_text (stmt, 1, ts, -1, (void (*) (void *)) - 1);
          bind_text (stmt, 2, S.ns, -1, (void (*) (void *)) - 1);
          bind_text (stmt, 3, topic, -1, (void (*) (void *)) - 1);
          bind_text (stmt, 4, b.p, -1, (void (*) (void *)) - 1);
          if (step (stmt) != 101 /* SQLITE_DONE */)
            logmsg ("cannot record event %s: %s", topic, errmsg (db));
          finalize (stmt);
        }
      free (b.p);
    }
  if (exec (db, "COMMIT", NULL, NULL, NULL) != 0)
    logmsg ("cannot record events: %s", errmsg (db));
  close_db (db);
}

/* ---- the container's log ------------------------------------------------------------------------- */

static buf_t cri_rest[2]; /* CRI log: the unfinished last line of stdout, stderr */

static int
mkdir_parents (const char *path)
{
  char dir[PATH_MAX];
  if (snprintf (dir, sizeof dir, "%s", path) >= (int) sizeof dir)
    {
      errno = ENAMETOOLONG;
      return -1;
    }
  for (char *s = strchr (dir + 1, '/'); s; s = strchr (s + 1, '/'))
    {
      *s = 0;
      if (mkdir (dir, 0755) < 0 && errno != EEXIST)
        return -1;
      *s = '/';
    }
  return 0;
}

/* The log the init's output goes to: kubelet's path for a CRI container (created with its directories,
   kubelet may have rotated the directory away too), else TASK_DIR/output.log.  */
static int
open_log (void)
{
  char path[PATH_MAX];
  if (S.log_path)
    {
      if (mkdir_parents (S.log_path) < 0)
        return -1;
      return open (S.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    }
  snprintf (path, sizeof path, "%s/output.log", S.dir);
  return open (path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

static void
cri_record (buf_t *out, const char *stamp, const char *stream, char tag, const char *line, size_t len)
{
  buf_printf (out, "%s %s %c ", stamp, stream, tag);
  buf_add (out, line, len);
  buf_add (out, "\n", 1);
}

/* The CRI log format kubelet reads: `RFC3339NANO STREAM F|P LINE` per line; a line longer than
   CRI_MAX_LINE, or cut by the end of the stream (`final`), is written in partial (P) pieces.  */
static void
cri_log (int stream, const char *data, size_t n, int final)
{
  buf_t *rest = &cri_rest[stream], out = { 0 };
  const char *name = stream ? "stderr" : "stdout";
  char stamp[48];
  size_t off = 0;
  buf_add (rest, data, n);
  rfc3339_now (stamp, sizeof stamp);
  while (off < rest->len)
    {
      const char *line = rest->p + off;
      const char *nl = memchr (line, '\n', rest->len - off);
      size_t len = nl ? (size_t) (nl - line) : rest->len - off;
      if (nl ? len > CRI_MAX_LINE : len >= CRI_MAX_LINE)
        {
          cri_record (&out, stamp, name, 'P', line, CRI_MAX_LINE);
          off += CRI_MAX_LINE;
        }
      else if (nl || final)
        {
          cri_record (&out, stamp, name, 'F', line, len);
          off += len + (nl != NULL);
        }
      else
        break;
    }
  memmove (rest->p, rest->p + off, rest->len - off);
  rest->len -= off;
  if (out.len && write_all (S.log_fd, out.p, out.len) < 0)
    logmsg ("cannot write the log: %s", strerror (errno));
  free (out.p);
}

/* ---- the per-stream log (docker's json-file driver), for `ctrpy logs` --------------------------------- */

#define STREAM_LOG "container.log"                    /* ctrpy.runtime.supervisor.STREAM_LOG */
#define LOG_MAX_SIZE_ANNOTATION "ctrpy.io/log.max-size" /* ctrpy.runtime.supervisor.LOG_MAX_SIZE_ANNOTATION */
#define LOG_MAX_FILE_ANNOTATION "ctrpy.io/log.max-file" /* ctrpy.runtime.supervisor.LOG_MAX_FILE_ANNOTATION */
#define STREAM_MAX_LINE 16384 /* a longer line is split into records without "\n", as docker's driver does */

/* The init's output as docker's json-file driver keeps it (read by ctrpy/runtime/logs.py): one JSON line
   per line of output, {"log": ..., "stream": ..., "time": ...}, rotated at max_size bytes into
   STREAM_LOG.1 .. STREAM_LOG.<max_file - 1>.  Only without a CRI log: kubelet reads that one instead.  */
static struct
{
  int fd;
  long long size, max_size;
  int max_file;
  char path[PATH_MAX];
  buf_t rest[2]; /* the unfinished last line of stdout, stderr */
} SL = { .fd = -1, .max_file = 1 };

/* An annotation's integer value in the bundle's config.json (a string, as OCI annotations are), or dflt.  */
static long long
annotation_int (const char *json, size_t len, const char *key, long long dflt)
{
  const char *ann = json_find (json, len, "annotations");
  char text[32];
  if (ann == NULL || *ann != '{'
      || json_string (ann, (size_t) (json + len - ann), key, text, sizeof text) < 0 || !text[0])
    return dflt;
  char *endp;
  errno = 0;
  long long v = strtoll (text, &endp, 10);
  return errno || *endp ? dflt : v;
}

static void
stream_log_open (void)
{
  char path[PATH_MAX];
  struct stat st;
  snprintf (path, sizeof path, "%s/config.json", S.dir);
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0 && fstat (fd, &st) == 0 && st.st_size > 0 && st.st_size < MAX_FRAME)
    {
      char *json = malloc ((size_t) st.st_size);
      ssize_t n = json ? read (fd, json, (size_t) st.st_size) : -1;
      if (n > 0)
        {
          SL.max_size = annotation_int (json, (size_t) n, LOG_MAX_SIZE_ANNOTATION, 0);
          SL.max_file = (int) annotation_int (json, (size_t) n, LOG_MAX_FILE_ANNOTATION, 1);
        }
      free (json);
    }
  if (fd >= 0)
    close (fd);
  if (SL.max_size < 0)
    SL.max_size = 0;
  if (SL.max_file < 1)
    SL.max_file = 1;
  snprintf (SL.path, sizeof SL.path, "%s/" STREAM_LOG, S.dir);
  SL.fd = open (SL.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  SL.size = (SL.fd >= 0 && fstat (SL.fd, &st) == 0) ? st.st_size : 0;
  if (SL.fd < 0)
    logmsg ("cannot open %s: %s", SL.path, strerror (errno));
}

static void
stream_log_rotate (void)
{
  char src[PATH_MAX + 16], dst[PATH_MAX + 16];
  struct stat st;
  close (SL.fd);
  for (int i = SL.max_file - 1; i >= 1; i--)
    {
      if (i == 1)
        snprintf (src, sizeof src, "%s", SL.path);
      else
        snprintf (src, sizeof src, "%s.%d", SL.path, i - 1);
      snprintf (dst, sizeof dst, "%s.%d", SL.path, i);
      rename (src, dst);
    }
  if (SL.max_file == 1 && truncate (SL.path, 0) < 0)
    logmsg ("cannot truncate %s: %s", SL.path, strerror (errno));
  SL.fd = open (SL.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  SL.size = (SL.fd >= 0 && fstat (SL.fd, &st) == 0) ? st.st_size : 0;
}

/* Length of the well-formed UTF-8 sequence at `s` (RFC 3629: no overlongs, surrogates or code points past
   U+10FFFF, as Python's decoder), with its code point, or 0.  */
static size_t
utf8_char (const unsigned char *s, size_t n, uint32_t *cp)
{
  unsigned char c = s[0], lo = 0x80, hi = 0xbf;
  size_t len;
  if (c >= 0xc2 && c <= 0xdf)
    len = 2, *cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef)
    {
      len = 3, *cp = c & 0x0f;
      if (c == 0xe0)
        lo = 0xa0;
      else if (c == 0xed)
        hi = 0x9f;
    }
  else if (c >= 0xf0 && c <= 0xf4)
    {
      len = 4, *cp = c & 0x07;
      if (c == 0xf0)
        lo = 0x90;
      else if (c == 0xf4)
        hi = 0x8f;
    }
  else
    return 0;
  if (n < len || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 1; i < len; i++)
    {
      if ((s[i] & 0xc0) != 0x80)
        return 0;
      *cp = (*cp << 6) | (s[i] & 0x3f);
    }
  return len;
}

/* `s` as an ASCII JSON string, as Python's json.dumps(s.decode("utf-8", "surrogateescape")) writes it:
   non-ASCII as \u escapes (surrogate pairs past the BMP), each byte of invalid UTF-8 as the lone surrogate
   \udcXX, which the reader's encode("utf-8", "surrogateescape") turns back into that byte.  */
static void
json_bytes (buf_t *b, const char *data, size_t n)
{
  const unsigned char *s = (const unsigned char *) data;
  size_t i = 0, plain = 0;
  buf_add (b, "\"", 1);
  while (i < n)
    {
      unsigned char c = s[i];
      if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
        {
          i++;
          continue;
        }
      buf_add (b, data + plain, i - plain);
      const char *e = NULL;
      switch (c)
        {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        }
      uint32_t cp;
      size_t len;
      if (e)
        buf_add (b, e, 2), i++;
      else if (c < 0x80)
        buf_printf (b, "\\u%04x", c), i++;
      else if ((len = utf8_char (s + i, n - i, &cp)) == 0)
        buf_printf (b, "\\u%04x", 0xdc00 + c), i++;
      else
        {
          if (cp >= 0x10000)
            buf_printf (b, "\\u%04x\\u%04x", 0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + ((cp - 0x10000) & 0x3ff));
          else
            buf_printf (b, "\\u%04x", cp);
          i += len;
        }
      plain = i;
    }
  buf_add (b, data + plain, i - plain);
  buf_add (b, "\"", 1);
}

/* One record into `out` (the records of this read, written together), rotating first when the record
   would take a non-empty file past max_size: the records before it are written to the old file.  */
static void
stream_record (buf_t *out, const char *stamp, int stream, const char *line, size_t len)
{
  size_t start = out->len;
  buf_add (out, "{\"log\": ", 8);
  json_bytes (out, line, len);
  buf_printf (out, ", \"stream\": \"%s\", \"time\": \"%s\"}\n", stream ? "stderr" : "stdout", stamp);
  size_t rec = out->len - start;
  if (SL.max_size > 0 && SL.size > 0 && SL.size + (long long) rec > SL.max_size)
    {
      if (start && write_all (SL.fd, out->p, start) < 0)
        logmsg ("cannot write %s: %s", SL.path, strerror (errno));
      stream_log_rotate ();
      memmove (out->p, out->p + start, rec);
      out->len = rec;
    }
  SL.size += (long long) rec;
}

static void
stream_log (int stream, const char *data, size_t n, int final)
{
  buf_t *rest = &SL.rest[stream], out = { 0 };
  char stamp[48];
  size_t off = 0;
  if (SL.fd < 0)
    return;
  buf_add (rest, data, n);
  rfc3339_now (stamp, sizeof stamp);
  while (off < rest->len)
    {
      const char *line = rest->p + off;
      const char *nl = memchr (line, '\n', rest->len - off);
      size_t len = nl ? (size_t) (nl - line) + 1 : rest->len - off;
      if (len > STREAM_MAX_LINE)
        {
          /* Cut before a UTF-8 sequence, so both records stay readable text.  */
          len = STREAM_MAX_LINE;
          while (len > STREAM_MAX_LINE - 3 && ((unsigned char) line[len] & 0xc0) == 0x80)
            len--;
        }
      else if (!nl && !final)
        break;
      stream_record (&out, stamp, stream, line, len);
      off += len;
    }
  memmove (rest->p, rest->p + off, rest->len - off);
  rest->len -= off;
  if (out.len && SL.fd >= 0 && write_all (SL.fd, out.p, out.len) < 0)
    logmsg ("cannot write %s: %s", SL.path, strerror (errno));
  free (out.p);
}

static void
log_output (int stream, const char *data, size_t n)
{
  if (S.log_fd < 0)
    return;
  if (S.log_path)
    cri_log (stream, data, n, 0);
  else
    {
      write_all (S.log_fd, data, n);
      stream_log (stream, data, n, 0);
    }
}

/* End of a stream: its unterminated last line is written as a full record.  */
static void
log_end (int stream)
{
  if (S.log_fd >= 0 && S.log_path && cri_rest[stream].len)
    cri_log (stream, "", 0, 1);
  if (SL.rest[stream].len)
    stream_log (stream, "", 0, 1);
}

/* ---- clients --------------------------------------------------------------------------------------- */

static int
send_frame (client_t *c, char kind, const void *data, size_t len)
{
  unsigned char hdr[5] = { (unsigned char) kind, (unsigned char) (len >> 24), (unsigned char) (len >> 16),
                           (unsigned char) (len >> 8), (unsigned char) len };
  struct iovec iov[2] = { { hdr, 5 }, { (void *) data, len } };
  size_t total = 5 + len, done = 0;
  while (done < total)
    {
      struct msghdr msg = { 0 };
      struct iovec v[2];
      int n = 0;
      size_t skip = done;
      for (int i = 0; i < 2; i++)
        {
          if (skip >= iov[i].iov_len)
            {
              skip -= iov[i].iov_len;
              continue;
            }
          v[n].iov_base = (char *) iov[i].iov_base + skip;
          v[n].iov_len = iov[i].iov_len - skip;
          skip = 0;
          n++;
        }
      msg.msg_iov = v;
      msg.msg_iovlen = n;
      ssize_t w = sendmsg (c->fd, &msg, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        return -1;
      done += w;
    }
  return 0;
}

/* SO_PEERCRED: the connecting process runs as our user (root: the CLI).  The socket is abstract, so no
   file permission keeps other users out, and its name is listed in /proc/net/unix.  */
static int
peer_is_us (int fd)
{
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt (fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof cred)
    return 0;
  return cred.uid == geteuid ();
}

static void
drop_client (int i)
{
  close (clients[i].fd);
  free (clients[i].buf);
  clients[i] = clients[--n_clients];
}

/* Send to every client attached to proc `pi`; clients that fail are dropped.  */
static void
broadcast (int pi, char kind, const void *data, size_t len)
{
  for (int i = 0; i < n_clients;)
    {
      if (clients[i].proc == pi && send_frame (&clients[i], kind, data, len) < 0)
        {
          drop_client (i);
          continue;
        }
      i++;
    }
}

/* A K frame carrying dups of the process's output fds: the attached owner keeps them unread, so that if
   we die the container's output still has a reader, and the client drains it (`Attachment.pump`).  */
static void
send_with_fds (client_t *c, char kind, const char *data, size_t len, proc_t *p)
{
  unsigned char hdr[5] = { (unsigned char) kind, (unsigned char) (len >> 24), (unsigned char) (len >> 16),
                           (unsigned char) (len >> 8), (unsigned char) len };
  int fds[2], n = 0;
  if (p->tty ? p->master >= 0 : p->out_fd >= 0)
    fds[n++] = p->tty ? p->master : p->out_fd;
  if (!p->tty && p->err_fd >= 0)
    fds[n++] = p->err_fd;
  if (n == 0)
    {
      send_frame (c, kind, data, len);
      return;
    }
  char cbuf[CMSG_SPACE (sizeof fds)];
  memset (cbuf, 0, sizeof cbuf);
  struct iovec iov[2] = { { hdr, 5 }, { (void *) data, len } };
  struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 2, .msg_control = cbuf,
                        .msg_controllen = CMSG_SPACE (n * sizeof (int)) };
  struct cmsghdr *cm = CMSG_FIRSTHDR (&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN (n * sizeof (int));
  memcpy (CMSG_DATA (cm), fds, n * sizeof (int));
  ssize_t w;
  do
    w = sendmsg (c->fd, &msg, MSG_NOSIGNAL);
  while (w < 0 && errno == EINTR);
  if (w >= 0 && (size_t) w < 5 + len)
    {
      /* the rest without fds (a short write of a small frame is unlikely) */
      const char *all = (const char *) data;
      size_t done = w < 5 ? 0 : w - 5;
      if (w < 5)
        write_all (c->fd, hdr + w, 5 - w);
      write_all (c->fd, all + done, len - done);
    }
}

static void
send_error (client_t *c, const char *msg, const char *cls, int code)
{
  buf_t b = { 0 };
  buf_add (&b, "{\"error\": ", 10);
  buf_str (&b, msg);
  if (cls)
    {
      buf_add (&b, ", \"class\": ", 11);
      buf_str (&b, cls);
      buf_printf (&b, ", \"exit_code\": %d", code);
    }
  buf_add (&b, "}", 1);
  send_frame (c, 'E', b.p, b.len);
  free (b.p);
}

/* ---- processes ------------------------------------------------------------------------------------- */

static void
close_proc_fds (proc_t *p)
{
  int *fds[4] = { &p->out_fd, &p->err_fd, &p->stdin_fd, &p->master };
  if (p->logs)
    {
      log_end (0);
      log_end (1);
    }
  for (int i = 0; i < 4; i++)
    if (*fds[i] >= 0)
      {
        close (*fds[i]);
        *fds[i] = -1;
      }
  free (p->in_buf);
  p->in_buf = NULL;
  p->in_len = 0;
}

static int
find_proc (const char *exec_id)
{
  for (int i = 0; i < MAX_PROCS; i++)
    if (procs[i].used && strcmp (procs[i].exec_id, exec_id) == 0)
      return i;
  return -1;
}

static int
new_proc (const char *exec_id)
{
  for (int i = 0; i < MAX_PROCS; i++)
    if (!procs[i].used)
      {
        proc_t *p = &procs[i];
        memset (p, 0, sizeof *p);
        p->used = 1;
        snprintf (p->exec_id, sizeof p->exec_id, "%s", exec_id);
        p->out_fd = p->err_fd = p->stdin_fd = p->master = -1;
        p->status = -1;
        if (exec_id[0])
          snprintf (p->record_dir, sizeof p->record_dir, "%s/execs/%s", S.dir, exec_id);
        else
          snprintf (p->record_dir, sizeof p->record_dir, "%s", S.dir);
        return i;
      }
  return -1;
}

static void
set_winsize (int fd, int rows, int cols)
{
  struct winsize ws = { .ws_row = rows, .ws_col = cols };
  if (fd >= 0)
    ioctl (fd, TIOCSWINSZ, &ws);
}

/* Take stdio fds (stdin, stdout, stderr or a pty master) for proc `p`.  */
static void
adopt_fds (proc_t *p, int tty, int in_fd, int out_fd, int err_fd, int master)
{
  p->tty = tty;
  if (tty)
    {
      p->master = master;
      p->out_fd = master;
      p->stdin_fd = dup (master);
      set_cloexec (p->stdin_fd);
    }
  else
    {
      p->stdin_fd = in_fd;
      p->out_fd = out_fd;
      p->err_fd = err_fd;
    }
  int fds[3] = { p->out_fd, p->err_fd, p->stdin_fd };
  for (int i = 0; i < 3; i++)
    if (fds[i] >= 0)
      {
        set_nonblock (fds[i]);
        set_cloexec (fds[i]);
      }
}

static int restart_wanted (proc_t *init);

static void
exited (proc_t *p, int wstatus)
{
  if (p->status >= 0)
    return;
  p->status = status_code (wstatus);
  rfc3339_now (p->exited_at, sizeof p->exited_at);
  p->drain_until = mono_ms () + DRAIN_MS;
  if (p->exec_id[0] == 0)
    {
      S.oom_killed = read_oom_killed ();
      S.last_status = p->status;
      /* Every process of a pid namespace dies with its init: their exits are final too.  */
      for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i].used && &procs[i] != p && procs[i].status < 0 && procs[i].pid)
          procs[i].drain_until = p->drain_until;
      if (restart_wanted (p))
        return;
    }
  /* Durable before anything else: a supervisor killed while draining output loses no status.  */
  record_exit (p);
}

static void
reap (void)
{
  for (;;)
    {
      int st;
      pid_t pid = waitpid (-1, &st, WNOHANG | __WALL);
      if (pid <= 0)
        return;
      int found = 0;
      for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i].used && procs[i].pid == pid && procs[i].status < 0)
          {
            exited (&procs[i], st);
            found = 1;
            break;
          }
      if (!found)
        {
          /* Processes we never heard of (the runtime's helpers): keep the newest 64 in case one is an exec
             process whose pid its runtime child has not reported yet.  */
          if (n_unclaimed == 64)
            {
              memmove (unclaimed_pid, unclaimed_pid + 1, 63 * sizeof (pid_t));
              memmove (unclaimed_status, unclaimed_status + 1, 63 * sizeof (int));
              n_unclaimed--;
            }
          unclaimed_pid[n_unclaimed] = pid;
          unclaimed_status[n_unclaimed++] = st;
        }
    }
}

static void
claim (proc_t *p)
{
  for (int i = 0; i < n_unclaimed; i++)
    if (unclaimed_pid[i] == p->pid)
      {
        int st = unclaimed_status[i];
        unclaimed_pid[i] = unclaimed_pid[--n_unclaimed];
        unclaimed_status[i] = unclaimed_status[n_unclaimed];
        exited (p, st);
        return;
      }
}

/* Output drained (or the drain timed out): tell the clients.  */
static void
finish (int pi)
{
  proc_t *p = &procs[pi];
  buf_t b = { 0 };
  p->finished = 1;
  close_proc_fds (p);
  exit_record (&b, p);
  broadcast (pi, 'Z', b.p, b.len);
  free (b.p);
}

/* ---- runtime children: exec and restart through Python ---------------------------------------------- */

/* Run `ctrpy.runtime.supervisor` in exec mode: OP is "exec" or "restart"; `request` goes to it on the
   socketpair; the reply is one JSON line, with the process's stdio fds attached.  Returns the reply
   (malloc'd) and fills fds[0..3] (stdin, stdout, stderr, master; -1 where absent).  */
static char *
runtime_child (const char *op, const char *request, size_t req_len, int fds[4])
{
  int sv[2];
  fds[0] = fds[1] = fds[2] = fds[3] = -1;
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
    return NULL;
  pid_t pid = fork ();
  if (pid < 0)
    {
      close (sv[0]);
      close (sv[1]);
      return NULL;
    }
  if (pid == 0)
    {
      sigset_t none;
      sigemptyset (&none);
      sigprocmask (SIG_SETMASK, &none, NULL);
      signal (SIGPIPE, SIG_DFL);
      dup2 (sv[1], 3);
      char fdarg[16] = "3";
      const char *argv[] = { S.python, "-I", "-S", "-c",
                             "import sys; sys.path.insert(0, sys.argv[1]); from ctrpy.runtime import supervisor; "
                             "sys.exit(supervisor.child_main(sys.argv[2:]))",
                             S.pkgroot, S.dir, op, fdarg, NULL };
      execv (S.python, (char **) argv);
      _exit (127);
    }
  close (sv[1]);
  write_all (sv[0], request, req_len);
  shutdown (sv[0], SHUT_WR);
  buf_t b = { 0 };
  int64_t deadline = mono_ms () + 120000;
  for (;;)
    {
      struct pollfd pfd = { sv[0], POLLIN, 0 };
      int64_t left = deadline - mono_ms ();
      if (left <= 0)
        break;
      int r = poll (&pfd, 1, (int) left);
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        break;
      char data[4096];
      char cbuf[CMSG_SPACE (4 * sizeof (int))];
      struct iovec iov = { data, sizeof data };
      struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
      ssize_t n = recvmsg (sv[0], &msg, MSG_CMSG_CLOEXEC);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      for (struct cmsghdr *cm = CMSG_FIRSTHDR (&msg); cm; cm = CMSG_NXTHDR (&msg, cm))
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
          {
            int k = (cm->cmsg_len - CMSG_LEN (0)) / sizeof (int);
            int *got = (int *) CMSG_DATA (cm);
            for (int i = 0; i < k; i++)
              if (i < 4)
                fds[i] = got[i];
              else
                close (got[i]);
          }
      buf_add (&b, data, n);
      if (memchr (b.p, '\n', b.len))
        break;
    }
  close (sv[0]);
  /* The child exits right after replying (its process, if any, is reparented to us); reap it here so that
     it never fills the table of exits not yet claimed.  */
  if (b.p == NULL)
    kill (pid, SIGKILL);
  while (waitpid (pid, NULL, 0) < 0 && errno == EINTR)
    ;
  if (b.p == NULL)
    return NULL;
  char *nl = memchr (b.p, '\n', b.len);
  if (nl)
    *nl = 0;
  return b.p;
}

/* The reply's fds in order [stdin, stdout, stderr] or [master]: which is which follows "tty".  */
static void
take_child_fds (proc_t *p, const char *reply, int fds[4])
{
  size_t len = strlen (reply);
  int tty = json_bool (reply, len, "tty");
  int has_stdin = json_bool (reply, len, "stdin");
  if (tty)
    adopt_fds (p, 1, -1, -1, -1, fds[0]);
  else if (has_stdin)
    adopt_fds (p, 0, fds[0], fds[1], fds[2], -1);
  else
    adopt_fds (p, 0, -1, fds[0], fds[1], -1);
  p->pid = json_int (reply, len, "pid", 0);
}

static void
handle_exec (client_t *c, int ci, const char *payload, size_t len)
{
  char exec_id[96];
  proc_t *init = &procs[0];
  if (json_string (payload, len, "exec_id", exec_id, sizeof exec_id) < 0 || !exec_id[0]
      || strchr (exec_id, '/') || exec_id[0] == '.')
    {
      send_error (c, "bad request: exec_id", NULL, 0);
      return;
    }
  if (find_proc (exec_id) >= 0)
    {
      char msg[160];
      snprintf (msg, sizeof msg, "exec '%s' already exists", exec_id);
      send_error (c, msg, "AlreadyExists", 5);
      return;
    }
  if (init->status >= 0 || S.restart_at >= 0)
    {
      char msg[160];
      snprintf (msg, sizeof msg, "task %s is not running", S.id);
      send_error (c, msg, "FailedPrecondition", 6);
      return;
    }
  int pi = new_proc (exec_id);
  if (pi < 0)
    {
      send_error (c, "too many exec processes", "Unavailable", 14);
      return;
    }
  char execs[PATH_MAX];
  snprintf (execs, sizeof execs, "%s/execs", S.dir);
  mkdir (execs, 0755);
  mkdir (procs[pi].record_dir, 0755);
  int fds[4];
  char *reply = runtime_child ("exec", payload, len, fds);
  if (reply == NULL || !json_bool (reply, strlen (reply), "ok"))
    {
      for (int i = 0; i < 4; i++)
        if (fds[i] >= 0)
          close (fds[i]);
      if (reply)
        send_frame (c, 'E', reply, strlen (reply));
      else
        send_error (c, "exec: runtime child died", NULL, 0);
      free (reply);
      procs[pi].used = 0;
      return;
    }
  proc_t *p = &procs[pi];
  take_child_fds (p, reply, fds);
  free (reply);
  c->proc = pi;
  char ok[96];
  int n = snprintf (ok, sizeof ok, "{\"pid\": %d, \"tty\": %s}", (int) p->pid, p->tty ? "true" : "false");
  send_frame (c, 'K', ok, n);
  (void) ci;
  claim (p);
}

static void
finalize_restart_stop (void)
{
  /* A stop arrived during the back-off: the last exit is final.  */
  proc_t *init = &procs[0];
  S.restart_at = -1;
  record_restart (0);
  record_exit (init);
}

/* O: kubelet rotated the CRI log; the init's output goes on in a new file at the same path.  */
static void
handle_reopen (client_t *c)
{
  if (procs[0].status >= 0 || !S.log_path)
    {
      char msg[160];
      snprintf (msg, sizeof msg, "container %s is not running", S.id);
      send_error (c, msg, "FailedPrecondition", 6);
      return;
    }
  int fd = open_log ();
  if (fd < 0 || dup3 (fd, S.log_fd, O_CLOEXEC) < 0)
    {
      char msg[PATH_MAX + 64];
      snprintf (msg, sizeof msg, "cannot reopen the log: %s: %s", S.log_path, strerror (errno));
      if (fd >= 0)
        close (fd);
      send_error (c, msg, NULL, 0);
      return;
    }
  close (fd);
  send_frame (c, 'K', "{}", 2);
}

/* Frames whose payload is a JSON request object (I carries raw bytes, C nothing).  */
static int
json_request (char kind)
{
  return kind == 'A' || kind == 'X' || kind == 'R' || kind == 'S' || kind == 'O';
}

static void
handle_frame (int ci, char kind, const char *payload, size_t len)
{
  client_t *c = &clients[ci];
  if (json_request (kind) && len > 0 && !json_valid_object (payload, len))
    {
      send_error (c, "bad request: the payload is not a JSON object (or nests too deeply)", NULL, 0);
      return;
    }
  if (kind == 'A')
    {
      char exec_id[96] = "";
      if (json_find (payload, len, "exec_id") && json_string (payload, len, "exec_id", exec_id, sizeof exec_id) < 0)
        {
          send_error (c, "bad request: exec_id", NULL, 0);
          return;
        }
      int pi = find_proc (exec_id);
      if (pi < 0)
        {
          char msg[160];
          snprintf (msg, sizeof msg, "process '%s' not found", exec_id);
          send_error (c, msg, NULL, 0);
          return;
        }
      proc_t *p = &procs[pi];
      c->proc = pi;
      struct stat st;
      /* Where the client's stream begins in output.log, read if we die (a CRI log has another format).  */
      long long offset = (p->exec_id[0] == 0 && !S.log_path && S.log_fd >= 0 && fstat (S.log_fd, &st) == 0)
                             ? st.st_size
                             : -1;
      char ok[128];
      int n = snprintf (ok, sizeof ok, "{\"pid\": %d, \"tty\": %s, \"log_offset\": %lld}", (int) p->pid,
                        p->tty ? "true" : "false", offset);
      if (json_bool (payload, len, "fds") && !p->finished)
        send_with_fds (c, 'K', ok, n, p);
      else
        send_frame (c, 'K', ok, n);
      if (p->finished)
        {
          buf_t b = { 0 };
          exit_record (&b, p);
          send_frame (c, 'Z', b.p, b.len);
          free (b.p);
        }
    }
  else if (kind == 'X')
    handle_exec (c, ci, payload, len);
  else if (kind == 'I')
    {
      if (c->proc < 0)
        return;
      proc_t *p = &procs[c->proc];
      if (p->stdin_fd < 0)
        return;
      p->in_buf = realloc (p->in_buf, p->in_len + len + 1);
      memcpy (p->in_buf + p->in_len, payload, len);
      p->in_len += len;
    }
  else if (kind == 'C')
    {
      if (c->proc < 0)
        return;
      proc_t *p = &procs[c->proc];
      if (p->tty)
        {
          if (p->stdin_fd >= 0)
            {
              p->in_buf = realloc (p->in_buf, p->in_len + 1);
              p->in_buf[p->in_len++] = 4; /* end of input on a terminal is ^D */
            }
        }
      else
        p->stdin_closing = 1;
    }
  else if (kind == 'R')
    {
      if (c->proc >= 0)
        set_winsize (procs[c->proc].master, json_int (payload, len, "rows", 24), json_int (payload, len, "cols", 80));
    }
  else if (kind == 'S')
    {
      S.stop_requested = 1;
      if (S.restart_at >= 0)
        finalize_restart_stop ();
      send_frame (c, 'K', "{}", 2);
    }
  else if (kind == 'O')
    handle_reopen (c);
  else
    send_error (c, "bad request: unknown frame", NULL, 0);
}

static void
client_readable (int ci)
{
  client_t *c = &clients[ci];
  if (c->cap - c->len < 65536)
    {
      char *grown = realloc (c->buf, c->len + 65536 * 2);
      if (grown == NULL)
        {
          drop_client (ci);
          return;
        }
      c->buf = grown;
      c->cap = c->len + 65536 * 2;
    }
  ssize_t n = recv (c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n <= 0)
    {
      drop_client (ci);
      return;
    }
  c->len += n;
  size_t off = 0;
  while (c->len - off >= 5)
    {
      unsigned char *h = (unsigned char *) c->buf + off;
      size_t flen = ((size_t) h[1] << 24) | ((size_t) h[2] << 16) | ((size_t) h[3] << 8) | h[4];
      if (flen > MAX_FRAME)
        {
          send_error (c, "bad request: frame too large", NULL, 0);
          drop_client (ci);
          return;
        }
      if (c->len - off < 5 + flen)
        break;
      char kind = (char) h[0];
      /* Copy: handling a frame may realloc or move the client.  */
      char *payload = malloc (flen + 1);
      memcpy (payload, c->buf + off + 5, flen);
      payload[flen] = 0;
      off += 5 + flen;
      int fd = c->fd;
      handle_frame (ci, kind, payload, flen);
      free (payload);
      if (ci >= n_clients || clients[ci].fd != fd)
        return; /* dropped while handling */
      c = &clients[ci];
    }
  memmove (c->buf, c->buf + off, c->len - off);
  c->len -= off;
}

static void
output (int pi, int fd, char kind)
{
  proc_t *p = &procs[pi];
  char data[65536];
  ssize_t n = read (fd, data, sizeof data);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n <= 0) /* EOF, or EIO: the pty's last slave closed */
    {
      close (fd);
      if (fd == p->out_fd)
        p->out_fd = -1;
      if (fd == p->err_fd)
        p->err_fd = -1;
      if (fd == p->master)
        p->master = -1;
      if (p->logs)
        log_end (kind == '2');
      return;
    }
  if (p->logs)
    log_output (kind == '2', data, n);
  broadcast (pi, kind, data, n);
}

static void
flush_stdin (proc_t *p)
{
  if (p->in_len)
    {
      ssize_t n = write (p->stdin_fd, p->in_buf, p->in_len);
      if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
      if (n < 0)
        p->in_len = 0; /* the reader is gone: drop the input */
      else
        {
          memmove (p->in_buf, p->in_buf + n, p->in_len - n);
          p->in_len -= n;
        }
    }
  if (!p->in_len && p->stdin_closing && !p->tty)
    {
      close (p->stdin_fd);
      p->stdin_fd = -1;
      p->stdin_closing = 0;
    }
}

/* ---- restart policy ------------------------------------------------------------------------------- */

static void
parse_policy (const char *policy)
{
  if (policy == NULL || !*policy || strcmp (policy, "no") == 0)
    return;
  if (strcmp (policy, "always") == 0 || strcmp (policy, "unless-stopped") == 0)
    S.restart_always = 1;
  else if (strncmp (policy, "on-failure", 10) == 0)
    {
      S.restart_on_failure = 1;
      S.restart_max = policy[10] == ':' ? atoi (policy + 11) : 0;
    }
}

static int
stop_marker (void)
{
  char path[PATH_MAX];
  snprintf (path, sizeof path, "%s/stop-requested", S.dir);
  return access (path, F_OK) == 0;
}

/* Decide, at the init's exit, whether to restart it; if so schedule it (docker's back-off).  */
static int
restart_wanted (proc_t *init)
{
  if (S.stop_requested || stop_marker ())
    return 0;
  if (!S.restart_always && !S.restart_on_failure)
    return 0;
  if (S.restart_on_failure)
    {
      if (init->status == 0)
        return 0;
      if (S.restart_max > 0 && S.failures >= S.restart_max)
        return 0;
    }
  int64_t now = mono_ms ();
  /* Tests shorten docker's 10 s (CTRPY_TEST_RESTART_RESET_MS) instead of sleeping for it.  */
  const char *reset_env = getenv ("CTRPY_TEST_RESTART_RESET_MS");
  int64_t reset_after = reset_env ? atoll (reset_env) : RESET_AFTER_MS;
  if (S.started_at && now - S.started_at >= reset_after)
    S.delay_ms = 100;
  else
    S.delay_ms = S.delay_ms ? S.delay_ms * 2 : 100;
  if (S.delay_ms > MAX_DELAY_MS)
    S.delay_ms = MAX_DELAY_MS;
  S.restart_at = now + S.delay_ms;
  record_restart (1);
  return 1;
}

static void
do_restart (void)
{
  proc_t *init = &procs[0];
  S.restart_at = -1;
  if (S.stop_requested || stop_marker ())
    {
      finalize_restart_stop ();
      return;
    }
  close_proc_fds (init);
  int fds[4];
  char *reply = runtime_child ("restart", "{}", 2, fds);
  if (reply == NULL || !json_bool (reply, strlen (reply), "ok"))
    {
      logmsg ("restart failed: %s", reply ? reply : "runtime child died");
      for (int i = 0; i < 4; i++)
        if (fds[i] >= 0)
          close (fds[i]);
      free (reply);
      S.last_status = init->status;
      record_restart (0);
      record_exit (init);
      return;
    }
  S.restart_count++;
  if (init->status != 0)
    S.failures++;
  take_child_fds (init, reply, fds);
  free (reply);
  init->status = -1;
  init->finished = 0;
  init->exited_at[0] = 0;
  S.started_at = mono_ms ();
  rfc3339_now (S.last_start, sizeof S.last_start);
  record_restart (0);
  claim (init);
}

/* ---- adopt: record the real exit of an orphaned init by tracing it --------------------------------- */

static int
adopt (pid_t pid)
{
  proc_t *p = &procs[new_proc ("")];
  p->pid = pid;
  if (ptrace (PTRACE_SEIZE, pid, 0, (void *) (long) PTRACE_O_TRACEEXIT) < 0)
    {
      logmsg ("cannot trace %d: %s", (int) pid, strerror (errno));
      return 3;
    }
  char path[PATH_MAX], pidtext[32];
  snprintf (path, sizeof path, "%s/supervisor.pid", S.dir);
  snprintf (pidtext, sizeof pidtext, "%d", (int) getpid ());
  write_durably_text (path, pidtext);
  /* Now that we own the exit, tell the launcher (it waits on stdout for this line).  */
  char ok[64];
  int n = snprintf (ok, sizeof ok, "{\"ok\": true, \"pid\": %d}\n", (int) pid);
  write_all (1, ok, n);
  int fd = open ("/dev/null", O_WRONLY);
  if (fd >= 0)
    {
      dup2 (fd, 1);
      close (fd);
    }
  for (;;)
    {
      int st;
      pid_t r = waitpid (pid, &st, __WALL);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        {
          logmsg ("lost the traced process: %s", strerror (errno));
          return 1;
        }
      if (WIFEXITED (st) || WIFSIGNALED (st))
        {
          exited (p, st);
          break;
        }
      if (!WIFSTOPPED (st))
        continue;
      int sig = WSTOPSIG (st);
      int event = (unsigned) st >> 16;
      if (event == PTRACE_EVENT_EXIT)
        {
          unsigned long msg = 0;
          ptrace (PTRACE_GETEVENTMSG, pid, 0, &msg);
          exited (p, (int) msg);
          ptrace (PTRACE_DETACH, pid, 0, 0);
          break;
        }
      if (event == PTRACE_EVENT_STOP)
        {
          /* group-stop (SIGSTOP and friends): stay stopped until continued, as without us.  */
          if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)
            ptrace (PTRACE_LISTEN, pid, 0, 0);
          else
            ptrace (PTRACE_CONT, pid, 0, 0);
          continue;
        }
      /* signal-delivery-stop: deliver the signal as if nobody watched.  */
      ptrace (PTRACE_CONT, pid, 0, (void *) (long) sig);
    }
  publish_events (p);
  return 0;
}

/* ---- main ------------------------------------------------------------------------------------------- */

static int
serve (void)
{
  proc_t *init = &procs[0];
  for (;;)
    {
      int64_t now = mono_ms ();
      for (int i = 0; i < MAX_PROCS; i++)
        {
          proc_t *p = &procs[i];
          if (!p->used || p->status < 0 || p->finished)
            continue;
          if (i == 0 && S.restart_at >= 0)
            continue;
          if ((p->out_fd < 0 && p->err_fd < 0) || now > p->drain_until)
            finish (i);
        }
      if (S.restart_at >= 0 && now >= S.restart_at)
        {
          do_restart ();
          continue;
        }
      if (init->finished && S.restart_at < 0)
        {
          int all = 1;
          for (int i = 0; i < MAX_PROCS; i++)
            if (procs[i].used && !procs[i].finished)
              all = 0;
          if (all)
            return init->status;
        }
      struct pollfd pfd[2 + MAX_CLIENTS + 3 * MAX_PROCS];
      int kinds[2 + MAX_CLIENTS + 3 * MAX_PROCS]; /* 0 sig, 1 listen, 2 client, 3 out, 4 err, 5 stdin */
      int idx[2 + MAX_CLIENTS + 3 * MAX_PROCS];
      int n = 0;
      pfd[n] = (struct pollfd){ S.sig_fd, POLLIN, 0 }, kinds[n] = 0, idx[n++] = 0;
      pfd[n] = (struct pollfd){ S.listen_fd, POLLIN, 0 }, kinds[n] = 1, idx[n++] = 0;
      for (int i = 0; i < n_clients; i++)
        pfd[n] = (struct pollfd){ clients[i].fd, POLLIN, 0 }, kinds[n] = 2, idx[n++] = i;
      int64_t timeout = -1;
      for (int i = 0; i < MAX_PROCS; i++)
        {
          proc_t *p = &procs[i];
          if (!p->used || p->finished)
            continue;
          if (p->out_fd >= 0)
            pfd[n] = (struct pollfd){ p->out_fd, POLLIN, 0 }, kinds[n] = 3, idx[n++] = i;
          if (p->err_fd >= 0)
            pfd[n] = (struct pollfd){ p->err_fd, POLLIN, 0 }, kinds[n] = 4, idx[n++] = i;
          if (p->stdin_fd >= 0 && (p->in_len || p->stdin_closing))
            pfd[n] = (struct pollfd){ p->stdin_fd, POLLOUT, 0 }, kinds[n] = 5, idx[n++] = i;
          if (p->status >= 0 && !(i == 0 && S.restart_at >= 0))
            {
              int64_t t = p->drain_until - now + 10;
              if (t < 0)
                t = 0;
              if (timeout < 0 || t < timeout)
                timeout = t;
            }
        }
      if (S.restart_at >= 0)
        {
          int64_t t = S.restart_at - now;
          if (t < 0)
            t = 0;
          if (timeout < 0 || t < timeout)
            timeout = t;
        }
      int r = poll (pfd, n, (int) timeout);
      if (r < 0 && errno != EINTR)
        {
          logmsg ("poll: %s", strerror (errno));
          return UNKNOWN_EXIT;
        }
      if (r <= 0)
        continue;
      int n_before = n_clients;
      for (int k = 0; k < n; k++)
        {
          if (!pfd[k].revents)
            continue;
          int i = idx[k];
          switch (kinds[k])
            {
            case 0:
              {
                struct signalfd_siginfo si;
                while (read (S.sig_fd, &si, sizeof si) > 0)
                  ;
                reap ();
                break;
              }
            case 1:
              {
                int fd = accept4 (S.listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                  break;
                if (n_clients >= MAX_CLIENTS || !peer_is_us (fd))
                  {
                    close (fd);
                    break;
                  }
                /* A client that stops reading (a suspended `tasks attach`) is dropped after a while
                   instead of blocking the container's output for everyone.  */
                struct timeval tv = { SEND_TIMEOUT_S, 0 };
                setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
                clients[n_clients++] = (client_t){ .fd = fd, .proc = -1 };
                break;
              }
            case 2:
              /* Client indices shift when one is dropped: only handle those whose slot is unchanged.  */
              if (n_clients == n_before && i < n_clients && clients[i].fd == pfd[k].fd)
                client_readable (i);
              break;
            case 3:
              if (procs[i].out_fd == pfd[k].fd)
                output (i, pfd[k].fd, '1');
              break;
            case 4:
              if (procs[i].err_fd == pfd[k].fd)
                output (i, pfd[k].fd, '2');
              break;
            case 5:
              if (procs[i].stdin_fd == pfd[k].fd)
                flush_stdin (&procs[i]);
              break;
            }
        }
      reap ();
    }
}

static int
socket_bind (void)
{
  struct stat st;
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  if (stat (S.dir, &st) < 0)
    return -1;
  int len = snprintf (addr.sun_path + 1, sizeof addr.sun_path - 1, "ctrpy-sup/%llu/%llu",
                      (unsigned long long) st.st_dev, (unsigned long long) st.st_ino);
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  if (bind (fd, (struct sockaddr *) &addr, offsetof (struct sockaddr_un, sun_path) + 1 + len) < 0
      || listen (fd, 64) < 0)
    {
      close (fd);
      return -1;
    }
  return fd;
}

static void
usage (void)
{
  fputs ("usage: ctrpy-supervisor [options] TASK_DIR  (started by ctrpy, not by hand)\n", stderr);
  exit (2);
}

int
main (int argc, char **argv)
{
  int ready_fd = -1, in_fd = -1, out_fd = -1, err_fd = -1, master = -1, tty = 0;
  pid_t pid = 0, adopt_pid = 0;
  static const struct option opts[] = {
    { "ready", 1, 0, 'r' }, { "pid", 1, 0, 'p' }, { "stdin", 1, 0, 'i' }, { "stdout", 1, 0, 'o' },
    { "stderr", 1, 0, 'e' }, { "master", 1, 0, 'm' }, { "cgroup", 1, 0, 'c' }, { "root", 1, 0, 'R' },
    { "namespace", 1, 0, 'n' }, { "id", 1, 0, 'I' }, { "python", 1, 0, 'P' }, { "pkgroot", 1, 0, 'L' },
    { "restart", 1, 0, 'x' }, { "adopt", 1, 0, 'A' }, { "log-path", 1, 0, 'l' }, { 0, 0, 0, 0 },
  };
  int o;
  while ((o = getopt_long (argc, argv, "", opts, NULL)) != -1)
    switch (o)
      {
      case 'r': ready_fd = atoi (optarg); break;
      case 'p': pid = atoi (optarg); break;
      case 'i': in_fd = atoi (optarg); break;
      case 'o': out_fd = atoi (optarg); break;
      case 'e': err_fd = atoi (optarg); break;
      case 'm': master = atoi (optarg); tty = 1; break;
      case 'c': S.cgroup = optarg; break;
      case 'R': S.root = optarg; break;
      case 'n': S.ns = optarg; break;
      case 'I': S.id = optarg; break;
      case 'P': S.python = optarg; break;
      case 'L': S.pkgroot = optarg; break;
      case 'x': S.policy = optarg; break;
      case 'A': adopt_pid = atoi (optarg); break;
      case 'l': S.log_path = *optarg ? optarg : NULL; break;
      default: usage ();
      }
  if (optind != argc - 1 || S.id == NULL)
    usage ();
  S.dir = argv[optind];
  setvbuf (stderr, NULL, _IOLBF, 0);
  signal (SIGPIPE, SIG_IGN);
  signal (SIGINT, SIG_IGN);
  signal (SIGTERM, SIG_IGN);
  signal (SIGHUP, SIG_IGN);
  if (adopt_pid > 0)
    return adopt (adopt_pid);
  if (pid <= 0 || ready_fd < 0)
    usage ();
  set_cloexec (ready_fd);

  sigset_t mask;
  sigemptyset (&mask);
  sigaddset (&mask, SIGCHLD);
  sigprocmask (SIG_BLOCK, &mask, NULL);
  S.sig_fd = signalfd (-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  /* Kept for the case where the launcher could not set it (it survives exec).  */
  prctl (PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  parse_policy (S.policy);

  char path[PATH_MAX], error[PATH_MAX + 64] = "";
  S.log_fd = open_log ();
  if (!S.log_path)
    stream_log_open ();
  /* kubelet reads the CRI log: without it the container must not start.  output.log is best effort.  */
  if (S.log_fd < 0 && S.log_path)
    snprintf (error, sizeof error, "supervisor: cannot open the log %s: %s", S.log_path, strerror (errno));
  else if ((S.listen_fd = socket_bind ()) < 0)
    snprintf (error, sizeof error, "supervisor: cannot listen: %s", strerror (errno));
  int pi = new_proc ("");
  proc_t *init = &procs[pi];
  init->pid = pid;
  init->logs = 1;
  adopt_fds (init, tty, in_fd, out_fd, err_fd, master);
  S.started_at = mono_ms ();

  buf_t reply = { 0 };
  if (error[0])
    {
      buf_add (&reply, "{\"ok\": false, \"error\": ", 23);
      buf_str (&reply, error);
      buf_add (&reply, "}\n", 2);
    }
  else
    {
      snprintf (path, sizeof path, "%s/supervisor.pid", S.dir);
      char pidtext[32];
      snprintf (pidtext, sizeof pidtext, "%d", (int) getpid ());
      int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd >= 0)
        {
          write_all (fd, pidtext, strlen (pidtext));
          close (fd);
        }
      buf_printf (&reply, "{\"ok\": true, \"pid\": %d}\n", (int) pid);
    }
  write_all (ready_fd, reply.p, reply.len);
  close (ready_fd);
  free (reply.p);
  if (error[0])
    return 1;
  reap ();
  int status = serve ();
  publish_events (init);
  for (int i = 0; i < n_clients; i++)
    close (clients[i].fd);
  close (S.listen_fd);
  if (S.log_fd >= 0)
    close (S.log_fd);
  if (SL.fd >= 0)
    close (SL.fd);
  (void) status;
  return 0;
}
