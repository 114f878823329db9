/*
 * plan_select: which tensors a run quantizes (README, "Selection"), for
 * plan.c, and the reasons it records.
 */
#include "plan.h"

#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

char *mq_plan_fmt(const char *f, ...)
{
	struct mq_buf s = MQ_BUF_INIT;
	va_list ap;
	va_start(ap, f);
	mq_buf_vaddf(&s, f, ap);
	va_end(ap);
	return mq_buf_ok(&s) ? mq_buf_detach(&s, NULL) : NULL;
}

static int matches(const char *re, const char *name)
{
	regex_t r;
	if (regcomp(&r, re, REG_EXTENDED | REG_NOSUB))
		return 0; /* options.c validated every pattern */
	int hit = regexec(&r, name, 0, NULL, 0) == 0;
	regfree(&r);
	return hit;
}

static int ends_with_weight(const char *n)
{
	size_t l = strlen(n);
	return l > 7 && strcmp(n + l - 7, ".weight") == 0;
}

/*
 * The user's rules: --exclude keeps a tensor; with --include, only a match
 * is taken. *decided says whether they settled the tensor's fate (in *act,
 * with the reason returned).
 */
static char *user_rules(const struct mq_tensor *t, const struct mq_options *o, enum mq_action *act, int *decided)
{
	*decided = 1;
	for (int i = 0; i < o->n_excludes; i++)
		if (matches(o->excludes[i], t->name))
			return mq_plan_fmt("--exclude '%s'", o->excludes[i]);
	if (o->n_includes) {
		for (int i = 0; i < o->n_includes; i++) {
			if (matches(o->includes[i], t->name)) {
				*act = MQ_ACT_QUANT;
				return mq_plan_fmt("--include '%s'", o->includes[i]);
			}
		}
		return mq_plan_fmt("no --include matches");
	}
	*decided = 0;
	return NULL;
}

/*
 * A cast's fate: like model.to(dtype), every floating-point tensor of any
 * shape and name is cast, unless --exclude keeps it or --include does not
 * pick it. The default exclusions (embeddings, lm_head) guard integer
 * quantization and do not apply (README, "Selection").
 */
static char *select_cast(const struct mq_tensor *t, const struct mq_options *o, enum mq_action *act)
{
	*act = MQ_ACT_KEEP;
	if (!mq_dtype_is_float(t->dtype))
		return mq_plan_fmt("dtype %s is not a floating-point type", mq_dtype_name(t->dtype));
	int decided;
	char *why = user_rules(t, o, act, &decided);
	if (decided)
		return why;
	*act = MQ_ACT_QUANT;
	return mq_plan_fmt("floating-point tensor (cast)");
}

char *mq_plan_select(const struct mq_tensor *t, const struct mq_options *o, enum mq_action *act)
{
	/* mixed precision: the weights any candidate may take (each candidate's own rule is checked per tensor) */
	const enum mq_select sel = mq_options_mixed(o) ? MQ_SELECT_WEIGHTS : mq_scheme_get(o->scheme)->select;
	if (sel == MQ_SELECT_FLOATS)
		return select_cast(t, o, act);
	*act = MQ_ACT_KEEP;
	if (!mq_dtype_is_float(t->dtype))
		return mq_plan_fmt("dtype %s is not quantized", mq_dtype_name(t->dtype));
	if (sel == MQ_SELECT_LINEAR && t->ndim != 2)
		return mq_plan_fmt("%d-D tensor (the scheme takes Linear weights [out, in] only)", t->ndim);
	if (t->ndim != 2 && t->ndim != 4)
		return mq_plan_fmt("%d-D tensor", t->ndim);
	if (!ends_with_weight(t->name))
		return mq_plan_fmt("name does not end in .weight");
	if (t->nbytes == 0)
		return mq_plan_fmt("empty tensor");
	int decided;
	char *why = user_rules(t, o, act, &decided);
	if (decided)
		return why;
	if (o->folder_output && t->ndim != 2)
		return mq_plan_fmt("%d-D weight (a model folder quantizes Linear layers only, as compressed-tensors does; --include takes it)",
			   t->ndim);
	if (!o->no_default_excludes)
		for (int i = 0; i < mq_n_default_excludes; i++)
			if (matches(mq_default_excludes[i], t->name))
				return mq_plan_fmt("default exclusion '%s'", mq_default_excludes[i]);
	*act = MQ_ACT_QUANT;
	return mq_plan_fmt("Linear or Conv weight");
}

