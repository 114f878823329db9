#include "plan.h"

#include <stdlib.h>

#include "gptq.h"
#include "lpt.h"

void mq_plan_conv_out(const struct mq_calib_info *ci, const struct mq_tensor *t, uint64_t *oh, uint64_t *ow)
{
	const uint64_t *cs = ci->shape.shape;
	*oh = (uint64_t)(((int64_t)cs[2] + 2 * ci->padding[0] - ci->dilation[0] * ((int64_t)t->shape[2] - 1) - 1) / ci->stride[0] + 1);
	*ow = (uint64_t)(((int64_t)cs[3] + 2 * ci->padding[1] - ci->dilation[1] * ((int64_t)t->shape[3] - 1) - 1) / ci->stride[1] + 1);
}

uint64_t mq_plan_conv_patches(const struct mq_calib_info *ci, const struct mq_tensor *t)
{
	uint64_t oh, ow;
	mq_plan_conv_out(ci, t, &oh, &ow);
	return oh * ow;
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

/*
 * The bytes its build holds: its Hessian (then factor), one segment's Gram
 * matrix, and one read of calibration inputs (and their patches for a Conv).
 */
uint64_t mq_plan_gptq_state_bytes(const struct mq_plan_tensor *pt, const struct mq_tensor *t)
{
	const struct mq_calib_info *ci = &pt->cinfo;
	uint64_t x = mq_gptq_layer_bytes(pt->row_elems) + pt->row_elems * pt->row_elems * 4 +
		     mq_plan_gptq_read_rows(pt, t->ndim == 4) * ci->shape.row_elems * 4;
	if (t->ndim == 4)
		x += mq_plan_conv_patches(ci, t) * pt->row_elems * 4;
	return x;
}

/* A layer's factor, on its owner: the Hessian (calibration rows × in² multiply-adds) and about 2 in³, at 16 flops a weighted byte. */
static uint64_t factor_cost(const struct mq_plan_tensor *pt, const struct mq_tensor *t)
{
	const double n = (double)pt->row_elems;
	const double rows = (double)pt->calib_rows * (t->ndim == 4 ? (double)mq_plan_conv_patches(&pt->cinfo, t) : 1.0);
	return (uint64_t)((rows * n * n + 2.0 * n * n * n) / 16.0) + 1;
}

/* A unit's sweep, its output-space sums and round to nearest's: about 8 rows × in² flops. */
static uint64_t sweep_cost(const struct mq_plan_tensor *pt, const struct mq_unit *u)
{
	const double n = (double)pt->row_elems, rows = (double)(u->row_end - u->row_begin);
	return (uint64_t)(8.0 * rows * n * n / 16.0) + 3 * rows * pt->row_bytes;
}

int mq_plan_gptq_reserve(struct mq_plan *p, const struct mq_manifest *m, uint64_t budget, uint64_t *reserve,
			 struct mq_error *err)
{
	uint64_t largest = 0;
	*reserve = 0;
	for (int i = 0; i < p->n_tensors; i++)
		if (p->tensors[i].gptq && mq_gptq_layer_bytes(p->tensors[i].row_elems) > largest)
			largest = mq_gptq_layer_bytes(p->tensors[i].row_elems);
	int worst = -1;
	for (int i = 0; i < p->n_tensors; i++) {
		struct mq_plan_tensor *pt = &p->tensors[i];
		if (!pt->gptq)
			continue;
		pt->gptq_bytes = mq_plan_gptq_state_bytes(pt, &m->tensors[i]);
		/* its build; then its factor and (on more than one rank) another layer's received meanwhile */
		const uint64_t sweep = mq_gptq_layer_bytes(pt->row_elems) + (p->n_ranks > 1 ? largest : 0);
		const uint64_t need = pt->gptq_bytes > sweep ? pt->gptq_bytes : sweep;
		if (need > *reserve) {
			*reserve = need;
			worst = i;
		}
		p->gptq_bytes = pt->gptq_bytes > p->gptq_bytes ? pt->gptq_bytes : p->gptq_bytes;
	}
	/* and room for the smallest blocks of buffers beside it (a MiB) */
	if (worst >= 0 && *reserve + (1u << 20) > budget)
		return mq_fail(err, MQ_ERR_USAGE,
			"GPTQ layer '%s' needs %llu MiB (its %llu x %llu Hessian and a segment's in float32 and its calibration reads, or its factor and, on more than one rank, another layer's), and its buffers more, beyond the memory budget of %llu MiB; raise --memory-budget, or keep it unquantized with --exclude",
			m->tensors[worst].name, (unsigned long long)((*reserve + (1u << 20) - 1) >> 20),
			(unsigned long long)p->tensors[worst].row_elems, (unsigned long long)p->tensors[worst].row_elems,
			(unsigned long long)(budget >> 20));
	return 0;
}

/*
 * GPTQ layers in waves of as many layers as ranks, longest factor first (the
 * balancer's order), so that the layers of a wave cost about the same: the
 * i-th layer of wave w is owned by rank (i + w) mod ranks. In a wave every
 * owner builds its layer's factor at once (with the ranks a short last wave
 * leaves idle, mq_plan_gptq_group); the wave's layers are then swept one
 * after another, each by every rank: unit j of a layer goes to rank
 * (owner + j) mod ranks, so the owner sweeps its first unit and a layer of
 * few units still spreads.
 */
int mq_plan_gptq_assign(struct mq_plan *p, const struct mq_manifest *m, uint64_t *load, struct mq_error *err)
{
	if (!p->n_gptq)
		return 0;
	struct mq_lpt_item *items = calloc((size_t)p->n_gptq + 1, sizeof(*items));
	uint64_t one = 0;
	p->gptq_order = calloc((size_t)p->n_gptq + 1, sizeof(int));
	if (!items || !p->gptq_order) {
		free(items);
		return mq_fail(err, MQ_ERR_INTERNAL, "out of memory");
	}
	int n = 0;
	for (int i = 0; i < p->n_tensors; i++)
		if (p->tensors[i].gptq) {
			uint64_t c = factor_cost(&p->tensors[i], &m->tensors[i]);
			items[n++] = (struct mq_lpt_item){ c, c, m->tensors[i].name, 0, i, 0 };
		}
	mq_lpt_assign(items, n, 1, &one); /* the order alone: longest first, ties by name */
	for (int k = 0; k < n; k++) {
		struct mq_plan_tensor *pt = &p->tensors[items[k].index];
		pt->gptq_wave = k / p->n_ranks;
		pt->gptq_rank = (k % p->n_ranks + pt->gptq_wave) % p->n_ranks;
		load[pt->gptq_rank] += items[k].cost;
		p->gptq_order[k] = items[k].index;
	}
	uint64_t largest = 0;
	for (int k = 0; k < n; k++)
		largest = mq_gptq_layer_bytes(p->tensors[items[k].index].row_elems) > largest
				  ? mq_gptq_layer_bytes(p->tensors[items[k].index].row_elems) : largest;
	for (int k = 0; k < n; k++) {
		const struct mq_plan_tensor *pt = &p->tensors[items[k].index];
		for (int j = 0; j < pt->n_units; j++) {
			const int rank = (int)(((uint64_t)pt->gptq_rank + (uint64_t)j) % (uint64_t)p->n_ranks);
			mq_plan_give(p, pt->first_unit + j, rank);
			load[rank] += sweep_cost(pt, &p->units[pt->first_unit + j]);
		}
		struct mq_rank_load *l = &p->ranks[pt->gptq_rank];
		const uint64_t sweep = mq_gptq_layer_bytes(pt->row_elems) + (p->n_ranks > 1 ? largest : 0);
		const uint64_t held = pt->gptq_bytes > sweep ? pt->gptq_bytes : sweep;
		l->gptq_bytes = held > l->gptq_bytes ? held : l->gptq_bytes;
	}
	/* a rank that owns none still helps build (a segment's matrix and a read) and receives factors */
	for (int r = 0; r < p->n_ranks && p->n_ranks > 1; r++)
		p->ranks[r].gptq_bytes = p->ranks[r].gptq_bytes > 2 * largest ? p->ranks[r].gptq_bytes : 2 * largest;
	free(items);
	return 0;
}

/*
 * The ranks that build layer t's Hessian: its owner first, then the ranks
 * that own no layer of its wave, dealt out over the wave's layers in order
 * (the i-th of them to the layer at position i mod m of the wave's m). With
 * as many layers as ranks a group is its owner alone; with one layer it is
 * every rank. Segment s of the layer's calibration rows is made by member
 * s mod count.
 */
int mq_plan_gptq_group(const struct mq_plan *p, int t, int *members)
{
	const int w = p->tensors[t].gptq_wave;
	int first = -1, m = 0, pos = -1, n = 0;
	for (int k = 0; k < p->n_gptq; k++)
		if (p->tensors[p->gptq_order[k]].gptq_wave == w) {
			if (first < 0)
				first = k;
			if (p->gptq_order[k] == t)
				pos = m;
			m++;
		}
	members[n++] = p->tensors[t].gptq_rank;
	int idle = 0;
	for (int r = 0; r < p->n_ranks; r++) {
		int owns = 0;
		for (int k = first; k < first + m && !owns; k++)
			owns = p->tensors[p->gptq_order[k]].gptq_rank == r;
		if (owns)
			continue;
		if (idle++ % m == pos)
			members[n++] = r;
	}
	return n;
}
