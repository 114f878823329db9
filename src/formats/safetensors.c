#include "safetensors.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "json_lex.h"

static int parse_metadata(struct mq_json_lex *p, struct mq_st_header *h)
{
	if (h->meta)
		return mq_json_fail(p, "duplicate __metadata__");
	if (mq_json_peek(p) != '{')
		return mq_json_fail(p, "__metadata__ is not an object of strings");
	p->i++;
	int cap = 0;
	h->meta = calloc(1, sizeof(*h->meta)); /* non-NULL marks "seen" */
	if (!h->meta)
		return mq_fail(p->err, MQ_ERR_INTERNAL, "out of memory");
	cap = 1;
	if (mq_json_peek(p) == '}') {
		p->i++;
		return 0;
	}
	for (;;) {
		char *k = NULL, *v = NULL;
		if (mq_json_string(p, &k) || mq_json_expect(p, ':')) {
			free(k);
			return p->err->code;
		}
		if (mq_json_peek(p) != '"') {
			mq_fail(p->err, MQ_ERR_INPUT,
				"'%s': __metadata__ value of key '%s' is not a string (safetensors allows strings only; store nested data as a JSON string)",
				p->file, k);
			free(k);
			return p->err->code;
		}
		if (mq_json_string(p, &v)) {
			free(k);
			return p->err->code;
		}
		for (int j = 0; j < h->n_meta; j++) {
			if (strcmp(h->meta[j].key, k) == 0) {
				mq_fail(p->err, MQ_ERR_INPUT, "'%s': duplicate __metadata__ key '%s'", p->file, k);
				free(k);
				free(v);
				return p->err->code;
			}
		}
		if (h->n_meta == cap) {
			cap *= 2;
			struct mq_st_kv *m = realloc(h->meta, (size_t)cap * sizeof(*m));
			if (!m) {
				free(k);
				free(v);
				return mq_fail(p->err, MQ_ERR_INTERNAL, "out of memory");
			}
			h->meta = m;
		}
		h->meta[h->n_meta].key = k;
		h->meta[h->n_meta].value = v;
		h->n_meta++;
		int c = mq_json_peek(p);
		p->i++;
		if (c == '}')
			return 0;
		if (c != ',')
			return mq_json_fail(p, "expected ',' or '}' in __metadata__");
	}
}

/* The value of a tensor's "dtype": a string naming a known dtype. */
static int parse_dtype(struct mq_json_lex *p, struct mq_st_tensor *t)
{
	char *d;
	if (mq_json_peek(p) != '"')
		return mq_fail(p->err, MQ_ERR_INPUT, "'%s': tensor '%s': dtype is not a string", p->file, t->name);
	if (mq_json_string(p, &d))
		return p->err->code;
	if (mq_dtype_parse(d, strlen(d), &t->dtype)) {
		mq_fail(p->err, MQ_ERR_INPUT,
			"'%s': tensor '%s': unknown dtype '%s' (known: BOOL U8 I8 F8_E5M2 F8_E4M3 F8_E8M0 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64 C64)",
			p->file, t->name, d);
		free(d);
		return p->err->code;
	}
	free(d);
	return 0;
}

/* The value of a tensor's "data_offsets": exactly [begin, end]. */
static int parse_offsets(struct mq_json_lex *p, struct mq_st_tensor *t)
{
	uint64_t off[2];
	int n = 0;
	if (mq_json_u64_array(p, off, 2, &n, "data_offsets"))
		return p->err->code;
	if (n != 2)
		return mq_fail(p->err, MQ_ERR_INPUT,
			"'%s': tensor '%s': data_offsets must hold exactly [begin, end]", p->file, t->name);
	t->begin = off[0];
	t->end = off[1];
	return 0;
}

/*
 * The value of key k of a tensor entry. seen[] counts the dtype, shape and
 * data_offsets keys met so far; a second one is refused, its value unread.
 */
