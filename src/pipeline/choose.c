#include "choose.h"

#include <stdlib.h>
#include <string.h>

#include "budget.h"
#include "folder.h"
#include "metadata.h"
#include "outspace.h"
#include "prepare.h"
#include "source.h"
#include "unit.h"

/* This rank's buffers for the pass, and the sums it fills. */
struct measure {
	const struct mq_plan_choice *mix;
	double *sums;          /* per unit: the signal, then each candidate's noise */
	float *row;            /* one row widened to float32 */
	void *src;             /* a block of source rows, where they are copied rather than mapped */
	void *q;               /* one row's codes */
	struct mq_qparams *p;  /* one row's group parameters */
	int unit;              /* the unit in hand */
	/* --calib: the sampled rows of a calibrated tensor are gathered and measured in output space */
	struct outspace_act *act; /* per tensor x candidate: how it quantizes the activations */
	struct mq_layer_state *state; /* and the observed parameters (the chosen ones become r->layers) */
	float *w;              /* up to batch sampled rows, as float32 */
	float *wh[MQ_MAX_CANDIDATES]; /* and as each candidate dequantizes them */
	uint64_t batch;
};

/*
 * Sampled rows gathered per output-space measurement: with the candidates'
 * copies at most 8 MiB (a number of the shapes and candidates only, so the
 * same batches for any rank count).
 */
#define BATCH_BYTES (8u << 20)
static uint64_t batch_rows(uint64_t row_elems, int n_cand)
{
	uint64_t b = BATCH_BYTES / (row_elems * 4 * (uint64_t)(n_cand + 1));
	return b ? b : 1;
}

/* Output space: the gathered rows of unit ms->unit against each candidate's, added to signal and noise. */
static int flush(struct run *r, struct measure *ms, const int *fits, uint64_t nb, double *signal, double *noise)
{
	const int t = r->plan.units[ms->unit].tensor, K = ms->mix->n_candidates;
	const float *wh[MQ_MAX_CANDIDATES];
	for (int k = 0; k < K; k++)
		wh[k] = fits[k] ? ms->wh[k] : NULL;
	return nb ? outspace_candidates(r, t, ms->w, wh, ms->act + (size_t)t * K, K, nb, signal, noise) : 0;
}

/* The candidates' specs and names, and per quantized tensor what each would store it in (UINT64_MAX: unfit). */
static int setup(struct run *r, struct mq_plan_choice *mix)
{
	const struct mq_options *o = r->opt;
	const int n = r->man.n_tensors, K = o->n_candidates;
	mix->n_candidates = K;
	for (int k = 0; k < K; k++) {
		const struct mq_candidate *c = &o->candidates[k];
		const struct mq_scheme_traits *si = mq_scheme_get(c->scheme);
		enum mq_granularity g = mq_scheme_granularity(si, 0, c->group_size);
		mix->spec[k] = (struct mq_spec){ c->scheme, 0, g, g == MQ_GRAN_GROUP ? (uint64_t)c->group_size : 0 };
		mq_candidate_name(c, mix->name[k], sizeof(mix->name[k]));
	}
	mix->floor = o->min_sqnr;
	mix->output_space = o->calib != NULL;
	mix->gate = calloc((size_t)n + 1, 1);
	mix->chosen = malloc(((size_t)n + 1) * sizeof(int));
	mix->bytes = malloc(((size_t)n * K + 1) * sizeof(uint64_t));
	mix->noise = calloc((size_t)n * K + 1, sizeof(double));
	mix->signal = calloc((size_t)n + 1, sizeof(double));
	if (!mix->gate || !mix->chosen || !mix->bytes || !mix->noise || !mix->signal)
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	for (int i = 0; i < n; i++) {
		const struct mq_plan_tensor *pt = &r->plan.tensors[i];
		mix->chosen[i] = -1;
		for (int k = 0; k < K; k++)
			mix->bytes[(size_t)i * K + k] = pt->action == MQ_ACT_QUANT &&
							mq_plan_spec_fits(pt, &r->man.tensors[i], &mix->spec[k])
							? mq_plan_spec_bytes(&r->man.tensors[i], &mix->spec[k]) : UINT64_MAX;
	}
	return 0;
}

