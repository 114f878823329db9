#include "write.h"

#include <zlib.h>

#include "metadata.h"
#include "unit.h"

/* Rank 0: the static activation parameters, a few bytes per layer. */
static int write_act_params(struct run *r)
{
	for (int t = 0; r->act && t < r->plan.n_tensors; t++) {
		const struct mq_plan_tensor *pt = &r->plan.tensors[t];
		float s = (float)r->act[3 * t + 1];
		int8_t zp = (int8_t)r->act[3 * t + 2];
		if (pt->out_input_scale >= 0) {
			if (r->pt)
				r->out_crc[pt->out_input_scale] = (uint32_t)crc32(0L, (const Bytef *)&s, 4);
			if (unit_write_at(r, r->out_pos[pt->out_input_scale], &s, 4))
				return r->err.code;
		}
		if (pt->out_input_zero_point >= 0) {
			if (r->pt)
				r->out_crc[pt->out_input_zero_point] = (uint32_t)crc32(0L, (const Bytef *)&zp, 1);
			if (unit_write_at(r, r->out_pos[pt->out_input_zero_point], &zp, 1))
				return r->err.code;
		}
	}
	return 0;
}

/* Rank 0: the safetensors header, padded with spaces to its reserved length. */
static int write_st_header(struct run *r)
{
	struct mq_buf b = MQ_BUF_INIT;
	unsigned char prefix[8];
	for (int i = 0; i < 8; i++)
		prefix[i] = (unsigned char)(r->header_len >> (8 * i));
	mq_buf_add(&b, prefix, 8);
	int rc = mq_metadata_header(&r->man, &r->plan, r->opt, r->res, r->calib_digest[0] ? r->calib_digest : NULL,
				    0, &b, &r->err);
	if (!rc && b.len - 8 > r->header_len)
		rc = mq_fail(&r->err, MQ_ERR_INTERNAL, "header exceeds its reservation");
	while (!rc && b.len - 8 < r->header_len)
		mq_buf_add(&b, " ", 1);
	if (!rc)
		rc = unit_write_at(r, 0, b.data, b.len);
	mq_buf_release(&b);
	return rc;
}

/*
 * Rank 0: the rest of a .pt archive once every CRC is known: the local
 * headers, data.pkl, version, the metadata record and the directory.
 */
static int write_pt_archive(struct run *r)
{
	struct mq_torch_out *t = &r->tout;
	struct mq_buf meta = MQ_BUF_INIT, b = MQ_BUF_INIT;
	int rc = mq_metadata_object(&r->man, &r->plan, r->opt, r->res, r->calib_digest[0] ? r->calib_digest : NULL,
				    r->header_len, &meta, &r->err);
	const void *payload[3] = { t->pickle.data, "3\n", meta.data };
	int fixed[3] = { 0, t->n_entries - 2, t->meta_entry };
	for (int k = 0; !rc && k < 3; k++)
		t->entries[fixed[k]].crc = (uint32_t)crc32(0L, payload[k], (uInt)t->entries[fixed[k]].size);
	for (int o = 0; !rc && o < r->plan.n_out; o++)
		t->entries[t->entry_of_out[o]].crc = r->out_crc[o];
	for (int i = 0; !rc && i < t->n_entries; i++) {
		const struct mq_zip_entry *e = &t->entries[i];
		b.len = 0;
		mq_zip_local_header(e, &b);
		for (int k = 0; k < 3; k++)
			if (fixed[k] == i)
				mq_buf_add(&b, payload[k], (size_t)e->size);
		rc = mq_buf_ok(&b) ? unit_write_at(r, e->header_offset, b.data, b.len)
				   : mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	}
	if (!rc) {
		b.len = 0;
		mq_zip_directory(t->entries, t->n_entries, t->directory_offset, &b);
		rc = mq_buf_ok(&b) ? unit_write_at(r, t->directory_offset, b.data, b.len)
				   : mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	}
	mq_buf_release(&meta);
	mq_buf_release(&b);
	return rc;
}

int writer_finish(struct run *r)
{
	if (write_act_params(r))
		return r->err.code;
	return r->pt ? write_pt_archive(r) : write_st_header(r);
}
