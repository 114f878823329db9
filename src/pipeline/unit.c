#include "unit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collect.h"
#include "crc.h"
#include "factor.h"
#include "fileio.h"
#include "gather.h"
#include "output.h"
#include "outspace.h"
#include "source.h"

/* n bytes at absolute offset pos of file `file` of the output. */
int unit_write_at(struct run *r, int file, uint64_t pos, const void *buf, size_t n)
{
	double t0 = mq_comm_time();
	int rc = mq_comm_file_write(r->fh[file], pos, buf, n, &r->err);
	r->stats[MQ_STAT_T_WRITE] += mq_comm_time() - t0;
	r->stats[MQ_STAT_BYTES_WRITTEN] += (double)n;
	r->stats[MQ_STAT_WRITES]++;
	return rc;
}

/* The staged bytes of the unit's k-th output tensor, written. */
static int stage_flush(struct run *r, int k)
{
	size_t n = r->stage_len[k];
	r->stage_len[k] = 0;
	return n ? unit_write_at(r, r->files.file_of[r->ucrc_out[k]], r->stage_pos[k], r->stage + (size_t)k * UNIT_STAGE, n)
		 : 0;
}

/* n bytes for file position pos of the unit's k-th output tensor: staged, or written if they do not fit. */
static int stage_put(struct run *r, int k, uint64_t pos, const void *buf, size_t n)
{
	if (r->stage_len[k] && (r->stage_pos[k] + r->stage_len[k] != pos || r->stage_len[k] + n > UNIT_STAGE) &&
	    stage_flush(r, k))
		return r->err.code;
	const int file = r->files.file_of[r->ucrc_out[k]];
	if (!r->stage || n >= UNIT_STAGE)
		return unit_write_at(r, file, pos, buf, n);
	double t0 = mq_comm_time();
	if (!r->stage_len[k])
		r->stage_pos[k] = pos;
	memcpy(r->stage + (size_t)k * UNIT_STAGE + r->stage_len[k], buf, n);
	r->stage_len[k] += n;
	r->stats[MQ_STAT_T_WRITE] += mq_comm_time() - t0; /* its bytes are counted when they are written */
	return 0;
}

/* Bytes of output tensor o from its byte off on, in order within a unit (the unit's CRC follows them). */
static int write_out(struct run *r, int o, uint64_t off, const void *buf, size_t n)
{
	for (int k = 0; k < UNIT_OUTPUTS; k++)
		if (r->ucrc_out[k] == o) {
			r->ucrc[k] = mq_crc32(r->ucrc[k], buf, n);
			r->ucrc_len[k] += n;
			return stage_put(r, k, r->out_pos[o] + off, buf, n);
		}
	return unit_write_at(r, r->files.file_of[o], r->out_pos[o] + off, buf, n);
}

static int hash_block(struct run *r, struct chunk_hasher *ch, const void *p, size_t n, int ends_chunk)
{
	if (!ch->out)
		return 0; /* --no-checksum */
	double t0 = mq_comm_time();
	if (!ch->open) {
		if (mq_hasher_init(&ch->h, r->opt->digest))
			return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
		ch->open = 1;
	}
	mq_hasher_update(&ch->h, p, n);
	if (ends_chunk) {
		mq_hasher_final(&ch->h, ch->out + (size_t)ch->next++ * MQ_DIGEST_MAX);
		ch->open = 0;
	}
	r->stats[MQ_STAT_T_HASH] += mq_comm_time() - t0;
	return 0;
}

static int copy_unit(struct run *r, const struct mq_unit *u, struct chunk_hasher *ch)
{
	const struct mq_tensor *t = &r->man.tensors[u->tensor];
	const struct mq_plan_tensor *pt = &r->plan.tensors[u->tensor];
	uint64_t begin = u->row_begin * pt->row_bytes, end = u->row_end * pt->row_bytes;
	for (uint64_t off = begin; off < end;) {
		size_t n = (size_t)(end - off < r->plan.arena_bytes ? end - off : r->plan.arena_bytes);
		n -= n % mq_dtype_size(t->dtype); /* whole elements, for strided views */
		const void *in;
		if (source_view(r, t, off, n, r->arena, &in) || hash_block(r, ch, in, n, off + n == end) ||
		    write_out(r, pt->out_data, off, in, n))
			return r->err.code;
		off += n;
		collect_poll(r, 0);
		if (r->cancelled)
			return MQ_ERR_INTERNAL; /* stopped: someone else failed */
	}
	return 0;
}

