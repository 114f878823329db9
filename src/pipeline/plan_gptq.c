#include "plan.h"

#include "gptq.h"

uint64_t mq_plan_conv_patches(const struct mq_calib_info *ci, const struct mq_tensor *t)
{
	const uint64_t *cs = ci->shape.shape;
	int64_t oh = ((int64_t)cs[2] + 2 * ci->padding[0] - ci->dilation[0] * ((int64_t)t->shape[2] - 1) - 1) / ci->stride[0] + 1;
	int64_t ow = ((int64_t)cs[3] + 2 * ci->padding[1] - ci->dilation[1] * ((int64_t)t->shape[3] - 1) - 1) / ci->stride[1] + 1;
	return (uint64_t)oh * (uint64_t)ow;
}

/* Rows of calibration inputs a GPTQ layer reads at a time: whole HDF5 chunks, about MQ_GPTQ_X_BYTES. */
uint64_t mq_plan_gptq_read_rows(const struct mq_plan_tensor *pt, int conv)
{
	if (conv)
		return 1; /* one sample, and its patches */
	uint64_t chunk = pt->cinfo.shape.chunk_rows ? pt->cinfo.shape.chunk_rows : 1, in_row = pt->cinfo.shape.row_elems;
	uint64_t rows = MQ_GPTQ_X_BYTES / (in_row * 4 + 1) / chunk * chunk;
	rows = rows ? rows : chunk;
	return pt->calib_rows && pt->calib_rows < rows ? pt->calib_rows : rows;
}

/* The bytes of its Hessian and factor, and of one read of calibration inputs (and their patches for a Conv). */
uint64_t mq_plan_gptq_state_bytes(const struct mq_plan_tensor *pt, const struct mq_tensor *t)
{
	const struct mq_calib_info *ci = &pt->cinfo;
	uint64_t x = mq_gptq_layer_bytes(pt->row_elems) + mq_plan_gptq_read_rows(pt, t->ndim == 4) * ci->shape.row_elems * 4;
	if (t->ndim == 4)
		x += mq_plan_conv_patches(ci, t) * pt->row_elems * 4;
	return x;
}

/*
 * A GPTQ layer's work on its owner rank: the Hessian (calibration rows × in²
 * multiply-adds), its factor (about in³), and the sweep, the output-space
 * sums and round to nearest's (about 4 out × in²), as weighted bytes at 16
 * flops a byte.
 */
uint64_t mq_plan_gptq_cost(const struct mq_plan_tensor *pt, const struct mq_tensor *t)
{
	const double n = (double)pt->row_elems, rows = (double)pt->calib_rows * (t->ndim == 4 ? (double)mq_plan_conv_patches(&pt->cinfo, t) : 1.0);
	double flops = rows * n * n + 2.0 * n * n * n + 8.0 * (double)pt->n_rows * n * n;
	return (uint64_t)(flops / 16.0) + 3 * t->nbytes;
}

int mq_plan_gptq_budget(struct mq_plan *p, const struct mq_manifest *m, uint64_t budget, struct mq_error *err)
{
	/* a GPTQ layer's Hessian is held beside the buffers while its owner works on it */
	for (int i = 0; i < p->n_tensors; i++) {
		const struct mq_plan_tensor *pt = &p->tensors[i];
		if (!pt->gptq)
			continue;
		if (p->arena_bytes + pt->gptq_bytes > budget)
			return mq_fail(err, MQ_ERR_USAGE,
				"GPTQ layer '%s' needs %llu MiB (its %llu x %llu Hessian and factor in float32, its calibration reads and %llu MiB of buffers), more than the memory budget of %llu MiB; raise --memory-budget, or keep it unquantized with --exclude",
				m->tensors[i].name, (unsigned long long)((p->arena_bytes + pt->gptq_bytes + (1u << 20) - 1) >> 20),
				(unsigned long long)pt->row_elems, (unsigned long long)pt->row_elems,
				(unsigned long long)((p->arena_bytes + (1u << 20) - 1) >> 20), (unsigned long long)(budget >> 20));
		p->gptq_bytes = pt->gptq_bytes > p->gptq_bytes ? pt->gptq_bytes : p->gptq_bytes;
	}
	return 0;
}
