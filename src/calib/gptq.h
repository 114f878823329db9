/*
 * gptq: the GPTQ method's arithmetic for one layer (LOWBIT.md C.1, C.2),
 * without files or ranks: the pipeline (pipeline/gptq.c) feeds it the
 * calibration rows and the weight rows.
 *
 * A layer's state is its Hessian H = (2/N) Σ x xᵀ over its N calibration
 * rows (tokens): the sum, in their fixed order, of the Gram matrices of
 * fixed segments of rows, each made by one syrk (so that any rank can make a
 * segment's and the sum is the same however they are shared out), and
 * from it the upper Cholesky factor U of (H + λI)⁻¹ in the sweep's column
 * order. Both live in one n × n float32 matrix: U in the strict upper
 * triangle (its diagonal apart), H in the lower triangle and the diagonal,
 * so that the output-space error of any weight rows is a quadratic form in
 * H (x H xᵀ = (2/N) Σ (x·row)²) without reading the calibration rows again.
 *
 * The factor:
 * - Dead columns (H_jj = 0: the input is always zero) get H_jj = 1 for the
 *   factor and their weights are zeroed before quantizing, as the reference.
 * - Column order: static (descending diag H, ties by index: the same order
 *   on any machine) or none. Group parameters are always indexed by the
 *   original columns, so no g_idx is written.
 * - λ = damp · mean(diag H). Where a Cholesky fails (not positive definite
 *   in float32), damp is raised by MQ_GPTQ_DAMP_STEP at a time while it is
 *   below MQ_GPTQ_DAMP_LIMIT (as GPTQModel does); when every step fails the
 *   layer falls back to round to nearest, and says so.
 *
 * The sweep of R weight rows is the reference's: columns in blocks of
 * `block`, each column quantized with its group's parameters by the
 * scheme's own per-value function (s->fake, bit for bit the kernels), its
 * error spread over the block's later columns at once and over the rest of
 * the row by one GEMM per block (lazy updates). Every row's result depends
 * on that row and the factor only, so row chunks are independent.
 */
#ifndef MQ_GPTQ_H
#define MQ_GPTQ_H

#include <stddef.h>
#include <stdint.h>

#include "scheme.h"

#define MQ_GPTQ_DAMP_STEP 0.01
#define MQ_GPTQ_DAMP_LIMIT 1.0
#define MQ_GPTQ_BLOCK_DEFAULT 128

enum mq_actorder { MQ_ACTORDER_STATIC, MQ_ACTORDER_NONE };

/* Where the group parameters come from. */
enum mq_gptq_scales {
	MQ_GPTQ_SCALES_ORIGINAL, /* the original weights (dead columns zeroed), before the sweep: llm-compressor */
	MQ_GPTQ_SCALES_UPDATED,  /* at each group's first column, from the weights updated so far: the reference
				    (column order none only) */
};

struct mq_gptq_opts {
	double damp;             /* fraction of the mean diagonal (default 0.01) */
	uint64_t block;          /* columns per lazy block (default 128) */
	enum mq_actorder actorder;
	enum mq_gptq_scales scales;
	int clip_mse;            /* group parameters by the MSE range search (quant/clip.h) */
};

struct mq_gptq_layer {
	uint64_t n;              /* input columns */
	float *a;                /* n × n: U above the diagonal, H (sweep order) on and below it */
	float *udiag;            /* U's diagonal */
	uint32_t *perm;          /* the sweep's j-th column is original column perm[j] */
	unsigned char *dead;     /* per original column: H_jj = 0 */
	double damp;             /* the fraction used */
	int raised;              /* times the damping was raised */
	int fallback;            /* 1: no factor at any damping: round to nearest */
	int h_nonfinite;         /* H itself overflowed float32 (inputs near 1e19): no output-space sums from it */
	uint64_t n_dead;         /* columns whose calibration inputs are all zero (their weights are zeroed) */
	uint64_t rows;           /* calibration rows accumulated */
};

/* Bytes a layer of n columns holds (the matrix and its vectors). */
uint64_t mq_gptq_layer_bytes(uint64_t n);
/* Bytes of scratch a sweep of `rows` rows of n columns in blocks of `block` needs (mq_gptq_sweep's work). */
uint64_t mq_gptq_sweep_bytes(uint64_t n, uint64_t rows, uint64_t block);

/* A zeroed H of n columns. Returns 0, or -1 out of memory. */
int mq_gptq_layer_init(struct mq_gptq_layer *g, uint64_t n);
void mq_gptq_layer_release(struct mq_gptq_layer *g);

/* A segment's Gram matrix: the upper triangle of the n × n p = xᵀ x for m rows of x. */
void mq_gptq_segment(uint64_t n, const float *x, uint64_t m, float *p);
/* H += p, the Gram matrix of a segment of m rows (upper triangles; the 2/N comes at the factor). */
void mq_gptq_add_segment(struct mq_gptq_layer *g, const float *p, uint64_t m);
/* Both for m rows of x, through scratch (n × n floats). */
void mq_gptq_add_rows(struct mq_gptq_layer *g, const float *x, uint64_t m, float *scratch);

/* The factor from the accumulated rows (see above). Returns 0 (also on a fallback), -1 out of memory. */
int mq_gptq_factor(struct mq_gptq_layer *g, const struct mq_gptq_opts *o);

/*
 * The sweep of `rows` weight rows x (row-major, n wide, original column
 * order, finite): the parameters of each row's groups into p (rows ×
 * n/group, original order), the value each weight had when it was quantized
 * into xq (rows × n, original order: the scheme's kernel on xq with p gives
 * the GPTQ codes), and adds ½ Σ (w − q)² / d² to *loss. On a fallback layer,
 * p are the round-to-nearest parameters, xq = x and d = 1. work: scratch of
 * mq_gptq_sweep_bytes(n, rows, o->block) bytes. Group parameters take the
 * scale dtype sd.
 */
void mq_gptq_sweep(const struct mq_gptq_layer *g, const struct mq_gptq_opts *o, const struct mq_scheme_traits *s,
		   enum mq_dtype sd, uint64_t group, const float *x, uint64_t rows, struct mq_qparams *p, float *xq,
		   double *loss, void *work);

/*
 * Output-space sums of `rows` rows over the calibration inputs, from H:
 * signal += Σ x H xᵀ and, per k < n_err, noise[k] += Σ e_k H e_kᵀ with
 * e_k = x − xh[k] (all rows × n, original order). work: scratch of
 * mq_gptq_quad_bytes(n, rows, 1 + n_err) bytes.
 */
uint64_t mq_gptq_quad_bytes(uint64_t n, uint64_t rows, int n_mats);
void mq_gptq_quad(const struct mq_gptq_layer *g, const float *x, const float *const *xh, int n_err, uint64_t rows,
		  double *signal, double *noise, void *work);

#endif
