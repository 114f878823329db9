/* Observers: exact min/max and percentiles by radix select, the histogram choices, parsing. */
#include "test_util.h"

#include <math.h>

#include "observe.h"
#include "scheme.h"

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

/* Feeds x in uneven blocks over every pass the observer needs. */
static void run(struct mq_obs_state *s, const float *x, size_t n, struct mq_obs_result *r)
{
	size_t bad;
	for (int pass = 0; pass < mq_obs_passes(s); pass++) {
		for (size_t i = 0; i < n;) {
			size_t k = n - i < 37 ? n - i : 37;
			assert_int_equal(mq_obs_feed(s, x + i, k, &bad), 0);
			i += k;
		}
		mq_obs_end_pass(s);
	}
	mq_obs_result(s, r);
}

static uint64_t rank_of(double p, size_t n)
{
	double c = ceil(p / 100.0 * (double)n);
	return c < 1 ? 0 : (uint64_t)c - 1;
}

static void test_observe_percentile_is_exact(void **state)
{
	(void)state;
	enum { N = 5003 };
	static float x[N], a[N], sorted[N];
	uint32_t seed = 3;
	for (int i = 0; i < N; i++) {
		seed = seed * 1664525u + 1013904223u;
		x[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * (i % 50 == 0 ? 80.0f : 2.0f);
	}
	x[17] = -0.0f;
	for (int i = 0; i < N; i++)
		a[i] = fabsf(x[i]);
	double ps[] = { 50.0, 99.0, 99.99, 100.0, 0.01 };
	for (size_t k = 0; k < sizeof(ps) / sizeof(ps[0]); k++) {
		struct mq_observer o = { MQ_OBS_PERCENTILE, ps[k] };
		struct mq_obs_state s;
		struct mq_obs_result r;
		assert_int_equal(mq_obs_init(&s, &o, 1, N), 0);
		run(&s, x, N, &r);
		memcpy(sorted, a, sizeof(a));
		qsort(sorted, N, sizeof(float), cmp_float);
		if (r.threshold != sorted[rank_of(ps[k], N)])
			fail_msg("P %g: got %.9g want %.9g (rank %llu)", ps[k], (double)r.threshold,
				 (double)sorted[rank_of(ps[k], N)], (unsigned long long)rank_of(ps[k], N));
		mq_obs_release(&s);
		/* the two-sided range */
		assert_int_equal(mq_obs_init(&s, &o, 0, N), 0);
		run(&s, x, N, &r);
		memcpy(sorted, x, sizeof(x));
		qsort(sorted, N, sizeof(float), cmp_float);
		float lo = sorted[rank_of(100.0 - ps[k], N)], hi = sorted[rank_of(ps[k], N)];
		assert_true(r.lo == (lo < 0 ? lo : 0.0f));
		assert_true(r.hi == (hi > 0 ? hi : 0.0f));
		assert_true(r.min == sorted[0] && r.max == sorted[N - 1]);
		mq_obs_release(&s);
	}
}

static void test_observe_minmax_and_parameters(void **state)
{
	(void)state;
	float x[6] = { 0.5f, -1.0f, 2.55f, 0.0f, 1.0f, -0.25f };
	struct mq_observer o = { MQ_OBS_MINMAX, 0 };
	struct mq_obs_state s;
	struct mq_obs_result r;
	assert_int_equal(mq_obs_init(&s, &o, 1, 6), 0);
	run(&s, x, 6, &r);
	assert_true(r.threshold == 2.55f);
	assert_true(r.qp.scale == 2.55f / 127.5f);
	mq_obs_release(&s);
	assert_int_equal(mq_obs_init(&s, &o, 0, 6), 0);
	run(&s, x, 6, &r);
	assert_true(r.lo == -1.0f && r.hi == 2.55f);
	assert_true(r.qp.scale == 3.55f / 255.0f);
	assert_int_equal(r.qp.zero_point, (int)nearbyintf(1.0f / r.qp.scale) - 128); /* int8-asym: signed */
	mq_obs_release(&s);
}

static void test_observe_rejects_nan(void **state)
{
	(void)state;
	float x[4] = { 1, 2, NAN, 4 };
	struct mq_observer o = { MQ_OBS_ENTROPY, 0 };
	struct mq_obs_state s;
	size_t bad = 0;
	assert_int_equal(mq_obs_init(&s, &o, 1, 4), 0);
	assert_int_equal(mq_obs_feed(&s, x, 4, &bad), -1);
	assert_int_equal(bad, 2);
	mq_obs_release(&s);
}

static void test_observe_histogram_choices(void **state)
{
	(void)state;
	static uint64_t h[MQ_OBS_BINS];
	/* everything in the first bins: entropy keeps the fewest bins it may (128) */
	memset(h, 0, sizeof(h));
	for (int b = 0; b < 64; b++)
		h[b] = 1000;
	assert_int_equal(mq_obs_entropy_choice(h), 128);
	/* a flat histogram: no clipping pays, entropy keeps every bin */
	for (int b = 0; b < MQ_OBS_BINS; b++)
		h[b] = 10;
	assert_int_equal(mq_obs_entropy_choice(h), MQ_OBS_BINS);
	/* mse: one far outlier among many small values clips it; with none, it keeps the range */
	memset(h, 0, sizeof(h));
	for (int b = 0; b < 100; b++)
		h[b] = 100000;
	int with_none = mq_obs_mse_choice(h, 1.0);
	assert_int_equal(with_none, 99);
	h[2047] = 1;
	int with_outlier = mq_obs_mse_choice(h, 1.0);
	assert_true(with_outlier < 2047 && with_outlier >= 99);
}

/* Activations take the int8 rows' grids: [-128, 127], symmetric for --act int8, not for int8-asym. */
static void test_observe_grid_is_the_int8_rows(void **state)
{
	(void)state;
	assert_ptr_equal(mq_obs_grid(1), mq_scheme_get(MQ_SCHEME_INT8));
	assert_ptr_equal(mq_obs_grid(0), mq_scheme_get(MQ_SCHEME_INT8_ASYM));
	assert_true(mq_obs_grid(1)->symmetric && !mq_obs_grid(0)->symmetric);
	assert_int_equal(mq_obs_grid(0)->qmin, -128);
	assert_int_equal(mq_obs_grid(0)->qmax, 127);
}

static void test_observe_parse(void **state)
{
	(void)state;
	struct mq_observer o;
	char name[48];
	assert_int_equal(mq_observer_parse("percentile", &o), 0);
	assert_true(o.kind == MQ_OBS_PERCENTILE && o.percentile == 99.99);
	assert_int_equal(mq_observer_parse("percentile:99.9", &o), 0);
	mq_observer_name(&o, name, sizeof(name));
	assert_string_equal(name, "percentile:99.9");
	assert_int_equal(mq_observer_parse("percentile:0", &o), -1);
	assert_int_equal(mq_observer_parse("percentile:101", &o), -1);
	assert_int_equal(mq_observer_parse("percentilex", &o), -1);
	assert_int_equal(mq_observer_parse("kl", &o), -1);
	assert_int_equal(mq_observer_parse("entropy", &o), 0);
	assert_int_equal(o.kind, MQ_OBS_ENTROPY);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_observe_percentile_is_exact),
		cmocka_unit_test(test_observe_minmax_and_parameters),
		cmocka_unit_test(test_observe_rejects_nan),
		cmocka_unit_test(test_observe_histogram_choices),
		cmocka_unit_test(test_observe_parse),
		cmocka_unit_test(test_observe_grid_is_the_int8_rows),
	};
	return cmocka_run_group_tests_name("observe", tests, NULL, NULL);
}
