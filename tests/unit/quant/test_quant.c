/*
 * Kernels and the scheme table: known values, edge rows, rounding, the fast kernel against the
 * reference, and per row of the table (so a new row is tested with no new test): consistency,
 * output tensors, an error bound, groups, the importance vector, --help. Built twice: against the
 * quant library, and (test_quant_dummy) against its build with the test-only row "int8-dummy".
 */
#include "test_util.h"

#include <float.h>
#include <math.h>
#include <stdio.h>

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
	return s->params(s, &r, MQ_DTYPE_F32);
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

/*
 * A range wider than float32 holds (both ends near FLT_MAX): the asymmetric scale
 * (hi - lo) / 255 would be Inf, and every value would dequantize to NaN. The scale
 * is the same quotient taken in two parts, finite, and the ends keep their codes.
 */
static void test_quant_asym_range_beyond_float_max(void **state)
{
	(void)state;
	const enum mq_scheme schemes[] = { MQ_SCHEME_INT8_ASYM, MQ_SCHEME_INT4_ASYM };
	for (size_t k = 0; k < sizeof(schemes) / sizeof(schemes[0]); k++) {
		const struct mq_scheme_traits *s = row(schemes[k]);
		float x[8] = { -3.0e38f, 0.0f, 1.0f, -1.0f, 2.5e38f, 3.0e38f, 1.0e38f, -1.0e38f };
		struct mq_qparams p = params_of(s, x, 8);
		assert_true(isfinite(p.scale) && p.scale > 0.0f);
		assert_true(p.scale == 3.0e38f / (float)(s->qmax - s->qmin) + 3.0e38f / (float)(s->qmax - s->qmin));
		uint32_t q[8];
		struct mq_err_acc acc;
		quant_both(s, x, 8, p, q, &acc);
		float d[8];
		s->dequantize(s, q, 8, 8, &p, d);
		for (int i = 0; i < 8; i++) {
			assert_true(isfinite(d[i]));
			assert_true(fabsf(d[i] - x[i]) <= p.scale); /* within a step (zero point's rounding included) */
		}
	}
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
			if (n % (size_t)row((enum mq_scheme)s)->pack)
				continue; /* a packed row is whole words (kernel.h): no other length is valid */
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
	assert_true(row(MQ_SCHEME_FP16)->limit < 65520.0f);
}

/* ---- every row of the table ---- */

#define N_MAX 1024

/* Small values with outliers, zeros and tiny values; near +-limit for a row with a limit. */
static void random_row(uint32_t *seed, float *x, size_t n, float limit)
{
	for (size_t i = 0; i < n; i++) {
		float u = (float)(lcg(seed) >> 8) / 16777216.0f - 0.5f;
		uint32_t k = lcg(seed) % 211;
		x[i] = k == 0 ? 0.0f : k < 3 ? u * 300.0f : k < 6 ? u * 1e-6f : u * 0.1f;
		if (limit < FLT_MAX && k == 7)
			x[i] = u < 0 ? -limit : limit;
	}
}

