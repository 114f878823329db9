#include "factor.h"

#include <stdlib.h>
#include <string.h>

#include "collect.h"
#include "output.h"
#include "outspace.h"
#include "unit.h"

/* What an owner tells the layer's other ranks before its factor. */
enum { HDR_OK = 1, HDR_FAILED, HDR_INTERRUPTED };
struct header {
	int32_t status;
	int32_t raised, fallback, pad;
	double damp;
	uint64_t rows;
};

struct gptq_cache {
	int own_tensor;                /* the layer this rank built in this wave, -1 if none */
	struct mq_gptq_layer own;
	double own_seconds;            /* its build time, not yet in a record */
	int recv_tensor;               /* the layer received from its owner, -1 if none */
	struct mq_gptq_layer recv;
	int current;                   /* the layer whose units are being taken */
};

void gptq_release(struct run *r)
{
	if (!r->gptq)
		return;
	mq_gptq_layer_release(&r->gptq->own);
	mq_gptq_layer_release(&r->gptq->recv);
	free(r->gptq);
	r->gptq = NULL;
}

const struct mq_gptq_layer *gptq_layer(struct run *r, int t, double *seconds)
{
	struct gptq_cache *c = r->gptq;
	if (c && c->own_tensor == t) {
		*seconds += c->own_seconds;
		c->own_seconds = 0;
		return &c->own;
	}
	if (c && c->recv_tensor == t)
		return &c->recv;
	mq_fail(&r->err, MQ_ERR_INTERNAL, "no GPTQ factor in hand for '%s'", r->man.tensors[t].name);
	return NULL;
}

struct hessian_ctx {
	int t;
	struct mq_gptq_layer *g;
	float *xc;              /* a Conv sample's patches */
	uint64_t oh, ow;
};

static int hessian_block(struct run *r, const float *x, uint64_t row, uint64_t nx, void *ctx)
{
	(void)row;
	struct hessian_ctx *c = ctx;
	const struct mq_tensor *tt = &r->man.tensors[c->t];
	if (!c->xc) {
		mq_gptq_add_rows(c->g, x, nx);
		return 0;
	}
	mq_linalg_im2col(x, &r->plan.tensors[c->t].cinfo, tt->shape[1], tt->shape[2], tt->shape[3], c->oh, c->ow, c->xc);
	mq_gptq_add_rows(c->g, c->xc, c->oh * c->ow);
	return 0;
}

/* H over the layer's calibration rows, in fixed blocks of whole chunks (a Conv: one sample's patches). */
static int accumulate(struct run *r, int t, struct mq_gptq_layer *g)
{
	const struct mq_tensor *tt = &r->man.tensors[t];
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	const int conv = tt->ndim == 4;
	const uint64_t xb = mq_plan_gptq_read_rows(pt, conv);
	struct hessian_ctx c = { t, g, NULL, 1, 1 };
	if (conv)
		mq_plan_conv_out(&pt->cinfo, tt, &c.oh, &c.ow);
	float *x = malloc((size_t)(xb * pt->cinfo.shape.row_elems + 1) * sizeof(float));
	c.xc = conv ? malloc((size_t)(c.oh * c.ow * pt->row_elems + 1) * sizeof(float)) : NULL;
	int rc = !x || (conv && !c.xc) ? mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory for the Hessian of '%s'", tt->name)
				       : outspace_blocks(r, t, xb, x, hessian_block, &c);
	free(x);
	free(c.xc);
	return rc;
}

/* The owner: layer t's Hessian and factor into c->own. */
static int build(struct run *r, int t, struct gptq_cache *c)
{
	double t0 = mq_comm_time();
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	if (mq_gptq_layer_init(&c->own, pt->row_elems))
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory for the %llu x %llu Hessian of '%s'",
			       (unsigned long long)pt->row_elems, (unsigned long long)pt->row_elems, r->man.tensors[t].name);
	c->own_tensor = t;
	if (accumulate(r, t, &c->own))
		return r->err.code ? r->err.code : MQ_ERR_INTERNAL;
	double t1 = mq_comm_time();
	if (mq_gptq_factor(&c->own, &r->opt->gptq))
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory for the factor of '%s'", r->man.tensors[t].name);
	r->stats[MQ_STAT_T_CALIB] += mq_comm_time() - t1;
	c->own_seconds = mq_comm_time() - t0;
	return 0;
}

static void poll_records(void *ctx)
{
	collect_poll(ctx, 0);
}

/* 1 if rank holds a unit of t that is still to do. */
static int has_work(const struct run *r, int t, int rank)
{
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	for (int u = pt->first_unit; u < pt->first_unit + pt->n_units; u++)
		if (!r->done[u] && (rank < 0 || r->plan.units[u].rank == rank))
			return 1;
	return 0;
}

