#ifndef ROOST_CLIBUV_SHIM_H
#define ROOST_CLIBUV_SHIM_H
#include <uv.h>
#endif
