/* OCI hooks run by the helper: prestart/createRuntime from the runtime's side while the container process
 * waits before pivot_root, createContainer and startContainer inside the container process.  */
#ifndef CTRPY_HOOKS_H
#define CTRPY_HOOKS_H

#include "helper.h"

/* cffi:begin */
/* Run `hook` with `state_fmt` (the state JSON, "%d" where the pid goes, "%%" for a "%") formatted with
   `pid` on its stdin; wait for it, killing it after hook->timeout seconds (0: no limit).  Returns 0 when
   it exits 0, else -1 with err set ("... hook <path> exited with status N" / "timed out").  */
int ctrpy_run_hook (const ctrpy_hook_t *hook, const char *state_fmt, int pid, const char *kind, ctrpy_err_t *err);
/* cffi:end */

#endif
