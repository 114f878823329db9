/* Kernels: known values, edge rows, rounding, and the fast kernel against the reference, for every row. */
#include "test_util.h"

#include <float.h>
#include <math.h>

#include "scheme.h"

static const struct mq_scheme_traits *row(enum mq_scheme s)
{
	return mq_scheme_get(s);
}

static struct mq_qparams params_of(const struct mq_scheme_traits *s, const float *x, size_t n)
{
	struct mq_range r;
	size_t bad;
	mq_range_init(&r);
	assert_int_equal(mq_range_update(&r, x, n, &bad), 0);
	return s->params(s, &r);
}

/* Quantizes in groups with both kernels, checks they agree bit for bit, returns the fast result. */
static void quant_groups_both(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			      const struct mq_qparams *p, void *out, struct mq_err_acc *acc)
{
	unsigned char ref[4096];
	struct mq_err_acc a2 = { 0, 0, 0 };
	assert_true(mq_scheme_bytes(s, n) <= sizeof(ref));
	*acc = (struct mq_err_acc){ 0, 0, 0 };
	size_t b1 = mq_scheme_quantize(s, x, n, group, p, NULL, out, acc);
	size_t b2 = s->quantize_ref(s, x, n, group, p, NULL, ref, &a2);
	assert_int_equal(b1, b2);
	assert_int_equal(b1, mq_scheme_bytes(s, n));
	assert_memory_equal(out, ref, b1);
	assert_memory_equal(&acc->signal, &a2.signal, sizeof(double));
	assert_memory_equal(&acc->noise, &a2.noise, sizeof(double));
	assert_memory_equal(&acc->max_abs, &a2.max_abs, sizeof(double));
}

/* One group per row, as the pipeline quantizes today. */
static void quant_both(const struct mq_scheme_traits *s, const float *x, size_t n, struct mq_qparams p, void *out,
		       struct mq_err_acc *acc)
{
	quant_groups_both(s, x, n, n, &p, out, acc);
}

static void test_quant_int8_known_values(void **state)
{
	(void)state;
	float x[5] = { -2.55f, 0.0f, 1.0f, 2.55f, -0.01f };
	struct mq_qparams p = params_of(row(MQ_SCHEME_INT8), x, 5);
	assert_true(p.scale == 2.55f / 127.5f);
	assert_int_equal(p.zero_point, 0);
	int8_t q[5];
	struct mq_err_acc acc;
	quant_both(row(MQ_SCHEME_INT8), x, 5, p, q, &acc);
	/* +-max lands at about +-127.5: clamped to 127 above, -127 or -128 below */
	assert_true(q[0] == -128 || q[0] == -127);
	assert_int_equal(q[0], (int)lrintf(-2.55f * (1.0f / p.scale)));
	assert_int_equal(q[1], 0);
	assert_int_equal(q[2], (int)lrintf(1.0f * (1.0f / p.scale)));
	assert_int_equal(q[3], 127);
	assert_int_equal(q[4], (int)lrintf(-0.01f * (1.0f / p.scale)));
	assert_true(acc.signal > 0 && acc.noise > 0);
	/* half a step, plus x * (1/s) in float32 (2u|x|), the float32 dequantized value (u|x|) and
	 * the clamp of 2.55 / s = 127.5 (1 + u) to 127 (u|x|): 4u max|x|, u = 2^-24 */
	assert_true(acc.max_abs <= (double)p.scale * 0.5 + 4.0 * ((double)FLT_EPSILON / 2) * 2.55);
}

