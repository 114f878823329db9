/*
 * quant: the quantization schemes and their kernels. Pure functions on
 * caller-owned rows: no I/O, no allocation, no global state.
 *
 * A row is one output channel of a weight (all dims but the first). The
 * caller widens input to float32 first, then for each row (or, per tensor,
 * for all rows) takes the range, derives the parameters, and quantizes.
 * Formulas (README, "Quantization"), following compressed-tensors:
 *   int8      (symmetric):  s = max|x| / 127.5, q = clamp(rne(x * (1/s)), -128, 127)
 *   int8-asym (asymmetric): s = (max(x,0) - min(x,0)) / 255,
 *                           zp = clamp(rne(-min/s), 0, 255) - 128,
 *                           q = clamp(rne(x * (1/s)) + zp, -128, 127)
 *   Both write I8 codes (and int8-asym I8 zero points), as compressed-tensors
 *   does; it has no unsigned type.
 *   s is float32, clamped below at FLT_EPSILON; 1/s is a float32 reciprocal.
 *   fp16 / bf16: round to nearest even.
 * mq_quant_row() is the fast kernel; mq_quant_row_ref() is the plain
 * reference it must match bit for bit (quantized bytes and error sums alike).
 */
#ifndef MQ_QUANT_H
#define MQ_QUANT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

enum mq_scheme {
	MQ_SCHEME_INT8,
	MQ_SCHEME_INT8_ASYM,
	MQ_SCHEME_FP16,
	MQ_SCHEME_BF16,
	MQ_SCHEME_COUNT
};

struct mq_scheme_info {
	const char *name;        /* command-line name: "int8", "int8-asym" */
	const char *quant_dtype; /* metadata quantization_dtype: "int8" */
	enum mq_dtype out_dtype; /* dtype of the quantized weight */
	int symmetric;           /* 1: no zero point */
	int is_cast;             /* fp16/bf16: no scale, no granularity */
	int qmin, qmax;          /* integer range (0, 0 for casts) */
};

const struct mq_scheme_info *mq_scheme_get(enum mq_scheme s);
/* Returns 0 and sets *out, or -1 for an unknown name. */
int mq_scheme_parse(const char *name, enum mq_scheme *out);

/* Range of a run of values, in the order-preserving integer key space. */
struct mq_range {
	uint32_t absmax_bits; /* bits of max |x| (finite values only) */
	int32_t min_key, max_key; /* mq_float_key of min and max */
	int empty;
};

struct mq_qparams {
	float scale;     /* > 0; 1 for casts */
	int32_t zero_point;
};

/* Error sums of rows, in the fixed order described in quant.c. */
struct mq_err_acc {
	double signal;   /* sum x^2 */
	double noise;    /* sum (x - dequant(q))^2 */
	double max_abs;  /* max |x - dequant(q)| */
};

static inline int32_t mq_float_key(float f)
{
	uint32_t u;
	__builtin_memcpy(&u, &f, 4);
	return (int32_t)(u ^ ((uint32_t)((int32_t)u >> 31) & 0x7fffffffu));
}
static inline float mq_key_float(int32_t k)
{
	uint32_t u = (uint32_t)k ^ ((uint32_t)(k >> 31) & 0x7fffffffu);
	float f;
	__builtin_memcpy(&f, &u, 4);
	return f;
}

void mq_range_init(struct mq_range *r);
/*
 * Folds n values into r. Returns 0, or -1 if some value is NaN or Inf, with
 * its index in *bad. Exact and order-independent (integer max/min).
 */
int mq_range_update(struct mq_range *r, const float *x, size_t n, size_t *bad);

/*
 * The int8-asym zero point of a range with minimum lo (<= 0) and scale s:
 * clamp(rne(-lo/s), 0, 255) - 128, the unsigned zero point shifted by 128.
 * compressed-tensors writes round(-128 - lo/s); the two agree except where
 * its float32 subtraction rounds (|lo/s| < 64), where this one is the exact
 * rounding. Shared by the weight and the activation (observe.c) parameters.
 */
static inline int32_t mq_asym_zero_point(float lo, float s)
{
	float z = nearbyintf(0.0f - lo / s);
	return (z < 0.0f ? 0 : z > 255.0f ? 255 : (int32_t)z) - 128;
}

/* Parameters of a scheme for a range (casts: scale 1, zero point 0). */
struct mq_qparams mq_quant_params(enum mq_scheme s, const struct mq_range *r);

/* Max |x| a scheme can represent without overflow (FLT_MAX for integer schemes). */
float mq_scheme_limit(enum mq_scheme s);

/*
 * Quantizes one row of n values into out (n int8 codes for the integer schemes, 2n for
 * casts) and adds the row's error sums to acc (signal and noise by addition,
 * max_abs by max). Returns bytes written.
 */
size_t mq_quant_row(enum mq_scheme s, const float *x, size_t n, struct mq_qparams p, void *out,
		    struct mq_err_acc *acc);
size_t mq_quant_row_ref(enum mq_scheme s, const float *x, size_t n, struct mq_qparams p, void *out,
			struct mq_err_acc *acc);

/* "avx2" or "scalar": the kernel mq_quant_row uses on this CPU (MQ_NO_SIMD=1 forces scalar). */
const char *mq_quant_kernel_name(void);

/* Dequantizes one value of an integer scheme. */
static inline float mq_dequant(struct mq_qparams p, int32_t q)
{
	return (float)(q - p.zero_point) * p.scale;
}

#endif
