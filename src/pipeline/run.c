#include "run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "choose.h"
#include "collect.h"
#include "metadata.h"
#include "output.h"
#include "folder.h"
#include "hf.h"
#include "prepare.h"
#include "resume.h"
#include "state.h"
#include "unit.h"
#include "write.h"

static int phase_manifest(struct run *r)
{
	double t0 = mq_comm_time();
	char *blob = NULL;
	size_t len = 0;
	char *weights = NULL;
	if (r->rank == 0 && folder_is_dir(r->opt->input))
		folder_scan_input(r, &weights);
	if (r->rank == 0 && !r->err.code && !mq_manifest_load(weights ? weights : r->opt->input, &r->man, &r->err))
		mq_manifest_pack(&r->man, &blob, &len, &r->err);
	free(weights);
	if (mq_comm_agree(r->comm, &r->err))
		goto out;
	if (mq_comm_bcast_blob(r->comm, &blob, &len, &r->err) == 0 && r->rank != 0)
		mq_manifest_unpack(blob, len, &r->man, &r->err);
	mq_comm_agree(r->comm, &r->err);
out:
	free(blob);
	r->stats[MQ_STAT_T_MANIFEST] = mq_comm_time() - t0;
	return r->err.code;
}

/* Every rank: what the calibration file holds for each weight; rank 0: the file's digest. */
static int phase_calib(struct run *r)
{
	if (!r->opt->calib)
		return 0;
	double t0 = mq_comm_time();
	mq_linalg_init();
	r->cinfo = calloc((size_t)r->man.n_tensors + 1, sizeof(*r->cinfo));
	if (!r->cinfo)
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	else if (!mq_calib_open(r->opt->calib, &r->calib, &r->err)) {
		for (int i = 0; i < r->man.n_tensors && !r->err.code; i++) {
			const struct mq_tensor *t = &r->man.tensors[i];
			if (!mq_dtype_is_float(t->dtype) || (t->ndim != 2 && t->ndim != 4))
				continue;
			char *layer = mq_plan_layer_name(t->name);
			if (!layer)
				mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
			else
				mq_calib_describe(r->calib, layer, &r->cinfo[i], &r->err);
			free(layer);
		}
	}
	if (!r->err.code && r->rank == 0 && !r->opt->no_checksum && !r->opt->dry_run)
		mq_digest_file(r->opt->digest, r->opt->calib, r->calib_digest, &r->err);
	r->stats[MQ_STAT_T_CALIB] += mq_comm_time() - t0;
	return mq_comm_agree(r->comm, &r->err);
}

static int phase_plan(struct run *r)
{
	double t0 = mq_comm_time();
	r->output = r->opt->output ? strdup(r->opt->output) : mq_options_default_output(r->opt, r->man.n_files &&
						r->man.files[0].kind == MQ_SOURCE_TORCH && !r->man.index_name);
	if (!r->output)
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	else if (!(r->writer = mq_writer_select(r->output))) /* -o was checked by the options, a default always fits */
		mq_options_check_output_name(r->output, &r->err);
	else
		r->opt->out_format = r->writer->name;
	if (r->writer)
		r->opt->folder_output = r->writer->folder;
	if (!r->err.code && r->rank == 0 && !output_check(r) && !folder_check_output(r))
		output_check_dir(r);
	/* a mixed-precision plan is placed once its schemes are chosen (choose.c) */
	if (!r->err.code && !mq_plan_build(&r->man, r->opt, r->size, r->cinfo, &r->plan, &r->err) &&
	    !mq_options_mixed(r->opt) && (!r->opt->folder_output || !folder_check_plan(r)))
		output_place(r);
	r->stats[MQ_STAT_T_PLAN] = mq_comm_time() - t0;
	return mq_comm_agree(r->comm, &r->err);
}

