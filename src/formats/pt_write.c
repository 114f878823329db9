/*
 * The torch archive row of the writer table (what torch.save writes, zip
 * stored, no compression): data.pkl, one record per output tensor, version
 * and mq-dist's metadata record, each 64-byte aligned, then the central
 * directory. The local headers carry each record's CRC-32, so they are
 * written last, once every tensor's CRC is known (the units send theirs).
 */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "torch.h"
#include "writer.h"

static int pt_layout(const struct mq_out_tensor *out, int n_out, uint64_t meta_reserve, struct mq_out_files *f,
		     struct mq_error *err)
{
	if (mq_out_files_alloc(f, n_out, err))
		return err->code;
	f->meta_reserve = meta_reserve;
	struct mq_torch_out *t = calloc(1, sizeof(*t));
	if (!t)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	f->state = t;
	if (mq_torch_out_plan(out, n_out, meta_reserve, t, err))
		return err->code;
	for (int o = 0; o < n_out; o++)
		f->pos[o] = t->entries[t->entry_of_out[o]].data_offset;
	f->file_size[0] = t->file_size;
	return 0;
}

/* The local headers (with data.pkl, version and the metadata record after theirs), then the directory. */
static int pt_finish(const struct mq_out_files *f, const char *meta, size_t meta_len, const uint32_t *crc,
		     mq_write_fn write, void *ctx, struct mq_error *err)
{
	struct mq_torch_out *t = f->state;
	if (meta_len != t->entries[t->meta_entry].size) /* the pipeline pads it to its reservation */
		return mq_fail(err, MQ_ERR_INTERNAL, "the metadata record does not fill its reservation");
	const void *payload[3] = { t->pickle.data, "3\n", meta };
	int fixed[3] = { 0, t->n_entries - 2, t->meta_entry };
	for (int k = 0; k < 3; k++)
		t->entries[fixed[k]].crc = (uint32_t)crc32(0L, payload[k], (uInt)t->entries[fixed[k]].size);
	for (int o = 0; o < t->n_entries - 3; o++) /* every entry but data.pkl, version and the metadata */
		t->entries[t->entry_of_out[o]].crc = crc[o];
	struct mq_buf b = MQ_BUF_INIT;
	int rc = 0;
	for (int i = 0; !rc && i < t->n_entries; i++) {
		const struct mq_zip_entry *e = &t->entries[i];
		b.len = 0;
		mq_zip_local_header(e, &b);
		for (int k = 0; k < 3; k++)
			if (fixed[k] == i)
				mq_buf_add(&b, payload[k], (size_t)e->size);
		rc = mq_buf_ok(&b) ? write(ctx, 0, e->header_offset, b.data, b.len, err)
				   : mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	if (!rc) {
		b.len = 0;
		mq_zip_directory(t->entries, t->n_entries, t->directory_offset, &b);
		rc = mq_buf_ok(&b) ? write(ctx, 0, t->directory_offset, b.data, b.len, err)
				   : mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	mq_buf_release(&b);
	return rc;
}

static void pt_release(struct mq_out_files *f)
{
	if (f->state)
		mq_torch_out_release(f->state);
	free(f->state);
	mq_out_files_release(f);
}

static const char *const pt_extensions[] = { ".pt", ".pth", ".bin", NULL };

const struct mq_writer mq_writer_torch = {
	.name = "pt",
	.extensions = pt_extensions,
	.meta = MQ_META_OBJECT,
	.tensor_crcs = 1,
	.layout = pt_layout,
	.finish = pt_finish,
	.release = pt_release,
};
