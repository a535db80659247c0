/* ctrpy_make_error: the one way C code fills a ctrpy_err_t (crun's crun_make_error in miniature). */
#define _GNU_SOURCE
#include "helper.h"

#include <stdarg.h>
#include <stdio.h>

int
ctrpy_make_error (ctrpy_err_t *err, int errno_, const char *fmt, ...)
{
  va_list ap;
  err->errno_ = errno_;
  va_start (ap, fmt);
  vsnprintf (err->msg, sizeof (err->msg), fmt, ap);
  va_end (ap);
  return -1;
}
