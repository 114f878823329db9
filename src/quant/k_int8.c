/*
 * k_int8: one signed byte per value on an integer grid within [-128, 127]
 * (the row's qmin and qmax): the int8 and int8-asym rows. The reference
 * quantizes one value at a time with the library's rounding (lrintf); the
 * AVX2 kernel 8 at a time, bit for bit the same codes and error sums, and
 * hands the row's last n % 8 values to the reference. The same kernels also
 * read bfloat16 and fp16 rows as stored (mq_int8_quantize_half), widening
 * each value as they load it.
 */
#include "kernel.h"

#include <stdint.h>

/* Elements [i, n) of the row, group by group, into out and L. */
static MQ_INLINE void int8_span(const struct mq_scheme_traits *s, const void *xs, enum mq_dtype src, size_t i, size_t n,
				size_t group, const struct mq_qparams *p, int8_t *out, struct mq_lanes *L)
{
	while (i < n) {
		const struct mq_qparams pg = p[i / group];
		const float inv = 1.0f / pg.scale;
		size_t end = (i / group + 1) * group;
		end = end < n ? end : n;
		for (; i < end; i++) {
			const float x = mq_row_at(xs, i, src);
			long q = lrintf(x * inv) + pg.zero_point;
			q = q < s->qmin ? s->qmin : q > s->qmax ? s->qmax : q;
			out[i] = (int8_t)q;
			mq_lanes_add(L, i, x, mq_dequant(pg, (int32_t)q));
		}
	}
}

float mq_int8_fake(const struct mq_scheme_traits *s, float x, struct mq_qparams p)
{
	long q = lrintf(x * (1.0f / p.scale)) + p.zero_point;
	q = q < s->qmin ? s->qmin : q > s->qmax ? s->qmax : q;
	return mq_dequant(p, (int32_t)q);
}

size_t mq_int8_quantize_ref(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			    const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc)
{
	(void)importance; /* round to nearest: every value on its own */
	struct mq_lanes L;
	mq_lanes_init(&L);
	int8_span(s, x, MQ_DTYPE_F32, 0, n, group, p, out, &L);
	mq_lanes_end(&L, acc);
	return n;
}

static size_t int8_half_ref(const struct mq_scheme_traits *s, const uint16_t *x, enum mq_dtype src, size_t n,
			    size_t group, const struct mq_qparams *p, void *out, struct mq_err_acc *acc)
{
	struct mq_lanes L;
	mq_lanes_init(&L);
	int8_span(s, x, src, 0, n, group, p, out, &L);
	mq_lanes_end(&L, acc);
	return n;
}

void mq_int8_dequantize(const struct mq_scheme_traits *s, const void *q, size_t n, size_t group,
			const struct mq_qparams *p, float *out)
{
	(void)s;
	const int8_t *c = q;
	for (size_t g = 0; g * group < n; g++)
		for (size_t i = g * group; i < (g + 1) * group && i < n; i++)
			out[i] = mq_dequant(p[g], c[i]);
}

#ifdef MQ_HAVE_AVX2
/*
 * The vector kernels clamp v = x / scale to the group's integer bounds
 * qmin - zp and qmax - zp before they round it (to nearest even, as lrintf
 * in the default mode): rounding is monotone and leaves integers where they
 * are, so that is the reference's clamp(round(v) + zp) - zp exactly, in two
 * fewer instructions than rounding first. The dequantized value is that
 * integer r times the scale, as mq_dequant forms it.
 */
struct int8_group {
	float inv, lo, hi, scale;
	int32_t zp;
};

static inline struct int8_group int8_group_of(const struct mq_scheme_traits *s, struct mq_qparams pg)
{
	return (struct int8_group){ 1.0f / pg.scale, (float)(s->qmin - pg.zero_point), (float)(s->qmax - pg.zero_point),
				    pg.scale, pg.zero_point };
}

