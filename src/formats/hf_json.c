/*
 * JSON text as Python's json module writes it (hf.h): the printer over a
 * cJSON tree, and Python's repr() of a double.
 */
#include "hf.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_lex.h"
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

/* ---- config.json ------------------------------------------------------------ */

#define CONFIG_NAME "config.json"
#define CONFIG_ADVICE "a model's config.json is one JSON object, as transformers writes it; restore it from the model's source"

static int parse_value(struct mq_json_lex *p, int depth, cJSON **out);

/* A cJSON_Raw item of text t[0..n), or NULL when out of memory. */
static cJSON *raw_item(const char *t, size_t n)
{
	char *s = malloc(n + 1);
	if (!s)
		return NULL;
	memcpy(s, t, n);
	s[n] = '\0';
	cJSON *r = cJSON_CreateRaw(s);
	free(s);
	return r;
}

/* Steps over the digits at p->i; how many there were. */
static size_t skip_digits(struct mq_json_lex *p)
{
	size_t start = p->i;
	while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
		p->i++;
	return p->i - start;
}

/*
 * A number (JSON's grammar, as Python's json reads it) into the text
 * json.dump writes for it: an integer as written ("-0" is 0), any number
 * with a fraction or an exponent as repr() of the double it reads as.
 */
static int parse_number(struct mq_json_lex *p, cJSON **out)
{
	size_t start = p->i;
	int is_float = 0;
	if (p->s[p->i] == '-')
		p->i++;
	if (p->i < p->n && p->s[p->i] == '0')
		p->i++;
	else if (!skip_digits(p))
		return mq_json_fail(p, "a number without digits");
	if (p->i < p->n && p->s[p->i] == '.') {
		p->i++;
		is_float = 1;
		if (!skip_digits(p))
			return mq_json_fail(p, "no digit after the decimal point");
	}
	if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
		p->i++;
		is_float = 1;
		if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
			p->i++;
		if (!skip_digits(p))
			return mq_json_fail(p, "no digit in the exponent");
	}
	size_t n = p->i - start;
	if (!is_float) {
		*out = n == 2 && memcmp(p->s + start, "-0", 2) == 0 ? raw_item("0", 1) : raw_item(p->s + start, n);
		return 0;
	}
	cJSON *lexeme = raw_item(p->s + start, n);
	struct mq_buf b = MQ_BUF_INIT;
	if (lexeme)
		py_float_repr(&b, strtod(lexeme->valuestring, NULL));
	*out = mq_buf_ok(&b) && b.data ? raw_item(b.data, b.len) : NULL;
	mq_buf_release(&b);
	cJSON_Delete(lexeme);
	return 0;
}

/* true, false, null, and the NaN, Infinity and -Infinity that Python's json reads and writes. */
static int parse_literal(struct mq_json_lex *p, cJSON **out)
{
	static const char *const words[] = { "true", "false", "null", "NaN", "Infinity", "-Infinity" };
	for (int k = 0; k < 6; k++) {
		size_t l = strlen(words[k]);
		if (p->n - p->i < l || memcmp(p->s + p->i, words[k], l) != 0)
			continue;
		p->i += l;
		*out = k == 0 ? cJSON_CreateTrue() : k == 1 ? cJSON_CreateFalse() : k == 2 ? cJSON_CreateNull()
		       : raw_item(words[k], l);
		return 0;
	}
	int c = mq_json_peek(p);
	if (c == '-' || (c >= '0' && c <= '9'))
		return parse_number(p, out);
	return mq_json_fail(p, c < 0 ? "the text ends where a value belongs" : "unexpected character");
}