struct blocks {
	void *src;         /* room for the source rows as stored, if they are read rather than mapped */
	const void *in;    /* the block's source rows as stored (src, or the mapped window) */
	float *wide;       /* room for the rows widened to float32 (aliases src for F32) */
	const float *x;    /* the rows as float32: wide, or in for F32 */
	void *q;           /* quantized rows */
	struct mq_qparams *p; /* per group of each row */
	void *scales;      /* the groups' scales as stored */
	void *zero_points; /* and their zero points */
	float *what;       /* calibrated layers: the rows dequantized */
	float *xq;         /* GPTQ: the values as quantized (the sweep's result) */
	float *rtn;        /* GPTQ: the rows rounded to nearest, dequantized */
	struct mq_qparams *rtn_p; /* and their parameters */
	void *scratch;     /* GPTQ: the sweep's and the output-space sums' */
};

static struct blocks carve(struct run *r, const struct mq_plan_tensor *pt, enum mq_dtype dt)
{
	struct mq_block_regions g;
	unsigned char *a = r->arena;
	mq_plan_block_regions(&r->plan, pt, dt, pt->block_rows, &g);
	MQ_ASSERT(g.end <= r->plan.arena_bytes);
	float *wide = (float *)(void *)(a + g.x);
	return (struct blocks){ a + g.src, a + g.src, wide, wide, a + g.q, (struct mq_qparams *)(void *)(a + g.params),
				a + g.scales, a + g.zero_points, (float *)(void *)(a + g.what), (float *)(void *)(a + g.xq),
				(float *)(void *)(a + g.rtn), (struct mq_qparams *)(void *)(a + g.rtn_params), a + g.scratch };
}

static int data_error(struct run *r, const struct mq_tensor *t, uint64_t row, const float *x, size_t col)
{
	const char *what = x[col] != x[col] ? "NaN" : "Inf";
	if ((mq_f32_bits(x[col]) & 0x7fffffffu) < 0x7f800000u)
		what = "a value beyond the float16 range (|x| >= 65520)";
	return mq_fail(&r->err, MQ_ERR_DATA,
		"'%s': tensor '%s': %s at row %llu, element %zu; repair the checkpoint, or keep the tensor unquantized with --exclude '%s'",
		r->man.files[t->file].path, t->name, what, (unsigned long long)row, col, t->name);
}

/* Range of one row with the NaN/Inf (and fp16 overflow) checks. */
static int row_range(struct run *r, const struct mq_tensor *t, const struct mq_plan_tensor *pt, uint64_t row,
		     const float *x, struct mq_range *rg)
{
	size_t bad;
	const struct mq_scheme_traits *si = mq_scheme_get(pt->q.scheme);
	if (mq_scheme_range_update(si, rg, x, (size_t)pt->row_elems, &bad))
		return data_error(r, t, row, x, bad);
	float limit = si->limit;
	if (mq_f32_from_bits(rg->absmax_bits) > limit) {
		for (size_t k = 0; k < pt->row_elems; k++)
			if (x[k] > limit || x[k] < -limit)
				return data_error(r, t, row, x, k);
	}
	return 0;
}

/* A block's rows, hashed, and widened to float32 unless `widen` is 0 (fused_rows widens row by row). */
static int load_block(struct run *r, const struct mq_tensor *t, const struct mq_plan_tensor *pt,
		      struct blocks *b, uint64_t row, uint64_t n, struct chunk_hasher *ch, int widen)
{
	size_t bytes = (size_t)(n * pt->row_bytes);
	if (source_view(r, t, row * pt->row_bytes, bytes, b->src, &b->in))
		return r->err.code;
	/* the block's rows chunk by chunk: a block of packed zero points' whole words may cross a chunk's end */
	for (uint64_t at = row; ch && at < row + n;) {
		uint64_t chunk_end = (at / pt->chunk_rows + 1) * pt->chunk_rows, end = chunk_end < row + n ? chunk_end : row + n;
		if (hash_block(r, ch, (const char *)b->in + (at - row) * pt->row_bytes, (size_t)((end - at) * pt->row_bytes),
			       end == chunk_end || end == pt->n_rows))
			return r->err.code;
		at = end;
	}
	if (t->dtype == MQ_DTYPE_F32 || !widen) {
		b->x = t->dtype == MQ_DTYPE_F32 ? b->in : NULL; /* unwidened rows are no float32 rows */
		return 0;
	}
	double t0 = mq_comm_time();
	mq_dtype_widen(t->dtype, b->in, b->wide, (size_t)(n * pt->row_elems));
	b->x = b->wide;
	r->stats[MQ_STAT_T_QUANT] += mq_comm_time() - t0;
	return 0;
}

