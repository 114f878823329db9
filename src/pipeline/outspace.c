#include "outspace.h"

#include <math.h>
#include <stdlib.h>

#include "collect.h"
#include "linalg.h"

#define OUTSPACE_X_BYTES (1u << 20) /* calibration rows of a Linear layer read at a time */
#define OUTSPACE_Y_BYTES (8u << 20) /* at most this much of the three outputs Y at a time */

/*
 * x -> dequant(quant(x)) with static activation parameters (scale, zp) on the
 * activations' grid of weight scheme si: e4m3 for fp8, else int8.
 */
static void fake_quant_with(const struct run *r, const struct mq_scheme_traits *si, double scale, double zero_point,
			    const float *x, float *out, size_t n)
{
	if (si->acts == MQ_ACTS_FP8) { /* the e4m3 grid: the fp8 row itself, with the activations' scale */
		const struct mq_qparams qp = { (float)scale, 0 };
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
	float s = (float)scale, inv = 1.0f / s, zp = (float)zero_point;
	for (size_t i = 0; i < n; i++) {
		float q = nearbyintf(x[i] * inv) + zp;
		q = q < lo ? lo : q > hi ? hi : q;
		out[i] = (q - zp) * s;
	}
}

/* The same with tensor t's own scheme and the parameters its owner rank prepared. */
static void fake_quant(const struct run *r, int t, const float *x, float *out, size_t n)
{
	fake_quant_with(r, mq_scheme_get(r->plan.tensors[t].q.scheme), r->layers[t].act_scale,
			r->layers[t].act_zero_point, x, out, n);
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
	/* outspace_candidates */
	const float *const *whs;
	const struct outspace_act *act;
	int n_cand;
	double *signal, *noise;
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
 * The buffers of tensor t's output-space sums for n weight rows, with n_y
 * outputs of n values per calibration row: the block of xb rows read at a
 * time (whole HDF5 chunks of 1 MiB of Linear rows, or one Conv sample, and
 * at most 8 MiB of outputs), then blocks_run over the layer's rows.
 */
static int blocks_run(struct run *r, struct sums_ctx *c, int n_y,
		      int (*fn)(struct run *r, const float *x, uint64_t row, uint64_t n, void *ctx))
{
	const int t = c->t;
	const struct mq_tensor *tt = &r->man.tensors[t];
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	const struct mq_calib_info *ci = &pt->cinfo;
	uint64_t in_row = ci->shape.row_elems, xb, m_rows;
	c->conv = tt->ndim == 4;
	c->k = pt->row_elems;
	c->oh = c->ow = 1;
	if (c->conv) {
		mq_plan_conv_out(ci, tt, &c->oh, &c->ow);
		xb = 1;
		m_rows = c->oh * c->ow;
	} else {
		uint64_t chunk = ci->shape.chunk_rows ? ci->shape.chunk_rows : 1;
		xb = OUTSPACE_X_BYTES / (c->k * 4) / chunk * chunk; /* whole HDF5 chunks of rows */
		xb = xb ? xb : chunk;
		uint64_t y_cap = OUTSPACE_Y_BYTES / (c->n * 4 * (uint64_t)n_y);
		y_cap = y_cap ? y_cap : 1;
		xb = xb < y_cap ? xb : y_cap;
		m_rows = xb;
	}
	float *x = malloc(xb * in_row * sizeof(float));
	c->xh = malloc(xb * in_row * sizeof(float));
	c->xc = c->conv ? malloc(m_rows * c->k * sizeof(float)) : NULL;
	c->xhc = c->conv ? malloc(m_rows * c->k * sizeof(float)) : NULL;
	c->y = malloc(m_rows * c->n * sizeof(float) * (size_t)n_y);
	int rc = 0;
	if (!x || !c->xh || !c->y || (c->conv && (!c->xc || !c->xhc)))
		rc = mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory for the output-space error of '%s'", tt->name);
	if (!rc)
		rc = outspace_blocks(r, t, xb, x, fn, c);
	free(x);
	free(c->xh);
	free(c->xc);
	free(c->xhc);
	free(c->y);
	return rc;
}

int outspace_sums(struct run *r, int t, const float *w, const float *wh, uint64_t n, struct mq_out_sums *acc)
{
	struct sums_ctx c = { .t = t, .w = w, .wh = wh, .n = n, .acc = acc };
	return blocks_run(r, &c, 3, sums_block);
}

/* One block of calibration rows for the candidates: Y once, then each candidate's Ŷ and its noise. */
static int candidates_block(struct run *r, const float *x, uint64_t row, uint64_t nx, void *ctx)
{
	(void)row;
	struct sums_ctx *c = ctx;
	const struct mq_tensor *tt = &r->man.tensors[c->t];
	const struct mq_calib_info *ci = &r->plan.tensors[c->t].cinfo;
	const size_t in_vals = (size_t)(nx * ci->shape.row_elems);
	const uint64_t m = c->conv ? c->oh * c->ow : nx;
	float *y = c->y, *yh = c->y + m * c->n;
	const float *xin = x;
	if (c->conv) {
		mq_linalg_im2col(x, ci, tt->shape[1], tt->shape[2], tt->shape[3], c->oh, c->ow, c->xc);
		xin = c->xc;
	}
	mq_linalg_gemm_nt(xin, c->w, m, c->n, c->k, y);
	for (uint64_t i = 0; i < m * c->n; i++)
		*c->signal += (double)y[i] * (double)y[i];
	for (int k = 0; k < c->n_cand; k++) {
		if (!c->whs[k])
			continue;
		const float *xa = xin;
		if (c->act[k].si) { /* the activations as this candidate quantizes them */
			fake_quant_with(r, c->act[k].si, c->act[k].scale, c->act[k].zero_point, x, c->xh, in_vals);
			xa = c->xh;
			if (c->conv) {
				mq_linalg_im2col(c->xh, ci, tt->shape[1], tt->shape[2], tt->shape[3], c->oh, c->ow, c->xhc);
				xa = c->xhc;
			}
		}
		mq_linalg_gemm_nt(xa, c->whs[k], m, c->n, c->k, yh);
		double s = 0;
		for (uint64_t i = 0; i < m * c->n; i++) {
			const double e = (double)y[i] - (double)yh[i];
			s += e * e;
		}
		c->noise[k] += s;
	}
	return 0;
}

int outspace_candidates(struct run *r, int t, const float *w, const float *const *wh, const struct outspace_act *act,
			int n_cand, uint64_t n, double *signal, double *noise)
{
	struct sums_ctx c = { .t = t, .w = w, .n = n, .whs = wh, .act = act, .n_cand = n_cand, .signal = signal,
			      .noise = noise };
	return blocks_run(r, &c, 2, candidates_block);
}
