#define _GNU_SOURCE
#include "helper.h"

const char *
ctrpy_helper_version (void)
{
  return CTRPY_HELPER_VERSION;
}
