/*
 * clip: the MSE search of a weight range (--clip mse, LOWBIT.md E), one
 * group of values at a time. A group is whatever one entry p[k] of the
 * kernels covers: --group-size values of a row, a row (per channel) or a
 * tensor. It works on every row of the scheme table that has parameters (the
 * integer grids int8, int8-asym, int4, int4-asym, w8a16, w8a16-asym, and fp8,
 * where only amax shrinks), through the row's own functions: no formula of a
 * scheme is repeated here.
 *
 * The search (llm-compressor's memoryless MSE observer; defaults grid 100,
 * maxshrink 0.2, norm 2.4, patience 5). From the group's exact range
 * (lo = min(min x, 0), hi = max(max x, 0), amax = max |x|), step i = 0 ..
 * (int)(maxshrink * grid) - 1 takes p = (float)(1 - i / grid) (1 .. 0.81) and
 * the range amax * p, lo * p, hi * p in float32, and turns it into parameters
 * with the row's params function: the same formula and the same rounding of
 * the scale to its stored dtype as min/max, so step 0 is min/max. A
 * candidate's codes are the row's kernel's (mq_scheme_quantize: the fast
 * kernel, bit for bit the reference, or the reference), its dequantized
 * values s->dequantize's (the values the kernel's error sums see), its error
 * E = sum |e|^norm in float64 in element order, e = x - dequant in float32 as
 * the kernels compute it. The smallest E wins, strictly (a tie keeps the
 * larger p). A step whose parameters equal the previous step's is not
 * evaluated again (same codes, same E); a candidate stops early once its
 * partial E reaches the best (the terms are >= 0: its E could only be larger).
 * Neither changes the choice.
 *
 * Squared error never grows. norm 2.4 is not the squared error that SQNR
 * measures, so the winner is returned only if its sum e^2 (float64, element
 * order) is at most min/max's; else min/max's parameters are (a "fallback",
 * counted). A layer's noise, the sum over its groups, is then never above
 * min/max's, and its SQNR never below: --clip mse raises a layer's SQNR or
 * leaves it alone. (Exactly so in the float64 sums; the kernel's own float32
 * run sums round at ~1e-7 relative, and the tests check them too.)
 *
 * Patience is per group: a group's search stops after `patience` steps in a
 * row that did not lower its best E. llm-compressor's patience is global over
 * a tensor: it stops when no channel of the whole tensor improved for that
 * many steps, so there a group's result depends on the other groups it was
 * observed with, and a group keeps searching while others improve. Per
 * group, a group's parameters depend on its own values alone: the same on any
 * number of ranks, for any split of rows into units, and for a channel
 * quantized alone or in its tensor. A group never takes more steps than under
 * the global rule, and may end with a different (larger E) choice where the
 * global rule would have gone on to a later gain.
 *
 * The norm, and determinism. For norm 2.4 (the default) |e|^2.4 is computed
 * in float64 by IEEE-754 +, -, *, / and bit operations only (no libm):
 * |e| = m 2^k, m in [1, 2), |e|^2.4 = m^2 / m^-0.4 * 2^(2.4 k), m^-0.4 from a
 * fixed polynomial and two Newton steps, 2^(2.4 k) from a 5-entry table and an
 * exponent (clip.c). Its relative error against the exact value is below
 * 6e-16 (the unit test measures it against long double powl), that of a
 * float64 pow: the choice is the definition's unless two candidates' E agree
 * to ~1e-15, which for distinct codes does not happen in practice (equal
 * codes give bit-equal E). And it is bit for bit the same on every machine,
 * libm and path (the AVX2 path does the same operations, 4 at a time; the
 * build has no FMA contraction), as the rest of the quantization is. The
 * alternatives were worse on one of the two counts: powf (or
 * exp2f(2.4 log2f)) in float32 rounds each term at ~6e-8 and differs between
 * libms, which flips near-ties at a rate that would show on billions of
 * groups; libm pow in float64 is as accurate but not guaranteed identical
 * across libms. norm 2 uses e * e (exact); any other norm libm pow in float64
 * (its choices may then differ across libms, in near-ties only).
 *
 * Cost: per evaluated candidate, the kernel and the dequantization of the
 * group, 64 values at a time in stack buffers (no allocation), and one term a
 * value. Most of it is int4's scalar kernel (a division and a rounding call a
 * value) and its unpacking; a fast kernel in the row speeds the search too.
 *
 * Measured (tests/unit/quant/test_clip.c, test_clip_measure_int4_layers,
 * prints them): int4 g128, layers of 256 rows x 4096, rows of random scale,
 * SQNR of the kernel's own sums, min/max -> --clip mse, the same to 0.003 dB
 * for F32, F16 and BF16 scales:
 *   Gaussian with 4 outliers of 6-12 sigma a row  16.19 -> 16.93 dB (+0.74)
 *   Laplace                                        16.41 -> 17.15 dB (+0.74)
 *   Gaussian                                       19.12 -> 19.84 dB (+0.72)
 * 91-94 % of the groups change, 0.2-0.4 % fall back to min/max, the mean
 * shrink is 0.08-0.09, and a group takes 13.5-14.4 of the 20 steps. Time:
 * about 0.21 s per million weights with the AVX2 terms, 0.27-0.34 s with
 * MQ_NO_SIMD=1 (Release build, one core of a shared 2.6 GHz AMD EPYC; min
 * of three runs). The same choices on either path.
 *
 * Pure: no I/O, no allocation, no global state; the caller owns the stats.
 */