/*
 * The rows of a tensor the candidates are measured on: every n-th, n being
 * --measure-every or less, so that at least MIN_MEASURED rows are seen
 * (a tensor of up to that many rows is measured whole).
 */
#define MIN_MEASURED 512u
static uint64_t stride(const struct run *r, const struct mq_plan_tensor *pt)
{
	uint64_t n = pt->n_rows / MIN_MEASURED, every = (uint64_t)r->opt->measure_every;
	return n < 1 ? 1 : n < every ? n : every;
}

/* One unit's sampled rows, each seen once and quantized by every candidate that fits its tensor; only the sums are kept. */
static int measure_unit(struct run *r, void *arg)
{
	struct measure *ms = arg;
	const struct mq_unit *u = &r->plan.units[ms->unit];
	const struct mq_tensor *t = &r->man.tensors[u->tensor];
	const struct mq_plan_tensor *pt = &r->plan.tensors[u->tensor];
	const int K = ms->mix->n_candidates;
	struct mq_err_acc acc[MQ_MAX_CANDIDATES];
	struct mq_plan_tensor as[MQ_MAX_CANDIDATES]; /* the tensor as each candidate would store it */
	int fits[MQ_MAX_CANDIDATES], first = -1;
	for (int k = 0; k < K; k++) {
		fits[k] = ms->mix->bytes[(size_t)u->tensor * K + k] != UINT64_MAX;
		first = first < 0 && fits[k] ? k : first;
		acc[k] = (struct mq_err_acc){ 0, 0, 0 };
		as[k] = *pt;
		as[k].q = ms->mix->spec[k];
		as[k].row_groups = as[k].q.granularity == MQ_GRAN_GROUP ? pt->row_elems / as[k].q.group_size : 1;
	}
	const size_t n_elems = (size_t)pt->row_elems;
	const uint64_t every = stride(r, pt);
	const int outspace = pt->calib == MQ_CALIB_STATIC;
	double signal = 0, noise[MQ_MAX_CANDIDATES] = { 0 };
	uint64_t nb = 0;
	/* the rows a multiple of --measure-every (of the tensor's own numbering: the same for any rank count) */
	for (uint64_t row = (u->row_begin + every - 1) / every * every; row < u->row_end; row += every) {
		/* a copy: a mapped window would fault each sampled row's pages in alone */
		const void *in = ms->src;
		if (source_read(r, t, row * pt->row_bytes, ms->src, (size_t)pt->row_bytes))
			return r->err.code;
		const float *x = in;
		if (t->dtype != MQ_DTYPE_F32) {
			mq_dtype_widen(t->dtype, in, ms->row, n_elems);
			x = ms->row;
		}
		for (int c = 0; c < K; c++) {
			if (!fits[c])
				continue;
			if (unit_row_params(r, t, &as[c], row, x, ms->p))
				return r->err.code;
			const struct mq_scheme_traits *si = mq_scheme_get(as[c].q.scheme);
			const size_t group = n_elems / as[c].row_groups;
			mq_scheme_quantize(si, x, n_elems, group, ms->p, NULL, ms->q, &acc[c]);
			if (outspace)
				si->dequantize(si, ms->q, n_elems, group, ms->p, ms->wh[c] + nb * n_elems);
		}
		if (outspace) {
			memcpy(ms->w + nb * n_elems, x, n_elems * sizeof(float));
			if (++nb == ms->batch) {
				if (flush(r, ms, fits, nb, &signal, noise))
					return r->err.code;
				nb = 0;
			}
		}
	}
	if (outspace && flush(r, ms, fits, nb, &signal, noise))
		return r->err.code;
	double *out = ms->sums + (size_t)ms->unit * (K + 1);
	out[0] = outspace ? signal : first >= 0 ? acc[first].signal : 0;
	for (int c = 0; c < K; c++)
		out[1 + c] = outspace ? noise[c] : acc[c].noise;
	return 0;
}

/*
 * --calib: how each candidate that quantizes activations with static
 * parameters would quantize each calibrated tensor's (the observer over its
 * calibration rows, on the candidate's grid), so that its measured error is
 * the layer's as it will run. Tensor i is observed by rank i mod size and the
 * others get zeros, so the sum over the ranks is exact.
 */
