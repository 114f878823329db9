#include "gather.h"

#include <stdlib.h>
#include <string.h>

#define BOUNCE_BYTES (1u << 20)
#define MAX_RUNS 8192
#define MAX_GAP (64u << 10) /* read over gaps up to this size rather than issue another read */

struct run {
	uint64_t src;       /* file position of the first element */
	uint64_t count;     /* elements, consecutive in the file */
	uint64_t dst;       /* byte offset of the first element in the output */
	uint64_t dst_step;  /* bytes between the run's elements in the output */
};

struct mq_gather {
	unsigned char *bounce;
	struct run *runs;
	int n_runs;
	/* the request in progress */
	size_t es;
	unsigned char *out;
	mq_pread_fn rd;
	void *ctx;
	int rc;
};

static void scatter(struct mq_gather *g, const struct run *r, const unsigned char *p, uint64_t first, uint64_t count)
{
	unsigned char *d = g->out + r->dst + first * r->dst_step;
	if (r->dst_step == g->es) {
		memcpy(d, p, (size_t)(count * g->es));
		return;
	}
	for (uint64_t e = 0; e < count; e++)
		memcpy(d + e * r->dst_step, p + e * g->es, g->es);
}

/* A run longer than the bounce buffer: read and scatter it piece by piece. */
static void long_run(struct mq_gather *g, const struct run *r)
{
	uint64_t per = BOUNCE_BYTES / g->es;
	for (uint64_t e = 0; !g->rc && e < r->count; e += per) {
		uint64_t k = r->count - e < per ? r->count - e : per;
		if (r->dst_step == g->es) { /* straight into place */
			g->rc = g->rd(g->ctx, g->out + r->dst + e * g->es, (size_t)(k * g->es), r->src + e * g->es);
			continue;
		}
		if (!(g->rc = g->rd(g->ctx, g->bounce, (size_t)(k * g->es), r->src + e * g->es)))
			scatter(g, r, g->bounce, e, k);
	}
}

static void flush(struct mq_gather *g)
{
	for (int i = 0; !g->rc && i < g->n_runs;) {
		const struct run *r = &g->runs[i];
		uint64_t lo = r->src, hi = r->src + r->count * g->es;
		if (hi - lo > BOUNCE_BYTES) {
			long_run(g, r);
			i++;
			continue;
		}
		int j = i + 1;
		for (; j < g->n_runs; j++) { /* join the following runs that lie close after this window */
			const struct run *q = &g->runs[j];
			uint64_t end = q->src + q->count * g->es, top = end > hi ? end : hi;
			if (q->src < lo || q->src > hi + MAX_GAP || top - lo > BOUNCE_BYTES)
				break;
			hi = top;
		}
		if (!(g->rc = g->rd(g->ctx, g->bounce, (size_t)(hi - lo), lo)))
			for (int k = i; k < j; k++)
				scatter(g, &g->runs[k], g->bounce + (g->runs[k].src - lo), 0, g->runs[k].count);
		i = j;
	}
	g->n_runs = 0;
}

static void add_run(struct mq_gather *g, uint64_t src, uint64_t count, uint64_t dst, uint64_t dst_step)
{
	if (g->rc)
		return;
	if (g->n_runs == MAX_RUNS)
		flush(g);
	g->runs[g->n_runs++] = (struct run){ src, count, dst, dst_step };
}