static int parse_tensor_field(struct mq_json_lex *p, struct mq_st_tensor *t, const char *k, int seen[3])
{
	int dup = 0, rc = 0;
	if (strcmp(k, "dtype") == 0) {
		dup = seen[0]++;
		if (!dup)
			rc = parse_dtype(p, t);
	} else if (strcmp(k, "shape") == 0) {
		dup = seen[1]++;
		if (!dup && mq_json_u64_array(p, t->shape, MQ_MAX_DIMS, &t->ndim, "shape"))
			rc = p->err->code;
	} else if (strcmp(k, "data_offsets") == 0) {
		dup = seen[2]++;
		if (!dup)
			rc = parse_offsets(p, t);
	} else if (mq_json_skip_value(p, 1)) { /* unknown keys are ignored, as the reference reader does */
		rc = p->err->code;
	}
	if (rc)
		return rc;
	if (dup) {
		mq_fail(p->err, MQ_ERR_INPUT, "'%s': tensor '%s': duplicate key '%s'", p->file, t->name, k);
		return p->err->code;
	}
	return 0;
}

/* A tensor entry: an object with dtype, shape and data_offsets, once each (other keys are skipped). */
static int parse_tensor(struct mq_json_lex *p, struct mq_st_tensor *t)
{
	int seen[3] = { 0 }; /* dtype, shape, data_offsets */
	if (mq_json_peek(p) != '{')
		return mq_fail(p->err, MQ_ERR_INPUT, "'%s': tensor '%s': entry is not an object", p->file, t->name);
	p->i++;
	if (mq_json_peek(p) == '}')
		goto missing;
	for (;;) {
		char *k;
		if (mq_json_string(p, &k))
			return p->err->code;
		int rc = mq_json_expect(p, ':') ? p->err->code : parse_tensor_field(p, t, k, seen);
		free(k);
		if (rc)
			return rc;
		int c = mq_json_peek(p);
		p->i++;
		if (c == '}')
			break;
		if (c != ',')
			return mq_json_fail(p, "expected ',' or '}' in tensor entry");
	}
	if (seen[0] && seen[1] && seen[2])
		return 0;
missing:
	return mq_fail(p->err, MQ_ERR_INPUT, "'%s': tensor '%s': entry needs dtype, shape and data_offsets",
		       p->file, t->name);
}

uint64_t mq_shape_numel(const uint64_t *shape, int ndim, int *overflow)
{
	uint64_t n = 1;
	*overflow = 0;
	for (int i = 0; i < ndim; i++) {
		if (shape[i] != 0 && n > UINT64_MAX / shape[i]) {
			*overflow = 1;
			return 0;
		}
		n *= shape[i];
	}
	return n;
}

static int cmp_by_offset(const void *a, const void *b)
{
	const struct mq_st_tensor *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int cmp_name_ptr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int mq_utf8_check(const unsigned char *s, size_t n, size_t *bad)
{
	size_t i = 0;
	while (i < n) {
		unsigned c = s[i];
		size_t len;
		unsigned cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			len = 2;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4;
			cp = c & 0x07;
		} else {
			goto fail;
		}
		if (i + len > n)
			goto fail;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				goto fail;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
			goto fail;
		i += len;
	}
	return 0;
fail:
	*bad = i;
	return -1;
}

