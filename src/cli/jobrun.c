#include "jobrun.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
#include "lpt.h"
#include "command.h"
#include "job.h"
#include "zoo.h"

/* Rank 0: a whole small file (the job file), NUL-terminated. */
static char *read_small_file(const char *path, size_t *len, struct mq_error *err)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		mq_fail(err, MQ_ERR_USAGE, "cannot open the job file '%s': %s", path, strerror(errno));
		return NULL;
	}
	struct mq_buf b = MQ_BUF_INIT;
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len < (64u << 20))
		mq_buf_add(&b, chunk, n);
	int bad = ferror(f);
	fclose(f);
	if (bad || !mq_buf_ok(&b) || b.len >= (64u << 20)) {
		mq_buf_release(&b);
		mq_fail(err, MQ_ERR_USAGE, "cannot read the job file '%s' (or it is larger than 64 MiB)", path);
		return NULL;
	}
	mq_buf_add(&b, "", 1);
	char *s = mq_buf_detach(&b, len);
	(*len)--;
	return s;
}

/* Models to groups, longest processing time first (core/lpt.h): each to the least loaded group so far. */
static void assign_groups(const double *bytes, int n, int groups, int *group_of)
{
	uint64_t *load = calloc((size_t)groups, sizeof(*load));
	struct mq_lpt_item *items = calloc((size_t)n + 1, sizeof(*items));
	if (!load || !items) { /* round robin will do */
		for (int i = 0; i < n; i++)
			group_of[i] = i % groups;
		free(load);
		free(items);
		return;
	}
	for (int i = 0; i < n; i++) /* sizes are whole numbers below 2^53: exact as doubles and back */
		items[i] = (struct mq_lpt_item){ (uint64_t)bytes[i], (uint64_t)bytes[i], NULL, 0, i, 0 };
	mq_lpt_assign(items, n, groups, load);
	for (int k = 0; k < n; k++)
		group_of[items[k].index] = items[k].bin;
	free(load);
	free(items);
}

/*
 * A model's outcome as the job's ranks sum it: OUTCOME_FIELDS doubles per
 * model, set by the leader of its group only and zero on every other rank.
 * Its message travels apart (MQ_ERROR_MAX bytes per model, a byte-wise maximum).
 */
struct outcome {
	int code;        /* enum mq_status (<= 0), stored negated */
	int skipped;     /* up to date */
	double seconds;
	int ran;         /* its group ran it, or marked it not started */
};

enum { OUTCOME_CODE, OUTCOME_SKIPPED, OUTCOME_SECONDS, OUTCOME_RAN, OUTCOME_FIELDS };

/* The outcome into its OUTCOME_FIELDS doubles. */
static void outcome_pack(const struct outcome *o, double *slot)
{
	slot[OUTCOME_CODE] = (double)-o->code;
	slot[OUTCOME_SKIPPED] = o->skipped;
	slot[OUTCOME_SECONDS] = o->seconds;
	slot[OUTCOME_RAN] = o->ran;
}

/* The outcome back from its OUTCOME_FIELDS doubles, once summed over the ranks. */
static struct outcome outcome_unpack(const double *slot)
{
	return (struct outcome){ .code = -(int)slot[OUTCOME_CODE], .skipped = slot[OUTCOME_SKIPPED] != 0,
				 .seconds = slot[OUTCOME_SECONDS], .ran = slot[OUTCOME_RAN] != 0 };
}

/* A job on this rank: what every step reads and writes; jobrun_release frees it (any part may be unset). */
struct jobrun {
	struct mq_comm *world;
	struct mq_comm *group;         /* this rank's group of mq_comm_split, NULL before */
	const struct mq_options *cli;
	int rank, size;                /* in world */
	int groups, color;             /* how many groups, and this rank's */
	struct mq_job job;
	struct mq_error err;
	double *bytes_mine;            /* n_models: each input's size, set on rank 0 only */
	double *bytes;                 /* n_models: the sizes, on every rank */
	int *group_of;                 /* n_models: the group that runs each model */
	double *outcome_mine;          /* OUTCOME_FIELDS * n_models: the models this rank leads */
	double *outcomes;              /* OUTCOME_FIELDS * n_models: every model's, summed */
	unsigned char *msg_mine;       /* MQ_ERROR_MAX * n_models: the messages of the models this rank leads */
	unsigned char *msgs;           /* MQ_ERROR_MAX * n_models: every model's */
};

