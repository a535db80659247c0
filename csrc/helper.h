/* ctrpy helper: the small C part of ctrpy (namespaces, mounts, pivot_root, exec).
 *
 * Conventions (crun's in miniature): every fallible function is `int f (..., ctrpy_err_t *err)` and returns
 * >= 0 on success, < 0 on failure with err->errno_ and err->msg set.  Python passes flat structs, no JSON.  */
#ifndef CTRPY_HELPER_H
#define CTRPY_HELPER_H

#define CTRPY_HELPER_VERSION "0.1.0"

typedef struct
{
  int errno_;
  char msg[256];
} ctrpy_err_t;

const char *ctrpy_helper_version (void);

#endif
