/*
 * Every vector path of the kernels against the scalar reference, bit for bit (the bytes, and
 * the error sums' float64 bits), path by path: the level is capped with mq_dtype_simd_cap, and a
 * path this CPU (or MQ_NO_SIMD, MQ_SIMD) has not got is skipped, saying so. Rows of every length
 * to 300 and longer ones (every n % 8 and n % 16 tail), groups of 8, 24, 32, 40, 128 and one per
 * row (groups not a multiple of 16 end on a block of 8), outliers, all-zero rows, ties. Also
 * mq_range_update on each path, and the bfloat16 kernels and ranges against the rows widened.
 */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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
 * Near ties, where a kernel that rounds x * (1/s) instead of the reference's x / s (the AVX2
 * pack kernel, which divides only a block with a value too near a tie) would round apart. Rows
 * of values within 6 ulps of every tie the scale reaches (k + 1/2 times the scale for an
 * integer grid; the midpoints of e4m3's values, subnormal ones included, for fp8), both signs,
 * framed by the group's largest and smallest values so that the scale is known first; every
 * scheme with a grid, on each path.
 */
static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* The ties of the scheme's grid, in units of the scale: n of them into t. */
static size_t grid_ties(const struct mq_scheme_traits *s, float *t, size_t cap)
{
	size_t n = 0;
	if (s->storage == MQ_DTYPE_F8_E4M3) {
		float v[128];
		size_t nv = 0;
		for (int e = 0; e < 16; e++) /* e4m3fn: subnormals m/8 * 2^-6, normals (1 + m/8) * 2^(e-7), up to 448 */
			for (int m = 0; m < 8; m++)
				if (!(e == 15 && m == 7))
					v[nv++] = e ? ldexpf(1.0f + (float)m / 8.0f, e - 7) : ldexpf((float)m / 8.0f, -6);
		qsort(v, nv, sizeof(v[0]), cmp_float);
		for (size_t k = 0; k + 1 < nv && n + 2 <= cap; k++) {
			t[n++] = (v[k] + v[k + 1]) / 2.0f; /* exact: one more bit */
			t[n++] = -(v[k] + v[k + 1]) / 2.0f;
		}
		t[n++] = ldexpf(1.0f, -6); /* where the conversion turns to its subnormal rounding */
		t[n++] = -ldexpf(1.0f, -6);
	} else {
		for (int k = -300; k < 300 && n < cap; k++)
			t[n++] = (float)k + 0.5f;
	}
	return n;
}

static float step_ulps(float x, int j)
{
	for (; j > 0; j--)
		x = nextafterf(x, INFINITY);
	for (; j < 0; j++)
		x = nextafterf(x, -INFINITY);
	return x;
}

static void check_ties(enum mq_simd path)
{
	use_path(path);
	static float x[4096], cand[20000], ties[1024];
	static const float tops[] = { 1.0f, 0.7310585f, 3.3e-3f, 123.4f };
	const size_t n = 4096;
	size_t rows = 0;
	for (int si = 0; si < mq_scheme_count(); si++) {
		const struct mq_scheme_traits *s = mq_scheme_get((enum mq_scheme)si);
		if (!s->quantize || (s->qmax == 0 && s->storage != MQ_DTYPE_F8_E4M3))
			continue;
		const size_t nt = grid_ties(s, ties, sizeof(ties) / sizeof(ties[0]));
		for (size_t ti = 0; ti < sizeof(tops) / sizeof(tops[0]); ti++) {
			for (size_t group = 128; group <= n; group = group == 128 ? n : 2 * n) {
				if (group != n && !s->granularities)
					continue;
				const float top = tops[ti], bottom = -0.9f * tops[ti];
				/* the scale the frame gives: the row's values lie within it, so the row's range is the frame's */
				struct mq_range r;
				size_t bad, nc = 0;
				const float frame[2] = { top, bottom };
				mq_range_init(&r);
				assert_int_equal(mq_range_update(&r, frame, 2, &bad), 0);
				const struct mq_qparams p = s->params(s, &r, MQ_DTYPE_F32);
				for (size_t k = 0; k < nt; k++)
					for (int j = -6; j <= 6; j++) {
						float v = step_ulps(ties[k] * p.scale, j);
						if (v <= top && v >= bottom && nc < sizeof(cand) / sizeof(cand[0]))
							cand[nc++] = v;
					}
				assert_true(nc > 0);
				/* every candidate in some row: rows of groups, each group framed */
				for (size_t used = 0; used < nc; rows++) {
					for (size_t i = 0; i < n; i++) {
						if (i % group < 2)
							x[i] = i % group ? bottom : top;
						else
							x[i] = cand[used++ % nc];
					}
					check_row(s, x, n, group);
				}
			}
		}
	}
	print_message("near-tie rows on %s: %zu\n", mq_dtype_simd_name(path), rows);
	mq_dtype_simd_cap(MQ_SIMD_AVX512);
}

static void test_kernel_ties_avx2(void **state)
{
	(void)state;
	check_ties(MQ_SIMD_AVX2);
}

static void test_kernel_ties_avx512(void **state)
{
	(void)state;
	check_ties(MQ_SIMD_AVX512);
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

/*
 * The 16-bit float entry points (a scheme's quantize_half, mq_range_update_half and _abs_half),
 * for bfloat16 and fp16 rows, on each path against the row widened to float32 and the float32
 * reference and scalar range: the same codes, the same error sums' bits, the same range or the
 * same first NaN/Inf (the format's Inf, quiet and signalling NaNs, either sign), and a range
 * left as it was on failure. The tiny rows of fp16 are its subnormals and smallest normals,
 * which F16C widens as the scalar conversion does.
 */
static uint16_t to_half(float x, enum mq_dtype src)
{
	return src == MQ_DTYPE_F16 ? mq_f32_to_f16(x) : mq_f32_to_bf16(x);
}

static float from_half(uint16_t h, enum mq_dtype src)
{
	return src == MQ_DTYPE_F16 ? mq_f16_to_f32(h) : mq_bf16_to_f32(h);
}

static void check_half(enum mq_simd path, enum mq_dtype src)
{
	use_path(path);
	static const size_t groups[] = { 8, 24, 32, 40, 128, 0 };
	static const uint16_t bad_bf16[] = { 0x7f80, 0xff80, 0x7fc0, 0xffc1, 0x7f81 };
	static const uint16_t bad_f16[] = { 0x7c00, 0xfc00, 0x7e00, 0xfe01, 0x7c01 };
	const uint16_t *bad_bits = src == MQ_DTYPE_F16 ? bad_f16 : bad_bf16;
	const uint16_t inf = src == MQ_DTYPE_F16 ? 0x7c00 : 0x7f80;
	size_t subnormals = 0;
	static float x[MAX_N], w[MAX_N];
	static uint16_t h[MAX_N];
	static unsigned char got[MAX_N], want[MAX_N];
	static struct mq_qparams p[MAX_N];
	uint32_t seed = 77;
	size_t rows = 0;
	for (size_t n = 1; n <= MAX_N; n += n < 300 ? 1 : n < 1100 ? 61 : 499) {
		for (int kind = 0; kind < 4; kind++) {
			make_row(x, n, kind, &seed);
			for (size_t i = 0; i < n; i++) {
				if (kind == 3 && src == MQ_DTYPE_F16)
					x[i] *= 2e26f; /* |x| < 1e-4: fp16's subnormals (below 2^-14) and beyond */
				h[i] = to_half(x[i], src);
				w[i] = from_half(h[i], src);
				subnormals += src == MQ_DTYPE_F16 && (h[i] & 0x7c00u) == 0 && (h[i] & 0x3ffu) != 0;
			}
			for (int si = 0; si < mq_scheme_count(); si++) {
				const struct mq_scheme_traits *s = mq_scheme_get((enum mq_scheme)si);
				if (!s->quantize_half || n % (size_t)s->pack)
					continue;
				for (size_t gi = 0; gi < sizeof(groups) / sizeof(groups[0]); gi++) {
					const size_t group = groups[gi] ? groups[gi] : n;
					if (groups[gi] && (n % group || !s->granularities))
						continue;
					for (size_t g = 0; g * group < n; g++) {
						struct mq_range r, rb;
						size_t bad, len = n - g * group < group ? n - g * group : group;
						mq_range_init(&r);
						mq_range_init(&rb);
						assert_int_equal(mq_scheme_range_update(s, &r, w + g * group, len, &bad), 0);
						assert_int_equal(mq_scheme_range_update_half(s, &rb, h + g * group, src, len, &bad), 0);
						assert_memory_equal(&r, &rb, sizeof(r));
						p[g] = s->params(s, &r, src);
					}
					struct mq_err_acc a = { 0.5, 0.25, 0.0 }, b = a;
					size_t n1 = s->quantize_half(s, h, src, n, group, p, got, &a);
					assert_int_equal(n1, s->quantize_ref(s, w, n, group, p, NULL, want, &b));
					if (memcmp(got, want, n1) || memcmp(&a, &b, sizeof(a)))
						fail_msg("%s %s on %s: n %zu group %zu: differs from the widened row's reference (%s)",
							 s->name, mq_dtype_name(src), mq_quant_kernel_name(), n, group,
							 memcmp(got, want, n1) ? "codes" : "error sums");
					rows++;
				}
			}
			/* the full range of the row, then with a NaN or an Inf planted at half of the rows */
			size_t at = lcg(&seed) % (2 * n);
			if (at < n)
				h[at] = bad_bits[lcg(&seed) % (sizeof(bad_bf16) / sizeof(bad_bf16[0]))];
			if (at + 5 < n)
				h[at + 5] = inf;
			for (size_t i = 0; i < n; i++)
				w[i] = from_half(h[i], src);
			for (int keys = 0; keys < 2; keys++) {
				struct mq_range r, rb;
				size_t bad = 0, badb = 0;
				mq_range_init(&r);
				mq_range_init(&rb);
				const float before[2] = { 0.25f, -0.125f }; /* folded first: the 16-bit fold adds to a range */
				assert_int_equal(mq_range_update(&r, before, 2, &bad), 0);
				assert_int_equal(mq_range_update(&rb, before, 2, &bad), 0);
				mq_dtype_simd_cap(MQ_SIMD_SCALAR);
				int want_rc = (keys ? mq_range_update : mq_range_update_abs)(&r, w, n, &bad);
				mq_dtype_simd_cap(path);
				int got_rc = (keys ? mq_range_update_half : mq_range_update_abs_half)(&rb, h, src, n, &badb);
				assert_int_equal(got_rc, want_rc);
				assert_int_equal(badb, bad);
				assert_memory_equal(&r, &rb, sizeof(r));
			}
		}
	}
	print_message("%s rows on %s: %zu (%zu fp16 subnormals)\n", mq_dtype_name(src), mq_dtype_simd_name(path), rows,
		      subnormals);
	if (src == MQ_DTYPE_F16)
		assert_true(subnormals > 0);
	mq_dtype_simd_cap(MQ_SIMD_AVX512);
}

static void test_kernel_bf16_scalar(void **state)
{
	(void)state;
	check_half(MQ_SIMD_SCALAR, MQ_DTYPE_BF16);
}

static void test_kernel_f16_scalar(void **state)
{
	(void)state;
	check_half(MQ_SIMD_SCALAR, MQ_DTYPE_F16);
}

static void test_kernel_bf16_avx2(void **state)
{
	(void)state;
	check_half(MQ_SIMD_AVX2, MQ_DTYPE_BF16);
}

static void test_kernel_f16_avx2(void **state)
{
	(void)state;
	check_half(MQ_SIMD_AVX2, MQ_DTYPE_F16);
}

static void test_kernel_bf16_avx512(void **state)
{
	(void)state;
	check_half(MQ_SIMD_AVX512, MQ_DTYPE_BF16);
}

static void test_kernel_f16_avx512(void **state)
{
	(void)state;
	check_half(MQ_SIMD_AVX512, MQ_DTYPE_F16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kernel_avx2_matches_reference),
		cmocka_unit_test(test_kernel_avx512_matches_reference),
		cmocka_unit_test(test_kernel_ties_avx2),
		cmocka_unit_test(test_kernel_ties_avx512),
		cmocka_unit_test(test_kernel_range_avx2),
		cmocka_unit_test(test_kernel_range_avx512),
		cmocka_unit_test(test_kernel_bf16_scalar),
		cmocka_unit_test(test_kernel_bf16_avx2),
		cmocka_unit_test(test_kernel_bf16_avx512),
		cmocka_unit_test(test_kernel_f16_scalar),
		cmocka_unit_test(test_kernel_f16_avx2),
		cmocka_unit_test(test_kernel_f16_avx512),
	};
	return cmocka_run_group_tests_name("kernel", tests, NULL, NULL);
}
