/* The size-budget solver against an exhaustive search, its lower bound, and its refusals. */
#include "test_util.h"

#include <math.h>

#include "budget.h"

#define MAX_ITEMS 6
#define MAX_CANDS 4

struct problem {
	int n_items;
	struct mq_budget_item items[MAX_ITEMS];
	uint64_t bytes[MAX_ITEMS][MAX_CANDS];
	double error[MAX_ITEMS][MAX_CANDS];
};

static uint32_t next(uint32_t *seed)
{
	*seed = *seed * 1664525u + 1013904223u;
	return *seed >> 8;
}

/* Random items; with ties, sizes and errors from a few values, so that equal ones occur. */
static void make(struct problem *p, uint32_t *seed, int ties)
{
	p->n_items = 1 + (int)(next(seed) % MAX_ITEMS);
	for (int i = 0; i < p->n_items; i++) {
		int n = 1 + (int)(next(seed) % MAX_CANDS);
		for (int c = 0; c < n; c++) {
			p->bytes[i][c] = ties ? 1 + next(seed) % 4 * 10 : 1 + next(seed) % 1000;
			p->error[i][c] = ties ? (double)(next(seed) % 4) : (double)(next(seed) % 100000) / 7.0;
		}
		p->items[i] = (struct mq_budget_item){ n, p->bytes[i], p->error[i] };
	}
}

/* The least total error within budget over every choice (INFINITY if none fits). */
static double exhaustive(const struct problem *p, uint64_t budget)
{
	int c[MAX_ITEMS] = { 0 };
	double best = (double)INFINITY;
	for (;;) {
		uint64_t b = 0;
		double e = 0;
		for (int i = 0; i < p->n_items; i++) {
			b += p->bytes[i][c[i]];
			e += p->error[i][c[i]];
		}
		if (b <= budget && e < best)
			best = e;
		int i = 0;
		while (i < p->n_items && ++c[i] == p->items[i].n)
			c[i++] = 0;
		if (i == p->n_items)
			return best;
	}
}

static void sizes(const struct problem *p, uint64_t *lo, uint64_t *hi)
{
	*lo = *hi = 0;
	for (int i = 0; i < p->n_items; i++) {
		uint64_t mn = UINT64_MAX, mx = 0;
		for (int c = 0; c < p->items[i].n; c++) {
			mn = p->bytes[i][c] < mn ? p->bytes[i][c] : mn;
			mx = p->bytes[i][c] > mx ? p->bytes[i][c] : mx;
		}
		*lo += mn;
		*hi += mx;
	}
}

/* The largest error range of one item: how far one step can leave the result above the optimum. */
static double widest(const struct problem *p)
{
	double w = 0;
	for (int i = 0; i < p->n_items; i++) {
		double mn = (double)INFINITY, mx = 0;
		for (int c = 0; c < p->items[i].n; c++) {
			mn = fmin(mn, p->error[i][c]);
			mx = fmax(mx, p->error[i][c]);
		}
		w = fmax(w, mx - mn);
	}
	return w;
}

/*
 * Thousands of small cases, each at every budget from below the smallest size to
 * above the largest: the choice fits, its totals are its candidates' sums, the
 * bound is below the true optimum, the result is within one item's range of it,
 * a zero gap means the optimum, and the cases solved exactly are counted.
 */
