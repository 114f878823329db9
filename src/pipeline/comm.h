/*
 * comm: everything MPI. The only module that includes mpi.h.
 *
 * Collectives here must be called by every rank in the same order. Status
 * agreement (mq_comm_agree) is an Allreduce of the lowest failing rank,
 * followed by a broadcast of that rank's error, so that every rank holds the
 * same error afterwards and takes the same branch.
 */
#ifndef MQ_COMM_H
#define MQ_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

struct mq_comm; /* opaque: a duplicated communicator */

/*
 * Starts MPI and returns the world communicator (a duplicate of it), NULL if
 * it cannot be made. mq_comm_finalize() frees it and ends MPI; call it once,
 * last, whatever mq_comm_init() returned.
 */
struct mq_comm *mq_comm_init(int *argc, char ***argv);
void mq_comm_finalize(struct mq_comm *world);
/* Frees a communicator of mq_comm_split (NULL is fine). */
void mq_comm_free(struct mq_comm *c);
int mq_comm_rank(const struct mq_comm *c);
int mq_comm_size(const struct mq_comm *c);
double mq_comm_time(void);

/* Collective: every rank ends with the error of the lowest failing rank. Returns its code. */
int mq_comm_agree(struct mq_comm *c, struct mq_error *err);

/* Collective: rank 0's blob (malloc'd) reaches every rank (*blob malloc'd on the others). */
int mq_comm_bcast_blob(struct mq_comm *c, char **blob, size_t *len, struct mq_error *err);

/* Point to point, work records from ranks to rank 0. */
int mq_comm_send_record(struct mq_comm *c, const void *rec, size_t len, struct mq_error *err);
/* Rank 0: a pending record (malloc'd) if one arrived, else NULL. blocking=1 waits for one. */
void *mq_comm_recv_record(struct mq_comm *c, int blocking, size_t *len, struct mq_error *err);

/*
 * Point to point, bulk data between two ranks (a GPTQ layer's factor from
 * its owner to the ranks that sweep its rows), in pieces of at most 1 GiB
 * in order. Sends are started and completed later, so that the sender goes
 * on working; every wait calls poll(ctx) between tests, so that rank 0 keeps
 * taking records meanwhile.
 */
struct mq_comm_sends;
/* Starts sending len bytes of buf (which must stay valid until the wait) to dest, added to *s. */
int mq_comm_send_start(struct mq_comm *c, struct mq_comm_sends **s, const void *buf, size_t len, int dest,
		       struct mq_error *err);
/* Waits until every send of *s is done, then frees it (*s = NULL). */
int mq_comm_sends_wait(struct mq_comm_sends **s, void (*poll)(void *), void *ctx, struct mq_error *err);
/* Receives len bytes from src into buf (the same pieces as its sends), waiting. */
int mq_comm_recv_wait(struct mq_comm *c, void *buf, size_t len, int src, void (*poll)(void *), void *ctx,
		      struct mq_error *err);

/*
 * Cancellation: rank 0 tells the other ranks to stop early after a failure.
 * mq_comm_cancel_poll() takes a pending cancel (1) or returns 0. After the
 * failed phase, every rank calls mq_comm_cancel_drain() so that no message is
 * left unreceived: rank 0 says whether it sent any, and ranks that have not
 * yet taken theirs wait for it.
 */
void mq_comm_cancel_send(struct mq_comm *c);
int mq_comm_cancel_poll(struct mq_comm *c);
void mq_comm_cancel_drain(struct mq_comm *c, int sent, int taken);

/* Collective: out = the element-wise sum of every rank's in (n doubles). */
int mq_comm_allreduce_sum(struct mq_comm *c, const double *in, double *out, int n, struct mq_error *err);

/* Collective: the element-wise maximum of n bytes (a value set by one rank, zeros elsewhere, reaches all). */
int mq_comm_allreduce_max_bytes(struct mq_comm *c, const unsigned char *in, unsigned char *out, size_t n,
				struct mq_error *err);

/* Collective: a communicator of the ranks with the same color, ordered by rank (NULL on failure). */
struct mq_comm *mq_comm_split(struct mq_comm *c, int color);

/* Collective over doubles: rank 0 receives n values from each rank into all (n * size). */
int mq_comm_gather(struct mq_comm *c, const double *mine, int n, double *all, struct mq_error *err);

/*
 * An output file open on every rank of a communicator: collective open, sync
 * and close, independent writes at any offset. The run owns the handle; a
 * model of several files holds one each.
 */
struct mq_comm_file;
/*
 * Collective: opens path for writing. *f is NULL on failure, and also (with
 * 0 returned) where this rank succeeded but another failed: agree after it.
 */
int mq_comm_file_open(struct mq_comm *c, const char *path, struct mq_comm_file **f, struct mq_error *err);
int mq_comm_file_write(struct mq_comm_file *f, uint64_t offset, const void *p, size_t n, struct mq_error *err);
int mq_comm_file_sync(struct mq_comm_file *f, struct mq_error *err);
/* Collective: closes and frees *f (nothing for NULL), and sets it to NULL. */
int mq_comm_file_close(struct mq_comm_file **f, struct mq_error *err);

/* Aborts every rank; only for broken invariants. */
void mq_comm_abort_world(void);

#endif