/* Frees the job's state, any part of which may be unset, and zeroes it. */
static void jobrun_release(struct jobrun *r)
{
	mq_comm_free(r->group);
	mq_job_release(&r->job);
	free(r->bytes_mine);
	free(r->bytes);
	free(r->group_of);
	free(r->outcome_mine);
	free(r->outcomes);
	free(r->msg_mine);
	free(r->msgs);
	memset(r, 0, sizeof(*r));
}

/* Collective: rank 0 reads the job file, every rank parses it; returns the agreed status. */
static int load_job(struct jobrun *r, int argc, char **argv)
{
	char *text = NULL;
	size_t len = 0;
	if (r->rank == 0)
		text = read_small_file(r->cli->job, &len, &r->err);
	if (!mq_comm_agree(r->world, &r->err) && !mq_comm_bcast_blob(r->world, &text, &len, &r->err))
		mq_job_parse(r->cli->job, text, len, argc, argv, &r->job, &r->err);
	free(text);
	return mq_comm_agree(r->world, &r->err);
}

/* The number of groups (at most one per rank), the state's arrays, and rank 0's input sizes. */
static void prepare_groups(struct jobrun *r)
{
	size_t n = (size_t)r->job.n_models;
	r->groups = r->cli->groups ? r->cli->groups : 1;
	if (r->groups > r->size) {
		if (r->rank == 0)
			mq_info("--groups %d is more than the %d ranks: using %d groups of one rank\n", r->groups,
				r->size, r->size);
		r->groups = r->size;
	}
	r->bytes_mine = calloc(n + 1, sizeof(double));
	r->bytes = calloc(n + 1, sizeof(double));
	r->group_of = calloc(n + 1, sizeof(int));
	r->outcome_mine = calloc(OUTCOME_FIELDS * n + 1, sizeof(double));
	r->outcomes = calloc(OUTCOME_FIELDS * n + 1, sizeof(double));
	r->msg_mine = calloc(n * MQ_ERROR_MAX + 1, 1);
	r->msgs = calloc(n * MQ_ERROR_MAX + 1, 1);
	if (!r->bytes_mine || !r->bytes || !r->group_of || !r->outcome_mine || !r->outcomes || !r->msg_mine ||
	    !r->msgs)
		mq_fail(&r->err, MQ_ERR_INTERNAL, "out of memory");
	for (size_t i = 0; r->rank == 0 && r->bytes_mine && i < n; i++) {
		struct stat st;
		r->bytes_mine[i] = stat(r->job.models[i].input, &st) == 0 ? (double)st.st_size : 0.0;
	}
}

/* Collective: the models to groups by size (the same on every rank), and this rank's group; the agreed status. */
static int split_groups(struct jobrun *r)
{
	int n = r->job.n_models;
	if (!mq_comm_agree(r->world, &r->err)) /* only rank 0 holds sizes: the sum is theirs */
		mq_comm_allreduce_sum(r->world, r->bytes_mine, r->bytes, n, &r->err);
	r->color = r->rank * r->groups / r->size;
	if (!mq_comm_agree(r->world, &r->err)) {
		assign_groups(r->bytes, n, r->groups, r->group_of);
		if (!(r->group = mq_comm_split(r->world, r->color)))
			mq_fail(&r->err, MQ_ERR_INTERNAL, "cannot split the ranks into %d groups", r->groups);
	}
	return mq_comm_agree(r->world, &r->err);
}

/* Collective in the group: one model's run, announced by the group's leader; its outcome in *o. */
static void run_model(struct jobrun *r, int i, int leader, struct mq_model_outcome *o)
{
	const struct mq_job_model *m = &r->job.models[i];
	if (leader && !r->cli->quiet) { /* every group's leader: its models' lines follow */
		mq_print(stdout, "== %s: %s -> %s\n", m->name, m->input, m->output);
		fflush(stdout);
	}
	mq_command_run(r->group, m->argc, m->argv, m->name, o);
}

