#include "gptq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clip.h"
#include "linalg.h"

static uint64_t align16(uint64_t n)
{
	return (n + 15) & ~(uint64_t)15; /* floats: 64-byte regions */
}

uint64_t mq_gptq_layer_bytes(uint64_t n)
{
	return n * n * 4 + n * (4 + 4 + 1) + 4 * 64;
}

uint64_t mq_gptq_sweep_bytes(uint64_t n, uint64_t rows, uint64_t block)
{
	/* the working rows, the block's columns and errors */
	return 4 * (align16(rows * n) + 2 * align16(rows * block)) + 3 * 64;
}

uint64_t mq_gptq_quad_bytes(uint64_t n, uint64_t rows, int n_mats)
{
	return 4 * 2 * align16((uint64_t)n_mats * rows * n) + 2 * 64;
}

int mq_gptq_layer_init(struct mq_gptq_layer *g, uint64_t n)
{
	memset(g, 0, sizeof(*g));
	g->n = n;
	g->a = calloc(n * n + 1, sizeof(float));
	g->udiag = calloc(n + 1, sizeof(float));
	g->perm = calloc(n + 1, sizeof(uint32_t));
	g->dead = calloc(n + 1, 1);
	if (!g->a || !g->udiag || !g->perm || !g->dead) {
		mq_gptq_layer_release(g);
		return -1;
	}
	return 0;
}

void mq_gptq_layer_release(struct mq_gptq_layer *g)
{
	free(g->a);
	free(g->udiag);
	free(g->perm);
	free(g->dead);
	memset(g, 0, sizeof(*g));
}

void mq_gptq_segment(uint64_t n, const float *x, uint64_t m, float *p)
{
	for (uint64_t i = 0; i < n; i++) /* syrk adds: the upper triangle starts at zero */
		memset(p + i * n + i, 0, (n - i) * sizeof(float));
	if (m)
		mq_linalg_syrk_add(p, n, x, m);
}

void mq_gptq_add_segment(struct mq_gptq_layer *g, const float *p, uint64_t m)
{
	const uint64_t n = g->n;
	for (uint64_t i = 0; i < n; i++) {
		float *a = g->a + i * n;
		const float *b = p + i * n;
		for (uint64_t j = i; j < n; j++)
			a[j] += b[j];
	}
	g->rows += m;
}

void mq_gptq_add_rows(struct mq_gptq_layer *g, const float *x, uint64_t m, float *scratch)
{
	mq_gptq_segment(g->n, x, m, scratch);
	mq_gptq_add_segment(g, scratch, m);
}

/* Descending diagonal, ties by index: a total order, so the sort is the same everywhere. */
struct keyed {
	float d;
	uint32_t i;
};
static int cmp_keyed(const void *x, const void *y)
{
	const struct keyed *a = x, *b = y;
	if (a->d != b->d)
		return a->d > b->d ? -1 : 1;
	return a->i < b->i ? -1 : a->i > b->i;
}

/* a (n × n, full symmetric) <- P a Pᵀ for the order perm: columns row by row, then rows along perm's cycles. */
static int permute_sym(float *a, uint64_t n, const uint32_t *perm, float *row)
{
	unsigned char *seen = calloc(n + 1, 1);
	if (!seen)
		return -1;
	for (uint64_t i = 0; i < n; i++) {
		float *ai = a + i * n;
		for (uint64_t j = 0; j < n; j++)
			row[j] = ai[perm[j]];
		memcpy(ai, row, n * sizeof(float));
	}
	for (uint64_t s = 0; s < n; s++) {
		if (seen[s])
			continue;
		memcpy(row, a + s * n, n * sizeof(float)); /* old row s */
		for (uint64_t i = s;;) {
			seen[i] = 1;
			uint64_t from = perm[i];
			if (from == s) {
				memcpy(a + i * n, row, n * sizeof(float));
				break;
			}
			memcpy(a + i * n, a + from * n, n * sizeof(float));
			i = from;
		}
	}
	free(seen);
	return 0;
}

/* The upper triangle from the lower one, and the diagonal d + lambda. */
static void restore_upper(float *a, uint64_t n, const float *d, float lambda)
{
	for (uint64_t i = 0; i < n; i++) {
		a[i * n + i] = d[i] + lambda;
		for (uint64_t j = i + 1; j < n; j++)
			a[i * n + j] = a[j * n + i];
	}
}

static int finite_upper(const float *a, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		for (uint64_t j = i; j < n; j++)
			if (!isfinite(a[i * n + j]))
				return 0;
	return 1;
}

