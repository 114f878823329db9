#include "options_method.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int mq_options_apply_method(struct mq_options *o, const char *name, const char *val, struct mq_error *err)
{
	if (strcmp(name, "method") == 0) {
		if (strcmp(val, "rtn") == 0)
			o->method = MQ_METHOD_RTN;
		else if (strcmp(val, "gptq") == 0)
			o->method = MQ_METHOD_GPTQ;
		else
			return mq_fail(err, MQ_ERR_USAGE, "--method '%s': use rtn or gptq", val);
		return 0;
	}
	if (strcmp(name, "damp") == 0) {
		char *end = NULL;
		errno = 0;
		double d = strtod(val, &end);
		if (errno || end == val || *end || !(d >= 0.0 && d < MQ_GPTQ_DAMP_LIMIT))
			return mq_fail(err, MQ_ERR_USAGE, "--damp '%s': give a fraction from 0 to below 1 (default 0.01)", val);
		o->gptq.damp = d;
		o->gptq_options = 1;
		return 0;
	}
	if (strcmp(name, "gptq-scales") == 0) {
		if (strcmp(val, "original") == 0)
			o->gptq.scales = MQ_GPTQ_SCALES_ORIGINAL;
		else if (strcmp(val, "updated") == 0)
			o->gptq.scales = MQ_GPTQ_SCALES_UPDATED;
		else
			return mq_fail(err, MQ_ERR_USAGE, "--gptq-scales '%s': use original or updated", val);
		o->gptq_options = 1;
		return 0;
	}
	if (strcmp(name, "block-size") == 0) {
		char *end = NULL;
		errno = 0;
		unsigned long long v = strtoull(val, &end, 10);
		if (errno || end == val || *end || val[0] == '-' || v < 1 || v > 4096)
			return mq_fail(err, MQ_ERR_USAGE, "--block-size '%s': give a whole number of columns from 1 to 4096 (default 128)", val);
		o->gptq.block = v;
		o->gptq_options = 1;
		return 0;
	}
	if (strcmp(name, "actorder") == 0) {
		if (strcmp(val, "static") == 0 || strcmp(val, "weight") == 0)
			o->gptq.actorder = MQ_ACTORDER_STATIC;
		else if (strcmp(val, "none") == 0)
			o->gptq.actorder = MQ_ACTORDER_NONE;
		else if (strcmp(val, "group") == 0)
			return mq_fail(err, MQ_ERR_USAGE,
				"--actorder 'group' would need a g_idx, which vLLM pays for at run time: use static (the same accuracy, the default) or none");
		else
			return mq_fail(err, MQ_ERR_USAGE, "--actorder '%s': use static or none", val);
		o->gptq_options = 1;
		return 0;
	}
	return mq_fail(err, MQ_ERR_INTERNAL, "--%s: not a method option", name);
}

int mq_options_check_method(struct mq_options *o, struct mq_error *err)
{
	const struct mq_scheme_traits *si = mq_scheme_get(o->scheme);
	if (o->method == MQ_METHOD_GPTQ) {
		if (!o->calib)
			return mq_fail(err, MQ_ERR_USAGE,
				"--method gptq needs the layers' calibration inputs: give --calib FILE.h5 (see README, \"Calibration\")");
		if (!si->fake || (si->acts != MQ_ACTS_NONE && !o->act_none))
			return mq_fail(err, MQ_ERR_USAGE,
				"--method gptq quantizes weights for 16-bit activations: use -s int4, int4-asym, w8a16 or w8a16-asym (or %s with --act none), not %s",
				si->fake ? si->name : "int8", si->name);
		if (o->per_tensor)
			return mq_fail(err, MQ_ERR_USAGE, "--method gptq takes per-channel or per-group scales, not --granularity tensor");
		if (o->gptq.scales == MQ_GPTQ_SCALES_UPDATED && o->gptq.actorder != MQ_ACTORDER_NONE)
			return mq_fail(err, MQ_ERR_USAGE,
				"--gptq-scales updated needs --actorder none: with static order the groups' columns are not quantized one after another");
		o->gptq.clip_mse = o->clip == MQ_CLIP_MSE;
	} else if (o->gptq_options) {
		return mq_fail(err, MQ_ERR_USAGE, "--damp, --block-size, --actorder and --gptq-scales apply to --method gptq");
	}
	return 0;
}