/* Quantizes 8 values; returns them dequantized, stores the codes r + zp. */
MQ_AVX2 static inline __m256 q8_int(__m256 x, __m256 inv, __m256 lo, __m256 hi, __m256i zp, __m256 scale, void *out)
{
	__m256i r = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(x, inv), lo), hi));
	__m256i q = _mm256_add_epi32(r, zp);
	__m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
	_mm_storel_epi64((__m128i *)out, _mm_packs_epi16(w, w));
	return _mm256_mul_ps(_mm256_cvtepi32_ps(r), scale);
}

/* As q8_int, 16 values. */
MQ_AVX512 static inline __m512 q16_int(__m512 x, __m512 inv, __m512 lo, __m512 hi, __m512i zp, __m512 scale,
				       void *out)
{
	__m512i r = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(x, inv), lo), hi));
	_mm_storeu_si128((__m128i *)out, _mm512_cvtsepi32_epi8(_mm512_add_epi32(r, zp)));
	return _mm512_mul_ps(_mm512_cvtepi32_ps(r), scale);
}

/*
 * Elements [i, end) of one group, end - i a multiple of 8: 16 at a time where they
 * fill the 16 lanes, a block of 8 with q8_int at either edge of a group that cuts them.
 */
MQ_AVX512 static MQ_INLINE size_t int8_group_avx512(const void *x, enum mq_dtype src, size_t n, size_t i, size_t end,
						  struct int8_group g, int8_t *out, struct mq_lanes_avx512 *W)
{
	const __m512 inv = _mm512_set1_ps(g.inv), scale = _mm512_set1_ps(g.scale);
	const __m512 lo = _mm512_set1_ps(g.lo), hi = _mm512_set1_ps(g.hi);
	const __m512i zp = _mm512_set1_epi32(g.zp);
	for (;;) {
		for (; i % MQ_LANES == 0 && i + MQ_LANES <= end; i += MQ_LANES) {
			__m512 xv = mq_load16(x, i, src);
			mq_prefetch_next_row_of(x, n, i, src);
			mq_lanes_avx512_add(W, i, xv, q16_int(xv, inv, lo, hi, zp, scale, out + i));
		}
		if (i >= end)
			break;
		__m256 xv = mq_load8(x, i, src);
		__m256 d = q8_int(xv, _mm512_castps512_ps256(inv), _mm512_castps512_ps256(lo),
				  _mm512_castps512_ps256(hi), _mm512_castsi512_si256(zp), _mm512_castps512_ps256(scale),
				  out + i);
		mq_lanes_avx512_add8(W, i, xv, d);
		i += MQ_STEP;
	}
	return i;
}

/* The row x (float32, or the bits of a 16-bit float src) on AVX-512; the tail past the vector span by the reference. */
MQ_AVX512 static MQ_INLINE size_t int8_avx512_of(const struct mq_scheme_traits *s, const void *x, enum mq_dtype src, size_t n,
						 size_t group, const struct mq_qparams *p, int8_t *out,
						 struct mq_err_acc *acc)
{
	const size_t span = mq_vector_span(n, group);
	struct mq_lanes_avx512 W;
	mq_lanes_avx512_init(&W);
	for (size_t i = 0; i < span;) {
		size_t end = i + group < span ? i + group : span;
		i = int8_group_avx512(x, src, n, i, end, int8_group_of(s, p[i / group]), out, &W);
	}
	struct mq_lanes L;
	mq_lanes_avx512_store(&W, &L);
	int8_span(s, x, src, span, n, group, p, out, &L);
	mq_lanes_end(&L, acc);
	return n;
}