/* The factor at the least dampening that works (from o->damp up, in steps), or the fallback's U = I. */
static void dampen(struct mq_gptq_layer *g, const struct mq_gptq_opts *o, const float *d)
{
	const uint64_t n = g->n;
	float *a = g->a;
	double mean = 0.0;
	for (uint64_t j = 0; j < n; j++)
		mean += (double)d[j];
	mean = n ? mean / (double)n : 0.0;
	g->fallback = 1;
	g->raised = 0;
	g->damp = o->damp;
	for (int k = 0; !g->h_nonfinite; k++) { /* an overflowed H factors at no dampening */
		double frac = o->damp + MQ_GPTQ_DAMP_STEP * k;
		if (k > 0 && frac >= MQ_GPTQ_DAMP_LIMIT)
			break;
		g->damp = frac;
		g->raised = k;
		restore_upper(a, n, d, (float)(frac * mean));
		if (mq_linalg_inverse_factor(a, n) == 0 && finite_upper(a, n)) {
			g->fallback = 0;
			break;
		}
	}
	if (g->fallback) { /* round to nearest: U = I in effect */
		for (uint64_t i = 0; i < n; i++) {
			g->udiag[i] = 1.0f;
			for (uint64_t j = i + 1; j < n; j++)
				a[i * n + j] = 0.0f;
		}
	} else {
		for (uint64_t i = 0; i < n; i++)
			g->udiag[i] = a[i * n + i];
	}
}

int mq_gptq_factor(struct mq_gptq_layer *g, const struct mq_gptq_opts *o)
{
	const uint64_t n = g->n;
	float *a = g->a;
	float *d = malloc((n + 1) * sizeof(float)), *raw = malloc((n + 1) * sizeof(float));
	float *row = malloc((n + 1) * sizeof(float));
	if (!d || !raw || !row) {
		free(d);
		free(raw);
		free(row);
		return -1;
	}
	/* H = (2/N) XᵀX, made full (syrk filled the upper triangle) */
	const float scale = g->rows ? (float)(2.0 / (double)g->rows) : 0.0f;
	for (uint64_t i = 0; i < n; i++)
		for (uint64_t j = i; j < n; j++) {
			float v = a[i * n + j] * scale;
			a[i * n + j] = v;
			a[j * n + i] = v;
		}
	g->h_nonfinite = 0;
	for (uint64_t i = 0; i < n * n && !g->h_nonfinite; i++)
		g->h_nonfinite = !isfinite(a[i]);
	g->n_dead = 0;
	for (uint64_t j = 0; j < n; j++) {
		raw[j] = a[j * n + j];
		g->dead[j] = raw[j] == 0.0f;
		g->n_dead += g->dead[j];
		d[j] = g->dead[j] ? 1.0f : raw[j];
		g->perm[j] = (uint32_t)j;
	}
	if (o->actorder == MQ_ACTORDER_STATIC) {
		struct keyed *k = malloc((n + 1) * sizeof(*k));
		if (!k) {
			free(d);
			free(raw);
			free(row);
			return -1;
		}
		for (uint64_t j = 0; j < n; j++)
			k[j] = (struct keyed){ d[j], (uint32_t)j };
		qsort(k, (size_t)n, sizeof(*k), cmp_keyed);
		for (uint64_t j = 0; j < n; j++)
			g->perm[j] = k[j].i;
		free(k);
		if (permute_sym(a, n, g->perm, row)) {
			free(d);
			free(raw);
			free(row);
			return -1;
		}
		for (uint64_t j = 0; j < n; j++)
			row[j] = d[g->perm[j]];
		memcpy(d, row, n * sizeof(float));
		for (uint64_t j = 0; j < n; j++)
			row[j] = raw[g->perm[j]];
		memcpy(raw, row, n * sizeof(float));
	}
	dampen(g, o, d);
	for (uint64_t i = 0; i < n; i++) /* H's own diagonal back, for the quadratic forms */
		a[i * n + i] = raw[i];
	free(d);
	free(raw);
	free(row);
	return 0;
}

/* The parameters of one group of n values. */
static struct mq_qparams group_params(const struct mq_gptq_opts *o, const struct mq_scheme_traits *s,
				      enum mq_dtype sd, const float *x, size_t n)
{
	if (o->clip_mse)
		return mq_clip_mse(s, x, n, sd, NULL, NULL);
	struct mq_range rg;
	size_t bad;
	mq_range_init(&rg);
	mq_range_update(&rg, x, n, &bad);
	return s->params(s, &rg, sd);
}

