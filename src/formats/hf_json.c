/*
 * JSON text as Python's json module writes it (hf.h): the printer over a
 * cJSON tree, and Python's repr() of a double.
 */
#include "hf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

#define JSON_MAX_DEPTH 64

/*
 * The shortest decimal digits that read back as v (v finite): dig gets them
 * without sign or point (no trailing zero but for 0 itself), *x the decimal
 * exponent of the first one. The correctly rounded n-digit decimal is tried
 * for n = 1, 2, ...; at a power of two the decimals that read back are not
 * centred on v, so the n-digit decimal just above |v| is tried too (Python's
 * dtoa takes it when the rounded one misses).
 */
static int shortest_digits(double v, char dig[24], int *x)
{
	char e[40] = "";
	for (int prec = 0; prec < 17; prec++) {
		snprintf(e, sizeof(e), "%.*e", prec, fabs(v));
		double r = strtod(e, NULL);
		if (r == fabs(v))
			break;
		if (r > fabs(v))
			continue;
		char up[40];
		memcpy(up, e, sizeof(up));
		char *q = strchr(up, 'e') - 1;
		while (q > up && (*q == '9' || *q == '.')) {
			if (*q == '9')
				*q = '0';
			q--;
		}
		if (*q != '9') { /* 9.99e5 + 1 would be 1e6, a shorter decimal already refused */
			(*q)++;
			if (strtod(up, NULL) == fabs(v)) {
				memcpy(e, up, sizeof(e));
				break;
			}
		}
	}
	int n = 0;
	const char *s = e;
	for (; *s != 'e'; s++)
		if (*s != '.')
			dig[n++] = *s;
	*x = atoi(s + 1);
	while (n > 1 && dig[n - 1] == '0')
		n--;
	dig[n] = '\0';
	return n;
}

/*
 * Python's repr() of a double (float_repr_style "short"): the shortest
 * digits; fixed notation with at least one digit after the point while the
 * decimal exponent x of the first digit is in [-4, 15], else d.ddde-XX or
 * d.ddde+XX (at least two exponent digits).
 */
static void py_float_repr(struct mq_buf *b, double v)
{
	if (isnan(v) || isinf(v)) {
		mq_buf_adds(b, isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
		return;
	}
	char dig[24];
	int x;
	int n = shortest_digits(v, dig, &x);
	if (signbit(v))
		mq_buf_adds(b, "-");
	if (x < -4 || x > 15) {
		mq_buf_addf(b, "%c%s%s", dig[0], n > 1 ? "." : "", dig + 1);
		mq_buf_addf(b, "e%c%02d", x < 0 ? '-' : '+', abs(x));
	} else if (x < 0) {
		mq_buf_addf(b, "0.%.*s%s", -x - 1, "0000", dig);
	} else if (x + 1 >= n) {
		mq_buf_addf(b, "%s%.*s.0", dig, x + 1 - n, "000000000000000");
	} else {
		mq_buf_addf(b, "%.*s.%s", x + 1, dig, dig + x + 1);
	}
}

static void print_number(struct mq_buf *b, double v)
{
	if (v == floor(v) && fabs(v) < 9007199254740992.0)
		mq_buf_addf(b, "%lld", (long long)v);
	else
		py_float_repr(b, v);
}

/* The code point of the valid UTF-8 sequence at *s, which is stepped over. */
static unsigned utf8_next(const unsigned char **s)
{
	const unsigned char *p = *s;
	if (p[0] < 0x80) {
		*s += 1;
		return p[0];
	}
	if (p[0] < 0xe0) {
		*s += 2;
		return (unsigned)(p[0] & 0x1f) << 6 | (p[1] & 0x3f);
	}
	if (p[0] < 0xf0) {
		*s += 3;
		return (unsigned)(p[0] & 0x0f) << 12 | (unsigned)(p[1] & 0x3f) << 6 | (p[2] & 0x3f);
	}
	*s += 4;
	return (unsigned)(p[0] & 0x07) << 18 | (unsigned)(p[1] & 0x3f) << 12 | (unsigned)(p[2] & 0x3f) << 6 |
	       (p[3] & 0x3f);
}

/* The two-character escape json.dump writes for c, or 0. */
static char short_escape(unsigned c)
{
	switch (c) {
	case '"': return '"';
	case '\\': return '\\';
	case '\b': return 'b';
	case '\f': return 'f';
	case '\n': return 'n';
	case '\r': return 'r';
	case '\t': return 't';
	default: return 0;
	}
}

/* s as a string literal with json.dump's ensure_ascii escapes. */
static int print_string(struct mq_buf *b, const char *s, struct mq_error *err)
{
	size_t bad;
	if (mq_utf8_check((const unsigned char *)s, strlen(s), &bad))
		return mq_fail(err, MQ_ERR_INTERNAL, "JSON string \"%s\" is not valid UTF-8 (byte %zu)", s, bad);
	mq_buf_adds(b, "\"");
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		unsigned c = utf8_next(&p);
		char e = short_escape(c);
		if (e)
			mq_buf_addf(b, "\\%c", e);
		else if (c >= 0x20 && c < 0x7f)
			mq_buf_addf(b, "%c", (char)c);
		else if (c < 0x10000)
			mq_buf_addf(b, "\\u%04x", c);
		else
			mq_buf_addf(b, "\\u%04x\\u%04x", 0xd800 + ((c - 0x10000) >> 10), 0xdc00 + ((c - 0x10000) & 0x3ff));
	}
	mq_buf_adds(b, "\"");
	return 0;
}

