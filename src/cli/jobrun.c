#include "jobrun.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "buf.h"
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

struct sized_model {
	double bytes;
	int index;
};

/* Largest first; equal sizes in job-file order (the order is the same on every rank). */
static int larger_model_first(const void *a, const void *b)
{
	const struct sized_model *x = a, *y = b;
	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	return (x->index > y->index) - (x->index < y->index);
}

/* Models to groups, longest processing time first: each to the least loaded group so far. */
static void assign_groups(const double *bytes, int n, int groups, int *group_of)
{
	double *load = calloc((size_t)groups, sizeof(double));
	struct sized_model *order = malloc((size_t)n * sizeof(*order));
	if (!load || !order) { /* round robin will do */
		for (int i = 0; i < n; i++)
			group_of[i] = i % groups;
		free(load);
		free(order);
		return;
	}
	for (int i = 0; i < n; i++)
		order[i] = (struct sized_model){ bytes[i], i };
	qsort(order, (size_t)n, sizeof(*order), larger_model_first);
	for (int k = 0; k < n; k++) {
		int best = 0;
		for (int g = 1; g < groups; g++)
			if (load[g] < load[best])
				best = g;
		group_of[order[k].index] = best;
		load[best] += order[k].bytes;
	}
	free(load);
	free(order);
}

