/*
 * quant: the value types every scheme shares. A row's range (in the
 * order-preserving integer key space), the parameters of one group of values
 * (scale and zero point), the error sums a kernel adds to, and the integer
 * grid's dequantization. The schemes themselves, their kernels and the table
 * that describes them are in scheme.h; the range functions are in grid.c.
 *
 * A row is one output channel of a weight (all dims but the first). The
 * caller widens input to float32 first, then for each row (or, per tensor,
 * for all rows) takes the range, derives the parameters, and quantizes.
 * Formulas (README, "Quantization"), following compressed-tensors; qmin and
 * qmax are the row's integer grid, [-128, 127] for int8:
 *   symmetric:  s = max|x| / ((qmax - qmin) / 2)     (127.5 for int8)
 *               q = clamp(rne(x * (1/s)), qmin, qmax)
 *   asymmetric: s = (max(x,0) - min(x,0)) / (qmax - qmin)     (255)
 *               zp = clamp(rne(-min/s), 0, qmax - qmin) + qmin  (- 128)
 *               q = clamp(rne(x * (1/s)) + zp, qmin, qmax)
 *   int8 and int8-asym both write I8 codes (and int8-asym I8 zero points), as
 *   compressed-tensors does; it has no unsigned type.
 *   s is float32, clamped below at FLT_EPSILON; 1/s is a float32 reciprocal.
 *   fp16 / bf16: round to nearest even.
 * Pure: no I/O, no allocation. The one piece of global state of the layer is
 * the cached CPU check (mq_quant_kernel_name, scheme.h).
 */
#ifndef MQ_QUANT_H
#define MQ_QUANT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

/* Range of a run of values, in the order-preserving integer key space. */
struct mq_range {
	uint32_t absmax_bits; /* bits of max |x| (finite values only) */
	int32_t min_key, max_key; /* mq_float_key of min and max */
	int empty;
};

/* The parameters of one group of values. */
struct mq_qparams {
	float scale;     /* > 0; 1 for float formats */
	int32_t zero_point;
};

/* Error sums of rows, in the fixed order of kernel.h (every kernel, reference or fast, keeps it). */
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
 * As mq_range_update, for a symmetric scheme, whose parameters read only
 * absmax_bits: folds max |x| and makes the same NaN/Inf check, and leaves
 * min_key and max_key as they were (one vector max per 8 values, not three).
 */
int mq_range_update_abs(struct mq_range *r, const float *x, size_t n, size_t *bad);
/*
 * The two above on a row of 16-bit floats as stored (x their bits, src
 * MQ_DTYPE_BF16 or MQ_DTYPE_F16): the range, the result and *bad those of the
 * row widened to float32, without the widened copy (on 16-bit lanes: both
 * formats are sign and magnitude and widen in order).
 */
int mq_range_update_half(struct mq_range *r, const uint16_t *x, enum mq_dtype src, size_t n, size_t *bad);
int mq_range_update_abs_half(struct mq_range *r, const uint16_t *x, enum mq_dtype src, size_t n, size_t *bad);

/*
 * The parameters of an integer grid [qmin, qmax] (the formulas above): for a
 * symmetric grid from the threshold amax (lo and hi unused), for an
 * asymmetric one from the range [lo, hi], lo <= 0 <= hi (amax unused).
 * The one home of the grid's formulas: the weights' rows (grid.c) and the
 * activation observers (observe.c) both call it.
 *
 * The zero point clamp(rne(-lo/s), 0, qmax - qmin) + qmin is the unsigned
 * zero point shifted by qmin. compressed-tensors writes round(qmin - lo/s);
 * the two agree except where its float32 subtraction rounds (|lo/s| < 64 for
 * int8), where this one is the exact rounding.
 * The scale is rounded to scale_dtype (the dtype it is stored in) before the
 * zero point is derived from it, and floored at FLT_EPSILON before and after.
 */
struct mq_qparams mq_grid_qparams(int symmetric, float amax, float lo, float hi, int qmin, int qmax,
				  enum mq_dtype scale_dtype);

/* Half the number of steps of a grid, (qmax - qmin) / 2: the divisor of a symmetric scale (127.5 for int8). */
static inline float mq_grid_half_steps(int qmin, int qmax)
{
	return (float)(qmax - qmin) / 2.0f;
}

/* Dequantizes one value of an integer grid: (q - zp) * s. */
static inline float mq_dequant(struct mq_qparams p, int32_t q)
{
	return (float)(q - p.zero_point) * p.scale;
}

#endif
