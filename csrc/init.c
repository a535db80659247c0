/* ctrpy-init: the minimal init behind `run --init` (docker's /sbin/docker-init, which is tini).
 *
 *   ctrpy-init [-g] [--] PROGRAM [ARG...]
 *
 * Runs as the container's PID 1: forks and execs PROGRAM, forwards every signal it can catch to it, reaps
 * every zombie (orphans are re-parented to PID 1, which nothing else waits for), and exits with PROGRAM's
 * status, 128+N when a signal N killed it.  -g (or CTRPY_INIT_KILL_PROCESS_GROUP=1) sends the signals to
 * PROGRAM's whole process group instead, as tini -g does.
 *
 * PROGRAM always gets a process group of its own and, when stdin is a terminal, becomes its foreground
 * group: ctrl-c on `run -it --init` reaches PROGRAM (and what it runs in its group) from the terminal
 * itself, never the init.  Not being PID 1 (`--pid host`), the init makes itself a child subreaper so
 * orphans still come to it.
 *
 * Linked statically (csrc/build_supervisor.py): it is bind-mounted into arbitrary images, some without any
 * libc.  Errors are one line on stderr, "ctrpy-init: what: strerror(errno)"; exec failures exit 127 (not
 * found) or 126 (cannot execute), as a shell and docker do.  */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static void
fail (const char *fmt, ...)
{
  int saved = errno;
  va_list ap;

  fputs ("ctrpy-init: ", stderr);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fprintf (stderr, ": %s\n", strerror (saved));
}

/* Faults are the program's own, raised synchronously: they keep their default action in the init.  */
static int
synchronous (int sig)
{
  return sig == SIGFPE || sig == SIGILL || sig == SIGSEGV || sig == SIGBUS || sig == SIGABRT || sig == SIGTRAP
         || sig == SIGSYS;
}

/* The child: its own process group, the terminal's foreground if there is one, then the signal state the
   init was started with, and exec.  */
static void __attribute__ ((noreturn))
child (char **argv, const sigset_t *oldmask, const struct sigaction *ttin, const struct sigaction *ttou)
{
  if (setpgid (0, 0) < 0)
    {
      fail ("setpgid");
      _exit (125);
    }
  /* SIGTTOU is still ignored here (inherited from the init), so a background group may take the terminal.  */
  if (tcsetpgrp (STDIN_FILENO, getpgrp ()) < 0 && errno != ENOTTY && errno != ENXIO && errno != EBADF)
    {
      fail ("tcsetpgrp");
      _exit (125);
    }
  sigaction (SIGTTIN, ttin, NULL);
  sigaction (SIGTTOU, ttou, NULL);
  sigprocmask (SIG_SETMASK, oldmask, NULL);
  execvp (argv[0], argv);
  fail ("exec %s", argv[0]);
  _exit (errno == ENOENT || errno == ENOTDIR ? 127 : 126);
}

static int
exit_status (int status)
{
  if (WIFEXITED (status))
    return WEXITSTATUS (status);
  if (WIFSIGNALED (status))
    return 128 + WTERMSIG (status);
  return 1;
}

int
main (int argc, char **argv)
{
  const char *env = getenv ("CTRPY_INIT_KILL_PROCESS_GROUP");
  int group = env != NULL && strcmp (env, "") != 0 && strcmp (env, "0") != 0;
  struct sigaction ign = { .sa_handler = SIG_IGN }, ttin, ttou;
  sigset_t all, oldmask;
  pid_t pid;
  int i = 1;

  for (; i < argc && argv[i][0] == '-'; i++)
    {
      if (strcmp (argv[i], "--") == 0)
        {
          i++;
          break;
        }
      if (strcmp (argv[i], "-g") == 0)
        group = 1;
      else
        {
          fprintf (stderr, "ctrpy-init: unknown option %s\nusage: ctrpy-init [-g] [--] PROGRAM [ARG...]\n",
                   argv[i]);
          return 125;
        }
    }
  if (i >= argc)
    {
      fputs ("usage: ctrpy-init [-g] [--] PROGRAM [ARG...]\n", stderr);
      return 125;
    }

  /* Every signal waits in the queue for sigwaitinfo below; a PID namespace's init with default handlers
     would otherwise drop them, while blocked ones are always queued.  */
  sigfillset (&all);
  for (int sig = 1; sig < NSIG; sig++)
    if (synchronous (sig))
      sigdelset (&all, sig);
  if (sigprocmask (SIG_SETMASK, &all, &oldmask) < 0)
    {
      fail ("sigprocmask");
      return 125;
    }
  /* tcsetpgrp from a background group (the child's, before it owns the terminal) raises SIGTTOU.  */
  sigaction (SIGTTIN, &ign, &ttin);
  sigaction (SIGTTOU, &ign, &ttou);
  if (getpid () != 1 && prctl (PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
    fail ("prctl(PR_SET_CHILD_SUBREAPER)"); /* orphans go to the real init then: not fatal */

  pid = fork ();
  if (pid < 0)
    {
      fail ("fork");
      return 125;
    }
  if (pid == 0)
    child (argv + i, &oldmask, &ttin, &ttou);
  /* Also from this side (as shells do), so that a signal forwarded to the group never precedes it.  */
  setpgid (pid, pid);

  for (;;)
    {
      siginfo_t info;
      int sig = sigwaitinfo (&all, &info);

      if (sig < 0)
        {
          if (errno == EINTR)
            continue;
          fail ("sigwaitinfo");
          return 125;
        }
      if (sig != SIGCHLD)
        {
          /* ESRCH: the child is gone and its SIGCHLD is next in the queue.  */
          if (kill (group ? -pid : pid, sig) < 0 && errno != ESRCH)
            fail ("kill %d with signal %d", (int) pid, sig);
          continue;
        }
      for (;;)
        {
          int status;
          pid_t reaped = waitpid (-1, &status, WNOHANG);

          if (reaped <= 0)
            break;
          if (reaped == pid)
            {
              /* Orphans still around die with the PID namespace when we exit, as under tini.  */
              while (waitpid (-1, NULL, WNOHANG) > 0)
                ;
              return exit_status (status);
            }
        }
    }
}
