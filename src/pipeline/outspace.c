#include "outspace.h"

#include <math.h>
#include <stdlib.h>

#include "collect.h"
#include "linalg.h"

#define OUTSPACE_X_BYTES (1u << 20) /* calibration rows of a Linear layer read at a time */
#define OUTSPACE_Y_BYTES (8u << 20) /* at most this much of the three outputs Y at a time */

/* x -> dequant(quant(x)) with the layer's static activation parameters, on the activations' grid. */
static void fake_quant(const struct run *r, int t, const float *x, float *out, size_t n)
{
	const struct mq_scheme_traits *si = mq_scheme_get(r->plan.tensors[t].q.scheme);
	if (si->acts == MQ_ACTS_FP8) { /* the e4m3 grid: the fp8 row itself, with the activations' scale */
		const struct mq_qparams qp = { (float)r->layers[t].act_scale, 0 };
		unsigned char codes[256];
		for (size_t i = 0; i < n; i += sizeof(codes)) {
			size_t m = n - i < sizeof(codes) ? n - i : sizeof(codes);
			struct mq_err_acc unused = { 0, 0, 0 };
			si->quantize_ref(si, x + i, m, m, &qp, NULL, codes, &unused);
			si->dequantize(si, codes, m, m, &qp, out + i);
		}
		return;
	}
	const struct mq_scheme_traits *g = mq_obs_grid(!r->opt->act_asymmetric);
	const float lo = (float)g->qmin, hi = (float)g->qmax;
	float s = (float)r->layers[t].act_scale, inv = 1.0f / s, zp = (float)r->layers[t].act_zero_point;
	for (size_t i = 0; i < n; i++) {
		float q = nearbyintf(x[i] * inv) + zp;
		q = q < lo ? lo : q > hi ? hi : q;
		out[i] = (q - zp) * s;
	}
}

int outspace_read(struct run *r, struct mq_calib_layer *l, int t, uint64_t row, uint64_t n, float *x)
{
	size_t bad;
	struct mq_range rg;
	mq_range_init(&rg);
	double t0 = mq_comm_time();
	if (mq_calib_layer_read(l, row, n, x, &r->err))
		return r->err.code;
	r->stats[MQ_STAT_T_READ] += mq_comm_time() - t0;
	if (mq_range_update(&rg, x, (size_t)(n * r->plan.tensors[t].cinfo.shape.row_elems), &bad))
		return mq_calib_layer_nonfinite(l, row, x, bad, &r->err);
	return 0;
}

int outspace_blocks(struct run *r, int t, uint64_t xb, float *x,
		    int (*fn)(struct run *r, const float *x, uint64_t row, uint64_t n, void *ctx), void *ctx)
{
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	char *layer = mq_plan_layer_name(r->man.tensors[t].name);
	struct mq_calib_layer *l = NULL;
	struct mq_calib_shape sh;
	int rc = layer ? mq_calib_layer_open(r->calib, layer, &l, &sh, &r->err)
		       : mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	for (uint64_t row = 0; !rc && row < pt->calib_rows; row += xb) {
		const uint64_t nx = pt->calib_rows - row < xb ? pt->calib_rows - row : xb;
		if ((rc = outspace_read(r, l, t, row, nx, x)))
			break;
		double t0 = mq_comm_time();
		rc = fn(r, x, row, nx, ctx);
		r->stats[MQ_STAT_T_CALIB] += mq_comm_time() - t0;
		collect_poll(r, 0);
		if (!rc && r->cancelled)
			rc = MQ_ERR_INTERNAL;
	}
	mq_calib_layer_close(l);
	free(layer);
	return rc;
}

struct sums_ctx {
	int t, conv;
	const float *w, *wh;
	uint64_t n, k, oh, ow;
	float *xh, *xc, *xhc, *y;
	struct mq_out_sums *acc;
};

/* One block of calibration rows: Y, Ŷw and Ŷwa, and their sums. */
static int sums_block(struct run *r, const float *x, uint64_t row, uint64_t nx, void *ctx)
{
	(void)row;
	struct sums_ctx *c = ctx;
	const struct mq_tensor *tt = &r->man.tensors[c->t];
	const struct mq_plan_tensor *pt = &r->plan.tensors[c->t];
	const struct mq_calib_info *ci = &pt->cinfo;
	const int act = pt->act_rank >= 0;
	if (act)
		fake_quant(r, c->t, x, c->xh, (size_t)(nx * ci->shape.row_elems));
	if (c->conv) {
		const uint64_t m = c->oh * c->ow;
		mq_linalg_im2col(x, ci, tt->shape[1], tt->shape[2], tt->shape[3], c->oh, c->ow, c->xc);
		if (act)
			mq_linalg_im2col(c->xh, ci, tt->shape[1], tt->shape[2], tt->shape[3], c->oh, c->ow, c->xhc);
		mq_linalg_gemm_sums(c->xc, act ? c->xhc : NULL, c->w, c->wh, m, c->n, c->k, c->y, c->y + m * c->n,
				    c->y + 2 * m * c->n, c->acc);
	} else {
		mq_linalg_gemm_sums(x, act ? c->xh : NULL, c->w, c->wh, nx, c->n, c->k, c->y, c->y + nx * c->n,
				    c->y + 2 * nx * c->n, c->acc);
	}
	return 0;
}

/*
 * Output-space sums of n weight rows (w, and wh dequantized) over the layer's
 * calibration rows, read in fixed blocks: 1 MiB of Linear rows, or one Conv
 * sample. The order of the sums depends on the shapes only.
 */
int outspace_sums(struct run *r, int t, const float *w, const float *wh, uint64_t n, struct mq_out_sums *acc)
{
	const struct mq_tensor *tt = &r->man.tensors[t];
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	const struct mq_calib_info *ci = &pt->cinfo;
	struct sums_ctx c = { .t = t, .conv = tt->ndim == 4, .w = w, .wh = wh, .n = n, .k = pt->row_elems, .oh = 1, .ow = 1,
			      .acc = acc };
	uint64_t in_row = ci->shape.row_elems, xb, m_rows;
	if (c.conv) {
		mq_plan_conv_out(ci, tt, &c.oh, &c.ow);
		xb = 1;
		m_rows = c.oh * c.ow;
	} else {
		uint64_t chunk = ci->shape.chunk_rows ? ci->shape.chunk_rows : 1;
		xb = OUTSPACE_X_BYTES / (c.k * 4) / chunk * chunk; /* whole HDF5 chunks of rows */
		xb = xb ? xb : chunk;
		uint64_t y_cap = OUTSPACE_Y_BYTES / (n * 12); /* and at most 8 MiB of outputs */
		y_cap = y_cap ? y_cap : 1;
		xb = xb < y_cap ? xb : y_cap;
		m_rows = xb;
	}
	float *x = malloc(xb * in_row * sizeof(float));
	c.xh = malloc(xb * in_row * sizeof(float));
	c.xc = c.conv ? malloc(m_rows * c.k * sizeof(float)) : NULL;
	c.xhc = c.conv ? malloc(m_rows * c.k * sizeof(float)) : NULL;
	c.y = malloc(m_rows * n * sizeof(float) * 3);
	int rc = 0;
	if (!x || !c.xh || !c.y || (c.conv && (!c.xc || !c.xhc)))
		rc = mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory for the output-space error of '%s'", tt->name);
	if (!rc)
		rc = outspace_blocks(r, t, xb, x, sums_block, &c);
	free(x);
	free(c.xh);
	free(c.xc);
	free(c.xhc);
	free(c.y);
	return rc;
}
