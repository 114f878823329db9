/*
 * kernel: what a kernel file (k_*.c) is written with. The error sums in
 * their one fixed order, in scalar form and (x86-64) in AVX2 and AVX-512
 * form; the run-time CPU check of the fast paths; and the prototypes of the
 * kernels the rows of scheme.c point at. Internal to src/quant/ (and to the
 * unit tests' dummy kernel).
 *
 * The order of the error sums: element i of a row goes to lane i % 16.
 * Within each run of 128 elements a lane sums in float32 (x*x and e*e,
 * e = x - dequant(q) in float32, each square added with one rounding, a
 * fused multiply-add, in element order: 8 terms per lane and run); at the
 * end of each run, and of the row, the lane sums are added to float64 lane
 * totals. The row's totals are the lanes added pairwise, each
 * half of 8 as ((0+1)+(2+3))+((4+5)+(6+7)), then the two halves; max_abs is
 * the max over lanes. Every kernel follows this order, so a fast kernel
 * agrees with its reference bit for bit, and a vector kernel needs no
 * float64 per element. Sixteen lanes let an AVX-512 kernel add once per 16
 * elements into each sum (with 8 lanes, two dependent adds), and an AVX2
 * kernel alternate two registers; runs of 128 keep 8 terms per float32 sum,
 * as 8 lanes and runs of 64 had, and the float64 additions as few. One row
 * of 4096 in L2, range and int8 kernel: 0.27 ns per value against 0.34 on
 * AVX-512, the same on AVX2. The fused multiply-adds take one instruction
 * per square where a multiply and an add took two (the scalar reference
 * calls fmaf, exact on any CPU; the AVX2 paths need FMA, which every AVX2
 * CPU has). Groups do not change the order: lanes and runs count from the
 * start of the row.
 */
#ifndef MQ_KERNEL_H
#define MQ_KERNEL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "scheme.h"

#define MQ_LANES 16 /* lanes of the error sums */
#define MQ_STEP 8   /* the vector kernels' smallest block (one AVX2 register of float32) */
#define MQ_RUN 128

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
	L->ps[l] = fmaf(x, x, L->ps[l]);
	L->pe[l] = fmaf(e, e, L->pe[l]);
	L->pm[l] = ae > L->pm[l] ? ae : L->pm[l];
	if (i % MQ_RUN == MQ_RUN - 1)
		mq_lanes_flush(L);
}

#define MQ_INLINE inline __attribute__((always_inline))

/*
 * Element i of row x: float32 as stored (src MQ_DTYPE_F32), or a 16-bit float's bits widened
 * (MQ_DTYPE_BF16, MQ_DTYPE_F16; exact).
 */
static MQ_INLINE float mq_row_at(const void *x, size_t i, enum mq_dtype src)
{
	if (src == MQ_DTYPE_BF16)
		return mq_bf16_to_f32(((const uint16_t *)x)[i]);
	if (src == MQ_DTYPE_F16)
		return mq_f16_to_f32(((const uint16_t *)x)[i]);
	return ((const float *)x)[i];
}

/* The 16 lane totals v added in the fixed pairwise order. */
static inline double mq_lanes_sum(const double *v)
{
	double h[2];
	for (int k = 0; k < 2; k++, v += 8)
		h[k] = ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
	return h[0] + h[1];
}

/* The end of the row: flushes the open run and adds the totals to acc. */
static inline void mq_lanes_end(struct mq_lanes *L, struct mq_err_acc *acc)
{
	mq_lanes_flush(L);
	acc->signal += mq_lanes_sum(L->s);
	acc->noise += mq_lanes_sum(L->e);
	double m = acc->max_abs;
	for (int l = 0; l < MQ_LANES; l++)
		m = (double)L->pm[l] > m ? (double)L->pm[l] : m;
	acc->max_abs = m;
}

/* 1 where the AVX2 paths may run: the CPU has AVX2, FMA and F16C and MQ_NO_SIMD is unset (cpu.c, cached). */
int mq_cpu_avx2(void);
/* 1 where the AVX-512 paths may run: AVX-512 F, BW, VL, DQ besides, and no MQ_SIMD cap below it. */
int mq_cpu_avx512(void);

