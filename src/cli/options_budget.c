#include "options_budget.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

int mq_options_parse_size(const char *val, uint64_t *bytes)
{
	static const struct { const char *unit; unsigned long long mult; } units[] = {
		{ "", 1 }, { "B", 1 }, { "kB", 1000ull }, { "KB", 1000ull }, { "MB", 1000000ull }, { "GB", 1000000000ull },
		{ "TB", 1000000000000ull }, { "KiB", 1ull << 10 }, { "MiB", 1ull << 20 }, { "GiB", 1ull << 30 },
		{ "TiB", 1ull << 40 },
	};
	char *end = NULL;
	if (*val < '0' || *val > '9')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(val, &end, 10);
	for (size_t i = 0; !errno && i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) == 0 && v > 0 && v <= (1ull << 50) / units[i].mult) {
			*bytes = v * units[i].mult;
			return 0;
		}
	}
	return -1;
}

/* --candidates: names separated by commas, each a scheme once. */
static int apply_candidates(struct mq_options *o, const char *val, struct mq_error *err)
{
	o->n_candidates = 0;
	const char *p = val;
	for (;;) {
		size_t n = strcspn(p, ",");
		char name[48];
		struct mq_candidate c;
		if (n == 0 || n >= sizeof(name))
			return mq_fail(err, MQ_ERR_USAGE, "--candidates '%s': give scheme names separated by commas, such as %s",
				       val, MQ_DEFAULT_CANDIDATES);
		memcpy(name, p, n);
		name[n] = '\0';
		if (mq_candidate_parse(name, &c)) {
			struct mq_buf names = MQ_BUF_INIT;
			mq_scheme_names(&names);
			mq_fail(err, MQ_ERR_USAGE,
				"--candidates: '%s' is not a scheme (use %s; a scheme of groups takes -g32, -g64, -g128 or -channel, as in int4-g128)",
				name, mq_buf_ok(&names) && names.data ? names.data : "a scheme --help lists");
			mq_buf_release(&names);
			return err->code;
		}
		const struct mq_scheme_traits *si = mq_scheme_get(c.scheme);
		if (si->granularities && !(si->granularities & (MQ_GRAN_BIT(MQ_GRAN_CHANNEL) | MQ_GRAN_BIT(MQ_GRAN_GROUP))))
			return mq_fail(err, MQ_ERR_USAGE, "--candidates: '%s' has one scale per tensor only", name);
		for (int k = 0; k < o->n_candidates; k++)
			if (o->candidates[k].scheme == c.scheme && o->candidates[k].group_size == c.group_size)
				return mq_fail(err, MQ_ERR_USAGE, "--candidates '%s': '%s' is given twice", val, name);
		if (o->n_candidates == MQ_MAX_CANDIDATES)
			return mq_fail(err, MQ_ERR_USAGE, "--candidates '%s': at most %d candidates", val, MQ_MAX_CANDIDATES);
		o->candidates[o->n_candidates++] = c;
		if (!p[n])
			return 0;
		p += n + 1;
	}
}

int mq_options_apply_budget(struct mq_options *o, const char *name, const char *val, struct mq_error *err)
{
	if (strcmp(name, "candidates") == 0)
		return apply_candidates(o, val, err);
	if (strcmp(name, "measure-every") == 0) {
		char *e = NULL;
		errno = 0;
		long v = *val >= '0' && *val <= '9' ? strtol(val, &e, 10) : 0;
		if (errno || !e || *e || v < 1 || v > 1024)
			return mq_fail(err, MQ_ERR_USAGE, "--measure-every '%s': give a whole number from 1 (every row) to 1024", val);
		o->measure_every = (int)v;
		o->measure_given = 1;
		return 0;
	}
	if (strcmp(name, "target-size") == 0) {
		if (mq_options_parse_size(val, &o->target_size))
			return mq_fail(err, MQ_ERR_USAGE, "--target-size '%s': give a positive size such as 5GB, 500MB or 2GiB",
				       val);
		return 0;
	}
	char *end = NULL;
	errno = 0;
	double b = strtod(val, &end);
	if (strcmp(name, "min-sqnr") == 0 || strcmp(name, "fail-below") == 0) {
		if (errno || end == val || *end || !isfinite(b) || b < -100 || b > 300)
			return mq_fail(err, MQ_ERR_USAGE, "--%s '%s': give an SQNR in dB, a number from -100 to 300 (such as 20)", name, val);
		*(strcmp(name, "min-sqnr") == 0 ? &o->min_sqnr : &o->fail_below) = b;
		return 0;
	}
	if (errno || end == val || *end || !isfinite(b) || b <= 0 || b > 64)
		return mq_fail(err, MQ_ERR_USAGE, "--target-bpw '%s': give the bits per weight, a number above 0 and up to 64 (such as 4.5)", val);
	o->target_bpw = b;
	return 0;
}

int mq_options_check_budget(struct mq_options *o, struct mq_error *err)
{
	if (!mq_options_mixed(o) && o->measure_given)
		return mq_fail(err, MQ_ERR_USAGE, "--measure-every needs a budget: --target-bpw B or --target-size SIZE");
	if (!mq_options_mixed(o) && o->n_candidates)
		return mq_fail(err, MQ_ERR_USAGE, "--candidates needs a budget: --target-bpw B or --target-size SIZE");
	if (!mq_options_mixed(o) && o->min_sqnr == o->min_sqnr)
		return mq_fail(err, MQ_ERR_USAGE,
			"--min-sqnr chooses among candidates: give a budget (--target-bpw B or --target-size SIZE); --fail-below gates a run of one scheme");
	if (!mq_options_mixed(o))
		return 0;
	if (o->target_bpw > 0 && o->target_size)
		return mq_fail(err, MQ_ERR_USAGE, "give one of --target-bpw and --target-size");
	if (o->scheme_given)
		return mq_fail(err, MQ_ERR_USAGE,
			"--scheme gives every weight one scheme; with --target-bpw or --target-size each weight gets one of --candidates (default %s)",
			MQ_DEFAULT_CANDIDATES);
	if (o->per_tensor || o->group_size || o->channel_given)
		return mq_fail(err, MQ_ERR_USAGE,
			"--granularity and --group-size do not go with a target: each candidate names its grouping (int4-g64, w8a16-channel)");
	if (o->method != MQ_METHOD_RTN)
		return mq_fail(err, MQ_ERR_USAGE,
			"--method gptq does not go with --target-bpw or --target-size yet: the candidates are measured rounded to nearest (drop --method, or quantize with one --scheme)");
	if (o->calib && o->calib_weights_only)
		return mq_fail(err, MQ_ERR_USAGE,
			"--calib-missing=weights-only does not go with a target: with --calib the candidates' errors are measured on the layers' outputs, which a layer without calibration has none of; capture it or leave it out with --exclude");
	if (!o->n_candidates && apply_candidates(o, MQ_DEFAULT_CANDIDATES, err))
		return err->code;
	return 0;
}
