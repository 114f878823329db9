/*
 * run: the order of the phases and the agreement after each.
 *   options -> manifest (rank 0) -> broadcast -> plan (every rank, pure)
 *   -> temporary output -> units (read, hash, quantize, write at planned
 *   offsets) with records to rank 0 -> header (rank 0) -> sync, close,
 *   rename -> summary and report.
 * Every phase ends in mq_comm_agree(), so all ranks return the same status.
 */
#ifndef MQ_RUN_H
#define MQ_RUN_H

#include "comm.h"

/* Runs the command line on the communicator; returns the process exit code. */
int mq_run(struct mq_comm *c, int argc, char **argv);

#endif
