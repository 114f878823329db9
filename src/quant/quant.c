#include "quant.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const struct mq_scheme_info schemes[MQ_SCHEME_COUNT] = {
	[MQ_SCHEME_INT8] = { "int8", "int8", MQ_DTYPE_I8, 1, 0, -128, 127 },
	[MQ_SCHEME_INT8_ASYM] = { "int8-asym", "int8", MQ_DTYPE_I8, 0, 0, -128, 127 },
	[MQ_SCHEME_FP16] = { "fp16", "float16", MQ_DTYPE_F16, 1, 1, 0, 0 },
	[MQ_SCHEME_BF16] = { "bf16", "bfloat16", MQ_DTYPE_BF16, 1, 1, 0, 0 },
};

const struct mq_scheme_info *mq_scheme_get(enum mq_scheme s)
{
	return &schemes[s];
}

int mq_scheme_parse(const char *name, enum mq_scheme *out)
{
	for (int s = 0; s < MQ_SCHEME_COUNT; s++) {
		if (strcmp(schemes[s].name, name) == 0) {
			*out = (enum mq_scheme)s;
			return 0;
		}
	}
	return -1;
}

static int use_avx2(void);
#if defined(__x86_64__) && defined(__GNUC__)
static int range_avx2(struct mq_range *r, const float *x, size_t n);
#define MQ_HAVE_AVX2_KERNELS 1
#endif

void mq_range_init(struct mq_range *r)
{
	r->absmax_bits = 0;
	r->min_key = INT32_MAX;
	r->max_key = INT32_MIN;
	r->empty = 1;
}

int mq_range_update(struct mq_range *r, const float *x, size_t n, size_t *bad)
{
	if (n == 0)
		return 0;
	const uint32_t *u = (const uint32_t *)(const void *)x;
	size_t i0 = 0;
#ifdef MQ_HAVE_AVX2_KERNELS
	if (use_avx2())
		i0 = (size_t)range_avx2(r, x, n);
#endif
	uint32_t amax = r->absmax_bits;
	int32_t mn = r->min_key, mx = r->max_key;
	for (size_t i = i0; i < n; i++) {
		uint32_t a = u[i] & 0x7fffffffu;
		amax = a > amax ? a : amax;
		int32_t k = (int32_t)(u[i] ^ ((uint32_t)((int32_t)u[i] >> 31) & 0x7fffffffu));
		mn = k < mn ? k : mn;
		mx = k > mx ? k : mx;
	}
	if (amax >= 0x7f800000u) { /* a NaN or an Inf somewhere: find the first */
		for (size_t i = 0; i < n; i++) {
			if ((u[i] & 0x7fffffffu) >= 0x7f800000u) {
				*bad = i;
				return -1;
			}
		}
	}
	r->absmax_bits = amax;
	r->min_key = mn;
	r->max_key = mx;
	r->empty = 0;
	return 0;
}

struct mq_qparams mq_quant_params(enum mq_scheme s, const struct mq_range *r)
{
	struct mq_qparams p = { 1.0f, 0 };
	if (schemes[s].is_cast || r->empty)
		return p;
	if (s == MQ_SCHEME_INT8) {
		float amax = mq_f32_from_bits(r->absmax_bits);
		p.scale = amax / 127.5f;
	} else {
		float mn = mq_key_float(r->min_key), mx = mq_key_float(r->max_key);
		mn = mn < 0.0f ? mn : 0.0f;
		mx = mx > 0.0f ? mx : 0.0f;
		p.scale = (mx - mn) / 255.0f;
	}
	if (p.scale < FLT_EPSILON)
		p.scale = FLT_EPSILON;
	if (s == MQ_SCHEME_INT8_ASYM) {
		float mn = mq_key_float(r->min_key);
		mn = mn < 0.0f ? mn : 0.0f;
		p.zero_point = mq_asym_zero_point(mn, p.scale);
	}
	return p;
}

float mq_scheme_limit(enum mq_scheme s)
{
	if (s == MQ_SCHEME_FP16)
		return 65519.99609375f; /* largest float32 that rounds to a finite f16 */
	return FLT_MAX;
}

/* ---- the error sums, in one fixed order ----
 *
 * Element i of a row goes to lane i % 8. Within each run of 64 elements a
 * lane sums in float32 (x*x and e*e, e = x - dequant(q) in float32, in
 * element order); at the end of each run, and of the row, the lane sums are
 * added to float64 lane totals. The row's totals are the lanes added
 * pairwise ((0+1)+(2+3))+((4+5)+(6+7)). Both kernels follow this order, so
 * they agree bit for bit, and the vector kernel needs no float64 per element.
 */

#define LANES 8
#define RUN 64

struct lanes {
	float ps[LANES], pe[LANES], pm[LANES]; /* run sums and lane max |e| */
	double s[LANES], e[LANES];             /* totals */
};

