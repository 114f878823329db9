#include "dtype.h"

#include <stdlib.h>
#include <string.h>

static const struct {
	const char *name;
	size_t size;
} dtypes[MQ_DTYPE_COUNT] = {
	[MQ_DTYPE_BOOL] = { "BOOL", 1 },
	[MQ_DTYPE_U8] = { "U8", 1 },
	[MQ_DTYPE_I8] = { "I8", 1 },
	[MQ_DTYPE_F8_E5M2] = { "F8_E5M2", 1 },
	[MQ_DTYPE_F8_E4M3] = { "F8_E4M3", 1 },
	[MQ_DTYPE_F8_E8M0] = { "F8_E8M0", 1 },
	[MQ_DTYPE_I16] = { "I16", 2 },
	[MQ_DTYPE_U16] = { "U16", 2 },
	[MQ_DTYPE_F16] = { "F16", 2 },
	[MQ_DTYPE_BF16] = { "BF16", 2 },
	[MQ_DTYPE_I32] = { "I32", 4 },
	[MQ_DTYPE_U32] = { "U32", 4 },
	[MQ_DTYPE_F32] = { "F32", 4 },
	[MQ_DTYPE_F64] = { "F64", 8 },
	[MQ_DTYPE_I64] = { "I64", 8 },
	[MQ_DTYPE_U64] = { "U64", 8 },
	[MQ_DTYPE_C64] = { "C64", 8 },
};

int mq_dtype_parse(const char *name, size_t len, enum mq_dtype *out)
{
	for (int d = 0; d < MQ_DTYPE_COUNT; d++) {
		if (strlen(dtypes[d].name) == len && memcmp(dtypes[d].name, name, len) == 0) {
			*out = (enum mq_dtype)d;
			return 0;
		}
	}
	return -1;
}

const char *mq_dtype_name(enum mq_dtype d)
{
	return (unsigned)d < MQ_DTYPE_COUNT ? dtypes[d].name : "?";
}

size_t mq_dtype_size(enum mq_dtype d)
{
	return (unsigned)d < MQ_DTYPE_COUNT ? dtypes[d].size : 0;
}

int mq_dtype_is_float(enum mq_dtype d)
{
	return d == MQ_DTYPE_F32 || d == MQ_DTYPE_F16 || d == MQ_DTYPE_BF16 || d == MQ_DTYPE_F64;
}

float mq_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t man = h & 0x3ffu;
	uint32_t bits;
	if (exp == 0x1f) {
		bits = sign | 0x7f800000u | (man << 13);
	} else if (exp != 0) {
		bits = sign | ((exp + 112) << 23) | (man << 13);
	} else if (man == 0) {
		bits = sign;
	} else {
		/* subnormal: normalise the mantissa */
		int e = -1;
		do {
			e++;
			man <<= 1;
		} while ((man & 0x400u) == 0);
		bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
	}
	return mq_f32_from_bits(bits);
}

uint16_t mq_f32_to_f16(float f)
{
	uint32_t x = mq_f32_bits(f);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
	uint32_t ax = x & 0x7fffffffu;
	if (ax >= 0x7f800000u) /* Inf or NaN */
		return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0));
	if (ax >= 0x477ff000u) /* rounds to >= 65520: overflow */
		return (uint16_t)(sign | 0x7c00u);
	if (ax < 0x38800000u) { /* below the smallest normal f16: subnormal or zero */
		if (ax < 0x33000000u) /* < 2^-25: rounds to zero (ties-to-even at 2^-25) */
			return sign;
		uint32_t e = ax >> 23;
		uint32_t man = (ax & 0x7fffffu) | 0x800000u;
		uint32_t shift = 126 - e; /* 14..24 */
		uint32_t q = man >> shift;
		uint32_t rem = man & ((1u << shift) - 1);
		uint32_t half = 1u << (shift - 1);
		if (rem > half || (rem == half && (q & 1)))
			q++;
		return (uint16_t)(sign | q);
	}
	/* normal: rebias the exponent, round the 13 dropped bits to even */
	uint32_t r = ax - 0x38000000u;
	uint32_t lsb = (r >> 13) & 1u;
	r += 0xfffu + lsb;
	return (uint16_t)(sign | (r >> 13));
}

uint16_t mq_f32_to_bf16(float f)
{
	uint32_t x = mq_f32_bits(f);
	if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet */
		return (uint16_t)((x >> 16) | 0x40u);
	uint32_t lsb = (x >> 16) & 1u;
	return (uint16_t)((x + 0x7fffu + lsb) >> 16);
}

static float *f16_table;

const float *mq_f16_table(void)
{
	if (!f16_table) {
		float *t = malloc(65536 * sizeof(float));
		if (!t)
			return NULL;
		for (uint32_t i = 0; i < 65536; i++)
			t[i] = mq_f16_to_f32((uint16_t)i);
		f16_table = t;
	}
	return f16_table;
}

void mq_dtype_widen(enum mq_dtype d, const void *src, float *dst, size_t n)
{
	if (d == MQ_DTYPE_F32) {
		memcpy(dst, src, n * sizeof(float));
	} else if (d == MQ_DTYPE_F64) { /* rounded to nearest; beyond the float32 range becomes Inf */
		const double *s = src;
		for (size_t i = 0; i < n; i++)
			dst[i] = (float)s[i];
	} else if (d == MQ_DTYPE_BF16) {
		const uint16_t *s = src;
		uint32_t *o = (uint32_t *)(void *)dst;
		for (size_t i = 0; i < n; i++)
			o[i] = (uint32_t)s[i] << 16;
	} else {
		const uint16_t *s = src;
		const float *t = mq_f16_table();
		for (size_t i = 0; i < n; i++)
			dst[i] = t[s[i]];
	}
}
