/*
 * k_pack: b-bit integer codes packed into little-endian 32-bit words, the
 * int4, int4-asym, w8a16 and w8a16-asym rows (compressed-tensors
 * pack-quantized, LOWBIT.md A.3). The reference quantizes one value at a
 * time; the AVX2 kernel 8 at a time (one word of int4, two of int8), bit for
 * bit the same words and error sums, and hands what its blocks of 8 do not
 * cover (the last 4 values of an int8 row, groups not a multiple of 8) to the
 * reference. The same kernels read bfloat16 and fp16 rows as stored
 * (mq_pack_quantize_half).
 */
#include "kernel.h"

#include <stdint.h>

/* One value: its code on the row's grid, by a true division by the stored scale. */
static inline int32_t pack_code(const struct mq_scheme_traits *s, float x, struct mq_qparams p)
{
	float q = nearbyintf(x / p.scale) + (float)p.zero_point;
	q = q < (float)s->qmin ? (float)s->qmin : q > (float)s->qmax ? (float)s->qmax : q;
	return (int32_t)q;
}

/* Values [i, n) of the row (i a multiple of s->pack), group by group, into the words out and L. */
static MQ_INLINE void pack_span(const struct mq_scheme_traits *s, const void *x, enum mq_dtype src, size_t i, size_t n,
				 size_t group, const struct mq_qparams *p, uint32_t *out, struct mq_lanes *L)
{
	const unsigned bits = (unsigned)s->bits, per = (unsigned)s->pack;
	const int32_t offset = 1 << (bits - 1);
	for (; i < n; i += per) {
		uint32_t w = 0;
		for (unsigned j = 0; j < per; j++) {
			const struct mq_qparams pg = p[(i + j) / group];
			const float v = mq_row_at(x, i + j, src);
			int32_t q = pack_code(s, v, pg);
			w |= (uint32_t)(q + offset) << (j * bits);
			mq_lanes_add(L, i + j, v, mq_dequant(pg, q));
		}
		uint8_t *b = (uint8_t *)(out + i / per); /* little-endian on any host */
		b[0] = (uint8_t)w;
		b[1] = (uint8_t)(w >> 8);
		b[2] = (uint8_t)(w >> 16);
		b[3] = (uint8_t)(w >> 24);
	}
}

float mq_pack_fake(const struct mq_scheme_traits *s, float x, struct mq_qparams p)
{
	return mq_dequant(p, pack_code(s, x, p));
}

size_t mq_pack_quantize_ref(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			    const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc)
{
	(void)importance; /* round to nearest: every value on its own */
	struct mq_lanes L;
	mq_lanes_init(&L);
	pack_span(s, x, MQ_DTYPE_F32, 0, n, group, p, out, &L);
	mq_lanes_end(&L, acc);
	return (size_t)mq_scheme_bytes(s, n);
}

static size_t pack_half_ref(const struct mq_scheme_traits *s, const uint16_t *x, enum mq_dtype src, size_t n,
			    size_t group, const struct mq_qparams *p, void *out, struct mq_err_acc *acc)
{
	struct mq_lanes L;
	mq_lanes_init(&L);
	pack_span(s, x, src, 0, n, group, p, out, &L);
	mq_lanes_end(&L, acc);
	return (size_t)mq_scheme_bytes(s, n);
}

#ifdef MQ_HAVE_AVX2
/*
 * Codes of 8 values, as the reference's pack_code: a true division (the
 * reference divides, and x * (1/s) rounds differently), round half to even,
 * the zero point, the clamp. Sets *u to the stored values q + 2^(b-1) and
 * returns the values dequantized, (q - zp) * s (q - zp is a small integer:
 * exact in float32, as the reference's int subtraction).
 */
MQ_AVX2 static inline __m256 pack8_codes(__m256 x, __m256 scale, __m256 zp, __m256 lo, __m256 hi, __m256i offset,
					 __m256i *u)
{
	__m256 q = _mm256_round_ps(_mm256_div_ps(x, scale), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	q = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(q, zp), lo), hi);
	*u = _mm256_add_epi32(_mm256_cvtps_epi32(q), offset);
	return _mm256_mul_ps(_mm256_sub_ps(q, zp), scale);
}

