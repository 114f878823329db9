/*
 * json_lex: a strict JSON reader for exactly the safetensors header schema,
 * used by safetensors.c (and its strings and punctuation by the config.json
 * reader of hf_json.c). A cursor over the header text reads one value at a
 * time: strings (escapes decoded to UTF-8, no NUL), non-negative integers
 * without sign, fraction, exponent or leading zero, arrays of them, and any
 * other value skipped whole. It builds no tree; the caller walks the objects
 * key by key.
 *
 * Every failure records "malformed safetensors header at byte N" of `file`
 * (or of the `kind` of text the cursor names) in err and returns its code;
 * the text is assumed to be valid UTF-8 (mq_utf8_check() first). Pure: any
 * rank may call it.
 */
#ifndef MQ_JSON_LEX_H
#define MQ_JSON_LEX_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

struct mq_json_lex {
	const char *s;               /* the header text (not owned) */
	size_t n, i;                 /* its length; the cursor, a byte offset */
	const char *file;            /* for messages */
	struct mq_error *err;        /* not NULL */
	const char *kind;            /* what the text is, for messages; NULL: "safetensors header" */
	const char *advice;          /* what to do about a malformed one; NULL: re-export or re-download */
};

/* Records a malformed-header error at the cursor and returns its code. */
int mq_json_fail(struct mq_json_lex *p, const char *what);

/* The next byte after white space (the cursor is left on it), or -1 at the end. */
int mq_json_peek(struct mq_json_lex *p);

/* Steps over the byte c after white space, or fails with "expected 'c'". */
int mq_json_expect(struct mq_json_lex *p, char c);

/* Parses a string literal into a malloc'd, NUL-free UTF-8 string (*out is NULL on failure). */
int mq_json_string(struct mq_json_lex *p, char **out);

/* A non-negative integer without sign, fraction, exponent or leading zero. */
int mq_json_u64(struct mq_json_lex *p, uint64_t *out);

/* [u64, u64, ...] into arr (at most max entries, `what` names the array in messages). */
int mq_json_u64_array(struct mq_json_lex *p, uint64_t *arr, int max, int *count, const char *what);

/* Steps over one value of any kind, nested at most 64 levels below depth. */
int mq_json_skip_value(struct mq_json_lex *p, int depth);

#endif
