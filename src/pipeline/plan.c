#include "plan.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "lpt.h"

static void chunking(const struct mq_tensor *t, struct mq_plan_tensor *pt)
{
	uint64_t esz = mq_dtype_size(t->dtype);
	if (t->ndim == 0) {
		pt->n_rows = 1;
		pt->row_elems = 1;
	} else {
		pt->n_rows = t->shape[0];
		pt->row_elems = 1;
		for (int d = 1; d < t->ndim; d++)
			pt->row_elems *= t->shape[d];
	}
	pt->row_bytes = pt->row_elems * esz;
	if (t->nbytes == 0 || pt->row_bytes == 0) {
		pt->n_chunks = 0;
		pt->chunk_rows = 1;
		return;
	}
	pt->chunk_rows = MQ_CHUNK_BYTES / pt->row_bytes;
	if (pt->chunk_rows == 0)
		pt->chunk_rows = 1;
	pt->n_chunks = (pt->n_rows + pt->chunk_rows - 1) / pt->chunk_rows;
}

/* Why s cannot store tensor pt (n_rows x row_elems, with its spec) as vLLM loads it, into why; 0 if it can. */
static int unfit(const struct mq_plan_tensor *pt, const struct mq_scheme_traits *s, int packed_zp, char *why, size_t cap)
{
	if (pt->q.granularity == MQ_GRAN_GROUP && pt->row_elems % pt->q.group_size)
		snprintf(why, cap, "its %llu inputs are not a multiple of the group size %llu",
			 (unsigned long long)pt->row_elems, (unsigned long long)pt->q.group_size);
	else if (pt->row_elems % (uint64_t)s->pack)
		snprintf(why, cap, "its %llu inputs are not a multiple of %d (%d-bit values, %d to a 32-bit word)",
			 (unsigned long long)pt->row_elems, s->pack, s->bits, s->pack);
	else if (packed_zp && pt->n_rows % (uint64_t)s->pack)
		snprintf(why, cap, "its %llu outputs are not a multiple of %d (zero points are packed along the outputs)",
			 (unsigned long long)pt->n_rows, s->pack);
	else
		return 0;
	return 1;
}

/*
 * A quantized tensor's parameter groups per row, and the rows its units and
 * blocks start on (whole words of packed zero points). A shape the scheme
 * cannot store loadably is an error naming the rule, or with --keep-unfit
 * the tensor is kept as it is.
 */