/* Word k of packed storage, read as little-endian whatever the host. */
static uint32_t word_at(const void *q, size_t k)
{
	const unsigned char *b = (const unsigned char *)q + k * 4;
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/*
 * Code i of a quantized row: signed for an integer grid, the raw bits for a float format. Packed
 * storage (LOWBIT.md A.3): u = (word >> (j * bits)) & mask for value j of its word, q = u - 2^(b-1).
 */
static int64_t code_at(const struct mq_scheme_traits *s, const void *q, size_t i)
{
	if (s->pack != 1) {
		size_t per = (size_t)s->pack;
		uint32_t u = (word_at(q, i / per) >> ((i % per) * (size_t)s->bits)) & ((1u << s->bits) - 1);
		return (int64_t)u - ((int64_t)1 << (s->bits - 1));
	}
	const unsigned char *b = (const unsigned char *)q + i * mq_dtype_size(s->storage);
	int8_t c1;
	int16_t c2;
	uint16_t u2;
	switch (mq_dtype_size(s->storage) * 2 + (s->float_format != MQ_FLOAT_NONE)) {
	case 2: memcpy(&c1, b, 1); return c1;
	case 3: return b[0];
	case 4: memcpy(&c2, b, 2); return c2;
	case 5: memcpy(&u2, b, 2); return u2;
	}
	fail_msg("scheme '%s': no test for its storage", s->name);
	return 0;
}

/* The value of code c with p, through the row's own dequantize (a packed code as value 0 of a word). */
static float dequant_code(const struct mq_scheme_traits *s, int64_t c, struct mq_qparams p)
{
	unsigned char b[8];
	float d[8];
	if (s->pack != 1) {
		uint32_t w = (uint32_t)(c + ((int64_t)1 << (s->bits - 1)));
		for (int k = 0; k < 4; k++)
			b[k] = (unsigned char)(w >> (8 * k));
		s->dequantize(s, b, (size_t)s->pack, (size_t)s->pack, &p, d);
		return d[0];
	}
	int8_t c1 = (int8_t)c;
	uint16_t u2 = (uint16_t)c;
	memcpy(b, mq_dtype_size(s->storage) == 1 ? (const void *)&c1 : (const void *)&u2, mq_dtype_size(s->storage));
	s->dequantize(s, b, 1, 1, &p, d);
	return d[0];
}

/*
 * A float format's rounding: no neighbouring finite code is closer to v than code c (value vc),
 * and the code keeps v's sign (so no code of the other sign, which is no neighbour in code
 * space, can be closer either). p is the scale the codes are compared under.
 */
static void check_float_code(const struct mq_scheme_traits *s, float v, float vc, int64_t c, struct mq_qparams p)
{
	double e = fabs((double)v - (double)vc);
	int top_bit = 8 * (int)mq_dtype_size(s->storage) - 1;
	assert_true(isfinite(vc));
	if (((c >> top_bit) & 1) != (signbit(v) != 0))
		fail_msg("scheme '%s': %.9g got code %lld of the other sign", s->name, (double)v, (long long)c);
	int64_t top = ((int64_t)1 << (8 * mq_dtype_size(s->storage))) - 1;
	for (int64_t n = c - 1; n <= c + 1; n += 2) {
		if (n < 0 || n > top)
			continue;
		float dn = dequant_code(s, n, p);
		if (isfinite(dn) && fabs((double)v - (double)dn) < e)
			fail_msg("scheme '%s': %.9g -> %.9g, but code %lld (%.9g) is closer", s->name, (double)v,
				 (double)vc, (long long)n, (double)dn);
	}
}

/*
 * The bound of one rounding. On an integer grid whose parameters came from a range holding x:
 * |x - d| <= s/2 (plus the float32 roundings of x * (1/s) and of d: 4u(|x| + |d|), u = 2^-24), so
 * the grid also covers the range, ends included. In a float format: no neighbouring finite code is
 * closer to x; for e4m3 (a scale, and the clamp of kernel.h) closer to x / scale clamped to +-448,
 * the value the format rounds.
 */
static void check_rounding(const struct mq_scheme_traits *s, float x, float d, int64_t c, struct mq_qparams p)
{
	double e = fabs((double)x - (double)d);
	if (s->float_format == MQ_FLOAT_NONE) {
		double tol = 4.0 * ((double)FLT_EPSILON / 2) * (fabs((double)x) + fabs((double)d));
		assert_true(c >= s->qmin && c <= s->qmax);
		if (e > (double)p.scale * 0.5 + tol)
			fail_msg("scheme '%s': x %.9g -> %.9g (code %lld), error %.9g over half a step %.9g", s->name,
				 (double)x, (double)d, (long long)c, e, (double)p.scale * 0.5);
		return;
	}
	assert_true(isfinite(d));
	if (s->float_format == MQ_FLOAT_E4M3) {
		const struct mq_qparams unit = { 1.0f, 0 };
		float y = x / p.scale;
		y = y < -448.0f ? -448.0f : y > 448.0f ? 448.0f : y;
		check_float_code(s, y, dequant_code(s, c, unit), c, unit);
		return;
	}
	check_float_code(s, x, d, c, p);
}

/*
 * One row in groups of `group` values, group k with p[k]: fast = reference, dequantize against
 * the sums, and the rounding bound of each value.
 */
static void check_row(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
		      const struct mq_qparams *p)
{
	unsigned char q[4 * N_MAX];
	float d[N_MAX];
	struct mq_err_acc acc;
	quant_groups_both(s, x, n, group, p, q, &acc);
	s->dequantize(s, q, n, group, p, d);
	double sig = 0, noise = 0;
	float max_abs = 0;
	for (size_t i = 0; i < n; i++) {
		float e = x[i] - d[i];
		sig += (double)x[i] * (double)x[i];
		noise += (double)e * (double)e;
		max_abs = fabsf(e) > max_abs ? fabsf(e) : max_abs;
		check_rounding(s, x[i], d[i], code_at(s, q, i), p[i / group]);
	}
	assert_true(acc.max_abs == (double)max_abs); /* dequantize gives the values the kernel summed */
	assert_true(fabs(acc.signal - sig) <= 1e-5 * sig);
	assert_true(fabs(acc.noise - noise) <= 1e-5 * noise + 1e-300);
}

/* Groups of 32 with their own parameters, where the row takes groups and n holds whole ones. */
static void check_row_in_groups(const struct mq_scheme_traits *s, const float *x, size_t n)
{
	enum { GROUP = 32 };
	struct mq_qparams p[N_MAX / GROUP];
	if (!(s->granularities & MQ_GRAN_BIT(MQ_GRAN_GROUP)) || n % GROUP)
		return;
	for (size_t k = 0; k < n / GROUP; k++)
		p[k] = params_of(s, x + k * GROUP, GROUP);
	check_row(s, x, n, GROUP, p);
}

static void test_scheme_every_row_is_within_one_rounding(void **state)
{
	(void)state;
	/* n = 1, 4, 13, ... (3n + 1), then lengths of whole words and groups for the packed rows */
	static const size_t lengths[] = { 1, 4, 13, 40, 121, 364, 8, 32, 96, 256, N_MAX };
	uint32_t seed = 4242;
	static float x[4][N_MAX];
	for (int k = 0; k < mq_scheme_count(); k++) {
		const struct mq_scheme_traits *s = row((enum mq_scheme)k);
		for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++) {
			size_t n = lengths[li];
			if (n % (size_t)s->pack)
				continue; /* a packed row is whole words (kernel.h): no other length is valid */
			struct mq_range whole;
			size_t bad;
			mq_range_init(&whole);
			for (int r = 0; r < 4; r++) {
				random_row(&seed, x[r], n, s->limit);
				assert_int_equal(mq_range_update(&whole, x[r], n, &bad), 0);
				struct mq_qparams p = params_of(s, x[r], n);
				check_row(s, x[r], n, n, &p); /* per channel */
				check_row_in_groups(s, x[r], n);
			}
			if (s->granularities & MQ_GRAN_BIT(MQ_GRAN_TENSOR)) {
				struct mq_qparams p = s->params(s, &whole, MQ_DTYPE_F32);
				for (int r = 0; r < 4; r++)
					check_row(s, x[r], n, n, &p);
			}
		}
	}
}
/* The table's own facts agree with each other. */
static void test_scheme_rows_are_consistent(void **state)
{
	(void)state;
	assert_true(mq_scheme_count() >= 4);
	for (int k = 0; k < mq_scheme_count(); k++) {
		const struct mq_scheme_traits *s = row((enum mq_scheme)k);
		enum mq_scheme back;
		assert_int_equal(mq_scheme_parse(s->name, &back), 0);
		assert_int_equal(back, k);
		assert_true(s->help && *s->help && s->quant_dtype && *s->quant_dtype);
		assert_true(s->params && s->quantize_ref && s->dequantize && s->limit > 0.0f);
		assert_true(s->pack >= 1 && s->bits * s->pack <= 8 * (int)mq_dtype_size(s->storage));
		if (s->float_format == MQ_FLOAT_NONE) {
			assert_string_equal(s->ct_type, "int");
			assert_true(s->qmin < s->qmax && s->qmax - s->qmin < 1 << s->bits);
		} else {
			assert_string_equal(s->ct_type, "float");
			assert_true(s->qmin == 0 && s->qmax == 0);
		}
		/*
		 * the data first (under the tensor's own name, or "weight_packed" for packed words), then
		 * a scale where there are parameters, a zero point where asymmetric, and the weight's
		 * shape where the data is packed (its last dimension is no longer the weight's)
		 */
		assert_true(s->n_outputs >= 1 && s->outputs[0].part == MQ_PART_DATA);
		if (s->pack == 1)
			assert_null(s->outputs[0].suffix);
		else
			assert_string_equal(s->outputs[0].suffix, "weight_packed");
		int scales = 0, zero_points = 0, shapes = 0;
		for (int c = 1; c < s->n_outputs; c++) {
			assert_non_null(s->outputs[c].suffix);
			assert_true(s->outputs[c].part != MQ_PART_DATA);
			for (int o = 0; o < c; o++) /* no two outputs under one name */
				assert_true(!s->outputs[o].suffix ||
					    strcmp(s->outputs[o].suffix, s->outputs[c].suffix) != 0);
			scales += s->outputs[c].part == MQ_PART_SCALE;
			zero_points += s->outputs[c].part == MQ_PART_ZERO_POINT;
			shapes += s->outputs[c].part == MQ_PART_SHAPE;
		}
		assert_int_equal(scales, s->granularities != 0);
		assert_int_equal(zero_points, s->granularities && !s->symmetric);
		assert_int_equal(shapes, s->pack != 1);
		float x[3] = { -1.0f, 0.25f, 2.0f };
		struct mq_qparams p = params_of(s, x, 3);
		if (s->symmetric)
			assert_int_equal(p.zero_point, 0);
		else
			assert_true(p.zero_point >= s->qmin && p.zero_point <= s->qmax);
	}
	enum mq_scheme none;
	assert_int_equal(mq_scheme_parse("uint8", &none), -1);
	assert_int_equal(mq_scheme_parse("int3", &none), -1);
	assert_int_equal(mq_scheme_parse("int4", &none), 0); /* a row since the pack-quantized rows */
	assert_int_equal(none, MQ_SCHEME_INT4);
}