static int observe(struct run *r, struct measure *ms)
{
	const int n = r->plan.n_tensors, K = ms->mix->n_candidates;
	struct mq_layer_state *mine = calloc((size_t)n * K + 1, sizeof(*mine));
	struct mq_layer_state *all = ms->state = calloc((size_t)n * K + 1, sizeof(*all));
	ms->act = calloc((size_t)n * K + 1, sizeof(*ms->act));
	if (!mine || !all || !ms->act)
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	for (int i = 0; i < n && !r->err.code; i++) {
		const struct mq_plan_tensor *pt = &r->plan.tensors[i];
		for (int k = 0; k < K && pt->calib == MQ_CALIB_STATIC && !r->opt->act_none; k++) {
			const struct mq_scheme_traits *si = mq_scheme_get(ms->mix->spec[k].scheme);
			if (si->acts == MQ_ACTS_NONE || ms->mix->bytes[(size_t)i * K + k] == UINT64_MAX)
				continue;
			ms->act[(size_t)i * K + k].si = si;
			int same = -1; /* a candidate before it on the same grid: the same parameters */
			for (int j = 0; j < k && same < 0; j++)
				same = ms->act[(size_t)i * K + j].si && ms->act[(size_t)i * K + j].si->acts == si->acts ? j : -1;
			if (i % r->size != r->rank)
				continue;
			if (same >= 0)
				mine[(size_t)i * K + k] = mine[(size_t)i * K + same];
			else if (prepare_observe(r, i, si, &mine[(size_t)i * K + k]))
				break;
		}
	}
	if (!mq_comm_agree(r->comm, &r->err))
		mq_comm_allreduce_sum(r->comm, (const double *)mine, (double *)all,
				      (int)((size_t)n * K * (sizeof(*all) / sizeof(double))), &r->err);
	for (size_t j = 0; !r->err.code && j < (size_t)n * K; j++) {
		ms->act[j].scale = all[j].act_scale;
		ms->act[j].zero_point = all[j].act_zero_point;
	}
	free(mine);
	return mq_comm_agree(r->comm, &r->err);
}

/*
 * --calib: each layer's static activation parameters as its chosen candidate
 * observed them, as prepare_layers would observe them again (the same
 * observer, rows and grid), so that it need not read the calibration rows a
 * second time.
 */
static int hand_over_layers(struct run *r, const struct measure *ms)
{
	const int n = r->plan.n_tensors, K = ms->mix->n_candidates;
	if (!(r->layers = calloc((size_t)n + 1, sizeof(*r->layers))))
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	for (int i = 0; i < n; i++) {
		const int c = ms->mix->chosen[i];
		if (c >= 0 && ms->act[(size_t)i * K + c].si)
			r->layers[i] = ms->state[(size_t)i * K + c];
	}
	return 0;
}

/* This rank's units of quantized tensors, measured; the others stay zero in sums. */
static int measure(struct run *r, struct measure *ms)
{
	const struct mq_plan *p = &r->plan;
	uint64_t row_elems = 1, block = 1;
	for (int i = 0; i < p->n_tensors; i++) {
		const struct mq_plan_tensor *pt = &p->tensors[i];
		if (pt->action != MQ_ACT_QUANT || !pt->n_chunks)
			continue;
		row_elems = pt->row_elems > row_elems ? pt->row_elems : row_elems;
		block = pt->row_bytes > block ? pt->row_bytes : block; /* one row is seen at a time */
	}
	ms->row = malloc((size_t)row_elems * sizeof(float));
	ms->q = malloc((size_t)row_elems * sizeof(float)); /* no candidate stores more than 4 bytes a value */
	ms->p = malloc((size_t)row_elems * sizeof(struct mq_qparams));
	ms->src = malloc((size_t)block);
	if (!ms->row || !ms->q || !ms->p || !ms->src)
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	if (r->opt->calib) {
		const int K = ms->mix->n_candidates;
		ms->batch = batch_rows(row_elems, K);
		ms->w = malloc((size_t)(ms->batch * row_elems) * sizeof(float));
		for (int k = 0; k < K; k++)
			if (!(ms->wh[k] = malloc((size_t)(ms->batch * row_elems) * sizeof(float))))
				return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
		if (!ms->w)
			return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	}
	for (int id = 0; id < p->n_units && !r->err.code; id++) {
		const struct mq_unit *u = &p->units[id];
		if (u->rank != r->rank || p->tensors[u->tensor].action != MQ_ACT_QUANT)
			continue;
		ms->unit = id;
		source_guarded(r, measure_unit, ms);
	}
	return r->err.code;
}