#ifndef MQ_CLIP_H
#define MQ_CLIP_H

#include <stddef.h>
#include <stdint.h>

#include "scheme.h"

/* --clip: how a weight group's range is chosen. */
enum mq_clip { MQ_CLIP_NONE, MQ_CLIP_MSE };

/* "none" or "mse". Returns 0 and sets *out, or -1. */
int mq_clip_parse(const char *name, enum mq_clip *out);
const char *mq_clip_name(enum mq_clip c);

struct mq_clip_opts {
	int grid;         /* p = 1 - i / grid: steps of 1/grid (100) */
	double maxshrink; /* steps i < (int)(maxshrink * grid), at least step 0 (0.2: 20 steps, p 1 .. 0.81) */
	double norm;      /* exponent of the error, > 0 (2.4) */
	int patience;     /* stop after this many steps in a row without a lower error (5); 0: never */
};
#define MQ_CLIP_OPTS_DEFAULT { .grid = 100, .maxshrink = 0.2, .norm = 2.4, .patience = 5 }

/* Totals over the groups searched; the caller zeroes them and may add them up across calls. */
struct mq_clip_stats {
	uint64_t n_groups;    /* groups searched */
	uint64_t n_changed;   /* groups given parameters other than min/max's */
	uint64_t n_fallback;  /* groups whose norm winner had the larger sum e^2: min/max's kept */
	uint64_t n_steps;     /* steps taken (evaluated or equal to the previous one), over all groups */
	uint64_t shrink_steps; /* sum of the step i returned (0 for min/max's): mean shrink below */
	double sq_minmax;     /* sum e^2 with min/max's parameters (float64, element order, group order) */
	double sq_chosen;     /* sum e^2 with the returned parameters */
	double norm_chosen;   /* sum |e|^norm with the returned parameters */
};

/* The mean shrink 1 - p over the groups searched (0 when none was). */
static inline double mq_clip_mean_shrink(const struct mq_clip_stats *st, int grid)
{
	return st->n_groups ? (double)st->shrink_steps / ((double)grid * (double)st->n_groups) : 0.0;
}

/*
 * The parameters of the n values x (one group) that the search chooses, the
 * scale rounded to scale_dtype. s must have parameters (s->granularities != 0)
 * and n must be a multiple of s->pack; x must be finite (as for min/max:
 * with a NaN or an Inf, or n == 0, the result is the empty range's, with no
 * search and nothing counted). o NULL: the defaults. st may be NULL.
 */
struct mq_qparams mq_clip_mse(const struct mq_scheme_traits *s, const float *x, size_t n, enum mq_dtype scale_dtype,
			      const struct mq_clip_opts *o, struct mq_clip_stats *st);

/* One term of E: |e|^norm as the search computes it (norm 2.4: by IEEE operations only, see above). */
double mq_clip_term(double norm, float e);
/* mq_clip_term of e[0 .. n) into out, 4 at a time where AVX2 runs: the same bits. */
void mq_clip_terms(double norm, const float *e, double *out, size_t n);

#endif
