/*
 * kernel: what a kernel file (k_*.c) is written with. The error sums in
 * their one fixed order, in scalar form and (x86-64) in AVX2 form; the
 * run-time CPU check of the fast paths; and the prototypes of the kernels
 * the rows of scheme.c point at. Internal to src/quant/ (and to the unit
 * tests' dummy kernel).
 *
 * The order of the error sums: element i of a row goes to lane i % 8.
 * Within each run of 64 elements a lane sums in float32 (x*x and e*e,
 * e = x - dequant(q) in float32, in element order); at the end of each run,
 * and of the row, the lane sums are added to float64 lane totals. The row's
 * totals are the lanes added pairwise ((0+1)+(2+3))+((4+5)+(6+7)); max_abs
 * is the max over lanes. Every kernel follows this order, so a fast kernel
 * agrees with its reference bit for bit, and a vector kernel needs no
 * float64 per element. Groups do not change the order: lanes and runs count
 * from the start of the row.
 */
#ifndef MQ_KERNEL_H
#define MQ_KERNEL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "scheme.h"

#define MQ_LANES 8
#define MQ_RUN 64

struct mq_lanes {
	float ps[MQ_LANES], pe[MQ_LANES], pm[MQ_LANES]; /* run sums and lane max |e| */
	double s[MQ_LANES], e[MQ_LANES];                /* totals */
};

static inline void mq_lanes_init(struct mq_lanes *L)
{
	memset(L, 0, sizeof(*L));
}

static inline void mq_lanes_flush(struct mq_lanes *L)
{
	for (int l = 0; l < MQ_LANES; l++) {
		L->s[l] += (double)L->ps[l];
		L->e[l] += (double)L->pe[l];
		L->ps[l] = L->pe[l] = 0.0f;
	}
}

/* Adds element i of the row, x, dequantized to d; flushes at the end of a run. */
static inline void mq_lanes_add(struct mq_lanes *L, size_t i, float x, float d)
{
	int l = (int)(i % MQ_LANES);
	float e = x - d;
	float ae = fabsf(e);
	L->ps[l] += x * x;
	L->pe[l] += e * e;
	L->pm[l] = ae > L->pm[l] ? ae : L->pm[l];
	if (i % MQ_RUN == MQ_RUN - 1)
		mq_lanes_flush(L);
}

/* The end of the row: flushes the open run and adds the totals to acc. */
static inline void mq_lanes_end(struct mq_lanes *L, struct mq_err_acc *acc)
{
	mq_lanes_flush(L);
	const double *s = L->s, *e = L->e;
	acc->signal += ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
	acc->noise += ((e[0] + e[1]) + (e[2] + e[3])) + ((e[4] + e[5]) + (e[6] + e[7]));
	double m = acc->max_abs;
	for (int l = 0; l < MQ_LANES; l++)
		m = (double)L->pm[l] > m ? (double)L->pm[l] : m;
	acc->max_abs = m;
}

/* 1 where the AVX2 paths may run: the CPU has AVX2 and F16C and MQ_NO_SIMD is unset (cpu.c, cached). */
int mq_cpu_avx2(void);
/* 1 where the AVX-512 paths may run: AVX-512 F, BW, VL, DQ besides, and no MQ_SIMD cap below it. */
int mq_cpu_avx512(void);

#if defined(__x86_64__) && defined(__GNUC__)
#define MQ_HAVE_AVX2 1
#include <immintrin.h>
#define MQ_AVX2 __attribute__((target("avx2,f16c")))
#define MQ_AVX512 __attribute__((target("avx2,f16c,avx512f,avx512bw,avx512vl,avx512dq")))

/* The same sums, 8 lanes in registers: run sums ps, pe, lane max pm, float64 totals. */
struct mq_lanes_avx2 {
	__m256 ps, pe, pm;
	__m256d s_lo, s_hi, e_lo, e_hi;
};

MQ_AVX2 static inline void mq_lanes_avx2_init(struct mq_lanes_avx2 *V)
{
	V->ps = V->pe = V->pm = _mm256_setzero_ps();
	V->s_lo = V->s_hi = V->e_lo = V->e_hi = _mm256_setzero_pd();
}