#if defined(__x86_64__) && defined(__GNUC__)
#define MQ_HAVE_AVX2 1
#include <immintrin.h>
#define MQ_AVX2 __attribute__((target("avx2,f16c,fma")))
#define MQ_AVX512 __attribute__((target("avx2,f16c,fma,avx512f,avx512bw,avx512vl,avx512dq")))

/*
 * The same sums in AVX2 registers: lanes 0-7 in ps0/pe0 (the blocks of 8 at
 * i % 16 == 0), lanes 8-15 in ps1/pe1, two chains of adds; max |e| in 8
 * lanes (a max is exact in any order); the float64 totals of lanes
 * 4k .. 4k + 3 in sk, ek. Kernels add 16 elements at a time as two
 * blocks of 8 (mq_lanes_avx2_half with half 0, then 1, then
 * mq_lanes_avx2_flush), and a block of 8 at a group's edge
 * (mq_lanes_avx2_add).
 */
struct mq_lanes_avx2 {
	__m256 ps0, ps1, pe0, pe1, pm;
	__m256d s0, s1, s2, s3, e0, e1, e2, e3; /* named, not an array: the compiler keeps them in registers */
};

MQ_AVX2 static inline void mq_lanes_avx2_init(struct mq_lanes_avx2 *V)
{
	V->ps0 = V->ps1 = V->pe0 = V->pe1 = V->pm = _mm256_setzero_ps();
	V->s0 = V->s1 = V->s2 = V->s3 = V->e0 = V->e1 = V->e2 = V->e3 = _mm256_setzero_pd();
}

/* Adds the float32 run sums a (lanes 0-7) and b (lanes 8-15) to the float64 totals t0 .. t3 (4 lanes each). */
MQ_AVX2 static inline void mq_lanes_avx2_total(__m256d *t0, __m256d *t1, __m256d *t2, __m256d *t3, __m256 a, __m256 b)
{
	*t0 = _mm256_add_pd(*t0, _mm256_cvtps_pd(_mm256_castps256_ps128(a)));
	*t1 = _mm256_add_pd(*t1, _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));
	*t2 = _mm256_add_pd(*t2, _mm256_cvtps_pd(_mm256_castps256_ps128(b)));
	*t3 = _mm256_add_pd(*t3, _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1)));
}

/* At the end of a run (after element i + 7): the run sums into the totals. */
MQ_AVX2 static inline void mq_lanes_avx2_flush(struct mq_lanes_avx2 *V, size_t i)
{
	if (i % MQ_RUN == MQ_RUN - MQ_STEP) {
		mq_lanes_avx2_total(&V->s0, &V->s1, &V->s2, &V->s3, V->ps0, V->ps1);
		mq_lanes_avx2_total(&V->e0, &V->e1, &V->e2, &V->e3, V->pe0, V->pe1);
		V->ps0 = V->ps1 = V->pe0 = V->pe1 = _mm256_setzero_ps();
	}
}

/* Adds elements i .. i + 7 (i a multiple of 8) to lanes 0-7 (half 0) or 8-15 (half 1), without the flush. */
MQ_AVX2 static inline void mq_lanes_avx2_half(struct mq_lanes_avx2 *V, int half, __m256 x, __m256 d)
{
	__m256 e = _mm256_sub_ps(x, d);
	V->pm = _mm256_max_ps(V->pm, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), e));
	if (half) {
		V->ps1 = _mm256_fmadd_ps(x, x, V->ps1);
		V->pe1 = _mm256_fmadd_ps(e, e, V->pe1);
	} else {
		V->ps0 = _mm256_fmadd_ps(x, x, V->ps0);
		V->pe0 = _mm256_fmadd_ps(e, e, V->pe0);
	}
}

/* Adds elements i .. i + 7 (i a multiple of 8) to their 8 lanes, flushing when they end a run. */
MQ_AVX2 static inline void mq_lanes_avx2_add(struct mq_lanes_avx2 *V, size_t i, __m256 x, __m256 d)
{
	mq_lanes_avx2_half(V, (i & MQ_STEP) != 0, x, d);
	mq_lanes_avx2_flush(V, i);
}

