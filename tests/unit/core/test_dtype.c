/* 16-bit float conversions: exhaustive round trips and agreement with the compiler's _Float16. */
#include "test_util.h"

#include <math.h>

#include "dtype.h"

static void test_dtype_names_and_sizes(void **state)
{
	(void)state;
	enum mq_dtype d;
	assert_int_equal(mq_dtype_parse("BF16", 4, &d), 0);
	assert_int_equal(d, MQ_DTYPE_BF16);
	assert_int_equal(mq_dtype_size(d), 2);
	assert_int_equal(mq_dtype_parse("F8_E4M3", 7, &d), 0);
	assert_int_equal(mq_dtype_size(d), 1);
	assert_int_equal(mq_dtype_parse("F3", 2, &d), -1);
	assert_string_equal(mq_dtype_name(MQ_DTYPE_I64), "I64");
	assert_true(mq_dtype_is_float(MQ_DTYPE_F16));
	assert_true(mq_dtype_is_float(MQ_DTYPE_F64));
	assert_false(mq_dtype_is_float(MQ_DTYPE_I64));
	/* float64 weights are narrowed to float32, to nearest */
	const double src[4] = { 1.0, 0.1, -3.0e38, 1.0 + 1.0 / (1 << 25) };
	float dst[4];
	mq_dtype_widen(MQ_DTYPE_F64, src, dst, 4);
	assert_true(dst[0] == 1.0f && dst[1] == 0.1f && dst[2] == -3.0e38f && dst[3] == 1.0f);
}

static void test_dtype_f16_round_trips_every_finite_value(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 65536; h++) {
		if (((h >> 10) & 0x1f) == 0x1f)
			continue; /* Inf and NaN */
		float f = mq_f16_to_f32((uint16_t)h);
		assert_int_equal(mq_f32_to_f16(f), h);
		_Float16 c;
		uint16_t hb = (uint16_t)h;
		memcpy(&c, &hb, 2);
		assert_true((float)c == f || (f != f));
	}
}

static void test_dtype_f16_rounding_matches_compiler(void **state)
{
	(void)state;
	uint32_t s = 7;
	for (int i = 0; i < 2000000; i++) {
		s = s * 1664525u + 1013904223u;
		uint32_t bits = s;
		if ((bits & 0x7f800000u) == 0x7f800000u)
			continue;
		float f = mq_f32_from_bits(bits);
		_Float16 c = (_Float16)f;
		uint16_t want;
		memcpy(&want, &c, 2);
		uint16_t got = mq_f32_to_f16(f);
		if (got != want)
			fail_msg("f32 %08x: got %04x want %04x", bits, got, want);
	}
}

static void test_dtype_bf16_rounds_to_nearest_even(void **state)
{
	(void)state;
	assert_int_equal(mq_f32_to_bf16(1.0f), 0x3f80);
	assert_int_equal(mq_f32_to_bf16(mq_f32_from_bits(0x3f808000u)), 0x3f80); /* tie, even below */
	assert_int_equal(mq_f32_to_bf16(mq_f32_from_bits(0x3f818000u)), 0x3f82); /* tie, even above */
	assert_int_equal(mq_f32_to_bf16(mq_f32_from_bits(0x3f808001u)), 0x3f81);
	assert_true(mq_bf16_to_f32(0xc000) == -2.0f);
	uint16_t src[3] = { 0x3c00, 0xc000, 0x0001 };
	float out[3];
	mq_dtype_widen(MQ_DTYPE_F16, src, out, 3);
	assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == ldexpf(1.0f, -24));
}

/* ---- mq_dtype_widen: every vector path against the scalar conversions ---- */

/* Caps the vector level at want; skips (saying so) when this CPU, or the environment, has not got it. */
static void use_path(enum mq_simd want)
{
	mq_dtype_simd_cap(MQ_SIMD_AVX512);
	if (mq_dtype_simd_cap(want) != want) {
		print_message("path '%s' not available here (CPU, MQ_NO_SIMD or MQ_SIMD): skipped\n",
			      mq_dtype_simd_name(want));
		mq_dtype_simd_cap(MQ_SIMD_AVX512);
		skip();
	}
}

/*
 * All 65536 bit patterns of a 16-bit format, widened in one call and in calls of every length
 * up to 40 at odd offsets (the vector blocks' tails): the bits of the scalar conversion, NaNs
 * (and their payloads, signalling ones included) too.
 */
