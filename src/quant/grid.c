/*
 * grid: ranges, and the parameters of integer grids. The one home of the
 * grid's formulas (quant.h): the divisors (qmax - qmin) / 2 and
 * qmax - qmin (127.5 and 255 for int8), the FLT_EPSILON floor of the scale,
 * and the zero point. mq_grid_params is the integer rows' params function;
 * observe.c derives the activations' parameters with mq_grid_qparams too.
 */
#include "kernel.h"

#include <float.h>
#include <math.h>
#include <stdint.h>

#ifdef MQ_HAVE_AVX2
static size_t range_avx2(const float *x, size_t n, uint32_t *amax, int32_t *mn, int32_t *mx);
static size_t absmax_avx2(const float *x, size_t n, uint32_t *amax);
static size_t range_half_avx2(const uint16_t *x, size_t n, uint16_t *amax, int16_t *mn, int16_t *mx);
static size_t absmax_half_avx2(const uint16_t *x, size_t n, uint16_t *amax);
#endif

void mq_range_init(struct mq_range *r)
{
	r->absmax_bits = 0;
	r->min_key = INT32_MAX;
	r->max_key = INT32_MIN;
	r->empty = 1;
}

/* The index of the first NaN or Inf of x, or n. */
static size_t first_non_finite(const uint32_t *u, size_t n)
{
	size_t i = 0;
	while (i < n && (u[i] & 0x7fffffffu) < 0x7f800000u)
		i++;
	return i;
}

/* mq_range_update, and with keys 0 mq_range_update_abs. */
static int range_fold(struct mq_range *r, const float *x, size_t n, size_t *bad, int keys)
{
	if (n == 0)
		return 0;
	const uint32_t *u = (const uint32_t *)(const void *)x;
	size_t i0 = 0;
	uint32_t amax = r->absmax_bits;
	int32_t mn = r->min_key, mx = r->max_key;
#ifdef MQ_HAVE_AVX2
	if (mq_cpu_avx2())
		i0 = keys ? range_avx2(x, n, &amax, &mn, &mx) : absmax_avx2(x, n, &amax);
#endif
	for (size_t i = i0; i < n; i++) {
		uint32_t a = u[i] & 0x7fffffffu;
		amax = a > amax ? a : amax;
		int32_t k = (int32_t)(u[i] ^ ((uint32_t)((int32_t)u[i] >> 31) & 0x7fffffffu));
		mn = keys && k < mn ? k : mn;
		mx = keys && k > mx ? k : mx;
	}
	if (amax >= 0x7f800000u) { /* a NaN or an Inf somewhere: find the first */
		size_t i = first_non_finite(u, n);
		if (i < n) {
			*bad = i;
			return -1;
		}
	}
	r->absmax_bits = amax;
	r->min_key = mn;
	r->max_key = mx;
	r->empty = 0;
	return 0;
}

int mq_range_update(struct mq_range *r, const float *x, size_t n, size_t *bad)
{
	return range_fold(r, x, n, bad, 1);
}

int mq_range_update_abs(struct mq_range *r, const float *x, size_t n, size_t *bad)
{
	return range_fold(r, x, n, bad, 0);
}

/*
 * A 16-bit float (bfloat16 or fp16) is sign and magnitude, as float32 is, and
 * widens exactly and in order: so max |x| is the max of b & 0x7fff, widened,
 * and the order key of the widened value is that of the value whose 16-bit
 * key is the least (the greatest) of the row's keys, widened. The folds run
 * on 16-bit lanes, 16 values per AVX2 register, and the result is then folded
 * into r as the widened row's would be. Widened, a bfloat16 b is the float32
 * bits b << 16; an fp16 needs its conversion (subnormals become normal), done
 * on the three values found, not on the row.
 */
static int16_t half_key(uint16_t b)
{
	return (int16_t)(b ^ ((b & 0x8000u) ? 0x7fffu : 0u));
}

/* The 16-bit float b of dtype src (BF16 or F16), widened (exact). */
static float half_widened(uint16_t b, enum mq_dtype src)
{
	return src == MQ_DTYPE_BF16 ? mq_bf16_to_f32(b) : mq_f16_to_f32(b);
}