MQ_AVX2 static MQ_INLINE size_t int8_avx2_of(const struct mq_scheme_traits *s, const void *x, enum mq_dtype src, size_t n,
					     size_t group, const struct mq_qparams *p, int8_t *out, struct mq_err_acc *acc)
{
	const size_t span = mq_vector_span(n, group);
	struct mq_lanes_avx2 V;
	mq_lanes_avx2_init(&V);
	for (size_t i = 0; i < span;) {
		const struct int8_group g = int8_group_of(s, p[i / group]);
		const __m256 inv = _mm256_set1_ps(g.inv), scale = _mm256_set1_ps(g.scale);
		const __m256 lo = _mm256_set1_ps(g.lo), hi = _mm256_set1_ps(g.hi);
		const __m256i zp = _mm256_set1_epi32(g.zp);
		size_t end = i + group < span ? i + group : span;
		for (;;) {
			for (; i % MQ_LANES == 0 && i + MQ_LANES <= end; i += MQ_LANES) { /* both halves of the lanes */
				mq_prefetch_next_row_of(x, n, i, src);
				for (int h = 0; h < 2; h++) {
					const size_t at = i + (size_t)h * MQ_STEP;
					__m256 xv = mq_load8(x, at, src);
					mq_lanes_avx2_half(&V, h, xv, q8_int(xv, inv, lo, hi, zp, scale, out + at));
				}
				mq_lanes_avx2_flush(&V, i + MQ_STEP);
			}
			if (i >= end)
				break;
			__m256 xv = mq_load8(x, i, src);
			mq_lanes_avx2_add(&V, i, xv, q8_int(xv, inv, lo, hi, zp, scale, out + i));
			i += MQ_STEP;
		}
	}
	struct mq_lanes L;
	mq_lanes_avx2_store(&V, &L);
	int8_span(s, x, src, span, n, group, p, out, &L);
	mq_lanes_end(&L, acc);
	return n;
}

MQ_AVX512 static size_t int8_avx512(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
				    const struct mq_qparams *p, int8_t *out, struct mq_err_acc *acc)
{
	return int8_avx512_of(s, x, MQ_DTYPE_F32, n, group, p, out, acc);
}

MQ_AVX512 static size_t int8_half_avx512(const struct mq_scheme_traits *s, const uint16_t *x, enum mq_dtype src,
					 size_t n, size_t group, const struct mq_qparams *p, int8_t *out,
					 struct mq_err_acc *acc)
{
	if (src == MQ_DTYPE_F16)
		return int8_avx512_of(s, x, MQ_DTYPE_F16, n, group, p, out, acc);
	return int8_avx512_of(s, x, MQ_DTYPE_BF16, n, group, p, out, acc);
}

MQ_AVX2 static size_t int8_avx2(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
				const struct mq_qparams *p, int8_t *out, struct mq_err_acc *acc)
{
	return int8_avx2_of(s, x, MQ_DTYPE_F32, n, group, p, out, acc);
}

MQ_AVX2 static size_t int8_half_avx2(const struct mq_scheme_traits *s, const uint16_t *x, enum mq_dtype src,
				     size_t n, size_t group, const struct mq_qparams *p, int8_t *out,
				     struct mq_err_acc *acc)
{
	if (src == MQ_DTYPE_F16)
		return int8_avx2_of(s, x, MQ_DTYPE_F16, n, group, p, out, acc);
	return int8_avx2_of(s, x, MQ_DTYPE_BF16, n, group, p, out, acc);
}
#endif

size_t mq_int8_quantize(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc)
{
#ifdef MQ_HAVE_AVX2
	if (mq_cpu_avx512())
		return int8_avx512(s, x, n, group, p, out, acc);
	if (mq_cpu_avx2())
		return int8_avx2(s, x, n, group, p, out, acc);
#endif
	return mq_int8_quantize_ref(s, x, n, group, p, importance, out, acc);
}

/*
 * A row stored as bfloat16 or fp16 (src), quantized from its bits: each
 * vector load widens 16 (8) values in one or two instructions where the
 * pipeline's widening pass stored the whole row as float32 for the range and
 * the kernel to read back.
 */
size_t mq_int8_quantize_half(const struct mq_scheme_traits *s, const uint16_t *x, enum mq_dtype src, size_t n,
			     size_t group, const struct mq_qparams *p, void *out, struct mq_err_acc *acc)
{
#ifdef MQ_HAVE_AVX2
	if (mq_cpu_avx512())
		return int8_half_avx512(s, x, src, n, group, p, out, acc);
	if (mq_cpu_avx2())
		return int8_half_avx2(s, x, src, n, group, p, out, acc);
#endif
	return int8_half_ref(s, x, src, n, group, p, out, acc);
}