static void widen_every_pattern(enum mq_dtype d, enum mq_simd path)
{
	use_path(path);
	static uint16_t src[65536];
	static float got[65536];
	for (uint32_t h = 0; h < 65536; h++)
		src[h] = (uint16_t)(h * 40503u); /* every pattern once, neighbours far apart */
	mq_dtype_widen(d, src, got, 65536);
	for (size_t at = 0; at + 40 <= 65536; at += 40 + 3) {
		size_t n = at / 43 % 41;
		mq_dtype_widen(d, src + at, got + at, n);
	}
	for (uint32_t i = 0; i < 65536; i++) {
		float want = d == MQ_DTYPE_BF16 ? mq_bf16_to_f32(src[i]) : mq_f16_to_f32(src[i]);
		if (mq_f32_bits(got[i]) != mq_f32_bits(want))
			fail_msg("%s %04x on %s: got %08x want %08x", mq_dtype_name(d), src[i],
				 mq_dtype_simd_name(path), mq_f32_bits(got[i]), mq_f32_bits(want));
	}
	mq_dtype_simd_cap(MQ_SIMD_AVX512);
}

/* Random float64 bit patterns (NaNs, infinities, subnormals, out of range) against the C cast. */
static void widen_f64(enum mq_simd path)
{
	use_path(path);
	static double src[4099];
	static float got[4099];
	uint64_t s = 99;
	for (size_t i = 0; i < 4099; i++) {
		s = s * 6364136223846793005u + 1442695040888963407u;
		uint64_t bits = s;
		if (i % 3 == 0) /* near float32's range and precision */
			bits = (bits & 0x800fffffffffffffu) | (uint64_t)(0x380 + (s >> 52) % 0x100) << 52;
		memcpy(&src[i], &bits, 8);
	}
	mq_dtype_widen(MQ_DTYPE_F64, src + 1, got + 1, 4098);
	mq_dtype_widen(MQ_DTYPE_F64, src, got, 1);
	for (size_t i = 0; i < 4099; i++) {
		float want = (float)src[i];
		assert_int_equal(mq_f32_bits(got[i]), mq_f32_bits(want));
	}
	mq_dtype_simd_cap(MQ_SIMD_AVX512);
}

static void test_dtype_widen_bf16_scalar(void **state)
{
	(void)state;
	widen_every_pattern(MQ_DTYPE_BF16, MQ_SIMD_SCALAR);
}

static void test_dtype_widen_bf16_avx2(void **state)
{
	(void)state;
	widen_every_pattern(MQ_DTYPE_BF16, MQ_SIMD_AVX2);
}

static void test_dtype_widen_bf16_avx512(void **state)
{
	(void)state;
	widen_every_pattern(MQ_DTYPE_BF16, MQ_SIMD_AVX512);
}

static void test_dtype_widen_f16_scalar(void **state)
{
	(void)state;
	widen_every_pattern(MQ_DTYPE_F16, MQ_SIMD_SCALAR);
}

static void test_dtype_widen_f16_avx2(void **state)
{
	(void)state;
	widen_every_pattern(MQ_DTYPE_F16, MQ_SIMD_AVX2);
}

static void test_dtype_widen_f16_avx512(void **state)
{
	(void)state;
	widen_every_pattern(MQ_DTYPE_F16, MQ_SIMD_AVX512);
}

static void test_dtype_widen_f64_avx2(void **state)
{
	(void)state;
	widen_f64(MQ_SIMD_AVX2);
}

static void test_dtype_widen_f64_avx512(void **state)
{
	(void)state;
	widen_f64(MQ_SIMD_AVX512);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dtype_names_and_sizes),
		cmocka_unit_test(test_dtype_f16_round_trips_every_finite_value),
		cmocka_unit_test(test_dtype_f16_rounding_matches_compiler),
		cmocka_unit_test(test_dtype_bf16_rounds_to_nearest_even),
		cmocka_unit_test(test_dtype_widen_bf16_scalar),
		cmocka_unit_test(test_dtype_widen_bf16_avx2),
		cmocka_unit_test(test_dtype_widen_bf16_avx512),
		cmocka_unit_test(test_dtype_widen_f16_scalar),
		cmocka_unit_test(test_dtype_widen_f16_avx2),
		cmocka_unit_test(test_dtype_widen_f16_avx512),
		cmocka_unit_test(test_dtype_widen_f64_avx2),
		cmocka_unit_test(test_dtype_widen_f64_avx512),
	};
	return cmocka_run_group_tests_name("dtype", tests, NULL, NULL);
}
