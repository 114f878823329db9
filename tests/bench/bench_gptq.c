/*
 * GPTQ's arithmetic on one layer, timed part by part (run by scripts/bench.sh, not by ctest):
 *
 *   bench_gptq [IN] [OUT] [ROWS]      (default 4096 4096 65536)
 *   bench_gptq sgemm                  (the sgemm rate alone, a mean over 4 s: run on each core at once, it shows
 *                                      what ranks that share the machine can add)
 *
 * Prints, one "key value" per line: the machine's sgemm rate (a 2048³ product, best of 3), the
 * Hessian's time (syrk over ROWS calibration rows, in the 4096-row blocks mq-dist uses for this
 * width) and GFLOP/s, the factor's time, the sweep's (OUT rows in blocks of 128 rows, int4 g128,
 * static order) and its GFLOP/s, the output-space sums' (GPTQ and round to nearest from H), and
 * the sum of them. The inputs are random; the times do not depend on the values.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "gptq.h"
#include "linalg.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t state = 88172645463325252ull;
static float rnd(void)
{
	state ^= state << 13;
	state ^= state >> 7;
	state ^= state << 17;
	return (float)((double)(state >> 11) / 9007199254740992.0 - 0.5);
}

/* best: the best of 3 products; else the mean over 4 s of them (two copies at once overlap all along) */
static double sgemm_gflops(int best_of_3)
{
	const int n = 2048;
	float *a = malloc((size_t)n * n * sizeof(float)), *b = malloc((size_t)n * n * sizeof(float));
	float *c = malloc((size_t)n * n * sizeof(float));
	for (size_t i = 0; i < (size_t)n * n; i++)
		a[i] = rnd(), b[i] = rnd();
	double best = 1e30, start = now();
	int reps = 0;
	for (int rep = 0; best_of_3 ? rep < 3 : now() - start < 4.0; rep++, reps++) {
		double t0 = now();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
		double dt = now() - t0;
		best = dt < best ? dt : best;
	}
	if (!best_of_3)
		best = (now() - start) / reps;
	free(a);
	free(b);
	free(c);
	return 2.0 * n * (double)n * n / best / 1e9;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "sgemm") == 0) {
		mq_linalg_init();
		printf("sgemm_gflops %.1f\n", sgemm_gflops(0));
		return 0;
	}
	const uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 4096;
	const uint64_t out = argc > 2 ? strtoull(argv[2], NULL, 10) : 4096;
	const uint64_t rows = argc > 3 ? strtoull(argv[3], NULL, 10) : 65536;
	const uint64_t block_rows = 128, group = 128;
	mq_linalg_init();
	printf("sgemm_gflops %.1f\n", sgemm_gflops(1));
	enum mq_scheme id;
	if (mq_scheme_parse("int4", &id))
		return 1;
	const struct mq_scheme_traits *s = mq_scheme_get(id);
	struct mq_gptq_opts o = { 0.01, MQ_GPTQ_BLOCK_DEFAULT, MQ_ACTORDER_STATIC, MQ_GPTQ_SCALES_ORIGINAL, 0 };
	struct mq_gptq_layer g;
	uint64_t xb = (16u << 20) / (n * 4); /* the pipeline's read blocks: 16 MiB of rows */
	float *x = malloc((size_t)(xb * n) * sizeof(float));
	if (!x || mq_gptq_layer_init(&g, n))
		return 1;
	for (uint64_t i = 0; i < xb * n; i++)
		x[i] = rnd() + (i % n == 7 ? 20.0f : 0.0f);
	float *seg = malloc((size_t)(n * n) * sizeof(float));
	if (!seg)
		return 1;
	double t0 = now();
	for (uint64_t r = 0; r < rows; r += xb)
		mq_gptq_add_rows(&g, x, rows - r < xb ? rows - r : xb, seg);
	free(seg);
	double t_h = now() - t0;
	t0 = now();
	mq_gptq_factor(&g, &o);
	double t_f = now() - t0;
	free(x);
	float *w = malloc((size_t)(block_rows * n) * sizeof(float)), *xq = malloc((size_t)(block_rows * n) * sizeof(float));
	float *deq = malloc((size_t)(block_rows * n) * sizeof(float)), *rtn = malloc((size_t)(block_rows * n) * sizeof(float));
	struct mq_qparams *p = malloc((size_t)(block_rows * n / group) * sizeof(*p));
	uint64_t sb = mq_gptq_sweep_bytes(n, block_rows, o.block), qb = mq_gptq_quad_bytes(n, block_rows, 3);
	void *work = malloc((size_t)(sb > qb ? sb : qb));
	if (!w || !xq || !deq || !rtn || !p || !work)
		return 1;
	for (uint64_t i = 0; i < block_rows * n; i++)
		w[i] = rnd() * 0.04f;
	double t_s = 0, t_q = 0, loss = 0, sig = 0, noise[2] = { 0, 0 };
	for (uint64_t r = 0; r < out; r += block_rows) {
		const uint64_t m = out - r < block_rows ? out - r : block_rows;
		t0 = now();
		mq_gptq_sweep(&g, &o, s, MQ_DTYPE_F32, group, w, m, p, xq, &loss, work);
		t_s += now() - t0;
		for (uint64_t i = 0; i < m * n; i++) {
			deq[i] = s->fake(s, xq[i], p[i / group]);
			rtn[i] = deq[i];
		}
		const float *const xh[2] = { deq, rtn };
		t0 = now();
		mq_gptq_quad(&g, w, xh, 2, m, &sig, noise, work);
		t_q += now() - t0;
	}
	/* the sweep's multiply-adds: the lazy GEMMs (out · n²/2) and the in-block updates (out · n · block/2) */
	const double sweep_flops = 2.0 * (double)out * ((double)n * n / 2.0 + (double)n * (double)o.block / 2.0);
	printf("in %llu\nout %llu\ncalib_rows %llu\n", (unsigned long long)n, (unsigned long long)out,
	       (unsigned long long)rows);
	printf("hessian_s %.3f\nhessian_gflops %.1f\n", t_h, (double)rows * n * (double)n / t_h / 1e9);
	printf("factor_s %.3f\nfactor_gflops %.1f\n", t_f, 2.0 * (double)n * n * (double)n / t_f / 1e9);
	printf("sweep_s %.3f\nsweep_gflops %.1f\n", t_s, sweep_flops / t_s / 1e9);
	printf("outspace_s %.3f\noutspace_gflops %.1f\n", t_q, 2.0 * 3.0 * (double)out * n * (double)n / t_q / 1e9);
	printf("layer_s %.3f\n", t_h + t_f + t_s + t_q);
	printf("loss %.6g\n", loss);
	free(w);
	free(xq);
	free(deq);
	free(rtn);
	free(p);
	free(work);
	mq_gptq_layer_release(&g);
	return 0;
}