/*
 * The division-free form. With r = 1/s rounded, q = x * r is within
 * 3.01 * 2^-24 |x / s| of the quotient v the reference rounds (two
 * roundings against one), and the clamp to the group's integer bounds
 * qmin - zp and qmax - zp moves neither apart. While those bounds lie within
 * 256, |x / s| <= 256.5 wherever the clamp leaves the value, so q and v are
 * less than 2^-14 apart: where q's clamped value lies more than 2^-14 from
 * every half-integer, v rounds to the same integer (rounding, then the
 * clamp, is the clamp, then rounding, as in k_int8). A lane nearer a
 * half-integer than that (about one value in 8,000, and every exact tie)
 * fails the test, and its block of 8 is divided after all. The codes and
 * the error sums are the reference's, bit for bit; the test in
 * test_kernel.c puts values within a few ulps of the half-integers. The
 * AVX2 kernel takes this form, as it is the faster there (one row of 4096
 * in L2 on an AMD EPYC core of the Zen 4 generation: int4 0.33 ns per value
 * against 0.38 by division); the AVX-512 kernel divides, since its division
 * was the faster (0.256 against 0.263 with the same test on 16 lanes).
 */
#define PACK_TIE_MARGIN 0.00006103515625f /* 2^-14 */
#define PACK_FAST_BOUND 256.0f             /* the clamp bounds' largest magnitude for the form above */

/* As pack8_codes by x * (1/s); 0 (and nothing stored in *u) where a lane is too near a tie. */
MQ_AVX2 static inline int pack8_fast(__m256 x, __m256 inv, __m256 scale, __m256 lo, __m256 hi, __m256i zp_offset,
				     __m256i *u, __m256 *d)
{
	const __m256 y = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(x, inv), lo), hi);
	const __m256 r = _mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	const __m256 f = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(y, r));
	if (_mm256_movemask_ps(_mm256_cmp_ps(f, _mm256_set1_ps(0.5f - PACK_TIE_MARGIN), _CMP_LT_OQ)) != 0xff)
		return 0;
	*u = _mm256_add_epi32(_mm256_cvtps_epi32(r), zp_offset);
	*d = _mm256_mul_ps(r, scale);
	return 1;
}

/*
 * Stores 8 stored values u: for 4 bits the one word of nibbles, value j at
 * bit 4j (bytes u0 + 16 u1, u2 + 16 u3, ...: maddubs forms them, each below
 * 256); for 8 bits two words, which on this little-endian host are the bytes
 * in order.
 */
MQ_AVX2 static inline void pack8_store(__m256i u, int four, unsigned char *out)
{
	__m128i b = mq_avx2_bytes8(u);
	if (four) {
		__m128i pairs = _mm_maddubs_epi16(b, _mm_set1_epi16(16 << 8 | 1));
		uint32_t w = (uint32_t)_mm_cvtsi128_si32(_mm_packus_epi16(pairs, pairs));
		memcpy(out, &w, 4);
	} else {
		_mm_storel_epi64((__m128i *)(void *)out, b);
	}
}

/* As pack8_codes, 16 values. */
MQ_AVX512 static inline __m512 pack16_codes(__m512 x, __m512 scale, __m512 zp, __m512 lo, __m512 hi, __m512i offset,
					    __m512i *u)
{
	__m512 q = _mm512_roundscale_ps(_mm512_div_ps(x, scale), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	q = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(q, zp), lo), hi);
	*u = _mm512_add_epi32(_mm512_cvtps_epi32(q), offset);
	return _mm512_mul_ps(_mm512_sub_ps(q, zp), scale);
}

/* As pack8_store, 16 stored values: two words of nibbles, or four of bytes. */
MQ_AVX512 static inline void pack16_store(__m512i u, int four, unsigned char *out)
{
	__m128i b = _mm512_cvtepi32_epi8(u);
	if (four) {
		__m128i pairs = _mm_maddubs_epi16(b, _mm_set1_epi16(16 << 8 | 1));
		_mm_storel_epi64((__m128i *)(void *)out, _mm_packus_epi16(pairs, pairs));
	} else {
		_mm_storeu_si128((__m128i *)(void *)out, b);
	}
}

/* The constants of one row, 16 lanes wide. */
struct pack_consts {
	__m512 lo, hi;
	__m512i offset;
	int four;
	unsigned bits;
};

/* One group's form without division: 1/s, and the clamp bounds and the code offset with its zero point. */
struct pack_fast {
	float inv, lo, hi;
	int32_t zp_offset;
	int ok; /* the bounds are within PACK_FAST_BOUND: else every block divides */
};

