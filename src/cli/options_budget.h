/*
 * options_budget: the options of mixed precision (--target-bpw,
 * --target-size, --candidates), parsed and checked for options.c, and the
 * byte sizes they and --max-shard-size are given in.
 */
#ifndef MQ_OPTIONS_BUDGET_H
#define MQ_OPTIONS_BUDGET_H

#include <stdint.h>

#include "config.h"
#include "status.h"

/* "5GB", "500MB", "2GiB", "123" (bytes): 0 and *bytes (at most 2^50), or -1. */
int mq_options_parse_size(const char *val, uint64_t *bytes);
/* One of the three options by its long name, with its value. */
int mq_options_apply_budget(struct mq_options *o, const char *name, const char *val, struct mq_error *err);
/*
 * After all options: a target with the options it cannot go with, the
 * default candidates where none were given, and --candidates without a
 * target refused.
 */
int mq_options_check_budget(struct mq_options *o, struct mq_error *err);

#endif
