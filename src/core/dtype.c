/*
 * dtype: names and sizes, the exact 16-bit conversions, the CPU's vector
 * level (shared with src/quant/'s kernels), and the widening of rows, whose
 * vector paths (AVX2 + F16C, AVX-512) give the scalar paths' bits.
 */
#include "dtype.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define MQ_DTYPE_X86 1
#include <cpuid.h>
#include <immintrin.h>
#define MQ_AVX2 __attribute__((target("avx2,f16c")))
#define MQ_AVX512 __attribute__((target("avx2,f16c,avx512f,avx512bw,avx512vl,avx512dq")))
#endif

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

/* ---- the CPU's vector level ---- */

#ifdef MQ_DTYPE_X86
/*
 * What the CPU and the OS allow, read from cpuid and XCR0 directly (clang 14
 * knows no "f16c" feature name): AVX2, FMA and F16C with the YMM state saved
 * (XCR0 bits 1, 2); AVX-512 F, BW, VL, DQ with the opmask and ZMM state too
 * (bits 5, 6, 7).
 */
static enum mq_simd cpu_simd(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return MQ_SIMD_SCALAR;
	if (!(c & bit_OSXSAVE) || !(c & bit_AVX) || !(c & bit_F16C) || !(c & bit_FMA))
		return MQ_SIMD_SCALAR;
	unsigned xcr0_lo, xcr0_hi;
	__asm__ __volatile__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
	if ((xcr0_lo & 6u) != 6u || !__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & bit_AVX2))
		return MQ_SIMD_SCALAR;
	const unsigned avx512 = bit_AVX512F | bit_AVX512BW | bit_AVX512VL | bit_AVX512DQ;
	if ((xcr0_lo & 0xe6u) == 0xe6u && (b & avx512) == avx512)
		return MQ_SIMD_AVX512;
	return MQ_SIMD_AVX2;
}
#else
static enum mq_simd cpu_simd(void)
{
	return MQ_SIMD_SCALAR;
}
#endif

static int simd_detected = -1, simd_cap = MQ_SIMD_AVX512;

/* The CPU's level under the environment's cap (dtype.h). */
static int simd_from_env(void)
{
	int level = (int)cpu_simd(), cap = MQ_SIMD_AVX512;
	const char *want = getenv("MQ_SIMD");
	if (getenv("MQ_NO_SIMD"))
		cap = MQ_SIMD_SCALAR;
	else if (want && strcmp(want, "scalar") == 0)
		cap = MQ_SIMD_SCALAR;
	else if (want && strcmp(want, "avx2") == 0)
		cap = MQ_SIMD_AVX2;
	return level < cap ? level : cap;
}

enum mq_simd mq_dtype_simd(void)
{
	if (simd_detected < 0)
		simd_detected = simd_from_env();
	return (enum mq_simd)(simd_detected < simd_cap ? simd_detected : simd_cap);
}

enum mq_simd mq_dtype_simd_cap(enum mq_simd max)
{
	simd_cap = (int)max;
	return mq_dtype_simd();
}

const char *mq_dtype_simd_name(enum mq_simd level)
{
	static const char *const names[] = { "scalar", "avx2", "avx512" };
	return (unsigned)level <= MQ_SIMD_AVX512 ? names[level] : "?";
}

/* ---- widening ---- */

static void widen_bf16(const uint16_t *s, float *dst, size_t i, size_t n)
{
	uint32_t *o = (uint32_t *)(void *)dst;
	for (; i < n; i++)
		o[i] = (uint32_t)s[i] << 16;
}

static void widen_f16(const uint16_t *s, float *dst, size_t i, size_t n)
{
	const float *t = mq_f16_table();
	if (!t) { /* no memory for the table: convert one at a time */
		for (; i < n; i++)
			dst[i] = mq_f16_to_f32(s[i]);
		return;
	}
	for (; i < n; i++)
		dst[i] = t[s[i]];
}

static void widen_f64(const double *s, float *dst, size_t i, size_t n)
{
	for (; i < n; i++)
		dst[i] = (float)s[i];
}

#ifdef MQ_DTYPE_X86
/*
 * The vector paths: bf16 is a shift; f16 is vcvtph2ps, exact for every
 * finite value and infinity, but it sets the quiet bit of a signalling NaN,
 * which the scalar conversion keeps, so a block holding any NaN is converted
 * by the scalar code (NaN rows are refused later, but the bits stay the same
 * all the same); f64 is vcvtpd2ps, the same rounding (MXCSR's, to nearest)
 * and NaN quieting as the scalar cast's cvtsd2ss. Each returns how far it
 * got; the scalar loops finish.
 *
 * Each also hints the source line n values on from the one it reads into L2,
 * once per 64 bytes of source: in a block of rows back to back that is the
 * next row, fetched from memory while this one is quantized. The kernels'
 * own hint (mq_prefetch_next_row) cannot do it for a widened row: it points
 * past the widened copy, which is no source. A hint never faults.
 */