static void test_quant_zero_row_gets_epsilon_scale(void **state)
{
	(void)state;
	float x[7] = { 0 };
	for (int s = MQ_SCHEME_INT8; s <= MQ_SCHEME_INT8_ASYM; s++) {
		struct mq_qparams p = params_of(row((enum mq_scheme)s), x, 7);
		int zp = s == MQ_SCHEME_INT8 ? 0 : -128; /* the unsigned zero point 0, shifted */
		assert_true(p.scale == FLT_EPSILON);
		assert_int_equal(p.zero_point, zp);
		int8_t q[7];
		struct mq_err_acc acc;
		quant_both(row((enum mq_scheme)s), x, 7, p, q, &acc);
		for (int i = 0; i < 7; i++)
			assert_int_equal(q[i], zp);
		assert_true(acc.noise == 0.0 && acc.signal == 0.0);
	}
}

static void test_quant_constant_row(void **state)
{
	(void)state;
	float x[9];
	for (int i = 0; i < 9; i++)
		x[i] = -0.75f;
	struct mq_qparams p = params_of(row(MQ_SCHEME_INT8), x, 9);
	int8_t q[9];
	struct mq_err_acc acc;
	quant_both(row(MQ_SCHEME_INT8), x, 9, p, q, &acc);
	for (int i = 0; i < 9; i++)
		assert_int_equal(q[i], -128); /* -127.5 rounds to even: -128 */
	/* asymmetric: min -0.75, max forced to 0: zero point at the top, 127 */
	p = params_of(row(MQ_SCHEME_INT8_ASYM), x, 9);
	assert_true(p.scale == 0.75f / 255.0f);
	assert_int_equal(p.zero_point, 127);
	int8_t u[9];
	quant_both(row(MQ_SCHEME_INT8_ASYM), x, 9, p, u, &acc);
	for (int i = 0; i < 9; i++)
		assert_int_equal(u[i], -128);
}

static void test_quant_one_outlier_dominates_scale(void **state)
{
	(void)state;
	float x[64];
	for (int i = 0; i < 64; i++)
		x[i] = 0.001f * (float)(i - 32);
	x[17] = 10.0f;
	struct mq_qparams p = params_of(row(MQ_SCHEME_INT8), x, 64);
	assert_true(p.scale == 10.0f / 127.5f);
	int8_t q[64];
	struct mq_err_acc acc;
	quant_both(row(MQ_SCHEME_INT8), x, 64, p, q, &acc);
	assert_int_equal(q[17], 127);
	for (int i = 0; i < 64; i++)
		if (i != 17)
			assert_true(q[i] >= -1 && q[i] <= 1); /* small values collapse near zero */
}

static void test_quant_round_half_to_even(void **state)
{
	(void)state;
	/* scale 1 (amax 127.5): x*inv is exact, so ties are real ties */
	float x[8] = { 127.5f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 3.5f };
	struct mq_qparams p = params_of(row(MQ_SCHEME_INT8), x, 8);
	assert_true(p.scale == 1.0f);
	int8_t q[8];
	struct mq_err_acc acc;
	quant_both(row(MQ_SCHEME_INT8), x, 8, p, q, &acc);
	int8_t want[8] = { 127, 0, 2, 2, 0, -2, -2, 4 };
	assert_memory_equal(q, want, 8);
}

static void test_quant_int8_asym_range(void **state)
{
	(void)state;
	float x[4] = { -1.0f, 0.0f, 0.5f, 3.0f };
	struct mq_qparams p = params_of(row(MQ_SCHEME_INT8_ASYM), x, 4);
	assert_true(p.scale == 4.0f / 255.0f);
	assert_int_equal(p.zero_point, (int)nearbyintf(1.0f / p.scale) - 128);
	int8_t q[4];
	struct mq_err_acc acc;
	quant_both(row(MQ_SCHEME_INT8_ASYM), x, 4, p, q, &acc);
	assert_int_equal(q[0], -128);
	assert_int_equal(q[1], p.zero_point);
	assert_int_equal(q[3], 127);
	/* dequantized zero is exact */
	assert_true(mq_dequant(p, q[1]) == 0.0f);
}

