/*
 * k_fp8: float8 e4m3fn codes with a float32 scale per tensor or channel, the
 * fp8 row (compressed-tensors float-quantized, LOWBIT.md A.5 and F). The
 * conversion is torch's (c10's fp8e4m3fn_from_fp32_value) bit for bit; the
 * kernel clamps to +-448 first, as compressed-tensors does, so no code is NaN.
 * The AVX2 kernel runs the same integer recipe 8 values at a time, bit for bit
 * the same codes and error sums, and hands what its blocks of 8 do not cover
 * (the last n % 8 values, groups not a multiple of 8) to the reference. The
 * same kernels read bfloat16 and fp16 rows as stored (mq_fp8_quantize_half).
 */
#include "kernel.h"

#include <float.h>
#include <stdint.h>

#define FP8_MAX 448.0f

uint8_t mq_fp8_from_f32(float x)
{
	uint32_t bits = mq_f32_bits(x);
	const uint32_t sign = bits & 0x80000000u;
	bits ^= sign;
	uint8_t r;
	if (bits >= 1087u << 20) { /* 480 and beyond, Inf and NaN: NaN */
		r = 0x7f;
	} else if (bits < 121u << 23) { /* below 2^-6: a subnormal, rounded by the FPU's addition */
		const float denorm = mq_f32_from_bits(141u << 23);
		r = (uint8_t)(mq_f32_bits(mq_f32_from_bits(bits) + denorm) - (141u << 23));
	} else {
		uint32_t odd = (bits >> 20) & 1u;
		bits += ((uint32_t)(7 - 127) << 23) + 0x7ffffu + odd;
		r = (uint8_t)(bits >> 20);
	}
	return (uint8_t)(r | (uint8_t)(sign >> 24));
}

float mq_fp8_to_f32(uint8_t b)
{
	const uint32_t e = (b >> 3) & 15u, m = b & 7u;
	float v;
	if (e == 15 && m == 7)
		v = NAN;
	else if (e == 0)
		v = ldexpf((float)m, -9);
	else
		v = ldexpf((float)(8 + m), (int)e - 10);
	return b & 0x80 ? -v : v;
}

struct mq_qparams mq_fp8_params(const struct mq_scheme_traits *s, const struct mq_range *r, enum mq_dtype scale_dtype)
{
	(void)s;
	if (r->empty)
		return (struct mq_qparams){ 1.0f, 0 };
	float scale = mq_f32_from_bits(r->absmax_bits) / FP8_MAX;
	scale = scale < FLT_EPSILON ? FLT_EPSILON : scale;
	scale = mq_scale_round(scale_dtype, scale);
	return (struct mq_qparams){ scale < FLT_EPSILON ? FLT_EPSILON : scale, 0 };
}

/* Values [i, n) of the row into out and L: divide by the group's scale, clamp, convert. */
static MQ_INLINE void fp8_span(const void *xs, enum mq_dtype src, size_t i, size_t n, size_t group,
				const struct mq_qparams *p, uint8_t *out, struct mq_lanes *L)
{
	for (; i < n; i++) {
		const float scale = p[i / group].scale, x = mq_row_at(xs, i, src);
		float y = x / scale;
		y = y < -FP8_MAX ? -FP8_MAX : y > FP8_MAX ? FP8_MAX : y;
		out[i] = mq_fp8_from_f32(y);
		mq_lanes_add(L, i, x, mq_fp8_to_f32(out[i]) * scale);
	}
}

size_t mq_fp8_quantize_ref(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			   const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc)
{
	(void)s;
	(void)importance;
	struct mq_lanes L;
	mq_lanes_init(&L);
	fp8_span(x, MQ_DTYPE_F32, 0, n, group, p, out, &L);
	mq_lanes_end(&L, acc);
	return n;
}

static size_t fp8_half_ref(const uint16_t *x, enum mq_dtype src, size_t n, size_t group,
			   const struct mq_qparams *p, uint8_t *out, struct mq_err_acc *acc)
{
	struct mq_lanes L;
	mq_lanes_init(&L);
	fp8_span(x, src, 0, n, group, p, out, &L);
	mq_lanes_end(&L, acc);
	return n;
}