int unit_row_params(struct run *r, const struct mq_tensor *t, const struct mq_plan_tensor *pt, uint64_t row,
		      const float *x, struct mq_qparams *p)
{
	const struct mq_scheme_traits *si = mq_scheme_get(pt->q.scheme);
	const enum mq_dtype sd = mq_scheme_scale_dtype(si, t->dtype);
	struct mq_range rg;
	mq_range_init(&rg);
	if (row_range(r, t, pt, row, x, &rg))
		return r->err.code;
	const size_t group = (size_t)(pt->row_elems / pt->row_groups);
	if (r->opt->clip == MQ_CLIP_MSE && si->granularities) { /* a cast (mixed precision's) has no range */
		for (uint64_t g = 0; g < pt->row_groups; g++)
			p[g] = mq_clip_mse(si, x + g * group, group, sd, NULL, NULL);
		return 0;
	}
	if (pt->row_groups == 1) {
		p[0] = si->params(si, &rg, sd);
		return 0;
	}
	for (uint64_t g = 0; g < pt->row_groups; g++) {
		size_t bad;
		mq_range_init(&rg);
		mq_scheme_range_update(si, &rg, x + g * group, group, &bad); /* finite: the row's check passed */
		p[g] = si->params(si, &rg, sd);
	}
	return 0;
}

/* A block's scales and zero points, once its rows are quantized (per tensor: at the unit's end). */
static int write_params(struct run *r, const struct mq_tensor *t, const struct mq_plan_tensor *pt,
			const struct blocks *b, uint64_t row, uint64_t n)
{
	const struct mq_scheme_traits *si = mq_scheme_get(pt->q.scheme);
	const uint64_t groups = n * pt->row_groups;
	if (pt->out_scale >= 0) {
		size_t len = mq_scales_store(mq_scheme_scale_dtype(si, t->dtype), b->p, (size_t)groups, b->scales);
		if (write_out(r, pt->out_scale, row * (len / n), b->scales, len))
			return r->err.code;
	}
	if (pt->out_zero_point >= 0) {
		const struct mq_companion *c = mq_scheme_part(si, MQ_PART_ZERO_POINT);
		size_t len = mq_zero_points_store(si, c, b->p, (size_t)n, (size_t)pt->row_groups, b->zero_points);
		if (write_out(r, pt->out_zero_point, row / pt->row_align * (len / (n / pt->row_align)), b->zero_points,
			      len))
			return r->err.code;
	}
	return 0;
}

/* Pass 1 of a per-tensor unit: the exact range of the whole tensor (and the digests). */
static int tensor_range(struct run *r, const struct mq_unit *u, struct blocks *b, struct chunk_hasher *ch,
			struct mq_range *whole)
{
	const struct mq_tensor *t = &r->man.tensors[u->tensor];
	const struct mq_plan_tensor *pt = &r->plan.tensors[u->tensor];
	mq_range_init(whole);
	for (uint64_t row = u->row_begin; row < u->row_end;) {
		uint64_t n = u->row_end - row < pt->block_rows ? u->row_end - row : pt->block_rows;
		uint64_t to_chunk_end = (row / pt->chunk_rows + 1) * pt->chunk_rows - row;
		n = n < to_chunk_end ? n : to_chunk_end; /* a block never straddles two chunk digests */
		if (load_block(r, t, pt, b, row, n, ch, 1))
			return r->err.code;
		for (uint64_t k = 0; k < n; k++)
			if (row_range(r, t, pt, row + k, b->x + k * pt->row_elems, whole))
				return r->err.code;
		row += n;
		collect_poll(r, 0);
		if (r->cancelled)
			return MQ_ERR_INTERNAL;
	}
	return 0;
}

