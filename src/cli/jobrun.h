/*
 * jobrun: the models of a job file, one after another, on K groups of ranks
 * side by side (--groups, largest models first to the least loaded group),
 * each model's outcome gathered to rank 0 for the zoo report and the exit code.
 */
#ifndef MQ_JOBRUN_H
#define MQ_JOBRUN_H

#include "comm.h"
#include "config.h"

/* Runs the job of cli->job with the command line's options; returns the process exit code. */
int mq_jobrun(struct mq_comm *world, int argc, char **argv, const struct mq_options *cli);

#endif
