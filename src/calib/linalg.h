/*
 * linalg: the linear algebra of calibration, the only file that includes
 * cblas.h. One BLAS thread per rank, so that every run sums alike.
 */
#ifndef MQ_LINALG_H
#define MQ_LINALG_H

#include <stdint.h>

#include "calib.h"

/* Output-space sums of a layer's rows: of Y², of (Y - Ŷw)² and of (Y - Ŷwa)². */
struct mq_out_sums {
	double signal, noise_w, noise_wa;
};

/* BLAS on one thread (call once before any other function here). */
void mq_linalg_init(void);

/*
 * A Conv input [c_in, h, w] (its shape in ci) to rows of patches
 * [oh * ow, c_in * kh * kw], zero padded.
 */
void mq_linalg_im2col(const float *x, const struct mq_calib_info *ci, uint64_t c_in, uint64_t kh, uint64_t kw,
		      uint64_t oh, uint64_t ow, float *out);

/*
 * Y = X Wᵀ for m rows of x (k wide) and n rows of w, and the same with wh (and
 * with xh and wh when xh is given): adds the sums of Y² and of the errors, in
 * index order, to acc. y, yw, ywa: m * n floats each.
 */
void mq_linalg_gemm_sums(const float *x, const float *xh, const float *w, const float *wh, uint64_t m, uint64_t n,
			 uint64_t k, float *y, float *yw, float *ywa, struct mq_out_sums *acc);

#endif
