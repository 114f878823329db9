/*
 * The safetensors row of the writer table: one file, an 8-byte little-endian
 * header length N, N bytes of header JSON (padded with spaces to the length
 * reserved before any data was placed), then the tensors' bytes at their
 * layout offsets.
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "writer.h"

#define PREFIX 8 /* bytes of the header length */

static int st_layout(const struct mq_out_tensor *out, int n_out, uint64_t meta_reserve, uint64_t max_shard,
			struct mq_out_files *f, struct mq_error *err)
{
	(void)max_shard; /* one file */
	if (mq_out_files_alloc(f, n_out, err))
		return err->code;
	f->meta_reserve = meta_reserve;
	uint64_t end = 0;
	for (int o = 0; o < n_out; o++) {
		f->pos[o] = PREFIX + meta_reserve + out[o].begin;
		end = out[o].end > end ? out[o].end : end;
	}
	f->file_size[0] = PREFIX + meta_reserve + end;
	return 0;
}

void mq_st_entry_json(struct mq_buf *b, const struct mq_out_tensor *t, uint64_t begin, uint64_t end)
{
	mq_buf_add_json_str(b, t->name);
	mq_buf_addf(b, ":{\"dtype\":\"%s\",\"shape\":[", mq_dtype_name(t->dtype));
	for (int d = 0; d < t->ndim; d++)
		mq_buf_addf(b, d ? ",%llu" : "%llu", (unsigned long long)t->shape[d]);
	mq_buf_addf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)begin, (unsigned long long)end);
}

int mq_st_frame(struct mq_buf *b, const char *header, size_t len, uint64_t reserve, struct mq_error *err)
{
	if (len > reserve)
		return mq_fail(err, MQ_ERR_INTERNAL, "header exceeds its reservation");
	unsigned char prefix[PREFIX];
	for (int i = 0; i < PREFIX; i++)
		prefix[i] = (unsigned char)(reserve >> (8 * i));
	mq_buf_add(b, prefix, PREFIX);
	mq_buf_add(b, header, len);
	while (mq_buf_ok(b) && b->len < PREFIX + reserve)
		mq_buf_add(b, " ", 1);
	return mq_buf_ok(b) ? 0 : mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
}

/* The prefix, then the header padded with spaces to its reservation. */
static int st_finish(const struct mq_out_files *f, const struct mq_out_tensor *out, const char *meta,
		     size_t meta_len, const uint32_t *crc, mq_write_fn write, void *ctx, struct mq_error *err)
{
	(void)out; /* the header came whole from the pipeline */
	(void)crc;
	struct mq_buf b = MQ_BUF_INIT;
	int rc = mq_st_frame(&b, meta, meta_len, f->meta_reserve, err);
	if (!rc)
		rc = write(ctx, 0, 0, b.data, b.len, err);
	mq_buf_release(&b);
	return rc;
}

static const char *const st_extensions[] = { ".safetensors", NULL };

const struct mq_writer mq_writer_safetensors = {
	.name = "safetensors",
	.extensions = st_extensions,
	.meta = MQ_META_HEADER,
	.tensor_crcs = 0,
	.layout = st_layout,
	.finish = st_finish,
	.release = mq_out_files_release,
};
