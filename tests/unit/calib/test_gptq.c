/*
 * GPTQ's arithmetic (calib/gptq.c) against a literal transcription of the
 * algorithm written here in double precision (one column at a time, every
 * update applied at once, no lazy blocks), and the properties the method
 * promises: dead columns, raised dampening, the fallback, the gain over
 * round to nearest on correlated inputs, and the output-space error from H
 * against the same sums computed directly from the calibration rows.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#include "gptq.h"
#include "linalg.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static double uniform(void)
{
	rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(rng_state >> 11) / 9007199254740992.0;
}
static float normal(void)
{
	double u = uniform() + 1e-300, v = uniform();
	return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* m rows of n inputs: rank-k structure plus noise, a few outlier channels, optionally dead columns. */
static float *inputs(uint64_t m, uint64_t n, int k, float noise, int dead)
{
	float *basis = malloc((size_t)(k * n) * sizeof(float)), *x = malloc((size_t)(m * n) * sizeof(float));
	for (uint64_t i = 0; i < (uint64_t)k * n; i++)
		basis[i] = normal();
	for (uint64_t r = 0; r < m; r++) {
		float c[16];
		for (int j = 0; j < k; j++)
			c[j] = normal();
		for (uint64_t col = 0; col < n; col++) {
			float v = noise * normal();
			for (int j = 0; j < k; j++)
				v += c[j] * basis[(uint64_t)j * n + col];
			if (col % 37 == 5)
				v *= 20.0f; /* outlier channels */
			x[r * n + col] = dead && col % 11 == 3 ? 0.0f : v;
		}
	}
	free(basis);
	return x;
}

static float *weights(uint64_t rows, uint64_t n)
{
	float *w = malloc((size_t)(rows * n) * sizeof(float));
	for (uint64_t i = 0; i < rows * n; i++)
		w[i] = normal() * 0.05f;
	return w;
}

static struct mq_gptq_layer layer_of(const float *x, uint64_t m, uint64_t n, const struct mq_gptq_opts *o)
{
	struct mq_gptq_layer g;
	assert_int_equal(mq_gptq_layer_init(&g, n), 0);
	float *p = malloc((size_t)(n * n) * sizeof(float));
	mq_gptq_add_rows(&g, x, m / 2, p); /* in two segments: H is a sum over them */
	mq_gptq_add_rows(&g, x + (m / 2) * n, m - m / 2, p);
	free(p);
	assert_int_equal(mq_gptq_factor(&g, o), 0);
	return g;
}

/* Round to nearest's parameters of n values, the scale in float32. */
static struct mq_qparams params_of(const struct mq_scheme_traits *s, const float *x, size_t n)
{
	struct mq_range rg;
	size_t bad;
	mq_range_init(&rg);
	mq_range_update(&rg, x, n, &bad);
	return s->params(s, &rg, MQ_DTYPE_F32);
}

struct sweep {
	struct mq_qparams *p;
	float *xq;
	double loss;
};

static struct sweep run_sweep(const struct mq_gptq_layer *g, const struct mq_gptq_opts *o,
			      const struct mq_scheme_traits *s, uint64_t group, const float *w, uint64_t rows)
{
	const uint64_t n = g->n;
	struct sweep r = { malloc((size_t)(rows * (n / group)) * sizeof(struct mq_qparams)),
			   malloc((size_t)(rows * n) * sizeof(float)), 0.0 };
	void *work = malloc((size_t)mq_gptq_sweep_bytes(n, rows, o->block));
	mq_gptq_sweep(g, o, s, MQ_DTYPE_F32, group, w, rows, r.p, r.xq, &r.loss, work);
	free(work);
	return r;
}

/* The value the file holds for element c of row r: the scheme's per-value function on what the sweep quantized. */
static float held(const struct mq_scheme_traits *s, const struct sweep *sw, uint64_t n, uint64_t group, uint64_t r,
		  uint64_t c)
{
	return s->fake(s, sw->xq[r * n + c], sw->p[r * (n / group) + c / group]);
}

/*
 * The literal algorithm in double: H, dead columns, order, damping, the
 * Cholesky factor of the inverse computed here, then one column at a time
 * with the whole remaining row updated at once. Group parameters from the
 * original (dead-zeroed) weights. Returns the loss; q gets the values.
 */
