/*
 * unit: this rank's work, one unit after another: see the unit's rows in
 * place or read them (source.h), hash each chunk's bytes first, widen rows to
 * float32, quantize or copy while they are in cache, and write the bytes at
 * their planned offsets; then send the unit's record (collect.c).
 * The up-to-date check and the resume check hash without writing.
 */
#ifndef MQ_UNIT_H
#define MQ_UNIT_H

#include <stddef.h>
#include <stdint.h>

#include "state.h"

/*
 * The arena (plan.arena_bytes, from the plan's budget) holds a quantized
 * block's regions one after another, each starting on a cache line.
 */
#define UNIT_ALIGN MQ_ARENA_ALIGN /* plan.h */
#define UNIT_ARENA_SLACK (4 * UNIT_ALIGN) /* carve() rounds each of its four regions up */
/*
 * A unit's writes of each of its output tensors are gathered into writes of
 * up to this many bytes (a parallel file system wants few large requests),
 * and flushed before its record is sent.
 */
#define UNIT_STAGE (1u << 20)

/* Chunk digests of a unit: one SHA-256 per chunk, blocks fed in order. */
struct chunk_hasher {
	struct mq_hasher h;
	int open;
	uint8_t *out;     /* digests of the unit's chunks */
	int next;         /* index of the chunk being hashed */
};

/* Every unit the plan gives this rank and that is not done yet; then waits for all records (rank 0). */
int unit_work(struct run *r);
/*
 * Unit id of this rank: done now if usable and nothing has failed, been
 * cancelled or interrupted; else reported as skipped (or, interrupted, as
 * not started). Its record goes to rank 0 either way.
 */
void unit_take(struct run *r, int id, int usable);
/* SIGUSR1 seen (here, or by the rank that builds GPTQ layer `layer`): this rank starts no other unit. */
void unit_note_interrupt(struct run *r, const char *layer);
/* The digests of one unit's source chunks into ch, nothing written. */
int unit_hash(struct run *r, const struct mq_unit *u, struct chunk_hasher *ch);
/* n bytes at absolute offset pos of the output file (timed and counted). */
int unit_write_at(struct run *r, int file, uint64_t pos, const void *buf, size_t n);

/*
 * The parameters of each group of one row x of tensor t as pt's spec stores
 * it, into p (pt->row_groups of them), after the range checks (a NaN, an
 * Inf or a value beyond the scheme's range is a data error naming the row
 * and element).
 */
int unit_row_params(struct run *r, const struct mq_tensor *t, const struct mq_plan_tensor *pt, uint64_t row,
		    const float *x, struct mq_qparams *p);
/* Closes the input files and frees the buffers. */
void unit_release(struct run *r);

#endif