/* The item (knapsack entry) of each quantized tensor: fused projections share one, if a candidate fits them all. */
static int make_items(struct run *r, const struct mq_plan_choice *mix, int gated, int *item_of, unsigned *mask)
{
	const int n = r->man.n_tensors, K = mix->n_candidates;
	int *leader_item = malloc(((size_t)n + 1) * sizeof(int));
	unsigned *common = malloc(((size_t)n + 1) * sizeof(unsigned));
	if (!leader_item || !common) {
		free(leader_item);
		free(common);
		return -1;
	}
	for (int i = 0; i < n; i++)
		common[i] = ~0u; /* the candidates that fit every member of i's family so far */
	for (int i = 0; i < n; i++) {
		unsigned m = 0;
		for (int k = 0; k < K; k++) /* it fits, and with --min-sqnr (measured) it reaches the floor */
			m |= mix->bytes[(size_t)i * K + k] != UINT64_MAX &&
			     (!gated || !(mq_sqnr_db(mix->signal[i], mix->noise[(size_t)i * K + k]) < mix->floor)) ? 1u << k : 0;
		mask[i] = m;
		leader_item[i] = -1;
		if (r->plan.tensors[i].action == MQ_ACT_QUANT && m)
			common[folder_fused_leader(&r->man, i)] &= m;
	}
	int items = 0;
	for (int i = 0; i < n; i++) {
		item_of[i] = -1;
		if (r->plan.tensors[i].action != MQ_ACT_QUANT || !mask[i])
			continue;
		int l = folder_fused_leader(&r->man, i);
		if (!common[l]) { /* no candidate fits every member: each is chosen alone */
			item_of[i] = items++;
			continue;
		}
		mask[i] = common[l];
		if (leader_item[l] < 0)
			leader_item[l] = items++;
		item_of[i] = leader_item[l];
	}
	free(leader_item);
	free(common);
	return items;
}

/* The knapsack's items, and the bytes they may take: the target less what the kept tensors take. */
struct items {
	int n;
	int *item_of;      /* per tensor: its item, -1 for a tensor kept as it is */
	unsigned *mask;    /* per tensor: the candidates its item may take (bit k: candidate k) */
	uint64_t budget;
	uint64_t min_bytes; /* every item on its smallest candidate */
};

static int popcount(unsigned m)
{
	int c = 0;
	for (; m; m &= m - 1)
		c++;
	return c;
}

static void print_bpw(char *out, size_t cap, uint64_t bytes, uint64_t elems)
{
	snprintf(out, cap, "%.3f bits per weight", elems ? 8.0 * (double)bytes / (double)elems : 0.0);
}

/*
 * The items and the budget they share: the target less what the kept
 * tensors take. gated: the second time, after the measurement, with
 * --min-sqnr's floor (the target stays as the first time set it).
 */