/* Mixed precision: the candidates measured, the schemes chosen, and the rebuilt plan placed. */
static int phase_choose(struct run *r)
{
	double t0 = mq_comm_time();
	if (!choose_schemes(r) && (!r->opt->folder_output || !folder_check_plan(r)))
		output_place(r);
	r->stats[MQ_STAT_T_PLAN] += mq_comm_time() - t0 - r->stats[MQ_STAT_T_CHOOSE];
	return mq_comm_agree(r->comm, &r->err);
}

static int phase_open(struct run *r)
{
	char *name = NULL, *done = NULL;
	size_t len = 0, done_len = 0;
	r->done = calloc((size_t)r->plan.n_units + 1, 1);
	if (!r->done)
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	else if (r->rank == 0 && !resume_open_partial(r) && !(name = strdup(r->tmp))) {
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	} else if (r->rank == 0 && name) {
		len = strlen(name) + 1;
		done = malloc((size_t)r->plan.n_units + 1);
		if (done)
			memcpy(done, r->done, (size_t)r->plan.n_units + 1);
		done_len = (size_t)r->plan.n_units + 1;
	}
	if (mq_comm_agree(r->comm, &r->err)) {
		free(name);
		free(done);
		return r->err.code;
	}
	if (!mq_comm_bcast_blob(r->comm, &name, &len, &r->err) && r->rank != 0)
		r->tmp = name;
	else
		free(name);
	if (!mq_comm_bcast_blob(r->comm, &done, &done_len, &r->err) && r->rank != 0 &&
	    done_len == (size_t)r->plan.n_units + 1)
		memcpy(r->done, done, done_len);
	free(done);
	if (mq_comm_agree(r->comm, &r->err) || resume_confirm(r))
		return r->err.code;
	return output_open_parts(r);
}

static int phase_finish(struct run *r)
{
	double t0 = mq_comm_time();
	if (r->rank == 0)
		writer_finish(r);
	mq_comm_agree(r->comm, &r->err);
	output_close_parts(r, !r->opt->no_sync);
	if (!mq_comm_agree(r->comm, &r->err) && r->rank == 0) {
		if (r->writer->folder)
			output_folder_finish(r);
		if (!r->err.code)
			output_commit(r);
		if (!r->err.code && !r->opt->no_sync) {
			double t1 = mq_comm_time();
			output_sync_dir(r->output);
			r->stats[MQ_STAT_T_SYNC] += mq_comm_time() - t1;
		}
		if (!r->err.code) {
			output_guard_tmp(NULL, NULL);
			close(r->journal_fd);
			r->journal_fd = -1;
			unlink(r->journal_path);
		}
	}
	r->stats[MQ_STAT_T_FINISH] = mq_comm_time() - t0;
	return mq_comm_agree(r->comm, &r->err);
}

static void report(struct run *r)
{
	r->stats[MQ_STAT_PEAK_RSS] = mq_report_peak_rss();
	mq_calib_io(r->calib, &r->stats[MQ_STAT_CALIB_BYTES], &r->stats[MQ_STAT_T_CALIB_READ]);
	double *all = r->rank == 0 ? calloc((size_t)r->size * MQ_STAT_COUNT, sizeof(double)) : NULL;
	struct mq_error e = { 0 };
	if (mq_comm_gather(r->comm, r->stats, MQ_STAT_COUNT, all, &e) == 0 && r->rank == 0 && all) {
		mq_report_summary(&r->man, &r->plan, r->res, all, r->output);
		if (r->opt->report && mq_report_write(r->opt->report, &r->man, &r->plan, r->opt, r->res, all,
						     r->output, &e))
			mq_print(stderr, "mq-dist: warning: %s\n", e.msg);
	}
	free(all);
}

static void release(struct run *r)
{
	if (r->hf)
		mq_hf_folder_release(r->hf);
	free(r->hf);
	mq_calib_close(r->calib);
	free(r->cinfo);
	free(r->layers);
	collect_release(r);
	unit_release(r);
	output_release(r);
	resume_release(r);
	mq_plan_release(&r->plan);
	choose_release(r);
	mq_manifest_release(&r->man);
}