/*
 * The output tensors of a quantized weight, exactly what the plan lays out (README, "Output
 * tensors"): the data in the storage dtype and the weight's shape (the last dimension in words
 * where packed); weight_scale F32, or the weight's own dtype (F16, BF16, else F32) where the row
 * says SOURCE, as pack-quantized does (LOWBIT.md A.3); weight_zero_point in the storage dtype,
 * [out, 1] per channel, [1] per tensor, [out, cols / group] in groups, and packed along the rows,
 * [ceil(out / pack), groups], where the data is packed; weight_shape I64 [ndim].
 */
static void check_companion(const struct mq_scheme_traits *s, const struct mq_companion *o, enum mq_granularity g,
			    uint64_t group, int ndim, const uint64_t *shape)
{
	static const enum mq_dtype sources[] = { MQ_DTYPE_F32, MQ_DTYPE_F16, MQ_DTYPE_BF16, MQ_DTYPE_F64 };
	uint64_t out[8];
	int nd = mq_companion_shape(s, o, g, group, ndim, shape, out);
	enum mq_dtype dt = mq_companion_dtype(s, o, MQ_DTYPE_F32);
	uint64_t cols = 1;
	for (int d = 1; d < ndim; d++)
		cols *= shape[d];
	switch (o->part) {
	case MQ_PART_DATA:
		assert_int_equal(dt, s->storage);
		assert_int_equal(nd, ndim);
		assert_int_equal(out[ndim - 1] * (uint64_t)s->pack, shape[ndim - 1]);
		assert_memory_equal(out, shape, (size_t)(ndim - 1) * sizeof(*shape));
		return;
	case MQ_PART_SHAPE:
		assert_string_equal(o->suffix, "weight_shape");
		assert_int_equal(dt, MQ_DTYPE_I64);
		assert_int_equal(nd, 1);
		assert_int_equal(out[0], ndim);
		return;
	case MQ_PART_SCALE:
		assert_string_equal(o->suffix, "weight_scale");
		for (size_t k = 0; k < sizeof(sources) / sizeof(sources[0]); k++) {
			enum mq_dtype src = sources[k], want = MQ_DTYPE_F32;
			if (o->dtype_rule == MQ_PART_DTYPE_SOURCE && (src == MQ_DTYPE_F16 || src == MQ_DTYPE_BF16))
				want = src;
			assert_int_equal(mq_companion_dtype(s, o, src), want);
			assert_int_equal(mq_scheme_scale_dtype(s, src), want);
		}
		break;
	case MQ_PART_ZERO_POINT:
		assert_string_equal(o->suffix, "weight_zero_point");
		assert_int_equal(dt, s->storage);
		break;
	}
	assert_int_equal(nd, g == MQ_GRAN_TENSOR ? 1 : 2);
	if (g == MQ_GRAN_TENSOR) {
		assert_int_equal(out[0], 1);
		return;
	}
	uint64_t rows = shape[0];
	if (o->part == MQ_PART_ZERO_POINT && s->pack != 1)
		rows = (rows + (uint64_t)s->pack - 1) / (uint64_t)s->pack;
	assert_int_equal(out[0], rows);
	assert_int_equal(out[1], g == MQ_GRAN_GROUP ? cols / group : 1);
}