/* nrows whole rows of dimension `level` (from base in the file) to dst, walked in storage order. */
static void block(struct mq_gather *g, const struct mq_tensor *t, int level, uint64_t base, uint64_t nrows,
		  uint64_t dst)
{
	int k = t->ndim - level, dims[MQ_MAX_DIMS], n = 0;
	uint64_t size[MQ_MAX_DIMS], st[MQ_MAX_DIMS], ls[MQ_MAX_DIMS], idx[MQ_MAX_DIMS] = { 0 };
	uint64_t acc = 1;
	for (int i = k - 1; i >= 0; i--) {
		size[i] = i ? t->shape[level + i] : nrows;
		st[i] = t->stride[level + i];
		ls[i] = acc;
		acc *= size[i];
	}
	for (int i = 0; i < k; i++) /* dims that move, by storage stride, then innermost logical first */
		if (size[i] > 1) {
			int j = n++;
			while (j > 0 && (st[dims[j - 1]] > st[i] || (st[dims[j - 1]] == st[i] && dims[j - 1] < i))) {
				dims[j] = dims[j - 1];
				j--;
			}
			dims[j] = i;
		}
	if (n == 0) {
		add_run(g, base, 1, dst, g->es);
		return;
	}
	int first = 0;
	uint64_t len = 1, step = g->es;
	if (st[dims[0]] == 1) { /* consecutive in the file: one run per line of this dim */
		len = size[dims[0]];
		step = ls[dims[0]] * g->es;
		first = 1;
	}
	for (;;) {
		uint64_t src = base, d = dst;
		for (int i = first; i < n; i++) {
			src += idx[dims[i]] * st[dims[i]] * g->es;
			d += idx[dims[i]] * ls[dims[i]] * g->es;
		}
		add_run(g, src, len, d, len > 1 ? step : g->es);
		if (g->rc)
			return;
		int i = first;
		for (; i < n; i++) {
			if (++idx[dims[i]] < size[dims[i]])
				break;
			idx[dims[i]] = 0;
		}
		if (i == n)
			return;
	}
}

/* Elements [e0, e1) of the sub-tensor of dims level.. at base, to dst. */
static void range(struct mq_gather *g, const struct mq_tensor *t, int level, uint64_t base, uint64_t e0, uint64_t e1,
		  uint64_t dst)
{
	if (level == t->ndim) {
		add_run(g, base, 1, dst, g->es);
		return;
	}
	uint64_t inner = 1;
	for (int d = level + 1; d < t->ndim; d++)
		inner *= t->shape[d];
	uint64_t row_step = t->stride[level] * g->es, r0 = e0 / inner, r1 = e1 / inner;
	if (e0 % inner) {
		uint64_t end = e1 < (r0 + 1) * inner ? e1 : (r0 + 1) * inner;
		range(g, t, level + 1, base + r0 * row_step, e0 - r0 * inner, end - r0 * inner, dst);
		dst += (end - e0) * g->es;
		e0 = end;
		r0++;
	}
	if (e0 < e1 && r1 > r0) {
		block(g, t, level, base + r0 * row_step, r1 - r0, dst);
		dst += (r1 - r0) * inner * g->es;
		e0 = r1 * inner;
	}
	if (e0 < e1)
		range(g, t, level + 1, base + r1 * row_step, e0 - r1 * inner, e1 - r1 * inner, dst);
}

int mq_gather_read(struct mq_gather **gp, const struct mq_tensor *t, uint64_t off, void *buf, size_t n,
		   mq_pread_fn rd, void *ctx)
{
	if (!*gp) {
		struct mq_gather *g = calloc(1, sizeof(*g));
		if (!g)
			return -1;
		g->bounce = malloc(BOUNCE_BYTES);
		g->runs = malloc(MAX_RUNS * sizeof(*g->runs));
		if (!g->bounce || !g->runs) {
			mq_gather_free(g);
			return -1;
		}
		*gp = g;
	}
	struct mq_gather *g = *gp;
	g->es = mq_dtype_size(t->dtype);
	g->out = buf;
	g->rd = rd;
	g->ctx = ctx;
	g->rc = 0;
	g->n_runs = 0;
	if (n == 0 || t->nbytes == 0)
		return 0;
	range(g, t, 0, t->offset, off / g->es, (off + n) / g->es, 0);
	if (!g->rc)
		flush(g);
	return g->rc;
}

void mq_gather_free(struct mq_gather *g)
{
	if (!g)
		return;
	free(g->bounce);
	free(g->runs);
	free(g);
}