static void lanes_flush(struct lanes *L)
{
	for (int l = 0; l < LANES; l++) {
		L->s[l] += (double)L->ps[l];
		L->e[l] += (double)L->pe[l];
		L->ps[l] = L->pe[l] = 0.0f;
	}
}

static void lanes_fold(const struct lanes *L, struct mq_err_acc *acc)
{
	const double *s = L->s, *e = L->e;
	acc->signal += ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
	acc->noise += ((e[0] + e[1]) + (e[2] + e[3])) + ((e[4] + e[5]) + (e[6] + e[7]));
	double m = acc->max_abs;
	for (int l = 0; l < LANES; l++)
		m = (double)L->pm[l] > m ? (double)L->pm[l] : m;
	acc->max_abs = m;
}

static inline void lanes_add(struct lanes *L, size_t i, float x, float d)
{
	int l = (int)(i % LANES);
	float e = x - d;
	float ae = fabsf(e);
	L->ps[l] += x * x;
	L->pe[l] += e * e;
	L->pm[l] = ae > L->pm[l] ? ae : L->pm[l];
}

/* ---- the reference: one value at a time, library rounding ---- */

static size_t row_ref(enum mq_scheme s, const float *x, size_t n, struct mq_qparams p, void *out,
		      struct lanes *L, size_t i0)
{
	const struct mq_scheme_info *si = &schemes[s];
	const float inv = 1.0f / p.scale;
	for (size_t i = i0; i < n; i++) {
		float d;
		if (si->is_cast) {
			uint16_t h = s == MQ_SCHEME_FP16 ? mq_f32_to_f16(x[i]) : mq_f32_to_bf16(x[i]);
			((uint16_t *)out)[i] = h;
			d = s == MQ_SCHEME_FP16 ? mq_f16_to_f32(h) : mq_bf16_to_f32(h);
		} else {
			long q = lrintf(x[i] * inv) + p.zero_point;
			q = q < si->qmin ? si->qmin : q > si->qmax ? si->qmax : q;
			((int8_t *)out)[i] = (int8_t)q;
			d = mq_dequant(p, (int32_t)q);
		}
		lanes_add(L, i, x[i], d);
		if (i % RUN == RUN - 1)
			lanes_flush(L);
	}
	lanes_flush(L);
	return si->is_cast ? 2 * n : n;
}

size_t mq_quant_row_ref(enum mq_scheme s, const float *x, size_t n, struct mq_qparams p, void *out,
			struct mq_err_acc *acc)
{
	struct lanes L;
	memset(&L, 0, sizeof(L));
	size_t b = row_ref(s, x, n, p, out, &L, 0);
	lanes_fold(&L, acc);
	return b;
}

/* ---- the AVX2 kernels (x86-64, chosen at run time) ---- */

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,f16c")))

/* Quantizes 8 values; returns them dequantized, stores the integers. */
AVX2 static inline __m256 q8_int(__m256 x, __m256 inv, __m256 zp, __m256 lo, __m256 hi, __m256 scale,
				 void *out)
{
	__m256 q = _mm256_round_ps(_mm256_mul_ps(x, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	q = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(q, zp), lo), hi);
	__m256i qi = _mm256_cvtps_epi32(q);
	__m128i w = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
	__m128i b = _mm_packs_epi16(w, w);
	_mm_storel_epi64((__m128i *)out, b);
	return _mm256_mul_ps(_mm256_sub_ps(q, zp), scale);
}

AVX2 static inline __m256 q8_cast(__m256 x, enum mq_scheme s, void *out)
{
	if (s == MQ_SCHEME_FP16) {
		__m128i h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT);
		_mm_storeu_si128((__m128i *)out, h);
		return _mm256_cvtph_ps(h);
	}
	__m256i u = _mm256_castps_si256(x);
	__m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
	__m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
	__m128i h = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
	_mm_storeu_si128((__m128i *)out, h);
	return _mm256_castsi256_ps(_mm256_slli_epi32(r, 16));
}