/* Adds the squares xx = x * x and ee = e * e of elements i .. i + 7 (i a multiple of 8), flushing when they end a run. */
MQ_AVX2 static inline void mq_lanes_avx2_squares(struct mq_lanes_avx2 *V, size_t i, __m256 xx, __m256 ee)
{
	V->ps = _mm256_add_ps(V->ps, xx);
	V->pe = _mm256_add_ps(V->pe, ee);
	if (i % MQ_RUN == MQ_RUN - MQ_LANES) {
		V->s_lo = _mm256_add_pd(V->s_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(V->ps)));
		V->s_hi = _mm256_add_pd(V->s_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(V->ps, 1)));
		V->e_lo = _mm256_add_pd(V->e_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(V->pe)));
		V->e_hi = _mm256_add_pd(V->e_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(V->pe, 1)));
		V->ps = V->pe = _mm256_setzero_ps();
	}
}

/* Adds elements i .. i + 7 (i a multiple of 8), flushing when they end a run. */
MQ_AVX2 static inline void mq_lanes_avx2_add(struct mq_lanes_avx2 *V, size_t i, __m256 x, __m256 d)
{
	__m256 e = _mm256_sub_ps(x, d);
	V->pm = _mm256_max_ps(V->pm, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), e));
	mq_lanes_avx2_squares(V, i, _mm256_mul_ps(x, x), _mm256_mul_ps(e, e));
}

/* Hands the state to the scalar lanes, which continue the row (its last n % 8 values) and end it. */
MQ_AVX2 static inline void mq_lanes_avx2_store(const struct mq_lanes_avx2 *V, struct mq_lanes *L)
{
	_mm256_storeu_ps(L->ps, V->ps);
	_mm256_storeu_ps(L->pe, V->pe);
	_mm256_storeu_ps(L->pm, V->pm);
	_mm256_storeu_pd(L->s, V->s_lo);
	_mm256_storeu_pd(L->s + 4, V->s_hi);
	_mm256_storeu_pd(L->e, V->e_lo);
	_mm256_storeu_pd(L->e + 4, V->e_hi);
}

/*
 * The same sums fed 16 elements at a time, i .. i + 15 (i a multiple of 8):
 * the products in 16 lanes, then the low half's (elements i .. i + 7) and the
 * high half's (i + 8 .. i + 15) added to the 8 lane sums in that order, as
 * element order asks; max |e| in 16 lanes, folded into 8 when the row ends
 * (a max is exact in any order). Kernels mix it with the 8-wide form (v) on
 * the same state, for a group's last block of 8.
 */
struct mq_lanes_avx512 {
	struct mq_lanes_avx2 v;
	__m512 pm;
};

MQ_AVX512 static inline void mq_lanes_avx512_init(struct mq_lanes_avx512 *W)
{
	mq_lanes_avx2_init(&W->v);
	W->pm = _mm512_setzero_ps();
}

MQ_AVX512 static inline void mq_lanes_avx512_add(struct mq_lanes_avx512 *W, size_t i, __m512 x, __m512 d)
{
	__m512 e = _mm512_sub_ps(x, d);
	__m512 xx = _mm512_mul_ps(x, x), ee = _mm512_mul_ps(e, e);
	W->pm = _mm512_max_ps(W->pm, _mm512_abs_ps(e));
	mq_lanes_avx2_squares(&W->v, i, _mm512_castps512_ps256(xx), _mm512_castps512_ps256(ee));
	mq_lanes_avx2_squares(&W->v, i + MQ_LANES, _mm512_extractf32x8_ps(xx, 1), _mm512_extractf32x8_ps(ee, 1));
}

/* As mq_lanes_avx2_store, the 16 lanes of max |e| folded first. */
MQ_AVX512 static inline void mq_lanes_avx512_store(const struct mq_lanes_avx512 *W, struct mq_lanes *L)
{
	struct mq_lanes_avx2 V = W->v;
	__m256 m16 = _mm256_max_ps(_mm512_castps512_ps256(W->pm), _mm512_extractf32x8_ps(W->pm, 1));
	V.pm = _mm256_max_ps(V.pm, m16);
	mq_lanes_avx2_store(&V, L);
}

/*
 * A hint to bring the line of floats at x + n + i into L2: in a block of rows
 * back to back (how the pipeline and bench_kernel quantize), the next row's
 * values, fetched from memory while this row is quantized from L1, so that
 * the next row's range pass finds them in cache instead of waiting on memory
 * (the vector loops call it once per 16 values). A prefetch never faults and
 * changes no result; the address is formed as an integer, so no pointer goes
 * beyond its array.
 */
static inline void mq_prefetch_next_row(const float *x, size_t n, size_t i)
{
	_mm_prefetch((const char *)(uintptr_t)((uintptr_t)x + (n + i) * sizeof(float)), _MM_HINT_T1);
}