static int quantize(struct run *r)
{
	double t_start = mq_comm_time();
	output_catch_stop();
	if (phase_manifest(r) || phase_calib(r) || phase_plan(r))
		return r->err.code;
	if (r->opt->dry_run && !mq_options_mixed(r->opt)) {
		if (r->rank == 0)
			mq_report_plan(&r->man, &r->plan, r->opt, r->out_size, r->output);
		return 0;
	}
	r->fds = malloc((size_t)r->man.n_files * sizeof(int) + 1);
	if (!r->fds || !mq_f16_table())
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	for (int f = 0; r->fds && f < r->man.n_files; f++)
		r->fds[f] = -1;
	int skip = 0;
	/* the fingerprint does not depend on a mixed choice: an up-to-date output is skipped before it is made */
	if (mq_comm_agree(r->comm, &r->err) || (r->opt->job_mode && !r->opt->dry_run && resume_up_to_date(r, &skip)))
		return r->err.code;
	if (skip) {
		r->skipped = 1;
		return 0;
	}
	if (mq_options_mixed(r->opt) && phase_choose(r))
		return r->err.code;
	if (r->opt->dry_run) { /* mixed precision: the plan as chosen (the weights were read, nothing is written) */
		if (r->rank == 0)
			mq_report_plan(&r->man, &r->plan, r->opt, r->out_size, r->output);
		return 0;
	}
	if (prepare_layers(r))
		return r->err.code;
	if (!r->err.code && r->rank == 0)
		collect_setup(r);
	if (mq_comm_agree(r->comm, &r->err) || phase_open(r))
		goto fail;
	double t0 = mq_comm_time();
	unit_work(r);
	r->stats[MQ_STAT_T_WORK] = mq_comm_time() - t0;
	if (mq_comm_agree(r->comm, &r->err)) {
		mq_comm_cancel_drain(r->comm, r->cancel_sent, r->cancelled);
		if (r->err.code == MQ_ERR_INTERRUPTED) {
			resume_keep_partial(r);
			return r->err.code;
		}
		goto fail;
	}
	if (collect_quality_gate(r) || phase_finish(r))
		goto fail;
	r->stats[MQ_STAT_T_TOTAL] = mq_comm_time() - t_start;
	report(r);
	return 0;
fail:
	output_close_parts(r, 0);
	if (r->rank == 0 && r->tmp && r->err.code == MQ_ERR_INTERNAL && mq_units_journaled && r->journal_fd >= 0) {
		/* an MPI failure is how a peer's crash may surface: keep the finished units as a crash does */
		fsync(r->journal_fd);
		output_guard_tmp(NULL, NULL);
		mq_info("the finished work units are kept in '%s' with its journal: run the same command again to resume\n",
			r->tmp);
	} else if (r->rank == 0 && r->tmp) {
		output_remove_partial(r->tmp);
		if (r->journal_path)
			unlink(r->journal_path);
		output_guard_tmp(NULL, NULL);
	}
	return r->err.code;
}

int mq_run_model(struct mq_comm *c, struct mq_options *o, int *skipped, struct mq_error *err)
{
	struct run r;
	memset(&r, 0, sizeof(r));
	r.comm = c;
	r.rank = mq_comm_rank(c);
	r.size = mq_comm_size(c);
	r.opt = o;
	r.method = mq_method_get(o->method);
	for (int k = 0; k < UNIT_OUTPUTS; k++)
		r.ucrc_out[k] = -1;
	r.journal_fd = r.lock_fd = -1;
	quantize(&r);
	if (!o->output && r.output) /* the default output's path, for the caller (the report's picture) */
		o->output = strdup(r.output);
	*skipped = r.skipped;
	*err = r.err;
	release(&r);
	return err->code;
}

