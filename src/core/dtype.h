/*
 * dtype: the safetensors element types, their names and sizes, and exact
 * conversions between float32 and the 16-bit float formats.
 *
 * Conversions to 16 bits round to nearest, ties to even, in software, so
 * that results never depend on the CPU's vector extensions.
 */
#ifndef MQ_DTYPE_H
#define MQ_DTYPE_H

#include <stddef.h>
#include <stdint.h>

enum mq_dtype {
	MQ_DTYPE_BOOL,
	MQ_DTYPE_U8,
	MQ_DTYPE_I8,
	MQ_DTYPE_F8_E5M2,
	MQ_DTYPE_F8_E4M3,
	MQ_DTYPE_F8_E8M0,
	MQ_DTYPE_I16,
	MQ_DTYPE_U16,
	MQ_DTYPE_F16,
	MQ_DTYPE_BF16,
	MQ_DTYPE_I32,
	MQ_DTYPE_U32,
	MQ_DTYPE_F32,
	MQ_DTYPE_F64,
	MQ_DTYPE_I64,
	MQ_DTYPE_U64,
	MQ_DTYPE_C64,
	MQ_DTYPE_COUNT
};

/* Returns 0 and sets *out, or -1 for a name safetensors does not define. */
int mq_dtype_parse(const char *name, size_t len, enum mq_dtype *out);
const char *mq_dtype_name(enum mq_dtype d);
size_t mq_dtype_size(enum mq_dtype d); /* bytes per element */
int mq_dtype_is_float(enum mq_dtype d); /* F32, F16, BF16 or F64: the quantizable inputs */

/* Exact widening: every f16/bf16 value is representable in f32. */
float mq_f16_to_f32(uint16_t h);
static inline float mq_bf16_to_f32(uint16_t b)
{
	union { uint32_t u; float f; } v = { .u = (uint32_t)b << 16 };
	return v.f;
}
/* Round to nearest even; finite inputs only (NaN handling is the caller's). */
uint16_t mq_f32_to_f16(float f);
uint16_t mq_f32_to_bf16(float f);

/* A 65536-entry table f16 bits -> f32, built on first use (not thread-safe). */
const float *mq_f16_table(void);

/*
 * Widen n elements of a float dtype (F32, F16, BF16; F64 narrowed, to nearest) into dst. Vector
 * paths (mq_dtype_simd) give the scalar conversions' bits exactly, NaN payloads included, and
 * hint the n source elements after src into L2 (in a block of rows, the next row) as they go.
 */
void mq_dtype_widen(enum mq_dtype d, const void *src, float *dst, size_t n);

/*
 * The vector extensions that the conversions here and the quantization kernels (src/quant/) may
 * use, asked of the CPU once and cached: MQ_SIMD_AVX2 is AVX2 and F16C, MQ_SIMD_AVX512 adds
 * AVX-512 F, BW, VL and DQ, each with an OS that saves the registers. MQ_NO_SIMD set in the
 * environment means scalar; MQ_SIMD=scalar, avx2 or avx512 caps the level (never above the
 * CPU's; another value is ignored). Every path gives the same bits, so the level changes speed
 * only.
 */
enum mq_simd { MQ_SIMD_SCALAR, MQ_SIMD_AVX2, MQ_SIMD_AVX512 };
enum mq_simd mq_dtype_simd(void);
/*
 * Caps the level at max for the rest of the process (tests and benchmarks run each path) and
 * returns the level now in effect; MQ_SIMD_AVX512 lifts the cap again. Not thread-safe: call it
 * while no kernel runs.
 */
enum mq_simd mq_dtype_simd_cap(enum mq_simd max);
const char *mq_dtype_simd_name(enum mq_simd level); /* "scalar", "avx2", "avx512" */

static inline uint32_t mq_f32_bits(float f)
{
	union { float f; uint32_t u; } v = { .f = f };
	return v.u;
}
static inline float mq_f32_from_bits(uint32_t u)
{
	union { uint32_t u; float f; } v = { .u = u };
	return v.f;
}

#endif
