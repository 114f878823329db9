#include "json_lex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mq_json_fail(struct mq_json_lex *p, const char *what)
{
	return mq_fail(p->err, MQ_ERR_INPUT, "'%s': malformed %s at byte %zu of the JSON: %s (%s)", p->file,
		p->kind ? p->kind : "safetensors header", p->i, what,
		p->advice ? p->advice : "the file is not a valid safetensors file; re-export or re-download it");
}

/* Steps over JSON white space. */
static void skip_ws(struct mq_json_lex *p)
{
	while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' ||
			       p->s[p->i] == '\n' || p->s[p->i] == '\r'))
		p->i++;
}

int mq_json_peek(struct mq_json_lex *p)
{
	skip_ws(p);
	return p->i < p->n ? (unsigned char)p->s[p->i] : -1;
}

int mq_json_expect(struct mq_json_lex *p, char c)
{
	if (mq_json_peek(p) != (unsigned char)c) {
		char what[32];
		snprintf(what, sizeof(what), "expected '%c'", c);
		return mq_json_fail(p, what);
	}
	p->i++;
	return 0;
}

/* The value of a hex digit, or -1. */
static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The four hex digits of a \uXXXX escape. */
static int read_hex4(struct mq_json_lex *p, unsigned *out)
{
	if (p->i + 4 > p->n)
		return mq_json_fail(p, "truncated \\u escape");
	unsigned v = 0;
	for (int k = 0; k < 4; k++) {
		int h = hexval((unsigned char)p->s[p->i++]);
		if (h < 0)
			return mq_json_fail(p, "bad \\u escape");
		v = v * 16 + (unsigned)h;
	}
	*out = v;
	return 0;
}