int mq_jobrun(struct mq_comm *world, int argc, char **argv, const struct mq_options *cli)
{
	int rank = mq_comm_rank(world), size = mq_comm_size(world);
	struct mq_error err = { 0 };
	struct mq_job job;
	memset(&job, 0, sizeof(job));
	char *text = NULL;
	size_t len = 0;
	if (rank == 0)
		text = read_small_file(cli->job, &len, &err);
	if (!mq_comm_agree(world, &err) && !mq_comm_bcast_blob(world, &text, &len, &err))
		mq_job_parse(cli->job, text, len, argc, argv, &job, &err);
	free(text);
	if (mq_comm_agree(world, &err)) {
		if (rank == 0)
			mq_print(stderr, "mq-dist: error: %s\n", err.msg);
		return mq_status_exit_code(err.code);
	}
	int n = job.n_models, groups = cli->groups ? cli->groups : 1;
	if (groups > size) {
		if (rank == 0)
			mq_info("--groups %d is more than the %d ranks: using %d groups of one rank\n", groups, size, size);
		groups = size;
	}
	double *bytes = calloc((size_t)n + 1, sizeof(double)), *mine = calloc(4 * (size_t)n + 1, sizeof(double));
	double *all = calloc(4 * (size_t)n + 1, sizeof(double));
	unsigned char *msg_mine = calloc((size_t)n * MQ_ERROR_MAX + 1, 1), *msgs = calloc((size_t)n * MQ_ERROR_MAX + 1, 1);
	int *group_of = calloc((size_t)n + 1, sizeof(int));
	if (!bytes || !mine || !all || !msg_mine || !msgs || !group_of)
		mq_fail(&err, MQ_ERR_INTERNAL, "out of memory");
	for (int i = 0; rank == 0 && bytes && i < n; i++) {
		struct stat st;
		bytes[i] = stat(job.models[i].input, &st) == 0 ? (double)st.st_size : 0.0;
	}
	if (!mq_comm_agree(world, &err))
		mq_comm_allreduce_sum(world, bytes, all, n, &err); /* only rank 0 holds sizes: the sum is theirs */
	struct mq_comm *group = NULL;
	int color = rank * groups / size;
	if (!mq_comm_agree(world, &err)) {
		assign_groups(all, n, groups, group_of);
		memset(all, 0, 4 * (size_t)n * sizeof(double));
		if (!(group = mq_comm_split(world, color)))
			mq_fail(&err, MQ_ERR_INTERNAL, "cannot split the ranks into %d groups", groups);
	}
	if (mq_comm_agree(world, &err)) {
		if (rank == 0)
			mq_print(stderr, "mq-dist: error: %s\n", err.msg);
		mq_comm_free(group);
		mq_job_release(&job);
		free(bytes), free(mine), free(all), free(msg_mine), free(msgs), free(group_of);
		return mq_status_exit_code(err.code);
	}
	int leader = mq_comm_rank(group) == 0, stopped = 0;
	if (rank == 0)
		mq_info("job %s: %d models on %d ranks in %d group%s\n", cli->job, n, size, groups, groups > 1 ? "s" : "");
	for (int i = 0; i < n; i++) {
		if (group_of[i] != color)
			continue;
		struct mq_model_outcome o;
		memset(&o, 0, sizeof(o));
		if (stopped) {
			o.code = MQ_ERR_INTERRUPTED;
			snprintf(o.msg, sizeof(o.msg), "not started: the job was interrupted");
		} else {
			if (leader && !cli->quiet) { /* every group's leader: its models' lines follow */
				mq_print(stdout, "== %s: %s -> %s\n", job.models[i].name, job.models[i].input,
					 job.models[i].output);
				fflush(stdout);
			}
			mq_command_run(group, job.models[i].argc, job.models[i].argv, job.models[i].name, &o);
			stopped = o.code == MQ_ERR_INTERRUPTED;
		}
		if (leader) { /* code, skipped, seconds, ran; the message */
			mine[4 * i] = (double)-o.code;
			mine[4 * i + 1] = o.skipped;
			mine[4 * i + 2] = o.seconds;
			mine[4 * i + 3] = 1;
			memcpy(msg_mine + (size_t)i * MQ_ERROR_MAX, o.msg, strlen(o.msg));
		}
	}
	mq_log_init(rank, cli->quiet);
	mq_comm_allreduce_sum(world, mine, all, 4 * n, &err);
	mq_comm_allreduce_max_bytes(world, msg_mine, msgs, (size_t)n * MQ_ERROR_MAX, &err);
	int code = err.code, n_failed = 0, n_interrupted = 0, report_written = !cli->dry_run;
	for (int i = 0; !code && i < n; i++) {
		int c = -(int)all[4 * i];
		n_failed += c != 0 && c != MQ_ERR_INTERRUPTED;
		n_interrupted += c == MQ_ERR_INTERRUPTED;
	}
	if (!code && rank == 0 && !cli->dry_run) {
		struct mq_zoo_entry *z = calloc((size_t)n + 1, sizeof(*z));
		for (int i = 0; z && i < n; i++) {
			z[i].name = job.models[i].name;
			z[i].input = job.models[i].input;
			z[i].output = job.models[i].output;
			z[i].code = -(int)all[4 * i];
			z[i].skipped = all[4 * i + 1] != 0;
			z[i].seconds = all[4 * i + 2];
			z[i].message = (const char *)msgs + (size_t)i * MQ_ERROR_MAX;
		}
		struct mq_error e = { 0 };
		if (!z || mq_report_zoo(job.report, cli->job, z, n, &e)) {
			mq_print(stderr, "mq-dist: warning: cannot write the zoo report: %s\n", z ? e.msg : "out of memory");
			report_written = 0;
		}
		free(z);
	}
	if (!code && n_interrupted)
		code = MQ_ERR_INTERRUPTED;
	else if (!code && n_failed)
		code = MQ_ERR_MODELS;
	if (rank == 0 && code == MQ_ERR_INTERRUPTED)
		mq_print(stderr, "mq-dist: job interrupted; run it again to resume (finished models are skipped)\n");
	else if (rank == 0 && code == MQ_ERR_MODELS)
		mq_print(stderr, "mq-dist: error: %d of %d models failed%s%s%s\n", n_failed, n, report_written ? " (see " : "",
			report_written ? job.report : "", report_written ? ".md)" : "");
	mq_comm_free(group);
	mq_job_release(&job);
	free(bytes);
	free(mine);
	free(all);
	free(msg_mine);
	free(msgs);
	free(group_of);
	return mq_status_exit_code(code);
}
