/*
 * collect: the units' records. Every rank sends rank 0 one record per unit
 * it was given (its error sums, CRCs and chunk digests; struct unit_record);
 * rank 0 takes them as they come, journals each, and once all units of a
 * tensor are in, sums them in unit order (so the figures do not depend on
 * the rank count) and prints the tensor's progress line. After the first
 * failed unit rank 0 tells the others to stop.
 */
#ifndef MQ_COLLECT_H
#define MQ_COLLECT_H

#include <stddef.h>

#include "state.h"

/* Rank 0: the per-tensor and per-unit arrays, before any record arrives. */
int collect_setup(struct run *r);
/* Frees them and forgets what came in (the up-to-date check runs before the real pass). */
void collect_release(struct run *r);
/* Rank 0: one record (this rank's own, or received, or replayed from the journal). */
void collect_take(struct run *r, const struct unit_record *rec, size_t len);
/*
 * Between blocks of work: rank 0 takes the records that have arrived
 * (blocking: waits for all that are due); the other ranks look for a cancel.
 */
void collect_poll(struct run *r, int blocking);
/* After the first failed unit: this rank stops, and rank 0 tells the others. */
void collect_cancel_all(struct run *r);

/*
 * Test seam for the fault tests (tests/integration/test_faults.sh): with
 * MQ_TEST_STOP_AT=N in the environment, rank 0 stops itself (SIGSTOP) once N
 * units of this run are journaled, or with N = 0 as soon as the partial output
 * exists, so that a test fires its fault in the middle of a run without
 * guessing how long the run takes. The others wait for rank 0 meanwhile.
 */
void run_test_stop_at(int n_journaled);

/* --fail-below: rank 0 lists the quantized layers under it, and the run ends (all ranks) before its output is committed. */
int collect_quality_gate(struct run *r);

#endif