/* mq_scheme_granularity's rule (scheme.h): none, tensor where asked and taken, group where taken, channel. */
static enum mq_granularity granularity_wanted(const struct mq_scheme_traits *s, int per_tensor, int group_size)
{
	if (!s->granularities)
		return MQ_GRAN_NONE;
	if (per_tensor && (s->granularities & MQ_GRAN_BIT(MQ_GRAN_TENSOR)))
		return MQ_GRAN_TENSOR;
	if (group_size != MQ_GROUP_CHANNEL && (s->granularities & MQ_GRAN_BIT(MQ_GRAN_GROUP)))
		return MQ_GRAN_GROUP;
	return MQ_GRAN_CHANNEL;
}

static void test_scheme_outputs_follow_the_granularity(void **state)
{
	(void)state;
	static const int group_sizes[] = { MQ_GROUP_CHANNEL, 0, 32 };
	for (int k = 0; k < mq_scheme_count(); k++) {
		const struct mq_scheme_traits *s = row((enum mq_scheme)k);
		/*
		 * [6, 10] and [4, 3, 2, 2] as before; a packed row's last dimension holds whole words and
		 * its 9 rows part of a second word of zero points
		 */
		uint64_t pk = (uint64_t)s->pack, group = 2 * pk;
		const uint64_t w2[2] = { pk == 1 ? 6 : 9, 10 * pk }, w4[4] = { 4, 3, 2, 2 * pk };
		for (int pt = 0; pt <= 1; pt++) {
			enum mq_granularity g = mq_scheme_granularity(s, pt, MQ_GROUP_CHANNEL);
			if (s->granularities & MQ_GRAN_BIT(MQ_GRAN_TENSOR)) /* the old rows: tensor or channel */
				assert_int_equal(g, pt ? MQ_GRAN_TENSOR : MQ_GRAN_CHANNEL);
			for (size_t gi = 0; gi < sizeof(group_sizes) / sizeof(group_sizes[0]); gi++) {
				g = mq_scheme_granularity(s, pt, group_sizes[gi]);
				assert_int_equal(g, granularity_wanted(s, pt, group_sizes[gi]));
				assert_true(g == MQ_GRAN_NONE || (s->granularities & MQ_GRAN_BIT(g)));
				for (int c = 0; c < s->n_outputs; c++) {
					check_companion(s, &s->outputs[c], g, group, 2, w2);
					check_companion(s, &s->outputs[c], g, group, 4, w4);
				}
			}
		}
		if (!s->granularities)
			assert_int_equal(mq_scheme_granularity(s, 1, 0), MQ_GRAN_NONE);
		if (s->pack != 1) /* pack-quantized: model-dtype scales (LOWBIT.md A.3) */
			assert_int_equal(mq_scheme_part(s, MQ_PART_SCALE)->dtype_rule, MQ_PART_DTYPE_SOURCE);
	}
	assert_string_equal(mq_granularity_name(MQ_GRAN_NONE), "none");
	assert_string_equal(mq_granularity_name(MQ_GRAN_TENSOR), "tensor");
	assert_string_equal(mq_granularity_name(MQ_GRAN_CHANNEL), "channel");
	assert_string_equal(mq_granularity_name(MQ_GRAN_GROUP), "group");
}