static double literal(const float *x, uint64_t m, uint64_t n, const float *w, uint64_t rows,
		      const struct mq_scheme_traits *s, uint64_t group, int actorder, double damp, float *q)
{
	double *h = calloc((size_t)(n * n), sizeof(double)), *u = calloc((size_t)(n * n), sizeof(double));
	for (uint64_t i = 0; i < n; i++)
		for (uint64_t j = 0; j < n; j++) {
			double acc = 0;
			for (uint64_t r = 0; r < m; r++)
				acc += (double)x[r * n + i] * (double)x[r * n + j];
			h[i * n + j] = 2.0 * acc / (double)m;
		}
	unsigned char *dead = calloc((size_t)n, 1);
	uint32_t *perm = malloc((size_t)n * sizeof(uint32_t));
	for (uint64_t j = 0; j < n; j++) {
		dead[j] = h[j * n + j] == 0.0;
		if (dead[j])
			h[j * n + j] = 1.0;
		perm[j] = (uint32_t)j;
	}
	if (actorder) /* insertion sort: descending diagonal, ties by index */
		for (uint64_t i = 1; i < n; i++)
			for (uint64_t j = i; j > 0 && h[perm[j] * n + perm[j]] > h[perm[j - 1] * n + perm[j - 1]]; j--) {
				uint32_t t = perm[j];
				perm[j] = perm[j - 1];
				perm[j - 1] = t;
			}
	double mean = 0;
	for (uint64_t j = 0; j < n; j++)
		mean += h[j * n + j];
	mean /= (double)n;
	double *a = calloc((size_t)(n * n), sizeof(double));
	for (uint64_t i = 0; i < n; i++)
		for (uint64_t j = 0; j < n; j++)
			a[i * n + j] = h[perm[i] * n + perm[j]] + (i == j ? damp * mean : 0.0);
	/* inverse by Gauss-Jordan, then its upper Cholesky factor: inv = Uᵀ U */
	double *inv = calloc((size_t)(n * n), sizeof(double));
	for (uint64_t i = 0; i < n; i++)
		inv[i * n + i] = 1.0;
	for (uint64_t c = 0; c < n; c++) {
		double piv = a[c * n + c];
		for (uint64_t j = 0; j < n; j++) {
			a[c * n + j] /= piv;
			inv[c * n + j] /= piv;
		}
		for (uint64_t r = 0; r < n; r++)
			if (r != c) {
				double f = a[r * n + c];
				for (uint64_t j = 0; j < n; j++) {
					a[r * n + j] -= f * a[c * n + j];
					inv[r * n + j] -= f * inv[c * n + j];
				}
			}
	}
	for (uint64_t i = 0; i < n; i++) {
		double d = inv[i * n + i];
		for (uint64_t k = 0; k < i; k++)
			d -= u[k * n + i] * u[k * n + i];
		u[i * n + i] = sqrt(d);
		for (uint64_t j = i + 1; j < n; j++) {
			double v = inv[i * n + j];
			for (uint64_t k = 0; k < i; k++)
				v -= u[k * n + i] * u[k * n + j];
			u[i * n + j] = v / u[i * n + i];
		}
	}
	double loss = 0;
	float *row = malloc((size_t)n * sizeof(float));
	struct mq_qparams *p = malloc((size_t)(n / group) * sizeof(*p));
	for (uint64_t r = 0; r < rows; r++) {
		for (uint64_t c = 0; c < n; c++)
			row[c] = dead[c] ? 0.0f : w[r * n + c];
		for (uint64_t k = 0; k < n / group; k++)
			p[k] = params_of(s, row + k * group, (size_t)group);
		double *wp = malloc((size_t)n * sizeof(double));
		for (uint64_t j = 0; j < n; j++)
			wp[j] = row[perm[j]];
		for (uint64_t j = 0; j < n; j++) {
			const uint64_t c = perm[j];
			float v = (float)wp[j], qv = s->fake(s, v, p[c / group]);
			double d = u[j * n + j], e = ((double)v - (double)qv) / d;
			loss += ((double)v - (double)qv) * ((double)v - (double)qv) / (d * d) / 2.0;
			q[r * n + c] = qv;
			for (uint64_t k = j + 1; k < n; k++)
				wp[k] -= e * u[j * n + k];
		}
		free(wp);
	}
	free(h);
	free(u);
	free(a);
	free(inv);
	free(dead);
	free(perm);
	free(row);
	free(p);
	return loss;
}