static int check_layout(const char *file, struct mq_st_header *h, struct mq_error *err)
{
	if (h->n_tensors > 1)
		qsort(h->tensors, (size_t)h->n_tensors, sizeof(*h->tensors), cmp_by_offset);
	uint64_t expect_begin = 0;
	for (int i = 0; i < h->n_tensors; i++) {
		struct mq_st_tensor *t = &h->tensors[i];
		int ovf;
		uint64_t numel = mq_shape_numel(t->shape, t->ndim, &ovf);
		uint64_t size = mq_dtype_size(t->dtype);
		if (ovf || (numel && size > UINT64_MAX / numel))
			return mq_fail(err, MQ_ERR_INPUT,
				"'%s': tensor '%s': its shape overflows (%d dimensions, more than 2^64 bytes of %s); the header is corrupt",
				file, t->name, t->ndim, mq_dtype_name(t->dtype));
		if (t->end < t->begin)
			return mq_fail(err, MQ_ERR_INPUT, "'%s': tensor '%s': data_offsets end %llu is before begin %llu",
				       file, t->name, (unsigned long long)t->end, (unsigned long long)t->begin);
		if (i == 0 && t->begin != 0)
			return mq_fail(err, MQ_ERR_INPUT,
				"'%s': tensor '%s': the first tensor's data begins at %llu, not at 0 (the file is corrupt)",
				file, t->name, (unsigned long long)t->begin);
		if (t->begin != expect_begin)
			return mq_fail(err, MQ_ERR_INPUT,
				"'%s': tensor '%s': data begins at %llu but the previous tensor ends at %llu (%s; the file is corrupt)",
				file, t->name, (unsigned long long)t->begin, (unsigned long long)expect_begin,
				t->begin > expect_begin ? "a hole" : "an overlap");
		if (t->end - t->begin != numel * size)
			return mq_fail(err, MQ_ERR_INPUT,
				"'%s': tensor '%s': data_offsets span %llu bytes but shape and dtype %s need %llu (shape mismatch)",
				file, t->name, (unsigned long long)(t->end - t->begin), mq_dtype_name(t->dtype),
				(unsigned long long)(numel * size));
		expect_begin = t->end;
	}
	if (h->file_size - h->data_start != expect_begin) {
		if (h->file_size - h->data_start < expect_begin)
			return mq_fail(err, MQ_ERR_INPUT,
				"'%s': file is truncated: the header needs %llu bytes of tensor data but only %llu follow it (re-download or re-copy the file)",
				file, (unsigned long long)expect_begin, (unsigned long long)(h->file_size - h->data_start));
		return mq_fail(err, MQ_ERR_INPUT,
			"'%s': %llu unexpected bytes after the last tensor (the reference reader refuses such files)",
			file, (unsigned long long)(h->file_size - h->data_start - expect_begin));
	}
	/* duplicate names */
	if (h->n_tensors > 1) {
		char **names = malloc((size_t)h->n_tensors * sizeof(*names));
		if (!names)
			return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
		for (int i = 0; i < h->n_tensors; i++)
			names[i] = h->tensors[i].name;
		qsort(names, (size_t)h->n_tensors, sizeof(*names), cmp_name_ptr);
		for (int i = 1; i < h->n_tensors; i++) {
			if (strcmp(names[i - 1], names[i]) == 0) {
				mq_fail(err, MQ_ERR_INPUT, "'%s': tensor '%s' appears twice in the header", file, names[i]);
				free(names);
				return err ? err->code : MQ_ERR_INPUT;
			}
		}
		free(names);
	}
	return 0;
}