static int plan_items(struct run *r, struct mq_plan_choice *mix, struct items *it, int gated)
{
	const struct mq_options *o = r->opt;
	const int n = r->man.n_tensors, K = mix->n_candidates;
	free(it->item_of);
	free(it->mask);
	it->item_of = malloc(((size_t)n + 1) * sizeof(int));
	it->mask = malloc(((size_t)n + 1) * sizeof(unsigned));
	if (!it->item_of || !it->mask || (it->n = make_items(r, mix, gated, it->item_of, it->mask)) < 0)
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	uint64_t fixed = 0, elems = 0, least = 0;
	for (int i = 0; i < n; i++) {
		const struct mq_tensor *t = &r->man.tensors[i];
		if (it->item_of[i] < 0) {
			fixed += t->nbytes; /* copied as it is */
			continue;
		}
		elems += t->nbytes / mq_dtype_size(t->dtype);
		uint64_t small = UINT64_MAX;
		for (int k = 0; k < K; k++)
			if (it->mask[i] >> k & 1)
				small = mix->bytes[(size_t)i * K + k] < small ? mix->bytes[(size_t)i * K + k] : small;
		least += small;
	}
	mix->fixed_bytes = fixed;
	it->min_bytes = least;
	if (!gated)
		mix->target = o->target_size ? o->target_size : fixed + (uint64_t)(o->target_bpw * (double)elems / 8.0);
	it->budget = mix->target > fixed ? mix->target - fixed : 0;
	if (!it->n && !gated)
		return mq_fail(&r->err, MQ_ERR_INPUT, "'%s': no weight is selected for quantization, so there is nothing for --target-%s to choose",
			       r->opt->input, o->target_size ? "size" : "bpw");
	if (least > it->budget || mix->target < fixed) {
		char need[48], have[48];
		print_bpw(need, sizeof(need), least, elems);
		print_bpw(have, sizeof(have), it->budget, elems);
		return mq_fail(&r->err, MQ_ERR_USAGE,
			"--target-%s: the weights take at least %llu bytes on their smallest candidates%s (%s), and the tensors kept as they are %llu bytes: more than the target of %llu bytes (%s for the weights); raise the target%s",
			o->target_size ? "size" : "bpw", (unsigned long long)least, gated ? " that reach --min-sqnr" : "", need,
			(unsigned long long)fixed, (unsigned long long)mix->target, have,
			gated ? ", or lower --min-sqnr" : ", or add a smaller scheme to --candidates");
	}
	return 0;
}

/* --min-sqnr's verdict per tensor (mix->gate): promoted past its smallest candidate, or kept as it is. */
static void mark_gate(struct run *r, struct mq_plan_choice *mix, const struct items *before, const struct items *after)
{
	const int K = mix->n_candidates;
	for (int i = 0; i < r->man.n_tensors; i++) {
		mix->gate[i] = 0;
		if (before->item_of[i] < 0)
			continue;
		if (after->item_of[i] < 0) {
			mix->gate[i] = 2;
			continue;
		}
		int small = -1;
		for (int k = 0; k < K; k++)
			if (before->mask[i] >> k & 1 &&
			    (small < 0 || mix->bytes[(size_t)i * K + k] < mix->bytes[(size_t)i * K + small]))
				small = k;
		mix->gate[i] = !(after->mask[i] >> small & 1);
	}
}

/* The global candidate of item choice l (the l-th set bit of mask). */
static int nth_bit(unsigned mask, int l)
{
	for (int k = 0; k < 32; k++)
		if (mask >> k & 1 && l-- == 0)
			return k;
	return -1;
}

