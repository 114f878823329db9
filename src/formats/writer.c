#include "writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef MQ_TEST_WRITER /* the tests' dummy row (tests/unit/formats/dummy_writer.c) */
extern const struct mq_writer MQ_TEST_WRITER;
#endif

static const struct mq_writer *const rows[] = {
	&mq_writer_safetensors,
	&mq_writer_torch,
	&mq_writer_hf,
#ifdef MQ_TEST_WRITER
	&MQ_TEST_WRITER,
#endif
};
#define N_ROWS ((int)(sizeof(rows) / sizeof(rows[0])))

const struct mq_writer *mq_writer_get(int i)
{
	return i >= 0 && i < N_ROWS ? rows[i] : NULL;
}

const char *mq_path_extension(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	const char *dot = strrchr(base, '.');
	return dot && dot > base ? dot : "";
}

const struct mq_writer *mq_writer_select(const char *path)
{
	const char *ext = mq_path_extension(path);
	for (int i = 0; i < N_ROWS; i++)
		for (const char *const *e = rows[i]->extensions; *e; e++)
			if (strcmp(ext, *e) == 0)
				return rows[i];
	return NULL;
}

void mq_writer_extensions(char *buf, size_t cap)
{
	size_t at = 0;
	buf[0] = '\0';
	for (int i = 0; i < N_ROWS; i++)
		for (const char *const *e = rows[i]->extensions; *e && at < cap; e++)
			at += (size_t)snprintf(buf + at, cap - at, "%s%s", at ? ", " : "",
					       **e ? *e : "a folder (a name without an extension, or ending in /)");
}

int mq_out_files_alloc(struct mq_out_files *f, int n_out, struct mq_error *err)
{
	memset(f, 0, sizeof(*f));
	f->n_files = 1;
	f->file_size = calloc(1, sizeof(*f->file_size));
	f->file_of = calloc((size_t)n_out + 1, sizeof(*f->file_of));
	f->pos = calloc((size_t)n_out + 1, sizeof(*f->pos));
	if (!f->file_size || !f->file_of || !f->pos) {
		mq_out_files_release(f);
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	return 0;
}

void mq_out_files_release(struct mq_out_files *f)
{
	free(f->file_size);
	free(f->file_of);
	free(f->pos);
	memset(f, 0, sizeof(*f));
}