/*
 * Groups: group k of a row is quantized with p[k], exactly as that group alone would be; fast and
 * reference agree for groups of a multiple of 8 (the vector path) and for others (the reference);
 * the same parameters for every group give the bytes and sums of one group.
 */
static void test_scheme_groups_take_their_own_parameters(void **state)
{
	(void)state;
	static const size_t groups[] = { 240, 48, 30 };
	uint32_t seed = 99;
	float x[240];
	unsigned char q[960], alone[960];
	for (int k = 0; k < mq_scheme_count(); k++) {
		const struct mq_scheme_traits *s = row((enum mq_scheme)k);
		random_row(&seed, x, 240, s->limit);
		for (size_t gi = 0; gi < sizeof(groups) / sizeof(groups[0]); gi++) {
			size_t g = groups[gi], ng = 240 / g;
			if (g % (size_t)s->pack)
				continue; /* a packed group is whole words, or group k's bytes would not be its own */
			struct mq_qparams p[8], same[8];
			for (size_t j = 0; j < ng; j++) {
				for (size_t i = j * g; i < (j + 1) * g; i++)
					x[i] *= (float)(j + 1) / 4.0f;
				p[j] = params_of(s, x + j * g, g);
				same[j] = p[0];
			}
			struct mq_err_acc acc, one, acc_alone = { 0, 0, 0 };
			quant_groups_both(s, x, 240, g, p, q, &acc);
			size_t gb = (size_t)mq_scheme_bytes(s, g);
			for (size_t j = 0; j < ng; j++) {
				s->quantize_ref(s, x + j * g, g, g, &p[j], NULL, alone, &acc_alone);
				assert_memory_equal(q + j * gb, alone, gb);
			}
			quant_groups_both(s, x, 240, g, same, q, &acc);
			quant_groups_both(s, x, 240, 240, same, alone, &one);
			assert_memory_equal(q, alone, mq_scheme_bytes(s, 240));
			assert_memory_equal(&acc, &one, sizeof(acc));
		}
	}
}

