/*
 * grid: ranges, and the parameters of integer grids. The one home of the
 * grid's formulas (quant.h): the divisors (qmax - qmin) / 2 and
 * qmax - qmin (127.5 and 255 for int8), the FLT_EPSILON floor of the scale,
 * and the zero point. mq_grid_params is the integer rows' params function;
 * observe.c derives the activations' parameters with mq_grid_qparams too.
 */
#include "kernel.h"

#include <float.h>
#include <stdint.h>

#ifdef MQ_HAVE_AVX2
static size_t range_avx2(const float *x, size_t n, uint32_t *amax, int32_t *mn, int32_t *mx);
static size_t absmax_avx2(const float *x, size_t n, uint32_t *amax);
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

struct mq_qparams mq_grid_qparams(int symmetric, float amax, float lo, float hi, int qmin, int qmax,
				  enum mq_dtype scale_dtype)
{
	struct mq_qparams p = { 0.0f, 0 };
	if (symmetric)
		p.scale = amax / mq_grid_half_steps(qmin, qmax);
	else
		p.scale = (hi - lo) / (float)(qmax - qmin);
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
#endif
