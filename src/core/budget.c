#include "budget.h"

#include <math.h>
#include <stdlib.h>

/* One step up an item's frontier, from its candidate hull[step - 1] to hull[step]. */
struct step {
	int item, step;
	uint64_t bytes;  /* extra bytes */
	double saved;    /* error saved */
	double ratio;    /* saved / bytes */
};

/* A candidate, to be sorted: by size, then error, then index (the first of equal sizes has the least error). */
struct cand {
	uint64_t bytes;
	double error;
	int index;
};

/* The dynamic programme's table: items x budget units, one byte each (4 MiB), and the least units it is run with. */
#define MQ_BUDGET_DP_CELLS (4u << 20)
#define MQ_BUDGET_DP_MIN 1024u

static int cmp_candidate(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;
	if (x->bytes != y->bytes)
		return x->bytes < y->bytes ? -1 : 1;
	if (x->error != y->error)
		return x->error < y->error ? -1 : 1;
	return (x->index > y->index) - (x->index < y->index);
}

/* The most error saved per byte first; ties by item, then step (so an item's steps stay in order). */
static int cmp_step(const void *a, const void *b)
{
	const struct step *x = a, *y = b;
	if (x->ratio != y->ratio)
		return x->ratio > y->ratio ? -1 : 1;
	if (x->item != y->item)
		return x->item < y->item ? -1 : 1;
	return (x->step > y->step) - (x->step < y->step);
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/*
 * Item it's efficient frontier into hull (candidate indices, size ascending,
 * error strictly descending, savings per byte strictly descending), its length
 * returned; order is scratch room for its n candidates.
 */
static int frontier(const struct mq_budget_item *it, struct cand *order, int *hull)
{
	for (int c = 0; c < it->n; c++)
		order[c] = (struct cand){ it->bytes[c], it->error[c], c };
	qsort(order, (size_t)it->n, sizeof(*order), cmp_candidate);
	int h = 0;
	for (int k = 0; k < it->n; k++) {
		int c = order[k].index;
		if (h && it->error[c] >= it->error[hull[h - 1]])
			continue; /* larger and no better */
		while (h >= 2) { /* b = hull[h-1] saves no more per byte than the line from a to c: not on the hull */
			int a = hull[h - 2], b = hull[h - 1];
			double ab = (it->error[a] - it->error[b]) * (double)(it->bytes[c] - it->bytes[b]);
			double bc = (it->error[b] - it->error[c]) * (double)(it->bytes[b] - it->bytes[a]);
			if (ab > bc)
				break;
			h--;
		}
		hull[h++] = c;
	}
	return h;
}

static int valid(const struct mq_budget_item *items, int n_items, size_t *cands)
{
	*cands = 0;
	for (int i = 0; i < n_items; i++) {
		if (items[i].n < 1)
			return 0;
		for (int c = 0; c < items[i].n; c++)
			if (!isfinite(items[i].error[c]) || items[i].error[c] < 0)
				return 0;
		*cands += (size_t)items[i].n;
	}
	return 1;
}

/* The frontiers (hull, from offsets first[i]) and every step up them, into steps; returns the steps' count. */
static size_t all_steps(const struct mq_budget_item *items, int n_items, struct cand *order, int *hull, size_t *first,
			int *len, struct step *steps)
{
	size_t off = 0, n = 0;
	for (int i = 0; i < n_items; i++) {
		const struct mq_budget_item *it = &items[i];
		first[i] = off;
		len[i] = frontier(it, order, hull + off);
		for (int s = 1; s < len[i]; s++) {
			int a = hull[off + (size_t)s - 1], b = hull[off + (size_t)s];
			struct step *st = &steps[n++];
			st->item = i;
			st->step = s;
			st->bytes = it->bytes[b] - it->bytes[a];
			st->saved = it->error[a] - it->error[b];
			st->ratio = st->saved / (double)st->bytes;
		}
		off += (size_t)it->n;
	}
	return n;
}

/*
 * Single changes to any candidate while one saves error and fits, the largest
 * saving first, at most MAX_CHANGES of them (each a pass over all candidates;
 * after the steps, the room left is less than one step, so few fit).
 */
#define MAX_CHANGES 256

static void improve(const struct mq_budget_item *items, int n_items, uint64_t budget, int *choice, uint64_t total)
{
	for (int change = 0; change < MAX_CHANGES; change++) {
		int bi = -1, bc = -1;
		double best = 0;
		for (int i = 0; i < n_items; i++) {
			const struct mq_budget_item *it = &items[i];
			uint64_t rest = total - it->bytes[choice[i]];
			for (int c = 0; c < it->n; c++) {
				double saved = it->error[choice[i]] - it->error[c];
				if (saved > best && it->bytes[c] <= budget - rest) {
					best = saved;
					bi = i;
					bc = c;
				}
			}
		}
		if (bi < 0)
			return;
		total = total - items[bi].bytes[choice[bi]] + items[bi].bytes[bc];
		choice[bi] = bc;
	}
}

/*
 * The exact knapsack by dynamic programming over sizes in units of `unit`
 * bytes (each candidate's size rounded up, so a choice that fits in units
 * fits in bytes): dp[c], the least error of the items so far within c units,
 * a row per item of the candidate taken, then the choice read back from the
 * full budget. Returns its error (INFINITY where it cannot run: out of
 * memory, or more than 255 candidates in an item).
 */
static double dp_choice(const struct mq_budget_item *items, int n_items, uint64_t budget, uint64_t unit, int *choice)
{
	const size_t cap = (size_t)(budget / unit) + 1;
	double *dp = malloc(cap * sizeof(double)), *next = malloc(cap * sizeof(double));
	unsigned char *took = malloc((size_t)n_items * cap + 1);
	uint64_t w[256];
	double best = (double)INFINITY;
	if (!dp || !next || !took)
		goto out;
	for (size_t c = 0; c < cap; c++)
		dp[c] = 0;
	for (int i = 0; i < n_items; i++) {
		const struct mq_budget_item *it = &items[i];
		if (it->n > 255)
			goto out;
		for (int j = 0; j < it->n; j++)
			w[j] = it->bytes[j] / unit + (it->bytes[j] % unit != 0);
		for (size_t c = 0; c < cap; c++) {
			double v = (double)INFINITY;
			unsigned char k = 0;
			for (int j = 0; j < it->n; j++) {
				if (w[j] <= c && dp[c - w[j]] + it->error[j] < v) {
					v = dp[c - w[j]] + it->error[j];
					k = (unsigned char)j;
				}
			}
			next[c] = v;
			took[(size_t)i * cap + c] = k;
		}
		double *t = dp;
		dp = next;
		next = t;
	}
	best = dp[cap - 1];
	size_t c = cap - 1;
	for (int i = n_items - 1; i >= 0 && isfinite(best); i--) {
		int j = took[(size_t)i * cap + c];
		choice[i] = j;
		c -= (size_t)(items[i].bytes[j] / unit + (items[i].bytes[j] % unit != 0));
	}
out:
	free(dp);
	free(next);
	free(took);
	return best;
}

static uint64_t gcd(uint64_t a, uint64_t b)
{
	while (b) {
		uint64_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/*
 * Where the table fits in MQ_BUDGET_DP_CELLS with at least MQ_BUDGET_DP_MIN
 * units of budget, the dynamic programme's choice replaces the greedy one if
 * it has less error (then single changes use what the rounding left). In
 * units of the sizes' greatest common divisor (where the budget in them
 * fits the table) nothing is rounded: it is the optimum, and the bound
 * becomes its error.
 */
static void refine(const struct mq_budget_item *items, int n_items, uint64_t budget, int *choice,
		   struct mq_budget_result *res)
{
	const uint64_t per_item = MQ_BUDGET_DP_CELLS / (uint64_t)(n_items ? n_items : 1);
	if (n_items == 0 || per_item < MQ_BUDGET_DP_MIN)
		return;
	uint64_t g = 0; /* the sizes' common divisor: in its units the programme is as exact as in bytes */
	for (int i = 0; i < n_items; i++)
		for (int j = 0; j < items[i].n; j++)
			g = gcd(g, items[i].bytes[j]);
	g = g ? g : 1;
	const int exact = budget / g < per_item;
	uint64_t unit = exact ? g : budget / per_item + 1;
	int *alt = malloc(((size_t)n_items + 1) * sizeof(int));
	double e = alt ? dp_choice(items, n_items, budget, unit, alt) : (double)INFINITY;
	if (isfinite(e)) {
		uint64_t b = 0;
		double err = 0;
		for (int i = 0; i < n_items; i++) {
			b += items[i].bytes[alt[i]];
			err += items[i].error[alt[i]];
		}
		improve(items, n_items, budget, alt, b);
		err = 0;
		for (int i = 0; i < n_items; i++)
			err += items[i].error[alt[i]];
		if (err < res->error) {
			for (int i = 0; i < n_items; i++)
				choice[i] = alt[i];
			res->error = err;
		}
		if (exact && res->error > res->lower_bound) /* exact: nothing within the budget does better */
			res->lower_bound = res->error;
	}
	free(alt);
}

int mq_budget_solve(const struct mq_budget_item *items, int n_items, uint64_t budget, int *choice,
		    struct mq_budget_result *res)
{
	size_t cands;
	*res = (struct mq_budget_result){ 0, 0, 0, 0, 0 };
	if (n_items < 0 || !valid(items, n_items, &cands))
		return -2;
	struct cand *order = malloc((cands + 1) * sizeof(*order));
	int *hull = malloc((cands + 1) * sizeof(int));
	int *len = malloc(((size_t)n_items + 1) * sizeof(int)), *pos = calloc((size_t)n_items + 1, sizeof(int));
	size_t *first = malloc(((size_t)n_items + 1) * sizeof(size_t));
	struct step *steps = malloc((cands + 1) * sizeof(struct step));
	int rc = -2;
	if (!order || !hull || !len || !pos || !first || !steps)
		goto out;
	size_t n_steps = all_steps(items, n_items, order, hull, first, len, steps);
	uint64_t total = 0;
	double err = 0;
	for (int i = 0; i < n_items; i++) {
		int c = hull[first[i]];
		total = add_sat(total, items[i].bytes[c]);
		err += items[i].error[c];
	}
	res->min_bytes = total;
	rc = -1;
	if (total > budget)
		goto out;
	qsort(steps, n_steps, sizeof(*steps), cmp_step);
	int bounded = 0;
	for (size_t k = 0; k < n_steps; k++) {
		const struct step *st = &steps[k];
		if (st->step != pos[st->item] + 1) /* an earlier step of this item did not fit */
			continue;
		if (st->bytes <= budget - total) {
			pos[st->item] = st->step;
			total += st->bytes;
			err -= st->saved;
		} else if (!bounded) { /* the relaxation takes the fraction of this step that fits */
			res->lower_bound = err - st->ratio * (double)(budget - total);
			bounded = 1;
		}
	}
	if (!bounded)
		res->lower_bound = err; /* every item on its least error: nothing can do better */
	for (int i = 0; i < n_items; i++)
		choice[i] = hull[first[i] + (size_t)pos[i]];
	improve(items, n_items, budget, choice, total);
	for (int i = 0; i < n_items; i++)
		res->error += items[i].error[choice[i]];
	refine(items, n_items, budget, choice, res);
	res->error = 0;
	for (int i = 0; i < n_items; i++) { /* the totals in item order */
		res->bytes += items[i].bytes[choice[i]];
		res->error += items[i].error[choice[i]];
	}
	res->lower_bound = res->lower_bound > 0 ? res->lower_bound : 0;
	res->lower_bound = res->lower_bound < res->error ? res->lower_bound : res->error; /* rounding of the subtractions */
	res->gap = res->error > res->lower_bound ? res->error - res->lower_bound : 0;
	rc = 0;
out:
	free(order);
	free(hull);
	free(len);
	free(pos);
	free(first);
	free(steps);
	return rc;
}