/* Round to nearest takes no notice of the importance vector (kernel.h: activation-aware methods will). */
static void test_scheme_round_to_nearest_ignores_importance(void **state)
{
	(void)state;
	uint32_t seed = 5;
	float x[200], w[200];
	unsigned char a[800], b[800];
	for (size_t i = 0; i < 200; i++)
		w[i] = (float)(lcg(&seed) % 1000) / 10.0f;
	for (int k = 0; k < mq_scheme_count(); k++) {
		const struct mq_scheme_traits *s = row((enum mq_scheme)k);
		random_row(&seed, x, 200, s->limit);
		struct mq_qparams p = params_of(s, x, 200);
		for (int fast = 0; fast <= 1; fast++) {
			mq_quant_fn f = fast && s->quantize ? s->quantize : s->quantize_ref;
			struct mq_err_acc ea = { 0, 0, 0 }, eb = { 0, 0, 0 };
			size_t na = f(s, x, 200, 200, &p, NULL, a, &ea), nb = f(s, x, 200, 200, &p, w, b, &eb);
			assert_int_equal(na, nb);
			assert_memory_equal(a, b, na);
			assert_memory_equal(&ea, &eb, sizeof(ea));
		}
	}
}

/* --help's scheme list and the unknown-scheme error come from the rows (cli/options.c prints them). */
static void test_scheme_help_lists_every_row(void **state)
{
	(void)state;
	struct mq_buf h = MQ_BUF_INIT, names = MQ_BUF_INIT, other = MQ_BUF_INIT;
	mq_scheme_help(&h, MQ_SCHEME_INT8);
	mq_scheme_names(&names);
	mq_scheme_help(&other, MQ_SCHEME_BF16);
	assert_true(mq_buf_ok(&h) && mq_buf_ok(&names) && mq_buf_ok(&other));
	for (int k = 0; k < mq_scheme_count(); k++) {
		assert_non_null(strstr(h.data, row((enum mq_scheme)k)->name));
		assert_non_null(strstr(names.data, row((enum mq_scheme)k)->name));
	}
	/* today's text, word for word (rows added after these four follow it) */
	const char *today = "int8 (symmetric, default), int8-asym (with zero points), fp16 or bf16 (casts)";
	assert_memory_equal(h.data, today, strlen(today));
	assert_true(h.data[strlen(today)] == '\0' || strncmp(h.data + strlen(today), ", ", 2) == 0);
	assert_memory_equal(names.data, "int8, int8-asym, fp16", strlen("int8, int8-asym, fp16"));
	/* the default is named, and not merged with its neighbours */
	assert_non_null(strstr(other.data, "int8 (symmetric), int8-asym (with zero points), fp16 (casts), "
					   "bf16 (casts, default)"));
	mq_buf_release(&h);
	mq_buf_release(&names);
	mq_buf_release(&other);
}

#ifdef MQ_TEST_DUMMY_SCHEME
/*
 * The demonstration: "int8-dummy" is one row in scheme.c plus one kernel (unit/quant/k_dummy.c),
 * and nothing else. It is found by name, listed by --help, and every loop over the table above
 * (rounding bound, outputs, groups, importance) ran on it unchanged.
 */
