/*
 * bench_kernel: the quantization kernel alone, and the memory-copy bandwidth
 * it is compared with. Prints one "name value" line per figure (GB/s of input)
 * on the path this CPU takes, then each vector path's figures (see main).
 *   bench_kernel [MiB]     (default 512 MiB of float32 input, beyond any cache)
 * Rows are 4096 values: whole words for the packed rows (a multiple of 8),
 * and whole groups of 128 for the figures in groups.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dtype.h"
#include "scheme.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Best of several passes of memcpy over n bytes: the single-core copy bandwidth (bytes copied / s). */
static double copy_bandwidth(size_t n)
{
	char *a = malloc(n), *b = malloc(n);
	if (!a || !b)
		return 0;
	memset(a, 1, n);
	memset(b, 2, n);
	double best = 1e30;
	for (int r = 0; r < 5; r++) {
		double t0 = now();
		memcpy(b, a, n);
		double t = now() - t0;
		best = t < best ? t : best;
	}
	volatile char sink = b[n / 2];
	(void)sink;
	free(a);
	free(b);
	return (double)n / best;
}

#define MAX_GROUPS 512

/*
 * Parameters of each group of one row (group == cols: one per row) from its range, the scale
 * rounded to the dtype the row stores it in for input in, as the pipeline does.
 */
static void row_params(const struct mq_scheme_traits *s, enum mq_dtype in, const float *x, size_t cols,
		       size_t group, struct mq_qparams *p)
{
	for (size_t g = 0; g * group < cols; g++) {
		struct mq_range rg;
		size_t bad;
		mq_range_init(&rg);
		mq_range_update(&rg, x + g * group, group, &bad);
		p[g] = s->params(s, &rg, mq_scheme_scale_dtype(s, in));
	}
}

/* Range + quantize per row, as the pipeline does, over rows x cols values of dtype in (group 0: one per row). */
static double kernel_bandwidth(enum mq_scheme scheme, enum mq_dtype in, size_t rows, size_t cols, size_t group)
{
	group = group ? group : cols;
	if (cols % group || cols / group > MAX_GROUPS || cols % 8)
		return 0;
	size_t esz = mq_dtype_size(in), n = rows * cols;
	unsigned char *src = malloc(n * esz);
	float *x = malloc(cols * sizeof(float) * 64);
	unsigned char *out = malloc(n * 2);
	if (!src || !x || !out)
		return 0;
	uint32_t seed = 1;
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		float v = ((float)(seed >> 8) / 16777216.0f - 0.5f) * 0.04f;
		if (seed % 1000 == 0)
			v *= 30.0f;
		if (in == MQ_DTYPE_F32)
			memcpy(src + i * 4, &v, 4);
		else {
			uint16_t h = mq_f32_to_bf16(v);
			memcpy(src + i * 2, &h, 2);
		}
	}
	double best = 1e30;
	const struct mq_scheme_traits *s = mq_scheme_get(scheme);
	size_t row_bytes = (size_t)mq_scheme_bytes(s, cols);
	for (int r = 0; r < 3; r++) {
		struct mq_err_acc acc = { 0, 0, 0 };
		double t0 = now();
		for (size_t row = 0; row < rows; row++) {
			const float *xr = (const float *)(const void *)(src + row * cols * esz);
			if (in != MQ_DTYPE_F32) {
				mq_dtype_widen(in, src + row * cols * esz, x, cols);
				xr = x;
			}
			struct mq_qparams p[MAX_GROUPS];
			row_params(s, in, xr, cols, group, p);
			mq_scheme_quantize(s, xr, cols, group, p, NULL, out + row * row_bytes, &acc);
		}
		double t = now() - t0;
		best = t < best ? t : best;
	}
	free(src);
	free(x);
	free(out);
	return (double)(n * esz) / best;
}

struct figure {
	const char *name;
	enum mq_scheme scheme;
	enum mq_dtype in;
	size_t group;
};

static const struct figure figures[] = {
	{ "int8_f32_gbps", MQ_SCHEME_INT8, MQ_DTYPE_F32, 0 },
	{ "int8_bf16_gbps", MQ_SCHEME_INT8, MQ_DTYPE_BF16, 0 },
	{ "int8_asym_f32_gbps", MQ_SCHEME_INT8_ASYM, MQ_DTYPE_F32, 0 },
	{ "int4_f32_gbps", MQ_SCHEME_INT4, MQ_DTYPE_F32, 0 },
	{ "int4_g128_f32_gbps", MQ_SCHEME_INT4, MQ_DTYPE_F32, 128 },
	{ "int4_g128_bf16_gbps", MQ_SCHEME_INT4, MQ_DTYPE_BF16, 128 },
	{ "int4_asym_g128_f32_gbps", MQ_SCHEME_INT4_ASYM, MQ_DTYPE_F32, 128 },
	{ "w8a16_g128_f32_gbps", MQ_SCHEME_W8A16, MQ_DTYPE_F32, 128 },
	{ "fp8_f32_gbps", MQ_SCHEME_FP8, MQ_DTYPE_F32, 0 },
	{ "fp8_bf16_gbps", MQ_SCHEME_FP8, MQ_DTYPE_BF16, 0 },
};
#define N_FIGURES (sizeof(figures) / sizeof(figures[0]))

/*
 * Every figure on the path this CPU takes (the plain "name value" lines scripts/bench.sh reads),
 * then, where the CPU has more than one vector path, on each of them ("name_avx2 value",
 * "name_avx512 value"): the same bits on every path, only the speed differs.
 */
int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? (size_t)atoi(argv[1]) : 512;
	size_t cols = 4096, rows = (mib << 20) / 4 / cols;
	mq_f16_table();
	const enum mq_simd top = mq_dtype_simd();
	printf("kernel %s\n", mq_quant_kernel_name());
	printf("memcpy_gbps %.3f\n", copy_bandwidth(mib << 20) / 1e9);
	double gbps[N_FIGURES][MQ_SIMD_AVX512 + 1];
	for (size_t f = 0; f < N_FIGURES; f++) {
		const struct figure *g = &figures[f];
		gbps[f][top] = kernel_bandwidth(g->scheme, g->in, rows, cols, g->group) / 1e9;
		printf("%s %.3f\n", g->name, gbps[f][top]);
	}
	if (top != MQ_SIMD_AVX512)
		return 0;
	mq_dtype_simd_cap(MQ_SIMD_AVX2);
	for (size_t f = 0; f < N_FIGURES; f++)
		gbps[f][MQ_SIMD_AVX2] = kernel_bandwidth(figures[f].scheme, figures[f].in, rows, cols, figures[f].group) / 1e9;
	mq_dtype_simd_cap(MQ_SIMD_AVX512);
	for (size_t f = 0; f < N_FIGURES; f++)
		printf("%s_avx2 %.3f\n%s_avx512 %.3f\n", figures[f].name, gbps[f][MQ_SIMD_AVX2], figures[f].name,
		       gbps[f][MQ_SIMD_AVX512]);
	return 0;
}
