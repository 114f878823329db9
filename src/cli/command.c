#include "command.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inspect.h"
#include "jobrun.h"
#include "options.h"
#include "run.h"

/*
 * Rank 0: mq-dist inspect. The listing goes through a temporary file and out
 * with control characters escaped (mq_print_lines), since names and metadata
 * come from the file.
 */
static void inspect_file(const struct mq_options *o, struct mq_error *err)
{
	if (o->json) { /* cJSON escapes control characters itself */
		mq_inspect(o, stdout, err);
		return;
	}
	FILE *tmp = tmpfile(), *out = tmp ? tmp : stdout;
	mq_inspect(o, out, err);
	if (!tmp)
		return;
	rewind(tmp);
	mq_print_lines(stdout, tmp);
	fclose(tmp);
	fflush(stdout);
}


/* One command line on the communicator; prints the error on rank 0 (prefixed with the model's name in a job). */
/*
 * Rank 0, with --report R.json: R.svg beside it, the picture inspect --plot
 * draws of the output (written to a temporary name, then renamed). A
 * picture that cannot be written is a warning: the model is done.
 */
static void report_picture(const struct mq_options *run)
{
	struct mq_options o;
	struct mq_error e = { 0 };
	memset(&o, 0, sizeof(o));
	o.command = MQ_CMD_INSPECT;
	o.input = run->output;
	o.plot = 1;
	size_t n = strlen(run->report);
	if (n > 5 && strcmp(run->report + n - 5, ".json") == 0)
		n -= 5;
	char *svg = malloc(n + 5), *tmp = malloc(n + 9);
	if (!svg || !tmp || !o.input) {
		free(svg);
		free(tmp);
		return;
	}
	snprintf(svg, n + 5, "%.*s.svg", (int)n, run->report);
	snprintf(tmp, n + 9, "%.*s.svg.tmp", (int)n, run->report);
	FILE *f = fopen(tmp, "w");
	if (!f)
		mq_fail(&e, MQ_ERR_OUTPUT, "cannot write '%s': %s", tmp, strerror(errno));
	else if (mq_inspect(&o, f, &e) | fclose(f))
		mq_fail(&e, MQ_ERR_OUTPUT, "cannot write '%s'", tmp);
	else if (rename(tmp, svg) != 0)
		mq_fail(&e, MQ_ERR_OUTPUT, "cannot rename '%s' to '%s': %s", tmp, svg, strerror(errno));
	if (e.code) {
		remove(tmp);
		mq_print(stderr, "mq-dist: warning: the report's picture: %s\n", e.msg);
	}
	free(svg);
	free(tmp);
}

int mq_command_run(struct mq_comm *c, int argc, char **argv, const char *model, struct mq_model_outcome *out)
{
	struct mq_options opt;
	struct mq_error err = { 0 };
	int rank = mq_comm_rank(c), skipped = 0;
	double t0 = mq_comm_time();
	/* Every rank parses the same argv, so every rank reaches the same verdict. */
	if (mq_options_parse(argc, argv, &opt, &err) == 0) {
		mq_log_init(rank, opt.quiet);
		opt.job_mode = model != NULL;
		switch (opt.command) {
		case MQ_CMD_HELP:
			if (rank == 0)
				mq_options_print_help(stdout);
			break;
		case MQ_CMD_VERSION:
			if (rank == 0)
				printf("mq-dist " MQ_VERSION "\n");
			break;
		case MQ_CMD_INSPECT:
			if (rank == 0)
				inspect_file(&opt, &err);
			mq_comm_agree(c, &err);
			break;
		case MQ_CMD_RUN:
			if (!mq_run_model(c, &opt, &skipped, &err) && rank == 0 && opt.report && !opt.dry_run && !skipped)
				report_picture(&opt);
			break;
		}
	}
	int code = err.code;
	if (code && rank == 0) {
		mq_print(stderr, "mq-dist: error: %s%s%s%s\n", model ? "[" : "", model ? model : "", model ? "] " : "",
			err.msg);
		if (code == MQ_ERR_USAGE && !model)
			fprintf(stderr, "run 'mq-dist --help' for the options\n");
	}
	if (out) {
		out->code = code;
		out->skipped = skipped;
		out->seconds = mq_comm_time() - t0;
		snprintf(out->msg, sizeof(out->msg), "%s", code ? err.msg : "");
	}
	mq_options_release(&opt);
	return code;
}

int mq_command_main(struct mq_comm *c, int argc, char **argv)
{
	int rank = mq_comm_rank(c);
	mq_log_init(rank, 0);
	struct mq_options o;
	struct mq_error e = { 0 };
	int job = mq_options_parse(argc, argv, &o, &e) == 0 && o.job && o.command == MQ_CMD_RUN;
	int code;
	if (job) {
		mq_log_init(rank, o.quiet);
		code = mq_jobrun(c, argc, argv, &o);
	} else {
		code = mq_status_exit_code(mq_command_run(c, argc, argv, NULL, NULL));
	}
	mq_options_release(&o);
	return code;
}