/* Quantizes n rows of a block (their parameters already in b->p), and their output-space sums. */
static int quant_rows(struct run *r, const struct mq_unit *u, const struct blocks *b, uint64_t row, uint64_t n,
		      struct mq_err_acc *acc, struct mq_out_sums *oacc)
{
	const struct mq_plan_tensor *pt = &r->plan.tensors[u->tensor];
	const struct mq_scheme_traits *si = mq_scheme_get(pt->q.scheme);
	const size_t n_elems = (size_t)pt->row_elems, group = (size_t)(pt->row_elems / pt->row_groups);
	const size_t out_row = (size_t)mq_scheme_bytes(si, n_elems);
	const int per_tensor = pt->q.per_tensor;
	for (uint64_t k = 0; k < n; k++)
		mq_scheme_quantize(si, b->x + k * n_elems, n_elems, group, b->p + (per_tensor ? 0 : k * pt->row_groups),
				   NULL, (char *)b->q + k * out_row, acc);
	if (write_out(r, pt->out_data, row * out_row, b->q, n * out_row))
		return r->err.code;
	if (pt->calib != MQ_CALIB_STATIC)
		return 0;
	for (uint64_t k = 0; k < n; k++)
		si->dequantize(si, (const char *)b->q + k * out_row, n_elems, group,
			       b->p + (per_tensor ? 0 : k * pt->row_groups), b->what + k * n_elems);
	return outspace_sums(r, u->tensor, b->x, b->what, n, oacc);
}

/*
 * A row of 16-bit floats (bfloat16 or fp16) straight from its bits, where the
 * scheme has such a kernel (quantize_half) and no --clip search needs the row
 * as float32: its range, its groups' parameters and its codes, with no
 * widened copy; the same as unit_row_params and the kernel give the widened
 * row (the kernel tests compare them). 0 when done; 1 when the row is to be
 * widened after all, a NaN, an Inf or a value beyond the scheme's limit,
 * which unit_row_params then reports.
 */
static int half_row(const struct mq_tensor *t, const struct mq_plan_tensor *pt, const struct mq_scheme_traits *si,
		    const uint16_t *x, struct mq_qparams *p, void *q, struct mq_err_acc *acc)
{
	const enum mq_dtype sd = mq_scheme_scale_dtype(si, t->dtype);
	const size_t n = (size_t)pt->row_elems, group = (size_t)(pt->row_elems / pt->row_groups);
	struct mq_range rg;
	size_t bad;
	mq_range_init(&rg);
	if (mq_scheme_range_update_half(si, &rg, x, t->dtype, n, &bad) || mq_f32_from_bits(rg.absmax_bits) > si->limit)
		return 1;
	if (pt->row_groups == 1) {
		p[0] = si->params(si, &rg, sd);
	} else {
		for (uint64_t g = 0; g < pt->row_groups; g++) {
			mq_range_init(&rg);
			/* finite: the row's check passed */
			mq_scheme_range_update_half(si, &rg, x + g * group, t->dtype, group, &bad);
			p[g] = si->params(si, &rg, sd);
		}
	}
	si->quantize_half(si, x, t->dtype, n, group, p, q, acc);
	return 0;
}

/*
 * Round to nearest on n rows as stored, one row at a time: the row is hashed
 * (its first read, from memory), a narrower dtype's row is widened into the
 * first row of b->wide, and the row (widened, or float32 as stored) stays in
 * L1 while its range, parameters and codes are made; then the block's codes
 * are written. The kernel prefetches the next row of the block while it
 * quantizes this one, so the memory reads overlap the arithmetic instead of
 * a hash pass over the whole block waiting on them first. The codes,
 * parameters and error sums are those of the row_params and quant_rows
 * passes exactly, and the digests those of load_block's.
 */
