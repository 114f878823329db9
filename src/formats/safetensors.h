/*
 * safetensors: read and distrust a header; helpers to write one.
 *
 * Byte layout of a .safetensors file:
 *   [0, 8)        N, the header length, u64 little-endian (N <= 100,000,000)
 *   [8, 8+N)      UTF-8 JSON object:
 *                   "__metadata__": {string: string, ...}            (optional)
 *                   "<name>": {"dtype": "F32", "shape": [u64, ...],
 *                              "data_offsets": [begin, end]}        (per tensor)
 *                 padded at the end with spaces
 *   [8+N, EOF)    tensor data; offsets count from 8+N; little-endian, C order
 *
 * mq_st_parse() enforces every rule of the reference reader: integers only
 * (no sign, fraction or exponent), no duplicate names, offsets that tile the
 * data buffer from 0 with no hole or overlap, end - begin equal to
 * numel * element size, and a file length that matches exactly. It is a pure
 * function of the header bytes and the file size; any rank may call it.
 */
#ifndef MQ_SAFETENSORS_H
#define MQ_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "bounds.h"
#include "status.h"


struct mq_st_tensor {
	char *name;                  /* owned, UTF-8, no NUL inside */
	enum mq_dtype dtype;
	int ndim;                    /* 0..MQ_MAX_DIMS */
	uint64_t shape[MQ_MAX_DIMS];
	uint64_t begin, end;         /* byte range, relative to the data start */
};

struct mq_st_kv {
	char *key, *value;           /* owned */
};

struct mq_st_header {
	uint64_t header_len;         /* N */
	uint64_t data_start;         /* 8 + N */
	uint64_t file_size;
	int n_tensors;
	struct mq_st_tensor *tensors; /* sorted by begin offset */
	int n_meta;
	struct mq_st_kv *meta;       /* in file order */
};

/*
 * Parses the header text (the N bytes after the length prefix) of `file`
 * (used in messages only) whose total size is file_size. On failure, frees
 * what it built and returns MQ_ERR_INPUT with a message naming file and tensor.
 */
int mq_st_parse(const char *file, const char *json, uint64_t header_len, uint64_t file_size,
		struct mq_st_header *out, struct mq_error *err);
void mq_st_header_release(struct mq_st_header *h);

/*
 * Reads the 8-byte prefix and the header text of an open file. *json is
 * malloc'd (NUL-terminated), *header_len is N. Checks the size rules first.
 */
int mq_st_read_raw(const char *file, int fd, uint64_t file_size, char **json,
		uint64_t *header_len, struct mq_error *err);

/* Number of elements (product of dims); 0 and sets *overflow on overflow. */
uint64_t mq_shape_numel(const uint64_t *shape, int ndim, int *overflow);

/* 0 if s[0..n) is valid UTF-8; otherwise -1 and *bad is the offset of the first bad byte. */
int mq_utf8_check(const unsigned char *s, size_t n, size_t *bad);

/* Looks up a metadata value by key, or NULL. */
const char *mq_st_meta_get(const struct mq_st_header *h, const char *key);

#endif
