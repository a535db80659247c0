/* The pause process of a CRI pod sandbox (csrc/pause.c).  */
#ifndef CTRPY_PAUSE_H
#define CTRPY_PAUSE_H

#include "helper.h"

/* cffi:begin */
/* Start a pause process in new namespaces (`clone_flags`, CLONE_NEW*) with `hostname`, detached from the
   caller's session; *pid_out gets its host pid.  */
int ctrpy_pause_spawn (int clone_flags, const char *hostname, int *pid_out, ctrpy_err_t *err);
/* cffi:end */

#endif
