#include "write.h"

#include "crc.h"
#include "metadata.h"
#include "unit.h"

/* Rank 0: a packed weight's shape (weight_shape), its dimensions as little-endian I64 values. */
static int write_shape(struct run *r, int t, int o)
{
	const struct mq_tensor *mt = &r->man.tensors[t];
	unsigned char v[8 * MQ_MAX_DIMS];
	for (int d = 0; d < mt->ndim; d++)
		for (int k = 0; k < 8; k++)
			v[8 * d + k] = (unsigned char)(mt->shape[d] >> (8 * k));
	size_t n = 8 * (size_t)mt->ndim;
	if (r->writer->tensor_crcs)
		r->out_crc[o] = mq_crc32(0, v, n);
	return unit_write_at(r, r->files.file_of[o], r->out_pos[o], v, n);
}

/* Rank 0: one layer's static activation parameters. */
static int write_act_params(struct run *r, int t)
{
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	float s = (float)r->layers[t].act_scale;
	int8_t zp = (int8_t)r->layers[t].act_zero_point;
	if (pt->out_input_scale >= 0) {
		if (r->writer->tensor_crcs)
			r->out_crc[pt->out_input_scale] = mq_crc32(0, &s, 4);
		if (unit_write_at(r, r->files.file_of[pt->out_input_scale], r->out_pos[pt->out_input_scale], &s, 4))
			return r->err.code;
	}
	if (pt->out_input_zero_point >= 0) {
		if (r->writer->tensor_crcs)
			r->out_crc[pt->out_input_zero_point] = mq_crc32(0, &zp, 1);
		if (unit_write_at(r, r->files.file_of[pt->out_input_zero_point], r->out_pos[pt->out_input_zero_point], &zp, 1))
			return r->err.code;
	}
	return 0;
}

/* Rank 0: the small tensors no unit writes: activation parameters and packed weights' shapes. */
static int write_small_params(struct run *r)
{
	for (int t = 0; t < r->plan.n_tensors; t++) {
		const struct mq_plan_tensor *pt = &r->plan.tensors[t];
		if ((r->layers && write_act_params(r, t)) || (pt->out_shape >= 0 && write_shape(r, t, pt->out_shape)))
			return r->err.code;
	}
	return 0;
}

/* The writer's file writes go to the partial output's files. */
static int write_file(void *ctx, int file, uint64_t pos, const void *p, size_t n, struct mq_error *err)
{
	struct run *r = ctx;
	(void)err; /* unit_write_at fails into r->err, which is err */
	return unit_write_at(r, file, pos, p, n);
}

int writer_finish(struct run *r)
{
	if (write_small_params(r))
		return r->err.code;
	struct mq_buf meta = MQ_BUF_INIT;
	const char *calib = r->calib_digest[0] ? r->calib_digest : NULL;
	int rc = r->writer->meta == MQ_META_HEADER
			 ? mq_metadata_header(&r->man, &r->plan, r->opt, r->res, calib, 0, &meta, &r->err)
			 : mq_metadata_object(&r->man, &r->plan, r->opt, r->res, calib, r->writer->folder ? 0 : r->header_len, &meta,
					      &r->err);
	if (!rc)
		rc = r->writer->finish(&r->files, r->plan.out, meta.data, meta.len, r->out_crc, write_file, r, &r->err);
	mq_buf_release(&meta);
	return rc;
}
