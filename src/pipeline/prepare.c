#include "prepare.h"

#include <stdlib.h>

#include "method.h"

#define STATE_DOUBLES (sizeof(struct mq_layer_state) / sizeof(double))
_Static_assert(sizeof(struct mq_layer_state) % sizeof(double) == 0, "layer state travels as doubles");

int prepare_observe(struct run *r, int i, const struct mq_scheme_traits *si, struct mq_layer_state *out)
{
	const struct mq_plan_tensor *pt = &r->plan.tensors[i];
	char *layer = mq_plan_layer_name(r->man.tensors[i].name);
	struct mq_obs_result res;
	uint64_t rows;
	if (!layer)
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	if (!mq_calib_observe(r->calib, layer, &r->opt->observer, !r->opt->act_asymmetric, pt->calib_rows, &res, &rows,
			      &r->err)) {
		out->act_threshold = r->opt->act_asymmetric ? (double)(res.hi - res.lo) : (double)res.threshold;
		out->act_scale = (double)res.qp.scale;
		out->act_zero_point = (double)res.qp.zero_point;
		if (si->acts == MQ_ACTS_FP8) { /* the same threshold on the e4m3 grid: T / 448 */
			struct mq_range t;
			mq_range_init(&t);
			t.absmax_bits = mq_f32_bits(res.threshold);
			t.empty = 0;
			out->act_scale = (double)si->params(si, &t, MQ_DTYPE_F32).scale;
		}
	}
	free(layer);
	return r->err.code;
}

int prepare_layers(struct run *r)
{
	if (!r->opt->calib && r->method->needs == MQ_NEED_NONE)
		return 0;
	if (r->layers) /* mixed precision with --calib: the choice observed them (choose.c), on every rank */
		return 0;
	double t0 = mq_comm_time();
	size_t n = (size_t)r->plan.n_tensors;
	struct mq_layer_state *mine = calloc(n + 1, sizeof(*mine));
	r->layers = calloc(n + 1, sizeof(*r->layers));
	if (!mine || !r->layers)
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	for (size_t i = 0; i < n && !r->err.code; i++) {
		const struct mq_plan_tensor *pt = &r->plan.tensors[i];
		if (pt->act_rank == r->rank && pt->calib == MQ_CALIB_STATIC)
			prepare_observe(r, (int)i, mq_scheme_get(pt->q.scheme), &mine[i]);
	}
	/* one rank holds each value and the others zero, so the sum is exact */
	if (!mq_comm_agree(r->comm, &r->err))
		mq_comm_allreduce_sum(r->comm, (const double *)mine, (double *)r->layers, (int)(n * STATE_DOUBLES),
				      &r->err);
	free(mine);
	r->stats[MQ_STAT_T_CALIB] += mq_comm_time() - t0;
	return mq_comm_agree(r->comm, &r->err);
}
