/*
 * Every vector path of the kernels against the scalar reference, bit for bit (the bytes, and
 * the error sums' float64 bits), path by path: the level is capped with mq_dtype_simd_cap, and a
 * path this CPU (or MQ_NO_SIMD, MQ_SIMD) has not got is skipped, saying so. Rows of every length
 * to 300 and longer ones (every n % 8 and n % 16 tail), groups of 8, 24, 32, 40, 128 and one per
 * row (groups not a multiple of 16 end on a block of 8), outliers, all-zero rows, ties. Also
 * mq_range_update on each path.
 */
#include "test_util.h"

#include <stdio.h>

#include "scheme.h"

#define MAX_N 4104

static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s;
}

/* Caps the level at want; skips, saying so, when it is not available. */
static void use_path(enum mq_simd want)
{
	mq_dtype_simd_cap(MQ_SIMD_AVX512);
	if (mq_dtype_simd_cap(want) != want) {
		print_message("path '%s' not available here (CPU, MQ_NO_SIMD or MQ_SIMD): skipped\n",
			      mq_dtype_simd_name(want));
		mq_dtype_simd_cap(MQ_SIMD_AVX512);
		skip();
	}
	assert_string_equal(mq_quant_kernel_name(), mq_dtype_simd_name(want));
}

/* Row kind k: random values with outliers (0), all zero (1), halves on the int8 grid (2), tiny (3). */
static void make_row(float *x, size_t n, int kind, uint32_t *seed)
{
	for (size_t i = 0; i < n; i++) {
		float u = (float)(lcg(seed) >> 8) / 16777216.0f - 0.5f;
		if (kind == 1)
			x[i] = 0.0f;
		else if (kind == 2)
			x[i] = (float)((int)(lcg(seed) % 512) - 256) * 0.5f;
		else if (kind == 3)
			x[i] = u * 1e-30f;
		else
			x[i] = u * 0.1f * (lcg(seed) % 97 == 0 ? 300.0f : 1.0f) * (lcg(seed) % 101 == 0 ? 0.0f : 1.0f);
	}
}

/* Quantizes x in groups with the fast kernel (on the capped path) and the reference: the same bits. */
static void check_row(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group)
{
	static unsigned char got[2 * MAX_N], want[2 * MAX_N];
	static struct mq_qparams p[MAX_N];
	for (size_t g = 0; g * group < n; g++) {
		struct mq_range r;
		size_t bad, len = n - g * group < group ? n - g * group : group;
		mq_range_init(&r);
		assert_int_equal(mq_range_update(&r, x + g * group, len, &bad), 0);
		p[g] = s->params(s, &r, MQ_DTYPE_F32);
	}
	struct mq_err_acc a = { 0.5, 0.25, 0.0 }, b = a;
	size_t n1 = s->quantize(s, x, n, group, p, NULL, got, &a);
	size_t n2 = s->quantize_ref(s, x, n, group, p, NULL, want, &b);
	assert_int_equal(n1, n2);
	if (memcmp(got, want, n1) || memcmp(&a, &b, sizeof(a)))
		fail_msg("%s on %s: n %zu group %zu: fast kernel differs from the reference (%s)", s->name,
			 mq_quant_kernel_name(), n, group, memcmp(got, want, n1) ? "codes" : "error sums");
}

static void check_path(enum mq_simd path)
{
	use_path(path);
	static const size_t groups[] = { 8, 24, 32, 40, 128, 0 };
	static float x[MAX_N];
	uint32_t seed = 4242;
	for (size_t n = 1; n <= MAX_N; n += n < 300 ? 1 : n < 1100 ? 61 : 499) {
		for (int kind = 0; kind < 4; kind++) {
			make_row(x, n, kind, &seed);
			for (int si = 0; si < mq_scheme_count(); si++) {
				const struct mq_scheme_traits *s = mq_scheme_get((enum mq_scheme)si);
				if (!s->quantize || n % (size_t)s->pack)
					continue;
				for (size_t gi = 0; gi < sizeof(groups) / sizeof(groups[0]); gi++)
					if (groups[gi] == 0 || (n % groups[gi] == 0 && s->granularities))
						check_row(s, x, n, groups[gi] ? groups[gi] : n);
			}
		}
	}
	mq_dtype_simd_cap(MQ_SIMD_AVX512);
}

static void test_kernel_avx2_matches_reference(void **state)
{
	(void)state;
	check_path(MQ_SIMD_AVX2);
}

static void test_kernel_avx512_matches_reference(void **state)
{
	(void)state;
	check_path(MQ_SIMD_AVX512);
}

/*
 * mq_range_update on one path against the scalar path: the same range, the same first bad index;
 * and mq_range_update_abs on the path against both.
 */
static void check_range(enum mq_simd path)
{
	use_path(path);
	static float x[1000];
	uint32_t seed = 9;
	for (size_t n = 1; n <= 1000; n += n < 70 ? 1 : 31) {
		make_row(x, n, 0, &seed);
		size_t at = lcg(&seed) % (2 * n); /* a NaN or Inf at half of the rows */
		if (at < n)
			x[at] = lcg(&seed) % 2 ? NAN : -INFINITY;
		if (at + 3 < n)
			x[at + 3] = INFINITY;
		struct mq_range r[2];
		size_t bad[2] = { 0, 0 };
		int ret[2];
		for (int k = 0; k < 2; k++) {
			mq_dtype_simd_cap(k ? path : MQ_SIMD_SCALAR);
			mq_range_init(&r[k]);
			ret[k] = mq_range_update(&r[k], x, n, &bad[k]);
		}
		assert_int_equal(ret[0], ret[1]);
		assert_int_equal(bad[0], bad[1]);
		assert_memory_equal(&r[0], &r[1], sizeof(r[0])); /* on failure: untouched by either */
		/* the absmax-only fold, scalar and on this path: the same absmax and first bad index, keys untouched */
		for (int k = 0; k < 2; k++) {
			struct mq_range a;
			size_t abad = 0;
			mq_dtype_simd_cap(k ? path : MQ_SIMD_SCALAR);
			mq_range_init(&a);
			assert_int_equal(mq_range_update_abs(&a, x, n, &abad), ret[0]);
			assert_int_equal(abad, bad[0]);
			assert_int_equal(a.absmax_bits, r[0].absmax_bits);
			assert_int_equal(a.min_key, INT32_MAX);
			assert_int_equal(a.max_key, INT32_MIN);
			assert_int_equal(a.empty, r[0].empty);
		}
	}
	mq_dtype_simd_cap(MQ_SIMD_AVX512);
}

static void test_kernel_range_avx2(void **state)
{
	(void)state;
	check_range(MQ_SIMD_AVX2);
}

static void test_kernel_range_avx512(void **state)
{
	(void)state;
	check_range(MQ_SIMD_AVX512);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kernel_avx2_matches_reference),
		cmocka_unit_test(test_kernel_avx512_matches_reference),
		cmocka_unit_test(test_kernel_range_avx2),
		cmocka_unit_test(test_kernel_range_avx512),
	};
	return cmocka_run_group_tests_name("kernel", tests, NULL, NULL);
}
