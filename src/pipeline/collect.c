#include "collect.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crc.h"
#include "journal.h"
#include "metadata.h"
#include "output.h"
#include "report.h"

/* The fault tests' stop seam (collect.h). */
void run_test_stop_at(int n_journaled)
{
	static int stop_at = -2; /* -2: not read yet, -1: off or done */
	if (stop_at == -2) {
		const char *v = getenv("MQ_TEST_STOP_AT");
		stop_at = v && *v ? atoi(v) : -1;
	}
	if (stop_at >= 0 && n_journaled >= stop_at) {
		stop_at = -1;
		raise(SIGSTOP);
	}
}

static void finish_tensor(struct run *r, int t)
{
	const struct mq_plan_tensor *pt = &r->plan.tensors[t];
	struct mq_tensor_result *res = &r->res[t];
	for (int k = 0; k < pt->n_units; k++) {
		int u = pt->first_unit + k;
		res->signal += r->u_signal[u];
		res->noise += r->u_noise[u];
		res->max_abs = r->u_max[u] > res->max_abs ? r->u_max[u] : res->max_abs;
		if (r->u_out) {
			res->out_signal += r->u_out[u].signal;
			res->out_noise_w += r->u_out[u].noise_w;
			res->out_noise_wa += r->u_out[u].noise_wa;
			res->out_noise_rtn += r->u_out[u].noise_rtn;
		}
		if (pt->gptq && r->u_gptq) {
			const struct unit_record *g = &r->u_gptq[u];
			res->gptq_loss += g->gptq_loss;
			res->gptq_seconds += g->gptq_seconds;
			res->gptq_damp = g->gptq_damp; /* the layer's: the same in every unit */
			res->gptq = g->gptq;
			res->gptq_raised = g->gptq_raised;
			res->gptq_dead = g->gptq_dead;
		}
	}
	if (r->layers) {
		res->act_threshold = r->layers[t].act_threshold;
		res->act_scale = r->layers[t].act_scale;
		res->act_zero_point = r->layers[t].act_zero_point;
	}
	if (!r->opt->no_checksum)
		mq_digest_slots(r->opt->digest, r->chunk_digests + r->chunk_base[t] * MQ_DIGEST_MAX, pt->n_chunks,
				res->sha256);
	int outs[UNIT_OUTPUTS];
	unit_outputs(pt, outs);
	for (int k = 0; r->writer->tensor_crcs && k < UNIT_OUTPUTS; k++) { /* the units' CRCs joined in unit order */
		if (outs[k] < 0)
			continue;
		uint32_t crc = 0;
		for (int i = 0; i < pt->n_units; i++) {
			int u = pt->first_unit + i;
			crc = mq_crc32_combine(crc, r->u_crc[UNIT_OUTPUTS * u + k], r->u_crc_len[UNIT_OUTPUTS * u + k]);
		}
		r->out_crc[outs[k]] = crc;
	}
	++r->tensors_done;
	if (!r->hash_only)
		mq_report_progress(&r->man, &r->plan, t, r->tensors_done, res);
}

/* Rank 0, after the first failed unit: stop everyone early. */
void collect_cancel_all(struct run *r)
{
	r->cancelled = 1;
	if (r->rank == 0 && !r->cancel_sent && r->size > 1) {
		mq_comm_cancel_send(r->comm);
		r->cancel_sent = 1;
	}
}

void collect_take(struct run *r, const struct unit_record *rec, size_t len)
{
	if (len < sizeof(*rec) || rec->unit < 0 || rec->unit >= r->plan.n_units)
		MQ_ASSERT(!"malformed unit record");
	if (rec->failed) {
		if (rec->failed != 2) /* an interrupted rank finished its unit in hand: the others go on */
			collect_cancel_all(r);
		return;
	}
	const struct mq_unit *u = &r->plan.units[rec->unit];
	MQ_ASSERT(len == sizeof(*rec) + rec->n_digests * (size_t)MQ_SHA256_LEN &&
		  rec->n_digests == (r->opt->no_checksum ? 0 : u->chunk_end - u->chunk_begin));
	r->u_signal[rec->unit] = rec->signal;
	r->u_noise[rec->unit] = rec->noise;
	r->u_max[rec->unit] = rec->max_abs;
	if (r->u_out) {
		r->u_out[rec->unit] = (struct mq_out_sums){ rec->out_signal, rec->out_noise_w, rec->out_noise_wa,
							    rec->out_noise_rtn };
	}
	if (r->u_gptq)
		r->u_gptq[rec->unit] = *rec;
	memcpy(r->chunk_digests + (r->chunk_base[u->tensor] + u->chunk_begin) * MQ_SHA256_LEN, rec + 1,
	       rec->n_digests * (size_t)MQ_SHA256_LEN);
	r->units_taken++;
	memcpy(r->u_crc + UNIT_OUTPUTS * rec->unit, rec->crc, sizeof(rec->crc));
	memcpy(r->u_crc_len + UNIT_OUTPUTS * rec->unit, rec->crc_len, sizeof(rec->crc_len));
	if (r->journal_fd >= 0 && !r->replaying && mq_journal_append(r->journal_fd, rec, (uint32_t)len)) {
		mq_warn("cannot write the journal '%s' (%s); this run cannot be resumed", r->journal_path,
			strerror(errno));
		close(r->journal_fd);
		r->journal_fd = -1;
	} else if (r->journal_fd >= 0) {
		mq_units_journaled = 1;
		run_test_stop_at(++r->units_appended);
	}
	if (--r->units_left[u->tensor] == 0)
		finish_tensor(r, u->tensor);
}