/* Every integer row's per-value function is its kernels' value, bit for bit. */
static void test_fake_matches_kernels(void **state)
{
	(void)state;
	for (int si = 0; si < mq_scheme_count(); si++) {
		const struct mq_scheme_traits *s = mq_scheme_get((enum mq_scheme)si);
		if (!s->fake)
			continue;
		enum { N = 256, G = 32 };
		float x[N], deq[N];
		struct mq_qparams p[N / G];
		uint32_t words[N];
		for (int k = 0; k < N / G; k++) {
			for (int i = 0; i < G; i++) /* ties and values past the range too */
				x[k * G + i] = i % 9 == 0 ? (float)(i - 16) * 0.5f : normal() * (float)(k + 1);
			p[k] = params_of(s, x + k * G, G);
			p[k].scale *= k == 3 ? 0.5f : 1.0f; /* clamped values */
		}
		struct mq_err_acc acc = { 0, 0, 0 };
		mq_scheme_quantize(s, x, N, G, p, NULL, words, &acc);
		s->dequantize(s, words, N, G, p, deq);
		for (int i = 0; i < N; i++)
			assert_true(mq_f32_bits(s->fake(s, x[i], p[i / G])) == mq_f32_bits(deq[i]));
	}
}

static const struct mq_scheme_traits *scheme(const char *name)
{
	enum mq_scheme id;
	assert_int_equal(mq_scheme_parse(name, &id), 0);
	return mq_scheme_get(id);
}

/*
 * Against the literal algorithm, for both orders and block sizes that do and
 * do not divide the width: float32 and lazy blocks move a value across a
 * rounding boundary now and then (and the rows after it follow), so codes
 * are compared by fraction, the loss within 1 %.
 */
static void test_against_literal(void **state)
{
	(void)state;
	const uint64_t m = 512, n = 96, rows = 24, group = 32;
	const char *names[] = { "int4", "int4-asym", "w8a16" };
	float *x = inputs(m, n, 6, 0.2f, 0), *w = weights(rows, n), *q = malloc(rows * n * sizeof(float));
	for (size_t sidx = 0; sidx < 3; sidx++) {
		const struct mq_scheme_traits *s = scheme(names[sidx]);
		for (int order = 0; order < 2; order++) {
			double ref = literal(x, m, n, w, rows, s, group, order == 0, 0.01, q);
			const uint64_t blocks[] = { 1, 7, 128 };
			for (int b = 0; b < 3; b++) {
				struct mq_gptq_opts o = { 0.01, blocks[b], order == 0 ? MQ_ACTORDER_STATIC : MQ_ACTORDER_NONE,
							  MQ_GPTQ_SCALES_ORIGINAL, 0 };
				struct mq_gptq_layer g = layer_of(x, m, n, &o);
				assert_false(g.fallback);
				struct sweep sw = run_sweep(&g, &o, s, group, w, rows);
				uint64_t same = 0;
				for (uint64_t r = 0; r < rows; r++)
					for (uint64_t c = 0; c < n; c++)
						same += held(s, &sw, n, group, r, c) == q[r * n + c];
				assert_true(same >= rows * n * 98 / 100);
				assert_true(fabs(sw.loss - ref) <= 0.01 * ref);
				free(sw.p);
				free(sw.xq);
				mq_gptq_layer_release(&g);
			}
		}
	}
	free(x);
	free(w);
	free(q);
}

/* Output-space sums of GPTQ and RTN: from H against the direct Σ over the rows; GPTQ ahead by >= 2 dB. */
static void test_output_error(void **state)
{
	(void)state;
	const uint64_t m = 1024, n = 128, rows = 64, group = 128;
	const struct mq_scheme_traits *s = scheme("int4");
	float *x = inputs(m, n, 8, 0.3f, 0), *w = weights(rows, n);
	struct mq_gptq_opts o = { 0.01, 128, MQ_ACTORDER_STATIC, MQ_GPTQ_SCALES_ORIGINAL, 0 };
	struct mq_gptq_layer g = layer_of(x, m, n, &o);
	struct sweep sw = run_sweep(&g, &o, s, group, w, rows);
	float *gq = malloc(rows * n * sizeof(float)), *rq = malloc(rows * n * sizeof(float));
	for (uint64_t r = 0; r < rows; r++) {
		struct mq_qparams p = params_of(s, w + r * n, (size_t)n);
		for (uint64_t c = 0; c < n; c++) {
			gq[r * n + c] = held(s, &sw, n, group, r, c);
			rq[r * n + c] = s->fake(s, w[r * n + c], p);
		}
	}
	double sig = 0, noise[2] = { 0, 0 };
	const float *const xh[2] = { gq, rq };
	void *work = malloc((size_t)mq_gptq_quad_bytes(n, rows, 3));
	mq_gptq_quad(&g, w, xh, 2, rows, &sig, noise, work);
	double dsig = 0, dn[2] = { 0, 0 };
	for (uint64_t t = 0; t < m; t++)
		for (uint64_t r = 0; r < rows; r++) {
			double y = 0, yg = 0, yr = 0;
			for (uint64_t c = 0; c < n; c++) {
				y += (double)x[t * n + c] * (double)w[r * n + c];
				yg += (double)x[t * n + c] * (double)gq[r * n + c];
				yr += (double)x[t * n + c] * (double)rq[r * n + c];
			}
			dsig += y * y;
			dn[0] += (y - yg) * (y - yg);
			dn[1] += (y - yr) * (y - yr);
		}
	/* float32 H and products against double sums: 0.1 % is 0.004 dB */
	assert_true(fabs(sig - dsig) <= 1e-3 * dsig);
	assert_true(fabs(noise[0] - dn[0]) <= 1e-3 * dn[0]);
	assert_true(fabs(noise[1] - dn[1]) <= 1e-3 * dn[1]);
	assert_true(10.0 * log10(dn[1] / dn[0]) >= 2.0);
	free(work);
	free(gq);
	free(rq);
	free(sw.p);
	free(sw.xq);
	mq_gptq_layer_release(&g);
	free(x);
	free(w);
}