static void test_quant_range_reports_nan_and_inf(void **state)
{
	(void)state;
	float x[5] = { 1, 2, 3, 4, 5 };
	struct mq_range r;
	size_t bad = 99;
	mq_range_init(&r);
	x[3] = NAN;
	assert_int_equal(mq_range_update(&r, x, 5, &bad), -1);
	assert_int_equal(bad, 3);
	x[3] = 4;
	x[1] = -INFINITY;
	mq_range_init(&r);
	assert_int_equal(mq_range_update(&r, x, 5, &bad), -1);
	assert_int_equal(bad, 1);
	x[1] = -2;
	mq_range_init(&r);
	assert_int_equal(mq_range_update(&r, x, 5, &bad), 0);
	assert_true(mq_key_float(r.min_key) == -2.0f);
	assert_true(mq_key_float(r.max_key) == 5.0f);
	assert_true(mq_f32_from_bits(r.absmax_bits) == 5.0f);
}

static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s;
}

/*
 * The fast kernels take their AVX2 path only where cpu.c's check allows it (AVX2 and F16C,
 * MQ_NO_SIMD unset); elsewhere they are the reference, and comparing the two proves nothing.
 */
static void skip_without_fast_kernel(void)
{
	if (strcmp(mq_quant_kernel_name(), "scalar") == 0) {
		print_message("fast kernel not available on this CPU (no AVX2/F16C, or MQ_NO_SIMD set): "
			      "comparison skipped\n");
		skip();
	}
}

/* 1 if row s has a fast kernel to compare; says so once per test where it has none. */
static int has_fast_kernel(const struct mq_scheme_traits *s, int *told)
{
	if (s->quantize)
		return 1;
	if (!*told)
		print_message("scheme '%s' has no fast kernel: only its reference runs\n", s->name);
	*told = 1;
	return 0;
}

/* Random rows of every length up to 1000, with outliers and awkward values. */
static void test_quant_fast_kernel_matches_reference(void **state)
{
	(void)state;
	skip_without_fast_kernel();
	uint32_t seed = 12345;
	float x[1000];
	unsigned char out[2000];
	int told[64] = { 0 };
	assert_true(mq_scheme_count() <= 64);
	for (size_t n = 1; n <= 1000; n += (n < 40 ? 1 : 37)) {
		for (size_t i = 0; i < n; i++) {
			float u = (float)(lcg(&seed) >> 8) / 16777216.0f - 0.5f;
			x[i] = u * 0.1f;
			if (lcg(&seed) % 97 == 0)
				x[i] *= 300.0f;
			if (lcg(&seed) % 101 == 0)
				x[i] = 0.0f;
		}
		for (int s = 0; s < mq_scheme_count(); s++) {
			if (!has_fast_kernel(row((enum mq_scheme)s), &told[s]))
				continue;
			struct mq_qparams p = params_of(row((enum mq_scheme)s), x, n);
			struct mq_err_acc acc;
			quant_both(row((enum mq_scheme)s), x, n, p, out, &acc);
		}
	}
}

/* Exact ties of x * (1/s) at every integer + 0.5 in the range. */
static void test_quant_fast_kernel_matches_reference_on_ties(void **state)
{
	(void)state;
	skip_without_fast_kernel();
	float x[512];
	for (int i = 0; i < 512; i++)
		x[i] = ((float)i - 256.0f) * 0.5f; /* -128 .. 127.5 in halves */
	x[511] = 127.5f;
	for (int s = 0; s < mq_scheme_count(); s++) {
		int told = 0;
		if (!has_fast_kernel(row((enum mq_scheme)s), &told))
			continue;
		unsigned char out[1024];
		struct mq_qparams p = params_of(row((enum mq_scheme)s), x, 512);
		struct mq_err_acc acc;
		quant_both(row((enum mq_scheme)s), x, 512, p, out, &acc);
	}
}

/*
 * int8-asym is compressed-tensors' signed form of the unsigned 8-bit scheme:
 * codes and zero points are the unsigned ones (computed here in the plain way)
 * minus 128, so the dequantized values are the same.
 */