/* The owner's side of layer t: the header (and the factor if it has one) to every other rank with work on it. */
static int send_layer(struct run *r, int t, const struct header *h, struct mq_comm_sends **sends)
{
	const struct mq_gptq_layer *g = &r->gptq->own;
	for (int s = 0; s < r->size; s++) {
		if (s == r->rank || !has_work(r, t, s))
			continue;
		if (mq_comm_send_start(r->comm, sends, h, sizeof(*h), s, &r->err))
			return r->err.code;
		if (h->status != HDR_OK)
			continue;
		const size_t n = (size_t)g->n;
		if (mq_comm_send_start(r->comm, sends, g->a, n * n * sizeof(float), s, &r->err) ||
		    mq_comm_send_start(r->comm, sends, g->udiag, n * sizeof(float), s, &r->err) ||
		    mq_comm_send_start(r->comm, sends, g->perm, n * sizeof(uint32_t), s, &r->err) ||
		    mq_comm_send_start(r->comm, sends, g->dead, n, s, &r->err))
			return r->err.code;
	}
	return 0;
}

/* The other side: the header, and the factor into c->recv. Returns the header's status, 0 on an error. */
static int recv_layer(struct run *r, int t, struct gptq_cache *c)
{
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	const int from = pt->gptq_rank;
	struct header h;
	if (mq_comm_recv_wait(r->comm, &h, sizeof(h), from, poll_records, r, &r->err))
		return 0;
	if (h.status != HDR_OK)
		return h.status;
	struct mq_gptq_layer *g = &c->recv;
	if (mq_gptq_layer_init(g, pt->row_elems)) {
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory for the factor of '%s'", r->man.tensors[t].name);
		return 0;
	}
	const size_t n = (size_t)g->n;
	if (mq_comm_recv_wait(r->comm, g->a, n * n * sizeof(float), from, poll_records, r, &r->err) ||
	    mq_comm_recv_wait(r->comm, g->udiag, n * sizeof(float), from, poll_records, r, &r->err) ||
	    mq_comm_recv_wait(r->comm, g->perm, n * sizeof(uint32_t), from, poll_records, r, &r->err) ||
	    mq_comm_recv_wait(r->comm, g->dead, n, from, poll_records, r, &r->err))
		return 0;
	g->damp = h.damp;
	g->raised = h.raised;
	g->fallback = h.fallback;
	g->rows = h.rows;
	c->recv_tensor = t;
	return HDR_OK;
}

/* This rank's units of layer t, taken (usable) or reported as not done. */
static void take_units(struct run *r, int t, int usable)
{
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	for (int u = pt->first_unit; u < pt->first_unit + pt->n_units; u++)
		if (!r->done[u] && r->plan.units[u].rank == r->rank)
			unit_take(r, u, usable);
}

/* One wave: layers order[k0 .. k1) of the plan's GPTQ order. */
static int wave(struct run *r, int k0, int k1)
{
	struct gptq_cache *c = r->gptq;
	struct mq_comm_sends *sends = NULL;
	int own_status = 0;
	for (int k = k0; k < k1; k++) {
		const int t = r->plan.gptq_order[k];
		if (r->plan.tensors[t].gptq_rank != r->rank || !has_work(r, t, -1))
			continue;
		if (mq_stop_requested && !r->interrupted)
			unit_note_interrupt(r);
		own_status = r->interrupted ? HDR_INTERRUPTED : r->unit_failed || r->cancelled ? HDR_FAILED
			   : build(r, t, c) ? HDR_FAILED : HDR_OK;
		if (own_status == HDR_FAILED && !r->unit_failed) {
			r->unit_failed = 1;
			if (r->rank == 0)
				collect_cancel_all(r);
		}
	}
	for (int k = k0; k < k1; k++) {
		const int t = r->plan.gptq_order[k];
		const struct mq_plan_tensor *pt = &r->plan.tensors[t];
		if (!has_work(r, t, -1))
			continue;
		int status;
		if (pt->gptq_rank == r->rank) {
			struct header h = { own_status, c->own.raised, c->own.fallback, 0, c->own.damp, c->own.rows };
			if (send_layer(r, t, &h, &sends))
				r->unit_failed = 1; /* the others would wait: there is no way on but the agreement's abort */
			status = own_status;
		} else if (has_work(r, t, r->rank)) {
			status = recv_layer(r, t, c);
			if (!status)
				r->unit_failed = 1;
		} else {
			continue;
		}
		if (status == HDR_INTERRUPTED && !r->interrupted)
			unit_note_interrupt(r);
		take_units(r, t, status == HDR_OK);
		mq_gptq_layer_release(&c->recv);
		c->recv_tensor = -1;
	}
	int rc = mq_comm_sends_wait(&sends, poll_records, r, &r->err);
	mq_gptq_layer_release(&c->own);
	c->own_tensor = -1;
	return rc;
}

int gptq_waves(struct run *r)
{
	const struct mq_plan *p = &r->plan;
	if (!p->n_gptq)
		return 0;
	if (!r->gptq && !(r->gptq = calloc(1, sizeof(*r->gptq))))
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	r->gptq->own_tensor = r->gptq->recv_tensor = -1;
	for (int k0 = 0; k0 < p->n_gptq;) {
		int k1 = k0;
		while (k1 < p->n_gptq && p->tensors[p->gptq_order[k1]].gptq_wave == p->tensors[p->gptq_order[k0]].gptq_wave)
			k1++;
		if (wave(r, k0, k1))
			r->unit_failed = 1;
		k0 = k1;
	}
	gptq_release(r);
	return 0;
}