static inline void prefetch_next(const void *s, size_t n, size_t i, size_t elem)
{
	if (i * elem % 64 == 0)
		_mm_prefetch((const char *)(uintptr_t)((uintptr_t)s + (n + i) * elem), _MM_HINT_T1);
}

MQ_AVX2 static size_t widen_bf16_avx2(const uint16_t *s, float *dst, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		prefetch_next(s, n, i, 2);
		__m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(s + i)));
		_mm256_storeu_si256((__m256i *)(void *)(dst + i), _mm256_slli_epi32(w, 16));
	}
	return i;
}

MQ_AVX2 static size_t widen_f16_avx2(const uint16_t *s, float *dst, size_t n)
{
	const __m128i mag = _mm_set1_epi16(0x7fff), inf = _mm_set1_epi16(0x7c00);
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		prefetch_next(s, n, i, 2);
		__m128i h = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
		if (_mm_movemask_epi8(_mm_cmpgt_epi16(_mm_and_si128(h, mag), inf)))
			widen_f16(s, dst, i, i + 8);
		else
			_mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
	}
	return i;
}

MQ_AVX2 static size_t widen_f64_avx2(const double *s, float *dst, size_t n)
{
	size_t i = 0;
	for (; i + 4 <= n; i += 4) {
		prefetch_next(s, n, i, 8);
		_mm_storeu_ps(dst + i, _mm256_cvtpd_ps(_mm256_loadu_pd(s + i)));
	}
	return i;
}

MQ_AVX512 static size_t widen_bf16_avx512(const uint16_t *s, float *dst, size_t n)
{
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		prefetch_next(s, n, i, 2);
		__m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(s + i)));
		_mm512_storeu_si512((void *)(dst + i), _mm512_slli_epi32(w, 16));
	}
	return i;
}

MQ_AVX512 static size_t widen_f16_avx512(const uint16_t *s, float *dst, size_t n)
{
	const __m256i mag = _mm256_set1_epi16(0x7fff), inf = _mm256_set1_epi16(0x7c00);
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		prefetch_next(s, n, i, 2);
		__m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(s + i));
		if (_mm256_cmpgt_epi16_mask(_mm256_and_si256(h, mag), inf))
			widen_f16(s, dst, i, i + 16);
		else
			_mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
	}
	return i;
}

MQ_AVX512 static size_t widen_f64_avx512(const double *s, float *dst, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		prefetch_next(s, n, i, 8);
		_mm256_storeu_ps(dst + i, _mm512_cvtpd_ps(_mm512_loadu_pd(s + i)));
	}
	return i;
}

/* The values a vector path converted (0 on a scalar CPU, or for F32). */
static size_t widen_vector(enum mq_dtype d, const void *src, float *dst, size_t n)
{
	const enum mq_simd level = mq_dtype_simd();
	if (level == MQ_SIMD_AVX512)
		return d == MQ_DTYPE_BF16  ? widen_bf16_avx512(src, dst, n)
		       : d == MQ_DTYPE_F16 ? widen_f16_avx512(src, dst, n)
		       : d == MQ_DTYPE_F64 ? widen_f64_avx512(src, dst, n)
					   : 0;
	if (level == MQ_SIMD_AVX2)
		return d == MQ_DTYPE_BF16  ? widen_bf16_avx2(src, dst, n)
		       : d == MQ_DTYPE_F16 ? widen_f16_avx2(src, dst, n)
		       : d == MQ_DTYPE_F64 ? widen_f64_avx2(src, dst, n)
					   : 0;
	return 0;
}
#else
static size_t widen_vector(enum mq_dtype d, const void *src, float *dst, size_t n)
{
	(void)d;
	(void)src;
	(void)dst;
	(void)n;
	return 0;
}
#endif

void mq_dtype_widen(enum mq_dtype d, const void *src, float *dst, size_t n)
{
	if (d == MQ_DTYPE_F32) {
		memcpy(dst, src, n * sizeof(float));
		return;
	}
	size_t i = widen_vector(d, src, dst, n);
	if (d == MQ_DTYPE_F64) /* rounded to nearest; beyond the float32 range becomes Inf */
		widen_f64(src, dst, i, n);
	else if (d == MQ_DTYPE_BF16)
		widen_bf16(src, dst, i, n);
	else
		widen_f16(src, dst, i, n);
}