/* Collective in each group: its models in job order (none after an interruption), the leader keeping the outcomes. */
static void run_models(struct jobrun *r)
{
	int n = r->job.n_models, leader = mq_comm_rank(r->group) == 0, stopped = 0;
	if (r->rank == 0)
		mq_info("job %s: %d models on %d ranks in %d group%s\n", r->cli->job, n, r->size, r->groups,
			r->groups > 1 ? "s" : "");
	for (int i = 0; i < n; i++) {
		if (r->group_of[i] != r->color)
			continue;
		struct mq_model_outcome o;
		memset(&o, 0, sizeof(o));
		if (stopped) {
			o.code = MQ_ERR_INTERRUPTED;
			snprintf(o.msg, sizeof(o.msg), "not started: the job was interrupted");
		} else {
			run_model(r, i, leader, &o);
			stopped = o.code == MQ_ERR_INTERRUPTED;
		}
		if (leader) {
			struct outcome kept = { .code = o.code, .skipped = o.skipped, .seconds = o.seconds, .ran = 1 };
			outcome_pack(&kept, r->outcome_mine + OUTCOME_FIELDS * (size_t)i);
			memcpy(r->msg_mine + (size_t)i * MQ_ERROR_MAX, o.msg, strlen(o.msg));
		}
	}
}

/* Collective: every model's outcome and message on every rank; the status of the exchange. */
static int gather_outcomes(struct jobrun *r)
{
	int n = r->job.n_models;
	mq_comm_allreduce_sum(r->world, r->outcome_mine, r->outcomes, OUTCOME_FIELDS * n, &r->err);
	mq_comm_allreduce_max_bytes(r->world, r->msg_mine, r->msgs, (size_t)n * MQ_ERROR_MAX, &r->err);
	return r->err.code;
}

/* Rank 0: the zoo report of every model; 0 if it could not be written (a warning says why), else 1. */
static int write_report(const struct jobrun *r)
{
	int n = r->job.n_models;
	struct mq_zoo_entry *z = calloc((size_t)n + 1, sizeof(*z));
	for (int i = 0; z && i < n; i++) {
		const struct mq_job_model *m = &r->job.models[i];
		struct outcome o = outcome_unpack(r->outcomes + OUTCOME_FIELDS * (size_t)i);
		z[i] = (struct mq_zoo_entry){ .name = m->name, .input = m->input, .output = m->output, .code = o.code,
					      .skipped = o.skipped, .seconds = o.seconds,
					      .message = (const char *)r->msgs + (size_t)i * MQ_ERROR_MAX };
	}
	struct mq_error e = { 0 };
	int written = z && !mq_report_zoo(r->job.report, r->cli->job, z, n, &e);
	if (!written)
		mq_print(stderr, "mq-dist: warning: cannot write the zoo report: %s\n", z ? e.msg : "out of memory");
	free(z);
	return written;
}

/* The job's status from its models' (an interruption before failures), and rank 0's closing line. */
static int job_status(const struct jobrun *r, int report_written)
{
	int n = r->job.n_models, n_failed = 0, n_interrupted = 0, code = MQ_OK;
	for (int i = 0; i < n; i++) {
		int c = outcome_unpack(r->outcomes + OUTCOME_FIELDS * (size_t)i).code;
		n_failed += c != 0 && c != MQ_ERR_INTERRUPTED;
		n_interrupted += c == MQ_ERR_INTERRUPTED;
	}
	if (n_interrupted)
		code = MQ_ERR_INTERRUPTED;
	else if (n_failed)
		code = MQ_ERR_MODELS;
	if (r->rank == 0 && code == MQ_ERR_INTERRUPTED)
		mq_print(stderr, "mq-dist: job interrupted; run it again to resume (finished models are skipped)\n");
	else if (r->rank == 0 && code == MQ_ERR_MODELS)
		mq_print(stderr, "mq-dist: error: %d of %d models failed%s%s%s\n", n_failed, n, report_written ? " (see " : "",
			 report_written ? r->job.report : "", report_written ? ".md)" : "");
	return code;
}

int mq_jobrun(struct mq_comm *world, int argc, char **argv, const struct mq_options *cli)
{
	struct jobrun r = { .world = world, .cli = cli, .rank = mq_comm_rank(world), .size = mq_comm_size(world) };
	int code = load_job(&r, argc, argv);
	if (!code) {
		prepare_groups(&r);
		code = split_groups(&r);
	}
	if (code) {
		if (r.rank == 0)
			mq_print(stderr, "mq-dist: error: %s\n", r.err.msg);
		goto out;
	}
	run_models(&r);
	mq_log_init(r.rank, cli->quiet);
	code = gather_outcomes(&r);
	if (!code) {
		int report_written = !cli->dry_run;
		if (r.rank == 0 && !cli->dry_run)
			report_written = write_report(&r);
		code = job_status(&r, report_written);
	}
out:
	jobrun_release(&r);
	return mq_status_exit_code(code);
}