int mq_st_parse(const char *file, const char *json, uint64_t header_len, uint64_t file_size,
		struct mq_st_header *out, struct mq_error *err)
{
	struct mq_error local = { 0 };
	if (!err)
		err = &local;
	memset(out, 0, sizeof(*out));
	out->header_len = header_len;
	out->data_start = 8 + header_len;
	out->file_size = file_size;
	size_t bad;
	if (mq_utf8_check((const unsigned char *)json, header_len, &bad))
		return mq_fail(err, MQ_ERR_INPUT, "'%s': header is not valid UTF-8 (at byte %zu of the JSON)", file, bad);
	struct mq_json_lex p = { json, header_len, 0, file, err, NULL, NULL };
	int cap = 0;
	if (mq_json_expect(&p, '{'))
		goto fail;
	if (mq_json_peek(&p) == '}') {
		p.i++;
		goto done;
	}
	for (;;) {
		char *name;
		if (mq_json_string(&p, &name))
			goto fail;
		if (mq_json_expect(&p, ':')) {
			free(name);
			goto fail;
		}
		if (strcmp(name, "__metadata__") == 0) {
			free(name);
			if (parse_metadata(&p, out))
				goto fail;
		} else {
			if (out->n_tensors == MQ_MAX_TENSORS) {
				mq_fail(err, MQ_ERR_INPUT,
					"'%s': the header lists more than %d tensors, the limit of mq-dist (MQ_MAX_TENSORS in src/core/bounds.h); the file is corrupt, or a model beyond that limit needs a rebuild with a larger one",
					file, MQ_MAX_TENSORS);
				free(name);
				goto fail;
			}
			if (out->n_tensors == cap) {
				cap = cap ? cap * 2 : 16;
				struct mq_st_tensor *t = realloc(out->tensors, (size_t)cap * sizeof(*t));
				if (!t) {
					free(name);
					mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
					goto fail;
				}
				out->tensors = t;
			}
			struct mq_st_tensor *t = &out->tensors[out->n_tensors++];
			memset(t, 0, sizeof(*t));
			t->name = name;
			if (parse_tensor(&p, t))
				goto fail;
		}
		int c = mq_json_peek(&p);
		p.i++;
		if (c == '}')
			break;
		if (c != ',') {
			p.i--;
			mq_json_fail(&p, "expected ',' or '}' after an entry");
			goto fail;
		}
	}
done:
	if (mq_json_peek(&p) != -1) {
		mq_json_fail(&p, "unexpected bytes after the JSON object");
		goto fail;
	}
	if (check_layout(file, out, err))
		goto fail;
	return 0;
fail:
	mq_st_header_release(out);
	return err->code ? err->code : MQ_ERR_INPUT;
}

void mq_st_header_release(struct mq_st_header *h)
{
	for (int i = 0; i < h->n_tensors; i++)
		free(h->tensors[i].name);
	free(h->tensors);
	if (h->meta) {
		for (int i = 0; i < h->n_meta; i++) {
			free(h->meta[i].key);
			free(h->meta[i].value);
		}
		free(h->meta);
	}
	memset(h, 0, sizeof(*h));
}

const char *mq_st_meta_get(const struct mq_st_header *h, const char *key)
{
	for (int i = 0; i < h->n_meta; i++)
		if (strcmp(h->meta[i].key, key) == 0)
			return h->meta[i].value;
	return NULL;
}

int mq_st_read_raw(const char *file, int fd, uint64_t file_size, char **json,
		   uint64_t *header_len, struct mq_error *err)
{
	*json = NULL;
	unsigned char pre[8];
	if (file_size < 8)
		return mq_fail(err, MQ_ERR_INPUT,
			"'%s': file is %llu bytes, too small for a safetensors header (needs at least 8)",
			file, (unsigned long long)file_size);
	if (mq_pread_full(fd, pre, 8, 0, NULL))
		return mq_fail(err, MQ_ERR_INPUT, "'%s': cannot read: %s", file, strerror(errno));
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = (n << 8) | pre[i];
	if (n > MQ_ST_MAX_HEADER)
		return mq_fail(err, MQ_ERR_INPUT,
			"'%s': header length %llu exceeds the %llu-byte limit of safetensors (not a safetensors file?)",
			file, (unsigned long long)n, (unsigned long long)MQ_ST_MAX_HEADER);
	if (n > file_size - 8)
		return mq_fail(err, MQ_ERR_INPUT,
			"'%s': header length %llu runs past the end of the %llu-byte file (truncated, or not a safetensors file)",
			file, (unsigned long long)n, (unsigned long long)file_size);
	char *buf = malloc((size_t)n + 1);
	if (!buf)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory reading the header of '%s'", file);
	if (mq_pread_full(fd, buf, (size_t)n, 8, NULL)) {
		free(buf);
		return mq_fail(err, MQ_ERR_INPUT, "'%s': cannot read the header: %s", file, strerror(errno));
	}
	buf[n] = '\0';
	*json = buf;
	*header_len = n;
	return 0;
}
