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
#include "config.h"

/*
 * Quantizes the model of o on the communicator (collective). The output path
 * is resolved into o->output when o gives none. *skipped: in job mode, the
 * output was up to date. Returns the status code, the same on every rank,
 * with the error in *err.
 */
int mq_run_model(struct mq_comm *c, struct mq_options *o, int *skipped, struct mq_error *err);

#endif
