/* What every unit test includes: cmocka's headers and what they need. */
#ifndef MQ_TEST_UTIL_H
#define MQ_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#endif