static void test_scheme_dummy_row_needs_nothing_else(void **state)
{
	(void)state;
	enum mq_scheme d;
	assert_int_equal(mq_scheme_parse("int8-dummy", &d), 0);
	assert_int_equal((int)d, mq_scheme_count() - 1);
	const struct mq_scheme_traits *s = row(d);
	assert_null(s->quantize);
	struct mq_buf h = MQ_BUF_INIT, names = MQ_BUF_INIT;
	mq_scheme_help(&h, MQ_SCHEME_INT8);
	mq_scheme_names(&names);
	assert_string_equal(h.data, "int8 (symmetric, default), int8-asym (with zero points), fp16 or bf16 (casts), "
				    "int4 (W4A16 in groups), int4-asym (W4A16 with zero points), "
				    "w8a16 (int8 weight-only in groups), "
				    "w8a16-asym (int8 weight-only with zero points), "
				    "fp8 (float8 e4m3), int8-dummy (test only)");
	assert_string_equal(names.data, "int8, int8-asym, fp16, bf16, int4, int4-asym, w8a16, w8a16-asym, fp8 "
					"or int8-dummy");
	mq_buf_release(&h);
	mq_buf_release(&names);
	/* a weight [6, 10]: P.weight I8 [6, 10] and P.weight_scale F32 [6, 1], or [1] per tensor */
	static const uint64_t w[2] = { 6, 10 };
	uint64_t out[8];
	assert_int_equal(s->n_outputs, 2);
	assert_int_equal(mq_companion_shape(s, &s->outputs[0], MQ_GRAN_CHANNEL, 0, 2, w, out), 2);
	assert_true(out[0] == 6 && out[1] == 10 && mq_companion_dtype(s, &s->outputs[0], MQ_DTYPE_F32) == MQ_DTYPE_I8);
	assert_int_equal(mq_companion_shape(s, &s->outputs[1], MQ_GRAN_CHANNEL, 0, 2, w, out), 2);
	assert_true(out[0] == 6 && out[1] == 1 && mq_companion_dtype(s, &s->outputs[1], MQ_DTYPE_F32) == MQ_DTYPE_F32);
	assert_int_equal(mq_companion_shape(s, &s->outputs[1], MQ_GRAN_TENSOR, 0, 2, w, out), 1);
	assert_true(out[0] == 1);
	/* its narrow grid: s = max|x| / 127, and -max lands on -127, not -128 */
	float x[3] = { -2.54f, 0.0f, 2.54f };
	struct mq_qparams p = params_of(s, x, 3);
	assert_true(p.scale == 2.54f / 127.0f);
	int8_t q[3];
	struct mq_err_acc acc;
	quant_both(s, x, 3, p, q, &acc);
	assert_int_equal(q[0], -127);
	assert_int_equal(q[2], 127);
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quant_int8_known_values),
		cmocka_unit_test(test_quant_zero_row_gets_epsilon_scale),
		cmocka_unit_test(test_quant_constant_row),
		cmocka_unit_test(test_quant_one_outlier_dominates_scale),
		cmocka_unit_test(test_quant_round_half_to_even),
		cmocka_unit_test(test_quant_int8_asym_range),
		cmocka_unit_test(test_quant_asym_range_beyond_float_max),
		cmocka_unit_test(test_quant_range_reports_nan_and_inf),
		cmocka_unit_test(test_quant_fast_kernel_matches_reference),
		cmocka_unit_test(test_quant_fast_kernel_matches_reference_on_ties),
		cmocka_unit_test(test_quant_int8_asym_is_unsigned_minus_128),
		cmocka_unit_test(test_quant_casts_round_to_nearest_even),
		cmocka_unit_test(test_scheme_every_row_is_within_one_rounding),
		cmocka_unit_test(test_scheme_rows_are_consistent),
		cmocka_unit_test(test_scheme_outputs_follow_the_granularity),
		cmocka_unit_test(test_scheme_groups_take_their_own_parameters),
		cmocka_unit_test(test_scheme_round_to_nearest_ignores_importance),
		cmocka_unit_test(test_scheme_help_lists_every_row),
#ifdef MQ_TEST_DUMMY_SCHEME
		cmocka_unit_test(test_scheme_dummy_row_needs_nothing_else),
#endif
	};
	return cmocka_run_group_tests_name("quant", tests, NULL, NULL);
}