static void check_cases(int ties, int *exact, int *cases)
{
	uint32_t seed = ties ? 7u : 1u;
	const double eps = 1e-9; /* float sums of a few values below 1e5 in different orders */
	for (int k = 0; k < 2000; k++) {
		struct problem p;
		make(&p, &seed, ties);
		uint64_t lo, hi;
		sizes(&p, &lo, &hi);
		for (uint64_t budget = lo - 1; budget <= hi + 1; budget += 1 + (hi - lo) / 40) {
			int choice[MAX_ITEMS];
			struct mq_budget_result res;
			int rc = mq_budget_solve(p.items, p.n_items, budget, choice, &res);
			assert_int_equal(res.min_bytes, rc == -2 ? 0 : lo);
			double opt = exhaustive(&p, budget);
			if (isinf(opt)) {
				assert_int_equal(rc, -1);
				continue;
			}
			assert_int_equal(rc, 0);
			uint64_t b = 0;
			double e = 0;
			for (int i = 0; i < p.n_items; i++) {
				assert_true(choice[i] >= 0 && choice[i] < p.items[i].n);
				b += p.bytes[i][choice[i]];
				e += p.error[i][choice[i]];
			}
			assert_true(b <= budget);
			assert_int_equal(res.bytes, b);
			assert_true(fabs(res.error - e) <= eps * (1 + e));
			assert_true(res.lower_bound <= opt + eps * (1 + opt));
			assert_true(res.error >= opt - eps * (1 + opt));
			assert_true(res.error <= opt + widest(&p) + eps * (1 + opt));
			if (res.gap == 0)
				assert_true(res.error <= opt + eps * (1 + opt));
			*exact += res.error <= opt + eps * (1 + opt);
			(*cases)++;
		}
	}
}

static void test_budget_against_exhaustive(void **state)
{
	(void)state;
	int exact = 0, cases = 0;
	check_cases(0, &exact, &cases);
	print_message("distinct values: %d of %d cases optimal\n", exact, cases);
	assert_true(cases > 20000);
	/* budgets of a few hundred bytes: the dynamic programme runs in units of one byte, so every case is exact */
	assert_int_equal(exact, cases);
	exact = cases = 0;
	check_cases(1, &exact, &cases);
	print_message("ties: %d of %d cases optimal\n", exact, cases);
	assert_int_equal(exact, cases);
}

/*
 * Two items; budgets on the frontier's corners (the smallest sizes plus whole
 * steps in order of error saved per byte) are solved with a zero gap.
 */
static void test_budget_corners_are_exact(void **state)
{
	(void)state;
	const uint64_t b0[3] = { 10, 20, 40 }, b1[2] = { 5, 15 };
	const double e0[3] = { 100, 40, 30 }, e1[2] = { 50, 0 };
	/* steps: item 0 +10 B saves 60 (6/B), item 1 +10 B saves 50 (5/B), item 0 +20 B saves 10 (0.5/B) */
	struct mq_budget_item it[2] = { { 3, b0, e0 }, { 2, b1, e1 } };
	const uint64_t budget[4] = { 15, 25, 35, 55 };
	const int want0[4] = { 0, 1, 1, 2 }, want1[4] = { 0, 0, 1, 1 };
	const double want_err[4] = { 150, 90, 40, 30 };
	for (int k = 0; k < 4; k++) {
		int choice[2];
		struct mq_budget_result res;
		assert_int_equal(mq_budget_solve(it, 2, budget[k], choice, &res), 0);
		assert_int_equal(choice[0], want0[k]);
		assert_int_equal(choice[1], want1[k]);
		assert_true(res.error == want_err[k]);
		assert_true(res.gap == 0);
	}
	/*
	 * between corners: 30 B. The relaxation would take half of item 1's step
	 * (a bound of 90 - 25 = 65), but the dynamic programme in bytes proves 90
	 * the optimum, and the bound becomes it.
	 */
	int choice[2];
	struct mq_budget_result res;
	assert_int_equal(mq_budget_solve(it, 2, 30, choice, &res), 0);
	assert_true(res.lower_bound == 90);
	assert_true(res.error == 90);
	assert_true(res.gap == 0);
}

/* A candidate off the frontier (no better per byte than the line past it) is still taken where it alone fits. */
static void test_budget_takes_off_frontier_candidate(void **state)
{
	(void)state;
	const uint64_t b[3] = { 1, 3, 4 };
	const double e[3] = { 10, 9, 0 };
	struct mq_budget_item it = { 3, b, e };
	int choice;
	struct mq_budget_result res;
	assert_int_equal(mq_budget_solve(&it, 1, 3, &choice, &res), 0);
	assert_int_equal(choice, 1);
	assert_true(res.error == 9);
	assert_true(res.lower_bound == 9); /* proven by the programme in bytes */
	assert_int_equal(mq_budget_solve(&it, 1, 4, &choice, &res), 0);
	assert_int_equal(choice, 2);
}