/* Hands the state to the scalar lanes, which continue the row (its last n % 8 values) and end it. */
MQ_AVX2 static inline void mq_lanes_avx2_store(const struct mq_lanes_avx2 *V, struct mq_lanes *L)
{
	_mm256_storeu_ps(L->ps, V->ps0);
	_mm256_storeu_ps(L->ps + 8, V->ps1);
	_mm256_storeu_ps(L->pe, V->pe0);
	_mm256_storeu_ps(L->pe + 8, V->pe1);
	_mm256_storeu_ps(L->pm, V->pm);
	_mm256_storeu_ps(L->pm + 8, _mm256_setzero_ps());
	_mm256_storeu_pd(L->s, V->s0);
	_mm256_storeu_pd(L->s + 4, V->s1);
	_mm256_storeu_pd(L->s + 8, V->s2);
	_mm256_storeu_pd(L->s + 12, V->s3);
	_mm256_storeu_pd(L->e, V->e0);
	_mm256_storeu_pd(L->e + 4, V->e1);
	_mm256_storeu_pd(L->e + 8, V->e2);
	_mm256_storeu_pd(L->e + 12, V->e3);
}

/*
 * The same sums in AVX-512 registers, the 16 lanes in one register each:
 * mq_lanes_avx512_add takes 16 elements at i % 16 == 0, mq_lanes_avx512_add8
 * a block of 8 (at a group's edge) into the 8 lanes it belongs to.
 */
struct mq_lanes_avx512 {
	__m512 ps, pe, pm;
	__m512d s_lo, s_hi, e_lo, e_hi;
};

MQ_AVX512 static inline void mq_lanes_avx512_init(struct mq_lanes_avx512 *W)
{
	W->ps = W->pe = W->pm = _mm512_setzero_ps();
	W->s_lo = W->s_hi = W->e_lo = W->e_hi = _mm512_setzero_pd();
}

MQ_AVX512 static inline void mq_lanes_avx512_flush(struct mq_lanes_avx512 *W)
{
	W->s_lo = _mm512_add_pd(W->s_lo, _mm512_cvtps_pd(_mm512_castps512_ps256(W->ps)));
	W->s_hi = _mm512_add_pd(W->s_hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(W->ps, 1)));
	W->e_lo = _mm512_add_pd(W->e_lo, _mm512_cvtps_pd(_mm512_castps512_ps256(W->pe)));
	W->e_hi = _mm512_add_pd(W->e_hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(W->pe, 1)));
	W->ps = W->pe = _mm512_setzero_ps();
}

/* Adds elements i .. i + 15 (i a multiple of 16), flushing when they end a run. */
MQ_AVX512 static inline void mq_lanes_avx512_add(struct mq_lanes_avx512 *W, size_t i, __m512 x, __m512 d)
{
	__m512 e = _mm512_sub_ps(x, d);
	W->ps = _mm512_fmadd_ps(x, x, W->ps);
	W->pe = _mm512_fmadd_ps(e, e, W->pe);
	W->pm = _mm512_range_ps(W->pm, e, 0x0b); /* max(|pm|, |e|), the sign cleared: one instruction */
	if (i % MQ_RUN == MQ_RUN - 16)
		mq_lanes_avx512_flush(W);
}

/* Adds elements i .. i + 7 (i a multiple of 8) to their 8 lanes, flushing when they end a run. */
MQ_AVX512 static inline void mq_lanes_avx512_add8(struct mq_lanes_avx512 *W, size_t i, __m256 x, __m256 d)
{
	__m512 x16 = _mm512_castps256_ps512(x), d16 = _mm512_castps256_ps512(d); /* lanes 8-15 unused */
	__mmask16 m = 0x00ff;
	if (i & MQ_STEP) {
		x16 = _mm512_insertf32x8(_mm512_setzero_ps(), x, 1);
		d16 = _mm512_insertf32x8(_mm512_setzero_ps(), d, 1);
		m = 0xff00;
	}
	__m512 e = _mm512_sub_ps(x16, d16);
	W->ps = _mm512_mask3_fmadd_ps(x16, x16, W->ps, m);
	W->pe = _mm512_mask3_fmadd_ps(e, e, W->pe, m);
	W->pm = _mm512_mask_range_ps(W->pm, m, W->pm, e, 0x0b);
	if (i % MQ_RUN == MQ_RUN - MQ_STEP)
		mq_lanes_avx512_flush(W);
}

