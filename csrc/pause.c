/* The pod sandbox's pause process, started by the helper itself so that no pause image has to be pulled
 * (containerd runs registry.k8s.io/pause as a container).  It holds the pod's namespaces (network, IPC,
 * UTS, and PID when the pod shares one) for the containers that join them by path, reaps the orphans of a
 * shared PID namespace, and exits 0 on SIGTERM or SIGINT.
 *
 * ctrpy_pause_spawn() forks twice: the middle child leaves our session, unshares the namespaces, sets the
 * hostname and forks the pause process (which is PID 1 of a new PID namespace when one is asked for), then
 * exits; so the pause process is adopted by init and outlives the server that started it.  Errors of the
 * middle child come back over a CLOEXEC pipe as {errno, msg}, as helper.c does.  */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pause.h"

struct pause_reply
{
  int pid;
  int errno_;
  char msg[256];
};

static void __attribute__ ((noreturn))
pause_loop (void)
{
  sigset_t set;

  sigemptyset (&set);
  sigaddset (&set, SIGCHLD);
  sigaddset (&set, SIGTERM);
  sigaddset (&set, SIGINT);
  /* Blocked signals are queued even for a PID namespace's init, which ignores default-action signals.  */
  sigprocmask (SIG_BLOCK, &set, NULL);
  prctl (PR_SET_NAME, "pause", 0, 0, 0);
  for (;;)
    {
      int sig = 0;
      if (sigwait (&set, &sig) != 0)
        continue;
      if (sig == SIGCHLD)
        {
          while (waitpid (-1, NULL, WNOHANG) > 0)
            ;
          continue;
        }
      _exit (0);
    }
}

static void __attribute__ ((noreturn))
middle_fail (int fd, const char *what)
{
  struct pause_reply r;

  memset (&r, 0, sizeof r);
  r.pid = -1;
  r.errno_ = errno;
  snprintf (r.msg, sizeof r.msg, "pause: %s", what);
  if (write (fd, &r, sizeof r) < 0)
    _exit (2);
  _exit (1);
}

static void __attribute__ ((noreturn))
middle (int fd, int clone_flags, const char *hostname)
{
  struct pause_reply r;
  int null_fd;
  pid_t pid;

  setsid ();
  null_fd = open ("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd >= 0)
    {
      dup2 (null_fd, 0);
      dup2 (null_fd, 1);
      dup2 (null_fd, 2);
    }
  if (chdir ("/") < 0)
    middle_fail (fd, "chdir /");
  if (clone_flags && unshare (clone_flags) < 0)
    middle_fail (fd, "unshare");
  if ((clone_flags & CLONE_NEWUTS) && hostname && *hostname && sethostname (hostname, strlen (hostname)) < 0)
    middle_fail (fd, "sethostname");
  pid = fork ();
  if (pid < 0)
    middle_fail (fd, "fork");
  if (pid == 0)
    {
      /* Nothing of the server's may stay open in a process that lives as long as the pod.  */
      int keep = fd;
      close (keep);
      syscall (SYS_close_range, 3, ~0U, 0);
      pause_loop ();
    }
  memset (&r, 0, sizeof r);
  r.pid = pid;
  if (write (fd, &r, sizeof r) < 0)
    _exit (2);
  _exit (0);
}

__attribute__ ((visibility ("default"))) int
ctrpy_pause_spawn (int clone_flags, const char *hostname, int *pid_out, ctrpy_err_t *err)
{
  int fds[2];
  struct pause_reply r;
  pid_t child;
  ssize_t n;
  int status;

  if (pipe2 (fds, O_CLOEXEC) < 0)
    {
      err->errno_ = errno;
      snprintf (err->msg, sizeof err->msg, "pause: pipe");
      return -1;
    }
  child = fork ();
  if (child < 0)
    {
      err->errno_ = errno;
      snprintf (err->msg, sizeof err->msg, "pause: fork");
      close (fds[0]);
      close (fds[1]);
      return -1;
    }
  if (child == 0)
    {
      close (fds[0]);
      middle (fds[1], clone_flags, hostname);
    }
  close (fds[1]);
  memset (&r, 0, sizeof r);
  do
    n = read (fds[0], &r, sizeof r);
  while (n < 0 && errno == EINTR);
  close (fds[0]);
  while (waitpid (child, &status, 0) < 0 && errno == EINTR)
    ;
  if (n != (ssize_t) sizeof r)
    {
      err->errno_ = EIO;
      snprintf (err->msg, sizeof err->msg, "pause: the setup process died");
      return -1;
    }
  if (r.pid < 0)
    {
      err->errno_ = r.errno_;
      memcpy (err->msg, r.msg, sizeof err->msg);
      err->msg[sizeof err->msg - 1] = '\0';
      return -1;
    }
  *pid_out = r.pid;
  return 0;
}