/* Below the smallest size: -1 and that size; a malformed item: -2. */
static void test_budget_refusals(void **state)
{
	(void)state;
	const uint64_t b[2] = { 8, 16 };
	const double e[2] = { 1, 0 }, bad[2] = { (double)NAN, 0 }, neg[2] = { -1, 0 };
	struct mq_budget_item it[2] = { { 2, b, e }, { 2, b, e } };
	int choice[2];
	struct mq_budget_result res;
	assert_int_equal(mq_budget_solve(it, 2, 15, choice, &res), -1);
	assert_int_equal(res.min_bytes, 16);
	it[1].error = bad;
	assert_int_equal(mq_budget_solve(it, 2, 100, choice, &res), -2);
	it[1].error = neg;
	assert_int_equal(mq_budget_solve(it, 2, 100, choice, &res), -2);
	it[1] = (struct mq_budget_item){ 0, b, e };
	assert_int_equal(mq_budget_solve(it, 2, 100, choice, &res), -2);
	assert_int_equal(mq_budget_solve(it, 0, 0, choice, &res), 0); /* nothing to choose fits any budget */
	assert_true(res.error == 0 && res.bytes == 0);
}

/*
 * Sizes of megabytes, where the programme runs in units of many bytes: a
 * case the greedy steps get wrong (item 1's cheap step is taken first, then
 * item 0's large one no longer fits, and no single change mends it) is
 * still solved, within the budget, by the programme.
 */
static void test_budget_large_sizes_beyond_the_greedy(void **state)
{
	(void)state;
	const uint64_t M = 1000000;
	const uint64_t b0[2] = { 1 * M, 9 * M }, b1[2] = { 1 * M, 2 * M };
	const double e0[2] = { 100, 0 }, e1[2] = { 30, 0 };
	struct mq_budget_item it[2] = { { 2, b0, e0 }, { 2, b1, e1 } };
	int choice[2];
	struct mq_budget_result res;
	assert_int_equal(mq_budget_solve(it, 2, 10 * M + 1000, choice, &res), 0);
	assert_int_equal(choice[0], 1);
	assert_int_equal(choice[1], 0);
	assert_true(res.error == 30);
	assert_true(res.bytes == 10 * M);
	assert_true(res.lower_bound <= res.error);
}

/* Reversing the items reverses the choices: the result does not depend on their order (no ties here). */
static void test_budget_order_free(void **state)
{
	(void)state;
	uint32_t seed = 3;
	for (int k = 0; k < 500; k++) {
		struct problem p, q;
		make(&p, &seed, 0);
		q = p;
		for (int i = 0; i < p.n_items; i++) {
			int j = p.n_items - 1 - i;
			q.items[i] = (struct mq_budget_item){ p.items[j].n, p.bytes[j], p.error[j] };
		}
		uint64_t lo, hi;
		sizes(&p, &lo, &hi);
		uint64_t budget = lo + (hi - lo) / 2;
		int c1[MAX_ITEMS], c2[MAX_ITEMS];
		struct mq_budget_result r1, r2;
		assert_int_equal(mq_budget_solve(p.items, p.n_items, budget, c1, &r1), 0);
		assert_int_equal(mq_budget_solve(q.items, q.n_items, budget, c2, &r2), 0);
		for (int i = 0; i < p.n_items; i++)
			assert_int_equal(c1[i], c2[p.n_items - 1 - i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_budget_against_exhaustive),
		cmocka_unit_test(test_budget_corners_are_exact),
		cmocka_unit_test(test_budget_takes_off_frontier_candidate),
		cmocka_unit_test(test_budget_large_sizes_beyond_the_greedy),
		cmocka_unit_test(test_budget_refusals),
		cmocka_unit_test(test_budget_order_free),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