static int fused_rows(struct run *r, const struct mq_tensor *t, const struct mq_plan_tensor *pt,
		      const struct blocks *b, uint64_t row, uint64_t n, struct chunk_hasher *ch, struct mq_err_acc *acc)
{
	const struct mq_scheme_traits *si = mq_scheme_get(pt->q.scheme);
	const size_t n_elems = (size_t)pt->row_elems, groups = (size_t)pt->row_groups;
	const size_t out_row = (size_t)mq_scheme_bytes(si, n_elems);
	const int direct = (t->dtype == MQ_DTYPE_BF16 || t->dtype == MQ_DTYPE_F16) && si->quantize_half &&
			   !(r->opt->clip == MQ_CLIP_MSE && si->granularities);
	for (uint64_t k = 0; k < n; k++) {
		const void *in = (const char *)b->in + k * pt->row_bytes;
		const float *x = in;
		const uint64_t next = row + k + 1;
		if (ch && hash_block(r, ch, in, (size_t)pt->row_bytes, next % pt->chunk_rows == 0 || next == pt->n_rows))
			return r->err.code;
		if (direct && !half_row(t, pt, si, in, b->p + k * groups, (char *)b->q + k * out_row, acc))
			continue;
		if (t->dtype != MQ_DTYPE_F32) {
			mq_dtype_widen(t->dtype, in, b->wide, n_elems);
			x = b->wide;
		}
		if (unit_row_params(r, t, pt, row + k, x, b->p + k * groups))
			return r->err.code;
		mq_scheme_quantize(si, x, n_elems, n_elems / groups, b->p + k * groups, NULL, (char *)b->q + k * out_row,
				   acc);
	}
	return write_out(r, pt->out_data, row * out_row, b->q, n * out_row);
}

/*
 * One block of a GPTQ unit: the sweep, the kernel on the values as the sweep
 * quantized them (the GPTQ codes), the errors against the original weights,
 * and round to nearest's beside them.
 */
static int gptq_block(struct run *r, const struct mq_unit *u, const struct mq_gptq_layer *g, const struct blocks *b,
		      uint64_t row, uint64_t n, struct mq_err_acc *acc, struct mq_out_sums *oacc, struct unit_record *rec)
{
	const struct mq_tensor *t = &r->man.tensors[u->tensor];
	const struct mq_plan_tensor *pt = &r->plan.tensors[u->tensor];
	const struct mq_scheme_traits *si = mq_scheme_get(pt->q.scheme);
	const size_t n_elems = (size_t)pt->row_elems, groups = (size_t)pt->row_groups, group = n_elems / groups;
	const size_t out_row = (size_t)mq_scheme_bytes(si, n_elems);
	for (uint64_t k = 0; k < n; k++) /* the range checks, and round to nearest's parameters */
		if (unit_row_params(r, t, pt, row + k, b->x + k * n_elems, b->rtn_p + k * groups))
			return r->err.code;
	mq_gptq_sweep(g, &r->opt->gptq, si, mq_scheme_scale_dtype(si, t->dtype), group, b->x, n, b->p, b->xq,
		      &rec->gptq_loss, b->scratch);
	for (uint64_t k = 0; k < n; k++) {
		struct mq_err_acc unused = { 0, 0, 0 };
		mq_scheme_quantize(si, b->xq + k * n_elems, n_elems, group, b->p + k * groups, NULL,
				   (char *)b->q + k * out_row, &unused);
		si->dequantize(si, (const char *)b->q + k * out_row, n_elems, group, b->p + k * groups,
			       b->what + k * n_elems);
	}
	if (write_out(r, pt->out_data, row * out_row, b->q, n * out_row))
		return r->err.code;
	for (size_t i = 0; i < n * n_elems; i++) { /* the weights' own error, in index order */
		const double x = (double)b->x[i], e = x - (double)b->what[i];
		acc->signal += x * x;
		acc->noise += e * e;
		acc->max_abs = fabs(e) > acc->max_abs ? fabs(e) : acc->max_abs;
		b->rtn[i] = si->fake(si, b->x[i], b->rtn_p[i / n_elems * groups + i % n_elems / group]);
	}
	if (g->h_nonfinite) { /* rounded to nearest (the fallback): its output error from the calibration rows */
		struct mq_out_sums s = { 0, 0, 0, 0 };
		if (outspace_sums(r, u->tensor, b->x, b->what, n, &s))
			return r->err.code;
		oacc->signal += s.signal;
		oacc->noise_w += s.noise_w;
		oacc->noise_rtn += s.noise_w;
		return 0;
	}
	const float *const xh[2] = { b->what, b->rtn };
	double noise[2] = { 0, 0 };
	mq_gptq_quad(g, b->x, xh, 2, n, &oacc->signal, noise, b->scratch);
	oacc->noise_w += noise[0];
	oacc->noise_rtn += noise[1];
	return 0;
}