#ifdef MQ_HAVE_AVX2
/*
 * mq_fp8_from_f32 on 8 lanes of y clamped to +-448 (so never the NaN code),
 * step for step: the sign set aside, the integer round to nearest even, and
 * where a lane is below 2^-6 (zero included) the FPU's addition of 2^14 (the
 * same rounding as the scalar addition), blended in; a block with no such
 * lane, the common case, skips that step. Returns the codes, one per int32
 * lane, in [0, 255].
 */
MQ_AVX2 static inline __m256i fp8_codes(__m256 y)
{
	const __m256i sign = _mm256_and_si256(_mm256_castps_si256(y), _mm256_set1_epi32(INT32_MIN));
	const __m256i a = _mm256_xor_si256(_mm256_castps_si256(y), sign);
	__m256i odd = _mm256_and_si256(_mm256_srli_epi32(a, 20), _mm256_set1_epi32(1));
	__m256i nrm = _mm256_add_epi32(a, _mm256_set1_epi32((int)(((uint32_t)(7 - 127) << 23) + 0x7ffffu)));
	__m256i r = _mm256_srli_epi32(_mm256_add_epi32(nrm, odd), 20);
	const __m256i tiny = _mm256_cmpgt_epi32(_mm256_set1_epi32(121 << 23), a);
	if (!_mm256_testz_si256(tiny, tiny)) {
		const __m256 denorm = _mm256_castsi256_ps(_mm256_set1_epi32(141 << 23));
		__m256i sub = _mm256_castps_si256(_mm256_add_ps(_mm256_castsi256_ps(a), denorm));
		r = _mm256_blendv_epi8(r, _mm256_sub_epi32(sub, _mm256_set1_epi32(141 << 23)), tiny);
	}
	return _mm256_or_si256(r, _mm256_srli_epi32(sign, 24));
}

/*
 * The exact values of codes r (mq_fp8_to_f32, but for 0x7f, which a clamped
 * value never gets): a normal code's bits shifted into a float32 with the
 * exponent rebiased (+120), a subnormal's m * 2^-9 (blended in only where a
 * block has one, zero included), the sign put back.
 */
MQ_AVX2 static inline __m256 fp8_values(__m256i r)
{
	const __m256i mag = _mm256_and_si256(r, _mm256_set1_epi32(0x7f));
	__m256 v = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_slli_epi32(mag, 20), _mm256_set1_epi32(120 << 23)));
	const __m256i tiny = _mm256_cmpgt_epi32(_mm256_set1_epi32(8), mag);
	if (!_mm256_testz_si256(tiny, tiny)) {
		__m256 sub = _mm256_mul_ps(_mm256_cvtepi32_ps(mag), _mm256_set1_ps(0.001953125f)); /* m < 8 here */
		v = _mm256_blendv_ps(v, sub, _mm256_castsi256_ps(tiny));
	}
	return _mm256_or_ps(v, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_srli_epi32(r, 7), 31)));
}

/* fp8_codes on 16 lanes, the blend a masked move. */
MQ_AVX512 static inline __m512i fp8_codes16(__m512 y)
{
	const __m512i sign = _mm512_and_si512(_mm512_castps_si512(y), _mm512_set1_epi32(INT32_MIN));
	const __m512i a = _mm512_xor_si512(_mm512_castps_si512(y), sign);
	__m512i odd = _mm512_and_si512(_mm512_srli_epi32(a, 20), _mm512_set1_epi32(1));
	__m512i nrm = _mm512_add_epi32(a, _mm512_set1_epi32((int)(((uint32_t)(7 - 127) << 23) + 0x7ffffu)));
	__m512i r = _mm512_srli_epi32(_mm512_add_epi32(nrm, odd), 20);
	const __mmask16 tiny = _mm512_cmplt_epi32_mask(a, _mm512_set1_epi32(121 << 23));
	if (tiny) {
		const __m512 denorm = _mm512_castsi512_ps(_mm512_set1_epi32(141 << 23));
		__m512i sub = _mm512_castps_si512(_mm512_add_ps(_mm512_castsi512_ps(a), denorm));
		r = _mm512_mask_sub_epi32(r, tiny, sub, _mm512_set1_epi32(141 << 23));
	}
	return _mm512_or_si512(r, _mm512_srli_epi32(sign, 24));
}