static int plan_groups(struct mq_plan *p, const struct mq_tensor *t, const struct mq_options *o,
		       struct mq_plan_tensor *pt, struct mq_error *err)
{
	const struct mq_scheme_traits *si = mq_scheme_get(pt->q.scheme);
	const struct mq_companion *zp = mq_scheme_part(si, MQ_PART_ZERO_POINT);
	int packed_zp = zp && zp->shape_rule == MQ_PART_SHAPE_GROUPS_PACKED;
	char why[160];
	pt->row_groups = 1;
	pt->row_align = 1;
	pt->unit_chunks = 1;
	if (pt->action != MQ_ACT_QUANT || si->pack == 1)
		return 0;
	if (unfit(pt, si, packed_zp, why, sizeof(why))) {
		if (!o->keep_unfit)
			return mq_fail(err, MQ_ERR_INPUT,
				"tensor '%s' [%llu, %llu]: the %s scheme cannot store it as vLLM loads it: %s; choose another --group-size, keep it with --exclude '%s', or keep every such weight unquantized with --keep-unfit",
				t->name, (unsigned long long)pt->n_rows, (unsigned long long)pt->row_elems, si->name, why,
				t->name);
		free(pt->reason);
		pt->reason = mq_plan_fmt("kept by --keep-unfit: %s", why);
		pt->action = MQ_ACT_KEEP;
		p->n_quantized--;
		return pt->reason ? 0 : mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	if (pt->q.granularity == MQ_GRAN_GROUP)
		pt->row_groups = pt->row_elems / pt->q.group_size;
	if (packed_zp) { /* units of whole chunks (the source digests' own) that end on whole words */
		pt->row_align = (uint64_t)si->pack;
		while (pt->unit_chunks * pt->chunk_rows % pt->row_align)
			pt->unit_chunks++;
	}
	return 0;
}

char *mq_plan_layer_name(const char *weight)
{
	size_t n = strlen(weight);
	if (n > 7 && strcmp(weight + n - 7, ".weight") == 0)
		n -= 7;
	char *s = malloc(n + 1);
	if (s) {
		memcpy(s, weight, n);
		s[n] = '\0';
	}
	return s;
}

static int add_out(struct mq_plan *p, int *cap, const char *name, const char *suffix, enum mq_dtype dt,
		   int ndim, const uint64_t *shape, int tensor, enum mq_role role, struct mq_error *err)
{
	if (p->n_out == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		struct mq_out_tensor *o = realloc(p->out, (size_t)*cap * sizeof(*o));
		if (!o)
			return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
		p->out = o;
	}
	struct mq_out_tensor *o = &p->out[p->n_out];
	memset(o, 0, sizeof(*o));
	size_t n = strlen(name);
	o->name = malloc(n + strlen(suffix) + 1);
	if (!o->name)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	memcpy(o->name, name, n);
	strcpy(o->name + n, suffix);
	o->dtype = dt;
	o->ndim = ndim;
	memcpy(o->shape, shape, (size_t)ndim * sizeof(*shape));
	o->tensor = tensor;
	o->role = role;
	p->n_out++;
	return 0;
}

static int cmp_layout(const void *a, const void *b)
{
	const struct mq_out_tensor *x = a, *y = b;
	size_t sx = mq_dtype_size(x->dtype), sy = mq_dtype_size(y->dtype);
	if (sx != sy)
		return sx > sy ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* The name of a weight without its trailing "weight" ("P.weight" -> "P."), malloc'd. */
static char *weight_stem(const char *name)
{
	size_t n = strlen(name), w = strlen("weight");
	if (n >= w && strcmp(name + n - w, "weight") == 0)
		n -= w;
	char *s = malloc(n + 1);
	if (s) {
		memcpy(s, name, n);
		s[n] = '\0';
	}
	return s;
}

/* The static activation parameters of a calibrated layer with an observer. */
static int act_outputs(struct mq_plan *p, int *cap, const char *base, int i, struct mq_error *err)
{
	const struct mq_plan_tensor *pt = &p->tensors[i];
	uint64_t one = 1;
	if (pt->calib != MQ_CALIB_STATIC || pt->act_rank < 0)
		return 0;
	int rc = add_out(p, cap, base, "input_scale", MQ_DTYPE_F32, 1, &one, i, MQ_ROLE_INPUT_SCALE, err);
	if (!rc && p->act_asymmetric)
		rc = add_out(p, cap, base, "input_zero_point", MQ_DTYPE_I8, 1, &one, i, MQ_ROLE_INPUT_ZERO_POINT, err);
	return rc;
}

/* Output tensors for one input tensor: the tensor itself, or the scheme's outputs (+ activation parameters). */
static int plan_outputs(struct mq_plan *p, const struct mq_manifest *m, int i, int *cap, struct mq_error *err)
{
	static const enum mq_role role[] = { [MQ_PART_DATA] = MQ_ROLE_WEIGHT, [MQ_PART_SCALE] = MQ_ROLE_SCALE,
					     [MQ_PART_ZERO_POINT] = MQ_ROLE_ZERO_POINT, [MQ_PART_SHAPE] = MQ_ROLE_SHAPE };
	const struct mq_tensor *t = &m->tensors[i];
	const struct mq_spec *q = &p->tensors[i].q;
	const struct mq_scheme_traits *si = mq_scheme_get(q->scheme);
	if (p->tensors[i].action == MQ_ACT_KEEP)
		return add_out(p, cap, t->name, "", t->dtype, t->ndim, t->shape, i, MQ_ROLE_COPY, err);
	char *base = weight_stem(t->name);
	if (!base)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	int rc = 0;
	for (int k = 0; k < si->n_outputs && !rc; k++) {
		const struct mq_companion *c = &si->outputs[k];
		uint64_t shape[MQ_MAX_DIMS];
		int nd = mq_companion_shape(si, c, q->granularity, q->group_size, t->ndim, t->shape, shape);
		rc = add_out(p, cap, c->suffix ? base : t->name, c->suffix ? c->suffix : "",
			     mq_companion_dtype(si, c, t->dtype), nd, shape, i, role[c->part], err);
	}
	if (!rc)
		rc = act_outputs(p, cap, base, i, err);
	free(base);
	return rc;
}

static int layout(struct mq_plan *p, const struct mq_manifest *m, struct mq_error *err)
{
	if (p->n_out > 1)
		qsort(p->out, (size_t)p->n_out, sizeof(*p->out), cmp_layout);
	uint64_t off = 0;
	for (int k = 0; k < p->n_out; k++) {
		struct mq_out_tensor *o = &p->out[k];
		int ovf;
		uint64_t numel = mq_shape_numel(o->shape, o->ndim, &ovf), size = mq_dtype_size(o->dtype);
		if (ovf || (numel && size > (MQ_PLAN_MAX_BYTES - off) / numel))
			return mq_fail(err, MQ_ERR_INPUT,
				"the output would hold more than %llu bytes (2^62) of tensor data, at tensor '%s': the input's shapes are corrupt or hostile",
				(unsigned long long)MQ_PLAN_MAX_BYTES, o->name);
		o->begin = off;
		o->end = off + numel * size;
		off = o->end;
		struct mq_plan_tensor *pt = &p->tensors[o->tensor];
		pt->bytes_out += o->end - o->begin;
		switch (o->role) {
		case MQ_ROLE_COPY:
		case MQ_ROLE_WEIGHT: pt->out_data = k; break;
		case MQ_ROLE_SCALE: pt->out_scale = k; break;
		case MQ_ROLE_ZERO_POINT: pt->out_zero_point = k; break;
		case MQ_ROLE_INPUT_SCALE: pt->out_input_scale = k; break;
		case MQ_ROLE_INPUT_ZERO_POINT: pt->out_input_zero_point = k; break;
		case MQ_ROLE_SHAPE: pt->out_shape = k; break;
		}
	}
	p->bytes_out = off;
	/* Scale and zero-point names must not shadow an input tensor. */
	for (int k = 0; k < p->n_out; k++) {
		const struct mq_out_tensor *o = &p->out[k];
		if (o->role != MQ_ROLE_COPY && o->role != MQ_ROLE_WEIGHT) {
			int j = mq_manifest_find(m, o->name);
			if (j >= 0)
				return mq_fail(err, MQ_ERR_INPUT,
					"input tensor '%s' has the name of the %s of '%s'; is the model already quantized? (exclude one of them with --exclude)",
					o->name, o->role == MQ_ROLE_SCALE ? "scale" : o->role == MQ_ROLE_ZERO_POINT ? "zero point"
						: "activation parameters",
					m->tensors[o->tensor].name);
		}
	}
	return 0;
}

static int make_units(struct mq_plan *p, struct mq_error *err)
{
	uint64_t total = 0;
	for (int i = 0; i < p->n_tensors; i++) {
		const struct mq_plan_tensor *pt = &p->tensors[i];
		int whole = pt->action == MQ_ACT_QUANT && pt->q.per_tensor;
		total += whole ? (pt->n_chunks ? 1 : 0) : (pt->n_chunks + pt->unit_chunks - 1) / pt->unit_chunks;
	}
	if (total > 100000000u)
		return mq_fail(err, MQ_ERR_INPUT, "model too large to plan (%llu units)", (unsigned long long)total);
	p->units = calloc((size_t)total + 1, sizeof(*p->units));
	if (!p->units)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	for (int i = 0; i < p->n_tensors; i++) {
		struct mq_plan_tensor *pt = &p->tensors[i];
		int whole = pt->action == MQ_ACT_QUANT && pt->q.per_tensor;
		uint64_t step = whole ? pt->n_chunks : pt->unit_chunks;
		pt->first_unit = p->n_units;
		for (uint64_t c = 0; c < pt->n_chunks; c += step) {
			struct mq_unit *u = &p->units[p->n_units++];
			u->tensor = i;
			u->chunk_begin = c;
			u->chunk_end = c + step < pt->n_chunks ? c + step : pt->n_chunks;
			u->row_begin = c * pt->chunk_rows;
			u->row_end = u->chunk_end * pt->chunk_rows;
			if (u->row_end > pt->n_rows)
				u->row_end = pt->n_rows;
			uint64_t rows = u->row_end - u->row_begin, bytes = rows * pt->row_bytes;
			u->cost = pt->action == MQ_ACT_QUANT ? 3 * bytes : bytes;
			if (pt->calib == MQ_CALIB_STATIC) /* activations read, and three GEMMs (~16 flops a byte) */
				u->cost += pt->calib_rows * pt->cinfo.shape.row_elems * 4 +
					   6 * pt->calib_rows * rows * pt->row_elems / 16;
		}
		pt->n_units = p->n_units - pt->first_unit;
	}
	return 0;
}

void mq_plan_give(struct mq_plan *p, int id, int rank)
{
	struct mq_unit *u = &p->units[id];
	const struct mq_plan_tensor *pt = &p->tensors[u->tensor];
	u->rank = rank;
	struct mq_rank_load *l = &p->ranks[rank];
	l->n_units++;
	uint64_t rows = u->row_end - u->row_begin;
	l->bytes_in += rows * pt->row_bytes;
	l->bytes_out += pt->n_rows ? pt->bytes_out * rows / pt->n_rows : pt->bytes_out;
}

static int assign(struct mq_plan *p, const struct mq_manifest *m, struct mq_error *err)
{
	p->ranks = calloc((size_t)p->n_ranks, sizeof(*p->ranks));
	struct mq_lpt_item *items = calloc((size_t)p->n_units + 1, sizeof(*items));
	uint64_t *load = calloc((size_t)p->n_ranks, sizeof(*load));
	if (!p->ranks || !items || !load) {
		free(items);
		free(load);
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	/* GPTQ layers first (plan_gptq.c): their owners and their units, and the load they put on each rank */
	int rc = mq_plan_gptq_assign(p, m, load, err);
	int n = 0;
	for (int u = 0; u < p->n_units && !rc; u++) {
		const struct mq_unit *un = &p->units[u];
		if (p->tensors[un->tensor].gptq)
			continue;
		items[n++] = (struct mq_lpt_item){ un->cost, un->cost ? un->cost : 1, m->tensors[un->tensor].name,
						   un->chunk_begin, u, 0 };
	}
	mq_lpt_assign(items, n, p->n_ranks, load);
	for (int k = 0; k < n; k++)
		mq_plan_give(p, items[k].index, items[k].bin);
	for (int r = 0; r < p->n_ranks; r++)
		p->ranks[r].cost = load[r];
	free(items);
	free(load);
	return rc;
}

static uint64_t align_up(uint64_t n)
{
	return (n + MQ_ARENA_ALIGN - 1) & ~(uint64_t)(MQ_ARENA_ALIGN - 1);
}

void mq_plan_block_regions(const struct mq_plan *p, const struct mq_plan_tensor *pt, enum mq_dtype dt,
			   uint64_t rows, struct mq_block_regions *b)
{
	const struct mq_scheme_traits *si = mq_scheme_get(pt->q.scheme);
	uint64_t groups = rows * pt->row_groups, off = 0;
	b->src = (size_t)off;
	off += align_up(rows * pt->row_bytes);
	b->x = dt == MQ_DTYPE_F32 ? b->src : (size_t)off;
	off += dt == MQ_DTYPE_F32 ? 0 : align_up(rows * pt->row_elems * 4);
	b->q = (size_t)off;
	off += align_up(mq_scheme_bytes(si, rows * pt->row_elems));
	b->params = (size_t)off;
	off += align_up(groups * sizeof(struct mq_qparams));
	b->scales = (size_t)off; /* at most 4 bytes a group */
	off += align_up(groups * 4);
	b->zero_points = (size_t)off; /* at most 1 byte a group (I8, or packed words) */
	off += align_up(groups);
	b->what = (size_t)off;
	off += pt->calib == MQ_CALIB_STATIC ? align_up(rows * pt->row_elems * 4) : 0;
	/* GPTQ: the values as quantized, round to nearest's result and parameters, the sweep's scratch */
	const int gptq = pt->gptq;
	const uint64_t n = pt->row_elems;
	b->xq = (size_t)off;
	off += gptq ? align_up(rows * n * 4) : 0;
	b->rtn = (size_t)off;
	off += gptq ? align_up(rows * n * 4) : 0;
	b->rtn_params = (size_t)off;
	off += gptq ? align_up(groups * sizeof(struct mq_qparams)) : 0;
	b->scratch = (size_t)off;
	if (gptq) {
		uint64_t sweep = mq_gptq_sweep_bytes(n, rows, p->gptq_block), quad = mq_gptq_quad_bytes(n, rows, 3);
		off += align_up(sweep > quad ? sweep : quad);
	}
	b->end = (size_t)off;
}

/*
 * The bytes one row needs, every region rounded up: rows * this bounds the
 * regions of a block of rows (rows * ceil(a / 64) >= ceil(rows * a / 64)).
 */
static uint64_t row_bytes_budget(const struct mq_plan *p, const struct mq_plan_tensor *pt, enum mq_dtype dt)
{
	struct mq_block_regions one;
	mq_plan_block_regions(p, pt, dt, 1, &one);
	return one.end;
}

/* Block sizes within the budget, and the per-rank buffers they need. */
static int size_buffers(struct mq_plan *p, const struct mq_manifest *m, uint64_t budget, struct mq_error *err)
{
	p->arena_bytes = 0;
	uint64_t reserve = 0; /* GPTQ's Hessians and factors first: the buffers get what they leave */
	if (mq_plan_gptq_reserve(p, m, budget, &reserve, err))
		return err->code;
	char held[96] = "";
	if (reserve)
		snprintf(held, sizeof(held), " (%llu MiB of the %llu MiB are GPTQ's Hessians and factors)",
			 (unsigned long long)((reserve + (1u << 20) - 1) >> 20), (unsigned long long)(budget >> 20));
	budget -= reserve;
	for (int i = 0; i < p->n_tensors; i++) {
		struct mq_plan_tensor *pt = &p->tensors[i];
		const struct mq_tensor *t = &m->tensors[i];
		if (pt->n_chunks == 0)
			continue;
		if (pt->action == MQ_ACT_KEEP) {
			/* copies stream raw bytes through the arena, a block at a time */
			uint64_t b = pt->chunk_rows * pt->row_bytes;
			b = b < t->nbytes ? b : t->nbytes;
			b = b < MQ_BLOCK_BYTES ? b : MQ_BLOCK_BYTES;
			pt->block_rows = 0;
			p->arena_bytes = b > p->arena_bytes ? b : p->arena_bytes;
			continue;
		}
		uint64_t per_row = row_bytes_budget(p, pt, t->dtype), unit_rows = pt->unit_chunks * pt->chunk_rows;
		if (per_row * pt->row_align > budget) {
			char what[80] = "one row needs";
			if (pt->row_align > 1) /* the least a block holds */
				snprintf(what, sizeof(what), "the %llu rows of a word of packed zero points need",
					 (unsigned long long)pt->row_align);
			return mq_fail(err, MQ_ERR_USAGE,
				"tensor '%s': %s %llu bytes of buffers, more than the memory budget of %llu MiB leaves%s; raise --memory-budget",
				t->name, what, (unsigned long long)(per_row * pt->row_align), (unsigned long long)(budget >> 20), held);
		}
		uint64_t rows;
		if (pt->calib == MQ_CALIB_STATIC && !pt->gptq) {
			/* output-space error needs a whole unit of rows, and its dequantized copy, at once */
			rows = unit_rows < pt->n_rows ? unit_rows : pt->n_rows;
			if (per_row * rows > budget)
				return mq_fail(err, MQ_ERR_USAGE,
					"calibrated layer '%s' needs %llu MiB of buffers, more than the memory budget of %llu MiB; raise --memory-budget",
					t->name, (unsigned long long)((per_row * rows + (1u << 20) - 1) >> 20),
					(unsigned long long)(budget >> 20));
		} else {
			rows = budget / per_row;
			/* cache-sized blocks; the per-row overhead counts for the short rows of cast norms and biases */
			uint64_t target = (pt->gptq ? MQ_BLOCK_BYTES : MQ_RTN_BLOCK_BYTES) / (pt->row_bytes + MQ_ARENA_ROW_EXTRA);
			rows = rows < target ? rows : target;
			rows = rows < unit_rows ? rows : unit_rows; /* a block never spans two units */
			rows -= rows % pt->row_align;
			rows = rows ? rows : pt->row_align;
		}
		pt->block_rows = rows;
		struct mq_block_regions b;
		mq_plan_block_regions(p, pt, t->dtype, rows, &b);
		p->arena_bytes = b.end > p->arena_bytes ? b.end : p->arena_bytes;
	}
	return 0;
}

/* Calibration of one selected layer: its state, and the shape checks against the weight. */
static int plan_calib(struct mq_plan *p, const struct mq_manifest *m, const struct mq_options *o, int i,
		      const struct mq_calib_info *ci, struct mq_error *err)
{
	const struct mq_tensor *t = &m->tensors[i];
	struct mq_plan_tensor *pt = &p->tensors[i];
	if (!ci->present) {
		pt->calib = MQ_CALIB_MISSING;
		p->n_weights_only++;
		return 0;
	}
	const struct mq_calib_shape *cs = &ci->shape;
	int ok = cs->ndim == t->ndim && cs->shape[1] == t->shape[1];
	if (ok && t->ndim == 4) {
		ok = ci->groups == 1 && ci->stride[0] > 0 && ci->stride[1] > 0 && ci->dilation[0] > 0 &&
		     ci->dilation[1] > 0 && ci->padding[0] >= 0 && ci->padding[1] >= 0 &&
		     (int64_t)cs->shape[2] + 2 * ci->padding[0] >= ci->dilation[0] * ((int64_t)t->shape[2] - 1) + 1 &&
		     (int64_t)cs->shape[3] + 2 * ci->padding[1] >= ci->dilation[1] * ((int64_t)t->shape[3] - 1) + 1;
	}
	if (!ok) {
		char ws[96], as[96];
		int k = snprintf(ws, sizeof(ws), "[");
		for (int d = 0; d < t->ndim; d++)
			k += snprintf(ws + k, sizeof(ws) - (size_t)k, d ? ", %llu" : "%llu", (unsigned long long)t->shape[d]);
		snprintf(ws + k, sizeof(ws) - (size_t)k, "]");
		k = snprintf(as, sizeof(as), "[");
		for (int d = 0; d < cs->ndim; d++)
			k += snprintf(as + k, sizeof(as) - (size_t)k, d ? ", %llu" : "%llu", (unsigned long long)cs->shape[d]);
		snprintf(as + k, sizeof(as) - (size_t)k, "]");
		return mq_fail(err, MQ_ERR_INPUT,
			"tensor '%s' has shape %s but its calibration activations have shape %s%s (recapture them from this model)",
			t->name, ws, as, t->ndim == 4 && ci->groups != 1 ? " and grouped convolution is not supported" : "");
	}
	pt->calib = MQ_CALIB_STATIC;
	pt->cinfo = *ci;
	pt->calib_rows = o->calib_samples && o->calib_samples < cs->shape[0] ? o->calib_samples : cs->shape[0];
	pt->act_rank = o->act_none || mq_scheme_get(pt->q.scheme)->acts == MQ_ACTS_NONE ? -1 : 0; /* owner assigned below */
	pt->gptq = o->method == MQ_METHOD_GPTQ;
	p->n_calibrated++;
	p->n_gptq += pt->gptq;
	return 0;
}

/* A layer without calibration is an error listing them all, unless --calib-missing=weights-only. */
static int check_missing(const struct mq_plan *p, const struct mq_manifest *m, const struct mq_options *o,
			 struct mq_error *err)
{
	if (!p->n_weights_only || o->calib_weights_only)
		return 0;
	struct mq_buf b = MQ_BUF_INIT;
	int shown = 0;
	for (int i = 0; i < p->n_tensors; i++) {
		if (p->tensors[i].calib != MQ_CALIB_MISSING)
			continue;
		if (shown++ < 8) {
			char *layer = mq_plan_layer_name(m->tensors[i].name);
			mq_buf_addf(&b, "%s'%s'", shown > 1 ? ", " : "", layer ? layer : "?");
			free(layer);
		}
	}
	if (shown > 8)
		mq_buf_addf(&b, " and %d more", shown - 8);
	mq_fail(err, MQ_ERR_INPUT,
		"'%s' has no calibration for %d selected layer%s: %s; capture them, exclude them with --exclude, or pass --calib-missing=weights-only",
		o->calib, shown, shown == 1 ? "" : "s", b.data ? b.data : "");
	mq_buf_release(&b);
	return err ? err->code : MQ_ERR_INPUT;
}

/* Activation observers: one per calibrated layer, longest first, ties by name. */
static int assign_act(struct mq_plan *p, const struct mq_manifest *m, struct mq_error *err)
{
	struct mq_lpt_item *items = calloc((size_t)p->n_tensors + 1, sizeof(*items));
	uint64_t *load = calloc((size_t)p->n_ranks, sizeof(*load));
	if (!items || !load) {
		free(items);
		free(load);
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	int n = 0;
	for (int i = 0; i < p->n_tensors; i++) {
		const struct mq_plan_tensor *pt = &p->tensors[i];
		uint64_t cost = pt->calib_rows * pt->cinfo.shape.row_elems * 4 + 1; /* the activations it reads */
		if (pt->calib == MQ_CALIB_STATIC && pt->act_rank >= 0)
			items[n++] = (struct mq_lpt_item){ cost, cost, m->tensors[i].name, 0, i, 0 };
	}
	mq_lpt_assign(items, n, p->n_ranks, load);
	for (int k = 0; k < n; k++)
		p->tensors[items[k].index].act_rank = items[k].bin;
	free(items);
	free(load);
	return 0;
}

static int build_plan(const struct mq_manifest *m, const struct mq_options *o, int n_ranks,
			      const struct mq_calib_info *calib, const struct mq_plan_choice *mix, struct mq_plan *p,
			      struct mq_error *err);

int mq_plan_spec_fits(const struct mq_plan_tensor *pt, const struct mq_tensor *t, const struct mq_spec *q)
{
	const struct mq_scheme_traits *si = mq_scheme_get(q->scheme);
	const struct mq_companion *zp = mq_scheme_part(si, MQ_PART_ZERO_POINT);
	struct mq_plan_tensor c = *pt;
	char why[160];
	c.q = *q;
	if ((si->select == MQ_SELECT_LINEAR && t->ndim != 2) || !mq_dtype_is_float(t->dtype))
		return 0;
	return si->pack == 1 || !unfit(&c, si, zp && zp->shape_rule == MQ_PART_SHAPE_GROUPS_PACKED, why, sizeof(why));
}

uint64_t mq_plan_spec_bytes(const struct mq_tensor *t, const struct mq_spec *q)
{
	const struct mq_scheme_traits *si = mq_scheme_get(q->scheme);
	uint64_t total = 0;
	for (int k = 0; k < si->n_outputs; k++) {
		const struct mq_companion *c = &si->outputs[k];
		uint64_t shape[MQ_MAX_DIMS];
		int ovf, nd = mq_companion_shape(si, c, q->granularity, q->group_size, t->ndim, t->shape, shape);
		total += mq_shape_numel(shape, nd, &ovf) * mq_dtype_size(mq_companion_dtype(si, c, t->dtype));
	}
	return total;
}

/* A tensor's spec: the run's, or a mixed plan's choice (before it, a cast's: measuring writes nothing). */
static int tensor_spec(struct mq_plan *p, const struct mq_options *o, const struct mq_plan_choice *mix, int i)
{
	struct mq_plan_tensor *pt = &p->tensors[i];
	pt->q = p->q;
	if (!mq_options_mixed(o) || pt->action != MQ_ACT_QUANT)
		return 0;
	if (!mix) {
		pt->q = (struct mq_spec){ MQ_SCHEME_BF16, 0, MQ_GRAN_NONE, 0 };
		return 0;
	}
	if (mix->chosen[i] >= 0) {
		pt->q = mix->spec[mix->chosen[i]];
		return 0;
	}
	free(pt->reason);
	pt->reason = mix->gate[i] == 2 ? mq_plan_fmt("--min-sqnr %.2f: no candidate reaches it", mix->floor)
				       : mq_plan_fmt("none of --candidates can store it as vLLM loads it");
	pt->action = MQ_ACT_KEEP;
	p->n_quantized--;
	return pt->reason ? 0 : -1;
}

int mq_plan_build(const struct mq_manifest *m, const struct mq_options *o, int n_ranks,
		  const struct mq_calib_info *calib, struct mq_plan *p, struct mq_error *err)
{
	return build_plan(m, o, n_ranks, calib, NULL, p, err);
}

int mq_plan_build_mixed(const struct mq_manifest *m, const struct mq_options *o, int n_ranks,
			const struct mq_calib_info *calib, const struct mq_plan_choice *mix, struct mq_plan *p,
			struct mq_error *err)
{
	return build_plan(m, o, n_ranks, calib, mix, p, err);
}

static int build_plan(const struct mq_manifest *m, const struct mq_options *o, int n_ranks,
			      const struct mq_calib_info *calib, const struct mq_plan_choice *mix, struct mq_plan *p,
			      struct mq_error *err)
{
	memset(p, 0, sizeof(*p));
	MQ_ASSERT(n_ranks > 0);
	p->n_ranks = n_ranks;
	p->mix = mix;
	p->q.scheme = o->scheme;
	/* per tensor only where the scheme has that granularity (options.c refuses it elsewhere) */
	p->q.per_tensor = mq_scheme_get(o->scheme)->granularities & MQ_GRAN_BIT(MQ_GRAN_TENSOR) ? o->per_tensor : 0;
	p->q.granularity = mq_scheme_granularity(mq_scheme_get(o->scheme), p->q.per_tensor, o->group_size);
	p->q.group_size = p->q.granularity != MQ_GRAN_GROUP ? 0 : o->group_size > 0 ? (uint64_t)o->group_size : MQ_GROUP_DEFAULT;
	p->act_asymmetric = o->act_asymmetric;
	p->gptq_block = o->gptq.block ? o->gptq.block : MQ_GPTQ_BLOCK_DEFAULT;
	p->n_tensors = m->n_tensors;
	p->tensors = calloc((size_t)m->n_tensors + 1, sizeof(*p->tensors));
	if (!p->tensors)
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	int cap = 0, rc = 0;
	for (int i = 0; i < m->n_tensors && !rc; i++) {
		struct mq_plan_tensor *pt = &p->tensors[i];
		pt->src = i;
		pt->out_data = pt->out_scale = pt->out_zero_point = -1;
		pt->out_input_scale = pt->out_input_zero_point = pt->out_shape = -1;
		pt->act_rank = pt->gptq_rank = -1;
		pt->reason = mq_plan_select(&m->tensors[i], o, &pt->action);
		p->n_quantized += pt->action == MQ_ACT_QUANT;
		if (!pt->reason || tensor_spec(p, o, mix, i))
			return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
		chunking(&m->tensors[i], pt);
		if (plan_groups(p, &m->tensors[i], o, pt, err))
			return err->code;
		if (m->tensors[i].nbytes > MQ_PLAN_MAX_BYTES - p->bytes_in)
			return mq_fail(err, MQ_ERR_INPUT,
				"the input tensors hold more than %llu bytes (2^62) of data, at tensor '%s': the input's shapes are corrupt or hostile",
				(unsigned long long)MQ_PLAN_MAX_BYTES, m->tensors[i].name);
		p->bytes_in += m->tensors[i].nbytes;
		if (calib && pt->action == MQ_ACT_QUANT)
			rc = plan_calib(p, m, o, i, &calib[i], err);
		if (!rc)
			rc = plan_outputs(p, m, i, &cap, err);
	}
	if (!rc && calib)
		rc = check_missing(p, m, o, err);
	if (!rc && calib)
		rc = assign_act(p, m, err);
	if (!rc)
		rc = layout(p, m, err);
	if (!rc)
		rc = size_buffers(p, m, o->memory_budget, err);
	if (!rc)
		rc = make_units(p, err);
	if (!rc)
		rc = assign(p, m, err);
	return rc;
}

void mq_plan_release(struct mq_plan *p)
{
	for (int i = 0; i < p->n_tensors; i++)
		free(p->tensors[i].reason);
	free(p->tensors);
	for (int k = 0; k < p->n_out; k++)
		free(p->out[k].name);
	free(p->out);
	free(p->units);
	free(p->ranks);
	free(p->gptq_order);
	memset(p, 0, sizeof(*p));
}