void mq_gptq_sweep(const struct mq_gptq_layer *g, const struct mq_gptq_opts *o, const struct mq_scheme_traits *s,
		   enum mq_dtype sd, uint64_t group, const float *x, uint64_t rows, struct mq_qparams *p, float *xq,
		   double *loss, void *work)
{
	const uint64_t n = g->n, ng = n / group, B = o->block < n ? o->block : n;
	const int updated = o->scales == MQ_GPTQ_SCALES_UPDATED && o->actorder == MQ_ACTORDER_NONE && !g->fallback;
	float *w = work;                          /* rows × n, sweep order */
	float *w1 = w + align16(rows * n);        /* rows × B: the block's columns */
	float *e1 = w1 + align16(rows * B);       /* rows × B: their scaled errors */
	/* xq first holds the weights with dead columns zeroed, in the original order */
	for (uint64_t r = 0; r < rows; r++)
		for (uint64_t c = 0; c < n; c++)
			xq[r * n + c] = g->dead[c] ? 0.0f : x[r * n + c];
	if (!updated)
		for (uint64_t r = 0; r < rows; r++)
			for (uint64_t k = 0; k < ng; k++)
				p[r * ng + k] = group_params(o, s, sd, (g->fallback ? x : xq) + r * n + k * group, (size_t)group);
	if (g->fallback) {
		memcpy(xq, x, rows * n * sizeof(float));
		double l = 0.0;
		for (uint64_t r = 0; r < rows; r++)
			for (uint64_t c = 0; c < n; c++) {
				double e = (double)x[r * n + c] - (double)s->fake(s, x[r * n + c], p[r * ng + c / group]);
				l += e * e;
			}
		*loss += l / 2.0;
		return;
	}
	for (uint64_t r = 0; r < rows; r++)
		for (uint64_t j = 0; j < n; j++)
			w[r * n + j] = xq[r * n + g->perm[j]];
	double l = 0.0;
	for (uint64_t i1 = 0; i1 < n; i1 += B) {
		const uint64_t nb = n - i1 < B ? n - i1 : B;
		for (uint64_t r = 0; r < rows; r++)
			memcpy(w1 + r * nb, w + r * n + i1, nb * sizeof(float));
		for (uint64_t i = 0; i < nb; i++) {
			const uint64_t j = i1 + i, c = g->perm[j];
			const float dj = g->udiag[j];
			const float *urow = g->a + j * n + i1; /* U[j, i1 .. i1 + nb) */
			if (updated && c % group == 0) /* the reference reads W: the earlier blocks' updates, not this one's */
				for (uint64_t r = 0; r < rows; r++)
					p[r * ng + c / group] = group_params(o, s, sd, w + r * n + j, (size_t)group);
			for (uint64_t r = 0; r < rows; r++) {
				float *wr = w1 + r * nb;
				const float v = wr[i];
				const float q = s->fake(s, v, p[r * ng + c / group]);
				const float err = (v - q) / dj;
				const double dq = (double)v - (double)q;
				l += dq * dq / ((double)dj * (double)dj);
				xq[r * n + c] = v;
				e1[r * nb + i] = err;
				for (uint64_t k = i + 1; k < nb; k++)
					wr[k] -= err * urow[k];
			}
		}
		/* the rest of each row at once: W[:, i2:] -= E1 · U[i1:i2, i2:] */
		mq_linalg_gemm_sub(e1, nb, g->a + i1 * n + i1 + nb, n, w + i1 + nb, n, rows, n - i1 - nb, nb);
	}
	*loss += l / 2.0;
}

void mq_gptq_quad(const struct mq_gptq_layer *g, const float *x, const float *const *xh, int n_err, uint64_t rows,
		  double *signal, double *noise, void *work)
{
	const uint64_t n = g->n, m = (uint64_t)(1 + n_err) * rows;
	float *sm = work, *y = sm + align16(m * n);
	for (uint64_t r = 0; r < rows; r++)
		for (uint64_t j = 0; j < n; j++) {
			const uint64_t c = g->perm[j];
			sm[r * n + j] = x[r * n + c];
			for (int k = 0; k < n_err; k++)
				sm[((uint64_t)(k + 1) * rows + r) * n + j] = x[r * n + c] - xh[k][r * n + c];
		}
	mq_linalg_symm_lower(sm, m, g->a, n, y);
	/* x H xᵀ = (2/N) Σ (x · row)²: back to the sum over the calibration rows */
	const double unscale = (double)g->rows / 2.0;
	for (int k = 0; k <= n_err; k++) {
		double acc = 0.0;
		const float *sk = sm + (uint64_t)k * rows * n, *yk = y + (uint64_t)k * rows * n;
		for (uint64_t i = 0; i < rows * n; i++)
			acc += (double)sk[i] * (double)yk[i];
		if (k == 0)
			*signal += acc * unscale;
		else
			noise[k - 1] += acc * unscale;
	}
}