static int gptq_unit(struct run *r, const struct mq_unit *u, struct chunk_hasher *ch, struct mq_err_acc *acc,
		     struct mq_out_sums *oacc, struct unit_record *rec)
{
	const struct mq_tensor *t = &r->man.tensors[u->tensor];
	const struct mq_plan_tensor *pt = &r->plan.tensors[u->tensor];
	const struct mq_gptq_layer *g = gptq_layer(r, u->tensor, &rec->gptq_seconds);
	if (!g)
		return r->err.code;
	struct blocks b = carve(r, pt, t->dtype);
	for (uint64_t row = u->row_begin; row < u->row_end;) {
		uint64_t n = u->row_end - row < pt->block_rows ? u->row_end - row : pt->block_rows;
		if (load_block(r, t, pt, &b, row, n, ch, 1))
			return r->err.code;
		double t0 = mq_comm_time(), w0 = r->stats[MQ_STAT_T_WRITE];
		int rc = gptq_block(r, u, g, &b, row, n, acc, oacc, rec);
		double dt = mq_comm_time() - t0 - (r->stats[MQ_STAT_T_WRITE] - w0); /* its writes are write_s */
		r->stats[MQ_STAT_T_QUANT] += dt;
		rec->gptq_seconds += dt;
		if (rc || write_params(r, t, pt, &b, row, n))
			return r->err.code;
		row += n;
		collect_poll(r, 0);
		if (r->cancelled)
			return MQ_ERR_INTERNAL;
	}
	rec->gptq = g->fallback ? (g->h_nonfinite ? 3 : 2) : 1;
	rec->gptq_dead = g->n_dead;
	rec->gptq_damp = g->damp;
	rec->gptq_raised = g->raised;
	return 0;
}

static int quant_unit(struct run *r, const struct mq_unit *u, struct chunk_hasher *ch, struct mq_err_acc *acc,
		      struct mq_out_sums *oacc, struct unit_record *rec)
{
	if (r->plan.tensors[u->tensor].gptq)
		return gptq_unit(r, u, ch, acc, oacc, rec);
	const struct mq_tensor *t = &r->man.tensors[u->tensor];
	const struct mq_plan_tensor *pt = &r->plan.tensors[u->tensor];
	const struct mq_spec *q = &pt->q;
	const struct mq_scheme_traits *si = mq_scheme_get(q->scheme);
	struct blocks b = carve(r, pt, t->dtype);
	struct mq_range whole;
	if (q->per_tensor && tensor_range(r, u, &b, ch, &whole))
		return r->err.code;
	const struct mq_qparams tensor_qp = q->per_tensor ? si->params(si, &whole, mq_scheme_scale_dtype(si, t->dtype))
							  : (struct mq_qparams){ 1.0f, 0 };
	/* row by row, where nothing needs the whole block as float32 afterwards */
	const int fused = !q->per_tensor && pt->calib != MQ_CALIB_STATIC;
	for (uint64_t row = u->row_begin; row < u->row_end;) {
		uint64_t n = u->row_end - row < pt->block_rows ? u->row_end - row : pt->block_rows;
		if (load_block(r, t, pt, &b, row, n, q->per_tensor || fused ? NULL : ch, !fused))
			return r->err.code;
		double t0 = mq_comm_time(), w0 = r->stats[MQ_STAT_T_WRITE], h0 = r->stats[MQ_STAT_T_HASH];
		for (uint64_t k = 0; k < n && !q->per_tensor && !fused; k++)
			if (unit_row_params(r, t, pt, row + k, b.x + k * pt->row_elems, b.p + k * pt->row_groups))
				return r->err.code;
		if (q->per_tensor)
			b.p[0] = tensor_qp;
		int rc = fused ? fused_rows(r, t, pt, &b, row, n, ch, acc) : quant_rows(r, u, &b, row, n, acc, oacc);
		/* its writes are write_s, fused_rows' digests hash_s */
		r->stats[MQ_STAT_T_QUANT] +=
			mq_comm_time() - t0 - (r->stats[MQ_STAT_T_WRITE] - w0) - (r->stats[MQ_STAT_T_HASH] - h0);
		if (rc || (!q->per_tensor && write_params(r, t, pt, &b, row, n)))
			return r->err.code;
		row += n;
		collect_poll(r, 0);
		if (r->cancelled)
			return MQ_ERR_INTERNAL;
	}
	if (q->per_tensor) {
		b.p[0] = tensor_qp;
		return write_params(r, t, pt, &b, 0, 1);
	}
	return 0;
}

