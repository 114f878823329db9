#include "factor.h"

#include <stdlib.h>

#include "collect.h"

struct gptq_cache {
	int tensor;                /* plan tensor of the factor in hand, -1 if none */
	struct mq_gptq_layer layer;
};

void gptq_release(struct run *r)
{
	if (!r->gptq)
		return;
	mq_gptq_layer_release(&r->gptq->layer);
	free(r->gptq);
	r->gptq = NULL;
}

/* H over the layer's calibration rows, read in fixed blocks of whole chunks (a Conv: one sample's patches). */
static int accumulate(struct run *r, int t, struct mq_gptq_layer *g)
{
	const struct mq_tensor *tt = &r->man.tensors[t];
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	const struct mq_calib_info *ci = &pt->cinfo;
	const int conv = tt->ndim == 4;
	const uint64_t xb = mq_plan_gptq_read_rows(pt, conv), in_row = ci->shape.row_elems;
	const uint64_t patches = conv ? mq_plan_conv_patches(ci, tt) : 0;
	char *layer = mq_plan_layer_name(tt->name);
	float *x = malloc((size_t)(xb * in_row + 1) * sizeof(float));
	float *xc = conv ? malloc((size_t)(patches * pt->row_elems + 1) * sizeof(float)) : NULL;
	struct mq_calib_layer *l = NULL;
	struct mq_calib_shape sh;
	int rc = 0;
	if (!layer || !x || (conv && !xc))
		rc = mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory for the Hessian of '%s'", tt->name);
	if (!rc)
		rc = mq_calib_layer_open(r->calib, layer, &l, &sh, &r->err);
	for (uint64_t row = 0; !rc && row < pt->calib_rows; row += xb) {
		const uint64_t nx = pt->calib_rows - row < xb ? pt->calib_rows - row : xb;
		size_t bad;
		struct mq_range rg;
		mq_range_init(&rg);
		double t0 = mq_comm_time();
		if ((rc = mq_calib_layer_read(l, row, nx, x, &r->err)))
			break;
		r->stats[MQ_STAT_T_READ] += mq_comm_time() - t0;
		if (mq_range_update(&rg, x, (size_t)(nx * in_row), &bad)) {
			rc = mq_calib_layer_nonfinite(l, row, x, bad, &r->err);
			break;
		}
		t0 = mq_comm_time();
		if (conv) {
			const uint64_t oh_ow = patches; /* im2col wants oh and ow: the same formula as the plan's */
			uint64_t oh = (uint64_t)(((int64_t)ci->shape.shape[2] + 2 * ci->padding[0] - ci->dilation[0] * ((int64_t)tt->shape[2] - 1) - 1) / ci->stride[0] + 1);
			mq_linalg_im2col(x, ci, tt->shape[1], tt->shape[2], tt->shape[3], oh, oh_ow / oh, xc);
			mq_gptq_add_rows(g, xc, oh_ow);
		} else {
			mq_gptq_add_rows(g, x, nx);
		}
		r->stats[MQ_STAT_T_CALIB] += mq_comm_time() - t0;
		collect_poll(r, 0);
		if (r->cancelled)
			rc = MQ_ERR_INTERNAL;
	}
	mq_calib_layer_close(l);
	free(layer);
	free(x);
	free(xc);
	return rc;
}

const struct mq_gptq_layer *gptq_layer(struct run *r, int t, double *seconds)
{
	if (r->gptq && r->gptq->tensor == t)
		return &r->gptq->layer;
	gptq_release(r);
	double t0 = mq_comm_time();
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	r->gptq = calloc(1, sizeof(*r->gptq));
	if (!r->gptq || mq_gptq_layer_init(&r->gptq->layer, pt->row_elems)) {
		free(r->gptq);
		r->gptq = NULL;
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory for the %llu x %llu Hessian of '%s'",
			(unsigned long long)pt->row_elems, (unsigned long long)pt->row_elems, r->man.tensors[t].name);
		return NULL;
	}
	r->gptq->tensor = t;
	if (accumulate(r, t, &r->gptq->layer)) {
		gptq_release(r);
		return NULL;
	}
	double t1 = mq_comm_time();
	if (mq_gptq_factor(&r->gptq->layer, &r->opt->gptq)) {
		gptq_release(r);
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory for the factor of '%s'", r->man.tensors[t].name);
		return NULL;
	}
	r->stats[MQ_STAT_T_CALIB] += mq_comm_time() - t1;
	*seconds += mq_comm_time() - t0;
	return &r->gptq->layer;
}