static void test_quant_int8_asym_is_unsigned_minus_128(void **state)
{
	(void)state;
	uint32_t seed = 777;
	float x[300];
	int8_t q[300];
	for (int trial = 0; trial < 200; trial++) {
		size_t n = 1 + lcg(&seed) % 300;
		float shift = (float)(lcg(&seed) % 5) * 0.25f - 0.5f; /* all-positive, mixed and all-negative rows */
		for (size_t i = 0; i < n; i++)
			x[i] = ((float)(lcg(&seed) >> 8) / 16777216.0f - 0.5f) + shift;
		struct mq_qparams p = params_of(row(MQ_SCHEME_INT8_ASYM), x, n);
		float lo = x[0], hi = x[0];
		for (size_t i = 1; i < n; i++) {
			lo = x[i] < lo ? x[i] : lo;
			hi = x[i] > hi ? x[i] : hi;
		}
		lo = lo < 0.0f ? lo : 0.0f;
		hi = hi > 0.0f ? hi : 0.0f;
		float s = (hi - lo) / 255.0f;
		s = s < FLT_EPSILON ? FLT_EPSILON : s;
		long zu = lrintf(-lo / s);
		zu = zu < 0 ? 0 : zu > 255 ? 255 : zu;
		assert_true(p.scale == s);
		assert_int_equal(p.zero_point, zu - 128);
		struct mq_err_acc acc;
		quant_both(row(MQ_SCHEME_INT8_ASYM), x, n, p, q, &acc);
		for (size_t i = 0; i < n; i++) {
			long qu = lrintf(x[i] * (1.0f / s)) + zu;
			qu = qu < 0 ? 0 : qu > 255 ? 255 : qu;
			assert_int_equal(q[i], qu - 128);
			assert_true(mq_dequant(p, q[i]) == (float)(qu - zu) * s);
		}
	}
}

static void test_quant_casts_round_to_nearest_even(void **state)
{
	(void)state;
	float x[4] = { 1.0f, 1.0f + 1.0f / 2048.0f, 1.0f + 3.0f / 2048.0f, 65504.0f };
	uint16_t h[4];
	struct mq_err_acc acc;
	struct mq_qparams p = params_of(row(MQ_SCHEME_FP16), x, 4);
	quant_both(row(MQ_SCHEME_FP16), x, 4, p, h, &acc);
	assert_int_equal(h[0], 0x3c00);
	assert_int_equal(h[1], 0x3c00); /* tie to even (down) */
	assert_int_equal(h[2], 0x3c02); /* tie to even (up) */
	assert_int_equal(h[3], 0x7bff);
	float y[2] = { 1.0f + 1.0f / 256.0f, 1.0f + 3.0f / 256.0f };
	quant_both(row(MQ_SCHEME_BF16), y, 2, p, h, &acc);
	assert_int_equal(h[0], 0x3f80);
	assert_int_equal(h[1], 0x3f82);
	assert_true(mq_scheme_limit(MQ_SCHEME_FP16) < 65520.0f);
	assert_true(row(MQ_SCHEME_FP16)->limit == mq_scheme_limit(MQ_SCHEME_FP16));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quant_int8_known_values),
		cmocka_unit_test(test_quant_zero_row_gets_epsilon_scale),
		cmocka_unit_test(test_quant_constant_row),
		cmocka_unit_test(test_quant_one_outlier_dominates_scale),
		cmocka_unit_test(test_quant_round_half_to_even),
		cmocka_unit_test(test_quant_int8_asym_range),
		cmocka_unit_test(test_quant_range_reports_nan_and_inf),
		cmocka_unit_test(test_quant_fast_kernel_matches_reference),
		cmocka_unit_test(test_quant_fast_kernel_matches_reference_on_ties),
		cmocka_unit_test(test_quant_int8_asym_is_unsigned_minus_128),
		cmocka_unit_test(test_quant_casts_round_to_nearest_even),
	};
	return cmocka_run_group_tests_name("quant", tests, NULL, NULL);
}
