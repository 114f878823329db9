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
	int32_t raised, fallback, h_nonfinite;
	double damp;
	uint64_t rows, n_dead;
};

struct gptq_cache {
	int own_tensor;                /* the layer this rank built in this wave, -1 if none */
	struct mq_gptq_layer own;
	double own_seconds;            /* its build time, not yet in a record */
	int recv_tensor;               /* the layer received from its owner, -1 if none */
	struct mq_gptq_layer recv;
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

/* A layer's segments: read blocks of its calibration rows (a Conv: one sample each, as its patches). */
struct segments {
	int t, conv;
	uint64_t xb, count, oh, ow;
	struct mq_calib_layer *l;
	float *x, *xc, *p;       /* a read, its patches, a segment's Gram matrix */
};

static void segments_close(struct segments *sg)
{
	mq_calib_layer_close(sg->l);
	free(sg->x);
	free(sg->xc);
	free(sg->p);
	memset(sg, 0, sizeof(*sg));
}

/* The number of segments of layer t. */
static uint64_t segment_count(const struct run *r, int t)
{
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	const uint64_t xb = mq_plan_gptq_read_rows(pt, r->man.tensors[t].ndim == 4);
	return (pt->calib_rows + xb - 1) / xb;
}

static int segments_open(struct run *r, int t, struct segments *sg)
{
	const struct mq_tensor *tt = &r->man.tensors[t];
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	memset(sg, 0, sizeof(*sg));
	sg->t = t;
	sg->conv = tt->ndim == 4;
	sg->xb = mq_plan_gptq_read_rows(pt, sg->conv);
	sg->count = segment_count(r, t);
	sg->oh = sg->ow = 1;
	if (sg->conv)
		mq_plan_conv_out(&pt->cinfo, tt, &sg->oh, &sg->ow);
	const uint64_t n = pt->row_elems;
	sg->x = malloc((size_t)(sg->xb * pt->cinfo.shape.row_elems + 1) * sizeof(float));
	sg->xc = sg->conv ? malloc((size_t)(sg->oh * sg->ow * n + 1) * sizeof(float)) : NULL;
	sg->p = malloc((size_t)(n * n + 1) * sizeof(float));
	char *layer = mq_plan_layer_name(tt->name);
	struct mq_calib_shape sh;
	int rc = !sg->x || (sg->conv && !sg->xc) || !sg->p || !layer
		 ? mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory for the Hessian of '%s'", tt->name)
		 : mq_calib_layer_open(r->calib, layer, &sg->l, &sh, &r->err);
	free(layer);
	return rc;
}

/* Rows of segment s (a Conv: its patch rows). */
static uint64_t segment_rows(const struct run *r, const struct segments *sg, uint64_t s)
{
	const uint64_t rows = r->plan.tensors[sg->t].calib_rows;
	const uint64_t nx = rows - s * sg->xb < sg->xb ? rows - s * sg->xb : sg->xb;
	return sg->conv ? nx * sg->oh * sg->ow : nx;
}

/* Segment s's Gram matrix into sg->p. */
static int segment_make(struct run *r, struct segments *sg, uint64_t s)
{
	const struct mq_tensor *tt = &r->man.tensors[sg->t];
	const struct mq_plan_tensor *pt = &r->plan.tensors[sg->t];
	const uint64_t row = s * sg->xb, nx = pt->calib_rows - row < sg->xb ? pt->calib_rows - row : sg->xb;
	if (outspace_read(r, sg->l, sg->t, row, nx, sg->x))
		return r->err.code;
	double t0 = mq_comm_time();
	if (sg->conv) {
		mq_linalg_im2col(sg->x, &pt->cinfo, tt->shape[1], tt->shape[2], tt->shape[3], sg->oh, sg->ow, sg->xc);
		mq_gptq_segment(pt->row_elems, sg->xc, sg->oh * sg->ow, sg->p);
	} else {
		mq_gptq_segment(pt->row_elems, sg->x, nx, sg->p);
	}
	r->stats[MQ_STAT_T_CALIB] += mq_comm_time() - t0;
	return 0;
}

static void poll_records(void *ctx);

/*
 * MPI itself failed in the middle of a wave: the other ranks would wait for
 * this one's messages, and cannot be told. The run ends on every rank.
 */
static void lost(struct run *r)
{
	mq_warn("%s; the GPTQ layers' messages between ranks cannot go on: stopping every rank\n", r->err.msg);
	mq_comm_abort_world();
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

/*
 * The owner: layer t's Hessian from its segments in order, each made here or
 * received from the group member that made it, then its factor into c->own
 * (both allocated before the wave). Every member's segments are received even
 * after a failure, so that no member waits on its send. Returns 0 or an error.
 */
static int build(struct run *r, int t, struct gptq_cache *c, struct segments *sg, const int *members, int n_members)
{
	double t0 = mq_comm_time();
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	const size_t nn = (size_t)(pt->row_elems * pt->row_elems);
	int rc = 0;
	for (uint64_t s = 0; s < sg->count; s++) {
		const int from = members[s % (uint64_t)n_members];
		int32_t status = 1;
		if (from == r->rank) {
			status = !rc && !r->unit_failed && !r->cancelled && !r->interrupted && !segment_make(r, sg, s);
		} else if (mq_comm_recv_wait(r->comm, &status, sizeof(status), from, poll_records, r, &r->err) ||
			   (status == 1 && mq_comm_recv_wait(r->comm, sg->p, nn * sizeof(float), from, poll_records, r, &r->err))) {
			lost(r);
		}
		if (status == 1 && !rc)
			mq_gptq_add_segment(&c->own, sg->p, segment_rows(r, sg, s));
		else if (!rc)
			rc = r->err.code ? r->err.code : MQ_ERR_INTERNAL; /* a member failed: its error travels by agreement */
		collect_poll(r, 0);
	}
	if (rc)
		return rc;
	double t1 = mq_comm_time();
	if (mq_gptq_factor(&c->own, &r->opt->gptq))
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory for the factor of '%s'", r->man.tensors[t].name);
	r->stats[MQ_STAT_T_CALIB] += mq_comm_time() - t1;
	c->own_seconds = mq_comm_time() - t0;
	return 0;
}

/* A member other than the owner: its segments of layer t (s = index mod count), each sent to the owner. */
static void help(struct run *r, int t, struct segments *sg, int index, int n_members)
{
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	const size_t nn = (size_t)(pt->row_elems * pt->row_elems);
	int ok = 1;
	for (uint64_t s = (uint64_t)index; s < sg->count; s += (uint64_t)n_members) {
		int32_t status = ok && !r->unit_failed && !r->cancelled && !segment_make(r, sg, s);
		ok = ok && status == 1;
		struct mq_comm_sends *sends = NULL;
		if (mq_comm_send_start(r->comm, &sends, &status, sizeof(status), pt->gptq_rank, &r->err) ||
		    (status == 1 && mq_comm_send_start(r->comm, &sends, sg->p, nn * sizeof(float), pt->gptq_rank, &r->err)) ||
		    mq_comm_sends_wait(&sends, poll_records, r, &r->err))
			lost(r);
	}
	if (!ok && !r->unit_failed && !r->cancelled) { /* this rank's own error (a read, a NaN) */
		r->unit_failed = 1;
		if (r->rank == 0)
			collect_cancel_all(r);
	}
}

/* The owner's side of layer t: the header (and the factor if it has one) to every other rank with work on it. */
static void send_layer(struct run *r, int t, const struct header *h, struct mq_comm_sends **sends)
{
	const struct mq_gptq_layer *g = &r->gptq->own;
	for (int s = 0; s < r->size; s++) {
		if (s == r->rank || !has_work(r, t, s))
			continue;
		if (mq_comm_send_start(r->comm, sends, h, sizeof(*h), s, &r->err))
			lost(r);
		if (h->status != HDR_OK)
			continue;
		const size_t n = (size_t)g->n;
		if (mq_comm_send_start(r->comm, sends, g->a, n * n * sizeof(float), s, &r->err) ||
		    mq_comm_send_start(r->comm, sends, g->udiag, n * sizeof(float), s, &r->err) ||
		    mq_comm_send_start(r->comm, sends, g->perm, n * sizeof(uint32_t), s, &r->err) ||
		    mq_comm_send_start(r->comm, sends, g->dead, n, s, &r->err))
			lost(r);
	}
}

/* The other side: the header, and the factor into c->recv (room made before the wave). Returns the header's status. */
static int recv_layer(struct run *r, int t, struct gptq_cache *c)
{
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	const int from = pt->gptq_rank;
	struct header h;
	if (mq_comm_recv_wait(r->comm, &h, sizeof(h), from, poll_records, r, &r->err))
		lost(r);
	if (h.status != HDR_OK)
		return h.status;
	struct mq_gptq_layer *g = &c->recv;
	g->n = pt->row_elems; /* within the room of the wave's widest received layer */
	const size_t n = (size_t)g->n;
	if (mq_comm_recv_wait(r->comm, g->a, n * n * sizeof(float), from, poll_records, r, &r->err) ||
	    mq_comm_recv_wait(r->comm, g->udiag, n * sizeof(float), from, poll_records, r, &r->err) ||
	    mq_comm_recv_wait(r->comm, g->perm, n * sizeof(uint32_t), from, poll_records, r, &r->err) ||
	    mq_comm_recv_wait(r->comm, g->dead, n, from, poll_records, r, &r->err))
		lost(r);
	g->damp = h.damp;
	g->raised = h.raised;
	g->fallback = h.fallback;
	g->h_nonfinite = h.h_nonfinite;
	g->rows = h.rows;
	g->n_dead = h.n_dead;
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

/* What this rank does in a wave: the layer it builds or helps build, and the widest layer it receives. */
struct role {
	int own, help;          /* plan tensors, -1 if none */
	int index, n_members;   /* its place in the group it is in */
	uint64_t recv_n;        /* columns of the widest layer it receives, 0 if none */
};

static struct role role_in(struct run *r, int k0, int k1, int *members)
{
	struct role ro = { -1, -1, 0, 0, 0 };
	for (int k = k0; k < k1; k++) {
		const int t = r->plan.gptq_order[k];
		const struct mq_plan_tensor *pt = &r->plan.tensors[t];
		if (!has_work(r, t, -1))
			continue;
		const int n = mq_plan_gptq_group(&r->plan, t, members);
		for (int j = 0; j < n; j++)
			if (members[j] == r->rank) {
				*(j ? &ro.help : &ro.own) = t;
				ro.index = j;
				ro.n_members = n;
			}
		if (pt->gptq_rank != r->rank && has_work(r, t, r->rank) && pt->row_elems > ro.recv_n)
			ro.recv_n = pt->row_elems;
	}
	return ro;
}

/*
 * One wave: layers order[k0 .. k1). First every rank makes room for all it
 * will hold in the wave and the ranks agree that all could: after that no
 * allocation can leave a message unreceived. Then the Hessians, each by its
 * group; then the layers one after another, each factor sent to the ranks
 * with its units, which sweep them.
 */
static void wave(struct run *r, int k0, int k1, int *members)
{
	struct gptq_cache *c = r->gptq;
	struct mq_comm_sends *sends = NULL;
	struct header h = { 0, 0, 0, 0, 0.0, 0, 0 }; /* this rank's layer's: alive until the wave's sends are done */
	struct segments sg = { 0 };
	const struct role ro = role_in(r, k0, k1, members);
	const int t_build = ro.own >= 0 ? ro.own : ro.help;
	if (t_build >= 0) /* role_in went through every layer's group: this rank's own again */
		mq_plan_gptq_group(&r->plan, t_build, members);
	int ok = 1;
	if (t_build >= 0)
		ok = !segments_open(r, t_build, &sg);
	if (ok && ro.own >= 0 && mq_gptq_layer_init(&c->own, r->plan.tensors[ro.own].row_elems))
		ok = !mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory for the Hessian of '%s'", r->man.tensors[ro.own].name);
	if (ok && ro.recv_n && mq_gptq_layer_init(&c->recv, ro.recv_n))
		ok = !mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory for a received GPTQ factor of %llu columns",
			      (unsigned long long)ro.recv_n);
	double mine = ok ? 0.0 : 1.0, failed = 0.0;
	if (mq_comm_allreduce_sum(r->comm, &mine, &failed, 1, &r->err))
		lost(r);
	if (!ok && !r->unit_failed) {
		r->unit_failed = 1;
		if (r->rank == 0)
			collect_cancel_all(r);
	}
	if (failed == 0.0) {
		c->own_tensor = ro.own;
		if (ro.help >= 0)
			help(r, ro.help, &sg, ro.index, ro.n_members);
		if (ro.own >= 0) {
			if (mq_stop_requested && !r->interrupted)
				unit_note_interrupt(r, NULL);
			int rc = build(r, ro.own, c, &sg, members, ro.n_members); /* interrupted too: its members' segments come */
			h.status = r->interrupted ? HDR_INTERRUPTED : rc || r->unit_failed || r->cancelled ? HDR_FAILED : HDR_OK;
			h.raised = c->own.raised;
			h.fallback = c->own.fallback;
			h.h_nonfinite = c->own.h_nonfinite;
			h.damp = c->own.damp;
			h.rows = c->own.rows;
			h.n_dead = c->own.n_dead;
			if (h.status == HDR_FAILED && !r->unit_failed) {
				r->unit_failed = 1;
				if (r->rank == 0)
					collect_cancel_all(r);
			}
		}
	}
	segments_close(&sg);
	for (int k = k0; k < k1; k++) {
		const int t = r->plan.gptq_order[k];
		const struct mq_plan_tensor *pt = &r->plan.tensors[t];
		if (!has_work(r, t, r->rank) && pt->gptq_rank != r->rank)
			continue;
		if (failed != 0.0) { /* nobody built: every rank reports its units of the wave as skipped */
			take_units(r, t, 0);
			continue;
		}
		if (!has_work(r, t, -1))
			continue;
		int status;
		if (pt->gptq_rank == r->rank) {
			send_layer(r, t, &h, &sends);
			status = h.status;
		} else {
			status = recv_layer(r, t, c);
		}
		if (status == HDR_INTERRUPTED && !r->interrupted)
			unit_note_interrupt(r, r->man.tensors[t].name);
		take_units(r, t, status == HDR_OK);
		c->recv_tensor = -1;
	}
	if (mq_comm_sends_wait(&sends, poll_records, r, &r->err))
		lost(r);
	mq_gptq_layer_release(&c->own);
	mq_gptq_layer_release(&c->recv);
	c->own_tensor = c->recv_tensor = -1;
}

int gptq_waves(struct run *r)
{
	const struct mq_plan *p = &r->plan;
	if (!p->n_gptq)
		return 0;
	/* a few bytes: without them this rank could not follow the waves, which the others wait on */
	int *members = malloc((size_t)r->size * sizeof(int));
	if (!r->gptq)
		r->gptq = calloc(1, sizeof(*r->gptq));
	if (!members || !r->gptq) {
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory for the GPTQ layers' waves");
		lost(r);
	}
	r->gptq->own_tensor = r->gptq->recv_tensor = -1;
	for (int k0 = 0; k0 < p->n_gptq;) {
		int k1 = k0;
		while (k1 < p->n_gptq && p->tensors[p->gptq_order[k1]].gptq_wave == p->tensors[p->gptq_order[k0]].gptq_wave)
			k1++;
		wave(r, k0, k1, members);
		k0 = k1;
	}
	free(members);
	gptq_release(r);
	return 0;
}