/* The up-to-date check's work on one unit: its source chunks' digests, nothing written. */
int unit_hash(struct run *r, const struct mq_unit *u, struct chunk_hasher *ch)
{
	const struct mq_tensor *t = &r->man.tensors[u->tensor];
	const struct mq_plan_tensor *pt = &r->plan.tensors[u->tensor];
	size_t es = mq_dtype_size(t->dtype);
	for (uint64_t c = u->chunk_begin; c < u->chunk_end; c++) {
		uint64_t r1 = (c + 1) * pt->chunk_rows < pt->n_rows ? (c + 1) * pt->chunk_rows : pt->n_rows;
		uint64_t end = r1 * pt->row_bytes;
		for (uint64_t off = c * pt->chunk_rows * pt->row_bytes; off < end;) {
			size_t n = (size_t)(end - off < r->plan.arena_bytes ? end - off : r->plan.arena_bytes);
			n -= n % es;
			const void *in;
			if (source_view(r, t, off, n, r->arena, &in) || hash_block(r, ch, in, n, off + n == end))
				return r->err.code;
			off += n;
			collect_poll(r, 0);
			if (r->cancelled)
				return MQ_ERR_INTERNAL;
		}
	}
	return 0;
}

struct unit_job {
	const struct mq_unit *u;
	struct chunk_hasher *ch;
	struct mq_err_acc *acc;
	struct mq_out_sums *oacc;
	struct unit_record *rec;
};

static int unit_body(struct run *r, void *arg)
{
	const struct unit_job *j = arg;
	if (r->hash_only)
		return unit_hash(r, j->u, j->ch);
	if (r->plan.tensors[j->u->tensor].action == MQ_ACT_QUANT)
		return quant_unit(r, j->u, j->ch, j->acc, j->oacc, j->rec);
	return copy_unit(r, j->u, j->ch);
}

static int do_unit(struct run *r, int id, struct unit_record *rec)
{
	const struct mq_unit *u = &r->plan.units[id];
	struct chunk_hasher ch = { .out = r->opt->no_checksum ? NULL : (uint8_t *)(rec + 1) };
	struct mq_err_acc acc = { 0, 0, 0 };
	struct mq_out_sums oacc = { 0, 0, 0, 0 };
	memset(rec, 0, sizeof(*rec));
	rec->unit = id;
	rec->n_digests = r->opt->no_checksum ? 0 : (uint32_t)(u->chunk_end - u->chunk_begin);
	const struct mq_plan_tensor *pt = &r->plan.tensors[u->tensor];
	unit_outputs(pt, r->ucrc_out);
	for (int k = 0; k < UNIT_OUTPUTS; k++) {
		r->ucrc[k] = 0;
		r->ucrc_len[k] = 0;
	}
	struct unit_job job = { u, &ch, &acc, &oacc, rec };
	int rc = source_guarded(r, unit_body, &job);
	for (int k = 0; k < UNIT_OUTPUTS; k++) /* the unit's bytes are in the file before its record leaves */
		if (rc)
			r->stage_len[k] = 0;
		else
			rc = stage_flush(r, k);
	if (ch.open)
		mq_hasher_release(&ch.h);
	rec->failed = rc != 0;
	rec->signal = acc.signal;
	rec->noise = acc.noise;
	rec->max_abs = acc.max_abs;
	rec->out_signal = oacc.signal;
	rec->out_noise_w = oacc.noise_w;
	rec->out_noise_wa = oacc.noise_wa;
	rec->out_noise_rtn = oacc.noise_rtn;
	memcpy(rec->crc, r->ucrc, sizeof(rec->crc));
	memcpy(rec->crc_len, r->ucrc_len, sizeof(rec->crc_len));
	for (int k = 0; k < UNIT_OUTPUTS; k++)
		r->ucrc_out[k] = -1;
	return rc;
}

