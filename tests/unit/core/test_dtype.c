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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dtype_names_and_sizes),
		cmocka_unit_test(test_dtype_f16_round_trips_every_finite_value),
		cmocka_unit_test(test_dtype_f16_rounding_matches_compiler),
		cmocka_unit_test(test_dtype_bf16_rounds_to_nearest_even),
	};
	return cmocka_run_group_tests_name("dtype", tests, NULL, NULL);
}