/* Hands the state to the scalar lanes, which continue the row and end it. */
MQ_AVX512 static inline void mq_lanes_avx512_store(const struct mq_lanes_avx512 *W, struct mq_lanes *L)
{
	_mm512_storeu_ps(L->ps, W->ps);
	_mm512_storeu_ps(L->pe, W->pe);
	_mm512_storeu_ps(L->pm, W->pm);
	_mm512_storeu_pd(L->s, W->s_lo);
	_mm512_storeu_pd(L->s + 8, W->s_hi);
	_mm512_storeu_pd(L->e, W->e_lo);
	_mm512_storeu_pd(L->e + 8, W->e_hi);
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

/*
 * The kernels that also read 16-bit float rows as stored (the schemes' quantize_half) are written
 * once for every source, with src a constant of each caller, so the compiler makes one kernel per
 * source: element i of row x (mq_row_at), 8 or 16 of them (a bfloat16 widens by a shift, an fp16
 * by F16C's conversion, both exact), and the next row's hint once per line of either width.
 */
MQ_AVX2 static MQ_INLINE __m256 mq_load8(const void *x, size_t i, enum mq_dtype src)
{
	if (src == MQ_DTYPE_F32)
		return _mm256_loadu_ps((const float *)x + i);
	__m128i h = _mm_loadu_si128((const __m128i *)(const void *)((const uint16_t *)x + i));
	if (src == MQ_DTYPE_F16)
		return _mm256_cvtph_ps(h);
	return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

MQ_AVX512 static MQ_INLINE __m512 mq_load16(const void *x, size_t i, enum mq_dtype src)
{
	if (src == MQ_DTYPE_F32)
		return _mm512_loadu_ps((const float *)x + i);
	__m256i h = _mm256_loadu_si256((const __m256i *)(const void *)((const uint16_t *)x + i));
	if (src == MQ_DTYPE_F16)
		return _mm512_cvtph_ps(h);
	return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* mq_prefetch_next_row for element i (a multiple of 16) of a row of either width. */
static MQ_INLINE void mq_prefetch_next_row_of(const void *x, size_t n, size_t i, enum mq_dtype src)
{
	if (src == MQ_DTYPE_F32)
		mq_prefetch_next_row(x, n, i);
	else if (i % 32 == 0)
		_mm_prefetch((const char *)(uintptr_t)((uintptr_t)x + (n + i) * sizeof(uint16_t)), _MM_HINT_T1);
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
		return n - n % MQ_STEP;
	return group % MQ_STEP == 0 ? n : 0;
}

/* ---- the kernels the rows point at ---- */

/* grid.c: integer grids */
struct mq_qparams mq_grid_params(const struct mq_scheme_traits *s, const struct mq_range *r, enum mq_dtype scale_dtype);

/* k_int8.c: one byte per value, any grid within [-128, 127] */
size_t mq_int8_quantize_ref(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			    const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc);
size_t mq_int8_quantize(const struct mq_scheme_traits *s, const float *x, size_t n, size_t group,
			const struct mq_qparams *p, const float *importance, void *out, struct mq_err_acc *acc);
size_t mq_int8_quantize_half(const struct mq_scheme_traits *s, const uint16_t *x, enum mq_dtype src, size_t n,
			     size_t group, const struct mq_qparams *p, void *out, struct mq_err_acc *acc);
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
size_t mq_pack_quantize_half(const struct mq_scheme_traits *s, const uint16_t *x, enum mq_dtype src, size_t n,
			     size_t group, const struct mq_qparams *p, void *out, struct mq_err_acc *acc);
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
size_t mq_fp8_quantize_half(const struct mq_scheme_traits *s, const uint16_t *x, enum mq_dtype src, size_t n,
			    size_t group, const struct mq_qparams *p, void *out, struct mq_err_acc *acc);
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
