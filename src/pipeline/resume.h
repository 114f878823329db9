/*
 * resume: the partial output and its journal. Rank 0 creates the partial
 * file beside the output (".NAME.tmp", reserved at its final size) and a
 * journal of finished units, locked for the run; an interrupted run's pair is
 * resumed when the journal's identity (options, tool, input sizes, times and
 * headers) matches and each journaled unit's output bytes still have their
 * CRCs, and every rank re-hashes the sources of the units it would redo. In a
 * job, "up to date" is a resume with nothing to write: the sources are hashed
 * and the fingerprint compared with the one the existing output records.
 */
#ifndef MQ_RESUME_H
#define MQ_RESUME_H

#include "state.h"

/* Rank 0: the partial file and its journal, resumed or new (r->tmp, r->done, r->pending). */
int resume_open_partial(struct run *r);
/* Every rank: the resumed units whose sources still hash the same stay done; rank 0 replays their records. */
int resume_confirm(struct run *r);
/* After SIGUSR1: the finished units' bytes reach the disk and the journal stays, for a resume. */
void resume_keep_partial(struct run *r);
/* Every rank, job mode: whether the existing output is up to date (*yes, the same on every rank). */
int resume_up_to_date(struct run *r, int *yes);

/* Frees the resume state and closes the journal and its lock. */
void resume_release(struct run *r);

#endif
