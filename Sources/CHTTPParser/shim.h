#ifndef ROOST_CHTTPPARSER_SHIM_H
#define ROOST_CHTTPPARSER_SHIM_H
#include <http_parser.h>
#endif
