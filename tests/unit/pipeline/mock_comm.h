/*
 * mock_comm: what the single-rank comm.h of the tests (mock_comm.c) offers
 * them beyond comm.h. The library mq_pipeline_mock links mock_comm.c in place
 * of src/pipeline/comm.c, so a test of the pipeline runs as rank 0 of 1
 * without mpirun; see mock_comm.c for what it models and what it does not.
 */
#ifndef MQ_MOCK_COMM_H
#define MQ_MOCK_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "comm.h"

/*
 * Called after every successful mq_comm_file_write, with the offset and the
 * byte count (NULL: nothing). A test acts in the middle of a run through it,
 * e.g. sets mq_stop_requested as SIGUSR1 would, without timing anything.
 */
typedef void (*mock_comm_write_hook)(void *ctx, uint64_t offset, size_t n);
void mock_comm_set_write_hook(mock_comm_write_hook hook, void *ctx);

/* Records sent on c and not received yet. */
int mock_comm_queued(const struct mq_comm *c);

#endif
