#include "linalg.h"

#include <cblas.h>
#include <lapacke.h>

void mq_linalg_init(void)
{
	openblas_set_num_threads(1); /* one thread per rank, and the same sums every time */
}

void mq_linalg_im2col(const float *x, const struct mq_calib_info *ci, uint64_t c_in, uint64_t kh, uint64_t kw,
		      uint64_t oh, uint64_t ow, float *out)
{
	int64_t h = (int64_t)ci->shape.shape[2], w = (int64_t)ci->shape.shape[3];
	uint64_t k_len = c_in * kh * kw;
	for (uint64_t oy = 0; oy < oh; oy++)
		for (uint64_t ox = 0; ox < ow; ox++) {
			float *row = out + (oy * ow + ox) * k_len;
			for (uint64_t c = 0; c < c_in; c++)
				for (uint64_t ki = 0; ki < kh; ki++)
					for (uint64_t kj = 0; kj < kw; kj++) {
						int64_t iy = (int64_t)oy * ci->stride[0] - ci->padding[0] + (int64_t)ki * ci->dilation[0];
						int64_t ix = (int64_t)ox * ci->stride[1] - ci->padding[1] + (int64_t)kj * ci->dilation[1];
						*row++ = iy >= 0 && iy < h && ix >= 0 && ix < w ? x[(c * (uint64_t)h + (uint64_t)iy) * (uint64_t)w + (uint64_t)ix] : 0.0f;
					}
		}
}

void mq_linalg_gemm_sums(const float *x, const float *xh, const float *w, const float *wh, uint64_t m, uint64_t n,
			 uint64_t k, float *y, float *yw, float *ywa, struct mq_out_sums *acc)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, x, (int)k, w, (int)k, 0.0f,
		    y, (int)n);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, x, (int)k, wh, (int)k, 0.0f,
		    yw, (int)n);
	if (xh)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, xh, (int)k, wh, (int)k,
			    0.0f, ywa, (int)n);
	for (uint64_t i = 0; i < m * n; i++) {
		double v = (double)y[i], e1 = v - (double)yw[i], e2 = xh ? v - (double)ywa[i] : 0.0;
		acc->signal += v * v;
		acc->noise_w += e1 * e1;
		acc->noise_wa += e2 * e2;
	}
}

void mq_linalg_gemm_nt(const float *x, const float *w, uint64_t m, uint64_t n, uint64_t k, float *y)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k, 1.0f, x, (int)k, w, (int)k, 0.0f,
		    y, (int)n);
}

void mq_linalg_syrk_add(float *h, uint64_t n, const float *x, uint64_t m)
{
	cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)n, (int)m, 1.0f, x, (int)n, 1.0f, h, (int)n);
}

/*
 * The row-major upper triangle is, read column-major, the lower one: the
 * column-major 'L' routines work on it in place (LAPACKE's row-major entry
 * points would transpose the whole matrix into a copy).
 */
int mq_linalg_inverse_factor(float *a, uint64_t n)
{
	lapack_int k = (lapack_int)n;
	if (LAPACKE_spotrf(LAPACK_COL_MAJOR, 'L', k, a, k) != 0 || LAPACKE_spotri(LAPACK_COL_MAJOR, 'L', k, a, k) != 0 ||
	    LAPACKE_spotrf(LAPACK_COL_MAJOR, 'L', k, a, k) != 0)
		return 1;
	return 0;
}

void mq_linalg_gemm_sub(const float *a, uint64_t lda, const float *b, uint64_t ldb, float *c, uint64_t ldc,
			uint64_t m, uint64_t n, uint64_t k)
{
	if (!m || !n || !k)
		return;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, -1.0f, a, (int)lda, b, (int)ldb,
		    1.0f, c, (int)ldc);
}

void mq_linalg_symm_lower(const float *s, uint64_t m, const float *h, uint64_t n, float *y)
{
	cblas_ssymm(CblasRowMajor, CblasRight, CblasLower, (int)m, (int)n, 1.0f, h, (int)n, s, (int)n, 0.0f, y, (int)n);
}
