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
	double noise_rtn; /* GPTQ layers: of (Y - Ŷ) with round to nearest's weights */
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

/* y = x wᵀ for m rows of x and n rows of w (both k wide): m * n floats. */
void mq_linalg_gemm_nt(const float *x, const float *w, uint64_t m, uint64_t n, uint64_t k, float *y);

/*
 * h += xᵀ x for m rows of x (n wide): the upper triangle of the row-major
 * n × n h (BLAS syrk; the lower triangle is not touched).
 */
void mq_linalg_syrk_add(float *h, uint64_t n, const float *x, uint64_t m);

/*
 * In the upper triangle of the row-major n × n a, which holds a symmetric A
 * there: U, upper triangular with Uᵀ U = A⁻¹ (LAPACK potrf, potri, potrf).
 * The strictly lower triangle is not touched. Returns 0, or nonzero where A
 * (or its inverse, in float32) is not positive definite.
 */
int mq_linalg_inverse_factor(float *a, uint64_t n);

/* c (m × n, row stride ldc) -= a (m × k, lda) · b (k × n, ldb), all row-major. */
void mq_linalg_gemm_sub(const float *a, uint64_t lda, const float *b, uint64_t ldb, float *c, uint64_t ldc,
			uint64_t m, uint64_t n, uint64_t k);

/* y (m × n) = s (m × n) · H, H symmetric n × n held in the lower triangle (and diagonal) of h. */
void mq_linalg_symm_lower(const float *s, uint64_t m, const float *h, uint64_t n, float *y);

#endif