static void print_indent(struct mq_buf *b, int indent)
{
	mq_buf_addf(b, "\n%*s", indent, "");
}

static int print_value(struct mq_buf *b, const cJSON *v, int indent, struct mq_error *err);

/* A member of an object being printed; idx keeps the sort stable. */
struct member {
	const cJSON *item;
	size_t idx;
};

static int cmp_member(const void *a, const void *b)
{
	const struct member *x = a, *y = b;
	int c = strcmp(x->item->string, y->item->string);
	if (c)
		return c;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The members of object v sorted by key, the last of each key only; NULL when out of memory. */
static struct member *sorted_members(const cJSON *v, size_t *n_out)
{
	size_t n = 0;
	for (const cJSON *c = v->child; c; c = c->next)
		n++;
	struct member *m = malloc((n ? n : 1) * sizeof(*m));
	if (!m)
		return NULL;
	size_t k = 0;
	for (const cJSON *c = v->child; c; c = c->next) {
		MQ_ASSERT(c->string);
		m[k].item = c;
		m[k].idx = k;
		k++;
	}
	qsort(m, n, sizeof(*m), cmp_member);
	size_t w = 0;
	for (size_t i = 0; i < n; i++) {
		if (i + 1 < n && strcmp(m[i].item->string, m[i + 1].item->string) == 0)
			continue;
		m[w++] = m[i];
	}
	*n_out = w;
	return m;
}

static int print_object(struct mq_buf *b, const cJSON *v, int indent, struct mq_error *err)
{
	size_t n = 0;
	struct member *m = sorted_members(v, &n);
	if (!m)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	int rc = 0;
	mq_buf_adds(b, "{");
	for (size_t i = 0; i < n && !rc; i++) {
		print_indent(b, indent + 2);
		rc = print_string(b, m[i].item->string, err);
		mq_buf_adds(b, ": ");
		if (!rc)
			rc = print_value(b, m[i].item, indent + 2, err);
		if (i + 1 < n)
			mq_buf_adds(b, ",");
	}
	if (n)
		print_indent(b, indent);
	mq_buf_adds(b, "}");
	free(m);
	return rc;
}

static int print_array(struct mq_buf *b, const cJSON *v, int indent, struct mq_error *err)
{
	mq_buf_adds(b, "[");
	for (const cJSON *c = v->child; c; c = c->next) {
		print_indent(b, indent + 2);
		int rc = print_value(b, c, indent + 2, err);
		if (rc)
			return rc;
		if (c->next)
			mq_buf_adds(b, ",");
	}
	if (v->child)
		print_indent(b, indent);
	mq_buf_adds(b, "]");
	return 0;
}

static int print_value(struct mq_buf *b, const cJSON *v, int indent, struct mq_error *err)
{
	if (indent > 2 * JSON_MAX_DEPTH)
		return mq_fail(err, MQ_ERR_INTERNAL, "JSON nested more than %d levels deep", JSON_MAX_DEPTH);
	switch (v->type & 0xff) {
	case cJSON_False: mq_buf_adds(b, "false"); return 0;
	case cJSON_True: mq_buf_adds(b, "true"); return 0;
	case cJSON_NULL: mq_buf_adds(b, "null"); return 0;
	case cJSON_Number: print_number(b, v->valuedouble); return 0;
	case cJSON_Raw: mq_buf_adds(b, v->valuestring); return 0;
	case cJSON_String: return print_string(b, v->valuestring, err);
	case cJSON_Array: return print_array(b, v, indent, err);
	case cJSON_Object: return print_object(b, v, indent, err);
	default: return mq_fail(err, MQ_ERR_INTERNAL, "JSON value of unknown cJSON type %d", v->type);
	}
}

int mq_hf_json_print(const cJSON *v, struct mq_buf *out, struct mq_error *err)
{
	int rc = print_value(out, v, 0, err);
	if (!rc && !mq_buf_ok(out))
		rc = mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	return rc;
}
