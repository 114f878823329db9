/*
 * The whole-run tests' helpers (test_run.c, test_resume.c): a folder of
 * their own, a small F32 safetensors model written byte by byte, the options
 * of a plain int8 run, files read back, and rank 0's messages captured.
 */
#ifndef MQ_RUN_UTIL_H
#define MQ_RUN_UTIL_H

#include "test_util.h"

#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "safetensors.h"

/* A 2-D (or 1-D: cols 0) F32 tensor of the test model, row-major. */
struct st_tensor {
	const char *name;
	uint64_t rows, cols;
	float *data; /* rows * (cols ? cols : 1) values */
};

static inline uint64_t st_numel(const struct st_tensor *t)
{
	return t->rows * (t->cols ? t->cols : 1);
}

/* Values from a fixed sequence (the same on every run), in [-r, r) with r from 0.25 to 1.75 by row. */
static inline void st_fill(struct st_tensor *t, uint32_t seed)
{
	uint32_t s = seed * 2654435761u + 12345u;
	uint64_t cols = t->cols ? t->cols : t->rows;
	t->data = malloc(st_numel(t) * sizeof(float) + 1);
	assert_non_null(t->data);
	for (uint64_t i = 0; i < st_numel(t); i++) {
		s = s * 1664525u + 1013904223u;
		float row_range = 0.25f * (float)(1 + (i / cols) % 7);
		t->data[i] = row_range * ((float)(s >> 8) / 8388608.0f - 1.0f);
	}
}

/*
 * path: the 8-byte little-endian header length, the JSON header padded with
 * spaces to a multiple of 8, then the data (this host's floats: little-endian).
 */
static inline void st_write(const char *path, const struct st_tensor *t, int n)
{
	char json[4096];
	size_t k = 0;
	uint64_t off = 0;
	k += (size_t)snprintf(json + k, sizeof(json) - k, "{");
	for (int i = 0; i < n; i++) {
		uint64_t bytes = st_numel(&t[i]) * 4;
		if (t[i].cols)
			k += (size_t)snprintf(json + k, sizeof(json) - k, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%llu,%llu],",
					      i ? "," : "", t[i].name, (unsigned long long)t[i].rows,
					      (unsigned long long)t[i].cols);
		else
			k += (size_t)snprintf(json + k, sizeof(json) - k, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%llu],",
					      i ? "," : "", t[i].name, (unsigned long long)t[i].rows);
		k += (size_t)snprintf(json + k, sizeof(json) - k, "\"data_offsets\":[%llu,%llu]}",
				      (unsigned long long)off, (unsigned long long)(off + bytes));
		off += bytes;
		assert_true(k < sizeof(json) - 256); /* room for the next entry */
	}
	k += (size_t)snprintf(json + k, sizeof(json) - k, "}");
	while (k % 8)
		json[k++] = ' ';
	assert_true(k < sizeof(json));
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	unsigned char len[8];
	for (int i = 0; i < 8; i++)
		len[i] = (unsigned char)((uint64_t)k >> (8 * i));
	assert_int_equal(fwrite(len, 1, 8, f), 8);
	assert_int_equal(fwrite(json, 1, k, f), k);
	for (int i = 0; i < n; i++)
		assert_int_equal(fwrite(t[i].data, 4, (size_t)st_numel(&t[i]), f), st_numel(&t[i]));
	assert_int_equal(fclose(f), 0);
}

/*
 * The test model, in name order: two weights and a bias of layer 0 (the
 * first unit is layers.0.attn.weight), and two more weights, one with an
 * all-zero row and one with an outlier. Each tensor is one work unit.
 */
#define MODEL_TENSORS 4

static inline void model_init(struct st_tensor *t)
{
	t[0] = (struct st_tensor){ "layers.0.attn.weight", 64, 96, NULL };
	t[1] = (struct st_tensor){ "layers.0.norm.bias", 64, 0, NULL };
	t[2] = (struct st_tensor){ "layers.1.mlp.weight", 48, 64, NULL };
	t[3] = (struct st_tensor){ "layers.2.proj.weight", 32, 40, NULL };
	for (int i = 0; i < MODEL_TENSORS; i++)
		st_fill(&t[i], (uint32_t)i + 1);
	memset(t[3].data + 5 * 40, 0, 40 * sizeof(float)); /* row 5 */
	t[2].data[7 * 64 + 3] = 3.0f;                      /* row 7 */
}