/* The float32 order key of the widened value whose 16-bit key is k. */
static int32_t half_key_widened(int16_t k, enum mq_dtype src)
{
	return mq_float_key(half_widened((uint16_t)(k < 0 ? (uint16_t)k ^ 0x7fffu : (uint16_t)k), src));
}

static int range_fold_half(struct mq_range *r, const uint16_t *x, enum mq_dtype src, size_t n, size_t *bad, int keys)
{
	if (n == 0)
		return 0;
	/* the first non-finite magnitude: bfloat16's exponent of all ones is float32's, fp16's 0x7c00 */
	const uint16_t inf = src == MQ_DTYPE_F16 ? 0x7c00u : 0x7f80u;
	size_t i0 = 0;
	uint16_t amax = 0;
	int16_t mn = INT16_MAX, mx = INT16_MIN;
#ifdef MQ_HAVE_AVX2
	if (mq_cpu_avx2())
		i0 = keys ? range_half_avx2(x, n, &amax, &mn, &mx) : absmax_half_avx2(x, n, &amax);
#endif
	for (size_t i = i0; i < n; i++) {
		uint16_t a = x[i] & 0x7fffu;
		int16_t k = half_key(x[i]);
		amax = a > amax ? a : amax;
		mn = k < mn ? k : mn;
		mx = k > mx ? k : mx;
	}
	if (amax >= inf) { /* a NaN or an Inf: the first, as the widened row's check finds it */
		size_t i = 0;
		while ((x[i] & 0x7fffu) < inf)
			i++;
		*bad = i;
		return -1;
	}
	const uint32_t a32 = mq_f32_bits(half_widened(amax, src));
	r->absmax_bits = a32 > r->absmax_bits ? a32 : r->absmax_bits;
	if (keys) {
		const int32_t lo = half_key_widened(mn, src), hi = half_key_widened(mx, src);
		r->min_key = lo < r->min_key ? lo : r->min_key;
		r->max_key = hi > r->max_key ? hi : r->max_key;
	}
	r->empty = 0;
	return 0;
}

int mq_range_update_half(struct mq_range *r, const uint16_t *x, enum mq_dtype src, size_t n, size_t *bad)
{
	return range_fold_half(r, x, src, n, bad, 1);
}

int mq_range_update_abs_half(struct mq_range *r, const uint16_t *x, enum mq_dtype src, size_t n, size_t *bad)
{
	return range_fold_half(r, x, src, n, bad, 0);
}

struct mq_qparams mq_grid_qparams(int symmetric, float amax, float lo, float hi, int qmin, int qmax,
				  enum mq_dtype scale_dtype)
{
	struct mq_qparams p = { 0.0f, 0 };
	if (symmetric)
		p.scale = amax / mq_grid_half_steps(qmin, qmax);
	else
		p.scale = (hi - lo) / (float)(qmax - qmin);
	if (!symmetric && isinf(p.scale)) /* hi - lo beyond FLT_MAX (both ends near it): in two parts, finite */
		p.scale = hi / (float)(qmax - qmin) - lo / (float)(qmax - qmin);
	if (p.scale < FLT_EPSILON)
		p.scale = FLT_EPSILON;
	p.scale = mq_scale_round(scale_dtype, p.scale);
	if (p.scale < FLT_EPSILON) /* F16's rounding may go below (2^-23 is a subnormal there) */
		p.scale = FLT_EPSILON;
	if (!symmetric) {
		float z = nearbyintf(0.0f - lo / p.scale);
		p.zero_point = (z < 0.0f ? 0 : z > (float)(qmax - qmin) ? qmax - qmin : (int32_t)z) + qmin;
	}
	return p;
}

struct mq_qparams mq_grid_params(const struct mq_scheme_traits *s, const struct mq_range *r, enum mq_dtype scale_dtype)
{
	if (r->empty)
		return (struct mq_qparams){ 1.0f, 0 };
	float mn = mq_key_float(r->min_key), mx = mq_key_float(r->max_key);
	mn = mn < 0.0f ? mn : 0.0f;
	mx = mx > 0.0f ? mx : 0.0f;
	return mq_grid_qparams(s->symmetric, mq_f32_from_bits(r->absmax_bits), mn, mx, s->qmin, s->qmax, scale_dtype);
}

