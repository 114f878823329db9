/*
 * command: one mq-dist command line on a communicator: parse it (every rank
 * the same argv, so the same verdict), then help, version, inspect (rank 0),
 * a job file (jobrun.c) or one model's run (pipeline/run.c). The error is
 * printed once, by rank 0.
 */
#ifndef MQ_COMMAND_H
#define MQ_COMMAND_H

#include "comm.h"
#include "status.h"

/* What the job runner learns of one model's run. */
struct mq_model_outcome {
	int code;
	int skipped;
	double seconds;
	char msg[MQ_ERROR_MAX];
};

/*
 * Runs one command line (not a job file) on the communicator; model names the
 * job's model in the error message, NULL outside a job. Fills *out if given.
 * Returns the status code.
 */
int mq_command_run(struct mq_comm *c, int argc, char **argv, const char *model, struct mq_model_outcome *out);

/* The whole command line, a job file's too; returns the process exit code. */
int mq_command_main(struct mq_comm *c, int argc, char **argv);

#endif