AVX2 static size_t row_avx2(enum mq_scheme s, const float *x, size_t n, struct mq_qparams p, void *out,
			    struct mq_err_acc *acc)
{
	const struct mq_scheme_info *si = &schemes[s];
	const __m256 inv = _mm256_set1_ps(1.0f / p.scale), scale = _mm256_set1_ps(p.scale);
	const __m256 zp = _mm256_set1_ps((float)p.zero_point);
	const __m256 lo = _mm256_set1_ps((float)si->qmin), hi = _mm256_set1_ps((float)si->qmax);
	const __m256 sign = _mm256_set1_ps(-0.0f);
	const size_t esz = si->is_cast ? 2 : 1, n8 = n - n % LANES;
	__m256d s_lo = _mm256_setzero_pd(), s_hi = s_lo, e_lo = s_lo, e_hi = s_lo;
	__m256 ps = _mm256_setzero_ps(), pe = ps, pm = ps;
	size_t i = 0;
	while (i < n8) {
		ps = pe = _mm256_setzero_ps();
		size_t end = i + RUN < n8 ? i + RUN : n8;
		for (; i < end; i += LANES) {
			__m256 xv = _mm256_loadu_ps(x + i);
			__m256 d = si->is_cast ? q8_cast(xv, s, (char *)out + i * esz)
					       : q8_int(xv, inv, zp, lo, hi, scale, (char *)out + i);
			__m256 e = _mm256_sub_ps(xv, d);
			ps = _mm256_add_ps(ps, _mm256_mul_ps(xv, xv));
			pe = _mm256_add_ps(pe, _mm256_mul_ps(e, e));
			pm = _mm256_max_ps(pm, _mm256_andnot_ps(sign, e));
		}
		if (i % RUN != 0)
			break; /* a run left open at the row's end: the scalar tail continues it */
		s_lo = _mm256_add_pd(s_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(ps)));
		s_hi = _mm256_add_pd(s_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(ps, 1)));
		e_lo = _mm256_add_pd(e_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(pe)));
		e_hi = _mm256_add_pd(e_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(pe, 1)));
		ps = pe = _mm256_setzero_ps();
	}
	struct lanes L;
	_mm256_storeu_ps(L.ps, ps);
	_mm256_storeu_ps(L.pe, pe);
	_mm256_storeu_ps(L.pm, pm);
	_mm256_storeu_pd(L.s, s_lo);
	_mm256_storeu_pd(L.s + 4, s_hi);
	_mm256_storeu_pd(L.e, e_lo);
	_mm256_storeu_pd(L.e + 4, e_hi);
	row_ref(s, x, n, p, out, &L, i); /* the last n % 8 values, then the final flush */
	lanes_fold(&L, acc);
	return n * esz;
}

AVX2 static int range_avx2(struct mq_range *r, const float *x, size_t n)
{
	const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
	__m256i amax = _mm256_set1_epi32((int)r->absmax_bits);
	__m256i mn = _mm256_set1_epi32(r->min_key), mx = _mm256_set1_epi32(r->max_key);
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256i u = _mm256_loadu_si256((const __m256i *)(const void *)(x + i));
		amax = _mm256_max_epu32(amax, _mm256_and_si256(u, abs_mask));
		__m256i k = _mm256_xor_si256(u, _mm256_and_si256(_mm256_srai_epi32(u, 31), abs_mask));
		mn = _mm256_min_epi32(mn, k);
		mx = _mm256_max_epi32(mx, k);
	}
	uint32_t a[8];
	int32_t b[8], c[8];
	_mm256_storeu_si256((__m256i *)(void *)a, amax);
	_mm256_storeu_si256((__m256i *)(void *)b, mn);
	_mm256_storeu_si256((__m256i *)(void *)c, mx);
	for (int l = 0; l < 8; l++) {
		r->absmax_bits = a[l] > r->absmax_bits ? a[l] : r->absmax_bits;
		r->min_key = b[l] < r->min_key ? b[l] : r->min_key;
		r->max_key = c[l] > r->max_key ? c[l] : r->max_key;
	}
	return (int)i;
}

/*
 * AVX2 and F16C, and an OS that saves the YMM registers (XCR0 bits 1 and 2),
 * as gcc's __builtin_cpu_supports checks them; read from cpuid directly
 * because clang 14 does not know the "f16c" feature name.
 */
static int cpu_has_avx2_f16c(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	if (!(c & bit_OSXSAVE) || !(c & bit_AVX) || !(c & bit_F16C))
		return 0;
	unsigned xcr0_lo, xcr0_hi;
	__asm__ __volatile__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
	if ((xcr0_lo & 6u) != 6u)
		return 0;
	if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
		return 0;
	return (b & bit_AVX2) != 0;
}

static int use_avx2(void)
{
	static int have = -1;
	if (have < 0)
		have = cpu_has_avx2_f16c() && !getenv("MQ_NO_SIMD");
	return have;
}
#else
static int use_avx2(void)
{
	return 0;
}
#endif

const char *mq_quant_kernel_name(void)
{
	return use_avx2() ? "avx2" : "scalar";
}

size_t mq_quant_row(enum mq_scheme s, const float *x, size_t n, struct mq_qparams p, void *out,
		    struct mq_err_acc *acc)
{
#ifdef MQ_HAVE_AVX2_KERNELS
	if (use_avx2())
		return row_avx2(s, x, n, p, out, acc);
#endif
	return mq_quant_row_ref(s, x, n, p, out, acc);
}
