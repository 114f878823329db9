#include "options_regex.h"

#include <regex.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* The length of the atom at p: a bracket expression, an escape, or one character. */
static size_t atom_len(const char *p)
{
	if (p[0] == '\\')
		return p[1] ? 2 : 1;
	if (p[0] != '[')
		return 1;
	size_t i = 1;
	if (p[i] == '^')
		i++;
	if (p[i] == ']')
		i++; /* a leading ']' is a member */
	while (p[i] && p[i] != ']') {
		if (p[i] == '[' && (p[i + 1] == ':' || p[i + 1] == '=' || p[i + 1] == '.')) {
			const char *end = strchr(p + i + 2, p[i + 1]);
			while (end && end[1] != ']')
				end = strchr(end + 1, p[i + 1]);
			if (!end)
				return strlen(p); /* unterminated: regcomp says so */
			i = (size_t)(end - p) + 2;
		} else {
			i++;
		}
	}
	return p[i] ? i + 1 : i;
}

/*
 * A bound {n}, {n,}, {n,m} or glibc's {,m} at p: its length, *mult (the
 * copies regcomp makes) and *max_bound; 0 when p is not a bound.
 */
static size_t bound_len(const char *p, uint64_t *mult, uint64_t *max_bound)
{
	uint64_t v[2] = { 0, 0 };
	int have[2] = { 0, 0 }, k = 0;
	size_t i = 1;
	for (; p[i]; i++) {
		if (p[i] >= '0' && p[i] <= '9') {
			v[k] = v[k] > 100000 ? v[k] : v[k] * 10 + (uint64_t)(p[i] - '0');
			have[k] = 1;
		} else if (p[i] == ',' && k == 0) {
			k = 1;
		} else {
			break;
		}
	}
	if (p[i] != '}' || (!have[0] && k == 0))
		return 0;
	uint64_t m = k == 0 ? v[0] : have[1] ? v[1] : v[0] + 1;
	*max_bound = v[0] > v[1] ? v[0] : v[1];
	*mult = m > 2 ? m : 2;
	return i + 1;
}

/* The pattern's cost for regcomp (see MQ_REGEX_MAX_COPIES), or a usage error naming what would explode. */
static int check_regex_cost(const char *re, const char *opt, struct mq_error *err)
{
	size_t n = strlen(re);
	if (n > MQ_REGEX_MAX_LEN)
		return mq_fail(err, MQ_ERR_USAGE, "--%s '%.40s...': the pattern is %zu bytes long, more than the limit of %d",
			       opt, re, n, MQ_REGEX_MAX_LEN);
	uint64_t last[MQ_REGEX_MAX_LEN + 2];  /* per open group: the copies of its last atom (or group) */
	uint64_t start[MQ_REGEX_MAX_LEN + 2]; /* per open group: total at its '(' */
	uint64_t total = 0;                   /* copies of every atom so far */
	int depth = 0;
	size_t prev_q = 0, prev_len = 0;     /* the quantifier just before, if any */
	last[0] = 0;
	for (size_t i = 0; i < n;) {
		uint64_t mult = 0, bound = 0;
		size_t q = strchr("*+?", re[i]) ? 1 : re[i] == '{' ? bound_len(re + i, &mult, &bound) : 0;
		if (q == 1)
			mult = 2;
		if (q && prev_len)
			return mq_fail(err, MQ_ERR_USAGE, "--%s '%s': stacked quantifiers ('%.*s' right after '%.*s'): POSIX "
				       "leaves them undefined and regcomp's work doubles with each; use one", opt, re, (int)q,
				       re + i, (int)prev_len, re + prev_q);
		if (q && bound > MQ_REGEX_MAX_REPEAT)
			return mq_fail(err, MQ_ERR_USAGE, "--%s '%s': the repetition bound %llu is more than the limit of %d",
				       opt, re, (unsigned long long)bound, MQ_REGEX_MAX_REPEAT);
		if (q) {
			total += last[depth] * (mult - 1);
			last[depth] *= mult;
			prev_q = i;
			prev_len = q;
			i += q;
		} else if (re[i] == '\\' && re[i + 1] >= '1' && re[i + 1] <= '9') {
			return mq_fail(err, MQ_ERR_USAGE, "--%s '%s': back-references ('\\%c') are not part of POSIX extended "
				       "regular expressions", opt, re, re[i + 1]);
		} else {
			prev_len = 0;
			if (re[i] == '(') {
				depth++;
				last[depth] = 0;
				start[depth] = total;
				i++;
				continue;
			}
			if (re[i] == ')' && depth > 0) { /* a quantifier after it repeats the group: its copies since '(' */
				last[depth - 1] = total - start[depth];
				depth--;
				i++;
				continue;
			}
			if (re[i] == '|') {
				last[depth] = 0;
				i++;
				continue;
			}
			total++;
			last[depth] = 1;
			i += atom_len(re + i);
		}
		if (total > MQ_REGEX_MAX_COPIES)
			return mq_fail(err, MQ_ERR_USAGE, "--%s '%s': its repetitions, written out, make more than %d copies of "
				       "its atoms (nested repeats multiply: (a{1,64}){1,64} makes 4096); simplify it", opt, re,
				       MQ_REGEX_MAX_COPIES);
	}
	return 0;
}

int mq_options_check_regex(const char *re, const char *opt, struct mq_error *err)
{
	if (check_regex_cost(re, opt, err))
		return err->code;
	regex_t r;
	int rc = regcomp(&r, re, REG_EXTENDED | REG_NOSUB);
	if (rc) {
		char msg[256];
		regerror(rc, &r, msg, sizeof(msg));
		return mq_fail(err, MQ_ERR_USAGE, "--%s '%s': invalid regular expression: %s", opt, re, msg);
	}
	regfree(&r);
	return 0;
}
