/*
 * gather: reads part of a tensor that is a strided view of its storage (a
 * torch checkpoint may hold slices, transposes and shared storages) into
 * row-major order, with few and bounded reads.
 *
 * A request is a range of the tensor's logical bytes, like a pread of a
 * contiguous tensor. It is cut into whole rows of some dimension plus partial
 * rows at the ends; each block of whole rows is walked in the order of its
 * storage strides (smallest innermost), so reads follow the file. Runs of
 * elements that lie close together are read with one pread into a 1 MiB
 * bounce buffer and scattered to their places. Memory: the bounce buffer and
 * a fixed table of pending runs, whatever the tensor's size.
 */
#ifndef MQ_GATHER_H
#define MQ_GATHER_H

#include <stddef.h>
#include <stdint.h>

#include "manifest.h"

/* Reads n bytes at file position pos into buf; returns 0 or the caller's error code. */
typedef int (*mq_pread_fn)(void *ctx, void *buf, size_t n, uint64_t pos);

struct mq_gather;

/*
 * Reads the tensor's logical bytes [off, off + n) into buf, through *g
 * (allocated on first use; free with mq_gather_free). off and n must be
 * multiples of the element size. Returns 0, the reader's error code, or -1
 * when out of memory.
 */
int mq_gather_read(struct mq_gather **g, const struct mq_tensor *t, uint64_t off, void *buf, size_t n,
		   mq_pread_fn rd, void *ctx);
void mq_gather_free(struct mq_gather *g);

#endif
