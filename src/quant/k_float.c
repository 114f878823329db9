/*
 * k_float: the float storage formats, fp16 and bf16: round to nearest even,
 * no parameters (scale 1). The reference converts in software (dtype.c); the
 * AVX2 kernels 8 values at a time (F16C for fp16, integer rounding for
 * bf16), bit for bit the same values and error sums.
 */
#include "kernel.h"

#include <stdint.h>

struct mq_qparams mq_float_params(const struct mq_scheme_traits *s, const struct mq_range *r, enum mq_dtype scale_dtype)
{
	(void)s;
	(void)r;
	(void)scale_dtype;
	return (struct mq_qparams){ 1.0f, 0 };
}

/* Elements [i, n) of a row into out and L; to and from are the format's conversions. */
static MQ_INLINE void cast_span(const float *x, size_t i, size_t n, uint16_t *out, struct mq_lanes *L,
				uint16_t (*to)(float), float (*from)(uint16_t))
{
	for (; i < n; i++) {
		uint16_t h = to(x[i]);
		out[i] = h;
		mq_lanes_add(L, i, x[i], from(h));
	}
}

static MQ_INLINE size_t cast_ref(const float *x, size_t n, void *out, struct mq_err_acc *acc, uint16_t (*to)(float),
				 float (*from)(uint16_t))
{
	struct mq_lanes L;
	mq_lanes_init(&L);
	cast_span(x, 0, n, out, &L, to, from);
	mq_lanes_end(&L, acc);
	return 2 * n;
}

size_t mq_f16_quantize_ref(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			   const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc)
{
	(void)s;
	(void)group;
	(void)p;
	(void)importance; /* no parameters: groups do not matter */
	return cast_ref(x, n, out, acc, mq_f32_to_f16, mq_f16_to_f32);
}

size_t mq_bf16_quantize_ref(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			    const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc)
{
	(void)s;
	(void)group;
	(void)p;
	(void)importance;
	return cast_ref(x, n, out, acc, mq_f32_to_bf16, mq_bf16_to_f32);
}

void mq_f16_dequantize(const struct mq_scheme_traits *s, const void *q, size_t n, size_t group,
		       const struct mq_qparams *p, float *out)
{
	(void)s;
	(void)group;
	(void)p;
	const uint16_t *h = q;
	for (size_t i = 0; i < n; i++)
		out[i] = mq_f16_to_f32(h[i]);
}

void mq_bf16_dequantize(const struct mq_scheme_traits *s, const void *q, size_t n, size_t group,
			const struct mq_qparams *p, float *out)
{
	(void)s;
	(void)group;
	(void)p;
	const uint16_t *h = q;
	for (size_t i = 0; i < n; i++)
		out[i] = mq_bf16_to_f32(h[i]);
}

#ifdef MQ_HAVE_AVX2
/* Converts 8 values; stores them, returns them widened back. */
MQ_AVX2 static inline __m256 q8_f16(__m256 x, void *out)
{
	__m128i h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT);
	_mm_storeu_si128((__m128i *)out, h);
	return _mm256_cvtph_ps(h);
}

MQ_AVX2 static inline __m256 q8_bf16(__m256 x, void *out)
{
	__m256i u = _mm256_castps_si256(x);
	__m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
	__m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
	__m128i h = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
	_mm_storeu_si128((__m128i *)out, h);
	return _mm256_castsi256_ps(_mm256_slli_epi32(r, 16));
}

MQ_AVX2 static MQ_INLINE size_t cast_avx2(const float *x, size_t n, uint16_t *out, struct mq_err_acc *acc,
					  __m256 (*q8)(__m256, void *), uint16_t (*to)(float), float (*from)(uint16_t))
{
	const size_t n8 = n - n % MQ_STEP;
	struct mq_lanes_avx2 V;
	mq_lanes_avx2_init(&V);
	for (size_t i = 0; i < n8; i += MQ_STEP) {
		__m256 xv = _mm256_loadu_ps(x + i);
		mq_lanes_avx2_add(&V, i, xv, q8(xv, out + i));
	}
	struct mq_lanes L;
	mq_lanes_avx2_store(&V, &L);
	cast_span(x, n8, n, out, &L, to, from);
	mq_lanes_end(&L, acc);
	return 2 * n;
}

MQ_AVX2 static size_t f16_avx2(const float *x, size_t n, void *out, struct mq_err_acc *acc)
{
	return cast_avx2(x, n, out, acc, q8_f16, mq_f32_to_f16, mq_f16_to_f32);
}

MQ_AVX2 static size_t bf16_avx2(const float *x, size_t n, void *out, struct mq_err_acc *acc)
{
	return cast_avx2(x, n, out, acc, q8_bf16, mq_f32_to_bf16, mq_bf16_to_f32);
}
#endif

size_t mq_f16_quantize(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
		       const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc)
{
#ifdef MQ_HAVE_AVX2
	if (mq_cpu_avx2())
		return f16_avx2(x, n, out, acc);
#endif
	return mq_f16_quantize_ref(s, x, n, group, p, importance, out, acc);
}

size_t mq_bf16_quantize(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc)
{
#ifdef MQ_HAVE_AVX2
	if (mq_cpu_avx2())
		return bf16_avx2(x, n, out, acc);
#endif
	return mq_bf16_quantize_ref(s, x, n, group, p, importance, out, acc);
}
