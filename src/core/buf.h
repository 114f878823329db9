/*
 * buf: a growable byte string. `data` is always NUL-terminated once anything
 * was appended; a failed allocation sets `oom` and later appends do nothing,
 * so a builder checks once at the end (mq_buf_ok).
 */
#ifndef MQ_BUF_H
#define MQ_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct mq_buf {
	char *data;  /* owned; NULL until the first append */
	size_t len;  /* bytes used, not counting the NUL */
	size_t cap;  /* bytes allocated */
	int oom;     /* set when an allocation failed */
};

#define MQ_BUF_INIT { NULL, 0, 0, 0 }

void mq_buf_release(struct mq_buf *b);
void mq_buf_add(struct mq_buf *b, const void *p, size_t n);
void mq_buf_adds(struct mq_buf *b, const char *s);
void mq_buf_vaddf(struct mq_buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void mq_buf_addf(struct mq_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Appends n bytes of s for a terminal or a log, one line: control characters
 * become \n, \r, \t or \xHH (C1 controls and invalid UTF-8 bytes too, byte by
 * byte); printable ASCII and valid UTF-8 stay as they are. File-supplied
 * names go through this before they are printed (mq_print, status.h).
 */
void mq_buf_add_escaped(struct mq_buf *b, const char *s, size_t n);
/* Appends s as a JSON string literal, quotes included. */
void mq_buf_add_json_str(struct mq_buf *b, const char *s);
/* Appends a double with %.9g, or null when it is not finite. */
void mq_buf_add_json_num(struct mq_buf *b, double v);
int mq_buf_ok(const struct mq_buf *b);
/* Hands the string to the caller (who frees it) and resets b. */
char *mq_buf_detach(struct mq_buf *b, size_t *len);

/*
 * Blobs that ranks of one job send each other: u64 fields in native byte
 * order, added with mq_buf_add_u64 and read back through a reader that never
 * runs past the end of the blob.
 */
void mq_buf_add_u64(struct mq_buf *b, uint64_t v);

struct mq_reader {
	const char *p;
	size_t left;
};

int mq_reader_u64(struct mq_reader *r, uint64_t *v);        /* 0, or -1 past the end */
int mq_reader_bytes(struct mq_reader *r, uint64_t n, const char **p); /* *p points into the blob */

#endif