/* After a member or an item: ',' (1, more follow) or the closing bracket (0). */
static int next_or_close(struct mq_json_lex *p, char close, int *more)
{
	int c = mq_json_peek(p);
	if (c == ',' || c == (unsigned char)close) {
		p->i++;
		*more = c == ',';
		return 0;
	}
	return mq_json_fail(p, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
}

/* The members of the object at p->i (on its '{') into o. */
static int parse_members(struct mq_json_lex *p, int depth, cJSON *o)
{
	p->i++;
	if (mq_json_peek(p) == '}') {
		p->i++;
		return 0;
	}
	for (int more = 1; more;) {
		char *key = NULL;
		cJSON *v = NULL;
		int rc = mq_json_string(p, &key);
		if (!rc)
			rc = mq_json_expect(p, ':');
		if (!rc)
			rc = parse_value(p, depth + 1, &v);
		if (!rc && !cJSON_AddItemToObject(o, key, v)) {
			cJSON_Delete(v);
			rc = mq_fail(p->err, MQ_ERR_INTERNAL, "out of memory reading '%s'", p->file);
		}
		free(key);
		if (!rc)
			rc = next_or_close(p, '}', &more);
		if (rc)
			return rc;
	}
	return 0;
}

/* The items of the array at p->i (on its '[') into a. */
static int parse_items(struct mq_json_lex *p, int depth, cJSON *a)
{
	p->i++;
	if (mq_json_peek(p) == ']') {
		p->i++;
		return 0;
	}
	for (int more = 1; more;) {
		cJSON *v = NULL;
		int rc = parse_value(p, depth + 1, &v);
		if (!rc && !cJSON_AddItemToArray(a, v)) {
			cJSON_Delete(v);
			rc = mq_fail(p->err, MQ_ERR_INTERNAL, "out of memory reading '%s'", p->file);
		}
		if (!rc)
			rc = next_or_close(p, ']', &more);
		if (rc)
			return rc;
	}
	return 0;
}

static int parse_value(struct mq_json_lex *p, int depth, cJSON **out)
{
	*out = NULL;
	if (depth > JSON_MAX_DEPTH)
		return mq_json_fail(p, "nested more than 64 levels deep");
	int c = mq_json_peek(p), rc;
	if (c == '{' || c == '[') {
		*out = c == '{' ? cJSON_CreateObject() : cJSON_CreateArray();
		rc = !*out ? 0 : c == '{' ? parse_members(p, depth, *out) : parse_items(p, depth, *out);
	} else if (c == '"') {
		char *s = NULL;
		rc = mq_json_string(p, &s);
		if (!rc)
			*out = cJSON_CreateString(s);
		free(s);
	} else {
		rc = parse_literal(p, out);
	}
	if (!rc && !*out)
		rc = mq_fail(p->err, MQ_ERR_INTERNAL, "out of memory reading '%s'", p->file);
	if (rc) {
		cJSON_Delete(*out);
		*out = NULL;
	}
	return rc;
}

/* config.json's text into a tree whose numbers are cJSON_Raw items of json.dump's text for them. */
static int parse_config(const char *json, size_t len, cJSON **doc, struct mq_error *err)
{
	size_t bad;
	if (len >= 3 && memcmp(json, "\xef\xbb\xbf", 3) == 0)
		return mq_fail(err, MQ_ERR_INPUT,
			"'%s' starts with a byte order mark, which Python's json (and so transformers) refuses; save it as UTF-8 without one",
			CONFIG_NAME);
	if (mq_utf8_check((const unsigned char *)json, len, &bad))
		return mq_fail(err, MQ_ERR_INPUT, "'%s' is not UTF-8 text (byte %zu); %s", CONFIG_NAME, bad, CONFIG_ADVICE);
	struct mq_json_lex p = { json, len, 0, CONFIG_NAME, err, "model config", CONFIG_ADVICE };
	int rc = parse_value(&p, 0, doc);
	if (!rc && mq_json_peek(&p) >= 0)
		rc = mq_json_fail(&p, "more text after the JSON value");
	if (rc) {
		cJSON_Delete(*doc);
		*doc = NULL;
	}
	return rc;
}

/* "an array", "a string", ... for messages. */
static const char *kind_name(const cJSON *v)
{
	switch (v->type & 0xff) {
	case cJSON_False:
	case cJSON_True: return "a boolean";
	case cJSON_NULL: return "null";
	case cJSON_Number:
	case cJSON_Raw: return "a number";
	case cJSON_String: return "a string";
	case cJSON_Array: return "an array";
	default: return "an object";
	}
}

/* The last member named key (the one json.load keeps), or NULL. */
static const cJSON *last_member(const cJSON *o, const char *key)
{
	const cJSON *found = NULL;
	for (const cJSON *c = o->child; c; c = c->next)
		if (strcmp(c->string, key) == 0)
			found = c;
	return found;
}

/* config.json must be an object, and not the config of a model quantized already. */
static int check_config(const cJSON *doc, struct mq_error *err)
{
	if (!cJSON_IsObject(doc))
		return mq_fail(err, MQ_ERR_INPUT, "'%s' holds %s, not a JSON object; %s", CONFIG_NAME, kind_name(doc),
			       CONFIG_ADVICE);
	const cJSON *qc = last_member(doc, "quantization_config");
	if (!qc || cJSON_IsNull(qc))
		return 0;
	if (!cJSON_IsObject(qc))
		return mq_fail(err, MQ_ERR_INPUT,
			"'%s': \"quantization_config\" is %s, not an object; remove it, or restore config.json from the model's source",
			CONFIG_NAME, kind_name(qc));
	const cJSON *method = last_member(qc, "quant_method");
	if ((!method || cJSON_IsNull(method)) && !last_member(qc, "config_groups"))
		return 0;
	char what[96] = "it lists config_groups";
	if (cJSON_IsString(method))
		snprintf(what, sizeof(what), "quant_method \"%.64s\"", method->valuestring);
	return mq_fail(err, MQ_ERR_INPUT,
		"'%s' has a quantization_config (%s): the model is quantized already; quantize the original, unquantized model (whose config.json has none)",
		CONFIG_NAME, what);
}

/* doc's quantization_config members replaced by a copy of qc. */
static int put_quant(cJSON *doc, const cJSON *qc, struct mq_error *err)
{
	while (cJSON_GetObjectItemCaseSensitive(doc, "quantization_config"))
		cJSON_DeleteItemFromObjectCaseSensitive(doc, "quantization_config");
	cJSON *copy = cJSON_Duplicate(qc, 1);
	if (!copy || !cJSON_AddItemToObject(doc, "quantization_config", copy)) {
		cJSON_Delete(copy);
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	return 0;
}

int mq_hf_config_rewrite(const char *json, size_t len, const cJSON *qc, struct mq_buf *out, struct mq_error *err)
{
	struct mq_error local = { 0 };
	if (!err)
		err = &local;
	if (!cJSON_IsObject(qc))
		return mq_fail(err, MQ_ERR_INTERNAL, "the quantization_config to write is not a JSON object");
	cJSON *doc = NULL;
	int rc = parse_config(json, len, &doc, err);
	if (!rc)
		rc = check_config(doc, err);
	if (!rc)
		rc = put_quant(doc, qc, err);
	if (!rc)
		rc = mq_hf_json_print(doc, out, err);
	cJSON_Delete(doc);
	return rc;
}