static inline struct pack_fast pack_fast_of(const struct mq_scheme_traits *s, struct mq_qparams pg)
{
	const float lo = (float)(s->qmin - pg.zero_point), hi = (float)(s->qmax - pg.zero_point);
	return (struct pack_fast){ 1.0f / pg.scale, lo, hi, pg.zero_point + (1 << (s->bits - 1)),
				   -lo <= PACK_FAST_BOUND && hi <= PACK_FAST_BOUND };
}

/*
 * Values [i, end) of one group, end - i a multiple of 8: 16 at a time where they fill
 * the 16 lanes, a block of 8 with pack8_codes at either edge of a group that cuts them.
 */
MQ_AVX512 static MQ_INLINE size_t pack_group_avx512(const void *x, enum mq_dtype src, size_t n, size_t i, size_t end,
						  struct mq_qparams pg, const struct pack_consts *k, unsigned char *o,
						  struct mq_lanes_avx512 *W)
{
	const __m512 scale = _mm512_set1_ps(pg.scale), zp = _mm512_set1_ps((float)pg.zero_point);
	for (;;) {
		for (; i % MQ_LANES == 0 && i + MQ_LANES <= end; i += MQ_LANES) {
			__m512 xv = mq_load16(x, i, src);
			__m512i u;
			mq_prefetch_next_row_of(x, n, i, src);
			mq_lanes_avx512_add(W, i, xv, pack16_codes(xv, scale, zp, k->lo, k->hi, k->offset, &u));
			pack16_store(u, k->four, o + i * k->bits / 8);
		}
		if (i >= end)
			break;
		__m256 xv = mq_load8(x, i, src);
		__m256i u;
		__m256 d = pack8_codes(xv, _mm512_castps512_ps256(scale), _mm512_castps512_ps256(zp),
				       _mm512_castps512_ps256(k->lo), _mm512_castps512_ps256(k->hi),
				       _mm512_castsi512_si256(k->offset), &u);
		mq_lanes_avx512_add8(W, i, xv, d);
		pack8_store(u, k->four, o + i * k->bits / 8);
		i += MQ_STEP;
	}
	return i;
}

MQ_AVX512 static MQ_INLINE size_t pack_avx512_of(const struct mq_scheme_traits *s, const void *x, enum mq_dtype src, size_t n,
						 size_t group, const struct mq_qparams *p, void *out,
						 struct mq_err_acc *acc)
{
	const size_t span = mq_vector_span(n, group);
	const struct pack_consts k = { _mm512_set1_ps((float)s->qmin), _mm512_set1_ps((float)s->qmax),
				       _mm512_set1_epi32(1 << (s->bits - 1)), s->bits == 4, (unsigned)s->bits };
	struct mq_lanes_avx512 W;
	mq_lanes_avx512_init(&W);
	for (size_t i = 0; i < span;) {
		size_t end = i + group < span ? i + group : span;
		i = pack_group_avx512(x, src, n, i, end, p[i / group], &k, out, &W);
	}
	struct mq_lanes L;
	mq_lanes_avx512_store(&W, &L);
	pack_span(s, x, src, span, n, group, p, out, &L);
	mq_lanes_end(&L, acc);
	return (size_t)mq_scheme_bytes(s, n);
}

MQ_AVX2 static MQ_INLINE size_t pack_avx2_of(const struct mq_scheme_traits *s, const void *x, enum mq_dtype src, size_t n,
					     size_t group, const struct mq_qparams *p, void *out, struct mq_err_acc *acc)
{
	const size_t span = mq_vector_span(n, group);
	const int four = s->bits == 4;
	const __m256 lo = _mm256_set1_ps((float)s->qmin), hi = _mm256_set1_ps((float)s->qmax);
	const __m256i offset = _mm256_set1_epi32(1 << (s->bits - 1));
	unsigned char *o = out;
	struct mq_lanes_avx2 V;
	mq_lanes_avx2_init(&V);
	for (size_t i = 0; i < span;) {
		const struct mq_qparams pg = p[i / group];
		const struct pack_fast fg = pack_fast_of(s, pg);
		const __m256 scale = _mm256_set1_ps(pg.scale), zp = _mm256_set1_ps((float)pg.zero_point);
		const __m256 inv = _mm256_set1_ps(fg.inv), flo = _mm256_set1_ps(fg.lo), fhi = _mm256_set1_ps(fg.hi);
		const __m256i zp_offset = _mm256_set1_epi32(fg.zp_offset);
		size_t end = i + group < span ? i + group : span;
		for (; i < end; i += MQ_STEP) {
			__m256 xv = mq_load8(x, i, src), d;
			__m256i u;
			if (i % 16 == 0)
				mq_prefetch_next_row_of(x, n, i, src);
			if (!fg.ok || !pack8_fast(xv, inv, scale, flo, fhi, zp_offset, &u, &d))
				d = pack8_codes(xv, scale, zp, lo, hi, offset, &u);
			mq_lanes_avx2_add(&V, i, xv, d);
			pack8_store(u, four, o + i * (size_t)s->bits / 8);
		}
	}
	struct mq_lanes L;
	mq_lanes_avx2_store(&V, &L);
	pack_span(s, x, src, span, n, group, p, out, &L);
	mq_lanes_end(&L, acc);
	return (size_t)mq_scheme_bytes(s, n);
}

