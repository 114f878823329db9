/*
 * run: the order of the phases and the agreement after each.
 *   manifest (rank 0 reads, every rank gets the headers) -> calibration
 *   description -> plan (every rank, pure) and output checks -> in a job,
 *   the up-to-date check -> per-layer preparation -> partial file, journal
 *   and resume check -> units (read, hash, quantize, write at planned
 *   offsets) with records to rank 0 -> rank 0's finish through the writer
 *   row -> sync, close, rename -> summary and report.
 * Every phase ends in mq_comm_agree(), so all ranks return the same status.
 */
#ifndef MQ_RUN_H
#define MQ_RUN_H

#include "comm.h"
#include "config.h"

/*
 * Quantizes the model of o on the communicator (collective). o->output may
 * be NULL (the default name beside the input); o->out_format is set to the
 * output's format. *skipped: in job mode, the
 * output was up to date. Returns the status code, the same on every rank,
 * with the error in *err.
 */
int mq_run_model(struct mq_comm *c, struct mq_options *o, int *skipped, struct mq_error *err);

#endif