/* Rank 0: the knapsack over the items, and the choice of each tensor (mix->chosen). */
static int solve(struct run *r, struct mq_plan_choice *mix, struct items *it)
{
	const int n = r->man.n_tensors, K = mix->n_candidates;
	if (mix->floor == mix->floor) { /* --min-sqnr: the candidates below it leave the items */
		struct items gated = { 0, NULL, NULL, 0, 0 };
		if (!plan_items(r, mix, &gated, 1))
			mark_gate(r, mix, it, &gated);
		free(it->item_of);
		free(it->mask);
		*it = gated;
		if (r->err.code)
			return r->err.code;
	}
	struct mq_budget_item *items = calloc((size_t)it->n + 1, sizeof(*items));
	uint64_t *bytes = calloc((size_t)it->n * K + 1, sizeof(uint64_t));
	double *error = calloc((size_t)it->n * K + 1, sizeof(double));
	int *choice = calloc((size_t)it->n + 1, sizeof(int));
	unsigned *item_mask = calloc((size_t)it->n + 1, sizeof(unsigned));
	if (!items || !bytes || !error || !choice || !item_mask) {
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		int j = it->item_of[i];
		if (j < 0)
			continue;
		item_mask[j] = it->mask[i];
		items[j] = (struct mq_budget_item){ popcount(it->mask[i]), bytes + (size_t)j * K, error + (size_t)j * K };
		for (int k = 0, l = 0; k < K; k++)
			if (it->mask[i] >> k & 1) {
				bytes[(size_t)j * K + l] += mix->bytes[(size_t)i * K + k];
				error[(size_t)j * K + l++] += mix->noise[(size_t)i * K + k];
			}
	}
	struct mq_budget_result res;
	int rc = mq_budget_solve(items, it->n, it->budget, choice, &res);
	if (rc == -1)
		mq_fail(&r->err, MQ_ERR_USAGE, "--target: the smallest candidates take %llu bytes, more than the budget of %llu; raise the target",
			(unsigned long long)res.min_bytes, (unsigned long long)it->budget);
	else if (rc)
		mq_fail(&r->err, MQ_ERR_DATA, "'%s': a candidate's measured error is not a finite number (the weights overflow its range); leave that scheme out of --candidates",
			r->opt->input);
	if (rc)
		goto out;
	/* a uniform plan that fits and has less error wins: the mixed one is never worse than one scheme for all */
	for (int k = 0; k < K; k++) {
		uint64_t b = 0;
		double e = 0;
		int all = 1;
		for (int j = 0; j < it->n && all; j++) {
			all = item_mask[j] >> k & 1;
			int l = popcount(item_mask[j] & ((1u << k) - 1));
			b += all ? items[j].bytes[l] : 0;
			e += all ? items[j].error[l] : 0;
		}
		if (all && b <= it->budget && e < res.error) {
			for (int j = 0; j < it->n; j++)
				choice[j] = popcount(item_mask[j] & ((1u << k) - 1));
			res.bytes = b;
			res.error = e;
		}
	}
	for (int i = 0; i < n; i++)
		mix->chosen[i] = it->item_of[i] < 0 ? -1 : nth_bit(it->mask[i], choice[it->item_of[i]]);
	mix->chosen_bytes = res.bytes + mix->fixed_bytes;
	mix->error = res.error;
	mix->lower_bound = res.lower_bound;
	mix->n_items = it->n;
out:
	free(items);
	free(bytes);
	free(error);
	free(choice);
	free(item_mask);
	return r->err.code;
}

/* Rank 0's choice to every rank: the chosen candidates, then the figures. */
struct verdict {
	uint64_t chosen_bytes;
	double error, lower_bound;
	int32_t n_items, pad;
};

static int share(struct run *r, struct mq_plan_choice *mix)
{
	const int n = r->man.n_tensors;
	size_t len = sizeof(struct verdict) + (size_t)n * (sizeof(int32_t) + 1);
	char *gate_at;
	char *blob = NULL;
	if (r->rank == 0) {
		blob = malloc(len);
		if (!blob)
			return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
		struct verdict v = { mix->chosen_bytes, mix->error, mix->lower_bound, mix->n_items, 0 };
		memcpy(blob, &v, sizeof(v));
		for (int i = 0; i < n; i++) {
			int32_t c = mix->chosen[i];
			memcpy(blob + sizeof(v) + (size_t)i * sizeof(c), &c, sizeof(c));
		}
		memcpy(blob + sizeof(v) + (size_t)n * sizeof(int32_t), mix->gate, (size_t)n);
	}
	if (mq_comm_bcast_blob(r->comm, &blob, &len, &r->err) == 0 && r->rank != 0) {
		struct verdict v;
		memcpy(&v, blob, sizeof(v));
		mix->chosen_bytes = v.chosen_bytes;
		mix->error = v.error;
		mix->lower_bound = v.lower_bound;
		mix->n_items = v.n_items;
		for (int i = 0; i < n; i++) {
			int32_t c;
			memcpy(&c, blob + sizeof(v) + (size_t)i * sizeof(c), sizeof(c));
			mix->chosen[i] = c;
		}
		gate_at = blob + sizeof(v) + (size_t)n * sizeof(int32_t);
		memcpy(mix->gate, gate_at, (size_t)n);
	}
	free(blob);
	return r->err.code;
}

