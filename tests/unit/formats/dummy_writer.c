/*
 * A writer row that exists only in the tests, to show what a new output
 * format costs: this one file, and one row in formats/writer.c (compiled in
 * for the tests by MQ_TEST_WRITER). Its files are the output tensors back to
 * back from byte 0 in layout order, then the metadata object, padded with
 * spaces to its reservation.
 */
#include <string.h>

#include "buf.h"
#include "writer.h"

static int raw_layout(const struct mq_out_tensor *out, int n_out, uint64_t meta_reserve, uint64_t max_shard,
			struct mq_out_files *f, struct mq_error *err)
{
	(void)max_shard; /* one file */
	if (mq_out_files_alloc(f, n_out, err))
		return err->code;
	uint64_t end = 0;
	for (int o = 0; o < n_out; o++) {
		f->pos[o] = out[o].begin;
		end = out[o].end > end ? out[o].end : end;
	}
	f->meta_reserve = meta_reserve;
	f->file_size[0] = end + meta_reserve;
	return 0;
}

static int raw_finish(const struct mq_out_files *f, const struct mq_out_tensor *out, const char *meta,
			size_t meta_len, const uint32_t *crc, mq_write_fn write, void *ctx, struct mq_error *err)
{
	(void)out; /* the header came whole from the pipeline */
	(void)crc;
	if (meta_len > f->meta_reserve)
		return mq_fail(err, MQ_ERR_INTERNAL, "metadata exceeds its reservation");
	struct mq_buf b = MQ_BUF_INIT;
	mq_buf_add(&b, meta, meta_len);
	while (mq_buf_ok(&b) && b.len < f->meta_reserve)
		mq_buf_add(&b, " ", 1);
	int rc = mq_buf_ok(&b) ? write(ctx, 0, f->file_size[0] - f->meta_reserve, b.data, b.len, err)
			       : mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	mq_buf_release(&b);
	return rc;
}

static const char *const raw_extensions[] = { ".raw", NULL };

const struct mq_writer mq_writer_test_raw = {
	.name = "raw",
	.extensions = raw_extensions,
	.meta = MQ_META_OBJECT,
	.tensor_crcs = 0,
	.layout = raw_layout,
	.finish = raw_finish,
	.release = mq_out_files_release,
};
