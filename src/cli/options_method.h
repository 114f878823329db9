/*
 * options_method: the options of the rounding method (--method and GPTQ's
 * --damp, --block-size, --actorder, --gptq-scales), parsed and checked for
 * options.c.
 */
#ifndef MQ_OPTIONS_METHOD_H
#define MQ_OPTIONS_METHOD_H

#include "config.h"
#include "status.h"

/* One of them by its long name, with its value. */
int mq_options_apply_method(struct mq_options *o, const char *name, const char *val, struct mq_error *err);
/* After all options: what the method needs of the others (calibration, a weight-only scheme). */
int mq_options_check_method(struct mq_options *o, struct mq_error *err);

#endif
