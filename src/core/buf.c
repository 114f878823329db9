#include "buf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mq_buf_release(struct mq_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
	b->oom = 0;
}

static int grow(struct mq_buf *b, size_t extra)
{
	if (b->oom)
		return -1;
	if (b->len + extra + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *p = realloc(b->data, cap);
	if (!p) {
		b->oom = 1;
		return -1;
	}
	b->data = p;
	b->cap = cap;
	return 0;
}

void mq_buf_add(struct mq_buf *b, const void *p, size_t n)
{
	if (grow(b, n))
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void mq_buf_adds(struct mq_buf *b, const char *s)
{
	mq_buf_add(b, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
	if (c < 0xc2 || c > 0xf4 || len > n)
		return 0;
	unsigned char lo = 0x80, hi = 0xbf; /* the second byte's range: no overlong forms, surrogates or > U+10FFFF */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if (c == 0xc2 && s[1] < 0xa0)
		return 0; /* C1 controls (U+0080..U+009F): escaped like C0 ones */
	return len;
}

void mq_buf_add_escaped(struct mq_buf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		size_t run = 0;
		while (i + run < n && u[i + run] >= 0x20 && u[i + run] < 0x7f)
			run++;
		mq_buf_add(b, s + i, run);
		i += run;
		if (i >= n)
			break;
		size_t len = u[i] >= 0x80 ? utf8_len(u + i, n - i) : 0;
		if (len) {
			mq_buf_add(b, s + i, len);
			i += len;
			continue;
		}
		char e[8];
		if (u[i] == '\n' || u[i] == '\r' || u[i] == '\t')
			snprintf(e, sizeof(e), "\\%c", u[i] == '\n' ? 'n' : u[i] == '\r' ? 'r' : 't');
		else
			snprintf(e, sizeof(e), "\\x%02x", u[i]);
		mq_buf_adds(b, e);
		i++;
	}
	if (grow(b, 0) == 0)
		b->data[b->len] = '\0';
}

void mq_buf_vaddf(struct mq_buf *b, const char *fmt, va_list ap)
{
	va_list aq;
	va_copy(aq, ap);
	int n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0 || grow(b, (size_t)n))
		return;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void mq_buf_addf(struct mq_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	mq_buf_vaddf(b, fmt, ap);
	va_end(ap);
}

void mq_buf_add_json_str(struct mq_buf *b, const char *s)
{
	mq_buf_add(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': mq_buf_add(b, "\\\"", 2); break;
		case '\\': mq_buf_add(b, "\\\\", 2); break;
		case '\n': mq_buf_add(b, "\\n", 2); break;
		case '\r': mq_buf_add(b, "\\r", 2); break;
		case '\t': mq_buf_add(b, "\\t", 2); break;
		default:
			if (*p < 0x20)
				mq_buf_addf(b, "\\u%04x", *p);
			else
				mq_buf_add(b, p, 1);
		}
	}
	mq_buf_add(b, "\"", 1);
}

void mq_buf_add_json_num(struct mq_buf *b, double v)
{
	if (isfinite(v))
		mq_buf_addf(b, "%.9g", v);
	else
		mq_buf_adds(b, "null");
}

int mq_buf_ok(const struct mq_buf *b)
{
	return !b->oom;
}

char *mq_buf_detach(struct mq_buf *b, size_t *len)
{
	char *p = b->data;
	if (len)
		*len = b->len;
	if (!p)
		p = calloc(1, 1);
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

void mq_buf_add_u64(struct mq_buf *b, uint64_t v)
{
	mq_buf_add(b, &v, sizeof(v));
}

int mq_reader_u64(struct mq_reader *r, uint64_t *v)
{
	if (r->left < sizeof(*v))
		return -1;
	memcpy(v, r->p, sizeof(*v));
	r->p += sizeof(*v);
	r->left -= sizeof(*v);
	return 0;
}

int mq_reader_bytes(struct mq_reader *r, uint64_t n, const char **p)
{
	if (n > r->left)
		return -1;
	*p = r->p;
	r->p += n;
	r->left -= (size_t)n;
	return 0;
}
