#include "write.h"

#include <zlib.h>

#include "metadata.h"
#include "unit.h"

/* Rank 0: the static activation parameters, a few bytes per layer. */
static int write_act_params(struct run *r)
{
	for (int t = 0; r->layers && t < r->plan.n_tensors; t++) {
		const struct mq_plan_tensor *pt = &r->plan.tensors[t];
		float s = (float)r->layers[t].act_scale;
		int8_t zp = (int8_t)r->layers[t].act_zero_point;
		if (pt->out_input_scale >= 0) {
			if (r->writer->tensor_crcs)
				r->out_crc[pt->out_input_scale] = (uint32_t)crc32(0L, (const Bytef *)&s, 4);
			if (unit_write_at(r, r->out_pos[pt->out_input_scale], &s, 4))
				return r->err.code;
		}
		if (pt->out_input_zero_point >= 0) {
			if (r->writer->tensor_crcs)
				r->out_crc[pt->out_input_zero_point] = (uint32_t)crc32(0L, (const Bytef *)&zp, 1);
			if (unit_write_at(r, r->out_pos[pt->out_input_zero_point], &zp, 1))
				return r->err.code;
		}
	}
	return 0;
}

/* The writer's file writes go to the partial output (one file today). */
static int write_file(void *ctx, int file, uint64_t pos, const void *p, size_t n, struct mq_error *err)
{
	struct run *r = ctx;
	(void)file;
	(void)err; /* unit_write_at fails into r->err, which is err */
	return unit_write_at(r, pos, p, n);
}

int writer_finish(struct run *r)
{
	if (write_act_params(r))
		return r->err.code;
	struct mq_buf meta = MQ_BUF_INIT;
	const char *calib = r->calib_digest[0] ? r->calib_digest : NULL;
	int rc = r->writer->meta == MQ_META_HEADER
			 ? mq_metadata_header(&r->man, &r->plan, r->opt, r->res, calib, 0, &meta, &r->err)
			 : mq_metadata_object(&r->man, &r->plan, r->opt, r->res, calib, r->header_len, &meta, &r->err);
	if (!rc)
		rc = r->writer->finish(&r->files, meta.data, meta.len, r->out_crc, write_file, r, &r->err);
	mq_buf_release(&meta);
	return rc;
}