/* ---- AVX2 helpers of the byte-code kernels (k_pack.c, k_fp8.c) ---- */

/*
 * 8 int32 lanes, each in [0, 255], as 8 bytes in lane order in the low half of the result (the
 * high half repeats them): both packs saturate, which values in [0, 255] never reach.
 */
MQ_AVX2 static inline __m128i mq_avx2_bytes8(__m256i v)
{
	__m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
	return _mm_packus_epi16(w, w);
}
#endif

/*
 * The values a fast kernel's vector loop covers: whole blocks of 8 that never
 * straddle two groups. One group per row: n - n % 8 (the scalar reference
 * continues with the rest); groups of a multiple of 8: all n; other groups: 0
 * (the reference does the row).
 */
static inline size_t mq_vector_span(size_t n, size_t group)
{
	if (group == n)
		return n - n % MQ_LANES;
	return group % MQ_LANES == 0 ? n : 0;
}

/* ---- the kernels the rows point at ---- */

/* grid.c: integer grids */
struct mq_qparams mq_grid_params(const struct mq_scheme_traits *s, const struct mq_range *r, enum mq_dtype scale_dtype);

/* k_int8.c: one byte per value, any grid within [-128, 127] */
size_t mq_int8_quantize_ref(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			    const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc);
size_t mq_int8_quantize(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc);
void mq_int8_dequantize(const struct mq_scheme_traits *s, const void *q, size_t n, size_t group,
			const struct mq_qparams *p, float *out);
float mq_int8_fake(const struct mq_scheme_traits *s, float x, struct mq_qparams p);

/*
 * k_pack.c: b-bit integer codes (b = s->bits, 4 or 8) on the grid
 * [s->qmin, s->qmax], packed as compressed-tensors' pack-quantized: code q
 * stored as u = q + 2^(b-1), value j of the row at bit j*b of the row's
 * little-endian 32-bit words, least significant first (n a multiple of
 * s->pack = 32 / b). q = clamp(rne(x / scale) + zp, qmin, qmax), a true
 * float32 division by the stored scale (compressed-tensors divides).
 */
size_t mq_pack_quantize_ref(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			    const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc);
size_t mq_pack_quantize(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc);
void mq_pack_dequantize(const struct mq_scheme_traits *s, const void *q, size_t n, size_t group,
			const struct mq_qparams *p, float *out);
float mq_pack_fake(const struct mq_scheme_traits *s, float x, struct mq_qparams p);

/*
 * k_fp8.c: float8 e4m3fn (torch.float8_e4m3fn) with a float32 scale:
 * scale = amax / 448, code = e4m3(clamp(x / scale, -448, 448)) rounded to
 * nearest even, never NaN. mq_fp8_from_f32 is the exact conversion of torch
 * (NaN for |x| > 464; callers clamp first); mq_fp8_to_f32 the exact decoding.
 */
struct mq_qparams mq_fp8_params(const struct mq_scheme_traits *s, const struct mq_range *r, enum mq_dtype scale_dtype);
size_t mq_fp8_quantize_ref(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			   const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc);
size_t mq_fp8_quantize(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
		       const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc);
void mq_fp8_dequantize(const struct mq_scheme_traits *s, const void *q, size_t n, size_t group,
		       const struct mq_qparams *p, float *out);
uint8_t mq_fp8_from_f32(float x);
float mq_fp8_to_f32(uint8_t b);

/* k_float.c: float formats, no parameters */
struct mq_qparams mq_float_params(const struct mq_scheme_traits *s, const struct mq_range *r, enum mq_dtype scale_dtype);
size_t mq_f16_quantize_ref(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			   const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc);
size_t mq_f16_quantize(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
		       const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc);
void mq_f16_dequantize(const struct mq_scheme_traits *s, const void *q, size_t n, size_t group,
		       const struct mq_qparams *p, float *out);
size_t mq_bf16_quantize_ref(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			    const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc);
size_t mq_bf16_quantize(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc);
void mq_bf16_dequantize(const struct mq_scheme_traits *s, const void *q, size_t n, size_t group,
			const struct mq_qparams *p, float *out);

#ifdef MQ_TEST_DUMMY_SCHEME
/* tests/unit/quant/k_dummy.c: the unit tests' dummy scheme "int8-dummy" (its row is in scheme.c) */
size_t mq_dummy_quantize_ref(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			     const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc);
#endif

#endif