/* Rank 0: what was chosen, in a line or two. */
static void tell(const struct run *r, const struct mq_plan_choice *mix)
{
	int count[MQ_MAX_CANDIDATES] = { 0 };
	for (int i = 0; i < r->man.n_tensors; i++)
		if (mix->chosen[i] >= 0)
			count[mix->chosen[i]]++;
	struct mq_buf b = MQ_BUF_INIT;
	for (int k = 0, shown = 0; k < mix->n_candidates; k++)
		if (count[k])
			mq_buf_addf(&b, "%s%s for %d", shown++ ? ", " : "", mix->name[k], count[k]);
	mq_info("mixed precision: %s (of %d choices); %llu of %llu bytes, the error %.4g%% above the least possible\n",
		b.data ? b.data : "", mix->n_items, (unsigned long long)mix->chosen_bytes, (unsigned long long)mix->target,
		mix->lower_bound > 0 && mix->error > mix->lower_bound ? 100.0 * (mix->error - mix->lower_bound) / mix->lower_bound
									 : 0.0);
	mq_buf_release(&b);
}

int choose_schemes(struct run *r)
{
	double t0 = mq_comm_time();
	struct mq_plan_choice *mix = calloc(1, sizeof(*mix));
	struct measure ms = { .mix = mix };
	struct items it = { 0, NULL, NULL, 0, 0 };
	double *all = NULL;
	const int K = r->opt->n_candidates;
	const size_t n_sums = (size_t)r->plan.n_units * (size_t)(K + 1);
	r->mix = mix;
	if (!mix)
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	else if (!setup(r, mix) && !plan_items(r, mix, &it, 0) && !(ms.sums = calloc(n_sums + 1, sizeof(double))))
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	if (mq_comm_agree(r->comm, &r->err) || (r->opt->calib && observe(r, &ms)))
		goto out;
	measure(r, &ms);
	if (mq_comm_agree(r->comm, &r->err))
		goto out;
	if (!(all = malloc((n_sums + 1) * sizeof(double))))
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	else if (n_sums > (size_t)0x7fffffff)
		mq_fail(&r->err, MQ_ERR_INPUT, "too many work units to choose schemes for (%d)", r->plan.n_units);
	if (mq_comm_agree(r->comm, &r->err) || mq_comm_allreduce_sum(r->comm, ms.sums, all, (int)n_sums, &r->err))
		goto out;
	for (int u = 0; u < r->plan.n_units; u++) { /* per tensor, in unit order: the same sums for any rank count */
		const int i = r->plan.units[u].tensor;
		mix->signal[i] += all[(size_t)u * (K + 1)];
		for (int k = 0; k < K; k++)
			mix->noise[(size_t)i * K + k] += all[(size_t)u * (K + 1) + 1 + k];
	}
	for (int i = 0; i < r->plan.n_tensors; i++) { /* the sampled rows' sums, scaled to the whole tensor */
		const uint64_t rows = r->plan.tensors[i].n_rows, every = stride(r, &r->plan.tensors[i]);
		const double f = rows ? (double)rows / (double)((rows + every - 1) / every) : 1.0;
		mix->signal[i] *= f;
		for (int k = 0; k < K; k++)
			mix->noise[(size_t)i * K + k] *= f;
	}
	if (r->rank == 0 && !solve(r, mix, &it) && !r->opt->quiet)
		tell(r, mix);
	if (mq_comm_agree(r->comm, &r->err) || share(r, mix) || mq_comm_agree(r->comm, &r->err))
		goto out;
	mq_plan_release(&r->plan);
	if (!mq_plan_build_mixed(&r->man, r->opt, r->size, r->cinfo, mix, &r->plan, &r->err) && ms.state)
		hand_over_layers(r, &ms);
out:
	free(ms.row);
	free(ms.q);
	free(ms.p);
	free(ms.src);
	free(ms.w);
	for (int k = 0; k < K; k++)
		free(ms.wh[k]);
	free(ms.act);
	free(ms.state);
	free(ms.sums);
	free(all);
	free(it.item_of);
	free(it.mask);
	r->stats[MQ_STAT_T_CHOOSE] = mq_comm_time() - t0;
	return mq_comm_agree(r->comm, &r->err);
}

void choose_release(struct run *r)
{
	struct mq_plan_choice *mix = r->mix;
	if (!mix)
		return;
	free(mix->gate);
	free(mix->chosen);
	free(mix->bytes);
	free(mix->noise);
	free(mix->signal);
	free(mix);
	r->mix = NULL;
}