void unit_note_interrupt(struct run *r, const char *layer)
{
	r->interrupted = 1;
	if (layer)
		mq_info("SIGUSR1 on the rank that builds '%s': stopping after the units in hand\n", layer);
	else
		mq_info("SIGUSR1: stopping after the units in hand\n");
}

void unit_take(struct run *r, int id, int usable)
{
	struct unit_record *rec = r->unit_full, skip;
	if (mq_stop_requested && !r->interrupted) /* finish the unit in hand, start no other */
		unit_note_interrupt(r, NULL);
	if (usable && !r->unit_failed && !r->cancelled && !r->interrupted) {
		r->unit_failed = do_unit(r, id, rec) != 0;
		r->stats[MQ_STAT_UNITS]++;
		if (r->unit_failed && r->rank == 0)
			collect_cancel_all(r);
	} else { /* after a failure anywhere, the remaining units are only reported as skipped */
		rec = &skip;
		memset(rec, 0, sizeof(*rec));
		rec->unit = id;
		rec->failed = r->unit_failed || r->cancelled || !r->interrupted ? 1 : 2;
	}
	if (rec->failed)
		rec->n_digests = 0;
	size_t len = sizeof(*rec) + rec->n_digests * (size_t)MQ_SHA256_LEN;
	if (r->rank == 0) {
		collect_take(r, rec, len);
	} else {
		struct mq_error e = { 0 };
		if (mq_comm_send_record(r->comm, rec, len, &e))
			MQ_ASSERT(!"cannot send a unit record");
	}
}

int unit_work(struct run *r)
{
	const struct mq_plan *p = &r->plan;
	uint64_t max_digests = 0;
	for (int u = 0; u < p->n_units; u++)
		if (p->units[u].chunk_end - p->units[u].chunk_begin > max_digests)
			max_digests = p->units[u].chunk_end - p->units[u].chunk_begin;
	size_t rec_len = sizeof(struct unit_record) + (size_t)max_digests * MQ_SHA256_LEN;
	r->unit_full = malloc(rec_len);
	free(r->arena);
	r->arena = malloc((size_t)p->arena_bytes + UNIT_ARENA_SLACK);
	free(r->stage);
	r->stage = malloc((size_t)UNIT_OUTPUTS * UNIT_STAGE); /* without it, every write goes out as it comes */
	/* Without buffers this rank still reports every unit (as skipped), or rank 0 would wait forever. */
	r->unit_failed = 0;
	if (!r->unit_full || !r->arena)
		r->unit_failed = mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory for %llu bytes of buffers",
					 (unsigned long long)p->arena_bytes) != 0;
	/* GPTQ layers' units go in waves once the others are done (factor.c); the up-to-date check only hashes */
	for (int id = 0; id < p->n_units; id++)
		if (p->units[id].rank == r->rank && !r->done[id] && (r->hash_only || !p->tensors[p->units[id].tensor].gptq))
			unit_take(r, id, 1);
	if (!r->hash_only)
		gptq_waves(r);
	free(r->unit_full);
	r->unit_full = NULL;
	double t0 = mq_comm_time();
	collect_poll(r, 1);
	r->stats[MQ_STAT_T_WAIT] += mq_comm_time() - t0;
	if (r->interrupted && r->hash_only)
		mq_fail(&r->err, MQ_ERR_INTERRUPTED, "interrupted by SIGUSR1 while checking whether '%s' is up to date",
			r->output);
	else if (r->interrupted)
		mq_fail(&r->err, MQ_ERR_INTERRUPTED,
			"interrupted by SIGUSR1; the finished work units are kept in '%s' with their journal: run the same command again to resume",
			r->tmp);
	return r->err.code;
}

void unit_release(struct run *r)
{
	gptq_release(r);
	mq_gather_free(r->gather);
	source_release(r);
	free(r->arena);
	free(r->stage);
	r->stage = NULL;
}