/* fp8_values on 16 lanes. */
MQ_AVX512 static inline __m512 fp8_values16(__m512i r)
{
	const __m512i mag = _mm512_and_si512(r, _mm512_set1_epi32(0x7f));
	__m512 v = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_slli_epi32(mag, 20), _mm512_set1_epi32(120 << 23)));
	const __mmask16 tiny = _mm512_cmplt_epi32_mask(mag, _mm512_set1_epi32(8));
	if (tiny)
		v = _mm512_mask_mul_ps(v, tiny, _mm512_cvtepi32_ps(mag), _mm512_set1_ps(0.001953125f)); /* m < 8 */
	return _mm512_or_ps(v, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_srli_epi32(r, 7), 31)));
}

/*
 * Values [i, end) of one group, end - i a multiple of 8: 16 at a time where they fill
 * the 16 lanes, a block of 8 as fp8_avx2 does at either edge of a group that cuts them.
 */
MQ_AVX512 static MQ_INLINE size_t fp8_group_avx512(const void *x, enum mq_dtype src, size_t n, size_t i, size_t end,
						 float scale1, uint8_t *out, struct mq_lanes_avx512 *W)
{
	const __m512 top = _mm512_set1_ps(FP8_MAX), bottom = _mm512_set1_ps(-FP8_MAX), scale = _mm512_set1_ps(scale1);
	for (;;) {
		for (; i % MQ_LANES == 0 && i + MQ_LANES <= end; i += MQ_LANES) {
			__m512 xv = mq_load16(x, i, src);
			mq_prefetch_next_row_of(x, n, i, src);
			__m512 y = _mm512_min_ps(_mm512_max_ps(_mm512_div_ps(xv, scale), bottom), top);
			__m512i r = fp8_codes16(y);
			_mm_storeu_si128((__m128i *)(void *)(out + i), _mm512_cvtepi32_epi8(r));
			mq_lanes_avx512_add(W, i, xv, _mm512_mul_ps(fp8_values16(r), scale));
		}
		if (i >= end)
			break;
		__m256 xv = mq_load8(x, i, src), s8 = _mm512_castps512_ps256(scale);
		__m256 y = _mm256_min_ps(_mm256_max_ps(_mm256_div_ps(xv, s8), _mm512_castps512_ps256(bottom)),
					 _mm512_castps512_ps256(top));
		__m256i r = fp8_codes(y);
		_mm_storel_epi64((__m128i *)(void *)(out + i), mq_avx2_bytes8(r));
		mq_lanes_avx512_add8(W, i, xv, _mm256_mul_ps(fp8_values(r), s8));
		i += MQ_STEP;
	}
	return i;
}

MQ_AVX512 static MQ_INLINE size_t fp8_avx512_of(const void *x, enum mq_dtype src, size_t n, size_t group,
					       const struct mq_qparams *p, uint8_t *out, struct mq_err_acc *acc)
{
	const size_t span = mq_vector_span(n, group);
	struct mq_lanes_avx512 W;
	mq_lanes_avx512_init(&W);
	for (size_t i = 0; i < span;) {
		size_t end = i + group < span ? i + group : span;
		i = fp8_group_avx512(x, src, n, i, end, p[i / group].scale, out, &W);
	}
	struct mq_lanes L;
	mq_lanes_avx512_store(&W, &L);
	fp8_span(x, src, span, n, group, p, out, &L);
	mq_lanes_end(&L, acc);
	return n;
}