/* Dead input columns: zero weights there, and the factor still exists. */
static void test_dead_columns(void **state)
{
	(void)state;
	const uint64_t m = 256, n = 64, rows = 8;
	const struct mq_scheme_traits *s = scheme("int4");
	float *x = inputs(m, n, 4, 0.2f, 1), *w = weights(rows, n);
	struct mq_gptq_opts o = { 0.01, 16, MQ_ACTORDER_STATIC, MQ_GPTQ_SCALES_ORIGINAL, 0 };
	struct mq_gptq_layer g = layer_of(x, m, n, &o);
	assert_false(g.fallback);
	struct sweep sw = run_sweep(&g, &o, s, 32, w, rows);
	for (uint64_t c = 0; c < n; c++) {
		assert_int_equal(g.dead[c], c % 11 == 3);
		for (uint64_t r = 0; r < rows && g.dead[c]; r++)
			assert_true(held(s, &sw, n, 32, r, c) == 0.0f);
	}
	free(sw.p);
	free(sw.xq);
	mq_gptq_layer_release(&g);
	free(x);
	free(w);
}

/* Fewer rows than inputs with no dampening: the Cholesky fails, the dampening is raised and recorded. */
static void test_raised_damp(void **state)
{
	(void)state;
	const uint64_t m = 24, n = 64;
	float *x = inputs(m, n, 4, 0.0f, 0);
	struct mq_gptq_opts o = { 0.0, 128, MQ_ACTORDER_STATIC, MQ_GPTQ_SCALES_ORIGINAL, 0 };
	struct mq_gptq_layer g = layer_of(x, m, n, &o);
	assert_false(g.fallback);
	assert_true(g.raised >= 1);
	assert_true(g.damp >= MQ_GPTQ_DAMP_STEP * 0.999);
	mq_gptq_layer_release(&g);
	free(x);
}

/* Inputs whose Hessian overflows float32: no dampening helps, the layer is rounded to nearest and says so. */
static void test_fallback(void **state)
{
	(void)state;
	const uint64_t m = 32, n = 32, rows = 4;
	const struct mq_scheme_traits *s = scheme("int4");
	float *x = inputs(m, n, 4, 0.1f, 0), *w = weights(rows, n);
	for (uint64_t i = 0; i < m * n; i++)
		x[i] *= 1e20f;
	struct mq_gptq_opts o = { 0.01, 128, MQ_ACTORDER_STATIC, MQ_GPTQ_SCALES_ORIGINAL, 0 };
	struct mq_gptq_layer g = layer_of(x, m, n, &o);
	assert_true(g.fallback);
	struct sweep sw = run_sweep(&g, &o, s, 32, w, rows);
	for (uint64_t r = 0; r < rows; r++) {
		struct mq_qparams p = params_of(s, w + r * n, (size_t)n);
		for (uint64_t c = 0; c < n; c++)
			assert_true(held(s, &sw, n, 32, r, c) == s->fake(s, w[r * n + c], p));
	}
	free(sw.p);
	free(sw.xq);
	mq_gptq_layer_release(&g);
	free(x);
	free(w);
}

int main(void)
{
	mq_linalg_init();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fake_matches_kernels), cmocka_unit_test(test_against_literal),
		cmocka_unit_test(test_output_error),        cmocka_unit_test(test_dead_columns),
		cmocka_unit_test(test_raised_damp),         cmocka_unit_test(test_fallback),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