static inline void model_release(struct st_tensor *t)
{
	for (int i = 0; i < MODEL_TENSORS; i++)
		free(t[i].data);
}

/* What mq_options_parse gives for "mq-dist INPUT -o OUTPUT" (cli/ is a layer above this test). */
static inline void run_options(struct mq_options *o, const char *input, const char *output)
{
	memset(o, 0, sizeof(*o));
	o->command = MQ_CMD_RUN;
	o->scheme = MQ_SCHEME_INT8;
	o->memory_budget = 256ull << 20;
	mq_observer_parse("percentile", &o->observer);
	o->input = input;
	o->output = strdup(output);
	assert_non_null(o->output);
}

/* The whole file (malloc'd), NULL if it cannot be read. */
static inline unsigned char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	struct stat st;
	assert_int_equal(fstat(fileno(f), &st), 0);
	unsigned char *b = malloc((size_t)st.st_size + 1);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)st.st_size, f), (size_t)st.st_size);
	fclose(f);
	*len = (size_t)st.st_size;
	return b;
}

static inline int file_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* Entries of a folder, "." and ".." aside. */
static inline int dir_count(const char *dir)
{
	DIR *d = opendir(dir);
	assert_non_null(d);
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

/* A new folder in the current one, for one test's files (path: at least 64 bytes). */
static inline void dir_make(char *path)
{
	strcpy(path, "mq-test-run-XXXXXX");
	assert_non_null(mkdtemp(path));
}

/* Removes the folder and every file in it (hidden ones too: partial outputs, journals). */
static inline void dir_remove(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	char p[512];
	for (struct dirent *e; (e = readdir(d));) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

/* Rank 0's messages (stdout) from capture_begin to capture_end, which returns them (malloc'd). */
struct capture {
	int saved;
	FILE *f;
};

static inline void capture_begin(struct capture *c)
{
	fflush(stdout);
	c->f = tmpfile();
	assert_non_null(c->f);
	c->saved = dup(STDOUT_FILENO);
	assert_true(c->saved >= 0);
	assert_true(dup2(fileno(c->f), STDOUT_FILENO) >= 0);
}

static inline char *capture_end(struct capture *c)
{
	fflush(stdout);
	assert_true(dup2(c->saved, STDOUT_FILENO) >= 0);
	close(c->saved);
	long n = ftell(c->f);
	assert_true(n >= 0);
	char *text = malloc((size_t)n + 1);
	assert_non_null(text);
	rewind(c->f);
	assert_int_equal(fread(text, 1, (size_t)n, c->f), (size_t)n);
	text[n] = '\0';
	fclose(c->f);
	return text;
}

/* The header of a safetensors file's bytes, parsed by the project's reader; 0 on success. */
static inline int st_parse_bytes(const unsigned char *b, size_t len, struct mq_st_header *h)
{
	struct mq_error e = { 0 };
	uint64_t n = 0;
	if (len < 8)
		return -1;
	for (int i = 7; i >= 0; i--)
		n = (n << 8) | b[i];
	if (n > len - 8)
		return -1;
	char *json = malloc((size_t)n + 1);
	assert_non_null(json);
	memcpy(json, b + 8, (size_t)n);
	json[n] = '\0';
	int rc = mq_st_parse("output", json, n, len, h, &e);
	if (rc)
		print_error("%s\n", e.msg);
	free(json);
	return rc ? -1 : 0;
}

/* The header of a safetensors file, parsed by the project's reader; 0 on success. */
static inline int st_read_header(const char *path, struct mq_st_header *h)
{
	size_t len;
	unsigned char *b = read_all(path, &len);
	int rc = b ? st_parse_bytes(b, len, h) : -1;
	free(b);
	return rc;
}

static inline const struct mq_st_tensor *st_find(const struct mq_st_header *h, const char *name)
{
	for (int i = 0; i < h->n_tensors; i++)
		if (strcmp(h->tensors[i].name, name) == 0)
			return &h->tensors[i];
	return NULL;
}

#endif