/*
 * Between blocks: rank 0 takes the records that have arrived (blocking: waits
 * for all of them); the other ranks look for a cancel.
 */
void collect_poll(struct run *r, int blocking)
{
	if (r->rank != 0) {
		if (!r->cancelled && mq_comm_cancel_poll(r->comm))
			r->cancelled = 1;
		return;
	}
	while (r->records_left > 0) {
		size_t len;
		struct mq_error e = { 0 };
		void *rec = mq_comm_recv_record(r->comm, blocking, &len, &e);
		if (!rec) {
			if (e.code)
				MQ_ASSERT(!"cannot receive a unit record");
			return;
		}
		r->records_left--;
		collect_take(r, rec, len);
		free(rec);
	}
}

void collect_release(struct run *r)
{
	free(r->res);
	free(r->chunk_base);
	free(r->units_left);
	free(r->u_signal);
	free(r->u_noise);
	free(r->u_max);
	free(r->chunk_digests);
	free(r->u_out);
	free(r->u_gptq);
	r->u_gptq = NULL;
	free(r->u_crc);
	free(r->u_crc_len);
	free(r->out_crc);
	r->res = NULL;
	r->chunk_base = NULL;
	r->units_left = NULL;
	r->u_signal = r->u_noise = r->u_max = NULL;
	r->u_out = NULL;
	r->chunk_digests = NULL;
	r->u_crc = r->out_crc = NULL;
	r->u_crc_len = NULL;
	r->tensors_done = r->records_left = r->units_taken = 0;
}

int collect_setup(struct run *r)
{
	const struct mq_plan *p = &r->plan;
	r->res = calloc((size_t)p->n_tensors + 1, sizeof(*r->res));
	r->chunk_base = calloc((size_t)p->n_tensors + 1, sizeof(*r->chunk_base));
	r->units_left = calloc((size_t)p->n_tensors + 1, sizeof(*r->units_left));
	r->u_signal = calloc((size_t)p->n_units + 1, sizeof(double));
	r->u_noise = calloc((size_t)p->n_units + 1, sizeof(double));
	r->u_max = calloc((size_t)p->n_units + 1, sizeof(double));
	uint64_t chunks = 0;
	for (int t = 0; t < p->n_tensors; t++) {
		r->chunk_base[t] = chunks;
		chunks += p->tensors[t].n_chunks;
		r->units_left[t] = p->tensors[t].n_units;
	}
	r->chunk_digests = malloc((size_t)chunks * MQ_SHA256_LEN + 1);
	if (p->n_gptq && !(r->u_gptq = calloc((size_t)p->n_units + 1, sizeof(*r->u_gptq))))
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	if (r->opt->calib && !(r->u_out = calloc((size_t)p->n_units + 1, sizeof(*r->u_out))))
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	if (!(r->u_crc = calloc(UNIT_OUTPUTS * (size_t)p->n_units + 1, sizeof(uint32_t))) ||
	    !(r->u_crc_len = calloc(UNIT_OUTPUTS * (size_t)p->n_units + 1, sizeof(uint64_t))) ||
	    !(r->out_crc = calloc((size_t)p->n_out + 1, sizeof(uint32_t))))
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	if (!r->res || !r->chunk_base || !r->units_left || !r->u_signal || !r->u_noise || !r->u_max ||
	    !r->chunk_digests)
		return mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	for (int u = 0; u < p->n_units; u++)
		r->records_left += p->units[u].rank != 0;
	for (int t = 0; t < p->n_tensors; t++)
		if (p->tensors[t].n_units == 0)
			finish_tensor(r, t);
	return 0;
}

int collect_quality_gate(struct run *r)
{
	const double floor = r->opt->fail_below;
	if (r->rank == 0 && floor == floor) {
		struct mq_buf b = MQ_BUF_INIT;
		int n = 0;
		for (int i = 0; i < r->plan.n_tensors; i++) {
			const struct mq_tensor_result *res = &r->res[i];
			const struct mq_plan_tensor *pt = &r->plan.tensors[i];
			const int out = pt->calib == MQ_CALIB_STATIC; /* calibrated: the output's SQNR, as it will run */
			double db = out ? mq_sqnr_db(res->out_signal, mq_metadata_output_noise(pt, res, 1))
					: mq_sqnr_db(res->signal, res->noise);
			if (pt->action != MQ_ACT_QUANT || !(db < floor))
				continue;
			if (n++ < 8)
				mq_buf_addf(&b, "%s'%s' (%.2f dB%s)", n > 1 ? ", " : "", r->man.tensors[i].name, db,
					    out ? " of its output" : "");
		}
		if (n > 8)
			mq_buf_addf(&b, " and %d more", n - 8);
		if (n)
			mq_fail(&r->err, MQ_ERR_QUALITY,
				"%d quantized layer%s below --fail-below %.2f dB: %s; nothing was written (choose a wider scheme, keep them with --exclude, or with a target give --min-sqnr)",
				n, n == 1 ? " is" : "s are", floor, b.data ? b.data : "");
		mq_buf_release(&b);
	}
	return mq_comm_agree(r->comm, &r->err);
}