#ifdef MQ_HAVE_AVX2
/*
 * The whole blocks of 8 of x folded into *amax, *mn, *mx (integer max and min: exact in any
 * order; an AVX-512 form measured no faster, the pass waits on memory); returns the values done.
 */
MQ_AVX2 static size_t range_avx2(const float *x, size_t n, uint32_t *amax_out, int32_t *mn_out, int32_t *mx_out)
{
	const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
	__m256i amax = _mm256_set1_epi32((int)*amax_out);
	__m256i mn = _mm256_set1_epi32(*mn_out), mx = _mm256_set1_epi32(*mx_out);
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
		*amax_out = a[l] > *amax_out ? a[l] : *amax_out;
		*mn_out = b[l] < *mn_out ? b[l] : *mn_out;
		*mx_out = c[l] > *mx_out ? c[l] : *mx_out;
	}
	return i;
}

/* As range_avx2, max |x| alone (its bits: an unsigned integer max). */
MQ_AVX2 static size_t absmax_avx2(const float *x, size_t n, uint32_t *amax_out)
{
	const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
	__m256i amax = _mm256_set1_epi32((int)*amax_out);
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256i u = _mm256_loadu_si256((const __m256i *)(const void *)(x + i));
		amax = _mm256_max_epu32(amax, _mm256_and_si256(u, abs_mask));
	}
	uint32_t a[8];
	_mm256_storeu_si256((__m256i *)(void *)a, amax);
	for (int l = 0; l < 8; l++)
		*amax_out = a[l] > *amax_out ? a[l] : *amax_out;
	return i;
}

/* As range_avx2 (and with keys 0 absmax_avx2), on 16-bit float bits: 16 values a register, in the 16-bit forms above. */
MQ_AVX2 static inline __attribute__((always_inline)) size_t fold_half_avx2(const uint16_t *x, size_t n, uint16_t *amax_out,
									  int16_t *mn_out, int16_t *mx_out, int keys)
{
	const __m256i abs_mask = _mm256_set1_epi16(0x7fff);
	__m256i amax = _mm256_setzero_si256();
	__m256i mn = _mm256_set1_epi16(INT16_MAX), mx = _mm256_set1_epi16(INT16_MIN);
	size_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m256i u = _mm256_loadu_si256((const __m256i *)(const void *)(x + i));
		amax = _mm256_max_epu16(amax, _mm256_and_si256(u, abs_mask));
		if (!keys)
			continue;
		__m256i k = _mm256_xor_si256(u, _mm256_and_si256(_mm256_srai_epi16(u, 15), abs_mask));
		mn = _mm256_min_epi16(mn, k);
		mx = _mm256_max_epi16(mx, k);
	}
	uint16_t a[16];
	int16_t b[16], c[16];
	_mm256_storeu_si256((__m256i *)(void *)a, amax);
	_mm256_storeu_si256((__m256i *)(void *)b, mn);
	_mm256_storeu_si256((__m256i *)(void *)c, mx);
	for (int l = 0; l < 16; l++) {
		*amax_out = a[l] > *amax_out ? a[l] : *amax_out;
		*mn_out = b[l] < *mn_out ? b[l] : *mn_out;
		*mx_out = c[l] > *mx_out ? c[l] : *mx_out;
	}
	return i;
}

MQ_AVX2 static size_t range_half_avx2(const uint16_t *x, size_t n, uint16_t *amax, int16_t *mn, int16_t *mx)
{
	return fold_half_avx2(x, n, amax, mn, mx, 1);
}

MQ_AVX2 static size_t absmax_half_avx2(const uint16_t *x, size_t n, uint16_t *amax)
{
	int16_t mn = INT16_MAX, mx = INT16_MIN; /* not folded */
	return fold_half_avx2(x, n, amax, &mn, &mx, 0);
}
#endif
