/* OCI hooks (runtime-spec config.md "POSIX-platform Hooks"): exec path with args and env, the container
 * state on stdin, a timeout.  The state goes through a memfd rather than a pipe, so a hook that never
 * reads its stdin can neither block us nor kill us with SIGPIPE.  */
#define _GNU_SOURCE
#include "hooks.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int
state_fd (const char *state_fmt, int pid)
{
  int fd = memfd_create ("ctrpy-hook-state", MFD_CLOEXEC);
  FILE *f;
  if (fd < 0)
    return -1;
  f = fdopen (dup (fd), "w");
  if (f == NULL)
    {
      close (fd);
      return -1;
    }
  /* The format comes from ctrpy itself (Python escapes every "%" of the JSON but the pid's).  */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
  fprintf (f, state_fmt, pid);
#pragma GCC diagnostic pop
  if (fclose (f) != 0 || lseek (fd, 0, SEEK_SET) < 0)
    {
      close (fd);
      return -1;
    }
  return fd;
}

static long
now_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

int
ctrpy_run_hook (const ctrpy_hook_t *hook, const char *state_fmt, int pid, const char *kind, ctrpy_err_t *err)
{
  int in = state_fd (state_fmt, pid);
  long deadline = hook->timeout > 0 ? now_ms () + hook->timeout * 1000L : 0;
  int status;
  pid_t child;

  if (in < 0)
    return ctrpy_make_error (err, errno, "%s hook %s: state", kind, hook->path);
  /* Raw clone, as elsewhere in the helper: we may be running inside a clone of a threaded process.  */
  child = syscall (SYS_clone, SIGCHLD, 0, 0, 0, 0);
  if (child < 0)
    {
      close (in);
      return ctrpy_make_error (err, errno, "%s hook %s: fork", kind, hook->path);
    }
  if (child == 0)
    {
      static const char *no_env[] = { NULL };
      const char *argv0[] = { hook->path, NULL };
      sigset_t none;
      sigemptyset (&none);
      sigprocmask (SIG_SETMASK, &none, NULL);
      if (dup2 (in, 0) < 0)
        _exit (127);
      execve (hook->path, (char *const *) (hook->argv && hook->argv[0] ? hook->argv : argv0),
              (char *const *) (hook->env ? hook->env : no_env));
      _exit (127);
    }
  close (in);
  for (int delay = 1;;)
    {
      pid_t r = waitpid (child, &status, deadline ? WNOHANG : 0);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        return ctrpy_make_error (err, errno, "%s hook %s: wait", kind, hook->path);
      if (r == child)
        break;
      if (now_ms () >= deadline)
        {
          kill (child, SIGKILL);
          while (waitpid (child, &status, 0) < 0 && errno == EINTR)
            ;
          return ctrpy_make_error (err, ETIMEDOUT, "%s hook %s timed out after %d s", kind, hook->path, hook->timeout);
        }
      {
        struct timespec ts = { 0, delay * 1000000L };
        nanosleep (&ts, NULL);
        delay = delay < 50 ? delay * 2 : 50;
      }
    }
  if (WIFEXITED (status) && WEXITSTATUS (status) == 0)
    return 0;
  if (WIFEXITED (status) && WEXITSTATUS (status) == 127)
    return ctrpy_make_error (err, ENOENT, "%s hook %s: cannot execute it (exit status 127)", kind, hook->path);
  if (WIFSIGNALED (status))
    return ctrpy_make_error (err, ECANCELED, "%s hook %s killed by signal %d", kind, hook->path, WTERMSIG (status));
  return ctrpy_make_error (err, ECANCELED, "%s hook %s exited with status %d", kind, hook->path, WEXITSTATUS (status));
}