MQ_AVX2 static MQ_INLINE size_t fp8_avx2_of(const void *x, enum mq_dtype src, size_t n, size_t group,
					   const struct mq_qparams *p, uint8_t *out, struct mq_err_acc *acc)
{
	const size_t span = mq_vector_span(n, group);
	const __m256 top = _mm256_set1_ps(FP8_MAX), bottom = _mm256_set1_ps(-FP8_MAX);
	struct mq_lanes_avx2 V;
	mq_lanes_avx2_init(&V);
	for (size_t i = 0; i < span;) {
		const __m256 scale = _mm256_set1_ps(p[i / group].scale);
		size_t end = i + group < span ? i + group : span;
		for (; i < end; i += MQ_STEP) {
			__m256 xv = mq_load8(x, i, src);
			if (i % 16 == 0)
				mq_prefetch_next_row_of(x, n, i, src);
			__m256 y = _mm256_min_ps(_mm256_max_ps(_mm256_div_ps(xv, scale), bottom), top);
			__m256i r = fp8_codes(y);
			_mm_storel_epi64((__m128i *)(void *)(out + i), mq_avx2_bytes8(r));
			mq_lanes_avx2_add(&V, i, xv, _mm256_mul_ps(fp8_values(r), scale));
		}
	}
	struct mq_lanes L;
	mq_lanes_avx2_store(&V, &L);
	fp8_span(x, src, span, n, group, p, out, &L);
	mq_lanes_end(&L, acc);
	return n;
}

MQ_AVX512 static size_t fp8_avx512(const float *x, size_t n, size_t group, const struct mq_qparams *p, uint8_t *out,
				   struct mq_err_acc *acc)
{
	return fp8_avx512_of(x, MQ_DTYPE_F32, n, group, p, out, acc);
}

MQ_AVX512 static size_t fp8_half_avx512(const uint16_t *x, enum mq_dtype src, size_t n, size_t group,
					const struct mq_qparams *p, uint8_t *out, struct mq_err_acc *acc)
{
	if (src == MQ_DTYPE_F16)
		return fp8_avx512_of(x, MQ_DTYPE_F16, n, group, p, out, acc);
	return fp8_avx512_of(x, MQ_DTYPE_BF16, n, group, p, out, acc);
}

MQ_AVX2 static size_t fp8_avx2(const float *x, size_t n, size_t group, const struct mq_qparams *p, uint8_t *out,
			       struct mq_err_acc *acc)
{
	return fp8_avx2_of(x, MQ_DTYPE_F32, n, group, p, out, acc);
}

MQ_AVX2 static size_t fp8_half_avx2(const uint16_t *x, enum mq_dtype src, size_t n, size_t group,
				    const struct mq_qparams *p, uint8_t *out, struct mq_err_acc *acc)
{
	if (src == MQ_DTYPE_F16)
		return fp8_avx2_of(x, MQ_DTYPE_F16, n, group, p, out, acc);
	return fp8_avx2_of(x, MQ_DTYPE_BF16, n, group, p, out, acc);
}
#endif

size_t mq_fp8_quantize_half(const struct mq_scheme_traits *s, const uint16_t *x, enum mq_dtype src, size_t n,
			    size_t group, const struct mq_qparams *p, void *out, struct mq_err_acc *acc)
{
	(void)s;
#ifdef MQ_HAVE_AVX2
	if (mq_cpu_avx512())
		return fp8_half_avx512(x, src, n, group, p, out, acc);
	if (mq_cpu_avx2())
		return fp8_half_avx2(x, src, n, group, p, out, acc);
#endif
	return fp8_half_ref(x, src, n, group, p, out, acc);
}

size_t mq_fp8_quantize(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
		       const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc)
{
#ifdef MQ_HAVE_AVX2
	if (mq_cpu_avx512())
		return fp8_avx512(x, n, group, p, out, acc);
	if (mq_cpu_avx2())
		return fp8_avx2(x, n, group, p, out, acc);
#endif
	return mq_fp8_quantize_ref(s, x, n, group, p, importance, out, acc);
}

void mq_fp8_dequantize(const struct mq_scheme_traits *s, const void *q, size_t n, size_t group,
		       const struct mq_qparams *p, float *out)
{
	(void)s;
	const uint8_t *c = q;
	for (size_t i = 0; i < n; i++)
		out[i] = mq_fp8_to_f32(c[i]) * p[i / group].scale;
}