/* Appends code point cp to o[*k...] as UTF-8. */
static void put_utf8(char *o, size_t *k, unsigned cp)
{
	if (cp < 0x80) {
		o[(*k)++] = (char)cp;
	} else if (cp < 0x800) {
		o[(*k)++] = (char)(0xc0 | (cp >> 6));
		o[(*k)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		o[(*k)++] = (char)(0xe0 | (cp >> 12));
		o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[(*k)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		o[(*k)++] = (char)(0xf0 | (cp >> 18));
		o[(*k)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[(*k)++] = (char)(0x80 | (cp & 0x3f));
	}
}

/* Parses a string literal into a malloc'd, NUL-free UTF-8 string. */
int mq_json_string(struct mq_json_lex *p, char **out)
{
	*out = NULL;
	if (mq_json_expect(p, '"'))
		return p->err->code;
	size_t start = p->i;
	/* The decoded string is never longer than the literal. */
	size_t end = start;
	while (end < p->n && p->s[end] != '"') {
		if (p->s[end] == '\\')
			end++;
		end++;
	}
	if (end >= p->n)
		return mq_json_fail(p, "unterminated string");
	char *o = malloc(end - start + 1);
	if (!o)
		return mq_fail(p->err, MQ_ERR_INTERNAL, "out of memory reading '%s'", p->file);
	size_t k = 0;
	while (p->s[p->i] != '"') {
		unsigned char c = (unsigned char)p->s[p->i++];
		if (c < 0x20) {
			free(o);
			return mq_json_fail(p, "control character in string");
		}
		if (c != '\\') {
			o[k++] = (char)c;
			continue;
		}
		char e = p->s[p->i++];
		unsigned cp;
		switch (e) {
		case '"': o[k++] = '"'; break;
		case '\\': o[k++] = '\\'; break;
		case '/': o[k++] = '/'; break;
		case 'b': o[k++] = '\b'; break;
		case 'f': o[k++] = '\f'; break;
		case 'n': o[k++] = '\n'; break;
		case 'r': o[k++] = '\r'; break;
		case 't': o[k++] = '\t'; break;
		case 'u':
			if (read_hex4(p, &cp))
				goto bad;
			if (cp >= 0xd800 && cp < 0xdc00) {
				unsigned lo;
				if (p->i + 2 > p->n || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u') {
					mq_json_fail(p, "unpaired surrogate in \\u escape");
					goto bad;
				}
				p->i += 2;
				if (read_hex4(p, &lo))
					goto bad;
				if (lo < 0xdc00 || lo >= 0xe000) {
					mq_json_fail(p, "unpaired surrogate in \\u escape");
					goto bad;
				}
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			} else if (cp >= 0xdc00 && cp < 0xe000) {
				mq_json_fail(p, "unpaired surrogate in \\u escape");
				goto bad;
			}
			if (cp == 0) {
				mq_json_fail(p, "NUL character (\\u0000) in string");
				goto bad;
			}
			put_utf8(o, &k, cp);
			break;
		default:
			mq_json_fail(p, "bad escape in string");
			goto bad;
		}
	}
	p->i++; /* closing quote */
	o[k] = '\0';
	*out = o;
	return 0;
bad:
	free(o);
	return p->err->code;
}

/* A non-negative integer without sign, fraction, exponent or leading zero. */
int mq_json_u64(struct mq_json_lex *p, uint64_t *out)
{
	int c = mq_json_peek(p);
	if (c < '0' || c > '9')
		return mq_json_fail(p, c == '-' ? "negative number where a size or offset belongs"
					  : "expected a non-negative integer");
	uint64_t v = 0;
	size_t start = p->i;
	while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
		unsigned d = (unsigned)(p->s[p->i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return mq_json_fail(p, "integer too large");
		v = v * 10 + d;
		p->i++;
	}
	if (p->s[start] == '0' && p->i - start > 1)
		return mq_json_fail(p, "integer with a leading zero");
	if (p->i < p->n && (p->s[p->i] == '.' || p->s[p->i] == 'e' || p->s[p->i] == 'E'))
		return mq_json_fail(p, "fraction or exponent where an integer belongs");
	*out = v;
	return 0;
}

/* Steps over an object or array (p->i on its opening bracket), close being its closing one. */
static int skip_container(struct mq_json_lex *p, char close, int depth)
{
	p->i++;
	if (mq_json_peek(p) == (unsigned char)close) {
		p->i++;
		return 0;
	}
	for (;;) {
		if (close == '}') {
			char *k;
			if (mq_json_string(p, &k))
				return p->err->code;
			free(k);
			if (mq_json_expect(p, ':'))
				return p->err->code;
		}
		if (mq_json_skip_value(p, depth + 1))
			return p->err->code;
		int c = mq_json_peek(p);
		p->i++;
		if (c == (unsigned char)close)
			return 0;
		if (c != ',')
			return mq_json_fail(p, "expected ',' or end of container");
	}
}

int mq_json_skip_value(struct mq_json_lex *p, int depth)
{
	if (depth > 64)
		return mq_json_fail(p, "nesting too deep");
	int c = mq_json_peek(p);
	if (c == '"') {
		char *s;
		if (mq_json_string(p, &s))
			return p->err->code;
		free(s);
		return 0;
	}
	if (c == '{')
		return skip_container(p, '}', depth);
	if (c == '[')
		return skip_container(p, ']', depth);
	static const char *lits[] = { "true", "false", "null" };
	for (int k = 0; k < 3; k++) {
		size_t l = strlen(lits[k]);
		if (p->i + l <= p->n && memcmp(p->s + p->i, lits[k], l) == 0) {
			p->i += l;
			return 0;
		}
	}
	if (c == '-' || (c >= '0' && c <= '9')) {
		p->i++;
		while (p->i < p->n && strchr("0123456789.eE+-", p->s[p->i]))
			p->i++;
		return 0;
	}
	return mq_json_fail(p, "unexpected character");
}

/* [u64, u64, ...] into arr (at most max entries). */
int mq_json_u64_array(struct mq_json_lex *p, uint64_t *arr, int max, int *count, const char *what)
{
	*count = 0;
	if (mq_json_expect(p, '['))
		return p->err->code;
	if (mq_json_peek(p) == ']') {
		p->i++;
		return 0;
	}
	for (;;) {
		uint64_t v = 0;
		if (mq_json_u64(p, &v))
			return p->err->code;
		if (*count >= max) {
			char m[96];
			snprintf(m, sizeof(m), "%s has more than %d entries", what, max);
			return mq_json_fail(p, m);
		}
		arr[(*count)++] = v;
		int c = mq_json_peek(p);
		p->i++;
		if (c == ']')
			return 0;
		if (c != ',')
			return mq_json_fail(p, "expected ',' or ']'");
	}
}