MQ_AVX512 static size_t pack_avx512(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
				    const struct mq_qparams *p, void *out, struct mq_err_acc *acc)
{
	return pack_avx512_of(s, x, MQ_DTYPE_F32, n, group, p, out, acc);
}

MQ_AVX512 static size_t pack_half_avx512(const struct mq_scheme_traits *s, const uint16_t *x, enum mq_dtype src,
					 size_t n, size_t group, const struct mq_qparams *p, void *out,
					 struct mq_err_acc *acc)
{
	if (src == MQ_DTYPE_F16)
		return pack_avx512_of(s, x, MQ_DTYPE_F16, n, group, p, out, acc);
	return pack_avx512_of(s, x, MQ_DTYPE_BF16, n, group, p, out, acc);
}

MQ_AVX2 static size_t pack_avx2(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
				const struct mq_qparams *p, void *out, struct mq_err_acc *acc)
{
	return pack_avx2_of(s, x, MQ_DTYPE_F32, n, group, p, out, acc);
}

MQ_AVX2 static size_t pack_half_avx2(const struct mq_scheme_traits *s, const uint16_t *x, enum mq_dtype src,
				     size_t n, size_t group, const struct mq_qparams *p, void *out,
				     struct mq_err_acc *acc)
{
	if (src == MQ_DTYPE_F16)
		return pack_avx2_of(s, x, MQ_DTYPE_F16, n, group, p, out, acc);
	return pack_avx2_of(s, x, MQ_DTYPE_BF16, n, group, p, out, acc);
}
#endif

size_t mq_pack_quantize_half(const struct mq_scheme_traits *s, const uint16_t *x, enum mq_dtype src, size_t n,
			     size_t group, const struct mq_qparams *p, void *out, struct mq_err_acc *acc)
{
#ifdef MQ_HAVE_AVX2
	if (mq_cpu_avx512() && (s->bits == 4 || s->bits == 8))
		return pack_half_avx512(s, x, src, n, group, p, out, acc);
	if (mq_cpu_avx2() && (s->bits == 4 || s->bits == 8))
		return pack_half_avx2(s, x, src, n, group, p, out, acc);
#endif
	return pack_half_ref(s, x, src, n, group, p, out, acc);
}

size_t mq_pack_quantize(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc)
{
#ifdef MQ_HAVE_AVX2
	if (mq_cpu_avx512() && (s->bits == 4 || s->bits == 8))
		return pack_avx512(s, x, n, group, p, out, acc);
	if (mq_cpu_avx2() && (s->bits == 4 || s->bits == 8))
		return pack_avx2(s, x, n, group, p, out, acc);
#endif
	return mq_pack_quantize_ref(s, x, n, group, p, importance, out, acc);
}

void mq_pack_dequantize(const struct mq_scheme_traits *s, const void *q, size_t n, size_t group,
			const struct mq_qparams *p, float *out)
{
	const unsigned bits = (unsigned)s->bits, per = (unsigned)s->pack;
	const uint32_t mask = (1u << bits) - 1;
	const int32_t offset = 1 << (bits - 1);
	const uint8_t *b = q;
	for (size_t i = 0; i < n; i += per) {
		const uint8_t *wb = b + i / per * 4;
		uint32_t w = (uint32_t)wb[0] | (uint32_t)wb[1] << 8 | (uint32_t)wb[2] << 16 | (uint32_t)wb[3] << 24;
		for (unsigned j = 0; j < per && i + j < n; j++)
			out[i + j] = mq_dequant(p[(i + j) / group], (int32_t)((w >> (j * bits)) & mask) - offset);
	}
}
